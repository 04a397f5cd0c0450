/* Forward and backward parity with PyTorch.
 *
 * tests/gen_fixtures.py writes, for every case NAME, the inputs NAME.xK.npy,
 * PyTorch's output NAME.y.npy and, for differentiable cases, a cotangent
 * NAME.gy.npy and the vector-Jacobian products NAME.gxK.npy (one per float
 * input K). Each case here rebuilds the same computation with the graph
 * builder, differentiates it with nb_vjp(y, gy), compiles {y, grads...}, runs
 * it and compares:
 *   - shape and dtype exactly;
 *   - f32 values to |a - b| <= 1e-5 * max(1, max |expected|);
 *   - bool and integer values exactly.
 * A missing fixture is a failure naming the file. The fixture directory comes
 * from NABLA_FIXTURES (tests/meson.build points it at tests/fixtures).
 *
 * Float inputs are INPUT nodes fed through nb_session_feed, except where a
 * case marks them as parameters (the MLP's weights and biases), whose values
 * are copied into the PARAM node. Integer labels and bool masks are INPUTs.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"

#define MAX_IN 8
#define TOL_REL 1e-5

typedef nb_node *(*build_fn)(nb_graph *g, nb_node **x);

typedef struct parity_case {
    const char *name;
    int n_inputs;
    int grad;           /* 1: the fixtures hold gy and gxK */
    unsigned param_mask; /* bit K: float input K is a PARAM, not an INPUT */
    build_fn build;
} parity_case;

/* ---- builders: one per case, mirroring tests/gen_fixtures.py ------------ */

static nb_node *b_add(nb_graph *g, nb_node **x) { return nb_add(g, x[0], x[1]); }
static nb_node *b_sub(nb_graph *g, nb_node **x) { return nb_sub(g, x[0], x[1]); }
static nb_node *b_mul(nb_graph *g, nb_node **x) { return nb_mul(g, x[0], x[1]); }
static nb_node *b_div(nb_graph *g, nb_node **x) { return nb_div(g, x[0], x[1]); }
static nb_node *b_pow(nb_graph *g, nb_node **x) { return nb_pow(g, x[0], x[1]); }
static nb_node *b_maximum(nb_graph *g, nb_node **x) { return nb_maximum(g, x[0], x[1]); }
static nb_node *b_minimum(nb_graph *g, nb_node **x) { return nb_minimum(g, x[0], x[1]); }

static nb_node *b_add_scalar(nb_graph *g, nb_node **x) { return nb_add_scalar(g, x[0], 1.5); }
static nb_node *b_mul_scalar(nb_graph *g, nb_node **x) { return nb_mul_scalar(g, x[0], -0.75); }
static nb_node *b_pow_scalar(nb_graph *g, nb_node **x) { return nb_pow_scalar(g, x[0], 2.5); }

static nb_node *b_neg(nb_graph *g, nb_node **x) { return nb_neg(g, x[0]); }
static nb_node *b_abs(nb_graph *g, nb_node **x) { return nb_abs(g, x[0]); }
static nb_node *b_exp(nb_graph *g, nb_node **x) { return nb_exp(g, x[0]); }
static nb_node *b_log(nb_graph *g, nb_node **x) { return nb_log(g, x[0]); }
static nb_node *b_sqrt(nb_graph *g, nb_node **x) { return nb_sqrt(g, x[0]); }
static nb_node *b_rsqrt(nb_graph *g, nb_node **x) { return nb_rsqrt(g, x[0]); }
static nb_node *b_square(nb_graph *g, nb_node **x) { return nb_square(g, x[0]); }
static nb_node *b_reciprocal(nb_graph *g, nb_node **x) { return nb_reciprocal(g, x[0]); }
static nb_node *b_erf(nb_graph *g, nb_node **x) { return nb_erf(g, x[0]); }
static nb_node *b_relu(nb_graph *g, nb_node **x) { return nb_relu(g, x[0]); }
static nb_node *b_leaky_relu(nb_graph *g, nb_node **x) { return nb_leaky_relu(g, x[0], 0.1); }
static nb_node *b_elu(nb_graph *g, nb_node **x) { return nb_elu(g, x[0], 1.0); }
static nb_node *b_sigmoid(nb_graph *g, nb_node **x) { return nb_sigmoid(g, x[0]); }
static nb_node *b_tanh(nb_graph *g, nb_node **x) { return nb_tanh(g, x[0]); }
static nb_node *b_gelu(nb_graph *g, nb_node **x) { return nb_gelu(g, x[0], false); }
static nb_node *b_gelu_tanh(nb_graph *g, nb_node **x) { return nb_gelu(g, x[0], true); }
static nb_node *b_silu(nb_graph *g, nb_node **x) { return nb_silu(g, x[0]); }
static nb_node *b_softplus(nb_graph *g, nb_node **x) { return nb_softplus(g, x[0], 1.0, 20.0); }
static nb_node *b_softplus_b2_t5(nb_graph *g, nb_node **x) { return nb_softplus(g, x[0], 2.0, 5.0); }
static nb_node *b_clamp(nb_graph *g, nb_node **x) { return nb_clip(g, x[0], -0.5, 0.7); }

static nb_node *b_eq(nb_graph *g, nb_node **x) { return nb_eq(g, x[0], x[1]); }
static nb_node *b_lt(nb_graph *g, nb_node **x) { return nb_lt(g, x[0], x[1]); }
static nb_node *b_gt(nb_graph *g, nb_node **x) { return nb_gt(g, x[0], x[1]); }
static nb_node *b_where(nb_graph *g, nb_node **x) { return nb_where(g, x[0], x[1], x[2]); }

static nb_node *b_matmul(nb_graph *g, nb_node **x) { return nb_matmul(g, x[0], x[1]); }
static nb_node *b_matmul_tt(nb_graph *g, nb_node **x)
{
    return nb_matmul_t(g, x[0], x[1], true, true);
}

static nb_node *b_sum_all(nb_graph *g, nb_node **x) { return nb_sum(g, x[0], 0, NULL, false); }
static nb_node *b_sum_1(nb_graph *g, nb_node **x)
{
    const int axes[] = {1};
    return nb_sum(g, x[0], 1, axes, false);
}
static nb_node *b_sum_02_keep(nb_graph *g, nb_node **x)
{
    const int axes[] = {0, 2};
    return nb_sum(g, x[0], 2, axes, true);
}
static nb_node *b_mean_all(nb_graph *g, nb_node **x) { return nb_mean(g, x[0], 0, NULL, false); }
static nb_node *b_mean_02(nb_graph *g, nb_node **x)
{
    const int axes[] = {0, 2};
    return nb_mean(g, x[0], 2, axes, false);
}
static nb_node *b_mean_neg1_keep(nb_graph *g, nb_node **x)
{
    const int axes[] = {-1};
    return nb_mean(g, x[0], 1, axes, true);
}
static nb_node *b_amax_all(nb_graph *g, nb_node **x) { return nb_max(g, x[0], 0, NULL, false); }
static nb_node *b_amax_1(nb_graph *g, nb_node **x)
{
    const int axes[] = {1};
    return nb_max(g, x[0], 1, axes, false);
}
static nb_node *b_amax_02_keep(nb_graph *g, nb_node **x)
{
    const int axes[] = {0, 2};
    return nb_max(g, x[0], 2, axes, true);
}
static nb_node *b_amin_0(nb_graph *g, nb_node **x)
{
    const int axes[] = {0};
    return nb_min(g, x[0], 1, axes, false);
}
static nb_node *b_amin_12_keep(nb_graph *g, nb_node **x)
{
    const int axes[] = {1, 2};
    return nb_min(g, x[0], 2, axes, true);
}
static nb_node *b_argmax_1(nb_graph *g, nb_node **x) { return nb_argmax(g, x[0], 1, false); }
static nb_node *b_argmax_neg1_keep(nb_graph *g, nb_node **x)
{
    return nb_argmax(g, x[0], -1, true);
}

static nb_node *b_reshape(nb_graph *g, nb_node **x)
{
    const int64_t shape[] = {4, -1};
    return nb_reshape(g, x[0], 2, shape);
}
static nb_node *b_permute(nb_graph *g, nb_node **x)
{
    const int perm[] = {2, 0, 1};
    return nb_permute(g, x[0], perm);
}
static nb_node *b_permute_reshape(nb_graph *g, nb_node **x)
{
    const int perm[] = {1, 0, 2};
    const int64_t shape[] = {3, 8};
    return nb_reshape(g, nb_permute(g, x[0], perm), 2, shape);
}
/* x[:, 1:5:2] */
static nb_node *b_slice_step(nb_graph *g, nb_node **x) { return nb_slice(g, x[0], 1, 1, 5, 2); }
/* x[-3:, ::3] on (4,7); the first stop is past the end and clamped as in Python */
static nb_node *b_slice_neg_2axes(nb_graph *g, nb_node **x)
{
    nb_node *rows = nb_slice(g, x[0], 0, -3, 100, 1);
    return nb_slice(g, rows, 1, 0, 7, 3);
}
static nb_node *b_concat3(nb_graph *g, nb_node **x) { return nb_concat(g, 3, x, 1); }
/* F.pad(x, (1, 2, 0, 1), value=0.5) on (2,3,4): last dim (1,2), dim 1 (0,1) */
static nb_node *b_pad(nb_graph *g, nb_node **x)
{
    const int64_t pads[] = {0, 0, 0, 1, 1, 2};
    return nb_pad(g, x[0], pads, 0.5);
}

static nb_node *b_softmax_last(nb_graph *g, nb_node **x) { return nb_softmax(g, x[0], -1); }
static nb_node *b_softmax_0(nb_graph *g, nb_node **x) { return nb_softmax(g, x[0], 0); }
static nb_node *b_log_softmax_last(nb_graph *g, nb_node **x) { return nb_log_softmax(g, x[0], -1); }
static nb_node *b_log_softmax_0(nb_graph *g, nb_node **x) { return nb_log_softmax(g, x[0], 0); }
static nb_node *b_cross_entropy(nb_graph *g, nb_node **x)
{
    return nb_cross_entropy(g, x[0], x[1], 0.0);
}
static nb_node *b_cross_entropy_ls(nb_graph *g, nb_node **x)
{
    return nb_cross_entropy(g, x[0], x[1], 0.1);
}
static nb_node *b_nll_loss(nb_graph *g, nb_node **x) { return nb_nll_loss(g, x[0], x[1]); }
static nb_node *b_mse_loss(nb_graph *g, nb_node **x) { return nb_mse_loss(g, x[0], x[1]); }
static nb_node *b_bce_logits(nb_graph *g, nb_node **x) { return nb_bce_with_logits(g, x[0], x[1]); }

/* x(8,5) -> x @ W1 + b1 -> tanh -> @ W2 + b2 -> cross_entropy(labels) */
static nb_node *b_mlp(nb_graph *g, nb_node **x)
{
    nb_node *h = nb_tanh(g, nb_add(g, nb_matmul(g, x[0], x[1]), x[2]));
    nb_node *logits = nb_add(g, nb_matmul(g, h, x[3]), x[4]);
    return nb_cross_entropy(g, logits, x[5], 0.0);
}

static const parity_case cases[] = {
    {"add_b2", 2, 1, 0, b_add},
    {"add_b3", 2, 1, 0, b_add},
    {"sub_b2", 2, 1, 0, b_sub},
    {"sub_b3", 2, 1, 0, b_sub},
    {"mul_b2", 2, 1, 0, b_mul},
    {"mul_b3", 2, 1, 0, b_mul},
    {"div_b2", 2, 1, 0, b_div},
    {"div_b3", 2, 1, 0, b_div},
    {"pow_b2", 2, 1, 0, b_pow},
    {"pow_b3", 2, 1, 0, b_pow},
    {"maximum_b2", 2, 1, 0, b_maximum},
    {"maximum_b3", 2, 1, 0, b_maximum},
    {"minimum_b2", 2, 1, 0, b_minimum},
    {"minimum_b3", 2, 1, 0, b_minimum},
    {"add_scalar", 1, 1, 0, b_add_scalar},
    {"mul_scalar", 1, 1, 0, b_mul_scalar},
    {"pow_scalar", 1, 1, 0, b_pow_scalar},
    {"neg", 1, 1, 0, b_neg},
    {"abs", 1, 1, 0, b_abs},
    {"exp", 1, 1, 0, b_exp},
    {"log", 1, 1, 0, b_log},
    {"sqrt", 1, 1, 0, b_sqrt},
    {"rsqrt", 1, 1, 0, b_rsqrt},
    {"square", 1, 1, 0, b_square},
    {"reciprocal", 1, 1, 0, b_reciprocal},
    {"erf", 1, 1, 0, b_erf},
    {"relu", 1, 1, 0, b_relu},
    {"leaky_relu", 1, 1, 0, b_leaky_relu},
    {"elu", 1, 1, 0, b_elu},
    {"sigmoid", 1, 1, 0, b_sigmoid},
    {"tanh", 1, 1, 0, b_tanh},
    {"gelu", 1, 1, 0, b_gelu},
    {"gelu_tanh", 1, 1, 0, b_gelu_tanh},
    {"silu", 1, 1, 0, b_silu},
    {"softplus", 1, 1, 0, b_softplus},
    {"softplus_b2_t5", 1, 1, 0, b_softplus_b2_t5},
    {"clamp", 1, 1, 0, b_clamp},
    {"eq", 2, 0, 0, b_eq},
    {"lt", 2, 0, 0, b_lt},
    {"gt", 2, 0, 0, b_gt},
    {"where", 3, 1, 0, b_where},
    {"matmul_2d", 2, 1, 0, b_matmul},
    {"matmul_batched", 2, 1, 0, b_matmul},
    {"matmul_bcast", 2, 1, 0, b_matmul},
    {"matmul_1d_2d", 2, 1, 0, b_matmul},
    {"matmul_2d_1d", 2, 1, 0, b_matmul},
    {"matmul_tt", 2, 1, 0, b_matmul_tt},
    {"sum_all", 1, 1, 0, b_sum_all},
    {"sum_1", 1, 1, 0, b_sum_1},
    {"sum_02_keep", 1, 1, 0, b_sum_02_keep},
    {"mean_all", 1, 1, 0, b_mean_all},
    {"mean_02", 1, 1, 0, b_mean_02},
    {"mean_neg1_keep", 1, 1, 0, b_mean_neg1_keep},
    {"amax_all", 1, 1, 0, b_amax_all},
    {"amax_1", 1, 1, 0, b_amax_1},
    {"amax_02_keep", 1, 1, 0, b_amax_02_keep},
    {"amin_0", 1, 1, 0, b_amin_0},
    {"amin_12_keep", 1, 1, 0, b_amin_12_keep},
    {"argmax_1", 1, 0, 0, b_argmax_1},
    {"argmax_neg1_keep", 1, 0, 0, b_argmax_neg1_keep},
    {"reshape", 1, 1, 0, b_reshape},
    {"permute", 1, 1, 0, b_permute},
    {"permute_reshape", 1, 1, 0, b_permute_reshape},
    {"slice_step", 1, 1, 0, b_slice_step},
    {"slice_neg_2axes", 1, 1, 0, b_slice_neg_2axes},
    {"concat3", 3, 1, 0, b_concat3},
    {"pad", 1, 1, 0, b_pad},
    {"softmax_last", 1, 1, 0, b_softmax_last},
    {"softmax_0", 1, 1, 0, b_softmax_0},
    {"log_softmax_last", 1, 1, 0, b_log_softmax_last},
    {"log_softmax_0", 1, 1, 0, b_log_softmax_0},
    {"cross_entropy", 2, 1, 0, b_cross_entropy},
    {"cross_entropy_ls", 2, 1, 0, b_cross_entropy_ls},
    {"nll_loss", 2, 1, 0, b_nll_loss},
    {"mse_loss", 2, 1, 0, b_mse_loss},
    {"bce_logits", 2, 1, 0, b_bce_logits},
    /* the weights and biases x1..x4 are parameters */
    {"mlp", 6, 1, 0x1eu, b_mlp},
};

#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- helpers ---------------------------------------------------------- */

static const char *fixtures_dir(void)
{
    const char *d = getenv("NABLA_FIXTURES");
    return (d && *d) ? d : "tests/fixtures";
}

/* Load NAME.SUFFIX.npy; on failure write a message naming the file to err. */
static int load_fixture(const char *name, const char *suffix, nb_tensor *out, char *err,
                        size_t errsz)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.%s.npy", fixtures_dir(), name, suffix);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsz, "missing fixture file %s (run tests/gen_fixtures.py)", path);
        return -1;
    }
    fclose(f);
    nb_status st = nb_npy_load(path, out);
    if (st != NB_OK) {
        snprintf(err, errsz, "cannot load fixture %s: %s: %s", path, nb_status_str(st),
                 nb_last_error());
        return -1;
    }
    return 0;
}

static void shape_str(const nb_tensor *t, char *buf, size_t n)
{
    nb_shape_str(t->ndim, t->shape, buf, n);
}

/* Compare got against expected; *err_out gets the largest |a - b|. Returns 0
 * when they agree (see the file comment for the rule). */
static int compare(const char *what, const nb_tensor *got, const nb_tensor *exp, double *err_out,
                   char *err, size_t errsz)
{
    char sg[64], se[64];
    shape_str(got, sg, sizeof sg);
    shape_str(exp, se, sizeof se);
    *err_out = 0.0;
    if (got->dtype != exp->dtype) {
        snprintf(err, errsz, "%s: dtype %s, expected %s", what, nb_dtype_name(got->dtype),
                 nb_dtype_name(exp->dtype));
        return -1;
    }
    if (!nb_shape_equal(got->ndim, got->shape, exp->ndim, exp->shape)) {
        snprintf(err, errsz, "%s: shape %s, expected %s", what, sg, se);
        return -1;
    }

    int64_t n = nb_tensor_numel(exp);
    bool is_float = nb_dtype_is_float(exp->dtype);
    double scale = 1.0;
    if (is_float) {
        for (int64_t i = 0; i < n; i++) {
            double v = fabs(nb_tensor_get_flat(exp, i));
            if (v > scale)
                scale = v;
        }
    }
    double tol = is_float ? TOL_REL * scale : 0.0;

    int64_t worst = -1;
    double max_err = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double a = nb_tensor_get_flat(got, i);
        double b = nb_tensor_get_flat(exp, i);
        double d = fabs(a - b);
        if (d != d)
            d = INFINITY; /* NaN counts as the worst error */
        if (worst < 0 || d > max_err) {
            max_err = d;
            worst = i;
        }
    }
    *err_out = max_err;
    if (!(max_err <= tol)) {
        snprintf(err, errsz, "%s %s: max |got - expected| = %.3g > tol %.3g at flat index %lld "
                 "(got %.9g, expected %.9g)", what, se, max_err, tol, (long long)worst,
                 nb_tensor_get_flat(got, worst), nb_tensor_get_flat(exp, worst));
        return -1;
    }
    return 0;
}

/* ---- one case ---------------------------------------------------------- */

/* Build, differentiate, compile, run and compare one case. Returns 0 on
 * success; otherwise err holds the reason. Frees everything either way. */
static int run_case(const parity_case *c, char *err, size_t errsz)
{
    nb_tensor xs[MAX_IN] = {{0}};
    nb_tensor y_exp = {0}, gy = {0};
    nb_tensor gx_exp[MAX_IN] = {{0}};
    nb_node *nodes[MAX_IN] = {0};
    nb_node *wrt[MAX_IN], *grads[MAX_IN];
    int wrt_index[MAX_IN];
    nb_node *outs[1 + MAX_IN];
    int n_wrt = 0, rc = -1;
    nb_graph *g = NULL;
    nb_plan *plan = NULL;
    nb_session *s = NULL;
    char line[1024];
    size_t used = 0;
    double worst = 0.0;

    err[0] = '\0';
    line[0] = '\0';

    /* fixtures */
    for (int i = 0; i < c->n_inputs; i++) {
        char suffix[16];
        snprintf(suffix, sizeof suffix, "x%d", i);
        if (load_fixture(c->name, suffix, &xs[i], err, errsz))
            goto done;
    }
    if (load_fixture(c->name, "y", &y_exp, err, errsz))
        goto done;
    if (c->grad) {
        if (load_fixture(c->name, "gy", &gy, err, errsz))
            goto done;
        for (int i = 0; i < c->n_inputs; i++) {
            if (!nb_dtype_is_float(xs[i].dtype))
                continue;
            char suffix[16];
            snprintf(suffix, sizeof suffix, "gx%d", i);
            if (load_fixture(c->name, suffix, &gx_exp[i], err, errsz))
                goto done;
        }
    }

    /* graph */
    g = nb_graph_new();
    if (!g) {
        snprintf(err, errsz, "nb_graph_new failed");
        goto done;
    }
    for (int i = 0; i < c->n_inputs; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        bool is_float = nb_dtype_is_float(xs[i].dtype);
        if (is_float && (c->param_mask & (1u << i))) {
            nodes[i] = nb_param(g, name, xs[i].dtype, xs[i].ndim, xs[i].shape);
            nb_tensor *v = nb_node_value(nodes[i]);
            if (!v) {
                snprintf(err, errsz, "param %s has no value tensor (graph: %s)", name,
                         nb_graph_error(g));
                goto done;
            }
            nb_status st = nb_tensor_copy_into(v, &xs[i]);
            if (st != NB_OK) {
                snprintf(err, errsz, "copy into param %s: %s", name, nb_last_error());
                goto done;
            }
        } else {
            nodes[i] = nb_input(g, name, xs[i].dtype, xs[i].ndim, xs[i].shape);
        }
        if (c->grad && is_float) {
            wrt_index[n_wrt] = i;
            wrt[n_wrt++] = nodes[i];
        }
    }
    nb_node *y = c->build(g, nodes);
    if (c->grad && nb_graph_status(g) == NB_OK) {
        nb_node *seed = nb_constant(g, &gy);
        nb_status st = nb_vjp(g, y, seed, n_wrt, wrt, grads);
        if (st != NB_OK && nb_graph_status(g) == NB_OK) {
            snprintf(err, errsz, "nb_vjp: %s: %s", nb_status_str(st), nb_last_error());
            goto done;
        }
    }
    if (nb_graph_status(g) != NB_OK) {
        snprintf(err, errsz, "graph failed: %s", nb_graph_error(g));
        goto done;
    }

    /* compile and run */
    int n_out = 0;
    outs[n_out++] = y;
    for (int k = 0; k < n_wrt; k++)
        outs[n_out++] = grads[k];
    plan = nb_compile(g, n_out, outs, NULL);
    if (!plan) {
        snprintf(err, errsz, "nb_compile: %s", nb_last_error());
        goto done;
    }
    s = nb_session_new(plan);
    if (!s) {
        snprintf(err, errsz, "nb_session_new failed");
        goto done;
    }
    for (int i = 0; i < c->n_inputs; i++) {
        if (nb_node_op(nodes[i]) != NB_OP_INPUT)
            continue;
        nb_status st = nb_session_feed(s, nodes[i], &xs[i]);
        if (st != NB_OK) {
            snprintf(err, errsz, "feed x%d: %s", i, nb_last_error());
            goto done;
        }
    }
    nb_status st = nb_session_run(s);
    if (st != NB_OK) {
        snprintf(err, errsz, "nb_session_run: %s: %s", nb_status_str(st), nb_last_error());
        goto done;
    }

    /* compare y, then each gradient */
    for (int k = 0; k < n_out; k++) {
        char what[16];
        const nb_tensor *exp;
        if (k == 0) {
            snprintf(what, sizeof what, "y");
            exp = &y_exp;
        } else {
            snprintf(what, sizeof what, "gx%d", wrt_index[k - 1]);
            exp = &gx_exp[wrt_index[k - 1]];
        }
        nb_tensor got = {0};
        st = nb_session_fetch(s, outs[k], &got);
        if (st != NB_OK) {
            snprintf(err, errsz, "fetch %s: %s", what, nb_last_error());
            goto done;
        }
        double e;
        int bad = compare(what, &got, exp, &e, err, errsz);
        nb_tensor_release(&got);
        if (e > worst)
            worst = e;
        used += (size_t)snprintf(line + used, sizeof line - used, " %s=%.2e", what, e);
        if (used >= sizeof line)
            used = sizeof line - 1;
        if (bad)
            goto done;
    }
    rc = 0;

done:
    if (rc == 0)
        printf("parity %-18s ok   max_err=%.2e  (%s )\n", c->name, worst, line);
    else
        printf("parity %-18s FAIL %s\n", c->name, err);
    fflush(stdout);

    nb_session_free(s);
    nb_plan_free(plan);
    nb_graph_free(g);
    for (int i = 0; i < MAX_IN; i++) {
        nb_tensor_release(&xs[i]);
        nb_tensor_release(&gx_exp[i]);
    }
    nb_tensor_release(&y_exp);
    nb_tensor_release(&gy);
    return rc;
}

START_TEST(test_case)
{
    char err[2048];
    const parity_case *c = &cases[_i];
    ck_assert_msg(c->n_inputs <= MAX_IN, "%s: too many inputs", c->name);
    int rc = run_case(c, err, sizeof err);
    ck_assert_msg(rc == 0, "parity case %s: %s", c->name, err);
}
END_TEST

/* The generator's MANIFEST and this table must list the same cases, with
 * the same input counts and gradient flags, so that no fixture goes untested
 * and no case runs against fixtures of another shape. */
START_TEST(test_manifest_matches_table)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/MANIFEST.txt", fixtures_dir());
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "missing fixture file %s (run tests/gen_fixtures.py)", path);

    int seen[N_CASES];
    memset(seen, 0, sizeof seen);
    char buf[1024];
    char problem[512] = "";
    while (fgets(buf, sizeof buf, f)) {
        char name[128], flag[16];
        int n_in;
        if (buf[0] == '#' || buf[0] == '\n')
            continue;
        if (sscanf(buf, "%127s %d %15s", name, &n_in, flag) != 3) {
            snprintf(problem, sizeof problem, "malformed line: %.200s", buf);
            break;
        }
        int found = -1;
        for (int k = 0; k < N_CASES; k++)
            if (strcmp(cases[k].name, name) == 0)
                found = k;
        if (found < 0) {
            snprintf(problem, sizeof problem, "fixture case %s has no entry in test_parity.c",
                     name);
            break;
        }
        seen[found] = 1;
        int grad = strcmp(flag, "grad") == 0;
        if (cases[found].n_inputs != n_in || cases[found].grad != grad) {
            snprintf(problem, sizeof problem,
                     "case %s: manifest says %d inputs %s, table says %d inputs %s", name, n_in,
                     flag, cases[found].n_inputs, cases[found].grad ? "grad" : "nograd");
            break;
        }
    }
    fclose(f);
    ck_assert_msg(problem[0] == '\0', "%s: %s", path, problem);
    for (int k = 0; k < N_CASES; k++)
        ck_assert_msg(seen[k], "case %s is not in %s (regenerate the fixtures)", cases[k].name,
                      path);
}
END_TEST

static Suite *parity_suite(void)
{
    Suite *s = suite_create("parity");
    TCase *tc = tcase_create("torch");
    tcase_add_test(tc, test_manifest_matches_table);
    tcase_add_loop_test(tc, test_case, 0, N_CASES);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return nb_run_suite(parity_suite());
}
