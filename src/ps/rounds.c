/* Sync rounds with backup workers on S > 1 servers. Each server alone
 * would close a round on the first active - b gradients it received, and
 * two servers can receive them in different orders: their shards would
 * step on different gradient sets. So server 0 decides, and tells the
 * others in one ordered stream (PD_TAG_ROUND): ROUND (these workers'
 * gradients make the next round), LATE (worker w's gradient is dropped
 * and answered now) and LOST (worker w is lost, lost.c). The others never
 * close a round, drop a late gradient or lose a worker on their own; they
 * do server 0's messages in order, each once the gradients it names have
 * come (a worker sends to servers 1..S-1 before server 0 under a worker
 * timeout, so they come). The protocol: docs/design.md, "Lost workers
 * with several servers". */
#include <stdlib.h>
#include <string.h>

#include "server_impl.h"

static size_t msg_size(const server *sv)
{
    return sizeof(pd_round_msg) + (size_t)sv->world->workers;
}

static int post(server *sv)
{
    PD_MPI(MPI_Irecv(sv->rbuf, (int)msg_size(sv), MPI_BYTE, 0, PD_TAG_ROUND, MPI_COMM_WORLD,
                     &sv->rreq));
    return PD_OK;
}

int server_rounds_setup(server *sv)
{
    bool on = sv->world->servers > 1 && mode_of(sv)->rounds && !mode_of(sv)->local_steps &&
              sv->cfg->training.backup_workers > 0;
    sv->casts = on && sv->world->index == 0;
    sv->hears = on && sv->world->index > 0;
    sv->rreq = MPI_REQUEST_NULL;
    if (!on)
        return PD_OK;
    if (!(sv->rbuf = pd_calloc(msg_size(sv), 1)))
        return PD_ENOMEM;
    return sv->hears ? post(sv) : PD_OK;
}

int server_rounds_end(server *sv)
{
    int err = PD_OK;
    if (sv->rreq != MPI_REQUEST_NULL) {   /* the receive of a message that never comes */
        int rc = MPI_Cancel(&sv->rreq);
        err = rc == MPI_SUCCESS ? pd_comm_wait(&sv->rreq, NULL)
                                : pd_mpi_fail(rc, "MPI_Cancel", __FILE__, __LINE__, __func__);
    }
    free(sv->rbuf);
    sv->rbuf = NULL;
    return err;
}

int server_cast(server *sv, int kind, int w, enum pd_drop_kind drop)
{
    pd_round_msg m = {.kind = kind, .worker = w, .version = atomic_load(&sv->version),
                      .drop = (int32_t)drop};
    memcpy(sv->rbuf, &m, sizeof m);
    unsigned char *members = sv->rbuf + sizeof m;
    for (int i = 0; i < sv->world->workers; i++)
        members[i] = kind == PD_RM_ROUND && sv->peers[i].waiting;
    int S = sv->world->servers;
    for (int s = 1; s < S; s++) {
        MPI_Request r;
        PD_MPI(MPI_Isend(sv->rbuf, (int)msg_size(sv), MPI_BYTE, pd_server_rank(s), PD_TAG_ROUND,
                         MPI_COMM_WORLD, &r));
        PD_TRY(pd_comm_wait(&r, NULL));   /* rbuf is written again next time */
    }
    return PD_OK;
}

/* ROUND: once every member's gradient is in, close the round on exactly
 * those (gradients of other workers wait aside for a later message). */
static int do_round(server *sv, const pd_round_msg *m, const unsigned char *members, bool *done)
{
    int W = sv->world->workers;
    *done = false;
    for (int w = 0; w < W; w++)
        if (members[w] && !sv->peers[w].waiting)
            return PD_OK;   /* not yet */
    if (m->version != atomic_load(&sv->version))
        return PD_FAIL(PD_EMPI, "server %d: server 0 closed a round at version %lld, this "
                       "server is at %lld", sv->world->index, (long long)m->version,
                       (long long)atomic_load(&sv->version));
    for (int w = 0; w < W; w++) {
        peer *p = &sv->peers[w];
        p->aside = p->waiting && !members[w];
        if (p->aside)
            p->waiting = false;
    }
    int err = server_close_round(sv);
    for (int w = 0; w < W; w++) {
        peer *p = &sv->peers[w];
        if (p->aside)
            p->waiting = true;
        p->aside = false;
    }
    *done = err == PD_OK;
    return err;
}

/* LATE: worker w's gradient is dropped and answered at this version. */
static int do_late(server *sv, const pd_round_msg *m, bool *done)
{
    peer *p = &sv->peers[m->worker];
    *done = false;
    if (!p->waiting)
        return PD_OK;   /* not yet */
    p->waiting = false;
    server_drop(sv, m->worker, (enum pd_drop_kind)m->drop);
    PD_TRY(server_reply(sv, m->worker, false));
    PD_TRY(server_post_recv(sv, m->worker));
    *done = true;
    return PD_OK;
}

/* LOST: a gradient it sent this server alone is dropped; it is lost. */
static int do_lost(server *sv, const pd_round_msg *m)
{
    peer *p = &sv->peers[m->worker];
    if (p->waiting) {
        p->waiting = false;
        server_drop(sv, m->worker, PD_DROP_AT_STOP);
    }
    return p->lost ? PD_OK : server_lose_worker(sv, m->worker, "server 0 says so");
}

static int test(MPI_Request *r, int *got)
{
    PD_MPI(MPI_Test(r, got, MPI_STATUS_IGNORE));
    return PD_OK;
}

int server_hear(server *sv)
{
    if (!sv->hears || sv->hearing)
        return PD_OK;
    sv->hearing = true;
    int err = PD_OK;
    for (;;) {
        if (!sv->rheld) {
            int got = 0;
            PD_TRY_GOTO(err, test(&sv->rreq, &got), out);
            if (!got)
                break;
            sv->rheld = true;
        }
        pd_round_msg m;
        memcpy(&m, sv->rbuf, sizeof m);
        if (m.kind != PD_RM_ROUND && (m.worker < 0 || m.worker >= sv->world->workers)) {
            err = PD_FAIL(PD_EMPI, "server %d: round message %d for worker %d", sv->world->index,
                          m.kind, m.worker);
            goto out;
        }
        bool done = true;
        if (m.kind == PD_RM_ROUND)
            PD_TRY_GOTO(err, do_round(sv, &m, sv->rbuf + sizeof m, &done), out);
        else if (m.kind == PD_RM_LATE)
            PD_TRY_GOTO(err, do_late(sv, &m, &done), out);
        else if (m.kind == PD_RM_LOST)
            PD_TRY_GOTO(err, do_lost(sv, &m), out);
        else {
            err = PD_FAIL(PD_EMPI, "server %d: unknown round message %d", sv->world->index, m.kind);
            goto out;
        }
        if (!done)
            break;   /* held until the gradients it names come */
        sv->rheld = false;
        PD_TRY_GOTO(err, post(sv), out);
    }
out:
    sv->hearing = false;
    return err;
}

MPI_Request *server_hear_request(server *sv)
{
    return sv->hears && !sv->rheld && sv->rreq != MPI_REQUEST_NULL ? &sv->rreq : NULL;
}
