/* Private to ps: server and worker ranks of the distributed modes. */
#ifndef PARAMD_PS_SERVER_H
#define PARAMD_PS_SERVER_H

#include "comm.h"
#include "paramd/config.h"
#include "paramd/phase.h"
#include "paramd/ps.h"

/* Run server world->index until every worker has finished. Server 0 also
 * evaluates and writes the run directory. */
int pd_server_run(const pd_config *cfg, const pd_run_opts *opts, pd_world *world);

/* training.phases (paramd/phase.h runs them in turn; run.c gives it these
 * roles): one phase of cfg on this rank, taking from c what the previous
 * phase handed over and leaving in c what the next one needs. */
int pd_server_phase(const pd_config *cfg, const pd_run_opts *opts, pd_world *world,
                    pd_phase_carry *c);
int pd_worker_phase(const pd_config *cfg, const pd_run_opts *opts, pd_world *world,
                    pd_phase_carry *c);
/* Run worker world->index until its epochs are done or a server says stop
 * (with --resume, from the state server 0 sends it). */
int pd_worker_run(const pd_config *cfg, const pd_run_opts *opts, pd_world *world);
/* Sync with training.servers 0 (colocated.c): every rank a worker that
 * also serves its range; rank 0 evaluates and writes the run directory. */
int pd_colocated_run(const pd_config *cfg, const pd_run_opts *opts, pd_world *world);

#endif
