/* The direct few-input-channel convolution (kernels/conv_direct.c), called
 * directly: against the f64 reference loops of conv_ref.c on many shapes
 * (1-4 input channels, 3x3 / 5x3 / 7x7 / 1x1, stride 1 and 2, symmetric,
 * asymmetric, large and negative end padding, widths on and off the 16-lane
 * vectors, bias or not, clamp or not), bit-identical results at 1, 2 and 3
 * threads, NaN through the clamp, and what nb_dconv_supported refuses. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "conv_ref.h"
#include "nabla.h"
#include "kernels/conv_direct.h"

/* N, C, H, W, CO, KH, KW, ARGS(s0, s1, top, bottom, left, right, ...) or
 * ARGS_CLAMP(..., lo, hi), bias */
static const ccase cases[] = {
    {"1x1 image 3x3 pad 1", 1, 1, 1, 1, 1, 3, 3, ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"c2 w5 no pad co5 batch 3", 3, 2, 6, 5, 5, 3, 3, PLAIN, false},
    {"c3 s2 p1 w16 co32", 1, 3, 7, 16, 32, 3, 3, ARGS(2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"c4 s2 p1 w17 co33 clamp", 3, 4, 5, 17, 33, 3, 3,
     ARGS_CLAMP(2, 2, 1, 1, 1, 1, 1, 1, 1, -0.4f, 0.5f), true},
    {"c3 7x7 s2 p3 w31 co64", 1, 3, 9, 31, 64, 7, 7, ARGS(2, 2, 3, 3, 3, 3, 1, 1, 0, 0, 1), true},
    {"c1 5x3 s1 asym pad w33 co5", 2, 1, 4, 33, 5, 5, 3, ARGS(1, 1, 0, 3, 2, 1, 1, 1, 0, 0, 1),
     false},
    {"c2 5x3 s2x1 pad 3 co1", 1, 2, 11, 33, 1, 5, 3, ARGS(2, 1, 3, 0, 1, 3, 1, 1, 0, 0, 1), true},
    {"c3 s1x2 w224 co32 clamp", 1, 3, 6, 224, 32, 3, 3,
     ARGS_CLAMP(1, 2, 1, 1, 1, 1, 1, 1, 1, -0.5f, 0.5f), true},
    {"MobileNetV2 conv0 224x224 relu6", 1, 3, 224, 224, 32, 3, 3,
     ARGS_CLAMP(2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 6), true},
    {"ResNet conv1 7x7 s2 p3 w224", 1, 3, 12, 224, 64, 7, 7, ARGS(2, 2, 3, 3, 3, 3, 1, 1, 0, 0, 1),
     true},
    {"c4 7x7 s1 p3 h1 w5", 3, 4, 1, 5, 5, 7, 7, ARGS(1, 1, 3, 3, 3, 3, 1, 1, 0, 0, 1), true},
    {"c1 1x1 s2 w17 co33", 2, 1, 5, 17, 33, 1, 1, ARGS(2, 2, 0, 0, 0, 0, 1, 1, 0, 0, 1), true},
    {"c2 pad 3 past a 3x3 kernel", 1, 2, 3, 4, 3, 3, 3, ARGS(1, 1, 3, 3, 3, 3, 1, 1, 0, 0, 1),
     true},
    {"c3 s2 no pad w33 co16", 2, 3, 5, 33, 16, 3, 3, ARGS(2, 2, 0, 0, 0, 0, 1, 1, 0, 0, 1), false},
    {"c1 7x7 s2 asym pad w16 clamp", 1, 1, 16, 16, 5, 7, 7,
     ARGS_CLAMP(2, 2, 0, 1, 3, 0, 1, 1, 1, -1, 0.3f), false},
    {"c2 negative pad_end", 1, 2, 6, 20, 5, 3, 3, ARGS(1, 2, 1, -1, 1, -2, 1, 1, 0, 0, 1), true},
    {"c2 s1 w224: two column chunks", 1, 2, 5, 224, 17, 3, 3,
     ARGS(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true},
    {"c1 5x5 s2 w257: 129 columns", 2, 1, 6, 257, 9, 5, 5, ARGS(2, 2, 2, 2, 2, 2, 1, 1, 0, 0, 1),
     false},
    {"c4 3x3 s1 p1 w31 co64 batch 3", 3, 4, 4, 31, 64, 3, 3,
     ARGS_CLAMP(1, 1, 1, 1, 1, 1, 1, 1, 1, -0.7f, 0.9f), true},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static bool have_avx512(void) { return __builtin_cpu_supports("avx512f"); }

static nb_dconv geom_of(const ccase *c)
{
    geo r = geo_of(&c->a);
    int64_t OH, OW;
    conv_out_hw(c, &r, &OH, &OW);
    return (nb_dconv){c->N,  c->C,    c->H,    c->W,    c->CO,      OH,         OW,
                      c->KH, c->KW,   r.s[0],  r.s[1],  r.pb[0],    r.pb[1],    c->a.clamp,
                      c->a.clamp_min, c->a.clamp_max};
}

/* One case's operands: f32 copies of random values (exactly sized, so ASan
 * sees any read past them) and the same values in f64. */
typedef struct operands {
    nb_dconv g;
    int64_t nx, nw, ny;
    float *x, *w, *b;
    double *xd, *wd, *bd;
} operands;

static operands make_operands(const ccase *c, uint64_t seed)
{
    operands o;
    o.g = geom_of(c);
    o.nx = c->N * c->C * c->H * c->W;
    o.nw = c->CO * c->C * c->KH * c->KW;
    o.ny = c->N * c->CO * o.g.OH * o.g.OW;
    nb_rng_init(&rng, seed);
    o.xd = random_vals(o.nx);
    o.wd = random_vals(o.nw);
    o.bd = c->bias ? random_vals(c->CO) : NULL;
    o.x = f32_rounded_copy(o.xd, o.nx);
    o.w = f32_rounded_copy(o.wd, o.nw);
    o.b = c->bias ? f32_rounded_copy(o.bd, c->CO) : NULL;
    return o;
}

static void free_operands(operands *o)
{
    free(o->x), free(o->w), free(o->b), free(o->xd), free(o->wd), free(o->bd);
}

/* The kernel's output at `threads` threads (caller frees), with no
 * workspace (ws 0), an exactly sized one (1) or one a float too small (2,
 * so the call allocates its own). */
static float *run_kernel(const operands *o, int threads, int ws)
{
    int before = nb_get_num_threads();
    nb_set_num_threads(threads);
    float *y = aligned_alloc(64, ((size_t)o->ny * sizeof(float) + 63) / 64 * 64);
    ck_assert_ptr_nonnull(y);
    for (int64_t i = 0; i < o->ny; i++)
        y[i] = -12345.0f; /* every output must be written */
    size_t need = nb_dconv_workspace(&o->g), size = ws == 2 ? need - sizeof(float) : need;
    void *buf = ws ? malloc(size) : NULL;
    ck_assert(!ws || buf);
    ck_assert(nb_dconv_f32(&o->g, o->x, o->w, o->b, y, buf, ws ? size : 0));
    free(buf);
    nb_set_num_threads(before);
    return y;
}

/* The f64 reference of the case, clamped like the kernel. */
static double *reference(const ccase *c, const operands *o)
{
    geo r = geo_of(&c->a);
    double *want = malloc((size_t)o->ny * sizeof(double));
    ck_assert_ptr_nonnull(want);
    ref_conv2d(c, &r, o->xd, o->wd, o->bd, want, o->g.OH, o->g.OW);
    if (c->a.clamp)
        for (int64_t i = 0; i < o->ny; i++)
            want[i] = fmin(c->a.clamp_max, fmax(c->a.clamp_min, want[i]));
    return want;
}

/* The case against f64 (|got - want| <= 1e-5 (1 + |want|)) at 1 thread,
 * then bit-identical at 2 threads (with a workspace) and 3 (with one too
 * small, and streaming stores); a clamped case must clamp on both sides
 * (ReLU6: at 0) somewhere. */
START_TEST(test_cases)
{
    const ccase *c = &cases[_i];
    operands o = make_operands(c, 4100 + (uint64_t)_i);
    ck_assert_msg(nb_dconv_supported(&o.g) == (have_avx512() && o.g.OW >= NB_DCONV_MIN_OW),
                  "%s: supported", c->name);
    float *y1 = run_kernel(&o, 1, 0);
    if (!have_avx512()) { /* nothing is written on a CPU without AVX-512 */
        for (int64_t i = 0; i < o.ny; i++)
            ck_assert_float_eq(y1[i], -12345.0f);
        free(y1), free_operands(&o);
        return;
    }
    double *want = reference(c, &o), *got = malloc((size_t)o.ny * sizeof(double));
    ck_assert_ptr_nonnull(got);
    int64_t at_lo = 0, at_hi = 0;
    for (int64_t i = 0; i < o.ny; i++) {
        got[i] = y1[i];
        at_lo += c->a.clamp && y1[i] == c->a.clamp_min;
        at_hi += c->a.clamp && y1[i] == c->a.clamp_max;
    }
    assert_close(c->name, got, want, o.ny, 1e-5);
    if (c->a.clamp) {
        ck_assert_msg(at_lo > 0, "%s: nothing clamped at %g", c->name, c->a.clamp_min);
        ck_assert_msg(at_hi > 0 || c->a.clamp_max >= 6, "%s: nothing clamped at %g", c->name,
                      c->a.clamp_max);
    }
    for (int t = 2; t <= 3; t++) {
        o.g.stream = t == 3; /* streaming stores: the same bits */
        float *yt = run_kernel(&o, t, t - 1);
        ck_assert_msg(memcmp(yt, y1, (size_t)o.ny * sizeof(float)) == 0,
                      "%s: %d threads%s differ from 1", c->name, t, o.g.stream ? " (streamed)" : "");
        free(yt);
    }
    o.g.stream = false;
    free(y1), free(got), free(want), free_operands(&o);
}
END_TEST

/* A NaN input stays NaN through bias and clamp in every output that reads
 * it; the other outputs are finite and inside [lo, hi]. */
START_TEST(test_nan_through_clamp)
{
    ccase c = {"nan", 1, 3, 9, 40, 20, 3, 3, ARGS_CLAMP(2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 6), true};
    operands o = make_operands(&c, 4200);
    if (!have_avx512()) {
        ck_assert(!nb_dconv_supported(&o.g));
        free_operands(&o);
        return;
    }
    int64_t ih = 4, iw = 21; /* read by output rows 2 (p = 1) and columns 10, 11 */
    o.x[(1 * c.H + ih) * c.W + iw] = NAN;
    float *y = run_kernel(&o, 2, 1);
    for (int64_t oc = 0; oc < c.CO; oc++)
        for (int64_t i = 0; i < o.g.OH; i++)
            for (int64_t j = 0; j < o.g.OW; j++) {
                float v = y[(oc * o.g.OH + i) * o.g.OW + j];
                bool reads = i == 2 && (j == 10 || j == 11);
                if (reads)
                    ck_assert_msg(isnan(v), "(%lld, %lld, %lld) should be NaN", (long long)oc,
                                  (long long)i, (long long)j);
                else
                    ck_assert_msg(v >= 0 && v <= 6, "(%lld, %lld, %lld) is %g", (long long)oc,
                                  (long long)i, (long long)j, v);
            }
    free(y), free_operands(&o);
}
END_TEST

/* Shapes outside the limits are refused, and nb_dconv_f32 writes nothing for
 * them; NABLA_DIRECT_CONV=0 refuses everything. */
START_TEST(test_supported)
{
    const ccase mb = {"mbv2", 1, 3, 224, 224, 32, 3, 3,
                      ARGS_CLAMP(2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 6), true};
    const nb_dconv ok = geom_of(&mb);
    ck_assert(nb_dconv_supported(&ok) == have_avx512());
    ck_assert(!nb_dconv_supported(NULL));
    nb_dconv bad[20];
    int nbad = 0;
    for (int k = 0; k < 20; k++)
        bad[k] = ok;
    bad[nbad++].C = 5;
    bad[nbad++].C = 0;
    bad[nbad++].KH = 8;
    bad[nbad++].KW = 8;
    bad[nbad++].KW = 0;
    bad[nbad++].s0 = 3;
    bad[nbad++].s1 = 3;
    bad[nbad++].s1 = 0;
    bad[nbad++].p0 = -1;
    bad[nbad++].p1 = -1;
    bad[nbad++].CO = 0;
    bad[nbad++].W = 0;
    bad[nbad++].OH = 0;
    bad[nbad++].OW = -1;
    bad[nbad++].N = -1;
    bad[nbad++].OW = NB_DCONV_MIN_OW - 1; /* computed right, but not worth it */
    for (int k = 0; k < nbad; k++)
        ck_assert_msg(!nb_dconv_supported(&bad[k]), "bad shape %d taken", k);
    /* nothing written for a refused shape (small buffers: nothing is read either) */
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1}, y[4] = {7, 7, 7, 7};
    nb_dconv tiny = {1, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, false, 0, 0}; /* C = 5 */
    ck_assert(nb_dconv_f32(&tiny, x, w, NULL, y, NULL, 0));
    ck_assert_uint_eq(nb_dconv_workspace(&tiny), 0);
    for (int k = 0; k < 4; k++)
        ck_assert_float_eq(y[k], 7);
    ck_assert(nb_dconv_f32(NULL, x, w, NULL, y, NULL, 0));
    /* the environment switch */
    const char *old = getenv("NABLA_DIRECT_CONV");
    char *saved = old ? strdup(old) : NULL;
    ck_assert_int_eq(setenv("NABLA_DIRECT_CONV", "0", 1), 0);
    ck_assert(!nb_dconv_supported(&ok));
    ck_assert_int_eq(setenv("NABLA_DIRECT_CONV", "1", 1), 0);
    ck_assert(nb_dconv_supported(&ok) == have_avx512());
    if (saved)
        setenv("NABLA_DIRECT_CONV", saved, 1);
    else
        unsetenv("NABLA_DIRECT_CONV");
    free(saved);
    /* batch 0 is taken and writes nothing */
    nb_dconv empty = ok;
    empty.N = 0;
    ck_assert(nb_dconv_supported(&empty) == have_avx512());
    ck_assert(nb_dconv_f32(&empty, NULL, NULL, NULL, NULL, NULL, 0));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv_direct");
    TCase *tc = tcase_create("direct");
    tcase_add_loop_test(tc, test_cases, 0, N_CASES);
    tcase_add_test(tc, test_nan_through_clamp);
    tcase_add_test(tc, test_supported);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
