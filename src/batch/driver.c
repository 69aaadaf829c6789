/* The batch methods' drivers: the full-batch objective over the training
 * part (or its first optimizer.batch_examples examples), computed serially
 * or by the workers of a sync job, handed to pd_batch_minimize; each
 * iteration is one row of metrics.jsonl.
 *
 * The objective is f(x) = (1/m) sum_k b_k L_k(x) over blocks k of BLOCK
 * consecutive examples (b_k examples, L_k the model's mean loss with its
 * l2 term), and g likewise. Each block's b_k L_k and b_k grad L_k are
 * doubles added to the total in block order, starting from zero. In a sync
 * job worker w computes the contiguous blocks [w K / W, (w+1) K / W) and
 * sends every block's row (n + 1 doubles); the server adds the rows in
 * worker order, that is block order, so the sums are the serial ones to
 * the bit whatever W is. Each worker reads the whole training part (its
 * blocks are a contiguous range of it, not a data.shard shard).
 *
 * cd (linreg) needs the data once: each block's row is then its part of
 * the sufficient statistics (G = Z'Z packed, Z'y, y'y, with z = (x, 1);
 * paramd/batch.h), reduced the same way, and pd_batch_cd works on their
 * sum alone.
 *
 * With S servers each runs the minimizer on its part [lo, hi) of the
 * parameters (pd_batch_part_range; the servers exchange dot products'
 * slice sums, pd_batch_comm). An evaluation: every server's part of the
 * point goes to every rank (an allgather), and each worker sends server s
 * its blocks' rows cut to s: the loss and the gradient on [lo, hi), or for
 * cd G's rows of s's coordinates (pd_batch_cd_range, unpacked), Z'y and
 * y'y. Each number is still the sum of the same block values in block
 * order, so S servers compute what one does to the bit. Server 0 gathers
 * the parameters and gradient for its evaluator after each iteration and
 * tells the others whether to stop and whether to checkpoint.
 *
 * Checkpoints (checkpoint.every_updates counts iterations, every_seconds,
 * SIGUSR1, a stop signal, and the boundary where the run ends by itself
 * when checkpoints are on, at an iteration boundary): each server
 * writes its part, its coordinates of the point (PARM) and the
 * minimizer's state over them (BTCH, pd_batch_save), server 0 with its
 * evaluator's state (RUNS); server 0 writes the manifest. --resume loads
 * them before anything is evaluated, and the minimizer goes on from the
 * boundary as if it had not stopped. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "driver.h"
#include "state.h"
#include "paramd/batch.h"
#include "paramd/ckpt.h"
#include "paramd/le.h"
#include "paramd/error.h"
#include "paramd/optim.h"
#include "paramd/signals.h"
#include "train.h"

#define BLOCK 1000

typedef struct objective {
    pd_data *data;
    const pd_dataset *train;
    pd_model *model;
    size_t n;               /* parameters */
    size_t len;             /* doubles in a block's row */
    bool stats;             /* cd: rows of sufficient statistics */
    size_t total, m;        /* examples in the training part, in the objective */
    size_t nblocks;
    size_t *rows;           /* [BLOCK] */
    float *grad;            /* [n] */
} objective;

/* A block's row: its loss and gradient sums (n + 1), or for cd its
 * statistics (p (p + 1) / 2 + p + 1 with p = n). */
static size_t stats_len(size_t n) { return n * (n + 1) / 2 + n + 1; }

static size_t row_len(const pd_config *cfg, size_t n)
{
    return cfg->optimizer.name == PD_OPT_CD ? stats_len(n) : n + 1;
}

/* Server s's coordinates of S: [*lo, *hi), and the length of a block's
 * row cut to them. */
static size_t server_part(const pd_config *cfg, size_t n, int S, int s, size_t *lo, size_t *hi)
{
    if (cfg->optimizer.name != PD_OPT_CD) {
        pd_batch_part_range(n, S, s, lo, hi);
        return 1 + (*hi - *lo);
    }
    pd_batch_cd_range(n, (size_t)cfg->optimizer.block_size, S, s, lo, hi);
    return S == 1 ? stats_len(n) : (*hi - *lo) * n + n + 1;
}

/* A block's full row cut to coordinates [lo, hi) of S servers. */
static void cut_row(const pd_config *cfg, size_t n, int S, size_t lo, size_t hi,
                    const double *full, double *out)
{
    if (cfg->optimizer.name != PD_OPT_CD) {
        out[0] = full[0];
        memcpy(out + 1, full + 1 + lo, (hi - lo) * sizeof *out);
        return;
    }
    if (S == 1) {
        memcpy(out, full, stats_len(n) * sizeof *out);
        return;
    }
    size_t packed = n * (n + 1) / 2;
    for (size_t i = lo; i < hi; i++)
        for (size_t j = 0; j < n; j++)
            out[(i - lo) * n + j] = full[i <= j ? pd_cd_packed_index(n, i, j)
                                                : pd_cd_packed_index(n, j, i)];
    memcpy(out + (hi - lo) * n, full + packed, (n + 1) * sizeof *out);
}

/* The blocks of worker w of W: [*klo, *khi). */
static void blocks_of(size_t nblocks, int w, int W, size_t *klo, size_t *khi)
{
    *klo = nblocks * (size_t)w / (size_t)W;
    *khi = nblocks * (size_t)(w + 1) / (size_t)W;
}

static size_t examples_of(const pd_config *cfg, size_t total)
{
    int64_t b = cfg->optimizer.batch_examples;
    return b > 0 && (size_t)b < total ? (size_t)b : total;
}

/* Parameters of cfg's model; bfgs refuses more than bfgs_max_params. */
static int count_params(const pd_config *cfg, size_t *n)
{
    pd_model *m = NULL;
    PD_TRY(pd_model_create(&cfg->model, 1, &m));
    *n = pd_model_nparams(m);
    pd_model_destroy(&m);
    const pd_optim_config *o = &cfg->optimizer;
    if (o->name == PD_OPT_BFGS && *n > (size_t)o->bfgs_max_params)
        return PD_FAIL(PD_EINPUT, "%s: optimizer.name: bfgs keeps an n x n inverse Hessian; "
                       "this model has %zu parameters, more than optimizer.bfgs_max_params "
                       "(%d): use lbfgs", cfg->source[0] ? cfg->source : "<config>", *n,
                       o->bfgs_max_params);
    return PD_OK;
}

static void objective_free(objective *ob)
{
    free(ob->grad);
    free(ob->rows);
    pd_model_destroy(&ob->model);
    pd_data_destroy(&ob->data);
}

static int objective_init(objective *ob, const pd_config *cfg, bool stats)
{
    memset(ob, 0, sizeof *ob);
    int err = PD_OK;
    PD_TRY_GOTO(err, pd_data_load(cfg, 0, 1, PD_PART_TRAIN, &ob->data), fail);
    ob->train = pd_data_part(ob->data, PD_PART_TRAIN);
    ob->total = ob->train->n;
    ob->m = examples_of(cfg, ob->total);
    if (ob->m == 0) {
        err = PD_FAIL(PD_EINPUT, "%s: no training example", cfg->data.train);
        goto fail;
    }
    ob->nblocks = (ob->m + BLOCK - 1) / BLOCK;
    PD_TRY_GOTO(err, pd_model_create_for(&cfg->model, ob->data, BLOCK, &ob->model), fail);
    ob->n = pd_model_nparams(ob->model);
    ob->len = stats ? stats_len(ob->n) : ob->n + 1;
    ob->stats = stats;
    ob->rows = pd_malloc(BLOCK * sizeof *ob->rows);
    ob->grad = pd_malloc(ob->n * sizeof *ob->grad);
    if (!ob->rows || !ob->grad) {
        err = PD_ENOMEM;
        goto fail;
    }
    return PD_OK;
fail:
    objective_free(ob);
    return err;
}

/* cd: block k's statistics, row = [G packed | Z'y | y'y], z = (x, 1) in
 * the linreg layout (w[D], then b). */
static void stats_row(const objective *ob, size_t lo, size_t b, double *row)
{
    size_t p = ob->n, D = p - 1, packed = p * (p + 1) / 2;
    const pd_dataset *ds = ob->train;
    memset(row, 0, ob->len * sizeof *row);
    double *G = row, *zy = row + packed;
    for (size_t e = lo; e < lo + b; e++) {
        const float *x = ds->x + e * D;
        double y = ds->y[e];
        for (size_t i = 0; i < p; i++) {
            double zi = i < D ? x[i] : 1.0;
            double *Gi = G + pd_cd_packed_index(p, i, i);
            for (size_t j = i; j < p; j++)
                Gi[j - i] += zi * (j < D ? x[j] : 1.0);
            zy[i] += zi * y;
        }
        row[ob->len - 1] += y * y;
    }
}

/* Block k's row at x: row[0] = b L_k, row[1 + i] = b dL_k/dx_i (or cd's
 * statistics, which do not depend on x). */
static int block_row(objective *ob, const float *x, size_t k, double *row)
{
    size_t lo = k * BLOCK, b = ob->m - lo < BLOCK ? ob->m - lo : BLOCK;
    if (ob->stats) {
        stats_row(ob, lo, b, row);
        return PD_OK;
    }
    for (size_t i = 0; i < b; i++)
        ob->rows[i] = lo + i;
    double loss;
    PD_TRY(pd_model_grad(ob->model, x, ob->train, ob->rows, b, ob->grad, &loss));
    row[0] = loss * (double)b;
    for (size_t i = 0; i < ob->n; i++)
        row[1 + i] = (double)ob->grad[i] * (double)b;
    return PD_OK;
}

static void add_row(double *restrict acc, const double *restrict row, size_t len)
{
    for (size_t i = 0; i < len; i++)
        acc[i] += row[i];
}

/* ---- the evaluating side (serial process, sync server) ---------------- */

typedef struct driver {
    const pd_config *cfg;
    pd_evaluator *ev;       /* serial, server 0 */
    size_t n, m, total, nblocks;
    size_t lo, hi;          /* this server's coordinates */
    size_t len;             /* doubles in a block's row (cut to them) */
    float *theta;           /* [n] */
    float *gf;              /* [n] the gradient as float, for its norms */
    double *acc, *row;      /* [len] the total; one row (serial) or a worker's rows */
    pd_progress prog;
    /* serial */
    objective *ob;
    /* sync */
    pd_world *w;
    int *counts, *displs;   /* [ranks] each rank's part of the point (allgather) */
    float *xall;            /* [n] the point being evaluated */
    pd_batch_comm comm;     /* the servers (S > 1) */
    int signal;             /* the stop signal that ended the run, or 0 */
    /* checkpoints */
    int part, parts;        /* this server of S (serial: 0 of 1) */
    char ckpt_dir[PD_PATH_MAX + 16];
    uint64_t layout_hash, config_hash;
    double ckpt_t;          /* pd_now() at the last one written */
    int64_t ckpt_it;        /* its iteration, -1: none */
    double f_last;          /* the loss of the last boundary reported */
    pd_ckpt_part resumed;   /* --resume: this server's part */
    char resume_name[PD_PATH_MAX + 64];
} driver;

static void finish_fg(driver *d, double *f, double *g)
{
    double m = (double)d->m;
    *f = d->acc[0] / m;
    for (size_t i = 0; i < d->hi - d->lo; i++)
        g[i] = d->acc[1 + i] / m;
}

/* Every block's row at x added into acc, in block order: here, or by the
 * workers (sync). */
static int serial_gather(driver *d, const float *x)
{
    memset(d->acc, 0, d->len * sizeof *d->acc);
    for (size_t k = 0; k < d->nblocks; k++) {
        PD_TRY(block_row(d->ob, x, k, d->row));
        add_row(d->acc, d->row, d->len);
    }
    return PD_OK;
}

/* Server 0's command to the other ranks (every server calls it, in the
 * same order): {1, evaluation} then the point, or {0, 0}: the run is over. */
static int send_command(pd_world *w, int64_t cmd, int64_t evaluation)
{
    (void)w;
    int64_t c[2] = {cmd, evaluation};
    MPI_Request r;
    PD_MPI(MPI_Ibcast(c, 2, MPI_INT64_T, 0, MPI_COMM_WORLD, &r));
    return pd_comm_wait(&r, NULL);
}

/* Each rank's part of the point in an allgather on MPI_COMM_WORLD: server
 * s its minimizer part, workers none. */
static int point_layout(const pd_world *w, size_t n, int **counts, int **displs)
{
    *counts = pd_calloc((size_t)w->size, sizeof **counts);
    *displs = pd_calloc((size_t)w->size, sizeof **displs);
    if (!*counts || !*displs)
        return PD_ENOMEM;
    for (int s = 0; s < w->servers; s++) {
        size_t lo, hi;
        pd_batch_part_range(n, w->servers, s, &lo, &hi);
        (*counts)[pd_server_rank(s)] = (int)(hi - lo);
        (*displs)[pd_server_rank(s)] = (int)lo;
    }
    return PD_OK;
}

/* The point from the servers' parts (x: this server's part; NULL, none)
 * into xall[n] on every rank. */
static int share_point(const float *x, int *counts, int *displs, int rank, float *xall)
{
    MPI_Request r;
    PD_MPI(MPI_Iallgatherv(x ? x : xall, counts[rank], MPI_FLOAT, xall, counts, displs,
                           MPI_FLOAT, MPI_COMM_WORLD, &r));
    return pd_comm_wait(&r, NULL);
}

static int sync_gather(driver *d, const float *x)
{
    PD_TRY(send_command(d->w, 1, 0));
    PD_TRY(share_point(x, d->counts, d->displs, d->w->rank, d->xall));
    MPI_Request r;
    memset(d->acc, 0, d->len * sizeof *d->acc);
    for (int wi = 0; wi < d->w->workers; wi++) {
        size_t klo, khi;
        blocks_of(d->nblocks, wi, d->w->workers, &klo, &khi);
        int count = (int)((khi - klo) * d->len);
        PD_MPI(MPI_Irecv(d->row, count, MPI_DOUBLE, pd_worker_rank(d->w, wi), PD_TAG_DATA,
                         MPI_COMM_WORLD, &r));   /* its rows cut to this server */
        PD_TRY(pd_comm_wait(&r, NULL));
        for (size_t k = 0; k < khi - klo; k++)
            add_row(d->acc, d->row + k * d->len, d->len);
    }
    return PD_OK;
}

static int objective_fg(void *ctx, const float *x, double *f, double *g)
{
    driver *d = ctx;
    PD_TRY(d->w ? sync_gather(d, x) : serial_gather(d, x));
    finish_fg(d, f, g);
    return PD_OK;
}

/* pd_batch_comm over the servers (S > 1). */
static int servers_sum(void *ctx, double *v, size_t len)
{
    const driver *d = ctx;
    MPI_Request r;
    PD_MPI(MPI_Iallreduce(MPI_IN_PLACE, v, (int)len, MPI_DOUBLE, MPI_SUM, d->w->servers_comm,
                          &r));
    return pd_comm_wait(&r, NULL);
}

static int servers_bcast(void *ctx, double *v, size_t len, int root)
{
    const driver *d = ctx;
    MPI_Request r;
    PD_MPI(MPI_Ibcast(v, (int)len, MPI_DOUBLE, root, d->w->servers_comm, &r));
    return pd_comm_wait(&r, NULL);
}

/* Server 0 gathers the servers' parts of v[n] (in place). */
static int gather_parts(driver *d, float *v)
{
    MPI_Request r;
    int me = d->w->index;
    int *counts = d->counts, *displs = d->displs;   /* servers are ranks 0..S-1 */
    if (me == 0)
        PD_MPI(MPI_Igatherv(MPI_IN_PLACE, counts[0], MPI_FLOAT, v, counts, displs, MPI_FLOAT, 0,
                            d->w->servers_comm, &r));
    else
        PD_MPI(MPI_Igatherv(v + d->lo, counts[me], MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0,
                            d->w->servers_comm, &r));
    return pd_comm_wait(&r, NULL);
}

/* With S > 1 servers: server 0 gets the whole point and gradient (cd's
 * point is whole on every server) before its evaluator sees them. */
static int gather_state(driver *d, const pd_batch_state *st)
{
    if (st->g)
        for (size_t i = 0; i < d->hi - d->lo; i++)
            d->gf[d->lo + i] = (float)st->g[i];
    if (!d->w || d->w->servers == 1 || !st->g)
        return PD_OK;
    PD_TRY(gather_parts(d, d->theta));
    return gather_parts(d, d->gf);
}

/* Server 0's decisions (stop: early stopping or a signal; write a
 * checkpoint) to the other servers. */
static int share_stop(driver *d, bool *stop, bool *ckpt)
{
    if (!d->w || d->w->servers == 1)
        return PD_OK;
    int32_t v[3] = {*stop, d->signal, *ckpt};
    MPI_Request r;
    PD_MPI(MPI_Ibcast(v, 3, MPI_INT32_T, 0, d->w->servers_comm, &r));
    PD_TRY(pd_comm_wait(&r, NULL));
    *stop = v[0];
    d->signal = v[1];
    *ckpt = v[2];
    return PD_OK;
}

/* Server 0 of S > 1: every part's size and crc32, for the manifest. */
static int gather_ids(driver *d, const pd_ckpt_id *mine, pd_ckpt_id *all)
{
    unsigned char b[16], *bs = all ? pd_malloc(16 * (size_t)d->parts) : NULL;
    if (all && !bs)
        return PD_ENOMEM;
    pd_le_put64(b, mine->size);
    pd_le_put64(b + 8, mine->crc);
    MPI_Request r;
    int err = PD_OK;
    int rc = MPI_Igather(b, 16, MPI_BYTE, bs, 16, MPI_BYTE, 0, d->w->servers_comm, &r);
    if (rc != MPI_SUCCESS)
        err = pd_mpi_fail(rc, "MPI_Igather", __FILE__, __LINE__, __func__);
    else
        err = pd_comm_wait(&r, NULL);
    for (int s = 0; err == PD_OK && all && s < d->parts; s++)
        all[s] = (pd_ckpt_id){pd_le_get64(bs + 16 * s), (uint32_t)pd_le_get64(bs + 16 * s + 8)};
    free(bs);
    return err;
}

/* The checkpoint of the boundary st: this server's part; server 0 (or
 * the serial process) also the manifest, then the pruning. */
static int write_checkpoint(driver *d, const pd_batch_state *st)
{
    double t0 = pd_now();
    size_t size = pd_batch_save_size(st), lo, hi;
    unsigned char *bt = pd_malloc(size);
    if (!bt)
        return PD_ENOMEM;
    int err = PD_OK;
    PD_TRY_GOTO(err, pd_batch_save(st, bt, size), out);
    pd_batch_part_range(d->n, d->parts, d->part, &lo, &hi);
    uint64_t it = (uint64_t)st->iteration;
    pd_ckpt_part p = {
        .part = (uint32_t)d->part, .nparts = (uint32_t)d->parts,
        .layout_hash = d->layout_hash, .config_hash = d->config_hash,
        .optim_kind = (uint32_t)d->cfg->optimizer.name, .updates = it, .version = it,
        .lo = lo, .hi = hi, .examples = (uint64_t)st->evaluations * d->m,
        .params = d->theta + lo, .batch = bt, .batch_size = size,
    };
    pd_ckpt_eval_put(d->ev, &p);
    if (d->parts == 1) {
        PD_TRY_GOTO(err, pd_ckpt_save(d->ckpt_dir, &p, d->cfg->checkpoint.keep), out);
    } else {
        pd_ckpt_id id, *ids = NULL;
        if (mkdir(d->ckpt_dir, 0755) != 0 && errno != EEXIST) {
            err = PD_FAIL(PD_EIO, "%s: mkdir: %s", d->ckpt_dir, strerror(errno));
            goto out;
        }
        PD_TRY_GOTO(err, pd_ckpt_write_part(d->ckpt_dir, &p, &id), out);
        if (d->part == 0 && !(ids = pd_malloc((size_t)d->parts * sizeof *ids))) {
            err = PD_ENOMEM;
            goto out;
        }
        err = gather_ids(d, &id, ids);
        if (err == PD_OK && d->part == 0)
            err = pd_ckpt_write_manifest(d->ckpt_dir, it, (uint32_t)d->parts, ids);
        if (err == PD_OK && d->part == 0)
            err = pd_ckpt_prune(d->ckpt_dir, d->cfg->checkpoint.keep);
        free(ids);
        if (err)
            goto out;
    }
    d->ckpt_t = pd_now();
    d->ckpt_it = st->iteration;
    if (d->ev)
        pd_evaluator_note_pause(d->ev, d->ckpt_t - t0);
out:
    free(bt);
    return err;
}

/* The boundary a resumed minimizer starts from: its counters in the
 * progress (its row is in metrics.jsonl already). */
static int resumed_report(driver *d, const pd_batch_state *st)
{
    pd_progress *p = &d->prog;
    p->update = st->iteration;
    p->evaluations = st->evaluations;
    p->examples = st->evaluations * (int64_t)d->m;
    p->epoch = (double)p->examples / (double)d->total;
    p->train_loss = st->f;
    d->ckpt_it = st->iteration;
    d->f_last = st->f;
    return gather_state(d, st);
}

static pd_batch_opts opts_of(const pd_config *cfg);

/* Whether the minimizer ends the run at this boundary by itself (its own
 * test, pd_batch_why_stop, on the same numbers: the previous boundary's
 * loss, this one's loss and gradient norm), so that a run with
 * checkpoints writes one of its end (a failed line search, decided after
 * the boundary, still ends without one). */
static bool ends_here(driver *d, const pd_batch_state *st)
{
    pd_batch_opts bo = opts_of(d->cfg);
    bool end = pd_batch_why_stop(&bo, st->iteration, d->f_last, st->f, st->gnorm, false) != NULL;
    d->f_last = st->f;
    const pd_checkpoint_config *k = &d->cfg->checkpoint;
    return end && (k->every_updates > 0 || k->every_seconds > 0 || d->ckpt_it >= 0);
}

/* One row of metrics.jsonl per iteration (every eval_every iterations when
 * it is set); the evaluator's early stopping ends the run, and so does a
 * stop signal (serial runs install the handlers), after the iteration. */
static int report(void *ctx, const pd_batch_state *st, bool *stop)
{
    driver *d = ctx;
    pd_progress *p = &d->prog;
    bool ckpt = false;
    *stop = false;
    if (st->resumed)
        return resumed_report(d, st);
    PD_TRY(gather_state(d, st));
    const float *x = st->g && d->w && d->w->servers > 1 ? d->theta : st->x;
    if (!d->ev) {   /* a server other than 0 */
        PD_TRY(share_stop(d, stop, &ckpt));
        return ckpt ? write_checkpoint(d, st) : PD_OK;
    }
    p->update = st->iteration;
    p->evaluations = st->evaluations;
    p->line_search_steps = st->line_search_steps;
    p->examples = st->evaluations * (int64_t)d->m;
    p->epoch = (double)p->examples / (double)d->total;
    p->lr = st->step;
    p->train_loss = st->f;
    p->grad = st->g ? d->gf : NULL;
    int64_t every = d->cfg->training.eval_every;
    if (every == 0 || st->iteration % every == 0)
        PD_TRY(pd_evaluator_eval(d->ev, x, p, stop));
    else
        PD_TRY(pd_evaluator_heartbeat(d->ev, p));
    /* A stop signal and SIGUSR1 checkpoint here, at the boundary; so do
     * checkpoint.every_updates (iterations) and every_seconds. */
    d->signal = pd_signals_stop();
    *stop = *stop || d->signal;
    bool end = ends_here(d, st);
    ckpt = pd_signals_take_checkpoint() || d->signal ||
           (st->iteration > 0 && st->iteration != d->ckpt_it &&
            (end || pd_ckpt_due(d->cfg, st->iteration, d->ckpt_t)));
    PD_TRY(share_stop(d, stop, &ckpt));
    return ckpt ? write_checkpoint(d, st) : PD_OK;
}

static pd_batch_opts opts_of(const pd_config *cfg)
{
    const pd_optim_config *o = &cfg->optimizer;
    return (pd_batch_opts){
        .method = o->name, .cg_variant = o->cg_variant, .history = o->history,
        .step0 = o->lr, .grad_tol = o->grad_tol, .loss_tol = o->loss_tol,
        .max_iterations = cfg->training.max_iterations,
        .block_size = (size_t)o->block_size, .random_blocks = o->block_order == PD_BLOCKS_RANDOM,
        .seed = cfg->run.seed,
    };
}

static int driver_init(driver *d, const pd_config *cfg, size_t n, int workers)
{
    d->cfg = cfg;
    d->n = n;
    d->len = row_len(cfg, n);
    d->hi = n;
    d->parts = 1;
    d->ckpt_it = -1;
    d->ckpt_t = pd_now();
    PD_TRY(pd_ckpt_dir(cfg->run.out_dir, d->ckpt_dir, sizeof d->ckpt_dir));
    d->prog.staleness_mean = NAN;
    d->prog.staleness_max = -1;
    d->prog.dropped = -1;
    d->theta = pd_malloc(n * sizeof *d->theta);
    d->gf = pd_malloc(n * sizeof *d->gf);
    d->acc = pd_malloc(d->len * sizeof *d->acc);
    if (!d->theta || !d->gf || !d->acc)
        return PD_ENOMEM;
    pd_model *m = NULL;
    PD_TRY(pd_model_create(&cfg->model, 1, &m));
    int err = pd_learner_start_point(cfg, m, d->theta);   /* model.init_from, or seeded */
    if (err == PD_OK)
        err = pd_ckpt_hashes(m, cfg, workers, &d->layout_hash, &d->config_hash);
    pd_model_destroy(&m);
    return err;
}

/* --resume: this server's part of the newest valid checkpoint of
 * DIR/checkpoints, checked whole before anything is evaluated; its point
 * into theta, its BTCH bytes kept for the minimizer. */
static int resume(driver *d, const char *dir)
{
    char cdir[PD_PATH_MAX + 16];
    PD_TRY(pd_ckpt_dir(dir, cdir, sizeof cdir));
    pd_ckpt_part p;
    PD_TRY(pd_ckpt_find(cdir, (uint32_t)d->part, d->layout_hash, d->config_hash, NULL, &p));
    size_t lo, hi;
    pd_batch_part_range(d->n, d->parts, d->part, &lo, &hi);
    snprintf(d->resume_name, sizeof d->resume_name, "%s/ckpt-%012" PRIu64 ".%d.pdck", cdir,
             p.updates, d->part);
    if (p.nparts != (uint32_t)d->parts || p.lo != lo || p.hi != hi || p.batch_size == 0) {
        int err = PD_FAIL(PD_EINPUT, "%s: META: %u parts over [%" PRIu64 ", %" PRIu64 ")%s; "
                          "this run of %s needs %d over [%zu, %zu) with the batch state",
                          d->resume_name, p.nparts, p.lo, p.hi,
                          p.batch_size ? "" : " without a batch state (BTCH)",
                          pd_optimizer_name_str(d->cfg->optimizer.name), d->parts, lo, hi);
        pd_ckpt_part_free(&p);
        return err;
    }
    /* The minimizer's settings and part, now rather than after the start */
    pd_batch_opts bo = opts_of(d->cfg);
    pd_batch_comm c = {.parts = d->parts, .part = d->part};
    bo.comm = &c;
    bo.resume = p.batch;
    bo.resume_size = p.batch_size;
    bo.resume_name = d->resume_name;
    int err = pd_batch_resume_check(&bo, d->n, d->lo, d->hi - d->lo);
    if (err) {
        pd_ckpt_part_free(&p);
        return err;
    }
    memcpy(d->theta + lo, p.params, (hi - lo) * sizeof *d->theta);
    d->resumed = p;
    return PD_OK;
}

/* Server 0 (serial: the process) after --resume: the rows of
 * metrics.jsonl up to the checkpoint's last evaluation, kept, and the
 * evaluator's state (early stopping, wall time, pauses). Call it before
 * pd_evaluator_create (the rows) and give it the evaluator after. */
static int resume_rows(driver *d, const char *dir, char **rows, size_t *nrows)
{
    *rows = NULL;
    *nrows = 0;
    if (!d->resumed.batch)
        return PD_OK;
    return pd_ckpt_rows_read(dir, d->resumed.last_eval, rows, nrows);
}

static int resume_eval(driver *d, const char *dir, const char *rows, size_t nrows)
{
    if (!d->resumed.batch)
        return PD_OK;
    PD_TRY(pd_ckpt_rows_write(d->cfg->run.out_dir, rows, nrows));
    char cdir[PD_PATH_MAX + 16];
    PD_TRY(pd_ckpt_dir(dir, cdir, sizeof cdir));
    return pd_ckpt_resume_eval(d->ev, &d->resumed, cdir);
}

/* The evaluator of server 0 or the serial process, with a resumed run's
 * rows and state. */
static int evaluator_init(driver *d, const pd_run_opts *opts, int workers, int servers)
{
    char *rows = NULL;
    size_t nrows = 0;
    int err = resume_rows(d, opts->resume_dir, &rows, &nrows);
    if (err == PD_OK)
        err = pd_evaluator_create(d->cfg, opts, workers, servers, &d->ev);
    if (err == PD_OK)
        err = resume_eval(d, opts->resume_dir, rows, nrows);
    free(rows);
    return err;
}

static void driver_free(driver *d)
{
    pd_ckpt_part_free(&d->resumed);
    pd_evaluator_destroy(&d->ev);
    free(d->xall);
    free(d->displs);
    free(d->counts);
    free(d->row);
    free(d->acc);
    free(d->gf);
    free(d->theta);
}

/* cd: the statistics once, then cycles over them. */
static int run_cd(driver *d, const pd_batch_opts *bo, pd_batch_result *res)
{
    size_t plo = 0, phi = d->n;
    if (d->w)
        pd_batch_part_range(d->n, d->w->servers, d->w->index, &plo, &phi);
    PD_TRY(d->w ? sync_gather(d, d->theta + plo) : serial_gather(d, d->theta));
    size_t p = d->n, packed = p * (p + 1) / 2, k = d->hi - d->lo;
    pd_cd_problem pr = {.p = p, .m = d->m, .gram = d->acc, .zy = d->acc + packed,
                        .yy = d->acc[d->len - 1], .l2 = d->cfg->model.l2};
    if (bo->comm) {   /* G's rows [lo, hi) */
        pr.gram = NULL;
        pr.rows = d->acc;
        pr.row_lo = d->lo;
        pr.row_hi = d->hi;
        pr.zy = d->acc + k * p;
    }
    return pd_batch_cd(bo, &pr, d->theta, report, d, res);
}

static int run(driver *d)
{
    pd_batch_opts bo = opts_of(d->cfg);
    pd_batch_result res;
    if (d->w && d->w->servers > 1) {
        d->comm = (pd_batch_comm){.parts = d->w->servers, .part = d->w->index, .ctx = d,
                                  .sum = servers_sum, .bcast = servers_bcast};
        bo.comm = &d->comm;
    }
    if (d->resumed.batch) {
        bo.resume = d->resumed.batch;
        bo.resume_size = d->resumed.batch_size;
        bo.resume_name = d->resume_name;
    }
    if (bo.method == PD_OPT_CD)
        PD_TRY(run_cd(d, &bo, &res));
    else
        PD_TRY(pd_batch_minimize(&bo, d->n, d->theta + d->lo, objective_fg, report, d, &res));
    if (!d->ev)
        return PD_OK;   /* server 0 writes the results */
    if (d->signal) {
        /* The checkpoint of the last iteration is written (report); so
         * are its results, and the exit status says a signal ended it. */
        d->prog.stop_reason = "signal";
        PD_TRY(pd_evaluator_finish(d->ev, d->theta, &d->prog, NULL, "signal"));
        return PD_FAIL(PD_ESTOPPED, "stopped by %s after iteration %lld; checkpoint "
                       "%s/ckpt-%012lld.manifest written (continue with --resume)",
                       pd_signals_name(d->signal), (long long)res.iterations, d->ckpt_dir,
                       (long long)res.iterations);
    }
    d->prog.stop_reason = res.reason;
    return pd_evaluator_finish(d->ev, d->theta, &d->prog, NULL,
                               strcmp(res.reason, "stopped") ? "done" : "early_stopped");
}

int pd_batch_serial(const pd_config *cfg, const pd_run_opts *opts)
{
    driver d = {0};
    objective ob;
    size_t n;
    PD_TRY(count_params(cfg, &n));
    PD_TRY(objective_init(&ob, cfg, cfg->optimizer.name == PD_OPT_CD));
    int err = PD_OK;
    d.ob = &ob;
    d.m = ob.m;
    d.total = ob.total;
    d.nblocks = ob.nblocks;
    PD_TRY_GOTO(err, driver_init(&d, cfg, n, 1), out);
    d.row = pd_malloc(row_len(cfg, n) * sizeof *d.row);
    if (!d.row) {
        err = PD_ENOMEM;
        goto out;
    }
    /* Resume before the run directory is opened, so that a refused
     * checkpoint leaves it as it was. */
    if (opts->resume)
        PD_TRY_GOTO(err, resume(&d, opts->resume_dir), out);
    PD_TRY_GOTO(err, evaluator_init(&d, opts, 1, 0), out);
    PD_TRY_GOTO(err, run(&d), out);
out:
    driver_free(&d);
    objective_free(&ob);
    return err;
}

/* A worker's buffers: the point, its blocks' full rows, and per server
 * those rows cut to the server's coordinates. */
typedef struct worker {
    const pd_config *cfg;
    objective *ob;
    pd_world *w;
    size_t klo, khi;        /* its blocks */
    int *counts, *displs;
    float *x;               /* [n] */
    double *rows;           /* [(khi - klo) len] full rows */
    double **cut;           /* [S][(khi - klo) server_len] */
    MPI_Request *reqs;      /* [S] */
} worker;

/* One point from the servers and the rows of blocks [klo, khi) back to
 * each; *done when server 0 says the run is over. */
static int worker_step(worker *wk, bool *done)
{
    objective *ob = wk->ob;
    int64_t c[2];
    MPI_Request r;
    PD_MPI(MPI_Ibcast(c, 2, MPI_INT64_T, 0, MPI_COMM_WORLD, &r));
    PD_TRY(pd_comm_wait(&r, NULL));
    *done = c[0] == 0;
    if (*done)
        return PD_OK;
    PD_TRY(share_point(NULL, wk->counts, wk->displs, wk->w->rank, wk->x));
    size_t len = ob->len, nk = wk->khi - wk->klo;
    for (size_t k = wk->klo; k < wk->khi; k++)
        PD_TRY(block_row(ob, wk->x, k, wk->rows + (k - wk->klo) * len));
    int S = wk->w->servers;
    for (int s = 0; s < S; s++) {
        size_t lo, hi, cl = server_part(wk->cfg, ob->n, S, s, &lo, &hi);
        for (size_t k = 0; k < nk; k++)
            cut_row(wk->cfg, ob->n, S, lo, hi, wk->rows + k * len, wk->cut[s] + k * cl);
        PD_MPI(MPI_Isend(wk->cut[s], (int)(nk * cl), MPI_DOUBLE, pd_server_rank(s),
                         PD_TAG_DATA, MPI_COMM_WORLD, &wk->reqs[s]));
    }
    return pd_comm_waitall(S, wk->reqs);
}

/* A worker: its blocks' rows at every point the servers send. */
static int worker_loop(const pd_config *cfg, objective *ob, pd_world *w)
{
    int S = w->servers, err = PD_OK;
    worker wk = {.cfg = cfg, .ob = ob, .w = w};
    blocks_of(ob->nblocks, w->index, w->workers, &wk.klo, &wk.khi);
    size_t nk = wk.khi - wk.klo;
    wk.x = pd_malloc(ob->n * sizeof *wk.x);
    wk.rows = pd_malloc((nk * ob->len + 1) * sizeof *wk.rows);
    wk.cut = pd_calloc((size_t)S, sizeof *wk.cut);
    wk.reqs = pd_malloc((size_t)S * sizeof *wk.reqs);
    if (!wk.x || !wk.rows || !wk.cut || !wk.reqs) {
        err = PD_ENOMEM;
        goto out;
    }
    for (int s = 0; s < S; s++) {
        size_t lo, hi, cl = server_part(cfg, ob->n, S, s, &lo, &hi);
        if (!(wk.cut[s] = pd_malloc((nk * cl + 1) * sizeof **wk.cut))) {
            err = PD_ENOMEM;
            goto out;
        }
    }
    PD_TRY_GOTO(err, point_layout(w, ob->n, &wk.counts, &wk.displs), out);
    for (bool done = false; err == PD_OK && !done;)
        err = worker_step(&wk, &done);
out:
    for (int s = 0; wk.cut && s < S; s++)
        free(wk.cut[s]);
    free(wk.cut);
    free(wk.reqs);
    free(wk.displs);
    free(wk.counts);
    free(wk.rows);
    free(wk.x);
    return err;
}

/* MPI counts are int: a worker's rows to one server must fit one message. */
static int check_rows(const pd_config *cfg, size_t nblocks, size_t n, int W, int S)
{
    size_t most = (nblocks + (size_t)W - 1) / (size_t)W, len = 0, lo, hi;
    for (int s = 0; s < S; s++) {
        size_t l = server_part(cfg, n, S, s, &lo, &hi);
        len = l > len ? l : len;
    }
    if (most * len <= (size_t)INT_MAX && most * row_len(cfg, n) <= (size_t)INT_MAX)
        return PD_OK;
    return PD_FAIL(PD_EINPUT, "%s: optimizer.batch_examples: %zu blocks of %d examples over %d "
                   "workers send %zu doubles a message, more than an MPI count holds (set "
                   "optimizer.batch_examples lower or run more workers)",
                   cfg->source[0] ? cfg->source : "<config>", nblocks, BLOCK, W,
                   most * len);
}

/* Every rank learns the training part's size from the workers (a rank
 * whose setup failed says 0). */
static int agree_total(const pd_world *w, const objective *ob, bool ok, size_t *total)
{
    uint64_t mine = ok && !w->is_server ? ob->total : 0, all;
    PD_MPI(MPI_Allreduce(&mine, &all, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD));
    *total = (size_t)all;
    return PD_OK;
}

/* A server's buffers: its row length and coordinates, the point's layout,
 * the rows of the largest worker, server 0's evaluator. */
static int server_init(driver *d, const pd_config *cfg, const pd_run_opts *opts, pd_world *w,
                       size_t n)
{
    PD_TRY(driver_init(d, cfg, n, w->workers));
    d->parts = w->servers;
    d->part = w->index;
    d->len = server_part(cfg, n, w->servers, w->index, &d->lo, &d->hi);
    size_t most = (d->nblocks + (size_t)w->workers - 1) / (size_t)w->workers;
    d->row = pd_malloc((most * d->len + 1) * sizeof *d->row);
    d->xall = pd_malloc(n * sizeof *d->xall);
    free(d->acc);
    d->acc = pd_malloc(d->len * sizeof *d->acc);
    if (!d->row || !d->xall || !d->acc)
        return PD_ENOMEM;
    PD_TRY(point_layout(w, n, &d->counts, &d->displs));
    if (opts->resume)
        PD_TRY(resume(d, opts->resume_dir));
    if (w->index == 0)
        PD_TRY(evaluator_init(d, opts, w->workers, w->servers));
    return PD_OK;
}

int pd_batch_sync(const pd_config *cfg, const pd_run_opts *opts, pd_world *w)
{
    driver d = {0};
    objective ob = {0};
    size_t n = 0, total = 0;
    int err = count_params(cfg, &n);
    if (err == PD_OK && !w->is_server)
        err = objective_init(&ob, cfg, cfg->optimizer.name == PD_OPT_CD);
    int err2 = agree_total(w, &ob, err == PD_OK, &total);
    err = err ? err : err2;
    d.total = total;
    d.m = examples_of(cfg, total);
    d.nblocks = (d.m + BLOCK - 1) / BLOCK;
    if (err == PD_OK)
        err = check_rows(cfg, d.nblocks, n, w->workers, w->servers);
    if (err == PD_OK && w->is_server)
        err = server_init(&d, cfg, opts, w, n);
    err = pd_comm_agree(w, err);
    if (err == PD_OK && !w->is_server)
        err = worker_loop(cfg, &ob, w);
    if (err == PD_OK && w->is_server) {
        d.w = w;
        err = run(&d);
        if (err == PD_OK || err == PD_ESTOPPED) {   /* the workers stop either way */
            int err3 = send_command(w, 0, 0);
            err = err3 ? err3 : err;
        }
    }
    driver_free(&d);
    if (!w->is_server)
        objective_free(&ob);
    return err;
}

int pd_batch_linreg_gap(const pd_config *cfg, const float *theta, double *gap)
{
    objective ob;
    PD_TRY(objective_init(&ob, cfg, true));
    size_t p = ob.n, packed = p * (p + 1) / 2;
    double *acc = pd_calloc(ob.len, sizeof *acc), *row = pd_malloc(ob.len * sizeof *row);
    double *A = pd_malloc(p * p * sizeof *A), *w = pd_malloc(p * sizeof *w);
    int err = PD_OK;
    if (!acc || !row || !A || !w) {
        err = PD_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < ob.nblocks; k++) {
        PD_TRY_GOTO(err, block_row(&ob, theta, k, row), out);
        add_row(acc, row, ob.len);
    }
    pd_cd_problem pr = {.p = p, .m = ob.m, .gram = acc, .zy = acc + packed,
                        .yy = acc[ob.len - 1], .l2 = cfg->model.l2};
    /* the normal equations (G/m + l2 I') w = c/m, the bias unpenalized */
    for (size_t i = 0; i < p; i++) {
        for (size_t j = 0; j < p; j++)
            A[i * p + j] = acc[i <= j ? pd_cd_packed_index(p, i, j)
                                      : pd_cd_packed_index(p, j, i)] / (double)ob.m +
                           (i == j && i + 1 < p ? cfg->model.l2 : 0);
        w[i] = pr.zy[i] / (double)ob.m;
    }
    *gap = NAN;   /* singular normal equations, or data that is not finite */
    if (!pd_batch_cholesky_solve(A, w, p))
        goto out;
    double best = pd_cd_loss(&pr, w);
    for (size_t i = 0; i < p; i++)
        w[i] = theta[i];
    *gap = (pd_cd_loss(&pr, w) - best) / best;
out:
    free(w);
    free(A);
    free(row);
    free(acc);
    objective_free(&ob);
    return err;
}
