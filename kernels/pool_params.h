/* Parameters of pooling and resampling (NCHW). */
#ifndef NB_POOL_PARAMS_H
#define NB_POOL_PARAMS_H

#include <stdint.h>

/* MAX_POOL2D / AVG_POOL2D (x): PyTorch semantics, symmetric padding per dim,
 * ceil_mode and count_include_pad (AVG) as in torch.nn.functional.
 * *_GRAD: MAX (x, gy), AVG (gy) -> a tensor of in_shape.
 * UPSAMPLE_NEAREST2D (x): out (N, C, H*scale[0], W*scale[1]); its _GRAD (gy). */
typedef struct nb_pool_params {
    int64_t kernel[2];
    int64_t stride[2];
    int64_t pad[2];
    int ceil_mode;
    int count_include_pad;
    int64_t scale[2];    /* UPSAMPLE_NEAREST2D */
    int64_t in_shape[4]; /* the *_GRAD ops: shape of the pooled input */
} nb_pool_params;

#endif
