/* VJP rules: one function per op, registered in a table indexed by op.
 *
 * rule(g, y, i, gy) returns the gradient of the loss with respect to input i
 * of node y, given gy (the gradient with respect to y, same shape and dtype
 * as y). The result has exactly input i's shape and dtype (use nb_sum_to to
 * undo broadcasting). Return NULL when no gradient flows to that input (bool
 * conditions, integer labels). Rules build ordinary nodes from the public and
 * internal builders, so a rule made of differentiable ops can itself be
 * differentiated (second derivatives). */
#ifndef NB_VJP_H
#define NB_VJP_H

#include "graph/graph_impl.h"

typedef nb_node *(*nb_vjp_fn)(nb_graph *g, nb_node *y, int i, nb_node *gy);

/* NULL when the op has no rule. */
nb_vjp_fn nb_vjp_rule(nb_op op);

/* Replace the rule of op (NULL removes it); returns the previous rule. For
 * custom rules and for tests of the missing-rule error. Not thread-safe
 * against a concurrent nb_grad. */
nb_vjp_fn nb_vjp_set_rule(nb_op op, nb_vjp_fn fn);

/* The halves of the table, each filled by its file. */
void nb_vjp_register_elementwise(nb_vjp_fn *table); /* vjp_elementwise.c: unary, binary, where, cast, softmax */
void nb_vjp_register_shape(nb_vjp_fn *table);       /* vjp_shape.c: matmul, reductions, movement */
void nb_vjp_register_conv(nb_vjp_fn *table);        /* vjp_conv.c */
void nb_vjp_register_pool(nb_vjp_fn *table);        /* vjp_pool.c */
void nb_vjp_register_norm(nb_vjp_fn *table);        /* vjp_norm.c */
void nb_vjp_register_gather(nb_vjp_fn *table);      /* vjp_gather.c: gather, dropout */

#endif
