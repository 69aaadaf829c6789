/* Writers that walk the key table: config.resolved.yaml (every key with its
 * effective value; loading it back gives the same struct) and the
 * documented reference conf/reference.yaml (every key at its default).
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "keys.h"
#include "paramd/error.h"
#include "paramd/optim.h"

#define MAX_DEPTH 4

/* Split path into at most MAX_DEPTH components; returns their count. */
static int split(const char *path, const char *comp[], size_t len[])
{
    int n = 0;
    for (const char *s = path; n < MAX_DEPTH; n++) {
        comp[n] = s;
        len[n] = strcspn(s, ".");
        s += len[n];
        if (!*s)
            return n + 1;
        s++;
    }
    return n;
}

static const char *section_doc(const char *path, size_t len)
{
    for (const pd_section *s = pd_sections; s->path; s++)
        if (strlen(s->path) == len && !strncmp(s->path, path, len))
            return s->doc;
    return NULL;
}

/* text as "INDENT# ..." comment lines wrapped at 79 columns; continuation
 * lines are indented `hang` more. */
static void comment(FILE *out, const char *indent, const char *text, int hang)
{
    int start = fprintf(out, "%s#", indent), col = start;
    for (const char *s = text; *s;) {
        size_t w = strcspn(s, " ");
        if (col > start && col + 1 + (int)w > 79)
            col = fprintf(out, "\n%s#%*s", indent, hang, "") - 1;
        col += fprintf(out, " %.*s", (int)w, s);
        s += w;
        s += strspn(s, " ");
    }
    fputc('\n', out);
}

/* "rule defaults: sgd 0.1, momentum 0.05, ..." for a rule-default key, from
 * pd_optim_defaults itself, so the reference cannot drift from it. */
static void rule_defaults(const pd_key *k, char *buf, size_t n)
{
    int o = snprintf(buf, n, "rule defaults:"), zero = 0;
    const char *sep = " ";
    for (int r = 0; r < PD_OPT_COUNT && o < (int)n; r++) {
        pd_optim_config oc = {.name = (pd_optimizer_name)r, .lr = NAN, .momentum = NAN,
                              .rho = NAN, .eps = NAN, .beta1 = NAN, .beta2 = NAN};
        pd_optim_defaults(&oc);
        double v = *(const double *)((const char *)&oc + k->offset -
                                     offsetof(pd_config, optimizer));
        if (v == 0) {
            zero++;
            continue;
        }
        o += snprintf(buf + o, n - (size_t)o, "%s%s %.15g", sep, pd_optimizer_name_str(oc.name), v);
        sep = ", ";
    }
    if (zero && o < (int)n)
        snprintf(buf + o, n - (size_t)o, " (0 for the others)");
}

/* "# doc (default X; allowed: a, b; in [0, 1))", the parenthesis on lines
 * of its own when one line would pass 79 columns. */
static void key_comment(const pd_key *k, const char *indent, FILE *out)
{
    char note[512], line[1024], bounds[64];
    int o = snprintf(note, sizeof note, "(default %s",
                     k->flags & K_RULE_DEFAULT ? "the rule's value"
                     : k->def[0] ? k->def : "\"\"");
    if (k->type == KT_ENUM)
        for (int i = 0; k->names[i] && o < (int)sizeof note; i++)
            o += snprintf(note + o, sizeof note - (size_t)o, "%s %s",
                          i ? "," : "; allowed:", k->names[i]);
    pd_key_bounds(k, bounds, sizeof bounds);
    if (bounds[0] && o < (int)sizeof note)
        o += snprintf(note + o, sizeof note - (size_t)o, "; %s%s",
                      k->type == KT_INTLIST ? "each " : "", bounds);
    if (k->type == KT_MAPLIST && o < (int)sizeof note)
        o += snprintf(note + o, sizeof note - (size_t)o, "; at most %zu entries, each with:",
                      k->size);
    if (o < (int)sizeof note)
        snprintf(note + o, sizeof note - (size_t)o, ")");
    if (strlen(indent) + 3 + strlen(k->doc) + strlen(note) <= 79) {
        snprintf(line, sizeof line, "%s %s", k->doc, note);
        comment(out, indent, line, 0);
    } else {
        comment(out, indent, k->doc, 0);
        comment(out, indent, note, 1);
    }
    if (k->flags & K_RULE_DEFAULT) {
        rule_defaults(k, line, sizeof line);
        comment(out, indent, line, 2);
    }
    if (k->type == KT_PHASES)
        comment(out, indent, "Each entry: {mode: M, epochs: E or max_updates: U, and any "
                "training key or optimizer: {KEY: V} it changes}, for example [{mode: async, "
                "epochs: 1}, {mode: sync, epochs: 2, optimizer: {lr: 0.05}}]; not servers, "
                "batch_size, drop_last, trace, early_stopping or optimizer.name.", 2);
    /* A map list's fields: "- rank: doc (required; >= 1)". */
    for (const pd_key *f = k->type == KT_MAPLIST ? k->fields : NULL; f && f->path; f++) {
        pd_key_bounds(f, bounds, sizeof bounds);
        snprintf(line, sizeof line, "- %s: %s (required%s%s)", f->path, f->doc,
                 bounds[0] ? "; " : "", bounds);
        comment(out, indent, line, 2);
    }
}

/* Every key as nested YAML, opening sections as the paths change (the
 * table keeps each section's keys together). */
static int write_keys(const pd_config *cfg, bool reference, FILE *out)
{
    const char *prev[MAX_DEPTH] = {0};
    size_t prev_len[MAX_DEPTH] = {0};
    int prev_n = 0;
    static const char spaces[] = "        ";
    for (int i = 0; i < PD_KEY_COUNT; i++) {
        const pd_key *k = &pd_keys[i];
        const char *comp[MAX_DEPTH];
        size_t len[MAX_DEPTH];
        int n = split(k->path, comp, len);
        int same = 0;   /* leading sections shared with the previous key */
        while (same < n - 1 && same < prev_n - 1 && len[same] == prev_len[same] &&
               !strncmp(comp[same], prev[same], len[same]))
            same++;
        for (int d = same; d < n - 1; d++) {
            const char *doc = section_doc(k->path, (size_t)(comp[d] + len[d] - k->path));
            if (reference && d == 0 && i > 0)
                fputc('\n', out);
            if (reference && doc)   /* wrapped at 79 columns like key docs */
                comment(out, spaces + sizeof spaces - 1 - 2 * d, doc, 0);
            fprintf(out, "%.*s%.*s:\n", 2 * d, spaces, (int)len[d], comp[d]);
        }
        const char *indent = spaces + sizeof spaces - 1 - 2 * (n - 1);
        if (reference)
            key_comment(k, indent, out);
        fprintf(out, "%s%.*s: ", indent, (int)len[n - 1], comp[n - 1]);
        pd_key_write_value(k, cfg, out);
        fputc('\n', out);
        memcpy(prev, comp, sizeof comp);
        memcpy(prev_len, len, sizeof len);
        prev_n = n;
    }
    if (fflush(out) != 0 || ferror(out))
        return PD_FAIL(PD_EIO, "cannot write the config: %s", strerror(errno));
    return PD_OK;
}

int pd_config_write(const pd_config *cfg, FILE *out)
{
    char src[4 * PD_PATH_MAX + 16];
    pd_quote(src, sizeof src, cfg->source, strlen(cfg->source), 0);
    fprintf(out, "# paramd: the resolved configuration (from %s, the defaults and any\n"
                 "# --set), every key with its effective value.\n", src);
    PD_TRY(write_keys(cfg, false, out));
    return PD_OK;
}

int pd_config_write_reference(FILE *out)
{
    pd_config cfg;
    pd_config_table_defaults(&cfg);
    fputs("# paramd configuration reference: every key, what it does, its default and\n"
          "# what it accepts. Generated from the key table (src/config/table.c):\n"
          "#   build/src/config/paramd-config-reference > conf/reference.yaml\n"
          "# and checked by the config-reference test; do not edit by hand.\n"
          "#\n"
          "# Loading this file gives the default configuration. Any key may be left\n"
          "# out (it keeps its default), written dotted at the top level\n"
          "# (training.epochs: 3), or set on the command line with\n"
          "# --set key.path=value, where the value is read as YAML\n"
          "# (--set model.hidden=[256,128]). In the optimizer section `default`\n"
          "# stands for the chosen rule's value, listed under each such key.\n\n", out);
    PD_TRY(write_keys(&cfg, true, out));
    return PD_OK;
}
