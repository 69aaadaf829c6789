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
#include "server_impl.h"

enum { ID_BYTES = 24 };   /* u64 version, u64 size, u32 crc32, u32 zero */

int server_ckpt_setup(server *sv, const pd_run_opts *opts)
{
    server_ckpt *ck = &sv->ck;
    const pd_config *cfg = sv->cfg;
    int W = sv->world->workers;
    ck->written = -1;
    ck->last_t = pd_now();
    ck->resume_eval = -1;
    ck->on = pd_ckpt_enabled(cfg, opts);
    PD_TRY(pd_ckpt_dir(cfg->run.out_dir, ck->dir, sizeof ck->dir));
    PD_TRY(pd_ckpt_hashes(sv->model, cfg, W, &ck->layout_hash, &ck->config_hash));
    if (sv->world->index == 0) {
        ck->state = pd_calloc((size_t)W, sizeof *ck->state);
        ck->state_size = pd_calloc((size_t)W, sizeof *ck->state_size);
        if (!ck->state || !ck->state_size)
            return PD_ENOMEM;
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
    for (size_t w = 0; w < nw; w++)
        PD_TRY(pd_worker_state_build(p->iter[w], p->iter_size[w], &p->wstate[w],
                                     &ck->state[w], &ck->state_size[w]));
    ck->written = (int64_t)p->version;
    ck->resume_eval = p->last_eval;
    if (sv->world->index == 0)
        PD_TRY(pd_ckpt_rows_read(opts->resume_dir, p->last_eval, &ck->rows, &ck->nrows));
    return PD_OK;
}

int server_ckpt_resume_eval(server *sv)
{
    server_ckpt *ck = &sv->ck;
    if (!ck->resumed || sv->world->index != 0)
        return PD_OK;
    PD_TRY(pd_ckpt_rows_write(sv->cfg->run.out_dir, ck->rows, ck->nrows));
    const pd_ckpt_part *p = &ck->part;
    char from[PD_PATH_MAX + 64];
    snprintf(from, sizeof from, "%s/ckpt-%012llu", ck->resume_dir, (unsigned long long)p->updates);
    pd_eval_state es = {
        .wall_s = p->wall_s, .pause_sum = p->pause_sum, .pause_max = p->pause_max,
        .pauses = p->pauses, .best_loss = p->best_loss, .best_update = p->best_update,
        .bad_evals = p->bad_evals, .last_eval = p->last_eval, .best = p->best,
        .nbest = p->nbest, .from = from, .from_update = (int64_t)p->updates,
    };
    return pd_evaluator_set_state(sv->ev, &es);
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
        int rc = MPI_Isend(ck->state[w], (int)ck->state_size[w], MPI_BYTE,
                           pd_worker_rank(sv->world, w), PD_TAG_CKPT, MPI_COMM_WORLD, &r[w]);
        if (rc != MPI_SUCCESS) {
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
    int64_t t = atomic_load(&sv->version);
    sv->next_eval = (t / every + 1) * every;
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

/* Write this server's part of the checkpoint at its version; *id gets its
 * size and crc32. Server 0's part carries the workers' states, the
 * evaluator's state (after its pending evaluation) and the pauses. */
static int write_part(server *sv, pd_ckpt_id *id)
{
    server_ckpt *ck = &sv->ck;
    int W = sv->world->workers;
    bool first = sv->world->index == 0;
    size_t nw = first ? (size_t)W : 0;
    if (mkdir(ck->dir, 0755) != 0 && errno != EEXIST)
        return PD_FAIL(PD_EIO, "%s: mkdir: %s", ck->dir, strerror(errno));
    size_t osz = pd_optim_state_size(sv->opt);
    unsigned char *ob = pd_malloc(osz + 1);
    const unsigned char **iter = pd_calloc(nw + 1, sizeof *iter);
    size_t *isz = pd_calloc(nw + 1, sizeof *isz);
    pd_ckpt_wstate *ws = pd_calloc(nw + 1, sizeof *ws);
    pd_ckpt_worker *cw = pd_calloc((size_t)W + 1, sizeof *cw);
    int64_t hist[STALE_HIST];
    int err = PD_OK;
    if (!ob || !iter || !isz || !ws || !cw) {
        err = PD_ENOMEM;
        goto out;
    }
    PD_TRY_GOTO(err, pd_optim_save(sv->opt, ob, osz), out);
    int64_t sent = 0;
    for (size_t w = 0; w < nw; w++) {
        if (!ck->state[w]) {
            err = PD_FAIL(PD_ETRAIN, "checkpoint at update %lld: no state of worker %zu",
                          (long long)atomic_load(&sv->version), w);
            goto out;
        }
        PD_TRY_GOTO(err, pd_worker_state_split(ck->state[w], ck->state_size[w], &iter[w],
                                               &isz[w], &ws[w]), out);
        ws[w].stale_sum = sv->peers[w].stale_sum;
        sent += ws[w].seq;
    }
    for (int w = 0; w < W; w++)
        cw[w] = (pd_ckpt_worker){nw ? ws[w].seq : 0, sv->peers[w].applied,
                                 sv->peers[w].dropped, 0};
    for (size_t h = 0; h < STALE_HIST; h++)
        hist[h] = atomic_load(&sv->stale_hist[h]);
    pd_eval_state es = {.best_loss = INFINITY, .best_update = -1, .last_eval = -1};
    if (first) {
        if (sv->et)
            (void)pd_eval_thread_acquire(sv->et);   /* its pending evaluation is done */
        pd_evaluator_get_state(sv->ev, &es);
    }
    int64_t v = atomic_load(&sv->version);
    pd_ckpt_part p = {
        .part = (uint32_t)sv->world->index, .nparts = (uint32_t)sv->world->servers,
        .layout_hash = ck->layout_hash, .config_hash = ck->config_hash,
        .optim_kind = (uint32_t)sv->cfg->optimizer.name, .updates = (uint64_t)v,
        .version = (uint64_t)v, .lo = sv->lo, .hi = sv->hi,
        .examples = (uint64_t)atomic_load(&sv->examples), .params = sv->theta + sv->lo,
        .optim = ob, .optim_size = osz, .niters = nw, .iter = (unsigned char **)iter,
        .iter_size = isz, .sent = sent, .applied = atomic_load(&sv->applied),
        .dropped = atomic_load(&sv->dropped[PD_DROP_STALE]) +
                   atomic_load(&sv->dropped[PD_DROP_LATE]) +
                   atomic_load(&sv->dropped[PD_DROP_AT_STOP]),
        .bad = atomic_load(&sv->bad), .nstale = STALE_HIST, .stale = hist,
        .nworkers = (size_t)W, .worker = cw, .wall_s = es.wall_s, .pause_sum = es.pause_sum,
        .pause_max = es.pause_max, .pauses = es.pauses,
        .dropped_stale = atomic_load(&sv->dropped[PD_DROP_STALE]),
        .dropped_late = atomic_load(&sv->dropped[PD_DROP_LATE]),
        .dropped_at_stop = atomic_load(&sv->dropped[PD_DROP_AT_STOP]),
        .stale_sum = atomic_load(&sv->stale_sum), .stale_max = atomic_load(&sv->stale_max),
        .applied_mix = atomic_load(&sv->applied_mix), .best_loss = es.best_loss,
        .best_update = es.best_update, .bad_evals = es.bad_evals, .last_eval = es.last_eval,
        .nbest = es.best_update >= 0 ? es.nbest : 0, .best = (float *)es.best,
        .nwstates = nw, .wstate = ws,
    };
    PD_TRY_GOTO(err, pd_ckpt_write_part(ck->dir, &p, id), out);
    ck->written = v;
out:
    free(cw);
    free(ws);
    free(isz);
    free(iter);
    free(ob);
    return err;
}

int server_ckpt_round_write(server *sv)
{
    server_ckpt *ck = &sv->ck;
    int W = sv->world->workers, S = sv->world->servers;
    if (!sv->reply_flags)
        return PD_OK;
    sv->reply_flags = 0;
    double t0 = pd_now();
    for (int w = 0; w < W; w++) {
        peer *p = &sv->peers[w];
        if (!p->ckpt)
            continue;
        p->ckpt = false;
        free(ck->state[w]);
        ck->state[w] = NULL;
        PD_TRY(pd_comm_recv_bytes(pd_worker_rank(sv->world, w), PD_TAG_CKPT, &ck->state[w],
                                  &ck->state_size[w]));
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
    if (err == PD_OK)
        err = pd_ckpt_write_manifest(ck->dir, (uint64_t)v, (uint32_t)S, ids);
    if (err == PD_OK)
        err = pd_ckpt_prune(ck->dir, sv->cfg->checkpoint.keep);
    free(ids);
    PD_TRY(err);
    ck->last_t = pd_now();
    pd_evaluator_note_pause(sv->ev, ck->last_t - t0);
    return PD_OK;
}

/* Server s > 0: write the part of version v and send server 0 its id. */
static int write_and_report(server *sv, int64_t v)
{
    pd_ckpt_id id;
    PD_TRY(write_part(sv, &id));
    unsigned char b[ID_BYTES] = {0};
    pd_le_put64(b, (uint64_t)v);
    pd_le_put64(b + 8, id.size);
    pd_le_put32(b + 16, id.crc);
    MPI_Request r;
    PD_MPI(MPI_Isend(b, ID_BYTES, MPI_BYTE, pd_server_rank(0), PD_TAG_CKPT + 1, MPI_COMM_WORLD,
                     &r));
    return pd_comm_wait(&r, NULL);
}

int server_ckpt_final(server *sv)
{
    server_ckpt *ck = &sv->ck;
    int64_t v = atomic_load(&sv->version);
    if (!ck->on || ck->written == v)
        return PD_OK;
    if (sv->world->index > 0)
        return write_and_report(sv, v);
    for (int w = 0; w < sv->world->workers; w++)
        sv->peers[w].ckpt = false;   /* every state came with FINAL */
    sv->reply_flags = PD_FLAG_CKPT;
    return server_ckpt_round_write(sv);
}

int server_ckpt_on_msg(server *sv, int w)
{
    server_ckpt *ck = &sv->ck;
    peer *p = &sv->peers[w];
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
    if (sv->world->index != 0)
        return PD_OK;
    free(ck->state[w]);
    ck->state[w] = NULL;
    return pd_comm_recv_bytes(pd_worker_rank(sv->world, w), PD_TAG_CKPT, &ck->state[w],
                              &ck->state_size[w]);
}

void server_ckpt_free(server *sv)
{
    server_ckpt *ck = &sv->ck;
    for (int w = 0; ck->state && w < sv->world->workers; w++)
        free(ck->state[w]);
    free(ck->state);
    free(ck->state_size);
    free(ck->rows);
    pd_ckpt_part_free(&ck->part);
    memset(ck, 0, sizeof *ck);
}
