/* LD_PRELOAD shim for tests: fsync(2) fails with EIO on every file whose
 * path contains PARAMD_FSYNC_FAIL (a disk that accepts writes and then
 * cannot flush them); other files are flushed as usual. At exit, a
 * descriptor whose fsync failed and that is still open on that file is
 * reported on stderr ("fsync shim: leaked ..."): the caller kept it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FAILED 64
static int failed[MAX_FAILED], nfailed;

/* The path fd is open on, or false. */
static int path_of(int fd, char *path, size_t size)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, size - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    return 1;
}

int fsync(int fd)
{
    const char *want = getenv("PARAMD_FSYNC_FAIL");
    char path[4096];
    if (want && *want && path_of(fd, path, sizeof path) && strstr(path, want)) {
        if (nfailed < MAX_FAILED)
            failed[nfailed++] = fd;
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))(uintptr_t)dlsym(RTLD_NEXT, "fsync");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(fd);
}

__attribute__((destructor)) static void check_leaks(void)
{
    const char *want = getenv("PARAMD_FSYNC_FAIL");
    char path[4096];
    for (int i = 0; i < nfailed; i++)
        if (path_of(failed[i], path, sizeof path) && strstr(path, want))
            fprintf(stderr, "fsync shim: leaked descriptor %d of %s\n", failed[i], path);
}
