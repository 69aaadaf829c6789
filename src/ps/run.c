/* Entry points of the ps module: resolve the model's shape from the data,
 * then train in-process (serial) or start MPI and take this rank's role.
 * Errors found while ranks set up are agreed on collectively, so one rank
 * reports them and every rank exits with the same status; errors while
 * training abort the job with the error's exit status. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "checkpoint.h"
#include "comm.h"
#include "driver.h"
#include "paramd/data.h"
#include "paramd/metrics.h"
#include "paramd/model.h"
#include "paramd/optim.h"
#include "paramd/ps.h"
#include "serial.h"
#include "server.h"
#include "train.h"

/* Fill model.features / model.classes from the data when they are 0. */
static int resolve_shape(pd_config *cfg)
{
    if (cfg->model.features > 0 && (cfg->model.classes > 0 ||
                                    cfg->model.type == PD_MODEL_LINREG ||
                                    cfg->model.type == PD_MODEL_LOGREG ||
                                    cfg->model.type == PD_MODEL_SVM))
        return PD_OK;
    pd_data *d = NULL;
    PD_TRY(pd_data_load(cfg, 0, 1, 0, &d));
    cfg->model.features = (int)pd_data_features(d);
    if (cfg->model.classes == 0)
        cfg->model.classes = pd_data_classes(d);
    pd_data_destroy(&d);
    return PD_OK;
}

/* MPI counts are int: a server's range goes out as (hi - lo) floats, and a
 * sparse model's payload as 12 (hi - lo) + 8 bytes (comm.h). A model whose
 * largest server range does not fit is refused here, before anything is
 * sent, rather than overflowing a count. */
static int check_counts(const pd_config *cfg)
{
    if (cfg->training.mode == PD_MODE_SERIAL)
        return PD_OK;
    pd_model *m = NULL;
    PD_TRY(pd_model_create(&cfg->model, 1, &m));
    size_t n = pd_model_nparams(m);
    bool sparse = pd_model_is_sparse(m);
    pd_model_destroy(&m);
    int S = cfg->training.servers > 0 ? cfg->training.servers : 1;   /* 0: W ranges, each smaller */
    size_t range = 0;
    for (int s = 0; s < S; s++) {
        size_t lo, hi;
        pd_server_range(n, S, s, &lo, &hi);
        range = hi - lo > range ? hi - lo : range;
    }
    size_t limit = sparse ? ((size_t)INT_MAX - 8) / 12 : (size_t)INT_MAX;
    if (range <= limit)
        return PD_OK;
    size_t need = (n + limit - 1) / limit;
    return PD_FAIL(PD_EINPUT, "%s: model.features: %zu parameters over %d server%s is %zu per "
                   "server; MPI counts are int, so one server holds at most %zu parameters of "
                   "a %s model (set training.servers to at least %zu)",
                   cfg->source[0] ? cfg->source : "<config>", n, S, S == 1 ? "" : "s", range,
                   limit, sparse ? "sparse" : "dense", need);
}

/* What --check reports, gathered once and printed as text or JSON. */
typedef struct check_facts {
    int ranks, servers, workers;   /* workers 0: not known until launched */
    int min_ranks;                 /* the job needs at least this many */
    size_t params, n_train, n_valid, n_test;
    bool sparse;
    const char *const *names;      /* class names (pd_data_class_names) */
    size_t nnames;
} check_facts;

/* The labels, when they are not plain class ids: which binary label is
 * positive, or the class names in order (the first ten). */
static void check_labels(FILE *out, const pd_config *cfg, const check_facts *k)
{
    bool binary = cfg->model.type == PD_MODEL_LOGREG || cfg->model.type == PD_MODEL_SVM;
    if (binary && k->nnames == 2) {
        fprintf(out, "labels:     \"%s\" negative (-1), \"%s\" positive (+1)\n", k->names[0],
                k->names[1]);
        return;
    }
    bool ids = true;
    for (size_t i = 0; i < k->nnames; i++) {
        char id[32];
        snprintf(id, sizeof id, "%zu", i);
        ids &= !strcmp(id, k->names[i]);
    }
    if (ids)
        return;
    fputs("classes:   ", out);
    for (size_t i = 0; i < k->nnames && i < 10; i++)
        fprintf(out, " %zu \"%s\"%s", i, k->names[i], i + 1 < k->nnames ? "," : "");
    fputs(k->nnames > 10 ? " ...\n" : "\n", out);
}

static void check_text(FILE *out, const pd_config *cfg, const check_facts *k)
{
    fprintf(out, "config:     %s (valid)\n", cfg->source);
    fprintf(out, "mode:       %s", pd_mode_name(cfg->training.mode));
    if (cfg->training.mode != PD_MODE_SERIAL && k->workers > 0)
        fprintf(out, ", %d server%s + %d worker%s", k->servers, k->servers == 1 ? "" : "s",
                k->workers, k->workers == 1 ? "" : "s");
    else if (cfg->training.mode != PD_MODE_SERIAL)
        fprintf(out, ", needs mpirun -n N with N >= %d (%d server%s + workers)", k->min_ranks,
                k->servers, k->servers == 1 ? "" : "s");
    fprintf(out, "\nmodel:      %s, %d features, %d classes, %zu parameters\n",
            pd_model_type_name(cfg->model.type), cfg->model.features, cfg->model.classes,
            k->params);
    fprintf(out, "optimizer:  %s, lr %g\n", pd_optimizer_name_str(cfg->optimizer.name),
            cfg->optimizer.lr);
    fprintf(out, "data:       %zu train, %zu validation, %zu test examples%s\n", k->n_train,
            k->n_valid, k->n_test, k->sparse ? " (sparse)" : "");
    check_labels(out, cfg, k);
    if (cfg->training.n_phases == 0)
        fprintf(out, "training:   %d epochs, batch %d per worker, out_dir %s\n",
                cfg->training.epochs, cfg->training.batch_size, cfg->run.out_dir);
    else
        fprintf(out, "training:   %d phases, batch %d per worker, out_dir %s\n",
                cfg->training.n_phases, cfg->training.batch_size, cfg->run.out_dir);
    for (int i = 0; i < cfg->training.n_phases; i++) {   /* "phase 0:    mode=async, ..." */
        const pd_phase *ph = &cfg->training.phases[i];
        fprintf(out, "phase %d:%*s", i, i < 10 ? 4 : 3, "");
        for (int j = 0; j < ph->n_sets; j++) {
            const char *set = ph->sets[j];
            fprintf(out, "%s%s", j ? ", " : "", strncmp(set, "training.", 9) ? set : set + 9);
        }
        fputc('\n', out);
    }
}

/* One line, one object; "workers" is null until the job's size says. */
static void check_json(FILE *out, const pd_config *cfg, const check_facts *k)
{
    fputs("{\"config\":", out);
    pd_metrics_json_string(out, cfg->source);
    fputs(",\"mode\":", out);
    pd_metrics_json_string(out, pd_mode_name(cfg->training.mode));
    fprintf(out, ",\"ranks\":%d,\"servers\":%d,\"workers\":", k->ranks, k->servers);
    if (k->workers > 0)
        fprintf(out, "%d", k->workers);
    else
        fputs("null", out);
    fprintf(out, ",\"min_ranks\":%d,\"model\":{\"type\":", k->min_ranks);
    pd_metrics_json_string(out, pd_model_type_name(cfg->model.type));
    fprintf(out, ",\"features\":%d,\"classes\":%d,\"parameters\":%zu},\"optimizer\":{\"name\":",
            cfg->model.features, cfg->model.classes, k->params);
    pd_metrics_json_string(out, pd_optimizer_name_str(cfg->optimizer.name));
    fprintf(out, ",\"lr\":%.9g},\"data\":{\"train\":%zu,\"validation\":%zu,\"test\":%zu,"
            "\"sparse\":%s},\"training\":{\"epochs\":%d,\"batch_size\":%d},\"out_dir\":",
            cfg->optimizer.lr, k->n_train, k->n_valid, k->n_test, k->sparse ? "true" : "false",
            cfg->training.epochs, cfg->training.batch_size);
    pd_metrics_json_string(out, cfg->run.out_dir);
    fputs("}\n", out);
}

int pd_ps_check(const pd_config *in, int ranks, bool json, FILE *out)
{
    pd_config cfg = *in;
    PD_TRY(resolve_shape(&cfg));
    PD_TRY(check_counts(&cfg));
    pd_data *d = NULL;
    PD_TRY(pd_data_load(&cfg, 0, 1, PD_PART_TRAIN | PD_PART_VALID | PD_PART_TEST, &d));
    pd_model *m = NULL;
    int err = pd_model_create(&cfg.model, 1, &m);
    if (err == PD_OK && out) {
        const pd_dataset *tr = pd_data_part(d, PD_PART_TRAIN);
        const pd_dataset *va = pd_data_part(d, PD_PART_VALID);
        const pd_dataset *te = pd_data_part(d, PD_PART_TEST);
        bool serial = cfg.training.mode == PD_MODE_SERIAL;
        int servers = serial ? 0 : cfg.training.servers;
        int min_ranks = serial ? 1 : servers > 0 ? servers + 1 : 2;   /* 0: workers serve */
        check_facts k = {
            .ranks = ranks, .servers = servers,
            .workers = serial ? 1 : ranks >= min_ranks ? ranks - servers : 0,
            .min_ranks = min_ranks, .params = pd_model_nparams(m),
            .n_train = tr ? tr->n : 0, .n_valid = va ? va->n : 0, .n_test = te ? te->n : 0,
            .sparse = tr && tr->sparse,
        };
        k.names = pd_data_class_names(d, &k.nnames);
        (json ? check_json : check_text)(out, &cfg, &k);
    }
    pd_model_destroy(&m);
    pd_data_destroy(&d);
    return err;
}

/* Does the run (or any of its phases) use hogwild's serving threads? */
static bool uses_hogwild(const pd_config *cfg)
{
    bool any = cfg->training.mode == PD_MODE_HOGWILD;
    for (int i = 0; i < cfg->training.n_phases; i++) {
        pd_config *pc = pd_malloc(sizeof *pc);
        if (!pc)
            return true;   /* asking for more than needed costs nothing */
        any |= pd_config_phase(cfg, i, pc) != PD_OK || pc->training.mode == PD_MODE_HOGWILD;
        free(pc);
    }
    return any;
}

static int init_world(const pd_config *cfg, pd_world *w)
{
    int provided;
    int want = uses_hogwild(cfg) ? MPI_THREAD_MULTIPLE : MPI_THREAD_FUNNELED;
    if (MPI_Init_thread(NULL, NULL, want, &provided) != MPI_SUCCESS)
        return PD_FAIL(PD_EMPI, "MPI_Init_thread failed");
    PD_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    /* The rank first: pd_comm_agree lets only the lowest failing rank
     * print, and every rank fails this check alike. */
    PD_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &w->rank));
    PD_MPI(MPI_Comm_size(MPI_COMM_WORLD, &w->size));
    if (provided < want)
        return PD_FAIL(PD_EMPI, "training.mode hogwild needs MPI_THREAD_MULTIPLE; this MPI "
                       "library provides level %d", provided);
    w->servers = cfg->training.servers;
    w->workers = w->size - w->servers;
    w->is_server = w->rank < w->servers;
    w->index = w->is_server ? w->rank : w->rank - w->servers;
    PD_MPI(MPI_Comm_split(MPI_COMM_WORLD, w->is_server ? 0 : MPI_UNDEFINED, w->rank,
                          &w->servers_comm));
    return PD_OK;
}

/* Quiet end: a non-blocking barrier waited on without spinning, so ranks
 * that finish early do not burn a core inside MPI_Finalize. */
static int finish_world(pd_world *w)
{
    /* Under mpirun --enable-recovery a rank may be gone: a barrier would
     * wait for it for ever, and so can MPI_Finalize (Open MPI 4.1's fence
     * waits for a rank that ended without finalizing): every rank just
     * ends, its messages complete. */
    if (pd_comm_recovery())
        return PD_OK;
    MPI_Request r;
    PD_MPI(MPI_Ibarrier(MPI_COMM_WORLD, &r));
    PD_TRY(pd_comm_wait(&r, NULL));
    if (w->servers_comm != MPI_COMM_NULL)
        MPI_Comm_free(&w->servers_comm);
    PD_MPI(MPI_Finalize());
    return PD_OK;
}

/* training.phases (paramd/phase.h runs the sequence): this rank's role.
 * Only the phase --resume continues reads the checkpoint. A stop signal
 * (server 0 takes it) ends the run at that phase's end on every rank. */
typedef struct phase_ctx {
    const pd_run_opts *opts;
    pd_world *w;
} phase_ctx;

static int phase_role(const pd_config *cfg, pd_phase_carry *c, void *ctx)
{
    phase_ctx *x = ctx;
    pd_run_opts o = *x->opts;
    o.resume = c->record != NULL;
    int err = x->w->is_server ? pd_server_phase(cfg, &o, x->w, c)
                              : pd_worker_phase(cfg, &o, x->w, c);
    if (err != PD_OK && err != PD_ESTOPPED)
        return err;
    int stop = err == PD_ESTOPPED, any = 0;
    PD_MPI(MPI_Allreduce(&stop, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    c->stop = any != 0;
    return err;
}

/* --resume of a run with phases, rank 0: the record of the newest valid
 * checkpoint (the servers pick the same set after, and say which damaged
 * ones they skipped). */
static int phase_record_read(const pd_config *cfg, const pd_run_opts *opts, const pd_world *w,
                             unsigned char **buf, size_t *size)
{
    char dir[PD_PATH_MAX + 32];
    PD_TRY(pd_ckpt_dir(opts->resume_dir, dir, sizeof dir));
    pd_model *m = NULL;
    PD_TRY(pd_model_create(&cfg->model, 1, &m));
    uint64_t layout, config;
    int err = pd_ckpt_hashes(m, cfg, w->workers, &layout, &config);
    pd_model_destroy(&m);
    PD_TRY(err);
    FILE *quiet = fopen("/dev/null", "w");
    pd_ckpt_part p;
    err = pd_ckpt_find(dir, 0, layout, config, quiet, &p);
    if (quiet)
        fclose(quiet);
    PD_TRY(err);
    uint64_t t = p.updates;
    pd_ckpt_part_free(&p);
    return pd_phase_record_load(dir, t, buf, size);
}

/* Every rank: the record rank 0 read, sent to all and decoded. */
static int phase_resume(const pd_config *cfg, const pd_run_opts *opts, pd_world *w,
                        pd_phase_record *rec)
{
    unsigned char *buf = NULL;
    size_t size = 0;
    int err = w->rank == 0 ? phase_record_read(cfg, opts, w, &buf, &size) : PD_OK;
    err = pd_comm_agree(w, err);
    unsigned long long n = size;
    if (err == PD_OK)
        err = MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD) == MPI_SUCCESS
              ? PD_OK : PD_FAIL(PD_EMPI, "MPI_Bcast of the phase record's size failed");
    if (err == PD_OK && w->rank != 0 && !(buf = pd_malloc((size_t)n + 1)))
        err = PD_ENOMEM;
    if (err == PD_OK && n > INT_MAX)
        err = PD_FAIL(PD_EINPUT, "phase record of %llu bytes", n);
    if (err == PD_OK)
        err = MPI_Bcast(buf, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD) == MPI_SUCCESS
              ? PD_OK : PD_FAIL(PD_EMPI, "MPI_Bcast of the phase record failed");
    if (err == PD_OK) {
        char name[PD_PATH_MAX + 64];
        if (pd_ckpt_dir(opts->resume_dir, name, sizeof name) == PD_OK)
            strncat(name, "/ckpt-*.phase", sizeof name - strlen(name) - 1);
        err = pd_phase_record_decode(name, buf, (size_t)n, rec);
    }
    free(buf);
    if (err == PD_OK && (rec->count != cfg->training.n_phases || rec->workers != w->workers)) {
        err = PD_FAIL(PD_EINPUT, "%s: checkpoint taken in phase %d of %d with %d workers; this "
                      "run has %d phases and %d workers", opts->resume_dir, rec->index,
                      rec->count, rec->workers, cfg->training.n_phases, w->workers);
        pd_phase_record_free(rec);
    }
    return pd_comm_agree(w, err);
}

static int run_phases(const pd_config *cfg, const pd_run_opts *opts, pd_world *w)
{
    pd_phase_record rec = {0};
    if (opts->resume)
        PD_TRY(phase_resume(cfg, opts, w, &rec));
    int err = pd_phase_run(cfg, opts->resume ? &rec : NULL, phase_role,
                           &(phase_ctx){opts, w});
    pd_phase_record_free(&rec);
    return err;
}

int pd_ps_run(const pd_config *in, const pd_run_opts *opts)
{
    pd_config cfg = *in;
    pd_model_blas_threads(cfg.run.blas_threads);
    bool batch = pd_optim_is_batch(cfg.optimizer.name);   /* src/batch/ drives it */
    if (cfg.training.mode == PD_MODE_SERIAL && cfg.training.n_phases == 0) {
        PD_TRY(resolve_shape(&cfg));
        return batch ? pd_batch_serial(&cfg, opts) : pd_serial_run(&cfg, opts);
    }
    /* Linux rounds sleeps up to the timer slack (50 us by default); the
     * sleep-polling waits want microseconds. Failure only costs latency. */
    (void)prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
    pd_world w = {.servers_comm = MPI_COMM_NULL};
    int err = init_world(&cfg, &w);
    /* Every rank resolves the same shape from the same files. */
    if (err == PD_OK)
        err = resolve_shape(&cfg);
    if (err == PD_OK)
        err = check_counts(&cfg);
    err = pd_comm_agree(&w, err);
    if (err == PD_OK && cfg.training.n_phases > 0)
        err = run_phases(&cfg, opts, &w);
    else if (err == PD_OK && batch)
        err = pd_batch_sync(&cfg, opts, &w);
    else if (err == PD_OK)
        err = w.servers == 0 ? pd_colocated_run(&cfg, opts, &w)
              : w.is_server ? pd_server_run(&cfg, opts, &w) : pd_worker_run(&cfg, opts, &w);
    if (err == PD_ESTOPPED) {
        /* Server 0 after a stop signal: the run ended as usual, with its
         * checkpoint and summary.json; exit 143 once every rank is done. */
        fprintf(stderr, "paramd: %s\n", pd_err_msg());
        fflush(stderr);
        return finish_world(&w) == PD_OK ? PD_ESTOPPED : PD_EMPI;
    }
    if (err != PD_OK && w.setup_failed) {
        /* Agreed by every rank: the lowest failing one explains, all exit. */
        if (*pd_err_msg())
            fprintf(stderr, "paramd: %s\n", pd_err_msg());
        finish_world(&w);
        return err;
    }
    if (err != PD_OK) {
        if (*pd_err_msg())
            fprintf(stderr, "paramd: rank %d: %s\n", w.rank, pd_err_msg());
        if (getenv("PARAMD_DEBUG"))
            fputs(pd_err_where(), stderr);
        fflush(stderr);
        /* Under mpirun --enable-recovery an MPI_Abort does not end the
         * others and can leave mpirun waiting for ever: this rank just
         * ends, and the others see a lost rank. */
        if (!pd_comm_recovery())
            MPI_Abort(MPI_COMM_WORLD, pd_exit_status(err));
        return err;
    }
    return finish_world(&w);
}
