/* Convolutions: conv2d, conv1d and conv_transpose2d.
 *
 * Forward values are compared with naive direct loops written here (a
 * gather for conv2d, a scatter for the transpose) in f64 and f32 over many
 * attribute combinations; the transpose is also checked as the adjoint of
 * conv2d (<conv(x), y> == <x, conv_transpose(y)>). Gradients of input,
 * weight and bias are checked by f64 central differences (nb_gradcheck), and
 * once more at second order. Builder errors are asserted word for word where
 * the message is part of the contract, and the kernel is called directly
 * with and without a workspace. The f32 Winograd path has its own suite
 * (test_conv_winograd.c). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "conv_ref.h"
#include "nabla.h"
#include "kernels/conv_winograd.h"
#include "kernels/cpu.h"

#define GTOL 1e-6
#define STEP 1e-6



/* conv2d attribute combinations (x (N,C,H,W), w (CO, C/groups, KH, KW)) */
static const ccase conv_cases[] = {
    {"plain 3x3", 2, 3, 5, 6, 4, 3, 3, PLAIN, true},
    {"pad 1", 2, 3, 5, 5, 5, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"stride 2", 2, 3, 7, 6, 4, 3, 3, ARGS(2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"stride 2x3 no bias", 3, 2, 8, 9, 3, 3, 2, ARGS(2, 3, 0, 0, 1, 1, 1, 1, 0, 0, 1), false},
    {"dilation 2", 2, 3, 7, 7, 4, 3, 3, ARGS(1, 1, 2, 2, 2, 2, 2, 2, 0, 0, 1), true},
    {"dilation 2x3 stride 2", 2, 2, 9, 11, 3, 3, 3, ARGS(2, 2, 1, 0, 2, 1, 2, 3, 0, 0, 1), true},
    {"asym padding", 2, 3, 5, 6, 4, 3, 3, ARGS(1, 1, 0, 2, 1, 0, 1, 1, 0, 0, 1), true},
    {"groups 2", 2, 4, 5, 5, 6, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 2), true},
    {"groups 3 stride 2", 2, 6, 6, 7, 9, 3, 2, ARGS(2, 1, 1, 0, 0, 1, 1, 1, 0, 0, 3), false},
    {"depthwise", 2, 5, 6, 6, 5, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 5), true},
    {"depthwise x2 dil", 1, 3, 7, 6, 6, 3, 3, ARGS(1, 2, 2, 2, 1, 1, 2, 1, 0, 0, 3), true},
    {"1x1 direct", 3, 5, 4, 3, 7, 1, 1, PLAIN, true},
    {"1x1 stride 2", 2, 5, 5, 4, 3, 1, 1, ARGS(2, 2, 0, 0, 0, 0, 1, 1, 0, 0, 1), true},
    {"1x1 padded", 2, 3, 3, 3, 2, 1, 1, ARGS(1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1), false},
    {"1x1 grouped", 2, 6, 3, 4, 4, 1, 1, ARGS(1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 2), true},
    {"batch 1", 1, 3, 6, 5, 4, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"1x1 image pad 1", 2, 3, 1, 1, 4, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"1x1 image 1x1 kernel", 3, 2, 1, 1, 3, 1, 1, PLAIN, true},
    {"channels 9->11", 2, 9, 5, 5, 11, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"channels 17->13 5x5", 1, 17, 7, 6, 13, 5, 5, ARGS(1, 1, 2, 2, 2, 2, 1, 1, 0, 0, 1), true},
    {"kernel = padded input", 2, 2, 3, 2, 3, 5, 4, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"stride > kernel", 2, 2, 9, 9, 3, 2, 2, ARGS(3, 4, 0, 1, 1, 0, 1, 1, 0, 0, 1), true},
    /* one image, 14x14 out: on 2+ threads its units are channel blocks
     * (32 + 8), rows of 10 + 4 being uneven */
    {"batch 1 8->40 stride 2 to 14x14", 1, 8, 28, 28, 40, 3, 3, ARGS(2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
};
#define N_CONV ((int)(sizeof conv_cases / sizeof conv_cases[0]))

/* conv_transpose2d combinations (x (N,C,H,W), w (C, CO/groups, KH, KW)) */
static const ccase tr_cases[] = {
    {"plain", 2, 3, 4, 5, 4, 3, 3, PLAIN, true},
    {"stride 2 pad 1", 2, 3, 4, 4, 2, 3, 3, ARGS(2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"stride 2 output_padding 1", 2, 3, 4, 3, 2, 3, 3, ARGS(2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1), true},
    {"stride 3x2 op 2x1", 1, 2, 3, 4, 3, 2, 3, ARGS(3, 2, 0, 1, 1, 0, 1, 1, 2, 1, 1), false},
    {"groups 2", 2, 4, 3, 4, 6, 3, 3, ARGS(1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 2), true},
    {"groups 2 stride 2 op 1", 2, 4, 3, 3, 2, 3, 2, ARGS(2, 2, 1, 0, 0, 1, 1, 1, 1, 0, 2), true},
    {"depthwise", 2, 3, 4, 4, 3, 3, 3, ARGS(2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 3), true},
    {"dilation 2 op 1 > stride", 2, 2, 4, 4, 3, 3, 3, ARGS(1, 1, 1, 1, 0, 0, 2, 2, 1, 1, 1), true},
    {"asym padding dil 2x1", 2, 3, 5, 4, 2, 3, 3, ARGS(2, 1, 0, 2, 2, 1, 2, 1, 1, 0, 1), true},
    {"1x1 direct", 2, 5, 3, 4, 6, 1, 1, PLAIN, true},
    {"1x1 stride 2 op 1", 2, 3, 3, 3, 2, 1, 1, ARGS(2, 2, 0, 0, 0, 0, 1, 1, 1, 1, 1), true},
    {"batch 1 1x1 image", 1, 4, 1, 1, 3, 3, 3, ARGS(1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1), true},
};
#define N_TR ((int)(sizeof tr_cases / sizeof tr_cases[0]))

/* conv1d: x (N, C, W), w (CO, C/groups, KW); the 1-D args are index 0 of
 * stride/dilation and padding[0], padding[1] (H = KH = 1). */
static const ccase c1_cases[] = {
    {"plain", 2, 3, 1, 9, 4, 1, 3, PLAIN, true},
    {"stride 2 pad 1,2", 2, 3, 1, 10, 5, 1, 3, ARGS(2, 0, 1, 2, 0, 0, 1, 0, 0, 0, 1), true},
    {"dilation 3 groups 3", 1, 6, 1, 12, 3, 1, 2, ARGS(1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3), false},
    {"depthwise k5", 3, 4, 1, 7, 4, 1, 5, ARGS(1, 0, 2, 2, 0, 0, 1, 0, 0, 0, 4), true},
    {"length 1 pad 1", 1, 2, 1, 1, 3, 1, 3, ARGS(1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 1), true},
};
#define N_C1 ((int)(sizeof c1_cases / sizeof c1_cases[0]))

START_TEST(test_conv2d_forward)
{
    nb_rng_init(&rng, 100 + (uint64_t)_i);
    forward_case(&conv_cases[_i], 0, NB_F64);
    forward_case(&conv_cases[_i], 0, NB_F32);
}
END_TEST

START_TEST(test_transpose_forward)
{
    nb_rng_init(&rng, 200 + (uint64_t)_i);
    forward_case(&tr_cases[_i], 1, NB_F64);
    forward_case(&tr_cases[_i], 1, NB_F32);
}
END_TEST

START_TEST(test_conv1d_forward)
{
    nb_rng_init(&rng, 300 + (uint64_t)_i);
    forward_case(&c1_cases[_i], 2, NB_F64);
    forward_case(&c1_cases[_i], 2, NB_F32);
}
END_TEST

/* depthwise conv2d (groups == C == CO): f32 runs the direct kernel of
 * kernels/conv_depthwise.c (the 3x3 fused interior, per-tap borders, the
 * generic taps), checked against the f64 reference loops */
static const ccase dw_cases[] = {
    {"dw 3x3 s1 p1", 2, 4, 9, 11, 4, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 4), true},
    {"dw 3x3 s2 p1 odd", 1, 3, 13, 15, 3, 3, 3, ARGS(2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 3), true},
    {"dw 3x3 s2 p1 even", 2, 5, 12, 16, 5, 3, 3, ARGS(2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 5), false},
    {"dw 3x3 s1 p0", 1, 3, 7, 9, 3, 3, 3, ARGS(1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 3), true},
    {"dw 3x3 s1 p2", 2, 2, 6, 5, 2, 3, 3, ARGS(1, 1, 2, 2, 2, 2, 1, 1, 0, 0, 2), true},
    {"dw 3x3 s2 p0 no bias", 1, 3, 9, 10, 3, 3, 3, ARGS(2, 2, 0, 0, 0, 0, 1, 1, 0, 0, 3), false},
    {"dw 3x3 dil 2", 2, 3, 10, 9, 3, 3, 3, ARGS(1, 1, 2, 2, 2, 2, 2, 2, 0, 0, 3), true},
    {"dw 5x5 s2 p2", 1, 4, 11, 13, 4, 5, 5, ARGS(2, 2, 2, 2, 2, 2, 1, 1, 0, 0, 4), true},
    {"dw 3x2 asym", 2, 3, 8, 7, 3, 3, 2, ARGS(1, 2, 0, 2, 1, 0, 1, 1, 0, 0, 3), true},
    {"dw 1x1 image pad 1", 2, 3, 1, 1, 3, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 3), true},
    {"dw 1x1 kernel", 1, 6, 4, 5, 6, 1, 1, ARGS(1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 6), true},
    {"dw 2x2 image 3x3 s2", 1, 2, 2, 2, 2, 3, 3, ARGS(2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 2), true},
    {"dw wide 3x3 s1", 1, 2, 5, 67, 2, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 2), true},
    {"dw 7x7 dil 2x3 s3", 1, 2, 20, 25, 2, 3, 3, ARGS(3, 2, 1, 3, 3, 0, 2, 3, 0, 0, 2), true},
    {"dw 1 channel", 3, 1, 6, 6, 1, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
};
#define N_DW ((int)(sizeof dw_cases / sizeof dw_cases[0]))

START_TEST(test_depthwise_forward)
{
    nb_rng_init(&rng, 1000 + (uint64_t)_i);
    forward_case(&dw_cases[_i], 0, NB_F32);
    forward_case(&dw_cases[_i], 0, NB_F64);
}
END_TEST

/* The direct depthwise kernel gives bit-identical f32 results on 1 and 2
 * threads (each plane is summed in the same order). */
START_TEST(test_depthwise_threads)
{
    const ccase *c = &dw_cases[_i];
    int saved = nb_get_num_threads();
    double *res[2];
    for (int t = 0; t < 2; t++) {
        nb_set_num_threads(t + 1);
        nb_rng_init(&rng, 1100 + (uint64_t)_i);
        int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->CO, 1, c->KH, c->KW};
        double *x = random_vals(nb_shape_numel(4, xs)), *w = random_vals(nb_shape_numel(4, ws));
        double *b = random_vals(c->CO);
        nb_graph *g = nb_graph_new();
        nb_node *nx = param_vals(g, "x", NB_F32, 4, xs, x), *nw = param_vals(g, "w", NB_F32, 4, ws, w);
        nb_node *nb = c->bias ? param_vals(g, "b", NB_F32, 1, &c->CO, b) : NULL;
        nb_node *y = nb_conv2d(g, nx, nw, nb, &c->a);
        eval(g, 1, &y, &res[t]);
        nb_graph_free(g);
        free(x), free(w), free(b);
    }
    nb_set_num_threads(saved);
    geo r = geo_of(&c->a);
    int64_t OH, OW;
    conv_out_hw(c, &r, &OH, &OW);
    ck_assert(memcmp(res[0], res[1], (size_t)(c->N * c->CO * OH * OW) * sizeof(double)) == 0);
    free(res[0]), free(res[1]);
}
END_TEST

/* conv2d with a fused clamp (ReLU, ReLU6, any range), through every path:
 * the 1x1 direct GEMM (split into column blocks, or into channel blocks for
 * a 7x7 or 14x14 image, when there are fewer images than threads), im2col, Winograd
 * (f32, 3x3 s1, >= 8 channels), the depthwise kernel, groups and conv1d;
 * f32 and f64 against the reference loops, clamped. */
static void gradcheck_case(const ccase *c, int kind, bool second);


static const ccase clamp_cases[] = {
    {"1x1 relu cols", 1, 40, 20, 20, 37, 1, 1, ARGS_CLAMP(1, 1, 0, 0, 0, 0, 1, 1, 1, 0.0f, INFINITY), true},
    {"1x1 relu6 7x7", 1, 96, 7, 7, 70, 1, 1, ARGS_CLAMP(1, 1, 0, 0, 0, 0, 1, 1, 1, 0.0f, 6.0f), true},
    {"1x1 14x14 channel blocks", 1, 24, 14, 14, 48, 1, 1, ARGS_CLAMP(1, 1, 0, 0, 0, 0, 1, 1, 1, 0.0f, 6.0f), true},
    {"1x1 band batch 3", 3, 9, 5, 6, 11, 1, 1, ARGS_CLAMP(1, 1, 0, 0, 0, 0, 1, 1, 1, -0.3f, 0.4f), false},
    {"3x3 wino relu", 1, 16, 9, 10, 24, 3, 3, ARGS_CLAMP(1, 1, 1, 1, 1, 1, 1, 1, 1, 0.0f, INFINITY), true},
    {"3x3 wino band", 2, 9, 6, 7, 17, 3, 3, ARGS_CLAMP(1, 1, 1, 1, 1, 1, 1, 1, 1, -1.0f, 0.5f), false},
    {"3x3 s2 im2col relu6", 1, 3, 31, 29, 32, 3, 3, ARGS_CLAMP(2, 2, 1, 1, 1, 1, 1, 1, 1, 0.0f, 6.0f), true},
    {"dw 3x3 s1 relu6", 1, 32, 14, 14, 32, 3, 3, ARGS_CLAMP(1, 1, 1, 1, 1, 1, 1, 1, 32, 0.0f, 6.0f), true},
    {"dw 3x3 s2 band", 2, 5, 15, 12, 5, 3, 3, ARGS_CLAMP(2, 2, 1, 1, 1, 1, 1, 1, 5, -0.2f, 0.2f), true},
    {"groups 2 relu", 2, 4, 5, 5, 6, 3, 3, ARGS_CLAMP(1, 1, 1, 1, 1, 1, 1, 1, 2, 0.0f, INFINITY), true},
    {"negative range", 1, 3, 6, 5, 4, 3, 3, ARGS_CLAMP(1, 1, 0, 0, 0, 0, 1, 1, 1, -2.0f, -0.1f), true},
};
#define N_CLAMP ((int)(sizeof clamp_cases / sizeof clamp_cases[0]))

START_TEST(test_clamp_forward)
{
    int saved = nb_get_num_threads();
    for (int t = 1; t <= 3; t++) {
        nb_set_num_threads(t);
        nb_rng_init(&rng, 1200 + (uint64_t)_i);
        forward_case(&clamp_cases[_i], 0, NB_F32);
        nb_rng_init(&rng, 1200 + (uint64_t)_i);
        forward_case(&clamp_cases[_i], 0, NB_F64);
    }
    nb_set_num_threads(saved);
}
END_TEST

/* conv1d carries the clamp to its conv2d */
/* An f32 1x1 conv whose output (19 MB) is past a quarter of an L3 of up
 * to 64 MB:
 * the GEMM writes it with streaming stores (kernels/conv.c, stream). */
START_TEST(test_streamed_output)
{
    ccase c = {"1x1 large output", 1, 2, 224, 224, 96, 1, 1,
               ARGS_CLAMP(1, 1, 0, 0, 0, 0, 1, 1, 1, 0.0f, 6.0f), true};
    nb_rng_init(&rng, 1250);
    forward_case(&c, 0, NB_F32);
}
END_TEST

START_TEST(test_clamp_conv1d)
{
    nb_rng_init(&rng, 1250);
    ccase c = {"conv1d relu6", 2, 5, 1, 17, 6, 1, 3, ARGS_CLAMP(2, 0, 1, 1, 0, 0, 1, 0, 1, 0.0f, 6.0f), true};
    forward_case(&c, 2, NB_F32);
    forward_case(&c, 2, NB_F64);
}
END_TEST

/* The gradient passes where lo < y < hi: f64 central differences (no output
 * lies near a bound for these seeds), first and second order. */
START_TEST(test_clamp_grad)
{
    static const ccase c[] = {
        {"relu", 2, 3, 5, 5, 4, 3, 3, ARGS_CLAMP(1, 1, 1, 1, 1, 1, 1, 1, 1, 0.0f, INFINITY), true},
        {"band", 1, 4, 5, 6, 4, 3, 3, ARGS_CLAMP(2, 1, 1, 1, 0, 1, 1, 1, 2, -0.5f, 0.6f), true},
        {"dw relu6", 1, 3, 6, 6, 3, 3, 3, ARGS_CLAMP(1, 1, 1, 1, 1, 1, 1, 1, 3, 0.0f, 6.0f), false},
    };
    for (int k = 0; k < 3; k++) {
        nb_rng_init(&rng, 1300 + (uint64_t)k);
        gradcheck_case(&c[k], 0, false);
        nb_rng_init(&rng, 1310 + (uint64_t)k);
        gradcheck_case(&c[k], 0, true);
    }
}
END_TEST

/* An empty or NaN range, and a clamp on the transpose, are builder errors. */
START_TEST(test_clamp_errors)
{
    nb_graph *g = nb_graph_new();
    int64_t xs[4] = {1, 2, 4, 4}, ws[4] = {3, 2, 3, 3};
    nb_node *x = nb_input(g, "x", NB_F32, 4, xs), *w = nb_input(g, "w", NB_F32, 4, ws);
    nb_conv_args a = {.clamp = true, .clamp_min = 1.0f, .clamp_max = 0.5f};
    nb_conv2d(g, x, w, NULL, &a);
    ck_assert_int_eq(nb_graph_status(g), NB_ERR_ARG);
    ck_assert_msg(strstr(nb_graph_error(g), "clamp range [1, 0.5] is empty or NaN"), "%s",
                  nb_graph_error(g));
    nb_graph_free(g);
    g = nb_graph_new();
    x = nb_input(g, "x", NB_F32, 4, xs);
    nb_node *wt = nb_input(g, "w", NB_F32, 4, (int64_t[4]){2, 3, 3, 3});
    a = (nb_conv_args){.clamp = true, .clamp_min = 0.0f, .clamp_max = INFINITY};
    nb_conv_transpose2d(g, x, wt, NULL, &a);
    ck_assert_int_eq(nb_graph_status(g), NB_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(nb_graph_error(g), "a fused clamp is only for conv2d and conv1d"), "%s",
                  nb_graph_error(g));
    nb_graph_free(g);
    g = nb_graph_new();
    x = nb_input(g, "x", NB_F32, 4, xs);
    w = nb_input(g, "w", NB_F32, 4, ws);
    a = (nb_conv_args){.clamp = true, .clamp_min = NAN, .clamp_max = 1.0f};
    nb_conv2d(g, x, w, NULL, &a);
    ck_assert_int_eq(nb_graph_status(g), NB_ERR_ARG);
    nb_graph_free(g);
}
END_TEST

/* <conv2d(x, w), y> == <x, conv_transpose2d(y, w)> with output_padding chosen
 * so that the transpose has x's shape. */
static void adjoint_case(const ccase *c)
{
    geo r = geo_of(&c->a);
    int64_t OH, OW;
    conv_out_hw(c, &r, &OH, &OW);
    nb_conv_args at = c->a;
    at.output_padding[0] = c->H - ((OH - 1) * r.s[0] - r.pb[0] - r.pe[0] + r.d[0] * (c->KH - 1) + 1);
    at.output_padding[1] = c->W - ((OW - 1) * r.s[1] - r.pb[1] - r.pe[1] + r.d[1] * (c->KW - 1) + 1);
    if (at.output_padding[0] >= (r.s[0] > r.d[0] ? r.s[0] : r.d[0]) ||
        at.output_padding[1] >= (r.s[1] > r.d[1] ? r.s[1] : r.d[1]))
        return; /* not expressible as a public conv_transpose2d (PyTorch's rule) */
    int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->CO, c->C / r.G, c->KH, c->KW};
    int64_t ys[4] = {c->N, c->CO, OH, OW};
    double *x = random_vals(nb_shape_numel(4, xs)), *w = random_vals(nb_shape_numel(4, ws));
    double *y = random_vals(nb_shape_numel(4, ys));
    nb_graph *g = nb_graph_new();
    nb_node *nx = param_vals(g, "x", NB_F64, 4, xs, x), *nw = param_vals(g, "w", NB_F64, 4, ws, w);
    nb_node *ny = param_vals(g, "y", NB_F64, 4, ys, y);
    nb_node *cx = nb_conv2d(g, nx, nw, NULL, &c->a);
    nb_node *ty = nb_conv_transpose2d(g, ny, nw, NULL, &at);
    nb_node *outs[2] = {nb_sum(g, nb_mul(g, cx, ny), 0, NULL, false),
                        nb_sum(g, nb_mul(g, nx, ty), 0, NULL, false)};
    double *res[2];
    eval(g, 2, outs, res);
    ck_assert_msg(fabs(res[0][0] - res[1][0]) <= 1e-11 * (1 + fabs(res[0][0])),
                  "%s: <conv(x), y> = %.15g but <x, conv_transpose(y)> = %.15g", c->name,
                  res[0][0], res[1][0]);
    free(res[0]), free(res[1]);
    nb_graph_free(g);
    free(x), free(w), free(y);
}

START_TEST(test_transpose_is_adjoint)
{
    nb_rng_init(&rng, 400 + (uint64_t)_i);
    adjoint_case(&conv_cases[_i]);
}
END_TEST


/* ---- images large enough for several column tiles ------------------------- */

/* The kernel's column buffer holds about 1 MiB of output rows; in f64 each
 * case below needs 2 to 4 such tiles (f32 fewer), on both the row-copy
 * (stride 1) and the general im2col paths. */

static const ccase big_cases[] = {
    {"40x40 3x3 same", 2, 16, 40, 40, 4, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"81x81 stride 2 groups 2", 2, 32, 81, 81, 6, 3, 3, ARGS(2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 2), true},
    {"36x38 dilation 2 asym", 1, 24, 36, 38, 5, 3, 3, ARGS(1, 1, 2, 1, 2, 2, 2, 2, 0, 0, 1), false},
};
#define N_BIG ((int)(sizeof big_cases / sizeof big_cases[0]))

/* transposes whose (conv2d-output-side) input spans several tiles */
static const ccase big_tr_cases[] = {
    {"40x40 stride 2 op 1", 1, 8, 40, 40, 32, 3, 3, ARGS(2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1), true},
    {"40x36 same groups 2", 1, 8, 40, 36, 64, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 2), true},
};
#define N_BIG_TR ((int)(sizeof big_tr_cases / sizeof big_tr_cases[0]))

/* dx and dw of sum(conv2d(x, w) * c) in f64 against the direct loops of
 * ref_conv2d_grad. */
static void big_grad_case(const ccase *c)
{
    geo r = geo_of(&c->a);
    int64_t OH, OW;
    conv_out_hw(c, &r, &OH, &OW);
    int64_t CG = c->C / r.G;
    int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->CO, CG, c->KH, c->KW};
    int64_t ys[4] = {c->N, c->CO, OH, OW};
    int64_t nx = nb_shape_numel(4, xs), nw = nb_shape_numel(4, ws), ny = nb_shape_numel(4, ys);
    double *x = random_vals(nx), *w = random_vals(nw), *cv = random_vals(ny);
    double *dx = calloc((size_t)nx, sizeof(double)), *dw = calloc((size_t)nw, sizeof(double));
    ref_conv2d_grad(c, &r, x, w, cv, dx, dw, NULL, OH, OW);
    nb_graph *g = nb_graph_new();
    nb_node *px = param_vals(g, "x", NB_F64, 4, xs, x), *pw = param_vals(g, "w", NB_F64, 4, ws, w);
    nb_node *pc = param_vals(g, "c", NB_F64, 4, ys, cv);
    nb_node *loss = nb_sum(g, nb_mul(g, nb_conv2d(g, px, pw, NULL, &c->a), pc), 0, NULL, false);
    nb_node *wrt[2] = {px, pw}, *gr[2];
    ck_assert_msg(nb_grad(g, loss, 2, wrt, gr) == NB_OK, "%s", nb_graph_error(g));
    double *res[2];
    eval(g, 2, gr, res);
    assert_close("big dx", res[0], dx, nx, 1e-11);
    assert_close("big dw", res[1], dw, nw, 1e-11);
    free(res[0]), free(res[1]);
    nb_graph_free(g);
    free(x), free(w), free(cv), free(dx), free(dw);
}

START_TEST(test_big)
{
    nb_rng_init(&rng, 1000 + (uint64_t)_i);
    forward_case(&big_cases[_i], 0, NB_F64);
    forward_case(&big_cases[_i], 0, NB_F32);
    adjoint_case(&big_cases[_i]);
    big_grad_case(&big_cases[_i]);
}
END_TEST

START_TEST(test_big_transpose)
{
    nb_rng_init(&rng, 1100 + (uint64_t)_i);
    forward_case(&big_tr_cases[_i], 1, NB_F64);
    forward_case(&big_tr_cases[_i], 1, NB_F32);
}
END_TEST

/* ---- gradient checks (f64) ------------------------------------------------ */

static void gradcheck_case(const ccase *c, int kind, bool second)
{
    geo r = geo_of(&c->a);
    int64_t xs[4] = {c->N, c->C, c->H, c->W};
    int64_t ws[4] = {kind == 1 ? c->C : c->CO, kind == 1 ? c->CO / r.G : c->C / r.G, c->KH, c->KW};
    int64_t x3[3] = {c->N, c->C, c->W}, w3[3] = {c->CO, c->C / r.G, c->KW}, bs[1] = {c->CO};
    double *x = random_vals(nb_shape_numel(4, xs)), *w = random_vals(nb_shape_numel(4, ws));
    double *b = random_vals(c->CO);
    nb_graph *g = nb_graph_new();
    nb_node *wrt[3];
    int n = 0;
    wrt[n++] = kind == 2 ? param_vals(g, "x", NB_F64, 3, x3, x) : param_vals(g, "x", NB_F64, 4, xs, x);
    wrt[n++] = kind == 2 ? param_vals(g, "w", NB_F64, 3, w3, w) : param_vals(g, "w", NB_F64, 4, ws, w);
    nb_node *nbias = c->bias ? (wrt[n++] = param_vals(g, "b", NB_F64, 1, bs, b)) : NULL;
    nb_node *y = kind == 0 ? nb_conv2d(g, wrt[0], wrt[1], nbias, &c->a)
               : kind == 1 ? nb_conv_transpose2d(g, wrt[0], wrt[1], nbias, &c->a)
                           : nb_conv1d(g, wrt[0], wrt[1], nbias, &c->a);
    ck_assert_msg(nb_graph_status(g) == NB_OK, "%s: %s", c->name, nb_graph_error(g));
    int64_t ny = nb_node_numel(y);
    nb_tensor ct;
    ck_assert_int_eq(nb_tensor_empty(&ct, NB_F64, nb_node_ndim(y), nb_node_shape(y)), NB_OK);
    ck_assert_int_eq(nb_rng_fill_uniform(&rng, &ct, -1, 1), NB_OK);
    nb_node *cw = nb_constant(g, &ct);
    nb_tensor_release(&ct);
    nb_node *loss;
    if (!second) {
        loss = nb_sum(g, nb_mul(g, y, cw), 0, NULL, false);
    } else {
        /* the gradients of sum(tanh(y) * cw), weighted by fixed constants */
        nb_node *l1 = nb_sum(g, nb_mul(g, nb_tanh(g, y), cw), 0, NULL, false);
        nb_node *g1[3];
        ck_assert_msg(nb_grad(g, l1, n, wrt, g1) == NB_OK, "%s: nb_grad: %s", c->name,
                      nb_graph_error(g));
        loss = NULL;
        for (int k = 0; k < n; k++) {
            nb_tensor t;
            ck_assert_int_eq(nb_tensor_empty(&t, NB_F64, nb_node_ndim(g1[k]), nb_node_shape(g1[k])), NB_OK);
            ck_assert_int_eq(nb_rng_fill_uniform(&rng, &t, -1, 1), NB_OK);
            nb_node *term = nb_sum(g, nb_mul(g, g1[k], nb_constant(g, &t)), 0, NULL, false);
            nb_tensor_release(&t);
            loss = loss ? nb_add(g, loss, term) : term;
        }
    }
    ck_assert_msg(nb_graph_status(g) == NB_OK, "%s: %s", c->name, nb_graph_error(g));
    double err = INFINITY;
    nb_status st = nb_gradcheck(g, loss, n, wrt, NULL, STEP, &err);
    ck_assert_msg(st == NB_OK, "%s: gradcheck: %s", c->name, nb_last_error());
    ck_assert_msg(err <= GTOL, "%s %s%s: max relative error %.3g > %g",
                  kind == 0 ? "conv2d" : kind == 1 ? "conv_transpose2d" : "conv1d", c->name,
                  second ? " (2nd order)" : "", err, GTOL);
    (void)ny;
    nb_graph_free(g);
    free(x), free(w), free(b);
}

START_TEST(test_conv2d_grad)
{
    nb_rng_init(&rng, 500 + (uint64_t)_i);
    gradcheck_case(&conv_cases[_i], 0, false);
}
END_TEST

START_TEST(test_transpose_grad)
{
    nb_rng_init(&rng, 600 + (uint64_t)_i);
    gradcheck_case(&tr_cases[_i], 1, false);
}
END_TEST

START_TEST(test_conv1d_grad)
{
    nb_rng_init(&rng, 700 + (uint64_t)_i);
    gradcheck_case(&c1_cases[_i], 2, false);
}
END_TEST

/* Second order: the rules' own rules (conv2d_grad_weight's included). */
START_TEST(test_second_order)
{
    nb_rng_init(&rng, 800 + (uint64_t)_i);
    static const int conv_idx[] = {2, 5, 6, 8, 12};
    static const int tr_idx[] = {2, 5, 7};
    int nc = (int)(sizeof conv_idx / sizeof *conv_idx);
    if (_i < nc)
        gradcheck_case(&conv_cases[conv_idx[_i]], 0, true);
    else
        gradcheck_case(&tr_cases[tr_idx[_i - nc]], 1, true);
}
END_TEST

/* ---- errors ---------------------------------------------------------------- */

static nb_graph *g_err;

static nb_node *node(nb_dtype dt, int ndim, const int64_t *shape)
{
    char name[32];
    snprintf(name, sizeof name, "in%d", nb_graph_num_nodes(g_err));
    return nb_input(g_err, name, dt, ndim, shape);
}

/* Build with make() on a fresh graph and expect status st and a message
 * containing each of the given pieces. */
static void expect_error(nb_status st, const char *want1, const char *want2)
{
    ck_assert_int_eq(nb_graph_status(g_err), st);
    const char *msg = nb_graph_error(g_err);
    ck_assert_msg(strstr(msg, want1) != NULL, "message '%s' lacks '%s'", msg, want1);
    if (want2)
        ck_assert_msg(strstr(msg, want2) != NULL, "message '%s' lacks '%s'", msg, want2);
    nb_graph_free(g_err);
    g_err = nb_graph_new();
}

START_TEST(test_errors)
{
    g_err = nb_graph_new();
    int64_t x33[4] = {1, 2, 3, 3}, w55[4] = {4, 2, 5, 5}, w33[4] = {4, 2, 3, 3};
    nb_conv2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, w55), NULL, NULL);
    expect_error(NB_ERR_SHAPE, "conv2d '", "': kernel 5x5 (dilated 5x5) is larger than the padded input 3x3");

    nb_conv_args dil = {{1, 1}, {0, 0, 0, 0}, {3, 1}, {0, 0}, 1};
    nb_conv2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, w33), NULL, &dil);
    expect_error(NB_ERR_SHAPE, "kernel 3x3 (dilated 7x3) is larger than the padded input 3x3", NULL);

    nb_conv_args pad = {{1, 1}, {1, 1, 0, 1}, {1, 1}, {0, 0}, 1};
    int64_t w54[4] = {4, 2, 6, 5};
    nb_conv2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, w54), NULL, &pad);
    expect_error(NB_ERR_SHAPE, "kernel 6x5 (dilated 6x5) is larger than the padded input 5x4", NULL);

    int64_t x1[3] = {2, 3, 4}, w1[3] = {5, 3, 6};
    nb_conv1d(g_err, node(NB_F32, 3, x1), node(NB_F32, 3, w1), NULL, NULL);
    expect_error(NB_ERR_SHAPE, "conv1d '", "kernel 6 (dilated 6) is larger than the padded input 4");

    int64_t w_bad_c[4] = {4, 3, 3, 3};
    nb_conv2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, w_bad_c), NULL, NULL);
    expect_error(NB_ERR_SHAPE, "weight (4,3,3,3) needs 2 input channels per group", "input (1,2,3,3)");

    nb_conv_args g3 = {{1, 1}, {0, 0, 0, 0}, {1, 1}, {0, 0}, 3};
    int64_t w_g[4] = {6, 1, 1, 1};
    nb_conv2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, w_g), NULL, &g3);
    expect_error(NB_ERR_SHAPE, "groups 3 must divide the input channels 2 and the output channels 6", NULL);

    int64_t b5[1] = {5};
    nb_conv2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, w33), node(NB_F32, 1, b5), NULL);
    expect_error(NB_ERR_SHAPE, "bias (5) must have shape (4)", NULL);

    nb_conv2d(g_err, node(NB_F32, 4, x33), node(NB_F64, 4, w33), NULL, NULL);
    expect_error(NB_ERR_DTYPE, "dtypes f32 (input), f64 (weight)", NULL);

    int64_t x3d[3] = {1, 2, 3};
    nb_conv2d(g_err, node(NB_F32, 3, x3d), node(NB_F32, 4, w33), NULL, NULL);
    expect_error(NB_ERR_SHAPE, "must both be 4-D", NULL);

    nb_conv_args neg = {{-1, 1}, {0, 0, 0, 0}, {1, 1}, {0, 0}, 1};
    nb_conv2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, w33), NULL, &neg);
    expect_error(NB_ERR_ARG, "must not be negative", NULL);

    /* transpose: weight rows, output_padding, group split */
    int64_t tw[4] = {3, 2, 3, 3};
    nb_conv_transpose2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, tw), NULL, NULL);
    expect_error(NB_ERR_SHAPE, "conv_transpose2d '", "weight (3,2,3,3) must have 2 rows");

    nb_conv_args op = {{2, 2}, {0, 0, 0, 0}, {1, 1}, {2, 0}, 1};
    int64_t tw22[4] = {2, 2, 3, 3};
    nb_conv_transpose2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, tw22), NULL, &op);
    expect_error(NB_ERR_ARG, "output_padding 2 must be smaller than the stride 2 or the dilation 1", NULL);

    int64_t tw2[4] = {2, 2, 1, 1};
    nb_conv_transpose2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, tw2), NULL, &g3);
    expect_error(NB_ERR_SHAPE, "groups 3 must divide the input channels 2", NULL);

    nb_conv_args bigpad = {{1, 1}, {2, 2, 0, 0}, {1, 1}, {0, 0}, 1};
    int64_t x11[4] = {1, 2, 1, 1};
    nb_conv_transpose2d(g_err, node(NB_F32, 4, x11), node(NB_F32, 4, tw2), NULL, &bigpad);
    expect_error(NB_ERR_SHAPE, "gives an empty -3x1 output", NULL);

    /* sticky: after a failure the builders return poison */
    nb_conv2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, w55), NULL, NULL);
    nb_node *after = nb_conv2d(g_err, node(NB_F32, 4, x33), node(NB_F32, 4, w33), NULL, NULL);
    ck_assert(nb_node_is_poison(after));
    expect_error(NB_ERR_SHAPE, "is larger than the padded input", NULL);
    nb_graph_free(g_err);
}
END_TEST

/* ---- the kernel called directly ------------------------------------------- */

/* Without a workspace (it allocates one slot) and with one large enough for
 * every thread: same result as the reference; bad calls are refused. */
START_TEST(test_kernel_direct)
{
    nb_rng_init(&rng, 900);
    const ccase *c = &conv_cases[2]; /* stride 2 pad 1 */
    geo r = geo_of(&c->a);
    int64_t OH, OW;
    conv_out_hw(c, &r, &OH, &OW);
    int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->CO, c->C, c->KH, c->KW};
    int64_t ys[4] = {c->N, c->CO, OH, OW}, bs[1] = {c->CO};
    double *x = random_vals(nb_shape_numel(4, xs)), *w = random_vals(nb_shape_numel(4, ws));
    double *b = random_vals(c->CO), *ref = malloc((size_t)nb_shape_numel(4, ys) * sizeof(double));
    ref_conv2d(c, &r, x, w, b, ref, OH, OW);
    nb_tensor tx, tw, tb, ty;
    ck_assert_int_eq(nb_tensor_from_data(&tx, NB_F64, 4, xs, x), NB_OK);
    ck_assert_int_eq(nb_tensor_from_data(&tw, NB_F64, 4, ws, w), NB_OK);
    ck_assert_int_eq(nb_tensor_from_data(&tb, NB_F64, 1, bs, b), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&ty, NB_F64, 4, ys), NB_OK);
    nb_conv_params p = {{2, 2}, {1, 1}, {1, 1}, {1, 1}, {0, 0}, 1, {0, 0, 0, 0}};
    const nb_tensor *in[3] = {&tx, &tw, &tb};
    nb_kernel_call call = {NB_OP_CONV2D, 3, in, &ty, &p, NULL, 0, 0};
    ck_assert_msg(nb_cpu_conv(&call) == NB_OK, "%s", nb_last_error());
    assert_close("direct, no workspace", nb_tensor_data(&ty), ref, nb_tensor_numel(&ty), 1e-12);
    size_t need = nb_cpu_conv_workspace(&call);
    ck_assert(need > 0);
    void *ws_mem = aligned_alloc(64, (need + 63) / 64 * 64);
    call.workspace = ws_mem, call.workspace_size = need;
    memset(nb_tensor_data(&ty), 0, (size_t)nb_tensor_numel(&ty) * sizeof(double));
    ck_assert_msg(nb_cpu_conv(&call) == NB_OK, "%s", nb_last_error());
    assert_close("direct, workspace", nb_tensor_data(&ty), ref, nb_tensor_numel(&ty), 1e-12);
    /* a wrong output shape and a wrong dtype are refused, not crashed on */
    nb_tensor bad;
    int64_t bshape[4] = {c->N, c->CO, OH + 1, OW};
    ck_assert_int_eq(nb_tensor_empty(&bad, NB_F64, 4, bshape), NB_OK);
    call.out = &bad;
    ck_assert_int_eq(nb_cpu_conv(&call), NB_ERR_SHAPE);
    nb_tensor_release(&bad);
    ck_assert_int_eq(nb_tensor_empty(&bad, NB_F32, 4, ys), NB_OK);
    call.out = &bad;
    ck_assert_int_eq(nb_cpu_conv(&call), NB_ERR_DTYPE);
    nb_tensor_release(&bad);
    free(ws_mem);
    nb_tensor_release(&tx), nb_tensor_release(&tw), nb_tensor_release(&tb), nb_tensor_release(&ty);
    free(x), free(w), free(b), free(ref);
}
END_TEST

/* One thread and several give the same values (the per-thread weight
 * accumulators are summed in a fixed order, so f64 agrees to rounding). */
START_TEST(test_threads_agree)
{
    nb_rng_init(&rng, 950);
    const ccase *c = &conv_cases[7]; /* groups 2 */
    int saved = nb_get_num_threads();
    double *res[2][3];
    for (int t = 0; t < 2; t++) {
        nb_set_num_threads(t == 0 ? 1 : 3);
        nb_rng_init(&rng, 951);
        geo r = geo_of(&c->a);
        int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->CO, c->C / r.G, c->KH, c->KW};
        double *x = random_vals(nb_shape_numel(4, xs)), *w = random_vals(nb_shape_numel(4, ws));
        nb_graph *g = nb_graph_new();
        nb_node *nx = param_vals(g, "x", NB_F64, 4, xs, x), *nw = param_vals(g, "w", NB_F64, 4, ws, w);
        nb_node *y = nb_conv2d(g, nx, nw, NULL, &c->a);
        nb_node *loss = nb_sum(g, nb_square(g, y), 0, NULL, false);
        nb_node *wrt[2] = {nx, nw}, *outs[3];
        ck_assert_int_eq(nb_grad(g, loss, 2, wrt, outs + 1), NB_OK);
        outs[0] = y;
        eval(g, 3, outs, res[t]);
        nb_graph_free(g);
        free(x), free(w);
    }
    nb_set_num_threads(saved);
    int64_t n[3] = {2 * 6 * 5 * 5, 2 * 4 * 5 * 5, 6 * 2 * 3 * 3};
    for (int k = 0; k < 3; k++) {
        assert_close("threads", res[1][k], res[0][k], n[k], 1e-12);
        free(res[0][k]), free(res[1][k]);
    }
}
END_TEST


static Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *f = tcase_create("forward");
    tcase_add_loop_test(f, test_conv2d_forward, 0, N_CONV);
    tcase_add_loop_test(f, test_transpose_forward, 0, N_TR);
    tcase_add_loop_test(f, test_conv1d_forward, 0, N_C1);
    tcase_add_loop_test(f, test_transpose_is_adjoint, 0, N_CONV);
    tcase_add_loop_test(f, test_big, 0, N_BIG);
    tcase_add_loop_test(f, test_big_transpose, 0, N_BIG_TR);
    tcase_add_loop_test(f, test_depthwise_forward, 0, N_DW);
    tcase_add_loop_test(f, test_depthwise_threads, 0, N_DW);
    tcase_add_loop_test(f, test_clamp_forward, 0, N_CLAMP);
    tcase_add_test(f, test_clamp_conv1d);
    tcase_add_test(f, test_streamed_output);
    suite_add_tcase(s, f);
    TCase *gr = tcase_create("gradcheck");
    tcase_add_loop_test(gr, test_conv2d_grad, 0, N_CONV);
    tcase_add_loop_test(gr, test_transpose_grad, 0, N_TR);
    tcase_add_loop_test(gr, test_conv1d_grad, 0, N_C1);
    tcase_add_loop_test(gr, test_second_order, 0, 8);
    tcase_add_test(gr, test_clamp_grad);
    suite_add_tcase(s, gr);
    TCase *e = tcase_create("errors");
    tcase_add_test(e, test_errors);
    tcase_add_test(e, test_kernel_direct);
    tcase_add_test(e, test_threads_agree);
    tcase_add_test(e, test_clamp_errors);
    suite_add_tcase(s, e);
    return s;
}

int main(void) { return nb_run_suite(conv_suite()); }
