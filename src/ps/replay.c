/* paramd --replay RUN_DIR: re-execute an async run in one process from its
 * trace. Each worker's minibatch sequence is rebuilt from its shard and
 * the seed; each applied gradient is recomputed at the parameter version
 * it was computed from (kept in a ring of recent lookahead points) and
 * applied in the recorded order, so the final parameters match the
 * original run bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/error.h"
#include "paramd/optim.h"
#include "paramd/ps.h"
#include "trace.h"
#include "train.h"

typedef struct replay {
    pd_config cfg;
    pd_trace_rec *recs;
    size_t nrec;
    int workers;
    pd_learner *l;               /* [workers] */
    int64_t *drawn;              /* [workers] minibatches drawn */
    float *theta, *ring;         /* [n], [K][n] lookahead points by version */
    float *dc;                   /* [n] dc: the corrected gradient */
    size_t n, K;
    pd_optim *opt;
    pd_evaluator *ev;
    char want[65];
} replay;

/* The ring must reach back as far as the stalest applied gradient. */
static size_t ring_size(const pd_trace_rec *r, size_t n)
{
    int64_t v = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].outcome != PD_TRACE_APPLIED)
            continue;
        if (v - r[i].from > worst)
            worst = v - r[i].from;
        v++;
    }
    return (size_t)worst + 2;
}

static int original_sha(const char *dir, char want[65])
{
    char path[1100], buf[8192];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return PD_FAIL(PD_EINPUT, "%s: cannot open (did the run finish?)", path);
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *p = strstr(buf, "\"params_sha256\":\"");
    if (!p || strlen(p) < 17 + 64)
        return PD_FAIL(PD_EINPUT, "%s: no params_sha256", path);
    memcpy(want, p + 17, 64);
    want[64] = '\0';
    return PD_OK;
}

static int setup(replay *r, const char *run_dir, const char *out_dir, const pd_run_opts *opts)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/config.resolved.yaml", run_dir);
    PD_TRY(pd_config_load(path, NULL, 0, &r->cfg));
    if (r->cfg.training.mode != PD_MODE_ASYNC || r->cfg.training.servers != 1)
        return PD_FAIL(PD_EINPUT, "%s: --replay re-executes async runs with one server; this "
                       "run is %s with %d server(s)", path, pd_mode_name(r->cfg.training.mode),
                       r->cfg.training.servers);
    PD_TRY(original_sha(run_dir, r->want));
    PD_TRY(pd_trace_read(run_dir, &r->workers, &r->recs, &r->nrec));
    if (snprintf(r->cfg.run.out_dir, sizeof r->cfg.run.out_dir, "%s", out_dir) >=
        (int)sizeof r->cfg.run.out_dir)
        return PD_FAIL(PD_EINPUT, "%s: path too long", out_dir);
    r->l = pd_calloc((size_t)r->workers, sizeof *r->l);
    r->drawn = pd_calloc((size_t)r->workers, sizeof *r->drawn);
    if (!r->l || !r->drawn)
        return PD_ENOMEM;
    for (int w = 0; w < r->workers; w++) {
        PD_TRY(pd_learner_init(&r->l[w], &r->cfg, w, r->workers));
        PD_TRY(pd_learner_use_curv(&r->l[w], &r->cfg));
    }
    r->n = r->l[0].nparams;
    r->K = ring_size(r->recs, r->nrec);
    r->theta = pd_malloc(r->n * sizeof *r->theta);
    r->ring = pd_malloc(r->K * r->n * sizeof *r->ring);
    if (!r->theta || !r->ring)
        return PD_ENOMEM;
    if (r->cfg.optimizer.staleness_compensation == PD_SCOMP_DC &&
        !(r->dc = pd_malloc(r->n * sizeof *r->dc)))
        return PD_ENOMEM;
    PD_TRY(pd_learner_start_point(&r->cfg, r->l[0].model, r->theta));
    PD_TRY(pd_optim_create(&r->cfg.optimizer, 0, r->n, r->cfg.run.seed, &r->opt));
    pd_optim_lookahead(r->opt, r->theta, r->ring, 0, r->n);
    return pd_evaluator_create(&r->cfg, opts, r->workers, 1, &r->ev);
}

/* dc: the gradient corrected from the point the worker read (version
 * from's lookahead point, as the server kept it) to the point now, as the
 * server does (pd_optim_compensate), then step v + 1. */
static void apply_dc(replay *r, const pd_learner *l, int64_t from, int64_t v, double scale)
{
    pd_optim_curv cv = {.h = l->curv, .v = l->curv ? l->curv + l->nparams : NULL,
                        .n = (double)l->batch};
    pd_optim_grad g = {.g = l->grad, .lo = 0, .hi = l->nparams, .curv = l->curv ? &cv : NULL}, dc;
    if (l->sparse)
        g = (pd_optim_grad){.idx = l->sgrad.idx, .val = l->sgrad.val, .nnz = l->sgrad.nnz};
    const float *stale = r->ring + (size_t)(from % (int64_t)r->K) * r->n;
    pd_optim_compensate(r->opt, r->cfg.optimizer.dc_lambda, r->theta, stale, 0, &g, r->dc, &dc);
    pd_optim_take_step(r->opt, v + 1, scale, pd_learner_grad_norm(l, &r->cfg.optimizer), r->theta,
                       &dc);
}

static int run(replay *r, int64_t *version)
{
    int64_t v = 0;
    for (size_t i = 0; i < r->nrec; i++) {
        const pd_trace_rec *rec = &r->recs[i];
        if (rec->worker >= (uint32_t)r->workers)
            return PD_FAIL(PD_EINPUT, "trace.bin: record %zu: worker %u of %d", i, rec->worker,
                           r->workers);
        pd_learner *l = &r->l[rec->worker];
        while (!pd_learner_next(l))
            ;   /* the worker crossed into its next epoch */
        if (r->drawn[rec->worker]++ != rec->seq)
            return PD_FAIL(PD_EINPUT, "trace.bin: record %zu: worker %u sent gradient %lld, "
                           "expected %lld", i, rec->worker, (long long)rec->seq,
                           (long long)r->drawn[rec->worker] - 1);
        if (rec->outcome != PD_TRACE_APPLIED)
            continue;   /* computed, never applied: its minibatch is used up all the same */
        if (rec->from > v || v - rec->from >= (int64_t)r->K || rec->made != v + 1)
            return PD_FAIL(PD_EINPUT, "trace.bin: record %zu: version %lld -> %lld does not "
                           "follow version %lld", i, (long long)rec->from,
                           (long long)rec->made, (long long)v);
        bool finite;
        PD_TRY(pd_learner_grad(l, r->ring + (size_t)(rec->from % (int64_t)r->K) * r->n, &finite));
        if (!finite)
            return PD_FAIL(PD_ETRAIN, "replay: record %zu: the gradient is not finite here but "
                           "was applied in the run", i);
        double scale = pd_optim_staleness_scale(&r->cfg.optimizer, v - rec->from);
        if (r->dc)
            apply_dc(r, l, rec->from, v, scale);
        else
            pd_learner_apply(l, r->opt, &r->cfg.optimizer, r->theta, v + 1, scale);
        v++;
        pd_optim_lookahead(r->opt, r->theta, r->ring + (size_t)(v % (int64_t)r->K) * r->n, 0, r->n);
    }
    *version = v;
    return PD_OK;
}

int pd_ps_replay(const char *run_dir, const char *out_dir, const pd_run_opts *opts)
{
    replay r = {0};
    char def_out[PD_PATH_MAX];
    if (!out_dir) {
        snprintf(def_out, sizeof def_out, "%s/replay", run_dir);
        out_dir = def_out;
    }
    int64_t v = 0;
    int err = setup(&r, run_dir, out_dir, opts);
    if (err == PD_OK)
        err = run(&r, &v);
    if (err == PD_OK) {
        int64_t examples = 0;
        double epoch = 0;
        for (int w = 0; w < r.workers; w++) {
            examples += r.l[w].examples;
            epoch += pd_learner_epoch(&r.l[w]);
        }
        pd_progress p = {.update = v, .examples = examples, .epoch = epoch / r.workers,
                         .lr = pd_optim_lr(&r.cfg.optimizer, v > 0 ? v : 1),
                         .train_loss = NAN, .staleness_mean = NAN, .staleness_max = -1,
                         .dropped = -1};
        char got[65];
        err = pd_evaluator_finish(r.ev, r.theta, &p, NULL, "replayed");
        if (err == PD_OK)
            err = pd_evaluator_sha(r.ev, got);
        if (err == PD_OK && strcmp(got, r.want) != 0)
            err = PD_FAIL(PD_ETRAIN, "replay of %s: params_sha256 %s differs from the run's %s",
                          run_dir, got, r.want);
        else if (err == PD_OK && !opts->quiet)
            printf("replay of %s: %lld updates, params_sha256 %s matches the run\n", run_dir,
                   (long long)v, got);
    }
    pd_evaluator_destroy(&r.ev);
    pd_optim_destroy(&r.opt);
    free(r.ring);
    free(r.dc);
    free(r.theta);
    for (int w = 0; r.l && w < r.workers; w++)
        pd_learner_free(&r.l[w]);
    free(r.l);
    free(r.drawn);
    free(r.recs);
    return err;
}
