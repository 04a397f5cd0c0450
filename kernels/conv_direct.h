/* Direct convolution for few input channels (private to kernels/conv.c):
 * CONV2D in f32, NCHW, groups == 1, dilation 1, with C_in * KH * KW small
 * (a network's first layer: MobileNetV2's 3->32 3x3 stride 2, ResNet's 3->64
 * 7x7 stride 2), where im2col + GEMM is bound by loads and stores. */
#ifndef NB_CONV_DIRECT_H
#define NB_CONV_DIRECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nb_dconv {
    int64_t N, C, H, W;   /* input (N, C, H, W) */
    int64_t CO, OH, OW;   /* output (N, CO, OH, OW) */
    int64_t KH, KW;       /* weights (CO, C, KH, KW) */
    int64_t s0, s1;       /* stride {rows, columns} */
    int64_t p0, p1;       /* pad_begin {rows, columns}; pad_end is implied by OH, OW */
    bool clamp;           /* clamp outputs (bias added) to [lo, hi] */
    float lo, hi;
    bool stream;          /* write y with streaming (non-temporal) stores where aligned
                           * (same values; for an output much larger than the caches) */
} nb_dconv;

/* The limits of the direct kernel, checked by nb_dconv_supported. */
#define NB_DCONV_MAX_C 4 /* input channels */
#define NB_DCONV_MAX_K 7 /* KH and KW */
/* Output widths below this waste most of each 16-lane vector (a 7-wide row
 * fills 7 of 16 lanes); im2col + GEMM, whose vectors run over OH*OW, is as
 * fast or faster there (3->32 3x3 on 7x7: 1.5x faster). */
#define NB_DCONV_MIN_OW 16

/* True when the direct kernel should run g: nb_dconv_f32 takes it (every
 * size >= 1 (N >= 0), 1 <= C <= NB_DCONV_MAX_C, 1 <= KH, KW <=
 * NB_DCONV_MAX_K, strides 1 or 2, pads >= 0; any OH, OW >= 1, the input
 * being zero outside the image, so pad_end may be anything), OW >=
 * NB_DCONV_MIN_OW, the CPU has AVX-512F, and NABLA_DIRECT_CONV=0 is not in
 * the environment (read at each call). */
bool nb_dconv_supported(const nb_dconv *g);

/* Bytes of workspace nb_dconv_f32 uses: the weights repacked tap-major
 * (C*KH*KW x CO floats). 0 for a shape it does not take. */
size_t nb_dconv_workspace(const nb_dconv *g);

/* y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * x[n, c, i*s0 - p0 + p, j*s1 - p1 + q]
 * (x outside the image is 0; b may be NULL), clamped to [lo, hi] when
 * g->clamp (a NaN stays NaN), threaded over (image, output row). Each
 * output is one sum in a fixed order (taps in (c, p, q) order, then the
 * bias), so the result does not depend on the thread count. ws (ws_size
 * bytes, float-aligned) holds the repacked weights when it has room for
 * nb_dconv_workspace(g) bytes; otherwise the call allocates its own and
 * returns false only when that fails. Any OW >= 1 is computed right (only
 * nb_dconv_supported asks for NB_DCONV_MIN_OW). Writes nothing (and returns
 * true) when g is outside the other limits above or the CPU lacks AVX-512F:
 * callers ask nb_dconv_supported first. */
bool nb_dconv_f32(const nb_dconv *g, const float *x, const float *w, const float *b, float *y,
                  void *ws, size_t ws_size);

/* For a caller that makes the output band by band (kernels/conv_block.c):
 * the weights repacked as nb_dconv_f32 uses them (wp: nb_dconv_workspace(g)
 * bytes), then output rows [i0, i1) of one image (x points at it; g->N is
 * not used), single-threaded, with the same bits as nb_dconv_f32. Output
 * channel o's row i goes to y + o*ys + (ring ? i % ring : i)*OW. Does
 * nothing for a g outside the limits or a CPU without AVX-512F. */
void nb_dconv_pack(const nb_dconv *g, const float *w, float *wp);
void nb_dconv_rows_f32(const nb_dconv *g, const float *x, const float *wp, const float *b,
                       int64_t i0, int64_t i1, float *y, int64_t ys, int64_t ring);

#endif
