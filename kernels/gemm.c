/* nb_gemm: one product split into blocks of C over the thread pool; see
 * kernels/gemm.h. */
#include "kernels/gemm.h"
#include "kernels/sgemm_avx512.h"

#include <cblas.h>
#include <stddef.h>

#include "kernels/threadpool.h"

/* Below this many multiply-adds a product runs as one call: splitting costs
 * a hand-over to the other threads (a few microseconds). */
#define SPLIT_MIN_MACS (1 << 18)
/* f32 A B^T with this few rows of A and this long rows goes to
 * nb_sgemm_avx512_abt (dot products), not BLAS */
#define ABT_MAX_ROWS 16
#define ABT_MIN_K 64

typedef struct gemm_job {
    nb_dtype dt;
    bool ta, tb, by_rows;
    int64_t M, N, K, lda, ldb, ldc;
    const char *A, *B;
    char *C;
    double beta;
    int64_t block, n; /* rows or columns per block; their total */
} gemm_job;

/* y (n) = op(X) v + beta y, X row-major (rows x cols, ld), trans: X^T. */
static void gemv(nb_dtype dt, bool trans, int64_t rows, int64_t cols, const void *X, int64_t ld,
                 const void *v, int64_t incv, double beta, void *y, int64_t incy)
{
    enum CBLAS_TRANSPOSE t = trans ? CblasTrans : CblasNoTrans;
    if (dt == NB_F32)
        cblas_sgemv(CblasRowMajor, t, (blasint)rows, (blasint)cols, 1.0f, X, (blasint)ld, v,
                    (blasint)incv, (float)beta, y, (blasint)incy);
    else
        cblas_dgemv(CblasRowMajor, t, (blasint)rows, (blasint)cols, 1.0, X, (blasint)ld, v,
                    (blasint)incv, beta, y, (blasint)incy);
}

/* A product with one row or one column of C is a matrix-vector product:
 * BLAS's GEMM would pack the whole matrix first (the weights of a fully
 * connected layer at batch 1). */
static void blas(nb_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void *A,
                 int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc)
{
    if (M == 1 && K > 0) { /* C row = a op(B): a is A's row (or column, ta) */
        if (tb) /* B is N x K */
            gemv(dt, false, N, K, B, ldb, A, ta ? lda : 1, beta, C, 1);
        else    /* B is K x N */
            gemv(dt, true, K, N, B, ldb, A, ta ? lda : 1, beta, C, 1);
        return;
    }
    if (N == 1 && K > 0) { /* C column = op(A) b: b is B's column (or row, tb) */
        if (ta) /* A is K x M */
            gemv(dt, true, K, M, A, lda, B, tb ? 1 : ldb, beta, C, ldc);
        else
            gemv(dt, false, M, K, A, lda, B, tb ? 1 : ldb, beta, C, ldc);
        return;
    }
    if (dt == NB_F32 && !ta && tb && beta == 0 && M <= ABT_MAX_ROWS && K >= ABT_MIN_K &&
        nb_sgemm_avx512_enabled()) { /* x W^T at a small batch: W's rows read once */
        nb_sgemm_avx512_abt(M, N, K, A, lda, B, ldb, C, ldc);
        return;
    }
    enum CBLAS_TRANSPOSE a = ta ? CblasTrans : CblasNoTrans, b = tb ? CblasTrans : CblasNoTrans;
    if (dt == NB_F32)
        cblas_sgemm(CblasRowMajor, a, b, (blasint)M, (blasint)N, (blasint)K, 1.0f, A,
                    (blasint)lda, B, (blasint)ldb, (float)beta, C, (blasint)ldc);
    else
        cblas_dgemm(CblasRowMajor, a, b, (blasint)M, (blasint)N, (blasint)K, 1.0, A, (blasint)lda,
                    B, (blasint)ldb, beta, C, (blasint)ldc);
}

/* Blocks [b0, b1) as one call: rows (or columns) [b0*block, b1*block). */
static void run_blocks(void *ctx, int64_t b0, int64_t b1)
{
    const gemm_job *j = ctx;
    size_t es = j->dt == NB_F32 ? sizeof(float) : sizeof(double);
    int64_t lo = b0 * j->block, hi = b1 * j->block < j->n ? b1 * j->block : j->n;
    if (hi <= lo)
        return;
    if (j->by_rows) { /* rows of op(A) and C */
        const char *a = j->A + (size_t)(lo * (j->ta ? 1 : j->lda)) * es;
        blas(j->dt, j->ta, j->tb, hi - lo, j->N, j->K, a, j->lda, j->B, j->ldb, j->beta,
             j->C + (size_t)(lo * j->ldc) * es, j->ldc);
    } else {          /* columns of op(B) and C */
        const char *b = j->B + (size_t)(lo * (j->tb ? j->ldb : 1)) * es;
        blas(j->dt, j->ta, j->tb, j->M, hi - lo, j->K, j->A, j->lda, b, j->ldb, j->beta,
             j->C + (size_t)lo * es, j->ldc);
    }
}

void nb_gemm(nb_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void *A,
             int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    int64_t threads = nb_get_num_threads();
    if (threads <= 1 || (double)M * (double)N * (double)K < SPLIT_MIN_MACS) {
        blas(dt, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* split the longer side of C, in blocks that keep BLAS's register tiles
     * whole (16 columns, 8 rows) */
    gemm_job j = {dt, ta, tb, M >= N, M, N, K, lda, ldb, ldc, A, B, C, beta, 0, 0};
    int64_t align = j.by_rows ? 8 : 16;
    j.n = j.by_rows ? M : N;
    j.block = (j.n + threads - 1) / threads;
    j.block = (j.block + align - 1) / align * align;
    int64_t nblocks = (j.n + j.block - 1) / j.block;
    if (nblocks <= 1)
        blas(dt, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
    else
        nb_parallel_for(nblocks, 1, run_blocks, &j);
}
