/* Server ranks. Server s owns parameters [lo, hi) and the optimizer state
 * for them, and runs an event loop over its workers' requests:
 *   sync       one step per round from the gradients of one version,
 *              summed in ascending worker order weighted by batch size;
 *              backup workers let a round close early, late ones dropped
 *   async      each gradient applied alone in arrival order; staleness
 *              recorded; max_staleness with wait (SSP clocks) or drop
 *   hogwild    as async, but server_threads threads, each serving a fixed
 *              subset of workers, apply concurrently without locks
 *   local_sgd  rounds averaging the workers' local models
 *   easgd      elastic averaging: centre += alpha (x_w - centre), the
 *              difference goes back to the worker
 * Server 0 also evaluates snapshots (evalthread.c) and gathers the other
 * servers' ranges for them (SNAP messages on the control tag). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "server_impl.h"

/* training.phases: the counters' arrays are the hand-over's. */
static pd_phase_server *carried(const server *sv);
_Static_assert((int)PD_DROP_KINDS == (int)PD_PHASE_DROP_KINDS && STALE_HIST == PD_PHASE_STALE_HIST,
               "pd_phase_counters has the server's counters");

/* ---- evaluation (server 0) ---------------------------------------------- */

static int64_t dropped_total(server *sv)
{
    int64_t n = 0;
    for (int k = 0; k < PD_DROP_KINDS; k++)
        n += atomic_load(&sv->dropped[k]);
    return n;
}

/* The loss totals of every thread, read lock-free. */
static void loss_totals(server *sv, double *sum, int64_t *n)
{
    *n = atomic_load_explicit(&sv->loss_n, memory_order_acquire);
    *sum = atomic_load_explicit(&sv->loss_sum, memory_order_relaxed);
    for (int w = 0; w < sv->world->workers; w++) {
        const peer *p = &sv->peers[w];
        *n += atomic_load_explicit(&p->loss_n, memory_order_acquire);
        *sum += atomic_load_explicit(&p->loss_sum, memory_order_relaxed);
    }
}

static void progress(server *sv, pd_progress *pg)
{
    int64_t applied = atomic_load(&sv->applied);
    double sum, train_loss;
    int64_t n;
    loss_totals(sv, &sum, &n);
    pthread_mutex_lock(&sv->mu);
    train_loss = n > sv->loss_mark_n ? (sum - sv->loss_mark_sum) / (double)(n - sv->loss_mark_n)
                                     : NAN;
    pthread_mutex_unlock(&sv->mu);
    double epoch = 0;
    for (int w = 0; w < sv->world->workers; w++)
        epoch += sv->peers[w].epoch;
    *pg = (pd_progress){
        .update = atomic_load(&sv->version),
        .examples = atomic_load(&sv->examples),
        .epoch = epoch / sv->world->workers,
        .lr = pd_optim_lr(&sv->cfg->optimizer, atomic_load(&sv->version) + 1),
        .train_loss = train_loss,
        .staleness_mean = applied ? (double)atomic_load(&sv->stale_sum) / (double)applied : 0,
        .staleness_max = atomic_load(&sv->stale_max),
        .dropped = dropped_total(sv),
        .lost = sv->lost,
        .n_lost = atomic_load(&sv->n_lost),
    };
}

/* Fill buf[n] with every server's range: ours from theta, the others by SNAP
 * requests (sync: at our version, so the snapshot is one consistent step).
 * gsq[ntensors] gets the sum of the other servers' parts of the round's
 * gradient sums of squares (sync; zeros otherwise). */
static int gather(server *sv, float *buf, bool final, double *gsq)
{
    size_t T = pd_model_ntensors(sv->model);
    for (size_t t = 0; t < T; t++)
        gsq[t] = 0;
    memcpy(buf + sv->lo, sv->theta + sv->lo, (sv->hi - sv->lo) * sizeof *buf);
    for (int s = 1; s < sv->world->servers; s++) {
        size_t lo, hi;
        pd_server_range(sv->n, sv->world->servers, s, &lo, &hi);
        pd_msg_hdr req = {.kind = PD_MSG_SNAP, .version = atomic_load(&sv->version),
                          .flags = final}, rep;
        double part[PD_MAX_TENSORS];
        MPI_Request r[4];
        PD_MPI(MPI_Isend(&req, sizeof req, MPI_BYTE, pd_server_rank(s), PD_TAG_CTRL,
                         MPI_COMM_WORLD, &r[0]));
        PD_MPI(MPI_Irecv(&rep, sizeof rep, MPI_BYTE, pd_server_rank(s), PD_TAG_CTRL + 1,
                         MPI_COMM_WORLD, &r[1]));
        PD_MPI(MPI_Irecv(buf + lo, (int)(hi - lo), MPI_FLOAT, pd_server_rank(s), PD_TAG_CTRL + 1,
                         MPI_COMM_WORLD, &r[2]));
        PD_MPI(MPI_Irecv(part, (int)T, MPI_DOUBLE, pd_server_rank(s), PD_TAG_CTRL + 1,
                         MPI_COMM_WORLD, &r[3]));
        PD_TRY(pd_comm_waitall(4, r));
        for (size_t t = 0; t < T; t++)
            gsq[t] += part[t];
        if (final && s < PD_MAX_SERVERS_STATS) {
            sv->others_applied[s] = rep.seq;
            sv->others_bad[s] = rep.nnz;
            sv->others_dropped[s] = rep.npull;
            sv->others_mix[s] = rep.lo;
        }
    }
    return PD_OK;
}

static bool eval_due(const server *sv, int64_t update)
{
    double secs = sv->cfg->training.eval_every_seconds;
    return update >= sv->next_eval ||
           (secs > 0 && pd_now() - sv->last_eval_t >= secs && update > sv->last_eval_update);
}

/* Is a gradient note wanted now? Lock-free (its inputs are atomics), so
 * the hot path takes sv->mu only when an evaluation is due. */
static bool note_wanted(server *sv)
{
    return sv->world->index == 0 &&
           (sv->world->servers == 1 || mode_of(sv)->grad_norms) &&
           atomic_load(&sv->updates_per_epoch) != 0 && eval_due(sv, atomic_load(&sv->version));
}

void server_note_grad(server *sv, const float *g)
{
    if (!note_wanted(sv))
        return;
    pthread_mutex_lock(&sv->mu);
    if (note_wanted(sv)) {
        pd_model_tensor_sumsq_slice(sv->model, g, sv->lo, sv->hi, sv->gsq);
        sv->gnorm_ok = true;
    }
    pthread_mutex_unlock(&sv->mu);
}

void server_note_sparse(server *sv, const uint32_t *idx, const float *val, size_t nnz)
{
    if (!note_wanted(sv))
        return;
    pthread_mutex_lock(&sv->mu);
    if (note_wanted(sv)) {
        pd_model_tensor_sumsq_sparse(sv->model, idx, val, nnz, sv->gsq);
        sv->gnorm_ok = true;
    }
    pthread_mutex_unlock(&sv->mu);
}

/* Evaluate when due. at_boundary: called where the parameters are one
 * version on every server (rounds: after a step, before its replies; the
 * modes without rounds: anywhere). Between the steps of rounds with S > 1
 * another server may already have made the next version, so a due
 * evaluation (the time trigger) waits for the next round's close. */
static int maybe_eval(server *sv, bool at_boundary)
{
    if (sv->world->index != 0)
        return PD_OK;
    pd_progress pg;
    progress(sv, &pg);
    PD_TRY(pd_eval_thread_error(sv->et));
    if (!at_boundary || atomic_load(&sv->updates_per_epoch) == 0 || !eval_due(sv, pg.update)) {
        pd_eval_thread_progress(sv->et, &pg);
        return PD_OK;
    }
    int64_t every = sv->cfg->training.eval_every > 0 ? sv->cfg->training.eval_every
                                                     : sv->updates_per_epoch;
    float *snap = pd_eval_thread_begin(sv->et, sv->cfg->training.eval_wait, &pg, &sv->skips);
    if (!snap) {   /* skipped: the previous evaluation still runs */
        pthread_mutex_lock(&sv->mu);
        sv->next_eval = (pg.update / every + 1) * every;
        sv->gnorm_ok = false;
        sv->last_eval_t = pd_now();
        sv->last_eval_update = pg.update;
        pthread_mutex_unlock(&sv->mu);
        return PD_OK;
    }
    double others[PD_MAX_TENSORS];
    PD_TRY(gather(sv, snap, false, others));
    pthread_mutex_lock(&sv->mu);
    sv->next_eval = (pg.update / every + 1) * every;
    pg.grad_norms = NULL;
    if (sv->gnorm_ok) {
        for (size_t t = 0; t < pd_model_ntensors(sv->model); t++)
            sv->gnorm[t] = sqrt(sv->gsq[t] + others[t]);
        pg.grad_norms = sv->gnorm;
    }
    sv->gnorm_ok = false;
    sv->last_eval_t = pd_now();
    sv->last_eval_update = pg.update;
    loss_totals(sv, &sv->loss_mark_sum, &sv->loss_mark_n);
    pthread_mutex_unlock(&sv->mu);
    pd_eval_thread_submit(sv->et, &pg);
    return PD_OK;
}

int server_round_closed(server *sv)
{
    return maybe_eval(sv, true);
}

/* Servers > 0 answer SNAP requests from server 0 with their range and, in
 * sync mode, their part of the last round's gradient sums of squares. */
int server_answer_snap(server *sv)
{
    pd_msg_hdr rep = {.kind = PD_MSG_SNAP, .seq = atomic_load(&sv->applied),
                       .nnz = atomic_load(&sv->bad), .npull = dropped_total(sv),
                       .lo = (int64_t)atomic_load(&sv->applied_mix)};
    size_t T = pd_model_ntensors(sv->model);
    double part[PD_MAX_TENSORS] = {0};
    if (mode_of(sv)->grad_norms && atomic_load(&sv->version) > 0)
        pd_model_tensor_sumsq_slice(sv->model, sv->acc + sv->lo, sv->lo, sv->hi, part);
    MPI_Request r[3];
    PD_MPI(MPI_Isend(&rep, sizeof rep, MPI_BYTE, 0, PD_TAG_CTRL + 1, MPI_COMM_WORLD, &r[0]));
    PD_MPI(MPI_Isend(sv->theta + sv->lo, (int)(sv->hi - sv->lo), MPI_FLOAT, 0, PD_TAG_CTRL + 1,
                     MPI_COMM_WORLD, &r[1]));
    PD_MPI(MPI_Isend(part, (int)T, MPI_DOUBLE, 0, PD_TAG_CTRL + 1, MPI_COMM_WORLD, &r[2]));
    PD_TRY(pd_comm_waitall(3, r));
    sv->snap_pending = -1;
    if (sv->ctrl_in.flags) {
        sv->final_snap = true;
        PD_TRY(server_ckpt_final(sv));
    }
    else
        PD_MPI(MPI_Irecv(&sv->ctrl_in, sizeof sv->ctrl_in, MPI_BYTE, 0, PD_TAG_CTRL,
                         MPI_COMM_WORLD, &sv->hreq[sv->world->workers]));
    return PD_OK;
}

static int on_snap_request(server *sv)
{
    if (sv->ctrl_in.flags && server_ckpt_defer_final(sv))
        return PD_OK;
    if (mode_of(sv)->rounds && !sv->ctrl_in.flags && sv->ctrl_in.version > atomic_load(&sv->version)) {
        sv->snap_pending = sv->ctrl_in.version;   /* answered after that step */
        return PD_OK;
    }
    return server_answer_snap(sv);
}

int server_wait_collective(server *sv, MPI_Request *r)
{
    int W = sv->world->workers;
    pd_backoff b = {0};
    for (;;) {
        int done = 0;
        PD_MPI(MPI_Test(r, &done, MPI_STATUS_IGNORE));
        if (done)
            return PD_OK;
        if (sv->world->index > 0 && sv->hreq[W] != MPI_REQUEST_NULL) {
            int got = 0;
            PD_MPI(MPI_Test(&sv->hreq[W], &got, MPI_STATUS_IGNORE));
            if (got) {
                PD_TRY(on_snap_request(sv));
                pd_backoff_reset(&b);
                continue;
            }
        }
        pd_backoff_sleep(&b);
    }
}

/* ---- the event loop ------------------------------------------------------ */

static int check_stop(server *sv)
{
    const pd_training_config *tc = &sv->cfg->training;
    if (atomic_load(&sv->bad) > tc->max_bad_updates)
        return PD_FAIL(PD_ETRAIN, "training diverged at update %lld: a gradient is not finite "
                       "(lower optimizer.lr, or set optimizer.clip_norm)",
                       (long long)atomic_load(&sv->version) + 1);
    if (tc->max_updates > 0 && atomic_load(&sv->version) >= tc->max_updates)
        atomic_store(&sv->stopping, true);
    /* Requests: round modes take them at a round's close, async with one
     * server after each gradient (server_ckpt_async_grad, which would lose
     * a SIGUSR1 taken here); the other modes only stop on them. */
    bool stop = false;
    if (sv->world->index == 0 && !mode_of(sv)->rounds && !sv->ck.want &&
        pd_ckpt_take_request(&stop) && stop)
        atomic_store(&sv->stopping, true);
    if (sv->et && pd_eval_thread_should_stop(sv->et)) {
        sv->early_stopped = true;
        atomic_store(&sv->stopping, true);
    }
    return PD_OK;
}

static int on_hello(server *sv, int w)
{
    peer *p = &sv->peers[w];
    p->batches = p->in.batches;
    if (atomic_fetch_add(&sv->hellos, 1) + 1 == sv->world->workers) {
        const pd_mode_props *m = mode_of(sv);
        int64_t per = 0;
        for (int i = 0; i < sv->world->workers; i++) {
            int64_t b = sv->peers[i].batches;
            per = m->rounds ? (b > per ? b : per) : per + b;
        }
        if (m->local_steps)
            per = (per + sv->cfg->training.local_steps - 1) / sv->cfg->training.local_steps;
        atomic_store(&sv->updates_per_epoch, per > 0 ? per : 1);
        server_ckpt_eval_cadence(sv, sv->cfg->training.eval_every > 0
                                         ? sv->cfg->training.eval_every : (per > 0 ? per : 1));
        /* The first evaluation, like every one in rounds, before the reply
         * that lets the first round start. */
        if (m->rounds)
            PD_TRY(server_round_closed(sv));
    }
    PD_TRY(server_reply(sv, w, false));
    return server_post_recv(sv, w);
}

/* A GRAD or MODEL has arrived: its time, for pacing (held) and rates. */
static void note_arrival(peer *p)
{
    p->arrived = pd_now();
    if (p->requests++ == 0)
        p->first_t = p->arrived;
    else if (!p->slowed) {   /* its last reply's held time is not its own */
        pd_cycles_add(&p->cycles, p->arrived - p->last_t - p->out.held);
        atomic_store(&p->cycle_mean, pd_cycles_mean(&p->cycles));
    }
    p->last_t = p->arrived;
}

static int on_message(server *sv, int w, bool control)
{
    peer *p = &sv->peers[w];
    bool lost;
    PD_TRY(server_wait_worker(sv, w, 1, &p->rpay, &lost));
    if (lost)
        return PD_OK;   /* its payload never came */
    p->epoch = p->in.epoch;
    p->seen = atomic_load(&sv->version);
    switch (p->in.kind) {
    case PD_MSG_HELLO:
        p->hello = true;
        return on_hello(sv, w);
    case PD_MSG_CKPT:
        return server_ckpt_on_msg(sv, w);
    case PD_MSG_FINAL:
        PD_TRY(server_ckpt_on_final(sv, w));
        p->active = false;
        p->waiting = false;
        atomic_fetch_sub(&sv->active, 1);
        pthread_mutex_lock(&sv->mu);
        sv->sent_total += p->in.seq;
        pthread_mutex_unlock(&sv->mu);
        if (mode_of(sv)->rounds)
            return server_maybe_close_round(sv);
        if (mode_of(sv)->ssp && sv->cfg->training.max_staleness >= 0)
            return server_release_waiting(sv);
        return PD_OK;
    case PD_MSG_GRAD:
    case PD_MSG_MODEL:
        note_arrival(p);
        if (mode_of(sv)->rounds)
            return server_on_grad_sync(sv, w);
        if (mode_of(sv)->elastic)
            return server_on_model_easgd(sv, w, control);
        PD_TRY(server_on_grad_async(sv, w, control));
        if (mode_of(sv)->ssp && sv->cfg->training.max_staleness >= 0)
            PD_TRY(server_release_waiting(sv));
        return PD_OK;
    default:
        return PD_FAIL(PD_EMPI, "server %d: unexpected message kind %d from worker %d",
                       sv->world->index, p->in.kind, w);
    }
}

int server_serve_worker(server *sv, int w)
{
    bool lost;
    PD_TRY(server_wait_worker(sv, w, 1, &sv->hreq[w], &lost));
    sv->hreq[w] = MPI_REQUEST_NULL;
    return lost ? PD_OK : on_message(sv, w, true);
}

typedef struct loop_arg {
    server *sv;
    int first, stride;             /* workers first, first+stride, ... */
    bool control;                  /* servers > 0: answers SNAP requests */
    int err;
    char msg[1024];
    double cpu_s;                  /* CPU time of this serving thread */
} loop_arg;

/* Stop checks, evaluation, progress and the evaluation thread's errors,
 * after each message, by whichever serving thread is free to: hogwild
 * threads take turns (trylock), so none of them leads and the cadence
 * does not follow one thread's workers. */
static int drive(server *sv)
{
    if (pthread_mutex_trylock(&sv->drive_mu) != 0)
        return atomic_load(&sv->bad) > sv->cfg->training.max_bad_updates ? check_stop(sv) : PD_OK;
    int err = check_stop(sv);
    if (err == PD_OK)
        err = maybe_eval(sv, !mode_of(sv)->rounds);
    pthread_mutex_unlock(&sv->drive_mu);
    return err;
}

static int test_payload(server *sv, int w, int *in)
{
    PD_MPI(MPI_Test(&sv->peers[w].rpay, in, MPI_STATUS_IGNORE));
    return PD_OK;
}

static int serve(loop_arg *a)
{
    server *sv = a->sv;
    int W = sv->world->workers, mine = 0;
    MPI_Request *reqs = pd_malloc((size_t)(W + 2) * sizeof *reqs);
    int *map = pd_malloc((size_t)(W + 2) * sizeof *map);
    if (!reqs || !map) {
        free(reqs);
        free(map);
        return PD_ENOMEM;
    }
    int err = PD_OK;
    for (;;) {
        /* Hogwild, server s > 0: our gradients a checkpoint snapshot kept
         * back and has released since (checkpoint.h). */
        bool held;
        PD_TRY_GOTO(err, server_ckpt_released(sv, a->first, a->stride, &held), out);
        /* Gather our requests: hreq entries of our workers (+ control). */
        int k = 0, live = 0, open = 0;
        for (int w = a->first; w < W; w += a->stride) {
            map[k] = w;
            reqs[k++] = sv->peers[w].partial ? sv->peers[w].rpay : sv->hreq[w];
            live += sv->peers[w].active;
            open += reqs[k - 1] != MPI_REQUEST_NULL;
        }
        mine = k;
        bool want_ctrl = a->control && sv->world->index > 0 && !sv->final_snap;
        if (want_ctrl) {
            map[k] = W;
            reqs[k++] = sv->hreq[W];
        }
        MPI_Request *heard = a->control ? server_hear_request(sv) : NULL;
        if (heard) {   /* server 0's round stream (rounds.c) */
            map[k] = W + 1;
            reqs[k++] = *heard;
        }
        if (live == 0 && !want_ctrl)
            break;
        if (held && open == 0 && k == mine) {   /* every one of ours kept back */
            (void)pd_sleep_s(2e-4);
            continue;
        }
        int idx;
        MPI_Status st;
        /* With a worker timeout, wake now and then to look for lost ones;
         * with a gradient kept back, soon, to see if it is released. */
        double t = sv->worker_timeout / 4 < 1 ? sv->worker_timeout / 4 : 1;
        double until = sv->worker_timeout > 0 ? pd_now() + t : INFINITY;
        if (held && pd_now() + 2e-4 < until)
            until = pd_now() + 2e-4;
        PD_TRY_GOTO(err, pd_comm_waitany(k, reqs, &idx, &st, &sv->failed, until), out);
        if (idx == -2) {
            PD_TRY_GOTO(err, server_check_lost(sv, a->first, a->stride), out);
            continue;
        }
        if (idx < 0)
            break;   /* another thread failed */
        int w = map[idx];
        if (w == W + 1) {
            sv->rreq = MPI_REQUEST_NULL;
            sv->rheld = true;
            PD_TRY_GOTO(err, server_hear(sv), out);
            PD_TRY_GOTO(err, drive(sv), out);
            continue;
        }
        if (w < W && sv->peers[w].partial) {   /* its payload is in now */
            sv->peers[w].partial = false;
            sv->peers[w].rpay = MPI_REQUEST_NULL;
        } else {
            sv->hreq[w] = MPI_REQUEST_NULL;
            if (w == W) {
                PD_TRY_GOTO(err, on_snap_request(sv), out);
                continue;
            }
            /* Hearing server 0, never wait for one worker's payload alone:
             * the message that would say it is lost may sit behind one
             * that needs other workers' gradients (rounds.c). */
            int in = 1;
            if (sv->hears)
                PD_TRY_GOTO(err, test_payload(sv, w, &in), out);
            if (!in) {
                sv->peers[w].partial = true;
                continue;
            }
        }
        PD_TRY_GOTO(err, on_message(sv, w, a->control), out);
        PD_TRY_GOTO(err, server_check_lost(sv, a->first, a->stride), out);
        PD_TRY_GOTO(err, drive(sv), out);
    }
    (void)mine;
out:
    if (err != PD_OK)
        atomic_store(&sv->failed, true);
    free(reqs);
    free(map);
    return err;
}

static void *serve_thread(void *arg)
{
    loop_arg *a = arg;
    double c0 = pd_cpu_thread();
    a->err = serve(a);
    a->cpu_s = pd_cpu_thread() - c0;
    if (a->err)
        snprintf(a->msg, sizeof a->msg, "%s", pd_err_msg());
    return NULL;
}

/* Hogwild: server_threads threads, each serving every T-th worker. */
static int serve_all(server *sv)
{
    int T = mode_of(sv)->threads ? sv->cfg->training.server_threads : 1;
    if (T > sv->world->workers)
        T = sv->world->workers;
    loop_arg *args = pd_calloc((size_t)T, sizeof *args);
    pthread_t *th = pd_calloc((size_t)T, sizeof *th);
    if (!args || !th) {
        free(args);
        free(th);
        return PD_ENOMEM;
    }
    for (int i = 0; i < T; i++)
        args[i] = (loop_arg){.sv = sv, .first = i, .stride = T, .control = i == 0};
    int err = PD_OK, started = 1;
    for (; started < T; started++)
        if (pthread_create(&th[started], NULL, serve_thread, &args[started]) != 0) {
            err = PD_FAIL(PD_ENOMEM, "cannot start server thread %d of %d", started, T);
            break;
        }
    if (err == PD_OK) {
        double c0 = pd_cpu_thread();
        err = serve(&args[0]);
        sv->loop_cpu_s = pd_cpu_thread() - c0;
    }
    /* An error in any thread (or a failed start) sets sv->failed, which
     * ends the others' waits: every started thread is joined. */
    if (err != PD_OK)
        atomic_store(&sv->failed, true);
    for (int i = 1; i < started; i++) {
        pthread_join(th[i], NULL);
        sv->loop_cpu_s += args[i].cpu_s;
        if (!err && args[i].err)
            err = PD_FAIL(args[i].err, "%s", args[i].msg);
    }
    free(args);
    free(th);
    return err;
}

/* ---- setup and the end -------------------------------------------------- */

static int setup(server *sv, const pd_config *cfg, const pd_run_opts *opts, const pd_world *world)
{
    sv->cfg = cfg;
    sv->world = world;
    sv->snap_pending = -1;
    sv->skips.at = -1;
    /* Without mpirun --enable-recovery a rank that dies ends the job: a
     * timeout could only take a slow worker for a lost one. */
    sv->worker_timeout = pd_comm_recovery() ? cfg->training.worker_timeout : 0;
    pthread_mutex_init(&sv->mu, NULL);
    pthread_mutex_init(&sv->drive_mu, NULL);
    pthread_mutex_init(&sv->ck_mu, NULL);
    pthread_rwlock_init(&sv->apply_lock, NULL);
    PD_TRY(pd_model_create(&cfg->model, 1, &sv->model));
    sv->n = pd_model_nparams(sv->model);
    sv->sparse = pd_model_is_sparse(sv->model);
    pd_server_range(sv->n, world->servers, world->index, &sv->lo, &sv->hi);
    int W = world->workers;
    size_t range = sv->hi - sv->lo;
    bool rounds = mode_of(sv)->rounds;
    /* vsgd: each gradient comes with its curvature and second moment. */
    sv->words = pd_optim_needs_curvature(cfg->optimizer.name) && !mode_of(sv)->local_steps ? 3
                                                                                          : 1;
    sv->theta = pd_malloc(sv->n * sizeof *sv->theta);
    sv->acc = rounds ? pd_malloc((size_t)sv->words * sv->n * sizeof *sv->acc) : NULL;
    sv->peers = pd_calloc((size_t)W, sizeof *sv->peers);
    sv->weight = pd_calloc((size_t)W, sizeof *sv->weight);
    sv->hreq = pd_malloc((size_t)(W + 1) * sizeof *sv->hreq);
    sv->lost = pd_calloc((size_t)W, sizeof *sv->lost);
    sv->lost_sent = pd_calloc((size_t)W, sizeof *sv->lost_sent);
    if (!sv->theta || (rounds && !sv->acc) || !sv->peers || !sv->weight || !sv->hreq ||
        !sv->lost || !sv->lost_sent)
        return PD_ENOMEM;
    pd_phase_server *from = carried(sv);
    if (from)
        memcpy(sv->theta, from->theta, sv->n * sizeof *sv->theta);
    else
        PD_TRY(pd_learner_start_point(cfg, sv->model, sv->theta));
    PD_TRY(pd_optim_create(&cfg->optimizer, sv->lo, sv->hi, cfg->run.seed, &sv->opt));
    pd_optim_set_model_params(sv->opt, sv->n);
    if (from)
        PD_TRY(pd_optim_load(sv->opt, from->opt, from->opt_size));
    sv->point_version = -1;
    if (rounds && pd_optim_has_lookahead(sv->opt) && !(sv->point = pd_malloc(range * sizeof *sv->point)))
        return PD_ENOMEM;
    for (int w = 0; w <= W; w++)
        sv->hreq[w] = MPI_REQUEST_NULL;
    PD_TRY(server_rounds_setup(sv));
    bool shared = world->servers > 1 && mode_of(sv)->each;
    sv->decides = shared && world->index == 0;
    sv->follows = shared && world->index > 0;
    if (shared) {
        int *ub = NULL, flag = 0;
        PD_MPI(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag));
        if (flag && PD_TAG_DECIDE + (int64_t)W > *ub)
            return PD_FAIL(PD_EINPUT, "training.servers: %d servers in %s mode need MPI tags up to "
                           "%lld for %d workers; this MPI allows %d (use one server)",
                           world->servers, pd_mode_name(cfg->training.mode),
                           (long long)PD_TAG_DECIDE + W, W, *ub);
    }
    for (int w = 0; w < W; w++) {
        peer *p = &sv->peers[w];
        p->rout[0] = p->rout[1] = p->rpay = p->dreq = MPI_REQUEST_NULL;
        if (sv->decides) {
            if (!(p->dsend = pd_malloc((size_t)world->servers * sizeof *p->dsend)))
                return PD_ENOMEM;
            for (int s = 0; s < world->servers; s++)
                p->dsend[s] = MPI_REQUEST_NULL;
        }
        if (sv->follows)
            PD_TRY(server_post_decision(sv, w));
        p->active = true;
        p->since = pd_now();
        /* Sized to this server's range, not the model (W of each). */
        p->slowed = pd_faults_slow_factor(&cfg->faults, pd_worker_rank(world, w)) > 1;
        p->g = pd_calloc((size_t)sv->words * range, sizeof *p->g);
        p->reply = pd_calloc(range, sizeof *p->reply);
        p->sp = sv->sparse ? pd_malloc(pd_sparse_payload_max(range)) : NULL;
        if (!p->g || !p->reply || (sv->sparse && !p->sp))
            return PD_ENOMEM;
        if (cfg->optimizer.staleness_compensation == PD_SCOMP_DC &&
            (!(p->stale = pd_calloc(range, sizeof *p->stale)) ||
             !(p->dc = pd_calloc(range, sizeof *p->dc))))
            return PD_ENOMEM;
        PD_TRY(server_post_recv(sv, w));
    }
    atomic_store(&sv->active, W);
    if (world->index > 0)
        PD_MPI(MPI_Irecv(&sv->ctrl_in, sizeof sv->ctrl_in, MPI_BYTE, 0, PD_TAG_CTRL,
                         MPI_COMM_WORLD, &sv->hreq[W]));
    /* Resume before the run directory is opened: a refusal leaves it as it was. */
    PD_TRY(server_ckpt_setup(sv, opts));
    if (world->index == 0 && from) {
        sv->ev = from->evaluator;   /* the run's, from phase to phase */
        from->evaluator = NULL;
    } else if (world->index == 0) {
        PD_TRY(pd_evaluator_create(sv->carry ? sv->carry->run : cfg, opts, W, world->servers,
                                   &sv->ev));
    }
    if (world->index == 0 && sv->carry)
        pd_evaluator_set_phase(sv->ev, cfg, sv->carry->index, sv->carry->count);
    if (world->index == 0 && sv->carry && sv->carry->record)   /* --resume */
        pd_evaluator_set_phase_state(sv->ev, sv->carry->record);
    if (world->index == 0) {
        PD_TRY(server_ckpt_resume_eval(sv));
        PD_TRY(pd_eval_thread_start(sv->ev, sv->n, &sv->et));
        PD_TRY(server_ckpt_trace_open(sv));
    }
    return PD_OK;
}

static void teardown(server *sv)
{
    server_ckpt_free(sv);
    pd_trace_abort(&sv->trace, sv->cfg->run.out_dir);   /* an unfinished trace */
    pd_eval_thread_stop(&sv->et);
    pd_evaluator_destroy(&sv->ev);
    if (sv->peers) {
        for (int w = 0; w < sv->world->workers; w++) {
            free(sv->peers[w].g);
            free(sv->peers[w].reply);
            free(sv->peers[w].stale);
            free(sv->peers[w].dc);
            free(sv->peers[w].sp);
            free(sv->peers[w].dsend);
        }
    }
    free(sv->peers);
    free(sv->lost);
    free(sv->lost_sent);
    free(sv->hreq);
    free(sv->acc);
    free(sv->weight);
    free(sv->point);
    free(sv->theta);
    pd_optim_destroy(&sv->opt);
    pd_model_destroy(&sv->model);
    pthread_mutex_destroy(&sv->mu);
    pthread_mutex_destroy(&sv->drive_mu);
    pthread_mutex_destroy(&sv->ck_mu);
    pthread_rwlock_destroy(&sv->apply_lock);
}

/* Server 0 at the end: last evaluation and the summary. */
/* A worker's gradients per second between its first and last request
 * (local steps per second in local_sgd and easgd: local_steps per model);
 * NAN with fewer than two requests. */
static double grads_per_s(const server *sv, const peer *p)
{
    double span = p->last_t - p->first_t;
    if (p->requests < 2 || !(span > 0))
        return NAN;
    int per = mode_of(sv)->local_steps ? sv->cfg->training.local_steps : 1;
    return (double)(p->requests - 1) * per / span;
}

static int finish(server *sv, double cpu0)
{
    PD_TRY(pd_eval_thread_stop(&sv->et));
    float *theta = pd_malloc(sv->n * sizeof *theta);
    if (!theta)
        return PD_ENOMEM;
    double others[PD_MAX_TENSORS];
    int err = gather(sv, theta, true, others);
    if (err == PD_OK)
        err = server_ckpt_final(sv);
    if (err == PD_OK)
        err = pd_trace_close(&sv->trace, sv->cfg->run.out_dir, sv->trace_n);
    pd_progress pg;
    progress(sv, &pg);
    int64_t hist[STALE_HIST];
    pd_run_stats rs = {
        .stale_hist = hist,
        .applied = atomic_load(&sv->applied),
        .sent = sv->sent_total,
        .bad = atomic_load(&sv->bad),
        .dropped_stale = atomic_load(&sv->dropped[PD_DROP_STALE]),
        .dropped_late = atomic_load(&sv->dropped[PD_DROP_LATE]),
        .dropped_at_stop = atomic_load(&sv->dropped[PD_DROP_AT_STOP]),
        .server_cpu_s = pd_cpu_process() - cpu0,
        .server_loop_cpu_s = sv->loop_cpu_s,
        .params_sent_floats = atomic_load(&sv->sent_floats),
        .evals_skipped = pd_eval_skips_total(&sv->skips, pg.update),
    };
    for (size_t i = 0; i < STALE_HIST; i++)
        if ((hist[i] = atomic_load(&sv->stale_hist[i])) != 0)
            rs.stale_hist_n = i + 1;
    /* What each server did (S > 1: every server follows one decision per
     * gradient, so the counts agree; server 0's own in entry 0). */
    int64_t sa[PD_MAX_SERVERS_STATS], sb[PD_MAX_SERVERS_STATS], sd[PD_MAX_SERVERS_STATS],
            sm[PD_MAX_SERVERS_STATS];
    rs.n_servers = sv->world->servers < PD_MAX_SERVERS_STATS ? sv->world->servers
                                                            : PD_MAX_SERVERS_STATS;
    for (int s = 0; s < rs.n_servers; s++) {
        sa[s] = s ? sv->others_applied[s] : rs.applied;
        sb[s] = s ? sv->others_bad[s] : rs.bad;
        sd[s] = s ? sv->others_dropped[s] : dropped_total(sv);
        /* 53 bits: exact in every JSON reader */
        sm[s] = (int64_t)((s ? (uint64_t)sv->others_mix[s] : atomic_load(&sv->applied_mix)) >> 11);
    }
    rs.server_applied = sa;
    rs.server_bad = sb;
    rs.server_dropped = sd;
    rs.server_applied_set = sm;
    pd_worker_stats ws[PD_MAX_WORKER_STATS];
    rs.n_workers = sv->world->workers < PD_MAX_WORKER_STATS ? sv->world->workers
                                                           : PD_MAX_WORKER_STATS;
    rs.workers = ws;
    for (int w = 0; w < rs.n_workers; w++) {
        const peer *p = &sv->peers[w];
        ws[w] = (pd_worker_stats){.rank = pd_worker_rank(sv->world, w), .applied = p->applied,
                                  .dropped = p->dropped,
                                  .grads_per_s = grads_per_s(sv, p),
                                  .staleness_mean = p->applied ? (double)p->stale_sum /
                                                                     (double)p->applied : NAN,
                                  .epochs = p->epoch, .lost_update = -1};
        for (size_t i = 0; i < pg.n_lost; i++)   /* lost and not back (a --resume) */
            if (sv->lost[i].worker == w)
                ws[w].lost_update = sv->lost[i].rejoined < 0 ? sv->lost[i].update : -1;
    }
    const char *exit = pd_ckpt_stop_requested() ? "signal"
                       : sv->early_stopped ? "early_stopped"
                       : sv->cfg->training.max_updates > 0 &&
                         pg.update >= sv->cfg->training.max_updates ? "max_updates" : "done";
    /* A phase before the last keeps its entry for the summary, unless a
     * signal stops the run here (then this is its summary, and the end). */
    bool more = sv->carry && sv->carry->index + 1 < sv->carry->count &&
                !pd_ckpt_stop_requested();
    if (err == PD_OK && more)
        err = pd_evaluator_phase_end(sv->ev, theta, &pg, &rs, exit);
    else if (err == PD_OK)
        err = pd_evaluator_finish(sv->ev, theta, &pg, &rs, exit);
    free(theta);
    return err;
}

/* ---- training.phases (paramd/phase.h) ------------------------------------ */

/* What the previous phase handed over in this process (NULL: the first
 * phase, or the one --resume continues). */
static pd_phase_server *carried(const server *sv)
{
    const pd_phase_carry *c = sv->carry;
    return c && c->index > 0 && !c->record ? c->server : NULL;
}

/* Server 0: the record of the checkpoint at update v (paramd/phase.h). */
int server_phase_record(server *sv, int64_t v)
{
    const pd_phase_carry *c = sv->carry;
    int W = sv->world->workers;
    pd_phase_record r = {.index = c->index, .count = c->count, .workers = W,
                         .epoch_base = c->server->epoch_base};
    int64_t *zero = NULL;
    if (!r.epoch_base && !(r.epoch_base = zero = pd_calloc((size_t)W, sizeof *zero)))
        return PD_ENOMEM;
    pd_evaluator_phase_state(sv->ev, &r);
    int err = pd_phase_record_write(sv->ck.dir, (uint64_t)v, &r);
    free(zero);
    return err;
}

/* Server 0 at a phase's end: the epochs each worker has done, from the
 * states they sent before FINAL, which the next phase's epochs count from. */
static int next_epoch_base(server *sv, pd_phase_server *to)
{
    int W = sv->world->workers;
    if (!to->epoch_base && !(to->epoch_base = pd_calloc((size_t)W, sizeof *to->epoch_base)))
        return PD_ENOMEM;
    for (int w = 0; w < W; w++) {
        const unsigned char *iter;
        size_t size;
        pd_ckpt_wstate ws;
        if (!sv->ck.state[w])
            return PD_FAIL(PD_ETRAIN, "phase %d: no final state of worker %d", sv->carry->index, w);
        PD_TRY(pd_worker_state_split(sv->ck.state[w], sv->ck.state_size[w], &iter, &size, &ws));
        PD_TRY(pd_iter_state_epoch(iter, size, &to->epoch_base[w]));
    }
    return PD_OK;
}

/* The run so far into this phase's fresh server (after setup). */
static void carry_in(server *sv, const pd_phase_server *from)
{
    const pd_phase_counters *c = &from->c;
    atomic_store(&sv->version, c->version);
    atomic_store(&sv->applied, c->applied);
    atomic_store(&sv->bad, c->bad);
    atomic_store(&sv->examples, c->examples);
    atomic_store(&sv->stale_sum, c->stale_sum);
    atomic_store(&sv->stale_max, c->stale_max);
    for (int k = 0; k < PD_DROP_KINDS; k++)
        atomic_store(&sv->dropped[k], c->dropped[k]);
    for (int i = 0; i < STALE_HIST; i++)
        atomic_store(&sv->stale_hist[i], c->stale_hist[i]);
    atomic_store(&sv->applied_mix, c->applied_mix);
    sv->sent_total = c->sent_total;
    atomic_store(&sv->sent_floats, c->sent_floats);
    sv->skips = (pd_eval_skips){c->evals_skipped, c->skipped_at};
    atomic_store(&sv->next_eval, c->next_eval);
    atomic_store(&sv->last_eval_update, c->last_eval_update);
    atomic_store(&sv->last_eval_t, c->last_eval_t);
    atomic_store(&sv->loss_sum, c->loss_sum);
    atomic_store(&sv->loss_n, c->loss_n);
    sv->loss_mark_sum = c->loss_mark_sum;
    sv->loss_mark_n = c->loss_mark_n;
    sv->loop_cpu_s = c->loop_cpu_s;
    for (int w = 0; w < sv->world->workers; w++) {
        sv->peers[w].applied = from->w_applied[w];
        sv->peers[w].dropped = from->w_dropped[w];
        sv->peers[w].stale_sum = from->w_stale[w];
    }
}

static void evaluator_free(void *ev)
{
    pd_evaluator *e = ev;
    pd_evaluator_destroy(&e);
}

/* This phase's end into the hand-over (every worker has sent FINAL). */
static int carry_out(server *sv, pd_phase_server *to)
{
    int W = sv->world->workers;
    if (!to->theta && !(to->theta = pd_malloc(sv->n * sizeof *to->theta)))
        return PD_ENOMEM;
    if (!to->w_applied && (!(to->w_applied = pd_calloc((size_t)W, sizeof *to->w_applied)) ||
                           !(to->w_dropped = pd_calloc((size_t)W, sizeof *to->w_dropped)) ||
                           !(to->w_stale = pd_calloc((size_t)W, sizeof *to->w_stale))))
        return PD_ENOMEM;
    to->n = sv->n;
    to->workers = W;
    memcpy(to->theta, sv->theta, sv->n * sizeof *to->theta);
    size_t size = pd_optim_state_size(sv->opt);
    unsigned char *opt = pd_malloc(size ? size : 1);
    if (!opt)
        return PD_ENOMEM;
    free(to->opt);
    to->opt = opt;
    to->opt_size = size;
    PD_TRY(pd_optim_save(sv->opt, to->opt, size));
    pd_phase_counters *c = &to->c;
    c->version = atomic_load(&sv->version);
    c->applied = atomic_load(&sv->applied);
    c->bad = atomic_load(&sv->bad);
    c->examples = atomic_load(&sv->examples);
    c->stale_sum = atomic_load(&sv->stale_sum);
    c->stale_max = atomic_load(&sv->stale_max);
    for (int k = 0; k < PD_DROP_KINDS; k++)
        c->dropped[k] = atomic_load(&sv->dropped[k]);
    for (int i = 0; i < STALE_HIST; i++)
        c->stale_hist[i] = atomic_load(&sv->stale_hist[i]);
    c->applied_mix = atomic_load(&sv->applied_mix);
    c->sent_total = sv->sent_total;
    c->sent_floats = atomic_load(&sv->sent_floats);
    c->evals_skipped = sv->skips.count;
    c->skipped_at = sv->skips.at;
    c->next_eval = atomic_load(&sv->next_eval);
    c->last_eval_update = atomic_load(&sv->last_eval_update);
    c->last_eval_t = atomic_load(&sv->last_eval_t);
    c->loss_sum = atomic_load(&sv->loss_sum);
    c->loss_n = atomic_load(&sv->loss_n);
    for (int w = 0; w < W; w++) {   /* the peers' losses go into the server's */
        c->loss_sum += atomic_load(&sv->peers[w].loss_sum);
        c->loss_n += atomic_load(&sv->peers[w].loss_n);
        to->w_applied[w] = sv->peers[w].applied;
        to->w_dropped[w] = sv->peers[w].dropped;
        to->w_stale[w] = sv->peers[w].stale_sum;
    }
    c->loss_mark_sum = sv->loss_mark_sum;
    c->loss_mark_n = sv->loss_mark_n;
    c->loop_cpu_s = sv->loop_cpu_s;
    if (sv->world->index == 0)
        PD_TRY(next_epoch_base(sv, to));
    if (sv->ev) {   /* the next phase's server 0 takes it */
        to->evaluator = sv->ev;
        to->evaluator_free = evaluator_free;
        sv->ev = NULL;
    }
    return PD_OK;
}

static int server_main(const pd_config *cfg, const pd_run_opts *opts, pd_world *world,
                       pd_phase_carry *carry, double cpu0);

int pd_server_phase(const pd_config *cfg, const pd_run_opts *opts, pd_world *world,
                    pd_phase_carry *c)
{
    pd_phase_server *sc;
    PD_TRY(pd_phase_server_get(c, &sc));
    if (c->index == 0 || c->record)
        sc->cpu0 = pd_cpu_process();
    if (c->record && world->index == 0) {   /* --resume: the phase's, from its record */
        size_t W = (size_t)c->record->workers;
        if (!(sc->epoch_base = pd_malloc(W * sizeof *sc->epoch_base)))
            return PD_ENOMEM;
        memcpy(sc->epoch_base, c->record->epoch_base, W * sizeof *sc->epoch_base);
    }
    return server_main(cfg, opts, world, c, sc->cpu0);
}

int pd_server_run(const pd_config *cfg, const pd_run_opts *opts, pd_world *world)
{
    return server_main(cfg, opts, world, NULL, pd_cpu_process());
}

static int server_main(const pd_config *cfg, const pd_run_opts *opts, pd_world *world,
                       pd_phase_carry *carry, double cpu0)
{
    server sv = {.carry = carry};
    int err = pd_comm_agree(world, setup(&sv, cfg, opts, world));
    if (err == PD_OK && carried(&sv))
        carry_in(&sv, carried(&sv));
    if (err == PD_OK && carry && carry->record)   /* --resume: sent before this phase */
        sv.sent_total = carry->record->start.sent;
    if (err == PD_OK)
        err = server_ckpt_start(&sv);
    if (err == PD_OK)
        err = serve_all(&sv);
    if (err == PD_OK && world->index == 0)
        err = finish(&sv, cpu0);
    if (err == PD_OK && world->index == 0 && pd_ckpt_stop_requested())
        err = server_ckpt_stopped(&sv);
    for (int w = 0; err == PD_OK && w < world->workers; w++) {
        if (!sv.peers[w].lost)   /* a lost one's were freed */
            err = pd_comm_waitall(2, sv.peers[w].rout);
        if (err == PD_OK && sv.decides)   /* to servers, lost worker or not */
            err = pd_comm_waitall(world->servers - 1, sv.peers[w].dsend + 1);
        if (err == PD_OK && sv.peers[w].dreq != MPI_REQUEST_NULL) {
            /* The receive of a decision that never comes. */
            int rc = MPI_Cancel(&sv.peers[w].dreq);
            err = rc == MPI_SUCCESS ? pd_comm_wait(&sv.peers[w].dreq, NULL)
                                    : pd_mpi_fail(rc, "MPI_Cancel", __FILE__, __LINE__, __func__);
        }
    }
    int end = server_rounds_end(&sv);
    if (err == PD_OK)
        err = end;
    if (err == PD_OK && carry)
        err = carry_out(&sv, carry->server);
    teardown(&sv);
    return err;
}
