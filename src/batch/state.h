/* Private to src/batch: the words of a minimizer's saved state
 * (pd_batch_save): little-endian u64 each, integers as they are and
 * doubles as their IEEE-754 binary64 bit patterns. A writer without a
 * buffer only counts; a reader past the end, or finding a word it did not
 * expect, marks itself bad. */
#ifndef PARAMD_BATCH_STATE_H
#define PARAMD_BATCH_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "paramd/batch.h"
#include "paramd/le.h"

#define PD_BATCH_STATE_MAGIC 0x0148435442445050ull   /* "PPDBTCH" + version 1 */

typedef struct wbuf { unsigned char *p; size_t at, size; } wbuf;
typedef struct rbuf { const unsigned char *p; size_t at, size; bool bad; } rbuf;

static inline void w_u64(wbuf *b, uint64_t v)
{
    if (b->p && b->at + 8 <= b->size)
        pd_le_put64(b->p + b->at, v);
    b->at += 8;
}

static inline void w_f64(wbuf *b, double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    w_u64(b, u);
}

static inline void w_f64s(wbuf *b, const double *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        w_f64(b, d[i]);
}

static inline uint64_t r_u64(rbuf *b)
{
    if (b->bad || b->size - b->at < 8) {
        b->bad = true;
        return 0;
    }
    uint64_t v = pd_le_get64(b->p + b->at);
    b->at += 8;
    return v;
}

static inline double r_f64(rbuf *b)
{
    uint64_t u = r_u64(b);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static inline void r_f64s(rbuf *b, double *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = r_f64(b);
}

/* What a state must match to be loaded: the method and its settings, the
 * parts and this part's coordinates. */
enum { STATE_HEADER_WORDS = 11 };

static inline void state_header(const pd_batch_opts *o, size_t N, size_t off, size_t n,
                                uint64_t h[STATE_HEADER_WORDS])
{
    const pd_batch_comm *c = o->comm;
    uint64_t v[STATE_HEADER_WORDS] = {
        PD_BATCH_STATE_MAGIC, (uint64_t)o->method, (uint64_t)o->cg_variant,
        (uint64_t)o->history, (uint64_t)o->block_size, (uint64_t)o->random_blocks,
        c ? (uint64_t)c->parts : 1, c ? (uint64_t)c->part : 0, N, off, n,
    };
    memcpy(h, v, sizeof v);
}

static inline void w_header(wbuf *b, const pd_batch_opts *o, size_t N, size_t off, size_t n)
{
    uint64_t h[STATE_HEADER_WORDS];
    state_header(o, N, off, n, h);
    for (int k = 0; k < STATE_HEADER_WORDS; k++)
        w_u64(b, h[k]);
}

/* PD_EINPUT naming what differs, from o->resume_name. */
int pd_batch_check_header(rbuf *b, const pd_batch_opts *o, size_t N, size_t off, size_t n);

/* PD_EINPUT when a state's words ran out, or some are left over. */
int pd_batch_check_end(const rbuf *b, const pd_batch_opts *o);

/* What pd_batch_save calls: the minimizer's (or cd's) writer. */
struct pd_batch_run {
    size_t (*save)(const void *self, unsigned char *buf, size_t size);
    const void *self;
};

/* The stopping rules after iteration it (0: the start, where only the
 * gradient's norm counts), f_old the loss before it. */
const char *pd_batch_why_stop(const pd_batch_opts *o, int64_t it, double f_old, double f,
                              double gnorm, bool stop);

#endif
