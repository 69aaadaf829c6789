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
#include "state.h"

size_t pd_cd_packed_index(size_t p, size_t i, size_t j)
{
    /* rows 0..i-1 of the upper triangle hold p, p-1, ..., p-i+1 entries */
    return i * p - i * (i - 1) / 2 + (j - i);
}

void pd_batch_cd_range(size_t p, size_t block_size, int parts, int part, size_t *lo, size_t *hi)
{
    size_t bs = block_size < p ? block_size : p, nb = (p + bs - 1) / bs;
    *lo = nb * (size_t)part / (size_t)parts * bs;
    *hi = nb * (size_t)(part + 1) / (size_t)parts * bs;
    *lo = *lo < p ? *lo : p;
    *hi = *hi < p ? *hi : p;
}

/* G[i][j], either order; with rows, one of i, j is the part's. */
static double gram(const pd_cd_problem *pr, size_t i, size_t j)
{
    if (pr->rows)
        return i >= pr->row_lo && i < pr->row_hi ? pr->rows[(i - pr->row_lo) * pr->p + j]
                                                 : pr->rows[(j - pr->row_lo) * pr->p + i];
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

/* The step r[k] that minimizes over coordinates [lo, lo + k) exactly. */
static bool block_solve(const pd_cd_problem *pr, size_t lo, size_t k, const double *w,
                        const double *q, double *A, double *r)
{
    double m = (double)pr->m;
    for (size_t i = 0; i < k; i++) {
        size_t a = lo + i;
        r[i] = -((q[a] - pr->zy[a]) / m + penalty(pr, a) * w[a]);
        for (size_t j = 0; j < k; j++)
            A[i * k + j] = gram(pr, a, lo + j) / m + (i == j ? penalty(pr, a) : 0);
    }
    return pd_batch_cholesky_solve(A, r, k);
}

/* w += r on [lo, lo + k), and q = G w kept up to date on [qlo, qhi). */
static void block_apply(const pd_cd_problem *pr, size_t lo, size_t k, const double *r,
                        size_t qlo, size_t qhi, double *w, double *q)
{
    for (size_t i = 0; i < k; i++) {
        w[lo + i] += r[i];
        for (size_t j = qlo; j < qhi; j++)
            q[j] += gram(pr, j, lo + i) * r[i];
    }
}

/* One block's turn: its part solves it and (with several parts) sends the
 * step, with a flag saying whether the solve worked, to the others. */
static int block_step(const pd_batch_opts *o, const pd_cd_problem *pr, size_t lo, size_t hi,
                      size_t qlo, size_t qhi, double *w, double *q, double *A, double *r)
{
    size_t k = hi - lo;
    int owner = 0;
    if (o->comm && o->comm->parts > 1)
        for (int s = 0; s < o->comm->parts; s++) {
            size_t a, b;
            pd_batch_cd_range(pr->p, o->block_size, o->comm->parts, s, &a, &b);
            if (lo >= a && lo < b)
                owner = s;
        }
    bool mine = !o->comm || o->comm->part == owner;
    r[k] = mine && block_solve(pr, lo, k, w, q, A, r) ? 1 : 0;
    if (o->comm && o->comm->parts > 1)
        PD_TRY(o->comm->bcast(o->comm->ctx, r, k + 1, owner));
    if (r[k] == 0)
        return PD_FAIL(PD_ETRAIN, "cd: the block of coordinates [%zu, %zu) has a singular "
                       "Hessian (a constant feature with model.l2 = 0?); set model.l2 > 0",
                       lo, hi);
    block_apply(pr, lo, k, r, qlo, qhi, w, q);
    return PD_OK;
}

/* f and |g| at w from q = G w on [qlo, qhi): with several parts, every
 * part's q gathered into qall first (exact: the others' entries are 0). */
static int cycle_objective(const pd_batch_opts *o, const pd_cd_problem *pr, const double *w,
                           const double *q, double *qall, double *f, double *gnorm)
{
    if (!o->comm || o->comm->parts == 1) {
        *f = objective(pr, w, q, gnorm);
        return PD_OK;
    }
    memcpy(qall, q, pr->p * sizeof *qall);
    PD_TRY(o->comm->sum(o->comm->ctx, qall, pr->p));
    *f = objective(pr, w, qall, gnorm);
    return PD_OK;
}

/* cd's state between cycles (pd_batch_save): header, it, f, f_old,
 * gnorm, the random stream, the block order, w, q (the part's rows). */
typedef struct cdrun {
    const pd_batch_opts *o;
    size_t p, nb, qlo, qhi;
    int64_t it;
    double f, f_old, gnorm;
    pd_rng rng;
    size_t *order;          /* [nb] */
    double *w, *q;          /* [p]; q on [qlo, qhi) */
} cdrun;

static size_t cd_save(const void *self, unsigned char *buf, size_t size)
{
    const cdrun *c = self;
    wbuf b = {buf, 0, size};
    w_header(&b, c->o, c->p, c->qlo, c->qhi - c->qlo);
    w_u64(&b, (uint64_t)c->it);
    w_f64(&b, c->f);
    w_f64(&b, c->f_old);
    w_f64(&b, c->gnorm);
    for (int k = 0; k < 4; k++)
        w_u64(&b, c->rng.s[k]);
    for (size_t k = 0; k < c->nb; k++)
        w_u64(&b, c->order[k]);
    w_f64s(&b, c->w, c->p);
    w_f64s(&b, c->q + c->qlo, c->qhi - c->qlo);
    return b.at;
}

static int cd_load(cdrun *c)
{
    const pd_batch_opts *o = c->o;
    rbuf b = {o->resume, 0, o->resume_size, false};
    PD_TRY(pd_batch_check_header(&b, o, c->p, c->qlo, c->qhi - c->qlo));
    c->it = (int64_t)r_u64(&b);
    c->f = r_f64(&b);
    c->f_old = r_f64(&b);
    c->gnorm = r_f64(&b);
    for (int k = 0; k < 4; k++)
        c->rng.s[k] = r_u64(&b);
    bool ok = c->it >= 0;
    for (size_t k = 0; k < c->nb; k++) {
        uint64_t v = r_u64(&b);
        ok = ok && v < c->nb;
        c->order[k] = ok ? (size_t)v : k;
    }
    r_f64s(&b, c->w, c->p);
    r_f64s(&b, c->q + c->qlo, c->qhi - c->qlo);
    if (!ok)
        b.bad = true;
    return pd_batch_check_end(&b, o);
}

int pd_batch_cd(const pd_batch_opts *o, const pd_cd_problem *pr, float *x,
                pd_batch_report report, void *ctx, pd_batch_result *res)
{
    size_t p = pr->p, bs = o->block_size < p ? o->block_size : p;
    cdrun c = {.o = o, .p = p, .nb = (p + bs - 1) / bs, .qlo = 0, .qhi = p};
    if (o->comm && o->comm->parts > 1) {   /* the rows of G held */
        c.qlo = pr->row_lo;
        c.qhi = pr->row_hi;
    }
    struct pd_batch_run run = {.save = cd_save, .self = &c};
    size_t nb = c.nb, qlo = c.qlo, qhi = c.qhi;
    double *w = c.w = pd_malloc(p * sizeof *w), *q = c.q = pd_calloc(p, sizeof *q);
    double *qall = pd_malloc(p * sizeof *qall);
    double *A = pd_malloc(bs * bs * sizeof *A), *r = pd_malloc((bs + 1) * sizeof *r);
    size_t *order = c.order = pd_malloc(nb * sizeof *order);
    memset(res, 0, sizeof *res);
    int err = PD_OK;
    bool stop = false;
    if (!w || !q || !qall || !A || !r || !order) {
        err = PD_ENOMEM;
        goto out;
    }
    if (o->resume) {
        /* The saved boundary (its row is written); its stopping rules
         * run again as they did. */
        PD_TRY_GOTO(err, cd_load(&c), out);
        for (size_t j = 0; j < p; j++)
            x[j] = (float)w[j];
    } else {
        for (size_t j = 0; j < p; j++)
            w[j] = x[j];
        for (size_t i = qlo; i < qhi; i++)
            for (size_t j = 0; j < p; j++)
                q[i] += gram(pr, i, j) * w[j];
        for (size_t b = 0; b < nb; b++)
            order[b] = b;
        c.rng = pd_rng_make(o->seed, PD_STREAM_CD, 0);
        PD_TRY_GOTO(err, cycle_objective(o, pr, w, q, qall, &c.f, &c.gnorm), out);
    }
    pd_batch_state st = {.iteration = c.it, .evaluations = 1, .line_search_steps = !o->resume,
                         .f = c.f, .gnorm = c.gnorm, .step = c.it > 0, .x = x, .g = NULL,
                         .resumed = o->resume != NULL, .run = &run};
    if (report)
        PD_TRY_GOTO(err, report(ctx, &st, &stop), out);
    const char *reason = pd_batch_why_stop(o, c.it, c.f_old, c.f, c.gnorm, stop);
    while (!reason) {
        if (o->random_blocks)
            pd_rng_shuffle(&c.rng, order, nb);
        for (size_t b = 0; b < nb; b++) {
            size_t lo = order[b] * bs, hi = lo + bs < p ? lo + bs : p;
            PD_TRY_GOTO(err, block_step(o, pr, lo, hi, qlo, qhi, w, q, A, r), out);
        }
        c.it++;
        c.f_old = c.f;
        PD_TRY_GOTO(err, cycle_objective(o, pr, w, q, qall, &c.f, &c.gnorm), out);
        for (size_t j = 0; j < p; j++)
            x[j] = (float)w[j];
        st = (pd_batch_state){.iteration = c.it, .evaluations = 1, .f = c.f, .gnorm = c.gnorm,
                              .step = 1, .x = x, .run = &run};
        if (report)
            PD_TRY_GOTO(err, report(ctx, &st, &stop), out);
        reason = pd_batch_why_stop(o, c.it, c.f_old, c.f, c.gnorm, stop);
    }
    res->iterations = c.it;
    res->evaluations = 1;
    res->f = c.f;
    res->gnorm = c.gnorm;
    res->reason = reason;
out:
    free(order);
    free(r);
    free(A);
    free(qall);
    free(q);
    free(w);
    return err;
}
