/* An optimizer config for the unit tests: `rule` with its defaults, a
 * constant schedule, and everything else (clipping, decay, noise) off.
 * Include after paramd/optim.h. */
#ifndef PARAMD_TEST_OPTIM_CFG_H
#define PARAMD_TEST_OPTIM_CFG_H

#include <math.h>
#include <string.h>

static inline pd_optim_config test_optim_config(pd_optimizer_name rule)
{
    pd_optim_config oc;
    memset(&oc, 0, sizeof oc);
    oc.name = rule;
    oc.lr = oc.momentum = oc.rho = oc.eps = oc.beta1 = oc.beta2 = NAN;
    pd_optim_defaults(&oc);
    oc.schedule.type = PD_SCHED_CONSTANT;
    oc.schedule.step_size = 1;
    oc.schedule.gamma = 1;
    return oc;
}

#endif
