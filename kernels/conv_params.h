/* Parameters of the convolution ops (NCHW, weights OIHW). */
#ifndef NB_CONV_PARAMS_H
#define NB_CONV_PARAMS_H

#include <stdint.h>

/* CONV2D (x, w[, bias]): x (N, C_in, H, W), w (C_out, C_in/groups, kh, kw).
 * CONV_TRANSPOSE2D (x, w[, bias]): x (N, C_in, H, W), w (C_in, C_out/groups, kh, kw),
 *   the adjoint of CONV2D with the same parameters, plus output_padding.
 * CONV2D_GRAD_WEIGHT (x, gy): the weight gradient of CONV2D; the output has
 *   weight_shape.
 * pad_begin is {top, left}, pad_end {bottom, right}; stride and dilation
 * >= 1, pad_begin and output_padding >= 0. The builders keep pad_end >= 0;
 * gradient nodes may make it negative (the last rows/columns of the input
 * are then not read), as long as the padded input still holds the kernel.
 * CONV_TRANSPOSE2D's output is (H-1)*stride - pad_begin - pad_end +
 * dilation*(k-1) + 1 + output_padding per spatial dim.
 * CONV2D with clamp set clamps every output (bias added) to [clamp_min,
 * clamp_max] (a fused ReLU or ReLU6); the other ops ignore it. */
typedef struct nb_conv_params {
    int64_t stride[2];
    int64_t pad_begin[2];
    int64_t pad_end[2];
    int64_t dilation[2];
    int64_t output_padding[2]; /* CONV_TRANSPOSE2D */
    int64_t groups;
    int64_t weight_shape[4];   /* CONV2D_GRAD_WEIGHT */
    int64_t clamp;             /* CONV2D: 1 to clamp, else 0 */
    float clamp_min, clamp_max;
} nb_conv_params;

/* CONV_ADD (x, w[, bias], r): clamp(CONV2D(x, w, bias) + r), r of the
 * output's shape: a residual connection (ResNet's Add, then Relu) fused
 * into the convolution by compile (graph/fuse.c), with the clamp of these
 * params applied after the add (a CONV2D's clamp comes before it). f32. */

/* CONV_BLOCK: the inverted-residual block of mobile networks (MobileNetV2,
 * EfficientNet without squeeze-excite) as one kernel call, f32 NCHW. It is
 * never a graph node: compile fuses the three CONV2Ds (and the ADD) of a
 * block into one tape entry when nothing else reads their results
 * (graph/fuse.c), so the expanded tensors live only band by band in cache.
 *   e = clamp1(b1 + conv(x, w1))      expand == 1: 1x1, stride 1, no padding;
 *                                     expand == 2: a conv of few input
 *                                     channels (a network's first layer:
 *                                     kernel ek, stride es, pad_begin ep,
 *                                     output eout); expand == 0: e = x
 *   d = clamp2(bd + depthwise3x3(e, wd))      stride, pad_begin {top, left}
 *                                             0 or 1, zero padding
 *   y = clamp3(b3 + w3 d) [+ x]               1x1; + x when residual
 * Inputs in order: x, [w1, [b1]], wd, [bd], w3, [b3]; the has_* flags say
 * which are there. The output's shape gives the depthwise output size. */
typedef struct nb_conv_block_params {
    int expand, has_b1, has_bd, has_b3, residual;
    int64_t stride;
    int64_t pad[2];
    int clamp[3];
    float lo[3], hi[3];
    int64_t ek[2], es[2], ep[2], eout[2]; /* expand == 2 */
} nb_conv_block_params;

#endif
