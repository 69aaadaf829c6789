/* Run-directory writer: metrics.jsonl (appended and flushed per row), and
 * status.json, summary.json, params.bin replaced atomically so a reader
 * never sees a half-written file. JSON is produced with a memstream; this
 * runs once per evaluation, never in the update loop. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "paramd/error.h"
#include "paramd/metrics.h"

struct pd_metrics {
    char dir[1024];
    int jsonl;                     /* metrics.jsonl, O_APPEND; -1 when closed */
};

/* A row that cannot be written is tried this many times, this far apart:
 * an NFS hiccup passes, a full disk does not. */
#define APPEND_TRIES 3
#define APPEND_PAUSE_NS 100000000L

int pd_mkdir_p(const char *path)
{
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return PD_FAIL(PD_EINPUT, "%s: path too long", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return PD_FAIL(PD_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return PD_FAIL(PD_EIO, "%s: not a directory", path);
    return PD_OK;
}

int pd_fsync_dir(const char *path)
{
    char dir[1100];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (snprintf(dir, sizeof dir, "%.*s", (int)(slash - path) + (slash == path), path) >=
             (int)sizeof dir)
        return PD_FAIL(PD_EINPUT, "%s: path too long", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return PD_FAIL(PD_EIO, "%s: cannot open its directory %s: %s", path, dir, strerror(errno));
    int rc = fsync(fd), e = errno;
    close(fd);
    /* Some filesystems cannot fsync a directory (EINVAL): nothing to flush. */
    if (rc != 0 && e != EINVAL)
        return PD_FAIL(PD_EIO, "%s: cannot flush its directory %s: %s", path, dir, strerror(e));
    return PD_OK;
}

int pd_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        if (w == 0)
            return EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int pd_write_atomic(const char *path, const void *buf, size_t n)
{
    char tmp[1100];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return PD_FAIL(PD_EINPUT, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return PD_FAIL(PD_EIO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    int e = pd_write_all(fd, buf, n);
    const char *what = "write failed";
    if (!e && fsync(fd) != 0) {
        e = errno;
        what = "cannot flush";
    }
    /* close() even when the write or fsync failed: the descriptor is ours. */
    if (close(fd) != 0 && !e) {
        e = errno;
        what = "cannot flush";
    }
    if (!e && rename(tmp, path) != 0) {
        e = errno;
        what = "cannot rename the temporary file into place";
    }
    if (e) {
        unlink(tmp);
        return PD_FAIL(PD_EIO, "%s: %s: %s", path, what, strerror(e));
    }
    return pd_fsync_dir(path);
}

int pd_metrics_path(const pd_metrics *m, const char *name, char *buf, size_t size)
{
    if ((size_t)snprintf(buf, size, "%s/%s", m->dir, name) >= size)
        return PD_FAIL(PD_EINPUT, "%s/%s: path too long", m->dir, name);
    return PD_OK;
}

/* The files that make a directory hold a finished or running run. */
static const char *const RESULT_FILES[] = {"summary.json", "metrics.jsonl", "params.bin"};

int pd_metrics_open(const char *dir, bool continuing, pd_metrics **out)
{
    char path[1100], why[1024];
    *out = NULL;
    pd_metrics *m = pd_calloc(1, sizeof *m);
    if (!m)
        return PD_ENOMEM;
    m->jsonl = -1;
    int err = PD_OK;
    if (snprintf(m->dir, sizeof m->dir, "%s", dir) >= (int)sizeof m->dir) {
        err = PD_FAIL(PD_EINPUT, "%s: path too long", dir);
        goto fail;
    }
    /* A run directory paramd cannot use is a mistake in the run's setup:
     * exit 2 now, before any training, rather than an I/O error later. */
    if (pd_mkdir_p(dir) != PD_OK) {
        snprintf(why, sizeof why, "%s", pd_err_msg());
        err = PD_FAIL(PD_EINPUT, "%s (the run directory, run.out_dir or --out: choose one paramd "
                      "can create)", why);
        goto fail;
    }
    for (size_t i = 0; !continuing && i < sizeof RESULT_FILES / sizeof *RESULT_FILES; i++) {
        struct stat st;
        PD_TRY_GOTO(err, pd_metrics_path(m, RESULT_FILES[i], path, sizeof path), fail);
        if (lstat(path, &st) == 0) {
            err = PD_FAIL(PD_EINPUT, "%s: the run directory already holds a run's results (%s); "
                          "give another --out (or run.out_dir), or remove %s first", dir,
                          RESULT_FILES[i], dir);
            goto fail;
        }
    }
    PD_TRY_GOTO(err, pd_metrics_path(m, "metrics.jsonl", path, sizeof path), fail);
    m->jsonl = open(path, O_WRONLY | O_CREAT | (continuing ? O_TRUNC : O_EXCL) | O_APPEND |
                              O_CLOEXEC, 0644);
    if (m->jsonl < 0) {
        err = PD_FAIL(PD_EINPUT, "%s: cannot write in the run directory: %s (run.out_dir or "
                      "--out: choose one paramd can write)", path, strerror(errno));
        goto fail;
    }
    *out = m;
    return PD_OK;
fail:
    free(m);
    return err;
}

void pd_metrics_close(pd_metrics **m)
{
    if (!m || !*m)
        return;
    if ((*m)->jsonl >= 0) {
        fsync((*m)->jsonl);   /* best effort: each row was written when it was made */
        close((*m)->jsonl);
    }
    free(*m);
    *m = NULL;
}

const char *pd_metrics_dir(const pd_metrics *m) { return m->dir; }

void pd_metrics_json_number(FILE *f, double v, int digits)
{
    if (isfinite(v))
        fprintf(f, "%.*g", digits, v);
    else
        fputs("null", f);
}

/* JSON helpers: NAN/Inf and negative counts become null. */
static void jnum(FILE *f, const char *key, double v)
{
    fprintf(f, "\"%s\":", key);
    pd_metrics_json_number(f, v, 9);
}

static void jint(FILE *f, const char *key, int64_t v)
{
    if (v >= 0)
        fprintf(f, "\"%s\":%lld", key, (long long)v);
    else
        fprintf(f, "\"%s\":null", key);
}

void pd_metrics_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const char *p = s ? s : ""; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if ((unsigned char)*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void jstr(FILE *f, const char *key, const char *v)
{
    fprintf(f, "\"%s\":", key);
    pd_metrics_json_string(f, v);
}

static void norms_object(FILE *f, const char *key, const pd_metrics_row *r, const double *v)
{
    fprintf(f, ",\"%s\":{", key);
    for (size_t i = 0; i < r->ntensors; i++) {
        if (i)
            fputc(',', f);
        jnum(f, r->tensor_names[i], v[i]);
    }
    fputc('}', f);
}

/* "workers_lost":[{...},...] */
static void lost_list(FILE *f, const pd_lost_worker *lost, size_t n)
{
    fputs("\"workers_lost\":[", f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s{", i ? "," : "");
        jint(f, "worker", lost[i].worker);
        fputc(',', f); jint(f, "rank", lost[i].rank);
        fputc(',', f); jint(f, "last_update", lost[i].last_update);
        fputc(',', f); jint(f, "update", lost[i].update);
        fputc(',', f); jnum(f, "wall_s", lost[i].wall_s);
        fputc(',', f); jint(f, "rejoined_at_update", lost[i].rejoined);
        fputc('}', f);
    }
    fputc(']', f);
}

static void row_fields(FILE *f, const pd_metrics_row *r)
{
    jnum(f, "wall_s", r->wall_s);
    fputc(',', f); jint(f, "update", r->update);
    fputc(',', f); jnum(f, "epoch", r->epoch);
    fputc(',', f); jint(f, "examples", r->examples);
    fputc(',', f); jnum(f, "lr", r->lr);
    fputc(',', f); jnum(f, "train_loss", r->train_loss);
    fputc(',', f); jnum(f, "valid_loss", r->valid_loss);
    fputc(',', f); jnum(f, "valid_acc", r->valid_acc);
    fputc(',', f); jnum(f, "test_loss", r->test_loss);
    fputc(',', f); jnum(f, "test_acc", r->test_acc);
    fputc(',', f); jnum(f, "staleness_mean", r->staleness_mean);
    fputc(',', f); jint(f, "staleness_max", r->staleness_max);
    fputc(',', f); jint(f, "dropped", r->dropped);
    if (r->evaluations > 0) {
        fputc(',', f); jint(f, "evaluations", r->evaluations);
        fputc(',', f); jint(f, "line_search_steps", r->line_search_steps);
    }
    if (r->phase_mode) {
        fputc(',', f); jint(f, "phase_index", r->phase);
        fputc(',', f); jstr(f, "phase_mode", r->phase_mode);
    }
    if (r->ntensors && r->param_norms)
        norms_object(f, "param_norm", r, r->param_norms);
    if (r->ntensors && r->grad_norms)
        norms_object(f, "grad_norm", r, r->grad_norms);
    if (r->n_lost) {
        fputc(',', f);
        lost_list(f, r->lost, r->n_lost);
    }
}

static void pause_ns(long ns)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int pd_metrics_append(pd_metrics *m, const pd_metrics_row *row)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return PD_FAIL(PD_ENOMEM, "%s/metrics.jsonl: cannot allocate a row", m->dir);
    fputc('{', f);
    row_fields(f, row);
    fputs("}\n", f);
    if (fclose(f) != 0) {
        free(text);
        return PD_FAIL(PD_ENOMEM, "%s/metrics.jsonl: cannot allocate a row", m->dir);
    }
    /* Whole rows only: a row that fails part-way is cut off again before
     * the next try, and before giving up. */
    off_t start = lseek(m->jsonl, 0, SEEK_END);
    int e = 0;
    for (int t = 0; t < APPEND_TRIES; t++) {
        if (t > 0)
            pause_ns(APPEND_PAUSE_NS);
        if ((e = pd_write_all(m->jsonl, text, len)) == 0)
            break;
        if (start >= 0 && ftruncate(m->jsonl, start) != 0)
            break;
    }
    free(text);
    if (e)
        return PD_FAIL(PD_EIO, "%s/metrics.jsonl: write failed: %s", m->dir, strerror(e));
    return PD_OK;
}

/* Write what emit() prints to FILE atomically. */
static int write_json_atomic(pd_metrics *m, const char *name, char *text, size_t len)
{
    char path[1100];
    int err = pd_metrics_path(m, name, path, sizeof path);
    if (err == PD_OK)
        err = pd_write_atomic(path, text, len);
    free(text);
    return err;
}

int pd_metrics_status(pd_metrics *m, const char *phase, const pd_metrics_row *row)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return PD_FAIL(PD_ENOMEM, "status.json: cannot allocate");
    fputc('{', f);
    jstr(f, "phase", phase);
    fputc(',', f);
    row_fields(f, row);
    fputs("}\n", f);
    fclose(f);
    return write_json_atomic(m, "status.json", text, len);
}

int pd_metrics_write_params(pd_metrics *m, const float *theta, size_t n, char hex[65])
{
    char path[1100];
    PD_TRY(pd_metrics_path(m, "params.bin", path, sizeof path));
    /* The flat layout is little-endian float32 on disk; this build only
     * targets little-endian hosts, asserted here rather than byte-swapped. */
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1)
        return PD_FAIL(PD_EIO, "params.bin: big-endian hosts are not supported");
    pd_sha256_hex(theta, n * sizeof *theta, hex);
    return pd_write_atomic(path, theta, n * sizeof *theta);
}

int pd_metrics_summary(pd_metrics *m, const pd_summary *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return PD_FAIL(PD_ENOMEM, "summary.json: cannot allocate");
    fputs("{\n  ", f); jstr(f, "mode", s->mode);
    fputs(",\n  ", f); jstr(f, "optimizer", s->optimizer);
    fputs(",\n  ", f); jint(f, "workers", s->workers);
    fputs(",\n  ", f); jint(f, "servers", s->servers);
    fputs(",\n  ", f); jint(f, "updates", s->updates);
    fputs(",\n  ", f); jnum(f, "epochs", s->epochs);
    fputs(",\n  ", f); jnum(f, "wall_s", s->wall_s);
    fputs(",\n  ", f); jnum(f, "examples_per_s", s->examples_per_s);
    fputs(",\n  ", f); jnum(f, "test_loss", s->test_loss);
    fputs(",\n  ", f); jnum(f, "test_acc", s->test_acc);
    fputs(",\n  ", f); jnum(f, "valid_loss", s->valid_loss);
    fputs(",\n  ", f); jnum(f, "valid_acc", s->valid_acc);
    fputs(",\n  ", f); jstr(f, "params_sha256", s->params_sha256);
    fputs(",\n  ", f); jint(f, "dropped", s->dropped);
    fputs(",\n  ", f); jint(f, "dropped_stale", s->dropped_stale);
    fputs(",\n  ", f); jint(f, "dropped_late", s->dropped_late);
    fputs(",\n  ", f); jint(f, "dropped_at_stop", s->dropped_at_stop);
    fputs(",\n  ", f); jnum(f, "staleness_mean", s->staleness_mean);
    fputs(",\n  ", f); jint(f, "staleness_max", s->staleness_max);
    fputs(",\n  \"staleness_hist\":[", f);
    for (size_t i = 0; i < s->staleness_hist_n; i++)
        fprintf(f, "%s%lld", i ? "," : "", (long long)s->staleness_hist[i]);
    fputs("]", f);
    fputs(",\n  ", f); jint(f, "gradients_applied", s->applied);
    fputs(",\n  ", f); jint(f, "gradients_sent", s->sent);
    fputs(",\n  ", f); jint(f, "gradients_bad", s->bad);
    fputs(",\n  ", f); jnum(f, "server_cpu_s", s->server_cpu_s);
    fputs(",\n  ", f); jnum(f, "server_loop_cpu_s", s->server_loop_cpu_s);
    fputs(",\n  ", f); jint(f, "params_sent_floats", s->params_sent_floats);
    fputs(",\n  ", f); jint(f, "evals_skipped", s->evals_skipped);
    fputs(",\n  \"per_worker\":[", f);
    for (int i = 0; i < s->n_workers_stats; i++) {
        const pd_worker_stats *w = &s->workers_stats[i];
        fprintf(f, "%s{", i ? "," : "");
        jint(f, "rank", w->rank);
        fputc(',', f); jint(f, "applied", w->applied);
        fputc(',', f); jint(f, "dropped", w->dropped);
        fputc(',', f); jnum(f, "staleness_mean", w->staleness_mean);
        fputc(',', f); jnum(f, "gradients_per_s", w->grads_per_s);
        fputc(',', f); jnum(f, "epochs", w->epochs);
        fputc(',', f); jint(f, "lost_at_update", w->lost_update);
        fputc('}', f);
    }
    fputs("]", f);
    fputs(",\n  ", f);
    lost_list(f, s->lost, s->n_lost);
    fputs(",\n  \"per_server\":[", f);
    for (int i = 0; i < s->n_servers_stats; i++) {
        fprintf(f, "%s{", i ? "," : "");
        jint(f, "server", i);
        fputc(',', f); jint(f, "applied", s->server_applied[i]);
        fputc(',', f); jint(f, "bad", s->server_bad[i]);
        fputc(',', f); jint(f, "dropped", s->server_dropped[i]);
        fputc(',', f); jint(f, "applied_set", s->server_applied_set[i]);
        fputc('}', f);
    }
    fputs("]", f);
    fputs(",\n  ", f); jint(f, "best_update", s->best_update);
    if (s->stop_reason) {
        fputs(",\n  ", f); jint(f, "iterations", s->iterations);
        fputs(",\n  ", f); jint(f, "evaluations", s->evaluations);
        fputs(",\n  ", f); jstr(f, "stop_reason", s->stop_reason);
    }
    if (s->has_gap) {
        fputs(",\n  ", f); jnum(f, "optimality_gap", s->optimality_gap);
    }
    fputs(",\n  \"checkpoint_pause_s\":{", f);
    jint(f, "count", s->ckpt_pauses);
    fputc(',', f); jnum(f, "mean", s->ckpt_pauses ? s->ckpt_pause_sum / (double)s->ckpt_pauses
                                                    : NAN);
    fputc(',', f); jnum(f, "max", s->ckpt_pauses ? s->ckpt_pause_max : NAN);
    fputc(',', f); jnum(f, "total", s->ckpt_pause_sum);
    fputs("}", f);
    if (s->n_phases > 0) {
        fputs(",\n  \"phases\":[", f);
        for (int i = 0; i < s->n_phases; i++) {
            const pd_phase_summary *p = &s->phases[i];
            fputs(i ? ",\n    {" : "\n    {", f);
            jint(f, "index", p->index);
            fputc(',', f); jstr(f, "mode", p->mode);
            fputc(',', f); jint(f, "first_update", p->first_update);
            fputc(',', f); jint(f, "last_update", p->last_update);
            fputc(',', f); jnum(f, "epochs", p->epochs);
            fputc(',', f); jnum(f, "wall_s", p->wall_s);
            fputc(',', f); jint(f, "gradients_sent", p->sent);
            fputc(',', f); jint(f, "gradients_applied", p->applied);
            fputc(',', f); jint(f, "dropped", p->dropped);
            fputc(',', f); jint(f, "gradients_bad", p->bad);
            fputc(',', f); jnum(f, "staleness_mean", p->staleness_mean);
            fputc(',', f); jnum(f, "valid_loss", p->valid_loss);
            fputc(',', f); jnum(f, "valid_acc", p->valid_acc);
            fputc(',', f); jnum(f, "test_loss", p->test_loss);
            fputc(',', f); jnum(f, "test_acc", p->test_acc);
            fputc(',', f); jstr(f, "exit", p->exit);
            fputc('}', f);
        }
        fputs("]", f);
    }
    fputs(",\n  ", f); jstr(f, "exit", s->exit);
    fputs("\n}\n", f);
    fclose(f);
    return write_json_atomic(m, "summary.json", text, len);
}
