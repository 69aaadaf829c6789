/* training.mode serial: one process, the same learner, model, optimizer
 * and evaluator as the distributed modes; the baseline every distributed
 * run is compared to. Writes checkpoints (checkpoint.*, and one at the end)
 * to run.out_dir/checkpoints and resumes from them (--resume). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/ckpt.h"
#include "paramd/error.h"
#include "paramd/optim.h"
#include "paramd/signals.h"
#include "checkpoint.h"
#include "serial.h"
#include "train.h"

typedef struct serial_state {
    const pd_config *cfg;
    pd_learner learner;
    pd_evaluator *ev;
    pd_optim *opt;
    float *theta, *point;          /* point: lookahead buffer, or NULL */
    pd_progress prog;
    double loss_sum;
    int64_t loss_n, bad;
    double last_eval_t;            /* pd_now() at the last evaluation */
    /* checkpoints */
    char ckpt_dir[PD_PATH_MAX + 16];   /* run.out_dir/checkpoints */
    uint64_t layout_hash, config_hash;
    int64_t ckpt_update;           /* update of the last one written, -1: none */
    double ckpt_t;                 /* pd_now() at the last one written */
    pd_ckpt_part resumed;          /* --resume: the checkpoint, until the evaluator has it */
    bool is_resumed;
    char resume_dir[PD_PATH_MAX + 16];   /* --resume: DIR/checkpoints */
} serial_state;

/* Write the checkpoint of update s->prog.update (once per update). */
static int checkpoint(serial_state *s)
{
    if (s->ckpt_update == s->prog.update)
        return PD_OK;
    pd_learner *l = &s->learner;
    size_t osz = pd_optim_state_size(s->opt), isz = pd_iter_state_size(l->iter);
    unsigned char *ob = pd_malloc(osz), *ib = pd_malloc(isz);
    int err = PD_OK;
    if (!ob || !ib) {
        err = PD_ENOMEM;
        goto out;
    }
    PD_TRY_GOTO(err, pd_optim_save(s->opt, ob, osz), out);
    PD_TRY_GOTO(err, pd_iter_save(l->iter, ib, isz), out);
    int64_t t = s->prog.update;
    double t0 = pd_now();
    pd_ckpt_worker w = {t + s->bad, t, 0, s->bad};
    pd_ckpt_wstate ws = {.seq = t + s->bad, .examples = l->examples};
    pd_ckpt_part p = {
        .part = 0, .nparts = 1, .layout_hash = s->layout_hash, .config_hash = s->config_hash,
        .optim_kind = (uint32_t)s->cfg->optimizer.name, .updates = (uint64_t)t,
        .version = (uint64_t)t, .lo = 0, .hi = l->nparams, .examples = (uint64_t)l->examples,
        .params = s->theta, .optim = ob, .optim_size = osz, .niters = 1, .iter = &ib,
        .iter_size = &isz, .sent = w.sent, .applied = w.applied, .dropped = 0, .bad = s->bad,
        .nworkers = 1, .worker = &w, .nwstates = 1, .wstate = &ws,
    };
    pd_ckpt_eval_put(s->ev, &p);
    PD_TRY_GOTO(err, pd_ckpt_save(s->ckpt_dir, &p, s->cfg->checkpoint.keep), out);
    s->ckpt_update = t;
    s->ckpt_t = pd_now();
    pd_evaluator_note_pause(s->ev, s->ckpt_t - t0);
out:
    free(ib);
    free(ob);
    return err;
}

static bool checkpoint_due(const serial_state *s)
{
    return pd_ckpt_due(s->cfg, s->prog.update, s->ckpt_t);
}

/* --resume: the newest valid checkpoint of dir/checkpoints into theta, the
 * optimizer, the iterator and the counters (the evaluator's part waits in
 * s->resumed until it exists). Every part is checked before the run
 * starts; a refusal ends the run (exit 2) before any training. */
static int resume(serial_state *s, const char *dir)
{
    PD_TRY(pd_ckpt_dir(dir, s->resume_dir, sizeof s->resume_dir));
    pd_ckpt_part p;
    PD_TRY(pd_ckpt_find(s->resume_dir, 0, s->layout_hash, s->config_hash, NULL, &p));
    pd_learner *l = &s->learner;
    int err = PD_OK;
    if (p.nparts != 1 || p.lo != 0 || p.hi != l->nparams || p.niters != 1) {
        err = PD_FAIL(PD_EINPUT, "%s/ckpt-%012" PRIu64 ".0.pdck: META: %u parts over [%" PRIu64
                      ", %" PRIu64 ") with %zu iterators; a serial run of %zu parameters "
                      "needs 1 part over [0, %zu) with 1", s->resume_dir, p.updates, p.nparts, p.lo,
                      p.hi, p.niters, l->nparams, l->nparams);
        goto out;
    }
    PD_TRY_GOTO(err, pd_optim_load(s->opt, p.optim, p.optim_size), out);
    PD_TRY_GOTO(err, pd_iter_load(l->iter, p.iter[0], p.iter_size[0]), out);
    memcpy(s->theta, p.params, l->nparams * sizeof *s->theta);
    s->prog.update = (int64_t)p.updates;
    s->bad = p.bad;
    l->examples = (int64_t)p.examples;
    s->ckpt_update = s->prog.update;
    s->resumed = p;
    s->is_resumed = true;
    return PD_OK;
out:
    pd_ckpt_part_free(&p);
    return err;
}

static int evaluate(serial_state *s, bool *stop)
{
    pd_progress *p = &s->prog;
    p->train_loss = s->loss_n ? s->loss_sum / (double)s->loss_n : NAN;
    p->examples = s->learner.examples;
    p->epoch = pd_learner_epoch(&s->learner);
    p->lr = pd_optim_lr(&s->cfg->optimizer, p->update > 0 ? p->update : 1);
    p->grad = s->learner.sparse || p->update == 0 ? NULL : s->learner.grad;
    s->loss_sum = 0;
    s->loss_n = 0;
    s->last_eval_t = pd_now();
    return pd_evaluator_eval(s->ev, s->theta, p, stop);
}

/* One update from the minibatch the learner has drawn. */
static int update(serial_state *s)
{
    pd_learner *l = &s->learner;
    bool applied;
    PD_TRY(pd_learner_local_step(l, s->opt, &s->cfg->optimizer, s->theta, s->point,
                                 s->prog.update + 1, &applied));
    if (!applied) {
        if (++s->bad > s->cfg->training.max_bad_updates)
            return PD_FAIL(PD_ETRAIN, "training diverged at update %lld: the gradient is not "
                           "finite (lower optimizer.lr, or set optimizer.clip_norm)",
                           (long long)s->prog.update + 1);
        return PD_OK;   /* never applied; the next minibatch follows */
    }
    s->prog.update++;
    s->loss_sum += l->loss;
    s->loss_n++;
    return PD_OK;
}

static int train(serial_state *s, const char **exit)
{
    const pd_training_config *tc = &s->cfg->training;
    bool stop = false;
    int epochs = (int)pd_iter_epoch(s->learner.iter);
    /* At 0. A resumed run goes on with the evaluations of the run it
     * continues (its rows up to the checkpoint's last one are kept), so
     * early stopping counts each evaluation once. */
    int64_t last_eval = s->is_resumed ? s->resumed.last_eval : s->prog.update;
    if (!s->is_resumed)
        PD_TRY(evaluate(s, &stop));
    *exit = "done";
    /* A resumed run may already be at its limits: train no further. */
    bool finished = tc->epochs > 0 && epochs >= tc->epochs;
    if (!finished && tc->max_updates > 0 && s->prog.update >= tc->max_updates) {
        *exit = "max_updates";
        finished = true;
    }
    while (!stop && !finished) {
        /* Signals are obeyed between steps, never inside one. */
        if (pd_signals_take_checkpoint())
            PD_TRY(checkpoint(s));
        if (pd_signals_stop()) {
            *exit = "signal";
            return PD_OK;
        }
        if (!pd_learner_next(&s->learner)) {
            epochs++;
            if (tc->eval_every == 0 && last_eval != s->prog.update) {
                PD_TRY(evaluate(s, &stop));
                last_eval = s->prog.update;
            }
            if (tc->epochs > 0 && epochs >= tc->epochs)
                break;
            continue;
        }
        PD_TRY(update(s));
        bool due = (tc->eval_every > 0 && s->prog.update % tc->eval_every == 0) ||
                   (tc->eval_every_seconds > 0 &&
                    pd_now() - s->last_eval_t >= tc->eval_every_seconds);
        if (due && last_eval != s->prog.update) {
            PD_TRY(evaluate(s, &stop));
            last_eval = s->prog.update;
        }
        if (checkpoint_due(s))
            PD_TRY(checkpoint(s));
        if (tc->max_updates > 0 && s->prog.update >= tc->max_updates) {
            *exit = "max_updates";
            break;
        }
        PD_TRY(pd_evaluator_heartbeat(s->ev, &s->prog));
    }
    if (stop)
        *exit = "early_stopped";
    s->prog.train_loss = s->loss_n ? s->loss_sum / (double)s->loss_n : NAN;
    return PD_OK;
}

/* A stop signal: the checkpoint of the last whole step, then params.bin
 * and summary.json ("exit": "signal") as at any end; --resume finishes
 * the run. PD_ESTOPPED: exit 143. */
static int stopped(serial_state *s)
{
    PD_TRY(checkpoint(s));
    s->prog.examples = s->learner.examples;
    s->prog.epoch = pd_learner_epoch(&s->learner);
    PD_TRY(pd_evaluator_finish(s->ev, s->theta, &s->prog, NULL, "signal"));
    return PD_FAIL(PD_ESTOPPED, "stopped by %s after update %lld; checkpoint "
                   "%s/ckpt-%012lld.manifest written (continue with --resume)",
                   pd_signals_name(pd_signals_stop()), (long long)s->prog.update, s->ckpt_dir,
                   (long long)s->prog.update);
}

int pd_serial_run(const pd_config *cfg, const pd_run_opts *opts)
{
    serial_state s = {.cfg = cfg};
    s.prog.staleness_mean = NAN;
    s.prog.staleness_max = -1;
    s.prog.dropped = -1;
    int err = PD_OK;
    const char *exit = "failed";
    char *rows = NULL;
    size_t nrows = 0;
    PD_TRY_GOTO(err, pd_learner_init(&s.learner, cfg, 0, 1), out);
    PD_TRY_GOTO(err, pd_learner_use_curv(&s.learner, cfg), out);
    size_t n = s.learner.nparams;
    s.theta = pd_malloc(n * sizeof *s.theta);
    if (!s.theta) {
        err = PD_ENOMEM;
        goto out;
    }
    PD_TRY_GOTO(err, pd_learner_start_point(cfg, s.learner.model, s.theta), out);
    PD_TRY_GOTO(err, pd_optim_create(&cfg->optimizer, 0, n, cfg->run.seed, &s.opt), out);
    if (pd_optim_has_lookahead(s.opt)) {
        s.point = pd_malloc(n * sizeof *s.point);
        if (!s.point) {
            err = PD_ENOMEM;
            goto out;
        }
    }
    s.ckpt_update = -1;
    s.ckpt_t = pd_now();
    if (snprintf(s.ckpt_dir, sizeof s.ckpt_dir, "%s/checkpoints", cfg->run.out_dir) >=
        (int)sizeof s.ckpt_dir) {
        err = PD_FAIL(PD_EINPUT, "run.out_dir: %s: path too long", cfg->run.out_dir);
        goto out;
    }
    PD_TRY_GOTO(err, pd_ckpt_hashes(s.learner.model, cfg, 1, &s.layout_hash, &s.config_hash),
                out);
    /* Resume before the run directory is opened, so that a refused
     * checkpoint leaves it as it was. */
    if (opts->resume) {
        PD_TRY_GOTO(err, resume(&s, opts->resume_dir), out);
        PD_TRY_GOTO(err, pd_ckpt_rows_read(opts->resume_dir, s.resumed.last_eval, &rows, &nrows),
                    out);
    }
    PD_TRY_GOTO(err, pd_evaluator_create(cfg, opts, 1, 0, &s.ev), out);
    PD_TRY_GOTO(err, pd_ckpt_rows_write(cfg->run.out_dir, rows, nrows), out);
    if (s.is_resumed)
        PD_TRY_GOTO(err, pd_ckpt_resume_eval(s.ev, &s.resumed, s.resume_dir), out);
    PD_TRY_GOTO(err, train(&s, &exit), out);
    if (!strcmp(exit, "signal")) {
        err = stopped(&s);
        goto out;
    }
    if (pd_ckpt_enabled(cfg, opts))
        PD_TRY_GOTO(err, checkpoint(&s), out);   /* one at the end */
    s.prog.examples = s.learner.examples;
    s.prog.epoch = pd_learner_epoch(&s.learner);
    PD_TRY_GOTO(err, pd_evaluator_finish(s.ev, s.theta, &s.prog, NULL, exit), out);
out:
    pd_ckpt_part_free(&s.resumed);
    free(rows);
    free(s.point);
    free(s.theta);
    pd_optim_destroy(&s.opt);
    pd_evaluator_destroy(&s.ev);
    pd_learner_free(&s.learner);
    return err;
}
