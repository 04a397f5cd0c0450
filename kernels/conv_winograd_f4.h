/* The transforms of Winograd F(4x4, 3x3) for kernels/conv_winograd.c, which
 * runs them in its units as it runs its own F(2x2, 3x3) ones (private to
 * that file; kernels/conv_winograd_f4.c). Call only where the CPU has
 * AVX-512F.
 *
 * A 4x4 output tile needs a 6x6 input patch d; with the interpolation points
 * 0, -1, 1, 2, -1/2 and infinity,
 *   B^T = [1  3/2  -2   -3/2  1    0]    G = [ 1      0     0   ]
 *         [0  1     1/2 -5/2  1    0]        [ 1/3   -1/3   1/3 ]
 *         [0 -1    -5/2 -1/2  1    0]        [-1/3   -1/3  -1/3 ]
 *         [0 -1/2  -1    1/2  1    0]        [ 1/15   2/15  4/15]
 *         [0  2    -1   -2    1    0]        [-16/15  8/15 -4/15]
 *         [0  1     3/2 -2   -3/2  1]        [ 0      0     1   ]
 *   A^T = [1  1  1  1   1     0]
 *         [0 -1  1  2  -1/2   0]
 *         [0  1  1  4   1/4   0]
 *         [0 -1  1  8  -1/8   1]
 * and y = A^T [(G g G^T) . (B^T d B)] A: 36 multiplies per 16 outputs and
 * input channel (F(2x2, 3x3): 16 per 4; direct: 9 per output). These points
 * round better than 0, +-1, +-2: over 256 input channels, the largest error
 * against f64 was 3.4e-6 of the largest output, against 7.5e-6 (and 3e-7
 * for a direct f32 sum, 5e-7 for F(2x2, 3x3)).
 *
 * Layouts are conv_winograd.c's: V[xi][t][cp] (channels last), U[part][xi][c][obw],
 * M[xi][o/16][t][16], xi = 6 * row + column of the transformed position. */
#ifndef NB_CONV_WINOGRAD_F4_H
#define NB_CONV_WINOGRAD_F4_H

#include <stdbool.h>
#include <stdint.h>

#define NB_WINO4_POINTS 36

/* V[xi, t0 + ti * cbu + tj, c] = (B^T d B)[xi] for the rbu x cbu tiles of a
 * packed, zero-padded channels-last input xt ((4 rbu + 2) x ncol x cp); T
 * tiles in V. */
void nb_wino4_input(const float *xt, int64_t ncol, int64_t cp, int64_t rbu, int64_t cbu, float *V,
                    int64_t T, int64_t t0);

/* U[part][xi, c, o'] = (G g G^T)[xi] for input channels [c0, c1) and all cop
 * (cout rounded up to 16) output channels o = part * obw + o', 0 for the
 * padding channels: U is stored in parts of obw output channels (a multiple
 * of 16; obw = cop for one part), each part np x cp x obw floats; g is w[o,
 * c] (w: cout x cin x 3 x 3) or, with flip_t, w[c, o] turned by 180 degrees
 * (w: cin x cout x 3 x 3). cp: cin rounded up to 16. */
void nb_wino4_weights(const float *w, bool flip_t, int64_t cin, int64_t cout, int64_t cp,
                      int64_t cop, int64_t obw, int64_t c0, int64_t c1, float *U);

/* One row of cbu tiles, 16 output channels: st (4 rows x 4 cbu columns x 16
 * channels, channels last) = clamp(A^T M A + bias), from the tiles t0 ..
 * t0 + cbu - 1 of M16 (M's 16-channel block: M16[xi * xs + t * 16 + lane]).
 * bias16: the block's 16 biases (zeros for none); the clamp to [lo, hi]
 * only when clamp (a NaN stays NaN). */
void nb_wino4_output_row(const float *M16, int64_t xs, int64_t t0, int64_t cbu,
                         const float bias16[16], bool clamp, float lo, float hi, float *st);

#endif
