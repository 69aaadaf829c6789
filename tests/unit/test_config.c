/* The config module: every key's default and type, each error kind with its
 * exact one-line message and 1-based position, --set overrides, cross-key
 * and world rules, the resolved writer's round trip and the reference.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/config/keys.h"
#include "paramd/config.h"
#include "check.h"
#include "paramd/error.h"
#include "paramd/optim.h"

#define NAME "conf/x.yaml"


/* Exact double equality that prints both values. */
static void check_dbl(double got, double want, const char *file, int line)
{
    if (got == want)
        return;
    print_error("double mismatch\n  got:  %.17g\n  want: %.17g\n", got, want);
    _fail(file, line);
}
#define assert_dbl(got, want) check_dbl((got), (want), __FILE__, __LINE__)

/* The message of a load that must fail with PD_EINPUT (or a marker). */
static const char *err_of(const char *yaml, const char *const *sets, int n)
{
    static char buf[1200];
    pd_config c;
    pd_err_clear();
    int e = pd_config_load_string(NAME, yaml, sets, n, &c);
    if (e == PD_OK)
        return "<loaded without error>";
    if (e != PD_EINPUT)
        snprintf(buf, sizeof buf, "<code %d> %s", e, pd_err_msg());
    else
        snprintf(buf, sizeof buf, "%s", pd_err_msg());
    return buf;
}
#define ERR(yaml, want) assert_str(err_of((yaml), NULL, 0), (want))
#define ERR_SET(yaml, want, ...)                                              \
    do {                                                                      \
        const char *sets_[] = {__VA_ARGS__};                                  \
        assert_str(err_of((yaml), sets_, (int)(sizeof sets_ / sizeof *sets_)), (want)); \
    } while (0)

/* The message of a pd_config_check_world that must fail with PD_EINPUT. */
static const char *world_err(const pd_config *c, int ranks)
{
    static char buf[1200];
    pd_err_clear();
    int e = pd_config_check_world(c, ranks);
    if (e == PD_OK)
        return "<passed without error>";
    snprintf(buf, sizeof buf, e == PD_EINPUT ? "%s" : "<other code> %s", pd_err_msg());
    return buf;
}
#define WORLD_ERR(c, ranks, want) assert_str(world_err(&(c), (ranks)), (want))

static void load_ok(const char *yaml, const char *const *sets, int n, pd_config *c)
{
    int e = pd_config_load_string(NAME, yaml, sets, n, c);
    if (e != PD_OK)
        print_error("unexpected error: %s\n", pd_err_msg());
    assert_int_equal(e, PD_OK);
}

/* Text pd_config_write / write_reference produce, malloc'd. (A tmpfile
 * rather than open_memstream, which gcc 12 -O3 flags as dangling.) */
static char *written(const pd_config *cfg)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(cfg ? pd_config_write(cfg, f) : pd_config_write_reference(f), PD_OK);
    return read_back(f);
}

/* Bytes of a key's field in pd_config. */
static size_t field_size(const pd_key *k)
{
    switch (k->type) {
    case KT_STRING:  return k->size;
    case KT_INTLIST: return k->size * sizeof(int);
    case KT_MAPLIST: case KT_PHASES: return k->size * k->stride;
    case KT_DOUBLE:  return sizeof(double);
    case KT_INT64:   return sizeof(int64_t);
    case KT_UINT64:  return sizeof(uint64_t);
    case KT_BOOL:    return sizeof(bool);
    default:         return sizeof(int);
    }
}

/* Equal but for `source`; names the first key that differs. */
static void assert_same_config(pd_config a, pd_config b)
{
    memset(a.source, 0, sizeof a.source);
    memset(b.source, 0, sizeof b.source);
    for (int i = 0; i < PD_KEY_COUNT; i++) {
        const pd_key *k = &pd_keys[i];
        if (memcmp((char *)&a + k->offset, (char *)&b + k->offset, field_size(k)) != 0)
            fail_msg("%s differs", k->path);
    }
    assert_memory_equal(&a, &b, sizeof a);
}

#define FASHION "/usr/share/datasets/fashion-mnist/"

static void test_defaults_documented(void **state)
{
    (void)state;
    pd_config c;
    pd_config_defaults(&c);
    assert_int_equal(c.run.seed, 1);
    assert_str(c.run.out_dir, "runs/latest");
    assert_int_equal(c.run.blas_threads, 1);
    assert_int_equal(c.data.format, PD_FMT_IDX);
    assert_str(c.data.train, FASHION "train-images-idx3-ubyte.gz");
    assert_str(c.data.train_labels, FASHION "train-labels-idx1-ubyte.gz");
    assert_str(c.data.test, FASHION "t10k-images-idx3-ubyte.gz");
    assert_str(c.data.test_labels, FASHION "t10k-labels-idx1-ubyte.gz");
    assert_str(c.data.label_column, "0");
    assert_false(c.data.header);
    assert_dbl(c.data.validation_fraction, 0);
    assert_int_equal(c.data.normalize, PD_NORM_SCALE01);
    assert_int_equal(c.data.shuffle, PD_SHUFFLE_EVERY_EPOCH);
    assert_int_equal(c.data.shard, PD_SHARD_STRIDED);
    assert_int_equal(c.model.type, PD_MODEL_SOFTMAX);
    assert_int_equal(c.model.features, 0);
    assert_int_equal(c.model.classes, 0);
    assert_int_equal(c.model.n_hidden, 0);
    assert_int_equal(c.model.activation, PD_ACT_RELU);
    assert_int_equal(c.model.init, PD_INIT_AUTO);
    assert_dbl(c.model.l2, 0);
    const pd_training_config *t = &c.training;
    assert_int_equal(t->mode, PD_MODE_SERIAL);
    assert_int_equal(t->servers, 1);
    assert_int_equal(t->epochs, 1);
    assert_int_equal(t->max_updates, 0);
    assert_int_equal(t->batch_size, 64);
    assert_false(t->drop_last);
    assert_int_equal(t->backup_workers, 0);
    assert_int_equal(t->max_staleness, -1);
    assert_int_equal(t->staleness_policy, PD_STALE_WAIT);
    assert_int_equal(t->server_threads, 2);
    assert_int_equal(t->local_steps, 4);
    assert_dbl(t->elastic_alpha, 0.1);
    assert_int_equal(t->eval_every, 0);
    assert_dbl(t->eval_every_seconds, 0);
    assert_false(t->eval_wait);
    assert_dbl(t->worker_timeout, 0);
    assert_false(t->trace);
    assert_int_equal(t->early_stopping_patience, 0);
    assert_int_equal(t->max_bad_updates, 0);
    const pd_optim_config *o = &c.optimizer;
    assert_int_equal(o->name, PD_OPT_SGD);
    /* lr ... beta2 are the sgd rule's defaults (conf/reference.yaml), written
     * out here rather than asked of pd_optim_defaults(), the code under test:
     * plain SGD has a step size and nothing else. */
    assert_dbl(o->lr, 0.1);
    assert_dbl(o->momentum, 0);
    assert_dbl(o->rho, 0);
    assert_dbl(o->eps, 0);
    assert_dbl(o->beta1, 0);
    assert_dbl(o->beta2, 0);
    assert_dbl(o->weight_decay, 0);
    assert_dbl(o->clip_norm, 0);
    assert_dbl(o->clip_value, 0);
    assert_int_equal(o->schedule.type, PD_SCHED_CONSTANT);
    assert_int_equal(o->schedule.step_size, 1000);
    assert_dbl(o->schedule.gamma, 0.5);
    assert_dbl(o->schedule.decay, 0.001);
    assert_dbl(o->schedule.min_lr, 0);
    assert_int_equal(o->schedule.warmup, 0);
    assert_dbl(o->noise, 0);
    assert_dbl(o->noise_gamma, 0.55);
    assert_int_equal(o->staleness_compensation, PD_SCOMP_NONE);
    assert_dbl(o->dc_lambda, 0.04);
    assert_int_equal(c.checkpoint.every_updates, 0);
    assert_dbl(c.checkpoint.every_seconds, 0);
    assert_int_equal(c.checkpoint.keep, 2);
    assert_int_equal(c.faults.n_slow_workers, 0);
    for (int i = 0; i < PD_MAX_SLOW; i++)
        assert_true(c.faults.slow_workers[i].rank == 0 && c.faults.slow_workers[i].factor == 0);
    assert_int_equal(c.faults.delay_distribution, PD_DELAY_NONE);
    assert_dbl(c.faults.delay_mean_ms, 0);

    /* The rule-default keys are "default" (NAN) in the table itself. */
    pd_config raw;
    pd_config_table_defaults(&raw);
    assert_true(isnan(raw.optimizer.lr) && isnan(raw.optimizer.beta2));

    /* An empty file, a null document and a file of comments are the defaults. */
    const char *empties[] = {"", "~\n", "# nothing\n", "---\n"};
    for (int i = 0; i < 4; i++) {
        pd_config e;
        load_ok(empties[i], NULL, 0, &e);
        assert_str(e.source, NAME);
        assert_same_config(e, c);
    }
}

/* Every key set to a value other than its default. */
static const char every_key[] =
    "run:\n"
    "  seed: 18446744073709551615\n"
    "  out_dir: \"runs/a \\\"quoted\\\" dir: #1 \\\\ \\u00e9\\ttab\"\n"
    "  blas_threads: 4\n"
    "data:\n"
    "  format: csv\n"
    "  train: data/train.csv\n"
    "  train_labels: data/train-labels\n"
    "  test: 'data/test.csv'\n"
    "  test_labels: data/test-labels\n"
    "  label_column: label\n"
    "  header: yes\n"
    "  delimiter: semicolon\n"
    "  classes: \"cat, dog,bird\"\n"
    "  validation_fraction: 0.30000000000000004\n"
    "  normalize: standardize\n"
    "  shuffle: once\n"
    "  shard: contiguous\n"
    "  curriculum:\n"
    "    type: loss\n"
    "    column: score\n"
    "    warmup_updates: 0\n"
    "    start: 0.1\n"
    "    epochs: 5\n"
    "    stochastic: true\n"
    "model:\n"
    "  type: mlp\n"
    "  features: 784\n"
    "  classes: 10\n"
    "  hidden: [300, 200, 100]\n"
    "  activation: tanh\n"
    "  init: glorot\n"
    "  l2: 1e-4\n"
    "  init_from: runs/before\n"
    "training:\n"
    "  mode: async\n"
    "  servers: 1\n"
    "  epochs: 7\n"
    "  max_updates: 9000000000\n"
    "  batch_size: 17\n"
    "  drop_last: true\n"
    "  backup_workers: 1\n"
    "  max_staleness: 5\n"
    "  staleness_policy: drop\n"
    "  server_threads: 3\n"
    "  local_steps: 8\n"
    "  elastic_alpha: 0.3333333333333333\n"
    "  eval_every: 250\n"
    "  eval_every_seconds: 2.5\n"
    "  eval_wait: yes\n"
    "  worker_timeout: 7.5\n"
    "  trace: on\n"
    "  early_stopping:\n"
    "    patience: 4\n"
    "  max_bad_updates: 12\n"
    "  max_iterations: 250\n"
    "optimizer:\n"
    "  name: adam\n"
    "  lr: 0.0025\n"
    "  momentum: 0.5\n"
    "  rho: 0.8\n"
    "  eps: 1e-10\n"
    "  beta1: 0.85\n"
    "  beta2: 0.995\n"
    "  weight_decay: 0.01\n"
    "  clip_norm: 5\n"
    "  clip_value: 0.25\n"
    "  schedule:\n"
    "    type: cosine\n"
    "    step_size: 500\n"
    "    gamma: 0.75\n"
    "    decay: 0.01\n"
    "    min_lr: 0.0001\n"
    "    warmup: 100\n"
    "  noise: 0.3\n"
    "  noise_gamma: 0.6\n"
    "  staleness_compensation: dc\n"
    "  dc_lambda: 0.5\n"
    "  dc_lambda_adaptive: true\n"
    "  dc_decay: 0.9\n"
    "  batch_examples: 5000\n"
    "  bfgs_max_params: 3000\n"
    "  history: 7\n"
    "  cg_variant: fr\n"
    "  grad_tol: 1e-8\n"
    "  loss_tol: 1e-12\n"
    "  block_size: 8\n"
    "  block_order: random\n"
    "  vsgd_bound_layers: 2\n"
    "  vsgd_row_layers: 1\n"
    "  vsgd_slow: 10\n"
    "  vsgd_memory: 100\n"
    "checkpoint:\n"
    "  every_updates: 0\n"
    "  every_seconds: 0\n"
    "  keep: 5\n"
    "faults:\n"
    "  slow_workers: [{rank: 2, factor: 4}, {factor: 1.0000000000000002, rank: 5}]\n"
    "  slow_basis: compute\n"
    "  delay:\n"
    "    distribution: exponential\n"
    "    mean_ms: 2.5\n";

static void test_every_type_parses(void **state)
{
    (void)state;
    pd_config c, d;
    load_ok(every_key, NULL, 0, &c);
    assert_true(c.run.seed == UINT64_MAX);
    assert_str(c.run.out_dir, "runs/a \"quoted\" dir: #1 \\ \xc3\xa9\ttab");
    assert_int_equal(c.run.blas_threads, 4);
    assert_int_equal(c.data.format, PD_FMT_CSV);
    assert_str(c.data.train, "data/train.csv");
    assert_str(c.data.train_labels, "data/train-labels");
    assert_str(c.data.test, "data/test.csv");
    assert_str(c.data.test_labels, "data/test-labels");
    assert_str(c.data.label_column, "label");
    assert_true(c.data.header);
    assert_int_equal(c.data.delimiter, PD_DELIM_SEMICOLON);
    assert_str(c.data.classes, "cat, dog,bird");
    assert_dbl(c.data.validation_fraction, 0.1 + 0.2);
    assert_int_equal(c.data.normalize, PD_NORM_STANDARDIZE);
    assert_int_equal(c.data.shuffle, PD_SHUFFLE_ONCE);
    assert_int_equal(c.data.shard, PD_SHARD_CONTIGUOUS);
    assert_int_equal(c.model.type, PD_MODEL_MLP);
    assert_int_equal(c.model.features, 784);
    assert_int_equal(c.model.classes, 10);
    assert_int_equal(c.model.n_hidden, 3);
    assert_int_equal(c.model.hidden[0], 300);
    assert_int_equal(c.model.hidden[1], 200);
    assert_int_equal(c.model.hidden[2], 100);
    assert_int_equal(c.model.activation, PD_ACT_TANH);
    assert_int_equal(c.model.init, PD_INIT_GLOROT);
    assert_dbl(c.model.l2, 1e-4);
    assert_str(c.model.init_from, "runs/before");
    assert_int_equal(c.training.mode, PD_MODE_ASYNC);   /* trace needs async, one server */
    assert_int_equal(c.training.epochs, 7);
    assert_true(c.training.max_updates == INT64_C(9000000000));
    assert_int_equal(c.training.batch_size, 17);
    assert_true(c.training.drop_last);
    assert_int_equal(c.training.backup_workers, 1);
    assert_int_equal(c.training.max_staleness, 5);
    assert_int_equal(c.training.staleness_policy, PD_STALE_DROP);
    assert_int_equal(c.training.server_threads, 3);
    assert_int_equal(c.training.local_steps, 8);
    assert_dbl(c.training.elastic_alpha, 1.0 / 3);
    assert_int_equal(c.training.eval_every, 250);
    assert_dbl(c.training.eval_every_seconds, 2.5);
    assert_true(c.training.eval_wait);
    assert_dbl(c.training.worker_timeout, 7.5);
    assert_true(c.training.trace);
    assert_int_equal(c.training.early_stopping_patience, 4);
    assert_int_equal(c.training.max_bad_updates, 12);
    assert_int_equal(c.training.max_iterations, 250);
    const pd_optim_config *o = &c.optimizer;
    assert_int_equal(o->name, PD_OPT_ADAM);
    assert_dbl(o->lr, 0.0025);
    assert_dbl(o->momentum, 0.5);
    assert_dbl(o->rho, 0.8);
    assert_dbl(o->eps, 1e-10);
    assert_dbl(o->beta1, 0.85);
    assert_dbl(o->beta2, 0.995);
    assert_dbl(o->weight_decay, 0.01);
    assert_dbl(o->clip_norm, 5);
    assert_dbl(o->clip_value, 0.25);
    assert_int_equal(o->schedule.type, PD_SCHED_COSINE);
    assert_int_equal(o->schedule.step_size, 500);
    assert_dbl(o->schedule.gamma, 0.75);
    assert_dbl(o->schedule.decay, 0.01);
    assert_dbl(o->schedule.min_lr, 0.0001);
    assert_int_equal(o->schedule.warmup, 100);
    assert_dbl(o->noise, 0.3);
    assert_dbl(o->noise_gamma, 0.6);
    assert_int_equal(o->staleness_compensation, PD_SCOMP_DC);
    assert_dbl(o->dc_lambda, 0.5);
    assert_true(o->dc_lambda_adaptive);
    assert_dbl(o->dc_decay, 0.9);
    assert_int_equal(o->batch_examples, 5000);
    assert_int_equal(o->bfgs_max_params, 3000);
    assert_int_equal(o->history, 7);
    assert_int_equal(o->cg_variant, PD_CG_FR);
    assert_dbl(o->grad_tol, 1e-8);
    assert_dbl(o->loss_tol, 1e-12);
    assert_int_equal(o->block_size, 8);
    assert_int_equal(o->block_order, PD_BLOCKS_RANDOM);
    assert_int_equal(o->vsgd_bound_layers, 2);
    assert_int_equal(o->vsgd_row_layers, 1);
    assert_dbl(o->vsgd_slow, 10);
    assert_dbl(o->vsgd_memory, 100);
    /* checkpoint.every_* must stay 0 outside serial mode (the fixture is
     * async; see test_cross_key_rules); keep changes. */
    assert_int_equal(c.checkpoint.keep, 5);
    assert_int_equal(c.faults.n_slow_workers, 2);
    assert_int_equal(c.faults.slow_workers[0].rank, 2);
    assert_dbl(c.faults.slow_workers[0].factor, 4);
    assert_int_equal(c.faults.slow_workers[1].rank, 5);
    assert_dbl(c.faults.slow_workers[1].factor, 1.0000000000000002);
    assert_int_equal(c.faults.slow_basis, PD_SLOW_COMPUTE);
    assert_int_equal(c.faults.delay_distribution, PD_DELAY_EXPONENTIAL);
    assert_dbl(c.faults.delay_mean_ms, 2.5);

    /* The fixture really changes every key: no field keeps its default,
     * but for the ones cross-key rules pin (trace needs one server;
     * checkpoints are refused outside serial mode), parsed here or in
     * test_cross_key_rules instead. */
    static const char *const pinned[] = {"training.servers", "checkpoint.every_updates",
                                         "checkpoint.every_seconds", "training.phases"};
    pd_config_defaults(&d);
    for (int i = 0; i < PD_KEY_COUNT; i++) {
        const pd_key *k = &pd_keys[i];
        bool pin = false;
        for (size_t j = 0; j < sizeof pinned / sizeof *pinned; j++)
            pin = pin || !strcmp(k->path, pinned[j]);
        if (!pin && !memcmp((char *)&c + k->offset, (char *)&d + k->offset, field_size(k)))
            fail_msg("%s keeps its default in the fixture", k->path);
    }
    load_ok("training: {mode: sync, servers: 3}\n", NULL, 0, &c);
    assert_int_equal(c.training.servers, 3);
}

static void test_round_trip(void **state)
{
    (void)state;
    pd_config a, b;
    const char *texts[] = {"", every_key, "optimizer: {name: adadelta}\n"};
    for (int i = 0; i < 3; i++) {
        load_ok(texts[i], NULL, 0, &a);
        char *text = written(&a);
        assert_null(strstr(text, ": default\n"));   /* rule defaults written as numbers */
        load_ok(text, NULL, 0, &b);
        assert_same_config(a, b);
        free(text);
    }
    /* Doubles that need all 17 digits survive; short ones stay short. */
    const char *sets[] = {"optimizer.lr=0.30000000000000004", "optimizer.noise=1e-300",
                          "optimizer.clip_norm=123456789.123456789"};
    load_ok("", sets, 3, &a);
    char *text = written(&a);
    assert_non_null(strstr(text, "  lr: 0.30000000000000004\n"));
    assert_non_null(strstr(text, "  noise_gamma: 0.55\n"));
    assert_non_null(strstr(text, "  seed: 1\n"));
    assert_non_null(strstr(text, "  hidden: []\n"));
    assert_non_null(strstr(text, "\nfaults:\n  slow_workers: []\n  slow_basis: cycle\n  delay:\n"
                                 "    distribution: none\n    mean_ms: 0\n"));
    load_ok(text, NULL, 0, &b);
    assert_same_config(a, b);
    free(text);
    /* Lists are written flow style, doubles in full. */
    load_ok(every_key, NULL, 0, &a);
    text = written(&a);
    assert_non_null(strstr(text, "\nfaults:\n  slow_workers: [{rank: 2, factor: 4}, "
                                 "{rank: 5, factor: 1.0000000000000002}]\n  slow_basis: compute\n"));
    free(text);
    /* A shorter list from --set leaves no trace of the file's longer one, so
     * the written config reads back as the same bytes. */
    const char *shorter[] = {"model.hidden=[4]", "faults.slow_workers=[{rank: 3, factor: 2}]"};
    load_ok("model: {type: mlp, hidden: [1, 2, 3]}\nfaults:\n  slow_workers: "
            "[{rank: 1, factor: 9}, {rank: 2, factor: 8}]\n", shorter, 2, &a);
    assert_int_equal(a.model.hidden[1], 0);
    assert_int_equal(a.faults.slow_workers[1].rank, 0);
    assert_dbl(a.faults.slow_workers[1].factor, 0);
    text = written(&a);
    load_ok(text, NULL, 0, &b);
    assert_same_config(a, b);
    free(text);
    /* A path holding the characters YAML folds or will not print raw in a
     * quoted scalar (NEL, LS, PS, a C1 control, a BOM) is written with
     * their escapes and reads back byte for byte (the fuzzer's finding,
     * tests/fuzz/regressions/config/nel-in-out-dir: it read back otherwise). */
    load_ok("run: {out_dir: \"a\\Nb\\Lc\\Pd\\x9Be\\uFEFFf\\e\"}\n", NULL, 0, &a);
    assert_string_equal(a.run.out_dir, "a\xC2\x85" "b\xE2\x80\xA8" "c\xE2\x80\xA9" "d\xC2\x9B"
                                       "e\xEF\xBB\xBF" "f\x1B");
    text = written(&a);
    assert_non_null(strstr(text, "  out_dir: \"a\\x85b\\Lc\\Pd\\x9Be\\uFEFFf\\x1B\"\n"));
    load_ok(text, NULL, 0, &b);
    assert_same_config(a, b);
    free(text);
    /* pd_config_defaults itself (source "") writes and reads back too. */
    pd_config_defaults(&a);
    text = written(&a);
    load_ok(text, NULL, 0, &b);
    assert_same_config(a, b);
    free(text);
}

static void test_unknown_keys(void **state)
{
    (void)state;
    ERR("training:\n  epochz: 3\n",
        NAME ":2:3: training.epochz: unknown key (did you mean epochs?)");
    ERR("training:\n  epchz: 3\n",
        NAME ":2:3: training.epchz: unknown key (did you mean epochs?)");
    ERR("trainin:\n  epochs: 1\n", NAME ":1:1: trainin: unknown key (did you mean training?)");
    ERR("training:\n  batch: 3\n",
        NAME ":2:3: training.batch: unknown key (did you mean batch_size?)");
    ERR("training:\n  zzzzzz: 1\n", NAME ":2:3: training.zzzzzz: unknown key");
    ERR("optimizer:\n  schedule:\n    warmpu: 3\n",
        NAME ":3:5: optimizer.schedule.warmpu: unknown key (did you mean warmup?)");
    ERR("run: {seed: 1, sed: 2}\n", NAME ":1:16: run.sed: unknown key (did you mean seed?)");
    /* Dotted keys resolve like nested ones, suggestions included. */
    ERR("training.epochz: 3\n",
        NAME ":1:1: training.epochz: unknown key (did you mean epochs?)");
    ERR("faultz: {}\n", NAME ":1:1: faultz: unknown key (did you mean faults?)");
    ERR("faults:\n  dealy: {}\n", NAME ":2:3: faults.dealy: unknown key (did you mean delay?)");
    ERR("run:\n  \"se\\ned\": 1\n", NAME ":2:3: run: unknown key \"se\\ned\"");
    /* A key of an earlier version says what it became. */
    ERR("optimizer:\n  staleness_scaling: inverse\n", NAME ":2:3: optimizer.staleness_scaling: "
        "unknown key (renamed optimizer.staleness_compensation: none, inverse or dc)");
    /* The name is optional: messages then say <string>. */
    pd_config c;
    assert_int_equal(pd_config_load_string(NULL, "x: 1\n", NULL, 0, &c), PD_EINPUT);
    assert_str(pd_err_msg(), "<string>:1:1: x: unknown key");
}

static void test_wrong_types(void **state)
{
    (void)state;
    ERR("training:\n  epochs: abc\n",
        NAME ":2:11: training.epochs: expected an integer, got \"abc\"");
    ERR("training:\n  epochs: 1.5\n",
        NAME ":2:11: training.epochs: expected an integer, got \"1.5\"");
    ERR("training:\n  epochs: \"\"\n",
        NAME ":2:11: training.epochs: expected an integer, got \"\"");
    ERR("training:\n  max_updates: 12x\n",
        NAME ":2:16: training.max_updates: expected an integer, got \"12x\"");
    ERR("run:\n  seed: -1\n", NAME ":2:9: run.seed: expected an integer >= 0, got \"-1\"");
    ERR("optimizer:\n  lr: fast\n",
        NAME ":2:7: optimizer.lr: expected a number or default, got \"fast\"");
    ERR("model:\n  l2: default\n", NAME ":2:7: model.l2: expected a number, got \"default\"");
    ERR("optimizer:\n  lr: inf\n", NAME ":2:7: optimizer.lr: expected a finite number, got \"inf\"");
    ERR("optimizer:\n  lr: .nan\n", NAME ":2:7: optimizer.lr: expected a number or default, "
        "got \".nan\"");
    ERR("data:\n  header: maybe\n", NAME ":2:11: data.header: expected true or false, "
        "got \"maybe\"");
    /* Long or odd values are quoted, escaped and cut so the message stays one line. */
    ERR("training:\n  epochs: \"a\\nb\\\"c\"\n",
        NAME ":2:11: training.epochs: expected an integer, got \"a\\nb\\\"c\"");
    ERR("training:\n  epochs: 0123456789012345678901234567890123456789xyz\n",
        NAME ":2:11: training.epochs: expected an integer, got "
        "\"0123456789012345678901234567890123456789...\"");
    ERR("training:\n  epochs: \"1\\0\"\n",
        NAME ":2:11: training.epochs: expected an integer, got \"1\\x00\"");
    /* An empty value is marked just after the key's colon, on its line. */
    ERR("training:\n  epochs:\n  mode: sync\n",
        NAME ":2:10: training.epochs: expected an integer, got nothing");
}

static void test_out_of_range(void **state)
{
    (void)state;
    ERR("optimizer:\n  lr: -3\n", NAME ":2:7: optimizer.lr: must be > 0, got -3");
    ERR("optimizer:\n  lr: 0\n", NAME ":2:7: optimizer.lr: must be > 0, got 0");
    ERR("optimizer:\n  momentum: 1\n", NAME ":2:13: optimizer.momentum: must be in [0, 1), got 1");
    ERR("data:\n  validation_fraction: 0.95\n",
        NAME ":2:24: data.validation_fraction: must be in [0, 0.9], got 0.95");
    ERR("training:\n  batch_size: 0\n", NAME ":2:15: training.batch_size: must be >= 1, got 0");
    ERR("training:\n  elastic_alpha: 0\n",
        NAME ":2:18: training.elastic_alpha: must be in (0, 1], got 0");
    ERR("training:\n  max_staleness: -2\n",
        NAME ":2:18: training.max_staleness: must be >= -1, got -2");
    ERR("run:\n  blas_threads: 5000\n", NAME ":2:17: run.blas_threads: must be in [1, 1024], "
        "got 5000");
    /* Past the C type: the type's limit is named. */
    ERR("training:\n  epochs: 3000000000\n",
        NAME ":2:11: training.epochs: must be <= 2147483647, got 3000000000");
    ERR("training:\n  max_updates: 99999999999999999999\n",
        NAME ":2:16: training.max_updates: must be <= 9223372036854775807, "
        "got 99999999999999999999");
    ERR("run:\n  seed: 18446744073709551616\n",
        NAME ":2:9: run.seed: must be <= 18446744073709551615, got 18446744073709551616");
    /* Lists: each entry is bounded, and so is their number. */
    ERR("model:\n  type: mlp\n  hidden: [64, 0]\n",
        NAME ":3:16: model.hidden: must be in [1, 1000000], got 0");
    ERR("model:\n  type: mlp\n  hidden: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n",
        NAME ":3:11: model.hidden: at most 8 entries, got 9");
    /* Strings: length and emptiness. */
    char yaml[800] = "run:\n  out_dir: ";
    memset(yaml + strlen(yaml), 'a', 600);
    ERR(yaml, NAME ":2:12: run.out_dir: must be at most 511 bytes long, got 600");
    ERR("run:\n  out_dir: \"\"\n", NAME ":2:12: run.out_dir: must not be empty");
    ERR("run:\n  out_dir:\n", NAME ":2:11: run.out_dir: must not be empty");
}

static void test_bad_enum(void **state)
{
    (void)state;
    ERR("training:\n  mode: foo\n", NAME ":2:9: training.mode: must be one of: serial, sync, "
        "async, hogwild, local_sgd, easgd; got \"foo\"");
    ERR("optimizer:\n  name: Adam\n", NAME ":2:9: optimizer.name: must be one of: sgd, "
        "momentum, nesterov, adagrad, rmsprop, rmsprop_nesterov, adadelta, adam, adamw, cg, "
        "bfgs, lbfgs, cd, vsgd; got \"Adam\"");
    ERR("optimizer:\n  schedule:\n    type: linear\n", NAME ":3:11: optimizer.schedule.type: "
        "must be one of: constant, step, exponential, inverse_time, cosine; got \"linear\"");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    ERR("training:\n  epochs: [1, 2\n",
        NAME ":3:1: YAML syntax error: did not find expected ',' or ']' "
        "(while parsing a flow sequence at 2:11)");
    ERR("training:\n  epochs: 1\n mode: sync\n",
        NAME ":3:2: YAML syntax error: did not find expected key "
        "(while parsing a block mapping at 1:1)");
    ERR("run:\n\tseed: 1\n", NAME ":2:1: YAML syntax error: found character that cannot "
        "start any token (while scanning for the next token at 2:1)");
    /* Reader errors carry a byte offset: converted to line:column too. */
    ERR("run:\n  out_dir: \xff\n", NAME ":2:12: YAML syntax error: invalid leading UTF-8 octet");
    ERR("run:\n  seed: *nope\n", NAME ":2:9: YAML syntax error: found undefined alias");
    ERR("run:\n  seed: 1\n---\nrun:\n  seed: 2\n",
        NAME ":4:1: only one YAML document is allowed");
}

static void test_shape_errors(void **state)
{
    (void)state;
    ERR("training:\n  epochs:\n    a: 1\n",
        NAME ":3:5: training.epochs: expected an integer, got a mapping");
    ERR("training:\n  mode: [sync]\n", NAME ":2:9: training.mode: must be one of: serial, "
        "sync, async, hogwild, local_sgd, easgd; got a list");
    ERR("training: 5\n", NAME ":1:11: training: expected a mapping of keys, got \"5\"");
    ERR("training: [1]\n", NAME ":1:11: training: expected a mapping of keys, got a list");
    ERR("- a\n", NAME ":1:1: expected a mapping of sections (run, data, model, training, "
        "optimizer, checkpoint, faults), got a list");
    ERR("just text\n", NAME ":1:1: expected a mapping of sections (run, data, model, "
        "training, optimizer, checkpoint, faults), got a scalar");
    ERR("model:\n  type: mlp\n  hidden: 64\n", NAME ":3:11: model.hidden: expected a list "
        "of integers like [256, 128], got \"64\"");
    ERR("model:\n  type: mlp\n  hidden: [[1]]\n", NAME ":3:12: model.hidden: expected a list "
        "of integers like [256, 128], got a nested list");
    ERR("model:\n  hidden: [x]\n", NAME ":2:12: model.hidden: expected an integer, got \"x\"");
    ERR("run:\n  ? [a]\n  : 1\n", NAME ":2:5: run: keys must be names, got a list");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    ERR("training:\n  epochs: 1\n  epochs: 2\n",
        NAME ":3:3: training.epochs: duplicate key (first at 2:3)");
    ERR("run:\n  seed: 1\nrun:\n  seed: 2\n", NAME ":3:1: run: duplicate key (first at 1:1)");
    ERR("training:\n  epochs: 1\ntraining.epochs: 2\n",
        NAME ":3:1: training.epochs: duplicate key (first at 2:3)");
}

static const char *srcdir(void)
{
    const char *s = getenv("PARAMD_SRCDIR");
    return s ? s : ".";
}

static void test_files(void **state)
{
    (void)state;
    pd_config c;
    char path[1024];
    assert_int_equal(pd_config_load("/nonexistent/x.yaml", NULL, 0, &c), PD_EINPUT);
    assert_str(pd_err_msg(), "/nonexistent/x.yaml: cannot open: No such file or directory");
    assert_int_equal(pd_config_load("/", NULL, 0, &c), PD_EINPUT);
    assert_str(pd_err_msg(), "/: cannot read: Is a directory");

    snprintf(path, sizeof path, "%s/tests/data/config/unknown-key.yaml", srcdir());
    assert_int_equal(pd_config_load(path, NULL, 0, &c), PD_EINPUT);
    char want[1200];
    snprintf(want, sizeof want, "%s:5:3: training.epochz: unknown key (did you mean epochs?)",
             path);
    assert_str(pd_err_msg(), want);

    snprintf(path, sizeof path, "%s/tests/data/config/bad-value.yaml", srcdir());
    assert_int_equal(pd_config_load(path, NULL, 0, &c), PD_EINPUT);
    snprintf(want, sizeof want, "%s:3:7: optimizer.lr: must be > 0, got -0.5", path);
    assert_str(pd_err_msg(), want);
    /* --set fixes it: overrides come after the file. */
    const char *fix[] = {"optimizer.lr=0.2"};
    assert_int_equal(pd_config_load(path, fix, 1, &c), PD_EINPUT);   /* file errs first */

    snprintf(path, sizeof path, "%s/tests/data/config/good.yaml", srcdir());
    const char *sets[] = {"training.epochs=5"};
    assert_int_equal(pd_config_load(path, sets, 1, &c), PD_OK);
    assert_str(c.source, path);
    assert_int_equal(c.run.seed, 7);
    assert_str(c.run.out_dir, "runs/test-good");
    assert_dbl(c.data.validation_fraction, 0.1);
    assert_int_equal(c.model.type, PD_MODEL_MLP);
    assert_int_equal(c.model.n_hidden, 2);
    assert_int_equal(c.model.hidden[0], 128);
    assert_int_equal(c.model.hidden[1], 64);
    assert_int_equal(c.training.mode, PD_MODE_SYNC);
    assert_int_equal(c.training.epochs, 5);
    assert_int_equal(c.training.batch_size, 32);
    assert_int_equal(c.training.early_stopping_patience, 3);
    assert_int_equal(c.optimizer.name, PD_OPT_NESTEROV);
    assert_int_equal(c.optimizer.schedule.type, PD_SCHED_STEP);
    assert_int_equal(c.optimizer.schedule.step_size, 200);
    /* Nesterov's defaults: momentum 0.9 (Sutskever et al. 2013), and lr 0.01 so
     * that the steady step lr / (1 - momentum) is plain SGD's 0.1. */
    assert_dbl(c.optimizer.lr, 0.01);
    assert_dbl(c.optimizer.momentum, 0.9);
    assert_int_equal(c.faults.n_slow_workers, 2);
    assert_int_equal(c.faults.slow_workers[0].rank, 2);
    assert_dbl(c.faults.slow_workers[0].factor, 3);
    assert_int_equal(c.faults.slow_workers[1].rank, 1);
    assert_dbl(c.faults.slow_workers[1].factor, 1.5);
    assert_int_equal(c.faults.delay_distribution, PD_DELAY_UNIFORM);
    assert_dbl(c.faults.delay_mean_ms, 0.25);
    assert_int_equal(pd_config_check_world(&c, 3), PD_OK);
}

static void test_overrides(void **state)
{
    (void)state;
    pd_config c;
    const char *sets[] = {"training.epochs=5", "model.type=mlp", "model.hidden=[64,32]",
                          "run.out_dir=runs/a b", "data.test=", "optimizer.name=adam",
                          "optimizer.lr=0.5", "optimizer.lr=default", "training.trace=yes",
                          "training.epochs=6", "run.seed='9'", "training.mode=async"};
    load_ok("training:\n  epochs: 2\n  batch_size: 8\n", sets, 12, &c);
    assert_int_equal(c.training.epochs, 6);          /* in order: the last one wins */
    assert_int_equal(c.training.batch_size, 8);      /* the file's value stays */
    assert_int_equal(c.model.type, PD_MODEL_MLP);
    assert_int_equal(c.model.n_hidden, 2);
    assert_int_equal(c.model.hidden[1], 32);
    assert_str(c.run.out_dir, "runs/a b");
    assert_str(c.data.test, "");
    assert_true(c.training.trace);
    assert_int_equal(c.run.seed, 9);
    /* "optimizer.lr=default" gives Adam's own: the paper's (Kingma & Ba 2015)
     * alpha 0.001, beta1 0.9, beta2 0.999, epsilon 1e-8. */
    assert_dbl(c.optimizer.lr, 0.001);
    assert_dbl(c.optimizer.beta1, 0.9);
    assert_dbl(c.optimizer.beta2, 0.999);
    assert_dbl(c.optimizer.eps, 1e-8);

    ERR_SET("", "--set training.epochs=abc: training.epochs: expected an integer, got \"abc\"",
            "training.epochs=abc");
    ERR_SET("", "--set training.epochz=3: training.epochz: unknown key (did you mean epochs?)",
            "training.epochz=3");
    ERR_SET("", "--set training.epochs: expected key.path=value", "training.epochs");
    ERR_SET("", "--set =3: expected key.path=value", "=3");
    ERR_SET("", "--set training=3: training: is a section; set one of its keys "
            "(training.KEY=value)", "training=3");
    ERR_SET("", "--set optimizer.lr=-1: optimizer.lr: must be > 0, got -1", "optimizer.lr=-1");
    ERR_SET("", "--set training.epochs=: training.epochs: expected an integer, got nothing",
            "training.epochs=");
    ERR_SET("", "--set training.mode={a: 1}: training.mode: must be one of: serial, sync, "
            "async, hogwild, local_sgd, easgd; got a mapping", "training.mode={a: 1}");
    ERR_SET("", "--set model.hidden=[64,: model.hidden: YAML syntax error: did not find "
            "expected node content", "model.hidden=[64,");
    /* The second bad override is reported only once the first is fixed. */
    ERR_SET("", "--set training.epochs=x: training.epochs: expected an integer, got \"x\"",
            "training.batch_size=4", "training.epochs=x", "training.mode=bad");
}

static void test_enums_and_lists(void **state)
{
    (void)state;
    pd_config c;
    const char *modes[] = {"serial", "sync", "async", "hogwild", "local_sgd", "easgd"};
    for (int m = 0; m < 6; m++) {
        char set[64];
        snprintf(set, sizeof set, "training.mode=%s", modes[m]);
        const char *sets[] = {set};
        load_ok("", sets, 1, &c);
        assert_int_equal(c.training.mode, m);
        assert_str(pd_mode_name((pd_mode)m), modes[m]);
    }
    const char *opts[] = {"sgd", "momentum", "nesterov", "adagrad", "rmsprop",
                          "rmsprop_nesterov", "adadelta", "adam", "adamw", "cg", "bfgs",
                          "lbfgs", "cd", "vsgd"};
    /* lr, momentum, rho, eps, beta1, beta2 of each rule. From the papers:
     * momentum 0.9 (Sutskever et al. 2013), RMSprop rho 0.9 (Hinton's
     * lecture 6e), AdaDelta rho 0.95 and eps 1e-6 with lr 1 (Zeiler 2012),
     * Adam and AdamW alpha 0.001, beta1 0.9, beta2 0.999, eps 1e-8 (Kingma &
     * Ba 2015; Loshchilov & Hutter 2019). The step sizes of sgd (0.1),
     * momentum and nesterov (0.01: steady step lr / (1 - 0.9) = 0.1),
     * adagrad (0.05, eps 1e-7), rmsprop (0.001, eps 1e-6) and
     * rmsprop_nesterov (1e-4) are paramd's own choice for the demo problem
     * (src/optim/defaults.c says how they were checked). */
    static const double rule_defaults[PD_OPT_COUNT][6] = {
        {0.1, 0, 0, 0, 0, 0},             {0.01, 0.9, 0, 0, 0, 0},
        {0.01, 0.9, 0, 0, 0, 0},          {0.05, 0, 0, 1e-7, 0, 0},
        {0.001, 0, 0.9, 1e-6, 0, 0},      {1e-4, 0.9, 0.9, 1e-6, 0, 0},
        {1.0, 0, 0.95, 1e-6, 0, 0},       {0.001, 0, 0, 1e-8, 0.9, 0.999},
        {0.001, 0, 0, 1e-8, 0.9, 0.999},
        /* cg, bfgs, lbfgs: lr is the first trial step (Nocedal & Wright's 1) */
        {1.0, 0, 0, 0, 0, 0},             {1.0, 0, 0, 0, 0, 0},
        {1.0, 0, 0, 0, 0, 0},             {1.0, 0, 0, 0, 0, 0},
        /* vsgd: no learning rate; 1 is what staleness scaling multiplies */
        {1.0, 0, 0, 0, 0, 0},
    };
    for (int o = 0; o < PD_OPT_COUNT; o++) {
        char set[64];
        snprintf(set, sizeof set, "optimizer.name=%s", opts[o]);
        const char *sets[] = {set, "model.type=linreg"};   /* cd needs linreg */
        load_ok("", sets, o == PD_OPT_CD ? 2 : 1, &c);
        assert_int_equal(c.optimizer.name, o);
        assert_str(pd_optimizer_name_str((pd_optimizer_name)o), opts[o]);
        /* Every rule's defaults, written out (not asked of pd_optim_defaults). */
        const double *d = rule_defaults[o];
        assert_dbl(c.optimizer.lr, d[0]);
        assert_dbl(c.optimizer.momentum, d[1]);
        assert_dbl(c.optimizer.rho, d[2]);
        assert_dbl(c.optimizer.eps, d[3]);
        assert_dbl(c.optimizer.beta1, d[4]);
        assert_dbl(c.optimizer.beta2, d[5]);
    }
    const char *models[] = {"softmax", "mlp", "linreg", "logreg", "svm"};
    for (int t = 0; t < 5; t++)
        assert_str(pd_model_type_name((pd_model_type)t), models[t]);
    assert_str(pd_mode_name((pd_mode)99), "?");

    const char *bools[][2] = {{"true", "1"}, {"True", "1"}, {"on", "1"}, {"YES", "1"},
                              {"false", "0"}, {"no", "0"}, {"Off", "0"}};
    for (int i = 0; i < 7; i++) {
        char yaml[64];
        snprintf(yaml, sizeof yaml, "data:\n  header: %s\n", bools[i][0]);
        load_ok(yaml, NULL, 0, &c);
        assert_int_equal(c.data.header, bools[i][1][0] == '1');
    }
    /* Lists: flow, block, empty, null. */
    load_ok("model:\n  type: mlp\n  hidden:\n  - 5\n  - 6\n", NULL, 0, &c);
    assert_int_equal(c.model.n_hidden, 2);
    assert_int_equal(c.model.hidden[1], 6);
    load_ok("model:\n  type: mlp\n  hidden: [1, 2, 3, 4, 5, 6, 7, 8]\n", NULL, 0, &c);
    assert_int_equal(c.model.n_hidden, 8);
    assert_int_equal(c.model.hidden[7], 8);
    load_ok("model:\n  hidden: [ ]\n", NULL, 0, &c);
    assert_int_equal(c.model.n_hidden, 0);
    load_ok("model:\n  hidden: ~\n", NULL, 0, &c);
    assert_int_equal(c.model.n_hidden, 0);
    /* Sections may be empty (every key commented out), and flow style works. */
    load_ok("run:\ntraining: {epochs: 3, mode: sync}\n", NULL, 0, &c);
    assert_int_equal(c.training.epochs, 3);
}

static void test_cross_key_rules(void **state)
{
    (void)state;
    pd_config c;
    ERR("model:\n  type: mlp\n", NAME ":2:9: model.type: mlp needs model.hidden, the hidden "
        "layer widths (e.g. [256, 128])");
    ERR("training:\n  epochs: 0\n", NAME ":2:11: training.epochs: 0 epochs needs "
        "training.max_updates > 0, or the run never ends");
    load_ok("training:\n  epochs: 0\n  max_updates: 10\n", NULL, 0, &c);
    ERR("optimizer:\n  staleness_compensation: dc\n", NAME ":2:27: "
        "optimizer.staleness_compensation: dc corrects stale gradients in async and hogwild "
        "mode (training.mode is serial)");
    load_ok("training: {mode: hogwild}\noptimizer: {staleness_compensation: dc}\n", NULL, 0, &c);
    ERR("training: {mode: async}\noptimizer:\n  dc_lambda_adaptive: true\n", NAME ":3:23: "
        "optimizer.dc_lambda_adaptive: adapts dc's lambda: it needs "
        "optimizer.staleness_compensation dc");
    load_ok("training: {mode: async}\noptimizer: {staleness_compensation: dc, dc_lambda_adaptive: "
            "true}\n", NULL, 0, &c);
    assert_true(c.optimizer.dc_lambda_adaptive);
    assert_dbl(c.optimizer.dc_decay, 0.95);
    ERR("training:\n  early_stopping: {patience: 3}\n", NAME ":2:30: "
        "training.early_stopping.patience: early stopping watches the validation loss: set "
        "data.validation_fraction > 0");
    ERR("training:\n  mode: sync\n  trace: true\n", NAME ":3:10: training.trace: traces are "
        "for async runs with one server (training.mode is sync with 1 server; sync and serial "
        "runs are reproducible from their seed)");
    load_ok("training:\n  mode: async\n  trace: true\n", NULL, 0, &c);
    load_ok("training:\n  mode: sync\n  servers: 2\n  backup_workers: 1\n", NULL, 0, &c);
    load_ok("training:\n  mode: sync\n  servers: 2\n  backup_workers: 1\n  worker_timeout: 9\n",
            NULL, 0, &c);
    ERR("training:\n  mode: local_sgd\n  servers: 2\n  backup_workers: 1\n", NAME ":4:19: "
        "training.backup_workers: backup workers with several servers are for sync mode (server "
        "0 names each round's workers to the others); local_sgd mode with 2 servers: use one "
        "server");
    ERR("training:\n  mode: sync\n  servers: 2\n  worker_timeout: 30\n", NAME ":4:19: "
        "training.worker_timeout: with several servers lost workers are for async, hogwild and "
        "sync with backup workers (server 0 decides and tells the others); sync (no backup "
        "workers) mode with 2 servers: use one server");
    load_ok("training:\n  mode: async\n  servers: 2\n  worker_timeout: 30\n", NULL, 0, &c);
    load_ok("training:\n  mode: hogwild\n  servers: 3\n  worker_timeout: 30\n", NULL, 0, &c);
    ERR("training:\n  mode: easgd\n  servers: 2\n  worker_timeout: 30\n", NAME ":4:19: "
        "training.worker_timeout: with several servers lost workers are for async, hogwild and "
        "sync with backup workers (server 0 decides and tells the others); easgd mode with 2 "
        "servers: use one server");
    ERR("training:\n  mode: sync\n  servers: 0\n  worker_timeout: 30\n", NAME ":4:19: "
        "training.worker_timeout: lost workers need server ranks (with training.servers 0 every "
        "worker rank takes part in each round)");
    /* Lost workers and checkpoints go together (a checkpoint records them). */
    load_ok("training:\n  mode: async\n  worker_timeout: 30\ncheckpoint:\n  every_updates: 100\n",
            NULL, 0, &c);
    load_ok("training:\n  mode: sync\n  backup_workers: 1\n  worker_timeout: 30\ncheckpoint:\n"
            "  every_seconds: 60\n", NULL, 0, &c);
    ERR("training:\n  mode: hogwild\n  max_staleness: 2\n  staleness_policy: wait\n",
        NAME ":4:21: training.staleness_policy: wait bounds staleness in async mode; hogwild "
        "threads can only drop (staleness_policy: drop)");
    load_ok("training:\n  mode: sync\ncheckpoint:\n  every_updates: 100\n", NULL, 0, &c);
    load_ok("training:\n  mode: local_sgd\ncheckpoint:\n  every_seconds: 60\n", NULL, 0, &c);
    load_ok("training:\n  mode: sync\n  servers: 0\ncheckpoint:\n  every_updates: 100\n", NULL, 0, &c);
    load_ok("training:\n  mode: sync\n  backup_workers: 1\ncheckpoint:\n  every_updates: 100\n",
            NULL, 0, &c);
    load_ok("training:\n  mode: async\ncheckpoint:\n  every_seconds: 60\n", NULL, 0, &c);
    load_ok("training:\n  mode: async\n  servers: 2\ncheckpoint:\n  every_updates: 40\n", NULL,
            0, &c);
    load_ok("training:\n  mode: async\n  trace: true\ncheckpoint:\n  every_seconds: 60\n", NULL,
            0, &c);
    load_ok("training:\n  mode: hogwild\ncheckpoint:\n  every_updates: 5\n", NULL, 0, &c);
    load_ok("training:\n  mode: hogwild\n  servers: 2\ncheckpoint:\n  every_updates: 5\n",
            NULL, 0, &c);
    load_ok("training:\n  mode: easgd\ncheckpoint:\n  every_updates: 100\n", NULL, 0, &c);
    load_ok("training:\n  mode: easgd\n  servers: 2\ncheckpoint:\n  every_updates: 100\n",
            NULL, 0, &c);
    load_ok("checkpoint:\n  every_updates: 100\n  every_seconds: 60\n", NULL, 0, &c);
    assert_int_equal(c.checkpoint.every_updates, 100);
    /* Batch methods: serial or sync with server ranks, none of the stochastic
     * rules' knobs; each refusal at the key that breaks it. */
    const char *stochastic[] = {"async", "hogwild", "local_sgd", "easgd"};
    for (int i = 0; i < 4; i++) {
        char yaml[128], want[512];
        snprintf(yaml, sizeof yaml, "training:\n  mode: %s\noptimizer:\n  name: lbfgs\n",
                 stochastic[i]);
        snprintf(want, sizeof want, NAME ":4:9: optimizer.name: lbfgs is a batch method: it "
                 "runs in serial or sync mode, not %s (each step needs the full gradient and "
                 "a line search)", stochastic[i]);
        ERR(yaml, want);
    }
    ERR("training:\n  mode: sync\n  servers: 2\noptimizer:\n  name: bfgs\n", NAME ":3:12: "
        "training.servers: bfgs keeps its n x n inverse Hessian on one server: set "
        "training.servers 1, or use lbfgs, got 2 servers");
    ERR("training:\n  mode: sync\n  servers: 65\noptimizer:\n  name: cg\n", NAME ":3:12: "
        "training.servers: the batch method cg splits its vectors over at most 64 servers, "
        "got 65");
    ERR("training:\n  mode: sync\n  servers: 0\noptimizer:\n  name: lbfgs\n", NAME ":3:12: "
        "training.servers: the batch method lbfgs runs on server ranks (1 to 64), not on the "
        "workers (0)");
    load_ok("training:\n  mode: sync\n  servers: 2\noptimizer:\n  name: cg\n", NULL, 0, &c);
    assert_int_equal(c.training.servers, 2);
    ERR("optimizer:\n  name: bfgs\n  weight_decay: 0.1\n", NAME ":3:17: "
        "optimizer.weight_decay: must be 0 for the batch method bfgs (use model.l2)");
    ERR("optimizer:\n  name: cg\n  clip_norm: 1\n", NAME ":3:14: "
        "optimizer.clip_norm: must be 0 for the batch method cg");
    load_ok("optimizer:\n  name: cg\ncheckpoint:\n  every_updates: 5\n", NULL, 0, &c);
    assert_int_equal(c.checkpoint.every_updates, 5);
    ERR("optimizer:\n  name: cd\n", NAME ":2:9: optimizer.name: cd minimizes least squares: "
        "it needs model.type linreg (model.type is softmax)");
    /* vsgd: no learning rate, and a model that gives a curvature estimate */
    ERR("optimizer:\n  name: vsgd\n  vsgd_bound_layers: 1\n  vsgd_row_layers: 2\n", NAME
        ":4:20: optimizer.vsgd_row_layers: a layer's curvature is either the row bound or the "
        "row's along its gradient: set optimizer.vsgd_row_layers or optimizer.vsgd_bound_layers, "
        "not both");
    ERR("optimizer:\n  name: vsgd\n  vsgd_slow: -1\n", NAME ":3:14: optimizer.vsgd_slow: "
        "must be >= 0, got -1");
    load_ok("optimizer:\n  name: vsgd\n  vsgd_row_layers: 3\n", NULL, 0, &c);
    assert_int_equal(c.optimizer.vsgd_row_layers, 3);
    ERR("optimizer:\n  name: vsgd\n  vsgd_memory: -1\n", NAME ":3:16: optimizer.vsgd_memory: "
        "must be >= 0, got -1");
    ERR("optimizer:\n  name: vsgd\n  vsgd_memory: 19.5\n", NAME ":3:16: "
        "optimizer.vsgd_memory: must be 0 (unbounded) or at least 20, the slow start's "
        "minibatches, got 19.5");
    load_ok("optimizer:\n  name: vsgd\n  vsgd_memory: 20\n", NULL, 0, &c);
    assert_dbl(c.optimizer.vsgd_memory, 20);
    ERR("optimizer:\n  name: vsgd\n  lr: 0.1\n", NAME ":3:7: optimizer.lr: vsgd has no "
        "learning rate to set or schedule (it adapts one per parameter)");
    ERR("optimizer:\n  name: vsgd\n  schedule:\n    type: cosine\n", NAME ":4:11: "
        "optimizer.schedule.type: vsgd has no learning rate to set or schedule (it adapts one "
        "per parameter)");
    ERR("model:\n  type: svm\noptimizer:\n  name: vsgd\n", NAME ":4:9: optimizer.name: vsgd "
        "needs a curvature estimate, which softmax, mlp and linreg models give (model.type is "
        "svm)");
    ERR("optimizer:\n  name: vsgd\n  clip_norm: 1\n", NAME ":3:14: optimizer.clip_norm: must "
        "be 0 for vsgd (its rates come from the gradient's own statistics)");
    /* training.servers 0: the ranks' exchange carries the curvature */
    load_ok("training:\n  mode: sync\n  servers: 0\noptimizer:\n  name: vsgd\n", NULL, 0, &c);
    assert_int_equal(c.training.servers, 0);
    load_ok("optimizer:\n  name: vsgd\n  lr: default\n", NULL, 0, &c);
    load_ok("training:\n  mode: async\noptimizer:\n  name: vsgd\n", NULL, 0, &c);
    assert_int_equal(c.optimizer.name, PD_OPT_VSGD);
    assert_true(c.optimizer.lr == 1.0);
    load_ok("model:\n  type: linreg\noptimizer:\n  name: cd\n", NULL, 0, &c);
    assert_int_equal(c.optimizer.block_size, 1);
    assert_int_equal(c.optimizer.block_order, PD_BLOCKS_CYCLIC);
    load_ok("training:\n  mode: sync\noptimizer:\n  name: cg\n", NULL, 0, &c);
    assert_int_equal(c.optimizer.name, PD_OPT_CG);
    assert_int_equal(c.training.max_iterations, 100);
    assert_int_equal(c.optimizer.history, 10);
    assert_int_equal(c.optimizer.bfgs_max_params, 20000);
    assert_int_equal(c.optimizer.cg_variant, PD_CG_PR_PLUS);
    ERR("model:\n  type: mlp\n  hidden: []\n",
        NAME ":3:11: model.hidden: mlp needs at least one hidden layer, got []");
    ERR("model:\n  hidden: [10]\n",
        NAME ":2:11: model.hidden: only mlp has hidden layers (model.type is softmax)");
    ERR_SET("model:\n  type: mlp\n  hidden: [5]\n",
            NAME ":3:11: model.hidden: only mlp has hidden layers (model.type is logreg)",
            "model.type=logreg");
    ERR_SET("", "--set model.type=mlp: model.type: mlp needs model.hidden, the hidden layer "
            "widths (e.g. [256, 128])", "model.type=mlp");
    /* csv/libsvm have no default files; their unset IDX paths are cleared. */
    ERR("data:\n  format: csv\n", NAME ":2:11: data.format: csv needs data.train (the "
        "default is the Fashion-MNIST IDX file)");
    load_ok("data:\n  format: libsvm\n  train: a.svm\n", NULL, 0, &c);
    assert_str(c.data.train, "a.svm");
    assert_str(c.data.test, "");
    assert_str(c.data.train_labels, "");
    assert_str(c.data.test_labels, "");
    const char *test_set[] = {"data.test=b.svm"};
    load_ok("data:\n  format: libsvm\n  train: a.svm\n", test_set, 1, &c);
    assert_str(c.data.test, "b.svm");
    ERR("data:\n  format: csv\n  train: \"\"\n", NAME ":3:10: data.train: must not be empty");
    /* Class names are CSV labels; linreg has none. */
    ERR("data:\n  format: libsvm\n  train: a.svm\n  classes: a,b\n",
        NAME ":4:12: data.classes: class names need data.format csv (data.format is libsvm)");
    ERR("data:\n  format: csv\n  train: a.csv\n  classes: a,b\nmodel:\n  type: linreg\n",
        NAME ":4:12: data.classes: linreg has no classes");
    /* idx needs labels for each image file it reads. */
    ERR("data:\n  train_labels: \"\"\n",
        NAME ":2:17: data.train_labels: idx needs the labels of data.train");
    ERR("data:\n  test_labels: \"\"\n",
        NAME ":2:16: data.test_labels: idx needs the labels of data.test");
    load_ok("data:\n  test: \"\"\n  test_labels: \"\"\n", NULL, 0, &c);
    /* Effective optimizer numbers, after the rule defaults. */
    ERR("optimizer:\n  name: adam\n  eps: 0\n",
        NAME ":3:8: optimizer.eps: must be > 0 for adam, got 0");
    load_ok("optimizer:\n  name: momentum\n  eps: 0\n", NULL, 0, &c);
    ERR("optimizer:\n  lr: 0.1\n  schedule: {type: cosine, min_lr: 0.5}\n",
        NAME ":3:36: optimizer.schedule.min_lr: must be <= optimizer.lr (0.1) for the "
        "cosine schedule, got 0.5");
    load_ok("optimizer:\n  lr: 0.1\n  schedule: {type: step, min_lr: 0.5}\n", NULL, 0, &c);
}

static void test_check_world(void **state)
{
    (void)state;
    pd_config c;
    load_ok("", NULL, 0, &c);
    assert_int_equal(pd_config_check_world(&c, 1), PD_OK);
    WORLD_ERR(c, 3, NAME ": training.mode: serial trains in one process (no mpirun, "
                    "or mpirun -n 1), got 3 ranks");
    const char *sync3[] = {"training.mode=sync", "training.servers=3"};
    load_ok("", sync3, 2, &c);
    WORLD_ERR(c, 3, NAME ": training.servers: 3 servers need at least 4 ranks "
                    "(3 servers + 1 worker), got 3");
    assert_int_equal(pd_config_check_world(&c, 4), PD_OK);
    const char *async1[] = {"training.mode=async"};
    load_ok("", async1, 1, &c);
    WORLD_ERR(c, 1, NAME ": training.mode: async runs under mpirun with at least 2 "
                    "ranks (1 server + workers), got 1 process");
    assert_int_equal(pd_config_check_world(&c, 2), PD_OK);
    const char *backup[] = {"training.mode=sync", "training.backup_workers=2"};
    load_ok("", backup, 2, &c);
    WORLD_ERR(c, 3, NAME ": training.backup_workers: must be < the number of "
                    "workers (2), got 2");
    assert_int_equal(pd_config_check_world(&c, 4), PD_OK);
    pd_config_defaults(&c);   /* no source: a placeholder names it */
    WORLD_ERR(c, 2, "<config>: training.mode: serial trains in one process "
                    "(no mpirun, or mpirun -n 1), got 2 ranks");
}

static void test_faults_parse(void **state)
{
    (void)state;
    pd_config c;
    /* Flow and block style, fields in any order, dotted. */
    load_ok("faults:\n  slow_workers: [{rank: 2, factor: 4}, {factor: 1.5, rank: 3}]\n",
            NULL, 0, &c);
    assert_int_equal(c.faults.n_slow_workers, 2);
    assert_int_equal(c.faults.slow_workers[0].rank, 2);
    assert_dbl(c.faults.slow_workers[0].factor, 4);
    assert_int_equal(c.faults.slow_workers[1].rank, 3);
    assert_dbl(c.faults.slow_workers[1].factor, 1.5);
    load_ok("faults:\n  slow_workers:\n    - rank: 4\n      factor: 2\n"
            "    - {rank: 1, factor: 1}\n  delay:\n    distribution: uniform\n"
            "    mean_ms: 0.5\n", NULL, 0, &c);
    assert_int_equal(c.faults.n_slow_workers, 2);
    assert_int_equal(c.faults.slow_workers[0].rank, 4);
    assert_dbl(c.faults.slow_workers[0].factor, 2);
    assert_int_equal(c.faults.slow_workers[1].rank, 1);
    assert_dbl(c.faults.slow_workers[1].factor, 1);
    assert_int_equal(c.faults.delay_distribution, PD_DELAY_UNIFORM);
    assert_dbl(c.faults.delay_mean_ms, 0.5);
    load_ok("faults.slow_workers:\n- rank: 9\n  factor: 3.25\n", NULL, 0, &c);
    assert_int_equal(c.faults.n_slow_workers, 1);
    assert_int_equal(c.faults.slow_workers[0].rank, 9);
    assert_dbl(c.faults.slow_workers[0].factor, 3.25);
    /* Empty and null lists; all 16 entries. */
    load_ok("faults:\n  slow_workers: []\n", NULL, 0, &c);
    assert_int_equal(c.faults.n_slow_workers, 0);
    load_ok("faults:\n  slow_workers:\n", NULL, 0, &c);
    assert_int_equal(c.faults.n_slow_workers, 0);
    char yaml[1024] = "faults:\n  slow_workers: [";
    for (int i = 1; i <= PD_MAX_SLOW; i++)
        snprintf(yaml + strlen(yaml), sizeof yaml - strlen(yaml), "%s{rank: %d, factor: %d}",
                 i > 1 ? ", " : "", i, i + 1);
    load_ok(strcat(yaml, "]\n"), NULL, 0, &c);
    assert_int_equal(c.faults.n_slow_workers, PD_MAX_SLOW);
    assert_int_equal(c.faults.slow_workers[15].rank, 16);
    assert_dbl(c.faults.slow_workers[15].factor, 17);
    const char *dists[] = {"none", "constant", "uniform", "exponential"};
    for (int d = 0; d < 4; d++) {
        char set[64];
        snprintf(set, sizeof set, "faults.delay.distribution=%s", dists[d]);
        const char *sets[] = {set, "faults.delay.mean_ms=3"};
        load_ok("", sets, 2, &c);
        assert_int_equal(c.faults.delay_distribution, d);
        assert_dbl(c.faults.delay_mean_ms, 3);
    }
    /* none ignores the mean; the others need one. */
    load_ok("faults: {delay: {distribution: none, mean_ms: 0}}\n", NULL, 0, &c);

    /* --set takes the list as YAML, replacing the file's. */
    const char *sets[] = {"faults.slow_workers=[{rank: 2, factor: 4}]",
                          "faults.delay.distribution=constant", "faults.delay.mean_ms=12.5"};
    load_ok("faults:\n  slow_workers: [{rank: 1, factor: 2}, {rank: 3, factor: 2}]\n",
            sets, 3, &c);
    assert_int_equal(c.faults.n_slow_workers, 1);
    assert_int_equal(c.faults.slow_workers[0].rank, 2);
    assert_dbl(c.faults.slow_workers[0].factor, 4);
    assert_int_equal(c.faults.delay_distribution, PD_DELAY_CONSTANT);
    assert_dbl(c.faults.delay_mean_ms, 12.5);
    const char *clear[] = {"faults.slow_workers="};
    load_ok("faults:\n  slow_workers: [{rank: 1, factor: 2}]\n", clear, 1, &c);
    assert_int_equal(c.faults.n_slow_workers, 0);
    assert_int_equal(c.faults.slow_workers[0].rank, 0);
}

/* training.phases: entries parsed into full "key=value" paths, written
 * back so they load the same, each phase's config resolved and checked,
 * refusals at the entry's key. (test_phases.py runs them.) */
static void test_phases(void **state)
{
    (void)state;
    static const char yaml[] =
        "training:\n  servers: 1\n  phases:\n"
        "    - {mode: async, epochs: 1, max_staleness: 2}\n"
        "    - mode: sync\n      max_updates: 50\n      optimizer: {lr: 0.05, schedule: {warmup: 3}}\n"
        "      optimizer.momentum: 0.5\n";
    pd_config c, p, again;
    load_ok(yaml, NULL, 0, &c);
    assert_int_equal(c.training.n_phases, 2);
    assert_int_equal(c.training.phases[0].n_sets, 3);
    assert_string_equal(c.training.phases[0].sets[0], "training.mode=async");
    assert_string_equal(c.training.phases[0].sets[2], "training.max_staleness=2");
    assert_string_equal(c.training.phases[1].sets[2], "optimizer.lr=0.05");
    assert_string_equal(c.training.phases[1].sets[3], "optimizer.schedule.warmup=3");
    assert_string_equal(c.training.phases[1].sets[4], "optimizer.momentum=0.5");
    assert_int_equal(c.training.phases[1].line, 5);
    assert_int_equal(c.training.phases[1].col, 7);
    assert_int_equal(c.training.mode, PD_MODE_ASYNC);   /* the first phase's */
    assert_int_equal(pd_config_phase(&c, 0, &p), PD_OK);
    assert_int_equal(p.training.mode, PD_MODE_ASYNC);
    assert_int_equal(p.training.epochs, 1);
    assert_int_equal(p.training.max_updates, 0);
    assert_int_equal(p.training.max_staleness, 2);
    assert_int_equal(p.training.n_phases, 0);
    assert_int_equal(pd_config_phase(&c, 1, &p), PD_OK);
    assert_int_equal(p.training.mode, PD_MODE_SYNC);
    assert_int_equal(p.training.epochs, 0);
    assert_int_equal(p.training.max_updates, 50);
    assert_int_equal(p.training.max_staleness, -1);   /* the run's, not phase 0's */
    assert_dbl(p.optimizer.lr, 0.05);
    assert_dbl(p.optimizer.momentum, 0.5);
    assert_int_equal(p.optimizer.schedule.warmup, 3);
    char *text = written(&c);
    assert_non_null(strstr(text, "  phases: [{mode: async, epochs: 1, max_staleness: 2}, "
                                 "{mode: sync, max_updates: 50, optimizer.lr: 0.05, "
                                 "optimizer.schedule.warmup: 3, optimizer.momentum: 0.5}]\n"));
    load_ok(text, NULL, 0, &again);
    free(text);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < c.training.phases[i].n_sets; j++)
            assert_string_equal(again.training.phases[i].sets[j], c.training.phases[i].sets[j]);
    /* Refusals: at the entry's key, or the entry. */
    ERR("training:\n  phases: [{mode: sync, epochs: 1, model: {type: mlp}}]\n",
        NAME ":2:36: training.phases[0].model: model keys are the whole run's: a phase sets "
        "training and optimizer keys only");
    ERR("training:\n  phases: [{mode: sync, epochs: 1, servers: 2}]\n",
        NAME ":2:36: training.phases[0].servers: is the same in every phase: set "
        "training.servers outside training.phases");
    ERR("training:\n  phases: [{mode: async, epochs: 1, optimizer: {dc_lambda_adaptive: true}}]\n",
        NAME ":2:49: training.phases[0].optimizer.dc_lambda_adaptive: is the same in every "
        "phase: set optimizer.dc_lambda_adaptive outside training.phases");
    ERR("training:\n  phases: [{mode: sync, epochs: 1, stalenes: 2}]\n",
        NAME ":2:36: training.phases[0].stalenes: unknown key (did you mean staleness_policy?)");
    ERR("training:\n  phases: [{epochs: 1}]\n",
        NAME ":2:12: training.phases[0]: missing mode (each phase names its mode)");
    ERR("training:\n  phases: [{mode: sync, epochs: 1}, {mode: local_sgd, epochs: 1, "
        "local_steps: 0}]\n",
        NAME ":2:79: training.phases[1].local_steps: must be >= 1, got 0");
    ERR("training:\n  phases: [{mode: sync, epochs: 1},\n           {mode: serial, epochs: 1}]\n",
        NAME ":3:12: training.phases[1].mode: serial is one process; a phase is one of the "
        "distributed modes (sync, async, hogwild, local_sgd, easgd)");
    ERR("optimizer:\n  name: cg\ntraining:\n  phases: [{mode: sync, epochs: 1}]\n",
        NAME ":2:9: optimizer.name: cg is a batch method; phases run the stochastic rules "
        "(training.phases is set)");
    ERR("training:\n  mode: async\n  trace: true\n  phases: [{mode: async, epochs: 1}]\n",
        NAME ":3:10: training.trace: a trace replays one async run; not with training.phases");
    /* The job's size, per phase: backup workers need more workers. */
    load_ok("training:\n  phases:\n    - {mode: async, epochs: 1}\n"
            "    - {mode: sync, epochs: 1, backup_workers: 2}\n", NULL, 0, &c);
    WORLD_ERR(c, 3, NAME ":4:7: training.phases[1] (mode sync): training.backup_workers: must be "
              "< the number of workers (2), got 2");
    assert_int_equal(pd_config_check_world(&c, 4), PD_OK);
}

static void test_faults_errors(void **state)
{
    (void)state;
    /* Inside an entry: unknown, duplicate and odd field names. */
    ERR("faults:\n  slow_workers: [{rank: 2, speed: 4}]\n",
        NAME ":2:28: faults.slow_workers[0].speed: unknown key");
    ERR("faults:\n  slow_workers: [{rank: 2, fator: 4}]\n",
        NAME ":2:28: faults.slow_workers[0].fator: unknown key (did you mean factor?)");
    ERR("faults:\n  slow_workers:\n    - rank: 2\n      factor: 4\n    - rnak: 3\n",
        NAME ":5:7: faults.slow_workers[1].rnak: unknown key (did you mean rank?)");
    ERR("faults:\n  slow_workers: [{rank: 2, rank: 3}]\n",
        NAME ":2:28: faults.slow_workers[0].rank: duplicate key (first at 2:19)");
    ERR("faults:\n  slow_workers: [{\"ra\\nk\": 2}]\n",
        NAME ":2:19: faults.slow_workers[0]: unknown key \"ra\\nk\"");
    ERR("faults:\n  slow_workers: [{[a]: 2}]\n",
        NAME ":2:19: faults.slow_workers[0]: keys must be names, got a list");
    /* Missing fields: at the entry. */
    ERR("faults:\n  slow_workers: [{rank: 2}]\n",
        NAME ":2:18: faults.slow_workers[0]: missing factor (each entry is {rank, factor})");
    ERR("faults:\n  slow_workers:\n    - rank: 2\n      factor: 4\n    - factor: 2\n",
        NAME ":5:7: faults.slow_workers[1]: missing rank (each entry is {rank, factor})");
    ERR("faults:\n  slow_workers: [{}]\n",
        NAME ":2:18: faults.slow_workers[0]: missing rank (each entry is {rank, factor})");
    /* Types and bounds, worded as for other keys, at the value. */
    ERR("faults:\n  slow_workers: [{rank: x, factor: 2}]\n",
        NAME ":2:25: faults.slow_workers[0].rank: expected an integer, got \"x\"");
    ERR("faults:\n  slow_workers: [{rank: 1.5, factor: 2}]\n",
        NAME ":2:25: faults.slow_workers[0].rank: expected an integer, got \"1.5\"");
    ERR("faults:\n  slow_workers: [{rank: 0, factor: 2}]\n",
        NAME ":2:25: faults.slow_workers[0].rank: must be >= 1, got 0");
    ERR("faults:\n  slow_workers: [{rank: 3000000000, factor: 2}]\n",
        NAME ":2:25: faults.slow_workers[0].rank: must be <= 2147483647, got 3000000000");
    ERR("faults:\n  slow_workers: [{rank: 2, factor: 0.5}]\n",
        NAME ":2:36: faults.slow_workers[0].factor: must be >= 1, got 0.5");
    ERR("faults:\n  slow_workers: [{rank: 2, factor: fast}]\n",
        NAME ":2:36: faults.slow_workers[0].factor: expected a number, got \"fast\"");
    ERR("faults:\n  slow_workers: [{rank: 2, factor: .inf}]\n",
        NAME ":2:36: faults.slow_workers[0].factor: expected a number, got \".inf\"");
    ERR("faults:\n  slow_workers: [{rank: 2, factor: 1e999}]\n",
        NAME ":2:36: faults.slow_workers[0].factor: expected a finite number, got \"1e999\"");
    ERR("faults:\n  slow_workers: [{rank: 2, factor: }]\n",
        NAME ":2:36: faults.slow_workers[0].factor: expected a number, got nothing");
    ERR("faults:\n  slow_workers: [{rank: 2, factor: [4]}]\n",
        NAME ":2:36: faults.slow_workers[0].factor: expected a number, got a list");
    ERR("faults:\n  slow_workers: [{rank: 2, factor: \"4\\0\"}]\n",
        NAME ":2:36: faults.slow_workers[0].factor: expected a number, got \"4\\x00\"");
    /* The list's shape, and each entry's. */
    ERR("faults:\n  slow_workers: 3\n",
        NAME ":2:17: faults.slow_workers: expected a list of {rank, factor} mappings, got \"3\"");
    ERR("faults:\n  slow_workers: {rank: 2, factor: 4}\n",
        NAME ":2:17: faults.slow_workers: expected a list of {rank, factor} mappings, "
        "got a mapping");
    ERR("faults:\n  slow_workers: [3]\n",
        NAME ":2:18: faults.slow_workers[0]: expected a mapping {rank, factor}, got \"3\"");
    ERR("faults:\n  slow_workers: [{rank: 2, factor: 4}, [1]]\n",
        NAME ":2:40: faults.slow_workers[1]: expected a mapping {rank, factor}, got a list");
    /* Each rank once: refused at the repeat. */
    ERR("faults:\n  slow_workers: [{rank: 2, factor: 4}, {rank: 2, factor: 3}]\n",
        NAME ":2:40: faults.slow_workers[1]: duplicate rank 2 (first at 2:18)");
    ERR("faults:\n  slow_workers:\n    - rank: 2\n      factor: 4\n    - rank: 3\n"
        "      factor: 4\n    - factor: 1\n      rank: 2\n",
        NAME ":7:7: faults.slow_workers[2]: duplicate rank 2 (first at 3:7)");
    char yaml[1024] = "faults:\n  slow_workers: [";
    for (int i = 1; i <= PD_MAX_SLOW + 1; i++)
        snprintf(yaml + strlen(yaml), sizeof yaml - strlen(yaml), "%s{rank: %d, factor: 2}",
                 i > 1 ? ", " : "", i);
    ERR(strcat(yaml, "]\n"), NAME ":2:17: faults.slow_workers: at most 16 entries, got 17");
    /* The delay. */
    ERR("faults:\n  delay:\n    distribution: uniform\n    mean_ms: 0\n",
        NAME ":4:14: faults.delay.mean_ms: must be > 0 for the uniform delay, got 0");
    ERR("faults:\n  delay: {distribution: exponential}\n",
        NAME ":2:25: faults.delay.distribution: exponential needs faults.delay.mean_ms > 0 "
        "(the default is 0)");
    ERR("faults:\n  delay: {mean_ms: -1}\n",
        NAME ":2:20: faults.delay.mean_ms: must be >= 0, got -1");
    ERR("faults:\n  delay: {distribution: normal}\n",
        NAME ":2:25: faults.delay.distribution: must be one of: none, constant, uniform, "
        "exponential; got \"normal\"");
    ERR("faults:\n  delay: 5\n",
        NAME ":2:10: faults.delay: expected a mapping of keys, got \"5\"");
    /* The same through --set, which has no positions. */
    ERR_SET("", "--set faults.slow_workers=[{rank: 2, factor: 4}, {rank: 2, factor: 1}]: "
            "faults.slow_workers[1]: duplicate rank 2 (first at [0])",
            "faults.slow_workers=[{rank: 2, factor: 4}, {rank: 2, factor: 1}]");
    ERR_SET("", "--set faults.slow_workers=[{rank: 2}]: faults.slow_workers[0]: missing "
            "factor (each entry is {rank, factor})", "faults.slow_workers=[{rank: 2}]");
    ERR_SET("", "--set faults.slow_workers={rank: 2, speed: 1}: faults.slow_workers: "
            "expected a list of {rank, factor} mappings, got a mapping",
            "faults.slow_workers={rank: 2, speed: 1}");
    ERR_SET("", "--set faults.slow_workers=[{rank: 2, factor: 0}]: "
            "faults.slow_workers[0].factor: must be >= 1, got 0",
            "faults.slow_workers=[{rank: 2, factor: 0}]");
    ERR_SET("faults:\n  delay:\n    distribution: constant\n    mean_ms: 4\n",
            "--set faults.delay.mean_ms=0: faults.delay.mean_ms: must be > 0 for the "
            "constant delay, got 0", "faults.delay.mean_ms=0");
    ERR_SET("", "--set faults.slow_workers[0].factor=2: faults.slow_workers[0].factor: "
            "unknown key (did you mean slow_workers?)", "faults.slow_workers[0].factor=2");
}

static void test_faults_world(void **state)
{
    (void)state;
    pd_config c;
    const char *slow = "faults:\n  slow_workers: [{rank: 2, factor: 4}, {rank: 7, factor: 2}]\n";
    const char *sync[] = {"training.mode=sync"};
    load_ok(slow, sync, 1, &c);
    WORLD_ERR(c, 3, NAME ": faults.slow_workers: rank 7 is not a worker rank "
                    "(workers are ranks 1..2)");
    assert_int_equal(pd_config_check_world(&c, 8), PD_OK);
    /* The last rank is a worker; the one past it is not. */
    WORLD_ERR(c, 7, NAME ": faults.slow_workers: rank 7 is not a worker rank "
                    "(workers are ranks 1..6)");
    /* Servers are not workers. */
    const char *two[] = {"training.mode=async", "training.servers=2",
                         "faults.slow_workers=[{rank: 1, factor: 2}]"};
    load_ok("", two, 3, &c);
    WORLD_ERR(c, 4, NAME ": faults.slow_workers: rank 1 is not a worker rank "
                    "(workers are ranks 2..3)");
    const char *one[] = {"training.mode=hogwild", "faults.slow_workers=[{rank: 2, factor: 2}]"};
    load_ok("", one, 2, &c);
    WORLD_ERR(c, 2, NAME ": faults.slow_workers: rank 2 is not a worker rank "
                    "(the only worker is rank 1)");
    assert_int_equal(pd_config_check_world(&c, 3), PD_OK);
    /* Serial: no faults at all. */
    load_ok("faults:\n  slow_workers: [{rank: 1, factor: 2}]\n", NULL, 0, &c);
    WORLD_ERR(c, 1, NAME ": faults.slow_workers: faults apply to the distributed "
                    "modes (training.mode is serial)");
    load_ok("faults:\n  delay: {distribution: exponential, mean_ms: 1}\n", NULL, 0, &c);
    WORLD_ERR(c, 1, NAME ": faults.delay.distribution: faults apply to the "
                    "distributed modes (training.mode is serial)");
    const char *dist[] = {"training.mode=local_sgd"};
    load_ok("faults:\n  delay: {distribution: exponential, mean_ms: 1}\n", dist, 1, &c);
    assert_int_equal(pd_config_check_world(&c, 2), PD_OK);
    /* The world's size is checked before the faults. */
    load_ok("faults:\n  slow_workers: [{rank: 1, factor: 2}]\n", NULL, 0, &c);
    WORLD_ERR(c, 2, NAME ": training.mode: serial trains in one process (no mpirun, "
                    "or mpirun -n 1), got 2 ranks");
}

static void test_faults_slow_factor(void **state)
{
    (void)state;
    pd_config c;
    load_ok("faults:\n  slow_workers: [{rank: 2, factor: 4}, {rank: 5, factor: 1.25}]\n",
            NULL, 0, &c);
    assert_dbl(pd_faults_slow_factor(&c.faults, 2), 4);
    assert_dbl(pd_faults_slow_factor(&c.faults, 5), 1.25);
    assert_dbl(pd_faults_slow_factor(&c.faults, 1), 1);
    assert_dbl(pd_faults_slow_factor(&c.faults, 3), 1);
    assert_dbl(pd_faults_slow_factor(&c.faults, 0), 1);
    pd_config_defaults(&c);
    assert_dbl(pd_faults_slow_factor(&c.faults, 0), 1);
    assert_dbl(pd_faults_slow_factor(&c.faults, 1), 1);
}

/* data.curriculum: its defaults, values, and one bad value per key. */
static void test_curriculum_keys(void **state)
{
    (void)state;
    pd_config c;
    pd_config_defaults(&c);
    assert_int_equal(c.data.curriculum.type, PD_CURRICULUM_NONE);
    assert_int_equal(c.data.curriculum.warmup_updates, 200);
    assert_dbl(c.data.curriculum.start, 0.25);
    assert_int_equal(c.data.curriculum.epochs, 3);
    assert_false(c.data.curriculum.stochastic);
    assert_str(c.data.curriculum.column, "");
    load_ok(every_key, NULL, 0, &c);
    assert_int_equal(c.data.curriculum.type, PD_CURRICULUM_LOSS);
    assert_str(c.data.curriculum.column, "score");
    assert_int_equal(c.data.curriculum.warmup_updates, 0);
    assert_dbl(c.data.curriculum.start, 0.1);
    assert_int_equal(c.data.curriculum.epochs, 5);
    assert_true(c.data.curriculum.stochastic);
    const char *set[] = {"data.curriculum.type=loss", "data.curriculum.start=1"};
    load_ok("", set, 2, &c);
    assert_int_equal(c.data.curriculum.type, PD_CURRICULUM_LOSS);
    assert_dbl(c.data.curriculum.start, 1);

    ERR("data:\n  curriculum:\n    type: easy\n",
        NAME ":3:11: data.curriculum.type: must be one of: none, loss, column; got \"easy\"");
    const char *col[] = {"data.format=csv", "data.train=t.csv", "data.curriculum.type=column",
                         "data.curriculum.column=s"};
    load_ok("", col, 4, &c);
    assert_int_equal(c.data.curriculum.type, PD_CURRICULUM_COLUMN);
    assert_str(c.data.curriculum.column, "s");
    ERR("data:\n  curriculum:\n    type: column\n    column: s\n",
        NAME ":3:11: data.curriculum.type: column needs data.format csv (data.format is idx)");
    ERR("data:\n  format: libsvm\n  train: t.svm\n  curriculum:\n    type: column\n"
        "    column: s\n",
        NAME ":5:11: data.curriculum.type: column needs data.format csv "
        "(data.format is libsvm)");
    ERR("data:\n  format: csv\n  train: t.csv\n  curriculum:\n    type: column\n",
        NAME ":5:11: data.curriculum.type: column needs data.curriculum.column, the score "
        "column");
    ERR("data:\n  format: csv\n  train: t.csv\n  label_column: y\n  curriculum:\n"
        "    type: column\n    column: y\n",
        NAME ":7:13: data.curriculum.column: \"y\" is the label column (data.label_column)");
    ERR("data:\n  format: csv\n  train: t.csv\n  curriculum:\n    type: column\n"
        "    column: 0\n",
        NAME ":6:13: data.curriculum.column: \"0\" is the label column (data.label_column)");
    ERR("data:\n  curriculum:\n    warmup_updates: -1\n",
        NAME ":3:21: data.curriculum.warmup_updates: must be >= 0, got -1");
    ERR("data:\n  curriculum:\n    start: 0\n",
        NAME ":3:12: data.curriculum.start: must be in (0, 1], got 0");
    ERR("data:\n  curriculum:\n    start: 1.5\n",
        NAME ":3:12: data.curriculum.start: must be in (0, 1], got 1.5");
    ERR("data:\n  curriculum:\n    epochs: 0\n",
        NAME ":3:13: data.curriculum.epochs: must be >= 1, got 0");
    ERR("data:\n  curriculum:\n    stochastic: sometimes\n",
        NAME ":3:17: data.curriculum.stochastic: expected true or false, got \"sometimes\"");
    ERR("data:\n  curriculum:\n    typ: loss\n",
        NAME ":3:5: data.curriculum.typ: unknown key (did you mean type?)");
}

static void test_reference(void **state)
{
    (void)state;
    char *ref = written(NULL);
    pd_config loaded, defaults;
    load_ok(ref, NULL, 0, &loaded);
    pd_config_defaults(&defaults);
    assert_same_config(loaded, defaults);
    /* Every key is there, its doc (then only comments) on the lines above it. */
    for (int i = 0; i < PD_KEY_COUNT; i++) {
        const pd_key *k = &pd_keys[i];
        char line[256];
        snprintf(line, sizeof line, "# %s", k->doc);
        const char *at = strstr(ref, line);
        if (!at)
            fail_msg("no doc for %s", k->path);
        snprintf(line, sizeof line, "%s: ", strrchr(k->path, '.') + 1);
        for (;;) {
            at = strchr(at, '\n');
            if (!at)
                break;
            at += 1 + strspn(at + 1, " ");
            if (*at != '#')
                break;
        }
        if (!at || strncmp(at, line, strlen(line)) != 0)
            fail_msg("%s does not follow its doc", k->path);
    }
    assert_non_null(strstr(ref, "  # (default serial; allowed: serial, sync, async, hogwild, "
                                "local_sgd, easgd)\n  mode: serial\n"));
    assert_non_null(strstr(ref, "  lr: default\n"));
    /* A map list documents its fields, with their bounds, above it. */
    assert_non_null(strstr(ref, "  # (default []; at most 16 entries, each with:)\n"
                                "  # - rank: a worker's MPI rank, each listed once (required; "
                                ">= 1)\n  # - factor: divides its rate of gradients "
                                "(required; >= 1)\n  slow_workers: []\n"));
    free(ref);
}

static void test_quote_and_helpers(void **state)
{
    (void)state;
    char buf[64];
    pd_quote(buf, sizeof buf, "a\"b\\c\n\x01", 7, 0);
    assert_str(buf, "\"a\\\"b\\\\c\\n\\x01\"");
    pd_quote(buf, sizeof buf, "abcdef", 6, 3);
    assert_str(buf, "\"abc...\"");
    pd_quote(buf, sizeof buf, "ab\xc3\xa9z", 5, 3);   /* never splits a UTF-8 character */
    assert_str(buf, "\"ab...\"");
    char small[16];   /* escapes that overflow the buffer are cut visibly too */
    pd_quote(small, sizeof small, "\x01\x02\x03\x04", 4, 0);
    assert_str(small, "\"\\x01\\x02...\"");
    assert_int_equal(pd_edit_distance("epochz", "epochs", 2), 1);
    assert_int_equal(pd_edit_distance("epchz", "epochs", 2), 2);
    assert_int_equal(pd_edit_distance("abc", "xyzw", 2), 3);
    char hint[96];
    pd_key_suggest("optimizer.nmae", hint, sizeof hint);
    assert_str(hint, " (did you mean name?)");
    pd_key_suggest("optimizer.schedul.type", hint, sizeof hint);
    assert_str(hint, " (did you mean schedule?)");
    pd_key_suggest("qqq", hint, sizeof hint);
    assert_str(hint, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_documented),
        cmocka_unit_test(test_every_type_parses),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_bad_enum),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_enums_and_lists),
        cmocka_unit_test(test_cross_key_rules),
        cmocka_unit_test(test_check_world),
        cmocka_unit_test(test_faults_parse),
        cmocka_unit_test(test_faults_errors),
        cmocka_unit_test(test_phases),
        cmocka_unit_test(test_faults_world),
        cmocka_unit_test(test_faults_slow_factor),
        cmocka_unit_test(test_curriculum_keys),
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_quote_and_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
