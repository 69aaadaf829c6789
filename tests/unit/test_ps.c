/* The parts of ps that need no running MPI job: the async trace file
 * (format, round trip, every way a damaged one is refused) and how
 * parameters are split over servers, a straggler's pacing arithmetic, a
 * worker's state as bytes (with a local optimizer carried through a phase
 * without one). The roles themselves are tested as
 * processes under mpirun (tests/integration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "comm.h"
#include "pace.h"
#include "paramd/error.h"
#include "paramd/le.h"
#include "trace.h"
#include "paramd/optim.h"
#include "optim_cfg.h"

static const pd_trace_rec RECS[] = {
    {0, PD_TRACE_APPLIED, 0, 0, 1},
    {1, PD_TRACE_APPLIED, 0, 0, 2},
    {0, PD_TRACE_DROPPED, 1, 1, -1},
    {1, PD_TRACE_BAD, 1, 2, -1},
};
enum { NRECS = sizeof RECS / sizeof *RECS };

static int setup_dir(void **state)
{
    static char dir[64];
    strcpy(dir, "/tmp/paramd-test-ps-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    *state = dir;
    return 0;
}

static int teardown_dir(void **state)
{
    char path[128];
    snprintf(path, sizeof path, "%s/trace.bin", (char *)*state);
    unlink(path);
    return rmdir(*state);
}

static void write_trace(const char *dir, uint64_t count)
{
    FILE *f;
    assert_int_equal(pd_trace_open(dir, 2, &f), PD_OK);
    for (int i = 0; i < NRECS; i++)
        assert_int_equal(pd_trace_append(f, &RECS[i]), PD_OK);
    assert_int_equal(pd_trace_close(&f, dir, count), PD_OK);
    assert_null(f);
}

/* Read the file's bytes, let edit change them, write them back. */
static void patch(const char *dir, void (*edit)(unsigned char *buf, size_t *n))
{
    char path[128];
    snprintf(path, sizeof path, "%s/trace.bin", dir);
    unsigned char buf[1024];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    edit(buf, &n);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static void expect_refused(const char *dir, const char *words)
{
    int workers = -1;
    pd_trace_rec *recs = (pd_trace_rec *)1;
    size_t n = 99;
    pd_err_clear();
    assert_int_equal(pd_trace_read(dir, &workers, &recs, &n), PD_EINPUT);
    assert_null(recs);
    assert_int_equal(n, 0);
    if (!strstr(pd_err_msg(), words) || !strstr(pd_err_msg(), dir))
        fail_msg("message %s lacks \"%s\" or the path", pd_err_msg(), words);
}

/* The documented layout, byte for byte: 24-byte header, 32-byte records,
 * little-endian (this test runs on x86-64). */
static void test_trace_layout(void **state)
{
    const char *dir = *state;
    write_trace(dir, NRECS);
    char path[128];
    snprintf(path, sizeof path, "%s/trace.bin", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char b[24 + 32 * NRECS + 1];
    assert_int_equal(fread(b, 1, sizeof b, f), 24 + 32 * NRECS);
    fclose(f);
    assert_memory_equal(b, "PDTRACE1", 8);
    assert_int_equal(b[8], 1);      /* format version */
    assert_int_equal(b[12], 2);     /* workers */
    assert_int_equal(b[16], NRECS); /* records */
    const unsigned char *r = b + 24 + 32 * 2;   /* the dropped record */
    assert_int_equal(r[0], 0);      /* worker */
    assert_int_equal(r[4], PD_TRACE_DROPPED);
    assert_int_equal(r[8], 1);      /* seq */
    assert_int_equal(r[16], 1);     /* computed at */
    for (int i = 24; i < 32; i++)
        assert_int_equal(r[i], 0xff);   /* made -1 */
}

static void test_trace_round_trip(void **state)
{
    const char *dir = *state;
    write_trace(dir, NRECS);
    int workers;
    pd_trace_rec *recs;
    size_t n;
    assert_int_equal(pd_trace_read(dir, &workers, &recs, &n), PD_OK);
    assert_int_equal(workers, 2);
    assert_int_equal(n, NRECS);
    assert_memory_equal(recs, RECS, sizeof RECS);
    free(recs);
}

static void chop(unsigned char *buf, size_t *n)
{
    (void)buf;
    *n -= 10;
}

static void bad_magic(unsigned char *buf, size_t *n)
{
    (void)n;
    buf[2] = 'X';
}

static void version_2(unsigned char *buf, size_t *n)
{
    (void)n;
    buf[8] = 2;
}

/* trace.bin appears only whole: under a temporary name until closed, and
 * an aborted trace leaves nothing behind. */
static void test_trace_atomic(void **state)
{
    const char *dir = *state;
    char path[128], tmp[128];
    snprintf(path, sizeof path, "%s/trace.bin", dir);
    snprintf(tmp, sizeof tmp, "%s/trace.bin.tmp.%ld", dir, (long)getpid());
    FILE *f;
    assert_int_equal(pd_trace_open(dir, 2, &f), PD_OK);
    assert_int_equal(pd_trace_append(f, &RECS[0]), PD_OK);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(access(tmp, F_OK), 0);
    pd_trace_abort(&f, dir);
    assert_null(f);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(access(path, F_OK), -1);
    write_trace(dir, NRECS);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(access(path, F_OK), 0);
}

/* Sleeps nanosleep refuses end at once instead of being retried forever
 * (a NaN delay used to spin: the old loop retried on every error). */
static void test_sleep_refused(void **state)
{
    (void)state;
    assert_int_equal(pd_sleep_s(NAN), 0);
    assert_int_equal(pd_sleep_s(-1), 0);
    assert_int_equal(pd_sleep_s(1e300), EINVAL);
    assert_int_equal(pd_sleep_s(0.001), 0);
}

static void test_trace_refused(void **state)
{
    const char *dir = *state;
    /* a run that died: the header still says 0 records */
    write_trace(dir, 0);
    expect_refused(dir, "truncated or unfinished: the header says 0 records");
    write_trace(dir, NRECS);
    patch(dir, chop);
    expect_refused(dir, "truncated or unfinished");
    write_trace(dir, NRECS);
    patch(dir, bad_magic);
    expect_refused(dir, "not a paramd trace (bad magic)");
    write_trace(dir, NRECS);
    patch(dir, version_2);
    expect_refused(dir, "trace format version 2, this paramd reads 1");
    char path[128];
    snprintf(path, sizeof path, "%s/trace.bin", dir);
    unlink(path);
    expect_refused(dir, "was the run made with training.trace: true?");
}

/* RECS with record i replaced by r. */
static void write_with(const char *dir, int i, pd_trace_rec r)
{
    FILE *f;
    assert_int_equal(pd_trace_open(dir, 2, &f), PD_OK);
    for (int k = 0; k < NRECS; k++)
        assert_int_equal(pd_trace_append(f, k == i ? &r : &RECS[k]), PD_OK);
    assert_int_equal(pd_trace_close(&f, dir, NRECS), PD_OK);
}

static void huge_workers(unsigned char *buf, size_t *n)
{
    (void)n;
    memset(buf + 12, 0xff, 4);   /* 4294967295 workers: negative as an int */
}

/* Records no run writes are refused by the reader, so replay never sees
 * them (a `from` of INT64_MIN overflowed replay's staleness arithmetic;
 * found by tests/fuzz, fuzz_trace). */
static void test_trace_impossible_records(void **state)
{
    const char *dir = *state;
    write_with(dir, 1, (pd_trace_rec){2, PD_TRACE_APPLIED, 0, 0, 2});
    expect_refused(dir, "record 1: worker 2 of 2");
    write_with(dir, 3, (pd_trace_rec){1, 0, 1, 2, -1});
    expect_refused(dir, "record 3: outcome 0 is not 1, 2 or 3");
    write_with(dir, 1, (pd_trace_rec){1, PD_TRACE_APPLIED, 0, INT64_MIN, 2});
    expect_refused(dir, "record 1: gradient 0, version -9223372036854775808 -> 2 is not a "
                        "possible record");
    write_with(dir, 2, (pd_trace_rec){0, PD_TRACE_DROPPED, 1, 1, 3});
    expect_refused(dir, "record 2: gradient 1, version 1 -> 3 is not a possible record");
    write_with(dir, 0, (pd_trace_rec){0, PD_TRACE_APPLIED, -5, 0, 1});
    expect_refused(dir, "record 0: gradient -5");
    write_trace(dir, NRECS);
    patch(dir, huge_workers);
    expect_refused(dir, "4294967295 workers is more than an MPI job can have");
}

/* Server ranges: contiguous, covering [0, n) in order, sizes within one. */
static void test_server_ranges(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 2, 7, 1001, 7850, 247434};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        for (int S = 1; S <= 5; S++) {
            size_t next = 0, smallest = n, largest = 0;
            for (int s = 0; s < S; s++) {
                size_t lo, hi;
                pd_server_range(n, S, s, &lo, &hi);
                assert_int_equal(lo, next);
                assert_true(hi >= lo);
                smallest = hi - lo < smallest ? hi - lo : smallest;
                largest = hi - lo > largest ? hi - lo : largest;
                next = hi;
            }
            assert_int_equal(next, n);
            assert_true(largest - smallest <= 1);
        }
    }
    size_t lo, hi;
    pd_server_range(1001, 2, 1, &lo, &hi);   /* README: the bias is on server 1 */
    assert_int_equal(lo, 500);
    assert_int_equal(hi, 1001);
}

/* Doubles within eps, both printed on failure (CMocka 1.1.5 has floats only). */
static void near(double got, double want, double eps, int line)
{
    if (fabs(got - want) <= eps)
        return;
    print_error("got %.17g, want %.17g (line %d)\n", got, want, line);
    fail();
}
#define assert_near(got, want) near((got), (want), 1e-15, __LINE__)

/* The cycle window: mean and median of the last PD_PACE_WINDOW. */
static void test_pace_cycles(void **state)
{
    (void)state;
    pd_cycles c = {0};
    assert_true(pd_cycles_mean(&c) == 0 && pd_cycles_median(&c) == 0);
    pd_cycles_add(&c, 3);
    pd_cycles_add(&c, 1);
    pd_cycles_add(&c, 2);
    assert_true(pd_cycles_mean(&c) == 2 && pd_cycles_median(&c) == 2);
    pd_cycles_add(&c, 10);
    assert_true(pd_cycles_mean(&c) == 4 && pd_cycles_median(&c) == 2.5);
    pd_cycles_add(&c, -1);   /* clock trouble: never negative */
    assert_true(pd_cycles_median(&c) == 2);
    c = (pd_cycles){0};
    for (int i = 1; i <= PD_PACE_WINDOW + 8; i++)   /* keeps 9 .. 40 */
        pd_cycles_add(&c, i);
    assert_true(pd_cycles_mean(&c) == 24.5 && pd_cycles_median(&c) == 24.5);
}

/* Pads by hand, factor 3: budget 3 x unslowed, minus the expected unpadded
 * time (median of its own cycles, sleep and holds left out), plus the debt
 * (budgets minus the cycles' times, holds left out). */
static void test_pace_pad(void **state)
{
    (void)state;
    pd_pace p;
    pd_pace_init(&p, 3, false);
    assert_true(pd_pace_pad(&p, 0.001, 0) == 0);    /* nothing known: no pad */
    pd_pace_cycle(&p, 0.010, 0, 0.004);            /* own 0.006, held 0.004 */
    assert_true(p.debt == 0);
    assert_near(pd_pace_pad(&p, 0.001, 0.005), 0.015 - 0.006);
    pd_pace_cycle(&p, 0.017, 0.011, 0);            /* overslept: took 0.017 of 0.015 */
    assert_near(p.debt, -0.002);
    assert_near(pd_pace_pad(&p, 0.001, 0.005), 0.015 - 0.006 - 0.002);
    pd_pace_cycle(&p, 0.513, 0.007, 0.5);          /* held 0.5: not its time */
    assert_near(p.debt, -0.002 + 0.015 - 0.013);
    /* No unslowed worker known: its own median is the unslowed time. */
    assert_near(pd_pace_pad(&p, 0.001, 0), 3 * 0.006 - 0.006);
    pd_pace_cycle(&p, 10, 0, 0);                   /* preempted: the debt is capped */
    assert_near(p.debt, -PD_PACE_DEBT * 0.018);
    assert_true(pd_pace_pad(&p, 0.001, 0.005) == 0);

    pd_pace_init(&p, 4, true);                     /* slow_basis: compute */
    assert_near(pd_pace_pad(&p, 0.002, 0.5), 0.006);
    pd_pace_init(&p, 1, false);                    /* not slowed */
    pd_pace_cycle(&p, 0.010, 0, 0);
    assert_true(pd_pace_pad(&p, 0.002, 0.5) == 0);
}

/* ---- a worker's state ------------------------------------------------------ */

/* A phase without a local optimizer after a local_sgd or easgd phase
 * (training.phases): the worker's state carries that phase's local
 * optimizer as its pd_optim_save bytes, exactly where the live optimizer's
 * go (paramd/ckpt.h's RUNS worker state), and a resumed worker takes them
 * back; a state without them is refused for such a worker, and one with
 * them for a worker that carries none. */
static void test_worker_state_carried(void **state)
{
    (void)state;
    float x[6] = {0, 1, 2, 3, 4, 5}, y[6] = {0, 1, 0, 1, 0, 1};
    size_t id[6] = {0, 1, 2, 3, 4, 5};
    pd_dataset ds = {.n = 6, .d = 1, .x = x, .y = y, .id = id};
    pd_learner l = {.examples = 4};
    assert_int_equal(pd_iter_create(&ds, 2, PD_SHUFFLE_EVERY_EPOCH, false, 3, 0, &l.iter), PD_OK);
    const size_t *rows;
    size_t k;
    assert_true(pd_iter_next(l.iter, &rows, &k));
    assert_true(pd_iter_next(l.iter, &rows, &k));

    /* The local optimizer of the local phase, with some state. */
    pd_optim_config oc = test_optim_config(PD_OPT_MOMENTUM);
    oc.lr = 0.5;
    pd_optim *o;
    assert_int_equal(pd_optim_create(&oc, 0, 3, 1, &o), PD_OK);
    float th[3] = {0}, g[3] = {1, 2, 3};
    pd_optim_step st = pd_optim_prepare(o, 1, 1, 0);
    pd_optim_apply(o, &st, th, g, 0, 3);
    size_t osz = pd_optim_state_size(o);
    unsigned char *saved = malloc(osz);
    assert_non_null(saved);
    assert_int_equal(pd_optim_save(o, saved, osz), PD_OK);

    /* The local phase's state, and the next phase's carrying those bytes:
     * the same bytes. */
    pd_rng rng = pd_rng_make(3, PD_STREAM_FAULTS, 2);
    pd_worker_state live = {.l = &l, .local = o, .seq = 7, .local_t = 12, .rng = rng};
    pd_worker_state carry = {.l = &l, .seq = 7, .local_t = 12, .rng = rng, .carries = true,
                             .carried = saved, .carried_size = osz};
    unsigned char *b1, *b2;
    size_t n1, n2;
    assert_int_equal(pd_worker_state_pack(&live, &b1, &n1), PD_OK);
    assert_int_equal(pd_worker_state_pack(&carry, &b2, &n2), PD_OK);
    size_t isz = pd_iter_state_size(l.iter);
    assert_int_equal(n2, 8 + isz + PD_CKPT_WSTATE + osz);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n2);
    assert_int_equal(pd_le_get64(b2 + 8 + isz + 16), 12);     /* local steps */
    assert_int_equal(pd_le_get64(b2 + 8 + isz + 64), osz);    /* L */
    assert_memory_equal(b2 + 8 + isz + PD_CKPT_WSTATE, saved, osz);

    /* Resumed in the phase without one: the bytes back, with the rest. */
    pd_learner l2 = {0};
    assert_int_equal(pd_iter_create(&ds, 2, PD_SHUFFLE_EVERY_EPOCH, false, 3, 0, &l2.iter),
                     PD_OK);
    pd_worker_state back = {.l = &l2, .lw = &l2, .carries = true};
    assert_int_equal(pd_worker_state_unpack(&back, b2, n2), PD_OK);
    assert_int_equal(back.carried_size, osz);
    assert_memory_equal(back.carried, saved, osz);
    assert_int_equal(back.seq, 7);
    assert_int_equal(back.local_t, 12);
    assert_int_equal(l2.examples, 4);
    assert_memory_equal(back.rng.s, rng.s, sizeof rng.s);
    const size_t *r1, *r2;
    size_t k1, k2;
    assert_true(pd_iter_next(l.iter, &r1, &k1));
    assert_true(pd_iter_next(l2.iter, &r2, &k2));
    assert_int_equal(k1, k2);
    assert_memory_equal(r1, r2, k1 * sizeof *r1);
    free(back.carried);

    /* A worker that carries none refuses them; one that carries refuses a
     * state without them. */
    pd_worker_state none = {.l = &l2, .lw = &l2};
    pd_err_clear();
    assert_int_equal(pd_worker_state_unpack(&none, b2, n2), PD_EINPUT);
    char want[160];
    snprintf(want, sizeof want, "worker state: %zu bytes of local optimizer and model, this "
             "worker's are 0", osz);
    assert_non_null(strstr(pd_err_msg(), want));
    pd_worker_state bare = {.l = &l, .seq = 7, .local_t = 12, .rng = rng};
    unsigned char *b3;
    size_t n3;
    assert_int_equal(pd_worker_state_pack(&bare, &b3, &n3), PD_OK);
    pd_worker_state want_one = {.l = &l2, .lw = &l2, .carries = true};
    pd_err_clear();
    assert_int_equal(pd_worker_state_unpack(&want_one, b3, n3), PD_EINPUT);
    assert_non_null(strstr(pd_err_msg(), "worker state: no local optimizer of the earlier "
                           "local_sgd or easgd phase"));
    assert_null(want_one.carried);

    free(b1);
    free(b2);
    free(b3);
    free(saved);
    pd_optim_destroy(&o);
    pd_iter_destroy(&l.iter);
    pd_iter_destroy(&l2.iter);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_trace_layout, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_trace_round_trip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_trace_refused, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_trace_atomic, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_trace_impossible_records, setup_dir, teardown_dir),
        cmocka_unit_test(test_server_ranges),
        cmocka_unit_test(test_sleep_refused),
        cmocka_unit_test(test_pace_cycles),
        cmocka_unit_test(test_pace_pad),
        cmocka_unit_test(test_worker_state_carried),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
