/* Loss heads shared by both paths: turn the outputs z[b][K] of a batch into
 * summed loss, prediction counts and dL/dz. Every loss is written in its
 * numerically stable form (log-softmax with the row max subtracted;
 * logistic loss as log1p(exp(-|m|)) + max(-m, 0)). Predictions: argmax
 * (first of ties) for classes, z >= 0 as +1 for logreg and svm. */
#include <math.h>

#include "paramd/error.h"
#include "model_impl.h"

/* The example's number for messages: its id when the data has ids. */
static size_t example_id(const pd_dataset *ds, size_t r)
{
    return ds->id ? ds->id[r] : r;
}

static int cross_entropy(const float *restrict z, const pd_dataset *ds, const size_t *rows,
                         size_t b, size_t K, float *restrict dz, float scale, head_sums *s)
{
    for (size_t i = 0; i < b; i++) {
        float y = ds->y[rows[i]];
        if (!(y >= 0.0f && y < (float)K && floorf(y) == y))
            return PD_FAIL(PD_EINPUT, "example %zu: class label %g outside 0..%zu",
                           example_id(ds, rows[i]), (double)y, K - 1);
        size_t c = (size_t)y;
        const float *zi = z + i * K;   /* [K] */
        size_t arg = 0;
        for (size_t j = 1; j < K; j++)
            if (zi[j] > zi[arg])
                arg = j;
        float mx = zi[arg];
        double sum = 0.0;
        if (dz) {
            float *restrict di = dz + i * K;
            for (size_t j = 0; j < K; j++) {
                di[j] = expf(zi[j] - mx);
                sum += di[j];
            }
            float f = scale / (float)sum;
            for (size_t j = 0; j < K; j++)
                di[j] *= f;
            di[c] -= scale;
        } else {
            for (size_t j = 0; j < K; j++)
                sum += expf(zi[j] - mx);
        }
        /* -log softmax(z)_c = log sum exp(z - max) + max - z_c */
        s->loss += log(sum) + (double)mx - (double)zi[c];
        s->correct += arg == c;
    }
    return PD_OK;
}

static int check_sign(const pd_dataset *ds, size_t r)
{
    float y = ds->y[r];
    if (y != 1.0f && y != -1.0f)
        return PD_FAIL(PD_EINPUT, "example %zu: label %g, expected +1 or -1",
                       example_id(ds, r), (double)y);
    return PD_OK;
}

int pd_model_head(const pd_model *m, const float *z, const pd_dataset *ds,
                  const size_t *rows, size_t b, float *dz, float scale, head_sums *s)
{
    switch (m->type) {
    case PD_MODEL_SOFTMAX:
    case PD_MODEL_MLP:
        PD_TRY(cross_entropy(z, ds, rows, b, m->K, dz, scale, s));
        break;
    case PD_MODEL_LINREG:
        for (size_t i = 0; i < b; i++) {
            double r = (double)z[i] - (double)ds->y[rows[i]];
            s->loss += 0.5 * r * r;
            s->sse += r * r;
            if (dz)
                dz[i] = scale * (float)r;
        }
        break;
    case PD_MODEL_LOGREG:
        for (size_t i = 0; i < b; i++) {
            PD_TRY(check_sign(ds, rows[i]));
            double y = ds->y[rows[i]], mg = y * z[i];
            s->loss += log1p(exp(-fabs(mg))) + (mg < 0.0 ? -mg : 0.0);
            s->correct += (z[i] >= 0.0f ? 1.0 : -1.0) == y;
            if (dz) {
                /* dL/dz = -y sigmoid(-mg), without overflow for either sign */
                double e = exp(-fabs(mg));
                double sig = mg >= 0.0 ? e / (1.0 + e) : 1.0 / (1.0 + e);
                dz[i] = (float)(-(double)scale * y * sig);
            }
        }
        break;
    case PD_MODEL_SVM:
        for (size_t i = 0; i < b; i++) {
            PD_TRY(check_sign(ds, rows[i]));
            double y = ds->y[rows[i]], mg = y * z[i];
            s->loss += mg < 1.0 ? 1.0 - mg : 0.0;
            s->correct += (z[i] >= 0.0f ? 1.0 : -1.0) == y;
            if (dz)   /* subgradient 0 at the hinge */
                dz[i] = mg < 1.0 ? (float)(-(double)scale * y) : 0.0f;
        }
        break;
    }
    return PD_OK;
}
