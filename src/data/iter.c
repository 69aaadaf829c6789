/* Minibatch iterator: hands out slices of an order array over the rows of
 * one dataset. The order is the identity (shuffle none), one permutation
 * drawn at creation (once), or a fresh permutation of the identity at each
 * epoch start (every_epoch), so an epoch's order depends only on the rng
 * state at its start. With a curriculum, each epoch start first picks the
 * admitted rows (easiest first, see data.h), then orders only those.
 * Nothing is allocated after creation and pd_iter_set_curriculum. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paramd/data.h"
#include "paramd/error.h"
#include "paramd/le.h"

struct pd_iter {
    size_t n, batch, cursor;
    size_t m;               /* rows of the current epoch: order[0..m) */
    pd_shuffle shuffle;
    bool drop_last;
    int64_t epoch;          /* completed epochs */
    uint64_t stream_index;
    pd_rng rng;             /* (seed, PD_STREAM_SHUFFLE, stream_index) */
    size_t *order;          /* [n] row indices */
    /* curriculum, when cur is true */
    bool cur;
    pd_curriculum_config cc;
    pd_rng crng;            /* (seed, PD_STREAM_CURRICULUM, stream_index) */
    size_t *easy;           /* [n] rows by increasing score, ties by row */
    size_t *perm;           /* [n] once: the permutation drawn at creation */
    size_t *pool;           /* [n] stochastic: scratch for the random draw */
    unsigned char *in;      /* [n] 1 when the row is admitted this epoch */
};

static void draw(pd_iter *it)
{
    for (size_t i = 0; i < it->n; i++)
        it->order[i] = i;
    pd_rng_shuffle(&it->rng, it->order, it->n);
}

int pd_iter_create(const pd_dataset *ds, size_t batch, pd_shuffle shuffle,
                   bool drop_last, uint64_t seed, uint64_t stream_index,
                   pd_iter **out)
{
    *out = NULL;
    if (batch == 0)
        return PD_FAIL(PD_EINPUT, "minibatch size must be at least 1");
    pd_iter *it = pd_calloc(1, sizeof *it);
    if (!it)
        return PD_ENOMEM;
    it->n = it->m = ds->n;
    it->batch = batch;
    it->shuffle = shuffle;
    it->drop_last = drop_last;
    it->stream_index = stream_index;
    it->rng = pd_rng_make(seed, PD_STREAM_SHUFFLE, stream_index);
    it->order = pd_malloc(it->n * sizeof *it->order);
    if (!it->order) {
        free(it);
        return PD_ENOMEM;
    }
    if (shuffle == PD_SHUFFLE_NONE)
        for (size_t i = 0; i < it->n; i++)
            it->order[i] = i;
    else
        draw(it);
    *out = it;
    return PD_OK;
}

static void free_curriculum(pd_iter *it)
{
    free(it->easy);
    free(it->pool);
    free(it->in);
    it->easy = it->pool = NULL;
    it->in = NULL;
    it->cur = false;
}

void pd_iter_destroy(pd_iter **pit)
{
    pd_iter *it = pit ? *pit : NULL;
    if (!it)
        return;
    free_curriculum(it);
    free(it->perm);
    free(it->order);
    free(it);
    *pit = NULL;
}

/* m(e) and the random share h(e) of data.h; 1e-9 absorbs the rounding of
 * f n (0.1 * 30 is 3.0000000000000004, and admits 3). */
static size_t admitted_count(const pd_iter *it, int64_t e, double *h)
{
    const pd_curriculum_config *c = &it->cc;
    *h = 1.0;
    if (!it->cur || e >= c->epochs || it->n == 0)
        return it->n;
    double f = c->start + (1.0 - c->start) * (double)e / (double)c->epochs;
    f = f < 1.0 ? f : 1.0;
    *h = c->start < 1.0 ? (f - c->start) / (1.0 - c->start) : 1.0;
    double x = ceil(f * (double)it->n - 1e-9);
    return x < 1.0 ? 1 : x >= (double)it->n ? it->n : (size_t)x;
}

/* Epoch start with a curriculum: mark the admitted rows, then order them
 * by the shuffle policy into order[0..m). */
static void admit(pd_iter *it)
{
    double h;
    size_t n = it->n, m = admitted_count(it, it->epoch, &h);
    size_t r = it->cc.stochastic ? (size_t)floor(h * (double)m + 1e-9) : 0;
    r = r < m ? r : m;
    size_t easy = m - r, rest = n - easy;
    memset(it->in, 0, n);
    for (size_t k = 0; k < easy; k++)
        it->in[it->easy[k]] = 1;
    if (r > 0) {
        /* r distinct rows of the rest, uniformly: a partial Fisher-Yates. */
        memcpy(it->pool, it->easy + easy, rest * sizeof *it->pool);
        for (size_t k = 0; k < r; k++) {
            size_t j = k + (size_t)pd_rng_below(&it->crng, rest - k);
            size_t t = it->pool[k];
            it->pool[k] = it->pool[j];
            it->pool[j] = t;
            it->in[it->pool[k]] = 1;
        }
    }
    size_t o = 0;
    const size_t *src = it->shuffle == PD_SHUFFLE_ONCE ? it->perm : NULL;
    for (size_t k = 0; k < n; k++) {
        size_t i = src ? src[k] : k;
        if (it->in[i])
            it->order[o++] = i;
    }
    if (it->shuffle == PD_SHUFFLE_EVERY_EPOCH)
        pd_rng_shuffle(&it->rng, it->order, m);
    it->m = m;
}

typedef struct scored {
    float score;
    size_t row;
} scored;

static int by_score(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* Type none: drop the curriculum and give the epoch every row again, in
 * the shuffle policy's order. */
static void remove_curriculum(pd_iter *it)
{
    bool was = it->cur;
    free_curriculum(it);
    it->m = it->n;
    if (!was)
        return;
    if (it->shuffle == PD_SHUFFLE_ONCE) {
        memcpy(it->order, it->perm, it->n * sizeof *it->order);
    } else if (it->shuffle == PD_SHUFFLE_EVERY_EPOCH) {
        draw(it);
    } else {
        for (size_t i = 0; i < it->n; i++)
            it->order[i] = i;
    }
}

static int check_curriculum(const float *score, size_t n, const pd_curriculum_config *cc)
{
    if (!(cc->start > 0.0 && cc->start <= 1.0) || cc->epochs < 1)
        return PD_FAIL(PD_EINPUT, "data.curriculum: start must be in (0, 1] and epochs "
                       ">= 1, got %g and %d", cc->start, cc->epochs);
    for (size_t i = 0; i < n; i++)
        if (isnan(score[i]))
            return PD_FAIL(PD_EINPUT, "data.curriculum: example %zu has a NaN score", i);
    return PD_OK;
}

/* The curriculum's arrays (easy, pool, in) and, under shuffle once, the
 * creation permutation kept aside before admit() first overwrites order. */
static int alloc_curriculum(pd_iter *it)
{
    size_t n = it->n ? it->n : 1;
    it->easy = pd_malloc(n * sizeof *it->easy);
    it->pool = pd_malloc(n * sizeof *it->pool);
    it->in = pd_malloc(n);
    if (!it->perm && it->shuffle == PD_SHUFFLE_ONCE) {
        it->perm = pd_malloc(n * sizeof *it->perm);
        if (it->perm)
            memcpy(it->perm, it->order, it->n * sizeof *it->perm);
    }
    if (!it->easy || !it->pool || !it->in || (it->shuffle == PD_SHUFFLE_ONCE && !it->perm))
        return PD_ENOMEM;
    return PD_OK;
}

/* easy[k] = the row of the k-th lowest score (ties by row index). */
static int rank_by_score(pd_iter *it, const float *score)
{
    size_t n = it->n;
    scored *tmp = pd_malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp)
        return PD_ENOMEM;
    for (size_t i = 0; i < n; i++)
        tmp[i] = (scored){score[i], i};
    qsort(tmp, n, sizeof *tmp, by_score);
    for (size_t k = 0; k < n; k++)
        it->easy[k] = tmp[k].row;
    free(tmp);
    return PD_OK;
}

int pd_iter_set_curriculum(pd_iter *it, const float *score, const pd_curriculum_config *cc,
                           uint64_t seed)
{
    it->cursor = 0;
    if (cc->type == PD_CURRICULUM_NONE) {
        remove_curriculum(it);
        return PD_OK;
    }
    PD_TRY(check_curriculum(score, it->n, cc));
    free_curriculum(it);
    int err = alloc_curriculum(it);
    if (err == PD_OK)
        err = rank_by_score(it, score);
    if (err != PD_OK) {
        free_curriculum(it);
        it->m = it->n;
        return err;
    }
    it->cc = *cc;
    it->crng = pd_rng_make(seed, PD_STREAM_CURRICULUM, it->stream_index);
    it->cur = true;
    admit(it);
    return PD_OK;
}

size_t pd_iter_admitted(const pd_iter *it) { return it->m; }

bool pd_iter_next(pd_iter *it, const size_t **rows, size_t *n)
{
    size_t left = it->m - it->cursor;
    if (left == 0 || (it->drop_last && left < it->batch)) {
        it->cursor = 0;
        it->epoch++;
        if (it->cur)
            admit(it);
        else if (it->shuffle == PD_SHUFFLE_EVERY_EPOCH)
            draw(it);
        *rows = NULL;
        *n = 0;
        return false;
    }
    *n = left < it->batch ? left : it->batch;
    *rows = it->order + it->cursor;
    it->cursor += *n;
    return true;
}

int64_t pd_iter_epoch(const pd_iter *it) { return it->epoch; }

/* ---- state (checkpoints) -------------------------------------------------- */

#define ITER_MAGIC 0x54494450u   /* "PDIT" */
#define ITER_VERSION 1u

/* The saved header, every field little-endian (paramd/le.h) on every host:
 *   0 magic u32  4 version u32  8 n u64  16 batch u64  24 shuffle u32
 *   28 drop_last u32  32 cur u32  36 zero u32  40 epoch i64  48 cursor u64
 *   56 m u64  64 rng s[0..3] u64  96 crng s[0..3] u64 (zero without a
 *   curriculum)
 * then order[0..m) as u64. */
enum { ITER_HEADER = 128 };

typedef struct iter_header {
    uint32_t magic, version;
    uint64_t n, batch;
    uint32_t shuffle, drop_last, cur;
    int64_t epoch;
    uint64_t cursor, m;
    pd_rng rng, crng;
} iter_header;

static void put_rng(unsigned char *p, const pd_rng *r)
{
    for (int k = 0; k < 4; k++)
        pd_le_put64(p + 8 * k, r->s[k]);
}

static pd_rng get_rng(const unsigned char *p)
{
    pd_rng r;
    for (int k = 0; k < 4; k++)
        r.s[k] = pd_le_get64(p + 8 * k);
    return r;
}

size_t pd_iter_state_size(const pd_iter *it)
{
    return ITER_HEADER + it->m * 8;
}

int pd_iter_save(const pd_iter *it, void *buf, size_t size)
{
    return pd_iter_save_before(it, 0, buf, size);
}

/* A successful pd_iter_next only moves the cursor on (an epoch's end,
 * its redraw included, is a call of its own): the cursor back is the
 * state before it. */
int pd_iter_save_before(const pd_iter *it, size_t back, void *buf, size_t size)
{
    if (back > it->cursor)
        return PD_FAIL(PD_EINPUT, "iterator state: %zu rows to give back, %zu drawn in this "
                       "epoch", back, it->cursor);
    size_t need = pd_iter_state_size(it);
    if (size < need)
        return PD_FAIL(PD_EINPUT, "iterator state: buffer of %zu bytes, need %zu", size, need);
    unsigned char *p = buf;
    memset(p, 0, ITER_HEADER);
    pd_le_put32(p, ITER_MAGIC);
    pd_le_put32(p + 4, ITER_VERSION);
    pd_le_put64(p + 8, it->n);
    pd_le_put64(p + 16, it->batch);
    pd_le_put32(p + 24, (uint32_t)it->shuffle);
    pd_le_put32(p + 28, it->drop_last);
    pd_le_put32(p + 32, it->cur);
    pd_le_put64(p + 40, (uint64_t)it->epoch);
    pd_le_put64(p + 48, it->cursor - back);
    pd_le_put64(p + 56, it->m);
    put_rng(p + 64, &it->rng);
    if (it->cur)
        put_rng(p + 96, &it->crng);
    for (size_t k = 0; k < it->m; k++)
        pd_le_put64(p + ITER_HEADER + 8 * k, it->order[k]);
    return PD_OK;
}

int pd_iter_state_epoch(const void *buf, size_t size, int64_t *epoch)
{
    const unsigned char *p = buf;
    if (size < ITER_HEADER || pd_le_get32(p) != ITER_MAGIC)
        return PD_FAIL(PD_EINPUT, "iterator state: %zu bytes, not an iterator state", size);
    *epoch = (int64_t)pd_le_get64(p + 40);
    return PD_OK;
}

int pd_iter_load(pd_iter *it, const void *buf, size_t size)
{
    if (size < ITER_HEADER)
        return PD_FAIL(PD_EINPUT, "iterator state: %zu bytes, too short for the %d-byte header",
                       size, ITER_HEADER);
    const unsigned char *p = buf;
    iter_header h = {
        .magic = pd_le_get32(p), .version = pd_le_get32(p + 4), .n = pd_le_get64(p + 8),
        .batch = pd_le_get64(p + 16), .shuffle = pd_le_get32(p + 24),
        .drop_last = pd_le_get32(p + 28), .cur = pd_le_get32(p + 32),
        .epoch = (int64_t)pd_le_get64(p + 40), .cursor = pd_le_get64(p + 48),
        .m = pd_le_get64(p + 56), .rng = get_rng(p + 64), .crng = get_rng(p + 96),
    };
    if (h.magic != ITER_MAGIC)
        return PD_FAIL(PD_EINPUT, "iterator state: bad magic 0x%08x (not an iterator state)",
                       (unsigned)h.magic);
    if (h.version != ITER_VERSION)
        return PD_FAIL(PD_EINPUT, "iterator state: version %u, this build reads version %u",
                       (unsigned)h.version, ITER_VERSION);
    if (h.n != it->n || h.batch != it->batch || h.shuffle != (uint32_t)it->shuffle ||
        h.drop_last != (uint32_t)it->drop_last || h.cur != (uint32_t)it->cur)
        return PD_FAIL(PD_EINPUT, "iterator state: saved for %llu rows, batch %llu, shuffle %u, "
                       "drop_last %u, curriculum %u; this iterator has %zu, %zu, %u, %u, %u",
                       (unsigned long long)h.n, (unsigned long long)h.batch, (unsigned)h.shuffle,
                       (unsigned)h.drop_last, (unsigned)h.cur, it->n, it->batch,
                       (unsigned)it->shuffle, (unsigned)it->drop_last, (unsigned)it->cur);
    if (h.m > h.n || h.cursor > h.m || h.epoch < 0)
        return PD_FAIL(PD_EINPUT, "iterator state: cursor %llu of %llu admitted rows of %llu, "
                       "epoch %lld (corrupt)", (unsigned long long)h.cursor,
                       (unsigned long long)h.m, (unsigned long long)h.n, (long long)h.epoch);
    size_t need = ITER_HEADER + (size_t)h.m * 8;
    if (size != need)
        return PD_FAIL(PD_EINPUT, "iterator state: %zu bytes, expected %zu (%s)", size, need,
                       size < need ? "truncated" : "trailing bytes");
    /* Validate every row before anything changes. */
    const unsigned char *q = p + ITER_HEADER;
    for (size_t k = 0; k < h.m; k++) {
        uint64_t r = pd_le_get64(q + 8 * k);
        if (r >= h.n)
            return PD_FAIL(PD_EINPUT, "iterator state: row %llu at position %zu of %llu rows "
                           "(corrupt)", (unsigned long long)r, k, (unsigned long long)h.n);
    }
    it->epoch = h.epoch;
    it->cursor = h.cursor;
    it->m = h.m;
    it->rng = h.rng;
    if (it->cur)
        it->crng = h.crng;   /* `in` is admit()'s scratch: nothing to restore */
    for (size_t k = 0; k < h.m; k++)
        it->order[k] = (size_t)pd_le_get64(q + 8 * k);
    return PD_OK;
}

size_t pd_iter_batches_per_epoch(const pd_iter *it)
{
    return it->drop_last ? it->m / it->batch : (it->m + it->batch - 1) / it->batch;
}
