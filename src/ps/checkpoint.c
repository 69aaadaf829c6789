/* What goes into a checkpoint and when, shared by the serial trainer and
 * the distributed modes (checkpoint.h): the hashes, the cadence, the rows
 * of metrics.jsonl a resumed run keeps, a worker's state as a message, and
 * the requests that signals make (paramd/signals.h). */
#include <errno.h>
#include <math.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "paramd/error.h"
#include "paramd/le.h"
#include "paramd/signals.h"

int pd_ckpt_hashes(const pd_model *m, const pd_config *cfg, int workers, uint64_t *layout,
                   uint64_t *config)
{
    size_t nt = pd_model_ntensors(m);
    pd_tensor_info *t = pd_calloc(nt + 1, sizeof *t);
    if (!t)
        return PD_ENOMEM;
    for (size_t i = 0; i < nt; i++)
        t[i] = *pd_model_tensor(m, i);
    *layout = pd_ckpt_layout_hash(t, nt);
    free(t);
    *config = pd_ckpt_config_hash(cfg, workers);
    return PD_OK;
}

int pd_ckpt_dir(const char *run_dir, char *out, size_t size)
{
    if (snprintf(out, size, "%s/checkpoints", run_dir) >= (int)size)
        return PD_FAIL(PD_EINPUT, "%s: run directory path too long", run_dir);
    return PD_OK;
}

bool pd_ckpt_due(const pd_config *cfg, int64_t t, double last_t)
{
    const pd_checkpoint_config *k = &cfg->checkpoint;
    return (k->every_updates > 0 && t % k->every_updates == 0) ||
           (k->every_seconds > 0 && pd_now() - last_t >= k->every_seconds);
}

bool pd_ckpt_enabled(const pd_config *cfg, const pd_run_opts *opts)
{
    return cfg->checkpoint.every_updates > 0 || cfg->checkpoint.every_seconds > 0 ||
           opts->resume;
}

/* ---- metrics.jsonl of a resumed run ---------------------------------------- */

int pd_ckpt_rows_read(const char *out_dir, int64_t upto, char **out, size_t *len)
{
    char path[PD_PATH_MAX + 16];
    if (snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir) >= (int)sizeof path)
        return PD_FAIL(PD_EINPUT, "run.out_dir: %s: path too long", out_dir);
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return PD_OK;
    char *line = NULL, *buf = NULL;
    size_t cap = 0, n = 0;
    ssize_t got;
    int err = PD_OK;
    while ((got = getline(&line, &cap, f)) > 0) {
        const char *u = strstr(line, "\"update\":");
        if (!u || line[got - 1] != '\n' || strtoll(u + 9, NULL, 10) > upto)
            continue;
        char *g = realloc(buf, n + (size_t)got);
        if (!g) {
            err = PD_FAIL(PD_ENOMEM, "%s: cannot hold its rows", path);
            break;
        }
        buf = g;
        memcpy(buf + n, line, (size_t)got);
        n += (size_t)got;
    }
    free(line);
    fclose(f);
    if (err) {
        free(buf);
        return err;
    }
    *out = buf;
    *len = n;
    return PD_OK;
}

int pd_ckpt_rows_write(const char *out_dir, const char *rows, size_t n)
{
    if (n == 0)
        return PD_OK;
    char path[PD_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    FILE *f = fopen(path, "a");
    if (!f)
        return PD_FAIL(PD_EIO, "%s: cannot append: %s", path, strerror(errno));
    bool ok = fwrite(rows, 1, n, f) == n;
    if (fclose(f) != 0 || !ok)
        return PD_FAIL(PD_EIO, "%s: write failed: %s", path, strerror(errno));
    return PD_OK;
}

int pd_ckpt_resume_eval(pd_evaluator *ev, const pd_ckpt_part *p, const char *ckpt_dir)
{
    char from[PD_PATH_MAX + 64];
    snprintf(from, sizeof from, "%s/ckpt-%012" PRIu64, ckpt_dir, p->updates);
    pd_eval_state es = {
        .wall_s = p->wall_s, .pause_sum = p->pause_sum, .pause_max = p->pause_max,
        .pauses = p->pauses, .best_loss = p->best_loss, .best_update = p->best_update,
        .bad_evals = p->bad_evals, .last_eval = p->last_eval, .best = p->best,
        .nbest = p->nbest, .from = from, .from_update = (int64_t)p->updates,
    };
    return pd_evaluator_set_state(ev, &es);
}

void pd_ckpt_eval_put(const pd_evaluator *ev, pd_ckpt_part *p)
{
    pd_eval_state es = {.best_loss = INFINITY, .best_update = -1, .last_eval = -1};
    if (ev)
        pd_evaluator_get_state(ev, &es);
    p->wall_s = es.wall_s;
    p->pause_sum = es.pause_sum;
    p->pause_max = es.pause_max;
    p->pauses = es.pauses;
    p->best_loss = es.best_loss;
    p->best_update = es.best_update;
    p->bad_evals = es.bad_evals;
    p->last_eval = es.last_eval;
    p->nbest = es.best_update >= 0 ? es.nbest : 0;
    p->best = p->nbest ? (float *)es.best : NULL;
}

/* ---- a worker's state -------------------------------------------------------- */

enum { WSTATE = PD_CKPT_WSTATE };

int pd_worker_state_build(const unsigned char *iter, size_t iter_size, const pd_ckpt_wstate *w,
                          unsigned char **buf, size_t *size)
{
    size_t n = 8 + iter_size + WSTATE + w->optim_size;
    unsigned char *b = pd_malloc(n);
    if (!b)
        return PD_ENOMEM;
    pd_le_put64(b, iter_size);
    if (iter_size)
        memcpy(b + 8, iter, iter_size);
    unsigned char *q = b + 8 + iter_size;
    pd_le_put64(q, (uint64_t)w->seq);
    pd_le_put64(q + 8, (uint64_t)w->examples);
    pd_le_put64(q + 16, (uint64_t)w->local_t);
    pd_le_put64(q + 24, (uint64_t)w->stale_sum);
    for (int k = 0; k < 4; k++)
        pd_le_put64(q + 32 + 8 * k, w->rng[k]);
    pd_le_put64(q + 64, w->optim_size);
    if (w->optim_size)
        memcpy(q + WSTATE, w->optim, w->optim_size);
    *buf = b;
    *size = n;
    return PD_OK;
}

int pd_worker_state_split(const unsigned char *buf, size_t size, const unsigned char **iter,
                          size_t *iter_size, pd_ckpt_wstate *w)
{
    uint64_t li = size >= 8 ? pd_le_get64(buf) : UINT64_MAX;
    if (li == UINT64_MAX || li > size - 8 || size - 8 - li < WSTATE)
        return PD_FAIL(PD_EINPUT, "worker state: %zu bytes do not hold what they announce", size);
    const unsigned char *q = buf + 8 + li;
    uint64_t lo = pd_le_get64(q + 64);
    if (lo != size - 8 - li - WSTATE)
        return PD_FAIL(PD_EINPUT, "worker state: %zu bytes do not hold what they announce", size);
    *iter = buf + 8;
    *iter_size = li;
    *w = (pd_ckpt_wstate){
        .seq = (int64_t)pd_le_get64(q), .examples = (int64_t)pd_le_get64(q + 8),
        .local_t = (int64_t)pd_le_get64(q + 16), .stale_sum = (int64_t)pd_le_get64(q + 24),
        .optim = lo ? (unsigned char *)(q + WSTATE) : NULL, .optim_size = lo,
    };
    for (int k = 0; k < 4; k++)
        w->rng[k] = pd_le_get64(q + 32 + 8 * k);
    return PD_OK;
}

int pd_worker_state_pack(const pd_worker_state *ws, unsigned char **buf, size_t *size)
{
    size_t isz = pd_iter_state_size(ws->l->iter);
    size_t lsz = ws->local ? pd_optim_state_size(ws->local)
                           : ws->carries ? ws->carried_size : 0;
    size_t osz = lsz + 4 * ws->nmodel;
    unsigned char *ib = pd_malloc(isz + 1), *ob = pd_malloc(osz + 1);
    int err = PD_OK;
    if (!ib || !ob) {
        err = PD_ENOMEM;
        goto out;
    }
    PD_TRY_GOTO(err, pd_iter_save_before(ws->l->iter, ws->drawn, ib, isz), out);
    if (ws->local)
        PD_TRY_GOTO(err, pd_optim_save(ws->local, ob, lsz), out);
    else if (lsz)
        memcpy(ob, ws->carried, lsz);
    for (size_t i = 0; i < ws->nmodel; i++) {
        uint32_t u;
        memcpy(&u, &ws->model[i], sizeof u);
        pd_le_put32(ob + lsz + 4 * i, u);
    }
    pd_ckpt_wstate w = {.seq = ws->seq, .examples = ws->l->examples, .local_t = ws->local_t,
                        .optim = ob, .optim_size = osz};
    memcpy(w.rng, ws->rng.s, sizeof w.rng);
    err = pd_worker_state_build(ib, isz, &w, buf, size);
out:
    free(ib);
    free(ob);
    return err;
}

int pd_worker_state_unpack(pd_worker_state *ws, const unsigned char *buf, size_t size)
{
    const unsigned char *iter;
    size_t isz;
    pd_ckpt_wstate w;
    PD_TRY(pd_worker_state_split(buf, size, &iter, &isz, &w));
    if (isz == 0 && w.optim_size == 0 && w.seq == 0) {
        /* None saved (a worker lost before the first checkpoint it would
         * have been in): its fresh state, as it is. */
        ws->seq = 0;
        return PD_OK;
    }
    if (!ws->local && ws->carries) {
        /* The local optimizer of an earlier phase, kept as it came: the
         * next local phase loads (and checks) it. */
        if (w.optim_size == 0)
            return PD_FAIL(PD_EINPUT, "worker state: no local optimizer of the earlier "
                           "local_sgd or easgd phase (a checkpoint of format 4 does not keep "
                           "it: resume this phase with the paramd that wrote it)");
        PD_TRY(pd_iter_load(ws->lw->iter, iter, isz));
        if (!(ws->carried = pd_malloc(w.optim_size)))
            return PD_ENOMEM;
        memcpy(ws->carried, w.optim, w.optim_size);
        ws->carried_size = w.optim_size;
    } else {
        size_t lsz = ws->local ? pd_optim_state_size(ws->local) : 0;
        if (w.optim_size != lsz + 4 * ws->nmodel)
            return PD_FAIL(PD_EINPUT, "worker state: %zu bytes of local optimizer and model, "
                           "this worker's are %zu", w.optim_size, lsz + 4 * ws->nmodel);
        PD_TRY(pd_iter_load(ws->lw->iter, iter, isz));
        if (ws->local)
            PD_TRY(pd_optim_load(ws->local, w.optim, lsz));
    }
    size_t lsz = ws->local ? pd_optim_state_size(ws->local) : 0;
    for (size_t i = 0; i < ws->nmodel; i++) {
        uint32_t u = pd_le_get32(w.optim + lsz + 4 * i);
        memcpy(&ws->model[i], &u, sizeof u);
    }
    ws->lw->examples = w.examples;
    ws->seq = w.seq;
    ws->local_t = w.local_t;
    memcpy(ws->rng.s, w.rng, sizeof w.rng);
    return PD_OK;
}

int pd_worker_state_post(const pd_worker_state *ws, MPI_Request *r, unsigned char **buf)
{
    size_t n;
    PD_TRY(pd_worker_state_pack(ws, buf, &n));
    int rc = MPI_Isend(*buf, (int)n, MPI_BYTE, pd_server_rank(0), PD_TAG_CKPT, MPI_COMM_WORLD, r);
    if (rc != MPI_SUCCESS) {
        free(*buf);
        *buf = NULL;
        return pd_mpi_fail(rc, "MPI_Isend", __FILE__, __LINE__, __func__);
    }
    return PD_OK;
}

int pd_worker_state_send(const pd_worker_state *ws)
{
    unsigned char *b;
    MPI_Request r;
    PD_TRY(pd_worker_state_post(ws, &r, &b));
    int err = pd_comm_wait(&r, NULL);
    free(b);
    return err;
}

int pd_worker_state_recv(pd_worker_state *ws, int64_t *skip)
{
    unsigned char *b;
    size_t n;
    PD_TRY(pd_comm_recv_bytes(pd_server_rank(0), PD_TAG_CKPT, &b, &n));
    int err = n >= 8 ? pd_worker_state_unpack(ws, b, n - 8)
                     : PD_FAIL(PD_EMPI, "worker state: %zu bytes from server 0", n);
    if (err == PD_OK)
        *skip = (int64_t)pd_le_get64(b + n - 8);
    if (err == PD_OK && *skip < 0)
        err = PD_FAIL(PD_EMPI, "worker state: %lld minibatches to skip", (long long)*skip);
    free(b);
    return err;
}

/* ---- requests: signals ------------------------------------------------------- */

static atomic_bool stop_taken;

bool pd_ckpt_take_request(bool *stop)
{
    *stop = pd_signals_stop() != 0 && !atomic_load(&stop_taken);
    if (*stop)
        atomic_store(&stop_taken, true);
    bool ckpt = pd_signals_take_checkpoint();
    return *stop || ckpt;
}

bool pd_ckpt_stop_requested(void)
{
    return atomic_load(&stop_taken);
}
