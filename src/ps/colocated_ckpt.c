/* Checkpoints of sync runs without server ranks (training.servers: 0,
 * colocated.h): each rank writes its range's part, part 0 carries every
 * rank's iterator, rank 0 writes the manifest; --resume reads this rank's
 * part and its iterator from part 0 of the newest valid set. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "colocated.h"
#include "paramd/le.h"
#include "paramd/signals.h"

enum { ID_BYTES = 16 };   /* u64 part size, u32 crc32, u32 zero */

int coloc_ckpt_setup(coloc *c, const pd_run_opts *opts)
{
    const pd_config *cfg = c->cfg;
    c->ck_written = -1;
    c->ck_last_t = pd_now();
    c->resume_eval = -1;
    c->ck_on = pd_ckpt_enabled(cfg, opts);
    PD_TRY(pd_ckpt_dir(cfg->run.out_dir, c->ck_dir, sizeof c->ck_dir));
    PD_TRY(pd_ckpt_hashes(c->l.model, cfg, c->W, &c->layout_hash, &c->config_hash));
    if (!opts->resume)
        return PD_OK;

    char *dir = c->resume_dir;
    PD_TRY(pd_ckpt_dir(opts->resume_dir, dir, sizeof c->resume_dir));
    /* Every rank reads the same files and so picks the same set; rank 0
     * alone says which damaged ones it skipped. */
    FILE *quiet = c->me == 0 ? NULL : fopen("/dev/null", "w");
    pd_ckpt_part p = {0}, p0 = {0};
    int err = pd_ckpt_find(dir, (uint32_t)c->me, c->layout_hash, c->config_hash, quiet, &p);
    if (quiet)
        fclose(quiet);
    PD_TRY(err);
    bool damaged;
    if (c->me == 0)
        p0 = p;
    else
        PD_TRY_GOTO(err, pd_ckpt_read(dir, p.updates, 0, c->layout_hash, c->config_hash, &p0,
                                      &damaged), out);
    if (p.nparts != (uint32_t)c->W || p.lo != c->lo || p.hi != c->hi ||
        p0.niters != (size_t)c->W || p0.nwstates != (size_t)c->W || p.nworkers != (size_t)c->W) {
        err = PD_FAIL(PD_EINPUT, "%s/ckpt-%012" PRIu64 ".%d.pdck: META: part %u of %u over [%"
                      PRIu64 ", %" PRIu64 ") with %zu iterator states; this run's rank %d of %d "
                      "owns [%zu, %zu)", dir, p.updates, c->me, p.part, p.nparts, p.lo, p.hi,
                      p0.niters, c->me, c->W, c->lo, c->hi);
        goto out;
    }
    PD_TRY_GOTO(err, pd_optim_load(c->opt, p.optim, p.optim_size), out);
    PD_TRY_GOTO(err, pd_iter_load(c->l.iter, p0.iter[c->me], p0.iter_size[c->me]), out);
    memcpy(c->theta + c->lo, p.params, (c->hi - c->lo) * sizeof *c->theta);
    c->l.examples = p0.wstate[c->me].examples;
    c->version = (int64_t)p.version;
    c->applied = p.applied;
    c->bad = p.bad;
    c->sent = p.sent;
    c->dropped_at_stop = p.dropped_at_stop;
    c->examples = (int64_t)p.examples;
    for (int w = 0; w < c->W; w++) {
        c->w_applied[w] = p.worker[w].applied;
        c->w_dropped[w] = p.worker[w].dropped;
    }
    c->ck_written = c->version;
    c->resume_eval = p0.last_eval;
    c->resumed = true;
    if (c->me == 0) {
        PD_TRY_GOTO(err, pd_ckpt_rows_read(opts->resume_dir, p0.last_eval, &c->rows, &c->nrows),
                    out);
        c->part0 = p0;   /* its evaluator state, after the evaluator is created */
        return PD_OK;
    }
out:
    if (c->me != 0)
        pd_ckpt_part_free(&p0);
    pd_ckpt_part_free(&p);
    return err;
}

int coloc_ckpt_resume_eval(coloc *c)
{
    if (!c->resumed || c->me != 0)
        return PD_OK;
    PD_TRY(pd_ckpt_rows_write(c->cfg->run.out_dir, c->rows, c->nrows));
    return pd_ckpt_resume_eval(c->ev, &c->part0, c->resume_dir);
}

bool coloc_ckpt_due(const coloc *c)
{
    const pd_checkpoint_config *k = &c->cfg->checkpoint;
    if (c->version == c->ck_written)
        return false;
    return (c->hdr[0].flags & (FLAG_CKPT | FLAG_SIGNAL)) ||
           (c->ck_on && k->every_updates > 0 && c->version % k->every_updates == 0);
}

/* Rank 0: every rank's iterator state and examples; the others send theirs. */
static int gather_iters(coloc *c, unsigned char **all, uint64_t *sizes, int *displs)
{
    size_t n = pd_iter_state_size(c->l.iter);
    unsigned char *mine = pd_malloc(n + 8);
    if (!mine)
        return PD_ENOMEM;
    int err = pd_iter_save(c->l.iter, mine, n);
    pd_le_put64(mine + n, (uint64_t)c->l.examples);
    uint64_t size = n + 8;
    MPI_Request r;
    int rc = MPI_SUCCESS;
    if (err == PD_OK)
        rc = MPI_Igather(&size, 1, MPI_UINT64_T, sizes, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &r);
    if (err == PD_OK && rc == MPI_SUCCESS)
        err = pd_comm_wait(&r, NULL);
    int *counts = NULL;
    if (err == PD_OK && rc == MPI_SUCCESS && c->me == 0) {
        size_t total = 0;
        if (!(counts = pd_malloc((size_t)c->W * sizeof *counts)))
            err = PD_ENOMEM;
        for (int w = 0; err == PD_OK && w < c->W; w++) {
            if (sizes[w] < 8 || sizes[w] > INT32_MAX || total + sizes[w] > INT32_MAX)
                err = PD_FAIL(PD_EMPI, "checkpoint: rank %d's iterator state of %" PRIu64
                              " bytes", w, sizes[w]);
            counts[w] = (int)sizes[w];
            displs[w] = (int)total;
            total += sizes[w];
        }
        if (err == PD_OK && !(*all = pd_malloc(total)))
            err = PD_ENOMEM;
    }
    if (err == PD_OK && rc == MPI_SUCCESS)
        rc = MPI_Igatherv(mine, (int)size, MPI_BYTE, c->me == 0 ? *all : NULL, counts, displs,
                          MPI_BYTE, 0, MPI_COMM_WORLD, &r);
    if (err == PD_OK && rc == MPI_SUCCESS)
        err = pd_comm_wait(&r, NULL);
    if (err == PD_OK && rc != MPI_SUCCESS)
        err = pd_mpi_fail(rc, "MPI_Igather", __FILE__, __LINE__, __func__);
    free(counts);
    free(mine);
    return err;
}

/* Rank 0: every part's id; then the manifest, written last, and pruning. */
static int manifest(coloc *c, const pd_ckpt_id *id)
{
    unsigned char mine[ID_BYTES] = {0}, *all = NULL;
    pd_le_put64(mine, id->size);
    pd_le_put32(mine + 8, id->crc);
    pd_ckpt_id *ids = NULL;
    if (c->me == 0 && (!(all = pd_malloc((size_t)c->W * ID_BYTES)) ||
                       !(ids = pd_calloc((size_t)c->W, sizeof *ids)))) {
        free(all);
        return PD_ENOMEM;   /* (the job ends: the others wait in the gather) */
    }
    MPI_Request r;
    int rc = MPI_Igather(mine, ID_BYTES, MPI_BYTE, all, ID_BYTES, MPI_BYTE, 0, MPI_COMM_WORLD, &r);
    int err = rc == MPI_SUCCESS ? pd_comm_wait(&r, NULL)
                                : pd_mpi_fail(rc, "MPI_Igather", __FILE__, __LINE__, __func__);
    if (err == PD_OK && c->me == 0) {
        for (int w = 0; w < c->W; w++)
            ids[w] = (pd_ckpt_id){pd_le_get64(all + ID_BYTES * w),
                                  pd_le_get32(all + ID_BYTES * w + 8)};
        err = pd_ckpt_write_manifest(c->ck_dir, (uint64_t)c->version, (uint32_t)c->W, ids);
        if (err == PD_OK)
            err = pd_ckpt_prune(c->ck_dir, c->cfg->checkpoint.keep);
    }
    free(ids);
    free(all);
    return err;
}

int coloc_ckpt_write(coloc *c)
{
    if (c->version == c->ck_written)
        return PD_OK;
    double t0 = pd_now();
    int W = c->W;
    bool zero = c->me == 0;
    uint64_t *sizes = pd_calloc((size_t)W, sizeof *sizes);
    int *displs = pd_calloc((size_t)W, sizeof *displs);
    unsigned char *iters = NULL;
    size_t osz = pd_optim_state_size(c->opt);
    unsigned char *ob = pd_malloc(osz + 1);
    pd_ckpt_worker *wk = pd_calloc((size_t)W, sizeof *wk);
    unsigned char **iter = pd_calloc((size_t)W, sizeof *iter);
    size_t *isz = pd_calloc((size_t)W, sizeof *isz);
    pd_ckpt_wstate *ws = pd_calloc((size_t)W, sizeof *ws);
    int err = PD_OK;
    if (!sizes || !displs || !ob || !wk || !iter || !isz || !ws) {
        err = PD_ENOMEM;   /* (the job ends: the others wait in the gathers) */
        goto out;
    }
    PD_TRY_GOTO(err, gather_iters(c, &iters, sizes, displs), out);
    PD_TRY_GOTO(err, pd_optim_save(c->opt, ob, osz), out);
    if (mkdir(c->ck_dir, 0755) != 0 && errno != EEXIST) {
        err = PD_FAIL(PD_EIO, "%s: mkdir: %s", c->ck_dir, strerror(errno));
        goto out;
    }
    if (zero)
        (void)pd_eval_thread_acquire(c->et);   /* its pending evaluation is done */
    for (int w = 0; w < W; w++) {
        wk[w] = (pd_ckpt_worker){0, c->w_applied[w], c->w_dropped[w], 0};
        if (zero) {   /* rank w's iterator, then its examples (u64) */
            iter[w] = iters + displs[w];
            isz[w] = sizes[w] - 8;
            ws[w].examples = (int64_t)pd_le_get64(iters + displs[w] + isz[w]);
        }
    }
    int64_t hist[1] = {c->applied};   /* every applied gradient has staleness 0 */
    pd_ckpt_part p = {
        .part = (uint32_t)c->me, .nparts = (uint32_t)W, .layout_hash = c->layout_hash,
        .config_hash = c->config_hash, .optim_kind = (uint32_t)c->cfg->optimizer.name,
        .updates = (uint64_t)c->version, .version = (uint64_t)c->version, .lo = c->lo,
        .hi = c->hi, .examples = (uint64_t)c->examples, .params = c->theta + c->lo,
        .optim = ob, .optim_size = osz, .niters = zero ? (size_t)W : 0, .iter = iter,
        .iter_size = isz, .sent = c->sent, .applied = c->applied, .dropped = c->dropped_at_stop,
        .bad = c->bad, .nstale = 1, .stale = hist, .nworkers = (size_t)W, .worker = wk,
        .dropped_at_stop = c->dropped_at_stop, .nwstates = zero ? (size_t)W : 0, .wstate = ws,
    };
    pd_ckpt_eval_put(zero ? c->ev : NULL, &p);
    pd_ckpt_id id;
    PD_TRY_GOTO(err, pd_ckpt_write_part(c->ck_dir, &p, &id), out);
    PD_TRY_GOTO(err, manifest(c, &id), out);
    c->ck_written = c->version;
    c->ck_last_t = pd_now();
    if (zero)
        pd_evaluator_note_pause(c->ev, c->ck_last_t - t0);
out:
    free(ws);
    free(isz);
    free(iter);
    free(wk);
    free(ob);
    free(iters);
    free(displs);
    free(sizes);
    return err;
}

void coloc_ckpt_free(coloc *c)
{
    free(c->rows);
    c->rows = NULL;
    pd_ckpt_part_free(&c->part0);
}
