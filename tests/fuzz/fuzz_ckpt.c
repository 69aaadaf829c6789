/* The checkpoint part decoder, pd_ckpt_decode, on the input. Every header
 * and section crc32 is first recomputed (as the fuzzer cannot forge them),
 * so mutations reach the section parsers behind the checksums; the input
 * is tried as is too, so the checksum refusals stay covered. The layout
 * and config hashes expected are the input's own.
 *
 * On success the decoder's promise is checked: every array it allocated
 * holds the count it announces (each last element is read, which
 * AddressSanitizer checks), and a decoded part encodes to bytes that decode
 * and encode again to the same bytes.
 *
 * Seeds (corpus/ckpt): part 0 of the last checkpoint of two runs on a
 * six-row CSV (linreg, features a and b): serial adam, and sync momentum
 * with two workers (its part carries their iterator and worker states),
 * and that sync part with a LOST section added (worker 0 lost and
 * rejoined, worker 1 lost; format version 5, paramd/ckpt.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "paramd/ckpt.h"
#include "paramd/error.h"
#include "paramd/le.h"

static uint32_t crc(const unsigned char *p, size_t n)
{
    return (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), p, n);
}

/* Recompute the header's and each complete section's crc32 in place. */
static void fix_crcs(unsigned char *b, size_t size)
{
    if (size < PD_CKPT_HEADER)
        return;
    pd_le_put32(b + 32, crc(b, 32));
    size_t at = PD_CKPT_HEADER;
    while (size - at >= PD_CKPT_SECTION) {
        uint64_t len = pd_le_get64(b + at + 8);
        if (len > size - at - PD_CKPT_SECTION)
            return;
        pd_le_put32(b + at + 4, crc(b + at + PD_CKPT_SECTION, (size_t)len));
        at += PD_CKPT_SECTION + (size_t)len;
    }
}

static volatile unsigned char sink;

/* Read each array's last element: the allocation must hold the count. */
static void touch(const pd_ckpt_part *p)
{
    if (p->hi < p->lo)
        abort();
    if (p->hi > p->lo)
        sink ^= ((const unsigned char *)&p->params[p->hi - p->lo - 1])[0];
    if (p->optim_size)
        sink ^= p->optim[p->optim_size - 1];
    for (size_t i = 0; i < p->niters; i++)
        if (p->iter_size[i])
            sink ^= p->iter[i][p->iter_size[i] - 1];
    if (p->nstale)
        sink ^= (unsigned char)p->stale[p->nstale - 1];
    if (p->nworkers)
        sink ^= (unsigned char)p->worker[p->nworkers - 1].bad;
    if (p->nbest)
        sink ^= ((const unsigned char *)&p->best[p->nbest - 1])[0];
    for (size_t i = 0; i < p->nwstates; i++)
        if (p->wstate[i].optim_size)
            sink ^= p->wstate[i].optim[p->wstate[i].optim_size - 1];
    if (p->nlost)
        sink ^= (unsigned char)p->lost[p->nlost - 1].rejoined;
}

static void decode(const unsigned char *b, size_t size)
{
    uint64_t lh = size >= 32 ? pd_le_get64(b + 16) : 0, ch = size >= 32 ? pd_le_get64(b + 24) : 0;
    pd_ckpt_part p, q;
    if (pd_ckpt_decode("fuzz.pdck", b, size, lh, ch, &p) != PD_OK)
        return;
    touch(&p);
    unsigned char *e1 = NULL, *e2 = NULL;
    size_t n1 = 0, n2 = 0;
    if (pd_ckpt_encode(&p, &e1, &n1) != PD_OK ||
        pd_ckpt_decode("fuzz.pdck", e1, n1, lh, ch, &q) != PD_OK)
        abort();                     /* what decodes must encode and decode */
    if (pd_ckpt_encode(&q, &e2, &n2) != PD_OK || n1 != n2 || memcmp(e1, e2, n1) != 0)
        abort();
    free(e1);
    free(e2);
    pd_ckpt_part_free(&p);
    pd_ckpt_part_free(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode(data, size);
    pd_err_clear();
    unsigned char *b = malloc(size ? size : 1);
    if (!b)
        abort();
    memcpy(b, data, size);
    fix_crcs(b, size);
    decode(b, size);
    free(b);
    pd_err_clear();
    return 0;
}
