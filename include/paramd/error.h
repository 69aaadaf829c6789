/* paramd error handling: integer codes that travel up the call chain, one
 * human-readable message per thread, and a file:line:func trace added by
 * PD_TRY on the way up (PETSc's PetscCall habit). Only main.c decides to exit.
 */
#ifndef PARAMD_ERROR_H
#define PARAMD_ERROR_H

#include <stddef.h>

/* Error codes. pd_exit_status() maps them to the exit statuses (paramd --help,
 * EXIT STATUS). */
enum {
    PD_OK = 0,
    PD_EINPUT,    /* bad usage, config, data or checkpoint: exit 2 */
    PD_ENOMEM,    /* allocation failed: exit 3 */
    PD_EIO,       /* a system call on a file failed: exit 3 */
    PD_EMPI,      /* an MPI call failed or a rank was lost: exit 3 */
    PD_ETRAIN,    /* training failed (divergence, too many bad gradients): exit 3 */
    PD_ESTOPPED,  /* stopped by a signal after its checkpoint: exit 143 */
};

/* Record an error: formats the message (printf-style) into this thread's
 * buffer, starts a fresh trace at file:line:func, and returns code, so that
 * `return PD_FAIL(PD_EINPUT, "%s: bad", path);` reads naturally. */
int pd_err_set(int code, const char *file, int line, const char *func,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define PD_FAIL(code, ...) pd_err_set((code), __FILE__, __LINE__, __func__, __VA_ARGS__)

/* Append one frame to this thread's trace (called by PD_TRY). */
void pd_err_trace(const char *file, int line, const char *func);

/* Propagate a failing call's code, adding file:line:func to the trace. */
#define PD_TRY(call)                                                   \
    do {                                                               \
        int pd_try_e_ = (call);                                        \
        if (pd_try_e_ != PD_OK) {                                      \
            pd_err_trace(__FILE__, __LINE__, __func__);                \
            return pd_try_e_;                                          \
        }                                                              \
    } while (0)

/* As PD_TRY, but stores the code in `err` and jumps to `label` (at most one
 * cleanup label per function; docs/design.md, Style). */
#define PD_TRY_GOTO(err, call, label)                                  \
    do {                                                               \
        (err) = (call);                                                \
        if ((err) != PD_OK) {                                          \
            pd_err_trace(__FILE__, __LINE__, __func__);                \
            goto label;                                                \
        }                                                              \
    } while (0)

/* The last message set on this thread ("" if none). Valid until the next
 * pd_err_set on this thread. */
const char *pd_err_msg(void);
/* The trace of the last error, one "file:line: func" per line. */
const char *pd_err_where(void);
/* Forget the last error (tests use it between cases). */
void pd_err_clear(void);
/* Exit status for an error code: 0, 2, 3 or 143. */
int pd_exit_status(int code);

/* malloc/calloc that set PD_ENOMEM with the requested size on failure.
 * Return NULL on failure; the caller returns PD_ENOMEM. */
void *pd_malloc(size_t bytes);
void *pd_calloc(size_t count, size_t size);

#endif
