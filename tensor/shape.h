/* Shape arithmetic shared by tensors, kernels and the graph builder. */
#ifndef NB_SHAPE_H
#define NB_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NB_MAX_DIMS 8

/* Product of the dims (1 for ndim == 0). */
int64_t nb_shape_numel(int ndim, const int64_t *shape);

/* Row-major contiguous strides, in elements. */
void nb_shape_strides(int ndim, const int64_t *shape, int64_t *strides);

bool nb_shape_equal(int na, const int64_t *a, int nb, const int64_t *b);

/* NumPy broadcasting of two shapes into out (ndim into *nout).
 * Returns false if they do not broadcast. */
bool nb_shape_broadcast(int na, const int64_t *a, int nb, const int64_t *b,
                        int *nout, int64_t *out);

/* Format "(2,3,4)" into buf (always NUL-terminated); returns buf.
 * A 0-d shape prints as "()". */
char *nb_shape_str(int ndim, const int64_t *shape, char *buf, size_t size);

/* Normalise a possibly negative axis against ndim; returns -1 if out of range. */
int nb_axis_norm(int axis, int ndim);

#endif
