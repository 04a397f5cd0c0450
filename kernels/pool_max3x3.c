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

TAPS3_INLINE void plane(const nb_maxpool3x3 *g, int stride, int p, const float *x, float *y)
{
    const __m512 minf = _mm512_set1_ps(-INFINITY);
    taps3_plane_args a = {.H = g->H, .W = g->W, .OH = g->OH, .OW = g->OW, .ph = g->ph,
                          .fill = minf, .init = minf};
    taps3_plane(&a, TAPS3_MAX, stride, p, x, y);
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
