/* The f32 Winograd path of conv2d (kernels/conv_winograd.c: 3x3, stride 1):
 * checked op by op (forward, input and weight gradients) against f64 loops,
 * with its im2col fallback forced as well, for its routing, and for results
 * that do not depend on the thread count or the workspace given. */
#include <check.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "conv_ref.h"
#include "nabla.h"
#include "kernels/conv_winograd.h"
#include "kernels/cpu.h"

/* ---- f32: the Winograd path (3x3, stride 1) and its im2col fallback ------- */

/* 3x3 stride-1 convolutions that kernels/conv_winograd.c takes in f32 (channel
 * counts >= 8): channel counts off the 16-lane vectors, odd sizes (partial
 * 2x2 tiles), asymmetric and large padding (the input gradient then reads
 * from a negative offset), batch 1, no bias, images split into several units
 * of tiles down and across, small images grouped two to a unit, wide outputs
 * on few tiles split into channel parts (80 + 64; 80 + 80 + 80 + 32 of which
 * 28 padding). */
static const ccase wino_cases[] = {
    {"16->16 14x14 pad 1", 2, 16, 14, 14, 16, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"9->11 7x9 pad 1 no bias", 3, 9, 7, 9, 11, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), false},
    {"batch 1 8->20 asym pad", 1, 8, 11, 6, 20, 3, 3, ARGS(1, 1, 0, 2, 2, 1, 1, 1, 0, 0, 1), true},
    {"24->8 9x13 no pad", 2, 24, 9, 13, 8, 3, 3, PLAIN, true},
    {"12->10 pad 3", 1, 12, 5, 6, 10, 3, 3, ARGS(1, 1, 3, 1, 0, 3, 1, 1, 0, 0, 1), true},
    {"70->40 4x100 column units", 1, 70, 4, 100, 40, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"32->64 14x14 (fmnist conv2)", 3, 32, 14, 14, 64, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"8->8 1x1 image pad 1", 2, 8, 1, 1, 8, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"64->64 30x20 row units", 1, 64, 30, 20, 64, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), false},
    {"batch 9 12->10 5x4 two images a unit", 9, 12, 5, 4, 10, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"batch 1 16->144 6x6 two channel parts", 1, 16, 6, 6, 144, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"batch 2 24->260 5x7 four channel parts", 2, 24, 5, 7, 260, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
};
#define N_WINO ((int)(sizeof wino_cases / sizeof wino_cases[0]))

/* The kernel call of op (conv2d, its transpose or its weight gradient) for
 * case c, on new tensors: t[0] x, t[1] w, t[2] y (or gy), t[3] dw. */
typedef struct conv_call {
    nb_tensor t[4];
    const nb_tensor *in[3];
    nb_conv_params p;
    nb_kernel_call call;
} conv_call;

static void make_conv_call(conv_call *k, const ccase *c, nb_op op)
{
    geo r = geo_of(&c->a);
    int64_t OH, OW;
    conv_out_hw(c, &r, &OH, &OW);
    int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->CO, c->C / r.G, c->KH, c->KW};
    int64_t ys[4] = {c->N, c->CO, OH, OW};
    memset(k, 0, sizeof *k);
    k->p = (nb_conv_params){{r.s[0], r.s[1]}, {r.pb[0], r.pb[1]}, {r.pe[0], r.pe[1]},
                            {r.d[0], r.d[1]}, {0, 0}, r.G, {0, 0, 0, 0}};
    ck_assert_int_eq(nb_tensor_empty(&k->t[0], NB_F32, 4, xs), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&k->t[1], NB_F32, 4, ws), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&k->t[2], NB_F32, 4, ys), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&k->t[3], NB_F32, 4, ws), NB_OK);
    memcpy(k->p.weight_shape, ws, sizeof ws);
    if (op == NB_OP_CONV2D) /* x, w -> y */
        k->in[0] = &k->t[0], k->in[1] = &k->t[1], k->call.out = &k->t[2];
    else if (op == NB_OP_CONV_TRANSPOSE2D) /* gy, w -> dx */
        k->in[0] = &k->t[2], k->in[1] = &k->t[1], k->call.out = &k->t[0];
    else /* x, gy -> dw */
        k->in[0] = &k->t[0], k->in[1] = &k->t[2], k->call.out = &k->t[3];
    k->call.op = op, k->call.n_in = 2, k->call.in = k->in, k->call.params = &k->p;
}

static void free_conv_call(conv_call *k)
{
    for (int i = 0; i < 4; i++)
        nb_tensor_release(&k->t[i]);
}

/* Whether the three ops of case c are routed to Winograd: the workspace the
 * CPU backend asks for is Winograd's (the path runs exactly when enabled on a
 * CPU with AVX-512). */
static void check_route(const ccase *c, bool want)
{
    static const nb_op ops[3] = {NB_OP_CONV2D, NB_OP_CONV_TRANSPOSE2D, NB_OP_CONV2D_GRAD_WEIGHT};
    geo r = geo_of(&c->a);
    int64_t OH, OW;
    conv_out_hw(c, &r, &OH, &OW);
    nb_wino fw = {c->N, c->C, c->H, c->W, c->CO, OH, OW, r.pb[0], r.pb[1]};
    nb_wino tr = {c->N, c->CO, OH, OW, c->C, c->H, c->W, 2 - r.pb[0], 2 - r.pb[1]};
    for (int k = 0; k < 3; k++) {
        conv_call cc;
        make_conv_call(&cc, c, ops[k]);
        size_t got = nb_cpu_conv_workspace(&cc.call);
        size_t wino = nb_wino_workspace(k == 1 ? &tr : &fw, k == 2, nb_get_num_threads());
        ck_assert_msg(wino > 0 || !want, "%s: no Winograd workspace", c->name);
        ck_assert_msg((got == wino) == want, "%s %s: workspace %zu, Winograd's %zu, want %s",
                      c->name, nb_op_name(ops[k]), got, wino, want ? "Winograd" : "im2col");
        free_conv_call(&cc);
    }
}

/* y = conv2d(x, w, b) and the gradients of sum(y * cv) in f32 against f64
 * loops: dx[n,c,ih,iw] += cv w, dw[o,c,p,q] += cv x, db[o] += cv. */
static void f32_grad_case(const ccase *c)
{
    geo r = geo_of(&c->a);
    int64_t OH, OW;
    conv_out_hw(c, &r, &OH, &OW);
    int64_t CG = c->C / r.G;
    int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->CO, CG, c->KH, c->KW};
    int64_t ys[4] = {c->N, c->CO, OH, OW}, bs[1] = {c->CO};
    int64_t nx = nb_shape_numel(4, xs), nw = nb_shape_numel(4, ws), ny = nb_shape_numel(4, ys);
    double *x = random_vals(nx), *w = random_vals(nw), *cv = random_vals(ny);
    double *b = c->bias ? random_vals(c->CO) : NULL, *y = malloc((size_t)ny * sizeof(double));
    double *dx = calloc((size_t)nx, sizeof(double)), *dw = calloc((size_t)nw, sizeof(double));
    double *db = calloc((size_t)c->CO, sizeof(double));
    ref_conv2d(c, &r, x, w, b, y, OH, OW);
    ref_conv2d_grad(c, &r, x, w, cv, dx, dw, db, OH, OW);
    nb_graph *g = nb_graph_new();
    nb_node *px = param_vals(g, "x", NB_F32, 4, xs, x), *pw = param_vals(g, "w", NB_F32, 4, ws, w);
    nb_node *pb = b ? param_vals(g, "b", NB_F32, 1, bs, b) : NULL;
    nb_node *pc = param_vals(g, "c", NB_F32, 4, ys, cv);
    nb_node *ny_ = nb_conv2d(g, px, pw, pb, &c->a);
    nb_node *loss = nb_sum(g, nb_mul(g, ny_, pc), 0, NULL, false);
    nb_node *wrt[3] = {px, pw, pb}, *outs[4] = {ny_};
    int nw_ = b ? 3 : 2;
    ck_assert_msg(nb_grad(g, loss, nw_, wrt, outs + 1) == NB_OK, "%s", nb_graph_error(g));
    double *res[4];
    eval(g, 1 + nw_, outs, res);
    assert_close_scaled("f32 y", c->name, res[0], y, ny, 1e-5);
    assert_close_scaled("f32 dx", c->name, res[1], dx, nx, 1e-5);
    assert_close_scaled("f32 dw", c->name, res[2], dw, nw, 1e-5);
    if (b)
        assert_close_scaled("f32 db", c->name, res[3], db, c->CO, 1e-5);
    for (int k = 0; k < 1 + nw_; k++)
        free(res[k]);
    nb_graph_free(g);
    free(x), free(w), free(cv), free(b), free(y), free(dx), free(dw), free(db);
}

/* The case through Winograd (where the CPU has AVX-512), then the same with
 * the path switched off (the im2col + GEMM fallback); both against f64. The
 * transposed conv (stride 1, 3x3) of the case's shape runs too. */
START_TEST(test_wino_f32)
{
    const ccase *c = &wino_cases[_i];
    bool avx512 = __builtin_cpu_supports("avx512f");
    ck_assert_int_eq(nb_wino_enabled(), avx512);
    for (int on = 1; on >= 0; on--) {
        nb_wino_set_enabled(on);
        check_route(c, on && avx512);
        nb_rng_init(&rng, 1200 + (uint64_t)_i);
        f32_grad_case(c);
        ccase t = *c; /* as a transpose: x (N, C, H, W), w (C, CO, 3, 3) */
        if (c->a.padding[0] <= 2 && c->a.padding[1] <= 2 && c->a.padding[2] <= 2 &&
            c->a.padding[3] <= 2)
            forward_case_tol(&t, 1, NB_F32, true); /* F(4x4, 3x3): see assert_close_scaled */
    }
    nb_wino_set_enabled(true);
}
END_TEST

/* Layers Winograd does not take (a channel count < 8, groups, stride 2,
 * 5x5, dilation, more than 512 x 512 channel pairs) stay on im2col; f64 never
 * takes it. */
START_TEST(test_wino_not_taken)
{
    static const ccase thin[] = {
        {"1->32", 2, 1, 6, 6, 32, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
        {"16->7", 2, 16, 6, 6, 7, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
        {"groups 2", 2, 16, 6, 6, 16, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 2), true},
        {"stride 2", 2, 16, 6, 6, 16, 3, 3, ARGS(2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
        {"dilation 2", 2, 16, 6, 6, 16, 3, 3, ARGS(1, 1, 2, 2, 2, 2, 2, 2, 0, 0, 1), true},
        {"5x5", 2, 16, 6, 6, 16, 5, 5, ARGS(1, 1, 2, 2, 2, 2, 1, 1, 0, 0, 1), true},
        {"520->512 (too wide)", 1, 520, 3, 2, 512, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
        /* 16 tiles under 4.2 MB of transformed weights: im2col */
        {"256->256 7x7 batch 1 (few tiles)", 1, 256, 7, 7, 256, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    };
    /* the same at batch 2 has tiles enough */
    const ccase two = {"256->256 7x7 batch 2", 2, 256, 7, 7, 256, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true};
    check_route(&two, true);
    for (int k = 0; k < (int)(sizeof thin / sizeof thin[0]); k++) {
        nb_rng_init(&rng, 1300 + (uint64_t)k);
        check_route(&thin[k], false);
        f32_grad_case(&thin[k]);
    }
    /* an eligible shape in f64: the workspace is im2col's, not Winograd's */
    const ccase *c = &wino_cases[0];
    conv_call cc;
    make_conv_call(&cc, c, NB_OP_CONV2D);
    nb_tensor t64[3];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(nb_tensor_empty(&t64[i], NB_F64, 4, cc.t[i].shape), NB_OK);
    const nb_tensor *in[2] = {&t64[0], &t64[1]};
    cc.call.in = in, cc.call.out = &t64[2];
    nb_wino fw = {c->N, c->C, c->H, c->W, c->CO, c->H, c->W, 1, 1};
    size_t ws64 = nb_cpu_conv_workspace(&cc.call);
    ck_assert(ws64 > 0 && ws64 != nb_wino_workspace(&fw, false, nb_get_num_threads()));
    for (int i = 0; i < 3; i++)
        nb_tensor_release(&t64[i]);
    free_conv_call(&cc);
}
END_TEST

/* The kernels called directly on a Winograd shape: with no workspace and
 * with one too small (each allocates one slot), with a full one; the results
 * agree bit for bit, as they do across thread counts for the forward and the
 * input gradient (disjoint outputs); the weight gradient is repeatable. */
/* Runs a session three times (a thread's body). */
static void *run_thrice(void *arg)
{
    for (int r = 0; r < 3; r++)
        if (nb_session_run(arg) != NB_OK)
            return arg;
    return NULL;
}

/* Constant weights (a CONST node, as ONNX initializers are): the transform
 * is made at the first run and kept in the plan's cache for the entry;
 * every run equals the run with the same weights as a PARAM (transformed
 * each call) bit for bit, forward and transpose, including two sessions of
 * one plan making their first runs at the same time on two threads. */
START_TEST(test_wino_const_weights_cached)
{
    const ccase *c = &wino_cases[0];
    geo r = geo_of(&c->a);
    int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->CO, c->C, c->KH, c->KW};
    nb_rng_init(&rng, 77);
    double *x = random_vals(nb_shape_numel(4, xs)), *w = random_vals(nb_shape_numel(4, ws));
    double *res[3];
    for (int k = 0; k < 3; k++) { /* 0: param weights; 1, 2: constant, runs 1 and 3 */
        nb_graph *g = nb_graph_new();
        nb_node *nx = param_vals(g, "x", NB_F32, 4, xs, x), *nw;
        if (k == 0) {
            nw = param_vals(g, "w", NB_F32, 4, ws, w);
        } else {
            nb_tensor t;
            ck_assert_int_eq(nb_tensor_empty(&t, NB_F32, 4, ws), NB_OK);
            for (int64_t i = 0; i < nb_shape_numel(4, ws); i++)
                ((float *)nb_tensor_data(&t))[i] = (float)w[i];
            nw = nb_constant(g, &t);
            nb_tensor_release(&t);
        }
        nb_node *y = nb_conv2d(g, nx, nw, NULL, &c->a);
        nb_node *z = nb_conv_transpose2d(g, y, nw, NULL, &c->a);
        nb_node *outs[2] = {y, z};
        nb_plan *plan = nb_compile(g, 2, outs, nb_cpu_backend());
        ck_assert_msg(plan != NULL, "compile: %s", nb_last_error());
        nb_session *s = nb_session_new(plan), *s2 = k == 2 ? nb_session_new(plan) : NULL;
        ck_assert_ptr_nonnull(s);
        if (k == 2) { /* two sessions of the plan, first runs racing for the cache */
            ck_assert_ptr_nonnull(s2);
            pthread_t th;
            ck_assert_int_eq(pthread_create(&th, NULL, run_thrice, s2), 0);
            ck_assert_ptr_null(run_thrice(s));
            void *ret = s;
            ck_assert_int_eq(pthread_join(th, &ret), 0);
            ck_assert_ptr_null(ret);
            nb_tensor t2;
            ck_assert_int_eq(nb_session_fetch(s2, y, &t2), NB_OK);
            nb_tensor t1;
            ck_assert_int_eq(nb_session_fetch(s, y, &t1), NB_OK);
            ck_assert(memcmp(nb_tensor_data(&t1), nb_tensor_data(&t2),
                             (size_t)nb_tensor_numel(&t1) * sizeof(float)) == 0);
            nb_tensor_release(&t1);
            nb_tensor_release(&t2);
            nb_session_free(s2);
        } else {
            ck_assert_int_eq(nb_session_run(s), NB_OK);
        }
        nb_tensor ty, tz;
        ck_assert_int_eq(nb_session_fetch(s, y, &ty), NB_OK);
        ck_assert_int_eq(nb_session_fetch(s, z, &tz), NB_OK);
        int64_t ny = nb_tensor_numel(&ty), nz = nb_tensor_numel(&tz);
        res[k] = malloc((size_t)(ny + nz) * sizeof(double));
        for (int64_t i = 0; i < ny; i++)
            res[k][i] = ((const float *)nb_tensor_data(&ty))[i];
        for (int64_t i = 0; i < nz; i++)
            res[k][ny + i] = ((const float *)nb_tensor_data(&tz))[i];
        if (k > 0)
            ck_assert_msg(memcmp(res[k], res[0], (size_t)(ny + nz) * sizeof(double)) == 0,
                          "constant weights (%d runs) differ from parameter weights", k == 2 ? 3 : 1);
        nb_tensor_release(&ty);
        nb_tensor_release(&tz);
        nb_session_free(s);
        nb_plan_free(plan);
        nb_graph_free(g);
    }
    (void)r;
    for (int k = 0; k < 3; k++)
        free(res[k]);
    free(x), free(w);
}
END_TEST

/* Both output tiles on every case, through nb_wino_conv with the tile set,
 * against f64 loops by the scaled rule at 1e-5: with the bias and a clamp to
 * 3/4 of the largest |output| either way (so that it cuts some, and the
 * scale stays near the sums'), then with a residual added after and clamped
 * to [0, inf) (the fused block ending). The tiles size their transformed weights apart: 16
 * or 36 floats a channel pair (rounded up to 16 channels). */
START_TEST(test_wino_tiles)
{
    const ccase *c = &wino_cases[_i];
    if (!nb_wino_enabled()) {
        printf("SKIP winograd tiles %s: the path needs AVX-512F, which this CPU lacks\n", c->name);
        return;
    }
    geo r = geo_of(&c->a);
    int64_t OH, OW;
    conv_out_hw(c, &r, &OH, &OW);
    int64_t nx = c->N * c->C * c->H * c->W, nw = c->CO * c->C * 9, ny = c->N * c->CO * OH * OW;
    nb_rng_init(&rng, 1500 + (uint64_t)_i);
    double *x = random_vals(nx), *w = random_vals(nw), *b = random_vals(c->CO);
    double *rs = random_vals(ny), *ref = malloc((size_t)ny * sizeof(double));
    double *want = malloc((size_t)ny * sizeof(double)), *got = malloc((size_t)ny * sizeof(double));
    float *xf = f32_rounded_copy(x, nx), *wf = f32_rounded_copy(w, nw);
    float *bf = f32_rounded_copy(b, c->CO), *rf = f32_rounded_copy(rs, ny);
    float *yf = malloc((size_t)ny * sizeof(float));
    ck_assert(ref && want && got && yf);
    ref_conv2d(c, &r, x, w, b, ref, OH, OW);
    double big = 0;
    for (int64_t i = 0; i < ny; i++)
        big = fabs(ref[i]) > big ? fabs(ref[i]) : big;
    float lim = (float)(0.75 * big);
    /* U: 16 or 36 floats a channel pair, channels rounded up to 16; split
     * into parts (the wide cases), its output channels are padded to parts
     * of one width (at most 3 x 16 more: 260 -> 4 x 80) */
    int64_t cp = (c->C + 15) / 16 * 16, pairs = cp * ((c->CO + 15) / 16 * 16);
    for (int tile = 2; tile <= 4; tile += 2)
        for (int fused = 0; fused < 2; fused++) {
            nb_wino s = {c->N, c->C, c->H, c->W, c->CO, OH, OW, r.pb[0], r.pb[1], !fused, -lim, lim};
            if (fused)
                s.res = rf, s.rclamp = true, s.rlo = 0.0f, s.rhi = INFINITY;
            s.tile = tile;
            size_t u = nb_wino_weights_bytes(&s), need = nb_wino_workspace(&s, false, 2);
            size_t per = (size_t)(tile == 2 ? 16 : 36) * sizeof(float);
            ck_assert_msg(u >= per * (size_t)pairs && u < per * (size_t)(pairs + cp * 48) + 64,
                          "%s tile %d: %zu bytes of transformed weights", c->name, tile, u);
            char *ws = aligned_alloc(64, (need + 63) / 64 * 64);
            ck_assert_ptr_nonnull(ws);
            memset(yf, 0x7f, (size_t)ny * sizeof(float)); /* garbage to overwrite */
            nb_wino_conv(&s, wf, false, bf, xf, yf, ws, need);
            for (int64_t i = 0; i < ny; i++) {
                double v = ref[i];
                if (fused) {
                    v += rs[i];
                    v = v < 0 ? 0 : v;
                } else {
                    v = v < -lim ? -lim : v > lim ? lim : v;
                }
                want[i] = v, got[i] = yf[i];
            }
            char what[64];
            snprintf(what, sizeof what, "tile %d%s", tile, fused ? " + residual" : " clamped");
            assert_close_scaled(what, c->name, got, want, ny, 1e-5);
            free(ws);
        }
    free(x), free(w), free(b), free(rs), free(ref), free(want), free(got);
    free(xf), free(wf), free(bf), free(rf), free(yf);
}
END_TEST

/* Which tile a forward call takes by itself: F(4x4, 3x3) where it saves
 * multiplies and its transformed weights are read for enough tiles
 * (ResNet-18's stages at batch 1 and 8), F(2x2, 3x3) elsewhere. The choice
 * shows in the transformed weights' size. */
START_TEST(test_wino_tile_choice)
{
    static const struct {
        int64_t n, ch, hw;
        int tile;
    } cases[] = {
        {1, 64, 56, 4},  /* 196 tiles of 4x4 */
        {1, 128, 28, 4}, /* 49 tiles, 2.4 MB of F(4x4, 3x3) weights */
        {1, 256, 14, 2}, /* 16 tiles for 9.4 MB: one unit, one thread */
        {8, 256, 14, 4},
        {8, 512, 7, 2},  /* over 256 x 256 channel pairs */
        {8, 16, 2, 2},   /* a 2x2 image: one 4x4 tile, 36 multiplies against 16 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t n = cases[i].n, ch = cases[i].ch, hw = cases[i].hw;
        nb_wino s = {n, ch, hw, hw, ch, hw, hw, 1, 1};
        size_t u = nb_wino_weights_bytes(&s), per = (size_t)(cases[i].tile == 2 ? 16 : 36);
        if (!nb_wino_enabled()) { /* the size is worked out all the same */
            printf("SKIP tile choice: AVX-512F absent; the sizes are still checked\n");
        }
        ck_assert_msg(u == per * (size_t)(ch * ch) * sizeof(float),
                      "batch %lld, %lld channels, %lldx%lld: %zu bytes of transformed weights, "
                      "want F(%dx%d, 3x3)'s",
                      (long long)n, (long long)ch, (long long)hw, (long long)hw, u,
                      cases[i].tile, cases[i].tile);
    }
}
END_TEST

START_TEST(test_wino_direct_threads)
{
    const ccase *c = &wino_cases[8]; /* 64->64 30x20, several units */
    static const nb_op ops[3] = {NB_OP_CONV2D, NB_OP_CONV_TRANSPOSE2D, NB_OP_CONV2D_GRAD_WEIGHT};
    int saved = nb_get_num_threads();
    for (int k = 0; k < 3; k++) {
        conv_call cc;
        make_conv_call(&cc, c, ops[k]);
        nb_rng_init(&rng, 1400 + (uint64_t)k);
        for (int i = 0; i < 3; i++) {
            nb_tensor *t = &cc.t[i];
            ck_assert_int_eq(nb_rng_fill_uniform(&rng, t, -1, 1), NB_OK);
        }
        int64_t n = nb_tensor_numel(cc.call.out);
        size_t bytes = (size_t)n * sizeof(float);
        float *first = malloc(bytes), *two = malloc(bytes);
        for (int run = 0; run < 6; run++) {
            /* run 0: no workspace; 1: too small (one slot each); 2-5: 1, 2,
             * 3, 2 threads with a full workspace */
            int threads = run < 2 ? 2 : run == 5 ? 2 : run - 1;
            nb_set_num_threads(threads);
            size_t need = nb_cpu_conv_workspace(&cc.call);
            ck_assert(need > 0);
            void *ws = run == 0 ? NULL : aligned_alloc(64, (need + 63) / 64 * 64);
            cc.call.workspace = ws, cc.call.workspace_size = run == 1 ? need / 4 : need;
            memset(nb_tensor_data(cc.call.out), 0x7f, bytes); /* garbage to overwrite */
            ck_assert_msg(nb_cpu_conv(&cc.call) == NB_OK, "%s", nb_last_error());
            const float *got = nb_tensor_data(cc.call.out);
            if (run == 3)
                memcpy(two, got, bytes);
            if (run == 0) {
                memcpy(first, got, bytes);
            } else if (k < 2 || run <= 2 || run == 5) {
                ck_assert_msg(memcmp(run == 5 ? two : first, got, bytes) == 0,
                              "%s: run %d (%d threads) differs", nb_op_name(ops[k]), run, threads);
            } else { /* the weight gradient's slots sum in another order */
                for (int64_t i = 0; i < n; i++)
                    ck_assert_msg(fabsf(first[i] - got[i]) <= 1e-4f * (1 + fabsf(first[i])),
                                  "%s: %d threads: element %lld %g vs %g", nb_op_name(ops[k]),
                                  threads, (long long)i, got[i], first[i]);
            }
            free(ws);
        }
        free(first), free(two);
        free_conv_call(&cc);
    }
    nb_set_num_threads(saved);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv_winograd");
    TCase *wi = tcase_create("winograd");
    tcase_add_loop_test(wi, test_wino_f32, 0, N_WINO);
    tcase_add_test(wi, test_wino_not_taken);
    tcase_add_loop_test(wi, test_wino_tiles, 0, N_WINO);
    tcase_add_test(wi, test_wino_tile_choice);
    tcase_add_test(wi, test_wino_direct_threads);
    tcase_add_test(wi, test_wino_const_weights_cached);
    suite_add_tcase(s, wi);
    return nb_run_suite(s);
}
