/* training.mode serial: one process, the same learner, model, optimizer
 * and evaluator as the distributed modes; the baseline every distributed
 * run is compared to. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/error.h"
#include "paramd/optim.h"
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
} serial_state;

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
    int epochs = 0;
    int64_t last_eval = 0;
    PD_TRY(evaluate(s, &stop));
    *exit = "done";
    while (!stop) {
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

int pd_serial_run(const pd_config *cfg, const pd_run_opts *opts)
{
    serial_state s = {.cfg = cfg};
    s.prog.staleness_mean = NAN;
    s.prog.staleness_max = -1;
    s.prog.dropped = -1;
    int err = PD_OK;
    const char *exit = "failed";
    PD_TRY_GOTO(err, pd_learner_init(&s.learner, cfg, 0, 1), out);
    PD_TRY_GOTO(err, pd_evaluator_create(cfg, opts, 1, 0, &s.ev), out);
    size_t n = s.learner.nparams;
    s.theta = pd_malloc(n * sizeof *s.theta);
    if (!s.theta) {
        err = PD_ENOMEM;
        goto out;
    }
    pd_model_init(s.learner.model, s.theta, cfg->run.seed);
    PD_TRY_GOTO(err, pd_optim_create(&cfg->optimizer, 0, n, cfg->run.seed, &s.opt), out);
    if (pd_optim_has_lookahead(s.opt)) {
        s.point = pd_malloc(n * sizeof *s.point);
        if (!s.point) {
            err = PD_ENOMEM;
            goto out;
        }
    }
    PD_TRY_GOTO(err, train(&s, &exit), out);
    s.prog.examples = s.learner.examples;
    s.prog.epoch = pd_learner_epoch(&s.learner);
    PD_TRY_GOTO(err, pd_evaluator_finish(s.ev, s.theta, &s.prog, NULL, exit), out);
out:
    free(s.point);
    free(s.theta);
    pd_optim_destroy(&s.opt);
    pd_evaluator_destroy(&s.ev);
    pd_learner_free(&s.learner);
    return err;
}
