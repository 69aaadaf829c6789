/* paramd-config-reference: print conf/reference.yaml from the key table, or
 * with --check FILE, fail unless FILE is exactly that text and loads as the
 * default config (the meson test config-reference runs it so).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/config.h"
#include "paramd/error.h"

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *b = realloc(buf, 2 * cap + 1);
        if (!b)
            free(buf);
        buf = b;
        cap *= 2;
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

/* Report the first line where the two texts differ. */
static void first_difference(const char *want, const char *got)
{
    int line = 1;
    const char *w = want, *g = got;
    while (*w && *w == *g) {
        if (*w == '\n') {
            line++;
            want = w + 1;
            got = g + 1;
        }
        w++, g++;
    }
    fprintf(stderr, "line %d differs:\n  generated: %.*s\n  in file:   %.*s\n", line,
            (int)strcspn(want, "\n"), want, (int)strcspn(got, "\n"), got);
}

static int check(const char *path)
{
    char *want = NULL, *got = NULL;
    size_t want_len = 0, got_len = 0;
    int status = 1;
    FILE *mem = open_memstream(&want, &want_len);
    if (!mem || pd_config_write_reference(mem) != PD_OK || fclose(mem) != 0) {
        fprintf(stderr, "cannot generate the reference: %s\n", pd_err_msg());
        goto out;
    }
    if (!(got = read_all(path, &got_len))) {
        fprintf(stderr, "%s: cannot read\n", path);
        goto out;
    }
    if (got_len != want_len || memcmp(want, got, want_len) != 0) {
        fprintf(stderr, "%s is out of date; regenerate it with paramd-config-reference\n", path);
        first_difference(want, got);
        goto out;
    }
    pd_config loaded, defaults;
    if (pd_config_load(path, NULL, 0, &loaded) != PD_OK) {
        fprintf(stderr, "%s does not load: %s\n", path, pd_err_msg());
        goto out;
    }
    pd_config_defaults(&defaults);
    memset(loaded.source, 0, sizeof loaded.source);
    if (memcmp(&loaded, &defaults, sizeof loaded) != 0) {
        fprintf(stderr, "%s loads, but not as the default config\n", path);
        goto out;
    }
    status = 0;
out:
    free(want);
    free(got);
    return status;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--check"))
        return check(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: paramd-config-reference [--check FILE]\n");
        return 2;
    }
    if (pd_config_write_reference(stdout) != PD_OK) {
        fprintf(stderr, "paramd-config-reference: %s\n", pd_err_msg());
        return 3;
    }
    return 0;
}
