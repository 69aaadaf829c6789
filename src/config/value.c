/* Typed conversions between YAML scalar text and pd_config fields, driven
 * by a key's table entry: parse and bound-check on the way in, shortest
 * round-trip text on the way out. Messages say what is wrong, not where.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keys.h"

static void *field(const pd_key *k, pd_config *cfg) { return (char *)cfg + k->offset; }

static const void *cfield(const pd_key *k, const pd_config *cfg)
{
    return (const char *)cfg + k->offset;
}

void pd_quote(char *buf, size_t n, const char *s, size_t len, size_t max)
{
    bool cut = max > 0 && len > max;
    if (cut) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;   /* do not split a UTF-8 sequence */
    }
    size_t o = 0;
    /* Room for the worst escape (\xHH), the closing quote, "..." and NUL. */
#define ROOM(k) (o + (k) + 5 < n)
    if (n < 8) {
        if (n) buf[0] = '\0';
        return;
    }
    buf[o++] = '"';
    size_t i = 0;
    for (; i < len && ROOM(4); i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                        : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
        /* YAML reads U+0085, U+2028 and U+2029 in a quoted scalar as line
         * breaks (folded to a space), and the other C1 controls and a BOM
         * are not printable: written as escapes, they read back as
         * themselves (\xHH names the code point, not the byte). */
        unsigned char c1 = i + 1 < len ? (unsigned char)s[i + 1] : 0;
        unsigned char c2 = i + 2 < len ? (unsigned char)s[i + 2] : 0;
        if (esc)
            o += (size_t)snprintf(buf + o, n - o, "%s", esc);
        else if (c < 0x20 || c == 0x7F)
            o += (size_t)snprintf(buf + o, n - o, "\\x%02X", c);
        else if (c == 0xC2 && c1 >= 0x80 && c1 <= 0x9F && ROOM(4)) {
            o += (size_t)snprintf(buf + o, n - o, "\\x%02X", c1);
            i++;
        } else if (c == 0xE2 && c1 == 0x80 && (c2 == 0xA8 || c2 == 0xA9)) {
            o += (size_t)snprintf(buf + o, n - o, "%s", c2 == 0xA8 ? "\\L" : "\\P");
            i += 2;
        } else if (c == 0xEF && c1 == 0xBB && c2 == 0xBF && ROOM(6)) {
            o += (size_t)snprintf(buf + o, n - o, "\\uFEFF");
            i += 2;
        } else
            buf[o++] = (char)c;
    }
#undef ROOM
    if (cut || i < len)   /* cut by max, or by the size of buf */
        o += (size_t)snprintf(buf + o, n - o, "...");
    snprintf(buf + o, n - o, "\"");
}

/* The value as the user wrote it, for "got ...". */
static void got_text(const pd_scalar *s, char *buf, size_t n)
{
    if (s->null && s->len == 0)
        snprintf(buf, n, "nothing");
    else
        pd_quote(buf, n, s->text, s->len, 40);
}

static void names_list(const pd_key *k, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; k->names[i] && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", k->names[i]);
}

void pd_key_entry_shape(const pd_key *k, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "{");
    for (const pd_key *f = k->fields; f->path && o < n; f++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", f == k->fields ? "" : ", ", f->path);
    if (o < n)
        snprintf(buf + o, n - o, "}");
}

void pd_key_mismatch(const pd_key *k, const char *got, char *why, size_t n)
{
    char names[256];
    switch (k->type) {
    case KT_INT: case KT_INT64:
        snprintf(why, n, "expected an integer, got %s", got);
        break;
    case KT_UINT64:
        snprintf(why, n, "expected an integer >= 0, got %s", got);
        break;
    case KT_DOUBLE:
        snprintf(why, n, "expected a number%s, got %s",
                 k->flags & K_RULE_DEFAULT ? " or default" : "", got);
        break;
    case KT_BOOL:
        snprintf(why, n, "expected true or false, got %s", got);
        break;
    case KT_STRING:
        snprintf(why, n, "expected a string, got %s", got);
        break;
    case KT_ENUM:
        names_list(k, names, sizeof names);
        snprintf(why, n, "must be one of: %s; got %s", names, got);
        break;
    case KT_INTLIST:
        snprintf(why, n, "expected a list of integers like [256, 128], got %s", got);
        break;
    case KT_MAPLIST:
        pd_key_entry_shape(k, names, sizeof names);
        snprintf(why, n, "expected a list of %s mappings, got %s", names, got);
        break;
    case KT_PHASES:
        snprintf(why, n, "expected a list of phases like [{mode: async, epochs: 1}], got %s",
                 got);
        break;
    }
}

static void fmt_bound(char *buf, size_t n, double v) { snprintf(buf, n, "%.15g", v); }

void pd_key_bounds(const pd_key *k, char *buf, size_t n)
{
    char lo[32], hi[32];
    fmt_bound(lo, sizeof lo, k->min);
    fmt_bound(hi, sizeof hi, k->max);
    bool lo_open = k->flags & K_MIN_OPEN, hi_open = k->flags & K_MAX_OPEN;
    if ((k->flags & K_MIN) && (k->flags & K_MAX))
        snprintf(buf, n, "in %c%s, %s%c", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
    else if (k->flags & K_MIN)
        snprintf(buf, n, "%s %s", lo_open ? ">" : ">=", lo);
    else if (k->flags & K_MAX)
        snprintf(buf, n, "%s %s", hi_open ? "<" : "<=", hi);
    else
        buf[0] = '\0';
}

/* Checks v against the table bounds; "must be > 0, got -3" on failure. */
static bool in_bounds(const pd_key *k, double v, const pd_scalar *s, char *why, size_t n)
{
    bool ok = true;
    if (k->flags & K_MIN)
        ok = k->flags & K_MIN_OPEN ? v > k->min : v >= k->min;
    if (ok && (k->flags & K_MAX))
        ok = k->flags & K_MAX_OPEN ? v < k->max : v <= k->max;
    if (!ok) {
        char b[64];
        pd_key_bounds(k, b, sizeof b);
        snprintf(why, n, "must be %s, got %.*s", b, (int)s->len, s->text);
    }
    return ok;
}

/* A whole scalar as a decimal integer within [lo, hi] of its C type. */
static bool parse_int(const pd_key *k, const pd_scalar *s, long long lo, long long hi,
                      long long *out, char *why, size_t n)
{
    char got[96];
    const char *t = s->text;
    char *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (s->len == 0 || *end || end == t ||
        !(t[0] == '-' || t[0] == '+' || (t[0] >= '0' && t[0] <= '9'))) {
        got_text(s, got, sizeof got);
        pd_key_mismatch(k, got, why, n);
        return false;
    }
    bool range = errno == ERANGE;
    if (!range && !in_bounds(k, (double)v, s, why, n))
        return false;
    /* Beyond the C type (or beyond long long): name the type's limit. */
    if (range || v < lo || v > hi) {
        bool low = v < lo;
        snprintf(why, n, "must be %s %lld, got %s", low ? ">=" : "<=", low ? lo : hi, t);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_uint64(const pd_key *k, const pd_scalar *s, uint64_t *out,
                         char *why, size_t n)
{
    char got[96];
    const char *t = s->text;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(t, &end, 10);
    if (s->len == 0 || *end || !(t[0] >= '0' && t[0] <= '9')) {
        got_text(s, got, sizeof got);
        pd_key_mismatch(k, got, why, n);
        return false;
    }
    if (errno == ERANGE) {
        snprintf(why, n, "must be <= %" PRIu64 ", got %s", UINT64_MAX, t);
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

static bool parse_double(const pd_key *k, const pd_scalar *s, double *out,
                         char *why, size_t n)
{
    char got[96];
    const char *t = s->text;
    if ((k->flags & K_RULE_DEFAULT) && (s->null || strcmp(t, "default") == 0)) {
        *out = NAN;
        return true;
    }
    char *end;
    double v = strtod(t, &end);
    if (s->len == 0 || *end || end == t || isspace((unsigned char)t[0])) {
        got_text(s, got, sizeof got);
        pd_key_mismatch(k, got, why, n);
        return false;
    }
    if (!isfinite(v)) {
        got_text(s, got, sizeof got);
        snprintf(why, n, "expected a finite number, got %s", got);
        return false;
    }
    *out = v;
    return in_bounds(k, v, s, why, n);
}

static bool parse_bool(const pd_key *k, const pd_scalar *s, bool *out, char *why, size_t n)
{
    /* The YAML 1.1 spellings libyaml's users expect. */
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(s->text, yes[i]) == 0 || strcasecmp(s->text, no[i]) == 0) {
            *out = strcasecmp(s->text, yes[i]) == 0;
            return true;
        }
    }
    char got[96];
    got_text(s, got, sizeof got);
    pd_key_mismatch(k, got, why, n);
    return false;
}

static bool parse_string(const pd_key *k, const pd_scalar *s, char *dst, char *why, size_t n)
{
    size_t len = s->null ? 0 : s->len;
    if (strlen(s->text) < len) {
        snprintf(why, n, "must not contain a NUL byte");
        return false;
    }
    if (len >= k->size) {
        snprintf(why, n, "must be at most %zu bytes long, got %zu", k->size - 1, len);
        return false;
    }
    if (len == 0 && (k->flags & K_NONEMPTY)) {
        snprintf(why, n, "must not be empty");
        return false;
    }
    /* Zero the whole buffer: configs are compared with memcmp. */
    memset(dst, 0, k->size);
    memcpy(dst, s->text, len);
    return true;
}

static bool parse_enum(const pd_key *k, const pd_scalar *s, int *out, char *why, size_t n)
{
    for (int i = 0; k->names[i]; i++) {
        if (strlen(k->names[i]) == s->len && strcmp(k->names[i], s->text) == 0) {
            *out = i;
            return true;
        }
    }
    char got[96];
    got_text(s, got, sizeof got);
    pd_key_mismatch(k, got, why, n);
    return false;
}

/* Store scalar s into the field at f, of scalar key k's type and bounds. */
static bool store(const pd_key *k, void *f, const pd_scalar *s, char *why, size_t n)
{
    long long v;
    char got[96];
    if (k->type != KT_STRING && strlen(s->text) != s->len) {
        got_text(s, got, sizeof got);   /* a "\0" escape: never a valid value */
        pd_key_mismatch(k, got, why, n);
        return false;
    }
    switch (k->type) {
    case KT_INT:
        if (!parse_int(k, s, INT_MIN, INT_MAX, &v, why, n))
            return false;
        *(int *)f = (int)v;
        return true;
    case KT_INT64:
        if (!parse_int(k, s, INT64_MIN, INT64_MAX, &v, why, n))
            return false;
        *(int64_t *)f = (int64_t)v;
        return true;
    case KT_UINT64: return parse_uint64(k, s, f, why, n);
    case KT_DOUBLE: return parse_double(k, s, f, why, n);
    case KT_BOOL:   return parse_bool(k, s, f, why, n);
    case KT_STRING: return parse_string(k, s, f, why, n);
    case KT_ENUM:   return parse_enum(k, s, f, why, n);
    case KT_INTLIST: case KT_MAPLIST: case KT_PHASES:
        break;   /* lists are not scalars: pd_key_set */
    }
    got_text(s, got, sizeof got);
    pd_key_mismatch(k, got, why, n);
    return false;
}

bool pd_key_set(const pd_key *k, pd_config *cfg, const pd_scalar *s, char *why, size_t n)
{
    if ((k->type == KT_INTLIST || k->type == KT_MAPLIST || k->type == KT_PHASES) && s->null) {
        pd_key_set_count(k, cfg, 0);   /* `hidden:` or `hidden: ~` is the empty list */
        return true;
    }
    return store(k, field(k, cfg), s, why, n);
}

bool pd_key_set_item(const pd_key *k, pd_config *cfg, size_t i, const pd_scalar *s,
                     char *why, size_t n)
{
    if (i >= k->size) {
        snprintf(why, n, "at most %zu entries", k->size);
        return false;
    }
    long long v;
    /* Entries are ints: the table's bounds apply to each. */
    pd_key item = *k;
    item.type = KT_INT;
    if (strlen(s->text) != s->len) {
        char got[96];
        got_text(s, got, sizeof got);
        pd_key_mismatch(&item, got, why, n);
        return false;
    }
    if (!parse_int(&item, s, INT_MIN, INT_MAX, &v, why, n))
        return false;
    ((int *)field(k, cfg))[i] = (int)v;
    return true;
}

bool pd_key_set_entry(const pd_key *k, pd_config *cfg, size_t i, const pd_key *f,
                      const pd_scalar *s, char *why, size_t n)
{
    if (i >= k->size) {
        snprintf(why, n, "at most %zu entries", k->size);
        return false;
    }
    return store(f, (char *)field(k, cfg) + i * k->stride + f->offset, s, why, n);
}

int pd_key_entry_id(const pd_key *k, const pd_config *cfg, size_t i)
{
    assert(k->type == KT_MAPLIST && k->fields[0].type == KT_INT && i < k->size);
    const char *entry = (const char *)cfield(k, cfg) + i * k->stride;
    int id;
    memcpy(&id, entry + k->fields[0].offset, sizeof id);
    return id;
}

void pd_key_set_count(const pd_key *k, pd_config *cfg, size_t count)
{
    size_t entry = k->type == KT_MAPLIST || k->type == KT_PHASES ? k->stride : sizeof(int);
    assert(count <= k->size);
    memset((char *)field(k, cfg) + count * entry, 0, (k->size - count) * entry);
    *(int *)((char *)cfg + k->aux) = (int)count;
}

/* The shortest %g text that reads back as exactly v. */
static void write_double(double v, FILE *out)
{
    char buf[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, out);
}

/* The value of scalar key k stored at f. */
static void write_scalar(const pd_key *k, const void *f, FILE *out)
{
    char buf[4 * PD_PATH_MAX + 16];
    switch (k->type) {
    case KT_INT:    fprintf(out, "%d", *(const int *)f); break;
    case KT_INT64:  fprintf(out, "%" PRId64, *(const int64_t *)f); break;
    case KT_UINT64: fprintf(out, "%" PRIu64, *(const uint64_t *)f); break;
    case KT_BOOL:   fputs(*(const bool *)f ? "true" : "false", out); break;
    case KT_DOUBLE:
        if (isnan(*(const double *)f))
            fputs("default", out);
        else
            write_double(*(const double *)f, out);
        break;
    case KT_STRING:
        pd_quote(buf, sizeof buf, f, strlen(f), 0);
        fputs(buf, out);
        break;
    case KT_ENUM: {
        int v = *(const int *)f, count = 0;
        while (k->names[count])
            count++;
        if (v >= 0 && v < count)
            fputs(k->names[v], out);
        else
            fprintf(out, "%d", v);   /* not a valid name: fails on reload */
        break;
    }
    case KT_INTLIST: case KT_MAPLIST: case KT_PHASES:
        break;   /* pd_key_write_value */
    }
}

void pd_key_write_value(const pd_key *k, const pd_config *cfg, FILE *out)
{
    const char *f = cfield(k, cfg);
    int count = k->type == KT_INTLIST || k->type == KT_MAPLIST || k->type == KT_PHASES
              ? *(const int *)((const char *)cfg + k->aux) : 0;
    switch (k->type) {
    case KT_INTLIST:
        fputc('[', out);
        for (int i = 0; i < count; i++)
            fprintf(out, "%s%d", i ? ", " : "", ((const int *)f)[i]);
        fputc(']', out);
        break;
    case KT_MAPLIST:   /* flow style: [{rank: 2, factor: 4}] */
        fputc('[', out);
        for (int i = 0; i < count; i++) {
            fputs(i ? ", {" : "{", out);
            for (const pd_key *fl = k->fields; fl->path; fl++) {
                fprintf(out, "%s%s: ", fl == k->fields ? "" : ", ", fl->path);
                write_scalar(fl, f + (size_t)i * k->stride + fl->offset, out);
            }
            fputc('}', out);
        }
        fputc(']', out);
        break;
    case KT_PHASES:   /* [{mode: async, epochs: 1, optimizer.lr: 0.05}] */
        fputc('[', out);
        for (int i = 0; i < count; i++) {
            const pd_phase *ph = (const pd_phase *)f + i;
            fputs(i ? ", {" : "{", out);
            for (int j = 0; j < ph->n_sets; j++) {
                const char *set = ph->sets[j], *eq = strchr(set, '=');
                if (!strncmp(set, "training.", 9))
                    set += 9;
                fprintf(out, "%s%.*s: %s", j ? ", " : "", (int)(eq - set), set, eq + 1);
            }
            fputc('}', out);
        }
        fputc(']', out);
        break;
    default:
        write_scalar(k, f, out);
        break;
    }
}
