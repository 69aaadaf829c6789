/* The evaluating side of every mode (the serial process, server 0):
 * validation and test metrics on the current parameters, the run
 * directory's files, the progress line, early stopping with the best
 * parameters kept aside. Runs once per evaluation, never per update,
 * except the rate-limited status heartbeat. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "paramd/error.h"
#include "paramd/use.h"
#include "train.h"

#define EVAL_BATCH 1000
#define HEARTBEAT_S 2.0

struct pd_evaluator {
    const pd_config *cfg;
    pd_run_opts opts;
    int workers, servers;
    pd_data *data;                 /* validation and test parts */
    const pd_dataset *valid, *test;
    pd_model *model;
    size_t nparams, ntensors;
    const char *names[PD_MAX_TENSORS];
    double *pnorm, *gnorm;         /* [ntensors] */
    pd_metrics *metrics;
    double t0, last_status;
    bool tty;
    /* early stopping */
    float *best;                   /* [nparams] when patience > 0 */
    double best_loss;
    int64_t best_update;
    int bad_evals;
    char resumed_from[PD_PATH_MAX + 64];   /* --resume: the checkpoint's path */
    int64_t resumed_update;
    /* checkpoint pauses (summary.json's checkpoint_pause_s) */
    int64_t pauses;
    double pause_sum, pause_max;
    /* latest evaluation */
    int64_t last_update;           /* update it was made at, -1 before */
    pd_eval last_valid, last_test;
    pd_metrics_row last_row;
    char sha[65];                  /* of the parameters finish wrote */
    /* result files: a metrics row that could not be written stops the run
     * (its message kept for the end); status.json failures only warn */
    int io_err;
    char io_msg[1024];
    bool status_warned;
    /* training.phases: the current phase (mode NULL: none), the entries of
     * those that ended, and the run's totals when the current one began */
    int phase, nphases;
    const char *phase_mode;
    pd_phase_summary phases[PD_MAX_PHASES];
    int phases_done;
    const pd_config *run;          /* config.resolved.yaml's (phases: the run's) */
    int64_t ph_update, ph_sent, ph_applied, ph_dropped, ph_bad;
    double ph_epoch, ph_wall, ph_stale;
};

/* The run directory's file `name`, written atomically from what one of the
 * two writers below prints. */
static int write_file(pd_evaluator *ev, const char *name, bool layout)
{
    char *text = NULL, path[1100];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return PD_FAIL(PD_ENOMEM, "%s: cannot allocate", name);
    int err = layout ? pd_use_write_layout(ev->cfg, ev->model, ev->data, f)
                     : pd_config_write(ev->run, f);
    if (err == PD_OK && !layout && ev->resumed_from[0])   /* a comment: loads the same */
        fprintf(f, "# --resume: continued from the checkpoint %s (update %lld)\n",
                ev->resumed_from, (long long)ev->resumed_update);
    fclose(f);
    if (err == PD_OK)
        err = pd_metrics_path(ev->metrics, name, path, sizeof path);
    if (err == PD_OK)
        err = pd_write_atomic(path, text, len);
    free(text);
    return err;
}

static int write_resolved_config(pd_evaluator *ev)
{
    return write_file(ev, "config.resolved.yaml", false);
}

/* params.json: the layout of params.bin (paramd/use.h). */
static int write_layout(pd_evaluator *ev) { return write_file(ev, "params.json", true); }

/* A resume whose checkpoints are in run.out_dir itself continues that run
 * there; any other run must not find an earlier run's results in it. */
static bool continues_in_place(const pd_config *cfg, const pd_run_opts *opts)
{
    struct stat a, b;
    return opts->resume && opts->resume_dir && stat(opts->resume_dir, &a) == 0 &&
           stat(cfg->run.out_dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Binary labels other than 0/1 and -1/+1 (liblinear's 1/2, names): say
 * which one the run takes as positive. */
static void say_positive(const pd_evaluator *ev)
{
    size_t n;
    const char *const *names = pd_data_class_names(ev->data, &n);
    pd_model_type t = ev->cfg->model.type;
    if (ev->opts.quiet || (t != PD_MODEL_LOGREG && t != PD_MODEL_SVM) || n != 2 ||
        !strcmp(names[1], "1"))
        return;
    printf("labels: \"%s\" is the positive class (+1), \"%s\" the negative (-1)\n",
           names[1], names[0]);
}

int pd_evaluator_create(const pd_config *cfg, const pd_run_opts *opts, int workers,
                        int servers, pd_evaluator **out)
{
    *out = NULL;
    pd_evaluator *ev = pd_calloc(1, sizeof *ev);
    if (!ev)
        return PD_ENOMEM;
    int err = PD_OK;
    ev->cfg = cfg;
    ev->run = cfg;
    ev->opts = *opts;
    ev->workers = workers;
    ev->servers = servers;
    ev->t0 = pd_now();
    ev->best_loss = INFINITY;
    ev->best_update = -1;
    /* Under mpirun, rank output goes through a pseudo-terminal even when
     * the job's own output is a log file: print plain lines there. */
    ev->tty = servers == 0 && isatty(STDOUT_FILENO);
    ev->last_update = -1;
    PD_TRY_GOTO(err, pd_data_load(cfg, 0, 1, PD_PART_VALID | PD_PART_TEST, &ev->data), fail);
    ev->valid = pd_data_part(ev->data, PD_PART_VALID);
    ev->test = pd_data_part(ev->data, PD_PART_TEST);
    if (ev->valid && ev->valid->n == 0)
        ev->valid = NULL;
    if (ev->test && ev->test->n == 0)
        ev->test = NULL;
    say_positive(ev);
    PD_TRY_GOTO(err, pd_model_create_for(&cfg->model, ev->data, EVAL_BATCH, &ev->model), fail);
    ev->nparams = pd_model_nparams(ev->model);
    ev->ntensors = pd_model_ntensors(ev->model);
    for (size_t i = 0; i < ev->ntensors; i++)
        ev->names[i] = pd_model_tensor(ev->model, i)->name;
    ev->pnorm = pd_calloc(ev->ntensors, sizeof *ev->pnorm);
    ev->gnorm = pd_calloc(ev->ntensors, sizeof *ev->gnorm);
    if (!ev->pnorm || !ev->gnorm) {
        err = PD_ENOMEM;
        goto fail;
    }
    if (cfg->training.early_stopping_patience > 0) {
        ev->best = pd_malloc(ev->nparams * sizeof *ev->best);
        if (!ev->best) {
            err = PD_ENOMEM;
            goto fail;
        }
    }
    PD_TRY_GOTO(err, pd_metrics_open(cfg->run.out_dir, continues_in_place(cfg, opts),
                                     &ev->metrics), fail);
    PD_TRY_GOTO(err, write_resolved_config(ev), fail);
    *out = ev;
    return PD_OK;
fail:
    pd_evaluator_destroy(&ev);
    return err;
}

void pd_evaluator_destroy(pd_evaluator **pev)
{
    pd_evaluator *ev = pev ? *pev : NULL;
    if (!ev)
        return;
    pd_metrics_close(&ev->metrics);
    free(ev->best);
    free(ev->gnorm);
    free(ev->pnorm);
    pd_model_destroy(&ev->model);
    pd_data_destroy(&ev->data);
    free(ev);
    *pev = NULL;
}

double pd_evaluator_wall(const pd_evaluator *ev) { return pd_now() - ev->t0; }

void pd_evaluator_get_state(const pd_evaluator *ev, pd_eval_state *out)
{
    *out = (pd_eval_state){
        .wall_s = pd_now() - ev->t0, .pause_sum = ev->pause_sum, .pause_max = ev->pause_max,
        .pauses = ev->pauses, .best_loss = ev->best_loss, .best_update = ev->best_update,
        .bad_evals = ev->bad_evals, .last_eval = ev->last_update, .best = ev->best,
        .nbest = ev->best ? ev->nparams : 0,
    };
}

int pd_evaluator_set_state(pd_evaluator *ev, const pd_eval_state *in)
{
    if (in->nbest && in->nbest != ev->nparams)
        return PD_FAIL(PD_EINPUT, "checkpoint: best parameters of %zu floats, the model has %zu",
                       in->nbest, ev->nparams);
    ev->t0 -= in->wall_s;
    ev->pause_sum = in->pause_sum;
    ev->pause_max = in->pause_max;
    ev->pauses = in->pauses;
    ev->best_loss = in->best_loss;
    ev->best_update = in->best_update;
    ev->bad_evals = (int)in->bad_evals;
    ev->last_update = in->last_eval;
    if (ev->best && in->nbest)
        memcpy(ev->best, in->best, in->nbest * sizeof *ev->best);
    if (!in->from)
        return PD_OK;
    snprintf(ev->resumed_from, sizeof ev->resumed_from, "%s", in->from);
    ev->resumed_update = in->from_update;
    return write_resolved_config(ev);
}

void pd_evaluator_note_pause(pd_evaluator *ev, double s)
{
    ev->pauses++;
    ev->pause_sum += s;
    if (s > ev->pause_max)
        ev->pause_max = s;
}

int pd_evaluator_sha(const pd_evaluator *ev, char hex[65])
{
    if (!ev->sha[0])
        return PD_FAIL(PD_EIO, "no parameters written yet");
    memcpy(hex, ev->sha, 65);
    return PD_OK;
}

/* status.json is a heartbeat for people and schedulers: a failed rewrite
 * (a full disk, an NFS hiccup) is reported once and training goes on. */
static void write_status(pd_evaluator *ev, const char *phase, const pd_metrics_row *r)
{
    if (pd_metrics_status(ev->metrics, phase, r) == PD_OK || ev->status_warned)
        return;
    ev->status_warned = true;
    fprintf(stderr, "paramd: warning: %s; training goes on (later failures of status.json "
            "are not reported)\n", pd_err_msg());
    pd_err_clear();
}

static void fill_row(pd_evaluator *ev, const pd_progress *p, pd_metrics_row *r)
{
    memset(r, 0, sizeof *r);
    r->wall_s = pd_evaluator_wall(ev);
    r->update = p->update;
    r->epoch = p->epoch;
    r->examples = p->examples;
    r->lr = p->lr;
    r->train_loss = p->train_loss;
    r->valid_loss = ev->valid ? ev->last_valid.loss : NAN;
    r->valid_acc = ev->valid ? ev->last_valid.accuracy : NAN;
    r->test_loss = ev->test ? ev->last_test.loss : NAN;
    r->test_acc = ev->test ? ev->last_test.accuracy : NAN;
    if (ev->cfg->model.type == PD_MODEL_LINREG) {
        /* For regression, "acc" columns carry nothing; RMSE is in the loss. */
        r->valid_acc = r->test_acc = NAN;
    }
    r->staleness_mean = p->staleness_mean;
    r->staleness_max = p->staleness_max;
    r->dropped = p->dropped;
    r->lost = p->lost;
    r->n_lost = p->n_lost;
    r->evaluations = p->evaluations;
    r->line_search_steps = p->line_search_steps;
    r->phase = ev->phase;
    r->phase_mode = ev->phase_mode;
}

static double eta_seconds(const pd_evaluator *ev, const pd_progress *p, double wall)
{
    /* With phases: of the current one, from its start (its max_updates
     * count from the run's start, its epochs from the phase's). */
    const pd_training_config *t = &ev->cfg->training;
    int64_t u0 = ev->phase_mode ? ev->ph_update : 0;
    double e0 = ev->phase_mode ? ev->ph_epoch : 0;
    wall -= ev->phase_mode ? ev->ph_wall : 0;
    double done = NAN;
    if (t->max_updates > u0)
        done = (double)(p->update - u0) / (double)(t->max_updates - u0);
    if (t->epochs > 0) {
        double e = (p->epoch - e0) / t->epochs;
        done = isnan(done) || e > done ? e : done;
    }
    return done > 0 ? wall * (1.0 / done - 1.0) : NAN;
}

static void progress(pd_evaluator *ev, const pd_progress *p, const pd_metrics_row *r)
{
    if (ev->opts.quiet)
        return;
    double ups = r->wall_s > 0 ? (double)p->update / r->wall_s : 0;
    double eta = eta_seconds(ev, p, r->wall_s);
    if (ev->phase_mode)
        printf("%sphase %d %s  ", ev->tty ? "\r\033[K" : "", ev->phase, ev->phase_mode);
    printf("%sepoch %.2f  update %lld  %.0f upd/s  train %.4f  test %.4f  acc %.4f  ETA %.0fs%s",
           ev->tty && !ev->phase_mode ? "\r\033[K" : "", p->epoch, (long long)p->update, ups, p->train_loss,
           r->test_loss, r->test_acc, isnan(eta) ? 0 : eta, ev->tty ? "" : "\n");
    fflush(stdout);
}

static void final_line(pd_evaluator *ev, const pd_summary *s)
{
    if (ev->opts.quiet)
        return;
    printf("%sdone (%s): %lld updates, %.2f epochs in %.1f s, %.0f examples/s, "
           "test loss %.4f, test acc %.4f\n", ev->tty ? "\r\033[K" : "", s->exit,
           (long long)s->updates, s->epochs, s->wall_s, s->examples_per_s, s->test_loss,
           s->test_acc);
    fflush(stdout);
}

int pd_evaluator_eval(pd_evaluator *ev, const float *theta, const pd_progress *p, bool *stop)
{
    *stop = false;
    if (ev->valid)
        PD_TRY(pd_model_eval(ev->model, theta, ev->valid, &ev->last_valid));
    if (ev->test)
        PD_TRY(pd_model_eval(ev->model, theta, ev->test, &ev->last_test));
    pd_metrics_row *r = &ev->last_row;
    fill_row(ev, p, r);
    pd_model_tensor_norms(ev->model, theta, ev->pnorm);
    r->ntensors = ev->ntensors;
    r->tensor_names = ev->names;
    r->param_norms = ev->pnorm;
    if (p->grad_norms) {
        memcpy(ev->gnorm, p->grad_norms, ev->ntensors * sizeof *ev->gnorm);
        r->grad_norms = ev->gnorm;
    } else if (p->grad) {
        pd_model_tensor_norms(ev->model, p->grad, ev->gnorm);
        r->grad_norms = ev->gnorm;
    }
    /* A row that cannot be written (after the retries inside) stops the
     * run as early stopping would, so the results are still written. */
    if (!ev->io_err && pd_metrics_append(ev->metrics, r) != PD_OK) {
        ev->io_err = PD_EIO;
        snprintf(ev->io_msg, sizeof ev->io_msg, "%s", pd_err_msg());
        pd_err_clear();
    }
    if (ev->io_err)
        *stop = true;
    write_status(ev, "training", r);
    ev->last_update = p->update;
    ev->last_status = pd_now();
    progress(ev, p, r);

    if (ev->best && ev->valid) {
        if (ev->last_valid.loss < ev->best_loss) {
            ev->best_loss = ev->last_valid.loss;
            ev->best_update = p->update;
            ev->bad_evals = 0;
            memcpy(ev->best, theta, ev->nparams * sizeof *theta);
        } else if (++ev->bad_evals >= ev->cfg->training.early_stopping_patience) {
            *stop = true;
        }
    }
    return PD_OK;
}

int pd_evaluator_heartbeat(pd_evaluator *ev, const pd_progress *p)
{
    double now = pd_now();
    if (now - ev->last_status < HEARTBEAT_S)
        return PD_OK;
    ev->last_status = now;
    pd_metrics_row r;
    fill_row(ev, p, &r);
    write_status(ev, "training", &r);
    return PD_OK;
}

void pd_evaluator_set_phase(pd_evaluator *ev, const pd_config *cfg, int index, int count)
{
    ev->cfg = cfg;
    ev->phase = index;
    ev->nphases = count;
    ev->phase_mode = pd_mode_name(cfg->training.mode);
}

void pd_evaluator_phase_state(const pd_evaluator *ev, pd_phase_record *r)
{
    r->n_done = ev->phases_done;
    memcpy(r->done, ev->phases, (size_t)ev->phases_done * sizeof *r->done);
    r->start = (pd_phase_marks){
        .update = ev->ph_update, .epoch = ev->ph_epoch, .wall_s = ev->ph_wall,
        .sent = ev->ph_sent, .applied = ev->ph_applied, .dropped = ev->ph_dropped,
        .bad = ev->ph_bad, .stale = ev->ph_stale,
    };
}

void pd_evaluator_set_phase_state(pd_evaluator *ev, const pd_phase_record *r)
{
    ev->phases_done = r->n_done;
    memcpy(ev->phases, r->done, (size_t)r->n_done * sizeof *ev->phases);
    const pd_phase_marks *m = &r->start;
    ev->ph_update = m->update;
    ev->ph_epoch = m->epoch;
    ev->ph_wall = m->wall_s;
    ev->ph_sent = m->sent;
    ev->ph_applied = m->applied;
    ev->ph_dropped = m->dropped;
    ev->ph_bad = m->bad;
    ev->ph_stale = m->stale;
}

/* The current phase's entry from the run's totals now, which the next
 * phase starts from. */
static void phase_entry(pd_evaluator *ev, const pd_progress *p, const pd_run_stats *rs,
                        const char *exit)
{
    if (!ev->phase_mode || ev->phases_done >= PD_MAX_PHASES)
        return;
    int64_t dropped = rs->dropped_stale + rs->dropped_late + rs->dropped_at_stop;
    double stale = isfinite(p->staleness_mean) ? p->staleness_mean * (double)rs->applied : 0;
    int64_t applied = rs->applied - ev->ph_applied;
    double wall = pd_evaluator_wall(ev);
    bool lin = ev->cfg->model.type == PD_MODEL_LINREG;
    ev->phases[ev->phases_done++] = (pd_phase_summary){
        .index = ev->phase, .mode = ev->phase_mode, .exit = exit,
        .first_update = ev->ph_update, .last_update = p->update,
        .epochs = p->epoch - ev->ph_epoch, .wall_s = wall - ev->ph_wall,
        .sent = rs->sent - ev->ph_sent, .applied = applied,
        .dropped = dropped - ev->ph_dropped, .bad = rs->bad - ev->ph_bad,
        .staleness_mean = applied > 0 ? round(stale - ev->ph_stale) / (double)applied : NAN,
        .valid_loss = ev->valid ? ev->last_valid.loss : NAN,
        .valid_acc = ev->valid && !lin ? ev->last_valid.accuracy : NAN,
        .test_loss = ev->test ? ev->last_test.loss : NAN,
        .test_acc = ev->test && !lin ? ev->last_test.accuracy : NAN,
    };
    ev->ph_update = p->update;
    ev->ph_epoch = p->epoch;
    ev->ph_wall = wall;
    ev->ph_sent = rs->sent;
    ev->ph_applied = rs->applied;
    ev->ph_dropped = dropped;
    ev->ph_bad = rs->bad;
    ev->ph_stale = stale;
}

int pd_evaluator_phase_end(pd_evaluator *ev, const float *theta, const pd_progress *p,
                           const pd_run_stats *rs, const char *exit)
{
    if (ev->last_update != p->update) {
        bool stop;
        PD_TRY(pd_evaluator_eval(ev, theta, p, &stop));
    }
    phase_entry(ev, p, rs, exit);
    return PD_OK;
}

int pd_evaluator_finish(pd_evaluator *ev, float *theta, const pd_progress *p,
                        const pd_run_stats *rs, const char *exit)
{
    if (ev->last_update != p->update) {
        bool stop;
        PD_TRY(pd_evaluator_eval(ev, theta, p, &stop));
    }
    if (rs)
        phase_entry(ev, p, rs, exit);
    if (ev->best && ev->best_update >= 0) {
        memcpy(theta, ev->best, ev->nparams * sizeof *theta);
        if (ev->valid)
            PD_TRY(pd_model_eval(ev->model, theta, ev->valid, &ev->last_valid));
        if (ev->test)
            PD_TRY(pd_model_eval(ev->model, theta, ev->test, &ev->last_test));
    }
    if (ev->io_err)
        exit = "io_error";
    pd_metrics_row r;
    fill_row(ev, p, &r);
    pd_summary s = {
        /* a run with phases: "phases" (each phase's mode is in its entry) */
        .mode = ev->phase_mode ? "phases" : pd_mode_name(ev->cfg->training.mode),
        .optimizer = pd_optimizer_name_str(ev->cfg->optimizer.name),
        .exit = exit,
        .workers = ev->workers,
        .servers = ev->servers,
        .updates = p->update,
        .epochs = p->epoch,
        .wall_s = r.wall_s,
        .examples_per_s = r.wall_s > 0 ? (double)p->examples / r.wall_s : NAN,
        .test_loss = r.test_loss,
        .test_acc = r.test_acc,
        .valid_loss = r.valid_loss,
        .valid_acc = r.valid_acc,
        .dropped = p->dropped,
        .staleness_mean = p->staleness_mean,
        .staleness_max = p->staleness_max,
        .best_update = ev->best ? ev->best_update : -1,
        .lost = p->lost, .n_lost = p->n_lost,
        .dropped_stale = -1, .dropped_late = -1, .dropped_at_stop = -1,
        .applied = p->update, .sent = -1, .bad = -1, .server_cpu_s = NAN,
        .server_loop_cpu_s = NAN, .params_sent_floats = -1,
        .iterations = p->update, .evaluations = p->evaluations, .stop_reason = p->stop_reason,
        .ckpt_pauses = ev->pauses, .ckpt_pause_sum = ev->pause_sum,
        .ckpt_pause_max = ev->pause_max,
        .phases = ev->phases, .n_phases = ev->phase_mode ? ev->phases_done : 0,
    };
    if (rs) {
        s.staleness_hist = rs->stale_hist;
        s.staleness_hist_n = rs->stale_hist_n;
        s.applied = rs->applied;
        s.sent = rs->sent;
        s.bad = rs->bad;
        s.dropped_stale = rs->dropped_stale;
        s.dropped_late = rs->dropped_late;
        s.dropped_at_stop = rs->dropped_at_stop;
        s.server_applied = rs->server_applied;
        s.server_bad = rs->server_bad;
        s.server_dropped = rs->server_dropped;
        s.server_applied_set = rs->server_applied_set;
        s.n_servers_stats = rs->n_servers;
        s.server_cpu_s = rs->server_cpu_s;
        s.server_loop_cpu_s = rs->server_loop_cpu_s;
        s.params_sent_floats = rs->params_sent_floats;
        s.evals_skipped = rs->evals_skipped;
        s.workers_stats = rs->workers;
        s.n_workers_stats = rs->n_workers;
    }
    /* linreg has a known answer: how far the final parameters are from it */
    if (ev->cfg->model.type == PD_MODEL_LINREG) {
        PD_TRY(pd_batch_linreg_gap(ev->cfg, theta, &s.optimality_gap));
        s.has_gap = true;
    }
    int err = pd_metrics_write_params(ev->metrics, theta, ev->nparams, s.params_sha256);
    if (err == PD_OK)
        err = write_layout(ev);
    if (err == PD_OK) {
        memcpy(ev->sha, s.params_sha256, sizeof ev->sha);
        err = pd_metrics_summary(ev->metrics, &s);
    }
    if (ev->io_err) {
        /* One line: the first failure, and whether the results made it. */
        char then[1024];
        snprintf(then, sizeof then, "%s", err == PD_OK ? "" : pd_err_msg());
        if (err == PD_OK)
            return PD_FAIL(ev->io_err, "%s; the run stopped at update %lld with params.bin and "
                           "summary.json written", ev->io_msg, (long long)p->update);
        return PD_FAIL(ev->io_err, "%s; the run stopped at update %lld, and its results could "
                       "not be written either (%s)", ev->io_msg, (long long)p->update, then);
    }
    if (err != PD_OK)
        return err;
    write_status(ev, exit, &r);
    final_line(ev, &s);
    return PD_OK;
}
