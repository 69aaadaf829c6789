/* Shared by the libFuzzer targets in tests/fuzz: the readers take paths, so
 * each target writes its input to a memfd once per run and hands the
 * reader /proc/self/fd/N, the same code path as a file on disk. */
#ifndef PD_FUZZ_H
#define PD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An in-memory file named `name` (for messages); returns its fd and writes
 * "/proc/self/fd/N" into path. Aborts when the system refuses. */
int pd_fuzz_memfd(const char *name, char *path, size_t size);
/* Replace the memfd's contents by data[0, size). Aborts on failure. */
void pd_fuzz_fill(int fd, const uint8_t *data, size_t size);

#endif
