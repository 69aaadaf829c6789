/* The dense path (softmax, mlp, linreg): batch rows gathered into X[b][D]
 * (or read in place when they are consecutive), each affine layer one
 * sgemm forward and two backward (ggml habit: assert the shapes, then call
 * cblas_sgemm), bias and activation loops kept flat and vectorizable and
 * fused so that each of them is one pass over its matrix. Naive references
 * for every kernel live in the test. */
#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "paramd/error.h"
#include "model_impl.h"

static void assert_shape(size_t b, size_t n_in, size_t n_out)
{
    assert(b > 0 && n_in > 0 && n_out > 0);
    assert(b <= INT_MAX && n_in <= INT_MAX && n_out <= INT_MAX);
    (void)b, (void)n_in, (void)n_out;
}

/* C[m][n] = op(A) op(B), row-major. OpenBLAS clears C for beta = 0 with
 * its own beta pass (sgemm_beta), a slow loop: on this project's bench
 * machines a cleared C and beta = 1 is 5-10 % faster over the MLP's calls
 * and gives the same bits (the kernels add their products to C either way;
 * C starts as +0.0 in both). */
static void sgemm0(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                   const float *A, int lda, const float *B, int ldb, float *C)
{
    memset(C, 0, (size_t)m * (size_t)n * sizeof *C);
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, A, lda, B, ldb, 1.0f, C, n);
}

/* z = f(z + bias) row by row, f the identity when act is NULL: one pass. */
static void bias_act(float *Z, const float *bias, size_t b, size_t n, const pd_activation *act)
{
    const float *restrict bb = bias;
    for (size_t i = 0; i < b; i++) {
        float *restrict z = Z + i * n;
        if (!act) {
            for (size_t j = 0; j < n; j++)
                z[j] += bb[j];
            continue;
        }
        switch (*act) {
        case PD_ACT_RELU:
            for (size_t j = 0; j < n; j++) {
                float v = z[j] + bb[j];
                z[j] = v < 0.0f ? 0.0f : v;   /* NaN passes through */
            }
            break;
        case PD_ACT_TANH:
            for (size_t j = 0; j < n; j++)
                z[j] = tanhf(z[j] + bb[j]);
            break;
        case PD_ACT_SIGMOID:
            for (size_t j = 0; j < n; j++)
                z[j] = 1.0f / (1.0f + expf(-(z[j] + bb[j])));
            break;
        }
    }
}

void pd_model_affine_fwd(const float *A, const float *W, const float *bias,
                         size_t b, size_t n_in, size_t n_out, const pd_activation *act,
                         float *Z)
{
    assert_shape(b, n_in, n_out);
    int nb = (int)b, ni = (int)n_in, no = (int)n_out;
    /* Z[b][n_out] = A[b][n_in] . W[n_out][n_in]^T */
    sgemm0(CblasNoTrans, CblasTrans, nb, no, ni, A, ni, W, ni, Z);
    bias_act(Z, bias, b, n_out, act);
}

/* g[n] = sum over the b rows of d[b][n], row after row. */
static void colsum(const float *d, size_t b, size_t n, float *g)
{
    float *restrict s = g;
    memset(s, 0, n * sizeof *s);
    for (size_t i = 0; i < b; i++) {
        const float *restrict r = d + i * n;
        for (size_t j = 0; j < n; j++)
            s[j] += r[j];
    }
}

void pd_model_affine_bwd(const float *dZ, const float *A, const float *W,
                         size_t b, size_t n_in, size_t n_out,
                         float *dW, float *db, float *dA)
{
    assert_shape(b, n_in, n_out);
    int nb = (int)b, ni = (int)n_in, no = (int)n_out;
    /* dW[n_out][n_in] = dZ[b][n_out]^T . A[b][n_in] */
    sgemm0(CblasTrans, CblasNoTrans, no, ni, nb, dZ, no, A, ni, dW);
    /* db[n_out] = sum over rows of dZ */
    if (db)
        colsum(dZ, b, n_out, db);
    /* dA[b][n_in] = dZ[b][n_out] . W[n_out][n_in] */
    if (dA)
        sgemm0(CblasNoTrans, CblasNoTrans, nb, ni, no, dZ, no, W, ni, dA);
}

void pd_model_act_fwd(pd_activation act, float *Z, size_t n)
{
    float *restrict z = Z;
    switch (act) {
    case PD_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            z[i] = z[i] < 0.0f ? 0.0f : z[i];   /* NaN passes through */
        break;
    case PD_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            z[i] = tanhf(z[i]);
        break;
    case PD_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            z[i] = 1.0f / (1.0f + expf(-z[i]));
        break;
    }
}

void pd_model_act_bwd(pd_activation act, const float *A, float *d, size_t n)
{
    const float *restrict a = A;
    float *restrict g = d;
    switch (act) {
    case PD_ACT_RELU:   /* f' = 1 where a > 0 (0 at the kink) */
        for (size_t i = 0; i < n; i++)
            g[i] = a[i] > 0.0f ? g[i] : 0.0f;
        break;
    case PD_ACT_TANH:   /* f' = 1 - a^2 */
        for (size_t i = 0; i < n; i++)
            g[i] *= 1.0f - a[i] * a[i];
        break;
    case PD_ACT_SIGMOID: /* f' = a (1 - a) */
        for (size_t i = 0; i < n; i++)
            g[i] *= a[i] * (1.0f - a[i]);
        break;
    }
}

void pd_model_act_bwd_colsum(pd_activation act, const float *A, float *d, size_t b, size_t n,
                             float *db)
{
    float *restrict s = db;
    memset(s, 0, n * sizeof *s);
    for (size_t i = 0; i < b; i++) {
        const float *restrict a = A + i * n;
        float *restrict g = d + i * n;
        switch (act) {
        case PD_ACT_RELU:
            for (size_t j = 0; j < n; j++) {
                float v = a[j] > 0.0f ? g[j] : 0.0f;
                g[j] = v;
                s[j] += v;
            }
            break;
        case PD_ACT_TANH:
            for (size_t j = 0; j < n; j++) {
                float v = g[j] * (1.0f - a[j] * a[j]);
                g[j] = v;
                s[j] += v;
            }
            break;
        case PD_ACT_SIGMOID:
            for (size_t j = 0; j < n; j++) {
                float v = g[j] * (a[j] * (1.0f - a[j]));
                g[j] = v;
                s[j] += v;
            }
            break;
        }
    }
}

/* The rows are consecutive: rows[i] = rows[0] + i. */
static bool consecutive(const size_t *rows, size_t b)
{
    for (size_t i = 1; i < b; i++)
        if (rows[i] != rows[0] + i)
            return false;
    return true;
}

void pd_model_gather(const pd_dataset *ds, const size_t *rows, size_t b, size_t D,
                     float *X)
{
    for (size_t i = 0; i < b; i++) {
        size_t r = rows[i];
        assert(r < ds->n);
        float *restrict x = X + i * D;   /* [D] */
        if (!ds->sparse) {
            memcpy(x, ds->x + r * D, D * sizeof *x);
            continue;
        }
        memset(x, 0, D * sizeof *x);
        for (size_t p = ds->row_ptr[r]; p < ds->row_ptr[r + 1]; p++) {
            assert(ds->col[p] < D);
            x[ds->col[p]] = ds->val[p];
        }
    }
}

void pd_model_dense_forward(pd_model *m, const float *theta, const pd_dataset *ds,
                            const size_t *rows, size_t b)
{
    /* Dense rows in order (evaluation, unshuffled epochs) are the layer's
     * input as they are; others are gathered into X. */
    if (!ds->sparse && consecutive(rows, b)) {
        assert(rows[0] + b <= ds->n);
        m->X0 = ds->x + rows[0] * m->D;
    } else {
        pd_model_gather(ds, rows, b, m->D, m->X);
        m->X0 = m->X;
    }
    const float *in = m->X0;   /* [b][width[l]] */
    for (size_t l = 0; l < m->nlayers; l++) {
        const float *W = theta + m->t[2 * l].offset;      /* [width[l+1]][width[l]] */
        const float *bias = theta + m->t[2 * l + 1].offset;  /* [width[l+1]] */
        pd_model_affine_fwd(in, W, bias, b, m->width[l], m->width[l + 1],
                            l + 1 < m->nlayers ? &m->act : NULL, m->A[l]);
        in = m->A[l];
    }
}

int pd_model_dense_grad(pd_model *m, const float *theta, const pd_dataset *ds,
                        const size_t *rows, size_t b, float *grad, float *sq, double *loss)
{
    pd_model_dense_forward(m, theta, ds, rows, b);
    size_t L = m->nlayers;
    head_sums s = {0};
    float *dz = m->delta[0], *da = m->delta[1];   /* [b][width] each */
    /* dz = dL/dlogits, with the 1/b of the mean folded in */
    PD_TRY(pd_model_head(m, m->A[L - 1], ds, rows, b, dz, 1.0f / (float)b, &s));
    for (size_t l = L; l-- > 0;) {
        const float *in = l ? m->A[l - 1] : m->X0;   /* [b][width[l]] */
        const pd_tensor_info *tw = &m->t[2 * l], *tb = &m->t[2 * l + 1];
        /* the output layer's bias gradient here; every other layer's in
         * the pass that makes its dz (below) */
        pd_model_affine_bwd(dz, in, theta + tw->offset, b, m->width[l], m->width[l + 1],
                            grad + tw->offset, l == L - 1 ? grad + tb->offset : NULL,
                            l ? da : NULL);
        if (sq) {
            /* row i's gradient is b dz[i] in[i]^T: its square's mean over
             * the rows is b sum_i dz[i]^2 (in[i]^2)^T */
            size_t nz = b * m->width[l + 1];
            for (size_t k = 0; k < nz; k++)
                m->U[k] = dz[k] * dz[k];
            pd_model_curv_layer(m, l, b, m->U, (float)b, false, sq);
        }
        if (l) {
            pd_model_act_bwd_colsum(m->act, m->A[l - 1], da, b, m->width[l],
                                    grad + m->t[2 * l - 1].offset);
            float *t = dz;
            dz = da;
            da = t;
        }
    }
    double reg = m->l2 > 0.0 ? pd_model_l2_dense(m, theta, grad) : 0.0;
    if (sq && m->l2 > 0.0) {
        /* every row's gradient gains r = l2 w: mean (a_i + r)^2 =
         * mean a_i^2 + 2 r (g - r) + r^2, g the mean with r */
        float l2 = (float)m->l2;
        for (size_t l = 0; l < L; l++) {
            const pd_tensor_info *t = &m->t[2 * l];
            for (size_t k = t->offset; k < t->offset + t->rows * t->cols; k++) {
                float r = l2 * theta[k];
                sq[k] += r * (2.0f * grad[k] - r);
            }
        }
    }
    *loss = s.loss / (double)b + reg;
    return PD_OK;
}
