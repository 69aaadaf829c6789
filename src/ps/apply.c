/* The update side of a server: posting receives, replying with the
 * lookahead point, and what each mode does with a worker's gradient or
 * model (see server.c for the modes). Hogwild threads run these
 * concurrently on disjoint workers: shared counters are atomic, parameter
 * and optimizer updates deliberately are not. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server_impl.h"

/* ---- messages ---------------------------------------------------------- */

/* Take version t as applied; at max_updates the next replies say STOP. */
static void applied_version(server *sv, int64_t t)
{
    int64_t max = sv->cfg->training.max_updates;
    if (max > 0 && t >= max)
        atomic_store(&sv->stopping, true);
}

/* Once stopping, gradients still in flight are not applied: dropped and
 * counted, answered with STOP. */
static void count_drop(server *sv, peer *p)
{
    p->dropped++;
    atomic_fetch_add(&sv->dropped, 1);
}

static int drop_stopping(server *sv, int w)
{
    count_drop(sv, &sv->peers[w]);
    return server_reply(sv, w, false);
}

/* Async with training.trace: one record per gradient, in arrival order. */
static int trace(server *sv, const pd_trace_rec *rec)
{
    if (!sv->trace)
        return PD_OK;
    sv->trace_n++;
    return pd_trace_append(sv->trace, rec);
}

int server_post_recv(server *sv, int w)
{
    peer *p = &sv->peers[w];
    int src = pd_worker_rank(sv->world, w);
    PD_MPI(MPI_Irecv(&p->in, sizeof p->in, MPI_BYTE, src, PD_TAG_DATA, MPI_COMM_WORLD,
                     &sv->hreq[w]));
    if (sv->sparse && sv->cfg->training.mode != PD_MODE_LOCAL_SGD &&
        sv->cfg->training.mode != PD_MODE_EASGD)
        PD_MPI(MPI_Irecv(p->sp, (int)pd_sparse_payload_max(sv->hi - sv->lo), MPI_BYTE, src, PD_TAG_DATA,
                         MPI_COMM_WORLD, &p->rpay));
    else
        PD_MPI(MPI_Irecv(p->g + sv->lo, (int)(sv->hi - sv->lo), MPI_FLOAT, src, PD_TAG_DATA,
                         MPI_COMM_WORLD, &p->rpay));
    return PD_OK;
}

/* Reply PARAMS (the lookahead point of our range) or STOP to worker w. */
int server_reply(server *sv, int w, bool elastic)
{
    peer *p = &sv->peers[w];
    PD_TRY(pd_comm_waitall(2, p->rout));   /* the previous reply has left */
    bool stop = sv->stopping;
    p->out = (pd_msg_hdr){.kind = stop ? PD_MSG_STOP : PD_MSG_PARAMS, .worker = w,
                          .version = atomic_load(&sv->version),
                          .lo = (int64_t)sv->lo, .hi = (int64_t)sv->hi};
    size_t count = stop ? 0 : sv->hi - sv->lo;
    const float *src = p->reply;       /* easgd: holds the elastic difference */
    const float *buf = NULL;           /* set when not src + lo */
    if (!stop && p->in.kind == PD_MSG_GRAD && (p->in.flags & PD_FLAG_PULL)) {
        /* Sparse pull (async, hogwild): the lookahead point at the indices
         * the worker's next minibatch touches, packed. */
        const uint32_t *idx = pd_sparse_pull(p->sp, p->in.nnz);
        count = (size_t)p->in.npull;
        pd_optim_lookahead_gather(sv->opt, sv->theta, idx, count, p->reply);
        p->out.npull = p->in.npull;
        buf = p->reply;
    } else if (!stop && !elastic && sv->rounds) {
        /* Rounds: every worker gets the same point, sent from one buffer
         * (theta itself when there is no lookahead); the next step waits
         * for these sends before it writes (wait_replies). */
        int64_t v = atomic_load(&sv->version);
        if (sv->point && sv->point_version != v) {
            pd_optim_lookahead(sv->opt, sv->theta, sv->point, sv->lo, sv->hi);
            sv->point_version = v;
        }
        src = sv->point ? sv->point : sv->theta;
    } else if (!stop && !elastic) {
        /* Async: theta moves on while this reply is in flight: a copy. */
        pd_optim_lookahead(sv->opt, sv->theta, p->reply, sv->lo, sv->hi);
    }
    atomic_fetch_add(&sv->sent_floats, (int64_t)count);
    int dst = pd_worker_rank(sv->world, w);
    PD_MPI(MPI_Isend(&p->out, sizeof p->out, MPI_BYTE, dst, PD_TAG_DATA, MPI_COMM_WORLD, &p->rout[0]));
    PD_MPI(MPI_Isend(buf ? buf : src + sv->lo, (int)count, MPI_FLOAT, dst, PD_TAG_DATA,
                     MPI_COMM_WORLD, &p->rout[1]));
    return PD_OK;
}

/* ---- applying ----------------------------------------------------------- */

static void record_staleness(server *sv, peer *p, int64_t tau)
{
    p->applied++;   /* a peer is served by one thread: no atomics */
    p->stale_sum += tau;
    atomic_fetch_add(&sv->applied, 1);
    atomic_fetch_add(&sv->stale_sum, tau);
    atomic_fetch_add(&sv->stale_hist[tau < STALE_HIST ? tau : STALE_HIST - 1], 1);
    int64_t m = atomic_load(&sv->stale_max);
    while (tau > m && !atomic_compare_exchange_weak(&sv->stale_max, &m, tau))
        ;
}

static bool grad_ok(server *sv, const peer *p)
{
    if (isfinite(p->in.loss) && isfinite(p->in.norm))
        return true;
    atomic_fetch_add(&sv->bad, 1);
    return false;
}

/* Apply one worker's gradient alone (async, hogwild). */
static void apply_one(server *sv, peer *p, double scale, int64_t t)
{
    pd_optim_step st = pd_optim_prepare(sv->opt, t, scale, p->in.norm);
    if (p->in.flags & PD_FLAG_SPARSE) {
        pd_optim_apply_sparse(sv->opt, &st, sv->theta, pd_sparse_idx(p->sp),
                              pd_sparse_val(p->sp, p->in.nnz), (size_t)p->in.nnz);
    } else {
        pd_optim_apply(sv->opt, &st, sv->theta, p->g, sv->lo, sv->hi);
    }
}

static int64_t min_clock(const server *sv)
{
    int64_t m = INT64_MAX;
    for (int w = 0; w < sv->world->workers; w++)
        if (sv->peers[w].active && sv->peers[w].clock < m)
            m = sv->peers[w].clock;
    return m;
}

/* Async "wait": reply to workers no more than max_staleness clocks ahead of
 * the slowest active worker (stale synchronous parallel). */
int server_release_waiting(server *sv)
{
    int64_t lo = min_clock(sv);
    for (int w = 0; w < sv->world->workers; w++) {
        peer *p = &sv->peers[w];
        if (p->waiting && p->active && p->clock - lo <= sv->cfg->training.max_staleness) {
            p->waiting = false;
            PD_TRY(server_reply(sv, w, false));
            PD_TRY(server_post_recv(sv, w));
        }
    }
    return PD_OK;
}

int server_on_grad_async(server *sv, int w)
{
    peer *p = &sv->peers[w];
    const pd_training_config *tc = &sv->cfg->training;
    atomic_fetch_add(&sv->examples, p->in.examples);
    p->clock++;
    pd_trace_rec rec = {.worker = (uint32_t)w, .outcome = PD_TRACE_DROPPED, .seq = p->in.seq,
                        .from = p->in.version, .made = -1};
    if (atomic_load(&sv->stopping)) {
        PD_TRY(trace(sv, &rec));
        PD_TRY(drop_stopping(sv, w));
        return server_post_recv(sv, w);
    }
    int64_t tau = atomic_load(&sv->version) - p->in.version;
    if (tc->max_staleness >= 0 && tc->staleness_policy == PD_STALE_DROP &&
        tau > tc->max_staleness) {
        count_drop(sv, p);
    } else if (!grad_ok(sv, p)) {
        rec.outcome = PD_TRACE_BAD;
    } else {
        /* Hogwild threads each take their own version number; the apply
         * itself runs concurrently with theirs, without a lock. */
        int64_t v = atomic_fetch_add(&sv->version, 1);
        applied_version(sv, v + 1);
        tau = v - p->in.version;
        apply_one(sv, p, pd_optim_staleness_scale(&sv->cfg->optimizer, tau), v + 1);
        if (p->in.flags & PD_FLAG_SPARSE)
            server_note_sparse(sv, pd_sparse_idx(p->sp), pd_sparse_val(p->sp, p->in.nnz),
                               (size_t)p->in.nnz);
        else
            server_note_grad(sv, p->g);
        rec.outcome = PD_TRACE_APPLIED;
        rec.made = v + 1;
        record_staleness(sv, p, tau);
        pthread_mutex_lock(&sv->mu);
        sv->loss_sum += p->in.loss;
        sv->loss_n++;
        pthread_mutex_unlock(&sv->mu);
    }
    PD_TRY(trace(sv, &rec));
    if (tc->max_staleness >= 0 && tc->staleness_policy == PD_STALE_WAIT &&
        p->clock - min_clock(sv) > tc->max_staleness) {
        p->waiting = true;
        return PD_OK;
    }
    PD_TRY(server_reply(sv, w, false));
    return server_post_recv(sv, w);
}

#define SUM_BLOCK 4096   /* floats: 16 KiB per stream, L1/L2-resident */

/* acc[i0, i1) = sum of weight[w] g_w over the round's workers, in
 * ascending worker order: the same bits every run. */
static void sum_block(server *sv, size_t i0, size_t i1)
{
    float *restrict acc = sv->acc;
    bool first = true;
    for (int w = 0; w < sv->world->workers; w++) {
        if (!sv->peers[w].waiting)
            continue;
        const float a = sv->weight[w];
        const float *restrict g = sv->peers[w].g;
        if (first)
            for (size_t i = i0; i < i1; i++)
                acc[i] = a * g[i];
        else
            for (size_t i = i0; i < i1; i++)
                acc[i] += a * g[i];
        first = false;
    }
}

/* Sync and local_sgd: close the round when enough workers have sent. */
int server_maybe_close_round(server *sv)
{
    const pd_training_config *tc = &sv->cfg->training;
    int have = 0, need = sv->active - tc->backup_workers;
    if (need < 1)
        need = 1;
    for (int w = 0; w < sv->world->workers; w++)
        have += sv->peers[w].waiting;
    if (have < need || have == 0)
        return PD_OK;
    bool local = tc->mode == PD_MODE_LOCAL_SGD;
    double total = 0, loss = 0;
    bool finite = true;
    for (int w = 0; w < sv->world->workers; w++)
        if (sv->peers[w].waiting)
            total += (double)sv->peers[w].in.examples;
    for (int w = 0; w < sv->world->workers; w++) {
        peer *p = &sv->peers[w];
        sv->weight[w] = p->waiting ? (float)((double)p->in.examples / total) : 0.0f;
        if (p->waiting) {
            finite = finite && grad_ok(sv, p);
            loss += (double)p->in.examples / total * p->in.loss;
        }
    }
    int64_t t = atomic_load(&sv->version) + 1;
    for (int w = 0; w < sv->world->workers; w++)   /* replies read theta / point */
        PD_TRY(pd_comm_waitall(2, sv->peers[w].rout));
    if (local) {
        sum_block(sv, sv->lo, sv->hi);
        memcpy(sv->theta + sv->lo, sv->acc + sv->lo, (sv->hi - sv->lo) * sizeof *sv->acc);
    } else if (finite && sv->cfg->optimizer.clip_norm > 0) {
        /* Clipping needs the whole sum's norm (over every server) first. */
        sum_block(sv, sv->lo, sv->hi);
        double sq = pd_optim_norm2(sv->acc + sv->lo, sv->hi - sv->lo);
        sq *= sq;
        if (sv->world->servers > 1) {
            MPI_Request r;
            PD_MPI(MPI_Iallreduce(MPI_IN_PLACE, &sq, 1, MPI_DOUBLE, MPI_SUM,
                                  sv->world->servers_comm, &r));
            PD_TRY(server_wait_collective(sv, &r));
        }
        pd_optim_step st = pd_optim_prepare(sv->opt, t, 1.0, sqrt(sq));
        pd_optim_apply(sv->opt, &st, sv->theta, sv->acc, sv->lo, sv->hi);
    } else if (finite) {
        /* Sum and step block by block while the block is in cache: the
         * optimizer gives the same bits for any split of the range. */
        pd_optim_step st = pd_optim_prepare(sv->opt, t, 1.0, 0.0);
        for (size_t i = sv->lo; i < sv->hi; i += SUM_BLOCK) {
            size_t j = i + SUM_BLOCK < sv->hi ? i + SUM_BLOCK : sv->hi;
            sum_block(sv, i, j);
            pd_optim_apply(sv->opt, &st, sv->theta, sv->acc, i, j);
        }
    }
    if (finite || local) {
        atomic_store(&sv->version, t);
        if (!local)
            server_note_grad(sv, sv->acc);   /* the round's mean gradient */
        applied_version(sv, t);
        for (int w = 0; w < sv->world->workers; w++)
            if (sv->peers[w].waiting)
                record_staleness(sv, &sv->peers[w], 0);
        sv->loss_sum += loss;
        sv->loss_n++;
        PD_TRY(server_round_closed(sv));
    }
    for (int w = 0; w < sv->world->workers; w++) {
        if (!sv->peers[w].waiting)
            continue;
        sv->peers[w].waiting = false;
        PD_TRY(server_reply(sv, w, false));
        PD_TRY(server_post_recv(sv, w));
    }
    if (sv->snap_pending >= 0 && sv->snap_pending <= atomic_load(&sv->version))
        PD_TRY(server_answer_snap(sv));
    return PD_OK;
}

int server_on_grad_sync(server *sv, int w)
{
    peer *p = &sv->peers[w];
    atomic_fetch_add(&sv->examples, p->in.examples);
    p->clock++;
    if (p->in.version < atomic_load(&sv->version)) {
        /* Late: the round closed without it (backup workers). */
        count_drop(sv, p);
        PD_TRY(server_reply(sv, w, false));
        return server_post_recv(sv, w);
    }
    if (p->in.flags & PD_FLAG_SPARSE) {
        /* A sparse model's pairs: the round sums dense ranges. */
        size_t nnz = (size_t)p->in.nnz;
        const uint32_t *idx = pd_sparse_idx(p->sp);
        const float *val = pd_sparse_val(p->sp, p->in.nnz);
        memset(p->g + sv->lo, 0, (sv->hi - sv->lo) * sizeof *p->g);
        for (size_t j = 0; j < nnz; j++)
            p->g[idx[j]] = val[j];
    }
    p->waiting = true;   /* its buffer is kept until the round closes */
    return server_maybe_close_round(sv);
}

int server_on_model_easgd(server *sv, int w)
{
    peer *p = &sv->peers[w];
    if (atomic_load(&sv->stopping)) {
        PD_TRY(drop_stopping(sv, w));
        return server_post_recv(sv, w);
    }
    float alpha = (float)sv->cfg->training.elastic_alpha;
    float *restrict c = sv->theta, *restrict d = p->reply;
    const float *restrict x = p->g;
    for (size_t i = sv->lo; i < sv->hi; i++) {
        d[i] = alpha * (x[i] - c[i]);
        c[i] += d[i];
    }
    atomic_fetch_add(&sv->examples, p->in.examples);
    applied_version(sv, atomic_fetch_add(&sv->version, 1) + 1);
    record_staleness(sv, p, 0);
    sv->loss_sum += p->in.loss;
    sv->loss_n++;
    PD_TRY(server_reply(sv, w, true));
    return server_post_recv(sv, w);
}
