/* The phase module without a job: the configuration each phase runs with
 * (max_updates counted from the phase's start), the roles called in order
 * with the carry's index, the first error ending the sequence, and the
 * hand-over freed through its callbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>

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
    assert_int_equal(sv->c.version, 100 * c->index);   /* what the last phase left */
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
    assert_int_equal(pd_phase_run(&run, role, &s), PD_OK);
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
    assert_int_equal(pd_phase_run(&run, role, &f), PD_ETRAIN);
    assert_int_equal(f.calls, 2);   /* phase 2 never starts */
    assert_int_equal(freed, 2);     /* phase 0's hand-over freed all the same */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
