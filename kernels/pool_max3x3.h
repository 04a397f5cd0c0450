/* 3x3 max pooling of one f32 plane in AVX-512 (private to kernels/pool.c;
 * kernels/pool_max3x3.c). */
#ifndef NB_POOL_MAX3X3_H
#define NB_POOL_MAX3X3_H

#include <stdbool.h>
#include <stdint.h>

typedef struct nb_maxpool3x3 {
    int64_t H, W, OH, OW; /* input and output plane */
    int64_t s;            /* stride, both axes */
    int64_t ph, pw;       /* padding before the rows and the columns */
} nb_maxpool3x3;

/* Whether the kernel takes this window: 3x3, equal strides 1 or 2, padding
 * 0 or 1 before each axis, on a CPU with AVX-512F. */
bool nb_maxpool3x3_supported(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                             int64_t pw);

/* y[i][j] = max over x[i*s - ph + a][j*s - pw + b], a, b in 0..2, inside
 * the plane (-inf when none is), NaN winning: bit for bit pool.c's loop. */
void nb_maxpool3x3_plane_f32(const nb_maxpool3x3 *g, const float *x, float *y);

#endif
