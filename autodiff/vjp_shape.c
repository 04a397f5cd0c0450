/* VJP rules of matmul, the reductions and the data-movement ops.
 *
 * Built from graph builders only, so the rules are differentiable: the
 * gradient of a matmul is a matmul (flags chosen so that no transpose is
 * materialised), of a slice a slice_grad and back. */
#include "autodiff/vjp.h"

/* ---- matmul ------------------------------------------------------------ */

/* C = op(A) op(B):
 *   dA = gy op(B)^T   (trans_a: dA = op(B) gy^T)
 *   dB = op(A)^T gy   (trans_b: dB = gy^T op(A))
 * expressed through nb_matmul_t flags, then summed down over broadcast
 * batch dims. */
static nb_node *vjp_matmul(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    const nb_matmul_params *p = (const nb_matmul_params *)y->params;
    nb_node *a = y->in[0], *b = y->in[1];
    bool ta = p->trans_a != 0, tb = p->trans_b != 0;
    nb_node *r;
    if (i == 0) {
        if (!ta)
            r = nb_matmul_t(g, gy, b, false, !tb); /* gy B^T, or gy B */
        else
            r = nb_matmul_t(g, b, gy, tb, true); /* B gy^T, or B^T gy^T */
        return nb_sum_to(g, r, a->ndim, a->shape);
    }
    if (!tb)
        r = nb_matmul_t(g, a, gy, !ta, false); /* A^T gy, or A gy */
    else
        r = nb_matmul_t(g, gy, a, true, ta); /* gy^T A, or gy^T A^T */
    return nb_sum_to(g, r, b->ndim, b->shape);
}

/* ---- reductions ---------------------------------------------------------- */

/* The axes y reduced of x, as a bitmask. An empty mask on an output that lost
 * dims (or kept them all as 1) means "all axes". */
static uint32_t reduced_axes(const nb_node *x, const nb_node *y)
{
    const nb_reduce_params *p = (const nb_reduce_params *)y->params;
    uint32_t axes = p->axes;
    if (axes == 0 && x->ndim > 0) {
        bool all = p->keepdims ? nb_shape_numel(y->ndim, y->shape) == 1 : y->ndim == 0;
        if (all)
            axes = (1u << x->ndim) - 1u;
    }
    return axes;
}

/* x's shape with the reduced dims set to 1 (the keepdims shape of y). */
static void keep_shape(const nb_node *x, uint32_t axes, int64_t *shape)
{
    for (int d = 0; d < x->ndim; d++)
        shape[d] = (axes >> d) & 1u ? 1 : x->shape[d];
}

/* gy reshaped to the keepdims shape (no node when it already has it). */
static nb_node *to_keepdims(nb_graph *g, nb_node *gy, int ndim, const int64_t *keep)
{
    if (nb_shape_equal(gy->ndim, gy->shape, ndim, keep))
        return gy;
    return nb_reshape(g, gy, ndim, keep);
}

/* gy broadcast back over the reduced dims of x. */
static nb_node *expand_back(nb_graph *g, nb_node *gy, const nb_node *x, uint32_t axes)
{
    int64_t keep[NB_MAX_DIMS];
    keep_shape(x, axes, keep);
    nb_node *gk = to_keepdims(g, gy, x->ndim, keep);
    if (nb_shape_equal(gk->ndim, gk->shape, x->ndim, x->shape))
        return gk;
    return nb_expand(g, gk, x->ndim, x->shape);
}

/* d sum(x, axes) = expand(reshape(gy, keepdims shape), x shape) */
static nb_node *vjp_sum(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    return expand_back(g, gy, x, reduced_axes(x, y));
}

/* d mean(x, axes) = expand(reshape(gy, keepdims shape), x shape) / count */
static nb_node *vjp_mean(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    int64_t nx = nb_shape_numel(x->ndim, x->shape);
    int64_t ny = nb_shape_numel(y->ndim, y->shape);
    double count = ny > 0 ? (double)nx / (double)ny : 1.0;
    nb_node *r = expand_back(g, gy, x, reduced_axes(x, y));
    if (count == 1.0)
        return r;
    return nb_div(g, r, nb_scalar(g, count, gy->dtype));
}

/* gy_k * m / sum(m, axes, keepdims) with m = (x == y_k): the gradient of a
 * max or min reduction, tied extremes sharing it evenly (PyTorch's amax/amin) */
static nb_node *extreme_grad(nb_graph *g, nb_node *y, nb_node *gy)
{
    nb_node *x = y->in[0];
    uint32_t axes = reduced_axes(x, y);
    int64_t keep[NB_MAX_DIMS];
    keep_shape(x, axes, keep);
    nb_node *yk = to_keepdims(g, y, x->ndim, keep);
    nb_node *gk = to_keepdims(g, gy, x->ndim, keep);
    nb_node *mask = nb_cast(g, nb_eq(g, x, yk), gy->dtype);
    nb_node *count = nb_reduce_mask(g, NB_OP_SUM, mask, axes, true);
    return nb_mul(g, nb_div(g, gk, count), mask);
}

/* d max(x, axes) = gy_k * m / sum(m, axes, keepdims), m = (x == max_k) */
static nb_node *vjp_max(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return extreme_grad(g, y, gy);
}

/* d min(x, axes) = gy_k * m / sum(m, axes, keepdims), m = (x == min_k) */
static nb_node *vjp_min(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return extreme_grad(g, y, gy);
}

/* ---- data movement ------------------------------------------------------- */

/* d reshape(x) = reshape(gy, x shape) */
static nb_node *vjp_reshape(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    return nb_reshape(g, gy, x->ndim, x->shape);
}

/* d permute(x, perm) = permute(gy, perm^-1) */
static nb_node *vjp_permute(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    const nb_permute_params *p = (const nb_permute_params *)y->params;
    int inv[NB_MAX_DIMS];
    for (int d = 0; d < y->ndim; d++)
        inv[p->perm[d]] = d;
    return nb_permute(g, gy, inv);
}

/* d expand(x) = sum_to(gy, x shape) */
static nb_node *vjp_expand(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    return nb_sum_to(g, gy, x->ndim, x->shape);
}

/* d slice(x) = slice_grad(gy): zeros of x's shape with gy at the slice */
static nb_node *vjp_slice(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    return nb_slice_grad(g, gy, (const nb_slice_params *)y->params, x->ndim, x->shape);
}

/* d slice_grad(x) = slice(gy) with the same start/step, x's shape as count */
static nb_node *vjp_slice_grad(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    const nb_slice_params *p = (const nb_slice_params *)y->params;
    return nb_slice_p(g, gy, p->start, p->step, y->in[0]->shape);
}

/* d concat(x_0..x_n-1, axis): x_i gets the slice of gy along axis at its offset */
static nb_node *vjp_concat(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    int axis = ((const nb_axis_params *)y->params)->axis;
    int64_t start[NB_MAX_DIMS] = {0}, step[NB_MAX_DIMS];
    for (int d = 0; d < y->ndim; d++)
        step[d] = 1;
    for (int k = 0; k < i; k++)
        start[axis] += y->in[k]->shape[axis];
    return nb_slice_p(g, gy, start, step, y->in[i]->shape);
}

/* d pad(x) = gy[before : before + x shape] */
static nb_node *vjp_pad(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    const nb_pad_params *p = (const nb_pad_params *)y->params;
    int64_t step[NB_MAX_DIMS];
    for (int d = 0; d < y->ndim; d++)
        step[d] = 1;
    return nb_slice_p(g, gy, p->before, step, y->in[0]->shape);
}

void nb_vjp_register_shape(nb_vjp_fn *table)
{
    table[NB_OP_MATMUL] = vjp_matmul;
    table[NB_OP_SUM] = vjp_sum;
    table[NB_OP_MEAN] = vjp_mean;
    table[NB_OP_MAX] = vjp_max;
    table[NB_OP_MIN] = vjp_min;
    table[NB_OP_RESHAPE] = vjp_reshape;
    table[NB_OP_PERMUTE] = vjp_permute;
    table[NB_OP_EXPAND] = vjp_expand;
    table[NB_OP_SLICE] = vjp_slice;
    table[NB_OP_SLICE_GRAD] = vjp_slice_grad;
    table[NB_OP_CONCAT] = vjp_concat;
    table[NB_OP_PAD] = vjp_pad;
}
