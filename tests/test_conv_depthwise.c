/* The f32 depthwise kernels called directly (kernels/conv_depthwise.h): the
 * AVX-512 3x3 kernel (kernels/conv_dw3x3.c) and the general one it stands
 * in for, both against the f64 reference loops of conv_ref.c, over the
 * shapes where the 3x3 kernel's lane shifts and masks have edges: widths
 * around the 16-lane vectors (and, at stride 2, the 32-column loads and the
 * column past them), heights around its four-row blocks, padding 0 or 1
 * before and anything after, bias and clamp on and off. Also: its results do
 * not depend on the thread count, a NaN stays NaN through the clamp, and it
 * refuses the shapes it does not do. (conv2d's own tests in test_conv.c go
 * through the graph and reach these kernels by routing.) */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "conv_ref.h"
#include "nabla.h"
#include "kernels/conv_depthwise.h"

#define TOL 2e-6 /* |f32 - f64| <= TOL * (1 + sum |w x|) */

static bool have512; /* the 3x3 kernel is AVX-512 only */

/* depthwise cases: C == CO == groups, 3x3 */
#define DW(s, pt, pb, pl, pr, C) ARGS(s, s, pt, pb, pl, pr, 1, 1, 0, 0, C)
static const ccase cases[] = {
    {"s1 p1 7x7", 1, 5, 7, 7, 5, 3, 3, DW(1, 1, 1, 1, 1, 5), true},
    {"s1 p1 14x14", 2, 3, 14, 14, 3, 3, 3, DW(1, 1, 1, 1, 1, 3), true},
    {"s1 p1 W16 H5", 1, 3, 5, 16, 3, 3, 3, DW(1, 1, 1, 1, 1, 3), true},
    {"s1 p1 W17 H6", 1, 2, 6, 17, 2, 3, 3, DW(1, 1, 1, 1, 1, 2), false},
    {"s1 p1 W31 H9", 1, 2, 9, 31, 2, 3, 3, DW(1, 1, 1, 1, 1, 2), true},
    {"s1 p1 W32 H3", 2, 2, 3, 32, 2, 3, 3, DW(1, 1, 1, 1, 1, 2), true},
    {"s1 p1 W33 H10", 1, 3, 10, 33, 3, 3, 3, DW(1, 1, 1, 1, 1, 3), true},
    {"s1 p1 W1 H1", 2, 3, 1, 1, 3, 3, 3, DW(1, 1, 1, 1, 1, 3), true},
    {"s1 p1 W2 H2", 1, 4, 2, 2, 4, 3, 3, DW(1, 1, 1, 1, 1, 4), true},
    {"s1 p0 W18 H7", 1, 3, 7, 18, 3, 3, 3, DW(1, 0, 0, 0, 0, 3), true},
    {"s1 p0 W3 H3", 1, 2, 3, 3, 2, 3, 3, DW(1, 0, 0, 0, 0, 2), true},
    {"s1 top 1 left 0", 1, 3, 8, 20, 3, 3, 3, DW(1, 1, 1, 0, 2, 3), true},
    {"s1 top 0 left 1, pad after 3", 1, 2, 6, 15, 2, 3, 3, DW(1, 0, 3, 1, 3, 2), true},
    {"s2 p1 112 -> 56 cols", 1, 2, 9, 112, 2, 3, 3, DW(2, 1, 1, 1, 1, 2), true},
    {"s2 p1 W33 H11", 1, 3, 11, 33, 3, 3, 3, DW(2, 1, 1, 1, 1, 3), true},
    {"s2 p1 W32 H8", 2, 2, 8, 32, 2, 3, 3, DW(2, 1, 1, 1, 1, 2), false},
    {"s2 p1 W31 H13", 1, 2, 13, 31, 2, 3, 3, DW(2, 1, 1, 1, 1, 2), true},
    {"s2 p1 W14 H14", 1, 4, 14, 14, 4, 3, 3, DW(2, 1, 1, 1, 1, 4), true},
    {"s2 p1 W2 H3", 1, 2, 3, 2, 2, 3, 3, DW(2, 1, 1, 1, 1, 2), true},
    {"s2 p0 W33 H9", 1, 2, 9, 33, 2, 3, 3, DW(2, 0, 0, 0, 0, 2), true},
    {"s2 p0 W34 H10", 1, 2, 10, 34, 2, 3, 3, DW(2, 0, 0, 0, 0, 2), true},
    {"s2 p0 W67 H5", 1, 2, 5, 67, 2, 3, 3, DW(2, 0, 0, 0, 0, 2), true},
    {"s2 TF same (pad after only)", 1, 3, 12, 40, 3, 3, 3, DW(2, 0, 1, 0, 1, 3), true},
    {"s2 top 1 left 0", 1, 2, 9, 35, 2, 3, 3, DW(2, 1, 1, 0, 1, 2), true},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static nb_dw geom_of(const ccase *c, int64_t OH, int64_t OW, bool clamp, float lo, float hi)
{
    return (nb_dw){c->N, c->C, c->H, c->W, OH, OW, 3, 3, c->a.stride[0], c->a.stride[1], 1, 1,
                   c->a.padding[0], c->a.padding[2], clamp, lo, hi};
}

/* y (f32, from kernel `which`: 0 the 3x3 kernel, 1 the general one) against
 * the reference, clamped to [lo, hi] when clamp. */
static void check_case(const ccase *c, int which, bool clamp, float lo, float hi)
{
    geo r = geo_of(&c->a);
    int64_t OH, OW;
    conv_out_hw(c, &r, &OH, &OW);
    int64_t nx = c->N * c->C * c->H * c->W, nw = c->C * 9, ny = c->N * c->C * OH * OW;
    double *x = random_vals(nx), *w = random_vals(nw), *b = random_vals(c->C);
    double *ref = malloc((size_t)ny * sizeof(double)), *mag = malloc((size_t)ny * sizeof(double));
    ck_assert(ref && mag);
    ref_conv2d(c, &r, x, w, c->bias ? b : NULL, ref, OH, OW);
    /* the scale of each sum: the same loops on |x| and |w| */
    double *ax = malloc((size_t)nx * sizeof(double)), *aw = malloc((size_t)nw * sizeof(double));
    ck_assert(ax && aw);
    for (int64_t i = 0; i < nx; i++)
        ax[i] = fabs(x[i]);
    for (int64_t i = 0; i < nw; i++)
        aw[i] = fabs(w[i]);
    ref_conv2d(c, &r, ax, aw, NULL, mag, OH, OW);
    float *xf = f32_rounded_copy(x, nx), *wf = f32_rounded_copy(w, nw);
    float *bf = f32_rounded_copy(b, c->C);
    float *y = malloc((size_t)ny * sizeof(float));
    ck_assert_ptr_nonnull(y);
    nb_dw g = geom_of(c, OH, OW, clamp, lo, hi);
    const float *bias = c->bias ? bf : NULL;
    if (which == 0) {
        ck_assert_msg(nb_dw3x3_supported(&g), "%s: the 3x3 kernel refuses it", c->name);
        nb_dw3x3_conv_f32(&g, xf, wf, bias, y);
    } else {
        ck_assert(nb_dw_generic_conv_f32(&g, xf, wf, bias, y, NULL, 0));
    }
    for (int64_t i = 0; i < ny; i++) {
        double want = ref[i];
        if (clamp)
            want = want < lo ? lo : want > hi ? hi : want;
        ck_assert_msg(fabs(y[i] - want) <= TOL * (1 + mag[i]),
                      "%s (%s%s): y[%lld] = %.9g, want %.9g", c->name,
                      which ? "general" : "3x3", clamp ? ", clamped" : "", (long long)i, y[i], want);
    }
    free(x), free(w), free(b), free(ref), free(mag), free(ax), free(aw);
    free(xf), free(wf), free(bf), free(y);
}

START_TEST(test_dw3x3_values)
{
    for (int which = have512 ? 0 : 1; which < 2; which++) {
        nb_rng_init(&rng, 4000 + (uint64_t)_i);
        check_case(&cases[_i], which, false, 0, 0);
        nb_rng_init(&rng, 4100 + (uint64_t)_i);
        check_case(&cases[_i], which, true, -0.4f, 0.5f);
    }
}
END_TEST

/* 1, 2 and 3 threads give the same bits (planes are independent). */
START_TEST(test_dw3x3_threads)
{
    if (!have512)
        return;
    const ccase *c = &cases[_i];
    geo r = geo_of(&c->a);
    int64_t OH, OW;
    conv_out_hw(c, &r, &OH, &OW);
    /* more channels than the case has, so that every thread gets planes */
    ccase big = *c;
    big.C = big.CO = big.a.groups = 37;
    int64_t nx = big.N * big.C * big.H * big.W, ny = big.N * big.C * OH * OW;
    nb_rng_init(&rng, 4200 + (uint64_t)_i);
    double *x = random_vals(nx), *w = random_vals(big.C * 9), *b = random_vals(big.C);
    float *xf = f32_rounded_copy(x, nx), *wf = f32_rounded_copy(w, big.C * 9);
    float *bf = f32_rounded_copy(b, big.C);
    float *y[3];
    nb_dw g = geom_of(&big, OH, OW, true, 0.0f, 6.0f);
    int saved = nb_get_num_threads();
    for (int t = 0; t < 3; t++) {
        nb_set_num_threads(t + 1);
        y[t] = malloc((size_t)ny * sizeof(float));
        ck_assert_ptr_nonnull(y[t]);
        nb_dw3x3_conv_f32(&g, xf, wf, bf, y[t]);
    }
    nb_set_num_threads(saved);
    ck_assert(memcmp(y[0], y[1], (size_t)ny * sizeof(float)) == 0);
    ck_assert(memcmp(y[0], y[2], (size_t)ny * sizeof(float)) == 0);
    for (int t = 0; t < 3; t++)
        free(y[t]);
    free(x), free(w), free(b), free(xf), free(wf), free(bf);
}
END_TEST

/* A NaN input reaches the outputs that read it, clamped or not; an Inf
 * times a zero weight is NaN too (the sum is not skipped for zero weights). */
START_TEST(test_dw3x3_nan)
{
    if (!have512)
        return;
    enum { H = 5, W = 20 };
    float x[H * W], w[9], y[H * W];
    for (int i = 0; i < H * W; i++)
        x[i] = 0.25f;
    for (int t = 0; t < 9; t++)
        w[t] = 1.0f;
    x[2 * W + 17] = NAN;
    x[0] = INFINITY;
    w[4] = 0.0f; /* the centre tap: x[0]'s own output gets Inf * 0 */
    nb_dw g = {1, 1, H, W, H, W, 3, 3, 1, 1, 1, 1, 1, 1, true, 0.0f, 6.0f};
    nb_dw3x3_conv_f32(&g, x, w, NULL, y);
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            bool near_nan = abs(i - 2) <= 1 && abs(j - 17) <= 1;
            bool is_origin = i == 0 && j == 0;
            bool near_inf = i <= 1 && j <= 1 && !is_origin;
            float v = y[i * W + j];
            if (near_nan || is_origin)
                ck_assert_msg(isnan(v), "y[%d][%d] = %g, want NaN", i, j, v);
            else if (near_inf)
                ck_assert_msg(v == 6.0f, "y[%d][%d] = %g, want 6 (Inf clamped)", i, j, v);
            else
                ck_assert_msg(v >= 0.0f && v <= 6.0f && !isnan(v), "y[%d][%d] = %g", i, j, v);
        }
}
END_TEST

/* What it does not take goes to the general kernel. */
START_TEST(test_dw3x3_refuses)
{
    if (!have512)
        return;
    nb_dw ok = {1, 4, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, false, 0, 0};
    ck_assert(nb_dw3x3_supported(&ok));
    nb_dw g = ok;
    g.KH = g.KW = 5;
    ck_assert(!nb_dw3x3_supported(&g));
    g = ok, g.KW = 2;
    ck_assert(!nb_dw3x3_supported(&g));
    g = ok, g.d0 = g.d1 = 2;
    ck_assert(!nb_dw3x3_supported(&g));
    g = ok, g.s0 = g.s1 = 3;
    ck_assert(!nb_dw3x3_supported(&g));
    g = ok, g.s0 = 2; /* strides differ */
    ck_assert(!nb_dw3x3_supported(&g));
    g = ok, g.p0 = 2;
    ck_assert(!nb_dw3x3_supported(&g));
    g = ok, g.p1 = 2;
    ck_assert(!nb_dw3x3_supported(&g));
    ck_assert_uint_eq(nb_dw_workspace(&ok, 2), 0);
    g = ok, g.KH = g.KW = 5;
    ck_assert_uint_gt(nb_dw_workspace(&g, 2), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv_depthwise");
    TCase *tc = tcase_create("dw3x3");
    have512 = __builtin_cpu_supports("avx512f");
    if (!have512)
        printf("SKIP: the 3x3 depthwise kernel needs AVX-512F, which this CPU lacks: only "
               "the general kernel's values are tested\n");
    tcase_add_loop_test(tc, test_dw3x3_values, 0, N_CASES);
    tcase_add_loop_test(tc, test_dw3x3_threads, 0, N_CASES);
    tcase_add_test(tc, test_dw3x3_nan);
    tcase_add_test(tc, test_dw3x3_refuses);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
