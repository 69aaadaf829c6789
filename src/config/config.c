/* The config loader: a YAML file (libyaml's document API) and then the
 * --set overrides, each value stored through the key table; then the
 * cross-key rules and the optimizer's rule defaults. Every error is one
 * line naming its place: FILE:LINE:COL (1-based), or the --set it came from.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "keys.h"
#include "paramd/batch.h"
#include "paramd/error.h"
#include "paramd/optim.h"

/* Where a key got its value: a file position (line > 0, 1-based; value and
 * key), a --set string, or neither (the table default). Kept for every key
 * so cross-key errors can point at the one that breaks a rule. */
typedef struct origin {
    int line, col;
    int key_line, key_col;
    const char *set;
} origin;

typedef struct loader {
    pd_config *cfg;
    const char *name;   /* the file, for messages */
    const char *set;    /* the --set being applied, or NULL */
    int phase;          /* pd_config_phase: the phase's index, else -1 */
    const pd_phase *ph; /* and its entry */
    origin at[PD_KEY_COUNT];
} loader;

#define MAX_CONFIG_BYTES (64u << 20)

static bool is_set(const loader *ld, int key) { return ld->at[key].line || ld->at[key].set; }

/* PD_EINPUT with "PLACE: PATH: what", PLACE from the --set being applied,
 * else the mark (0-based, printed 1-based), else the file name alone. */
static int vfail(const loader *ld, const char *set, const yaml_mark_t *m, const char *path,
                 const char *fmt, va_list ap)
{
    char what[1024], place[640];
    vsnprintf(what, sizeof what, fmt, ap);
    if (ld->phase >= 0) {   /* a phase's config: at its entry, under its path */
        if (ld->ph->line > 0)
            snprintf(place, sizeof place, "%s:%d:%d", ld->name, ld->ph->line, ld->ph->col);
        else
            snprintf(place, sizeof place, "%s", ld->name);
        const char *rel = path && !strncmp(path, "training.", 9) ? path + 9 : path;
        return PD_FAIL(PD_EINPUT, "%s: training.phases[%d]%s%s: %s", place, ld->phase,
                       rel && rel[0] ? "." : "", rel ? rel : "", what);
    }
    if (set)
        snprintf(place, sizeof place, "--set %s", set);
    else if (m)
        snprintf(place, sizeof place, "%s:%zu:%zu", ld->name, m->line + 1, m->column + 1);
    else
        snprintf(place, sizeof place, "%s", ld->name);
    if (path && path[0])
        return PD_FAIL(PD_EINPUT, "%s: %s: %s", place, path, what);
    return PD_FAIL(PD_EINPUT, "%s: %s", place, what);
}

__attribute__((format(printf, 4, 5)))
static int fail_at(const loader *ld, const yaml_mark_t *m, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int err = vfail(ld, ld->set, m, path, fmt, ap);
    va_end(ap);
    return err;
}

/* A cross-key error at the place key got its value. */
__attribute__((format(printf, 3, 4)))
static int fail_key(const loader *ld, int key, const char *fmt, ...)
{
    const origin *o = &ld->at[key];
    yaml_mark_t m = {0, o->line > 0 ? (size_t)o->line - 1 : 0,
                     o->col > 0 ? (size_t)o->col - 1 : 0};
    va_list ap;
    va_start(ap, fmt);
    int err = vfail(ld, o->set, o->line ? &m : NULL, pd_keys[key].path, fmt, ap);
    va_end(ap);
    return err;
}

static const char *shape(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE ? "a mapping" : "a list";
}

static pd_scalar scalar_of(const yaml_node_t *n)
{
    const char *t = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    bool null = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                (len == 0 || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
                 !strcmp(t, "NULL"));
    return (pd_scalar){t, len, null};
}

/* The key of `pair` in mapping `map`, appended to prefix as path
 * ("training.epochs", "faults.slow_workers[0].rank"); fails unless it is a
 * plain name not seen earlier in map. */
static int pair_path(const loader *ld, yaml_document_t *doc, yaml_node_t *map,
                     yaml_node_pair_t *pair, const char *prefix, char *path, size_t n)
{
    yaml_node_t *key = yaml_document_get_node(doc, pair->key);
    if (key->type != YAML_SCALAR_NODE)
        return fail_at(ld, &key->start_mark, prefix, "keys must be names, got %s", shape(key));
    const char *name = (const char *)key->data.scalar.value;
    size_t len = key->data.scalar.length;
    int plen = snprintf(path, n, "%s%s%s", prefix, prefix[0] ? "." : "", name);
    bool odd = plen < 0 || (size_t)plen >= n || strlen(name) != len;
    for (size_t i = 0; i < len && !odd; i++)
        odd = (unsigned char)name[i] < 0x20;
    if (odd) {   /* no key is like this; quoted, so the message stays one line */
        char got[96];
        pd_quote(got, sizeof got, name, len, 40);
        return fail_at(ld, &key->start_mark, prefix, "unknown key %s", got);
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < pair; p++) {
        yaml_node_t *other = yaml_document_get_node(doc, p->key);
        if (other->type == YAML_SCALAR_NODE && !strcmp((char *)other->data.scalar.value, name))
            return fail_at(ld, &key->start_mark, path, "duplicate key (first at %zu:%zu)",
                           other->start_mark.line + 1, other->start_mark.column + 1);
    }
    return PD_OK;
}

/* Entry i of map-list key k: a mapping with each of k's fields once. */
static int apply_entry(loader *ld, const pd_key *k, size_t i, yaml_document_t *doc,
                       yaml_node_t *e)
{
    char prefix[128], path[256], why[512], want[128];
    snprintf(prefix, sizeof prefix, "%s[%zu]", k->path, i);
    pd_key_entry_shape(k, want, sizeof want);
    if (e->type != YAML_MAPPING_NODE) {
        char got[96] = "a list";
        if (e->type == YAML_SCALAR_NODE)
            pd_quote(got, sizeof got, (char *)e->data.scalar.value, e->data.scalar.length, 40);
        return fail_at(ld, &e->start_mark, prefix, "expected a mapping %s, got %s", want, got);
    }
    unsigned seen = 0;
    for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top; p++) {
        PD_TRY(pair_path(ld, doc, e, p, prefix, path, sizeof path));
        yaml_node_t *key = yaml_document_get_node(doc, p->key);
        yaml_node_t *val = yaml_document_get_node(doc, p->value);
        const char *name = (const char *)key->data.scalar.value;
        int fi = pd_key_field_find(k, name, key->data.scalar.length);
        if (fi < 0) {
            char hint[96];
            pd_key_field_suggest(k, name, hint, sizeof hint);
            return fail_at(ld, &key->start_mark, path, "unknown key%s", hint);
        }
        const pd_key *f = &k->fields[fi];
        if (val->type != YAML_SCALAR_NODE) {
            pd_key_mismatch(f, shape(val), why, sizeof why);
            return fail_at(ld, &val->start_mark, path, "%s", why);
        }
        pd_scalar s = scalar_of(val);
        if (!pd_key_set_entry(k, ld->cfg, i, f, &s, why, sizeof why))
            return fail_at(ld, &val->start_mark, path, "%s", why);
        seen |= 1u << fi;
    }
    for (int fi = 0; k->fields[fi].path; fi++)
        if (!(seen & (1u << fi)))
            return fail_at(ld, &e->start_mark, prefix, "missing %s (each entry is %s)",
                           k->fields[fi].path, want);
    return PD_OK;
}

/* A map list's entries; with K_UNIQUE each id once, refused at the repeat. */
static int apply_entries(loader *ld, const pd_key *k, yaml_document_t *doc, yaml_node_t *n,
                         size_t count)
{
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *e = yaml_document_get_node(doc, n->data.sequence.items.start[i]);
        PD_TRY(apply_entry(ld, k, i, doc, e));
        if (!(k->flags & K_UNIQUE))
            continue;
        int id = pd_key_entry_id(k, ld->cfg, i);
        for (size_t j = 0; j < i; j++) {
            if (pd_key_entry_id(k, ld->cfg, j) != id)
                continue;
            char prefix[128], first[64];
            yaml_node_t *other = yaml_document_get_node(doc, n->data.sequence.items.start[j]);
            snprintf(prefix, sizeof prefix, "%s[%zu]", k->path, i);
            if (ld->set)   /* marks in a --set value are not worth giving */
                snprintf(first, sizeof first, "[%zu]", j);
            else
                snprintf(first, sizeof first, "%zu:%zu", other->start_mark.line + 1,
                         other->start_mark.column + 1);
            return fail_at(ld, &e->start_mark, prefix, "duplicate %s %d (first at %s)",
                           k->fields[0].path, id, first);
        }
    }
    pd_key_set_count(k, ld->cfg, count);
    return PD_OK;
}

/* Keys a phase may not set: they are the run's, the same in every phase. */
static bool phase_fixed(const char *path)
{
    static const char *const fixed[] = {"training.phases", "training.servers",
                                        "training.worker_timeout",
                                        "training.trace", "training.early_stopping.patience",
                                        "training.batch_size", "training.drop_last",
                                        "optimizer.name", "optimizer.dc_lambda_adaptive", NULL};
    for (int i = 0; fixed[i]; i++)
        if (!strcmp(path, fixed[i]))
            return true;
    return false;
}

/* The pairs of phase entry map (training keys by their name in training,
 * optimizer keys under optimizer, nested or dotted) into ph as
 * "full.path=value"; within is the section map is in ("" at the top). */
static int phase_pairs(loader *ld, yaml_document_t *doc, yaml_node_t *map, const char *prefix,
                       const char *within, pd_phase *ph)
{
    char path[256], full[256], why[512];
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        PD_TRY(pair_path(ld, doc, map, p, prefix, path, sizeof path));
        yaml_node_t *key = yaml_document_get_node(doc, p->key);
        yaml_node_t *val = yaml_document_get_node(doc, p->value);
        const char *name = (const char *)key->data.scalar.value;
        bool opt = !strncmp(name, "optimizer", 9) && (name[9] == '.' || !name[9]);
        snprintf(full, sizeof full, "%s%s%s", within[0] ? within : opt ? "" : "training",
                 within[0] || !opt ? "." : "", name);
        if (val->type == YAML_MAPPING_NODE && pd_key_is_section(full, strlen(full))) {
            PD_TRY(phase_pairs(ld, doc, val, path, full, ph));
            continue;
        }
        int ki = pd_key_find(full, strlen(full));
        if (ki < 0) {
            static const char *const others[] = {"model", "data", "run", "checkpoint",
                                                 "faults", NULL};
            for (int i = 0; !within[0] && others[i]; i++) {
                size_t n = strlen(others[i]);
                if (!strncmp(name, others[i], n) && (name[n] == '.' || !name[n]))
                    return fail_at(ld, &key->start_mark, path, "%s keys are the whole run's: a "
                                   "phase sets training and optimizer keys only", others[i]);
            }
            char hint[96];
            pd_key_suggest(full, hint, sizeof hint);
            return fail_at(ld, &key->start_mark, path, "unknown key%s", hint);
        }
        if (phase_fixed(full))
            return fail_at(ld, &key->start_mark, path, "is the same in every phase: set %s "
                           "outside training.phases", full);
        const pd_key *k = &pd_keys[ki];
        if (val->type != YAML_SCALAR_NODE) {
            pd_key_mismatch(k, shape(val), why, sizeof why);
            return fail_at(ld, &val->start_mark, path, "%s", why);
        }
        pd_config *scratch = pd_malloc(sizeof *scratch);   /* the value checked now */
        if (!scratch)
            return PD_ENOMEM;
        *scratch = *ld->cfg;
        pd_scalar sc = scalar_of(val);
        bool ok = pd_key_set(k, scratch, &sc, why, sizeof why);
        free(scratch);
        if (!ok)
            return fail_at(ld, &val->start_mark, path, "%s", why);
        if (ph->n_sets == PD_MAX_PHASE_SETS)
            return fail_at(ld, &key->start_mark, path, "a phase sets at most %d keys",
                           PD_MAX_PHASE_SETS);
        int len = snprintf(ph->sets[ph->n_sets], PD_PHASE_SET_LEN, "%s=%.*s", full,
                           (int)sc.len, sc.text);
        if (len < 0 || len >= PD_PHASE_SET_LEN || strlen(sc.text) != sc.len ||
            strpbrk(ph->sets[ph->n_sets] + strlen(full) + 1, ",{}[]#\n\"'"))
            return fail_at(ld, &val->start_mark, path, "expected a number, a name or true/false");
        ph->n_sets++;
    }
    return PD_OK;
}

static bool phase_sets(const pd_phase *ph, const char *path)
{
    size_t n = strlen(path);
    for (int j = 0; j < ph->n_sets; j++)
        if (!strncmp(ph->sets[j], path, n) && ph->sets[j][n] == '=')
            return true;
    return false;
}

/* training.phases: each entry a mapping with mode and epochs or max_updates. */
static int apply_phases(loader *ld, const pd_key *k, yaml_document_t *doc, yaml_node_t *n,
                        size_t count)
{
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *e = yaml_document_get_node(doc, n->data.sequence.items.start[i]);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s[%zu]", k->path, i);
        if (e->type != YAML_MAPPING_NODE)
            return fail_at(ld, &e->start_mark, prefix, "expected a mapping like {mode: async, "
                           "epochs: 1}, got %s", shape(e));
        pd_phase *ph = &ld->cfg->training.phases[i];
        *ph = (pd_phase){.line = ld->set ? 0 : (int)e->start_mark.line + 1,
                         .col = ld->set ? 0 : (int)e->start_mark.column + 1};
        PD_TRY(phase_pairs(ld, doc, e, prefix, "", ph));
        if (!phase_sets(ph, "training.mode"))
            return fail_at(ld, &e->start_mark, prefix, "missing mode (each phase names its mode)");
        if (!phase_sets(ph, "training.epochs") && !phase_sets(ph, "training.max_updates"))
            return fail_at(ld, &e->start_mark, prefix, "missing epochs or max_updates (how long "
                           "the phase runs)");
    }
    pd_key_set_count(k, ld->cfg, count);
    return PD_OK;
}

/* Store one node into key ki (a scalar, or a list for list keys). */
static int apply_node(loader *ld, int ki, yaml_document_t *doc, yaml_node_t *n)
{
    const pd_key *k = &pd_keys[ki];
    char why[512];
    if (n->type == YAML_SCALAR_NODE) {
        pd_scalar s = scalar_of(n);
        if (!pd_key_set(k, ld->cfg, &s, why, sizeof why))
            return fail_at(ld, &n->start_mark, k->path, "%s", why);
        return PD_OK;
    }
    if (n->type != YAML_SEQUENCE_NODE ||
        (k->type != KT_INTLIST && k->type != KT_MAPLIST && k->type != KT_PHASES)) {
        pd_key_mismatch(k, shape(n), why, sizeof why);
        return fail_at(ld, &n->start_mark, k->path, "%s", why);
    }
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > k->size)
        return fail_at(ld, &n->start_mark, k->path, "at most %zu entries, got %zu",
                       k->size, count);
    if (k->type == KT_MAPLIST)
        return apply_entries(ld, k, doc, n, count);
    if (k->type == KT_PHASES)
        return apply_phases(ld, k, doc, n, count);
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = yaml_document_get_node(doc, n->data.sequence.items.start[i]);
        if (item->type != YAML_SCALAR_NODE) {
            pd_key_mismatch(k, item->type == YAML_MAPPING_NODE ? "a mapping inside the list"
                                                               : "a nested list", why, sizeof why);
            return fail_at(ld, &item->start_mark, k->path, "%s", why);
        }
        pd_scalar s = scalar_of(item);
        if (!pd_key_set_item(k, ld->cfg, i, &s, why, sizeof why))
            return fail_at(ld, &item->start_mark, k->path, "%s", why);
    }
    pd_key_set_count(k, ld->cfg, count);
    return PD_OK;
}

static int walk_mapping(loader *ld, yaml_document_t *doc, yaml_node_t *map,
                        const char *prefix);

/* One `key: value` pair of the file, under prefix ("" at the top). */
static int walk_pair(loader *ld, yaml_document_t *doc, yaml_node_t *map, yaml_node_pair_t *pair,
                     const char *prefix)
{
    char path[256];
    PD_TRY(pair_path(ld, doc, map, pair, prefix, path, sizeof path));
    yaml_node_t *key = yaml_document_get_node(doc, pair->key);
    yaml_node_t *val = yaml_document_get_node(doc, pair->value);
    size_t plen = strlen(path);
    int ki = pd_key_find(path, plen);
    if (ki >= 0) {
        origin *o = &ld->at[ki];
        if (o->line)   /* the same key nested and dotted */
            return fail_at(ld, &key->start_mark, path, "duplicate key (first at %d:%d)",
                           o->key_line, o->key_col);
        PD_TRY(apply_node(ld, ki, doc, val));
        *o = (origin){(int)val->start_mark.line + 1, (int)val->start_mark.column + 1,
                      (int)key->start_mark.line + 1, (int)key->start_mark.column + 1, NULL};
        return PD_OK;
    }
    if (pd_key_is_section(path, plen)) {
        if (val->type == YAML_MAPPING_NODE)
            return walk_mapping(ld, doc, val, path);
        if (val->type == YAML_SCALAR_NODE && scalar_of(val).null)
            return PD_OK;   /* `training:` with every key commented out */
        char got[96];
        if (val->type == YAML_SCALAR_NODE)
            pd_quote(got, sizeof got, (char *)val->data.scalar.value, val->data.scalar.length, 40);
        else
            snprintf(got, sizeof got, "a list");
        return fail_at(ld, &val->start_mark, path, "expected a mapping of keys, got %s", got);
    }
    char hint[96];
    pd_key_suggest(path, hint, sizeof hint);
    return fail_at(ld, &key->start_mark, path, "unknown key%s", hint);
}

static int walk_mapping(loader *ld, yaml_document_t *doc, yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
        PD_TRY(walk_pair(ld, doc, map, p, prefix));
    return PD_OK;
}

/* libyaml's problem as one line at its (1-based) position. */
static int syntax_error(const loader *ld, const yaml_parser_t *p, const char *text, size_t len)
{
    if (p->error == YAML_MEMORY_ERROR)
        return PD_FAIL(PD_ENOMEM, "%s: out of memory parsing YAML", ld->name);
    yaml_mark_t m = p->problem_mark;
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors (bad UTF-8, control bytes) carry a byte offset. */
        size_t line_start = 0, end = p->problem_offset < len ? p->problem_offset : len;
        m = (yaml_mark_t){end, 0, 0};
        for (size_t i = 0; i < end; i++)
            if (text[i] == '\n') {
                m.line++;
                line_start = i + 1;
            }
        m.column = end - line_start;
    }
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->context)
        return fail_at(ld, &m, NULL, "YAML syntax error: %s (%s at %zu:%zu)", problem,
                       p->context, p->context_mark.line + 1, p->context_mark.column + 1);
    return fail_at(ld, &m, NULL, "YAML syntax error: %s", problem);
}

static int walk_root(loader *ld, yaml_document_t *doc)
{
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root)
        return PD_OK;   /* an empty file: every default */
    if (root->type == YAML_MAPPING_NODE)
        return walk_mapping(ld, doc, root, "");
    if (root->type == YAML_SCALAR_NODE && scalar_of(root).null)
        return PD_OK;
    char names[256];
    size_t o = 0;
    names[0] = '\0';
    for (const pd_section *s = pd_sections; s->path && o < sizeof names; s++)
        if (!strchr(s->path, '.'))
            o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", o ? ", " : "", s->path);
    return fail_at(ld, &root->start_mark, NULL, "expected a mapping of sections (%s), got %s",
                   names, root->type == YAML_SCALAR_NODE ? "a scalar" : "a list");
}

static int parse_file_text(loader *ld, const char *text, size_t len)
{
    yaml_parser_t p;
    yaml_document_t doc;
    int err = PD_OK;
    bool have_doc = false;
    if (!yaml_parser_initialize(&p))
        return PD_FAIL(PD_ENOMEM, "%s: cannot create a YAML parser", ld->name);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &doc)) {
        err = syntax_error(ld, &p, text, len);
        goto out;
    }
    have_doc = true;
    PD_TRY_GOTO(err, walk_root(ld, &doc), out);
    /* A second document would be silently ignored: refuse it. */
    yaml_document_t next;
    if (!yaml_parser_load(&p, &next)) {
        err = syntax_error(ld, &p, text, len);
        goto out;
    }
    yaml_node_t *extra = yaml_document_get_root_node(&next);
    if (extra)
        err = fail_at(ld, &extra->start_mark, NULL, "only one YAML document is allowed");
    yaml_document_delete(&next);
out:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    return err;
}

/* One "key.path=value": the value is read as a YAML scalar or flow list. */
static int apply_override(loader *ld, const char *set)
{
    ld->set = set;
    const char *eq = strchr(set, '=');
    if (!eq || eq == set)
        return fail_at(ld, NULL, NULL, "expected key.path=value");
    size_t plen = (size_t)(eq - set);
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)plen, set);
    int ki = pd_key_find(set, plen);
    if (ki < 0 && pd_key_is_section(set, plen))
        return fail_at(ld, NULL, path, "is a section; set one of its keys (%s.KEY=value)", path);
    if (ki < 0) {
        char hint[96];
        pd_key_suggest(path, hint, sizeof hint);
        return fail_at(ld, NULL, path, "unknown key%s", hint);
    }
    const char *value = eq + 1;
    yaml_parser_t p;
    yaml_document_t doc;
    int err = PD_OK;
    bool have_doc = false;
    if (!yaml_parser_initialize(&p))
        return PD_FAIL(PD_ENOMEM, "cannot create a YAML parser");
    yaml_parser_set_input_string(&p, (const unsigned char *)value, strlen(value));
    if (!yaml_parser_load(&p, &doc)) {
        err = fail_at(ld, NULL, path, "YAML syntax error: %s",
                      p.problem ? p.problem : "unknown problem");
        goto out;
    }
    have_doc = true;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) {
        PD_TRY_GOTO(err, apply_node(ld, ki, &doc, root), out);
    } else {   /* `key=` : the null value, as `key:` in a file */
        char why[512];
        pd_scalar null = {"", 0, true};
        if (!pd_key_set(&pd_keys[ki], ld->cfg, &null, why, sizeof why))
            PD_TRY_GOTO(err, fail_at(ld, NULL, path, "%s", why), out);
    }
    ld->at[ki] = (origin){0, 0, 0, 0, set};
out:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    ld->set = NULL;
    return err;
}

#define KEY(path) key_index(path)
static int key_index(const char *path)
{
    int i = pd_key_find(path, strlen(path));
    if (i < 0)
        abort();   /* a rule names a key the table lacks: a programmer error */
    return i;
}

/* Data files: csv and libsvm have no Fashion-MNIST default, so their
 * unset IDX paths are cleared and data.train must be given. */
static int data_rules(loader *ld)
{
    pd_data_config *d = &ld->cfg->data;
    const char *fmt = pd_keys[KEY("data.format")].names[d->format];
    if (d->curriculum.type == PD_CURRICULUM_COLUMN) {
        if (d->format != PD_FMT_CSV)
            return fail_key(ld, KEY("data.curriculum.type"), "column needs data.format csv "
                            "(data.format is %s)", fmt);
        if (!d->curriculum.column[0])
            return fail_key(ld, KEY("data.curriculum.type"), "column needs "
                            "data.curriculum.column, the score column");
        if (!strcmp(d->curriculum.column, d->label_column))
            return fail_key(ld, KEY("data.curriculum.column"), "\"%s\" is the label "
                            "column (data.label_column)", d->curriculum.column);
    }
    if (d->classes[0] && d->format != PD_FMT_CSV)
        return fail_key(ld, KEY("data.classes"), "class names need data.format csv "
                        "(data.format is %s)", fmt);
    if (d->classes[0] && ld->cfg->model.type == PD_MODEL_LINREG)
        return fail_key(ld, KEY("data.classes"), "linreg has no classes");
    if (d->format != PD_FMT_IDX) {
        if (!is_set(ld, KEY("data.train")))
            return fail_key(ld, KEY("data.format"), "%s needs data.train (the default is "
                            "the Fashion-MNIST IDX file)", fmt);
        const char *idx_keys[] = {"data.train_labels", "data.test", "data.test_labels"};
        char *fields[] = {d->train_labels, d->test, d->test_labels};
        for (int i = 0; i < 3; i++)
            if (!is_set(ld, KEY(idx_keys[i])))
                memset(fields[i], 0, PD_PATH_MAX);
        return PD_OK;
    }
    if (!d->train_labels[0])
        return fail_key(ld, KEY("data.train_labels"), "idx needs the labels of data.train");
    if (d->test[0] && !d->test_labels[0])
        return fail_key(ld, KEY("data.test_labels"), "idx needs the labels of data.test");
    return PD_OK;
}

static int model_rules(loader *ld)
{
    const pd_model_config *m = &ld->cfg->model;
    int hidden = KEY("model.hidden");
    if (m->type == PD_MODEL_MLP && m->n_hidden == 0) {
        if (is_set(ld, hidden))
            return fail_key(ld, hidden, "mlp needs at least one hidden layer, got []");
        return fail_key(ld, KEY("model.type"), "mlp needs model.hidden, the hidden layer "
                        "widths (e.g. [256, 128])");
    }
    if (m->type != PD_MODEL_MLP && m->n_hidden > 0)
        return fail_key(ld, hidden, "only mlp has hidden layers (model.type is %s)",
                        pd_model_type_name(m->type));
    return PD_OK;
}

/* After the rule defaults are filled in: rules on the effective numbers. */
static int optimizer_rules(loader *ld)
{
    const pd_optim_config *o = &ld->cfg->optimizer;
    bool uses_eps = o->name == PD_OPT_ADAGRAD || o->name == PD_OPT_RMSPROP ||
                    o->name == PD_OPT_RMSPROP_NESTEROV || o->name == PD_OPT_ADADELTA ||
                    o->name == PD_OPT_ADAM || o->name == PD_OPT_ADAMW;
    if (uses_eps && !(o->eps > 0))   /* it guards a division by sqrt(r) */
        return fail_key(ld, KEY("optimizer.eps"), "must be > 0 for %s, got %g",
                        pd_optimizer_name_str(o->name), o->eps);
    if (o->name == PD_OPT_VSGD) {   /* per-parameter rates of its own */
        pd_model_type t = ld->cfg->model.type;
        if (t != PD_MODEL_SOFTMAX && t != PD_MODEL_MLP && t != PD_MODEL_LINREG)
            return fail_key(ld, KEY("optimizer.name"), "vsgd needs a curvature estimate, which "
                            "softmax, mlp and linreg models give (model.type is %s)",
                            pd_model_type_name(t));
        const char *lr_keys[] = {"optimizer.lr", "optimizer.schedule.type",
                                 "optimizer.schedule.warmup"};
        bool set[] = {o->lr != 1.0, o->schedule.type != PD_SCHED_CONSTANT,
                      o->schedule.warmup != 0};
        for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
            if (set[i])
                return fail_key(ld, key_index(lr_keys[i]), "vsgd has no learning "
                                "rate to set or schedule (it adapts one per parameter)");
        const char *off[] = {"optimizer.clip_norm", "optimizer.clip_value", "optimizer.noise",
                             "optimizer.weight_decay"};
        double v[] = {o->clip_norm, o->clip_value, o->noise, o->weight_decay};
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
            if (v[i] != 0)
                return fail_key(ld, key_index(off[i]), "must be 0 for vsgd (its rates come from "
                                "the gradient's own statistics%s)",
                                i == 3 ? "; use model.l2" : "");
        if (o->vsgd_row_layers > 0 && o->vsgd_bound_layers > 0)
            return fail_key(ld, key_index("optimizer.vsgd_row_layers"), "a layer's curvature is "
                            "either the row bound or the row's along its gradient: set "
                            "optimizer.vsgd_row_layers or optimizer.vsgd_bound_layers, not both");
        if (o->vsgd_memory > 0 && o->vsgd_memory < PD_VSGD_N0)
            return fail_key(ld, key_index("optimizer.vsgd_memory"), "must be 0 (unbounded) or "
                            "at least %d, the slow start's minibatches, got %g", PD_VSGD_N0,
                            o->vsgd_memory);
    }
    if (o->schedule.type == PD_SCHED_COSINE && o->schedule.min_lr > o->lr)
        return fail_key(ld, KEY("optimizer.schedule.min_lr"), "must be <= optimizer.lr "
                        "(%g) for the cosine schedule, got %g", o->lr, o->schedule.min_lr);
    return PD_OK;
}

/* Training settings that contradict each other are refused at the key
 * rather than silently ignored. */
static int training_rules(loader *ld)
{
    const pd_config *c = ld->cfg;
    const pd_training_config *t = &c->training;
    if (t->epochs == 0 && t->max_updates == 0)
        return fail_key(ld, KEY("training.epochs"), "0 epochs needs training.max_updates > 0, "
                        "or the run never ends");
    if (t->early_stopping_patience > 0 && !(c->data.validation_fraction > 0))
        return fail_key(ld, KEY("training.early_stopping.patience"), "early stopping watches "
                        "the validation loss: set data.validation_fraction > 0");
    if (t->trace && (t->mode != PD_MODE_ASYNC || t->servers != 1))
        return fail_key(ld, KEY("training.trace"), "traces are for async runs with one server "
                        "(training.mode is %s with %d server%s; sync and serial runs are "
                        "reproducible from their seed)", pd_mode_name(t->mode), t->servers,
                        t->servers == 1 ? "" : "s");
    if (t->servers == 0 && t->mode != PD_MODE_SYNC)
        return fail_key(ld, KEY("training.servers"), "0 (the workers serve the parameters "
                        "themselves) is for sync mode; %s mode needs at least one server rank",
                        pd_mode_name(t->mode));
    if (t->servers == 0 && t->backup_workers > 0)
        return fail_key(ld, KEY("training.backup_workers"), "backup workers need server ranks "
                        "(with training.servers 0 every worker rank takes part in each round)");
    if (t->servers == 0 && (c->faults.n_slow_workers > 0 ||
                            c->faults.delay_distribution != PD_DELAY_NONE))
        return fail_key(ld, KEY("training.servers"), "faults (slow workers, delays) apply to "
                        "workers talking to server ranks; with training.servers 0 there are none");
    if (t->backup_workers > 0 && t->servers > 1 && t->mode != PD_MODE_SYNC)
        return fail_key(ld, KEY("training.backup_workers"), "backup workers with several "
                        "servers are for sync mode (server 0 names each round's workers to the "
                        "others); %s mode with %d servers: use one server",
                        pd_mode_name(t->mode), t->servers);
    if (c->optimizer.staleness_compensation == PD_SCOMP_DC && t->mode != PD_MODE_ASYNC &&
        t->mode != PD_MODE_HOGWILD)
        return fail_key(ld, KEY("optimizer.staleness_compensation"), "dc corrects stale "
                        "gradients in async and hogwild mode (training.mode is %s)",
                        pd_mode_name(t->mode));
    /* The run's (a phase that turns dc off keeps the moving mean for later). */
    if (!ld->ph && c->optimizer.dc_lambda_adaptive &&
        c->optimizer.staleness_compensation != PD_SCOMP_DC)
        return fail_key(ld, KEY("optimizer.dc_lambda_adaptive"), "adapts dc's lambda: it needs "
                        "optimizer.staleness_compensation dc");
    if (t->worker_timeout > 0 && t->servers > 1 && t->mode != PD_MODE_ASYNC &&
        t->mode != PD_MODE_HOGWILD && !(t->mode == PD_MODE_SYNC && t->backup_workers > 0))
        return fail_key(ld, KEY("training.worker_timeout"), "with several servers lost workers "
                        "are for async, hogwild and sync with backup workers (server 0 decides "
                        "and tells the others); %s mode with %d servers: use one server",
                        t->mode == PD_MODE_SYNC ? "sync (no backup workers)" : pd_mode_name(t->mode),
                        t->servers);
    if (t->worker_timeout > 0 && t->servers == 0)
        return fail_key(ld, KEY("training.worker_timeout"), "lost workers need server ranks "
                        "(with training.servers 0 every worker rank takes part in each round)");
    if (t->mode == PD_MODE_HOGWILD && t->max_staleness >= 0 &&
        t->staleness_policy == PD_STALE_WAIT)
        return fail_key(ld, KEY("training.staleness_policy"), "wait bounds staleness in async "
                        "mode; hogwild threads can only drop (staleness_policy: drop)");
    return PD_OK;
}

/* The batch methods (cg, bfgs, lbfgs, cd) take full-batch gradients in
 * serial or sync mode with server ranks (bfgs: one); the stochastic rules'
 * knobs mean nothing to them and are refused rather than ignored. */
static int batch_rules(loader *ld)
{
    const pd_config *c = ld->cfg;
    const pd_optim_config *o = &c->optimizer;
    if (!pd_optim_is_batch(o->name))
        return PD_OK;
    const char *name = pd_optimizer_name_str(o->name);
    pd_mode m = c->training.mode;
    if (m != PD_MODE_SERIAL && m != PD_MODE_SYNC)
        return fail_key(ld, KEY("optimizer.name"), "%s is a batch method: it runs in serial or "
                        "sync mode, not %s (each step needs the full gradient and a line "
                        "search)", name, pd_mode_name(m));
    if (o->name == PD_OPT_CD && c->model.type != PD_MODEL_LINREG)
        return fail_key(ld, KEY("optimizer.name"), "cd minimizes least squares: it needs "
                        "model.type linreg (model.type is %s)", pd_model_type_name(c->model.type));
    int S = c->training.servers;
    if (m == PD_MODE_SYNC && S == 0)
        return fail_key(ld, KEY("training.servers"), "the batch method %s runs on server ranks "
                        "(1 to %d), not on the workers (0)", name, PD_BATCH_SLICES);
    if (m == PD_MODE_SYNC && S > PD_BATCH_SLICES)
        return fail_key(ld, KEY("training.servers"), "the batch method %s splits its vectors "
                        "over at most %d servers, got %d", name, PD_BATCH_SLICES, S);
    if (m == PD_MODE_SYNC && S > 1 && o->name == PD_OPT_BFGS)
        return fail_key(ld, KEY("training.servers"), "bfgs keeps its n x n inverse Hessian on "
                        "one server: set training.servers 1, or use lbfgs, got %d servers", S);
    const char *unused[] = {"training.backup_workers", "optimizer.clip_norm",
                            "optimizer.clip_value", "optimizer.noise", "optimizer.weight_decay"};
    double v[] = {c->training.backup_workers, o->clip_norm, o->clip_value, o->noise,
                  o->weight_decay};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] != 0)
            return fail_key(ld, KEY(unused[i]), "must be 0 for the batch method %s%s", name,
                            i == 4 ? " (use model.l2)" : "");
    if (c->data.curriculum.type != PD_CURRICULUM_NONE)
        return fail_key(ld, KEY("data.curriculum.type"), "the batch method %s uses every "
                        "example at each step: no curriculum", name);
    return PD_OK;
}

static int faults_rules(loader *ld)
{
    const pd_faults_config *f = &ld->cfg->faults;
    int dist = KEY("faults.delay.distribution"), mean = KEY("faults.delay.mean_ms");
    if (f->delay_distribution == PD_DELAY_NONE || f->delay_mean_ms > 0)
        return PD_OK;
    const char *name = pd_keys[dist].names[f->delay_distribution];
    if (is_set(ld, mean))
        return fail_key(ld, mean, "must be > 0 for the %s delay, got 0", name);
    return fail_key(ld, dist, "%s needs faults.delay.mean_ms > 0 (the default is 0)", name);
}

/* A run with phases: what must hold for the whole run, then each phase's
 * own configuration. */
static int phase_rules(loader *ld)
{
    const pd_config *c = ld->cfg;
    const pd_training_config *t = &c->training;
    if (t->n_phases == 0)
        return PD_OK;
    if (pd_optim_is_batch(c->optimizer.name))
        return fail_key(ld, KEY("optimizer.name"), "%s is a batch method; phases run the "
                        "stochastic rules (training.phases is set)",
                        pd_optimizer_name_str(c->optimizer.name));
    if (t->servers == 0)
        return fail_key(ld, KEY("training.servers"), "phases need server ranks (0 runs sync "
                        "on the workers alone; training.phases is set)");
    if (t->trace)
        return fail_key(ld, KEY("training.trace"), "a trace replays one async run; "
                        "not with training.phases");
    if (t->early_stopping_patience > 0)
        return fail_key(ld, KEY("training.early_stopping.patience"), "early stopping would end "
                        "one phase of several; not with training.phases");
    if (t->worker_timeout > 0)
        return fail_key(ld, KEY("training.worker_timeout"), "every phase starts with every "
                        "worker; a run with training.phases does not go on without lost "
                        "workers in this version (leave it at 0)");
    pd_config *pc = pd_malloc(sizeof *pc);
    if (!pc)
        return PD_ENOMEM;
    int err = PD_OK;
    for (int i = 0; i < t->n_phases && err == PD_OK; i++) {
        err = pd_config_phase(c, i, pc);
        if (err == PD_OK && i == 0)
            ld->cfg->training.mode = pc->training.mode;   /* the run starts in it */
    }
    free(pc);
    return err;
}

static int load_text(const char *name, const char *text, size_t len,
                     const char *const *overrides, int n_overrides, pd_config *cfg)
{
    loader *ld = pd_calloc(1, sizeof *ld);
    if (!ld)
        return PD_ENOMEM;
    int err = PD_OK;
    ld->cfg = cfg;
    ld->name = name ? name : "<string>";
    ld->phase = -1;
    pd_config_table_defaults(cfg);
    snprintf(cfg->source, sizeof cfg->source, "%s", ld->name);
    PD_TRY_GOTO(err, parse_file_text(ld, text, len), out);
    for (int i = 0; i < n_overrides; i++)
        PD_TRY_GOTO(err, apply_override(ld, overrides[i]), out);
    PD_TRY_GOTO(err, data_rules(ld), out);
    PD_TRY_GOTO(err, model_rules(ld), out);
    PD_TRY_GOTO(err, batch_rules(ld), out);
    PD_TRY_GOTO(err, training_rules(ld), out);
    PD_TRY_GOTO(err, faults_rules(ld), out);
    pd_optim_defaults(&cfg->optimizer);
    PD_TRY_GOTO(err, optimizer_rules(ld), out);
    PD_TRY_GOTO(err, phase_rules(ld), out);
out:
    free(ld);
    return err;
}

int pd_config_phase(const pd_config *cfg, int i, pd_config *out)
{
    loader *ld = pd_calloc(1, sizeof *ld);
    if (!ld)
        return PD_ENOMEM;
    *out = *cfg;
    out->training.n_phases = 0;
    out->training.epochs = 0;
    out->training.max_updates = 0;
    ld->cfg = out;
    ld->name = cfg->source;
    ld->phase = i;
    ld->ph = &cfg->training.phases[i];
    int err = PD_OK;
    for (int j = 0; j < ld->ph->n_sets; j++) {
        PD_TRY_GOTO(err, apply_override(ld, ld->ph->sets[j]), out);
    }
    /* The rules of the keys a phase may set (model and data are the run's). */
    PD_TRY_GOTO(err, batch_rules(ld), out);
    PD_TRY_GOTO(err, training_rules(ld), out);
    PD_TRY_GOTO(err, faults_rules(ld), out);
    pd_optim_defaults(&out->optimizer);
    PD_TRY_GOTO(err, optimizer_rules(ld), out);
    if (out->training.mode == PD_MODE_SERIAL)
        err = fail_key(ld, KEY("training.mode"), "serial is one process; a phase is one of "
                       "the distributed modes (sync, async, hogwild, local_sgd, easgd)");
out:
    free(ld);
    return err;
}

int pd_config_load_string(const char *name, const char *yaml, const char *const *overrides,
                          int n_overrides, pd_config *cfg)
{
    PD_TRY(load_text(name, yaml, strlen(yaml), overrides, n_overrides, cfg));
    return PD_OK;
}

int pd_config_load(const char *path, const char *const *overrides, int n_overrides,
                   pd_config *cfg)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return PD_FAIL(PD_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    int err = PD_OK;
    size_t len = 0, cap = 4096;
    char *text = pd_malloc(cap);
    if (!text)
        PD_TRY_GOTO(err, PD_ENOMEM, out);
    for (;;) {
        len += fread(text + len, 1, cap - len, f);
        if (len < cap)
            break;
        if (cap >= MAX_CONFIG_BYTES) {
            err = PD_FAIL(PD_EINPUT, "%s: too large for a config (over %u MiB)", path,
                          MAX_CONFIG_BYTES >> 20);
            goto out;
        }
        char *bigger = realloc(text, cap * 2);
        if (!bigger) {
            err = PD_FAIL(PD_ENOMEM, "%s: out of memory reading it", path);
            goto out;
        }
        text = bigger;
        cap *= 2;
    }
    if (ferror(f)) {
        err = PD_FAIL(PD_EINPUT, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    PD_TRY_GOTO(err, load_text(path, text, len, overrides, n_overrides, cfg), out);
out:
    free(text);
    fclose(f);
    return err;
}

void pd_config_defaults(pd_config *cfg)
{
    pd_config_table_defaults(cfg);
    pd_optim_defaults(&cfg->optimizer);
}
