/* One optimizer library for every mode. It sees flat float arrays only
 * (never MPI), so a serial trainer, a sync server, an async server and the
 * threads of a hogwild server all run the same code on their coordinate
 * range [lo, hi) of the global parameter vector, or on a sparse index set.
 *
 * A step is two calls: pd_optim_prepare() turns (update number t, scale,
 * gradient norm) into the per-step constants (learning rate from the
 * schedule, bias corrections, clip factor, noise level), once per update;
 * pd_optim_apply() then runs the element-wise rule over any range. Split
 * ranges give the same bits as one call, and hogwild threads can apply
 * different prepared steps concurrently (state updated without locks).
 *
 * Rules follow Goodfellow, Bengio and Courville, Deep Learning, ch. 8:
 *   sgd       theta -= eta g
 *   momentum  v = alpha v - eta g; theta += v
 *   nesterov  g taken at theta + alpha v (pd_optim_lookahead), then momentum
 *   adagrad   r += g^2; theta -= eta / (delta + sqrt(r)) g
 *   rmsprop   r = rho r + (1-rho) g^2; theta -= eta / sqrt(delta + r) g
 *   rmsprop_nesterov  lookahead theta + alpha v; r as rmsprop;
 *             v = alpha v - eta / sqrt(delta + r) g; theta += v
 *             (the book writes eta / sqrt(r); delta inside the sqrt keeps
 *             the first step finite where r = 0, as in rmsprop)
 *   adadelta  r = rho r + (1-rho) g^2; d = -sqrt(s+eps)/sqrt(r+eps) g;
 *             s = rho s + (1-rho) d^2; theta += eta d   (eta = 1 by default)
 *   adam      m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *             theta -= eta m_hat / (sqrt(v_hat) + eps), m_hat = m/(1-b1^t),
 *             v_hat = v/(1-b2^t); weight decay coupled (added to g)
 *   adamw     adam with decoupled weight decay (Loshchilov and Hutter):
 *             theta -= eta wd theta (old theta) besides the adam step
 *   vsgd      Schaul, Zhang and LeCun 2012 ("No More Pesky Learning Rates",
 *             vSGD-l with minibatches): per coordinate, from what came
 *             with g (pd_optim_curv, computed by the worker on the same
 *             minibatch of n examples, pd_model_grad_curv): h the
 *             diagonal of the Gauss-Newton matrix and v the mean over the
 *             examples of each one's gradient squared; running averages
 *             with memory tau:
 *               gb = (1 - 1/tau) gb + g/tau    vb = (1 - 1/tau) vb + v/tau
 *               hb = (1 - 1/tau) hb + |h|/tau
 *               e  = gb^2 / (max(hb, |h|) (max(vb, v)/n + (n-1)/n gb^2))
 *                    (0 where the denominator is 0)
 *               tau = (1 - gb^2/vb) tau + 1, then at most
 *                     optimizer.vsgd_memory when that is > 0 (README:
 *                     unbounded, tau grows like t on an MLP and the rates
 *                     fall like 1/t)
 *               theta -= eta e g
 *             vb estimates one example's E[g^2], so vb/n + (n-1)/n gb^2 is
 *             the minibatch gradient's and e the paper's optimal rate for
 *             it; tau grows while the examples disagree. eta is the step's
 *             lr: 1 (optimizer.lr is refused for vsgd) times the staleness
 *             scale. Three choices of paramd's, measured on Fashion-MNIST
 *             (README): the curvature is the larger of the average and this
 *             minibatch's (a stale, small hb took steps of hundreds after a
 *             sudden rise of the curvature); so is the second moment in e
 *             (tau's ratio keeps vb): a minibatch whose v is far above vb,
 *             typically one confidently misclassified example (its g near
 *             the largest, its h near 0) on a rarely active input, is an
 *             outlier the averages have not seen, and e from the stale vb
 *             stepped such coordinates by hundreds to 10^4; and the slow start: a
 *             coordinate's first PD_VSGD_N0 minibatches from its first
 *             non-zero g or v are averaged without a step (tau = -count),
 *             then vb is multiplied by C = max(2, D/10) (the paper's D/10,
 *             D the model's parameter count: pd_optim_set_model_params;
 *             optimizer.vsgd_slow > 0 sets C instead) and
 *             tau = PD_VSGD_N0. Clipping, noise and weight decay are refused
 *             for vsgd (the model's l2 enters g, h and v exactly).
 * (eta = the step's lr, alpha = momentum, rho, delta = eps, b1/b2 = beta1/2.)
 *
 * Per coordinate, apply computes the gradient the rule sees in this order:
 *   g' = gscale g        clip by global norm (factor from prepare)
 *   g' = clamp(g', -clip_value, clip_value)         when clip_value > 0
 *   g' += N(0, sigma_t^2)  sigma_t^2 = noise / (1 + t)^noise_gamma, when
 *        noise > 0 (Neelakantan et al. 2015); drawn counter-based from
 *        (seed, t, global index i) with pd_hash64 and Box-Muller, so it
 *        does not depend on how [lo, hi) is split or on thread order
 *   g' += weight_decay theta   coupled weight decay (every rule but adamw)
 * then runs the rule. Arithmetic is float; state vectors are float.
 */
#ifndef PARAMD_OPTIM_H
#define PARAMD_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paramd/config.h"

typedef struct pd_optim pd_optim;

/* Per-step constants computed by pd_optim_prepare. A plain value: several
 * may be live at once (hogwild). */
typedef struct pd_optim_step {
    int64_t t;          /* 1-based update number this step makes */
    float lr;           /* schedule(t) * scale */
    float gscale;       /* clip-by-norm factor (1 when not clipping) */
    float bc1, bc2;     /* adam: 1/(1-beta1^t), 1/(1-beta2^t) */
    float noise_sigma;  /* stddev of annealed gradient noise (0 = off) */
} pd_optim_step;

/* Each rule's name as the config spells it, indexed by pd_optimizer_name
 * and NULL-terminated: the one list of names (defaults.c), read by the
 * config table, the optimizer's messages and saved states. */
extern const char *const pd_optimizer_names[PD_OPT_COUNT + 1];

/* True for the batch methods (cg, bfgs, lbfgs, cd): they have no element-wise
 * rule here; src/batch/ runs them. Local. */
static inline bool pd_optim_is_batch(pd_optimizer_name n)
{
    return n == PD_OPT_CG || n == PD_OPT_BFGS || n == PD_OPT_LBFGS || n == PD_OPT_CD;
}

/* True for rules that take a diagonal curvature estimate beside each
 * gradient (vsgd): workers compute it on the gradient's minibatch and send
 * it along. Local. */
static inline bool pd_optim_needs_curvature(pd_optimizer_name n)
{
    return n == PD_OPT_VSGD;
}

/* vsgd's slow start: minibatches averaged before a coordinate's first step. */
#define PD_VSGD_N0 20

/* Replace every NAN hyperparameter of oc by the rule's default
 * (documented in conf/reference.yaml). Local. */
void pd_optim_defaults(pd_optim_config *oc);

/* Create state for the global coordinate range [lo, hi) (a server's shard,
 * or [0, n) for a serial run); state vectors are zeroed. `seed` drives the
 * gradient noise. The optimizer copies oc. Local. */
int pd_optim_create(const pd_optim_config *oc, size_t lo, size_t hi, uint64_t seed,
                    pd_optim **out);
void pd_optim_destroy(pd_optim **o);
/* The model's whole parameter count D (all servers' ranges), which vsgd's
 * slow start reads (C = max(2, D/10)); create assumes hi - lo. Local. */
void pd_optim_set_model_params(pd_optim *o, size_t n);
/* vsgd's C for a model of D parameters: max(2, D/10). Local. */
float pd_optim_vsgd_slow(size_t model_params);

/* Learning rate of the schedule at update t (1-based, t >= 1), before
 * scale. With lr = optimizer.lr, k = t - 1 (updates already made) and
 * S = schedule.step_size (read as 1 if < 1):
 *   constant      lr
 *   step          lr * gamma^floor(k / S)
 *   exponential   lr * gamma^(k / S)                (continuous)
 *   inverse_time  lr / (1 + decay k)
 *   cosine        min_lr + (lr - min_lr)/2 (1 + cos(pi min(k, S) / S)):
 *                 S is the cosine period in updates; min_lr after it
 * then, if warmup W > 0 and t <= W, the value is multiplied by t / W
 * (linear warmup on top of the schedule). Local. */
double pd_optim_lr(const pd_optim_config *oc, int64_t t);

/* Per-step constants for update t. scale multiplies the learning rate
 * (staleness-aware scaling); grad_norm is the global L2 norm of the
 * gradient over all shards (only read when clip_norm > 0). Local. */
pd_optim_step pd_optim_prepare(const pd_optim *o, int64_t t, double scale,
                               double grad_norm);

/* Apply one step to theta[lo, hi) with gradient g[lo, hi); both arrays are
 * indexed globally (theta[i], g[i] for i in [lo, hi)), [lo, hi) must lie
 * within the created range. No allocation. Local. */
void pd_optim_apply(pd_optim *o, const pd_optim_step *st, float *theta,
                    const float *g, size_t lo, size_t hi);
/* The same with the gradient of the range alone: g_range[i - lo]. */
void pd_optim_apply_range(pd_optim *o, const pd_optim_step *st, float *theta,
                          const float *g_range, size_t lo, size_t hi);
/* What vsgd takes beside a gradient of n examples (vsgd above): arrays
 * laid out like the gradient they come with. */
typedef struct pd_optim_curv {
    const float *h;   /* diagonal curvature (Gauss-Newton) of the mean loss */
    const float *v;   /* mean over the examples of each example's gradient squared */
    double n;         /* examples behind the gradient (read as 1 if less) */
} pd_optim_curv;

/* pd_optim_apply with cv's arrays laid out like g (globally indexed); cv
 * must not be NULL for rules that pd_optim_needs_curvature and is not read
 * by the others. */
void pd_optim_apply_curv(pd_optim *o, const pd_optim_step *st, float *theta, const float *g,
                         const pd_optim_curv *cv, size_t lo, size_t hi);

/* Sparse step: gradient values val[k] for coordinates idx[k] (global,
 * within the created range, distinct), k < nnz. Each touched coordinate gets
 * exactly the dense per-coordinate update (clip by value, noise at its
 * global index, coupled weight decay, rule); clipping by norm uses the norm
 * passed to prepare. Untouched coordinates are not touched at all: neither
 * theta nor any accumulator changes (lazy updates). Per rule that means:
 *   sgd, adagrad   same as a dense step with g = 0 elsewhere (when
 *                  weight_decay = 0 and noise = 0: a dense step would decay
 *                  and perturb every coordinate)
 *   momentum, nesterov  the velocity of an untouched coordinate is neither
 *                  applied to theta nor decayed; when it is next touched,
 *                  v = alpha v - eta g starts from the frozen v
 *   rmsprop, rmsprop_nesterov, adadelta  r (and v, s) of untouched
 *                  coordinates are not decayed by rho
 *   adam, adamw    m and v of untouched coordinates are not decayed and no
 *                  step is taken from them; bias correction uses the
 *                  global t (the step's), not a per-coordinate count;
 *                  adamw's decoupled decay hits touched coordinates only
 * All rules agree with the dense step on every coordinate when the same
 * index set is touched at every step. Local, no allocation. */
void pd_optim_apply_sparse(pd_optim *o, const pd_optim_step *st, float *theta,
                           const uint32_t *idx, const float *val, size_t nnz);
/* The same with cv's arrays parallel to val (vsgd: untouched coordinates
 * keep their averages and memory). */
void pd_optim_apply_sparse_curv(pd_optim *o, const pd_optim_step *st, float *theta,
                                const uint32_t *idx, const float *val, const pd_optim_curv *cv,
                                size_t nnz);

/* A gradient as one step takes it: dense g[lo, hi) (globally indexed, as
 * for pd_optim_apply), or dense over [lo, hi) held from g_range[0] (a
 * buffer of the range alone: g_range[i - lo]), or, when idx is not NULL,
 * the sparse pairs idx[k], val[k], k < nnz (as for pd_optim_apply_sparse).
 * curv: vsgd's arrays laid out like whichever of g, g_range or val is
 * used (h[i], h[i - lo] or h[k]); NULL unless pd_optim_needs_curvature. */
typedef struct pd_optim_grad {
    const float *g;
    const float *g_range;
    size_t lo, hi;
    const uint32_t *idx;
    const float *val;
    size_t nnz;
    const pd_optim_curv *curv;
} pd_optim_grad;

/* One whole update t from one gradient: prepare (scale, the gradient's
 * global norm for clipping), then apply dense or sparse. The one step that
 * the serial trainer, local steps, the async/hogwild server and replay all
 * take, so that replay repeats a run's steps bit for bit. Local; hogwild
 * threads may call it concurrently on disjoint or overlapping coordinates
 * (see pd_optim_apply). */
void pd_optim_take_step(pd_optim *o, int64_t t, double scale, double grad_norm, float *theta,
                        const pd_optim_grad *g);

/* Delay compensation (DC-ASGD, Zheng et al., ICML 2017): a gradient g
 * taken at the point a worker read, `stale` (globally indexed), corrected
 * towards the point it would be taken at now, the lookahead point of theta
 * (pd_optim_lookahead: what a reply would carry), per coordinate:
 *   g' = g + lambda g g (now - stale)      (float, in that order)
 * the first-order Taylor term of the gradient's change with the Hessian
 * approximated by lambda g g^T's diagonal. `stale` holds coordinate i at
 * stale[i - stale_lo] (0: a whole vector; lo: a server's range buffer).
 * Dense g over [g->lo, g->hi): out is laid out like g (globally indexed,
 * or out[i - lo] for g_range); sparse pairs: out[k] for idx[k]. *dc is
 * then the corrected gradient (pointing into out), for pd_optim_take_step.
 * The async server and --replay both call this, so a replay repeats the
 * run's steps bit for bit. Clipping by norm still uses the uncorrected
 * gradient's global norm. Under oc.dc_lambda_adaptive (DC-ASGD-a, Zheng et
 * al. 2017) each coordinate's lambda is lambda / sqrt(q + PD_DC_EPS), where
 * q, part of the optimizer's state (saved with it), is first updated to
 *   q = dc_decay q + (1 - dc_decay) g g   (float, in that order)
 * for the coordinates g carries (sparse pairs: those only). Local, no
 * allocation. */
#define PD_DC_EPS 1e-7f
void pd_optim_compensate(pd_optim *o, double lambda, const float *theta, const float *stale,
                         size_t stale_lo, const pd_optim_grad *g, float *out, pd_optim_grad *dc);

/* True for rules whose gradient is taken at a lookahead point (nesterov,
 * rmsprop_nesterov). */
bool pd_optim_has_lookahead(const pd_optim *o);
/* point[i] = theta[i] + alpha v[i] for i in [lo, hi) (a copy of theta for
 * rules without lookahead); point must not overlap theta. Local. */
void pd_optim_lookahead(const pd_optim *o, const float *theta, float *point,
                        size_t lo, size_t hi);
/* The same into a buffer of the range alone: out[i - lo]. Local. */
void pd_optim_lookahead_range(const pd_optim *o, const float *theta, float *out,
                              size_t lo, size_t hi);
/* The same at the coordinates idx[0..n) (each in the optimizer's range):
 * out[j] = the lookahead point at idx[j]. A sparse pull. Local. */
void pd_optim_lookahead_gather(const pd_optim *o, const float *theta, const uint32_t *idx,
                               size_t n, float *out);

/* Serializable state (for checkpoints): bytes needed, save, load. The
 * format is a 32-byte header (magic "PDOS", version 1, rule, number of
 * vectors, lo, hi; every field little-endian on every host, paramd/le.h)
 * followed by the state vectors over [lo, hi) as float32: v (momentum, nesterov), r (adagrad, rmsprop), v, r
 * (rmsprop_nesterov), r, s (adadelta), m, v (adam, adamw), gb, vb, hb, tau
 * (vsgd; tau 0 = a coordinate not yet stepped); sgd has none.
 * The noise needs no state (counter-based). Load refuses, with PD_EINPUT
 * and a message saying which, a buffer of another rule, range, version or
 * size (truncated), validating everything before copying, so a refused
 * load leaves the state as it was. Save fails with PD_EINPUT if size is
 * less than pd_optim_state_size. Local. */
size_t pd_optim_state_size(const pd_optim *o);
int pd_optim_save(const pd_optim *o, void *buf, size_t size);
int pd_optim_load(pd_optim *o, const void *buf, size_t size);

/* Learning-rate scale for a gradient of staleness tau under
 * optimizer.staleness_compensation: 1, or 1/tau for inverse (tau > 1). */
double pd_optim_staleness_scale(const pd_optim_config *oc, int64_t tau);

/* No v[i] of v[0, n) is NaN or Inf (a vectorizable pass on the bits). */
bool pd_optim_finite(const float *v, size_t n);

/* L2 norm of g[0, n), accumulated in double precision (for clipping). */
double pd_optim_norm2(const float *g, size_t n);
/* s + the squares of g[0, n), added to s one by one in index order: a
 * vector summed block after block through it gives pd_optim_norm2's bits
 * (sqrt of the result), so a sum can be squared while its block is in
 * cache. */
double pd_optim_sumsq(double s, const float *g, size_t n);

#endif
