/* paramd configuration: a YAML file plus `--set key.path=value` overrides,
 * parsed against one declarative table of keys (type, default, bounds,
 * allowed values, doc) into a plain value struct. The same table drives
 * validation, --set, config.resolved.yaml and conf/reference.yaml.
 * YAML keys mirror struct fields: optimizer.lr <-> cfg->optimizer.lr.
 */
#ifndef PARAMD_CONFIG_H
#define PARAMD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PD_PATH_MAX 512
#define PD_MAX_HIDDEN 8
#define PD_MAX_SLOW 16

typedef enum { PD_FMT_IDX, PD_FMT_CSV, PD_FMT_LIBSVM } pd_data_format;
typedef enum { PD_NORM_NONE, PD_NORM_SCALE01, PD_NORM_STANDARDIZE } pd_normalize;
typedef enum { PD_SHUFFLE_NONE, PD_SHUFFLE_ONCE, PD_SHUFFLE_EVERY_EPOCH } pd_shuffle;
typedef enum { PD_SHARD_STRIDED, PD_SHARD_CONTIGUOUS } pd_shard;
typedef enum { PD_DELIM_COMMA, PD_DELIM_SEMICOLON, PD_DELIM_TAB } pd_delimiter;
typedef enum { PD_CURRICULUM_NONE, PD_CURRICULUM_LOSS, PD_CURRICULUM_COLUMN } pd_curriculum_type;
typedef enum { PD_MODEL_SOFTMAX, PD_MODEL_MLP, PD_MODEL_LINREG, PD_MODEL_LOGREG,
               PD_MODEL_SVM } pd_model_type;
typedef enum { PD_ACT_RELU, PD_ACT_TANH, PD_ACT_SIGMOID } pd_activation;
/* auto: He for relu, Glorot otherwise; zero: all zeros (linear models). */
typedef enum { PD_INIT_AUTO, PD_INIT_HE, PD_INIT_GLOROT, PD_INIT_ZERO } pd_init;
typedef enum { PD_MODE_SERIAL, PD_MODE_SYNC, PD_MODE_ASYNC, PD_MODE_HOGWILD,
               PD_MODE_LOCAL_SGD, PD_MODE_EASGD } pd_mode;
typedef enum { PD_STALE_WAIT, PD_STALE_DROP } pd_staleness_policy;
typedef enum { PD_OPT_SGD, PD_OPT_MOMENTUM, PD_OPT_NESTEROV, PD_OPT_ADAGRAD,
               PD_OPT_RMSPROP, PD_OPT_RMSPROP_NESTEROV, PD_OPT_ADADELTA,
               PD_OPT_ADAM, PD_OPT_ADAMW,
               /* batch methods (src/batch/): full-batch gradients, line search */
               PD_OPT_CG, PD_OPT_BFGS, PD_OPT_LBFGS, PD_OPT_CD,
               /* vSGD: element-wise, but takes a curvature estimate beside g */
               PD_OPT_VSGD, PD_OPT_COUNT } pd_optimizer_name;
/* Nonlinear conjugate gradient's beta: Polak-Ribiere with the PR+ restart
 * (beta = max(0, beta_PR)), or Fletcher-Reeves. */
typedef enum { PD_CG_PR_PLUS, PD_CG_FR } pd_cg_variant;
typedef enum { PD_BLOCKS_CYCLIC, PD_BLOCKS_RANDOM } pd_block_order;
typedef enum { PD_SCHED_CONSTANT, PD_SCHED_STEP, PD_SCHED_EXPONENTIAL,
               PD_SCHED_INVERSE_TIME, PD_SCHED_COSINE } pd_schedule_type;
/* How an async server corrects a stale gradient: not at all, lr / tau
 * (inverse), or delay compensation (dc, Zheng et al. 2017). */
typedef enum { PD_SCOMP_NONE, PD_SCOMP_INVERSE, PD_SCOMP_DC } pd_staleness_comp;
/* What a straggler's factor multiplies: its whole cycle (compute and
 * communication, its own unslowed rate), or its compute time only. */
typedef enum { PD_SLOW_CYCLE, PD_SLOW_COMPUTE } pd_slow_basis;
typedef enum { PD_DELAY_NONE, PD_DELAY_CONSTANT, PD_DELAY_UNIFORM,
               PD_DELAY_EXPONENTIAL } pd_delay_distribution;

typedef struct pd_run_config {
    uint64_t seed;
    char out_dir[PD_PATH_MAX];
    int blas_threads;              /* OPENBLAS_NUM_THREADS per rank */
} pd_run_config;

/* Curriculum learning (Bengio et al. 2009): examples scored easy to hard,
 * the easiest share admitted first, growing to all of them; the schedule
 * and the stochastic ("mixed") rule are in paramd/data.h. */
typedef struct pd_curriculum_config {
    pd_curriculum_type type;       /* none; loss: scored by a warmed-up model;
                                      column: scores read from a CSV column */
    char column[64];               /* column: header name or 0-based index */
    int64_t warmup_updates;        /* loss: plain SGD steps of the scoring model */
    double start;                  /* fraction admitted in epoch 0, (0, 1] */
    int epochs;                    /* epochs until all are admitted, >= 1 */
    bool stochastic;               /* mix random hard examples in (Zaremba & Sutskever) */
} pd_curriculum_config;

typedef struct pd_data_config {
    pd_data_format format;
    char train[PD_PATH_MAX];
    char train_labels[PD_PATH_MAX];  /* idx only */
    char test[PD_PATH_MAX];          /* "" = no test set */
    char test_labels[PD_PATH_MAX];
    char label_column[64];           /* csv: header name or 0-based index */
    bool header;                     /* csv: first line is a header */
    pd_delimiter delimiter;          /* csv: between fields */
    char classes[PD_PATH_MAX];       /* class names in class order, comma-separated;
                                        "" = from the labels (data.c) */
    double validation_fraction;
    pd_normalize normalize;
    pd_shuffle shuffle;
    pd_shard shard;
    pd_curriculum_config curriculum;
} pd_data_config;

typedef struct pd_model_config {
    pd_model_type type;
    int features;                  /* 0 = from the data */
    int classes;                   /* 0 = from the data (softmax, mlp) */
    int hidden[PD_MAX_HIDDEN];     /* mlp hidden layer widths */
    int n_hidden;
    pd_activation activation;
    pd_init init;
    double l2;                     /* L2 penalty on weights, part of the loss */
    char init_from[PD_PATH_MAX];   /* a run directory to start from, "" = none */
} pd_model_config;

typedef struct pd_schedule_config {
    pd_schedule_type type;
    int64_t step_size;             /* step: updates between decays */
    double gamma;                  /* step, exponential: decay factor */
    double decay;                  /* inverse_time: lr / (1 + decay t) */
    double min_lr;                 /* cosine: floor */
    int64_t warmup;                /* linear warmup updates (0 = none) */
} pd_schedule_config;

typedef struct pd_optim_config {
    pd_optimizer_name name;
    /* NAN in the fields below means "the rule's default"; config resolution
     * replaces them by pd_optim_defaults(), so a loaded config has numbers. */
    double lr, momentum, rho, eps, beta1, beta2;
    double weight_decay;           /* coupled (L2 into g), decoupled for adamw */
    double clip_norm;              /* 0 = off; global norm over all shards */
    double clip_value;             /* 0 = off */
    pd_schedule_config schedule;
    double noise;                  /* annealed noise eta: sigma_t^2 = noise/(1+t)^noise_gamma */
    double noise_gamma;
    pd_staleness_comp staleness_compensation;
    double dc_lambda;              /* dc: g + dc_lambda g*g (theta_now - theta_stale) */
    bool dc_lambda_adaptive;       /* dc: lambda / sqrt(moving mean of g*g + 1e-7) per coordinate */
    double dc_decay;               /* that moving mean's decay m */
    /* batch methods (cg, bfgs, lbfgs; lr is the first trial step) */
    int64_t batch_examples;        /* the first N training examples; 0 = all */
    int bfgs_max_params;           /* bfgs refuses larger models */
    int history;                   /* lbfgs memory m */
    pd_cg_variant cg_variant;
    double grad_tol;               /* stop when |grad| <= grad_tol */
    double loss_tol;               /* stop when the relative loss decrease <= loss_tol */
    int block_size;                /* cd: coordinates minimized together */
    pd_block_order block_order;    /* cd: blocks in order, or shuffled each cycle */
    int vsgd_bound_layers;         /* vsgd: layers whose curvature is the row bound */
    int vsgd_row_layers;           /* vsgd: layers whose curvature is each row's along
                                      its own gradient (the Rayleigh quotient) */
    double vsgd_slow;              /* vsgd: the slow start's C; 0 = max(2, D/10) */
    double vsgd_memory;            /* vsgd: tau's largest value; 0 = unbounded */
} pd_optim_config;

/* One entry of training.phases: the keys it sets, as "path=value" with the
 * full key path ("training.mode=async", "optimizer.lr=0.05"), and where the
 * entry is in the config file (line 0: it came from --set). */
#define PD_MAX_PHASES 8
#define PD_MAX_PHASE_SETS 12
#define PD_PHASE_SET_LEN 96
typedef struct pd_phase {
    char sets[PD_MAX_PHASE_SETS][PD_PHASE_SET_LEN];
    int n_sets;
    int line, col;
} pd_phase;

typedef struct pd_training_config {
    pd_mode mode;
    int servers;
    int epochs;
    int64_t max_updates;           /* 0 = no limit */
    int batch_size;                /* per worker */
    bool drop_last;
    int backup_workers;
    int max_staleness;             /* -1 = unbounded */
    pd_staleness_policy staleness_policy;
    int server_threads;
    int local_steps;
    double elastic_alpha;
    int64_t eval_every;            /* updates; 0 = once per epoch */
    double eval_every_seconds;     /* also after this much wall time; 0 = off */
    bool eval_wait;                /* a due evaluation waits for the running one
                                      (else it is skipped and counted) */
    double worker_timeout;         /* s of silence before a worker is lost; 0 = off */
    bool trace;
    int early_stopping_patience;   /* evaluations without improvement; 0 = off */
    int64_t max_bad_updates;       /* NaN/Inf gradients tolerated before failing */
    int64_t max_iterations;        /* batch methods: iterations (line searches) */
    pd_phase phases[PD_MAX_PHASES];   /* run one after another (pd_config_phase) */
    int n_phases;
} pd_training_config;

typedef struct pd_checkpoint_config {
    int64_t every_updates;         /* 0 = off */
    double every_seconds;          /* 0 = off */
    int keep;
} pd_checkpoint_config;

/* A straggler: worker `rank` produces gradients at 1/factor of its own
 * unslowed rate (faults.slow_basis: cycle), or takes factor times its
 * compute time per gradient (compute). */
typedef struct pd_slow_worker {
    int rank;                      /* an MPI worker rank, >= 1 */
    double factor;                 /* >= 1 */
} pd_slow_worker;

typedef struct pd_faults_config {
    pd_slow_worker slow_workers[PD_MAX_SLOW];   /* distinct ranks */
    int n_slow_workers;
    pd_slow_basis slow_basis;
    /* A random delay before each gradient message a worker sends: constant,
     * uniform on [0, 2 mean] or exponential, of mean delay_mean_ms. */
    pd_delay_distribution delay_distribution;
    double delay_mean_ms;          /* > 0 unless the distribution is none */
} pd_faults_config;

typedef struct pd_config {
    pd_run_config run;
    pd_data_config data;
    pd_model_config model;
    pd_training_config training;
    pd_optim_config optimizer;
    pd_checkpoint_config checkpoint;
    pd_faults_config faults;
    char source[PD_PATH_MAX];      /* the file it was loaded from */
} pd_config;

/* Fill cfg with every default (a valid config on its own). Local. */
void pd_config_defaults(pd_config *cfg);

/* Load path, apply the overrides ("key.path=value" strings, in order),
 * validate every key and cross-key rule, and resolve rule defaults.
 * On error returns PD_EINPUT with one message
 * "FILE:LINE:COL: key.path: what is wrong" (or "--set key.path=value: ...").
 * Local; cfg is only valid on PD_OK. */
int pd_config_load(const char *path, const char *const *overrides, int n_overrides,
                   pd_config *cfg);

/* Same from an in-memory YAML text; `name` stands for the file in messages. */
int pd_config_load_string(const char *name, const char *yaml,
                          const char *const *overrides, int n_overrides,
                          pd_config *cfg);

/* Cross-key checks that need the job's size (ranks = 1 for serial). */
int pd_config_check_world(const pd_config *cfg, int ranks);

/* The configuration of phase i of cfg->training.phases: cfg with the
 * phase's keys set (epochs or max_updates the phase does not give are 0),
 * no phases, every rule checked; a refusal is PD_EINPUT naming
 * training.phases[i].KEY at the entry's place in the file. Local. */
int pd_config_phase(const pd_config *cfg, int i, pd_config *out);

/* The slow-down factor of worker `rank`: its faults.slow_workers factor,
 * 1.0 when it is not listed. Local. */
double pd_faults_slow_factor(const pd_faults_config *f, int rank);

/* Write every key with its effective value as YAML (config.resolved.yaml);
 * loading it back gives an identical pd_config (minus `source`). */
int pd_config_write(const pd_config *cfg, FILE *out);

/* Write the documented reference (every key, default, allowed values, doc). */
int pd_config_write_reference(FILE *out);

/* Names of enum values as written in YAML ("sync", "adam", ...). */
const char *pd_mode_name(pd_mode m);
const char *pd_optimizer_name_str(pd_optimizer_name n);
const char *pd_model_type_name(pd_model_type t);

#endif
