/* Builders of the linear algebra ops beyond matmul (kernels/linalg.c). */
#include "graph/graph_impl.h"

#define NAME(op) nb_graph_next_name(g, op)

nb_node *nb_det(nb_graph *g, nb_node *x)
{
    nb_op op = NB_OP_DET;
    if (nb_graph_check_inputs(g, op, 1, &x))
        return g->poison;
    if (x->dtype != NB_F32 && x->dtype != NB_F64)
        return nb_graph_fail(g, NB_ERR_DTYPE, "det '%s': input dtype %s (need f32 or f64)",
                             NAME(op), nb_dtype_name(x->dtype));
    if (x->ndim < 2 || x->shape[x->ndim - 1] != x->shape[x->ndim - 2])
        return nb_graph_fail(g, NB_ERR_SHAPE, "det '%s': input %s is not a (batch of) square matrices (..., n, n)",
                             NAME(op), nb_node_shape_str(x));
    return nb_graph_add_node(g, op, 1, &x, NULL, 0, x->dtype, x->ndim - 2, x->shape);
}
