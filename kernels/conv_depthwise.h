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
 * plane's zero-padded, stride-phased copy and an accumulator; none when the
 * 3x3 kernel below takes the shape. */
size_t nb_dw_workspace(const nb_dw *g, int64_t threads);

/* y[n, c, i, j] = b[c] + sum_{p, q} w[c, 0, p, q] * x[n, c, i*s0 - p0 + p*d0, j*s1 - p1 + q*d1]
 * (x outside the image is 0; b may be NULL), clamped when g->clamp, threaded
 * over the N*C planes with as many threads as ws (ws_size bytes, 64-byte
 * aligned) has room for; with no room it allocates one thread's scratch.
 * Returns false only when that allocation fails. The result does not
 * depend on the thread count. */
bool nb_dw_conv_f32(const nb_dw *g, const float *x, const float *w, const float *b, float *y,
                    void *ws, size_t ws_size);

/* nb_dw_conv_f32 without the hand-off to the 3x3 kernel (for the tests,
 * which compare the two): needs the general kernel's workspace. */
bool nb_dw_generic_conv_f32(const nb_dw *g, const float *x, const float *w, const float *b,
                            float *y, void *ws, size_t ws_size);

/* The AVX-512 3x3 kernel (kernels/conv_dw3x3.c) that nb_dw_conv_f32 hands
 * its shapes to: 3x3, dilation 1, stride 1 or 2 on both axes, padding 0 or
 * 1 before each axis, on a CPU with AVX-512F. It needs no workspace. */
bool nb_dw3x3_supported(const nb_dw *g);
void nb_dw3x3_conv_f32(const nb_dw *g, const float *x, const float *w, const float *b, float *y);

/* Output rows [o0, o1) of one plane (g->N and g->C unused), single-threaded,
 * weights w (9) and bias b: for a caller that makes the input band by band
 * (kernels/conv_block.c). x holds input row i at x + i*W when ring is 0,
 * else at x + (i % ring)*W (the rows the band reads must be there); y
 * receives output row i at y + (i - o0)*OW. The same bits as the plane in
 * nb_dw3x3_conv_f32. Needs nb_dw3x3_supported(g). */
void nb_dw3x3_band_f32(const nb_dw *g, const float *x, int64_t ring, const float *w, float b,
                       int64_t o0, int64_t o1, float *y);

#endif
