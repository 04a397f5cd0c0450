/* Builders of gather / index_select / embedding, dropout, and scaled
 * dot-product attention (composed from matmul, where/add, softmax). */
#include <math.h>
#include <string.h>

#include "graph/graph_impl.h"

#define NAME(op) nb_graph_next_name(g, op)

/* ---- gather ----------------------------------------------------------------- */

/* out shape = x.shape[:axis] + indices.shape + x.shape[axis+1:] (NumPy take).
 * Out-of-range indices are found by the kernel, which names the index. */
nb_node *nb_gather(nb_graph *g, nb_node *x, int axis, nb_node *indices)
{
    nb_node *in[2] = {x, indices};
    if (nb_graph_check_inputs(g, NB_OP_GATHER, 2, in))
        return g->poison;
    const char *nm = NAME(NB_OP_GATHER);
    if (indices->dtype != NB_I32 && indices->dtype != NB_I64)
        return nb_graph_fail(g, NB_ERR_DTYPE, "gather '%s': indices '%s' have dtype %s, need i32 or i64",
                             nm, indices->name, nb_dtype_name(indices->dtype));
    int a = nb_axis_norm(axis, x->ndim);
    if (x->ndim == 0 || a < 0)
        return nb_graph_fail(g, NB_ERR_ARG, "gather '%s': axis %d is out of range for input %s",
                             nm, axis, nb_node_shape_str(x));
    int nd = x->ndim - 1 + indices->ndim;
    if (nd > NB_MAX_DIMS)
        return nb_graph_fail(g, NB_ERR_SHAPE, "gather '%s': %s indexed by %s has more than %d dims",
                             nm, nb_node_shape_str(x), nb_node_shape_str(indices), NB_MAX_DIMS);
    int64_t shape[NB_MAX_DIMS];
    int j = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d == a)
            for (int e = 0; e < indices->ndim; e++)
                shape[j++] = indices->shape[e];
        else
            shape[j++] = x->shape[d];
    }
    nb_gather_params p;
    memset(&p, 0, sizeof p);
    p.axis = a;
    p.in_ndim = x->ndim;
    memcpy(p.in_shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    return nb_graph_add_node(g, NB_OP_GATHER, 2, in, &p, sizeof p, x->dtype, nd, shape);
}

nb_node *nb_index_select(nb_graph *g, nb_node *x, int axis, nb_node *indices)
{
    nb_node *in[2] = {x, indices};
    if (nb_graph_check_inputs(g, NB_OP_GATHER, 2, in))
        return g->poison;
    if (indices->ndim != 1)
        return nb_graph_fail(g, NB_ERR_SHAPE, "index_select '%s': indices '%s' are %s, need 1-D",
                             NAME(NB_OP_GATHER), indices->name, nb_node_shape_str(indices));
    return nb_gather(g, x, axis, indices);
}

nb_node *nb_embedding(nb_graph *g, nb_node *weight, nb_node *indices)
{
    nb_node *in[2] = {weight, indices};
    if (nb_graph_check_inputs(g, NB_OP_GATHER, 2, in))
        return g->poison;
    if (weight->ndim != 2)
        return nb_graph_fail(g, NB_ERR_SHAPE, "embedding '%s': weight '%s' is %s, need (num, dim)",
                             NAME(NB_OP_GATHER), weight->name, nb_node_shape_str(weight));
    return nb_gather(g, weight, 0, indices);
}

/* ---- dropout ------------------------------------------------------------- */

/* SplitMix64's finaliser: a bijective mix of 64 bits. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Each node draws from its own seed mix(g->seed, node id), so two dropouts of
 * one graph have independent masks and a graph rebuilt the same way repeats. */
nb_node *nb_dropout(nb_graph *g, nb_node *x, double p, bool training)
{
    if (nb_graph_check_inputs(g, NB_OP_DROPOUT, 1, &x))
        return g->poison;
    const char *nm = NAME(NB_OP_DROPOUT);
    if (!nb_dtype_is_float(x->dtype))
        return nb_graph_fail(g, NB_ERR_DTYPE, "dropout '%s': input '%s' has dtype %s, need f32 or f64",
                             nm, x->name, nb_dtype_name(x->dtype));
    if (!(p >= 0.0 && p <= 1.0))
        return nb_graph_fail(g, NB_ERR_ARG, "dropout '%s': probability %g is outside [0, 1]", nm, p);
    if (!training || p == 0.0)
        return x;
    nb_dropout_params pr = {p, 0};
    nb_node *y = nb_graph_add_node(g, NB_OP_DROPOUT, 1, &x, &pr, sizeof pr, x->dtype, x->ndim,
                                   x->shape);
    if (y != g->poison)
        ((nb_dropout_params *)y->params)->seed = mix64(g->seed ^ mix64((uint64_t)y->id));
    return y;
}

/* ---- attention ------------------------------------------------------------ */

/* A (lq, lk) bool constant, true where j <= i (PyTorch's is_causal: the
 * lower triangle, aligned top-left). */
static nb_node *causal_keep(nb_graph *g, int64_t lq, int64_t lk)
{
    int64_t shape[2] = {lq, lk};
    nb_tensor t = {0};
    if (nb_tensor_empty(&t, NB_BOOL, 2, shape) != NB_OK)
        return nb_graph_fail(g, NB_ERR_ALLOC, "scaled_dot_product_attention: causal mask (%lld,%lld): %s",
                             (long long)lq, (long long)lk, nb_last_error());
    uint8_t *m = nb_tensor_data(&t);
    for (int64_t i = 0; i < lq; i++)
        for (int64_t j = 0; j < lk; j++)
            m[i * lk + j] = j <= i;
    nb_node *c = nb_constant(g, &t);
    nb_tensor_release(&t);
    return c;
}

/* softmax(q k^T / sqrt(d) [masked]) v:
 *   s = matmul_t(q, k, trans_b) * (1 / sqrt(d))
 *   bool mask:  s = where(mask, s, -inf)      float mask: s = s + mask
 *   causal:     s = where(j <= i, s, -inf)
 *   out = softmax(s, -1) v
 * Every step is a differentiable builder, so the gradient comes from their
 * rules. A row whose every key is masked is NaN, as in PyTorch. Both a mask
 * and causal may be given (PyTorch refuses that; here both apply). */
nb_node *nb_scaled_dot_product_attention(nb_graph *g, nb_node *q, nb_node *k, nb_node *v,
                                         nb_node *mask, bool causal)
{
    nb_node *in[4] = {q, k, v, mask};
    if (nb_graph_check_inputs(g, NB_OP_MATMUL, mask ? 4 : 3, in))
        return g->poison;
    const char *nm = "scaled_dot_product_attention";
    if (!nb_dtype_is_float(q->dtype) || k->dtype != q->dtype || v->dtype != q->dtype)
        return nb_graph_fail(g, NB_ERR_DTYPE, "%s: q, k, v have dtypes %s, %s, %s (need one float dtype)",
                             nm, nb_dtype_name(q->dtype), nb_dtype_name(k->dtype),
                             nb_dtype_name(v->dtype));
    if (q->ndim < 2 || k->ndim < 2 || v->ndim < 2)
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s: q %s, k %s, v %s: each needs (..., L, d)", nm,
                             nb_node_shape_str(q), nb_node_shape_str(k), nb_node_shape_str(v));
    int64_t d = q->shape[q->ndim - 1], lq = q->shape[q->ndim - 2];
    int64_t lk = k->shape[k->ndim - 2];
    if (k->shape[k->ndim - 1] != d)
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s: q %s and k %s: feature dims %lld and %lld differ",
                             nm, nb_node_shape_str(q), nb_node_shape_str(k), (long long)d,
                             (long long)k->shape[k->ndim - 1]);
    if (v->shape[v->ndim - 2] != lk)
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s: k %s and v %s: key lengths %lld and %lld differ",
                             nm, nb_node_shape_str(k), nb_node_shape_str(v), (long long)lk,
                             (long long)v->shape[v->ndim - 2]);
    if (mask && mask->dtype != NB_BOOL && mask->dtype != q->dtype)
        return nb_graph_fail(g, NB_ERR_DTYPE, "%s: mask '%s' has dtype %s, need bool or %s", nm,
                             mask->name, nb_dtype_name(mask->dtype), nb_dtype_name(q->dtype));

    nb_node *s = nb_matmul_t(g, q, k, false, true);
    if (d > 0)
        s = nb_mul_scalar(g, s, 1.0 / sqrt((double)d));
    if (g->status != NB_OK)
        return g->poison;
    if (mask) {
        /* the mask must broadcast to the scores without enlarging them */
        int nd;
        int64_t bs[NB_MAX_DIMS];
        if (!nb_shape_broadcast(s->ndim, s->shape, mask->ndim, mask->shape, &nd, bs) ||
            !nb_shape_equal(nd, bs, s->ndim, s->shape))
            return nb_graph_fail(g, NB_ERR_SHAPE, "%s: mask %s does not broadcast to the scores %s",
                                 nm, nb_node_shape_str(mask), nb_node_shape_str(s));
        if (mask->dtype == NB_BOOL)
            s = nb_where(g, mask, s, nb_scalar(g, -INFINITY, s->dtype));
        else
            s = nb_add(g, s, mask);
    }
    if (causal)
        s = nb_where(g, causal_keep(g, lq, lk), s, nb_scalar(g, -INFINITY, s->dtype));
    nb_node *attn = nb_softmax(g, s, -1);
    return nb_matmul(g, attn, v);
}
