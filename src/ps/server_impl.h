/* Private to the server side of ps: the state of a server rank, shared by
 * server.c (event loop, evaluation, setup) and apply.c (messages and the
 * update rule of each mode). */
#ifndef PARAMD_PS_SERVER_IMPL_H
#define PARAMD_PS_SERVER_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "evalthread.h"
#include "paramd/ckpt.h"
#include "modes.h"
#include "pace.h"
#include "paramd/model.h"
#include "paramd/optim.h"
#include "server.h"
#include "trace.h"
#include "train.h"

#define STALE_HIST 64
#define PD_MAX_SERVERS_STATS 64

enum pd_drop_kind { PD_DROP_STALE, PD_DROP_LATE, PD_DROP_AT_STOP, PD_DROP_KINDS };

typedef struct peer {
    pd_msg_hdr in, out;
    MPI_Request rpay, rout[2];     /* payload receive; reply header, payload */
    float *g;                      /* [words][hi - lo] received gradient (then vsgd's h
                                      and v) / model: g[i - lo] */
    uint8_t *sp;                   /* sparse payload */
    float *reply;                  /* [hi - lo] reply payload (packed pulls: [npull]) */
    float *stale;                  /* [hi - lo] dc: the point it last read */
    float *dc;                     /* [hi - lo] dc: its corrected gradient */
    bool active;                   /* has not sent FINAL, is not lost */
    bool hello;                    /* its HELLO is in: it can be lost from then on */
    bool lost;                     /* silent past training.worker_timeout (lost.c) */
    _Atomic double since;          /* pd_now() since the server waits for its next
                                      message (its last reply, or setup) */
    int64_t seen;                  /* the version when its last message came */
    bool waiting;                  /* sync: holds a gradient of this round;
                                      async wait: reply held back (SSP) */
    bool aside;                    /* hears: its gradient waits for a later round */
    bool partial;                  /* hears: its header is in, the payload not yet */
    int64_t clock;                 /* requests processed (by this process) */
    int64_t seq0;                  /* server 0: requests it had sent before this process
                                      (a resumed run's, from the checkpoint) */
    int64_t batches;               /* per epoch (HELLO) */
    int64_t applied, dropped, stale_sum;   /* this worker's gradients */
    _Atomic double loss_sum;       /* its applied gradients' losses (one writer) */
    _Atomic int64_t loss_n;
    bool good;                     /* rounds: its gradient/model is finite */
    bool reset;                    /* easgd: reply with the centre (bad model) */
    pd_decision dec;               /* S > 1: server 0's decision on its gradient */
    pd_decision din;               /* servers > 0: the next one's receive buffer */
    MPI_Request dreq;              /* servers > 0: its receive; server 0: its sends */
    MPI_Request *dsend;            /* server 0: [S] sends of dec (entry 0 unused) */
    double epoch;
    bool ckpt;                     /* server 0: its reply asked for its state */
    bool stashed;                  /* async, server s > 0: its gradient waits for
                                      this server's checkpoint snapshot */
    _Atomic bool released;         /* hogwild, server s > 0: the snapshot is taken;
                                      its serving thread concludes that gradient */
    bool fin;                      /* its FINAL is in (under ck_mu: a snapshot
                                      wants no state or CKPT header of it) */
    /* Pacing and rates: when its request arrived, how long it was held for
     * other workers (sent back in the reply), and the first and last
     * GRAD/MODEL arrivals and their count (server 0: gradients per second). */
    double arrived, held, first_t, last_t;
    int64_t requests;
    /* Straggler pacing: slowed (faults.slow_workers), or the recent cycles
     * of an unslowed worker (arrival to arrival, held time left out) and
     * their mean, read by the threads replying to slowed workers. */
    bool slowed;
    pd_cycles cycles;
    _Atomic double cycle_mean;
} peer;

/* A server's state at one version, kept until its part is written. */
typedef struct ckpt_snap {
    pd_ckpt_part part;             /* without worker states */
    int64_t *stale_sum;            /* [W] each worker's staleness sum */
    bool copied;                   /* part.params is a copy */
    size_t nlost;                  /* server 0: workers lost before it (the first
                                      entries of sv->lost) */
    bool *lost_in;                 /* [W] server 0: in it as lost, its state as of its
                                      loss: lost before it, or while it waited for the
                                      worker's state */
} ckpt_snap;

/* Checkpoints of a server (server_ckpt.c, src/ps/checkpoint.h). */
typedef struct server_ckpt {
    bool on;                       /* checkpoints are written */
    char dir[PD_PATH_MAX + 16];    /* run.out_dir/checkpoints */
    uint64_t layout_hash, config_hash;
    int64_t written;               /* version of the last part written, -1 none */
    double last_t;                 /* pd_now() at the last one */
    unsigned char **state;         /* server 0: [W] each worker's latest state */
    unsigned char **later;         /* server 0, async: [W] a FINAL's state that came
                                      while a snapshot still needs the one before */
    size_t *later_size;
    size_t *state_size;
    bool resumed;
    int64_t resume_eval;           /* the checkpoint's last evaluated update */
    pd_ckpt_part part;             /* --resume: this server's part, until used */
    char resume_dir[PD_PATH_MAX + 16];   /* --resume: DIR/checkpoints */
    char *rows;                    /* --resume, server 0: metrics.jsonl's rows kept */
    size_t nrows;
    /* async, hogwild, easgd: the snapshot whose workers' states
     * (server 0) or CKPT headers (async, server s > 0) are awaited */
    ckpt_snap snap;
    bool pending;                  /* a snapshot waits for states (server 0: and
                                      for the other parts' ids) */
    bool *want;                    /* [W] server 0: worker w's next reply asks for
                                      its state; s > 0: its CKPT header is awaited */
    int64_t *extra;                /* [W] its gradients that came after the snapshot */
    int nwant;
    double pause_acc;              /* seconds of this checkpoint's pauses so far */
    /* async and hogwild with S > 1 (checkpoint.h): decisions made (server 0) or
     * concluded (s > 0) in this process; server 0's latest snapshot and
     * its count; server s's cut to come, the last one it took, each
     * worker's last CKPT header; server 0's receives of the parts' ids */
    _Atomic int64_t decided;       /* (hogwild threads decide concurrently) */
    int64_t cut, cut_before;
    int64_t cut_next, cut_need, snapped;
    int64_t *marker;               /* [W] s > 0 */
    int nstashed;
    bool final_deferred;           /* s > 0: the final SNAP waits for the part */
    MPI_Request *idreq;            /* [S] server 0, entry 0 unused */
    unsigned char *idbuf;          /* [S][ID_BYTES] */
    bool ids_wait;                 /* part 0 is written; the ids are awaited */
    pd_ckpt_id id0;                /* part 0's */
    /* --resume of a traced run (server 0): the checkpoint's trace records
     * and the temporary they came from ("": trace.bin) */
    pd_trace_rec *trace_recs;
    char trace_from[PD_PATH_MAX + 32];
} server_ckpt;

typedef struct server {
    const pd_config *cfg;
    const pd_world *world;
    pd_model *model;
    size_t n, lo, hi;
    bool sparse;
    int words;                     /* floats per coordinate in a gradient message: 1, or
                                      3 when the optimizer takes a curvature (vsgd): the
                                      range's g, then its h, then its v */
    float *theta;                  /* [n], range [lo, hi) owned */
    float *acc;                    /* [words][n] sync/local_sgd round sum (range used);
                                      NULL in the other modes */
    double round_examples;         /* sync: the examples behind the round's mean */
    float *weight;                 /* [W] each worker's share of the round's examples */
    float *point;                  /* [hi - lo] rounds with lookahead: the point sent */
    int64_t point_version;
    pd_optim *opt;
    peer *peers;                   /* [W] */
    MPI_Request *hreq;             /* [W + 1]: workers' headers, then control */
    _Atomic int active, hellos;
    pthread_mutex_t mu;            /* hogwild: the noted gradient, loss marks */
    pthread_mutex_t drive_mu;      /* the thread running stop checks and evaluation */
    /* Hogwild with checkpoints: each thread holds apply_lock shared from a
     * gradient's decision to its counters, a snapshot holds it exclusive
     * (the threads quiesce for its copy); ck_mu guards server 0's
     * checkpoint bookkeeping (server_ckpt.c) between the threads. */
    bool quiesce;
    pthread_rwlock_t apply_lock;
    pthread_mutex_t ck_mu;
    _Atomic int64_t version;
    _Atomic int64_t updates_per_epoch;   /* set once every HELLO is in */
    /* Accounting (hogwild threads update them atomically). Every gradient
     * (or model) a worker sends ends in exactly one of applied, bad or one
     * of the drops: stale (async drop policy), late (sync backup workers),
     * at_stop (in flight when the run stopped). examples: of applied ones. */
    _Atomic int64_t applied, bad, examples, stale_sum, stale_max;
    _Atomic int64_t dropped[PD_DROP_KINDS];
    _Atomic uint64_t applied_mix;  /* sum of a hash of (worker, seq) per applied
                                      gradient: equal sets, equal sums */
    _Atomic int64_t stale_hist[STALE_HIST];
    int64_t sent_total;            /* from FINAL messages */
    _Atomic int64_t sent_floats;   /* parameter floats in replies */
    /* Minibatch losses: monotone totals, each written by one thread only
     * (a peer's by the thread serving it; the server's by the single
     * thread of the round modes), read lock-free by the evaluation, which
     * subtracts the totals it saw last time (loss_mark_*, under mu). */
    _Atomic double loss_sum;
    _Atomic int64_t loss_n;
    double loss_mark_sum;
    int64_t loss_mark_n;
    _Atomic bool stopping;         /* STOP goes out on the next replies */
    _Atomic bool failed;           /* a serving thread failed: the others end */
    bool decides, follows;         /* S > 1, each-message modes: server 0 decides
                                      for every gradient, the others follow */
    /* Sync with backup workers and S > 1 (rounds.c): server 0 casts its
     * round decisions, the others hear and do the same. */
    bool casts, hears;
    unsigned char *rbuf;           /* pd_round_msg + [W] members */
    MPI_Request rreq;              /* hears: the next message's receive */
    bool rheld;                    /* hears: rbuf holds one not yet done */
    bool hearing;                  /* hears: in server_hear (no re-entry) */
    int64_t others_applied[PD_MAX_SERVERS_STATS], others_bad[PD_MAX_SERVERS_STATS],
            others_dropped[PD_MAX_SERVERS_STATS],   /* server 0: from the final SNAP */
            others_mix[PD_MAX_SERVERS_STATS];
    _Atomic bool early_stopped;
    double loop_cpu_s;             /* CPU of the serving threads (not evaluation) */
    FILE *trace;                   /* server 0, async with training.trace */
    uint64_t trace_n;
    uint64_t trace_hash;           /* its records so far (trace.h) */
    /* server 0 */
    pd_evaluator *ev;
    pd_eval_thread *et;
    _Atomic int64_t next_eval;
    pd_eval_skips skips;           /* by one thread at a time (rounds, drive_mu) */
    /* Lost workers (lost.c): timeout in s (0: none are), the list [W] (an
     * entry is written under mu before n_lost counts it), a loss not yet
     * followed up by the round or SSP logic. */
    double worker_timeout;
    pd_lost_worker *lost;          /* [W + those a resumed checkpoint names] */
    int64_t *lost_sent;            /* [same] server 0: each one's requests that arrived,
                                      over the whole run */
    _Atomic size_t n_lost;
    _Atomic bool lost_new;
    _Atomic double lost_t;         /* pd_now() at the last loss (0: none) */
    /* The gradient noted before an evaluation: per-tensor sums of squares
     * over [lo, hi) (sync with S > 1 adds the other servers' parts from
     * their SNAP replies), then the norms. Under mu (hogwild threads). */
    double gsq[PD_MAX_TENSORS];
    double gnorm[PD_MAX_TENSORS];
    bool gnorm_ok;
    _Atomic double last_eval_t;    /* pd_now() at the last evaluation */
    _Atomic int64_t last_eval_update;
    /* control: SNAP requests (servers > 0) */
    pd_msg_hdr ctrl_in;
    int64_t snap_pending;          /* sync: version a SNAP waits for, -1 none */
    bool final_snap;
    /* checkpoints */
    server_ckpt ck;
    int32_t reply_flags;           /* server 0: flags on this round's replies */
    pd_phase_carry *carry;         /* training.phases, or NULL */
} server;

static inline const pd_mode_props *mode_of(const server *sv)
{
    return pd_mode_props_of(sv->cfg->training.mode);
}

/* apply.c */
int server_post_recv(server *sv, int w);
int server_reply(server *sv, int w, bool elastic);
/* Async/hogwild/easgd: `control` is the thread that answers SNAP requests
 * (it keeps answering them while it waits for server 0's decision). */
int server_on_grad_async(server *sv, int w, bool control);
/* Server 0 with S > 1: once the previous one has left, d becomes
 * peers[w].dec and goes to every other server. */
int server_send_decision(server *sv, int w, const pd_decision *d);
/* Async: what follows worker w's decision (apply or count it, the
 * checkpoint's bookkeeping, the reply); server_ckpt.c calls it for a
 * gradient it kept back. */
int server_conclude_async(server *sv, int w);
/* Server 0 with training.trace: append one record (and hash it). */
int server_trace(server *sv, const pd_trace_rec *rec);
/* Servers > 0 with S > 1: post the receive of server 0's next decision. */
int server_post_decision(server *sv, int w);
int server_release_waiting(server *sv);
int server_on_grad_sync(server *sv, int w);
int server_maybe_close_round(server *sv);
/* Close the round now on the gradients of the workers `waiting`. */
int server_close_round(server *sv);
/* Count worker w's gradient dropped (kind), and nothing else. */
void server_drop(server *sv, int w, enum pd_drop_kind kind);
/* rounds.c: sync with backup workers and S > 1. Server 0: send every other
 * server a ROUND (the workers waiting now are the round), LATE or LOST
 * message for worker w (-1 for ROUND). */
int server_cast(server *sv, int kind, int w, enum pd_drop_kind drop);
/* Servers > 0: do server 0's messages in order, as far as the gradients
 * they name have come (a message waits for them, the next behind it). */
int server_hear(server *sv);
/* The standing receive for a serving loop to wait on, or NULL (none, or a
 * message is held); when it completes, mark sv->rheld and server_hear. */
MPI_Request *server_hear_request(server *sv);
/* Setup and end: buffers and the standing receive. */
int server_rounds_setup(server *sv);
int server_rounds_end(server *sv);
int server_on_model_easgd(server *sv, int w, bool control);
/* easgd: what follows worker w's decision (the elastic step or the count,
 * a server s > 0's checkpoint bookkeeping, the reply); server_ckpt.c calls
 * it for a model it kept back. */
int server_conclude_easgd(server *sv, int w);
/* lost.c: training.worker_timeout. A worker the server waits for longer
 * than that (a message from it, the rest of one, or our reply to it that
 * does not leave) is lost: its requests are dropped, it counts as inactive,
 * and training goes on without it in async, hogwild and sync with backup
 * workers; the other modes fail (PD_ETRAIN) naming it. */
int server_lose_worker(server *sv, int w, const char *what);
/* Lose the workers of [first, W) by stride that are past the timeout, then
 * let the round close or held replies go. Called by their serving thread. */
int server_check_lost(server *sv, int first, int stride);
/* Servers > 0 under a worker timeout: they lose workers on server 0's
 * word (its LOST decision), never by a timeout of their own. */
bool server_told(const server *sv);
/* Wait for reqs[n] of worker w (bounded by the timeout when there is one);
 * *lost is set (and the worker lost) when they did not complete in time. */
int server_wait_worker(server *sv, int w, int n, MPI_Request *reqs, bool *lost);
/* server.c */
int server_answer_snap(server *sv);
/* Wait for worker w's next message and handle it as the event loop would
 * (one serving thread: rounds and easgd, not hogwild). */
int server_serve_worker(server *sv, int w);
/* Rounds (sync, local_sgd): after a step, before its replies go out. Server
 * 0 takes a due evaluation snapshot here: no worker can compute the next
 * round yet, so no other server can step past this version meanwhile, and
 * the ranges it gathers (and their parts of the gradient norms) are all of
 * this round. */
int server_round_closed(server *sv);
/* Server 0: keep the per-tensor norms of the gradient just applied, dense
 * g over [lo, hi) or sparse pairs, when the next evaluation is due, for
 * metrics.jsonl. Where the servers apply gradients in different orders
 * (async and hogwild with S > 1) there is no one such gradient: nothing is
 * kept. g holds the range alone (g[i - lo]). Safe from concurrent hogwild
 * threads. */
void server_note_grad(server *sv, const float *g);
void server_note_sparse(server *sv, const uint32_t *idx, const float *val, size_t nnz);
/* server_ckpt.c: checkpoints (src/ps/checkpoint.h says the protocol).
 * Setup, before the evaluator opens the run directory: checkpoint
 * directory, hashes, and with --resume this server's part of the newest
 * valid checkpoint into theta, the optimizer and the counters (server 0
 * also the workers' states, early stopping, metrics.jsonl's rows). */
int server_ckpt_setup(server *sv, const pd_run_opts *opts);
/* Server 0, once every rank has set up: a resumed run's worker states. */
int server_ckpt_start(server *sv);
/* Server 0 with training.trace, once the run directory is open: start
 * trace.bin's temporary, or with --resume continue the resumed run's
 * (its records up to the checkpoint, then one "dropped" record for each
 * gradient the checkpoint counts as dropped at the stop). */
int server_ckpt_trace_open(server *sv);
/* Server 0 after evaluation is set up: the evaluator's part of a resume. */
int server_ckpt_resume_eval(server *sv);
/* Round modes, server 0 at a round's close: is a checkpoint due (sets the
 * flag its replies carry)? */
void server_ckpt_round_due(server *sv);
/* Server 0 after replying with the flag: take the states, write. */
int server_ckpt_round_write(server *sv);
/* Server s > 0: a worker's CKPT header. */
int server_ckpt_on_msg(server *sv, int w);
/* Server 0: a worker's FINAL (its state comes first). */
int server_ckpt_on_final(server *sv, int w);
/* At the end (server 0 after the final SNAP, the others when answering
 * it): the checkpoint of the final version, if checkpoints are on and it
 * is not written yet. */
int server_ckpt_final(server *sv);
/* Async and hogwild, server 0: after a gradient is decided, a snapshot
 * when one is due (every active worker's next reply then asks for its
 * state), or, while one waits, count a wanted worker's gradient as come
 * after it. A server s > 0 (async, hogwild, easgd): count the gradient
 * (model) concluded, and take the snapshot once every decision before
 * the cut is. */
int server_ckpt_async_grad(server *sv, int w);
/* easgd, server 0: before worker w's model is decided, a snapshot of
 * its shard of the centre when one is due; a model that comes after it
 * (this one included) is counted as come after it. Nothing on the other
 * servers (they follow the cut: server_ckpt_follow). */
int server_ckpt_elastic_model(server *sv, int w);
/* Async, hogwild and easgd, server s > 0 with S > 1, after following server 0's
 * decision on worker w's gradient: a decision after a snapshot this server
 * has not taken yet either takes it (every decision before it is
 * concluded) or keeps the gradient back (*stash) until it is. */
int server_ckpt_follow(server *sv, int w, bool *stash);
/* Hogwild, server s > 0: the serving thread of workers first, first +
 * stride, ... concludes those of its gradients kept back that the snapshot
 * has released; *held says whether one of them is still kept back (the
 * thread then looks again soon: nothing else wakes it). */
int server_ckpt_released(server *sv, int first, int stride, bool *held);
/* Async, server s > 0: the final SNAP request waits while its part of a
 * checkpoint waits for CKPT headers (true: answered once it is written). */
bool server_ckpt_defer_final(server *sv);
/* Does worker w's next reply to a gradient or model ask for its state? */
bool server_ckpt_wants(server *sv, int w);
/* After that reply left: take the state (the worker sends it at once). */
int server_ckpt_async_reply(server *sv, int w);
/* Worker w was just counted lost (lost.c): a snapshot that waits for its
 * state (server 0) or its CKPT header (the others) no longer does, and
 * server 0's holds it as lost, its state as of its loss. */
int server_ckpt_on_lost(server *sv, int w);
/* Server 0 after a run that a stop signal ended as usual: PD_ESTOPPED
 * (exit 143) with the line that says where its checkpoint is. */
int server_ckpt_stopped(const server *sv);
/* The first evaluation of a resumed run: after the checkpoint's last. */
void server_ckpt_eval_cadence(server *sv, int64_t every);
void server_ckpt_free(server *sv);

/* Wait for a collective among servers while still answering server 0's
 * SNAP requests (server 0 may be waiting on one to evaluate). */
int server_wait_collective(server *sv, MPI_Request *r);

/* training.phases, server 0: the record of the checkpoint at update v
 * (server.c), written before its manifest. */
int server_phase_record(server *sv, int64_t v);

#endif
