/* Parameters of gather and dropout. */
#ifndef NB_GATHER_PARAMS_H
#define NB_GATHER_PARAMS_H

#include <stdint.h>

#include "tensor/shape.h"

/* GATHER (x, indices): NumPy's take along `axis`: out shape is
 * x.shape[:axis] + indices.shape + x.shape[axis+1:]; indices i32/i64, negative
 * ones count from the end, others out of range fail naming the index.
 * GATHER_GRAD (gy, indices): zeros of in_shape with gy scatter-added at the
 * gathered positions (the adjoint of GATHER). */
typedef struct nb_gather_params {
    int axis;
    int in_ndim;
    int64_t in_shape[NB_MAX_DIMS]; /* GATHER_GRAD */
} nb_gather_params;

/* DROPOUT (x): zero each element with probability p, scale the rest by
 * 1 / (1 - p). The mask is a pure function of (seed, the call's run_index,
 * element index) drawn with Philox, so a run is repeatable and the backward
 * (DROPOUT of gy with the same params) meets the same mask. */
typedef struct nb_dropout_params {
    double p;
    uint64_t seed;
} nb_dropout_params;

#endif
