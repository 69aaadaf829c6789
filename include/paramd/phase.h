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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paramd/config.h"
#include "paramd/metrics.h"
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
    int64_t *epoch_base;           /* server 0: [workers] epochs each worker had done when
                                      the current phase began (NULL: none yet) */
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

/* The run's totals when a phase began: each phase's summary entry is the
 * totals at its end less these. */
typedef struct pd_phase_marks {
    int64_t update;                /* the update counter */
    double epoch, wall_s;          /* mean fractional epoch, the run's wall time */
    int64_t sent, applied, dropped, bad;
    double stale;                  /* sum of the applied gradients' staleness */
} pd_phase_marks;

/* Where a checkpoint of a run with phases was taken: in phase `index`,
 * which began at `start`, each worker's epochs counting from epoch_base[w],
 * after the finished phases' summary entries done[0 .. n_done). */
typedef struct pd_phase_record {
    int index, count, workers;
    pd_phase_marks start;
    int64_t *epoch_base;           /* [workers] */
    int n_done;
    pd_phase_summary done[PD_MAX_PHASES];
} pd_phase_record;

typedef struct pd_phase_carry {
    const pd_config *run;          /* the whole run's (config.resolved.yaml) */
    int index, count;              /* this phase, of count */
    pd_phase_server *server;       /* NULL until a server role makes it */
    pd_phase_worker *worker;       /* NULL until a worker role makes it */
    /* --resume: the record of the checkpoint this phase continues from
     * (the first phase run only; NULL otherwise), and whether the run was
     * resumed at all */
    const pd_phase_record *record;
    bool resumed;
    /* A role sets it when the run ends after this phase without an error
     * (a stop signal): no further phase runs. */
    bool stop;
} pd_phase_carry;

/* The configuration phase i runs with: pd_config_phase, its max_updates
 * counted from `start` (the update counter when the phase begins). */
int pd_phase_config(const pd_config *run, int i, int64_t start, pd_config *out);

/* One phase in this rank's role: cfg is the phase's (it stays valid until
 * the next phase begins); it takes from c what the previous phase left
 * (c->index > 0) and leaves in c what the next one needs. */
typedef int (*pd_phase_role)(const pd_config *cfg, pd_phase_carry *c, void *ctx);

/* Run every phase of run->training.phases in turn in `role`, stopping at
 * the first error or when a role sets c->stop. With `from` (--resume),
 * start at from->index, that phase's max_updates counted from
 * from->start.update, c->record = from during it. */
int pd_phase_run(const pd_config *run, const pd_phase_record *from, pd_phase_role role,
                 void *ctx);

/* The hand-overs, made on first use (zeroed; PD_ENOMEM). */
int pd_phase_server_get(pd_phase_carry *c, pd_phase_server **out);
int pd_phase_worker_get(pd_phase_carry *c, pd_phase_worker **out);
/* Free everything c holds (the learner and evaluator through their
 * callbacks). */
void pd_phase_carry_free(pd_phase_carry *c);

/* ---- the record of a checkpoint ------------------------------------------

 * Next to each checkpoint of a run with phases (paramd/ckpt.h), in the
 * same directory, server 0 writes "ckpt-<t>.phase" (t as in the
 * checkpoint's names) atomically before the checkpoint's manifest, so
 * every valid checkpoint set of such a run has one. The checkpoint's
 * config hash covers training.phases, so a record is only ever read by
 * the run that wrote it. Little-endian; f64 is the IEEE-754 binary64 bit
 * pattern as a u64:
 *     0  magic, 8 bytes "PDPHASE\n"
 *     8  u32 format version (PD_PHASE_RECORD_VERSION)
 *    12  u32 phase index i, 16 u32 phases count, 20 u32 workers W
 *    24  the marks at phase i's start: i64 update, f64 epoch, f64 wall
 *        seconds, i64 sent, applied, dropped, bad, f64 staleness sum
 *    88  W times i64: worker w's epochs done when phase i began
 *        u32 n finished phases, u32 zero, then n entries of 128 bytes:
 *          0 u32 index, 4 u32 mode (pd_mode), 8 16 bytes exit (ASCII, NUL
 *          padded), 24 i64 first update, 32 i64 last update, 40 f64
 *          epochs, 48 f64 wall seconds, 56 i64 sent, 64 applied, 72
 *          dropped, 80 bad, 88 f64 mean staleness, 96 f64 validation loss,
 *          104 validation accuracy, 112 test loss, 120 test accuracy
 *        u32 crc32 (zlib) of every byte before it, u32 zero
 * and nothing after. */
#define PD_PHASE_RECORD_VERSION 1u

/* Encode r into a buffer it allocates (caller frees). Local. */
int pd_phase_record_encode(const pd_phase_record *r, unsigned char **buf, size_t *size);
/* Decode buf (`file` names it in messages): PD_EINPUT "FILE: reason" on
 * anything malformed; *out (epoch_base allocated, pd_phase_record_free)
 * is written only on PD_OK. Local. */
int pd_phase_record_decode(const char *file, const unsigned char *buf, size_t size,
                           pd_phase_record *out);
void pd_phase_record_free(pd_phase_record *r);
/* "DIR/ckpt-<t>.phase". */
int pd_phase_record_path(const char *dir, uint64_t t, char *out, size_t size);
/* Write r as dir's record of checkpoint t atomically. PD_EIO naming the
 * file and errno. Local. */
int pd_phase_record_write(const char *dir, uint64_t t, const pd_phase_record *r);
/* After pd_ckpt_prune: remove the records older than dir's newest manifest
 * whose checkpoint has none (pruned; a failure to remove one is ignored).
 * Local. */
void pd_phase_record_prune(const char *dir);
/* Read the bytes of dir's record of checkpoint t (caller frees *buf);
 * PD_EINPUT naming the file when it cannot be read. Local. */
int pd_phase_record_load(const char *dir, uint64_t t, unsigned char **buf, size_t *size);

#endif
