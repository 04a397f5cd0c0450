/* Conv + Relu / Clip fused at load (models/onnx_fuse.c): a model written here
 * (tests/onnx_writer.h) with a Relu, a Clip with both bounds from Constant
 * nodes, a Clip with its min omitted (fused), and three activations that must
 * stay nodes of their own: after a Conv that is also a graph output, a Clip
 * with min > max (ONNX sets everything to max), and a Clip whose bound is a
 * graph input. The fused model's outputs equal the unfused model's
 * (NABLA_ONNX_NO_FUSE) exactly, and the summary counts the fusions. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"
#include "onnx_writer.h"

static pb conv(const char *ins, const char *out)
{
    pb n = node_new("Conv", NULL, ins, out);
    attr_ints(&n, "pads", INTS(1, 1, 1, 1));
    return n;
}

static pb constant(const char *out, float v)
{
    pb n = node_new("Constant", NULL, "", out);
    /* node_new wrote one empty input name: a Constant has none, so rebuild */
    free(n.d);
    n = (pb){0};
    pb_str(&n, 2, out);
    pb_str(&n, 3, out);
    pb_str(&n, 4, "Constant");
    attr_float(&n, "value_float", v);
    return n;
}

static nb_onnx_model *build(void)
{
    pb g = {0}, n;
    n = conv("x,w1,b1", "c1"), pb_msg(&g, 1, &n);
    n = node_new("Relu", NULL, "c1", "r1"), pb_msg(&g, 1, &n);          /* fused */
    n = constant("zero", 0.0f), pb_msg(&g, 1, &n);
    n = constant("six", 0.25f), pb_msg(&g, 1, &n);
    n = conv("r1,w2", "c2"), pb_msg(&g, 1, &n);
    n = node_new("Clip", NULL, "c2,zero,six", "k2"), pb_msg(&g, 1, &n); /* fused */
    n = conv("k2,w2", "c3"), pb_msg(&g, 1, &n);
    n = node_new("Clip", NULL, "c3,,six", "k3"), pb_msg(&g, 1, &n);     /* fused, no min */
    n = conv("k3,w2", "c4"), pb_msg(&g, 1, &n);                        /* also an output */
    n = node_new("Relu", NULL, "c4", "r4"), pb_msg(&g, 1, &n);
    n = conv("r4,w2", "c5"), pb_msg(&g, 1, &n);
    n = node_new("Clip", NULL, "c5,six,zero", "k5"), pb_msg(&g, 1, &n); /* min > max */
    n = conv("k5,w2,b1", "c6"), pb_msg(&g, 1, &n);                     /* k5 is all 0: c6 = b1 */
    n = node_new("Clip", NULL, "c6,lo", "k6"), pb_msg(&g, 1, &n);       /* bound not constant */
    value_info(&g, 11, "x", T_FLOAT, 4, (const int64_t[]){1, 3, 6, 7});
    value_info(&g, 11, "w1", T_FLOAT, 4, (const int64_t[]){4, 3, 3, 3});
    value_info(&g, 11, "b1", T_FLOAT, 1, (const int64_t[]){4});
    value_info(&g, 11, "w2", T_FLOAT, 4, (const int64_t[]){4, 4, 3, 3});
    value_info(&g, 11, "lo", T_FLOAT, 0, NULL);
    value_info(&g, 12, "k6", T_FLOAT, 4, (const int64_t[]){1, 4, 6, 7});
    value_info(&g, 12, "c4", T_FLOAT, 4, (const int64_t[]){1, 4, 6, 7});
    value_info(&g, 12, "r4", T_FLOAT, 4, (const int64_t[]){1, 4, 6, 7});
    return load(&g, 13, false);
}

static void fill(nb_tensor *t, nb_rng *r, double scale)
{
    ck_assert_int_eq(nb_rng_fill_uniform(r, t, -scale, scale), NB_OK);
}

START_TEST(test_fused_equals_unfused)
{
    static const int64_t shapes[5][4] = {{1, 3, 6, 7}, {4, 3, 3, 3}, {4}, {4, 4, 3, 3}, {0}};
    static const int ndims[5] = {4, 4, 1, 4, 0};
    nb_rng r;
    nb_rng_init(&r, 5);
    nb_tensor in[5];
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(nb_tensor_empty(&in[i], NB_F32, ndims[i], shapes[i]), NB_OK);
        fill(&in[i], &r, i == 0 ? 1.0 : 0.5);
    }
    ((float *)nb_tensor_data(&in[4]))[0] = -0.05f;
    nb_tensor out[2][3];
    for (int f = 0; f < 2; f++) {
        if (f == 1)
            setenv("NABLA_ONNX_NO_FUSE", "1", 1);
        nb_onnx_model *m = build();
        unsetenv("NABLA_ONNX_NO_FUSE");
        nb_onnx_summary s;
        ck_assert_msg(nb_onnx_summarize(m, 5, in, &s) == NB_OK, "summarize: %s", nb_last_error());
        ck_assert_int_eq(s.fused_act, f == 0 ? 3 : 0);
        ck_assert_int_eq(s.fused_bn, 0);
        int n_out = 3;
        ck_assert_msg(nb_onnx_run(m, 5, in, &n_out, out[f]) == NB_OK, "run: %s", nb_last_error());
        ck_assert_int_eq(n_out, 3);
        nb_onnx_free(m);
    }
    for (int k = 0; k < 3; k++) {
        int64_t n = nb_tensor_numel(&out[0][k]);
        ck_assert_int_eq(n, nb_tensor_numel(&out[1][k]));
        const float *a = nb_tensor_data(&out[0][k]), *b = nb_tensor_data(&out[1][k]);
        ck_assert_msg(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "output %d differs", k);
        /* the activations did something: some outputs sit on the bounds */
        int at_bound = 0;
        for (int64_t i = 0; i < n; i++)
            at_bound += k == 0 ? a[i] == -0.05f : k == 2 ? a[i] == 0.0f : 0;
        ck_assert_msg(k == 1 || at_bound > 0, "output %d: no value at the clip bound", k);
        nb_tensor_release(&out[0][k]);
        nb_tensor_release(&out[1][k]);
    }
    for (int i = 0; i < 5; i++)
        nb_tensor_release(&in[i]);
}
END_TEST

static Suite *fuse_suite(void)
{
    Suite *s = suite_create("onnx_fuse");
    TCase *tc = tcase_create("fuse");
    tcase_add_test(tc, test_fused_equals_unfused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return nb_run_suite(fuse_suite()); }
