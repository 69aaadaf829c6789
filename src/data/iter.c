/* Minibatch iterator: hands out slices of an order array over the rows of
 * one dataset. The order is the identity (shuffle none), one permutation
 * drawn at creation (once), or a fresh permutation of the identity at each
 * epoch start (every_epoch), so an epoch's order depends only on the rng
 * state at its start. Nothing is allocated after creation. */
#include <stdlib.h>

#include "paramd/data.h"
#include "paramd/error.h"

struct pd_iter {
    size_t n, batch, cursor;
    pd_shuffle shuffle;
    bool drop_last;
    int64_t epoch;          /* completed epochs */
    pd_rng rng;             /* (seed, PD_STREAM_SHUFFLE, stream_index) */
    size_t *order;          /* [n] row indices */
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
    it->n = ds->n;
    it->batch = batch;
    it->shuffle = shuffle;
    it->drop_last = drop_last;
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

void pd_iter_destroy(pd_iter **pit)
{
    pd_iter *it = pit ? *pit : NULL;
    if (!it)
        return;
    free(it->order);
    free(it);
    *pit = NULL;
}

bool pd_iter_next(pd_iter *it, const size_t **rows, size_t *n)
{
    size_t left = it->n - it->cursor;
    if (left == 0 || (it->drop_last && left < it->batch)) {
        it->cursor = 0;
        it->epoch++;
        if (it->shuffle == PD_SHUFFLE_EVERY_EPOCH)
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

size_t pd_iter_batches_per_epoch(const pd_iter *it)
{
    return it->drop_last ? it->n / it->batch : (it->n + it->batch - 1) / it->batch;
}
