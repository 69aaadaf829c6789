/* The YAML config loader, pd_config_load, on a file holding the input.
 * Lines starting "#set " (YAML comments) are also passed as --set
 * overrides, so the override parser is fuzzed too. A loaded config is
 * written as config.resolved.yaml and loaded back: it must be the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "paramd/config.h"
#include "paramd/error.h"

enum { MAX_SETS = 4 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1, fd2 = -1;
    static char path[64], path2[64];
    static pd_config cfg, back;
    if (fd < 0) {
        fd = pd_fuzz_memfd("config.yaml", path, sizeof path);
        fd2 = pd_fuzz_memfd("config.resolved.yaml", path2, sizeof path2);
    }
    pd_fuzz_fill(fd, data, size);

    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    const char *sets[MAX_SETS];
    int nsets = 0;
    for (char *p = text; p && *p && nsets < MAX_SETS;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        if (strncmp(p, "#set ", 5) == 0)
            sets[nsets++] = p + 5;
        p = nl ? nl + 1 : NULL;
    }
    memset(&cfg, 0, sizeof cfg);
    if (pd_config_load(path, sets, nsets, &cfg) == PD_OK) {
        /* A loaded config must pass the world check without crashing, and
         * its config.resolved.yaml must load back to the same struct. */
        (void)pd_config_check_world(&cfg, 1 + (int)(size % 4));
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        if (!f || pd_config_write(&cfg, f) != PD_OK || fclose(f) != 0)
            abort();
        pd_fuzz_fill(fd2, (const uint8_t *)out, len);
        free(out);
        memset(&back, 0, sizeof back);
        if (pd_config_load(path2, NULL, 0, &back) != PD_OK) {
            fprintf(stderr, "resolved config refused: %s\n", pd_err_msg());
            abort();
        }
        memcpy(back.source, cfg.source, sizeof back.source);
        if (memcmp(&back, &cfg, sizeof cfg) != 0) {
            fprintf(stderr, "resolved config loads back different\n");
            abort();
        }
    }
    pd_err_clear();
    free(text);
    return 0;
}
