/* ONNX converters of the pooling ops: MaxPool (with its Indices output, both
 * storage orders), AveragePool, GlobalAveragePool, GlobalMaxPool, MaxUnpool
 * LpPool and GlobalLpPool. MaxPool, AveragePool and LpPool take 1-D, 2-D and
 * 3-D inputs: 1-D runs as 2-D on a height-1 image, 3-D as two 2-D pools (the
 * windows are separable); 3-D MaxPool has no Indices. LpPool is the average
 * pool of |x|^p counting the pads, times that count, to the power 1/p.
 *
 * Pools follow ONNX's window rules rather than PyTorch's: asymmetric pads,
 * auto_pad SAME_*, ceil mode and dilations. The common case (symmetric pads
 * of at most half the kernel, no dilation) is one nabla pool node; otherwise
 * the input is padded explicitly, pooled without padding and, for average
 * pools, rescaled by a constant of the true divisors.
 *
 * The window helpers (onnx_auto_pad, onnx_dims_attr, onnx_read_window ...) are
 * shared with Conv: onnx_ops_util.h, onnx_ops_window.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/onnx_ops_util.h"

#include "kernels/pool_params.h"
#include "tensor/shape.h"

/* ---- pools ---------------------------------------------------------------- */

/* The number of the k taps of window o (stride s, dilation d, pad pb) that
 * fall in [lo, hi) of the unpadded coordinates. */
static int64_t taps_in(const onnx_window *w, int i, int64_t o, int64_t lo, int64_t hi)
{
    int64_t n = 0, start = o * w->s[i] - w->pb[i];
    for (int64_t t = 0; t < w->k[i]; t++) {
        int64_t p = start + t * w->d[i];
        n += p >= lo && p < hi;
    }
    return n;
}

/* Pool x (N, C, H, W) over window w (2 dims). is_max, else average with
 * count_include_pad (pads count, the overhang of ceil mode does not). */
static nb_node *pool2d(onnx_node_ctx *c, nb_node *x, const onnx_window *w, bool is_max,
                       bool cip, bool ceil_mode)
{
    nb_graph *g = c->g;
    bool fast = true;
    for (int i = 0; i < 2; i++)
        fast = fast && w->d[i] == 1 && w->pb[i] == w->pe[i] && 2 * w->pb[i] <= w->k[i] &&
               nb_pool_out_size(w->in[i], w->k[i], w->s[i], w->pb[i], ceil_mode) == w->out[i];
    if (fast && !is_max && ceil_mode && cip)
        fast = false; /* PyTorch and ONNX count the overhang differently */
    if (fast) {
        nb_pool_args a = {{w->k[0], w->k[1]}, {w->s[0], w->s[1]}, {w->pb[0], w->pb[1]},
                          ceil_mode, cip};
        return is_max ? nb_max_pool2d(g, x, &a) : nb_avg_pool2d(g, x, &a);
    }
    /* pad explicitly, to cover every window of the output */
    int64_t pads[8] = {0}, span[2];
    for (int i = 0; i < 2; i++) {
        span[i] = (w->k[i] - 1) * w->d[i] + 1;
        int64_t need = (w->out[i] - 1) * w->s[i] + span[i];
        int64_t have = w->in[i] + w->pb[i] + w->pe[i];
        pads[4 + 2 * i] = w->pb[i];
        pads[5 + 2 * i] = w->pe[i] + (need > have ? need - have : 0);
    }
    nb_node *xp = nb_pad(g, x, pads, is_max ? -INFINITY : 0.0);
    nb_node *y = NULL;
    if (w->d[0] == 1 && w->d[1] == 1) {
        nb_pool_args a = {{w->k[0], w->k[1]}, {w->s[0], w->s[1]}, {0, 0}, false, true};
        y = is_max ? nb_max_pool2d(g, xp, &a) : nb_avg_pool2d(g, xp, &a);
        for (int i = 0; i < 2; i++)
            y = nb_slice(g, y, 2 + i, 0, w->out[i], 1);
    } else { /* dilated: max or mean of the k0*k1 strided taps */
        for (int64_t t0 = 0; t0 < w->k[0]; t0++)
            for (int64_t t1 = 0; t1 < w->k[1]; t1++) {
                int64_t b0 = t0 * w->d[0], b1 = t1 * w->d[1];
                nb_node *v = nb_slice(g, xp, 2, b0, b0 + (w->out[0] - 1) * w->s[0] + 1, w->s[0]);
                v = nb_slice(g, v, 3, b1, b1 + (w->out[1] - 1) * w->s[1] + 1, w->s[1]);
                y = !y ? v : is_max ? nb_maximum(g, y, v) : nb_add(g, y, v);
            }
        if (!is_max)
            y = nb_mul_scalar(g, y, 1.0 / (double)(w->k[0] * w->k[1]));
    }
    if (is_max || nb_graph_status(g) != NB_OK)
        return y;
    /* y divides by k0*k1; rescale to the true divisor of each window */
    int64_t shape[4] = {1, 1, w->out[0], w->out[1]};
    nb_tensor f;
    if (nb_tensor_empty(&f, nb_node_dtype(x), 4, shape) != NB_OK)
        return nb_graph_fail(g, NB_ERR_ALLOC, "%s: out of memory", c->node->op_type);
    bool all_one = true;
    double K = (double)(w->k[0] * w->k[1]);
    for (int64_t o0 = 0; o0 < w->out[0]; o0++)
        for (int64_t o1 = 0; o1 < w->out[1]; o1++) {
            int64_t n0 = cip ? taps_in(w, 0, o0, -w->pb[0], w->in[0] + w->pe[0])
                             : taps_in(w, 0, o0, 0, w->in[0]);
            int64_t n1 = cip ? taps_in(w, 1, o1, -w->pb[1], w->in[1] + w->pe[1])
                             : taps_in(w, 1, o1, 0, w->in[1]);
            double v = n0 * n1 > 0 ? K / (double)(n0 * n1) : NAN;
            all_one = all_one && v == 1.0;
            nb_tensor_set(&f, (int64_t[]){0, 0, o0, o1}, v);
        }
    if (!all_one)
        y = nb_mul(g, y, nb_constant(g, &f));
    nb_tensor_release(&f);
    return y;
}

/* A 3-D pool as two 2-D ones: max and average pooling are separable (the
 * window is a box; its divisor, with or without the pads, is the product of
 * the per-dim counts), so pool (H, W) of the (N, C*D, H, W) view, then (D,
 * 1) of the (N, C, D, OH*OW) view. */
static nb_node *pool3d(onnx_node_ctx *c, nb_node *x, const onnx_window *r, bool is_max,
                       bool cip, bool ceil_mode)
{
    nb_graph *g = c->g;
    const int64_t *xs = nb_node_shape(x);
    int64_t N = xs[0], C = xs[1], P = r->out[1] * r->out[2];
    onnx_window hw = {.nd = 2};
    for (int i = 0; i < 2; i++) {
        hw.in[i] = r->in[1 + i], hw.k[i] = r->k[1 + i], hw.s[i] = r->s[1 + i];
        hw.d[i] = r->d[1 + i], hw.pb[i] = r->pb[1 + i], hw.pe[i] = r->pe[1 + i];
        hw.out[i] = r->out[1 + i];
    }
    onnx_window dd = {.nd = 2, .in = {r->in[0], P}, .k = {r->k[0], 1}, .s = {r->s[0], 1},
                 .d = {r->d[0], 1}, .pb = {r->pb[0], 0}, .pe = {r->pe[0], 0},
                 .out = {r->out[0], P}};
    nb_node *y = nb_reshape(g, x, 4, (int64_t[]){N, C * r->in[0], r->in[1], r->in[2]});
    y = pool2d(c, y, &hw, is_max, cip, ceil_mode);
    if (!y || nb_graph_status(g) != NB_OK)
        return y;
    y = pool2d(c, nb_reshape(g, y, 4, (int64_t[]){N, C, r->in[0], P}), &dd, is_max, cip,
               ceil_mode);
    return nb_reshape(g, y, 5, (int64_t[]){N, C, r->out[0], r->out[1], r->out[2]});
}

/* The number of taps of each output window inside the padded input (the
 * divisor of average pooling with count_include_pad), as a constant of
 * shape (1, 1, out...) and dtype dt. */
static nb_node *window_counts(onnx_node_ctx *c, const onnx_window *r, nb_dtype dt)
{
    int64_t shape[5] = {1, 1, 1, 1, 1}, total = 1;
    for (int i = 0; i < r->nd; i++) {
        shape[2 + i] = r->out[i];
        total *= r->out[i];
    }
    nb_tensor t;
    if (nb_tensor_empty(&t, dt, 2 + r->nd, shape) != NB_OK)
        return nb_graph_fail(c->g, NB_ERR_ALLOC, "%s: out of memory", c->node->op_type);
    for (int64_t e = 0; e < total; e++) {
        int64_t rest = e, n = 1, at[5] = {0};
        for (int i = r->nd - 1; i >= 0; i--) {
            at[2 + i] = rest % r->out[i];
            n *= taps_in(r, i, at[2 + i], -r->pb[i], r->in[i] + r->pe[i]);
            rest /= r->out[i];
        }
        nb_tensor_set(&t, at, (double)n);
    }
    nb_node *k = nb_constant(c->g, &t);
    nb_tensor_release(&t);
    return k;
}

enum { POOL_MAX, POOL_AVG, POOL_LP };

/* MaxPool, AveragePool and LpPool: (sum |x|^p)^(1/p), the sum being the
 * average that counts the pads times that count (pads add 0). */
static nb_status pool(onnx_node_ctx *c, int kind)
{
    bool is_max = kind == POOL_MAX;
    nb_node *x = onnx_need_in(c, 0);
    if (!x)
        return NB_ERR_ARG;
    int nd = onnx_spatial_rank(c, x, 3);
    if (nd < 0)
        return NB_ERR_UNSUPPORTED;
    int64_t order = is_max ? onnx_attr_int(c, "storage_order", 0) : 0;
    if (order != 0 && order != 1)
        return onnx_fail(c, NB_ERR_ARG, "storage_order %lld must be 0 (row major) or 1 (column major)",
                         (long long)order);
    if (nd == 3 && is_max && onnx_out_wanted(c, 1))
        return onnx_fail(c, NB_ERR_UNSUPPORTED, "the Indices output of a 3-D MaxPool is not "
                         "supported");
    double lp = kind == POOL_LP ? onnx_attr_float(c, "p", 2) : 0;
    if (kind == POOL_LP && !(lp > 0 && lp < INFINITY))
        return onnx_fail(c, NB_ERR_ARG, "p = %g must be positive and finite", lp);
    onnx_window w = {.nd = 2, .in = {1, 1}, .k = {1, 1}, .s = {1, 1}, .d = {1, 1}};
    onnx_window r = {.nd = nd};
    if (!onnx_dims_attr(c, "kernel_shape", nd, 0, 1, r.k))
        return NB_ERR_ARG;
    if (r.k[0] == 0)
        return onnx_fail(c, NB_ERR_ARG, "attribute kernel_shape is required");
    for (int i = 0; i < nd; i++)
        r.in[i] = nb_node_shape(x)[2 + i];
    bool ceil_mode = onnx_attr_int(c, "ceil_mode", 0) != 0;
    if (!onnx_read_window(c, &r, ceil_mode))
        return NB_ERR_ARG;
    /* 1-D runs on a height-1 image: the real dim is the width */
    for (int i = 0; i < nd && nd < 3; i++) {
        int j = nd == 1 ? 1 : i;
        w.in[j] = r.in[i], w.k[j] = r.k[i], w.s[j] = r.s[i], w.d[j] = r.d[i];
        w.pb[j] = r.pb[i], w.pe[j] = r.pe[i], w.out[j] = r.out[i];
    }
    if (nd == 1)
        w.out[0] = 1;
    nb_graph *g = c->g;
    nb_dtype dt = nb_node_dtype(x);
    if (!nb_dtype_is_float(dt)) {
        if (!is_max)
            return onnx_fail(c, NB_ERR_DTYPE, "input dtype %s is not supported", nb_dtype_name(dt));
        x = nb_cast(g, x, NB_F32);
    }
    nb_node *x0 = x;
    if (kind == POOL_LP)
        x = lp == 1 ? nb_abs(g, x) : lp == 2 ? nb_mul(g, x, x) : nb_pow_scalar(g, nb_abs(g, x), lp);
    if (nd == 1)
        x = nb_unsqueeze(g, x, 2);
    bool cip = kind == POOL_LP || onnx_attr_int(c, "count_include_pad", 0) != 0;
    nb_node *y = nd == 3 ? pool3d(c, x, &r, is_max, cip, ceil_mode)
                         : pool2d(c, x, &w, is_max, cip, ceil_mode);
    if (nd == 1)
        y = nb_squeeze(g, y, 2);
    if (kind == POOL_LP && nb_graph_status(g) == NB_OK) {
        y = nb_mul(g, y, window_counts(c, &r, nb_node_dtype(y)));
        y = lp == 1 ? y : lp == 2 ? nb_sqrt(g, y) : nb_pow_scalar(g, y, 1.0 / lp);
    }
    if (!nb_dtype_is_float(dt))
        y = nb_cast(g, y, dt);
    nb_status st = onnx_finish(c, 0, y);
    if (st != NB_OK || !is_max || !onnx_out_wanted(c, 1))
        return st;
    /* Indices: flat positions in the input; a 1-D input's height of 1 makes
     * both storage orders give n*C*L + c*L + l */
    nb_pool_index_args ia = {{w.k[0], w.k[1]}, {w.s[0], w.s[1]}, {w.pb[0], w.pb[1]},
                             {w.d[0], w.d[1]}, {w.out[0], w.out[1]}, order == 1};
    nb_node *idx = nb_max_pool2d_indices(g, nd == 1 ? nb_unsqueeze(g, x0, 2) : x0, &ia);
    if (nd == 1)
        idx = nb_squeeze(g, idx, 2);
    return onnx_finish(c, 1, idx);
}

static nb_status max_pool(onnx_node_ctx *c) { return pool(c, POOL_MAX); }
static nb_status average_pool(onnx_node_ctx *c) { return pool(c, POOL_AVG); }
static nb_status lp_pool(onnx_node_ctx *c) { return pool(c, POOL_LP); }

/* GlobalAveragePool / GlobalMaxPool / GlobalLpPool: the mean / max /
 * (sum |x|^p)^(1/p) over every spatial dim. */
static nb_status global_pool(onnx_node_ctx *c, int kind)
{
    nb_node *x = onnx_need_in(c, 0);
    if (!x)
        return NB_ERR_ARG;
    nb_graph *g = c->g;
    int r = nb_node_ndim(x), axes[NB_MAX_DIMS];
    if (r < 3)
        return onnx_fail(c, NB_ERR_SHAPE, "input %s needs spatial dims", nb_node_shape_str(x));
    for (int i = 2; i < r; i++)
        axes[i - 2] = i;
    if (kind != POOL_LP)
        return onnx_finish(c, 0, kind == POOL_MAX ? nb_max(g, x, r - 2, axes, true)
                                             : nb_mean(g, x, r - 2, axes, true));
    double lp = onnx_attr_float(c, "p", 2);
    if (!(lp > 0 && lp < INFINITY))
        return onnx_fail(c, NB_ERR_ARG, "p = %g must be positive and finite", lp);
    if (!nb_dtype_is_float(nb_node_dtype(x)))
        return onnx_fail(c, NB_ERR_DTYPE, "input dtype %s is not supported",
                         nb_dtype_name(nb_node_dtype(x)));
    nb_node *a = lp == 2 ? nb_mul(g, x, x) : nb_pow_scalar(g, nb_abs(g, x), lp);
    nb_node *y = nb_sum(g, a, r - 2, axes, true);
    return onnx_finish(c, 0, lp == 2 ? nb_sqrt(g, y) : lp == 1 ? y : nb_pow_scalar(g, y, 1.0 / lp));
}

static nb_status global_average_pool(onnx_node_ctx *c) { return global_pool(c, POOL_AVG); }
static nb_status global_max_pool(onnx_node_ctx *c) { return global_pool(c, POOL_MAX); }
static nb_status global_lp_pool(onnx_node_ctx *c) { return global_pool(c, POOL_LP); }

/* MaxUnpool: X (N, C, D1..Dn) scattered to the flat positions I into zeros
 * of the unpooled shape (in - 1) s + k - pb - pe per dim; an output_shape
 * input, at least that large, pads the result at the end of each dim (as
 * the ONNX reference does). */
static nb_status max_unpool(onnx_node_ctx *c)
{
    nb_node *x = onnx_need_in(c, 0), *ix = x ? onnx_need_in(c, 1) : NULL;
    if (!ix)
        return NB_ERR_ARG;
    nb_graph *g = c->g;
    int r = nb_node_ndim(x), nd = r - 2;
    const int64_t *xs = nb_node_shape(x);
    if (nd < 1 || nd > 3)
        return onnx_fail(c, NB_ERR_SHAPE, "X %s must be (N, C, D1[, D2[, D3]])",
                         nb_node_shape_str(x));
    if (!nb_dtype_is_float(nb_node_dtype(x)))
        return onnx_fail(c, NB_ERR_DTYPE, "X dtype %s is not a float type",
                         nb_dtype_name(nb_node_dtype(x)));
    if (!nb_shape_equal(nb_node_ndim(ix), nb_node_shape(ix), r, xs) ||
        nb_dtype_is_float(nb_node_dtype(ix)))
        return onnx_fail(c, NB_ERR_ARG, "indices I %s %s must be integers of X's shape %s",
                         nb_dtype_name(nb_node_dtype(ix)), nb_node_shape_str(ix),
                         nb_node_shape_str(x));
    int64_t k[3], s[3], shape[NB_MAX_DIMS], pads[2 * NB_MAX_DIMS] = {0};
    if (!onnx_dims_attr(c, "kernel_shape", nd, 0, 1, k) ||
        !onnx_dims_attr(c, "strides", nd, 1, 1, s))
        return NB_ERR_ARG;
    if (k[0] == 0)
        return onnx_fail(c, NB_ERR_ARG, "attribute kernel_shape is required");
    const int64_t *p;
    int np = onnx_attr_ints(c, "pads", &p);
    if (np >= 0 && np != 2 * nd)
        return onnx_fail(c, NB_ERR_ARG, "attribute pads has %d values, expected %d", np, 2 * nd);
    shape[0] = xs[0];
    shape[1] = xs[1];
    for (int i = 0; i < nd; i++) {
        int64_t pb = np > 0 ? p[i] : 0, pe = np > 0 ? p[nd + i] : 0;
        if (pb < 0 || pe < 0)
            return onnx_fail(c, NB_ERR_ARG, "negative pads (%lld, %lld) on spatial dim %d",
                             (long long)pb, (long long)pe, i);
        int64_t span;
        if (__builtin_mul_overflow(xs[2 + i] - 1, s[i], &span) ||
            __builtin_add_overflow(span, k[i], &span) || span > INT64_MAX / 2)
            return onnx_fail(c, NB_ERR_SHAPE, "the unpooled size of spatial dim %d overflows "
                             "(input %lld, kernel %lld, stride %lld)", i, (long long)xs[2 + i],
                             (long long)k[i], (long long)s[i]);
        shape[2 + i] = pb >= span || pe >= span - pb ? 0 : span - pb - pe;
        if (shape[2 + i] < 1)
            return onnx_fail(c, NB_ERR_SHAPE, "the unpooled size of spatial dim %d is %lld "
                             "(input %lld, kernel %lld, stride %lld, pads %lld + %lld)", i,
                             (long long)shape[2 + i], (long long)xs[2 + i], (long long)k[i],
                             (long long)s[i], (long long)pb, (long long)pe);
    }
    if (nb_node_dtype(ix) != NB_I64)
        ix = nb_cast(g, ix, NB_I64);
    nb_node *y = nb_max_unpool(g, x, ix, r, shape);
    if (onnx_has_in(c, 2)) {
        int64_t os[NB_MAX_DIMS];
        int n;
        if (onnx_in_ints(c, 2, os, NB_MAX_DIMS, &n) != NB_OK)
            return NB_ERR_UNSUPPORTED;
        bool fits = n == r && os[0] == shape[0] && os[1] == shape[1];
        for (int i = 2; fits && i < r; i++)
            fits = os[i] >= shape[i];
        if (!fits) {
            char buf[160];
            return onnx_fail(c, NB_ERR_SHAPE, "output_shape %s must have X's N and C and spatial "
                             "sizes at least those of the unpooled %s",
                             nb_shape_str(n, os, buf, sizeof buf), nb_node_shape_str(y));
        }
        bool pad = false;
        for (int i = 2; i < r; i++) {
            pads[2 * i + 1] = os[i] - shape[i];
            pad = pad || os[i] > shape[i];
        }
        if (pad)
            y = nb_pad(g, y, pads, 0.0);
    }
    return onnx_finish(c, 0, y);
}


/* ---- the table -------------------------------------------------------------------- */

const onnx_op_entry nb_onnx_ops_pool[] = {
    {NULL, "MaxPool", 1, 0, max_pool},
    {NULL, "AveragePool", 1, 0, average_pool},
    {NULL, "GlobalAveragePool", 1, 0, global_average_pool},
    {NULL, "GlobalMaxPool", 1, 0, global_max_pool},
    {NULL, "LpPool", 1, 0, lp_pool},
    {NULL, "GlobalLpPool", 1, 0, global_lp_pool},
    {NULL, "MaxUnpool", 9, 0, max_unpool},
    {NULL, NULL, 0, 0, NULL},
};
