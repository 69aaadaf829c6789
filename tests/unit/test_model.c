/* Models: layout and init, each sgemm kernel against a naive reference,
 * every model's gradient against central differences of an independent
 * double-precision reference loss (dense and sparse inputs, with and
 * without l2), sparse vs dense gradients, stability at huge margins, and
 * eval metrics on hand-made data with known answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/error.h"
#include "paramd/model.h"
#include "paramd/rng.h"
#include "../../src/model/model_impl.h"

/* ---- comparison helper ------------------------------------------------ */

/* |got - want| <= atol + rtol * max(|got|, |want|) everywhere. Prints the
 * worst entry (index, both values) so a failure says where and by how much;
 * returns whether all entries pass. */
static bool check_close(const char *what, const float *got, const double *want, size_t n,
                        double rtol, double atol)
{
    size_t worst = 0;
    double worst_ratio = -1.0, max_abs = 0.0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i], d = fabs(g - w);
        double tol = atol + rtol * fmax(fabs(g), fabs(w));
        double ratio = isnan(d) ? INFINITY : d == 0.0 ? 0.0 : d / tol;
        max_abs = fmax(max_abs, isnan(d) ? INFINITY : d);
        if (ratio > worst_ratio) {
            worst_ratio = ratio;
            worst = i;
        }
    }
    bool ok = worst_ratio <= 1.0;
    if (n)
        print_message("%s %-34s n=%-4zu max|diff| %.3g; worst [%zu]: got %.9g want %.9g "
                      "(%.2f of tol)\n", ok ? "  ok " : "FAIL", what, n, max_abs, worst,
                      (double)got[worst], want[worst], worst_ratio);
    return ok;
}

/* A double copy of v[n] (the caller frees it). */
static double *to_double(const float *v, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static bool check_close_f(const char *what, const float *got, const float *want, size_t n,
                          double rtol, double atol)
{
    double *w = to_double(want, n);
    bool ok = check_close(what, got, w, n, rtol, atol);
    free(w);
    return ok;
}

static bool rel_close(double got, double want, double rtol)
{
    bool ok = fabs(got - want) <= rtol * fmax(fabs(want), 1e-300) ||
              (got == 0.0 && want == 0.0);
    if (!ok)
        print_message("  got %.12g want %.12g (rel %.3g)\n", got, want,
                      fabs(got - want) / fabs(want));
    return ok;
}

static void fill_uniform(float *v, size_t n, double lo, double hi, uint64_t seed)
{
    pd_rng r = pd_rng_make(seed, 99, 0);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(lo + (hi - lo) * pd_rng_uniform(&r));
}

static pd_model_config config(pd_model_type type, int D, int C)
{
    pd_model_config mc;
    memset(&mc, 0, sizeof mc);
    mc.type = type;
    mc.features = D;
    mc.classes = C;
    mc.activation = PD_ACT_RELU;
    mc.init = PD_INIT_AUTO;
    return mc;
}

static pd_model_config mlp_config(int D, const int *hidden, int nh, int C, pd_activation a)
{
    pd_model_config mc = config(PD_MODEL_MLP, D, C);
    mc.n_hidden = nh;
    for (int i = 0; i < nh; i++)
        mc.hidden[i] = hidden[i];
    mc.activation = a;
    return mc;
}

static pd_model *create(const pd_model_config *mc, size_t max_batch)
{
    pd_model *m = NULL;
    int err = pd_model_create(mc, max_batch, &m);
    if (err != PD_OK)
        print_message("pd_model_create: %s\n", pd_err_msg());
    assert_int_equal(err, PD_OK);
    assert_non_null(m);
    return m;
}

/* ---- layout ------------------------------------------------------------ */

static void expect_tensor(const pd_model *m, size_t i, const char *name, size_t rows,
                          size_t cols, size_t offset, bool weight)
{
    const pd_tensor_info *t = pd_model_tensor(m, i);
    assert_non_null(t);
    assert_string_equal(t->name, name);
    assert_int_equal(t->rows, rows);
    assert_int_equal(t->cols, cols);
    assert_int_equal(t->offset, offset);
    assert_int_equal(t->is_weight, weight);
}

static void test_layout_mlp(void **state)
{
    (void)state;
    int h[] = {5, 4};
    pd_model_config mc = mlp_config(7, h, 2, 3, PD_ACT_RELU);
    pd_model *m = create(&mc, 4);
    assert_int_equal(pd_model_nparams(m), 5 * 7 + 5 + 4 * 5 + 4 + 3 * 4 + 3);
    assert_int_equal(pd_model_ntensors(m), 6);
    expect_tensor(m, 0, "W1", 5, 7, 0, true);
    expect_tensor(m, 1, "b1", 5, 1, 35, false);
    expect_tensor(m, 2, "W2", 4, 5, 40, true);
    expect_tensor(m, 3, "b2", 4, 1, 60, false);
    expect_tensor(m, 4, "W3", 3, 4, 64, true);
    expect_tensor(m, 5, "b3", 3, 1, 76, false);
    assert_null(pd_model_tensor(m, 6));
    assert_false(pd_model_is_sparse(m));
    pd_model_destroy(&m);
    assert_null(m);
    pd_model_destroy(&m);   /* NULL is fine */

    int big[] = {256, 128};
    mc = mlp_config(784, big, 2, 10, PD_ACT_RELU);
    m = create(&mc, 64);
    assert_int_equal(pd_model_nparams(m), 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
    pd_model_destroy(&m);

    /* no hidden layer: one affine layer, like softmax */
    mc = mlp_config(6, NULL, 0, 4, PD_ACT_TANH);
    m = create(&mc, 1);
    assert_int_equal(pd_model_nparams(m), 28);
    expect_tensor(m, 0, "W1", 4, 6, 0, true);
    expect_tensor(m, 1, "b1", 4, 1, 24, false);
    pd_model_destroy(&m);
}

static void test_layout_linear(void **state)
{
    (void)state;
    pd_model_config mc = config(PD_MODEL_SOFTMAX, 784, 10);
    pd_model *m = create(&mc, 8);
    assert_int_equal(pd_model_nparams(m), 7850);
    assert_int_equal(pd_model_ntensors(m), 2);
    expect_tensor(m, 0, "W", 10, 784, 0, true);
    expect_tensor(m, 1, "b", 10, 1, 7840, false);
    assert_false(pd_model_is_sparse(m));
    pd_model_destroy(&m);

    pd_model_type types[] = {PD_MODEL_LINREG, PD_MODEL_LOGREG, PD_MODEL_SVM};
    for (int i = 0; i < 3; i++) {
        mc = config(types[i], 100, 0);   /* classes ignored */
        m = create(&mc, 8);
        assert_int_equal(pd_model_nparams(m), 101);
        expect_tensor(m, 0, "w", 1, 100, 0, true);
        expect_tensor(m, 1, "b", 1, 1, 100, false);
        assert_int_equal(pd_model_is_sparse(m), types[i] != PD_MODEL_LINREG);
        pd_model_destroy(&m);
    }
}

static void expect_create_error(const pd_model_config *mc, size_t max_batch, const char *msg)
{
    pd_model *m = (pd_model *)1;
    pd_err_clear();
    assert_int_equal(pd_model_create(mc, max_batch, &m), PD_EINPUT);
    assert_null(m);
    if (!strstr(pd_err_msg(), msg))
        fail_msg("message \"%s\" lacks \"%s\"", pd_err_msg(), msg);
}

static void test_create_errors(void **state)
{
    (void)state;
    pd_model_config mc = config(PD_MODEL_SOFTMAX, 0, 3);
    expect_create_error(&mc, 8, "model.features: must be > 0, got 0");
    mc = config(PD_MODEL_SOFTMAX, 5, 1);
    expect_create_error(&mc, 8, "model.classes: must be >= 2 for softmax, got 1");
    int h[] = {5, 0};
    mc = mlp_config(7, h, 2, 3, PD_ACT_RELU);
    expect_create_error(&mc, 8, "model.hidden[1]: must be > 0, got 0");
    mc = mlp_config(7, h, 1, 3, PD_ACT_RELU);
    mc.n_hidden = PD_MAX_HIDDEN + 1;
    expect_create_error(&mc, 8, "model.hidden: between 0 and 8 layers");
    mc = config(PD_MODEL_LOGREG, 5, 0);
    mc.l2 = -1.0;
    expect_create_error(&mc, 8, "model.l2: must be finite and >= 0, got -1");
    mc.l2 = 0.0;
    expect_create_error(&mc, 0, "batch size");
}

/* ---- init -------------------------------------------------------------- */

/* Every weight within the bound, the extremes near it, variance close to
 * bound^2/3 (uniform), biases zero. */
static void check_uniform_tensor(const float *w, size_t n, double bound)
{
    double mx = 0.0, sum = 0.0, sq = 0.0;
    for (size_t i = 0; i < n; i++) {
        assert_true(fabs(w[i]) <= bound * (1.0 + 1e-6));
        mx = fmax(mx, fabs(w[i]));
        sum += w[i];
        sq += (double)w[i] * w[i];
    }
    /* mean and variance within 5 standard errors of U(-bound, bound)'s */
    double mean = sum / (double)n, var = sq / (double)n - mean * mean;
    double se = 1.0 / sqrt((double)n);
    if (!(mx > 0.98 * bound && fabs(mean) < 5.0 * se * bound / sqrt(3.0) &&
          fabs(var / (bound * bound / 3.0) - 1.0) < 5.0 * se * sqrt(0.8)))
        fail_msg("bound %g: max %g mean %g var %g (want %g)", bound, mx, mean, var,
                 bound * bound / 3.0);
}

static void check_init(const pd_model_config *mc, pd_init expect)
{
    pd_model *m = create(mc, 3);
    size_t n = pd_model_nparams(m);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    pd_model_init(m, a, 42);
    for (size_t t = 0; t < pd_model_ntensors(m); t++) {
        const pd_tensor_info *ti = pd_model_tensor(m, t);
        const float *v = a + ti->offset;
        size_t len = ti->rows * ti->cols;
        if (!ti->is_weight || expect == PD_INIT_ZERO) {
            for (size_t i = 0; i < len; i++)
                assert_true(v[i] == 0.0f);
            continue;
        }
        double fan_in = (double)ti->cols, fan_out = (double)ti->rows;
        double bound = expect == PD_INIT_HE ? sqrt(6.0 / fan_in)
                                            : sqrt(6.0 / (fan_in + fan_out));
        check_uniform_tensor(v, len, bound);
    }
    /* deterministic for a seed, independent of max_batch; another seed differs */
    pd_model *m2 = create(mc, 17);
    pd_model_init(m2, b, 42);
    assert_memory_equal(a, b, n * sizeof *a);
    pd_model_init(m2, b, 43);
    if (expect != PD_INIT_ZERO)
        assert_memory_not_equal(a, b, n * sizeof *a);
    free(a);
    free(b);
    pd_model_destroy(&m2);
    pd_model_destroy(&m);
}

static void test_init(void **state)
{
    (void)state;
    int h[] = {120, 60};
    pd_model_config mc = mlp_config(200, h, 2, 10, PD_ACT_RELU);
    check_init(&mc, PD_INIT_HE);            /* auto, relu */
    mc.activation = PD_ACT_TANH;
    check_init(&mc, PD_INIT_GLOROT);        /* auto, tanh */
    mc.activation = PD_ACT_SIGMOID;
    check_init(&mc, PD_INIT_GLOROT);
    mc.init = PD_INIT_HE;
    check_init(&mc, PD_INIT_HE);            /* explicit */
    mc.init = PD_INIT_ZERO;
    check_init(&mc, PD_INIT_ZERO);
    mc.activation = PD_ACT_RELU;
    mc.init = PD_INIT_GLOROT;
    check_init(&mc, PD_INIT_GLOROT);

    pd_model_type linear[] = {PD_MODEL_SOFTMAX, PD_MODEL_LINREG, PD_MODEL_LOGREG, PD_MODEL_SVM};
    for (int i = 0; i < 4; i++) {
        mc = config(linear[i], 300, 10);
        check_init(&mc, PD_INIT_ZERO);      /* auto = zero for convex models */
    }
    mc = config(PD_MODEL_SOFTMAX, 300, 10);
    mc.init = PD_INIT_GLOROT;
    check_init(&mc, PD_INIT_GLOROT);
    mc = config(PD_MODEL_LOGREG, 3000, 0);
    mc.init = PD_INIT_HE;
    check_init(&mc, PD_INIT_HE);
}

/* ---- kernels vs naive references ---------------------------------------- */

static void naive_affine_fwd(const float *A, const float *W, const float *bias, size_t b,
                             size_t n_in, size_t n_out, double *Z)
{
    for (size_t i = 0; i < b; i++)
        for (size_t j = 0; j < n_out; j++) {
            double acc = bias[j];
            for (size_t k = 0; k < n_in; k++)
                acc += (double)A[i * n_in + k] * W[j * n_in + k];
            Z[i * n_out + j] = acc;
        }
}

static void naive_affine_bwd(const float *dZ, const float *A, const float *W, size_t b,
                             size_t n_in, size_t n_out, double *dW, double *db, double *dA)
{
    for (size_t j = 0; j < n_out; j++) {
        double sb = 0.0;
        for (size_t i = 0; i < b; i++)
            sb += dZ[i * n_out + j];
        db[j] = sb;
        for (size_t k = 0; k < n_in; k++) {
            double acc = 0.0;
            for (size_t i = 0; i < b; i++)
                acc += (double)dZ[i * n_out + j] * A[i * n_in + k];
            dW[j * n_in + k] = acc;
        }
    }
    for (size_t i = 0; i < b; i++)
        for (size_t k = 0; k < n_in; k++) {
            double acc = 0.0;
            for (size_t j = 0; j < n_out; j++)
                acc += (double)dZ[i * n_out + j] * W[j * n_in + k];
            dA[i * n_in + k] = acc;
        }
}

static void check_affine(size_t b, size_t n_in, size_t n_out)
{
    float *A = malloc(b * n_in * sizeof *A), *W = malloc(n_out * n_in * sizeof *W);
    float *bias = malloc(n_out * sizeof *bias), *Z = malloc(b * n_out * sizeof *Z);
    float *dZ = malloc(b * n_out * sizeof *dZ), *dW = malloc(n_out * n_in * sizeof *dW);
    float *db = malloc(n_out * sizeof *db), *dA = malloc(b * n_in * sizeof *dA);
    double *rZ = malloc(b * n_out * sizeof *rZ), *rdW = malloc(n_out * n_in * sizeof *rdW);
    double *rdb = malloc(n_out * sizeof *rdb), *rdA = malloc(b * n_in * sizeof *rdA);
    assert_true(A && W && bias && Z && dZ && dW && db && dA && rZ && rdW && rdb && rdA);
    fill_uniform(A, b * n_in, -1, 1, 1);
    fill_uniform(W, n_out * n_in, -1, 1, 2);
    fill_uniform(bias, n_out, -1, 1, 3);
    fill_uniform(dZ, b * n_out, -1, 1, 4);
    /* tolerance: float sums of up to n terms of size ~1 */
    double atol = 1e-6 * (double)(n_in > b ? n_in : b);
    char what[64];

    pd_model_affine_fwd(A, W, bias, b, n_in, n_out, NULL, Z);
    naive_affine_fwd(A, W, bias, b, n_in, n_out, rZ);
    snprintf(what, sizeof what, "affine_fwd Z %zux%zux%zu", b, n_in, n_out);
    assert_true(check_close(what, Z, rZ, b * n_out, 1e-5, atol));

    fill_uniform(db, n_out, 5, 6, 5);   /* garbage the kernel must overwrite */
    pd_model_affine_bwd(dZ, A, W, b, n_in, n_out, dW, db, dA);
    naive_affine_bwd(dZ, A, W, b, n_in, n_out, rdW, rdb, rdA);
    snprintf(what, sizeof what, "affine_bwd dW %zux%zux%zu", b, n_in, n_out);
    assert_true(check_close(what, dW, rdW, n_out * n_in, 1e-5, atol));
    snprintf(what, sizeof what, "affine_bwd db %zux%zux%zu", b, n_in, n_out);
    assert_true(check_close(what, db, rdb, n_out, 1e-5, atol));
    snprintf(what, sizeof what, "affine_bwd dA %zux%zux%zu", b, n_in, n_out);
    assert_true(check_close(what, dA, rdA, b * n_in, 1e-5, atol));

    /* dA may be skipped (first layer) without changing dW, db */
    float *dW2 = malloc(n_out * n_in * sizeof *dW2);
    assert_non_null(dW2);
    pd_model_affine_bwd(dZ, A, W, b, n_in, n_out, dW2, db, NULL);
    assert_true(check_close_f("affine_bwd dW without dA", dW2, dW, n_out * n_in, 0, 0));
    free(dW2);
    free(A), free(W), free(bias), free(Z), free(dZ), free(dW), free(db), free(dA);
    free(rZ), free(rdW), free(rdb), free(rdA);
}

static void test_kernels_affine(void **state)
{
    (void)state;
    check_affine(1, 1, 1);
    check_affine(6, 7, 5);
    check_affine(5, 3, 1);      /* one output: the linreg shape */
    check_affine(33, 70, 20);
    check_affine(64, 784, 256); /* the MLP's first layer */
}

static double ref_act(pd_activation a, double z)
{
    switch (a) {
    case PD_ACT_RELU:    return z > 0 ? z : 0;
    case PD_ACT_TANH:    return tanh(z);
    case PD_ACT_SIGMOID: return 1.0 / (1.0 + exp(-z));
    }
    return NAN;
}

static double ref_act_deriv(pd_activation a, double z)
{
    switch (a) {
    case PD_ACT_RELU:    return z > 0 ? 1 : 0;
    case PD_ACT_TANH:    return 1 - tanh(z) * tanh(z);
    case PD_ACT_SIGMOID: return ref_act(a, z) * (1 - ref_act(a, z));
    }
    return NAN;
}

static void test_kernels_activation(void **state)
{
    (void)state;
    enum { N = 301 };
    float z[N], a[N], d[N];
    double ra[N], rd[N];
    pd_activation acts[] = {PD_ACT_RELU, PD_ACT_TANH, PD_ACT_SIGMOID};
    const char *names[] = {"relu", "tanh", "sigmoid"};
    for (int k = 0; k < 3; k++) {
        fill_uniform(z, N, -30, 30, 7);
        z[0] = 0.0f;
        z[1] = -100.0f;
        z[2] = 100.0f;
        fill_uniform(d, N, -1, 1, 8);
        for (int i = 0; i < N; i++) {
            ra[i] = ref_act(acts[k], z[i]);
            rd[i] = d[i] * ref_act_deriv(acts[k], z[i]);
            a[i] = z[i];
        }
        pd_model_act_fwd(acts[k], a, N);
        char what[64];
        snprintf(what, sizeof what, "act_fwd %s", names[k]);
        assert_true(check_close(what, a, ra, N, 1e-6, 1e-7));
        pd_model_act_bwd(acts[k], a, d, N);
        snprintf(what, sizeof what, "act_bwd %s", names[k]);
        /* f' from a = f(z) in float: 1 - a^2 loses digits near saturation */
        assert_true(check_close(what, d, rd, N, 1e-5, 1e-6));
    }
}

/* The fused passes give the bits of the separate ones: affine_fwd with an
 * activation = affine_fwd, then act_fwd; act_bwd_colsum = act_bwd, then
 * the column sums affine_bwd takes for db. */
static void check_fused(size_t b, size_t n_in, size_t n_out)
{
    float *A = malloc(b * n_in * sizeof *A), *W = malloc(n_out * n_in * sizeof *W);
    float *bias = malloc(n_out * sizeof *bias), *Z = malloc(b * n_out * sizeof *Z);
    float *Z2 = malloc(b * n_out * sizeof *Z2), *d = malloc(b * n_out * sizeof *d);
    float *d2 = malloc(b * n_out * sizeof *d2), *db = malloc(n_out * sizeof *db);
    float *db2 = malloc(n_out * sizeof *db2), *dW = malloc(n_out * n_in * sizeof *dW);
    assert_true(A && W && bias && Z && Z2 && d && d2 && db && db2 && dW);
    fill_uniform(A, b * n_in, -1, 1, 21);
    fill_uniform(W, n_out * n_in, -1, 1, 22);
    fill_uniform(bias, n_out, -1, 1, 23);
    pd_activation acts[] = {PD_ACT_RELU, PD_ACT_TANH, PD_ACT_SIGMOID};
    for (int k = 0; k < 3; k++) {
        fill_uniform(Z, b * n_out, 5, 6, 24);   /* garbage the kernels must overwrite */
        pd_model_affine_fwd(A, W, bias, b, n_in, n_out, &acts[k], Z);
        pd_model_affine_fwd(A, W, bias, b, n_in, n_out, NULL, Z2);
        pd_model_act_fwd(acts[k], Z2, b * n_out);
        assert_memory_equal(Z, Z2, b * n_out * sizeof *Z);

        fill_uniform(d, b * n_out, -1, 1, 25);
        memcpy(d2, d, b * n_out * sizeof *d);
        fill_uniform(db, n_out, 5, 6, 26);
        pd_model_act_bwd_colsum(acts[k], Z, d, b, n_out, db);
        pd_model_act_bwd(acts[k], Z2, d2, b * n_out);
        assert_memory_equal(d, d2, b * n_out * sizeof *d);
        pd_model_affine_bwd(d2, A, W, b, n_in, n_out, dW, db2, NULL);
        assert_memory_equal(db, db2, n_out * sizeof *db);
    }
    free(A), free(W), free(bias), free(Z), free(Z2), free(d), free(d2), free(db), free(db2);
    free(dW);
}

static void test_kernels_fused(void **state)
{
    (void)state;
    check_fused(1, 1, 1);
    check_fused(6, 7, 5);
    check_fused(64, 784, 256);   /* the MLP's first layer */
}

/* ---- datasets ------------------------------------------------------------ */

/* Test data: the same values as dense x[n][d] and as CSR, with three label
 * sets (class, real, sign). Row 7 is empty. */
enum { GN = 10, GD = 7, GC = 3 };

typedef struct gdata {
    pd_dataset dense, sparse;
    float x[GN * GD];
    size_t row_ptr[GN + 1];
    uint32_t col[GN * GD];
    float val[GN * GD];
    float y_class[GN], y_real[GN], y_sign[GN];
    size_t id[GN];
} gdata;

static int setup_gdata(void **state)
{
    gdata *g = calloc(1, sizeof *g);
    if (!g)
        return -1;
    pd_rng r = pd_rng_make(7, 98, 0);
    size_t nnz = 0;
    for (size_t i = 0; i < GN; i++) {
        g->row_ptr[i] = nnz;
        for (size_t j = 0; j < GD; j++) {
            bool present = i != 7 && pd_rng_uniform(&r) < 0.5;
            float v = present ? (float)(2.0 * pd_rng_uniform(&r) - 1.0) : 0.0f;
            g->x[i * GD + j] = v;
            if (present) {
                g->col[nnz] = (uint32_t)j;
                g->val[nnz++] = v;
            }
        }
        g->y_class[i] = (float)pd_rng_below(&r, GC);
        g->y_real[i] = (float)(2.0 * pd_rng_normal(&r));
        g->y_sign[i] = pd_rng_uniform(&r) < 0.5 ? -1.0f : 1.0f;
        g->id[i] = 100 + i;
    }
    g->row_ptr[GN] = nnz;
    g->dense = (pd_dataset){.n = GN, .d = GD, .x = g->x, .y = g->y_class, .id = g->id};
    g->sparse = (pd_dataset){.n = GN, .d = GD, .sparse = true, .row_ptr = g->row_ptr,
                             .col = g->col, .val = g->val, .y = g->y_class, .id = g->id};
    *state = g;
    return 0;
}

static int teardown_gdata(void **state)
{
    free(*state);
    return 0;
}

static float *labels_for(gdata *g, pd_model_type t)
{
    switch (t) {
    case PD_MODEL_LINREG: return g->y_real;
    case PD_MODEL_LOGREG:
    case PD_MODEL_SVM:    return g->y_sign;
    default:              return g->y_class;
    }
}

/* ---- double-precision reference loss ------------------------------------ */

/* Layout from the config alone (W_l[out][in] then b_l per layer), so the
 * reference does not trust the model's table. Returns nparams. */
static size_t ref_widths(const pd_model_config *mc, size_t *width, size_t *L)
{
    bool mlp = mc->type == PD_MODEL_MLP;
    bool cls = mlp || mc->type == PD_MODEL_SOFTMAX;
    *L = mlp ? (size_t)mc->n_hidden + 1 : 1;
    width[0] = (size_t)mc->features;
    for (size_t l = 1; l < *L; l++)
        width[l] = (size_t)mc->hidden[l - 1];
    width[*L] = cls ? (size_t)mc->classes : 1;
    size_t n = 0;
    for (size_t l = 0; l < *L; l++)
        n += width[l + 1] * width[l] + width[l + 1];
    return n;
}

/* Mean loss over rows, plus l2/2 sum W^2 over weights; for linear models
 * `touched` (if not NULL) restricts the l2 term to those features (the
 * sparse gradient's lazy l2). */
static double ref_loss(const pd_model_config *mc, const double *th, const pd_dataset *ds,
                       const size_t *rows, size_t b, const bool *touched)
{
    enum { MAXW = 64 };
    size_t width[PD_MAX_HIDDEN + 2], L;
    ref_widths(mc, width, &L);
    double total = 0.0;
    for (size_t i = 0; i < b; i++) {
        size_t r = rows[i];
        double a[MAXW] = {0}, z[MAXW];
        if (ds->sparse)
            for (size_t p = ds->row_ptr[r]; p < ds->row_ptr[r + 1]; p++)
                a[ds->col[p]] = ds->val[p];
        else
            for (size_t j = 0; j < width[0]; j++)
                a[j] = ds->x[r * width[0] + j];
        size_t off = 0;
        for (size_t l = 0; l < L; l++) {
            size_t in = width[l], out = width[l + 1];
            const double *W = th + off, *bias = th + off + out * in;
            for (size_t j = 0; j < out; j++) {
                double acc = bias[j];
                for (size_t k = 0; k < in; k++)
                    acc += W[j * in + k] * a[k];
                z[j] = l + 1 < L ? ref_act(mc->activation, acc) : acc;
            }
            memcpy(a, z, out * sizeof *a);
            off += out * in + out;
        }
        double y = ds->y[r], K = (double)width[L];
        switch (mc->type) {
        case PD_MODEL_SOFTMAX:
        case PD_MODEL_MLP: {
            double mx = a[0], s = 0.0;
            for (size_t j = 1; j < (size_t)K; j++)
                mx = fmax(mx, a[j]);
            for (size_t j = 0; j < (size_t)K; j++)
                s += exp(a[j] - mx);
            total += mx + log(s) - a[(size_t)y];
            break;
        }
        case PD_MODEL_LINREG:
            total += 0.5 * (a[0] - y) * (a[0] - y);
            break;
        case PD_MODEL_LOGREG:
            total += log(1.0 + exp(-y * a[0]));
            break;
        case PD_MODEL_SVM:
            total += fmax(0.0, 1.0 - y * a[0]);
            break;
        }
    }
    double sq = 0.0;
    size_t off = 0;
    for (size_t l = 0; l < L; l++) {
        size_t nw = width[l + 1] * width[l];
        for (size_t k = 0; k < nw; k++)
            if (!touched || touched[k])
                sq += th[off + k] * th[off + k];
        off += nw + width[l + 1];
    }
    return total / (double)b + 0.5 * mc->l2 * sq;
}

/* Central differences of ref_loss at theta (step 1e-5, double). */
static void fd_grad(const pd_model_config *mc, const float *theta, size_t n,
                    const pd_dataset *ds, const size_t *rows, size_t b, const bool *touched,
                    double *fd)
{
    const double h = 1e-5;
    double *th = to_double(theta, n);
    for (size_t i = 0; i < n; i++) {
        double keep = th[i];
        th[i] = keep + h;
        double lp = ref_loss(mc, th, ds, rows, b, touched);
        th[i] = keep - h;
        double lm = ref_loss(mc, th, ds, rows, b, touched);
        th[i] = keep;
        fd[i] = (lp - lm) / (2.0 * h);
    }
    free(th);
}

static double ref_loss_at(const pd_model_config *mc, const float *theta, size_t n,
                          const pd_dataset *ds, const size_t *rows, size_t b,
                          const bool *touched)
{
    double *th = to_double(theta, n);
    double v = ref_loss(mc, th, ds, rows, b, touched);
    free(th);
    return v;
}

/* ---- gradient checks ------------------------------------------------------ */

static const size_t GROWS[] = {5, 0, 3, 3, 7, 1};   /* a repeat and the empty row */
enum { GB = 6 };

/* The sparse gradient of a linear model: indices strictly increasing, the
 * touched features exactly, bias last; values against FD of the lazy-l2
 * reference; equal to the dense gradient on its coordinates. */
static void check_sparse_grad(pd_model *m, const pd_model_config *mc, const float *theta,
                              const pd_dataset *ds, const float *dense_grad, const char *label)
{
    size_t n = pd_model_nparams(m), D = (size_t)mc->features;
    bool touched[GD + 1] = {false};
    for (size_t i = 0; i < GB; i++) {
        size_t r = GROWS[i];
        if (!ds->sparse) {
            for (size_t j = 0; j < D; j++)
                touched[j] = true;
            continue;
        }
        for (size_t p = ds->row_ptr[r]; p < ds->row_ptr[r + 1]; p++)
            touched[ds->col[p]] = true;
    }
    pd_sparse_grad g;
    assert_int_equal(pd_sparse_grad_init(&g, n), PD_OK);
    double loss;
    assert_int_equal(pd_model_grad_sparse(m, theta, ds, GROWS, GB, &g, &loss), PD_OK);

    size_t k = 0;
    for (size_t j = 0; j < D; j++)
        k += touched[j];
    assert_int_equal(g.nnz, k + 1);
    assert_int_equal(g.idx[g.nnz - 1], D);
    for (size_t j = 0; j + 1 < g.nnz; j++) {
        assert_true(touched[g.idx[j]]);
        assert_true(g.idx[j] < g.idx[j + 1]);
    }
    assert_true(rel_close(loss, ref_loss_at(mc, theta, n, ds, GROWS, GB, touched), 1e-5));

    double *fd = malloc(n * sizeof *fd), *want = malloc(g.nnz * sizeof *want);
    float *from_dense = malloc(g.nnz * sizeof *from_dense);
    assert_true(fd && want && from_dense);
    fd_grad(mc, theta, n, ds, GROWS, GB, touched, fd);
    for (size_t j = 0; j < g.nnz; j++) {
        want[j] = fd[g.idx[j]];
        from_dense[j] = dense_grad[g.idx[j]];
    }
    char what[96];
    snprintf(what, sizeof what, "%s sparse vs FD", label);
    assert_true(check_close(what, g.val, want, g.nnz, 1e-3, 1e-6));
    /* on its coordinates the sparse gradient is the dense one (the l2 terms
     * agree there); elsewhere the dense one is exactly l2 w */
    snprintf(what, sizeof what, "%s sparse vs dense", label);
    assert_true(check_close_f(what, g.val, from_dense, g.nnz, 1e-6, 1e-7));
    for (size_t j = 0; j < D; j++)
        if (!touched[j])
            assert_true(dense_grad[j] == (float)mc->l2 * theta[j]);
    free(fd);
    free(want);
    free(from_dense);
    pd_sparse_grad_free(&g);
}

static void gradcheck(gdata *gd, pd_model_config mc, const char *name)
{
    for (int input = 0; input < 2; input++) {
        for (int reg = 0; reg < 2; reg++) {
            mc.l2 = reg ? 0.1 : 0.0;
            pd_dataset *ds = input ? &gd->sparse : &gd->dense;
            ds->y = labels_for(gd, mc.type);
            char label[80];
            snprintf(label, sizeof label, "%s %s l2=%g", name, input ? "sparse" : "dense",
                     mc.l2);
            pd_model *m = create(&mc, 8);
            size_t n = pd_model_nparams(m), width[PD_MAX_HIDDEN + 2], L;
            assert_int_equal(n, ref_widths(&mc, width, &L));
            float *theta = malloc(n * sizeof *theta), *grad = malloc(n * sizeof *grad);
            double *fd = malloc(n * sizeof *fd);
            assert_true(theta && grad && fd);
            fill_uniform(theta, n, -0.6, 0.6, 11 + (uint64_t)mc.type);
            fill_uniform(grad, n, 5, 6, 3);   /* stale garbage must be overwritten */

            double loss;
            assert_int_equal(pd_model_grad(m, theta, ds, GROWS, GB, grad, &loss), PD_OK);
            assert_true(rel_close(loss, ref_loss_at(&mc, theta, n, ds, GROWS, GB, NULL), 1e-5));
            fd_grad(&mc, theta, n, ds, GROWS, GB, NULL, fd);
            char what[96];
            snprintf(what, sizeof what, "%s vs FD", label);
            assert_true(check_close(what, grad, fd, n, 1e-3, 1e-6));
            if (pd_model_is_sparse(m))
                check_sparse_grad(m, &mc, theta, ds, grad, label);
            free(theta);
            free(grad);
            free(fd);
            pd_model_destroy(&m);
        }
    }
}

static void test_grad_softmax(void **state)
{
    gradcheck(*state, config(PD_MODEL_SOFTMAX, GD, GC), "softmax");
}

static void test_grad_mlp(void **state)
{
    int h2[] = {5, 4}, h1[] = {6}, h3[] = {4, 3, 5};
    gradcheck(*state, mlp_config(GD, h2, 2, GC, PD_ACT_RELU), "mlp 5,4 relu");
    gradcheck(*state, mlp_config(GD, h2, 2, GC, PD_ACT_TANH), "mlp 5,4 tanh");
    gradcheck(*state, mlp_config(GD, h2, 2, GC, PD_ACT_SIGMOID), "mlp 5,4 sigmoid");
    gradcheck(*state, mlp_config(GD, h1, 1, GC, PD_ACT_TANH), "mlp 6 tanh");
    gradcheck(*state, mlp_config(GD, h3, 3, GC, PD_ACT_SIGMOID), "mlp 4,3,5 sigmoid");
    gradcheck(*state, mlp_config(GD, NULL, 0, GC, PD_ACT_RELU), "mlp no hidden");
}

/* Consecutive dense rows are read where they are, other rows gathered
 * first: the same gradient, loss and curvature to the bit either way. The
 * rows 2..5 of the data, in place, against the same rows at 0, 2, 4, 6 of
 * a copy with other rows between them (relu with the row bound on layer 0,
 * tanh with the row curvature along the gradient: both read the rows). */
static void test_grad_rows_in_place(void **state)
{
    gdata *g = *state;
    enum { R0 = 2, NB = 4 };
    const size_t in_place[NB] = {R0, R0 + 1, R0 + 2, R0 + 3}, spread[NB] = {0, 2, 4, 6};
    float x2[2 * NB * GD], y2[2 * NB];
    size_t id2[2 * NB];
    for (size_t i = 0; i < NB; i++) {
        memcpy(x2 + 2 * i * GD, g->x + (R0 + i) * GD, GD * sizeof *x2);
        fill_uniform(x2 + (2 * i + 1) * GD, GD, -3, 3, 40 + i);   /* not in the batch */
        y2[2 * i] = g->y_class[R0 + i];
        y2[2 * i + 1] = 0.0f;
        id2[2 * i] = id2[2 * i + 1] = i;
    }
    pd_dataset ds = g->dense, ds2 = {.n = 2 * NB, .d = GD, .x = x2, .y = y2, .id = id2};
    int h[] = {5, 4};
    pd_activation acts[] = {PD_ACT_RELU, PD_ACT_TANH};
    for (int k = 0; k < 2; k++) {
        pd_model_config mc = mlp_config(GD, h, 2, GC, acts[k]);
        pd_model *m = create(&mc, NB);
        assert_int_equal(pd_model_curv_init(m, k == 0, k == 1), PD_OK);
        size_t n = pd_model_nparams(m);
        float *theta = malloc(n * sizeof *theta), *buf = malloc(6 * n * sizeof *buf);
        assert_true(theta && buf);
        fill_uniform(theta, n, -0.6, 0.6, 31);
        double l1, l2;
        assert_int_equal(pd_model_grad_curv(m, theta, &ds, in_place, NB, buf, buf + n,
                                            buf + 2 * n, &l1), PD_OK);
        assert_int_equal(pd_model_grad_curv(m, theta, &ds2, spread, NB, buf + 3 * n,
                                            buf + 4 * n, buf + 5 * n, &l2), PD_OK);
        assert_true(l1 == l2);
        assert_memory_equal(buf, buf + 3 * n, 3 * n * sizeof *buf);
        /* and pd_model_grad, without the curvature */
        assert_int_equal(pd_model_grad(m, theta, &ds2, spread, NB, buf + 4 * n, &l2), PD_OK);
        assert_memory_equal(buf, buf + 4 * n, n * sizeof *buf);
        free(theta);
        free(buf);
        pd_model_destroy(&m);
    }
}

static void test_grad_linreg(void **state)
{
    gradcheck(*state, config(PD_MODEL_LINREG, GD, 0), "linreg");
}

static void test_grad_logreg(void **state)
{
    gradcheck(*state, config(PD_MODEL_LOGREG, GD, 0), "logreg");
}

static void test_grad_svm(void **state)
{
    gradcheck(*state, config(PD_MODEL_SVM, GD, 0), "svm");
}

/* ---- curvature (vsgd) --------------------------------------------------- */

/* pd_model_grad_curv against second central differences of the double
 * reference loss, (L(th + d e_k) - 2 L(th) + L(th - d e_k)) / d^2 with
 * d = 1e-4: the central difference of the central-difference gradient,
 * i.e. the Hessian's diagonal. It equals the Gauss-Newton diagonal for
 * softmax regression, linreg and a relu mlp (z piecewise linear in each
 * parameter; no pre-activation of this batch lies within d |x| of a kink).
 * The gradient it returns is pd_model_grad's, bit for bit. */
static void curvcheck(gdata *gd, pd_model_config mc, const char *name)
{
    for (int reg = 0; reg < 2; reg++) {
        mc.l2 = reg ? 0.1 : 0.0;
        pd_dataset *ds = &gd->dense;
        ds->y = labels_for(gd, mc.type);
        pd_model *m = create(&mc, 8);
        assert_int_equal(pd_model_curv_init(m, 0, 0), PD_OK);
        size_t n = pd_model_nparams(m);
        float *theta = malloc(n * sizeof *theta), *grad = malloc(n * sizeof *grad);
        float *g2 = malloc(n * sizeof *g2), *curv = malloc(n * sizeof *curv);
        float *sq = malloc(n * sizeof *sq), *g1 = malloc(n * sizeof *g1);
        double *fd = malloc(n * sizeof *fd), *th = malloc(n * sizeof *th);
        double *msq = calloc(n, sizeof *msq);
        assert_true(theta && grad && g2 && curv && sq && g1 && fd && th && msq);
        fill_uniform(theta, n, -0.6, 0.6, 11 + (uint64_t)mc.type);
        fill_uniform(curv, n, 5, 6, 3);   /* stale garbage must be overwritten */
        fill_uniform(sq, n, 5, 6, 4);
        double loss, loss2;
        assert_int_equal(pd_model_grad_curv(m, theta, ds, GROWS, GB, grad, curv, sq, &loss),
                         PD_OK);
        assert_int_equal(pd_model_grad(m, theta, ds, GROWS, GB, g2, &loss2), PD_OK);
        assert_true(loss == loss2);
        assert_memory_equal(grad, g2, n * sizeof *grad);
        /* sq: the mean over the rows of each row's own gradient squared,
         * from one-row gradients */
        for (size_t r = 0; r < GB; r++) {
            assert_int_equal(pd_model_grad(m, theta, ds, &GROWS[r], 1, g1, &loss2), PD_OK);
            for (size_t i = 0; i < n; i++)
                msq[i] += (double)g1[i] * g1[i] / GB;
        }
        char what0[96];
        snprintf(what0, sizeof what0, "%s l2=%g per-row second moment", name, mc.l2);
        assert_true(check_close(what0, sq, msq, n, 1e-5, 1e-9));
        const double d = 1e-4;
        for (size_t i = 0; i < n; i++)
            th[i] = theta[i];
        double l0 = ref_loss(&mc, th, ds, GROWS, GB, NULL);
        for (size_t i = 0; i < n; i++) {
            double keep = th[i];
            th[i] = keep + d;
            double lp = ref_loss(&mc, th, ds, GROWS, GB, NULL);
            th[i] = keep - d;
            double lm = ref_loss(&mc, th, ds, GROWS, GB, NULL);
            th[i] = keep;
            fd[i] = (lp - 2 * l0 + lm) / (d * d);
        }
        char what[96];
        snprintf(what, sizeof what, "%s l2=%g curvature vs FD", name, mc.l2);
        assert_true(check_close(what, curv, fd, n, 1e-3, 1e-7));
        for (size_t i = 0; i < n; i++)
            assert_true(curv[i] >= 0);
        free(theta);
        free(grad);
        free(g2);
        free(curv);
        free(sq);
        free(g1);
        free(msq);
        free(fd);
        free(th);
        pd_model_destroy(&m);
    }
}

static void test_curv_softmax(void **state)
{
    curvcheck(*state, config(PD_MODEL_SOFTMAX, GD, GC), "softmax");
}

static void test_curv_mlp(void **state)
{
    int h1[] = {6}, h2[] = {5, 4}, h3[] = {4, 3, 5};
    curvcheck(*state, mlp_config(GD, h1, 1, GC, PD_ACT_RELU), "mlp 6 relu");
    curvcheck(*state, mlp_config(GD, h2, 2, GC, PD_ACT_RELU), "mlp 5,4 relu");
    curvcheck(*state, mlp_config(GD, h3, 3, GC, PD_ACT_RELU), "mlp 4,3,5 relu");
    curvcheck(*state, mlp_config(GD, NULL, 0, GC, PD_ACT_RELU), "mlp no hidden");
}

static void test_curv_linreg(void **state)
{
    curvcheck(*state, config(PD_MODEL_LINREG, GD, 0), "linreg");
}

/* The row bound (pd_model_curv_init's bound_layers) on one example x:
 * layer l < bound takes |x_k| (|x|_1 + 1) for x_k^2 and |x|_1 + 1 for the
 * bias's 1, so against the diagonal each weight W_l[j][k] is multiplied by
 * (|x|_1 + 1) / |x_k| (x the layer's input; x_k = 0 gives 0 in both) and
 * each bias by |x|_1 + 1; the layers above are the diagonal, bit for bit. */
static void boundcheck(gdata *gd, pd_model_config mc, int bound, const char *name)
{
    pd_dataset *ds = &gd->dense;
    ds->y = labels_for(gd, mc.type);
    pd_model *md = create(&mc, 1), *mb = create(&mc, 1);
    assert_int_equal(pd_model_curv_init(md, 0, 0), PD_OK);
    assert_int_equal(pd_model_curv_init(mb, bound, 0), PD_OK);
    size_t n = pd_model_nparams(md);
    float *theta = malloc(n * sizeof *theta), *g = malloc(n * sizeof *g);
    float *sq = malloc(n * sizeof *sq), *cd = malloc(n * sizeof *cd), *cb = malloc(n * sizeof *cb);
    double *want = malloc(n * sizeof *want);
    assert_true(theta && g && sq && cd && cb && want);
    fill_uniform(theta, n, -0.6, 0.6, 5);
    const size_t row[1] = {3};
    double loss;
    assert_int_equal(pd_model_grad_curv(md, theta, ds, row, 1, g, cd, sq, &loss), PD_OK);
    assert_int_equal(pd_model_grad_curv(mb, theta, ds, row, 1, g, cb, sq, &loss), PD_OK);
    /* only the first layer's input is the data row; bound <= 1 here */
    const float *x = ds->x + row[0] * GD;
    double l1 = 1;
    for (size_t k = 0; k < GD; k++)
        l1 += fabs(x[k]);
    for (size_t i = 0; i < n; i++)
        want[i] = cd[i];
    if (bound > 0) {
        const pd_tensor_info *w = pd_model_tensor(md, 0), *bb = pd_model_tensor(md, 1);
        for (size_t j = 0; j < w->rows; j++)
            for (size_t k = 0; k < w->cols; k++)
                want[w->offset + j * w->cols + k] =
                    x[k] == 0 ? 0 : (double)cd[w->offset + j * w->cols + k] * l1 / fabs(x[k]);
        for (size_t j = 0; j < bb->rows; j++)
            want[bb->offset + j] = cd[bb->offset + j] * l1;
    }
    char what[96];
    snprintf(what, sizeof what, "%s bound %d vs the diagonal", name, bound);
    assert_true(check_close(what, cb, want, n, 1e-5, 1e-9));
    free(theta);
    free(g);
    free(sq);
    free(cd);
    free(cb);
    free(want);
    pd_model_destroy(&md);
    pd_model_destroy(&mb);
}

static void test_curv_bound(void **state)
{
    int h2[] = {5, 4};
    boundcheck(*state, config(PD_MODEL_SOFTMAX, GD, GC), 1, "softmax");
    boundcheck(*state, config(PD_MODEL_SOFTMAX, GD, GC), 0, "softmax");
    boundcheck(*state, mlp_config(GD, h2, 2, GC, PD_ACT_RELU), 1, "mlp 5,4 relu");
}

/* The row curvature along the row's gradient (pd_model_curv_init's
 * row_layers) on one example x: row j's gradient is delta_j (x, 1), so
 * (g_j . (x, 1))^2 / |g_j|^2 = delta_j^2 (|x|^2 + 1)^2 / (delta_j^2
 * (|x|^2 + 1)) and every weight and the bias of row j take u_j (|x|^2 + 1)
 * (u_j the diagonal's bias entry: the largest eigenvalue of the row's
 * rank-one Gauss-Newton block), 0 where delta_j = 0; the layers above are
 * the diagonal, bit for bit. */
static void rowcheck(gdata *gd, pd_model_config mc, const char *name)
{
    pd_dataset *ds = &gd->dense;
    ds->y = labels_for(gd, mc.type);
    pd_model *md = create(&mc, 1), *mr = create(&mc, 1);
    assert_int_equal(pd_model_curv_init(md, 0, 0), PD_OK);
    assert_int_equal(pd_model_curv_init(mr, 0, 1), PD_OK);
    size_t n = pd_model_nparams(md);
    float *theta = malloc(n * sizeof *theta), *g = malloc(n * sizeof *g);
    float *sq = malloc(n * sizeof *sq), *cd = malloc(n * sizeof *cd), *cr = malloc(n * sizeof *cr);
    double *want = malloc(n * sizeof *want);
    assert_true(theta && g && sq && cd && cr && want);
    fill_uniform(theta, n, -0.6, 0.6, 5);
    const size_t row[1] = {3};
    double loss;
    assert_int_equal(pd_model_grad_curv(md, theta, ds, row, 1, g, cd, sq, &loss), PD_OK);
    assert_int_equal(pd_model_grad_curv(mr, theta, ds, row, 1, g, cr, sq, &loss), PD_OK);
    const float *x = ds->x + row[0] * GD;
    double x2 = 1;
    for (size_t k = 0; k < GD; k++)
        x2 += (double)x[k] * x[k];
    for (size_t i = 0; i < n; i++)
        want[i] = cd[i];
    const pd_tensor_info *w = pd_model_tensor(md, 0), *bb = pd_model_tensor(md, 1);
    size_t nz = 0;
    for (size_t j = 0; j < w->rows; j++) {
        double h = g[bb->offset + j] == 0 ? 0 : cd[bb->offset + j] * x2;
        nz += h > 0;
        for (size_t k = 0; k < w->cols; k++)
            want[w->offset + j * w->cols + k] = h;
        want[bb->offset + j] = h;
    }
    assert_true(nz > 0);
    char what[96];
    snprintf(what, sizeof what, "%s rows 1 vs u (|x|^2 + 1)", name);
    assert_true(check_close(what, cr, want, n, 1e-5, 1e-9));
    for (size_t i = bb->offset + bb->rows; i < n; i++)   /* above: the diagonal's bits */
        assert_true(cr[i] == cd[i]);
    free(theta);
    free(g);
    free(sq);
    free(cd);
    free(cr);
    free(want);
    pd_model_destroy(&md);
    pd_model_destroy(&mr);
}

static void test_curv_rows(void **state)
{
    int h2[] = {5, 4};
    rowcheck(*state, config(PD_MODEL_SOFTMAX, GD, GC), "softmax");
    rowcheck(*state, mlp_config(GD, h2, 2, GC, PD_ACT_RELU), "mlp 5,4 relu");
}

/* logreg and svm have no curvature estimate: refused, naming the type. */
static void test_curv_refused(void **state)
{
    (void)state;
    pd_model_config mc = config(PD_MODEL_SVM, GD, 0);
    pd_model *m = create(&mc, 4);
    assert_int_equal(pd_model_curv_init(m, 0, 0), PD_EINPUT);
    assert_non_null(strstr(pd_err_msg(), "no curvature estimate for svm"));
    pd_model_destroy(&m);
}

/* Dense and CSR copies of the same batch give the same gradient, and a
 * call after a larger batch leaves no trace of it (workspace reuse). */
static void test_grad_dense_equals_sparse_input(void **state)
{
    gdata *gd = *state;
    int h[] = {5, 4};
    pd_model_config cfgs[] = {config(PD_MODEL_SOFTMAX, GD, GC),
                              mlp_config(GD, h, 2, GC, PD_ACT_TANH),
                              config(PD_MODEL_LINREG, GD, 0), config(PD_MODEL_LOGREG, GD, 0),
                              config(PD_MODEL_SVM, GD, 0)};
    const size_t all[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, few[] = {8, 7, 2};
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        cfgs[c].l2 = 0.05;
        gd->dense.y = gd->sparse.y = labels_for(gd, cfgs[c].type);
        pd_model *m = create(&cfgs[c], GN), *fresh = create(&cfgs[c], GN);
        size_t n = pd_model_nparams(m);
        float *theta = malloc(n * sizeof *theta), *g1 = malloc(n * sizeof *g1);
        float *g2 = malloc(n * sizeof *g2);
        assert_true(theta && g1 && g2);
        fill_uniform(theta, n, -0.5, 0.5, 5);
        double l1, l2;
        assert_int_equal(pd_model_grad(m, theta, &gd->dense, all, GN, g1, &l1), PD_OK);
        assert_int_equal(pd_model_grad(m, theta, &gd->sparse, few, 3, g1, &l1), PD_OK);
        assert_int_equal(pd_model_grad(fresh, theta, &gd->dense, few, 3, g2, &l2), PD_OK);
        assert_true(rel_close(l1, l2, 1e-6));
        assert_true(check_close_f("sparse input after a big batch", g1, g2, n, 1e-6, 1e-7));
        free(theta);
        free(g1);
        free(g2);
        pd_model_destroy(&m);
        pd_model_destroy(&fresh);
    }
}

/* Too small a sparse gradient fails cleanly, and leaves the mark array
 * clean for the next call. */
static void test_sparse_capacity(void **state)
{
    gdata *gd = *state;
    gd->sparse.y = gd->y_sign;
    pd_model_config mc = config(PD_MODEL_LOGREG, GD, 0);
    pd_model *m = create(&mc, 8);
    size_t n = pd_model_nparams(m);
    float theta[GD + 1], dense[GD + 1];
    fill_uniform(theta, n, -0.5, 0.5, 9);
    pd_sparse_grad small, big;
    assert_int_equal(pd_sparse_grad_init(&small, 2), PD_OK);
    assert_int_equal(pd_sparse_grad_init(&big, n), PD_OK);
    double loss, dloss;
    pd_err_clear();
    assert_int_equal(pd_model_grad_sparse(m, theta, &gd->sparse, GROWS, GB, &small, &loss),
                     PD_ENOMEM);
    assert_non_null(strstr(pd_err_msg(), "sparse gradient holds 2 entries"));
    assert_int_equal(pd_model_grad_sparse(m, theta, &gd->sparse, GROWS, GB, &big, &loss), PD_OK);
    assert_int_equal(pd_model_grad(m, theta, &gd->sparse, GROWS, GB, dense, &dloss), PD_OK);
    float scattered[GD + 1] = {0};
    for (size_t j = 0; j < big.nnz; j++)
        scattered[big.idx[j]] = big.val[j];
    assert_true(check_close_f("sparse after a failed call", scattered, dense, n, 1e-6, 1e-7));
    /* a dense batch needs room for every coordinate */
    gd->dense.y = gd->y_sign;
    assert_int_equal(pd_model_grad_sparse(m, theta, &gd->dense, GROWS, GB, &small, &loss),
                     PD_ENOMEM);
    assert_int_equal(pd_model_grad_sparse(m, theta, &gd->dense, GROWS, GB, &big, &loss), PD_OK);
    assert_int_equal(big.nnz, n);
    pd_sparse_grad_free(&small);
    pd_sparse_grad_free(&big);
    assert_null(big.idx);
    pd_model_destroy(&m);
}

/* Consecutive sparse gradients on one model: each batch's result equals a
 * fresh model's (the mark array is reset between calls). */
static void test_sparse_grad_repeated(void **state)
{
    gdata *gd = *state;
    gd->sparse.y = gd->y_sign;
    pd_model_config mc = config(PD_MODEL_SVM, GD, 0);
    mc.l2 = 0.01;
    pd_model *m = create(&mc, 8);
    size_t n = pd_model_nparams(m);
    float theta[GD + 1];
    fill_uniform(theta, n, -0.5, 0.5, 10);
    const size_t b1[] = {0, 1, 2, 3, 4, 5, 6, 8}, b2[] = {9, 2}, b3[] = {7};
    const size_t *batches[] = {b1, b2, b3, b2};
    size_t sizes[] = {8, 2, 1, 2};
    pd_sparse_grad g, f;
    assert_int_equal(pd_sparse_grad_init(&g, n), PD_OK);
    assert_int_equal(pd_sparse_grad_init(&f, n), PD_OK);
    for (int k = 0; k < 4; k++) {
        pd_model *fresh = create(&mc, 8);
        double l1, l2;
        assert_int_equal(pd_model_grad_sparse(m, theta, &gd->sparse, batches[k], sizes[k], &g,
                                              &l1), PD_OK);
        assert_int_equal(pd_model_grad_sparse(fresh, theta, &gd->sparse, batches[k], sizes[k],
                                              &f, &l2), PD_OK);
        assert_int_equal(g.nnz, f.nnz);
        assert_memory_equal(g.idx, f.idx, g.nnz * sizeof *g.idx);
        assert_true(check_close_f("sparse grad, model reused", g.val, f.val, g.nnz, 0, 0));
        assert_true(l1 == l2);
        if (batches[k] == b3)
            assert_int_equal(g.nnz, 1);   /* the empty row: only the bias */
        pd_model_destroy(&fresh);
    }
    pd_sparse_grad_free(&g);
    pd_sparse_grad_free(&f);
    pd_model_destroy(&m);
}

/* pd_model_touched gives what the sparse gradient of the same batch
 * touches, found independently here by scanning the rows; dense data
 * touches everything; too small an array fails cleanly. */
static void test_touched(void **state)
{
    gdata *gd = *state;
    gd->sparse.y = gd->dense.y = gd->y_sign;
    pd_model_config mc = config(PD_MODEL_LOGREG, GD, 0);
    pd_model *m = create(&mc, 8);
    size_t n = pd_model_nparams(m);
    float theta[GD + 1];
    fill_uniform(theta, n, -0.5, 0.5, 11);
    const size_t b1[] = {0, 1, 2, 3, 4, 5, 6, 8}, b2[] = {9, 2}, b3[] = {7};
    const size_t *batches[] = {b1, b2, b3};
    size_t sizes[] = {8, 2, 1};
    pd_sparse_grad g;
    assert_int_equal(pd_sparse_grad_init(&g, n), PD_OK);
    uint32_t idx[GD + 1];
    size_t k;
    for (int q = 0; q < 3; q++) {
        const pd_dataset *ds = &gd->sparse;
        size_t want = 0;
        uint32_t expect[GD + 1];
        for (size_t j = 0; j < GD; j++) {
            bool hit = false;
            for (size_t i = 0; i < sizes[q]; i++)
                for (size_t p = ds->row_ptr[batches[q][i]]; p < ds->row_ptr[batches[q][i] + 1]; p++)
                    hit = hit || ds->col[p] == j;
            if (hit)
                expect[want++] = (uint32_t)j;
        }
        expect[want++] = GD;   /* the bias */
        assert_int_equal(pd_model_touched(m, ds, batches[q], sizes[q], idx, n, &k), PD_OK);
        assert_int_equal(k, want);
        assert_memory_equal(idx, expect, k * sizeof *idx);
        double loss;
        assert_int_equal(pd_model_grad_sparse(m, theta, ds, batches[q], sizes[q], &g, &loss),
                         PD_OK);
        assert_int_equal(g.nnz, k);
        assert_memory_equal(g.idx, idx, k * sizeof *idx);
    }
    assert_int_equal(pd_model_touched(m, &gd->dense, b2, 2, idx, n, &k), PD_OK);
    assert_int_equal(k, n);
    for (size_t j = 0; j < n; j++)
        assert_int_equal(idx[j], j);
    pd_err_clear();
    assert_int_equal(pd_model_touched(m, &gd->sparse, b1, 8, idx, 2, &k), PD_ENOMEM);
    assert_non_null(strstr(pd_err_msg(), "touched set holds 2 entries"));
    /* the failed call left the mark array clean */
    assert_int_equal(pd_model_touched(m, &gd->sparse, b2, 2, idx, n, &k), PD_OK);
    assert_int_equal(pd_model_grad_sparse(m, theta, &gd->sparse, b2, 2, &g, &(double){0}), PD_OK);
    assert_int_equal(g.nnz, k);
    assert_memory_equal(g.idx, idx, k * sizeof *idx);
    pd_sparse_grad_free(&g);
    pd_model_destroy(&m);
}

static void test_bad_labels(void **state)
{
    gdata *gd = *state;
    float y[GN];
    memcpy(y, gd->y_class, sizeof y);
    gd->dense.y = y;
    pd_model_config mc = config(PD_MODEL_SOFTMAX, GD, GC);
    pd_model *m = create(&mc, 8);
    float theta[(GD + 1) * GC] = {0}, grad[(GD + 1) * GC];
    double loss;
    float bad[] = {3.0f, -1.0f, 1.5f, NAN};
    for (int k = 0; k < 4; k++) {
        y[3] = bad[k];
        pd_err_clear();
        assert_int_equal(pd_model_grad(m, theta, &gd->dense, GROWS, GB, grad, &loss), PD_EINPUT);
        assert_non_null(strstr(pd_err_msg(), "example 103: class label"));
    }
    pd_eval ev;
    assert_int_equal(pd_model_eval(m, theta, &gd->dense, &ev), PD_EINPUT);
    pd_model_destroy(&m);

    memcpy(y, gd->y_sign, sizeof y);
    y[0] = 0.0f;
    mc = config(PD_MODEL_SVM, GD, 0);
    m = create(&mc, 8);
    pd_err_clear();
    assert_int_equal(pd_model_grad(m, theta, &gd->dense, GROWS, GB, grad, &loss), PD_EINPUT);
    assert_non_null(strstr(pd_err_msg(), "example 100: label 0, expected +1 or -1"));

    /* a dataset with another feature count */
    gd->dense.d = GD + 1;
    assert_int_equal(pd_model_grad(m, theta, &gd->dense, GROWS, GB, grad, &loss), PD_EINPUT);
    assert_non_null(strstr(pd_err_msg(), "data has 8 features, the svm model expects 7"));
    gd->dense.d = GD;
    pd_model_destroy(&m);
}

/* ---- stability ------------------------------------------------------------ */

static void test_logreg_huge_margins(void **state)
{
    (void)state;
    float x[] = {1, -1, 1, -1}, y[] = {1, 1, -1, -1};   /* z = +-1000 */
    pd_dataset ds = {.n = 4, .d = 1, .x = x, .y = y};
    pd_model_config mc = config(PD_MODEL_LOGREG, 1, 0);
    pd_model *m = create(&mc, 4);
    float theta[2] = {1000.0f, 0.0f}, grad[2];
    const size_t rows[][1] = {{0}, {1}, {2}, {3}};
    /* per row: loss, dL/dw */
    double want_loss[] = {0.0, 1000.0, 1000.0, 0.0}, want_gw[] = {0.0, 1.0, 1.0, 0.0};
    for (int i = 0; i < 4; i++) {
        double loss;
        assert_int_equal(pd_model_grad(m, theta, &ds, rows[i], 1, grad, &loss), PD_OK);
        assert_true(isfinite(loss) && isfinite(grad[0]) && isfinite(grad[1]));
        assert_true(fabs(loss - want_loss[i]) <= 1e-9 * 1000.0);
        assert_true(fabs(grad[0] - want_gw[i]) <= 1e-6);
        assert_true(fabs(grad[1] - want_gw[i] * x[i]) <= 1e-6);   /* dL/db = dL/dz */
    }
    pd_eval ev;
    assert_int_equal(pd_model_eval(m, theta, &ds, &ev), PD_OK);
    assert_true(rel_close(ev.loss, 500.0, 1e-12));
    assert_true(ev.accuracy == 0.5);
    pd_model_destroy(&m);
}

static void test_softmax_huge_logits(void **state)
{
    (void)state;
    float x[] = {1, 2}, y[] = {0, 2};
    pd_dataset ds = {.n = 2, .d = 1, .x = x, .y = y};
    pd_model_config mc = config(PD_MODEL_SOFTMAX, 1, 3);
    pd_model *m = create(&mc, 2);
    /* W = [1000, 1500, 0]: z(x=1) = (1000, 1500, 0), z(x=2) = (2000, 3000, 0) */
    float theta[6] = {1000, 1500, 0, 0, 0, 0}, grad[6];
    const size_t rows[] = {0, 1};
    double loss;
    assert_int_equal(pd_model_grad(m, theta, &ds, rows, 2, grad, &loss), PD_OK);
    assert_true(rel_close(loss, (500.0 + 3000.0) / 2.0, 1e-9));
    for (int i = 0; i < 6; i++)
        assert_true(isfinite(grad[i]));
    /* row 0: dz = (-1, 1, 0); row 1: dz = (0, 1, -1); dW = sum dz x / 2 */
    float want[] = {-0.5f, 1.5f, -1.0f, -0.5f, 1.0f, -0.5f};
    assert_true(check_close_f("softmax huge logits grad", grad, want, 6, 1e-6, 1e-7));
    pd_model_destroy(&m);
}

/* ---- eval -------------------------------------------------------------- */

static void test_eval_softmax(void **state)
{
    (void)state;
    /* W rows: class 0 = (1, 0), class 1 = (0, 1), class 2 = (-1, -1); b = 0.
     * Predictions: 0, 1, 2, 0 (label 1: wrong), 0 on a tie (label 2: wrong). */
    float x[] = {2, 0, 0, 2, -1, -1, 1, 0.5f, 0, 0}, y[] = {0, 1, 2, 1, 2};
    pd_dataset ds = {.n = 5, .d = 2, .x = x, .y = y};
    float theta[] = {1, 0, 0, 1, -1, -1, 0, 0, 0};
    double want = 0.0;
    for (int i = 0; i < 5; i++) {
        double z[3] = {x[2 * i], x[2 * i + 1], -x[2 * i] - x[2 * i + 1]};
        want += log(exp(z[0]) + exp(z[1]) + exp(z[2])) - z[(int)y[i]];
    }
    want /= 5.0;
    size_t batches[] = {1, 2, 5, 64};
    for (int k = 0; k < 4; k++) {
        pd_model_config mc = config(PD_MODEL_SOFTMAX, 2, 3);
        mc.l2 = 0.5;   /* eval leaves it out */
        pd_model *m = create(&mc, batches[k]);
        pd_eval ev;
        assert_int_equal(pd_model_eval(m, theta, &ds, &ev), PD_OK);
        assert_int_equal(ev.n, 5);
        assert_true(ev.accuracy == 0.6);
        assert_true(rel_close(ev.loss, want, 1e-6));
        assert_true(isnan(ev.rmse));
        pd_model_destroy(&m);
    }
}

static void test_eval_mlp(void **state)
{
    (void)state;
    /* 1 -> 2 -> 2 relu: h = (relu(x), relu(-x)); z = (h0, h1): predicts
     * class 0 for x > 0, class 1 for x < 0. */
    float x[] = {3, -2, 0.5f, -1}, y[] = {0, 1, 1, 1};
    pd_dataset ds = {.n = 4, .d = 1, .x = x, .y = y};
    int h[] = {2};
    pd_model_config mc = mlp_config(1, h, 1, 2, PD_ACT_RELU);
    pd_model *m = create(&mc, 3);
    float theta[] = {1, -1, 0, 0, 1, 0, 0, 1, 0, 0};
    pd_eval ev;
    assert_int_equal(pd_model_eval(m, theta, &ds, &ev), PD_OK);
    assert_true(ev.accuracy == 0.75);
    /* losses: softplus(-3), softplus(-2), softplus(0.5), softplus(-1) */
    double want = (log1p(exp(-3.0)) + log1p(exp(-2.0)) + log1p(exp(0.5)) + log1p(exp(-1.0))) / 4;
    assert_true(rel_close(ev.loss, want, 1e-6));
    pd_model_destroy(&m);
}

static void test_eval_linreg(void **state)
{
    (void)state;
    /* w = 2, b = 1: predictions 1, 3, 5, 7; residuals -1, 1, 0, 0 */
    float x[] = {0, 1, 2, 3}, y[] = {2, 2, 5, 7};
    pd_dataset ds = {.n = 4, .d = 1, .x = x, .y = y};
    pd_model_config mc = config(PD_MODEL_LINREG, 1, 0);
    pd_model *m = create(&mc, 3);
    float theta[] = {2, 1};
    pd_eval ev;
    assert_int_equal(pd_model_eval(m, theta, &ds, &ev), PD_OK);
    assert_true(rel_close(ev.rmse, sqrt(0.5), 1e-12));
    assert_true(rel_close(ev.loss, 0.25, 1e-12));
    assert_true(isnan(ev.accuracy));
    pd_model_destroy(&m);
}

static void test_eval_sparse_linear(void **state)
{
    (void)state;
    /* w = (1, -1, 0), b = 0. Rows: {0:1} z=1, {1:2} z=-2, {} z=0 (predicts
     * +1), {0:1, 1:3} z=-2. Labels +1, +1, -1, -1: two right. */
    size_t row_ptr[] = {0, 1, 2, 2, 4};
    uint32_t col[] = {0, 1, 0, 1};
    float val[] = {1, 2, 1, 3}, y[] = {1, 1, -1, -1};
    pd_dataset ds = {.n = 4, .d = 3, .sparse = true, .row_ptr = row_ptr, .col = col,
                     .val = val, .y = y};
    float theta[] = {1, -1, 0, 0};
    pd_eval ev;

    pd_model_config mc = config(PD_MODEL_LOGREG, 3, 0);
    pd_model *m = create(&mc, 3);
    assert_int_equal(pd_model_eval(m, theta, &ds, &ev), PD_OK);
    assert_true(ev.accuracy == 0.5);
    double want = (log1p(exp(-1.0)) + log1p(exp(2.0)) + log(2.0) + log1p(exp(-2.0))) / 4;
    assert_true(rel_close(ev.loss, want, 1e-6));
    assert_true(isnan(ev.rmse));
    pd_model_destroy(&m);

    mc = config(PD_MODEL_SVM, 3, 0);
    m = create(&mc, 2);
    assert_int_equal(pd_model_eval(m, theta, &ds, &ev), PD_OK);
    assert_true(ev.accuracy == 0.5);
    assert_true(rel_close(ev.loss, (0.0 + 3.0 + 1.0 + 0.0) / 4, 1e-12));
    /* no examples: no numbers */
    ds.n = 0;
    assert_int_equal(pd_model_eval(m, theta, &ds, &ev), PD_OK);
    assert_int_equal(ev.n, 0);
    assert_true(isnan(ev.loss) && isnan(ev.accuracy));
    pd_model_destroy(&m);
}

/* pd_model_losses: exact per-example values on hand-made cases, in the
 * order of the rows asked for. */
static void test_losses_exact(void **state)
{
    (void)state;
    /* linreg w = 2, b = 1 (test_eval_linreg): residuals -1, 1, 0, 0 */
    float x[] = {0, 1, 2, 3}, y[] = {2, 2, 5, 7};
    pd_dataset ds = {.n = 4, .d = 1, .x = x, .y = y};
    pd_model_config mc = config(PD_MODEL_LINREG, 1, 0);
    mc.l2 = 1.0;   /* left out */
    pd_model *m = create(&mc, 3);
    float theta[] = {2, 1}, loss[3] = {-1, -1, -1};
    size_t rows[] = {3, 0, 1};
    assert_int_equal(pd_model_losses(m, theta, &ds, rows, 3, loss), PD_OK);
    assert_true(loss[0] == 0.0f && loss[1] == 0.5f && loss[2] == 0.5f);
    pd_model_destroy(&m);

    /* svm on sparse rows (test_eval_sparse_linear): hinge 0, 3, 1, 0 */
    size_t row_ptr[] = {0, 1, 2, 2, 4};
    uint32_t col[] = {0, 1, 0, 1};
    float val[] = {1, 2, 1, 3}, ys[] = {1, 1, -1, -1};
    pd_dataset sp = {.n = 4, .d = 3, .sparse = true, .row_ptr = row_ptr, .col = col,
                     .val = val, .y = ys};
    float th[] = {1, -1, 0, 0}, l4[4];
    size_t all[] = {0, 1, 2, 3};
    mc = config(PD_MODEL_SVM, 3, 0);
    m = create(&mc, 4);
    assert_int_equal(pd_model_losses(m, th, &sp, all, 4, l4), PD_OK);
    assert_true(l4[0] == 0.0f && l4[1] == 3.0f && l4[2] == 1.0f && l4[3] == 0.0f);
    pd_model_destroy(&m);

    /* softmax (test_eval_softmax): -log softmax(z)_y per example */
    float xs[] = {2, 0, 0, 2, -1, -1, 1, 0.5f, 0, 0}, yc[] = {0, 1, 2, 1, 2};
    pd_dataset dc = {.n = 5, .d = 2, .x = xs, .y = yc};
    float ths[] = {1, 0, 0, 1, -1, -1, 0, 0, 0}, l5[5];
    size_t r5[] = {4, 3, 2, 1, 0};
    mc = config(PD_MODEL_SOFTMAX, 2, 3);
    m = create(&mc, 5);
    assert_int_equal(pd_model_losses(m, ths, &dc, r5, 5, l5), PD_OK);
    for (int k = 0; k < 5; k++) {
        size_t i = r5[k];
        double z[3] = {xs[2 * i], xs[2 * i + 1], -xs[2 * i] - xs[2 * i + 1]};
        double want = log(exp(z[0]) + exp(z[1]) + exp(z[2])) - z[(int)yc[i]];
        if (!rel_close(l5[k], want, 1e-6))
            fail_msg("softmax row %zu: loss %.9g, want %.9g", i, (double)l5[k], want);
    }
    /* A bad label is an input error, as in training. */
    yc[2] = 3;
    assert_int_equal(pd_model_losses(m, ths, &dc, r5, 5, l5), PD_EINPUT);
    pd_model_destroy(&m);
}

/* Their mean is pd_model_eval's loss on the same rows, for every model and
 * both storage forms. */
static void test_losses_mean_is_eval(void **state)
{
    gdata *g = *state;
    int h[] = {4, 3};
    pd_model_config mcs[] = {config(PD_MODEL_SOFTMAX, GD, GC),
                             mlp_config(GD, h, 2, GC, PD_ACT_TANH),
                             config(PD_MODEL_LINREG, GD, 0), config(PD_MODEL_LOGREG, GD, 0),
                             config(PD_MODEL_SVM, GD, 0)};
    size_t rows[GN];
    for (size_t i = 0; i < GN; i++)
        rows[i] = i;
    for (size_t k = 0; k < sizeof mcs / sizeof *mcs; k++) {
        mcs[k].l2 = 0.3;
        pd_model *m = create(&mcs[k], GN);
        size_t n = pd_model_nparams(m);
        float *theta = malloc(n * sizeof *theta), loss[GN];
        assert_non_null(theta);
        fill_uniform(theta, n, -1, 1, 40 + k);
        for (int form = 0; form < 2; form++) {
            pd_dataset ds = form ? g->sparse : g->dense;
            ds.y = labels_for(g, mcs[k].type);
            pd_eval ev;
            assert_int_equal(pd_model_eval(m, theta, &ds, &ev), PD_OK);
            assert_int_equal(pd_model_losses(m, theta, &ds, rows, GN, loss), PD_OK);
            double mean = 0;
            for (size_t i = 0; i < GN; i++)
                mean += loss[i];
            mean /= GN;
            if (!rel_close(mean, ev.loss, 1e-6))
                fail_msg("model %zu (%s rows): mean of losses %.9g, eval %.9g", k,
                         form ? "sparse" : "dense", mean, ev.loss);
        }
        free(theta);
        pd_model_destroy(&m);
    }
}

static void test_tensor_norms(void **state)
{
    (void)state;
    int h[] = {5, 4};
    pd_model_config mc = mlp_config(7, h, 2, 3, PD_ACT_RELU);
    pd_model *m = create(&mc, 1);
    size_t n = pd_model_nparams(m), T = pd_model_ntensors(m);
    float *v = malloc(n * sizeof *v);
    double norms[6];
    assert_non_null(v);
    /* tensor t filled with (t + 1) * (-1)^i: norm (t + 1) sqrt(size) */
    for (size_t t = 0; t < T; t++) {
        const pd_tensor_info *ti = pd_model_tensor(m, t);
        for (size_t i = 0; i < ti->rows * ti->cols; i++)
            v[ti->offset + i] = (float)(t + 1) * (i % 2 ? -1.0f : 1.0f);
    }
    pd_model_tensor_norms(m, v, norms);
    for (size_t t = 0; t < T; t++) {
        const pd_tensor_info *ti = pd_model_tensor(m, t);
        assert_true(rel_close(norms[t], (double)(t + 1) * sqrt((double)(ti->rows * ti->cols)),
                              1e-12));
    }
    /* A server's range: the parts add up to the whole, exactly here. */
    double a[6], b[6];
    size_t cuts[] = {0, 3, 35, 38, 40, n - 1, n};
    for (size_t c = 0; c < sizeof cuts / sizeof *cuts; c++) {
        pd_model_tensor_sumsq_range(m, v, 0, cuts[c], a);
        pd_model_tensor_sumsq_range(m, v, cuts[c], n, b);
        for (size_t t = 0; t < T; t++) {
            const pd_tensor_info *ti = pd_model_tensor(m, t);
            assert_true(a[t] + b[t] == (double)((t + 1) * (t + 1) * ti->rows * ti->cols));
        }
    }
    /* [2, 9) lies in W1 (5 x 7, all +-1): 7; nothing of the other tensors */
    pd_model_tensor_sumsq_range(m, v, 2, 9, a);
    assert_true(a[0] == 7.0);
    for (size_t t = 1; t < T; t++)
        assert_true(a[t] == 0.0);
    /* Sparse pairs: W1[0] (1), b1[0] at 35 (2), b1[4] at 39 (3), the last
     * coordinate, in b3 (4): 1 in W1, 4 + 9 in b1, 16 in b3. */
    const uint32_t idx[] = {0, 35, 39, (uint32_t)n - 1};
    const float val[] = {1, 2, 3, 4};
    pd_model_tensor_sumsq_sparse(m, idx, val, 4, a);
    assert_true(a[0] == 1.0 && a[1] == 13.0 && a[T - 1] == 16.0);
    for (size_t t = 2; t + 1 < T; t++)
        assert_true(a[t] == 0.0);
    free(v);
    pd_model_destroy(&m);
}

static void test_blas_version(void **state)
{
    (void)state;
    const char *v = pd_model_blas_version();
    assert_non_null(v);
    assert_true(strlen(v) > 0);
    print_message("  OpenBLAS: %s\n", v);
    /* the kernels this test runs with compute sgemm right */
    assert_true(pd_model_blas_selfcheck());
    assert_non_null(pd_model_blas_core());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_mlp),
        cmocka_unit_test(test_layout_linear),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_kernels_affine),
        cmocka_unit_test(test_kernels_activation),
        cmocka_unit_test(test_kernels_fused),
        cmocka_unit_test_setup_teardown(test_grad_softmax, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_grad_mlp, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_grad_rows_in_place, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_grad_linreg, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_grad_logreg, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_grad_svm, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_curv_softmax, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_curv_mlp, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_curv_linreg, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_curv_rows, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_curv_bound, setup_gdata, teardown_gdata),
        cmocka_unit_test(test_curv_refused),
        cmocka_unit_test_setup_teardown(test_grad_dense_equals_sparse_input, setup_gdata,
                                        teardown_gdata),
        cmocka_unit_test_setup_teardown(test_sparse_capacity, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_sparse_grad_repeated, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_touched, setup_gdata, teardown_gdata),
        cmocka_unit_test_setup_teardown(test_bad_labels, setup_gdata, teardown_gdata),
        cmocka_unit_test(test_logreg_huge_margins),
        cmocka_unit_test(test_softmax_huge_logits),
        cmocka_unit_test(test_eval_softmax),
        cmocka_unit_test(test_eval_mlp),
        cmocka_unit_test(test_eval_linreg),
        cmocka_unit_test(test_eval_sparse_linear),
        cmocka_unit_test(test_losses_exact),
        cmocka_unit_test_setup_teardown(test_losses_mean_is_eval, setup_gdata, teardown_gdata),
        cmocka_unit_test(test_tensor_norms),
        cmocka_unit_test(test_blas_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
