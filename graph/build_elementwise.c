/* Builders of elementwise ops: dtype checks and NumPy broadcasting at the
 * call that makes the node. Storage dtypes (i8, i16, u16, u32, u64, f16,
 * bf16) are refused by the arithmetic and comparison builders, with a hint
 * to cast to their compute type; cast takes every dtype, and where every
 * dtype its kernel has a loop for (1, 4 and 8 bytes). */
#include <stdio.h>

#include "graph/graph_impl.h"

#define NAME(op) nb_graph_next_name(g, op)

/* ", a storage type: cast it to i64 first" or "" (for messages). */
static const char *storage_hint(nb_dtype dt, char *buf, size_t size)
{
    if (!nb_dtype_is_storage(dt))
        return "";
    snprintf(buf, size, " (%s is a storage type: cast it to %s first)", nb_dtype_name(dt),
             nb_dtype_name(nb_dtype_compute(dt)));
    return buf;
}

/* ---- unary ------------------------------------------------------------- */

/* Ops defined on integers as well as floats. */
static bool unary_takes_ints(nb_op op)
{
    return op == NB_OP_NEG || op == NB_OP_ABS || op == NB_OP_SIGN;
}

static nb_node *unary(nb_graph *g, nb_op op, nb_node *x, double a, double b)
{
    if (nb_graph_check_inputs(g, op, 1, &x))
        return g->poison;
    bool ok = nb_dtype_is_float(x->dtype) ||
              (unary_takes_ints(op) && (x->dtype == NB_I32 || x->dtype == NB_I64));
    char hint[96];
    if (!ok)
        return nb_graph_fail(g, NB_ERR_DTYPE, "%s '%s': input '%s' has dtype %s, needs f32 or f64%s",
                             nb_op_name(op), NAME(op), x->name, nb_dtype_name(x->dtype),
                             storage_hint(x->dtype, hint, sizeof hint));
    nb_scalar_params p = {a, b};
    return nb_graph_add_node(g, op, 1, &x, &p, sizeof(p), x->dtype, x->ndim, x->shape);
}

nb_node *nb_neg(nb_graph *g, nb_node *x) { return unary(g, NB_OP_NEG, x, 0, 0); }
nb_node *nb_abs(nb_graph *g, nb_node *x) { return unary(g, NB_OP_ABS, x, 0, 0); }
nb_node *nb_sign(nb_graph *g, nb_node *x) { return unary(g, NB_OP_SIGN, x, 0, 0); }
nb_node *nb_exp(nb_graph *g, nb_node *x) { return unary(g, NB_OP_EXP, x, 0, 0); }
nb_node *nb_log(nb_graph *g, nb_node *x) { return unary(g, NB_OP_LOG, x, 0, 0); }
nb_node *nb_sqrt(nb_graph *g, nb_node *x) { return unary(g, NB_OP_SQRT, x, 0, 0); }
nb_node *nb_rsqrt(nb_graph *g, nb_node *x) { return unary(g, NB_OP_RSQRT, x, 0, 0); }
nb_node *nb_square(nb_graph *g, nb_node *x) { return unary(g, NB_OP_SQUARE, x, 0, 0); }
nb_node *nb_reciprocal(nb_graph *g, nb_node *x) { return unary(g, NB_OP_RECIPROCAL, x, 0, 0); }
nb_node *nb_erf(nb_graph *g, nb_node *x) { return unary(g, NB_OP_ERF, x, 0, 0); }
nb_node *nb_relu(nb_graph *g, nb_node *x) { return unary(g, NB_OP_RELU, x, 0, 0); }
nb_node *nb_sigmoid(nb_graph *g, nb_node *x) { return unary(g, NB_OP_SIGMOID, x, 0, 0); }
nb_node *nb_tanh(nb_graph *g, nb_node *x) { return unary(g, NB_OP_TANH, x, 0, 0); }
nb_node *nb_silu(nb_graph *g, nb_node *x) { return unary(g, NB_OP_SILU, x, 0, 0); }

nb_node *nb_leaky_relu(nb_graph *g, nb_node *x, double slope)
{
    return unary(g, NB_OP_LEAKY_RELU, x, slope, 0);
}

nb_node *nb_elu(nb_graph *g, nb_node *x, double alpha) { return unary(g, NB_OP_ELU, x, alpha, 0); }

nb_node *nb_gelu(nb_graph *g, nb_node *x, bool approximate)
{
    return unary(g, approximate ? NB_OP_GELU_TANH : NB_OP_GELU, x, 0, 0);
}

nb_node *nb_softplus(nb_graph *g, nb_node *x, double beta, double threshold)
{
    if (g->status == NB_OK && beta == 0)
        return nb_graph_fail(g, NB_ERR_ARG, "softplus '%s': beta must not be 0",
                             NAME(NB_OP_SOFTPLUS));
    return unary(g, NB_OP_SOFTPLUS, x, beta, threshold);
}

nb_node *nb_clip(nb_graph *g, nb_node *x, double lo, double hi)
{
    if (g->status == NB_OK && lo > hi)
        return nb_graph_fail(g, NB_ERR_ARG, "clip '%s': min %g is greater than max %g",
                             NAME(NB_OP_CLIP), lo, hi);
    return unary(g, NB_OP_CLIP, x, lo, hi);
}

nb_node *nb_cast(nb_graph *g, nb_node *x, nb_dtype dt)
{
    if (nb_graph_check_inputs(g, NB_OP_CAST, 1, &x))
        return g->poison;
    if (!nb_dtype_valid(dt))
        return nb_graph_fail(g, NB_ERR_DTYPE, "cast '%s': invalid dtype %d", NAME(NB_OP_CAST),
                             (int)dt);
    if (dt == x->dtype)
        return x;
    return nb_graph_add_node(g, NB_OP_CAST, 1, &x, NULL, 0, dt, x->ndim, x->shape);
}

/* ---- binary ------------------------------------------------------------ */

static bool is_comparison(nb_op op) { return op >= NB_OP_EQ && op <= NB_OP_GE; }

static nb_node *binary(nb_graph *g, nb_op op, nb_node *a, nb_node *b)
{
    nb_node *in[2] = {a, b};
    if (nb_graph_check_inputs(g, op, 2, in))
        return g->poison;
    if (a->dtype != b->dtype)
        return nb_graph_fail(g, NB_ERR_DTYPE, "%s '%s': dtypes differ: '%s' is %s, '%s' is %s",
                             nb_op_name(op), NAME(op), a->name, nb_dtype_name(a->dtype),
                             b->name, nb_dtype_name(b->dtype));
    bool arith_ok = nb_dtype_is_float(a->dtype) ||
                    ((a->dtype == NB_I32 || a->dtype == NB_I64) && op != NB_OP_POW);
    char hint[96];
    if ((!is_comparison(op) && !arith_ok) || nb_dtype_is_storage(a->dtype))
        return nb_graph_fail(g, NB_ERR_DTYPE, "%s '%s': dtype %s is not supported%s",
                             nb_op_name(op), NAME(op), nb_dtype_name(a->dtype),
                             storage_hint(a->dtype, hint, sizeof hint));
    int ndim;
    int64_t shape[NB_MAX_DIMS];
    if (!nb_shape_broadcast(a->ndim, a->shape, b->ndim, b->shape, &ndim, shape))
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': shapes %s and %s do not broadcast",
                             nb_op_name(op), NAME(op), nb_node_shape_str(a),
                             nb_node_shape_str(b));
    nb_dtype out = is_comparison(op) ? NB_BOOL : a->dtype;
    return nb_graph_add_node(g, op, 2, in, NULL, 0, out, ndim, shape);
}

nb_node *nb_add(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_ADD, a, b); }
nb_node *nb_sub(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_SUB, a, b); }
nb_node *nb_mul(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_MUL, a, b); }
nb_node *nb_div(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_DIV, a, b); }
nb_node *nb_pow(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_POW, a, b); }
nb_node *nb_maximum(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_MAXIMUM, a, b); }
nb_node *nb_minimum(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_MINIMUM, a, b); }
nb_node *nb_eq(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_EQ, a, b); }
nb_node *nb_ne(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_NE, a, b); }
nb_node *nb_lt(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_LT, a, b); }
nb_node *nb_le(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_LE, a, b); }
nb_node *nb_gt(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_GT, a, b); }
nb_node *nb_ge(nb_graph *g, nb_node *a, nb_node *b) { return binary(g, NB_OP_GE, a, b); }

/* x op s, with s a 0-d constant of x's dtype */
static nb_node *with_scalar(nb_graph *g, nb_op op, nb_node *x, double s)
{
    if (nb_graph_check_inputs(g, op, 1, &x))
        return g->poison;
    return binary(g, op, x, nb_scalar(g, s, x->dtype));
}

nb_node *nb_add_scalar(nb_graph *g, nb_node *x, double s) { return with_scalar(g, NB_OP_ADD, x, s); }
nb_node *nb_mul_scalar(nb_graph *g, nb_node *x, double s) { return with_scalar(g, NB_OP_MUL, x, s); }
nb_node *nb_pow_scalar(nb_graph *g, nb_node *x, double s) { return with_scalar(g, NB_OP_POW, x, s); }

nb_node *nb_where(nb_graph *g, nb_node *cond, nb_node *a, nb_node *b)
{
    nb_node *in[3] = {cond, a, b};
    if (nb_graph_check_inputs(g, NB_OP_WHERE, 3, in))
        return g->poison;
    if (cond->dtype != NB_BOOL)
        return nb_graph_fail(g, NB_ERR_DTYPE, "where '%s': condition '%s' has dtype %s, needs bool",
                             NAME(NB_OP_WHERE), cond->name, nb_dtype_name(cond->dtype));
    if (a->dtype != b->dtype)
        return nb_graph_fail(g, NB_ERR_DTYPE, "where '%s': dtypes differ: '%s' is %s, '%s' is %s",
                             NAME(NB_OP_WHERE), a->name, nb_dtype_name(a->dtype), b->name,
                             nb_dtype_name(b->dtype));
    if (nb_dtype_size(a->dtype) == 2) {
        char hint[96];
        return nb_graph_fail(g, NB_ERR_DTYPE, "where '%s': dtype %s is not supported%s",
                             NAME(NB_OP_WHERE), nb_dtype_name(a->dtype),
                             storage_hint(a->dtype, hint, sizeof hint));
    }
    int n1, n2;
    int64_t s1[NB_MAX_DIMS], s2[NB_MAX_DIMS];
    if (!nb_shape_broadcast(cond->ndim, cond->shape, a->ndim, a->shape, &n1, s1) ||
        !nb_shape_broadcast(n1, s1, b->ndim, b->shape, &n2, s2))
        return nb_graph_fail(g, NB_ERR_SHAPE, "where '%s': shapes %s, %s and %s do not broadcast",
                             NAME(NB_OP_WHERE), nb_node_shape_str(cond), nb_node_shape_str(a),
                             nb_node_shape_str(b));
    return nb_graph_add_node(g, NB_OP_WHERE, 3, in, NULL, 0, a->dtype, n2, s2);
}

nb_node *nb_full_like(nb_graph *g, nb_node *x, double value)
{
    if (nb_graph_check_inputs(g, NB_OP_CONST, 1, &x))
        return g->poison;
    nb_node *s = nb_scalar(g, value, x->dtype);
    if (x->ndim == 0)
        return s;
    return nb_expand(g, s, x->ndim, x->shape);
}
