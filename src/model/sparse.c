/* The linear path (logreg, svm): one output z = w.x + b read straight from
 * the data (sdot/saxpy on dense rows, CSR loops on sparse rows), so no
 * X[b][D] workspace is needed, and sparse gradients over the features a
 * batch touches. Touched features are found with a mark array sized D at
 * create: only touched entries are set and reset, so a batch costs
 * O(nnz + k log k) for k touched features, never O(D).
 *
 * Lazy l2: the sparse gradient applies l2 only to the touched coordinates,
 * and its loss adds l2/2 w_j^2 over those same coordinates; it is the exact
 * gradient of that reported loss. The dense gradient applies l2 to all of w. */
#include <assert.h>
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/error.h"
#include "model_impl.h"

void pd_model_linear_forward(pd_model *m, const float *theta, const pd_dataset *ds,
                             const size_t *rows, size_t b)
{
    const float *restrict w = theta;   /* [D] */
    float bias = theta[m->D];
    float *restrict z = m->A[0];       /* [b] */
    for (size_t i = 0; i < b; i++) {
        size_t r = rows[i];
        assert(r < ds->n);
        if (!ds->sparse) {
            z[i] = cblas_sdot((int)m->D, ds->x + r * m->D, 1, w, 1) + bias;
            continue;
        }
        float acc = 0.0f;
        for (size_t p = ds->row_ptr[r]; p < ds->row_ptr[r + 1]; p++) {
            assert(ds->col[p] < m->D);
            acc += ds->val[p] * w[ds->col[p]];
        }
        z[i] = acc + bias;
    }
}

/* Forward, loss head and dz[b] = dL_i/dz / b; the bias gradient is sum dz. */
static int forward_head(pd_model *m, const float *theta, const pd_dataset *ds,
                        const size_t *rows, size_t b, double *loss, float *bias_grad)
{
    pd_model_linear_forward(m, theta, ds, rows, b);
    head_sums s = {0};
    float *dz = m->delta[0];
    PD_TRY(pd_model_head(m, m->A[0], ds, rows, b, dz, 1.0f / (float)b, &s));
    float gb = 0.0f;
    for (size_t i = 0; i < b; i++)
        gb += dz[i];
    *bias_grad = gb;
    *loss = s.loss / (double)b;
    return PD_OK;
}

/* g[D] += sum_i dz_i x_i over the batch rows (g zeroed by the caller). */
static void accumulate_dense(const pd_model *m, const pd_dataset *ds, const size_t *rows,
                             size_t b, float *g)
{
    const float *dz = m->delta[0];
    for (size_t i = 0; i < b; i++) {
        if (dz[i] == 0.0f)     /* svm beyond the margin */
            continue;
        size_t r = rows[i];
        if (!ds->sparse) {
            cblas_saxpy((int)m->D, dz[i], ds->x + r * m->D, 1, g, 1);
            continue;
        }
        float *restrict gg = g;
        for (size_t p = ds->row_ptr[r]; p < ds->row_ptr[r + 1]; p++)
            gg[ds->col[p]] += dz[i] * ds->val[p];
    }
}

int pd_model_linear_grad(pd_model *m, const float *theta, const pd_dataset *ds,
                         const size_t *rows, size_t b, float *grad, double *loss)
{
    float gb;
    PD_TRY(forward_head(m, theta, ds, rows, b, loss, &gb));
    memset(grad, 0, m->D * sizeof *grad);
    accumulate_dense(m, ds, rows, b, grad);
    grad[m->D] = gb;
    if (m->l2 > 0.0)
        *loss += pd_model_l2_dense(m, theta, grad);
    return PD_OK;
}

static void sift_down(uint32_t *a, size_t root, size_t n)
{
    uint32_t v = a[root];
    for (;;) {
        size_t c = 2 * root + 1;
        if (c >= n)
            break;
        if (c + 1 < n && a[c + 1] > a[c])
            c++;
        if (a[c] <= v)
            break;
        a[root] = a[c];
        root = c;
    }
    a[root] = v;
}

/* In-place heapsort: no allocation (glibc's qsort may malloc). */
static void sort_u32(uint32_t *a, size_t n)
{
    if (n < 2)
        return;
    for (size_t i = n / 2; i-- > 0;)
        sift_down(a, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        uint32_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, 0, end);
    }
}

/* The features rows[0..b) of a sparse ds touch, increasing, into
 * idx[0..*k). m->mark is all zero before and after. PD_ENOMEM (no message)
 * when there are more than room. */
static int collect_touched(pd_model *m, const pd_dataset *ds, const size_t *rows, size_t b,
                           uint32_t *idx, size_t room, size_t *k_out)
{
    uint32_t *restrict mark = m->mark;
    size_t k = 0;
    for (size_t i = 0; i < b; i++) {
        size_t r = rows[i];
        for (size_t p = ds->row_ptr[r]; p < ds->row_ptr[r + 1]; p++) {
            uint32_t c = ds->col[p];
            if (mark[c])
                continue;
            if (k >= room) {
                for (size_t j = 0; j < k; j++)
                    mark[idx[j]] = 0;
                return PD_ENOMEM;
            }
            mark[c] = 1;
            idx[k++] = c;
        }
    }
    for (size_t j = 0; j < k; j++)
        mark[idx[j]] = 0;
    sort_u32(idx, k);
    *k_out = k;
    return PD_OK;
}

int pd_model_linear_touched(pd_model *m, const pd_dataset *ds, const size_t *rows, size_t b,
                            uint32_t *idx, size_t cap, size_t *n)
{
    size_t D = m->D, k = D;
    if (cap == 0)
        return PD_FAIL(PD_ENOMEM, "touched set has no room for the bias");
    if (!ds->sparse) {
        if (cap < D + 1)
            return PD_FAIL(PD_ENOMEM, "touched set holds %zu entries, a dense batch "
                           "touches %zu", cap, D + 1);
        for (size_t j = 0; j < D; j++)
            idx[j] = (uint32_t)j;
    } else if (collect_touched(m, ds, rows, b, idx, cap - 1, &k) != PD_OK) {
        return PD_FAIL(PD_ENOMEM, "touched set holds %zu entries, the batch touches more",
                       cap);
    }
    idx[k] = (uint32_t)D;
    *n = k + 1;
    return PD_OK;
}

/* Dense rows touch every feature: the sparse gradient is the dense one. */
static int sparse_from_dense(pd_model *m, const float *theta, const pd_dataset *ds,
                             const size_t *rows, size_t b, pd_sparse_grad *g, double *loss)
{
    size_t D = m->D;
    if (g->cap < D + 1)
        return PD_FAIL(PD_ENOMEM, "sparse gradient holds %zu entries, a dense batch "
                       "touches %zu", g->cap, D + 1);
    float gb;
    PD_TRY(forward_head(m, theta, ds, rows, b, loss, &gb));
    memset(g->val, 0, D * sizeof *g->val);
    accumulate_dense(m, ds, rows, b, g->val);
    for (size_t j = 0; j < D; j++)
        g->idx[j] = (uint32_t)j;
    g->idx[D] = (uint32_t)D;
    g->val[D] = gb;
    if (m->l2 > 0.0)
        *loss += pd_model_l2_dense(m, theta, g->val);   /* w is at offset 0 */
    g->nnz = D + 1;
    return PD_OK;
}

int pd_model_linear_grad_sparse(pd_model *m, const float *theta, const pd_dataset *ds,
                                const size_t *rows, size_t b, pd_sparse_grad *g,
                                double *loss)
{
    if (!ds->sparse)
        return sparse_from_dense(m, theta, ds, rows, b, g, loss);
    if (g->cap == 0)
        return PD_FAIL(PD_ENOMEM, "sparse gradient has no room for the bias");
    float gb;
    PD_TRY(forward_head(m, theta, ds, rows, b, loss, &gb));

    /* The touched features, k of them, in g->idx[0..k); one slot kept for
     * the bias. */
    size_t k;
    if (collect_touched(m, ds, rows, b, g->idx, g->cap - 1, &k) != PD_OK) {
        g->nnz = 0;
        return PD_FAIL(PD_ENOMEM, "sparse gradient holds %zu entries, the batch "
                       "touches more", g->cap);
    }
    uint32_t *restrict mark = m->mark;   /* [D], all zero between calls */
    uint32_t *restrict idx = g->idx;

    /* mark[c] = slot + 1, then accumulate dz_i x_ij into slot of j. */
    float *restrict val = g->val;
    for (size_t j = 0; j < k; j++) {
        mark[idx[j]] = (uint32_t)j + 1;
        val[j] = 0.0f;
    }
    const float *dz = m->delta[0];
    for (size_t i = 0; i < b; i++) {
        if (dz[i] == 0.0f)
            continue;
        size_t r = rows[i];
        for (size_t p = ds->row_ptr[r]; p < ds->row_ptr[r + 1]; p++)
            val[mark[ds->col[p]] - 1] += dz[i] * ds->val[p];
    }
    /* Lazy l2 over the touched coordinates only (see the file comment). */
    if (m->l2 > 0.0) {
        const float *restrict w = theta;
        float l2 = (float)m->l2;
        double sum = 0.0;
        for (size_t j = 0; j < k; j++) {
            float wj = w[idx[j]];
            val[j] += l2 * wj;
            sum += (double)wj * wj;
        }
        *loss += 0.5 * m->l2 * sum;
    }
    for (size_t j = 0; j < k; j++)
        mark[idx[j]] = 0;
    idx[k] = (uint32_t)m->D;
    val[k] = gb;
    g->nnz = k + 1;
    return PD_OK;
}

int pd_sparse_grad_init(pd_sparse_grad *g, size_t cap)
{
    memset(g, 0, sizeof *g);
    g->idx = pd_malloc(cap * sizeof *g->idx);
    g->val = pd_malloc(cap * sizeof *g->val);
    if (!g->idx || !g->val) {
        pd_sparse_grad_free(g);
        return PD_ENOMEM;
    }
    g->cap = cap;
    return PD_OK;
}

void pd_sparse_grad_free(pd_sparse_grad *g)
{
    free(g->idx);
    free(g->val);
    memset(g, 0, sizeof *g);
}
