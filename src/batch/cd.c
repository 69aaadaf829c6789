/* Coordinate descent for least squares with an L2 penalty (Goodfellow,
 * Bengio and Courville 8.6.3): exact minimization over one block of
 * coordinates at a time, on the quadratic the sufficient statistics give
 * (paramd/batch.h, pd_batch_cd). No model, no MPI. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/batch.h"
#include "paramd/error.h"
#include "paramd/rng.h"

size_t pd_cd_packed_index(size_t p, size_t i, size_t j)
{
    /* rows 0..i-1 of the upper triangle hold p, p-1, ..., p-i+1 entries */
    return i * p - i * (i - 1) / 2 + (j - i);
}

/* G[i][j], either order. */
static double gram(const pd_cd_problem *pr, size_t i, size_t j)
{
    return i <= j ? pr->gram[pd_cd_packed_index(pr->p, i, j)]
                  : pr->gram[pd_cd_packed_index(pr->p, j, i)];
}

static double penalty(const pd_cd_problem *pr, size_t j)
{
    return j + 1 < pr->p ? pr->l2 : 0;   /* not on the bias, the last coordinate */
}

/* f(w) = (w'Gw - 2 c'w + yy) / (2m) + l2/2 |w without bias|^2, from q = Gw;
 * the gradient's norm into *gnorm. */
static double objective(const pd_cd_problem *pr, const double *w, const double *q,
                        double *gnorm)
{
    double m = (double)pr->m, quad = 0, lin = 0, pen = 0, gg = 0;
    for (size_t j = 0; j < pr->p; j++) {
        quad += w[j] * q[j];
        lin += pr->zy[j] * w[j];
        pen += penalty(pr, j) * w[j] * w[j];
        double g = (q[j] - pr->zy[j]) / m + penalty(pr, j) * w[j];
        gg += g * g;
    }
    *gnorm = sqrt(gg);
    return (quad - 2 * lin + pr->yy) / (2 * m) + 0.5 * pen;
}

bool pd_batch_cholesky_solve(double *A, double *b, size_t k)
{
    for (size_t j = 0; j < k; j++) {
        double s = A[j * k + j];
        for (size_t l = 0; l < j; l++)
            s -= A[j * k + l] * A[j * k + l];
        if (!(s > 0))
            return false;
        A[j * k + j] = sqrt(s);
        for (size_t i = j + 1; i < k; i++) {
            double t = A[i * k + j];
            for (size_t l = 0; l < j; l++)
                t -= A[i * k + l] * A[j * k + l];
            A[i * k + j] = t / A[j * k + j];
        }
    }
    for (size_t i = 0; i < k; i++) {   /* L y = b */
        for (size_t l = 0; l < i; l++)
            b[i] -= A[i * k + l] * b[l];
        b[i] /= A[i * k + i];
    }
    for (size_t i = k; i-- > 0;) {     /* L' x = y */
        for (size_t l = i + 1; l < k; l++)
            b[i] -= A[l * k + i] * b[l];
        b[i] /= A[i * k + i];
    }
    return true;
}

double pd_cd_loss(const pd_cd_problem *pr, const double *w)
{
    double gnorm, acc = 0;
    double *q = pd_malloc(pr->p * sizeof *q);
    if (!q)
        return NAN;
    for (size_t i = 0; i < pr->p; i++) {
        acc = 0;
        for (size_t j = 0; j < pr->p; j++)
            acc += gram(pr, i, j) * w[j];
        q[i] = acc;
    }
    double f = objective(pr, w, q, &gnorm);
    free(q);
    return f;
}

/* Minimize over coordinates [lo, hi) exactly, keeping q = G w. */
static bool block_step(const pd_cd_problem *pr, size_t lo, size_t hi, double *w, double *q,
                       double *A, double *r)
{
    size_t k = hi - lo, p = pr->p;
    double m = (double)pr->m;
    for (size_t i = 0; i < k; i++) {
        size_t a = lo + i;
        r[i] = -((q[a] - pr->zy[a]) / m + penalty(pr, a) * w[a]);
        for (size_t j = 0; j < k; j++)
            A[i * k + j] = gram(pr, a, lo + j) / m + (i == j ? penalty(pr, a) : 0);
    }
    if (!pd_batch_cholesky_solve(A, r, k))
        return false;
    for (size_t i = 0; i < k; i++) {
        w[lo + i] += r[i];
        for (size_t j = 0; j < p; j++)
            q[j] += gram(pr, j, lo + i) * r[i];
    }
    return true;
}

int pd_batch_cd(const pd_batch_opts *o, const pd_cd_problem *pr, float *x,
                pd_batch_report report, void *ctx, pd_batch_result *res)
{
    size_t p = pr->p, bs = o->block_size < p ? o->block_size : p;
    size_t nb = (p + bs - 1) / bs;
    double *w = pd_malloc(p * sizeof *w), *q = pd_calloc(p, sizeof *q);
    double *A = pd_malloc(bs * bs * sizeof *A), *r = pd_malloc(bs * sizeof *r);
    size_t *order = pd_malloc(nb * sizeof *order);
    memset(res, 0, sizeof *res);
    int err = PD_OK;
    if (!w || !q || !A || !r || !order) {
        err = PD_ENOMEM;
        goto out;
    }
    for (size_t j = 0; j < p; j++)
        w[j] = x[j];
    for (size_t i = 0; i < p; i++)
        for (size_t j = 0; j < p; j++)
            q[i] += gram(pr, i, j) * w[j];
    for (size_t b = 0; b < nb; b++)
        order[b] = b;
    pd_rng rng = pd_rng_make(o->seed, PD_STREAM_CD, 0);
    double gnorm, f = objective(pr, w, q, &gnorm);
    bool stop = false;
    pd_batch_state st = {.evaluations = 1, .line_search_steps = 1, .f = f, .gnorm = gnorm,
                         .x = x, .g = NULL};
    if (report)
        PD_TRY_GOTO(err, report(ctx, &st, &stop), out);
    const char *reason = stop ? "stopped" : gnorm <= o->grad_tol ? "gradient_norm" : NULL;
    int64_t it = 0;
    while (!reason) {
        if (o->random_blocks)
            pd_rng_shuffle(&rng, order, nb);
        for (size_t b = 0; b < nb; b++) {
            size_t lo = order[b] * bs, hi = lo + bs < p ? lo + bs : p;
            if (!block_step(pr, lo, hi, w, q, A, r)) {
                err = PD_FAIL(PD_ETRAIN, "cd: the block of coordinates [%zu, %zu) has a "
                              "singular Hessian (a constant feature with model.l2 = 0?); "
                              "set model.l2 > 0", lo, hi);
                goto out;
            }
        }
        it++;
        double f_old = f;
        f = objective(pr, w, q, &gnorm);
        for (size_t j = 0; j < p; j++)
            x[j] = (float)w[j];
        st = (pd_batch_state){.iteration = it, .evaluations = 1, .f = f, .gnorm = gnorm,
                              .step = 1, .x = x};
        if (report)
            PD_TRY_GOTO(err, report(ctx, &st, &stop), out);
        if (stop)
            reason = "stopped";
        else if (gnorm <= o->grad_tol)
            reason = "gradient_norm";
        else if (f_old - f <= o->loss_tol * fmax(fabs(f_old), 1e-300))
            reason = "relative_decrease";
        else if (it >= o->max_iterations)
            reason = "max_iterations";
    }
    res->iterations = it;
    res->evaluations = 1;
    res->f = f;
    res->gnorm = gnorm;
    res->reason = reason;
out:
    free(order);
    free(r);
    free(A);
    free(q);
    free(w);
    return err;
}
