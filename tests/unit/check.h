/* Assertions shared by the unit tests that print both values on failure
 * (CMocka 1.1.5 has none for strings with context). Include after
 * <cmocka.h>. */
#ifndef PARAMD_TEST_CHECK_H
#define PARAMD_TEST_CHECK_H

#include <string.h>

/* String equality that prints both strings on mismatch. */
static inline void check_str(const char *got, const char *want, const char *file, int line)
{
    if (got && want && strcmp(got, want) == 0)
        return;
    print_error("string mismatch\n  got:  %s\n  want: %s\n", got ? got : "(null)",
                want ? want : "(null)");
    _fail(file, line);
}
#define assert_str(got, want) check_str((got), (want), __FILE__, __LINE__)

#endif
