/* Pooling and nearest-neighbour upsampling: forward and gradient against
 * naive references written here from PyTorch's definitions, f64 gradient
 * checks for every attribute that changes the code path, adjoint identities
 * of the linear gradient ops, PyTorch's tie and NaN rules of max pooling,
 * and the builders' error messages.
 *
 * Reference definitions (one dim; windows are products of two dims):
 *   out = floor_or_ceil((in + 2p - k) / s) + 1, minus 1 in ceil mode when the
 *   last window would start at or past in + p;
 *   window o covers padded coordinates [o*s - p, o*s - p + k); positions
 *   outside [0, in) are padding (never the max), and for avg with
 *   count_include_pad those below in + p count in the divisor;
 *   adaptive: [floor(o*in/out), ceil((o+1)*in/out)).
 *   max pool gradient: to the last NaN of the window if there is one, else to
 *   the first position (row-major) holding the maximum. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"
#include "autodiff/vjp.h"
#include "kernels/cpu.h"

#define GC_TOL 1e-6
#define GC_STEP 1e-6

static nb_rng rng;

/* ---- naive references ---------------------------------------------------- */

typedef struct pcase {
    int64_t n, c, h, w;
    int64_t kh, kw, sh, sw, ph, pw;
    int ceil_mode, cip;
} pcase;

static int64_t ref_out(int64_t in, int64_t k, int64_t s, int64_t p, int ceil_mode)
{
    double v = (double)(in + 2 * p - k) / (double)s;
    int64_t o = (int64_t)(ceil_mode ? ceil(v) : floor(v)) + 1;
    if (ceil_mode && (o - 1) * s >= in + p)
        o--;
    return o;
}

/* Flat index of the window's max (see the top), or -1 if the window is empty. */
static int64_t ref_argmax(const double *x, int64_t H, int64_t W, int64_t h0, int64_t w0,
                          int64_t kh, int64_t kw)
{
    int64_t best = -1, last_nan = -1;
    for (int64_t i = 0; i < kh; i++)
        for (int64_t j = 0; j < kw; j++) {
            int64_t ih = h0 + i, iw = w0 + j;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                continue;
            int64_t at = ih * W + iw;
            if (isnan(x[at]))
                last_nan = at;
            else if (best < 0 || x[at] > x[best])
                best = at;
        }
    return last_nan >= 0 ? last_nan : best;
}

/* y (N,C,OH,OW) and, when gy/dx are given, the gradient of sum(y * gy). */
static void ref_max(const pcase *k, const double *x, double *y, const double *gy, double *dx)
{
    int64_t OH = ref_out(k->h, k->kh, k->sh, k->ph, k->ceil_mode);
    int64_t OW = ref_out(k->w, k->kw, k->sw, k->pw, k->ceil_mode);
    int64_t planes = k->n * k->c;
    if (dx)
        memset(dx, 0, (size_t)(planes * k->h * k->w) * sizeof(double));
    for (int64_t pl = 0; pl < planes; pl++) {
        const double *xp = x + pl * k->h * k->w;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t a = ref_argmax(xp, k->h, k->w, oh * k->sh - k->ph, ow * k->sw - k->pw,
                                       k->kh, k->kw);
                ck_assert(a >= 0);
                int64_t o = (pl * OH + oh) * OW + ow;
                if (y)
                    y[o] = xp[a];
                if (dx)
                    dx[pl * k->h * k->w + a] += gy[o];
            }
    }
}

/* Divisor count of one dim for window start s0. */
static int64_t ref_count(int64_t s0, int64_t k, int64_t in, int64_t p, int cip)
{
    int64_t n = 0;
    for (int64_t i = s0; i < s0 + k; i++)
        n += cip ? (i < in + p) : (i >= 0 && i < in);
    return n;
}

static void ref_avg(const pcase *k, const double *x, double *y, const double *gy, double *dx)
{
    int64_t OH = ref_out(k->h, k->kh, k->sh, k->ph, k->ceil_mode);
    int64_t OW = ref_out(k->w, k->kw, k->sw, k->pw, k->ceil_mode);
    int64_t planes = k->n * k->c;
    if (dx)
        memset(dx, 0, (size_t)(planes * k->h * k->w) * sizeof(double));
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t h0 = oh * k->sh - k->ph, w0 = ow * k->sw - k->pw;
                double div = (double)(ref_count(h0, k->kh, k->h, k->ph, k->cip) *
                                      ref_count(w0, k->kw, k->w, k->pw, k->cip));
                int64_t o = (pl * OH + oh) * OW + ow;
                double s = 0;
                for (int64_t ih = h0; ih < h0 + k->kh; ih++)
                    for (int64_t iw = w0; iw < w0 + k->kw; iw++) {
                        if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w)
                            continue;
                        int64_t at = (pl * k->h + ih) * k->w + iw;
                        if (x)
                            s += x[at];
                        if (dx)
                            dx[at] += gy[o] / div;
                    }
                if (y)
                    y[o] = s / div;
            }
}

static void ref_adaptive(int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                         const double *x, double *y)
{
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t h0 = (int64_t)floor((double)(oh * H) / (double)OH);
                int64_t h1 = (int64_t)ceil((double)((oh + 1) * H) / (double)OH);
                int64_t w0 = (int64_t)floor((double)(ow * W) / (double)OW);
                int64_t w1 = (int64_t)ceil((double)((ow + 1) * W) / (double)OW);
                double s = 0;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        s += x[(pl * H + ih) * W + iw];
                y[(pl * OH + oh) * OW + ow] = s / (double)((h1 - h0) * (w1 - w0));
            }
}

/* ---- running graphs ------------------------------------------------------ */

/* Values rounded to dt (so references see exactly what nabla sees). */
static double *rand_values(int64_t n, nb_dtype dt, double lo, double hi)
{
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    ck_assert_ptr_nonnull(v);
    for (int64_t i = 0; i < n; i++) {
        v[i] = lo + (hi - lo) * nb_rng_uniform(&rng);
        if (dt == NB_F32)
            v[i] = (double)(float)v[i];
    }
    return v;
}

static void feed(nb_session *s, nb_node *in, const double *v)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, nb_node_dtype(in), nb_node_ndim(in), nb_node_shape(in)),
                     NB_OK);
    int64_t n = nb_tensor_numel(&t);
    for (int64_t i = 0; i < n; i++) {
        if (t.dtype == NB_F32)
            ((float *)nb_tensor_data(&t))[i] = (float)v[i];
        else
            ((double *)nb_tensor_data(&t))[i] = v[i];
    }
    ck_assert_msg(nb_session_feed(s, in, &t) == NB_OK, "feed: %s", nb_last_error());
    nb_tensor_release(&t);
}

/* Compile outs, feed ins, run, copy each output into a fresh double array. */
static void eval(nb_graph *g, int n_in, nb_node *const *ins, const double *const *vals, int n_out,
                 nb_node *const *outs, double **res)
{
    ck_assert_msg(nb_graph_status(g) == NB_OK, "graph: %s", nb_graph_error(g));
    nb_plan *p = nb_compile(g, n_out, outs, NULL);
    ck_assert_msg(p != NULL, "compile: %s", nb_last_error());
    nb_session *s = nb_session_new(p);
    ck_assert_ptr_nonnull(s);
    for (int i = 0; i < n_in; i++)
        feed(s, ins[i], vals[i]);
    ck_assert_msg(nb_session_run(s) == NB_OK, "run: %s", nb_last_error());
    for (int i = 0; i < n_out; i++) {
        nb_tensor t;
        ck_assert_int_eq(nb_session_fetch(s, outs[i], &t), NB_OK);
        int64_t n = nb_tensor_numel(&t);
        res[i] = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
        ck_assert_ptr_nonnull(res[i]);
        for (int64_t j = 0; j < n; j++)
            res[i][j] = nb_tensor_get_flat(&t, j);
        nb_tensor_release(&t);
    }
    nb_session_free(s);
    nb_plan_free(p);
}

/* |a - r| <= tol * max(1, |r|) elementwise; NaN must meet NaN. */
static void expect_close(const char *what, const double *a, const double *r, int64_t n, double tol)
{
    for (int64_t i = 0; i < n; i++) {
        if (isnan(r[i])) {
            ck_assert_msg(isnan(a[i]), "%s[%lld]: got %g, want NaN", what, (long long)i, a[i]);
            continue;
        }
        double lim = tol * fmax(1.0, fabs(r[i]));
        ck_assert_msg(fabs(a[i] - r[i]) <= lim, "%s[%lld]: got %.9g, want %.9g", what,
                      (long long)i, a[i], r[i]);
    }
}

/* ---- forward and backward against the references -------------------------- */

static const pcase cases[] = {
    /* n  c   h   w  kh kw sh sw ph pw ceil cip */
    {2, 3, 8, 8, 2, 2, 2, 2, 0, 0, 0, 1},     /* the 2x2 fast path */
    {2, 3, 7, 9, 2, 2, 2, 2, 0, 0, 0, 1},     /* fast path, odd sizes: rows/cols left over */
    {2, 3, 7, 9, 2, 2, 2, 2, 0, 0, 1, 1},     /* ceil mode changes the output (4x5) */
    {1, 5, 9, 8, 3, 3, 2, 2, 1, 1, 0, 1},     /* the ResNet stem pool */
    {1, 5, 9, 8, 3, 3, 2, 2, 1, 1, 0, 0},
    {2, 13, 6, 6, 3, 3, 2, 2, 1, 1, 1, 1},    /* ceil: last window past in + p (divisor 2) */
    {2, 13, 6, 6, 3, 3, 2, 2, 1, 1, 1, 0},
    {1, 3, 5, 5, 2, 2, 2, 2, 1, 1, 1, 1},     /* ceil: the window starting at in + p dropped */
    {2, 3, 6, 5, 3, 2, 1, 2, 1, 0, 0, 1},     /* stride != kernel, overlapping, asymmetric */
    {2, 3, 6, 5, 3, 2, 1, 2, 1, 0, 1, 0},
    {2, 3, 10, 11, 2, 3, 3, 4, 1, 1, 1, 1},   /* stride > kernel (gaps) */
    {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1},     /* 1x1 image */
    {1, 3, 1, 1, 2, 2, 1, 1, 1, 1, 0, 1},     /* 1x1 image, padded: divisor 4 vs 1 */
    {1, 3, 1, 1, 2, 2, 1, 1, 1, 1, 0, 0},
    {1, 7, 5, 5, 5, 5, 1, 1, 0, 0, 0, 1},     /* kernel = image */
    {4, 40, 16, 16, 2, 2, 2, 2, 0, 0, 0, 1},  /* enough planes for several threads */
    {3, 37, 17, 15, 3, 3, 2, 2, 1, 1, 1, 0},
    {1, 2, 3, 40, 1, 17, 1, 2, 0, 8, 0, 1},   /* kernel wider than the tabulated taps */
    {1, 2, 3, 40, 2, 18, 1, 3, 1, 9, 1, 0},
    /* f32 3x3 windows run kernels/pool_max3x3.c: widths around its 16-lane
     * vectors and 32-column stride-2 loads, heights around its 4-row blocks */
    {1, 2, 10, 33, 3, 3, 2, 2, 1, 1, 0, 1},
    {1, 2, 9, 34, 3, 3, 2, 2, 0, 0, 0, 1},
    {1, 2, 9, 35, 3, 3, 2, 2, 0, 0, 1, 1},    /* ceil: the last window reads past the row */
    {1, 2, 6, 17, 3, 3, 1, 1, 1, 1, 0, 1},
    {1, 2, 7, 32, 3, 3, 1, 1, 0, 0, 0, 1},
    {1, 2, 11, 16, 3, 3, 2, 2, 1, 0, 0, 1},   /* pad on the rows only */
    {1, 2, 2, 2, 3, 3, 1, 1, 1, 1, 0, 1},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static nb_pool_args args_of(const pcase *k)
{
    nb_pool_args a = {{k->kh, k->kw}, {k->sh, k->sw}, {k->ph, k->pw}, k->ceil_mode != 0,
                      k->cip != 0};
    return a;
}

/* _i: case * 4 + (max / avg) * 2 + (f32 / f64) */
START_TEST(test_forward_backward)
{
    const pcase *k = &cases[_i / 4];
    int is_max = (_i / 2) % 2 == 0;
    nb_dtype dt = _i % 2 ? NB_F64 : NB_F32;
    double tol = dt == NB_F32 ? 2e-6 : 1e-13;
    nb_graph *g = nb_graph_new();
    int64_t xs[4] = {k->n, k->c, k->h, k->w};
    nb_node *x = nb_input(g, "x", dt, 4, xs);
    nb_pool_args a = args_of(k);
    nb_node *y = is_max ? nb_max_pool2d(g, x, &a) : nb_avg_pool2d(g, x, &a);
    ck_assert_msg(nb_graph_status(g) == NB_OK, "build: %s", nb_graph_error(g));
    int64_t OH = ref_out(k->h, k->kh, k->sh, k->ph, k->ceil_mode);
    int64_t OW = ref_out(k->w, k->kw, k->sw, k->pw, k->ceil_mode);
    int64_t want[4] = {k->n, k->c, OH, OW};
    ck_assert_msg(nb_shape_equal(4, nb_node_shape(y), 4, want), "case %d: shape %s, want %lldx%lld",
                  _i / 4, nb_node_shape_str(y), (long long)OH, (long long)OW);
    nb_node *gy = nb_input(g, "gy", dt, 4, want);
    nb_node *dx;
    ck_assert_int_eq(nb_vjp(g, y, gy, 1, &x, &dx), NB_OK);

    int64_t nx = nb_shape_numel(4, xs), ny = nb_shape_numel(4, want);
    double *xv = rand_values(nx, dt, -2, 2), *gv = rand_values(ny, dt, -1, 1);
    double *ry = malloc((size_t)ny * sizeof(double)), *rdx = malloc((size_t)nx * sizeof(double));
    if (is_max)
        ref_max(k, xv, ry, gv, rdx);
    else
        ref_avg(k, xv, ry, gv, rdx);
    nb_node *ins[2] = {x, gy}, *outs[2] = {y, dx};
    const double *vals[2] = {xv, gv};
    double *res[2];
    eval(g, 2, ins, vals, 2, outs, res);
    char what[64];
    snprintf(what, sizeof what, "case %d %s %s y", _i / 4, is_max ? "max" : "avg",
             nb_dtype_name(dt));
    expect_close(what, res[0], ry, ny, is_max ? 0 : tol);
    what[strlen(what) - 1] = 0;
    strcat(what, "dx");
    expect_close(what, res[1], rdx, nx, is_max ? tol : 4 * tol);
    free(res[0]);
    free(res[1]);
    free(xv);
    free(gv);
    free(ry);
    free(rdx);
    nb_graph_free(g);
}
END_TEST

/* Ties (values from {0, 1, 2}) and NaNs: output and the position gy goes to. */
START_TEST(test_max_ties_nan)
{
    static const pcase tk[] = {
        {2, 3, 8, 8, 2, 2, 2, 2, 0, 0, 0, 0},  /* 2x2 fast path */
        {2, 3, 9, 7, 3, 2, 2, 2, 1, 1, 1, 0},  /* general path */
        {2, 3, 9, 7, 3, 3, 2, 2, 1, 1, 1, 0},  /* 3x3 (pool_max3x3.c for f32) */
        {1, 3, 9, 37, 3, 3, 1, 1, 1, 1, 0, 0}, /* 3x3 stride 1 */
        {1, 3, 8, 41, 3, 3, 2, 2, 0, 0, 0, 0}, /* 3x3 stride 2, no padding */
    };
    enum { NK = sizeof tk / sizeof tk[0] };
    for (int t = 0; t < 2 * NK; t++) {
        const pcase *k = &tk[t % NK];
        int with_nan = t / NK;
        nb_dtype dt = NB_F32;
        nb_graph *g = nb_graph_new();
        int64_t xs[4] = {k->n, k->c, k->h, k->w};
        nb_node *x = nb_input(g, "x", dt, 4, xs);
        nb_pool_args a = args_of(k);
        nb_node *y = nb_max_pool2d(g, x, &a);
        nb_node *gy = nb_input(g, "gy", dt, 4, nb_node_shape(y));
        nb_node *dx;
        ck_assert_int_eq(nb_vjp(g, y, gy, 1, &x, &dx), NB_OK);
        int64_t nx = nb_shape_numel(4, xs), ny = nb_node_numel(y);
        double *xv = rand_values(nx, dt, 0, 1), *gv = rand_values(ny, dt, 1, 2);
        for (int64_t i = 0; i < nx; i++) {
            xv[i] = (double)nb_rng_below(&rng, 3);
            if (with_nan && nb_rng_below(&rng, 6) == 0)
                xv[i] = NAN;
        }
        double *ry = malloc((size_t)ny * sizeof(double)), *rdx = malloc((size_t)nx * sizeof(double));
        ref_max(k, xv, ry, gv, rdx);
        nb_node *ins[2] = {x, gy}, *outs[2] = {y, dx};
        const double *vals[2] = {xv, gv};
        double *res[2];
        eval(g, 2, ins, vals, 2, outs, res);
        expect_close(with_nan ? "nan y" : "ties y", res[0], ry, ny, 0);
        expect_close(with_nan ? "nan dx" : "ties dx", res[1], rdx, nx, 1e-6);
        free(res[0]);
        free(res[1]);
        free(xv);
        free(gv);
        free(ry);
        free(rdx);
        nb_graph_free(g);
    }
}
END_TEST

/* PyTorch's own answers for two tiny cases (torch 1.13). */
START_TEST(test_torch_values)
{
    /* max_pool2d(2) of [[1, nan], [nan, 0]]: y = nan, the gradient at the last NaN */
    nb_graph *g = nb_graph_new();
    int64_t s1[4] = {1, 1, 2, 2};
    nb_node *x = nb_input(g, "x", NB_F32, 4, s1);
    nb_pool_args a = {{2, 2}, {0, 0}, {0, 0}, false, true};
    nb_node *y = nb_max_pool2d(g, x, &a);
    nb_node *dx, *gy = nb_full_like(g, y, 1.0);
    ck_assert_int_eq(nb_vjp(g, y, gy, 1, &x, &dx), NB_OK);
    double xv[4] = {1, NAN, NAN, 0};
    const double *vals[1] = {xv};
    nb_node *outs[2] = {y, dx};
    double *res[2];
    eval(g, 1, &x, vals, 2, outs, res);
    ck_assert(isnan(res[0][0]));
    double want_dx[4] = {0, 0, 1, 0};
    expect_close("nan grad", res[1], want_dx, 4, 0);
    free(res[0]);
    free(res[1]);
    nb_graph_free(g);

    /* avg_pool2d(ones(6,6), 3, 2, 1, ceil_mode, count_include_pad) */
    g = nb_graph_new();
    int64_t s2[4] = {1, 1, 6, 6};
    x = nb_input(g, "x", NB_F32, 4, s2);
    nb_pool_args b = {{3, 3}, {2, 2}, {1, 1}, true, true};
    y = nb_avg_pool2d(g, x, &b);
    double ones[36];
    for (int i = 0; i < 36; i++)
        ones[i] = 1;
    vals[0] = ones;
    eval(g, 1, &x, vals, 1, &y, res);
    static const double want[16] = {4. / 9, 6. / 9, 6. / 9, 2. / 6, 6. / 9, 1, 1, 3. / 6,
                                    6. / 9, 1, 1, 3. / 6, 2. / 6, 3. / 6, 3. / 6, 1. / 4};
    expect_close("avg ceil cip", res[0], want, 16, 1e-6);
    free(res[0]);
    nb_graph_free(g);
}
END_TEST

/* adaptive (general sizes, up and down), global, upsampling: forward and gradient */
START_TEST(test_adaptive_global_upsample)
{
    static const int64_t sz[][4] = {{5, 7, 3, 4}, {4, 6, 2, 3}, {3, 3, 5, 4}, {6, 6, 1, 1},
                                    {1, 1, 1, 1}, {7, 5, 7, 2}};
    for (int t = 0; t < 6; t++)
        for (int f = 0; f < 2; f++) {
            nb_dtype dt = f ? NB_F64 : NB_F32;
            double tol = f ? 1e-13 : 2e-6;
            int64_t H = sz[t][0], W = sz[t][1], OH = sz[t][2], OW = sz[t][3];
            nb_graph *g = nb_graph_new();
            int64_t xs[4] = {2, 11, H, W};
            nb_node *x = nb_input(g, "x", dt, 4, xs);
            nb_node *y = nb_adaptive_avg_pool2d(g, x, OH, OW);
            nb_node *yg = nb_global_avg_pool2d(g, x);
            nb_node *loss = nb_add(g, nb_sum(g, nb_square(g, y), 0, NULL, false),
                                   nb_sum(g, yg, 0, NULL, false));
            nb_node *dx;
            ck_assert_int_eq(nb_grad(g, loss, 1, &x, &dx), NB_OK);
            int64_t nx = 22 * H * W, ny = 22 * OH * OW;
            double *xv = rand_values(nx, dt, -2, 2);
            double *ry = malloc((size_t)ny * sizeof(double)), *rg = malloc(22 * sizeof(double));
            ref_adaptive(22, H, W, OH, OW, xv, ry);
            ref_adaptive(22, H, W, 1, 1, xv, rg);
            /* dx = adjoint of adaptive pooling applied to 2y, plus 1/(H W) */
            double *rdx = calloc((size_t)nx, sizeof(double));
            for (int64_t pl = 0; pl < 22; pl++)
                for (int64_t oh = 0; oh < OH; oh++)
                    for (int64_t ow = 0; ow < OW; ow++) {
                        int64_t h0 = oh * H / OH, h1 = ((oh + 1) * H + OH - 1) / OH;
                        int64_t w0 = ow * W / OW, w1 = ((ow + 1) * W + OW - 1) / OW;
                        double v = 2 * ry[(pl * OH + oh) * OW + ow] / (double)((h1 - h0) * (w1 - w0));
                        for (int64_t ih = h0; ih < h1; ih++)
                            for (int64_t iw = w0; iw < w1; iw++)
                                rdx[(pl * H + ih) * W + iw] += v;
                    }
            for (int64_t i = 0; i < nx; i++)
                rdx[i] += 1.0 / (double)(H * W);
            nb_node *outs[3] = {y, yg, dx};
            const double *vals[1] = {xv};
            double *res[3];
            eval(g, 1, &x, vals, 3, outs, res);
            expect_close("adaptive y", res[0], ry, ny, tol);
            expect_close("global y", res[1], rg, 22, tol);
            expect_close("adaptive dx", res[2], rdx, nx, 4 * tol);
            for (int i = 0; i < 3; i++)
                free(res[i]);
            free(xv);
            free(ry);
            free(rg);
            free(rdx);
            nb_graph_free(g);
        }

    /* upsampling by (2, 3) and (1, 4), batch 1 and 3, f32 and f64 */
    static const int64_t up[][4] = {{1, 5, 2, 3}, {3, 9, 1, 4}, {2, 3, 3, 1}};
    for (int t = 0; t < 3; t++)
        for (int f = 0; f < 2; f++) {
            nb_dtype dt = f ? NB_F64 : NB_F32;
            int64_t N = up[t][0], C = up[t][1], sh = up[t][2], sw = up[t][3], H = 4, W = 3;
            nb_graph *g = nb_graph_new();
            int64_t xs[4] = {N, C, H, W};
            nb_node *x = nb_input(g, "x", dt, 4, xs);
            nb_node *y = nb_upsample_nearest2d(g, x, sh, sw);
            int64_t ys[4] = {N, C, H * sh, W * sw};
            ck_assert(nb_shape_equal(4, nb_node_shape(y), 4, ys));
            nb_node *gy = nb_input(g, "gy", dt, 4, ys);
            nb_node *dx;
            ck_assert_int_eq(nb_vjp(g, y, gy, 1, &x, &dx), NB_OK);
            int64_t nx = N * C * H * W, ny = nx * sh * sw;
            double *xv = rand_values(nx, dt, -2, 2), *gv = rand_values(ny, dt, -1, 1);
            double *ry = malloc((size_t)ny * sizeof(double)), *rdx = calloc((size_t)nx, sizeof(double));
            for (int64_t pl = 0; pl < N * C; pl++)
                for (int64_t i = 0; i < H * sh; i++)
                    for (int64_t j = 0; j < W * sw; j++) {
                        int64_t o = (pl * H * sh + i) * W * sw + j, s = (pl * H + i / sh) * W + j / sw;
                        ry[o] = xv[s];
                        rdx[s] += gv[o];
                    }
            nb_node *ins[2] = {x, gy}, *outs[2] = {y, dx};
            const double *vals[2] = {xv, gv};
            double *res[2];
            eval(g, 2, ins, vals, 2, outs, res);
            expect_close("upsample y", res[0], ry, ny, 0);
            expect_close("upsample dx", res[1], rdx, nx, f ? 1e-13 : 2e-6);
            free(res[0]);
            free(res[1]);
            free(xv);
            free(gv);
            free(ry);
            free(rdx);
            nb_graph_free(g);
        }
}
END_TEST

/* ---- f64 gradient checks ------------------------------------------------- */

enum { GC_MAX, GC_AVG, GC_ADAPTIVE, GC_GLOBAL, GC_UPSAMPLE };

typedef struct gcase {
    const char *name;
    int kind;
    pcase k;          /* n c h w, then the pooling attributes */
    int64_t o[2];     /* adaptive output, or upsample scales */
    int second;       /* also check the gradient's own rule */
} gcase;

static const gcase gcases[] = {
    {"max 2x2 (fast path)", GC_MAX, {2, 3, 6, 7, 2, 2, 2, 2, 0, 0, 0, 0}, {0, 0}, 0},
    {"max 3x3 s2 p1", GC_MAX, {2, 3, 7, 6, 3, 3, 2, 2, 1, 1, 0, 0}, {0, 0}, 0},
    {"max ceil_mode", GC_MAX, {1, 3, 7, 7, 2, 2, 2, 2, 0, 0, 1, 0}, {0, 0}, 0},
    {"max overlapping s1", GC_MAX, {1, 2, 5, 6, 3, 2, 1, 1, 1, 1, 0, 0}, {0, 0}, 0},
    {"avg 2x2", GC_AVG, {2, 3, 6, 6, 2, 2, 2, 2, 0, 0, 0, 1}, {0, 0}, 1},
    {"avg pad cip", GC_AVG, {2, 3, 7, 6, 3, 3, 2, 2, 1, 1, 0, 1}, {0, 0}, 1},
    {"avg pad no cip", GC_AVG, {2, 3, 7, 6, 3, 3, 2, 2, 1, 1, 0, 0}, {0, 0}, 1},
    {"avg ceil cip", GC_AVG, {1, 3, 6, 6, 3, 3, 2, 2, 1, 1, 1, 1}, {0, 0}, 1},
    {"avg ceil no cip", GC_AVG, {1, 3, 6, 6, 3, 3, 2, 2, 1, 1, 1, 0}, {0, 0}, 1},
    {"avg overlapping asym", GC_AVG, {1, 2, 5, 6, 3, 2, 1, 2, 1, 0, 0, 1}, {0, 0}, 1},
    {"adaptive 5x7->3x4", GC_ADAPTIVE, {2, 3, 5, 7, 0, 0, 0, 0, 0, 0, 0, 0}, {3, 4}, 1},
    {"adaptive 3x3->5x4", GC_ADAPTIVE, {1, 2, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0}, {5, 4}, 1},
    {"global", GC_GLOBAL, {2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 0, 0}, {1, 1}, 1},
    {"upsample 2x3", GC_UPSAMPLE, {2, 3, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0}, {2, 3}, 1},
};
#define N_GC ((int)(sizeof gcases / sizeof gcases[0]))

/* sum(y * w) for a fixed random constant w of y's shape */
static nb_node *wloss(nb_graph *g, nb_node *y)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, NB_F64, nb_node_ndim(y), nb_node_shape(y)), NB_OK);
    ck_assert_int_eq(nb_rng_fill_uniform(&rng, &t, -1.0, 1.0), NB_OK);
    nb_node *w = nb_constant(g, &t);
    nb_tensor_release(&t);
    return nb_sum(g, nb_mul(g, y, w), 0, NULL, false);
}

static nb_node *gc_build(nb_graph *g, const gcase *c, nb_node *x)
{
    nb_pool_args a = args_of(&c->k);
    switch (c->kind) {
    case GC_MAX: return nb_max_pool2d(g, x, &a);
    case GC_AVG: return nb_avg_pool2d(g, x, &a);
    case GC_ADAPTIVE: return nb_adaptive_avg_pool2d(g, x, c->o[0], c->o[1]);
    case GC_GLOBAL: return nb_global_avg_pool2d(g, x);
    default: return nb_upsample_nearest2d(g, x, c->o[0], c->o[1]);
    }
}

/* _i: case * 2 + (first / second order) */
START_TEST(test_gradcheck)
{
    const gcase *c = &gcases[_i / 2];
    int second = _i % 2;
    if (second && !c->second)
        return;
    nb_graph *g = nb_graph_new();
    int64_t xs[4] = {c->k.n, c->k.c, c->k.h, c->k.w};
    nb_node *x = nb_param(g, "x", NB_F64, 4, xs);
    double *xv = (double *)nb_tensor_data(nb_node_value(x));
    int64_t n = nb_node_numel(x);
    /* distinct values ~0.1 apart in random order: no ties for max pooling */
    for (int64_t j = 0; j < n; j++)
        xv[j] = (double)(j - n / 2) * 0.1 + 0.02 * nb_rng_uniform(&rng);
    for (int64_t j = n - 1; j > 0; j--) {
        int64_t r = (int64_t)nb_rng_below(&rng, (uint64_t)j + 1);
        double t = xv[j];
        xv[j] = xv[r];
        xv[r] = t;
    }
    nb_node *y = gc_build(g, c, x);
    nb_node *loss;
    if (!second) {
        loss = wloss(g, y);
    } else {
        /* d/dx of sum(w2 * d(sum(w1 * tanh(y)))/dx): runs the rules of the *_GRAD ops */
        nb_node *dx;
        ck_assert_int_eq(nb_grad(g, wloss(g, nb_tanh(g, y)), 1, &x, &dx), NB_OK);
        loss = wloss(g, dx);
    }
    ck_assert_msg(nb_graph_status(g) == NB_OK, "%s: %s", c->name, nb_graph_error(g));
    double err = INFINITY;
    nb_status s = nb_gradcheck(g, loss, 1, &x, NULL, GC_STEP, &err);
    ck_assert_msg(s == NB_OK, "%s%s: gradcheck: %s | %s", c->name, second ? " (2nd)" : "",
                  nb_last_error(), nb_graph_error(g));
    ck_assert_msg(err <= GC_TOL, "%s%s: max relative error %.3g", c->name,
                  second ? " (2nd)" : "", err);
    nb_graph_free(g);
}
END_TEST

/* <grad_op(gy), w> == <gy, forward(w)> for the linear gradient ops. */
START_TEST(test_adjoint)
{
    for (int t = 0; t < 4; t++) {
        nb_graph *g = nb_graph_new();
        int64_t xs[4] = {2, 5, 7, 6};
        nb_node *x = nb_input(g, "x", NB_F64, 4, xs);
        nb_pool_args a = {{3, 2}, {2, 1}, {1, 1}, t == 1, t != 2};
        nb_node *y = t < 3 ? nb_avg_pool2d(g, x, &a) : nb_upsample_nearest2d(g, x, 3, 2);
        nb_node *gy = nb_input(g, "gy", NB_F64, 4, nb_node_shape(y));
        nb_node *dx;
        ck_assert_int_eq(nb_vjp(g, y, gy, 1, &x, &dx), NB_OK);
        ck_assert_int_eq(nb_node_op(dx), t < 3 ? NB_OP_AVG_POOL2D_GRAD
                                               : NB_OP_UPSAMPLE_NEAREST2D_GRAD);
        int64_t nx = nb_shape_numel(4, xs), ny = nb_node_numel(y);
        double *w = rand_values(nx, NB_F64, -1, 1), *gv = rand_values(ny, NB_F64, -1, 1);
        /* feed w as x: y = forward(w) */
        nb_node *ins[2] = {x, gy}, *outs[2] = {y, dx};
        const double *vals[2] = {w, gv};
        double *res[2];
        eval(g, 2, ins, vals, 2, outs, res);
        double lhs = 0, rhs = 0;
        for (int64_t i = 0; i < nx; i++)
            lhs += res[1][i] * w[i];
        for (int64_t i = 0; i < ny; i++)
            rhs += gv[i] * res[0][i];
        ck_assert_msg(fabs(lhs - rhs) <= 1e-12 * fmax(1, fabs(lhs)), "adjoint %d: %.17g vs %.17g",
                      t, lhs, rhs);
        free(res[0]);
        free(res[1]);
        free(w);
        free(gv);
        nb_graph_free(g);
    }
    ck_assert_ptr_nonnull(nb_vjp_rule(NB_OP_AVG_POOL2D_GRAD));
    ck_assert_ptr_nonnull(nb_vjp_rule(NB_OP_UPSAMPLE_NEAREST2D_GRAD));
}
END_TEST

/* max_pool2d_grad has no rule: a second derivative through it is a clean
 * NB_ERR_NO_GRAD naming the op, not a crash. */
START_TEST(test_max_second_order_missing)
{
    ck_assert_ptr_null(nb_vjp_rule(NB_OP_MAX_POOL2D_GRAD));
    nb_graph *g = nb_graph_new();
    int64_t xs[4] = {1, 2, 4, 4};
    nb_node *x = nb_param(g, "x", NB_F64, 4, xs);
    nb_pool_args a = {{2, 2}, {2, 2}, {0, 0}, false, true};
    nb_node *y = nb_max_pool2d(g, x, &a), *dx, *ddx;
    ck_assert_int_eq(nb_grad(g, wloss(g, nb_tanh(g, y)), 1, &x, &dx), NB_OK);
    ck_assert_int_eq(nb_node_op(dx), NB_OP_MAX_POOL2D_GRAD);
    ck_assert_int_eq(nb_grad(g, wloss(g, dx), 1, &x, &ddx), NB_ERR_NO_GRAD);
    ck_assert_msg(strstr(nb_graph_error(g), "max_pool2d_grad") != NULL, "message: %s",
                  nb_graph_error(g));
    nb_graph_free(g);
}
END_TEST

/* ---- errors ------------------------------------------------------------ */

typedef struct ecase {
    int64_t ndim, shape[5];
    int op; /* 0 max, 1 avg, 2 adaptive, 3 upsample, 4 global */
    nb_pool_args a;
    int64_t o[2];
    nb_status status;
    const char *msg[3];
} ecase;

static const ecase ecases[] = {
    {3, {2, 8, 8}, 0, {{2, 2}, {0, 0}, {0, 0}, false, true}, {0, 0}, NB_ERR_SHAPE,
     {"max_pool2d '", "(2,8,8)", "must be 4-D"}},
    {5, {1, 2, 3, 8, 8}, 1, {{2, 2}, {0, 0}, {0, 0}, false, true}, {0, 0}, NB_ERR_SHAPE,
     {"avg_pool2d '", "(1,2,3,8,8)", "4-D"}},
    {4, {1, 2, 8, 8}, 0, {{3, 3}, {1, 1}, {2, 1}, false, true}, {0, 0}, NB_ERR_ARG,
     {"max_pool2d '", "padding (2,1)", "at most half the kernel (3,3)"}},
    {4, {1, 2, 8, 8}, 1, {{2, 4}, {1, 1}, {1, 3}, false, true}, {0, 0}, NB_ERR_ARG,
     {"avg_pool2d '", "padding (1,3)", "half the kernel"}},
    {4, {1, 2, 3, 8}, 0, {{6, 2}, {1, 1}, {1, 0}, false, true}, {0, 0}, NB_ERR_SHAPE,
     {"max_pool2d '", "kernel (6,2) is larger than the padded input", "(1,2,3,8)"}},
    {4, {1, 2, 1, 1}, 1, {{2, 2}, {0, 0}, {0, 0}, true, true}, {0, 0}, NB_ERR_SHAPE,
     {"avg_pool2d '", "larger than the padded input", "(1,2,1,1)"}},
    {4, {1, 2, 4, 4}, 0, {{0, 2}, {1, 1}, {0, 0}, false, true}, {0, 0}, NB_ERR_ARG,
     {"max_pool2d '", "kernel (0,2)", ">= 1"}},
    {4, {1, 2, 4, 4}, 2, {{0}, {0}, {0}, false, false}, {0, 3}, NB_ERR_ARG,
     {"adaptive_avg_pool2d '", "(0,3)", ">= 1"}},
    {4, {1, 2, 4, 4}, 3, {{0}, {0}, {0}, false, false}, {2, 0}, NB_ERR_ARG,
     {"upsample_nearest2d '", "(2,0)", ">= 1"}},
    {2, {4, 4}, 4, {{0}, {0}, {0}, false, false}, {0, 0}, NB_ERR_SHAPE, {"global_avg_pool2d '", "(4,4)", "4-D"}},
};
#define N_ERR ((int)(sizeof ecases / sizeof ecases[0]))

START_TEST(test_errors)
{
    const ecase *e = &ecases[_i];
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", NB_F32, (int)e->ndim, e->shape);
    nb_node *y;
    switch (e->op) {
    case 0: y = nb_max_pool2d(g, x, &e->a); break;
    case 1: y = nb_avg_pool2d(g, x, &e->a); break;
    case 2: y = nb_adaptive_avg_pool2d(g, x, e->o[0], e->o[1]); break;
    case 3: y = nb_upsample_nearest2d(g, x, e->o[0], e->o[1]); break;
    default: y = nb_global_avg_pool2d(g, x); break;
    }
    ck_assert(nb_node_is_poison(y));
    ck_assert_int_eq(nb_graph_status(g), e->status);
    const char *msg = nb_graph_error(g);
    for (int k = 0; k < 3; k++)
        ck_assert_msg(strstr(msg, e->msg[k]) != NULL, "error %d: '%s' lacks '%s'", _i, msg,
                      e->msg[k]);
    /* sticky: later builders return the poison node */
    ck_assert(nb_node_is_poison(nb_relu(g, x)));
    nb_graph_free(g);
}
END_TEST

/* Direct kernel calls with inconsistent shapes or parameters fail cleanly. */
START_TEST(test_kernel_errors)
{
    nb_tensor x, y, yf64;
    int64_t xs[4] = {1, 2, 5, 5}, ys[4] = {1, 2, 3, 3}, yb[4] = {1, 2, 2, 2};
    ck_assert_int_eq(nb_tensor_zeros(&x, NB_F32, 4, xs), NB_OK);
    ck_assert_int_eq(nb_tensor_zeros(&y, NB_F32, 4, ys), NB_OK);
    ck_assert_int_eq(nb_tensor_zeros(&yf64, NB_F64, 4, yb), NB_OK);
    nb_pool_params p = {{2, 2}, {2, 2}, {0, 0}, 0, 1, {0, 0}, {0}, 0};
    const nb_tensor *in[1] = {&x};
    nb_kernel_call c = {NB_OP_MAX_POOL2D, 1, in, &y, &p, NULL, 0, 0};
    /* floor mode gives 2x2, not 3x3 */
    ck_assert_int_eq(nb_cpu_pool(&c), NB_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "max_pool2d"));
    p.ceil_mode = 1; /* now 3x3 is right */
    ck_assert_int_eq(nb_cpu_pool(&c), NB_OK);
    p.pad[0] = 2; /* more than half the kernel */
    ck_assert_int_eq(nb_cpu_pool(&c), NB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "half the kernel"));
    p.pad[0] = 0;
    c.out = &yf64; /* dtype mismatch */
    ck_assert_int_eq(nb_cpu_pool(&c), NB_ERR_DTYPE);
    c.out = &y;
    c.op = NB_OP_MAX_POOL2D_GRAD; /* needs two inputs */
    ck_assert_int_eq(nb_cpu_pool(&c), NB_ERR_ARG);
    nb_tensor_release(&x);
    nb_tensor_release(&y);
    nb_tensor_release(&yf64);
}
END_TEST

static Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("forward_backward");
    tcase_add_loop_test(tc, test_forward_backward, 0, 4 * N_CASES);
    tcase_add_test(tc, test_max_ties_nan);
    tcase_add_test(tc, test_torch_values);
    tcase_add_test(tc, test_adaptive_global_upsample);
    suite_add_tcase(s, tc);
    tc = tcase_create("gradients");
    tcase_add_loop_test(tc, test_gradcheck, 0, 2 * N_GC);
    tcase_add_test(tc, test_adjoint);
    tcase_add_test(tc, test_max_second_order_missing);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_loop_test(tc, test_errors, 0, N_ERR);
    tcase_add_test(tc, test_kernel_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    nb_rng_init(&rng, 20261124);
    return nb_run_suite(pool_suite());
}
