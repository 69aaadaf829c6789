/* Private to src/data. Every reader walks its file's records in order and
 * hands each one to the loader (data.c), which decides which part it
 * belongs to, checks its label, feeds the normalization statistics and
 * stores it; readers only know their format. Also: the per-feature
 * statistics (norm.c) and a line reader over plain or gzip'd text (lines.c).
 */
#ifndef PD_DATA_IMPL_H
#define PD_DATA_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "paramd/data.h"

/* ---- normalization (norm.c) ---- */

/* Running per-feature sums over the training part. Sums are of x - k with
 * k the feature's first value seen, so a large mean does not swamp the
 * variance; features missing from a sparse row count as zeros. */
typedef struct pd_norm_stats {
    size_t cap;             /* features allocated (grows for LIBSVM) */
    size_t rows;            /* training rows added */
    uint64_t *count;        /* [cap] rows that stored the feature */
    float *min, *max;       /* [cap] over stored values */
    double *k, *s1, *s2;    /* [cap] shift, sum (x-k), sum (x-k)^2 */
} pd_norm_stats;

/* Feature j becomes (x - shift[j]) * inv[j]; inv 0 maps it to 0. */
typedef struct pd_norm {
    size_t d;
    double *shift, *inv;    /* [d] */
} pd_norm;

/* Add one training row: dense x[nnz] when col is NULL, else CSR entries. */
int pd_data_stats_add(pd_norm_stats *st, const float *x, const uint32_t *col, size_t nnz);
/* Turn statistics over d features into a transform. idx_bytes: scale01 is
 * x/255; sparse: keep zeros zero (no shift; scale01 by max |x|). */
int pd_data_norm_make(const pd_norm_stats *st, size_t d, pd_normalize how, bool idx_bytes,
                      bool sparse, pd_norm *out);
void pd_data_norm_apply(const pd_norm *nm, pd_dataset *ds);
void pd_data_stats_free(pd_norm_stats *st);
void pd_data_norm_free(pd_norm *nm);

/* ---- the loader (data.c) ---- */

typedef struct pd_loader {
    const pd_config *cfg;
    pd_dataset *part[3];    /* train, valid, test when asked for, else NULL */
    size_t nnz_cap[3];      /* room in a sparse part's col/val */
    int shard, nshards;
    const char *path;       /* the file being read */
    bool is_test;           /* reading data.test */
    /* plan of the training file */
    uint8_t *held;          /* [nrec] 1 = validation record */
    size_t nrec, rec;       /* records in the file, next record number */
    size_t t, T;            /* training examples seen so far, in all */
    bool parse_all;         /* inference needs every record */
    bool stats_on;          /* normalization needs the training records */
    /* the current record */
    int dst;                /* the part it goes to (index into part), or -1 */
    size_t id;
    bool in_train;
    float score;            /* its curriculum score, when scores is set */
    bool scores;            /* parts keep a score per example (CSV column) */
    /* findings */
    size_t d;               /* features: fixed by a dense file, else max index */
    int classes;            /* softmax/mlp: set or inferred after the training file */
    float max_label;
    bool seen_zero, seen_minus;  /* binary label encodings met */
    pd_norm_stats stats;
    /* labels (labels.c), fixed by the training file's first pass */
    bool survey;            /* that pass hands each label to pd_labels_seen */
    char **seen;            /* [nseen] distinct label texts, sorted (strcmp) */
    long *seen_line;        /* [nseen] the line each was first met on */
    size_t nseen, seen_cap;
    bool seen_word;         /* a label that is not a number */
    bool seen_overflow;     /* too many distinct texts to keep */
    char **names;           /* [nnames] class names in class order, when named */
    size_t *by_name;        /* [nnames] indices into names, sorted by name */
    size_t nnames;
    bool named;             /* labels are class names: y = the name's index */
    bool two;               /* logreg/svm: any two numbers, neg -> -1, pos -> +1 */
    float neg, pos;
    bool minus_one;         /* logreg/svm numbers: -1/+1 rather than 0/1 */
    /* prediction: a test file may come without labels */
    bool unlabeled_ok;      /* PD_PART_UNLABELED was asked for */
    bool no_label;          /* the current record (CSV: file) has none; y = 0 */
} pd_loader;

/* Start a file of nrec records with d features (0: sparse, from indices);
 * allocates the parts it feeds. */
int pd_data_begin(pd_loader *L, const char *path, size_t nrec, size_t d);
/* Advance to the next record (found at `line`, 0 for IDX); *parse is false
 * when it need not be parsed. Fails when a text file grew since counted. */
int pd_data_next(pd_loader *L, long line, bool *parse);
/* After the last record: fails when the file shrank since it was counted. */
int pd_data_end(const pd_loader *L);
/* The current record: label y (checked and mapped here) and features,
 * dense x[d] (col NULL) or CSR (0-based increasing col[nnz], x[nnz]).
 * Messages point at file:line, or at "file: record N" when line is 0. */
int pd_data_add(pd_loader *L, const char *file, long line, float y, const float *x,
                const uint32_t *col, size_t nnz);
/* The feature count a file must have (0: any), and who says so. */
size_t pd_data_expect_d(const pd_loader *L, const char **who);
/* LIBSVM index (1-based) against that count. */
int pd_data_check_index(const pd_loader *L, long line, uint32_t index);

/* ---- labels (labels.c) ---- */

/* The training file's first pass: one record's label text [b, e) at line.
 * words: names are allowed (CSV); otherwise a label that is not a number
 * is left for the parse to report. */
int pd_labels_seen(pd_loader *L, const char *b, const char *e, long line, bool words);
/* After that pass: class names (data.classes, or the labels when one is
 * not a number), a pair of binary labels, or numbers as they are. Checks
 * the names against model.classes and the model. */
int pd_labels_decide(pd_loader *L);
/* A named label [b, e) (column col) -> its class index in *y. */
int pd_labels_lookup(const pd_loader *L, const char *b, const char *e, long line, size_t col,
                     float *y);
/* logreg/svm with names or a pair of numbers: *y -> -1/+1; where = "FILE:LINE". */
int pd_labels_binary(const pd_loader *L, const char *where, float *y);
/* The class names in class order for the data (classes: the class count of
 * softmax/mlp); none for linreg. In one block: the caller frees names[0]
 * (when n > 0), then the array. */
int pd_labels_names(const pd_loader *L, int classes, char ***names, size_t *n);
void pd_labels_free(pd_loader *L);
/* Narrow [*b, *e) to its text without blanks and double quotes around it. */
void pd_labels_trim(const char **b, const char **e);

/* ---- readers ---- */

int pd_data_read_idx(pd_loader *L, const char *images, const char *labels);
int pd_data_read_csv(pd_loader *L, const char *path);
int pd_data_read_libsvm(pd_loader *L, const char *path);

/* Parse the number in [*b, *e), first narrowing the range to its text
 * without surrounding blanks (for messages): 0 ok, 1 not a number, 2 not
 * finite. The character at *e must not continue a number. */
int pd_data_parse_float(const char **b, const char **e, float *out);

/* ---- lines (lines.c): plain or gzip'd text, read in large blocks ---- */

typedef struct pd_lines {
    gzFile f;
    const char *path;
    char *buf;
    size_t cap, beg, end;   /* unread bytes: buf[beg, end) */
    bool eof;
    long lineno;            /* 1-based number of the line last returned */
} pd_lines;

/* The error gzread met on f, as PD_EIO (system) or PD_EINPUT (bad data). */
int pd_data_gz_fail(gzFile f, const char *path);

/* gzopen with a large buffer; a missing file is PD_EINPUT naming it. */
int pd_data_gzopen(const char *path, gzFile *f);
int pd_data_lines_open(pd_lines *L, const char *path);
/* Next line without its newline (or \r\n), NUL-terminated, writable until
 * the next call; *line = NULL at the end of the file. A UTF-8 byte-order
 * mark at the start of the file is dropped. */
int pd_data_lines_next(pd_lines *L, char **line);
void pd_data_lines_close(pd_lines *L);
/* A line holding nothing but blanks, or a comment starting at `comment`
 * (pass 0 for none). */
bool pd_data_blank(const char *s, char comment);
/* Non-blank lines in the file (the cheap first pass); each is handed to
 * each(ctx, line, lineno) when each is not NULL. */
typedef int (*pd_line_fn)(void *ctx, char *line, long lineno);
int pd_data_count_records(const char *path, char comment, pd_line_fn each, void *ctx,
                          size_t *n);

#endif
