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

/* R output rows (i0 .. i0+R-1) at once: their (R-1)*s + 3 input rows are
 * each turned into tap vectors once and FMA'd into every output row that
 * reads them (independent accumulators keep the FMA units busy). Each
 * output's sum runs over its taps in row-major order. */
#define MAXR 4
#define MAXIN ((MAXR - 1) * 2 + 3)
INLINE void out_rows(const nb_dw *g, int R, int stride, int p1, const float *x, int64_t i0,
                     const __m512 w[9], __m512 bias, float *y)
{
    const int64_t W = g->W, OW = g->OW;
    const int nin = (R - 1) * stride + 3;
    const float *r[MAXIN];
    taps3_carry cr[MAXIN];
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int k = 0; k < nin; k++) {
        int64_t ih = i0 * stride - g->p0 + k;
        r[k] = ih >= 0 && ih < g->H ? x + ih * W : NULL;
        taps3_start(&cr[k], r[k], stride, W, zero);
    }
    const __m512 lo = _mm512_set1_ps(g->lo), hi = _mm512_set1_ps(g->hi);
    for (int64_t j = 0; j < OW; j += 16) {
        __m512 acc[MAXR], t[3];
#pragma GCC unroll 16
        for (int o = 0; o < R; o++)
            acc[o] = bias;
#pragma GCC unroll 16
        for (int k = 0; k < nin; k++) {
            if (!r[k])
                continue;
            taps3(r[k], stride, j, W, p1, zero, &cr[k], t);
#pragma GCC unroll 16
            for (int o = 0; o < R; o++) {
                int d = k - o * stride; /* this input row is row d of output o's kernel */
                if (d < 0 || d > 2)
                    continue;
                acc[o] = _mm512_fmadd_ps(t[0], w[3 * d], acc[o]);
                acc[o] = _mm512_fmadd_ps(t[1], w[3 * d + 1], acc[o]);
                acc[o] = _mm512_fmadd_ps(t[2], w[3 * d + 2], acc[o]);
            }
        }
        __mmask16 m = taps3_lanes(OW - j);
#pragma GCC unroll 16
        for (int o = 0; o < R; o++) {
            __m512 v = acc[o];
            if (g->clamp)
                v = _mm512_min_ps(hi, _mm512_max_ps(lo, v));
            _mm512_mask_storeu_ps(y + (i0 + o) * OW + j, m, v);
        }
    }
}

/* One (image, channel) plane, for a fixed stride and left padding (the
 * callers pass constants, so each combination compiles to its own loops). */
INLINE void plane(const nb_dw *g, int stride, int p1, const float *x, const float *wc, float b,
                  float *y)
{
    __m512 w[9];
    for (int t = 0; t < 9; t++)
        w[t] = _mm512_set1_ps(wc[t]);
    const __m512 bias = _mm512_set1_ps(b);
    int64_t i = 0;
    for (; i + MAXR <= g->OH; i += MAXR)
        out_rows(g, MAXR, stride, p1, x, i, w, bias, y);
    switch (g->OH - i) {
    case 3: out_rows(g, 3, stride, p1, x, i, w, bias, y); break;
    case 2: out_rows(g, 2, stride, p1, x, i, w, bias, y); break;
    case 1: out_rows(g, 1, stride, p1, x, i, w, bias, y); break;
    default: break;
    }
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
