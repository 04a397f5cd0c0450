/* Builders of pooling and nearest-neighbour upsampling (NCHW), with PyTorch's
 * output-size rules (kernels/pool_params.h) and messages naming the op, the
 * node and the shapes. The *_GRAD ops are made by the VJP rules
 * (autodiff/vjp_pool.c). ONNX's MaxPool Indices, MaxUnpool and RoiAlign are here
 * too; they have no gradient. */
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

/* ---- ONNX's index pooling and RoiAlign ------------------------------------- */

nb_node *nb_max_pool2d_indices(nb_graph *g, nb_node *x, const nb_pool_index_args *a)
{
    nb_op op = NB_OP_MAX_POOL2D_INDEX;
    if (!check_x(g, op, "max_pool2d_indices", x))
        return g->poison;
    if (!a)
        return nb_graph_fail(g, NB_ERR_ARG, "max_pool2d_indices '%s': NULL arguments", NAME(op));
    nb_pool_index_params p;
    memset(&p, 0, sizeof p);
    for (int d = 0; d < 2; d++) {
        if (a->kernel[d] < 1 || a->stride[d] < 1 || a->dilation[d] < 1 || a->pad[d] < 0 ||
            a->out[d] < 0)
            return nb_graph_fail(g, NB_ERR_ARG, "max_pool2d_indices '%s': kernel (%lld,%lld), stride (%lld,%lld), dilation (%lld,%lld), pad (%lld,%lld), output (%lld,%lld): kernel, stride and dilation must be >= 1, pad and output >= 0",
                                 NAME(op), (long long)a->kernel[0], (long long)a->kernel[1],
                                 (long long)a->stride[0], (long long)a->stride[1],
                                 (long long)a->dilation[0], (long long)a->dilation[1],
                                 (long long)a->pad[0], (long long)a->pad[1],
                                 (long long)a->out[0], (long long)a->out[1]);
        p.kernel[d] = a->kernel[d];
        p.stride[d] = a->stride[d];
        p.pad[d] = a->pad[d];
        p.dilation[d] = a->dilation[d];
    }
    p.column_major = a->column_major;
    int64_t shape[4] = {x->shape[0], x->shape[1], a->out[0], a->out[1]};
    return nb_graph_add_node(g, op, 1, &x, &p, sizeof p, NB_I64, 4, shape);
}

nb_node *nb_max_unpool(nb_graph *g, nb_node *x, nb_node *idx, int ndim, const int64_t *shape)
{
    nb_op op = NB_OP_MAX_UNPOOL;
    nb_node *in[2] = {x, idx};
    if (nb_graph_check_inputs(g, op, 2, in))
        return g->poison;
    if (idx->dtype != NB_I64 || nb_node_numel(idx) != nb_node_numel(x))
        return nb_graph_fail(g, NB_ERR_ARG, "max_unpool '%s': indices %s %s must be i64 with one per element of x %s",
                             NAME(op), nb_dtype_name(idx->dtype), nb_node_shape_str(idx),
                             nb_node_shape_str(x));
    if (ndim < 1 || ndim > NB_MAX_DIMS || !shape)
        return nb_graph_fail(g, NB_ERR_SHAPE, "max_unpool '%s': output rank %d is outside [1, %d]",
                             NAME(op), ndim, NB_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return nb_graph_fail(g, NB_ERR_SHAPE, "max_unpool '%s': output dim %d is negative (%lld)",
                                 NAME(op), i, (long long)shape[i]);
    return nb_graph_add_node(g, op, 2, in, NULL, 0, x->dtype, ndim, shape);
}

nb_node *nb_roi_align(nb_graph *g, nb_node *x, nb_node *rois, nb_node *batch,
                      const nb_roi_align_args *a)
{
    nb_op op = NB_OP_ROI_ALIGN;
    nb_node *in[3] = {x, rois, batch};
    if (nb_graph_check_inputs(g, op, 3, in) || !check_x(g, op, "roi_align", x))
        return g->poison;
    if (!a)
        return nb_graph_fail(g, NB_ERR_ARG, "roi_align '%s': NULL arguments", NAME(op));
    if (rois->ndim != 2 || rois->shape[1] != 4 || rois->dtype != x->dtype)
        return nb_graph_fail(g, NB_ERR_SHAPE, "roi_align '%s': rois %s %s must be (R, 4) of x's dtype %s",
                             NAME(op), nb_dtype_name(rois->dtype), nb_node_shape_str(rois),
                             nb_dtype_name(x->dtype));
    if (batch->ndim != 1 || batch->shape[0] != rois->shape[0] || batch->dtype != NB_I64)
        return nb_graph_fail(g, NB_ERR_SHAPE, "roi_align '%s': batch_indices %s %s must be i64 (%lld), one per roi",
                             NAME(op), nb_dtype_name(batch->dtype), nb_node_shape_str(batch),
                             (long long)rois->shape[0]);
    if (a->out_h < 1 || a->out_w < 1 || a->sampling_ratio < 0)
        return nb_graph_fail(g, NB_ERR_ARG, "roi_align '%s': output (%lld,%lld) must be >= 1 and sampling_ratio %lld >= 0",
                             NAME(op), (long long)a->out_h, (long long)a->out_w,
                             (long long)a->sampling_ratio);
    nb_roi_align_params p;
    memset(&p, 0, sizeof p);
    p.spatial_scale = a->spatial_scale;
    p.sampling_ratio = a->sampling_ratio;
    p.max_mode = a->max_mode;
    p.half_pixel = a->half_pixel;
    int64_t shape[4] = {rois->shape[0], x->shape[1], a->out_h, a->out_w};
    return nb_graph_add_node(g, op, 3, in, &p, sizeof p, x->dtype, 4, shape);
}
