/* Per-thread error message and trace behind PD_FAIL / PD_TRY. Thread-local
 * like errno, so hogwild server threads can fail independently. */
#include "paramd/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char msg_buf[1024];
static _Thread_local char where_buf[2048];
static _Thread_local size_t where_len;

int pd_err_set(int code, const char *file, int line, const char *func,
               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg_buf, sizeof msg_buf, fmt, ap);
    va_end(ap);
    where_len = 0;
    where_buf[0] = '\0';
    pd_err_trace(file, line, func);
    return code;
}

void pd_err_trace(const char *file, int line, const char *func)
{
    if (where_len >= sizeof where_buf - 1)
        return;
    int n = snprintf(where_buf + where_len, sizeof where_buf - where_len,
                     "  %s:%d: %s\n", file, line, func);
    if (n > 0)
        where_len += (size_t)n < sizeof where_buf - where_len
                         ? (size_t)n : sizeof where_buf - where_len - 1;
}

const char *pd_err_msg(void) { return msg_buf; }
const char *pd_err_where(void) { return where_buf; }

void pd_err_clear(void)
{
    msg_buf[0] = '\0';
    where_buf[0] = '\0';
    where_len = 0;
}

int pd_exit_status(int code)
{
    switch (code) {
    case PD_OK:       return 0;
    case PD_EINPUT:   return 2;
    case PD_ESTOPPED: return 143;
    default:          return 3;
    }
}

void *pd_malloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        PD_FAIL(PD_ENOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *pd_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        PD_FAIL(PD_ENOMEM, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}
