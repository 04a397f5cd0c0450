/* Reductions over a bitmask of axes: SUM, MEAN, MAX, MIN, and ARGMAX over one
 * axis.
 *
 *     sum:    out[k] = sum_r x[k, r]            (f32 sums accumulate in double)
 *     mean:   out[k] = sum_r x[k, r] / |r|
 *     max:    out[k] = max_r x[k, r]            (NaN propagates)
 *     min:    out[k] = min_r x[k, r]            (NaN propagates)
 *     argmax: out[k] = first r with x[k, r] = max_r x[k, r]   (NaN is the maximum)
 *
 * k runs over the kept dims, r over the reduced ones. After dropping size-1
 * dims and merging neighbours of the same kind, the input is a row-major block
 * list alternating kept (K) and reduced (R) dims, and the innermost block picks
 * the loop:
 *
 *   ... R last: every output is a sum of contiguous runs of length L, reduced
 *       with 8 independent accumulators (rows; [K, R] and the full reduction);
 *   ... K last: every output row of length L accumulates whole input rows into
 *       a tile of accumulators (column sums [R, K], middle blocks [K, R, K]).
 *
 * Work is split over outputs on the thread pool; when there are few outputs and
 * a long reduction, the reduction itself is cut into fixed chunks whose
 * partials are merged in order (the result does not depend on the thread count).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/elementwise_simd.h"
#include "kernels/threadpool.h"

#define RTILE 1024            /* accumulators per column tile */
#define CHUNK 32768           /* elements per reduction chunk */
#define FEW_UNITS 64          /* below this many work units, chunk the reduction */
#define GRAIN_ELEMS 16384     /* elements per thread-pool chunk, at least */
#define LANES 16              /* independent accumulators in a contiguous run */

/* Keep the lane loop a loop so that GCC vectorises it across the lanes. */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_UNROLL _Pragma("GCC unroll 0")
#else
#define NO_UNROLL
#endif

/* ---- per-(op, dtype) accumulators ------------------------------------- */

typedef struct reduce_impl {
    size_t acc_size;
    void (*init)(void *acc, int64_t n);                   /* acc[j] = identity */
    void (*run)(void *acc, const void *x, int64_t n);     /* acc[0] op= x[0..n) */
    /* acc[j] op= x[r * stride + j] for r < rows (rows of a column block) */
    void (*cols)(void *acc, const void *x, int64_t n, int64_t rows, int64_t stride);
    void (*merge)(void *acc, const void *b, int64_t n);   /* acc[j] op= b[j] */
    void (*store)(void *out, const void *acc, int64_t n, double scale);
} reduce_impl;

/* Sums: ACC is double for floats, uint64_t (wrapping, no UB) for integers. */
#define DEFINE_SUM(NAME, T, ACC) DEFINE_SUM_TGT(NAME, T, ACC, )
#define DEFINE_SUM_TGT(NAME, T, ACC, TGT)                                         \
    TGT static void NAME##_init(void *a, int64_t n)                               \
    {                                                                             \
        ACC *acc = a;                                                             \
        for (int64_t j = 0; j < n; j++)                                           \
            acc[j] = 0;                                                           \
    }                                                                             \
    TGT static void NAME##_run(void *a, const void *xv, int64_t n)                \
    {                                                                             \
        const T *x = xv;                                                          \
        ACC s[LANES] = {0}, t = 0;                                                \
        int64_t i = 0;                                                            \
        for (; i + LANES <= n; i += LANES) {                                      \
            const T *b = x + i;                                                   \
            NO_UNROLL                                                             \
            for (int l = 0; l < LANES; l++)                                       \
                s[l] += (ACC)b[l];                                                \
        }                                                                         \
        for (; i < n; i++)                                                        \
            t += (ACC)x[i];                                                       \
        for (int w = LANES / 2; w > 0; w /= 2) /* pairwise fold of the lanes */   \
            for (int l = 0; l < w; l++)                                           \
                s[l] += s[l + w];                                                 \
        *(ACC *)a += s[0] + t;                                                    \
    }                                                                             \
    TGT static void NAME##_cols(void *a, const void *xv, int64_t n, int64_t rows, \
                                int64_t stride)                                   \
    {                                                                             \
        ACC *acc = a;                                                             \
        const T *x = xv;                                                          \
        int64_t r = 0;                                                            \
        for (; r + 4 <= rows; r += 4) { /* four rows per pass over acc */         \
            const T *x0 = x + r * stride, *x1 = x0 + stride;                      \
            const T *x2 = x1 + stride, *x3 = x2 + stride;                         \
            for (int64_t j = 0; j < n; j++)                                       \
                acc[j] += ((ACC)x0[j] + (ACC)x1[j]) + ((ACC)x2[j] + (ACC)x3[j]);  \
        }                                                                         \
        for (; r < rows; r++)                                                     \
            for (int64_t j = 0; j < n; j++)                                       \
                acc[j] += (ACC)x[r * stride + j];                                 \
    }                                                                             \
    TGT static void NAME##_merge(void *a, const void *bv, int64_t n)              \
    {                                                                             \
        ACC *acc = a;                                                             \
        const ACC *b = bv;                                                        \
        for (int64_t j = 0; j < n; j++)                                           \
            acc[j] += b[j];                                                       \
    }

/* Signed integers go through uint64_t so that overflow wraps instead of being UB. */
#define SUM_STORE_FLOAT(NAME, T)                                                  \
    static void NAME##_store(void *o, const void *a, int64_t n, double scale)     \
    {                                                                             \
        T *out = o;                                                               \
        const double *acc = a;                                                    \
        for (int64_t j = 0; j < n; j++)                                           \
            out[j] = (T)(acc[j] * scale);                                         \
    }
#define SUM_STORE_INT(NAME, T)                                                    \
    static void NAME##_store(void *o, const void *a, int64_t n, double scale)     \
    {                                                                             \
        T *out = o;                                                               \
        const uint64_t *acc = a;                                                  \
        for (int64_t j = 0; j < n; j++)                                           \
            out[j] = (T)(int64_t)acc[j];                                          \
    }

DEFINE_SUM(sum_f32, float, double)
SUM_STORE_FLOAT(sum_f32, float)
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* the same f32 sums built for AVX-512 (8 doubles a vector): the same
 * operations lane by lane, so the same bits; picked at run time */
#define HAVE_SUM_F32_AVX512 1
DEFINE_SUM_TGT(sum_f32_avx512, float, double, __attribute__((target("avx512f"))))
#include <immintrin.h>

/* out[u] = (float)(sum(x[u*L .. u*L + L)) * scale) for rows of L contiguous
 * floats (a global average pool: 49 floats a row), row after row without
 * the general loop's odometer and calls: sum_f32_run's arithmetic spelled
 * out in registers (LANES = 16 double lanes in two vectors, the tail summed
 * in order, the lanes folded by the same halving tree), so the same bits. */
__attribute__((target("avx512f"))) static void sum_rows_f32_avx512(const float *x, int64_t L,
                                                                    int64_t rows, float *out,
                                                                    double scale)
{
    _Static_assert(LANES == 16, "two vectors of 8 double lanes");
    for (int64_t u = 0; u < rows; u++, x += L) {
        __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
        int64_t i = 0;
        for (; i + 16 <= L; i += 16) {
            __m512 v = _mm512_loadu_ps(x + i);
            lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
            hi = _mm512_add_pd(
                hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
        }
        double t = 0;
        for (; i < L; i++)
            t += (double)x[i];
        __m512d s8 = _mm512_add_pd(lo, hi); /* s[l] += s[l + 8] */
        __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd(s8, 1));
        __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
        double acc = 0.0;
        acc += (_mm_cvtsd_f64(s2) + _mm_cvtsd_f64(_mm_unpackhi_pd(s2, s2))) + t;
        out[u] = (float)(acc * scale);
    }
}
#endif
DEFINE_SUM(sum_f64, double, double)
SUM_STORE_FLOAT(sum_f64, double)
DEFINE_SUM(sum_i32, int32_t, uint64_t)
SUM_STORE_INT(sum_i32, int32_t)
DEFINE_SUM(sum_i64, int64_t, uint64_t)
SUM_STORE_INT(sum_i64, int64_t)

/* max/min keep the input type. CMP(x, m) says x replaces m; a NaN is tracked
 * in its own lanes and wins at the end (for integers that code folds away). */
#define GT(x, m) ((x) > (m))
#define LT(x, m) ((x) < (m))

#define DEFINE_EXTREME(NAME, T, IDENT, CMP)                                       \
    static void NAME##_init(void *a, int64_t n)                                   \
    {                                                                             \
        T *acc = a;                                                               \
        for (int64_t j = 0; j < n; j++)                                           \
            acc[j] = IDENT;                                                       \
    }                                                                             \
    static void NAME##_run(void *a, const void *xv, int64_t n)                    \
    {                                                                             \
        const T *x = xv;                                                          \
        T m[LANES], nan[LANES], r = *(T *)a;                                      \
        for (int l = 0; l < LANES; l++) {                                         \
            m[l] = r;                                                             \
            nan[l] = 0;                                                           \
        }                                                                         \
        int64_t i = 0;                                                            \
        for (; i + LANES <= n; i += LANES) {                                      \
            const T *b = x + i;                                                   \
            NO_UNROLL                                                             \
            for (int l = 0; l < LANES; l++) {                                     \
                T v = b[l];                                                       \
                m[l] = CMP(v, m[l]) ? v : m[l];                                   \
                nan[l] = v != v ? v : nan[l];                                     \
            }                                                                     \
        }                                                                         \
        for (; i < n; i++) {                                                      \
            r = CMP(x[i], r) ? x[i] : r;                                          \
            nan[0] = x[i] != x[i] ? x[i] : nan[0];                                \
        }                                                                         \
        for (int l = 0; l < LANES; l++)                                           \
            r = CMP(m[l], r) ? m[l] : r;                                          \
        for (int l = 0; l < LANES; l++)                                           \
            r = nan[l] != nan[l] ? nan[l] : r;                                    \
        *(T *)a = r;                                                              \
    }                                                                             \
    static void NAME##_cols(void *a, const void *xv, int64_t n, int64_t rows,     \
                            int64_t stride)                                       \
    {                                                                             \
        T *acc = a;                                                               \
        const T *x = xv;                                                          \
        int64_t r = 0;                                                            \
        for (; r + 2 <= rows; r += 2) { /* two rows per pass over acc */          \
            const T *x0 = x + r * stride, *x1 = x0 + stride;                      \
            for (int64_t j = 0; j < n; j++) {                                     \
                T v = x0[j], w = x1[j], c = acc[j];                               \
                c = CMP(v, c) ? v : c;                                            \
                c = v != v ? v : c;                                               \
                c = CMP(w, c) ? w : c;                                            \
                acc[j] = w != w ? w : c;                                          \
            }                                                                     \
        }                                                                         \
        for (; r < rows; r++) {                                                   \
            const T *xr = x + r * stride;                                         \
            for (int64_t j = 0; j < n; j++) {                                     \
                T v = xr[j], c = acc[j];                                          \
                c = CMP(v, c) ? v : c;                                            \
                acc[j] = v != v ? v : c;                                          \
            }                                                                     \
        }                                                                         \
    }                                                                             \
    static void NAME##_merge(void *a, const void *bv, int64_t n)                  \
    {                                                                             \
        NAME##_cols(a, bv, n, 1, 0);                                              \
    }                                                                             \
    static void NAME##_store(void *o, const void *a, int64_t n, double scale)     \
    {                                                                             \
        (void)scale;                                                              \
        memcpy(o, a, (size_t)n * sizeof(T));                                      \
    }

DEFINE_EXTREME(max_f32, float, -INFINITY, GT)
DEFINE_EXTREME(max_f64, double, -INFINITY, GT)
DEFINE_EXTREME(max_i32, int32_t, INT32_MIN, GT)
DEFINE_EXTREME(max_i64, int64_t, INT64_MIN, GT)
DEFINE_EXTREME(min_f32, float, INFINITY, LT)
DEFINE_EXTREME(min_f64, double, INFINITY, LT)
DEFINE_EXTREME(min_i32, int32_t, INT32_MAX, LT)
DEFINE_EXTREME(min_i64, int64_t, INT64_MAX, LT)

#define IMPL(NAME, ACC) \
    { sizeof(ACC), NAME##_init, NAME##_run, NAME##_cols, NAME##_merge, NAME##_store }

/* [0] sum/mean, [1] max, [2] min; by dtype f32, f64, i32, i64. */
static const reduce_impl impls[3][4] = {
    {IMPL(sum_f32, double), IMPL(sum_f64, double), IMPL(sum_i32, uint64_t), IMPL(sum_i64, uint64_t)},
    {IMPL(max_f32, float), IMPL(max_f64, double), IMPL(max_i32, int32_t), IMPL(max_i64, int64_t)},
    {IMPL(min_f32, float), IMPL(min_f64, double), IMPL(min_i32, int32_t), IMPL(min_i64, int64_t)},
};

#ifdef HAVE_SUM_F32_AVX512
static const reduce_impl sum_f32_avx512_impl = {sizeof(double),    sum_f32_avx512_init,
                                                sum_f32_avx512_run, sum_f32_avx512_cols,
                                                sum_f32_avx512_merge, sum_f32_store};
#endif

/* The implementation of reduction `kind` over dtype slot `slot`. */
static const reduce_impl *impl_of(int kind, int slot)
{
#ifdef HAVE_SUM_F32_AVX512
    if (kind == 0 && slot == 0 && nb_simd_level() >= NB_SIMD_AVX512)
        return &sum_f32_avx512_impl;
#endif
    return &impls[kind][slot];
}

/* ---- odometer over a list of (shape, stride) dims ------------------- */

typedef struct odometer {
    int n;
    const int64_t *shape, *stride;
    int64_t idx[NB_MAX_DIMS];
    int64_t off;
} odometer;

/* Position the odometer at flat row-major index i. */
static void odo_set(odometer *o, int n, const int64_t *shape, const int64_t *stride, int64_t i)
{
    o->n = n;
    o->shape = shape;
    o->stride = stride;
    o->off = 0;
    for (int d = n - 1; d >= 0; d--) {
        o->idx[d] = i % shape[d];
        i /= shape[d];
        o->off += o->idx[d] * stride[d];
    }
}

static void odo_next(odometer *o)
{
    for (int d = o->n - 1; d >= 0; d--) {
        o->off += o->stride[d];
        if (++o->idx[d] < o->shape[d])
            return;
        o->off -= o->idx[d] * o->stride[d];
        o->idx[d] = 0;
    }
}

/* ---- the reduction plan and its worker ------------------------------- */

typedef struct reduce_plan {
    const reduce_impl *im;
    const char *x;
    char *out;
    size_t es;          /* element size of x and out */
    int kept_last;      /* innermost block kept (column tiles) or reduced (runs) */
    int64_t L;          /* length of the innermost block */
    int nk, nr;         /* outer kept dims, outer reduced dims (innermost excluded) */
    int64_t kshape[NB_MAX_DIMS], kstride[NB_MAX_DIMS];
    int64_t rshape[NB_MAX_DIMS], rstride[NB_MAX_DIMS];
    int64_t nred;       /* iterations of the outer reduced dims */
    int64_t ntiles;     /* kept_last: column tiles per output row */
    int64_t nchunks, chunk; /* reduction split: runs-case elements, tile-case rows */
    double scale;
    char *partials;     /* nchunks > 1: one accumulator set per work item */
} reduce_plan;

/* Work items [begin, end): item w = unit * nchunks + chunk. */
static void reduce_items(void *ctx, int64_t begin, int64_t end)
{
    const reduce_plan *p = ctx;
    const reduce_impl *im = p->im;
#ifdef HAVE_SUM_F32_AVX512
    /* whole contiguous rows, one an output */
    if (im == &sum_f32_avx512_impl && !p->kept_last && p->nr == 0 && p->nchunks == 1 &&
        (p->nk == 0 || (p->nk == 1 && p->kstride[0] == p->L))) {
        sum_rows_f32_avx512((const float *)p->x + begin * p->L, p->L, end - begin,
                            (float *)p->out + begin, p->scale);
        return;
    }
#endif
    double accbuf[RTILE]; /* 8-byte slots: room for RTILE accumulators of any type */
    for (int64_t w = begin; w < end; w++) {
        int64_t u = w / p->nchunks, c = w % p->nchunks;
        odometer ko, ro;
        if (!p->kept_last) {
            /* output u = reduce over runs x[base + roff + 0..L) */
            odo_set(&ko, p->nk, p->kshape, p->kstride, u);
            int64_t total = p->nred * p->L;
            int64_t e = c * p->chunk, e1 = e + p->chunk < total ? e + p->chunk : total;
            int64_t pos = e % p->L;
            odo_set(&ro, p->nr, p->rshape, p->rstride, e / p->L);
            im->init(accbuf, 1);
            while (e < e1) {
                int64_t len = p->L - pos < e1 - e ? p->L - pos : e1 - e;
                im->run(accbuf, p->x + (size_t)(ko.off + ro.off + pos) * p->es, len);
                e += len;
                pos = 0;
                odo_next(&ro);
            }
            if (p->nchunks == 1)
                im->store(p->out + (size_t)u * p->es, accbuf, 1, p->scale);
            else
                memcpy(p->partials + (size_t)w * im->acc_size, accbuf, im->acc_size);
        } else {
            /* output row o, columns [j0, j0 + tl): accumulate input rows */
            int64_t o = u / p->ntiles, j0 = (u % p->ntiles) * RTILE;
            int64_t tl = p->L - j0 < RTILE ? p->L - j0 : RTILE;
            odo_set(&ko, p->nk, p->kshape, p->kstride, o);
            int64_t r = c * p->chunk, r1 = r + p->chunk < p->nred ? r + p->chunk : p->nred;
            odo_set(&ro, p->nr, p->rshape, p->rstride, r);
            im->init(accbuf, tl);
            while (r < r1) {
                /* a stretch of rows along the innermost reduced dim at one stride */
                int64_t rows = 1, stride = 0;
                if (p->nr > 0) {
                    int64_t left = p->rshape[p->nr - 1] - ro.idx[p->nr - 1];
                    rows = left < r1 - r ? left : r1 - r;
                    stride = p->rstride[p->nr - 1];
                }
                im->cols(accbuf, p->x + (size_t)(ko.off + ro.off + j0) * p->es, tl, rows, stride);
                r += rows;
                if (r < r1)
                    odo_set(&ro, p->nr, p->rshape, p->rstride, r);
            }
            if (p->nchunks == 1)
                im->store(p->out + (size_t)(o * p->L + j0) * p->es, accbuf, tl, p->scale);
            else
                memcpy(p->partials + (size_t)w * RTILE * im->acc_size, accbuf,
                       (size_t)tl * im->acc_size);
        }
    }
}

/* Merge the chunk partials of every unit in chunk order and store them. */
static void merge_partials(const reduce_plan *p, int64_t units)
{
    const reduce_impl *im = p->im;
    size_t stride = p->kept_last ? (size_t)RTILE * im->acc_size : im->acc_size;
    for (int64_t u = 0; u < units; u++) {
        char *first = p->partials + (size_t)(u * p->nchunks) * stride;
        int64_t n = 1, dst = u;
        if (p->kept_last) {
            int64_t j0 = (u % p->ntiles) * RTILE;
            n = p->L - j0 < RTILE ? p->L - j0 : RTILE;
            dst = (u / p->ntiles) * p->L + j0;
        }
        for (int64_t c = 1; c < p->nchunks; c++)
            im->merge(first, first + (size_t)c * stride, n);
        im->store(p->out + (size_t)dst * p->es, first, n, p->scale);
    }
}

/* Run the plan for a contiguous input whose coalesced blocks are given. */
static nb_status run_plan(reduce_plan *p, int nd, const int64_t *shape, const bool *red,
                          int64_t n_out)
{
    int64_t stride[NB_MAX_DIMS];
    nb_shape_strides(nd, shape, stride);
    p->kept_last = !red[nd - 1];
    p->L = shape[nd - 1];
    p->nk = p->nr = 0;
    for (int d = 0; d < nd - 1; d++) {
        if (red[d]) {
            p->rshape[p->nr] = shape[d];
            p->rstride[p->nr++] = stride[d];
        } else {
            p->kshape[p->nk] = shape[d];
            p->kstride[p->nk++] = stride[d];
        }
    }
    p->nred = nb_shape_numel(p->nr, p->rshape);
    int64_t units, per_unit; /* per_unit: elements read by one unit */
    if (p->kept_last) {
        p->ntiles = (p->L + RTILE - 1) / RTILE;
        units = (n_out / p->L) * p->ntiles;
        int64_t tl = p->L < RTILE ? p->L : RTILE;
        per_unit = p->nred * tl;
        p->chunk = p->nred;
        if (units < FEW_UNITS && per_unit >= 2 * CHUNK)
            p->chunk = CHUNK / tl > 0 ? CHUNK / tl : 1;
        p->nchunks = (p->nred + p->chunk - 1) / p->chunk;
    } else {
        p->ntiles = 1;
        units = n_out;
        per_unit = p->nred * p->L;
        p->chunk = per_unit;
        if (units < FEW_UNITS && per_unit >= 2 * CHUNK)
            p->chunk = CHUNK;
        p->nchunks = (per_unit + p->chunk - 1) / p->chunk;
    }
    if (p->nchunks < 1)
        p->nchunks = 1;
    p->partials = NULL;
    if (p->nchunks > 1) {
        size_t per = p->kept_last ? (size_t)RTILE * p->im->acc_size : p->im->acc_size;
        p->partials = malloc((size_t)(units * p->nchunks) * per);
        if (!p->partials)
            return nb_error(NB_ERR_ALLOC, "reduce: out of memory for partial sums");
    }
    int64_t items = units * p->nchunks;
    int64_t per_item = per_unit / p->nchunks + 1;
    if (units * per_unit < 2 * GRAIN_ELEMS || items == 1) {
        reduce_items(p, 0, items);
    } else {
        int64_t grain = GRAIN_ELEMS / per_item;
        nb_parallel_for(items, grain > 1 ? grain : 1, reduce_items, p);
    }
    if (p->nchunks > 1) {
        merge_partials(p, units);
        free(p->partials);
    }
    return NB_OK;
}

/* ---- argmax --------------------------------------------------------- */

typedef struct argmax_plan {
    const char *x;
    int64_t *out;
    nb_dtype dt;
    int64_t R, inner, ntiles;
} argmax_plan;

/* out[o, j] = first r maximising x[o, r, j]; a NaN is the maximum, so the
 * first NaN wins. A single column (inner == 1) is a contiguous row: find its
 * maximum with the vectorised max run, then the first position holding it. */
#define DEFINE_ARGMAX(NAME, T, MAXRUN)                                            \
    static void NAME(const T *x, int64_t R, int64_t inner, int64_t tl, int64_t *out) \
    {                                                                             \
        if (inner == 1) {                                                         \
            T m = x[0];                                                           \
            MAXRUN(&m, x, R);                                                     \
            int64_t r = 0;                                                        \
            if (m != m)                                                           \
                while (x[r] == x[r])                                              \
                    r++;                                                          \
            else                                                                  \
                while (x[r] != m)                                                 \
                    r++;                                                          \
            *out = r;                                                             \
            return;                                                               \
        }                                                                         \
        T best[RTILE];                                                            \
        for (int64_t j = 0; j < tl; j++) {                                        \
            best[j] = x[j];                                                       \
            out[j] = 0;                                                           \
        }                                                                         \
        for (int64_t r = 1; r < R; r++) {                                         \
            const T *row = x + r * inner;                                         \
            for (int64_t j = 0; j < tl; j++) {                                    \
                T v = row[j], b = best[j];                                        \
                bool take = (b == b) & ((v > b) | (v != v));                      \
                best[j] = take ? v : b;                                           \
                out[j] = take ? r : out[j];                                       \
            }                                                                     \
        }                                                                         \
    }

DEFINE_ARGMAX(argmax_f32, float, max_f32_run)
DEFINE_ARGMAX(argmax_f64, double, max_f64_run)
DEFINE_ARGMAX(argmax_i32, int32_t, max_i32_run)
DEFINE_ARGMAX(argmax_i64, int64_t, max_i64_run)

static void argmax_items(void *ctx, int64_t begin, int64_t end)
{
    const argmax_plan *p = ctx;
    size_t es = nb_dtype_size(p->dt);
    for (int64_t u = begin; u < end; u++) {
        int64_t o = u / p->ntiles, j0 = (u % p->ntiles) * RTILE;
        int64_t tl = p->inner - j0 < RTILE ? p->inner - j0 : RTILE;
        const void *x = p->x + (size_t)(o * p->R * p->inner + j0) * es;
        int64_t *out = p->out + o * p->inner + j0;
        switch (p->dt) {
        case NB_F32: argmax_f32(x, p->R, p->inner, tl, out); break;
        case NB_F64: argmax_f64(x, p->R, p->inner, tl, out); break;
        case NB_I32: argmax_i32(x, p->R, p->inner, tl, out); break;
        default: argmax_i64(x, p->R, p->inner, tl, out); break;
        }
    }
}

static void run_argmax(const nb_tensor *x, int axis, nb_tensor *out)
{
    argmax_plan p;
    p.x = nb_tensor_data(x);
    p.out = nb_tensor_data(out);
    p.dt = x->dtype;
    p.R = x->shape[axis];
    p.inner = nb_shape_numel(x->ndim - axis - 1, x->shape + axis + 1);
    int64_t outer = nb_shape_numel(axis, x->shape);
    p.ntiles = (p.inner + RTILE - 1) / RTILE;
    int64_t units = outer * p.ntiles;
    int64_t per_unit = p.R * (p.inner < RTILE ? p.inner : RTILE);
    if (units * per_unit < 2 * GRAIN_ELEMS || units == 1) {
        argmax_items(&p, 0, units);
    } else {
        int64_t grain = GRAIN_ELEMS / per_unit;
        nb_parallel_for(units, grain > 1 ? grain : 1, argmax_items, &p);
    }
}

/* ---- entry point ---------------------------------------------------- */

static int dtype_slot(nb_dtype dt)
{
    switch (dt) {
    case NB_F32: return 0;
    case NB_F64: return 1;
    case NB_I32: return 2;
    case NB_I64: return 3;
    default: return -1;
    }
}

/* Fill a contiguous float/int tensor with v (zero-size reductions). */
static void fill_const(nb_tensor *t, double v)
{
    int64_t n = nb_tensor_numel(t);
    void *d = nb_tensor_data(t);
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case NB_F32: ((float *)d)[i] = (float)v; break;
        case NB_F64: ((double *)d)[i] = v; break;
        case NB_I32: ((int32_t *)d)[i] = (int32_t)v; break;
        default: ((int64_t *)d)[i] = (int64_t)v; break;
        }
    }
}

/* SUM MEAN MAX MIN ARGMAX; see the top of the file. */
nb_status nb_cpu_reduce(const nb_kernel_call *c)
{
    const char *name = nb_op_name(c->op);
    char a[96], b[96], e[96];
    if (c->n_in != 1 || !c->in || !c->in[0] || !c->out || !c->params)
        return nb_error(NB_ERR_ARG, "%s: expects one input, an output and parameters", name);
    const nb_tensor *x = c->in[0];
    nb_tensor *out = c->out;
    const nb_reduce_params *rp = c->params;
    bool is_arg = c->op == NB_OP_ARGMAX;
    int slot = dtype_slot(x->dtype);
    if (slot < 0 || (c->op == NB_OP_MEAN && !nb_dtype_is_float(x->dtype)))
        return nb_error(NB_ERR_DTYPE, "%s: unsupported input dtype %s", name,
                        nb_dtype_name(x->dtype));
    nb_dtype want = is_arg ? NB_I64 : x->dtype;
    if (out->dtype != want)
        return nb_error(NB_ERR_DTYPE, "%s: output dtype must be %s, got %s", name,
                        nb_dtype_name(want), nb_dtype_name(out->dtype));
    if (x->ndim < 32 && (rp->axes >> x->ndim) != 0)
        return nb_error(NB_ERR_ARG, "%s: axes mask 0x%x names dims beyond the %d of %s", name,
                        (unsigned)rp->axes, x->ndim, nb_shape_str(x->ndim, x->shape, a, sizeof a));
    int naxes = 0, axis = -1;
    int64_t expect[NB_MAX_DIMS], count = 1;
    int ne = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (rp->axes & (1u << d)) {
            naxes++;
            axis = d;
            count *= x->shape[d];
            if (rp->keepdims)
                expect[ne++] = 1;
        } else {
            expect[ne++] = x->shape[d];
        }
    }
    if (is_arg && naxes != 1)
        return nb_error(NB_ERR_ARG, "argmax: expects exactly one axis, got %d", naxes);
    if (!nb_shape_equal(ne, expect, out->ndim, out->shape))
        return nb_error(NB_ERR_SHAPE, "%s: input %s reduced over mask 0x%x gives %s, output is %s",
                        name, nb_shape_str(x->ndim, x->shape, a, sizeof a), (unsigned)rp->axes,
                        nb_shape_str(ne, expect, b, sizeof b),
                        nb_shape_str(out->ndim, out->shape, e, sizeof e));
    if (count == 0) {
        if (c->op == NB_OP_SUM || c->op == NB_OP_MEAN) {
            fill_const(out, c->op == NB_OP_SUM ? 0.0 : NAN);
            return NB_OK;
        }
        return nb_error(NB_ERR_SHAPE, "%s: cannot reduce over a zero-size dim of %s", name,
                        nb_shape_str(x->ndim, x->shape, a, sizeof a));
    }
    int64_t n_out = nb_tensor_numel(out);
    if (n_out == 0)
        return NB_OK;

    nb_tensor tmp = {0};
    nb_status cst = nb_cpu_contiguous_input(x, &tmp, &x);
    if (cst != NB_OK)
        return cst;
    nb_status st = NB_OK;
    if (is_arg) {
        run_argmax(x, axis, out);
    } else {
        /* Drop size-1 dims; merge neighbours of the same kind (x is contiguous). */
        int64_t shape[NB_MAX_DIMS];
        bool red[NB_MAX_DIMS];
        int nd = 0;
        for (int d = 0; d < x->ndim; d++) {
            bool r = (rp->axes >> d) & 1u;
            if (x->shape[d] == 1)
                continue;
            if (nd > 0 && red[nd - 1] == r) {
                shape[nd - 1] *= x->shape[d];
                continue;
            }
            shape[nd] = x->shape[d];
            red[nd++] = r;
        }
        if (nd == 0) {
            shape[0] = 1;
            red[nd++] = false;
        }
        reduce_plan p;
        int kind = c->op == NB_OP_MAX ? 1 : (c->op == NB_OP_MIN ? 2 : 0);
        if (c->op != NB_OP_SUM && c->op != NB_OP_MEAN && kind == 0)
            st = nb_error(NB_ERR_UNSUPPORTED, "reduce: op %s is not a reduction", name);
        if (st == NB_OK) {
            p.im = impl_of(kind, slot);
            p.x = nb_tensor_data(x);
            p.out = nb_tensor_data(out);
            p.es = nb_dtype_size(x->dtype);
            p.scale = c->op == NB_OP_MEAN ? 1.0 / (double)count : 1.0;
            st = run_plan(&p, nd, shape, red, n_out);
        }
    }
    nb_tensor_release(&tmp);
    return st;
}
