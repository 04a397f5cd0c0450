/* nb_grad: reverse-mode differentiation by graph rewriting.
 *
 * Node ids are a topological order, so walking ids downward from the output
 * visits every consumer before its inputs. Each visited node whose value
 * depends on a wanted node hands its accumulated gradient to its VJP rule,
 * and the rule's results are summed into its inputs' accumulators (a value
 * read by several ops receives the sum of their contributions). */
#include <pthread.h>
#include <stdlib.h>

#include "autodiff/autodiff.h"
#include "autodiff/vjp.h"

static nb_vjp_fn rules[NB_OP_COUNT];
static pthread_once_t rules_once = PTHREAD_ONCE_INIT;

static void rules_init(void)
{
    nb_vjp_register_elementwise(rules);
    nb_vjp_register_shape(rules);
    nb_vjp_register_conv(rules);
    nb_vjp_register_pool(rules);
    nb_vjp_register_norm(rules);
    nb_vjp_register_gather(rules);
}

nb_vjp_fn nb_vjp_rule(nb_op op)
{
    pthread_once(&rules_once, rules_init);
    return ((int)op >= 0 && op < NB_OP_COUNT) ? rules[op] : NULL;
}

nb_vjp_fn nb_vjp_set_rule(nb_op op, nb_vjp_fn fn)
{
    if ((int)op < 0 || op >= NB_OP_COUNT)
        return NULL;
    nb_vjp_fn old = nb_vjp_rule(op);
    rules[op] = fn;
    return old;
}

/* depends[id]: node id is float-valued and its value depends on a wrt node. */
static char *mark_dependents(nb_graph *g, int last, int n, nb_node *const *wrt)
{
    char *dep = calloc((size_t)last + 2, 1);
    if (!dep)
        return NULL;
    for (int i = 0; i < n; i++)
        if (wrt[i]->id <= last)
            dep[wrt[i]->id] = 1;
    for (int id = 0; id <= last; id++) {
        nb_node *nd = g->nodes[id];
        if (dep[id] || !nb_dtype_is_float(nd->dtype))
            continue;
        for (int k = 0; k < nd->n_in && !dep[id]; k++)
            dep[id] = dep[nd->in[k]->id];
    }
    return dep;
}

/* Hand gy of node nd to its rule and accumulate into its inputs. */
static nb_status backprop_node(nb_graph *g, nb_node *nd, nb_node **acc, const char *dep)
{
    nb_vjp_fn rule = nb_vjp_rule(nd->op);
    if (!rule) {
        nb_graph_fail(g, NB_ERR_NO_GRAD, "nb_grad: op '%s' (node '%s', %s %s) has no gradient rule",
                      nb_op_name(nd->op), nd->name, nb_node_shape_str(nd),
                      nb_dtype_name(nd->dtype));
        return NB_ERR_NO_GRAD;
    }
    for (int k = 0; k < nd->n_in; k++) {
        nb_node *x = nd->in[k];
        if (!dep[x->id])
            continue;
        nb_node *gx = rule(g, nd, k, acc[nd->id]);
        if (g->status != NB_OK)
            return g->status;
        if (!gx)
            continue;
        if (gx->dtype != x->dtype || !nb_shape_equal(gx->ndim, gx->shape, x->ndim, x->shape)) {
            nb_graph_fail(g, NB_ERR_SHAPE, "nb_grad: the %s rule gave %s %s for input %d of '%s', which is %s %s",
                          nb_op_name(nd->op), nb_node_shape_str(gx), nb_dtype_name(gx->dtype), k,
                          nd->name, nb_node_shape_str(x), nb_dtype_name(x->dtype));
            return NB_ERR_SHAPE;
        }
        acc[x->id] = acc[x->id] ? nb_add(g, acc[x->id], gx) : gx;
    }
    return g->status;
}

nb_status nb_vjp(nb_graph *g, nb_node *y, nb_node *seed, int n, nb_node *const *wrt,
                 nb_node **grads)
{
    if (!g)
        return nb_error(NB_ERR_ARG, "nb_grad: no graph");
    nb_node *check[2] = {y, seed};
    if (nb_graph_check_inputs(g, NB_OP_COUNT, 2, check) ||
        nb_graph_check_inputs(g, NB_OP_COUNT, n, wrt))
        return nb_error(g->status ? g->status : NB_ERR_STATE, "%s", g->error);
    if (!nb_dtype_is_float(y->dtype) || seed->dtype != y->dtype ||
        !nb_shape_equal(seed->ndim, seed->shape, y->ndim, y->shape)) {
        nb_graph_fail(g, NB_ERR_SHAPE, "nb_grad: output '%s' is %s %s and its seed is %s %s (need equal, float)",
                      y->name, nb_node_shape_str(y), nb_dtype_name(y->dtype),
                      nb_node_shape_str(seed), nb_dtype_name(seed->dtype));
        return g->status;
    }
    int last = y->id;
    char *dep = mark_dependents(g, last, n, wrt);
    nb_node **acc = calloc((size_t)last + 1, sizeof(nb_node *));
    if (!dep || !acc) {
        free(dep);
        free(acc);
        nb_graph_fail(g, NB_ERR_ALLOC, "nb_grad: out of memory for %d nodes", last + 1);
        return g->status;
    }
    acc[last] = seed;
    nb_status st = NB_OK;
    for (int id = last; id >= 0 && st == NB_OK; id--) {
        nb_node *nd = g->nodes[id];
        if (acc[id] && dep[id] && nd->n_in > 0)
            st = backprop_node(g, nd, acc, dep);
    }
    for (int i = 0; i < n && st == NB_OK; i++) {
        nb_node *gx = wrt[i]->id <= last ? acc[wrt[i]->id] : NULL;
        grads[i] = gx ? gx : nb_full_like(g, wrt[i], 0.0);
        st = g->status;
    }
    free(dep);
    free(acc);
    if (st != NB_OK)
        nb_error(st, "%s", g->error);
    return st;
}

nb_status nb_grad(nb_graph *g, nb_node *loss, int n, nb_node *const *wrt, nb_node **grads)
{
    if (!g)
        return nb_error(NB_ERR_ARG, "nb_grad: no graph");
    if (nb_graph_check_inputs(g, NB_OP_COUNT, 1, &loss))
        return nb_error(g->status ? g->status : NB_ERR_STATE, "%s", g->error);
    if (!nb_dtype_is_float(loss->dtype) || nb_node_numel(loss) != 1) {
        nb_graph_fail(g, NB_ERR_SHAPE, "nb_grad: loss '%s' must be a float with one element, got %s %s",
                      loss->name, nb_node_shape_str(loss), nb_dtype_name(loss->dtype));
        return g->status;
    }
    return nb_vjp(g, loss, nb_full_like(g, loss, 1.0), n, wrt, grads);
}
