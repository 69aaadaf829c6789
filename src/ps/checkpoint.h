/* Private to ps: what goes into a checkpoint and when (checkpoint.c), for
 * the serial trainer and the distributed modes. The file format is the
 * ckpt module's (paramd/ckpt.h); this is the coordination around it:
 *
 *   round modes (sync, local_sgd): at the close of round t that is due,
 *   server 0 flags its replies PD_FLAG_CKPT. Each worker of the round then
 *   sends server 0 its state (iterator, request count, examples, local
 *   steps and optimizer, fault RNG) on PD_TAG_CKPT and every other server
 *   a CKPT header on PD_TAG_DATA, and goes on computing. A server s > 0
 *   writes its part at the first CKPT header of version t (no worker can
 *   send the gradient of round t + 1 before its CKPT header, so the server
 *   still holds version t) and sends server 0 the part's size and crc32 on
 *   PD_TAG_CKPT + 1. Server 0 takes every state, writes part 0 (which
 *   carries the workers' states), takes the other parts' ids, writes the
 *   manifest last and prunes to checkpoint.keep. With backup workers,
 *   server 0 first waits for each worker that was not in the round: its
 *   late gradient (dropped, as always) is answered with the flag too, so
 *   its state holds that gradient sent and the parameters stay at t.
 *   async: when a checkpoint is due after a gradient, server 0 snapshots
 *   its state (parameters, optimizer, counters, evaluator) and flags the
 *   next reply to a gradient of every active worker (its seq names the
 *   snapshot's version V); each worker answers with its state as soon as
 *   that reply is in (server 0 takes it right after the reply; with S > 1
 *   the worker does not wait for the other servers' replies first, which
 *   may wait for server 0's decisions) and goes on. A worker's gradient
 *   that server 0 received after the snapshot (at most one: the one that
 *   reply answers) is behind the worker's state but not in the snapshot's
 *   parameters: the checkpoint counts it dropped at the stop. Once every
 *   state is in, part 0 and (once every part's id is in) the manifest are
 *   written. Serving goes on meanwhile.
 *   With S > 1 servers the cut is server 0's: each decision it sends
 *   carries V and the number D of decisions it had made at the snapshot.
 *   A server s > 0 takes its own snapshot once it has concluded D
 *   decisions and none after the cut: a gradient whose decision is after
 *   the cut waits (not applied, not answered) until then. Each worker,
 *   with its state, sends server s a CKPT header; its gradients that
 *   server s concludes after the snapshot and before that header are the
 *   ones server 0 counts as dropped, and server s counts them so too.
 *   Once every active worker's header (or FINAL) is in, server s writes
 *   its part and sends server 0 its size and crc32 on PD_TAG_CKPT + 1
 *   (server 0 receives them in the background); the final SNAP waits for
 *   that part.
 *   hogwild: as async, with server 0's serving threads quiescing for the
 *   snapshot: each holds the server's apply_lock shared from a
 *   gradient's decision to its counters, the snapshot takes it exclusive
 *   (every decided gradient is in it whole or not at all) and sets the
 *   cut and the decisions before it while it holds it; server 0's
 *   checkpoint bookkeeping is under ck_mu. A gradient that a thread
 *   concludes after the snapshot counts as come after it only if it was
 *   decided after it (its decision names the cut). With S > 1 a server
 *   s > 0 needs no lock for its snapshot: a gradient decided before the
 *   cut is counted concluded only once applied, and one decided after it
 *   is kept back before it is applied, so when the count reaches the
 *   cut's no thread applies one. Its bookkeeping is under ck_mu; a
 *   gradient kept back is concluded by its own serving thread once the
 *   snapshot has released it (server_ckpt_released; the thread polls
 *   while one of its workers' gradients is kept back).
 *   easgd: the same, but server 0 checks before it applies a model and
 *   snapshots the centre without it, so that model, and every other
 *   worker's next one, count dropped at the stop: each worker's state
 *   (iterator, local optimizer, its own model) is taken at that
 *   exchange's reply from server 0, its model as it was before the
 *   elastic move. The exchange is lost on both sides; the local steps
 *   before it stand. With S > 1 the model that found it due is the first
 *   decision after the cut: servers s > 0 follow the cut as in async.
 *   Every worker also sends server 0 its state before FINAL, so a worker
 *   that has finished is resumed finished (and the checkpoint at the end
 *   of any mode is taken from the FINAL states).
 *   Lost workers (training.worker_timeout, lost.c): a snapshot takes the
 *   workers lost by then and wants no state of theirs; a worker lost while
 *   a snapshot wants its state (or a round's close waits for it: server 0
 *   waits for a state at most the timeout) is taken off the list and is in
 *   that snapshot as lost. Part 0 then holds each lost worker's last state
 *   (none before its first checkpoint) and, in LOST (paramd/ckpt.h), its
 *   requests that had arrived; --resume sends it that state and the count
 *   of minibatches past it, and it rejoins from its iterator as of its
 *   loss (pd_worker_state_recv).
 *
 * The pause is server 0's time from the round's replies to the manifest
 * (workers compute meanwhile); async: the snapshot, each state's receipt
 * and the writing; summary.json's checkpoint_pause_s. */
#ifndef PARAMD_PS_CHECKPOINT_H
#define PARAMD_PS_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "comm.h"
#include "paramd/ckpt.h"
#include "paramd/optim.h"
#include "paramd/rng.h"
#include "train.h"

enum { PD_TAG_CKPT = 14 };      /* worker <-> server 0: worker states; + 1: part ids */
enum { PD_MSG_CKPT = 8 };       /* worker -> server s > 0: write your part of hdr.version */
enum { PD_FLAG_CKPT = 8 };      /* on server 0's replies: checkpoint this version */

/* The two hashes that tie a checkpoint to this model and config (W
 * workers). Local. */
int pd_ckpt_hashes(const pd_model *m, const pd_config *cfg, int workers, uint64_t *layout,
                   uint64_t *config);
/* run.out_dir/checkpoints (write) or DIR/checkpoints (--resume DIR). */
int pd_ckpt_dir(const char *run_dir, char *out, size_t size);
/* Is a checkpoint due at update t (checkpoint.every_updates, or
 * every_seconds since last_t)? */
bool pd_ckpt_due(const pd_config *cfg, int64_t t, double last_t);
/* Are checkpoints on (a cadence, or a resumed run, which keeps writing
 * them at the end)? */
bool pd_ckpt_enabled(const pd_config *cfg, const pd_run_opts *opts);

/* metrics.jsonl's rows of a run being resumed, those with "update" <= upto
 * (read before the run directory is opened again, written back after). */
int pd_ckpt_rows_read(const char *out_dir, int64_t upto, char **rows, size_t *len);
int pd_ckpt_rows_write(const char *out_dir, const char *rows, size_t len);
/* --resume: the evaluator (server 0's, or the serial process's) goes on
 * from part p of the checkpoint in ckpt_dir (DIR/checkpoints): wall time,
 * pauses, early stopping; the checkpoint's name goes into
 * config.resolved.yaml. Local. */
int pd_ckpt_resume_eval(pd_evaluator *ev, const pd_ckpt_part *p, const char *ckpt_dir);
/* The evaluator's state into part p (ev NULL: a part without one, no
 * evaluation yet): wall time, pauses, early stopping. p->best points into
 * ev's array (until its next evaluation), NULL and nbest 0 without a best
 * point. Local. */
void pd_ckpt_eval_put(const pd_evaluator *ev, pd_ckpt_part *p);

/* ---- a worker's state ------------------------------------------------------ */

typedef struct pd_worker_state {
    const pd_learner *l;       /* pack: its iterator and examples */
    pd_learner *lw;            /* unpack: into its iterator and examples */
    pd_optim *local;           /* local optimizer, or NULL */
    float *model;              /* [nmodel] easgd: the worker's own model (pack reads it,
                                * unpack writes it), or NULL */
    size_t nmodel;
    int64_t seq, local_t;
    pd_rng rng;
    size_t drawn;              /* pack: rows of a minibatch drawn and not yet computed
                                * (sparse pulls draw it before the exchange), which the
                                * iterator state gives back (pd_iter_save_before) */
    /* training.phases, a phase without a local optimizer (local NULL) after
     * a local_sgd or easgd phase: the worker carries that phase's local
     * optimizer to the next one as pd_optim_save bytes, which go where a
     * local optimizer's do (paramd/ckpt.h). pack writes carried[0 ..
     * carried_size); unpack requires them and sets carried to a copy it
     * allocates (the caller's to free). */
    bool carries;
    unsigned char *carried;
    size_t carried_size;
} pd_worker_state;

/* A worker's state as bytes (the message of PD_TAG_CKPT): u64 L, L bytes of
 * pd_iter_save, then the worker state of paramd/ckpt.h's RUNS (i64
 * requests sent, examples, local steps, staleness sum (0), 4 u64 fault
 * RNG, u64 M, M bytes: pd_optim_save of the local optimizer (or of the one
 * carried, `carries`), then in easgd the worker's own model as nmodel
 * float32; M = 0 without either). */
int pd_worker_state_pack(const pd_worker_state *ws, unsigned char **buf, size_t *size);
int pd_worker_state_unpack(pd_worker_state *ws, const unsigned char *buf, size_t size);
/* The same bytes from a checkpoint's iterator state and worker state, and
 * back (pointers into buf; PD_EINPUT when the lengths do not add up). */
int pd_worker_state_build(const unsigned char *iter, size_t iter_size, const pd_ckpt_wstate *w,
                          unsigned char **buf, size_t *size);
int pd_worker_state_split(const unsigned char *buf, size_t size, const unsigned char **iter,
                          size_t *iter_size, pd_ckpt_wstate *w);
/* Worker: send its state to server 0 and wait until it has left. */
int pd_worker_state_send(const pd_worker_state *ws);
/* The same, started: *buf (freed by the caller after *r completes). */
int pd_worker_state_post(const pd_worker_state *ws, MPI_Request *r, unsigned char **buf);
/* Worker of a resumed run: receive its state from server 0 and load it;
 * the message ends with i64 *skip, the minibatches the worker then skips
 * past that state (a worker lost at the checkpoint: its iterator as of its
 * loss, paramd/ckpt.h's LOST; the worker advances its fault RNG by the
 * delay each of those requests drew), 0 for the others. A state without an
 * iterator (none was saved) leaves the worker's fresh one. */
int pd_worker_state_recv(pd_worker_state *ws, int64_t *skip);

/* ---- a request from outside: signals (paramd/signals.h) ----------------- */

/* Take a pending request: SIGUSR1 asks for one checkpoint at the next
 * consistent point (server 0's next round close in sync and local_sgd),
 * a stop signal (*stop, taken once) for one there and the end of the run.
 * Only server 0 takes requests; the other ranks follow it (its STOP ends
 * every worker, the workers' FINAL every server). Call from one thread at
 * a time. */
bool pd_ckpt_take_request(bool *stop);
/* A stop was taken in this process. */
bool pd_ckpt_stop_requested(void);

#endif
