/* Parameters of pooling and resampling (NCHW). */
#ifndef NB_POOL_PARAMS_H
#define NB_POOL_PARAMS_H

#include <stdint.h>

/* MAX_POOL2D / AVG_POOL2D (x): PyTorch semantics, symmetric padding per dim,
 * ceil_mode and count_include_pad (AVG) as in torch.nn.functional.
 * *_GRAD: MAX (x, gy), AVG (gy) -> a tensor of in_shape.
 * UPSAMPLE_NEAREST2D (x): out (N, C, H*scale[0], W*scale[1]); its _GRAD (gy).
 * adaptive (AVG_POOL2D and its _GRAD only): PyTorch's adaptive_avg_pool2d,
 * window i of a dim of size H pooled to `out` covers
 * [floor(i*H/out), ceil((i+1)*H/out)); kernel, stride, pad, ceil_mode and
 * count_include_pad are then unused (the output shape gives `out`). */
typedef struct nb_pool_params {
    int64_t kernel[2];
    int64_t stride[2];
    int64_t pad[2];
    int ceil_mode;
    int count_include_pad;
    int64_t scale[2];    /* UPSAMPLE_NEAREST2D */
    int64_t in_shape[4]; /* the *_GRAD ops: shape of the pooled input */
    int adaptive;        /* AVG_POOL2D(_GRAD): adaptive windows (see above) */
} nb_pool_params;

/* PyTorch's pooled size of one dim (dilation 1):
 *   out = floor((in + 2 pad - kernel [+ stride - 1 if ceil]) / stride) + 1,
 * and in ceil mode the last window must start inside the input or the left
 * padding: if (out - 1) * stride >= in + pad, out -= 1.
 * Returns a value < 1 when the kernel does not fit the padded input. */
static inline int64_t nb_pool_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                                       int ceil_mode)
{
    int64_t num = in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0);
    if (num < 0)
        return 0;
    int64_t out = num / stride + 1;
    if (ceil_mode && (out - 1) * stride >= in + pad)
        out--;
    return out;
}

/* MAX_POOL2D_INDEX (x) -> i64 (N, C, OH, OW), the output size given by the
 * output shape: ONNX MaxPool's Indices. Window o of a dim reads the input at
 * o*stride - pad + t*dilation, t < kernel, where inside [0, in) (pad is the
 * leading padding; the trailing one only sets the output size). The index is
 * of the window's first maximum (a NaN beats every number; the first NaN
 * wins), flat over the whole of x: plane*H*W + h*W + w, or plane*H*W + w*H + h
 * when column_major (ONNX storage_order 1); -1 for a window with no input.
 * MAX_UNPOOL (x, indices i64 of x's shape) -> y of any shape: zeros, then
 * y.flat[indices[i]] = x[i] in order (a later duplicate wins); an index
 * outside [0, numel(y)) is an error naming it. No parameters. */
typedef struct nb_pool_index_params {
    int64_t kernel[2];
    int64_t stride[2];
    int64_t pad[2];
    int64_t dilation[2];
    int column_major;
} nb_pool_index_params;

/* ROI_ALIGN (x (N, C, H, W), rois (R, 4) of x's dtype, batch i64 (R)) ->
 * (R, C, OH, OW), ONNX RoiAlign: roi r = (x1, y1, x2, y2) * spatial_scale,
 * minus 0.5 when half_pixel; its size is at least 1 unless half_pixel. Bin
 * (oh, ow) averages (or takes the max of) sampling_ratio^2 bilinear samples,
 * or ceil(roi size / output size) per dim when sampling_ratio is 0; a sample
 * outside (-1, size) is 0, one in (-1, 0] reads 0. In max mode the max is
 * over the samples' weighted corner terms, as ONNX Runtime computes it. */
typedef struct nb_roi_align_params {
    double spatial_scale;
    int64_t sampling_ratio;
    int max_mode;
    int half_pixel;
} nb_roi_align_params;

#endif
