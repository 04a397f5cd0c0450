/* ONNX converters, math family: elementwise arithmetic (with ONNX's type
 * rules), unary math, variadic Min/Max/Sum/Mean, comparisons and logic,
 * Where, MatMul, the Reduce* family, ArgMax/ArgMin, CumSum, Mod, the
 * trigonometric and hyperbolic functions, BitShift, Shrink and
 * MeanVarianceNormalization. Quantization and the preview training
 * operators are in onnx_ops_quant.c.
 *
 * nabla's arithmetic kernels take f32/f64/i32/i64; u8 and bool operands are
 * widened to i32 and the result cast back, so ONNX's uint8 arithmetic wraps
 * as ONNX Runtime's does. Ops nabla has no kernel for are composed:
 *   floor(x) = t - (t > x),  t = trunc(x) through a cast to i64 (|x| < 2^52)
 *   ceil(x)  = -floor(-x),   round: half to even from floor
 *   and(a,b) = where(a, b, false), or(a,b) = where(a, true, b), xor = (a != b)
 *   ReduceProd: pad the axis with ones to a power of two, multiply halves
 *   ReduceLogSumExp = m + log(sum(exp(x - m))), m = max(x)
 *   CumSum: x @ T, T the (n, n) triangular matrix of ones for the mode
 *   Mod: a - trunc(a / b) b (fmod) or a - floor(a / b) b (Python's sign rule)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/onnx_ops_util.h"

/* ---- helpers --------------------------------------------------------------- */

static bool is_int(nb_dtype d) { return !nb_dtype_is_float(d); }

/* ---- elementwise binary -------------------------------------------------- */

static nb_node *binop(nb_graph *g, char op, nb_node *a, nb_node *b)
{
    switch (op) {
    case '+': return nb_add(g, a, b);
    case '-': return nb_sub(g, a, b);
    case '*': return nb_mul(g, a, b);
    case '/': return nb_div(g, a, b);
    case '>': return nb_maximum(g, a, b);
    default: return nb_minimum(g, a, b);
    }
}

/* a op b in a's dtype, through i32 for u8/bool. */
static nb_node *arith(nb_graph *g, char op, nb_node *a, nb_node *b)
{
    nb_dtype dt = nb_node_dtype(a);
    return nb_cast(g, binop(g, op, onnx_widen(g, a), onnx_widen(g, b)), dt);
}

/* Opsets before 7: with broadcast = 1 and an axis, b's dims line up with a's
 * from that axis on (b is reshaped to a's rank); without an axis, NumPy's
 * trailing alignment, which the builders do anyway. */
static nb_node *legacy_broadcast(onnx_node_ctx *c, nb_node *a, nb_node *b)
{
    const Onnx__AttributeProto *ax = onnx_attr(c, "axis");
    if (c->opset >= 7 || !onnx_attr_int(c, "broadcast", 0) || !ax)
        return b;
    int ra = nb_node_ndim(a), rb = nb_node_ndim(b), axis;
    if (!onnx_axis(ax->i, ra, &axis) || axis + rb > ra) {
        onnx_fail(c, NB_ERR_SHAPE, "cannot broadcast %s to %s from axis %lld",
                  nb_node_shape_str(b), nb_node_shape_str(a), (long long)ax->i);
        return NULL;
    }
    int64_t shape[NB_MAX_DIMS];
    for (int d = 0; d < ra; d++)
        shape[d] = d >= axis && d < axis + rb ? nb_node_shape(b)[d - axis] : 1;
    return nb_reshape(c->g, b, ra, shape);
}

static nb_status cv_arith(onnx_node_ctx *c)
{
    IN(a, 0);
    IN(b, 1);
    char op = onnx_is_op(c, "Add") ? '+' : onnx_is_op(c, "Sub") ? '-' : onnx_is_op(c, "Mul") ? '*' : '/';
    if (nb_node_dtype(a) != nb_node_dtype(b))
        return onnx_fail(c, NB_ERR_DTYPE, "inputs have dtypes %s and %s",
                         nb_dtype_name(nb_node_dtype(a)), nb_dtype_name(nb_node_dtype(b)));
    if (!(b = legacy_broadcast(c, a, b)))
        return NB_ERR_SHAPE;
    return onnx_finish(c, 0, arith(c->g, op, a, b));
}

/* Pow: the exponent may have another type (opset 12); the result has the
 * base's. Integer bases are computed in f64 and truncated back. */
static nb_status cv_pow(onnx_node_ctx *c)
{
    IN(a, 0);
    IN(b, 1);
    nb_graph *g = c->g;
    nb_dtype da = nb_node_dtype(a);
    nb_node *y;
    if (!(b = legacy_broadcast(c, a, b)))
        return NB_ERR_SHAPE;
    if (nb_dtype_is_float(da))
        y = nb_pow(g, a, nb_cast(g, b, da));
    else
        y = nb_cast(g, nb_pow(g, nb_cast(g, a, NB_F64), nb_cast(g, b, NB_F64)), da);
    return onnx_finish(c, 0, y);
}

/* Variadic Max, Min, Sum, Mean with broadcasting. */
static nb_status cv_variadic(onnx_node_ctx *c)
{
    nb_graph *g = c->g;
    char op = onnx_is_op(c, "Max") ? '>' : onnx_is_op(c, "Min") ? '<' : '+';
    IN(y, 0);
    nb_dtype dt = nb_node_dtype(y);
    y = onnx_widen(g, y);
    int n = 1;
    for (int i = 1; i < c->n_in; i++) {
        if (!onnx_has_in(c, i))
            continue;
        IN(x, i);
        if (nb_node_dtype(x) != dt)
            return onnx_fail(c, NB_ERR_DTYPE, "input %d is %s, input 0 is %s", i,
                             nb_dtype_name(nb_node_dtype(x)), nb_dtype_name(dt));
        y = binop(g, op, y, onnx_widen(g, x));
        n++;
    }
    if (onnx_is_op(c, "Mean"))
        y = nb_div(g, y, nb_scalar(g, n, nb_node_dtype(y)));
    return onnx_finish(c, 0, nb_cast(g, y, dt));
}

/* ---- elementwise unary ------------------------------------------------------ */

/* floor through truncation; values too large to have a fraction, inf and
 * NaN pass through unchanged. Shared (onnx_ops_util.h). */
nb_node *onnx_floor_of(nb_graph *g, nb_node *x)
{
    nb_dtype dt = nb_node_dtype(x);
    double big = dt == NB_F32 ? 8388608.0 : 4503599627370496.0;
    nb_node *t = nb_cast(g, nb_cast(g, x, NB_I64), dt);
    nb_node *f = nb_where(g, nb_gt(g, t, x), nb_add_scalar(g, t, -1), t);
    return nb_where(g, nb_lt(g, nb_abs(g, x), nb_scalar(g, big, dt)), f, x);
}

/* trunc, like floor_of */
static nb_node *trunc_of(nb_graph *g, nb_node *x)
{
    nb_dtype dt = nb_node_dtype(x);
    double big = dt == NB_F32 ? 8388608.0 : 4503599627370496.0;
    nb_node *t = nb_cast(g, nb_cast(g, x, NB_I64), dt);
    return nb_where(g, nb_lt(g, nb_abs(g, x), nb_scalar(g, big, dt)), t, x);
}

/* round half to even: floor, then up when the fraction is above 1/2, or is
 * 1/2 and the floor is odd. Shared (onnx_ops_util.h). */
nb_node *onnx_round_of(nb_graph *g, nb_node *x)
{
    nb_dtype dt = nb_node_dtype(x);
    nb_node *f = onnx_floor_of(g, x);
    nb_node *d = nb_sub(g, x, f);
    nb_node *half = nb_scalar(g, 0.5, dt);
    nb_node *odd = nb_ne(g, f, nb_mul_scalar(g, onnx_floor_of(g, nb_mul_scalar(g, f, 0.5)), 2.0));
    nb_node *up = nb_where(g, nb_gt(g, d, half), nb_scalar(g, 1, NB_BOOL),
                           nb_where(g, nb_eq(g, d, half), odd, nb_scalar(g, 0, NB_BOOL)));
    return nb_where(g, up, nb_add_scalar(g, f, 1), f);
}

static nb_status cv_unary(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_graph *g = c->g;
    nb_dtype dt = nb_node_dtype(x);
    const char *t = c->node->op_type;
    nb_node *y;
    if (!strcmp(t, "Neg") || !strcmp(t, "Abs") || !strcmp(t, "Sign")) {
        nb_node *w = onnx_widen(g, x);
        y = !strcmp(t, "Neg") ? nb_neg(g, w) : !strcmp(t, "Abs") ? nb_abs(g, w) : nb_sign(g, w);
        return onnx_finish(c, 0, nb_cast(g, y, dt));
    }
    if (is_int(dt)) {
        if (!strcmp(t, "Floor") || !strcmp(t, "Ceil") || !strcmp(t, "Round"))
            return onnx_finish(c, 0, x);
        return onnx_fail(c, NB_ERR_DTYPE, "dtype %s is not supported (needs float)",
                         nb_dtype_name(dt));
    }
    if (!strcmp(t, "Exp"))
        y = nb_exp(g, x);
    else if (!strcmp(t, "Log"))
        y = nb_log(g, x);
    else if (!strcmp(t, "Sqrt"))
        y = nb_sqrt(g, x);
    else if (!strcmp(t, "Reciprocal"))
        y = nb_reciprocal(g, x);
    else if (!strcmp(t, "Floor"))
        y = onnx_floor_of(g, x);
    else if (!strcmp(t, "Ceil"))
        y = nb_neg(g, onnx_floor_of(g, nb_neg(g, x)));
    else
        y = onnx_round_of(g, x);
    return onnx_finish(c, 0, y);
}

/* ---- trigonometric and hyperbolic functions -----------------------------------
 *
 * nabla has no trig kernels; these are composed in f64 (the input is cast
 * up and the result back), accurate to about 1e-13:
 *   sin x: r = x - 2 pi round(x / 2 pi) in [-pi, pi], Taylor series to r^25
 *   cos x = sin(x + pi/2), tan = sin / cos
 *   atan x: t -> t / (1 + sqrt(1 + t^2)) four times (each halves the angle),
 *     then 16 times the Taylor series to t^17 (|t| < 0.1)
 *   asin x = atan(x / sqrt(1 - x^2)) (+-pi/2 at +-1), acos = pi/2 - asin
 *   sinh, cosh from exp; asinh, acosh, atanh from log
 */

/* sin of r in [-pi, pi]: r (1 - r^2/(2.3) (1 - r^2/(4.5) (1 - ...))) */
static nb_node *sin_reduced(nb_graph *g, nb_node *r)
{
    nb_node *r2 = nb_mul(g, r, r);
    nb_node *acc = nb_scalar(g, 1.0, NB_F64);
    for (int k = 24; k >= 2; k -= 2) { /* acc = 1 - r^2 / (k (k+1)) acc */
        nb_node *t = nb_mul(g, r2, acc);
        acc = nb_add_scalar(g, nb_mul_scalar(g, t, -1.0 / ((double)k * (k + 1))), 1.0);
    }
    return nb_mul(g, r, acc);
}

static nb_node *sin_f64(nb_graph *g, nb_node *x)
{
    const double two_pi = 6.283185307179586;
    nb_node *k = onnx_floor_of(g, nb_add_scalar(g, nb_mul_scalar(g, x, 1.0 / two_pi), 0.5));
    return sin_reduced(g, nb_sub(g, x, nb_mul_scalar(g, k, two_pi)));
}

static nb_node *atan_f64(nb_graph *g, nb_node *x)
{
    nb_node *t = x;
    for (int i = 0; i < 4; i++) {
        nb_node *d = nb_add_scalar(g, nb_sqrt(g, nb_add_scalar(g, nb_mul(g, t, t), 1.0)), 1.0);
        t = nb_div(g, t, d);
    }
    nb_node *t2 = nb_mul(g, t, t);
    nb_node *acc = nb_scalar(g, 1.0 / 17, NB_F64);
    for (int k = 15; k >= 1; k -= 2) { /* acc = 1/k - t^2 acc */
        acc = nb_add_scalar(g, nb_neg(g, nb_mul(g, t2, acc)), 1.0 / k);
    }
    return nb_mul_scalar(g, nb_mul(g, t, acc), 16.0);
}

static nb_node *asin_f64(nb_graph *g, nb_node *x)
{
    const double half_pi = 1.5707963267948966;
    nb_node *one = nb_scalar(g, 1.0, NB_F64);
    nb_node *c = nb_sqrt(g, nb_sub(g, one, nb_mul(g, x, x)));
    nb_node *a = atan_f64(g, nb_div(g, x, c));
    return nb_where(g, nb_eq(g, nb_abs(g, x), one), nb_mul_scalar(g, nb_sign(g, x), half_pi), a);
}

static nb_status cv_trig(onnx_node_ctx *c)
{
    IN(x0, 0);
    nb_graph *g = c->g;
    nb_dtype dt = nb_node_dtype(x0);
    if (!nb_dtype_is_float(dt))
        return onnx_fail(c, NB_ERR_DTYPE, "dtype %s is not supported (needs float)",
                         nb_dtype_name(dt));
    const char *t = c->node->op_type;
    const double half_pi = 1.5707963267948966;
    nb_node *x = nb_cast(g, x0, NB_F64), *y;
    nb_node *one = nb_scalar(g, 1.0, NB_F64);
    if (!strcmp(t, "Sin"))
        y = sin_f64(g, x);
    else if (!strcmp(t, "Cos"))
        y = sin_f64(g, nb_add_scalar(g, x, half_pi));
    else if (!strcmp(t, "Tan"))
        y = nb_div(g, sin_f64(g, x), sin_f64(g, nb_add_scalar(g, x, half_pi)));
    else if (!strcmp(t, "Atan"))
        y = atan_f64(g, x);
    else if (!strcmp(t, "Asin"))
        y = asin_f64(g, x);
    else if (!strcmp(t, "Acos"))
        y = nb_add_scalar(g, nb_neg(g, asin_f64(g, x)), half_pi);
    else if (!strcmp(t, "Sinh") || !strcmp(t, "Cosh")) {
        nb_node *e = nb_exp(g, x), *f = nb_exp(g, nb_neg(g, x));
        y = nb_mul_scalar(g, !strcmp(t, "Sinh") ? nb_sub(g, e, f) : nb_add(g, e, f), 0.5);
    } else if (!strcmp(t, "Asinh")) { /* sign(x) log(|x| + sqrt(x^2 + 1)) */
        nb_node *a = nb_abs(g, x);
        y = nb_mul(g, nb_sign(g, x),
                   nb_log(g, nb_add(g, a, nb_sqrt(g, nb_add(g, nb_mul(g, a, a), one)))));
    } else if (!strcmp(t, "Acosh")) { /* log(x + sqrt(x^2 - 1)) */
        y = nb_log(g, nb_add(g, x, nb_sqrt(g, nb_sub(g, nb_mul(g, x, x), one))));
    } else { /* Atanh: log((1 + x) / (1 - x)) / 2 */
        y = nb_mul_scalar(g, nb_log(g, nb_div(g, nb_add(g, one, x), nb_sub(g, one, x))), 0.5);
    }
    return onnx_finish(c, 0, nb_cast(g, y, dt));
}

/* BitShift of unsigned integers: u8, or uint16/32/64 that the importer
 * widened to i64 (and narrows back): in i64, x * 2^y (wrapped back to the
 * unsigned type), or x / 2^y (uint64 values of 2^63 and above, negative as
 * i64, do not shift right correctly). */
static nb_status cv_bitshift(onnx_node_ctx *c)
{
    IN(x, 0);
    IN(y, 1);
    nb_graph *g = c->g;
    char buf[8];
    const char *dir = onnx_attr_string(c, "direction", "", buf, sizeof buf);
    bool left = !strcmp(dir, "LEFT");
    if (!left && strcmp(dir, "RIGHT"))
        return onnx_fail(c, NB_ERR_ARG, "direction '%s' (needs LEFT or RIGHT)", dir);
    nb_dtype dt = nb_node_dtype(x);
    if ((dt != NB_U8 && dt != NB_I64) || nb_node_dtype(y) != dt)
        return onnx_fail(c, NB_ERR_DTYPE, "dtypes %s, %s (needs two uint8, or two uint16/32/64 "
                         "that the importer widened to i64)",
                         nb_dtype_name(dt), nb_dtype_name(nb_node_dtype(y)));
    nb_node *p = nb_cast(g, nb_pow(g, nb_scalar(g, 2.0, NB_F64), nb_cast(g, y, NB_F64)), NB_I64);
    nb_node *xi = nb_cast(g, x, NB_I64);
    nb_node *r = left ? nb_mul(g, xi, p) : nb_div(g, xi, p);
    return onnx_finish(c, 0, nb_cast(g, r, dt));
}

/* ---- comparisons, logic, where --------------------------------------------- */

static nb_status cv_compare(onnx_node_ctx *c)
{
    IN(a, 0);
    IN(b, 1);
    nb_graph *g = c->g;
    const char *t = c->node->op_type;
    nb_node *y = !strcmp(t, "Equal")          ? nb_eq(g, a, b)
                 : !strcmp(t, "Less")         ? nb_lt(g, a, b)
                 : !strcmp(t, "Greater")      ? nb_gt(g, a, b)
                 : !strcmp(t, "LessOrEqual")  ? nb_le(g, a, b)
                                              : nb_ge(g, a, b);
    return onnx_finish(c, 0, y);
}

static nb_status cv_logic(onnx_node_ctx *c)
{
    nb_graph *g = c->g;
    IN(a, 0);
    if (nb_node_dtype(a) != NB_BOOL)
        return onnx_fail(c, NB_ERR_DTYPE, "input 0 is %s, needs bool",
                         nb_dtype_name(nb_node_dtype(a)));
    nb_node *no = nb_scalar(g, 0, NB_BOOL), *yes = nb_scalar(g, 1, NB_BOOL);
    if (onnx_is_op(c, "Not"))
        return onnx_finish(c, 0, nb_eq(g, a, no));
    IN(b, 1);
    if (nb_node_dtype(b) != NB_BOOL)
        return onnx_fail(c, NB_ERR_DTYPE, "input 1 is %s, needs bool",
                         nb_dtype_name(nb_node_dtype(b)));
    nb_node *y = onnx_is_op(c, "And") ? nb_where(g, a, b, no)
                 : onnx_is_op(c, "Or") ? nb_where(g, a, yes, b)
                                  : nb_ne(g, a, b);
    return onnx_finish(c, 0, y);
}

static nb_status cv_where(onnx_node_ctx *c)
{
    IN(cond, 0);
    IN(a, 1);
    IN(b, 2);
    return onnx_finish(c, 0, nb_where(c->g, cond, a, b));
}

static nb_status cv_matmul(onnx_node_ctx *c)
{
    IN(a, 0);
    IN(b, 1);
    nb_graph *g = c->g;
    nb_dtype dt = nb_node_dtype(a);
    if (nb_dtype_is_float(dt))
        return onnx_finish(c, 0, nb_matmul(g, a, b));
    nb_node *y = nb_matmul(g, nb_cast(g, a, NB_F64), nb_cast(g, b, NB_F64));
    return onnx_finish(c, 0, nb_cast(g, y, dt));
}

/* ---- reductions ------------------------------------------------------------ */

typedef struct red_args {
    int n;                 /* 0: all axes */
    int axes[NB_MAX_DIMS]; /* normalised */
    bool keep, noop;
} red_args;

/* The axes (attribute, or input 1 when axes_input), keepdims and
 * noop_with_empty_axes of a reduction over an input of rank r. */
static nb_status reduce_args(onnx_node_ctx *c, int r, bool axes_input, red_args *ra)
{
    int64_t v[NB_MAX_DIMS];
    int n = 0;
    ra->keep = onnx_attr_int(c, "keepdims", 1) != 0;
    ra->noop = false;
    if (axes_input) {
        if (onnx_has_in(c, 1)) {
            nb_status s = onnx_in_ints(c, 1, v, NB_MAX_DIMS, &n);
            if (s != NB_OK)
                return s;
        }
        ra->noop = n == 0 && onnx_attr_int(c, "noop_with_empty_axes", 0) != 0;
    } else {
        const int64_t *a;
        int k = onnx_attr_ints(c, "axes", &a);
        if (k > NB_MAX_DIMS)
            return onnx_fail(c, NB_ERR_ARG, "%d axes for a rank-%d input", k, r);
        for (int i = 0; i < k; i++)
            v[i] = a[i];
        n = k < 0 ? 0 : k;
    }
    uint32_t seen = 0;
    for (int i = 0; i < n; i++) {
        if (!onnx_axis(v[i], r, &ra->axes[i]) || (seen >> ra->axes[i] & 1))
            return onnx_fail(c, NB_ERR_ARG, "axis %lld is out of range or repeated for rank %d",
                             (long long)v[i], r);
        seen |= 1u << ra->axes[i];
    }
    ra->n = n;
    return NB_OK;
}

/* Whether axis d is reduced. */
static bool reduced(const red_args *ra, int d)
{
    if (ra->n == 0)
        return true;
    for (int i = 0; i < ra->n; i++)
        if (ra->axes[i] == d)
            return true;
    return false;
}

/* y computed with keepdims: drop the reduced axes unless keepdims. */
static nb_node *drop_axes(nb_graph *g, nb_node *y, const red_args *ra)
{
    if (ra->keep)
        return y;
    int64_t shape[NB_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < nb_node_ndim(y); d++)
        if (!reduced(ra, d))
            shape[n++] = nb_node_shape(y)[d];
    return nb_reshape(g, y, n, shape);
}

/* Product along one axis, keeping it as size 1. */
static nb_node *prod_axis(nb_graph *g, nb_node *x, int axis)
{
    int64_t n = nb_node_shape(x)[axis];
    if (n == 0) /* the empty product is 1 (and the empty sum is 0) */
        return nb_add_scalar(g, nb_sum(g, x, 1, &axis, true), 1);
    int64_t p = 1;
    while (p < n)
        p *= 2;
    if (p > n) {
        int64_t pads[2 * NB_MAX_DIMS] = {0};
        pads[2 * axis + 1] = p - n;
        x = nb_pad(g, x, pads, 1.0);
    }
    for (; p > 1; p /= 2)
        x = nb_mul(g, nb_slice(g, x, axis, 0, p / 2, 1), nb_slice(g, x, axis, p / 2, p, 1));
    return x;
}

static nb_status cv_reduce(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_graph *g = c->g;
    const char *t = c->node->op_type + 6; /* after "Reduce" */
    /* axes moved from attribute to input: ReduceSum at opset 13, the rest at 18 */
    bool axes_input = c->opset >= (!strcmp(t, "Sum") ? 13 : 18);
    red_args ra;
    int r = nb_node_ndim(x);
    nb_status s = reduce_args(c, r, axes_input, &ra);
    if (s != NB_OK)
        return s;
    if (ra.noop)
        return onnx_finish(c, 0, x);
    nb_dtype dt = nb_node_dtype(x);
    bool int_ok = !strcmp(t, "Sum") || !strcmp(t, "Max") || !strcmp(t, "Min") ||
                  !strcmp(t, "Prod") || !strcmp(t, "SumSquare") || !strcmp(t, "L1");
    if (is_int(dt))
        x = int_ok ? onnx_widen(g, x) : nb_cast(g, x, NB_F64);
    int n = ra.n;
    const int *ax = ra.axes;
    nb_node *y;
    if (!strcmp(t, "Sum"))
        y = nb_sum(g, x, n, ax, ra.keep);
    else if (!strcmp(t, "Mean"))
        y = nb_mean(g, x, n, ax, ra.keep);
    else if (!strcmp(t, "Max"))
        y = nb_max(g, x, n, ax, ra.keep);
    else if (!strcmp(t, "Min"))
        y = nb_min(g, x, n, ax, ra.keep);
    else if (!strcmp(t, "SumSquare"))
        y = nb_sum(g, nb_mul(g, x, x), n, ax, ra.keep);
    else if (!strcmp(t, "L1"))
        y = nb_sum(g, nb_abs(g, x), n, ax, ra.keep);
    else if (!strcmp(t, "L2"))
        y = nb_sqrt(g, nb_sum(g, nb_square(g, x), n, ax, ra.keep));
    else if (!strcmp(t, "LogSum"))
        y = nb_log(g, nb_sum(g, x, n, ax, ra.keep));
    else if (!strcmp(t, "LogSumExp")) {
        nb_node *m = nb_max(g, x, n, ax, true);
        /* an all -inf slice has max -inf: shift by 0 there instead */
        nb_node *fin = nb_lt(g, nb_abs(g, m), nb_scalar(g, INFINITY, nb_node_dtype(m)));
        m = nb_where(g, fin, m, nb_scalar(g, 0, nb_node_dtype(m)));
        nb_node *e = nb_sum(g, nb_exp(g, nb_sub(g, x, m)), n, ax, true);
        y = drop_axes(g, nb_add(g, nb_log(g, e), m), &ra);
    } else { /* Prod */
        y = x;
        for (int d = 0; d < r; d++)
            if (reduced(&ra, d))
                y = prod_axis(g, y, d);
        y = drop_axes(g, y, &ra);
    }
    return onnx_finish(c, 0, nb_cast(g, y, dt));
}

/* Reverse x along axis (a gather of n-1, ..., 0). */
static nb_node *reverse_axis(nb_graph *g, nb_node *x, int axis)
{
    int64_t n = nb_node_shape(x)[axis];
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    if (!idx)
        return nb_graph_fail(g, NB_ERR_ALLOC, "onnx: out of memory reversing %lld elements",
                             (long long)n);
    for (int64_t i = 0; i < n; i++)
        idx[i] = n - 1 - i;
    nb_node *y = nb_gather(g, x, axis, onnx_const_node(g, NB_I64, 1, &n, idx));
    free(idx);
    return y;
}

static nb_status cv_argmax(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_graph *g = c->g;
    int r = nb_node_ndim(x), axis;
    int64_t a = onnx_attr_int(c, "axis", 0);
    if (!onnx_axis(a, r, &axis))
        return onnx_fail(c, NB_ERR_ARG, "axis %lld is out of range for rank %d", (long long)a, r);
    bool keep = onnx_attr_int(c, "keepdims", 1) != 0;
    bool last = onnx_attr_int(c, "select_last_index", 0) != 0;
    int64_t n = nb_node_shape(x)[axis];
    x = onnx_widen(g, x);
    if (onnx_is_op(c, "ArgMin"))
        x = nb_neg(g, x);
    if (last)
        x = reverse_axis(g, x, axis);
    nb_node *y = nb_argmax(g, x, axis, keep);
    if (last)
        y = nb_sub(g, nb_scalar(g, (double)(n - 1), NB_I64), y);
    return onnx_finish(c, 0, y);
}

/* CumSum(x, axis): x (moved so that axis is last) @ T, T (n, n) with
 * T[j][i] = 1 where j contributes to i: j <= i (j < i exclusive; j >= i,
 * j > i reversed). Integers go through f64. */
static nb_status cv_cumsum(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_graph *g = c->g;
    int64_t av;
    int na;
    nb_status s = onnx_in_ints(c, 1, &av, 1, &na);
    if (s != NB_OK)
        return s;
    int r = nb_node_ndim(x), axis;
    if (na != 1 || !onnx_axis(av, r, &axis))
        return onnx_fail(c, NB_ERR_ARG, "axis %lld is out of range for rank %d", (long long)av, r);
    bool excl = onnx_attr_int(c, "exclusive", 0) != 0;
    bool rev = onnx_attr_int(c, "reverse", 0) != 0;
    nb_dtype dt = nb_node_dtype(x);
    nb_dtype wt = nb_dtype_is_float(dt) ? dt : NB_F64;
    int64_t n = nb_node_shape(x)[axis];
    if (n > 4096) /* the (n, n) matrix grows as n^2 */
        return onnx_fail(c, NB_ERR_UNSUPPORTED, "axis of length %lld is too long (at most 4096)",
                         (long long)n);
    nb_tensor tt = {0};
    int64_t tshape[2] = {n, n};
    if (nb_tensor_zeros(&tt, wt, 2, tshape) != NB_OK)
        return onnx_fail(c, NB_ERR_ALLOC, "%s", nb_last_error());
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < n; i++) {
            bool on = rev ? (excl ? j > i : j >= i) : (excl ? j < i : j <= i);
            nb_tensor_set(&tt, (int64_t[]){j, i}, on ? 1.0 : 0.0);
        }
    nb_node *tri = nb_constant(g, &tt);
    nb_tensor_release(&tt);
    nb_node *y = nb_cast(g, x, wt);
    if (r == 0)
        return onnx_fail(c, NB_ERR_ARG, "input is a scalar");
    y = nb_transpose(g, y, axis, r - 1);
    y = nb_matmul(g, y, tri);
    y = nb_transpose(g, y, axis, r - 1);
    return onnx_finish(c, 0, nb_cast(g, y, dt));
}

/* Mod: fmod = 1 gives C's fmod (sign of the dividend); fmod = 0 the sign of
 * the divisor (integers only, by the spec). */
static nb_status cv_mod(onnx_node_ctx *c)
{
    IN(a, 0);
    IN(b, 1);
    nb_graph *g = c->g;
    bool fmod = onnx_attr_int(c, "fmod", 0) != 0;
    nb_dtype dt = nb_node_dtype(a);
    if (nb_node_dtype(b) != dt)
        return onnx_fail(c, NB_ERR_DTYPE, "inputs have dtypes %s and %s", nb_dtype_name(dt),
                         nb_dtype_name(nb_node_dtype(b)));
    nb_node *y;
    if (nb_dtype_is_float(dt)) {
        nb_node *q = nb_div(g, a, b);
        q = fmod ? trunc_of(g, q) : onnx_floor_of(g, q);
        y = nb_sub(g, a, nb_mul(g, q, b));
    } else {
        nb_node *x = onnx_widen(g, a), *d = onnx_widen(g, b);
        y = nb_sub(g, x, nb_mul(g, nb_div(g, x, d), d)); /* C's remainder */
        if (!fmod) {
            nb_dtype wt = nb_node_dtype(x);
            nb_node *zero = nb_scalar(g, 0, wt);
            nb_node *fix = nb_where(g, nb_ne(g, y, zero),
                                    nb_ne(g, nb_lt(g, y, zero), nb_lt(g, d, zero)),
                                    nb_scalar(g, 0, NB_BOOL));
            y = nb_where(g, fix, nb_add(g, y, d), y);
        }
        y = nb_cast(g, y, dt);
    }
    return onnx_finish(c, 0, y);
}

/* Shrink: x + bias below -lambd, x - bias above lambd, 0 between. */
static nb_status cv_shrink(onnx_node_ctx *c)
{
    IN(x0, 0);
    nb_graph *g = c->g;
    nb_dtype dt = nb_node_dtype(x0);
    nb_node *x = nb_cast(g, x0, NB_F64);
    double bias = onnx_attr_float(c, "bias", 0.0), lambd = onnx_attr_float(c, "lambd", 0.5);
    nb_node *lo = nb_lt(g, x, nb_scalar(g, -lambd, NB_F64));
    nb_node *hi = nb_gt(g, x, nb_scalar(g, lambd, NB_F64));
    nb_node *y = nb_where(g, lo, nb_add_scalar(g, x, bias),
                          nb_where(g, hi, nb_add_scalar(g, x, -bias), nb_scalar(g, 0, NB_F64)));
    return onnx_finish(c, 0, nb_cast(g, y, dt));
}

/* MeanVarianceNormalization as its ONNX function body:
 * (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9) over axes (default 0, 2, 3). */
static nb_status cv_mvn(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_graph *g = c->g;
    red_args ra = {0};
    int r = nb_node_ndim(x);
    const int64_t *a;
    int k = onnx_attr_ints(c, "axes", &a);
    const int64_t def[3] = {0, 2, 3};
    if (k < 0)
        a = def, k = 3;
    if (k > NB_MAX_DIMS)
        return onnx_fail(c, NB_ERR_ARG, "%d axes", k);
    for (int i = 0; i < k; i++)
        if (!onnx_axis(a[i], r, &ra.axes[i]))
            return onnx_fail(c, NB_ERR_ARG, "axis %lld is out of range for %s", (long long)a[i],
                             nb_node_shape_str(x));
    ra.n = k;
    nb_node *m = nb_mean(g, x, k, ra.axes, true);
    nb_node *m2 = nb_mean(g, nb_mul(g, x, x), k, ra.axes, true);
    nb_node *sd = nb_sqrt(g, nb_sub(g, m2, nb_mul(g, m, m)));
    return onnx_finish(c, 0, nb_div(g, nb_sub(g, x, m), nb_add_scalar(g, sd, 1e-9)));
}

/* ---- the table --------------------------------------------------------------------- */

const onnx_op_entry nb_onnx_ops_math[] = {
    {NULL, "Add", 1, 0, cv_arith},
    {NULL, "Sub", 1, 0, cv_arith},
    {NULL, "Mul", 1, 0, cv_arith},
    {NULL, "Div", 1, 0, cv_arith},
    {NULL, "Pow", 1, 0, cv_pow},
    {NULL, "Max", 1, 0, cv_variadic},
    {NULL, "Min", 1, 0, cv_variadic},
    {NULL, "Sum", 1, 0, cv_variadic},
    {NULL, "Mean", 1, 0, cv_variadic},
    {NULL, "Neg", 1, 0, cv_unary},
    {NULL, "Abs", 1, 0, cv_unary},
    {NULL, "Sign", 9, 0, cv_unary},
    {NULL, "Exp", 1, 0, cv_unary},
    {NULL, "Log", 1, 0, cv_unary},
    {NULL, "Sqrt", 1, 0, cv_unary},
    {NULL, "Reciprocal", 1, 0, cv_unary},
    {NULL, "Floor", 1, 0, cv_unary},
    {NULL, "Ceil", 1, 0, cv_unary},
    {NULL, "Round", 11, 0, cv_unary},
    {NULL, "Sin", 7, 0, cv_trig},
    {NULL, "Cos", 7, 0, cv_trig},
    {NULL, "Tan", 7, 0, cv_trig},
    {NULL, "Asin", 7, 0, cv_trig},
    {NULL, "Acos", 7, 0, cv_trig},
    {NULL, "Atan", 7, 0, cv_trig},
    {NULL, "Sinh", 9, 0, cv_trig},
    {NULL, "Cosh", 9, 0, cv_trig},
    {NULL, "Asinh", 9, 0, cv_trig},
    {NULL, "Acosh", 9, 0, cv_trig},
    {NULL, "Atanh", 9, 0, cv_trig},
    {NULL, "BitShift", 11, 0, cv_bitshift},
    {NULL, "Shrink", 9, 0, cv_shrink},
    {NULL, "MeanVarianceNormalization", 9, 0, cv_mvn},
    {NULL, "Equal", 1, 0, cv_compare},
    {NULL, "Less", 1, 0, cv_compare},
    {NULL, "Greater", 1, 0, cv_compare},
    {NULL, "LessOrEqual", 12, 0, cv_compare},
    {NULL, "GreaterOrEqual", 12, 0, cv_compare},
    {NULL, "Not", 1, 0, cv_logic},
    {NULL, "And", 1, 0, cv_logic},
    {NULL, "Or", 1, 0, cv_logic},
    {NULL, "Xor", 1, 0, cv_logic},
    {NULL, "Where", 9, 0, cv_where},
    {NULL, "MatMul", 1, 0, cv_matmul},
    {NULL, "ReduceSum", 1, 0, cv_reduce},
    {NULL, "ReduceMean", 1, 0, cv_reduce},
    {NULL, "ReduceMax", 1, 0, cv_reduce},
    {NULL, "ReduceMin", 1, 0, cv_reduce},
    {NULL, "ReduceProd", 1, 0, cv_reduce},
    {NULL, "ReduceL1", 1, 0, cv_reduce},
    {NULL, "ReduceL2", 1, 0, cv_reduce},
    {NULL, "ReduceSumSquare", 1, 0, cv_reduce},
    {NULL, "ReduceLogSum", 1, 0, cv_reduce},
    {NULL, "ReduceLogSumExp", 1, 0, cv_reduce},
    {NULL, "ArgMax", 1, 0, cv_argmax},
    {NULL, "ArgMin", 1, 0, cv_argmax},
    {NULL, "CumSum", 11, 0, cv_cumsum},
    {NULL, "Mod", 10, 0, cv_mod},
    {NULL, NULL, 0, 0, NULL},
};
