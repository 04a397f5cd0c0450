/* ONNX converters of the neural-network ops: Conv, ConvTranspose, the
 * normalisations (BatchNormalization also in training mode: batch
 * statistics and updated running statistics), Gemm, Flatten, the
 * activations, Softmax and its kin, Dropout (inference, or training with
 * ratio 0) and LRN. Each builds nabla graph nodes from graph.h and
 * nn.h builders, composing from primitives where nabla has no single op
 * (HardSwish, Mish, Selu, PRelu, Hardmax, LRN...). Spatial ops take 1-D and
 * 2-D inputs (1-D runs as 2-D on a height-1 image); 3-D fails clearly.
 * The pools are in onnx_ops_pool.c. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/onnx_ops_util.h"

#include "tensor/shape.h"

/* ---- helpers (finish, out_wanted, need_in and the window ones are shared
 * with the pools: onnx_ops_util.h, onnx_ops_window.c) ------------------------ */

/* Fail when any output from `from` on is wanted. */
static nb_status no_outputs_from(onnx_node_ctx *c, int from, const char *why)
{
    for (int i = from; i < c->n_out; i++)
        if (onnx_out_wanted(c, i))
            return onnx_fail(c, NB_ERR_UNSUPPORTED, "output %d ('%s') is not supported (%s)", i,
                             c->node->output[i], why);
    return NB_OK;
}

static nb_node *scalar_like(onnx_node_ctx *c, nb_node *x, double v)
{
    return nb_scalar(c->g, v, nb_node_dtype(x));
}

/* Input i as a node of x's dtype (cast when it differs). */
static nb_node *in_as(onnx_node_ctx *c, int i, nb_node *x)
{
    nb_node *t = onnx_in(c, i);
    if (t && nb_node_dtype(t) != nb_node_dtype(x))
        t = nb_cast(c->g, t, nb_node_dtype(x));
    return t;
}

/* ---- Conv, ConvTranspose ---------------------------------------------------- */

static bool check_kernel_shape(onnx_node_ctx *c, nb_node *wt, int nd)
{
    const int64_t *ks;
    int n = onnx_attr_ints(c, "kernel_shape", &ks);
    if (n < 0)
        return true;
    for (int i = 0; i < nd && n == nd; i++)
        if (ks[i] != nb_node_shape(wt)[2 + i])
            n = -2;
    if (n != nd)
        onnx_fail(c, NB_ERR_SHAPE, "kernel_shape does not match the weight %s",
                  nb_node_shape_str(wt));
    return n == nd;
}

/* The operands of Conv and ConvTranspose: x, the weight (nd + 2 dims,
 * matching kernel_shape), the optional bias, nd the spatial rank (1 or 2).
 * NB_OK, or the status of the failure (recorded). */
static nb_status conv_operands(onnx_node_ctx *c, nb_node **x, nb_node **wt, nb_node **b, int *nd)
{
    *x = onnx_need_in(c, 0);
    *wt = *x ? onnx_need_in(c, 1) : NULL;
    if (!*wt)
        return nb_graph_status(c->g) ? nb_graph_status(c->g) : NB_ERR_ARG;
    *b = onnx_has_in(c, 2) ? onnx_in(c, 2) : NULL;
    *nd = onnx_spatial_rank(c, *x, 2);
    if (*nd < 0)
        return NB_ERR_UNSUPPORTED;
    if (nb_node_ndim(*wt) != *nd + 2)
        return onnx_fail(c, NB_ERR_SHAPE, "weight %s must be %d-D for input %s",
                         nb_node_shape_str(*wt), *nd + 2, nb_node_shape_str(*x));
    return check_kernel_shape(c, *wt, *nd) ? NB_OK : NB_ERR_SHAPE;
}

static nb_status conv(onnx_node_ctx *c)
{
    nb_node *x, *wt, *b;
    int nd;
    nb_status st = conv_operands(c, &x, &wt, &b, &nd);
    if (st != NB_OK)
        return st;
    onnx_window w = {.nd = nd};
    for (int i = 0; i < nd; i++) {
        w.in[i] = nb_node_shape(x)[2 + i];
        w.k[i] = nb_node_shape(wt)[2 + i];
    }
    if (!onnx_read_window(c, &w, false))
        return NB_ERR_ARG;
    nb_conv_args a = {.groups = onnx_attr_int(c, "group", 1)};
    for (int i = 0; i < nd; i++) {
        a.stride[i] = w.s[i];
        a.dilation[i] = w.d[i];
        a.padding[2 * i] = w.pb[i];
        a.padding[2 * i + 1] = w.pe[i];
    }
    a.clamp = onnx_fused_clamp(c->node, &a.clamp_min, &a.clamp_max);
    nb_node *y = nd == 1 ? nb_conv1d(c->g, x, wt, b, &a) : nb_conv2d(c->g, x, wt, b, &a);
    return onnx_finish(c, 0, y);
}

/* ConvTranspose: out = s (in - 1) + op + (k - 1) d + 1 - pb - pe. With
 * output_shape (or auto_pad SAME_*, out = in s) the pads are derived from the
 * total; SAME_UPPER puts the odd one at the end, the others at the start. */
static nb_status conv_transpose(onnx_node_ctx *c)
{
    nb_node *x, *wt, *b;
    int nd;
    nb_status st = conv_operands(c, &x, &wt, &b, &nd);
    if (st != NB_OK)
        return st;
    int ap = onnx_auto_pad(c);
    int64_t s[2], d[2], op[2], pb[2] = {0, 0}, pe[2] = {0, 0};
    if (ap < 0 || !onnx_dims_attr(c, "strides", nd, 1, 1, s) ||
        !onnx_dims_attr(c, "dilations", nd, 1, 1, d) ||
        !onnx_dims_attr(c, "output_padding", nd, 0, 0, op))
        return NB_ERR_ARG;
    const int64_t *p, *os;
    int np = onnx_attr_ints(c, "pads", &p), nos = onnx_attr_ints(c, "output_shape", &os);
    if (nos >= 0 && nos != nd && nos != nd + 2)
        return onnx_fail(c, NB_ERR_ARG, "output_shape has %d values, expected %d", nos, nd);
    if (nos == nd + 2)
        os += 2;
    if (np >= 0 && nos < 0 && ap == 0) {
        if (np != 2 * nd)
            return onnx_fail(c, NB_ERR_ARG, "attribute pads has %d values, expected %d", np, 2 * nd);
        for (int i = 0; i < nd; i++) {
            pb[i] = p[i];
            pe[i] = p[nd + i];
        }
    }
    for (int i = 0; i < nd; i++) {
        int64_t in = nb_node_shape(x)[2 + i], k = nb_node_shape(wt)[2 + i];
        int64_t full = s[i] * (in - 1) + op[i] + (k - 1) * d[i] + 1;
        int64_t want = -1;
        if (nos >= 0)
            want = os[i];
        else if (ap == 1 || ap == 2)
            want = in * s[i];
        if (want < 0)
            continue;
        int64_t total = full - want;
        if (total < 0) { /* grow with output_padding: zeros (plus bias) at the end */
            op[i] -= total;
            total = 0;
        }
        if (ap == 1) {
            pb[i] = total / 2;
            pe[i] = total - total / 2;
        } else {
            pb[i] = total - total / 2;
            pe[i] = total / 2;
        }
    }
    nb_graph *g = c->g;
    /* output_padding first gives back rows cut by the end pad (real values);
     * only what is left grows the output, with zeros plus bias. nabla takes
     * that when smaller than the stride or dilation; more is padded here. */
    int64_t grow[2] = {0, 0};
    for (int i = 0; i < nd; i++) {
        int64_t net = pe[i] - op[i];
        pe[i] = net > 0 ? net : 0;
        op[i] = net < 0 ? -net : 0;
        if (op[i] >= (s[i] > d[i] ? s[i] : d[i])) {
            grow[i] = op[i];
            op[i] = 0;
        }
    }
    bool grown = grow[0] || grow[1];
    nb_conv_args a = {.groups = onnx_attr_int(c, "group", 1)};
    for (int i = 0; i < nd; i++) {
        int j = nd == 1 ? 1 : i;
        a.stride[j] = s[i];
        a.dilation[j] = d[i];
        a.padding[2 * j] = pb[i];
        a.padding[2 * j + 1] = pe[i];
        a.output_padding[j] = op[i];
    }
    if (nd == 1) {
        a.stride[0] = a.dilation[0] = 1;
        x = nb_unsqueeze(g, x, 2);
        wt = nb_unsqueeze(g, wt, 2);
    }
    nb_node *y = nb_conv_transpose2d(g, x, wt, grown ? NULL : b, &a);
    if (grown) {
        int64_t pads[8] = {0};
        for (int i = 0; i < nd; i++)
            pads[2 * (2 + (nd == 1 ? 1 : i)) + 1] = grow[i];
        y = nb_pad(g, y, pads, 0.0);
        if (b)
            y = nb_add(g, y, nb_reshape(g, b, 4, (int64_t[]){1, -1, 1, 1}));
    }
    if (nd == 1)
        y = nb_squeeze(g, y, 2);
    return onnx_finish(c, 0, y);
}

/* ---- normalisation ------------------------------------------------------------ */

/* Training mode (14+): normalise with the batch statistics (biased
 * variance) and output the updated running statistics
 * running = input * momentum + batch * (1 - momentum), as ONNX specifies. */
static nb_status batch_norm_training(onnx_node_ctx *c, nb_node *x, double eps)
{
    nb_graph *g = c->g;
    int r = nb_node_ndim(x), axes[NB_MAX_DIMS], n = 0;
    for (int i = 0; i < r; i++)
        if (i != 1)
            axes[n++] = i;
    int64_t shape[NB_MAX_DIMS];
    for (int i = 0; i < r; i++)
        shape[i] = i == 1 ? nb_node_shape(x)[1] : 1;
    double mom = onnx_attr_float(c, "momentum", 0.9);
    nb_node *mean = nb_mean(g, x, n, axes, true), *xc = nb_sub(g, x, mean);
    nb_node *var = nb_mean(g, nb_square(g, xc), n, axes, true);
    nb_node *y = nb_mul(g, xc, nb_rsqrt(g, nb_add_scalar(g, var, eps)));
    y = nb_add(g, nb_mul(g, y, nb_reshape(g, in_as(c, 1, x), r, shape)),
               nb_reshape(g, in_as(c, 2, x), r, shape));
    nb_status s = onnx_finish(c, 0, y);
    nb_node *batch[2] = {mean, var};
    for (int i = 1; i <= 2 && s == NB_OK; i++) {
        if (!onnx_out_wanted(c, i))
            continue;
        nb_node *b = nb_reshape(g, batch[i - 1], 1, nb_node_shape(x) + 1);
        s = onnx_finish(c, i, nb_add(g, nb_mul_scalar(g, in_as(c, 2 + i, x), mom),
                                nb_mul_scalar(g, b, 1.0 - mom)));
    }
    return s;
}

static nb_status batch_normalization(onnx_node_ctx *c)
{
    bool training = onnx_attr_int(c, "training_mode", 0) != 0;
    if (c->opset < 9 && onnx_attr_int(c, "spatial", 1) != 1)
        return onnx_fail(c, NB_ERR_UNSUPPORTED, "spatial 0 is not supported");
    if (!training && no_outputs_from(c, 1, "running statistics are outputs of training only") != NB_OK)
        return NB_ERR_UNSUPPORTED;
    if (training && no_outputs_from(c, 3, "saved statistics") != NB_OK)
        return NB_ERR_UNSUPPORTED;
    nb_node *x = onnx_need_in(c, 0);
    for (int i = 1; x && i < 5; i++)
        if (!onnx_has_in(c, i))
            return onnx_fail(c, NB_ERR_ARG, "input %d is required", i);
    if (!x)
        return NB_ERR_ARG;
    if (nb_node_ndim(x) < 2 || !nb_dtype_is_float(nb_node_dtype(x)))
        return onnx_fail(c, NB_ERR_SHAPE, "input %s %s must be float with a channel dim",
                         nb_node_shape_str(x), nb_dtype_name(nb_node_dtype(x)));
    double eps = onnx_attr_float(c, "epsilon", 1e-5);
    if (training)
        return batch_norm_training(c, x, eps);
    nb_node *y = nb_batch_norm(c->g, x, in_as(c, 1, x), in_as(c, 2, x), in_as(c, 3, x),
                               in_as(c, 4, x), false, 0.1, eps);
    return onnx_finish(c, 0, y);
}

static nb_status instance_normalization(onnx_node_ctx *c)
{
    nb_node *x = onnx_need_in(c, 0);
    if (!x || !onnx_has_in(c, 1) || !onnx_has_in(c, 2))
        return x ? onnx_fail(c, NB_ERR_ARG, "scale and B are required") : NB_ERR_ARG;
    if (nb_node_ndim(x) < 3)
        return onnx_fail(c, NB_ERR_SHAPE, "input %s needs spatial dims", nb_node_shape_str(x));
    nb_node *y = nb_group_norm(c->g, x, nb_node_shape(x)[1], in_as(c, 1, x), in_as(c, 2, x),
                               onnx_attr_float(c, "epsilon", 1e-5));
    return onnx_finish(c, 0, y);
}

static bool same_shape(nb_node *t, int n, const int64_t *shape)
{
    return t && nb_shape_equal(nb_node_ndim(t), nb_node_shape(t), n, shape);
}

/* LayerNormalization (17): over dims axis.. ; outputs Y, Mean, InvStdDev. */
static nb_status layer_normalization(onnx_node_ctx *c)
{
    nb_graph *g = c->g;
    nb_node *x = onnx_need_in(c, 0);
    if (!x)
        return NB_ERR_ARG;
    int r = nb_node_ndim(x), axis;
    if (!onnx_axis(onnx_attr_int(c, "axis", -1), r, &axis))
        return onnx_fail(c, NB_ERR_ARG, "axis %lld out of range for input %s",
                         (long long)onnx_attr_int(c, "axis", -1), nb_node_shape_str(x));
    double eps = onnx_attr_float(c, "epsilon", 1e-5);
    int naxes = r - axis;
    const int64_t *ns = nb_node_shape(x) + axis;
    nb_node *scale = onnx_has_in(c, 1) ? in_as(c, 1, x) : NULL;
    nb_node *bias = onnx_has_in(c, 2) ? in_as(c, 2, x) : NULL;
    nb_node *y;
    if ((!scale || same_shape(scale, naxes, ns)) && (!bias || same_shape(bias, naxes, ns))) {
        y = nb_layer_norm(g, x, naxes, scale, bias, eps);
    } else { /* broadcast affine */
        y = nb_layer_norm(g, x, naxes, NULL, NULL, eps);
        if (scale)
            y = nb_mul(g, y, scale);
        if (bias)
            y = nb_add(g, y, bias);
    }
    nb_status s = onnx_finish(c, 0, y);
    if (s != NB_OK || (!onnx_out_wanted(c, 1) && !onnx_out_wanted(c, 2)))
        return s;
    int axes[NB_MAX_DIMS];
    for (int i = 0; i < naxes; i++)
        axes[i] = axis + i;
    nb_node *mean = nb_mean(g, x, naxes, axes, true);
    nb_node *var = nb_mean(g, nb_square(g, nb_sub(g, x, mean)), naxes, axes, true);
    if (onnx_out_wanted(c, 1) && (s = onnx_finish(c, 1, mean)) != NB_OK)
        return s;
    return onnx_out_wanted(c, 2) ? onnx_finish(c, 2, nb_rsqrt(g, nb_add_scalar(g, var, eps)))
                                 : NB_OK;
}

/* GroupNormalization: scale and bias per group (18-20) or per channel (21). */
static nb_status group_normalization(onnx_node_ctx *c)
{
    nb_graph *g = c->g;
    nb_node *x = onnx_need_in(c, 0);
    if (!x || !onnx_has_in(c, 1) || !onnx_has_in(c, 2))
        return x ? onnx_fail(c, NB_ERR_ARG, "scale and bias are required") : NB_ERR_ARG;
    const Onnx__AttributeProto *ng = onnx_attr(c, "num_groups");
    if (!ng)
        return onnx_fail(c, NB_ERR_ARG, "attribute num_groups is required");
    int64_t G = onnx_attr_int(c, "num_groups", 1);
    double eps = onnx_attr_float(c, "epsilon", 1e-5);
    nb_node *scale = in_as(c, 1, x), *bias = in_as(c, 2, x);
    if (c->opset >= 21)
        return onnx_finish(c, 0, nb_group_norm(g, x, G, scale, bias, eps));
    int r = nb_node_ndim(x);
    if (r < 2 || G < 1 || nb_node_shape(x)[1] % G != 0)
        return onnx_fail(c, NB_ERR_SHAPE, "num_groups %lld must divide the channels of %s",
                         (long long)G, nb_node_shape_str(x));
    int64_t C = nb_node_shape(x)[1], shape[NB_MAX_DIMS];
    for (int i = 0; i < r; i++)
        shape[i] = 1;
    shape[1] = C;
    /* per group -> per channel, shaped (1, C, 1, ...) */
    nb_node *per[2] = {scale, bias};
    for (int i = 0; i < 2; i++) {
        nb_node *t = nb_reshape(g, per[i], 2, (int64_t[]){G, 1});
        t = nb_expand(g, t, 2, (int64_t[]){G, C / G});
        per[i] = nb_reshape(g, t, r, shape);
    }
    nb_node *y = nb_group_norm(g, x, G, NULL, NULL, eps);
    return onnx_finish(c, 0, nb_add(g, nb_mul(g, y, per[0]), per[1]));
}

/* LRN: x / (bias + alpha/size * sum of x^2 over the channel window)^beta,
 * the window summed by an average pool over (N, 1, C, H*W). */
static nb_status lrn(onnx_node_ctx *c)
{
    nb_graph *g = c->g;
    nb_node *x = onnx_need_in(c, 0);
    if (!x)
        return NB_ERR_ARG;
    if (!onnx_attr(c, "size"))
        return onnx_fail(c, NB_ERR_ARG, "attribute size is required");
    int64_t size = onnx_attr_int(c, "size", 1);
    double alpha = onnx_attr_float(c, "alpha", 1e-4), beta = onnx_attr_float(c, "beta", 0.75);
    double bias = onnx_attr_float(c, "bias", 1.0);
    int r = nb_node_ndim(x);
    if (size < 1 || r < 3 || !nb_dtype_is_float(nb_node_dtype(x)))
        return onnx_fail(c, NB_ERR_ARG, "size %lld must be >= 1 and the input %s float with spatial dims",
                         (long long)size, nb_node_shape_str(x));
    const int64_t *xs = nb_node_shape(x);
    int64_t N = xs[0], C = xs[1], rest = nb_node_numel(x) / (N * C > 0 ? N * C : 1);
    nb_node *sq = nb_reshape(g, nb_square(g, x), 4, (int64_t[]){N, 1, C, rest});
    int64_t pads[8] = {0, 0, 0, 0, (size - 1) / 2, size - 1 - (size - 1) / 2, 0, 0};
    nb_pool_args a = {{size, 1}, {1, 1}, {0, 0}, false, true};
    nb_node *sum = nb_avg_pool2d(g, nb_pad(g, sq, pads, 0.0), &a); /* mean over size taps */
    sum = nb_reshape(g, sum, r, xs);
    nb_node *den = nb_pow_scalar(g, nb_add_scalar(g, nb_mul_scalar(g, sum, alpha), bias), -beta);
    return onnx_finish(c, 0, nb_mul(g, x, den));
}

/* ---- Gemm, Flatten ------------------------------------------------------------- */

static nb_status gemm(onnx_node_ctx *c)
{
    nb_graph *g = c->g;
    nb_node *a = onnx_need_in(c, 0), *b = a ? onnx_need_in(c, 1) : NULL;
    if (!b)
        return NB_ERR_ARG;
    if (nb_node_ndim(a) != 2 || nb_node_ndim(b) != 2)
        return onnx_fail(c, NB_ERR_SHAPE, "A %s and B %s must be 2-D", nb_node_shape_str(a),
                         nb_node_shape_str(b));
    double alpha = onnx_attr_float(c, "alpha", 1.0), beta = onnx_attr_float(c, "beta", 1.0);
    nb_node *y = nb_matmul_t(g, a, b, onnx_attr_int(c, "transA", 0) != 0,
                             onnx_attr_int(c, "transB", 0) != 0);
    if (alpha != 1.0)
        y = nb_mul_scalar(g, y, alpha);
    if (onnx_has_in(c, 2) && beta != 0.0) {
        nb_node *cc = in_as(c, 2, y);
        if (beta != 1.0)
            cc = nb_mul_scalar(g, cc, beta);
        y = nb_add(g, y, cc);
    }
    return onnx_finish(c, 0, y);
}

static nb_status flatten(onnx_node_ctx *c)
{
    nb_node *x = onnx_need_in(c, 0);
    if (!x)
        return NB_ERR_ARG;
    int r = nb_node_ndim(x);
    int64_t axis = onnx_attr_int(c, "axis", 1);
    if (axis < 0)
        axis += r;
    if (axis < 0 || axis > r)
        return onnx_fail(c, NB_ERR_ARG, "axis %lld out of range for input %s",
                         (long long)onnx_attr_int(c, "axis", 1), nb_node_shape_str(x));
    int64_t shape[2] = {1, 1};
    for (int i = 0; i < r; i++)
        shape[i >= axis] *= nb_node_shape(x)[i];
    return onnx_finish(c, 0, nb_reshape(c->g, x, 2, shape));
}

/* ---- activations ------------------------------------------------------------ */

/* The float input 0 (activations are defined on floats). */
static nb_node *float_in(onnx_node_ctx *c)
{
    nb_node *x = onnx_need_in(c, 0);
    if (x && !nb_dtype_is_float(nb_node_dtype(x))) {
        onnx_fail(c, NB_ERR_DTYPE, "input dtype %s is not supported (float only)",
                  nb_dtype_name(nb_node_dtype(x)));
        return NULL;
    }
    return x;
}

#define ACT(fname, expr)                                                                      \
    static nb_status fname(onnx_node_ctx *c)                                                  \
    {                                                                                         \
        nb_graph *g = c->g;                                                                   \
        nb_node *x = float_in(c);                                                             \
        if (!x)                                                                               \
            return nb_graph_status(g) != NB_OK ? nb_graph_status(g) : NB_ERR_ARG;             \
        (void)g;                                                                              \
        return onnx_finish(c, 0, (expr));                                                     \
    }

#define AF(name, def) onnx_attr_float(c, name, def)

static nb_node *hard_sigmoid_of(nb_graph *g, nb_node *x, double alpha, double beta)
{
    return nb_clip(g, nb_add_scalar(g, nb_mul_scalar(g, x, alpha), beta), 0.0, 1.0);
}

static nb_node *softplus_of(nb_graph *g, nb_node *x)
{
    return nb_softplus(g, x, 1.0, 20.0);
}

ACT(relu, nb_relu(g, x))
ACT(leaky_relu, nb_leaky_relu(g, x, AF("alpha", 0.01)))
ACT(sigmoid, nb_sigmoid(g, x))
ACT(tanh_, nb_tanh(g, x))
ACT(hard_sigmoid, hard_sigmoid_of(g, x, AF("alpha", 0.2), AF("beta", 0.5)))
ACT(hard_swish, nb_mul(g, x, hard_sigmoid_of(g, x, 1.0 / 6.0, 0.5)))
ACT(elu, nb_elu(g, x, AF("alpha", 1.0)))
ACT(selu, nb_mul_scalar(g, nb_elu(g, x, AF("alpha", 1.67326319217681884765625)),
                        AF("gamma", 1.05070102214813232421875)))
ACT(celu, nb_mul_scalar(g, nb_elu(g, nb_mul_scalar(g, x, 1.0 / AF("alpha", 1.0)), 1.0),
                        AF("alpha", 1.0)))
ACT(softplus, softplus_of(g, x))
ACT(softsign, nb_div(g, x, nb_add_scalar(g, nb_abs(g, x), 1.0)))
ACT(mish, nb_mul(g, x, nb_tanh(g, softplus_of(g, x))))
ACT(erf_, nb_erf(g, x))
ACT(thresholded_relu, nb_where(g, nb_gt(g, x, scalar_like(c, x, AF("alpha", 1.0))), x,
                               scalar_like(c, x, 0.0)))

static nb_status gelu(onnx_node_ctx *c)
{
    char buf[16];
    const char *ap = onnx_attr_string(c, "approximate", "none", buf, sizeof buf);
    if (strcmp(ap, "none") && strcmp(ap, "tanh"))
        return onnx_fail(c, NB_ERR_UNSUPPORTED, "approximate '%s' is not 'none' or 'tanh'", ap);
    nb_node *x = float_in(c);
    if (!x)
        return NB_ERR_DTYPE;
    return onnx_finish(c, 0, nb_gelu(c->g, x, !strcmp(ap, "tanh")));
}

/* PRelu: x where x >= 0, slope * x elsewhere (slope broadcast to x). */
static nb_status prelu(onnx_node_ctx *c)
{
    nb_graph *g = c->g;
    nb_node *x = float_in(c);
    if (!x || !onnx_has_in(c, 1))
        return x ? onnx_fail(c, NB_ERR_ARG, "input slope is required") : NB_ERR_ARG;
    nb_node *slope = in_as(c, 1, x);
    nb_node *y = nb_where(g, nb_lt(g, x, scalar_like(c, x, 0.0)), nb_mul(g, x, slope), x);
    return onnx_finish(c, 0, y);
}

/* Clip: bounds as attributes (< 11) or optional inputs (>= 11). */
static nb_status clip(onnx_node_ctx *c)
{
    nb_graph *g = c->g;
    nb_node *x = onnx_need_in(c, 0);
    if (!x)
        return NB_ERR_ARG;
    bool fl = nb_dtype_is_float(nb_node_dtype(x));
    double lo = -INFINITY, hi = INFINITY;
    nb_node *lon = NULL, *hin = NULL;
    if (c->opset < 11) {
        lo = onnx_attr_float(c, "min", -FLT_MAX);
        hi = onnx_attr_float(c, "max", FLT_MAX);
    } else {
        for (int i = 1; i <= 2; i++) {
            if (!onnx_has_in(c, i))
                continue;
            const nb_tensor *t = onnx_in_const(c, i);
            if (t && nb_tensor_numel(t) == 1)
                *(i == 1 ? &lo : &hi) = nb_tensor_get_flat(t, 0);
            else
                *(i == 1 ? &lon : &hin) = in_as(c, i, x);
        }
    }
    nb_node *y = x;
    if (fl && !lon && !hin && lo <= hi) {
        y = nb_clip(g, x, lo, hi);
    } else {
        if (lon || isfinite(lo))
            y = nb_maximum(g, y, lon ? lon : scalar_like(c, x, lo));
        if (hin || isfinite(hi))
            y = nb_minimum(g, y, hin ? hin : scalar_like(c, x, hi));
    }
    return onnx_finish(c, 0, y);
}

/* ---- softmax family --------------------------------------------------------- */

/* Before opset 13 the input is flattened to 2-D at axis (default 1) and the
 * op runs over dim 1; from 13 it runs over axis (default -1). *x2 is the
 * input to use and *ax the axis; returns false after onnx_fail. */
static bool softmax_axis(onnx_node_ctx *c, nb_node *x, nb_node **x2, int *ax)
{
    int r = nb_node_ndim(x);
    bool old = c->opset < 13;
    int64_t a = onnx_attr_int(c, "axis", old ? 1 : -1);
    int axis;
    if (!onnx_axis(a, r, &axis) && !(old && a == r)) {
        onnx_fail(c, NB_ERR_ARG, "axis %lld out of range for input %s", (long long)a,
                  nb_node_shape_str(x));
        return false;
    }
    if (old && a == r)
        axis = r;
    *x2 = x;
    *ax = axis;
    if (old) {
        int64_t shape[2] = {1, 1};
        for (int i = 0; i < r; i++)
            shape[i >= axis] *= nb_node_shape(x)[i];
        *x2 = nb_reshape(c->g, x, 2, shape);
        *ax = 1;
    }
    return true;
}

/* kind 0 Softmax, 1 LogSoftmax, 2 Hardmax */
static nb_status softmax_kind(onnx_node_ctx *c, int kind)
{
    nb_graph *g = c->g;
    nb_node *x = float_in(c), *x2;
    int axis;
    if (!x || !softmax_axis(c, x, &x2, &axis))
        return nb_graph_status(g) != NB_OK ? nb_graph_status(g) : NB_ERR_ARG;
    nb_node *y;
    if (kind == 0) {
        y = nb_softmax(g, x2, axis);
    } else if (kind == 1) {
        y = nb_log_softmax(g, x2, axis);
    } else { /* one-hot of the first maximum: argmax == iota along axis */
        int r = nb_node_ndim(x2);
        int64_t shape[NB_MAX_DIMS], D = nb_node_shape(x2)[axis];
        for (int i = 0; i < r; i++)
            shape[i] = i == axis ? D : 1;
        nb_tensor iota;
        if (nb_tensor_empty(&iota, NB_I64, r, shape) != NB_OK)
            return onnx_fail(c, NB_ERR_ALLOC, "out of memory");
        int64_t *p = nb_tensor_data(&iota);
        for (int64_t i = 0; i < D; i++)
            p[i] = i;
        nb_node *am = nb_argmax(g, x2, axis, true);
        y = nb_cast(g, nb_eq(g, am, nb_constant(g, &iota)), nb_node_dtype(x));
        nb_tensor_release(&iota);
    }
    if (x2 != x)
        y = nb_reshape(g, y, nb_node_ndim(x), nb_node_shape(x));
    return onnx_finish(c, 0, y);
}

static nb_status softmax(onnx_node_ctx *c) { return softmax_kind(c, 0); }
static nb_status log_softmax(onnx_node_ctx *c) { return softmax_kind(c, 1); }
static nb_status hardmax(onnx_node_ctx *c) { return softmax_kind(c, 2); }

/* ---- Dropout ------------------------------------------------------------------- */

/* Inference: the identity, with an all-true mask when asked for. Training
 * mode (a true training_mode input, 12+) runs only with ratio 0. */
static nb_status dropout(onnx_node_ctx *c)
{
    nb_node *x = onnx_need_in(c, 0);
    if (!x)
        return NB_ERR_ARG;
    if (c->opset >= 12 && onnx_has_in(c, 2)) {
        const nb_tensor *t = onnx_in_const(c, 2);
        if (!t)
            return onnx_fail(c, NB_ERR_UNSUPPORTED, "training_mode must be a constant");
        double ratio = 0.5;
        if (nb_tensor_get_flat(t, 0) != 0) {
            if (onnx_has_in(c, 1)) {
                const nb_tensor *rt = onnx_in_const(c, 1);
                if (!rt)
                    return onnx_fail(c, NB_ERR_UNSUPPORTED, "ratio must be a constant");
                ratio = nb_tensor_get_flat(rt, 0);
            }
            if (ratio != 0)
                return onnx_fail(c, NB_ERR_UNSUPPORTED, "training mode with ratio %g is not "
                                 "supported (inference only)", ratio);
        }
    }
    nb_status s = onnx_finish(c, 0, x);
    if (s != NB_OK || !onnx_out_wanted(c, 1))
        return s;
    nb_tensor m;
    nb_dtype mdt = c->opset >= 10 ? NB_BOOL : nb_node_dtype(x);
    if ((s = nb_tensor_empty(&m, mdt, nb_node_ndim(x), nb_node_shape(x))) != NB_OK ||
        (s = nb_tensor_fill(&m, 1.0)) != NB_OK) {
        nb_tensor_release(&m);
        return onnx_fail(c, s, "mask: %s", nb_last_error());
    }
    return onnx_set_out_const(c, 1, &m);
}

/* ---- the table -------------------------------------------------------------------- */

const onnx_op_entry nb_onnx_ops_nn[] = {
    {NULL, "Conv", 1, 0, conv},
    {NULL, "ConvTranspose", 1, 0, conv_transpose},
    {NULL, "BatchNormalization", 1, 0, batch_normalization},
    {NULL, "InstanceNormalization", 1, 0, instance_normalization},
    {NULL, "LayerNormalization", 17, 0, layer_normalization},
    {NULL, "GroupNormalization", 18, 0, group_normalization},
    {NULL, "LRN", 1, 0, lrn},
    {NULL, "Gemm", 1, 0, gemm},
    {NULL, "Flatten", 1, 0, flatten},
    {NULL, "Relu", 1, 0, relu},
    {NULL, "LeakyRelu", 1, 0, leaky_relu},
    {NULL, "Sigmoid", 1, 0, sigmoid},
    {NULL, "HardSigmoid", 1, 0, hard_sigmoid},
    {NULL, "HardSwish", 14, 0, hard_swish},
    {NULL, "Tanh", 1, 0, tanh_},
    {NULL, "Elu", 1, 0, elu},
    {NULL, "Selu", 1, 0, selu},
    {NULL, "Celu", 12, 0, celu},
    {NULL, "Softplus", 1, 0, softplus},
    {NULL, "Softsign", 1, 0, softsign},
    {NULL, "Mish", 18, 0, mish},
    {NULL, "Gelu", 20, 0, gelu},
    {NULL, "Erf", 9, 0, erf_},
    {NULL, "PRelu", 7, 0, prelu},
    {NULL, "ThresholdedRelu", 10, 0, thresholded_relu},
    {NULL, "Clip", 1, 0, clip},
    {NULL, "Softmax", 1, 0, softmax},
    {NULL, "LogSoftmax", 1, 0, log_softmax},
    {NULL, "Hardmax", 1, 0, hardmax},
    {NULL, "Dropout", 1, 0, dropout},
    {NULL, NULL, 0, 0, NULL},
};
