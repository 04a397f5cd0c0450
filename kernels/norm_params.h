/* Parameters of the normalisation ops. */
#ifndef NB_NORM_PARAMS_H
#define NB_NORM_PARAMS_H

#include <stdint.h>

/* BATCH_NORM (x, gamma, beta, running_mean, running_var): x (N, C, ...);
 *   training: normalise with the batch statistics over all dims but 1, and
 *   update the running statistics in place (running = (1 - momentum) running
 *   + momentum * batch, with the unbiased batch variance), as PyTorch does;
 *   eval: normalise with the running statistics.
 * LAYER_NORM (x, gamma, beta) and RMS_NORM (x, gamma): over the last naxes dims.
 * GROUP_NORM (x, gamma, beta): x (N, C, ...), C split into `groups`.
 * The _GRAD ops give the input gradient, the _GRAD_AFFINE ops the stacked
 * (gamma, beta) gradients; see kernels/norm.c for their inputs. */
typedef struct nb_norm_params {
    double eps;
    double momentum;
    int training;
    int naxes;
    int64_t groups;
} nb_norm_params;

#endif
