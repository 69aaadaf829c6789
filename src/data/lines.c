/* Line reader for the text formats. zlib's gzread reads gzip'd and plain
 * files alike, so CSV and LIBSVM files may be compressed too. Lines are cut
 * in place in one growing block buffer: no allocation per line. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data_impl.h"
#include "paramd/error.h"

/* The buffer's first size. The fuzz build (meson -Dfuzz=true) makes it a
 * few bytes, so that short inputs cross block boundaries and grow it. */
#ifndef PD_LINES_BLOCK
#define PD_LINES_BLOCK (1u << 20)
#endif

int pd_data_gz_fail(gzFile f, const char *path)
{
    int zerr = Z_OK;
    const char *what = gzerror(f, &zerr);
    if (zerr == Z_ERRNO)
        return PD_FAIL(PD_EIO, "%s: read error: %s", path, strerror(errno));
    /* zlib's text starts with the path already. */
    size_t n = strlen(path);
    if (strncmp(what, path, n) == 0 && strncmp(what + n, ": ", 2) == 0)
        what += n + 2;
    return PD_FAIL(PD_EINPUT, "%s: corrupt gzip data: %s", path, what);
}

int pd_data_gzopen(const char *path, gzFile *f)
{
    errno = 0;
    *f = gzopen(path, "rb");
    if (!*f)
        return PD_FAIL(PD_EINPUT, "%s: cannot open: %s", path,
                       errno ? strerror(errno) : "out of memory");
    gzbuffer(*f, 1u << 17);
    return PD_OK;
}

int pd_data_lines_open(pd_lines *L, const char *path)
{
    memset(L, 0, sizeof *L);
    L->path = path;
    PD_TRY(pd_data_gzopen(path, &L->f));
    L->cap = PD_LINES_BLOCK;
    L->buf = pd_malloc(L->cap);
    if (!L->buf) {
        gzclose(L->f);
        L->f = NULL;
        return PD_ENOMEM;
    }
    return PD_OK;
}

void pd_data_lines_close(pd_lines *L)
{
    if (L->f)
        gzclose(L->f);
    free(L->buf);
    memset(L, 0, sizeof *L);
}

/* Move the unread tail to the front and append a block from the file,
 * growing the buffer when one line fills it. One byte stays free for the
 * NUL after a last line without newline. */
static int refill(pd_lines *L)
{
    if (L->beg > 0) {
        memmove(L->buf, L->buf + L->beg, L->end - L->beg);
        L->end -= L->beg;
        L->beg = 0;
    }
    if (L->end + 1 >= L->cap) {
        char *nb = realloc(L->buf, 2 * L->cap);
        if (!nb)
            return PD_FAIL(PD_ENOMEM, "%s: out of memory for a %zu-byte line", L->path,
                           L->end);
        L->buf = nb;
        L->cap *= 2;
    }
    size_t room = L->cap - L->end - 1;
    int got = gzread(L->f, L->buf + L->end, room > INT_MAX ? INT_MAX : (unsigned)room);
    if (got < 0)
        return pd_data_gz_fail(L->f, L->path);
    if (got == 0) {
        int zerr = Z_OK;
        gzerror(L->f, &zerr);
        if (zerr != Z_OK)
            return pd_data_gz_fail(L->f, L->path);
        L->eof = true;
    }
    L->end += (size_t)got;
    return PD_OK;
}

int pd_data_lines_next(pd_lines *L, char **line)
{
    *line = NULL;
    for (;;) {
        char *s = L->buf + L->beg;
        char *nl = memchr(s, '\n', L->end - L->beg);
        if (nl || (L->eof && L->beg < L->end)) {
            char *e = nl ? nl : L->buf + L->end;
            L->beg = nl ? (size_t)(nl + 1 - L->buf) : L->end;
            if (e > s && e[-1] == '\r')
                e--;
            *e = '\0';
            /* A UTF-8 byte-order mark (Excel, many Windows tools) is not text. */
            if (L->lineno == 0 && e - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
                s += 3;
            L->lineno++;
            *line = s;
            return PD_OK;
        }
        if (L->eof)
            return PD_OK;
        PD_TRY(refill(L));
    }
}

bool pd_data_blank(const char *s, char comment)
{
    for (; *s; s++) {
        if (comment && *s == comment)
            return true;
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\v' && *s != '\f')
            return false;
    }
    return true;
}

int pd_data_count_records(const char *path, char comment, pd_line_fn each, void *ctx,
                          size_t *n)
{
    pd_lines L;
    *n = 0;
    PD_TRY(pd_data_lines_open(&L, path));
    int err = PD_OK;
    for (;;) {
        char *line;
        PD_TRY_GOTO(err, pd_data_lines_next(&L, &line), done);
        if (!line)
            break;
        if (pd_data_blank(line, comment))
            continue;
        ++*n;
        if (each)
            PD_TRY_GOTO(err, each(ctx, line, L.lineno), done);
    }
done:
    pd_data_lines_close(&L);
    return err;
}

int pd_data_parse_float(const char **b, const char **e, float *out)
{
    const char *s = *b, *t = *e;
    while (s < t && (*s == ' ' || *s == '\t'))
        s++;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
        t--;
    *b = s;
    *e = t;
    if (s == t)
        return 1;
    char *end;
    *out = strtof(s, &end);
    if (end != t)
        return 1;
    return isfinite(*out) ? 0 : 2;
}
