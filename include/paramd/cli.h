/* The command line: one table of options drives parsing, --help and the
 * man page paramd.1 (part of the config module). */
#ifndef PARAMD_CLI_H
#define PARAMD_CLI_H

#include <stdbool.h>
#include <stdio.h>

#define PD_MAX_OVERRIDES 64

typedef struct pd_cli {
    const char *config_path;                  /* the positional CONFIG.yaml */
    const char *overrides[PD_MAX_OVERRIDES];  /* --set values, in order */
    int n_overrides;
    const char *out_dir;                      /* --out DIR, or NULL */
    const char *init_from;                    /* --init-from RUN_DIR, or NULL */
    bool resume;                              /* --resume given */
    const char *resume_dir;                   /* its optional DIR, or NULL */
    const char *replay_dir;                   /* --replay RUN_DIR, or NULL */
    const char *evaluate_dir;                 /* --evaluate RUN_DIR, or NULL */
    const char *predict_dir;                  /* --predict RUN_DIR, or NULL */
    bool check, quiet, help, version;
    bool json;                                /* --json: --check prints JSON */
    bool man;                                 /* --man: print paramd.1 and exit */
} pd_cli;

/* Parse argv (pointers into argv are kept). Bad usage: PD_EINPUT with a
 * message ("unknown option --x", "--set needs KEY.PATH=VALUE", "missing
 * CONFIG.yaml", ...). --help / --version / --man need no config path.
 * `--resume DIR`: the next argument is DIR only if it does not start with
 * '-' and CONFIG.yaml came before it or another non-option argument
 * follows it (`--resume=DIR` always); later --out/--resume win. --json
 * without --check is refused; --replay, --evaluate and --predict take a
 * run directory instead of CONFIG.yaml, one of them at a time. Local. */
int pd_cli_parse(int argc, char **argv, pd_cli *cli);
/* Usage text listing every option, from the table. */
void pd_cli_print_help(FILE *out);
/* The man page (troff), from the same table. */
void pd_cli_write_man(FILE *out);
/* libyaml's version string, for --version. */
const char *pd_config_yaml_version(void);

#endif
