/* The data readers through pd_data_load, the path paramd takes: one
 * option byte picks the config, the rest is the file (IDX: a 4-byte
 * little-endian length of the images file, the images, then the labels). */
#ifndef PD_FUZZ_DATA_H
#define PD_FUZZ_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "paramd/config.h"

int pd_fuzz_data(pd_data_format format, const uint8_t *data, size_t size);

#endif
