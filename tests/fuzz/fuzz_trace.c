/* The async trace reader, pd_trace_read, on DIR/trace.bin holding the
 * input (it takes a run directory, so a temporary one is made once). */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"
#include "paramd/error.h"
#include "trace.h"

static char dir[64] = "";
static char file[96];

static void cleanup(void)
{
    unlink(file);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/pd-fuzz-trace-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            abort();
        }
        snprintf(file, sizeof file, "%s/trace.bin", dir);
        atexit(cleanup);
    }
    int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(file);
        abort();
    }
    pd_fuzz_fill(fd, data, size);
    close(fd);

    int workers = 0;
    pd_trace_rec *recs = NULL;
    size_t n = 0;
    if (pd_trace_read(dir, &workers, &recs, &n) == PD_OK) {
        /* The reader's promise (trace.h), which replay relies on. */
        if (workers <= 0)
            abort();
        for (size_t i = 0; i < n; i++) {
            const pd_trace_rec *r = &recs[i];
            bool applied = r->outcome == PD_TRACE_APPLIED;
            if (r->worker >= (uint32_t)workers || r->outcome < 1 || r->outcome > 3 ||
                r->seq < 0 || r->from < 0 || (applied ? r->made < 1 : r->made != -1))
                abort();
        }
    }
    free(recs);
    pd_err_clear();
    return 0;
}
