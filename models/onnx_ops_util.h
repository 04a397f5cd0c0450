/* Helpers shared by the ONNX converter family files (models/onnx_ops_*.c),
 * on top of onnx_convert.h. Private to those files.
 *
 * The small ones are static inline here; the rounding compositions, which
 * the math and quantization families both need, live in onnx_ops_math.c.
 */
#ifndef NB_ONNX_OPS_UTIL_H
#define NB_ONNX_OPS_UTIL_H

#include <string.h>

#include "models/onnx_convert.h"

/* Declare nb_node *v = input i of the node c being converted, returning
 * from the converter (the failure already recorded) when it is absent. */
#define IN(v, i)                                                                 \
    nb_node *v = onnx_in(c, (i));                                                \
    if (!v)                                                                      \
        return NB_ERR_ARG;

/* Set output i to y, or report the graph's (sticky) error for this node. */
static inline nb_status onnx_finish(onnx_node_ctx *c, int i, nb_node *y)
{
    nb_status s = nb_graph_status(c->g);
    if (s != NB_OK)
        return onnx_fail(c, s, "%s", nb_graph_error(c->g));
    return onnx_set_out(c, i, y);
}

/* Whether the node is op_type name (for converters shared by several ops). */
static inline bool onnx_is_op(const onnx_node_ctx *c, const char *name)
{
    return strcmp(c->node->op_type, name) == 0;
}

/* A constant node holding a copy of data. */
static inline nb_node *onnx_const_node(nb_graph *g, nb_dtype dt, int ndim, const int64_t *shape,
                                       const void *data)
{
    nb_tensor t = {0};
    if (nb_tensor_from_data(&t, dt, ndim, shape, data) != NB_OK)
        return nb_graph_fail(g, NB_ERR_ALLOC, "onnx constant: %s", nb_last_error());
    nb_node *n = nb_constant(g, &t);
    nb_tensor_release(&t);
    return n;
}

/* A scalar input known at import time, as a double. */
static inline nb_status onnx_in_scalar(onnx_node_ctx *c, int i, double *v)
{
    const nb_tensor *t = onnx_in_const(c, i);
    if (!t || nb_tensor_numel(t) != 1)
        return onnx_fail(c, NB_ERR_UNSUPPORTED,
                         "input %d must be a single value known at import time", i);
    *v = nb_tensor_get_flat(t, 0);
    return NB_OK;
}

/* Shape (1, ..., n, ..., 1) of rank r with n at axis. */
static inline void onnx_axis_shape(int r, int axis, int64_t n, int64_t *shape)
{
    for (int d = 0; d < r; d++)
        shape[d] = d == axis ? n : 1;
}

/* u8 and bool have no arithmetic kernels: i32 holds every value. */
static inline nb_node *onnx_widen(nb_graph *g, nb_node *x)
{
    nb_dtype d = nb_node_dtype(x);
    return d == NB_U8 || d == NB_BOOL ? nb_cast(g, x, NB_I32) : x;
}

/* floor of a float node through truncation (a cast to i64); values too large
 * to have a fraction, inf and NaN pass through unchanged. */
nb_node *onnx_floor_of(nb_graph *g, nb_node *x);
/* round half to even of a float node, from onnx_floor_of. */
nb_node *onnx_round_of(nb_graph *g, nb_node *x);

/* ---- outputs, inputs and windows of Conv and the pools (onnx_ops_window.c) ---- */

/* Whether output i is wanted (present and named). */
bool onnx_out_wanted(const onnx_node_ctx *c, int i);
/* Input i as a node; NULL after onnx_fail ("input i is required") when absent. */
nb_node *onnx_need_in(onnx_node_ctx *c, int i);
/* The auto_pad attribute: 0 NOTSET, 1 SAME_UPPER, 2 SAME_LOWER, 3 VALID;
 * -1 after onnx_fail for any other value. */
int onnx_auto_pad(onnx_node_ctx *c);

/* Window geometry of a 1-D, 2-D or 3-D spatial op (nd dims): input size,
 * kernel, stride, dilation, begin and end pads, output size. */
typedef struct onnx_window {
    int nd;
    int64_t in[3], k[3], s[3], d[3], pb[3], pe[3], out[3];
} onnx_window;

/* A per-dim ints attribute of nd values into v (default def); false after
 * onnx_fail when its length is wrong or a value is below min. */
bool onnx_dims_attr(onnx_node_ctx *c, const char *name, int nd, int64_t def, int64_t min,
                    int64_t *v);
/* The spatial rank of x (rank - 2), or -1 after onnx_fail unless it is
 * 1..max_nd; max_nd is 2 (Conv) or 3 (the pools). */
int onnx_spatial_rank(onnx_node_ctx *c, nb_node *x, int max_nd);
/* Read strides, dilations, pads and auto_pad of a conv or pool into w (nd, k
 * and in already set) and the output size (ceil for pools in ceil mode);
 * false after onnx_fail. */
bool onnx_read_window(onnx_node_ctx *c, onnx_window *w, bool ceil_mode);

#endif
