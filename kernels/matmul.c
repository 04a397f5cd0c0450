/* Batched matrix product through cblas:
 *
 *     C[b] = op(A[b]) @ op(B[b]),   op(X) = X or X^T (last two dims)
 *
 * A is (..., M, K) (or (..., K, M) with trans_a), B is (..., K, N) (or
 * (..., N, K) with trans_b), and the batch dims broadcast NumPy-style.
 * f32 goes to cblas_sgemm and f64 to cblas_dgemm, row-major.
 *
 * Inputs may be strided views. Each input's last two dims are handed to BLAS
 * as they lie: row-major (unit inner stride) as is, column-major (unit stride
 * on the second-last dim) by flipping the transpose flag; only a matrix with
 * neither layout is copied (into the call's workspace, or a temporary).
 *
 * When B is the same matrix for every batch and A's rows are evenly spaced
 * across its batch dims (e.g. A contiguous, not transposed), the batch folds
 * into M and the whole product is one GEMM, split over the thread pool by
 * nb_gemm; otherwise one GEMM per batch, the batches split over the pool.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "kernels/threadpool.h"
#include "kernels/matmul_internal.h"

/* How one input's matrices are seen by BLAS. */
typedef struct mat_layout {
    bool copy;   /* neither layout: a contiguous copy is needed */
    bool trans;  /* flag to pass to BLAS (the op's flag, flipped for column-major) */
    int64_t ld;  /* leading dimension of the row-major matrix BLAS sees */
} mat_layout;

/* Layout of the last two dims (r, c) of t for a product that wants op(t). */
static mat_layout layout_of(const nb_tensor *t, bool op_trans)
{
    mat_layout L = {false, op_trans, 0};
    int n = t->ndim;
    int64_t r = t->shape[n - 2], c = t->shape[n - 1];
    int64_t sr = t->strides[n - 2], sc = t->strides[n - 1];
    if ((sc == 1 || c == 1) && (r == 1 || sr >= (c > 1 ? c : 1))) {
        L.ld = r == 1 ? (c > 1 ? c : 1) : sr; /* row-major, ld = row stride */
        return L;
    }
    if ((sr == 1 || r == 1) && (c == 1 || sc >= (r > 1 ? r : 1))) {
        L.trans = !op_trans; /* column-major: the row-major (c, r) matrix, transposed */
        L.ld = c == 1 ? (r > 1 ? r : 1) : sc;
        return L;
    }
    L.copy = true;
    return L;
}

/* Bytes of scratch the inputs of c need for copies (64-byte aligned pieces). */
static size_t copy_bytes(const nb_tensor *t, bool op_trans)
{
    if (t->ndim < 2 || !layout_of(t, op_trans).copy)
        return 0;
    size_t n = (size_t)nb_tensor_numel(t) * nb_dtype_size(t->dtype);
    return (n + 63) & ~(size_t)63;
}

size_t nb_cpu_matmul_workspace(const nb_kernel_call *c)
{
    if (c->op != NB_OP_MATMUL || c->n_in != 2 || !c->in || !c->in[0] || !c->in[1])
        return 0;
    const nb_matmul_params *mp = c->params;
    bool ta = mp && mp->trans_a, tb = mp && mp->trans_b;
    return copy_bytes(c->in[0], ta) + copy_bytes(c->in[1], tb);
}

/* A contiguous copy of t placed in workspace memory at *ws (advanced), or in
 * a fresh tensor when the workspace is too small. */
static nb_status contiguous_input(const nb_tensor *t, char **ws, size_t *ws_left, nb_tensor *out)
{
    size_t need = (size_t)nb_tensor_numel(t) * nb_dtype_size(t->dtype);
    size_t padded = (need + 63) & ~(size_t)63;
    if (*ws && *ws_left >= padded) {
        nb_buffer *b;
        nb_status st = nb_buffer_wrap(*ws, padded, (nb_device){NB_DEVICE_CPU, 0}, NULL, NULL, &b);
        if (st != NB_OK)
            return st;
        int64_t strides[NB_MAX_DIMS];
        nb_shape_strides(t->ndim, t->shape, strides);
        st = nb_tensor_view_of(out, b, t->dtype, t->ndim, t->shape, strides, 0);
        nb_buffer_release(b);
        if (st != NB_OK)
            return st;
        *ws += padded;
        *ws_left -= padded;
    } else {
        nb_status st = nb_tensor_empty(out, t->dtype, t->ndim, t->shape);
        if (st != NB_OK)
            return st;
    }
    return nb_cpu_copy_strided(t, out);
}

/* "(3,2)" or "(3,2)^T" for error messages. */
static const char *shape_op_str(const nb_tensor *t, bool trans, char *buf, size_t size)
{
    nb_shape_str(t->ndim, t->shape, buf, size);
    if (trans) {
        size_t n = strlen(buf);
        if (n + 3 <= size)
            memcpy(buf + n, "^T", 3);
    }
    return buf;
}

/* Validate dtypes and shapes; fills M, N, K and the batch shape. */
static nb_status check_matmul(const nb_tensor *A, const nb_tensor *B, const nb_tensor *C,
                              bool ta, bool tb, int64_t *M, int64_t *N, int64_t *K,
                              int *nbatch, int64_t *batch)
{
    char a[112], b[112], e[112], f[112];
    if (A->dtype != B->dtype || C->dtype != A->dtype ||
        (A->dtype != NB_F32 && A->dtype != NB_F64))
        return nb_error(NB_ERR_DTYPE, "matmul: dtypes %s x %s -> %s; need equal f32 or f64",
                        nb_dtype_name(A->dtype), nb_dtype_name(B->dtype), nb_dtype_name(C->dtype));
    if (A->ndim < 2 || B->ndim < 2)
        return nb_error(NB_ERR_SHAPE, "matmul: %s x %s: both inputs need at least 2 dims",
                        shape_op_str(A, ta, a, sizeof a), shape_op_str(B, tb, b, sizeof b));
    int na = A->ndim, nb = B->ndim;
    *M = ta ? A->shape[na - 1] : A->shape[na - 2];
    int64_t ka = ta ? A->shape[na - 2] : A->shape[na - 1];
    int64_t kb = tb ? B->shape[nb - 1] : B->shape[nb - 2];
    *N = tb ? B->shape[nb - 2] : B->shape[nb - 1];
    *K = ka;
    if (ka != kb)
        return nb_error(NB_ERR_SHAPE, "matmul: %s x %s: inner dimensions %lld and %lld differ",
                        shape_op_str(A, ta, a, sizeof a), shape_op_str(B, tb, b, sizeof b),
                        (long long)ka, (long long)kb);
    if (!nb_shape_broadcast(na - 2, A->shape, nb - 2, B->shape, nbatch, batch))
        return nb_error(NB_ERR_SHAPE, "matmul: %s x %s: batch dimensions %s and %s do not broadcast",
                        shape_op_str(A, ta, a, sizeof a), shape_op_str(B, tb, b, sizeof b),
                        nb_shape_str(na - 2, A->shape, e, sizeof e),
                        nb_shape_str(nb - 2, B->shape, f, sizeof f));
    int64_t want[NB_MAX_DIMS];
    int nw = *nbatch + 2;
    if (nw > NB_MAX_DIMS)
        return nb_error(NB_ERR_SHAPE, "matmul: %s x %s: too many dims",
                        shape_op_str(A, ta, a, sizeof a), shape_op_str(B, tb, b, sizeof b));
    memcpy(want, batch, (size_t)*nbatch * sizeof *want);
    want[nw - 2] = *M;
    want[nw - 1] = *N;
    if (!nb_shape_equal(nw, want, C->ndim, C->shape))
        return nb_error(NB_ERR_SHAPE, "matmul: %s x %s gives %s, but the output is %s",
                        shape_op_str(A, ta, a, sizeof a), shape_op_str(B, tb, b, sizeof b),
                        nb_shape_str(nw, want, e, sizeof e),
                        nb_shape_str(C->ndim, C->shape, f, sizeof f));
    if (!nb_tensor_is_contiguous(C))
        return nb_error(NB_ERR_ARG, "matmul: the output must be contiguous");
    return NB_OK;
}

/* Strides of t's batch dims aligned to the output batch (0 where broadcast). */
static void batch_strides(const nb_tensor *t, int nbatch, const int64_t *batch, int64_t *bs)
{
    int nt = t->ndim - 2;
    for (int i = 0; i < nbatch; i++) {
        int j = i - (nbatch - nt);
        bs[i] = (j >= 0 && t->shape[j] == batch[i] && batch[i] != 1) ? t->strides[j] : 0;
    }
}

/* True when A's rows, across all batch dims and M, sit at a constant stride
 * lda and A covers the whole output batch (so the batch folds into M). */
static bool rows_fold(const nb_tensor *A, const mat_layout *la, int64_t M, int nbatch,
                      const int64_t *batch)
{
    if (la->trans)
        return false;
    int na = A->ndim;
    int64_t expect = la->ld * M; /* the stride the next batch dim must have */
    for (int i = nbatch - 1; i >= 0; i--) {
        int j = i - (nbatch - (na - 2));
        int64_t size = j >= 0 ? A->shape[j] : 1;
        if (size != batch[i])
            return false; /* A is broadcast along this dim */
        if (size == 1)
            continue;
        if (A->strides[j] != expect)
            return false;
        expect *= size;
    }
    return true;
}

/* One GEMM per batch index; A's and B's offsets follow from the index. */
typedef struct batch_job {
    nb_dtype dt;
    bool ta, tb;
    int64_t M, N, K, lda, ldb;
    const char *pa, *pb;
    char *pc;
    size_t es;
    int nbatch;
    const int64_t *batch, *sa, *sb;
} batch_job;

static void run_batches(void *ctx, int64_t b0, int64_t b1)
{
    const batch_job *j = ctx;
    for (int64_t bi = b0; bi < b1; bi++) {
        int64_t oa = 0, ob = 0, rest = bi;
        for (int d = j->nbatch - 1; d >= 0; d--) {
            int64_t i = rest % j->batch[d];
            rest /= j->batch[d];
            oa += i * j->sa[d];
            ob += i * j->sb[d];
        }
        nb_gemm(j->dt, j->ta, j->tb, j->M, j->N, j->K, j->pa + (size_t)oa * j->es, j->lda,
                j->pb + (size_t)ob * j->es, j->ldb, 0, j->pc + (size_t)(bi * j->M * j->N) * j->es,
                j->N);
    }
}

/* MATMUL; see the top of the file. */
nb_status nb_cpu_matmul(const nb_kernel_call *c)
{
    if (c->n_in != 2 || !c->in || !c->in[0] || !c->in[1] || !c->out)
        return nb_error(NB_ERR_ARG, "matmul: expects two inputs and an output");
    const nb_matmul_params *mp = c->params;
    bool ta = mp && mp->trans_a, tb = mp && mp->trans_b;
    const nb_tensor *A = c->in[0], *B = c->in[1];
    nb_tensor *C = c->out;
    int64_t M = 0, N = 0, K = 0, batch[NB_MAX_DIMS];
    int nbatch = 0;
    nb_status st = check_matmul(A, B, C, ta, tb, &M, &N, &K, &nbatch, batch);
    if (st != NB_OK)
        return st;
    int64_t nbat = nb_shape_numel(nbatch, batch);
    size_t es = nb_dtype_size(C->dtype);
    if (nbat == 0 || M == 0 || N == 0)
        return NB_OK;
    if (K == 0) {
        memset(nb_tensor_data(C), 0, (size_t)(nbat * M * N) * es);
        return NB_OK;
    }
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
        return nb_error(NB_ERR_SHAPE, "matmul: dimensions M=%lld N=%lld K=%lld exceed BLAS's int",
                        (long long)M, (long long)N, (long long)K);

    nb_tensor tmpA = {0}, tmpB = {0};
    char *ws = c->workspace;
    size_t ws_left = ws ? c->workspace_size : 0;
    mat_layout la = layout_of(A, ta), lb = layout_of(B, tb);
    if (la.copy) {
        if ((st = contiguous_input(A, &ws, &ws_left, &tmpA)) != NB_OK)
            goto done;
        A = &tmpA;
        la = layout_of(A, ta);
    }
    if (lb.copy) {
        if ((st = contiguous_input(B, &ws, &ws_left, &tmpB)) != NB_OK)
            goto done;
        B = &tmpB;
        lb = layout_of(B, tb);
    }
    if (la.ld > INT32_MAX || lb.ld > INT32_MAX) {
        st = nb_error(NB_ERR_SHAPE, "matmul: leading dimension exceeds BLAS's int");
        goto done;
    }

    int64_t sa[NB_MAX_DIMS], sb[NB_MAX_DIMS];
    batch_strides(A, nbatch, batch, sa);
    batch_strides(B, nbatch, batch, sb);
    bool b_fixed = true;
    for (int i = 0; i < nbatch; i++)
        b_fixed = b_fixed && sb[i] == 0;
    const char *pa = nb_tensor_data(A), *pb = nb_tensor_data(B);
    char *pc = nb_tensor_data(C);
    if (nbat == 1 || (b_fixed && rows_fold(A, &la, M, nbatch, batch) && nbat * M <= INT32_MAX)) {
        /* one GEMM: (nbat*M, K) @ (K, N) */
        nb_gemm(C->dtype, la.trans, lb.trans, nbat * M, N, K, pa, la.ld, pb, lb.ld, 0, pc, N);
        goto done;
    }
    /* one GEMM per batch: the batches over the pool (each GEMM then runs on
     * its thread), or, with fewer batches than threads, each GEMM split */
    batch_job bj = {C->dtype, la.trans, lb.trans, M,  N,      K,     la.ld, lb.ld,
                    pa,       pb,       pc,       es, nbatch, batch, sa,    sb};
    if (nbat >= nb_get_num_threads())
        nb_parallel_for(nbat, 1, run_batches, &bj);
    else
        run_batches(&bj, 0, nbat);
    goto done;
done:
    nb_tensor_release(&tmpA);
    nb_tensor_release(&tmpB);
    return st;
}
