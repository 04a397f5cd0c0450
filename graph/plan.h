/* The compiled plan shared by compile.c (which builds it) and session.c
 * (which runs it). Read-only after compile. */
#ifndef NB_PLAN_H
#define NB_PLAN_H

#include "graph/graph_impl.h"
#include "graph/session.h"

typedef enum {
    NB_VALUE_ARENA,    /* lives at `offset` in the session's arena */
    NB_VALUE_ALIAS,    /* a reshaped view of value `root` (same bytes) */
    NB_VALUE_EXTERNAL, /* a PARAM or CONST: the graph's stored tensor */
    NB_VALUE_FUSED,    /* computed inside a fused entry only: no storage */
} nb_value_kind;

typedef struct nb_plan_value {
    nb_node *node;
    nb_value_kind kind;
    int root;      /* ALIAS: index of the value it views (never itself an alias) */
    size_t offset; /* ARENA */
    size_t nbytes; /* ARENA: bytes reserved */
} nb_plan_value;

typedef struct nb_plan_entry {
    nb_kernel_fn fn;
    nb_op op;           /* the node's op, or a fused op (graph/fuse.c) */
    const void *params; /* the node's params, or the fusion's (plan-owned) */
    int value;  /* the value this entry computes */
    int n_in;
    int *in;    /* value indices of its inputs */
} nb_plan_entry;

/* A fusion found by nb_plan_fuse: the entry of value v runs `op` on these
 * inputs instead of its node's op. */
typedef struct nb_plan_fused {
    nb_op op;
    int n_in;
    int in[8];
    void *params; /* malloc'd, owned by the plan */
} nb_plan_fused;

struct nb_plan {
    nb_graph *g;
    const nb_backend *backend;
    int n_values;
    nb_plan_value *values;
    int *value_of_node; /* g->n_nodes at compile time; -1 for nodes not in the plan */
    int n_nodes;
    int n_entries;
    nb_plan_entry *entries;
    int n_outputs;
    int *outputs;       /* value indices */
    size_t arena_bytes, unshared_bytes, workspace_bytes;
    nb_kernel_cache *caches; /* one per entry, shared by the plan's sessions */
    nb_plan_fused **fused;   /* per value: the fusion it ends, or NULL (all NULL
                                when nothing was fused) */
};

/* A kernel call of op from values in[0..n_in) to value out whose tensors
 * carry shapes and dtypes but no data, for the backend's workspace_size and
 * fusable questions; ts has room for n_in + 1 tensors, ins for n_in. */
nb_kernel_call nb_plan_shape_call(const nb_plan *p, nb_op op, int n_in, const int *in, int out,
                                  const void *params, nb_tensor *ts, const nb_tensor **ins);

/* Find the fusions the backend accepts among the plan's values (after
 * plan_values, before the entries are made): the fused-away values become
 * NB_VALUE_FUSED and p->fused says what the last value's entry runs
 * (graph/fuse.c). */
nb_status nb_plan_fuse(nb_plan *p);

#endif
