/* Seeded random streams. Every stream is derived from run.seed and a stream
 * id (rank, purpose), so runs are reproducible and each rank's state is a
 * plain value that checkpoints can save (xoshiro256**, seeded by splitmix64).
 * Local: no function here touches shared state.
 */
#ifndef PARAMD_RNG_H
#define PARAMD_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct pd_rng {
    uint64_t s[4];
} pd_rng;

/* Stream ids: one per purpose, combined with a rank or worker index. */
enum {
    PD_STREAM_INIT = 1,     /* parameter initialization */
    PD_STREAM_SPLIT = 2,    /* validation hold-out */
    PD_STREAM_SHUFFLE = 3,  /* per-worker minibatch order (+ worker) */
    PD_STREAM_NOISE = 4,    /* annealed gradient noise */
    PD_STREAM_FAULTS = 5,   /* injected delays (+ rank) */
    PD_STREAM_CURRICULUM = 6, /* curriculum warm-up order and random draws (+ worker) */
    PD_STREAM_CD = 7,       /* coordinate descent's block order */
};

/* A stream for (seed, stream, index): independent for distinct triples. */
pd_rng pd_rng_make(uint64_t seed, uint64_t stream, uint64_t index);
uint64_t pd_rng_next(pd_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double pd_rng_uniform(pd_rng *r);
/* Uniform integer in [0, n), unbiased (n > 0). */
uint64_t pd_rng_below(pd_rng *r, uint64_t n);
/* Standard normal (Box-Muller, one value per call). */
double pd_rng_normal(pd_rng *r);
/* Fisher-Yates shuffle of n size_t values. */
void pd_rng_shuffle(pd_rng *r, size_t *v, size_t n);
/* A stateless 64-bit mix (splitmix64 finalizer) for counter-based draws. */
uint64_t pd_hash64(uint64_t x);

#endif
