/* Direct depthwise convolution in f32: CONV2D with groups == C and one output
 * channel per group, NCHW, any kernel size, stride, padding and dilation:
 *
 *   y[n, c, i, j] = b[c] + sum_{p, q} w[c, p, q] * x[n, c, i*s0 - p0 + p*d0, j*s1 - p1 + q*d1]
 *
 * with x outside the image 0, then clamped to [lo, hi] when asked (a fused
 * ReLU or ReLU6).
 *
 * Each (image, channel) plane is first copied into s0 x s1 "phase" planes of
 * the zero-padded image: phase (a, b) holds padded[r*s0 + a][c*s1 + b], all
 * of Hq x Wq (Hq = OH + ((KH-1)*d0)/s0, Wq = OW + ((KW-1)*d1)/s1). Output
 * (i, j) then reads, for tap (p, q), phase ((p*d0) % s0, (q*d1) % s1) at row
 * i + (p*d0)/s0 and column j + (q*d1)/s1: with the output laid out with row
 * stride Wq as well, every tap is one fixed offset from the output index.
 * So the plane is a 1-D sum of KH*KW shifted vectors over OH*Wq entries
 * (the Wq - OW extra columns a row are computed and dropped), with no bounds
 * checks and unit-stride loads for any stride: loops that vectorise whatever
 * the plane's size, which matters for the small planes (7x7, 14x14) of
 * mobile networks. The first nine taps (a whole 3x3 kernel) and the bias go
 * into the accumulator in one pass, further taps three at a time; the rows
 * are then copied out, clamped.
 *
 * The per-plane code is compiled for AVX-512, AVX2 and baseline x86-64
 * (pick_plane chooses what the CPU has at run time), so the loops above
 * run 16 lanes wide where they can.
 *
 * The 3x3 kernels of mobile networks (stride 1 or 2, padding 0 or 1) go to
 * kernels/conv_dw3x3.c instead, where the CPU has AVX-512: it reads the image
 * in place and needs no scratch.
 *
 * Work: the planes are split evenly over the threads (slots), each with its
 * own scratch from the call's workspace. Every plane is summed in the same
 * order whatever the thread count, so results do not depend on it.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/conv_depthwise.h"
#include "kernels/cpu.h"
#include "kernels/threadpool.h"

bool nb_dw_enabled(void)
{
    static atomic_int env; /* 0: not read yet, 1: on, 2: off */
    if (atomic_load(&env) == 0) {
        const char *e = getenv("NABLA_DEPTHWISE");
        atomic_store(&env, e && strcmp(e, "0") == 0 ? 2 : 1);
    }
    return atomic_load(&env) == 1;
}

/* The tap loops run over a multiple of LANES entries (no scalar tail); the
 * entries past n read and write the SLACK floats after the phases and after
 * the accumulator, and are dropped. */
#define LANES 16
#define SLACK LANES

typedef struct shape {
    int64_t Hq, Wq, phase; /* phase plane rows, columns, floats */
    int64_t n;             /* accumulator entries: (OH - 1) * Wq + OW */
    int64_t nv;            /* n rounded up to LANES */
} shape;

static shape shape_of(const nb_dw *g)
{
    shape s;
    s.Hq = g->OH + (g->KH - 1) * g->d0 / g->s0;
    s.Wq = g->OW + (g->KW - 1) * g->d1 / g->s1;
    s.phase = s.Hq * s.Wq;
    s.n = g->OH > 0 && g->OW > 0 ? (g->OH - 1) * s.Wq + g->OW : 0;
    s.nv = (s.n + LANES - 1) / LANES * LANES;
    return s;
}

/* Floats of one slot's scratch (phases, then the accumulator), rounded to a
 * 64-byte multiple. */
static size_t slot_floats(const nb_dw *g)
{
    shape s = shape_of(g);
    size_t f = (size_t)(g->s0 * g->s1 * s.phase) + SLACK + (size_t)(g->OH * s.Wq) + SLACK;
    return (f + 15) & ~(size_t)15;
}

static size_t generic_workspace(const nb_dw *g, int64_t threads)
{
    int64_t planes = g->N * g->C;
    if (threads > planes)
        threads = planes;
    if (threads < 1)
        threads = 1;
    return (size_t)threads * slot_floats(g) * sizeof(float);
}

size_t nb_dw_workspace(const nb_dw *g, int64_t threads)
{
    return nb_dw3x3_supported(g) ? 0 : generic_workspace(g, threads);
}

/* The s0 x s1 phases of plane x, zero-padded, into ph. */
static inline __attribute__((always_inline)) void make_phases(const nb_dw *g, const shape *s,
                                                               const float *x, float *ph)
{
    for (int64_t a = 0; a < g->s0; a++)
        for (int64_t b = 0; b < g->s1; b++) {
            float *dst = ph + (a * g->s1 + b) * s->phase;
            /* columns c with 0 <= c*s1 + b - p1 < W are inside */
            int64_t cl, ch;
            nb_cpu_valid_range(s->Wq, g->W, g->s1, g->p1, b, &cl, &ch);
            for (int64_t r = 0; r < s->Hq; r++) {
                float *restrict d = dst + r * s->Wq; /* never the input: no overlap checks */
                int64_t ih = r * g->s0 + a - g->p0;
                if (ih < 0 || ih >= g->H || cl >= ch) {
                    for (int64_t c = 0; c < s->Wq; c++)
                        d[c] = 0;
                    continue;
                }
                const float *restrict src = x + ih * g->W + b - g->p1;
                for (int64_t c = 0; c < cl; c++)
                    d[c] = 0;
                if (g->s1 == 1) /* loops, not memcpy: rows are short in small planes */
                    for (int64_t c = cl; c < ch; c++)
                        d[c] = src[c];
                else if (g->s1 == 2) /* a constant stride vectorises (permutes) */
                    for (int64_t c = cl; c < ch; c++)
                        d[c] = src[c * 2];
                else
                    for (int64_t c = cl; c < ch; c++)
                        d[c] = src[c * g->s1];
                for (int64_t c = ch; c < s->Wq; c++)
                    d[c] = 0;
            }
        }
}

/* One plane: acc = bias + sum of the taps, then y = clamp(acc) row by row.
 * Inlined into one function per instruction set below, whose target the
 * loops are vectorised for. */
static inline __attribute__((always_inline)) void plane_body(const nb_dw *g, const shape *s,
                                                              const float *x, const float *w,
                                                              float bias, float *y, float *ph,
                                                              float *acc)
{
    make_phases(g, s, x, ph);
    const int64_t taps = g->KH * g->KW, n = s->nv; /* rounded up: no scalar tail */
    const float *src[9];
    float wt[9];
    int64_t t0 = 0;
    if (taps >= 9) { /* the first nine taps (all of a 3x3) in one pass, with the bias */
        for (int u = 0; u < 9; u++) {
            int64_t p = u / g->KW, q = u % g->KW;
            int64_t a = p * g->d0 % g->s0, b = q * g->d1 % g->s1;
            src[u] = ph + (a * g->s1 + b) * s->phase + p * g->d0 / g->s0 * s->Wq + q * g->d1 / g->s1;
            wt[u] = w[u];
        }
        const float *restrict x0 = src[0], *restrict x1 = src[1], *restrict x2 = src[2],
                              *restrict x3 = src[3], *restrict x4 = src[4], *restrict x5 = src[5],
                              *restrict x6 = src[6], *restrict x7 = src[7], *restrict x8 = src[8];
        const float w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3], w4 = wt[4], w5 = wt[5],
                    w6 = wt[6], w7 = wt[7], w8 = wt[8];
        for (int64_t k = 0; k < n; k++)
            acc[k] = bias + (w0 * x0[k] + w1 * x1[k] + w2 * x2[k]) +
                     (w3 * x3[k] + w4 * x4[k] + w5 * x5[k]) + (w6 * x6[k] + w7 * x7[k] + w8 * x8[k]);
        t0 = 9;
    } else {
        for (int64_t k = 0; k < n; k++)
            acc[k] = bias;
    }
    for (; t0 < taps; t0 += 3) {
        int nt = taps - t0 < 3 ? (int)(taps - t0) : 3;
        for (int u = 0; u < nt; u++) {
            int64_t p = (t0 + u) / g->KW, q = (t0 + u) % g->KW;
            int64_t a = p * g->d0 % g->s0, b = q * g->d1 % g->s1;
            src[u] = ph + (a * g->s1 + b) * s->phase + p * g->d0 / g->s0 * s->Wq + q * g->d1 / g->s1;
            wt[u] = w[t0 + u];
        }
        if (nt == 3) {
            const float *restrict x0 = src[0], *restrict x1 = src[1], *restrict x2 = src[2];
            const float w0 = wt[0], w1 = wt[1], w2 = wt[2];
            for (int64_t k = 0; k < n; k++)
                acc[k] += w0 * x0[k] + w1 * x1[k] + w2 * x2[k];
        } else {
            for (int u = 0; u < nt; u++) {
                const float *restrict xs = src[u];
                const float wu = wt[u];
                for (int64_t k = 0; k < n; k++)
                    acc[k] += wu * xs[k];
            }
        }
    }
    for (int64_t i = 0; i < g->OH; i++) {
        const float *a = acc + i * s->Wq;
        float *yr = y + i * g->OW;
        if (g->clamp) {
            const float lo = g->lo, hi = g->hi;
            for (int64_t j = 0; j < g->OW; j++) {
                float v = a[j] < lo ? lo : a[j]; /* a NaN stays NaN */
                yr[j] = v > hi ? hi : v;
            }
        } else {
            memcpy(yr, a, (size_t)g->OW * sizeof(float));
        }
    }
}

typedef void plane_fn(const nb_dw *, const shape *, const float *, const float *, float, float *,
                      float *, float *);

static void plane_base(const nb_dw *g, const shape *s, const float *x, const float *w, float bias,
                       float *y, float *ph, float *acc)
{
    plane_body(g, s, x, w, bias, y, ph, acc);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f,fma"))) static void plane_avx512(const nb_dw *g, const shape *s,
                                                                 const float *x, const float *w,
                                                                 float bias, float *y, float *ph,
                                                                 float *acc)
{
    plane_body(g, s, x, w, bias, y, ph, acc);
}

__attribute__((target("avx2,fma"))) static void plane_avx2(const nb_dw *g, const shape *s,
                                                            const float *x, const float *w,
                                                            float bias, float *y, float *ph,
                                                            float *acc)
{
    plane_body(g, s, x, w, bias, y, ph, acc);
}
#endif

/* The widest version the CPU runs (a plain run-time check: an ifunc, as
 * target_clones makes, runs before sanitizer runtimes start). */
static plane_fn *pick_plane(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx512f"))
        return plane_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return plane_avx2;
#endif
    return plane_base;
}

typedef struct dw_job {
    const nb_dw *g;
    plane_fn *plane;
    shape s;
    const float *x, *w, *b;
    float *y;
    float *ws;
    size_t slot; /* floats */
    int64_t nslots, planes;
} dw_job;

static void run_slots(void *ctx, int64_t s0, int64_t s1)
{
    const dw_job *j = ctx;
    const nb_dw *g = j->g;
    for (int64_t sl = s0; sl < s1; sl++) {
        float *ph = j->ws + (size_t)sl * j->slot;
        float *acc = ph + g->s0 * g->s1 * j->s.phase + SLACK;
        for (int i = 0; i < SLACK; i++) /* read by the last rounded-up entries: keep them defined */
            acc[-SLACK + i] = 0.0f;
        int64_t b = sl * j->planes / j->nslots, e = (sl + 1) * j->planes / j->nslots;
        for (int64_t pl = b; pl < e; pl++) {
            int64_t c = pl % g->C;
            j->plane(g, &j->s, j->x + pl * g->H * g->W, j->w + c * g->KH * g->KW,
                  j->b ? j->b[c] : 0.0f, j->y + pl * g->OH * g->OW, ph, acc);
        }
    }
}

bool nb_dw_generic_conv_f32(const nb_dw *g, const float *x, const float *w, const float *b,
                            float *y, void *ws, size_t ws_size)
{
    dw_job j = {g, pick_plane(), shape_of(g), x, w, b, y, ws, slot_floats(g), 0, g->N * g->C};
    if (j.planes <= 0 || g->OH <= 0 || g->OW <= 0)
        return true;
    int64_t threads = nb_get_num_threads();
    j.nslots = ws ? (int64_t)(ws_size / (j.slot * sizeof(float))) : 0;
    if (j.nslots > threads)
        j.nslots = threads;
    if (j.nslots > j.planes)
        j.nslots = j.planes;
    void *mine = NULL;
    if (j.nslots < 1) {
        mine = aligned_alloc(64, j.slot * sizeof(float));
        if (!mine)
            return false;
        j.ws = mine;
        j.nslots = 1;
    }
    if (j.nslots > 1)
        nb_parallel_for(j.nslots, 1, run_slots, &j);
    else
        run_slots(&j, 0, 1);
    free(mine);
    return true;
}

bool nb_dw_conv_f32(const nb_dw *g, const float *x, const float *w, const float *b, float *y,
                    void *ws, size_t ws_size)
{
    if (nb_dw3x3_supported(g)) {
        nb_dw3x3_conv_f32(g, x, w, b, y);
        return true;
    }
    return nb_dw_generic_conv_f32(g, x, w, b, y, ws, ws_size);
}
