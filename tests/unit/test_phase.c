/* The phase module without a job: the configuration each phase runs with
 * (max_updates counted from the phase's start), the roles called in order
 * with the carry's index, the first error ending the sequence, and the
 * hand-over freed through its callbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "paramd/config.h"
#include "paramd/error.h"
#include "paramd/phase.h"

static const char *const yaml =
    "training:\n  phases:\n"
    "    - {mode: sync, max_updates: 30}\n"
    "    - {mode: async, epochs: 2, optimizer: {lr: 0.5}}\n"
    "    - {mode: local_sgd, max_updates: 7, local_steps: 3}\n";

static void test_config(void **state)
{
    (void)state;
    pd_config run, pc;
    assert_int_equal(pd_config_load_string("x.yaml", yaml, NULL, 0, &run), PD_OK);
    assert_int_equal(run.training.n_phases, 3);
    assert_int_equal(pd_phase_config(&run, 0, 0, &pc), PD_OK);
    assert_int_equal(pc.training.mode, PD_MODE_SYNC);
    assert_int_equal(pc.training.max_updates, 30);
    assert_int_equal(pc.training.n_phases, 0);
    assert_int_equal(pd_phase_config(&run, 1, 30, &pc), PD_OK);
    assert_int_equal(pc.training.mode, PD_MODE_ASYNC);
    assert_int_equal(pc.training.max_updates, 0);   /* no limit stays none */
    assert_int_equal(pc.training.epochs, 2);
    assert_true(pc.optimizer.lr == 0.5);
    assert_int_equal(pd_phase_config(&run, 2, 1234, &pc), PD_OK);
    assert_int_equal(pc.training.max_updates, 1241);   /* 7 more from update 1234 */
    assert_int_equal(pc.training.local_steps, 3);
}

static int freed;
static void count_free(void *p)
{
    free(p);
    freed++;
}

typedef struct seen {
    int calls, index[8], count;
    int64_t max_updates[8];
    int fail_at;
} seen;

/* A server role: counts 100 updates a phase, and hands a learner-like and
 * an evaluator-like object on. */
static int role(const pd_config *cfg, pd_phase_carry *c, void *ctx)
{
    seen *s = ctx;
    s->index[s->calls] = c->index;
    s->max_updates[s->calls++] = cfg->training.max_updates;
    s->count = c->count;
    if (c->index == s->fail_at)
        return PD_FAIL(PD_ETRAIN, "phase %d fails", c->index);
    pd_phase_server *sv;
    pd_phase_worker *wk;
    assert_int_equal(pd_phase_server_get(c, &sv), PD_OK);
    assert_int_equal(pd_phase_worker_get(c, &wk), PD_OK);
    if (!c->record)
        assert_int_equal(sv->c.version, 100 * c->index);   /* what the last phase left */
    else
        sv->c.version = c->record->start.update;
    sv->c.version += 100;
    if (!sv->evaluator) {
        sv->evaluator = malloc(8);
        sv->evaluator_free = count_free;
        wk->learner = malloc(8);
        wk->learner_free = count_free;
    }
    return PD_OK;
}

static void test_run(void **state)
{
    (void)state;
    pd_config run;
    assert_int_equal(pd_config_load_string("x.yaml", yaml, NULL, 0, &run), PD_OK);
    seen s = {.fail_at = -1};
    freed = 0;
    assert_int_equal(pd_phase_run(&run, NULL, role, &s), PD_OK);
    assert_int_equal(s.calls, 3);
    assert_int_equal(s.count, 3);
    assert_int_equal(s.index[0], 0);
    assert_int_equal(s.index[2], 2);
    assert_int_equal(s.max_updates[0], 30);
    assert_int_equal(s.max_updates[1], 0);
    assert_int_equal(s.max_updates[2], 207);   /* from the 200 updates of phases 0 and 1 */
    assert_int_equal(freed, 2);

    seen f = {.fail_at = 1};
    freed = 0;
    assert_int_equal(pd_phase_run(&run, NULL, role, &f), PD_ETRAIN);
    assert_int_equal(f.calls, 2);   /* phase 2 never starts */
    assert_int_equal(freed, 2);     /* phase 0's hand-over freed all the same */
}

/* --resume: the sequence starts at the record's phase, its max_updates
 * counted from the record's start; the record is the first phase's only. */
static int resumed_role(const pd_config *cfg, pd_phase_carry *c, void *ctx)
{
    seen *s = ctx;
    assert_true(c->resumed);
    assert_true((c->record != NULL) == (s->calls == 0));
    return role(cfg, c, ctx);
}

static void test_resume(void **state)
{
    (void)state;
    pd_config run;
    assert_int_equal(pd_config_load_string("x.yaml", yaml, NULL, 0, &run), PD_OK);
    int64_t base[2] = {1, 2};
    pd_phase_record rec = {.index = 2, .count = 3, .workers = 2, .start = {.update = 500},
                           .epoch_base = base};
    seen s = {.fail_at = -1};
    assert_int_equal(pd_phase_run(&run, &rec, resumed_role, &s), PD_OK);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.index[0], 2);
    assert_int_equal(s.max_updates[0], 507);
}

/* The record's bytes, field by field where it matters, and back. */
static void test_record(void **state)
{
    (void)state;
    int64_t base[3] = {0, 4, 5};
    pd_phase_record r = {.index = 1, .count = 2, .workers = 3, .epoch_base = base,
                         .start = {.update = 938, .epoch = 1.5, .wall_s = 2.25, .sent = 1900,
                                   .applied = 1876, .dropped = 20, .bad = 4, .stale = 17},
                         .n_done = 1};
    r.done[0] = (pd_phase_summary){.index = 0, .mode = "async", .exit = "max_updates",
                                   .first_update = 0, .last_update = 938, .epochs = 1.5,
                                   .wall_s = 2.25, .sent = 1900, .applied = 1876,
                                   .dropped = 20, .bad = 4, .staleness_mean = 0.5,
                                   .valid_loss = 0.25, .valid_acc = 0.75, .test_loss = 0.125,
                                   .test_acc = 0.875};
    unsigned char *b;
    size_t n;
    assert_int_equal(pd_phase_record_encode(&r, &b, &n), PD_OK);
    assert_int_equal(n, 24 + 64 + 3 * 8 + 8 + 128 + 8);
    assert_memory_equal(b, "PDPHASE\n\1\0\0\0\1\0\0\0\2\0\0\0\3\0\0\0", 24);
    assert_int_equal(b[24], 938 % 256);
    assert_int_equal(b[25], 938 / 256);
    assert_int_equal(b[88 + 8], 4);                       /* worker 1's epochs */
    assert_int_equal(b[112], 1);                          /* one finished phase */
    assert_int_equal(b[120 + 4], PD_MODE_ASYNC);
    assert_string_equal((const char *)b + 120 + 8, "max_updates");
    pd_phase_record d;
    assert_int_equal(pd_phase_record_decode("r", b, n, &d), PD_OK);
    assert_int_equal(d.index, 1);
    assert_int_equal(d.workers, 3);
    assert_int_equal(d.epoch_base[2], 5);
    assert_true(d.start.epoch == 1.5 && d.start.stale == 17 && d.start.sent == 1900);
    assert_int_equal(d.n_done, 1);
    assert_string_equal(d.done[0].mode, "async");
    assert_string_equal(d.done[0].exit, "max_updates");
    assert_true(d.done[0].test_acc == 0.875 && d.done[0].applied == 1876);
    pd_phase_record_free(&d);
    b[100] ^= 1;   /* any flipped bit: the crc32 */
    assert_int_equal(pd_phase_record_decode("r", b, n, &d), PD_EINPUT);
    assert_non_null(strstr(pd_err_msg(), "r: bad crc32"));
    assert_int_equal(pd_phase_record_decode("r", b, n - 1, &d), PD_EINPUT);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
