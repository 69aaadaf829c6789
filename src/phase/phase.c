/* training.phases: the sequence of phases and what one hands the next
 * (paramd/phase.h). */
#include <stdlib.h>

#include "paramd/error.h"
#include "paramd/phase.h"

int pd_phase_config(const pd_config *run, int i, int64_t start, pd_config *out)
{
    PD_TRY(pd_config_phase(run, i, out));
    if (out->training.max_updates > 0)
        out->training.max_updates += start;   /* counted from the phase's start */
    return PD_OK;
}

int pd_phase_run(const pd_config *run, pd_phase_role role, void *ctx)
{
    pd_config *pc = pd_malloc(sizeof *pc);   /* outlives every phase: learners keep it */
    if (!pc)
        return PD_ENOMEM;
    pd_phase_carry c = {.run = run, .count = run->training.n_phases};
    int err = PD_OK;
    for (int i = 0; i < c.count && err == PD_OK; i++) {
        c.index = i;
        err = pd_phase_config(run, i, c.server ? c.server->c.version : 0, pc);
        if (err == PD_OK)
            err = role(pc, &c, ctx);
    }
    pd_phase_carry_free(&c);
    free(pc);
    return err;
}

int pd_phase_server_get(pd_phase_carry *c, pd_phase_server **out)
{
    if (!c->server && !(c->server = pd_calloc(1, sizeof *c->server)))
        return PD_ENOMEM;
    *out = c->server;
    return PD_OK;
}

int pd_phase_worker_get(pd_phase_carry *c, pd_phase_worker **out)
{
    if (!c->worker && !(c->worker = pd_calloc(1, sizeof *c->worker)))
        return PD_ENOMEM;
    *out = c->worker;
    return PD_OK;
}

void pd_phase_carry_free(pd_phase_carry *c)
{
    pd_phase_server *s = c->server;
    if (s) {
        if (s->evaluator && s->evaluator_free)
            s->evaluator_free(s->evaluator);
        free(s->theta);
        free(s->opt);
        free(s->w_applied);
        free(s->w_dropped);
        free(s->w_stale);
        free(s);
        c->server = NULL;
    }
    pd_phase_worker *w = c->worker;
    if (w) {
        if (w->learner && w->learner_free)
            w->learner_free(w->learner);
        free(w->local);
        free(w);
        c->worker = NULL;
    }
}
