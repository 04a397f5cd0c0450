/* Forward and backward parity with PyTorch for the neural-network ops
 * (graph/nn.h): convolution, pooling, normalisation, embedding/gather,
 * attention, a small CNN and an LSTM cell built from primitives.
 *
 * tests/gen_fixtures_nn.py writes, for every case NAME, the inputs
 * NAME.xK.npy, PyTorch's output NAME.y.npy, a cotangent NAME.gy.npy, the
 * vector-Jacobian products NAME.gxK.npy (one per float input K that is not a
 * state) and, for each STATE input K (batch_norm's running statistics), its
 * value after the op ran, NAME.sK.npy. Each case here rebuilds the same
 * computation with the graph builders, differentiates it with nb_vjp(y, gy),
 * compiles {y, grads...}, runs it once and compares:
 *   - shape and dtype exactly;
 *   - f32 values to |a - b| <= 1e-5 * max(1, max |expected|);
 *   - the STATE nodes' values (nb_node_value) after the run with NAME.sK.
 * A missing fixture is a failure naming the file. The fixture directory is
 * the sibling "fixtures_nn" of NABLA_FIXTURES (tests/meson.build points that
 * at tests/fixtures), or NABLA_FIXTURES_NN when set.
 *
 * Float inputs are INPUT nodes fed through nb_session_feed, except those a
 * case marks as parameters (the CNN's and the LSTM cell's weights), whose
 * values are copied into PARAM nodes, and states, copied into STATE nodes.
 * Integer indices and bool masks are INPUTs.
 *
 * Dropout has no case: its mask comes from nabla's Philox stream, which
 * cannot match torch's RNG (tests/test_gather.c checks it).
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
#define EPS 1e-5
#define MOMENTUM 0.1

typedef nb_node *(*build_fn)(nb_graph *g, nb_node **x);

typedef struct parity_case {
    const char *name;
    int n_inputs;
    int grad;            /* 1: the fixtures hold gy and gxK */
    unsigned param_mask; /* bit K: float input K is a PARAM */
    unsigned state_mask; /* bit K: float input K is a STATE (compared after the run) */
    build_fn build;
} parity_case;

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

/* ---- helpers ---------------------------------------------------------- */

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

/* Load NAME.SUFFIX.npy; on failure write a message naming the file to err. */
static int load_fixture(const char *name, const char *suffix, nb_tensor *out, char *err,
                        size_t errsz)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.%s.npy", fixtures_dir(), name, suffix);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsz, "missing fixture file %s (run tests/gen_fixtures_nn.py)", path);
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

/* Compare got against expected; *err_out gets the largest |a - b|. Returns 0
 * when they agree (see the file comment for the rule). */
static int compare(const char *what, const nb_tensor *got, const nb_tensor *exp, double *err_out,
                   char *err, size_t errsz)
{
    char sg[64], se[64];
    nb_shape_str(got->ndim, got->shape, sg, sizeof sg);
    nb_shape_str(exp->ndim, exp->shape, se, sizeof se);
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
    double scale = 1.0;
    for (int64_t i = 0; i < n; i++) {
        double v = fabs(nb_tensor_get_flat(exp, i));
        if (v > scale)
            scale = v;
    }
    double tol = TOL_REL * scale;

    int64_t worst = -1;
    double max_err = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(nb_tensor_get_flat(got, i) - nb_tensor_get_flat(exp, i));
        if (d != d)
            d = INFINITY; /* NaN counts as the worst error */
        if (worst < 0 || d > max_err) {
            max_err = d;
            worst = i;
        }
    }
    *err_out = max_err;
    if (n > 0 && !(max_err <= tol)) {
        snprintf(err, errsz, "%s %s: max |got - expected| = %.3g > tol %.3g at flat index %lld "
                 "(got %.9g, expected %.9g)", what, se, max_err, tol, (long long)worst,
                 nb_tensor_get_flat(got, worst), nb_tensor_get_flat(exp, worst));
        return -1;
    }
    return 0;
}

/* Copy a fixture into a stored leaf (PARAM or STATE) named x<i>. */
static nb_node *stored_leaf(nb_graph *g, bool state, const char *name, const nb_tensor *x,
                            char *err, size_t errsz)
{
    nb_node *n = state ? nb_state(g, name, x->dtype, x->ndim, x->shape)
                       : nb_param(g, name, x->dtype, x->ndim, x->shape);
    nb_tensor *v = nb_node_value(n);
    if (!v) {
        snprintf(err, errsz, "%s %s has no value tensor (graph: %s)", state ? "state" : "param",
                 name, nb_graph_error(g));
        return NULL;
    }
    if (nb_tensor_copy_into(v, x) != NB_OK) {
        snprintf(err, errsz, "copy into %s: %s", name, nb_last_error());
        return NULL;
    }
    return n;
}

/* ---- one case ---------------------------------------------------------- */

/* Accumulates " what=err" into line. */
static void note(char *line, size_t size, size_t *used, const char *what, double e)
{
    *used += (size_t)snprintf(line + *used, size - *used, " %s=%.2e", what, e);
    if (*used >= size)
        *used = size - 1;
}

/* Build, differentiate, compile, run and compare one case. Returns 0 on
 * success; otherwise err holds the reason. Frees everything either way. */
static int run_case(const parity_case *c, char *err, size_t errsz)
{
    nb_tensor xs[MAX_IN] = {{0}};
    nb_tensor y_exp = {0}, gy = {0};
    nb_tensor gx_exp[MAX_IN] = {{0}}, s_exp[MAX_IN] = {{0}};
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
        if (c->state_mask & (1u << i)) {
            snprintf(suffix, sizeof suffix, "s%d", i);
            if (load_fixture(c->name, suffix, &s_exp[i], err, errsz))
                goto done;
        }
    }
    if (load_fixture(c->name, "y", &y_exp, err, errsz))
        goto done;
    if (c->grad) {
        if (load_fixture(c->name, "gy", &gy, err, errsz))
            goto done;
        for (int i = 0; i < c->n_inputs; i++) {
            if (!nb_dtype_is_float(xs[i].dtype) || (c->state_mask & (1u << i)))
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
        bool is_state = is_float && (c->state_mask & (1u << i));
        if (is_state || (is_float && (c->param_mask & (1u << i)))) {
            nodes[i] = stored_leaf(g, is_state, name, &xs[i], err, errsz);
            if (!nodes[i])
                goto done;
        } else {
            nodes[i] = nb_input(g, name, xs[i].dtype, xs[i].ndim, xs[i].shape);
        }
        if (c->grad && is_float && !is_state) {
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

    /* compile and run once */
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
        worst = e > worst ? e : worst;
        note(line, sizeof line, &used, what, e);
        if (bad)
            goto done;
    }

    /* then the states, as the run left them */
    for (int i = 0; i < c->n_inputs; i++) {
        if (!(c->state_mask & (1u << i)))
            continue;
        char what[16];
        snprintf(what, sizeof what, "s%d", i);
        const nb_tensor *v = nb_node_value(nodes[i]);
        if (!v) {
            snprintf(err, errsz, "state x%d has no value after the run", i);
            goto done;
        }
        double e;
        int bad = compare(what, v, &s_exp[i], &e, err, errsz);
        worst = e > worst ? e : worst;
        note(line, sizeof line, &used, what, e);
        if (bad)
            goto done;
    }
    rc = 0;

done:
    if (rc == 0)
        printf("parity_nn %-26s ok   max_err=%.2e  (%s )\n", c->name, worst, line);
    else
        printf("parity_nn %-26s FAIL %s\n", c->name, err);
    fflush(stdout);

    nb_session_free(s);
    nb_plan_free(plan);
    nb_graph_free(g);
    for (int i = 0; i < MAX_IN; i++) {
        nb_tensor_release(&xs[i]);
        nb_tensor_release(&gx_exp[i]);
        nb_tensor_release(&s_exp[i]);
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
    ck_assert_msg(rc == 0, "parity_nn case %s: %s", c->name, err);
}
END_TEST

/* The generator's MANIFEST and this table must list the same cases, with
 * the same input counts, gradient flags and state masks, so that no fixture
 * goes untested and no case runs against fixtures of another shape. */
START_TEST(test_manifest_matches_table)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/MANIFEST.txt", fixtures_dir());
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "missing fixture file %s (run tests/gen_fixtures_nn.py)", path);

    int seen[N_CASES];
    memset(seen, 0, sizeof seen);
    char buf[1024];
    char problem[512] = "";
    while (fgets(buf, sizeof buf, f)) {
        char name[128], flag[16];
        int n_in;
        unsigned smask;
        if (buf[0] == '#' || buf[0] == '\n')
            continue;
        if (sscanf(buf, "%127s %d %15s %x", name, &n_in, flag, &smask) != 4) {
            snprintf(problem, sizeof problem, "malformed line: %.200s", buf);
            break;
        }
        int found = -1;
        for (int k = 0; k < N_CASES; k++)
            if (strcmp(cases[k].name, name) == 0)
                found = k;
        if (found < 0) {
            snprintf(problem, sizeof problem, "fixture case %s has no entry in test_parity_nn.c",
                     name);
            break;
        }
        if (seen[found]) {
            snprintf(problem, sizeof problem, "case %s listed twice", name);
            break;
        }
        seen[found] = 1;
        int grad = strcmp(flag, "grad") == 0;
        const parity_case *c = &cases[found];
        if (c->n_inputs != n_in || c->grad != grad || c->state_mask != smask) {
            snprintf(problem, sizeof problem,
                     "case %s: manifest says %d inputs %s states 0x%x, table says %d inputs %s "
                     "states 0x%x", name, n_in, flag, smask, c->n_inputs,
                     c->grad ? "grad" : "nograd", c->state_mask);
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
