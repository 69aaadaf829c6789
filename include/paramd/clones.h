/* PD_CLONES: compile an element-wise hot loop twice, for AVX2 and for the
 * baseline x86-64 (SSE2), the copy taken once at load time from the CPU
 * (GCC's target_clones, an ifunc). Debian builds for baseline x86-64, so
 * without it every loop runs 4 floats at a time where the CPUs this runs
 * on take 8.
 *
 * Bits: the AVX2 copy performs the same IEEE operations on each element as
 * the baseline one (no FMA: "avx2" does not enable it, and ISO C mode does
 * not contract), and GCC vectorizes no float reduction whose order it
 * would change; both copies give the same results, so runs stay
 * bit-reproducible across machines with and without AVX2. Other
 * compilers and architectures get the plain function. */
#ifndef PARAMD_CLONES_H
#define PARAMD_CLONES_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define PD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PD_CLONES
#endif

#endif
