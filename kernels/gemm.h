/* GEMM on nabla's thread pool (private to the CPU kernels).
 *
 * OpenBLAS is kept to one thread (kernels/threadpool.c sets it): its own
 * threads would spin beside the pool's between calls and take a core from
 * it, which on small machines costs more than the GEMM. nb_gemm splits the
 * product into row or column blocks, one single-threaded BLAS call each, on
 * the pool; called from inside a pool job (a kernel already running on all
 * threads) or for a small product it makes one call on the calling thread.
 * Splitting C never changes how an element is summed, so the result does not
 * depend on the thread count. */
#ifndef NB_GEMM_H
#define NB_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/dtype.h"

/* Row-major C (M x N) = op(A) op(B) + beta C in f32 or f64 (dt), op(X) = X
 * or X^T; dimensions and leading dimensions must fit BLAS's int. */
void nb_gemm(nb_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void *A,
             int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc);

#endif
