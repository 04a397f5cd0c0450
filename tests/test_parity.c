/* Forward and backward parity with PyTorch for the tensor ops of issue 2
 * (elementwise, comparisons, matmul, reductions, shape ops, softmax and
 * losses) and a small MLP.
 *
 * tests/gen_fixtures.py writes the fixtures and MANIFEST.txt; the rules for
 * running and comparing a case are in parity_common.h. The fixture directory
 * comes from NABLA_FIXTURES (tests/meson.build points it at tests/fixtures).
 * Float inputs are INPUTs except the MLP's weights and biases, which are
 * PARAMs; integer labels and bool masks are INPUTs.
 */
#include <check.h>
#include <stdlib.h>

#include "check_main.h"
#include "nabla.h"
#include "parity_common.h"

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
    {"add_b2", 2, 1, 0, 0, b_add},
    {"add_b3", 2, 1, 0, 0, b_add},
    {"sub_b2", 2, 1, 0, 0, b_sub},
    {"sub_b3", 2, 1, 0, 0, b_sub},
    {"mul_b2", 2, 1, 0, 0, b_mul},
    {"mul_b3", 2, 1, 0, 0, b_mul},
    {"div_b2", 2, 1, 0, 0, b_div},
    {"div_b3", 2, 1, 0, 0, b_div},
    {"pow_b2", 2, 1, 0, 0, b_pow},
    {"pow_b3", 2, 1, 0, 0, b_pow},
    {"maximum_b2", 2, 1, 0, 0, b_maximum},
    {"maximum_b3", 2, 1, 0, 0, b_maximum},
    {"minimum_b2", 2, 1, 0, 0, b_minimum},
    {"minimum_b3", 2, 1, 0, 0, b_minimum},
    {"add_scalar", 1, 1, 0, 0, b_add_scalar},
    {"mul_scalar", 1, 1, 0, 0, b_mul_scalar},
    {"pow_scalar", 1, 1, 0, 0, b_pow_scalar},
    {"neg", 1, 1, 0, 0, b_neg},
    {"abs", 1, 1, 0, 0, b_abs},
    {"exp", 1, 1, 0, 0, b_exp},
    {"log", 1, 1, 0, 0, b_log},
    {"sqrt", 1, 1, 0, 0, b_sqrt},
    {"rsqrt", 1, 1, 0, 0, b_rsqrt},
    {"square", 1, 1, 0, 0, b_square},
    {"reciprocal", 1, 1, 0, 0, b_reciprocal},
    {"erf", 1, 1, 0, 0, b_erf},
    {"relu", 1, 1, 0, 0, b_relu},
    {"leaky_relu", 1, 1, 0, 0, b_leaky_relu},
    {"elu", 1, 1, 0, 0, b_elu},
    {"sigmoid", 1, 1, 0, 0, b_sigmoid},
    {"tanh", 1, 1, 0, 0, b_tanh},
    {"gelu", 1, 1, 0, 0, b_gelu},
    {"gelu_tanh", 1, 1, 0, 0, b_gelu_tanh},
    {"silu", 1, 1, 0, 0, b_silu},
    {"softplus", 1, 1, 0, 0, b_softplus},
    {"softplus_b2_t5", 1, 1, 0, 0, b_softplus_b2_t5},
    {"clamp", 1, 1, 0, 0, b_clamp},
    {"eq", 2, 0, 0, 0, b_eq},
    {"lt", 2, 0, 0, 0, b_lt},
    {"gt", 2, 0, 0, 0, b_gt},
    {"where", 3, 1, 0, 0, b_where},
    {"matmul_2d", 2, 1, 0, 0, b_matmul},
    {"matmul_batched", 2, 1, 0, 0, b_matmul},
    {"matmul_bcast", 2, 1, 0, 0, b_matmul},
    {"matmul_1d_2d", 2, 1, 0, 0, b_matmul},
    {"matmul_2d_1d", 2, 1, 0, 0, b_matmul},
    {"matmul_tt", 2, 1, 0, 0, b_matmul_tt},
    {"sum_all", 1, 1, 0, 0, b_sum_all},
    {"sum_1", 1, 1, 0, 0, b_sum_1},
    {"sum_02_keep", 1, 1, 0, 0, b_sum_02_keep},
    {"mean_all", 1, 1, 0, 0, b_mean_all},
    {"mean_02", 1, 1, 0, 0, b_mean_02},
    {"mean_neg1_keep", 1, 1, 0, 0, b_mean_neg1_keep},
    {"amax_all", 1, 1, 0, 0, b_amax_all},
    {"amax_1", 1, 1, 0, 0, b_amax_1},
    {"amax_02_keep", 1, 1, 0, 0, b_amax_02_keep},
    {"amin_0", 1, 1, 0, 0, b_amin_0},
    {"amin_12_keep", 1, 1, 0, 0, b_amin_12_keep},
    {"argmax_1", 1, 0, 0, 0, b_argmax_1},
    {"argmax_neg1_keep", 1, 0, 0, 0, b_argmax_neg1_keep},
    {"reshape", 1, 1, 0, 0, b_reshape},
    {"permute", 1, 1, 0, 0, b_permute},
    {"permute_reshape", 1, 1, 0, 0, b_permute_reshape},
    {"slice_step", 1, 1, 0, 0, b_slice_step},
    {"slice_neg_2axes", 1, 1, 0, 0, b_slice_neg_2axes},
    {"concat3", 3, 1, 0, 0, b_concat3},
    {"pad", 1, 1, 0, 0, b_pad},
    {"softmax_last", 1, 1, 0, 0, b_softmax_last},
    {"softmax_0", 1, 1, 0, 0, b_softmax_0},
    {"log_softmax_last", 1, 1, 0, 0, b_log_softmax_last},
    {"log_softmax_0", 1, 1, 0, 0, b_log_softmax_0},
    {"cross_entropy", 2, 1, 0, 0, b_cross_entropy},
    {"cross_entropy_ls", 2, 1, 0, 0, b_cross_entropy_ls},
    {"nll_loss", 2, 1, 0, 0, b_nll_loss},
    {"mse_loss", 2, 1, 0, 0, b_mse_loss},
    {"bce_logits", 2, 1, 0, 0, b_bce_logits},
    /* the weights and biases x1..x4 are parameters */
    {"mlp", 6, 1, 0x1eu, 0, b_mlp},
};

#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static const parity_suite suite = {
    .label = "parity",
    .name_width = 18,
    .generator = "tests/gen_fixtures.py",
    .table_file = "test_parity.c",
    .manifest_state_mask = false,
    .cases = cases,
    .n_cases = N_CASES,
};

/* NABLA_FIXTURES, else tests/fixtures (run from the project root). */
static const char *fixtures_dir(void)
{
    const char *d = getenv("NABLA_FIXTURES");
    return (d && *d) ? d : "tests/fixtures";
}

START_TEST(test_case)
{
    char err[2048];
    const parity_case *c = &cases[_i];
    ck_assert_msg(c->n_inputs <= PARITY_MAX_IN, "%s: too many inputs", c->name);
    int rc = parity_run_case(&suite, fixtures_dir(), c, err, sizeof err);
    ck_assert_msg(rc == 0, "parity case %s: %s", c->name, err);
}
END_TEST

/* The generator's MANIFEST and this table must list the same cases, with
 * the same input counts and gradient flags, so that no fixture goes untested
 * and no case runs against fixtures of another shape. */
START_TEST(test_manifest_matches_table)
{
    char err[2048];
    int rc = parity_check_manifest(&suite, fixtures_dir(), err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
}
END_TEST

static Suite *parity_suite_new(void)
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
    return nb_run_suite(parity_suite_new());
}
