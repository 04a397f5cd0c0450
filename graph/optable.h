/* One row per op: what the executor and tools need beyond the kernel.
 * Shape inference itself lives in the builders (build_*.c), which check and
 * compute shapes with op-specific messages before calling nb_graph_add_node. */
#ifndef NB_OPTABLE_H
#define NB_OPTABLE_H

#include "graph/graph_impl.h"

typedef enum {
    NB_KIND_LEAF, NB_KIND_UNARY, NB_KIND_CAST, NB_KIND_BINARY, NB_KIND_WHERE,
    NB_KIND_MATMUL, NB_KIND_REDUCE, NB_KIND_SOFTMAX, NB_KIND_MOVE,
    NB_KIND_CONV, NB_KIND_POOL, NB_KIND_NORM, NB_KIND_GATHER, NB_KIND_DROPOUT,
    NB_KIND_LINALG, NB_KIND_TEXT, NB_KIND_FUSED
} nb_op_kind;

typedef struct nb_op_row {
    const char *name;
    nb_op_kind kind;
    /* Floating-point operations of one run of this node (for `nabla info`, benches). */
    double (*flops)(const nb_node *n);
    /* True when the output is a view of input 0 with no copy (RESHAPE). The
     * executor then shares input 0's memory. */
    bool alias;
} nb_op_row;

const nb_op_row *nb_op_row_get(nb_op op);

#endif
