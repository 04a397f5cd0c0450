/* nn.Linear: parameters, PyTorch's default initialisation, forward. */
#include "models/linear.h"

#include <math.h>

nb_status nb_linear_make(nb_graph *g, const char *name, int64_t in, int64_t out, bool bias,
                         nb_dtype dt, nb_linear *l)
{
    *l = (nb_linear){.in = in, .out = out};
    if (in < 1 || out < 1)
        return nb_error(NB_ERR_ARG, "linear '%s': sizes must be >= 1, got in %lld, out %lld", name,
                        (long long)in, (long long)out);
    nb_scope_push(g, name);
    l->weight = nb_param(g, "weight", dt, 2, (int64_t[]){out, in});
    if (bias)
        l->bias = nb_param(g, "bias", dt, 1, &out);
    nb_scope_pop(g);
    nb_status s = nb_graph_status(g);
    return s == NB_OK ? NB_OK : nb_error(s, "%s", nb_graph_error(g));
}

nb_status nb_linear_reset(const nb_linear *l, nb_rng *r)
{
    nb_status s = nb_init_kaiming_uniform(r, nb_node_value(l->weight), sqrt(5.0), NB_FAN_IN);
    if (s != NB_OK || !l->bias)
        return s;
    double bound = 1.0 / sqrt((double)l->in);
    return nb_rng_fill_uniform(r, nb_node_value(l->bias), -bound, bound);
}

nb_node *nb_linear_apply(nb_graph *g, const nb_linear *l, nb_node *x)
{
    nb_node *y = nb_matmul_t(g, x, l->weight, false, true);
    return l->bias ? nb_add(g, y, l->bias) : y;
}
