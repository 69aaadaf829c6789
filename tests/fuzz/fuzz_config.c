/* The YAML config loader, pd_config_load, on a file holding the input.
 * Lines starting "#set " (YAML comments) are also passed as --set
 * overrides, so the override parser is fuzzed too. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "paramd/config.h"
#include "paramd/error.h"

enum { MAX_SETS = 4 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    static pd_config cfg;
    if (fd < 0)
        fd = pd_fuzz_memfd("config.yaml", path, sizeof path);
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
    if (pd_config_load(path, sets, nsets, &cfg) == PD_OK) {
        /* A loaded config must pass the world check without crashing. */
        (void)pd_config_check_world(&cfg, 1 + (int)(size % 4));
    }
    pd_err_clear();
    free(text);
    return 0;
}
