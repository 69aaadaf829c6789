/* Normalization: per-feature statistics gathered in one streaming pass over
 * the training part (so a worker needs no other shard to get the same
 * numbers as every other rank), and the transform they give, applied to
 * every part.
 *   scale01:     (x - min) / (max - min), constant features -> 0;
 *                IDX bytes: x / 255.
 *   standardize: (x - mean) / std (population std; std 0 -> 1).
 * Sparse parts keep their zeros: no shift, so standardize only divides by
 * std and scale01 divides by max |x| (the same as (x-min)/(max-min) for a
 * non-negative feature with zeros). Missing entries count as zeros in
 * min, max, mean and std. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data_impl.h"
#include "paramd/error.h"

static int reserve(pd_norm_stats *st, size_t d)
{
    if (d <= st->cap)
        return PD_OK;
    size_t cap = st->cap ? st->cap : 16;
    while (cap < d)
        cap *= 2;
    /* Grow each array on its own so a failure leaves the others valid. */
    void **arr[] = {(void **)&st->count, (void **)&st->min, (void **)&st->max,
                    (void **)&st->k, (void **)&st->s1, (void **)&st->s2};
    size_t size[] = {sizeof *st->count, sizeof *st->min, sizeof *st->max,
                     sizeof *st->k, sizeof *st->s1, sizeof *st->s2};
    for (size_t a = 0; a < sizeof arr / sizeof arr[0]; a++) {
        char *p = realloc(*arr[a], cap * size[a]);
        if (!p)
            return PD_FAIL(PD_ENOMEM, "out of memory for statistics of %zu features", cap);
        memset(p + st->cap * size[a], 0, (cap - st->cap) * size[a]);
        *arr[a] = p;
    }
    st->cap = cap;
    return PD_OK;
}

static inline void add_value(pd_norm_stats *st, size_t j, float v)
{
    if (st->count[j]++ == 0) {
        st->k[j] = v;
        st->min[j] = st->max[j] = v;
        return;
    }
    if (v < st->min[j])
        st->min[j] = v;
    if (v > st->max[j])
        st->max[j] = v;
    double u = (double)v - st->k[j];
    st->s1[j] += u;
    st->s2[j] += u * u;
}

int pd_data_stats_add(pd_norm_stats *st, const float *x, const uint32_t *col, size_t nnz)
{
    PD_TRY(reserve(st, col ? (nnz ? (size_t)col[nnz - 1] + 1 : 0) : nnz));
    if (col)
        for (size_t p = 0; p < nnz; p++)
            add_value(st, col[p], x[p]);
    else
        for (size_t j = 0; j < nnz; j++)
            add_value(st, j, x[j]);
    st->rows++;
    return PD_OK;
}

void pd_data_stats_free(pd_norm_stats *st)
{
    free(st->count);
    free(st->min);
    free(st->max);
    free(st->k);
    free(st->s1);
    free(st->s2);
    memset(st, 0, sizeof *st);
}

void pd_data_norm_free(pd_norm *nm)
{
    free(nm->shift);
    free(nm->inv);
    memset(nm, 0, sizeof *nm);
}

/* Feature j's min, max, mean and std over all rows, zeros included. */
static void feature(const pd_norm_stats *st, size_t j, double *mn, double *mx,
                    double *mean, double *sd)
{
    double n = (double)st->rows;
    double zeros = (double)(st->rows - st->count[j]);
    double k = st->k[j];
    *mn = st->min[j];
    *mx = st->max[j];
    if (zeros > 0) {
        *mn = *mn < 0 ? *mn : 0;
        *mx = *mx > 0 ? *mx : 0;
    }
    /* Each missing zero adds (0 - k) and k^2 to the shifted sums. */
    double s1 = st->s1[j] - zeros * k, s2 = st->s2[j] + zeros * k * k;
    double m = s1 / n;
    double var = s2 / n - m * m;
    *mean = k + m;
    *sd = var > 0 ? sqrt(var) : 0;
}

int pd_data_norm_make(const pd_norm_stats *st, size_t d, pd_normalize how, bool idx_bytes,
                      bool sparse, pd_norm *out)
{
    memset(out, 0, sizeof *out);
    if (how == PD_NORM_NONE)
        return PD_OK;
    bool need_stats = !(how == PD_NORM_SCALE01 && idx_bytes);
    if (need_stats && st->rows == 0)
        return PD_FAIL(PD_EINPUT, "normalization: no training rows to take statistics from");
    out->d = d;
    out->shift = pd_calloc(d, sizeof *out->shift);
    out->inv = pd_calloc(d, sizeof *out->inv);
    if (!out->shift || !out->inv) {
        pd_data_norm_free(out);
        return PD_ENOMEM;
    }
    for (size_t j = 0; j < d; j++) {
        if (!need_stats) {
            out->inv[j] = 1.0 / 255.0;
            continue;
        }
        double mn = 0, mx = 0, mean = 0, sd = 0;
        if (j < st->cap && st->count[j] > 0)
            feature(st, j, &mn, &mx, &mean, &sd);
        if (how == PD_NORM_STANDARDIZE) {
            out->shift[j] = sparse ? 0 : mean;
            out->inv[j] = sd > 0 ? 1.0 / sd : 1.0;
        } else if (sparse) {
            double a = fabs(mn) > fabs(mx) ? fabs(mn) : fabs(mx);
            out->inv[j] = a > 0 ? 1.0 / a : 0.0;
        } else {
            out->shift[j] = mn;
            out->inv[j] = mx > mn ? 1.0 / (mx - mn) : 0.0;
        }
    }
    return PD_OK;
}

/* Training values land within sqrt(rows) of 0, but a held-out or test value
 * far outside a narrow training range could leave the float range: it is
 * clamped to +-FLT_MAX rather than becoming infinite. */
static float to_float(double v)
{
    return v > FLT_MAX ? FLT_MAX : v < -FLT_MAX ? -FLT_MAX : (float)v;
}

void pd_data_norm_apply(const pd_norm *nm, pd_dataset *ds)
{
    if (!nm->d || !ds)
        return;
    const double *restrict shift = nm->shift, *restrict inv = nm->inv;
    if (ds->sparse) {
        for (size_t p = 0; p < ds->row_ptr[ds->n]; p++)
            ds->val[p] = to_float((double)ds->val[p] * inv[ds->col[p]]);
        return;
    }
    for (size_t i = 0; i < ds->n; i++) {
        float *restrict x = ds->x + i * ds->d;   /* [d] */
        for (size_t j = 0; j < ds->d; j++)
            x[j] = to_float(((double)x[j] - shift[j]) * inv[j]);
    }
}
