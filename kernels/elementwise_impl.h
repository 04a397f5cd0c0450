/* Internal to kernels/elementwise*.c: the strided, broadcasting loop driver
 * shared by the unary, cast, binary and where kernels. Not installed. */
#ifndef NB_ELEMENTWISE_IMPL_H
#define NB_ELEMENTWISE_IMPL_H

#include <stdint.h>

#include "kernels/backend.h"
#include "tensor/tensor.h"

#define NB_EW_UNUSED __attribute__((unused))

#define NB_EW_MAX_OPS 4 /* the output + up to 3 inputs (where) */

/* Elements per thread-pool chunk: cheap ops and transcendental ones. */
#define NB_EW_GRAIN 32768
#define NB_EW_GRAIN_HEAVY 8192

/* One run of n elements along the innermost loop dim: p[k] points at operand
 * k's first element (k = 0 is the output), s[k] is its stride in elements
 * (0 for a broadcast input). Inner functions switch on the stride pattern
 * once, outside their element loop. */
typedef void (*nb_ew_inner_fn)(int64_t n, char *const *p, const int64_t *s, const void *params);

/* Operands laid over the output's index space: every input's strides are
 * right-aligned to the output dims (0 on broadcast dims), size-1 dims are
 * dropped and adjacent dims that are contiguous for every operand merged. */
typedef struct nb_ew_plan {
    int nops;
    int ndim; /* >= 1 */
    int64_t numel;
    int64_t shape[NB_MAX_DIMS];
    int64_t stride[NB_EW_MAX_OPS][NB_MAX_DIMS]; /* in elements */
    char *base[NB_EW_MAX_OPS];
    int64_t esize[NB_EW_MAX_OPS];
} nb_ew_plan;

/* t[0] is the output; t[1..] broadcast to its shape (checked by the caller).
 * Only for numel > 0. */
void nb_ew_plan_init(nb_ew_plan *pl, int nops, const nb_tensor *const *t);

/* Run fn over the whole plan, split on the thread pool in chunks of at least
 * `grain` elements (inline when numel <= grain). */
void nb_ew_run(const nb_ew_plan *pl, nb_ew_inner_fn fn, const void *params, int64_t grain);

/* The kernel call holds n_in non-NULL inputs and an output, all usable CPU
 * tensors (valid dtype, ndim, non-negative dims, a buffer when not empty; the
 * output has no stride-0 dim of size > 1). Errors name the op. */
nb_status nb_ew_check_call(const nb_kernel_call *c, int n_in);

/* The output shape equals the broadcast of the n input shapes. */
nb_status nb_ew_check_broadcast(nb_op op, int n, const nb_tensor *const *in, const nb_tensor *out);

#endif
