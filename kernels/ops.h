/* The op list and each op's parameter struct.
 *
 * This is the contract between the graph (which builds nodes and infers their
 * shapes) and the backends (which run them). Kernels know nothing of graphs:
 * a kernel receives its input tensors, a contiguous output tensor already of
 * the right shape and dtype, and a pointer to the op's parameter struct.
 *
 * Broadcasting: binary ops and WHERE receive inputs in their own shapes; the
 * output has the NumPy-broadcast shape, and the kernel broadcasts.
 */
#ifndef NB_OPS_H
#define NB_OPS_H

#include <stdint.h>

#include "tensor/shape.h"

/* X(ENUM, "name", kind) — kind groups ops that share a kernel family. */
#define NB_OP_LIST(X)                                                            \
    /* leaves: no kernel, the value comes from a feed or from the graph */      \
    X(INPUT, "input", LEAF)                                                      \
    X(PARAM, "param", LEAF)                                                      \
    X(CONST, "const", LEAF)                                                      \
    X(STATE, "state", LEAF) /* non-trainable stored tensor (running statistics) */ \
    /* unary elementwise, float (NEG/ABS/SIGN also integers); params: nb_scalar_params */ \
    X(NEG, "neg", UNARY)                                                         \
    X(ABS, "abs", UNARY)                                                         \
    X(SIGN, "sign", UNARY)                                                       \
    X(EXP, "exp", UNARY)                                                         \
    X(LOG, "log", UNARY)                                                         \
    X(SQRT, "sqrt", UNARY)                                                       \
    X(RSQRT, "rsqrt", UNARY)                                                     \
    X(SQUARE, "square", UNARY)                                                   \
    X(RECIPROCAL, "reciprocal", UNARY)                                           \
    X(ERF, "erf", UNARY)                                                         \
    X(RELU, "relu", UNARY)                                                       \
    X(LEAKY_RELU, "leaky_relu", UNARY) /* a = negative slope */                  \
    X(ELU, "elu", UNARY)               /* a = alpha */                           \
    X(SIGMOID, "sigmoid", UNARY)                                                 \
    X(TANH, "tanh", UNARY)                                                       \
    X(GELU, "gelu", UNARY)           /* x * Phi(x), erf form */                 \
    X(GELU_TANH, "gelu_tanh", UNARY) /* tanh approximation */                   \
    X(SILU, "silu", UNARY)                                                       \
    X(SOFTPLUS, "softplus", UNARY) /* a = beta, b = threshold (PyTorch) */       \
    X(CLIP, "clip", UNARY)         /* a = min, b = max */                        \
    X(CAST, "cast", CAST)          /* to the output tensor's dtype */            \
    /* binary elementwise with broadcasting; no params */                       \
    X(ADD, "add", BINARY)                                                        \
    X(SUB, "sub", BINARY)                                                        \
    X(MUL, "mul", BINARY)                                                        \
    X(DIV, "div", BINARY)                                                        \
    X(POW, "pow", BINARY)                                                        \
    X(MAXIMUM, "maximum", BINARY)                                                \
    X(MINIMUM, "minimum", BINARY)                                                \
    /* comparisons: same-dtype inputs, bool output */                           \
    X(EQ, "eq", BINARY)                                                          \
    X(NE, "ne", BINARY)                                                          \
    X(LT, "lt", BINARY)                                                          \
    X(LE, "le", BINARY)                                                          \
    X(GT, "gt", BINARY)                                                          \
    X(GE, "ge", BINARY)                                                          \
    X(WHERE, "where", WHERE) /* (bool cond, a, b), broadcast */                  \
    /* linear algebra; params: nb_matmul_params */                             \
    X(MATMUL, "matmul", MATMUL)                                                  \
    /* reductions; params: nb_reduce_params */                                  \
    X(SUM, "sum", REDUCE)                                                        \
    X(MEAN, "mean", REDUCE)                                                      \
    X(MAX, "max", REDUCE)                                                        \
    X(MIN, "min", REDUCE)                                                        \
    X(ARGMAX, "argmax", REDUCE) /* exactly one axis; i64 output; first max wins */ \
    /* softmax family; params: nb_axis_params */                                \
    X(SOFTMAX, "softmax", SOFTMAX)                                               \
    X(LOG_SOFTMAX, "log_softmax", SOFTMAX)                                       \
    /* data movement */                                                          \
    X(RESHAPE, "reshape", MOVE)      /* no params; the output shape says it all */ \
    X(PERMUTE, "permute", MOVE)      /* nb_permute_params */                    \
    X(EXPAND, "expand", MOVE)        /* no params; broadcast to the output shape */ \
    X(SLICE, "slice", MOVE)          /* nb_slice_params */                      \
    X(SLICE_GRAD, "slice_grad", MOVE) /* nb_slice_params: zeros, then out[slice] = in */ \
    X(CONCAT, "concat", MOVE)        /* nb_axis_params; n inputs */             \
    X(PAD, "pad", MOVE)              /* nb_pad_params */                        \
    X(ONE_HOT, "one_hot", MOVE)      /* int labels -> float; nb_one_hot_params */ \
    /* convolution, NCHW; nb_conv_params (kernels/conv_params.h) */             \
    X(CONV2D, "conv2d", CONV)                     /* (x, w[, bias]) */           \
    X(CONV_TRANSPOSE2D, "conv_transpose2d", CONV) /* (x, w[, bias]) */           \
    X(CONV2D_GRAD_WEIGHT, "conv2d_grad_weight", CONV) /* (x, gy) -> dw */        \
    /* pooling and resampling, NCHW; nb_pool_params (kernels/pool_params.h) */ \
    X(MAX_POOL2D, "max_pool2d", POOL)                                            \
    X(MAX_POOL2D_GRAD, "max_pool2d_grad", POOL)   /* (x, gy) -> dx */            \
    X(AVG_POOL2D, "avg_pool2d", POOL)                                            \
    X(AVG_POOL2D_GRAD, "avg_pool2d_grad", POOL)   /* (gy) -> dx */               \
    X(UPSAMPLE_NEAREST2D, "upsample_nearest2d", POOL)                            \
    X(UPSAMPLE_NEAREST2D_GRAD, "upsample_nearest2d_grad", POOL)                  \
    X(MAX_POOL2D_INDEX, "max_pool2d_index", POOL) /* (x) -> i64; nb_pool_index_params */ \
    X(MAX_UNPOOL, "max_unpool", POOL)             /* (x, i64 indices); no params */ \
    X(ROI_ALIGN, "roi_align", POOL)               /* (x, rois, batch); nb_roi_align_params */ \
    /* normalisation; nb_norm_params (kernels/norm_params.h) */                 \
    X(BATCH_NORM, "batch_norm", NORM)                                            \
    X(BATCH_NORM_GRAD, "batch_norm_grad", NORM)                                  \
    X(BATCH_NORM_GRAD_AFFINE, "batch_norm_grad_affine", NORM)                    \
    X(LAYER_NORM, "layer_norm", NORM)                                            \
    X(LAYER_NORM_GRAD, "layer_norm_grad", NORM)                                  \
    X(LAYER_NORM_GRAD_AFFINE, "layer_norm_grad_affine", NORM)                    \
    X(GROUP_NORM, "group_norm", NORM)                                            \
    X(GROUP_NORM_GRAD, "group_norm_grad", NORM)                                  \
    X(GROUP_NORM_GRAD_AFFINE, "group_norm_grad_affine", NORM)                    \
    X(RMS_NORM, "rms_norm", NORM)                                                \
    X(RMS_NORM_GRAD, "rms_norm_grad", NORM)                                      \
    X(RMS_NORM_GRAD_AFFINE, "rms_norm_grad_affine", NORM)                        \
    /* indexing and randomness; kernels/gather_params.h */                      \
    X(GATHER, "gather", GATHER)           /* (x, int indices); nb_gather_params */ \
    X(GATHER_GRAD, "gather_grad", GATHER) /* (gy, indices) -> scatter-add */      \
    X(DROPOUT, "dropout", DROPOUT)        /* nb_dropout_params */                 \
    /* linear algebra beyond matmul (kernels/linalg.c) */                       \
    X(DET, "det", LINALG)                 /* (..., n, n) -> (...); no params */    \
    /* text (kernels/tfidf.c) */                                                \
    X(TFIDF, "tfidf", TEXT)               /* (int tokens); kernels/text_params.h */ \
    /* fusions made by compile, never graph nodes (graph/fuse.c) */            \
    X(CONV_BLOCK, "conv_block", FUSED)    /* nb_conv_block_params (kernels/conv_params.h) */ \
    X(CONV_ADD, "conv2d_add", FUSED)      /* (x, w[, bias], r); nb_conv_params */

typedef enum nb_op {
#define NB_X(e, name, kind) NB_OP_##e,
    NB_OP_LIST(NB_X)
#undef NB_X
    NB_OP_COUNT
} nb_op;

/* Parameters of unary ops that take scalars (see NB_OP_LIST for meaning). */
typedef struct nb_scalar_params {
    double a, b;
} nb_scalar_params;

/* C = op(A) @ op(B), op = transpose of the last two dims when the flag is set.
 * A is (..., M, K) (or (..., K, M) when trans_a), B is (..., K, N) (or (..., N, K));
 * leading batch dims broadcast; both inputs have ndim >= 2. */
typedef struct nb_matmul_params {
    int trans_a, trans_b;
} nb_matmul_params;

/* Reduce over the dims whose bit is set in `axes` (bit i = input dim i).
 * keepdims: the output keeps reduced dims with size 1; otherwise they are
 * dropped. MEAN divides by the number of reduced elements. */
typedef struct nb_reduce_params {
    uint32_t axes;
    int keepdims;
} nb_reduce_params;

typedef struct nb_axis_params {
    int axis; /* already normalised to [0, ndim) */
} nb_axis_params;

/* out dim i = in dim perm[i] */
typedef struct nb_permute_params {
    int perm[NB_MAX_DIMS];
} nb_permute_params;

/* SLICE: out[i0, i1, ...] = in[start[0] + i0*step[0], start[1] + i1*step[1], ...];
 * the output shape gives the count per dim; steps >= 1; starts in range.
 * SLICE_GRAD is its adjoint: out has the shape of the sliced-from tensor
 * (in_shape), zero except at the sliced positions, which take `in`. */
typedef struct nb_slice_params {
    int64_t start[NB_MAX_DIMS];
    int64_t step[NB_MAX_DIMS];
    int64_t in_shape[NB_MAX_DIMS]; /* SLICE_GRAD only: shape of the original tensor */
} nb_slice_params;

/* Constant padding: out dim i = before[i] + in dim i + after[i] (both >= 0). */
typedef struct nb_pad_params {
    int64_t before[NB_MAX_DIMS];
    int64_t after[NB_MAX_DIMS];
    double value;
} nb_pad_params;

/* out = one_hot(labels) along a new last axis of size depth; a label outside
 * [0, depth) makes the kernel fail with NB_ERR_ARG naming the label. */
typedef struct nb_one_hot_params {
    int64_t depth;
} nb_one_hot_params;

/* The parameter structs of the neural-network families, one header each. */
#include "kernels/conv_params.h"
#include "kernels/gather_params.h"
#include "kernels/norm_params.h"
#include "kernels/pool_params.h"

/* "add", "matmul", ... ; "?" for an out-of-range op. */
const char *nb_op_name(nb_op op);

#endif
