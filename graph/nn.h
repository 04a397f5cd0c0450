/* Builders of the neural-network ops: convolution, pooling, normalisation,
 * dropout, embedding/gather and attention. Layout is NCHW (NCL for 1-D), as
 * in PyTorch; semantics follow torch.nn.functional. Errors are sticky, like
 * every builder (graph.h). */
#ifndef NB_NN_H
#define NB_NN_H

#include <stdbool.h>
#include <stdint.h>

#include "graph/graph.h"

/* A non-trainable stored tensor (running statistics), zero-filled; named in
 * the current scope like a parameter, but not listed by nb_graph_params. */
nb_node *nb_state(nb_graph *g, const char *name, nb_dtype dt, int ndim, const int64_t *shape);
/* STATE nodes in creation order; returns the count (fills at most max). */
int nb_graph_states(const nb_graph *g, nb_node **out, int max);

/* Convolution arguments. Zero stride, dilation or groups mean 1. padding is
 * {top, bottom, left, right}; conv1d reads index 0 of stride/dilation and
 * padding[0], padding[1]. NULL args: all defaults.
 *
 * conv2d and conv1d can clamp their output (bias added) to [clamp_min,
 * clamp_max] in the same pass: ReLU is {true, 0, INFINITY}, ReLU6 {true, 0,
 * 6}. The gradient passes where the output lies strictly inside the range,
 * as for torch's relu and hardtanh. */
typedef struct nb_conv_args {
    int64_t stride[2];
    int64_t padding[4];
    int64_t dilation[2];
    int64_t output_padding[2]; /* conv_transpose2d */
    int64_t groups;
    bool clamp;                  /* conv2d, conv1d */
    float clamp_min, clamp_max;  /* clamp_min <= clamp_max, not NaN */
} nb_conv_args;

/* x (N, C_in, H, W), w (C_out, C_in/groups, kh, kw), bias (C_out) or NULL. */
nb_node *nb_conv2d(nb_graph *g, nb_node *x, nb_node *w, nb_node *bias, const nb_conv_args *a);
/* x (N, C_in, L), w (C_out, C_in/groups, k). */
nb_node *nb_conv1d(nb_graph *g, nb_node *x, nb_node *w, nb_node *bias, const nb_conv_args *a);
/* x (N, C_in, H, W), w (C_in, C_out/groups, kh, kw), bias (C_out) or NULL. */
nb_node *nb_conv_transpose2d(nb_graph *g, nb_node *x, nb_node *w, nb_node *bias,
                             const nb_conv_args *a);

/* Pooling arguments. Zero stride means stride = kernel; padding is per dim
 * (both sides), at most half the kernel, as PyTorch requires. */
typedef struct nb_pool_args {
    int64_t kernel[2];
    int64_t stride[2];
    int64_t padding[2];
    bool ceil_mode;
    bool count_include_pad; /* avg_pool2d; PyTorch's default is true */
} nb_pool_args;

nb_node *nb_max_pool2d(nb_graph *g, nb_node *x, const nb_pool_args *a);
nb_node *nb_avg_pool2d(nb_graph *g, nb_node *x, const nb_pool_args *a);
nb_node *nb_global_avg_pool2d(nb_graph *g, nb_node *x);  /* (N, C, 1, 1) */
nb_node *nb_adaptive_avg_pool2d(nb_graph *g, nb_node *x, int64_t out_h, int64_t out_w);
nb_node *nb_upsample_nearest2d(nb_graph *g, nb_node *x, int64_t scale_h, int64_t scale_w);

/* gamma, beta (C) may be NULL (no affine); running_mean/var (C) are STATE
 * nodes updated in place by each training run. */
nb_node *nb_batch_norm(nb_graph *g, nb_node *x, nb_node *gamma, nb_node *beta,
                       nb_node *running_mean, nb_node *running_var, bool training,
                       double momentum, double eps);
/* Normalise over the last naxes dims; gamma/beta of those dims' shape, or NULL. */
nb_node *nb_layer_norm(nb_graph *g, nb_node *x, int naxes, nb_node *gamma, nb_node *beta,
                       double eps);
nb_node *nb_group_norm(nb_graph *g, nb_node *x, int64_t groups, nb_node *gamma, nb_node *beta,
                       double eps);
nb_node *nb_rms_norm(nb_graph *g, nb_node *x, int naxes, nb_node *gamma, double eps);

/* The seed dropout nodes draw from (default 0); set it before building. */
void nb_graph_set_seed(nb_graph *g, uint64_t seed);
/* The seed set by nb_graph_set_seed (0 when never set). */
uint64_t nb_graph_seed(const nb_graph *g);
/* training false: x itself. */
nb_node *nb_dropout(nb_graph *g, nb_node *x, double p, bool training);

/* NumPy take: x.shape[:axis] + indices.shape + x.shape[axis+1:]. */
nb_node *nb_gather(nb_graph *g, nb_node *x, int axis, nb_node *indices);
/* indices 1-D */
nb_node *nb_index_select(nb_graph *g, nb_node *x, int axis, nb_node *indices);
/* weight (num, dim), indices any shape -> indices.shape + (dim) */
nb_node *nb_embedding(nb_graph *g, nb_node *weight, nb_node *indices);

/* softmax(q k^T / sqrt(d) [+ mask]) v for q (..., Lq, d), k (..., Lk, d),
 * v (..., Lk, dv). mask: NULL, a bool mask (true = keep) or an additive float
 * mask broadcastable to (..., Lq, Lk); causal masks j > i. */
nb_node *nb_scaled_dot_product_attention(nb_graph *g, nb_node *q, nb_node *k, nb_node *v,
                                         nb_node *mask, bool causal);

#endif
