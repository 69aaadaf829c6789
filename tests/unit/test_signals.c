/* The signal module: what each signal records, once. Signals are raised in
 * this process after pd_signals_install; raise() runs the handler before it
 * returns, so each check sees the handler's effect. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "check.h"
#include "paramd/error.h"
#include "paramd/signals.h"

static void first_stop_counts(void **state)
{
    (void)state;
    assert_int_equal(pd_signals_install(), PD_OK);
    assert_int_equal(pd_signals_stop(), 0);
    assert_int_equal(raise(SIGTERM), 0);
    assert_int_equal(pd_signals_stop(), SIGTERM);
    /* A repeat, or another stop signal, changes nothing (and kills nothing). */
    assert_int_equal(raise(SIGTERM), 0);
    assert_int_equal(raise(SIGINT), 0);
    assert_int_equal(pd_signals_stop(), SIGTERM);
    assert_false(pd_signals_take_checkpoint());
}

static void sigint_and_sigusr2_stop(void **state)
{
    (void)state;
    assert_int_equal(pd_signals_install(), PD_OK);
    assert_int_equal(raise(SIGINT), 0);
    assert_int_equal(pd_signals_stop(), SIGINT);
    assert_int_equal(pd_signals_install(), PD_OK);   /* forgets earlier arrivals */
    assert_int_equal(pd_signals_stop(), 0);
    assert_int_equal(raise(SIGUSR2), 0);
    assert_int_equal(pd_signals_stop(), SIGUSR2);
}

static void sigusr1_asks_one_checkpoint(void **state)
{
    (void)state;
    assert_int_equal(pd_signals_install(), PD_OK);
    assert_false(pd_signals_take_checkpoint());
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(raise(SIGUSR1), 0);
    /* Two before the checkpointing thread looked: one checkpoint. */
    assert_true(pd_signals_take_checkpoint());
    assert_false(pd_signals_take_checkpoint());
    assert_int_equal(raise(SIGUSR1), 0);
    assert_true(pd_signals_take_checkpoint());
    assert_false(pd_signals_take_checkpoint());
    assert_int_equal(pd_signals_stop(), 0);
}

static void names(void **state)
{
    (void)state;
    assert_str(pd_signals_name(SIGTERM), "SIGTERM");
    assert_str(pd_signals_name(SIGINT), "SIGINT");
    assert_str(pd_signals_name(SIGUSR1), "SIGUSR1");
    assert_str(pd_signals_name(SIGUSR2), "SIGUSR2");
    assert_str(pd_signals_name(SIGHUP), "signal");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_stop_counts),
        cmocka_unit_test(sigint_and_sigusr2_stop),
        cmocka_unit_test(sigusr1_asks_one_checkpoint),
        cmocka_unit_test(names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
