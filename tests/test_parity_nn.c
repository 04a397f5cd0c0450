/* Forward and backward parity with PyTorch for the neural-network ops
 * (graph/nn.h): convolution, pooling, normalisation, embedding/gather,
 * attention, a small CNN and an LSTM cell built from primitives.
 *
 * tests/gen_fixtures_nn.py writes the fixtures and MANIFEST.txt; the rules for
 * running and comparing a case are in parity_common.h. Batch norm's running
 * statistics are STATE inputs: their values after the run are compared with
 * NAME.sK.npy. The fixture directory is NABLA_FIXTURES_NN when set, else the
 * sibling "fixtures_nn" of NABLA_FIXTURES (tests/meson.build points that at
 * tests/fixtures).
 *
 * Float inputs are INPUTs except the CNN's and the LSTM cell's weights
 * (PARAMs) and the running statistics (STATEs); integer indices and bool
 * masks are INPUTs.
 *
 * Dropout has no case: its mask comes from nabla's Philox stream, which
 * cannot match torch's RNG (tests/test_gather.c checks it).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"
#include "parity_common.h"

#define EPS 1e-5
#define MOMENTUM 0.1

/* ---- builders: one per case, mirroring tests/gen_fixtures_nn.py ---------- */

static nb_conv_args conv_args(int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                              int64_t pr, int64_t dil, int64_t groups)
{
    nb_conv_args a = {{sh, sw}, {pt, pb, pl, pr}, {dil, dil}, {0, 0}, groups};
    return a;
}

static nb_node *conv2d(nb_graph *g, nb_node **x, int has_bias, nb_conv_args a)
{
    return nb_conv2d(g, x[0], x[1], has_bias ? x[2] : NULL, &a);
}

static nb_node *b_conv2d_s2(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 1, conv_args(2, 2, 0, 0, 0, 0, 1, 1));
}
static nb_node *b_conv2d_p1(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 1, conv_args(1, 1, 1, 1, 1, 1, 1, 1));
}
/* torch: F.pad(x, (left 2, right 1, top 1, bottom 0)) then conv2d */
static nb_node *b_conv2d_asym_pad(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 1, conv_args(1, 1, 1, 0, 2, 1, 1, 1));
}
static nb_node *b_conv2d_dil2(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 1, conv_args(1, 1, 1, 1, 1, 1, 2, 1));
}
static nb_node *b_conv2d_g2(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 1, conv_args(1, 1, 1, 1, 1, 1, 1, 2));
}
static nb_node *b_conv2d_depthwise(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 1, conv_args(1, 1, 1, 1, 1, 1, 1, 3));
}
static nb_node *b_conv2d_depthwise_m2(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 0, conv_args(2, 2, 1, 1, 1, 1, 1, 3));
}
static nb_node *b_conv2d_nobias(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 0, conv_args(1, 1, 1, 1, 1, 1, 1, 1));
}
static nb_node *b_conv2d_1x1(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 1, conv_args(1, 1, 0, 0, 0, 0, 1, 1));
}
static nb_node *b_conv2d_rect(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 1, conv_args(1, 2, 1, 1, 0, 0, 1, 1));
}
static nb_node *b_conv2d_1x1_image(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 1, conv_args(1, 1, 1, 1, 1, 1, 1, 1));
}
/* torch: F.pad(x, (left 1, right 0, top 0, bottom 2)), stride (2, 1),
 * dilation (2, 1), groups 2 */
static nb_node *b_conv2d_combo(nb_graph *g, nb_node **x)
{
    nb_conv_args a = {{2, 1}, {0, 2, 1, 0}, {2, 1}, {0, 0}, 2};
    return conv2d(g, x, 1, a);
}
static nb_node *b_conv2d_wide(nb_graph *g, nb_node **x)
{
    return conv2d(g, x, 1, conv_args(1, 1, 1, 1, 1, 1, 1, 1));
}

/* conv1d reads stride[0], dilation[0] and padding[0] (left), padding[1] (right) */
static nb_node *b_conv1d_s2_p1(nb_graph *g, nb_node **x)
{
    nb_conv_args a = conv_args(2, 0, 1, 1, 0, 0, 1, 1);
    return nb_conv1d(g, x[0], x[1], x[2], &a);
}
static nb_node *b_conv1d_dil2_g2(nb_graph *g, nb_node **x)
{
    nb_conv_args a = conv_args(1, 0, 2, 2, 0, 0, 2, 2);
    return nb_conv1d(g, x[0], x[1], NULL, &a);
}
static nb_node *b_conv1d_asym_pad(nb_graph *g, nb_node **x)
{
    nb_conv_args a = conv_args(1, 0, 2, 0, 0, 0, 1, 1);
    return nb_conv1d(g, x[0], x[1], x[2], &a);
}

static nb_node *b_conv_transpose2d_s2(nb_graph *g, nb_node **x)
{
    nb_conv_args a = conv_args(2, 2, 1, 1, 1, 1, 1, 2);
    a.output_padding[0] = a.output_padding[1] = 1;
    return nb_conv_transpose2d(g, x[0], x[1], x[2], &a);
}
static nb_node *b_conv_transpose2d_plain(nb_graph *g, nb_node **x)
{
    return nb_conv_transpose2d(g, x[0], x[1], NULL, NULL);
}
static nb_node *b_conv_transpose2d_dil2(nb_graph *g, nb_node **x)
{
    nb_conv_args a = conv_args(2, 2, 1, 1, 1, 1, 2, 1);
    a.output_padding[0] = a.output_padding[1] = 1;
    return nb_conv_transpose2d(g, x[0], x[1], NULL, &a);
}
static nb_node *b_conv_transpose2d_s2_k2(nb_graph *g, nb_node **x)
{
    nb_conv_args a = conv_args(2, 2, 0, 0, 0, 0, 1, 1);
    return nb_conv_transpose2d(g, x[0], x[1], x[2], &a);
}

/* count_include_pad is set true as PyTorch's default wherever torch used it */
static nb_pool_args pool_args(int64_t k, int64_t s, int64_t p, bool ceil_mode, bool incl)
{
    nb_pool_args a = {{k, k}, {s, s}, {p, p}, ceil_mode, incl};
    return a;
}

static nb_node *b_max_pool2d_k2(nb_graph *g, nb_node **x)
{
    nb_pool_args a = pool_args(2, 0, 0, false, true);
    return nb_max_pool2d(g, x[0], &a);
}
static nb_node *b_max_pool2d_k3s2p1(nb_graph *g, nb_node **x)
{
    nb_pool_args a = pool_args(3, 2, 1, false, true);
    return nb_max_pool2d(g, x[0], &a);
}
static nb_node *b_max_pool2d_ceil(nb_graph *g, nb_node **x)
{
    nb_pool_args a = pool_args(2, 2, 0, true, true);
    return nb_max_pool2d(g, x[0], &a);
}
static nb_node *b_max_pool2d_k3s2p1_ceil(nb_graph *g, nb_node **x)
{
    nb_pool_args a = pool_args(3, 2, 1, true, true);
    return nb_max_pool2d(g, x[0], &a);
}
static nb_node *b_max_pool2d_rect(nb_graph *g, nb_node **x)
{
    nb_pool_args a = {{2, 3}, {1, 2}, {1, 1}, false, true};
    return nb_max_pool2d(g, x[0], &a);
}
static nb_node *b_avg_pool2d_k2(nb_graph *g, nb_node **x)
{
    nb_pool_args a = pool_args(2, 0, 0, false, true);
    return nb_avg_pool2d(g, x[0], &a);
}
static nb_node *b_avg_pool2d_pad_incl(nb_graph *g, nb_node **x)
{
    nb_pool_args a = pool_args(3, 2, 1, false, true);
    return nb_avg_pool2d(g, x[0], &a);
}
static nb_node *b_avg_pool2d_pad_excl(nb_graph *g, nb_node **x)
{
    nb_pool_args a = pool_args(3, 2, 1, false, false);
    return nb_avg_pool2d(g, x[0], &a);
}
static nb_node *b_avg_pool2d_ceil(nb_graph *g, nb_node **x)
{
    nb_pool_args a = pool_args(2, 2, 0, true, true);
    return nb_avg_pool2d(g, x[0], &a);
}
static nb_node *b_avg_pool2d_ceil_pad_incl(nb_graph *g, nb_node **x)
{
    nb_pool_args a = pool_args(3, 2, 1, true, true);
    return nb_avg_pool2d(g, x[0], &a);
}
static nb_node *b_avg_pool2d_ceil_pad_excl(nb_graph *g, nb_node **x)
{
    nb_pool_args a = pool_args(3, 2, 1, true, false);
    return nb_avg_pool2d(g, x[0], &a);
}
static nb_node *b_avg_pool2d_rect_ceil_excl(nb_graph *g, nb_node **x)
{
    nb_pool_args a = {{3, 2}, {2, 2}, {1, 1}, true, false};
    return nb_avg_pool2d(g, x[0], &a);
}
static nb_node *b_adaptive_avg_pool2d_1x1(nb_graph *g, nb_node **x)
{
    return nb_adaptive_avg_pool2d(g, x[0], 1, 1);
}
static nb_node *b_global_avg_pool2d(nb_graph *g, nb_node **x)
{
    return nb_global_avg_pool2d(g, x[0]);
}
static nb_node *b_upsample_nearest_x2(nb_graph *g, nb_node **x)
{
    return nb_upsample_nearest2d(g, x[0], 2, 2);
}
static nb_node *b_upsample_nearest_2x3(nb_graph *g, nb_node **x)
{
    return nb_upsample_nearest2d(g, x[0], 2, 3);
}

/* x, gamma, beta, running_mean (STATE), running_var (STATE) */
static nb_node *b_batch_norm_train(nb_graph *g, nb_node **x)
{
    return nb_batch_norm(g, x[0], x[1], x[2], x[3], x[4], true, MOMENTUM, EPS);
}
/* x, running_mean (STATE), running_var (STATE) */
static nb_node *b_batch_norm_train_noaffine(nb_graph *g, nb_node **x)
{
    return nb_batch_norm(g, x[0], NULL, NULL, x[1], x[2], true, MOMENTUM, EPS);
}
static nb_node *b_batch_norm_eval(nb_graph *g, nb_node **x)
{
    return nb_batch_norm(g, x[0], x[1], x[2], x[3], x[4], false, MOMENTUM, EPS);
}
static nb_node *b_layer_norm_1(nb_graph *g, nb_node **x)
{
    return nb_layer_norm(g, x[0], 1, x[1], x[2], EPS);
}
static nb_node *b_layer_norm_1_noaffine(nb_graph *g, nb_node **x)
{
    return nb_layer_norm(g, x[0], 1, NULL, NULL, EPS);
}
static nb_node *b_layer_norm_2(nb_graph *g, nb_node **x)
{
    return nb_layer_norm(g, x[0], 2, x[1], x[2], EPS);
}
static nb_node *b_layer_norm_2_noaffine(nb_graph *g, nb_node **x)
{
    return nb_layer_norm(g, x[0], 2, NULL, NULL, EPS);
}
static nb_node *b_group_norm_g2(nb_graph *g, nb_node **x)
{
    return nb_group_norm(g, x[0], 2, x[1], x[2], EPS);
}
static nb_node *b_group_norm_g2_noaffine(nb_graph *g, nb_node **x)
{
    return nb_group_norm(g, x[0], 2, NULL, NULL, EPS);
}
static nb_node *b_rms_norm_1(nb_graph *g, nb_node **x)
{
    return nb_rms_norm(g, x[0], 1, x[1], EPS);
}
static nb_node *b_rms_norm_2_noaffine(nb_graph *g, nb_node **x)
{
    return nb_rms_norm(g, x[0], 2, NULL, EPS);
}

static nb_node *b_embedding(nb_graph *g, nb_node **x) { return nb_embedding(g, x[0], x[1]); }
static nb_node *b_index_select_1(nb_graph *g, nb_node **x)
{
    return nb_index_select(g, x[0], 1, x[1]);
}
static nb_node *b_gather_1(nb_graph *g, nb_node **x) { return nb_gather(g, x[0], 1, x[1]); }
static nb_node *b_gather_0(nb_graph *g, nb_node **x) { return nb_gather(g, x[0], 0, x[1]); }

static nb_node *b_sdpa(nb_graph *g, nb_node **x)
{
    return nb_scaled_dot_product_attention(g, x[0], x[1], x[2], NULL, false);
}
static nb_node *b_sdpa_causal(nb_graph *g, nb_node **x)
{
    return nb_scaled_dot_product_attention(g, x[0], x[1], x[2], NULL, true);
}
static nb_node *b_sdpa_mask(nb_graph *g, nb_node **x)
{
    return nb_scaled_dot_product_attention(g, x[0], x[1], x[2], x[3], false);
}

/* x(4,1,8,8) -> conv 3x3 (1->4) + bias -> relu -> max_pool 2 -> flatten
 * -> @ W (36, 3) + b -> cross_entropy(labels) */
static nb_node *b_cnn(nb_graph *g, nb_node **x)
{
    nb_node *h = nb_relu(g, nb_conv2d(g, x[0], x[1], x[2], NULL));
    nb_pool_args a = pool_args(2, 0, 0, false, true);
    h = nb_flatten(g, nb_max_pool2d(g, h, &a), 1);
    nb_node *logits = nb_add(g, nb_matmul(g, h, x[3]), x[4]);
    return nb_cross_entropy(g, logits, x[5], 0.0);
}

/* nn.LSTMCell from primitives: gates = x W_ih^T + b_ih + h W_hh^T + b_hh,
 * split into i, f, g, o; c' = s(f) c + s(i) tanh(g); h' = s(o) tanh(c');
 * y = concat(h', c') on dim 1. Inputs x, h, c, W_ih, W_hh, b_ih, b_hh. */
static nb_node *b_lstm_cell(nb_graph *g, nb_node **x)
{
    nb_node *gates = nb_add(g, nb_add(g, nb_matmul_t(g, x[0], x[3], false, true), x[5]),
                            nb_add(g, nb_matmul_t(g, x[1], x[4], false, true), x[6]));
    int64_t hd = nb_node_shape(x[1])[1];
    int64_t sizes[4] = {hd, hd, hd, hd};
    nb_node *part[4];
    if (nb_split(g, gates, 1, 4, sizes, part) != 0)
        return gates; /* the graph has failed; run_case reports it */
    nb_node *c2 = nb_add(g, nb_mul(g, nb_sigmoid(g, part[1]), x[2]),
                         nb_mul(g, nb_sigmoid(g, part[0]), nb_tanh(g, part[2])));
    nb_node *h2 = nb_mul(g, nb_sigmoid(g, part[3]), nb_tanh(g, c2));
    nb_node *both[2] = {h2, c2};
    return nb_concat(g, 2, both, 1);
}

static const parity_case cases[] = {
    {"conv2d_s2", 3, 1, 0, 0, b_conv2d_s2},
    {"conv2d_p1", 3, 1, 0, 0, b_conv2d_p1},
    {"conv2d_asym_pad", 3, 1, 0, 0, b_conv2d_asym_pad},
    {"conv2d_dil2", 3, 1, 0, 0, b_conv2d_dil2},
    {"conv2d_g2", 3, 1, 0, 0, b_conv2d_g2},
    {"conv2d_depthwise", 3, 1, 0, 0, b_conv2d_depthwise},
    {"conv2d_depthwise_m2", 2, 1, 0, 0, b_conv2d_depthwise_m2},
    {"conv2d_nobias", 2, 1, 0, 0, b_conv2d_nobias},
    {"conv2d_1x1", 3, 1, 0, 0, b_conv2d_1x1},
    {"conv2d_rect", 3, 1, 0, 0, b_conv2d_rect},
    {"conv2d_1x1_image", 3, 1, 0, 0, b_conv2d_1x1_image},
    {"conv2d_combo", 3, 1, 0, 0, b_conv2d_combo},
    {"conv2d_wide", 3, 1, 0, 0, b_conv2d_wide},
    {"conv1d_s2_p1", 3, 1, 0, 0, b_conv1d_s2_p1},
    {"conv1d_dil2_g2", 2, 1, 0, 0, b_conv1d_dil2_g2},
    {"conv1d_asym_pad", 3, 1, 0, 0, b_conv1d_asym_pad},
    {"conv_transpose2d_s2", 3, 1, 0, 0, b_conv_transpose2d_s2},
    {"conv_transpose2d_plain", 2, 1, 0, 0, b_conv_transpose2d_plain},
    {"conv_transpose2d_dil2", 2, 1, 0, 0, b_conv_transpose2d_dil2},
    {"conv_transpose2d_s2_k2", 3, 1, 0, 0, b_conv_transpose2d_s2_k2},
    {"max_pool2d_k2", 1, 1, 0, 0, b_max_pool2d_k2},
    {"max_pool2d_k3s2p1", 1, 1, 0, 0, b_max_pool2d_k3s2p1},
    {"max_pool2d_ceil", 1, 1, 0, 0, b_max_pool2d_ceil},
    {"max_pool2d_k3s2p1_ceil", 1, 1, 0, 0, b_max_pool2d_k3s2p1_ceil},
    {"max_pool2d_rect", 1, 1, 0, 0, b_max_pool2d_rect},
    {"avg_pool2d_k2", 1, 1, 0, 0, b_avg_pool2d_k2},
    {"avg_pool2d_pad_incl", 1, 1, 0, 0, b_avg_pool2d_pad_incl},
    {"avg_pool2d_pad_excl", 1, 1, 0, 0, b_avg_pool2d_pad_excl},
    {"avg_pool2d_ceil", 1, 1, 0, 0, b_avg_pool2d_ceil},
    {"avg_pool2d_ceil_pad_incl", 1, 1, 0, 0, b_avg_pool2d_ceil_pad_incl},
    {"avg_pool2d_ceil_pad_excl", 1, 1, 0, 0, b_avg_pool2d_ceil_pad_excl},
    {"avg_pool2d_rect_ceil_excl", 1, 1, 0, 0, b_avg_pool2d_rect_ceil_excl},
    {"adaptive_avg_pool2d_1x1", 1, 1, 0, 0, b_adaptive_avg_pool2d_1x1},
    {"global_avg_pool2d", 1, 1, 0, 0, b_global_avg_pool2d},
    {"upsample_nearest_x2", 1, 1, 0, 0, b_upsample_nearest_x2},
    {"upsample_nearest_2x3", 1, 1, 0, 0, b_upsample_nearest_2x3},
    {"batch_norm_train", 5, 1, 0, 0x18u, b_batch_norm_train},
    {"batch_norm_train_noaffine", 3, 1, 0, 0x06u, b_batch_norm_train_noaffine},
    {"batch_norm_train_2d", 5, 1, 0, 0x18u, b_batch_norm_train},
    {"batch_norm_eval", 5, 1, 0, 0x18u, b_batch_norm_eval},
    {"layer_norm_1", 3, 1, 0, 0, b_layer_norm_1},
    {"layer_norm_1_noaffine", 1, 1, 0, 0, b_layer_norm_1_noaffine},
    {"layer_norm_2", 3, 1, 0, 0, b_layer_norm_2},
    {"layer_norm_2_noaffine", 1, 1, 0, 0, b_layer_norm_2_noaffine},
    {"group_norm_g2", 3, 1, 0, 0, b_group_norm_g2},
    {"group_norm_g2_noaffine", 1, 1, 0, 0, b_group_norm_g2_noaffine},
    {"rms_norm_1", 2, 1, 0, 0, b_rms_norm_1},
    {"rms_norm_2_noaffine", 1, 1, 0, 0, b_rms_norm_2_noaffine},
    {"embedding", 2, 1, 0, 0, b_embedding},
    {"index_select_1", 2, 1, 0, 0, b_index_select_1},
    {"gather_1", 2, 1, 0, 0, b_gather_1},
    {"gather_0", 2, 1, 0, 0, b_gather_0},
    {"sdpa", 3, 1, 0, 0, b_sdpa},
    {"sdpa_causal", 3, 1, 0, 0, b_sdpa_causal},
    {"sdpa_causal_rect", 3, 1, 0, 0, b_sdpa_causal},
    {"sdpa_bool_mask", 4, 1, 0, 0, b_sdpa_mask},
    {"sdpa_float_mask", 4, 1, 0, 0, b_sdpa_mask},
    /* the conv and linear weights and biases x1..x4 are parameters */
    {"cnn", 6, 1, 0x1eu, 0, b_cnn},
    /* W_ih, W_hh, b_ih, b_hh (x3..x6) are parameters */
    {"lstm_cell", 7, 1, 0x78u, 0, b_lstm_cell},
};

#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static const parity_suite suite = {
    .label = "parity_nn",
    .name_width = 26,
    .generator = "tests/gen_fixtures_nn.py",
    .table_file = "test_parity_nn.c",
    .manifest_state_mask = true,
    .cases = cases,
    .n_cases = N_CASES,
};

/* NABLA_FIXTURES_NN, else the sibling fixtures_nn of NABLA_FIXTURES, else
 * tests/fixtures_nn (run from the project root). */
static const char *fixtures_dir(void)
{
    static char dir[1024];
    const char *nn = getenv("NABLA_FIXTURES_NN");
    if (nn && *nn)
        return nn;
    const char *d = getenv("NABLA_FIXTURES");
    if (!d || !*d)
        return "tests/fixtures_nn";
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/')
        n--;
    while (n > 0 && d[n - 1] != '/')
        n--; /* drop the last component ("fixtures") */
    snprintf(dir, sizeof dir, "%.*sfixtures_nn", (int)n, d);
    return dir;
}

START_TEST(test_case)
{
    char err[2048];
    const parity_case *c = &cases[_i];
    ck_assert_msg(c->n_inputs <= PARITY_MAX_IN, "%s: too many inputs", c->name);
    int rc = parity_run_case(&suite, fixtures_dir(), c, err, sizeof err);
    ck_assert_msg(rc == 0, "parity_nn case %s: %s", c->name, err);
}
END_TEST

/* The generator's MANIFEST and this table must list the same cases, with
 * the same input counts, gradient flags and state masks, so that no fixture
 * goes untested and no case runs against fixtures of another shape. */
START_TEST(test_manifest_matches_table)
{
    char err[2048];
    int rc = parity_check_manifest(&suite, fixtures_dir(), err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
}
END_TEST

static Suite *parity_nn_suite(void)
{
    Suite *s = suite_create("parity_nn");
    TCase *tc = tcase_create("torch");
    tcase_add_test(tc, test_manifest_matches_table);
    tcase_add_loop_test(tc, test_case, 0, N_CASES);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return nb_run_suite(parity_nn_suite());
}
