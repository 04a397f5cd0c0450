/* The graph, the compiler and sessions: shape inference, names and scopes,
 * DOT export, memory reuse, reshape views, feeds, fetches and parameter
 * updates between runs. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"

static nb_node *input2(nb_graph *g, const char *name, int64_t r, int64_t c)
{
    return nb_input(g, name, NB_F32, 2, (int64_t[]){r, c});
}

static void assert_shape(const nb_node *n, int ndim, const int64_t *shape)
{
    ck_assert_int_eq(nb_node_ndim(n), ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_int_eq(nb_node_shape(n)[i], shape[i]);
}

START_TEST(shape_inference)
{
    nb_graph *g = nb_graph_new();
    nb_node *a = nb_input(g, "a", NB_F32, 3, (int64_t[]){2, 1, 4});
    nb_node *b = nb_input(g, "b", NB_F32, 2, (int64_t[]){3, 1});
    assert_shape(nb_add(g, a, b), 3, (int64_t[]){2, 3, 4});
    ck_assert_int_eq(nb_node_dtype(nb_lt(g, a, b)), NB_BOOL);
    nb_node *m = nb_input(g, "m", NB_F32, 3, (int64_t[]){5, 2, 3});
    nb_node *w = nb_input(g, "w", NB_F32, 2, (int64_t[]){3, 4});
    assert_shape(nb_matmul(g, m, w), 3, (int64_t[]){5, 2, 4});
    assert_shape(nb_matmul_t(g, w, w, true, false), 2, (int64_t[]){4, 4});
    nb_node *v = nb_input(g, "v", NB_F32, 1, (int64_t[]){3});
    assert_shape(nb_matmul(g, v, w), 1, (int64_t[]){4});
    assert_shape(nb_matmul(g, m, v), 2, (int64_t[]){5, 2});
    ck_assert_int_eq(nb_node_ndim(nb_matmul(g, v, v)), 0);
    assert_shape(nb_sum(g, m, 2, (int[]){0, -1}, true), 3, (int64_t[]){1, 2, 1});
    assert_shape(nb_mean(g, m, 1, (int[]){1}, false), 2, (int64_t[]){5, 3});
    ck_assert_int_eq(nb_node_dtype(nb_argmax(g, m, -1, false)), NB_I64);
    assert_shape(nb_reshape(g, m, 2, (int64_t[]){-1, 6}), 2, (int64_t[]){5, 6});
    assert_shape(nb_permute(g, m, (int[]){2, 0, 1}), 3, (int64_t[]){3, 5, 2});
    assert_shape(nb_slice(g, m, 0, 1, -1, 2), 3, (int64_t[]){2, 2, 3});
    assert_shape(nb_slice(g, m, 0, -100, 100, 1), 3, (int64_t[]){5, 2, 3});
    assert_shape(nb_concat(g, 2, (nb_node *[]){m, m}, 1), 3, (int64_t[]){5, 4, 3});
    assert_shape(nb_pad(g, w, (int64_t[]){1, 2, 0, 3}, 0.0), 2, (int64_t[]){6, 7});
    assert_shape(nb_expand(g, b, 3, (int64_t[]){2, 3, 5}), 3, (int64_t[]){2, 3, 5});
    assert_shape(nb_flatten(g, m, 1), 2, (int64_t[]){5, 6});
    assert_shape(nb_unsqueeze(g, w, -1), 3, (int64_t[]){3, 4, 1});
    nb_node *parts[3];
    ck_assert_int_eq(nb_split(g, m, 0, 3, (int64_t[]){1, 3, 1}, parts), 0);
    assert_shape(parts[1], 3, (int64_t[]){3, 2, 3});
    ck_assert_int_eq(nb_graph_status(g), NB_OK);
    nb_graph_free(g);
}
END_TEST

START_TEST(names_and_scopes)
{
    nb_graph *g = nb_graph_new();
    nb_scope_push(g, "encoder");
    nb_scope_push(g, "fc1");
    nb_node *w = nb_param(g, "weight", NB_F32, 2, (int64_t[]){4, 3});
    nb_scope_pop(g);
    nb_node *b = nb_param(g, "bias", NB_F32, 1, (int64_t[]){4});
    nb_scope_pop(g);
    ck_assert_str_eq(nb_node_name(w), "encoder.fc1.weight");
    ck_assert_str_eq(nb_node_name(b), "encoder.bias");
    ck_assert_ptr_eq(nb_graph_find(g, "encoder.fc1.weight"), w);
    nb_node *params[4];
    ck_assert_int_eq(nb_graph_params(g, params, 4), 2);
    ck_assert_ptr_eq(params[0], w);
    nb_node *r = nb_node_set_name(nb_relu(g, w), "act");
    ck_assert_ptr_eq(nb_graph_find(g, "act"), r);
    nb_node_set_name(r, "act2");
    ck_assert_ptr_null(nb_graph_find(g, "act"));
    ck_assert_ptr_eq(nb_graph_find(g, "act2"), r);
    /* parameters start at zero and take values through nb_node_value */
    ck_assert(nb_tensor_max_abs(nb_node_value(w)) == 0.0);
    ck_assert_ptr_null(nb_node_value(r));
    nb_graph_free(g);
}
END_TEST

START_TEST(dot_export)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = input2(g, "x", 2, 3);
    nb_node *y = nb_node_set_name(nb_relu(g, nb_add_scalar(g, x, 1)), "y");
    nb_exp(g, x); /* not an ancestor of y */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_int_eq(nb_graph_write_dot(g, f, 1, &y), NB_OK);
    fclose(f);
    ck_assert(strstr(buf, "digraph") != NULL);
    ck_assert(strstr(buf, "y\\nrelu (2,3) f32") != NULL);
    ck_assert(strstr(buf, "exp") == NULL);
    int edges = 0;
    for (const char *p = buf; (p = strstr(p, "->")); p++)
        edges++;
    ck_assert_int_eq(edges, 3); /* x -> add, const -> add, add -> relu */
    free(buf);
    nb_graph_free(g);
}
END_TEST

/* A chain of 32 elementwise ops on 4096 floats needs two live buffers at a
 * time, not 32. */
START_TEST(memory_reuse)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", NB_F32, 1, (int64_t[]){4096});
    nb_node *h = x;
    for (int i = 0; i < 32; i++)
        h = i % 2 ? nb_tanh(g, h) : nb_add_scalar(g, h, 0.01);
    nb_plan *p = nb_compile(g, 1, &h, NULL);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(nb_plan_num_entries(p), 32);
    size_t one = 4096 * sizeof(float);
    ck_assert_uint_ge(nb_plan_unshared_bytes(p), 33 * one);
    ck_assert_uint_le(nb_plan_arena_bytes(p), 3 * one);
    /* and the result is right */
    nb_session *s = nb_session_new(p);
    float *xs = malloc(one);
    for (int i = 0; i < 4096; i++)
        xs[i] = (float)i / 4096.0f - 0.5f;
    nb_session_feed_data(s, x, xs, one);
    ck_assert_int_eq(nb_session_run(s), NB_OK);
    nb_tensor out;
    nb_session_fetch(s, h, &out);
    const float *o = nb_tensor_data(&out);
    for (int i = 0; i < 4096; i += 97) {
        float r = xs[i];
        for (int k = 0; k < 32; k++)
            r = k % 2 ? tanhf(r) : r + 0.01f;
        ck_assert_float_eq_tol(o[i], r, 1e-5);
    }
    nb_tensor_release(&out);
    free(xs);
    nb_session_free(s);
    nb_plan_free(p);
    nb_graph_free(g);
}
END_TEST

/* Reshapes are views: no tape entry, no copy; a fetched output stays valid
 * after the session is gone. */
/* Profiling: off, no totals; on, one total per tape entry over the runs
 * since it was turned on, each naming its node. */
START_TEST(session_profile)
{
    nb_graph *g = nb_graph_new();
    int64_t sh[2] = {64, 64};
    nb_node *x = nb_input(g, "x", NB_F32, 2, sh);
    nb_node *w = nb_param(g, "w", NB_F32, 2, sh);
    nb_node *y = nb_relu(g, nb_matmul(g, x, w));
    nb_plan *p = nb_compile(g, 1, &y, NULL);
    ck_assert_ptr_nonnull(p);
    nb_session *s = nb_session_new(p);
    ck_assert_ptr_nonnull(s);
    nb_tensor xt;
    ck_assert_int_eq(nb_tensor_zeros(&xt, NB_F32, 2, sh), NB_OK);
    ck_assert_int_eq(nb_session_feed(s, x, &xt), NB_OK);
    ck_assert_int_eq(nb_session_run(s), NB_OK);
    nb_profile_entry e[4];
    ck_assert_int_eq(nb_session_profile(s, e, 4), 0);
    ck_assert_int_eq(nb_session_set_profiling(s, true), NB_OK);
    for (int r = 0; r < 3; r++)
        ck_assert_int_eq(nb_session_run(s), NB_OK);
    ck_assert_int_eq(nb_session_profile(s, e, 4), 2);
    ck_assert_int_eq(nb_node_op(e[0].node), NB_OP_MATMUL);
    ck_assert_int_eq(e[0].op, NB_OP_MATMUL);
    ck_assert_ptr_eq(e[1].node, y);
    for (int i = 0; i < 2; i++) {
        ck_assert(e[i].runs == 3);
        ck_assert(e[i].seconds > 0 && e[i].seconds < 10);
    }
    ck_assert_int_eq(nb_session_set_profiling(s, false), NB_OK);
    ck_assert_int_eq(nb_session_profile(s, e, 4), 0);
    nb_tensor_release(&xt);
    nb_session_free(s);
    nb_plan_free(p);
    nb_graph_free(g);
}
END_TEST

START_TEST(reshape_is_a_view)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = input2(g, "x", 2, 3);
    nb_node *r = nb_reshape(g, nb_exp(g, x), 1, (int64_t[]){6});
    nb_node *y = nb_reshape(g, nb_mul_scalar(g, r, 2.0), 2, (int64_t[]){3, 2});
    nb_plan *p = nb_compile(g, 1, &y, NULL);
    ck_assert_int_eq(nb_plan_num_entries(p), 2);
    nb_session *s = nb_session_new(p);
    float d[6] = {0, 1, 2, 3, 4, 5};
    nb_session_feed_data(s, x, d, sizeof(d));
    nb_session_run(s);
    nb_tensor out;
    ck_assert_int_eq(nb_session_fetch(s, y, &out), NB_OK);
    nb_session_free(s);
    ck_assert_int_eq(out.shape[0], 3);
    for (int i = 0; i < 6; i++)
        ck_assert_double_eq_tol(nb_tensor_get_flat(&out, i), 2 * exp(i), 1e-4);
    nb_tensor_release(&out);
    nb_plan_free(p);
    nb_graph_free(g);
}
END_TEST

/* y = W x + b with parameters: updates to the values are seen by the next
 * run; feeds by name; inputs keep their value across runs. */
START_TEST(params_and_feeds)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", NB_F64, 1, (int64_t[]){3});
    nb_node *w = nb_param(g, "w", NB_F64, 2, (int64_t[]){2, 3});
    nb_node *b = nb_param(g, "b", NB_F64, 1, (int64_t[]){2});
    nb_node *y = nb_node_set_name(nb_add(g, nb_matmul(g, w, x), b), "y");
    nb_plan *p = nb_compile(g, 1, &y, NULL);
    nb_session *s = nb_session_new(p);
    nb_tensor xt;
    nb_tensor_from_data(&xt, NB_F64, 1, (int64_t[]){3}, (double[]){1, 2, 3});
    ck_assert_int_eq(nb_session_feed_name(s, "x", &xt), NB_OK);
    double *wd = nb_tensor_data(nb_node_value(w));
    for (int i = 0; i < 6; i++)
        wd[i] = i + 1; /* [[1,2,3],[4,5,6]] */
    nb_tensor_fill(nb_node_value(b), 0.5);
    ck_assert_int_eq(nb_session_run(s), NB_OK);
    nb_tensor out;
    nb_session_fetch_name(s, "y", &out);
    ck_assert_double_eq(nb_tensor_get_flat(&out, 0), 14.5);
    ck_assert_double_eq(nb_tensor_get_flat(&out, 1), 32.5);
    nb_tensor_release(&out);
    wd[0] = 0; /* an optimizer step, in place */
    ck_assert_int_eq(nb_session_run(s), NB_OK);
    nb_session_fetch(s, y, &out);
    ck_assert_double_eq(nb_tensor_get_flat(&out, 0), 13.5);
    nb_tensor_release(&out);
    nb_tensor_release(&xt);
    nb_session_free(s);
    nb_plan_free(p);
    nb_graph_free(g);
}
END_TEST

/* Gradients are nodes: compile them with the loss and check a known case.
 * L = sum((W x)^2) -> dL/dW = 2 (W x) x^T. */
START_TEST(grad_as_nodes)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", NB_F64, 2, (int64_t[]){3, 1});
    nb_node *w = nb_param(g, "w", NB_F64, 2, (int64_t[]){2, 3});
    nb_node *loss = nb_sum(g, nb_square(g, nb_matmul(g, w, x)), 0, NULL, false);
    nb_node *gw;
    ck_assert_int_eq(nb_grad(g, loss, 1, &w, &gw), NB_OK);
    nb_node *outs[2] = {loss, gw};
    nb_plan *p = nb_compile(g, 2, outs, NULL);
    nb_session *s = nb_session_new(p);
    double xv[3] = {1, -2, 0.5}, wv[6] = {0.1, 0.2, 0.3, -0.4, 0.5, 0.6};
    memcpy(nb_tensor_data(nb_node_value(w)), wv, sizeof(wv));
    nb_session_feed_data(s, x, xv, sizeof(xv));
    ck_assert_int_eq(nb_session_run(s), NB_OK);
    nb_tensor t;
    nb_session_fetch(s, gw, &t);
    for (int i = 0; i < 2; i++) {
        double wx = wv[3 * i] * xv[0] + wv[3 * i + 1] * xv[1] + wv[3 * i + 2] * xv[2];
        for (int j = 0; j < 3; j++)
            ck_assert_double_eq_tol(nb_tensor_get_flat(&t, 3 * i + j), 2 * wx * xv[j], 1e-12);
    }
    nb_tensor_release(&t);
    /* a parameter the loss does not use gets a zero gradient */
    nb_node *unused = nb_param(g, "unused", NB_F64, 1, (int64_t[]){2});
    nb_node *gu;
    ck_assert_int_eq(nb_grad(g, loss, 1, &unused, &gu), NB_OK);
    assert_shape(gu, 1, (int64_t[]){2});
    nb_session_free(s);
    nb_plan_free(p);
    nb_graph_free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("graph");
    TCase *tc = tcase_create("graph");
    tcase_add_test(tc, shape_inference);
    tcase_add_test(tc, names_and_scopes);
    tcase_add_test(tc, dot_export);
    tcase_add_test(tc, memory_reuse);
    tcase_add_test(tc, reshape_is_a_view);
    tcase_add_test(tc, session_profile);
    tcase_add_test(tc, params_and_feeds);
    tcase_add_test(tc, grad_as_nodes);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
