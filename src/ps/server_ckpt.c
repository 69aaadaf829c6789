/* A server's checkpoints (the protocol is in checkpoint.h): its part of
 * each checkpoint, server 0's collection of the workers' states and of the
 * other parts' ids before the manifest, and --resume: this server's part
 * of the newest valid checkpoint, server 0's worker states and evaluator
 * state. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "paramd/le.h"
#include "paramd/signals.h"
#include "server_impl.h"

enum { ID_BYTES = 24 };   /* u64 version, u64 size, u32 crc32, u32 zero */

static void put_state(server *sv, int w, unsigned char *b, size_t n);

/* --resume, server 0: the run's lost workers so far (whole-run record),
 * and each one lost at the checkpoint rejoins now, at its version: it
 * continues from its state as of its loss (its requests then, the worker
 * skipping the minibatches past its saved iterator; server_ckpt_start). */
static int resume_lost(server *sv, const pd_ckpt_part *p)
{
    size_t cap = (size_t)sv->world->workers + p->nlost;
    pd_lost_worker *l = pd_calloc(cap, sizeof *l);
    int64_t *sent = pd_calloc(cap, sizeof *sent);
    if (!l || !sent) {
        free(l);
        free(sent);
        return PD_ENOMEM;
    }
    for (size_t i = 0; i < p->nlost; i++) {
        const pd_ckpt_lost *e = &p->lost[i];
        l[i] = (pd_lost_worker){.worker = (int)e->worker, .rank = (int)e->rank,
                                .last_update = e->last_update, .update = e->update,
                                .wall_s = e->wall_s,
                                .rejoined = e->rejoined >= 0 ? e->rejoined : (int64_t)p->version};
        sent[i] = e->sent;
        if (e->rejoined < 0)
            sv->peers[e->worker].seq0 = e->sent;
    }
    free(sv->lost);
    free(sv->lost_sent);
    sv->lost = l;
    sv->lost_sent = sent;
    atomic_store(&sv->n_lost, p->nlost);
    return PD_OK;
}

int server_ckpt_setup(server *sv, const pd_run_opts *opts)
{
    server_ckpt *ck = &sv->ck;
    const pd_config *cfg = sv->cfg;
    int W = sv->world->workers;
    ck->written = -1;
    ck->last_t = pd_now();
    ck->resume_eval = -1;
    /* training.phases: the run's config (its phases included) makes the
     * hash, and a resumed run writes at the end of every phase (each mode
     * writes checkpoints, with any number of servers or a trace) without
     * checkpoint.every_* too: the phase --resume continues has opts->resume,
     * the ones after it carry->resumed. */
    const pd_config *run = sv->carry ? sv->carry->run : cfg;
    ck->on = pd_ckpt_enabled(cfg, opts) || (sv->carry && sv->carry->resumed);
    PD_TRY(pd_ckpt_dir(cfg->run.out_dir, ck->dir, sizeof ck->dir));
    PD_TRY(pd_ckpt_hashes(sv->model, run, W, &ck->layout_hash, &ck->config_hash));
    if (sv->world->index == 0) {
        ck->state = pd_calloc((size_t)W, sizeof *ck->state);
        ck->state_size = pd_calloc((size_t)W, sizeof *ck->state_size);
        if (!ck->state || !ck->state_size)
            return PD_ENOMEM;
    }
    /* async, hogwild and easgd (any number of servers): snapshots wait
     * for the workers' states (server 0) or their CKPT headers (the others) */
    ck->cut = ck->cut_next = ck->snapped = -1;
    bool threads = mode_of(sv)->threads;
    if (mode_of(sv)->each && (!threads || ck->on)) {
        /* hogwild: server 0's snapshots wait for the threads' applies (the
         * others' need no lock: checkpoint.h) */
        sv->quiesce = threads && sv->world->index == 0;
        int S = sv->world->servers;
        ck->want = pd_calloc((size_t)W, sizeof *ck->want);
        ck->extra = pd_calloc((size_t)W, sizeof *ck->extra);
        ck->later = pd_calloc((size_t)W, sizeof *ck->later);
        ck->later_size = pd_calloc((size_t)W, sizeof *ck->later_size);
        if (!ck->want || !ck->extra || !ck->later || !ck->later_size)
            return PD_ENOMEM;
        if (sv->world->index > 0) {
            if (!(ck->marker = pd_malloc((size_t)W * sizeof *ck->marker)))
                return PD_ENOMEM;
            for (int w = 0; w < W; w++)
                ck->marker[w] = -1;
        } else if (S > 1) {
            ck->idreq = pd_malloc((size_t)S * sizeof *ck->idreq);
            ck->idbuf = pd_calloc((size_t)S, ID_BYTES);
            if (!ck->idreq || !ck->idbuf)
                return PD_ENOMEM;
            for (int s = 0; s < S; s++)
                ck->idreq[s] = MPI_REQUEST_NULL;
        }
    }
    if (!opts->resume)
        return PD_OK;

    char *dir = ck->resume_dir;
    PD_TRY(pd_ckpt_dir(opts->resume_dir, dir, sizeof ck->resume_dir));
    /* Every server reads the same files and so picks the same set; server 0
     * alone says which damaged ones it skipped. */
    FILE *quiet = sv->world->index == 0 ? NULL : fopen("/dev/null", "w");
    pd_ckpt_part *p = &ck->part;
    int err = pd_ckpt_find(dir, (uint32_t)sv->world->index, ck->layout_hash, ck->config_hash,
                           quiet, p);
    if (quiet)
        fclose(quiet);
    PD_TRY(err);
    ck->resumed = true;
    size_t nw = sv->world->index == 0 ? (size_t)W : 0;
    if (p->nparts != (uint32_t)sv->world->servers || p->lo != sv->lo || p->hi != sv->hi ||
        p->niters != nw || p->nwstates != nw || p->nworkers != (size_t)W)
        return PD_FAIL(PD_EINPUT, "%s/ckpt-%012" PRIu64 ".%d.pdck: META: part %u of %u over [%"
                       PRIu64 ", %" PRIu64 ") with %zu worker states; this run's server %d of %d "
                       "owns [%zu, %zu) of %d workers", dir, p->updates, sv->world->index,
                       p->part, p->nparts, p->lo, p->hi, p->nwstates, sv->world->index,
                       sv->world->servers, sv->lo, sv->hi, W);
    PD_TRY(pd_optim_load(sv->opt, p->optim, p->optim_size));
    memcpy(sv->theta + sv->lo, p->params, (sv->hi - sv->lo) * sizeof *sv->theta);
    atomic_store(&sv->version, (int64_t)p->version);
    atomic_store(&sv->applied, p->applied);
    atomic_store(&sv->bad, p->bad);
    atomic_store(&sv->examples, (int64_t)p->examples);
    atomic_store(&sv->dropped[PD_DROP_STALE], p->dropped_stale);
    atomic_store(&sv->dropped[PD_DROP_LATE], p->dropped_late);
    atomic_store(&sv->dropped[PD_DROP_AT_STOP], p->dropped_at_stop);
    atomic_store(&sv->stale_sum, p->stale_sum);
    atomic_store(&sv->stale_max, p->stale_max);
    atomic_store(&sv->applied_mix, p->applied_mix);
    for (size_t h = 0; h < p->nstale && h < STALE_HIST; h++)
        atomic_store(&sv->stale_hist[h], p->stale[h]);
    for (int w = 0; w < W; w++) {
        sv->peers[w].applied = p->worker[w].applied;
        sv->peers[w].dropped = p->worker[w].dropped;
        if (nw)
            sv->peers[w].stale_sum = p->wstate[w].stale_sum;
    }
    for (size_t w = 0; w < nw; w++) {
        PD_TRY(pd_worker_state_build(p->iter[w], p->iter_size[w], &p->wstate[w],
                                     &ck->state[w], &ck->state_size[w]));
        sv->peers[w].seq0 = p->wstate[w].seq;
    }
    if (nw)
        PD_TRY(resume_lost(sv, p));
    if (sv->world->index == 0 && cfg->training.trace) {
        /* The trace continues the resumed run's: find it before anything
         * is written. */
        if (!p->traced)
            return PD_FAIL(PD_EINPUT, "%s/ckpt-%012" PRIu64 ".0.pdck: TRCE: no trace position "
                           "(the run resumed was not traced; a run is traced from its start: "
                           "training.trace false)", dir, p->updates);
        PD_TRY(pd_trace_find(opts->resume_dir, W, p->trace_records, p->trace_hash,
                             &ck->trace_recs, ck->trace_from, sizeof ck->trace_from));
    }
    ck->written = (int64_t)p->version;
    ck->resume_eval = p->last_eval;
    if (sv->world->index == 0)
        PD_TRY(pd_ckpt_rows_read(opts->resume_dir, p->last_eval, &ck->rows, &ck->nrows));
    return PD_OK;
}

int server_ckpt_trace_open(server *sv)
{
    server_ckpt *ck = &sv->ck;
    const pd_config *cfg = sv->cfg;
    int W = sv->world->workers;
    sv->trace_hash = PD_TRACE_HASH0;
    if (!cfg->training.trace)
        return PD_OK;
    if (!ck->resumed)
        return pd_trace_open(cfg->run.out_dir, W, &sv->trace);
    const pd_ckpt_part *p = &ck->part;
    PD_TRY(pd_trace_restart(cfg->run.out_dir, W, ck->trace_recs, p->trace_records,
                            ck->trace_from, &sv->trace));
    int64_t *count = pd_calloc((size_t)W, sizeof *count);
    if (!count)
        return PD_ENOMEM;
    for (uint64_t i = 0; i < p->trace_records; i++)
        if (ck->trace_recs[i].worker < (uint32_t)W)
            count[ck->trace_recs[i].worker]++;
    sv->trace_n = p->trace_records;
    sv->trace_hash = p->trace_hash;
    /* A worker's gradients after its last record are the ones the
     * checkpoint counts as dropped at the stop: so does the trace. */
    int err = PD_OK;
    for (int w = 0; w < W && err == PD_OK; w++)
        for (int64_t q = count[w]; q < sv->peers[w].seq0 && err == PD_OK; q++) {
            pd_trace_rec r = {.worker = (uint32_t)w, .outcome = PD_TRACE_DROPPED, .seq = q,
                              .from = (int64_t)p->version, .made = -1};
            err = server_trace(sv, &r);
        }
    free(count);
    return err;
}

int server_ckpt_resume_eval(server *sv)
{
    server_ckpt *ck = &sv->ck;
    if (!ck->resumed || sv->world->index != 0)
        return PD_OK;
    PD_TRY(pd_ckpt_rows_write(sv->cfg->run.out_dir, ck->rows, ck->nrows));
    return pd_ckpt_resume_eval(sv->ev, &ck->part, ck->resume_dir);
}

/* --resume, server 0: worker w's message, its state followed by i64 the
 * minibatches to skip past its iterator (those of a worker lost at the
 * checkpoint, after its saved state: resume_lost; 0 for the others), in
 * ck->state[w]'s buffer (which keeps its state's size). */
static int resume_message(server *sv, int w, unsigned char **buf, size_t *size)
{
    server_ckpt *ck = &sv->ck;
    const unsigned char *iter;
    size_t isz;
    pd_ckpt_wstate ws;
    PD_TRY(pd_worker_state_split(ck->state[w], ck->state_size[w], &iter, &isz, &ws));
    unsigned char *b = realloc(ck->state[w], ck->state_size[w] + 8);
    if (!b)
        return PD_ENOMEM;
    ck->state[w] = b;
    pd_le_put64(b + ck->state_size[w], (uint64_t)(sv->peers[w].seq0 - ws.seq));
    *buf = b;
    *size = ck->state_size[w] + 8;
    return PD_OK;
}

int server_ckpt_start(server *sv)
{
    server_ckpt *ck = &sv->ck;
    if (!ck->resumed || sv->world->index != 0)
        return PD_OK;
    int W = sv->world->workers;
    MPI_Request *r = pd_malloc((size_t)W * sizeof *r);
    if (!r)
        return PD_ENOMEM;
    int err = PD_OK;
    for (int w = 0; w < W; w++) {
        unsigned char *b = NULL;
        size_t n = 0;
        err = resume_message(sv, w, &b, &n);
        int rc = err == PD_OK ? MPI_Isend(b, (int)n, MPI_BYTE, pd_worker_rank(sv->world, w),
                                          PD_TAG_CKPT, MPI_COMM_WORLD, &r[w])
                              : MPI_SUCCESS;
        if (err != PD_OK || rc != MPI_SUCCESS) {
            if (err == PD_OK)
                err = pd_mpi_fail(rc, "MPI_Isend", __FILE__, __LINE__, __func__);
            for (int k = 0; k < w; k++)
                pd_comm_wait(&r[k], NULL);
            break;
        }
    }
    if (err == PD_OK)
        err = pd_comm_waitall(W, r);
    free(r);
    return err;
}

void server_ckpt_eval_cadence(server *sv, int64_t every)
{
    if (!sv->ck.resumed || every <= 0)
        return;
    /* The evaluation after the checkpoint's last (async: at the checkpoint's
     * own update when it came after the snapshot). */
    int64_t last = sv->ck.resume_eval;
    sv->next_eval = last < 0 ? 0 : (last / every + 1) * every;
    sv->last_eval_update = sv->ck.resume_eval;
    sv->last_eval_t = pd_now();
}

void server_ckpt_round_due(server *sv)
{
    server_ckpt *ck = &sv->ck;
    bool stop = false, req = pd_ckpt_take_request(&stop);
    if (stop)
        atomic_store(&sv->stopping, true);
    int64_t t = atomic_load(&sv->version);
    bool due = req || (ck->on && (pd_ckpt_due(sv->cfg, t, ck->last_t) ||
                                  atomic_load(&sv->stopping)));
    sv->reply_flags = due && ck->written != t ? PD_FLAG_CKPT : 0;
}

/* This server's state now, as a part of version v without worker states:
 * parameters (copied with `copy`, else borrowed from theta), optimizer,
 * counters and, on server 0, the evaluator's state (after its pending
 * evaluation). Free with snap_free. */
static int take_snapshot(server *sv, bool copy, int64_t v, ckpt_snap *sn)
{
    server_ckpt *ck = &sv->ck;
    int W = sv->world->workers;
    size_t range = sv->hi - sv->lo;
    pd_ckpt_part *p = &sn->part;
    memset(sn, 0, sizeof *sn);
    sn->copied = copy;
    p->optim_size = pd_optim_state_size(sv->opt);
    p->optim = pd_malloc(p->optim_size + 1);
    p->stale = pd_calloc(STALE_HIST, sizeof *p->stale);
    p->worker = pd_calloc((size_t)W + 1, sizeof *p->worker);
    sn->stale_sum = pd_calloc((size_t)W + 1, sizeof *sn->stale_sum);
    p->params = copy ? pd_malloc(range * sizeof *p->params + 1) : sv->theta + sv->lo;
    sn->lost_in = pd_calloc((size_t)W + 1, sizeof *sn->lost_in);
    if (!p->optim || !p->stale || !p->worker || !sn->stale_sum || !p->params || !sn->lost_in)
        return PD_ENOMEM;
    /* The workers lost by now (their entries and flags together, lost.c). */
    pthread_mutex_lock(&sv->mu);
    sn->nlost = atomic_load(&sv->n_lost);
    for (int w = 0; w < W; w++)
        sn->lost_in[w] = sv->peers[w].lost;
    pthread_mutex_unlock(&sv->mu);
    if (copy)
        memcpy(p->params, sv->theta + sv->lo, range * sizeof *p->params);
    PD_TRY(pd_optim_save(sv->opt, p->optim, p->optim_size));
    for (int w = 0; w < W; w++) {
        p->worker[w] = (pd_ckpt_worker){0, sv->peers[w].applied, sv->peers[w].dropped, 0};
        sn->stale_sum[w] = sv->peers[w].stale_sum;
    }
    p->nworkers = (size_t)W;
    for (size_t h = 0; h < STALE_HIST; h++)
        p->stale[h] = atomic_load(&sv->stale_hist[h]);
    p->nstale = STALE_HIST;
    bool hold = sv->world->index == 0 && sv->quiesce;   /* no other hogwild thread */
    if (hold)                                           /* evaluates meanwhile */
        pthread_mutex_lock(&sv->drive_mu);
    if (sv->world->index == 0 && sv->et)
        (void)pd_eval_thread_acquire(sv->et);   /* its pending evaluation is done */
    *p = (pd_ckpt_part){
        .part = (uint32_t)sv->world->index, .nparts = (uint32_t)sv->world->servers,
        .layout_hash = ck->layout_hash, .config_hash = ck->config_hash,
        .optim_kind = (uint32_t)sv->cfg->optimizer.name, .updates = (uint64_t)v,
        .version = (uint64_t)v, .lo = sv->lo, .hi = sv->hi,
        .examples = (uint64_t)atomic_load(&sv->examples), .params = p->params,
        .optim = p->optim, .optim_size = p->optim_size, .applied = atomic_load(&sv->applied),
        .bad = atomic_load(&sv->bad), .nstale = STALE_HIST, .stale = p->stale,
        .nworkers = (size_t)W, .worker = p->worker,
        .dropped_stale = atomic_load(&sv->dropped[PD_DROP_STALE]),
        .dropped_late = atomic_load(&sv->dropped[PD_DROP_LATE]),
        .dropped_at_stop = atomic_load(&sv->dropped[PD_DROP_AT_STOP]),
        .stale_sum = atomic_load(&sv->stale_sum), .stale_max = atomic_load(&sv->stale_max),
        .applied_mix = atomic_load(&sv->applied_mix),
    };
    pd_ckpt_eval_put(sv->world->index == 0 ? sv->ev : NULL, p);
    if (hold)
        pthread_mutex_unlock(&sv->drive_mu);
    const float *best = p->best;   /* the evaluator's: the snapshot keeps a copy */
    p->best = NULL;
    if (sv->trace) {   /* server 0, traced: its records so far */
        p->traced = true;
        p->trace_records = sv->trace_n;
        p->trace_hash = sv->trace_hash;
    }
    if (p->nbest) {
        if (!(p->best = pd_malloc(p->nbest * sizeof *p->best)))
            return PD_ENOMEM;
        memcpy(p->best, best, p->nbest * sizeof *p->best);
    }
    return PD_OK;
}

static void snap_free(ckpt_snap *sn)
{
    pd_ckpt_part *p = &sn->part;
    free(p->optim);
    free(p->stale);
    free(p->worker);
    free(p->best);
    if (sn->copied)
        free(p->params);
    free(sn->stale_sum);
    free(sn->lost_in);
    memset(sn, 0, sizeof *sn);
}

/* Server 0: the LOST entries of snapshot sn into its part (every worker
 * lost before it, and one lost while it waited for its state), and
 * sent[w] of each worker lost in it: its requests as of its loss. */
static int lost_entries(server *sv, ckpt_snap *sn, int64_t *sent)
{
    pd_ckpt_part *p = &sn->part;
    pthread_mutex_lock(&sv->mu);
    size_t n = atomic_load(&sv->n_lost);
    p->lost = pd_calloc(n + 1, sizeof *p->lost);
    p->nlost = 0;
    for (size_t i = 0; p->lost && i < n; i++) {
        const pd_lost_worker *e = &sv->lost[i];
        bool latest = true;
        for (size_t j = i + 1; j < n; j++)
            latest = latest && sv->lost[j].worker != e->worker;
        if (i >= sn->nlost && !(sn->lost_in[e->worker] && latest))
            continue;   /* lost after its state for this one came */
        p->lost[p->nlost++] = (pd_ckpt_lost){
            .worker = (uint32_t)e->worker, .rank = (uint32_t)e->rank,
            .last_update = e->last_update, .update = e->update, .wall_s = e->wall_s,
            .sent = sv->lost_sent[i], .rejoined = e->rejoined};
        if (e->rejoined < 0 && latest)
            sent[e->worker] = sv->lost_sent[i];
    }
    pthread_mutex_unlock(&sv->mu);
    return p->lost ? PD_OK : PD_ENOMEM;
}

/* Write the snapshot as this server's part; server 0's carries every
 * worker's state, and a worker's gradient that arrived after the snapshot
 * (extra[w], async) counts as dropped at the stop: its minibatch is behind
 * the worker's state, its update not in the parameters. *id gets the
 * part's size and crc32. */
static int write_snapshot(server *sv, ckpt_snap *sn, pd_ckpt_id *id)
{
    server_ckpt *ck = &sv->ck;
    int W = sv->world->workers;
    size_t nw = sv->world->index == 0 ? (size_t)W : 0;
    if (mkdir(ck->dir, 0755) != 0 && errno != EEXIST)
        return PD_FAIL(PD_EIO, "%s: mkdir: %s", ck->dir, strerror(errno));
    PD_TRY(pd_trace_sync(sv->trace));   /* the records the part names are on disk */
    const unsigned char **iter = pd_calloc(nw + 1, sizeof *iter);
    size_t *isz = pd_calloc(nw + 1, sizeof *isz);
    pd_ckpt_wstate *ws = pd_calloc(nw + 1, sizeof *ws);
    int64_t *sent = pd_calloc(nw + 1, sizeof *sent);
    int err = PD_OK;
    if (!iter || !isz || !ws || !sent) {
        err = PD_ENOMEM;
        goto out;
    }
    pd_ckpt_part *p = &sn->part;
    p->sent = 0;
    for (int w = 0; ck->extra && w < W; w++) {
        p->worker[w].dropped += ck->extra[w];
        p->dropped_at_stop += ck->extra[w];
    }
    if (nw)
        PD_TRY_GOTO(err, lost_entries(sv, sn, sent), out);
    for (size_t w = 0; w < nw; w++) {
        /* A worker lost in it: the last state it sent (none before the
         * first checkpoint it was in: a fresh iterator), its requests as of
         * its loss (LOST in paramd/ckpt.h). */
        if (!ck->state[w] && !sn->lost_in[w]) {
            err = PD_FAIL(PD_ETRAIN, "checkpoint at update %llu: no state of worker %zu",
                          (unsigned long long)p->updates, w);
            goto out;
        }
        if (ck->state[w])
            PD_TRY_GOTO(err, pd_worker_state_split(ck->state[w], ck->state_size[w], &iter[w],
                                                   &isz[w], &ws[w]), out);
        ws[w].stale_sum = sn->stale_sum[w];
        p->worker[w].sent = sn->lost_in[w] ? sent[w] : ws[w].seq;
        p->sent += p->worker[w].sent;
    }
    p->dropped = p->dropped_stale + p->dropped_late + p->dropped_at_stop;
    p->niters = nw;
    p->iter = (unsigned char **)iter;
    p->iter_size = isz;
    p->nwstates = nw;
    p->wstate = ws;
    err = pd_ckpt_write_part(ck->dir, p, id);
    p->iter = NULL;
    p->iter_size = NULL;
    p->wstate = NULL;
    p->niters = p->nwstates = 0;
    if (err == PD_OK)
        ck->written = (int64_t)p->updates;
out:
    free(sn->part.lost);
    sn->part.lost = NULL;
    sn->part.nlost = 0;
    free(sent);
    free(ws);
    free(isz);
    free(iter);
    return err;
}

/* A live part: snapshot and write at once (rounds, the end). */
static int write_part(server *sv, pd_ckpt_id *id)
{
    ckpt_snap sn;
    int err = take_snapshot(sv, false, atomic_load(&sv->version), &sn);
    if (err == PD_OK)
        err = write_snapshot(sv, &sn, id);
    snap_free(&sn);
    return err;
}

/* Server 0: worker w's state (PD_TAG_CKPT), which it sends as soon as our
 * flagged reply is in. Under a worker timeout, a worker that dies before it
 * has sent it is lost instead (*b NULL; server_ckpt_on_lost). */
static int recv_state(server *sv, int w, unsigned char **b, size_t *n)
{
    int src = pd_worker_rank(sv->world, w);
    *b = NULL;
    if (sv->worker_timeout <= 0)
        return pd_comm_recv_bytes(src, PD_TAG_CKPT, b, n);
    bool expired;
    PD_TRY(pd_comm_recv_bytes_until(src, PD_TAG_CKPT, pd_now() + sv->worker_timeout, b, n,
                                    &expired));
    return expired ? server_lose_worker(sv, w, "its checkpoint state did not come") : PD_OK;
}

/* Backup workers: a worker that was not in the round just closed is
 * computing a gradient of an older version. Server 0 waits for it (and
 * for nothing else, so the parameters stay at this version), drops it as
 * late, as it would without a checkpoint, and its reply asks for the
 * worker's state, which then holds that gradient as sent and its
 * minibatch as consumed. (A worker whose HELLO has not come yet is
 * answered with the flag too; one that has finished sent its state with
 * FINAL.) */
static int await_late(server *sv)
{
    for (int w = 0; w < sv->world->workers; w++) {
        peer *p = &sv->peers[w];
        while (p->active && !p->ckpt && !p->lost)
            PD_TRY(server_serve_worker(sv, w));
    }
    return PD_OK;
}

int server_ckpt_round_write(server *sv)
{
    server_ckpt *ck = &sv->ck;
    int W = sv->world->workers, S = sv->world->servers;
    if (!sv->reply_flags)
        return PD_OK;
    double t0 = pd_now();
    if (sv->cfg->training.backup_workers > 0)
        PD_TRY(await_late(sv));
    sv->reply_flags = 0;
    for (int w = 0; w < W; w++) {
        peer *p = &sv->peers[w];
        bool flagged = p->ckpt && !p->lost;
        p->ckpt = false;
        unsigned char *b = NULL;
        size_t n = 0;
        if (flagged)
            PD_TRY(recv_state(sv, w, &b, &n));
        if (b)   /* (a worker lost keeps the last state it sent) */
            put_state(sv, w, b, n);
    }
    pd_ckpt_id *ids = pd_calloc((size_t)S, sizeof *ids);
    if (!ids)
        return PD_ENOMEM;
    int64_t v = atomic_load(&sv->version);
    int err = write_part(sv, &ids[0]);
    for (int s = 1; s < S && err == PD_OK; s++) {
        unsigned char *b = NULL;
        size_t n = 0;
        err = pd_comm_recv_bytes(pd_server_rank(s), PD_TAG_CKPT + 1, &b, &n);
        if (err == PD_OK && (n != ID_BYTES || pd_le_get64(b) != (uint64_t)v))
            err = PD_FAIL(PD_EMPI, "server %d wrote its part of checkpoint %lld, expected %lld",
                          s, n == ID_BYTES ? (long long)pd_le_get64(b) : -1LL, (long long)v);
        if (err == PD_OK)
            ids[s] = (pd_ckpt_id){pd_le_get64(b + 8), pd_le_get32(b + 16)};
        free(b);
    }
    if (err == PD_OK && sv->carry)
        err = server_phase_record(sv, v);
    if (err == PD_OK)
        err = pd_ckpt_write_manifest(ck->dir, (uint64_t)v, (uint32_t)S, ids);
    if (err == PD_OK)
        err = pd_ckpt_prune(ck->dir, sv->cfg->checkpoint.keep);
    if (err == PD_OK && sv->carry)
        pd_phase_record_prune(ck->dir);
    free(ids);
    PD_TRY(err);
    ck->last_t = pd_now();
    pd_evaluator_note_pause(sv->ev, ck->last_t - t0);
    return PD_OK;
}

/* ---- async -------------------------------------------------------------------- */

/* A server s > 0's checkpoint bookkeeping is under ck_mu when hogwild
 * threads share it (one serving thread: no lock). */
static void follower_lock(server *sv)
{
    if (mode_of(sv)->threads)
        pthread_mutex_lock(&sv->ck_mu);
}

static void follower_unlock(server *sv)
{
    if (mode_of(sv)->threads)
        pthread_mutex_unlock(&sv->ck_mu);
}

/* Send server 0 the id of this server's part of version v. */
static int report_id(int64_t v, const pd_ckpt_id *id)
{
    unsigned char b[ID_BYTES] = {0};
    pd_le_put64(b, (uint64_t)v);
    pd_le_put64(b + 8, id->size);
    pd_le_put32(b + 16, id->crc);
    MPI_Request r;
    PD_MPI(MPI_Isend(b, ID_BYTES, MPI_BYTE, pd_server_rank(0), PD_TAG_CKPT + 1, MPI_COMM_WORLD,
                     &r));
    return pd_comm_wait(&r, NULL);
}

/* Server s > 0: write the part of version v and send server 0 its id. */
static int write_and_report(server *sv, int64_t v)
{
    pd_ckpt_id id;
    PD_TRY(write_part(sv, &id));
    return report_id(v, &id);
}

/* Server 0: the manifest of the snapshot whose part 0 is written, once
 * every other part's id is in (block: wait for them; else only if they
 * are), then pruning; the checkpoint is done. */
static int async_manifest(server *sv, bool block)
{
    server_ckpt *ck = &sv->ck;
    int S = sv->world->servers;
    if (!ck->ids_wait)
        return PD_OK;
    double t0 = pd_now();
    if (S > 1 && block) {
        PD_TRY(pd_comm_waitall(S - 1, ck->idreq + 1));
    } else if (S > 1) {
        int done = 0;
        PD_MPI(MPI_Testall(S - 1, ck->idreq + 1, &done, MPI_STATUSES_IGNORE));
        if (!done)
            return PD_OK;
    }
    pd_ckpt_id *ids = pd_calloc((size_t)S, sizeof *ids);
    if (!ids)
        return PD_ENOMEM;
    ids[0] = ck->id0;
    int err = PD_OK;
    for (int s = 1; s < S && err == PD_OK; s++) {
        const unsigned char *b = ck->idbuf + (size_t)s * ID_BYTES;
        if (pd_le_get64(b) != (uint64_t)ck->cut)
            err = PD_FAIL(PD_EMPI, "server %d wrote its part of checkpoint %lld, expected %lld",
                          s, (long long)pd_le_get64(b), (long long)ck->cut);
        ids[s] = (pd_ckpt_id){pd_le_get64(b + 8), pd_le_get32(b + 16)};
    }
    if (err == PD_OK && sv->carry)
        err = server_phase_record(sv, ck->cut);
    if (err == PD_OK)
        err = pd_ckpt_write_manifest(ck->dir, (uint64_t)ck->cut, (uint32_t)S, ids);
    if (err == PD_OK)
        err = pd_ckpt_prune(ck->dir, sv->cfg->checkpoint.keep);
    if (err == PD_OK && sv->carry)
        pd_phase_record_prune(ck->dir);
    free(ids);
    ck->ids_wait = false;
    ck->pending = false;
    PD_TRY(err);
    ck->last_t = pd_now();
    /* Waiting for the other parts is not a pause: serving went on. */
    pd_evaluator_note_pause(sv->ev, ck->pause_acc + (block ? 0 : ck->last_t - t0));
    ck->pause_acc = 0;
    return PD_OK;
}

/* Server 0: worker w's state from b (taken), under ck_mu (hogwild threads
 * replace states while another may write them). */
static void put_state(server *sv, int w, unsigned char *b, size_t n)
{
    free(sv->ck.state[w]);
    sv->ck.state[w] = b;
    sv->ck.state_size[w] = n;
}

/* Every awaited state (server 0) or CKPT header (the others) is in: write
 * the snapshot as this server's part; server 0 then writes the manifest
 * once the other parts' ids are in, the others send it theirs. */
static int async_write(server *sv)
{
    server_ckpt *ck = &sv->ck;
    double t0 = pd_now();
    pd_ckpt_id id;
    int err = write_snapshot(sv, &ck->snap, &id);
    snap_free(&ck->snap);
    memset(ck->extra, 0, (size_t)sv->world->workers * sizeof *ck->extra);   /* this one's */
    for (int w = 0; w < sv->world->workers; w++)
        if (ck->later[w]) {   /* the FINAL states kept aside for this one */
            put_state(sv, w, ck->later[w], ck->later_size[w]);
            ck->later[w] = NULL;
        }
    if (sv->world->index > 0) {
        ck->pending = false;
        PD_TRY(err);
        PD_TRY(report_id(ck->snapped, &id));
        if (!ck->final_deferred)
            return PD_OK;
        ck->final_deferred = false;   /* server 0 waits for the final SNAP */
        return server_answer_snap(sv);
    }
    if (err != PD_OK) {
        ck->pending = false;
        return err;
    }
    ck->id0 = id;
    ck->ids_wait = true;
    ck->pause_acc += pd_now() - t0;
    return async_manifest(sv, false);
}

/* Server s > 0: what follows the decision on worker w's gradient (model),
 * kept back for the snapshot. */
static int conclude(server *sv, int w)
{
    return mode_of(sv)->elastic ? server_conclude_easgd(sv, w) : server_conclude_async(sv, w);
}

/* Server s > 0: take the snapshot of server 0's cut (every decision before
 * it is concluded here, none after), then conclude the gradients kept
 * back for it: each counts as come after it. */
static int follower_snap(server *sv)
{
    server_ckpt *ck = &sv->ck;
    int W = sv->world->workers;
    PD_TRY(take_snapshot(sv, true, ck->cut_next, &ck->snap));
    ck->snapped = ck->cut_next;
    ck->pending = true;
    ck->nwant = 0;
    for (int k = 0; k < W; k++) {
        ck->want[k] = sv->peers[k].active && !sv->peers[k].fin && ck->marker[k] != ck->snapped;
        ck->extra[k] = 0;
        ck->nwant += ck->want[k];
    }
    bool threads = mode_of(sv)->threads;
    for (int k = 0; k < W && ck->nstashed > 0; k++) {
        if (!sv->peers[k].stashed || atomic_load(&sv->peers[k].released))
            continue;
        if (threads) {   /* its own serving thread concludes it (server_ckpt_released) */
            atomic_store(&sv->peers[k].released, true);
            continue;
        }
        sv->peers[k].stashed = false;
        ck->nstashed--;
        PD_TRY(conclude(sv, k));
    }
    return ck->pending && ck->nwant == 0 ? async_write(sv) : PD_OK;
}

int server_ckpt_released(server *sv, int first, int stride, bool *held)
{
    *held = false;
    if (!sv->ck.marker || !mode_of(sv)->threads)
        return PD_OK;
    for (int w = first; w < sv->world->workers; w += stride) {
        peer *p = &sv->peers[w];
        if (!atomic_load(&p->released)) {
            *held |= p->stashed;   /* (only this thread stashes its workers) */
            continue;
        }
        atomic_store(&p->released, false);
        pthread_mutex_lock(&sv->ck_mu);
        p->stashed = false;
        sv->ck.nstashed--;
        pthread_mutex_unlock(&sv->ck_mu);
        PD_TRY(conclude(sv, w));
    }
    return PD_OK;
}

int server_ckpt_follow(server *sv, int w, bool *stash)
{
    server_ckpt *ck = &sv->ck;
    const pd_decision *d = &sv->peers[w].dec;
    *stash = false;
    if (!ck->marker)
        return PD_OK;
    follower_lock(sv);
    int err = PD_OK;
    if (d->cut > ck->snapped) {   /* after server 0's latest snapshot, not taken here yet */
        ck->cut_next = d->cut;
        ck->cut_need = d->before;
        if (ck->decided == ck->cut_need) {
            err = follower_snap(sv);
        } else {
            sv->peers[w].stashed = true;
            ck->nstashed++;
            *stash = true;
        }
    }
    follower_unlock(sv);
    return err;
}

/* Server s > 0: a gradient concluded. With hogwild threads a gradient
 * decided before the cut is applied whole before it is counted here, and
 * one decided after it is stashed before it is applied, so when the count
 * reaches the cut's no thread is applying one: the snapshot needs no
 * other lock. */
static int follower_grad(server *sv, int w)
{
    server_ckpt *ck = &sv->ck;
    follower_lock(sv);
    int err = PD_OK;
    ck->decided++;
    if (ck->pending)
        ck->extra[w] += ck->want[w];   /* before its CKPT header, after the snapshot */
    else if (ck->cut_next > ck->snapped && ck->decided == ck->cut_need)
        err = follower_snap(sv);
    follower_unlock(sv);
    return err;
}

/* Async and easgd: take a pending request (a stop only stops: the end's
 * checkpoint follows) and, when a checkpoint of version v is due, snapshot
 * this server and want every active worker's state (with S > 1 the
 * decisions from now on name it, and the other parts' ids are awaited).
 * *started says so. */
static int maybe_snapshot(server *sv, int64_t v, bool *started)
{
    server_ckpt *ck = &sv->ck;
    int S = sv->world->servers;
    *started = false;
    bool stop = false, req = pd_ckpt_take_request(&stop);
    if (stop)
        atomic_store(&sv->stopping, true);
    bool due = req || (ck->on && pd_ckpt_due(sv->cfg, v, ck->last_t));
    if (!due || ck->written == v || atomic_load(&sv->stopping))
        return PD_OK;
    double t0 = pd_now();
    if (sv->quiesce)   /* hogwild: every decided gradient applied, none half */
        pthread_rwlock_wrlock(&sv->apply_lock);
    int err = take_snapshot(sv, true, sv->quiesce ? atomic_load(&sv->version) : v, &ck->snap);
    /* Every decision from now on names this cut (hogwild: each is made
     * under the shared lock, so none is made between the copy and here). */
    if (err == PD_OK) {
        ck->cut = (int64_t)ck->snap.part.updates;
        ck->cut_before = atomic_load(&ck->decided);
    }
    if (sv->quiesce)
        pthread_rwlock_unlock(&sv->apply_lock);
    PD_TRY(err);
    ck->pending = true;
    ck->nwant = 0;
    pthread_mutex_lock(&sv->mu);   /* a worker lost meanwhile is in lost_in (lost.c) */
    for (int k = 0; k < sv->world->workers; k++) {
        ck->want[k] = sv->peers[k].active && !sv->peers[k].fin && !ck->snap.lost_in[k];
        ck->extra[k] = 0;
        ck->nwant += ck->want[k];
    }
    pthread_mutex_unlock(&sv->mu);
    for (int s = 1; s < S; s++)
        PD_MPI(MPI_Irecv(ck->idbuf + (size_t)s * ID_BYTES, ID_BYTES, MPI_BYTE,
                         pd_server_rank(s), PD_TAG_CKPT + 1, MPI_COMM_WORLD, &ck->idreq[s]));
    ck->pause_acc = pd_now() - t0;
    *started = true;
    return PD_OK;
}

/* Server 0: worker w's gradient is concluded (under ck_mu). */
static int leader_grad(server *sv, int w)
{
    server_ckpt *ck = &sv->ck;
    if (ck->ids_wait)
        PD_TRY(async_manifest(sv, false));
    if (ck->pending) {
        /* Decided after the snapshot (a hogwild thread may conclude a
         * gradient decided before it only now: that one is in it) and sent
         * before the worker's state. */
        ck->extra[w] += ck->want[w] && sv->peers[w].dec.cut == ck->cut;
        return PD_OK;
    }
    bool started;
    PD_TRY(maybe_snapshot(sv, atomic_load(&sv->version), &started));
    return started && ck->nwant == 0 ? async_write(sv) : PD_OK;
}

int server_ckpt_async_grad(server *sv, int w)
{
    if (!sv->ck.want)
        return PD_OK;
    if (sv->world->index > 0)
        return follower_grad(sv, w);
    pthread_mutex_lock(&sv->ck_mu);
    int err = leader_grad(sv, w);
    pthread_mutex_unlock(&sv->ck_mu);
    return err;
}

int server_ckpt_elastic_model(server *sv, int w)
{
    server_ckpt *ck = &sv->ck;
    if (!ck->want || sv->world->index > 0)
        return PD_OK;   /* (servers s > 0 follow server 0's cut: server_ckpt_follow) */
    if (ck->ids_wait)   /* S > 1: the previous one's manifest, once the other parts are in */
        PD_TRY(async_manifest(sv, false));
    int64_t v = atomic_load(&sv->version);
    bool started = false;
    if (!ck->pending && v > 0)   /* (none of version 0: the run's start) */
        PD_TRY(maybe_snapshot(sv, v, &started));
    ck->extra[w] += ck->pending ? ck->want[w] : 0;   /* this model is not in the snapshot */
    return PD_OK;
}

static bool wants(const server *sv, int w)
{
    return sv->world->index == 0 && sv->ck.want && sv->ck.pending && sv->ck.want[w];
}

bool server_ckpt_wants(server *sv, int w)
{
    if (sv->world->index != 0 || !sv->ck.want)
        return false;
    pthread_mutex_lock(&sv->ck_mu);
    bool yes = wants(sv, w);
    pthread_mutex_unlock(&sv->ck_mu);
    return yes;
}

/* Worker w's state (server 0) or CKPT header (the others) is in. */
static int async_got(server *sv, int w)
{
    server_ckpt *ck = &sv->ck;
    ck->want[w] = false;
    return --ck->nwant == 0 ? async_write(sv) : PD_OK;
}

int server_ckpt_async_reply(server *sv, int w)
{
    server_ckpt *ck = &sv->ck;
    double t0 = pd_now();
    sv->peers[w].ckpt = false;
    unsigned char *b;
    size_t n;
    PD_TRY(recv_state(sv, w, &b, &n));
    if (!b)
        return PD_OK;   /* lost: server_ckpt_on_lost took it off the list */
    pthread_mutex_lock(&sv->ck_mu);
    put_state(sv, w, b, n);
    ck->pause_acc += pd_now() - t0;
    int err = async_got(sv, w);
    pthread_mutex_unlock(&sv->ck_mu);
    return err;
}

int server_ckpt_on_lost(server *sv, int w)
{
    server_ckpt *ck = &sv->ck;
    if (!ck->want)
        return PD_OK;
    pthread_mutex_lock(&sv->ck_mu);
    int err = PD_OK;
    if (ck->pending && ck->want[w]) {
        if (sv->world->index == 0)   /* its state as of its loss, its gradients after
                                        the snapshot dropped at the stop (extra) */
            ck->snap.lost_in[w] = true;
        err = async_got(sv, w);
    }
    pthread_mutex_unlock(&sv->ck_mu);
    return err;
}

bool server_ckpt_defer_final(server *sv)
{
    follower_lock(sv);
    bool defer = sv->ck.pending;
    sv->ck.final_deferred |= defer;
    follower_unlock(sv);
    return defer;
}

int server_ckpt_final(server *sv)
{
    server_ckpt *ck = &sv->ck;
    int64_t v = atomic_load(&sv->version);
    if (ck->pending && (ck->nwant > 0 || ck->nstashed > 0))
        return PD_FAIL(PD_ETRAIN, "server %d: the checkpoint at update %lld still waits for %d "
                       "worker(s) at the end", sv->world->index, (long long)ck->cut, ck->nwant);
    if (sv->world->index == 0)
        PD_TRY(async_manifest(sv, true));
    if (!ck->on || ck->written == v)
        return PD_OK;
    if (sv->world->index > 0)
        return write_and_report(sv, v);
    for (int w = 0; w < sv->world->workers; w++)
        sv->peers[w].ckpt = false;   /* every state came with FINAL */
    sv->reply_flags = PD_FLAG_CKPT;
    return server_ckpt_round_write(sv);
}

int server_ckpt_stopped(const server *sv)
{
    const char *sig = pd_signals_name(pd_signals_stop());
    long long v = (long long)atomic_load(&sv->version);
    if (sv->ck.written != v)
        return PD_FAIL(PD_ESTOPPED, "stopped by %s after update %lld without a checkpoint "
                       "(training.mode %s writes one at a stop only where README, Checkpoints "
                       "and failures, says)", sig, v, pd_mode_name(sv->cfg->training.mode));
    return PD_FAIL(PD_ESTOPPED, "stopped by %s after update %lld; checkpoint "
                   "%s/ckpt-%012lld.manifest written (continue with --resume)", sig, v,
                   sv->ck.dir, v);
}

int server_ckpt_on_msg(server *sv, int w)
{
    server_ckpt *ck = &sv->ck;
    peer *p = &sv->peers[w];
    if (ck->marker) {   /* async: its gradients from now on come after the cut */
        follower_lock(sv);
        ck->marker[w] = p->in.version;
        int err = ck->pending && p->in.version == ck->snapped && ck->want[w] ? async_got(sv, w)
                                                                             : PD_OK;
        follower_unlock(sv);
        PD_TRY(err);
        return server_post_recv(sv, w);
    }
    int64_t want = p->in.version, v = atomic_load(&sv->version);
    if (want > ck->written) {
        if (want != v)
            return PD_FAIL(PD_EMPI, "server %d: worker %d asks for checkpoint %lld at version "
                           "%lld", sv->world->index, w, (long long)want, (long long)v);
        PD_TRY(write_and_report(sv, v));
    }
    return server_post_recv(sv, w);
}

int server_ckpt_on_final(server *sv, int w)
{
    server_ckpt *ck = &sv->ck;
    if (sv->world->index != 0) {
        follower_lock(sv);
        sv->peers[w].fin = true;
        int err = ck->want && ck->pending && ck->want[w] ? async_got(sv, w) : PD_OK;
        follower_unlock(sv);
        return err;
    }
    unsigned char *b;
    size_t n;
    PD_TRY(pd_comm_recv_bytes(pd_worker_rank(sv->world, w), PD_TAG_CKPT, &b, &n));
    pthread_mutex_lock(&sv->ck_mu);
    sv->peers[w].fin = true;
    int err = PD_OK;
    if (ck->want && ck->pending && !ck->ids_wait && !ck->want[w]) {
        /* The snapshot still waits for others and holds w's state of its
         * time: this later one must not take its place in it. */
        free(ck->later[w]);
        ck->later[w] = b;
        ck->later_size[w] = n;
    } else {
        put_state(sv, w, b, n);
        err = wants(sv, w) ? async_got(sv, w) : PD_OK;
    }
    pthread_mutex_unlock(&sv->ck_mu);
    return err;
}

void server_ckpt_free(server *sv)
{
    server_ckpt *ck = &sv->ck;
    for (int w = 0; ck->state && w < sv->world->workers; w++)
        free(ck->state[w]);
    free(ck->state);
    free(ck->state_size);
    for (int w = 0; ck->later && w < sv->world->workers; w++)
        free(ck->later[w]);
    free(ck->later);
    free(ck->later_size);
    free(ck->want);
    free(ck->extra);
    free(ck->marker);
    for (int s = 1; ck->idreq && s < sv->world->servers; s++)
        if (ck->idreq[s] != MPI_REQUEST_NULL && MPI_Cancel(&ck->idreq[s]) == MPI_SUCCESS)
            MPI_Wait(&ck->idreq[s], MPI_STATUS_IGNORE);
    free(ck->idreq);
    free(ck->idbuf);
    snap_free(&ck->snap);
    free(ck->rows);
    free(ck->trace_recs);
    pd_ckpt_part_free(&ck->part);
    memset(ck, 0, sizeof *ck);
}
