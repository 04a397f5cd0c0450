/* Elementwise kernels, part 2: binary ops, comparisons and where, with NumPy
 * broadcasting. The loop driver (nb_ew_plan) is in elementwise.c. The f32
 * loops are also built for AVX2 (which the AVX-512 level runs too) and
 * picked at run time (elementwise_simd.h), with the same bits. */
#include <math.h>
#include <stdint.h>

#include "kernels/cpu.h"
#include "kernels/elementwise_impl.h"
#include "kernels/elementwise_simd.h"

/* ---- binary arithmetic ---------------------------------------------------
 *
 * z = f(x, y) with x, y broadcast to the output shape:
 *   add x+y   sub x-y   mul x*y   div x/y   pow x^y (libm pow)
 *   maximum / minimum: the larger / smaller, NaN if either is NaN (PyTorch)
 * f32 and f64 for all; i32 and i64 for all but pow: add, sub, mul wrap
 * (two's complement, no UB); div truncates toward zero like C, INT_MIN / -1
 * wraps to INT_MIN, and a zero divisor fails with NB_ERR_ARG before any
 * element is written.
 */

#define DEF_BF(name, ...)                                                        \
    static inline float bf_##name##_f32(float x, float y)                        \
    {                                                                            \
        __VA_ARGS__                                                              \
    }                                                                            \
    static inline double bf_##name##_f64(double x, double y)                     \
    {                                                                            \
        __VA_ARGS__                                                              \
    }

DEF_BF(add, return x + y;)
DEF_BF(sub, return x - y;)
DEF_BF(mul, return x * y;)
DEF_BF(div, return x / y;)
DEF_BF(pow, return _Generic((x), float: powf, default: pow)(x, y);)
DEF_BF(maximum, return (x > y || x != x) ? x : y;)
DEF_BF(minimum, return (x < y || x != x) ? x : y;)

#define DEF_BI(name, ...)                                                        \
    static inline int32_t bi_##name##_i32(int32_t x, int32_t y)                  \
    {                                                                            \
        typedef int32_t T NB_EW_UNUSED;                                          \
        typedef uint32_t U NB_EW_UNUSED;                                         \
        __VA_ARGS__                                                              \
    }                                                                            \
    static inline int64_t bi_##name##_i64(int64_t x, int64_t y)                  \
    {                                                                            \
        typedef int64_t T NB_EW_UNUSED;                                          \
        typedef uint64_t U NB_EW_UNUSED;                                         \
        __VA_ARGS__                                                              \
    }

DEF_BI(add, return (T)((U)x + (U)y);)
DEF_BI(sub, return (T)((U)x - (U)y);)
DEF_BI(mul, return (T)((U)x * (U)y);)
DEF_BI(div, return y == -1 ? (T)((U)0 - (U)x) : x / y;) /* y != 0 checked first */
DEF_BI(maximum, return x > y ? x : y;)
DEF_BI(minimum, return x < y ? x : y;)

/* Comparisons: same-dtype inputs, bool (0/1 byte) output. NaN compares
 * unequal to everything, so only ne is true for it. */
#define DEF_CMP(name, OP)                                                        \
    static inline uint8_t cmp_##name##_f32(float x, float y) { return x OP y; }  \
    static inline uint8_t cmp_##name##_f64(double x, double y) { return x OP y; } \
    static inline uint8_t cmp_##name##_i32(int32_t x, int32_t y) { return x OP y; } \
    static inline uint8_t cmp_##name##_i64(int64_t x, int64_t y) { return x OP y; } \
    static inline uint8_t cmp_##name##_u8(uint8_t x, uint8_t y) { return x OP y; }

DEF_CMP(eq, ==)
DEF_CMP(ne, !=)
DEF_CMP(lt, <)
DEF_CMP(le, <=)
DEF_CMP(gt, >)
DEF_CMP(ge, >=)

/* One run: all contiguous, one side broadcast (a scalar along the run), or
 * general strides. */
#define BINARY_LOOP(TI, TO, F)                                                   \
    TO *restrict o = (TO *)p[0];                                                 \
    const TI *restrict xp = (const TI *)p[1];                                    \
    const TI *restrict yp = (const TI *)p[2];                                    \
    const int64_t so = s[0], sx = s[1], sy = s[2];                               \
    if (so == 1 && sx == 1 && sy == 1) {                                         \
        for (int64_t i = 0; i < n; i++)                                          \
            o[i] = F(xp[i], yp[i]);                                              \
    } else if (so == 1 && sx == 1 && sy == 0) {                                  \
        const TI y = yp[0];                                                      \
        for (int64_t i = 0; i < n; i++)                                          \
            o[i] = F(xp[i], y);                                                  \
    } else if (so == 1 && sx == 0 && sy == 1) {                                  \
        const TI x = xp[0];                                                      \
        for (int64_t i = 0; i < n; i++)                                          \
            o[i] = F(x, yp[i]);                                                  \
    } else {                                                                     \
        for (int64_t i = 0; i < n; i++)                                          \
            o[i * so] = F(xp[i * sx], yp[i * sy]);                               \
    }

#define DEF_BIN_LOOP(fname, TI, TO, F) DEF_BIN_LOOP_TGT(fname, TI, TO, F, )
#define DEF_BIN_LOOP_TGT(fname, TI, TO, F, TGT)                                  \
    TGT static void fname(int64_t n, char *const *p, const int64_t *s, const void *prm) \
    {                                                                            \
        BINARY_LOOP(TI, TO, F)                                                   \
    }

/* f32 loops: one build per SIMD level (elementwise_simd.h), bin_NAME_f32 the
 * baseline; F32OUT is the output type (float, or uint8_t for comparisons). */
#define DEF_F32_LEVEL(name, SFX, TGT)                                            \
    DEF_BIN_LOOP_TGT(bin_##name##_f32##SFX, float, F32OUT_##name, F32FN_##name, TGT)

#define DEF_BF_LOOPS(name)                                                       \
    NB_SIMD_EACH2(DEF_F32_LEVEL, name)                                           \
    DEF_BIN_LOOP(bin_##name##_f64, double, double, bf_##name##_f64)
#define DEF_BI_LOOPS(name)                                                       \
    DEF_BIN_LOOP(bin_##name##_i32, int32_t, int32_t, bi_##name##_i32)            \
    DEF_BIN_LOOP(bin_##name##_i64, int64_t, int64_t, bi_##name##_i64)
#define DEF_CMP_LOOPS(name)                                                      \
    NB_SIMD_EACH2(DEF_F32_LEVEL, name)                                           \
    DEF_BIN_LOOP(bin_##name##_f64, double, uint8_t, cmp_##name##_f64)            \
    DEF_BIN_LOOP(bin_##name##_i32, int32_t, uint8_t, cmp_##name##_i32)           \
    DEF_BIN_LOOP(bin_##name##_i64, int64_t, uint8_t, cmp_##name##_i64)           \
    DEF_BIN_LOOP(bin_##name##_u8, uint8_t, uint8_t, cmp_##name##_u8)

#define F32OUT_add float
#define F32OUT_sub float
#define F32OUT_mul float
#define F32OUT_div float
#define F32OUT_pow float
#define F32OUT_maximum float
#define F32OUT_minimum float
#define F32OUT_eq uint8_t
#define F32OUT_ne uint8_t
#define F32OUT_lt uint8_t
#define F32OUT_le uint8_t
#define F32OUT_gt uint8_t
#define F32OUT_ge uint8_t
#define F32FN_add bf_add_f32
#define F32FN_sub bf_sub_f32
#define F32FN_mul bf_mul_f32
#define F32FN_div bf_div_f32
#define F32FN_pow bf_pow_f32
#define F32FN_maximum bf_maximum_f32
#define F32FN_minimum bf_minimum_f32
#define F32FN_eq cmp_eq_f32
#define F32FN_ne cmp_ne_f32
#define F32FN_lt cmp_lt_f32
#define F32FN_le cmp_le_f32
#define F32FN_gt cmp_gt_f32
#define F32FN_ge cmp_ge_f32

DEF_BF_LOOPS(add)
DEF_BF_LOOPS(sub)
DEF_BF_LOOPS(mul)
DEF_BF_LOOPS(div)
DEF_BF_LOOPS(pow)
DEF_BF_LOOPS(maximum)
DEF_BF_LOOPS(minimum)
DEF_BI_LOOPS(add)
DEF_BI_LOOPS(sub)
DEF_BI_LOOPS(mul)
DEF_BI_LOOPS(div)
DEF_BI_LOOPS(maximum)
DEF_BI_LOOPS(minimum)
DEF_CMP_LOOPS(eq)
DEF_CMP_LOOPS(ne)
DEF_CMP_LOOPS(lt)
DEF_CMP_LOOPS(le)
DEF_CMP_LOOPS(gt)
DEF_CMP_LOOPS(ge)

#define ARITH_ROW(E, name)                                                       \
    [NB_OP_##E] = {[NB_F32] = bin_##name##_f32, [NB_F64] = bin_##name##_f64,     \
                   [NB_I32] = bin_##name##_i32, [NB_I64] = bin_##name##_i64}
#define CMP_ROW(E, name)                                                         \
    [NB_OP_##E] = {[NB_F32] = bin_##name##_f32, [NB_F64] = bin_##name##_f64,     \
                   [NB_I32] = bin_##name##_i32, [NB_I64] = bin_##name##_i64,     \
                   [NB_U8] = bin_##name##_u8, [NB_BOOL] = bin_##name##_u8}

static const nb_ew_inner_fn binary_table[NB_OP_COUNT][NB_DTYPE_COUNT] = {
    ARITH_ROW(ADD, add),
    ARITH_ROW(SUB, sub),
    ARITH_ROW(MUL, mul),
    ARITH_ROW(DIV, div),
    [NB_OP_POW] = {[NB_F32] = bin_pow_f32, [NB_F64] = bin_pow_f64},
    ARITH_ROW(MAXIMUM, maximum),
    ARITH_ROW(MINIMUM, minimum),
    CMP_ROW(EQ, eq),
    CMP_ROW(NE, ne),
    CMP_ROW(LT, lt),
    CMP_ROW(LE, le),
    CMP_ROW(GT, gt),
    CMP_ROW(GE, ge),
};

/* The f32 builds by SIMD level; binary_table holds the baseline ones. */
static const nb_ew_inner_fn binary_f32_simd[NB_OP_COUNT][NB_SIMD_LEVELS] = {
    [NB_OP_ADD] = NB_SIMD_ROW2(bin_add_f32),
    [NB_OP_SUB] = NB_SIMD_ROW2(bin_sub_f32),
    [NB_OP_MUL] = NB_SIMD_ROW2(bin_mul_f32),
    [NB_OP_DIV] = NB_SIMD_ROW2(bin_div_f32),
    [NB_OP_POW] = NB_SIMD_ROW2(bin_pow_f32),
    [NB_OP_MAXIMUM] = NB_SIMD_ROW2(bin_maximum_f32),
    [NB_OP_MINIMUM] = NB_SIMD_ROW2(bin_minimum_f32),
    [NB_OP_EQ] = NB_SIMD_ROW2(bin_eq_f32),
    [NB_OP_NE] = NB_SIMD_ROW2(bin_ne_f32),
    [NB_OP_LT] = NB_SIMD_ROW2(bin_lt_f32),
    [NB_OP_LE] = NB_SIMD_ROW2(bin_le_f32),
    [NB_OP_GT] = NB_SIMD_ROW2(bin_gt_f32),
    [NB_OP_GE] = NB_SIMD_ROW2(bin_ge_f32),
};

static bool is_comparison(nb_op op)
{
    return op == NB_OP_EQ || op == NB_OP_NE || op == NB_OP_LT || op == NB_OP_LE ||
           op == NB_OP_GT || op == NB_OP_GE;
}

static bool is_binary(nb_op op)
{
    return (op >= NB_OP_ADD && op <= NB_OP_MINIMUM) || is_comparison(op);
}

/* Inner function of the divisor scan: sets *(int *)prm when a zero is seen. */
#define DEF_ZERO_SCAN(S, T)                                                      \
    static void zero_scan_##S(int64_t n, char *const *p, const int64_t *s, const void *prm) \
    {                                                                            \
        const T *x = (const T *)p[0];                                            \
        int any = 0;                                                             \
        for (int64_t i = 0; i < n; i++)                                          \
            any |= x[i * s[0]] == 0;                                             \
        if (any)                                                                 \
            *(int *)prm = 1;                                                     \
    }
DEF_ZERO_SCAN(i32, int32_t)
DEF_ZERO_SCAN(i64, int64_t)

/* Whether the integer tensor t holds a zero (t non-empty). Every divisor
 * element is read when the output is non-empty, so one zero is an error. */
static bool has_zero(const nb_tensor *t)
{
    int found = 0;
    const nb_tensor *ops[1] = {t};
    nb_ew_plan pl;
    nb_ew_plan_init(&pl, 1, ops);
    nb_ew_run(&pl, t->dtype == NB_I32 ? zero_scan_i32 : zero_scan_i64, &found, INT64_MAX);
    return found != 0;
}

nb_status nb_cpu_binary(const nb_kernel_call *c)
{
    nb_status st = nb_ew_check_call(c, 2);
    if (st != NB_OK)
        return st;
    const char *name = nb_op_name(c->op);
    if (!is_binary(c->op))
        return nb_error(NB_ERR_ARG, "%s: not a binary elementwise op", name);
    const nb_tensor *x = c->in[0], *y = c->in[1];
    nb_tensor *z = c->out;
    if (x->dtype != y->dtype)
        return nb_error(NB_ERR_DTYPE, "%s: input dtypes differ: %s and %s", name,
                        nb_dtype_name(x->dtype), nb_dtype_name(y->dtype));
    nb_dtype want = is_comparison(c->op) ? NB_BOOL : x->dtype;
    if (z->dtype != want)
        return nb_error(NB_ERR_DTYPE, "%s: %s inputs give a %s output, not %s", name,
                        nb_dtype_name(x->dtype), nb_dtype_name(want), nb_dtype_name(z->dtype));
    nb_ew_inner_fn fn = binary_table[c->op][x->dtype];
    if (fn && x->dtype == NB_F32)
        fn = binary_f32_simd[c->op][nb_simd_level()];
    if (!fn)
        return nb_error(NB_ERR_DTYPE, "%s: dtype %s not supported", name,
                        nb_dtype_name(x->dtype));
    st = nb_ew_check_broadcast(c->op, 2, c->in, z);
    if (st != NB_OK)
        return st;
    if (nb_shape_numel(z->ndim, z->shape) == 0)
        return NB_OK;
    if (c->op == NB_OP_DIV && (x->dtype == NB_I32 || x->dtype == NB_I64) && has_zero(y))
        return nb_error(NB_ERR_ARG, "%s: integer division by zero (%s divisor holds a 0)", name,
                        nb_dtype_name(y->dtype));

    const nb_tensor *ops[3] = {z, x, y};
    nb_ew_plan pl;
    nb_ew_plan_init(&pl, 3, ops);
    nb_ew_run(&pl, fn, NULL, c->op == NB_OP_POW ? NB_EW_GRAIN_HEAVY : NB_EW_GRAIN);
    return NB_OK;
}

/* ---- where ---------------------------------------------------------------
 *
 * z = cond ? a : b, all three broadcast to the output shape. cond is bool
 * (u8 is accepted too: nonzero is true); a, b and z share any one dtype, and
 * elements are copied bit for bit, so the loops only care about their size.
 */

#define DEF_WHERE(S, T)                                                          \
    static void where_##S(int64_t n, char *const *p, const int64_t *s, const void *prm) \
    {                                                                            \
        T *restrict o = (T *)p[0];                                               \
        const uint8_t *restrict cp = (const uint8_t *)p[1];                      \
        const T *restrict xp = (const T *)p[2];                                  \
        const T *restrict yp = (const T *)p[3];                                  \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {                  \
            for (int64_t i = 0; i < n; i++)                                      \
                o[i] = cp[i] ? xp[i] : yp[i];                                    \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 0 && s[3] == 0) {           \
            const T x = xp[0], y = yp[0];                                        \
            for (int64_t i = 0; i < n; i++)                                      \
                o[i] = cp[i] ? x : y;                                            \
        } else {                                                                 \
            for (int64_t i = 0; i < n; i++)                                      \
                o[i * s[0]] = cp[i * s[1]] ? xp[i * s[2]] : yp[i * s[3]];        \
        }                                                                        \
    }
DEF_WHERE(8, uint8_t)
DEF_WHERE(32, uint32_t)
DEF_WHERE(64, uint64_t)

nb_status nb_cpu_where(const nb_kernel_call *c)
{
    nb_status st = nb_ew_check_call(c, 3);
    if (st != NB_OK)
        return st;
    const char *name = nb_op_name(c->op);
    const nb_tensor *cond = c->in[0], *a = c->in[1], *b = c->in[2];
    nb_tensor *z = c->out;
    if (cond->dtype != NB_BOOL && cond->dtype != NB_U8)
        return nb_error(NB_ERR_DTYPE, "%s: condition must be bool, not %s", name,
                        nb_dtype_name(cond->dtype));
    if (a->dtype != b->dtype || a->dtype != z->dtype)
        return nb_error(NB_ERR_DTYPE, "%s: a is %s, b is %s, output is %s; they must match", name,
                        nb_dtype_name(a->dtype), nb_dtype_name(b->dtype),
                        nb_dtype_name(z->dtype));
    st = nb_ew_check_broadcast(c->op, 3, c->in, z);
    if (st != NB_OK)
        return st;
    if (nb_shape_numel(z->ndim, z->shape) == 0)
        return NB_OK;

    nb_ew_inner_fn fn;
    switch (nb_dtype_size(z->dtype)) {
    case 1: fn = where_8; break;
    case 4: fn = where_32; break;
    case 8: fn = where_64; break;
    default:
        return nb_error(NB_ERR_DTYPE, "%s: dtype %s not supported", name, nb_dtype_name(z->dtype));
    }
    const nb_tensor *ops[4] = {z, cond, a, b};
    nb_ew_plan pl;
    nb_ew_plan_init(&pl, 4, ops);
    nb_ew_run(&pl, fn, NULL, NB_EW_GRAIN);
    return NB_OK;
}
