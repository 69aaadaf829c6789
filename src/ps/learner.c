/* A worker's half of training, shared by the serial trainer and the MPI
 * worker ranks: its shard, its minibatch stream (with its curriculum) and
 * the gradient at a point. Buffers are sized once; pd_learner_step never
 * allocates. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/error.h"
#include "paramd/optim.h"
#include "paramd/use.h"
#include "train.h"

/* data.curriculum.type loss: score every shard example by its loss at a
 * private model trained from the run's initialization for warmup_updates
 * plain SGD steps (lr = optimizer.lr; no schedule, clipping, noise or
 * decay) on the shard, its batches drawn by a separate every_epoch iterator
 * (stream PD_STREAM_CURRICULUM << 32 | shard), then hand the scores to the
 * learner's iterator. Uses the learner's model workspaces; resets what the
 * warm-up counted. */
static int curriculum_init(pd_learner *l, int shard, size_t batch)
{
    const pd_config *cfg = l->cfg;
    const pd_curriculum_config *cc = &cfg->data.curriculum;
    size_t n = l->train->n;
    int err = PD_OK;
    pd_iter *warm = NULL;
    pd_optim *opt = NULL;
    float *theta = pd_malloc(l->nparams * sizeof *theta);
    float *score = pd_malloc(n * sizeof *score);
    size_t *rows = pd_malloc(batch * sizeof *rows);
    if (!theta || !score || !rows) {
        err = PD_ENOMEM;
        goto out;
    }
    pd_model_init(l->model, theta, cfg->run.seed);
    pd_optim_config oc = cfg->optimizer;
    oc.name = PD_OPT_SGD;
    oc.schedule = (pd_schedule_config){.type = PD_SCHED_CONSTANT, .step_size = 1, .gamma = 1};
    oc.weight_decay = oc.clip_norm = oc.clip_value = oc.noise = 0;
    oc.staleness_compensation = PD_SCOMP_NONE;
    oc.dc_lambda_adaptive = false;
    PD_TRY_GOTO(err, pd_optim_create(&oc, 0, l->nparams, cfg->run.seed, &opt), out);
    PD_TRY_GOTO(err, pd_iter_create(l->train, batch, PD_SHUFFLE_EVERY_EPOCH, false,
                                    cfg->run.seed,
                                    (uint64_t)PD_STREAM_CURRICULUM << 32 | (uint64_t)shard,
                                    &warm), out);
    for (int64_t t = 1; t <= cc->warmup_updates;) {
        if (!pd_iter_next(warm, &l->rows, &l->batch))
            continue;   /* epoch boundary; the shard is not empty */
        bool applied;
        PD_TRY_GOTO(err, pd_learner_local_step(l, opt, &oc, theta, NULL, t, &applied), out);
        if (!applied) {
            err = PD_FAIL(PD_ETRAIN, "data.curriculum: the scoring model diverged at "
                          "warm-up update %lld of shard %d (lower optimizer.lr or "
                          "data.curriculum.warmup_updates)", (long long)t, shard);
            goto out;
        }
        t++;
    }
    for (size_t start = 0; start < n; start += batch) {
        size_t k = n - start < batch ? n - start : batch;
        for (size_t i = 0; i < k; i++)
            rows[i] = start + i;
        PD_TRY_GOTO(err, pd_model_losses(l->model, theta, l->train, rows, k, score + start),
                    out);
    }
    PD_TRY_GOTO(err, pd_iter_set_curriculum(l->iter, score, cc, cfg->run.seed), out);
out:
    l->examples = 0;
    l->rows = NULL;
    l->batch = 0;
    l->loss = 0;
    pd_iter_destroy(&warm);
    pd_optim_destroy(&opt);
    free(rows);
    free(score);
    free(theta);
    return err;
}

int pd_learner_init(pd_learner *l, const pd_config *cfg, int shard, int nshards)
{
    memset(l, 0, sizeof *l);
    l->cfg = cfg;
    int err = PD_OK;
    PD_TRY_GOTO(err, pd_data_load(cfg, shard, nshards, PD_PART_TRAIN, &l->data), fail);
    l->train = pd_data_part(l->data, PD_PART_TRAIN);
    if (l->train->n == 0) {
        err = PD_FAIL(PD_EINPUT, "%s: shard %d of %d holds no training example",
                      cfg->data.train, shard, nshards);
        goto fail;
    }
    size_t batch = (size_t)cfg->training.batch_size;
    PD_TRY_GOTO(err, pd_model_create_for(&cfg->model, l->data, batch, &l->model), fail);
    l->nparams = pd_model_nparams(l->model);
    l->sparse = pd_model_is_sparse(l->model);
    l->grad = pd_calloc(l->nparams, sizeof *l->grad);
    if (!l->grad) {
        err = PD_ENOMEM;
        goto fail;
    }
    if (l->sparse)
        PD_TRY_GOTO(err, pd_sparse_grad_init(&l->sgrad, l->nparams), fail);
    PD_TRY_GOTO(err, pd_iter_create(l->train, batch, cfg->data.shuffle,
                                    cfg->training.drop_last, cfg->run.seed,
                                    (uint64_t)shard, &l->iter), fail);
    if (cfg->data.curriculum.type == PD_CURRICULUM_LOSS)
        PD_TRY_GOTO(err, curriculum_init(l, shard, batch), fail);
    if (cfg->data.curriculum.type == PD_CURRICULUM_COLUMN) {
        /* data.curriculum.type column: the scores came with the CSV records. */
        if (!l->train->score) {
            err = PD_FAIL(PD_EINPUT, "data.curriculum.type: column needs data.format csv");
            goto fail;
        }
        PD_TRY_GOTO(err, pd_iter_set_curriculum(l->iter, l->train->score,
                                                &cfg->data.curriculum, cfg->run.seed), fail);
    }
    if (pd_iter_batches_per_epoch(l->iter) == 0) {
        err = PD_FAIL(PD_EINPUT, "%s: training.batch_size: %d is larger than the %zu "
                      "examples of shard %d%s with drop_last", cfg->source,
                      cfg->training.batch_size, pd_iter_admitted(l->iter), shard,
                      pd_iter_admitted(l->iter) < l->train->n ? " admitted in epoch 0" : "");
        goto fail;
    }
    return PD_OK;
fail:
    pd_learner_free(l);
    return err;
}

int pd_learner_use_curv(pd_learner *l, const pd_config *cfg)
{
    if (!pd_optim_needs_curvature(cfg->optimizer.name) || l->curv)
        return PD_OK;
    PD_TRY(pd_model_curv_init(l->model, cfg->optimizer.vsgd_bound_layers,
                              cfg->optimizer.vsgd_row_layers));
    l->curv = pd_calloc(2 * l->nparams, sizeof *l->curv);
    return l->curv ? PD_OK : PD_ENOMEM;
}

void pd_learner_free(pd_learner *l)
{
    free(l->curv);
    l->curv = NULL;
    pd_iter_destroy(&l->iter);
    if (l->sparse)
        pd_sparse_grad_free(&l->sgrad);
    free(l->grad);
    l->grad = NULL;
    pd_model_destroy(&l->model);
    pd_data_destroy(&l->data);
    l->sparse = false;
}

bool pd_learner_next(pd_learner *l)
{
    return pd_iter_next(l->iter, &l->rows, &l->batch);
}

int pd_learner_grad(pd_learner *l, const float *point, bool *finite)
{
    if (l->sparse) {
        PD_TRY(pd_model_grad_sparse(l->model, point, l->train, l->rows, l->batch,
                                    &l->sgrad, &l->loss));
        *finite = isfinite(l->loss) && pd_optim_finite(l->sgrad.val, l->sgrad.nnz);
    } else {
        if (l->curv)
            PD_TRY(pd_model_grad_curv(l->model, point, l->train, l->rows, l->batch, l->grad,
                                      l->curv, l->curv + l->nparams, &l->loss));
        else
            PD_TRY(pd_model_grad(l->model, point, l->train, l->rows, l->batch, l->grad,
                                 &l->loss));
        *finite = isfinite(l->loss) && pd_optim_finite(l->grad, l->nparams) &&
                  (!l->curv || pd_optim_finite(l->curv, 2 * l->nparams));
    }
    l->examples += (int64_t)l->batch;
    return PD_OK;
}

double pd_learner_epoch(const pd_learner *l)
{
    return (double)l->examples / (double)l->train->n;
}

double pd_learner_grad_norm(const pd_learner *l, const pd_optim_config *oc)
{
    if (oc->clip_norm <= 0)
        return 0;
    return l->sparse ? pd_optim_norm2(l->sgrad.val, l->sgrad.nnz)
                     : pd_optim_norm2(l->grad, l->nparams);
}

void pd_learner_apply(const pd_learner *l, pd_optim *opt, const pd_optim_config *oc,
                      float *theta, int64_t t, double scale)
{
    pd_optim_curv cv = {.h = l->curv, .v = l->curv ? l->curv + l->nparams : NULL,
                        .n = (double)l->batch};
    pd_optim_grad g = {.g = l->grad, .lo = 0, .hi = l->nparams, .curv = l->curv ? &cv : NULL};
    if (l->sparse)
        g = (pd_optim_grad){.idx = l->sgrad.idx, .val = l->sgrad.val, .nnz = l->sgrad.nnz};
    pd_optim_take_step(opt, t, scale, pd_learner_grad_norm(l, oc), theta, &g);
}

int pd_learner_local_step(pd_learner *l, pd_optim *opt, const pd_optim_config *oc,
                          float *theta, float *look, int64_t t, bool *applied)
{
    const float *at = theta;
    if (look) {
        pd_optim_lookahead(opt, theta, look, 0, l->nparams);
        at = look;
    }
    PD_TRY(pd_learner_grad(l, at, applied));
    if (!*applied)
        return PD_OK;   /* never applied: the caller counts it */
    pd_learner_apply(l, opt, oc, theta, t, 1.0);
    return PD_OK;
}

int pd_learner_start_point(const pd_config *cfg, const pd_model *m, float *theta)
{
    if (cfg->model.init_from[0])
        return pd_use_init_from(cfg->model.init_from, cfg, m, theta);
    pd_model_init(m, theta, cfg->run.seed);
    return PD_OK;
}
