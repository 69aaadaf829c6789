/* Shared between the ckpt module's files (not installed). */
#ifndef PARAMD_CKPT_IMPL_H
#define PARAMD_CKPT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paramd/ckpt.h"

/* Sections every part has; the optional ones (BTCH, TRCE, LOST) follow them. */
enum { NSECTIONS = 6, NSECTIONS_MAX = 9 };

/* zlib's crc32 of p[0..n). */
uint32_t ckpt_crc(const unsigned char *p, size_t n);
/* pd_ckpt_decode that also says whether a refusal is damage (*damaged
 * true) or a checkpoint of another model or config (false). */
int ckpt_decode(const char *file, const unsigned char *buf, size_t size, uint64_t layout_hash,
                uint64_t config_hash, pd_ckpt_part *out, bool *damaged);

#endif
