/* The update side of a server: posting receives, replying with the
 * lookahead point, and what each mode does with a worker's gradient or
 * model (see server.c for the modes). Hogwild threads run these
 * concurrently on disjoint workers: shared counters are atomic, parameter
 * and optimizer updates deliberately are not. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "paramd/clones.h"
#include "server_impl.h"

/* ---- messages ---------------------------------------------------------- */

/* Take version t as applied; at max_updates the next replies say STOP. */
static void applied_version(server *sv, int64_t t)
{
    int64_t max = sv->cfg->training.max_updates;
    if (max > 0 && t >= max)
        atomic_store(&sv->stopping, true);
}

/* A new version for one gradient, or false once max_updates versions are
 * taken (hogwild threads race here: no thread takes one past the cap). */
static bool take_version(server *sv, int64_t *v)
{
    int64_t max = sv->cfg->training.max_updates;
    int64_t cur = atomic_load(&sv->version);
    do {
        if (max > 0 && cur >= max)
            return false;
    } while (!atomic_compare_exchange_weak(&sv->version, &cur, cur + 1));
    *v = cur;
    applied_version(sv, cur + 1);
    return true;
}

static void count_drop(server *sv, peer *p, enum pd_drop_kind kind)
{
    p->dropped++;
    atomic_fetch_add(&sv->dropped[kind], 1);
}

void server_drop(server *sv, int w, enum pd_drop_kind kind)
{
    count_drop(sv, &sv->peers[w], kind);
}

/* Async with training.trace: one record per gradient, in arrival order. */
int server_trace(server *sv, const pd_trace_rec *rec)
{
    if (!sv->trace)
        return PD_OK;
    sv->trace_n++;
    sv->trace_hash = pd_trace_hash(sv->trace_hash, rec);
    return pd_trace_append(sv->trace, rec);
}

int server_post_recv(server *sv, int w)
{
    peer *p = &sv->peers[w];
    if (p->lost)
        return PD_OK;
    int src = pd_worker_rank(sv->world, w);
    PD_MPI(MPI_Irecv(&p->in, sizeof p->in, MPI_BYTE, src, PD_TAG_DATA, MPI_COMM_WORLD,
                     &sv->hreq[w]));
    if (sv->sparse && !mode_of(sv)->local_steps)
        PD_MPI(MPI_Irecv(p->sp, (int)pd_sparse_payload_max(sv->hi - sv->lo), MPI_BYTE, src, PD_TAG_DATA,
                         MPI_COMM_WORLD, &p->rpay));
    else
        PD_MPI(MPI_Irecv(p->g, sv->words * (int)(sv->hi - sv->lo), MPI_FLOAT, src, PD_TAG_DATA,
                         MPI_COMM_WORLD, &p->rpay));
    return PD_OK;
}

/* The unslowed workers' cycle time, for a slowed worker's pacing (pace.h):
 * one over the mean of their rates, each one's rate being one over its
 * recent mean cycle (0 until one is known; the round modes send none).
 * Lock-free: each mean has one writer. */
static double unslowed_cycle(const server *sv)
{
    double rates = 0;
    int k = 0;
    for (int w = 0; w < sv->world->workers; w++) {
        double c = atomic_load(&sv->peers[w].cycle_mean);
        if (!sv->peers[w].slowed && c > 0) {
            rates += 1 / c;
            k++;
        }
    }
    return k ? k / rates : 0;
}

/* Reply PARAMS (the lookahead point of our range) or STOP to worker w. */
int server_reply(server *sv, int w, bool elastic)
{
    peer *p = &sv->peers[w];
    bool lost = p->lost;
    if (!lost)   /* the previous reply has left */
        PD_TRY(server_wait_worker(sv, w, 2, p->rout, &lost));
    if (lost)
        return PD_OK;
    bool stop = sv->stopping;
    p->out = (pd_msg_hdr){.kind = stop ? PD_MSG_STOP : PD_MSG_PARAMS, .worker = w,
                          .version = atomic_load(&sv->version),
                          .lo = (int64_t)sv->lo, .hi = (int64_t)sv->hi,
                          .flags = p->reset ? PD_FLAG_RESET : 0, .held = p->held,
                          .pace = p->slowed && !mode_of(sv)->rounds ? unslowed_cycle(sv) : 0};
    p->reset = false;
    p->held = 0;
    /* A checkpoint: the worker's state comes next (checkpoint.h). */
    bool ckpt = sv->reply_flags || ((p->in.kind == PD_MSG_GRAD || p->in.kind == PD_MSG_MODEL) &&
                                     server_ckpt_wants(sv, w));
    if (ckpt) {   /* seq: the checkpoint's version, for the CKPT headers */
        p->out.flags |= PD_FLAG_CKPT;
        p->out.seq = sv->reply_flags ? p->out.version : sv->ck.cut;
        p->ckpt = true;
    }
    /* easgd: the difference of an applied model goes back even with STOP,
     * so the worker's model and the centre stay a pair (a checkpoint at
     * the end holds both). */
    if (stop && elastic)
        p->out.flags |= PD_FLAG_ELASTIC;
    size_t count = stop && !elastic ? 0 : sv->hi - sv->lo;
    const float *buf = p->reply;       /* easgd: holds the elastic difference */
    if (!stop && p->in.kind == PD_MSG_GRAD && (p->in.flags & PD_FLAG_PULL)) {
        /* Sparse pull (async, hogwild): the lookahead point at the indices
         * the worker's next minibatch touches, packed. */
        const uint32_t *idx = pd_sparse_pull(p->sp, p->in.nnz);
        count = (size_t)p->in.npull;
        pd_optim_lookahead_gather(sv->opt, sv->theta, idx, count, p->reply);
        p->out.npull = p->in.npull;
        for (size_t j = 0; p->stale && j < count; j++)   /* dc: what it reads */
            p->stale[idx[j] - sv->lo] = p->reply[j];
    } else if (!stop && !elastic && mode_of(sv)->rounds) {
        /* Rounds: every worker gets the same point, sent from one buffer
         * (theta itself when there is no lookahead); the next step waits
         * for these sends before it writes (wait_replies). */
        int64_t v = atomic_load(&sv->version);
        if (sv->point && sv->point_version != v) {
            pd_optim_lookahead_range(sv->opt, sv->theta, sv->point, sv->lo, sv->hi);
            sv->point_version = v;
        }
        buf = sv->point ? sv->point : sv->theta + sv->lo;
        if (sv->hears) {
            /* A copy: the next round steps without waiting for replies to
             * leave (one to a worker that died may never leave). */
            memcpy(p->reply, buf, count * sizeof *p->reply);
            buf = p->reply;
        }
    } else if (!stop && !elastic) {
        /* Async (and easgd's RESET): theta moves on while this reply is in
         * flight: a copy. */
        pd_optim_lookahead_range(sv->opt, sv->theta, p->reply, sv->lo, sv->hi);
        if (p->stale)   /* dc: what it reads */
            memcpy(p->stale, p->reply, (sv->hi - sv->lo) * sizeof *p->stale);
    }
    atomic_fetch_add(&sv->sent_floats, (int64_t)count);
    int dst = pd_worker_rank(sv->world, w);
    PD_MPI(MPI_Isend(&p->out, sizeof p->out, MPI_BYTE, dst, PD_TAG_DATA, MPI_COMM_WORLD, &p->rout[0]));
    PD_MPI(MPI_Isend(buf, (int)count, MPI_FLOAT, dst, PD_TAG_DATA,
                     MPI_COMM_WORLD, &p->rout[1]));
    p->since = pd_now();   /* from now on the server waits for it */
    /* Async: the state comes at once; rounds take all of them at the close. */
    return ckpt && !sv->reply_flags ? server_ckpt_async_reply(sv, w) : PD_OK;
}

/* ---- applying ----------------------------------------------------------- */

/* splitmix64 of (worker, request): summed over the applied gradients, a
 * fingerprint of which ones a server applied, in any order. */
static uint64_t mix(uint64_t w, uint64_t seq)
{
    uint64_t z = (w << 40 ^ seq) + 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void record_staleness(server *sv, peer *p, int64_t tau)
{
    atomic_fetch_add(&sv->applied_mix, mix((uint64_t)(p - sv->peers), (uint64_t)p->in.seq));
    p->applied++;   /* a peer is served by one thread: no atomics */
    p->stale_sum += tau;
    atomic_fetch_add(&sv->applied, 1);
    atomic_fetch_add(&sv->stale_sum, tau);
    atomic_fetch_add(&sv->stale_hist[tau < STALE_HIST ? tau : STALE_HIST - 1], 1);
    int64_t m = atomic_load(&sv->stale_max);
    while (tau > m && !atomic_compare_exchange_weak(&sv->stale_max, &m, tau))
        ;
}

/* A gradient (or local model) is finite when its loss and norm are: the
 * worker flags a non-finite one with NaN there, so every server decides
 * alike from the header alone. Counted once, per gradient, in every mode. */
static bool grad_ok(server *sv, const peer *p)
{
    if (isfinite(p->in.loss) && isfinite(p->in.norm))
        return true;
    atomic_fetch_add(&sv->bad, 1);
    return false;
}

/* One writer per total (see server_impl.h): no lock, no read-modify-write. */
static void add_loss_to(_Atomic double *sum, _Atomic int64_t *n, double loss)
{
    atomic_store_explicit(sum, atomic_load_explicit(sum, memory_order_relaxed) + loss,
                          memory_order_relaxed);
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1,
                          memory_order_release);
}

static void add_loss(server *sv, double loss)
{
    add_loss_to(&sv->loss_sum, &sv->loss_n, loss);
}

static void add_peer_loss(peer *p)
{
    add_loss_to(&p->loss_sum, &p->loss_n, p->in.loss);
}

/* Apply one worker's gradient alone (async, hogwild); under dc corrected
 * for the distance from the point it read to the point now. */
static void apply_one(server *sv, peer *p, double scale, int64_t t)
{
    size_t range = sv->hi - sv->lo;
    pd_optim_curv cv = {.h = p->g + range, .v = p->g + 2 * range, .n = (double)p->in.examples};
    pd_optim_grad g = {.g_range = p->g, .lo = sv->lo, .hi = sv->hi,
                       .curv = sv->words == 3 ? &cv : NULL};
    if (p->in.flags & PD_FLAG_SPARSE)
        g = (pd_optim_grad){.idx = pd_sparse_idx(p->sp), .val = pd_sparse_val(p->sp, p->in.nnz),
                            .nnz = (size_t)p->in.nnz};
    if (p->stale) {
        pd_optim_grad dc;
        pd_optim_compensate(sv->opt, sv->cfg->optimizer.dc_lambda, sv->theta, p->stale, sv->lo, &g,
                            p->dc, &dc);
        g = dc;
    }
    pd_optim_take_step(sv->opt, t, scale, p->in.norm, sv->theta, &g);
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
            p->held = pd_now() - p->arrived;
            PD_TRY(server_reply(sv, w, false));
            PD_TRY(server_post_recv(sv, w));
        }
    }
    return PD_OK;
}

static bool finite_hdr(const peer *p)
{
    return isfinite(p->in.loss) && isfinite(p->in.norm);
}

/* Server 0 (or the only server): what becomes of worker p's gradient. A
 * version is taken for an applied one. */
static void decide(server *sv, const peer *p, pd_decision *d)
{
    const pd_training_config *tc = &sv->cfg->training;
    int64_t tau = atomic_load(&sv->version) - p->in.version, v;
    *d = (pd_decision){.seq = p->in.seq, .made = -1, .outcome = PD_OUT_APPLIED};
    if (atomic_load(&sv->stopping))
        d->outcome = PD_OUT_AT_STOP;
    else if (!mode_of(sv)->elastic && tc->max_staleness >= 0 &&
             tc->staleness_policy == PD_STALE_DROP && tau > tc->max_staleness)
        d->outcome = PD_OUT_STALE;
    else if (!finite_hdr(p))
        d->outcome = PD_OUT_BAD;
    else if (!take_version(sv, &v))
        d->outcome = PD_OUT_AT_STOP;   /* another hogwild thread took the last */
    else {
        d->made = v + 1;
        d->tau = mode_of(sv)->elastic ? 0 : v - p->in.version;
    }
    d->stop = atomic_load(&sv->stopping);
}

int server_send_decision(server *sv, int w, const pd_decision *d)
{
    peer *p = &sv->peers[w];
    int S = sv->world->servers;
    PD_TRY(pd_comm_waitall(S - 1, p->dsend + 1));   /* the previous one has left */
    p->dec = *d;
    for (int s = 1; s < S; s++)
        PD_MPI(MPI_Isend(&p->dec, sizeof p->dec, MPI_BYTE, pd_server_rank(s), PD_TAG_DECIDE + w,
                         MPI_COMM_WORLD, &p->dsend[s]));
    return PD_OK;
}

int server_post_decision(server *sv, int w)
{
    peer *p = &sv->peers[w];
    PD_MPI(MPI_Irecv(&p->din, sizeof p->din, MPI_BYTE, 0, PD_TAG_DECIDE + w, MPI_COMM_WORLD,
                     &p->dreq));
    return PD_OK;
}

/* Servers > 0: wait for server 0's decision on the gradient just received
 * (answering SNAP requests meanwhile, server 0 may be gathering), and take
 * its version and stop. */
static int follow(server *sv, int w, bool control)
{
    peer *p = &sv->peers[w];
    PD_TRY(control ? server_wait_collective(sv, &p->dreq) : pd_comm_wait(&p->dreq, NULL));
    /* A copy: the next receive into din is posted below, and a LOST
     * decision may land in it while this gradient is being applied. */
    p->dec = p->din;
    if (p->dec.outcome == PD_OUT_LOST) {
        /* Lost after its earlier requests: this one server 0 never got. */
        count_drop(sv, p, PD_DROP_AT_STOP);
        return server_lose_worker(sv, w, "server 0 says so");
    }
    if (p->dec.seq != p->in.seq)
        return PD_FAIL(PD_EMPI, "server %d: server 0 decided on request %lld of worker %d, "
                       "expected %lld", sv->world->index, (long long)p->dec.seq, w,
                       (long long)p->in.seq);
    int64_t cur = atomic_load(&sv->version);
    while (p->dec.made > cur && !atomic_compare_exchange_weak(&sv->version, &cur, p->dec.made))
        ;
    if (p->dec.made > 0)
        applied_version(sv, p->dec.made);
    if (p->dec.stop)
        atomic_store(&sv->stopping, true);
    return server_post_decision(sv, w);
}

/* The decision on worker w's gradient: made here, or server 0's. Server 0
 * with S > 1 tells the others its latest checkpoint snapshot with each
 * (checkpoint.h). */
static int decision(server *sv, int w, bool control)
{
    peer *p = &sv->peers[w];
    if (sv->follows)
        return follow(sv, w, control);
    pd_decision d;
    decide(sv, p, &d);
    /* The latest snapshot when decided (hogwild: read under the shared
     * lock, which the snapshot holds exclusive while it sets it). */
    d.cut = sv->ck.cut;
    if (!sv->decides) {
        p->dec = d;
        return PD_OK;
    }
    sv->ck.decided++;
    d.before = sv->ck.cut_before;
    return server_send_decision(sv, w, &d);   /* p->dec: the previous send's until it left */
}

/* Count a gradient that is not applied; false if it is to be applied. */
static bool count_unapplied(server *sv, peer *p)
{
    switch (p->dec.outcome) {
    case PD_OUT_BAD:      atomic_fetch_add(&sv->bad, 1); return true;
    case PD_OUT_STALE:    count_drop(sv, p, PD_DROP_STALE); return true;
    case PD_OUT_AT_STOP:  count_drop(sv, p, PD_DROP_AT_STOP); return true;
    default:              return false;
    }
}

static int apply_decided(server *sv, int w);
static int after_decided(server *sv, int w);

int server_on_grad_async(server *sv, int w, bool control)
{
    peer *p = &sv->peers[w];
    p->clock++;
    if (sv->quiesce) {   /* hogwild with checkpoints: no snapshot mid-gradient */
        pthread_rwlock_rdlock(&sv->apply_lock);
        int err = decision(sv, w, control);
        if (err == PD_OK && !p->lost)
            err = apply_decided(sv, w);
        pthread_rwlock_unlock(&sv->apply_lock);
        PD_TRY(err);
        return p->lost ? PD_OK : after_decided(sv, w);
    }
    PD_TRY(decision(sv, w, control));
    if (p->lost)
        return PD_OK;
    if (sv->follows) {
        bool stash;
        PD_TRY(server_ckpt_follow(sv, w, &stash));
        if (stash)
            return PD_OK;   /* concluded once this server's snapshot is taken */
    }
    return server_conclude_async(sv, w);
}

/* Worker w's decided gradient applied (or counted), and its trace record. */
static int apply_decided(server *sv, int w)
{
    peer *p = &sv->peers[w];
    static const int trace_outcome[] = {[PD_OUT_APPLIED] = PD_TRACE_APPLIED,
                                        [PD_OUT_BAD] = PD_TRACE_BAD,
                                        [PD_OUT_STALE] = PD_TRACE_DROPPED,
                                        [PD_OUT_AT_STOP] = PD_TRACE_DROPPED};
    pd_trace_rec rec = {.worker = (uint32_t)w, .outcome = trace_outcome[p->dec.outcome],
                        .seq = p->in.seq, .from = p->in.version, .made = p->dec.made};
    if (!count_unapplied(sv, p)) {
        /* Hogwild threads each have their own version number; the apply
         * itself runs concurrently with theirs, without a lock. */
        int64_t tau = p->dec.tau;
        apply_one(sv, p, pd_optim_staleness_scale(&sv->cfg->optimizer, tau), p->dec.made);
        if (p->in.flags & PD_FLAG_SPARSE)
            server_note_sparse(sv, pd_sparse_idx(p->sp), pd_sparse_val(p->sp, p->in.nnz),
                               (size_t)p->in.nnz);
        else
            server_note_grad(sv, p->g);
        record_staleness(sv, p, tau);
        atomic_fetch_add(&sv->examples, p->in.examples);
        add_peer_loss(p);
    }
    return server_trace(sv, &rec);
}

/* After it: the checkpoint's bookkeeping, an SSP wait or the reply. */
static int after_decided(server *sv, int w)
{
    peer *p = &sv->peers[w];
    const pd_training_config *tc = &sv->cfg->training;
    PD_TRY(server_ckpt_async_grad(sv, w));
    if (p->dec.outcome != PD_OUT_AT_STOP && tc->max_staleness >= 0 &&
        tc->staleness_policy == PD_STALE_WAIT && p->clock - min_clock(sv) > tc->max_staleness) {
        p->waiting = true;
        return PD_OK;
    }
    PD_TRY(server_reply(sv, w, false));
    return server_post_recv(sv, w);
}

int server_conclude_async(server *sv, int w)
{
    PD_TRY(apply_decided(sv, w));
    return after_decided(sv, w);
}

#define SUM_BLOCK 4096   /* floats: 16 KiB per stream, L1/L2-resident */

/* acc[i0, i1) = sum of weight[w] g_w over the round's finite gradients,
 * in ascending worker order: the same bits every run. (acc is indexed
 * globally, each g_w from the range's start.) With vsgd's words 3 the
 * same for h into acc + n and v into acc + 2n: example-weighted means. */
PD_CLONES
static void sum_block(server *sv, size_t i0, size_t i1)
{
    size_t n = i1 - i0, range = sv->hi - sv->lo;
    for (int k = 0; k < sv->words; k++) {
        float *restrict acc = sv->acc + (size_t)k * sv->n + i0;
        bool first = true;
        for (int w = 0; w < sv->world->workers; w++) {
            if (!sv->peers[w].waiting || !sv->peers[w].good)
                continue;
            const float a = sv->weight[w];
            const float *restrict g = sv->peers[w].g + (size_t)k * range + (i0 - sv->lo);
            if (first)
                for (size_t i = 0; i < n; i++)
                    acc[i] = a * g[i];
            else
                for (size_t i = 0; i < n; i++)
                    acc[i] += a * g[i];
            first = false;
        }
    }
}

/* Enough gradients for the round: every active worker's but the backups'. */
static bool round_complete(const server *sv)
{
    int have = 0, need = sv->active - sv->cfg->training.backup_workers;
    if (need < 1)
        need = 1;
    for (int w = 0; w < sv->world->workers; w++)
        have += sv->peers[w].waiting;
    return have >= need && have > 0;
}

/* Judge each of the round's gradients on its own: a non-finite one is
 * counted bad and left out; the finite ones are weighted by their share
 * of the finite examples, and their mean loss goes to *loss. Returns how
 * many are finite (0: no step this round). */
static int weigh_round(server *sv, double *loss)
{
    double total = 0;
    int good = 0;
    for (int w = 0; w < sv->world->workers; w++) {
        peer *p = &sv->peers[w];
        p->good = p->waiting && grad_ok(sv, p);
        if (p->good) {
            total += (double)p->in.examples;
            good++;
        }
    }
    *loss = 0;
    sv->round_examples = total;
    for (int w = 0; w < sv->world->workers; w++) {
        peer *p = &sv->peers[w];
        sv->weight[w] = p->good ? (float)((double)p->in.examples / total) : 0.0f;
        if (p->good)
            *loss += (double)p->in.examples / total * p->in.loss;
    }
    return good;
}

/* Sync: one optimizer step t on the weighted mean of the finite gradients. */
static int step_round(server *sv, int64_t t)
{
    if (sv->cfg->optimizer.clip_norm > 0) {
        /* Clipping needs the whole sum's norm (over every server) first:
         * each block squared as it is summed, while in cache (one pass
         * over the sum fewer than summing, then taking the norm). */
        double s = 0;
        for (size_t i = sv->lo; i < sv->hi; i += SUM_BLOCK) {
            size_t j = i + SUM_BLOCK < sv->hi ? i + SUM_BLOCK : sv->hi;
            sum_block(sv, i, j);
            s = pd_optim_sumsq(s, sv->acc + i, j - i);
        }
        double sq = sqrt(s);   /* pd_optim_norm2's bits, squared as before */
        sq *= sq;
        if (sv->world->servers > 1) {
            MPI_Request r;
            PD_MPI(MPI_Iallreduce(MPI_IN_PLACE, &sq, 1, MPI_DOUBLE, MPI_SUM,
                                  sv->world->servers_comm, &r));
            PD_TRY(server_wait_collective(sv, &r));
        }
        pd_optim_step st = pd_optim_prepare(sv->opt, t, 1.0, sqrt(sq));
        pd_optim_apply(sv->opt, &st, sv->theta, sv->acc, sv->lo, sv->hi);
        return PD_OK;
    }
    /* Sum and step block by block while the block is in cache: the
     * optimizer gives the same bits for any split of the range. */
    pd_optim_step st = pd_optim_prepare(sv->opt, t, 1.0, 0.0);
    pd_optim_curv cv = {.h = sv->acc + sv->n, .v = sv->acc + 2 * sv->n, .n = sv->round_examples};
    for (size_t i = sv->lo; i < sv->hi; i += SUM_BLOCK) {
        size_t j = i + SUM_BLOCK < sv->hi ? i + SUM_BLOCK : sv->hi;
        sum_block(sv, i, j);
        pd_optim_apply_curv(sv->opt, &st, sv->theta, sv->acc, sv->words == 3 ? &cv : NULL, i, j);
    }
    return PD_OK;
}

/* Version t is made: count the round's finite gradients applied. */
static int account_round(server *sv, int64_t t, double loss)
{
    atomic_store(&sv->version, t);
    if (!mode_of(sv)->local_steps)
        server_note_grad(sv, sv->acc + sv->lo);   /* the round's mean gradient */
    applied_version(sv, t);
    for (int w = 0; w < sv->world->workers; w++) {
        peer *p = &sv->peers[w];
        if (p->good) {
            record_staleness(sv, p, 0);
            atomic_fetch_add(&sv->examples, p->in.examples);
        }
    }
    add_loss(sv, loss);
    return server_round_closed(sv);
}

/* Every worker of the round gets the new point (or STOP). */
static int reply_round(server *sv)
{
    for (int w = 0; w < sv->world->workers; w++) {
        peer *p = &sv->peers[w];
        if (!p->waiting)
            continue;
        p->waiting = false;
        p->good = false;
        PD_TRY(server_reply(sv, w, false));
        PD_TRY(server_post_recv(sv, w));
    }
    if (sv->snap_pending >= 0 && sv->snap_pending <= atomic_load(&sv->version))
        PD_TRY(server_answer_snap(sv));
    return PD_OK;
}

/* Sync and local_sgd: close the round once enough workers have sent. A
 * round steps with its finite gradients (models) and leaves the others
 * out, counted bad; a round with none finite makes no step. */
int server_maybe_close_round(server *sv)
{
    if (sv->hears)   /* server 0 says when, and with whom */
        return server_hear(sv);
    if (!round_complete(sv))
        return PD_OK;
    if (sv->casts)   /* before the step: clipping waits for every server */
        PD_TRY(server_cast(sv, PD_RM_ROUND, -1, PD_DROP_LATE));
    return server_close_round(sv);
}

int server_close_round(server *sv)
{
    double now = pd_now();
    for (int w = 0; w < sv->world->workers; w++)   /* waited for the others */
        if (sv->peers[w].waiting)
            sv->peers[w].held = now - sv->peers[w].arrived;
    double loss;
    int good = weigh_round(sv, &loss);
    int64_t t = atomic_load(&sv->version) + 1;
    for (int w = 0; !sv->hears && w < sv->world->workers; w++) {   /* replies read theta / point */
        bool lost = sv->peers[w].lost;
        if (!lost)
            PD_TRY(server_wait_worker(sv, w, 2, sv->peers[w].rout, &lost));
    }
    if (good > 0) {
        if (mode_of(sv)->local_steps) {   /* local_sgd: the models' weighted mean */
            sum_block(sv, sv->lo, sv->hi);
            memcpy(sv->theta + sv->lo, sv->acc + sv->lo, (sv->hi - sv->lo) * sizeof *sv->acc);
        } else {
            PD_TRY(step_round(sv, t));
        }
        PD_TRY(account_round(sv, t, loss));
    }
    if (sv->world->index == 0)
        server_ckpt_round_due(sv);
    PD_TRY(reply_round(sv));
    return sv->world->index == 0 ? server_ckpt_round_write(sv) : PD_OK;
}

int server_on_grad_sync(server *sv, int w)
{
    peer *p = &sv->peers[w];
    p->clock++;
    if (!sv->hears && p->in.version < atomic_load(&sv->version)) {
        /* Late: the round closed without it (backup workers), or the run
         * stopped meanwhile. */
        enum pd_drop_kind kind = atomic_load(&sv->stopping) ? PD_DROP_AT_STOP : PD_DROP_LATE;
        if (sv->casts)
            PD_TRY(server_cast(sv, PD_RM_LATE, w, kind));
        count_drop(sv, p, kind);
        PD_TRY(server_reply(sv, w, false));
        return server_post_recv(sv, w);
    }
    if (p->in.flags & PD_FLAG_SPARSE) {
        /* A sparse model's pairs: the round sums dense ranges. */
        size_t nnz = (size_t)p->in.nnz;
        const uint32_t *idx = pd_sparse_idx(p->sp);
        const float *val = pd_sparse_val(p->sp, p->in.nnz);
        memset(p->g, 0, (sv->hi - sv->lo) * sizeof *p->g);
        for (size_t j = 0; j < nnz; j++)
            p->g[idx[j] - sv->lo] = val[j];
    }
    p->waiting = true;   /* its buffer is kept until the round closes */
    return server_maybe_close_round(sv);
}

/* easgd: centre += alpha (x_w - centre); the difference goes back. A model
 * that is not finite is counted bad and answered with the centre itself
 * (flag RESET), from which the worker starts again. */
int server_on_model_easgd(server *sv, int w, bool control)
{
    peer *p = &sv->peers[w];
    PD_TRY(server_ckpt_elastic_model(sv, w));
    PD_TRY(decision(sv, w, control));
    if (p->lost)
        return PD_OK;
    if (sv->follows) {   /* a checkpoint's cut (checkpoint.h), as in async */
        bool stash;
        PD_TRY(server_ckpt_follow(sv, w, &stash));
        if (stash)
            return PD_OK;
    }
    return server_conclude_easgd(sv, w);
}

int server_conclude_easgd(server *sv, int w)
{
    peer *p = &sv->peers[w];
    bool unapplied = count_unapplied(sv, p);
    if (!unapplied) {
        float alpha = (float)sv->cfg->training.elastic_alpha;
        float *restrict c = sv->theta + sv->lo, *restrict d = p->reply;
        const float *restrict x = p->g;
        for (size_t i = 0; i < sv->hi - sv->lo; i++) {
            d[i] = alpha * (x[i] - c[i]);
            c[i] += d[i];
        }
        atomic_fetch_add(&sv->examples, p->in.examples);
        record_staleness(sv, p, 0);
        add_peer_loss(p);
    }
    /* A server s > 0's checkpoint bookkeeping, once the model is in the
     * centre (its count may take the snapshot; server 0's is before the
     * decision). */
    if (sv->follows)
        PD_TRY(server_ckpt_async_grad(sv, w));
    p->reset = unapplied && p->dec.outcome == PD_OUT_BAD;
    PD_TRY(server_reply(sv, w, !unapplied));
    return server_post_recv(sv, w);
}
