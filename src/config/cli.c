/* The command line: one table of options drives pd_cli_parse, --help and
 * the man page paramd.1, so the three cannot disagree.
 */
#include <string.h>
#include <yaml.h>

#include "keys.h"
#include "paramd/cli.h"
#include "paramd/error.h"

typedef enum { ARG_NONE, ARG_REQUIRED, ARG_OPTIONAL } arg_kind;

typedef struct option {
    const char *name;      /* long name, without "--" */
    char short_name;       /* 0 = none */
    arg_kind arg;
    const char *metavar;
    const char *doc;
} option;

enum { OPT_SET, OPT_OUT, OPT_INIT_FROM, OPT_RESUME, OPT_CHECK, OPT_JSON, OPT_REPLAY, OPT_EVALUATE,
       OPT_PREDICT, OPT_QUIET, OPT_HELP, OPT_VERSION, OPT_MAN, OPT_COUNT };

static const option options[OPT_COUNT] = {
    [OPT_SET] = {"set", 0, ARG_REQUIRED, "KEY.PATH=VALUE",
                 "Override a config key after the file is read; repeatable, applied in "
                 "order, checked like the file. VALUE is read as YAML, so lists work: "
                 "--set model.hidden=[64,32]."},
    [OPT_OUT] = {"out", 0, ARG_REQUIRED, "DIR",
                 "Write the run directory to DIR instead of run.out_dir. With --predict: "
                 "the CSV file of predictions (default: stdout)."},
    [OPT_INIT_FROM] = {"init-from", 0, ARG_REQUIRED, "RUN_DIR",
                       "Start from the parameters of the finished run in RUN_DIR (its "
                       "params.bin) instead of model.init, e.g. to continue a serial run in "
                       "async mode; the same as model.init_from. The model must have the same "
                       "layout (type, tensors and shapes): a difference is exit 2 naming it."},
    [OPT_RESUME] = {"resume", 0, ARG_OPTIONAL, "DIR",
                    "Resume from the newest valid checkpoint in DIR/checkpoints (DIR "
                    "defaults to the run directory), in every mode. The argument "
                    "after --resume is "
                    "taken as DIR only if it does not start with - and CONFIG.yaml came "
                    "before it or another non-option argument follows it; --resume=DIR "
                    "always is."},
    [OPT_CHECK] = {"check", 0, ARG_NONE, NULL,
                   "Validate the config and the data, print a summary, and exit."},
    [OPT_JSON] = {"json", 0, ARG_NONE, NULL,
                  "With --check: print the summary as one JSON object on one line, for "
                  "scripts (mode, ranks, servers, workers, model shape, data sizes, ...)."},
    [OPT_REPLAY] = {"replay", 0, ARG_REQUIRED, "RUN_DIR",
                    "Re-execute the async run in RUN_DIR (made with training.trace: true) in "
                    "one process, recomputing each gradient at its recorded version in the "
                    "recorded order, and check that it reproduces the run's params_sha256 "
                    "(exit 3 if not). Its run directory goes to --out, default RUN_DIR/replay. "
                    "No CONFIG.yaml: the run's config.resolved.yaml is used."},
    [OPT_EVALUATE] = {"evaluate", 0, ARG_REQUIRED, "RUN_DIR",
                      "Evaluate the finished run in RUN_DIR (its config.resolved.yaml and "
                      "params.bin, or without one its newest checkpoint) on its test file, or another one given with --set "
                      "data.test=FILE: print loss, accuracy and the confusion matrix "
                      "(logreg, svm: also precision, recall, AUC; linreg: RMSE) and write "
                      "RUN_DIR/evaluation.json. A file that does not fit the model (features, "
                      "classes) is exit 2 saying which and by how much. Only data.* keys may "
                      "be set. No CONFIG.yaml."},
    [OPT_PREDICT] = {"predict", 0, ARG_REQUIRED, "RUN_DIR",
                     "Predict with the run in RUN_DIR on data.test (--set data.test=FILE; a "
                     "file laid out as the training file, with or without its label column): "
                     "one CSV line per example, in "
                     "file order, with the predicted class (linreg: value) and the class "
                     "probabilities (svm: its score), to --out FILE.csv or stdout."},
    [OPT_QUIET] = {"quiet", 0, ARG_NONE, NULL,
                   "No progress output on stdout; errors are still printed on stderr."},
    [OPT_HELP] = {"help", 'h', ARG_NONE, NULL, "Print this help and exit."},
    [OPT_VERSION] = {"version", 'V', ARG_NONE, NULL,
                     "Print the versions of paramd, MPI, OpenBLAS and libyaml, and exit."},
    [OPT_MAN] = {"man", 0, ARG_NONE, NULL, "Print the man page (troff) and exit."},
};

static const char *const exit_statuses[][2] = {
    {"0", "Training finished (or --check, --help, --version succeeded)."},
    {"2", "Bad usage, config, data or checkpoint; the message names the file, the "
          "line or record, and the key. Also a run directory that cannot be created or "
          "written, or that already holds a run's results (nothing is overwritten)."},
    {"3", "Training failed: divergence, too many bad gradients, a rank lost, a full disk "
          "or another I/O error (one line names the file and errno)."},
    {"143", "Stopped by SIGTERM, SIGINT or SIGUSR2 (128 + 15): the run finishes its current "
            "step (sync, local_sgd: its round), writes a checkpoint (serial, sync, local_sgd), "
            "params.bin and summary.json (exit \"signal\"), and stops; --resume continues it. "
            "SIGUSR1 writes a checkpoint and training goes on. Under mpirun, server 0 acts on "
            "the signal and the other ranks follow it."},
};

/* The run directory (docs/design.md, "The run directory"). */
static const char *const run_files[][2] = {
    {"config.resolved.yaml", "The full config after defaults and overrides."},
    {"metrics.jsonl", "One JSON object per evaluation (loss, accuracy, staleness, ...)."},
    {"params.bin", "The final parameters, little-endian float32."},
    {"summary.json", "The result: mode, optimizer, updates, test loss and accuracy, "
                     "params_sha256, exit."},
    {"status.json", "Progress, rewritten atomically while the job runs."},
    {"params.json", "The layout of params.bin: each tensor's name, shape, dtype, byte order "
                    "and offset; model, activation, class names, input normalization."},
    {"evaluation.json", "Written by --evaluate: loss, accuracy, confusion matrix, ..."},
    {"checkpoints/", "Checksummed checkpoints, written atomically; --resume reads them."},
};

static const option *find_long(const char *name, size_t len)
{
    for (int i = 0; i < OPT_COUNT; i++)
        if (strlen(options[i].name) == len && !strncmp(options[i].name, name, len))
            return &options[i];
    return NULL;
}

static const option *find_short(char c)
{
    for (int i = 0; i < OPT_COUNT; i++)
        if (c && options[i].short_name == c)
            return &options[i];
    return NULL;
}

/* " (did you mean --set?)" for a close long name, else "". */
static void suggest(const char *name, size_t len, char *buf, size_t n)
{
    char typed[64];
    snprintf(typed, sizeof typed, "%.*s", (int)len, name);
    int best = -1, best_score = PD_NOT_CLOSE;
    for (int i = 0; i < OPT_COUNT; i++) {
        int score = pd_closeness(typed, options[i].name);
        if (score < best_score) {
            best_score = score;
            best = i;
        }
    }
    if (best >= 0)
        snprintf(buf, n, " (did you mean --%s?)", options[best].name);
    else
        buf[0] = '\0';
}

/* An argument that does not look like an option ("-" alone names stdin
 * by convention, so it counts as a name). */
static bool is_name(const char *a) { return a[0] != '-' || a[1] == '\0'; }

/* Is there a positional argument after argv[i]? Skips the arguments of
 * options that take one, as the parser will. */
static bool positional_after(int argc, char **argv, int i)
{
    for (int j = i + 1; j < argc; j++) {
        const char *a = argv[j];
        if (!strcmp(a, "--"))
            return j + 1 < argc;
        if (is_name(a))
            return true;
        const option *o = a[1] == '-' ? find_long(a + 2, strlen(a + 2)) : find_short(a[1]);
        if (o && o->arg == ARG_REQUIRED && !strchr(a, '=') && j + 1 < argc && is_name(argv[j + 1]))
            j++;
    }
    return false;
}

static int take(pd_cli *cli, const option *o, const char *value)
{
    switch ((int)(o - options)) {
    case OPT_SET: {
        const char *eq = strchr(value, '=');
        if (!eq || eq == value)
            return PD_FAIL(PD_EINPUT, "--set needs KEY.PATH=VALUE, got \"%s\"", value);
        if (cli->n_overrides == PD_MAX_OVERRIDES)
            return PD_FAIL(PD_EINPUT, "too many --set options (at most %d)", PD_MAX_OVERRIDES);
        cli->overrides[cli->n_overrides++] = value;
        break;
    }
    case OPT_OUT:
        if (!value[0])
            return PD_FAIL(PD_EINPUT, "--out needs a DIR, got an empty one");
        cli->out_dir = value;
        break;
    case OPT_INIT_FROM:
        if (!value[0])
            return PD_FAIL(PD_EINPUT, "--init-from needs a RUN_DIR, got an empty one");
        cli->init_from = value;
        break;
    case OPT_RESUME:
        if (value && !value[0])
            return PD_FAIL(PD_EINPUT, "--resume=DIR needs a DIR, got an empty one");
        cli->resume = true;
        cli->resume_dir = value;
        break;
    case OPT_CHECK:   cli->check = true; break;
    case OPT_JSON:    cli->json = true; break;
    case OPT_REPLAY:
        if (!value[0])
            return PD_FAIL(PD_EINPUT, "--replay needs a RUN_DIR, got an empty one");
        cli->replay_dir = value;
        break;
    case OPT_EVALUATE:
    case OPT_PREDICT:
        if (!value[0])
            return PD_FAIL(PD_EINPUT, "--%s needs a RUN_DIR, got an empty one", o->name);
        *(o - options == OPT_EVALUATE ? &cli->evaluate_dir : &cli->predict_dir) = value;
        break;
    case OPT_QUIET:   cli->quiet = true; break;
    case OPT_HELP:    cli->help = true; break;
    case OPT_VERSION: cli->version = true; break;
    case OPT_MAN:     cli->man = true; break;
    }
    return PD_OK;
}

static int positional(pd_cli *cli, const char *a)
{
    if (cli->config_path)
        return PD_FAIL(PD_EINPUT, "more than one CONFIG.yaml: %s and %s", cli->config_path, a);
    cli->config_path = a;
    return PD_OK;
}

int pd_cli_parse(int argc, char **argv, pd_cli *cli)
{
    memset(cli, 0, sizeof *cli);
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || is_name(a)) {
            PD_TRY(positional(cli, a));
            continue;
        }
        if (!strcmp(a, "--")) {
            options_done = true;
            continue;
        }
        const option *o;
        const char *value = NULL;
        char hint[64];
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            if (!(o = find_long(name, len))) {
                suggest(name, len, hint, sizeof hint);
                return PD_FAIL(PD_EINPUT, "unknown option --%.*s%s", (int)len, name, hint);
            }
            if (eq && o->arg == ARG_NONE)
                return PD_FAIL(PD_EINPUT, "--%s takes no argument, got \"%s\"", o->name, a);
            value = eq ? eq + 1 : NULL;
        } else if (!(o = find_short(a[1])) || a[2]) {
            /* "-set" is most likely --set with one dash short. */
            suggest(a + 1, strlen(a + 1), hint, sizeof hint);
            return PD_FAIL(PD_EINPUT, "unknown option %s%s", a, hint);
        }
        if (!value && o->arg == ARG_REQUIRED) {
            /* A following option means the argument was forgotten (a value
             * that starts with - can be given as --out=-x). */
            if (i + 1 >= argc || !is_name(argv[i + 1]))
                return PD_FAIL(PD_EINPUT, "--%s needs %s%s", o->name,
                               o - options == OPT_SET ? "" : "a ", o->metavar);
            value = argv[++i];
        }
        if (!value && o->arg == ARG_OPTIONAL && i + 1 < argc && is_name(argv[i + 1]) &&
            strcmp(argv[i + 1], "--") != 0 &&
            (cli->config_path || positional_after(argc, argv, i + 1)))
            value = argv[++i];
        PD_TRY(take(cli, o, value));
    }
    if (cli->json && !cli->check)
        return PD_FAIL(PD_EINPUT, "--json goes with --check (paramd --check --json "
                       "CONFIG.yaml)");
    if (cli->replay_dir && cli->config_path)
        return PD_FAIL(PD_EINPUT, "--replay takes the run's own config; drop %s",
                       cli->config_path);
    const char *use = cli->evaluate_dir ? "--evaluate" : cli->predict_dir ? "--predict" : NULL;
    if (cli->evaluate_dir && cli->predict_dir)
        return PD_FAIL(PD_EINPUT, "--evaluate and --predict: one at a time");
    if (use && cli->config_path)
        return PD_FAIL(PD_EINPUT, "%s takes the run's own config; drop %s", use,
                       cli->config_path);
    if (use && cli->replay_dir)
        return PD_FAIL(PD_EINPUT, "%s and --replay: one at a time", use);
    if (!cli->config_path && !cli->help && !cli->version && !cli->man && !cli->replay_dir &&
        !use)
        return PD_FAIL(PD_EINPUT, "missing CONFIG.yaml (usage: paramd [options] CONFIG.yaml; "
                       "see paramd --help)");
    return PD_OK;
}

/* "-h, --help", "--out DIR", "--resume [DIR]" */
static void option_label(const option *o, char *buf, size_t n)
{
    int k = o->short_name ? snprintf(buf, n, "-%c, ", o->short_name) : 0;
    if (o->arg == ARG_NONE)
        snprintf(buf + k, n - (size_t)k, "--%s", o->name);
    else
        snprintf(buf + k, n - (size_t)k, o->arg == ARG_REQUIRED ? "--%s %s" : "--%s [%s]",
                 o->name, o->metavar);
}

/* text wrapped to 79 columns, continuation lines indented by `indent`
 * spaces; `col` characters of the first line are already out. */
static void wrap(FILE *out, const char *text, int indent, int col)
{
    for (const char *s = text; *s;) {
        size_t w = strcspn(s, " ");
        if (col > indent && col + 1 + (int)w > 79) {
            fputc('\n', out);
            col = 0;
        }
        if (col <= indent)
            col += fprintf(out, "%*s", indent - col, "");
        else
            col += fprintf(out, " ");
        col += fprintf(out, "%.*s", (int)w, s);
        s += w;
        s += strspn(s, " ");
    }
    fputc('\n', out);
}

void pd_cli_print_help(FILE *out)
{
    fputs("Usage: paramd [options] CONFIG.yaml\n"
          "       mpirun -n N paramd [options] CONFIG.yaml\n"
          "       paramd --evaluate RUN_DIR [--set data.test=FILE]\n"
          "       paramd --predict RUN_DIR --set data.test=FILE [--out FILE.csv]\n\n", out);
    wrap(out, "Data-parallel training: ranks 0..S-1 are parameter servers "
              "(training.servers), the other ranks workers; training.mode says how "
              "they combine gradients. Every config key, with its default, is in "
              "conf/reference.yaml.", 0, 0);
    fputs("\nOptions:\n", out);
    for (int i = 0; i < OPT_COUNT; i++) {
        char label[64];
        option_label(&options[i], label, sizeof label);
        fprintf(out, "  %s\n", label);
        wrap(out, options[i].doc, 8, 0);
    }
    fputs("\nExit status:\n", out);
    for (size_t i = 0; i < sizeof exit_statuses / sizeof *exit_statuses; i++) {
        int col = fprintf(out, "  %-5s", exit_statuses[i][0]);
        wrap(out, exit_statuses[i][1], col, col);
    }
}

/* Text for troff: '-' as \- (a real minus, searchable), '\' as \e, and a
 * leading '.' or '\'' guarded so it is not read as a request. */
static void man_text(FILE *out, const char *s)
{
    if (*s == '.' || *s == '\'')
        fputs("\\&", out);
    for (; *s; s++) {
        if (*s == '-')
            fputs("\\-", out);
        else if (*s == '\\')
            fputs("\\e", out);
        else
            fputc(*s, out);
    }
}

void pd_cli_write_man(FILE *out)
{
    fprintf(out, ".TH PARAMD 1 \"\" \"paramd %s\" \"User Commands\"\n", PARAMD_VERSION);
    fputs(".SH NAME\nparamd \\- distributed data\\-parallel training daemon\n"
          ".SH SYNOPSIS\n.B paramd\n[\\fIoptions\\fR] \\fICONFIG.yaml\\fR\n.br\n"
          ".B mpirun \\-n\n\\fIN\\fR \\fBparamd\\fR [\\fIoptions\\fR] \\fICONFIG.yaml\\fR\n"
          ".SH DESCRIPTION\n", out);
    man_text(out, "paramd trains a model with data-parallel stochastic gradient methods in "
                  "one MPI job. Ranks 0..S-1 are parameter servers (training.servers); "
                  "the other ranks are workers, which compute minibatch gradients on "
                  "their shard of the data. training.mode chooses how updates are "
                  "applied: serial (one process, no mpirun), sync, async, hogwild, "
                  "local_sgd or easgd. The configuration is a YAML file; every key, its "
                  "default and its allowed values are listed in conf/reference.yaml, "
                  "and any key can be overridden with --set.");
    fputs("\n.SH OPTIONS\n", out);
    for (int i = 0; i < OPT_COUNT; i++) {
        const option *o = &options[i];
        fputs(".TP\n", out);
        if (o->short_name)
            fprintf(out, "\\fB\\-%c\\fR, ", o->short_name);
        fputs("\\fB\\-\\-", out);
        man_text(out, o->name);
        fputs("\\fR", out);
        if (o->arg != ARG_NONE)
            fprintf(out, o->arg == ARG_REQUIRED ? " \\fI%s\\fR" : " [\\fI%s\\fR]", o->metavar);
        fputc('\n', out);
        man_text(out, o->doc);
        fputc('\n', out);
    }
    fputs(".SH EXIT STATUS\n", out);
    for (size_t i = 0; i < sizeof exit_statuses / sizeof *exit_statuses; i++) {
        fprintf(out, ".TP\n.B %s\n", exit_statuses[i][0]);
        man_text(out, exit_statuses[i][1]);
        fputc('\n', out);
    }
    fputs(".SH FILES\nThe run directory (run.out_dir, or \\fB\\-\\-out\\fR) holds:\n", out);
    for (size_t i = 0; i < sizeof run_files / sizeof *run_files; i++) {
        fputs(".TP\n.I ", out);
        man_text(out, run_files[i][0]);
        fputc('\n', out);
        man_text(out, run_files[i][1]);
        fputc('\n', out);
    }
    fputs(".SH EXAMPLES\nCheck a config and its data without training:\n.PP\n.nf\n"
          ".RS\nparamd \\-\\-check conf/demo.yaml\n.RE\n.fi\n.PP\n"
          "One server and two workers in sync mode, overriding two keys:\n.PP\n.nf\n.RS\n"
          "mpirun \\-n 3 paramd \\-\\-set training.mode=sync \\-\\-set optimizer.lr=0.05 "
          "conf/demo.yaml\n.RE\n.fi\n.PP\n"
          "Trace an async run, then re-execute it exactly in one process:\n.PP\n.nf\n.RS\n"
          "mpirun \\-n 3 paramd \\-\\-set training.mode=async \\-\\-set training.trace=true "
          "\\-\\-out runs/a conf/demo.yaml\n"
          "paramd \\-\\-replay runs/a\n.RE\n.fi\n"
          ".PP\nEvaluate a finished run on another file, then write its predictions:\n"
          ".PP\n.nf\n.RS\nparamd \\-\\-evaluate runs/a \\-\\-set data.test=new.csv\n"
          "paramd \\-\\-predict runs/a \\-\\-set data.test=new.csv \\-\\-out pred.csv\n"
          ".RE\n.fi\n"
          ".SH SEE ALSO\n.BR mpirun (1)\n", out);
}

const char *pd_config_yaml_version(void) { return yaml_get_version_string(); }
