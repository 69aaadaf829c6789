/* Roles and training drivers: the serial trainer (one process, the
 * baseline) and, under mpirun, server and worker ranks in every mode of
 * docs/design.md. The only module that calls MPI: run.c, comm.c, server.c,
 * apply.c and worker.c, every call checked through PD_MPI (src/ps/comm.h). */
#ifndef PARAMD_PS_H
#define PARAMD_PS_H

#include <stdbool.h>
#include <stdio.h>

#include "paramd/config.h"

typedef struct pd_run_opts {
    bool quiet;          /* no progress output */
    bool resume;         /* --resume: continue from a checkpoint (serial only) */
    const char *resume_dir; /* the run directory whose checkpoints/ to read */
} pd_run_opts;

/* Train as cfg says: in-process for mode serial, otherwise as one rank of
 * the MPI job (initializing and finalizing MPI). Writes the run directory
 * on the serial process / server 0. Collective on MPI_COMM_WORLD for the
 * distributed modes. Returns PD_OK, or an error whose code maps to the exit
 * status (pd_exit_status). */
int pd_ps_run(const pd_config *cfg, const pd_run_opts *opts);

/* --replay: re-execute the async run in run_dir (made with training.trace:
 * true) in this process, writing a run directory to out_dir (NULL:
 * run_dir/replay), and check that its params_sha256 equals the run's
 * (PD_ETRAIN when it does not). Local. */
int pd_ps_replay(const char *run_dir, const char *out_dir, const pd_run_opts *opts);

/* --check: load and validate the data, build the model, print a short
 * resolved summary to out (NULL: print nothing): lines for people, or with
 * json one JSON object on one line (--check --json; its keys are listed in
 * README "Running"). ranks is the job's size (1 outside mpirun). Local; creates
 * nothing on disk. */
int pd_ps_check(const pd_config *cfg, int ranks, bool json, FILE *out);

/* This process's rank and the job's size as the launcher announces them in
 * the environment (Open MPI, PMIx, Slurm), before MPI is initialized:
 * rank 0 and size 1 outside a launcher. Local. */
void pd_ps_launch_env(int *rank, int *size);

/* Collective on the launched job, for errors found before MPI started
 * (every rank finds the same one): each rank, after rank 0 has printed it,
 * meets the others here before exiting. A rank that exited at once could
 * make mpirun end rank 0 before its message was out (seen in 3 of 40
 * runs). Errors of MPI itself are ignored: the caller exits anyway. */
void pd_ps_exit_together(void);

/* "Open MPI v4.1.4, ..." (MPI_Get_library_version's first line). Local. */
const char *pd_ps_mpi_version(void);

#endif
