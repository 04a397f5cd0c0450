/* Pooling and nearest-neighbour resampling, NCHW, f32 and f64, threaded over
 * the N*C planes (each plane is handled by one thread, so the gradients can
 * accumulate without races).
 *
 * Windows (one dim; the 2-D window is the product of the two dims' windows):
 *   pooled:   start = o*stride - pad, end = min(start + kernel, in + pad);
 *             the window reads [max(start, 0), min(end, in)) of the input.
 *   adaptive: [floor(o*in/out), ceil((o+1)*in/out)).
 *
 *   MAX_POOL2D       y[o] = max over the window; NaN counts as the maximum.
 *   MAX_POOL2D_GRAD  dx = 0, then dx[argmax(o)] += gy[o] for every o, argmax
 *                    being PyTorch's: scan the window in row-major order and
 *                    take v when v > best or v is NaN (first maximum wins,
 *                    the last NaN when there are NaNs).
 *   AVG_POOL2D       y[o] = sum over the window / d(o), where d(o) is
 *                    (end - start) per dim with count_include_pad (padding
 *                    counts, positions past the padded input do not), the
 *                    clamped size otherwise, and the window size when adaptive.
 *   AVG_POOL2D_GRAD  dx = 0, then dx[window(o)] += gy[o] / d(o).
 *   UPSAMPLE_NEAREST2D       y[h, w] = x[h / sh, w / sw].
 *   UPSAMPLE_NEAREST2D_GRAD  dx[h, w] = sum of gy over the sh x sw block at
 *                            (h*sh, w*sw).
 *
 * Max pooling and its gradient sweep each output row tap by tap: for a chunk
 * of output columns, every kernel tap (ih, kw) updates all the columns' running
 * maxima (and argmaxes) at once, with stride 1 and 2 specialised, so the
 * compiler vectorises across columns. Each column still sees its window in
 * row-major order, so ties and NaNs resolve exactly as PyTorch's scalar loop.
 * f32 3x3 windows (stride 1 or 2, padding 0 or 1: ResNet's stem) go to
 * kernels/pool_max3x3.c, which gives the same bits 16 columns at a time.
 * Average pooling and upsampling use plain window loops. The index-valued
 * ops and RoiAlign (POOL kind too) are in pool_index.c and roi_align.c.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/pool_max3x3.h"
#include "kernels/threadpool.h"

#define GRAIN_ELEMS 32768 /* input + output elements per thread-pool chunk, at least */

/* One dim of the pooling geometry. */
typedef struct pdim {
    int64_t in, out, k, s, p;
    int adaptive, include_pad;
} pdim;

/* The input range [*lo, *hi) window o reads, and its divisor factor *cnt. */
static inline void window(const pdim *d, int64_t o, int64_t *lo, int64_t *hi, int64_t *cnt)
{
    if (d->adaptive) {
        *lo = o * d->in / d->out;
        *hi = ((o + 1) * d->in + d->out - 1) / d->out;
        *cnt = *hi - *lo;
        return;
    }
    int64_t start = o * d->s - d->p;
    int64_t end = start + d->k < d->in + d->p ? start + d->k : d->in + d->p;
    *lo = start > 0 ? start : 0;
    *hi = end < d->in ? end : d->in;
    *cnt = d->include_pad ? end - start : *hi - *lo;
}

typedef struct pool_plan {
    nb_op op;
    const void *x;  /* MAX_POOL2D(_GRAD), AVG_POOL2D, UPSAMPLE: the input planes */
    const void *gy; /* the *_GRAD ops: the output gradient planes */
    void *out;
    pdim h, w;      /* in = the big (input-side) plane, out = the pooled one */
    int64_t sh, sw; /* UPSAMPLE scales */
} pool_plan;

#define CHUNK 256 /* output columns processed together */

/* The columns of output chunk [c0, c1) that kernel column kw reads inside
 * the image: offsets [lo, hi) into the chunk, input column base + j*stride. */
typedef struct tap_range {
    int64_t lo, hi, base;
} tap_range;

#define KW_MAX 16 /* kernel widths up to this have their tap ranges tabulated */

static inline tap_range tap_compute(const pool_plan *p, int64_t c0, int64_t c1, int64_t kw)
{
    int64_t s = p->w.s, off = kw - p->w.p, W = p->w.in;
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = W - 1 - off < 0 ? 0 : (W - 1 - off) / s + 1;
    a = a > c0 ? a : c0;
    b = b < c1 ? b : c1;
    tap_range t = {a - c0, (b > a ? b : a) - c0, c0 * s + off};
    return t;
}

static void tap_ranges(const pool_plan *p, int64_t c0, int64_t c1, tap_range *tr)
{
    for (int64_t kw = 0; kw < p->w.k && kw < KW_MAX; kw++)
        tr[kw] = tap_compute(p, c0, c1, kw);
}

static inline tap_range tap_at(const pool_plan *p, int64_t c0, int64_t c1, const tap_range *tr,
                               int64_t kw)
{
    return kw < KW_MAX ? tr[kw] : tap_compute(p, c0, c1, kw);
}

/* One kernel tap over the chunk: m[j] = max(m[j], row[base + j*S]), NaN winning. */
#define MAX_TAP(T, S)                                                                 \
    do {                                                                              \
        for (int64_t j = lo; j < hi; j++) {                                           \
            T v = row[base + j * (S)], cur = m[j];                                    \
            m[j] = (v > cur || v != v) ? v : cur;                                     \
        }                                                                             \
    } while (0)

/* The same, keeping the flat index of the value taken. */
#define ARGMAX_TAP(T, S)                                                              \
    do {                                                                              \
        for (int64_t j = lo; j < hi; j++) {                                           \
            T v = row[base + j * (S)], cur = m[j];                                    \
            int t = v > cur || v != v;                                                \
            m[j] = t ? v : cur;                                                       \
            id[j] = t ? rb + (int32_t)(j * (S)) : id[j];                              \
        }                                                                             \
    } while (0)

#define DEFINE_POOL(NAME, T, U)                                                           \
    /* gradient of max pooling of one plane, window by window */                   \
    static void NAME##_max_grad_plane_scalar(const pool_plan *p, const T *x, const T *gy, T *dx) \
    {                                                                                 \
        int64_t W = p->w.in, OH = p->h.out, OW = p->w.out;                            \
        for (int64_t oh = 0; oh < OH; oh++) {                                         \
            int64_t h0, h1, ch;                                                       \
            window(&p->h, oh, &h0, &h1, &ch);                                         \
            for (int64_t ow = 0; ow < OW; ow++) {                                     \
                int64_t w0, w1, cw;                                                   \
                window(&p->w, ow, &w0, &w1, &cw);                                     \
                T m = -INFINITY;                                                      \
                int64_t best = h0 * W + w0;                                           \
                for (int64_t ih = h0; ih < h1; ih++)                                  \
                    for (int64_t iw = w0; iw < w1; iw++) {                            \
                        T v = x[ih * W + iw];                                         \
                        if (v > m || v != v) {                                        \
                            m = v;                                                    \
                            best = ih * W + iw;                                       \
                        }                                                             \
                    }                                                                 \
                dx[best] += gy[oh * OW + ow];                                         \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
    /* max pooling of one plane: for each chunk of output columns and each      \
     * output row, the running maxima m[] are updated by one kernel tap (ih, kw)  \
     * at a time over all the chunk's columns, so each column sees its window in  \
     * row-major order */                                                         \
    static void NAME##_max_plane(const pool_plan *p, const T *x, T *y)                \
    {                                                                                 \
        int64_t W = p->w.in, OH = p->h.out, OW = p->w.out, s = p->w.s, K = p->w.k;    \
        T m[CHUNK];                                                                   \
        tap_range tr[KW_MAX];                                                         \
        for (int64_t c0 = 0; c0 < OW; c0 += CHUNK) {                                  \
            int64_t c1 = OW - c0 < CHUNK ? OW : c0 + CHUNK;                           \
            tap_ranges(p, c0, c1, tr);                                                \
            for (int64_t oh = 0; oh < OH; oh++) {                                     \
                int64_t h0, h1, ch;                                                   \
                window(&p->h, oh, &h0, &h1, &ch);                                     \
                for (int64_t j = 0; j < c1 - c0; j++)                                 \
                    m[j] = -INFINITY;                                                 \
                for (int64_t ih = h0; ih < h1; ih++) {                                \
                    const T *row = x + ih * W;                                        \
                    for (int64_t kw = 0; kw < K; kw++) {                              \
                        tap_range t = tap_at(p, c0, c1, tr, kw);                      \
                        int64_t lo = t.lo, hi = t.hi, base = t.base;                  \
                        if (s == 2)                                                   \
                            MAX_TAP(T, 2);                                            \
                        else if (s == 1)                                              \
                            MAX_TAP(T, 1);                                            \
                        else                                                          \
                            MAX_TAP(T, s);                                            \
                    }                                                                 \
                }                                                                     \
                memcpy(y + oh * OW + c0, m, (size_t)(c1 - c0) * sizeof(T));           \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
    /* gradient of max pooling of one plane: the forward's sweep keeps the argmax   \
     * (a flat index in the plane) beside each running maximum; then gy is added   \
     * at the argmaxes. Planes of 2^31 elements or more take the scalar loop. */    \
    static void NAME##_max_grad_plane(const pool_plan *p, const T *x, const T *gy, T *dx) \
    {                                                                                 \
        int64_t W = p->w.in, OH = p->h.out, OW = p->w.out, s = p->w.s, K = p->w.k;    \
        memset(dx, 0, (size_t)(p->h.in * W) * sizeof(T));                             \
        if (p->h.in * W >= INT32_MAX) {                                               \
            NAME##_max_grad_plane_scalar(p, x, gy, dx);                               \
            return;                                                                   \
        }                                                                             \
        T m[CHUNK];                                                                   \
        int32_t id[CHUNK], w0s[CHUNK];                                                \
        tap_range tr[KW_MAX];                                                         \
        for (int64_t c0 = 0; c0 < OW; c0 += CHUNK) {                                  \
            int64_t c1 = OW - c0 < CHUNK ? OW : c0 + CHUNK;                           \
            tap_ranges(p, c0, c1, tr);                                                \
            for (int64_t j = 0; j < c1 - c0; j++) {                                   \
                int64_t w0, w1, cw;                                                   \
                window(&p->w, c0 + j, &w0, &w1, &cw);                                 \
                w0s[j] = (int32_t)w0;                                                 \
            }                                                                         \
            for (int64_t oh = 0; oh < OH; oh++) {                                     \
                int64_t h0, h1, ch;                                                   \
                window(&p->h, oh, &h0, &h1, &ch);                                     \
                for (int64_t j = 0; j < c1 - c0; j++) {                               \
                    m[j] = -INFINITY;                                                 \
                    id[j] = (int32_t)(h0 * W) + w0s[j];                               \
                }                                                                     \
                for (int64_t ih = h0; ih < h1; ih++) {                                \
                    const T *row = x + ih * W;                                        \
                    for (int64_t kw = 0; kw < K; kw++) {                              \
                        tap_range t = tap_at(p, c0, c1, tr, kw);                      \
                        int64_t lo = t.lo, hi = t.hi, base = t.base;                  \
                        int32_t rb = (int32_t)(ih * W + base);                        \
                        if (s == 2)                                                   \
                            ARGMAX_TAP(T, 2);                                         \
                        else if (s == 1)                                              \
                            ARGMAX_TAP(T, 1);                                         \
                        else                                                          \
                            ARGMAX_TAP(T, s);                                         \
                    }                                                                 \
                }                                                                     \
                const T *g = gy + oh * OW + c0;                                       \
                for (int64_t j = 0; j < c1 - c0; j++)                                 \
                    dx[id[j]] += g[j];                                                \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
    /* 2x2 windows, stride 2, all inside the plane */                                 \
    static void NAME##_max_plane_2x2(const pool_plan *p, const T *x, T *y)            \
    {                                                                                 \
        int64_t W = p->w.in, OH = p->h.out, OW = p->w.out;                            \
        for (int64_t oh = 0; oh < OH; oh++) {                                         \
            const T *r0 = x + 2 * oh * W, *r1 = r0 + W;                               \
            T *yr = y + oh * OW;                                                      \
            for (int64_t ow = 0; ow < OW; ow++) {                                     \
                T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1]; \
                T m = a;                                                              \
                m = (b > m || b != b) ? b : m;                                        \
                m = (c > m || c != c) ? c : m;                                        \
                m = (d > m || d != d) ? d : m;                                        \
                yr[ow] = m;                                                           \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
    /* its gradient: every input position is written once (gy at the window's      \
     * argmax, 0 elsewhere); the argmax codes 0..3 of a chunk are found first, then \
     * the four positions of each window written, both loops branch-free */         \
    static void NAME##_max_grad_plane_2x2(const pool_plan *p, const T *x, const T *gy, T *dx) \
    {                                                                                 \
        int64_t H = p->h.in, W = p->w.in, OH = p->h.out, OW = p->w.out;               \
        int32_t code[CHUNK];                                                          \
        for (int64_t oh = 0; oh < OH; oh++) {                                         \
            const T *r0 = x + 2 * oh * W, *r1 = r0 + W;                               \
            T *d0 = dx + 2 * oh * W, *d1 = d0 + W;                                    \
            for (int64_t c0 = 0; c0 < OW; c0 += CHUNK) {                              \
                int64_t n = OW - c0 < CHUNK ? OW - c0 : CHUNK;                        \
                const T *a0 = r0 + 2 * c0, *a1 = r1 + 2 * c0;                         \
                for (int64_t j = 0; j < n; j++) {                                     \
                    T a = a0[2 * j], b = a0[2 * j + 1], c = a1[2 * j], d = a1[2 * j + 1]; \
                    int32_t tb = b > a || b != b;                                     \
                    T m = tb ? b : a;                                                 \
                    int32_t tc = c > m || c != c;                                     \
                    m = tc ? c : m;                                                   \
                    int32_t td = d > m || d != d;                                     \
                    code[j] = td ? 3 : (tc ? 2 : tb);                                 \
                }                                                                     \
                const T *g = gy + oh * OW + c0;                                       \
                T *e0 = d0 + 2 * c0, *e1 = d1 + 2 * c0;                               \
                for (int64_t j = 0; j < n; j++) { /* bit masks: this vectorises */    \
                    U gb, v0, v1, v2, v3;                                             \
                    memcpy(&gb, &g[j], sizeof gb);                                    \
                    int32_t k = code[j];                                              \
                    v0 = gb & ((U)0 - (U)(k == 0));                                   \
                    v1 = gb & ((U)0 - (U)(k == 1));                                   \
                    v2 = gb & ((U)0 - (U)(k == 2));                                   \
                    v3 = gb & ((U)0 - (U)(k == 3));                                   \
                    memcpy(&e0[2 * j], &v0, sizeof v0);                               \
                    memcpy(&e0[2 * j + 1], &v1, sizeof v1);                           \
                    memcpy(&e1[2 * j], &v2, sizeof v2);                               \
                    memcpy(&e1[2 * j + 1], &v3, sizeof v3);                           \
                }                                                                     \
            }                                                                         \
            for (int64_t iw = 2 * OW; iw < W; iw++)                                   \
                d0[iw] = d1[iw] = 0;                                                  \
        }                                                                             \
        if (2 * OH < H)                                                               \
            memset(dx + 2 * OH * W, 0, (size_t)((H - 2 * OH) * W) * sizeof(T));       \
    }                                                                                 \
    /* average pooling of one plane */                                                \
    static void NAME##_avg_plane(const pool_plan *p, const T *x, T *y)                \
    {                                                                                 \
        int64_t W = p->w.in, OH = p->h.out, OW = p->w.out;                            \
        for (int64_t oh = 0; oh < OH; oh++) {                                         \
            int64_t h0, h1, ch;                                                       \
            window(&p->h, oh, &h0, &h1, &ch);                                         \
            for (int64_t ow = 0; ow < OW; ow++) {                                     \
                int64_t w0, w1, cw;                                                   \
                window(&p->w, ow, &w0, &w1, &cw);                                     \
                T s = 0;                                                              \
                for (int64_t ih = h0; ih < h1; ih++)                                  \
                    for (int64_t iw = w0; iw < w1; iw++)                              \
                        s += x[ih * W + iw];                                          \
                y[oh * OW + ow] = s / (T)(ch * cw);                                   \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
    /* gradient of average pooling of one plane */                                    \
    static void NAME##_avg_grad_plane(const pool_plan *p, const T *gy, T *dx)         \
    {                                                                                 \
        int64_t W = p->w.in, OH = p->h.out, OW = p->w.out;                            \
        memset(dx, 0, (size_t)(p->h.in * W) * sizeof(T));                             \
        for (int64_t oh = 0; oh < OH; oh++) {                                         \
            int64_t h0, h1, ch;                                                       \
            window(&p->h, oh, &h0, &h1, &ch);                                         \
            for (int64_t ow = 0; ow < OW; ow++) {                                     \
                int64_t w0, w1, cw;                                                   \
                window(&p->w, ow, &w0, &w1, &cw);                                     \
                T v = gy[oh * OW + ow] / (T)(ch * cw);                                \
                for (int64_t ih = h0; ih < h1; ih++)                                  \
                    for (int64_t iw = w0; iw < w1; iw++)                              \
                        dx[ih * W + iw] += v;                                         \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
    /* nearest upsampling of one plane: x (h.out, w.out) -> y (h.in, w.in) */         \
    static void NAME##_up_plane(const pool_plan *p, const T *x, T *y)                 \
    {                                                                                 \
        int64_t H = p->h.out, W = p->w.out, sh = p->sh, sw = p->sw, YW = W * sw;      \
        for (int64_t ih = 0; ih < H; ih++) {                                          \
            T *row = y + ih * sh * YW;                                                \
            const T *xr = x + ih * W;                                                 \
            for (int64_t iw = 0; iw < W; iw++)                                        \
                for (int64_t j = 0; j < sw; j++)                                      \
                    row[iw * sw + j] = xr[iw];                                        \
            for (int64_t r = 1; r < sh; r++)                                          \
                memcpy(row + r * YW, row, (size_t)YW * sizeof(T));                    \
        }                                                                             \
    }                                                                                 \
    /* gradient of nearest upsampling of one plane: gy (h.in, w.in) -> dx */          \
    static void NAME##_up_grad_plane(const pool_plan *p, const T *gy, T *dx)          \
    {                                                                                 \
        int64_t H = p->h.out, W = p->w.out, sh = p->sh, sw = p->sw, YW = W * sw;      \
        for (int64_t ih = 0; ih < H; ih++) {                                          \
            T *dr = dx + ih * W;                                                      \
            for (int64_t iw = 0; iw < W; iw++)                                        \
                dr[iw] = 0;                                                           \
            for (int64_t r = 0; r < sh; r++) {                                        \
                const T *gr = gy + (ih * sh + r) * YW;                                \
                for (int64_t iw = 0; iw < W; iw++) {                                  \
                    T s = 0;                                                          \
                    for (int64_t j = 0; j < sw; j++)                                  \
                        s += gr[iw * sw + j];                                         \
                    dr[iw] += s;                                                      \
                }                                                                     \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
    /* planes [begin, end) */                                                         \
    static void NAME##_planes(void *ctx, int64_t begin, int64_t end)                  \
    {                                                                                 \
        const pool_plan *p = ctx;                                                     \
        int64_t big = p->h.in * p->w.in, small = p->h.out * p->w.out;                 \
        int fast2 = p->h.k == 2 && p->w.k == 2 && p->h.s == 2 && p->w.s == 2 &&       \
                    p->h.p == 0 && p->w.p == 0 && 2 * p->h.out <= p->h.in &&          \
                    2 * p->w.out <= p->w.in;                                          \
        int fast3 = sizeof(T) == sizeof(float) && !p->h.adaptive && !p->w.adaptive &&  \
                    nb_maxpool3x3_supported(p->h.k, p->w.k, p->h.s, p->w.s, p->h.p, p->w.p); \
        nb_maxpool3x3 g3 = {p->h.in, p->w.in, p->h.out, p->w.out, p->h.s, p->h.p, p->w.p}; \
        const T *x = p->x, *gy = p->gy;                                               \
        T *o = p->out;                                                                \
        for (int64_t pl = begin; pl < end; pl++) {                                    \
            switch (p->op) {                                                          \
            case NB_OP_MAX_POOL2D:                                                    \
                if (fast3) /* f32 only: the casts are no-ops there */                \
                    nb_maxpool3x3_plane_f32(&g3, (const float *)(const void *)(x + pl * big), \
                                            (float *)(void *)(o + pl * small));       \
                else if (fast2)                                                       \
                    NAME##_max_plane_2x2(p, x + pl * big, o + pl * small);            \
                else                                                                  \
                    NAME##_max_plane(p, x + pl * big, o + pl * small);                \
                break;                                                                \
            case NB_OP_MAX_POOL2D_GRAD:                                               \
                if (fast2)                                                            \
                    NAME##_max_grad_plane_2x2(p, x + pl * big, gy + pl * small, o + pl * big); \
                else                                                                  \
                    NAME##_max_grad_plane(p, x + pl * big, gy + pl * small, o + pl * big); \
                break;                                                                \
            case NB_OP_AVG_POOL2D:                                                    \
                NAME##_avg_plane(p, x + pl * big, o + pl * small);                    \
                break;                                                                \
            case NB_OP_AVG_POOL2D_GRAD:                                               \
                NAME##_avg_grad_plane(p, gy + pl * small, o + pl * big);              \
                break;                                                                \
            case NB_OP_UPSAMPLE_NEAREST2D:                                            \
                NAME##_up_plane(p, x + pl * small, o + pl * big);                     \
                break;                                                                \
            case NB_OP_UPSAMPLE_NEAREST2D_GRAD:                                       \
                NAME##_up_grad_plane(p, gy + pl * big, o + pl * small);               \
                break;                                                                \
            default:                                                                  \
                break;                                                                \
            }                                                                         \
        }                                                                             \
    }

DEFINE_POOL(pool_f32, float, uint32_t)
DEFINE_POOL(pool_f64, double, uint64_t)

static const char *shp(const nb_tensor *t, char *buf, size_t n)
{
    return nb_shape_str(t->ndim, t->shape, buf, n);
}

/* Checks the pooling attributes of one dim; NB_OK or an error naming the op. */
static nb_status check_attrs(const char *name, const nb_pool_params *pp, int d)
{
    if (pp->kernel[d] < 1 || pp->stride[d] < 1 || pp->pad[d] < 0)
        return nb_error(NB_ERR_ARG, "%s: kernel %lld, stride %lld, padding %lld in dim %d (need kernel, stride >= 1, padding >= 0)",
                        name, (long long)pp->kernel[d], (long long)pp->stride[d],
                        (long long)pp->pad[d], d);
    if (2 * pp->pad[d] > pp->kernel[d])
        return nb_error(NB_ERR_ARG, "%s: padding %lld is more than half the kernel %lld", name,
                        (long long)pp->pad[d], (long long)pp->kernel[d]);
    return NB_OK;
}

/* MAX_POOL2D, MAX_POOL2D_GRAD, AVG_POOL2D, AVG_POOL2D_GRAD, UPSAMPLE_NEAREST2D,
 * UPSAMPLE_NEAREST2D_GRAD with nb_pool_params; see the top of the file. */
nb_status nb_cpu_pool(const nb_kernel_call *c)
{
    const char *name = nb_op_name(c->op);
    char a[96], b[96];
    if (c->op == NB_OP_MAX_POOL2D_INDEX || c->op == NB_OP_MAX_UNPOOL)
        return nb_cpu_pool_index(c);
    if (c->op == NB_OP_ROI_ALIGN)
        return nb_cpu_roi_align(c);
    if (!c->in || !c->out || !c->params || c->n_in < 1)
        return nb_error(NB_ERR_ARG, "%s: expects inputs, an output and parameters", name);
    nb_op op = c->op;
    int want_in = op == NB_OP_MAX_POOL2D_GRAD ? 2 : 1;
    if (op != NB_OP_MAX_POOL2D && op != NB_OP_MAX_POOL2D_GRAD && op != NB_OP_AVG_POOL2D &&
        op != NB_OP_AVG_POOL2D_GRAD && op != NB_OP_UPSAMPLE_NEAREST2D &&
        op != NB_OP_UPSAMPLE_NEAREST2D_GRAD)
        return nb_error(NB_ERR_UNSUPPORTED, "pool: op %s is not a pooling op", name);
    if (c->n_in != want_in)
        return nb_error(NB_ERR_ARG, "%s: expects %d input(s), got %d", name, want_in, c->n_in);
    for (int i = 0; i < c->n_in; i++)
        if (!c->in[i])
            return nb_error(NB_ERR_ARG, "%s: input %d is NULL", name, i);
    const nb_pool_params *pp = c->params;
    nb_tensor *out = c->out;
    nb_dtype dt = out->dtype;
    if (dt != NB_F32 && dt != NB_F64)
        return nb_error(NB_ERR_DTYPE, "%s: output must be f32 or f64, got %s", name,
                        nb_dtype_name(dt));
    for (int i = 0; i < c->n_in; i++) {
        if (c->in[i]->dtype != dt)
            return nb_error(NB_ERR_DTYPE, "%s: input %d is %s, output %s", name, i,
                            nb_dtype_name(c->in[i]->dtype), nb_dtype_name(dt));
        if (c->in[i]->ndim != 4)
            return nb_error(NB_ERR_SHAPE, "%s: input %d %s is not 4-D (N, C, H, W)", name, i,
                            shp(c->in[i], a, sizeof a));
    }
    if (out->ndim != 4)
        return nb_error(NB_ERR_SHAPE, "%s: output %s is not 4-D", name, shp(out, a, sizeof a));

    /* big: the input-side (unpooled, or upsampled) tensor; small: the other. */
    int grad = op == NB_OP_MAX_POOL2D_GRAD || op == NB_OP_AVG_POOL2D_GRAD ||
               op == NB_OP_UPSAMPLE_NEAREST2D_GRAD;
    const nb_tensor *main_in = c->in[c->n_in - 1]; /* x, or gy for the *_GRAD ops */
    int up = op == NB_OP_UPSAMPLE_NEAREST2D || op == NB_OP_UPSAMPLE_NEAREST2D_GRAD;
    const nb_tensor *big, *small;
    if (up) {
        big = op == NB_OP_UPSAMPLE_NEAREST2D ? out : main_in;
        small = op == NB_OP_UPSAMPLE_NEAREST2D ? main_in : out;
    } else {
        big = grad ? out : main_in;
        small = grad ? main_in : out;
    }
    if (grad && !nb_shape_equal(4, pp->in_shape, 4, out->shape))
        return nb_error(NB_ERR_SHAPE, "%s: output %s differs from the recorded input shape %s",
                        name, shp(out, a, sizeof a), nb_shape_str(4, pp->in_shape, b, sizeof b));
    if (op == NB_OP_MAX_POOL2D_GRAD && !nb_shape_equal(4, c->in[0]->shape, 4, out->shape))
        return nb_error(NB_ERR_SHAPE, "%s: x %s and output %s differ", name,
                        shp(c->in[0], a, sizeof a), shp(out, b, sizeof b));
    if (big->shape[0] != small->shape[0] || big->shape[1] != small->shape[1])
        return nb_error(NB_ERR_SHAPE, "%s: %s and %s differ in N or C", name,
                        shp(c->in[c->n_in - 1], a, sizeof a), shp(out, b, sizeof b));

    pool_plan p = {0};
    p.op = op;
    p.h = (pdim){big->shape[2], small->shape[2], pp->kernel[0], pp->stride[0], pp->pad[0],
                 pp->adaptive, pp->count_include_pad};
    p.w = (pdim){big->shape[3], small->shape[3], pp->kernel[1], pp->stride[1], pp->pad[1],
                 pp->adaptive, pp->count_include_pad};
    if (up) {
        p.sh = pp->scale[0];
        p.sw = pp->scale[1];
        if (p.sh < 1 || p.sw < 1)
            return nb_error(NB_ERR_ARG, "%s: scales (%lld,%lld) must be >= 1", name,
                            (long long)p.sh, (long long)p.sw);
        if (big->shape[2] != small->shape[2] * p.sh || big->shape[3] != small->shape[3] * p.sw)
            return nb_error(NB_ERR_SHAPE, "%s: %s is not %s scaled by (%lld,%lld)", name,
                            shp(big, a, sizeof a), shp(small, b, sizeof b), (long long)p.sh,
                            (long long)p.sw);
    } else if (pp->adaptive) {
        if (op != NB_OP_AVG_POOL2D && op != NB_OP_AVG_POOL2D_GRAD)
            return nb_error(NB_ERR_ARG, "%s: adaptive windows are for average pooling only", name);
        if ((p.h.out < 1 || p.w.out < 1) && nb_tensor_numel(big) > 0)
            return nb_error(NB_ERR_SHAPE, "%s: adaptive output %s is empty", name,
                            shp(small, a, sizeof a));
    } else {
        for (int d = 0; d < 2; d++) {
            nb_status st = check_attrs(name, pp, d);
            if (st != NB_OK)
                return st;
        }
        int64_t oh = nb_pool_out_size(p.h.in, p.h.k, p.h.s, p.h.p, pp->ceil_mode);
        int64_t ow = nb_pool_out_size(p.w.in, p.w.k, p.w.s, p.w.p, pp->ceil_mode);
        if (p.h.in < 1 || p.w.in < 1 || oh < 1 || ow < 1)
            return nb_error(NB_ERR_SHAPE, "%s: kernel (%lld,%lld) with padding (%lld,%lld) does not fit input %s",
                            name, (long long)p.h.k, (long long)p.w.k, (long long)p.h.p,
                            (long long)p.w.p, shp(big, a, sizeof a));
        if (oh != p.h.out || ow != p.w.out)
            return nb_error(NB_ERR_SHAPE, "%s: pooled shape %s, expected (%lld,%lld,%lld,%lld)",
                            name, shp(small, a, sizeof a), (long long)small->shape[0],
                            (long long)small->shape[1], (long long)oh, (long long)ow);
    }
    int64_t planes = big->shape[0] * big->shape[1];
    if (nb_tensor_numel(out) == 0)
        return NB_OK;
    if (planes == 0 || nb_tensor_numel(big) == 0 || nb_tensor_numel(small) == 0)
        return nb_error(NB_ERR_SHAPE, "%s: empty input for a non-empty output %s", name,
                        shp(out, a, sizeof a));

    nb_tensor tmp[2] = {{0}, {0}};
    const nb_tensor *use[2] = {NULL, NULL};
    for (int i = 0; i < c->n_in; i++) {
        nb_status st = nb_cpu_contiguous_input(c->in[i], &tmp[i], &use[i]);
        if (st != NB_OK) {
            nb_tensor_release(&tmp[0]);
            return st;
        }
    }
    if (op == NB_OP_MAX_POOL2D_GRAD) {
        p.x = nb_tensor_data(use[0]);
        p.gy = nb_tensor_data(use[1]);
    } else if (grad) {
        p.gy = nb_tensor_data(use[0]);
    } else {
        p.x = nb_tensor_data(use[0]);
    }
    p.out = nb_tensor_data(out);

    nb_range_fn fn = dt == NB_F32 ? pool_f32_planes : pool_f64_planes;
    int64_t per_plane = nb_tensor_numel(big) / planes + nb_tensor_numel(small) / planes;
    int64_t grain = GRAIN_ELEMS / (per_plane > 0 ? per_plane : 1);
    if (grain < 1)
        grain = 1;
    if (planes <= grain)
        fn(&p, 0, planes);
    else
        nb_parallel_for(planes, grain, fn, &p);
    nb_tensor_release(&tmp[0]);
    nb_tensor_release(&tmp[1]);
    return NB_OK;
}
