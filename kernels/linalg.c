/* Linear algebra beyond matmul (LINALG kind), f32 and f64.
 *
 *   DET  x (..., n, n) -> (...): the determinant of each matrix, by LU
 *        factorisation with partial pivoting in f64: det = (-1)^swaps times
 *        the product of the pivots (0 as soon as a column has no nonzero
 *        pivot; NaN and inf propagate). n = 0 gives 1. Threaded over the
 *        matrices.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/threadpool.h"

typedef struct det_plan {
    const void *x;
    void *y;
    int64_t n;
    int f64;
    atomic_int failed; /* a chunk could not allocate its scratch */
} det_plan;

/* Determinant of the n x n matrix a (row-major, overwritten). */
static double det_lu(double *a, int64_t n)
{
    double det = 1.0;
    for (int64_t k = 0; k < n; k++) {
        int64_t piv = k;
        double best = fabs(a[k * n + k]);
        for (int64_t i = k + 1; i < n; i++) {
            double v = fabs(a[i * n + k]);
            if (v > best || (v != v && best == best)) {
                best = v;
                piv = i;
            }
        }
        if (best == 0.0)
            return 0.0;
        if (piv != k) {
            for (int64_t j = 0; j < n; j++) {
                double t = a[k * n + j];
                a[k * n + j] = a[piv * n + j];
                a[piv * n + j] = t;
            }
            det = -det;
        }
        double d = a[k * n + k];
        det *= d;
        for (int64_t i = k + 1; i < n; i++) {
            double f = a[i * n + k] / d;
            if (f == 0.0)
                continue;
            for (int64_t j = k + 1; j < n; j++)
                a[i * n + j] -= f * a[k * n + j];
        }
    }
    return det;
}

#define DET_STACK 256 /* matrices up to 16 x 16 factorise on the stack */

static void det_range(void *ctx, int64_t begin, int64_t end)
{
    det_plan *q = ctx;
    int64_t n = q->n, nn = n * n;
    double stack[DET_STACK];
    double *a = nn <= DET_STACK ? stack : malloc(sizeof(double) * (size_t)nn);
    if (!a) {
        atomic_store(&q->failed, 1);
        return;
    }
    for (int64_t m = begin; m < end; m++) {
        if (q->f64 && nn > 0)
            memcpy(a, (const double *)q->x + m * nn, sizeof(double) * (size_t)nn);
        else if (!q->f64)
            for (int64_t i = 0; i < nn; i++)
                a[i] = ((const float *)q->x)[m * nn + i];
        double d = det_lu(a, n);
        if (q->f64)
            ((double *)q->y)[m] = d;
        else
            ((float *)q->y)[m] = (float)d;
    }
    if (a != stack)
        free(a);
}

static nb_status det(const nb_kernel_call *c)
{
    const char *name = nb_op_name(c->op);
    if (c->n_in != 1 || !c->in || !c->in[0] || !c->out)
        return nb_error(NB_ERR_ARG, "%s: expects one input and an output", name);
    const nb_tensor *x = c->in[0];
    nb_tensor *out = c->out;
    if ((x->dtype != NB_F32 && x->dtype != NB_F64) || out->dtype != x->dtype)
        return nb_error(NB_ERR_DTYPE, "%s: input and output must share a float dtype (got %s, %s)",
                        name, nb_dtype_name(x->dtype), nb_dtype_name(out->dtype));
    if (x->ndim < 2 || x->shape[x->ndim - 1] != x->shape[x->ndim - 2] ||
        !nb_shape_equal(x->ndim - 2, x->shape, out->ndim, out->shape))
        return nb_error(NB_ERR_SHAPE, "%s: needs square matrices (..., n, n) and an output of the batch shape",
                        name);
    int64_t n = x->shape[x->ndim - 1], count = nb_tensor_numel(out);
    if (count == 0)
        return NB_OK;
    nb_tensor tmp = {0};
    const nb_tensor *use;
    nb_status st = nb_cpu_contiguous_input(x, &tmp, &use);
    if (st != NB_OK)
        return st;
    det_plan q = {nb_tensor_data(use), nb_tensor_data(out), n, x->dtype == NB_F64, 0};
    double work = (double)n * (double)n * (double)n + 1.0;
    int64_t grain = work >= 32768.0 ? 1 : (int64_t)(32768.0 / work);
    nb_parallel_for(count, grain < 1 ? 1 : grain, det_range, &q);
    nb_tensor_release(&tmp);
    if (atomic_load(&q.failed))
        return nb_error(NB_ERR_ALLOC, "%s: out of memory for %lld x %lld matrices", name,
                        (long long)n, (long long)n);
    return NB_OK;
}

/* LINALG kind: DET. */
nb_status nb_cpu_linalg(const nb_kernel_call *c)
{
    if (!c)
        return nb_error(NB_ERR_ARG, "linalg: NULL call");
    if (c->op == NB_OP_DET)
        return det(c);
    return nb_error(NB_ERR_UNSUPPORTED, "linalg: op %s is not a linear algebra op",
                    nb_op_name(c->op));
}
