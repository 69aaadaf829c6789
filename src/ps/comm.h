/* Private to ps: the wire protocol and MPI wrapped and checked. Every call
 * goes through PD_MPI, which turns a failing return (MPI_ERRORS_RETURN is
 * set at start) into PD_EMPI with MPI_Error_string and the call's place.
 * Waiting never spins: pd_comm_wait* poll with MPI_Test and sleep with
 * exponential back-off, so an oversubscribed job keeps its cores for
 * computing. docs/design.md, "Wire protocol", says who waits for what.
 *
 * Wire protocol: every message is a header and a payload, sent as separate
 * MPI messages on one tag, back to back: a pd_msg_hdr (MPI_BYTE), then the
 * payload (MPI_FLOAT floats, or MPI_BYTE for sparse pairs; empty for HELLO,
 * STOP, FINAL and a SNAP request; a SNAP reply's payload is two messages,
 * floats then doubles); MPI keeps their order. Tags: PD_TAG_DATA between a worker and
 * a server, PD_TAG_CTRL for server 0's requests to server s, PD_TAG_CTRL + 1
 * for their replies. Kinds:
 *   HELLO   worker -> each server: shard size and batches per epoch
 *   GRAD    worker -> each server: gradient over the server's range (dense
 *           floats [lo, hi)), or sparse pairs (flag SPARSE: nnz uint32
 *           indices, nnz floats) followed, with flag PULL, by npull uint32
 *           indices to pull (the coordinates of the worker's next
 *           minibatch in the range, increasing); carries the version it was
 *           computed from, the batch size, loss and the full gradient's
 *           norm (clip by global norm)
 *   MODEL   worker -> each server (local_sgd, easgd): its local parameters;
 *           loss NaN when none of its local steps was finite, norm NaN when
 *           the model itself is not
 *   PARAMS  server -> worker: reply to HELLO/GRAD/MODEL; dense floats of the
 *           range at the lookahead point, or for a PULL request npull floats,
 *           the lookahead point at the pulled indices (hdr.npull echoes the
 *           count), or the elastic difference (easgd), or with flag RESET
 *           (easgd, the worker's model was not finite) the centre itself
 *   STOP    server -> worker: reply meaning "finish now" (empty payload)
 *   FINAL   worker -> each server: the worker is done; hdr.seq = gradients
 *           it sent in all; no reply
 *   SNAP    server 0 -> server s (S > 1): request (hdr.version wanted,
 *           flags 1 on the final one); server s -> 0: reply header, server
 *           s's range for evaluation (floats), then ntensors doubles: its
 *           part of the last sync round's per-tensor gradient sums of
 *           squares (zeros in other modes), three messages on CTRL + 1;
 *           the final reply's header carries server s's counts: seq =
 *           applied, nnz = bad, npull = dropped
 *   DECIDE  server 0 -> server s (async, hogwild, easgd with S > 1): a
 *           pd_decision per gradient, on tag PD_TAG_DECIDE + worker; server
 *           s holds the worker's gradient until it arrives
 *   ROUND   server 0 -> server s (sync with backup workers, S > 1): one
 *           ordered stream on PD_TAG_ROUND of pd_round_msg + W member
 *           bytes: each round's members, each late gradient, each lost
 *           worker, in server 0's order (rounds.c)
 * Every GRAD/MODEL/HELLO gets exactly one reply (PARAMS or STOP), so a
 * worker has at most one request outstanding per server.
 */
#ifndef PARAMD_PS_COMM_H
#define PARAMD_PS_COMM_H

#include <mpi.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paramd/error.h"

enum { PD_TAG_DATA = 11, PD_TAG_CTRL = 12 };
/* Server 0's decision on worker w's gradient goes to each other server on
 * tag PD_TAG_DECIDE + w (async, hogwild, easgd with S > 1). */
enum { PD_TAG_DECIDE = 1000 };
/* Server 0's round decisions in sync with backup workers and S > 1
 * (rounds.c): a pd_round_msg, then W bytes (ROUND: 1 for each member). */
enum { PD_TAG_ROUND = 16 };
enum pd_round_kind { PD_RM_ROUND = 1, PD_RM_LATE, PD_RM_LOST };
typedef struct pd_round_msg {
    int32_t kind;         /* enum pd_round_kind */
    int32_t worker;       /* LATE, LOST: the worker */
    int64_t version;      /* server 0's version when it sent this */
    int32_t drop;         /* LATE: the drop kind it counted (late or at stop) */
    int32_t pad;
} pd_round_msg;

/* One decision per gradient, made by server 0 and followed by every
 * server, so a gradient is applied on all shards with one scale (from
 * tau) and one step number, or on none. */
enum pd_outcome { PD_OUT_APPLIED, PD_OUT_BAD, PD_OUT_STALE, PD_OUT_AT_STOP,
                  PD_OUT_LOST };   /* LOST: seq = the requests server 0 got from
                                      it; the worker is lost (lost.c) */
typedef struct pd_decision {
    int64_t seq;          /* the worker's request it is about */
    int64_t made;         /* applied: the version it made */
    int64_t tau;          /* applied: its staleness at server 0 */
    int32_t outcome;      /* enum pd_outcome */
    int32_t stop;         /* server 0 is stopping: reply STOP */
    int64_t cut;          /* async checkpoints: the version of server 0's
                             latest snapshot when it decided (-1: none) */
    int64_t before;       /* and how many decisions it had made by then */
} pd_decision;

enum pd_msg_kind {
    PD_MSG_HELLO = 1, PD_MSG_GRAD, PD_MSG_MODEL, PD_MSG_PARAMS, PD_MSG_STOP,
    PD_MSG_FINAL, PD_MSG_SNAP,
};

/* ELASTIC: an easgd STOP that carries the elastic difference of the
 * model it answers, which was applied (8 is checkpoint.h's CKPT). */
enum { PD_FLAG_SPARSE = 1, PD_FLAG_PULL = 2, PD_FLAG_RESET = 4, PD_FLAG_ELASTIC = 16 };

typedef struct pd_msg_hdr {
    int32_t kind;
    int32_t worker;       /* worker index 0..W-1 */
    int64_t version;      /* GRAD: computed at; PARAMS: version sent */
    int64_t seq;          /* per-worker request number (FINAL: requests sent) */
    int64_t lo, hi;       /* dense range of the payload */
    int64_t nnz, npull;   /* sparse payload sizes */
    int64_t examples;     /* GRAD: batch size; HELLO: shard size */
    int64_t batches;      /* HELLO: batches per epoch */
    int32_t flags;
    int32_t pad;
    double loss;          /* minibatch loss */
    double norm;          /* full gradient L2 norm (all shards) */
    double epoch;         /* the worker's fractional epoch */
    double held;          /* PARAMS: seconds the server held the request for
                             other workers (a round, an SSP wait): not the
                             worker's own time (straggler pacing) */
    double pace;          /* PARAMS to a slowed worker: the unslowed workers'
                             cycle time, seconds (0: not known yet) */
} pd_msg_hdr;

/* Check an MPI call; on failure record PD_EMPI with MPI's own message. */
int pd_mpi_fail(int rc, const char *call, const char *file, int line, const char *func);
#define PD_MPI(call)                                                          \
    do {                                                                      \
        int pd_mpi_rc_ = (call);                                              \
        if (pd_mpi_rc_ != MPI_SUCCESS)                                        \
            return pd_mpi_fail(pd_mpi_rc_, #call, __FILE__, __LINE__, __func__); \
    } while (0)

/* A sparse GRAD payload over a range of `range` coordinates: nnz uint32
 * indices, nnz floats, then npull uint32 indices. Room for the most it can
 * hold (every coordinate pushed and pulled), and where each part starts. */
static inline size_t pd_sparse_payload_max(size_t range) { return 12 * range + 8; }
static inline uint32_t *pd_sparse_idx(uint8_t *buf) { return (uint32_t *)buf; }
static inline float *pd_sparse_val(uint8_t *buf, int64_t nnz) { return (float *)(buf + 4 * nnz); }
static inline uint32_t *pd_sparse_pull(uint8_t *buf, int64_t nnz)
{
    return (uint32_t *)(buf + 8 * nnz);
}

/* The job's layout. */
typedef struct pd_world {
    int rank, size;
    int servers, workers;        /* S, W */
    bool is_server;
    int index;                   /* server s, or worker w */
    MPI_Comm servers_comm;       /* the S servers (MPI_COMM_NULL on workers) */
    bool setup_failed;           /* pd_comm_agree returned an error */
} pd_world;

/* Collective on MPI_COMM_WORLD: after each rank's setup, every rank learns
 * the lowest failing rank's error code (returned; PD_OK if none); only that
 * rank keeps its message, the others clear theirs. */
int pd_comm_agree(pd_world *w, int err);

/* The job runs under mpirun --enable-recovery (Open MPI puts
 * OMPI_MCA_orte_enable_recovery=1 in each rank's environment): a rank that
 * dies does not end the others. Local. */
bool pd_comm_recovery(void);

/* Rank of server s and of worker w in MPI_COMM_WORLD. */
static inline int pd_server_rank(int s) { return s; }
static inline int pd_worker_rank(const pd_world *w, int i) { return w->servers + i; }

/* Server s's parameter range [lo, hi) of n. */
void pd_server_range(size_t n, int servers, int s, size_t *lo, size_t *hi);

/* Sleep-polling waits (never spin). */
int pd_comm_wait(MPI_Request *req, MPI_Status *st);
int pd_comm_waitall(int n, MPI_Request *reqs);
/* The same until pd_now() reaches `until`: then *expired is set and PD_OK
 * returned, the requests left as they are (a peer that may be gone). */
int pd_comm_waitall_until(int n, MPI_Request *reqs, double until, bool *expired);
/* Wait until at least one of reqs completes; *index gets it. With give_up
 * (may be NULL), also return PD_OK with *index -1 once *give_up is set
 * (another serving thread failed), and with *index -2 once pd_now()
 * reaches `until` (INFINITY: never). */
int pd_comm_waitany(int n, MPI_Request *reqs, int *index, MPI_Status *st,
                    const _Atomic bool *give_up, double until);

/* Receive one MPI_BYTE message of any length from src on tag into a buffer
 * it allocates (*buf, *size; the caller frees), waiting without spinning. */
int pd_comm_recv_bytes(int src, int tag, unsigned char **buf, size_t *size);
/* The same, given up when no message has come by pd_now() >= until, or its
 * payload has not moved as long again (*expired set, *buf NULL): for a peer
 * that may be gone (training.worker_timeout). */
int pd_comm_recv_bytes_until(int src, int tag, double until, unsigned char **buf, size_t *size,
                             bool *expired);

/* Sleep s seconds (resumed after signals). Not positive or NaN: no
 * sleep. Returns 0, or the errno that ended it early (EINVAL for s that
 * nanosleep cannot take). Local. */
int pd_sleep_s(double s);

/* Back-off sleeper for poll loops: reset after progress. */
typedef struct pd_backoff { double since; } pd_backoff;   /* 0: not waiting yet */
void pd_backoff_sleep(pd_backoff *b);
static inline void pd_backoff_reset(pd_backoff *b) { b->since = 0; }

#endif
