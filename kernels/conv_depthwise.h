/* Direct depthwise convolution (private to kernels/conv.c): CONV2D in f32
 * with groups == C_in == C_out (one output channel per group), NCHW. */
#ifndef NB_CONV_DEPTHWISE_H
#define NB_CONV_DEPTHWISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nb_dw {
    int64_t N, C, H, W, OH, OW, KH, KW;
    int64_t s0, s1, d0, d1, p0, p1; /* stride, dilation, pad_begin {rows, columns} */
    bool clamp;                     /* clamp outputs (bias added) to [lo, hi] */
    float lo, hi;
} nb_dw;

/* False when NABLA_DEPTHWISE=0 is in the environment (read once). */
bool nb_dw_enabled(void);

/* Scratch bytes for `threads` threads (at least one): each needs one
 * plane's zero-padded, stride-phased copy and an accumulator. */
size_t nb_dw_workspace(const nb_dw *g, int64_t threads);

/* y[n, c, i, j] = b[c] + sum_{p, q} w[c, 0, p, q] * x[n, c, i*s0 - p0 + p*d0, j*s1 - p1 + q*d1]
 * (x outside the image is 0; b may be NULL), clamped when g->clamp, threaded
 * over the N*C planes with as many threads as ws (ws_size bytes, 64-byte
 * aligned) has room for; with no room it allocates one thread's scratch.
 * Returns false only when that allocation fails. The result does not
 * depend on the thread count. */
bool nb_dw_conv_f32(const nb_dw *g, const float *x, const float *w, const float *b, float *y,
                    void *ws, size_t ws_size);

#endif
