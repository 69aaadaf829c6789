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

/* linreg: (f(theta) - f*) / f*, f the least-squares loss (with model.l2)
 * over the training part's first optimizer.batch_examples examples (0:
 * all) and f* its minimum, from the normal equations solved in double
 * precision (Cholesky) on sufficient statistics gathered in blocks as cd
 * does; NAN when they are singular (a constant feature with l2 = 0) or
 * the data is not finite. Reads the training part again and costs about
 * m p^2 / 2 multiply-adds (p = features + 1). Local. */
int pd_batch_linreg_gap(const pd_config *cfg, const float *theta, double *gap);

#endif
