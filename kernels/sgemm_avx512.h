/* A GEMM with a fused epilogue for the f32 convolutions (private to the CPU
 * kernels; kernels/sgemm_avx512.c):
 *
 *   C[i, j] = clamp(bias[i] + sum_k A[i, k] B[k, j], lo, hi)
 *
 * A (M x K, row stride lda), B (K x N, row stride ldb), C (M x N, row stride
 * ldc), all row-major f32; bias may be NULL; clamp off means no clamp. The
 * conv's weights are A and its (im2col'd) image is B, so C's rows are output
 * channels and its columns pixels: the bias and the activation are applied
 * in registers before the one store of each result, there is no beta pass
 * over C and no packing of either operand (but for C's last few columns,
 * see nb_sgemm_avx512_dot_cols). Single-threaded: the callers split C over
 * the pool. */
#ifndef NB_SGEMM_AVX512_H
#define NB_SGEMM_AVX512_H

#include <stdbool.h>
#include <stdint.h>

/* Whether the CPU has AVX-512F (the only code path of this file) and
 * NABLA_OWN_GEMM=0 is not in the environment. */
bool nb_sgemm_avx512_enabled(void);

/* See the top of the file. Does nothing when !nb_sgemm_avx512_enabled(). */
void nb_sgemm_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                     int64_t ldb, float *C, int64_t ldc, const float *bias, bool clamp, float lo,
                     float hi);

/* The same for columns [j0, j0 + N) of a product with n_all columns: B and C
 * point at column j0 (B + j0, C + j0 of the whole product's operands) and
 * the dot columns are the whole product's (see below), so the bits of
 * every element are the same however the caller splits the columns (any
 * block boundaries, not only multiples of 16). nb_sgemm_avx512 is this with
 * j0 = 0, n_all = N, stream false. Does nothing when j0 < 0 or j0 + N >
 * n_all. With stream, C is written with non-temporal stores where it can
 * (same values; an sfence before returning): for an output much larger
 * than the caches, which would only evict what the next op reads, and
 * whose lines would otherwise be read from memory before being
 * overwritten. */
void nb_sgemm_avx512_part(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const float *B, int64_t ldb, float *C, int64_t ldc, const float *bias,
                          bool clamp, float lo, float hi, int64_t j0, int64_t n_all, bool stream);

/* C (M x N, row stride ldc) = A B^T, A (M x K, lda) and B (N x K, ldb)
 * row-major: every element a dot product with k in the lanes (the dot path
 * below), B's rows read once for all of A's rows. For a few rows of A (a
 * classifier at a small batch), where a BLAS GEMM packs all of B first. No
 * bias or clamp. Does nothing when !nb_sgemm_avx512_enabled(). */
void nb_sgemm_avx512_abt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float *C, int64_t ldc);

/* How many of C's last columns (N mod 16, or 0) a call with these N and K
 * computes as dot products with k in the vector lanes rather than as
 * k-ordered FMA chains (see the top of kernels/sgemm_avx512.c): the only
 * columns whose rounding may differ from an element-by-element sum over k in
 * order. 0 when !nb_sgemm_avx512_enabled(). */
int64_t nb_sgemm_avx512_dot_cols(int64_t N, int64_t K);

#endif
