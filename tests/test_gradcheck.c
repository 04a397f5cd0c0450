/* Finite-difference gradient checks (f64, central differences) of every
 * differentiable op, first and second order.
 *
 * Each case builds y = f(params) on random inputs kept away from kinks, and
 * checks loss = sum(y * w) for a fixed random constant w, so that every output
 * element matters. The second-order run checks loss2 = sum_k sum(g_k * w_k)
 * where g_k = d sum(tanh(y) * c) / d param_k, i.e. the gradient rules
 * differentiated once more. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"
#include "autodiff/vjp.h"
#include "graph/graph_impl.h"

#define TOL 1e-6    /* largest relative error accepted */
#define STEP 1e-6   /* central-difference step */
#define MARGIN 0.1  /* distance kept from kinks */
#define MAX_WRT 4

static nb_rng rng;

/* ---- shapes, domains, fills ------------------------------------------ */

typedef struct shp {
    int n;
    int64_t d[NB_MAX_DIMS];
} shp;

#define SH(...) {(int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), {__VA_ARGS__}}
#define SH0 {0, {0}}

/* Where random values come from: uniform in [lo, hi] at least `margin` from
 * each kink, or (grid = 1 or 2) from a grid of intervals such that a value of
 * grid 1 and one of grid 2 are always at least 0.3 apart. */
typedef struct dom {
    double lo, hi, margin;
    int nk;
    double kink[2];
    int grid;
} dom;

#define U(lo, hi) {lo, hi, 0, 0, {0, 0}, 0}
#define UK(lo, hi, k) {lo, hi, MARGIN, 1, {k, 0}, 0}
#define UKM(lo, hi, k, m) {lo, hi, m, 1, {k, 0}, 0}
#define UK2(lo, hi, k1, k2) {lo, hi, MARGIN, 2, {k1, k2}, 0}
#define GRID(p) {0, 0, 0, 0, {0, 0}, 1 + (p)}

static double *pdata(nb_node *p)
{
    nb_tensor *t = nb_node_value(p);
    ck_assert_ptr_nonnull(t);
    ck_assert(nb_tensor_is_contiguous(t));
    ck_assert_int_eq(t->dtype, NB_F64);
    return (double *)nb_tensor_data(t);
}

static bool near_kink(const dom *d, double v)
{
    for (int k = 0; k < d->nk; k++)
        if (fabs(v - d->kink[k]) < d->margin)
            return true;
    return false;
}

static double draw(const dom *d)
{
    if (d->grid) {
        int k = (int)nb_rng_below(&rng, 5) - 2;
        return (2 * k + (d->grid - 1)) * 0.5 + 0.2 * nb_rng_uniform(&rng);
    }
    double v;
    do
        v = d->lo + (d->hi - d->lo) * nb_rng_uniform(&rng);
    while (near_kink(d, v));
    return v;
}

static void fill(double *x, int64_t n, const dom *d)
{
    for (int64_t j = 0; j < n; j++)
        x[j] = draw(d);
}

/* Distinct values at least ~0.12 apart, in random order. */
static void fill_distinct(double *x, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        x[j] = (double)(j - n / 2) * 0.15 + 0.03 * nb_rng_uniform(&rng);
    for (int64_t j = n - 1; j > 0; j--) {
        int64_t k = (int64_t)nb_rng_below(&rng, (uint64_t)j + 1);
        double t = x[j];
        x[j] = x[k];
        x[k] = t;
    }
}

static nb_node *param_raw(nb_graph *g, shp s)
{
    char name[32];
    snprintf(name, sizeof name, "p%d", nb_graph_num_nodes(g));
    nb_node *p = nb_param(g, name, NB_F64, s.n, s.d);
    ck_assert_msg(!nb_node_is_poison(p), "param: %s", nb_graph_error(g));
    return p;
}

static nb_node *param(nb_graph *g, shp s, dom d)
{
    nb_node *p = param_raw(g, s);
    fill(pdata(p), nb_node_numel(p), &d);
    return p;
}

static nb_node *constant_data(nb_graph *g, nb_dtype dt, int ndim, const int64_t *shape,
                              const void *data)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_from_data(&t, dt, ndim, shape, data), NB_OK);
    nb_node *c = nb_constant(g, &t);
    nb_tensor_release(&t);
    return c;
}

/* A constant of uniform values in [lo, hi). */
static nb_node *constant(nb_graph *g, int ndim, const int64_t *shape, double lo, double hi)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, NB_F64, ndim, shape), NB_OK);
    ck_assert_int_eq(nb_rng_fill_uniform(&rng, &t, lo, hi), NB_OK);
    nb_node *c = nb_constant(g, &t);
    nb_tensor_release(&t);
    return c;
}

/* sum(y * w) for a fixed random w of y's shape. */
static nb_node *wloss(nb_graph *g, nb_node *y)
{
    nb_node *w = constant(g, nb_node_ndim(y), nb_node_shape(y), -1.0, 1.0);
    return nb_sum(g, nb_mul(g, y, w), 0, NULL, false);
}

static void check(nb_graph *g, nb_node *loss, int n, nb_node *const *wrt, const char *what)
{
    ck_assert_msg(nb_graph_status(g) == NB_OK, "%s: graph failed: %s", what, nb_graph_error(g));
    double err = INFINITY;
    nb_status s = nb_gradcheck(g, loss, n, wrt, NULL, STEP, &err);
    ck_assert_msg(s == NB_OK, "%s: gradcheck returned %s: %s | graph: %s", what,
                  nb_status_str(s), nb_last_error(), nb_graph_error(g));
    ck_assert_msg(err <= TOL, "%s: max relative error %.3g > %g", what, err, TOL);
}

/* ---- the generic runner ------------------------------------------------ */

/* Builds y from fresh params, which it lists in wrt[0..*n). */
typedef nb_node *(*build_fn)(nb_graph *g, const void *ctx, nb_node **wrt, int *n);

static void run_case(const char *name, build_fn build, const void *ctx, bool second)
{
    char what[160];
    snprintf(what, sizeof what, "%s%s", name, second ? " (2nd order)" : "");
    nb_graph *g = nb_graph_new();
    ck_assert_ptr_nonnull(g);
    nb_node *wrt[MAX_WRT];
    int n = 0;
    nb_node *y = build(g, ctx, wrt, &n);
    ck_assert_msg(nb_graph_status(g) == NB_OK, "%s: build failed: %s", what, nb_graph_error(g));
    nb_node *loss;
    if (!second) {
        loss = wloss(g, y);
    } else {
        nb_node *l1 = wloss(g, nb_tanh(g, y));
        nb_node *g1[MAX_WRT];
        nb_status s = nb_grad(g, l1, n, wrt, g1);
        ck_assert_msg(s == NB_OK, "%s: nb_grad: %s", what, nb_graph_error(g));
        loss = wloss(g, g1[0]);
        for (int k = 1; k < n; k++)
            loss = nb_add(g, loss, wloss(g, g1[k]));
    }
    check(g, loss, n, wrt, what);
    nb_graph_free(g);
}

/* ---- unary ops --------------------------------------------------------- */

typedef nb_node *(*unary_fn)(nb_graph *g, nb_node *x);

static nb_node *u_leaky(nb_graph *g, nb_node *x) { return nb_leaky_relu(g, x, 0.1); }
static nb_node *u_elu1(nb_graph *g, nb_node *x) { return nb_elu(g, x, 1.0); }
static nb_node *u_elu07(nb_graph *g, nb_node *x) { return nb_elu(g, x, 0.7); }
static nb_node *u_gelu(nb_graph *g, nb_node *x) { return nb_gelu(g, x, false); }
static nb_node *u_gelu_tanh(nb_graph *g, nb_node *x) { return nb_gelu(g, x, true); }
static nb_node *u_softplus(nb_graph *g, nb_node *x) { return nb_softplus(g, x, 1.0, 20.0); }
static nb_node *u_softplus2(nb_graph *g, nb_node *x) { return nb_softplus(g, x, 2.0, 3.0); }
static nb_node *u_clip(nb_graph *g, nb_node *x) { return nb_clip(g, x, -0.5, 0.7); }
static nb_node *u_clip_hi(nb_graph *g, nb_node *x) { return nb_clip(g, x, -INFINITY, 0.3); }
static nb_node *u_pow3(nb_graph *g, nb_node *x) { return nb_pow_scalar(g, x, 3.0); }
static nb_node *u_pow_half(nb_graph *g, nb_node *x) { return nb_pow_scalar(g, x, 0.5); }
static nb_node *u_pow_neg(nb_graph *g, nb_node *x) { return nb_pow_scalar(g, x, -1.5); }
static nb_node *u_add_s(nb_graph *g, nb_node *x) { return nb_add_scalar(g, x, 0.3); }
static nb_node *u_mul_s(nb_graph *g, nb_node *x) { return nb_mul_scalar(g, x, -1.7); }
static nb_node *u_softmax_last(nb_graph *g, nb_node *x) { return nb_softmax(g, x, -1); }
static nb_node *u_softmax_0(nb_graph *g, nb_node *x) { return nb_softmax(g, x, 0); }
static nb_node *u_softmax_mid(nb_graph *g, nb_node *x) { return nb_softmax(g, x, 1); }
static nb_node *u_lsm_last(nb_graph *g, nb_node *x) { return nb_log_softmax(g, x, -1); }
static nb_node *u_lsm_0(nb_graph *g, nb_node *x) { return nb_log_softmax(g, x, 0); }
static nb_node *u_lsm_mid(nb_graph *g, nb_node *x) { return nb_log_softmax(g, x, 1); }

typedef struct unary_case {
    const char *name;
    unary_fn f;
    dom d;
} unary_case;

static const unary_case unary_cases[] = {
    {"neg", nb_neg, U(-2, 2)},
    {"abs", nb_abs, UK(-2, 2, 0)},
    {"sign", nb_sign, UK(-2, 2, 0)},
    {"exp", nb_exp, U(-2, 2)},
    {"log", nb_log, U(0.1, 3)},
    {"sqrt", nb_sqrt, U(0.1, 3)},
    {"rsqrt", nb_rsqrt, U(0.2, 3)},
    {"square", nb_square, U(-2, 2)},
    {"reciprocal", nb_reciprocal, UKM(-2, 2, 0, 0.3)},
    {"erf", nb_erf, U(-2, 2)},
    {"relu", nb_relu, UK(-2, 2, 0)},
    {"leaky_relu(0.1)", u_leaky, UK(-2, 2, 0)},
    {"elu(1)", u_elu1, UK(-2, 2, 0)},
    {"elu(0.7)", u_elu07, UK(-2, 2, 0)},
    {"sigmoid", nb_sigmoid, U(-3, 3)},
    {"tanh", nb_tanh, U(-2, 2)},
    {"gelu", u_gelu, U(-3, 3)},
    {"gelu_tanh", u_gelu_tanh, U(-3, 3)},
    {"silu", nb_silu, U(-3, 3)},
    {"softplus(1,20)", u_softplus, U(-3, 3)},
    {"softplus(2,3)", u_softplus2, UK(-3, 3, 1.5)},
    {"clip(-0.5,0.7)", u_clip, UK2(-1.5, 1.5, -0.5, 0.7)},
    {"clip(-inf,0.3)", u_clip_hi, UK(-1, 1, 0.3)},
    {"pow_scalar(3)", u_pow3, U(-2, 2)},
    {"pow_scalar(0.5)", u_pow_half, U(0.1, 3)},
    {"pow_scalar(-1.5)", u_pow_neg, U(0.3, 2)},
    {"add_scalar", u_add_s, U(-2, 2)},
    {"mul_scalar", u_mul_s, U(-2, 2)},
    {"softmax(-1)", u_softmax_last, U(-2, 2)},
    {"softmax(0)", u_softmax_0, U(-2, 2)},
    {"softmax(1)", u_softmax_mid, U(-2, 2)},
    {"log_softmax(-1)", u_lsm_last, U(-2, 2)},
    {"log_softmax(0)", u_lsm_0, U(-2, 2)},
    {"log_softmax(1)", u_lsm_mid, U(-2, 2)},
};
#define N_UNARY ((int)(sizeof unary_cases / sizeof unary_cases[0]))

static nb_node *build_unary(nb_graph *g, const void *ctx, nb_node **wrt, int *n)
{
    const unary_case *c = ctx;
    shp s = SH(2, 3, 4);
    wrt[(*n)++] = param(g, s, c->d);
    return c->f(g, wrt[0]);
}

/* In the loop tests, even _i is a first-order check and odd _i the second
 * order of the same case. */
START_TEST(test_unary)
{
    nb_rng_init(&rng, 1000 + (uint64_t)_i);
    run_case(unary_cases[_i / 2].name, build_unary, &unary_cases[_i / 2], _i % 2);
}
END_TEST

/* A unary op on a 0-d input. */
START_TEST(test_unary_scalar)
{
    static const unary_fn fs[] = {nb_exp, nb_tanh, nb_sigmoid, u_gelu, nb_square};
    nb_rng_init(&rng, 42);
    for (size_t k = 0; k < sizeof fs / sizeof fs[0]; k++) {
        nb_graph *g = nb_graph_new();
        shp s = SH0;
        nb_node *x = param(g, s, (dom)U(-1, 1));
        check(g, wloss(g, fs[k](g, x)), 1, &x, "unary on 0-d");
        nb_graph_free(g);
    }
}
END_TEST

/* ---- binary ops with broadcasting ----------------------------------------- */

typedef nb_node *(*binary_fn)(nb_graph *g, nb_node *a, nb_node *b);

typedef struct binary_op {
    const char *name;
    binary_fn f;
    dom da, db;
} binary_op;

static const binary_op binary_ops[] = {
    {"add", nb_add, U(-2, 2), U(-2, 2)},
    {"sub", nb_sub, U(-2, 2), U(-2, 2)},
    {"mul", nb_mul, U(-2, 2), U(-2, 2)},
    {"div", nb_div, U(-2, 2), UKM(-2, 2, 0, 0.5)},
    {"pow", nb_pow, U(0.5, 2), U(-2, 2)},
    {"maximum", nb_maximum, GRID(0), GRID(1)},
    {"minimum", nb_minimum, GRID(1), GRID(0)},
};
#define N_BINOPS ((int)(sizeof binary_ops / sizeof binary_ops[0]))

static const shp binary_shapes[][2] = {
    {SH(3, 1), SH(1, 4)},
    {SH(2, 3, 4), SH(4)},
    {SH0, SH(2, 3)},
    {SH(2, 3), SH0},
    {SH(4), SH(2, 3, 4)},
    {SH(2, 3), SH(2, 3)},
    {SH(2, 1, 4), SH(3, 1)},
};
#define N_BINSHAPES ((int)(sizeof binary_shapes / sizeof binary_shapes[0]))

typedef struct binary_case {
    const binary_op *op;
    const shp *s; /* [2] */
} binary_case;

static nb_node *build_binary(nb_graph *g, const void *ctx, nb_node **wrt, int *n)
{
    const binary_case *c = ctx;
    nb_node *a = param(g, c->s[0], c->op->da);
    nb_node *b = param(g, c->s[1], c->op->db);
    wrt[(*n)++] = a;
    wrt[(*n)++] = b;
    return c->op->f(g, a, b);
}

static void run_binary(int i, bool second)
{
    binary_case c = {&binary_ops[i / N_BINSHAPES], binary_shapes[i % N_BINSHAPES]};
    char name[96], sa[48], sb[48];
    snprintf(name, sizeof name, "%s %s x %s", c.op->name, nb_shape_str(c.s[0].n, c.s[0].d, sa, sizeof sa),
             nb_shape_str(c.s[1].n, c.s[1].d, sb, sizeof sb));
    nb_rng_init(&rng, 3000 + 2 * (uint64_t)i + second);
    run_case(name, build_binary, &c, second);
}

START_TEST(test_binary) { run_binary(_i / 2, _i % 2); }
END_TEST

/* maximum/minimum at exact ties: each side gets gy/2, which is also what a
 * central difference that moves one side sees. */
START_TEST(test_maximum_minimum_ties)
{
    nb_rng_init(&rng, 77);
    for (int k = 0; k < 2; k++) {
        nb_graph *g = nb_graph_new();
        shp s = SH(2, 3);
        nb_node *a = param(g, s, (dom)U(-2, 2));
        double bv[6];
        memcpy(bv, pdata(a), sizeof bv);
        bv[1] += 0.7;
        bv[4] -= 0.7;
        nb_node *b = constant_data(g, NB_F64, s.n, s.d, bv);
        nb_node *y = k == 0 ? nb_maximum(g, a, b) : nb_minimum(g, b, a);
        check(g, wloss(g, y), 1, &a, k == 0 ? "maximum ties" : "minimum ties");
        nb_graph_free(g);
    }
}
END_TEST

/* ---- where ------------------------------------------------------------------ */

static const shp where_shapes[][3] = {
    {SH(3, 1), SH(1, 4), SH(3, 4)},
    {SH(4), SH(2, 3, 4), SH0},
    {SH0, SH(2, 3), SH(2, 3)},
    {SH(2, 3, 4), SH(4), SH(3, 1)},
    {SH(2, 3), SH(2, 3), SH(2, 3)},
};
#define N_WHERE ((int)(sizeof where_shapes / sizeof where_shapes[0]))

static nb_node *build_where(nb_graph *g, const void *ctx, nb_node **wrt, int *n)
{
    const shp *s = ctx;
    nb_node *c = constant(g, s[0].n, s[0].d, -1, 1);
    nb_node *cond = nb_gt(g, c, nb_scalar(g, 0.0, NB_F64));
    nb_node *a = param(g, s[1], (dom)U(-2, 2));
    nb_node *b = param(g, s[2], (dom)U(-2, 2));
    wrt[(*n)++] = a;
    wrt[(*n)++] = b;
    return nb_where(g, cond, a, b);
}

START_TEST(test_where)
{
    nb_rng_init(&rng, 5000 + (uint64_t)_i);
    run_case("where", build_where, where_shapes[_i / 2], _i % 2);
}
END_TEST

/* ---- reductions -------------------------------------------------------------- */

typedef nb_node *(*reduce_fn)(nb_graph *g, nb_node *x, int naxes, const int *axes, bool keepdims);

static const struct {
    const char *name;
    reduce_fn f;
} reduce_ops[] = {{"sum", nb_sum}, {"mean", nb_mean}, {"max", nb_max}, {"min", nb_min}};
#define N_REDOPS 4

static const struct {
    int n;
    int axes[3];
} axis_sets[] = {
    {0, {0}}, {1, {0}}, {1, {1}}, {1, {-1}}, {2, {0, 2}}, {2, {-3, -2}}, {3, {0, 1, 2}},
};
#define N_AXSETS ((int)(sizeof axis_sets / sizeof axis_sets[0]))
#define N_REDUCE (N_REDOPS * N_AXSETS * 2)

static nb_node *build_reduce(nb_graph *g, const void *ctx, nb_node **wrt, int *n)
{
    int i = *(const int *)ctx;
    int op = i / (N_AXSETS * 2), ax = (i / 2) % N_AXSETS, keep = i % 2;
    shp s = SH(2, 3, 4);
    nb_node *x = param_raw(g, s);
    fill_distinct(pdata(x), nb_node_numel(x));
    wrt[(*n)++] = x;
    return reduce_ops[op].f(g, x, axis_sets[ax].n, axis_sets[ax].axes, keep);
}

static void run_reduce(int i, bool second)
{
    int op = i / (N_AXSETS * 2), ax = (i / 2) % N_AXSETS, keep = i % 2;
    char name[96] = "";
    int len = snprintf(name, sizeof name, "%s axes {", reduce_ops[op].name);
    for (int k = 0; k < axis_sets[ax].n; k++)
        len += snprintf(name + len, sizeof name - (size_t)len, "%s%d", k ? "," : "",
                        axis_sets[ax].axes[k]);
    snprintf(name + len, sizeof name - (size_t)len, "} keepdims=%d", keep);
    nb_rng_init(&rng, 6000 + 2 * (uint64_t)i + second);
    run_case(name, build_reduce, &i, second);
}

START_TEST(test_reduce) { run_reduce(_i / 2, _i % 2); }
END_TEST

/* Reductions of a 1-D and of a 0-d input. */
START_TEST(test_reduce_small)
{
    nb_rng_init(&rng, 61);
    for (int op = 0; op < N_REDOPS; op++) {
        for (int k = 0; k < 2; k++) {
            nb_graph *g = nb_graph_new();
            shp s1 = SH(5), s0 = SH0;
            nb_node *x = param_raw(g, k == 0 ? s1 : s0);
            fill_distinct(pdata(x), nb_node_numel(x));
            nb_node *y = reduce_ops[op].f(g, x, 0, NULL, false);
            char what[64];
            snprintf(what, sizeof what, "%s of %s", reduce_ops[op].name, k == 0 ? "(5,)" : "0-d");
            check(g, wloss(g, y), 1, &x, what);
            nb_graph_free(g);
        }
    }
}
END_TEST

/* max/min with two tied extremes per row: each gets half of the gradient
 * (PyTorch's amax/amin), which is also the central difference there. */
START_TEST(test_reduce_ties)
{
    nb_rng_init(&rng, 62);
    for (int op = 2; op < 4; op++) {
        for (int keep = 0; keep < 2; keep++) {
            nb_graph *g = nb_graph_new();
            shp s = SH(3, 4);
            nb_node *x = param_raw(g, s);
            double *v = pdata(x);
            fill_distinct(v, 12);
            for (int r = 0; r < 3; r++) {
                double e = v[r * 4];
                for (int c = 1; c < 4; c++)
                    e = op == 2 ? fmax(e, v[r * 4 + c]) : fmin(e, v[r * 4 + c]);
                e += op == 2 ? 0.5 : -0.5;
                v[r * 4 + (r % 4)] = e;
                v[r * 4 + (r + 2) % 4] = e;
            }
            int axis = 1;
            nb_node *y = reduce_ops[op].f(g, x, 1, &axis, keep);
            check(g, wloss(g, y), 1, &x, op == 2 ? "max ties" : "min ties");
            nb_graph_free(g);
        }
    }
}
END_TEST

/* ---- matmul ------------------------------------------------------------------ */

typedef struct mm_case {
    shp a, b;
    int ta, tb;
    bool use_t; /* nb_matmul_t instead of nb_matmul */
} mm_case;

static const mm_case mm_cases[] = {
    /* 2-D, all four transpose combinations */
    {SH(3, 4), SH(4, 5), 0, 0, false},
    {SH(3, 4), SH(4, 5), 0, 0, true},
    {SH(4, 3), SH(4, 5), 1, 0, true},
    {SH(3, 4), SH(5, 4), 0, 1, true},
    {SH(4, 3), SH(5, 4), 1, 1, true},
    /* batched */
    {SH(2, 3, 4), SH(2, 4, 5), 0, 0, false},
    {SH(2, 4, 3), SH(2, 4, 5), 1, 0, true},
    {SH(2, 3, 4), SH(2, 5, 4), 0, 1, true},
    {SH(2, 4, 3), SH(2, 5, 4), 1, 1, true},
    /* broadcast batch dims */
    {SH(3, 4), SH(2, 4, 5), 0, 0, false},
    {SH(2, 3, 4), SH(4, 5), 0, 0, false},
    {SH(1, 3, 4), SH(2, 4, 5), 0, 0, false},
    {SH(2, 1, 3, 4), SH(3, 4, 5), 0, 0, false},
    {SH(4, 3), SH(2, 5, 4), 1, 1, true},
    {SH(2, 1, 4, 3), SH(3, 4, 5), 1, 0, true},
    {SH(2, 3, 4), SH(1, 5, 4), 0, 1, true},
    /* 1-D operands */
    {SH(4), SH(4, 5), 0, 0, false},
    {SH(3, 4), SH(4), 0, 0, false},
    {SH(4), SH(4), 0, 0, false},
    {SH(4), SH(2, 4, 5), 0, 0, false},
    {SH(2, 3, 4), SH(4), 0, 0, false},
};
#define N_MM ((int)(sizeof mm_cases / sizeof mm_cases[0]))

static nb_node *build_matmul(nb_graph *g, const void *ctx, nb_node **wrt, int *n)
{
    const mm_case *c = ctx;
    nb_node *a = param(g, c->a, (dom)U(-1, 1));
    nb_node *b = param(g, c->b, (dom)U(-1, 1));
    wrt[(*n)++] = a;
    wrt[(*n)++] = b;
    return c->use_t ? nb_matmul_t(g, a, b, c->ta, c->tb) : nb_matmul(g, a, b);
}

static void run_matmul(int i, bool second)
{
    const mm_case *c = &mm_cases[i];
    char name[96], sa[48], sb[48];
    snprintf(name, sizeof name, "matmul%s %s%s x %s%s", c->use_t ? "_t" : "",
             nb_shape_str(c->a.n, c->a.d, sa, sizeof sa), c->ta ? "^T" : "",
             nb_shape_str(c->b.n, c->b.d, sb, sizeof sb), c->tb ? "^T" : "");
    nb_rng_init(&rng, 7000 + 2 * (uint64_t)i + second);
    run_case(name, build_matmul, c, second);
}

START_TEST(test_matmul) { run_matmul(_i / 2, _i % 2); }
END_TEST

/* ---- data movement and losses ---------------------------------------------- */

static nb_node *p1(nb_graph *g, nb_node **wrt, int *n, shp s)
{
    nb_node *x = param(g, s, (dom)U(-2, 2));
    wrt[(*n)++] = x;
    return x;
}

static nb_node *labels4(nb_graph *g)
{
    int64_t s[] = {4}, v[] = {0, 3, 1, 4};
    return constant_data(g, NB_I64, 1, s, v);
}

static const char *const move_names[] = {
    "reshape", "reshape -1", "permute", "permute 4-d", "transpose", "squeeze", "unsqueeze",
    "flatten", "expand (3,1)->(2,3,4)", "expand (4,)->(3,4)", "expand ()->(2,3)",
    "slice -4::2", "slice last axis 1::3", "slice first axis 1:3", "slice twice",
    "slice_grad", "split + concat", "concat 3 on axis 1", "concat last axis", "pad 2-d",
    "pad 3-d",
    /* losses, composed from the ops above */
    "cross_entropy", "cross_entropy smoothing 0.1", "nll_loss(log_softmax)", "mse_loss",
    "bce_with_logits",
};
#define N_MOVE ((int)(sizeof move_names / sizeof move_names[0]))

/* Case k of move_names. */
static nb_node *build_move(nb_graph *g, const void *ctx, nb_node **wrt, int *n)
{
    int64_t s2[] = {6, 4}, s3[] = {4, -1, 3}, e3[] = {2, 3, 4}, e2[] = {3, 4}, e0[] = {2, 3};
    int perm3[] = {2, 0, 1}, perm4[] = {1, 3, 0, 2};
    switch (*(const int *)ctx) {
    case 0: return nb_reshape(g, p1(g, wrt, n, (shp)SH(2, 3, 4)), 2, s2);
    case 1: return nb_reshape(g, p1(g, wrt, n, (shp)SH(2, 3, 4)), 3, s3);
    case 2: return nb_permute(g, p1(g, wrt, n, (shp)SH(2, 3, 4)), perm3);
    case 3: return nb_permute(g, p1(g, wrt, n, (shp)SH(2, 3, 1, 4)), perm4);
    case 4: return nb_transpose(g, p1(g, wrt, n, (shp)SH(2, 3, 4)), 0, -1);
    case 5: return nb_squeeze(g, p1(g, wrt, n, (shp)SH(2, 1, 3)), 1);
    case 6: return nb_unsqueeze(g, p1(g, wrt, n, (shp)SH(2, 3)), -1);
    case 7: return nb_flatten(g, p1(g, wrt, n, (shp)SH(2, 3, 4)), 1);
    case 8: return nb_expand(g, p1(g, wrt, n, (shp)SH(3, 1)), 3, e3);
    case 9: return nb_expand(g, p1(g, wrt, n, (shp)SH(4)), 2, e2);
    case 10: return nb_expand(g, p1(g, wrt, n, (shp)SH0), 2, e0);
    /* x[:, -4::2, :] of (2,5,4): rows 1 and 3 */
    case 11: return nb_slice(g, p1(g, wrt, n, (shp)SH(2, 5, 4)), 1, -4, 5, 2);
    case 12: return nb_slice(g, p1(g, wrt, n, (shp)SH(2, 5, 7)), -1, 1, 100, 3);
    case 13: return nb_slice(g, p1(g, wrt, n, (shp)SH(4, 3)), 0, 1, 3, 1);
    case 14: {
        nb_node *x = p1(g, wrt, n, (shp)SH(6, 5));
        return nb_slice(g, nb_slice(g, x, 0, -5, 6, 2), 1, 0, 4, 2);
    }
    case 15: {
        /* SLICE_GRAD as a forward op: (2,2) scattered into (3,5) at [1:, 1::2] */
        nb_slice_params p;
        memset(&p, 0, sizeof p);
        p.start[0] = 1, p.step[0] = 1, p.start[1] = 1, p.step[1] = 2;
        int64_t in_shape[] = {3, 5};
        return nb_slice_grad(g, p1(g, wrt, n, (shp)SH(2, 2)), &p, 2, in_shape);
    }
    case 16: {
        nb_node *out[3];
        int64_t sizes[] = {1, 2, 3};
        ck_assert_int_eq(nb_split(g, p1(g, wrt, n, (shp)SH(2, 6)), 1, 3, sizes, out), 0);
        /* treat the pieces differently so that each must route its own gradient */
        nb_node *parts[3] = {nb_mul_scalar(g, out[0], 2.0), nb_exp(g, out[1]),
                             nb_square(g, out[2])};
        return nb_concat(g, 3, parts, 1);
    }
    case 17: {
        nb_node *xs[3] = {p1(g, wrt, n, (shp)SH(2, 1, 3)), p1(g, wrt, n, (shp)SH(2, 2, 3)),
                          p1(g, wrt, n, (shp)SH(2, 3, 3))};
        return nb_concat(g, 3, xs, 1);
    }
    case 18: {
        nb_node *xs[2] = {p1(g, wrt, n, (shp)SH(3, 2)), p1(g, wrt, n, (shp)SH(3, 4))};
        return nb_concat(g, 2, xs, -1);
    }
    case 19: {
        int64_t pads[] = {1, 0, 2, 1};
        return nb_pad(g, p1(g, wrt, n, (shp)SH(2, 3)), pads, 0.5);
    }
    case 20: {
        int64_t pads[] = {0, 0, 1, 1, 2, 0};
        return nb_pad(g, p1(g, wrt, n, (shp)SH(2, 2, 3)), pads, 0.0);
    }
    case 21: return nb_cross_entropy(g, p1(g, wrt, n, (shp)SH(4, 5)), labels4(g), 0.0);
    case 22: return nb_cross_entropy(g, p1(g, wrt, n, (shp)SH(4, 5)), labels4(g), 0.1);
    case 23: {
        nb_node *x = p1(g, wrt, n, (shp)SH(4, 5));
        return nb_nll_loss(g, nb_log_softmax(g, x, -1), labels4(g));
    }
    case 24: {
        nb_node *p = p1(g, wrt, n, (shp)SH(3, 4));
        return nb_mse_loss(g, p, p1(g, wrt, n, (shp)SH(3, 4)));
    }
    default: {
        nb_node *x = p1(g, wrt, n, (shp)SH(3, 4));
        nb_node *t = param(g, (shp)SH(3, 4), (dom)U(0, 1));
        wrt[(*n)++] = t;
        return nb_bce_with_logits(g, x, t);
    }
    }
}

/* even _i: first order, odd: second order */
START_TEST(test_move)
{
    int k = _i / 2;
    nb_rng_init(&rng, 8000 + (uint64_t)_i);
    run_case(move_names[k], build_move, &k, _i % 2);
}
END_TEST

/* ---- second derivatives, spelled out ------------------------------------------ */

/* g1 = d sum(f(x)) / dx, then check d sum(g1 * w) / dx. */
START_TEST(test_second_unary_plain)
{
    static const struct {
        const char *name;
        unary_fn f;
    } fs[] = {{"tanh", nb_tanh}, {"sigmoid", nb_sigmoid}, {"exp", nb_exp}};
    nb_rng_init(&rng, 11);
    for (int k = 0; k < 3; k++) {
        nb_graph *g = nb_graph_new();
        nb_node *x = param(g, (shp)SH(3, 4), (dom)U(-2, 2));
        nb_node *g1;
        ck_assert_int_eq(nb_grad(g, nb_sum(g, fs[k].f(g, x), 0, NULL, false), 1, &x, &g1), NB_OK);
        check(g, wloss(g, g1), 1, &x, fs[k].name);
        nb_graph_free(g);
    }
}
END_TEST

/* (ga, gb) = d sum(a op b) / d(a, b), then check d (sum(ga w1) + sum(gb w2)) / d(a, b). */
START_TEST(test_second_mul_div)
{
    nb_rng_init(&rng, 12);
    for (int k = 0; k < 2; k++) {
        nb_graph *g = nb_graph_new();
        nb_node *wrt[2] = {param(g, (shp)SH(2, 3), (dom)U(-2, 2)),
                           param(g, (shp)SH(3), (dom)UKM(-2, 2, 0, 0.5))};
        nb_node *y = k == 0 ? nb_mul(g, wrt[0], wrt[1]) : nb_div(g, wrt[0], wrt[1]);
        nb_node *g1[2];
        ck_assert_int_eq(nb_grad(g, nb_sum(g, y, 0, NULL, false), 2, wrt, g1), NB_OK);
        nb_node *loss = nb_add(g, wloss(g, g1[0]), wloss(g, g1[1]));
        check(g, loss, 2, wrt, k == 0 ? "mul 2nd" : "div 2nd");
        nb_graph_free(g);
    }
}
END_TEST

/* L = sum(op(A) op(B) * C); gA = dL/dA; check d sum(gA * W) / dB (and the
 * same for gB wrt A). */
START_TEST(test_second_matmul)
{
    nb_rng_init(&rng, 13);
    for (int t = 0; t < 4; t++) {
        int ta = t & 1, tb = t >> 1;
        for (int which = 0; which < 2; which++) {
            nb_graph *g = nb_graph_new();
            nb_node *a = param(g, ta ? (shp)SH(4, 3) : (shp)SH(3, 4), (dom)U(-1, 1));
            nb_node *b = param(g, tb ? (shp)SH(5, 4) : (shp)SH(4, 5), (dom)U(-1, 1));
            nb_node *y = nb_matmul_t(g, a, b, ta, tb);
            nb_node *l = wloss(g, y);
            nb_node *wrt = which == 0 ? a : b, *other = which == 0 ? b : a, *g1;
            ck_assert_int_eq(nb_grad(g, l, 1, &wrt, &g1), NB_OK);
            char what[64];
            snprintf(what, sizeof what, "matmul ta=%d tb=%d: d(dL/d%s)/d%s", ta, tb,
                     which == 0 ? "A" : "B", which == 0 ? "B" : "A");
            check(g, wloss(g, g1), 1, &other, what);
            nb_graph_free(g);
        }
    }
}
END_TEST

/* ---- accumulation, cast -------------------------------------------------------- */

static void eval(nb_graph *g, nb_node *n, nb_tensor *out)
{
    nb_plan *p = nb_compile(g, 1, &n, NULL);
    ck_assert_msg(p != NULL, "compile: %s", nb_last_error());
    nb_session *s = nb_session_new(p);
    ck_assert_ptr_nonnull(s);
    ck_assert_msg(nb_session_run(s) == NB_OK, "run: %s", nb_last_error());
    nb_tensor v;
    ck_assert_int_eq(nb_session_fetch(s, n, &v), NB_OK);
    ck_assert_int_eq(nb_tensor_contiguous(&v, out), NB_OK);
    nb_tensor_release(&v);
    nb_session_free(s);
    nb_plan_free(p);
}

/* x used three times: the gradients of the three uses add up. */
START_TEST(test_fanout)
{
    nb_rng_init(&rng, 14);
    nb_graph *g = nb_graph_new();
    nb_node *x = param(g, (shp)SH(2, 3), (dom)U(-2, 2));
    /* loss = sum(x) + sum(2x) + sum(x*x): grad = 3 + 2x */
    nb_node *l = nb_add(g, nb_sum(g, x, 0, NULL, false),
                        nb_add(g, nb_sum(g, nb_mul_scalar(g, x, 2.0), 0, NULL, false),
                               nb_sum(g, nb_mul(g, x, x), 0, NULL, false)));
    nb_node *gx;
    ck_assert_int_eq(nb_grad(g, l, 1, &x, &gx), NB_OK);
    nb_tensor got;
    eval(g, gx, &got);
    const double *xv = pdata(x);
    for (int64_t j = 0; j < 6; j++)
        ck_assert_double_eq_tol(nb_tensor_get_flat(&got, j), 3.0 + 2.0 * xv[j], 1e-12);
    nb_tensor_release(&got);
    check(g, l, 1, &x, "fan-out x3");
    /* and a nonlinear one: x * tanh(x) + exp(x) */
    nb_node *y = nb_add(g, nb_mul(g, x, nb_tanh(g, x)), nb_exp(g, x));
    check(g, wloss(g, y), 1, &x, "fan-out x * tanh(x) + exp(x)");
    nb_graph_free(g);
}
END_TEST

/* f64 -> f32 -> f64: the gradient is cast back at each step; an integer
 * source gets no gradient. */
START_TEST(test_cast)
{
    nb_rng_init(&rng, 15);
    nb_graph *g = nb_graph_new();
    nb_node *x = param(g, (shp)SH(2, 3), (dom)U(-2, 2));
    float wf[6];
    for (int j = 0; j < 6; j++)
        wf[j] = (float)(nb_rng_uniform(&rng) - 0.5);
    int64_t s[] = {2, 3};
    nb_node *w = constant_data(g, NB_F32, 2, s, wf);
    nb_node *y = nb_mul(g, nb_cast(g, x, NB_F32), w);
    nb_node *l = nb_sum(g, nb_cast(g, y, NB_F64), 0, NULL, false);
    nb_node *gx;
    ck_assert_int_eq(nb_grad(g, l, 1, &x, &gx), NB_OK);
    ck_assert_int_eq(nb_node_dtype(gx), NB_F64);
    nb_tensor got;
    eval(g, gx, &got);
    for (int64_t j = 0; j < 6; j++)
        ck_assert_double_eq(nb_tensor_get_flat(&got, j), (double)wf[j]);
    nb_tensor_release(&got);

    /* same-dtype cast: gradcheck */
    nb_node *x2 = param(g, (shp)SH(3), (dom)U(-2, 2));
    check(g, wloss(g, nb_cast(g, x2, NB_F64)), 1, &x2, "cast f64->f64");

    /* integer -> float: the rule gives no gradient */
    int32_t iv[] = {1, 2, 3};
    int64_t s3[] = {3};
    nb_node *xi = constant_data(g, NB_I32, 1, s3, iv);
    nb_node *c = nb_cast(g, xi, NB_F64);
    ck_assert_int_eq(nb_node_op(c), NB_OP_CAST);
    nb_vjp_fn rule = nb_vjp_rule(NB_OP_CAST);
    ck_assert(rule != NULL);
    ck_assert_ptr_null(rule(g, c, 0, nb_full_like(g, c, 1.0)));
    ck_assert_int_eq(nb_graph_status(g), NB_OK);
    nb_graph_free(g);
}
END_TEST

/* Every differentiable op of this suite has a rule; comparisons do not need one. */
START_TEST(test_rules_registered)
{
    static const nb_op ops[] = {
        NB_OP_NEG, NB_OP_ABS, NB_OP_SIGN, NB_OP_EXP, NB_OP_LOG, NB_OP_SQRT, NB_OP_RSQRT,
        NB_OP_SQUARE, NB_OP_RECIPROCAL, NB_OP_ERF, NB_OP_RELU, NB_OP_LEAKY_RELU, NB_OP_ELU,
        NB_OP_SIGMOID, NB_OP_TANH, NB_OP_GELU, NB_OP_GELU_TANH, NB_OP_SILU, NB_OP_SOFTPLUS,
        NB_OP_CLIP, NB_OP_CAST, NB_OP_ADD, NB_OP_SUB, NB_OP_MUL, NB_OP_DIV, NB_OP_POW,
        NB_OP_MAXIMUM, NB_OP_MINIMUM, NB_OP_WHERE, NB_OP_SOFTMAX, NB_OP_LOG_SOFTMAX,
        NB_OP_MATMUL, NB_OP_SUM, NB_OP_MEAN, NB_OP_MAX, NB_OP_MIN, NB_OP_RESHAPE,
        NB_OP_PERMUTE, NB_OP_EXPAND, NB_OP_SLICE, NB_OP_SLICE_GRAD, NB_OP_CONCAT, NB_OP_PAD,
    };
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
        ck_assert_msg(nb_vjp_rule(ops[k]) != NULL, "no rule for %s", nb_op_name(ops[k]));
}
END_TEST

static Suite *gradcheck_suite(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc;

    tc = tcase_create("unary");
    tcase_add_loop_test(tc, test_unary, 0, 2 * N_UNARY);
    tcase_add_test(tc, test_unary_scalar);
    suite_add_tcase(s, tc);

    tc = tcase_create("binary");
    tcase_add_loop_test(tc, test_binary, 0, 2 * N_BINOPS * N_BINSHAPES);
    tcase_add_test(tc, test_maximum_minimum_ties);
    tcase_add_loop_test(tc, test_where, 0, 2 * N_WHERE);
    suite_add_tcase(s, tc);

    tc = tcase_create("reduce");
    tcase_add_loop_test(tc, test_reduce, 0, 2 * N_REDUCE);
    tcase_add_test(tc, test_reduce_small);
    tcase_add_test(tc, test_reduce_ties);
    suite_add_tcase(s, tc);

    tc = tcase_create("matmul");
    tcase_add_loop_test(tc, test_matmul, 0, 2 * N_MM);
    suite_add_tcase(s, tc);

    tc = tcase_create("move");
    tcase_add_loop_test(tc, test_move, 0, 2 * N_MOVE);
    suite_add_tcase(s, tc);

    tc = tcase_create("misc");
    tcase_add_test(tc, test_second_unary_plain);
    tcase_add_test(tc, test_second_mul_div);
    tcase_add_test(tc, test_second_matmul);
    tcase_add_test(tc, test_fanout);
    tcase_add_test(tc, test_cast);
    tcase_add_test(tc, test_rules_registered);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return nb_run_suite(gradcheck_suite());
}
