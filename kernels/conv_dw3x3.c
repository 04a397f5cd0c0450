/* The 3x3 depthwise convolution of mobile networks, in AVX-512 (f32, NCHW):
 * stride 1 or 2, dilation 1, padding 0 or 1 before each axis (any after),
 * bias and a fused clamp; the general kernel of conv_depthwise.c does the
 * rest and calls this one when nb_dw3x3_supported says so.
 *
 * It reads the image in place: no padded copy, no workspace. An output row
 * is computed 16 columns at a time; for each of its (up to) three input
 * rows the three tap vectors x[r][j*s - p1 + q] (q = 0, 1, 2) come from
 * whole-vector loads of that row and lane shifts (kernels/taps3_avx512.h),
 * with zeros outside the row; input rows outside the image are skipped. Each
 * output is bias + its nine products in row-major tap order (FMAs), then
 * min(hi, max(lo, v)) (a NaN stays NaN), stored with a mask at the row's
 * tail. Planes are independent, so results do not depend on the thread
 * count. Small planes (7x7) fill 7 of 16 lanes a row, yet without the copy
 * and per-tap passes of the general kernel this is still its fastest path.
 */
#include "kernels/conv_depthwise.h"

#include "kernels/threadpool.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "kernels/taps3_avx512.h"

#define TGT TAPS3_TGT
#define INLINE TAPS3_INLINE

bool nb_dw3x3_supported(const nb_dw *g)
{
    return g->KH == 3 && g->KW == 3 && g->d0 == 1 && g->d1 == 1 && g->s0 == g->s1 &&
           (g->s0 == 1 || g->s0 == 2) && g->p0 >= 0 && g->p0 <= 1 && g->p1 >= 0 && g->p1 <= 1 &&
           __builtin_cpu_supports("avx512f");
}

/* One (image, channel) plane, for a fixed stride and left padding (the
 * callers pass constants, so each combination compiles to its own loops). */
INLINE void plane(const nb_dw *g, int stride, int p1, const float *x, const float *wc, float b,
                  float *y)
{
    taps3_plane_args a = {.H = g->H, .W = g->W, .OH = g->OH, .OW = g->OW, .ph = g->p0,
                          .fill = _mm512_setzero_ps(), .init = _mm512_set1_ps(b),
                          .clamp = g->clamp, .lo = _mm512_set1_ps(g->lo),
                          .hi = _mm512_set1_ps(g->hi)};
    for (int t = 0; t < 9; t++)
        a.w[t] = _mm512_set1_ps(wc[t]);
    taps3_plane(&a, TAPS3_CONV, stride, p1, x, y);
}

static TGT void plane_s1p1(const nb_dw *g, const float *x, const float *w, float b, float *y)
{
    plane(g, 1, 1, x, w, b, y);
}
static TGT void plane_s1p0(const nb_dw *g, const float *x, const float *w, float b, float *y)
{
    plane(g, 1, 0, x, w, b, y);
}
static TGT void plane_s2p1(const nb_dw *g, const float *x, const float *w, float b, float *y)
{
    plane(g, 2, 1, x, w, b, y);
}
static TGT void plane_s2p0(const nb_dw *g, const float *x, const float *w, float b, float *y)
{
    plane(g, 2, 0, x, w, b, y);
}

typedef void plane_fn(const nb_dw *, const float *, const float *, float, float *);

typedef struct job {
    const nb_dw *g;
    plane_fn *fn;
    const float *x, *w, *b;
    float *y;
} job;

static void run_planes(void *ctx, int64_t p0, int64_t p1)
{
    const job *j = ctx;
    const nb_dw *g = j->g;
    for (int64_t pl = p0; pl < p1; pl++) {
        int64_t c = pl % g->C;
        j->fn(g, j->x + pl * g->H * g->W, j->w + c * 9, j->b ? j->b[c] : 0.0f,
              j->y + pl * g->OH * g->OW);
    }
}

void nb_dw3x3_conv_f32(const nb_dw *g, const float *x, const float *w, const float *b, float *y)
{
    int64_t planes = g->N * g->C;
    if (planes <= 0 || g->OH <= 0 || g->OW <= 0)
        return;
    job j = {g, g->s0 == 1 ? (g->p1 ? plane_s1p1 : plane_s1p0) : (g->p1 ? plane_s2p1 : plane_s2p0),
             x, w, b, y};
    /* small planes go to the pool in groups of about 4K outputs */
    int64_t per = g->OH * g->OW, grain = per >= 4096 ? 1 : 4096 / per;
    nb_parallel_for(planes, grain, run_planes, &j);
}

#else /* not x86-64 with GCC or clang: the general kernel everywhere */

bool nb_dw3x3_supported(const nb_dw *g)
{
    (void)g;
    return false;
}

void nb_dw3x3_conv_f32(const nb_dw *g, const float *x, const float *w, const float *b, float *y)
{
    (void)g, (void)x, (void)w, (void)b, (void)y;
}

#endif
