/* paramd: parse the command line, load and check the configuration, hand
 * over to the trainer. The only place that decides the exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paramd/cli.h"
#include "paramd/config.h"
#include "paramd/error.h"
#include "paramd/model.h"
#include "paramd/optim.h"
#include "paramd/ps.h"
#include "paramd/signals.h"
#include "paramd/use.h"

/* Errors found before MPI starts are the same on every rank: rank 0 alone
 * prints them; the others exit quietly with the same status, after rank 0
 * has printed when a launcher started several ranks. */
static int fail(int rank, int size, int err)
{
    if (rank == 0) {
        fprintf(stderr, "paramd: %s\n", pd_err_msg());
        if (getenv("PARAMD_DEBUG"))
            fputs(pd_err_where(), stderr);
        fflush(stderr);
    }
    if (size > 1)
        pd_ps_exit_together();
    return pd_exit_status(err);
}

/* OpenBLAS settled for its slowest kernels on a CPU it does not know
 * (src/model/blas.c): name the right ones and start again, before MPI or
 * anything else; PARAMD_BLAS_AUTO marks the second start, which checks
 * that the kernels compute right and otherwise goes back to Prescott.
 * Setting OPENBLAS_CORETYPE yourself (even to Prescott) keeps your choice.
 * If exec fails, paramd carries on as it is. */
static void reexec_with_better_blas(char **argv)
{
    if (getenv("PARAMD_BLAS_AUTO")) {
        if (pd_model_blas_selfcheck())
            return;
        fprintf(stderr, "paramd: OpenBLAS's %s kernels fail a check of sgemm; using its "
                "Prescott kernels\n", pd_model_blas_core());
        if (setenv("OPENBLAS_CORETYPE", "Prescott", 1) == 0 &&
            unsetenv("PARAMD_BLAS_AUTO") == 0)
            execv("/proc/self/exe", argv);
        return;
    }
    const char *core = pd_model_blas_better_core();
    if (!core || getenv("OPENBLAS_CORETYPE") || setenv("OPENBLAS_CORETYPE", core, 1) != 0 ||
        setenv("PARAMD_BLAS_AUTO", core, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("PARAMD_BLAS_AUTO");
}

static void print_version(void)
{
    printf("paramd %s\n", PARAMD_VERSION);
    printf("MPI: %s\n", pd_ps_mpi_version());
    printf("OpenBLAS: %s (kernels: %s%s)\n", pd_model_blas_version(), pd_model_blas_core(),
           getenv("PARAMD_BLAS_AUTO")    ? ", chosen by paramd for this CPU"
           : getenv("OPENBLAS_CORETYPE") ? ", from OPENBLAS_CORETYPE" : "");
    printf("libyaml: %s\n", pd_config_yaml_version());
}

int main(int argc, char **argv)
{
    reexec_with_better_blas(argv);
    int rank, size;
    pd_ps_launch_env(&rank, &size);
    pd_cli cli;
    int err = pd_cli_parse(argc, argv, &cli);
    if (err)
        return fail(rank, size, err);
    if (cli.help) {
        pd_cli_print_help(stdout);
        return 0;
    }
    if (cli.version) {
        print_version();
        return 0;
    }
    if (cli.man) {
        pd_cli_write_man(stdout);
        return 0;
    }
    if (cli.replay_dir) {
        pd_run_opts ropts = {.quiet = cli.quiet};
        err = pd_ps_replay(cli.replay_dir, cli.out_dir, &ropts);
        return err ? fail(rank, size, err) : 0;
    }
    if (cli.evaluate_dir || cli.predict_dir) {
        pd_use_opts uo = {.run_dir = cli.evaluate_dir ? cli.evaluate_dir : cli.predict_dir,
                          .overrides = cli.overrides, .n_overrides = cli.n_overrides,
                          .out_path = cli.out_dir};
        err = cli.evaluate_dir ? pd_use_evaluate(&uo, stdout) : pd_use_predict(&uo);
        return err ? fail(rank, size, err) : 0;
    }
    pd_config cfg;
    err = pd_config_load(cli.config_path, cli.overrides, cli.n_overrides, &cfg);
    if (!err && cli.out_dir) {
        if (strlen(cli.out_dir) >= sizeof cfg.run.out_dir)
            err = PD_FAIL(PD_EINPUT, "--out %s: path too long", cli.out_dir);
        else
            strcpy(cfg.run.out_dir, cli.out_dir);
    }
    if (!err && cli.init_from) {
        if (strlen(cli.init_from) >= sizeof cfg.model.init_from)
            err = PD_FAIL(PD_EINPUT, "--init-from %s: path too long", cli.init_from);
        else
            strcpy(cfg.model.init_from, cli.init_from);
    }
    /* --check validates config and data without needing the job's ranks. */
    if (!err && !cli.check)
        err = pd_config_check_world(&cfg, size);
    if (!err && cli.check) {
        err = pd_ps_check(&cfg, size, cli.json, rank == 0 ? stdout : NULL);
        return err ? fail(rank, size, err) : 0;
    }
    if (err)
        return fail(rank, size, err);
    /* Runs obey signals (paramd/signals.h): the serial process, and server
     * 0 of a distributed run (rank 0 with training.servers 0), which every
     * other rank follows (the batch methods' too). */
    if ((err = pd_signals_install()) != PD_OK)
        return fail(rank, size, err);
    pd_run_opts opts = {.quiet = cli.quiet, .resume = cli.resume,
                        .resume_dir = cli.resume_dir ? cli.resume_dir : cfg.run.out_dir};
    err = pd_ps_run(&cfg, &opts);
    /* pd_ps_run has reported errors found after MPI started itself. */
    return err ? (size == 1 ? fail(rank, size, err) : pd_exit_status(err)) : 0;
}
