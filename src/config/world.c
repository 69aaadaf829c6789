/* Rules that need the job's size (checked once MPI's rank count is known,
 * before anything is created), and the fault-injection lookup. */
#include <stdbool.h>

#include "paramd/config.h"
#include "paramd/error.h"

int pd_config_check_world(const pd_config *cfg, int ranks)
{
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
