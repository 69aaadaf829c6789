/* LD_PRELOAD shim for tests: a signal at an exact point of writing a
 * checkpoint. PARAMD_SHIM_RENAME="SUFFIX:N:SIG" raises SIG in the process
 * just before its N-th rename(2) onto a name ending in SUFFIX (".pdck": the
 * part's temporary file is complete and about to take its name;
 * ".manifest": the parts are in place, the manifest is not), after one
 * line "shim: SIG before rename to NAME" on stderr. If the process lives
 * on (a handled signal), the rename goes ahead. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*rename_fn)(const char *, const char *);

int rename(const char *from, const char *to)
{
    static int seen;
    rename_fn real = (rename_fn)(uintptr_t)dlsym(RTLD_NEXT, "rename");
    const char *spec = getenv("PARAMD_SHIM_RENAME");
    char suffix[32];
    int nth, sig;
    if (real && spec && sscanf(spec, "%31[^:]:%d:%d", suffix, &nth, &sig) == 3) {
        size_t n = strlen(to), k = strlen(suffix);
        if (n >= k && !strcmp(to + n - k, suffix) && ++seen == nth) {
            fprintf(stderr, "shim: signal %d before rename to %s\n", sig, to);
            fflush(stderr);
            raise(sig);
        }
    }
    return real ? real(from, to) : -1;
}
