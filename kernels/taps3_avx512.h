/* Tap vectors of a 3-wide window sliding along one row, in AVX-512: shared
 * by the 3x3 kernels that read their image in place (kernels/conv_dw3x3.c,
 * kernels/pool_max3x3.c). Private to those files; include it only from code
 * compiled for x86-64 with GCC or clang, inside functions with the TAPS3_TGT
 * target.
 *
 * For the 16 output columns j .. j+15 at stride s and left padding p (0 or
 * 1), tap q (0, 1, 2) is the vector x[(j + l)*s - p + q], l = 0..15, where
 * columns outside the row [0, W) read `fill` (0 for a convolution, -inf for
 * max pooling). They come from whole-vector loads of the row and lane
 * shifts:
 *
 *   stride 1: with C = x[j .. j+15] and its neighbours P (the previous
 *             vector, fill before the row) and N (the next one), the taps at
 *             offsets -1, 0, +1, +2 are alignr(C, P, 15), C, alignr(N, C, 1)
 *             and alignr(N, C, 2);
 *   stride 2: two loads x[2j .. 2j+31] split into their even and odd
 *             columns E and O (permutex2var); offsets -1, 0, +1, +2 are
 *             alignr(O, O_prev, 15), E, O and alignr(x[2j+32], E, 1).
 *
 * Loads past the row's end are masked (an in-bounds address with a mask; a
 * load that would start past the row is not made, no address outside the
 * row is formed), so a row may end anywhere. A row is walked left to right,
 * one taps3_* call per output vector, with its taps3_carry. */
#ifndef NB_TAPS3_AVX512_H
#define NB_TAPS3_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#define TAPS3_TGT __attribute__((target("avx512f,fma")))
#define TAPS3_INLINE static inline __attribute__((always_inline)) TAPS3_TGT

static inline __mmask16 taps3_lanes(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/* x[c .. c+15] of a row of W floats, fill past its end. */
TAPS3_INLINE __m512 taps3_load(const float *row, int64_t c, int64_t W, __m512 fill)
{
    return c < W ? _mm512_mask_loadu_ps(fill, taps3_lanes(W - c), row + c) : fill;
}

/* The state a row carries from one output vector to the next. */
typedef struct taps3_carry {
    __m512 prev; /* stride 1: the vector before C; stride 2: the odd vector before O */
    __m512 cur;  /* stride 1: C, loaded one step ahead */
} taps3_carry;

TAPS3_INLINE __m512 taps3_shift(__m512 hi, __m512 lo, int n) /* (lo:hi) >> n lanes */
{
    switch (n) { /* the shift must be a constant */
    case 1: return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(hi), _mm512_castps_si512(lo), 1));
    case 2: return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(hi), _mm512_castps_si512(lo), 2));
    default: return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(hi), _mm512_castps_si512(lo), 15));
    }
}

/* Start a row (NULL: a row outside the image, which is never walked). */
TAPS3_INLINE void taps3_start(taps3_carry *cr, const float *row, int stride, int64_t W, __m512 fill)
{
    cr->prev = fill;
    cr->cur = row && stride == 1 ? taps3_load(row, 0, W, fill) : fill;
}

/* The three taps of `row` under output columns j .. j+15 (stride 1). */
TAPS3_INLINE void taps3_s1(const float *row, int64_t j, int64_t W, int p, __m512 fill,
                           taps3_carry *cr, __m512 t[3])
{
    __m512 C = cr->cur, N = taps3_load(row, j + 16, W, fill);
    if (p) {
        t[0] = taps3_shift(C, cr->prev, 15), t[1] = C, t[2] = taps3_shift(N, C, 1);
    } else {
        t[0] = C, t[1] = taps3_shift(N, C, 1), t[2] = taps3_shift(N, C, 2);
    }
    cr->prev = C, cr->cur = N;
}

/* The same at stride 2: output column j + l reads input column 2(j + l) - p + q. */
TAPS3_INLINE void taps3_s2(const float *row, int64_t j, int64_t W, int p, __m512 fill,
                           taps3_carry *cr, __m512 t[3])
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    int64_t c = 2 * j;
    __m512 A = taps3_load(row, c, W, fill), B = taps3_load(row, c + 16, W, fill);
    __m512 E = _mm512_permutex2var_ps(A, even, B), O = _mm512_permutex2var_ps(A, odd, B);
    if (p) {
        t[0] = taps3_shift(O, cr->prev, 15), t[1] = E, t[2] = O;
    } else {
        __m512 next = c + 32 < W ? _mm512_mask_loadu_ps(fill, 1, row + c + 32) : fill;
        t[0] = E, t[1] = O, t[2] = taps3_shift(next, E, 1);
    }
    cr->prev = O;
}

/* Either of the above: stride is a constant in the callers. */
TAPS3_INLINE void taps3(const float *row, int stride, int64_t j, int64_t W, int p, __m512 fill,
                        taps3_carry *cr, __m512 t[3])
{
    if (stride == 1)
        taps3_s1(row, j, W, p, fill, cr, t);
    else
        taps3_s2(row, j, W, p, fill, cr, t);
}

#endif
