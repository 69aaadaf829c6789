/* Error codes, messages, traces and exit statuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "paramd/error.h"

static int inner(int x)
{
    if (x < 0)
        return PD_FAIL(PD_EINPUT, "x: must be >= 0, got %d", x);
    return PD_OK;
}

static int outer(int x)
{
    PD_TRY(inner(x));
    return PD_OK;
}

static int with_cleanup(int x, int *cleaned)
{
    int err = PD_OK;
    PD_TRY_GOTO(err, inner(x), out);
out:
    *cleaned = 1;
    return err;
}

static void test_message_and_trace(void **state)
{
    (void)state;
    pd_err_clear();
    assert_string_equal(pd_err_msg(), "");
    assert_int_equal(outer(1), PD_OK);
    assert_int_equal(outer(-3), PD_EINPUT);
    assert_string_equal(pd_err_msg(), "x: must be >= 0, got -3");
    /* Two frames: where it failed, then where PD_TRY passed it on. */
    const char *w = pd_err_where();
    assert_non_null(strstr(w, "test_error.c:"));
    assert_non_null(strstr(w, ": inner\n"));
    assert_non_null(strstr(w, ": outer\n"));
    assert_true(strstr(w, ": inner\n") < strstr(w, ": outer\n"));
}

static void test_goto_cleanup(void **state)
{
    (void)state;
    int cleaned = 0;
    assert_int_equal(with_cleanup(-1, &cleaned), PD_EINPUT);
    assert_int_equal(cleaned, 1);
    cleaned = 0;
    assert_int_equal(with_cleanup(2, &cleaned), PD_OK);
    assert_int_equal(cleaned, 1);
}

static void test_exit_status(void **state)
{
    (void)state;
    assert_int_equal(pd_exit_status(PD_OK), 0);
    assert_int_equal(pd_exit_status(PD_EINPUT), 2);
    assert_int_equal(pd_exit_status(PD_ETRAIN), 3);
    assert_int_equal(pd_exit_status(PD_EMPI), 3);
    assert_int_equal(pd_exit_status(PD_ENOMEM), 3);
    assert_int_equal(pd_exit_status(PD_EIO), 3);
    assert_int_equal(pd_exit_status(PD_ESTOPPED), 143);
}

static void test_long_message_truncated(void **state)
{
    (void)state;
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(PD_FAIL(PD_EIO, "%s", big), PD_EIO);
    assert_int_equal(strlen(pd_err_msg()), 1023);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_and_trace),
        cmocka_unit_test(test_goto_cleanup),
        cmocka_unit_test(test_exit_status),
        cmocka_unit_test(test_long_message_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
