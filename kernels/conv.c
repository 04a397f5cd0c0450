/* Convolutions on the CPU, NCHW, weights OIHW, through im2col + GEMM.
 *
 * With x (N, C, H, W), w (CO, C/G, KH, KW), groups G, stride s, dilation d,
 * padding {top, left} = pb and output (N, CO, OH, OW):
 *
 *   CONV2D:   y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] *
 *             x[n, g*CG + c, i*s0 - pb0 + p*d0, j*s1 - pb1 + q*d1]
 *             (g = o / (CO/G), CG = C/G, x outside the image is 0)
 *   CONV_TRANSPOSE2D (x, w): the adjoint of CONV2D in x, i.e. each input
 *             element scatters x[n, ci, i, j] * w[ci, co, p, q] to
 *             y[n, g*COG + co, i*s0 - pb0 + p*d0, j*s1 - pb1 + q*d1], plus bias.
 *   CONV2D_GRAD_WEIGHT (x, gy): dw[o, c, p, q] = sum_{n, i, j} gy[n, o, i, j] *
 *             x[n, g*CG + c, i*s0 - pb0 + p*d0, j*s1 - pb1 + q*d1].
 *
 * Per (image, group) item the column matrix col (K x P), K = CG*KH*KW rows
 * (c, p, q) and P = OH*OW columns (i, j), holds the input patches; then
 *   CONV2D:      Y_g  = W_g (COG x K) @ col
 *   TRANSPOSE:   col  = W_g^T (K x CIG) @ X_g, then col2im scatters-adds col
 *   GRAD_WEIGHT: dW_g += GY_g (COG x P) @ col^T
 * A 1x1 kernel with stride 1 and no padding needs no im2col: col is X_g.
 *
 * Except: in f32 on CPUs with AVX-512, 3x3 convolutions with stride 1,
 * dilation 1 and one group (all three ops) run Winograd in
 * kernels/conv_winograd.c instead (F(2x2, 3x3): 2.25x fewer multiplies, no
 * im2col, no BLAS; the forward and the input gradient take F(4x4, 3x3), 4x
 * fewer, where it pays),
 * when both channel counts are at least WINO_MIN_CHANNELS (below that the
 * 16-lane channel vectors would be mostly padding) and there are enough
 * output tiles for the transformed weights (WINO_BYTES_PER_TILE). CONV_TRANSPOSE2D is then
 * the conv of its input with the weights transposed and flipped (offset
 * KH - 1 - pad); its workspace (transformed weights, per-thread tile buffers)
 * is asked for by nb_cpu_conv_workspace like im2col's. NABLA_WINOGRAD=0 in
 * the environment keeps every call on im2col. When the weights are a CONST
 * node (an ONNX initializer), their transform is done at the first run and
 * kept in the tape entry's cache (nb_kernel_cache), not redone every run.
 *
 * And: f32 CONV2D with groups == C_in == C_out (depthwise, one output channel
 * per group) runs the direct kernel of kernels/conv_depthwise.c, which needs
 * no workspace; NABLA_DEPTHWISE=0 keeps it on im2col.
 *
 * CONV2D adds the bias and applies its fused clamp (ReLU, ReLU6) to each
 * GEMM's output block right after the GEMM, while the block is in cache; in
 * f32 on CPUs with AVX-512 its GEMMs are kernels/sgemm_avx512.c's, which do
 * that in registers before storing (NABLA_OWN_GEMM=0: OpenBLAS instead).
 *
 * Threads: when there are at least two items, the items are split over the
 * thread pool, each thread with its own column buffer (and, for the weight
 * gradient, its own accumulator, summed at the end) and OpenBLAS held to one
 * thread meanwhile; otherwise the items run in turn with a GEMM split over
 * the pool (kernels/gemm.h).
 * CONV2D's items are finer units (split_units): an image's columns, and if
 * need be its output channels, are split into blocks so that batch 1 keeps
 * every thread busy with single-threaded GEMMs (one pool, no OpenBLAS
 * threads spinning beside nabla's).
 * Buffers come from the call's workspace, sized by nb_cpu_conv_workspace for
 * the thread count at compile time; a call with less workspace uses fewer
 * threads, and one with none (direct kernel calls) allocates once.
 */
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/conv_depthwise.h"
#include "kernels/conv_direct.h"
#include "kernels/conv_winograd.h"
#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "kernels/sgemm_avx512.h"
#include "kernels/threadpool.h"

#define TILE_BYTES (1024u << 10) /* about the L2 cache of one core */
#define WINO_MIN_CHANNELS 8
#define WINO_BYTES_PER_TILE (256.0 * 1024) /* of transformed weights: below this */

/* The geometry of one call, seen as the CONV2D it is (or is the adjoint of):
 * "image" is the conv2d input side (C channels, H x W), "out" the conv2d
 * output side (CO channels, OH x OW). */
typedef struct geom {
    nb_op op;
    nb_dtype dt;
    size_t es;                   /* element size */
    int64_t N, G;
    int64_t C, H, W;             /* conv2d input */
    int64_t CO, OH, OW;          /* conv2d output */
    int64_t KH, KW;
    int64_t s0, s1, d0, d1, p0, p1;
    int64_t CG, COG;             /* channels per group */
    int64_t K, P;                /* col rows and columns */
    bool direct;                 /* 1x1, stride 1, no padding: col is the image */
    bool rowcopy;                /* stride 1 and OW == W: whole-row copies */
    bool wino;                   /* run by Winograd (conv_winograd.c), as the conv wg */
    bool dw;                     /* run by the direct depthwise kernel (conv_depthwise.c) */
    bool dconv;                  /* run by the few-input-channel kernel (conv_direct.c) */
    nb_wino wg;
    int64_t TR;                  /* output rows per column tile */
    bool clamp;                  /* CONV2D: clamp outputs to [lo, hi] */
    bool own_gemm;               /* CONV2D f32 on kernels/sgemm_avx512.c */
    bool big;                    /* an f32 output past the caches (stream_bytes) */
    bool stream;                 /* own_gemm and big: non-temporal stores */
    float lo, hi;
    bool rclamp;                 /* CONV_ADD: after adding the residual, clamp to */
    float rlo, rhi;              /* [rlo, rhi] */
    /* CONV2D's units: items x MB output-channel blocks x PB column blocks
     * (PB tiles of TR output rows, or direct: of PC columns) */
    int64_t MB, MC, PB, PC;
} geom;

static inline int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

void nb_cpu_valid_range(int64_t OW, int64_t W, int64_t s, int64_t pad, int64_t off, int64_t *lo,
                        int64_t *hi)
{
    int64_t a = -floor_div(-(pad - off), s); /* ceil((pad - off) / s) */
    int64_t b = floor_div(W - 1 + pad - off, s) + 1;
    *lo = a < 0 ? 0 : a > OW ? OW : a;
    *hi = b < *lo ? *lo : b > OW ? OW : b;
}

/* im2col over the output rows [r0, r1), Pt = (r1 - r0) * OW columns:
 *   col[(c, p, q), (i - r0, j)] = img[c, i*s0 - p0 + p*d0, j*s1 - p1 + q*d1]
 * (0 outside the image). col2im is its adjoint: img[...] += col[...] over the
 * same index map (col's out-of-image entries are overwritten with 0).
 *
 * rowcopy (stride 1, OW == W): output rows i and i+1 read image rows ih and
 * ih+1, so the valid rows of one (c, p, q) form one contiguous run; the
 * columns outside the valid [lo, hi) that the run fills with neighbouring
 * pixels are zeroed afterwards (col2im zeroes them in col first). */
/* The zeroing loops below clear a column or two per row: left as loops, not
 * turned into memset calls (which cost more than the stores). */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_MEMSET __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NO_MEMSET
#endif

#define DEFINE_COLS(T)                                                                  \
    /* Output rows in [r0, r1) whose image row for kernel row p is inside. */          \
    static void inside_rows_##T(const geom *m, int64_t p, int64_t r0, int64_t r1,       \
                                int64_t *i0, int64_t *i1)                               \
    {                                                                                   \
        int64_t a = m->p0 - p * m->d0, b = m->H + m->p0 - p * m->d0; /* s0 == 1 */      \
        *i0 = a < r0 ? r0 : a > r1 ? r1 : a;                                            \
        *i1 = b < *i0 ? *i0 : b > r1 ? r1 : b;                                          \
    }                                                                                   \
    NO_MEMSET static void im2col_##T(const geom *m, const T *img, T *col, int64_t r0,   \
                                     int64_t r1)                                        \
    {                                                                                   \
        int64_t OW = m->OW, Pt = (r1 - r0) * OW, base = r0 * OW;                                        \
        for (int64_t c = 0; c < m->CG; c++)                                             \
            for (int64_t p = 0; p < m->KH; p++)                                         \
                for (int64_t q = 0; q < m->KW; q++) {                                   \
                    T *row = col + ((c * m->KH + p) * m->KW + q) * Pt; /* row[k - base] */        \
                    const T *ch = img + c * m->H * m->W;                                \
                    int64_t lo, hi, off = q * m->d1;                                    \
                    nb_cpu_valid_range(OW, m->W, m->s1, m->p1, off, &lo, &hi);                 \
                    if (m->rowcopy) {                                                   \
                        int64_t i0, i1;                                                 \
                        inside_rows_##T(m, p, r0, r1, &i0, &i1);                        \
                        if (i1 <= i0 || hi <= lo)                                       \
                            i0 = i1 = r0;                                               \
                        for (int64_t k = r0 * OW; k < i0 * OW + lo; k++)                \
                            row[k - base] = 0;                                                 \
                        for (int64_t k = i1 <= i0 ? r0 * OW : (i1 - 1) * OW + hi;       \
                             k < r1 * OW; k++)                                          \
                            row[k - base] = 0;                                                 \
                        if (i1 <= i0)                                                   \
                            continue;                                                   \
                        /* image index of output (i, j): i*W + j + shift */             \
                        int64_t shift = (p * m->d0 - m->p0) * m->W - m->p1 + off;       \
                        int64_t b = i0 * OW + lo, e = (i1 - 1) * OW + hi;               \
                        memcpy(row + b - base, ch + b + shift, (size_t)(e - b) * sizeof(T)); \
                        for (int64_t i = i0; i < i1; i++) {                             \
                            for (int64_t j = i > i0 ? 0 : lo; j < lo; j++)              \
                                row[i * OW + j - base] = 0;                                    \
                            for (int64_t j = hi; j < OW && i < i1 - 1; j++)             \
                                row[i * OW + j - base] = 0;                                    \
                        }                                                               \
                        continue;                                                       \
                    }                                                                   \
                    for (int64_t i = r0; i < r1; i++) {                                 \
                        T *dst = row + i * OW - base;                                   \
                        int64_t ih = i * m->s0 - m->p0 + p * m->d0;                     \
                        if (ih < 0 || ih >= m->H) {                                     \
                            memset(dst, 0, (size_t)OW * sizeof(T));                     \
                            continue;                                                   \
                        }                                                               \
                        const T *src = ch + ih * m->W; /* + j*s1 - p1 + off */          \
                        int64_t sh = off - m->p1;                                       \
                        for (int64_t j = 0; j < lo; j++)                                \
                            dst[j] = 0;                                                 \
                        if (m->s1 == 2) /* a constant stride vectorises */             \
                            for (int64_t j = lo; j < hi; j++)                           \
                                dst[j] = src[j * 2 + sh];                               \
                        else                                                            \
                            for (int64_t j = lo; j < hi; j++)                           \
                                dst[j] = src[j * m->s1 + sh];                           \
                        for (int64_t j = hi; j < OW; j++)                               \
                            dst[j] = 0;                                                 \
                    }                                                                   \
                }                                                                       \
    }                                                                                   \
    NO_MEMSET static void col2im_##T(const geom *m, T *col, T *img, int64_t r0,         \
                                     int64_t r1)                                        \
    {                                                                                   \
        int64_t OW = m->OW, Pt = (r1 - r0) * OW, base = r0 * OW;                                        \
        for (int64_t c = 0; c < m->CG; c++)                                             \
            for (int64_t p = 0; p < m->KH; p++)                                         \
                for (int64_t q = 0; q < m->KW; q++) {                                   \
                    T *row = col + ((c * m->KH + p) * m->KW + q) * Pt; /* row[k - base] */        \
                    T *ch = img + c * m->H * m->W;                                      \
                    int64_t lo, hi, off = q * m->d1;                                    \
                    nb_cpu_valid_range(OW, m->W, m->s1, m->p1, off, &lo, &hi);                 \
                    if (m->rowcopy) {                                                   \
                        int64_t i0, i1;                                                 \
                        inside_rows_##T(m, p, r0, r1, &i0, &i1);                        \
                        if (i1 <= i0 || hi <= lo)                                       \
                            continue;                                                   \
                        for (int64_t i = i0; i < i1; i++) {                             \
                            for (int64_t j = 0; j < lo; j++)                            \
                                row[i * OW + j - base] = 0;                                    \
                            for (int64_t j = hi; j < OW; j++)                           \
                                row[i * OW + j - base] = 0;                                    \
                        }                                                               \
                        int64_t shift = (p * m->d0 - m->p0) * m->W - m->p1 + off;       \
                        int64_t b = i0 * OW + lo, e = (i1 - 1) * OW + hi;               \
                        T *dst = ch + b + shift;                                        \
                        const T *src = row + b - base;                                  \
                        for (int64_t k = 0; k < e - b; k++)                             \
                            dst[k] += src[k];                                           \
                        continue;                                                       \
                    }                                                                   \
                    for (int64_t i = r0; i < r1; i++) {                                 \
                        int64_t ih = i * m->s0 - m->p0 + p * m->d0;                     \
                        if (ih < 0 || ih >= m->H)                                       \
                            continue;                                                   \
                        const T *src = row + i * OW - base;                             \
                        T *dst = ch + ih * m->W;                                        \
                        int64_t sh = off - m->p1;                                       \
                        for (int64_t j = lo; j < hi; j++)                               \
                            dst[j * m->s1 + sh] += src[j];                              \
                    }                                                                   \
                }                                                                       \
    }

DEFINE_COLS(float)
DEFINE_COLS(double)

static void im2col(const geom *m, const void *img, void *col, int64_t r0, int64_t r1)
{
    if (m->dt == NB_F32)
        im2col_float(m, img, col, r0, r1);
    else
        im2col_double(m, img, col, r0, r1);
}

static void col2im(const geom *m, void *col, void *img, int64_t r0, int64_t r1)
{
    if (m->dt == NB_F32)
        col2im_float(m, col, img, r0, r1);
    else
        col2im_double(m, col, img, r0, r1);
}

/* ---- validation --------------------------------------------------------- */

static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe)
{
    int64_t span = d * (k - 1) + 1, padded = in + pb + pe;
    return padded < span ? -1 : (padded - span) / s + 1;
}

/* CONV2D's units of work, so that a call with fewer items (images x
 * groups) than threads still keeps every thread busy: first the columns are
 * split (direct: into blocks of PC columns; im2col: into tiles of fewer
 * rows), keeping at least MIN_COLS columns a block, unless the blocks
 * would be uneven (direct: multiples of 16; im2col: whole rows, ResNet-18's
 * stride-2 conv to 14x14 at batch 1 split 10 + 4 rows, 0.82-0.92 ms against
 * 0.69-0.72 with channel blocks) and there are channels to split
 * instead; then, if that is not enough, the output channels, in blocks of a
 * multiple of 16. Each unit is
 * one GEMM whose output block the epilogue finishes while it is in cache. */
#define MIN_COLS 128
static void split_units(geom *m, int64_t threads)
{
    int64_t items = m->N * m->G;
    m->MB = 1, m->MC = m->COG;
    m->PC = m->P, m->PB = 1;
    if (!m->direct)
        m->PB = (m->OH + m->TR - 1) / m->TR;
    if (items >= threads || threads <= 1)
        return;
    int64_t want = (threads + items - 1) / items; /* blocks an item */
    if (m->direct) {
        int64_t pc = (m->P + want - 1) / want;
        pc = (pc + 15) / 16 * 16;
        if (pc < MIN_COLS)
            pc = MIN_COLS;
        /* blocks of 16-multiples can be far from even (14x14: 128 + 68
         * columns); channel blocks split evenly, so take those instead */
        int64_t pb = (m->P + pc - 1) / pc;
        bool uneven = pc * pb > m->P + m->P / 8;
        if (pc < m->P && !(uneven && m->COG >= 32)) {
            m->PC = pc;
            m->PB = (m->P + pc - 1) / pc;
        }
    } else if (m->PB < want) {
        int64_t tr = (m->OH + want - 1) / want;
        if (tr * m->OW < MIN_COLS)
            tr = (MIN_COLS + m->OW - 1) / m->OW;
        int64_t pb = (m->OH + tr - 1) / tr;
        bool uneven = tr * pb > m->OH + m->OH / 8;
        if (tr < m->TR && !(uneven && m->COG >= 32)) {
            m->TR = tr;
            m->PB = pb;
        }
    }
    if (m->PB < want && m->COG >= 32) {
        int64_t mb = (want + m->PB - 1) / m->PB;
        int64_t mc = (m->COG + mb - 1) / mb;
        mc = (mc + 15) / 16 * 16;
        m->MC = mc < m->COG ? mc : m->COG;
        m->MB = (m->COG + m->MC - 1) / m->MC;
    }
}

/* The last-level cache's size: Linux's sysfs (what the kernel was told;
 * glibc's cpuid-based sysconf can report the whole socket's L3 in a VM),
 * else sysconf, else 32 MiB. */
static long l3_bytes(void)
{
    long v = 0;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
    if (f) {
        char unit = 0;
        if (fscanf(f, "%ld%c", &v, &unit) >= 1)
            v *= unit == 'K' ? 1024L : unit == 'M' ? 1024L * 1024 : 1;
        fclose(f);
    }
    if (v <= 0)
        v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return v > 0 ? v : 32L << 20;
}

/* Outputs larger than this (a quarter of the L3 cache: measured on
 * MobileNetV2 at batch 8, where the 14.5 MB outputs of the 56x56 expands
 * went from 2.2-2.5 to 1.1-1.25 ms and the depthwise reading them did not
 * slow down) are written with streaming stores. */
static double stream_bytes(void)
{
    static atomic_long l3;
    long v = atomic_load(&l3);
    if (v == 0) {
        v = l3_bytes();
        atomic_store(&l3, v);
    }
    return 0.25 * (double)v;
}

static nb_dconv dconv_geom(const geom *m)
{
    return (nb_dconv){m->N,  m->C,  m->H,  m->W,  m->CO,    m->OH, m->OW,    m->KH,
                      m->KW, m->s0, m->s1, m->p0, m->p1, m->clamp, m->lo, m->hi, m->big};
}

/* Check the call and fill the geometry; NB_OK or a status with nb_error set. */
static nb_status make_geom(const nb_kernel_call *c, geom *m)
{
    const char *nm = nb_op_name(c->op);
    const nb_conv_params *p = c->params;
    memset(m, 0, sizeof *m);
    m->op = c->op;
    if (!p || c->n_in < 2 || c->n_in > (c->op == NB_OP_CONV2D_GRAD_WEIGHT ? 2 : 3) || !c->in ||
        !c->in[0] || !c->in[1] || !c->out || (c->n_in == 3 && !c->in[2]))
        return nb_error(NB_ERR_ARG, "%s: bad call (%d inputs, params %s)", nm, c->n_in,
                        p ? "set" : "missing");
    const nb_tensor *a = c->in[0], *b = c->in[1], *o = c->out;
    m->dt = a->dtype;
    if ((m->dt != NB_F32 && m->dt != NB_F64) || b->dtype != m->dt || o->dtype != m->dt ||
        (c->n_in == 3 && c->in[2]->dtype != m->dt))
        return nb_error(NB_ERR_DTYPE, "%s: dtypes %s, %s -> %s; need equal f32 or f64", nm,
                        nb_dtype_name(a->dtype), nb_dtype_name(b->dtype), nb_dtype_name(o->dtype));
    if (a->ndim != 4 || b->ndim != 4 || o->ndim != 4)
        return nb_error(NB_ERR_SHAPE, "%s: inputs and output must be 4-D (got %d, %d -> %d dims)",
                        nm, a->ndim, b->ndim, o->ndim);
    m->es = nb_dtype_size(m->dt);
    m->s0 = p->stride[0], m->s1 = p->stride[1], m->d0 = p->dilation[0], m->d1 = p->dilation[1];
    m->p0 = p->pad_begin[0], m->p1 = p->pad_begin[1], m->G = p->groups;
    if (m->s0 < 1 || m->s1 < 1 || m->d0 < 1 || m->d1 < 1 || m->G < 1 || m->p0 < 0 ||
        m->p1 < 0 || p->output_padding[0] < 0 || p->output_padding[1] < 0)
        return nb_error(NB_ERR_ARG, "%s: stride, dilation and groups must be >= 1, pad_begin and output_padding >= 0",
                        nm);
    /* image = conv2d input, out = conv2d output; the weight is (CO, CG, KH, KW) */
    const nb_tensor *img, *out;
    int64_t wshape[4];
    if (c->op == NB_OP_CONV2D) {
        img = a, out = o;
        memcpy(wshape, b->shape, sizeof wshape);
    } else if (c->op == NB_OP_CONV_TRANSPOSE2D) {
        img = o, out = a;
        memcpy(wshape, b->shape, sizeof wshape);
    } else if (c->op == NB_OP_CONV2D_GRAD_WEIGHT) {
        img = a, out = b;
        memcpy(wshape, p->weight_shape, sizeof wshape);
        for (int i = 0; i < 4; i++)
            if (wshape[i] != o->shape[i])
                return nb_error(NB_ERR_SHAPE, "conv2d_grad_weight: output dim %d is %lld, weight_shape says %lld",
                                i, (long long)o->shape[i], (long long)wshape[i]);
    } else {
        return nb_error(NB_ERR_UNSUPPORTED, "%s: not a convolution", nm);
    }
    m->N = img->shape[0], m->C = img->shape[1], m->H = img->shape[2], m->W = img->shape[3];
    m->CO = out->shape[1], m->OH = out->shape[2], m->OW = out->shape[3];
    m->KH = wshape[2], m->KW = wshape[3];
    if (out->shape[0] != m->N || m->C % m->G || m->CO % m->G || wshape[1] * m->G != m->C ||
        wshape[0] != m->CO || m->KH < 1 || m->KW < 1)
        return nb_error(NB_ERR_SHAPE, "%s: channels do not match: input side (%lld,%lld,...), output side (%lld,%lld,...), weight (%lld,%lld,%lld,%lld), groups %lld",
                        nm, (long long)m->N, (long long)m->C, (long long)out->shape[0],
                        (long long)m->CO, (long long)wshape[0], (long long)wshape[1],
                        (long long)wshape[2], (long long)wshape[3], (long long)m->G);
    int64_t eh = conv_out(m->H, m->KH, m->s0, m->d0, m->p0, p->pad_end[0]);
    int64_t ew = conv_out(m->W, m->KW, m->s1, m->d1, m->p1, p->pad_end[1]);
    if (c->op == NB_OP_CONV_TRANSPOSE2D) { /* the image size follows from the input's */
        int64_t th = (m->OH - 1) * m->s0 - m->p0 - p->pad_end[0] + m->d0 * (m->KH - 1) + 1 +
                     p->output_padding[0];
        int64_t tw = (m->OW - 1) * m->s1 - m->p1 - p->pad_end[1] + m->d1 * (m->KW - 1) + 1 +
                     p->output_padding[1];
        eh = m->H == th ? m->OH : -1;
        ew = m->W == tw ? m->OW : -1;
    }
    if (eh != m->OH || ew != m->OW)
        return nb_error(NB_ERR_SHAPE, "%s: spatial sizes %lldx%lld and %lldx%lld do not fit kernel %lldx%lld",
                        nm, (long long)m->H, (long long)m->W, (long long)m->OH, (long long)m->OW,
                        (long long)m->KH, (long long)m->KW);
    if (c->n_in == 3) {
        const nb_tensor *bias = c->in[2];
        int64_t want = c->op == NB_OP_CONV2D ? m->CO : m->C;
        if (bias->ndim != 1 || bias->shape[0] != want)
            return nb_error(NB_ERR_SHAPE, "%s: bias must have shape (%lld)", nm, (long long)want);
    }
    m->CG = m->C / m->G, m->COG = m->CO / m->G;
    m->K = m->CG * m->KH * m->KW, m->P = m->OH * m->OW;
    if (m->K > INT_MAX || m->P > INT_MAX || m->CO > INT_MAX || m->H * m->W > INT_MAX)
        return nb_error(NB_ERR_UNSUPPORTED, "%s: a GEMM dimension exceeds the BLAS integer range", nm);
    /* the column buffer holds TR output rows, about TILE_BYTES, so that it
     * stays in the L2 cache between im2col and the GEMM that reads it */
    m->TR = (int64_t)(TILE_BYTES / ((size_t)(m->K * m->OW) * m->es + 1));
    m->TR = m->TR < 1 ? 1 : m->TR > m->OH ? m->OH : m->TR;
    m->rowcopy = m->s0 == 1 && m->s1 == 1 && m->OW == m->W;
    m->direct = m->KH == 1 && m->KW == 1 && m->s0 == 1 && m->s1 == 1 && m->p0 == 0 && m->p1 == 0 &&
                p->pad_end[0] == 0 && p->pad_end[1] == 0;
    /* Winograd sees each op as a conv from its "in" to its "out" side */
    if (m->dt == NB_F32 && m->G == 1 && m->KH == 3 && m->KW == 3 && m->s0 == 1 && m->s1 == 1 &&
        m->d0 == 1 && m->d1 == 1 && m->C >= WINO_MIN_CHANNELS && m->CO >= WINO_MIN_CHANNELS &&
        m->N > 0 && m->H * m->W > 0 && m->P > 0 && nb_wino_enabled()) {
        m->wino = true;
        if (c->op == NB_OP_CONV_TRANSPOSE2D) /* a conv of the flipped, transposed weights */
            m->wg = (nb_wino){m->N, m->CO, m->OH, m->OW, m->C, m->H, m->W, 2 - m->p0, 2 - m->p1};
        else
            m->wg = (nb_wino){m->N, m->C, m->H, m->W, m->CO, m->OH, m->OW, m->p0, m->p1,
                              c->op == NB_OP_CONV2D && p->clamp, p->clamp_min, p->clamp_max};
        if (nb_wino_workspace(&m->wg, c->op == NB_OP_CONV2D_GRAD_WEIGHT, 1) == 0)
            m->wino = false;
        /* few tiles under many channels (ResNet's last stage at batch 1): the
         * transformed weights, 16/9 of the weights, are streamed for a few
         * tiles each; im2col reads the weights once, faster there */
        double tiles = (double)m->wg.N * (double)((m->wg.hout + 1) / 2) * (double)((m->wg.wout + 1) / 2);
        if (16.0 * (double)m->wg.cin * (double)m->wg.cout * sizeof(float) >= WINO_BYTES_PER_TILE * tiles)
            m->wino = false;
    }
    m->dw = !m->wino && c->op == NB_OP_CONV2D && m->dt == NB_F32 && m->G == m->C &&
            m->CO == m->C && nb_dw_enabled();
    if (c->op == NB_OP_CONV2D && p->clamp) {
        m->clamp = true;
        m->lo = p->clamp_min, m->hi = p->clamp_max;
    }
    /* an output of more than a quarter of the last-level cache would mostly
     * evict what the next op reads; streaming stores skip reading its lines
     * first */
    m->big = m->dt == NB_F32 && (double)(m->N * m->CO * m->P) * sizeof(float) > stream_bytes();
    if (!m->wino && !m->dw && c->op == NB_OP_CONV2D && m->dt == NB_F32 && m->G == 1 &&
        m->d0 == 1 && m->d1 == 1) {
        nb_dconv g = dconv_geom(m);
        m->dconv = nb_dconv_supported(&g);
    }
    m->own_gemm = c->op == NB_OP_CONV2D && m->dt == NB_F32 && nb_sgemm_avx512_enabled();
    m->stream = m->own_gemm && m->big;
    if (c->op == NB_OP_CONV2D)
        split_units(m, nb_get_num_threads());
    return NB_OK;
}

/* ---- workspace ---------------------------------------------------------- */

static nb_dw dw_geom(const geom *m)
{
    return (nb_dw){m->N,  m->C,  m->H,  m->W,  m->OH, m->OW,    m->KH, m->KW, m->s0,
                   m->s1, m->d0, m->d1, m->p0, m->p1, m->clamp, m->lo, m->hi};
}

/* Bytes of one thread's slot: a column buffer (none when direct) and, for the
 * weight gradient, an accumulator the size of the weight; 64-byte multiples. */
static size_t slot_bytes(const geom *m)
{
    size_t col = m->direct ? 0 : (size_t)(m->K * m->TR * m->OW) * m->es;
    size_t acc = m->op == NB_OP_CONV2D_GRAD_WEIGHT ? (size_t)(m->CO * m->K) * m->es : 0;
    return ((col + 63) & ~(size_t)63) + ((acc + 63) & ~(size_t)63);
}

/* Work items: (image, group) pairs, or CONV2D's units (split_units). */
static int64_t items_of(const geom *m)
{
    return m->op == NB_OP_CONV2D ? m->N * m->G * m->MB * m->PB : m->N * m->G;
}

static bool conv_add_split(const nb_kernel_call *c, nb_kernel_call *inner, nb_conv_params *q,
                           const nb_tensor **res);

size_t nb_cpu_conv_workspace(const nb_kernel_call *c)
{
    geom m;
    nb_kernel_call inner;
    nb_conv_params q;
    const nb_tensor *r;
    if (c && c->op == NB_OP_CONV_ADD && conv_add_split(c, &inner, &q, &r))
        c = &inner;
    if (!c || make_geom(c, &m) != NB_OK)
        return 0;
    if (m.wino)
        return nb_wino_workspace(&m.wg, m.op == NB_OP_CONV2D_GRAD_WEIGHT, nb_get_num_threads());
    if (m.dw) {
        nb_dw g = dw_geom(&m);
        return nb_dw_workspace(&g, nb_get_num_threads());
    }
    if (m.dconv) {
        nb_dconv g = dconv_geom(&m);
        return nb_dconv_workspace(&g);
    }
    int64_t slots = nb_get_num_threads();
    if (slots > items_of(&m))
        slots = items_of(&m);
    if (slots < 1)
        slots = 1;
    return (size_t)slots * slot_bytes(&m);
}

/* ---- the per-item work -------------------------------------------------- */

typedef struct job {
    const geom *m;
    const char *a, *b, *bias; /* the inputs as bytes */
    char *out;
    char *ws;                 /* nslots slots of slot_bytes */
    size_t slot;
    int64_t nslots, nitems;
    const float *res;         /* CONV_ADD's residual (out's shape), or NULL */
    atomic_int_fast64_t next; /* CONV2D, CONV_TRANSPOSE2D: the next item to take */
} job;

static char *slot_col(const job *j, int64_t s) { return j->ws ? j->ws + (size_t)s * j->slot : NULL; }

static char *slot_acc(const job *j, int64_t s)
{
    const geom *m = j->m;
    size_t col = m->direct ? 0 : (((size_t)(m->K * m->TR * m->OW) * m->es + 63) & ~(size_t)63);
    return j->ws + (size_t)s * j->slot + col;
}

/* y (rows x cols, row stride ld) = clamp(y + bias[row]), in the call's dtype;
 * bias may be NULL, and without clamp and bias there is nothing to do. */
#define DEFINE_EPILOGUE(T)                                                              \
    static void epilogue_##T(const geom *m, const T *bias, T *y, int64_t rows,         \
                             int64_t cols, int64_t ld)                                  \
    {                                                                                   \
        for (int64_t r = 0; r < rows; r++) {                                            \
            T *v = y + r * ld, b = bias ? bias[r] : (T)0, lo = m->lo, hi = m->hi;       \
            if (m->clamp) {                                                             \
                for (int64_t k = 0; k < cols; k++) {                                    \
                    T t = v[k] + b;                                                     \
                    t = t < lo ? lo : t; /* a NaN stays NaN */                          \
                    v[k] = t > hi ? hi : t;                                             \
                }                                                                       \
            } else {                                                                    \
                for (int64_t k = 0; k < cols; k++)                                      \
                    v[k] += b;                                                          \
            }                                                                           \
        }                                                                               \
    }
DEFINE_EPILOGUE(float)
DEFINE_EPILOGUE(double)

static void epilogue(const geom *m, const void *bias, void *y, int64_t rows, int64_t cols,
                     int64_t ld)
{
    if (!bias && !m->clamp)
        return;
    if (m->dt == NB_F32)
        epilogue_float(m, bias, y, rows, cols, ld);
    else
        epilogue_double(m, bias, y, rows, cols, ld);
}

/* CONV_ADD: y (rows x cols, row stride ld) = rclamp(y + r), r laid out as
 * y, right after the block of y was computed (still in cache). */
static void add_residual(const geom *m, float *y, const float *r, int64_t rows, int64_t cols,
                         int64_t ld)
{
    float lo = m->rlo, hi = m->rhi;
    for (int64_t i = 0; i < rows; i++) {
        float *v = y + i * ld;
        const float *ri = r + i * ld;
        if (m->rclamp) {
            for (int64_t k = 0; k < cols; k++) {
                float t = v[k] + ri[k];
                t = t < lo ? lo : t; /* a NaN stays NaN, -0 stays -0 (as RELU) */
                v[k] = t > hi ? hi : t;
            }
        } else {
            for (int64_t k = 0; k < cols; k++)
                v[k] = v[k] + ri[k];
        }
    }
}

/* CONV2D unit u = ((n, g), channel block, column block): the output block
 * Y_g[o0:o1, cols] = W_g[o0:o1] @ col(X_g)[:, cols], then bias and clamp. */
static void unit_conv2d(const job *j, int64_t u, char *col)
{
    const geom *m = j->m;
    int64_t pb = u % m->PB, mb = u / m->PB % m->MB, item = u / (m->PB * m->MB);
    int64_t n = item / m->G, g = item % m->G;
    int64_t o0 = mb * m->MC, mo = m->COG - o0 < m->MC ? m->COG - o0 : m->MC;
    const char *x = j->a + (size_t)((n * m->C + g * m->CG) * m->H * m->W) * m->es;
    const char *w = j->b + (size_t)((g * m->COG + o0) * m->K) * m->es;
    const char *bias = j->bias ? j->bias + (size_t)(g * m->COG + o0) * m->es : NULL;
    char *y = j->out + (size_t)((n * m->CO + g * m->COG + o0) * m->P) * m->es;
    int64_t c0, pt, ldb;
    const char *src;
    if (m->direct) {
        c0 = pb * m->PC;
        pt = m->P - c0 < m->PC ? m->P - c0 : m->PC;
        src = x + (size_t)c0 * m->es;
        ldb = m->P;
    } else {
        int64_t r0 = pb * m->TR, r1 = r0 + m->TR < m->OH ? r0 + m->TR : m->OH;
        c0 = r0 * m->OW;
        pt = (r1 - r0) * m->OW;
        im2col(m, x, col, r0, r1);
        src = col;
        ldb = pt;
    }
    char *dst = y + (size_t)c0 * m->es;
    if (m->own_gemm) { /* the epilogue in registers */
        /* columns [c0, c0 + pt) of the image's P: the same bits however the
         * columns are split over units */
        nb_sgemm_avx512_part(mo, pt, m->K, (const float *)w, m->K, (const float *)src, ldb,
                             (float *)dst, m->P, (const float *)bias, m->clamp, m->lo, m->hi, c0,
                             m->P, m->stream);
    } else {
        nb_gemm(m->dt, false, false, mo, pt, m->K, w, m->K, src, ldb, 0, dst, m->P);
        epilogue(m, bias, dst, mo, pt, m->P);
    }
    if (j->res)
        add_residual(m, (float *)dst, j->res + (dst - j->out) / (ptrdiff_t)sizeof(float), mo, pt,
                     m->P);
}

/* CONV_TRANSPOSE2D on item (n, g): Y_g = bias + col2im(W_g^T @ X_g), where X_g
 * is the conv2d-output-side input and Y_g the conv2d-input-side output; a
 * tile of X_g rows at a time. */
static void item_transpose(const job *j, int64_t item, char *col)
{
    const geom *m = j->m;
    int64_t n = item / m->G, g = item % m->G;
    const char *x = j->a + (size_t)((n * m->CO + g * m->COG) * m->P) * m->es;
    const char *w = j->b + (size_t)(g * m->COG * m->K) * m->es;
    char *y = j->out + (size_t)((n * m->C + g * m->CG) * m->H * m->W) * m->es;
    int64_t hw = m->H * m->W;
    if (m->direct) {
        nb_gemm(m->dt, true, false, m->K, m->P, m->COG, w, m->K, x, m->P, 0, y, m->P);
    } else {
        memset(y, 0, (size_t)(m->CG * hw) * m->es);
        for (int64_t r0 = 0; r0 < m->OH; r0 += m->TR) {
            int64_t r1 = r0 + m->TR < m->OH ? r0 + m->TR : m->OH, pt = (r1 - r0) * m->OW;
            nb_gemm(m->dt, true, false, m->K, pt, m->COG, w, m->K,
                 x + (size_t)(r0 * m->OW) * m->es, m->P, 0, col, pt);
            col2im(m, col, y, r0, r1);
        }
    }
    if (j->bias)
        for (int64_t c = 0; c < m->CG; c++) {
            int64_t ch = g * m->CG + c;
            if (m->dt == NB_F32) {
                float v = ((const float *)j->bias)[ch], *r = (float *)y + c * hw;
                for (int64_t i = 0; i < hw; i++)
                    r[i] += v;
            } else {
                double v = ((const double *)j->bias)[ch], *r = (double *)y + c * hw;
                for (int64_t i = 0; i < hw; i++)
                    r[i] += v;
            }
        }
}

/* CONV2D_GRAD_WEIGHT on item (n, g): dW_g += GY_g @ col(X_g)^T, into acc, a
 * tile of output rows at a time. */
static void item_grad_weight(const job *j, int64_t item, char *col, char *acc)
{
    const geom *m = j->m;
    int64_t n = item / m->G, g = item % m->G;
    const char *x = j->a + (size_t)((n * m->C + g * m->CG) * m->H * m->W) * m->es;
    const char *gy = j->b + (size_t)((n * m->CO + g * m->COG) * m->P) * m->es;
    char *dw = acc + (size_t)(g * m->COG * m->K) * m->es;
    if (m->direct) {
        nb_gemm(m->dt, false, true, m->COG, m->K, m->P, gy, m->P, x, m->P, 1, dw, m->K);
        return;
    }
    for (int64_t r0 = 0; r0 < m->OH; r0 += m->TR) {
        int64_t r1 = r0 + m->TR < m->OH ? r0 + m->TR : m->OH, pt = (r1 - r0) * m->OW;
        im2col(m, x, col, r0, r1);
        nb_gemm(m->dt, false, true, m->COG, m->K, pt, gy + (size_t)(r0 * m->OW) * m->es, m->P, col,
             pt, 1, dw, m->K);
    }
}

/* Slots [s0, s1): slot s runs items (units) [s*nitems/nslots, (s+1)*nitems/nslots). */
/* Each slot (a thread's column buffer) takes items in turn, so a thread
 * kept off its CPU leaves its items to the others: every item writes its own
 * outputs, whoever runs it. The weight gradient's items accumulate into
 * their slot's sum instead, merged in slot order: a fixed share a slot, so
 * that the result does not depend on the timing. */
static void run_slots(void *ctx, int64_t s0, int64_t s1)
{
    job *j = ctx;
    for (int64_t s = s0; s < s1; s++) {
        char *col = slot_col(j, s);
        if (j->m->op == NB_OP_CONV2D_GRAD_WEIGHT) {
            int64_t b = s * j->nitems / j->nslots, e = (s + 1) * j->nitems / j->nslots;
            for (int64_t it = b; it < e; it++)
                item_grad_weight(j, it, col, s == 0 ? j->out : slot_acc(j, s));
            continue;
        }
        for (int64_t it; (it = atomic_fetch_add(&j->next, 1)) < j->nitems;) {
            if (j->m->op == NB_OP_CONV2D)
                unit_conv2d(j, it, col);
            else
                item_transpose(j, it, col);
        }
    }
}

/* out[n, c, :] += bias[c] for an (N, C, HW) output. */
static void add_bias(nb_dtype dt, const void *bias, void *out, int64_t N, int64_t C, int64_t hw)
{
    for (int64_t n = 0; n < N; n++)
        for (int64_t ch = 0; ch < C; ch++) {
            if (dt == NB_F32) {
                float v = ((const float *)bias)[ch], *r = (float *)out + (n * C + ch) * hw;
                for (int64_t i = 0; i < hw; i++)
                    r[i] += v;
            } else {
                double v = ((const double *)bias)[ch], *r = (double *)out + (n * C + ch) * hw;
                for (int64_t i = 0; i < hw; i++)
                    r[i] += v;
            }
        }
}

/* Winograd's transformed weights for a call whose weight input is a CONST
 * node, made at the first run of any session of the plan and kept in the
 * entry's shared cache (keyed by the weights' address); NULL when there is
 * no cache, the weights are not constant or not the ones cached, or memory
 * is short (the caller then transforms per call). Weights that are a view of
 * a model file's mapping (raw data at an aligned offset; others were copied
 * at load) are given back to the file once transformed, so that they are
 * not resident twice: in the exported ResNet-18, 2 of the 13 layers (18.9
 * MB), peak resident memory of `nabla run` at batch 8 244 -> 226 MB. They
 * are read from the file again if a later call needs them. */
static const float *cached_weights(const nb_kernel_call *c, const nb_wino *wg, const float *w)
{
    nb_kernel_cache *k = c->cache;
    if (!k || !(k->const_inputs & 2u))
        return NULL;
    pthread_mutex_lock(&k->lock);
    if (!k->data) {
        size_t bytes = nb_wino_weights_bytes(wg);
        float *u = bytes ? aligned_alloc(64, bytes) : NULL;
        if (u) {
            nb_wino_transform(wg, w, c->op == NB_OP_CONV_TRANSPOSE2D, u);
            const nb_tensor *wt = c->in[1];
            nb_buffer_drop_pages(wt->buf, w, (size_t)nb_tensor_numel(wt) * sizeof(float));
            k->data = u;
            k->free_fn = free;
            k->key = w;
        }
    }
    const float *u = k->data && k->key == w ? k->data : NULL;
    pthread_mutex_unlock(&k->lock);
    return u;
}

/* CONV_ADD's call as the CONV2D it runs (*q: its params with the clamp
 * off) and its residual; false when the call is not a CONV_ADD of f32
 * tensors with a residual of the output's shape. */
static bool conv_add_split(const nb_kernel_call *c, nb_kernel_call *inner, nb_conv_params *q,
                           const nb_tensor **res)
{
    if (!c || c->op != NB_OP_CONV_ADD || !c->params || !c->in || !c->out || c->n_in < 3 ||
        c->n_in > 4)
        return false;
    const nb_tensor *r = c->in[c->n_in - 1];
    if (!r || r->dtype != NB_F32 || c->out->dtype != NB_F32 || r->ndim != c->out->ndim ||
        memcmp(r->shape, c->out->shape, sizeof(int64_t) * (size_t)r->ndim) != 0)
        return false;
    *q = *(const nb_conv_params *)c->params;
    q->clamp = 0;
    *inner = *c;
    inner->op = NB_OP_CONV2D;
    inner->n_in = c->n_in - 1;
    inner->params = q;
    *res = r;
    return true;
}

static nb_status run_conv(const nb_kernel_call *c, const nb_tensor *res,
                          const nb_conv_params *post);
static nb_status run_paths(const nb_kernel_call *c, geom *m, job *j);

nb_status nb_cpu_conv(const nb_kernel_call *c)
{
    if (c && c->op == NB_OP_CONV_ADD) {
        nb_kernel_call inner;
        nb_conv_params q;
        const nb_tensor *r;
        if (!conv_add_split(c, &inner, &q, &r))
            return nb_error(NB_ERR_ARG, "conv2d_add: bad call (%d inputs; needs f32 and a "
                                        "residual of the output's shape)", c->n_in);
        return run_conv(&inner, r, c->params);
    }
    return run_conv(c, NULL, NULL);
}

bool nb_cpu_conv_add_fusable(const nb_kernel_call *c)
{
    nb_kernel_call inner;
    nb_conv_params q;
    const nb_tensor *r;
    geom m;
    if (!conv_add_split(c, &inner, &q, &r) || make_geom(&inner, &m) != NB_OK)
        return false;
    /* the paths that add the residual while the output block is in cache */
    return m.dt == NB_F32 && !m.dconv && !m.dw;
}

static nb_status run_conv(const nb_kernel_call *c, const nb_tensor *res,
                          const nb_conv_params *post)
{
    geom m;
    nb_status st = make_geom(c, &m);
    if (st != NB_OK)
        return st;
    if (res) {
        if (m.dt != NB_F32)
            return nb_error(NB_ERR_DTYPE, "conv2d_add: f32 only");
        m.rclamp = post->clamp != 0;
        m.rlo = post->clamp_min, m.rhi = post->clamp_max;
        m.stream = false; /* the block is read back at once */
        m.wg.res = nb_tensor_data(res);
        m.wg.rclamp = m.rclamp, m.wg.rlo = m.rlo, m.wg.rhi = m.rhi;
    }
    job j = {&m, nb_tensor_data(c->in[0]), nb_tensor_data(c->in[1]),
             c->n_in == 3 ? nb_tensor_data(c->in[2]) : NULL, nb_tensor_data(c->out), NULL,
             slot_bytes(&m), 0, items_of(&m), res ? nb_tensor_data(res) : NULL, 0};
    nb_status done = run_paths(c, &m, &j);
    if (done == NB_OK && res && (m.dconv || m.dw || j.nitems == 0 || m.K == 0 || m.COG == 0))
        add_residual(&m, (float *)j.out, j.res, 1, nb_tensor_numel(c->out), 0);
    return done;
}

/* The conv's paths (the residual of CONV_ADD is added inside Winograd and
 * the GEMM units; the caller adds it after the others). */
static nb_status run_paths(const nb_kernel_call *c, geom *m, job *j)
{
    size_t out_bytes = (size_t)nb_tensor_numel(c->out) * m->es;
    if (j->nitems == 0 || m->K == 0 || m->COG == 0) {
        /* an empty sum: zeros, plus the bias broadcast over the output */
        memset(j->out, 0, out_bytes);
        if (j->bias && m->op != NB_OP_CONV2D_GRAD_WEIGHT)
            add_bias(m->dt, j->bias, j->out, c->out->shape[0], c->out->shape[1],
                     c->out->shape[2] * c->out->shape[3]);
        if (m->clamp)
            epilogue(m, NULL, j->out, c->out->shape[0] * c->out->shape[1],
                     c->out->shape[2] * c->out->shape[3], c->out->shape[2] * c->out->shape[3]);
        return NB_OK;
    }
    if (m->dconv) {
        nb_dconv g = dconv_geom(m);
        if (!nb_dconv_f32(&g, (const float *)j->a, (const float *)j->b, (const float *)j->bias,
                          (float *)j->out, c->workspace, c->workspace_size))
            return nb_error(NB_ERR_ALLOC, "conv2d: out of memory for the repacked weights");
        return NB_OK;
    }
    if (m->dw) {
        nb_dw g = dw_geom(m);
        if (!nb_dw_conv_f32(&g, (const float *)j->a, (const float *)j->b, (const float *)j->bias,
                            (float *)j->out, c->workspace, c->workspace_size))
            return nb_error(NB_ERR_ALLOC, "conv2d: out of memory for the depthwise scratch");
        return NB_OK;
    }
    if (m->wino) {
        bool gw = m->op == NB_OP_CONV2D_GRAD_WEIGHT;
        size_t need = nb_wino_workspace(&m->wg, gw, 1), have = c->workspace_size;
        char *ws = c->workspace;
        void *mine = NULL;
        if (!ws || have < need) { /* no (or a stale) workspace: one slot of our own */
            ws = mine = aligned_alloc(64, need);
            have = need;
            if (!ws)
                return nb_error(NB_ERR_ALLOC, "%s: out of memory for a %zu-byte Winograd workspace",
                                nb_op_name(c->op), need);
        }
        const float *u = gw ? NULL : cached_weights(c, &m->wg, (const float *)j->b);
        if (gw)
            nb_wino_grad_weight(&m->wg, (const float *)j->a, (const float *)j->b, (float *)j->out, ws,
                                have);
        else if (u)
            nb_wino_conv_pre(&m->wg, u, (const float *)j->bias, (const float *)j->a, (float *)j->out,
                             ws, have);
        else
            nb_wino_conv(&m->wg, (const float *)j->b, m->op == NB_OP_CONV_TRANSPOSE2D,
                         (const float *)j->bias, (const float *)j->a, (float *)j->out, ws, have);
        free(mine);
        return NB_OK;
    }
    int64_t threads = nb_get_num_threads();
    int64_t want = threads < j->nitems ? threads : j->nitems;
    if (want < 1)
        want = 1;
    void *own = NULL;
    if (j->slot == 0) {
        j->nslots = want;
    } else {
        j->nslots = c->workspace ? (int64_t)(c->workspace_size / j->slot) : 0;
        if (j->nslots > want)
            j->nslots = want;
        if (j->nslots >= 1) {
            j->ws = c->workspace;
        } else { /* no workspace given: one slot of our own */
            own = aligned_alloc(64, j->slot);
            if (!own)
                return nb_error(NB_ERR_ALLOC, "%s: out of memory for a %zu-byte column buffer",
                                nb_op_name(c->op), j->slot);
            j->ws = own;
            j->nslots = 1;
        }
    }
    if (m->op == NB_OP_CONV2D_GRAD_WEIGHT) {
        memset(j->out, 0, out_bytes);
        for (int64_t s = 1; s < j->nslots; s++)
            memset(slot_acc(j, s), 0, (size_t)(m->CO * m->K) * m->es);
    }
    if (j->nslots > 1) {
        /* each thread runs whole GEMMs (nb_gemm inside a pool job runs inline) */
        nb_parallel_for(j->nslots, 1, run_slots, j);
    } else {
        run_slots(j, 0, 1);
    }
    if (m->op == NB_OP_CONV2D_GRAD_WEIGHT && j->nslots > 1) {
        int64_t n = m->CO * m->K;
        for (int64_t s = 1; s < j->nslots; s++) {
            const char *acc = slot_acc(j, s);
            if (m->dt == NB_F32)
                for (int64_t i = 0; i < n; i++)
                    ((float *)j->out)[i] += ((const float *)acc)[i];
            else
                for (int64_t i = 0; i < n; i++)
                    ((double *)j->out)[i] += ((const double *)acc)[i];
        }
    }
    free(own);
    return NB_OK;
}
