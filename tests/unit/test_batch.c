/* Tests of the batch minimizer (cg, bfgs, lbfgs with the strong Wolfe line
 * search and its backtracking fallback) on objectives with known answers:
 * quadratics whose iterates are worked out by hand below, Rosenbrock's
 * function, and objectives built to make each line search fail. Every
 * function and gradient evaluation is counted. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "check.h"
#include "paramd/batch.h"
#include "paramd/error.h"

static const pd_optimizer_name methods[] = {PD_OPT_CG, PD_OPT_BFGS, PD_OPT_LBFGS};

static pd_batch_opts opts_of(pd_optimizer_name method)
{
    return (pd_batch_opts){.method = method, .cg_variant = PD_CG_PR_PLUS, .history = 10,
                           .step0 = 1, .grad_tol = 0, .loss_tol = 0,
                           .max_iterations = 1000};
}

/* A counting objective: calls, and the last report seen. */
typedef struct counter {
    int64_t calls;
    pd_batch_state last;
    int reports;
    bool all_armijo, any_restart;
    int64_t stop_at;        /* report asks to stop at this iteration (0: never) */
} counter;

static int on_report(void *ctx, const pd_batch_state *st, bool *stop)
{
    counter *c = ctx;
    assert_int_equal(st->iteration, c->reports);   /* one report per iteration, in order */
    assert_int_equal(st->evaluations, c->calls);   /* every evaluation is counted */
    c->reports++;
    c->last = *st;
    if (st->iteration > 0)
        c->all_armijo = c->all_armijo && st->armijo;
    c->any_restart = c->any_restart || st->restarted;
    *stop = c->stop_at > 0 && st->iteration == c->stop_at;
    return PD_OK;
}

/* f = 1/2 |x|^2 */
static int sphere(void *ctx, const float *x, double *f, double *g)
{
    ((counter *)ctx)->calls++;
    *f = 0.5 * ((double)x[0] * x[0] + (double)x[1] * x[1]);
    g[0] = x[0];
    g[1] = x[1];
    return PD_OK;
}

/* From (0.5, -0.25), |g| < 1: the first trial step along -g is 1, which
 * lands on the minimizer 0 exactly: one iteration, two evaluations, for
 * every method (each starts along -g). */
static void test_sphere_one_step(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        pd_batch_opts o = opts_of(methods[i]);
        float x[2] = {0.5f, -0.25f};
        counter c = {0};
        pd_batch_result r;
        assert_int_equal(pd_batch_minimize(&o, 2, x, sphere, on_report, &c, &r), PD_OK);
        assert_true(x[0] == 0.0f && x[1] == 0.0f);
        assert_int_equal(r.iterations, 1);
        assert_int_equal(r.evaluations, 2);
        assert_int_equal(c.calls, 2);
        assert_str(r.reason, "gradient_norm");
        assert_true(r.f == 0 && r.gnorm == 0);
        assert_true(c.last.step == 1.0 && c.last.line_search_steps == 1);
    }
}

/* f = 2 (x - 3)^2, g = 4 (x - 3), from x = 0 (f 18, g -12). */
static int parabola(void *ctx, const float *x, double *f, double *g)
{
    ((counter *)ctx)->calls++;
    double e = (double)x[0] - 3;
    *f = 2 * e * e;
    g[0] = 4 * e;
    return PD_OK;
}

/* By hand. bfgs and lbfgs (c2 = 0.9): the first trial is 1/|g| = 1/12, so
 * x1 = 1 (f 8, g -8): sufficient decrease holds and |g.d| = 96 <= 0.9 * 144,
 * accepted. s = 1, y = 4: H = s/y = 1/4 (the N&W 6.20 scaling, then the
 * update, which in one dimension is the secant s/y; lbfgs's two loops give
 * the same), so d = -H g = 2 and the trial step 1 lands on x = 3: f = g = 0.
 * Two iterations, three evaluations.
 * cg (c2 = 0.1): x = 1 fails the curvature condition (96 > 14.4) with
 * g.d < 0, so the step doubles: 1/6 (x = 2, f 2, g.d -48), then 1/3 (x = 4,
 * f 2, not lower than the previous 2): zoom between 1/6 and 1/3, whose cubic
 * through (1/6, 2, -48) and (1/3, 2, 48) is the parabola itself, minimum at
 * 1/4: x = 3 exactly. One iteration, five evaluations. */
static void test_parabola_by_hand(void **state)
{
    (void)state;
    const int64_t its[] = {1, 2, 2}, evals[] = {5, 3, 3};
    for (int i = 0; i < 3; i++) {
        pd_batch_opts o = opts_of(methods[i]);
        float x[1] = {0};
        counter c = {0};
        pd_batch_result r;
        assert_int_equal(pd_batch_minimize(&o, 1, x, parabola, on_report, &c, &r), PD_OK);
        assert_true(x[0] == 3.0f);
        assert_int_equal(r.iterations, its[i]);
        assert_int_equal(r.evaluations, evals[i]);
        assert_str(r.reason, "gradient_norm");
        assert_true(r.f == 0);
    }
}

/* f = 1/2 x'Ax - b'x, A = diag(1, 10, 100), b = (1, 2, 3): minimizer
 * A^-1 b = (1, 0.2, 0.03), minimum -1/2 b'A^-1 b = -(1 + 0.4 + 0.09) / 2
 * = -0.745. Each method gets there to float precision. */
static int ill_quadratic(void *ctx, const float *x, double *f, double *g)
{
    ((counter *)ctx)->calls++;
    static const double a[3] = {1, 10, 100}, b[3] = {1, 2, 3};
    *f = 0;
    for (int i = 0; i < 3; i++) {
        *f += 0.5 * a[i] * x[i] * x[i] - b[i] * x[i];
        g[i] = a[i] * x[i] - b[i];
    }
    return PD_OK;
}

static void test_quadratic_minimizer(void **state)
{
    (void)state;
    for (int v = 0; v < 4; v++) {
        pd_batch_opts o = opts_of(methods[v < 3 ? v : 0]);
        if (v == 3)
            o.cg_variant = PD_CG_FR;
        o.grad_tol = 1e-6;
        float x[3] = {0, 0, 0};
        counter c = {0};
        pd_batch_result r;
        assert_int_equal(pd_batch_minimize(&o, 3, x, ill_quadratic, on_report, &c, &r), PD_OK);
        assert_float_equal(x[0], 1.0, 1e-6);
        assert_float_equal(x[1], 0.2, 1e-6);
        assert_float_equal(x[2], 0.03, 1e-7);
        assert_float_equal(r.f, -0.745, 1e-12);
        assert_str(r.reason, "gradient_norm");
        assert_int_equal(r.evaluations, c.calls);
        printf("quadratic %s%s: %lld iterations, %lld evaluations\n",
               v == 0 ? "cg pr+" : v == 1 ? "bfgs" : v == 2 ? "lbfgs" : "cg fr", "",
               (long long)r.iterations, (long long)r.evaluations);
    }
}

/* Rosenbrock: f = 100 (y - x^2)^2 + (1 - x)^2, minimum 0 at (1, 1), from
 * the classical start (-1.2, 1). */
static int rosenbrock(void *ctx, const float *p, double *f, double *g)
{
    ((counter *)ctx)->calls++;
    double x = p[0], y = p[1], u = y - x * x;
    *f = 100 * u * u + (1 - x) * (1 - x);
    g[0] = -400 * x * u - 2 * (1 - x);
    g[1] = 200 * u;
    return PD_OK;
}

static void test_rosenbrock(void **state)
{
    (void)state;
    for (int v = 0; v < 4; v++) {
        pd_batch_opts o = opts_of(methods[v < 3 ? v : 0]);
        if (v == 3)
            o.cg_variant = PD_CG_FR;
        o.grad_tol = 1e-5;
        o.max_iterations = 5000;
        float x[2] = {-1.2f, 1.0f};
        counter c = {0};
        pd_batch_result r;
        assert_int_equal(pd_batch_minimize(&o, 2, x, rosenbrock, on_report, &c, &r), PD_OK);
        printf("rosenbrock %s: %lld iterations, %lld evaluations, f %.3g at (%.7f, %.7f), %s\n",
               v == 0 ? "cg pr+" : v == 1 ? "bfgs" : v == 2 ? "lbfgs" : "cg fr",
               (long long)r.iterations, (long long)r.evaluations, r.f, x[0], x[1], r.reason);
        assert_float_equal(x[0], 1.0, 1e-3);
        assert_float_equal(x[1], 1.0, 2e-3);
        assert_true(r.f < 1e-7);
        assert_true(strcmp(r.reason, "max_iterations") != 0);
    }
}

/* lbfgs with a memory shorter than the run (the ring of pairs wraps from
 * the second iteration with history 1) still reaches Rosenbrock's minimum. */
static void test_lbfgs_short_memory(void **state)
{
    (void)state;
    for (int h = 1; h <= 3; h++) {
        pd_batch_opts o = opts_of(PD_OPT_LBFGS);
        o.history = h;
        o.grad_tol = 1e-5;
        float x[2] = {-1.2f, 1.0f};
        counter c = {0};
        pd_batch_result r;
        assert_int_equal(pd_batch_minimize(&o, 2, x, rosenbrock, on_report, &c, &r), PD_OK);
        assert_float_equal(x[0], 1.0, 1e-5);
        assert_float_equal(x[1], 1.0, 2e-5);
        assert_str(r.reason, "gradient_norm");
        assert_true(r.iterations > h);
    }
}

/* f = -x, g = -1: unbounded below, so no step satisfies the curvature
 * condition. The Wolfe search doubles 1, 2, 4, ... for its 25 evaluations,
 * then backtracking accepts the first trial (1): x = 1, and each iteration
 * costs 26 evaluations. */
static int slope(void *ctx, const float *x, double *f, double *g)
{
    ((counter *)ctx)->calls++;
    *f = -(double)x[0];
    g[0] = -1;
    return PD_OK;
}

static void test_armijo_fallback(void **state)
{
    (void)state;
    pd_batch_opts o = opts_of(PD_OPT_LBFGS);
    o.max_iterations = 1;
    float x[1] = {0};
    counter c = {.all_armijo = true};
    pd_batch_result r;
    assert_int_equal(pd_batch_minimize(&o, 1, x, slope, on_report, &c, &r), PD_OK);
    assert_true(x[0] == 1.0f);
    assert_int_equal(r.evaluations, 1 + PD_BATCH_WOLFE_EVALS + 1);
    assert_int_equal(c.last.line_search_steps, PD_BATCH_WOLFE_EVALS + 1);
    assert_true(c.all_armijo);
    assert_str(r.reason, "max_iterations");
}

/* A gradient of the wrong sign (f = x^2, g = -2x) from x = 1: -g points
 * uphill, every trial raises f, and both searches fail along -g: no step,
 * 1 + 25 + 40 evaluations, x unchanged. */
static int liar(void *ctx, const float *x, double *f, double *g)
{
    ((counter *)ctx)->calls++;
    *f = (double)x[0] * x[0];
    g[0] = -2.0 * x[0];
    return PD_OK;
}

static void test_line_search_fails(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        pd_batch_opts o = opts_of(methods[i]);
        float x[1] = {1};
        counter c = {0};
        pd_batch_result r;
        assert_int_equal(pd_batch_minimize(&o, 1, x, liar, on_report, &c, &r), PD_OK);
        assert_true(x[0] == 1.0f);
        assert_int_equal(r.iterations, 0);
        assert_int_equal(r.evaluations, 1 + PD_BATCH_WOLFE_EVALS + PD_BATCH_ARMIJO_EVALS);
        assert_str(r.reason, "line_search_failed");
    }
}

/* The report stops the run; loss_tol and max_iterations stop it too. */
static void test_stop_reasons(void **state)
{
    (void)state;
    pd_batch_opts o = opts_of(PD_OPT_CG);
    float x[2] = {-1.2f, 1.0f};
    counter c = {.stop_at = 3};
    pd_batch_result r;
    assert_int_equal(pd_batch_minimize(&o, 2, x, rosenbrock, on_report, &c, &r), PD_OK);
    assert_str(r.reason, "stopped");
    assert_int_equal(r.iterations, 3);

    o = opts_of(PD_OPT_BFGS);
    o.max_iterations = 4;
    x[0] = -1.2f, x[1] = 1.0f;
    c = (counter){0};
    assert_int_equal(pd_batch_minimize(&o, 2, x, rosenbrock, on_report, &c, &r), PD_OK);
    assert_str(r.reason, "max_iterations");
    assert_int_equal(r.iterations, 4);
    assert_int_equal(c.reports, 5);   /* the start and each iteration */

    o = opts_of(PD_OPT_LBFGS);
    o.loss_tol = 0.5;   /* stop once an iteration lowers f by at most half */
    x[0] = -1.2f, x[1] = 1.0f;
    c = (counter){0};
    assert_int_equal(pd_batch_minimize(&o, 2, x, rosenbrock, on_report, &c, &r), PD_OK);
    assert_str(r.reason, "relative_decrease");
}

/* A non-finite starting loss is a training failure; an objective's error
 * comes back as it is. */
static int nan_objective(void *ctx, const float *x, double *f, double *g)
{
    (void)ctx;
    *f = NAN;
    g[0] = x[0];
    return PD_OK;
}

static int failing(void *ctx, const float *x, double *f, double *g)
{
    (void)ctx, (void)x, (void)f, (void)g;
    return PD_FAIL(PD_EIO, "disk on fire");
}

static void test_errors(void **state)
{
    (void)state;
    pd_batch_opts o = opts_of(PD_OPT_LBFGS);
    float x[1] = {1};
    pd_batch_result r;
    assert_int_equal(pd_batch_minimize(&o, 1, x, nan_objective, NULL, NULL, &r), PD_ETRAIN);
    assert_str(pd_err_msg(), "lbfgs: the loss at the starting point is not finite");
    assert_int_equal(pd_batch_minimize(&o, 1, x, failing, NULL, NULL, &r), PD_EIO);
    assert_str(pd_err_msg(), "disk on fire");
}

/* cd on least squares from sufficient statistics. Four examples z = (x1,
 * x2, 1): (1, 0), (0, 1), (1, 1), (0, 0) with y = 2 x1 + 3 x2 + 1 = 3, 4, 6,
 * 1, so G = sum z z' = [[2, 1, 2], [1, 2, 2], [2, 2, 4]], c = sum y z =
 * (9, 10, 14), y'y = 62, m = 4. Without l2 the minimizer is the planted
 * (2, 3, 1), f = 0. With l2 = 0.5 on the weights, (G/4 + diag(0.5, 0.5, 0))
 * w = c/4 gives w = (2/3, 1, 8/3) and f = 13/12 (solved in fractions). */
static const double cd_gram[6] = {2, 1, 2, 2, 2, 4};   /* packed upper triangle */
static const double cd_zy[3] = {9, 10, 14};

static void test_cd_least_squares(void **state)
{
    (void)state;
    assert_int_equal(pd_cd_packed_index(3, 0, 2), 2);
    assert_int_equal(pd_cd_packed_index(3, 1, 1), 3);
    assert_int_equal(pd_cd_packed_index(3, 2, 2), 5);
    pd_cd_problem pr = {.p = 3, .m = 4, .gram = cd_gram, .zy = cd_zy, .yy = 62, .l2 = 0};
    /* One block of all three coordinates: one exact solve, one cycle. */
    pd_batch_opts o = opts_of(PD_OPT_CD);
    o.block_size = 3;
    o.grad_tol = 1e-12;
    float x[3] = {0, 0, 0};
    counter c = {.calls = 1};   /* the statistics: the one evaluation */
    pd_batch_result r;
    assert_int_equal(pd_batch_cd(&o, &pr, x, on_report, &c, &r), PD_OK);
    assert_true(x[0] == 2.0f && x[1] == 3.0f && x[2] == 1.0f);
    assert_int_equal(r.iterations, 1);
    assert_int_equal(r.evaluations, 1);
    assert_str(r.reason, "gradient_norm");
    assert_float_equal(r.f, 0, 1e-12);
    /* One coordinate at a time, cyclic and random: the same minimizer. */
    for (int random = 0; random < 2; random++) {
        o.block_size = 1;
        o.random_blocks = random;
        o.grad_tol = 1e-9;
        o.seed = 7;
        x[0] = x[1] = x[2] = 0;
        c = (counter){.calls = 1};
        assert_int_equal(pd_batch_cd(&o, &pr, x, on_report, &c, &r), PD_OK);
        assert_float_equal(x[0], 2, 1e-6);
        assert_float_equal(x[1], 3, 1e-6);
        assert_float_equal(x[2], 1, 1e-6);
        /* f has cancelled to rounding (about 1e-15) by then: either stop */
        assert_true(!strcmp(r.reason, "gradient_norm") || !strcmp(r.reason, "relative_decrease"));
        printf("cd least squares, block 1 %s: %lld cycles, %s\n", random ? "random" : "cyclic",
               (long long)r.iterations, r.reason);
    }
    /* l2 = 0.5 on the weights, not the bias. */
    pr.l2 = 0.5;
    const double wstar[3] = {2.0 / 3, 1, 8.0 / 3}, w0[3] = {0, 0, 0};
    assert_float_equal(pd_cd_loss(&pr, wstar), 13.0 / 12, 1e-15);
    assert_float_equal(pd_cd_loss(&pr, w0), 62.0 / 8, 1e-15);   /* y'y / 2m */
    double A[9] = {1, 0.25, 0.5, 0.25, 1, 0.5, 0.5, 0.5, 1}, b[3] = {2.25, 2.5, 3.5};
    assert_true(pd_batch_cholesky_solve(A, b, 3));
    assert_float_equal(b[0], 2.0 / 3, 1e-15);
    assert_float_equal(b[1], 1, 1e-15);
    assert_float_equal(b[2], 8.0 / 3, 1e-15);
    double S[4] = {1, 1, 1, 1}, e[2] = {1, 1};   /* singular */
    assert_false(pd_batch_cholesky_solve(S, e, 2));
    for (size_t bs = 1; bs <= 3; bs++) {
        o.block_size = bs;
        o.random_blocks = false;
        x[0] = x[1] = x[2] = 0;
        c = (counter){.calls = 1};
        assert_int_equal(pd_batch_cd(&o, &pr, x, on_report, &c, &r), PD_OK);
        assert_float_equal(x[0], 2.0 / 3, 1e-6);
        assert_float_equal(x[1], 1, 1e-6);
        assert_float_equal(x[2], 8.0 / 3, 1e-6);
        assert_float_equal(r.f, 13.0 / 12, 1e-12);
    }
    /* A feature that is always 0 without l2: a singular block. */
    static const double zero_gram[6] = {0, 0, 0, 2, 2, 4};
    pd_cd_problem bad = {.p = 3, .m = 4, .gram = zero_gram, .zy = cd_zy, .yy = 62, .l2 = 0};
    o.block_size = 1;
    assert_int_equal(pd_batch_cd(&o, &bad, x, NULL, NULL, &r), PD_ETRAIN);
    assert_str(pd_err_msg(), "cd: the block of coordinates [0, 1) has a singular Hessian (a "
               "constant feature with model.l2 = 0?); set model.l2 > 0");
}

/* A report that saves the state at iteration `at` and stops there. */
typedef struct saver {
    int64_t at, calls;
    unsigned char *state;
    size_t size;
    bool resumed_seen;
    int64_t resumed_it, resumed_evals;
} saver;

static int save_report(void *ctx, const pd_batch_state *st, bool *stop)
{
    saver *v = ctx;
    *stop = false;
    if (st->resumed) {
        v->resumed_seen = true;
        v->resumed_it = st->iteration;
        v->resumed_evals = st->evaluations;
        return PD_OK;
    }
    if (st->iteration != v->at || v->state)
        return PD_OK;
    v->size = pd_batch_save_size(st);
    v->state = malloc(v->size);
    assert_non_null(v->state);
    assert_int_equal(pd_batch_save(st, v->state, v->size), PD_OK);
    *stop = true;
    return PD_OK;
}

static int rosenbrock_saver(void *ctx, const float *x, double *f, double *g)
{
    ((saver *)ctx)->calls++;
    counter c = {0};
    return rosenbrock(&c, x, f, g);
}

/* Stopped at iteration k with its state saved, then resumed from it: the
 * uninterrupted run's point, iterations and evaluations, bit for bit, for
 * every method (cd too) and several k; a state of another method or
 * history, or a cut one, is refused. */
static void test_save_resume(void **state)
{
    (void)state;
    for (int v = 0; v < 3; v++)
        for (int64_t k = 0; k <= 7; k += 3) {
            pd_batch_opts o = opts_of(methods[v]);
            o.grad_tol = 1e-5;
            o.max_iterations = 60;
            float whole[2] = {-1.2f, 1.0f};
            saver u = {.at = -1};
            pd_batch_result ru, r1, r2;
            assert_int_equal(pd_batch_minimize(&o, 2, whole, rosenbrock_saver, save_report, &u,
                                               &ru), PD_OK);
            float x[2] = {-1.2f, 1.0f};
            saver s = {.at = k};
            assert_int_equal(pd_batch_minimize(&o, 2, x, rosenbrock_saver, save_report, &s, &r1),
                             PD_OK);
            assert_str(r1.reason, "stopped");
            assert_int_equal(r1.iterations, k);
            pd_batch_opts ro = o;
            ro.resume = s.state;
            ro.resume_size = s.size;
            ro.resume_name = "ck";
            saver t = {.at = -1};
            assert_int_equal(pd_batch_minimize(&ro, 2, x, rosenbrock_saver, save_report, &t, &r2),
                             PD_OK);
            assert_true(t.resumed_seen);
            assert_int_equal(t.resumed_it, k);
            assert_int_equal(t.resumed_evals, s.calls);
            assert_memory_equal(x, whole, sizeof x);
            assert_int_equal(r2.iterations, ru.iterations);
            assert_int_equal(r2.evaluations, ru.evaluations);
            assert_int_equal(s.calls + t.calls, u.calls);
            assert_str(r2.reason, ru.reason);
            if (v == 2 && k == 3) {
                ro.history = 5;
                assert_int_equal(pd_batch_minimize(&ro, 2, x, rosenbrock_saver, NULL, NULL, &r2),
                                 PD_EINPUT);
                assert_str(pd_err_msg(), "ck: BTCH: optimizer.history 10 in the checkpoint, 5 "
                           "in this run");
                ro.history = 10;
                ro.method = PD_OPT_CG;
                assert_int_equal(pd_batch_minimize(&ro, 2, x, rosenbrock_saver, NULL, NULL, &r2),
                                 PD_EINPUT);
                assert_str(pd_err_msg(), "ck: BTCH: the checkpoint's optimizer is lbfgs, this "
                           "run's cg");
                ro.method = PD_OPT_LBFGS;
                ro.resume_size -= 8;
                assert_int_equal(pd_batch_minimize(&ro, 2, x, rosenbrock_saver, NULL, NULL, &r2),
                                 PD_EINPUT);
                /* 11 header words, 6 scalars, g, d, rho, s, y: 71 words less one */
                assert_str(pd_err_msg(), "ck: BTCH: 560 bytes do not hold the state of lbfgs "
                           "they announce");
            }
            free(s.state);
        }
    /* cd, random blocks of 1 on the l2 problem: stopped after cycle 2. */
    pd_cd_problem pr = {.p = 3, .m = 4, .gram = cd_gram, .zy = cd_zy, .yy = 62, .l2 = 0.5};
    pd_batch_opts o = opts_of(PD_OPT_CD);
    o.block_size = 1;
    o.random_blocks = true;
    o.seed = 3;
    o.grad_tol = 1e-9;
    float whole[3] = {0, 0, 0}, x[3] = {0, 0, 0};
    saver u = {.at = -1}, s = {.at = 2}, t = {.at = -1};
    pd_batch_result ru, r1, r2;
    assert_int_equal(pd_batch_cd(&o, &pr, whole, save_report, &u, &ru), PD_OK);
    assert_true(ru.iterations > 3);
    assert_int_equal(pd_batch_cd(&o, &pr, x, save_report, &s, &r1), PD_OK);
    assert_int_equal(r1.iterations, 2);
    o.resume = s.state;
    o.resume_size = s.size;
    float y[3] = {9, 9, 9};   /* cd takes its point from the state */
    assert_int_equal(pd_batch_cd(&o, &pr, y, save_report, &t, &r2), PD_OK);
    assert_true(t.resumed_seen && t.resumed_it == 2);
    assert_memory_equal(y, whole, sizeof y);
    assert_int_equal(r2.iterations, ru.iterations);
    assert_str(r2.reason, ru.reason);
    free(s.state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sphere_one_step),
        cmocka_unit_test(test_parabola_by_hand),
        cmocka_unit_test(test_quadratic_minimizer),
        cmocka_unit_test(test_rosenbrock),
        cmocka_unit_test(test_lbfgs_short_memory),
        cmocka_unit_test(test_armijo_fallback),
        cmocka_unit_test(test_line_search_fails),
        cmocka_unit_test(test_stop_reasons),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_cd_least_squares),
        cmocka_unit_test(test_save_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
