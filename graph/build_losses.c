/* Softmax, one-hot and the losses. The losses are composed from primitive
 * ops, so their gradients (and second derivatives) come from the primitives'
 * rules; each follows PyTorch's definition with mean reduction. */
#include "graph/graph_impl.h"

#define NAME(op) nb_graph_next_name(g, op)

static nb_node *softmax_op(nb_graph *g, nb_op op, nb_node *x, int axis)
{
    if (nb_graph_check_inputs(g, op, 1, &x))
        return g->poison;
    if (!nb_dtype_is_float(x->dtype))
        return nb_graph_fail(g, NB_ERR_DTYPE, "%s '%s': dtype %s, needs f32 or f64",
                             nb_op_name(op), NAME(op), nb_dtype_name(x->dtype));
    int a = nb_axis_norm(axis, x->ndim);
    if (a < 0)
        return nb_graph_fail(g, NB_ERR_ARG, "%s '%s': axis %d out of range for %s",
                             nb_op_name(op), NAME(op), axis, nb_node_shape_str(x));
    nb_axis_params p = {a};
    return nb_graph_add_node(g, op, 1, &x, &p, sizeof(p), x->dtype, x->ndim, x->shape);
}

nb_node *nb_softmax(nb_graph *g, nb_node *x, int axis) { return softmax_op(g, NB_OP_SOFTMAX, x, axis); }

nb_node *nb_log_softmax(nb_graph *g, nb_node *x, int axis)
{
    return softmax_op(g, NB_OP_LOG_SOFTMAX, x, axis);
}

nb_node *nb_one_hot(nb_graph *g, nb_node *labels, int64_t depth, nb_dtype dt)
{
    if (nb_graph_check_inputs(g, NB_OP_ONE_HOT, 1, &labels))
        return g->poison;
    if (labels->dtype != NB_I32 && labels->dtype != NB_I64)
        return nb_graph_fail(g, NB_ERR_DTYPE, "one_hot '%s': labels '%s' have dtype %s, need i32 or i64",
                             NAME(NB_OP_ONE_HOT), labels->name, nb_dtype_name(labels->dtype));
    if (!nb_dtype_is_float(dt) || depth < 1 || labels->ndim >= NB_MAX_DIMS)
        return nb_graph_fail(g, NB_ERR_ARG, "one_hot '%s': needs a float dtype, depth >= 1 and labels of < %d dims",
                             NAME(NB_OP_ONE_HOT), NB_MAX_DIMS);
    int64_t shape[NB_MAX_DIMS];
    for (int i = 0; i < labels->ndim; i++)
        shape[i] = labels->shape[i];
    shape[labels->ndim] = depth;
    nb_one_hot_params p = {depth};
    return nb_graph_add_node(g, NB_OP_ONE_HOT, 1, &labels, &p, sizeof(p), dt, labels->ndim + 1,
                             shape);
}

/* Checks shared by the classification losses: scores (N, C) float, labels (N,) int. */
static bool check_class_loss(nb_graph *g, const char *what, nb_node *scores, nb_node *labels)
{
    nb_node *in[2] = {scores, labels};
    if (nb_graph_check_inputs(g, NB_OP_LOG_SOFTMAX, 2, in))
        return false;
    if (scores->ndim != 2 || !nb_dtype_is_float(scores->dtype)) {
        nb_graph_fail(g, NB_ERR_SHAPE, "%s: scores '%s' must be (N, C) f32/f64, got %s %s", what,
                      scores->name, nb_node_shape_str(scores), nb_dtype_name(scores->dtype));
        return false;
    }
    if (labels->ndim != 1 || labels->shape[0] != scores->shape[0]) {
        nb_graph_fail(g, NB_ERR_SHAPE, "%s: labels '%s' %s do not match scores %s (need (%lld))",
                      what, labels->name, nb_node_shape_str(labels), nb_node_shape_str(scores),
                      (long long)scores->shape[0]);
        return false;
    }
    return true;
}

/* -mean_n sum_c target[n,c] * logp[n,c] */
static nb_node *mean_neg_dot(nb_graph *g, nb_node *target, nb_node *logp)
{
    int axis = 1;
    nb_node *per_sample = nb_sum(g, nb_mul(g, target, logp), 1, &axis, false);
    return nb_neg(g, nb_mean(g, per_sample, 0, NULL, false));
}

nb_node *nb_cross_entropy(nb_graph *g, nb_node *logits, nb_node *labels, double smoothing)
{
    if (!check_class_loss(g, "cross_entropy", logits, labels))
        return g->poison;
    if (smoothing < 0 || smoothing > 1)
        return nb_graph_fail(g, NB_ERR_ARG, "cross_entropy: label_smoothing %g is outside [0, 1]",
                             smoothing);
    int64_t c = logits->shape[1];
    nb_node *logp = nb_log_softmax(g, logits, 1);
    nb_node *target = nb_one_hot(g, labels, c, logits->dtype);
    if (smoothing > 0) /* (1 - eps) * onehot + eps / C */
        target = nb_add_scalar(g, nb_mul_scalar(g, target, 1 - smoothing), smoothing / (double)c);
    return mean_neg_dot(g, target, logp);
}

nb_node *nb_nll_loss(nb_graph *g, nb_node *logp, nb_node *labels)
{
    if (!check_class_loss(g, "nll_loss", logp, labels))
        return g->poison;
    return mean_neg_dot(g, nb_one_hot(g, labels, logp->shape[1], logp->dtype), logp);
}

static bool check_same(nb_graph *g, const char *what, nb_node *a, nb_node *b)
{
    nb_node *in[2] = {a, b};
    if (nb_graph_check_inputs(g, NB_OP_SUB, 2, in))
        return false;
    if (!nb_shape_equal(a->ndim, a->shape, b->ndim, b->shape) || a->dtype != b->dtype) {
        nb_graph_fail(g, NB_ERR_SHAPE, "%s: input '%s' %s %s and target '%s' %s %s must match",
                      what, a->name, nb_node_shape_str(a), nb_dtype_name(a->dtype), b->name,
                      nb_node_shape_str(b), nb_dtype_name(b->dtype));
        return false;
    }
    return true;
}

nb_node *nb_mse_loss(nb_graph *g, nb_node *pred, nb_node *target)
{
    if (!check_same(g, "mse_loss", pred, target))
        return g->poison;
    return nb_mean(g, nb_square(g, nb_sub(g, pred, target)), 0, NULL, false);
}

/* mean(softplus(x) - x * t): log(1 + e^x) - x t is -[t log s(x) + (1-t) log(1-s(x))] */
nb_node *nb_bce_with_logits(nb_graph *g, nb_node *logits, nb_node *target)
{
    if (!check_same(g, "bce_with_logits", logits, target))
        return g->poison;
    nb_node *sp = nb_softplus(g, logits, 1.0, 20.0);
    return nb_mean(g, nb_sub(g, sp, nb_mul(g, logits, target)), 0, NULL, false);
}
