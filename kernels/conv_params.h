/* Parameters of the convolution ops (NCHW, weights OIHW). */
#ifndef NB_CONV_PARAMS_H
#define NB_CONV_PARAMS_H

#include <stdint.h>

/* CONV2D (x, w[, bias]): x (N, C_in, H, W), w (C_out, C_in/groups, kh, kw).
 * CONV_TRANSPOSE2D (x, w[, bias]): x (N, C_in, H, W), w (C_in, C_out/groups, kh, kw),
 *   the adjoint of CONV2D with the same parameters, plus output_padding.
 * CONV2D_GRAD_WEIGHT (x, gy): the weight gradient of CONV2D; the output has
 *   weight_shape.
 * pad_begin is {top, left}, pad_end {bottom, right}; all values >= 0,
 * stride and dilation >= 1. */
typedef struct nb_conv_params {
    int64_t stride[2];
    int64_t pad_begin[2];
    int64_t pad_end[2];
    int64_t dilation[2];
    int64_t output_padding[2]; /* CONV_TRANSPOSE2D */
    int64_t groups;
    int64_t weight_shape[4];   /* CONV2D_GRAD_WEIGHT */
} nb_conv_params;

#endif
