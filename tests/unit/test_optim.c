/* Tests of the optimizer library: each rule against an independent double
 * implementation of its formula, split invariance, save/load, Nesterov's
 * lookahead, schedules, clipping, weight decay, noise statistics, sparse
 * steps, and convergence of every rule with its defaults. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "paramd/error.h"
#include "paramd/le.h"
#include "paramd/optim.h"
#include "paramd/rng.h"
#include "optim_cfg.h"

/* The element-wise rules; the batch methods (cg, bfgs, lbfgs) follow them
 * in the enum and have no element rule (src/batch/). */
#define NRULES ((int)PD_OPT_CG)

static const char *const rule_names[PD_OPT_COUNT] = {
    "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "rmsprop_nesterov",
    "adadelta", "adam", "adamw",
};

/* ---- helpers ------------------------------------------------------------ */

/* A config of `rule` with its defaults, constant schedule, everything off. */
static pd_optim_config cfg_of(pd_optimizer_name rule)
{
    pd_optim_config oc = test_optim_config(rule);
    oc.noise_gamma = 0.55;
    return oc;
}

static pd_optim *make(const pd_optim_config *oc, size_t lo, size_t hi, uint64_t seed)
{
    pd_optim *o = NULL;
    int e = pd_optim_create(oc, lo, hi, seed, &o);
    if (e != PD_OK)
        fail_msg("pd_optim_create(%s): %s", rule_names[oc->name], pd_err_msg());
    assert_non_null(o);
    return o;
}

/* |a - e| <= rtol |e| + atol, reporting both values and the place. */
static void check_close(double a, double e, double rtol, double atol, const char *fmt, ...)
{
    if (fabs(a - e) <= rtol * fabs(e) + atol)
        return;
    char where[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(where, sizeof where, fmt, ap);
    va_end(ap);
    fail_msg("%s: got %.10g, expected %.10g (diff %.3g, rtol %g, atol %g)", where, a, e,
             fabs(a - e), rtol, atol);
}

/* Bitwise equality of float arrays, reporting the first difference. */
static void check_bits(const float *a, const float *b, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            fail_msg("%s: differ at %zu: %.9g vs %.9g", what, i, (double)a[i], (double)b[i]);
}

/* The saved state of o (caller frees). */
static unsigned char *saved(const pd_optim *o, size_t *size)
{
    *size = pd_optim_state_size(o);
    unsigned char *b = malloc(*size);
    assert_non_null(b);
    assert_int_equal(pd_optim_save(o, b, *size), PD_OK);
    return b;
}

/* a's and b's saved states are the same bytes. */
static void check_same_state(const pd_optim *a, const pd_optim *b)
{
    size_t sa, sb;
    unsigned char *ba = saved(a, &sa), *bb = saved(b, &sb);
    assert_int_equal(sa, sb);
    assert_memory_equal(ba, bb, sa);
    free(ba);
    free(bb);
}

static float *fvec(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static void fill_normal(float *x, size_t n, uint64_t seed, double scale)
{
    pd_rng r = pd_rng_make(seed, 99, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * pd_rng_normal(&r));
}

/* ---- independent double reference of every rule ------------------------- */

enum { RN = 8 };
typedef struct ref {
    double th[RN], v[RN], r[RN], s[RN], m[RN];
} ref;

/* One step of the rule in double, straight from the formulas (Goodfellow et
 * al. ch. 8; Kingma and Ba; Loshchilov and Hutter), eta = lr. */
static void ref_step(const pd_optim_config *oc, ref *x, const double *grad, size_t n,
                     int64_t t, double eta)
{
    double a = oc->momentum, rho = oc->rho, d = oc->eps, wd = oc->weight_decay;
    for (size_t i = 0; i < n; i++) {
        double g = grad[i];
        double th0 = x->th[i];
        if (oc->name != PD_OPT_ADAMW)
            g += wd * th0;
        switch (oc->name) {
        case PD_OPT_SGD:
            x->th[i] -= eta * g;
            break;
        case PD_OPT_MOMENTUM:
        case PD_OPT_NESTEROV:
            x->v[i] = a * x->v[i] - eta * g;
            x->th[i] += x->v[i];
            break;
        case PD_OPT_ADAGRAD:
            x->r[i] += g * g;
            x->th[i] -= eta / (d + sqrt(x->r[i])) * g;
            break;
        case PD_OPT_RMSPROP:
            x->r[i] = rho * x->r[i] + (1 - rho) * g * g;
            x->th[i] -= eta / sqrt(d + x->r[i]) * g;
            break;
        case PD_OPT_RMSPROP_NESTEROV:
            x->r[i] = rho * x->r[i] + (1 - rho) * g * g;
            x->v[i] = a * x->v[i] - eta / sqrt(d + x->r[i]) * g;
            x->th[i] += x->v[i];
            break;
        case PD_OPT_ADADELTA: {
            x->r[i] = rho * x->r[i] + (1 - rho) * g * g;
            double dt = -sqrt(x->s[i] + d) / sqrt(x->r[i] + d) * g;
            x->s[i] = rho * x->s[i] + (1 - rho) * dt * dt;
            x->th[i] += eta * dt;
            break;
        }
        case PD_OPT_ADAM:
        case PD_OPT_ADAMW: {
            x->m[i] = oc->beta1 * x->m[i] + (1 - oc->beta1) * g;
            x->v[i] = oc->beta2 * x->v[i] + (1 - oc->beta2) * g * g;
            double mh = x->m[i] / (1 - pow(oc->beta1, (double)t));
            double vh = x->v[i] / (1 - pow(oc->beta2, (double)t));
            x->th[i] -= eta * mh / (sqrt(vh) + d);
            if (oc->name == PD_OPT_ADAMW)
                x->th[i] -= eta * wd * th0;
            break;
        }
        default:
            fail();
        }
    }
}

/* Hyperparameters for the trajectories: not the defaults, so that a rule
 * reading the wrong field shows. */
static pd_optim_config traj_cfg(pd_optimizer_name rule, double wd)
{
    pd_optim_config oc = cfg_of(rule);
    static const double lr[PD_OPT_COUNT] = {0.1, 0.08, 0.08, 0.1, 0.02, 0.02, 0.7, 0.05, 0.05};
    oc.lr = lr[rule];
    oc.momentum = 0.85;
    oc.rho = 0.8;
    oc.eps = rule == PD_OPT_ADAGRAD ? 1e-3 : 1e-4;
    oc.beta1 = 0.8;
    oc.beta2 = 0.95;
    oc.weight_decay = wd;
    return oc;
}

/* ---- each rule against its formula ---------------------------------------- */

static void run_trajectory(double wd, double scale)
{
    enum { N = 3, STEPS = 5 };
    static const double G[STEPS][N] = {
        {0.3, -0.7, 1.1}, {-0.2, 0.4, 0.9}, {0.5, -0.1, -0.6}, {0.25, 0.8, -0.35},
        {-0.45, 0.15, 0.05},
    };
    static const double TH0[N] = {0.5, -1.25, 2.0};
    for (int rule = 0; rule < NRULES; rule++) {
        pd_optim_config oc = traj_cfg((pd_optimizer_name)rule, wd);
        pd_optim *o = make(&oc, 0, N, 1);
        bool nesterov = rule == PD_OPT_NESTEROV || rule == PD_OPT_RMSPROP_NESTEROV;
        assert_int_equal(pd_optim_has_lookahead(o), nesterov);
        float th[N], pt[N], g[N];
        ref x;
        memset(&x, 0, sizeof x);
        for (int i = 0; i < N; i++)
            th[i] = (float)(x.th[i] = TH0[i]);
        for (int t = 1; t <= STEPS; t++) {
            /* The lookahead point before the step: theta + alpha v for the
             * Nesterov rules, theta itself otherwise. */
            pd_optim_lookahead(o, th, pt, 0, N);
            for (int i = 0; i < N; i++) {
                double e = nesterov ? x.th[i] + oc.momentum * x.v[i] : x.th[i];
                check_close(pt[i], e, 1e-6, 0, "%s wd=%g lookahead t=%d i=%d",
                            rule_names[rule], wd, t, i);
            }
            for (int i = 0; i < N; i++)
                g[i] = (float)G[t - 1][i];
            pd_optim_step st = pd_optim_prepare(o, t, scale, 0);
            pd_optim_apply(o, &st, th, g, 0, N);
            double gd[N];
            for (int i = 0; i < N; i++)
                gd[i] = g[i];
            ref_step(&oc, &x, gd, N, t, oc.lr * scale);
            for (int i = 0; i < N; i++)
                check_close(th[i], x.th[i], 1e-6, 0, "%s wd=%g theta t=%d i=%d",
                            rule_names[rule], wd, t, i);
        }
        pd_optim_destroy(&o);
        assert_null(o);
    }
}

static void test_rules_match_formulas(void **state)
{
    (void)state;
    run_trajectory(0.0, 1.0);
}

static void test_rules_match_formulas_with_weight_decay(void **state)
{
    (void)state;
    run_trajectory(0.05, 0.7);
}

/* Two steps of each rule worked by hand on one coordinate, so the double
 * reference above is checked too. */
static void test_rules_by_hand(void **state)
{
    (void)state;
    const double r2 = sqrt(2.0), r3 = sqrt(3.0);
    const double d1 = -0.1 / sqrt(0.51);   /* adadelta's first step */
    const struct {
        pd_optimizer_name rule;
        double lr, momentum, rho, eps, wd;
        float th0, g[2];
        double want[2];
    } cases[] = {
        /* theta -= 0.1 g */
        {PD_OPT_SGD, 0.1, 0, 0, 0, 0, 1, {1, -2}, {0.9, 1.1}},
        /* v = -0.1, theta 0.9; v = 0.9 (-0.1) - 0.1 = -0.19, theta 0.71 */
        {PD_OPT_MOMENTUM, 0.1, 0.9, 0, 0, 0, 1, {1, 1}, {0.9, 0.71}},
        {PD_OPT_NESTEROV, 0.1, 0.9, 0, 0, 0, 1, {1, 1}, {0.9, 0.71}},
        /* r = 4: theta -= 0.5/2 * 2; r = 5: theta -= 0.5/sqrt(5) */
        {PD_OPT_ADAGRAD, 0.5, 0, 0, 0, 0, 3, {2, 1}, {2.5, 2.5 - 0.5 / sqrt(5.0)}},
        /* r = 2: theta -= 0.1/sqrt(2) 2; r = 0.5 2 + 0.5 4 = 3 */
        {PD_OPT_RMSPROP, 0.1, 0, 0.5, 0, 0, 1, {2, 2}, {1 - 0.2 / r2, 1 - 0.2 / r2 - 0.2 / r3}},
        /* r as rmsprop; v = -0.2/sqrt(2); v = 0.5 v - 0.2/sqrt(3) */
        {PD_OPT_RMSPROP_NESTEROV, 0.1, 0.5, 0.5, 0, 0, 1, {2, 2},
         {1 - 0.2 / r2, 1 - 0.2 / r2 + 0.5 * (-0.2 / r2) - 0.2 / r3}},
        /* r = 0.5, d = -sqrt(0.01)/sqrt(0.51), s = 0.5 d^2; r = 0.75,
         * d = -sqrt(s + 0.01)/sqrt(0.76) */
        {PD_OPT_ADADELTA, 1, 0, 0.5, 0.01, 0, 1, {1, 1},
         {1 + d1, 1 + d1 - sqrt(0.5 * d1 * d1 + 0.01) / sqrt(0.76)}},
        /* a constant gradient: m_hat = g, v_hat = g^2, each step is lr */
        {PD_OPT_ADAM, 0.01, 0, 0, 1e-8, 0, 1, {-3, -3}, {1.01, 1.02}},
        /* the same plus the decay 0.001 theta of the old theta */
        {PD_OPT_ADAMW, 0.01, 0, 0, 1e-8, 0.1, 1, {-3, -3}, {1.009, 1.009 + 0.01 - 0.001009}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        pd_optim_config oc = cfg_of(cases[k].rule);
        oc.lr = cases[k].lr;
        oc.momentum = cases[k].momentum;
        oc.rho = cases[k].rho;
        oc.eps = cases[k].eps;
        oc.weight_decay = cases[k].wd;
        pd_optim *o = make(&oc, 0, 1, 1);
        float th[1] = {cases[k].th0};
        for (int t = 1; t <= 2; t++) {
            pd_optim_step st = pd_optim_prepare(o, t, 1, 0);
            pd_optim_apply(o, &st, th, &cases[k].g[t - 1], 0, 1);
            check_close(th[0], cases[k].want[t - 1], 1e-6, 0, "%s by hand, step %d",
                        rule_names[cases[k].rule], t);
        }
        pd_optim_destroy(&o);
    }
}

/* Adam's bias corrections 1/(1 - beta^t), computed once in prepare. */
static void test_bias_corrections(void **state)
{
    (void)state;
    pd_optim_config oc = cfg_of(PD_OPT_ADAM);
    pd_optim *o = make(&oc, 0, 1, 1);
    pd_optim_step st = pd_optim_prepare(o, 1, 1, 0);
    check_close(st.bc1, 10.0, 1e-6, 0, "bc1(1)");
    check_close(st.bc2, 1000.0, 1e-6, 0, "bc2(1)");
    st = pd_optim_prepare(o, 2, 1, 0);
    check_close(st.bc1, 1 / 0.19, 1e-6, 0, "bc1(2)");
    check_close(st.bc2, 1 / (1 - 0.999 * 0.999), 1e-6, 0, "bc2(2)");
    st = pd_optim_prepare(o, 100000, 1, 0);
    assert_true(st.bc1 == 1.0f && st.bc2 == 1.0f);
    pd_optim_destroy(&o);
    oc = cfg_of(PD_OPT_RMSPROP);   /* not an adam rule: no correction */
    o = make(&oc, 0, 1, 1);
    st = pd_optim_prepare(o, 1, 1, 0);
    assert_true(st.bc1 == 1.0f && st.bc2 == 1.0f);
    pd_optim_destroy(&o);
}

/* ---- Nesterov's lookahead is where the gradient is taken ---------------- */

/* f = 1/2 sum c_i theta_i^2, so grad f(p) = c p. The caller takes the
 * gradient at the lookahead point; the trajectory must follow Nesterov's
 * formula and be far from the one with the gradient taken at theta. */
static void test_nesterov_uses_lookahead(void **state)
{
    (void)state;
    enum { N = 2, STEPS = 12 };
    const double c[N] = {1.0, 4.0};
    const pd_optimizer_name rulesv[2] = {PD_OPT_NESTEROV, PD_OPT_RMSPROP_NESTEROV};
    for (int k = 0; k < 2; k++) {
        pd_optim_config oc = cfg_of(rulesv[k]);
        oc.lr = k == 0 ? 0.05 : 0.01;
        oc.momentum = 0.9;
        oc.rho = 0.9;
        oc.eps = 1e-6;
        pd_optim *o = make(&oc, 0, N, 1);
        float th[N] = {1.0f, -1.0f}, pt[N], g[N];
        ref nest, plain;   /* plain: the same rule with g taken at theta */
        memset(&nest, 0, sizeof nest);
        memset(&plain, 0, sizeof plain);
        for (int i = 0; i < N; i++)
            nest.th[i] = plain.th[i] = th[i];
        double maxdiff = 0;
        for (int t = 1; t <= STEPS; t++) {
            pd_optim_lookahead(o, th, pt, 0, N);
            double gn[N], gp[N];
            for (int i = 0; i < N; i++) {
                g[i] = (float)(c[i] * pt[i]);
                gn[i] = c[i] * (nest.th[i] + oc.momentum * nest.v[i]);
                gp[i] = c[i] * plain.th[i];
            }
            pd_optim_step st = pd_optim_prepare(o, t, 1, 0);
            pd_optim_apply(o, &st, th, g, 0, N);
            ref_step(&oc, &nest, gn, N, t, oc.lr);
            ref_step(&oc, &plain, gp, N, t, oc.lr);
            for (int i = 0; i < N; i++) {
                check_close(th[i], nest.th[i], 1e-5, 1e-7, "%s t=%d i=%d",
                            rule_names[rulesv[k]], t, i);
                maxdiff = fmax(maxdiff, fabs(nest.th[i] - plain.th[i]));
            }
        }
        /* The test can tell the two apart (by far more than its tolerance). */
        if (maxdiff < 1e-2)
            fail_msg("%s: Nesterov and plain trajectories too close (%g)",
                     rule_names[rulesv[k]], maxdiff);
        pd_optim_destroy(&o);
    }
}

/* ---- split invariance ----------------------------------------------------- */

/* Everything on: clip by norm (factor < 1), clip by value, noise, weight
 * decay. n crosses several internal chunks and is not a multiple of them. */
static pd_optim_config all_on(pd_optimizer_name rule)
{
    pd_optim_config oc = cfg_of(rule);
    oc.weight_decay = 0.01;
    oc.clip_norm = 1.0;
    oc.clip_value = 0.05;
    oc.noise = 0.01;
    oc.noise_gamma = 0.55;
    return oc;
}

/* Four optimizers of one rule for a split test: a and b hold [0, n) (a in
 * one call, b in pieces), c0 and c1 hold the shards [0, sh) and [sh, n);
 * ta, tb, tc are the parameters a, b and the shards update. */
typedef struct split {
    size_t n, sh;
    pd_optim *a, *b, *c0, *c1;
    float *ta, *tb, *tc;
} split;

static split split_make(pd_optimizer_name rule, size_t n, size_t sh, uint64_t seed)
{
    pd_optim_config oc = all_on(rule);
    split s = {
        .n = n, .sh = sh,
        .a = make(&oc, 0, n, seed), .b = make(&oc, 0, n, seed),
        .c0 = make(&oc, 0, sh, seed), .c1 = make(&oc, sh, n, seed),
        .ta = fvec(n), .tb = fvec(n), .tc = fvec(n),
    };
    fill_normal(s.ta, n, seed, 1.0);
    memcpy(s.tb, s.ta, n * sizeof *s.ta);
    memcpy(s.tc, s.ta, n * sizeof *s.ta);
    return s;
}

/* Same bits everywhere: parameters, b's state, and the shards' state
 * vectors are the pieces of a's. Frees s. */
static void split_check_free(split *s, const char *what)
{
    const size_t n = s->n, sh = s->sh, h = 32, f = sizeof(float);
    check_bits(s->ta, s->tb, n, what);
    check_bits(s->ta, s->tc, n, what);
    size_t sa, sb, s0, s1;
    unsigned char *ba = saved(s->a, &sa), *bb = saved(s->b, &sb);
    unsigned char *b0 = saved(s->c0, &s0), *b1 = saved(s->c1, &s1);
    assert_int_equal(sa, sb);
    assert_memory_equal(ba, bb, sa);
    size_t nvec = (sa - h) / f / n;
    assert_int_equal(s0, h + nvec * sh * f);
    assert_int_equal(s1, h + nvec * (n - sh) * f);
    for (size_t k = 0; k < nvec; k++) {
        assert_memory_equal(ba + h + k * n * f, b0 + h + k * sh * f, sh * f);
        assert_memory_equal(ba + h + (k * n + sh) * f, b1 + h + k * (n - sh) * f, (n - sh) * f);
    }
    free(ba);
    free(bb);
    free(b0);
    free(b1);
    pd_optim_destroy(&s->a);
    pd_optim_destroy(&s->b);
    pd_optim_destroy(&s->c0);
    pd_optim_destroy(&s->c1);
    free(s->ta);
    free(s->tb);
    free(s->tc);
}

static void test_split_invariance(void **state)
{
    (void)state;
    enum { N = 1000, K1 = 137, K2 = 600, SH = 300, STEPS = 3 };
    float *g = fvec(N);
    for (int rule = 0; rule < NRULES; rule++) {
        split s = split_make((pd_optimizer_name)rule, N, SH, 7);
        for (int t = 1; t <= STEPS; t++) {
            fill_normal(g, N, 100 + (uint64_t)t, 0.1);
            double norm = pd_optim_norm2(g, N);
            pd_optim_step st = pd_optim_prepare(s.a, t, 1, norm);
            assert_true(st.gscale < 1.0f);
            pd_optim_apply(s.a, &st, s.ta, g, 0, N);
            /* b: three pieces out of order */
            pd_optim_apply(s.b, &st, s.tb, g, K2, N);
            pd_optim_apply(s.b, &st, s.tb, g, 0, K1);
            pd_optim_apply(s.b, &st, s.tb, g, K1, K2);
            /* the shards, each prepared by its own optimizer */
            pd_optim_step s0 = pd_optim_prepare(s.c0, t, 1, norm);
            pd_optim_step s1 = pd_optim_prepare(s.c1, t, 1, norm);
            pd_optim_apply(s.c1, &s1, s.tc, g, SH, N);
            pd_optim_apply(s.c0, &s0, s.tc, g, 0, SH);
        }
        split_check_free(&s, rule_names[rule]);
    }
    free(g);
}

/* Sparse steps split the same way: idx[0, k) + idx[k, nnz) = idx[0, nnz),
 * and two shards given the indices in their ranges match the whole. */
static void test_sparse_split_invariance(void **state)
{
    (void)state;
    enum { N = 2000, NNZ = 700, K = 311, SH = 900, STEPS = 3 };
    uint32_t idx[NNZ];
    float val[NNZ];
    size_t ksh = 0;   /* idx[0, ksh) < SH <= idx[ksh, NNZ) */
    for (int k = 0; k < NNZ; k++) {
        idx[k] = (uint32_t)(k * 2 + (k % 3 == 0));
        ksh += idx[k] < SH;
    }
    assert_true(ksh > 0 && ksh < NNZ);
    for (int rule = 0; rule < NRULES; rule++) {
        split s = split_make((pd_optimizer_name)rule, N, SH, 3);
        for (int t = 1; t <= STEPS; t++) {
            fill_normal(val, NNZ, 200 + (uint64_t)t, 0.1);
            double norm = pd_optim_norm2(val, NNZ);
            pd_optim_step st = pd_optim_prepare(s.a, t, 1, norm);
            pd_optim_apply_sparse(s.a, &st, s.ta, idx, val, NNZ);
            pd_optim_apply_sparse(s.b, &st, s.tb, idx + K, val + K, NNZ - K);
            pd_optim_apply_sparse(s.b, &st, s.tb, idx, val, K);
            pd_optim_apply_sparse(s.c1, &st, s.tc, idx + ksh, val + ksh, NNZ - ksh);
            pd_optim_apply_sparse(s.c0, &st, s.tc, idx, val, ksh);
        }
        split_check_free(&s, rule_names[rule]);
    }
}

/* Threads applying disjoint ranges of one step at once (as a sync or
 * hogwild server's threads do) share no hidden state: same bits as one
 * call. Under the sanitizer builds this also shows no shared writes. */
typedef struct range_job {
    pd_optim *o;
    const pd_optim_step *st;
    float *theta;
    const float *g;
    size_t lo, hi;
} range_job;

static void *apply_job(void *arg)
{
    range_job *j = arg;
    for (size_t i = j->lo; i < j->hi; i += 1000)   /* many calls, to overlap */
        pd_optim_apply(j->o, j->st, j->theta, j->g, i, i + 1000 < j->hi ? i + 1000 : j->hi);
    return NULL;
}

static void test_threads_disjoint_ranges(void **state)
{
    (void)state;
    enum { N = 100000, T = 4, STEPS = 2 };
    float *g = fvec(N), *ta = fvec(N), *tb = fvec(N);
    for (int rule = 0; rule < NRULES; rule++) {
        pd_optim_config oc = all_on((pd_optimizer_name)rule);
        pd_optim *a = make(&oc, 0, N, 8), *b = make(&oc, 0, N, 8);
        fill_normal(ta, N, 9, 1.0);
        memcpy(tb, ta, N * sizeof *ta);
        for (int t = 1; t <= STEPS; t++) {
            fill_normal(g, N, 10 + (uint64_t)t, 0.1);
            pd_optim_step st = pd_optim_prepare(a, t, 1, pd_optim_norm2(g, N));
            pd_optim_apply(a, &st, ta, g, 0, N);
            pthread_t th[T];
            range_job jobs[T];
            for (int k = 0; k < T; k++) {
                jobs[k] = (range_job){b, &st, tb, g, (size_t)k * N / T, (size_t)(k + 1) * N / T};
                assert_int_equal(pthread_create(&th[k], NULL, apply_job, &jobs[k]), 0);
            }
            for (int k = 0; k < T; k++)
                assert_int_equal(pthread_join(th[k], NULL), 0);
        }
        check_bits(ta, tb, N, rule_names[rule]);
        pd_optim_destroy(&a);
        pd_optim_destroy(&b);
    }
    free(g);
    free(ta);
    free(tb);
}

/* ---- save and load -------------------------------------------------------- */

static void test_save_load_continues(void **state)
{
    (void)state;
    enum { N = 300, STEPS = 6, CUT = 3 };
    float *g = fvec(N), *ta = fvec(N), *tb = fvec(N);
    for (int rule = 0; rule < NRULES; rule++) {
        pd_optim_config oc = all_on((pd_optimizer_name)rule);
        pd_optim *a = make(&oc, 10, 10 + N, 5), *b = make(&oc, 10, 10 + N, 5);
        float *pa = ta - 10, *pb = tb - 10;   /* theta indexed globally */
        fill_normal(ta, N, 4, 1.0);
        memcpy(tb, ta, N * sizeof *ta);
        for (int t = 1; t <= STEPS; t++) {
            if (t == CUT + 1) {
                /* b saves, is destroyed, and a fresh optimizer loads it */
                size_t sz;
                unsigned char *buf = saved(b, &sz);
                pd_optim_destroy(&b);
                b = make(&oc, 10, 10 + N, 5);
                assert_int_equal(pd_optim_load(b, buf, sz), PD_OK);
                free(buf);
            }
            fill_normal(g, N, 300 + (uint64_t)t, 0.1);
            double norm = pd_optim_norm2(g, N);
            pd_optim_step st = pd_optim_prepare(a, t, 1, norm);
            pd_optim_apply(a, &st, pa, g - 10, 10, 10 + N);
            st = pd_optim_prepare(b, t, 1, norm);
            pd_optim_apply(b, &st, pb, g - 10, 10, 10 + N);
        }
        check_bits(ta, tb, N, rule_names[rule]);
        check_same_state(a, b);
        pd_optim_destroy(&a);
        pd_optim_destroy(&b);
    }
    free(g);
    free(ta);
    free(tb);
}

/* Load fails with PD_EINPUT and `msg`, and leaves o's state as it was. */
static void expect_refused(pd_optim *o, const void *buf, size_t size, const char *msg)
{
    size_t s0, s1;
    unsigned char *before = saved(o, &s0);
    pd_err_clear();
    assert_int_equal(pd_optim_load(o, buf, size), PD_EINPUT);
    assert_string_equal(pd_err_msg(), msg);
    unsigned char *after = saved(o, &s1);
    assert_memory_equal(before, after, s0);
    free(before);
    free(after);
}

static void test_load_refuses(void **state)
{
    (void)state;
    enum { N = 10 };
    pd_optim_config adam = cfg_of(PD_OPT_ADAM), adamw = cfg_of(PD_OPT_ADAMW);
    pd_optim *src = make(&adam, 0, N, 1);
    float th[N] = {0}, g[N] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    pd_optim_step st = pd_optim_prepare(src, 1, 1, 0);
    pd_optim_apply(src, &st, th, g, 0, N);
    size_t sz;
    unsigned char *buf = saved(src, &sz);
    assert_int_equal(sz, 32 + 2 * N * sizeof(float));

    /* Targets with non-zero state, so a half load would show. */
    pd_optim *other_rule = make(&adamw, 0, N, 1);
    pd_optim *other_range = make(&adam, 0, N + 1, 1);
    pd_optim *same = make(&adam, 0, N, 1);
    float th2[N + 1] = {0}, g2[N + 1] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    pd_optim_apply(other_rule, &st, th2, g2, 0, N);
    pd_optim_apply(other_range, &st, th2, g2, 0, N + 1);
    pd_optim_apply(same, &st, th2, g2, 0, N);

    expect_refused(other_rule, buf, sz,
                   "optimizer state: saved by optimizer 'adam', this run uses 'adamw'");
    expect_refused(other_range, buf, sz,
                   "optimizer state: saved for coordinates [0, 10), this optimizer holds [0, 11)");
    pd_optim *shifted = make(&adam, 1, N + 1, 1);
    expect_refused(shifted, buf, sz,
                   "optimizer state: saved for coordinates [0, 10), this optimizer holds [1, 11)");
    expect_refused(same, buf, sz - 1,
                   "optimizer state: 111 bytes, expected 112 for 'adam' over [0, 10) (truncated)");
    expect_refused(same, buf, 31,
                   "optimizer state: 31 bytes, too short for the 32-byte header");
    expect_refused(same, buf, 0,
                   "optimizer state: 0 bytes, too short for the 32-byte header");
    unsigned char *big = calloc(sz + 4, 1);
    assert_non_null(big);
    memcpy(big, buf, sz);
    expect_refused(same, big, sz + 4,
                   "optimizer state: 116 bytes, expected 112 for 'adam' over [0, 10) "
                   "(trailing bytes)");
    big[0] ^= 0xff;
    expect_refused(same, big, sz, "optimizer state: bad magic 0x534f44af (not an optimizer state)");
    big[0] ^= 0xff;
    big[4] = 9;   /* version */
    expect_refused(same, big, sz, "optimizer state: version 9, this build reads version 1");
    free(big);

    /* An sgd state (no vectors) into adam: the rule check comes first. */
    pd_optim_config sgd = cfg_of(PD_OPT_SGD);
    pd_optim *s = make(&sgd, 0, N, 1);
    size_t ssz;
    unsigned char *sbuf = saved(s, &ssz);
    assert_int_equal(ssz, 32);
    expect_refused(same, sbuf, ssz,
                   "optimizer state: saved by optimizer 'sgd', this run uses 'adam'");
    free(sbuf);

    /* Save refuses a short buffer. */
    pd_err_clear();
    assert_int_equal(pd_optim_save(src, buf, sz - 1), PD_EINPUT);
    assert_string_equal(pd_err_msg(), "optimizer state: buffer of 111 bytes, need 112");

    /* And a good load really copies. */
    assert_int_equal(pd_optim_load(same, buf, sz), PD_OK);
    size_t sz2;
    unsigned char *buf2 = saved(same, &sz2);
    assert_memory_equal(buf, buf2, sz);
    free(buf2);

    free(buf);
    pd_optim_destroy(&s);
    pd_optim_destroy(&shifted);
    pd_optim_destroy(&same);
    pd_optim_destroy(&other_range);
    pd_optim_destroy(&other_rule);
    pd_optim_destroy(&src);
}

static void test_create_errors(void **state)
{
    (void)state;
    pd_optim_config oc = cfg_of(PD_OPT_RMSPROP);
    pd_optim *o = (pd_optim *)&oc;   /* create must set *out = NULL on failure */
    assert_int_equal(pd_optim_create(&oc, 5, 4, 1, &o), PD_EINPUT);
    assert_null(o);
    assert_string_equal(pd_err_msg(), "optimizer rmsprop: range [5, 4) is reversed");
    oc.rho = NAN;
    assert_int_equal(pd_optim_create(&oc, 0, 4, 1, &o), PD_EINPUT);
    assert_string_equal(pd_err_msg(), "optimizer rmsprop: optimizer.rho is NAN (unset; "
                                      "pd_optim_defaults fills only the rule's own defaults)");
    /* weight_decay is no rule's default: left NaN by a caller (pd_bench did)
     * it sent every step through the preprocessing path and made theta NaN */
    oc = cfg_of(PD_OPT_ADAM);
    oc.weight_decay = NAN;
    assert_int_equal(pd_optim_create(&oc, 0, 4, 1, &o), PD_EINPUT);
    assert_null(o);
    assert_string_equal(pd_err_msg(), "optimizer adam: optimizer.weight_decay is NAN (unset; "
                                      "pd_optim_defaults fills only the rule's own defaults)");
    oc = cfg_of(PD_OPT_SGD);
    oc.noise = NAN;
    assert_int_equal(pd_optim_create(&oc, 0, 4, 1, &o), PD_EINPUT);
    assert_string_equal(pd_err_msg(), "optimizer sgd: optimizer.noise is NAN (unset; "
                                      "pd_optim_defaults fills only the rule's own defaults)");
    oc = cfg_of(PD_OPT_RMSPROP);
    oc.name = PD_OPT_COUNT;
    assert_int_equal(pd_optim_create(&oc, 0, 4, 1, &o), PD_EINPUT);
    assert_string_equal(pd_err_msg(), "optimizer.name: unknown rule 14");
    /* The batch methods have no element-wise rule: src/batch/ runs them. */
    oc.name = PD_OPT_LBFGS;
    assert_int_equal(pd_optim_create(&oc, 0, 4, 1, &o), PD_EINPUT);
    assert_null(o);
    assert_string_equal(pd_err_msg(), "optimizer.name: lbfgs is a batch method (src/batch/), "
                        "not an element-wise rule");
    /* An empty range is fine; destroy accepts NULL and clears the pointer. */
    oc = cfg_of(PD_OPT_ADAM);
    o = make(&oc, 3, 3, 1);
    float th[4] = {1, 2, 3, 4}, g[4] = {1, 1, 1, 1};
    pd_optim_step st = pd_optim_prepare(o, 1, 1, 0);
    pd_optim_apply(o, &st, th, g, 3, 3);
    assert_true(th[3] == 4.0f);
    assert_int_equal(pd_optim_state_size(o), 32);
    pd_optim_destroy(&o);
    assert_null(o);
    pd_optim_destroy(&o);
    pd_optim_destroy(NULL);
}

/* ---- schedules ------------------------------------------------------------ */

static void test_schedules(void **state)
{
    (void)state;
    /* lr = 0.1 throughout; values worked by hand. */
    const struct {
        pd_schedule_type type;
        int64_t step_size;
        double gamma, decay, min_lr;
        int64_t warmup, t;
        double want;
    } cases[] = {
        {PD_SCHED_CONSTANT, 1, 1, 0, 0, 0, 1, 0.1},
        {PD_SCHED_CONSTANT, 1, 1, 0, 0, 0, 100000, 0.1},
        /* step: gamma 0.5 every 10 updates, counted from t = 1 */
        {PD_SCHED_STEP, 10, 0.5, 0, 0, 0, 1, 0.1},
        {PD_SCHED_STEP, 10, 0.5, 0, 0, 0, 10, 0.1},
        {PD_SCHED_STEP, 10, 0.5, 0, 0, 0, 11, 0.05},
        {PD_SCHED_STEP, 10, 0.5, 0, 0, 0, 20, 0.05},
        {PD_SCHED_STEP, 10, 0.5, 0, 0, 0, 21, 0.025},
        /* exponential: continuous 0.1 * 0.5^((t-1)/10) */
        {PD_SCHED_EXPONENTIAL, 10, 0.5, 0, 0, 0, 1, 0.1},
        {PD_SCHED_EXPONENTIAL, 10, 0.5, 0, 0, 0, 6, 0.1 / sqrt(2.0)},
        {PD_SCHED_EXPONENTIAL, 10, 0.5, 0, 0, 0, 11, 0.05},
        {PD_SCHED_EXPONENTIAL, 10, 0.5, 0, 0, 0, 16, 0.05 / sqrt(2.0)},
        /* inverse_time: 0.1 / (1 + 0.5 (t-1)) */
        {PD_SCHED_INVERSE_TIME, 1, 1, 0.5, 0, 0, 1, 0.1},
        {PD_SCHED_INVERSE_TIME, 1, 1, 0.5, 0, 0, 3, 0.05},
        {PD_SCHED_INVERSE_TIME, 1, 1, 0.5, 0, 0, 5, 0.1 / 3},
        /* cosine over 100 updates from 0.1 down to 0.01, then 0.01 */
        {PD_SCHED_COSINE, 100, 1, 0, 0.01, 0, 1, 0.1},
        {PD_SCHED_COSINE, 100, 1, 0, 0.01, 0, 26, 0.01 + 0.045 * (1 + sqrt(0.5))},
        {PD_SCHED_COSINE, 100, 1, 0, 0.01, 0, 51, 0.055},
        {PD_SCHED_COSINE, 100, 1, 0, 0.01, 0, 76, 0.01 + 0.045 * (1 - sqrt(0.5))},
        {PD_SCHED_COSINE, 100, 1, 0, 0.01, 0, 101, 0.01},
        {PD_SCHED_COSINE, 100, 1, 0, 0.01, 0, 5000, 0.01},
        /* warmup 4: t/4 of the schedule's value for t <= 4 */
        {PD_SCHED_CONSTANT, 1, 1, 0, 0, 4, 1, 0.025},
        {PD_SCHED_CONSTANT, 1, 1, 0, 0, 4, 2, 0.05},
        {PD_SCHED_CONSTANT, 1, 1, 0, 0, 4, 4, 0.1},
        {PD_SCHED_CONSTANT, 1, 1, 0, 0, 4, 5, 0.1},
        /* warmup on top of step (0.5 every 2): t = 3 is 0.05 * 3/4 */
        {PD_SCHED_STEP, 2, 0.5, 0, 0, 4, 3, 0.0375},
        {PD_SCHED_STEP, 2, 0.5, 0, 0, 4, 5, 0.025},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        pd_optim_config oc = cfg_of(PD_OPT_SGD);
        oc.lr = 0.1;
        oc.schedule.type = cases[k].type;
        oc.schedule.step_size = cases[k].step_size;
        oc.schedule.gamma = cases[k].gamma;
        oc.schedule.decay = cases[k].decay;
        oc.schedule.min_lr = cases[k].min_lr;
        oc.schedule.warmup = cases[k].warmup;
        check_close(pd_optim_lr(&oc, cases[k].t), cases[k].want, 1e-12, 0,
                    "schedule case %zu (t = %lld)", k, (long long)cases[k].t);
    }

    /* prepare: lr = schedule(t) * scale */
    pd_optim_config oc = cfg_of(PD_OPT_SGD);
    oc.lr = 0.1;
    oc.schedule.type = PD_SCHED_STEP;
    oc.schedule.step_size = 10;
    oc.schedule.gamma = 0.5;
    pd_optim *o = make(&oc, 0, 1, 1);
    pd_optim_step st = pd_optim_prepare(o, 11, 0.5, 0);
    assert_int_equal(st.t, 11);
    check_close(st.lr, 0.025, 1e-7, 0, "prepare lr");
    assert_true(st.gscale == 1.0f && st.bc1 == 1.0f && st.bc2 == 1.0f && st.noise_sigma == 0.0f);
    pd_optim_destroy(&o);
}

/* ---- clipping, weight decay ---------------------------------------------- */

static void test_clip_by_norm(void **state)
{
    (void)state;
    pd_optim_config oc = cfg_of(PD_OPT_SGD);
    oc.lr = 1;
    oc.clip_norm = 2;
    pd_optim *o = make(&oc, 0, 2, 1);
    check_close(pd_optim_prepare(o, 1, 1, 10).gscale, 0.2, 1e-7, 0, "gscale 10");
    assert_true(pd_optim_prepare(o, 1, 1, 1).gscale == 1.0f);
    assert_true(pd_optim_prepare(o, 1, 1, 2).gscale == 1.0f);
    assert_true(pd_optim_prepare(o, 1, 1, 0).gscale == 1.0f);
    /* The applied update has the clip norm. */
    float th[2] = {0, 0}, g[2] = {6, 8};
    double norm = pd_optim_norm2(g, 2);
    check_close(norm, 10, 1e-15, 0, "norm2");
    pd_optim_step st = pd_optim_prepare(o, 1, 1, norm);
    pd_optim_apply(o, &st, th, g, 0, 2);
    check_close(th[0], -1.2, 1e-6, 0, "clipped 0");
    check_close(th[1], -1.6, 1e-6, 0, "clipped 1");
    pd_optim_destroy(&o);
    /* clip_norm 0: never clips */
    oc.clip_norm = 0;
    o = make(&oc, 0, 2, 1);
    assert_true(pd_optim_prepare(o, 1, 1, 1e9).gscale == 1.0f);
    pd_optim_destroy(&o);
}

static void test_norm2_double(void **state)
{
    (void)state;
    /* 1e8 + 1000 * 0.01: a float accumulator would lose every 0.01. */
    enum { N = 1001 };
    float g[N];
    g[0] = 1e4f;
    double sum = 1e8;
    for (int i = 1; i < N; i++) {
        g[i] = 0.1f;
        sum += (double)0.1f * (double)0.1f;
    }
    check_close(pd_optim_norm2(g, N), sqrt(sum), 1e-14, 0, "norm2 double");
    assert_true(pd_optim_norm2(g, 0) == 0.0);
}

static void test_clip_by_value_and_order(void **state)
{
    (void)state;
    pd_optim_config oc = cfg_of(PD_OPT_SGD);
    oc.lr = 1;
    oc.clip_value = 0.5;
    pd_optim *o = make(&oc, 0, 4, 1);
    float th[4] = {0, 0, 0, 0}, g[4] = {2, -3, 0.25f, -0.5f};
    pd_optim_step st = pd_optim_prepare(o, 1, 1, 0);
    pd_optim_apply(o, &st, th, g, 0, 4);
    const double want[4] = {-0.5, 0.5, -0.25, 0.5};
    for (int i = 0; i < 4; i++)
        check_close(th[i], want[i], 0, 0, "clip value %d", i);
    /* A NaN gradient is not hidden by clipping. */
    float g1[1] = {NAN}, th1[1] = {0};
    pd_optim_apply(o, &st, th1, g1, 0, 1);
    assert_true(isnan(th1[0]));
    pd_optim_destroy(&o);

    /* Order: norm factor, then clip by value, then weight decay (unclipped). */
    oc.clip_norm = 2;
    oc.weight_decay = 0.1;
    o = make(&oc, 0, 3, 1);
    float t3[3] = {0, 0, 10}, g3[3] = {10, 1, 0};
    st = pd_optim_prepare(o, 1, 1, 10);   /* gscale 0.2: g' = {2, 0.2, 0} */
    pd_optim_apply(o, &st, t3, g3, 0, 3);
    check_close(t3[0], -0.5, 1e-7, 0, "order 0 (clipped after scaling)");
    check_close(t3[1], -0.2, 1e-6, 0, "order 1 (scaled, not clipped)");
    check_close(t3[2], 10 - 1.0, 1e-6, 0, "order 2 (decay after clipping)");
    pd_optim_destroy(&o);
}

static void test_weight_decay_coupled_vs_decoupled(void **state)
{
    (void)state;
    /* g = 0: adam sees g' = wd theta and takes a full normalized step
     * (~lr sign(theta)); adamw's moments stay 0 and only the decay acts. */
    float ta[3] = {1, -2, 3}, tw[3] = {1, -2, 3}, g[3] = {0, 0, 0};
    pd_optim_config a = cfg_of(PD_OPT_ADAM), w = cfg_of(PD_OPT_ADAMW);
    a.lr = w.lr = 0.01;
    a.weight_decay = w.weight_decay = 0.1;
    pd_optim *oa = make(&a, 0, 3, 1), *ow = make(&w, 0, 3, 1);
    pd_optim_step sa = pd_optim_prepare(oa, 1, 1, 0), sw = pd_optim_prepare(ow, 1, 1, 0);
    pd_optim_apply(oa, &sa, ta, g, 0, 3);
    pd_optim_apply(ow, &sw, tw, g, 0, 3);
    const double th0[3] = {1, -2, 3};
    for (int i = 0; i < 3; i++) {
        double gd = 0.1 * th0[i];
        check_close(ta[i], th0[i] - 0.01 * gd / (fabs(gd) + 1e-8), 1e-6, 0, "adam %d", i);
        check_close(tw[i], th0[i] * (1 - 0.01 * 0.1), 1e-6, 0, "adamw %d", i);
    }
    /* Coupled decay for sgd: theta -= lr (g + wd theta). */
    pd_optim_config s = cfg_of(PD_OPT_SGD);
    s.lr = 0.5;
    s.weight_decay = 0.2;
    pd_optim *os = make(&s, 0, 1, 1);
    float t1[1] = {2}, g1[1] = {1};
    pd_optim_step st = pd_optim_prepare(os, 1, 1, 0);
    pd_optim_apply(os, &st, t1, g1, 0, 1);
    check_close(t1[0], 2 - 0.5 * (1 + 0.4), 1e-6, 0, "sgd coupled");
    pd_optim_destroy(&os);
    pd_optim_destroy(&oa);
    pd_optim_destroy(&ow);
}

/* ---- noise ---------------------------------------------------------------- */

/* The noise sgd (lr 1, g 0, theta 0) adds at update t, negated. */
static void noise_draw(uint64_t seed, int64_t t, float *th, size_t n, double noise)
{
    pd_optim_config oc = cfg_of(PD_OPT_SGD);
    oc.lr = 1;
    oc.noise = noise;
    oc.noise_gamma = 0.55;
    pd_optim *o = make(&oc, 0, n, seed);
    float *g = fvec(n);
    memset(th, 0, n * sizeof *th);
    pd_optim_step st = pd_optim_prepare(o, t, 1, 0);
    pd_optim_apply(o, &st, th, g, 0, n);
    free(g);
    pd_optim_destroy(&o);
}

static void test_noise_statistics(void **state)
{
    (void)state;
    enum { N = 200000 };
    const double noise = 0.5;
    float *a = fvec(N), *b = fvec(N);
    noise_draw(11, 3, a, N, noise);
    noise_draw(11, 4, b, N, noise);
    double var_t = noise / pow(4.0, 0.55);    /* (1 + t)^gamma, t = 3 */
    double sd = sqrt(var_t);
    double sum = 0, sq = 0, cross = 0, lag = 0;
    size_t in1 = 0;
    for (size_t i = 0; i < N; i++) {
        double x = -(double)a[i];
        sum += x;
        sq += x * x;
        cross += x * -(double)b[i];
        if (i)
            lag += x * -(double)a[i - 1];
        in1 += fabs(x) < sd;
    }
    double mean = sum / N, var = sq / N - mean * mean;
    /* 5 standard errors: fails by chance with probability ~1e-6 each, and
     * the draws are deterministic, so a pass is a pass for good. */
    check_close(mean, 0, 0, 5 * sd / sqrt((double)N), "noise mean");
    check_close(var, var_t, 5 * sqrt(2.0 / N), 0, "noise variance");
    check_close(cross / N / var_t, 0, 0, 5 / sqrt((double)N), "correlation across t");
    check_close(lag / N / var_t, 0, 0, 5 / sqrt((double)N), "correlation of neighbours");
    /* Gaussian shape: P(|x| < sigma) = 0.6827 */
    check_close((double)in1 / N, 0.682689492, 0, 5 * sqrt(0.2166 / N), "mass within 1 sd");
    /* prepare's sigma */
    pd_optim_config oc = cfg_of(PD_OPT_SGD);
    oc.noise = noise;
    pd_optim *o = make(&oc, 0, 1, 1);
    check_close(pd_optim_prepare(o, 3, 1, 0).noise_sigma, sd, 1e-7, 0, "sigma_3");
    check_close(pd_optim_prepare(o, 99, 1, 0).noise_sigma, sqrt(noise / pow(100.0, 0.55)),
                1e-7, 0, "sigma_99");
    pd_optim_destroy(&o);
    free(a);
    free(b);
}

static void test_noise_deterministic(void **state)
{
    (void)state;
    enum { N = 1000 };
    float a[N], b[N], c[N], d[N];
    noise_draw(11, 3, a, N, 0.5);
    noise_draw(11, 3, b, N, 0.5);
    noise_draw(12, 3, c, N, 0.5);
    noise_draw(11, 5, d, N, 0.5);
    check_bits(a, b, N, "same seed and t");
    size_t same_c = 0, same_d = 0;
    for (int i = 0; i < N; i++) {
        same_c += a[i] == c[i];
        same_d += a[i] == d[i];
    }
    assert_int_equal(same_c, 0);   /* another seed: other draws */
    assert_int_equal(same_d, 0);   /* another t: other draws */
    /* noise 0: none at all */
    noise_draw(11, 3, a, N, 0);
    for (int i = 0; i < N; i++)
        assert_true(a[i] == 0.0f);
}

/* ---- sparse steps ---------------------------------------------------------- */

/* sgd and adagrad: a sparse step is a dense step with g = 0 elsewhere, on
 * every coordinate, even when the index sets change from step to step. */
static void test_sparse_equals_dense_sgd_adagrad(void **state)
{
    (void)state;
    enum { N = 10, STEPS = 4 };
    const pd_optimizer_name rs[2] = {PD_OPT_SGD, PD_OPT_ADAGRAD};
    const uint32_t sets[STEPS][3] = {{1, 4, 7}, {0, 4, 9}, {2, 3, 7}, {1, 5, 8}};
    const float vals[STEPS][3] = {
        {0.5f, -1, 2}, {0.3f, 0.2f, -0.7f}, {-1.5f, 0.6f, 0.1f}, {0.9f, -0.4f, 0.25f}};
    for (int k = 0; k < 2; k++) {
        pd_optim_config oc = cfg_of(rs[k]);
        oc.clip_value = 1;
        oc.clip_norm = 1;
        pd_optim *sp = make(&oc, 0, N, 1), *de = make(&oc, 0, N, 1);
        float ts[N], td[N], g[N];
        fill_normal(ts, N, 5, 1.0);
        memcpy(td, ts, sizeof ts);
        for (int t = 1; t <= STEPS; t++) {
            memset(g, 0, sizeof g);
            for (int j = 0; j < 3; j++)
                g[sets[t - 1][j]] = vals[t - 1][j];
            double norm = pd_optim_norm2(vals[t - 1], 3);
            pd_optim_step st = pd_optim_prepare(sp, t, 1, norm);
            pd_optim_apply_sparse(sp, &st, ts, sets[t - 1], vals[t - 1], 3);
            pd_optim_apply(de, &st, td, g, 0, N);
            check_bits(ts, td, N, rule_names[rs[k]]);
        }
        size_t a, b;
        unsigned char *ba = saved(sp, &a), *bb = saved(de, &b);
        assert_memory_equal(ba, bb, a);
        free(ba);
        free(bb);
        pd_optim_destroy(&sp);
        pd_optim_destroy(&de);
    }
}

/* Every rule: the same index set at every step gives the dense result on
 * every coordinate (the untouched ones keep zero state in both). */
static void test_sparse_same_set_equals_dense(void **state)
{
    (void)state;
    enum { N = 8, NNZ = 3, STEPS = 4 };
    const uint32_t idx[NNZ] = {1, 2, 6};
    for (int rule = 0; rule < NRULES; rule++) {
        pd_optim_config oc = cfg_of((pd_optimizer_name)rule);
        pd_optim *sp = make(&oc, 0, N, 1), *de = make(&oc, 0, N, 1);
        float ts[N], td[N], g[N], val[NNZ];
        fill_normal(ts, N, 6, 1.0);
        memcpy(td, ts, sizeof ts);
        for (int t = 1; t <= STEPS; t++) {
            fill_normal(val, NNZ, 600 + (uint64_t)t, 1.0);
            memset(g, 0, sizeof g);
            for (int j = 0; j < NNZ; j++)
                g[idx[j]] = val[j];
            pd_optim_step st = pd_optim_prepare(sp, t, 1, 0);
            pd_optim_apply_sparse(sp, &st, ts, idx, val, NNZ);
            pd_optim_apply(de, &st, td, g, 0, N);
        }
        check_bits(ts, td, N, rule_names[rule]);
        pd_optim_destroy(&sp);
        pd_optim_destroy(&de);
    }
}

/* With clipping, noise and weight decay on, each touched coordinate gets
 * exactly the dense per-coordinate step (noise drawn at its global index),
 * and untouched coordinates do not change at all. */
static void test_sparse_touched_and_untouched(void **state)
{
    (void)state;
    enum { N = 12, NNZ = 4, STEPS = 3 };
    const uint32_t idx[NNZ] = {2, 3, 7, 11};
    for (int rule = 0; rule < NRULES; rule++) {
        pd_optim_config oc = all_on((pd_optimizer_name)rule);
        pd_optim *sp = make(&oc, 0, N, 9), *de = make(&oc, 0, N, 9);
        float ts[N], td[N], t0[N], g[N] = {0}, val[NNZ];
        fill_normal(ts, N, 7, 1.0);
        memcpy(td, ts, sizeof ts);
        memcpy(t0, ts, sizeof ts);
        for (int t = 1; t <= STEPS; t++) {
            fill_normal(val, NNZ, 700 + (uint64_t)t, 1.0);
            for (int j = 0; j < NNZ; j++)
                g[idx[j]] = val[j];
            double norm = pd_optim_norm2(val, NNZ);
            pd_optim_step st = pd_optim_prepare(sp, t, 1, norm);
            pd_optim_apply_sparse(sp, &st, ts, idx, val, NNZ);
            for (int j = 0; j < NNZ; j++)   /* dense, one coordinate at a time */
                pd_optim_apply(de, &st, td, g, idx[j], idx[j] + 1);
        }
        check_bits(ts, td, N, rule_names[rule]);
        int touched = 0;
        for (int i = 0; i < N; i++) {
            bool in = false;
            for (int j = 0; j < NNZ; j++)
                in |= idx[j] == (uint32_t)i;
            if (in)
                touched += ts[i] != t0[i];
            else if (memcmp(&ts[i], &t0[i], sizeof(float)) != 0)
                fail_msg("%s: untouched %d changed", rule_names[rule], i);
        }
        assert_int_equal(touched, NNZ);
        pd_optim_destroy(&sp);
        pd_optim_destroy(&de);
    }
}

/* Momentum and adam are lazy: an untouched coordinate's velocity is neither
 * applied nor decayed, and adam's bias correction uses the global t. */
static void test_sparse_lazy(void **state)
{
    (void)state;
    const uint32_t i0[1] = {0}, i1[1] = {1};
    const float one[1] = {1.0f};
    pd_optim_config oc = cfg_of(PD_OPT_MOMENTUM);
    oc.lr = 0.1;
    oc.momentum = 0.9;
    pd_optim *o = make(&oc, 0, 2, 1);
    float th[2] = {1, 1};
    pd_optim_step st = pd_optim_prepare(o, 1, 1, 0);
    pd_optim_apply_sparse(o, &st, th, i0, one, 1);    /* v0 = -0.1, th0 = 0.9 */
    check_close(th[0], 0.9, 1e-6, 0, "lazy momentum 1");
    st = pd_optim_prepare(o, 2, 1, 0);
    pd_optim_apply_sparse(o, &st, th, i1, one, 1);    /* coordinate 0 frozen */
    assert_true(th[0] == 0.9f);                       /* dense would give 0.81 */
    check_close(th[1], 0.9, 1e-6, 0, "lazy momentum other");
    st = pd_optim_prepare(o, 3, 1, 0);
    pd_optim_apply_sparse(o, &st, th, i0, one, 1);    /* v0 = 0.9 (-0.1) - 0.1 */
    check_close(th[0], 0.9 - 0.19, 1e-6, 0, "lazy momentum 3");
    pd_optim_destroy(&o);

    oc = cfg_of(PD_OPT_ADAM);
    oc.lr = 0.01;
    o = make(&oc, 0, 2, 1);
    th[0] = th[1] = 1;
    for (int t = 1; t <= 2; t++) {
        st = pd_optim_prepare(o, t, 1, 0);
        pd_optim_apply_sparse(o, &st, th, i0, one, 1);
    }
    assert_true(th[1] == 1.0f);
    st = pd_optim_prepare(o, 3, 1, 0);
    pd_optim_apply_sparse(o, &st, th, i1, one, 1);    /* first touch at t = 3 */
    double m = 0.1, v = 0.001;
    double step = 0.01 * (m / (1 - pow(0.9, 3))) / (sqrt(v / (1 - pow(0.999, 3))) + 1e-8);
    check_close(th[1], 1 - step, 1e-6, 0, "adam first touch at t=3");
    /* ...which is not the t = 1 step (about lr). */
    assert_true(fabs((1 - th[1]) - 0.01) > 1e-3);
    pd_optim_destroy(&o);
}

/* ---- convergence with the defaults ----------------------------------------- */

enum { LD = 5, LN = 400 };
typedef struct logistic {
    double x[LN][LD];
    double y[LN];   /* +-1 */
} logistic;

/* Mean log(1 + exp(-y w.x)) and its gradient. */
static double logistic_loss(const logistic *p, const double *w, double *grad)
{
    double loss = 0;
    if (grad)
        memset(grad, 0, LD * sizeof *grad);
    for (int i = 0; i < LN; i++) {
        double z = 0;
        for (int j = 0; j < LD; j++)
            z += w[j] * p->x[i][j];
        double yz = p->y[i] * z;
        loss += yz > 0 ? log1p(exp(-yz)) : -yz + log1p(exp(yz));
        if (grad) {
            double s = -p->y[i] / (1 + exp(yz));
            for (int j = 0; j < LD; j++)
                grad[j] += s * p->x[i][j] / LN;
        }
    }
    return loss / LN;
}

/* The minimum by Newton's method (5 x 5 solves by Gauss-Jordan). */
static double logistic_min(const logistic *p)
{
    double w[LD] = {0};
    for (int it = 0; it < 50; it++) {
        double g[LD], h[LD][LD + 1];
        memset(h, 0, sizeof h);
        logistic_loss(p, w, g);
        for (int i = 0; i < LN; i++) {
            double z = 0;
            for (int j = 0; j < LD; j++)
                z += w[j] * p->x[i][j];
            double s = 1 / (1 + exp(-z));
            double c = s * (1 - s) / LN;
            for (int a = 0; a < LD; a++)
                for (int b = 0; b < LD; b++)
                    h[a][b] += c * p->x[i][a] * p->x[i][b];
        }
        for (int a = 0; a < LD; a++)
            h[a][LD] = g[a];
        for (int c = 0; c < LD; c++) {
            for (int r = 0; r < LD; r++) {
                if (r == c)
                    continue;
                double f = h[r][c] / h[c][c];
                for (int k = c; k <= LD; k++)
                    h[r][k] -= f * h[c][k];
            }
        }
        for (int a = 0; a < LD; a++)
            w[a] -= h[a][LD] / h[a][a];
    }
    double g[LD];
    double f = logistic_loss(p, w, g);
    for (int a = 0; a < LD; a++)
        check_close(g[a], 0, 0, 1e-12, "Newton gradient %d", a);
    return f;
}

/* Features of very different scales (curvatures spread over ~3 orders of
 * magnitude); labels drawn from the logistic model so the minimum is finite. */
static void logistic_make(logistic *p)
{
    static const double scale[LD] = {1.0, 3.0, 0.3, 1.0, 0.1};
    static const double w_true[LD] = {1.0, -0.5, 2.0, 0.5, 3.0};
    pd_rng r = pd_rng_make(2024, 1, 0);
    for (int i = 0; i < LN; i++) {
        double z = 0;
        for (int j = 0; j < LD; j++) {
            /* the last feature is a constant 1: the bias */
            p->x[i][j] = j == LD - 1 ? 1.0 : scale[j] * pd_rng_normal(&r);
            z += w_true[j] * p->x[i][j];
        }
        p->y[i] = pd_rng_uniform(&r) < 1 / (1 + exp(-z)) ? 1 : -1;
    }
}

/* A sparse pull: the lookahead point gathered at some coordinates equals
 * the dense lookahead point there, on an optimizer owning [lo, hi) = [3, 11),
 * for a rule with a lookahead (after steps that make v nonzero) and one
 * without. */
static void test_lookahead_gather(void **state)
{
    (void)state;
    enum { LO = 3, HI = 11 };
    const pd_optimizer_name rules[] = {PD_OPT_NESTEROV, PD_OPT_RMSPROP_NESTEROV, PD_OPT_ADAM};
    for (int q = 0; q < 3; q++) {
        pd_optim_config oc = cfg_of(rules[q]);
        pd_optim *o = make(&oc, LO, HI, 1);
        float th[HI], g[HI], pt[HI];
        for (int i = 0; i < HI; i++)
            th[i] = 0.1f * (float)i - 0.4f;
        for (int t = 1; t <= 3; t++) {
            for (int i = 0; i < HI; i++)
                g[i] = (float)((i * 7 + t * 3) % 5) - 2.0f;
            pd_optim_step st = pd_optim_prepare(o, t, 1, 0);
            pd_optim_apply(o, &st, th, g, LO, HI);
        }
        pd_optim_lookahead(o, th, pt, LO, HI);
        const uint32_t idx[] = {3, 4, 7, 10};
        float out[4];
        pd_optim_lookahead_gather(o, th, idx, 4, out);
        for (int j = 0; j < 4; j++)
            assert_true(out[j] == pt[idx[j]]);
        if (rules[q] != PD_OPT_ADAM)
            assert_true(pt[7] != th[7]);   /* the lookahead moved it */
        pd_optim_destroy(&o);
    }
}

static void test_defaults_converge(void **state)
{
    (void)state;
    enum { STEPS = 20000 };
    logistic *p = malloc(sizeof *p);
    assert_non_null(p);
    logistic_make(p);
    double fmin = logistic_min(p);
    double w0[LD] = {0};
    double f0 = logistic_loss(p, w0, NULL);
    for (int rule = 0; rule < NRULES; rule++) {
        pd_optim_config oc = cfg_of((pd_optimizer_name)rule);
        pd_optim *o = make(&oc, 0, LD, 1);
        float th[LD] = {0}, pt[LD], g[LD];
        double w[LD], gd[LD];
        for (int t = 1; t <= STEPS; t++) {
            pd_optim_lookahead(o, th, pt, 0, LD);
            for (int j = 0; j < LD; j++)
                w[j] = pt[j];
            logistic_loss(p, w, gd);
            for (int j = 0; j < LD; j++)
                g[j] = (float)gd[j];
            pd_optim_step st = pd_optim_prepare(o, t, 1, 0);
            pd_optim_apply(o, &st, th, g, 0, LD);
        }
        for (int j = 0; j < LD; j++)
            w[j] = th[j];
        double gap = logistic_loss(p, w, NULL) - fmin;
        if (!(gap < 1e-6 * (f0 - fmin)))
            fail_msg("%s with its defaults: loss gap %.3g after %d steps (start %.3g)",
                     rule_names[rule], gap, STEPS, f0 - fmin);
        pd_optim_destroy(&o);
    }
    free(p);
}

/* pd_optim_take_step, the one step every trainer takes: sgd lr 0.25,
 * clip_norm 1. Dense over [1, 3) at scale 0.5 with a gradient of norm 2
 * (clip factor 1/2): theta -= 0.25 * 0.5 * 0.5 * g inside the range only.
 * Then sparse at coordinate 2 (scale 1, norm 0.5: no clipping):
 * theta[2] -= 0.25 * 4; every other coordinate untouched. */
static void test_take_step(void **state)
{
    (void)state;
    pd_optim_config oc = cfg_of(PD_OPT_SGD);
    oc.lr = 0.25;
    oc.clip_norm = 1;
    pd_optim *o = make(&oc, 1, 3, 1);
    float theta[4] = {1, 2, 3, 4};
    const float g[4] = {100, 1, -2, 100};
    pd_optim_take_step(o, 1, 0.5, 2.0, theta, &(pd_optim_grad){.g = g, .lo = 1, .hi = 3});
    const float dense[4] = {1, 1.9375f, 3.125f, 4};
    for (int i = 0; i < 4; i++)
        assert_float_equal(theta[i], dense[i], 0);
    const uint32_t idx[1] = {2};
    const float val[1] = {4};
    pd_optim_take_step(o, 2, 1.0, 0.5, theta, &(pd_optim_grad){.idx = idx, .val = val, .nnz = 1});
    const float sparse[4] = {1, 1.9375f, 2.125f, 4};
    for (int i = 0; i < 4; i++)
        assert_float_equal(theta[i], sparse[i], 0);
    pd_optim_destroy(&o);
}

/* vsgd by hand (exact fractions of optim.h's formulas), lr 1, D = 20
 * model parameters (C = max(2, 20/10) = 2), three coordinates:
 *  0: PD_VSGD_N0 = 20 slow-start minibatches of g = 1/2, v = 1/2, h = 2
 *     leave theta at 1 and end with gb 1/2, vb = C 1/2 = 1, hb 2, tau 20;
 *     then, minibatches of n = 4:
 *     g 1/4, v 1/8, h -1 (|h| is used): gb 39/80, vb 153/160, hb 39/20
 *       (max(hb, |h|) = hb), e = 1040/3561, tau 545/34, theta 3301/3561
 *       (max(vb, v) = vb)
 *     g -1/2, v 1, h 8: gb 18569/43600, vb 83623/87200, hb 25369/10900,
 *       max(hb, |h|) = 8 and max(vb, v) = 1 (this minibatch's curvature
 *       and second moment bound the step; tau's ratio keeps vb),
 *       e = 344807761/5870766566, tau 1591900919/113727280,
 *       theta 39986661305653/41811599483052
 *  1: g = v = h = 0 throughout (a pixel always 0): never starts, stays put
 *     (no NaN), state all 0;
 *  2: g 1/8, v 1/64, h 1 in the dense optimizer; the sparse one never
 *     touches it.
 * Sparse steps on {0, 1} give the same bits on those; a state saved after
 * step 21 and loaded continues to the same bits. */
static void test_vsgd_by_hand(void **state)
{
    (void)state;
    pd_optim_config oc = cfg_of(PD_OPT_VSGD);
    assert_true(pd_optim_needs_curvature(PD_OPT_VSGD));
    assert_false(pd_optim_needs_curvature(PD_OPT_ADAM));
    assert_true(oc.lr == 1.0);
    assert_true(pd_optim_vsgd_slow(20) == 2.0f && pd_optim_vsgd_slow(7850) == 785.0f);
    pd_optim *a = make(&oc, 0, 3, 1), *b = make(&oc, 0, 3, 1), *c = NULL;
    pd_optim_set_model_params(a, 20);
    pd_optim_set_model_params(b, 20);
    float ta[3] = {1, 1, 1}, tb[3] = {1, 1, 1}, tc[3];
    const int T = PD_VSGD_N0 + 2;
    for (int t = 1; t <= T; t++) {
        float g[3] = {0.5f, 0, 0.125f}, v[3] = {0.5f, 0, 0.015625f}, h[3] = {2, 0, 1};
        double n = 4;
        if (t == T - 1) {
            g[0] = 0.25f, v[0] = 0.125f, h[0] = -1;
        } else if (t == T) {
            g[0] = -0.5f, v[0] = 1, h[0] = 8;
        }
        pd_optim_curv cv = {.h = h, .v = v, .n = n};
        pd_optim_take_step(a, t, 1.0, 0, ta, &(pd_optim_grad){.g = g, .lo = 0, .hi = 3, .curv = &cv});
        const uint32_t idx[2] = {0, 1};
        pd_optim_take_step(b, t, 1.0, 0, tb,
                           &(pd_optim_grad){.idx = idx, .val = g, .nnz = 2, .curv = &cv});
        if (t < T - 1)
            assert_true(ta[0] == 1.0f);   /* slow start: no step */
        if (t == T - 1)
            check_close(ta[0], 3301.0 / 3561, 1e-6, 0, "vsgd theta after the slow start");
        if (t == T)
            check_close(ta[0], 39986661305653.0 / 41811599483052.0, 1e-6, 0, "vsgd theta");
        assert_true(ta[1] == 1.0f);
        assert_true(tb[0] == ta[0] && tb[1] == ta[1] && tb[2] == 1.0f);
        if (t == T - 1) {   /* c continues from a's state */
            size_t sz;
            unsigned char *buf = saved(a, &sz);
            c = make(&oc, 0, 3, 1);
            pd_optim_set_model_params(c, 20);
            assert_int_equal(pd_optim_load(c, buf, sz), PD_OK);
            free(buf);
            memcpy(tc, ta, sizeof tc);
        }
        if (t == T)
            pd_optim_take_step(c, t, 1.0, 0, tc,
                               &(pd_optim_grad){.g = g, .lo = 0, .hi = 3, .curv = &cv});
    }
    check_bits(ta, tc, 3, "vsgd after load");
    /* The state: gb, vb, hb, tau, each over the 3 coordinates. */
    size_t sz;
    unsigned char *buf = saved(a, &sz);
    assert_int_equal(sz, 32 + 4 * 3 * 4);
    float st[12];
    pd_le_get_floats(st, buf + 32, 12);
    free(buf);
    const double want0[4] = {18569.0 / 43600, 83623.0 / 87200, 25369.0 / 10900,
                             1591900919.0 / 113727280};
    for (int k = 0; k < 4; k++) {
        check_close(st[3 * k], want0[k], 1e-6, 0, "vsgd state vector %d, coordinate 0", k);
        check_close(st[3 * k + 1], 0, 0, 0, "vsgd state vector %d, coordinate 1", k);
    }
    pd_optim_destroy(&a);
    pd_optim_destroy(&b);
    pd_optim_destroy(&c);
}

/* optimizer.vsgd_memory bounds tau (exact fractions, lr 1, D = 20, so
 * C = 2): after PD_VSGD_N0 slow-start minibatches of g = 1/8, v = 1, h = 1
 * (gb 1/8, vb 2, hb 1, tau 20), two more of the same with n = 4:
 *   unbounded: e = 20/639, then tau 3251/156, theta 1273/1278; then
 *     theta 85791950/86476509, vb 24765/13004, tau 1339420679/61813440;
 *   memory 20: the first step's tau is 20 (its theta the same), so the
 *     second averages with 1/20: theta 1977256/1993041, vb 761/400, tau 20;
 *   memory 21: tau 3251/156 < 21 after the first step, so the second step
 *     is the unbounded one bit for bit, and its tau becomes 21. */
static void test_vsgd_memory(void **state)
{
    (void)state;
    const double mem[3] = {0, 20, 21};
    pd_optim *o[3];
    float th[3] = {1, 1, 1};
    for (int i = 0; i < 3; i++) {
        pd_optim_config oc = cfg_of(PD_OPT_VSGD);
        oc.vsgd_memory = mem[i];
        o[i] = make(&oc, 0, 1, 1);
        pd_optim_set_model_params(o[i], 20);
    }
    const float g[1] = {0.125f}, v[1] = {1}, h[1] = {1};
    pd_optim_curv cv = {.h = h, .v = v, .n = 4};
    for (int t = 1; t <= PD_VSGD_N0 + 2; t++) {
        for (int i = 0; i < 3; i++)
            pd_optim_take_step(o[i], t, 1.0, 0, &th[i],
                               &(pd_optim_grad){.g = g, .lo = 0, .hi = 1, .curv = &cv});
        if (t == PD_VSGD_N0 + 1)
            for (int i = 0; i < 3; i++)
                check_close(th[i], 1273.0 / 1278, 1e-7, 0, "vsgd memory %g, first step", mem[i]);
    }
    check_close(th[0], 85791950.0 / 86476509, 1e-7, 0, "vsgd unbounded theta");
    check_close(th[1], 1977256.0 / 1993041, 1e-7, 0, "vsgd memory 20 theta");
    check_bits(&th[2], &th[0], 1, "vsgd memory 21 theta");
    const double vb[3] = {24765.0 / 13004, 761.0 / 400, 24765.0 / 13004};
    const double tau[3] = {1339420679.0 / 61813440, 20, 21};
    for (int i = 0; i < 3; i++) {
        size_t sz;
        unsigned char *buf = saved(o[i], &sz);
        float st[4];   /* gb, vb, hb, tau */
        pd_le_get_floats(st, buf + 32, 4);
        free(buf);
        check_close(st[1], vb[i], 1e-6, 0, "vsgd memory %g: vb", mem[i]);
        check_close(st[3], tau[i], i ? 0 : 1e-6, 0, "vsgd memory %g: tau", mem[i]);
        pd_optim_destroy(&o[i]);
    }
}

/* vsgd's step is scaled by the step's lr (1 times the staleness scale):
 * after the same slow start as above, g 1/4, v 1/8, h -1, n 4 with scale
 * 1/2 moves theta half as far: 1 - 1/2 1040/3561 1/4. */
static void test_vsgd_scale(void **state)
{
    (void)state;
    pd_optim_config oc = cfg_of(PD_OPT_VSGD);
    pd_optim *o = make(&oc, 0, 1, 1);
    pd_optim_set_model_params(o, 20);
    float th[1] = {1};
    for (int t = 1; t <= PD_VSGD_N0 + 1; t++) {
        bool last = t == PD_VSGD_N0 + 1;
        const float g[1] = {last ? 0.25f : 0.5f}, v[1] = {last ? 0.125f : 0.5f};
        const float h[1] = {last ? -1.0f : 2.0f};
        pd_optim_curv cv = {.h = h, .v = v, .n = 4};
        pd_optim_take_step(o, t, 0.5, 0, th,
                           &(pd_optim_grad){.g = g, .lo = 0, .hi = 1, .curv = &cv});
    }
    check_close(th[0], 1 - 0.5 * 1040.0 / 3561 * 0.25, 1e-6, 0, "vsgd scale");
    pd_optim_destroy(&o);
}

/* vsgd's dense loop is vectorized (8 coordinates at a time with AVX2, its
 * slow start and step computed side by side and selected, optim.c); its
 * sparse loop is not. Over 37 coordinates (the vector body and a scalar
 * tail) of four kinds, the dense and the sparse step must give the same
 * bits, every step and in the saved state: j % 4 == 0 never gets a signal
 * (stays put, state 0), 1 gets gradients of either sign, 2 gets them until
 * step 25 and then g = v = h = 0 (its averages decay, its steps stay
 * finite), 3 gets none until step 6, so its slow start begins late and
 * ends while the others step. */
static void test_vsgd_vector_vs_scalar(void **state)
{
    (void)state;
    enum { N = 37, T = 40 };
    pd_optim_config oc = cfg_of(PD_OPT_VSGD);
    pd_optim *a = make(&oc, 0, N, 1), *b = make(&oc, 0, N, 1);
    pd_optim_set_model_params(a, 10 * N);
    pd_optim_set_model_params(b, 10 * N);
    float ta[N], tb[N];
    uint32_t idx[N];
    for (int j = 0; j < N; j++) {
        ta[j] = tb[j] = 0.25f * (float)(j - 18);
        idx[j] = (uint32_t)j;
    }
    int moved = 0;
    for (int t = 1; t <= T; t++) {
        float g[N], v[N], h[N];
        for (int j = 0; j < N; j++) {
            int kind = j % 4;
            bool on = kind == 1 || (kind == 2 && t <= 25) || (kind == 3 && t > 6);
            /* a gradient of either sign that changes with t and j */
            float x = (float)((t * 7 + j * 13) % 17 - 8) / 8.0f;
            g[j] = on ? x : 0.0f;
            v[j] = on ? x * x + 0.0625f : 0.0f;
            h[j] = on ? 0.5f + (float)(j % 5) / 4.0f : 0.0f;
        }
        pd_optim_curv cv = {.h = h, .v = v, .n = 8};
        pd_optim_take_step(a, t, 1.0, 0, ta, &(pd_optim_grad){.g = g, .lo = 0, .hi = N, .curv = &cv});
        pd_optim_take_step(b, t, 1.0, 0, tb,
                           &(pd_optim_grad){.idx = idx, .val = g, .nnz = N, .curv = &cv});
        check_bits(ta, tb, N, "vsgd dense (vectorized) against sparse (scalar)");
    }
    for (int j = 0; j < N; j++) {
        if (j % 4 == 0)
            assert_true(ta[j] == 0.25f * (float)(j - 18));   /* never a signal: put */
        else if (ta[j] != 0.25f * (float)(j - 18))
            moved++;
    }
    assert_true(moved >= 3 * (N / 4));   /* the others stepped after their slow start */
    check_same_state(a, b);
    pd_optim_destroy(&a);
    pd_optim_destroy(&b);
}

/* Delay compensation by hand: g + lambda g g (now - stale), lambda 0.25,
 * every value exact in float. With sgd the point now is theta; with
 * nesterov (momentum 0.5) it is the lookahead theta + 0.5 v after one step
 * of lr 1 on {1, 0, -2}: v = {-1, 0, 2}, theta = {0, 2, 5}, now =
 * {-0.5, 2, 6}. Dense over a range, sparse over pairs, each then stepped. */
static void test_compensate(void **state)
{
    (void)state;
    const float g[3] = {2, -1, 0.5f}, stale[3] = {0.5f, 2, 4};
    float out[3];
    pd_optim_grad dc;

    pd_optim_config oc = cfg_of(PD_OPT_SGD);
    oc.lr = 1;
    pd_optim *o = make(&oc, 0, 3, 1);
    float theta[3] = {1, 2, 3};
    pd_optim_compensate(o, 0.25, theta, stale, 0, &(pd_optim_grad){.g = g, .lo = 0, .hi = 3}, out,
                        &dc);
    assert_true(dc.g == out && dc.lo == 0 && dc.hi == 3 && !dc.idx);
    assert_true(out[0] == 2.5f && out[1] == -1 && out[2] == 0.4375f);
    /* A sub-range: only [1, 3) is read and written. */
    out[0] = 99;
    pd_optim_compensate(o, 0.25, theta, stale, 0, &(pd_optim_grad){.g = g, .lo = 1, .hi = 3}, out,
                        &dc);
    assert_true(out[0] == 99 && out[1] == -1 && out[2] == 0.4375f);
    /* A server's range buffers: [1, 3) held from 0, stale[i - 1]. */
    const float g_range[2] = {-1, 0.5f}, stale_range[2] = {2, 4};
    pd_optim_compensate(o, 0.25, theta, stale_range, 1,
                        &(pd_optim_grad){.g_range = g_range, .lo = 1, .hi = 3}, out, &dc);
    assert_true(dc.g_range == out && !dc.g && dc.lo == 1 && dc.hi == 3);
    assert_true(out[0] == -1 && out[1] == 0.4375f);
    pd_optim_compensate(o, 0.25, theta, stale_range, 1,
                        &(pd_optim_grad){.idx = (const uint32_t[]){2}, .val = g_range + 1,
                                         .nnz = 1}, out, &dc);
    assert_true(out[0] == 0.4375f);
    /* Sparse pairs (2, 0.5), (0, 2): packed out. */
    const uint32_t idx[2] = {2, 0};
    const float val[2] = {0.5f, 2};
    pd_optim_compensate(o, 0.25, theta, stale, 0,
                        &(pd_optim_grad){.idx = idx, .val = val, .nnz = 2}, out, &dc);
    assert_true(dc.idx == idx && dc.val == out && dc.nnz == 2);
    assert_true(out[0] == 0.4375f && out[1] == 2.5f);
    pd_optim_take_step(o, 1, 1.0, 0, theta, &dc);   /* sgd, lr 1: theta[i] -= out */
    assert_true(theta[0] == -1.5f && theta[1] == 2 && theta[2] == 2.5625f);
    /* lambda 0: the gradient itself. */
    pd_optim_compensate(o, 0, theta, stale, 0, &(pd_optim_grad){.g = g, .lo = 0, .hi = 3}, out, &dc);
    assert_true(out[0] == 2 && out[1] == -1 && out[2] == 0.5f);
    pd_optim_destroy(&o);

    oc = cfg_of(PD_OPT_NESTEROV);
    oc.lr = 1;
    oc.momentum = 0.5;
    o = make(&oc, 0, 3, 1);
    float th[3] = {1, 2, 3};
    const float g0[3] = {1, 0, -2};
    pd_optim_take_step(o, 1, 1.0, 0, th, &(pd_optim_grad){.g = g0, .lo = 0, .hi = 3});
    assert_true(th[0] == 0 && th[1] == 2 && th[2] == 5);
    pd_optim_compensate(o, 0.25, th, stale, 0, &(pd_optim_grad){.g = g, .lo = 0, .hi = 3}, out,
                        &dc);
    assert_true(out[0] == 1 && out[1] == -1 && out[2] == 0.625f);
    pd_optim_compensate(o, 0.25, th, stale, 0, &(pd_optim_grad){.idx = idx, .val = val, .nnz = 2},
                        out, &dc);
    assert_true(out[0] == 0.625f && out[1] == 1);
    pd_optim_destroy(&o);
}

/* DC-ASGD-a by hand: lambda 0.25, dc_decay 0.5, sgd over [0, 3), theta
 * {1, 2, 3}, stale {0.5, 2, 4}, so now - stale = {0.5, 0, -1}. The dense
 * g {2, -1, 0.5} first makes q = 0.5 g g = {2, 0.5, 0.125}, then
 * out = g + 0.25 / sqrt(q + 1e-7) g g (now - stale):
 *   {2 + 0.5 / sqrt(2.0000001), -1, 0.5 - 0.0625 / sqrt(0.1250001)}
 *   = {2.35355338, -1, 0.32322338};
 * sparse pairs (2, 0.5), (0, 2) then move q[2] to 0.1875 and q[0] to 3,
 * leaving q[1]: out = {0.5 - 0.0625 / sqrt(0.1875001),
 * 2 + 0.5 / sqrt(3.0000001)} = {0.35566247, 2.28867513}. q is the last
 * state vector: saved (and loaded) with the rule's, {3, 0.5, 0.1875}
 * exactly; without the option the state has no q. */
static void test_compensate_adaptive(void **state)
{
    (void)state;
    const float g[3] = {2, -1, 0.5f}, stale[3] = {0.5f, 2, 4};
    float theta[3] = {1, 2, 3}, out[3];
    pd_optim_grad dc;
    pd_optim_config oc = cfg_of(PD_OPT_SGD);
    oc.lr = 1;
    pd_optim *plain = make(&oc, 0, 3, 1);
    assert_int_equal(pd_optim_state_size(plain), 32);
    pd_optim_destroy(&plain);

    oc.dc_lambda_adaptive = true;
    oc.dc_decay = 0.5;
    pd_optim *o = make(&oc, 0, 3, 1);
    assert_int_equal(pd_optim_state_size(o), 32 + 3 * 4);
    pd_optim_compensate(o, 0.25, theta, stale, 0, &(pd_optim_grad){.g = g, .lo = 0, .hi = 3}, out,
                        &dc);
    assert_float_equal(out[0], 2.3535533817544394, 1e-6);
    assert_true(out[1] == -1);
    assert_float_equal(out[2], 0.3232233754139988, 1e-6);
    const uint32_t idx[2] = {2, 0};
    const float val[2] = {0.5f, 2};
    pd_optim_compensate(o, 0.25, theta, stale, 0, &(pd_optim_grad){.idx = idx, .val = val, .nnz = 2},
                        out, &dc);
    assert_float_equal(out[0], 0.3556624711925961, 1e-6);
    assert_float_equal(out[1], 2.288675129783561, 1e-6);

    unsigned char buf[32 + 3 * 4];
    assert_int_equal(pd_optim_save(o, buf, sizeof buf), PD_OK);
    float q[3];
    for (int i = 0; i < 3; i++) {
        uint32_t u = (uint32_t)buf[32 + 4 * i] | (uint32_t)buf[33 + 4 * i] << 8 |
                     (uint32_t)buf[34 + 4 * i] << 16 | (uint32_t)buf[35 + 4 * i] << 24;
        memcpy(&q[i], &u, sizeof u);
    }
    assert_true(q[0] == 3 && q[1] == 0.5f && q[2] == 0.1875f);
    /* A loaded copy goes on exactly as the original. */
    pd_optim *copy = make(&oc, 0, 3, 1);
    assert_int_equal(pd_optim_load(copy, buf, sizeof buf), PD_OK);
    float out2[3];
    pd_optim_compensate(o, 0.25, theta, stale, 0, &(pd_optim_grad){.g = g, .lo = 0, .hi = 3}, out,
                        &dc);
    pd_optim_compensate(copy, 0.25, theta, stale, 0, &(pd_optim_grad){.g = g, .lo = 0, .hi = 3},
                        out2, &dc);
    assert_memory_equal(out, out2, sizeof out);
    /* q = 0.5 * 3 + 0.5 * 4 = 3.5: 2 + 0.5 / sqrt(3.5000001). */
    assert_float_equal(out[0], 2.267261238094407, 1e-6);
    /* A state saved without q does not load into an optimizer with it. */
    oc.dc_lambda_adaptive = false;
    plain = make(&oc, 0, 3, 1);
    unsigned char small[32];
    assert_int_equal(pd_optim_save(plain, small, sizeof small), PD_OK);
    assert_int_not_equal(pd_optim_load(copy, small, sizeof small), PD_OK);
    pd_optim_destroy(&plain);
    pd_optim_destroy(&copy);
    pd_optim_destroy(&o);

    /* A server's range [1, 3): q[i - 1], the buffers' own offsets. */
    oc.dc_lambda_adaptive = true;
    o = make(&oc, 1, 3, 1);
    const float g_range[2] = {-1, 0.5f}, stale_range[2] = {2, 4};
    pd_optim_compensate(o, 0.25, theta, stale_range, 1,
                        &(pd_optim_grad){.g_range = g_range, .lo = 1, .hi = 3}, out, &dc);
    assert_true(out[0] == -1);
    assert_float_equal(out[1], 0.3232233754139988, 1e-6);
    pd_optim_destroy(&o);
}

/* pd_optim_finite against isfinite on every class of float, at every
 * position of vectors longer and shorter than a vector register. */
static void test_finite(void **state)
{
    (void)state;
    const float odd[] = {NAN, -NAN, INFINITY, -INFINITY};
    const float fine[] = {0.0f, -0.0f, 1.0f, -1.5f, 3.4028235e38f, -3.4028235e38f,
                          1.17549435e-38f, 1.4e-45f, -1.4e-45f, 1e-40f};
    enum { N = 37 };
    float v[N] = {0};
    for (size_t n = 0; n <= N; n++) {
        for (size_t i = 0; i < n; i++)
            v[i] = fine[i % (sizeof fine / sizeof *fine)];
        assert_true(pd_optim_finite(v, n));
        for (size_t k = 0; k < n; k++) {
            for (size_t j = 0; j < sizeof odd / sizeof *odd; j++) {
                float keep = v[k];
                v[k] = odd[j];
                assert_false(pd_optim_finite(v, n));
                v[k] = keep;
            }
        }
    }
    uint32_t bits = 0x7fc00001u;   /* a NaN with a payload, sign clear */
    memcpy(&v[5], &bits, sizeof bits);
    assert_false(pd_optim_finite(v, 6));
    assert_true(pd_optim_finite(v, 5));
}

/* pd_optim_sumsq chained over any split of a vector (the servers' blocks)
 * gives pd_optim_norm2's bits. */
static void test_sumsq_blocks(void **state)
{
    (void)state;
    enum { N = 10007 };
    static float g[N];
    uint32_t x = 7;
    for (size_t i = 0; i < N; i++)
        g[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    double want = pd_optim_norm2(g, N);
    const size_t blocks[] = {1, 3, 256, 4096, 5000, N};
    for (size_t b = 0; b < sizeof blocks / sizeof *blocks; b++) {
        double s = 0;
        for (size_t i = 0; i < N; i += blocks[b])
            s = pd_optim_sumsq(s, g + i, N - i < blocks[b] ? N - i : blocks[b]);
        double got = sqrt(s);
        assert_memory_equal(&got, &want, sizeof got);
    }
    assert_true(pd_optim_sumsq(2.5, g, 0) == 2.5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_match_formulas),
        cmocka_unit_test(test_rules_match_formulas_with_weight_decay),
        cmocka_unit_test(test_rules_by_hand),
        cmocka_unit_test(test_bias_corrections),
        cmocka_unit_test(test_nesterov_uses_lookahead),
        cmocka_unit_test(test_split_invariance),
        cmocka_unit_test(test_sparse_split_invariance),
        cmocka_unit_test(test_threads_disjoint_ranges),
        cmocka_unit_test(test_save_load_continues),
        cmocka_unit_test(test_load_refuses),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_clip_by_norm),
        cmocka_unit_test(test_norm2_double),
        cmocka_unit_test(test_clip_by_value_and_order),
        cmocka_unit_test(test_weight_decay_coupled_vs_decoupled),
        cmocka_unit_test(test_noise_statistics),
        cmocka_unit_test(test_noise_deterministic),
        cmocka_unit_test(test_sparse_equals_dense_sgd_adagrad),
        cmocka_unit_test(test_sparse_same_set_equals_dense),
        cmocka_unit_test(test_sparse_touched_and_untouched),
        cmocka_unit_test(test_sparse_lazy),
        cmocka_unit_test(test_take_step),
        cmocka_unit_test(test_lookahead_gather),
        cmocka_unit_test(test_compensate),
        cmocka_unit_test(test_vsgd_by_hand),
        cmocka_unit_test(test_vsgd_scale),
        cmocka_unit_test(test_vsgd_memory),
        cmocka_unit_test(test_vsgd_vector_vs_scalar),
        cmocka_unit_test(test_compensate_adaptive),
        cmocka_unit_test(test_defaults_converge),
        cmocka_unit_test(test_finite),
        cmocka_unit_test(test_sumsq_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
