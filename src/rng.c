/* xoshiro256** streams seeded through splitmix64 (Blackman and Vigna). */
#include "paramd/rng.h"

#include <math.h>

uint64_t pd_hash64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

pd_rng pd_rng_make(uint64_t seed, uint64_t stream, uint64_t index)
{
    pd_rng r;
    uint64_t x = pd_hash64(pd_hash64(seed) ^ pd_hash64(stream * 0x632be59bd9b4e019ULL)
                           ^ (index * 0xd1b54a32d192ed03ULL));
    for (int i = 0; i < 4; i++) {
        x = pd_hash64(x + (uint64_t)i);
        r.s[i] = x;
    }
    if (!(r.s[0] | r.s[1] | r.s[2] | r.s[3]))
        r.s[0] = 1;
    return r;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pd_rng_next(pd_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double pd_rng_uniform(pd_rng *r)
{
    return (double)(pd_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t pd_rng_below(pd_rng *r, uint64_t n)
{
    /* Rejection on the top of the range keeps it unbiased. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = pd_rng_next(r);
    while (x >= limit);
    return x % n;
}

double pd_rng_normal(pd_rng *r)
{
    double u1 = pd_rng_uniform(r), u2 = pd_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void pd_rng_shuffle(pd_rng *r, size_t *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)pd_rng_below(r, i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}
