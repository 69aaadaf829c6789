/* LIBSVM / SVMlight reader: "label index:value ..." with 1-based, strictly
 * increasing indices; logreg/svm labels may be any two numbers (liblinear's
 * 1/2; the smaller is negative, src/data/labels.c); "#" starts a comment (whole line or trailing), blank
 * lines are skipped, line numbers in messages count every line. Rows go to
 * the loader as CSR with 0-based columns. Two passes: count the records,
 * then parse only what the loader needs. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "data_impl.h"
#include "paramd/error.h"

/* One line's entries, reused for every line (grown on demand). */
typedef struct row_buf {
    uint32_t *col;
    float *val;
    size_t cap;
} row_buf;

static int grow(row_buf *r)
{
    size_t cap = r->cap ? 2 * r->cap : 256;
    uint32_t *c = realloc(r->col, cap * sizeof *c);
    if (c)
        r->col = c;
    float *v = c ? realloc(r->val, cap * sizeof *v) : NULL;
    if (!v)
        return PD_FAIL(PD_ENOMEM, "out of memory for a row of %zu entries", cap);
    r->val = v;
    r->cap = cap;
    return PD_OK;
}

static char *skip_blank(char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static char *token_end(char *p)
{
    while (*p && *p != ' ' && *p != '\t')
        p++;
    return p;
}

static int parse_entry(const pd_loader *L, long line, const char *p, const char *e,
                       uint32_t prev, uint32_t *index, float *value)
{
    const char *path = L->path;
    const char *colon = memchr(p, ':', (size_t)(e - p)), *q = p;
    uint64_t idx = 0;
    for (; colon && q < colon && *q >= '0' && *q <= '9' && idx <= UINT32_MAX; q++)
        idx = idx * 10 + (uint64_t)(*q - '0');
    if (!colon || q == p || q != colon || idx > UINT32_MAX)
        return PD_FAIL(PD_EINPUT, "%s:%ld: cannot parse \"%.*s\" (expected index:value)",
                       path, line, (int)(e - p), p);
    /* Feature counts are int (model.features): a larger index would be
     * truncated on its way into the model. */
    if (idx > INT_MAX)
        return PD_FAIL(PD_EINPUT, "%s:%ld: index %llu in \"%.*s\": paramd handles feature "
                       "indices up to %d", path, line, (unsigned long long)idx, (int)(e - p), p,
                       INT_MAX);
    uint32_t i = (uint32_t)idx;
    if (i == 0)
        return PD_FAIL(PD_EINPUT, "%s:%ld: index 0 in \"%.*s\": indices start at 1", path,
                       line, (int)(e - p), p);
    if (i == prev)
        return PD_FAIL(PD_EINPUT, "%s:%ld: index %u repeated", path, line, i);
    if (i < prev)
        return PD_FAIL(PD_EINPUT, "%s:%ld: index %u after index %u: indices must increase",
                       path, line, i, prev);
    PD_TRY(pd_data_check_index(L, line, i));
    const char *vb = colon + 1, *ve = e;
    int bad = pd_data_parse_float(&vb, &ve, value);
    if (bad == 1)
        return PD_FAIL(PD_EINPUT, "%s:%ld: index %u: not a number: \"%.*s\"", path, line, i,
                       (int)(ve - vb), vb);
    if (bad == 2)
        return PD_FAIL(PD_EINPUT, "%s:%ld: index %u: not finite: %.*s", path, line, i,
                       (int)(ve - vb), vb);
    *index = i;
    return PD_OK;
}

static int parse_line(pd_loader *L, long line, char *s, float *y, row_buf *r,
                      size_t *nnz)
{
    char *p = skip_blank(s), *e = token_end(p);
    const char *b = p, *t = e;
    /* A test row to predict on may have no label: it starts with index:value. */
    if (L->unlabeled_ok && L->is_test && memchr(p, ':', (size_t)(e - p))) {
        L->no_label = true;
        *y = 0;
        e = p;
    }
    int bad = L->no_label ? 0 : pd_data_parse_float(&b, &t, y);
    if (bad == 1)
        return PD_FAIL(PD_EINPUT, "%s:%ld: label: not a number: \"%.*s\"", L->path, line,
                       (int)(t - b), b);
    if (bad == 2)
        return PD_FAIL(PD_EINPUT, "%s:%ld: label: not finite: %.*s", L->path, line,
                       (int)(t - b), b);
    uint32_t prev = 0;
    size_t k = 0;
    for (p = skip_blank(e); *p; p = skip_blank(e)) {
        e = token_end(p);
        if (k == r->cap)
            PD_TRY(grow(r));
        uint32_t ix = 0;
        PD_TRY(parse_entry(L, line, p, e, prev, &ix, &r->val[k]));
        r->col[k++] = ix - 1;
        prev = ix;
    }
    *nnz = k;
    return PD_OK;
}

/* The first pass over a training file whose labels the loader surveys
 * (logreg/svm: which two labels). */
static int survey_line(void *ctx, char *s, long line)
{
    char *p = skip_blank(s), *e = token_end(p);
    return pd_labels_seen(ctx, p, e, line, false);
}

int pd_data_read_libsvm(pd_loader *L, const char *path)
{
    size_t nrec;
    L->path = path;
    bool surveying = L->survey && !L->is_test;
    PD_TRY(pd_data_count_records(path, '#', surveying ? survey_line : NULL, L, &nrec));
    PD_TRY(pd_data_begin(L, path, nrec, 0));
    pd_lines in;
    PD_TRY(pd_data_lines_open(&in, path));
    row_buf r = {0};
    int err = PD_OK;
    PD_TRY_GOTO(err, grow(&r), done);   /* col is never NULL: NULL means dense */
    for (;;) {
        char *s;
        PD_TRY_GOTO(err, pd_data_lines_next(&in, &s), done);
        if (!s)
            break;
        char *hash = strchr(s, '#');
        if (hash)
            *hash = '\0';
        if (pd_data_blank(s, 0))
            continue;
        bool parse;
        PD_TRY_GOTO(err, pd_data_next(L, in.lineno, &parse), done);
        if (!parse)
            continue;
        float y = 0;
        size_t nnz = 0;
        L->no_label = false;
        PD_TRY_GOTO(err, parse_line(L, in.lineno, s, &y, &r, &nnz), done);
        PD_TRY_GOTO(err, pd_data_add(L, path, in.lineno, y, r.val, r.col, nnz), done);
    }
    err = pd_data_end(L);
done:
    free(r.col);
    free(r.val);
    pd_data_lines_close(&in);
    return err;
}
