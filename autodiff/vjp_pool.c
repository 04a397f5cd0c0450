/* VJP rules of pooling and nearest-neighbour upsampling.
 *
 * The gradient of each forward op is its *_GRAD op with the same parameters.
 * AVG_POOL2D_GRAD and UPSAMPLE_NEAREST2D_GRAD are linear in gy, and their
 * adjoints are the forward ops again (avg_pool2d with the same windows and
 * divisors; upsampling by the same scales), so gradients of gradients work
 * through them. MAX_POOL2D_GRAD has no rule: its adjoint with respect to gy
 * would gather at the argmax positions, an op nabla does not have, and
 * nb_grad reports "no gradient rule" for it. */
#include <string.h>

#include "autodiff/vjp.h"

/* A pooling-family node of the given op, parameters and 4-D output shape. */
static nb_node *pool_node(nb_graph *g, nb_op op, int n_in, nb_node *const *in,
                          const nb_pool_params *p, const int64_t *shape)
{
    if (nb_graph_check_inputs(g, op, n_in, in))
        return g->poison;
    return nb_graph_add_node(g, op, n_in, in, p, sizeof *p, in[n_in - 1]->dtype, 4, shape);
}

/* params of y with in_shape set to the shape of the tensor the gradient has */
static nb_pool_params grad_params(const nb_node *y, const int64_t *in_shape)
{
    nb_pool_params p;
    memcpy(&p, y->params, sizeof p);
    memcpy(p.in_shape, in_shape, sizeof p.in_shape);
    return p;
}

/* d max_pool2d(x) = max_pool2d_grad(x, gy): gy routed to each window's argmax */
static nb_node *vjp_max_pool(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    (void)i;
    nb_node *x = y->in[0];
    nb_pool_params p = grad_params(y, x->shape);
    nb_node *in[2] = {x, gy};
    return pool_node(g, NB_OP_MAX_POOL2D_GRAD, 2, in, &p, x->shape);
}

/* d avg_pool2d(x) = avg_pool2d_grad(gy): gy / divisor spread over each window */
static nb_node *vjp_avg_pool(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    (void)i;
    nb_node *x = y->in[0];
    nb_pool_params p = grad_params(y, x->shape);
    return pool_node(g, NB_OP_AVG_POOL2D_GRAD, 1, &gy, &p, x->shape);
}

/* avg_pool2d_grad is linear with adjoint avg_pool2d: d = avg_pool2d(gy') */
static nb_node *vjp_avg_pool_grad(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    (void)i;
    nb_node *src = y->in[0];
    nb_pool_params p = grad_params(y, y->shape);
    return pool_node(g, NB_OP_AVG_POOL2D, 1, &gy, &p, src->shape);
}

/* d upsample(x) = upsample_grad(gy): gy summed over each scale block */
static nb_node *vjp_upsample(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    (void)i;
    nb_node *x = y->in[0];
    nb_pool_params p = grad_params(y, x->shape);
    return pool_node(g, NB_OP_UPSAMPLE_NEAREST2D_GRAD, 1, &gy, &p, x->shape);
}

/* upsample_grad is linear with adjoint upsample: d = upsample(gy') */
static nb_node *vjp_upsample_grad(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    (void)i;
    nb_node *src = y->in[0];
    nb_pool_params p = grad_params(y, y->shape);
    return pool_node(g, NB_OP_UPSAMPLE_NEAREST2D, 1, &gy, &p, src->shape);
}

void nb_vjp_register_pool(nb_vjp_fn *table)
{
    table[NB_OP_MAX_POOL2D] = vjp_max_pool;
    table[NB_OP_AVG_POOL2D] = vjp_avg_pool;
    table[NB_OP_AVG_POOL2D_GRAD] = vjp_avg_pool_grad;
    table[NB_OP_UPSAMPLE_NEAREST2D] = vjp_upsample;
    table[NB_OP_UPSAMPLE_NEAREST2D_GRAD] = vjp_upsample_grad;
    /* MAX_POOL2D_GRAD: no rule (see the top of the file). */
}
