/* Private to ps: server and worker ranks of the distributed modes. */
#ifndef PARAMD_PS_SERVER_H
#define PARAMD_PS_SERVER_H

#include "comm.h"
#include "paramd/config.h"
#include "paramd/ps.h"

/* Run server world->index until every worker has finished. Server 0 also
 * evaluates and writes the run directory. */
int pd_server_run(const pd_config *cfg, const pd_run_opts *opts, pd_world *world);

/* training.phases (run.c runs them in turn): what one phase hands the next
 * on this rank. A server's part: its parameters, optimizer state, version
 * and counters (server 0: also the evaluator); a worker's: its learner
 * (shard, minibatch iterator), fault RNG and local optimizer state. */
typedef struct pd_server_carry pd_server_carry;
typedef struct pd_worker_carry pd_worker_carry;
typedef struct pd_phase_carry {
    const pd_config *run;          /* the whole run's (config.resolved.yaml) */
    int index, count;              /* this phase, of count */
    pd_server_carry *server;       /* NULL before the first phase ends */
    pd_worker_carry *worker;
} pd_phase_carry;
/* One phase of cfg (pd_config_phase), from and into c. */
int pd_server_phase(const pd_config *cfg, const pd_run_opts *opts, pd_world *world,
                    pd_phase_carry *c);
int pd_worker_phase(const pd_config *cfg, const pd_run_opts *opts, pd_world *world,
                    pd_phase_carry *c);
void pd_phase_carry_free(pd_phase_carry *c);
void pd_worker_carry_free(pd_worker_carry *c);   /* worker.c */
/* Run worker world->index until its epochs are done or a server says stop
 * (with --resume, from the state server 0 sends it). */
int pd_worker_run(const pd_config *cfg, const pd_run_opts *opts, pd_world *world);
/* Sync with training.servers 0 (colocated.c): every rank a worker that
 * also serves its range; rank 0 evaluates and writes the run directory. */
int pd_colocated_run(const pd_config *cfg, const pd_run_opts *opts, pd_world *world);

#endif
