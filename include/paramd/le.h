/* Little-endian encoding of fixed-width integers and floats, for every byte
 * paramd writes to disk (optimizer and iterator states, checkpoints): the
 * bytes are the same on every host, whatever its own byte order. Header
 * only (static inline), no library to link. */
#ifndef PARAMD_LE_H
#define PARAMD_LE_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

static inline void pd_le_put32(unsigned char *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static inline void pd_le_put64(unsigned char *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static inline uint32_t pd_le_get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++)
        v |= (uint32_t)p[k] << (8 * k);
    return v;
}

static inline uint64_t pd_le_get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

/* IEEE-754 binary32, stored as its bit pattern. */
static inline void pd_le_putf(unsigned char *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, sizeof v);
    pd_le_put32(p, v);
}

static inline float pd_le_getf(const unsigned char *p)
{
    uint32_t v = pd_le_get32(p);
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}

/* n floats to / from 4n little-endian bytes. */
static inline void pd_le_put_floats(unsigned char *p, const float *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pd_le_putf(p + 4 * i, f[i]);
}

static inline void pd_le_get_floats(float *f, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        f[i] = pd_le_getf(p + 4 * i);
}

#endif
