/* Microbenchmarks of paramd's hot paths against their ceilings on this
 * machine, for scripts/bench (built by meson, never installed). Each
 * subcommand prints one JSON object per figure on stdout:
 *   {"figure": F, "case": C, "value": v, "ref": r, "ratio": v / r, "unit": U}
 * with the paramd code path and its reference timed alternately, in
 * `reps` rounds of each, and the median of the rounds kept.
 *
 *   pd_bench gemm  B H1,H2,..          mlp forward+backward (pd_model_grad)
 *                                      vs the same cblas_sgemm calls (GFLOP/s)
 *   pd_bench optim N                   every rule's step (pd_optim_apply) vs a
 *                                      triad a = b + s c over N floats (GB/s of
 *                                      minimal traffic)
 *   mpirun -n W+1 pd_bench sync N      one sync round's communication as
 *                                      paramd's worker and server do it (push
 *                                      N floats, get N back, sleeping waits;
 *                                      with --bucket also in pieces), and as the W
 *                                      ranks of training.servers 0 do it
 *                                      (slices to their owners, ranges back),
 *                                      each vs MPI_Allreduce of N floats over
 *                                      the W workers (us/round; they take
 *                                      turns round by round)
 *   mpirun -n W+1 pd_bench server N dense|sparse
 *                                      an async server's loop (receive a
 *                                      gradient, pd_optim_take_step, reply)
 *                                      vs the same loop without the step
 *                                      (gradients per second)
 *   pd_bench rss                       peak RSS after MPI_Init with nothing
 *                                      else allocated (the fixed overhead)
 * Options after the arguments: --reps R (default 5), --seconds S (the
 * time each timed round aims at, default 0.2), --bucket B (sync: also the
 * round in pieces of B floats, a protocol tried for issue 12 and not in
 * paramd, docs/performance.md; default 0: not measured), --apply
 * (sync: the server also sums the W gradients and takes a momentum step
 * of the range, piece by piece with pieces, as paramd's round close does;
 * figure sync_round_apply_us), --cpu (gemm and optim only: time by the
 * thread's CPU clock instead of the wall clock, so that the time the
 * process waits for a core on a shared machine is not counted; both sides
 * of a figure are timed alike). */
#include <cblas.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "comm.h"
#include "train.h"
#include "paramd/clones.h"
#include "paramd/model.h"
#include "paramd/optim.h"

static int reps = 5;
static double round_s = 0.2;
static size_t bucket_opt = 0;   /* sync --bucket: pieces of this many floats */
static bool apply_opt = false;      /* sync: the server also sums and steps */

static bool cpu_clock;   /* --cpu */

static double now(void)
{
    if (!cpu_clock)
        return pd_now();
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "pd_bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void fill(float *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
}

static void emit(const char *figure, const char *c, double value, double ref, const char *unit)
{
    printf("{\"figure\": \"%s\", \"case\": \"%s\", \"value\": %.6g, \"ref\": %.6g, "
           "\"ratio\": %.6g, \"unit\": \"%s\"}\n", figure, c, value, ref,
           ref > 0 ? value / ref : NAN, unit);
    fflush(stdout);
}

/* Seconds per call of fn over about round_s seconds (calls counted first). */
typedef void (*bench_fn)(void *);
static double per_call(bench_fn fn, void *arg, long *calls)
{
    if (*calls == 0) {
        double t0 = now();
        long k = 0;
        do {
            fn(arg);
            k++;
        } while (now() - t0 < round_s / 4);
        *calls = (long)((double)k * round_s / (now() - t0)) + 1;
    }
    double t0 = now();
    for (long k = 0; k < *calls; k++)
        fn(arg);
    return (now() - t0) / (double)*calls;
}

/* Alternate fa and fb `reps` times; medians of seconds per call. */
static void alternate(bench_fn fa, void *a, bench_fn fb, void *b, double *ta, double *tb)
{
    double *va = xmalloc((size_t)reps * sizeof *va), *vb = xmalloc((size_t)reps * sizeof *vb);
    long ca = 0, cb = 0;
    for (int r = 0; r < reps; r++) {
        va[r] = per_call(fa, a, &ca);
        vb[r] = per_call(fb, b, &cb);
    }
    *ta = median(va, reps);
    *tb = median(vb, reps);
    free(va);
    free(vb);
}

/* ---- gemm: model forward+backward vs the same sgemm calls ----------------- */

typedef struct gemm_case {
    pd_model *m;
    pd_dataset ds;
    size_t *rows, b, L;
    size_t dims[PD_MAX_HIDDEN + 2];
    bool beta0;
    float *theta, *grad, *A[PD_MAX_HIDDEN + 2], *Z[PD_MAX_HIDDEN + 2], *W[PD_MAX_HIDDEN + 2];
} gemm_case;

static void run_model(void *p)
{
    gemm_case *g = p;
    double loss;
    if (pd_model_grad(g->m, g->theta, &g->ds, g->rows, g->b, g->grad, &loss) != PD_OK) {
        fprintf(stderr, "pd_bench: pd_model_grad failed: %s\n", pd_err_msg());
        exit(1);
    }
}

/* The sgemm calls of dense.c for this shape: forward Z = A W^T per layer,
 * backward dW = dZ^T A and dA = dZ W (none into the input layer), each into
 * a cleared C with beta = 1 as dense.c makes them (OpenBLAS's own clearing
 * for beta = 0 is slower). With PD_BENCH_BETA0 set in the environment, the
 * plain beta = 0 calls dense.c made before (for before/after comparisons). */
static void sgemm_c(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                    const float *A, int lda, const float *B, int ldb, float *C, bool beta0)
{
    if (!beta0)
        memset(C, 0, (size_t)m * (size_t)n * sizeof *C);
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, A, lda, B, ldb, beta0 ? 0.0f : 1.0f, C, n);
}

static void run_sgemm(void *p)
{
    gemm_case *g = p;
    int b = (int)g->b;
    for (size_t l = 0; l < g->L; l++) {
        int ni = (int)g->dims[l], no = (int)g->dims[l + 1];
        sgemm_c(CblasNoTrans, CblasTrans, b, no, ni, g->A[l], ni, g->W[l], ni, g->Z[l + 1],
                g->beta0);
    }
    for (size_t l = g->L; l-- > 0;) {
        int ni = (int)g->dims[l], no = (int)g->dims[l + 1];
        sgemm_c(CblasTrans, CblasNoTrans, no, ni, b, g->Z[l + 1], no, g->A[l], ni, g->W[l],
                g->beta0);
        if (l > 0)
            sgemm_c(CblasNoTrans, CblasNoTrans, b, ni, no, g->Z[l + 1], no, g->W[l], ni,
                    g->A[l], g->beta0);
    }
}

static int bench_gemm(size_t b, const char *hidden)
{
    gemm_case g = {.b = b, .beta0 = getenv("PD_BENCH_BETA0") != NULL};
    pd_model_config mc = {.type = PD_MODEL_MLP, .features = 784, .classes = 10,
                          .activation = PD_ACT_RELU};
    char name[128];
    int n = snprintf(name, sizeof name, "784");
    for (const char *s = hidden; *s && mc.n_hidden < PD_MAX_HIDDEN;) {
        char *end;
        long h = strtol(s, &end, 10);
        if (end == s || h < 1) {
            fprintf(stderr, "pd_bench gemm: bad hidden widths '%s'\n", hidden);
            return 2;
        }
        mc.hidden[mc.n_hidden++] = (int)h;
        n += snprintf(name + n, sizeof name - (size_t)n, "-%ld", h);
        s = *end == ',' ? end + 1 : end;
    }
    snprintf(name + n, sizeof name - (size_t)n, "-10 b%zu", b);
    if (pd_model_create(&mc, b, &g.m) != PD_OK) {
        fprintf(stderr, "pd_bench: %s\n", pd_err_msg());
        return 1;
    }
    size_t np = pd_model_nparams(g.m);
    g.theta = xmalloc(np * sizeof *g.theta);
    g.grad = xmalloc(np * sizeof *g.grad);
    pd_model_init(g.m, g.theta, 1);
    g.ds = (pd_dataset){.n = b, .d = 784, .x = xmalloc(b * 784 * sizeof(float)),
                        .y = xmalloc(b * sizeof(float)), .id = xmalloc(b * sizeof(size_t))};
    fill(g.ds.x, b * 784, 7);
    g.rows = xmalloc(b * sizeof *g.rows);
    for (size_t i = 0; i < b; i++) {
        g.ds.x[i * 784] += 0.5f;
        g.ds.y[i] = (float)(i % 10);
        g.ds.id[i] = g.rows[i] = i;
    }
    g.L = (size_t)mc.n_hidden + 1;
    g.dims[0] = 784;
    for (int l = 0; l < mc.n_hidden; l++)
        g.dims[l + 1] = (size_t)mc.hidden[l];
    g.dims[g.L] = 10;
    double flops = 0;
    for (size_t l = 0; l <= g.L; l++)
        g.A[l] = g.Z[l] = NULL;
    for (size_t l = 0; l < g.L; l++) {
        size_t io = g.dims[l] * g.dims[l + 1];
        flops += 2.0 * (double)b * (double)io * (l > 0 ? 3 : 2);
        g.W[l] = xmalloc(io * sizeof(float));
        fill(g.W[l], io, (unsigned)l + 11);
    }
    for (size_t l = 0; l <= g.L; l++) {
        g.A[l] = xmalloc(b * g.dims[l] * sizeof(float));
        fill(g.A[l], b * g.dims[l], (unsigned)l + 3);
        g.Z[l] = g.A[l];
    }
    double tm, ts;
    alternate(run_model, &g, run_sgemm, &g, &tm, &ts);
    emit("fwd_bwd_gflops", name, flops / tm * 1e-9, flops / ts * 1e-9, "GFLOP/s");
    for (size_t l = 0; l < g.L; l++)
        free(g.W[l]);
    for (size_t l = 0; l <= g.L; l++)
        free(g.A[l]);
    free(g.rows);
    free(g.ds.x);
    free(g.ds.y);
    free(g.ds.id);
    free(g.theta);
    free(g.grad);
    pd_model_destroy(&g.m);
    return 0;
}

/* ---- optim: each rule's step vs a triad ---------------------------------- */

typedef struct optim_case {
    pd_optim *o;
    size_t n;
    int64_t t;
    float *theta, *g, *a, *b, *c;
    pd_optim_curv cv;    /* vsgd's curvature inputs (h, v) */
} optim_case;

static void run_step(void *p)
{
    optim_case *c = p;
    pd_optim_step st = pd_optim_prepare(c->o, ++c->t, 1.0, 0.0);
    pd_optim_apply_curv(c->o, &st, c->theta, c->g, &c->cv, 0, c->n);
}

/* In AVX2 where the CPU has it, as the rules' loops are (clones.h): the
 * reference is the best triad this compiler makes, not the baseline one. */
PD_CLONES
static void run_triad(void *p)
{
    optim_case *c = p;
    float *restrict a = c->a;
    const float *restrict b = c->b, *restrict cc = c->c;
    const float s = 1.0001f;
    for (size_t i = 0; i < c->n; i++)
        a[i] = b[i] + s * cc[i];
}

/* Floats each rule must read or write per coordinate: g read, theta read
 * and written, each state vector read and written. */
static int rule_floats(pd_optimizer_name r)
{
    switch (r) {
    case PD_OPT_SGD: return 3;
    case PD_OPT_MOMENTUM: case PD_OPT_NESTEROV: case PD_OPT_ADAGRAD: case PD_OPT_RMSPROP: return 5;
    case PD_OPT_VSGD: return 13;   /* g, h, v read; theta and gb, vb, hb, tau read and written */
    default: return 7;   /* two state vectors */
    }
}

static int bench_optim(size_t n)
{
    optim_case c = {.n = n};
    c.theta = xmalloc(n * sizeof(float));
    c.g = xmalloc(n * sizeof(float));
    c.a = xmalloc(n * sizeof(float));
    c.b = xmalloc(n * sizeof(float));
    c.c = xmalloc(n * sizeof(float));
    fill(c.theta, n, 1);
    fill(c.g, n, 2);
    fill(c.a, n, 3);
    fill(c.b, n, 4);
    fill(c.c, n, 5);
    /* vsgd reads a curvature and a gradient variance with each gradient
     * (the other rules ignore them): positive values, as a model gives. */
    float *h = xmalloc(n * sizeof(float)), *v = xmalloc(n * sizeof(float));
    fill(h, n, 6);
    fill(v, n, 7);
    for (size_t i = 0; i < n; i++) {
        h[i] = fabsf(h[i]) + 0.1f;
        v[i] = fabsf(v[i]) + 0.1f;
    }
    c.cv = (pd_optim_curv){.h = h, .v = v, .n = 64};
    for (int r = 0; r < PD_OPT_COUNT; r++) {
        if (pd_optim_is_batch((pd_optimizer_name)r))
            continue;   /* cg, bfgs, lbfgs: whole-batch methods, no element-wise step */
        pd_optim_config oc = {.name = (pd_optimizer_name)r, .lr = 1e-6, .momentum = NAN,
                              .rho = NAN, .eps = NAN, .beta1 = NAN, .beta2 = NAN,
                              .noise_gamma = 0.55};   /* no weight decay, noise or clipping */
        pd_optim_defaults(&oc);
        if (pd_optim_create(&oc, 0, n, 1, &c.o) != PD_OK) {
            fprintf(stderr, "pd_bench: %s\n", pd_err_msg());
            return 1;
        }
        c.t = 0;
        double ts, tt;
        alternate(run_step, &c, run_triad, &c, &ts, &tt);
        char name[64];
        snprintf(name, sizeof name, "%s n=%zu", pd_optimizer_names[r], n);
        emit("optim_gbs", name, (double)rule_floats((pd_optimizer_name)r) * 4.0 * (double)n / ts * 1e-9,
             12.0 * (double)n / tt * 1e-9, "GB/s");
        pd_optim_destroy(&c.o);
    }
    free(h);
    free(v);
    free(c.theta);
    free(c.g);
    free(c.a);
    free(c.b);
    free(c.c);
    return 0;
}

/* ---- MPI: sync round, server capacity ------------------------------------ */

#define CHECK(call) do { if ((call) != MPI_SUCCESS) { fprintf(stderr, "pd_bench: %s failed\n", #call); MPI_Abort(MPI_COMM_WORLD, 1); } } while (0)
#define TRY(call) do { if ((call) != PD_OK) { fprintf(stderr, "pd_bench: %s\n", pd_err_msg()); MPI_Abort(MPI_COMM_WORLD, 1); } } while (0)

/* sync --apply: the server's sum of the W gradients (each weighted 1/W,
 * into acc block by block, as apply.c's sum_block) and a momentum step
 * over [a, e), as the round's close does it. */
typedef struct round_apply {
    pd_optim *o;
    float *acc;
    pd_optim_step st;
} round_apply;

PD_CLONES
static void sum_range(float *restrict acc, float **in, int W, size_t i0, size_t i1)
{
    const float a = 1.0f / (float)W;
    for (int w = 0; w < W; w++) {
        const float *restrict g = in[w];
        if (w == 0)
            for (size_t i = i0; i < i1; i++)
                acc[i] = a * g[i];
        else
            for (size_t i = i0; i < i1; i++)
                acc[i] += a * g[i];
    }
}

static void apply_range(round_apply *ra, float **in, int W, float *theta, size_t a, size_t e)
{
    if (!ra)
        return;
    for (size_t i = a; i < e; i += 4096) {
        size_t j = i + 4096 < e ? i + 4096 : e;
        sum_range(ra->acc, in, W, i, j);
        pd_optim_apply_curv(ra->o, &ra->st, theta, ra->acc, NULL, i, j);
    }
}

/* --bucket: pieces of b floats for a vector of n (0: one message). */
enum { TAG_PIECE = 17 };
static int pieces_of(size_t n, size_t b)
{
    return b > 0 && n > b ? (int)((n + b - 1) / b) : 0;
}

/* Every rank in, waiting asleep (as paramd's ranks wait). */
static void sleep_barrier(void)
{
    MPI_Request r;
    CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &r));
    TRY(pd_comm_wait(&r, NULL));
}

/* One round as worker.c and apply.c do it: each worker sends a header and
 * n floats and posts the receives of the reply; the server takes every
 * worker's request, then replies to each from one buffer. Waits sleep
 * (pd_comm_*). With pieces of b floats (--bucket: the gradient's first
 * piece is its payload, the others follow on their own tag; the reply is
 * every piece, then the header with an empty payload), the server sends
 * (with --apply: sums, steps and sends) each piece back as soon
 * as every worker's piece is in. Returns seconds per round on worker 1's
 * clock. */
static double sync_rounds(int rank, int W, size_t n, long rounds, float *buf, float **in,
                          size_t bucket, round_apply *ra)
{
    pd_msg_hdr h = {.kind = PD_MSG_GRAD}, hin[64];
    MPI_Request r[4 * 64];
    int K = pieces_of(n, bucket);
    size_t b = bucket;
    MPI_Request *br = xmalloc((size_t)(2 * K * W + 1) * sizeof *br);
    sleep_barrier();
    double t0 = now();
    for (long k = 0; k < rounds; k++) {
        if (rank == 0 && K > 0) {
            for (int w = 0; w < W; w++) {
                CHECK(MPI_Irecv(&hin[w], sizeof h, MPI_BYTE, w + 1, PD_TAG_DATA, MPI_COMM_WORLD, &r[2 * w]));
                CHECK(MPI_Irecv(in[w], (int)n, MPI_FLOAT, w + 1, PD_TAG_DATA, MPI_COMM_WORLD, &r[2 * w + 1]));
            }
            TRY(pd_comm_waitall(2 * W, r));
            for (int w = 0; w < W; w++)
                for (int j = 1; j < K; j++) {
                    size_t a = (size_t)j * b, e = a + b < n ? a + b : n;
                    CHECK(MPI_Irecv(in[w] + a, (int)(e - a), MPI_FLOAT, w + 1, TAG_PIECE,
                                    MPI_COMM_WORLD, &br[w * K + j]));
                }
            for (int j = 0; j < K; j++) {
                size_t a = (size_t)j * b, e = a + b < n ? a + b : n;
                for (int w = 0; j > 0 && w < W; w++)
                    TRY(pd_comm_wait(&br[w * K + j], NULL));
                apply_range(ra, in, W, buf, a, e);
                for (int w = 0; w < W; w++)
                    CHECK(MPI_Isend(buf + a, (int)(e - a), MPI_FLOAT, w + 1, TAG_PIECE,
                                    MPI_COMM_WORLD, &br[W * K + w * K + j]));
            }
            for (int w = 0; w < W; w++) {
                CHECK(MPI_Isend(&h, sizeof h, MPI_BYTE, w + 1, PD_TAG_DATA, MPI_COMM_WORLD, &r[2 * w]));
                CHECK(MPI_Isend(buf, 0, MPI_FLOAT, w + 1, PD_TAG_DATA, MPI_COMM_WORLD, &r[2 * w + 1]));
            }
            TRY(pd_comm_waitall(2 * W, r));
            TRY(pd_comm_waitall(W * K, br + W * K));
        } else if (K > 0) {
            CHECK(MPI_Isend(&h, sizeof h, MPI_BYTE, 0, PD_TAG_DATA, MPI_COMM_WORLD, &r[0]));
            CHECK(MPI_Isend(buf, (int)b, MPI_FLOAT, 0, PD_TAG_DATA, MPI_COMM_WORLD, &r[1]));
            CHECK(MPI_Irecv(&hin[0], sizeof h, MPI_BYTE, 0, PD_TAG_DATA, MPI_COMM_WORLD, &r[2]));
            CHECK(MPI_Irecv(in[0], (int)n, MPI_FLOAT, 0, PD_TAG_DATA, MPI_COMM_WORLD, &r[3]));
            br[0] = MPI_REQUEST_NULL;
            for (int j = 0; j < K; j++) {
                size_t a = (size_t)j * b, e = a + b < n ? a + b : n;
                if (j > 0)
                    CHECK(MPI_Isend(buf + a, (int)(e - a), MPI_FLOAT, 0, TAG_PIECE,
                                    MPI_COMM_WORLD, &br[j]));
                CHECK(MPI_Irecv(in[0] + a, (int)(e - a), MPI_FLOAT, 0, TAG_PIECE,
                                MPI_COMM_WORLD, &br[K + j]));
            }
            TRY(pd_comm_waitall(4, r));
            TRY(pd_comm_waitall(2 * K, br));
        } else if (rank == 0) {
            for (int w = 0; w < W; w++) {
                CHECK(MPI_Irecv(&hin[w], sizeof h, MPI_BYTE, w + 1, PD_TAG_DATA, MPI_COMM_WORLD, &r[2 * w]));
                CHECK(MPI_Irecv(in[w], (int)n, MPI_FLOAT, w + 1, PD_TAG_DATA, MPI_COMM_WORLD, &r[2 * w + 1]));
            }
            TRY(pd_comm_waitall(2 * W, r));
            apply_range(ra, in, W, buf, 0, n);
            for (int w = 0; w < W; w++) {
                CHECK(MPI_Isend(&h, sizeof h, MPI_BYTE, w + 1, PD_TAG_DATA, MPI_COMM_WORLD, &r[2 * w]));
                CHECK(MPI_Isend(buf, (int)n, MPI_FLOAT, w + 1, PD_TAG_DATA, MPI_COMM_WORLD, &r[2 * w + 1]));
            }
            TRY(pd_comm_waitall(2 * W, r));
        } else {
            CHECK(MPI_Isend(&h, sizeof h, MPI_BYTE, 0, PD_TAG_DATA, MPI_COMM_WORLD, &r[0]));
            CHECK(MPI_Isend(buf, (int)n, MPI_FLOAT, 0, PD_TAG_DATA, MPI_COMM_WORLD, &r[1]));
            CHECK(MPI_Irecv(&hin[0], sizeof h, MPI_BYTE, 0, PD_TAG_DATA, MPI_COMM_WORLD, &r[2]));
            CHECK(MPI_Irecv(in[0], (int)n, MPI_FLOAT, 0, PD_TAG_DATA, MPI_COMM_WORLD, &r[3]));
            TRY(pd_comm_waitall(4, r));
        }
    }
    free(br);
    return (now() - t0) / (double)rounds;
}

/* The same round without a server rank (training.servers 0, colocated.c):
 * each of the W workers sends every other one its slice of n floats and a
 * header, then every other one its range of the result (point-to-point,
 * sleeping waits), over the workers' communicator; the server rank idles. */
static double coloc_rounds(int rank, MPI_Comm workers, size_t n, long rounds, float *buf,
                           float *out)
{
    sleep_barrier();
    double t0 = now();
    if (rank > 0) {
        int me, W;
        CHECK(MPI_Comm_rank(workers, &me));
        CHECK(MPI_Comm_size(workers, &W));
        MPI_Request r[4 * 64];
        pd_msg_hdr h = {.kind = PD_MSG_GRAD}, hin[64];
        size_t lo = n * (size_t)me / (size_t)W, hi = n * (size_t)(me + 1) / (size_t)W;
        for (long k = 0; k < rounds; k++) {
            int q = 0;
            for (int w = 0; w < W; w++) {
                if (w == me)
                    continue;
                size_t l = n * (size_t)w / (size_t)W, u = n * (size_t)(w + 1) / (size_t)W;
                CHECK(MPI_Irecv(&hin[w], sizeof h, MPI_BYTE, w, 1, workers, &r[q++]));
                CHECK(MPI_Irecv(out + l, (int)(hi - lo), MPI_FLOAT, w, 1, workers, &r[q++]));
                CHECK(MPI_Isend(&h, sizeof h, MPI_BYTE, w, 1, workers, &r[q++]));
                CHECK(MPI_Isend(buf + l, (int)(u - l), MPI_FLOAT, w, 1, workers, &r[q++]));
            }
            TRY(pd_comm_waitall(q, r));
            q = 0;
            for (int w = 0; w < W; w++) {
                if (w == me)
                    continue;
                size_t l = n * (size_t)w / (size_t)W, u = n * (size_t)(w + 1) / (size_t)W;
                CHECK(MPI_Irecv(out + l, (int)(u - l), MPI_FLOAT, w, 2, workers, &r[q++]));
                CHECK(MPI_Isend(buf + lo, (int)(hi - lo), MPI_FLOAT, w, 2, workers, &r[q++]));
            }
            TRY(pd_comm_waitall(q, r));
        }
    }
    double t = (now() - t0) / (double)rounds;
    MPI_Request r;
    CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &r));
    TRY(pd_comm_wait(&r, NULL));
    return t;
}

static double allreduce_rounds(int rank, MPI_Comm workers, size_t n, long rounds, float *buf,
                               float *out)
{
    sleep_barrier();
    double t0 = now();
    if (rank > 0)
        for (long k = 0; k < rounds; k++)
            CHECK(MPI_Allreduce(buf, out, (int)n, MPI_FLOAT, MPI_SUM, workers));
    double t = (now() - t0) / (double)rounds;
    MPI_Request r;   /* the server rank idles, asleep, as a server would */
    CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &r));
    TRY(pd_comm_wait(&r, NULL));
    return t;
}

static int bench_sync(size_t n)
{
    int rank, size;
    CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
    int W = size - 1;
    if (W < 1 || W > 64) {
        fprintf(stderr, "pd_bench sync: run with mpirun -n W+1, 1 <= W <= 64\n");
        return 2;
    }
    size_t bucket = bucket_opt;
    MPI_Comm workers;
    CHECK(MPI_Comm_split(MPI_COMM_WORLD, rank > 0 ? 1 : MPI_UNDEFINED, rank, &workers));
    float *buf = xmalloc(n * sizeof *buf), *out = xmalloc(n * sizeof *out);
    float **in = xmalloc((size_t)W * sizeof *in);
    for (int w = 0; w < W; w++) {
        in[w] = xmalloc(n * sizeof **in);
        memset(in[w], 0, n * sizeof **in);
    }
    fill(buf, n, 9);
    long rounds = 50;
    double *vs = xmalloc((size_t)reps * sizeof *vs), *va = xmalloc((size_t)reps * sizeof *va);
    double *vc = xmalloc((size_t)reps * sizeof *vc), *v1 = xmalloc((size_t)reps * sizeof *v1);
    bool pieces = pieces_of(n, bucket) > 0;
    round_apply ra = {0}, *rap = NULL;
    if (apply_opt && rank == 0) {
        pd_optim_config oc = {.name = PD_OPT_MOMENTUM, .lr = 1e-6, .momentum = NAN, .rho = NAN,
                              .eps = NAN, .beta1 = NAN, .beta2 = NAN,
                              .noise_gamma = 0.55};   /* no weight decay, noise or clipping */
        pd_optim_defaults(&oc);
        TRY(pd_optim_create(&oc, 0, n, 1, &ra.o));
        ra.acc = xmalloc(n * sizeof *ra.acc);
        ra.st = pd_optim_prepare(ra.o, 1, 1.0, 0.0);
        rap = &ra;
    }
    (void)sync_rounds(rank, W, n, 5, buf, in, bucket, rap);   /* warm up every path */
    if (pieces)
        (void)sync_rounds(rank, W, n, 5, buf, in, 0, rap);
    (void)coloc_rounds(rank, workers, n, 5, buf, out);
    (void)allreduce_rounds(rank, workers, n, 5, buf, out);
    /* Round by round, in turn (each round started by a barrier that waits
     * asleep, the order rotated): the load on a shared machine moves in
     * seconds, and hits each of them alike. */
    for (int r = 0; r < reps; r++) {
        double t[4] = {0, 0, 0, 0};
        for (long k = 0; k < rounds; k++)
            for (int j = 0; j < 4; j++) {
                int v = (int)((j + k) % 4);
                if (v == 0)
                    t[0] += sync_rounds(rank, W, n, 1, buf, in, bucket, rap);
                else if (v == 1 && pieces)
                    t[1] += sync_rounds(rank, W, n, 1, buf, in, 0, rap);
                else if (v == 2)
                    t[2] += coloc_rounds(rank, workers, n, 1, buf, out);
                else if (v == 3)
                    t[3] += allreduce_rounds(rank, workers, n, 1, buf, out);
            }
        vs[r] = t[0] / (double)rounds;
        v1[r] = t[1] / (double)rounds;
        vc[r] = t[2] / (double)rounds;
        va[r] = t[3] / (double)rounds;
    }
    if (rank == 1) {
        char name[96];
        const char *what = apply_opt ? "sync_round_apply_us" : "sync_round_us";
        double a = median(va, reps) * 1e6;
        /* lower is better: the ratio is paramd / allreduce */
        if (pieces) {
            snprintf(name, sizeof name, "1 server + W=%d n=%zu pieces of %zu", W, n, bucket);
            emit(what, name, median(vs, reps) * 1e6, a, "us");
            snprintf(name, sizeof name, "1 server + W=%d n=%zu one message", W, n);
            emit(what, name, median(v1, reps) * 1e6, a, "us");
        } else {
            snprintf(name, sizeof name, "1 server + W=%d n=%zu", W, n);
            emit(what, name, median(vs, reps) * 1e6, a, "us");
        }
        snprintf(name, sizeof name, "servers=0 W=%d n=%zu", W, n);
        if (!apply_opt)   /* its rounds do not sum or step */
            emit(what, name, median(vc, reps) * 1e6, a, "us");
    }
    free(v1);
    free(vc);
    free(ra.acc);
    pd_optim_destroy(&ra.o);
    for (int w = 0; w < W; w++)
        free(in[w]);
    free(in);
    free(vs);
    free(va);
    free(buf);
    free(out);
    if (workers != MPI_COMM_NULL)
        CHECK(MPI_Comm_free(&workers));
    return 0;
}

/* Async server loop: take any worker's gradient, step (unless transport
 * only), reply; workers send the next one as soon as the reply is in. Run
 * for about `secs`; gradients per second at the server. Sparse: 1% of the
 * coordinates as (index, value) pairs, the reply the values pulled at the
 * same indices. */
static double server_loop(int rank, int W, size_t n, bool sparse, bool step, double secs)
{
    size_t k = sparse ? (n + 99) / 100 : n;
    size_t bytes = sparse ? 8 * k : 4 * n;
    int count = (int)bytes;
    double rate = 0;
    CHECK(MPI_Barrier(MPI_COMM_WORLD));
    if (rank == 0) {
        pd_optim_config oc = {.name = PD_OPT_SGD, .lr = 1e-6, .momentum = NAN, .rho = NAN,
                              .eps = NAN, .beta1 = NAN, .beta2 = NAN,
                              .noise_gamma = 0.55};   /* no weight decay, noise or clipping */
        pd_optim_defaults(&oc);
        pd_optim *o = NULL;
        TRY(pd_optim_create(&oc, 0, n, 1, &o));
        float *theta = xmalloc(n * sizeof *theta), *reply = xmalloc(n * sizeof *reply);
        fill(theta, n, 1);
        uint8_t **in = xmalloc((size_t)W * sizeof *in);
        MPI_Request *r = xmalloc((size_t)W * sizeof *r), sr[64];
        for (int w = 0; w < W; w++) {
            in[w] = xmalloc(bytes);
            CHECK(MPI_Irecv(in[w], count, MPI_BYTE, w + 1, PD_TAG_DATA, MPI_COMM_WORLD, &r[w]));
            sr[w] = MPI_REQUEST_NULL;
        }
        long got = 0;
        int64_t t = 0;
        double t0 = now(), end = t0 + secs;
        int live = W;
        while (live > 0) {
            int w;
            TRY(pd_comm_waitany(W, r, &w, MPI_STATUS_IGNORE, NULL, INFINITY));
            got++;
            if (step) {
                pd_optim_grad g = {.g = (const float *)in[w], .lo = 0, .hi = n};
                if (sparse)
                    g = (pd_optim_grad){.idx = (const uint32_t *)in[w],
                                        .val = (const float *)(in[w] + 4 * k), .nnz = k};
                pd_optim_take_step(o, ++t, 1.0, 0.0, theta, &g);
            }
            TRY(pd_comm_wait(&sr[w], NULL));
            bool stop = now() >= end;
            const float *src = theta;
            if (sparse) {
                const uint32_t *idx = (const uint32_t *)in[w];
                for (size_t j = 0; j < k; j++)
                    reply[j] = theta[idx[j]];
                src = reply;
            }
            CHECK(MPI_Isend(src, stop ? 0 : (int)k, MPI_FLOAT, w + 1, PD_TAG_DATA, MPI_COMM_WORLD, &sr[w]));
            if (stop)
                live--;
            else
                CHECK(MPI_Irecv(in[w], count, MPI_BYTE, w + 1, PD_TAG_DATA, MPI_COMM_WORLD, &r[w]));
        }
        rate = (double)got / (now() - t0);
        for (int w = 0; w < W; w++) {
            TRY(pd_comm_wait(&sr[w], NULL));
            free(in[w]);
        }
        free(in);
        free(r);
        free(theta);
        free(reply);
        pd_optim_destroy(&o);
    } else {
        uint8_t *g = xmalloc(bytes);
        float *back = xmalloc(k * sizeof *back);
        if (sparse) {
            uint32_t *idx = (uint32_t *)g;
            for (size_t j = 0; j < k; j++)
                idx[j] = (uint32_t)(j * (n / k) + (size_t)rank % (n / k));
            fill((float *)(g + 4 * k), k, (unsigned)rank);
        } else {
            fill((float *)g, n, (unsigned)rank);
        }
        for (;;) {
            MPI_Request r[2];
            MPI_Status st;
            CHECK(MPI_Isend(g, count, MPI_BYTE, 0, PD_TAG_DATA, MPI_COMM_WORLD, &r[0]));
            CHECK(MPI_Irecv(back, (int)k, MPI_FLOAT, 0, PD_TAG_DATA, MPI_COMM_WORLD, &r[1]));
            TRY(pd_comm_wait(&r[0], NULL));
            TRY(pd_comm_wait(&r[1], &st));
            int got;
            CHECK(MPI_Get_count(&st, MPI_FLOAT, &got));
            if (got == 0)
                break;
        }
        free(g);
        free(back);
    }
    CHECK(MPI_Bcast(&rate, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    return rate;
}

static int bench_server(size_t n, bool sparse)
{
    int rank, size;
    CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
    int W = size - 1;
    if (W < 1 || W > 64) {
        fprintf(stderr, "pd_bench server: run with mpirun -n W+1, 1 <= W <= 64\n");
        return 2;
    }
    double *vs = xmalloc((size_t)reps * sizeof *vs), *vt = xmalloc((size_t)reps * sizeof *vt);
    for (int r = 0; r < reps; r++) {
        vs[r] = server_loop(rank, W, n, sparse, true, round_s);
        vt[r] = server_loop(rank, W, n, sparse, false, round_s);
    }
    if (rank == 0) {
        char name[64];
        snprintf(name, sizeof name, "%s n=%zu W=%d", sparse ? "sparse1%" : "dense", n, W);
        emit("server_grads_per_s", name, median(vs, reps), median(vt, reps), "grad/s");
    }
    free(vs);
    free(vt);
    return 0;
}

static int bench_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        perror("pd_bench: getrusage");
        return 1;
    }
    printf("{\"figure\": \"fixed_rss_kb\", \"value\": %ld}\n", ru.ru_maxrss);
    return 0;
}

int main(int argc, char **argv)
{
    int nargs = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--apply")) {
            if (nargs == argc)
                nargs = i;
            apply_opt = true;
            continue;
        }
        if (!strcmp(argv[i], "--cpu")) {
            if (nargs == argc)
                nargs = i;
            cpu_clock = true;
            continue;
        }
        if (i + 1 < argc && (!strcmp(argv[i], "--reps") || !strcmp(argv[i], "--seconds") ||
                             !strcmp(argv[i], "--bucket"))) {
            if (nargs == argc)
                nargs = i;
            if (!strcmp(argv[i], "--reps"))
                reps = atoi(argv[i + 1]);
            else if (!strcmp(argv[i], "--bucket"))
                bucket_opt = (size_t)atol(argv[i + 1]);
            else
                round_s = atof(argv[i + 1]);
            i++;
        }
    }
    if (reps < 1 || !(round_s > 0)) {
        fprintf(stderr, "pd_bench: --reps must be >= 1 and --seconds > 0\n");
        return 2;
    }
    const char *cmd = nargs > 1 ? argv[1] : "";
    if (!strcmp(cmd, "gemm") && nargs == 4)
        return bench_gemm((size_t)atol(argv[2]), argv[3]);
    if (!strcmp(cmd, "optim") && nargs == 3)
        return bench_optim((size_t)atol(argv[2]));
    bool mpi = (!strcmp(cmd, "sync") && nargs == 3) ||
               (!strcmp(cmd, "server") && nargs == 4) || (!strcmp(cmd, "rss") && nargs == 2);
    if (!mpi) {
        fprintf(stderr, "usage: pd_bench gemm B H1,H2,.. | optim N | sync N | "
                        "server N dense|sparse | rss  [--reps R] [--seconds S] [--bucket B] "
                        "[--apply] [--cpu]\n");
        return 2;
    }
    if (cpu_clock) {
        fprintf(stderr, "pd_bench: --cpu times gemm and optim only (%s waits for other ranks: "
                        "wall clock)\n", cmd);
        return 2;
    }
    int provided;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS)
        return 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rc;
    if (!strcmp(cmd, "rss"))
        rc = bench_rss();
    else if (!strcmp(cmd, "sync"))
        rc = bench_sync((size_t)atol(argv[2]));
    else
        rc = bench_server((size_t)atol(argv[2]), !strcmp(argv[3], "sparse"));
    MPI_Finalize();
    return rc;
}
