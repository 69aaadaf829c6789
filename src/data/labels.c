/* Labels as people write them: class names in a CSV file ("cat", "dog"),
 * given in data.classes or found in the training file, and binary labels
 * that are any two numbers (liblinear's habit: the smaller is negative).
 * The training file's first pass (the record count) hands every label's
 * text to pd_labels_seen; pd_labels_decide then fixes the mapping for the
 * training file and everything after it, before any record is stored, so
 * every rank maps alike whatever records it parses.
 *
 * Rules: with data.classes, labels are those names, in that order. Else a
 * CSV training file with a label that is not a number has names: its
 * distinct labels in byte order (strcmp). Else labels are numbers as
 * before: class ids, or for logreg/svm 0/1, -1/+1, or any two numbers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_impl.h"
#include "paramd/error.h"

/* Distinct label texts kept at most; more are an error only when they are names. */
#define SEEN_MAX 65536

static bool is_binary(pd_model_type t) { return t == PD_MODEL_LOGREG || t == PD_MODEL_SVM; }
static const char *model_name(pd_model_type t) { return t == PD_MODEL_SVM ? "svm" : "logreg"; }

void pd_labels_trim(const char **b, const char **e)
{
    const char *s = *b, *t = *e;
    while (s < t && (*s == ' ' || *s == '\t'))
        s++;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
        t--;
    if (t - s >= 2 && *s == '"' && t[-1] == '"') {
        s++;
        t--;
    }
    *b = s;
    *e = t;
}

static bool is_number(const char *b, const char *e)
{
    char tmp[64];
    if (e - b >= (long)sizeof tmp)
        return false;
    memcpy(tmp, b, (size_t)(e - b));
    tmp[e - b] = '\0';
    const char *s = tmp, *t = tmp + (e - b);
    float v;
    return pd_data_parse_float(&s, &t, &v) == 0;
}

/* strcmp of s against the text [b, b + len). */
static int cmp_text(const char *s, const char *b, size_t len)
{
    int c = strncmp(s, b, len);
    return c ? c : s[len] != '\0';
}

/* Index of the first of n texts (text[order[i]], or text[i] without order;
 * sorted) not below [b, e); *found when it equals. */
static size_t lower_bound(char *const *text, const size_t *order, size_t n, const char *b,
                          const char *e, bool *found)
{
    size_t lo = 0, hi = n, len = (size_t)(e - b);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_text(text[order ? order[mid] : mid], b, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < n && cmp_text(text[order ? order[lo] : lo], b, len) == 0;
    return lo;
}

int pd_labels_seen(pd_loader *L, const char *b, const char *e, long line, bool words)
{
    pd_labels_trim(&b, &e);
    bool number = is_number(b, e);
    if (!number && !words)
        return PD_OK;   /* reported when the record is parsed */
    L->seen_word |= !number;
    bool found;
    size_t at = lower_bound(L->seen, NULL, L->nseen, b, e, &found);
    if (found)
        return PD_OK;
    if (L->nseen == SEEN_MAX) {
        L->seen_overflow = true;
        return PD_OK;
    }
    if (L->nseen == L->seen_cap) {
        size_t cap = L->seen_cap ? 2 * L->seen_cap : 16;
        char **t = realloc(L->seen, cap * sizeof *t);
        if (t)
            L->seen = t;
        long *l = t ? realloc(L->seen_line, cap * sizeof *l) : NULL;
        if (!l)
            return PD_FAIL(PD_ENOMEM, "%s: out of memory for %zu labels", L->path, cap);
        L->seen_line = l;
        L->seen_cap = cap;
    }
    char *s = pd_malloc((size_t)(e - b) + 1);
    if (!s)
        return PD_ENOMEM;
    memcpy(s, b, (size_t)(e - b));
    s[e - b] = '\0';
    memmove(L->seen + at + 1, L->seen + at, (L->nseen - at) * sizeof *L->seen);
    memmove(L->seen_line + at + 1, L->seen_line + at, (L->nseen - at) * sizeof *L->seen_line);
    L->seen[at] = s;
    L->seen_line[at] = line;
    L->nseen++;
    return PD_OK;
}

/* "a, b, c" of the first names (at most 6), for messages. */
static void list_names(char *const *names, size_t n, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && i < 6 && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s\"%s\"", i ? ", " : "", names[i]);
    if (n > 6 && k < size)
        snprintf(buf + k, size - k, ", ... (%zu in all)", n);
}

/* Names in class order, and their order by name for lookups. */
static int set_names(pd_loader *L, char **names, size_t n)
{
    L->names = names;
    L->nnames = n;
    L->by_name = pd_malloc((n ? n : 1) * sizeof *L->by_name);
    if (!L->by_name)
        return PD_ENOMEM;
    /* Insertion sort by name: n is small (classes), and data.classes has
     * been checked for duplicates by the caller. */
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        while (j > 0 && strcmp(names[L->by_name[j - 1]], names[i]) > 0) {
            L->by_name[j] = L->by_name[j - 1];
            j--;
        }
        L->by_name[j] = i;
    }
    L->named = true;
    return PD_OK;
}

/* data.classes: "cat, dog,bird" -> names in that order. */
static int names_from_config(pd_loader *L)
{
    const char *src = L->cfg->source[0] ? L->cfg->source : "config";
    const char *list = L->cfg->data.classes;
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    char **names = pd_calloc(n, sizeof *names);
    if (!names)
        return PD_ENOMEM;
    int err = PD_OK;
    const char *b = list;
    for (size_t k = 0; k < n; k++) {
        const char *comma = strchr(b, ','), *e = comma ? comma : b + strlen(b);
        const char *nb = b, *ne = e;
        pd_labels_trim(&nb, &ne);
        if (nb == ne) {
            err = PD_FAIL(PD_EINPUT, "%s: data.classes: name %zu is empty (\"%s\")", src,
                          k + 1, list);
            goto fail;
        }
        for (size_t j = 0; j < k; j++)
            if (strlen(names[j]) == (size_t)(ne - nb) && !memcmp(names[j], nb,
                                                                   (size_t)(ne - nb))) {
                err = PD_FAIL(PD_EINPUT, "%s: data.classes: \"%s\" is given twice", src,
                              names[j]);
                goto fail;
            }
        if (!(names[k] = pd_malloc((size_t)(ne - nb) + 1))) {
            err = PD_ENOMEM;
            goto fail;
        }
        memcpy(names[k], nb, (size_t)(ne - nb));
        names[k][ne - nb] = '\0';
        b = e + 1;
    }
    return set_names(L, names, n);
fail:
    for (size_t k = 0; k < n; k++)
        free(names[k]);
    free(names);
    return err;
}

/* The seen texts (sorted by name) in the order they first appeared. */
static void by_first_line(const pd_loader *L, size_t *order)
{
    for (size_t i = 0; i < L->nseen; i++) {
        size_t j = i;
        while (j > 0 && L->seen_line[order[j - 1]] > L->seen_line[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

/* logreg/svm with numbers: 0/1 or -1/+1 as before, else any two numbers. */
static int decide_binary_numbers(pd_loader *L)
{
    const char *model = model_name(L->cfg->model.type);
    size_t *order = pd_malloc((L->nseen ? L->nseen : 1) * sizeof *order);
    if (!order)
        return PD_ENOMEM;
    by_first_line(L, order);
    float v[3];
    size_t nv = 0, third = 0;
    bool standard = true;
    for (size_t i = 0; i < L->nseen && nv < 3; i++) {
        const char *b = L->seen[order[i]], *e = b + strlen(b);
        float x;
        pd_data_parse_float(&b, &e, &x);
        bool again = false;
        for (size_t k = 0; k < nv; k++)
            again |= v[k] == x;
        if (again)
            continue;
        if (nv == 2)
            third = order[i];
        v[nv++] = x;
    }
    for (size_t k = 0; k < nv; k++)
        standard &= v[k] == 1 || v[k] == 0 || v[k] == -1;
    bool zero = false, minus = false;
    for (size_t k = 0; k < nv; k++) {
        zero |= v[k] == 0;
        minus |= v[k] == -1;
    }
    int err = PD_OK;
    if (nv == 3)
        err = PD_FAIL(PD_EINPUT, "%s:%ld: label %s is a third label (after %g and %g): %s "
                      "takes two", L->path, L->seen_line[third], L->seen[third],
                      (double)v[0], (double)v[1], model);
    else if (standard && !(zero && minus))
        L->minus_one = minus;
    else if (nv == 1)
        err = PD_FAIL(PD_EINPUT, "%s:%ld: every label is %g: %s needs two (0/1, -1/+1 or "
                      "any two numbers)", L->path, L->seen_line[order[0]], (double)v[0], model);
    else {
        L->two = true;
        L->neg = v[0] < v[1] ? v[0] : v[1];
        L->pos = v[0] < v[1] ? v[1] : v[0];
    }
    free(order);
    return err;
}

int pd_labels_decide(pd_loader *L)
{
    pd_model_type t = L->cfg->model.type;
    const char *model = model_name(t);
    if (L->cfg->data.classes[0])
        PD_TRY(names_from_config(L));
    else if (L->survey && L->seen_word) {
        if (L->seen_overflow)
            return PD_FAIL(PD_EINPUT, "%s: more than %d distinct labels", L->path, SEEN_MAX);
        char **names = L->seen;
        size_t n = L->nseen;
        L->seen = NULL;
        L->nseen = L->seen_cap = 0;
        size_t third = n > 2 ? 2 : 0;
        if (is_binary(t) && n > 2) {
            /* the third name met, in file order */
            for (size_t i = 0; i < n; i++) {
                size_t before = 0;
                for (size_t j = 0; j < n; j++)
                    before += L->seen_line[j] < L->seen_line[i];
                if (before == 2)
                    third = i;
            }
        }
        long third_line = n > 2 ? L->seen_line[third] : 0;
        PD_TRY(set_names(L, names, n));
        if (is_binary(t) && n != 2) {
            char list[256];
            list_names(names, n, list, sizeof list);
            if (n > 2)
                return PD_FAIL(PD_EINPUT, "%s:%ld: label \"%s\" is a third label: %s takes "
                               "two (the labels are %s)", L->path, third_line, names[third],
                               model, list);
            return PD_FAIL(PD_EINPUT, "%s:%ld: every label is \"%s\": %s needs two", L->path,
                           L->seen_line[0], names[0], model);
        }
    } else if (L->survey && is_binary(t)) {
        PD_TRY(decide_binary_numbers(L));
    }
    if (L->named) {
        int C = L->cfg->model.classes;
        char list[256];
        list_names(L->names, L->nnames, list, sizeof list);
        if (is_binary(t) && L->nnames != 2)
            return PD_FAIL(PD_EINPUT, "%s: data.classes names %zu classes (%s): %s takes two",
                           L->path, L->nnames, list, model);
        if (!is_binary(t) && C > 0 && (size_t)C != L->nnames)
            return PD_FAIL(PD_EINPUT, "%s: model.classes is %d, but the labels name %zu "
                           "classes (%s)", L->path, C, L->nnames, list);
    }
    return PD_OK;
}

int pd_labels_lookup(const pd_loader *L, const char *b, const char *e, long line, size_t col,
                     float *y)
{
    pd_labels_trim(&b, &e);
    bool found;
    size_t at = lower_bound(L->names, L->by_name, L->nnames, b, e, &found);
    if (found) {
        *y = (float)L->by_name[at];
        return PD_OK;
    }
    char list[256];
    list_names(L->names, L->nnames, list, sizeof list);
    return PD_FAIL(PD_EINPUT, "%s:%ld: column %zu: label \"%.*s\" is not a class (%s, from %s)",
                   L->path, line, col, (int)(e - b), b, list,
                   L->cfg->data.classes[0] ? "data.classes" : "the training file's labels");
}

int pd_labels_binary(const pd_loader *L, const char *where, float *y)
{
    float v = *y;
    if (L->named) {
        *y = v == 1 ? 1.0f : -1.0f;
        return PD_OK;
    }
    if (v == L->pos || v == L->neg) {
        *y = v == L->pos ? 1.0f : -1.0f;
        return PD_OK;
    }
    return PD_FAIL(PD_EINPUT, "%s: label %g is neither of the training file's two labels "
                   "(%g negative, %g positive)", where, (double)v, (double)L->neg,
                   (double)L->pos);
}

/* Class i's name: its own (named labels), a binary file's label, or i in
 * decimal. */
static const char *class_name(const pd_loader *L, size_t i, char tmp[64])
{
    pd_model_type t = L->cfg->model.type;
    if (L->named)
        return L->names[i];
    if (is_binary(t) && L->two)
        snprintf(tmp, 64, "%g", (double)(i ? L->pos : L->neg));
    else if (is_binary(t))
        snprintf(tmp, 64, "%s", i ? "1" : L->minus_one ? "-1" : "0");
    else {
        /* Decimal by hand: a label of 16 million makes as many names. */
        char rev[24];
        int k = 0;
        do
            rev[k++] = (char)('0' + i % 10);
        while ((i /= 10) > 0);
        for (int j = 0; j < k; j++)
            tmp[j] = rev[k - 1 - j];
        tmp[k] = '\0';
    }
    return tmp;
}

/* The names in one block: names[0] points at its start (the strings one
 * after another), so pd_data_free frees two allocations whatever the
 * number of classes. */
int pd_labels_names(const pd_loader *L, int classes, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    pd_model_type t = L->cfg->model.type;
    size_t k = L->named ? L->nnames : is_binary(t) ? 2 : classes > 0 ? (size_t)classes : 0;
    if (k == 0)
        return PD_OK;
    char tmp[64];
    size_t bytes = 0;
    for (size_t i = 0; i < k; i++)
        bytes += strlen(class_name(L, i, tmp)) + 1;
    char **names = pd_calloc(k, sizeof *names);
    char *block = pd_malloc(bytes);
    if (!names || !block) {
        free(names);
        free(block);
        return PD_ENOMEM;
    }
    char *at = block;
    for (size_t i = 0; i < k; i++) {
        const char *s = class_name(L, i, tmp);
        size_t len = strlen(s) + 1;
        memcpy(at, s, len);
        names[i] = at;
        at += len;
    }
    *out = names;
    *n = k;
    return PD_OK;
}

void pd_labels_free(pd_loader *L)
{
    for (size_t i = 0; i < L->nseen; i++)
        free(L->seen[i]);
    free(L->seen);
    free(L->seen_line);
    for (size_t i = 0; i < L->nnames; i++)
        free(L->names[i]);
    free(L->names);
    free(L->by_name);
}
