/* CONV_BLOCK (kernels/conv_params.h): a mobile network's inverted-residual
 * block, expand 1x1 -> depthwise 3x3 -> project 1x1 (+ the input), in one
 * pass over the image so that the expanded tensors never leave the cache.
 *
 * Run as three convolutions, the block writes its expanded tensor e (6x the
 * channels of x: 4.8 MB for MobileNetV2's first 112x112 block) to memory,
 * reads it back for the depthwise conv, writes d, reads it back again for
 * the projection. Here an image's output rows are made a band of R rows at a
 * time: the input rows the band's depthwise windows need are expanded into a
 * ring of rows (rows still needed by the next band stay, so each row is
 * expanded once per segment), the depthwise conv turns them into R rows of
 * d, and the projection writes R rows of y (then adds x's rows when
 * residual). e's ring and d's band are sized to stay in the L2 cache.
 *
 * A network's first conv (3 input channels, 3x3 stride 2: MobileNetV2's
 * stem, whose 32-channel 112x112 output is 1.6 MB an image) can be the
 * expand stage too: its rows then come from the direct kernel of
 * kernels/conv_direct.c instead of the GEMM.
 *
 * Work items are (image, segment of output rows); segments exist so that a
 * batch smaller than the thread count still keeps every thread busy, at the
 * price of expanding the rows where two segments meet twice. Each item runs
 * single-threaded kernels: the f32 GEMM with its epilogue in registers
 * (kernels/sgemm_avx512.c, told the column offsets so that its bits do not
 * depend on the band split) and the 3x3 depthwise band kernel
 * (kernels/conv_dw3x3.c). Every output therefore has the bits the three
 * separate convolutions (and the ADD) give on this CPU.
 *
 * Scratch: one slot (ring + band) per thread, taken with an atomic bitmask
 * for the length of a work item. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/conv_depthwise.h"
#include "kernels/conv_direct.h"
#include "kernels/conv_params.h"
#include "kernels/cpu.h"
#include "kernels/sgemm_avx512.h"
#include "kernels/threadpool.h"

#define L2_BUDGET (448 * 1024) /* bytes of e's ring + d's band per thread */
#define MAX_SLOTS 32
/* ... or of a whole segment in one band: up to most of a 1 MB L2, which
 * MobileNetV2's 14x14 blocks of 576 channels (903K) gain from at batch 8
 * (3.80 -> 3.61 ms for the two, 2 threads; level at batch 1, 1 thread) */
#define WHOLE_BUDGET (960 * 1024)
#define MIN_PIXELS (28 * 28) /* smaller images: a segment only as one band */
#define MIN_SEG_ROWS 7          /* output rows a segment at least */

typedef struct blk {
    const nb_conv_block_params *p;
    int64_t N, C, H, W, CE, CO, OH, OW, s; /* H, W: e's (the depthwise input's) */
    int64_t XH, XW;      /* x's height and width (H, W but with a direct expand) */
    nb_dconv dc;         /* the direct expand (expand == 2) */
    float *wp;           /* its packed weights (in the workspace) */
    const float *x, *w1, *b1, *wd, *bd, *w3, *b3;
    float *y;
    nb_dw dw;            /* the depthwise geometry, for the band calls */
    int64_t R, ring;     /* output rows a band; e rows kept (expand only) */
    int64_t segs, seg_rows;
    size_t slot_floats;  /* ring + band, in floats, 16-float aligned */
    float *ws;
    int nslots;
    atomic_uint busy;
    atomic_int failed;   /* a work item could not get scratch */
} blk;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static size_t round16(int64_t n) { return (size_t)(n + 15) / 16 * 16; }

/* Read the call into b (no data pointers when the tensors have none): false
 * when it is not a call this kernel covers. */
static bool read_call(const nb_kernel_call *c, blk *b)
{
    memset(b, 0, sizeof *b);
    const nb_conv_block_params *p = c ? c->params : NULL;
    if (!p || c->op != NB_OP_CONV_BLOCK || !c->in || !c->out)
        return false;
    int want = 1 + (p->expand ? 1 + (p->has_b1 != 0) : 0) + 1 + (p->has_bd != 0) + 1 +
               (p->has_b3 != 0);
    if (c->n_in != want)
        return false;
    for (int i = 0; i < c->n_in; i++)
        if (!c->in[i] || c->in[i]->dtype != NB_F32)
            return false;
    if (c->out->dtype != NB_F32)
        return false;
    int k = 0;
    const nb_tensor *x = c->in[k++], *w1 = p->expand ? c->in[k++] : NULL;
    const nb_tensor *b1 = p->expand && p->has_b1 ? c->in[k++] : NULL;
    const nb_tensor *wd = c->in[k++], *bd = p->has_bd ? c->in[k++] : NULL;
    const nb_tensor *w3 = c->in[k++], *b3 = p->has_b3 ? c->in[k++] : NULL;
    const nb_tensor *y = c->out;
    if (x->ndim != 4 || y->ndim != 4 || wd->ndim != 4 || w3->ndim != 4 || (w1 && w1->ndim != 4))
        return false;
    if (p->expand < 0 || p->expand > 2)
        return false;
    b->p = p;
    b->N = x->shape[0], b->C = x->shape[1], b->XH = x->shape[2], b->XW = x->shape[3];
    b->H = p->expand == 2 ? p->eout[0] : b->XH;
    b->W = p->expand == 2 ? p->eout[1] : b->XW;
    b->CE = w1 ? w1->shape[0] : b->C;
    b->CO = w3->shape[0];
    b->OH = y->shape[2], b->OW = y->shape[3], b->s = p->stride;
    if (p->expand == 1 && (w1->shape[1] != b->C || w1->shape[2] != 1 || w1->shape[3] != 1))
        return false;
    if (p->expand == 2) {
        b->dc = (nb_dconv){.N = 1, .C = b->C, .H = b->XH, .W = b->XW, .CO = b->CE, .OH = b->H,
                           .OW = b->W, .KH = p->ek[0], .KW = p->ek[1], .s0 = p->es[0],
                           .s1 = p->es[1], .p0 = p->ep[0], .p1 = p->ep[1],
                           .clamp = p->clamp[0] != 0, .lo = p->lo[0], .hi = p->hi[0]};
        if (w1->shape[1] != b->C || w1->shape[2] != p->ek[0] || w1->shape[3] != p->ek[1] ||
            !nb_dconv_supported(&b->dc))
            return false;
    }
    if (wd->shape[0] != b->CE || wd->shape[1] != 1 || wd->shape[2] != 3 || wd->shape[3] != 3)
        return false;
    if (w3->shape[1] != b->CE || w3->shape[2] != 1 || w3->shape[3] != 1)
        return false;
    if ((b1 && nb_tensor_numel(b1) != b->CE) || (bd && nb_tensor_numel(bd) != b->CE) ||
        (b3 && nb_tensor_numel(b3) != b->CO))
        return false;
    if (y->shape[0] != b->N || y->shape[1] != b->CO || b->N < 1 || b->C < 1 || b->CE < 1 ||
        b->CO < 1 || b->OH < 1 || b->OW < 1 || b->H < 1 || b->W < 1)
        return false;
    if ((b->s != 1 && b->s != 2) || p->pad[0] < 0 || p->pad[0] > 1 || p->pad[1] < 0 ||
        p->pad[1] > 1)
        return false;
    if (p->residual && (b->CO != b->C || b->OH != b->XH || b->OW != b->XW))
        return false;
    b->dw = (nb_dw){.N = 1, .C = 1, .H = b->H, .W = b->W, .OH = b->OH, .OW = b->OW, .KH = 3,
                    .KW = 3, .s0 = b->s, .s1 = b->s, .d0 = 1, .d1 = 1, .p0 = p->pad[0],
                    .p1 = p->pad[1], .clamp = p->clamp[1] != 0, .lo = p->lo[1], .hi = p->hi[1]};
    if (!nb_dw3x3_supported(&b->dw) || !nb_sgemm_avx512_enabled())
        return false;
    b->x = nb_tensor_data(x);
    b->w1 = w1 ? nb_tensor_data(w1) : NULL;
    b->b1 = b1 ? nb_tensor_data(b1) : NULL;
    b->wd = nb_tensor_data(wd);
    b->bd = bd ? nb_tensor_data(bd) : NULL;
    b->w3 = nb_tensor_data(w3);
    b->b3 = b3 ? nb_tensor_data(b3) : NULL;
    b->y = nb_tensor_data(y);
    return true;
}

/* Segments, band rows, ring and slots for `threads` threads. */
static void plan_bands(blk *b, int64_t threads)
{
    /* enough items for every thread, segments of at least MIN_SEG_ROWS
     * output rows */
    b->segs = min64(max64(1, (threads + b->N - 1) / b->N), max64(1, b->OH / MIN_SEG_ROWS));
    b->seg_rows = (b->OH + b->segs - 1) / b->segs;
    b->segs = (b->OH + b->seg_rows - 1) / b->seg_rows;
    int64_t per_row = 4 * b->CE * ((b->p->expand ? b->s * b->W : 0) + b->OW);
    int64_t R = max64(1, L2_BUDGET / per_row);
    if (per_row * b->seg_rows <= WHOLE_BUDGET)
        R = b->seg_rows; /* a whole segment in one band: the GEMMs stay whole */
    else if (R >= 8)
        R &= ~(int64_t)3; /* the depthwise kernel makes 4 rows at once */
    b->R = min64(R, b->seg_rows);
    b->ring = b->p->expand ? min64(b->R * b->s + 2, b->H) : 0;
    b->slot_floats = round16(b->CE * b->ring * b->W) + round16(b->CE * b->R * b->OW);
    int64_t items = b->N * b->segs;
    b->nslots = (int)min64(min64(threads, items), MAX_SLOTS);
}

/* Output rows [oa, ob) of image n, with scratch e (the ring) and d (a band). */
static void segment(const blk *b, int64_t n, int64_t oa, int64_t ob, float *e, float *d)
{
    const nb_conv_block_params *p = b->p;
    const int64_t H = b->H, W = b->W, OW = b->OW, s = b->s, R = b->R, ring = b->ring;
    const float *x = b->x + n * b->C * b->XH * b->XW;
    float *y = b->y + n * b->CO * b->OH * OW;
    int64_t done = 0; /* e holds the rows up to here (this segment's) */
    for (int64_t o = oa; o < ob; o += R) {
        int64_t r = min64(R, ob - o);
        int64_t lo = max64(0, o * s - p->pad[0]), hi = min64(H, (o + r - 1) * s - p->pad[0] + 3);
        if (p->expand == 2) {
            int64_t from = o == oa ? lo : max64(lo, done);
            if (from < hi)
                nb_dconv_rows_f32(&b->dc, x, b->wp, b->b1, from, hi, e, ring * W, ring);
            done = hi;
        } else if (p->expand) {
            for (int64_t i = o == oa ? lo : max64(lo, done); i < hi;) {
                int64_t slot = i % ring, cnt = min64(hi - i, ring - slot);
                nb_sgemm_avx512_part(b->CE, cnt * W, b->C, b->w1, b->C, x + i * W, H * W,
                                     e + slot * W, ring * W, b->b1, p->clamp[0], p->lo[0],
                                     p->hi[0], i * W, H * W, false);
                i += cnt;
            }
            done = hi;
        }
        for (int64_t c = 0; c < b->CE; c++)
            nb_dw3x3_band_f32(&b->dw, p->expand ? e + c * ring * W : x + c * H * W, ring,
                              b->wd + c * 9, b->bd ? b->bd[c] : 0.0f, o, o + r, d + c * R * OW);
        float *yo = y + o * OW;
        nb_sgemm_avx512_part(b->CO, r * OW, b->CE, b->w3, b->CE, d, R * OW, yo, b->OH * OW, b->b3,
                             p->clamp[2], p->lo[2], p->hi[2], o * OW, b->OH * OW, false);
        if (p->residual) /* y + x, as the ADD it replaces */
            for (int64_t c = 0; c < b->CO; c++) {
                float *yc = yo + c * b->OH * OW;
                const float *xc = x + c * b->XH * b->XW + o * OW;
                for (int64_t j = 0; j < r * OW; j++)
                    yc[j] = yc[j] + xc[j];
            }
    }
}

static void run_items(void *ctx, int64_t i0, int64_t i1)
{
    blk *b = ctx;
    /* a free slot of scratch, or our own when every slot is taken (more
     * threads than at compile time) */
    int slot = -1;
    unsigned busy = atomic_load(&b->busy);
    for (int k = 0; k < b->nslots && slot < 0; k++)
        if (!(busy & 1u << k)) {
            if (atomic_compare_exchange_strong(&b->busy, &busy, busy | 1u << k))
                slot = k;
            else
                k = -1; /* busy was reloaded: look again from the start */
        }
    float *own = NULL, *scratch;
    if (slot >= 0) {
        scratch = b->ws + (size_t)slot * b->slot_floats;
    } else {
        own = aligned_alloc(64, b->slot_floats * sizeof(float));
        if (!own) {
            atomic_store(&b->failed, 1);
            return;
        }
        scratch = own;
    }
    float *e = scratch, *d = scratch + round16(b->CE * b->ring * b->W);
    for (int64_t it = i0; it < i1; it++) {
        int64_t n = it / b->segs, sg = it % b->segs;
        int64_t oa = sg * b->seg_rows, ob = min64(b->OH, oa + b->seg_rows);
        segment(b, n, oa, ob, e, d);
    }
    if (slot >= 0)
        atomic_fetch_and(&b->busy, ~(1u << slot));
    free(own);
}

/* Bytes of the direct expand's packed weights (a multiple of 64). */
static size_t packed_bytes(const blk *b)
{
    return b->p->expand == 2 ? (nb_dconv_workspace(&b->dc) + 63) / 64 * 64 : 0;
}

size_t nb_cpu_conv_block_workspace(const nb_kernel_call *c)
{
    blk b;
    if (!read_call(c, &b))
        return 0;
    plan_bands(&b, nb_get_num_threads());
    return (size_t)b.nslots * b.slot_floats * sizeof(float) + packed_bytes(&b) + 64;
}

bool nb_cpu_conv_block_fusable(const nb_kernel_call *c)
{
    blk b;
    if (!read_call(c, &b))
        return false;
    /* Small images (MobileNetV2's 14x14 and 7x7) only when a segment is one
     * band (its e and d fit in L2 together): cut into bands, their GEMMs
     * shrink to a few columns (5-15% slower than three convolutions at
     * batch 8). Whole, the block saves its passes through memory (batch 8:
     * 1-7% on MobileNetV2's 14x14 blocks of 384 channels and 7x7 ones of
     * 960). At batch 1 a 14x14 image is two segments of 7 rows, one a
     * thread: in quiet times 1% slower for the model than three separate
     * convolutions (3.675 against 3.637 ms, 137 alternating pairs), but
     * each thread then reads what it wrote. This VM's two CPUs are at
     * times placed by the host where a cache line takes 330-360 ns from
     * one to the other (52-70 ns else, a ping-pong); there, three
     * separate convolutions, each split by channels, pass half their data
     * between the threads and the model took 5.94-6.12 ms, fused 4.84-5.02
     * ms. A 7x7 image (segments of 3 and 4 rows) stays unfused: 0.28
     * against 0.18 ms a block. And one item a thread at least, else a
     * thread idles. */
    int64_t threads = nb_get_num_threads();
    plan_bands(&b, threads);
    if ((b.H * b.W < MIN_PIXELS && b.R < b.seg_rows) || b.N * b.segs < threads)
        return false;
    return true;
}

nb_status nb_cpu_conv_block(const nb_kernel_call *c)
{
    blk b;
    if (!read_call(c, &b))
        return nb_error(NB_ERR_ARG, "conv_block: a call it does not cover (shapes, dtypes or "
                                    "inputs), or a CPU without AVX-512F");
    plan_bands(&b, nb_get_num_threads());
    size_t slots = (size_t)b.nslots * b.slot_floats * sizeof(float), packed = packed_bytes(&b);
    char *ws = c->workspace;
    float *mine = NULL;
    if (ws && c->workspace_size >= slots + packed + 64) {
        b.ws = (float *)(ws + (64 - (uintptr_t)ws % 64) % 64);
    } else {
        b.nslots = 1;
        slots = b.slot_floats * sizeof(float);
        mine = aligned_alloc(64, slots + packed);
        if (!mine)
            return nb_error(NB_ERR_ALLOC, "conv_block: out of memory for %zu bytes of scratch",
                            slots + packed);
        b.ws = mine;
    }
    if (packed) {
        b.wp = (float *)((char *)b.ws + slots);
        nb_dconv_pack(&b.dc, b.w1, b.wp);
    }
    atomic_init(&b.busy, 0);
    atomic_init(&b.failed, 0);
    nb_parallel_for(b.N * b.segs, 1, run_items, &b);
    free(mine);
    if (atomic_load(&b.failed))
        return nb_error(NB_ERR_ALLOC, "conv_block: out of memory for %zu bytes of scratch",
                        b.slot_floats * sizeof(float));
    return NB_OK;
}
