/* The expression graph: nodes are tensor values, each made by one op.
 *
 * Shapes and dtypes are inferred when a node is made, so a mistake is
 * reported by the call that made it. Errors are sticky: after the first one
 * the graph is failed, every later builder call returns the graph's poisoned
 * node, and nb_graph_status()/nb_graph_error() give the first message, e.g.
 *   matmul 'fc2.matmul_7': (128,784) x (256,10): inner dimensions 784 and 256 differ
 * so user code checks once, after building.
 *
 * Axes may be negative (counted from the end), as in NumPy and PyTorch.
 * Binary ops need equal dtypes (no implicit promotion) and broadcast their
 * shapes like NumPy.
 */
#ifndef NB_GRAPH_H
#define NB_GRAPH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/ops.h"
#include "tensor/tensor.h"

typedef struct nb_graph nb_graph;
typedef struct nb_node nb_node;

nb_graph *nb_graph_new(void); /* NULL only if out of memory */
void nb_graph_free(nb_graph *g);

nb_status nb_graph_status(const nb_graph *g);
const char *nb_graph_error(const nb_graph *g); /* "" when fine */

/* Names: a node gets "<scope>.<op>_<id>" unless named. Scopes nest
 * ("encoder" then "fc1" gives "encoder.fc1"); parameters are named
 * "<scope>.<name>", e.g. nb_param(g, "weight", ...) inside scope "fc1" is
 * "fc1.weight", matching PyTorch state_dict names. */
void nb_scope_push(nb_graph *g, const char *name);
void nb_scope_pop(nb_graph *g);
/* Rename a node (names must be unique); returns the node. */
nb_node *nb_node_set_name(nb_node *n, const char *name);
nb_node *nb_graph_find(const nb_graph *g, const char *name); /* NULL if none */

/* For builders outside graph/ (layers, importers): record the first error
 * (printf-style; start the message with what failed and its name), mark the
 * graph failed and return its poison node, which every later builder passes
 * through. */
nb_node *nb_graph_fail(nb_graph *g, nb_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A node's shape as "(2,3)", in a small rotating per-thread buffer. */
const char *nb_node_shape_str(const nb_node *n);

/* ---- node queries ---------------------------------------------------- */
nb_op nb_node_op(const nb_node *n);
nb_dtype nb_node_dtype(const nb_node *n);
int nb_node_ndim(const nb_node *n);
const int64_t *nb_node_shape(const nb_node *n);
int64_t nb_node_numel(const nb_node *n);
const char *nb_node_name(const nb_node *n);
int nb_node_id(const nb_node *n);
int nb_node_num_inputs(const nb_node *n);
nb_node *nb_node_input(const nb_node *n, int i);
/* The stored value of a PARAM or CONST node (NULL for other nodes). Parameters
 * are zero-filled when made; write their initial values through this. A
 * CONST's contents must not change once a session has run the graph:
 * kernels may keep work derived from them (e.g. transformed weights). */
nb_tensor *nb_node_value(nb_node *n);
bool nb_node_is_poison(const nb_node *n);

int nb_graph_num_nodes(const nb_graph *g);
nb_node *nb_graph_node(const nb_graph *g, int id);
/* All PARAM nodes in creation order; returns the count (fills at most max). */
int nb_graph_params(const nb_graph *g, nb_node **out, int max);

/* ---- leaves ---------------------------------------------------------- */
nb_node *nb_input(nb_graph *g, const char *name, nb_dtype dt, int ndim, const int64_t *shape);
nb_node *nb_param(nb_graph *g, const char *name, nb_dtype dt, int ndim, const int64_t *shape);
/* A constant holding a contiguous copy of t. */
nb_node *nb_constant(nb_graph *g, const nb_tensor *t);
/* A 0-d constant. */
nb_node *nb_scalar(nb_graph *g, double value, nb_dtype dt);

/* ---- elementwise ------------------------------------------------------ */
nb_node *nb_add(nb_graph *g, nb_node *a, nb_node *b);
nb_node *nb_sub(nb_graph *g, nb_node *a, nb_node *b);
nb_node *nb_mul(nb_graph *g, nb_node *a, nb_node *b);
nb_node *nb_div(nb_graph *g, nb_node *a, nb_node *b);
nb_node *nb_pow(nb_graph *g, nb_node *a, nb_node *b);
nb_node *nb_maximum(nb_graph *g, nb_node *a, nb_node *b);
nb_node *nb_minimum(nb_graph *g, nb_node *a, nb_node *b);
/* x op scalar, the scalar taking x's dtype */
nb_node *nb_add_scalar(nb_graph *g, nb_node *x, double s);
nb_node *nb_mul_scalar(nb_graph *g, nb_node *x, double s);
nb_node *nb_pow_scalar(nb_graph *g, nb_node *x, double s);

nb_node *nb_eq(nb_graph *g, nb_node *a, nb_node *b); /* bool masks */
nb_node *nb_ne(nb_graph *g, nb_node *a, nb_node *b);
nb_node *nb_lt(nb_graph *g, nb_node *a, nb_node *b);
nb_node *nb_le(nb_graph *g, nb_node *a, nb_node *b);
nb_node *nb_gt(nb_graph *g, nb_node *a, nb_node *b);
nb_node *nb_ge(nb_graph *g, nb_node *a, nb_node *b);
nb_node *nb_where(nb_graph *g, nb_node *cond, nb_node *a, nb_node *b);

nb_node *nb_neg(nb_graph *g, nb_node *x);
nb_node *nb_abs(nb_graph *g, nb_node *x);
nb_node *nb_sign(nb_graph *g, nb_node *x);
nb_node *nb_exp(nb_graph *g, nb_node *x);
nb_node *nb_log(nb_graph *g, nb_node *x);
nb_node *nb_sqrt(nb_graph *g, nb_node *x);
nb_node *nb_rsqrt(nb_graph *g, nb_node *x);
nb_node *nb_square(nb_graph *g, nb_node *x);
nb_node *nb_reciprocal(nb_graph *g, nb_node *x);
nb_node *nb_erf(nb_graph *g, nb_node *x);
nb_node *nb_clip(nb_graph *g, nb_node *x, double lo, double hi);
nb_node *nb_cast(nb_graph *g, nb_node *x, nb_dtype dt);

nb_node *nb_relu(nb_graph *g, nb_node *x);
nb_node *nb_leaky_relu(nb_graph *g, nb_node *x, double negative_slope);
nb_node *nb_elu(nb_graph *g, nb_node *x, double alpha);
nb_node *nb_sigmoid(nb_graph *g, nb_node *x);
nb_node *nb_tanh(nb_graph *g, nb_node *x);
/* approximate = false: x * Phi(x) (erf); true: the tanh form, as PyTorch's
 * gelu(approximate='tanh'). */
nb_node *nb_gelu(nb_graph *g, nb_node *x, bool approximate);
nb_node *nb_silu(nb_graph *g, nb_node *x);
/* PyTorch's softplus: log(1 + exp(beta x)) / beta, x itself where beta x > threshold. */
nb_node *nb_softplus(nb_graph *g, nb_node *x, double beta, double threshold);

/* ---- linear algebra ---------------------------------------------------- */
/* NumPy matmul: 2-D, batched with broadcast batch dims, and 1-D operands
 * (promoted and squeezed as NumPy does). */
nb_node *nb_matmul(nb_graph *g, nb_node *a, nb_node *b);
/* a or b transposed in their last two dims, handed to BLAS (no copy). */
nb_node *nb_matmul_t(nb_graph *g, nb_node *a, nb_node *b, bool trans_a, bool trans_b);

/* ---- reductions -------------------------------------------------------- */
/* naxes == 0 reduces over all axes. */
nb_node *nb_sum(nb_graph *g, nb_node *x, int naxes, const int *axes, bool keepdims);
nb_node *nb_mean(nb_graph *g, nb_node *x, int naxes, const int *axes, bool keepdims);
nb_node *nb_max(nb_graph *g, nb_node *x, int naxes, const int *axes, bool keepdims);
nb_node *nb_min(nb_graph *g, nb_node *x, int naxes, const int *axes, bool keepdims);
nb_node *nb_argmax(nb_graph *g, nb_node *x, int axis, bool keepdims); /* i64 */

/* ---- shape and data movement ------------------------------------------ */
/* One dim may be -1. */
nb_node *nb_reshape(nb_graph *g, nb_node *x, int ndim, const int64_t *shape);
nb_node *nb_permute(nb_graph *g, nb_node *x, const int *perm);
nb_node *nb_transpose(nb_graph *g, nb_node *x, int d0, int d1);
nb_node *nb_squeeze(nb_graph *g, nb_node *x, int axis);
nb_node *nb_unsqueeze(nb_graph *g, nb_node *x, int axis);
nb_node *nb_flatten(nb_graph *g, nb_node *x, int start_axis); /* dims >= start merged */
nb_node *nb_expand(nb_graph *g, nb_node *x, int ndim, const int64_t *shape);
/* Python slicing x[..., start:stop:step, ...] along one axis (step >= 1). */
nb_node *nb_slice(nb_graph *g, nb_node *x, int axis, int64_t start, int64_t stop, int64_t step);
nb_node *nb_concat(nb_graph *g, int n, nb_node *const *xs, int axis);
/* Split along axis into n pieces of the given sizes (summing to the dim);
 * the pieces go to out[0..n). Returns 0 or -1 (error recorded in g). */
int nb_split(nb_graph *g, nb_node *x, int axis, int n, const int64_t *sizes, nb_node **out);
/* Constant padding; pads[2*i] before and pads[2*i+1] after dim i (all dims). */
nb_node *nb_pad(nb_graph *g, nb_node *x, const int64_t *pads, double value);

/* ---- softmax and losses ------------------------------------------------ */
nb_node *nb_softmax(nb_graph *g, nb_node *x, int axis);
nb_node *nb_log_softmax(nb_graph *g, nb_node *x, int axis);
/* labels (i32/i64) of shape (N,) -> (N, depth) of dtype dt */
nb_node *nb_one_hot(nb_graph *g, nb_node *labels, int64_t depth, nb_dtype dt);
/* Mean cross-entropy of logits (N, C) against integer labels (N,), with
 * PyTorch's label smoothing (0 for none). */
nb_node *nb_cross_entropy(nb_graph *g, nb_node *logits, nb_node *labels, double label_smoothing);
/* Mean negative log-likelihood of log-probabilities (N, C) at labels (N,). */
nb_node *nb_nll_loss(nb_graph *g, nb_node *logp, nb_node *labels);
nb_node *nb_mse_loss(nb_graph *g, nb_node *pred, nb_node *target);
/* Mean binary cross-entropy of logits against targets in [0, 1], stable. */
nb_node *nb_bce_with_logits(nb_graph *g, nb_node *logits, nb_node *target);

/* ---- export ----------------------------------------------------------- */
/* Graphviz DOT of the whole graph (n_out == 0) or of the ancestors of outputs. */
nb_status nb_graph_write_dot(const nb_graph *g, FILE *f, int n_out, nb_node *const *outputs);

#endif
