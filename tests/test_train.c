/* End to end: build a model, differentiate it, and train it with plain
 * gradient descent written against the public API.
 *  - a 2-layer MLP learns XOR;
 *  - logistic regression on a generated two-Gaussian dataset reaches the
 *    optimal loss, found independently here by Newton's method. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"

/* p -= lr * grad for every parameter, after a run that fetched the grads. */
static void sgd_step(nb_session *s, int n, nb_node **params, nb_node **grads, double lr)
{
    for (int i = 0; i < n; i++) {
        nb_tensor gt;
        ck_assert_int_eq(nb_session_fetch(s, grads[i], &gt), NB_OK);
        nb_tensor *pt = nb_node_value(params[i]);
        double *p = nb_tensor_data(pt);
        const double *gr = nb_tensor_data(&gt);
        for (int64_t k = 0; k < nb_tensor_numel(pt); k++)
            p[k] -= lr * gr[k];
        nb_tensor_release(&gt);
    }
}

static double fetch_scalar(nb_session *s, nb_node *n)
{
    nb_tensor t;
    ck_assert_int_eq(nb_session_fetch(s, n, &t), NB_OK);
    double v = nb_tensor_get_flat(&t, 0);
    nb_tensor_release(&t);
    return v;
}

START_TEST(mlp_learns_xor)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", NB_F64, 2, (int64_t[]){4, 2});
    nb_node *t = nb_input(g, "t", NB_F64, 2, (int64_t[]){4, 1});
    nb_rng rng;
    nb_rng_init(&rng, 1234);
    nb_scope_push(g, "fc1");
    nb_node *w1 = nb_param(g, "weight", NB_F64, 2, (int64_t[]){2, 8});
    nb_node *b1 = nb_param(g, "bias", NB_F64, 1, (int64_t[]){8});
    nb_scope_pop(g);
    nb_scope_push(g, "fc2");
    nb_node *w2 = nb_param(g, "weight", NB_F64, 2, (int64_t[]){8, 1});
    nb_node *b2 = nb_param(g, "bias", NB_F64, 1, (int64_t[]){1});
    nb_scope_pop(g);
    nb_init_xavier_uniform(&rng, nb_node_value(w1), 1.0);
    nb_init_xavier_uniform(&rng, nb_node_value(w2), 1.0);
    nb_node *h = nb_tanh(g, nb_add(g, nb_matmul(g, x, w1), b1));
    nb_node *logits = nb_add(g, nb_matmul(g, h, w2), b2);
    nb_node *loss = nb_bce_with_logits(g, logits, t);
    nb_node *params[4] = {w1, b1, w2, b2}, *grads[4];
    ck_assert_int_eq(nb_grad(g, loss, 4, params, grads), NB_OK);
    nb_node *outs[6] = {loss, logits, grads[0], grads[1], grads[2], grads[3]};
    nb_plan *p = nb_compile(g, 6, outs, NULL);
    ck_assert_ptr_nonnull(p);
    nb_session *s = nb_session_new(p);
    double xs[8] = {0, 0, 0, 1, 1, 0, 1, 1}, ts[4] = {0, 1, 1, 0};
    nb_session_feed_data(s, x, xs, sizeof(xs));
    nb_session_feed_data(s, t, ts, sizeof(ts));
    double first = 0, l = 0;
    for (int step = 0; step < 3000; step++) {
        ck_assert_int_eq(nb_session_run(s), NB_OK);
        l = fetch_scalar(s, loss);
        if (step == 0)
            first = l;
        sgd_step(s, 4, params, grads, 0.5);
    }
    ck_assert_int_eq(nb_session_run(s), NB_OK);
    nb_tensor lg;
    nb_session_fetch(s, logits, &lg);
    for (int i = 0; i < 4; i++)
        ck_assert_msg((nb_tensor_get_flat(&lg, i) > 0) == (ts[i] > 0.5), "XOR case %d wrong", i);
    nb_tensor_release(&lg);
    ck_assert_msg(first > 0.6 && l < 0.02, "loss %g -> %g", first, l);
    nb_session_free(s);
    nb_plan_free(p);
    nb_graph_free(g);
}
END_TEST

#define NPTS 400

/* Mean logistic loss and its gradient/Hessian at (w0, w1, b), in double. */
static double logistic(const double *x, const double *y, const double *wb, double *grad,
                       double hess[3][3])
{
    double loss = 0;
    memset(grad, 0, 3 * sizeof(double));
    memset(hess, 0, 9 * sizeof(double));
    for (int i = 0; i < NPTS; i++) {
        double f[3] = {x[2 * i], x[2 * i + 1], 1.0};
        double z = wb[0] * f[0] + wb[1] * f[1] + wb[2];
        double s = 1 / (1 + exp(-z));
        loss += log1p(exp(-fabs(z))) + fmax(z, 0) - y[i] * z;
        for (int a = 0; a < 3; a++) {
            grad[a] += (s - y[i]) * f[a] / NPTS;
            for (int b = 0; b < 3; b++)
                hess[a][b] += s * (1 - s) * f[a] * f[b] / NPTS;
        }
    }
    return loss / NPTS;
}

/* Solve the 3x3 system h d = g by Cramer's rule. */
static void solve3(double h[3][3], const double *g, double *d)
{
    double det = h[0][0] * (h[1][1] * h[2][2] - h[1][2] * h[2][1]) -
                 h[0][1] * (h[1][0] * h[2][2] - h[1][2] * h[2][0]) +
                 h[0][2] * (h[1][0] * h[2][1] - h[1][1] * h[2][0]);
    for (int c = 0; c < 3; c++) {
        double m[3][3];
        memcpy(m, h, sizeof(m));
        for (int r = 0; r < 3; r++)
            m[r][c] = g[r];
        d[c] = (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
                m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])) / det;
    }
}

START_TEST(logistic_regression_reaches_optimum)
{
    /* two overlapping Gaussian classes at (-1,-1) and (1,1), unit variance */
    static double xs[NPTS * 2], ys[NPTS];
    nb_rng rng;
    nb_rng_init(&rng, 99);
    for (int i = 0; i < NPTS; i++) {
        ys[i] = i % 2;
        double c = ys[i] > 0 ? 1.0 : -1.0;
        xs[2 * i] = c + nb_rng_normal(&rng);
        xs[2 * i + 1] = c + nb_rng_normal(&rng);
    }
    /* the optimum by Newton's method */
    double wb[3] = {0, 0, 0}, gr[3], h[3][3], d[3], best = 0;
    for (int it = 0; it < 50; it++) {
        best = logistic(xs, ys, wb, gr, h);
        solve3(h, gr, d);
        for (int a = 0; a < 3; a++)
            wb[a] -= d[a];
    }
    best = logistic(xs, ys, wb, gr, h);

    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", NB_F64, 2, (int64_t[]){NPTS, 2});
    nb_node *y = nb_input(g, "y", NB_F64, 1, (int64_t[]){NPTS});
    nb_node *w = nb_param(g, "weight", NB_F64, 2, (int64_t[]){2, 1});
    nb_node *b = nb_param(g, "bias", NB_F64, 1, (int64_t[]){1});
    nb_node *z = nb_reshape(g, nb_add(g, nb_matmul(g, x, w), b), 1, (int64_t[]){NPTS});
    nb_node *loss = nb_bce_with_logits(g, z, y);
    nb_node *params[2] = {w, b}, *grads[2];
    ck_assert_int_eq(nb_grad(g, loss, 2, params, grads), NB_OK);
    nb_node *outs[3] = {loss, grads[0], grads[1]};
    nb_plan *p = nb_compile(g, 3, outs, NULL);
    nb_session *s = nb_session_new(p);
    nb_session_feed_data(s, x, xs, sizeof(xs));
    nb_session_feed_data(s, y, ys, sizeof(ys));
    double l = 0;
    for (int step = 0; step < 1500; step++) {
        ck_assert_int_eq(nb_session_run(s), NB_OK);
        l = fetch_scalar(s, loss);
        sgd_step(s, 2, params, grads, 1.0);
    }
    /* stated target: within 1e-6 of the optimum (which is about 0.19 here) */
    ck_assert_msg(fabs(l - best) < 1e-6, "loss %.9f, optimum %.9f", l, best);
    ck_assert_msg(best > 0.1 && best < 0.3, "optimum %.9f outside the expected range", best);
    nb_session_free(s);
    nb_plan_free(p);
    nb_graph_free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, mlp_learns_xor);
    tcase_add_test(tc, logistic_regression_reaches_optimum);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
