/* Builders of matmul, reductions and data movement: shape inference with
 * messages that name the op, the node and the shapes. */
#include <string.h>

#include "graph/graph_impl.h"

#define NAME(op) nb_graph_next_name(g, op)

/* ---- matmul ------------------------------------------------------------ */

static nb_node *matmul_nd(nb_graph *g, nb_node *a, nb_node *b, bool ta, bool tb)
{
    nb_node *in[2] = {a, b};
    const char *nm = NAME(NB_OP_MATMUL);
    if (a->dtype != b->dtype || !nb_dtype_is_float(a->dtype))
        return nb_graph_fail(g, NB_ERR_DTYPE, "matmul '%s': dtypes %s and %s (need equal f32 or f64)",
                             nm, nb_dtype_name(a->dtype), nb_dtype_name(b->dtype));
    int64_t m = a->shape[a->ndim - (ta ? 1 : 2)], ka = a->shape[a->ndim - (ta ? 2 : 1)];
    int64_t kb = b->shape[b->ndim - (tb ? 1 : 2)], n = b->shape[b->ndim - (tb ? 2 : 1)];
    if (ka != kb)
        return nb_graph_fail(g, NB_ERR_SHAPE, "matmul '%s': %s%s x %s%s: inner dimensions %lld and %lld differ",
                             nm, nb_node_shape_str(a), ta ? "^T" : "", nb_node_shape_str(b),
                             tb ? "^T" : "", (long long)ka, (long long)kb);
    int nbatch;
    int64_t shape[NB_MAX_DIMS];
    if (!nb_shape_broadcast(a->ndim - 2, a->shape, b->ndim - 2, b->shape, &nbatch, shape))
        return nb_graph_fail(g, NB_ERR_SHAPE, "matmul '%s': batch dims of %s and %s do not broadcast",
                             nm, nb_node_shape_str(a), nb_node_shape_str(b));
    if (nbatch + 2 > NB_MAX_DIMS)
        return nb_graph_fail(g, NB_ERR_SHAPE, "matmul '%s': result has more than %d dims", nm,
                             NB_MAX_DIMS);
    shape[nbatch] = m;
    shape[nbatch + 1] = n;
    nb_matmul_params p = {ta, tb};
    return nb_graph_add_node(g, NB_OP_MATMUL, 2, in, &p, sizeof(p), a->dtype, nbatch + 2, shape);
}

nb_node *nb_matmul_t(nb_graph *g, nb_node *a, nb_node *b, bool ta, bool tb)
{
    nb_node *in[2] = {a, b};
    if (nb_graph_check_inputs(g, NB_OP_MATMUL, 2, in))
        return g->poison;
    if (a->ndim == 0 || b->ndim == 0 || ((a->ndim == 1 && ta) || (b->ndim == 1 && tb)))
        return nb_graph_fail(g, NB_ERR_SHAPE, "matmul '%s': %s x %s: operands must have at least 1 dim (2 when transposed)",
                             NAME(NB_OP_MATMUL), nb_node_shape_str(a), nb_node_shape_str(b));
    /* NumPy: a 1-D a is a row (1,K) and b a column (K,1), squeezed afterwards. */
    bool a1 = a->ndim == 1, b1 = b->ndim == 1;
    nb_node *aa = a1 ? nb_unsqueeze(g, a, 0) : a;
    nb_node *bb = b1 ? nb_unsqueeze(g, b, 1) : b;
    nb_node *y = matmul_nd(g, aa, bb, ta, tb);
    if (b1)
        y = nb_squeeze(g, y, -1);
    if (a1)
        y = nb_squeeze(g, y, a1 && b1 ? -1 : -2);
    return y;
}

nb_node *nb_matmul(nb_graph *g, nb_node *a, nb_node *b) { return nb_matmul_t(g, a, b, false, false); }

/* ---- reductions -------------------------------------------------------- */

nb_node *nb_reduce_mask(nb_graph *g, nb_op op, nb_node *x, uint32_t axes, bool keepdims)
{
    if (nb_graph_check_inputs(g, op, 1, &x))
        return g->poison;
    bool int_ok = (op == NB_OP_SUM || op == NB_OP_ARGMAX || op == NB_OP_MAX || op == NB_OP_MIN) &&
                  (x->dtype == NB_I32 || x->dtype == NB_I64);
    if (!nb_dtype_is_float(x->dtype) && !int_ok)
        return nb_graph_fail(g, NB_ERR_DTYPE, "%s '%s': dtype %s is not supported", nb_op_name(op),
                             NAME(op), nb_dtype_name(x->dtype));
    int ndim = 0;
    int64_t shape[NB_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        if (!(axes >> i & 1))
            shape[ndim++] = x->shape[i];
        else if (keepdims)
            shape[ndim++] = 1;
        else if (x->shape[i] == 0 && op != NB_OP_SUM && op != NB_OP_MEAN)
            return nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': cannot reduce %s over empty dim %d",
                                 nb_op_name(op), NAME(op), nb_node_shape_str(x), i);
    }
    nb_reduce_params p = {axes, keepdims};
    nb_dtype dt = op == NB_OP_ARGMAX ? NB_I64 : x->dtype;
    return nb_graph_add_node(g, op, 1, &x, &p, sizeof(p), dt, ndim, shape);
}

/* Axis list -> bitmask (all axes when naxes == 0); false on a bad axis. */
static bool axes_mask(nb_graph *g, nb_op op, nb_node *x, int naxes, const int *axes, uint32_t *mask)
{
    *mask = 0;
    if (naxes == 0) {
        *mask = x->ndim ? (uint32_t)((1u << x->ndim) - 1) : 0;
        return true;
    }
    for (int i = 0; i < naxes; i++) {
        int a = nb_axis_norm(axes[i], x->ndim);
        if (a < 0 || (*mask >> a & 1)) {
            nb_graph_fail(g, NB_ERR_ARG, "%s '%s': axis %d is %s for input %s", nb_op_name(op),
                          NAME(op), axes[i], a < 0 ? "out of range" : "repeated",
                          nb_node_shape_str(x));
            return false;
        }
        *mask |= 1u << a;
    }
    return true;
}

static nb_node *reduce(nb_graph *g, nb_op op, nb_node *x, int naxes, const int *axes, bool keep)
{
    uint32_t mask;
    if (nb_graph_check_inputs(g, op, 1, &x) || !axes_mask(g, op, x, naxes, axes, &mask))
        return g->poison;
    return nb_reduce_mask(g, op, x, mask, keep);
}

nb_node *nb_sum(nb_graph *g, nb_node *x, int n, const int *axes, bool keep) { return reduce(g, NB_OP_SUM, x, n, axes, keep); }
nb_node *nb_mean(nb_graph *g, nb_node *x, int n, const int *axes, bool keep) { return reduce(g, NB_OP_MEAN, x, n, axes, keep); }
nb_node *nb_max(nb_graph *g, nb_node *x, int n, const int *axes, bool keep) { return reduce(g, NB_OP_MAX, x, n, axes, keep); }
nb_node *nb_min(nb_graph *g, nb_node *x, int n, const int *axes, bool keep) { return reduce(g, NB_OP_MIN, x, n, axes, keep); }

nb_node *nb_argmax(nb_graph *g, nb_node *x, int axis, bool keepdims)
{
    return reduce(g, NB_OP_ARGMAX, x, 1, &axis, keepdims);
}

/* ---- reshape family ---------------------------------------------------- */

nb_node *nb_reshape(nb_graph *g, nb_node *x, int ndim, const int64_t *shape)
{
    if (nb_graph_check_inputs(g, NB_OP_RESHAPE, 1, &x))
        return g->poison;
    const char *nm = NAME(NB_OP_RESHAPE);
    if (ndim < 0 || ndim > NB_MAX_DIMS)
        return nb_graph_fail(g, NB_ERR_SHAPE, "reshape '%s': ndim %d is outside [0, %d]", nm, ndim,
                             NB_MAX_DIMS);
    int64_t out[NB_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        out[i] = shape[i];
        if (shape[i] == -1 && infer < 0)
            infer = i;
        else if (shape[i] < 0)
            return nb_graph_fail(g, NB_ERR_SHAPE, "reshape '%s': bad target dim %lld", nm,
                                 (long long)shape[i]);
        else
            known *= shape[i];
    }
    int64_t numel = nb_node_numel(x);
    if (infer >= 0) {
        if (known == 0 || numel % known != 0)
            return nb_graph_fail(g, NB_ERR_SHAPE, "reshape '%s': cannot reshape %s into %s",
                                 nm, nb_node_shape_str(x),
                                 nb_shape_str(ndim, shape, (char[96]){0}, 96));
        out[infer] = numel / known;
    }
    if (nb_shape_numel(ndim, out) != numel)
        return nb_graph_fail(g, NB_ERR_SHAPE, "reshape '%s': cannot reshape %s (%lld elements) into %s",
                             nm, nb_node_shape_str(x), (long long)numel,
                             nb_shape_str(ndim, shape, (char[96]){0}, 96));
    if (nb_shape_equal(ndim, out, x->ndim, x->shape))
        return x;
    return nb_graph_add_node(g, NB_OP_RESHAPE, 1, &x, NULL, 0, x->dtype, ndim, out);
}

nb_node *nb_squeeze(nb_graph *g, nb_node *x, int axis)
{
    if (nb_graph_check_inputs(g, NB_OP_RESHAPE, 1, &x))
        return g->poison;
    int a = nb_axis_norm(axis, x->ndim);
    if (a < 0 || x->shape[a] != 1)
        return nb_graph_fail(g, NB_ERR_SHAPE, "squeeze '%s': axis %d of %s is %s",
                             NAME(NB_OP_RESHAPE), axis, nb_node_shape_str(x),
                             a < 0 ? "out of range" : "not 1");
    int64_t shape[NB_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != a)
            shape[n++] = x->shape[i];
    return nb_reshape(g, x, n, shape);
}

nb_node *nb_unsqueeze(nb_graph *g, nb_node *x, int axis)
{
    if (nb_graph_check_inputs(g, NB_OP_RESHAPE, 1, &x))
        return g->poison;
    int a = nb_axis_norm(axis, x->ndim + 1);
    if (a < 0 || x->ndim >= NB_MAX_DIMS)
        return nb_graph_fail(g, NB_ERR_SHAPE, "unsqueeze '%s': axis %d is out of range for %s",
                             NAME(NB_OP_RESHAPE), axis, nb_node_shape_str(x));
    int64_t shape[NB_MAX_DIMS];
    for (int i = 0, j = 0; i <= x->ndim; i++)
        shape[i] = i == a ? 1 : x->shape[j++];
    return nb_reshape(g, x, x->ndim + 1, shape);
}

nb_node *nb_flatten(nb_graph *g, nb_node *x, int start_axis)
{
    if (nb_graph_check_inputs(g, NB_OP_RESHAPE, 1, &x))
        return g->poison;
    int a = x->ndim == 0 ? 0 : nb_axis_norm(start_axis, x->ndim);
    if (a < 0)
        return nb_graph_fail(g, NB_ERR_SHAPE, "flatten '%s': axis %d is out of range for %s",
                             NAME(NB_OP_RESHAPE), start_axis, nb_node_shape_str(x));
    int64_t shape[NB_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)a);
    shape[a] = nb_shape_numel(x->ndim - a, x->shape + a);
    return nb_reshape(g, x, a + 1, shape);
}

/* ---- permute ----------------------------------------------------------- */

nb_node *nb_permute(nb_graph *g, nb_node *x, const int *perm)
{
    if (nb_graph_check_inputs(g, NB_OP_PERMUTE, 1, &x))
        return g->poison;
    nb_permute_params p = {{0}};
    int64_t shape[NB_MAX_DIMS];
    unsigned seen = 0;
    bool identity = true;
    for (int i = 0; i < x->ndim; i++) {
        int d = nb_axis_norm(perm[i], x->ndim);
        if (d < 0 || (seen >> d & 1))
            return nb_graph_fail(g, NB_ERR_ARG, "permute '%s': %d at position %d is not a permutation of %d dims",
                                 NAME(NB_OP_PERMUTE), perm[i], i, x->ndim);
        seen |= 1u << d;
        p.perm[i] = d;
        shape[i] = x->shape[d];
        identity &= d == i;
    }
    if (identity)
        return x;
    return nb_graph_add_node(g, NB_OP_PERMUTE, 1, &x, &p, sizeof(p), x->dtype, x->ndim, shape);
}

nb_node *nb_transpose(nb_graph *g, nb_node *x, int d0, int d1)
{
    if (nb_graph_check_inputs(g, NB_OP_PERMUTE, 1, &x))
        return g->poison;
    int a = nb_axis_norm(d0, x->ndim), b = nb_axis_norm(d1, x->ndim);
    if (a < 0 || b < 0)
        return nb_graph_fail(g, NB_ERR_ARG, "transpose '%s': dims %d, %d out of range for %s",
                             NAME(NB_OP_PERMUTE), d0, d1, nb_node_shape_str(x));
    int perm[NB_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return nb_permute(g, x, perm);
}

/* ---- expand and sum_to ------------------------------------------------- */

nb_node *nb_expand(nb_graph *g, nb_node *x, int ndim, const int64_t *shape)
{
    if (nb_graph_check_inputs(g, NB_OP_EXPAND, 1, &x))
        return g->poison;
    if (ndim < x->ndim || ndim > NB_MAX_DIMS)
        return nb_graph_fail(g, NB_ERR_SHAPE, "expand '%s': cannot expand %s to %d dims",
                             NAME(NB_OP_EXPAND), nb_node_shape_str(x), ndim);
    for (int i = 0; i < x->ndim; i++) {
        int64_t s = x->shape[x->ndim - 1 - i], t = shape[ndim - 1 - i];
        if (s != t && s != 1)
            return nb_graph_fail(g, NB_ERR_SHAPE, "expand '%s': cannot expand %s to %s",
                                 NAME(NB_OP_EXPAND), nb_node_shape_str(x),
                                 nb_shape_str(ndim, shape, (char[96]){0}, 96));
    }
    if (nb_shape_equal(ndim, shape, x->ndim, x->shape))
        return x;
    return nb_graph_add_node(g, NB_OP_EXPAND, 1, &x, NULL, 0, x->dtype, ndim, shape);
}

nb_node *nb_sum_to(nb_graph *g, nb_node *x, int ndim, const int64_t *shape)
{
    if (nb_graph_check_inputs(g, NB_OP_SUM, 1, &x))
        return g->poison;
    if (nb_shape_equal(ndim, shape, x->ndim, x->shape))
        return x;
    int lead = x->ndim - ndim;
    if (lead < 0)
        return nb_graph_fail(g, NB_ERR_SHAPE, "sum_to '%s': cannot sum %s down to %d dims",
                             NAME(NB_OP_SUM), nb_node_shape_str(x), ndim);
    uint32_t mask = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i < lead || (shape[i - lead] == 1 && x->shape[i] != 1))
            mask |= 1u << i;
    nb_node *s = mask ? nb_reduce_mask(g, NB_OP_SUM, x, mask, true) : x;
    return nb_reshape(g, s, ndim, shape);
}

/* ---- slicing ----------------------------------------------------------- */

nb_node *nb_slice_p(nb_graph *g, nb_node *x, const int64_t *start, const int64_t *step,
                    const int64_t *count)
{
    if (nb_graph_check_inputs(g, NB_OP_SLICE, 1, &x))
        return g->poison;
    nb_slice_params p = {0};
    bool whole = true;
    for (int i = 0; i < x->ndim; i++) {
        if (step[i] < 1 || count[i] < 0 || start[i] < 0 ||
            (count[i] > 0 && start[i] + (count[i] - 1) * step[i] >= x->shape[i]))
            return nb_graph_fail(g, NB_ERR_SHAPE, "slice '%s': start %lld, step %lld, count %lld do not fit dim %d of %s",
                                 NAME(NB_OP_SLICE), (long long)start[i], (long long)step[i],
                                 (long long)count[i], i, nb_node_shape_str(x));
        p.start[i] = start[i];
        p.step[i] = step[i];
        whole &= start[i] == 0 && count[i] == x->shape[i];
    }
    if (whole)
        return x;
    return nb_graph_add_node(g, NB_OP_SLICE, 1, &x, &p, sizeof(p), x->dtype, x->ndim, count);
}

nb_node *nb_slice(nb_graph *g, nb_node *x, int axis, int64_t start, int64_t stop, int64_t step)
{
    if (nb_graph_check_inputs(g, NB_OP_SLICE, 1, &x))
        return g->poison;
    int a = nb_axis_norm(axis, x->ndim);
    if (a < 0 || step < 1)
        return nb_graph_fail(g, NB_ERR_ARG, "slice '%s': %s for %s", NAME(NB_OP_SLICE),
                             a < 0 ? "axis out of range" : "step must be >= 1",
                             nb_node_shape_str(x));
    /* Python's slice.indices for a positive step */
    int64_t n = x->shape[a];
    if (start < 0)
        start = start + n < 0 ? 0 : start + n;
    if (stop < 0)
        stop = stop + n < 0 ? 0 : stop + n;
    if (start > n)
        start = n;
    if (stop > n)
        stop = n;
    int64_t count = stop > start ? (stop - start + step - 1) / step : 0;
    int64_t st[NB_MAX_DIMS], sp[NB_MAX_DIMS], ct[NB_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        st[i] = i == a ? (count ? start : 0) : 0;
        sp[i] = i == a ? step : 1;
        ct[i] = i == a ? count : x->shape[i];
    }
    return nb_slice_p(g, x, st, sp, ct);
}

nb_node *nb_slice_grad(nb_graph *g, nb_node *gy, const nb_slice_params *p, int ndim,
                       const int64_t *in_shape)
{
    if (nb_graph_check_inputs(g, NB_OP_SLICE_GRAD, 1, &gy))
        return g->poison;
    if (ndim != gy->ndim)
        return nb_graph_fail(g, NB_ERR_SHAPE, "slice_grad '%s': %s into %d dims",
                             NAME(NB_OP_SLICE_GRAD), nb_node_shape_str(gy), ndim);
    nb_slice_params q = *p;
    memcpy(q.in_shape, in_shape, sizeof(int64_t) * (size_t)ndim);
    return nb_graph_add_node(g, NB_OP_SLICE_GRAD, 1, &gy, &q, sizeof(q), gy->dtype, ndim, in_shape);
}

/* ---- concat, split, pad ------------------------------------------------ */

nb_node *nb_concat(nb_graph *g, int n, nb_node *const *xs, int axis)
{
    if (n < 1)
        return nb_graph_fail(g, NB_ERR_ARG, "concat '%s': needs at least one input",
                             NAME(NB_OP_CONCAT));
    if (nb_graph_check_inputs(g, NB_OP_CONCAT, n, xs))
        return g->poison;
    nb_node *x0 = xs[0];
    int a = nb_axis_norm(axis, x0->ndim);
    if (a < 0)
        return nb_graph_fail(g, NB_ERR_ARG, "concat '%s': axis %d out of range for %s",
                             NAME(NB_OP_CONCAT), axis, nb_node_shape_str(x0));
    int64_t shape[NB_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof(shape));
    for (int k = 1; k < n; k++) {
        nb_node *x = xs[k];
        if (x->dtype != x0->dtype)
            return nb_graph_fail(g, NB_ERR_DTYPE, "concat '%s': input %d is %s, input 0 is %s",
                                 NAME(NB_OP_CONCAT), k, nb_dtype_name(x->dtype),
                                 nb_dtype_name(x0->dtype));
        bool fits = x->ndim == x0->ndim;
        for (int i = 0; fits && i < x->ndim; i++)
            fits = i == a || x->shape[i] == x0->shape[i];
        if (!fits)
            return nb_graph_fail(g, NB_ERR_SHAPE, "concat '%s': input %d %s does not fit input 0 %s along axis %d",
                                 NAME(NB_OP_CONCAT), k, nb_node_shape_str(x),
                                 nb_node_shape_str(x0), a);
        shape[a] += x->shape[a];
    }
    if (n == 1)
        return x0;
    nb_axis_params p = {a};
    return nb_graph_add_node(g, NB_OP_CONCAT, n, xs, &p, sizeof(p), x0->dtype, x0->ndim, shape);
}

int nb_split(nb_graph *g, nb_node *x, int axis, int n, const int64_t *sizes, nb_node **out)
{
    if (nb_graph_check_inputs(g, NB_OP_SLICE, 1, &x))
        return -1;
    int a = nb_axis_norm(axis, x->ndim);
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += sizes[i] < 0 ? -1000000 : sizes[i];
    if (a < 0 || n < 1 || total != x->shape[a]) {
        nb_graph_fail(g, NB_ERR_SHAPE, "split '%s': %d sizes summing to %lld do not split axis %d of %s",
                      NAME(NB_OP_SLICE), n, (long long)total, axis, nb_node_shape_str(x));
        return -1;
    }
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        out[i] = nb_slice(g, x, a, at, at + sizes[i], 1);
        at += sizes[i];
    }
    return g->status == NB_OK ? 0 : -1;
}

nb_node *nb_pad(nb_graph *g, nb_node *x, const int64_t *pads, double value)
{
    if (nb_graph_check_inputs(g, NB_OP_PAD, 1, &x))
        return g->poison;
    nb_pad_params p = {{0}, {0}, value};
    int64_t shape[NB_MAX_DIMS];
    bool none = true;
    for (int i = 0; i < x->ndim; i++) {
        if (pads[2 * i] < 0 || pads[2 * i + 1] < 0)
            return nb_graph_fail(g, NB_ERR_ARG, "pad '%s': negative padding on dim %d",
                                 NAME(NB_OP_PAD), i);
        p.before[i] = pads[2 * i];
        p.after[i] = pads[2 * i + 1];
        shape[i] = x->shape[i] + p.before[i] + p.after[i];
        none &= p.before[i] == 0 && p.after[i] == 0;
    }
    if (none)
        return x;
    return nb_graph_add_node(g, NB_OP_PAD, 1, &x, &p, sizeof(p), x->dtype, x->ndim, shape);
}
