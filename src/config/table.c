/* The one table of config keys: path, type, field, bounds, default and doc.
 * The loader, --set, the validator, config.resolved.yaml and
 * conf/reference.yaml all walk it (Redis's createIntConfig habit).
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "keys.h"
#include "paramd/optim.h"

/* Enum fields are stored and read as int (value.c); gcc gives these enums
 * the size of int, and the names below are indexed by enum value. */
_Static_assert(sizeof(pd_mode) == sizeof(int), "enum fields are read as int");

static const char *const format_names[] = {"idx", "csv", "libsvm", NULL};
static const char *const normalize_names[] = {"none", "scale01", "standardize", NULL};
static const char *const shuffle_names[] = {"none", "once", "every_epoch", NULL};
static const char *const shard_names[] = {"strided", "contiguous", NULL};
static const char *const delimiter_names[] = {"comma", "semicolon", "tab", NULL};
static const char *const curriculum_names[] = {"none", "loss", "column", NULL};
static const char *const model_names[] = {"softmax", "mlp", "linreg", "logreg", "svm", NULL};
static const char *const activation_names[] = {"relu", "tanh", "sigmoid", NULL};
static const char *const init_names[] = {"auto", "he", "glorot", "zero", NULL};
static const char *const mode_names[] = {"serial", "sync", "async", "hogwild",
                                         "local_sgd", "easgd", NULL};
static const char *const policy_names[] = {"wait", "drop", NULL};
static const char *const schedule_names[] = {"constant", "step", "exponential",
                                             "inverse_time", "cosine", NULL};
static const char *const scomp_names[] = {"none", "inverse", "dc", NULL};
static const char *const cg_names[] = {"pr_plus", "fr", NULL};
static const char *const block_order_names[] = {"cyclic", "random", NULL};
static const char *const slow_basis_names[] = {"cycle", "compute", NULL};
static const char *const delay_names[] = {"none", "constant", "uniform", "exponential", NULL};

#define FASHION "/usr/share/datasets/fashion-mnist/"
#define F(field) offsetof(pd_config, field), sizeof(((pd_config *)0)->field)

/* Initializers by type; B is the bounds triple (flags, min, max). */
#define INT(p, f, B, d, doc)    {p, KT_INT, F(f), 0, NULL, B, d, doc, NULL, 0}
#define I64(p, f, B, d, doc)    {p, KT_INT64, F(f), 0, NULL, B, d, doc, NULL, 0}
#define U64(p, f, d, doc)       {p, KT_UINT64, F(f), 0, NULL, 0, 0, 0, d, doc, NULL, 0}
#define DBL(p, f, B, d, doc)    {p, KT_DOUBLE, F(f), 0, NULL, B, d, doc, NULL, 0}
#define BOOL(p, f, d, doc)      {p, KT_BOOL, F(f), 0, NULL, 0, 0, 0, d, doc, NULL, 0}
#define STR(p, f, fl, d, doc)   {p, KT_STRING, F(f), 0, NULL, fl, 0, 0, d, doc, NULL, 0}
#define ENUM(p, f, nm, d, doc)  {p, KT_ENUM, F(f), 0, nm, 0, 0, 0, d, doc, NULL, 0}
/* A field of a map-list entry (type struct T): required, so no default. */
#define FIELD(p, T, f, type, B, doc) \
    {p, type, offsetof(T, f), sizeof(((T *)0)->f), 0, NULL, B, NULL, doc, NULL, 0}

#define GE(lo)           K_MIN, lo, 0
#define IN(lo, hi)       K_MIN | K_MAX, lo, hi                  /* [lo, hi] */
#define IN_LO_OPEN(lo, hi) K_MIN | K_MIN_OPEN | K_MAX, lo, hi   /* (lo, hi] */
/* `default` allowed: the rule's value, filled in by pd_optim_defaults. */
#define RULE_GT(lo)      K_RULE_DEFAULT | K_MIN | K_MIN_OPEN, lo, 0
#define RULE_GE(lo)      K_RULE_DEFAULT | K_MIN, lo, 0
#define RULE_UNIT        K_RULE_DEFAULT | K_MIN | K_MAX | K_MAX_OPEN, 0, 1   /* [0, 1) */
#define UNIT             K_MIN | K_MAX | K_MAX_OPEN, 0, 1   /* [0, 1) */

/* faults.slow_workers entries; rank first: it identifies the entry. */
static const pd_key slow_worker_fields[] = {
    FIELD("rank", pd_slow_worker, rank, KT_INT, GE(1),
          "a worker's MPI rank, each listed once"),
    FIELD("factor", pd_slow_worker, factor, KT_DOUBLE, GE(1),
          "divides its rate of gradients"),
    {0},
};

const pd_key pd_keys[PD_KEY_COUNT] = {
    U64("run.seed", run.seed, "1",
        "Derives every random stream of every rank (init, shuffle, split, noise)."),
    STR("run.out_dir", run.out_dir, K_NONEMPTY, "runs/latest",
        "Run directory: config.resolved.yaml, metrics, checkpoints (--out wins)."),
    INT("run.blas_threads", run.blas_threads, IN(1, 1024), "1",
        "OpenBLAS threads per rank; keep ranks x threads <= cores."),

    ENUM("data.format", data.format, format_names, "idx",
         "File format of data.train and data.test."),
    STR("data.train", data.train, K_NONEMPTY, FASHION "train-images-idx3-ubyte.gz",
        "Training file (IDX images, CSV or LIBSVM); required for csv and libsvm."),
    STR("data.train_labels", data.train_labels, 0, FASHION "train-labels-idx1-ubyte.gz",
        "IDX labels of data.train (idx only; empty unless set for csv/libsvm)."),
    STR("data.test", data.test, 0, FASHION "t10k-images-idx3-ubyte.gz",
        "Test file, \"\" for none (empty unless set for csv/libsvm)."),
    STR("data.test_labels", data.test_labels, 0, FASHION "t10k-labels-idx1-ubyte.gz",
        "IDX labels of data.test (idx only; empty unless set for csv/libsvm)."),
    STR("data.label_column", data.label_column, K_NONEMPTY, "0",
        "CSV: the label column, by header name or 0-based index."),
    BOOL("data.header", data.header, "false", "CSV: the first line is a header."),
    ENUM("data.delimiter", data.delimiter, delimiter_names, "comma",
         "CSV: the character between fields (comma, semicolon or tab)."),
    STR("data.classes", data.classes, 0, "",
        "CSV: class names in class order, e.g. cat,dog; empty = from the labels."),
    DBL("data.validation_fraction", data.validation_fraction, IN(0, 0.9), "0",
        "Share of the training file held out for validation (seeded split)."),
    ENUM("data.normalize", data.normalize, normalize_names, "scale01",
         "Feature scaling: none, divide by 255 (scale01), or zero mean unit variance."),
    ENUM("data.shuffle", data.shuffle, shuffle_names, "every_epoch",
         "Example order: file order, one permutation, or a new one every epoch."),
    ENUM("data.shard", data.shard, shard_names, "strided",
         "How training examples are split over workers."),
    ENUM("data.curriculum.type", data.curriculum.type, curriculum_names, "none",
         "Scores: none, loss of a warmed-up model, or a CSV column."),
    STR("data.curriculum.column", data.curriculum.column, 0, "",
        "column: the CSV score column (lower = easier), name or index."),
    I64("data.curriculum.warmup_updates", data.curriculum.warmup_updates, GE(0), "200",
        "loss: plain SGD updates (optimizer.lr) of the scoring model."),
    DBL("data.curriculum.start", data.curriculum.start, IN_LO_OPEN(0, 1), "0.25",
        "Fraction of the easiest examples admitted in epoch 0."),
    INT("data.curriculum.epochs", data.curriculum.epochs, GE(1), "3",
        "Epochs over which the admitted fraction grows linearly to 1."),
    BOOL("data.curriculum.stochastic", data.curriculum.stochastic, "false",
         "Replace a growing share of the admitted examples by random harder ones."),

    ENUM("model.type", model.type, model_names, "softmax",
         "Model: softmax regression, MLP, or a linear model (linreg, logreg, svm)."),
    INT("model.features", model.features, GE(0), "0", "Input features; 0 = from the data."),
    INT("model.classes", model.classes, GE(0), "0",
        "Classes (softmax, mlp); 0 = from the data."),
    {"model.hidden", KT_INTLIST, offsetof(pd_config, model.hidden), PD_MAX_HIDDEN,
     offsetof(pd_config, model.n_hidden), NULL, K_MIN | K_MAX, 1, 1000000, "[]",
     "MLP hidden layer widths, input side first, e.g. [256, 128] (mlp only).", NULL, 0},
    ENUM("model.activation", model.activation, activation_names, "relu",
         "MLP hidden activation."),
    ENUM("model.init", model.init, init_names, "auto",
         "Weight init: auto = He for relu, Glorot otherwise; zero for linear models."),
    DBL("model.l2", model.l2, GE(0), "0", "L2 penalty on the weights, part of the loss."),
    STR("model.init_from", model.init_from, 0, "",
        "A run directory to start from (its params.bin); empty = model.init."),

    ENUM("training.mode", training.mode, mode_names, "serial",
         "How workers and servers combine gradients (see docs/design.md, Modes)."),
    INT("training.servers", training.servers, GE(0), "1",
        "Server ranks (0..S-1), the rest workers; 0 (sync): workers serve."),
    INT("training.epochs", training.epochs, GE(0), "1",
        "Passes over each worker's shard; 0 = no limit."),
    I64("training.max_updates", training.max_updates, GE(0), "0",
        "Stop after this many parameter updates; 0 = no limit."),
    INT("training.batch_size", training.batch_size, GE(1), "64", "Minibatch size per worker."),
    BOOL("training.drop_last", training.drop_last, "false",
         "Drop each epoch's final partial batch."),
    INT("training.backup_workers", training.backup_workers, GE(0), "0",
        "sync: step with the first W - b gradients; late ones are dropped."),
    INT("training.max_staleness", training.max_staleness, GE(-1), "-1",
        "async: bound on gradient staleness; -1 = unbounded."),
    ENUM("training.staleness_policy", training.staleness_policy, policy_names, "wait",
         "async, max_staleness >= 0: fast workers wait, or stale gradients drop."),
    INT("training.server_threads", training.server_threads, IN(1, 256), "2",
        "hogwild: lock-free update threads per server."),
    INT("training.local_steps", training.local_steps, GE(1), "4",
        "local_sgd, easgd: local steps (tau) between exchanges."),
    DBL("training.elastic_alpha", training.elastic_alpha, IN_LO_OPEN(0, 1), "0.1",
        "easgd: elastic pull strength alpha."),
    I64("training.eval_every", training.eval_every, GE(0), "0",
        "Evaluate every this many updates; 0 = once per epoch."),
    DBL("training.eval_every_seconds", training.eval_every_seconds, GE(0), "0",
        "Also evaluate this many seconds after the last evaluation; 0 = off."),
    BOOL("training.eval_wait", training.eval_wait, "false",
         "An evaluation due while one runs waits for it; false = skip it."),
    DBL("training.worker_timeout", training.worker_timeout, GE(0), "0",
        "--enable-recovery runs: seconds before a silent worker is lost; 0 = off."),
    BOOL("training.trace", training.trace, "false",
         "async: record the order updates were applied, for exact replay."),
    INT("training.early_stopping.patience", training.early_stopping_patience, GE(0), "0",
        "Stop after this many evaluations without improvement; 0 = off."),
    I64("training.max_bad_updates", training.max_bad_updates, GE(0), "0",
        "NaN/Inf gradients (models) skipped before the run fails, every mode."),
    I64("training.max_iterations", training.max_iterations, GE(1), "100",
        "cg, bfgs, lbfgs, cd: stop after this many iterations (cd: cycles)."),
    {"training.phases", KT_PHASES, offsetof(pd_config, training.phases), PD_MAX_PHASES,
     offsetof(pd_config, training.n_phases), NULL, 0, 0, 0, "[]",
     "Modes run in turn on the same parameters; [] = one run of training.mode.",
     NULL, sizeof(pd_phase)},

    ENUM("optimizer.name", optimizer.name, pd_optimizer_names, "sgd", "The update rule."),
    DBL("optimizer.lr", optimizer.lr, RULE_GT(0), "default",
        "Learning rate (before the schedule)."),
    DBL("optimizer.momentum", optimizer.momentum, RULE_UNIT, "default",
        "Momentum alpha (momentum, nesterov, rmsprop_nesterov)."),
    DBL("optimizer.rho", optimizer.rho, RULE_UNIT, "default",
        "Decay of squared-gradient averages (rmsprop*, adadelta)."),
    DBL("optimizer.eps", optimizer.eps, RULE_GE(0), "default",
        "Denominator guard delta (adagrad, rmsprop*, adadelta, adam*)."),
    DBL("optimizer.beta1", optimizer.beta1, RULE_UNIT, "default",
        "Adam first-moment decay."),
    DBL("optimizer.beta2", optimizer.beta2, RULE_UNIT, "default",
        "Adam second-moment decay."),
    DBL("optimizer.weight_decay", optimizer.weight_decay, GE(0), "0",
        "Weight decay: added to the gradient (coupled), decoupled for adamw."),
    DBL("optimizer.clip_norm", optimizer.clip_norm, GE(0), "0",
        "Clip the gradient to this global L2 norm; 0 = off."),
    DBL("optimizer.clip_value", optimizer.clip_value, GE(0), "0",
        "Clip each gradient entry to [-v, v]; 0 = off."),
    ENUM("optimizer.schedule.type", optimizer.schedule.type, schedule_names, "constant",
         "Learning-rate schedule over updates."),
    I64("optimizer.schedule.step_size", optimizer.schedule.step_size, GE(1), "1000",
        "step, exponential: updates per decay; cosine: the period."),
    DBL("optimizer.schedule.gamma", optimizer.schedule.gamma, IN_LO_OPEN(0, 1), "0.5",
        "step, exponential: decay factor per step_size updates."),
    DBL("optimizer.schedule.decay", optimizer.schedule.decay, GE(0), "0.001",
        "inverse_time: lr / (1 + decay t)."),
    DBL("optimizer.schedule.min_lr", optimizer.schedule.min_lr, GE(0), "0",
        "cosine: the floor, reached after step_size updates."),
    I64("optimizer.schedule.warmup", optimizer.schedule.warmup, GE(0), "0",
        "Linear warmup over this many updates, on top of the schedule; 0 = none."),
    DBL("optimizer.noise", optimizer.noise, GE(0), "0",
        "Annealed gradient noise eta: variance eta / (1 + t)^noise_gamma; 0 = off."),
    DBL("optimizer.noise_gamma", optimizer.noise_gamma, GE(0), "0.55",
        "Annealing exponent of the gradient noise."),
    ENUM("optimizer.staleness_compensation", optimizer.staleness_compensation, scomp_names,
         "none", "async: lr / staleness (inverse), delay compensation (dc) or none."),
    DBL("optimizer.dc_lambda", optimizer.dc_lambda, GE(0), "0.04",
        "dc: g + dc_lambda g*g (theta_now - theta_read), per coordinate."),
    BOOL("optimizer.dc_lambda_adaptive", optimizer.dc_lambda_adaptive, "false",
         "dc: lambda / sqrt(q + 1e-7), q a moving mean of g*g (DC-ASGD-a)."),
    DBL("optimizer.dc_decay", optimizer.dc_decay, UNIT, "0.95",
        "dc_lambda_adaptive: q = dc_decay q + (1 - dc_decay) g*g."),
    I64("optimizer.batch_examples", optimizer.batch_examples, GE(0), "0",
        "cg, bfgs, lbfgs: the first N training examples make the objective; 0 = all."),
    INT("optimizer.bfgs_max_params", optimizer.bfgs_max_params, GE(1), "20000",
        "bfgs keeps an n x n matrix: larger models are refused (use lbfgs)."),
    INT("optimizer.history", optimizer.history, IN(1, 1000), "10",
        "lbfgs: correction pairs kept (memory m)."),
    ENUM("optimizer.cg_variant", optimizer.cg_variant, cg_names, "pr_plus",
         "cg: Polak-Ribiere with the PR+ restart, or Fletcher-Reeves (fr)."),
    DBL("optimizer.grad_tol", optimizer.grad_tol, GE(0), "1e-6",
        "cg, bfgs, lbfgs, cd: stop when the gradient's L2 norm is at most this."),
    DBL("optimizer.loss_tol", optimizer.loss_tol, GE(0), "1e-9",
        "cg, bfgs, lbfgs, cd: stop when the loss falls by at most this fraction."),
    INT("optimizer.block_size", optimizer.block_size, GE(1), "1",
        "cd: coordinates minimized together (exactly, one block at a time)."),
    ENUM("optimizer.block_order", optimizer.block_order, block_order_names, "cyclic",
         "cd: blocks in order, or in a fresh random order (seeded) each cycle."),
    INT("optimizer.vsgd_bound_layers", optimizer.vsgd_bound_layers, IN(0, PD_MAX_HIDDEN + 1), "0",
        "vsgd: the first N layers' curvature is each weight row's Gershgorin bound."),
    INT("optimizer.vsgd_row_layers", optimizer.vsgd_row_layers, IN(0, PD_MAX_HIDDEN + 1), "0",
        "vsgd: the first N layers' curvature is each row's along its gradient."),
    DBL("optimizer.vsgd_slow", optimizer.vsgd_slow, GE(0), "0",
        "vsgd: the slow start's overestimate C of vb; 0 = the paper's max(2, D/10)."),
    DBL("optimizer.vsgd_memory", optimizer.vsgd_memory, GE(0), "0",
        "vsgd: the longest memory tau, in minibatches (0 or >= 20); 0 = unbounded."),

    I64("checkpoint.every_updates", checkpoint.every_updates, GE(0), "0",
        "Checkpoint every this many updates; 0 = off."),
    DBL("checkpoint.every_seconds", checkpoint.every_seconds, GE(0), "0",
        "Checkpoint every this many seconds of wall time; 0 = off."),
    INT("checkpoint.keep", checkpoint.keep, GE(1), "2", "Checkpoints kept on disk."),

    {"faults.slow_workers", KT_MAPLIST, offsetof(pd_config, faults.slow_workers), PD_MAX_SLOW,
     offsetof(pd_config, faults.n_slow_workers), NULL, K_UNIQUE, 0, 0, "[]",
     "Stragglers: [{rank: 2, factor: 4}]: rank 2 sends gradients 4x slower.",
     slow_worker_fields, sizeof(pd_slow_worker)},
    ENUM("faults.slow_basis", faults.slow_basis, slow_basis_names, "cycle",
         "cycle: pad each cycle to factor x an unslowed one; compute: x compute time."),
    ENUM("faults.delay.distribution", faults.delay_distribution, delay_names, "none",
         "Its distribution: constant, uniform on [0, 2 mean], exponential, or none."),
    DBL("faults.delay.mean_ms", faults.delay_mean_ms, GE(0), "0",
        "Mean of that delay in milliseconds; > 0 unless the distribution is none."),
};
_Static_assert(sizeof(((pd_config *)0)->faults.slow_workers) ==
               PD_MAX_SLOW * sizeof(pd_slow_worker), "slow_workers holds PD_MAX_SLOW entries");

const pd_section pd_sections[] = {
    {"run", "Identity of the run: seed and where it writes."},
    {"data", "Where examples come from and how they are fed."},
    {"data.curriculum", "Easy examples first (curriculum learning). Each worker scores "
     "its shard (type loss), or reads the scores from data.curriculum.column of the "
     "CSV file (type column, not a feature; data.format csv only); epoch e admits m = ceil(f(e) n) of its n examples, "
     "f(e) = min(1, start + (1 - start) e / epochs), ordered by data.shuffle, so "
     "batches per epoch grow. Deterministic: the m easiest. Stochastic: the m - r "
     "easiest plus r drawn at random (seeded, anew each epoch) from the rest, "
     "r = floor(h(e) m), h(e) = (f(e) - start) / (1 - start), 1 when start = 1."},
    {"model", "What is trained."},
    {"training", "How ranks train together and when to stop."},
    {"training.early_stopping", "Stop when the held-out loss stops improving."},
    {"optimizer", "The update rule; `default` = that rule's value (listed per rule)."},
    {"optimizer.schedule", "Learning rate as a function of the update number."},
    {"checkpoint", "When to write checkpoints (to run.out_dir/checkpoints, and one at the "
     "end): every mode, with any number of servers; the batch methods' "
     "every_updates counts their iterations (and one where they stop). With "
     "training.worker_timeout they go on without a lost worker and record it; --resume "
     "brings it back where it was lost."},
    {"faults", "Injected stragglers and message delays (distributed modes only)."},
    {"faults.delay", "A random delay before each gradient message a worker sends."},
    {NULL, NULL},
};

static const char *enum_name(const char *const *names, int count, int v)
{
    return v >= 0 && v < count ? names[v] : "?";
}

const char *pd_mode_name(pd_mode m) { return enum_name(mode_names, 6, (int)m); }

const char *pd_optimizer_name_str(pd_optimizer_name n)
{
    return enum_name(pd_optimizer_names, PD_OPT_COUNT, (int)n);
}

const char *pd_model_type_name(pd_model_type t) { return enum_name(model_names, 5, (int)t); }

int pd_key_find(const char *path, size_t len)
{
    for (int i = 0; i < PD_KEY_COUNT; i++)
        if (strlen(pd_keys[i].path) == len && memcmp(pd_keys[i].path, path, len) == 0)
            return i;
    return -1;
}

bool pd_key_is_section(const char *path, size_t len)
{
    for (int i = 0; i < PD_KEY_COUNT; i++)
        if (strlen(pd_keys[i].path) > len && memcmp(pd_keys[i].path, path, len) == 0 &&
            pd_keys[i].path[len] == '.')
            return true;
    return false;
}

int pd_key_field_find(const pd_key *k, const char *name, size_t len)
{
    for (int i = 0; k->fields[i].path; i++)
        if (strlen(k->fields[i].path) == len && memcmp(k->fields[i].path, name, len) == 0)
            return i;
    return -1;
}

void pd_key_field_suggest(const pd_key *k, const char *name, char *buf, size_t n)
{
    const char *best = NULL;
    int best_score = PD_NOT_CLOSE;
    for (const pd_key *f = k->fields; f->path; f++) {
        int score = pd_closeness(name, f->path);
        if (score < best_score) {
            best_score = score;
            best = f->path;
        }
    }
    if (best && strcmp(best, name) != 0)
        snprintf(buf, n, " (did you mean %s?)", best);
    else if (n)
        buf[0] = '\0';
}

int pd_edit_distance(const char *a, const char *b, int cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return cap + 1;
    int row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0], best = row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int sub = diag + (a[i - 1] != b[j - 1]);
            int v = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
            row[j] = sub < v ? sub : v;
            diag = up;
            if (row[j] < best)
                best = row[j];
        }
        if (best > cap)   /* every path through this row is already too long */
            return cap + 1;
    }
    return row[lb] <= cap ? row[lb] : cap + 1;
}

int pd_closeness(const char *typed, const char *name)
{
    int d = pd_edit_distance(typed, name, 2);
    if (d <= 1)
        return 2 * d;
    size_t lt = strlen(typed), ln = strlen(name);
    /* A prefix either way ("batch" for batch_size, "ver" for version) beats
     * two slips of spelling. */
    if (lt >= 3 && ln >= 3 && strncmp(typed, name, lt < ln ? lt : ln) == 0)
        return 3;
    return d == 2 ? 4 : PD_NOT_CLOSE;
}

/* The next path component of key i below `prefix` (len bytes, "" or ending
 * in '.'), copied into buf. */
static void child_name(int i, size_t len, char *buf, size_t n)
{
    const char *s = pd_keys[i].path + len;
    size_t c = strcspn(s, ".");
    snprintf(buf, n, "%.*s", (int)c, s);
}

/* Keys of earlier versions: what to write instead. */
static const char *const renamed[][2] = {
    {"optimizer.staleness_scaling", "renamed optimizer.staleness_compensation: none, inverse "
                                    "or dc"},
};

void pd_key_suggest(const char *path, char *buf, size_t n)
{
    buf[0] = '\0';
    /* Walk down the known sections; the first component that is not one
     * of them is the misspelt one. */
    size_t level = 0;
    for (;;) {
        size_t c = strcspn(path + level, ".");
        if (path[level + c] != '.' || !pd_key_is_section(path, level + c))
            break;
        level += c + 1;
    }
    for (size_t i = 0; i < sizeof renamed / sizeof *renamed; i++) {
        if (!strcmp(path, renamed[i][0])) {
            snprintf(buf, n, " (%s)", renamed[i][1]);
            return;
        }
    }
    char typed[64];
    snprintf(typed, sizeof typed, "%.*s", (int)strcspn(path + level, "."), path + level);
    char best[64] = "", name[64];
    int best_score = PD_NOT_CLOSE;
    for (int i = 0; i < PD_KEY_COUNT; i++) {
        if (strncmp(pd_keys[i].path, path, level) != 0)
            continue;
        child_name(i, level, name, sizeof name);
        int score = pd_closeness(typed, name);
        if (score < best_score) {
            best_score = score;
            snprintf(best, sizeof best, "%s", name);
        }
    }
    if (best[0] && strcmp(best, typed) != 0)
        snprintf(buf, n, " (did you mean %s?)", best);
}

void pd_config_table_defaults(pd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < PD_KEY_COUNT; i++) {
        const pd_key *k = &pd_keys[i];
        char why[256];
        bool ok;
        if (k->type == KT_INTLIST || k->type == KT_MAPLIST || k->type == KT_PHASES) {
            /* The only list default is the empty list. */
            ok = strcmp(k->def, "[]") == 0;
            pd_key_set_count(k, cfg, 0);
        } else {
            pd_scalar s = {k->def, strlen(k->def), false};
            ok = pd_key_set(k, cfg, &s, why, sizeof why);
        }
        assert(ok && "every table default is valid");
        (void)ok;
    }
}
