/* The MLP: a stack of nn.Linear layers with ReLU between them. */
#include "models/mlp.h"

#include <stdio.h>

nb_status nb_mlp_make(nb_graph *g, int n_sizes, const int64_t *sizes, nb_dtype dt, nb_mlp *m)
{
    m->n_layers = 0;
    if (n_sizes < 2 || n_sizes > NB_MLP_MAX_LAYERS + 1)
        return nb_error(NB_ERR_ARG, "mlp: needs 2 to %d sizes, got %d", NB_MLP_MAX_LAYERS + 1,
                        n_sizes);
    for (int i = 0; i + 1 < n_sizes; i++) {
        char name[16];
        snprintf(name, sizeof(name), "fc%d", i + 1);
        nb_status s = nb_linear_make(g, name, sizes[i], sizes[i + 1], true, dt, &m->layers[i]);
        if (s != NB_OK)
            return s;
        m->n_layers = i + 1;
    }
    return NB_OK;
}

nb_status nb_mlp_reset(const nb_mlp *m, nb_rng *r)
{
    for (int i = 0; i < m->n_layers; i++) {
        nb_status s = nb_linear_reset(&m->layers[i], r);
        if (s != NB_OK)
            return s;
    }
    return NB_OK;
}

/* h = relu(fc_i(h)) for all but the last layer, whose output is returned;
 * each layer's nodes are named inside its scope ("fc1.matmul_12"). */
nb_node *nb_mlp_apply(nb_graph *g, const void *mlp, nb_node *x)
{
    const nb_mlp *m = mlp;
    nb_node *h = x;
    for (int i = 0; i < m->n_layers; i++) {
        char name[16];
        snprintf(name, sizeof(name), "fc%d", i + 1);
        nb_scope_push(g, name);
        h = nb_linear_apply(g, &m->layers[i], h);
        if (i + 1 < m->n_layers)
            h = nb_relu(g, h);
        nb_scope_pop(g);
    }
    return h;
}

int nb_mlp_params(const nb_mlp *m, nb_node **out)
{
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        out[n++] = m->layers[i].weight;
        if (m->layers[i].bias)
            out[n++] = m->layers[i].bias;
    }
    return n;
}

int64_t nb_mlp_numel(const nb_mlp *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->n_layers; i++)
        n += m->layers[i].in * m->layers[i].out + (m->layers[i].bias ? m->layers[i].out : 0);
    return n;
}
