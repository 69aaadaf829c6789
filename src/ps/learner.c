/* A worker's half of training, shared by the serial trainer and the MPI
 * worker ranks: its shard, its minibatch stream and the gradient at a
 * point. Buffers are sized once; pd_learner_step never allocates. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/error.h"
#include "paramd/optim.h"
#include "train.h"

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
    pd_model_config mc = cfg->model;
    mc.features = (int)pd_data_features(l->data);
    if (mc.classes == 0)
        mc.classes = pd_data_classes(l->data);
    size_t batch = (size_t)cfg->training.batch_size;
    PD_TRY_GOTO(err, pd_model_create(&mc, batch, &l->model), fail);
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
    if (pd_iter_batches_per_epoch(l->iter) == 0) {
        err = PD_FAIL(PD_EINPUT, "%s: training.batch_size: %d is larger than the %zu "
                      "examples of shard %d with drop_last", cfg->source,
                      cfg->training.batch_size, l->train->n, shard);
        goto fail;
    }
    return PD_OK;
fail:
    pd_learner_free(l);
    return err;
}

void pd_learner_free(pd_learner *l)
{
    pd_iter_destroy(&l->iter);
    if (l->sparse)
        pd_sparse_grad_free(&l->sgrad);
    free(l->grad);
    l->grad = NULL;
    pd_model_destroy(&l->model);
    pd_data_destroy(&l->data);
    l->sparse = false;
}

static bool all_finite(const float *v, size_t n)
{
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += v[i] * 0.0f;   /* stays 0 unless some v[i] is NaN or Inf */
    return acc == 0.0f;
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
        *finite = isfinite(l->loss) && all_finite(l->sgrad.val, l->sgrad.nnz);
    } else {
        PD_TRY(pd_model_grad(l->model, point, l->train, l->rows, l->batch, l->grad,
                             &l->loss));
        *finite = isfinite(l->loss) && all_finite(l->grad, l->nparams);
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
    pd_optim_step st = pd_optim_prepare(opt, t, 1.0, pd_learner_grad_norm(l, oc));
    if (l->sparse)
        pd_optim_apply_sparse(opt, &st, theta, l->sgrad.idx, l->sgrad.val, l->sgrad.nnz);
    else
        pd_optim_apply(opt, &st, theta, l->grad, 0, l->nparams);
    return PD_OK;
}
