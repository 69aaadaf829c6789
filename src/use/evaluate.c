/* paramd --evaluate and --predict: a finished run's model (its
 * config.resolved.yaml and params.bin, shaped as its params.json says) on
 * a test file. The data is read as the run read it (the training file
 * again, for the class names and the normalization statistics), with the
 * model's feature and class counts imposed, so a file that does not fit
 * is refused with the file, the line and both numbers. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <inttypes.h>
#include <sys/stat.h>

#include "paramd/ckpt.h"
#include "paramd/error.h"
#include "paramd/metrics.h"
#include "paramd/use.h"

#define CHUNK 1000

/* Everything --evaluate and --predict work on. */
typedef struct run {
    pd_config cfg;
    pd_data *data;
    const pd_dataset *test;
    pd_model *model;
    float *theta;
    const char *const *names;   /* class names in class order */
    size_t nnames;
    size_t K;                   /* outputs per example */
    int64_t ckpt_update;        /* the checkpoint's update, or -1 (params.bin) */
} run;

static void run_free(run *r)
{
    free(r->theta);
    pd_model_destroy(&r->model);
    pd_data_destroy(&r->data);
}

static bool is_binary(pd_model_type t) { return t == PD_MODEL_LOGREG || t == PD_MODEL_SVM; }

/* A run without params.bin (stopped by a signal, killed) that wrote
 * checkpoints: its newest valid one, as --resume would find it (same
 * config and layout hashes; cfg as the run resolved it). */
static int params_from_checkpoint(const char *run_dir, const pd_config *cfg, run *r, size_t n)
{
    char cdir[PD_PATH_MAX + 32];
    snprintf(cdir, sizeof cdir, "%s/checkpoints", run_dir);
    pd_tensor_info t[PD_MAX_TENSORS];
    size_t nt = pd_model_ntensors(r->model);
    for (size_t i = 0; i < nt; i++)
        t[i] = *pd_model_tensor(r->model, i);
    pd_ckpt_part p;
    PD_TRY(pd_ckpt_find(cdir, 0, pd_ckpt_layout_hash(t, nt), pd_ckpt_config_hash(cfg, 1), NULL,
                        &p));
    int err = PD_OK;
    if (p.nparts != 1 || p.lo != 0 || p.hi != n)
        err = PD_FAIL(PD_EINPUT, "%s: checkpoint at update %" PRIu64 " holds [%" PRIu64 ", %"
                      PRIu64 ") of %u parts; the model has %zu parameters", cdir, p.updates,
                      p.lo, p.hi, p.nparts, n);
    else
        memcpy(r->theta, p.params, n * sizeof *r->theta);
    r->ckpt_update = (int64_t)p.updates;
    pd_ckpt_part_free(&p);
    return err;
}

/* unlabeled: the test file may lack labels (--predict). */
static int open_run(const pd_use_opts *o, bool unlabeled, run *r)
{
    memset(r, 0, sizeof *r);
    r->ckpt_update = -1;
    for (int i = 0; i < o->n_overrides; i++)
        if (strncmp(o->overrides[i], "data.", 5) != 0)
            return PD_FAIL(PD_EINPUT, "--set %s: only data.* keys can change for a trained "
                           "model", o->overrides[i]);
    char path[PD_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.resolved.yaml", o->run_dir);
    PD_TRY(pd_config_load(path, o->overrides, o->n_overrides, &r->cfg));
    pd_config *cfg = &r->cfg;
    const pd_config as_run = *cfg;   /* before the layout is imposed: checkpoints hash it */
    if (!cfg->data.test[0])
        return PD_FAIL(PD_EINPUT, "%s: the run has no test file; give one with --set "
                       "data.test=FILE", o->run_dir);
    /* Impose the trained feature count, so each file is checked against the
     * model; the classes come from the training file as in the run, and
     * are compared below. A run made before params.json has only its size
     * checked. */
    pd_use_layout lay;
    bool have_layout = pd_use_read_layout(o->run_dir, &lay) == PD_OK;
    pd_err_clear();
    if (have_layout)
        cfg->model.features = (int)lay.features;
    int err = PD_OK;
    PD_TRY_GOTO(err, pd_data_load(cfg, 0, 1, PD_PART_TEST | (unlabeled ? PD_PART_UNLABELED : 0),
                                  &r->data), fail);
    r->test = pd_data_part(r->data, PD_PART_TEST);
    r->names = pd_data_class_names(r->data, &r->nnames);
    if (have_layout && r->nnames != lay.classes)
        PD_TRY_GOTO(err, PD_FAIL(PD_EINPUT, "%s: the model has %zu classes, the data %zu (%zu "
                                 "%s)", o->run_dir, lay.classes, r->nnames,
                                 r->nnames > lay.classes ? r->nnames - lay.classes
                                                         : lay.classes - r->nnames,
                                 r->nnames > lay.classes ? "more" : "fewer"), fail);
    PD_TRY_GOTO(err, pd_model_create_for(&cfg->model, r->data, CHUNK, &r->model), fail);
    size_t n = pd_model_nparams(r->model);
    if (have_layout && n != lay.nparams)
        PD_TRY_GOTO(err, PD_FAIL(PD_EINPUT, "%s: params.json holds %zu parameters, the model "
                                 "of config.resolved.yaml has %zu", o->run_dir, lay.nparams,
                                 n), fail);
    r->K = pd_model_noutputs(r->model);
    r->theta = pd_malloc(n * sizeof *r->theta);
    if (!r->theta) {
        err = PD_ENOMEM;
        goto fail;
    }
    struct stat st;
    snprintf(path, sizeof path, "%s/params.bin", o->run_dir);
    if (stat(path, &st) != 0 && snprintf(path, sizeof path, "%s/checkpoints", o->run_dir) > 0 &&
        stat(path, &st) == 0)
        PD_TRY_GOTO(err, params_from_checkpoint(o->run_dir, &as_run, r, n), fail);
    else
        PD_TRY_GOTO(err, pd_use_read_params(o->run_dir, r->theta, n), fail);
    return PD_OK;
fail:
    run_free(r);
    return err;
}

/* The predicted class of one example's outputs z[K] (argmax, first of
 * ties, as the model's accuracy counts; z >= 0 is the positive class). */
static size_t predicted(const run *r, const float *z)
{
    if (r->K == 1)
        return z[0] >= 0.0f;
    size_t arg = 0;
    for (size_t j = 1; j < r->K; j++)
        if (z[j] > z[arg])
            arg = j;
    return arg;
}

static size_t true_class(const run *r, float y)
{
    return is_binary(r->cfg.model.type) ? y > 0 : (size_t)y;
}

/* Area under the ROC curve of scores s[n] for labels pos[n] (Mann-Whitney,
 * ties counted half); NAN without both classes. */
static int auc_of(const float *s, const bool *pos, size_t n, double *auc)
{
    size_t *ord = pd_malloc((n ? n : 1) * sizeof *ord);
    if (!ord)
        return PD_ENOMEM;
    for (size_t i = 0; i < n; i++)
        ord[i] = i;
    /* Insertion sort would be quadratic on large test sets: shell sort. */
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++)
            for (size_t j = i; j >= gap && s[ord[j - gap]] > s[ord[j]]; j -= gap) {
                size_t t = ord[j];
                ord[j] = ord[j - gap];
                ord[j - gap] = t;
            }
    double rank_sum = 0, P = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[ord[j]] == s[ord[i]])
            j++;
        double rank = (double)(i + j + 1) / 2.0;   /* 1-based mean rank of the tie */
        for (size_t k = i; k < j; k++)
            if (pos[ord[k]]) {
                rank_sum += rank;
                P++;
            }
        i = j;
    }
    free(ord);
    double N = (double)n - P;
    *auc = P > 0 && N > 0 ? (rank_sum - P * (P + 1) / 2.0) / (P * N) : NAN;
    return PD_OK;
}

typedef struct result {
    pd_eval ev;
    size_t C;                   /* classes in the confusion matrix (0: linreg) */
    int64_t *confusion;         /* [C][C]: rows true class, columns predicted */
    double precision, recall, auc;
} result;

static int evaluate(run *r, result *res)
{
    memset(res, 0, sizeof *res);
    res->precision = res->recall = res->auc = NAN;
    PD_TRY(pd_model_eval(r->model, r->theta, r->test, &res->ev));
    if (r->cfg.model.type == PD_MODEL_LINREG)
        return PD_OK;
    size_t n = r->test->n, C = res->C = r->nnames;
    res->confusion = pd_calloc(C * C, sizeof *res->confusion);
    float *score = pd_malloc((n ? n : 1) * sizeof *score);
    bool *pos = pd_malloc((n ? n : 1) * sizeof *pos);
    size_t *rows = pd_malloc(CHUNK * sizeof *rows);
    int err = PD_OK;
    if (!res->confusion || !score || !pos || !rows) {
        err = PD_ENOMEM;
        goto done;
    }
    for (size_t start = 0; start < n; start += CHUNK) {
        size_t b = n - start < CHUNK ? n - start : CHUNK;
        for (size_t i = 0; i < b; i++)
            rows[i] = start + i;
        const float *z;
        PD_TRY_GOTO(err, pd_model_outputs(r->model, r->theta, r->test, rows, b, &z), done);
        for (size_t i = 0; i < b; i++) {
            size_t t = true_class(r, r->test->y[start + i]), p = predicted(r, z + i * r->K);
            res->confusion[t * C + p]++;
            score[start + i] = z[i * r->K];
            pos[start + i] = t == 1;
        }
    }
    if (is_binary(r->cfg.model.type) && C == 2) {
        double tp = (double)res->confusion[3], fp = (double)res->confusion[1],
               fn = (double)res->confusion[2];
        res->precision = tp + fp > 0 ? tp / (tp + fp) : NAN;
        res->recall = tp + fn > 0 ? tp / (tp + fn) : NAN;
        PD_TRY_GOTO(err, auc_of(score, pos, n, &res->auc), done);
    }
done:
    free(rows);
    free(pos);
    free(score);
    return err;
}

static void print_result(FILE *out, const run *r, const result *res, const char *run_dir)
{
    fprintf(out, "model:      %s (%s", pd_model_type_name(r->cfg.model.type), run_dir);
    if (r->ckpt_update >= 0)
        fprintf(out, ", no params.bin: its checkpoint at update %" PRId64, r->ckpt_update);
    fputs(")\n", out);
    fprintf(out, "data:       %s, %zu examples\n", r->cfg.data.test, res->ev.n);
    fprintf(out, "loss:       %.6f\n", res->ev.loss);
    if (!res->C) {
        fprintf(out, "rmse:       %.6f\n", res->ev.rmse);
        return;
    }
    size_t correct = 0;
    for (size_t c = 0; c < res->C; c++)
        correct += (size_t)res->confusion[c * res->C + c];
    fprintf(out, "accuracy:   %.6f (%zu of %zu)\n", res->ev.accuracy, correct, res->ev.n);
    if (is_binary(r->cfg.model.type)) {
        fprintf(out, "precision:  %.6f\nrecall:     %.6f\nauc:        %.6f   (positive class "
                "\"%s\")\n", res->precision, res->recall, res->auc, r->names[1]);
    }
    int w = 6;
    for (size_t c = 0; c < res->C; c++)
        w = (int)strlen(r->names[c]) + 1 > w ? (int)strlen(r->names[c]) + 1 : w;
    for (size_t c = 0; c < res->C * res->C; c++) {
        int digits = snprintf(NULL, 0, "%lld", (long long)res->confusion[c]) + 1;
        w = digits > w ? digits : w;
    }
    if (res->C > 30) {
        fprintf(out, "confusion matrix: %zu classes, in evaluation.json\n", res->C);
        return;
    }
    fputs("confusion matrix (rows: true class, columns: predicted):\n", out);
    fprintf(out, "%*s", w, "");
    for (size_t c = 0; c < res->C; c++)
        fprintf(out, " %*s", w, r->names[c]);
    fputc('\n', out);
    for (size_t t = 0; t < res->C; t++) {
        fprintf(out, "%*s", w, r->names[t]);
        for (size_t p = 0; p < res->C; p++)
            fprintf(out, " %*lld", w, (long long)res->confusion[t * res->C + p]);
        fputc('\n', out);
    }
}

static int write_json(const run *r, const result *res, const char *run_dir)
{
    enum { EXACT = 17 };   /* significant digits: a double reads back the same */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return PD_FAIL(PD_ENOMEM, "evaluation.json: cannot allocate");
    fputs("{\"run\":", f);
    pd_metrics_json_string(f, run_dir);
    fputs(",\"test\":", f);
    pd_metrics_json_string(f, r->cfg.data.test);
    fputs(",\"model\":", f);
    pd_metrics_json_string(f, pd_model_type_name(r->cfg.model.type));
    if (r->ckpt_update >= 0)
        fprintf(f, ",\"checkpoint_update\":%" PRId64, r->ckpt_update);
    fprintf(f, ",\"examples\":%zu,\"loss\":", res->ev.n);
    pd_metrics_json_number(f, res->ev.loss, EXACT);
    fputs(",\"accuracy\":", f);
    pd_metrics_json_number(f, res->ev.accuracy, EXACT);
    fputs(",\"rmse\":", f);
    pd_metrics_json_number(f, res->ev.rmse, EXACT);
    if (res->C) {
        fputs(",\"class_names\":[", f);
        for (size_t c = 0; c < res->C; c++) {
            fputs(c ? "," : "", f);
            pd_metrics_json_string(f, r->names[c]);
        }
        fputs("],\"confusion\":[", f);
        for (size_t t = 0; t < res->C; t++) {
            fputs(t ? ",[" : "[", f);
            for (size_t p = 0; p < res->C; p++)
                fprintf(f, "%s%lld", p ? "," : "", (long long)res->confusion[t * res->C + p]);
            fputc(']', f);
        }
        fputc(']', f);
    }
    if (is_binary(r->cfg.model.type)) {
        fputs(",\"positive_class\":", f);
        pd_metrics_json_string(f, r->names[1]);
        fputs(",\"precision\":", f);
        pd_metrics_json_number(f, res->precision, EXACT);
        fputs(",\"recall\":", f);
        pd_metrics_json_number(f, res->recall, EXACT);
        fputs(",\"auc\":", f);
        pd_metrics_json_number(f, res->auc, EXACT);
    }
    fputs("}\n", f);
    bool bad = ferror(f) != 0;
    fclose(f);
    char path[PD_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/evaluation.json", run_dir);
    int err = bad ? PD_FAIL(PD_ENOMEM, "evaluation.json: cannot allocate")
                  : pd_write_atomic(path, text, len);
    free(text);
    return err;
}

int pd_use_evaluate(const pd_use_opts *o, FILE *out)
{
    run r;
    PD_TRY(open_run(o, false, &r));
    result res;
    int err = evaluate(&r, &res);
    if (err == PD_OK)
        err = write_json(&r, &res, o->run_dir);
    if (err == PD_OK) {
        print_result(out, &r, &res, o->run_dir);
        fprintf(out, "wrote %s/evaluation.json\n", o->run_dir);
    }
    free(res.confusion);
    run_free(&r);
    return err;
}

/* A name as a CSV field: quoted when it holds a comma, a quote or a blank
 * at either end. */
static void csv_field(FILE *f, const char *s)
{
    size_t n = strlen(s);
    if (!strpbrk(s, ",\"\n\r") && !(n && (s[0] == ' ' || s[n - 1] == ' '))) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void predict_header(FILE *f, const run *r)
{
    pd_model_type t = r->cfg.model.type;
    fputs("predicted", f);
    if (t == PD_MODEL_SVM) {
        fputs(",score", f);
    } else if (t != PD_MODEL_LINREG) {
        for (size_t c = 0; c < r->nnames; c++) {
            char col[300];
            snprintf(col, sizeof col, "p_%s", r->names[c]);
            fputc(',', f);
            csv_field(f, col);
        }
    }
    fputc('\n', f);
}

/* One example's line from its outputs z[K]. */
static void predict_line(FILE *f, const run *r, const float *z)
{
    pd_model_type t = r->cfg.model.type;
    if (t == PD_MODEL_LINREG) {
        fprintf(f, "%.9g\n", (double)z[0]);
        return;
    }
    csv_field(f, r->names[predicted(r, z)]);
    if (t == PD_MODEL_SVM) {
        fprintf(f, ",%.9g\n", (double)z[0]);
        return;
    }
    if (t == PD_MODEL_LOGREG) {
        double p = 1.0 / (1.0 + exp(-(double)z[0]));
        fprintf(f, ",%.6f,%.6f\n", 1.0 - p, p);
        return;
    }
    double mx = z[0], sum = 0;
    for (size_t j = 1; j < r->K; j++)
        mx = z[j] > mx ? z[j] : mx;
    for (size_t j = 0; j < r->K; j++)
        sum += exp((double)z[j] - mx);
    for (size_t j = 0; j < r->K; j++)
        fprintf(f, ",%.6f", exp((double)z[j] - mx) / sum);
    fputc('\n', f);
}

int pd_use_predict(const pd_use_opts *o)
{
    run r;
    PD_TRY(open_run(o, true, &r));
    FILE *f = stdout;
    int err = PD_OK;
    size_t *rows = pd_malloc(CHUNK * sizeof *rows);
    if (!rows) {
        err = PD_ENOMEM;
        goto done;
    }
    if (o->out_path && !(f = fopen(o->out_path, "w"))) {
        err = PD_FAIL(PD_EINPUT, "--out %s: cannot create: %s", o->out_path, strerror(errno));
        goto done;
    }
    predict_header(f, &r);
    size_t n = r.test->n;
    for (size_t start = 0; start < n; start += CHUNK) {
        size_t b = n - start < CHUNK ? n - start : CHUNK;
        for (size_t i = 0; i < b; i++)
            rows[i] = start + i;
        const float *z;
        PD_TRY_GOTO(err, pd_model_outputs(r.model, r.theta, r.test, rows, b, &z), done);
        for (size_t i = 0; i < b; i++)
            predict_line(f, &r, z + i * r.K);
    }
    if (fflush(f) != 0 || ferror(f))
        err = PD_FAIL(PD_EIO, "%s: write failed: %s", o->out_path ? o->out_path : "stdout",
                      strerror(errno));
done:
    if (f && f != stdout && fclose(f) != 0 && err == PD_OK)
        err = PD_FAIL(PD_EIO, "%s: write failed: %s", o->out_path, strerror(errno));
    free(rows);
    run_free(&r);
    return err;
}
