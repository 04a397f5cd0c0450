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

/* ONNX MaxPool's Indices for x (N, C, H, W) f32/f64: i64 (N, C, out[0],
 * out[1]), the flat index in x of each window's first maximum, row-major
 * (h*W + w in the plane) or column_major (w*H + h, ONNX storage_order 1).
 * Window o of dim d reads o*stride - pad + t*dilation (t < kernel) where in
 * the image; pad is the leading padding and out the output size, both as
 * ONNX computed them (any trailing padding, ceil mode, auto_pad). */
typedef struct nb_pool_index_args {
    int64_t kernel[2], stride[2], pad[2], dilation[2], out[2];
    bool column_major;
} nb_pool_index_args;
nb_node *nb_max_pool2d_indices(nb_graph *g, nb_node *x, const nb_pool_index_args *a);
/* ONNX MaxUnpool: zeros of (ndim, shape) and x's dtype with y.flat[idx[i]] =
 * x[i]; idx i64 with x's element count; an index outside y fails the run. */
nb_node *nb_max_unpool(nb_graph *g, nb_node *x, nb_node *idx, int ndim, const int64_t *shape);
/* ONNX RoiAlign: x (N, C, H, W), rois (R, 4) as (x1, y1, x2, y2) of x's
 * dtype, batch i64 (R) -> (R, C, out_h, out_w); see kernels/pool_params.h. */
typedef struct nb_roi_align_args {
    int64_t out_h, out_w, sampling_ratio; /* sampling_ratio 0: adaptive */
    double spatial_scale;
    bool max_mode;   /* else average */
    bool half_pixel; /* else output_half_pixel (opset 10's only mode) */
} nb_roi_align_args;
nb_node *nb_roi_align(nb_graph *g, nb_node *x, nb_node *rois, nb_node *batch,
                      const nb_roi_align_args *a);

/* Determinants of x (..., n, n) f32/f64 -> (...). */
nb_node *nb_det(nb_graph *g, nb_node *x);

/* ONNX TfIdfVectorizer over integer tokens x (C) or (B, C), i32/i64 -> f32
 * (out) or (B, out), out = 1 + the largest of ngram_indexes. The pool holds
 * the n-grams of length 1 from pool[ngram_counts[0]], of length 2 from
 * pool[ngram_counts[1]] ... (n_counts lengths); n-gram j of the pool (in
 * that order) counts into column ngram_indexes[j]. Only lengths min_gram ..
 * max_gram are counted, with skips of up to max_skip tokens between the
 * items of an n-gram (unigrams once). weights: NULL, or at least one per
 * column (weights[k] weighs column k). */
typedef struct nb_tfidf_args {
    int64_t min_gram, max_gram, max_skip;
    int mode; /* 0 TF (counts), 1 IDF (weight where count > 0), 2 TFIDF (weight * count) */
    const int64_t *pool;
    int64_t pool_len;
    const int64_t *ngram_counts;
    int n_counts;
    const int64_t *ngram_indexes;
    int64_t n_indexes;
    const float *weights;
    int64_t n_weights;
} nb_tfidf_args;
nb_node *nb_tfidf(nb_graph *g, nb_node *x, const nb_tfidf_args *a);

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
