/* Normalisation kernels: batch norm, layer norm, group norm, RMS norm, their
 * input gradients (*_GRAD) and their affine gradients (*_GRAD_AFFINE); the
 * inputs of each op are listed in kernels/norm_params.h.
 *
 * Every op normalises "rows" of x: a channel over (N, spatial) for batch norm,
 * the trailing D elements for layer/RMS norm, a (sample, group) block for
 * group norm. With M the row size,
 *
 *     mean = sum x / M,  var = sum (x - mean)^2 / M (biased),
 *     rstd = 1 / sqrt(var + eps),  xhat = (x - mean) rstd,
 *     y = xhat gamma + beta                     (RMS: xhat = x / sqrt(mean x^2 + eps))
 *
 * Statistics are one-pass sums of values shifted by k, the mean of the row's
 * first few elements (sum (x - k), sum (x - k)^2), so the variance does not
 * cancel away even when |mean| >> std; they accumulate in double (blocks of
 * BLOCK values are summed in x's type first). The elementwise passes use
 * x - k as well. The backward ops recompute the row statistics from x in the
 * same pass that reduces gy (batch norm's dx reads them from the affine op's
 * extra rows), so the forward saves nothing besides its output:
 *
 *     g = gy gamma,  dx = rstd (g - mean(g) - xhat mean(g xhat))     (training)
 *     dx = gy gamma rstd_running                                     (BN eval)
 *     RMS: dx = r (g - xhat mean(g xhat)),  r = 1 / sqrt(mean x^2 + eps)
 *     dgamma = sum gy xhat,  dbeta = sum gy   (over everything but the affine dim)
 *
 * Batch norm runs threaded over channels, layer/RMS/group norm over rows; the
 * layer/RMS affine gradients sum blocks of rows into partials of x's type
 * (a scratch of MAX_BLOCKS x 2 x D values, see nb_cpu_norm_workspace), then
 * add the blocks up in double. f32 and f64; the inner loops are
 * type-specialised, the per-row logic shared; the f32 inner loops are also
 * built for AVX2 and AVX-512 and picked at run time (elementwise_simd.h),
 * with the same bits (job.pf). Running statistics are
 * written only by the training BATCH_NORM forward, once per run; sessions
 * running one graph concurrently would race on them, as in PyTorch.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/elementwise_simd.h"
#include "kernels/threadpool.h"

#define GRAIN_ELEMS 32768 /* elements per thread-pool task, at least */
#define MAX_BLOCKS 64     /* row blocks of the layer/RMS affine reductions */

/* ---- type-specialised inner loops --------------------------------------- */

/* Sums run in blocks of BLOCK elements: inside a block, 2 x 16 bytes of
 * accumulators per sum (8 floats or 4 doubles; lane l sums the elements
 * l, l + W, l + 2W, ... of the block, W the lane count); at the end of a block
 * lane l and lane l + W/2 are added in x's type and the W/2 results, in lane
 * order, into double, block after block. A float lane sums at most
 * BLOCK / 8 = 32 shifted values, so f32 loses nothing that matters, and every
 * total is a double.
 *
 * Each lane's sum is one chain of dependent adds, so a row shorter than a
 * block is bound by the add latency; rows do not depend on one another until
 * their lanes go into double, so G short rows (batch norm's (sample,
 * channel) rows) are summed side by side (G per build: more where there are
 * more vector registers), then folded in turn. Same operations in the same
 * order, so the same bits at every G and every SIMD level as one row at a time
 * (a sum that is NaN stays NaN, its sign may differ: see
 * elementwise_simd.h). The blocks of one long row are not interleaved so:
 * from memory, two streams 1 KiB apart ran up to 2x slower than one (the
 * hardware prefetcher loses them at each row), though faster from cache. */
#define BLOCK 256
typedef float v4f __attribute__((vector_size(16)));
typedef double v2d __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
/* the same for loads from any element (element alignment) */
typedef float v4f_u __attribute__((vector_size(16), aligned(4)));
typedef double v2d_u __attribute__((vector_size(16), aligned(8)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4)));

/* A VH vector from p (VH##_u: any element address) */
#define LOADV(VH, p) (*(const VH##_u *)(p))

/* Per build: the W = VHL NH lanes of an accumulator are NH vectors of type
 * VH (VHL lanes each): two 16-byte vectors in the baseline build (GCC keeps
 * an 8-float vector in memory there), one 32-byte vector in the AVX builds;
 * lane L is acc[L / VHL][L % VHL]. GA / G4: how many short rows acc_rows /
 * acc4_rows sum side by side. f64 (baseline only) has two v2d. */
#define GA_ 2
#define G4_ 1
#define GA__avx2 4
#define G4__avx2 2
#define GA__avx512 4
#define G4__avx512 4

/* a[q], b[q] (q < G; NH vectors each) = the lanes of sum (x - k) and
 * sum (x - k)^2 over the first len / W * W elements of x + q stride */
#define SUM2_LANES(VH, VHL, NH, G, x, stride, len, kv, a, b)                    \
    for (int q = 0; q < G; q++)                                                 \
        for (int h = 0; h < NH; h++)                                            \
            a[q][h] = b[q][h] = (VH){0};                                        \
    for (int64_t j = 0; j + VHL * NH <= (len); j += VHL * NH)                   \
        for (int q = 0; q < G; q++)                                             \
            for (int h = 0; h < NH; h++) {                                      \
                VH d = LOADV(VH, (x) + q * (stride) + j + h * VHL) - kv;        \
                a[q][h] += d;                                                   \
                b[q][h] += d * d;                                               \
            }

/* the same for sum (x - k), sum (x - k)^2, sum g, sum g (x - k), g = gy w
 * (w NULL: 1; x, gy and w at the same offsets) */
#define SUM4_LANES(VH, VHL, NH, G, x, gy, w, stride, len, kv, a, b, c, e)       \
    for (int q = 0; q < G; q++)                                                 \
        for (int h = 0; h < NH; h++)                                            \
            a[q][h] = b[q][h] = c[q][h] = e[q][h] = (VH){0};                    \
    for (int64_t j = 0; j + VHL * NH <= (len); j += VHL * NH)                   \
        for (int q = 0; q < G; q++)                                             \
            for (int h = 0; h < NH; h++) {                                      \
                int64_t o = q * (stride) + j + h * VHL;                         \
                VH d = LOADV(VH, (x) + o) - kv, g = LOADV(VH, (gy) + o);        \
                if (w)                                                          \
                    g *= LOADV(VH, (w) + o);                                    \
                a[q][h] += d;                                                   \
                b[q][h] += d * d;                                               \
                c[q][h] += g;                                                   \
                e[q][h] += g * d;                                               \
            }

/* lane L of accumulator v; lanes l and l + W/2 added in x's type, as a double */
#define LANE(v, L, VHL) (v)[(L) / VHL][(L) % VHL]
#define FOLD(v, l, VHL, NH) (double)(LANE(v, l, VHL) + LANE(v, (l) + VHL * NH / 2, VHL))

#define DEFINE_PRIMS(T, SFX, VH, VHL, NH, GA, G4, TGT)                          \
    /* s[0] += sum (x - k), s[1] += sum (x - k)^2 */                            \
    TGT static void acc_##SFX(const T *x, int64_t n, double k, double *s)       \
    {                                                                           \
        enum { W = VHL * NH };                                                  \
        const VH kv = (VH){0} + (T)k;                                           \
        double sa = 0, sb = 0;                                                  \
        for (int64_t i = 0; i < n; i += BLOCK) { /* one block, maybe partial */ \
            int64_t len = n - i < BLOCK ? n - i : BLOCK;                        \
            VH a[1][NH], b[1][NH];                                              \
            SUM2_LANES(VH, VHL, NH, 1, x + i, 0, len, kv, a, b)                 \
            for (int l = 0; l < W / 2; l++) { /* lanes into double */           \
                sa += FOLD(a[0], l, VHL, NH);                                   \
                sb += FOLD(b[0], l, VHL, NH);                                   \
            }                                                                   \
            for (int64_t j = len / W * W; j < len; j++) {                       \
                double d = (double)x[i + j] - k;                                \
                sa += d;                                                        \
                sb += d * d;                                                    \
            }                                                                   \
        }                                                                       \
        s[0] += sa;                                                             \
        s[1] += sb;                                                             \
    }                                                                           \
    /* for r < rows: acc(x + r stride, n, k, s); rows shorter than a block     \
     * are summed GA side by side */                                            \
    TGT static void acc_rows_##SFX(const T *x, int64_t rows, int64_t stride, int64_t n, \
                                   double k, double *s)                         \
    {                                                                           \
        enum { W = VHL * NH };                                                  \
        const VH kv = (VH){0} + (T)k;                                           \
        int64_t r = 0;                                                          \
        for (; n < BLOCK && r + GA <= rows; r += GA) {                          \
            const T *xr = x + r * stride;                                       \
            VH a[GA][NH], b[GA][NH];                                            \
            SUM2_LANES(VH, VHL, NH, GA, xr, stride, n, kv, a, b)                \
            for (int q = 0; q < GA; q++) { /* acc's steps, row after row */     \
                double sa = 0, sb = 0;                                          \
                for (int l = 0; l < W / 2; l++) {                               \
                    sa += FOLD(a[q], l, VHL, NH);                               \
                    sb += FOLD(b[q], l, VHL, NH);                               \
                }                                                               \
                for (int64_t j = n / W * W; j < n; j++) {                       \
                    double d = (double)xr[q * stride + j] - k;                  \
                    sa += d;                                                    \
                    sb += d * d;                                                \
                }                                                               \
                s[0] += sa;                                                     \
                s[1] += sb;                                                     \
            }                                                                   \
        }                                                                       \
        for (; r < rows; r++)                                                   \
            acc_##SFX(x + r * stride, n, k, s);                                 \
    }                                                                           \
    /* acc4's elements [j0, j1) past its lane blocks, one after another */   \
    TGT static inline void tail4_##SFX(const T *x, const T *gy, const T *w, int64_t j0, \
                                       int64_t j1, double k, double *s)         \
    {                                                                           \
        for (int64_t j = j0; j < j1; j++) {                                     \
            double dd = (double)x[j] - k;                                       \
            double gg = w ? (double)gy[j] * (double)w[j] : (double)gy[j];       \
            s[0] += dd;                                                         \
            s[1] += dd * dd;                                                    \
            s[2] += gg;                                                         \
            s[3] += gg * dd;                                                    \
        }                                                                       \
    }                                                                           \
    /* s[0..3] += sum (x-k), sum (x-k)^2, sum g, sum g (x-k); g = gy w (w NULL: 1) */ \
    TGT static void acc4_##SFX(const T *x, const T *gy, const T *w, int64_t n, double k, \
                               double *s)                                       \
    {                                                                           \
        enum { W = VHL * NH };                                                  \
        const VH kv = (VH){0} + (T)k;                                           \
        for (int64_t i = 0; i < n; i += BLOCK) { /* one block, maybe partial */ \
            int64_t len = n - i < BLOCK ? n - i : BLOCK;                        \
            VH a[1][NH], b[1][NH], c[1][NH], e[1][NH];                          \
            SUM4_LANES(VH, VHL, NH, 1, x + i, gy + i, w ? w + i : NULL, 0, len, kv, \
                       a, b, c, e)                                              \
            for (int l = 0; l < W / 2; l++) { /* lanes into double */           \
                s[0] += FOLD(a[0], l, VHL, NH);                                 \
                s[1] += FOLD(b[0], l, VHL, NH);                                 \
                s[2] += FOLD(c[0], l, VHL, NH);                                 \
                s[3] += FOLD(e[0], l, VHL, NH);                                 \
            }                                                                   \
            tail4_##SFX(x, gy, w, i + len / W * W, i + len, k, s);             \
        }                                                                       \
    }                                                                           \
    /* for r < rows: acc4(x + r stride, gy + r stride, NULL, n, k, s); rows    \
     * shorter than a block are summed G4 side by side */                      \
    TGT static void acc4_rows_##SFX(const T *x, const T *gy, int64_t rows, int64_t stride, \
                                    int64_t n, double k, double *s)             \
    {                                                                           \
        enum { W = VHL * NH };                                                  \
        const VH kv = (VH){0} + (T)k;                                           \
        int64_t r = 0;                                                          \
        for (; n < BLOCK && r + G4 <= rows; r += G4) {                          \
            const T *xr = x + r * stride, *gr = gy + r * stride;                \
            VH a[G4][NH], b[G4][NH], c[G4][NH], e[G4][NH];                      \
            SUM4_LANES(VH, VHL, NH, G4, xr, gr, (const T *)NULL, stride, n, kv, a, b, c, e) \
            for (int q = 0; q < G4; q++) { /* acc4's steps, row after row */    \
                for (int l = 0; l < W / 2; l++) {                               \
                    s[0] += FOLD(a[q], l, VHL, NH);                             \
                    s[1] += FOLD(b[q], l, VHL, NH);                             \
                    s[2] += FOLD(c[q], l, VHL, NH);                             \
                    s[3] += FOLD(e[q], l, VHL, NH);                             \
                }                                                               \
                tail4_##SFX(xr + q * stride, gr + q * stride, NULL, n / W * W, n, k, s); \
            }                                                                   \
        }                                                                       \
        for (; r < rows; r++)                                                   \
            acc4_##SFX(x + r * stride, gy + r * stride, NULL, n, k, s);         \
    }                                                                           \
    /* The elementwise loops take x - k, k the row's shift (exact in T), so     \
     * that an offset |mean| >> std does not cancel digits in T. */             \
    /* y = ((x - k) a + b) gam + bet, gam/bet per element (NULL: 1 and 0) */    \
    TGT static void apply_##SFX(const T *x, T *y, int64_t n, double k, double a, \
                            double b, const T *gam, const T *bet)               \
    {                                                                           \
        T tk = (T)k, ta = (T)a, tb = (T)b;                                      \
        if (gam && bet)                                                         \
            for (int64_t i = 0; i < n; i++)                                     \
                y[i] = ((x[i] - tk) * ta + tb) * gam[i] + bet[i];               \
        else if (gam)                                                           \
            for (int64_t i = 0; i < n; i++)                                     \
                y[i] = ((x[i] - tk) * ta + tb) * gam[i];                        \
        else if (bet)                                                           \
            for (int64_t i = 0; i < n; i++)                                     \
                y[i] = (x[i] - tk) * ta + tb + bet[i];                          \
        else                                                                    \
            for (int64_t i = 0; i < n; i++)                                     \
                y[i] = (x[i] - tk) * ta + tb;                                   \
    }                                                                           \
    /* dx = gy w A + (x - k) B + C (w per element, NULL: 1) */                  \
    TGT static void dx_##SFX(const T *x, const T *gy, const T *w, T *dx, int64_t n, \
                         double k, double A, double B, double C)                \
    {                                                                           \
        T tk = (T)k, ta = (T)A, tb = (T)B, tc = (T)C;                           \
        if (w)                                                                  \
            for (int64_t i = 0; i < n; i++)                                     \
                dx[i] = gy[i] * w[i] * ta + ((x[i] - tk) * tb + tc);            \
        else                                                                    \
            for (int64_t i = 0; i < n; i++)                                     \
                dx[i] = gy[i] * ta + ((x[i] - tk) * tb + tc);                   \
    }                                                                           \
    /* pg += gy ((x - k) a + b), pb += gy, elementwise in T (pb may be NULL);   \
     * a block of rows sums here before the blocks are added up in double */    \
    TGT static void part_##SFX(const T *x, const T *gy, int64_t n, double k, double a, \
                           double b, T *pg, T *pb)                              \
    {                                                                           \
        T tk = (T)k, ta = (T)a, tb = (T)b;                                      \
        if (pb)                                                                 \
            for (int64_t i = 0; i < n; i++) {                                   \
                pg[i] += gy[i] * ((x[i] - tk) * ta + tb);                       \
                pb[i] += gy[i];                                                 \
            }                                                                   \
        else                                                                    \
            for (int64_t i = 0; i < n; i++)                                     \
                pg[i] += gy[i] * ((x[i] - tk) * ta + tb);                       \
    }

/* f32: one build per SIMD level (elementwise_simd.h), *_f32 the baseline.
 * The sums keep their 8 lanes at every level (so they add the same values in
 * the same order) and sum more blocks side by side; the elementwise loops
 * (apply, dx, part) take the full vector width. */
#define VH_ v4f
#define VHL_ 4
#define NH_ 2
#define VH__avx2 v8f
#define VHL__avx2 8
#define NH__avx2 1
#define VH__avx512 v8f
#define VHL__avx512 8
#define NH__avx512 1
#define DEF_PRIMS_F32(name, SFX, TGT)                                           \
    DEFINE_PRIMS(float, name##SFX, VH_##SFX, VHL_##SFX, NH_##SFX, GA_##SFX, G4_##SFX, TGT)
NB_SIMD_EACH(DEF_PRIMS_F32, f32)
DEFINE_PRIMS(double, f64, v2d, 2, 2, GA_, G4_, )

typedef struct prims_f32 {
    void (*acc)(const float *x, int64_t n, double k, double *s);
    void (*acc4)(const float *x, const float *gy, const float *w, int64_t n, double k,
                 double *s);
    void (*acc_rows)(const float *x, int64_t rows, int64_t stride, int64_t n, double k,
                     double *s);
    void (*acc4_rows)(const float *x, const float *gy, int64_t rows, int64_t stride, int64_t n,
                      double k, double *s);
    void (*apply)(const float *x, float *y, int64_t n, double k, double a, double b,
                  const float *gam, const float *bet);
    void (*dx)(const float *x, const float *gy, const float *w, float *dx, int64_t n, double k,
               double A, double B, double C);
    void (*part)(const float *x, const float *gy, int64_t n, double k, double a, double b,
                 float *pg, float *pb);
} prims_f32;

#define PRIMS_F32(SFX)                                                          \
    {acc_f32##SFX, acc4_f32##SFX, acc_rows_f32##SFX, acc4_rows_f32##SFX, apply_f32##SFX,   \
     dx_f32##SFX, part_f32##SFX}
static const prims_f32 prims_f32_simd[NB_SIMD_LEVELS] = {PRIMS_F32(), PRIMS_F32(_avx2),
                                                         PRIMS_F32(_avx512)};

static double ld(int f64, const void *p, int64_t i)
{
    return f64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

static void st(int f64, void *p, int64_t i, double v)
{
    if (f64)
        ((double *)p)[i] = v;
    else
        ((float *)p)[i] = (float)v;
}

/* The shift of a row starting at off: the mean of its first (up to) 8 values,
 * rounded to x's type so that the f32 loops subtract exactly this value. */
static double shift_of(int f64, const void *x, int64_t off, int64_t n)
{
    int64_t m = n < 8 ? n : 8;
    double s = 0;
    for (int64_t i = 0; i < m; i++)
        s += ld(f64, x, off + i);
    double k = m ? s / (double)m : 0.0;
    return f64 ? k : (double)(float)k;
}

/* mean and rstd from shifted sums s = (sum (x-k), sum (x-k)^2) over m values */
static void finish(const double *s, double k, int64_t m, double eps, double *mean,
                   double *var, double *rstd)
{
    double m1 = s[0] / (double)m;
    double v = s[1] / (double)m - m1 * m1;
    *mean = k + m1;
    *var = v > 0 ? v : 0;
    *rstd = 1.0 / sqrt(*var + eps);
}

/* ---- one job: the layout and pointers of a call --------------------------- */

typedef struct job {
    const nb_norm_params *p;
    int f64;
    int rms; /* RMS norm: no centring */
    const void *x, *gy, *gam, *bet, *aux; /* aux: gaff (5, C) of BATCH_NORM_GRAD */
    void *rm, *rv;                        /* running statistics */
    void *y;
    int64_t N, C, S; /* batch/group norm: x is (N, C, S) */
    int64_t R, D;    /* layer/RMS norm: x is (R, D) */
    int64_t G, Cg;   /* group norm: groups, channels per group */
    double *ws;
    int64_t nblk;
    const prims_f32 *pf; /* the f32 loops of the SIMD level in use */
} job;

/* Dispatch on dtype (and for f32 on the SIMD build); offsets are in elements. */
#define PTR(T, p, off) ((p) ? (const T *)(p) + (off) : NULL)

static void acc(const job *j, const void *x, int64_t off, int64_t n, double k, double *s)
{
    if (j->f64)
        acc_f64(PTR(double, x, off), n, k, s);
    else
        j->pf->acc(PTR(float, x, off), n, k, s);
}

/* acc over `rows` rows of n elements, row r at off + r stride */
static void acc_rows(const job *j, const void *x, int64_t off, int64_t rows, int64_t stride,
                     int64_t n, double k, double *s)
{
    if (j->f64)
        acc_rows_f64(PTR(double, x, off), rows, stride, n, k, s);
    else
        j->pf->acc_rows(PTR(float, x, off), rows, stride, n, k, s);
}

/* acc4 (no w) over `rows` rows of n elements, row r at off + r stride */
static void acc4_rows(const job *j, const void *x, const void *gy, int64_t off, int64_t rows,
                      int64_t stride, int64_t n, double k, double *s)
{
    if (j->f64)
        acc4_rows_f64(PTR(double, x, off), PTR(double, gy, off), rows, stride, n, k, s);
    else
        j->pf->acc4_rows(PTR(float, x, off), PTR(float, gy, off), rows, stride, n, k, s);
}

static void acc4(const job *j, const void *x, const void *gy, const void *w, int64_t off,
                 int64_t woff, int64_t n, double k, double *s)
{
    if (j->f64)
        acc4_f64(PTR(double, x, off), PTR(double, gy, off), PTR(double, w, woff), n, k, s);
    else
        j->pf->acc4(PTR(float, x, off), PTR(float, gy, off), PTR(float, w, woff), n, k, s);
}

static void apply(const job *j, const void *x, void *y, int64_t off, int64_t n, double k, double a,
                  double b, const void *gam, const void *bet)
{
    if (j->f64)
        apply_f64(PTR(double, x, off), (double *)y + off, n, k, a, b, gam, bet);
    else
        j->pf->apply(PTR(float, x, off), (float *)y + off, n, k, a, b, gam, bet);
}

static void dxrow(const job *j, const void *x, const void *gy, const void *w, void *dx, int64_t off,
                  int64_t n, double k, double A, double B, double C)
{
    if (j->f64)
        dx_f64(PTR(double, x, off), PTR(double, gy, off), w, (double *)dx + off, n, k, A, B, C);
    else
        j->pf->dx(PTR(float, x, off), PTR(float, gy, off), w, (float *)dx + off, n, k, A, B, C);
}

/* partial sums pg += gy xhat, pb += gy in x's type (pb NULL: none) */
static void part(const job *j, const void *x, const void *gy, int64_t off, int64_t n, double k,
                 double mean, double rstd, void *pg, void *pb)
{
    double b = -(mean - k) * rstd;
    if (j->f64)
        part_f64(PTR(double, x, off), PTR(double, gy, off), n, k, rstd, b, pg, pb);
    else
        j->pf->part(PTR(float, x, off), PTR(float, gy, off), n, k, rstd, b, pg, pb);
}

/* BATCH_NORM over channels [c0, c1) */
static void bn_fwd(void *ctx, int64_t c0, int64_t c1)
{
    const job *j = ctx;
    const nb_norm_params *p = j->p;
    int64_t M = j->N * j->S;
    for (int64_t c = c0; c < c1; c++) {
        double mean, var, rstd, k;
        if (p->training) {
            double s[2] = {0, 0};
            k = shift_of(j->f64, j->x, c * j->S, j->S);
            acc_rows(j, j->x, c * j->S, j->N, j->C * j->S, j->S, k, s);
            finish(s, k, M, p->eps, &mean, &var, &rstd);
            if (j->rm) {
                double mo = p->momentum;
                st(j->f64, j->rm, c, (1 - mo) * ld(j->f64, j->rm, c) + mo * mean);
                st(j->f64, j->rv, c,
                   (1 - mo) * ld(j->f64, j->rv, c) + mo * var * (double)M / (double)(M - 1));
            }
        } else {
            mean = ld(j->f64, j->rm, c); /* already of x's type */
            k = mean;
            rstd = 1.0 / sqrt(ld(j->f64, j->rv, c) + p->eps);
        }
        double a = j->gam ? ld(j->f64, j->gam, c) * rstd : rstd;
        double b = (j->bet ? ld(j->f64, j->bet, c) : 0.0) - (mean - k) * a;
        for (int64_t n = 0; n < j->N; n++)
            apply(j, j->x, j->y, (n * j->C + c) * j->S, j->S, k, a, b, NULL, NULL);
    }
}

/* BATCH_NORM_GRAD_AFFINE, one pass over x and gy per channel with the sums
 * t = (sum (x-k), sum (x-k)^2, sum gy, sum gy (x-k)), k the channel's shift
 * (training) or the running mean (eval):
 *   y[0, c] = dgamma = rstd (t3 - (mean - k) t2),  y[1, c] = dbeta = t2,
 *   y[2, c] = k,  y[3, c] = mean - k,  y[4, c] = rstd
 * (rows 2-4 are what BATCH_NORM_GRAD needs, so it does not reduce x again;
 * the mean is kept as shift + small remainder so f32 storage loses nothing) */
static void bn_affine(void *ctx, int64_t c0, int64_t c1)
{
    const job *j = ctx;
    int64_t C = j->C;
    for (int64_t c = c0; c < c1; c++) {
        double t[4] = {0, 0, 0, 0}, mean, var, rstd;
        double k = j->p->training ? shift_of(j->f64, j->x, c * j->S, j->S) : ld(j->f64, j->rm, c);
        acc4_rows(j, j->x, j->gy, c * j->S, j->N, C * j->S, j->S, k, t);
        if (j->p->training) {
            finish(t, k, j->N * j->S, j->p->eps, &mean, &var, &rstd);
        } else {
            mean = k;
            rstd = 1.0 / sqrt(ld(j->f64, j->rv, c) + j->p->eps);
        }
        st(j->f64, j->y, c, rstd * (t[3] - (mean - k) * t[2]));
        st(j->f64, j->y, C + c, t[2]);
        st(j->f64, j->y, 2 * C + c, k);
        st(j->f64, j->y, 3 * C + c, mean - k);
        st(j->f64, j->y, 4 * C + c, rstd);
    }
}

/* BATCH_NORM_GRAD: training dx = gamma rstd (gy - dbeta/M - xhat dgamma/M),
 * with dgamma, dbeta, k, mean - k and rstd read from gaff (5, C); eval
 * dx = gy gamma rstd_running. */
static void bn_grad(void *ctx, int64_t c0, int64_t c1)
{
    const job *j = ctx;
    int64_t M = j->N * j->S;
    for (int64_t c = c0; c < c1; c++) {
        double gam = j->gam ? ld(j->f64, j->gam, c) : 1.0, A, B = 0, C = 0, k = 0;
        if (j->p->training) {
            double dg = ld(j->f64, j->aux, c), db = ld(j->f64, j->aux, j->C + c);
            double dm = ld(j->f64, j->aux, 3 * j->C + c), rstd = ld(j->f64, j->aux, 4 * j->C + c);
            k = ld(j->f64, j->aux, 2 * j->C + c);
            A = gam * rstd;
            B = -A * rstd * dg / (double)M;
            C = -A * db / (double)M - dm * B;
        } else {
            A = gam / sqrt(ld(j->f64, j->rv, c) + j->p->eps);
        }
        for (int64_t n = 0; n < j->N; n++)
            dxrow(j, j->x, j->gy, NULL, j->y, (n * j->C + c) * j->S, j->S, k, A, B, C);
    }
}

/* shift, mean and rstd of layer/RMS-norm row r (RMS: k = mean = 0,
 * rstd = 1 / sqrt(mean x^2 + eps)) */
static void row_stats(const job *j, int64_t r, double *kp, double *mean, double *rstd)
{
    double s[2] = {0, 0}, var;
    double k = j->rms ? 0.0 : shift_of(j->f64, j->x, r * j->D, j->D);
    *kp = k;
    acc(j, j->x, r * j->D, j->D, k, s);
    if (j->rms) {
        *mean = 0;
        *rstd = 1.0 / sqrt(s[1] / (double)j->D + j->p->eps);
    } else {
        finish(s, k, j->D, j->p->eps, mean, &var, rstd);
    }
}

/* LAYER_NORM and RMS_NORM over rows [r0, r1) */
static void ln_fwd(void *ctx, int64_t r0, int64_t r1)
{
    const job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        double k, mean, rstd;
        row_stats(j, r, &k, &mean, &rstd);
        apply(j, j->x, j->y, r * j->D, j->D, k, rstd, -(mean - k) * rstd, j->gam, j->bet);
    }
}

/* LAYER_NORM_GRAD and RMS_NORM_GRAD: g = gy gamma,
 *   layer: dx = rstd (g - mean g - xhat mean(g xhat));  rms: dx = r (g - xhat mean(g xhat)) */
static void ln_grad(void *ctx, int64_t r0, int64_t r1)
{
    const job *j = ctx;
    bool rms = j->rms;
    double D = (double)j->D;
    for (int64_t r = r0; r < r1; r++) {
        double t[4] = {0, 0, 0, 0}, k = rms ? 0.0 : shift_of(j->f64, j->x, r * j->D, j->D);
        acc4(j, j->x, j->gy, j->gam, r * j->D, 0, j->D, k, t);
        double mean = 0, var, rstd, mg = 0;
        if (rms) {
            rstd = 1.0 / sqrt(t[1] / D + j->p->eps);
        } else {
            finish(t, k, j->D, j->p->eps, &mean, &var, &rstd);
            mg = t[2] / D;
        }
        double mgx = rstd * (t[3] - (mean - k) * t[2]) / D; /* mean(g xhat) */
        double B = -rstd * rstd * mgx;
        dxrow(j, j->x, j->gy, j->gam, j->y, r * j->D, j->D, k, rstd, B,
              -rstd * mg + (k - mean) * B);
    }
}

/* Partial affine sums of a block of rows (layer/RMS norm) into ws. */
static void ln_affine_blocks(void *ctx, int64_t b0, int64_t b1)
{
    const job *j = ctx;
    bool rms = j->rms;
    for (int64_t b = b0; b < b1; b++) {
        size_t es = j->f64 ? sizeof(double) : sizeof(float);
        char *pg = (char *)j->ws + (size_t)(b * 2 * j->D) * es;
        char *pb = rms ? NULL : pg + (size_t)j->D * es;
        memset(pg, 0, es * 2 * (size_t)j->D);
        int64_t r0 = j->R * b / j->nblk, r1 = j->R * (b + 1) / j->nblk;
        for (int64_t r = r0; r < r1; r++) {
            double k, mean, rstd;
            row_stats(j, r, &k, &mean, &rstd);
            part(j, j->x, j->gy, r * j->D, j->D, k, mean, rstd, pg, pb);
        }
    }
}

/* Sum the block partials: y[d] = dgamma, y[D + d] = dbeta (layer norm only),
 * in double, a chunk of d at a time so the inner loop runs along memory. */
static void ln_affine_reduce(void *ctx, int64_t d0, int64_t d1)
{
    const job *j = ctx;
    int rows = j->rms ? 1 : 2;
    double sum[256];
    for (int h = 0; h < rows; h++)
        for (int64_t c0 = d0; c0 < d1; c0 += 256) {
            int64_t len = d1 - c0 < 256 ? d1 - c0 : 256;
            memset(sum, 0, sizeof(sum));
            for (int64_t b = 0; b < j->nblk; b++) {
                int64_t base = b * 2 * j->D + h * j->D + c0;
                if (j->f64)
                    for (int64_t i = 0; i < len; i++)
                        sum[i] += ((const double *)j->ws)[base + i];
                else
                    for (int64_t i = 0; i < len; i++)
                        sum[i] += (double)((const float *)j->ws)[base + i];
            }
            for (int64_t i = 0; i < len; i++)
                st(j->f64, j->y, h * j->D + c0 + i, sum[i]);
        }
}

/* GROUP_NORM over rows (n, g) in [r0, r1) */
static void gn_fwd(void *ctx, int64_t r0, int64_t r1)
{
    const job *j = ctx;
    int64_t len = j->Cg * j->S;
    for (int64_t r = r0; r < r1; r++) {
        int64_t off = r * len, c0 = (r % j->G) * j->Cg;
        double s[2] = {0, 0}, k = shift_of(j->f64, j->x, off, len), mean, var, rstd;
        acc(j, j->x, off, len, k, s);
        finish(s, k, len, j->p->eps, &mean, &var, &rstd);
        for (int64_t c = 0; c < j->Cg; c++) {
            double a = j->gam ? ld(j->f64, j->gam, c0 + c) * rstd : rstd;
            double b = (j->bet ? ld(j->f64, j->bet, c0 + c) : 0.0) - (mean - k) * a;
            apply(j, j->x, j->y, off + c * j->S, j->S, k, a, b, NULL, NULL);
        }
    }
}

/* GROUP_NORM_GRAD: as layer norm over the row, with g = gy gamma[c] */
static void gn_grad(void *ctx, int64_t r0, int64_t r1)
{
    const job *j = ctx;
    int64_t len = j->Cg * j->S;
    for (int64_t r = r0; r < r1; r++) {
        int64_t off = r * len, c0 = (r % j->G) * j->Cg;
        double s[4] = {0, 0, 0, 0}, k = shift_of(j->f64, j->x, off, len), mean, var, rstd;
        for (int64_t c = 0; c < j->Cg; c++) {
            double t[4] = {0, 0, 0, 0}, gam = j->gam ? ld(j->f64, j->gam, c0 + c) : 1.0;
            acc4(j, j->x, j->gy, NULL, off + c * j->S, 0, j->S, k, t);
            s[0] += t[0];
            s[1] += t[1];
            s[2] += gam * t[2];
            s[3] += gam * t[3];
        }
        finish(s, k, len, j->p->eps, &mean, &var, &rstd);
        double mg = s[2] / (double)len, mgx = rstd * (s[3] - (mean - k) * s[2]) / (double)len;
        double B = -rstd * rstd * mgx, C = -rstd * mg + (k - mean) * B;
        for (int64_t c = 0; c < j->Cg; c++) {
            double gam = j->gam ? ld(j->f64, j->gam, c0 + c) : 1.0;
            dxrow(j, j->x, j->gy, NULL, j->y, off + c * j->S, j->S, k, gam * rstd, B, C);
        }
    }
}

/* (shift, mean, rstd) of group-norm rows into ws */
static void gn_stats(void *ctx, int64_t r0, int64_t r1)
{
    const job *j = ctx;
    int64_t len = j->Cg * j->S;
    for (int64_t r = r0; r < r1; r++) {
        double s[2] = {0, 0}, k = shift_of(j->f64, j->x, r * len, len), var;
        acc(j, j->x, r * len, len, k, s);
        j->ws[3 * r] = k;
        finish(s, k, len, j->p->eps, &j->ws[3 * r + 1], &var, &j->ws[3 * r + 2]);
    }
}

/* GROUP_NORM_GRAD_AFFINE per channel: sum over n of the channel's gy xhat, gy */
static void gn_affine(void *ctx, int64_t c0, int64_t c1)
{
    const job *j = ctx;
    for (int64_t c = c0; c < c1; c++) {
        double dg = 0, db = 0;
        for (int64_t n = 0; n < j->N; n++) {
            int64_t r = n * j->G + c / j->Cg;
            const double *w = j->ws + 3 * r; /* shift, mean, rstd */
            double t[4] = {0, 0, 0, 0};
            acc4(j, j->x, j->gy, NULL, (n * j->C + c) * j->S, 0, j->S, w[0], t);
            dg += w[2] * (t[3] - (w[1] - w[0]) * t[2]);
            db += t[2];
        }
        st(j->f64, j->y, c, dg);
        st(j->f64, j->y, j->C + c, db);
    }
}

/* ---- validation and dispatch ------------------------------------------- */

static const char *shp(const nb_tensor *t, char *buf)
{
    return nb_shape_str(t->ndim, t->shape, buf, 96);
}

/* Scratch doubles a call needs (layer/RMS affine partials, group stats). */
static int64_t ws_doubles(nb_op op, const nb_tensor *x, const nb_norm_params *p)
{
    if (!x || !p)
        return 0;
    if (op == NB_OP_LAYER_NORM_GRAD_AFFINE || op == NB_OP_RMS_NORM_GRAD_AFFINE) {
        if (p->naxes < 1 || p->naxes > x->ndim)
            return 0;
        int64_t D = nb_shape_numel(p->naxes, x->shape + x->ndim - p->naxes);
        int64_t R = D ? nb_tensor_numel(x) / D : 0;
        int64_t nb = R < MAX_BLOCKS ? R : MAX_BLOCKS;
        return nb * 2 * D;
    }
    if (op == NB_OP_GROUP_NORM_GRAD_AFFINE && x->ndim >= 2)
        return 3 * x->shape[0] * (p->groups > 0 ? p->groups : 1);
    return 0;
}

size_t nb_cpu_norm_workspace(const nb_kernel_call *c)
{
    if (!c || c->n_in < 1)
        return 0;
    return (size_t)ws_doubles(c->op, c->in[0], c->params) * sizeof(double);
}

static int64_t grain_for(int64_t elems_per_item)
{
    if (elems_per_item >= GRAIN_ELEMS)
        return 1;
    return GRAIN_ELEMS / (elems_per_item > 0 ? elems_per_item : 1);
}

/* Expected input count of a node with params p. */
static int expected_inputs(nb_op op, const nb_norm_params *p)
{
    switch (op) {
    case NB_OP_BATCH_NORM:
        return 1 + !!p->has_gamma + !!p->has_beta + 2 * !!p->has_running;
    case NB_OP_LAYER_NORM:
    case NB_OP_GROUP_NORM:
        return 1 + !!p->has_gamma + !!p->has_beta;
    case NB_OP_RMS_NORM:
        return 1 + !!p->has_gamma;
    case NB_OP_BATCH_NORM_GRAD:
        return (p->training ? 3 : 4) + !!p->has_gamma;
    case NB_OP_BATCH_NORM_GRAD_AFFINE:
        return p->training ? 2 : 4;
    case NB_OP_LAYER_NORM_GRAD:
    case NB_OP_GROUP_NORM_GRAD:
    case NB_OP_RMS_NORM_GRAD:
        return 2 + !!p->has_gamma;
    default:
        return 2; /* the other *_GRAD_AFFINE */
    }
}

nb_status nb_cpu_norm(const nb_kernel_call *c)
{
    const char *name = nb_op_name(c->op);
    const nb_norm_params *p = c->params;
    char b1[96], b2[96];
    if (!p)
        return nb_error(NB_ERR_ARG, "%s: no parameters", name);
    int want = expected_inputs(c->op, p);
    if (c->n_in != want)
        return nb_error(NB_ERR_ARG, "%s: expected %d inputs, got %d", name, want, c->n_in);
    const nb_tensor *x = c->in[0];
    nb_dtype dt = x->dtype;
    if (dt != NB_F32 && dt != NB_F64)
        return nb_error(NB_ERR_DTYPE, "%s: x is %s; only f32 and f64 are supported", name,
                        nb_dtype_name(dt));
    if (c->out->dtype != dt)
        return nb_error(NB_ERR_DTYPE, "%s: output is %s, x is %s", name,
                        nb_dtype_name(c->out->dtype), nb_dtype_name(dt));
    for (int i = 0; i < c->n_in; i++) {
        if (c->in[i]->dtype != dt)
            return nb_error(NB_ERR_DTYPE, "%s: input %d is %s, x is %s", name, i,
                            nb_dtype_name(c->in[i]->dtype), nb_dtype_name(dt));
        if (!nb_tensor_is_contiguous(c->in[i]))
            return nb_error(NB_ERR_ARG, "%s: input %d is not contiguous", name, i);
    }
    if (!nb_tensor_is_contiguous(c->out) || !(p->eps >= 0))
        return nb_error(NB_ERR_ARG, "%s: non-contiguous output or bad eps %g", name, p->eps);

    bool is_bn = c->op == NB_OP_BATCH_NORM || c->op == NB_OP_BATCH_NORM_GRAD ||
                 c->op == NB_OP_BATCH_NORM_GRAD_AFFINE;
    bool is_gn = c->op == NB_OP_GROUP_NORM || c->op == NB_OP_GROUP_NORM_GRAD ||
                 c->op == NB_OP_GROUP_NORM_GRAD_AFFINE;
    bool is_rms = c->op == NB_OP_RMS_NORM || c->op == NB_OP_RMS_NORM_GRAD ||
                  c->op == NB_OP_RMS_NORM_GRAD_AFFINE;
    bool is_affine = c->op == NB_OP_BATCH_NORM_GRAD_AFFINE ||
                     c->op == NB_OP_LAYER_NORM_GRAD_AFFINE ||
                     c->op == NB_OP_GROUP_NORM_GRAD_AFFINE || c->op == NB_OP_RMS_NORM_GRAD_AFFINE;
    bool is_fwd = c->op == NB_OP_BATCH_NORM || c->op == NB_OP_LAYER_NORM ||
                  c->op == NB_OP_GROUP_NORM || c->op == NB_OP_RMS_NORM;

    job j = {.p = p, .rms = is_rms, .f64 = dt == NB_F64, .x = nb_tensor_data(x),
             .y = nb_tensor_data(c->out), .pf = &prims_f32_simd[nb_simd_level()]};
    int64_t numel = nb_tensor_numel(x), A; /* A: size of the affine dim (C or D) */
    if (is_bn || is_gn) {
        if (x->ndim < 2)
            return nb_error(NB_ERR_SHAPE, "%s: x %s needs at least 2 dims (N, C, ...)", name,
                            shp(x, b1));
        j.N = x->shape[0];
        j.C = x->shape[1];
        j.S = nb_shape_numel(x->ndim - 2, x->shape + 2);
        A = j.C;
        if (is_gn) {
            if (p->groups < 1 || j.C % p->groups != 0)
                return nb_error(NB_ERR_SHAPE, "%s: %" PRId64 " channels not divisible by %" PRId64
                                " groups", name, j.C, p->groups);
            j.G = p->groups;
            j.Cg = j.C / j.G;
        }
    } else {
        if (p->naxes < 1 || p->naxes > x->ndim)
            return nb_error(NB_ERR_ARG, "%s: naxes %d out of range for x %s", name, p->naxes,
                            shp(x, b1));
        j.D = nb_shape_numel(p->naxes, x->shape + x->ndim - p->naxes);
        j.R = j.D ? numel / j.D : 0;
        A = j.D;
    }
    /* gy has x's shape for every backward op */
    if (!is_fwd && !nb_shape_equal(c->in[1]->ndim, c->in[1]->shape, x->ndim, x->shape))
        return nb_error(NB_ERR_SHAPE, "%s: gy %s differs from x %s", name, shp(c->in[1], b1),
                        shp(x, b2));
    if (!is_fwd)
        j.gy = nb_tensor_data(c->in[1]);
    /* the optional per-channel / per-element tensors */
    int k = is_fwd ? 1 : 2;
    if (c->op == NB_OP_BATCH_NORM_GRAD && p->training)
        j.aux = nb_tensor_data(c->in[k++]);
    if (is_fwd) {
        j.gam = p->has_gamma ? nb_tensor_data(c->in[k++]) : NULL;
        j.bet = !is_rms && p->has_beta ? nb_tensor_data(c->in[k++]) : NULL;
    }
    if (is_bn && (c->op == NB_OP_BATCH_NORM ? p->has_running : !p->training)) {
        j.rm = nb_tensor_data(c->in[k]);
        j.rv = nb_tensor_data(c->in[k + 1]);
        k += 2;
    }
    if (!is_fwd && !is_affine && p->has_gamma)
        j.gam = nb_tensor_data(c->in[k++]);
    for (int i = 1; i < c->n_in; i++) {
        if (i == 1 && !is_fwd)
            continue;
        int64_t want_n = (c->op == NB_OP_BATCH_NORM_GRAD && p->training && i == 2) ? 5 * A : A;
        if (nb_tensor_numel(c->in[i]) != want_n)
            return nb_error(NB_ERR_SHAPE, "%s: input %d %s should have %" PRId64
                            " elements for x %s", name, i, shp(c->in[i], b1), want_n, shp(x, b2));
    }
    int64_t out_n = !is_affine ? numel : is_rms ? A : is_bn ? 5 * A : 2 * A;
    if (nb_tensor_numel(c->out) != out_n)
        return nb_error(NB_ERR_SHAPE, "%s: output %s should have %" PRId64 " elements", name,
                        shp(c->out, b1), out_n);
    if (is_bn && !p->training && !j.rm)
        return nb_error(NB_ERR_ARG, "%s: eval mode needs the running statistics", name);
    if (is_bn && p->training && j.N * j.S <= 1)
        return nb_error(NB_ERR_SHAPE, "%s: expected more than 1 value per channel when "
                        "training, got input size %s", name, shp(x, b1));
    if (numel == 0 || A == 0) {
        if (out_n)
            memset(j.y, 0, (size_t)out_n * nb_dtype_size(dt));
        return NB_OK;
    }

    /* scratch: the compile-time workspace when large enough, else the heap */
    int64_t wsn = ws_doubles(c->op, x, p);
    double *heap = NULL;
    if (wsn > 0) {
        if (c->workspace && c->workspace_size >= (size_t)wsn * sizeof(double)) {
            j.ws = c->workspace;
        } else {
            heap = malloc((size_t)wsn * sizeof(double));
            if (!heap)
                return nb_error(NB_ERR_ALLOC, "%s: out of memory for %" PRId64
                                " doubles of scratch", name, wsn);
            j.ws = heap;
        }
    }
    switch (c->op) {
    case NB_OP_BATCH_NORM:
        nb_parallel_for(j.C, grain_for(j.N * j.S), bn_fwd, &j);
        break;
    case NB_OP_BATCH_NORM_GRAD:
        nb_parallel_for(j.C, grain_for(j.N * j.S), bn_grad, &j);
        break;
    case NB_OP_BATCH_NORM_GRAD_AFFINE:
        nb_parallel_for(j.C, grain_for(j.N * j.S), bn_affine, &j);
        break;
    case NB_OP_LAYER_NORM:
    case NB_OP_RMS_NORM:
        nb_parallel_for(j.R, grain_for(j.D), ln_fwd, &j);
        break;
    case NB_OP_LAYER_NORM_GRAD:
    case NB_OP_RMS_NORM_GRAD:
        nb_parallel_for(j.R, grain_for(j.D), ln_grad, &j);
        break;
    case NB_OP_LAYER_NORM_GRAD_AFFINE:
    case NB_OP_RMS_NORM_GRAD_AFFINE:
        j.nblk = j.R < MAX_BLOCKS ? j.R : MAX_BLOCKS;
        nb_parallel_for(j.nblk, 1, ln_affine_blocks, &j);
        nb_parallel_for(j.D, grain_for(2 * j.nblk), ln_affine_reduce, &j);
        break;
    case NB_OP_GROUP_NORM:
        nb_parallel_for(j.N * j.G, grain_for(j.Cg * j.S), gn_fwd, &j);
        break;
    case NB_OP_GROUP_NORM_GRAD:
        nb_parallel_for(j.N * j.G, grain_for(j.Cg * j.S), gn_grad, &j);
        break;
    case NB_OP_GROUP_NORM_GRAD_AFFINE:
        nb_parallel_for(j.N * j.G, grain_for(j.Cg * j.S), gn_stats, &j);
        nb_parallel_for(j.C, grain_for(j.N * j.S), gn_affine, &j);
        break;
    default:
        free(heap);
        return nb_error(NB_ERR_UNSUPPORTED, "%s: not a normalisation op", name);
    }
    free(heap);
    return NB_OK;
}
