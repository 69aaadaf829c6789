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
#include <math.h>
#include <stdint.h>
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

/* sgemm as the models call it (row-major; NN, NT and TN) on a few shapes,
 * small and not so small, against a double-precision loop. */
bool pd_model_blas_selfcheck(void)
{
    enum { MAXM = 37, MAXN = 70, MAXK = 131 };
    static const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {16, 16, 16}, {MAXM, MAXN, MAXK}};
    static float a[MAXM * MAXK], b[MAXK * MAXN], c[MAXM * MAXN];
    uint32_t x = 12345;
    for (size_t i = 0; i < MAXM * MAXK; i++)
        a[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (size_t i = 0; i < MAXK * MAXN; i++)
        b[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        for (int tr = 0; tr < 3; tr++) {
            /* tr 0: A[m][k] B[k][n]; 1: B read as [n][k] transposed; 2: A
             * read as [k][m] transposed. The same buffers, other strides. */
            enum CBLAS_TRANSPOSE ta = tr == 2 ? CblasTrans : CblasNoTrans;
            enum CBLAS_TRANSPOSE tb = tr == 1 ? CblasTrans : CblasNoTrans;
            int lda = tr == 2 ? m : k, ldb = tr == 1 ? k : n;
            cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    double sum = 0, mag = 0;
                    for (int p = 0; p < k; p++) {
                        double av = tr == 2 ? a[p * m + i] : a[i * k + p];
                        double bv = tr == 1 ? b[j * k + p] : b[p * n + j];
                        sum += av * bv;
                        mag += fabs(av * bv);
                    }
                    if (!(fabs(c[i * n + j] - sum) <= 1e-4 * mag + 1e-30))
                        return false;
                }
            }
        }
    }
    return true;
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
