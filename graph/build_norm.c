/* Builders of the normalisation ops (graph/nn.h): batch, layer, group and
 * RMS norm. Each checks dtypes and the shapes of the optional affine and
 * running-statistics tensors, then makes one fused node whose inputs are
 * listed in kernels/norm_params.h (optional inputs are left out and flagged). */
#include <math.h>

#include "graph/graph_impl.h"

#define NAME(op) nb_graph_next_name(g, op)

/* x must be f32/f64; a non-NULL t must have x's dtype and exactly the shape
 * (ndim, shape). what names t in the message. */
static bool check_aux(nb_graph *g, nb_op op, nb_node *x, nb_node *t, const char *what, int ndim,
                      const int64_t *shape)
{
    if (!t)
        return true;
    char want[96];
    if (t->dtype != x->dtype) {
        nb_graph_fail(g, NB_ERR_DTYPE, "%s '%s': %s '%s' is %s, x is %s", nb_op_name(op), NAME(op),
                      what, t->name, nb_dtype_name(t->dtype), nb_dtype_name(x->dtype));
        return false;
    }
    if (!nb_shape_equal(t->ndim, t->shape, ndim, shape)) {
        nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': %s '%s' has shape %s, expected %s for x %s",
                      nb_op_name(op), NAME(op), what, t->name, nb_node_shape_str(t),
                      nb_shape_str(ndim, shape, want, sizeof(want)), nb_node_shape_str(x));
        return false;
    }
    return true;
}

/* Common checks: inputs valid, x float, eps usable. in[0] = x. */
static bool check_common(nb_graph *g, nb_op op, int n, nb_node *const *in, double eps,
                         int min_ndim)
{
    if (nb_graph_check_inputs(g, op, n, in))
        return false;
    nb_node *x = in[0];
    if (x->dtype != NB_F32 && x->dtype != NB_F64) {
        nb_graph_fail(g, NB_ERR_DTYPE, "%s '%s': x %s is %s (need f32 or f64)", nb_op_name(op),
                      NAME(op), nb_node_shape_str(x), nb_dtype_name(x->dtype));
        return false;
    }
    if (!(eps >= 0) || !isfinite(eps)) {
        nb_graph_fail(g, NB_ERR_ARG, "%s '%s': eps %g must be finite and >= 0", nb_op_name(op),
                      NAME(op), eps);
        return false;
    }
    if (x->ndim < min_ndim) {
        nb_graph_fail(g, NB_ERR_SHAPE, "%s '%s': x %s needs at least %d dims", nb_op_name(op),
                      NAME(op), nb_node_shape_str(x), min_ndim);
        return false;
    }
    return true;
}

/* Gather the non-NULL pointers of in[0..n) into out; returns their count. */
static int compact(int n, nb_node *const *in, nb_node **out)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (in[i])
            out[k++] = in[i];
    return k;
}

nb_node *nb_batch_norm(nb_graph *g, nb_node *x, nb_node *gamma, nb_node *beta,
                       nb_node *running_mean, nb_node *running_var, bool training,
                       double momentum, double eps)
{
    const nb_op op = NB_OP_BATCH_NORM;
    nb_node *all[5] = {x, gamma, beta, running_mean, running_var}, *in[5];
    int n = x ? compact(5, all, in) : 1;
    if (!x)
        in[0] = NULL; /* reported by the input check */
    if (!check_common(g, op, n, in, eps, 2))
        return g->poison;
    if (!running_mean != !running_var)
        return nb_graph_fail(g, NB_ERR_ARG, "batch_norm '%s': give both running_mean and "
                             "running_var, or neither", NAME(op));
    if (!training && !running_mean)
        return nb_graph_fail(g, NB_ERR_ARG, "batch_norm '%s': eval mode needs running_mean and "
                             "running_var", NAME(op));
    if (training && running_mean &&
        (running_mean->op != NB_OP_STATE || running_var->op != NB_OP_STATE))
        return nb_graph_fail(g, NB_ERR_ARG, "batch_norm '%s': training updates running_mean "
                             "'%s' and running_var '%s' in place, so they must be STATE nodes "
                             "(nb_state)", NAME(op), running_mean->name, running_var->name);
    if (!isfinite(momentum))
        return nb_graph_fail(g, NB_ERR_ARG, "batch_norm '%s': momentum %g is not finite",
                             NAME(op), momentum);
    int64_t C = x->shape[1];
    if (!check_aux(g, op, x, gamma, "gamma", 1, &C) || !check_aux(g, op, x, beta, "beta", 1, &C) ||
        !check_aux(g, op, x, running_mean, "running_mean", 1, &C) ||
        !check_aux(g, op, x, running_var, "running_var", 1, &C))
        return g->poison;
    if (training && nb_node_numel(x) / (C ? C : 1) <= 1)
        return nb_graph_fail(g, NB_ERR_SHAPE, "batch_norm '%s': Expected more than 1 value per "
                             "channel when training, got input size %s", NAME(op),
                             nb_node_shape_str(x));
    nb_norm_params p = {.eps = eps, .momentum = momentum, .training = training,
                        .has_gamma = gamma != NULL, .has_beta = beta != NULL,
                        .has_running = running_mean != NULL};
    return nb_graph_add_node(g, op, n, in, &p, sizeof(p), x->dtype, x->ndim, x->shape);
}

/* layer_norm and rms_norm: over the last naxes dims */
static nb_node *row_norm(nb_graph *g, nb_op op, nb_node *x, int naxes, nb_node *gamma,
                         nb_node *beta, double eps)
{
    nb_node *all[3] = {x, gamma, beta}, *in[3];
    int n = x ? compact(3, all, in) : 1;
    if (!x)
        in[0] = NULL;
    if (!check_common(g, op, n, in, eps, 1))
        return g->poison;
    if (naxes < 1 || naxes > x->ndim)
        return nb_graph_fail(g, NB_ERR_ARG, "%s '%s': naxes %d out of range for x %s (1..%d)",
                             nb_op_name(op), NAME(op), naxes, nb_node_shape_str(x), x->ndim);
    const int64_t *ns = x->shape + x->ndim - naxes;
    if (!check_aux(g, op, x, gamma, "gamma", naxes, ns) ||
        !check_aux(g, op, x, beta, "beta", naxes, ns))
        return g->poison;
    nb_norm_params p = {.eps = eps, .naxes = naxes, .has_gamma = gamma != NULL,
                        .has_beta = beta != NULL};
    return nb_graph_add_node(g, op, n, in, &p, sizeof(p), x->dtype, x->ndim, x->shape);
}

nb_node *nb_layer_norm(nb_graph *g, nb_node *x, int naxes, nb_node *gamma, nb_node *beta,
                       double eps)
{
    return row_norm(g, NB_OP_LAYER_NORM, x, naxes, gamma, beta, eps);
}

nb_node *nb_rms_norm(nb_graph *g, nb_node *x, int naxes, nb_node *gamma, double eps)
{
    return row_norm(g, NB_OP_RMS_NORM, x, naxes, gamma, NULL, eps);
}

nb_node *nb_group_norm(nb_graph *g, nb_node *x, int64_t groups, nb_node *gamma, nb_node *beta,
                       double eps)
{
    const nb_op op = NB_OP_GROUP_NORM;
    nb_node *all[3] = {x, gamma, beta}, *in[3];
    int n = x ? compact(3, all, in) : 1;
    if (!x)
        in[0] = NULL;
    if (!check_common(g, op, n, in, eps, 2))
        return g->poison;
    int64_t C = x->shape[1];
    if (groups < 1 || C % groups != 0)
        return nb_graph_fail(g, NB_ERR_SHAPE, "group_norm '%s': Expected number of channels in "
                             "input to be divisible by num_groups, but got input of shape %s and "
                             "num_groups=%lld", NAME(op), nb_node_shape_str(x), (long long)groups);
    if (!check_aux(g, op, x, gamma, "gamma", 1, &C) || !check_aux(g, op, x, beta, "beta", 1, &C))
        return g->poison;
    nb_norm_params p = {.eps = eps, .groups = groups, .has_gamma = gamma != NULL,
                        .has_beta = beta != NULL};
    return nb_graph_add_node(g, op, n, in, &p, sizeof(p), x->dtype, x->ndim, x->shape);
}
