/* Winograd F(4x4, 3x3) transforms in f32 with AVX-512: see
 * conv_winograd_f4.h for the matrices and the layouts. Each transform is two
 * passes of a 1-D one (columns, then rows) over 16 channels at a time, the
 * channels in the vector lanes; the 1-D ones share their common terms. */
#include "kernels/conv_winograd_f4.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <math.h>

#include "kernels/avx512.h"

#define TGT NB_AVX512_TGT
#define INL static inline __attribute__((always_inline)) TGT

static inline __attribute__((always_inline)) TGT __m512 fmadd(float k, __m512 a, __m512 b)
{
    return _mm512_fmadd_ps(_mm512_set1_ps(k), a, b);
}

/* v = B^T d for one column d[0..5] */
INL void bt6(const __m512 d[6], __m512 v[6])
{
    __m512 c = _mm512_sub_ps(d[4], d[2]), e = _mm512_sub_ps(d[1], d[3]);
    __m512 a = fmadd(-1.5f, d[3], c), b = fmadd(1.5f, d[2], e);
    v[0] = fmadd(1.5f, e, _mm512_add_ps(_mm512_sub_ps(d[0], d[2]), c));
    v[1] = _mm512_add_ps(a, b);
    v[2] = _mm512_sub_ps(a, b);
    v[3] = fmadd(-0.5f, e, c);
    v[4] = fmadd(2.0f, e, c);
    v[5] = fmadd(-1.5f, d[4], _mm512_add_ps(_mm512_sub_ps(d[5], d[3]), b));
}

/* y = A^T m for one column m[0..5] */
INL void at6(const __m512 m[6], __m512 y[4])
{
    __m512 p = _mm512_add_ps(m[1], m[2]), q = _mm512_sub_ps(m[2], m[1]);
    y[0] = _mm512_add_ps(_mm512_add_ps(m[0], p), _mm512_add_ps(m[3], m[4]));
    y[1] = fmadd(-0.5f, m[4], fmadd(2.0f, m[3], q));
    y[2] = fmadd(0.25f, m[4], fmadd(4.0f, m[3], p));
    y[3] = _mm512_add_ps(fmadd(-0.125f, m[4], fmadd(8.0f, m[3], q)), m[5]);
}

/* r = G g for one column g[0..2]; the thirds and fifteenths divided, not
 * multiplied by a rounded reciprocal */
INL void g3(const __m512 g[3], __m512 r[6])
{
    const __m512 three = _mm512_set1_ps(3.0f), fifteen = _mm512_set1_ps(15.0f);
    r[0] = g[0];
    r[1] = _mm512_div_ps(_mm512_add_ps(_mm512_sub_ps(g[0], g[1]), g[2]), three);
    r[2] = _mm512_div_ps(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_add_ps(_mm512_add_ps(g[0], g[1]), g[2])), three);
    r[3] = _mm512_div_ps(fmadd(4.0f, g[2], fmadd(2.0f, g[1], g[0])), fifteen);
    r[4] = _mm512_div_ps(fmadd(-4.0f, g[2], fmadd(8.0f, g[1], _mm512_mul_ps(_mm512_set1_ps(-16.0f), g[0]))), fifteen);
    r[5] = g[2];
}

TGT void nb_wino4_input(const float *xt, int64_t ncol, int64_t cp, int64_t rbu, int64_t cbu, float *V,
                        int64_t T, int64_t t0)
{
    int64_t xs = T * cp;
    for (int64_t ti = 0; ti < rbu; ti++)
        for (int64_t tj = 0; tj < cbu; tj++) {
            const float *base = xt + (4 * ti * ncol + 4 * tj) * cp;
            float *o = V + (t0 + ti * cbu + tj) * cp;
            for (int64_t cv = 0; cv < cp; cv += 16) {
                __m512 e[6][6]; /* e[k][l] = (B^T d)[k][l] */
                for (int l = 0; l < 6; l++) {
                    __m512 d[6], v[6];
                    for (int k = 0; k < 6; k++)
                        d[k] = _mm512_loadu_ps(base + (k * ncol + l) * cp + cv);
                    bt6(d, v);
                    for (int k = 0; k < 6; k++)
                        e[k][l] = v[k];
                }
                for (int k = 0; k < 6; k++) {
                    __m512 v[6];
                    bt6(e[k], v);
                    for (int l = 0; l < 6; l++)
                        _mm512_storeu_ps(o + (6 * k + l) * xs + cv, v[l]);
                }
            }
        }
}

TGT void nb_wino4_weights(const float *w, bool flip_t, int64_t cin, int64_t cout, int64_t cp,
                          int64_t cop, int64_t obw, int64_t c0, int64_t c1, float *U)
{
    /* 16 output channels at a time: g[o + lane][c][k][l] is 9 floats at
     * base + lane * stride (the caller keeps the weights under 2^31 floats) */
    int stride = flip_t ? 9 : (int)(cin * 9);
    __m512i lane = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4,
                                                       3, 2, 1, 0),
                                      _mm512_set1_epi32(stride));
    int64_t xs = cp * obw;
    for (int64_t c = c0; c < c1; c++)
        for (int64_t o = 0; o < cop; o += 16) {
            float *u = U + ((o / obw * NB_WINO4_POINTS) * cp + c) * obw + o % obw;
            int64_t nl = cout - o < 16 ? cout - o : 16;
            if (c >= cin || nl <= 0) {
                for (int xi = 0; xi < NB_WINO4_POINTS; xi++)
                    _mm512_storeu_ps(u + xi * xs, _mm512_setzero_ps());
                continue;
            }
            __mmask16 m = nb_lanes16(nl);
            const float *base = flip_t ? w + (c * cout + o) * 9 : w + (o * cin + c) * 9;
            __m512 g[3][3], h[6][3]; /* h = G g: h[k][q] */
            for (int p = 0; p < 3; p++)
                for (int q = 0; q < 3; q++) {
                    int at = flip_t ? (2 - p) * 3 + 2 - q : p * 3 + q;
                    g[p][q] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, lane, base + at, 4);
                }
            for (int q = 0; q < 3; q++) {
                __m512 col[3] = {g[0][q], g[1][q], g[2][q]}, r[6];
                g3(col, r);
                for (int k = 0; k < 6; k++)
                    h[k][q] = r[k];
            }
            for (int k = 0; k < 6; k++) {
                __m512 r[6];
                g3(h[k], r);
                for (int l = 0; l < 6; l++)
                    _mm512_storeu_ps(u + (6 * k + l) * xs, r[l]);
            }
        }
}

TGT void nb_wino4_output_row(const float *M16, int64_t xs, int64_t t0, int64_t cbu,
                             const float bias16[16], bool clamp, float lo, float hi, float *st)
{
    const __m512 bv = _mm512_loadu_ps(bias16);
    /* min(hi, max(lo, v)) keeps a NaN v (the second operand wins) */
    const __m512 lov = _mm512_set1_ps(clamp ? lo : -INFINITY);
    const __m512 hiv = _mm512_set1_ps(clamp ? hi : INFINITY);
    int64_t row = 4 * cbu * 16; /* floats between st's rows */
    for (int64_t tj = 0; tj < cbu; tj++) {
        const float *m = M16 + (t0 + tj) * 16;
        __m512 r[4][6]; /* r = A^T M, 4 x 6 */
        for (int l = 0; l < 6; l++) {
            __m512 col[6], y[4];
            for (int k = 0; k < 6; k++)
                col[k] = _mm512_loadu_ps(m + (6 * k + l) * xs);
            at6(col, y);
            for (int a = 0; a < 4; a++)
                r[a][l] = y[a];
        }
        for (int a = 0; a < 4; a++) {
            __m512 y[4];
            at6(r[a], y);
            float *q = st + a * row + 4 * tj * 16;
            for (int b = 0; b < 4; b++) {
                __m512 v = _mm512_add_ps(bv, y[b]);
                if (clamp)
                    v = _mm512_min_ps(hiv, _mm512_max_ps(lov, v));
                _mm512_storeu_ps(q + 16 * b, v);
            }
        }
    }
}

#endif
