/* The run-time SIMD builds of the f32 elementwise, softmax and norm kernels
 * (kernels/elementwise_simd.h): every level this CPU supports (AVX2,
 * AVX-512) must give exactly the bits of the baseline build. Each check runs
 * one kernel call at the baseline level (nb_simd_force), then at each wider
 * level into an output pre-filled with garbage, and compares the outputs bit
 * for bit (NaN matching any NaN, see first_difference): random data with
 * NaN (several payloads and signs), +-Inf, +-0, subnormals and overflowing
 * values mixed in, or of a wide range of magnitudes; odd sizes (1, 15, 17,
 * 1000003 elements), misaligned and strided views, broadcasting shapes, and
 * norm rows of 1 to 9 blocks (which the builds sum 1, 2 or 4 side by side).
 * Also: NABLA_SIMD=base / avx2 / avx512 as read by a fresh process. */
#include <check.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "kernels/cpu.h"
#include "kernels/elementwise_simd.h"
#include "kernels/norm_params.h"
#include "kernels/ops.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define BIG 1000003

/* ---- data ------------------------------------------------------------------ */

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}


static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Values every loop must treat alike at every width. */
static float special(int i)
{
    switch (i % 24) {
    case 0: return NAN;
    case 1: return -NAN;
    case 2: return u2f(0x7fc12345u); /* a NaN with a payload */
    case 3: return u2f(0xff800001u); /* a signalling NaN, negative */
    case 4: return INFINITY;
    case 5: return -INFINITY;
    case 6: return 0.0f;
    case 7: return -0.0f;
    case 8: return 1e-40f;  /* subnormal */
    case 9: return -3e-39f; /* subnormal */
    case 10: return u2f(1); /* the smallest subnormal */
    case 11: return FLT_MIN;
    case 12: return -FLT_MIN;
    case 13: return FLT_MAX;
    case 14: return -FLT_MAX;
    case 15: return 88.8f; /* expf overflows */
    case 16: return -104.0f;
    case 17: return 1.0f;
    case 18: return -1.0f;
    case 19: return 0.5f;
    case 20: return 20.0f;
    case 21: return -20.0f;
    case 22: return 1e30f;
    default: return -1e-30f;
    }
}

/* WIDE for `every`: runs of values of one magnitude, from 1e-10 to 1e10, so
 * that sums in double round and depend on their order */
#define WIDE (-1)

/* n floats: N(shift, scale^2), with a special value at about one place in
 * `every` (never when every is 0), or (every == WIDE) N(0, scale^2) times
 * 10^u, u uniform in [-10, 10) and drawn anew every 1 to 64 elements. */
static void fill(nb_rng *r, float *d, int64_t n, double scale, double shift, int every)
{
    double mag = 1;
    for (int64_t i = 0, next = 0; i < n; i++) {
        if (every == WIDE && i == next) {
            mag = pow(10.0, nb_rng_uniform(r) * 20 - 10);
            next = i + 1 + (int64_t)nb_rng_below(r, 64);
        }
        if (every == WIDE)
            d[i] = (float)(nb_rng_normal(r) * scale * mag);
        else if (every && nb_rng_below(r, (uint64_t)every) == 0)
            d[i] = special((int)nb_rng_below(r, 24));
        else
            d[i] = (float)(nb_rng_normal(r) * scale + shift);
    }
}

static nb_tensor mk(nb_rng *r, int ndim, const int64_t *shape, double scale, double shift,
                    int every)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, NB_F32, ndim, shape), NB_OK);
    fill(r, nb_tensor_data(&t), nb_tensor_numel(&t), scale, shift, every);
    return t;
}

static nb_tensor mk_empty(nb_dtype dt, int ndim, const int64_t *shape)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, dt, ndim, shape), NB_OK);
    return t;
}

/* ---- the comparison -------------------------------------------------------- */

typedef void (*run_fn)(const void *ctx, nb_tensor *const *outs);

static size_t nbytes(const nb_tensor *t)
{
    return (size_t)nb_tensor_numel(t) * nb_dtype_size(t->dtype);
}

/* The first element where t differs from the bytes at base, or -1. Bit for
 * bit, except that two NaNs match whatever their sign and payload: when an
 * operation meets two different NaNs (NaN + -NaN, or x * f(x) for a NaN x),
 * x86 returns its first operand's, and the compiler may order the operands of
 * a commutative operation differently in each build (IEEE 754 leaves the
 * choice open). A NaN against a number, or -0 against +0, is a difference. */
static int64_t first_difference(const void *base, const nb_tensor *t)
{
    const void *got = nb_tensor_data(t);
    int64_t n = nb_tensor_numel(t);
    if (memcmp(base, got, nbytes(t)) == 0)
        return -1;
    if (t->dtype != NB_F32) {
        const unsigned char *a = base, *b = got;
        int64_t i = 0;
        while (a[i] == b[i])
            i++;
        return i / (int64_t)nb_dtype_size(t->dtype);
    }
    const float *a = base, *b = got;
    for (int64_t i = 0; i < n; i++)
        if (f2u(a[i]) != f2u(b[i]) && !(isnan(a[i]) && isnan(b[i])))
            return i;
    return -1;
}

/* Run f at the baseline level, then at every wider level the CPU has (each
 * time into outputs filled with 0xA5 bytes), and require the same bits
 * (first_difference). */
static void check_levels(const char *what, run_fn f, const void *ctx, nb_tensor *const *outs,
                         int nout)
{
    void *base[4];
    ck_assert_int_le(nout, 4);
    ck_assert_int_eq(nb_simd_force(NB_SIMD_BASE), NB_SIMD_BASE);
    for (int k = 0; k < nout; k++)
        memset(nb_tensor_data(outs[k]), 0xA5, nbytes(outs[k]));
    f(ctx, outs);
    for (int k = 0; k < nout; k++) {
        base[k] = malloc(nbytes(outs[k]) + 1);
        ck_assert_ptr_nonnull(base[k]);
        memcpy(base[k], nb_tensor_data(outs[k]), nbytes(outs[k]));
    }
    for (int level = NB_SIMD_BASE + 1; level <= nb_simd_max_level(); level++) {
        ck_assert_int_eq(nb_simd_force(level), level);
        ck_assert_int_eq(nb_simd_level(), level);
        for (int k = 0; k < nout; k++)
            memset(nb_tensor_data(outs[k]), 0xA5, nbytes(outs[k]));
        f(ctx, outs);
        for (int k = 0; k < nout; k++) {
            int64_t e = first_difference(base[k], outs[k]);
            if (e < 0)
                continue;
            uint32_t va = 0, vb = 0;
            size_t es = nb_dtype_size(outs[k]->dtype);
            memcpy(&va, (const char *)base[k] + e * (int64_t)es, es);
            memcpy(&vb, (const char *)nb_tensor_data(outs[k]) + e * (int64_t)es, es);
            nb_simd_force(-1);
            ck_abort_msg("%s: output %d element %" PRId64 " of %" PRId64 ": %s gives 0x%08" PRIx32
                         ", base 0x%08" PRIx32, what, k, e, nb_tensor_numel(outs[k]),
                         nb_simd_name(level), vb, va);
        }
    }
    for (int k = 0; k < nout; k++)
        free(base[k]);
    nb_simd_force(-1);
}

/* ---- unary ----------------------------------------------------------------- */

typedef struct un_ctx {
    nb_op op;
    const nb_tensor *x;
    const nb_scalar_params *p;
} un_ctx;

static void run_unary(const void *vc, nb_tensor *const *outs)
{
    const un_ctx *c = vc;
    const nb_tensor *in[1] = {c->x};
    nb_kernel_call k = {.op = c->op, .n_in = 1, .in = in, .out = outs[0], .params = c->p};
    ck_assert_msg(nb_cpu_unary(&k) == NB_OK, "%s: %s", nb_op_name(c->op), nb_last_error());
}

static const nb_op unary_ops[] = {
    NB_OP_NEG,   NB_OP_ABS,   NB_OP_SIGN,  NB_OP_EXP,       NB_OP_LOG,        NB_OP_SQRT,
    NB_OP_RSQRT, NB_OP_SQUARE, NB_OP_RECIPROCAL, NB_OP_ERF, NB_OP_RELU,       NB_OP_LEAKY_RELU,
    NB_OP_ELU,   NB_OP_SIGMOID, NB_OP_TANH, NB_OP_GELU,     NB_OP_GELU_TANH,  NB_OP_SILU,
    NB_OP_SOFTPLUS, NB_OP_CLIP,
};
#define N_UNARY ((int)(sizeof unary_ops / sizeof unary_ops[0]))

/* The parameter sets to try for op (NULL: PyTorch's defaults). */
static int unary_params(nb_op op, const nb_scalar_params **out)
{
    static const nb_scalar_params leaky = {0.2, 0}, elu = {0.7, 0}, sp = {2.0, 5.0};
    static const nb_scalar_params clip = {-0.5, 0.75}, clip_nan = {NAN, 1.0},
                                  clip_inf = {-INFINITY, 0.0};
    switch (op) {
    case NB_OP_LEAKY_RELU: out[0] = NULL; out[1] = &leaky; return 2;
    case NB_OP_ELU: out[0] = NULL; out[1] = &elu; return 2;
    case NB_OP_SOFTPLUS: out[0] = NULL; out[1] = &sp; return 2;
    case NB_OP_CLIP: out[0] = &clip; out[1] = &clip_nan; out[2] = &clip_inf; return 3;
    default: out[0] = NULL; return 1;
    }
}

static void check_unary_on(const char *label, const nb_tensor *x)
{
    nb_tensor y = mk_empty(NB_F32, x->ndim, x->shape);
    nb_tensor *outs[1] = {&y};
    for (int i = 0; i < N_UNARY; i++) {
        const nb_scalar_params *ps[3];
        int np = unary_params(unary_ops[i], ps);
        for (int j = 0; j < np; j++) {
            char what[128];
            snprintf(what, sizeof what, "%s %s (params %d)", nb_op_name(unary_ops[i]), label, j);
            un_ctx c = {unary_ops[i], x, ps[j]};
            check_levels(what, run_unary, &c, outs, 1);
        }
    }
    nb_tensor_release(&y);
}

START_TEST(unary_sizes)
{
    static const int64_t sizes[] = {1, 2, 15, 16, 17, 31, 33, 64, 255, 1000, BIG};
    nb_rng r;
    nb_rng_init(&r, 11);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        /* wide values (exp/softplus overflow, erf/tanh saturate) and specials */
        nb_tensor x = mk(&r, 1, S(sizes[s]), 6.0, 0.0, 7);
        char label[64];
        snprintf(label, sizeof label, "(%" PRId64 ")", sizes[s]);
        check_unary_on(label, &x);
        nb_tensor_release(&x);
    }
}
END_TEST

/* Every special value, and the neighbourhood of 0, in one tensor. */
START_TEST(unary_specials)
{
    nb_tensor x = mk_empty(NB_F32, 1, S(24 * 5 + 3));
    float *d = nb_tensor_data(&x);
    for (int i = 0; i < 24 * 5 + 3; i++)
        d[i] = i < 24 * 4 ? special(i) : (float)(i - 108) * 0.03125f;
    check_unary_on("specials", &x);
    nb_tensor_release(&x);
}
END_TEST

/* A misaligned slice, a transposed view (strided runs) and an expanded view
 * (a stride-0 input). */
START_TEST(unary_views)
{
    nb_rng r;
    nb_rng_init(&r, 12);
    nb_tensor big = mk(&r, 1, S(1 + 4099), 2.0, 0.5, 11), x;
    ck_assert_int_eq(nb_tensor_slice(&big, 0, 1, 1 + 4099, 1, &x), NB_OK);
    check_unary_on("slice at 1", &x);
    nb_tensor_release(&x);

    nb_tensor m = mk(&r, 2, S(37, 29), 2.0, 0.0, 13);
    ck_assert_int_eq(nb_tensor_transpose(&m, 0, 1, &x), NB_OK);
    check_unary_on("transposed (29,37)", &x);
    nb_tensor_release(&x);

    nb_tensor row = mk(&r, 2, S(1, 45), 2.0, 0.0, 5);
    ck_assert_int_eq(nb_tensor_expand(&row, 2, S(19, 45), &x), NB_OK);
    nb_tensor xt;
    ck_assert_int_eq(nb_tensor_transpose(&x, 0, 1, &xt), NB_OK);
    check_unary_on("expanded (45,19)", &xt);
    nb_tensor_release(&xt);
    nb_tensor_release(&x);
    nb_tensor_release(&row);
    nb_tensor_release(&m);
    nb_tensor_release(&big);
}
END_TEST

/* ---- binary ---------------------------------------------------------------- */

typedef struct bin_ctx {
    nb_op op;
    const nb_tensor *a, *b;
} bin_ctx;

static void run_binary(const void *vc, nb_tensor *const *outs)
{
    const bin_ctx *c = vc;
    const nb_tensor *in[2] = {c->a, c->b};
    nb_kernel_call k = {.op = c->op, .n_in = 2, .in = in, .out = outs[0]};
    ck_assert_msg(nb_cpu_binary(&k) == NB_OK, "%s: %s", nb_op_name(c->op), nb_last_error());
}

static const nb_op binary_ops[] = {
    NB_OP_ADD, NB_OP_SUB, NB_OP_MUL, NB_OP_DIV, NB_OP_POW, NB_OP_MAXIMUM, NB_OP_MINIMUM,
    NB_OP_EQ,  NB_OP_NE,  NB_OP_LT,  NB_OP_LE,  NB_OP_GT,  NB_OP_GE,
};

static void check_binary_on(const char *label, const nb_tensor *a, const nb_tensor *b,
                            int ndim, const int64_t *shape)
{
    nb_tensor zf = mk_empty(NB_F32, ndim, shape), zb = mk_empty(NB_BOOL, ndim, shape);
    for (size_t i = 0; i < sizeof binary_ops / sizeof binary_ops[0]; i++) {
        nb_op op = binary_ops[i];
        bool cmp = op >= NB_OP_EQ && op <= NB_OP_GE;
        nb_tensor *outs[1] = {cmp ? &zb : &zf};
        char what[128];
        snprintf(what, sizeof what, "%s %s", nb_op_name(op), label);
        bin_ctx c = {op, a, b};
        check_levels(what, run_binary, &c, outs, 1);
    }
    nb_tensor_release(&zf);
    nb_tensor_release(&zb);
}

/* (shape of a, shape of b) -> their broadcast */
typedef struct bshape {
    int na, nb, nz;
    int64_t a[4], b[4], z[4];
} bshape;

START_TEST(binary_broadcast)
{
    static const bshape cases[] = {
        {1, 1, 1, {1}, {1}, {1}},                              /* one element */
        {1, 1, 1, {15}, {15}, {15}},                           /* same shape */
        {1, 1, 1, {17}, {17}, {17}},
        {1, 1, 1, {BIG}, {BIG}, {BIG}},
        {1, 0, 1, {17}, {0}, {17}},                            /* tensor op scalar */
        {0, 1, 1, {0}, {BIG}, {BIG}},                          /* scalar op tensor */
        {1, 1, 1, {1}, {1000}, {1000}},                        /* (1) op (n) */
        {2, 1, 2, {33, 17}, {17}, {33, 17}},                   /* per row (bias) */
        {2, 2, 2, {7, 1000}, {1, 1000}, {7, 1000}},
        {4, 3, 4, {2, 5, 7, 9}, {5, 1, 1}, {2, 5, 7, 9}},      /* per channel */
        {3, 3, 3, {4, 16, 64}, {1, 16, 1}, {4, 16, 64}},
        {2, 2, 2, {31, 1}, {1, 19}, {31, 19}},                 /* outer */
        {3, 2, 3, {3, 1, 15}, {4, 1}, {3, 4, 15}},             /* mixed */
    };
    nb_rng r;
    nb_rng_init(&r, 21);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bshape *c = &cases[i];
        nb_tensor a = mk(&r, c->na, c->a, 3.0, 0.0, 9), b = mk(&r, c->nb, c->b, 3.0, 0.0, 9);
        char label[64];
        snprintf(label, sizeof label, "case %zu", i);
        check_binary_on(label, &a, &b, c->nz, c->z);
        check_binary_on(label, &b, &a, c->nz, c->z);
        nb_tensor_release(&a);
        nb_tensor_release(&b);
    }
}
END_TEST

/* Specials against specials: every pair of the 24 values. */
START_TEST(binary_specials)
{
    nb_tensor a = mk_empty(NB_F32, 2, S(24, 1)), b = mk_empty(NB_F32, 1, S(24));
    for (int i = 0; i < 24; i++) {
        ((float *)nb_tensor_data(&a))[i] = special(i);
        ((float *)nb_tensor_data(&b))[i] = special(i);
    }
    check_binary_on("specials (24,1) x (24)", &a, &b, 2, S(24, 24));
    nb_tensor_release(&a);
    nb_tensor_release(&b);
}
END_TEST

/* Misaligned, transposed and expanded operands. */
START_TEST(binary_views)
{
    nb_rng r;
    nb_rng_init(&r, 22);
    nb_tensor big = mk(&r, 1, S(3 + 1027), 2.0, 0.0, 17), a, b;
    ck_assert_int_eq(nb_tensor_slice(&big, 0, 1, 1 + 1027, 1, &a), NB_OK);
    ck_assert_int_eq(nb_tensor_slice(&big, 0, 3, 3 + 1027, 1, &b), NB_OK);
    check_binary_on("slices at 1 and 3", &a, &b, 1, S(1027));
    nb_tensor_release(&a);
    nb_tensor_release(&b);

    nb_tensor m = mk(&r, 2, S(23, 41), 2.0, 0.0, 17), n = mk(&r, 2, S(41, 23), 2.0, 0.0, 17);
    ck_assert_int_eq(nb_tensor_transpose(&m, 0, 1, &a), NB_OK);
    check_binary_on("transposed + contiguous", &a, &n, 2, S(41, 23));
    nb_tensor_release(&a);

    nb_tensor col = mk(&r, 2, S(41, 1), 2.0, 0.0, 0);
    ck_assert_int_eq(nb_tensor_expand(&col, 2, S(41, 23), &a), NB_OK);
    check_binary_on("expanded + contiguous", &a, &n, 2, S(41, 23));
    nb_tensor_release(&a);
    nb_tensor_release(&col);
    nb_tensor_release(&m);
    nb_tensor_release(&n);
    nb_tensor_release(&big);
}
END_TEST

/* ---- softmax --------------------------------------------------------------- */

typedef struct sm_ctx {
    nb_op op;
    const nb_tensor *x;
    int axis;
} sm_ctx;

static void run_softmax(const void *vc, nb_tensor *const *outs)
{
    const sm_ctx *c = vc;
    const nb_tensor *in[1] = {c->x};
    nb_axis_params p = {c->axis};
    nb_kernel_call k = {.op = c->op, .n_in = 1, .in = in, .out = outs[0], .params = &p};
    ck_assert_msg(nb_cpu_softmax(&k) == NB_OK, "%s: %s", nb_op_name(c->op), nb_last_error());
}

static void check_softmax_on(const char *label, const nb_tensor *x, int axis)
{
    nb_tensor y = mk_empty(NB_F32, x->ndim, x->shape);
    nb_tensor *outs[1] = {&y};
    for (int lg = 0; lg < 2; lg++) {
        sm_ctx c = {lg ? NB_OP_LOG_SOFTMAX : NB_OP_SOFTMAX, x, axis};
        char what[128];
        snprintf(what, sizeof what, "%s %s axis %d", nb_op_name(c.op), label, axis);
        check_levels(what, run_softmax, &c, outs, 1);
    }
    nb_tensor_release(&y);
}

START_TEST(softmax_rows)
{
    /* (rows, A), softmax over A: contiguous rows, BLOCK = 256 boundaries */
    static const int64_t shapes[][2] = {{1, 1},   {3, 15},  {5, 17},   {7, 16},  {2, 255},
                                        {2, 256}, {2, 257}, {9, 1000}, {1, BIG}, {40, 513}};
    nb_rng r;
    nb_rng_init(&r, 31);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char label[64];
        snprintf(label, sizeof label, "(%" PRId64 ",%" PRId64 ")", shapes[i][0], shapes[i][1]);
        nb_tensor x = mk(&r, 2, shapes[i], 4.0, 1.0, 0);
        check_softmax_on(label, &x, 1);
        nb_tensor_release(&x);
    }
}
END_TEST

START_TEST(softmax_columns)
{
    /* (outer, A, inner), softmax over A: column tiles of STILE = 64 */
    static const int64_t shapes[][3] = {{2, 5, 3},  {1, 17, 15}, {3, 9, 64},
                                        {2, 33, 65}, {2, 7, 130}, {4, 1000, 17}};
    nb_rng r;
    nb_rng_init(&r, 32);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char label[64];
        snprintf(label, sizeof label, "(%" PRId64 ",%" PRId64 ",%" PRId64 ")", shapes[i][0],
                 shapes[i][1], shapes[i][2]);
        nb_tensor x = mk(&r, 3, shapes[i], 4.0, -2.0, 0);
        check_softmax_on(label, &x, 1);
        check_softmax_on(label, &x, 0);
        nb_tensor_release(&x);
    }
}
END_TEST

/* Rows holding NaN, +-Inf, -0, subnormals; a row of all -inf; huge values
 * (exp underflow to 0 for most of the row). */
START_TEST(softmax_specials)
{
    nb_rng r;
    nb_rng_init(&r, 33);
    nb_tensor x = mk(&r, 2, S(64, 37), 30.0, 0.0, 5);
    float *d = nb_tensor_data(&x);
    for (int i = 0; i < 37; i++)
        d[5 * 37 + i] = -INFINITY;
    for (int i = 0; i < 37; i++)
        d[6 * 37 + i] = special(6 + i % 6); /* zeros and subnormals */
    check_softmax_on("specials", &x, 1);
    check_softmax_on("specials", &x, 0);
    nb_tensor_release(&x);
}
END_TEST

/* ---- norms ----------------------------------------------------------------- */

typedef struct norm_ctx {
    nb_op op;
    nb_norm_params p;
    int n_in;
    const nb_tensor *in[6];
    /* BATCH_NORM training: the running statistics to restore before each
     * run (outs[1], outs[2] are updated in place and compared too) */
    const float *rm0, *rv0;
} norm_ctx;

static void run_norm(const void *vc, nb_tensor *const *outs)
{
    const norm_ctx *c = vc;
    const nb_tensor *in[6];
    memcpy(in, c->in, sizeof in);
    if (c->rm0) {
        memcpy(nb_tensor_data(outs[1]), c->rm0, nbytes(outs[1]));
        memcpy(nb_tensor_data(outs[2]), c->rv0, nbytes(outs[2]));
        in[c->n_in - 2] = outs[1];
        in[c->n_in - 1] = outs[2];
    }
    nb_kernel_call k = {.op = c->op, .n_in = c->n_in, .in = in, .out = outs[0], .params = &c->p};
    ck_assert_msg(nb_cpu_norm(&k) == NB_OK, "%s: %s", nb_op_name(c->op), nb_last_error());
}

static void check_norm(const char *label, norm_ctx *c, int out_ndim, const int64_t *out_shape)
{
    nb_tensor y = mk_empty(NB_F32, out_ndim, out_shape);
    char what[160];
    snprintf(what, sizeof what, "%s %s", nb_op_name(c->op), label);
    if (c->rm0) {
        int64_t C = c->in[0]->shape[1];
        nb_tensor rm = mk_empty(NB_F32, 1, &C), rv = mk_empty(NB_F32, 1, &C);
        nb_tensor *outs[3] = {&y, &rm, &rv};
        check_levels(what, run_norm, c, outs, 3);
        nb_tensor_release(&rm);
        nb_tensor_release(&rv);
    } else {
        nb_tensor *outs[1] = {&y};
        check_levels(what, run_norm, c, outs, 1);
    }
    nb_tensor_release(&y);
}

/* Batch norm forward (training with running statistics, eval), its affine
 * gradient and its input gradient (training, eval) on x of shape (ndim, sh). */
static void check_batch_norm(nb_rng *r, int ndim, const int64_t *sh, int every)
{
    int64_t C = sh[1];
    char label[96], s[64];
    snprintf(label, sizeof label, "x %s", nb_shape_str(ndim, sh, s, sizeof s));
    nb_tensor x = mk(r, ndim, sh, 2.0, 5.0, every), gy = mk(r, ndim, sh, 1.0, 0.1, every);
    nb_tensor gam = mk(r, 1, &C, 0.5, 1.0, 0), bet = mk(r, 1, &C, 0.5, 0.0, 0);
    nb_tensor rm = mk(r, 1, &C, 0.5, 5.0, 0), rv = mk(r, 1, &C, 0.2, 4.0, 0);
    float *v = nb_tensor_data(&rv);
    for (int64_t i = 0; i < C; i++)
        v[i] = fabsf(v[i]);

    /* training forward, running statistics updated */
    norm_ctx c = {.op = NB_OP_BATCH_NORM, .n_in = 5, .in = {&x, &gam, &bet, &rm, &rv},
                  .p = {.eps = 1e-5, .momentum = 0.1, .training = 1, .has_gamma = 1,
                        .has_beta = 1, .has_running = 1},
                  .rm0 = nb_tensor_data(&rm), .rv0 = nb_tensor_data(&rv)};
    check_norm(label, &c, ndim, sh);
    /* eval forward, no beta */
    c = (norm_ctx){.op = NB_OP_BATCH_NORM, .n_in = 4, .in = {&x, &gam, &rm, &rv},
                   .p = {.eps = 1e-3, .training = 0, .has_gamma = 1, .has_running = 1}};
    check_norm(label, &c, ndim, sh);

    /* affine gradient (5, C), training and eval */
    nb_tensor gaff = mk_empty(NB_F32, 2, S(5, C));
    c = (norm_ctx){.op = NB_OP_BATCH_NORM_GRAD_AFFINE, .n_in = 2, .in = {&x, &gy},
                   .p = {.eps = 1e-5, .training = 1}};
    check_norm(label, &c, 2, S(5, C));
    nb_tensor *go[1] = {&gaff};
    nb_simd_force(NB_SIMD_BASE);
    run_norm(&c, go);
    nb_simd_force(-1);
    c = (norm_ctx){.op = NB_OP_BATCH_NORM_GRAD_AFFINE, .n_in = 4, .in = {&x, &gy, &rm, &rv},
                   .p = {.eps = 1e-5, .training = 0}};
    check_norm(label, &c, 2, S(5, C));

    /* input gradient, training (from gaff) and eval */
    c = (norm_ctx){.op = NB_OP_BATCH_NORM_GRAD, .n_in = 4, .in = {&x, &gy, &gaff, &gam},
                   .p = {.eps = 1e-5, .training = 1, .has_gamma = 1}};
    check_norm(label, &c, ndim, sh);
    c = (norm_ctx){.op = NB_OP_BATCH_NORM_GRAD, .n_in = 4, .in = {&x, &gy, &rm, &rv},
                   .p = {.eps = 1e-5, .training = 0}};
    check_norm(label, &c, ndim, sh);

    nb_tensor *all[] = {&x, &gy, &gam, &bet, &rm, &rv, &gaff};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        nb_tensor_release(all[i]);
}

START_TEST(batch_norm)
{
    nb_rng r;
    nb_rng_init(&r, 41);
    check_batch_norm(&r, 2, S(16, 5), 0);         /* (N, C): one element a row */
    check_batch_norm(&r, 4, S(2, 3, 5, 7), 0);    /* spatial 35 */
    check_batch_norm(&r, 3, S(4, 6, 17), 0);
    check_batch_norm(&r, 3, S(9, 3, 13), 0);      /* short rows summed side by side */
    check_batch_norm(&r, 4, S(11, 2, 14, 14), 0);
    check_batch_norm(&r, 3, S(2, 3, 1297), 0);    /* 5 blocks + 17 a row */
    check_batch_norm(&r, 3, S(3, 2, 333335), 0);  /* 2 channels of ~1M / 2 */
    check_batch_norm(&r, 4, S(2, 4, 9, 9), 23);   /* with specials */
    check_batch_norm(&r, 3, S(9, 3, 13), WIDE);   /* sums that round in double */
    check_batch_norm(&r, 3, S(2, 3, 1297), WIDE);
}
END_TEST

/* Layer or RMS norm forward, input and affine gradients over the last dim D
 * of x (R, D); with and without gamma/beta. */
static void check_row_norm(nb_rng *r, int rms, int64_t R, int64_t D, int every)
{
    char label[96];
    snprintf(label, sizeof label, "x (%" PRId64 ",%" PRId64 ")", R, D);
    nb_op fwd = rms ? NB_OP_RMS_NORM : NB_OP_LAYER_NORM;
    nb_op grad = rms ? NB_OP_RMS_NORM_GRAD : NB_OP_LAYER_NORM_GRAD;
    nb_op aff = rms ? NB_OP_RMS_NORM_GRAD_AFFINE : NB_OP_LAYER_NORM_GRAD_AFFINE;
    nb_tensor x = mk(r, 2, S(R, D), 1.5, rms ? 0.0 : -3.0, every);
    nb_tensor gy = mk(r, 2, S(R, D), 1.0, 0.0, every);
    nb_tensor gam = mk(r, 1, &D, 0.5, 1.0, 0), bet = mk(r, 1, &D, 0.5, 0.0, 0);

    norm_ctx c = {.op = fwd, .n_in = rms ? 2 : 3, .in = {&x, &gam, &bet},
                  .p = {.eps = 1e-5, .naxes = 1, .has_gamma = 1, .has_beta = !rms}};
    check_norm(label, &c, 2, S(R, D));
    c = (norm_ctx){.op = fwd, .n_in = 1, .in = {&x}, .p = {.eps = 1e-6, .naxes = 1}};
    check_norm(label, &c, 2, S(R, D));
    if (!rms) { /* gamma alone, beta alone */
        c = (norm_ctx){.op = fwd, .n_in = 2, .in = {&x, &gam},
                       .p = {.eps = 1e-5, .naxes = 1, .has_gamma = 1}};
        check_norm(label, &c, 2, S(R, D));
        c = (norm_ctx){.op = fwd, .n_in = 2, .in = {&x, &bet},
                       .p = {.eps = 1e-5, .naxes = 1, .has_beta = 1}};
        check_norm(label, &c, 2, S(R, D));
    }
    c = (norm_ctx){.op = grad, .n_in = 3, .in = {&x, &gy, &gam},
                   .p = {.eps = 1e-5, .naxes = 1, .has_gamma = 1}};
    check_norm(label, &c, 2, S(R, D));
    c = (norm_ctx){.op = grad, .n_in = 2, .in = {&x, &gy}, .p = {.eps = 1e-5, .naxes = 1}};
    check_norm(label, &c, 2, S(R, D));
    c = (norm_ctx){.op = aff, .n_in = 2, .in = {&x, &gy}, .p = {.eps = 1e-5, .naxes = 1}};
    if (rms)
        check_norm(label, &c, 1, &D);
    else
        check_norm(label, &c, 2, S(2, D));

    nb_tensor *all[] = {&x, &gy, &gam, &bet};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        nb_tensor_release(all[i]);
}

START_TEST(layer_norm)
{
    /* rows of 1 to 9 blocks of 256 (summed 1, 2 or 4 side by side by the
     * builds), partial blocks, and one of 1000003 */
    static const int64_t rd[][2] = {{1, 1},   {3, 15},   {5, 17},   {4, 64},   {3, 255},
                                    {2, 257}, {70, 33},  {3, 512},  {9, 1000}, {2, 1297},
                                    {2, 2321}, {1, BIG}};
    nb_rng r;
    nb_rng_init(&r, 51);
    for (size_t i = 0; i < sizeof rd / sizeof rd[0]; i++)
        check_row_norm(&r, 0, rd[i][0], rd[i][1], 0);
    check_row_norm(&r, 0, 6, 77, 19); /* with specials */
    for (size_t i = 0; i < sizeof rd / sizeof rd[0] - 1; i++)
        check_row_norm(&r, 0, rd[i][0], rd[i][1], WIDE);
}
END_TEST

START_TEST(rms_norm)
{
    static const int64_t rd[][2] = {{1, 1},    {3, 15},   {5, 17}, {2, 257},
                                    {9, 1000}, {2, 1297}, {1, BIG}};
    nb_rng r;
    nb_rng_init(&r, 52);
    for (size_t i = 0; i < sizeof rd / sizeof rd[0]; i++)
        check_row_norm(&r, 1, rd[i][0], rd[i][1], 0);
    check_row_norm(&r, 1, 6, 77, 19);
    check_row_norm(&r, 1, 2, 2321, WIDE);
}
END_TEST

/* Group norm forward, input and affine gradients on x (N, C, S). */
static void check_group_norm(nb_rng *r, int64_t N, int64_t C, int64_t Sz, int64_t G, int every)
{
    char label[96];
    snprintf(label, sizeof label, "x (%" PRId64 ",%" PRId64 ",%" PRId64 ") groups %" PRId64, N,
             C, Sz, G);
    nb_tensor x = mk(r, 3, S(N, C, Sz), 2.0, 1.0, every);
    nb_tensor gy = mk(r, 3, S(N, C, Sz), 1.0, 0.0, every);
    nb_tensor gam = mk(r, 1, &C, 0.5, 1.0, 0), bet = mk(r, 1, &C, 0.5, 0.0, 0);
    norm_ctx c = {.op = NB_OP_GROUP_NORM, .n_in = 3, .in = {&x, &gam, &bet},
                  .p = {.eps = 1e-5, .groups = G, .has_gamma = 1, .has_beta = 1}};
    check_norm(label, &c, 3, S(N, C, Sz));
    c = (norm_ctx){.op = NB_OP_GROUP_NORM_GRAD, .n_in = 3, .in = {&x, &gy, &gam},
                   .p = {.eps = 1e-5, .groups = G, .has_gamma = 1}};
    check_norm(label, &c, 3, S(N, C, Sz));
    c = (norm_ctx){.op = NB_OP_GROUP_NORM_GRAD_AFFINE, .n_in = 2, .in = {&x, &gy},
                   .p = {.eps = 1e-5, .groups = G}};
    check_norm(label, &c, 2, S(2, C));
    nb_tensor *all[] = {&x, &gy, &gam, &bet};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        nb_tensor_release(all[i]);
}

START_TEST(group_norm)
{
    nb_rng r;
    nb_rng_init(&r, 61);
    check_group_norm(&r, 2, 4, 1, 2, 0);
    check_group_norm(&r, 3, 6, 15, 3, 0);
    check_group_norm(&r, 2, 8, 17, 4, 0);
    check_group_norm(&r, 2, 4, 700, 2, 0);     /* rows of 1400 */
    check_group_norm(&r, 2, 4, 250001, 2, 0); /* 2M elements */
    check_group_norm(&r, 2, 6, 49, 2, 13);    /* with specials */
    check_group_norm(&r, 2, 4, 700, 2, WIDE);
}
END_TEST

/* ---- the level choice ------------------------------------------------------ */

/* ---- f32 sums (reduce.c: its AVX-512 build, and its row-by-row path for
 * outputs that are each one contiguous run, a global average pool) ----- */

typedef struct red_ctx {
    nb_op op;
    const nb_tensor *x;
    nb_reduce_params p;
} red_ctx;

static void run_reduce(const void *vc, nb_tensor *const *outs)
{
    const red_ctx *c = vc;
    const nb_tensor *in[1] = {c->x};
    nb_kernel_call k = {.op = c->op, .n_in = 1, .in = in, .out = outs[0], .params = &c->p};
    ck_assert_msg(nb_cpu_reduce(&k) == NB_OK, "%s: %s", nb_op_name(c->op), nb_last_error());
}

START_TEST(sums)
{
    static const struct {
        int ndim;
        int64_t shape[4];
        uint32_t axes;
    } cases[] = {
        {4, {8, 1280, 7, 7}, 0xC},  /* MobileNetV2's pool at batch 8: rows of 49 */
        {4, {2, 3, 4, 4}, 0xC},     /* rows of exactly 16 */
        {4, {3, 5, 1, 1}, 0xC},     /* rows of 1 */
        {3, {4, 6, 33}, 0x4},       /* rows of 33 */
        {3, {5, 2, 1000}, 0x4},     /* long rows */
        {2, {9, 17}, 0x1},          /* column sums (the other path) */
        {1, {31}, 0x1},             /* the whole tensor */
    };
    nb_rng r;
    nb_rng_init(&r, 77);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int every = 0; every <= 2; every++) {
            /* normal values, specials mixed in, and magnitudes 1e-10 to
             * 1e10 (where the order of the double sums shows in the float) */
            nb_tensor x = mk(&r, cases[i].ndim, cases[i].shape, 3.0, 0.5,
                             every == 2 ? WIDE : every ? 7 : 0);
            int64_t oshape[4];
            for (int d = 0; d < cases[i].ndim; d++)
                oshape[d] = cases[i].axes >> d & 1 ? 1 : cases[i].shape[d];
            nb_tensor y = mk_empty(NB_F32, cases[i].ndim, oshape);
            nb_tensor *outs[1] = {&y};
            for (int op = 0; op < 2; op++) {
                red_ctx c = {op ? NB_OP_MEAN : NB_OP_SUM, &x, {cases[i].axes, 1}};
                char what[96];
                snprintf(what, sizeof what, "%s case %zu specials %d", nb_op_name(c.op), i, every);
                check_levels(what, run_reduce, &c, outs, 1);
            }
            nb_tensor_release(&x);
            nb_tensor_release(&y);
        }
}
END_TEST

START_TEST(force_clamps)
{
    int max = nb_simd_max_level();
    ck_assert_int_ge(max, NB_SIMD_BASE);
    ck_assert_int_lt(max, NB_SIMD_LEVELS);
    ck_assert_int_eq(nb_simd_force(NB_SIMD_BASE), NB_SIMD_BASE);
    ck_assert_int_eq(nb_simd_level(), NB_SIMD_BASE);
    ck_assert_int_eq(nb_simd_force(99), max); /* never above what the CPU has */
    ck_assert_int_eq(nb_simd_level(), max);
    nb_simd_force(-1);
    ck_assert_str_eq(nb_simd_name(NB_SIMD_AVX512), "avx512");
    ck_assert_str_eq(nb_simd_name(7), "?");
}
END_TEST

/* The level a fresh copy of this program picks with NABLA_SIMD = value (NULL:
 * unset): it runs with --simd-level and prints nb_simd_level(). */
static int level_in_child(const char *value)
{
    int fd[2];
    ck_assert_int_eq(pipe(fd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (value)
            setenv("NABLA_SIMD", value, 1);
        else
            unsetenv("NABLA_SIMD");
        execl("/proc/self/exe", "test_kernels_simd", "--simd-level", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[32] = {0};
    ssize_t got = read(fd[0], buf, sizeof buf - 1);
    close(fd[0]);
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0 && got > 0, "child failed (%d)", st);
    return atoi(buf);
}

START_TEST(env_switch)
{
    int max = nb_simd_max_level();
    ck_assert_int_eq(level_in_child("base"), NB_SIMD_BASE);
    ck_assert_int_eq(level_in_child("0"), NB_SIMD_BASE);
    ck_assert_int_eq(level_in_child("avx2"), max < NB_SIMD_AVX2 ? max : NB_SIMD_AVX2);
    ck_assert_int_eq(level_in_child("avx512"), max);
    ck_assert_int_eq(level_in_child(NULL), max);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--simd-level") == 0) {
        printf("%d\n", nb_simd_level());
        return 0;
    }
    printf("kernels_simd: this CPU's widest build is %s; comparing it and the narrower "
           "ones with base\n", nb_simd_name(nb_simd_max_level()));
    Suite *s = suite_create("kernels_simd");
    TCase *tc = tcase_create("simd");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, force_clamps);
    tcase_add_test(tc, env_switch);
    tcase_add_test(tc, unary_specials);
    tcase_add_test(tc, unary_views);
    tcase_add_test(tc, unary_sizes);
    tcase_add_test(tc, binary_specials);
    tcase_add_test(tc, binary_views);
    tcase_add_test(tc, binary_broadcast);
    tcase_add_test(tc, softmax_rows);
    tcase_add_test(tc, softmax_columns);
    tcase_add_test(tc, softmax_specials);
    tcase_add_test(tc, batch_norm);
    tcase_add_test(tc, layer_norm);
    tcase_add_test(tc, rms_norm);
    tcase_add_test(tc, group_norm);
    tcase_add_test(tc, sums);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
