/* The batch minimizer: search directions (cg, bfgs, lbfgs) and the strong
 * Wolfe line search with its backtracking fallback (paramd/batch.h says
 * what each does). No model, no MPI: an objective is a callback. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/batch.h"
#include "paramd/error.h"
#include "paramd/optim.h"
#include "state.h"

typedef struct mini {
    const pd_batch_opts *o;
    size_t n;               /* this part's coordinates [off, off + n) of N */
    size_t N, off;
    const pd_batch_comm *comm;   /* NULL: one part */
    pd_batch_fg fg;
    void *ctx;
    float *x, *xt;          /* current and trial point [n] */
    double *g, *gt, *d;     /* gradient at x, at xt; direction [n] */
    double f, ft, dg;       /* f(x), f(xt), g.d at x */
    double f_prev;          /* f before the last step (cg's first trial) */
    int64_t it, evals;      /* iterations done, evaluations */
    int steps;              /* evaluations of the current search */
    struct pd_batch_run run;   /* for pd_batch_save */
    /* bfgs: H [n][n], s, y, hy [n]; lbfgs: s, y [history][n], rho, alpha [history] */
    double *H, *s, *y, *hy, *rho, *alpha;
    int pairs, newest;      /* memory in use; lbfgs ring slot of the newest */
} mini;

void pd_batch_part_range(size_t n, int parts, int part, size_t *lo, size_t *hi)
{
    size_t s0 = PD_BATCH_SLICES * (size_t)part / (size_t)parts;
    size_t s1 = PD_BATCH_SLICES * (size_t)(part + 1) / (size_t)parts;
    *lo = n * s0 / PD_BATCH_SLICES;
    *hi = n * s1 / PD_BATCH_SLICES;
}

/* bfgs's matrix-vector rows: one part, index order. */
static double ldot(const double *a, const double *b, size_t n)
{
    double acc = 0;
    for (size_t i = 0; i < n; i++)
        acc += a[i] * b[i];
    return acc;
}

/* sum_i a_i (b_i - c_i) (c NULL: a.b) over every part's coordinates:
 * the slices' partial sums, exchanged, added in slice order. */
static int dot3(const mini *m, const double *a, const double *b, const double *c, double *out)
{
    double part[PD_BATCH_SLICES] = {0};
    for (size_t j = 0; j < PD_BATCH_SLICES; j++) {
        size_t lo = m->N * j / PD_BATCH_SLICES, hi = m->N * (j + 1) / PD_BATCH_SLICES;
        if (lo < m->off || hi > m->off + m->n || lo == hi)
            continue;   /* another part's slice */
        double acc = 0;
        for (size_t i = lo - m->off; i < hi - m->off; i++)
            acc += a[i] * (c ? b[i] - c[i] : b[i]);
        part[j] = acc;
    }
    if (m->comm && m->comm->parts > 1)
        PD_TRY(m->comm->sum(m->comm->ctx, part, PD_BATCH_SLICES));
    double acc = 0;
    for (size_t j = 0; j < PD_BATCH_SLICES; j++)
        acc += part[j];
    *out = acc;
    return PD_OK;
}

static int dot(const mini *m, const double *a, const double *b, double *out)
{
    return dot3(m, a, b, NULL, out);
}

static int norm(const mini *m, const double *a, double *out)
{
    PD_TRY(dot3(m, a, a, NULL, out));
    *out = sqrt(*out);
    return PD_OK;
}

/* f and g at x + a d into ft, gt; returns g(x + a d).d in *dphi. */
static int trial(mini *m, double a, double *dphi)
{
    for (size_t i = 0; i < m->n; i++)
        m->xt[i] = (float)((double)m->x[i] + a * m->d[i]);
    PD_TRY(m->fg(m->ctx, m->xt, &m->ft, m->gt));
    m->evals++;
    m->steps++;
    return dot(m, m->gt, m->d, dphi);
}

/* The next trial inside the bracket [a, b] (either order) from f and g.d
 * at both ends: the minimizer of the cubic through them (N&W 3.59), else
 * of the quadratic through fa, da and fb, else the midpoint; kept 1% of
 * the bracket away from its ends, so each trial shrinks it. Both
 * interpolations are exact on a quadratic. */
static double interpolate(double a, double fa, double da, double b, double fb, double db)
{
    double w = fabs(b - a), lo = fmin(a, b) + 0.01 * w, hi = fmax(a, b) - 0.01 * w;
    double t = NAN;
    if (isfinite(fb) && isfinite(db)) {
        double d1 = da + db - 3 * (fa - fb) / (a - b);
        double disc = d1 * d1 - da * db;
        if (disc >= 0) {
            double d2 = copysign(sqrt(disc), b - a), den = db - da + 2 * d2;
            if (den != 0)
                t = b - (b - a) * (db + d2 - d1) / den;
        }
    }
    if (!(t >= lo && t <= hi) && isfinite(fb)) {
        double h = b - a, den = 2 * (fb - fa - da * h);
        if (den > 0)
            t = a - da * h * h / den;
    }
    if (!isfinite(t))
        return 0.5 * (a + b);
    return fmin(fmax(t, lo), hi);
}

/* Strong Wolfe search from the first trial a1 (N&W Algorithms 3.5 and
 * 3.6); *ok tells whether the last trial (in xt, ft, gt) satisfies it. */
static int wolfe(mini *m, double a1, double c2, double *step, bool *ok)
{
    const double f0 = m->f, d0 = m->dg;
    double a_prev = 0, f_prev = f0, d_prev = d0, a = a1, fa, da;
    double lo, flo, dlo, hi, fhi, dhi;
    const int last = m->steps + PD_BATCH_WOLFE_EVALS;
    *ok = false;
    for (int i = 0;; i++) {
        if (m->steps >= last)
            return PD_OK;
        PD_TRY(trial(m, a, &da));
        fa = m->ft;
        if (!isfinite(fa) || fa > f0 + PD_BATCH_C1 * a * d0 || (i > 0 && fa >= f_prev)) {
            lo = a_prev, flo = f_prev, dlo = d_prev, hi = a, fhi = fa, dhi = da;
            break;
        }
        if (fabs(da) <= -c2 * d0) {
            *step = a;
            *ok = true;
            return PD_OK;
        }
        if (da >= 0) {
            lo = a, flo = fa, dlo = da, hi = a_prev, fhi = f_prev, dhi = d_prev;
            break;
        }
        a_prev = a, f_prev = fa, d_prev = da;
        a *= 2;
    }
    /* zoom: lo satisfies the sufficient decrease and has the lower f; the
     * interval [lo, hi] holds a Wolfe point */
    while (m->steps < last) {
        a = interpolate(lo, flo, dlo, hi, fhi, dhi);
        if (a == lo || a == hi)
            return PD_OK;   /* the interval has collapsed in double */
        PD_TRY(trial(m, a, &da));
        fa = m->ft;
        if (!isfinite(fa) || fa > f0 + PD_BATCH_C1 * a * d0 || fa >= flo) {
            hi = a, fhi = fa, dhi = da;
            continue;
        }
        if (fabs(da) <= -c2 * d0) {
            *step = a;
            *ok = true;
            return PD_OK;
        }
        if (da * (hi - lo) >= 0)
            hi = lo, fhi = flo, dhi = dlo;
        lo = a, flo = fa, dlo = da;
    }
    return PD_OK;
}

/* Backtracking: a1, a1/2, ... until f(x + a d) <= f(x) + c1 a g.d. */
static int armijo(mini *m, double a1, double *step, bool *ok)
{
    double a = a1, da;
    *ok = false;
    for (int i = 0; i < PD_BATCH_ARMIJO_EVALS; i++, a *= 0.5) {
        PD_TRY(trial(m, a, &da));
        if (isfinite(m->ft) && m->ft <= m->f + PD_BATCH_C1 * a * m->dg) {
            *step = a;
            *ok = true;
            return PD_OK;
        }
    }
    return PD_OK;
}

static void clear_memory(mini *m)
{
    m->pairs = 0;
    m->newest = -1;
}

/* Remember the step s = xt - x and y = gt - g (before x and g move);
 * pairs without positive curvature s.y are skipped. */
static int remember(mini *m)
{
    size_t n = m->n;
    if (m->o->method == PD_OPT_CG)
        return PD_OK;
    int slot = m->o->method == PD_OPT_LBFGS ? (m->newest + 1) % m->o->history : 0;
    double *s = m->s + (size_t)slot * n, *y = m->y + (size_t)slot * n;
    for (size_t i = 0; i < n; i++) {
        s[i] = (double)m->xt[i] - (double)m->x[i];
        y[i] = m->gt[i] - m->g[i];
    }
    double sy, ss, yy;
    PD_TRY(dot(m, s, y, &sy));
    PD_TRY(dot(m, s, s, &ss));
    PD_TRY(dot(m, y, y, &yy));
    if (!(sy > 1e-12 * sqrt(ss * yy)))
        return PD_OK;
    if (m->o->method == PD_OPT_LBFGS) {
        m->rho[slot] = 1 / sy;
        m->newest = slot;
        if (m->pairs < m->o->history)
            m->pairs++;
        return PD_OK;
    }
    /* bfgs (N&W 6.17): H+ = (I - r s y') H (I - r y s') + r s s', r = 1/s'y,
     * which is H - r (s Hy' + Hy s') + (r^2 y'Hy + r) s s' for a symmetric
     * H; before the first update H = (s'y / y'y) I (N&W 6.20). */
    double *H = m->H, *Hy = m->hy, r = 1 / sy;
    if (m->pairs == 0) {
        double gamma = sy / yy;
        memset(H, 0, n * n * sizeof *H);
        for (size_t i = 0; i < n; i++)
            H[i * n + i] = gamma;
    }
    for (size_t i = 0; i < n; i++)
        Hy[i] = ldot(H + i * n, y, n);
    double yHy;
    PD_TRY(dot(m, y, Hy, &yHy));
    double c = r * r * yHy + r;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            H[i * n + j] += c * s[i] * s[j] - r * (s[i] * Hy[j] + Hy[i] * s[j]);
    m->pairs = 1;
    return PD_OK;
}

/* The next direction at x (gradient g) from the memory; cg from the
 * previous direction d and the previous gradient g_old. */
static int direction(mini *m, const double *g_old)
{
    size_t n = m->n;
    double *d = m->d;
    const double *g = m->g;
    if (m->pairs == 0 && m->o->method != PD_OPT_CG) {
        for (size_t i = 0; i < n; i++)
            d[i] = -g[i];
        return PD_OK;
    }
    if (m->o->method == PD_OPT_CG) {
        double gg_old, acc, beta;
        PD_TRY(dot(m, g_old, g_old, &gg_old));
        if (m->o->cg_variant == PD_CG_FR) {
            PD_TRY(dot(m, g, g, &acc));
            beta = acc / gg_old;
        } else {
            PD_TRY(dot3(m, g, g, g_old, &acc));
            beta = fmax(0, acc / gg_old);
        }
        if (!isfinite(beta) || m->pairs == 0)
            beta = 0;
        for (size_t i = 0; i < n; i++)
            d[i] = -g[i] + beta * d[i];
        return PD_OK;
    }
    if (m->o->method == PD_OPT_BFGS) {
        for (size_t i = 0; i < n; i++)
            d[i] = -ldot(m->H + i * n, g, n);
        return PD_OK;
    }
    /* lbfgs two-loop recursion (N&W Algorithm 7.4), H0 = (s'y / y'y) I */
    int h = m->o->history;
    for (size_t i = 0; i < n; i++)
        d[i] = g[i];
    for (int k = 0, slot = m->newest; k < m->pairs; k++, slot = (slot + h - 1) % h) {
        const double *s = m->s + (size_t)slot * n, *y = m->y + (size_t)slot * n;
        double sd;
        PD_TRY(dot(m, s, d, &sd));
        m->alpha[slot] = m->rho[slot] * sd;
        for (size_t i = 0; i < n; i++)
            d[i] -= m->alpha[slot] * y[i];
    }
    const double *yn = m->y + (size_t)m->newest * n;
    double yy;
    PD_TRY(dot(m, yn, yn, &yy));
    double gamma = 1 / (m->rho[m->newest] * yy);
    for (size_t i = 0; i < n; i++)
        d[i] *= gamma;
    int oldest = (m->newest - m->pairs + 1 + h) % h;
    for (int k = 0, slot = oldest; k < m->pairs; k++, slot = (slot + 1) % h) {
        const double *s = m->s + (size_t)slot * n, *y = m->y + (size_t)slot * n;
        double yd;
        PD_TRY(dot(m, y, d, &yd));
        double b = m->rho[slot] * yd;
        for (size_t i = 0; i < n; i++)
            d[i] += s[i] * (m->alpha[slot] - b);
    }
    for (size_t i = 0; i < n; i++)
        d[i] = -d[i];
    return PD_OK;
}

static int alloc_all(mini *m)
{
    size_t n = m->n, h = (size_t)m->o->history;
    m->xt = pd_malloc(n * sizeof *m->xt);
    m->g = pd_calloc(n, sizeof *m->g);
    m->gt = pd_calloc(n, sizeof *m->gt);
    m->d = pd_calloc(n, sizeof *m->d);
    if (!m->xt || !m->g || !m->gt || !m->d)
        return PD_ENOMEM;
    if (m->o->method == PD_OPT_BFGS) {
        if (n && n > SIZE_MAX / sizeof(double) / n)
            return PD_FAIL(PD_ENOMEM, "bfgs: an inverse Hessian of %zu parameters overflows", n);
        m->H = pd_malloc(n * n * sizeof *m->H);
        m->s = pd_malloc(n * sizeof *m->s);
        m->y = pd_malloc(n * sizeof *m->y);
        m->hy = pd_malloc(n * sizeof *m->hy);
        if (!m->H || !m->s || !m->y || !m->hy)
            return PD_FAIL(PD_ENOMEM, "bfgs: cannot allocate the %zu x %zu inverse Hessian "
                           "(use lbfgs)", n, n);
    } else if (m->o->method == PD_OPT_LBFGS) {   /* zeroed: pd_batch_save writes every slot */
        m->s = pd_calloc(h * n, sizeof *m->s);
        m->y = pd_calloc(h * n, sizeof *m->y);
        m->rho = pd_calloc(h, sizeof *m->rho);
        m->alpha = pd_calloc(h, sizeof *m->alpha);
        if (!m->s || !m->y || !m->rho || !m->alpha)
            return PD_ENOMEM;
    }
    return PD_OK;
}

static void free_all(mini *m)
{
    free(m->alpha);
    free(m->rho);
    free(m->hy);
    free(m->y);
    free(m->s);
    free(m->H);
    free(m->d);
    free(m->gt);
    free(m->g);
    free(m->xt);
}

/* The state's words (state.h): header, it, evals, f, f_prev, pairs,
 * newest, g, d, then lbfgs's rho, s, y or bfgs's H (its memory, pairs > 0). */
static size_t mini_save(const void *self, unsigned char *buf, size_t size)
{
    const mini *m = self;
    size_t n = m->n, h = (size_t)m->o->history;
    wbuf b = {buf, 0, size};
    w_header(&b, m->o, m->N, m->off, n);
    w_u64(&b, (uint64_t)m->it);
    w_u64(&b, (uint64_t)m->evals);
    w_f64(&b, m->f);
    w_f64(&b, m->f_prev);
    w_u64(&b, (uint64_t)(int64_t)m->pairs);
    w_u64(&b, (uint64_t)(int64_t)m->newest);
    w_f64s(&b, m->g, n);
    w_f64s(&b, m->d, n);
    if (m->o->method == PD_OPT_LBFGS) {
        w_f64s(&b, m->rho, h);
        w_f64s(&b, m->s, h * n);
        w_f64s(&b, m->y, h * n);
    } else if (m->o->method == PD_OPT_BFGS && m->pairs > 0) {
        w_f64s(&b, m->H, n * n);
    }
    return b.at;
}

static int mini_load(mini *m)
{
    const pd_batch_opts *o = m->o;
    size_t n = m->n, h = (size_t)o->history;
    rbuf b = {o->resume, 0, o->resume_size, false};
    PD_TRY(pd_batch_check_header(&b, o, m->N, m->off, n));
    m->it = (int64_t)r_u64(&b);
    m->evals = (int64_t)r_u64(&b);
    m->f = r_f64(&b);
    m->f_prev = r_f64(&b);
    int64_t pairs = (int64_t)r_u64(&b), newest = (int64_t)r_u64(&b);
    r_f64s(&b, m->g, n);
    r_f64s(&b, m->d, n);
    bool ok = pairs >= 0 && pairs <= (o->method == PD_OPT_LBFGS ? o->history : 1) &&
              newest >= -1 && newest < (o->method == PD_OPT_LBFGS ? o->history : 1) &&
              m->it >= 0 && m->evals >= 1;
    m->pairs = ok ? (int)pairs : 0;
    m->newest = ok ? (int)newest : -1;
    if (o->method == PD_OPT_LBFGS) {
        r_f64s(&b, m->rho, h);
        r_f64s(&b, m->s, h * n);
        r_f64s(&b, m->y, h * n);
    } else if (o->method == PD_OPT_BFGS && m->pairs > 0) {
        r_f64s(&b, m->H, n * n);
    }
    if (!ok)
        b.bad = true;
    return pd_batch_check_end(&b, o);
}

static int report_state(mini *m, pd_batch_report report, double step, bool arm,
                        bool restarted, bool resumed, bool *stop)
{
    double gnorm;
    PD_TRY(norm(m, m->g, &gnorm));
    pd_batch_state st = {
        .iteration = m->it, .evaluations = m->evals, .line_search_steps = m->steps,
        .armijo = arm, .restarted = restarted, .f = m->f, .gnorm = gnorm,
        .step = step, .x = m->x, .g = m->g, .resumed = resumed, .run = &m->run,
    };
    *stop = false;
    return report ? report(m->ctx, &st, stop) : PD_OK;
}

/* One iteration's search along d (restarting along -g when d fails):
 * *ok false when no step along -g was accepted either. */
static int search(mini *m, double *step, bool *arm, bool *restarted, bool *ok)
{
    size_t n = m->n;
    double c2 = m->o->method == PD_OPT_CG ? 0.1 : 0.9;
    *restarted = false;
    m->steps = 0;
    for (;;) {
        PD_TRY(dot(m, m->g, m->d, &m->dg));
        bool steepest = m->pairs == 0;
        if (!(m->dg < 0)) {   /* not a descent direction: restart */
            clear_memory(m);
            for (size_t i = 0; i < n; i++)
                m->d[i] = -m->g[i];
            PD_TRY(dot(m, m->g, m->d, &m->dg));
            steepest = true;
            *restarted = true;
        }
        double gnorm, a1;
        PD_TRY(norm(m, m->g, &gnorm));
        if (steepest)
            a1 = m->o->step0 * fmin(1, 1 / gnorm);
        else if (m->o->method == PD_OPT_CG)   /* N&W 3.60: the last decrease again */
            a1 = 2 * (m->f - m->f_prev) / m->dg;
        else
            a1 = 1;
        if (!(a1 > 0) || !isfinite(a1))
            a1 = 1;
        *arm = false;
        PD_TRY(wolfe(m, a1, c2, step, ok));
        if (!*ok) {
            *arm = true;
            PD_TRY(armijo(m, a1, step, ok));
        }
        if (*ok)
            return PD_OK;
        if (steepest)
            return PD_OK;
        clear_memory(m);   /* a failed quasi-Newton or conjugate direction */
        for (size_t i = 0; i < n; i++)
            m->d[i] = -m->g[i];
        *restarted = true;
    }
}

int pd_batch_minimize(const pd_batch_opts *o, size_t n, float *x, pd_batch_fg fg,
                      pd_batch_report report, void *ctx, pd_batch_result *res)
{
    mini m = {.o = o, .N = n, .n = n, .fg = fg, .ctx = ctx, .x = x};
    m.run = (struct pd_batch_run){.save = mini_save, .self = &m};
    memset(res, 0, sizeof *res);
    clear_memory(&m);
    int err = PD_OK;
    bool stop;
    if (o->comm && o->comm->parts > 1) {
        if (o->method == PD_OPT_BFGS)
            return PD_FAIL(PD_EINPUT, "bfgs keeps its n x n inverse Hessian in one process: "
                           "it runs on one server");
        size_t lo, hi;
        pd_batch_part_range(n, o->comm->parts, o->comm->part, &lo, &hi);
        m.comm = o->comm;
        m.off = lo;
        m.n = hi - lo;
    }
    n = m.n;
    PD_TRY_GOTO(err, alloc_all(&m), out);
    double gnorm;
    if (o->resume) {
        /* The saved boundary: its row is written; its stopping rules run
         * again as they did (a stop by the report does not carry over). */
        PD_TRY_GOTO(err, mini_load(&m), out);
        m.steps = 0;
        PD_TRY_GOTO(err, report_state(&m, report, 0, false, false, true, &stop), out);
    } else {
        PD_TRY_GOTO(err, fg(ctx, x, &m.f, m.g), out);
        m.evals = 1;
        m.steps = 1;
        if (!isfinite(m.f)) {
            err = PD_FAIL(PD_ETRAIN, "%s: the loss at the starting point is not finite",
                          pd_optimizer_names[o->method]);
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            m.d[i] = -m.g[i];
        PD_TRY_GOTO(err, report_state(&m, report, 0, false, false, false, &stop), out);
    }
    PD_TRY_GOTO(err, norm(&m, m.g, &gnorm), out);
    const char *reason = pd_batch_why_stop(o, m.it, m.f_prev, m.f, gnorm, stop);
    while (!reason) {
        double step;
        bool arm, restarted, ok;
        PD_TRY_GOTO(err, search(&m, &step, &arm, &restarted, &ok), out);
        if (!ok) {
            reason = "line_search_failed";
            break;
        }
        m.it++;
        PD_TRY_GOTO(err, remember(&m), out);
        double f_old = m.f;
        m.f_prev = f_old;
        /* x, g <- xt, gt; the old gradient stays in gt for cg's beta */
        memcpy(m.x, m.xt, n * sizeof *m.x);
        double *t = m.g;
        m.g = m.gt;
        m.gt = t;
        m.f = m.ft;
        if (o->method == PD_OPT_CG)
            m.pairs = 1;   /* d now holds a previous direction */
        PD_TRY_GOTO(err, direction(&m, m.gt), out);
        PD_TRY_GOTO(err, report_state(&m, report, step, arm, restarted, false, &stop), out);
        PD_TRY_GOTO(err, norm(&m, m.g, &gnorm), out);
        reason = pd_batch_why_stop(o, m.it, f_old, m.f, gnorm, stop);
    }
    res->iterations = m.it;
    res->evaluations = m.evals;
    res->f = m.f;
    res->gnorm = gnorm;
    res->reason = reason;
out:
    free_all(&m);
    return err;
}
