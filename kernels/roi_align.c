/* ROI_ALIGN (kernels/pool_params.h): ONNX RoiAlign, as ONNX Runtime and the
 * ONNX reference compute it, threaded over the regions.
 *
 * Region r = rois[r] = (x1, y1, x2, y2) on image batch[r]:
 *   start = (x1, y1) * scale - off, end = (x2, y2) * scale - off, off = 0.5
 *   for half_pixel else 0; size = end - start, at least 1 unless half_pixel;
 *   bin = size / (OH, OW); grid = sampling_ratio, or ceil(size / (OH, OW))
 *   when 0, per dim.
 * Bin (oh, ow) samples y = start_y + oh*bin_h + (iy + 0.5) bin_h / grid_h
 * (iy < grid_h), likewise x; a sample with y < -1, y > H, x < -1 or x > W
 * contributes 0; otherwise y, x <= 0 become 0, and the four neighbours
 * (clamped to the last row/column) get the bilinear weights w1..w4.
 *   avg: y = sum over samples of sum_k w_k v_k / max(grid_h*grid_w, 1)
 *   max: y = max over samples of max_k w_k v_k
 * Coordinates are computed in the input's precision, as ONNX Runtime does.
 */
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu.h"
#include "kernels/threadpool.h"

#define ROI_MAX_SAMPLES (1 << 20) /* per bin: beyond, a region is refused */

typedef struct roi_plan {
    const nb_roi_align_params *p;
    const void *x, *rois;
    const int64_t *batch;
    void *y;
    int64_t N, C, H, W, OH, OW;
} roi_plan;

#define DEFINE_ROI(NAME, T)                                                              \
    static void NAME(void *ctx, int64_t begin, int64_t end)                              \
    {                                                                                    \
        const roi_plan *q = ctx;                                                         \
        const nb_roi_align_params *p = q->p;                                             \
        const T *rois = q->rois, *xall = q->x;                                           \
        T *yall = q->y;                                                                  \
        int64_t H = q->H, W = q->W, OH = q->OH, OW = q->OW;                              \
        for (int64_t r = begin; r < end; r++) {                                          \
            const T *b = rois + r * 4;                                                   \
            T off = p->half_pixel ? (T)0.5 : (T)0, sc = (T)p->spatial_scale;             \
            T sw = b[0] * sc - off, sh = b[1] * sc - off;                                \
            T rw = b[2] * sc - off - sw, rh = b[3] * sc - off - sh;                      \
            if (!p->half_pixel) {                                                        \
                rw = rw > (T)1 ? rw : (T)1;                                              \
                rh = rh > (T)1 ? rh : (T)1;                                              \
            }                                                                            \
            T bh = rh / (T)OH, bw = rw / (T)OW;                                          \
            int64_t gh = p->sampling_ratio > 0 ? p->sampling_ratio : (int64_t)ceil(rh / (T)OH); \
            int64_t gw = p->sampling_ratio > 0 ? p->sampling_ratio : (int64_t)ceil(rw / (T)OW); \
            if (gh < 0)                                                                  \
                gh = 0;                                                                  \
            if (gw < 0)                                                                  \
                gw = 0;                                                                  \
            T count = (T)(gh * gw > 1 ? gh * gw : 1);                                    \
            for (int64_t c = 0; c < q->C; c++) {                                         \
                const T *x = xall + (q->batch[r] * q->C + c) * H * W;                    \
                T *y = yall + (r * q->C + c) * OH * OW;                                  \
                for (int64_t oh = 0; oh < OH; oh++)                                      \
                    for (int64_t ow = 0; ow < OW; ow++) {                                \
                        T acc = 0;                                                       \
                        int any = 0;                                                     \
                        for (int64_t iy = 0; iy < gh; iy++) {                            \
                            T yy = sh + (T)oh * bh + ((T)iy + (T)0.5) * bh / (T)gh;      \
                            for (int64_t ix = 0; ix < gw; ix++) {                        \
                                T xx = sw + (T)ow * bw + ((T)ix + (T)0.5) * bw / (T)gw;  \
                                T t[4] = {0, 0, 0, 0};                                   \
                                if (!(yy < (T)-1 || yy > (T)H || xx < (T)-1 || xx > (T)W)) { \
                                    T fy = yy <= 0 ? 0 : yy, fx = xx <= 0 ? 0 : xx;       \
                                    int64_t y0 = (int64_t)fy, x0 = (int64_t)fx, y1, x1;  \
                                    if (y0 >= H - 1) {                                   \
                                        y0 = y1 = H - 1;                                 \
                                        fy = (T)y0;                                      \
                                    } else                                               \
                                        y1 = y0 + 1;                                     \
                                    if (x0 >= W - 1) {                                   \
                                        x0 = x1 = W - 1;                                 \
                                        fx = (T)x0;                                      \
                                    } else                                               \
                                        x1 = x0 + 1;                                     \
                                    T ly = fy - (T)y0, lx = fx - (T)x0;                  \
                                    T hy = (T)1 - ly, hx = (T)1 - lx;                    \
                                    t[0] = hy * hx * x[y0 * W + x0];                     \
                                    t[1] = hy * lx * x[y0 * W + x1];                     \
                                    t[2] = ly * hx * x[y1 * W + x0];                     \
                                    t[3] = ly * lx * x[y1 * W + x1];                     \
                                }                                                        \
                                if (p->max_mode) {                                       \
                                    T m = t[0];                                          \
                                    for (int k = 1; k < 4; k++)                          \
                                        m = t[k] > m ? t[k] : m;                         \
                                    acc = !any || m > acc ? m : acc;                     \
                                    any = 1;                                             \
                                } else {                                                 \
                                    acc += t[0] + t[1] + t[2] + t[3];                    \
                                }                                                        \
                            }                                                            \
                        }                                                                \
                        y[oh * OW + ow] = p->max_mode ? acc : acc / count;               \
                    }                                                                    \
            }                                                                            \
        }                                                                                \
    }

DEFINE_ROI(roi_f32, float)
DEFINE_ROI(roi_f64, double)

nb_status nb_cpu_roi_align(const nb_kernel_call *c)
{
    const char *name = nb_op_name(c->op);
    const nb_roi_align_params *p = c->params;
    if (!c->in || !c->out || !p || c->n_in != 3 || !c->in[0] || !c->in[1] || !c->in[2])
        return nb_error(NB_ERR_ARG, "%s: expects (x, rois, batch_indices), an output and parameters",
                        name);
    const nb_tensor *x = c->in[0], *rois = c->in[1], *bi = c->in[2];
    nb_tensor *out = c->out;
    nb_dtype dt = x->dtype;
    if ((dt != NB_F32 && dt != NB_F64) || rois->dtype != dt || out->dtype != dt ||
        bi->dtype != NB_I64)
        return nb_error(NB_ERR_DTYPE, "%s: x, rois and the output must share a float dtype and batch_indices be i64",
                        name);
    if (x->ndim != 4 || rois->ndim != 2 || rois->shape[1] != 4 || bi->ndim != 1 ||
        bi->shape[0] != rois->shape[0] || out->ndim != 4 || out->shape[0] != rois->shape[0] ||
        out->shape[1] != x->shape[1])
        return nb_error(NB_ERR_SHAPE, "%s: needs x (N, C, H, W), rois (R, 4), batch_indices (R) and an output (R, C, OH, OW)",
                        name);
    if (p->sampling_ratio < 0)
        return nb_error(NB_ERR_ARG, "%s: sampling_ratio %lld must be >= 0", name,
                        (long long)p->sampling_ratio);
    if (nb_tensor_numel(out) == 0)
        return NB_OK;
    if (x->shape[2] < 1 || x->shape[3] < 1)
        return nb_error(NB_ERR_SHAPE, "%s: the image is empty", name);
    nb_tensor tmp[3] = {{0}, {0}, {0}};
    const nb_tensor *use[3];
    nb_status st = NB_OK;
    for (int i = 0; i < 3 && st == NB_OK; i++)
        st = nb_cpu_contiguous_input(c->in[i], &tmp[i], &use[i]);
    if (st == NB_OK) {
        const int64_t *batch = nb_tensor_data(use[2]);
        for (int64_t r = 0; r < rois->shape[0] && st == NB_OK; r++) {
            if (batch[r] < 0 || batch[r] >= x->shape[0]) {
                st = nb_error(NB_ERR_ARG, "%s: batch index %lld of region %lld is outside [0, %lld)",
                              name, (long long)batch[r], (long long)r, (long long)x->shape[0]);
                break;
            }
            /* finite corners and a bounded number of samples per bin */
            double v[4], size[2], per = 1;
            for (int k = 0; k < 4; k++)
                v[k] = (dt == NB_F32 ? (double)((const float *)nb_tensor_data(use[1]))[r * 4 + k]
                                     : ((const double *)nb_tensor_data(use[1]))[r * 4 + k]) *
                       p->spatial_scale;
            size[0] = v[3] - v[1], size[1] = v[2] - v[0];
            for (int k = 0; k < 2; k++) {
                double grid = p->sampling_ratio > 0
                                  ? (double)p->sampling_ratio
                                  : ceil((p->half_pixel ? size[k] : fmax(size[k], 1.0)) /
                                         (double)out->shape[2 + k]);
                per *= grid > 1 ? grid : 1;
            }
            if (!isfinite(v[0] + v[1] + v[2] + v[3]) || !(per <= ROI_MAX_SAMPLES))
                st = nb_error(NB_ERR_ARG, "%s: region %lld (%g, %g, %g, %g scaled) is not finite or needs %g samples per bin (at most %d)",
                              name, (long long)r, v[0], v[1], v[2], v[3], per, ROI_MAX_SAMPLES);
        }
    }
    if (st == NB_OK) {
        roi_plan q = {p, nb_tensor_data(use[0]), nb_tensor_data(use[1]), nb_tensor_data(use[2]),
                      nb_tensor_data(out), x->shape[0], x->shape[1], x->shape[2], x->shape[3],
                      out->shape[2], out->shape[3]};
        int64_t per = q.C * q.OH * q.OW * 4;
        int64_t grain = 32768 / (per > 0 ? per : 1);
        nb_parallel_for(rois->shape[0], grain < 1 ? 1 : grain, dt == NB_F32 ? roi_f32 : roi_f64,
                        &q);
    }
    for (int i = 0; i < 3; i++)
        nb_tensor_release(&tmp[i]);
    return st;
}
