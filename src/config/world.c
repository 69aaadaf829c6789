/* Rules that need the job's size (checked once MPI's rank count is known,
 * before anything is created), and the fault-injection lookup. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/config.h"
#include "paramd/error.h"

/* Each phase against the job's size, refused at the phase's entry. */
static int check_phases(const pd_config *cfg, int ranks)
{
    const char *src = cfg->source[0] ? cfg->source : "<config>";
    pd_config *pc = pd_malloc(sizeof *pc);
    if (!pc)
        return PD_ENOMEM;
    int err = PD_OK;
    for (int i = 0; i < cfg->training.n_phases && err == PD_OK; i++) {
        err = pd_config_phase(cfg, i, pc);
        if (err == PD_OK)
            err = pd_config_check_world(pc, ranks);
        if (err == PD_EINPUT && strncmp(pd_err_msg(), src, strlen(src)) == 0) {
            /* "SRC: KEY: what" -> "SRC:LINE:COL: training.phases[i] (mode M): KEY: what" */
            const pd_phase *ph = &cfg->training.phases[i];
            char what[1024], place[64] = "";
            snprintf(what, sizeof what, "%s", pd_err_msg() + strlen(src) + 2);
            if (ph->line > 0)
                snprintf(place, sizeof place, ":%d:%d", ph->line, ph->col);
            err = PD_FAIL(PD_EINPUT, "%s%s: training.phases[%d] (mode %s): %s", src, place, i,
                          pd_mode_name(pc->training.mode), what);
        }
    }
    free(pc);
    return err;
}

int pd_config_check_world(const pd_config *cfg, int ranks)
{
    if (cfg->training.n_phases > 0)
        return check_phases(cfg, ranks);
    const char *src = cfg->source[0] ? cfg->source : "<config>";
    const pd_training_config *t = &cfg->training;
    const pd_faults_config *f = &cfg->faults;
    if (t->mode == PD_MODE_SERIAL) {
        if (ranks != 1)
            return PD_FAIL(PD_EINPUT, "%s: training.mode: serial trains in one process "
                           "(no mpirun, or mpirun -n 1), got %d ranks", src, ranks);
        if (f->n_slow_workers > 0)
            return PD_FAIL(PD_EINPUT, "%s: faults.slow_workers: faults apply to the "
                           "distributed modes (training.mode is serial)", src);
        if (f->delay_distribution != PD_DELAY_NONE)
            return PD_FAIL(PD_EINPUT, "%s: faults.delay.distribution: faults apply to the "
                           "distributed modes (training.mode is serial)", src);
        return PD_OK;
    }
    if (ranks == 1 && t->servers == 0)
        return PD_FAIL(PD_EINPUT, "%s: training.servers: 0 runs sync mode on the workers alone, "
                       "under mpirun with at least 2 ranks, got 1 process", src);
    if (ranks == 1)
        return PD_FAIL(PD_EINPUT, "%s: training.mode: %s runs under mpirun with at least %d "
                       "ranks (%d server%s + workers), got 1 process", src,
                       pd_mode_name(t->mode), t->servers + 1, t->servers,
                       t->servers == 1 ? "" : "s");
    if (t->servers >= ranks) {
        bool one = t->servers == 1;
        return PD_FAIL(PD_EINPUT, "%s: training.servers: %d server%s need%s at least %d "
                       "ranks (%d server%s + 1 worker), got %d", src, t->servers,
                       one ? "" : "s", one ? "s" : "", t->servers + 1, t->servers,
                       one ? "" : "s", ranks);
    }
    int workers = ranks - t->servers;
    if (t->backup_workers >= workers)
        return PD_FAIL(PD_EINPUT, "%s: training.backup_workers: must be < the number of "
                       "workers (%d), got %d", src, workers, t->backup_workers);
    for (int i = 0; i < f->n_slow_workers; i++) {
        int r = f->slow_workers[i].rank;
        if (r < t->servers || r >= ranks) {
            if (workers == 1)
                return PD_FAIL(PD_EINPUT, "%s: faults.slow_workers: rank %d is not a worker "
                               "rank (the only worker is rank %d)", src, r, t->servers);
            return PD_FAIL(PD_EINPUT, "%s: faults.slow_workers: rank %d is not a worker rank "
                           "(workers are ranks %d..%d)", src, r, t->servers, ranks - 1);
        }
    }
    return PD_OK;
}

double pd_faults_slow_factor(const pd_faults_config *f, int rank)
{
    for (int i = 0; i < f->n_slow_workers; i++)
        if (f->slow_workers[i].rank == rank)
            return f->slow_workers[i].factor;
    return 1.0;
}
