/* params.json: what params.bin holds, for people and for NumPy or PyTorch
 * (docs/weights.md): each tensor's name, shape, dtype, byte order and byte
 * offset; the model, its activation, the class names in order, and the
 * input normalization the model was trained behind. Also the reading side:
 * a run directory's layout and parameters, checked against a model. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/error.h"
#include "paramd/le.h"
#include "paramd/metrics.h"
#include "paramd/use.h"

static const char *activation_name(pd_activation a)
{
    return a == PD_ACT_TANH ? "tanh" : a == PD_ACT_SIGMOID ? "sigmoid" : "relu";
}

static void number_list(FILE *out, const double *v, size_t n)
{
    fputc('[', out);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s%.17g", i ? "," : "", v[i]);
    fputc(']', out);
}

int pd_use_write_layout(const pd_config *cfg, const pd_model *m, const pd_data *d, FILE *out)
{
    const pd_model_config *mc = &cfg->model;
    bool mlp = mc->type == PD_MODEL_MLP;
    fputs("{\n  \"format\": \"paramd-params\",\n  \"version\": 1,\n"
          "  \"file\": \"params.bin\",\n  \"model\": ", out);
    pd_metrics_json_string(out, pd_model_type_name(mc->type));
    fputs(",\n  \"activation\": ", out);
    if (mlp)
        pd_metrics_json_string(out, activation_name(mc->activation));
    else
        fputs("null", out);
    size_t nnames;
    const char *const *names = pd_data_class_names(d, &nnames);
    fprintf(out, ",\n  \"features\": %zu,\n  \"classes\": %zu,\n  \"parameters\": %zu,\n"
            "  \"tensors\": [\n", pd_data_features(d), nnames, pd_model_nparams(m));
    size_t nt = pd_model_ntensors(m);
    for (size_t i = 0; i < nt; i++) {
        const pd_tensor_info *t = pd_model_tensor(m, i);
        fputs("    {\"name\": ", out);
        pd_metrics_json_string(out, t->name);
        if (t->cols == 1)
            fprintf(out, ", \"shape\": [%zu]", t->rows);
        else
            fprintf(out, ", \"shape\": [%zu, %zu]", t->rows, t->cols);
        fprintf(out, ", \"dtype\": \"float32\", \"byte_order\": \"little\", \"offset\": %zu}%s\n",
                t->offset * sizeof(float), i + 1 < nt ? "," : "");
    }
    fputs("  ],\n  \"class_names\": [", out);
    for (size_t i = 0; i < nnames; i++) {
        fputs(i ? ", " : "", out);
        pd_metrics_json_string(out, names[i]);
    }
    fputs("],\n", out);
    if (mc->type == PD_MODEL_LOGREG || mc->type == PD_MODEL_SVM) {
        fputs("  \"positive_class\": ", out);
        pd_metrics_json_string(out, nnames == 2 ? names[1] : "1");
        fputs(",\n", out);
    }
    size_t nf;
    const double *shift, *scale;
    fputs("  \"input\": {\"normalize\": ", out);
    if (pd_data_normalization(d, &nf, &shift, &scale)) {
        fputs(cfg->data.normalize == PD_NORM_STANDARDIZE ? "\"standardize\"" : "\"scale01\"",
              out);
        fputs(", \"shift\": ", out);
        number_list(out, shift, nf);
        fputs(", \"scale\": ", out);
        number_list(out, scale, nf);
    } else {
        fputs("\"none\"", out);
    }
    fputs("}\n}\n", out);
    return ferror(out) ? PD_FAIL(PD_EIO, "params.json: write failed") : PD_OK;
}

/* The number after "key": in text, or -1 when it is not there. */
static long long field(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = strstr(text, pat);
    if (!at)
        return -1;
    char *end;
    long long v = strtoll(at + strlen(pat), &end, 10);
    return end == at + strlen(pat) ? -1 : v;
}

static int read_text(const char *path, char **text)
{
    *text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return PD_FAIL(PD_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int err = PD_OK;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                err = PD_FAIL(PD_ENOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    if (err == PD_OK && ferror(f))
        err = PD_FAIL(PD_EIO, "%s: read error", path);
    fclose(f);
    if (err != PD_OK) {
        free(buf);
        return err;
    }
    buf[len] = '\0';
    *text = buf;
    return PD_OK;
}

int pd_use_read_layout(const char *run_dir, pd_use_layout *out)
{
    memset(out, 0, sizeof *out);
    char path[PD_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/params.json", run_dir);
    char *text;
    PD_TRY(read_text(path, &text));
    long long f = field(text, "features"), c = field(text, "classes"),
              n = field(text, "parameters");
    free(text);
    if (f < 0 || c < 0 || n < 0)
        return PD_FAIL(PD_EINPUT, "%s: not a paramd params.json (no features, classes or "
                       "parameters)", path);
    out->features = (size_t)f;
    out->classes = (size_t)c;
    out->nparams = (size_t)n;
    return PD_OK;
}

int pd_use_read_params(const char *run_dir, float *theta, size_t n)
{
    char path[PD_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/params.bin", run_dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return PD_FAIL(PD_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    int err = PD_OK;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0)
        err = PD_FAIL(PD_EIO, "%s: cannot seek: %s", path, strerror(errno));
    else if ((size_t)size != n * sizeof(float))
        err = PD_FAIL(PD_EINPUT, "%s: %ld bytes, the model needs %zu (%zu float32 "
                      "parameters); it is %s by %zu parameters", path, size,
                      n * sizeof(float), n, (size_t)size > n * 4 ? "larger" : "smaller",
                      (size_t)size > n * 4 ? (size_t)size / 4 - n : n - (size_t)size / 4);
    else if (fread(theta, sizeof(float), n, f) != n)
        err = PD_FAIL(PD_EIO, "%s: read error", path);
    fclose(f);
    if (err == PD_OK)   /* in place: each float's bytes are read before it is written */
        pd_le_get_floats(theta, (const unsigned char *)theta, n);
    return err;
}

/* One tensor as params.json lists it. */
typedef struct listed {
    char name[16];
    size_t shape[2], rank;
} listed;

/* The tensors of params.json's text, in order (at most max). */
static size_t list_tensors(const char *text, listed *t, size_t max)
{
    const char *p = strstr(text, "\"tensors\":"), *end = strstr(text, "\"class_names\":");
    size_t n = 0;
    while (p && n < max && (p = strstr(p, "{\"name\": \"")) && (!end || p < end)) {
        p += strlen("{\"name\": \"");
        size_t len = strcspn(p, "\"");
        snprintf(t[n].name, sizeof t[n].name, "%.*s", (int)len, p);
        const char *s = strstr(p, "\"shape\": [");
        if (!s)
            break;
        s += strlen("\"shape\": [");
        t[n].rank = 0;
        while (t[n].rank < 2 && *s != ']') {
            char *e;
            t[n].shape[t[n].rank++] = strtoul(s, &e, 10);
            s = e + strspn(e, ", ");
        }
        n++;
        p = s;
    }
    return n;
}

static void shape_text(const size_t *shape, size_t rank, char *buf, size_t n)
{
    if (rank == 1)
        snprintf(buf, n, "[%zu]", shape[0]);
    else
        snprintf(buf, n, "[%zu, %zu]", shape[0], shape[1]);
}

int pd_use_init_from(const char *run_dir, const pd_config *cfg, const pd_model *m, float *theta)
{
    char path[PD_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/params.json", run_dir);
    char *text;
    PD_TRY(read_text(path, &text));
    listed there[PD_MAX_TENSORS];
    size_t nthere = list_tensors(text, there, PD_MAX_TENSORS);
    const char *mp = strstr(text, "\"model\": \"");
    char model[32] = "?";
    if (mp) {
        mp += strlen("\"model\": \"");
        snprintf(model, sizeof model, "%.*s", (int)strcspn(mp, "\""), mp);
    }
    free(text);
    const char *here = pd_model_type_name(cfg->model.type);
    if (strcmp(model, here) != 0)
        return PD_FAIL(PD_EINPUT, "model.init_from %s: a %s model there, %s here", run_dir,
                       model, here);
    size_t nt = pd_model_ntensors(m);
    if (nthere != nt)
        return PD_FAIL(PD_EINPUT, "model.init_from %s: %zu tensors there, %zu here (model.hidden "
                       "differs)", run_dir, nthere, nt);
    for (size_t i = 0; i < nt; i++) {
        const pd_tensor_info *t = pd_model_tensor(m, i);
        size_t shape[2] = {t->rows, t->cols}, rank = t->cols == 1 ? 1 : 2;
        bool same = !strcmp(there[i].name, t->name) && there[i].rank == rank &&
                    there[i].shape[0] == shape[0] && (rank == 1 || there[i].shape[1] == shape[1]);
        if (!same) {
            char a[48], b[48];
            shape_text(there[i].shape, there[i].rank, a, sizeof a);
            shape_text(shape, rank, b, sizeof b);
            return PD_FAIL(PD_EINPUT, "model.init_from %s: tensor %zu is %s %s there, %s %s here",
                           run_dir, i, there[i].name, a, t->name, b);
        }
    }
    return pd_use_read_params(run_dir, theta, pd_model_nparams(m));
}
