/* VJP rules of the elementwise ops: unary, binary (with broadcasting), where,
 * cast, and the softmax family.
 *
 * Every rule is built from graph builders only, so a rule is itself
 * differentiable. The derivative definitions follow PyTorch's
 * (torch/csrc/autograd/derivatives.yaml), including the value chosen at kinks
 * and ties. */
#include <math.h>

#include "autodiff/vjp.h"

#define NB_SQRT1_2 0.70710678118654752440      /* 1/sqrt(2) */
#define NB_2_SQRTPI 1.12837916709551257390     /* 2/sqrt(pi) */
#define NB_INV_SQRT_2PI 0.39894228040143267794 /* 1/sqrt(2 pi) */
#define NB_SQRT_2_PI 0.79788456080286535588    /* sqrt(2/pi) */
#define NB_GELU_KAPPA 0.044715

/* ---- helpers ---------------------------------------------------------- */

/* A 0-d constant of like's dtype (broadcasts against anything). */
static nb_node *scalar_like(nb_graph *g, const nb_node *like, double v)
{
    return nb_scalar(g, v, like->dtype);
}

/* c - x */
static nb_node *rsub_scalar(nb_graph *g, double c, nb_node *x)
{
    return nb_add_scalar(g, nb_neg(g, x), c);
}

/* Undo broadcasting: sum grad down to the shape of input `in`. */
static nb_node *unbroadcast(nb_graph *g, nb_node *grad, const nb_node *in)
{
    return nb_sum_to(g, grad, in->ndim, in->shape);
}

/* where(cond, gy, 0) */
static nb_node *mask_grad(nb_graph *g, nb_node *cond, nb_node *gy)
{
    return nb_where(g, cond, gy, scalar_like(g, gy, 0.0));
}

static const nb_scalar_params *sparams(const nb_node *y)
{
    return (const nb_scalar_params *)y->params;
}

/* ---- unary ------------------------------------------------------------ */

/* d(-x) = -gy */
static nb_node *vjp_neg(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return nb_neg(g, gy);
}

/* d|x| = gy * sign(x) */
static nb_node *vjp_abs(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return nb_mul(g, gy, nb_sign(g, y->in[0]));
}

/* d sign(x) = 0: no gradient flows */
static nb_node *vjp_sign(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return NULL;
}

/* d exp(x) = gy * y */
static nb_node *vjp_exp(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return nb_mul(g, gy, y);
}

/* d log(x) = gy / x */
static nb_node *vjp_log(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return nb_div(g, gy, y->in[0]);
}

/* d sqrt(x) = gy / (2 y) */
static nb_node *vjp_sqrt(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return nb_div(g, gy, nb_mul_scalar(g, y, 2.0));
}

/* d rsqrt(x) = -0.5 * gy * y^3 */
static nb_node *vjp_rsqrt(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *y3 = nb_mul(g, nb_square(g, y), y);
    return nb_mul(g, nb_mul_scalar(g, gy, -0.5), y3);
}

/* d x^2 = gy * 2x */
static nb_node *vjp_square(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return nb_mul(g, gy, nb_mul_scalar(g, y->in[0], 2.0));
}

/* d (1/x) = -gy * y^2 */
static nb_node *vjp_reciprocal(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return nb_mul(g, nb_neg(g, gy), nb_square(g, y));
}

/* d erf(x) = gy * 2/sqrt(pi) * exp(-x^2) */
static nb_node *vjp_erf(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *e = nb_exp(g, nb_neg(g, nb_square(g, y->in[0])));
    return nb_mul(g, gy, nb_mul_scalar(g, e, NB_2_SQRTPI));
}

/* d relu(x) = x > 0 ? gy : 0 */
static nb_node *vjp_relu(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    return mask_grad(g, nb_gt(g, x, scalar_like(g, x, 0.0)), gy);
}

/* d leaky_relu(x) = x > 0 ? gy : slope * gy */
static nb_node *vjp_leaky_relu(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    nb_node *pos = nb_gt(g, x, scalar_like(g, x, 0.0));
    return nb_where(g, pos, gy, nb_mul_scalar(g, gy, sparams(y)->a));
}

/* d elu(x) = x > 0 ? gy : gy * alpha exp(x) = gy * (y + alpha) */
static nb_node *vjp_elu(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    nb_node *pos = nb_gt(g, x, scalar_like(g, x, 0.0));
    nb_node *neg = nb_mul(g, gy, nb_add_scalar(g, y, sparams(y)->a));
    return nb_where(g, pos, gy, neg);
}

/* d sigmoid(x) = gy * y * (1 - y) */
static nb_node *vjp_sigmoid(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return nb_mul(g, nb_mul(g, gy, rsub_scalar(g, 1.0, y)), y);
}

/* d tanh(x) = gy * (1 - y^2) */
static nb_node *vjp_tanh(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return nb_mul(g, gy, rsub_scalar(g, 1.0, nb_square(g, y)));
}

/* d gelu(x) = gy * (Phi(x) + x phi(x)), Phi(x) = (1 + erf(x/sqrt2))/2,
 * phi(x) = exp(-x^2/2)/sqrt(2 pi) */
static nb_node *vjp_gelu(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    nb_node *cdf = nb_erf(g, nb_mul_scalar(g, x, NB_SQRT1_2));
    cdf = nb_mul_scalar(g, nb_add_scalar(g, cdf, 1.0), 0.5);
    nb_node *pdf = nb_exp(g, nb_mul_scalar(g, nb_square(g, x), -0.5));
    pdf = nb_mul_scalar(g, pdf, NB_INV_SQRT_2PI);
    return nb_mul(g, gy, nb_add(g, cdf, nb_mul(g, x, pdf)));
}

/* d gelu_tanh(x) = gy * (0.5 (1 + t) + 0.5 x (1 - t^2) u'), with
 * u = sqrt(2/pi) (x + k x^3), t = tanh(u), u' = sqrt(2/pi) (1 + 3k x^2) */
static nb_node *vjp_gelu_tanh(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    nb_node *x2 = nb_square(g, x);
    nb_node *x3 = nb_mul(g, x2, x);
    nb_node *u = nb_mul_scalar(g, nb_add(g, x, nb_mul_scalar(g, x3, NB_GELU_KAPPA)), NB_SQRT_2_PI);
    nb_node *t = nb_tanh(g, u);
    nb_node *left = nb_mul_scalar(g, x, 0.5);
    nb_node *left_d = nb_mul_scalar(g, nb_add_scalar(g, t, 1.0), 0.5);
    nb_node *tanh_d = rsub_scalar(g, 1.0, nb_square(g, t));
    nb_node *inner_d = nb_mul_scalar(g, nb_add_scalar(g, nb_mul_scalar(g, x2, 3.0 * NB_GELU_KAPPA), 1.0),
                                     NB_SQRT_2_PI);
    nb_node *right_d = nb_mul(g, nb_mul(g, left, tanh_d), inner_d);
    return nb_mul(g, gy, nb_add(g, left_d, right_d));
}

/* d silu(x) = gy * s (1 + x (1 - s)), s = sigmoid(x) */
static nb_node *vjp_silu(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    nb_node *s = nb_sigmoid(g, x);
    nb_node *d = nb_add_scalar(g, nb_mul(g, x, rsub_scalar(g, 1.0, s)), 1.0);
    return nb_mul(g, nb_mul(g, gy, s), d);
}

/* d softplus(x) = beta x > threshold ? gy : gy * sigmoid(beta x) */
static nb_node *vjp_softplus(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    nb_node *bx = nb_mul_scalar(g, x, sparams(y)->a);
    nb_node *lin = nb_gt(g, bx, scalar_like(g, x, sparams(y)->b));
    return nb_where(g, lin, gy, nb_mul(g, gy, nb_sigmoid(g, bx)));
}

/* d clip(x, lo, hi) = lo <= x <= hi ? gy : 0 */
static nb_node *vjp_clip(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    double lo = sparams(y)->a, hi = sparams(y)->b;
    nb_node *r = gy;
    /* an infinite bound never masks anything: skip its comparison */
    if (!(isinf(hi) && hi > 0))
        r = mask_grad(g, nb_le(g, x, scalar_like(g, x, hi)), r);
    if (!(isinf(lo) && lo < 0))
        r = mask_grad(g, nb_ge(g, x, scalar_like(g, x, lo)), r);
    return r;
}

/* d cast(x) = cast(gy) back to x's dtype between float types; else none */
static nb_node *vjp_cast(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *x = y->in[0];
    if (!nb_dtype_is_float(x->dtype) || !nb_dtype_is_float(y->dtype))
        return NULL;
    if (gy->dtype == x->dtype)
        return gy;
    return nb_cast(g, gy, x->dtype);
}

/* ---- binary (broadcasting) --------------------------------------------- */

/* d(a + b) = (gy, gy) */
static nb_node *vjp_add(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return unbroadcast(g, gy, y->in[i]);
}

/* d(a - b) = (gy, -gy) */
static nb_node *vjp_sub(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return unbroadcast(g, i == 0 ? gy : nb_neg(g, gy), y->in[i]);
}

/* d(a b) = (gy b, gy a) */
static nb_node *vjp_mul(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    return unbroadcast(g, nb_mul(g, gy, y->in[1 - i]), y->in[i]);
}

/* d(a / b) = (gy / b, -gy y / b) */
static nb_node *vjp_div(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *b = y->in[1];
    if (i == 0)
        return unbroadcast(g, nb_div(g, gy, b), y->in[0]);
    return unbroadcast(g, nb_neg(g, nb_div(g, nb_mul(g, gy, y), b)), b);
}

/* d a^b: da = b == 0 ? 0 : gy b a^(b-1);
 *        db = (a == 0 && b >= 0) ? 0 : gy y log(a) */
static nb_node *vjp_pow(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *a = y->in[0], *b = y->in[1];
    nb_node *zero = scalar_like(g, a, 0.0);
    if (i == 0) {
        nb_node *d = nb_mul(g, b, nb_pow(g, a, nb_add_scalar(g, b, -1.0)));
        nb_node *r = nb_where(g, nb_eq(g, b, zero), zero, nb_mul(g, gy, d));
        return unbroadcast(g, r, a);
    }
    nb_node *d = nb_mul(g, y, nb_log(g, a));
    /* (a == 0 && b >= 0) as two nested masks: zero where either test picks it */
    nb_node *r = nb_where(g, nb_eq(g, a, zero), nb_where(g, nb_ge(g, b, zero), zero, d), d);
    return unbroadcast(g, nb_mul(g, gy, r), b);
}

/* d max(a, b): a gets gy where a > b, gy/2 where a == b, 0 where a < b
 * (b symmetrically) */
static nb_node *vjp_maximum(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *self = y->in[i], *other = y->in[1 - i];
    nb_node *tie = mask_grad(g, nb_eq(g, self, other), nb_mul_scalar(g, gy, 0.5));
    return unbroadcast(g, nb_where(g, nb_gt(g, self, other), gy, tie), self);
}

/* d min(a, b): a gets gy where a < b, gy/2 where a == b, 0 where a > b
 * (b symmetrically) */
static nb_node *vjp_minimum(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *self = y->in[i], *other = y->in[1 - i];
    nb_node *tie = mask_grad(g, nb_eq(g, self, other), nb_mul_scalar(g, gy, 0.5));
    return unbroadcast(g, nb_where(g, nb_lt(g, self, other), gy, tie), self);
}

/* d where(c, a, b) = (none, where(c, gy, 0), where(c, 0, gy)) */
static nb_node *vjp_where(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    nb_node *c = y->in[0];
    if (i == 0)
        return NULL;
    nb_node *zero = scalar_like(g, gy, 0.0);
    nb_node *r = i == 1 ? nb_where(g, c, gy, zero) : nb_where(g, c, zero, gy);
    return unbroadcast(g, r, y->in[i]);
}

/* ---- softmax family ---------------------------------------------------- */

/* d softmax(x) = y * (gy - sum(gy * y, axis, keepdims)) */
static nb_node *vjp_softmax(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    int axis = ((const nb_axis_params *)y->params)->axis;
    nb_node *dot = nb_sum(g, nb_mul(g, gy, y), 1, &axis, true);
    return nb_mul(g, y, nb_sub(g, gy, dot));
}

/* d log_softmax(x) = gy - exp(y) * sum(gy, axis, keepdims) */
static nb_node *vjp_log_softmax(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    int axis = ((const nb_axis_params *)y->params)->axis;
    nb_node *s = nb_sum(g, gy, 1, &axis, true);
    return nb_sub(g, gy, nb_mul(g, nb_exp(g, y), s));
}

void nb_vjp_register_elementwise(nb_vjp_fn *table)
{
    table[NB_OP_NEG] = vjp_neg;
    table[NB_OP_ABS] = vjp_abs;
    table[NB_OP_SIGN] = vjp_sign;
    table[NB_OP_EXP] = vjp_exp;
    table[NB_OP_LOG] = vjp_log;
    table[NB_OP_SQRT] = vjp_sqrt;
    table[NB_OP_RSQRT] = vjp_rsqrt;
    table[NB_OP_SQUARE] = vjp_square;
    table[NB_OP_RECIPROCAL] = vjp_reciprocal;
    table[NB_OP_ERF] = vjp_erf;
    table[NB_OP_RELU] = vjp_relu;
    table[NB_OP_LEAKY_RELU] = vjp_leaky_relu;
    table[NB_OP_ELU] = vjp_elu;
    table[NB_OP_SIGMOID] = vjp_sigmoid;
    table[NB_OP_TANH] = vjp_tanh;
    table[NB_OP_GELU] = vjp_gelu;
    table[NB_OP_GELU_TANH] = vjp_gelu_tanh;
    table[NB_OP_SILU] = vjp_silu;
    table[NB_OP_SOFTPLUS] = vjp_softplus;
    table[NB_OP_CLIP] = vjp_clip;
    table[NB_OP_CAST] = vjp_cast;
    table[NB_OP_ADD] = vjp_add;
    table[NB_OP_SUB] = vjp_sub;
    table[NB_OP_MUL] = vjp_mul;
    table[NB_OP_DIV] = vjp_div;
    table[NB_OP_POW] = vjp_pow;
    table[NB_OP_MAXIMUM] = vjp_maximum;
    table[NB_OP_MINIMUM] = vjp_minimum;
    table[NB_OP_WHERE] = vjp_where;
    table[NB_OP_SOFTMAX] = vjp_softmax;
    table[NB_OP_LOG_SOFTMAX] = vjp_log_softmax;
}
