/* training.phases: modes run one after another in one job on the same
 * parameters and optimizer state. This module owns the sequence: which
 * phase runs, the configuration each phase runs with (pd_config_phase,
 * its max_updates counted from the phase's start), and what one phase
 * hands the next on each rank (pd_phase_carry), as plain data. What a
 * role puts into the hand-over and takes out of it is the role's business
 * (ps: server.c and worker.c). No MPI: the roles are callbacks.
 *
 * What a phase hands the next:
 *   a server rank: the parameters (its range is its own), the optimizer
 *     state over its range (pd_optim_save), the update counter and every
 *     counter of the run's accounting (pd_phase_counters), the per-worker
 *     counts, and on server 0 the evaluator (rows, early stopping, the
 *     finished phases' summary entries);
 *   a worker rank: its learner (data shard, minibatch iterator and
 *     position, model), its fault-injection RNG, its local optimizer's
 *     state from the last phase that had one, and local steps taken. */
#ifndef PARAMD_PHASE_H
#define PARAMD_PHASE_H

#include <stddef.h>
#include <stdint.h>

#include "paramd/config.h"
#include "paramd/rng.h"

enum { PD_PHASE_DROP_KINDS = 3, PD_PHASE_STALE_HIST = 64 };

/* A server's run-wide counters (the names of src/ps/server_impl.h). */
typedef struct pd_phase_counters {
    int64_t version, applied, bad, examples, stale_sum, stale_max;
    int64_t dropped[PD_PHASE_DROP_KINDS];   /* stale, late, at the stop */
    int64_t stale_hist[PD_PHASE_STALE_HIST];
    uint64_t applied_mix;
    int64_t sent_total, sent_floats, evals_skipped, skipped_at, next_eval, last_eval_update;
    double loss_sum, loss_mark_sum, last_eval_t, loop_cpu_s;
    int64_t loss_n, loss_mark_n;
} pd_phase_counters;

/* A server rank's hand-over. */
typedef struct pd_phase_server {
    float *theta;                  /* [n] */
    size_t n;
    unsigned char *opt;            /* pd_optim_save over the server's range */
    size_t opt_size;
    pd_phase_counters c;
    int workers;
    int64_t *w_applied, *w_dropped, *w_stale;   /* [workers] */
    double cpu0;                   /* CPU time when the run began */
    void *evaluator;               /* server 0: ps's evaluator, freed by evaluator_free */
    void (*evaluator_free)(void *);
} pd_phase_server;

/* A worker rank's hand-over. */
typedef struct pd_phase_worker {
    void *learner;                 /* ps's learner (shard, iterator, model) */
    void (*learner_free)(void *);
    pd_rng frng;                   /* fault injection */
    int64_t local_t;               /* local steps taken */
    unsigned char *local;          /* pd_optim_save of the last local phase's optimizer */
    size_t local_size;
} pd_phase_worker;

typedef struct pd_phase_carry {
    const pd_config *run;          /* the whole run's (config.resolved.yaml) */
    int index, count;              /* this phase, of count */
    pd_phase_server *server;       /* NULL until a server role makes it */
    pd_phase_worker *worker;       /* NULL until a worker role makes it */
} pd_phase_carry;

/* The configuration phase i runs with: pd_config_phase, its max_updates
 * counted from `start` (the update counter when the phase begins). */
int pd_phase_config(const pd_config *run, int i, int64_t start, pd_config *out);

/* One phase in this rank's role: cfg is the phase's (it stays valid until
 * the next phase begins); it takes from c what the previous phase left
 * (c->index > 0) and leaves in c what the next one needs. */
typedef int (*pd_phase_role)(const pd_config *cfg, pd_phase_carry *c, void *ctx);

/* Run every phase of run->training.phases in turn in `role`, stopping at
 * the first error. */
int pd_phase_run(const pd_config *run, pd_phase_role role, void *ctx);

/* The hand-overs, made on first use (zeroed; PD_ENOMEM). */
int pd_phase_server_get(pd_phase_carry *c, pd_phase_server **out);
int pd_phase_worker_get(pd_phase_carry *c, pd_phase_worker **out);
/* Free everything c holds (the learner and evaluator through their
 * callbacks). */
void pd_phase_carry_free(pd_phase_carry *c);

#endif
