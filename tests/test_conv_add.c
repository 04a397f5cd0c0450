/* The fused residual connection (CONV_ADD: kernels/conv.c, made by compile
 * in graph/fuse.c): ADD(CONV2D, r) and RELU(ADD(CONV2D, r)) as one entry
 * that adds r (and clamps) while each block of the conv's output is in
 * cache.
 *
 * Each case builds conv -> add (-> relu) from the public builders and runs
 * it twice: asking only for the result (compile fuses it when the backend
 * takes it) and asking for the conv's output as well (which forbids the
 * fusion). The outputs must agree bit for bit (the residual holds a NaN, a
 * -0 and values that cancel the conv's), match an f64 reference, and the
 * fused plan must have a conv2d_add entry exactly when expected: on the
 * Winograd path (3x3 stride 1), the GEMM paths (1x1; 3x3 stride 2 through
 * im2col; 3x3 stride 1 with Winograd switched off), not for a depthwise
 * conv, an f64 graph or a conv with a clamp of its own; in a training
 * graph the gradients are unchanged. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "conv_ref.h"
#include "nabla.h"
#include "kernels/conv_params.h"
#include "kernels/conv_winograd.h"
#include "kernels/cpu.h"

typedef struct acase {
    const char *name;
    int64_t N, C, H, W, CO, K, s, pad, groups;
    bool relu, bias, wino, own_clamp;
    nb_dtype dt;
    bool fused; /* on a CPU with AVX-512F (Winograd and the GEMM epilogue) */
} acase;

static const acase cases[] = {
    {"3x3 winograd relu", 2, 16, 14, 14, 16, 3, 1, 1, 1, true, true, true, false, NB_F32, true},
    {"3x3 winograd no relu", 1, 8, 9, 11, 12, 3, 1, 1, 1, false, false, true, false, NB_F32, true},
    {"3x3 im2col relu", 2, 16, 14, 14, 16, 3, 1, 1, 1, true, true, false, false, NB_F32, true},
    {"1x1 relu", 1, 24, 13, 7, 40, 1, 1, 0, 1, true, true, true, false, NB_F32, true},
    {"3x3 s2 relu", 3, 8, 15, 16, 20, 3, 2, 1, 1, true, true, true, false, NB_F32, true},
    {"7x7 odd", 1, 6, 12, 17, 5, 7, 1, 3, 1, false, true, true, false, NB_F32, true},
    {"depthwise", 1, 16, 10, 10, 16, 3, 1, 1, 16, true, true, true, false, NB_F32, false},
    {"f64", 1, 8, 10, 10, 8, 3, 1, 1, 1, true, true, true, false, NB_F64, false},
    {"conv's own clamp", 1, 8, 10, 10, 8, 3, 1, 1, 1, true, true, true, true, NB_F32, false},
};

typedef struct built {
    nb_graph *g;
    nb_node *out, *conv;
    double *x, *w, *b, *r;
} built;

static void build(const acase *c, built *b)
{
    memset(b, 0, sizeof *b);
    b->g = nb_graph_new();
    int64_t xs[] = {c->N, c->C, c->H, c->W}, ws[] = {c->CO, c->C / c->groups, c->K, c->K};
    b->x = random_vals(c->N * c->C * c->H * c->W);
    b->w = random_vals(ws[0] * ws[1] * ws[2] * ws[3]);
    nb_node *x = param_vals(b->g, "x", c->dt, 4, xs, b->x);
    nb_node *w = param_vals(b->g, "w", c->dt, 4, ws, b->w);
    nb_node *bias = NULL;
    if (c->bias) {
        b->b = random_vals(c->CO);
        bias = param_vals(b->g, "b", c->dt, 1, &c->CO, b->b);
    }
    nb_conv_args a = {{c->s, c->s}, {c->pad, c->pad, c->pad, c->pad}, {1, 1}, {0, 0},
                      c->groups, c->own_clamp, -0.5f, 0.5f};
    b->conv = nb_conv2d(b->g, x, w, bias, &a);
    const int64_t *ys = nb_node_shape(b->conv);
    int64_t n = ys[0] * ys[1] * ys[2] * ys[3];
    b->r = random_vals(n);
    b->r[0] = NAN;
    b->r[1] = -0.0;
    nb_node *r = param_vals(b->g, "r", c->dt, 4, ys, b->r);
    nb_node *sum = nb_add(b->g, b->conv, r);
    b->out = c->relu ? nb_relu(b->g, sum) : sum;
    ck_assert_msg(nb_graph_status(b->g) == NB_OK, "%s: %s", c->name, nb_graph_error(b->g));
}

static void unbuild(built *b)
{
    free(b->x), free(b->w), free(b->b), free(b->r);
    nb_graph_free(b->g);
}

START_TEST(test_case)
{
    const acase *c = &cases[_i];
    nb_rng_init(&rng, 300 + (uint64_t)_i);
    nb_wino_set_enabled(c->wino);
    built b;
    build(c, &b);
    int fused, plain_fused;
    int64_t n, n2;
    double *got = run_counting(b.g, 1, &b.out, NB_OP_CONV_ADD, &fused, &n);
    double *plain = run_counting(b.g, 2, (nb_node *[]){b.out, b.conv}, NB_OP_CONV_ADD, &plain_fused, &n2);
    ck_assert_int_eq(n, n2);
    ck_assert_int_eq(plain_fused, 0);
    if (__builtin_cpu_supports("avx512f"))
        ck_assert_msg(fused == (c->fused ? 1 : 0), "%s: %d conv2d_add entries", c->name, fused);
    else
        printf("SKIP conv_add %s: the fused entry count is checked on AVX-512F CPUs only\n",
               c->name);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(same_bits(got[i], plain[i]), "%s: element %lld fused %.9g, unfused %.9g",
                      c->name, (long long)i, got[i], plain[i]);
    /* the f64 reference: conv, + r, relu */
    ccase k = {"ref", c->N, c->C, c->H, c->W, c->CO, c->K, c->K,
               ARGS(c->s, c->s, c->pad, c->pad, c->pad, c->pad, 1, 1, 0, 0, c->groups), c->bias};
    geo r = geo_of(&k.a);
    int64_t OH, OW;
    conv_out_hw(&k, &r, &OH, &OW);
    double *want = malloc(sizeof(double) * (size_t)n);
    ref_conv2d(&k, &r, b.x, b.w, b.b, want, OH, OW);
    for (int64_t i = 0; i < n; i++) {
        double v = want[i];
        if (c->own_clamp)
            v = v < -0.5 ? -0.5 : v > 0.5 ? 0.5 : v;
        v += b.r[i];
        want[i] = c->relu && v < 0 ? 0 : v;
    }
    ck_assert(isnan(got[0]));
    for (int64_t i = 1; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= 1e-4 * (1 + fabs(want[i])),
                      "%s: element %lld is %.9g, reference %.9g", c->name, (long long)i, got[i],
                      want[i]);
    free(want);
    free(got);
    free(plain);
    unbuild(&b);
    nb_wino_set_enabled(true);
}
END_TEST

/* In a graph that trains, the backward pass reads the ADD's result (the
 * RELU's gradient), so at most ADD(CONV2D, r) fuses, not the RELU; the
 * weight gradient must be the same bits as without any fusion. */
START_TEST(test_training_graph)
{
    nb_rng_init(&rng, 9);
    built b;
    build(&cases[0], &b);
    nb_node *loss = nb_sum(b.g, b.out, 0, NULL, false);
    nb_node *w = nb_graph_find(b.g, "w"), *gw;
    ck_assert_int_eq(nb_grad(b.g, loss, 1, &w, &gw), NB_OK);
    int fused, plain_fused;
    int64_t n, n2;
    double *got = run_counting(b.g, 2, (nb_node *[]){gw, loss}, NB_OP_CONV_ADD, &fused, &n);
    double *plain = run_counting(b.g, 3, (nb_node *[]){gw, loss, b.conv}, NB_OP_CONV_ADD, &plain_fused,
                                 &n2);
    ck_assert_int_eq(plain_fused, 0);
    ck_assert(fused <= 1);
    ck_assert_int_eq(n, n2);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(same_bits(got[i], plain[i]), "gradient element %lld: %.9g vs %.9g",
                      (long long)i, got[i], plain[i]);
    free(got);
    free(plain);
    unbuild(&b);
}
END_TEST

/* A call whose residual does not have the output's shape is refused. */
START_TEST(test_bad_residual)
{
    nb_tensor x, w, r, y;
    ck_assert_int_eq(nb_tensor_empty(&x, NB_F32, 4, (int64_t[]){1, 4, 8, 8}), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&w, NB_F32, 4, (int64_t[]){4, 4, 1, 1}), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&r, NB_F32, 4, (int64_t[]){1, 4, 8, 7}), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&y, NB_F32, 4, (int64_t[]){1, 4, 8, 8}), NB_OK);
    nb_conv_params p = {{1, 1}, {0, 0}, {0, 0}, {1, 1}, {0, 0}, 1, {0, 0, 0, 0}, 1, 0.0f, INFINITY};
    const nb_tensor *in[] = {&x, &w, &r};
    nb_kernel_call c = {NB_OP_CONV_ADD, 3, in, &y, &p, NULL, 0, 0, NULL};
    ck_assert_int_eq(nb_cpu_conv(&c), NB_ERR_ARG);
    ck_assert(strstr(nb_last_error(), "conv2d_add") != NULL);
    ck_assert(!nb_cpu_conv_add_fusable(&c));
    nb_tensor_release(&x);
    nb_tensor_release(&w);
    nb_tensor_release(&r);
    nb_tensor_release(&y);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv_add");
    TCase *tc = tcase_create("conv_add");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_case, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_training_graph);
    tcase_add_test(tc, test_bad_residual);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
