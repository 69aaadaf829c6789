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
 *   adadelta  r = rho r + (1-rho) g^2; d = -sqrt(s+eps)/sqrt(r+eps) g;
 *             s = rho s + (1-rho) d^2; theta += eta d   (eta = 1 by default)
 *   adam      bias-corrected moments; weight decay coupled (added to g)
 *   adamw     adam with decoupled weight decay: theta -= eta wd theta
 * Weight decay is coupled (wd * theta added to g) for every rule but adamw.
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

/* Replace every NAN hyperparameter of oc by the rule's default
 * (documented in conf/reference.yaml). Local. */
void pd_optim_defaults(pd_optim_config *oc);

/* Create state for the global coordinate range [lo, hi) (a server's shard,
 * or [0, n) for a serial run); state vectors are zeroed. `seed` drives the
 * gradient noise. The optimizer copies oc. Local. */
int pd_optim_create(const pd_optim_config *oc, size_t lo, size_t hi, uint64_t seed,
                    pd_optim **out);
void pd_optim_destroy(pd_optim **o);

/* Learning rate of the schedule at update t (1-based), before scale. */
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

/* Sparse step: gradient values val[k] for coordinates idx[k] (global,
 * within the created range), k < nnz. Accumulators of untouched coordinates
 * are left as they are (lazy updates); adam's bias correction uses t. */
void pd_optim_apply_sparse(pd_optim *o, const pd_optim_step *st, float *theta,
                           const uint32_t *idx, const float *val, size_t nnz);

/* True for rules whose gradient is taken at a lookahead point (nesterov,
 * rmsprop_nesterov). */
bool pd_optim_has_lookahead(const pd_optim *o);
/* point[i] = theta[i] + alpha v[i] for i in [lo, hi) (a copy of theta for
 * rules without lookahead). Local. */
void pd_optim_lookahead(const pd_optim *o, const float *theta, float *point,
                        size_t lo, size_t hi);

/* Serializable state (for checkpoints): bytes needed, save, load. Load
 * refuses a buffer of another rule or range with PD_EINPUT. */
size_t pd_optim_state_size(const pd_optim *o);
int pd_optim_save(const pd_optim *o, void *buf, size_t size);
int pd_optim_load(pd_optim *o, const void *buf, size_t size);

/* L2 norm of g[0, n) in double precision (for clipping). */
double pd_optim_norm2(const float *g, size_t n);

#endif
