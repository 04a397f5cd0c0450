/* Reverse-mode automatic differentiation.
 *
 * nb_grad walks the graph from a scalar loss in reverse topological order and
 * adds, for every op between the loss and the wanted nodes, the nodes of its
 * vector-Jacobian product. Gradients are ordinary nodes: compile them as
 * outputs, run them, or differentiate them again.
 */
#ifndef NB_AUTODIFF_H
#define NB_AUTODIFF_H

#include "graph/graph.h"

/* grads[i] = d loss / d wrt[i], same shape and dtype as wrt[i]. loss must be a
 * float node with one element. A wrt node the loss does not depend on gets a
 * zero gradient. An op on the path without a VJP rule fails with
 * NB_ERR_NO_GRAD naming the op and the node; the graph is then failed. */
nb_status nb_grad(nb_graph *g, nb_node *loss, int n, nb_node *const *wrt, nb_node **grads);

/* Like nb_grad with an explicit cotangent: seed has y's shape and dtype, and
 * grads[i] = sum over elements of (seed * dy/dwrt[i]) (a VJP). */
nb_status nb_vjp(nb_graph *g, nb_node *y, nb_node *seed, int n, nb_node *const *wrt,
                 nb_node **grads);

/* Finite-difference check of d loss / d wrt for every element of each wrt
 * node, which must be PARAM or INPUT nodes of f64 (inputs are fed from
 * `feeds`, one per INPUT node of the graph in creation order, or NULL when
 * there are none). Central differences with step eps. Reports the worst
 * relative error |a - n| / max(1, |a|, |n|) in *max_rel_err. */
nb_status nb_gradcheck(nb_graph *g, nb_node *loss, int n, nb_node *const *wrt,
                       const nb_tensor *feeds, double eps, double *max_rel_err);

#endif
