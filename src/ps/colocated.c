/* Sync mode without server ranks (training.servers: 0): every rank is a
 * worker and also serves parameter range w of W (pd_server_range), so no
 * core is spent on a rank that only waits. A round is
 *   1. every rank computes its minibatch gradient at the shared point;
 *   2. the ranks exchange a small header each (loss, norm, batch size,
 *      whether they have a gradient; rank 0 adds stop and evaluate flags);
 *   3. reduce-scatter: each rank sends every other rank that rank's range of
 *      its gradient (vsgd: with its curvature and second moment, the three
 *      back to back, as a worker sends a server); each sums its range in
 *      ascending worker order with the
 *      same weights as a server's round (apply.c) and takes one optimizer
 *      step on it: the same bits as one dedicated server;
 *   4. all-gather: every rank gets every range of the next point.
 * Rank 0 also evaluates (server 0's evaluation thread) and writes the run
 * directory. Every rank sees every header, so every rank counts the same
 * gradients applied, bad or dropped, and stops at the same round. Waits
 * sleep (pd_comm_wait), as everywhere in ps. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "colocated.h"
#include "paramd/signals.h"
#include "evalthread.h"
#include "paramd/clones.h"
#include "server.h"

#define BLOCK 4096   /* floats summed and stepped in cache */

/* ---- rank 0: evaluation ---------------------------------------------------- */

static void progress(const coloc *c, pd_progress *pg)
{
    double epoch = 0;
    for (int w = 0; w < c->W; w++)
        epoch += c->hdr[w].epoch;
    *pg = (pd_progress){
        .update = c->version, .examples = c->examples, .epoch = epoch / c->W,
        .lr = pd_optim_lr(&c->cfg->optimizer, c->version + 1),
        .train_loss = c->loss_n ? c->loss_sum / (double)c->loss_n : NAN,
        .staleness_mean = 0, .staleness_max = 0, .dropped = c->dropped_at_stop,
    };
}

/* Collective: evaluate the current version. Rank 0 gets every range of
 * theta (with a lookahead the others hold only the point) and the round's
 * per-tensor gradient sums of squares (stepped: a step was taken). */
static int evaluate(coloc *c, bool stepped)
{
    size_t T = pd_model_ntensors(c->l.model);
    double part[PD_MAX_TENSORS] = {0}, *all = NULL;
    if (stepped)
        pd_model_tensor_sumsq_range(c->l.model, c->acc, c->lo, c->hi, part);
    MPI_Request r[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    if (c->me == 0 && !(all = pd_malloc((size_t)c->W * PD_MAX_TENSORS * sizeof *all)))
        return PD_ENOMEM;
    int err = PD_OK;
    int rc = MPI_Igather(part, PD_MAX_TENSORS, MPI_DOUBLE, all, PD_MAX_TENSORS, MPI_DOUBLE, 0,
                         MPI_COMM_WORLD, &r[0]);
    if (rc == MPI_SUCCESS && c->point != c->theta)
        rc = MPI_Igatherv(c->me == 0 ? MPI_IN_PLACE : c->theta + c->lo, c->counts[c->me],
                          MPI_FLOAT, c->theta, c->counts, c->displs, MPI_FLOAT, 0,
                          MPI_COMM_WORLD, &r[1]);
    if (rc != MPI_SUCCESS)
        err = pd_mpi_fail(rc, "MPI_Igather", __FILE__, __LINE__, __func__);
    if (err == PD_OK)
        err = pd_comm_waitall(2, r);
    if (err == PD_OK && c->me == 0) {
        pd_progress pg;
        progress(c, &pg);
        double norms[PD_MAX_TENSORS];
        for (size_t t = 0; t < T; t++) {
            double sq = 0;
            for (int w = 0; w < c->W; w++)   /* ascending: the same sum every run */
                sq += all[(size_t)w * PD_MAX_TENSORS + t];
            norms[t] = sqrt(sq);
        }
        pg.grad_norms = stepped ? norms : NULL;
        float *snap = pd_eval_thread_begin(c->et, c->cfg->training.eval_wait, &pg, &c->skips);
        if (snap) {   /* else skipped: the previous evaluation still runs */
            memcpy(snap, c->theta, c->n * sizeof *snap);
            pd_eval_thread_submit(c->et, &pg);
            c->loss_sum = 0;
            c->loss_n = 0;
        }
    }
    free(all);
    int64_t every = c->cfg->training.eval_every > 0 ? c->cfg->training.eval_every
                                                    : c->updates_per_epoch;
    c->next_eval = (c->version / every + 1) * every;
    c->last_eval_t = pd_now();
    c->last_eval_update = c->version;
    return err;
}

/* ---- a round ---------------------------------------------------------------- */

/* Weights as a server's round gives them (apply.c, weigh_round): each finite
 * gradient's share of the finite examples; the others counted bad. Fills
 * good[W]; the round's loss into *loss; returns how many are good. */
static int weigh(coloc *c, bool *good, double *loss)
{
    double total = 0;
    int ngood = 0;
    for (int w = 0; w < c->W; w++) {
        const round_hdr *h = &c->hdr[w];
        good[w] = h->has && isfinite(h->loss) && isfinite(h->norm);
        c->bad += h->has && !good[w];
        if (good[w]) {
            total += (double)h->examples;
            ngood++;
        }
    }
    *loss = 0;
    for (int w = 0; w < c->W; w++) {
        const round_hdr *h = &c->hdr[w];
        c->weight[w] = good[w] ? (float)((double)h->examples / total) : 0.0f;
        c->round_examples = total;
        if (good[w])
            *loss += (double)h->examples / total * h->loss;
    }
    return ngood;
}

/* acc[i0, i1) = sum of weight[w] g_w in ascending worker order (as
 * apply.c's sum_block: the same operations, the same bits), and with
 * vsgd's words 3 the same for h into acc + n and v into acc + 2n. in[w]
 * holds rank w's values of our range from index 0 (vsgd: g, h, v). */
PD_CLONES
static void sum_block(coloc *c, const bool *good, size_t i0, size_t i1)
{
    size_t m = i1 - i0, range = c->hi - c->lo;
    for (int k = 0; k < c->words; k++) {
        float *restrict acc = c->acc + (size_t)k * c->n + i0;
        const float *own = k == 0 ? c->l.grad : c->l.curv + (size_t)(k - 1) * c->n;
        bool first = true;
        for (int w = 0; w < c->W; w++) {
            if (!good[w])
                continue;
            const float a = c->weight[w];
            const float *restrict g = w == c->me ? own + i0
                                                 : c->in[w] + (size_t)k * range + (i0 - c->lo);
            if (first)
                for (size_t i = 0; i < m; i++)
                    acc[i] = a * g[i];
            else
                for (size_t i = 0; i < m; i++)
                    acc[i] += a * g[i];
            first = false;
        }
    }
}

/* Phase 1 of a round: our header and, for every other rank w, our
 * gradient over w's range (sent whether or not it is good: the header
 * says), and theirs over ours. Waits for what we receive only. */
static int exchange_grads(coloc *c)
{
    int k = 0;
    for (int w = 0; w < c->W; w++) {
        if (w == c->me)
            continue;
        size_t lo, hi;
        pd_server_range(c->n, c->W, w, &lo, &hi);
        PD_MPI(MPI_Irecv(&c->hdr[w], sizeof c->hdr[w], MPI_BYTE, w, PD_TAG_DATA, MPI_COMM_WORLD,
                         &c->grecv[k]));
        int words = c->words;
        PD_MPI(MPI_Irecv(c->in[w], words * (int)(c->hi - c->lo), MPI_FLOAT, w, PD_TAG_DATA,
                         MPI_COMM_WORLD, &c->grecv[k + 1]));
        PD_MPI(MPI_Isend(&c->mine, sizeof c->mine, MPI_BYTE, w, PD_TAG_DATA, MPI_COMM_WORLD,
                         &c->gsend[k]));
        const float *out = c->l.grad + lo;
        if (c->pack) {   /* vsgd: w's range of g, h and v back to back */
            float *q = c->pack + 3 * lo;
            memcpy(q, c->l.grad + lo, (hi - lo) * sizeof *q);
            memcpy(q + (hi - lo), c->l.curv + lo, (hi - lo) * sizeof *q);
            memcpy(q + 2 * (hi - lo), c->l.curv + c->n + lo, (hi - lo) * sizeof *q);
            out = q;
        }
        PD_MPI(MPI_Isend(out, words * (int)(hi - lo), MPI_FLOAT, w, PD_TAG_DATA,
                         MPI_COMM_WORLD, &c->gsend[k + 1]));
        c->floats_sent += (int64_t)words * (int64_t)(hi - lo);
        k += 2;
    }
    c->hdr[c->me] = c->mine;
    return pd_comm_waitall(k, c->grecv);
}

/* Phase 2: our range of the new point to every other rank, theirs to us. */
static int exchange_point(coloc *c)
{
    int k = 0;
    for (int w = 0; w < c->W; w++) {
        if (w == c->me)
            continue;
        PD_MPI(MPI_Irecv(c->point + c->displs[w], c->counts[w], MPI_FLOAT, w, PD_TAG_CTRL,
                         MPI_COMM_WORLD, &c->precv[k]));
        PD_MPI(MPI_Isend(c->point + c->lo, (int)(c->hi - c->lo), MPI_FLOAT, w, PD_TAG_CTRL,
                         MPI_COMM_WORLD, &c->psend[k]));
        c->floats_sent += (int64_t)(c->hi - c->lo);
        k++;
    }
    return pd_comm_waitall(k, c->precv);
}

/* Sum and step our range (update t) from the good gradients, then share
 * the next point. */
static int step(coloc *c, const bool *good, int64_t t)
{
    PD_TRY(pd_comm_waitall(c->W - 1, c->psend));   /* our range is about to change */
    const pd_optim_config *oc = &c->cfg->optimizer;
    if (oc->clip_norm > 0) {
        /* The norm of the whole sum: every rank's part, added in rank
         * order; each block squared as it is summed, while in cache. */
        double s = 0, *parts = NULL;
        for (size_t i = c->lo; i < c->hi; i += BLOCK) {
            size_t j = i + BLOCK < c->hi ? i + BLOCK : c->hi;
            sum_block(c, good, i, j);
            s = pd_optim_sumsq(s, c->acc + i, j - i);
        }
        double sq = sqrt(s);   /* pd_optim_norm2's bits, squared as before */
        sq *= sq;
        if (!(parts = pd_malloc((size_t)c->W * sizeof *parts)))
            return PD_ENOMEM;
        MPI_Request r;
        int rc = MPI_Iallgather(&sq, 1, MPI_DOUBLE, parts, 1, MPI_DOUBLE, MPI_COMM_WORLD, &r);
        int err = rc == MPI_SUCCESS ? pd_comm_wait(&r, NULL)
                                    : pd_mpi_fail(rc, "MPI_Iallgather", __FILE__, __LINE__, __func__);
        double total = 0;
        for (int w = 0; w < c->W; w++)
            total += parts[w];
        free(parts);
        PD_TRY(err);
        pd_optim_step st = pd_optim_prepare(c->opt, t, 1.0, sqrt(total));
        pd_optim_apply(c->opt, &st, c->theta, c->acc, c->lo, c->hi);
    } else {
        pd_optim_step st = pd_optim_prepare(c->opt, t, 1.0, 0.0);
        pd_optim_curv cv = {.h = c->acc + c->n, .v = c->acc + 2 * c->n, .n = c->round_examples};
        for (size_t i = c->lo; i < c->hi; i += BLOCK) {
            size_t j = i + BLOCK < c->hi ? i + BLOCK : c->hi;
            sum_block(c, good, i, j);
            pd_optim_apply_curv(c->opt, &st, c->theta, c->acc, c->words == 3 ? &cv : NULL, i, j);
        }
    }
    if (c->point != c->theta)
        pd_optim_lookahead(c->opt, c->theta, c->point, c->lo, c->hi);
    return exchange_point(c);
}

/* Next minibatch, crossing epochs; false when this rank's epochs are done. */
static bool next_batch(coloc *c, int *epochs)
{
    while (!pd_learner_next(&c->l)) {
        ++*epochs;
        if (c->cfg->training.epochs > 0 && *epochs >= c->cfg->training.epochs)
            return false;
    }
    return true;
}

/* Our header: the gradient at the point of this version, if we have one. */
static int compute(coloc *c, bool more, round_hdr *h)
{
    pd_learner *l = &c->l;
    PD_TRY(pd_comm_waitall(2 * (c->W - 1), c->gsend));   /* the gradient is about to change */
    *h = (round_hdr){.has = more, .epoch = pd_learner_epoch(l)};
    if (!more)
        return PD_OK;
    bool finite;
    PD_TRY(pd_learner_grad(l, c->point, &finite));
    if (l->sparse) {   /* a sparse model's pairs: the round sums dense ranges */
        memset(l->grad, 0, c->n * sizeof *l->grad);
        for (size_t j = 0; j < l->sgrad.nnz; j++)
            l->grad[l->sgrad.idx[j]] = l->sgrad.val[j];
    }
    h->loss = finite ? l->loss : NAN;
    h->norm = finite ? pd_learner_grad_norm(l, &c->cfg->optimizer) : NAN;
    h->examples = (int64_t)l->batch;
    h->epoch = pd_learner_epoch(l);
    return PD_OK;
}

static int train(coloc *c)
{
    const pd_training_config *tc = &c->cfg->training;
    int epochs = (int)pd_iter_epoch(c->l.iter);   /* a resumed run's */
    bool *good = pd_calloc((size_t)c->W, sizeof *good);
    if (!good)
        return PD_ENOMEM;
    int err = PD_OK;
    c->exit = "done";
    for (;;) {
        if (tc->max_updates > 0 && c->version >= tc->max_updates) {   /* resumed there */
            c->exit = "max_updates";
            break;
        }
        round_hdr mine;
        bool more = next_batch(c, &epochs);
        PD_TRY_GOTO(err, compute(c, more, &mine), out);
        if (c->me == 0) {
            PD_TRY_GOTO(err, pd_eval_thread_error(c->et), out);
            if (pd_eval_thread_should_stop(c->et))
                mine.flags |= FLAG_STOP;
            double secs = tc->eval_every_seconds;
            if (secs > 0 && pd_now() - c->last_eval_t >= secs)
                mine.flags |= FLAG_EVAL;
            /* Signals (rank 0's alone: the others follow its flags) and
             * checkpoint.every_seconds: a checkpoint after this round. */
            bool stop = false;
            if (pd_ckpt_take_request(&stop))
                mine.flags |= stop ? FLAG_SIGNAL : FLAG_CKPT;
            double every = c->cfg->checkpoint.every_seconds;
            if (c->ck_on && every > 0 && pd_now() - c->ck_last_t >= every)
                mine.flags |= FLAG_CKPT;
        }
        double c0 = pd_cpu_thread();
        c->mine = mine;
        PD_TRY_GOTO(err, exchange_grads(c), out);
        bool signalled = c->hdr[0].flags & FLAG_SIGNAL;
        int have = 0;
        for (int w = 0; w < c->W; w++)
            have += c->hdr[w].has;
        c->sent += have;
        if (have == 0) {
            c->exit = signalled ? "signal" : c->exit;
            break;
        }
        if (c->hdr[0].flags & FLAG_STOP) {   /* early stopping: this round is not applied */
            for (int w = 0; w < c->W; w++) {
                c->dropped_at_stop += c->hdr[w].has;
                c->w_dropped[w] += c->hdr[w].has;
            }
            c->exit = "early_stopped";
            break;
        }
        double loss;
        int ngood = weigh(c, good, &loss);
        if (c->bad > tc->max_bad_updates) {
            err = PD_FAIL(PD_ETRAIN, "training diverged at update %lld: a gradient is not "
                          "finite (lower optimizer.lr, or set optimizer.clip_norm)",
                          (long long)c->version + 1);
            if (c->me != 0)
                pd_err_clear();   /* rank 0 says it; every rank stops alike */
            goto out;
        }
        if (ngood > 0) {
            PD_TRY_GOTO(err, step(c, good, c->version + 1), out);
            c->version++;
            for (int w = 0; w < c->W; w++) {
                if (good[w]) {
                    c->applied++;
                    c->w_applied[w]++;
                    c->examples += c->hdr[w].examples;
                }
            }
            c->loss_sum += loss;
            c->loss_n++;
        }
        if (c->me == 0)
            c->serve_cpu += pd_cpu_thread() - c0;
        bool due = ngood > 0 && (c->version >= c->next_eval ||
                                 ((c->hdr[0].flags & FLAG_EVAL) && c->version > c->last_eval_update));
        if (due)
            PD_TRY_GOTO(err, evaluate(c, true), out);
        else if (c->me == 0) {
            pd_progress pg;
            progress(c, &pg);
            pd_eval_thread_progress(c->et, &pg);
        }
        if (coloc_ckpt_due(c))
            PD_TRY_GOTO(err, coloc_ckpt_write(c), out);
        if (signalled) {   /* the round is done and checkpointed: the end */
            c->exit = "signal";
            break;
        }
        if (tc->max_updates > 0 && c->version >= tc->max_updates) {
            c->exit = "max_updates";
            break;
        }
    }
out:
    free(good);
    return err;
}

/* ---- setup and the end ---------------------------------------------------- */

static int setup(coloc *c, const pd_config *cfg, const pd_run_opts *opts, const pd_world *world)
{
    c->cfg = cfg;
    c->world = world;
    c->W = world->workers;
    c->me = world->index;
    int W = c->W;
    PD_TRY(pd_learner_init(&c->l, cfg, c->me, W));
    PD_TRY(pd_learner_use_curv(&c->l, cfg));   /* vsgd: each gradient's h and v */
    c->n = c->l.nparams;
    c->words = c->l.curv ? 3 : 1;
    pd_server_range(c->n, W, c->me, &c->lo, &c->hi);
    c->theta = pd_malloc(c->n * sizeof *c->theta);
    c->acc = pd_malloc((size_t)c->words * c->n * sizeof *c->acc);
    if (c->words == 3 && !(c->pack = pd_malloc(3 * c->n * sizeof *c->pack)))
        return PD_ENOMEM;
    c->in = pd_calloc((size_t)W, sizeof *c->in);
    c->weight = pd_calloc((size_t)W, sizeof *c->weight);
    c->counts = pd_calloc((size_t)W, sizeof *c->counts);
    c->displs = pd_calloc((size_t)W, sizeof *c->displs);
    c->hdr = pd_calloc((size_t)W, sizeof *c->hdr);
    c->gsend = pd_calloc((size_t)(2 * W), sizeof *c->gsend);
    c->grecv = pd_calloc((size_t)(2 * W), sizeof *c->grecv);
    c->psend = pd_calloc((size_t)W, sizeof *c->psend);
    c->precv = pd_calloc((size_t)W, sizeof *c->precv);
    c->w_applied = pd_calloc((size_t)W, sizeof *c->w_applied);
    c->w_dropped = pd_calloc((size_t)W, sizeof *c->w_dropped);
    if (!c->theta || !c->acc || !c->in || !c->weight || !c->counts || !c->displs || !c->hdr ||
        !c->gsend || !c->grecv || !c->psend || !c->precv || !c->w_applied || !c->w_dropped)
        return PD_ENOMEM;
    for (int i = 0; i < 2 * W; i++)
        c->gsend[i] = c->grecv[i] = MPI_REQUEST_NULL;
    for (int w = 0; w < W; w++)
        c->psend[w] = c->precv[w] = MPI_REQUEST_NULL;
    for (int w = 0; w < W; w++) {
        size_t lo, hi;
        pd_server_range(c->n, W, w, &lo, &hi);
        c->counts[w] = (int)(hi - lo);
        c->displs[w] = (int)lo;
        if (w != c->me && !(c->in[w] = pd_malloc(((size_t)c->words * (c->hi - c->lo) + 1) *
                                                 sizeof **c->in)))
            return PD_ENOMEM;
    }
    /* The same initial parameters and optimizer state as a server of this
     * range (server.c, setup). */
    PD_TRY(pd_learner_start_point(cfg, c->l.model, c->theta));
    PD_TRY(pd_optim_create(&cfg->optimizer, c->lo, c->hi, cfg->run.seed, &c->opt));
    pd_optim_set_model_params(c->opt, c->n);   /* vsgd's C, as a server's (server.c) */
    /* --resume: our range, optimizer and iterator, before the point is
     * made from them and before the run directory is opened. */
    PD_TRY(coloc_ckpt_setup(c, opts));
    c->point = c->theta;
    if (pd_optim_has_lookahead(c->opt)) {
        if (!(c->point = pd_malloc(c->n * sizeof *c->point)))
            return PD_ENOMEM;
        /* v = 0: the point is theta (each rank computes its own range's). */
        memcpy(c->point, c->theta, c->n * sizeof *c->point);
        pd_optim_lookahead(c->opt, c->theta, c->point, c->lo, c->hi);
    }
    if (c->me == 0) {
        PD_TRY(pd_evaluator_create(cfg, opts, W, 0, &c->ev));
        PD_TRY(coloc_ckpt_resume_eval(c));
        PD_TRY(pd_eval_thread_start(c->ev, c->n, &c->et));
    }
    return PD_OK;
}

static void teardown(coloc *c)
{
    coloc_ckpt_free(c);
    pd_eval_thread_stop(&c->et);
    pd_evaluator_destroy(&c->ev);
    for (int w = 0; c->in && w < c->W; w++)
        free(c->in[w]);
    free(c->in);
    free(c->w_applied);
    free(c->w_dropped);
    free(c->gsend);
    free(c->grecv);
    free(c->psend);
    free(c->precv);
    free(c->hdr);
    free(c->displs);
    free(c->counts);
    free(c->weight);
    if (c->point != c->theta)
        free(c->point);
    free(c->acc);
    free(c->pack);
    free(c->theta);
    pd_optim_destroy(&c->opt);
    pd_learner_free(&c->l);
}

/* Rank 0: the last evaluation and the summary (every rank has sent it its
 * range of theta first). */
static int finish(coloc *c, double cpu0)
{
    PD_TRY(pd_eval_thread_stop(&c->et));
    pd_progress pg;
    progress(c, &pg);
    pg.train_loss = c->loss_n ? c->loss_sum / (double)c->loss_n : NAN;
    int64_t hist[1] = {c->applied};
    pd_worker_stats ws[PD_MAX_WORKER_STATS];
    pd_run_stats rs = {
        .stale_hist = hist, .stale_hist_n = c->applied > 0,
        .applied = c->applied, .sent = c->sent, .bad = c->bad,
        .dropped_at_stop = c->dropped_at_stop,
        .server_cpu_s = pd_cpu_process() - cpu0, .server_loop_cpu_s = c->serve_cpu,
        .params_sent_floats = c->floats_sent,
        .evals_skipped = pd_eval_skips_total(&c->skips, pg.update),
        .workers = ws, .n_workers = c->W < PD_MAX_WORKER_STATS ? c->W : PD_MAX_WORKER_STATS,
    };
    for (int w = 0; w < rs.n_workers; w++)
        ws[w] = (pd_worker_stats){.rank = w, .applied = c->w_applied[w],
                                  .dropped = c->w_dropped[w],
                                  .staleness_mean = c->w_applied[w] ? 0.0 : NAN,
                                  .lost_update = -1};
    return pd_evaluator_finish(c->ev, c->theta, &pg, &rs, c->exit);
}

/* Rank 0 after a run a stop signal ended: PD_ESTOPPED (exit 143) with the
 * line that says where its checkpoint is. */
static int stopped(const coloc *c)
{
    const char *sig = pd_signals_name(pd_signals_stop());
    long long v = (long long)c->version;
    if (c->ck_written != v)
        return PD_FAIL(PD_ESTOPPED, "stopped by %s after update %lld without a checkpoint", sig,
                       v);
    return PD_FAIL(PD_ESTOPPED, "stopped by %s after update %lld; checkpoint "
                   "%s/ckpt-%012lld.manifest written (continue with --resume)", sig, v,
                   c->ck_dir, v);
}

int pd_colocated_run(const pd_config *cfg, const pd_run_opts *opts, pd_world *world)
{
    coloc c = {.skips.at = -1};
    double cpu0 = pd_cpu_process();
    int err = pd_comm_agree(world, setup(&c, cfg, opts, world));
    if (err == PD_OK) {
        /* Batches per epoch: a round per batch of the rank with the most. */
        int64_t mine = (int64_t)pd_iter_batches_per_epoch(c.l.iter), most = 0;
        MPI_Request r;
        int rc = MPI_Iallreduce(&mine, &most, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD, &r);
        err = rc == MPI_SUCCESS ? pd_comm_wait(&r, NULL)
                                : pd_mpi_fail(rc, "MPI_Iallreduce", __FILE__, __LINE__, __func__);
        c.updates_per_epoch = most > 0 ? most : 1;
    }
    if (err == PD_OK && c.resumed) {
        /* Every range of the resumed point; the evaluations go on after
         * the checkpoint's last. */
        err = exchange_point(&c);
        int64_t every = cfg->training.eval_every > 0 ? cfg->training.eval_every
                                                     : c.updates_per_epoch;
        c.next_eval = c.resume_eval < 0 ? 0 : (c.resume_eval / every + 1) * every;
        c.last_eval_update = c.resume_eval;
        c.last_eval_t = pd_now();
    } else if (err == PD_OK) {
        err = evaluate(&c, false);   /* version 0, before the first round */
    }
    if (err == PD_OK)
        err = train(&c);
    /* The end's checkpoint (a stop signal's is written already). */
    if (err == PD_OK && c.ck_on)
        err = coloc_ckpt_write(&c);
    if (err == PD_OK)   /* the last round's sends */
        err = pd_comm_waitall(2 * (c.W - 1), c.gsend);
    if (err == PD_OK)
        err = pd_comm_waitall(c.W - 1, c.psend);
    if (err == PD_OK && c.point != c.theta) {
        MPI_Request r;   /* rank 0 needs every range of theta */
        int rc = MPI_Igatherv(c.me == 0 ? MPI_IN_PLACE : c.theta + c.lo, c.counts[c.me],
                              MPI_FLOAT, c.theta, c.counts, c.displs, MPI_FLOAT, 0,
                              MPI_COMM_WORLD, &r);
        err = rc == MPI_SUCCESS ? pd_comm_wait(&r, NULL)
                                : pd_mpi_fail(rc, "MPI_Igatherv", __FILE__, __LINE__, __func__);
    }
    if (err == PD_OK && c.me == 0)
        err = finish(&c, cpu0);
    if (err == PD_OK && c.me == 0 && pd_ckpt_stop_requested())
        err = stopped(&c);
    teardown(&c);
    return err;
}
