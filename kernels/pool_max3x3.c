/* 3x3 max pooling in AVX-512 (f32, one NCHW plane): stride 1 or 2 on both
 * axes, padding 0 or 1 before each axis (any after), the pooling of ResNet's
 * stem (3x3, stride 2, pad 1). kernels/pool.c hands such planes here when
 * nb_maxpool3x3_supported says so.
 *
 * The plane is read in place: the three tap vectors of each input row come
 * from whole-vector loads and lane shifts (kernels/taps3_avx512.h) with -inf
 * outside the row, input rows outside the image are skipped, and an output
 * row is computed 16 columns at a time, four output rows at once sharing
 * their input rows. The result is exactly pool.c's loop: each output takes
 * its window in row-major order with m = (v > m || v is NaN) ? v : m from
 * m = -inf (vmaxps(v, m) gives the first part, a blend where v is NaN the
 * second), so ties, signed zeros and NaNs come out the same.
 */
#include "kernels/pool_max3x3.h"

#include <math.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "kernels/taps3_avx512.h"

bool nb_maxpool3x3_supported(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                             int64_t pw)
{
    return kh == 3 && kw == 3 && sh == sw && (sh == 1 || sh == 2) && ph >= 0 && ph <= 1 &&
           pw >= 0 && pw <= 1 && __builtin_cpu_supports("avx512f");
}

/* m = (v > m || v != v) ? v : m, lane by lane */
TAPS3_INLINE __m512 take(__m512 m, __m512 v)
{
    __m512 r = _mm512_max_ps(v, m); /* v > m ? v : m */
    return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
}

#define MAXR 4
#define MAXIN ((MAXR - 1) * 2 + 3)

/* Output rows i0 .. i0+R-1 (R, stride and p are constants in the callers). */
TAPS3_INLINE void out_rows(const nb_maxpool3x3 *g, int R, int stride, int p, const float *x,
                           int64_t i0, float *y)
{
    const int64_t W = g->W, OW = g->OW;
    const int nin = (R - 1) * stride + 3;
    const __m512 fill = _mm512_set1_ps(-INFINITY);
    const float *r[MAXIN];
    taps3_carry cr[MAXIN];
#pragma GCC unroll 16
    for (int k = 0; k < nin; k++) {
        int64_t ih = i0 * stride - g->ph + k;
        r[k] = ih >= 0 && ih < g->H ? x + ih * W : NULL;
        taps3_start(&cr[k], r[k], stride, W, fill);
    }
    for (int64_t j = 0; j < OW; j += 16) {
        __m512 m[MAXR], t[3];
#pragma GCC unroll 16
        for (int o = 0; o < R; o++)
            m[o] = fill;
#pragma GCC unroll 16
        for (int k = 0; k < nin; k++) {
            if (!r[k])
                continue;
            taps3(r[k], stride, j, W, p, fill, &cr[k], t);
#pragma GCC unroll 16
            for (int o = 0; o < R; o++) {
                int d = k - o * stride; /* this input row is row d of output o's window */
                if (d < 0 || d > 2)
                    continue;
                m[o] = take(take(take(m[o], t[0]), t[1]), t[2]);
            }
        }
        __mmask16 mask = taps3_lanes(OW - j);
#pragma GCC unroll 16
        for (int o = 0; o < R; o++)
            _mm512_mask_storeu_ps(y + (i0 + o) * OW + j, mask, m[o]);
    }
}

TAPS3_INLINE void plane(const nb_maxpool3x3 *g, int stride, int p, const float *x, float *y)
{
    int64_t i = 0;
    for (; i + MAXR <= g->OH; i += MAXR)
        out_rows(g, MAXR, stride, p, x, i, y);
    switch (g->OH - i) {
    case 3: out_rows(g, 3, stride, p, x, i, y); break;
    case 2: out_rows(g, 2, stride, p, x, i, y); break;
    case 1: out_rows(g, 1, stride, p, x, i, y); break;
    default: break;
    }
}

TAPS3_TGT void nb_maxpool3x3_plane_f32(const nb_maxpool3x3 *g, const float *x, float *y)
{
    if (g->OH <= 0 || g->OW <= 0)
        return;
    if (g->s == 1)
        g->pw ? plane(g, 1, 1, x, y) : plane(g, 1, 0, x, y);
    else
        g->pw ? plane(g, 2, 1, x, y) : plane(g, 2, 0, x, y);
}

#else /* not x86-64 with GCC or clang: pool.c's loops everywhere */

bool nb_maxpool3x3_supported(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                             int64_t pw)
{
    (void)kh, (void)kw, (void)sh, (void)sw, (void)ph, (void)pw;
    return false;
}

void nb_maxpool3x3_plane_f32(const nb_maxpool3x3 *g, const float *x, float *y)
{
    (void)g, (void)x, (void)y;
}

#endif
