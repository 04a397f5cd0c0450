/* ONNX converters, quantization family: QuantizeLinear, DequantizeLinear,
 * DynamicQuantizeLinear (uint8), MatMulInteger, QLinearMatMul, ConvInteger
 * and QLinearConv, and the preview training operators Adagrad, Momentum and
 * Adam (domain ai.onnx.preview.training).
 *
 * The integer products are computed in f64 (exact at these sizes) and cast
 * back; rounding is half to even (onnx_round_of).
 */
#include <string.h>

#include "models/onnx_ops_util.h"

/* ---- quantization (uint8) ---------------------------------------------------------
 *
 * QuantizeLinear:   y = saturate(round_half_even(x / scale) + zero_point)
 * DequantizeLinear: y = (x - zero_point) scale
 * scale and zero_point are scalars or 1-D along axis (default 1).
 * DynamicQuantizeLinear: scale = (max(0, max x) - min(0, min x)) / 255,
 *   zero_point = saturate(round(-min(0, min x) / scale)), then QuantizeLinear.
 * MatMulInteger: (a - a_zero_point) @ (b - b_zero_point) in f64, as i32.
 */

/* v (scalar or 1-D along axis) shaped to broadcast against rank r. */
static nb_node *per_axis(onnx_node_ctx *c, nb_node *v, int r, bool *ok)
{
    *ok = true;
    if (nb_node_ndim(v) == 0 || nb_node_numel(v) == 1)
        return nb_reshape(c->g, v, 0, NULL);
    int axis;
    if (nb_node_ndim(v) != 1 || !onnx_axis(onnx_attr_int(c, "axis", 1), r, &axis)) {
        *ok = false;
        return v;
    }
    int64_t shape[NB_MAX_DIMS];
    for (int d = 0; d < r; d++)
        shape[d] = d == axis ? nb_node_numel(v) : 1;
    return nb_reshape(c->g, v, r, shape);
}

static nb_node *quantize(nb_graph *g, nb_node *x, nb_node *scale, nb_node *zp)
{
    nb_node *q = onnx_round_of(g, nb_div(g, x, scale));
    if (zp)
        q = nb_add(g, q, nb_cast(g, zp, nb_node_dtype(q)));
    return nb_cast(g, nb_clip(g, q, 0, 255), NB_U8);
}

static nb_status cv_quantize(onnx_node_ctx *c)
{
    IN(x0, 0);
    IN(sc0, 1);
    nb_graph *g = c->g;
    int r = nb_node_ndim(x0);
    bool ok1 = true, ok2 = true;
    nb_node *zp = NULL;
    if (onnx_has_in(c, 2)) {
        IN(z, 2);
        if (nb_node_dtype(z) != NB_U8)
            return onnx_fail(c, NB_ERR_DTYPE, "zero point of dtype %s (only uint8 is supported)",
                             nb_dtype_name(nb_node_dtype(z)));
        zp = per_axis(c, z, r, &ok2);
    }
    nb_node *sc = per_axis(c, nb_cast(g, sc0, NB_F32), r, &ok1);
    if (!ok1 || !ok2)
        return onnx_fail(c, NB_ERR_SHAPE, "scale / zero point do not fit input %s",
                         nb_node_shape_str(x0));
    return onnx_finish(c, 0, quantize(g, nb_cast(g, x0, NB_F32), sc, zp));
}

static nb_status cv_dequantize(onnx_node_ctx *c)
{
    IN(x, 0);
    IN(sc0, 1);
    nb_graph *g = c->g;
    int r = nb_node_ndim(x);
    bool ok1 = true, ok2 = true;
    nb_node *y = nb_cast(g, x, NB_F32);
    if (onnx_has_in(c, 2)) {
        IN(z, 2);
        y = nb_sub(g, y, per_axis(c, nb_cast(g, z, NB_F32), r, &ok2));
    }
    nb_node *sc = per_axis(c, sc0, r, &ok1);
    if (!ok1 || !ok2)
        return onnx_fail(c, NB_ERR_SHAPE, "scale / zero point do not fit input %s",
                         nb_node_shape_str(x));
    return onnx_finish(c, 0, nb_mul(g, y, nb_cast(g, sc, NB_F32)));
}

static nb_status cv_dynamic_quantize(onnx_node_ctx *c)
{
    IN(x0, 0);
    nb_graph *g = c->g;
    nb_node *x = nb_cast(g, x0, NB_F32);
    nb_node *zero = nb_scalar(g, 0, NB_F32);
    nb_node *lo = nb_minimum(g, nb_min(g, x, 0, NULL, false), zero);
    nb_node *hi = nb_maximum(g, nb_max(g, x, 0, NULL, false), zero);
    nb_node *scale = nb_div(g, nb_sub(g, hi, lo), nb_scalar(g, 255, NB_F32));
    nb_node *zpf = nb_clip(g, onnx_round_of(g, nb_neg(g, nb_div(g, lo, scale))), 0, 255);
    nb_node *zp = nb_cast(g, zpf, NB_U8);
    nb_status s = onnx_finish(c, 0, quantize(g, x, scale, zp));
    if (s == NB_OK && c->n_out > 1)
        s = onnx_finish(c, 1, scale);
    if (s == NB_OK && c->n_out > 2)
        s = onnx_finish(c, 2, zp);
    return s;
}

static nb_status cv_matmul_integer(onnx_node_ctx *c)
{
    IN(a, 0);
    IN(b, 1);
    nb_graph *g = c->g;
    nb_node *x = nb_cast(g, a, NB_F64), *y = nb_cast(g, b, NB_F64);
    if (onnx_has_in(c, 2)) { /* scalar, or per row of a: (M,) -> (M, 1) */
        IN(za, 2);
        nb_node *z = nb_cast(g, za, NB_F64);
        if (nb_node_numel(z) > 1)
            z = nb_reshape(g, z, 2, (int64_t[]){nb_node_numel(z), 1});
        x = nb_sub(g, x, z);
    }
    if (onnx_has_in(c, 3)) { /* scalar, or per column of b */
        IN(zb, 3);
        y = nb_sub(g, y, nb_cast(g, zb, NB_F64));
    }
    return onnx_finish(c, 0, nb_cast(g, nb_matmul(g, x, y), NB_I32));
}

/* A scalar (one-element) node as f64, reshaped to 0-d. */
static nb_node *scalar64(nb_graph *g, nb_node *v)
{
    return nb_reshape(g, nb_cast(g, v, NB_F64), 0, NULL);
}

/* QLinearMatMul: quantize(((a - a_zp) @ (b - b_zp)) a_scale b_scale / y_scale, y_zp);
 * one-element scales and zero points only. */
static nb_status cv_qlinear_matmul(onnx_node_ctx *c)
{
    nb_graph *g = c->g;
    nb_node *v[8];
    for (int i = 0; i < 8; i++) {
        if (!(v[i] = onnx_in(c, i)))
            return NB_ERR_ARG;
        if ((i % 3 != 0 || i == 6) && nb_node_numel(v[i]) != 1)
            return onnx_fail(c, NB_ERR_UNSUPPORTED,
                             "input %d has %lld values (only per-tensor scales and zero points)",
                             i, (long long)nb_node_numel(v[i]));
    }
    if (nb_node_dtype(v[7]) != NB_U8)
        return onnx_fail(c, NB_ERR_DTYPE, "output type %s (only uint8)",
                         nb_dtype_name(nb_node_dtype(v[7])));
    nb_node *a = nb_sub(g, nb_cast(g, v[0], NB_F64), scalar64(g, v[2]));
    nb_node *b = nb_sub(g, nb_cast(g, v[3], NB_F64), scalar64(g, v[5]));
    nb_node *m = nb_mul(g, nb_matmul(g, a, b),
                        nb_div(g, nb_mul(g, scalar64(g, v[1]), scalar64(g, v[4])), scalar64(g, v[6])));
    return onnx_finish(c, 0, quantize(g, m, nb_scalar(g, 1, NB_F64), nb_reshape(g, v[7], 0, NULL)));
}

/* The integer convolutions: x (N, C, H, W) and w minus their zero points,
 * convolved in f64 (exact for these sizes); attributes as Conv's, with
 * auto_pad NOTSET only. */
static nb_node *int_conv(onnx_node_ctx *c, nb_node *x, nb_node *w, nb_node *xzp, nb_node *wzp)
{
    nb_graph *g = c->g;
    if (nb_node_ndim(x) != 4 || nb_node_ndim(w) != 4) {
        onnx_fail(c, NB_ERR_UNSUPPORTED, "input %s, weight %s: only 2-D convolution is supported",
                  nb_node_shape_str(x), nb_node_shape_str(w));
        return NULL;
    }
    char ap[16];
    const char *auto_pad = onnx_attr_string(c, "auto_pad", "NOTSET", ap, sizeof ap);
    const int64_t *st, *pd, *dl;
    int ns = onnx_attr_ints(c, "strides", &st), np = onnx_attr_ints(c, "pads", &pd);
    int nd = onnx_attr_ints(c, "dilations", &dl);
    if (strcmp(auto_pad, "NOTSET") || (ns >= 0 && ns != 2) || (np >= 0 && np != 4) ||
        (nd >= 0 && nd != 2)) {
        onnx_fail(c, NB_ERR_UNSUPPORTED, "auto_pad '%s' / strides, pads, dilations of %d, %d, %d values",
                  auto_pad, ns, np, nd);
        return NULL;
    }
    nb_conv_args a = {0};
    for (int i = 0; i < 2; i++) {
        a.stride[i] = ns == 2 ? st[i] : 1;
        a.dilation[i] = nd == 2 ? dl[i] : 1;
    }
    if (np == 4) { /* ONNX (h_begin, w_begin, h_end, w_end) -> (top, bottom, left, right) */
        a.padding[0] = pd[0], a.padding[1] = pd[2], a.padding[2] = pd[1], a.padding[3] = pd[3];
    }
    a.groups = onnx_attr_int(c, "group", 1);
    nb_node *xf = nb_cast(g, x, NB_F64), *wf = nb_cast(g, w, NB_F64);
    if (xzp)
        xf = nb_sub(g, xf, scalar64(g, xzp));
    if (wzp) { /* per tensor, or per output channel */
        nb_node *z = nb_cast(g, wzp, NB_F64);
        z = nb_node_numel(z) == 1 ? nb_reshape(g, z, 0, NULL)
                                  : nb_reshape(g, z, 4, (int64_t[]){nb_node_numel(z), 1, 1, 1});
        wf = nb_sub(g, wf, z);
    }
    return nb_conv2d(g, xf, wf, NULL, &a);
}

static nb_status cv_conv_integer(onnx_node_ctx *c)
{
    IN(x, 0);
    IN(w, 1);
    nb_node *xz = NULL, *wz = NULL;
    if (onnx_has_in(c, 2) && !(xz = onnx_in(c, 2)))
        return NB_ERR_ARG;
    if (onnx_has_in(c, 3) && !(wz = onnx_in(c, 3)))
        return NB_ERR_ARG;
    nb_node *y = int_conv(c, x, w, xz, wz);
    if (!y)
        return NB_ERR_UNSUPPORTED;
    return onnx_finish(c, 0, nb_cast(c->g, y, NB_I32));
}

/* QLinearConv: quantize((conv(x - x_zp, w - w_zp) + B) x_scale w_scale / y_scale, y_zp),
 * w_scale per tensor or per output channel. */
static nb_status cv_qlinear_conv(onnx_node_ctx *c)
{
    nb_graph *g = c->g;
    nb_node *v[9] = {0};
    for (int i = 0; i < 9; i++)
        if ((i < 8 || onnx_has_in(c, i)) && !(v[i] = onnx_in(c, i)))
            return NB_ERR_ARG;
    if (nb_node_dtype(v[7]) != NB_U8 || nb_node_numel(v[1]) != 1 || nb_node_numel(v[6]) != 1)
        return onnx_fail(c, NB_ERR_UNSUPPORTED,
                         "only uint8 output and per-tensor input/output scales are supported");
    nb_node *y = int_conv(c, v[0], v[3], v[2], v[5]);
    if (!y)
        return NB_ERR_UNSUPPORTED;
    int64_t M = nb_node_shape(y)[1];
    if (v[8])
        y = nb_add(g, y, nb_reshape(g, nb_cast(g, v[8], NB_F64), 4, (int64_t[]){1, M, 1, 1}));
    nb_node *ws = nb_cast(g, v[4], NB_F64);
    ws = nb_node_numel(ws) == 1 ? nb_reshape(g, ws, 0, NULL)
                                : nb_reshape(g, ws, 4, (int64_t[]){1, nb_node_numel(ws), 1, 1});
    nb_node *k = nb_div(g, nb_mul(g, scalar64(g, v[1]), ws), scalar64(g, v[6]));
    y = quantize(g, nb_mul(g, y, k), nb_scalar(g, 1, NB_F64), nb_reshape(g, v[7], 0, NULL));
    return onnx_finish(c, 0, y);
}

/* ---- training operators (domain ai.onnx.preview.training) ----------------------
 *
 * Inputs R (learning rate), T (step count), then n tensors X, their
 * gradients G and one or two state tensors each; outputs the new X and
 * states. The update formulas are the operator specs', computed in f64:
 *   Adagrad:  r = R / (1 + T decay); g = nc X + G; H' = H + g^2;
 *             X' = X - r g / (sqrt(H') + eps)
 *   Momentum: g = nc X + G; V' = alpha V + (T > 0 ? beta : 1) g;
 *             X' = X - R V' (standard) or X - R (g + alpha V') (nesterov)
 *   Adam:     g = nc X + G; V' = alpha V + (1 - alpha) g;
 *             H' = beta H + (1 - beta) g^2;
 *             r = T > 0 ? R sqrt(1 - beta^T) / (1 - alpha^T) : R;
 *             X' = (1 - nc_post) (X - r V' / (sqrt(H') + eps))
 * Defaults: epsilon 1e-6, Adam's alpha 0.9 and beta 0.999, the others 0.
 * (ONNX 1.12's test_adam_multiple fails by design: its node has no epsilon
 * attribute but its outputs were computed with 1e-2; onnx/onnx#7749.)
 */
static nb_status cv_train_op(onnx_node_ctx *c)
{
    nb_graph *g = c->g;
    const char *t = c->node->op_type;
    int states = !strcmp(t, "Adam") ? 2 : 1, per = 2 + states;
    if (c->n_in < 2 + per || (c->n_in - 2) % per != 0 || c->n_out != (c->n_in - 2) / per * (1 + states))
        return onnx_fail(c, NB_ERR_ARG, "%d inputs and %d outputs do not fit %s", c->n_in,
                         c->n_out, t);
    int n = (c->n_in - 2) / per;
    IN(R0, 0);
    IN(T0, 1);
    nb_node *R = nb_reshape(g, nb_cast(g, R0, NB_F64), 0, NULL);
    nb_node *T = nb_reshape(g, nb_cast(g, T0, NB_F64), 0, NULL);
    double nc = onnx_attr_float(c, "norm_coefficient", 0);
    double alpha = onnx_attr_float(c, "alpha", !strcmp(t, "Adam") ? 0.9 : 0);
    double beta = onnx_attr_float(c, "beta", !strcmp(t, "Adam") ? 0.999 : 0);
    /* the spec's default is 1e-6 for Adagrad and Adam (Momentum has none) */
    double eps = onnx_attr_float(c, "epsilon", 1e-6);
    nb_node *tpos = nb_gt(g, T, nb_scalar(g, 0, NB_F64));
    char mbuf[16];
    const char *mode = onnx_attr_string(c, "mode", "standard", mbuf, sizeof mbuf);
    if (strcmp(mode, "standard") && strcmp(mode, "nesterov"))
        return onnx_fail(c, NB_ERR_ARG, "mode '%s'", mode);
    for (int i = 0; i < n; i++) {
        IN(X0, 2 + i);
        IN(G0, 2 + n + i);
        IN(S0, 2 + 2 * n + i);
        nb_dtype dt = nb_node_dtype(X0);
        nb_node *X = nb_cast(g, X0, NB_F64), *S = nb_cast(g, S0, NB_F64);
        nb_node *gr = nb_add(g, nb_mul_scalar(g, X, nc), nb_cast(g, G0, NB_F64));
        nb_node *Xn, *Sn, *Hn = NULL;
        if (!strcmp(t, "Adagrad")) {
            double decay = onnx_attr_float(c, "decay_factor", 0);
            nb_node *r = nb_div(g, R, nb_add_scalar(g, nb_mul_scalar(g, T, decay), 1));
            Sn = nb_add(g, S, nb_mul(g, gr, gr));
            nb_node *den = nb_add_scalar(g, nb_sqrt(g, Sn), eps);
            Xn = nb_sub(g, X, nb_div(g, nb_mul(g, r, gr), den));
        } else if (!strcmp(t, "Momentum")) {
            nb_node *b = nb_where(g, tpos, nb_scalar(g, beta, NB_F64), nb_scalar(g, 1, NB_F64));
            Sn = nb_add(g, nb_mul_scalar(g, S, alpha), nb_mul(g, b, gr));
            nb_node *step = !strcmp(mode, "nesterov") ? nb_add(g, gr, nb_mul_scalar(g, Sn, alpha)) : Sn;
            Xn = nb_sub(g, X, nb_mul(g, R, step));
        } else {
            IN(H0, 2 + 3 * n + i);
            nb_node *H = nb_cast(g, H0, NB_F64);
            Sn = nb_add(g, nb_mul_scalar(g, S, alpha), nb_mul_scalar(g, gr, 1 - alpha));
            Hn = nb_add(g, nb_mul_scalar(g, H, beta), nb_mul_scalar(g, nb_mul(g, gr, gr), 1 - beta));
            nb_node *ba = nb_pow(g, nb_scalar(g, alpha, NB_F64), T);
            nb_node *bb = nb_pow(g, nb_scalar(g, beta, NB_F64), T);
            nb_node *radj = nb_div(g, nb_mul(g, R, nb_sqrt(g, nb_sub(g, nb_scalar(g, 1, NB_F64), bb))),
                                   nb_sub(g, nb_scalar(g, 1, NB_F64), ba));
            nb_node *r = nb_where(g, tpos, radj, R);
            nb_node *den = nb_add_scalar(g, nb_sqrt(g, Hn), eps);
            Xn = nb_sub(g, X, nb_div(g, nb_mul(g, r, Sn), den));
            Xn = nb_mul_scalar(g, Xn, 1 - onnx_attr_float(c, "norm_coefficient_post", 0));
        }
        nb_status s = onnx_finish(c, i, nb_cast(g, Xn, dt));
        if (s == NB_OK)
            s = onnx_finish(c, n + i, nb_cast(g, Sn, nb_node_dtype(S0)));
        if (s == NB_OK && Hn)
            s = onnx_finish(c, 2 * n + i, nb_cast(g, Hn, dt));
        if (s != NB_OK)
            return s;
    }
    return NB_OK;
}

/* ---- the table --------------------------------------------------------------------- */

const onnx_op_entry nb_onnx_ops_quant[] = {
    {NULL, "QuantizeLinear", 10, 0, cv_quantize},
    {NULL, "DequantizeLinear", 10, 0, cv_dequantize},
    {NULL, "DynamicQuantizeLinear", 11, 0, cv_dynamic_quantize},
    {NULL, "MatMulInteger", 10, 0, cv_matmul_integer},
    {NULL, "QLinearMatMul", 10, 0, cv_qlinear_matmul},
    {NULL, "ConvInteger", 10, 0, cv_conv_integer},
    {NULL, "QLinearConv", 10, 0, cv_qlinear_conv},
    {"ai.onnx.preview.training", "Adagrad", 1, 0, cv_train_op},
    {"ai.onnx.preview.training", "Momentum", 1, 0, cv_train_op},
    {"ai.onnx.preview.training", "Adam", 1, 0, cv_train_op},
    {NULL, NULL, 0, 0, NULL},
};
