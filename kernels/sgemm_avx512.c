/* The f32 GEMM with a fused bias + clamp epilogue of kernels/sgemm_avx512.h.
 *
 * C is computed in tiles of MR = 8 rows x NR = 32 columns: 16 accumulator
 * registers, and per k two loads of B's row segment and eight FMAs with A's
 * elements broadcast from memory (embedded broadcast), 16 FMAs a step, so
 * the FMA units rather than the loads bound it. For each 32-column panel of
 * B (K x 32 floats: 128 bytes a row, L1/L2-resident while it is reused) the
 * tiles walk down all of C's rows; A's rows are read in order, eight streams
 * at a time. When A is the bigger operand (more rows than columns: a conv's
 * weights on a small image) the loops swap, so that each 8-row block of A
 * is read from memory once and reused across all panels of B. Column tails use masked loads and stores; a row tail is a tile
 * of fewer rows (the row count is a compile-time constant in each of the
 * eight instances, so the loops unroll). Each C element is one sum over k in
 * order, so results do not depend on how callers split C.
 */
#include "kernels/sgemm_avx512.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,fma")))
#define MR 8
#define NR 32

bool nb_sgemm_avx512_enabled(void)
{
    static atomic_int env; /* 0: not read yet, 1: on, 2: off */
    if (atomic_load(&env) == 0) {
        const char *e = getenv("NABLA_OWN_GEMM");
        atomic_store(&env, e && strcmp(e, "0") == 0 ? 2 : 1);
    }
    return atomic_load(&env) == 1 && __builtin_cpu_supports("avx512f");
}

typedef struct epi {
    const float *bias;
    bool clamp;
    float lo, hi;
} epi;

/* Rows [i0, i0 + mr) x columns [j, j + 32) masked by m0, m1. */
static inline __attribute__((always_inline)) TGT void tile(int mr, int64_t K, const float *A,
                                                            int64_t lda, const float *B,
                                                            int64_t ldb, float *C, int64_t ldc,
                                                            __mmask16 m0, __mmask16 m1,
                                                            const epi *e, int64_t i0)
{
    __m512 c0[MR], c1[MR];
    for (int i = 0; i < mr; i++)
        c0[i] = c1[i] = _mm512_setzero_ps();
    const float *a = A;
    for (int64_t k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
        for (int i = 0; i < mr; i++) {
            __m512 av = _mm512_set1_ps(a[i * lda + k]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
    }
    /* min(hi, max(lo, v)) keeps a NaN v: the second operand wins */
    const __m512 lov = _mm512_set1_ps(e->lo), hiv = _mm512_set1_ps(e->hi);
    for (int i = 0; i < mr; i++) {
        __m512 v0 = c0[i], v1 = c1[i];
        if (e->bias) {
            __m512 bv = _mm512_set1_ps(e->bias[i0 + i]);
            v0 = _mm512_add_ps(v0, bv);
            v1 = _mm512_add_ps(v1, bv);
        }
        if (e->clamp) {
            v0 = _mm512_min_ps(hiv, _mm512_max_ps(lov, v0));
            v1 = _mm512_min_ps(hiv, _mm512_max_ps(lov, v1));
        }
        _mm512_mask_storeu_ps(C + i * ldc, m0, v0);
        _mm512_mask_storeu_ps(C + i * ldc + 16, m1, v1);
    }
}

static __mmask16 lanes(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n > 0 ? n : 0)) - 1); }

/* Rows [i0, i1) of C at the 32-column panel starting at column j. */
static inline __attribute__((always_inline)) TGT void tiles(int64_t K, const float *A,
                                                             int64_t lda, const float *B,
                                                             int64_t ldb, float *C, int64_t ldc,
                                                             const epi *e, int64_t i0, int64_t i1,
                                                             int64_t j, int64_t N)
{
    __mmask16 m0 = lanes(N - j), m1 = lanes(N - j - 16);
    const float *b = B + j;
    int64_t i = i0;
    for (; i + MR <= i1; i += MR)
        tile(MR, K, A + i * lda, lda, b, ldb, C + i * ldc + j, ldc, m0, m1, e, i);
    const float *a = A + i * lda;
    float *c = C + i * ldc + j;
    switch (i1 - i) { /* a tile of the remaining rows */
    case 7: tile(7, K, a, lda, b, ldb, c, ldc, m0, m1, e, i); break;
    case 6: tile(6, K, a, lda, b, ldb, c, ldc, m0, m1, e, i); break;
    case 5: tile(5, K, a, lda, b, ldb, c, ldc, m0, m1, e, i); break;
    case 4: tile(4, K, a, lda, b, ldb, c, ldc, m0, m1, e, i); break;
    case 3: tile(3, K, a, lda, b, ldb, c, ldc, m0, m1, e, i); break;
    case 2: tile(2, K, a, lda, b, ldb, c, ldc, m0, m1, e, i); break;
    case 1: tile(1, K, a, lda, b, ldb, c, ldc, m0, m1, e, i); break;
    default: break;
    }
}

TGT void nb_sgemm_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float *C, int64_t ldc, const float *bias,
                         bool clamp, float lo, float hi)
{
    if (M <= 0 || N <= 0 || !nb_sgemm_avx512_enabled())
        return;
    epi e = {bias, clamp, lo, hi};
    if (M > N) { /* A is the bigger operand: each row block once, all panels of B under it */
        for (int64_t i = 0; i < M; i += MR)
            for (int64_t j = 0; j < N; j += NR)
                tiles(K, A, lda, B, ldb, C, ldc, &e, i, i + MR < M ? i + MR : M, j, N);
        return;
    }
    for (int64_t j = 0; j < N; j += NR)
        tiles(K, A, lda, B, ldb, C, ldc, &e, 0, M, j, N);
}

#else /* not x86-64 with GCC or clang: the BLAS path everywhere */

bool nb_sgemm_avx512_enabled(void) { return false; }

void nb_sgemm_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                     int64_t ldb, float *C, int64_t ldc, const float *bias, bool clamp, float lo,
                     float hi)
{
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)C, (void)ldc;
    (void)bias, (void)clamp, (void)lo, (void)hi;
}

#endif
