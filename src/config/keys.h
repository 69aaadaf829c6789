/* The config module's private contract: the one table of keys (table.c) and
 * the typed conversions between YAML scalars and struct fields (value.c),
 * shared by the loader (config.c) and the writers (write.c).
 */
#ifndef PARAMD_CONFIG_KEYS_H
#define PARAMD_CONFIG_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "paramd/config.h"

typedef enum {
    KT_INT, KT_INT64, KT_UINT64, KT_DOUBLE, KT_BOOL, KT_STRING, KT_ENUM,
    KT_INTLIST,   /* int array of `size` entries, its count at `aux` */
    KT_MAPLIST,   /* array of `size` records of `stride` bytes, each a YAML
                   * mapping of every one of `fields`; its count at `aux` */
    KT_PHASES,    /* training.phases: array of `size` pd_phase, count at `aux` */
} key_type;

enum {
    K_MIN = 1u << 0,            /* value >= min (> min with K_MIN_OPEN) */
    K_MAX = 1u << 1,            /* value <= max (< max with K_MAX_OPEN) */
    K_MIN_OPEN = 1u << 2,
    K_MAX_OPEN = 1u << 3,
    K_RULE_DEFAULT = 1u << 4,   /* double: "default" (NAN) = the rule's value */
    K_NONEMPTY = 1u << 5,       /* string: "" is not allowed */
    K_UNIQUE = 1u << 6,         /* map list: no two entries share the first
                                 * field (an int, the entry's id) */
};

typedef struct pd_key {
    const char *path;           /* "training.epochs" */
    key_type type;
    size_t offset;              /* offsetof(pd_config, ...) */
    size_t size;                /* string: buffer bytes; list: capacity */
    size_t aux;                 /* list: offsetof its count */
    const char *const *names;   /* enum: NULL-terminated, index = value */
    unsigned flags;
    double min, max;            /* list: bounds of each entry */
    const char *def;            /* default, as YAML text */
    const char *doc;            /* one line */
    /* Map list: the fields of an entry, terminated by a NULL path; their
     * offsets are within the entry, all required, no defaults. */
    const struct pd_key *fields;
    size_t stride;              /* map list: bytes per entry */
} pd_key;

/* Number of keys; config.c keeps one origin per key. */
#define PD_KEY_COUNT 92

extern const pd_key pd_keys[PD_KEY_COUNT];

/* Sections (groups of keys) with a one-line doc, for the reference. */
typedef struct pd_section {
    const char *path, *doc;
} pd_section;
extern const pd_section pd_sections[];

/* Index of the key with this exact path, or -1. */
int pd_key_find(const char *path, size_t len);
/* True when path (len bytes) is a section: a proper prefix of some key
 * ending at a dot ("training", "optimizer.schedule"). */
bool pd_key_is_section(const char *path, size_t len);
/* For an unknown path: writes " (did you mean X?)" into buf when a known
 * name at the level where path first goes wrong is close, else "". */
void pd_key_suggest(const char *path, char *buf, size_t n);
/* Index of map-list key k's field with this exact name, or -1. */
int pd_key_field_find(const pd_key *k, const char *name, size_t len);
/* For an unknown field name: " (did you mean X?)" or "". */
void pd_key_field_suggest(const pd_key *k, const char *name, char *buf, size_t n);
/* Levenshtein distance, capped: returns cap + 1 when it exceeds cap. */
int pd_edit_distance(const char *a, const char *b, int cap);
/* How close a mistyped name is to a known one, lower is closer: 0 same,
 * 2 one edit, 3 a prefix either way (3+ chars), 4 two edits, else
 * PD_NOT_CLOSE. Shared by key and option suggestions. */
#define PD_NOT_CLOSE 5
int pd_closeness(const char *typed, const char *name);

/* A scalar as libyaml gives it; null = plain "", "~" or "null". */
typedef struct pd_scalar {
    const char *text;
    size_t len;
    bool null;
} pd_scalar;

/* Store scalar s into key k's field of cfg, checking type and bounds.
 * On failure writes "what is wrong" (one line, no key) into why and
 * returns false; cfg may then be partly changed. */
bool pd_key_set(const pd_key *k, pd_config *cfg, const pd_scalar *s,
                char *why, size_t n);
/* Store entry i of a list key (the count is set by pd_key_set_count). */
bool pd_key_set_item(const pd_key *k, pd_config *cfg, size_t i,
                     const pd_scalar *s, char *why, size_t n);
/* Store field f (one of k->fields) of entry i of map-list key k. */
bool pd_key_set_entry(const pd_key *k, pd_config *cfg, size_t i, const pd_key *f,
                      const pd_scalar *s, char *why, size_t n);
/* A map-list entry's id: its first field, an int (keys with K_UNIQUE). */
int pd_key_entry_id(const pd_key *k, const pd_config *cfg, size_t i);
/* Set a list's count and zero the entries past it, so that equal lists
 * are equal bytes whatever was stored before (configs compare by memcmp). */
void pd_key_set_count(const pd_key *k, pd_config *cfg, size_t count);
/* A map list's entry shape, "{rank, factor}". */
void pd_key_entry_shape(const pd_key *k, char *buf, size_t n);
/* The message for a value of the wrong shape (a mapping, a list, or a
 * scalar for a list key): "expected an integer, got <got>", "must be one
 * of: a, b; got <got>". */
void pd_key_mismatch(const pd_key *k, const char *got, char *why, size_t n);
/* Its bounds as "> 0", "in [0, 1)", or "" when unbounded. */
void pd_key_bounds(const pd_key *k, char *buf, size_t n);

/* Write the field's value as YAML text (strings double-quoted, doubles
 * shortest round-trip, NAN as `default`). */
void pd_key_write_value(const pd_key *k, const pd_config *cfg, FILE *out);
/* s (len bytes) as a double-quoted YAML string; with max > 0 it is cut
 * after max bytes with "..." (for messages). */
void pd_quote(char *buf, size_t n, const char *s, size_t len, size_t max);

/* Every key at its table default, rule defaults left as NAN. */
void pd_config_table_defaults(pd_config *cfg);

#endif
