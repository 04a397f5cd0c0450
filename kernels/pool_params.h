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

#endif
