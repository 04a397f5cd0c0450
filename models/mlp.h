/* A multilayer perceptron: Linear layers fc1, fc2, ... with ReLU between
 * them and none after the last (which gives the logits), as
 * nn.Sequential(Linear, ReLU, ..., Linear) named like a PyTorch module
 * with attributes fc1, fc2, ... */
#ifndef NB_MLP_H
#define NB_MLP_H

#include "models/linear.h"

#define NB_MLP_MAX_LAYERS 16

typedef struct nb_mlp {
    int n_layers;
    nb_linear layers[NB_MLP_MAX_LAYERS];
} nb_mlp;

/* Layers sizes[0] -> sizes[1] -> ... -> sizes[n_sizes-1] (n_sizes >= 2),
 * with biases, parameters "fc1.weight", "fc1.bias", ... */
nb_status nb_mlp_make(nb_graph *g, int n_sizes, const int64_t *sizes, nb_dtype dt, nb_mlp *m);

/* Every layer's default init, in order fc1, fc2, ... */
nb_status nb_mlp_reset(const nb_mlp *m, nb_rng *r);

/* Logits for x (batch, sizes[0]). The signature fits nb_forward_fn. */
nb_node *nb_mlp_apply(nb_graph *g, const void *mlp, nb_node *x);

/* The parameters in order (fc1.weight, fc1.bias, fc2.weight, ...) into out
 * (room for 2 * n_layers); returns the count. */
int nb_mlp_params(const nb_mlp *m, nb_node **out);

/* Number of scalar parameters. */
int64_t nb_mlp_numel(const nb_mlp *m);

#endif
