/* The command line: every option and form, usage errors with their exact
 * messages, the --resume [DIR] rule, --replay RUN_DIR, and help and man page
 * from the table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/cli.h"
#include "check.h"
#include "paramd/error.h"


/* pd_cli_parse on "paramd" followed by the NULL-terminated arguments. */
static char *args_v[128];
static int parse_args(pd_cli *cli, const char *first, ...)
{
    int argc = 0;
    args_v[argc++] = "paramd";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 127; a = va_arg(ap, const char *))
        args_v[argc++] = (char *)a;
    va_end(ap);
    args_v[argc] = NULL;
    pd_err_clear();
    return pd_cli_parse(argc, args_v, cli);
}
#define PARSE(cli, ...) parse_args((cli), __VA_ARGS__, (const char *)NULL)
#define BAD(want, ...)                                               \
    do {                                                             \
        pd_cli cli_;                                                 \
        assert_int_equal(PARSE(&cli_, __VA_ARGS__), PD_EINPUT);      \
        assert_str(pd_err_msg(), (want));                            \
    } while (0)

static void test_every_option(void **state)
{
    (void)state;
    pd_cli c;
    assert_int_equal(PARSE(&c, "run.yaml"), PD_OK);
    assert_str(c.config_path, "run.yaml");
    assert_int_equal(c.n_overrides, 0);
    assert_null(c.out_dir);
    assert_false(c.resume || c.check || c.json || c.quiet || c.help || c.version || c.man);

    assert_int_equal(PARSE(&c, "--set", "a.b=1", "--set=c.d=x=y", "--out", "runs/o", "--check",
                           "--quiet", "run.yaml", "--set", "model.hidden=[64,32]"), PD_OK);
    assert_str(c.config_path, "run.yaml");
    assert_int_equal(c.n_overrides, 3);
    assert_str(c.overrides[0], "a.b=1");
    assert_str(c.overrides[1], "c.d=x=y");
    assert_str(c.overrides[2], "model.hidden=[64,32]");
    assert_str(c.out_dir, "runs/o");
    assert_true(c.check && c.quiet);
    assert_false(c.resume || c.json);
    assert_int_equal(PARSE(&c, "--json", "run.yaml", "--check"), PD_OK);
    assert_true(c.check && c.json);

    assert_int_equal(PARSE(&c, "--out=first", "--out=second", "x.yaml"), PD_OK);
    assert_str(c.out_dir, "second");   /* the last one wins */
    /* --help, --version and --man need no config. */
    assert_int_equal(PARSE(&c, "--help"), PD_OK);
    assert_true(c.help);
    assert_int_equal(PARSE(&c, "-h"), PD_OK);
    assert_true(c.help);
    assert_int_equal(PARSE(&c, "--version"), PD_OK);
    assert_true(c.version);
    assert_int_equal(PARSE(&c, "-V"), PD_OK);
    assert_true(c.version);
    assert_int_equal(PARSE(&c, "--man"), PD_OK);
    assert_true(c.man);
    /* After --, everything is positional. */
    assert_int_equal(PARSE(&c, "--", "-odd.yaml"), PD_OK);
    assert_str(c.config_path, "-odd.yaml");
    assert_int_equal(PARSE(&c, "-"), PD_OK);
    assert_str(c.config_path, "-");
}

static void test_resume(void **state)
{
    (void)state;
    pd_cli c;
    assert_int_equal(PARSE(&c, "--resume", "run.yaml"), PD_OK);
    assert_true(c.resume);
    assert_null(c.resume_dir);
    assert_str(c.config_path, "run.yaml");

    assert_int_equal(PARSE(&c, "--resume", "runs/a", "run.yaml"), PD_OK);
    assert_str(c.resume_dir, "runs/a");
    assert_str(c.config_path, "run.yaml");

    assert_int_equal(PARSE(&c, "run.yaml", "--resume", "runs/a"), PD_OK);
    assert_str(c.resume_dir, "runs/a");      /* CONFIG came first */
    assert_str(c.config_path, "run.yaml");

    assert_int_equal(PARSE(&c, "run.yaml", "--resume"), PD_OK);
    assert_true(c.resume);
    assert_null(c.resume_dir);

    assert_int_equal(PARSE(&c, "--resume=runs/b", "run.yaml"), PD_OK);
    assert_str(c.resume_dir, "runs/b");

    assert_int_equal(PARSE(&c, "--resume", "--out", "d", "run.yaml"), PD_OK);
    assert_null(c.resume_dir);               /* the next is an option */
    assert_str(c.out_dir, "d");

    /* Option arguments after DIR are skipped when looking for CONFIG. */
    assert_int_equal(PARSE(&c, "--resume", "runs/a", "--out", "d", "run.yaml"), PD_OK);
    assert_str(c.resume_dir, "runs/a");
    assert_str(c.config_path, "run.yaml");
    assert_int_equal(PARSE(&c, "--resume", "run.yaml", "--out", "d"), PD_OK);
    assert_null(c.resume_dir);
    assert_str(c.config_path, "run.yaml");
    assert_int_equal(PARSE(&c, "--resume", "runs/a", "--", "run.yaml"), PD_OK);
    assert_str(c.resume_dir, "runs/a");
    assert_str(c.config_path, "run.yaml");
    BAD("--resume=DIR needs a DIR, got an empty one", "--resume=", "run.yaml");
}

/* --replay RUN_DIR stands in for CONFIG.yaml (the run's own config is
 * used): it takes a directory, in both spellings, and refuses a CONFIG. */
static void test_replay(void **state)
{
    (void)state;
    pd_cli c;
    assert_int_equal(PARSE(&c, "--replay", "runs/a"), PD_OK);
    assert_str(c.replay_dir, "runs/a");
    assert_null(c.config_path);
    assert_null(c.out_dir);
    assert_int_equal(PARSE(&c, "--replay=runs/b", "--out", "runs/b-again", "--quiet"), PD_OK);
    assert_str(c.replay_dir, "runs/b");
    assert_str(c.out_dir, "runs/b-again");
    assert_true(c.quiet);
    assert_int_equal(PARSE(&c, "run.yaml"), PD_OK);
    assert_null(c.replay_dir);                  /* not set without the option */

    BAD("--replay needs a RUN_DIR", "--replay");
    BAD("--replay needs a RUN_DIR", "--replay", "--quiet");
    BAD("--replay needs a RUN_DIR, got an empty one", "--replay=");
    BAD("--replay takes the run's own config; drop run.yaml", "--replay", "runs/a", "run.yaml");
    BAD("--replay takes the run's own config; drop run.yaml", "run.yaml", "--replay=runs/a");
    BAD("unknown option --replya (did you mean --replay?)", "--replya", "runs/a");
}

/* --evaluate / --predict RUN_DIR also stand in for CONFIG.yaml; --out is
 * --predict's CSV file. */
static void test_evaluate_predict(void **state)
{
    (void)state;
    pd_cli c;
    assert_int_equal(PARSE(&c, "--evaluate", "runs/a", "--set", "data.test=t.csv"), PD_OK);
    assert_str(c.evaluate_dir, "runs/a");
    assert_null(c.predict_dir);
    assert_null(c.config_path);
    assert_int_equal(c.n_overrides, 1);
    assert_str(c.overrides[0], "data.test=t.csv");
    assert_int_equal(PARSE(&c, "--predict=runs/b", "--out", "p.csv"), PD_OK);
    assert_str(c.predict_dir, "runs/b");
    assert_str(c.out_dir, "p.csv");
    assert_null(c.evaluate_dir);
    BAD("--evaluate needs a RUN_DIR", "--evaluate");
    assert_int_equal(PARSE(&c, "--init-from", "runs/a", "run.yaml"), PD_OK);
    assert_str(c.init_from, "runs/a");
    assert_str(c.config_path, "run.yaml");
    BAD("--init-from needs a RUN_DIR, got an empty one", "--init-from=", "run.yaml");
    BAD("--predict needs a RUN_DIR, got an empty one", "--predict=");
    BAD("--evaluate takes the run's own config; drop run.yaml", "--evaluate", "runs/a",
        "run.yaml");
    BAD("--predict takes the run's own config; drop run.yaml", "run.yaml", "--predict=runs/a");
    BAD("--evaluate and --predict: one at a time", "--evaluate=a", "--predict=b");
    BAD("--evaluate and --replay: one at a time", "--evaluate=a", "--replay=b");
    BAD("unknown option --evalute (did you mean --evaluate?)", "--evalute", "runs/a");
}

static void test_usage_errors(void **state)
{
    (void)state;
    BAD("unknown option --sett (did you mean --set?)", "--sett", "a=1", "x.yaml");
    BAD("unknown option --chek (did you mean --check?)", "--chek", "x.yaml");
    BAD("unknown option --ver (did you mean --version?)", "--ver");
    BAD("unknown option --bogus", "--bogus", "x.yaml");
    BAD("unknown option -x", "-x", "x.yaml");
    BAD("unknown option -hV", "-hV");
    BAD("unknown option -set (did you mean --set?)", "-set", "a=1", "x.yaml");
    BAD("unknown option --frobnicate", "--frobnicate=3", "x.yaml");
    BAD("--out needs a DIR", "x.yaml", "--out");
    BAD("--out needs a DIR", "--out", "--check", "x.yaml");
    BAD("--out needs a DIR, got an empty one", "--out=", "x.yaml");
    BAD("--set needs KEY.PATH=VALUE", "x.yaml", "--set");
    BAD("--set needs KEY.PATH=VALUE, got \"abc\"", "--set", "abc", "x.yaml");
    BAD("--set needs KEY.PATH=VALUE, got \"=3\"", "--set==3", "x.yaml");
    BAD("--check takes no argument, got \"--check=1\"", "--check=1", "x.yaml");
    BAD("--json takes no argument, got \"--json=1\"", "--check", "--json=1", "x.yaml");
    BAD("--json goes with --check (paramd --check --json CONFIG.yaml)", "--json", "x.yaml");
    pd_cli none;
    char *argv0[] = {"paramd", NULL};
    assert_int_equal(pd_cli_parse(1, argv0, &none), PD_EINPUT);
    assert_str(pd_err_msg(), "missing CONFIG.yaml (usage: paramd [options] CONFIG.yaml; "
               "see paramd --help)");
    BAD("missing CONFIG.yaml (usage: paramd [options] CONFIG.yaml; see paramd --help)",
        "--check", "--set", "a.b=1");
    BAD("more than one CONFIG.yaml: a.yaml and b.yaml", "a.yaml", "b.yaml");

    /* At most PD_MAX_OVERRIDES --set options. */
    char *argv[2 * PD_MAX_OVERRIDES + 4];
    int argc = 0;
    argv[argc++] = "paramd";
    for (int i = 0; i <= PD_MAX_OVERRIDES; i++) {
        argv[argc++] = "--set";
        argv[argc++] = "a.b=1";
    }
    argv[argc++] = "x.yaml";
    pd_cli c;
    assert_int_equal(pd_cli_parse(argc, argv, &c), PD_EINPUT);
    assert_str(pd_err_msg(), "too many --set options (at most 64)");
    /* One pair fewer (argv + 2 starts at a value, read as the program name). */
    assert_int_equal(pd_cli_parse(argc - 2, argv + 2, &c), PD_OK);
    assert_int_equal(c.n_overrides, PD_MAX_OVERRIDES);
}

/* What write prints, malloc'd (via tmpfile: gcc 12 -O3 misreads
 * open_memstream buffers as dangling). */
static char *capture(void (*write)(FILE *))
{
    FILE *f = tmpfile();
    assert_non_null(f);
    write(f);
    return read_back(f);
}

static const char *const every_option[] = {"--set KEY.PATH=VALUE", "--out DIR",
                                           "--init-from RUN_DIR",
                                           "--resume [DIR]", "--check", "--json",
                                           "--replay RUN_DIR", "--evaluate RUN_DIR",
                                           "--predict RUN_DIR", "--quiet", "-h, --help",
                                           "-V, --version", "--man"};

static void test_help(void **state)
{
    (void)state;
    char *help = capture(pd_cli_print_help);
    assert_true(!strncmp(help, "Usage: paramd [options] CONFIG.yaml\n", 36));
    for (size_t i = 0; i < sizeof every_option / sizeof *every_option; i++) {
        char line[64];
        snprintf(line, sizeof line, "\n  %s\n", every_option[i]);
        if (!strstr(help, line))
            fail_msg("help lacks %s", every_option[i]);
    }
    assert_non_null(strstr(help, "143"));
    assert_non_null(strstr(help, "conf/reference.yaml"));
    for (const char *l = help; *l;) {   /* fits a terminal */
        size_t n = strcspn(l, "\n");
        if (n > 79)
            fail_msg("help line longer than 79 columns: %.*s", (int)n, l);
        l += n + (l[n] != '\0');
    }
    free(help);
}

static void test_man(void **state)
{
    (void)state;
    char *man = capture(pd_cli_write_man);
    assert_true(!strncmp(man, ".TH PARAMD 1 ", 13));
    const char *sections[] = {".SH NAME\n", ".SH SYNOPSIS\n", ".SH DESCRIPTION\n",
                              ".SH OPTIONS\n", ".SH EXIT STATUS\n", ".SH FILES\n",
                              ".SH EXAMPLES\n"};
    for (int i = 0; i < 7; i++)
        if (!strstr(man, sections[i]))
            fail_msg("man page lacks %s", sections[i]);
    const char *opts[] = {"\\fB\\-\\-set\\fR \\fIKEY.PATH=VALUE\\fR\n",
                          "\\fB\\-\\-out\\fR \\fIDIR\\fR\n",
                          "\\fB\\-\\-init\\-from\\fR \\fIRUN_DIR\\fR\n", "\\fB\\-\\-resume\\fR [\\fIDIR\\fR]\n",
                          "\\fB\\-\\-check\\fR\n", "\\fB\\-\\-json\\fR\n",
                          "\\fB\\-\\-replay\\fR \\fIRUN_DIR\\fR\n",
                          "\\fB\\-\\-evaluate\\fR \\fIRUN_DIR\\fR\n",
                          "\\fB\\-\\-predict\\fR \\fIRUN_DIR\\fR\n", "\\fB\\-\\-quiet\\fR\n",
                          "\\fB\\-h\\fR, \\fB\\-\\-help\\fR\n",
                          "\\fB\\-V\\fR, \\fB\\-\\-version\\fR\n", "\\fB\\-\\-man\\fR\n"};
    const char *opt_section = strstr(man, ".SH OPTIONS\n");
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        if (!strstr(opt_section, opts[i]))
            fail_msg("man page lacks option %s", opts[i]);
    const char *statuses[] = {".TP\n.B 0\n", ".TP\n.B 2\n", ".TP\n.B 3\n", ".TP\n.B 143\n"};
    for (int i = 0; i < 4; i++)
        assert_non_null(strstr(man, statuses[i]));
    const char *files[] = {"config.resolved.yaml", "metrics.jsonl", "params.bin",
                           "summary.json", "status.json", "checkpoints/", "params.json",
                           "evaluation.json"};
    for (int i = 0; i < 8; i++)
        assert_non_null(strstr(strstr(man, ".SH FILES\n"), files[i]));
    assert_non_null(strstr(strstr(man, ".SH EXAMPLES\n"), "mpirun \\-n 3 paramd"));
    /* Every hyphen is escaped: no raw "--" that troff would turn into a dash. */
    assert_null(strstr(man, "--"));
    free(man);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_option),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_man),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_evaluate_predict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
