/* A fully connected layer, laid out as PyTorch's nn.Linear so that state
 * dicts carry over: weight (out, in), bias (out,), y = x W^T + b. */
#ifndef NB_LINEAR_H
#define NB_LINEAR_H

#include <stdbool.h>
#include <stdint.h>

#include "graph/graph.h"
#include "tensor/rng.h"

typedef struct nb_linear {
    nb_node *weight; /* (out, in) */
    nb_node *bias;   /* (out,), or NULL without bias */
    int64_t in, out;
} nb_linear;

/* Make the parameters "<name>.weight" and "<name>.bias" (inside the graph's
 * current scope). Zero-filled until nb_linear_reset. Errors are the graph's. */
nb_status nb_linear_make(nb_graph *g, const char *name, int64_t in, int64_t out, bool bias,
                         nb_dtype dt, nb_linear *l);

/* nn.Linear's default init: weight kaiming_uniform(a = sqrt(5)), which is
 * U(-1/sqrt(in), 1/sqrt(in)), then bias U(-1/sqrt(in), 1/sqrt(in)). */
nb_status nb_linear_reset(const nb_linear *l, nb_rng *r);

/* x (..., in) -> x W^T + b (..., out). */
nb_node *nb_linear_apply(nb_graph *g, const nb_linear *l, nb_node *x);

#endif
