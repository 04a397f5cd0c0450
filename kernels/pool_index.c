/* Index-valued pooling (kernels/pool_params.h): MAX_POOL2D_INDEX, the flat
 * positions of the maxima of ONNX MaxPool (its Indices output), and
 * MAX_UNPOOL, which puts values back at such positions (ONNX MaxUnpool).
 *
 *   MAX_POOL2D_INDEX  y[n, c, oh, ow] = plane*H*W + argmax position of window
 *                     (oh, ow) of plane n*C + c, the window reading
 *                     h = oh*sh - ph + i*dh, w = ow*sw - pw + j*dw inside the
 *                     image, in row-major order (first maximum wins, a NaN
 *                     beats numbers); the position is h*W + w, or w*H + h
 *                     column-major. Threaded over the planes.
 *   MAX_UNPOOL        y = 0; y.flat[idx[i]] = x[i] for i in order.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/threadpool.h"

typedef struct index_plan {
    const nb_pool_index_params *p;
    const void *x;
    int64_t *y;
    int64_t H, W, OH, OW;
    int f64;
} index_plan;

#define DEFINE_ARGMAX(NAME, T)                                                        \
    static void NAME(const index_plan *q, int64_t pl)                                 \
    {                                                                                 \
        const nb_pool_index_params *p = q->p;                                         \
        const T *x = (const T *)q->x + pl * q->H * q->W;                              \
        int64_t *y = q->y + pl * q->OH * q->OW, base = pl * q->H * q->W;              \
        for (int64_t oh = 0; oh < q->OH; oh++)                                        \
            for (int64_t ow = 0; ow < q->OW; ow++) {                                  \
                T best = 0;                                                           \
                int64_t bh = -1, bw = -1;                                             \
                for (int64_t i = 0; i < p->kernel[0]; i++) {                          \
                    int64_t h = oh * p->stride[0] - p->pad[0] + i * p->dilation[0];   \
                    if (h < 0 || h >= q->H)                                           \
                        continue;                                                     \
                    for (int64_t j = 0; j < p->kernel[1]; j++) {                      \
                        int64_t w = ow * p->stride[1] - p->pad[1] + j * p->dilation[1]; \
                        if (w < 0 || w >= q->W)                                       \
                            continue;                                                 \
                        T v = x[h * q->W + w];                                        \
                        if (bh < 0 || (best == best && (v > best || v != v))) {       \
                            best = v;                                                 \
                            bh = h;                                                   \
                            bw = w;                                                   \
                        }                                                             \
                    }                                                                 \
                }                                                                     \
                y[oh * q->OW + ow] = bh < 0 ? -1                                      \
                                     : base + (p->column_major ? bw * q->H + bh       \
                                                               : bh * q->W + bw);     \
            }                                                                         \
    }

DEFINE_ARGMAX(argmax_plane_f32, float)
DEFINE_ARGMAX(argmax_plane_f64, double)

static void argmax_planes(void *ctx, int64_t begin, int64_t end)
{
    const index_plan *q = ctx;
    for (int64_t pl = begin; pl < end; pl++) {
        if (q->f64)
            argmax_plane_f64(q, pl);
        else
            argmax_plane_f32(q, pl);
    }
}

static nb_status max_pool_index(const nb_kernel_call *c)
{
    const char *name = nb_op_name(c->op);
    const nb_pool_index_params *p = c->params;
    const nb_tensor *x = c->in[0];
    nb_tensor *out = c->out;
    if (c->n_in != 1 || !p)
        return nb_error(NB_ERR_ARG, "%s: expects one input and parameters", name);
    if (x->dtype != NB_F32 && x->dtype != NB_F64)
        return nb_error(NB_ERR_DTYPE, "%s: input must be f32 or f64, got %s", name,
                        nb_dtype_name(x->dtype));
    if (out->dtype != NB_I64 || x->ndim != 4 || out->ndim != 4 ||
        out->shape[0] != x->shape[0] || out->shape[1] != x->shape[1])
        return nb_error(NB_ERR_SHAPE, "%s: needs a 4-D input and a 4-D i64 output of the same N, C",
                        name);
    for (int d = 0; d < 2; d++)
        if (p->kernel[d] < 1 || p->stride[d] < 1 || p->dilation[d] < 1 || p->pad[d] < 0)
            return nb_error(NB_ERR_ARG, "%s: kernel %lld, stride %lld, dilation %lld, pad %lld in dim %d (need kernel, stride, dilation >= 1, pad >= 0)",
                            name, (long long)p->kernel[d], (long long)p->stride[d],
                            (long long)p->dilation[d], (long long)p->pad[d], d);
    int64_t planes = x->shape[0] * x->shape[1];
    if (nb_tensor_numel(out) == 0)
        return NB_OK;
    nb_tensor tmp = {0};
    const nb_tensor *use;
    nb_status st = nb_cpu_contiguous_input(x, &tmp, &use);
    if (st != NB_OK)
        return st;
    index_plan q = {p, nb_tensor_data(use), nb_tensor_data(out), x->shape[2], x->shape[3],
                    out->shape[2], out->shape[3], x->dtype == NB_F64};
    int64_t work = q.OH * q.OW * p->kernel[0] * p->kernel[1];
    int64_t grain = 32768 / (work > 0 ? work : 1);
    nb_parallel_for(planes, grain < 1 ? 1 : grain, argmax_planes, &q);
    nb_tensor_release(&tmp);
    return NB_OK;
}

static nb_status max_unpool(const nb_kernel_call *c)
{
    const char *name = nb_op_name(c->op);
    if (c->n_in != 2 || !c->in[0] || !c->in[1])
        return nb_error(NB_ERR_ARG, "%s: expects (x, indices)", name);
    const nb_tensor *x = c->in[0], *ix = c->in[1];
    nb_tensor *out = c->out;
    if (ix->dtype != NB_I64 || nb_tensor_numel(ix) != nb_tensor_numel(x) ||
        out->dtype != x->dtype)
        return nb_error(NB_ERR_ARG, "%s: indices must be i64 with one per input element and the output of the input's dtype",
                        name);
    nb_tensor t0 = {0}, t1 = {0};
    const nb_tensor *ux, *ui;
    nb_status st = nb_cpu_contiguous_input(x, &t0, &ux);
    if (st == NB_OK)
        st = nb_cpu_contiguous_input(ix, &t1, &ui);
    if (st != NB_OK) {
        nb_tensor_release(&t0);
        return st;
    }
    size_t es = nb_dtype_size(x->dtype);
    int64_t n = nb_tensor_numel(x), total = nb_tensor_numel(out);
    const char *src = nb_tensor_data(ux);
    const int64_t *idx = nb_tensor_data(ui);
    char *dst = nb_tensor_data(out);
    if (total > 0)
        memset(dst, 0, (size_t)total * es);
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= total) {
            st = nb_error(NB_ERR_ARG, "%s: index %lld (element %lld) is outside the output of %lld elements",
                          name, (long long)idx[i], (long long)i, (long long)total);
            break;
        }
        memcpy(dst + (size_t)idx[i] * es, src + (size_t)i * es, es);
    }
    nb_tensor_release(&t0);
    nb_tensor_release(&t1);
    return st;
}

/* MAX_POOL2D_INDEX, MAX_UNPOOL (nb_cpu_pool sends them here). */
nb_status nb_cpu_pool_index(const nb_kernel_call *c)
{
    if (!c || !c->in || !c->out || c->n_in < 1 || !c->in[0])
        return nb_error(NB_ERR_ARG, "pool index: expects inputs and an output");
    if (c->op == NB_OP_MAX_POOL2D_INDEX)
        return max_pool_index(c);
    if (c->op == NB_OP_MAX_UNPOOL)
        return max_unpool(c);
    return nb_error(NB_ERR_UNSUPPORTED, "pool index: op %s is not an index pooling op",
                    nb_op_name(c->op));
}
