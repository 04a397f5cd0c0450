/* The op table: one row per op, from NB_OP_LIST. */
#include "graph/optable.h"

static double flops_none(const nb_node *n) { return 0; }

/* one operation per output element */
static double flops_elementwise(const nb_node *n) { return (double)nb_node_numel(n); }

/* one operation per input element */
static double flops_reduce(const nb_node *n) { return (double)nb_node_numel(n->in[0]); }

/* max, subtract, exp, sum, divide per element */
static double flops_softmax(const nb_node *n) { return 5.0 * (double)nb_node_numel(n); }

/* 2 M N K per batch: the output has batch*M*N elements, each a K-long dot */
static double flops_matmul(const nb_node *n)
{
    const nb_matmul_params *p = n->params;
    const nb_node *a = n->in[0];
    int64_t k = a->shape[a->ndim - (p->trans_a ? 2 : 1)];
    return 2.0 * (double)nb_node_numel(n) * (double)k;
}

/* CONV2D: 2 * (C_in / groups) * kh * kw per output element; the transpose
 * and weight gradient do the same work as the matching forward conv. */
static double flops_conv(const nb_node *n)
{
    const nb_node *w = n->in[1];
    if (n->op == NB_OP_CONV2D)
        return 2.0 * (double)nb_node_numel(n) * (double)nb_shape_numel(3, w->shape + 1);
    if (n->op == NB_OP_CONV_TRANSPOSE2D) /* each input element meets C_out/groups * kh * kw weights */
        return 2.0 * (double)nb_node_numel(n->in[0]) * (double)nb_shape_numel(3, w->shape + 1);
    /* CONV2D_GRAD_WEIGHT (x, gy): every gy element meets (C_in / groups) * kh * kw */
    return 2.0 * (double)nb_node_numel(w) * (double)nb_shape_numel(3, n->shape + 1);
}

/* DET: LU of each n x n matrix, about 2/3 n^3 */
static double flops_det(const nb_node *n)
{
    const nb_node *a = n->in[0];
    double m = (double)a->shape[a->ndim - 1];
    return (double)nb_node_numel(n) * 2.0 / 3.0 * m * m * m;
}

#define FLOPS_LEAF flops_none
#define FLOPS_UNARY flops_elementwise
#define FLOPS_CAST flops_none
#define FLOPS_BINARY flops_elementwise
#define FLOPS_WHERE flops_none
#define FLOPS_MATMUL flops_matmul
#define FLOPS_REDUCE flops_reduce
#define FLOPS_SOFTMAX flops_softmax
#define FLOPS_MOVE flops_none
#define FLOPS_CONV flops_conv
#define FLOPS_POOL flops_reduce
#define FLOPS_NORM flops_softmax
#define FLOPS_GATHER flops_none
#define FLOPS_DROPOUT flops_elementwise
#define FLOPS_LINALG flops_det
#define FLOPS_TEXT flops_reduce
#define FLOPS_FUSED flops_none /* plan entries only, no nodes */

static const nb_op_row rows[NB_OP_COUNT] = {
#define NB_X(e, nm, kind) [NB_OP_##e] = {nm, NB_KIND_##kind, FLOPS_##kind, NB_OP_##e == NB_OP_RESHAPE},
    NB_OP_LIST(NB_X)
#undef NB_X
};

const nb_op_row *nb_op_row_get(nb_op op) { return &rows[op]; }
