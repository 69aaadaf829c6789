/* Models: all parameters in one flat float32 array with a layout table of
 * named tensors (llm.c's habit), so one message or one optimizer loop covers
 * the whole model. Forward, backward and loss over a minibatch go through
 * cblas_sgemm; workspaces are sized once at creation for max_batch rows, so
 * the training loop never allocates.
 *
 *   softmax  W[C][D], b[C]: multinomial logistic regression
 *   mlp      W1[H1][D], b1[H1], ..., Wk[C][Hk-1], bk[C]; relu/tanh/sigmoid
 *   linreg   w[D], b[1]: least squares, loss 1/2 (w.x + b - y)^2
 *   logreg   w[D], b[1]: logistic loss log(1 + exp(-y (w.x + b))), y = +-1
 *   svm      w[D], b[1]: hinge loss max(0, 1 - y (w.x + b)), y = +-1
 * Losses are means over the batch, plus l2/2 * |W|^2 over weights (not
 * biases). logreg and svm also give sparse gradients: only the features
 * the batch touches, plus the bias.
 */
#ifndef PARAMD_MODEL_H
#define PARAMD_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paramd/config.h"
#include "paramd/data.h"

typedef struct pd_tensor_info {
    char name[16];       /* "W1", "b1", ..., "w", "b" */
    size_t rows, cols;   /* cols == 1 for vectors */
    size_t offset;       /* into the flat parameter array */
    bool is_weight;      /* l2 applies */
} pd_tensor_info;

/* A sparse gradient: (index, value) pairs, indices increasing, plus room
 * sized at creation. */
typedef struct pd_sparse_grad {
    size_t nnz, cap;
    uint32_t *idx;
    float *val;
} pd_sparse_grad;

typedef struct pd_eval {
    double loss;         /* mean loss (without the l2 term) */
    double accuracy;     /* classification; NAN for linreg */
    double rmse;         /* linreg; NAN otherwise */
    size_t n;
} pd_eval;

typedef struct pd_model pd_model;

/* Create a model for mc (features and classes resolved, > 0 where used),
 * with workspaces for batches of up to max_batch rows. Local. */
/* A model owns its workspaces: one model per thread. softmax, mlp and
 * linreg hold max_batch * features floats for the gathered batch (sparse
 * rows are densified into it); logreg and svm read rows in place. */
int pd_model_create(const pd_model_config *mc, size_t max_batch, pd_model **out);
/* The same for data d: features from d, and classes from d when
 * mc->classes is 0 (model.classes: from the data). Local. */
int pd_model_create_for(const pd_model_config *mc, const pd_data *d, size_t max_batch,
                        pd_model **out);
void pd_model_destroy(pd_model **m);

/* The most tensors a model has: W and b of each of an mlp's PD_MAX_HIDDEN + 1
 * layers. pd_model_ntensors() never exceeds it. */
#define PD_MAX_TENSORS (2 * (PD_MAX_HIDDEN + 1))

size_t pd_model_nparams(const pd_model *m);
size_t pd_model_ntensors(const pd_model *m);
const pd_tensor_info *pd_model_tensor(const pd_model *m, size_t i);
/* True for logreg and svm: pd_model_grad_sparse is available. */
bool pd_model_is_sparse(const pd_model *m);

/* Initialize theta[nparams] from (seed, PD_STREAM_INIT): He or Glorot
 * uniform weights, zero biases; zeros for linear models unless init says
 * otherwise. Local. */
void pd_model_init(const pd_model *m, float *theta, uint64_t seed);

/* Mean loss over rows[0..b) of ds at theta and its dense gradient
 * grad[nparams] (overwritten). b <= max_batch. Returns PD_OK; *loss gets
 * the mean loss including the l2 term. Local, no allocation. */
int pd_model_grad(pd_model *m, const float *theta, const pd_dataset *ds,
                  const size_t *rows, size_t b, float *grad, double *loss);

/* Curvature for vsgd (optim consumes it; the model computes it, on the
 * gradient's own minibatch). pd_model_curv_init allocates the workspaces
 * once (softmax, mlp and linreg only: PD_EINPUT naming the type for
 * logreg and svm); then pd_model_grad_curv is pd_model_grad plus
 *   sq[nparams]    the mean over the b rows of each row's own gradient
 *                  squared (l2 term included): vsgd's per-example moment
 *   curv[nparams]  the diagonal of the Gauss-Newton matrix of the mean
 *                  loss:
 *   curv_k = 1/b sum_i J_ik^T H_i J_ik   (+ l2 for weights)
 * with J_ik = dz_i/dtheta_k (z the logits or the prediction of example i)
 * and H_i = d2L/dz2 (softmax cross-entropy: diag(p) - p p^T; least
 * squares: 1). Exact, not the bbprop approximation: for an mlp the
 * Jacobian dz/da of every hidden layer is propagated (K columns), so the
 * cost is about K extra backward passes through the hidden layers. For
 * softmax regression and linreg it is the Hessian's diagonal; for a relu
 * mlp too, almost everywhere (z is piecewise linear in each parameter).
 * Every entry >= 0. Local, no allocation after init. */
/* bound_layers: the first that many layers (W1, b1, ... from the input)
 * take, instead of the diagonal, each weight row's Gershgorin bound of
 * its Gauss-Newton block: with in~ = (in, 1) the layer's input and its
 * bias input, 1/b sum_i u_ij |in~_ik| |in~_i|_1 for W_l[j][k] and b_l[j]
 * (k = the bias): at least the row block's largest eigenvalue, so a
 * diagonal step on that layer cannot overshoot along its inputs' common
 * directions (the exact diagonal of a 784-pixel input layer did, README). */
/* row_layers (instead): the first that many layers take, for every weight
 * and the bias of row j, the curvature of the row's Gauss-Newton block
 * along the row's own minibatch gradient g_j (weights and bias): the
 * Rayleigh quotient 1/b sum_i u_ij (g_j . in~_i)^2 / |g_j|^2 (0 where g_j
 * is 0). Along the direction the row's step takes it is the exact
 * curvature, the inputs' common directions included, which the diagonal
 * misses and the bound overestimates (README). */
int pd_model_curv_init(pd_model *m, int bound_layers, int row_layers);
int pd_model_grad_curv(pd_model *m, const float *theta, const pd_dataset *ds,
                       const size_t *rows, size_t b, float *grad, float *curv, float *sq,
                       double *loss);

/* Same for sparse models: g receives the touched coordinates (features of
 * the batch, bias last) with their gradient values. */
/* Lazy l2: the sparse gradient adds l2 * w_j to touched coordinates only,
 * and *loss adds l2/2 * w_j^2 over those same coordinates (g is the exact
 * gradient of that loss). With l2 = 0, g scattered equals pd_model_grad.
 * Dense rows touch every feature (g then holds all nparams coordinates).
 * PD_ENOMEM if the batch touches more than g->cap - 1 features. */
int pd_model_grad_sparse(pd_model *m, const float *theta, const pd_dataset *ds,
                         const size_t *rows, size_t b, pd_sparse_grad *g,
                         double *loss);
/* The coordinates pd_model_grad_sparse of rows[0..b) reads and writes:
 * the batch's features, increasing, then the bias, into idx[0..*n); a
 * dense ds touches all nparams. This is what a worker pulls before its
 * next minibatch. PD_ENOMEM if more than cap. Local, no allocation. */
int pd_model_touched(pd_model *m, const pd_dataset *ds, const size_t *rows, size_t b,
                     uint32_t *idx, size_t cap, size_t *n);
/* Allocate / free a sparse gradient able to hold a batch of max_batch rows
 * of ds (cap = min(nparams, nnz bound)). */
int pd_sparse_grad_init(pd_sparse_grad *g, size_t cap);
void pd_sparse_grad_free(pd_sparse_grad *g);

/* Loss and accuracy (or RMSE) over all of ds, in chunks of max_batch.
 * Local. */
/* Accuracy: argmax (first of ties) for softmax/mlp, z >= 0 as +1 for
 * logreg/svm. An empty ds gives n = 0 and NAN for the numbers. */
int pd_model_eval(pd_model *m, const float *theta, const pd_dataset *ds, pd_eval *out);

/* Per-example loss (without the l2 term) of rows[0..b) of ds at theta:
 * loss[i] for row rows[i]; their mean is pd_model_eval's loss over the same
 * rows. b <= max_batch. PD_EINPUT for a bad target. Local, no allocation. */
int pd_model_losses(pd_model *m, const float *theta, const pd_dataset *ds,
                    const size_t *rows, size_t b, float *loss);

/* Outputs per example: classes for softmax/mlp, else 1. */
size_t pd_model_noutputs(const pd_model *m);
/* The model's outputs for rows[0..b) of ds at theta: *z points at
 * [b][noutputs] floats (softmax/mlp logits, linreg predictions, logreg/svm
 * margins w.x + b), valid until the model's next call. b <= max_batch.
 * Local, no allocation. */
int pd_model_outputs(pd_model *m, const float *theta, const pd_dataset *ds, const size_t *rows,
                     size_t b, const float **z);

/* Per-tensor L2 norms of v (parameters or a gradient): norms[ntensors]. */
void pd_model_tensor_norms(const pd_model *m, const float *v, double *norms);
/* Per-tensor sums of squares of v over the coordinates [lo, hi) only (a
 * server's range; the parts add up to the whole), and of sparse pairs
 * (idx increasing, each < nparams): sq[ntensors]. */
void pd_model_tensor_sumsq_range(const pd_model *m, const float *v, size_t lo, size_t hi,
                                 double *sq);
/* The same with v of the range alone: v_range[i - lo] for i in [lo, hi). */
void pd_model_tensor_sumsq_slice(const pd_model *m, const float *v_range, size_t lo, size_t hi,
                                 double *sq);
void pd_model_tensor_sumsq_sparse(const pd_model *m, const uint32_t *idx, const float *val,
                                  size_t nnz, double *sq);

/* OpenBLAS build configuration (openblas_get_config()), for --version.
 * Static storage owned by OpenBLAS. Local. */
const char *pd_model_blas_version(void);
/* Set the number of OpenBLAS threads for this process (run.blas_threads);
 * n <= 0 leaves OpenBLAS's own choice (OPENBLAS_NUM_THREADS). Local. */
void pd_model_blas_threads(int n);
/* The kernel set OpenBLAS chose ("Haswell", "SkylakeX", "Prescott", ...). */
const char *pd_model_blas_core(void);
/* When OpenBLAS fell back to its Prescott kernels on a CPU that can run a
 * better set (an x86 model too new for the library to know), that set's
 * OPENBLAS_CORETYPE name; otherwise NULL. See src/model/blas.c. Local. */
const char *pd_model_blas_better_core(void);
/* cblas_sgemm, as the models call it, agrees with a double-precision loop
 * on a few shapes: the kernels in use compute right. */
bool pd_model_blas_selfcheck(void);

#endif
