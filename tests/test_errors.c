/* Error paths: every user mistake gives a status and a message that names
 * the op, the node and the shapes involved, and never crashes. */
#include <check.h>
#include <string.h>

#include "check_main.h"
#include "autodiff/vjp.h"
#include "nabla.h"

#define ASSERT_HAS(msg, part) \
    ck_assert_msg(strstr((msg), (part)) != NULL, "message \"%s\" lacks \"%s\"", (msg), (part))

static nb_node *input(nb_graph *g, const char *name, nb_dtype dt, int64_t r, int64_t c)
{
    int64_t shape[2] = {r, c};
    return nb_input(g, name, dt, 2, shape);
}

START_TEST(matmul_inner_mismatch)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = input(g, "x", NB_F32, 128, 784);
    nb_scope_push(g, "fc2");
    int64_t ws[2] = {256, 10};
    nb_node *w = nb_param(g, "weight", NB_F32, 2, ws);
    nb_node *y = nb_matmul(g, x, w);
    nb_scope_pop(g);
    ck_assert(nb_node_is_poison(y));
    ck_assert_int_eq(nb_graph_status(g), NB_ERR_SHAPE);
    const char *m = nb_graph_error(g);
    ASSERT_HAS(m, "matmul 'fc2.matmul_");
    ASSERT_HAS(m, "(128,784) x (256,10): inner dimensions 784 and 256 differ");
    nb_graph_free(g);
}
END_TEST

START_TEST(sticky_error_keeps_first)
{
    nb_graph *g = nb_graph_new();
    nb_node *a = input(g, "a", NB_F32, 2, 3);
    nb_node *b = input(g, "b", NB_F32, 4, 5);
    nb_node *c = nb_add(g, a, b);
    ck_assert(nb_node_is_poison(c));
    ASSERT_HAS(nb_graph_error(g), "shapes (2,3) and (4,5) do not broadcast");
    /* later calls, valid or not, return poison and keep the first message */
    nb_node *d = nb_relu(g, nb_mul(g, c, a));
    ck_assert(nb_node_is_poison(d));
    nb_node *e = nb_exp(g, a);
    ck_assert(nb_node_is_poison(e));
    ASSERT_HAS(nb_graph_error(g), "add '");
    ck_assert_ptr_null(nb_compile(g, 1, &a, NULL));
    ASSERT_HAS(nb_last_error(), "the graph has failed");
    nb_graph_free(g);
}
END_TEST

START_TEST(dtype_mismatch)
{
    nb_graph *g = nb_graph_new();
    nb_node *a = input(g, "a", NB_F32, 2, 3);
    nb_node *b = input(g, "b", NB_F64, 2, 3);
    nb_add(g, a, b);
    ck_assert_int_eq(nb_graph_status(g), NB_ERR_DTYPE);
    ASSERT_HAS(nb_graph_error(g), "dtypes differ: 'a' is f32, 'b' is f64");
    nb_graph_free(g);

    g = nb_graph_new();
    nb_node *i = input(g, "i", NB_I64, 2, 3);
    nb_exp(g, i);
    ck_assert_int_eq(nb_graph_status(g), NB_ERR_DTYPE);
    ASSERT_HAS(nb_graph_error(g), "exp '");
    ASSERT_HAS(nb_graph_error(g), "input 'i' has dtype i64, needs f32 or f64");
    nb_graph_free(g);
}
END_TEST

START_TEST(missing_gradient_rule)
{
    nb_graph *g = nb_graph_new();
    int64_t s[1] = {3};
    nb_node *w = nb_param(g, "w", NB_F64, 1, s);
    nb_node *loss = nb_sum(g, nb_tanh(g, nb_mul(g, w, w)), 0, NULL, false);
    nb_vjp_fn saved = nb_vjp_set_rule(NB_OP_TANH, NULL);
    nb_node *gw;
    nb_status st = nb_grad(g, loss, 1, &w, &gw);
    nb_vjp_set_rule(NB_OP_TANH, saved);
    ck_assert_int_eq(st, NB_ERR_NO_GRAD);
    ASSERT_HAS(nb_graph_error(g), "op 'tanh' (node 'tanh_");
    ASSERT_HAS(nb_graph_error(g), "has no gradient rule");
    nb_graph_free(g);
}
END_TEST

START_TEST(grad_of_non_scalar)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = input(g, "x", NB_F32, 2, 3);
    nb_node *gx;
    ck_assert_int_eq(nb_grad(g, nb_exp(g, x), 1, &x, &gx), NB_ERR_SHAPE);
    ASSERT_HAS(nb_graph_error(g), "must be a float with one element, got (2,3) f32");
    nb_graph_free(g);
}
END_TEST

/* A compiled y = x + 1 for the session error tests. */
typedef struct {
    nb_graph *g;
    nb_node *x, *y;
    nb_plan *p;
    nb_session *s;
} small;

static small small_make(void)
{
    small m;
    m.g = nb_graph_new();
    m.x = input(m.g, "x", NB_F32, 2, 3);
    m.y = nb_node_set_name(nb_add_scalar(m.g, m.x, 1.0), "y");
    m.p = nb_compile(m.g, 1, &m.y, NULL);
    ck_assert_ptr_nonnull(m.p);
    m.s = nb_session_new(m.p);
    return m;
}

static void small_free(small *m)
{
    nb_session_free(m->s);
    nb_plan_free(m->p);
    nb_graph_free(m->g);
}

START_TEST(unknown_name)
{
    small m = small_make();
    nb_tensor t;
    int64_t shape[2] = {2, 3};
    nb_tensor_zeros(&t, NB_F32, 2, shape);
    ck_assert_int_eq(nb_session_feed_name(m.s, "nope", &t), NB_ERR_NOT_FOUND);
    ASSERT_HAS(nb_last_error(), "no node named 'nope'");
    nb_tensor out;
    ck_assert_int_eq(nb_session_fetch_name(m.s, "missing", &out), NB_ERR_NOT_FOUND);
    ASSERT_HAS(nb_last_error(), "'missing'");
    ck_assert_ptr_null(nb_graph_find(m.g, "nope"));
    nb_tensor_release(&t);
    small_free(&m);
}
END_TEST

START_TEST(wrong_feed)
{
    small m = small_make();
    nb_tensor t;
    int64_t shape[2] = {3, 2};
    nb_tensor_zeros(&t, NB_F32, 2, shape);
    ck_assert_int_eq(nb_session_feed(m.s, m.x, &t), NB_ERR_SHAPE);
    ASSERT_HAS(nb_last_error(), "feed 'x': expected (2,3) f32, got (3,2) f32");
    float data[5] = {0};
    ck_assert_int_eq(nb_session_feed_data(m.s, m.x, data, sizeof(data)), NB_ERR_SHAPE);
    ASSERT_HAS(nb_last_error(), "expected 24 bytes");
    nb_tensor_release(&t);
    nb_tensor_zeros(&t, NB_F64, 2, (int64_t[]){2, 3});
    ck_assert_int_eq(nb_session_feed(m.s, m.x, &t), NB_ERR_DTYPE);
    ASSERT_HAS(nb_last_error(), "got (2,3) f64");
    nb_tensor_release(&t);
    /* never fed: run refuses, naming the input */
    ck_assert_int_eq(nb_session_run(m.s), NB_ERR_ARG);
    ASSERT_HAS(nb_last_error(), "input 'x' (2,3) f32 was not fed");
    small_free(&m);
}
END_TEST

START_TEST(fetch_not_output)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = input(g, "x", NB_F32, 2, 3);
    nb_node *h = nb_node_set_name(nb_exp(g, x), "hidden");
    nb_node *y = nb_relu(g, h);
    nb_plan *p = nb_compile(g, 1, &y, NULL);
    nb_session *s = nb_session_new(p);
    float d[6] = {1, 2, 3, 4, 5, 6};
    ck_assert_int_eq(nb_session_feed_data(s, x, d, sizeof(d)), NB_OK);
    ck_assert_int_eq(nb_session_run(s), NB_OK);
    nb_tensor t;
    ck_assert_int_eq(nb_session_fetch(s, h, &t), NB_ERR_ARG);
    ASSERT_HAS(nb_last_error(), "'hidden' is not an output");
    nb_session_free(s);
    nb_plan_free(p);
    nb_graph_free(g);
}
END_TEST

START_TEST(bad_label_at_run)
{
    nb_graph *g = nb_graph_new();
    nb_node *logits = input(g, "logits", NB_F32, 2, 3);
    nb_node *labels = nb_input(g, "labels", NB_I64, 1, (int64_t[]){2});
    nb_node *loss = nb_cross_entropy(g, logits, labels, 0.0);
    ck_assert_int_eq(nb_graph_status(g), NB_OK);
    nb_plan *p = nb_compile(g, 1, &loss, NULL);
    nb_session *s = nb_session_new(p);
    float lg[6] = {0};
    int64_t lb[2] = {1, 7};
    nb_session_feed_data(s, logits, lg, sizeof(lg));
    nb_session_feed_data(s, labels, lb, sizeof(lb));
    ck_assert_int_eq(nb_session_run(s), NB_ERR_ARG);
    ASSERT_HAS(nb_last_error(), "one_hot");
    ASSERT_HAS(nb_last_error(), "7");
    nb_session_free(s);
    nb_plan_free(p);
    nb_graph_free(g);
}
END_TEST

START_TEST(builder_argument_errors)
{
    struct {
        const char *want;
    } cases[] = {{"axis 5 is out of range"}, {"cannot reshape (2,3) (6 elements) into (4,2)"},
                 {"is not a permutation"}, {"cannot expand (2,3) to (4,3)"},
                 {"input 1 (2,4) does not fit input 0 (2,3) along axis 0"},
                 {"labels 'lab' (3) do not match scores (2,3)"}, {"input 'x': the name is already used"}};
    for (int i = 0; i < (int)(sizeof(cases) / sizeof(cases[0])); i++) {
        nb_graph *g = nb_graph_new();
        nb_node *x = input(g, "x", NB_F32, 2, 3);
        switch (i) {
        case 0: nb_sum(g, x, 1, (int[]){5}, false); break;
        case 1: nb_reshape(g, x, 2, (int64_t[]){4, 2}); break;
        case 2: nb_permute(g, x, (int[]){0, 0}); break;
        case 3: nb_expand(g, x, 2, (int64_t[]){4, 3}); break;
        case 4: nb_concat(g, 2, (nb_node *[]){x, input(g, "z", NB_F32, 2, 4)}, 0); break;
        case 5: nb_cross_entropy(g, x, nb_input(g, "lab", NB_I64, 1, (int64_t[]){3}), 0); break;
        case 6: input(g, "x", NB_F32, 1, 1); break;
        }
        ck_assert_int_ne(nb_graph_status(g), NB_OK);
        ASSERT_HAS(nb_graph_error(g), cases[i].want);
        nb_graph_free(g);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("errors");
    tcase_add_test(tc, matmul_inner_mismatch);
    tcase_add_test(tc, sticky_error_keeps_first);
    tcase_add_test(tc, dtype_mismatch);
    tcase_add_test(tc, missing_gradient_rule);
    tcase_add_test(tc, grad_of_non_scalar);
    tcase_add_test(tc, unknown_name);
    tcase_add_test(tc, wrong_feed);
    tcase_add_test(tc, fetch_not_output);
    tcase_add_test(tc, bad_label_at_run);
    tcase_add_test(tc, builder_argument_errors);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
