/* Private to ps: the two halves every mode shares.
 *   pd_learner   a worker's side: its data shard, minibatch iterator, model
 *                and gradient buffers; computes one minibatch gradient at a
 *                given point (dense, or sparse for logreg/svm).
 *   pd_evaluator server 0's (or the serial process's) side: held-out and
 *                test evaluation, metrics.jsonl / status.json / progress,
 *                early stopping with the best parameters, summary.json.
 */
#ifndef PARAMD_PS_TRAIN_H
#define PARAMD_PS_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "paramd/config.h"
#include "paramd/data.h"
#include "paramd/metrics.h"
#include "paramd/model.h"
#include "paramd/optim.h"
#include "paramd/phase.h"
#include "paramd/ps.h"

/* ---- learner ---------------------------------------------------------- */
typedef struct pd_learner {
    const pd_config *cfg;
    pd_data *data;           /* training shard only */
    const pd_dataset *train;
    pd_iter *iter;
    pd_model *model;
    size_t nparams;
    float *grad;             /* [nparams] dense gradient */
    float *curv;             /* [2][nparams] vsgd's curvature h, then per-example second
                                moment v, beside the gradient; or NULL */
    pd_sparse_grad sgrad;    /* sparse models */
    bool sparse;
    /* last minibatch */
    const size_t *rows;
    size_t batch;
    double loss;
    int64_t examples;        /* consumed so far */
} pd_learner;

/* Load shard `shard` of `nshards` and build the model. Local. */
int pd_learner_init(pd_learner *l, const pd_config *cfg, int shard, int nshards);
/* Make the learner compute a curvature estimate beside every gradient
 * (l->curv; pd_model_grad_curv) when cfg's optimizer takes one; nothing
 * otherwise. Idempotent, so a carried learner can be asked again. Local. */
int pd_learner_use_curv(pd_learner *l, const pd_config *cfg);
void pd_learner_free(pd_learner *l);
/* Draw the next minibatch into l->rows / l->batch; false when the epoch
 * has ended (no batch; the next call starts the following epoch). */
bool pd_learner_next(pd_learner *l);
/* Gradient of the drawn minibatch at point into l->grad (or l->sgrad when
 * sparse) and its loss into l->loss. A non-finite loss or gradient is
 * reported through *finite, not as an error. No allocation. */
int pd_learner_grad(pd_learner *l, const float *point, bool *finite);
/* The gradient's global L2 norm when clipping by norm is on, else 0. */
double pd_learner_grad_norm(const pd_learner *l, const pd_optim_config *oc);
/* Take update t of opt on theta with the gradient pd_learner_grad left
 * (dense over the whole model, or sparse), its step scaled by scale. Used
 * by local steps and by replay. No allocation. Local. */
void pd_learner_apply(const pd_learner *l, pd_optim *opt, const pd_optim_config *oc,
                      float *theta, int64_t t, double scale);
/* One optimizer step on theta[0, n) from the drawn minibatch: the gradient
 * at the optimizer's lookahead point (computed into look, or NULL for rules
 * without one), then update t. *applied is false when the gradient was not
 * finite (then theta is untouched). Shared by the serial trainer and the
 * local steps of local_sgd / easgd workers. No allocation. */
int pd_learner_local_step(pd_learner *l, pd_optim *opt, const pd_optim_config *oc,
                          float *theta, float *look, int64_t t, bool *applied);
/* The starting parameters theta[nparams of m]: model.init_from's run
 * (layout checked, PD_EINPUT naming a difference), else pd_model_init from
 * run.seed. Used by the serial trainer, every server and replay. Local. */
int pd_learner_start_point(const pd_config *cfg, const pd_model *m, float *theta);
/* Fractional epochs consumed by this learner. */
double pd_learner_epoch(const pd_learner *l);

/* ---- evaluator -------------------------------------------------------- */
typedef struct pd_progress {
    int64_t update;
    int64_t examples;
    double epoch;
    double lr;
    double train_loss;        /* mean since last evaluation, NAN if none */
    double staleness_mean;    /* NAN where it does not apply */
    int64_t staleness_max;    /* -1 where it does not apply */
    int64_t dropped;          /* -1 where it does not apply */
    const float *grad;        /* latest gradient for per-tensor norms, or NULL */
    const double *grad_norms; /* or its per-tensor norms already computed, or NULL */
    const pd_lost_worker *lost;   /* workers lost so far: entries are written once,
                                     before n_lost counts them, never changed */
    size_t n_lost;
    /* batch methods (src/batch/): evaluations so far (0 elsewhere), this
     * iteration's line-search steps, and why they stopped (finish) */
    int64_t evaluations, line_search_steps;
    const char *stop_reason;
} pd_progress;

typedef struct pd_evaluator pd_evaluator;

/* Load the validation and test parts, open the run directory and write
 * config.resolved.yaml. workers/servers are for the summary. Local. */
int pd_evaluator_create(const pd_config *cfg, const pd_run_opts *opts, int workers,
                        int servers, pd_evaluator **out);
void pd_evaluator_destroy(pd_evaluator **ev);
/* Evaluate theta, append metrics, rewrite status, print progress, track
 * early stopping (*stop set when patience runs out). Local. */
int pd_evaluator_eval(pd_evaluator *ev, const float *theta, const pd_progress *p, bool *stop);
/* What the distributed modes add to the summary. */
typedef struct pd_run_stats {
    const int64_t *stale_hist;    /* counts of staleness 0..n-1 (last: n-1 or more) */
    size_t stale_hist_n;
    int64_t applied, sent, bad;   /* gradients applied, sent by workers, non-finite */
    int64_t dropped_stale, dropped_late, dropped_at_stop;   /* their sum: p->dropped */
    const int64_t *server_applied, *server_bad, *server_dropped;   /* [n_servers] */
    const int64_t *server_applied_set;   /* fingerprint of which gradients were applied */
    int n_servers;
    double server_cpu_s;          /* server 0's CPU time (user + system), all threads */
    double server_loop_cpu_s;     /* of which its serving threads (no evaluation) */
    int64_t params_sent_floats;   /* parameter floats in server 0's replies */
    int64_t evals_skipped;        /* due while the previous one still ran */
    const pd_worker_stats *workers; /* per worker, n_workers of them */
    int n_workers;
} pd_run_stats;

/* Final summary from the latest evaluation: restores the best parameters
 * into theta (re-evaluated) when early stopping is on, writes params.bin
 * and summary.json. rs may be NULL (serial). */
int pd_evaluator_finish(pd_evaluator *ev, float *theta, const pd_progress *p,
                        const pd_run_stats *rs, const char *exit);
/* training.phases: the rows from now on belong to phase index (of count)
 * with config cfg, which the evaluator uses until the next call. Local. */
void pd_evaluator_set_phase(pd_evaluator *ev, const pd_config *cfg, int index, int count);
/* The finished phases' entries and the run's totals when the current phase
 * began (its record for a checkpoint), and back (--resume). */
void pd_evaluator_phase_state(const pd_evaluator *ev, pd_phase_record *r);
void pd_evaluator_set_phase_state(pd_evaluator *ev, const pd_phase_record *r);
/* The end of a phase before the last: its last update evaluated (a row,
 * unless the last row is of it) and its summary entry kept for
 * pd_evaluator_finish, which adds the last phase's. rs: the run's totals. */
int pd_evaluator_phase_end(pd_evaluator *ev, const float *theta, const pd_progress *p,
                           const pd_run_stats *rs, const char *exit);
/* params_sha256 of the parameters the last pd_evaluator_finish wrote. */
int pd_evaluator_sha(const pd_evaluator *ev, char hex[65]);
/* What a checkpoint keeps of the evaluator: the run's wall time so far,
 * the checkpoint pauses, early stopping (best validation loss, its update,
 * evaluations since, the best parameters: best is the evaluator's own
 * array of nbest floats, or NULL) and the last evaluated update. */
typedef struct pd_eval_state {
    double wall_s, pause_sum, pause_max;
    int64_t pauses;
    double best_loss;
    int64_t best_update, bad_evals, last_eval;
    const float *best;
    size_t nbest;
    const char *from;          /* set_state: the checkpoint resumed (recorded in */
    int64_t from_update;       /* config.resolved.yaml), or NULL */
} pd_eval_state;
void pd_evaluator_get_state(const pd_evaluator *ev, pd_eval_state *out);
/* Continue from a checkpoint's state: wall time and pauses go on from it;
 * a best array of another size than the model's is refused. Local. */
int pd_evaluator_set_state(pd_evaluator *ev, const pd_eval_state *in);
/* One checkpoint's pause of training, in seconds (summary.json). */
void pd_evaluator_note_pause(pd_evaluator *ev, double s);
/* Seconds since the evaluator was created. */
double pd_evaluator_wall(const pd_evaluator *ev);
/* Status-only refresh between evaluations (cheap; rate-limited inside). */
int pd_evaluator_heartbeat(pd_evaluator *ev, const pd_progress *p);

/* Seconds on a monotonic clock (comm.c; the one clock of ps). */
double pd_now(void);
/* CPU seconds, user and system, of this process (all its threads) and of
 * the calling thread (comm.c). */
double pd_cpu_process(void);
double pd_cpu_thread(void);

#endif
