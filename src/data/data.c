/* pd_data_load: which record goes where (validation hold-out, training
 * part, this rank's shard), label checks and class/feature inference,
 * storage of the parts asked for, then normalization. Readers (idx.c,
 * csv.c, libsvm.c) feed records through pd_data_begin / next / add; every
 * record of the training file is visited in order by every rank, but only
 * parsed when this rank stores it or needs it for inference or statistics.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data_impl.h"
#include "paramd/error.h"

enum { TRAIN, VALID, TEST };

/* The most classes the labels may imply when model.classes is 0: a label
 * beyond it is far more often a wrong label column than a class, and its
 * count would size the class names and the model. model.classes set
 * explicitly allows more (up to what the model's size check accepts). */
#define INFERRED_CLASSES_MAX 65536

struct pd_data {
    pd_dataset part[3];     /* TRAIN, VALID, TEST */
    bool have[3];
    size_t train_total, features;
    int classes;
    char **class_names;     /* [nclass_names] in class order (labels.c) */
    size_t nclass_names;
    pd_norm norm;           /* what was applied to every part */
};

static bool is_classifier(pd_model_type t) { return t == PD_MODEL_SOFTMAX || t == PD_MODEL_MLP; }
static bool is_binary(pd_model_type t) { return t == PD_MODEL_LOGREG || t == PD_MODEL_SVM; }

/* ---- plan: validation hold-out and shard ---- */

static int plan(pd_loader *L)
{
    double f = L->cfg->data.validation_fraction;
    size_t N = L->nrec;
    if (!(f >= 0 && f < 1))
        return PD_FAIL(PD_EINPUT, "data.validation_fraction: %g is not in [0, 1)", f);
    size_t nv = (size_t)floor(f * (double)N + 0.5);
    if (nv >= N)
        return PD_FAIL(PD_EINPUT, "%s: data.validation_fraction %g leaves no training "
                       "example of %zu record%s", L->path, f, N, N == 1 ? "" : "s");
    L->held = pd_calloc(N, 1);
    size_t *perm = pd_malloc(N * sizeof *perm);
    if (!L->held || !perm) {
        free(perm);
        return PD_ENOMEM;
    }
    for (size_t i = 0; i < N; i++)
        perm[i] = i;
    pd_rng r = pd_rng_make(L->cfg->run.seed, PD_STREAM_SPLIT, 0);
    pd_rng_shuffle(&r, perm, N);
    for (size_t i = 0; i < nv; i++)
        L->held[perm[i]] = 1;
    free(perm);
    L->T = N - nv;
    return PD_OK;
}

static size_t block_start(const pd_loader *L, size_t w)
{
    return w * L->T / (size_t)L->nshards;
}

static bool in_shard(const pd_loader *L, size_t t)
{
    size_t w = (size_t)L->shard, W = (size_t)L->nshards;
    if (L->cfg->data.shard == PD_SHARD_STRIDED)
        return t % W == w;
    return t >= block_start(L, w) && t < block_start(L, w + 1);
}

static size_t shard_size(const pd_loader *L)
{
    size_t w = (size_t)L->shard, W = (size_t)L->nshards;
    if (L->cfg->data.shard == PD_SHARD_STRIDED)
        return L->T > w ? (L->T - 1 - w) / W + 1 : 0;
    return block_start(L, w + 1) - block_start(L, w);
}

/* Room for n rows: dense x[n][d], or CSR with col/val grown on demand. */
static int alloc_part(pd_loader *L, int p, size_t n, size_t d)
{
    pd_dataset *ds = L->part[p];
    ds->d = d;
    ds->sparse = d == 0;
    ds->y = pd_malloc(n * sizeof *ds->y);
    ds->id = pd_malloc(n * sizeof *ds->id);
    if (!ds->y || !ds->id)
        return PD_ENOMEM;
    if (L->scores) {
        ds->score = pd_malloc((n ? n : 1) * sizeof *ds->score);
        if (!ds->score)
            return PD_ENOMEM;
    }
    if (!ds->sparse) {
        if (n > SIZE_MAX / sizeof(float) / d)
            return PD_FAIL(PD_ENOMEM, "%s: %zu x %zu features do not fit in memory",
                           L->path, n, d);
        ds->x = pd_malloc(n * d * sizeof *ds->x);
        return ds->x ? PD_OK : PD_ENOMEM;
    }
    L->nnz_cap[p] = 1024;
    ds->row_ptr = pd_calloc(n + 1, sizeof *ds->row_ptr);
    ds->col = pd_malloc(L->nnz_cap[p] * sizeof *ds->col);
    ds->val = pd_malloc(L->nnz_cap[p] * sizeof *ds->val);
    return ds->row_ptr && ds->col && ds->val ? PD_OK : PD_ENOMEM;
}

int pd_data_begin(pd_loader *L, const char *path, size_t nrec, size_t d)
{
    L->path = path;
    L->nrec = nrec;
    L->rec = 0;
    L->t = 0;
    if (nrec == 0)
        return PD_FAIL(PD_EINPUT, "%s: no records", path);
    if (d)
        L->d = d;
    if (L->is_test)
        return alloc_part(L, TEST, nrec, d);
    PD_TRY(pd_labels_decide(L));
    PD_TRY(plan(L));
    if (L->part[TRAIN])
        PD_TRY(alloc_part(L, TRAIN, shard_size(L), d));
    if (L->part[VALID])
        PD_TRY(alloc_part(L, VALID, nrec - L->T, d));
    return PD_OK;
}

int pd_data_next(pd_loader *L, long line, bool *parse)
{
    if (L->rec == L->nrec)
        return PD_FAIL(PD_EINPUT, "%s:%ld: the file changed while being read", L->path, line);
    size_t r = L->rec++;
    L->dst = -1;
    L->in_train = false;
    if (L->is_test) {
        L->dst = TEST;
        L->id = r;
    } else if (L->held[r]) {
        L->dst = L->part[VALID] ? VALID : -1;
        L->id = r;
    } else {
        L->in_train = true;
        L->id = L->t++;
        L->dst = L->part[TRAIN] && in_shard(L, L->id) ? TRAIN : -1;
    }
    *parse = L->dst >= 0 || L->parse_all || (L->in_train && L->stats_on);
    return PD_OK;
}

int pd_data_end(const pd_loader *L)
{
    if (L->rec != L->nrec)
        return PD_FAIL(PD_EINPUT, "%s: the file changed while being read", L->path);
    return PD_OK;
}

/* ---- one record ---- */

static int check_label(pd_loader *L, const char *file, long line, float *y)
{
    pd_model_type t = L->cfg->model.type;
    float v = *y;
    if (t == PD_MODEL_LINREG)
        return PD_OK;
    char w[PD_PATH_MAX + 48];
    if (line > 0)
        snprintf(w, sizeof w, "%s:%ld", file, line);
    else
        snprintf(w, sizeof w, "%s: record %zu", file, L->rec - 1);
    if (is_binary(t) && (L->named || L->two))
        return pd_labels_binary(L, w, y);
    if (is_binary(t)) {
        if (v != 0 && v != 1 && v != -1)
            return PD_FAIL(PD_EINPUT, "%s: label %g is not binary (expected 0/1 or -1/+1)",
                           w, (double)v);
        /* 0 and -1 both mean the negative class only within one encoding. */
        if ((v == 0 && L->seen_minus) || (v == -1 && L->seen_zero))
            return PD_FAIL(PD_EINPUT, "%s: label %g mixes the 0/1 and -1/+1 label encodings",
                           w, (double)v);
        L->seen_zero |= v == 0;
        L->seen_minus |= v == -1;
        *y = v == 1 ? 1.0f : -1.0f;
        return PD_OK;
    }
    int C = L->cfg->model.classes > 0 ? L->cfg->model.classes : L->is_test ? L->classes : 0;
    if (v != floorf(v) || (C == 0 && v < 0))
        return PD_FAIL(PD_EINPUT, "%s: label %g is not a class id (an integer >= 0)", w,
                       (double)v);
    if (C > 0 && (v < 0 || v >= (float)C))
        return PD_FAIL(PD_EINPUT, "%s: label %g out of range [0, %d)", w, (double)v, C);
    if (C == 0 && v >= (float)INFERRED_CLASSES_MAX)
        return PD_FAIL(PD_EINPUT, "%s: label %g would make %.0f classes; paramd infers at most "
                       "%d from the labels (set model.classes for more, or check the label "
                       "column)", w, (double)v, (double)v + 1, INFERRED_CLASSES_MAX);
    if (!L->is_test && v > L->max_label)
        L->max_label = v;
    return PD_OK;
}

static int store(pd_loader *L, float y, const float *x, const uint32_t *col, size_t nnz)
{
    pd_dataset *ds = L->part[L->dst];
    size_t i = ds->n;
    if (!ds->sparse) {
        memcpy(ds->x + i * ds->d, x, ds->d * sizeof *x);
    } else {
        size_t at = ds->row_ptr[i];
        size_t *cap = &L->nnz_cap[L->dst];
        if (at + nnz > *cap) {
            size_t nc = *cap;
            while (nc < at + nnz)
                nc *= 2;
            uint32_t *c = realloc(ds->col, nc * sizeof *c);
            if (c)
                ds->col = c;
            float *v = c ? realloc(ds->val, nc * sizeof *v) : NULL;
            if (!v)
                return PD_FAIL(PD_ENOMEM, "%s: out of memory for %zu stored entries",
                               L->path, nc);
            ds->val = v;
            *cap = nc;
        }
        memcpy(ds->col + at, col, nnz * sizeof *col);
        memcpy(ds->val + at, x, nnz * sizeof *x);
        ds->row_ptr[i + 1] = at + nnz;
    }
    ds->y[i] = y;
    ds->id[i] = L->id;
    if (ds->score)
        ds->score[i] = L->score;
    ds->n = i + 1;
    return PD_OK;
}

int pd_data_add(pd_loader *L, const char *file, long line, float y, const float *x,
                const uint32_t *col, size_t nnz)
{
    if (!L->no_label)
        PD_TRY(check_label(L, file, line, &y));
    if (col && nnz && !L->is_test && (size_t)col[nnz - 1] + 1 > L->d)
        L->d = (size_t)col[nnz - 1] + 1;
    if (L->in_train && L->stats_on)
        PD_TRY(pd_data_stats_add(&L->stats, x, col, nnz));
    if (L->dst >= 0)
        PD_TRY(store(L, y, x, col, nnz));
    return PD_OK;
}

size_t pd_data_expect_d(const pd_loader *L, const char **who)
{
    *who = NULL;
    if (L->cfg->model.features > 0) {
        *who = "model.features";
        return (size_t)L->cfg->model.features;
    }
    if (L->is_test) {
        *who = "the training file";
        return L->d;
    }
    return 0;
}

int pd_data_check_index(const pd_loader *L, long line, uint32_t index)
{
    const char *who;
    size_t max = pd_data_expect_d(L, &who);
    if (max && index > max)
        return PD_FAIL(PD_EINPUT, "%s:%ld: index %u beyond %zu features (%s)", L->path, line,
                       index, max, who);
    return PD_OK;
}

/* ---- the whole load ---- */

static int check_config(const pd_config *cfg)
{
    const pd_data_config *dc = &cfg->data;
    const char *src = cfg->source[0] ? cfg->source : "config";
    if (!dc->train[0])
        return PD_FAIL(PD_EINPUT, "%s: data.train: no training file given", src);
    if (dc->format == PD_FMT_IDX && !dc->train_labels[0])
        return PD_FAIL(PD_EINPUT, "%s: data.train_labels: required with data.format idx", src);
    if (dc->format == PD_FMT_IDX && dc->test[0] && !dc->test_labels[0])
        return PD_FAIL(PD_EINPUT, "%s: data.test_labels: required with data.format idx "
                       "and a data.test file", src);
    return PD_OK;
}

static int read_file(pd_loader *L, const char *path, const char *labels)
{
    switch (L->cfg->data.format) {
    case PD_FMT_IDX:
        return pd_data_read_idx(L, path, labels);
    case PD_FMT_CSV:
        return pd_data_read_csv(L, path);
    case PD_FMT_LIBSVM:
        return pd_data_read_libsvm(L, path);
    }
    return PD_FAIL(PD_EINPUT, "data.format: unknown format %d", (int)L->cfg->data.format);
}

/* Features and classes the training file fixes for everything after it. */
static int finish_train(pd_loader *L)
{
    const pd_model_config *mc = &L->cfg->model;
    if (mc->features > 0)
        L->d = (size_t)mc->features;
    if (L->d == 0)
        return PD_FAIL(PD_EINPUT, "%s: no record has a feature; set model.features", L->path);
    if (is_classifier(mc->type))
        L->classes = L->named ? (int)L->nnames
                     : mc->classes > 0 ? mc->classes : (int)L->max_label + 1;
    return PD_OK;
}

/* LIBSVM rows for a dense model: scatter the CSR part into x[n][d]. */
static int densify(pd_dataset *ds, size_t d)
{
    if (ds->n > SIZE_MAX / sizeof(float) / d)
        return PD_FAIL(PD_ENOMEM, "%zu x %zu dense features do not fit in memory", ds->n, d);
    float *x = pd_calloc(ds->n * d, sizeof *x);
    if (!x)
        return PD_ENOMEM;
    for (size_t i = 0; i < ds->n; i++)
        for (size_t p = ds->row_ptr[i]; p < ds->row_ptr[i + 1]; p++)
            x[i * d + ds->col[p]] = ds->val[p];
    free(ds->row_ptr);
    free(ds->col);
    free(ds->val);
    ds->row_ptr = NULL;
    ds->col = NULL;
    ds->val = NULL;
    ds->x = x;
    ds->sparse = false;
    return PD_OK;
}

int pd_data_load(const pd_config *cfg, int shard, int nshards, unsigned parts, pd_data **out)
{
    assert(nshards >= 1 && shard >= 0 && shard < nshards);
    *out = NULL;
    PD_TRY(check_config(cfg));
    const pd_data_config *dc = &cfg->data;
    const pd_model_config *mc = &cfg->model;
    pd_data *d = pd_calloc(1, sizeof *d);
    if (!d)
        return PD_ENOMEM;
    bool svm = dc->format == PD_FMT_LIBSVM;
    bool sparse_out = svm && is_binary(mc->type);
    pd_loader L = {.cfg = cfg, .shard = shard, .nshards = nshards, .max_label = -1,
                   .unlabeled_ok = (parts & PD_PART_UNLABELED) != 0};
    L.scores = dc->format == PD_FMT_CSV && dc->curriculum.type == PD_CURRICULUM_COLUMN;
    L.survey = dc->format != PD_FMT_IDX && !dc->classes[0] &&
               (is_binary(mc->type) || (is_classifier(mc->type) && dc->format == PD_FMT_CSV));
    L.parse_all = (svm && mc->features <= 0) || (is_classifier(mc->type) && mc->classes <= 0);
    /* A shape-only load (no parts) needs no statistics. */
    pd_normalize norm = parts ? dc->normalize : PD_NORM_NONE;
    L.stats_on = norm == PD_NORM_STANDARDIZE ||
                 (norm == PD_NORM_SCALE01 && dc->format != PD_FMT_IDX);
    const unsigned mask[3] = {PD_PART_TRAIN, PD_PART_VALID, PD_PART_TEST};
    for (int p = TRAIN; p <= VALID; p++)
        if (parts & mask[p]) {
            d->have[p] = true;
            L.part[p] = &d->part[p];
        }
    pd_norm nm = {0};
    int err = PD_OK;
    PD_TRY_GOTO(err, read_file(&L, dc->train, dc->train_labels), fail);
    PD_TRY_GOTO(err, finish_train(&L), fail);
    PD_TRY_GOTO(err, pd_labels_names(&L, L.classes, &d->class_names, &d->nclass_names), fail);
    PD_TRY_GOTO(err, pd_data_norm_make(&L.stats, L.d, norm,
                                       dc->format == PD_FMT_IDX, sparse_out, &nm), fail);
    if (parts & PD_PART_TEST) {
        d->have[TEST] = true;
        L.part[TEST] = &d->part[TEST];
        L.is_test = true;
        if (dc->test[0])
            PD_TRY_GOTO(err, read_file(&L, dc->test, dc->test_labels), fail);
        else
            PD_TRY_GOTO(err, alloc_part(&L, TEST, 0, svm ? 0 : L.d), fail);
    }
    for (int p = TRAIN; p <= TEST; p++) {
        if (!d->have[p])
            continue;
        d->part[p].d = L.d;
        if (svm && !sparse_out)
            PD_TRY_GOTO(err, densify(&d->part[p], L.d), fail);
        pd_data_norm_apply(&nm, &d->part[p]);
    }
    d->train_total = L.T;
    d->features = L.d;
    d->classes = L.classes;
    d->norm = nm;
    memset(&nm, 0, sizeof nm);
    *out = d;
fail:
    pd_data_norm_free(&nm);
    pd_data_stats_free(&L.stats);
    pd_labels_free(&L);
    free(L.held);
    if (err != PD_OK)
        pd_data_destroy(&d);
    return err;
}

void pd_data_destroy(pd_data **pd)
{
    pd_data *d = pd ? *pd : NULL;
    if (!d)
        return;
    for (int p = TRAIN; p <= TEST; p++) {
        pd_dataset *ds = &d->part[p];
        free(ds->x);
        free(ds->row_ptr);
        free(ds->col);
        free(ds->val);
        free(ds->y);
        free(ds->id);
        free(ds->score);
    }
    if (d->nclass_names)
        free(d->class_names[0]);   /* the names' block (labels.c) */
    free(d->class_names);
    pd_data_norm_free(&d->norm);
    free(d);
    *pd = NULL;
}

const pd_dataset *pd_data_part(const pd_data *d, pd_part part)
{
    int p = part == PD_PART_TRAIN ? TRAIN : part == PD_PART_VALID ? VALID : TEST;
    return d->have[p] ? &d->part[p] : NULL;
}

size_t pd_data_train_total(const pd_data *d) { return d->train_total; }
size_t pd_data_features(const pd_data *d) { return d->features; }
int pd_data_classes(const pd_data *d) { return d->classes; }

const char *const *pd_data_class_names(const pd_data *d, size_t *n)
{
    *n = d->nclass_names;
    return (const char *const *)d->class_names;
}

bool pd_data_normalization(const pd_data *d, size_t *n, const double **shift,
                           const double **scale)
{
    *n = d->norm.d;
    *shift = d->norm.shift;
    *scale = d->norm.inv;
    return d->norm.d > 0;
}
