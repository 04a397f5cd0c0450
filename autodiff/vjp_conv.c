/* VJP rules of the convolutions. All three ops are bilinear in their two
 * tensor operands, and each one's gradients are the other two ops:
 *
 *   y = conv2d(x, w) + b:
 *     dx = conv_transpose2d(gy, w)      (output_padding so that dx has x's shape)
 *     dw = conv2d_grad_weight(x, gy)
 *     db = sum(gy, axes 0, 2, 3)
 *   y = conv_transpose2d(x, w) + b, the adjoint of conv2d(., w) in its input:
 *     dx = conv2d(gy, w)
 *     dw = conv2d_grad_weight(gy, x)    (gy plays the conv2d input, x its output)
 *     db = sum(gy, axes 0, 2, 3)
 *   y = conv2d_grad_weight(a, b), y[o, c, k] = sum b[n, o, p] col(a)[n, (c, k), p]:
 *     da = conv_transpose2d(b, gy)
 *     db = conv2d(a, gy)
 *
 * A conv2d with a fused clamp, y = clamp(conv2d(x, w) + b, lo, hi), first
 * masks gy to where lo < y < hi (a where on comparisons, so differentiable
 * again), then applies the rules above; the derived ops never clamp.
 *
 * For the transpose's gradients the output_padding of the forward op is moved
 * into pad_end (pad_end - output_padding, possibly negative): the conv2d that
 * maps gy back to x's size then reads exactly the rows the transpose wrote.
 * So every rule is differentiable again (second derivatives work). */
#include <math.h>
#include <string.h>

#include "autodiff/vjp.h"

/* A convolution node with explicit params and output shape (the rules have
 * derived both; the kernels check them again). */
static nb_node *conv_node(nb_graph *g, nb_op op, nb_node *a, nb_node *b, const nb_conv_params *p,
                          const int64_t *shape)
{
    nb_node *in[2] = {a, b};
    if (nb_graph_check_inputs(g, op, 2, in))
        return g->poison;
    return nb_graph_add_node(g, op, 2, in, p, sizeof *p, a->dtype, 4, shape);
}

/* The transpose of conv (params p) mapping b (conv2d-output side) back to a
 * tensor of a's shape, with weight w: output_padding makes up the rows that
 * the stride skipped. */
static nb_node *transpose_to(nb_graph *g, nb_node *b, nb_node *w, const nb_conv_params *p,
                             const nb_node *a)
{
    nb_conv_params q = *p;
    for (int i = 0; i < 2; i++) {
        int64_t span = q.dilation[i] * (w->shape[2 + i] - 1) + 1;
        q.output_padding[i] = a->shape[2 + i] - ((b->shape[2 + i] - 1) * q.stride[i] -
                                                 q.pad_begin[i] - q.pad_end[i] + span);
    }
    memset(q.weight_shape, 0, sizeof q.weight_shape);
    return conv_node(g, NB_OP_CONV_TRANSPOSE2D, b, w, &q, a->shape);
}

/* dw of conv2d(a, .) with output gradient b, for a weight of shape wshape. */
static nb_node *grad_weight(nb_graph *g, nb_node *a, nb_node *b, const nb_conv_params *p,
                            const int64_t *wshape)
{
    nb_conv_params q = *p;
    q.output_padding[0] = q.output_padding[1] = 0;
    memcpy(q.weight_shape, wshape, sizeof q.weight_shape);
    return conv_node(g, NB_OP_CONV2D_GRAD_WEIGHT, a, b, &q, wshape);
}

/* db = sum(gy, axes 0, 2, 3) */
static nb_node *bias_grad(nb_graph *g, nb_node *gy)
{
    return nb_reduce_mask(g, NB_OP_SUM, gy, 1u | 4u | 8u, false);
}

/* gy where lo < y < hi, else 0 (an infinite bound is not compared). */
static nb_node *unclamp(nb_graph *g, nb_node *y, nb_node *gy, const nb_conv_params *p)
{
    nb_node *zero = nb_scalar(g, 0, gy->dtype);
    if (isfinite(p->clamp_min))
        gy = nb_where(g, nb_gt(g, y, nb_scalar(g, p->clamp_min, y->dtype)), gy, zero);
    if (isfinite(p->clamp_max))
        gy = nb_where(g, nb_lt(g, y, nb_scalar(g, p->clamp_max, y->dtype)), gy, zero);
    return gy;
}

static nb_node *vjp_conv2d(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_conv_params p = *(const nb_conv_params *)y->params;
    nb_node *x = y->in[0], *w = y->in[1];
    if (p.clamp) {
        gy = unclamp(g, y, gy, &p);
        p.clamp = 0;
    }
    if (i == 0)
        return transpose_to(g, gy, w, &p, x);
    if (i == 1)
        return grad_weight(g, x, gy, &p, w->shape);
    return bias_grad(g, gy);
}

static nb_node *vjp_conv_transpose2d(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_conv_params q = *(const nb_conv_params *)y->params;
    nb_node *x = y->in[0], *w = y->in[1];
    for (int k = 0; k < 2; k++) {
        q.pad_end[k] -= q.output_padding[k];
        q.output_padding[k] = 0;
    }
    if (i == 0)
        return conv_node(g, NB_OP_CONV2D, gy, w, &q, x->shape);
    if (i == 1)
        return grad_weight(g, gy, x, &q, w->shape);
    return bias_grad(g, gy);
}

static nb_node *vjp_conv2d_grad_weight(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    const nb_conv_params *p = y->params;
    nb_node *a = y->in[0], *b = y->in[1];
    if (i == 0)
        return transpose_to(g, b, gy, p, a);
    nb_conv_params q = *p;
    memset(q.weight_shape, 0, sizeof q.weight_shape);
    return conv_node(g, NB_OP_CONV2D, a, gy, &q, b->shape);
}

void nb_vjp_register_conv(nb_vjp_fn *table)
{
    table[NB_OP_CONV2D] = vjp_conv2d;
    table[NB_OP_CONV_TRANSPOSE2D] = vjp_conv_transpose2d;
    table[NB_OP_CONV2D_GRAD_WEIGHT] = vjp_conv2d_grad_weight;
}
