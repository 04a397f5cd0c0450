/* Winograd F(2x2, 3x3) convolutions in f32 with AVX-512 (see conv_winograd.h),
 * the im2col-free path of kernels/conv.c for 3x3 stride-1 convolutions; the
 * forward runs F(4x4, 3x3) instead where tile_for says so, with the same
 * units and products and the transforms of conv_winograd_f4.c (4x4 output
 * tiles from 6x6 patches, 36 positions instead of 16; written for F(2x2, 3x3)
 * below, the same with m = 4).
 *
 * The output is cut into 2x2 tiles; tile (ti, tj) needs the 4x4 input patch
 * d at rows 2ti - pt .. +3, columns 2tj - pl .. +3. With
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1],
 * the transforms V = B^T d B (per input channel c), U = G g G^T (per weight
 * pair o, c) turn the conv into 16 independent matrix products, one per
 * transformed position xi = 4a + b:
 *   M_xi[t, o] = sum_c V_xi[t, c] U_xi[c, o],   y_tile[o] = A^T M[o] A,
 * 16 multiplies per 4 outputs and input channel instead of 36. The weight
 * gradient is the adjoint: with Z = A gy_tile A^T (A = (A^T)^T),
 *   dU_xi[o, c] = sum_{tiles} Z_xi[t, o] V_xi[t, c],  dw[o, c] = G^T dU[o, c] G.
 *
 * Data layout: channels are the vector lanes. A unit of work is a rectangle
 * of rb x cb tiles of one image (or a few small images whole); its input
 * rows are first copied ("packed") into a zero-padded channels-last block
 * (so no read ever leaves the tensors), the transforms run 16 channels at a
 * time, and the products use a register tile of R rows x OV 16-lane vectors
 * (broadcast times vector FMAs). Channel counts are rounded up to 16 with
 * zeros. A unit's buffers (about 384 KiB, more for wide layers) stay in the
 * L2 cache. The weights are transformed once per call, on all threads.
 *
 * Threads: forward units write disjoint outputs and the threads take them
 * in turn, so the result depends neither on the thread count nor on who ran
 * what; the weight gradient gives each thread slot a fixed range of units
 * and its own accumulator, summed in slot order at the end (deterministic
 * for a given thread count).
 *
 * Buffers per slot: xt (packed input), V[xi][t][cp], M[xi][o/16][t][16]
 * (forward: each 16-channel block of a tile's 16 positions is read as 16
 * sequential streams by the output transform), a staging row for the output
 * transform; the weight gradient has gt (packed gy), Z[xi][t][cop] and its
 * accumulator dU[xi][o][cp] instead of M.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/conv_winograd.h"
#include "kernels/conv_winograd_f4.h"
#include "kernels/threadpool.h"

static atomic_bool wino_off;

void nb_wino_set_enabled(bool on) { atomic_store(&wino_off, !on); }

#define UNIT_BYTES (384u << 10) /* transformed data of one unit, per thread */
/* U holds 16 floats per (input, output) channel pair, and every unit of
 * work reads all of it: up to 16 MiB (512 -> 512 channels, measured on par
 * with im2col + GEMM at batch 8 on 7x7, faster above); wider layers stay on
 * im2col */
#define MAX_CHANNEL_PAIRS ((int64_t)512 * 512)
#define MIN_UNIT_TILES 48
/* fewer tile units than this: the output channels are split into parts of
 * at least MIN_PART_CHANNELS, each part a unit */
#define MIN_UNITS 4
#define MIN_PART_CHANNELS 64
#define MAX_CHANNEL_PAIRS_F4 ((int64_t)256 * 256)
#define F4_SHARE 0.8
#define F4_U_BYTES_PER_TILE (128.0 * 1024)

typedef struct plan {
    nb_wino s;
    bool gw;                  /* weight gradient */
    int m, np;                /* output tile m x m (2 or 4); transformed positions (m + 2)^2 */
    int64_t cp, cop;          /* cin, cout rounded up to 16 */
    int64_t nth, ntw;         /* tiles down and across an image */
    int64_t rb, cb, nrb, ncb; /* tiles per unit down and across; units per image so */
    int64_t imgs;             /* images per unit (more than one: whole images) */
    int64_t units;
    int64_t nob, obw;         /* output channels in nob parts of obw (the last may be narrower) */
    size_t u_b, xt_b, v_b, m_b, gt_b, acc_b, st_b, slot_b; /* bytes, 64-byte multiples */
} plan;

/* NABLA_WINOGRAD from the environment, read once: 0 if unset (or
 * anything else), 1 for "0" (the path off), 2 for "2" (F(2x2, 3x3) only) */
static int env_mode(void)
{
    static atomic_int env; /* 0: not read yet, else 1 + the mode */
    if (atomic_load(&env) == 0) {
        const char *e = getenv("NABLA_WINOGRAD");
        atomic_store(&env, 1 + (e && strcmp(e, "0") == 0 ? 1 : e && strcmp(e, "2") == 0 ? 2 : 0));
    }
    return atomic_load(&env) - 1;
}

/* The output tile of a forward call: s->tile when 2 or 4, else 4 where
 *  - its multiplies (36 a 4x4 tile) are at most F4_SHARE of F(2x2, 3x3)'s
 *    (16 a 2x2 tile; partial tiles at the edges count whole),
 *  - U, 36 floats a channel pair, stays within MAX_CHANNEL_PAIRS_F4 pairs,
 *  - and there are enough tiles to read it for: at most F4_U_BYTES_PER_TILE
 *    of U per 4x4 tile of the whole batch. ResNet-18's 256-channel 14x14
 *    layer at batch 1 has 16 tiles for 9.4 MB of U: as one unit it ran 2x
 *    slower than F(2x2, 3x3); split into channel parts (below) 0.45
 *    against 0.49 ms with hot caches, but level in the model, where U comes
 *    from memory (4.2 MB for F(2x2, 3x3)). At batch 8 it takes F(4x4, 3x3).
 * The choice depends on the shape alone, so that transformed weights cached
 * for one call fit every later call of the same shape. */
static int tile_for(const nb_wino *s, int64_t cp, int64_t cop)
{
    if (s->tile == 2 || s->tile == 4)
        return s->tile;
    if (env_mode() == 2 || cp * cop > MAX_CHANNEL_PAIRS_F4)
        return 2;
    double f2 = 16.0 * (double)((s->hout + 1) / 2) * (double)((s->wout + 1) / 2);
    double t4 = (double)((s->hout + 3) / 4) * (double)((s->wout + 3) / 4);
    double u4 = 36.0 * sizeof(float) * (double)cp * (double)cop;
    return 36.0 * t4 <= F4_SHARE * f2 && u4 <= F4_U_BYTES_PER_TILE * t4 * (double)s->N ? 4 : 2;
}

static size_t up64(size_t b) { return (b + 63) & ~(size_t)63; }
static int64_t up16(int64_t v) { return (v + 15) / 16 * 16; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static bool make_plan(const nb_wino *s, bool gw, plan *p)
{
    memset(p, 0, sizeof *p);
    p->s = *s, p->gw = gw;
    if (s->N < 1 || s->cin < 1 || s->cout < 1 || s->hout < 1 || s->wout < 1 || s->hin < 1 ||
        s->win < 1 || s->cin > (1 << 20) || s->cout > (1 << 20) || s->hout > (1 << 24) ||
        s->wout > (1 << 24))
        return false;
    p->cp = up16(s->cin), p->cop = up16(s->cout);
    if (p->cp * p->cop > MAX_CHANNEL_PAIRS)
        return false;
    p->m = gw ? 2 : tile_for(s, p->cp, p->cop);
    p->np = (p->m + 2) * (p->m + 2);
    p->nth = (s->hout + p->m - 1) / p->m, p->ntw = (s->wout + p->m - 1) / p->m;
    /* tiles per unit: their V and M about fill UNIT_BYTES, but at least
     * MIN_UNIT_TILES (each unit reads all of U once: wide layers need many
     * tiles per unit to pay for that, their V and M spilling to L3) */
    int64_t tmax = (int64_t)(UNIT_BYTES / ((size_t)p->np * 4 * (size_t)(p->cp + p->cop)));
    tmax = tmax < MIN_UNIT_TILES ? MIN_UNIT_TILES : tmax;
    /* rectangles of near-equal size, or whole images, several a unit when
     * small (at most N/4, so that the threads still get 4 units or more) */
    p->ncb = (p->ntw + tmax - 1) / tmax, p->cb = (p->ntw + p->ncb - 1) / p->ncb;
    p->ncb = (p->ntw + p->cb - 1) / p->cb; /* (no empty unit) */
    int64_t rows = tmax / p->cb > 1 ? tmax / p->cb : 1;
    p->nrb = (p->nth + rows - 1) / rows, p->rb = (p->nth + p->nrb - 1) / p->nrb;
    p->nrb = (p->nth + p->rb - 1) / p->rb;
    p->imgs = 1;
    if (p->nrb == 1 && p->ncb == 1) {
        int64_t fit = tmax / (p->nth * p->ntw), spread = s->N / 4 > 1 ? s->N / 4 : 1;
        p->imgs = fit < 1 ? 1 : fit > spread ? spread : fit;
    }
    p->units = (s->N + p->imgs - 1) / p->imgs * p->nrb * p->ncb;
    /* wide layers on small images make few units of tiles (ResNet-18's
     * 256-channel 14x14 layer at batch 1: 2 of 28 and 21 tiles, the threads
     * unbalanced, each reading all of U): the forward then splits the output
     * channels as well, each part a unit that reads its share of U; the
     * parts of a tile unit each transform its input again (1/cout of the
     * products' work per part). U is stored part by part (U[part][xi][c][o'],
     * parts padded to one width), so that a part is one stream from memory:
     * strided rows of a part's 128 channels ran that layer's 3 convs at
     * 0.73-0.80 ms each against 0.61-0.62 ms, U coming from memory */
    p->nob = 1;
    while (!gw && p->units * p->nob < MIN_UNITS && p->cop / (2 * p->nob) >= MIN_PART_CHANNELS)
        p->nob *= 2;
    p->obw = up16((p->cop + p->nob - 1) / p->nob);
    p->nob = (p->cop + p->obw - 1) / p->obw;
    p->units *= p->nob;
    size_t T = (size_t)(p->imgs * p->rb * p->cb), f = sizeof(float), np = (size_t)p->np;
    p->xt_b = up64((size_t)((p->m * p->rb + 2) * (p->m * p->cb + 2) * p->cp) * f);
    p->v_b = up64(np * T * (size_t)p->cp * f);
    p->m_b = up64(np * T * (size_t)p->obw * f);
    p->u_b = up64(np * (size_t)(p->cp * p->nob * p->obw) * f);
    if (gw) {
        p->gt_b = up64((size_t)(4 * p->rb * p->cb * p->cop) * f);
        p->acc_b = p->u_b;
        p->u_b = 0;
    } else {
        p->st_b = up64((size_t)(p->m * p->m * p->cb * 16) * f);
    }
    p->slot_b = p->xt_b + p->v_b + p->m_b + p->gt_b + p->acc_b + p->st_b;
    return true;
}

size_t nb_wino_workspace(const nb_wino *s, bool grad_weight, int64_t threads)
{
    plan p;
    if (!make_plan(s, grad_weight, &p))
        return 0;
    int64_t slots = threads < 1 ? 1 : threads > p.units ? p.units : threads;
    return p.u_b + (size_t)slots * p.slot_b;
}

/* Slots that fit in ws_size (at most the thread count and the unit count). */
static int64_t slots_for(const plan *p, size_t ws_size)
{
    int64_t want = nb_get_num_threads();
    want = want < 1 ? 1 : want > p->units ? p->units : want;
    int64_t fit = ws_size >= p->u_b ? (int64_t)((ws_size - p->u_b) / p->slot_b) : 0;
    return fit < want ? fit : want;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "kernels/avx512.h"

#define TGT NB_AVX512_TGT

bool nb_wino_enabled(void)
{
    /* (libgcc's and compiler-rt's constructors have run the CPU detection) */
    return !atomic_load(&wino_off) && env_mode() != 1 && __builtin_cpu_supports("avx512f");
}

/* ---- channels-last copies: 16 x 16 transposes in registers ------------------ */

/* r[i] (row i, 16 lanes) becomes column i: r[i][l] = old r[l][i]. */
static inline __attribute__((always_inline)) TGT void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4i + k], 128-bit lane L: column 4L + k of rows 4i .. 4i+3 */
    for (int i = 0; i < 4; i++)
        for (int h = 0; h < 2; h++) {
            __m512d x = _mm512_castps_pd(t[4 * i + h]), y = _mm512_castps_pd(t[4 * i + 2 + h]);
            r[4 * i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(x, y));
            r[4 * i + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x, y));
        }
    for (int k = 0; k < 4; k++) {
        __m512 a = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
        __m512 b = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
        __m512 c = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
        __m512 d = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
        t[k] = _mm512_shuffle_f32x4(a, c, 0x88);
        t[8 + k] = _mm512_shuffle_f32x4(a, c, 0xDD);
        t[4 + k] = _mm512_shuffle_f32x4(b, d, 0x88);
        t[12 + k] = _mm512_shuffle_f32x4(b, d, 0xDD);
    }
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}

/* dst[r, q, c] (nr x ncol x ncp, channels last) = src[c, r0 + r, c0 + q] for
 * c < nc inside the H x W planes of src, else 0. Only in-range addresses
 * are formed: the columns inside are [qa, qb). */
TGT static void pack(const float *src, int64_t nc, int64_t ncp, int64_t H, int64_t W, int64_t r0,
                     int64_t c0, int64_t nr, int64_t ncol, float *dst)
{
    int64_t qa = -c0 < 0 ? 0 : -c0 > ncol ? ncol : -c0;
    int64_t qb = W - c0 < qa ? qa : W - c0 > ncol ? ncol : W - c0;
    /* rows outside the image and columns outside [qa, qb): zeros */
    for (int64_t r = 0; r < nr; r++) {
        float *d = dst + r * ncol * ncp;
        int64_t ih = r0 + r;
        if (ih < 0 || ih >= H || qa == qb) {
            memset(d, 0, (size_t)(ncol * ncp) * sizeof(float));
            continue;
        }
        memset(d, 0, (size_t)(qa * ncp) * sizeof(float));
        memset(d + qb * ncp, 0, (size_t)((ncol - qb) * ncp) * sizeof(float));
    }
    int64_t ra = -r0 < 0 ? 0 : -r0 > nr ? nr : -r0; /* rows inside: [ra, rb) */
    int64_t rb = H - r0 < ra ? ra : H - r0 > nr ? nr : H - r0;
    if (qa == qb)
        return;
    /* 16 channels at a time, their rows in order (16 sequential streams),
     * the row after next prefetched */
    for (int64_t cb = 0; cb < ncp; cb += 16)
        for (int64_t r = ra; r < rb; r++) {
            float *d = dst + r * ncol * ncp;
            int64_t ih = r0 + r;
            if (r + 2 < rb)
                for (int i = 0; i < 16 && cb + i < nc; i++)
                    _mm_prefetch((const char *)(src + ((cb + i) * H + ih + 2) * W + c0 + qa),
                                 _MM_HINT_T0);
            for (int64_t q0 = qa; q0 < qb; q0 += 16) {
                __mmask16 m = nb_lanes16(qb - q0);
                __m512 v[16];
                for (int i = 0; i < 16; i++)
                    v[i] = cb + i < nc ? _mm512_maskz_loadu_ps(m, src + ((cb + i) * H + ih) * W + c0 + q0)
                                       : _mm512_setzero_ps();
                transpose16(v);
                int64_t nq = qb - q0 < 16 ? qb - q0 : 16;
                for (int64_t i = 0; i < nq; i++)
                    _mm512_storeu_ps(d + (q0 + i) * ncp + cb, v[i]);
            }
        }
}

/* ---- the products: C[r, v] (+)= sum_k A[r*ar + k*ak] * B[k*bk + v], r < R,
 * v < 16*OV, as R x OV vectors kept in registers ---------------------------- */

#define RMAX 12

typedef void (*kern_fn)(int64_t K, const float *a, int64_t ar, int64_t ak, const float *b,
                        int64_t bk, float *c, int64_t cr, int64_t cv, bool acc);

static inline __attribute__((always_inline)) TGT void
kern_body(const int R, const int OV, int64_t K, const float *a, int64_t ar, int64_t ak,
          const float *b, int64_t bk, float *c, int64_t cr, int64_t cv, bool acc)
{
    __m512 s[RMAX][4];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < OV; v++)
            s[r][v] = acc ? _mm512_loadu_ps(c + r * cr + v * cv) : _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < OV; v++)
            bv[v] = _mm512_loadu_ps(b + k * bk + 16 * v);
        const float *ak_ = a + k * ak;
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            __m512 w = _mm512_set1_ps(ak_[r * ar]);
#pragma GCC unroll 4
            for (int v = 0; v < OV; v++)
                s[r][v] = _mm512_fmadd_ps(w, bv[v], s[r][v]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < OV; v++)
            _mm512_storeu_ps(c + r * cr + v * cv, s[r][v]);
}

#define KERN(R, OV)                                                                        \
    TGT static void kern_##R##_##OV(int64_t K, const float *a, int64_t ar, int64_t ak,     \
                                    const float *b, int64_t bk, float *c, int64_t cr,      \
                                    int64_t cv, bool acc)                                  \
    {                                                                                      \
        kern_body(R, OV, K, a, ar, ak, b, bk, c, cr, cv, acc);                             \
    }
#define KERNS(R) KERN(R, 1) KERN(R, 2) KERN(R, 3) KERN(R, 4)
KERNS(1) KERNS(2) KERNS(3) KERNS(4) KERNS(5) KERNS(6)
KERNS(7) KERNS(8) KERNS(9) KERNS(10) KERNS(11) KERNS(12)
#define KROW(R) {kern_##R##_1, kern_##R##_2, kern_##R##_3, kern_##R##_4}
static const kern_fn kerns[RMAX + 1][4] = {
    {0, 0, 0, 0}, KROW(1), KROW(2), KROW(3), KROW(4), KROW(5), KROW(6),
    KROW(7), KROW(8), KROW(9), KROW(10), KROW(11), KROW(12),
};
/* rows per register tile for OV vectors: R * OV <= 24 accumulators */
static const int rows_for[5] = {0, 12, 12, 8, 6};

/* C (rows x nv vectors of 16, vector v of row r at c + r*cr + v*cv) (+)= A B
 * over K, register tile by register tile. */
static void product(int64_t rows, int64_t nv, int64_t K, const float *a, int64_t ar, int64_t ak,
                    const float *b, int64_t bk, float *c, int64_t cr, int64_t cv, bool acc)
{
    for (int64_t v0 = 0; v0 < nv; v0 += 4) {
        int ov = (int)min64(4, nv - v0);
        int64_t ng = (rows + rows_for[ov] - 1) / rows_for[ov]; /* groups of near-equal size */
        for (int64_t g = 0; g < ng; g++) {
            int64_t r0 = g * rows / ng;
            int r = (int)((g + 1) * rows / ng - r0);
            kerns[r][ov - 1](K, a + r0 * ar, ar, ak, b + 16 * v0, bk, c + r0 * cr + v0 * cv, cr,
                             cv, acc);
        }
    }
}

/* ---- transforms ------------------------------------------------------------ */

/* V[xi, t0 + t, c] = (B^T d B)[xi] for rbu x cbu tiles t of a unit of T
 * tiles, from the packed input xt ((2rbu+2) x ncol x cp). */
TGT static void input_transform(const float *xt, int64_t ncol, int64_t cp, int64_t rbu,
                                int64_t cbu, float *V, int64_t T, int64_t t0)
{
    for (int64_t ti = 0; ti < rbu; ti++)
        for (int64_t tj = 0; tj < cbu; tj++) {
            int64_t t = t0 + ti * cbu + tj;
            const float *base = xt + (2 * ti * ncol + 2 * tj) * cp;
            for (int64_t cv = 0; cv < cp; cv += 16) {
                __m512 d[4][4], e[4][4];
                for (int k = 0; k < 4; k++)
                    for (int l = 0; l < 4; l++)
                        d[k][l] = _mm512_loadu_ps(base + (k * ncol + l) * cp + cv);
                for (int l = 0; l < 4; l++) {
                    e[0][l] = _mm512_sub_ps(d[0][l], d[2][l]);
                    e[1][l] = _mm512_add_ps(d[1][l], d[2][l]);
                    e[2][l] = _mm512_sub_ps(d[2][l], d[1][l]);
                    e[3][l] = _mm512_sub_ps(d[1][l], d[3][l]);
                }
                float *o = V + t * cp + cv;
                int64_t xs = T * cp;
                for (int k = 0; k < 4; k++) {
                    _mm512_storeu_ps(o + (4 * k + 0) * xs, _mm512_sub_ps(e[k][0], e[k][2]));
                    _mm512_storeu_ps(o + (4 * k + 1) * xs, _mm512_add_ps(e[k][1], e[k][2]));
                    _mm512_storeu_ps(o + (4 * k + 2) * xs, _mm512_sub_ps(e[k][2], e[k][1]));
                    _mm512_storeu_ps(o + (4 * k + 3) * xs, _mm512_sub_ps(e[k][1], e[k][3]));
                }
            }
        }
}

/* Z[xi, t0 + t, o] = (A gy A^T)[xi] from the packed gradient gt
 * (2rbu x 2cbu x cop), for a unit of T tiles. */
TGT static void grad_transform(const float *gt, int64_t cop, int64_t rbu, int64_t cbu, float *Z,
                               int64_t T, int64_t t0)
{
    int64_t ncol = 2 * cbu;
    for (int64_t ti = 0; ti < rbu; ti++)
        for (int64_t tj = 0; tj < cbu; tj++) {
            int64_t t = t0 + ti * cbu + tj;
            const float *base = gt + (2 * ti * ncol + 2 * tj) * cop;
            for (int64_t ov = 0; ov < cop; ov += 16) {
                __m512 g[2][2], e[4][2];
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++)
                        g[i][j] = _mm512_loadu_ps(base + (i * ncol + j) * cop + ov);
                for (int j = 0; j < 2; j++) {
                    e[0][j] = g[0][j];
                    e[1][j] = _mm512_add_ps(g[0][j], g[1][j]);
                    e[2][j] = _mm512_sub_ps(g[0][j], g[1][j]);
                    e[3][j] = _mm512_sub_ps(_mm512_setzero_ps(), g[1][j]);
                }
                float *o = Z + t * cop + ov;
                int64_t xs = T * cop;
                for (int a = 0; a < 4; a++) {
                    _mm512_storeu_ps(o + (4 * a + 0) * xs, e[a][0]);
                    _mm512_storeu_ps(o + (4 * a + 1) * xs, _mm512_add_ps(e[a][0], e[a][1]));
                    _mm512_storeu_ps(o + (4 * a + 2) * xs, _mm512_sub_ps(e[a][0], e[a][1]));
                    _mm512_storeu_ps(o + (4 * a + 3) * xs, _mm512_sub_ps(_mm512_setzero_ps(), e[a][1]));
                }
            }
        }
}

/* F(2x2, 3x3)'s output transform for one row of cbu tiles, 16 channels:
 * st (2 rows x 2 cbu columns x 16) = clamp(A^T M A + bias), from tiles t0 ..
 * t0 + cbu - 1 of M16 (M's 16-channel block, positions xs apart). */
TGT static void tile_row2(const float *M16, int64_t xs, int64_t t0, int64_t cbu,
                          const float b16[16], const nb_wino *s, float *st)
{
    const __m512 bv = _mm512_loadu_ps(b16);
    /* min(hi, max(lo, v)) keeps a NaN v (the second operand wins) */
    const __m512 lov = _mm512_set1_ps(s->clamp ? s->lo : -INFINITY);
    const __m512 hiv = _mm512_set1_ps(s->clamp ? s->hi : INFINITY);
#define CLAMP(v) (s->clamp ? _mm512_min_ps(hiv, _mm512_max_ps(lov, (v))) : (v))
    for (int64_t tj = 0; tj < cbu; tj++) {
        const float *m = M16 + (t0 + tj) * 16;
        __m512 r0[4], r1[4];
        for (int l = 0; l < 4; l++) {
            __m512 m0 = _mm512_loadu_ps(m + l * xs), m1 = _mm512_loadu_ps(m + (4 + l) * xs);
            __m512 m2 = _mm512_loadu_ps(m + (8 + l) * xs), m3 = _mm512_loadu_ps(m + (12 + l) * xs);
            r0[l] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
            r1[l] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
        }
        float *q = st + 2 * tj * 16;
        _mm512_storeu_ps(q, CLAMP(_mm512_add_ps(bv, _mm512_add_ps(_mm512_add_ps(r0[0], r0[1]), r0[2]))));
        _mm512_storeu_ps(q + 16, CLAMP(_mm512_add_ps(bv, _mm512_sub_ps(_mm512_sub_ps(r0[1], r0[2]), r0[3]))));
        q += 2 * cbu * 16;
        _mm512_storeu_ps(q, CLAMP(_mm512_add_ps(bv, _mm512_add_ps(_mm512_add_ps(r1[0], r1[1]), r1[2]))));
        _mm512_storeu_ps(q + 16, CLAMP(_mm512_add_ps(bv, _mm512_sub_ps(_mm512_sub_ps(r1[1], r1[2]), r1[3]))));
    }
#undef CLAMP
}

/* out[n, o, m(ti0+ti) + a, m(tj0+tj) + b] = (A^T M A)[a, b] + bias[o] from
 * tiles t0 + ti*cbu + tj of a unit of T, inside the output only: a tile
 * row's m output rows of 16 channels at a time are staged channels-last in
 * st (m x m cbu x 16), then transposed to rows. */
TGT static void output_transform(const plan *p, const float *M, int64_t T, int64_t t0,
                                 int64_t rbu, int64_t cbu, int64_t ti0, int64_t tj0, int64_t o0,
                                 int64_t ow, const float *bias, float *out, const float *res,
                                 float *st)
{
    const nb_wino *s = &p->s;
    int64_t plane = s->hout * s->wout, xs = T * ow, m = p->m;
    int64_t ow0 = m * tj0, nq = min64(m * cbu, s->wout - ow0); /* output columns */
    for (int64_t ti = 0; ti < rbu; ti++) {
        int64_t oh = m * (ti0 + ti);
        int64_t nh = min64(m, s->hout - oh);
        for (int64_t ov = o0; ov < o0 + ow; ov += 16) {
            int nl = (int)min64(16, s->cout - ov);
            if (nl <= 0)
                break;
            float b16[16] = {0};
            for (int l = 0; l < nl && bias; l++)
                b16[l] = bias[ov + l];
            const float *m16 = M + (ov - o0) * T;
            if (m == 4)
                nb_wino4_output_row(m16, xs, t0 + ti * cbu, cbu, b16, s->clamp, s->lo, s->hi, st);
            else
                tile_row2(m16, xs, t0 + ti * cbu, cbu, b16, s, st);
            for (int64_t a = 0; a < nh; a++) {
                const float *row = st + a * m * cbu * 16;
                int64_t at = ov * plane + (oh + a) * s->wout + ow0;
                float *y = out + at;
                const float *r = res ? res + at : NULL;
                const __m512 rlo = _mm512_set1_ps(s->rclamp ? s->rlo : -INFINITY);
                const __m512 rhi = _mm512_set1_ps(s->rclamp ? s->rhi : INFINITY);
                for (int64_t q0 = 0; q0 < nq; q0 += 16) {
                    __m512 v[16];
                    for (int i = 0; i < 16; i++)
                        v[i] = q0 + i < nq ? _mm512_loadu_ps(row + (q0 + i) * 16) : _mm512_setzero_ps();
                    transpose16(v);
                    __mmask16 mk = nb_lanes16(nq - q0);
                    for (int l = 0; l < nl; l++) {
                        if (r) { /* + the residual, then its clamp (a NaN stays NaN) */
                            v[l] = _mm512_add_ps(v[l], _mm512_maskz_loadu_ps(mk, r + l * plane + q0));
                            if (s->rclamp)
                                v[l] = _mm512_min_ps(rhi, _mm512_max_ps(rlo, v[l]));
                        }
                        _mm512_mask_storeu_ps(y + l * plane + q0, mk, v[l]);
                    }
                }
            }
        }
    }
}

/* ---- units ------------------------------------------------------------------ */

typedef struct job {
    const plan *p;
    const float *in, *w2, *bias; /* w2: gy for the weight gradient */
    float *out;
    const float *U;
    char *slots;
    int64_t nslots;
    atomic_int_fast64_t next; /* the forward's next unit to take */
} job;

/* A unit: images [n, n + nimg), each the tiles [ti0, ti0 + rbu) x
 * [tj0, tj0 + cbu) (several whole images, or a rectangle of one). */
typedef struct unit {
    int64_t n, nimg, ti0, tj0, rbu, cbu;
} unit;

static unit unit_of(const plan *p, int64_t u)
{
    unit r;
    int64_t per = p->nrb * p->ncb;
    r.n = u / per * p->imgs;
    r.nimg = min64(p->imgs, p->s.N - r.n);
    r.ti0 = u % per / p->ncb * p->rb, r.tj0 = u % p->ncb * p->cb;
    r.rbu = min64(p->rb, p->nth - r.ti0), r.cbu = min64(p->cb, p->ntw - r.tj0);
    return r;
}

/* Pack image n's part of unit t and transform it into V at tile t0. */
static void image_input(const plan *p, const float *in, const unit *t, int64_t n, float *xt,
                        float *V, int64_t T, int64_t t0)
{
    const nb_wino *s = &p->s;
    int64_t ncol = p->m * t->cbu + 2;
    pack(in + n * s->cin * s->hin * s->win, s->cin, p->cp, s->hin, s->win,
         p->m * t->ti0 - s->pt, p->m * t->tj0 - s->pl, p->m * t->rbu + 2, ncol, xt);
    if (p->m == 4)
        nb_wino4_input(xt, ncol, p->cp, t->rbu, t->cbu, V, T, t0);
    else
        input_transform(xt, ncol, p->cp, t->rbu, t->cbu, V, T, t0);
}

static void run_conv(void *ctx, int64_t s0, int64_t s1)
{
    job *j = ctx;
    const plan *p = j->p;
    const nb_wino *s = &p->s;
    for (int64_t sl = s0; sl < s1; sl++) {
        char *base = j->slots + (size_t)sl * p->slot_b;
        float *xt = (float *)base, *V = (float *)(base + p->xt_b);
        float *M = (float *)(base + p->xt_b + p->v_b);
        float *st = (float *)(base + p->xt_b + p->v_b + p->m_b);
        /* units are taken in turn (a slot slowed down takes fewer): each
         * writes its own outputs, whoever runs it */
        for (int64_t u; (u = atomic_fetch_add(&j->next, 1)) < p->units;) {
            unit t = unit_of(p, u / p->nob);
            int64_t o0 = u % p->nob * p->obw, ow = min64(p->obw, p->cop - o0); /* channels */
            int64_t ti = t.rbu * t.cbu, T = t.nimg * ti;
            for (int64_t i = 0; i < t.nimg; i++)
                image_input(p, j->in, &t, t.n + i, xt, V, T, i * ti);
            for (int xi = 0; xi < p->np; xi++)
                product(T, ow / 16, p->cp, V + xi * T * p->cp, p->cp, 1,
                        j->U + (u % p->nob * p->np + xi) * p->cp * p->obw, p->obw,
                        M + xi * T * ow, 16, T * 16,
                        false);
            for (int64_t i = 0; i < t.nimg; i++)
                output_transform(p, M, T, i * ti, t.rbu, t.cbu, t.ti0, t.tj0, o0, ow, j->bias,
                                 j->out + (t.n + i) * s->cout * s->hout * s->wout,
                                 s->res ? s->res + (t.n + i) * s->cout * s->hout * s->wout : NULL,
                                 st);
        }
    }
}

static void run_grad_weight(void *ctx, int64_t s0, int64_t s1)
{
    const job *j = ctx;
    const plan *p = j->p;
    const nb_wino *s = &p->s;
    for (int64_t sl = s0; sl < s1; sl++) {
        char *base = j->slots + (size_t)sl * p->slot_b;
        float *xt = (float *)base, *V = (float *)(base + p->xt_b);
        float *Z = (float *)(base + p->xt_b + p->v_b);
        float *gt = (float *)(base + p->xt_b + p->v_b + p->m_b);
        float *acc = (float *)(base + p->xt_b + p->v_b + p->m_b + p->gt_b);
        memset(acc, 0, p->acc_b);
        int64_t ub = sl * p->units / j->nslots, ue = (sl + 1) * p->units / j->nslots;
        for (int64_t u = ub; u < ue; u++) {
            unit t = unit_of(p, u);
            int64_t ti = t.rbu * t.cbu, T = t.nimg * ti;
            for (int64_t i = 0; i < t.nimg; i++) {
                int64_t n = t.n + i;
                image_input(p, j->in, &t, n, xt, V, T, i * ti);
                pack(j->w2 + n * s->cout * s->hout * s->wout, s->cout, p->cop, s->hout, s->wout,
                     2 * t.ti0, 2 * t.tj0, 2 * t.rbu, 2 * t.cbu, gt);
                grad_transform(gt, p->cop, t.rbu, t.cbu, Z, T, i * ti);
            }
            for (int xi = 0; xi < 16; xi++)
                product(s->cout, p->cp / 16, T, Z + xi * T * p->cop, 1, p->cop,
                        V + xi * T * p->cp, p->cp, acc + xi * p->cop * p->cp, p->cp, 16, true);
        }
    }
}

/* ---- entry points ------------------------------------------------------------ */

/* U[xi, c, o] = (G g[o, c] G^T)[xi] for input channels [c0, c1) (padding
 * channels: 0). g is w[o, c] or, flipped and transposed, w[c, o]. */
typedef struct wjob {
    const plan *p;
    const float *w;
    bool flip_t;
    float *U;
} wjob;

TGT static void weight_transform(void *ctx, int64_t c0, int64_t c1)
{
    const wjob *j = ctx;
    const plan *p = j->p;
    const nb_wino *s = &p->s;
    if (p->m == 4) {
        nb_wino4_weights(j->w, j->flip_t, s->cin, s->cout, p->cp, p->cop, p->obw, c0, c1, j->U);
        return;
    }
    /* 16 output channels at a time: g[o + lane][c][k][l] is 9 floats at
     * w + base + lane * stride (make_plan keeps the weight under 2^31) */
    int stride = j->flip_t ? 9 : (int)(s->cin * 9);
    __m512i lane = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4,
                                                       3, 2, 1, 0),
                                      _mm512_set1_epi32(stride));
    __m512 half = _mm512_set1_ps(0.5f);
    for (int64_t c = c0; c < c1; c++) {
        for (int64_t o = 0; o < p->cop; o += 16) {
            float *u = j->U + (o / p->obw * 16 * p->cp + c) * p->obw + o % p->obw;
            int64_t xs = p->cp * p->obw;
            int nl = (int)min64(16, s->cout - o);
            if (c >= s->cin || nl <= 0) {
                for (int xi = 0; xi < 16; xi++)
                    _mm512_storeu_ps(u + xi * xs, _mm512_setzero_ps());
                continue;
            }
            __mmask16 m = nb_lanes16(nl);
            const float *base = j->flip_t ? j->w + (c * s->cout + o) * 9 : j->w + (o * s->cin + c) * 9;
            __m512 g[3][3], h[4][3];
            for (int k = 0; k < 3; k++)
                for (int l = 0; l < 3; l++) {
                    int at = j->flip_t ? (2 - k) * 3 + 2 - l : k * 3 + l;
                    g[k][l] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, lane, base + at, 4);
                }
            for (int l = 0; l < 3; l++) {
                h[0][l] = g[0][l];
                h[1][l] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(g[0][l], g[1][l]), g[2][l]));
                h[2][l] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(g[0][l], g[1][l]), g[2][l]));
                h[3][l] = g[2][l];
            }
            for (int k = 0; k < 4; k++) {
                __m512 v[4] = {h[k][0],
                               _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(h[k][0], h[k][1]), h[k][2])),
                               _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(h[k][0], h[k][1]), h[k][2])),
                               h[k][2]};
                for (int l = 0; l < 4; l++)
                    _mm512_storeu_ps(u + (4 * k + l) * xs, v[l]);
            }
        }
    }
}

size_t nb_wino_weights_bytes(const nb_wino *s)
{
    plan p;
    return make_plan(s, false, &p) ? p.u_b : 0;
}

void nb_wino_transform(const nb_wino *s, const float *w, bool flip_t, float *u)
{
    plan p;
    if (!make_plan(s, false, &p))
        return;
    wjob wj = {&p, w, flip_t, u};
    nb_parallel_for(p.cp, 8, weight_transform, &wj);
}

void nb_wino_conv_pre(const nb_wino *s, const float *u, const float *bias, const float *in,
                      float *out, char *ws, size_t ws_size)
{
    plan p;
    if (!make_plan(s, false, &p))
        return;
    int64_t nslots = slots_for(&p, ws_size);
    if (nslots < 1)
        return;
    job j = {&p, in, NULL, bias, out, u, ws + p.u_b, nslots, 0};
    nb_parallel_for(nslots, 1, run_conv, &j);
}

void nb_wino_conv(const nb_wino *s, const float *w, bool flip_t, const float *bias,
                  const float *in, float *out, char *ws, size_t ws_size)
{
    plan p;
    if (!make_plan(s, false, &p) || slots_for(&p, ws_size) < 1)
        return;
    nb_wino_transform(s, w, flip_t, (float *)ws);
    nb_wino_conv_pre(s, (const float *)ws, bias, in, out, ws, ws_size);
}

void nb_wino_grad_weight(const nb_wino *s, const float *in, const float *gy, float *dw, char *ws,
                         size_t ws_size)
{
    plan p;
    if (!make_plan(s, true, &p))
        return;
    int64_t nslots = slots_for(&p, ws_size);
    if (nslots < 1)
        return;
    job j = {&p, in, gy, NULL, NULL, NULL, ws, nslots, 0};
    nb_parallel_for(nslots, 1, run_grad_weight, &j);
    /* sum the slots' accumulators in slot order, then dw = G^T dU G */
    size_t acc_off = p.xt_b + p.v_b + p.m_b + p.gt_b;
    float *acc = (float *)(ws + acc_off);
    int64_t na = 16 * p.cop * p.cp;
    for (int64_t sl = 1; sl < nslots; sl++) {
        const float *a = (const float *)(ws + (size_t)sl * p.slot_b + acc_off);
        for (int64_t i = 0; i < na; i++)
            acc[i] += a[i];
    }
    for (int64_t o = 0; o < s->cout; o++)
        for (int64_t c = 0; c < s->cin; c++) {
            float x[4][4], h[3][4];
            for (int xi = 0; xi < 16; xi++)
                x[xi / 4][xi % 4] = acc[(xi * p.cop + o) * p.cp + c];
            for (int l = 0; l < 4; l++) {
                h[0][l] = x[0][l] + 0.5f * (x[1][l] + x[2][l]);
                h[1][l] = 0.5f * (x[1][l] - x[2][l]);
                h[2][l] = 0.5f * (x[1][l] + x[2][l]) + x[3][l];
            }
            float *d = dw + (o * s->cin + c) * 9;
            for (int k = 0; k < 3; k++) {
                d[3 * k + 0] = h[k][0] + 0.5f * (h[k][1] + h[k][2]);
                d[3 * k + 1] = 0.5f * (h[k][1] - h[k][2]);
                d[3 * k + 2] = 0.5f * (h[k][1] + h[k][2]) + h[k][3];
            }
        }
}

#else /* no x86-64 intrinsics: the path is never enabled */

bool nb_wino_enabled(void) { return false; }

size_t nb_wino_weights_bytes(const nb_wino *s)
{
    (void)s;
    return 0;
}

void nb_wino_transform(const nb_wino *s, const float *w, bool flip_t, float *u)
{
    (void)s, (void)w, (void)flip_t, (void)u;
}

void nb_wino_conv_pre(const nb_wino *s, const float *u, const float *bias, const float *in,
                      float *out, char *ws, size_t ws_size)
{
    (void)s, (void)u, (void)bias, (void)in, (void)out, (void)ws, (void)ws_size;
}

void nb_wino_conv(const nb_wino *s, const float *w, bool flip_t, const float *bias,
                  const float *in, float *out, char *ws, size_t ws_size)
{
    (void)s, (void)w, (void)flip_t, (void)bias, (void)in, (void)out, (void)ws, (void)ws_size;
}

void nb_wino_grad_weight(const nb_wino *s, const float *in, const float *gy, float *dw, char *ws,
                         size_t ws_size)
{
    (void)s, (void)in, (void)gy, (void)dw, (void)ws, (void)ws_size;
}

#endif
