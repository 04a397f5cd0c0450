/* Softmax and log-softmax along one axis, numerically stable:
 *
 *     m = max_a x[o, a, i]
 *     softmax:     y[o, a, i] = exp(x[o, a, i] - m) / sum_b exp(x[o, b, i] - m)
 *     log_softmax: y[o, a, i] = (x[o, a, i] - m) - log(sum_b exp(x[o, b, i] - m))
 *
 * The tensor is viewed as [outer, A, inner] (A = the axis). When inner == 1
 * each row is contiguous and handled alone; otherwise a tile of up to STILE
 * columns of the inner dim is processed together so every pass reads whole
 * rows of memory. Sums accumulate in double. Threaded over rows / tiles.
 * A NaN in a row makes the sum NaN and so reaches every output of the row, as
 * in PyTorch; a row of all -inf gives NaN likewise. Output may alias input.
 *
 * f32 uses its own exp for arguments <= 0 (all that softmax needs), written so
 * that the compiler vectorises it; f64 uses libm's exp. The f32 loops are
 * also built for AVX2 and AVX-512 and picked at run time (elementwise_simd.h):
 * the max and sum lanes are explicit (LANES), so a wider vector runs the same
 * per-lane operations in the same order and gives the same bits.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/elementwise_simd.h"
#include "kernels/threadpool.h"

#define STILE 64          /* inner columns per tile */
#define BLOCK 256         /* row elements per exp block */
#define LANES 16          /* independent accumulators for max and sum */
#define GRAIN_ELEMS 16384

#if defined(__GNUC__) && !defined(__clang__)
#define NO_UNROLL _Pragma("GCC unroll 0")
#else
#define NO_UNROLL
#endif

static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* exp(x) for x <= 0 or NaN, within 1e-7 relative (Cephes' expf polynomial):
 * x = n ln2 + r with |r| <= ln2/2, exp(x) = 2^n exp(r). Below -87 the result
 * is 0 (the true value is under 2e-38). All selects are done on the bits so
 * that the loop using it has no branches and vectorises. */
static inline float exp_nonpos_f32(float x)
{
    uint32_t ix = f2u(x);
    uint32_t nan_mask = 0u - (uint32_t)((ix & 0x7fffffffu) > 0x7f800000u);
    uint32_t under = 0u - (uint32_t)(ix >= 0xc2ae0000u); /* x <= -87 (or -NaN) */
    float xc = u2f((under & 0xc2ae0000u) | (~under & ix));
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float fm = xc * 1.44269504088896341f + magic;
    float fn = fm - magic;
    uint32_t n = f2u(fm) - f2u(magic); /* round(x / ln2), two's complement */
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t yb = f2u(p * u2f((n + 127u) << 23)) & ~under;
    return u2f((nan_mask & ix) | (~nan_mask & yb));
}

/* Shared loops; EXP is the exponential for arguments <= 0, TGT the target
 * attribute of the build (empty: baseline). */
#define DEFINE_SOFTMAX(NAME, T, EXP, TGT)                                         \
    /* max of a contiguous row (a NaN is skipped here; it poisons the sum) */   \
    TGT static T NAME##_rowmax(const T *x, int64_t n)                             \
    {                                                                             \
        T m[LANES], r = -INFINITY;                                                \
        for (int l = 0; l < LANES; l++)                                           \
            m[l] = -INFINITY;                                                     \
        int64_t i = 0;                                                            \
        for (; i + LANES <= n; i += LANES) {                                      \
            const T *b = x + i;                                                   \
            NO_UNROLL                                                             \
            for (int l = 0; l < LANES; l++)                                       \
                m[l] = b[l] > m[l] ? b[l] : m[l];                                 \
        }                                                                         \
        for (; i < n; i++)                                                        \
            r = x[i] > r ? x[i] : r;                                              \
        for (int l = 0; l < LANES; l++)                                           \
            r = m[l] > r ? m[l] : r;                                              \
        return r;                                                                 \
    }                                                                             \
    /* e[i] = exp(x[i] - m) for i < n <= BLOCK; returns the sum of e */         \
    TGT static double NAME##_expsum(const T *x, T *e, int64_t n, T m)             \
    {                                                                             \
        for (int64_t i = 0; i < n; i++)                                           \
            e[i] = EXP(x[i] - m);                                                 \
        double s[LANES] = {0}, t = 0;                                             \
        int64_t i = 0;                                                            \
        for (; i + LANES <= n; i += LANES) {                                      \
            const T *b = e + i;                                                   \
            NO_UNROLL                                                             \
            for (int l = 0; l < LANES; l++)                                       \
                s[l] += b[l];                                                     \
        }                                                                         \
        for (; i < n; i++)                                                        \
            t += e[i];                                                            \
        for (int l = 0; l < LANES; l++)                                           \
            t += s[l];                                                            \
        return t;                                                                 \
    }                                                                             \
    TGT static void NAME##_row(const T *x, T *y, int64_t A, int lg)               \
    {                                                                             \
        T m = NAME##_rowmax(x, A), tmp[BLOCK];                                    \
        double s = 0;                                                             \
        for (int64_t a = 0; a < A; a += BLOCK) {                                  \
            int64_t len = A - a < BLOCK ? A - a : BLOCK;                          \
            s += NAME##_expsum(x + a, lg ? tmp : y + a, len, m);                  \
        }                                                                         \
        if (lg) {                                                                 \
            T ls = (T)log(s);                                                     \
            for (int64_t a = 0; a < A; a++)                                       \
                y[a] = (x[a] - m) - ls;                                           \
        } else {                                                                  \
            T inv = (T)(1.0 / s);                                                 \
            for (int64_t a = 0; a < A; a++)                                       \
                y[a] *= inv;                                                      \
        }                                                                         \
    }                                                                             \
    /* tl columns of stride inner: per-column max, sum and output */            \
    TGT static void NAME##_tile(const T *x, T *y, int64_t A, int64_t inner, int64_t tl, int lg) \
    {                                                                             \
        T m[STILE], e[STILE], k[STILE];                                           \
        double s[STILE];                                                          \
        for (int64_t j = 0; j < tl; j++) {                                        \
            m[j] = -INFINITY;                                                     \
            s[j] = 0;                                                             \
        }                                                                         \
        for (int64_t a = 0; a < A; a++)                                           \
            for (int64_t j = 0; j < tl; j++)                                      \
                m[j] = x[a * inner + j] > m[j] ? x[a * inner + j] : m[j];         \
        for (int64_t a = 0; a < A; a++) {                                         \
            const T *xr = x + a * inner;                                          \
            T *yr = lg ? e : y + a * inner;                                       \
            for (int64_t j = 0; j < tl; j++)                                      \
                yr[j] = EXP(xr[j] - m[j]);                                        \
            for (int64_t j = 0; j < tl; j++)                                      \
                s[j] += yr[j];                                                    \
        }                                                                         \
        for (int64_t j = 0; j < tl; j++)                                          \
            k[j] = lg ? (T)log(s[j]) : (T)(1.0 / s[j]);                           \
        for (int64_t a = 0; a < A; a++) {                                         \
            const T *xr = x + a * inner;                                          \
            T *yr = y + a * inner;                                                \
            if (lg)                                                               \
                for (int64_t j = 0; j < tl; j++)                                  \
                    yr[j] = (xr[j] - m[j]) - k[j];                                \
            else                                                                  \
                for (int64_t j = 0; j < tl; j++)                                  \
                    yr[j] *= k[j];                                                \
        }                                                                         \
    }                                                                             \
    /* units [begin, end): one per (outer row, column tile) */                  \
    TGT static void NAME##_items(void *ctx, int64_t begin, int64_t end)           \
    {                                                                             \
        const softmax_plan *p = ctx;                                              \
        for (int64_t u = begin; u < end; u++) {                                   \
            int64_t o = u / p->ntiles, j0 = (u % p->ntiles) * STILE;              \
            int64_t off = o * p->A * p->inner + j0;                               \
            const T *x = (const T *)p->x + off;                                   \
            T *y = (T *)p->y + off;                                               \
            if (p->inner == 1)                                                    \
                NAME##_row(x, y, p->A, p->log);                                   \
            else                                                                  \
                NAME##_tile(x, y, p->A, p->inner,                                 \
                            p->inner - j0 < STILE ? p->inner - j0 : STILE, p->log); \
        }                                                                         \
    }

typedef struct softmax_plan {
    const void *x;
    void *y;
    int64_t A, inner, ntiles;
    int log;
} softmax_plan;

/* f32: one build per SIMD level (elementwise_simd.h), sm_f32 the baseline */
#define DEF_SM_F32(name, SFX, TGT) DEFINE_SOFTMAX(name##SFX, float, exp_nonpos_f32, TGT)
NB_SIMD_EACH(DEF_SM_F32, sm_f32)
DEFINE_SOFTMAX(sm_f64, double, exp, )

static const nb_range_fn sm_f32_items_simd[NB_SIMD_LEVELS] = {sm_f32_items, sm_f32_avx2_items,
                                                              sm_f32_avx512_items};

/* SOFTMAX, LOG_SOFTMAX over nb_axis_params.axis; see the top of the file. */
nb_status nb_cpu_softmax(const nb_kernel_call *c)
{
    const char *name = nb_op_name(c->op);
    char a[96];
    if (c->n_in != 1 || !c->in || !c->in[0] || !c->out || !c->params)
        return nb_error(NB_ERR_ARG, "%s: expects one input, an output and parameters", name);
    if (c->op != NB_OP_SOFTMAX && c->op != NB_OP_LOG_SOFTMAX)
        return nb_error(NB_ERR_UNSUPPORTED, "softmax: op %s is not softmax", name);
    const nb_tensor *x = c->in[0];
    nb_tensor *out = c->out;
    int axis = ((const nb_axis_params *)c->params)->axis;
    nb_status vst = nb_cpu_check_float_same(name, x, out);
    if (vst != NB_OK)
        return vst;
    if (x->ndim == 0 ? axis != 0 : (axis < 0 || axis >= x->ndim))
        return nb_error(NB_ERR_ARG, "%s: axis %d out of range for %s", name, axis,
                        nb_shape_str(x->ndim, x->shape, a, sizeof a));
    if (nb_tensor_numel(x) == 0)
        return NB_OK;

    nb_tensor tmp = {0};
    nb_status cst = nb_cpu_contiguous_input(x, &tmp, &x);
    if (cst != NB_OK)
        return cst;
    softmax_plan p;
    p.x = nb_tensor_data(x);
    p.y = nb_tensor_data(out);
    p.log = c->op == NB_OP_LOG_SOFTMAX;
    p.A = x->ndim == 0 ? 1 : x->shape[axis];
    p.inner = x->ndim == 0 ? 1 : nb_shape_numel(x->ndim - axis - 1, x->shape + axis + 1);
    int64_t outer = x->ndim == 0 ? 1 : nb_shape_numel(axis, x->shape);
    p.ntiles = p.inner == 1 ? 1 : (p.inner + STILE - 1) / STILE;
    int64_t units = outer * p.ntiles;
    int64_t per_unit = p.A * (p.inner < STILE ? p.inner : STILE);
    nb_range_fn fn = x->dtype == NB_F32 ? sm_f32_items_simd[nb_simd_level()] : sm_f64_items;
    if (units == 1 || units * per_unit < GRAIN_ELEMS) {
        fn(&p, 0, units);
    } else {
        int64_t grain = GRAIN_ELEMS / per_unit;
        nb_parallel_for(units, grain > 1 ? grain : 1, fn, &p);
    }
    nb_tensor_release(&tmp);
    return NB_OK;
}
