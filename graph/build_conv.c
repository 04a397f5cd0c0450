/* Builders of the convolutions: conv2d, conv1d (a conv2d on a height-1
 * image) and conv_transpose2d. Shapes are checked here so that a mistake is
 * reported where the node is made, naming the op, the node and the shapes. */
#include <string.h>

#include "graph/graph_impl.h"

/* The args with defaults applied (zero stride, dilation, groups mean 1) as
 * kernel params; false (graph failed) on a negative value. */
static bool make_params(nb_graph *g, const char *op, const char *nm, const nb_conv_args *a,
                        nb_conv_params *p)
{
    memset(p, 0, sizeof *p);
    nb_conv_args d = {{1, 1}, {0, 0, 0, 0}, {1, 1}, {0, 0}, 1};
    if (a)
        d = *a;
    for (int i = 0; i < 2; i++) {
        p->stride[i] = d.stride[i] == 0 ? 1 : d.stride[i];
        p->dilation[i] = d.dilation[i] == 0 ? 1 : d.dilation[i];
        p->output_padding[i] = d.output_padding[i];
        p->pad_begin[i] = d.padding[2 * i];
        p->pad_end[i] = d.padding[2 * i + 1];
    }
    p->groups = d.groups == 0 ? 1 : d.groups;
    if (d.clamp) {
        if (!(d.clamp_min <= d.clamp_max)) { /* also false for NaN */
            nb_graph_fail(g, NB_ERR_ARG, "%s '%s': clamp range [%g, %g] is empty or NaN", op, nm,
                          (double)d.clamp_min, (double)d.clamp_max);
            return false;
        }
        p->clamp = 1;
        p->clamp_min = d.clamp_min;
        p->clamp_max = d.clamp_max;
    }
    for (int i = 0; i < 2; i++)
        if (p->stride[i] < 0 || p->dilation[i] < 0 || p->pad_begin[i] < 0 || p->pad_end[i] < 0 ||
            p->output_padding[i] < 0 || p->groups < 0) {
            nb_graph_fail(g, NB_ERR_ARG,
                          "%s '%s': stride, padding, dilation, output_padding and groups must not be negative",
                          op, nm);
            return false;
        }
    return true;
}

/* Common checks of x, w, bias: float dtypes that agree, 4-D x and w. */
static bool check_operands(nb_graph *g, const char *op, const char *nm, nb_node *x, nb_node *w,
                           nb_node *bias, int xdims)
{
    if (!nb_dtype_is_float(x->dtype) || w->dtype != x->dtype || (bias && bias->dtype != x->dtype)) {
        nb_graph_fail(g, NB_ERR_DTYPE, "%s '%s': dtypes %s (input), %s (weight)%s%s differ or are not float",
                      op, nm, nb_dtype_name(x->dtype), nb_dtype_name(w->dtype),
                      bias ? ", " : "", bias ? nb_dtype_name(bias->dtype) : "");
        return false;
    }
    if (x->ndim != xdims || w->ndim != xdims) {
        nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': input %s and weight %s must both be %d-D", op, nm,
                      nb_node_shape_str(x), nb_node_shape_str(w), xdims);
        return false;
    }
    return true;
}

/* Fail unless the dilated kernel fits the padded input in both dims. */
static bool check_fit(nb_graph *g, const char *op, const char *nm, bool one_d, const int64_t *in,
                      const int64_t *k, const nb_conv_params *p)
{
    int64_t span[2], padded[2];
    for (int i = 0; i < 2; i++) {
        span[i] = p->dilation[i] * (k[i] - 1) + 1;
        padded[i] = in[i] + p->pad_begin[i] + p->pad_end[i];
    }
    if (span[0] <= padded[0] && span[1] <= padded[1])
        return true;
    if (one_d)
        nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': kernel %lld (dilated %lld) is larger than the padded input %lld",
                      op, nm, (long long)k[1], (long long)span[1], (long long)padded[1]);
    else
        nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': kernel %lldx%lld (dilated %lldx%lld) is larger than the padded input %lldx%lld",
                      op, nm, (long long)k[0], (long long)k[1], (long long)span[0],
                      (long long)span[1], (long long)padded[0], (long long)padded[1]);
    return false;
}

/* conv2d on 4-D operands; op names the public builder for messages. */
static nb_node *conv2d_impl(nb_graph *g, const char *op, bool one_d, nb_node *x, nb_node *w,
                            nb_node *bias, const nb_conv_params *p, const char *nm)
{
    int64_t N = x->shape[0], C = x->shape[1], CO = w->shape[0], G = p->groups;
    if (C % G != 0 || CO % G != 0)
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': groups %lld must divide the input channels %lld and the output channels %lld (input %s, weight %s)",
                             op, nm, (long long)G, (long long)C, (long long)CO,
                             nb_node_shape_str(x), nb_node_shape_str(w));
    if (w->shape[1] * G != C)
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': weight %s needs %lld input channels per group (input %s has %lld channels, groups %lld), not %lld",
                             op, nm, nb_node_shape_str(w), (long long)(C / G),
                             nb_node_shape_str(x), (long long)C, (long long)G,
                             (long long)w->shape[1]);
    if (bias && (bias->ndim != 1 || bias->shape[0] != CO))
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': bias %s must have shape (%lld) for weight %s",
                             op, nm, nb_node_shape_str(bias), (long long)CO, nb_node_shape_str(w));
    if (!check_fit(g, op, nm, one_d, x->shape + 2, w->shape + 2, p))
        return g->poison;
    int64_t shape[4] = {N, CO, 0, 0};
    for (int i = 0; i < 2; i++)
        shape[2 + i] = (x->shape[2 + i] + p->pad_begin[i] + p->pad_end[i] -
                        p->dilation[i] * (w->shape[2 + i] - 1) - 1) / p->stride[i] + 1;
    nb_node *in[3] = {x, w, bias};
    return nb_graph_add_node(g, NB_OP_CONV2D, bias ? 3 : 2, in, p, sizeof *p, x->dtype, 4, shape);
}

nb_node *nb_conv2d(nb_graph *g, nb_node *x, nb_node *w, nb_node *bias, const nb_conv_args *a)
{
    nb_node *in[3] = {x, w, bias};
    if (nb_graph_check_inputs(g, NB_OP_CONV2D, bias ? 3 : 2, in))
        return g->poison;
    const char *nm = nb_graph_next_name(g, NB_OP_CONV2D);
    nb_conv_params p;
    if (!make_params(g, "conv2d", nm, a, &p) || !check_operands(g, "conv2d", nm, x, w, bias, 4))
        return g->poison;
    p.output_padding[0] = p.output_padding[1] = 0; /* transpose only */
    return conv2d_impl(g, "conv2d", false, x, w, bias, &p, nm);
}

/* conv1d(x (N, C, L), w (CO, C/G, k)) = squeeze(conv2d(x as (N, C, 1, L), w as
 * (CO, C/G, 1, k)), 2), with the 1-D args moved to the width dim. */
nb_node *nb_conv1d(nb_graph *g, nb_node *x, nb_node *w, nb_node *bias, const nb_conv_args *a)
{
    nb_node *in[3] = {x, w, bias};
    if (nb_graph_check_inputs(g, NB_OP_CONV2D, bias ? 3 : 2, in))
        return g->poison;
    const char *nm = nb_graph_next_name(g, NB_OP_CONV2D);
    nb_conv_args a1 = {{1, 1}, {0, 0, 0, 0}, {1, 1}, {0, 0}, 1};
    if (a) {
        a1.stride[1] = a->stride[0];
        a1.dilation[1] = a->dilation[0];
        a1.padding[2] = a->padding[0];
        a1.padding[3] = a->padding[1];
        a1.groups = a->groups;
        a1.clamp = a->clamp;
        a1.clamp_min = a->clamp_min;
        a1.clamp_max = a->clamp_max;
    }
    nb_conv_params p;
    if (!make_params(g, "conv1d", nm, &a1, &p) || !check_operands(g, "conv1d", nm, x, w, bias, 3))
        return g->poison;
    nb_node *x4 = nb_unsqueeze(g, x, 2), *w4 = nb_unsqueeze(g, w, 2);
    if (nb_graph_status(g) != NB_OK)
        return g->poison;
    nm = nb_graph_next_name(g, NB_OP_CONV2D);
    nb_node *y = conv2d_impl(g, "conv1d", true, x4, w4, bias, &p, nm);
    return nb_squeeze(g, y, 2);
}

/* conv_transpose2d: x (N, C_in, H, W), w (C_in, C_out/G, kh, kw); output
 * (H-1)*s - pad_top - pad_bottom + d*(kh-1) + 1 + output_padding (likewise W). */
nb_node *nb_conv_transpose2d(nb_graph *g, nb_node *x, nb_node *w, nb_node *bias,
                             const nb_conv_args *a)
{
    const char *op = "conv_transpose2d";
    nb_node *in[3] = {x, w, bias};
    if (nb_graph_check_inputs(g, NB_OP_CONV_TRANSPOSE2D, bias ? 3 : 2, in))
        return g->poison;
    const char *nm = nb_graph_next_name(g, NB_OP_CONV_TRANSPOSE2D);
    nb_conv_params p;
    if (!make_params(g, op, nm, a, &p) || !check_operands(g, op, nm, x, w, bias, 4))
        return g->poison;
    if (p.clamp)
        return nb_graph_fail(g, NB_ERR_UNSUPPORTED, "%s '%s': a fused clamp is only for conv2d and conv1d",
                             op, nm);
    int64_t N = x->shape[0], C = x->shape[1], G = p.groups, CO = w->shape[1] * G;
    if (w->shape[0] != C)
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': weight %s must have %lld rows, one per input channel of %s",
                             op, nm, nb_node_shape_str(w), (long long)C, nb_node_shape_str(x));
    if (C % G != 0)
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': groups %lld must divide the input channels %lld (input %s)",
                             op, nm, (long long)G, (long long)C, nb_node_shape_str(x));
    if (bias && (bias->ndim != 1 || bias->shape[0] != CO))
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': bias %s must have shape (%lld) for weight %s and groups %lld",
                             op, nm, nb_node_shape_str(bias), (long long)CO, nb_node_shape_str(w),
                             (long long)G);
    int64_t shape[4] = {N, CO, 0, 0};
    for (int i = 0; i < 2; i++) {
        int64_t s = p.stride[i], d = p.dilation[i], k = w->shape[2 + i];
        if (p.output_padding[i] >= (s > d ? s : d))
            return nb_graph_fail(g, NB_ERR_ARG, "%s '%s': output_padding %lld must be smaller than the stride %lld or the dilation %lld",
                                 op, nm, (long long)p.output_padding[i], (long long)s, (long long)d);
        shape[2 + i] = (x->shape[2 + i] - 1) * s - p.pad_begin[i] - p.pad_end[i] + d * (k - 1) +
                       1 + p.output_padding[i];
    }
    if (shape[2] < 1 || shape[3] < 1 || x->shape[2] < 1 || x->shape[3] < 1)
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': input %s with weight %s and this padding gives an empty %lldx%lld output",
                             op, nm, nb_node_shape_str(x), nb_node_shape_str(w),
                             (long long)shape[2], (long long)shape[3]);
    return nb_graph_add_node(g, NB_OP_CONV_TRANSPOSE2D, bias ? 3 : 2, in, &p, sizeof p, x->dtype,
                             4, shape);
}
