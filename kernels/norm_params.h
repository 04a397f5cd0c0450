/* Parameters of the normalisation ops.
 *
 * Forward ops (optional inputs are present when their flag is set, in this order):
 *   BATCH_NORM (x [, gamma] [, beta] [, running_mean, running_var]): x (N, C, ...);
 *     training: normalise with the batch statistics over all dims but 1, and
 *     update the running statistics in place (running = (1 - momentum) running
 *     + momentum * batch, with the unbiased batch variance), as PyTorch does;
 *     eval: normalise with the running statistics (then required).
 *   LAYER_NORM (x [, gamma] [, beta]) and RMS_NORM (x [, gamma]): over the
 *     last naxes dims; gamma/beta have those dims' shape.
 *   GROUP_NORM (x [, gamma] [, beta]): x (N, C, ...), C split into `groups`;
 *     gamma/beta (C).
 * Backward ops (made by autodiff/vjp_norm.c; gamma, when present, is LAST):
 *   BATCH_NORM_GRAD_AFFINE training (x, gy), eval (x, gy, running_mean,
 *     running_var) -> (5, C): row 0 = dgamma = sum gy * xhat, row 1 = dbeta =
 *     sum gy; rows 2-4 = the statistics dx needs (shift k, mean - k, rstd).
 *   BATCH_NORM_GRAD training (x, gy, gaff [, gamma]) with gaff the (5, C) output
 *     above, so that dx needs one pass over x and gy; eval (x, gy,
 *     running_mean, running_var [, gamma]) -> dx. Neither touches the running
 *     statistics.
 *   LAYER_NORM_GRAD, GROUP_NORM_GRAD, RMS_NORM_GRAD (x, gy [, gamma]) -> dx.
 *   LAYER_NORM_GRAD_AFFINE (x, gy) -> (2, *normalized_shape) (dgamma, dbeta);
 *   GROUP_NORM_GRAD_AFFINE (x, gy) -> (2, C); RMS_NORM_GRAD_AFFINE (x, gy) ->
 *     dgamma, of gamma's shape.
 * has_gamma / has_beta / has_running say which optional inputs a node has. */
#ifndef NB_NORM_PARAMS_H
#define NB_NORM_PARAMS_H

#include <stdint.h>

typedef struct nb_norm_params {
    double eps;
    double momentum;
    int training;
    int naxes;
    int64_t groups;
    int has_gamma;
    int has_beta;
    int has_running;
} nb_norm_params;

#endif
