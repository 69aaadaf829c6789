/* Lost workers (training.worker_timeout). Open MPI 4.1 has no ULFM: a
 * killed rank is seen only as silence (mpirun --enable-recovery keeps the
 * others running). A server counts a worker lost when it has waited longer
 * than the timeout for it: for its next request after the last reply, for
 * the rest of a message it started, or for a reply to it to leave. Its
 * pending requests are freed, it no longer counts as active (rounds close
 * without it, SSP clocks ignore it, the loop does not wait for its FINAL),
 * the gradients received from it are its gradients sent, and its shard is
 * untrained from then on. Async, hogwild and sync with backup workers go
 * on; sync without backups, local_sgd and easgd cannot and fail.
 *
 * With S > 1 servers only server 0 judges (docs/design.md, "Lost workers
 * with several servers"): it sends the others a LOST decision on the
 * worker's decision tag, after every decision on its earlier gradients;
 * the others never time a worker out themselves. A worker sends each
 * request to servers 1..S-1 first and to server 0 only once those sends
 * are complete, so whatever server 0 received every server has: a
 * gradient the others hold beyond LOST's count is dropped there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "server_impl.h"

/* Free a request that may never complete (its peer is gone). */
static void drop_request(MPI_Request *r, bool cancel)
{
    if (*r == MPI_REQUEST_NULL)
        return;
    if (cancel)
        (void)MPI_Cancel(r);
    (void)MPI_Request_free(r);
    *r = MPI_REQUEST_NULL;
}

/* Servers > 0: server 0's word on worker w came (a LOST decision). */
static bool told_lost(const server *sv, int w)
{
    return sv->follows && sv->peers[w].din.outcome == PD_OUT_LOST;
}

int server_lose_worker(server *sv, int w, const char *what)
{
    peer *p = &sv->peers[w];
    const pd_mode_props *m = mode_of(sv);
    const pd_training_config *tc = &sv->cfg->training;
    int rank = pd_worker_rank(sv->world, w);
    if (m->local_steps || (m->rounds && tc->backup_workers == 0))
        return PD_FAIL(PD_ETRAIN, "worker %d (rank %d) lost: %s for %g s "
                       "(training.worker_timeout); %s mode cannot go on without it (async, "
                       "hogwild and sync with training.backup_workers can)", w, rank, what,
                       tc->worker_timeout, pd_mode_name(tc->mode));
    /* Receives are cancelled, replies abandoned: the rank is gone. */
    drop_request(&sv->hreq[w], true);
    drop_request(&p->rpay, true);
    p->partial = false;
    drop_request(&p->rout[0], false);
    drop_request(&p->rout[1], false);
    if (sv->decides) {   /* after its earlier decisions, on the same tag */
        pd_decision d = {.seq = p->clock, .made = -1, .outcome = PD_OUT_LOST};
        PD_TRY(server_send_decision(sv, w, &d));
    }
    if (sv->casts)   /* after the rounds it was in (rounds.c) */
        PD_TRY(server_cast(sv, PD_RM_LOST, w, PD_DROP_AT_STOP));
    atomic_store(&sv->lost_t, pd_now());
    if (m->ssp)
        p->waiting = false;   /* a held reply that will never be sent */
    int64_t update = atomic_load(&sv->version);
    double wall = sv->ev ? pd_evaluator_wall(sv->ev) : 0;
    /* Under mu with its entry: a checkpoint snapshot sees both or neither. */
    pthread_mutex_lock(&sv->mu);
    p->lost = true;
    p->active = false;
    /* What arrived of what it sent, over the whole run (a FINAL's count is
     * the whole run's too): its requests before this process (a resumed
     * run's, server 0) and those since. */
    sv->sent_total += p->seq0 + p->clock;
    size_t i = atomic_load(&sv->n_lost);
    sv->lost[i] = (pd_lost_worker){.worker = w, .rank = rank, .last_update = p->seen,
                                   .update = update, .wall_s = wall, .rejoined = -1};
    sv->lost_sent[i] = p->seq0 + p->clock;
    atomic_store(&sv->n_lost, i + 1);
    pthread_mutex_unlock(&sv->mu);
    atomic_fetch_sub(&sv->active, 1);
    atomic_store(&sv->lost_new, true);
    if (server_told(sv))
        fprintf(stderr, "paramd: server %d: worker %d (rank %d) lost at update %lld, as server 0 "
                "says\n", sv->world->index, w, rank, (long long)update);
    else
        fprintf(stderr, "paramd: warning: worker %d (rank %d) lost at update %lld: %s for %g s "
                "(training.worker_timeout); training goes on without it\n", w, rank,
                (long long)update, what, tc->worker_timeout);
    return server_ckpt_on_lost(sv, w);   /* a checkpoint no longer waits for it */
}

/* Servers > 0: has server 0's LOST decision on worker w come? A decision
 * on its next gradient that came first is kept (dreq left NULL) for
 * follow() to take; *lost is set when w is lost now. */
static int notice(server *sv, int w, bool *lost)
{
    peer *p = &sv->peers[w];
    *lost = false;
    if (sv->hears) {   /* LOST comes in server 0's round stream */
        PD_TRY(server_hear(sv));
        *lost = p->lost;
        return PD_OK;
    }
    if (p->dreq != MPI_REQUEST_NULL) {
        int done = 0;
        PD_MPI(MPI_Test(&p->dreq, &done, MPI_STATUS_IGNORE));
        if (!done)
            return PD_OK;
    }
    if (!told_lost(sv, w))
        return PD_OK;
    *lost = true;
    return server_lose_worker(sv, w, "server 0 says so");
}

/* Servers > 0 in a mode that goes on: no timeouts of their own, only
 * server 0's word. A worker silent for 3T without it means server 0 is
 * gone; a decision held that long without the gradient it is about, a
 * gradient server 0 has and this server never will (the servers would
 * disagree): either way the run fails saying so. */
static int check_told(server *sv, int first, int stride)
{
    double now = pd_now();
    for (int w = first; w < sv->world->workers; w += stride) {
        peer *p = &sv->peers[w];
        if (!p->active || p->waiting)
            continue;
        bool lost;
        PD_TRY(notice(sv, w, &lost));
        if (lost || !p->hello || now - p->since <= 3 * sv->worker_timeout)
            continue;
        if (sv->follows && p->dreq == MPI_REQUEST_NULL)
            return PD_FAIL(PD_EMPI, "server %d: worker %d's request %lld, which server 0 "
                           "decided on, has not come for %g s (3 x training.worker_timeout)",
                           sv->world->index, w, (long long)p->din.seq, 3 * sv->worker_timeout);
        return PD_FAIL(PD_EMPI, "server %d: worker %d (rank %d) silent for %g s (3 x "
                       "training.worker_timeout) and no word from server 0 (rank 0): server 0 "
                       "lost?", sv->world->index, w, pd_worker_rank(sv->world, w),
                       3 * sv->worker_timeout);
    }
    return PD_OK;
}

bool server_told(const server *sv)
{
    return (sv->follows || sv->hears) && sv->worker_timeout > 0;
}

int server_check_lost(server *sv, int first, int stride)
{
    if (sv->worker_timeout <= 0)
        return PD_OK;
    if (server_told(sv))
        PD_TRY(check_told(sv, first, stride));
    /* One worker per pass, the one silent longest, and every other one
     * watched afresh from a loss on: with S > 1 a worker that died between
     * its sends holds up a server s > 0 (it waits for server 0's word on
     * the gradient only it got), and with it the workers it serves next,
     * until the dead one is lost; they must not be taken for lost too. */
    double now = pd_now(), fresh = atomic_load(&sv->lost_t), oldest = INFINITY;
    int victim = -1;
    for (int w = first; !server_told(sv) && w < sv->world->workers; w += stride) {
        peer *p = &sv->peers[w];
        double since = p->since > fresh ? p->since : fresh;
        if (!p->active || !p->hello || p->waiting || now - since <= sv->worker_timeout)
            continue;
        /* A request that came while this thread was busy elsewhere (say,
         * waiting on another lost worker) is not silence. */
        int came = 0;
        if (sv->hreq[w] != MPI_REQUEST_NULL)
            PD_MPI(MPI_Request_get_status(sv->hreq[w], &came, MPI_STATUS_IGNORE));
        if (!came && p->since < oldest) {
            oldest = p->since;
            victim = w;
        }
    }
    if (victim >= 0)
        PD_TRY(server_lose_worker(sv, victim, "no message from it"));
    if (!atomic_exchange(&sv->lost_new, false))
        return PD_OK;
    if (mode_of(sv)->rounds)
        return server_maybe_close_round(sv);
    if (mode_of(sv)->ssp && sv->cfg->training.max_staleness >= 0)
        return server_release_waiting(sv);
    return PD_OK;
}

int server_wait_worker(server *sv, int w, int n, MPI_Request *reqs, bool *lost)
{
    *lost = false;
    if (sv->worker_timeout <= 0)
        return pd_comm_waitall(n, reqs);
    if (server_told(sv)) {
        /* Until the requests complete or server 0 says it is lost. */
        pd_backoff b = {0};
        for (;;) {
            int done = 0;
            PD_MPI(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE));
            if (done)
                return PD_OK;
            PD_TRY(notice(sv, w, lost));
            if (*lost)
                return PD_OK;
            pd_backoff_sleep(&b);
        }
    }
    bool expired;
    PD_TRY(pd_comm_waitall_until(n, reqs, pd_now() + sv->worker_timeout, &expired));
    if (!expired)
        return PD_OK;
    *lost = true;
    return server_lose_worker(sv, w, "a message to or from it did not move");
}
