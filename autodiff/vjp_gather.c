/* VJP rules of gather, its adjoint and dropout.
 *
 * GATHER and GATHER_GRAD are each other's adjoints (both linear in their
 * float input), so each rule builds the other op and gradients of any order
 * work. DROPOUT is linear too: its rule is DROPOUT of gy with the same params,
 * which in the same run draws the same mask. Indices get no gradient. */
#include <string.h>

#include "autodiff/vjp.h"

/* gather_grad(gy, indices): zeros of x's shape with gy scatter-added along
 * the gather's axis. */
static nb_node *gather_grad(nb_graph *g, nb_node *gy, nb_node *indices,
                            const nb_gather_params *gp)
{
    nb_node *in[2] = {gy, indices};
    if (nb_graph_check_inputs(g, NB_OP_GATHER_GRAD, 2, in))
        return g->poison;
    if (!nb_dtype_is_float(gy->dtype))
        return nb_graph_fail(g, NB_ERR_DTYPE, "gather_grad '%s': gradient has dtype %s, need f32 or f64",
                             nb_graph_next_name(g, NB_OP_GATHER_GRAD), nb_dtype_name(gy->dtype));
    return nb_graph_add_node(g, NB_OP_GATHER_GRAD, 2, in, gp, sizeof *gp, gy->dtype, gp->in_ndim,
                             gp->in_shape);
}

/* d gather(x, idx)[o, k, i] / d x = gather_grad(gy, idx): dx[o, a, i] = sum_{idx[k] = a} gy[o, k, i] */
static nb_node *vjp_gather(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    if (i != 0)
        return NULL;
    return gather_grad(g, gy, y->in[1], (const nb_gather_params *)y->params);
}

/* d gather_grad(u, idx) / d u = gather(gy, idx) along the same axis */
static nb_node *vjp_gather_grad(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    if (i != 0)
        return NULL;
    const nb_gather_params *p = (const nb_gather_params *)y->params;
    return nb_gather(g, gy, p->axis, y->in[1]);
}

/* d dropout(x) = dropout(gy) with the same p and seed: gy * mask / (1 - p) */
static nb_node *vjp_dropout(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    (void)i;
    if (nb_graph_check_inputs(g, NB_OP_DROPOUT, 1, &gy))
        return g->poison;
    return nb_graph_add_node(g, NB_OP_DROPOUT, 1, &gy, y->params, sizeof(nb_dropout_params),
                             gy->dtype, gy->ndim, gy->shape);
}

void nb_vjp_register_gather(nb_vjp_fn *table)
{
    table[NB_OP_GATHER] = vjp_gather;
    table[NB_OP_GATHER_GRAD] = vjp_gather_grad;
    table[NB_OP_DROPOUT] = vjp_dropout;
}
