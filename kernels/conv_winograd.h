/* The im2col-free f32 convolution path of kernels/conv.c (kernels/conv_winograd.c):
 * Winograd F(2x2, 3x3) for 3x3 stride-1 dilation-1 ungrouped convolutions on
 * CPUs with AVX-512, for the forward, the input gradient (a conv with the
 * weights transposed and flipped) and the weight gradient; F(4x4, 3x3) for
 * the first two where it takes fewer multiplies (see nb_wino.tile). Private to the
 * conv kernels (and their tests). */
#ifndef NB_CONV_WINOGRAD_H
#define NB_CONV_WINOGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One 3x3 stride-1 convolution: out (N, cout, hout, wout) from in (N, cin,
 * hin, win), out[n, o, i, j] = sum_{c, p, q} g[o, c, p, q] *
 * in[n, c, i - pt + p, j - pl + q] (0 outside in; pt, pl may be negative).
 * nb_wino_conv clamps its outputs (bias added) to [lo, hi] when clamp is set. */
typedef struct nb_wino {
    int64_t N, cin, hin, win;
    int64_t cout, hout, wout;
    int64_t pt, pl;
    bool clamp;
    float lo, hi;
    /* when res is set (out's shape, f32): out = rclamp(conv + bias + res),
     * the clamp to [rlo, rhi] after the add (a fused residual connection) */
    const float *res;
    bool rclamp;
    float rlo, rhi;
    /* the forward's output tile: 2 for F(2x2, 3x3), 4 for F(4x4, 3x3), 0
     * to let the path choose (F(4x4, 3x3) where it takes fewer multiplies,
     * unless NABLA_WINOGRAD=2; the weight gradient is always F(2x2, 3x3)) */
    int tile;
} nb_wino;

/* Whether the path may run: the CPU has AVX-512F and it is not switched off
 * (by nb_wino_set_enabled, or NABLA_WINOGRAD=0 in the environment). */
bool nb_wino_enabled(void);
/* Switch the path off (false) or back on, e.g. to test the im2col fallback;
 * plans compiled meanwhile size their workspace for the path then in force. */
void nb_wino_set_enabled(bool on);

/* Workspace bytes for `threads` threads (at least one) of nb_wino_conv
 * (grad_weight false) or nb_wino_grad_weight (true); 0 for a shape the path
 * does not take (empty, or more than 512 x 512 channel pairs after rounding
 * both counts up to 16). */
size_t nb_wino_workspace(const nb_wino *s, bool grad_weight, int64_t threads);

/* out = conv(in, g) (+ bias[o]). g[o, c, p, q] = w[o, c, p, q] with w
 * (cout, cin, 3, 3), or with flip_t, w[c, o, 2 - p, 2 - q] with w
 * (cin, cout, 3, 3) (conv_transpose2d as a conv). ws holds ws_size >=
 * nb_wino_workspace(s, false, 1) bytes, 64-byte aligned; more threads run
 * when it holds more slots. The result does not depend on the thread count. */
void nb_wino_conv(const nb_wino *s, const float *w, bool flip_t, const float *bias,
                  const float *in, float *out, char *ws, size_t ws_size);

/* nb_wino_conv in two steps, for weights that do not change between calls:
 * transform w once into u (nb_wino_weights_bytes(s) bytes, 64-byte
 * aligned; on the thread pool), then convolve with u as often as needed
 * (ws as for nb_wino_conv, whose first nb_wino_weights_bytes are then
 * unused). Results equal nb_wino_conv's bit for bit. */
size_t nb_wino_weights_bytes(const nb_wino *s);
void nb_wino_transform(const nb_wino *s, const float *w, bool flip_t, float *u);
void nb_wino_conv_pre(const nb_wino *s, const float *u, const float *bias, const float *in,
                      float *out, char *ws, size_t ws_size);

/* dw[o, c, p, q] = sum_{n, i, j} gy[n, o, i, j] * in[n, c, i - pt + p, j - pl + q],
 * with gy (N, cout, hout, wout) and dw (cout, cin, 3, 3); ws as above (with
 * grad_weight true). Deterministic for a given thread count. */
void nb_wino_grad_weight(const nb_wino *s, const float *in, const float *gy, float *dw, char *ws,
                         size_t ws_size);

#endif
