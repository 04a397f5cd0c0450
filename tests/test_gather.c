/* Gather / index_select / embedding, dropout, scaled dot-product attention,
 * and an LSTM cell built from primitives checked against PyTorch.
 *
 * References are computed here by plain loops (NumPy take, the attention
 * formula in double), gradients by f64 central differences (nb_gradcheck),
 * and the LSTM cell by tests/gen_lstm_fixture.py (tests/fixtures_lstm/). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"

#define TOL 1e-6  /* gradcheck: largest relative error */
#define STEP 1e-6 /* gradcheck: central-difference step */

static nb_rng rng;

/* ---- helpers ------------------------------------------------------------ */

static void ok_graph(nb_graph *g, const char *what)
{
    ck_assert_msg(nb_graph_status(g) == NB_OK, "%s: graph failed: %s", what, nb_graph_error(g));
}

static nb_node *const_data(nb_graph *g, nb_dtype dt, int ndim, const int64_t *shape,
                           const void *data)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_from_data(&t, dt, ndim, shape, data), NB_OK);
    nb_node *c = nb_constant(g, &t);
    nb_tensor_release(&t);
    return c;
}

static nb_node *const_i64(nb_graph *g, int ndim, const int64_t *shape, const int64_t *data)
{
    return const_data(g, NB_I64, ndim, shape, data);
}

/* A PARAM of uniform values in [lo, hi). */
static nb_node *param_u(nb_graph *g, nb_dtype dt, int ndim, const int64_t *shape, double lo,
                        double hi)
{
    char name[32];
    snprintf(name, sizeof name, "p%d", nb_graph_num_nodes(g));
    nb_node *p = nb_param(g, name, dt, ndim, shape);
    ck_assert_msg(!nb_node_is_poison(p), "param: %s", nb_graph_error(g));
    ck_assert_int_eq(nb_rng_fill_uniform(&rng, nb_node_value(p), lo, hi), NB_OK);
    return p;
}

/* A CONST of uniform values in [lo, hi). */
static nb_node *const_u(nb_graph *g, nb_dtype dt, int ndim, const int64_t *shape, double lo,
                        double hi)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, dt, ndim, shape), NB_OK);
    ck_assert_int_eq(nb_rng_fill_uniform(&rng, &t, lo, hi), NB_OK);
    nb_node *c = nb_constant(g, &t);
    nb_tensor_release(&t);
    return c;
}

static double *vals(nb_node *n) { return (double *)nb_tensor_data(nb_node_value(n)); }

/* sum(y * w) for a fixed random w of y's shape and dtype. */
static nb_node *wloss(nb_graph *g, nb_node *y)
{
    nb_node *w = const_u(g, nb_node_dtype(y), nb_node_ndim(y), nb_node_shape(y), -1.0, 1.0);
    return nb_sum(g, nb_mul(g, y, w), 0, NULL, false);
}

/* Compile the outputs, run `runs` times in one session, and copy output i of
 * run r into res[r * n + i] (contiguous). */
static void eval_runs(nb_graph *g, int n, nb_node *const *outs, int runs, nb_tensor *res)
{
    ok_graph(g, "eval");
    nb_plan *p = nb_compile(g, n, outs, NULL);
    ck_assert_msg(p != NULL, "compile: %s", nb_last_error());
    nb_session *s = nb_session_new(p);
    ck_assert_ptr_nonnull(s);
    for (int r = 0; r < runs; r++) {
        nb_status st = nb_session_run(s);
        ck_assert_msg(st == NB_OK, "run: %s", nb_last_error());
        for (int i = 0; i < n; i++) {
            nb_tensor v;
            ck_assert_int_eq(nb_session_fetch(s, outs[i], &v), NB_OK);
            ck_assert_int_eq(nb_tensor_contiguous(&v, &res[r * n + i]), NB_OK);
            nb_tensor_release(&v);
        }
    }
    nb_session_free(s);
    nb_plan_free(p);
}

static void eval(nb_graph *g, int n, nb_node *const *outs, nb_tensor *res)
{
    eval_runs(g, n, outs, 1, res);
}

/* Run and expect a run error whose message contains each of the strings. */
static void expect_run_error(nb_graph *g, nb_node *out, const char *s1, const char *s2)
{
    ok_graph(g, "expect_run_error");
    nb_plan *p = nb_compile(g, 1, &out, NULL);
    ck_assert_msg(p != NULL, "compile: %s", nb_last_error());
    nb_session *s = nb_session_new(p);
    ck_assert_ptr_nonnull(s);
    nb_status st = nb_session_run(s);
    const char *msg = nb_last_error();
    ck_assert_msg(st == NB_ERR_ARG, "run returned %s (%s)", nb_status_str(st), msg);
    ck_assert_msg(strstr(msg, s1) && (!s2 || strstr(msg, s2)),
                  "message '%s' lacks '%s' / '%s'", msg, s1, s2 ? s2 : "");
    nb_session_free(s);
    nb_plan_free(p);
}

static void check_grad(nb_graph *g, nb_node *loss, int n, nb_node *const *wrt, const char *what)
{
    ok_graph(g, what);
    double err = INFINITY;
    nb_status s = nb_gradcheck(g, loss, n, wrt, NULL, STEP, &err);
    ck_assert_msg(s == NB_OK, "%s: gradcheck returned %s: %s | graph: %s", what,
                  nb_status_str(s), nb_last_error(), nb_graph_error(g));
    ck_assert_msg(err <= TOL, "%s: max relative error %.3g > %g", what, err, TOL);
}

/* First order on sum(y * w); second order on sum_k sum(d sum(tanh(y) c)/d wrt_k * w_k). */
static void gradcheck_y(nb_graph *g, nb_node *y, int n, nb_node *const *wrt, bool second,
                        const char *what)
{
    ok_graph(g, what);
    nb_node *loss;
    if (!second) {
        loss = wloss(g, y);
    } else {
        nb_node *g1[8];
        nb_status s = nb_grad(g, wloss(g, nb_tanh(g, y)), n, wrt, g1);
        ck_assert_msg(s == NB_OK, "%s: nb_grad: %s", what, nb_graph_error(g));
        loss = wloss(g, g1[0]);
        for (int k = 1; k < n; k++)
            loss = nb_add(g, loss, wloss(g, g1[k]));
    }
    check_grad(g, loss, n, wrt, what);
}

/* NumPy take along axis of a contiguous double array; the reference. */
static void take_ref(const double *x, int ndim, const int64_t *shape, int axis,
                     const int64_t *idx, int64_t K, double *out)
{
    int64_t outer = 1, inner = 1, A = shape[axis];
    for (int d = 0; d < axis; d++)
        outer *= shape[d];
    for (int d = axis + 1; d < ndim; d++)
        inner *= shape[d];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < K; k++) {
            int64_t a = idx[k] < 0 ? idx[k] + A : idx[k];
            for (int64_t i = 0; i < inner; i++)
                out[(o * K + k) * inner + i] = x[(o * A + a) * inner + i];
        }
}

/* ---- gather forward ------------------------------------------------------ */

START_TEST(test_take_hand)
{
    /* np.take([[1,2,3],[4,5,6]], [2,0,-1], axis=1) = [[3,1,3],[6,4,6]] */
    nb_graph *g = nb_graph_new();
    const float xd[] = {1, 2, 3, 4, 5, 6};
    const int32_t id[] = {2, 0, -1};
    nb_node *x = const_data(g, NB_F32, 2, (int64_t[]){2, 3}, xd);
    nb_node *ix = const_data(g, NB_I32, 1, (int64_t[]){3}, id);
    nb_node *y = nb_gather(g, x, 1, ix);
    /* a 0-d index drops the axis: np.take(x, -2, axis=0) = [1,2,3] */
    nb_node *y0 = nb_gather(g, x, 0, const_i64(g, 0, NULL, (int64_t[]){-2}));
    /* integer data moves too: take([10,20,30], [[2,2],[0,-2]]) */
    nb_node *xi = const_i64(g, 1, (int64_t[]){3}, (int64_t[]){10, 20, 30});
    nb_node *yi = nb_gather(g, xi, 0, const_i64(g, 2, (int64_t[]){2, 2}, (int64_t[]){2, 2, 0, -2}));
    ok_graph(g, "take_hand");
    ck_assert_int_eq(nb_node_dtype(yi), NB_I64);
    ck_assert_int_eq(nb_node_ndim(y), 2);
    ck_assert_int_eq(nb_node_shape(y)[0], 2);
    ck_assert_int_eq(nb_node_shape(y)[1], 3);
    ck_assert_int_eq(nb_node_ndim(y0), 1);
    nb_tensor r[3];
    eval(g, 3, (nb_node *[]){y, y0, yi}, r);
    const int64_t wanti[] = {30, 30, 10, 20};
    ck_assert_int_eq(memcmp(nb_tensor_data(&r[2]), wanti, sizeof wanti), 0);
    nb_tensor_release(&r[2]);
    const float want[] = {3, 1, 3, 6, 4, 6};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(((float *)nb_tensor_data(&r[0]))[i], want[i]);
    for (int i = 0; i < 3; i++)
        ck_assert_float_eq(((float *)nb_tensor_data(&r[1]))[i], (float)(i + 1));
    nb_tensor_release(&r[0]);
    nb_tensor_release(&r[1]);
    nb_graph_free(g);
}
END_TEST

/* gather of a (3,4,5) tensor along each axis with 2-D indices (negative and
 * repeated ones), f32 and f64, i32 and i64 indices, against take_ref. */
START_TEST(test_take_axes)
{
    int axis = _i % 3;
    nb_dtype dt = (_i / 3) % 2 ? NB_F64 : NB_F32;
    nb_dtype it = _i / 6 ? NB_I32 : NB_I64;
    const int64_t xs[3] = {3, 4, 5};
    const int64_t idx[6] = {-1, 0, 2, 0, -3, 2};
    const int64_t is[2] = {2, 3};
    nb_graph *g = nb_graph_new();
    nb_node *x = const_u(g, dt, 3, xs, -2, 2);
    int32_t idx32[6];
    for (int k = 0; k < 6; k++)
        idx32[k] = (int32_t)idx[k];
    nb_node *ix = it == NB_I64 ? const_i64(g, 2, is, idx) : const_data(g, NB_I32, 2, is, idx32);
    nb_node *y = nb_gather(g, x, axis, ix);
    ok_graph(g, "take_axes");
    ck_assert_int_eq(nb_node_ndim(y), 4);
    ck_assert_int_eq(nb_node_numel(y), 60 / xs[axis] * 6);
    nb_tensor r;
    eval(g, 1, &y, &r);
    nb_tensor xd;
    ck_assert_int_eq(nb_tensor_empty(&xd, NB_F64, 3, xs), NB_OK);
    ck_assert_int_eq(nb_tensor_copy_into(&xd, nb_node_value(x)), NB_OK);
    double ref[120];
    take_ref(nb_tensor_data(&xd), 3, xs, axis, idx, 6, ref);
    for (int64_t i = 0; i < nb_node_numel(y); i++)
        ck_assert_msg(nb_tensor_get_flat(&r, i) == ref[i], "axis %d elem %lld: %g vs %g", axis,
                      (long long)i, nb_tensor_get_flat(&r, i), ref[i]);
    nb_tensor_release(&r);
    nb_tensor_release(&xd);
    nb_graph_free(g);
}
END_TEST

/* A large gather on the thread pool (rows of many sizes) matches the reference. */
START_TEST(test_take_large)
{
    const int64_t xs[2] = {1000, 37};
    int64_t idx[3000];
    for (int k = 0; k < 3000; k++)
        idx[k] = (int64_t)nb_rng_below(&rng, 2000) - 1000;
    nb_graph *g = nb_graph_new();
    nb_node *x = const_u(g, NB_F64, 2, xs, -1, 1);
    nb_node *y = nb_gather(g, x, 0, const_i64(g, 1, (int64_t[]){3000}, idx));
    nb_node *y1 = nb_gather(g, x, 1, const_i64(g, 1, (int64_t[]){5}, (int64_t[]){36, 0, -37, 5, 5}));
    nb_tensor r[2];
    eval(g, 2, (nb_node *[]){y, y1}, r);
    double *ref = malloc(sizeof(double) * 3000 * 37);
    take_ref(vals(x), 2, xs, 0, idx, 3000, ref);
    ck_assert_int_eq(memcmp(ref, nb_tensor_data(&r[0]), sizeof(double) * 3000 * 37), 0);
    take_ref(vals(x), 2, xs, 1, (int64_t[]){36, 0, -37, 5, 5}, 5, ref);
    ck_assert_int_eq(memcmp(ref, nb_tensor_data(&r[1]), sizeof(double) * 1000 * 5), 0);
    free(ref);
    nb_tensor_release(&r[0]);
    nb_tensor_release(&r[1]);
    nb_graph_free(g);
}
END_TEST

START_TEST(test_index_select_embedding)
{
    nb_graph *g = nb_graph_new();
    /* index_select(x (4,3), 0, [3,1,3]) and index_select(x, 1, [2,-3]) */
    nb_node *x = const_u(g, NB_F32, 2, (int64_t[]){4, 3}, -1, 1);
    nb_node *a = nb_index_select(g, x, 0, const_i64(g, 1, (int64_t[]){3}, (int64_t[]){3, 1, 3}));
    nb_node *b = nb_index_select(g, x, -1, const_i64(g, 1, (int64_t[]){2}, (int64_t[]){2, -3}));
    /* embedding(weight (5,3), indices (2,2)) -> (2,2,3) */
    nb_node *w = const_u(g, NB_F32, 2, (int64_t[]){5, 3}, -1, 1);
    nb_node *e = nb_embedding(g, w, const_i64(g, 2, (int64_t[]){2, 2}, (int64_t[]){4, 0, 4, 2}));
    ok_graph(g, "index_select_embedding");
    ck_assert_int_eq(nb_node_ndim(e), 3);
    ck_assert_int_eq(nb_node_shape(e)[2], 3);
    nb_tensor r[3];
    eval(g, 3, (nb_node *[]){a, b, e}, r);
    const float *xv = nb_tensor_data(nb_node_value(x)), *wv = nb_tensor_data(nb_node_value(w));
    const int ra[3] = {3, 1, 3}, cb[2] = {2, 0}, re[4] = {4, 0, 4, 2};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            ck_assert_float_eq(((float *)nb_tensor_data(&r[0]))[i * 3 + j], xv[ra[i] * 3 + j]);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++)
            ck_assert_float_eq(((float *)nb_tensor_data(&r[1]))[i * 2 + j], xv[i * 3 + cb[j]]);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
            ck_assert_float_eq(((float *)nb_tensor_data(&r[2]))[i * 3 + j], wv[re[i] * 3 + j]);
    for (int i = 0; i < 3; i++)
        nb_tensor_release(&r[i]);
    nb_graph_free(g);
}
END_TEST

/* The embedding gradient is a scatter-add: repeated rows accumulate, unused
 * rows get zero (checked against a hand loop, f32 and f64). */
START_TEST(test_embedding_grad_scatter)
{
    nb_dtype dt = _i ? NB_F64 : NB_F32;
    nb_graph *g = nb_graph_new();
    nb_node *w = param_u(g, dt, 2, (int64_t[]){6, 4}, -1, 1);
    const int64_t id[5] = {1, 3, 1, -1, 1};
    nb_node *e = nb_embedding(g, w, const_i64(g, 2, (int64_t[]){1, 5}, id));
    nb_node *c = const_u(g, dt, 3, (int64_t[]){1, 5, 4}, -1, 1);
    nb_node *loss = nb_sum(g, nb_mul(g, e, c), 0, NULL, false);
    nb_node *gw;
    ck_assert_int_eq(nb_grad(g, loss, 1, &w, &gw), NB_OK);
    ck_assert_int_eq(nb_node_op(gw), NB_OP_GATHER_GRAD);
    nb_tensor r;
    eval(g, 1, &gw, &r);
    nb_tensor cv;
    ck_assert_int_eq(nb_tensor_empty(&cv, NB_F64, 3, (int64_t[]){1, 5, 4}), NB_OK);
    ck_assert_int_eq(nb_tensor_copy_into(&cv, nb_node_value(c)), NB_OK);
    double ref[24] = {0};
    for (int k = 0; k < 5; k++)
        for (int j = 0; j < 4; j++)
            ref[((id[k] + 6) % 6) * 4 + j] += ((double *)nb_tensor_data(&cv))[k * 4 + j];
    for (int i = 0; i < 24; i++)
        ck_assert_msg(fabs(nb_tensor_get_flat(&r, i) - ref[i]) <= (dt == NB_F32 ? 1e-6 : 1e-15),
                      "elem %d: %g vs %g", i, nb_tensor_get_flat(&r, i), ref[i]);
    /* rows 0, 2, 4 are never gathered: exactly zero */
    for (int j = 0; j < 4; j++)
        ck_assert(nb_tensor_get_flat(&r, 0 * 4 + j) == 0 && nb_tensor_get_flat(&r, 2 * 4 + j) == 0);
    nb_tensor_release(&r);
    nb_tensor_release(&cv);
    nb_graph_free(g);
}
END_TEST

/* A scatter-add with many repeated indices over a wide row (thread pool over
 * columns): the same result with 1 and 2 threads, and equal to the loop. */
START_TEST(test_scatter_large)
{
    const int64_t ws[2] = {7, 700};
    int64_t idx[400];
    for (int k = 0; k < 400; k++)
        idx[k] = (int64_t)nb_rng_below(&rng, 14) - 7;
    nb_graph *g = nb_graph_new();
    nb_node *w = param_u(g, NB_F64, 2, ws, -1, 1);
    nb_node *e = nb_embedding(g, w, const_i64(g, 1, (int64_t[]){400}, idx));
    nb_node *c = const_u(g, NB_F64, 2, (int64_t[]){400, 700}, -1, 1);
    nb_node *gw;
    ck_assert_int_eq(nb_grad(g, nb_sum(g, nb_mul(g, e, c), 0, NULL, false), 1, &w, &gw), NB_OK);
    double *ref = calloc(7 * 700, sizeof(double));
    for (int k = 0; k < 400; k++)
        for (int j = 0; j < 700; j++)
            ref[((idx[k] + 7) % 7) * 700 + j] += vals(c)[k * 700 + j];
    int saved = nb_get_num_threads();
    nb_tensor r1, r2;
    nb_set_num_threads(1);
    eval(g, 1, &gw, &r1);
    nb_set_num_threads(2);
    eval(g, 1, &gw, &r2);
    nb_set_num_threads(saved);
    ck_assert_int_eq(memcmp(nb_tensor_data(&r1), nb_tensor_data(&r2), sizeof(double) * 4900), 0);
    for (int i = 0; i < 4900; i++)
        ck_assert_msg(fabs(((double *)nb_tensor_data(&r1))[i] - ref[i]) <= 1e-12, "elem %d", i);
    free(ref);
    nb_tensor_release(&r1);
    nb_tensor_release(&r2);
    nb_graph_free(g);
}
END_TEST

/* ---- gather gradients ------------------------------------------------------ */

/* f64 gradchecks of gather along each axis (negative and repeated indices),
 * first and second order (the second goes through GATHER_GRAD's rule). */
START_TEST(test_gather_gradcheck)
{
    int axis = _i % 3;
    bool second = _i >= 3;
    nb_graph *g = nb_graph_new();
    nb_node *x = param_u(g, NB_F64, 3, (int64_t[]){3, 4, 3}, -1, 1);
    nb_node *ix = const_i64(g, 2, (int64_t[]){2, 2}, (int64_t[]){-1, 0, 2, -1});
    nb_node *y = nb_gather(g, x, axis, ix);
    char what[64];
    snprintf(what, sizeof what, "gather axis %d%s", axis, second ? " (2nd order)" : "");
    gradcheck_y(g, y, 1, &x, second, what);
    nb_graph_free(g);
}
END_TEST

START_TEST(test_embedding_gradcheck)
{
    bool second = _i;
    nb_graph *g = nb_graph_new();
    nb_node *w = param_u(g, NB_F64, 2, (int64_t[]){5, 3}, -1, 1);
    nb_node *e = nb_embedding(g, w, const_i64(g, 2, (int64_t[]){2, 3}, (int64_t[]){4, 0, 4, 1, -1, 0}));
    nb_node *s = nb_index_select(g, w, 1, const_i64(g, 1, (int64_t[]){4}, (int64_t[]){2, 2, 0, -2}));
    nb_node *y = nb_add(g, nb_sum(g, e, 0, NULL, false), nb_sum(g, nb_square(g, s), 0, NULL, false));
    gradcheck_y(g, y, 1, &w, second, second ? "embedding (2nd order)" : "embedding");
    nb_graph_free(g);
}
END_TEST

/* GATHER_GRAD as a function of its own input: u -> vjp of gather with seed u;
 * its rule (a GATHER) is checked directly, and again to second order. */
START_TEST(test_gather_grad_gradcheck)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = param_u(g, NB_F64, 2, (int64_t[]){4, 3}, -1, 1);
    nb_node *ix = const_i64(g, 1, (int64_t[]){5}, (int64_t[]){1, -1, 1, 0, 1});
    nb_node *y = nb_gather(g, x, 0, ix);
    nb_node *u = param_u(g, NB_F64, 2, (int64_t[]){5, 3}, -1, 1);
    nb_node *gx;
    ck_assert_int_eq(nb_vjp(g, y, u, 1, &x, &gx), NB_OK);
    ck_assert_int_eq(nb_node_op(gx), NB_OP_GATHER_GRAD);
    gradcheck_y(g, nb_mul(g, gx, gx), 1, &u, false, "gather_grad");
    gradcheck_y(g, nb_mul(g, gx, gx), 1, &u, true, "gather_grad (2nd order)");
    nb_graph_free(g);
}
END_TEST

/* ---- gather errors ----------------------------------------------------- */

START_TEST(test_gather_out_of_range)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = const_u(g, NB_F32, 2, (int64_t[]){5, 2}, -1, 1);
    nb_node *y = nb_gather(g, x, 0, const_i64(g, 2, (int64_t[]){2, 2}, (int64_t[]){0, 4, 7, 1}));
    expect_run_error(g, y, "index 7 at position (1,0)", "axis 0 of size 5");
    nb_graph_free(g);

    g = nb_graph_new();
    x = const_u(g, NB_F64, 2, (int64_t[]){5, 2}, -1, 1);
    y = nb_embedding(g, x, const_data(g, NB_I32, 1, (int64_t[]){3}, (int32_t[]){-5, 0, -6}));
    expect_run_error(g, y, "index -6 at position (2)", "size 5");
    nb_graph_free(g);

    /* the gradient's scatter-add validates too (same indices) */
    g = nb_graph_new();
    nb_node *w = param_u(g, NB_F64, 2, (int64_t[]){3, 2}, -1, 1);
    y = nb_embedding(g, w, const_i64(g, 1, (int64_t[]){2}, (int64_t[]){2, 3}));
    nb_node *gw;
    ck_assert_int_eq(nb_grad(g, nb_sum(g, y, 0, NULL, false), 1, &w, &gw), NB_OK);
    expect_run_error(g, gw, "index 3 at position (1)", "size 3");
    nb_graph_free(g);
}
END_TEST

/* Build-time errors: case c makes one bad node in a fresh graph. */
static void bad_build(nb_graph *g, int c)
{
    nb_node *x = const_u(g, NB_F32, 2, (int64_t[]){5, 2}, -1, 1);
    nb_node *i1 = const_i64(g, 1, (int64_t[]){1}, (int64_t[]){0});
    nb_node *q = const_u(g, NB_F32, 2, (int64_t[]){4, 3}, -1, 1);
    nb_node *k = const_u(g, NB_F32, 2, (int64_t[]){5, c == 5 ? 2 : 3}, -1, 1);
    nb_node *v = const_u(g, NB_F32, 2, (int64_t[]){5, 2}, -1, 1);
    nb_node *m44 = const_u(g, NB_F32, 2, (int64_t[]){4, 4}, -1, 1);
    nb_node *m64 = const_u(g, NB_F64, 2, (int64_t[]){4, 5}, -1, 1);
    switch (c) {
    case 0: nb_gather(g, x, 0, const_u(g, NB_F32, 1, (int64_t[]){2}, 0, 1)); break;
    case 1: nb_gather(g, x, 2, i1); break;
    case 2: nb_index_select(g, x, 0, const_i64(g, 2, (int64_t[]){1, 1}, (int64_t[]){0})); break;
    case 3: nb_embedding(g, nb_reshape(g, x, 3, (int64_t[]){5, 2, 1}), i1); break;
    case 4: nb_dropout(g, x, 1.5, true); break;
    case 5: nb_scaled_dot_product_attention(g, q, k, v, NULL, false); break;
    case 6: nb_scaled_dot_product_attention(g, q, k, v, m44, false); break;
    case 7: nb_scaled_dot_product_attention(g, q, k, v, m64, false); break;
    default: nb_dropout(g, x, NAN, false); break;
    }
}

START_TEST(test_build_errors)
{
    static const struct { nb_status st; const char *sub; } want[9] = {
        {NB_ERR_DTYPE, "gather"}, {NB_ERR_ARG, "axis 2"}, {NB_ERR_SHAPE, "1-D"},
        {NB_ERR_SHAPE, "embedding"}, {NB_ERR_ARG, "dropout"},
        {NB_ERR_SHAPE, "scaled_dot_product_attention"}, {NB_ERR_SHAPE, "mask"},
        {NB_ERR_DTYPE, "mask"}, {NB_ERR_ARG, "outside [0, 1]"}};
    nb_graph *g = nb_graph_new();
    bad_build(g, _i);
    ck_assert_msg(nb_graph_status(g) == want[_i].st && strstr(nb_graph_error(g), want[_i].sub),
                  "case %d: status %s, message '%s'", _i, nb_status_str(nb_graph_status(g)),
                  nb_graph_error(g));
    nb_graph_free(g);
}
END_TEST

/* ---- dropout ------------------------------------------------------------------ */

#define DROP_N 100000

/* One training dropout of ones(DROP_N) and d sum(y) / d x, over two runs of
 * one session; y[r], gx[r] are the values of run r. */
static void dropout_runs(uint64_t seed, double p, nb_dtype dt, nb_tensor y[2], nb_tensor gx[2])
{
    nb_graph *g = nb_graph_new();
    nb_graph_set_seed(g, seed);
    nb_node *x = nb_param(g, "x", dt, 1, (int64_t[]){DROP_N});
    ck_assert_int_eq(nb_tensor_fill(nb_node_value(x), 1.0), NB_OK);
    nb_node *d = nb_dropout(g, x, p, true);
    nb_node *gd;
    ck_assert_int_eq(nb_grad(g, nb_sum(g, d, 0, NULL, false), 1, &x, &gd), NB_OK);
    nb_tensor r[4];
    eval_runs(g, 2, (nb_node *[]){d, gd}, 2, r);
    for (int k = 0; k < 2; k++) {
        y[k] = r[2 * k];
        gx[k] = r[2 * k + 1];
    }
    nb_graph_free(g);
}

static void release4(nb_tensor *a, nb_tensor *b)
{
    for (int i = 0; i < 2; i++) {
        nb_tensor_release(&a[i]);
        nb_tensor_release(&b[i]);
    }
}

/* The fraction of zeros is near p, survivors are exactly x / (1 - p), and the
 * gradient of sum(dropout(x)) is exactly mask / (1 - p) (same mask). */
START_TEST(test_dropout_stats_and_grad)
{
    static const double ps[3] = {0.1, 0.3, 0.75};
    double p = ps[_i % 3];
    nb_dtype dt = _i >= 3 ? NB_F64 : NB_F32;
    nb_tensor y[2], gx[2];
    dropout_runs(42, p, dt, y, gx);
    double scale = dt == NB_F32 ? (double)(float)(1.0 / (1.0 - p)) : 1.0 / (1.0 - p);
    for (int r = 0; r < 2; r++) {
        int64_t zeros = 0;
        for (int64_t i = 0; i < DROP_N; i++) {
            double v = nb_tensor_get_flat(&y[r], i), gv = nb_tensor_get_flat(&gx[r], i);
            ck_assert_msg(v == 0 || v == scale, "p %g elem %lld: %.17g", p, (long long)i, v);
            ck_assert_msg(gv == v, "p %g run %d elem %lld: grad %.17g but output %.17g", p, r,
                          (long long)i, gv, v);
            zeros += v == 0;
        }
        double frac = (double)zeros / DROP_N;
        double sd = sqrt(p * (1 - p) / DROP_N);
        ck_assert_msg(fabs(frac - p) <= 5 * sd, "p %g: zero fraction %g", p, frac);
    }
    release4(y, gx);
}
END_TEST

/* Same seed and run => same mask; another run index or seed => another mask;
 * the thread count does not matter. */
START_TEST(test_dropout_repeatable)
{
    nb_tensor a[2], ga[2], b[2], gb[2], c[2], gc[2];
    int saved = nb_get_num_threads();
    nb_set_num_threads(2);
    dropout_runs(7, 0.5, NB_F32, a, ga);
    nb_set_num_threads(1);
    dropout_runs(7, 0.5, NB_F32, b, gb);
    nb_set_num_threads(saved);
    dropout_runs(8, 0.5, NB_F32, c, gc);
    size_t nbytes = sizeof(float) * DROP_N;
    for (int r = 0; r < 2; r++)
        ck_assert_msg(memcmp(nb_tensor_data(&a[r]), nb_tensor_data(&b[r]), nbytes) == 0,
                      "run %d differs between identical sessions", r);
    int64_t diff01 = 0, diff_seed = 0;
    for (int64_t i = 0; i < DROP_N; i++) {
        diff01 += (nb_tensor_get_flat(&a[0], i) == 0) != (nb_tensor_get_flat(&a[1], i) == 0);
        diff_seed += (nb_tensor_get_flat(&a[0], i) == 0) != (nb_tensor_get_flat(&c[0], i) == 0);
    }
    /* independent masks of p = 0.5 disagree on about half the elements */
    ck_assert_msg(diff01 > DROP_N * 0.45 && diff01 < DROP_N * 0.55, "runs 0/1 differ on %lld",
                  (long long)diff01);
    ck_assert_msg(diff_seed > DROP_N * 0.45 && diff_seed < DROP_N * 0.55, "seeds differ on %lld",
                  (long long)diff_seed);
    release4(a, ga);
    release4(b, gb);
    release4(c, gc);
}
END_TEST

/* Two dropouts of one graph draw independent masks; eval and p = 0 return x
 * itself; p = 1 gives zeros (and a zero gradient). */
START_TEST(test_dropout_modes)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = param_u(g, NB_F64, 2, (int64_t[]){100, 100}, 0.5, 1.5);
    ck_assert_ptr_eq(nb_dropout(g, x, 0.5, false), x);
    ck_assert_ptr_eq(nb_dropout(g, x, 0.0, true), x);
    nb_node *d1 = nb_dropout(g, x, 0.5, true), *d2 = nb_dropout(g, x, 0.5, true);
    nb_node *z = nb_dropout(g, x, 1.0, true);
    nb_node *gz;
    ck_assert_int_eq(nb_grad(g, nb_sum(g, z, 0, NULL, false), 1, &x, &gz), NB_OK);
    nb_tensor r[3];
    eval(g, 3, (nb_node *[]){d1, d2, z}, r);
    nb_tensor rg;
    eval(g, 1, &gz, &rg);
    int64_t same = 0;
    for (int64_t i = 0; i < 10000; i++) {
        double a = nb_tensor_get_flat(&r[0], i), b = nb_tensor_get_flat(&r[1], i);
        ck_assert(a == 0 || a == vals(x)[i] * 2.0);
        same += (a == 0) == (b == 0);
        ck_assert(nb_tensor_get_flat(&r[2], i) == 0 && nb_tensor_get_flat(&rg, i) == 0);
    }
    ck_assert_msg(same > 4500 && same < 5500, "two dropouts agree on %lld of 10000",
                  (long long)same);
    for (int i = 0; i < 3; i++)
        nb_tensor_release(&r[i]);
    nb_tensor_release(&rg);
    nb_graph_free(g);
}
END_TEST

/* The kernel's own check of p, called directly. */
START_TEST(test_dropout_kernel_args)
{
    nb_tensor x, y;
    ck_assert_int_eq(nb_tensor_zeros(&x, NB_F32, 1, (int64_t[]){8}), NB_OK);
    ck_assert_int_eq(nb_tensor_zeros(&y, NB_F32, 1, (int64_t[]){8}), NB_OK);
    nb_dropout_params p = {-0.1, 1};
    const nb_tensor *in[1] = {&x};
    nb_kernel_call c = {NB_OP_DROPOUT, 1, in, &y, &p, NULL, 0, 0};
    ck_assert_int_eq(nb_cpu_backend()->kernels[NB_OP_DROPOUT](&c), NB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "outside [0, 1]"));
    nb_tensor_release(&x);
    nb_tensor_release(&y);
}
END_TEST

/* ---- attention --------------------------------------------------------------- */

/* out[b] = softmax(q[b] k[b]^T / sqrt(d) + bias) v[b] in double, where bias is
 * -inf where keep is 0 (keep NULL: all kept) plus add (NULL: none), each of
 * (lq, lk) shared over the batch. Also the weights w (B, lq, lk). */
static void sdpa_ref(const double *q, const double *k, const double *v, int64_t B, int64_t lq,
                     int64_t lk, int64_t d, int64_t dv, const uint8_t *keep, const double *add,
                     double *out, double *w)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < lq; i++) {
            double s[64], m = -INFINITY, sum = 0;
            for (int64_t j = 0; j < lk; j++) {
                double dot = 0;
                for (int64_t t = 0; t < d; t++)
                    dot += q[(b * lq + i) * d + t] * k[(b * lk + j) * d + t];
                s[j] = dot / sqrt((double)d) + (add ? add[i * lk + j] : 0);
                if (keep && !keep[i * lk + j])
                    s[j] = -INFINITY;
                m = s[j] > m ? s[j] : m;
            }
            for (int64_t j = 0; j < lk; j++)
                sum += s[j] = exp(s[j] - m);
            for (int64_t j = 0; j < lk; j++)
                w[(b * lq + i) * lk + j] = s[j] / sum;
            for (int64_t t = 0; t < dv; t++) {
                double o = 0;
                for (int64_t j = 0; j < lk; j++)
                    o += w[(b * lq + i) * lk + j] * v[(b * lk + j) * dv + t];
                out[(b * lq + i) * dv + t] = o;
            }
        }
}

/* Cases: 0 plain, 1 causal, 2 bool mask, 3 additive mask, 4 causal + square,
 * run in f64 against sdpa_ref with batch (2, 3) and lq != lk. */
START_TEST(test_sdpa_forward)
{
    int mode = _i;
    const int64_t B0 = 2, B1 = 3, B = 6, lq = mode == 4 ? 5 : 4, lk = 5, d = 3, dv = 2;
    nb_graph *g = nb_graph_new();
    nb_node *q = const_u(g, NB_F64, 4, (int64_t[]){B0, B1, lq, d}, -1.5, 1.5);
    nb_node *k = const_u(g, NB_F64, 4, (int64_t[]){B0, B1, lk, d}, -1.5, 1.5);
    nb_node *v = const_u(g, NB_F64, 4, (int64_t[]){B0, B1, lk, dv}, -1, 1);
    uint8_t keep[64];
    double add[64];
    for (int64_t i = 0; i < lq * lk; i++) {
        keep[i] = (i % 3) != 1 || i % lk == 0; /* at least key 0 kept per row */
        add[i] = nb_rng_uniform(&rng) * 2 - 1;
    }
    if (mode == 3)
        add[2] = -INFINITY;
    nb_node *mask = NULL;
    if (mode == 2)
        mask = const_data(g, NB_BOOL, 2, (int64_t[]){lq, lk}, keep);
    if (mode == 3)
        mask = const_data(g, NB_F64, 3, (int64_t[]){1, lq, lk}, add);
    bool causal = mode == 1 || mode == 4;
    nb_node *y = nb_scaled_dot_product_attention(g, q, k, v, mask, causal);
    ok_graph(g, "sdpa");
    ck_assert_int_eq(nb_node_ndim(y), 4);
    ck_assert_int_eq(nb_node_shape(y)[2], lq);
    ck_assert_int_eq(nb_node_shape(y)[3], dv);
    nb_node *wts = nb_node_input(y, 0); /* the softmax weights */
    ck_assert_int_eq(nb_node_op(wts), NB_OP_SOFTMAX);
    nb_tensor r[2];
    eval(g, 2, (nb_node *[]){y, wts}, r);
    uint8_t ckeep[64];
    for (int64_t i = 0; i < lq; i++)
        for (int64_t j = 0; j < lk; j++)
            ckeep[i * lk + j] = j <= i;
    double out[6 * 5 * 2], w[6 * 5 * 5];
    sdpa_ref(vals(q), vals(k), vals(v), B, lq, lk, d, dv,
             causal ? ckeep : mode == 2 ? keep : NULL, mode == 3 ? add : NULL, out, w);
    for (int64_t i = 0; i < B * lq * dv; i++)
        ck_assert_msg(fabs(nb_tensor_get_flat(&r[0], i) - out[i]) <= 1e-14,
                      "mode %d out %lld: %.17g vs %.17g", mode, (long long)i,
                      nb_tensor_get_flat(&r[0], i), out[i]);
    for (int64_t i = 0; i < B * lq * lk; i++)
        ck_assert_msg(fabs(nb_tensor_get_flat(&r[1], i) - w[i]) <= 1e-14, "mode %d w %lld", mode,
                      (long long)i);
    if (causal) /* the upper triangle of the weights is exactly zero */
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < lq; i++)
                for (int64_t j = i + 1; j < lk; j++)
                    ck_assert(nb_tensor_get_flat(&r[1], (b * lq + i) * lk + j) == 0.0);
    nb_tensor_release(&r[0]);
    nb_tensor_release(&r[1]);
    nb_graph_free(g);
}
END_TEST

/* f64 gradchecks for q, k, v: 0 plain, 1 causal, 2 bool mask, 3 additive mask
 * (and its gradient), 4 plain 2nd order, 5 causal 2nd order. */
START_TEST(test_sdpa_gradcheck)
{
    int mode = _i;
    bool second = mode >= 4;
    nb_graph *g = nb_graph_new();
    nb_node *wrt[4];
    int n = 0;
    nb_node *q = wrt[n++] = param_u(g, NB_F64, 3, (int64_t[]){2, 4, 3}, -1, 1);
    nb_node *k = wrt[n++] = param_u(g, NB_F64, 3, (int64_t[]){2, 4, 3}, -1, 1);
    nb_node *v = wrt[n++] = param_u(g, NB_F64, 3, (int64_t[]){2, 4, 2}, -1, 1);
    nb_node *mask = NULL;
    if (mode == 2)
        mask = const_data(g, NB_BOOL, 2, (int64_t[]){4, 4},
                          (uint8_t[]){1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1});
    if (mode == 3)
        mask = wrt[n++] = param_u(g, NB_F64, 2, (int64_t[]){4, 4}, -1, 1);
    bool causal = mode == 1 || mode == 5;
    nb_node *y = nb_scaled_dot_product_attention(g, q, k, v, mask, causal);
    char what[64];
    snprintf(what, sizeof what, "sdpa mode %d", mode);
    gradcheck_y(g, y, n, wrt, second, what);
    nb_graph_free(g);
}
END_TEST


/* ---- LSTM cell vs PyTorch ------------------------------------------------------ */

static nb_tensor load_lstm(const char *name)
{
    const char *fx = getenv("NABLA_FIXTURES");
    ck_assert_msg(fx != NULL, "NABLA_FIXTURES is not set (it points at tests/fixtures)");
    char path[1024];
    snprintf(path, sizeof path, "%s/../fixtures_lstm/%s.npy", fx, name);
    nb_tensor t = {0};
    nb_status s = nb_npy_load(path, &t);
    ck_assert_msg(s == NB_OK, "%s: %s (regenerate with tests/gen_lstm_fixture.py)", path,
                  nb_last_error());
    ck_assert_int_eq(t.dtype, NB_F32);
    return t;
}

static nb_node *lstm_param(nb_graph *g, const char *name)
{
    nb_tensor t = load_lstm(name);
    nb_node *p = nb_param(g, name, NB_F32, t.ndim, t.shape);
    ck_assert_int_eq(nb_tensor_copy_into(nb_node_value(p), &t), NB_OK);
    nb_tensor_release(&t);
    return p;
}

/* |got - want| <= 1e-5 * max|want| elementwise, and equal shapes. */
static void expect_close(const nb_tensor *got, const char *name)
{
    nb_tensor want = load_lstm(name);
    ck_assert_msg(nb_shape_equal(got->ndim, got->shape, want.ndim, want.shape), "%s: shape", name);
    double scale = nb_tensor_max_abs(&want), tol = 1e-5 * (scale > 1e-3 ? scale : 1e-3);
    for (int64_t i = 0; i < nb_tensor_numel(&want); i++) {
        double a = nb_tensor_get_flat(got, i), b = nb_tensor_get_flat(&want, i);
        ck_assert_msg(fabs(a - b) <= tol, "%s[%lld]: %.9g vs torch %.9g (tol %.3g)", name,
                      (long long)i, a, b, tol);
    }
    nb_tensor_release(&want);
}

/* nn.LSTMCell from primitives:
 *   gates = x W_ih^T + b_ih + h W_hh^T + b_hh,  split into i, f, g, o
 *   c' = sigmoid(f) c + sigmoid(i) tanh(g),  h' = sigmoid(o) tanh(c')
 * forward and d sum(h' r1 + c' r2) / d (x, h, c, W_ih, W_hh, b_ih, b_hh). */
START_TEST(test_lstm_cell_torch)
{
    static const char *names[7] = {"input", "hx", "cx", "weight_ih", "weight_hh", "bias_ih",
                                   "bias_hh"};
    nb_graph *g = nb_graph_new();
    nb_node *p[7];
    for (int i = 0; i < 7; i++)
        p[i] = lstm_param(g, names[i]);
    nb_node *x = p[0], *h = p[1], *c = p[2];
    int64_t H = nb_node_shape(h)[1];
    nb_node *gates = nb_add(g, nb_add(g, nb_matmul_t(g, x, p[3], false, true), p[5]),
                            nb_add(g, nb_matmul_t(g, h, p[4], false, true), p[6]));
    nb_node *gt[4];
    ck_assert_int_eq(nb_split(g, gates, 1, 4, (int64_t[]){H, H, H, H}, gt), 0);
    nb_node *ig = nb_sigmoid(g, gt[0]), *fg = nb_sigmoid(g, gt[1]);
    nb_node *gg = nb_tanh(g, gt[2]), *og = nb_sigmoid(g, gt[3]);
    nb_node *c1 = nb_add(g, nb_mul(g, fg, c), nb_mul(g, ig, gg));
    nb_node *h1 = nb_mul(g, og, nb_tanh(g, c1));
    nb_tensor r1t = load_lstm("r1"), r2t = load_lstm("r2");
    nb_node *r1 = nb_constant(g, &r1t), *r2 = nb_constant(g, &r2t);
    nb_tensor_release(&r1t);
    nb_tensor_release(&r2t);
    nb_node *loss = nb_sum(g, nb_add(g, nb_mul(g, h1, r1), nb_mul(g, c1, r2)), 0, NULL, false);
    nb_node *grads[7];
    ck_assert_msg(nb_grad(g, loss, 7, p, grads) == NB_OK, "grad: %s", nb_graph_error(g));
    nb_node *outs[9] = {h1, c1};
    for (int i = 0; i < 7; i++)
        outs[2 + i] = grads[i];
    nb_tensor r[9];
    eval(g, 9, outs, r);
    expect_close(&r[0], "h1");
    expect_close(&r[1], "c1");
    for (int i = 0; i < 7; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "grad_%s", names[i]);
        expect_close(&r[2 + i], nm);
    }
    for (int i = 0; i < 9; i++)
        nb_tensor_release(&r[i]);
    nb_graph_free(g);
}
END_TEST

/* ---- suite -------------------------------------------------------------------- */

static void setup(void) { nb_rng_init(&rng, 20261124); }

int main(void)
{
    Suite *s = suite_create("gather");
    TCase *tc = tcase_create("gather");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_take_hand);
    tcase_add_loop_test(tc, test_take_axes, 0, 12);
    tcase_add_test(tc, test_take_large);
    tcase_add_test(tc, test_index_select_embedding);
    tcase_add_loop_test(tc, test_embedding_grad_scatter, 0, 2);
    tcase_add_test(tc, test_scatter_large);
    tcase_add_loop_test(tc, test_gather_gradcheck, 0, 6);
    tcase_add_loop_test(tc, test_embedding_gradcheck, 0, 2);
    tcase_add_test(tc, test_gather_grad_gradcheck);
    tcase_add_test(tc, test_gather_out_of_range);
    tcase_add_loop_test(tc, test_build_errors, 0, 9);
    suite_add_tcase(s, tc);

    tc = tcase_create("dropout");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_loop_test(tc, test_dropout_stats_and_grad, 0, 6);
    tcase_add_test(tc, test_dropout_repeatable);
    tcase_add_test(tc, test_dropout_modes);
    tcase_add_test(tc, test_dropout_kernel_args);
    suite_add_tcase(s, tc);

    tc = tcase_create("attention");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_loop_test(tc, test_sdpa_forward, 0, 5);
    tcase_add_loop_test(tc, test_sdpa_gradcheck, 0, 6);
    suite_add_tcase(s, tc);

    tc = tcase_create("lstm");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_lstm_cell_torch);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
