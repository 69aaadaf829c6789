/* The batch methods' drivers (driver.c), called by ps's entry points in
 * place of the serial trainer and the sync server and worker roles. */
#ifndef PARAMD_BATCH_DRIVER_H
#define PARAMD_BATCH_DRIVER_H

#include "comm.h"
#include "paramd/config.h"
#include "paramd/ps.h"

/* training.mode serial with cg, bfgs or lbfgs: one process. Local. */
int pd_batch_serial(const pd_config *cfg, const pd_run_opts *opts);

/* training.mode sync with cg, bfgs or lbfgs: rank 0 (the one server) runs
 * the minimizer and the evaluator, the workers evaluate their blocks of
 * the objective. Collective on MPI_COMM_WORLD (every rank calls it after
 * init; it agrees on setup errors with pd_comm_agree). */
int pd_batch_sync(const pd_config *cfg, const pd_run_opts *opts, pd_world *w);

#endif
