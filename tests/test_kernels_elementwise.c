/* Elementwise CPU kernels (unary, cast, binary, comparisons, where) and the
 * thread pool, checked against references computed here with libm in long
 * double or plain C arithmetic. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "kernels/cpu.h"
#include "kernels/ops.h"
#include "kernels/threadpool.h"
#include "tensor/tensor.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})

/* ---- helpers -------------------------------------------------------------- */

static void store_as(void *d, nb_dtype dt, int64_t i, double v)
{
    switch (dt) {
    case NB_F32: ((float *)d)[i] = (float)v; break;
    case NB_F64: ((double *)d)[i] = v; break;
    case NB_I32: ((int32_t *)d)[i] = (int32_t)v; break;
    case NB_I64: ((int64_t *)d)[i] = (int64_t)v; break;
    case NB_U8: ((uint8_t *)d)[i] = (uint8_t)v; break;
    case NB_BOOL: ((uint8_t *)d)[i] = v != 0; break;
    default: ck_abort_msg("bad dtype");
    }
}

/* A contiguous tensor holding vals (converted to dt); vals may be NULL for
 * a tensor filled with f(i). */
static nb_tensor mk(nb_dtype dt, int ndim, const int64_t *shape, const double *vals)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, dt, ndim, shape), NB_OK);
    int64_t n = nb_tensor_numel(&t);
    void *d = nb_tensor_data(&t);
    for (int64_t i = 0; i < n; i++)
        store_as(d, dt, i, vals[i]);
    return t;
}

/* Values that vary smoothly and hit both signs: sin-based, scaled. */
static nb_tensor mk_seq(nb_dtype dt, int ndim, const int64_t *shape, double scale, double shift)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, dt, ndim, shape), NB_OK);
    int64_t n = nb_tensor_numel(&t);
    void *d = nb_tensor_data(&t);
    for (int64_t i = 0; i < n; i++) {
        double v = scale * sin(0.7 * (double)i + 0.3) + shift;
        if (dt != NB_F32 && dt != NB_F64)
            v = round(v);
        store_as(d, dt, i, v);
    }
    return t;
}

static nb_tensor mk_empty(nb_dtype dt, int ndim, const int64_t *shape)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, dt, ndim, shape), NB_OK);
    return t;
}

static nb_status call1(nb_op op, const nb_tensor *x, nb_tensor *out, const nb_scalar_params *p)
{
    const nb_tensor *in[1] = {x};
    nb_kernel_call c = {.op = op, .n_in = 1, .in = in, .out = out, .params = p};
    return op == NB_OP_CAST ? nb_cpu_cast(&c) : nb_cpu_unary(&c);
}

static nb_status call2(nb_op op, const nb_tensor *a, const nb_tensor *b, nb_tensor *out)
{
    const nb_tensor *in[2] = {a, b};
    nb_kernel_call c = {.op = op, .n_in = 2, .in = in, .out = out};
    return nb_cpu_binary(&c);
}

static nb_status call3(const nb_tensor *cond, const nb_tensor *a, const nb_tensor *b,
                       nb_tensor *out)
{
    const nb_tensor *in[3] = {cond, a, b};
    nb_kernel_call c = {.op = NB_OP_WHERE, .n_in = 3, .in = in, .out = out};
    return nb_cpu_where(&c);
}

static bool close_enough(double got, double want, double rtol, double atol)
{
    if (isnan(want))
        return isnan(got);
    if (isinf(want))
        return got == want;
    return fabs(got - want) <= atol + rtol * fabs(want);
}

static double rtol_of(nb_dtype dt) { return dt == NB_F32 ? 1e-5 : dt == NB_F64 ? 1e-12 : 0; }
static double atol_of(nb_dtype dt) { return dt == NB_F32 ? 1e-6 : dt == NB_F64 ? 1e-14 : 0; }

/* The index of input t that output multi-index idx (ndim nd) reads under
 * right-aligned broadcasting. */
static void bcast_index(const nb_tensor *t, int nd, const int64_t *idx, int64_t *ti)
{
    for (int d = 0; d < t->ndim; d++)
        ti[d] = t->shape[d] == 1 ? 0 : idx[d + nd - t->ndim];
}

static void unflatten(const nb_tensor *t, int64_t k, int64_t *idx)
{
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = k % t->shape[d];
        k /= t->shape[d];
    }
}

/* ---- references ------------------------------------------------------------ */

static double ref_unary(nb_op op, double xd, double a, double b)
{
    long double x = xd;
    switch (op) {
    case NB_OP_NEG: return -xd;
    case NB_OP_ABS: return fabs(xd);
    case NB_OP_SIGN: return xd > 0 ? 1 : xd < 0 ? -1 : 0;
    case NB_OP_EXP: return (double)expl(x);
    case NB_OP_LOG: return (double)logl(x);
    case NB_OP_SQRT: return (double)sqrtl(x);
    case NB_OP_RSQRT: return (double)(1.0L / sqrtl(x));
    case NB_OP_SQUARE: return (double)(x * x);
    case NB_OP_RECIPROCAL: return (double)(1.0L / x);
    case NB_OP_ERF: return (double)erfl(x);
    case NB_OP_RELU: return xd > 0 ? xd : 0;
    case NB_OP_LEAKY_RELU: return xd > 0 ? xd : (double)(a * x);
    case NB_OP_ELU: return xd > 0 ? xd : (double)(a * (expl(x) - 1));
    case NB_OP_SIGMOID: return (double)(1.0L / (1.0L + expl(-x)));
    case NB_OP_TANH: return (double)tanhl(x);
    case NB_OP_GELU: return (double)(0.5L * x * (1.0L + erfl(x / sqrtl(2.0L))));
    case NB_OP_GELU_TANH: {
        long double k = sqrtl(2.0L / 3.14159265358979323846264338327950288L);
        return (double)(0.5L * x * (1.0L + tanhl(k * (x + 0.044715L * x * x * x))));
    }
    case NB_OP_SILU: return (double)(x / (1.0L + expl(-x)));
    case NB_OP_SOFTPLUS: return a * xd > b ? xd : (double)(log1pl(expl(a * x)) / a);
    case NB_OP_CLIP: return xd < a ? a : xd > b ? b : xd;
    default: ck_abort_msg("no reference for %s", nb_op_name(op)); return 0;
    }
}

static double ref_binary(nb_op op, double x, double y, nb_dtype dt)
{
    bool is_int = dt == NB_I32 || dt == NB_I64 || dt == NB_U8 || dt == NB_BOOL;
    switch (op) {
    case NB_OP_ADD: return x + y;
    case NB_OP_SUB: return x - y;
    case NB_OP_MUL: return x * y;
    case NB_OP_DIV: return is_int ? trunc(x / y) : x / y;
    case NB_OP_POW: return (double)powl(x, y);
    case NB_OP_MAXIMUM: return isnan(x) || isnan(y) ? NAN : x > y ? x : y;
    case NB_OP_MINIMUM: return isnan(x) || isnan(y) ? NAN : x < y ? x : y;
    case NB_OP_EQ: return x == y;
    case NB_OP_NE: return x != y;
    case NB_OP_LT: return x < y;
    case NB_OP_LE: return x <= y;
    case NB_OP_GT: return x > y;
    case NB_OP_GE: return x >= y;
    default: ck_abort_msg("no reference for %s", nb_op_name(op)); return 0;
    }
}

/* out == op(a, b) elementwise under broadcasting; any strides. */
static void check_binary(nb_op op, const nb_tensor *a, const nb_tensor *b, const nb_tensor *out)
{
    int64_t n = nb_tensor_numel(out);
    int64_t idx[NB_MAX_DIMS], ia[NB_MAX_DIMS], ib[NB_MAX_DIMS];
    for (int64_t k = 0; k < n; k++) {
        unflatten(out, k, idx);
        bcast_index(a, out->ndim, idx, ia);
        bcast_index(b, out->ndim, idx, ib);
        double x = nb_tensor_get(a, ia), y = nb_tensor_get(b, ib);
        double want = ref_binary(op, x, y, a->dtype);
        double got = nb_tensor_get(out, idx);
        /* a plain test per element: ck_assert costs a syscall each in fork mode */
        if (!close_enough(got, want, rtol_of(out->dtype), atol_of(out->dtype)))
            ck_abort_msg("%s %s: element %lld: %.17g op %.17g = %.17g, want %.17g",
                         nb_op_name(op), nb_dtype_name(a->dtype), (long long)k, x, y, got, want);
    }
}

/* Run op into a fresh output of the broadcast shape and check it. */
static void run_check_binary(nb_op op, const nb_tensor *a, const nb_tensor *b)
{
    int nd;
    int64_t shape[NB_MAX_DIMS];
    ck_assert(nb_shape_broadcast(a->ndim, a->shape, b->ndim, b->shape, &nd, shape));
    bool cmp = op >= NB_OP_EQ && op <= NB_OP_GE;
    nb_tensor out = mk_empty(cmp ? NB_BOOL : a->dtype, nd, shape);
    ck_assert_msg(call2(op, a, b, &out) == NB_OK, "%s: %s", nb_op_name(op), nb_last_error());
    check_binary(op, a, b, &out);
    nb_tensor_release(&out);
}

/* ---- unary ------------------------------------------------------------------- */

static const nb_op float_unary_ops[] = {
    NB_OP_NEG, NB_OP_ABS, NB_OP_SIGN, NB_OP_EXP, NB_OP_LOG, NB_OP_SQRT, NB_OP_RSQRT,
    NB_OP_SQUARE, NB_OP_RECIPROCAL, NB_OP_ERF, NB_OP_RELU, NB_OP_LEAKY_RELU, NB_OP_ELU,
    NB_OP_SIGMOID, NB_OP_TANH, NB_OP_GELU, NB_OP_GELU_TANH, NB_OP_SILU, NB_OP_SOFTPLUS,
    NB_OP_CLIP,
};

static nb_scalar_params params_of(nb_op op)
{
    switch (op) {
    case NB_OP_LEAKY_RELU: return (nb_scalar_params){0.125, 0};
    case NB_OP_ELU: return (nb_scalar_params){1.5, 0};
    case NB_OP_SOFTPLUS: return (nb_scalar_params){2.0, 10.0};
    case NB_OP_CLIP: return (nb_scalar_params){-1.25, 2.5};
    default: return (nb_scalar_params){0, 0};
    }
}

static void check_unary_op(nb_op op, nb_dtype dt)
{
    enum { N = 48 };
    double v[N];
    bool positive = op == NB_OP_LOG || op == NB_OP_SQRT || op == NB_OP_RSQRT;
    for (int i = 0; i < 40; i++)
        v[i] = -7.0 + 0.37 * i;
    const double extra[8] = {0.0, -0.0, 1e-3, -1e-3, 15, -15, 30, -30};
    for (int i = 0; i < 8; i++)
        v[40 + i] = extra[i];
    if (positive)
        for (int i = 0; i < N; i++)
            v[i] = fabs(v[i]) + 0.01;
    if (op == NB_OP_RECIPROCAL)
        v[40] = 0.5, v[41] = -0.5;

    nb_tensor x = mk(dt, 1, S(N), v);
    nb_tensor y = mk_empty(dt, 1, S(N));
    nb_scalar_params p = params_of(op);
    ck_assert_msg(call1(op, &x, &y, &p) == NB_OK, "%s: %s", nb_op_name(op), nb_last_error());
    for (int i = 0; i < N; i++) {
        double xi = nb_tensor_get_flat(&x, i);
        double want = ref_unary(op, xi, p.a, p.b), got = nb_tensor_get_flat(&y, i);
        ck_assert_msg(close_enough(got, want, rtol_of(dt), atol_of(dt)),
                      "%s %s(%.9g) = %.17g, want %.17g", nb_op_name(op), nb_dtype_name(dt), xi,
                      got, want);
    }
    nb_tensor_release(&x);
    nb_tensor_release(&y);
}

START_TEST(test_unary_float)
{
    for (size_t k = 0; k < sizeof float_unary_ops / sizeof float_unary_ops[0]; k++) {
        check_unary_op(float_unary_ops[k], NB_F32);
        check_unary_op(float_unary_ops[k], NB_F64);
    }
}
END_TEST

START_TEST(test_unary_special_values)
{
    const double v[6] = {NAN, 0.0, -100.0, 100.0, -1000.0, 1000.0};
    for (int t = 0; t < 2; t++) {
        nb_dtype dt = t ? NB_F64 : NB_F32;
        nb_tensor x = mk(dt, 1, S(6), v), y = mk_empty(dt, 1, S(6));
        nb_scalar_params clip = {-1, 1};

        ck_assert_int_eq(call1(NB_OP_SIGN, &x, &y, NULL), NB_OK);
        ck_assert(nb_tensor_get_flat(&y, 0) == 0.0); /* sign(NaN) = 0, as PyTorch */
        ck_assert(nb_tensor_get_flat(&y, 1) == 0.0);
        ck_assert(nb_tensor_get_flat(&y, 2) == -1.0);

        ck_assert_int_eq(call1(NB_OP_RELU, &x, &y, NULL), NB_OK);
        ck_assert(isnan(nb_tensor_get_flat(&y, 0)));
        ck_assert(nb_tensor_get_flat(&y, 2) == 0.0);

        ck_assert_int_eq(call1(NB_OP_CLIP, &x, &y, &clip), NB_OK);
        ck_assert(isnan(nb_tensor_get_flat(&y, 0)));
        ck_assert(nb_tensor_get_flat(&y, 2) == -1.0 && nb_tensor_get_flat(&y, 3) == 1.0);

        /* sigmoid and silu stay finite and exact at the extremes */
        ck_assert_int_eq(call1(NB_OP_SIGMOID, &x, &y, NULL), NB_OK);
        ck_assert(nb_tensor_get_flat(&y, 3) == 1.0 && nb_tensor_get_flat(&y, 5) == 1.0);
        ck_assert(nb_tensor_get_flat(&y, 4) == 0.0);
        ck_assert(close_enough(nb_tensor_get_flat(&y, 2), exp(-100.0), 1e-5, 1e-300) ||
                  (dt == NB_F32 && nb_tensor_get_flat(&y, 2) < 1e-38));
        ck_assert_int_eq(call1(NB_OP_SILU, &x, &y, NULL), NB_OK);
        ck_assert(nb_tensor_get_flat(&y, 5) == 1000.0);
        ck_assert(nb_tensor_get_flat(&y, 4) == 0.0);

        /* softplus with PyTorch defaults (beta 1, threshold 20) when params are NULL */
        ck_assert_int_eq(call1(NB_OP_SOFTPLUS, &x, &y, NULL), NB_OK);
        ck_assert(nb_tensor_get_flat(&y, 5) == 1000.0);
        ck_assert(close_enough(nb_tensor_get_flat(&y, 1), log(2.0), 1e-6, 0));
        /* leaky_relu default slope 0.01 */
        ck_assert_int_eq(call1(NB_OP_LEAKY_RELU, &x, &y, NULL), NB_OK);
        ck_assert(close_enough(nb_tensor_get_flat(&y, 2), -1.0, 1e-6, 0));
        /* clip has no default */
        ck_assert_int_eq(call1(NB_OP_CLIP, &x, &y, NULL), NB_ERR_ARG);
        ck_assert_ptr_nonnull(strstr(nb_last_error(), "clip"));

        nb_tensor_release(&x);
        nb_tensor_release(&y);
    }
}
END_TEST

START_TEST(test_unary_int)
{
    const int32_t a32[5] = {-7, 0, 5, INT32_MIN, INT32_MAX};
    const int64_t a64[5] = {-7, 0, 5, INT64_MIN, INT64_MAX};
    nb_tensor x32, x64;
    ck_assert_int_eq(nb_tensor_from_data(&x32, NB_I32, 1, S(5), a32), NB_OK);
    ck_assert_int_eq(nb_tensor_from_data(&x64, NB_I64, 1, S(5), a64), NB_OK);
    nb_tensor y32 = mk_empty(NB_I32, 1, S(5)), y64 = mk_empty(NB_I64, 1, S(5));
    const int32_t *r32 = nb_tensor_data(&y32);
    const int64_t *r64 = nb_tensor_data(&y64);

    ck_assert_int_eq(call1(NB_OP_NEG, &x32, &y32, NULL), NB_OK);
    ck_assert(r32[0] == 7 && r32[1] == 0 && r32[2] == -5 && r32[3] == INT32_MIN &&
              r32[4] == -INT32_MAX);
    ck_assert_int_eq(call1(NB_OP_ABS, &x32, &y32, NULL), NB_OK);
    ck_assert(r32[0] == 7 && r32[1] == 0 && r32[2] == 5 && r32[3] == INT32_MIN);
    ck_assert_int_eq(call1(NB_OP_SIGN, &x32, &y32, NULL), NB_OK);
    ck_assert(r32[0] == -1 && r32[1] == 0 && r32[2] == 1 && r32[3] == -1 && r32[4] == 1);

    ck_assert_int_eq(call1(NB_OP_NEG, &x64, &y64, NULL), NB_OK);
    ck_assert(r64[0] == 7 && r64[2] == -5 && r64[3] == INT64_MIN && r64[4] == -INT64_MAX);
    ck_assert_int_eq(call1(NB_OP_ABS, &x64, &y64, NULL), NB_OK);
    ck_assert(r64[0] == 7 && r64[4] == INT64_MAX);
    ck_assert_int_eq(call1(NB_OP_SIGN, &x64, &y64, NULL), NB_OK);
    ck_assert(r64[0] == -1 && r64[1] == 0 && r64[4] == 1);

    /* math ops are float-only; u8 has no neg */
    ck_assert_int_eq(call1(NB_OP_EXP, &x32, &y32, NULL), NB_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "exp"));
    nb_tensor u = mk_empty(NB_U8, 1, S(5));
    ck_assert_int_eq(call1(NB_OP_NEG, &u, &u, NULL), NB_ERR_DTYPE);
    /* input and output dtypes must agree */
    ck_assert_int_eq(call1(NB_OP_NEG, &x32, &y64, NULL), NB_ERR_DTYPE);
    /* and shapes */
    nb_tensor y4 = mk_empty(NB_I32, 1, S(4));
    ck_assert_int_eq(call1(NB_OP_NEG, &x32, &y4, NULL), NB_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "neg"));

    nb_tensor_release(&x32), nb_tensor_release(&x64), nb_tensor_release(&y32);
    nb_tensor_release(&y64), nb_tensor_release(&u), nb_tensor_release(&y4);
}
END_TEST

/* ---- binary ------------------------------------------------------------------ */

START_TEST(test_binary_float)
{
    const nb_op ops[] = {NB_OP_ADD, NB_OP_SUB, NB_OP_MUL, NB_OP_DIV, NB_OP_POW,
                         NB_OP_MAXIMUM, NB_OP_MINIMUM};
    for (int t = 0; t < 2; t++) {
        nb_dtype dt = t ? NB_F64 : NB_F32;
        nb_tensor a = mk_seq(dt, 2, S(5, 7), 3.0, 0.0);
        nb_tensor b = mk_seq(dt, 2, S(5, 7), 2.0, 0.5);
        nb_tensor pa = mk_seq(dt, 2, S(5, 7), 1.0, 2.5); /* positive bases for pow */
        for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
            run_check_binary(ops[k], ops[k] == NB_OP_POW ? &pa : &a, &b);

        /* NaN propagates through maximum/minimum from either side; pow of a
         * negative base with an integral exponent is real */
        const double xv[4] = {NAN, 1.0, -2.0, 0.0}, yv[4] = {1.0, NAN, 3.0, -0.0};
        nb_tensor x = mk(dt, 1, S(4), xv), y = mk(dt, 1, S(4), yv);
        run_check_binary(NB_OP_MAXIMUM, &x, &y);
        run_check_binary(NB_OP_MINIMUM, &x, &y);
        run_check_binary(NB_OP_POW, &x, &y);
        run_check_binary(NB_OP_DIV, &y, &x); /* 3 / -2, NaN / 1, -0 / 0 = NaN */
        nb_tensor_release(&a), nb_tensor_release(&b), nb_tensor_release(&pa);
        nb_tensor_release(&x), nb_tensor_release(&y);
    }
}
END_TEST

START_TEST(test_binary_int)
{
    const nb_op ops[] = {NB_OP_ADD, NB_OP_SUB, NB_OP_MUL, NB_OP_DIV, NB_OP_MAXIMUM,
                         NB_OP_MINIMUM};
    const double xv[8] = {7, -7, 7, -7, 0, 100, -1, 12345};
    const double yv[8] = {2, 2, -2, -2, 3, -7, 1, 10};
    for (int t = 0; t < 2; t++) {
        nb_dtype dt = t ? NB_I64 : NB_I32;
        nb_tensor x = mk(dt, 1, S(8), xv), y = mk(dt, 1, S(8), yv);
        for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
            run_check_binary(ops[k], &x, &y);
        nb_tensor_release(&x), nb_tensor_release(&y);
    }
    /* C truncation; overflow wraps instead of trapping */
    const int32_t a[4] = {-7, INT32_MIN, INT32_MAX, INT32_MIN};
    const int32_t b[4] = {2, -1, 1, -1};
    nb_tensor ta, tb, out = mk_empty(NB_I32, 1, S(4));
    ck_assert_int_eq(nb_tensor_from_data(&ta, NB_I32, 1, S(4), a), NB_OK);
    ck_assert_int_eq(nb_tensor_from_data(&tb, NB_I32, 1, S(4), b), NB_OK);
    const int32_t *r = nb_tensor_data(&out);
    ck_assert_int_eq(call2(NB_OP_DIV, &ta, &tb, &out), NB_OK);
    ck_assert(r[0] == -3 && r[1] == INT32_MIN && r[2] == INT32_MAX);
    ck_assert_int_eq(call2(NB_OP_ADD, &ta, &tb, &out), NB_OK);
    ck_assert(r[2] == INT32_MIN && r[1] == INT32_MAX);
    ck_assert_int_eq(call2(NB_OP_MUL, &ta, &tb, &out), NB_OK);
    ck_assert(r[1] == INT32_MIN);
    const int64_t a64[2] = {INT64_MAX, INT64_MIN}, b64[2] = {1, -1};
    nb_tensor t64a, t64b, o64 = mk_empty(NB_I64, 1, S(2));
    ck_assert_int_eq(nb_tensor_from_data(&t64a, NB_I64, 1, S(2), a64), NB_OK);
    ck_assert_int_eq(nb_tensor_from_data(&t64b, NB_I64, 1, S(2), b64), NB_OK);
    const int64_t *r64 = nb_tensor_data(&o64);
    ck_assert_int_eq(call2(NB_OP_ADD, &t64a, &t64b, &o64), NB_OK);
    ck_assert(r64[0] == INT64_MIN && r64[1] == INT64_MAX);
    ck_assert_int_eq(call2(NB_OP_DIV, &t64b, &t64b, &o64), NB_OK);
    ck_assert(r64[0] == 1 && r64[1] == 1);
    ck_assert_int_eq(call2(NB_OP_DIV, &t64a, &t64b, &o64), NB_OK);
    ck_assert(r64[0] == INT64_MAX && r64[1] == INT64_MIN);
    /* pow is float-only */
    ck_assert_int_eq(call2(NB_OP_POW, &ta, &tb, &out), NB_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "pow"));
    nb_tensor_release(&ta), nb_tensor_release(&tb), nb_tensor_release(&out);
    nb_tensor_release(&t64a), nb_tensor_release(&t64b), nb_tensor_release(&o64);
}
END_TEST

START_TEST(test_int_div_by_zero)
{
    for (int t = 0; t < 2; t++) {
        nb_dtype dt = t ? NB_I64 : NB_I32;
        nb_tensor x = mk(dt, 2, S(2, 3), (const double[]){1, 2, 3, 4, 5, 6});
        nb_tensor y = mk(dt, 1, S(3), (const double[]){1, 0, 2});
        nb_tensor out;
        ck_assert_int_eq(nb_tensor_zeros(&out, dt, 2, S(2, 3)), NB_OK);
        ck_assert_int_eq(call2(NB_OP_DIV, &x, &y, &out), NB_ERR_ARG);
        ck_assert_ptr_nonnull(strstr(nb_last_error(), "div"));
        ck_assert(nb_tensor_max_abs(&out) == 0.0); /* nothing written */
        /* a zero in the dividend is fine; a float zero divisor gives inf */
        ck_assert_int_eq(call2(NB_OP_DIV, &y, &x, &out), NB_OK);
        nb_tensor_release(&x), nb_tensor_release(&y), nb_tensor_release(&out);
    }
    nb_tensor x = mk(NB_F32, 1, S(2), (const double[]){1, -1});
    nb_tensor z = mk(NB_F32, 0, NULL, (const double[]){0});
    nb_tensor out = mk_empty(NB_F32, 1, S(2));
    ck_assert_int_eq(call2(NB_OP_DIV, &x, &z, &out), NB_OK);
    ck_assert(isinf(nb_tensor_get_flat(&out, 0)) && nb_tensor_get_flat(&out, 1) < 0);
    nb_tensor_release(&x), nb_tensor_release(&z), nb_tensor_release(&out);
}
END_TEST

START_TEST(test_broadcast)
{
    const nb_dtype dts[3] = {NB_F32, NB_F64, NB_I32};
    for (int t = 0; t < 3; t++) {
        nb_dtype dt = dts[t];
        nb_tensor a31 = mk_seq(dt, 2, S(3, 1), 4, 0), b14 = mk_seq(dt, 2, S(1, 4), 3, 1);
        nb_tensor a234 = mk_seq(dt, 3, S(2, 3, 4), 5, 0), b4 = mk_seq(dt, 1, S(4), 2, 7);
        nb_tensor s0 = mk(dt, 0, NULL, (const double[]){3});
        nb_tensor s1 = mk(dt, 0, NULL, (const double[]){-2});
        nb_tensor one = mk(dt, 1, S(1), (const double[]){5});
        nb_tensor b231 = mk_seq(dt, 3, S(2, 3, 1), 3, 0.5);
        const nb_op ops[] = {NB_OP_ADD, NB_OP_SUB, NB_OP_MUL, NB_OP_MAXIMUM, NB_OP_LT, NB_OP_EQ};
        for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
            nb_op op = ops[k];
            run_check_binary(op, &a31, &b14);
            run_check_binary(op, &b14, &a31);
            run_check_binary(op, &a234, &b4);
            run_check_binary(op, &b4, &a234);
            run_check_binary(op, &s0, &a234); /* 0-d with a tensor */
            run_check_binary(op, &a234, &s1);
            run_check_binary(op, &s0, &s1); /* 0-d with 0-d */
            run_check_binary(op, &one, &a31);
            run_check_binary(op, &a234, &b231);
            run_check_binary(op, &b231, &b14); /* (2,3,1) + (1,4) -> (2,3,4) */
        }
        /* size-0 dims: (0,3) + (1,3) -> (0,3); (2,0,4) + (4,) -> (2,0,4) */
        nb_tensor e03 = mk_empty(dt, 2, S(0, 3)), b13 = mk_seq(dt, 2, S(1, 3), 1, 0);
        nb_tensor o03 = mk_empty(dt, 2, S(0, 3));
        ck_assert_int_eq(call2(NB_OP_ADD, &e03, &b13, &o03), NB_OK);
        nb_tensor e204 = mk_empty(dt, 3, S(2, 0, 4)), o204 = mk_empty(dt, 3, S(2, 0, 4));
        ck_assert_int_eq(call2(NB_OP_MUL, &e204, &b4, &o204), NB_OK);
        ck_assert_int_eq(call1(NB_OP_NEG, &e204, &o204, NULL), NB_OK);
        /* (0,3) with (2,3) does not broadcast */
        nb_tensor b23 = mk_seq(dt, 2, S(2, 3), 1, 0);
        ck_assert_int_eq(call2(NB_OP_ADD, &e03, &b23, &o03), NB_ERR_SHAPE);

        nb_tensor_release(&a31), nb_tensor_release(&b14), nb_tensor_release(&a234);
        nb_tensor_release(&b4), nb_tensor_release(&s0), nb_tensor_release(&s1);
        nb_tensor_release(&one), nb_tensor_release(&b231), nb_tensor_release(&e03);
        nb_tensor_release(&b13), nb_tensor_release(&o03), nb_tensor_release(&e204);
        nb_tensor_release(&o204), nb_tensor_release(&b23);
    }
}
END_TEST

START_TEST(test_strided_inputs)
{
    for (int t = 0; t < 2; t++) {
        nb_dtype dt = t ? NB_F64 : NB_F32;
        /* permuted (4,5,6) -> (6,4,5) plus a step-2 slice of (6,8,5) -> (6,4,5) */
        nb_tensor base = mk_seq(dt, 3, S(4, 5, 6), 3, 0), pa, sb, tmp;
        ck_assert_int_eq(nb_tensor_permute(&base, (const int[]){2, 0, 1}, &pa), NB_OK);
        nb_tensor base2 = mk_seq(dt, 3, S(6, 8, 5), 2, 1);
        ck_assert_int_eq(nb_tensor_slice(&base2, 1, 1, 8, 2, &sb), NB_OK);
        ck_assert_int_eq(sb.shape[1], 4);
        run_check_binary(NB_OP_ADD, &pa, &sb);
        run_check_binary(NB_OP_DIV, &sb, &pa);
        run_check_binary(NB_OP_GE, &pa, &sb);
        /* a strided row (1,5) of stride 2 broadcast against the permuted view */
        nb_tensor row = mk_seq(dt, 2, S(1, 10), 1, 0), srow;
        ck_assert_int_eq(nb_tensor_slice(&row, 1, 0, 10, 2, &srow), NB_OK);
        run_check_binary(NB_OP_MUL, &pa, &srow);
        /* an expanded (stride 0) input */
        nb_tensor col = mk_seq(dt, 2, S(6, 1), 1, 0), ecol;
        ck_assert_int_eq(nb_tensor_expand(&col, 2, S(6, 5), &ecol), NB_OK);
        ck_assert_int_eq(nb_tensor_slice(&pa, 1, 2, 3, 1, &tmp), NB_OK); /* (6,1,5) */
        run_check_binary(NB_OP_SUB, &tmp, &ecol);
        run_check_binary(NB_OP_SUB, &ecol, &srow);

        /* unary and cast on a permuted view */
        nb_tensor y = mk_empty(dt, 3, S(6, 4, 5));
        ck_assert_int_eq(call1(NB_OP_TANH, &pa, &y, NULL), NB_OK);
        ck_assert_int_eq(call1(NB_OP_EXP, &ecol, &tmp, NULL), NB_ERR_SHAPE);
        for (int64_t k = 0; k < 120; k++) {
            int64_t idx[3];
            unflatten(&y, k, idx);
            double x = nb_tensor_get(&pa, idx);
            ck_assert(close_enough(nb_tensor_get(&y, idx), tanh(x), rtol_of(dt), atol_of(dt)));
        }
        nb_tensor yi = mk_empty(NB_I64, 3, S(6, 4, 5));
        ck_assert_int_eq(call1(NB_OP_CAST, &sb, &yi, NULL), NB_OK);
        for (int64_t k = 0; k < 120; k++)
            ck_assert(nb_tensor_get_flat(&yi, k) == trunc(nb_tensor_get_flat(&sb, k)));

        /* a transposed (non-contiguous) output */
        nb_tensor o54 = mk_empty(dt, 2, S(5, 4)), ot;
        ck_assert_int_eq(nb_tensor_transpose(&o54, 0, 1, &ot), NB_OK);
        nb_tensor a45 = mk_seq(dt, 2, S(4, 5), 2, 0), b5 = mk_seq(dt, 1, S(5), 1, 1);
        ck_assert_int_eq(call2(NB_OP_ADD, &a45, &b5, &ot), NB_OK);
        check_binary(NB_OP_ADD, &a45, &b5, &ot);

        nb_tensor_release(&base), nb_tensor_release(&pa), nb_tensor_release(&base2);
        nb_tensor_release(&sb), nb_tensor_release(&row), nb_tensor_release(&srow);
        nb_tensor_release(&col), nb_tensor_release(&ecol), nb_tensor_release(&tmp);
        nb_tensor_release(&y), nb_tensor_release(&yi), nb_tensor_release(&o54);
        nb_tensor_release(&ot), nb_tensor_release(&a45), nb_tensor_release(&b5);
    }
}
END_TEST

/* ---- comparisons and where ---------------------------------------------------- */

START_TEST(test_comparisons)
{
    const nb_op ops[] = {NB_OP_EQ, NB_OP_NE, NB_OP_LT, NB_OP_LE, NB_OP_GT, NB_OP_GE};
    const nb_dtype dts[] = {NB_F32, NB_F64, NB_I32, NB_I64, NB_U8, NB_BOOL};
    const double xv[6] = {1, 2, 3, 0, 1, 0}, yv[3] = {2, 2, 0};
    for (size_t t = 0; t < 6; t++) {
        nb_tensor x = mk(dts[t], 2, S(2, 3), xv), y = mk(dts[t], 1, S(3), yv);
        for (size_t k = 0; k < 6; k++) {
            run_check_binary(ops[k], &x, &y);
            run_check_binary(ops[k], &y, &x);
        }
        nb_tensor_release(&x), nb_tensor_release(&y);
    }
    /* NaN: only ne is true */
    const double nv[2] = {NAN, 1};
    nb_tensor n = mk(NB_F64, 1, S(2), nv);
    for (size_t k = 0; k < 6; k++)
        run_check_binary(ops[k], &n, &n);
    /* the output must be bool */
    nb_tensor bad = mk_empty(NB_F64, 1, S(2));
    ck_assert_int_eq(call2(NB_OP_LT, &n, &n, &bad), NB_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "lt"));
    nb_tensor_release(&n), nb_tensor_release(&bad);
}
END_TEST

START_TEST(test_where)
{
    const nb_dtype dts[] = {NB_F32, NB_F64, NB_I32, NB_I64, NB_U8, NB_BOOL};
    for (size_t t = 0; t < 6; t++) {
        nb_dtype dt = dts[t];
        nb_tensor cond = mk(NB_BOOL, 2, S(2, 3), (const double[]){1, 0, 0, 1, 1, 0});
        nb_tensor a = mk(dt, 2, S(1, 3), (const double[]){1, 2, 3});
        nb_tensor b = mk(dt, 0, NULL, (const double[]){0});
        nb_tensor c2 = mk(NB_BOOL, 1, S(3), (const double[]){0, 1, 0});
        nb_tensor a23 = mk(dt, 2, S(2, 3), (const double[]){1, 1, 0, 1, 0, 1});
        nb_tensor out = mk_empty(dt, 2, S(2, 3)), ct, at;
        ck_assert_int_eq(call3(&cond, &a, &b, &out), NB_OK);
        const double want[6] = {1, 0, 0, 1, 2, 0};
        for (int i = 0; i < 6; i++)
            ck_assert(nb_tensor_get_flat(&out, i) == (dt == NB_BOOL ? want[i] != 0 : want[i]));
        /* all contiguous, same shape; then a broadcast cond */
        ck_assert_int_eq(call3(&cond, &a23, &out, &out), NB_OK);
        ck_assert_int_eq(call3(&c2, &b, &a23, &out), NB_OK);
        const double want2[6] = {1, 0, 0, 1, 0, 1};
        for (int i = 0; i < 6; i++)
            ck_assert(nb_tensor_get_flat(&out, i) == want2[i]);
        /* transposed cond (3,2)^T and transposed a */
        nb_tensor c32 = mk(NB_BOOL, 2, S(3, 2), (const double[]){1, 0, 0, 1, 1, 1});
        nb_tensor a32 = mk(dt, 2, S(3, 2), (const double[]){1, 2, 3, 4, 5, 6});
        ck_assert_int_eq(nb_tensor_transpose(&c32, 0, 1, &ct), NB_OK);
        ck_assert_int_eq(nb_tensor_transpose(&a32, 0, 1, &at), NB_OK);
        ck_assert_int_eq(call3(&ct, &at, &b, &out), NB_OK);
        const double want3[6] = {1, 0, 5, 0, 4, 6};
        for (int i = 0; i < 6; i++)
            ck_assert_msg(nb_tensor_get_flat(&out, i) == (dt == NB_BOOL ? want3[i] != 0 : want3[i]),
                          "%s where[%d] = %g", nb_dtype_name(dt), i, nb_tensor_get_flat(&out, i));
        /* errors: float cond, mismatched a/b, bad shape */
        if (dt != NB_U8 && dt != NB_BOOL)
            ck_assert_int_eq(call3(&a, &a, &b, &out), NB_ERR_DTYPE);
        nb_tensor other = mk_empty(dt == NB_F32 ? NB_F64 : NB_F32, 0, NULL);
        ck_assert_int_eq(call3(&cond, &a, &other, &out), NB_ERR_DTYPE);
        ck_assert_ptr_nonnull(strstr(nb_last_error(), "where"));
        nb_tensor o4 = mk_empty(dt, 2, S(2, 4));
        ck_assert_int_eq(call3(&cond, &a, &b, &o4), NB_ERR_SHAPE);
        nb_tensor e = mk_empty(NB_BOOL, 2, S(0, 3)), oe = mk_empty(dt, 2, S(0, 3));
        ck_assert_int_eq(call3(&e, &a, &b, &oe), NB_OK);

        nb_tensor_release(&cond), nb_tensor_release(&a), nb_tensor_release(&b);
        nb_tensor_release(&c2), nb_tensor_release(&a23), nb_tensor_release(&out);
        nb_tensor_release(&c32), nb_tensor_release(&a32), nb_tensor_release(&ct);
        nb_tensor_release(&at), nb_tensor_release(&other), nb_tensor_release(&o4);
        nb_tensor_release(&e), nb_tensor_release(&oe);
    }
}
END_TEST

/* ---- cast -------------------------------------------------------------------- */

static bool is_float(nb_dtype dt) { return dt == NB_F32 || dt == NB_F64; }

/* What casting the exact value v of dtype `from` to `to` must give. */
static double cast_expect(double v, nb_dtype from, nb_dtype to)
{
    switch (to) {
    case NB_F32: return (double)(float)v;
    case NB_F64: return v;
    case NB_BOOL: return v != 0;
    case NB_I32:
        if (is_float(from)) {
            if (isnan(v)) return 0;
            if (v >= 2147483647.0) return 2147483647.0;
            if (v <= -2147483648.0) return -2147483648.0;
            return trunc(v);
        }
        return (double)(int32_t)(uint32_t)(int64_t)v;
    case NB_I64:
        return is_float(from) && isnan(v) ? 0 : trunc(v);
    case NB_U8:
        if (is_float(from))
            return isnan(v) ? 0 : (double)(uint8_t)(uint64_t)(int64_t)trunc(v);
        return (double)(uint8_t)(uint64_t)(int64_t)v;
    default: return NAN;
    }
}

/* Every pair of the compute dtypes (f32 ... bool); the storage dtypes (i8 ...
 * bf16) have their all-pairs test in tests/test_storage_dtypes.c. */
START_TEST(test_cast_all_pairs)
{
    enum { N = 9 };
    const double fv[N] = {0, 1.5, -2.7, 300.25, -1, 1e10, NAN, -0.5, -3e9};
    const double iv[N] = {0, 1, -2, 300, -1, 100000, 7, -128, 1099511627779.0};
    const double uv[N] = {0, 1, 2, 255, 128, 7, 200, 3, 9};
    const double bv[N] = {0, 1, 1, 0, 1, 0, 0, 1, 1};
    for (int f = 0; f <= NB_BOOL; f++) {
        nb_dtype from = (nb_dtype)f;
        const double *src = is_float(from) ? fv : from == NB_U8 ? uv : from == NB_BOOL ? bv : iv;
        int n = from == NB_I32 ? N - 1 : N; /* the 2^40 value is i64 only */
        nb_tensor x = mk(from, 1, S(n), src);
        for (int t = 0; t <= NB_BOOL; t++) {
            nb_dtype to = (nb_dtype)t;
            nb_tensor y = mk_empty(to, 1, S(n));
            ck_assert_int_eq(call1(NB_OP_CAST, &x, &y, NULL), NB_OK);
            for (int i = 0; i < n; i++) {
                double v = nb_tensor_get_flat(&x, i); /* the stored source value */
                double want = cast_expect(v, from, to), got = nb_tensor_get_flat(&y, i);
                ck_assert_msg((isnan(want) && isnan(got)) || got == want,
                              "cast %s -> %s of %.17g gave %.17g, want %.17g",
                              nb_dtype_name(from), nb_dtype_name(to), v, got, want);
            }
            nb_tensor_release(&y);
        }
        nb_tensor_release(&x);
    }
    /* float -> i64 saturates */
    nb_tensor x = mk(NB_F64, 1, S(2), (const double[]){1e300, -1e300});
    nb_tensor y = mk_empty(NB_I64, 1, S(2));
    ck_assert_int_eq(call1(NB_OP_CAST, &x, &y, NULL), NB_OK);
    const int64_t *r = nb_tensor_data(&y);
    ck_assert(r[0] == INT64_MAX && r[1] == INT64_MIN);
    nb_tensor y3 = mk_empty(NB_I64, 1, S(3));
    ck_assert_int_eq(call1(NB_OP_CAST, &x, &y3, NULL), NB_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "cast"));
    nb_tensor_release(&x), nb_tensor_release(&y), nb_tensor_release(&y3);
}
END_TEST

/* ---- errors -------------------------------------------------------------------- */

START_TEST(test_errors)
{
    nb_tensor a = mk_seq(NB_F32, 2, S(3, 4), 1, 0), b = mk_seq(NB_F64, 2, S(3, 4), 1, 0);
    nb_tensor c = mk_seq(NB_F32, 1, S(5), 1, 0), out = mk_empty(NB_F32, 2, S(3, 4));
    nb_tensor o35 = mk_empty(NB_F32, 2, S(3, 5));

    ck_assert_int_eq(call2(NB_OP_ADD, &a, &b, &out), NB_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "add"));
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "f64"));
    ck_assert_int_eq(call2(NB_OP_MUL, &a, &c, &out), NB_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "mul"));
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "(3,4)"));
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "(5)"));
    ck_assert_int_eq(call2(NB_OP_SUB, &a, &a, &o35), NB_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "(3,5)"));
    ck_assert_int_eq(call2(NB_OP_ADD, &a, &a, &b), NB_ERR_DTYPE); /* output dtype */

    /* malformed calls: wrong arity, NULL input, a non-binary op */
    const nb_tensor *in1[1] = {&a};
    nb_kernel_call k = {.op = NB_OP_ADD, .n_in = 1, .in = in1, .out = &out};
    ck_assert_int_eq(nb_cpu_binary(&k), NB_ERR_ARG);
    const nb_tensor *inn[2] = {&a, NULL};
    k = (nb_kernel_call){.op = NB_OP_ADD, .n_in = 2, .in = inn, .out = &out};
    ck_assert_int_eq(nb_cpu_binary(&k), NB_ERR_ARG);
    const nb_tensor *in2[2] = {&a, &a};
    k = (nb_kernel_call){.op = NB_OP_MATMUL, .n_in = 2, .in = in2, .out = &out};
    ck_assert_int_eq(nb_cpu_binary(&k), NB_ERR_ARG);
    k = (nb_kernel_call){.op = NB_OP_ADD, .n_in = 2, .in = in2, .out = NULL};
    ck_assert_int_eq(nb_cpu_binary(&k), NB_ERR_ARG);
    ck_assert_int_eq(nb_cpu_binary(NULL), NB_ERR_ARG);
    k = (nb_kernel_call){.op = NB_OP_ADD, .n_in = 1, .in = in1, .out = &out};
    ck_assert_int_eq(nb_cpu_unary(&k), NB_ERR_ARG);
    /* an expanded (stride 0) output would race */
    nb_tensor row = mk_empty(NB_F32, 2, S(1, 4)), erow;
    ck_assert_int_eq(nb_tensor_expand(&row, 2, S(3, 4), &erow), NB_OK);
    ck_assert_int_eq(call2(NB_OP_ADD, &a, &a, &erow), NB_ERR_ARG);

    nb_tensor_release(&a), nb_tensor_release(&b), nb_tensor_release(&c);
    nb_tensor_release(&out), nb_tensor_release(&o35), nb_tensor_release(&row);
    nb_tensor_release(&erow);
}
END_TEST

/* ---- large tensors: the threaded path matches the single-threaded one -------- */

static void run_all_ways(int nthreads, const nb_tensor *a, const nb_tensor *b, nb_tensor *o_add,
                         nb_tensor *o_bc, nb_tensor *o_exp, nb_tensor *o_perm, nb_tensor *o_where,
                         const nb_tensor *bcol, const nb_tensor *pa, const nb_tensor *cond)
{
    nb_set_num_threads(nthreads);
    ck_assert_int_eq(nb_get_num_threads(), nthreads);
    ck_assert_int_eq(call2(NB_OP_ADD, a, b, o_add), NB_OK);
    ck_assert_int_eq(call2(NB_OP_MUL, a, bcol, o_bc), NB_OK);
    ck_assert_int_eq(call1(NB_OP_GELU, a, o_exp, NULL), NB_OK);
    ck_assert_int_eq(call2(NB_OP_SUB, pa, b, o_perm), NB_OK);
    ck_assert_int_eq(call3(cond, a, b, o_where), NB_OK);
}

START_TEST(test_large_threaded)
{
    const int64_t *shp = S(1000, 1000);
    nb_tensor a = mk_seq(NB_F32, 2, shp, 3, 0), b = mk_seq(NB_F32, 2, shp, 2, 1);
    nb_tensor bcol = mk_seq(NB_F32, 2, S(1000, 1), 2, 0), pa;
    ck_assert_int_eq(nb_tensor_transpose(&a, 0, 1, &pa), NB_OK);
    nb_tensor cond = mk_empty(NB_BOOL, 2, shp);
    ck_assert_int_eq(call2(NB_OP_GT, &a, &b, &cond), NB_OK);
    nb_tensor o1[5], o4[5];
    for (int i = 0; i < 5; i++) {
        o1[i] = mk_empty(NB_F32, 2, shp);
        o4[i] = mk_empty(NB_F32, 2, shp);
    }
    run_all_ways(1, &a, &b, &o1[0], &o1[1], &o1[2], &o1[3], &o1[4], &bcol, &pa, &cond);
    run_all_ways(4, &a, &b, &o4[0], &o4[1], &o4[2], &o4[3], &o4[4], &bcol, &pa, &cond);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(memcmp(nb_tensor_data(&o1[i]), nb_tensor_data(&o4[i]), 4000000) == 0,
                      "output %d differs between 1 and 4 threads", i);
    /* and they are right */
    check_binary(NB_OP_ADD, &a, &b, &o4[0]);
    check_binary(NB_OP_SUB, &pa, &b, &o4[3]);
    for (int64_t k = 0; k < 1000000; k += 997) {
        double x = nb_tensor_get_flat(&a, k), got = nb_tensor_get_flat(&o4[2], k);
        if (!close_enough(got, ref_unary(NB_OP_GELU, x, 0, 0), 1e-5, 1e-6))
            ck_abort_msg("gelu(%.9g) = %.9g", x, got);
    }
    /* integer division by zero found anywhere in a large divisor */
    nb_tensor ia = mk_seq(NB_I64, 1, S(1 << 20), 100, 0), ib = mk_seq(NB_I64, 1, S(1 << 20), 0, 3);
    nb_tensor io = mk_empty(NB_I64, 1, S(1 << 20));
    ck_assert_int_eq(call2(NB_OP_DIV, &ia, &ib, &io), NB_OK);
    ((int64_t *)nb_tensor_data(&ib))[(1 << 20) - 5] = 0;
    ck_assert_int_eq(call2(NB_OP_DIV, &ia, &ib, &io), NB_ERR_ARG);

    for (int i = 0; i < 5; i++)
        nb_tensor_release(&o1[i]), nb_tensor_release(&o4[i]);
    nb_tensor_release(&a), nb_tensor_release(&b), nb_tensor_release(&bcol);
    nb_tensor_release(&pa), nb_tensor_release(&cond), nb_tensor_release(&ia);
    nb_tensor_release(&ib), nb_tensor_release(&io);
}
END_TEST

/* ---- thread pool ------------------------------------------------------------ */

typedef struct cover_ctx {
    int64_t n, grain;
    atomic_int *hits;
    atomic_int chunks;
    atomic_int bad_chunk; /* a chunk smaller than grain (when n > grain) */
    int nested;           /* call nb_parallel_for inside each chunk */
} cover_ctx;

static void cover_inner(void *vctx, int64_t begin, int64_t end)
{
    atomic_int *hits = vctx;
    for (int64_t i = begin; i < end; i++)
        atomic_fetch_add(&hits[i], 1);
}

static void cover_fn(void *vctx, int64_t begin, int64_t end)
{
    cover_ctx *c = vctx;
    atomic_fetch_add(&c->chunks, 1);
    if (end - begin < c->grain && c->n > c->grain)
        atomic_store(&c->bad_chunk, 1);
    if (c->nested) {
        /* the pool is busy: this runs inline over the sub-range */
        atomic_int *sub = c->hits + begin;
        nb_parallel_for(end - begin, 1, cover_inner, sub);
    } else {
        cover_inner(c->hits, begin, end);
    }
}

/* Run one parallel_for and check each index was visited exactly once;
 * returns the number of chunks. */
static int cover_once(int64_t n, int64_t grain, int nested)
{
    cover_ctx c = {.n = n, .grain = grain, .nested = nested};
    c.hits = calloc((size_t)(n > 0 ? n : 1), sizeof(atomic_int));
    ck_assert_ptr_nonnull(c.hits);
    atomic_init(&c.chunks, 0);
    atomic_init(&c.bad_chunk, 0);
    nb_parallel_for(n, grain, cover_fn, &c);
    for (int64_t i = 0; i < n; i++)
        if (atomic_load(&c.hits[i]) != 1)
            ck_abort_msg("n=%lld grain=%lld: index %lld hit %d times", (long long)n,
                         (long long)grain, (long long)i, atomic_load(&c.hits[i]));
    ck_assert(!atomic_load(&c.bad_chunk));
    free(c.hits);
    return atomic_load(&c.chunks);
}

START_TEST(test_parallel_for_cover)
{
    const int64_t cases[][2] = {{0, 1},     {1, 1},       {5, 1},       {7, 3},
                                {100, 10},  {1000, 1},    {1000, 999},  {1000, 1000},
                                {1001, 1000}, {2000, 1000}, {100003, 997}, {1000000, 32768},
                                {10, 0},    {10, -5}};
    const int threads[] = {1, 2, 3, 8};
    for (int t = 0; t < 4; t++) {
        nb_set_num_threads(threads[t]);
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            int64_t n = cases[k][0], grain = cases[k][1] < 1 ? 1 : cases[k][1];
            int chunks = cover_once(n, cases[k][1], 0);
            /* one thread runs the range inline, as one chunk */
            int64_t most = threads[t] == 1 ? 1 : (int64_t)threads[t] * NB_CHUNKS_PER_THREAD;
            int64_t want = n == 0 ? 0 : n / grain < most ? n / grain : most;
            if (want < 1 && n > 0)
                want = 1;
            ck_assert_msg(chunks == want, "n=%lld grain=%lld threads=%d: %d chunks, want %lld",
                          (long long)n, (long long)grain, threads[t], chunks, (long long)want);
            cover_once(n, cases[k][1], 1);
        }
    }
    nb_threadpool_shutdown();
    nb_threadpool_shutdown(); /* twice is fine */
    ck_assert_int_eq(cover_once(100, 10, 0), 10); /* restarts after shutdown */
    nb_set_num_threads(0);                       /* back to the default */
    ck_assert_int_ge(nb_get_num_threads(), 1);
}
END_TEST

static void *concurrent_worker(void *arg)
{
    int rounds = *(int *)arg;
    for (int r = 0; r < rounds; r++)
        cover_once(20000 + r, 500, r & 1);
    return NULL;
}

START_TEST(test_parallel_for_concurrent)
{
    nb_set_num_threads(4);
    int rounds = 200;
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, concurrent_worker, &rounds), 0);
    concurrent_worker(&rounds); /* and the main thread too */
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
}
END_TEST

static void count_fn(void *vctx, int64_t begin, int64_t end)
{
    atomic_int *hits = vctx;
    for (int64_t i = begin; i < end; i++)
        atomic_fetch_add(&hits[i], 1);
}

/* A child forked while the pool has workers starts a pool of its own. */
START_TEST(test_parallel_for_after_fork)
{
    nb_set_num_threads(3);
    ck_assert_int_eq(cover_once(30000, 100, 0), 3 * NB_CHUNKS_PER_THREAD);
#if defined(__SANITIZE_THREAD__)
    return; /* ThreadSanitizer cannot start threads after a multi-threaded fork */
#endif
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        enum { N = 30000 };
        static atomic_int hits[N];
        nb_parallel_for(N, 100, count_fn, hits);
        int bad = 0;
        for (int i = 0; i < N; i++)
            bad |= atomic_load(&hits[i]) != 1;
        nb_threadpool_shutdown(); /* joins the child's own workers */
        _exit(bad); /* no leak check here: the sanitizer's thread list is the parent's */
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(cover_once(30000, 100, 0), 3 * NB_CHUNKS_PER_THREAD); /* the parent's pool still works */
}
END_TEST

typedef struct apart_ctx {
    pthread_t caller;
    int caller_cpu;
    atomic_int worker_chunks; /* chunks a worker ran */
    atomic_int shared;        /* of those, ones that started on the caller's CPU */
} apart_ctx;

static void apart_fn(void *vctx, int64_t begin, int64_t end)
{
    apart_ctx *c = vctx;
    if (!pthread_equal(pthread_self(), c->caller)) {
        atomic_fetch_add(&c->worker_chunks, 1);
        if (sched_getcpu() == c->caller_cpu)
            atomic_fetch_add(&c->shared, 1);
    }
    double t0 = nb_now_seconds(); /* 20 us a chunk, so the worker gets some */
    while (nb_now_seconds() - t0 < 20e-6 * (double)(end - begin))
        ;
}

/* The pool's worker keeps off the caller's CPU: with the caller pinned to one
 * CPU after the worker started (with the whole mask), no chunk of the
 * worker's runs there. Without the worker's narrowed affinity the two often
 * shared the CPU for good (every chunk). */
START_TEST(test_parallel_for_apart)
{
    cpu_set_t all;
    ck_assert_int_eq(sched_getaffinity(0, sizeof all, &all), 0);
    if (CPU_COUNT(&all) < 2) {
        fprintf(stderr, "SKIP parallel_for_apart: needs 2 CPUs, this process may use %d\n",
                CPU_COUNT(&all));
        return;
    }
    /* the pool counts as shared for 100 ms after a caller found it busy, as
     * test_parallel_for_concurrent's do when the tests share a process
     * (CK_FORK=no); shared, the worker keeps all its CPUs */
    usleep(150 * 1000);
    nb_set_num_threads(2);
    ck_assert_int_eq(cover_once(1000, 1, 0), 2 * NB_CHUNKS_PER_THREAD); /* the worker starts */
    apart_ctx c = {.caller = pthread_self()};
    atomic_init(&c.worker_chunks, 0);
    atomic_init(&c.shared, 0);
    for (c.caller_cpu = 0; !CPU_ISSET(c.caller_cpu, &all); c.caller_cpu++)
        ;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(c.caller_cpu, &one);
    ck_assert_int_eq(sched_setaffinity(0, sizeof one, &one), 0); /* this thread only */
    for (int r = 0; r < 200; r++)
        nb_parallel_for(8, 1, apart_fn, &c);
    ck_assert_int_eq(sched_setaffinity(0, sizeof all, &all), 0);
    ck_assert_int_gt(atomic_load(&c.worker_chunks), 0);
    ck_assert_msg(atomic_load(&c.shared) == 0,
                  "%d of the worker's %d chunks started on the caller's CPU %d",
                  atomic_load(&c.shared), atomic_load(&c.worker_chunks), c.caller_cpu);
}
END_TEST

static Suite *elementwise_suite(void)
{
    Suite *s = suite_create("kernels_elementwise");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_unary_float);
    tcase_add_test(tc, test_unary_special_values);
    tcase_add_test(tc, test_unary_int);
    tcase_add_test(tc, test_binary_float);
    tcase_add_test(tc, test_binary_int);
    tcase_add_test(tc, test_int_div_by_zero);
    tcase_add_test(tc, test_broadcast);
    tcase_add_test(tc, test_strided_inputs);
    tcase_add_test(tc, test_comparisons);
    tcase_add_test(tc, test_where);
    tcase_add_test(tc, test_cast_all_pairs);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_large_threaded);
    tcase_add_test(tc, test_parallel_for_cover);
    tcase_add_test(tc, test_parallel_for_concurrent);
    tcase_add_test(tc, test_parallel_for_after_fork);
    tcase_add_test(tc, test_parallel_for_apart);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return nb_run_suite(elementwise_suite());
}
