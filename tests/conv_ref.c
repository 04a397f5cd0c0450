/* Reference loops and graph helpers of the convolution suites (conv_ref.h). */
#include "conv_ref.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>

nb_rng rng;

geo geo_of(const nb_conv_args *a)
{
    geo r;
    for (int i = 0; i < 2; i++) {
        r.s[i] = a->stride[i] ? a->stride[i] : 1;
        r.d[i] = a->dilation[i] ? a->dilation[i] : 1;
        r.pb[i] = a->padding[2 * i];
        r.pe[i] = a->padding[2 * i + 1];
        r.op[i] = a->output_padding[i];
    }
    r.G = a->groups ? a->groups : 1;
    return r;
}

int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe)
{
    return (in + pb + pe - d * (k - 1) - 1) / s + 1;
}

void conv_out_hw(const ccase *c, const geo *r, int64_t *OH, int64_t *OW)
{
    *OH = out_size(c->H, c->KH, r->s[0], r->d[0], r->pb[0], r->pe[0]);
    *OW = out_size(c->W, c->KW, r->s[1], r->d[1], r->pb[1], r->pe[1]);
}

/* The gather both references walk: for each output y[n,o,i,j] the inputs
 * x[n, g*CG+ci, i*s-pb+p*d, j*s-pl+q*d] it reads with weight w[o,ci,p,q].
 * Where y is given, y = b + sum w x; where cv is given, the gradients of
 * sum(y * cv) are added into dx, dw and (when given) db. */
static void gather(const ccase *c, const geo *r, const double *x, const double *w,
                   const double *b, double *y, const double *cv, double *dx, double *dw,
                   double *db, int64_t OH, int64_t OW)
{
    int64_t CG = c->C / r->G, COG = c->CO / r->G;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = 0; o < c->CO; o++)
            for (int64_t i = 0; i < OH; i++)
                for (int64_t j = 0; j < OW; j++) {
                    int64_t yi = ((n * c->CO + o) * OH + i) * OW + j;
                    double acc = b ? b[o] : 0, gv = cv ? cv[yi] : 0;
                    int64_t g = o / COG;
                    if (db)
                        db[o] += gv;
                    for (int64_t ci = 0; ci < CG; ci++)
                        for (int64_t p = 0; p < c->KH; p++)
                            for (int64_t q = 0; q < c->KW; q++) {
                                int64_t ih = i * r->s[0] - r->pb[0] + p * r->d[0];
                                int64_t iw = j * r->s[1] - r->pb[1] + q * r->d[1];
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W)
                                    continue;
                                int64_t xi = ((n * c->C + g * CG + ci) * c->H + ih) * c->W + iw;
                                int64_t wi = ((o * CG + ci) * c->KH + p) * c->KW + q;
                                if (y)
                                    acc += w[wi] * x[xi];
                                if (cv) {
                                    dw[wi] += gv * x[xi];
                                    dx[xi] += gv * w[wi];
                                }
                            }
                    if (y)
                        y[yi] = acc;
                }
}

/* y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] x[n, g*CG+c, i*s-pb+p*d, j*s-pl+q*d] */
void ref_conv2d(const ccase *c, const geo *r, const double *x, const double *w, const double *b,
                double *y, int64_t OH, int64_t OW)
{
    gather(c, r, x, w, b, y, NULL, NULL, NULL, NULL, OH, OW);
}

/* dw += cv x, dx += cv w and db += cv over the same gather */
void ref_conv2d_grad(const ccase *c, const geo *r, const double *x, const double *w,
                     const double *cv, double *dx, double *dw, double *db, int64_t OH,
                     int64_t OW)
{
    gather(c, r, x, w, NULL, NULL, cv, dx, dw, db, OH, OW);
}

/* scatter: y[n, g*COG+co, i*s-pb+p*d, j*s-pl+q*d] += x[n,ci,i,j] w[ci,co,p,q] */
void ref_transpose(const ccase *c, const geo *r, const double *x, const double *w,
                          const double *b, double *y, int64_t OH, int64_t OW)
{
    int64_t CG = c->C / r->G, COG = c->CO / r->G;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = 0; o < c->CO; o++)
            for (int64_t k = 0; k < OH * OW; k++)
                y[(n * c->CO + o) * OH * OW + k] = b ? b[o] : 0;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t ci = 0; ci < c->C; ci++)
            for (int64_t i = 0; i < c->H; i++)
                for (int64_t j = 0; j < c->W; j++) {
                    double v = x[((n * c->C + ci) * c->H + i) * c->W + j];
                    int64_t g = ci / CG;
                    for (int64_t co = 0; co < COG; co++)
                        for (int64_t p = 0; p < c->KH; p++)
                            for (int64_t q = 0; q < c->KW; q++) {
                                int64_t oh = i * r->s[0] - r->pb[0] + p * r->d[0];
                                int64_t ow = j * r->s[1] - r->pb[1] + q * r->d[1];
                                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW)
                                    continue;
                                y[((n * c->CO + g * COG + co) * OH + oh) * OW + ow] +=
                                    v * w[((ci * COG + co) * c->KH + p) * c->KW + q];
                            }
                }
}

/* ---- graph helpers ------------------------------------------------------- */

double *random_vals(int64_t n)
{
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    ck_assert_ptr_nonnull(v);
    for (int64_t i = 0; i < n; i++)
        v[i] = 2 * nb_rng_uniform(&rng) - 1;
    return v;
}

float *f32_rounded_copy(double *v, int64_t n)
{
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(f);
    for (int64_t i = 0; i < n; i++) {
        f[i] = (float)v[i];
        v[i] = f[i];
    }
    return f;
}

/* A parameter of dtype dt holding vals (converted). */
nb_node *param_vals(nb_graph *g, const char *name, nb_dtype dt, int ndim,
                           const int64_t *shape, const double *vals)
{
    nb_node *p = nb_param(g, name, dt, ndim, shape);
    ck_assert_msg(!nb_node_is_poison(p), "param %s: %s", name, nb_graph_error(g));
    nb_tensor *t = nb_node_value(p);
    int64_t n = nb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        if (dt == NB_F32)
            ((float *)nb_tensor_data(t))[i] = (float)vals[i];
        else
            ((double *)nb_tensor_data(t))[i] = vals[i];
    }
    return p;
}

/* Run the graph for outputs outs[0..n) and copy them as doubles into res[k]. */
void eval(nb_graph *g, int n, nb_node *const *outs, double **res)
{
    ck_assert_msg(nb_graph_status(g) == NB_OK, "graph: %s", nb_graph_error(g));
    nb_plan *plan = nb_compile(g, n, outs, NULL);
    ck_assert_msg(plan != NULL, "compile: %s", nb_last_error());
    nb_session *s = nb_session_new(plan);
    ck_assert_ptr_nonnull(s);
    ck_assert_msg(nb_session_run(s) == NB_OK, "run: %s", nb_last_error());
    for (int k = 0; k < n; k++) {
        nb_tensor t;
        ck_assert_int_eq(nb_session_fetch(s, outs[k], &t), NB_OK);
        int64_t m = nb_tensor_numel(&t);
        res[k] = malloc((size_t)(m > 0 ? m : 1) * sizeof(double));
        ck_assert(nb_tensor_is_contiguous(&t));
        for (int64_t i = 0; i < m; i++)
            res[k][i] = t.dtype == NB_F32 ? ((const float *)nb_tensor_data(&t))[i]
                                          : ((const double *)nb_tensor_data(&t))[i];
        nb_tensor_release(&t);
    }
    nb_session_free(s);
    nb_plan_free(plan);
}

double *run_counting(nb_graph *g, int n, nb_node *const *outs, nb_op op, int *entries,
                     int64_t *count)
{
    nb_plan *plan = nb_compile(g, n, outs, NULL);
    ck_assert_msg(plan != NULL, "compile: %s", nb_last_error());
    nb_session *s = nb_session_new(plan);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(nb_session_set_profiling(s, true), NB_OK);
    ck_assert_msg(nb_session_run(s) == NB_OK, "run: %s", nb_last_error());
    int ne = nb_plan_num_entries(plan);
    nb_profile_entry *pe = calloc((size_t)ne, sizeof *pe);
    ck_assert_int_eq(nb_session_profile(s, pe, ne), ne);
    *entries = 0;
    for (int i = 0; i < ne; i++)
        *entries += pe[i].op == op;
    free(pe);
    nb_tensor t;
    ck_assert_int_eq(nb_session_fetch(s, outs[0], &t), NB_OK);
    int64_t m = nb_tensor_numel(&t);
    double *r = malloc(sizeof(double) * (size_t)(m > 0 ? m : 1));
    for (int64_t i = 0; i < m; i++)
        r[i] = t.dtype == NB_F32 ? ((const float *)nb_tensor_data(&t))[i]
                                 : ((const double *)nb_tensor_data(&t))[i];
    *count = m;
    nb_tensor_release(&t);
    nb_session_free(s);
    nb_plan_free(plan);
    return r;
}

bool same_bits(double a, double b)
{
    return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}

void assert_close(const char *what, const double *got, const double *want, int64_t n,
                         double tol)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * (1 + fabs(want[i])),
                      "%s: element %lld is %.10g, reference %.10g", what, (long long)i, got[i],
                      want[i]);
}

void assert_close_scaled(const char *what, const char *name, const double *got,
                         const double *want, int64_t n, double tol)
{
    double scale = 1;
    for (int64_t i = 0; i < n; i++)
        scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * scale,
                      "%s %s: element %lld is %.8g, reference %.8g (scale %.3g)", what, name,
                      (long long)i, got[i], want[i], scale);
}

/* ---- forward against the references ------------------------------------- */

void forward_case(const ccase *c, int kind, nb_dtype dt)
{
    forward_case_tol(c, kind, dt, false);
}

void forward_case_tol(const ccase *c, int kind, nb_dtype dt, bool scaled)
{
    /* kind 0: conv2d, 1: conv_transpose2d, 2: conv1d */
    geo r = geo_of(&c->a);
    nb_conv_args a = c->a;
    if (kind == 2) { /* the reference sees the 1-D args on the width dim */
        r = geo_of(&(nb_conv_args)ARGS(1, c->a.stride[0], 0, 0, c->a.padding[0], c->a.padding[1],
                                       1, c->a.dilation[0], 0, 0, c->a.groups));
    }
    int64_t xs[4] = {c->N, c->C, c->H, c->W};
    int64_t ws[4] = {kind == 1 ? c->C : c->CO, kind == 1 ? c->CO / r.G : c->C / r.G, c->KH, c->KW};
    int64_t OH, OW;
    if (kind == 1) {
        OH = (c->H - 1) * r.s[0] - r.pb[0] - r.pe[0] + r.d[0] * (c->KH - 1) + 1 + r.op[0];
        OW = (c->W - 1) * r.s[1] - r.pb[1] - r.pe[1] + r.d[1] * (c->KW - 1) + 1 + r.op[1];
    } else {
        conv_out_hw(c, &r, &OH, &OW);
    }
    double *x = random_vals(nb_shape_numel(4, xs)), *w = random_vals(nb_shape_numel(4, ws));
    double *b = c->bias ? random_vals(c->CO) : NULL;
    int64_t ny = c->N * c->CO * OH * OW;
    ck_assert_msg(OH > 0 && OW > 0 && ny > 0, "%s: bad case", c->name);
    double *ref = malloc((size_t)ny * sizeof(double));
    if (kind == 1)
        ref_transpose(c, &r, x, w, b, ref, OH, OW);
    else
        ref_conv2d(c, &r, x, w, b, ref, OH, OW);
    if (c->a.clamp && kind != 1) /* the fused activation */
        for (int64_t i = 0; i < ny; i++)
            ref[i] = ref[i] < c->a.clamp_min ? c->a.clamp_min
                   : ref[i] > c->a.clamp_max ? c->a.clamp_max : ref[i];

    nb_graph *g = nb_graph_new();
    int64_t x3[3] = {c->N, c->C, c->W}, w3[3] = {c->CO, c->C / r.G, c->KW}, bs[1] = {c->CO};
    nb_node *nx = kind == 2 ? param_vals(g, "x", dt, 3, x3, x) : param_vals(g, "x", dt, 4, xs, x);
    nb_node *nw = kind == 2 ? param_vals(g, "w", dt, 3, w3, w) : param_vals(g, "w", dt, 4, ws, w);
    nb_node *nbias = b ? param_vals(g, "b", dt, 1, bs, b) : NULL;
    nb_node *y = kind == 0 ? nb_conv2d(g, nx, nw, nbias, &a)
               : kind == 1 ? nb_conv_transpose2d(g, nx, nw, nbias, &a)
                           : nb_conv1d(g, nx, nw, nbias, &a);
    ck_assert_msg(nb_graph_status(g) == NB_OK, "%s: %s", c->name, nb_graph_error(g));
    int64_t want4[4] = {c->N, c->CO, OH, OW}, want3[3] = {c->N, c->CO, OW};
    if (kind == 2)
        ck_assert(nb_shape_equal(nb_node_ndim(y), nb_node_shape(y), 3, want3));
    else
        ck_assert_msg(nb_shape_equal(nb_node_ndim(y), nb_node_shape(y), 4, want4),
                      "%s: output shape", c->name);
    double *got;
    eval(g, 1, &y, &got);
    char what[128];
    snprintf(what, sizeof what, "%s %s (%s)", kind == 0 ? "conv2d" : kind == 1 ? "conv_transpose2d" : "conv1d",
             c->name, nb_dtype_name(dt));
    if (scaled && dt == NB_F32)
        assert_close_scaled(what, "", got, ref, ny, 2e-5);
    else
        assert_close(what, got, ref, ny, dt == NB_F32 ? 2e-5 : 1e-12);
    free(got);
    nb_graph_free(g);
    free(x), free(w), free(b), free(ref);
}
