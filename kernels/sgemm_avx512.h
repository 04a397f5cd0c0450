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
 * over C and no packing of either operand. Single-threaded: the callers split
 * C over the pool. */
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

#endif
