/* Assertions shared by the unit tests that print both values on failure
 * (CMocka 1.1.5 has none for strings with context). Include after
 * <cmocka.h>. */
#ifndef PARAMD_TEST_CHECK_H
#define PARAMD_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
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

/* The whole of a temporary file just written (malloc'd, NUL-terminated);
 * closes f. */
static inline char *read_back(FILE *f)
{
    long len = ftell(f);
    assert_true(len > 0);
    char *text = malloc((size_t)len + 1);
    assert_non_null(text);
    rewind(f);
    assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
    text[len] = '\0';
    fclose(f);
    return text;
}

#endif
