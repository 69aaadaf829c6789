/* Worker ranks: compute minibatch gradients on this worker's shard at the
 * point the servers send (the optimizer's lookahead point), push each
 * server its range, take the reply as the next point. In local_sgd and
 * easgd the worker also owns a local model and optimizer and talks to the
 * servers every training.local_steps steps. Every request gets one reply
 * per server; STOP from any server ends the worker, which then tells every
 * server FINAL with the count of requests it sent. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "modes.h"
#include "pace.h"
#include "paramd/optim.h"
#include "server.h"
#include "train.h"

typedef struct worker {
    const pd_config *cfg;
    const pd_world *world;
    pd_learner l;
    size_t n;
    float *point;            /* [n] parameters from the servers (local: own model) */
    float *diff;             /* [n] easgd: elastic difference received */
    float *look;             /* [n] local lookahead point, or NULL */
    float *pack;             /* [3n] vsgd: server s's g, h, v of [lo, hi) from 3 lo */
    pd_optim *local;         /* local_sgd, easgd */
    pd_msg_hdr *out, *in;    /* [S] */
    int64_t *ver;            /* [S] version of each server's range we hold */
    uint8_t **sp;            /* [S] sparse payloads: gradient pairs, then pull indices */
    bool pull;               /* sparse pulls: async/hogwild, sparse model and data */
    uint32_t *touch;         /* [n] coordinates the next minibatch touches */
    size_t ntouch;
    bool more;               /* there is a next minibatch (touch holds it) */
    float *pulled;           /* [n] pulled values, server s's at [lo, ...) */
    MPI_Request *req;        /* [S][4]: send header, send payload, recv header, recv payload */
    MPI_Datatype ptype;      /* payload type the servers expect */
    int64_t seq;
    int64_t local_t;         /* local steps taken (local_sgd, easgd) */
    bool stop;
    /* faults: straggler pacing and message delays, seeded per rank */
    pd_pace pace;
    double cycle_t0, pad_s;  /* this cycle's start and the time it slept */
    double unslowed;         /* the unslowed cycle time server 0 last sent */
    pd_rng frng;
    pd_phase_carry *carry;   /* training.phases, or NULL */
    int epoch_base;          /* a phase's epochs count from here */
    bool carries;            /* no local optimizer in this phase, one of an earlier phase
                              * in carry->worker->local (its state carries it) */
    /* async checkpoints: the state and CKPT headers go out as soon as
     * server 0's flagged reply is in (checkpoint.h) */
    bool early;
    pd_msg_hdr *mk;          /* [S] CKPT headers */
    MPI_Request *mreq;       /* [2S]: state to server 0, then headers */
    unsigned char *mbuf;     /* the state's bytes while it is sent */
} worker;

/* A sleep nanosleep refuses is skipped (pd_sleep_s returns its errno). */
static void sleep_s(double s)
{
    (void)pd_sleep_s(s);
}

/* A straggler's pad, before its request goes out (so its gradient ages
 * meanwhile, as a slow worker's does): see pace.h. */
static void straggle(worker *wk, double compute_s)
{
    double pad = pd_pace_pad(&wk->pace, compute_s, wk->unslowed);
    if (pad > 0) {
        double t0 = pd_now();
        sleep_s(pad);
        wk->pad_s = pd_now() - t0;   /* as slept: an overshoot goes into the debt */
    }
}

/* A cycle ends with the servers' replies: it goes into the pacing (with
 * the longest time a server held it for others, and server 0's unslowed
 * cycle time for the next), and the next cycle starts. */
static void end_cycle(worker *wk)
{
    double now = pd_now(), held = 0;
    for (int s = 0; s < wk->world->servers; s++)
        if (wk->in[s].kind == PD_MSG_PARAMS && wk->in[s].held > held)
            held = wk->in[s].held;
    if (wk->in[0].kind == PD_MSG_PARAMS)
        wk->unslowed = wk->in[0].pace;
    pd_pace_cycle(&wk->pace, now - wk->cycle_t0, wk->pad_s, held);
    wk->cycle_t0 = now;
    wk->pad_s = 0;
}

/* faults.delay of the next request, in seconds: none, constant, uniform
 * on [0, 2 mean] or exponential with the configured mean; the last two
 * draw once from the fault RNG. Every request (gradient or model) takes
 * exactly one, so the stream's position is a function of the requests
 * sent (a rejoining worker's skip in resume() relies on it). */
static double delay_s(worker *wk)
{
    const pd_faults_config *f = &wk->cfg->faults;
    double mean = f->delay_mean_ms * 1e-3;
    switch (f->delay_distribution) {
    case PD_DELAY_NONE:        return 0;
    case PD_DELAY_CONSTANT:    return mean;
    case PD_DELAY_UNIFORM:     return 2 * mean * pd_rng_uniform(&wk->frng);
    case PD_DELAY_EXPONENTIAL: return -mean * log(1 - pd_rng_uniform(&wk->frng));
    }
    return 0;
}

/* faults.delay before a request leaves. */
static void delay(worker *wk)
{
    double s = delay_s(wk);
    if (s > 0)
        sleep_s(s);
}

/* buf = the pairs of g within [lo, hi): k indices, then k values. */
static size_t pack_sparse(const pd_sparse_grad *g, size_t lo, size_t hi, uint8_t *buf)
{
    size_t k = 0;
    for (size_t j = 0; j < g->nnz; j++)
        k += g->idx[j] >= lo && g->idx[j] < hi;
    uint32_t *idx = pd_sparse_idx(buf);
    float *val = pd_sparse_val(buf, (int64_t)k);
    size_t m = 0;
    for (size_t j = 0; j < g->nnz; j++) {
        if (g->idx[j] >= lo && g->idx[j] < hi) {
            idx[m] = g->idx[j];
            val[m++] = g->val[j];
        }
    }
    return k;
}

/* The pull indices within [lo, hi), written at out; their count. */
static size_t pack_pull(const worker *wk, size_t lo, size_t hi, uint32_t *out)
{
    size_t m = 0;
    for (size_t j = 0; wk->more && j < wk->ntouch; j++)
        if (wk->touch[j] >= lo && wk->touch[j] < hi)
            out[m++] = wk->touch[j];
    return m;
}

/* A sparse pull's reply: the values of server s's pull indices. */
static void unpack_pull(worker *wk, int s, size_t lo)
{
    const pd_msg_hdr *h = &wk->out[s];
    const uint32_t *idx = pd_sparse_pull(wk->sp[s], h->nnz);
    const float *val = wk->pulled + lo;
    for (int64_t j = 0; j < h->npull; j++)
        wk->point[idx[j]] = val[j];
}

/* Server s's part of a request: its header, and the payload (sparse
 * pairs and pulls, the dense gradient or the local model over [lo, hi));
 * *count is in elements of the type the servers expect. */
static const void *payload_of(worker *wk, int s, int kind, pd_msg_hdr *h, size_t lo, size_t hi,
                              int *count)
{
    pd_learner *l = &wk->l;
    *count = 0;
    if (kind == PD_MSG_GRAD && l->sparse) {
        h->flags = PD_FLAG_SPARSE;
        h->nnz = (int64_t)pack_sparse(&l->sgrad, lo, hi, wk->sp[s]);
        if (wk->pull) {
            h->flags |= PD_FLAG_PULL;
            h->npull = (int64_t)pack_pull(wk, lo, hi, pd_sparse_pull(wk->sp[s], h->nnz));
        }
        *count = (int)(8 * h->nnz + 4 * h->npull);
        return wk->sp[s];
    }
    if (kind == PD_MSG_GRAD && wk->pack) {
        /* vsgd: the range's curvature and second moment ride along */
        size_t r = hi - lo;
        float *q = wk->pack + 3 * lo;
        memcpy(q, l->grad + lo, r * sizeof *q);
        memcpy(q + r, l->curv + lo, r * sizeof *q);
        memcpy(q + 2 * r, l->curv + l->nparams + lo, r * sizeof *q);
        *count = (int)(3 * r);
        return q;
    }
    if (kind == PD_MSG_GRAD || kind == PD_MSG_MODEL) {
        *count = (int)(hi - lo);
        return (kind == PD_MSG_GRAD ? l->grad : wk->point) + lo;
    }
    return NULL;   /* HELLO, FINAL: the header says it all */
}

/* Post server s's request (header, payload) and, unless it is FINAL, the
 * receives of its reply (header, floats of [lo, hi) into the point, the
 * elastic difference or the pulled values). */
static int post_request(worker *wk, int s, int kind, double loss, double norm, int64_t examples)
{
    pd_learner *l = &wk->l;
    size_t lo, hi;
    pd_server_range(wk->n, wk->world->servers, s, &lo, &hi);
    MPI_Request *r = &wk->req[4 * s];
    pd_msg_hdr *h = &wk->out[s];
    *h = (pd_msg_hdr){.kind = kind, .worker = wk->world->index, .version = wk->ver[s],
                      .seq = wk->seq, .lo = (int64_t)lo, .hi = (int64_t)hi,
                      .examples = examples,
                      .batches = (int64_t)pd_iter_batches_per_epoch(l->iter),
                      .loss = loss, .norm = norm, .epoch = pd_learner_epoch(l)};
    int count;
    const void *payload = payload_of(wk, s, kind, h, lo, hi, &count);
    int dst = pd_server_rank(s);
    PD_MPI(MPI_Isend(h, sizeof *h, MPI_BYTE, dst, PD_TAG_DATA, MPI_COMM_WORLD, &r[0]));
    PD_MPI(MPI_Isend(payload, count, kind == PD_MSG_MODEL ? MPI_FLOAT : wk->ptype, dst,
                     PD_TAG_DATA, MPI_COMM_WORLD, &r[1]));
    r[2] = r[3] = MPI_REQUEST_NULL;
    if (kind == PD_MSG_FINAL)
        return PD_OK;
    float *into = pd_mode_props_of(wk->cfg->training.mode)->elastic && kind == PD_MSG_MODEL
                      ? wk->diff : wk->point;
    if (h->flags & PD_FLAG_PULL)
        into = wk->pulled;
    PD_MPI(MPI_Irecv(&wk->in[s], sizeof wk->in[s], MPI_BYTE, dst, PD_TAG_DATA, MPI_COMM_WORLD,
                     &r[2]));
    PD_MPI(MPI_Irecv(into + lo, (int)(hi - lo), MPI_FLOAT, dst, PD_TAG_DATA, MPI_COMM_WORLD,
                     &r[3]));
    return PD_OK;
}

/* Take server s's reply: STOP, or a new version (with, in easgd, the
 * centre in place of a model that was not finite; with a pull, the pulled
 * values scattered into the point). */
static int take_reply(worker *wk, int s)
{
    const pd_msg_hdr *in = &wk->in[s], *out = &wk->out[s];
    if (in->kind == PD_MSG_STOP) {
        wk->stop = true;
        return PD_OK;
    }
    wk->ver[s] = in->version;
    if (in->flags & PD_FLAG_RESET) {
        /* easgd: our model was not finite; the centre came back. */
        size_t lo = (size_t)in->lo, hi = (size_t)in->hi;
        memcpy(wk->point + lo, wk->diff + lo, (hi - lo) * sizeof *wk->point);
        memset(wk->diff + lo, 0, (hi - lo) * sizeof *wk->diff);
    }
    if (out->flags & PD_FLAG_PULL) {
        if (in->npull != out->npull)
            return PD_FAIL(PD_EMPI, "worker %d: server %d answered a pull of %lld "
                           "coordinates with %lld", wk->world->index, s,
                           (long long)out->npull, (long long)in->npull);
        unpack_pull(wk, s, (size_t)out->lo);
    }
    return PD_OK;
}

/* This worker's state for a checkpoint (checkpoint.h); in easgd with its
 * own model (wk->point). With sparse pulls the next minibatch is drawn
 * before the exchange: the state gives it back, so a resumed worker
 * draws it again and trains on what the uninterrupted one would. */
static pd_worker_state state_of(worker *wk)
{
    bool own = pd_mode_props_of(wk->cfg->training.mode)->elastic;
    const pd_phase_worker *c = wk->carries ? wk->carry->worker : NULL;
    return (pd_worker_state){.l = &wk->l, .lw = &wk->l, .local = wk->local, .seq = wk->seq,
                             .local_t = wk->local_t, .rng = wk->frng,
                             .model = own ? wk->point : NULL, .nmodel = own ? wk->n : 0,
                             .drawn = wk->pull && wk->more ? wk->l.batch : 0,
                             .carries = wk->carries, .carried = c ? c->local : NULL,
                             .carried_size = c ? c->local_size : 0};
}

/* Async, hogwild, easgd: server 0's reply to the gradient (model) just
 * sent asks for a checkpoint. Our state (this gradient counted: nothing
 * else changes until the other replies are in; easgd: our model before
 * the elastic move) goes to server 0, which waits for it, and a CKPT
 * header to every other server: our gradients after it come after the
 * checkpoint (the one just sent, before it, may be one of those server 0
 * counts as dropped). Neither waits for the other servers' replies, which
 * can wait for server 0's decisions. */
static int post_early_checkpoint(worker *wk)
{
    int S = wk->world->servers;
    pd_worker_state ws = state_of(wk);
    ws.seq++;
    PD_TRY(pd_worker_state_post(&ws, &wk->mreq[0], &wk->mbuf));
    for (int s = 1; s < S; s++) {
        wk->mk[s] = (pd_msg_hdr){.kind = PD_MSG_CKPT, .worker = wk->world->index,
                                 .version = wk->in[0].seq, .seq = ws.seq,
                                 .epoch = pd_learner_epoch(&wk->l)};
        PD_MPI(MPI_Isend(&wk->mk[s], sizeof wk->mk[s], MPI_BYTE, pd_server_rank(s), PD_TAG_DATA,
                         MPI_COMM_WORLD, &wk->mreq[2 * s]));
        PD_MPI(MPI_Isend(NULL, 0, wk->ptype, pd_server_rank(s), PD_TAG_DATA, MPI_COMM_WORLD,
                         &wk->mreq[2 * s + 1]));
    }
    return PD_OK;
}

/* One request of `kind` to every server, then every reply (none for
 * FINAL). Payload: the gradient (GRAD), the local model (MODEL) or nothing
 * (HELLO, FINAL). */
static int exchange(worker *wk, int kind, double loss, double norm, int64_t examples)
{
    int S = wk->world->servers;
    /* With training.worker_timeout, a server silent for twice as long is
     * gone (its workers' own losses take at most about 1.25 times). */
    double t = pd_comm_recovery() ? wk->cfg->training.worker_timeout : 0;
    double until = t > 0 ? pd_now() + 2 * t : INFINITY;
    bool expired = false, early = false;
    /* With several servers that may lose us (lost.c), servers 1..S-1 have
     * the whole request before server 0 gets it: what server 0 got, every
     * server has, should we die between the sends. */
    bool ordered = t > 0 && S > 1;
    for (int s = ordered ? 1 : 0; s < S; s++)
        PD_TRY(post_request(wk, s, kind, loss, norm, examples));
    for (int s = 1; ordered && !expired && s < S; s++)
        PD_TRY(pd_comm_waitall_until(2, &wk->req[4 * s], until, &expired));
    if (ordered && !expired)
        PD_TRY(post_request(wk, 0, kind, loss, norm, examples));
    if (!expired && wk->early && (kind == PD_MSG_GRAD || kind == PD_MSG_MODEL)) {
        PD_TRY(pd_comm_waitall_until(4, wk->req, until, &expired));
        early = !expired && (wk->in[0].flags & PD_FLAG_CKPT);
        if (early)
            PD_TRY(post_early_checkpoint(wk));
    }
    if (!expired)
        PD_TRY(pd_comm_waitall_until(4 * S, wk->req, until, &expired));
    if (early) {
        int err = pd_comm_waitall(2 * S, wk->mreq);
        free(wk->mbuf);
        wk->mbuf = NULL;
        PD_TRY(err);
    }
    for (int s = 0; expired && s < S; s++) {
        int done = 0;
        PD_MPI(MPI_Testall(4, &wk->req[4 * s], &done, MPI_STATUSES_IGNORE));
        if (!done)
            return PD_FAIL(PD_EMPI, "worker %d: server %d (rank %d) lost: no answer for %g s "
                           "(2 x training.worker_timeout)", wk->world->index, s,
                           pd_server_rank(s), 2 * t);
    }
    if (kind == PD_MSG_GRAD || kind == PD_MSG_MODEL)
        wk->seq++;
    for (int s = 0; kind != PD_MSG_FINAL && s < S; s++)
        PD_TRY(take_reply(wk, s));
    return PD_OK;
}

/* Server 0's reply asked for a checkpoint of this version: our state to
 * server 0, a CKPT header to every other server (before our next request,
 * so they still hold the version), then on with computing. */
static int checkpoint(worker *wk)
{
    if (wk->early || !(wk->in[0].flags & PD_FLAG_CKPT))
        return PD_OK;   /* async: sent during the exchange */
    pd_worker_state ws = state_of(wk);
    PD_TRY(pd_worker_state_send(&ws));
    int S = wk->world->servers;
    for (int s = 1; s < S; s++) {
        pd_msg_hdr *h = &wk->out[s];
        *h = (pd_msg_hdr){.kind = PD_MSG_CKPT, .worker = wk->world->index,
                          .version = wk->in[0].version, .seq = wk->seq,
                          .epoch = pd_learner_epoch(&wk->l)};
        MPI_Request *r = &wk->req[4 * s];
        PD_MPI(MPI_Isend(h, sizeof *h, MPI_BYTE, pd_server_rank(s), PD_TAG_DATA, MPI_COMM_WORLD,
                         &r[0]));
        PD_MPI(MPI_Isend(NULL, 0, wk->ptype, pd_server_rank(s), PD_TAG_DATA, MPI_COMM_WORLD,
                         &r[1]));
        r[2] = r[3] = MPI_REQUEST_NULL;
    }
    return pd_comm_waitall(4 * S, wk->req);
}

/* Next minibatch, crossing epochs; false when the worker's epochs are done. */
static bool next_batch(worker *wk, int *epochs)
{
    int E = wk->cfg->training.epochs;
    if (E > 0 && *epochs >= wk->epoch_base + E)
        return false;   /* resumed from the checkpoint at its last epoch's end */
    while (!pd_learner_next(&wk->l)) {
        ++*epochs;
        if (E > 0 && *epochs >= wk->epoch_base + E)
            return false;
    }
    return true;
}

/* Draw the next minibatch; with sparse pulls, note the coordinates it
 * touches, which go out with the current gradient. */
static int advance(worker *wk, int *epochs)
{
    wk->more = next_batch(wk, epochs);
    if (wk->more && wk->pull)
        PD_TRY(pd_model_touched(wk->l.model, wk->l.train, wk->l.rows, wk->l.batch,
                                wk->touch, wk->n, &wk->ntouch));
    return PD_OK;
}

/* Without sparse pulls the next minibatch is drawn after the exchange, so
 * a checkpoint taken at its reply holds the iterator just past the
 * minibatch of the gradient sent; with pulls it is drawn before, and the
 * state gives it back (state_of). */
static int run_gradients(worker *wk)
{
    int epochs = (int)pd_iter_epoch(wk->l.iter);
    PD_TRY(advance(wk, &epochs));
    wk->unslowed = wk->in[0].pace;   /* from the HELLO reply */
    wk->cycle_t0 = pd_now();
    while (!wk->stop && wk->more) {
        bool finite;
        double t0 = pd_now();
        PD_TRY(pd_learner_grad(&wk->l, wk->point, &finite));
        double compute_s = pd_now() - t0;
        straggle(wk, compute_s);
        delay(wk);
        /* A non-finite gradient still goes out, flagged by its loss, so the
         * server counts it (and never applies it). */
        double loss = finite ? wk->l.loss : NAN;
        double norm = finite ? pd_learner_grad_norm(&wk->l, &wk->cfg->optimizer) : NAN;
        int64_t examples = (int64_t)wk->l.batch;
        if (wk->pull)
            PD_TRY(advance(wk, &epochs));   /* its pull rides on this gradient */
        PD_TRY(exchange(wk, PD_MSG_GRAD, loss, norm, examples));
        end_cycle(wk);
        PD_TRY(checkpoint(wk));
        if (!wk->pull && !wk->stop)
            PD_TRY(advance(wk, &epochs));
    }
    return PD_OK;
}

/* easgd: x_w -= alpha (x_w - centre), over each server's range whose
 * reply carries the difference (PARAMS, or a STOP to an applied model). */
static void elastic_move(worker *wk)
{
    for (int s = 0; s < wk->world->servers; s++) {
        const pd_msg_hdr *in = &wk->in[s];
        if (in->kind != PD_MSG_PARAMS && !(in->flags & PD_FLAG_ELASTIC))
            continue;
        for (size_t i = (size_t)in->lo; i < (size_t)in->hi; i++)
            wk->point[i] -= wk->diff[i];
    }
}

/* local_sgd / easgd: local steps on wk->point, exchanges every tau steps.
 * A local step whose gradient is not finite is skipped (theta untouched);
 * the exchange's loss is the mean over the applied ones (NaN if none),
 * its norm NaN when the model itself is not finite: the servers count
 * either as bad and leave the model out. */
static int run_local(worker *wk)
{
    const pd_config *cfg = wk->cfg;
    const pd_mode_props *m = pd_mode_props_of(cfg->training.mode);
    pd_learner *l = &wk->l;
    int epochs = (int)pd_iter_epoch(l->iter), tau = cfg->training.local_steps;
    int64_t since = 0, examples = 0, ok = 0;
    double loss = 0, compute_s = 0;   /* compute of the steps since the exchange */
    bool more = true;
    wk->unslowed = wk->in[0].pace;   /* from the HELLO reply */
    wk->cycle_t0 = pd_now();
    while (!wk->stop && more) {
        more = next_batch(wk, &epochs);
        if (more) {
            bool applied;
            double t0 = pd_now();
            PD_TRY(pd_learner_local_step(l, wk->local, &cfg->optimizer, wk->point, wk->look,
                                         wk->local_t + 1, &applied));
            compute_s += pd_now() - t0;
            wk->local_t += applied;
            ok += applied;
            loss += applied ? l->loss : 0;
            since++;
            examples += (int64_t)l->batch;
        }
        if (since == tau || (!more && since > 0)) {
            /* Weighted by the examples behind this model since the last
             * exchange (a final partial round has fewer). One cycle is
             * the local steps and the exchange: its pad goes before. */
            straggle(wk, compute_s);
            delay(wk);
            double norm = pd_optim_finite(wk->point, wk->n) ? 0 : NAN;
            PD_TRY(exchange(wk, PD_MSG_MODEL, ok ? loss / (double)ok : NAN, norm, examples));
            /* easgd: a checkpoint drops this exchange (checkpoint.h): our
             * state went to server 0 during it (post_early_checkpoint),
             * with our model from before the elastic move. */
            if (m->elastic)
                elastic_move(wk);
            end_cycle(wk);
            compute_s = 0;
            PD_TRY(checkpoint(wk));   /* local_sgd's round */
            since = 0;
            examples = 0;
            ok = 0;
            loss = 0;
        }
    }
    return PD_OK;
}

/* training.phases: does a local_sgd or easgd phase come before this one?
 * (Its local optimizers then go on through this phase to the next local
 * one, in this process or through a checkpoint.) */
static int earlier_local(const pd_phase_carry *c, bool *out)
{
    *out = false;
    pd_config *pc = pd_malloc(sizeof *pc);
    if (!pc)
        return PD_ENOMEM;
    int err = PD_OK;
    for (int j = 0; err == PD_OK && !*out && j < c->index; j++) {
        err = pd_config_phase(c->run, j, pc);
        *out = err == PD_OK && pd_mode_props_of(pc->training.mode)->local_steps;
    }
    free(pc);
    return err;
}

static int setup(worker *wk, const pd_config *cfg, const pd_world *world)
{
    wk->cfg = cfg;
    wk->world = world;
    pd_pace_init(&wk->pace, pd_faults_slow_factor(&cfg->faults, world->rank),
                 cfg->faults.slow_basis == PD_SLOW_COMPUTE);
    wk->frng = pd_rng_make(cfg->run.seed, PD_STREAM_FAULTS, (uint64_t)world->rank);
    int S = world->servers;
    /* what the previous phase handed over in this process (not --resume's) */
    pd_phase_worker *from = wk->carry && wk->carry->index > 0 && !wk->carry->record
                            ? wk->carry->worker : NULL;
    if (from) {   /* the same shard, iterator and position */
        pd_learner *l = from->learner;
        wk->l = *l;
        wk->l.cfg = cfg;
        free(l);
        from->learner = NULL;
        wk->frng = from->frng;
        wk->local_t = from->local_t;
        wk->epoch_base = (int)pd_iter_epoch(wk->l.iter);
    } else {
        PD_TRY(pd_learner_init(&wk->l, cfg, world->index, world->workers));
    }
    PD_TRY(pd_learner_use_curv(&wk->l, cfg));
    wk->n = wk->l.nparams;
    const pd_mode_props *m = pd_mode_props_of(cfg->training.mode);
    bool local = m->local_steps;
    wk->ptype = wk->l.sparse && !local ? MPI_BYTE : MPI_FLOAT;
    /* Sparse pulls where each reply is the worker's own (not sync's shared
     * point) and the data is sparse (a dense row touches everything). */
    wk->pull = wk->l.sparse && wk->l.train->sparse && m->sparse_pull;
    wk->point = pd_calloc(wk->n, sizeof *wk->point);
    wk->out = pd_calloc((size_t)S, sizeof *wk->out);
    wk->in = pd_calloc((size_t)S, sizeof *wk->in);
    wk->ver = pd_calloc((size_t)S, sizeof *wk->ver);
    wk->sp = pd_calloc((size_t)S, sizeof *wk->sp);
    wk->req = pd_calloc((size_t)(4 * S), sizeof *wk->req);
    if (!wk->point || !wk->out || !wk->in || !wk->ver || !wk->sp || !wk->req)
        return PD_ENOMEM;
    wk->early = m->each;
    if (wk->early) {
        wk->mk = pd_calloc((size_t)S, sizeof *wk->mk);
        wk->mreq = pd_malloc((size_t)(2 * S) * sizeof *wk->mreq);
        if (!wk->mk || !wk->mreq)
            return PD_ENOMEM;
        for (int k = 0; k < 2 * S; k++)
            wk->mreq[k] = MPI_REQUEST_NULL;
    }
    for (int s = 0; wk->l.sparse && s < S; s++) {
        size_t lo, hi;
        pd_server_range(wk->n, S, s, &lo, &hi);
        if (!(wk->sp[s] = pd_malloc(pd_sparse_payload_max(hi - lo))))
            return PD_ENOMEM;
    }
    if (wk->pull && (!(wk->touch = pd_malloc(wk->n * sizeof *wk->touch)) ||
                     !(wk->pulled = pd_malloc(wk->n * sizeof *wk->pulled))))
        return PD_ENOMEM;
    /* vsgd (the servers' rule): a gradient goes with its curvature. */
    if (!local && wk->l.curv && !(wk->pack = pd_malloc(3 * wk->n * sizeof *wk->pack)))
        return PD_ENOMEM;
    if (local) {
        /* Each worker's local optimizer draws its own noise stream. */
        PD_TRY(pd_optim_create(&cfg->optimizer, 0, wk->n,
                               cfg->run.seed + 7919u * (uint64_t)(world->index + 1), &wk->local));
        if (from && from->local)   /* the last local phase's state */
            PD_TRY(pd_optim_load(wk->local, from->local, from->local_size));
        if (pd_optim_has_lookahead(wk->local) && !(wk->look = pd_malloc(wk->n * sizeof *wk->look)))
            return PD_ENOMEM;
        if (m->elastic && !(wk->diff = pd_malloc(wk->n * sizeof *wk->diff)))
            return PD_ENOMEM;
    } else if (wk->carry) {
        PD_TRY(earlier_local(wk->carry, &wk->carries));
    }
    return PD_OK;
}

static void teardown(worker *wk)
{
    for (int s = 0; wk->sp && s < wk->world->servers; s++)
        free(wk->sp[s]);
    free(wk->sp);
    free(wk->touch);
    free(wk->pulled);
    free(wk->req);
    free(wk->mk);
    free(wk->mreq);
    free(wk->mbuf);
    free(wk->ver);
    free(wk->in);
    free(wk->out);
    free(wk->look);
    free(wk->pack);
    free(wk->diff);
    free(wk->point);
    pd_optim_destroy(&wk->local);
    pd_learner_free(&wk->l);
}

/* ---- training.phases (paramd/phase.h) ------------------------------------ */

static void learner_free(void *l)
{
    pd_learner_free(l);
    free(l);
}

/* This phase's end into the hand-over: the learner moves (teardown frees
 * none), the local optimizer's state is copied. */
static int carry_out(worker *wk, pd_phase_worker *to)
{
    if (wk->local) {
        size_t size = pd_optim_state_size(wk->local);
        unsigned char *b = pd_malloc(size ? size : 1);
        if (!b)
            return PD_ENOMEM;
        int err = pd_optim_save(wk->local, b, size);
        if (err != PD_OK) {
            free(b);
            return err;
        }
        free(to->local);
        to->local = b;
        to->local_size = size;
    }
    to->local_t = wk->local_t;   /* a phase without local steps keeps the count */
    pd_learner *l = pd_malloc(sizeof *l);
    if (!l)
        return PD_ENOMEM;
    *l = wk->l;
    memset(&wk->l, 0, sizeof wk->l);
    to->learner = l;
    to->learner_free = learner_free;
    to->frng = wk->frng;
    return PD_OK;
}

/* --resume: the state server 0 sends (easgd: our own model into diff,
 * which the HELLO reply leaves alone; own_model copies it back after). */
static int resume(worker *wk)
{
    pd_worker_state ws = state_of(wk);
    if (ws.model)
        ws.model = wk->diff;
    ws.carried = NULL;   /* unpack's copy, if it makes one */
    ws.carried_size = 0;
    int64_t skip;
    int err = pd_worker_state_recv(&ws, &skip);
    if (ws.carried) {   /* an earlier local phase's optimizer, for the next one */
        pd_phase_worker *c = wk->carry->worker;
        free(c->local);
        c->local = ws.carried;
        c->local_size = ws.carried_size;
    }
    PD_TRY(err);
    wk->seq = ws.seq + skip;
    wk->local_t = ws.local_t;
    wk->frng = ws.rng;
    /* Lost at the checkpoint: its minibatches up to its loss were sent (and
     * applied or dropped); it rejoins with the next one, its fault RNG past
     * the delay each of those requests drew (not slept again). */
    for (int64_t k = 0, ends = 0; k < skip;) {
        if (pd_learner_next(&wk->l)) {
            wk->l.examples += (int64_t)wk->l.batch;
            (void)delay_s(wk);
            k++;
            ends = 0;
        } else if (++ends > 1) {
            return PD_FAIL(PD_EMPI, "worker %d: %lld minibatches to skip, its shard has no more",
                           wk->world->index, (long long)(skip - k));
        }
    }
    return PD_OK;
}

static int worker_main(const pd_config *cfg, const pd_run_opts *opts, pd_world *world,
                       pd_phase_carry *carry);

int pd_worker_run(const pd_config *cfg, const pd_run_opts *opts, pd_world *world)
{
    return worker_main(cfg, opts, world, NULL);
}

int pd_worker_phase(const pd_config *cfg, const pd_run_opts *opts, pd_world *world,
                    pd_phase_carry *c)
{
    pd_phase_worker *wc;
    PD_TRY(pd_phase_worker_get(c, &wc));
    return worker_main(cfg, opts, world, c);
}

static int worker_main(const pd_config *cfg, const pd_run_opts *opts, pd_world *world,
                       pd_phase_carry *carry)
{
    worker wk = {.carry = carry};
    int err = pd_comm_agree(world, setup(&wk, cfg, world));
    if (err == PD_OK && opts->resume)
        err = resume(&wk);
    if (err == PD_OK && carry && carry->record)   /* the phase's epochs count from there */
        wk.epoch_base = (int)carry->record->epoch_base[world->index];
    if (err == PD_OK)
        err = exchange(&wk, PD_MSG_HELLO, 0, 0, (int64_t)wk.l.train->n);
    if (err == PD_OK)   /* backup workers: a round may close before our HELLO */
        err = checkpoint(&wk);
    if (err == PD_OK && opts->resume && wk.diff)   /* easgd: our own model, not the centre */
        memcpy(wk.point, wk.diff, wk.n * sizeof *wk.point);
    if (err == PD_OK) {
        bool local = pd_mode_props_of(cfg->training.mode)->local_steps;
        err = local ? run_local(&wk) : run_gradients(&wk);
    }
    /* Server 0 takes our state when FINAL arrives: started before it. */
    MPI_Request sr = MPI_REQUEST_NULL;
    unsigned char *sb = NULL;
    pd_worker_state ws = state_of(&wk);
    if (err == PD_OK)
        err = pd_worker_state_post(&ws, &sr, &sb);
    if (err == PD_OK)
        err = exchange(&wk, PD_MSG_FINAL, 0, 0, 0);
    if (err == PD_OK)
        err = pd_comm_wait(&sr, NULL);
    free(sb);
    if (err == PD_OK && carry)
        err = carry_out(&wk, carry->worker);
    teardown(&wk);
    return err;
}
