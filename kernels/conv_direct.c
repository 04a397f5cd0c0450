/* Direct f32 convolution for few input channels (kernels/conv_direct.h):
 *
 *   y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * x[n, c, i*s0 - p0 + p, j*s1 - p1 + q]
 *
 * with x outside the image 0, then clamped to [lo, hi] when asked.
 *
 * With C * KH * KW taps this small (27 for a 3-channel 3x3 kernel) an
 * im2col + GEMM spends a good part of its time gathering and moving the
 * im2col matrix. Here each input row an output row reads is first copied
 * (for a chunk of up to CW = 128 output columns) into s1 "phase rows" on the
 * stack: phase a holds r[(j0 + m)*s1 + a - p1], zeros outside the image,
 * so that tap q of output column j0 + m is phase q % s1 at m + q / s1 and
 * every tap vector is one unaligned load at any stride. At stride 2 one
 * pair of loads and two deinterleaving permutes (vpermt2ps) give both
 * phases; past either edge of the row a masked load (shifted by a lane
 * permute at the left edge) supplies the zeros, and every address formed
 * is inside the row, so no pointer leaves the input. Phase rows are kept
 * in a ring of KH slots per channel while later output rows read them
 * again. Kernel rows that fall outside the image are left out.
 *
 * The chunk's columns are then walked 32 at a time (two 16-lane vectors;
 * one when fewer remain), and for each block of output channels (8 with
 * two vectors, 16 with one: 16 accumulators) the taps are streamed through
 * the accumulators with each weight broadcast from memory into the FMA,
 * so every tap vector serves all the block's channels. The weights are
 * first repacked tap-major (wp[t][o], the workspace) so that a block's
 * weights for one tap sit side by side. Bias and clamp are applied in
 * registers and each output row segment is written with one masked store.
 *
 * Work: the N * OH output rows are split into contiguous ranges over the
 * thread pool. Every output is summed in the same order (taps ascending,
 * then the bias) whatever the split, so results do not depend on the
 * thread count.
 */
#include "kernels/conv_direct.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/threadpool.h"

static bool shape_ok(const nb_dconv *g)
{
    return g && g->N >= 0 && g->C >= 1 && g->C <= NB_DCONV_MAX_C && g->H >= 1 && g->W >= 1 &&
           g->CO >= 1 && g->OH >= 1 && g->OW >= 1 && g->KH >= 1 && g->KH <= NB_DCONV_MAX_K &&
           g->KW >= 1 && g->KW <= NB_DCONV_MAX_K && (g->s0 == 1 || g->s0 == 2) &&
           (g->s1 == 1 || g->s1 == 2) && g->p0 >= 0 && g->p1 >= 0 &&
           g->p0 <= INT32_MAX && g->p1 <= INT32_MAX && g->H <= INT32_MAX &&
           g->W <= INT32_MAX && g->OH <= INT32_MAX && g->OW <= INT32_MAX;
}

static bool env_enabled(void)
{
    const char *e = getenv("NABLA_DIRECT_CONV");
    return !(e && strcmp(e, "0") == 0);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "kernels/avx512.h"

#define TGT NB_AVX512_TGT
#define INL __attribute__((always_inline)) inline
#define MB2 8  /* output channels a block, two vectors */
#define MB1 16 /* output channels a block, one vector */
#define VW 32  /* columns a block: two vectors */
#define CW 128 /* columns a chunk */
#define LMAX (CW + 16) /* floats of a phase row: CW + (KW - 1) / s1, rounded up to 16 */
#define MAXR (NB_DCONV_MAX_C * NB_DCONV_MAX_K) /* input rows of an output row */
#define MAXT (MAXR * NB_DCONV_MAX_K)           /* taps */

static bool cpu_ok(void) { return __builtin_cpu_supports("avx512f"); }

bool nb_dconv_supported(const nb_dconv *g)
{
    return shape_ok(g) && g->OW >= NB_DCONV_MIN_OW && cpu_ok() && env_enabled();
}

/* r[base + k] for k in [0, 16), 0 where base + k is outside [0, W). The
 * addresses formed stay inside the row: past the right edge a masked load
 * from r + base (base < W), past the left edge a masked load from r shifted
 * up by -base lanes. */
/* y[0..15] = v under mask m; a whole, 64-byte-aligned vector with a
 * streaming store when g->stream. */
static INL TGT void store(const nb_dconv *g, float *y, __mmask16 m, __m512 v)
{
    if (g->stream && m == 0xFFFF && ((uintptr_t)y & 63) == 0)
        _mm512_stream_ps(y, v);
    else
        _mm512_mask_storeu_ps(y, m, v);
}

static INL TGT __m512 load16(const float *r, int64_t W, int64_t base)
{
    if (base >= 0 && base + 16 <= W)
        return _mm512_loadu_ps(r + base);
    int64_t lo = base < 0 ? -base : 0, hi = W - base < 16 ? W - base : 16;
    if (lo >= hi)
        return _mm512_setzero_ps();
    if (lo == 0)
        return _mm512_maskz_loadu_ps(nb_lanes16(hi), r + base);
    /* lanes [lo, hi) take r[0], r[1], ..., r[hi - lo - 1] */
    __m512 v = _mm512_maskz_loadu_ps(nb_lanes16(hi - lo), r);
    __m512i idx = _mm512_sub_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                                     13, 14, 15),
                                   _mm512_set1_epi32((int)lo));
    return _mm512_maskz_permutexvar_ps((__mmask16)(nb_lanes16(hi) & ~nb_lanes16(lo)), idx, v);
}

/* The s1 phase rows of input row r for output columns [j0, j0 + L):
 * ph[a*L + m] = r[(j0 + m)*s1 + a - p1] (0 outside the row), so that tap q
 * of output column j0 + m is ph[(q % s1)*L + m + q / s1]. L is a multiple
 * of 16. At stride 2 one pair of loads gives both phases (even and odd
 * lanes). */
static TGT void build_phases(float *ph, const float *r, int64_t W, int64_t s1, int64_t p1,
                             int64_t j0, int64_t L)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int64_t m = 0; m < L; m += 16) {
        int64_t base = (j0 + m) * s1 - p1;
        if (s1 == 1) {
            _mm512_store_ps(ph + m, load16(r, W, base));
        } else {
            __m512 v0 = load16(r, W, base), v1 = load16(r, W, base + 16);
            _mm512_store_ps(ph + m, _mm512_permutex2var_ps(v0, even, v1));
            _mm512_store_ps(ph + L + m, _mm512_permutex2var_ps(v0, odd, v1));
        }
    }
}

/* mb output channels (from o0) x nvec vectors at column jj of a chunk: for
 * each input channel c, the taps of kernel rows [pa, pz) (tap k reads
 * tp[k] + jj; their weights wp[t*cop + o0 + o], cop floats apart from one
 * tap to the next), then bias and clamp; y points at the block's first
 * output, ys apart from one channel to the next, columns masked by m0, m1. */
static INL TGT void block(int mb, int nvec, const float *const *tp, int64_t jj, const float *wp,
                          int64_t cop, const nb_dconv *g, int64_t pa, int64_t pz, const float *b,
                          float *y, int64_t ys, __mmask16 m0, __mmask16 m1)
{
    __m512 a0[MB1], a1[MB1];
    for (int o = 0; o < mb; o++)
        a0[o] = a1[o] = _mm512_setzero_ps();
    const int64_t kk = g->KH * g->KW, seg = (pz - pa) * g->KW;
    for (int64_t c = 0; c < g->C; c++) {
        const float *wk = wp + (c * kk + pa * g->KW) * cop;
        for (int64_t k = 0; k < seg; k++, wk += cop, tp++) {
            const float *src = *tp + jj;
            __m512 t0 = _mm512_loadu_ps(src);
            if (nvec == 2) {
                __m512 t1 = _mm512_loadu_ps(src + 16);
                for (int o = 0; o < mb; o++) {
                    __m512 wv = _mm512_set1_ps(wk[o]);
                    a0[o] = _mm512_fmadd_ps(wv, t0, a0[o]);
                    a1[o] = _mm512_fmadd_ps(wv, t1, a1[o]);
                }
            } else {
                for (int o = 0; o < mb; o++)
                    a0[o] = _mm512_fmadd_ps(_mm512_set1_ps(wk[o]), t0, a0[o]);
            }
        }
    }
    /* min(hi, max(lo, v)) keeps a NaN v: the second operand wins */
    const __m512 lov = _mm512_set1_ps(g->lo), hiv = _mm512_set1_ps(g->hi);
    const bool clamp = g->clamp;
    for (int o = 0; o < mb; o++) {
        __m512 v0 = a0[o], v1 = a1[o];
        if (b) {
            __m512 bv = _mm512_set1_ps(b[o]);
            v0 = _mm512_add_ps(v0, bv);
            v1 = _mm512_add_ps(v1, bv);
        }
        if (clamp) {
            v0 = _mm512_min_ps(hiv, _mm512_max_ps(lov, v0));
            v1 = _mm512_min_ps(hiv, _mm512_max_ps(lov, v1));
        }
        store(g, y + o * ys, m0, v0);
        if (nvec == 2)
            store(g, y + o * ys + 16, m1, v1);
    }
}

#define BLOCK_CASE(nv, mb)                                                                \
    case mb:                                                                              \
        block(mb, nv, tp, jj, wp, cop, g, pa, pz, b, y, ys, m0, m1);                      \
        break;

/* block() with mb and nvec made compile-time constants (the loops unroll):
 * up to MB2 channels with two vectors, MB1 with one. */
static TGT void block_any(int mb, int nvec, const float *const *tp, int64_t jj, const float *wp,
                          int64_t cop, const nb_dconv *g, int64_t pa, int64_t pz,
                          const float *b, float *y, int64_t ys, __mmask16 m0, __mmask16 m1)
{
    if (nvec == 2) {
        switch (mb) {
            BLOCK_CASE(2, 8)
            BLOCK_CASE(2, 7)
            BLOCK_CASE(2, 6)
            BLOCK_CASE(2, 5)
            BLOCK_CASE(2, 4)
            BLOCK_CASE(2, 3)
            BLOCK_CASE(2, 2)
            BLOCK_CASE(2, 1)
        default: break;
        }
        return;
    }
    switch (mb) {
        BLOCK_CASE(1, 16)
        BLOCK_CASE(1, 15)
        BLOCK_CASE(1, 14)
        BLOCK_CASE(1, 13)
        BLOCK_CASE(1, 12)
        BLOCK_CASE(1, 11)
        BLOCK_CASE(1, 10)
        BLOCK_CASE(1, 9)
        BLOCK_CASE(1, 8)
        BLOCK_CASE(1, 7)
        BLOCK_CASE(1, 6)
        BLOCK_CASE(1, 5)
        BLOCK_CASE(1, 4)
        BLOCK_CASE(1, 3)
        BLOCK_CASE(1, 2)
        BLOCK_CASE(1, 1)
    default: break;
    }
}

typedef struct job {
    const nb_dconv *g;
    const float *x, *wp, *b; /* wp: the packed weights */
    float *y;
    int64_t cop;             /* floats from one tap's weights to the next (CO) */
    int64_t ys;              /* floats from one output channel to the next */
    int64_t ring;            /* 0: output row i at row i; else at row i % ring */
} job;

/* Output rows [begin, end) of the N * OH rows, each (image, row), in
 * column chunks of up to CW, chunk by chunk. The phase rows of input row
 * (c, ih) live in slot c*KH + ih % KH (the KH rows an output row reads
 * fall in distinct slots) and are kept while the next output rows of the
 * range read them again (the stride-2 3x3 rows are each read 1.5 times). */
static TGT void rows(void *ctx, int64_t begin, int64_t end)
{
    const job *J = ctx;
    const nb_dconv *g = J->g;
    const int64_t ys = J->ys, s1 = g->s1;
    _Alignas(64) float ph[MAXR * 2 * LMAX];
    int64_t held[MAXR]; /* the (image, input row) each slot holds, or -1 */
    const float *tp[MAXT];
    for (int64_t j0 = 0; j0 < g->OW; j0 += CW) {
        int64_t cw = g->OW - j0 < CW ? g->OW - j0 : CW;
        int64_t L = ((cw + 15) / 16 * 16 + (g->KW - 1) / s1 + 15) / 16 * 16;
        for (int64_t k = 0; k < MAXR; k++)
            held[k] = -1;
        for (int64_t u = begin; u < end; u++) {
            int64_t n = u / g->OH, i = u % g->OH;
            /* kernel rows p with input row i*s0 - p0 + p inside the image */
            int64_t top = i * g->s0 - g->p0;
            int64_t pa = top < 0 ? -top : 0, pz = g->H - top < g->KH ? g->H - top : g->KH;
            if (pz < pa)
                pz = pa;
            int64_t nt = 0;
            for (int64_t c = 0; c < g->C; c++)
                for (int64_t p = pa; p < pz; p++) {
                    int64_t ih = top + p, slot = c * g->KH + ih % g->KH;
                    float *rp = ph + slot * s1 * L;
                    if (held[slot] != n * g->H + ih) {
                        build_phases(rp, J->x + ((n * g->C + c) * g->H + ih) * g->W, g->W, s1,
                                     g->p1, j0, L);
                        held[slot] = n * g->H + ih;
                    }
                    for (int64_t q = 0; q < g->KW; q++)
                        tp[nt++] = rp + (q % s1) * L + q / s1;
                }
            float *yrow = J->y + n * g->CO * ys + (J->ring ? i % J->ring : i) * g->OW + j0;
            for (int64_t jj = 0; jj < cw; jj += VW) {
                int nvec = cw - jj > 16 ? 2 : 1;
                __mmask16 m0 = nb_lanes16(cw - jj), m1 = nb_lanes16(cw - jj - 16);
                int64_t step = nvec == 2 ? MB2 : MB1;
                for (int64_t o0 = 0; o0 < g->CO; o0 += step) {
                    int mb = (int)(g->CO - o0 < step ? g->CO - o0 : step);
                    block_any(mb, nvec, tp, jj, J->wp + o0, J->cop, g, pa, pz,
                              J->b ? J->b + o0 : NULL, yrow + o0 * ys + jj, ys, m0, m1);
                }
            }
        }
    }
    if (g->stream) /* streaming stores are weakly ordered: before anyone reads y */
        _mm_sfence();
}

size_t nb_dconv_workspace(const nb_dconv *g)
{
    if (!shape_ok(g))
        return 0;
    return (size_t)(g->CO * g->C * g->KH * g->KW) * sizeof(float);
}

void nb_dconv_pack(const nb_dconv *g, const float *w, float *wp)
{
    /* wp[t*CO + o] = w[o*T + t]: a tap's weights side by side */
    const int64_t T = g->C * g->KH * g->KW;
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < g->CO; o++)
            wp[t * g->CO + o] = w[o * T + t];
}

void nb_dconv_rows_f32(const nb_dconv *g, const float *x, const float *wp, const float *b,
                       int64_t i0, int64_t i1, float *y, int64_t ys, int64_t ring)
{
    if (!shape_ok(g) || !cpu_ok() || i0 < 0 || i1 > g->OH || i0 >= i1)
        return;
    job J = {g, x, wp, b, y, g->CO, ys, ring};
    rows(&J, i0, i1);
}

bool nb_dconv_f32(const nb_dconv *g, const float *x, const float *w, const float *b, float *y,
                  void *ws, size_t ws_size)
{
    if (!shape_ok(g) || !cpu_ok() || g->N == 0)
        return true;
    const int64_t T = g->C * g->KH * g->KW, cop = g->CO;
    size_t need = nb_dconv_workspace(g);
    float *wp = ws && ws_size >= need ? ws : NULL, *own = NULL;
    if (!wp && !(wp = own = malloc(need)))
        return false;
    nb_dconv_pack(g, w, wp);
    job J = {g, x, wp, b, y, cop, g->OH * g->OW, 0};
    /* about 64K multiply-adds a chunk at the least */
    double per_row = (double)g->CO * (double)g->OW * (double)T;
    int64_t grain = per_row >= 65536 ? 1 : (int64_t)(65536 / per_row);
    nb_parallel_for(g->N * g->OH, grain, rows, &J);
    free(own);
    return true;
}

#else /* not x86-64 with GCC or clang: callers keep im2col */

bool nb_dconv_supported(const nb_dconv *g)
{
    (void)shape_ok, (void)env_enabled;
    (void)g;
    return false;
}

size_t nb_dconv_workspace(const nb_dconv *g)
{
    (void)g;
    return 0;
}

bool nb_dconv_f32(const nb_dconv *g, const float *x, const float *w, const float *b, float *y,
                  void *ws, size_t ws_size)
{
    (void)g, (void)x, (void)w, (void)b, (void)y, (void)ws, (void)ws_size;
    return true;
}

void nb_dconv_pack(const nb_dconv *g, const float *w, float *wp)
{
    (void)g, (void)w, (void)wp;
}

void nb_dconv_rows_f32(const nb_dconv *g, const float *x, const float *wp, const float *b,
                       int64_t i0, int64_t i1, float *y, int64_t ys, int64_t ring)
{
    (void)g, (void)x, (void)wp, (void)b, (void)i0, (void)i1, (void)y, (void)ys, (void)ring;
}

#endif
