/* The CPU kernels, callable directly (tests, CUDA-vs-CPU comparisons). Each
 * family takes the kernel call of backend.h; the backend table in
 * cpu_backend.c points every op at its family. */
#ifndef NB_CPU_H
#define NB_CPU_H

#include "kernels/backend.h"

nb_status nb_cpu_unary(const nb_kernel_call *c);   /* UNARY kinds */
nb_status nb_cpu_cast(const nb_kernel_call *c);    /* CAST */
nb_status nb_cpu_binary(const nb_kernel_call *c);  /* BINARY kinds */
nb_status nb_cpu_where(const nb_kernel_call *c);   /* WHERE */
nb_status nb_cpu_matmul(const nb_kernel_call *c);  /* MATMUL */
nb_status nb_cpu_reduce(const nb_kernel_call *c);  /* SUM MEAN MAX MIN ARGMAX */
nb_status nb_cpu_softmax(const nb_kernel_call *c); /* SOFTMAX LOG_SOFTMAX */
nb_status nb_cpu_move(const nb_kernel_call *c);    /* RESHAPE PERMUTE EXPAND SLICE SLICE_GRAD CONCAT PAD ONE_HOT */
nb_status nb_cpu_conv(const nb_kernel_call *c);    /* CONV kinds (kernels/conv.c) */
nb_status nb_cpu_pool(const nb_kernel_call *c);    /* POOL kinds (kernels/pool.c) */
nb_status nb_cpu_norm(const nb_kernel_call *c);    /* NORM kinds (kernels/norm.c) */
nb_status nb_cpu_gather(const nb_kernel_call *c);  /* GATHER kinds (kernels/gather.c) */
nb_status nb_cpu_dropout(const nb_kernel_call *c); /* DROPOUT (kernels/gather.c) */
nb_status nb_cpu_pool_index(const nb_kernel_call *c); /* MAX_POOL2D_INDEX MAX_UNPOOL (kernels/pool_index.c) */
nb_status nb_cpu_roi_align(const nb_kernel_call *c);  /* ROI_ALIGN (kernels/roi_align.c) */
nb_status nb_cpu_linalg(const nb_kernel_call *c);     /* LINALG: DET (kernels/linalg.c) */
nb_status nb_cpu_tfidf(const nb_kernel_call *c);      /* TEXT: TFIDF (kernels/tfidf.c) */
nb_status nb_cpu_conv_block(const nb_kernel_call *c); /* CONV_BLOCK (kernels/conv_block.c) */
/* CONV_ADD runs in nb_cpu_conv; whether it takes the call on a path that
 * adds the residual while the output is in cache (not the depthwise or
 * few-channel kernels). */
bool nb_cpu_conv_add_fusable(const nb_kernel_call *c);

/* Whether CONV_BLOCK takes this call (f32, shapes it covers, a CPU with
 * AVX-512F) and runs it faster than its three convolutions would: asked by
 * compile before it fuses (nb_backend.fusable). Scratch bytes it needs. */
bool nb_cpu_conv_block_fusable(const nb_kernel_call *c);
size_t nb_cpu_conv_block_workspace(const nb_kernel_call *c);

/* Scratch bytes a CONV call needs (im2col and the like), asked at compile time. */
size_t nb_cpu_conv_workspace(const nb_kernel_call *c);
/* The output columns j of [0, OW) whose input column j*s - pad + off lies in
 * [0, W), as [lo, hi) (lo == hi when none): the border split of the conv
 * kernels (im2col, the direct depthwise loops). */
void nb_cpu_valid_range(int64_t OW, int64_t W, int64_t s, int64_t pad, int64_t off, int64_t *lo,
                        int64_t *hi);
/* Scratch bytes of the NORM affine-gradient ops (per-thread partial sums). */
size_t nb_cpu_norm_workspace(const nb_kernel_call *c);

/* Copy any strided view into a contiguous tensor of the same shape and dtype,
 * on the thread pool when large. */
nb_status nb_cpu_copy_strided(const nb_tensor *src, nb_tensor *dst);

/* Point *use at x when it is contiguous, else at a contiguous copy made in
 * *tmp (empty otherwise); the caller releases *tmp when done. */
/* x is f32 or f64 and out has x's dtype and shape; otherwise an error naming
 * the op `name` and what differs. */
nb_status nb_cpu_check_float_same(const char *name, const nb_tensor *x, const nb_tensor *out);

nb_status nb_cpu_contiguous_input(const nb_tensor *x, nb_tensor *tmp, const nb_tensor **use);

#endif
