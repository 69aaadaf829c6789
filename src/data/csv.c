/* CSV reader: numeric fields separated by data.delimiter (comma,
 * semicolon or tab), an optional header line
 * (data.header), the label in data.label_column (a header name, else a
 * 0-based index; "" means column 0), every other column a feature in file
 * order. With data.curriculum.type column, the column data.curriculum.column
 * (named the same way) holds each record's curriculum score and is not a
 * feature either. Blank lines are skipped but counted: messages give the 1-based
 * line and the 0-based column, as data.label_column counts columns.
 * Labels may be class names (src/data/labels.c): the first pass then hands
 * every label to the loader. A UTF-8 byte-order mark is dropped (lines.c).
 * Two passes: count the records, then parse only what the loader needs. */
#include <stdlib.h>
#include <string.h>

#include "data_impl.h"
#include "paramd/error.h"

static char delimiter(const pd_loader *L)
{
    const char d[] = {',', ';', '\t'};
    return d[L->cfg->data.delimiter];
}

static size_t count_fields(const char *s, char delim)
{
    size_t k = 1;
    for (; *s; s++)
        k += *s == delim;
    return k;
}

/* Does the header field [b, e), without blanks or double quotes around it, read name? */
static bool same_name(const char *b, const char *e, const char *name)
{
    pd_labels_trim(&b, &e);
    return (size_t)(e - b) == strlen(name) && memcmp(b, name, (size_t)(e - b)) == 0;
}

static bool all_digits(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s);
}

/* The column `key` names (want; "" means 0), given the header (NULL
 * without one) and the field count nf of the first line. */
static int find_column(const pd_loader *L, const char *header, long line, size_t nf,
                       const char *key, const char *want, size_t *col)
{
    if (header && want[0]) {
        /* A name wins over an index: a column may be called "3". */
        const char *b = header;
        for (size_t k = 0;; k++) {
            const char *e = strchr(b, delimiter(L));
            if (same_name(b, e ? e : b + strlen(b), want)) {
                *col = k;
                return PD_OK;
            }
            if (!e)
                break;
            b = e + 1;
        }
        if (!all_digits(want))
            return PD_FAIL(PD_EINPUT, "%s:%ld: %s: no column named \"%s\"",
                           L->path, line, key, want);
    } else if (want[0] && !all_digits(want)) {
        return PD_FAIL(PD_EINPUT, "%s: %s: \"%s\" is a column name, but "
                       "data.header is false", L->path, key, want);
    }
    size_t k = want[0] ? strtoul(want, NULL, 10) : 0;
    if (strlen(want) > 9 || k >= nf)
        return PD_FAIL(PD_EINPUT, "%s:%ld: %s: column %s, but the line has "
                       "%zu fields", L->path, line, key, want, nf);
    *col = k;
    return PD_OK;
}

/* Parse a record: label column lc into *y, score column sc (nf: none) into
 * *score, the other columns into row. */
static int parse_line(const pd_loader *L, long line, const char *s, size_t nf, size_t lc,
                      size_t sc, float *row, float *y, float *score)
{
    char delim = delimiter(L);
    size_t got = count_fields(s, delim);
    if (got != nf)
        return PD_FAIL(PD_EINPUT, "%s:%ld: expected %zu fields, got %zu", L->path, line, nf,
                       got);
    const char *b = s;
    for (size_t k = 0, j = 0; k < nf; k++) {
        const char *next = strchr(b, delim);
        const char *e = next ? next : b + strlen(b);
        if (k == lc && L->named) {
            PD_TRY(pd_labels_lookup(L, b, e, line, k, y));
            b = next ? next + 1 : e;
            continue;
        }
        float v = 0;
        int bad = pd_data_parse_float(&b, &e, &v);
        if (bad == 1)
            return PD_FAIL(PD_EINPUT, "%s:%ld: column %zu: not a number: \"%.*s\"", L->path,
                           line, k, (int)(e - b), b);
        if (bad == 2)
            return PD_FAIL(PD_EINPUT, "%s:%ld: column %zu: not finite: %.*s", L->path, line,
                           k, (int)(e - b), b);
        if (k == lc)
            *y = v;
        else if (k == sc)
            *score = v;
        else
            row[j++] = v;
        b = next ? next + 1 : e;
    }
    return PD_OK;
}

/* First line of the file: fields, label and score columns (*sc = nf
 * without scores), feature count; then room. */
static int start(pd_loader *L, const char *s, long line, size_t nrec, size_t *nf,
                 size_t *lc, size_t *sc, float **row)
{
    *nf = count_fields(s, delimiter(L));
    const char *header = L->cfg->data.header ? s : NULL;
    const char *who;
    size_t want = pd_data_expect_d(L, &who);
    /* A test file to predict on may lack the label column: then its
     * fields are exactly the features. */
    L->no_label = L->is_test && L->unlabeled_ok && !L->scores && want && *nf == want;
    if (L->no_label) {
        *lc = *sc = *nf;
        PD_TRY(pd_data_begin(L, L->path, nrec, want));
        *row = pd_malloc(want * sizeof **row);
        return *row ? PD_OK : PD_ENOMEM;
    }
    PD_TRY(find_column(L, header, line, *nf, "data.label_column",
                       L->cfg->data.label_column, lc));
    *sc = *nf;
    if (L->scores) {
        PD_TRY(find_column(L, header, line, *nf, "data.curriculum.column",
                           L->cfg->data.curriculum.column, sc));
        if (*sc == *lc)
            return PD_FAIL(PD_EINPUT, "%s:%ld: data.curriculum.column: column %zu is the "
                           "label column (data.label_column)", L->path, line, *sc);
    }
    size_t extra = L->scores ? 2 : 1;
    if (*nf < extra + 1)
        return PD_FAIL(PD_EINPUT, "%s:%ld: %zu field%s: need a label%s and at least one "
                       "feature", L->path, line, *nf, *nf == 1 ? "" : "s",
                       L->scores ? ", a score" : "");
    size_t d = *nf - extra;
    if (want && d != want)
        return PD_FAIL(PD_EINPUT, "%s:%ld: %zu feature columns, expected %zu (%s)", L->path,
                       line, d, want, who);
    PD_TRY(pd_data_begin(L, L->path, nrec, d));
    *row = pd_malloc(d * sizeof **row);
    return *row ? PD_OK : PD_ENOMEM;
}

/* The first pass over a training file whose labels the loader surveys:
 * the label column from the first line, then each record's label. */
typedef struct survey {
    pd_loader *L;
    bool started;
    size_t lc;
} survey;

static int survey_line(void *ctx, char *s, long line)
{
    survey *sv = ctx;
    pd_loader *L = sv->L;
    char delim = delimiter(L);
    if (!sv->started) {
        sv->started = true;
        bool header = L->cfg->data.header;
        PD_TRY(find_column(L, header ? s : NULL, line, count_fields(s, delim),
                           "data.label_column", L->cfg->data.label_column, &sv->lc));
        if (header)
            return PD_OK;
    }
    const char *b = s;
    for (size_t k = 0; k < sv->lc && b; k++)
        if ((b = strchr(b, delim)))
            b++;
    if (!b)
        return PD_OK;   /* too few fields: the parse says so */
    const char *e = strchr(b, delim);
    return pd_labels_seen(L, b, e ? e : b + strlen(b), line, true);
}

int pd_data_read_csv(pd_loader *L, const char *path)
{
    size_t nrec, nf = 0, lc = 0, sc = 0;
    bool header = L->cfg->data.header, started = false;
    L->path = path;
    survey sv = {.L = L};
    bool surveying = L->survey && !L->is_test;
    PD_TRY(pd_data_count_records(path, 0, surveying ? survey_line : NULL, &sv, &nrec));
    if (nrec == 0 || (header && nrec == 1))
        return PD_FAIL(PD_EINPUT, "%s: no records", path);
    if (header)
        nrec--;
    pd_lines in;
    PD_TRY(pd_data_lines_open(&in, path));
    float *row = NULL;
    int err = PD_OK;
    for (;;) {
        char *s;
        PD_TRY_GOTO(err, pd_data_lines_next(&in, &s), done);
        if (!s)
            break;
        if (pd_data_blank(s, 0))
            continue;
        if (!started) {
            started = true;
            PD_TRY_GOTO(err, start(L, s, in.lineno, nrec, &nf, &lc, &sc, &row), done);
            if (header)
                continue;
        }
        bool parse;
        PD_TRY_GOTO(err, pd_data_next(L, in.lineno, &parse), done);
        if (!parse)
            continue;
        float y = 0;
        L->score = 0;
        PD_TRY_GOTO(err, parse_line(L, in.lineno, s, nf, lc, sc, row, &y, &L->score), done);
        size_t d = nf - (L->no_label ? 0 : L->scores ? 2 : 1);
        PD_TRY_GOTO(err, pd_data_add(L, path, in.lineno, y, row, NULL, d), done);
    }
    err = pd_data_end(L);
done:
    free(row);
    pd_data_lines_close(&in);
    return err;
}
