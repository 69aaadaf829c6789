/* The BLAS underneath the models: its version, its threads, and a way
 * round a gap in the OpenBLAS Debian 12 ships.
 *
 * OpenBLAS 0.3.21 built with DYNAMIC_ARCH picks its kernel set when the
 * library loads, from the CPU's family and model numbers. Intel models it
 * does not know (Sapphire and Emerald Rapids among them, and the generic
 * "Intel Xeon Processor" many cloud VMs show) fall back to the Prescott
 * (SSE3) kernels, whatever the CPU can do: sgemm then runs at a fraction
 * of its speed (OpenBLAS issue 4267, fixed in 0.3.25). The variable
 * OPENBLAS_CORETYPE overrides the choice, but only before the library
 * loads; pd_model_blas_better_core says which kernel set this CPU can run
 * when OpenBLAS settled for Prescott, and main() then sets the variable and
 * executes paramd again. */
#include <cblas.h>
#include <strings.h>

#include "paramd/model.h"

const char *pd_model_blas_version(void)
{
    return openblas_get_config();
}

const char *pd_model_blas_core(void)
{
    return openblas_get_corename();
}

void pd_model_blas_threads(int n)
{
    if (n > 0)
        openblas_set_num_threads(n);
}

const char *pd_model_blas_better_core(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (strcasecmp(openblas_get_corename(), "prescott") != 0)
        return NULL;
    __builtin_cpu_init();
    /* libgcc checks that the OS saves the AVX and AVX-512 state too. */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    if (__builtin_cpu_supports("avx"))
        return "Sandybridge";
#endif
    return NULL;
}
