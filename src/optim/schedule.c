/* Learning-rate schedules: the value of optimizer.lr at update t (1-based),
 * before the caller's scale. The formulas are listed with pd_optim_lr in
 * include/paramd/optim.h; this file is their only implementation. */
#include <assert.h>
#include <math.h>

#include "paramd/optim.h"

static const double PI = 3.14159265358979323846;

double pd_optim_lr(const pd_optim_config *oc, int64_t t)
{
    assert(t >= 1);
    const pd_schedule_config *s = &oc->schedule;
    /* Config validation requires step_size >= 1 where it is read; a 0 here
     * (a hand-built config) acts as 1 rather than dividing by zero. */
    int64_t size = s->step_size > 0 ? s->step_size : 1;
    double lr = oc->lr;
    double k = (double)(t - 1);   /* updates already made */
    switch (s->type) {
    case PD_SCHED_CONSTANT:
        break;
    case PD_SCHED_STEP:
        lr *= pow(s->gamma, (double)((t - 1) / size));
        break;
    case PD_SCHED_EXPONENTIAL:
        lr *= pow(s->gamma, k / (double)size);
        break;
    case PD_SCHED_INVERSE_TIME:
        lr /= 1.0 + s->decay * k;
        break;
    case PD_SCHED_COSINE: {
        double period = (double)size;
        double x = k < period ? k : period;
        lr = s->min_lr + (lr - s->min_lr) * 0.5 * (1.0 + cos(PI * x / period));
        break;
    }
    }
    if (s->warmup > 0 && t <= s->warmup)
        lr *= (double)t / (double)s->warmup;
    return lr;
}

double pd_optim_staleness_scale(const pd_optim_config *oc, int64_t tau)
{
    return oc->staleness_compensation == PD_SCOMP_INVERSE && tau > 1 ? 1.0 / (double)tau : 1.0;
}
