/* The fused inverted-residual block (CONV_BLOCK: kernels/conv_block.c, made
 * by compile in graph/fuse.c): expand 1x1 -> depthwise 3x3 -> project 1x1
 * [+ x], each conv with its clamp.
 *
 * For every case the block is built from nb_conv2d (and nb_add) nodes and
 * run twice: asking only for its output (compile fuses it when the backend
 * takes it) and asking for the depthwise result as well (which forbids the
 * fusion). The two outputs must agree bit for bit, both must match the f64
 * reference loops of conv_ref.c, and the fused plan must have one
 * conv_block entry exactly when the shape is one the CPU backend fuses
 * (images of at least 28x28, or smaller ones as one band, with one work
 * item a thread); the expand may be a
 * first layer's conv of few input channels. The kernel is also
 * called directly on every case, small shapes included, at 1, 2 and 3
 * threads, with and without scratch, against the unfused output bit for bit.
 * Graphs whose intermediate results are read elsewhere (a gradient) are not
 * fused, and a call the kernel does not cover gets an error. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "conv_ref.h"
#include "nabla.h"
#include "kernels/conv_params.h"
#include "kernels/cpu.h"

typedef struct bcase {
    const char *name;
    int64_t N, C, H, W, CE, CO; /* CE 0: no expand */
    int64_t s, pt, pb, pl, pr;  /* the depthwise stride and padding */
    bool residual, bias, clamp;
    bool fused; /* what compile should do at 2 threads */
    int64_t ek, es, ep; /* a KxK expand of stride es, padding ep (0: 1x1) */
} bcase;

static const bcase cases[] = {
    /* MobileNetV2's first blocks, at reduced channel counts */
    {"112 no expand", 1, 8, 112, 112, 0, 4, 1, 1, 1, 1, 1, false, true, true, true},
    {"112 s2", 1, 4, 112, 112, 24, 6, 2, 1, 1, 1, 1, false, true, true, true},
    {"56 residual", 1, 6, 56, 56, 36, 6, 1, 1, 1, 1, 1, true, true, true, true},
    {"28 residual b2", 2, 8, 28, 28, 48, 8, 1, 1, 1, 1, 1, true, true, true, true},
    {"28 s2 b3", 3, 8, 28, 28, 48, 16, 2, 1, 1, 1, 1, false, true, true, true},
    /* odd widths and heights, no bias, no clamp, padding 0 */
    {"33x29 p0", 1, 5, 29, 33, 20, 7, 1, 0, 0, 0, 0, false, false, false, true},
    {"31x45 s2 top0", 2, 3, 45, 31, 17, 5, 2, 0, 1, 1, 1, false, true, true, true},
    {"40x21 s2 left0", 1, 4, 40, 21, 12, 4, 2, 1, 1, 0, 1, false, true, false, true},
    /* a first layer (few input channels) as the expand */
    {"stem 3x3 s2", 2, 3, 64, 64, 16, 8, 1, 1, 1, 1, 1, false, true, true, true, 3, 2, 1},
    {"stem 5x5 odd", 1, 2, 61, 70, 12, 5, 2, 1, 1, 1, 1, false, true, true, true, 5, 1, 2},
    /* small images: fused whole at a batch of one image a thread at least,
     * at batch 1 as two segments of 7 rows (two threads) */
    {"14 residual", 1, 16, 14, 14, 96, 16, 1, 1, 1, 1, 1, true, true, true, true},
    {"14 residual b2", 2, 16, 14, 14, 96, 16, 1, 1, 1, 1, 1, true, true, true, true},
    {"7x7 b4", 4, 8, 7, 7, 48, 8, 1, 1, 1, 1, 1, true, true, true, true},
    {"5x3", 1, 2, 5, 3, 5, 3, 2, 1, 1, 1, 1, false, true, true, false},
    {"1x1", 2, 3, 1, 1, 6, 3, 1, 1, 1, 1, 1, true, false, true, true},
};

typedef struct built {
    nb_graph *g;
    nb_node *out, *dw;
    int64_t OH, OW, EH, EW; /* the depthwise output and input */
    double *x, *w1, *b1, *wd, *bd, *w3, *b3;
    float *fx, *fw1, *fb1, *fwd, *fbd, *fw3, *fb3;
} built;

static nb_node *param_f(nb_graph *g, const char *name, int ndim, const int64_t *shape, double **v,
                        float **f)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    *v = random_vals(n);
    *f = f32_rounded_copy(*v, n);
    return param_vals(g, name, NB_F32, ndim, shape, *v);
}

static void build(const bcase *c, built *b)
{
    memset(b, 0, sizeof *b);
    int64_t CE = c->CE ? c->CE : c->C;
    b->g = nb_graph_new();
    nb_graph *g = b->g;
    nb_node *x = param_f(g, "x", 4, (int64_t[]){c->N, c->C, c->H, c->W}, &b->x, &b->fx), *e = x;
    nb_conv_args one = {{1, 1}, {0, 0, 0, 0}, {1, 1}, {0, 0}, 1, c->clamp, 0.0f, 6.0f};
    if (c->CE) {
        int64_t k = c->ek ? c->ek : 1;
        nb_node *w1 = param_f(g, "w1", 4, (int64_t[]){CE, c->C, k, k}, &b->w1, &b->fw1);
        nb_node *b1 = c->bias ? param_f(g, "b1", 1, &CE, &b->b1, &b->fb1) : NULL;
        nb_conv_args ea = one;
        if (c->ek)
            ea = (nb_conv_args){{c->es, c->es}, {c->ep, c->ep, c->ep, c->ep}, {1, 1}, {0, 0}, 1,
                                c->clamp, 0.0f, 6.0f};
        e = nb_conv2d(g, x, w1, b1, &ea);
        b->EH = nb_node_shape(e)[2];
        b->EW = nb_node_shape(e)[3];
    } else {
        b->EH = c->H;
        b->EW = c->W;
    }
    nb_conv_args dwa = {{c->s, c->s}, {c->pt, c->pb, c->pl, c->pr}, {1, 1}, {0, 0}, CE,
                        c->clamp, -1.0f, 0.5f};
    nb_node *wd = param_f(g, "wd", 4, (int64_t[]){CE, 1, 3, 3}, &b->wd, &b->fwd);
    nb_node *bd = c->bias ? param_f(g, "bd", 1, &CE, &b->bd, &b->fbd) : NULL;
    b->dw = nb_conv2d(g, e, wd, bd, &dwa);
    nb_node *w3 = param_f(g, "w3", 4, (int64_t[]){c->CO, CE, 1, 1}, &b->w3, &b->fw3);
    int64_t CO = c->CO;
    nb_node *b3 = c->bias ? param_f(g, "b3", 1, &CO, &b->b3, &b->fb3) : NULL;
    nb_conv_args proj = one;
    proj.clamp = false;
    nb_node *y = nb_conv2d(g, b->dw, w3, b3, &proj);
    b->out = c->residual ? nb_add(g, y, x) : y;
    ck_assert_msg(nb_graph_status(g) == NB_OK, "%s: %s", c->name, nb_graph_error(g));
    b->OH = nb_node_shape(b->dw)[2];
    b->OW = nb_node_shape(b->dw)[3];
}

static void unbuild(built *b)
{
    double *d[] = {b->x, b->w1, b->b1, b->wd, b->bd, b->w3, b->b3};
    float *f[] = {b->fx, b->fw1, b->fb1, b->fwd, b->fbd, b->fw3, b->fb3};
    for (int i = 0; i < 7; i++) {
        free(d[i]);
        free(f[i]);
    }
    nb_graph_free(b->g);
}

static void clamp_all(double *v, int64_t n, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = v[i] < lo ? lo : v[i] > hi ? hi : v[i];
}

/* The block in f64 through conv_ref.c's loops. */
static double *reference(const bcase *c, const built *b)
{
    int64_t CE = c->CE ? c->CE : c->C, HW = b->EH * b->EW, OHW = b->OH * b->OW;
    double *e = b->x;
    if (c->CE) {
        int64_t kk = c->ek ? c->ek : 1;
        ccase k = {"expand", c->N, c->C, c->H, c->W, CE, kk, kk, PLAIN, c->bias};
        if (c->ek)
            k.a = (nb_conv_args)ARGS(c->es, c->es, c->ep, c->ep, c->ep, c->ep, 1, 1, 0, 0, 1);
        geo r = geo_of(&k.a);
        e = malloc(sizeof(double) * (size_t)(c->N * CE * HW));
        ref_conv2d(&k, &r, b->x, b->w1, b->b1, e, b->EH, b->EW);
        if (c->clamp)
            clamp_all(e, c->N * CE * HW, 0.0, 6.0);
    }
    ccase k2 = {"dw", c->N, CE, b->EH, b->EW, CE, 3, 3,
                ARGS(c->s, c->s, c->pt, c->pb, c->pl, c->pr, 1, 1, 0, 0, CE), c->bias};
    geo r2 = geo_of(&k2.a);
    double *d = malloc(sizeof(double) * (size_t)(c->N * CE * OHW));
    ref_conv2d(&k2, &r2, e, b->wd, b->bd, d, b->OH, b->OW);
    if (c->clamp)
        clamp_all(d, c->N * CE * OHW, -1.0, 0.5);
    ccase k3 = {"project", c->N, CE, b->OH, b->OW, c->CO, 1, 1, PLAIN, c->bias};
    geo r3 = geo_of(&k3.a);
    double *y = malloc(sizeof(double) * (size_t)(c->N * c->CO * OHW));
    ref_conv2d(&k3, &r3, d, b->w3, b->b3, y, b->OH, b->OW);
    if (c->residual)
        for (int64_t i = 0; i < c->N * c->CO * OHW; i++)
            y[i] += b->x[i];
    if (e != b->x)
        free(e);
    free(d);
    return y;
}

static void tensor_of(nb_tensor *t, int ndim, const int64_t *shape, const float *v)
{
    ck_assert_int_eq(nb_tensor_empty(t, NB_F32, ndim, shape), NB_OK);
    memcpy(nb_tensor_data(t), v, sizeof(float) * (size_t)nb_tensor_numel(t));
}

/* nb_cpu_conv_block on the case's tensors, into y (with scratch or not). */
static nb_status call_kernel(const bcase *c, const built *b, float *y, bool scratch)
{
    int64_t CE = c->CE ? c->CE : c->C;
    nb_conv_block_params p = {.expand = c->ek ? 2 : c->CE != 0, .has_b1 = c->CE && c->bias,
                              .has_bd = c->bias, .has_b3 = c->bias, .residual = c->residual,
                              .stride = c->s, .pad = {c->pt, c->pl},
                              .clamp = {c->clamp, c->clamp, 0}, .lo = {0.0f, -1.0f, 0.0f},
                              .hi = {6.0f, 0.5f, 0.0f}, .ek = {c->ek, c->ek},
                              .es = {c->es, c->es}, .ep = {c->ep, c->ep},
                              .eout = {b->EH, b->EW}};
    nb_tensor ts[8], out;
    const nb_tensor *in[8];
    int n = 0;
    tensor_of(&ts[n++], 4, (int64_t[]){c->N, c->C, c->H, c->W}, b->fx);
    if (c->CE) {
        int64_t k = c->ek ? c->ek : 1;
        tensor_of(&ts[n++], 4, (int64_t[]){CE, c->C, k, k}, b->fw1);
        if (c->bias)
            tensor_of(&ts[n++], 1, &CE, b->fb1);
    }
    tensor_of(&ts[n++], 4, (int64_t[]){CE, 1, 3, 3}, b->fwd);
    if (c->bias)
        tensor_of(&ts[n++], 1, &CE, b->fbd);
    int64_t CO = c->CO;
    tensor_of(&ts[n++], 4, (int64_t[]){CO, CE, 1, 1}, b->fw3);
    if (c->bias)
        tensor_of(&ts[n++], 1, &CO, b->fb3);
    for (int i = 0; i < n; i++)
        in[i] = &ts[i];
    ck_assert_int_eq(nb_tensor_empty(&out, NB_F32, 4, (int64_t[]){c->N, CO, b->OH, b->OW}), NB_OK);
    nb_kernel_call call = {NB_OP_CONV_BLOCK, n, in, &out, &p, NULL, 0, 0, NULL};
    size_t ws = nb_cpu_conv_block_workspace(&call);
    void *mem = scratch && ws ? aligned_alloc(64, (ws + 63) / 64 * 64) : NULL;
    call.workspace = mem;
    call.workspace_size = mem ? ws : 0;
    nb_status st = nb_cpu_conv_block(&call);
    if (st == NB_OK)
        memcpy(y, nb_tensor_data(&out), sizeof(float) * (size_t)nb_tensor_numel(&out));
    free(mem);
    for (int i = 0; i < n; i++)
        nb_tensor_release(&ts[i]);
    nb_tensor_release(&out);
    return st;
}

static bool have512(void)
{
    return __builtin_cpu_supports("avx512f") && !(getenv("NABLA_OWN_GEMM") &&
                                                  strcmp(getenv("NABLA_OWN_GEMM"), "0") == 0);
}

START_TEST(test_block_case)
{
    const bcase *c = &cases[_i];
    nb_rng_init(&rng, 100 + (uint64_t)_i);
    nb_set_num_threads(2);
    built b;
    build(c, &b);
    int64_t n = c->N * c->CO * b.OH * b.OW, n1, n2;
    int blocks_fused, blocks_plain;
    double *fused = run_counting(b.g, 1, &b.out, NB_OP_CONV_BLOCK, &blocks_fused, &n1);
    double *plain = run_counting(b.g, 2, (nb_node *[]){b.out, b.dw}, NB_OP_CONV_BLOCK,
                                 &blocks_plain, &n2);
    ck_assert(n1 == n && n2 == n);
    ck_assert_int_eq(blocks_plain, 0);
    if (have512())
        ck_assert_msg(blocks_fused == (c->fused ? 1 : 0), "%s: %d conv_block entries", c->name,
                      blocks_fused);
    else
        printf("SKIP conv_block %s: fusion needs AVX-512F (checked: nothing fused)\n", c->name);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(same_bits(fused[i], plain[i]), "%s: fused and unfused outputs differ",
                      c->name);
    double *want = reference(c, &b), *got = fused;
    /* f32 sums of up to C k^2 + 9 + CE products of values of order 1 */
    double terms = (double)(c->C * (c->ek ? c->ek * c->ek : 1) + 9 + (c->CE ? c->CE : c->C));
    assert_close(c->name, got, want, n, 2e-5 * terms);
    free(want);
    /* the kernel called directly, at 1, 2 and 3 threads, with and without scratch */
    if (have512()) {
        float *y = malloc(sizeof(float) * (size_t)n);
        for (int t = 1; t <= 3; t++)
            for (int scratch = 0; scratch < 2; scratch++) {
                nb_set_num_threads(t);
                memset(y, 0xff, sizeof(float) * (size_t)n);
                ck_assert_msg(call_kernel(c, &b, y, scratch) == NB_OK, "%s: %s", c->name,
                              nb_last_error());
                for (int64_t i = 0; i < n; i++)
                    ck_assert_msg(same_bits(y[i], plain[i]),
                                  "%s: the kernel at %d threads (scratch %d) differs from the "
                                  "unfused convolutions", c->name, t, scratch);
            }
        free(y);
    } else {
        printf("SKIP conv_block %s: direct kernel calls need AVX-512F\n", c->name);
    }
    nb_set_num_threads(2);
    free(fused);
    free(plain);
    unbuild(&b);
}
END_TEST

/* A graph that trains reads the block's intermediate results in its
 * backward pass: nothing may be fused, and the gradients stay right. */
START_TEST(test_training_graph_not_fused)
{
    nb_rng_init(&rng, 7);
    nb_set_num_threads(2);
    built b;
    build(&cases[2], &b);
    nb_node *loss = nb_sum(b.g, b.out, 0, NULL, false);
    nb_node *x = nb_graph_find(b.g, "x"), *gx;
    ck_assert_int_eq(nb_grad(b.g, loss, 1, &x, &gx), NB_OK);
    int blocks;
    int64_t n;
    double *r = run_counting(b.g, 2, (nb_node *[]){gx, loss}, NB_OP_CONV_BLOCK, &blocks, &n);
    ck_assert_int_eq(blocks, 0);
    free(r);
    r = run_counting(b.g, 1, &b.out, NB_OP_CONV_BLOCK, &blocks, &n);
    if (have512())
        ck_assert_int_eq(blocks, 1); /* the same graph, inference only */
    free(r);
    unbuild(&b);
}
END_TEST

/* A plan compiled for one thread (scratch for one) and run with three:
 * the threads without a slot of the workspace bring their own, same bits. */
START_TEST(test_more_threads_than_compiled)
{
    nb_rng_init(&rng, 11);
    built b;
    build(&cases[2], &b); /* 56x56, residual */
    nb_set_num_threads(1);
    nb_plan *plan = nb_compile(b.g, 1, &b.out, NULL);
    ck_assert_ptr_nonnull(plan);
    nb_session *s = nb_session_new(plan);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(nb_session_run(s), NB_OK);
    nb_tensor t1, t3;
    ck_assert_int_eq(nb_session_fetch(s, b.out, &t1), NB_OK);
    nb_tensor c1;
    ck_assert_int_eq(nb_tensor_contiguous(&t1, &c1), NB_OK);
    nb_set_num_threads(3);
    ck_assert_int_eq(nb_session_run(s), NB_OK);
    ck_assert_int_eq(nb_session_fetch(s, b.out, &t3), NB_OK);
    int64_t n = nb_tensor_numel(&c1);
    const float *a = nb_tensor_data(&c1), *z = nb_tensor_data(&t3);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(same_bits(a[i], z[i]), "element %lld differs at 3 threads", (long long)i);
    nb_tensor_release(&t1);
    nb_tensor_release(&t3);
    nb_tensor_release(&c1);
    nb_session_free(s);
    nb_plan_free(plan);
    nb_set_num_threads(2);
    unbuild(&b);
}
END_TEST

/* Is an inverted-residual block of MobileNetV2's shapes fused, at batch n
 * and 2 threads? (expand 1x1 c -> ce, depthwise 3x3 stride 1, project back
 * to c, plus x) */
static bool fused_at(int64_t n, int64_t c, int64_t ce, int64_t hw)
{
    nb_tensor x, w1, wd, w3, y;
    ck_assert_int_eq(nb_tensor_empty(&x, NB_F32, 4, (int64_t[]){n, c, hw, hw}), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&w1, NB_F32, 4, (int64_t[]){ce, c, 1, 1}), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&wd, NB_F32, 4, (int64_t[]){ce, 1, 3, 3}), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&w3, NB_F32, 4, (int64_t[]){c, ce, 1, 1}), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&y, NB_F32, 4, (int64_t[]){n, c, hw, hw}), NB_OK);
    nb_conv_block_params p = {.expand = 1, .stride = 1, .pad = {1, 1}, .residual = 1};
    const nb_tensor *in[] = {&x, &w1, &wd, &w3};
    nb_kernel_call call = {NB_OP_CONV_BLOCK, 4, in, &y, &p, NULL, 0, 0, NULL};
    bool fused = nb_cpu_conv_block_fusable(&call);
    nb_tensor_release(&x), nb_tensor_release(&w1), nb_tensor_release(&wd);
    nb_tensor_release(&w3), nb_tensor_release(&y);
    return fused;
}

/* Small images are fused when a segment is one band (its expanded and
 * depthwise rows fit the budget together) and every thread has a segment
 * of at least 7 rows: 14 rows, not a multiple of the depthwise kernel's 4,
 * still make one band (they were cut to 12 + 2 once, which kept these
 * blocks unfused); one 14x14 image makes two segments of 7 rows for two
 * threads, one 7x7 image none. */
START_TEST(test_which_small_blocks_fuse)
{
    if (!have512()) {
        fprintf(stderr, "SKIP which_small_blocks_fuse: conv_block needs AVX-512F\n");
        return;
    }
    nb_set_num_threads(2);
    ck_assert(fused_at(8, 64, 384, 14));  /* one band an image, 8 images */
    ck_assert(fused_at(1, 64, 384, 14));  /* one image: 7 rows a thread */
    ck_assert(!fused_at(1, 160, 960, 7)); /* 7 rows: one segment for two threads */
    ck_assert(fused_at(8, 96, 576, 14));   /* 903K of e and d an image */
    ck_assert(!fused_at(8, 160, 960, 14)); /* an image is more than the budget */
    ck_assert(fused_at(8, 160, 960, 7));
}
END_TEST

/* Calls the kernel does not cover are refused with an error, not run. */
START_TEST(test_bad_calls)
{
    nb_tensor x, w, wd, y;
    ck_assert_int_eq(nb_tensor_empty(&x, NB_F32, 4, (int64_t[]){1, 4, 8, 8}), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&w, NB_F32, 4, (int64_t[]){4, 4, 1, 1}), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&wd, NB_F32, 4, (int64_t[]){4, 1, 3, 3}), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&y, NB_F32, 4, (int64_t[]){1, 4, 8, 8}), NB_OK);
    nb_conv_block_params p = {.expand = 1, .stride = 1, .pad = {1, 1}};
    const nb_tensor *in[] = {&x, &w, &wd, &w};
    nb_kernel_call c = {NB_OP_CONV_BLOCK, 3, in, &y, &p, NULL, 0, 0, NULL};
    ck_assert_int_eq(nb_cpu_conv_block(&c), NB_ERR_ARG); /* an input missing */
    ck_assert(strstr(nb_last_error(), "conv_block") != NULL);
    ck_assert(!nb_cpu_conv_block_fusable(&c));
    c.n_in = 4;
    p.stride = 3; /* not 1 or 2 */
    ck_assert_int_eq(nb_cpu_conv_block(&c), NB_ERR_ARG);
    p.stride = 1;
    p.residual = 1;
    const nb_tensor *in2[] = {&x, &w, &wd, &wd}; /* a 3x3 projection */
    c.in = in2;
    ck_assert_int_eq(nb_cpu_conv_block(&c), NB_ERR_ARG);
    c.params = NULL;
    ck_assert_int_eq(nb_cpu_conv_block(&c), NB_ERR_ARG);
    nb_tensor_release(&x);
    nb_tensor_release(&w);
    nb_tensor_release(&wd);
    nb_tensor_release(&y);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv_block");
    TCase *tc = tcase_create("block");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_block_case, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_training_graph_not_fused);
    tcase_add_test(tc, test_more_threads_than_compiled);
    tcase_add_test(tc, test_which_small_blocks_fuse);
    tcase_add_test(tc, test_bad_calls);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
