/* The f32 GEMM with a fused bias + clamp epilogue of kernels/sgemm_avx512.h.
 *
 * Three kinds of work cover C's columns, so that a narrow output (a 1x1
 * conv on a 7x7 or 14x14 image: N = 49, 196) wastes no lanes on its tail:
 *
 * - Wide tiles, MR2 rows x 32 columns: 2 * MR2 accumulator registers, per k
 *   two loads of B's row segment and 2 * MR2 FMAs with A's elements
 *   broadcast from memory (embedded broadcast), so the FMA units rather than
 *   the loads bound it. They cover the columns in panels of 32 while more
 *   than 16 of the tiled columns are left (a last panel of 17..31 columns is
 *   a masked wide tile).
 * - Narrow tiles, MR1 rows x 16 columns (one accumulator a row, more rows a
 *   tile): a last panel of at most 16 tiled columns, instead of a wide tile
 *   with its upper half masked off.
 * - Dot columns: the last R = nb_sgemm_avx512_dot_cols(N, K) columns (R is
 *   N mod 16 when that is 1..DOT_COLS, K is large enough for the dot path
 *   to be the cheaper one, and R columns of K floats fit DOT_FLOATS; else
 *   0) are copied once a call into a stack buffer (each column K floats,
 *   contiguous, zero-padded to a multiple of 16) and computed as dot
 *   products with k in the lanes: lane l sums the k = l (mod 16) terms in k
 *   order, the 16 lanes are added by one fixed tree (hsum), then + bias and
 *   the clamp. No lane is wasted; a tile would spend 16 lanes on them.
 *
 * Wide and narrow tiles compute each C element as one chain of FMAs over k
 * in order, from zero, then + bias, then the clamp: bit for bit the same
 * whichever tile (width, row count, masking, loop order) computes it. The
 * dot path's result for an element depends only on its row of A, its
 * column of B, its bias and the clamp, not on the other rows or columns of
 * the call. The invariant, which the conv relies on when it splits an
 * image's columns over threads:
 *
 *   with R = nb_sgemm_avx512_dot_cols(N, K), C[i, j] is computed by the dot
 *   path iff j >= N - R, by the k-ordered FMA chain otherwise; its bits
 *   depend on nothing else (not on M, i, the row or column blocks, the
 *   strides).
 *
 * So splitting C's columns into blocks that start at multiples of 16 (each
 * block but the last then has a multiple of 16 columns, so R = 0 for it,
 * and the last block keeps N mod 16 and so the same R) gives bit-identical
 * results to one call; so does any split of the rows. A split of
 * nb_sgemm_avx512 calls at columns that are not multiples of 16 may move
 * columns between the two paths (results then differ by rounding only);
 * nb_sgemm_avx512_part, told the block's first column j0 and the whole
 * product's column count n_all, takes the dot path exactly for the whole
 * product's last R = nb_sgemm_avx512_dot_cols(n_all, K) columns, so any
 * split of its columns gives bit-identical results.
 *
 * Loop order: when A is the bigger operand (more rows than columns: a conv's
 * weights on a small image) the row blocks are outermost, so each block of
 * A's rows is read from memory once and reused across all of B's panels and
 * the dot columns; otherwise each panel of B (K x 32 floats) stays cached
 * while the tiles walk down all of C's rows. Row tails are tiles of fewer
 * rows (the row count is a compile-time constant in each instance, so the
 * loops unroll).
 *
 * Measured on one Zen 4 core (FMA peak about 116 GFLOP/s), MobileNetV2's
 * 1x1 convs: M = 1280, N = 49, K = 320 from 81 to 111 GFLOP/s (a 32-wide
 * tile for 17 columns before); M = 576, N = 196, K = 96 from 91 to 112.
 */
#include "kernels/sgemm_avx512.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "kernels/avx512.h"

#define TGT NB_AVX512_TGT
#define INL static inline __attribute__((always_inline)) TGT
/* row and column loops, unrolled: accumulators in registers, not arrays */
#ifdef __clang__
#define UNROLL _Pragma("clang loop unroll(full)")
#else
#define UNROLL _Pragma("GCC unroll 16")
#endif
#define MR2 12          /* rows of a wide (32-column) tile: 24 accumulators */
#define MR1 16          /* rows of a narrow (16-column) tile */
#define HALF 12         /* accumulators an array (see tile) */
#define RBLK 48         /* rows a block when the row blocks are outermost */
#define DOT_COLS 8      /* most columns the dot path takes */
#define DOT_FLOATS 8192 /* its stack buffer: 32 KiB (one column of K = 4608: ResNet layer4) */
_Static_assert(MR2 <= HALF && MR1 <= 16 && MR1 <= 2 * HALF && MR1 >= 8 && MR2 >= 8,
               "tile shapes: see tile() and panel()");
_Static_assert(RBLK % MR1 == 0 && RBLK % MR2 == 0, "row blocks of whole tiles");

bool nb_sgemm_avx512_enabled(void)
{
    static atomic_int env; /* 0: not read yet, 1: on, 2: off */
    if (atomic_load(&env) == 0) {
        const char *e = getenv("NABLA_OWN_GEMM");
        atomic_store(&env, e && strcmp(e, "0") == 0 ? 2 : 1);
    }
    return atomic_load(&env) == 1 && __builtin_cpu_supports("avx512f");
}

typedef struct epi {
    const float *bias;
    bool clamp;
    bool stream; /* full tiles store with non-temporal (streaming) stores */
    float lo, hi;
} epi;

/* A[i, k] for row i (a compile-time constant after unrolling, < 16) of a
 * tile: four base pointers (rows 0, 4, 8, 12, advanced with k) and the
 * offsets lda, 2 lda, 3 lda, so that 16 rows need 7 registers, not 16
 * pointers (GCC spilled those). */
#define AROW(i) (ab[(i) >> 2][(i) & 3 ? ((i) & 3) * lda : 0])

/* Rows [i0, i0 + mr) x columns [j, j + 16 nv) masked by m0 (and m1 when nv
 * is 2), or all of them when full (plain loads and stores: GCC reloads a
 * mask register from the stack on every k, 10% of a full tile's time): a
 * wide tile (nv = 2, mr <= HALF) or a narrow one (nv = 1, mr <= 16, rows
 * from HALF on in c1). Every loop over rows is unrolled (UNROLL), so the
 * accumulators live in registers: without it GCC stored all of them to the
 * stack on every k. */
INL void tile(int mr, int nv, bool full, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, float *C, int64_t ldc, __mmask16 m0, __mmask16 m1, const epi *e,
              int64_t i0, const float *pf)
{
    __m512 c0[HALF], c1[HALF];
    UNROLL
    for (int i = 0; i < HALF; i++)
        c0[i] = c1[i] = _mm512_setzero_ps();
    const float *ab[4]; /* rows 4q.. (no pointer past the tile's rows) */
    UNROLL
    for (int q = 0; q < 4; q++)
        ab[q] = 4 * q < mr ? A + 4 * q * lda : A;
    for (int64_t k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        __m512 b0 = full ? _mm512_loadu_ps(b) : _mm512_maskz_loadu_ps(m0, b);
        __m512 b1 = nv == 1  ? b0
                    : full ? _mm512_loadu_ps(b + 16)
                           : _mm512_maskz_loadu_ps(m1, b + 16);
        UNROLL
        for (int i = 0; i < mr; i++) {
            __m512 av = _mm512_set1_ps(AROW(i));
            if (nv == 2) {
                c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
            } else if (i < HALF) {
                c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            } else {
                c1[i - HALF] = _mm512_fmadd_ps(av, b0, c1[i - HALF]);
            }
        }
        if (pf && (k & 15) == 0) /* the rows the next tiles read, one line a row */
            UNROLL
            for (int i = 0; i < mr; i++)
                _mm_prefetch((const char *)(pf + i * lda + k), _MM_HINT_T0);
        UNROLL
        for (int q = 0; q < 4; q++)
            ab[q]++;
    }
    /* min(hi, max(lo, v)) keeps a NaN v: the second operand wins */
    const __m512 lov = _mm512_set1_ps(e->lo), hiv = _mm512_set1_ps(e->hi);
    UNROLL
    for (int i = 0; i < mr; i++) {
        int n = nv == 2 ? 2 : 1;
        UNROLL
        for (int h = 0; h < n; h++) {
            __m512 v = nv == 2 ? (h ? c1[i] : c0[i]) : i < HALF ? c0[i] : c1[i - HALF];
            if (e->bias)
                v = _mm512_add_ps(v, _mm512_set1_ps(e->bias[i0 + i]));
            if (e->clamp)
                v = _mm512_min_ps(hiv, _mm512_max_ps(lov, v));
            float *dst = C + i * ldc + 16 * h;
            if (full && e->stream && ((uintptr_t)dst & 63) == 0)
                _mm512_stream_ps(dst, v);
            else if (full)
                _mm512_storeu_ps(dst, v);
            else
                _mm512_mask_storeu_ps(C + i * ldc + 16 * h, h ? m1 : m0, v);
        }
    }
}

/* One tile of nv vectors and the constant row count r (1..7) chosen by n. */
#define TAIL_CASES(nv)                                                                             \
    switch (n) {                                                                                   \
    case 7: tile(7, nv, false, K, a, lda, b, ldb, c, ldc, m0, m1, e, i, NULL); break;                   \
    case 6: tile(6, nv, false, K, a, lda, b, ldb, c, ldc, m0, m1, e, i, NULL); break;                   \
    case 5: tile(5, nv, false, K, a, lda, b, ldb, c, ldc, m0, m1, e, i, NULL); break;                   \
    case 4: tile(4, nv, false, K, a, lda, b, ldb, c, ldc, m0, m1, e, i, NULL); break;                   \
    case 3: tile(3, nv, false, K, a, lda, b, ldb, c, ldc, m0, m1, e, i, NULL); break;                   \
    case 2: tile(2, nv, false, K, a, lda, b, ldb, c, ldc, m0, m1, e, i, NULL); break;                   \
    case 1: tile(1, nv, false, K, a, lda, b, ldb, c, ldc, m0, m1, e, i, NULL); break;                   \
    default: break;                                                                                \
    }

/* What a panel's tiles prefetch: the rows of A `ahead` rows below their
 * own (the next tile's, or the next row block's), where those are rows of
 * A (< m); none when ahead is 0. A's rows come from memory the first time
 * a call reads them (a layer's weights, evicted by the layers before), and
 * 12-48 rows starting at once are more streams than the hardware
 * prefetchers follow: a 1x1 conv on a 7x7 image ran at 60% of the FMA peak
 * in a network against 95% with its weights in cache. */
typedef struct pref {
    int64_t ahead, m;
} pref;

/* The most floats of A prefetched ahead (in the first panel only: the
 * others find A in cache): more would evict the B panel from L2 (ResNet's
 * K = 4608 GEMMs are left to the hardware). Measured on chains of 1x1 convs
 * with 20-40 MB of weights, 2 threads: 160<->960 on 7x7 106 -> 80 us a conv
 * (hot: 73), 320<->1280 on 7x7 220 -> 198 us, 14x14 layers level. */
#define PF_MAX_FLOATS (64 * 1024)

INL const float *pf_rows(const pref *pf, const float *A, int64_t lda, int64_t i, int mr)
{
    return pf && pf->ahead && i + pf->ahead + mr <= pf->m ? A + (i + pf->ahead) * lda : NULL;
}

/* Tiles of mr rows, then one of 8 if 8 rows are left, from row i of the
 * rows [., i1); returns the first row left (fewer than 8 are). */
INL int64_t rows(int mr, int nv, bool full, int64_t K, const float *A, int64_t lda, const float *b,
                 int64_t ldb, float *C, int64_t ldc, __mmask16 m0, __mmask16 m1, const epi *e,
                 int64_t i, int64_t i1, const pref *pf)
{
    for (; i + mr <= i1; i += mr)
        tile(mr, nv, full, K, A + i * lda, lda, b, ldb, C + i * ldc, ldc, m0, m1, e, i,
             pf_rows(pf, A, lda, i, mr));
    if (i + 8 <= i1) {
        tile(8, nv, full, K, A + i * lda, lda, b, ldb, C + i * ldc, ldc, m0, m1, e, i,
             pf_rows(pf, A, lda, i, 8));
        i += 8;
    }
    return i;
}

/* Rows [i0, i1) of C at the panel of w (1..32) columns starting at column j:
 * wide tiles when w > 16, narrow ones otherwise. */
static TGT void panel(int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                      float *C, int64_t ldc, const epi *e, int64_t i0, int64_t i1, int64_t j,
                      int64_t w, const pref *pf)
{
    __mmask16 m0 = nb_lanes16(w), m1 = nb_lanes16(w - 16);
    const float *b = B + j;
    float *cj = C + j;
    int64_t i;
    if (w == 32)
        i = rows(MR2, 2, true, K, A, lda, b, ldb, cj, ldc, m0, m1, e, i0, i1, pf);
    else if (w > 16)
        i = rows(MR2, 2, false, K, A, lda, b, ldb, cj, ldc, m0, m1, e, i0, i1, pf);
    else if (w == 16)
        i = rows(MR1, 1, true, K, A, lda, b, ldb, cj, ldc, m0, m1, e, i0, i1, pf);
    else
        i = rows(MR1, 1, false, K, A, lda, b, ldb, cj, ldc, m0, m1, e, i0, i1, pf);
    const float *a = A + i * lda;
    float *c = cj + i * ldc;
    int64_t n = i1 - i; /* a tile of the remaining rows (fewer than 8) */
    if (w > 16)
        TAIL_CASES(2)
    else
        TAIL_CASES(1)
}

/* The sum of v's lanes by a fixed tree (halves, then quarters, ...). */
INL float hsum(__m512 v)
{
    __m256 up = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), up);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

/* Rows [i0, i0 + rb) x the r dot columns (Bt: r columns of kp floats, kp =
 * K rounded up to 16, zero beyond K), stored at C's columns [0, r). */
INL void dot(int rb, int r, int64_t K, const float *A, int64_t lda, const float *Bt, int64_t kp,
             float *C, int64_t ldc, const epi *e, int64_t i0)
{
    __m512 acc[8][DOT_COLS];
    UNROLL
    for (int i = 0; i < rb; i++)
        UNROLL
        for (int c = 0; c < r; c++)
            acc[i][c] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 bv[DOT_COLS];
        UNROLL
        for (int c = 0; c < r; c++)
            bv[c] = _mm512_loadu_ps(Bt + c * kp + k);
        UNROLL
        for (int i = 0; i < rb; i++) {
            __m512 av = _mm512_loadu_ps(A + i * lda + k);
            UNROLL
            for (int c = 0; c < r; c++)
                acc[i][c] = _mm512_fmadd_ps(av, bv[c], acc[i][c]);
        }
    }
    if (k < K) { /* the rows end: masked loads (Bt may be a matrix's own rows) */
        __mmask16 m = nb_lanes16(K - k);
        __m512 bv[DOT_COLS];
        UNROLL
        for (int c = 0; c < r; c++)
            bv[c] = _mm512_maskz_loadu_ps(m, Bt + c * kp + k);
        UNROLL
        for (int i = 0; i < rb; i++) {
            __m512 av = _mm512_maskz_loadu_ps(m, A + i * lda + k);
            UNROLL
            for (int c = 0; c < r; c++)
                acc[i][c] = _mm512_fmadd_ps(av, bv[c], acc[i][c]);
        }
    }
    const __m128 lo = _mm_set_ss(e->lo), hi = _mm_set_ss(e->hi);
    UNROLL
    for (int i = 0; i < rb; i++)
        UNROLL
        for (int c = 0; c < r; c++) {
            __m128 v = _mm_set_ss(hsum(acc[i][c]));
            if (e->bias)
                v = _mm_add_ss(v, _mm_set_ss(e->bias[i0 + i]));
            if (e->clamp) /* as the tiles: min(hi, max(lo, v)), NaN kept */
                v = _mm_min_ss(hi, _mm_max_ss(lo, v));
            C[i * ldc + c] = _mm_cvtss_f32(v);
        }
}

/* Rows [i0, i1) of the r dot columns, in blocks of rows as many as keep
 * about 16 accumulators. */
#define DOT_ROWS(r, rb)                                                                            \
    do {                                                                                           \
        int64_t i = i0;                                                                            \
        for (; i + (rb) <= i1; i += (rb))                                                          \
            dot(rb, r, K, A + i * lda, lda, Bt, kp, C + i * ldc, ldc, e, i);                       \
        for (; i < i1; i++)                                                                        \
            dot(1, r, K, A + i * lda, lda, Bt, kp, C + i * ldc, ldc, e, i);                        \
    } while (0)

/* The last r = N mod 16 columns take the dot path when a tile would cost
 * more: it spends one vector FMA a k and row on them, the dot path r / 16 of
 * one plus about 5 a row and column for the horizontal sum and the epilogue
 * (measured: r = 1 wins from K = 16, r = 4 from K = 32, r = 8 from K = 96). */
int64_t nb_sgemm_avx512_dot_cols(int64_t N, int64_t K)
{
    int64_t r = N > 0 ? N % 16 : 0;
    if (r < 1 || r > DOT_COLS || K * (16 - r) < 80 * r || r * ((K + 15) / 16 * 16) > DOT_FLOATS ||
        !nb_sgemm_avx512_enabled())
        return 0;
    return r;
}

static TGT void dots(int64_t r, int64_t K, const float *A, int64_t lda, const float *Bt,
                     int64_t kp, float *C, int64_t ldc, const epi *e, int64_t i0, int64_t i1)
{
    switch (r) {
    case 1: DOT_ROWS(1, 8); break;
    case 2: DOT_ROWS(2, 8); break;
    case 3: DOT_ROWS(3, 5); break;
    case 4: DOT_ROWS(4, 4); break;
    case 5: DOT_ROWS(5, 3); break;
    case 6: DOT_ROWS(6, 2); break;
    case 7: DOT_ROWS(7, 2); break;
    case 8: DOT_ROWS(8, 2); break;
    default: break;
    }
}

TGT void nb_sgemm_avx512_part(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                              const float *B, int64_t ldb, float *C, int64_t ldc,
                              const float *bias, bool clamp, float lo, float hi, int64_t j0,
                              int64_t n_all, bool stream)
{
    if (M <= 0 || N <= 0 || j0 < 0 || n_all < j0 + N || !nb_sgemm_avx512_enabled())
        return;
    epi e = {bias, clamp, stream, lo, hi};
    /* the dot columns of the whole product that fall in this part: its
     * columns [nt, N) */
    int64_t g = n_all - nb_sgemm_avx512_dot_cols(n_all, K), kp = (K + 15) / 16 * 16;
    int64_t nt = g - j0 < 0 ? 0 : g - j0 < N ? g - j0 : N, r = N - nt;
    float bt[DOT_FLOATS] __attribute__((aligned(64)));
    if (r) { /* the dot columns, transposed: bt[c * kp + k] = B[k, nt + c] */
        for (int64_t c = 0; c < r; c++) {
            for (int64_t k = 0; k < K; k++)
                bt[c * kp + k] = B[k * ldb + nt + c];
            for (int64_t k = K; k < kp; k++)
                bt[c * kp + k] = 0.0f;
        }
    }
    if (M > N) { /* A is the bigger operand: each row block once, all of B under it */
        for (int64_t i = 0; i < M; i += RBLK) {
            int64_t i1 = i + RBLK < M ? i + RBLK : M;
            pref pf = {RBLK * K <= PF_MAX_FLOATS ? RBLK : 0, M}; /* the next row block */
            for (int64_t j = 0; j < nt; j += 32)
                panel(K, A, lda, B, ldb, C, ldc, &e, i, i1, j, nt - j < 32 ? nt - j : 32,
                      j == 0 ? &pf : NULL);
            if (r)
                dots(r, K, A, lda, bt, kp, C + nt, ldc, &e, i, i1);
        }
    } else {
        pref pf = {MR2 * K <= PF_MAX_FLOATS ? MR2 : 0, M}; /* the next tile's rows */
        for (int64_t j = 0; j < nt; j += 32)
            panel(K, A, lda, B, ldb, C, ldc, &e, 0, M, j, nt - j < 32 ? nt - j : 32,
                  j == 0 ? &pf : NULL);
        if (r)
            dots(r, K, A, lda, bt, kp, C + nt, ldc, &e, 0, M);
    }
    if (stream) /* streaming stores are weakly ordered: before anyone reads C */
        _mm_sfence();
}

void nb_sgemm_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                     int64_t ldb, float *C, int64_t ldc, const float *bias, bool clamp, float lo,
                     float hi)
{
    nb_sgemm_avx512_part(M, N, K, A, lda, B, ldb, C, ldc, bias, clamp, lo, hi, 0, N, false);
}

TGT void nb_sgemm_avx512_abt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                             const float *B, int64_t ldb, float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0 || K <= 0 || !nb_sgemm_avx512_enabled())
        return;
    epi e = {NULL, false, false, 0.0f, 0.0f};
    for (int64_t c0 = 0; c0 < N; c0 += DOT_COLS) /* B's rows are the dot path's columns */
        dots(N - c0 < DOT_COLS ? N - c0 : DOT_COLS, K, A, lda, B + c0 * ldb, ldb, C + c0, ldc,
             &e, 0, M);
}

#else /* not x86-64 with GCC or clang: the BLAS path everywhere */

bool nb_sgemm_avx512_enabled(void) { return false; }

int64_t nb_sgemm_avx512_dot_cols(int64_t N, int64_t K)
{
    (void)N, (void)K;
    return 0;
}

void nb_sgemm_avx512_part(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const float *B, int64_t ldb, float *C, int64_t ldc, const float *bias,
                          bool clamp, float lo, float hi, int64_t j0, int64_t n_all, bool stream)
{
    (void)stream;
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)C, (void)ldc;
    (void)bias, (void)clamp, (void)lo, (void)hi, (void)j0, (void)n_all;
}

void nb_sgemm_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                     int64_t ldb, float *C, int64_t ldc, const float *bias, bool clamp, float lo,
                     float hi)
{
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)C, (void)ldc;
    (void)bias, (void)clamp, (void)lo, (void)hi;
}

void nb_sgemm_avx512_abt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float *C, int64_t ldc)
{
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)C, (void)ldc;
}

#endif
