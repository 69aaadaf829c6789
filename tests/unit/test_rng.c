/* Seeded streams: reproducible, independent per stream, uniform and
 * normal moments, unbiased ranges, shuffles are permutations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/rng.h"

static void test_reproducible_and_distinct(void **state)
{
    (void)state;
    pd_rng a = pd_rng_make(42, 3, 0), b = pd_rng_make(42, 3, 0);
    pd_rng c = pd_rng_make(42, 3, 1), d = pd_rng_make(43, 3, 0), e = pd_rng_make(42, 4, 0);
    int same_c = 0, same_d = 0, same_e = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = pd_rng_next(&a);
        assert_true(x == pd_rng_next(&b));
        same_c += x == pd_rng_next(&c);
        same_d += x == pd_rng_next(&d);
        same_e += x == pd_rng_next(&e);
    }
    assert_int_equal(same_c + same_d + same_e, 0);
}

static void test_moments(void **state)
{
    (void)state;
    pd_rng r = pd_rng_make(7, 1, 0);
    const int n = 200000;
    double su = 0, su2 = 0, sn = 0, sn2 = 0;
    for (int i = 0; i < n; i++) {
        double u = pd_rng_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
        su += u;
        su2 += u * u;
        double z = pd_rng_normal(&r);
        sn += z;
        sn2 += z * z;
    }
    /* Tolerances are about 5 standard errors. */
    assert_true(fabs(su / n - 0.5) < 5 * sqrt(1.0 / 12 / n));
    assert_true(fabs(su2 / n - 1.0 / 3) < 0.005);
    assert_true(fabs(sn / n) < 5 / sqrt(n));
    assert_true(fabs(sn2 / n - 1.0) < 0.02);
}

static void test_below_covers_range(void **state)
{
    (void)state;
    pd_rng r = pd_rng_make(1, 2, 3);
    int count[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint64_t k = pd_rng_below(&r, 7);
        assert_true(k < 7);
        count[k]++;
    }
    for (int k = 0; k < 7; k++)
        assert_true(abs(count[k] - 10000) < 500);
}

static void test_shuffle_is_permutation(void **state)
{
    (void)state;
    size_t v[100], seen[100] = {0};
    for (size_t i = 0; i < 100; i++)
        v[i] = i;
    pd_rng r = pd_rng_make(5, PD_STREAM_SHUFFLE, 0);
    pd_rng_shuffle(&r, v, 100);
    size_t fixed = 0;
    for (size_t i = 0; i < 100; i++) {
        seen[v[i]]++;
        fixed += v[i] == i;
    }
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(seen[i], 1);
    assert_true(fixed < 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reproducible_and_distinct),
        cmocka_unit_test(test_moments),
        cmocka_unit_test(test_below_covers_range),
        cmocka_unit_test(test_shuffle_is_permutation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
