/* The diagonal of the Gauss-Newton matrix of a minibatch's mean loss on the
 * dense path (softmax, mlp, linreg), for vsgd. After a gradient pass the
 * forward activations are still in A[]; per example i and layer l, with
 * a_l the layer's outputs before the activation and J_l = dz/da_l its
 * Jacobian ([K][width]), u_l[j] = J_l[:, j]^T H J_l[:, j] is the curvature
 * of the loss along a_l[j], and every weight W_l[j][k] gets
 * 1/b sum_i u_l[i][j] in_l[i][k]^2 (one sgemm), the bias 1/b sum_i u_l[i][j].
 * Softmax: H = diag(p) - p p^T, so u = sum_c p_c J_cj^2 - (sum_c p_c J_cj)^2;
 * least squares: H = 1. J of the last hidden layer is W_L scaled by f'(a),
 * each layer below it one sgemm of b K rows. */
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "paramd/error.h"
#include "model_impl.h"

int pd_model_curv_init(pd_model *m, int bound_layers, int row_layers)
{
    m->curv_bound = bound_layers > 0 ? (size_t)bound_layers : 0;
    m->curv_rows = row_layers > 0 ? (size_t)row_layers : 0;
    if (m->type != PD_MODEL_SOFTMAX && m->type != PD_MODEL_MLP && m->type != PD_MODEL_LINREG)
        return PD_FAIL(PD_EINPUT, "model.type: no curvature estimate for %s models (vsgd needs "
                       "softmax, mlp or linreg)", m->type == PD_MODEL_LOGREG ? "logreg" : "svm");
    if (m->cws)
        return PD_OK;
    size_t B = m->max_batch, K = m->K, L = m->nlayers, maxw = 0, maxin = 0, maxh = 0;
    for (size_t l = 0; l < L; l++) {
        maxin = m->width[l] > maxin ? m->width[l] : maxin;
        maxw = m->width[l + 1] > maxw ? m->width[l + 1] : maxw;
        if (l + 1 < L)
            maxh = m->width[l + 1] > maxh ? m->width[l + 1] : maxh;
    }
    /* P, U, SQ, FP, J[0], J[1]: rows of B examples, each of these widths. */
    /* SQ also holds a row layer's [b][width[l+1]] projections */
    const size_t per[6] = {K, maxw, maxin > maxw ? maxin : maxw, maxh, K * maxh, K * maxh};
    size_t sz[6], total = 0;
    for (size_t i = 0; i < 6; i++) {
        if (per[i] != 0 && B > (SIZE_MAX / sizeof(float) - 16) / per[i])
            goto overflow;
        sz[i] = (B * per[i] + 15) & ~(size_t)15;   /* 64-byte aligned regions */
        if (sz[i] > SIZE_MAX / sizeof(float) - total)
            goto overflow;
        total += sz[i];
    }
    m->cws = pd_malloc(total * sizeof(float));
    if (!m->cws)
        return PD_ENOMEM;
    float *p = m->cws;
    m->P = p;
    p += sz[0];
    m->U = p;
    p += sz[1];
    m->SQ = p;
    p += sz[2];
    m->FP = p;
    p += sz[3];
    m->J[0] = p;
    p += sz[4];
    m->J[1] = p;
    return PD_OK;
overflow:
    return PD_FAIL(PD_EINPUT, "model: curvature workspace for batches of %zu rows does not fit "
                   "in memory", B);
}

/* P[b][K] = softmax of the logits z[b][K]. */
static void softmax_rows(const float *z, size_t b, size_t K, float *P)
{
    for (size_t i = 0; i < b; i++) {
        const float *zi = z + i * K;
        float *pi = P + i * K, mx = zi[0];
        for (size_t c = 1; c < K; c++)
            mx = zi[c] > mx ? zi[c] : mx;
        double sum = 0;
        for (size_t c = 0; c < K; c++) {
            pi[c] = expf(zi[c] - mx);
            sum += pi[c];
        }
        float f = (float)(1.0 / sum);
        for (size_t c = 0; c < K; c++)
            pi[c] *= f;
    }
}

/* U[b][w] from the Jacobians J[b][K][w] and P[b][K] (softmax) or, for
 * linreg (K = 1), J^2. Accumulated in double; the quadratic form of a
 * positive semidefinite H, so a rounding below 0 is clamped to 0. */
static void head_quad(const pd_model *m, const float *J, size_t b, size_t w, float *U)
{
    size_t K = m->K;
    for (size_t i = 0; i < b; i++) {
        const float *Ji = J + i * K * w, *pi = m->P + i * K;
        float *ui = U + i * w;
        for (size_t j = 0; j < w; j++) {
            double s2 = 0, s1 = 0;
            if (m->type == PD_MODEL_LINREG) {
                s2 = (double)Ji[j] * Ji[j];
            } else {
                for (size_t c = 0; c < K; c++) {
                    double x = Ji[c * w + j];
                    s2 += pi[c] * x * x;
                    s1 += pi[c] * x;
                }
            }
            double u = s2 - s1 * s1;
            ui[j] = u > 0 ? (float)u : 0.0f;
        }
    }
}

void pd_model_curv_layer(pd_model *m, size_t l, size_t b, const float *U, float alpha,
                         bool bound, float *out)
{
    size_t n_in = m->width[l], n_out = m->width[l + 1];
    const float *in = l ? m->A[l - 1] : m->X0;   /* [b][n_in] */
    float *ob = out + m->t[2 * l + 1].offset;
    memset(ob, 0, n_out * sizeof *ob);
    if (!bound) {
        for (size_t k = 0; k < b * n_in; k++)
            m->SQ[k] = in[k] * in[k];
        for (size_t i = 0; i < b; i++)
            for (size_t j = 0; j < n_out; j++)
                ob[j] += U[i * n_out + j];
    } else {
        /* the row bound: |in~_k| |in~|_1, the bias input 1 included */
        for (size_t i = 0; i < b; i++) {
            const float *x = in + i * n_in;
            float *q = m->SQ + i * n_in, l1 = 1.0f;
            for (size_t k = 0; k < n_in; k++)
                l1 += fabsf(x[k]);
            for (size_t k = 0; k < n_in; k++)
                q[k] = fabsf(x[k]) * l1;
            for (size_t j = 0; j < n_out; j++)
                ob[j] += U[i * n_out + j] * l1;
        }
    }
    /* outW[n_out][n_in] = alpha U[b][n_out]^T SQ[b][n_in] */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n_out, (int)n_in, (int)b, alpha,
                U, (int)n_out, m->SQ, (int)n_in, 0.0f, out + m->t[2 * l].offset, (int)n_in);
    for (size_t j = 0; j < n_out; j++)
        ob[j] *= alpha;
}

/* Layer l's curvature along each row's own gradient (model.h): with
 * P = in G^T ([b][n_out]; plus the bias gradient, the change of each
 * example's pre-activation along the row's gradient), h_j = 1/b sum_i
 * U[i][j] P[i][j]^2 / (|G_j|^2 + g_b[j]^2), every weight of row j and its
 * bias. */
static void curv_rows(pd_model *m, size_t l, size_t b, const float *U, const float *grad,
                      float *out)
{
    size_t n_in = m->width[l], n_out = m->width[l + 1];
    const float *in = l ? m->A[l - 1] : m->X0;   /* [b][n_in] */
    const float *G = grad + m->t[2 * l].offset, *gb = grad + m->t[2 * l + 1].offset;
    float *P = m->SQ;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, (int)n_out, (int)n_in, 1.0f,
                in, (int)n_in, G, (int)n_in, 0.0f, P, (int)n_out);
    float *ow = out + m->t[2 * l].offset, *ob = out + m->t[2 * l + 1].offset;
    for (size_t j = 0; j < n_out; j++) {
        double num = 0, den = (double)gb[j] * gb[j];
        for (size_t i = 0; i < b; i++) {
            double q = (double)P[i * n_out + j] + gb[j];
            num += (double)U[i * n_out + j] * q * q;
        }
        const float *gj = G + j * n_in;
        for (size_t k = 0; k < n_in; k++)
            den += (double)gj[k] * gj[k];
        float h = den > 0 ? (float)(num / (double)b / den) : 0.0f;
        for (size_t k = 0; k < n_in; k++)
            ow[j * n_in + k] = h;
        ob[j] = h;
    }
}

/* Layer l's curvature from U by the layer's rule: rows, bound or diagonal. */
static void curv_of_layer(pd_model *m, size_t l, size_t b, const float *grad, float *curv)
{
    if (l < m->curv_rows)
        curv_rows(m, l, b, m->U, grad, curv);
    else
        pd_model_curv_layer(m, l, b, m->U, 1.0f / (float)b, l < m->curv_bound, curv);
}

/* After pd_model_dense_grad on the same rows (A[] and X0 hold its forward
 * pass): the Gauss-Newton diagonal into curv[nparams]. */
static void dense_curv(pd_model *m, const float *theta, size_t b, const float *grad,
                       float *curv)
{
    size_t L = m->nlayers, K = m->K;
    /* The output layer: J = I, u = H's diagonal. */
    if (m->type == PD_MODEL_LINREG) {
        for (size_t i = 0; i < b; i++)
            m->U[i] = 1.0f;
    } else {
        softmax_rows(m->A[L - 1], b, K, m->P);
        for (size_t k = 0; k < b * K; k++)
            m->U[k] = m->P[k] * (1.0f - m->P[k]);
    }
    curv_of_layer(m, L - 1, b, grad, curv);
    int cur = 0;
    for (size_t l = L - 1; l-- > 0;) {
        size_t w = m->width[l + 1], wup = m->width[l + 2];
        const float *Wup = theta + m->t[2 * (l + 1)].offset;   /* [wup][w] */
        float *J = m->J[cur];                                   /* [b][K][w] */
        if (l == L - 2) {
            for (size_t i = 0; i < b; i++)   /* dz/da_l = W_L, before f' */
                memcpy(J + i * K * w, Wup, K * w * sizeof *J);
        } else {
            /* dz/da_l = (dz/da_{l+1}) W_{l+1}, before f': [bK][wup] x [wup][w] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(b * K), (int)w,
                        (int)wup, 1.0f, m->J[1 - cur], (int)wup, Wup, (int)w, 0.0f, J, (int)w);
        }
        for (size_t k = 0; k < b * w; k++)
            m->FP[k] = 1.0f;
        pd_model_act_bwd(m->act, m->A[l], m->FP, b * w);   /* f'(a) from f(a) */
        for (size_t i = 0; i < b; i++)
            for (size_t c = 0; c < K; c++) {
                float *Jr = J + (i * K + c) * w;
                const float *fp = m->FP + i * w;
                for (size_t j = 0; j < w; j++)
                    Jr[j] *= fp[j];
            }
        head_quad(m, J, b, w, m->U);
        curv_of_layer(m, l, b, grad, curv);
        cur = 1 - cur;
    }
    if (m->l2 > 0)
        for (size_t l = 0; l < L; l++) {
            const pd_tensor_info *t = &m->t[2 * l];
            float *c = curv + t->offset, l2 = (float)m->l2;
            for (size_t k = 0; k < t->rows * t->cols; k++)
                c[k] += l2;
        }
}

int pd_model_grad_curv(pd_model *m, const float *theta, const pd_dataset *ds,
                       const size_t *rows, size_t b, float *grad, float *curv, float *sq,
                       double *loss)
{
    assert(m->cws);   /* pd_model_curv_init first */
    assert(b >= 1 && b <= m->max_batch);
    PD_TRY(pd_model_check_data(m, ds));
    PD_TRY(pd_model_dense_grad(m, theta, ds, rows, b, grad, sq, loss));
    dense_curv(m, theta, b, grad, curv);
    return PD_OK;
}
