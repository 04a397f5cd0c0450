/* Normalisation ops: batch, layer, group and RMS norm.
 *
 * Forward values against references computed here in double (two-pass
 * mean and variance); batch norm's running statistics after one and two
 * training runs against the hand formulas (momentum, unbiased variance),
 * also when the backward ops run in the same tape; eval mode; f64 gradient
 * checks of x, gamma and beta for every op and variant (rel. err <= 1e-6);
 * f32 forward and backward against the f64 ones; awkward sizes; errors. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"

#define TOL 1e-6
#define STEP 1e-6

static nb_rng rng;

/* ---- helpers ------------------------------------------------------------ */

static nb_node *mkparam(nb_graph *g, const char *name, nb_dtype dt, int nd, const int64_t *sh,
                        double lo, double hi)
{
    nb_node *p = nb_param(g, name, dt, nd, sh);
    ck_assert_msg(!nb_node_is_poison(p), "param %s: %s", name, nb_graph_error(g));
    ck_assert_int_eq(nb_rng_fill_uniform(&rng, nb_node_value(p), lo, hi), NB_OK);
    return p;
}

/* A STATE tensor filled uniformly in [lo, hi). */
static nb_node *mkstate(nb_graph *g, const char *name, nb_dtype dt, int64_t c, double lo,
                        double hi)
{
    nb_node *s = nb_state(g, name, dt, 1, &c);
    ck_assert_msg(!nb_node_is_poison(s), "state %s: %s", name, nb_graph_error(g));
    ck_assert_ptr_nonnull(nb_node_value(s));
    if (hi > lo)
        ck_assert_int_eq(nb_rng_fill_uniform(&rng, nb_node_value(s), lo, hi), NB_OK);
    else
        ck_assert_int_eq(nb_tensor_fill(nb_node_value(s), lo), NB_OK);
    return s;
}

/* A malloc'd double copy of a tensor's elements. */
static double *to_doubles(const nb_tensor *t)
{
    int64_t n = nb_tensor_numel(t);
    double *d = malloc(sizeof(double) * (size_t)(n ? n : 1));
    ck_assert_ptr_nonnull(d);
    for (int64_t i = 0; i < n; i++)
        d[i] = nb_tensor_get_flat(t, i);
    return d;
}

static double *node_vals(nb_node *n)
{
    ck_assert_ptr_nonnull(nb_node_value(n));
    return to_doubles(nb_node_value(n));
}

/* Compile outs, run once, return their values as double arrays in res. */
static void run_once(nb_graph *g, int n, nb_node *const *outs, double **res)
{
    ck_assert_msg(nb_graph_status(g) == NB_OK, "graph: %s", nb_graph_error(g));
    nb_plan *p = nb_compile(g, n, outs, NULL);
    ck_assert_msg(p != NULL, "compile: %s", nb_last_error());
    nb_session *s = nb_session_new(p);
    ck_assert_ptr_nonnull(s);
    ck_assert_msg(nb_session_run(s) == NB_OK, "run: %s", nb_last_error());
    for (int i = 0; i < n; i++) {
        nb_tensor t = {0};
        ck_assert_int_eq(nb_session_fetch(s, outs[i], &t), NB_OK);
        res[i] = to_doubles(&t);
        nb_tensor_release(&t);
    }
    nb_session_free(s);
    nb_plan_free(p);
}

static void assert_close(const char *what, const double *a, const double *ref, int64_t n,
                         double tol)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(a[i] - ref[i]) <= tol * (1 + fabs(ref[i])),
                      "%s: element %lld is %.12g, expected %.12g", what, (long long)i, a[i],
                      ref[i]);
}

/* sum(y * w) for a fixed random constant w */
static nb_node *wloss(nb_graph *g, nb_node *y)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, nb_node_dtype(y), nb_node_ndim(y), nb_node_shape(y)),
                     NB_OK);
    ck_assert_int_eq(nb_rng_fill_uniform(&rng, &t, -1, 1), NB_OK);
    nb_node *w = nb_constant(g, &t);
    nb_tensor_release(&t);
    return nb_sum(g, nb_mul(g, y, w), 0, NULL, false);
}

/* ---- references (double, two passes) ------------------------------------ */

/* mean and biased variance of m values at x[off + i*stride_outer*... ] given as a list */
static void stats(const double *v, int64_t m, double *mean, double *var)
{
    double s = 0, q = 0;
    for (int64_t i = 0; i < m; i++)
        s += v[i];
    *mean = s / (double)m;
    for (int64_t i = 0; i < m; i++)
        q += (v[i] - *mean) * (v[i] - *mean);
    *var = q / (double)m;
}

/* batch norm of x (N, C, S); training updates rm/rv (when non-NULL) */
static void ref_bn(const double *x, int64_t N, int64_t C, int64_t S, const double *gam,
                   const double *bet, bool training, double *rm, double *rv, double mom,
                   double eps, double *y)
{
    double *v = malloc(sizeof(double) * (size_t)(N * S));
    for (int64_t c = 0; c < C; c++) {
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++)
                v[n * S + s] = x[(n * C + c) * S + s];
        double mean, var;
        if (training) {
            stats(v, N * S, &mean, &var);
            if (rm) {
                rm[c] = (1 - mom) * rm[c] + mom * mean;
                rv[c] = (1 - mom) * rv[c] + mom * var * (double)(N * S) / (double)(N * S - 1);
            }
        } else {
            mean = rm[c];
            var = rv[c];
        }
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) {
                int64_t i = (n * C + c) * S + s;
                y[i] = (x[i] - mean) / sqrt(var + eps) * (gam ? gam[c] : 1) + (bet ? bet[c] : 0);
            }
    }
    free(v);
}

/* layer norm (rms = false) or RMS norm of R rows of D */
static void ref_ln(const double *x, int64_t R, int64_t D, const double *gam, const double *bet,
                   double eps, bool rms, double *y)
{
    for (int64_t r = 0; r < R; r++) {
        const double *xr = x + r * D;
        double mean, var;
        if (rms) {
            double q = 0;
            for (int64_t d = 0; d < D; d++)
                q += xr[d] * xr[d];
            mean = 0;
            var = q / (double)D;
        } else {
            stats(xr, D, &mean, &var);
        }
        for (int64_t d = 0; d < D; d++)
            y[r * D + d] = (xr[d] - mean) / sqrt(var + eps) * (gam ? gam[d] : 1) +
                           (bet ? bet[d] : 0);
    }
}

/* group norm of x (N, C, S) with G groups */
static void ref_gn(const double *x, int64_t N, int64_t C, int64_t S, int64_t G, const double *gam,
                   const double *bet, double eps, double *y)
{
    int64_t Cg = C / G, len = Cg * S;
    for (int64_t r = 0; r < N * G; r++) {
        double mean, var;
        stats(x + r * len, len, &mean, &var);
        for (int64_t i = 0; i < len; i++) {
            int64_t c = (r % G) * Cg + i / S;
            y[r * len + i] = (x[r * len + i] - mean) / sqrt(var + eps) * (gam ? gam[c] : 1) +
                             (bet ? bet[c] : 0);
        }
    }
}

/* ---- the cases ------------------------------------------------------------ */

typedef enum { BN_TRAIN, BN_EVAL, LN, GN, RMS } kind;

typedef struct ncase {
    const char *name;
    kind k;
    int nd;
    int64_t sh[5];
    int naxes;      /* LN / RMS */
    int64_t groups; /* GN */
    bool gamma, beta;
} ncase;

static const ncase cases[] = {
    {"bn train (3,4,2,3)", BN_TRAIN, 4, {3, 4, 2, 3}, 0, 0, true, true},
    {"bn train (5,3) 2-D", BN_TRAIN, 2, {5, 3}, 0, 0, true, true},
    {"bn train no affine", BN_TRAIN, 4, {2, 3, 2, 2}, 0, 0, false, false},
    {"bn train gamma only", BN_TRAIN, 3, {2, 5, 3}, 0, 0, true, false},
    {"bn train beta only", BN_TRAIN, 3, {2, 5, 3}, 0, 0, false, true},
    {"bn train 1x1 spatial", BN_TRAIN, 4, {4, 5, 1, 1}, 0, 0, true, true},
    {"bn train batch 1", BN_TRAIN, 4, {1, 3, 2, 2}, 0, 0, true, true},
    {"bn train C=9", BN_TRAIN, 3, {2, 9, 2}, 0, 0, true, true},
    {"bn train S=270 (block + tails)", BN_TRAIN, 3, {2, 3, 270}, 0, 0, true, true},
    {"bn eval (3,4,2,3)", BN_EVAL, 4, {3, 4, 2, 3}, 0, 0, true, true},
    {"bn eval no affine", BN_EVAL, 3, {2, 3, 4}, 0, 0, false, false},
    {"bn eval batch 1 1x1", BN_EVAL, 4, {1, 5, 1, 1}, 0, 0, true, true},
    {"ln 1 axis (3,4,5)", LN, 3, {3, 4, 5}, 1, 0, true, true},
    {"ln 2 axes (3,4,5)", LN, 3, {3, 4, 5}, 2, 0, true, true},
    {"ln no affine", LN, 2, {4, 7}, 1, 0, false, false},
    {"ln gamma only", LN, 2, {4, 7}, 1, 0, true, false},
    {"ln batch 1", LN, 2, {1, 9}, 1, 0, true, true},
    {"ln all axes", LN, 2, {3, 5}, 2, 0, true, true},
    {"ln D=300 (block + tails)", LN, 2, {2, 300}, 1, 0, true, true},
    {"gn groups 1", GN, 4, {2, 6, 2, 2}, 0, 1, true, true},
    {"gn groups 2", GN, 4, {2, 6, 2, 2}, 0, 2, true, true},
    {"gn groups C", GN, 4, {2, 6, 2, 2}, 0, 6, true, true},
    {"gn no affine", GN, 3, {2, 6, 3}, 0, 3, false, false},
    {"gn batch 1", GN, 3, {1, 4, 5}, 0, 2, true, true},
    {"gn 1x1 spatial", GN, 4, {3, 6, 1, 1}, 0, 2, true, true},
    {"gn C=10 groups 5", GN, 3, {2, 10, 3}, 0, 5, true, true},
    {"rms 1 axis", RMS, 3, {3, 4, 5}, 1, 0, true, false},
    {"rms 2 axes", RMS, 3, {3, 4, 5}, 2, 0, true, false},
    {"rms no gamma", RMS, 2, {4, 9}, 1, 0, false, false},
    {"rms batch 1", RMS, 2, {1, 11}, 1, 0, true, false},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

#define MOM 0.1
#define EPS 1e-5

typedef struct built {
    nb_node *x, *gamma, *beta, *rm, *rv, *y;
    int64_t N, C, S, R, D;
} built;

/* Make the case's params (values from rng) and its output node. */
static built build_case(nb_graph *g, const ncase *c, nb_dtype dt)
{
    built b = {0};
    b.x = mkparam(g, "x", dt, c->nd, c->sh, -2, 3);
    int64_t C = c->sh[1];
    const int64_t *ash = c->sh + 1;
    int and = 1;
    if (c->k == LN || c->k == RMS) {
        ash = c->sh + c->nd - c->naxes;
        and = c->naxes;
    }
    if (c->gamma)
        b.gamma = mkparam(g, "gamma", dt, and, ash, 0.5, 1.5);
    if (c->beta)
        b.beta = mkparam(g, "beta", dt, and, ash, -0.5, 0.5);
    b.N = c->sh[0];
    b.C = C;
    b.S = 1;
    for (int d = 2; d < c->nd; d++)
        b.S *= c->sh[d];
    switch (c->k) {
    case BN_TRAIN:
        b.rm = mkstate(g, "rm", dt, C, 0, 0);
        b.rv = mkstate(g, "rv", dt, C, 1, 1);
        b.y = nb_batch_norm(g, b.x, b.gamma, b.beta, b.rm, b.rv, true, MOM, EPS);
        break;
    case BN_EVAL:
        b.rm = mkstate(g, "rm", dt, C, -0.5, 0.5);
        b.rv = mkstate(g, "rv", dt, C, 0.5, 2.0);
        b.y = nb_batch_norm(g, b.x, b.gamma, b.beta, b.rm, b.rv, false, MOM, EPS);
        break;
    case LN:
    case RMS:
        b.D = 1;
        for (int d = c->nd - c->naxes; d < c->nd; d++)
            b.D *= c->sh[d];
        b.R = nb_node_numel(b.x) / b.D;
        b.y = c->k == LN ? nb_layer_norm(g, b.x, c->naxes, b.gamma, b.beta, EPS)
                         : nb_rms_norm(g, b.x, c->naxes, b.gamma, EPS);
        break;
    case GN:
        b.y = nb_group_norm(g, b.x, c->groups, b.gamma, b.beta, EPS);
        break;
    }
    ck_assert_msg(nb_graph_status(g) == NB_OK, "%s: %s", c->name, nb_graph_error(g));
    return b;
}

/* forward of case i, f64 and f32, against the reference; for training batch
 * norm also the running statistics after the run */
START_TEST(test_forward)
{
    const ncase *c = &cases[_i / 2];
    nb_dtype dt = _i % 2 ? NB_F32 : NB_F64;
    nb_rng_init(&rng, 100 + (uint64_t)_i);
    nb_graph *g = nb_graph_new();
    built b = build_case(g, c, dt);
    double *x = node_vals(b.x), *gam = b.gamma ? node_vals(b.gamma) : NULL;
    double *bet = b.beta ? node_vals(b.beta) : NULL;
    double *rm = b.rm ? node_vals(b.rm) : NULL, *rv = b.rv ? node_vals(b.rv) : NULL;
    int64_t n = nb_node_numel(b.x);
    double *ref = malloc(sizeof(double) * (size_t)n), *y;
    switch (c->k) {
    case BN_TRAIN:
    case BN_EVAL:
        ref_bn(x, b.N, b.C, b.S, gam, bet, c->k == BN_TRAIN, rm, rv, MOM, EPS, ref);
        break;
    case LN:
    case RMS:
        ref_ln(x, b.R, b.D, gam, bet, EPS, c->k == RMS, ref);
        break;
    case GN:
        ref_gn(x, b.N, b.C, b.S, c->groups, gam, bet, EPS, ref);
        break;
    }
    run_once(g, 1, &b.y, &y);
    double tol = dt == NB_F64 ? 1e-12 : 2e-6;
    assert_close(c->name, y, ref, n, tol);
    if (b.rm) { /* training: updated as the reference did; eval: unchanged */
        double *rm2 = node_vals(b.rm), *rv2 = node_vals(b.rv);
        assert_close("running_mean", rm2, rm, b.C, tol);
        assert_close("running_var", rv2, rv, b.C, tol);
        free(rm2);
        free(rv2);
    }
    free(x), free(gam), free(bet), free(rm), free(rv), free(ref), free(y);
    nb_graph_free(g);
}
END_TEST

/* f64 gradient check of x, gamma and beta together */
START_TEST(test_gradcheck)
{
    const ncase *c = &cases[_i];
    nb_rng_init(&rng, 200 + (uint64_t)_i);
    nb_graph *g = nb_graph_new();
    built b = build_case(g, c, NB_F64);
    nb_node *wrt[3];
    int n = 0;
    wrt[n++] = b.x;
    if (b.gamma)
        wrt[n++] = b.gamma;
    if (b.beta)
        wrt[n++] = b.beta;
    nb_node *loss = wloss(g, b.y);
    double err = INFINITY;
    nb_status s = nb_gradcheck(g, loss, n, wrt, NULL, STEP, &err);
    ck_assert_msg(s == NB_OK, "%s: gradcheck: %s | %s", c->name, nb_last_error(),
                  nb_graph_error(g));
    ck_assert_msg(err <= TOL, "%s: max relative error %.3g > %g", c->name, err, TOL);
    nb_graph_free(g);
}
END_TEST

/* f32 gradients against the f64 ones on the same values */
START_TEST(test_grad_f32)
{
    const ncase *c = &cases[_i];
    double *res[2][4];
    int64_t m[4];
    int n = 0;
    for (int t = 0; t < 2; t++) {
        nb_rng_init(&rng, 300 + (uint64_t)_i); /* same values for both dtypes */
        nb_graph *g = nb_graph_new();
        built b = build_case(g, c, t ? NB_F32 : NB_F64);
        nb_node *wrt[3], *gr[3], *outs[4];
        n = 0;
        wrt[n++] = b.x;
        if (b.gamma)
            wrt[n++] = b.gamma;
        if (b.beta)
            wrt[n++] = b.beta;
        nb_node *loss = wloss(g, b.y);
        ck_assert_msg(nb_grad(g, loss, n, wrt, gr) == NB_OK, "%s: %s", c->name, nb_graph_error(g));
        outs[0] = b.y;
        for (int k = 0; k < n; k++)
            outs[k + 1] = gr[k];
        for (int k = 0; k <= n; k++)
            m[k] = nb_node_numel(outs[k]);
        run_once(g, n + 1, outs, res[t]);
        n++;
        nb_graph_free(g);
    }
    const char *what[4] = {"y", "dx", "dgamma (or dbeta)", "dbeta"};
    for (int k = 0; k < n; k++)
        assert_close(what[k], res[1][k], res[0][k], m[k], 1e-4);
    for (int k = 0; k < n; k++)
        free(res[0][k]), free(res[1][k]);
}
END_TEST

/* x fed as an input; returns the new running statistics after the run */
static void feed_run(nb_session *s, nb_node *xin, const double *x, int64_t n)
{
    ck_assert_int_eq(nb_session_feed_data(s, xin, x, sizeof(double) * (size_t)n), NB_OK);
    ck_assert_msg(nb_session_run(s) == NB_OK, "run: %s", nb_last_error());
}

/* Running statistics after one and after two training runs, with the
 * backward in the same tape (it must not update them again). */
START_TEST(test_running_stats)
{
    nb_rng_init(&rng, 7);
    const int64_t N = 4, C = 3, H = 2, W = 3, S = H * W, sh[4] = {N, C, H, W};
    const double mom = 0.25;
    for (int with_grad = 0; with_grad < 2; with_grad++) {
        nb_graph *g = nb_graph_new();
        nb_node *xin = nb_input(g, "x", NB_F64, 4, sh);
        nb_node *gam = mkparam(g, "gamma", NB_F64, 1, &C, 0.5, 1.5);
        nb_node *bet = mkparam(g, "beta", NB_F64, 1, &C, -0.5, 0.5);
        nb_node *rm = mkstate(g, "running_mean", NB_F64, C, 0, 0);
        nb_node *rv = mkstate(g, "running_var", NB_F64, C, 1, 1);
        nb_node *y = nb_batch_norm(g, xin, gam, bet, rm, rv, true, mom, EPS);
        nb_node *outs[4] = {y}, *wrt[3] = {xin, gam, bet};
        int n_out = 1;
        if (with_grad) {
            ck_assert_int_eq(nb_grad(g, wloss(g, y), 3, wrt, outs + 1), NB_OK);
            n_out = 4;
        }
        ck_assert_msg(nb_graph_status(g) == NB_OK, "%s", nb_graph_error(g));
        nb_plan *p = nb_compile(g, n_out, outs, NULL);
        ck_assert_ptr_nonnull(p);
        nb_session *s = nb_session_new(p);
        double x[2][N * C * S], erm[C], erv[C];
        for (int64_t c = 0; c < C; c++)
            erm[c] = 0, erv[c] = 1;
        for (int run = 0; run < 2; run++) {
            for (int64_t i = 0; i < N * C * S; i++)
                x[run][i] = 3 * nb_rng_uniform(&rng) - 1 + run;
            feed_run(s, xin, x[run], N * C * S);
            /* hand formulas: mean and unbiased variance per channel */
            for (int64_t c = 0; c < C; c++) {
                double sum = 0, q = 0;
                for (int64_t k = 0; k < N; k++)
                    for (int64_t j = 0; j < S; j++)
                        sum += x[run][(k * C + c) * S + j];
                double mean = sum / (double)(N * S);
                for (int64_t k = 0; k < N; k++)
                    for (int64_t j = 0; j < S; j++)
                        q += pow(x[run][(k * C + c) * S + j] - mean, 2);
                erm[c] = (1 - mom) * erm[c] + mom * mean;
                erv[c] = (1 - mom) * erv[c] + mom * q / (double)(N * S - 1);
            }
            double *grm = node_vals(rm), *grv = node_vals(rv);
            char what[64];
            snprintf(what, sizeof what, "running_mean after run %d%s", run + 1,
                     with_grad ? " (with backward)" : "");
            assert_close(what, grm, erm, C, 1e-13);
            snprintf(what, sizeof what, "running_var after run %d%s", run + 1,
                     with_grad ? " (with backward)" : "");
            assert_close(what, grv, erv, C, 1e-13);
            free(grm);
            free(grv);
        }
        nb_session_free(s);
        nb_plan_free(p);
        nb_graph_free(g);
    }
}
END_TEST

/* Eval mode: running statistics used and left untouched, also by backward;
 * batch statistics play no part (a constant shift of x shifts y). */
START_TEST(test_eval)
{
    nb_rng_init(&rng, 8);
    const int64_t C = 4, sh[3] = {3, C, 5};
    nb_graph *g = nb_graph_new();
    nb_node *x = mkparam(g, "x", NB_F64, 3, sh, -1, 1);
    nb_node *rm = mkstate(g, "rm", NB_F64, C, -1, 1), *rv = mkstate(g, "rv", NB_F64, C, 0.5, 2);
    nb_node *y = nb_batch_norm(g, x, NULL, NULL, rm, rv, false, 0.1, 1e-3);
    nb_node *gx;
    ck_assert_int_eq(nb_grad(g, wloss(g, y), 1, &x, &gx), NB_OK);
    double *m0 = node_vals(rm), *v0 = node_vals(rv), *xv = node_vals(x), *res[2];
    nb_node *outs[2] = {y, gx};
    run_once(g, 2, outs, res);
    for (int64_t i = 0; i < 3 * C * 5; i++) {
        int64_t c = (i / 5) % C;
        double want = (xv[i] - m0[c]) / sqrt(v0[c] + 1e-3);
        ck_assert_msg(fabs(res[0][i] - want) < 1e-12, "eval y[%lld]", (long long)i);
    }
    double *m1 = node_vals(rm), *v1 = node_vals(rv);
    ck_assert(memcmp(m0, m1, sizeof(double) * C) == 0 && memcmp(v0, v1, sizeof(double) * C) == 0);
    free(m0), free(v0), free(m1), free(v1), free(xv), free(res[0]), free(res[1]);
    nb_graph_free(g);
}
END_TEST

/* Larger shapes so several threads share the work (NABLA_NUM_THREADS=2). */
START_TEST(test_threaded)
{
    static const ncase big[] = {
        {"bn big", BN_TRAIN, 4, {32, 10, 16, 16}, 0, 0, true, true},
        {"ln big", LN, 2, {700, 96}, 1, 0, true, true},
        {"gn big", GN, 4, {8, 12, 16, 16}, 0, 3, true, true},
        {"rms big", RMS, 2, {700, 96}, 1, 0, true, false},
    };
    const ncase *c = &big[_i];
    double *res[2][4];
    int n = 0;
    for (int t = 0; t < 2; t++) {
        nb_rng_init(&rng, 400 + (uint64_t)_i);
        nb_graph *g = nb_graph_new();
        built b = build_case(g, c, t ? NB_F32 : NB_F64);
        nb_node *wrt[3] = {b.x, b.gamma, b.beta}, *gr[3], *outs[4];
        n = b.beta ? 3 : 2;
        ck_assert_int_eq(nb_grad(g, wloss(g, b.y), n, wrt, gr), NB_OK);
        outs[0] = b.y;
        memcpy(outs + 1, gr, sizeof(nb_node *) * (size_t)n);
        run_once(g, n + 1, outs, res[t]);
        if (t == 0) { /* forward against the reference in double */
            double *x = node_vals(b.x), *gam = node_vals(b.gamma);
            double *bet = b.beta ? node_vals(b.beta) : NULL;
            double *ref = malloc(sizeof(double) * (size_t)nb_node_numel(b.x));
            double *rm = calloc((size_t)b.C, sizeof(double));
            double *rv = calloc((size_t)b.C, sizeof(double));
            if (c->k == BN_TRAIN)
                ref_bn(x, b.N, b.C, b.S, gam, bet, true, rm, rv, MOM, EPS, ref);
            else if (c->k == GN)
                ref_gn(x, b.N, b.C, b.S, c->groups, gam, bet, EPS, ref);
            else
                ref_ln(x, b.R, b.D, gam, bet, EPS, c->k == RMS, ref);
            assert_close(c->name, res[0][0], ref, nb_node_numel(b.x), 1e-12);
            free(x), free(gam), free(bet), free(ref), free(rm), free(rv);
        }
        n++;
        nb_graph_free(g);
    }
    int64_t numel = 1, A = c->k == LN || c->k == RMS ? c->sh[c->nd - 1] : c->sh[1];
    for (int d = 0; d < c->nd; d++)
        numel *= c->sh[d];
    for (int k = 0; k < n; k++) /* f32 against f64; sums over many terms: looser */
        assert_close(c->name, res[1][k], res[0][k], k < 2 ? numel : A, k < 2 ? 1e-4 : 1e-3);
    for (int k = 0; k < n; k++)
        free(res[0][k]), free(res[1][k]);
}
END_TEST

/* f32 with |mean| >> std (x = 1e4 + U(-1, 1)): the shifted sums and the
 * shifted elementwise loops keep y and dx to f32 rounding of O(1) values,
 * where y = x a + b would lose ~1e-3. Checked against the f64 graph on the
 * same (f32-representable) values. */
START_TEST(test_offset)
{
    static const ncase off[] = {
        {"bn offset", BN_TRAIN, 3, {4, 3, 300}, 0, 0, true, true},
        {"ln offset", LN, 2, {6, 300}, 1, 0, true, true},
        {"gn offset", GN, 3, {2, 4, 70}, 0, 2, true, true},
    };
    const ncase *c = &off[_i];
    double *res[2][4];
    int64_t m[4];
    int n = 0;
    for (int t = 0; t < 2; t++) {
        nb_rng_init(&rng, 500 + (uint64_t)_i);
        nb_graph *g = nb_graph_new();
        built b = build_case(g, c, t ? NB_F32 : NB_F64);
        nb_tensor *xv = nb_node_value(b.x);
        for (int64_t i = 0; i < nb_tensor_numel(xv); i++) { /* f32-exact values */
            float v = (float)(1e4 + 2 * nb_rng_uniform(&rng) - 1);
            if (t)
                ((float *)nb_tensor_data(xv))[i] = v;
            else
                ((double *)nb_tensor_data(xv))[i] = v;
        }
        nb_node *wrt[3] = {b.x, b.gamma, b.beta}, *gr[3], *outs[4];
        ck_assert_int_eq(nb_grad(g, wloss(g, b.y), 3, wrt, gr), NB_OK);
        outs[0] = b.y;
        memcpy(outs + 1, gr, sizeof gr);
        for (int k = 0; k < 4; k++)
            m[k] = nb_node_numel(outs[k]);
        run_once(g, 4, outs, res[t]);
        n = 4;
        nb_graph_free(g);
    }
    const char *what[4] = {"y", "dx", "dgamma", "dbeta"};
    for (int k = 0; k < n; k++) {
        char w[64];
        snprintf(w, sizeof w, "%s %s", c->name, what[k]);
        assert_close(w, res[1][k], res[0][k], m[k], 2e-5);
        free(res[0][k]);
        free(res[1][k]);
    }
}
END_TEST

/* ---- errors --------------------------------------------------------------- */

static void expect_fail(nb_graph *g, nb_node *y, nb_status st, const char *needle)
{
    ck_assert(nb_node_is_poison(y));
    ck_assert_int_eq(nb_graph_status(g), st);
    ck_assert_msg(strstr(nb_graph_error(g), needle) != NULL, "error '%s' lacks '%s'",
                  nb_graph_error(g), needle);
}

START_TEST(test_errors)
{
    const int64_t sx[4] = {2, 6, 3, 3}, c5 = 5, c6 = 6, s1[2] = {1, 6}, s11[4] = {1, 6, 1, 1};
    const int64_t ln_bad[2] = {3, 4};
    nb_graph *g;
    nb_node *x, *y;

#define FRESH() (g = nb_graph_new(), x = nb_param(g, "x", NB_F32, 4, sx))
    FRESH();
    y = nb_batch_norm(g, x, nb_param(g, "gamma", NB_F32, 1, &c5), NULL, NULL, NULL, true, 0.1,
                      1e-5);
    expect_fail(g, y, NB_ERR_SHAPE, "gamma 'gamma' has shape (5), expected (6)");
    nb_graph_free(g);

    FRESH();
    y = nb_layer_norm(g, x, 2, nb_param(g, "gamma", NB_F32, 2, ln_bad), NULL, 1e-5);
    expect_fail(g, y, NB_ERR_SHAPE, "expected (3,3)");
    nb_graph_free(g);

    FRESH();
    y = nb_group_norm(g, x, 2, NULL, nb_param(g, "beta", NB_F64, 1, &c6), 1e-5);
    expect_fail(g, y, NB_ERR_DTYPE, "beta 'beta' is f64");
    nb_graph_free(g);

    FRESH();
    y = nb_group_norm(g, x, 4, NULL, NULL, 1e-5);
    expect_fail(g, y, NB_ERR_SHAPE, "divisible by num_groups");
    nb_graph_free(g);

    FRESH();
    y = nb_rms_norm(g, x, 5, NULL, 1e-6);
    expect_fail(g, y, NB_ERR_ARG, "naxes 5 out of range");
    nb_graph_free(g);

    /* a single value per channel: PyTorch's message */
    g = nb_graph_new();
    x = nb_param(g, "x", NB_F32, 2, s1);
    y = nb_batch_norm(g, x, NULL, NULL, nb_state(g, "m", NB_F32, 1, &c6),
                      nb_state(g, "v", NB_F32, 1, &c6), true, 0.1, 1e-5);
    expect_fail(g, y, NB_ERR_SHAPE, "Expected more than 1 value per channel when training");
    nb_graph_free(g);
    g = nb_graph_new();
    x = nb_param(g, "x", NB_F32, 4, s11);
    y = nb_batch_norm(g, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5);
    expect_fail(g, y, NB_ERR_SHAPE, "got input size (1,6,1,1)");
    nb_graph_free(g);
    /* ... but eval mode accepts it */
    g = nb_graph_new();
    x = nb_param(g, "x", NB_F32, 4, s11);
    y = nb_batch_norm(g, x, NULL, NULL, nb_state(g, "m", NB_F32, 1, &c6),
                      nb_state(g, "v", NB_F32, 1, &c6), false, 0.1, 1e-5);
    ck_assert_int_eq(nb_graph_status(g), NB_OK);
    nb_graph_free(g);

    FRESH();
    y = nb_batch_norm(g, x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5);
    expect_fail(g, y, NB_ERR_ARG, "eval mode needs running_mean");
    nb_graph_free(g);

    FRESH();
    y = nb_batch_norm(g, x, NULL, NULL, nb_param(g, "m", NB_F32, 1, &c6),
                      nb_param(g, "v", NB_F32, 1, &c6), true, 0.1, 1e-5);
    expect_fail(g, y, NB_ERR_ARG, "must be STATE nodes");
    nb_graph_free(g);

    FRESH();
    y = nb_layer_norm(g, x, 1, NULL, NULL, -1.0);
    expect_fail(g, y, NB_ERR_ARG, "eps");
    nb_graph_free(g);

    g = nb_graph_new();
    x = nb_param(g, "x", NB_I32, 4, sx);
    y = nb_layer_norm(g, x, 1, NULL, NULL, 1e-5);
    expect_fail(g, y, NB_ERR_DTYPE, "need f32 or f64");
    nb_graph_free(g);

    g = nb_graph_new();
    y = nb_group_norm(g, NULL, 1, NULL, NULL, 1e-5);
    expect_fail(g, y, NB_ERR_ARG, "input 0 is NULL");
    nb_graph_free(g);
#undef FRESH
}
END_TEST

/* No second derivatives: nb_grad names the backward op. */
START_TEST(test_no_second_order)
{
    const int64_t sh[2] = {3, 4};
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_param(g, "x", NB_F64, 2, sh);
    nb_node *y = nb_layer_norm(g, x, 1, NULL, NULL, 1e-5), *gx, *ggx;
    ck_assert_int_eq(nb_grad(g, nb_sum(g, nb_square(g, y), 0, NULL, false), 1, &x, &gx), NB_OK);
    nb_status st = nb_grad(g, nb_sum(g, gx, 0, NULL, false), 1, &x, &ggx);
    ck_assert_int_eq(st, NB_ERR_NO_GRAD);
    ck_assert_msg(strstr(nb_graph_error(g), "layer_norm_grad") &&
                      strstr(nb_graph_error(g), "no gradient rule"),
                  "%s", nb_graph_error(g));
    nb_graph_free(g);
}
END_TEST

/* The kernel itself rejects inconsistent calls instead of crashing. */
START_TEST(test_kernel_validation)
{
    const int64_t sh[2] = {2, 3}, c4 = 4;
    nb_tensor x, gma, out;
    ck_assert_int_eq(nb_tensor_zeros(&x, NB_F32, 2, sh), NB_OK);
    ck_assert_int_eq(nb_tensor_zeros(&gma, NB_F32, 1, &c4), NB_OK);
    ck_assert_int_eq(nb_tensor_zeros(&out, NB_F32, 2, sh), NB_OK);
    nb_norm_params p = {.eps = 1e-5, .naxes = 1, .has_gamma = 1};
    const nb_tensor *in[2] = {&x, &gma};
    nb_kernel_call c = {NB_OP_LAYER_NORM, 2, in, &out, &p, NULL, 0, 0};
    ck_assert_int_eq(nb_cpu_backend()->kernels[NB_OP_LAYER_NORM](&c), NB_ERR_SHAPE);
    c.n_in = 1; /* flags say gamma */
    ck_assert_int_eq(nb_cpu_backend()->kernels[NB_OP_LAYER_NORM](&c), NB_ERR_ARG);
    p.has_gamma = 0;
    p.training = 1;
    c.op = NB_OP_BATCH_NORM; /* training on (2,3): fine; on (1,3) it is not */
    ck_assert_int_eq(nb_cpu_backend()->kernels[NB_OP_BATCH_NORM](&c), NB_OK);
    nb_tensor_release(&x);
    nb_tensor_release(&out);
    const int64_t sh1[2] = {1, 3};
    ck_assert_int_eq(nb_tensor_zeros(&x, NB_F32, 2, sh1), NB_OK);
    ck_assert_int_eq(nb_tensor_zeros(&out, NB_F32, 2, sh1), NB_OK);
    ck_assert_int_eq(nb_cpu_backend()->kernels[NB_OP_BATCH_NORM](&c), NB_ERR_SHAPE);
    ck_assert(strstr(nb_last_error(), "more than 1 value per channel"));
    nb_tensor_release(&x);
    nb_tensor_release(&gma);
    nb_tensor_release(&out);
}
END_TEST

static Suite *norm_suite(void)
{
    Suite *s = suite_create("norm");
    TCase *tc = tcase_create("forward");
    tcase_add_loop_test(tc, test_forward, 0, 2 * N_CASES);
    tcase_add_test(tc, test_running_stats);
    tcase_add_test(tc, test_eval);
    suite_add_tcase(s, tc);
    tc = tcase_create("gradient");
    tcase_add_loop_test(tc, test_gradcheck, 0, N_CASES);
    tcase_add_loop_test(tc, test_grad_f32, 0, N_CASES);
    tcase_add_loop_test(tc, test_threaded, 0, 4);
    tcase_add_loop_test(tc, test_offset, 0, 3);
    tcase_add_test(tc, test_no_second_order);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_kernel_validation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return nb_run_suite(norm_suite());
}
