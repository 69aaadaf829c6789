/* Model objects: shape checks, the flat parameter layout (one tensor table,
 * W[out][in] then bias per layer), workspaces carved from one allocation,
 * initialization, evaluation in chunks, per-tensor norms, and the dispatch
 * to the dense (sgemm) path or the linear (sparse-capable) path. */
#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/error.h"
#include "paramd/rng.h"
#include "model_impl.h"

static const char *type_name(pd_model_type t)
{
    switch (t) {
    case PD_MODEL_SOFTMAX: return "softmax";
    case PD_MODEL_MLP:     return "mlp";
    case PD_MODEL_LINREG:  return "linreg";
    case PD_MODEL_LOGREG:  return "logreg";
    case PD_MODEL_SVM:     return "svm";
    }
    return "?";
}

static bool on_linear_path(const pd_model *m)
{
    return m->type == PD_MODEL_LOGREG || m->type == PD_MODEL_SVM;
}

/* Checked size arithmetic: false on overflow. */
static bool mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

static bool add_ok(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return false;
    *out = a + b;
    return true;
}

static int check_config(const pd_model_config *mc, size_t max_batch)
{
    if ((int)mc->type < (int)PD_MODEL_SOFTMAX || (int)mc->type > (int)PD_MODEL_SVM)
        return PD_FAIL(PD_EINPUT, "model.type: unknown model type %d", (int)mc->type);
    if (mc->features <= 0)
        return PD_FAIL(PD_EINPUT, "model.features: must be > 0, got %d", mc->features);
    bool classifier = mc->type == PD_MODEL_SOFTMAX || mc->type == PD_MODEL_MLP;
    if (classifier && mc->classes < 2)
        return PD_FAIL(PD_EINPUT, "model.classes: must be >= 2 for %s, got %d",
                       type_name(mc->type), mc->classes);
    if (mc->type == PD_MODEL_MLP) {
        if (mc->n_hidden < 0 || mc->n_hidden > PD_MAX_HIDDEN)
            return PD_FAIL(PD_EINPUT, "model.hidden: between 0 and %d layers, got %d",
                           PD_MAX_HIDDEN, mc->n_hidden);
        for (int i = 0; i < mc->n_hidden; i++)
            if (mc->hidden[i] <= 0)
                return PD_FAIL(PD_EINPUT, "model.hidden[%d]: must be > 0, got %d", i,
                               mc->hidden[i]);
        if ((int)mc->activation < (int)PD_ACT_RELU ||
            (int)mc->activation > (int)PD_ACT_SIGMOID)
            return PD_FAIL(PD_EINPUT, "model.activation: unknown activation %d",
                           (int)mc->activation);
    }
    if ((int)mc->init < (int)PD_INIT_AUTO || (int)mc->init > (int)PD_INIT_ZERO)
        return PD_FAIL(PD_EINPUT, "model.init: unknown init %d", (int)mc->init);
    if (!(mc->l2 >= 0.0) || !isfinite(mc->l2))
        return PD_FAIL(PD_EINPUT, "model.l2: must be finite and >= 0, got %g", mc->l2);
    if (max_batch == 0 || max_batch > INT_MAX)
        return PD_FAIL(PD_EINPUT, "batch size: must be in 1..%d, got %zu", INT_MAX, max_batch);
    return PD_OK;
}

/* Fill widths and the tensor table; fails if the parameter count overflows
 * (or exceeds the uint32 indices of sparse gradients on the linear path). */
static int build_layout(pd_model *m, const pd_model_config *mc)
{
    bool mlp = m->type == PD_MODEL_MLP;
    m->nlayers = mlp ? (size_t)mc->n_hidden + 1 : 1;
    m->width[0] = m->D;
    for (size_t l = 1; l < m->nlayers; l++)
        m->width[l] = (size_t)mc->hidden[l - 1];
    m->width[m->nlayers] = m->K;

    size_t off = 0;
    for (size_t l = 0; l < m->nlayers; l++) {
        pd_tensor_info *w = &m->t[2 * l], *b = &m->t[2 * l + 1];
        /* W_l[width[l+1]][width[l]], then b_l[width[l+1]] */
        *w = (pd_tensor_info){.rows = m->width[l + 1], .cols = m->width[l], .offset = off,
                              .is_weight = true};
        size_t nw;
        if (!mul_ok(w->rows, w->cols, &nw) || !add_ok(off, nw, &off))
            goto overflow;
        *b = (pd_tensor_info){.rows = m->width[l + 1], .cols = 1, .offset = off,
                              .is_weight = false};
        if (!add_ok(off, b->rows, &off))
            goto overflow;
        if (mlp) {
            snprintf(w->name, sizeof w->name, "W%u", (unsigned)(l + 1));
            snprintf(b->name, sizeof b->name, "b%u", (unsigned)(l + 1));
        } else {
            snprintf(w->name, sizeof w->name, "%s", m->type == PD_MODEL_SOFTMAX ? "W" : "w");
            snprintf(b->name, sizeof b->name, "b");
        }
    }
    m->nparams = off;
    m->ntensors = 2 * m->nlayers;
    if (on_linear_path(m) && m->nparams > UINT32_MAX)
        goto overflow;
    return PD_OK;
overflow:
    return PD_FAIL(PD_EINPUT, "model: too many parameters for %s with %zu features",
                   type_name(m->type), m->D);
}

/* Region sizes in floats, rounded up to 64 bytes: each workspace starts on
 * a cache line relative to the block (malloc aligns the block to 16). */
static size_t round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static int alloc_workspaces(pd_model *m)
{
    size_t B = m->max_batch, total = 0, sizes[2 * PD_MAX_LAYERS + 3] = {0}, n;
    size_t k = 0;
    if (on_linear_path(m)) {
        sizes[k++] = round16(B);                 /* A[0] = z[B] */
        sizes[k++] = round16(B);                 /* delta[0] = dz[B] */
    } else {
        size_t maxw = 0;
        for (size_t l = 1; l <= m->nlayers; l++)
            maxw = m->width[l] > maxw ? m->width[l] : maxw;
        if (!mul_ok(B, m->D, &n))
            goto overflow;
        sizes[k++] = round16(n);                 /* X[B][D] */
        for (size_t l = 0; l < m->nlayers; l++) {
            if (!mul_ok(B, m->width[l + 1], &n))
                goto overflow;
            sizes[k++] = round16(n);             /* A[l][B][width[l+1]] */
        }
        if (!mul_ok(B, maxw, &n))
            goto overflow;
        sizes[k++] = round16(n);                 /* delta[0] */
        sizes[k++] = round16(n);                 /* delta[1] */
    }
    for (size_t i = 0; i < k; i++)
        if (!add_ok(total, sizes[i], &total) || total > SIZE_MAX / sizeof(float))
            goto overflow;
    m->ws = pd_malloc(total * sizeof(float));
    if (!m->ws)
        return PD_ENOMEM;

    float *p = m->ws;
    k = 0;
    if (on_linear_path(m)) {
        m->A[0] = p;
        p += sizes[k++];
        m->delta[0] = p;
        m->mark = pd_calloc(m->D, sizeof *m->mark);
        if (!m->mark)
            return PD_ENOMEM;
    } else {
        m->X = p;
        p += sizes[k++];
        for (size_t l = 0; l < m->nlayers; l++) {
            m->A[l] = p;
            p += sizes[k++];
        }
        m->delta[0] = p;
        p += sizes[k++];
        m->delta[1] = p;
    }
    m->rows = pd_malloc(B * sizeof *m->rows);
    if (!m->rows)
        return PD_ENOMEM;
    return PD_OK;
overflow:
    return PD_FAIL(PD_EINPUT, "model: workspace for batches of %zu rows of %zu features "
                   "does not fit in memory", B, m->D);
}

int pd_model_create(const pd_model_config *mc, size_t max_batch, pd_model **out)
{
    *out = NULL;
    PD_TRY(check_config(mc, max_batch));
    int err = PD_OK;
    pd_model *m = pd_calloc(1, sizeof *m);
    if (!m)
        return PD_ENOMEM;
    m->type = mc->type;
    m->act = mc->activation;
    m->init = mc->init;
    m->l2 = mc->l2;
    m->D = (size_t)mc->features;
    m->K = m->type == PD_MODEL_SOFTMAX || m->type == PD_MODEL_MLP ? (size_t)mc->classes : 1;
    m->max_batch = max_batch;
    PD_TRY_GOTO(err, build_layout(m, mc), fail);
    PD_TRY_GOTO(err, alloc_workspaces(m), fail);
    *out = m;
    return PD_OK;
fail:
    pd_model_destroy(&m);
    return err;
}

int pd_model_create_for(const pd_model_config *mc, const pd_data *d, size_t max_batch,
                        pd_model **out)
{
    pd_model_config m = *mc;
    m.features = (int)pd_data_features(d);
    if (m.classes == 0)
        m.classes = pd_data_classes(d);
    return pd_model_create(&m, max_batch, out);
}

void pd_model_destroy(pd_model **pm)
{
    if (!pm || !*pm)
        return;
    pd_model *m = *pm;
    free(m->rows);
    free(m->mark);
    free(m->cws);
    free(m->ws);
    free(m);
    *pm = NULL;
}

size_t pd_model_nparams(const pd_model *m) { return m->nparams; }
size_t pd_model_ntensors(const pd_model *m) { return m->ntensors; }
bool pd_model_is_sparse(const pd_model *m) { return on_linear_path(m); }

const pd_tensor_info *pd_model_tensor(const pd_model *m, size_t i)
{
    return i < m->ntensors ? &m->t[i] : NULL;
}

static pd_init resolve_init(const pd_model *m)
{
    if (m->init != PD_INIT_AUTO)
        return m->init;
    if (m->type != PD_MODEL_MLP)
        return PD_INIT_ZERO;   /* convex models: zero is a fine, reproducible start */
    return m->act == PD_ACT_RELU ? PD_INIT_HE : PD_INIT_GLOROT;
}

void pd_model_init(const pd_model *m, float *theta, uint64_t seed)
{
    memset(theta, 0, m->nparams * sizeof *theta);
    pd_init init = resolve_init(m);
    if (init == PD_INIT_ZERO)
        return;
    /* One stream, drawn in layout order: the result depends on the seed and
     * the shapes only. Biases stay zero. */
    pd_rng r = pd_rng_make(seed, PD_STREAM_INIT, 0);
    for (size_t l = 0; l < m->nlayers; l++) {
        const pd_tensor_info *t = &m->t[2 * l];
        double fan_in = (double)t->cols, fan_out = (double)t->rows;
        double bound = init == PD_INIT_HE ? sqrt(6.0 / fan_in) : sqrt(6.0 / (fan_in + fan_out));
        float *w = theta + t->offset;   /* [rows][cols] */
        for (size_t i = 0; i < t->rows * t->cols; i++)
            w[i] = (float)((2.0 * pd_rng_uniform(&r) - 1.0) * bound);
    }
}

double pd_model_l2_dense(const pd_model *m, const float *theta, float *grad)
{
    double sum = 0.0;
    float l2 = (float)m->l2;
    for (size_t l = 0; l < m->nlayers; l++) {
        const pd_tensor_info *t = &m->t[2 * l];
        size_t n = t->rows * t->cols;
        const float *restrict w = theta + t->offset;
        for (size_t i = 0; i < n; i++)
            sum += (double)w[i] * w[i];
        if (grad) {
            float *restrict g = grad + t->offset;
            for (size_t i = 0; i < n; i++)
                g[i] += l2 * w[i];
        }
    }
    return 0.5 * m->l2 * sum;
}

/* Data-shape checks every entry point makes (people's mistakes: a test set
 * with another feature count). CSR columns < ds->d is the data module's
 * contract, asserted in the loops. */
static int check_data(const pd_model *m, const pd_dataset *ds)
{
    if (ds->sparse) {
        if (!ds->row_ptr || ds->d > m->D)
            return PD_FAIL(PD_EINPUT, "sparse data has %zu features, more than the %zu "
                           "of the %s model", ds->d, m->D, type_name(m->type));
    } else if (!ds->x || ds->d != m->D) {
        return PD_FAIL(PD_EINPUT, "data has %zu features, the %s model expects %zu",
                       ds->d, type_name(m->type), m->D);
    }
    return PD_OK;
}

int pd_model_check_data(const pd_model *m, const pd_dataset *ds)
{
    return check_data(m, ds);
}

int pd_model_grad(pd_model *m, const float *theta, const pd_dataset *ds,
                  const size_t *rows, size_t b, float *grad, double *loss)
{
    assert(b >= 1 && b <= m->max_batch);
    PD_TRY(check_data(m, ds));
    if (on_linear_path(m))
        PD_TRY(pd_model_linear_grad(m, theta, ds, rows, b, grad, loss));
    else
        PD_TRY(pd_model_dense_grad(m, theta, ds, rows, b, grad, NULL, loss));
    return PD_OK;
}

int pd_model_grad_sparse(pd_model *m, const float *theta, const pd_dataset *ds,
                         const size_t *rows, size_t b, pd_sparse_grad *g, double *loss)
{
    assert(on_linear_path(m));
    assert(b >= 1 && b <= m->max_batch);
    PD_TRY(check_data(m, ds));
    PD_TRY(pd_model_linear_grad_sparse(m, theta, ds, rows, b, g, loss));
    return PD_OK;
}

int pd_model_touched(pd_model *m, const pd_dataset *ds, const size_t *rows, size_t b,
                     uint32_t *idx, size_t cap, size_t *n)
{
    assert(on_linear_path(m));
    PD_TRY(check_data(m, ds));
    return pd_model_linear_touched(m, ds, rows, b, idx, cap, n);
}

int pd_model_eval(pd_model *m, const float *theta, const pd_dataset *ds, pd_eval *out)
{
    PD_TRY(check_data(m, ds));
    head_sums s = {0};
    for (size_t start = 0; start < ds->n; start += m->max_batch) {
        size_t k = ds->n - start < m->max_batch ? ds->n - start : m->max_batch;
        for (size_t i = 0; i < k; i++)
            m->rows[i] = start + i;
        if (on_linear_path(m))
            pd_model_linear_forward(m, theta, ds, m->rows, k);
        else
            pd_model_dense_forward(m, theta, ds, m->rows, k);
        PD_TRY(pd_model_head(m, m->A[m->nlayers - 1], ds, m->rows, k, NULL, 0.0f, &s));
    }
    double n = (double)ds->n;
    out->n = ds->n;
    out->loss = ds->n ? s.loss / n : NAN;
    out->accuracy = m->type != PD_MODEL_LINREG && ds->n ? (double)s.correct / n : NAN;
    out->rmse = m->type == PD_MODEL_LINREG && ds->n ? sqrt(s.sse / n) : NAN;
    return PD_OK;
}

int pd_model_losses(pd_model *m, const float *theta, const pd_dataset *ds,
                    const size_t *rows, size_t b, float *loss)
{
    assert(b <= m->max_batch);
    PD_TRY(check_data(m, ds));
    if (b == 0)
        return PD_OK;
    if (on_linear_path(m))
        pd_model_linear_forward(m, theta, ds, rows, b);
    else
        pd_model_dense_forward(m, theta, ds, rows, b);
    const float *z = m->A[m->nlayers - 1];   /* [b][K] outputs (K = 1 on the linear path) */
    for (size_t i = 0; i < b; i++) {
        head_sums s = {0};
        PD_TRY(pd_model_head(m, z + i * m->K, ds, rows + i, 1, NULL, 0.0f, &s));
        loss[i] = (float)s.loss;
    }
    return PD_OK;
}

size_t pd_model_noutputs(const pd_model *m) { return m->K; }

int pd_model_outputs(pd_model *m, const float *theta, const pd_dataset *ds, const size_t *rows,
                     size_t b, const float **z)
{
    assert(b <= m->max_batch);
    PD_TRY(check_data(m, ds));
    if (on_linear_path(m))
        pd_model_linear_forward(m, theta, ds, rows, b);
    else if (b > 0)
        pd_model_dense_forward(m, theta, ds, rows, b);
    *z = m->A[m->nlayers - 1];
    return PD_OK;
}

void pd_model_tensor_sumsq_range(const pd_model *m, const float *v, size_t lo, size_t hi,
                                 double *sq)
{
    pd_model_tensor_sumsq_slice(m, v + lo, lo, hi, sq);
}

void pd_model_tensor_sumsq_slice(const pd_model *m, const float *v_range, size_t lo, size_t hi,
                                 double *sq)
{
    for (size_t i = 0; i < m->ntensors; i++) {
        const pd_tensor_info *t = &m->t[i];
        size_t a = t->offset > lo ? t->offset : lo;
        size_t b = t->offset + t->rows * t->cols < hi ? t->offset + t->rows * t->cols : hi;
        double sum = 0.0;
        for (size_t j = a; j < b; j++)
            sum += (double)v_range[j - lo] * v_range[j - lo];
        sq[i] = sum;
    }
}

void pd_model_tensor_sumsq_sparse(const pd_model *m, const uint32_t *idx, const float *val,
                                  size_t nnz, double *sq)
{
    size_t i = 0;
    for (size_t t = 0; t < m->ntensors; t++)
        sq[t] = 0.0;
    for (size_t j = 0; j < nnz; j++) {
        /* idx increases: the tensor index only moves forward */
        while (idx[j] >= m->t[i].offset + m->t[i].rows * m->t[i].cols)
            i++;
        sq[i] += (double)val[j] * val[j];
    }
}

void pd_model_tensor_norms(const pd_model *m, const float *v, double *norms)
{
    pd_model_tensor_sumsq_range(m, v, 0, m->nparams, norms);
    for (size_t i = 0; i < m->ntensors; i++)
        norms[i] = sqrt(norms[i]);
}
