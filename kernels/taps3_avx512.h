/* Tap vectors of a 3-wide window sliding along one row, and whole 3x3
 * planes built on them, in AVX-512: shared by the 3x3 kernels that read
 * their image in place (kernels/conv_dw3x3.c, kernels/pool_max3x3.c). Private to those files; include it only from code
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
#include <stdbool.h>
#include <stdint.h>

#include "kernels/avx512.h"

#define TAPS3_TGT NB_AVX512_TGT
#define TAPS3_INLINE static inline __attribute__((always_inline)) TAPS3_TGT

/* x[c .. c+15] of a row of W floats, fill past its end. */
TAPS3_INLINE __m512 taps3_load(const float *row, int64_t c, int64_t W, __m512 fill)
{
    return c < W ? _mm512_mask_loadu_ps(fill, nb_lanes16(W - c), row + c) : fill;
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

/* ---- a whole plane: y[i][j] = combine over the 3x3 window -------------- */

/* How a window's nine taps combine, in row-major tap order: a convolution
 * (acc = fma(tap, w[t], acc) from the bias, then the optional clamp) or max
 * pooling (m = (v > m || v is NaN) ? v : m from -inf). */
typedef enum { TAPS3_CONV, TAPS3_MAX } taps3_op;

typedef struct taps3_plane_args {
    int64_t H, W, OH, OW; /* input and output plane */
    int64_t ph;           /* padding before the rows (0 or 1) */
    int64_t ring;         /* 0: x holds input row i at x + i*W; else it holds
                             the rows a band needs at x + (i % ring)*W */
    int64_t y0;           /* y holds output row i at y + (i - y0)*OW */
    __m512 fill;          /* what columns outside the row read */
    __m512 init;          /* the accumulator's start: the bias, or -inf */
    __m512 w[9];          /* TAPS3_CONV: the weights, broadcast */
    bool clamp;           /* TAPS3_CONV: min(hi, max(lo, acc)) (a NaN stays NaN) */
    __m512 lo, hi;
} taps3_plane_args;

/* m = (v > m || v != v) ? v : m, lane by lane: vmaxps(v, m) gives v > m ? v : m */
TAPS3_INLINE __m512 taps3_take(__m512 m, __m512 v)
{
    __m512 r = _mm512_max_ps(v, m);
    return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
}

#define TAPS3_MAXR 4                            /* output rows at once */
#define TAPS3_MAXIN ((TAPS3_MAXR - 1) * 2 + 3) /* their input rows, at stride 2 */

/* Output rows i0 .. i0+R-1 at once (R, stride, p and op constants in the
 * callers): their (R-1)*stride + 3 input rows are each turned into tap
 * vectors once and combined into every output row that reads them
 * (independent accumulators keep the vector units busy); input rows outside
 * the image are skipped. */
TAPS3_INLINE void taps3_rows(const taps3_plane_args *a, taps3_op op, int R, int stride, int p,
                             const float *x, int64_t i0, float *y)
{
    const int64_t W = a->W, OW = a->OW;
    const int nin = (R - 1) * stride + 3;
    const float *r[TAPS3_MAXIN];
    taps3_carry cr[TAPS3_MAXIN];
#pragma GCC unroll 16
    for (int k = 0; k < nin; k++) {
        int64_t ih = i0 * stride - a->ph + k;
        r[k] = ih >= 0 && ih < a->H ? x + (a->ring ? ih % a->ring : ih) * W : NULL;
        taps3_start(&cr[k], r[k], stride, W, a->fill);
    }
    for (int64_t j = 0; j < OW; j += 16) {
        __m512 acc[TAPS3_MAXR], t[3];
#pragma GCC unroll 16
        for (int o = 0; o < R; o++)
            acc[o] = a->init;
#pragma GCC unroll 16
        for (int k = 0; k < nin; k++) {
            if (!r[k])
                continue;
            taps3(r[k], stride, j, W, p, a->fill, &cr[k], t);
#pragma GCC unroll 16
            for (int o = 0; o < R; o++) {
                int d = k - o * stride; /* this input row is row d of output o's window */
                if (d < 0 || d > 2)
                    continue;
                if (op == TAPS3_CONV) {
                    acc[o] = _mm512_fmadd_ps(t[0], a->w[3 * d], acc[o]);
                    acc[o] = _mm512_fmadd_ps(t[1], a->w[3 * d + 1], acc[o]);
                    acc[o] = _mm512_fmadd_ps(t[2], a->w[3 * d + 2], acc[o]);
                } else {
                    acc[o] = taps3_take(taps3_take(taps3_take(acc[o], t[0]), t[1]), t[2]);
                }
            }
        }
        __mmask16 m = nb_lanes16(OW - j);
#pragma GCC unroll 16
        for (int o = 0; o < R; o++) {
            __m512 v = acc[o];
            if (op == TAPS3_CONV && a->clamp)
                v = _mm512_min_ps(a->hi, _mm512_max_ps(a->lo, v));
            _mm512_mask_storeu_ps(y + (i0 + o - a->y0) * OW + j, m, v);
        }
    }
}

/* Output rows [i, end), TAPS3_MAXR rows at a time (the whole plane: 0, OH). */
TAPS3_INLINE void taps3_band(const taps3_plane_args *a, taps3_op op, int stride, int p,
                             const float *x, int64_t i, int64_t end, float *y)
{
    for (; i + TAPS3_MAXR <= end; i += TAPS3_MAXR)
        taps3_rows(a, op, TAPS3_MAXR, stride, p, x, i, y);
    switch (end - i) {
    case 3: taps3_rows(a, op, 3, stride, p, x, i, y); break;
    case 2: taps3_rows(a, op, 2, stride, p, x, i, y); break;
    case 1: taps3_rows(a, op, 1, stride, p, x, i, y); break;
    default: break;
    }
}

TAPS3_INLINE void taps3_plane(const taps3_plane_args *a, taps3_op op, int stride, int p,
                              const float *x, float *y)
{
    taps3_band(a, op, stride, p, x, 0, a->OH, y);
}

#endif
