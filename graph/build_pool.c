/* Builders of pooling and nearest-neighbour upsampling (NCHW), with PyTorch's
 * output-size rules (kernels/pool_params.h) and messages naming the op, the
 * node and the shapes. The *_GRAD ops are made by the VJP rules
 * (autodiff/vjp_pool.c). */
#include <string.h>

#include "graph/graph_impl.h"

#define NAME(op) nb_graph_next_name(g, op)

/* Shared checks: a 4-D float input; label names the builder in messages. */
static bool check_x(nb_graph *g, nb_op op, const char *label, nb_node *x)
{
    if (nb_graph_check_inputs(g, op, 1, &x))
        return false;
    if (x->ndim != 4) {
        nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': input %s must be 4-D (N, C, H, W)", label,
                      NAME(op), nb_node_shape_str(x));
        return false;
    }
    if (x->dtype != NB_F32 && x->dtype != NB_F64) {
        nb_graph_fail(g, NB_ERR_DTYPE, "%s '%s': input dtype %s (need f32 or f64)", label,
                      NAME(op), nb_dtype_name(x->dtype));
        return false;
    }
    return true;
}

static nb_node *pool2d(nb_graph *g, nb_op op, nb_node *x, const nb_pool_args *a)
{
    if (!check_x(g, op, nb_op_name(op), x))
        return g->poison;
    const char *on = nb_op_name(op);
    if (!a)
        return nb_graph_fail(g, NB_ERR_ARG, "%s '%s': NULL pooling arguments", on, NAME(op));
    nb_pool_params p;
    memset(&p, 0, sizeof p);
    for (int d = 0; d < 2; d++) {
        p.kernel[d] = a->kernel[d];
        p.stride[d] = a->stride[d] == 0 ? a->kernel[d] : a->stride[d];
        p.pad[d] = a->padding[d];
        if (p.kernel[d] < 1 || p.stride[d] < 1 || p.pad[d] < 0)
            return nb_graph_fail(g, NB_ERR_ARG, "%s '%s': kernel (%lld,%lld), stride (%lld,%lld), padding (%lld,%lld): kernel and stride must be >= 1 and padding >= 0",
                                 on, NAME(op), (long long)a->kernel[0], (long long)a->kernel[1],
                                 (long long)a->stride[0], (long long)a->stride[1],
                                 (long long)a->padding[0], (long long)a->padding[1]);
    }
    for (int d = 0; d < 2; d++)
        if (2 * p.pad[d] > p.kernel[d])
            return nb_graph_fail(g, NB_ERR_ARG, "%s '%s': padding (%lld,%lld) must be at most half the kernel (%lld,%lld)",
                                 on, NAME(op), (long long)p.pad[0], (long long)p.pad[1],
                                 (long long)p.kernel[0], (long long)p.kernel[1]);
    for (int d = 0; d < 2; d++) {
        int64_t in = x->shape[2 + d];
        if (in < 1)
            return nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': input %s has an empty image", on,
                                 NAME(op), nb_node_shape_str(x));
        /* an error in ceil mode too (issue 3), where PyTorch would pool the
         * partial window */
        if (p.kernel[d] > in + 2 * p.pad[d])
            return nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': kernel (%lld,%lld) is larger than the padded input: %s with padding (%lld,%lld)",
                                 on, NAME(op), (long long)p.kernel[0], (long long)p.kernel[1],
                                 nb_node_shape_str(x), (long long)p.pad[0], (long long)p.pad[1]);
    }
    p.ceil_mode = a->ceil_mode;
    p.count_include_pad = op == NB_OP_AVG_POOL2D && a->count_include_pad;
    int64_t shape[4] = {x->shape[0], x->shape[1], 0, 0};
    for (int d = 0; d < 2; d++)
        shape[2 + d] = nb_pool_out_size(x->shape[2 + d], p.kernel[d], p.stride[d], p.pad[d],
                                        p.ceil_mode);
    memcpy(p.in_shape, x->shape, sizeof p.in_shape);
    return nb_graph_add_node(g, op, 1, &x, &p, sizeof p, x->dtype, 4, shape);
}

nb_node *nb_max_pool2d(nb_graph *g, nb_node *x, const nb_pool_args *a)
{
    return pool2d(g, NB_OP_MAX_POOL2D, x, a);
}

nb_node *nb_avg_pool2d(nb_graph *g, nb_node *x, const nb_pool_args *a)
{
    return pool2d(g, NB_OP_AVG_POOL2D, x, a);
}

/* mean over H and W, keeping them as 1 */
nb_node *nb_global_avg_pool2d(nb_graph *g, nb_node *x)
{
    if (!check_x(g, NB_OP_MEAN, "global_avg_pool2d", x))
        return g->poison;
    if (x->shape[2] < 1 || x->shape[3] < 1)
        return nb_graph_fail(g, NB_ERR_SHAPE, "global_avg_pool2d '%s': input %s has an empty image",
                             NAME(NB_OP_MEAN), nb_node_shape_str(x));
    return nb_reduce_mask(g, NB_OP_MEAN, x, (1u << 2) | (1u << 3), true);
}

/* 1x1: the global mean; otherwise AVG_POOL2D with adaptive windows. */
nb_node *nb_adaptive_avg_pool2d(nb_graph *g, nb_node *x, int64_t out_h, int64_t out_w)
{
    if (!check_x(g, NB_OP_AVG_POOL2D, "adaptive_avg_pool2d", x))
        return g->poison;
    if (out_h < 1 || out_w < 1)
        return nb_graph_fail(g, NB_ERR_ARG, "adaptive_avg_pool2d '%s': output size (%lld,%lld) must be >= 1",
                             NAME(NB_OP_AVG_POOL2D), (long long)out_h, (long long)out_w);
    if (x->shape[2] < 1 || x->shape[3] < 1)
        return nb_graph_fail(g, NB_ERR_SHAPE, "adaptive_avg_pool2d '%s': input %s has an empty image",
                             NAME(NB_OP_AVG_POOL2D), nb_node_shape_str(x));
    if (out_h == 1 && out_w == 1)
        return nb_global_avg_pool2d(g, x);
    if (out_h == x->shape[2] && out_w == x->shape[3])
        return x;
    nb_pool_params p;
    memset(&p, 0, sizeof p);
    p.adaptive = 1;
    memcpy(p.in_shape, x->shape, sizeof p.in_shape);
    int64_t shape[4] = {x->shape[0], x->shape[1], out_h, out_w};
    return nb_graph_add_node(g, NB_OP_AVG_POOL2D, 1, &x, &p, sizeof p, x->dtype, 4, shape);
}

nb_node *nb_upsample_nearest2d(nb_graph *g, nb_node *x, int64_t scale_h, int64_t scale_w)
{
    nb_op op = NB_OP_UPSAMPLE_NEAREST2D;
    if (!check_x(g, op, nb_op_name(op), x))
        return g->poison;
    if (scale_h < 1 || scale_w < 1)
        return nb_graph_fail(g, NB_ERR_ARG, "upsample_nearest2d '%s': scales (%lld,%lld) must be integers >= 1",
                             NAME(op), (long long)scale_h, (long long)scale_w);
    if (scale_h == 1 && scale_w == 1)
        return x;
    nb_pool_params p;
    memset(&p, 0, sizeof p);
    p.scale[0] = scale_h;
    p.scale[1] = scale_w;
    memcpy(p.in_shape, x->shape, sizeof p.in_shape);
    int64_t shape[4] = {x->shape[0], x->shape[1], x->shape[2] * scale_h, x->shape[3] * scale_w};
    return nb_graph_add_node(g, op, 1, &x, &p, sizeof p, x->dtype, 4, shape);
}
