/* Private to ps: sync mode without server ranks (colocated.c) and its
 * checkpoints (colocated_ckpt.c). */
#ifndef PARAMD_PS_COLOCATED_H
#define PARAMD_PS_COLOCATED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "comm.h"
#include "evalthread.h"
#include "train.h"

/* Rank 0's header flags: early stopping, the time trigger of evaluation,
 * a checkpoint after this round (every_seconds, SIGUSR1), a stop signal
 * (a checkpoint after this round, then the end). */
enum { FLAG_STOP = 1, FLAG_EVAL = 2, FLAG_CKPT = 4, FLAG_SIGNAL = 8 };

typedef struct round_hdr {
    double loss, norm, epoch;
    int64_t examples;
    int32_t has;          /* this rank has a gradient this round */
    int32_t flags;        /* rank 0: FLAG_* */
} round_hdr;

typedef struct coloc {
    const pd_config *cfg;
    const pd_world *world;
    pd_learner l;
    int W, me;
    size_t n, lo, hi;
    float *theta;         /* [n]: own range current; all of it without lookahead */
    float *point;         /* [n] the point gradients are taken at (theta without lookahead) */
    float *acc;           /* [words][n] own range: the round's weighted sums (vsgd: the
                             gradient's, then its curvature's and second moment's) */
    float **in;           /* [W] other ranks' gradients over our range (in[me] unused);
                             vsgd: [3][hi - lo], g, h and v */
    float *pack;          /* vsgd: [3n], each rank w's range of g, h, v from 3 lo_w */
    int words;            /* floats per coordinate in the exchange: 1, vsgd 3 */
    double round_examples; /* the round's good examples (vsgd's n) */
    float *weight;        /* [W] */
    int *counts, *displs; /* [W] ranges, for the gathers */
    round_hdr *hdr;       /* [W] this round's headers */
    round_hdr mine;       /* our header, sent from here */
    /* [2 W] each: header and gradient slice to every other rank (sends,
     * receives); [W] our range of the next point to every other rank and
     * theirs to us. A send is waited for only before its buffer changes. */
    MPI_Request *gsend, *grecv, *psend, *precv;
    pd_optim *opt;
    int64_t version, applied, bad, sent, dropped_at_stop, examples, floats_sent;
    int64_t *w_applied, *w_dropped;   /* [W] */
    int64_t updates_per_epoch, next_eval;
    pd_eval_skips skips;  /* rank 0 */
    double loss_sum;      /* of the rounds since the last evaluation */
    int64_t loss_n;
    double serve_cpu;     /* rank 0: CPU in exchanges and steps */
    double last_eval_t;
    int64_t last_eval_update;
    pd_evaluator *ev;     /* rank 0 */
    pd_eval_thread *et;
    const char *exit;
    /* checkpoints (colocated_ckpt.c) */
    bool ck_on;           /* a cadence is set, or the run was resumed */
    bool resumed;
    char ck_dir[PD_PATH_MAX + 16];
    uint64_t layout_hash, config_hash;
    int64_t ck_written;   /* version of the last checkpoint, -1 none */
    double ck_last_t;     /* pd_now() at the last one (every_seconds) */
    int64_t resume_eval;  /* --resume: the checkpoint's last evaluated update */
    pd_ckpt_part part0;   /* --resume, rank 0: part 0 (evaluator state), until used */
    char resume_dir[PD_PATH_MAX + 16];   /* --resume: DIR/checkpoints */
    char *rows;           /* --resume, rank 0: metrics.jsonl's rows kept */
    size_t nrows;
} coloc;


/* ---- colocated_ckpt.c: checkpoints --------------------------------------
 * Each rank writes part w of W: its range of theta and its optimizer
 * state, with the run's counters (every rank holds the same ones); part 0
 * also carries every rank's iterator state and examples (gathered) and
 * rank 0's evaluator state; rank 0 writes the manifest once every part's
 * size and crc32 is in. A round's checkpoint is taken after its step, so
 * the iterators are just past the round's minibatches. */

/* Setup, before the evaluator opens the run directory (Local): hashes,
 * directory, and with --resume this rank's part (theta's range, optimizer,
 * counters, version) and its iterator from part 0 of the newest valid
 * checkpoint; rank 0 keeps metrics.jsonl's rows. */
int coloc_ckpt_setup(coloc *c, const pd_run_opts *opts);
/* Rank 0 after the evaluator is created: rows and evaluator state back. */
int coloc_ckpt_resume_eval(coloc *c);
/* Is a checkpoint due after the round just closed (the version it made,
 * rank 0's flags)? The same answer on every rank. */
bool coloc_ckpt_due(const coloc *c);
/* Collective: write the checkpoint of the current version (a no-op when
 * it is written already). */
int coloc_ckpt_write(coloc *c);
void coloc_ckpt_free(coloc *c);

#endif
