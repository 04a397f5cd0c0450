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

/* Output rows [o0, o1) of one (image, channel) plane, for a fixed stride
 * and left padding (the callers pass constants, so each combination
 * compiles to its own loops); x and y as in nb_dw3x3_band_f32. */
INLINE void band(const nb_dw *g, int stride, int p1, const float *x, int64_t ring,
                 const float *wc, float b, int64_t o0, int64_t o1, float *y)
{
    taps3_plane_args a = {.H = g->H, .W = g->W, .OH = g->OH, .OW = g->OW, .ph = g->p0,
                          .ring = ring, .y0 = o0, .fill = _mm512_setzero_ps(),
                          .init = _mm512_set1_ps(b), .clamp = g->clamp,
                          .lo = _mm512_set1_ps(g->lo), .hi = _mm512_set1_ps(g->hi)};
    for (int t = 0; t < 9; t++)
        a.w[t] = _mm512_set1_ps(wc[t]);
    taps3_band(&a, TAPS3_CONV, stride, p1, x, o0, o1, y);
}

typedef void band_fn(const nb_dw *, const float *, int64_t, const float *, float, int64_t,
                     int64_t, float *);

#define BAND_FN(name, stride, p1)                                                             \
    static TGT void name(const nb_dw *g, const float *x, int64_t ring, const float *w, float b, \
                         int64_t o0, int64_t o1, float *y)                                    \
    {                                                                                         \
        band(g, stride, p1, x, ring, w, b, o0, o1, y);                                        \
    }
BAND_FN(band_s1p1, 1, 1)
BAND_FN(band_s1p0, 1, 0)
BAND_FN(band_s2p1, 2, 1)
BAND_FN(band_s2p0, 2, 0)

static band_fn *band_for(const nb_dw *g)
{
    return g->s0 == 1 ? (g->p1 ? band_s1p1 : band_s1p0) : (g->p1 ? band_s2p1 : band_s2p0);
}

void nb_dw3x3_band_f32(const nb_dw *g, const float *x, int64_t ring, const float *w, float b,
                       int64_t o0, int64_t o1, float *y)
{
    if (o0 >= 0 && o0 < o1 && o1 <= g->OH)
        band_for(g)(g, x, ring, w, b, o0, o1, y);
}

typedef struct job {
    const nb_dw *g;
    band_fn *fn;
    const float *x, *w, *b;
    float *y;
} job;

static void run_planes(void *ctx, int64_t p0, int64_t p1)
{
    const job *j = ctx;
    const nb_dw *g = j->g;
    for (int64_t pl = p0; pl < p1; pl++) {
        int64_t c = pl % g->C;
        j->fn(g, j->x + pl * g->H * g->W, 0, j->w + c * 9, j->b ? j->b[c] : 0.0f, 0, g->OH,
              j->y + pl * g->OH * g->OW);
    }
}

void nb_dw3x3_conv_f32(const nb_dw *g, const float *x, const float *w, const float *b, float *y)
{
    int64_t planes = g->N * g->C;
    if (planes <= 0 || g->OH <= 0 || g->OW <= 0)
        return;
    job j = {g, band_for(g), x, w, b, y};
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

void nb_dw3x3_band_f32(const nb_dw *g, const float *x, int64_t ring, const float *w, float b,
                       int64_t o0, int64_t o1, float *y)
{
    (void)g, (void)x, (void)ring, (void)w, (void)b, (void)o0, (void)o1, (void)y;
}

#endif
