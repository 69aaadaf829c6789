/* Private to the model module (and its unit test): the pd_model struct,
 * the sgemm kernels with their shape contracts, and the per-path entry
 * points that model.c dispatches to. Nothing here is part of the API. */
#ifndef PARAMD_MODEL_IMPL_H
#define PARAMD_MODEL_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paramd/model.h"

#define PD_MAX_LAYERS (PD_MAX_HIDDEN + 1)

/* Two compute paths share the layout and the loss head:
 * - dense path (softmax, mlp, linreg): batch rows gathered (or densified)
 *   into X[b][D], then one sgemm per layer forward and two backward;
 * - linear path (logreg, svm): one output, rows read in place (dense rows
 *   with sdot/saxpy, CSR rows directly), so no X[b][D] workspace exists and
 *   high-dimensional sparse data costs memory proportional to the data. */
struct pd_model {
    pd_model_type type;
    pd_activation act;           /* mlp hidden layers */
    pd_init init;                /* as configured (auto resolved at init) */
    double l2;
    size_t D;                    /* features */
    size_t K;                    /* outputs: classes (softmax, mlp), else 1 */
    size_t nlayers;              /* affine layers: 1, or n_hidden + 1 (mlp) */
    size_t width[PD_MAX_LAYERS + 1];  /* width[0] = D, ..., width[nlayers] = K */
    size_t nparams, ntensors;
    pd_tensor_info t[PD_MAX_TENSORS];  /* W_l at t[2l], b_l at t[2l+1] */
    size_t max_batch;

    /* Workspaces, carved from one allocation (ws) sized at create. */
    float *ws;
    float *X;                    /* [max_batch][D] dense path inputs; NULL on linear path */
    const float *X0;             /* the last dense forward's input rows: X, or the data's
                                    own rows when they were consecutive */
    float *A[PD_MAX_LAYERS];     /* [max_batch][width[l+1]]: layer l outputs after the
                                    activation; A[nlayers-1] holds the logits z */
    float *delta[2];             /* [max_batch][max width[1..]] ping-pong dL/dz, dL/da */
    size_t *rows;                /* [max_batch] eval chunk row indices */
    uint32_t *mark;              /* [D] linear path: slot + 1 of a touched feature, else 0 */

    /* Curvature workspaces (curv.c), one allocation made by
     * pd_model_curv_init, NULL until then. */
    float *cws;
    size_t curv_bound;           /* layers below this take the row bound */
    size_t curv_rows;            /* layers below this take the row's curvature along
                                    its gradient */
    float *P;                    /* [max_batch][K] softmax probabilities */
    float *U;                    /* [max_batch][max width] d2L/da2 (Gauss-Newton) per example */
    float *SQ;                   /* [max_batch][max width[0..L]] squared layer inputs (or
                                    a row layer's inputs times its gradient rows) */
    float *FP;                   /* [max_batch][max hidden] f'(a) */
    float *J[2];                 /* [max_batch][K][max hidden] dz/da, ping-pong (mlp) */
};

/* Sums a loss head accumulates over a batch (or an eval chunk). */
typedef struct head_sums {
    double loss;                 /* summed loss, no l2 */
    double sse;                  /* linreg: summed squared residuals */
    size_t correct;              /* classification: correct predictions */
} head_sums;

/* ---- kernels (dense.c). Shapes asserted at entry; no allocation. ---- */

/* Z[b][n_out] = f(A[b][n_in] W[n_out][n_in]^T + bias[n_out]) (sgemm, then
 * one pass for the bias and f), f = *act, or the identity when act is NULL.
 * The same bits as the bias added, then pd_model_act_fwd. */
void pd_model_affine_fwd(const float *A, const float *W, const float *bias,
                         size_t b, size_t n_in, size_t n_out, const pd_activation *act,
                         float *Z);
/* Given dZ[b][n_out] = dL/dZ: dW[n_out][n_in] = dZ^T A, if db is not NULL
 * db[n_out] = column sums of dZ, and, if dA is not NULL, dA[b][n_in] = dZ W
 * (sgemm). */
void pd_model_affine_bwd(const float *dZ, const float *A, const float *W,
                         size_t b, size_t n_in, size_t n_out,
                         float *dW, float *db, float *dA);
/* In place a = f(z) over n values. */
void pd_model_act_fwd(pd_activation act, float *Z, size_t n);
/* In place d *= f'(z), with f' computed from the activation a = f(z). */
void pd_model_act_bwd(pd_activation act, const float *A, float *d, size_t n);
/* d[b][n] *= f'(z) as pd_model_act_bwd does, and db[n] = the column sums of
 * the result (added row after row, as pd_model_affine_bwd's db), in one
 * pass: the bias gradient of the layer below. */
void pd_model_act_bwd_colsum(pd_activation act, const float *A, float *d, size_t b, size_t n,
                             float *db);
/* X[b][D] = rows of ds (copied when dense, scattered into zeros when sparse). */
void pd_model_gather(const pd_dataset *ds, const size_t *rows, size_t b, size_t D,
                     float *X);

/* Loss head over z[b][K] for the targets y[rows[i]]: adds to *s; if dz is
 * not NULL writes dz = scale * dLoss_i/dz. PD_EINPUT for a bad target. */
int pd_model_head(const pd_model *m, const float *z, const pd_dataset *ds,
                  const size_t *rows, size_t b, float *dz, float scale, head_sums *s);

/* ds fits the model (features); PD_EINPUT saying how not. */
int pd_model_check_data(const pd_model *m, const pd_dataset *ds);

/* ---- paths ---- */

/* Dense path (dense.c): forward only (fills A[]), or forward + backward. */
void pd_model_dense_forward(pd_model *m, const float *theta, const pd_dataset *ds,
                            const size_t *rows, size_t b);
/* With sq not NULL (curvature workspaces allocated) also the mean over the
 * rows of each row's gradient squared, sq[nparams] (vsgd's v). */
int pd_model_dense_grad(pd_model *m, const float *theta, const pd_dataset *ds,
                        const size_t *rows, size_t b, float *grad, float *sq, double *loss);
/* Layer l's weights and bias of out from per-row values U[b][width[l+1]]:
 * W_l[j][k] = alpha sum_i U[i][j] in[i][k]^2, b_l[j] = alpha sum_i U[i][j],
 * in the layer's input (X or A[l-1]); with bound, in[i][k]^2 becomes
 * |in[i][k]| (|in[i]|_1 + 1) and the bias's 1 becomes |in[i]|_1 + 1 (the
 * row bound, model.h). Uses SQ (curv.c). */
void pd_model_curv_layer(pd_model *m, size_t l, size_t b, const float *U, float alpha,
                         bool bound, float *out);

/* Linear path (sparse.c): z = w.x + b into A[0]; dense and sparse gradients. */
void pd_model_linear_forward(pd_model *m, const float *theta, const pd_dataset *ds,
                             const size_t *rows, size_t b);
int pd_model_linear_grad(pd_model *m, const float *theta, const pd_dataset *ds,
                         const size_t *rows, size_t b, float *grad, double *loss);
int pd_model_linear_grad_sparse(pd_model *m, const float *theta, const pd_dataset *ds,
                                const size_t *rows, size_t b, pd_sparse_grad *g,
                                double *loss);
int pd_model_linear_touched(pd_model *m, const pd_dataset *ds, const size_t *rows, size_t b,
                            uint32_t *idx, size_t cap, size_t *n);

/* l2/2 |W|^2 over every weight tensor; adds l2 W to grad when grad != NULL. */
double pd_model_l2_dense(const pd_model *m, const float *theta, float *grad);

#endif
