/* Graphviz export: one box per node ("name\nop shape dtype"), edges from
 * inputs to consumers; inputs, parameters and constants are coloured. */
#include <stdlib.h>

#include "graph/graph_impl.h"

static const char *leaf_colour(nb_op op)
{
    switch (op) {
    case NB_OP_INPUT: return "lightblue";
    case NB_OP_PARAM: return "palegreen";
    case NB_OP_STATE: return "khaki";
    case NB_OP_CONST: return "lightgrey";
    default: return NULL;
    }
}

nb_status nb_graph_write_dot(const nb_graph *g, FILE *f, int n_out, nb_node *const *outputs)
{
    if (!g || !f)
        return nb_error(NB_ERR_ARG, "write_dot: no graph or file");
    char *keep = calloc((size_t)g->n_nodes + 1, 1);
    if (!keep)
        return nb_error(NB_ERR_ALLOC, "write_dot: out of memory");
    for (int i = 0; i < n_out; i++)
        if (outputs[i] && outputs[i]->graph == g && outputs[i]->id >= 0)
            keep[outputs[i]->id] = 1;
    for (int id = g->n_nodes - 1; id >= 0; id--) {
        if (n_out == 0)
            keep[id] = 1;
        if (keep[id])
            for (int k = 0; k < g->nodes[id]->n_in; k++)
                keep[g->nodes[id]->in[k]->id] = 1;
    }
    fprintf(f, "digraph nabla {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n");
    for (int id = 0; id < g->n_nodes; id++) {
        const nb_node *n = g->nodes[id];
        if (!keep[id])
            continue;
        const char *colour = leaf_colour(n->op);
        fprintf(f, "  n%d [label=\"%s\\n%s %s %s\"", id, n->name, nb_op_name(n->op),
                nb_node_shape_str(n), nb_dtype_name(n->dtype));
        if (colour)
            fprintf(f, ", style=filled, fillcolor=%s", colour);
        fprintf(f, "];\n");
        for (int k = 0; k < n->n_in; k++)
            fprintf(f, "  n%d -> n%d;\n", n->in[k]->id, id);
    }
    fprintf(f, "}\n");
    free(keep);
    return ferror(f) ? nb_error(NB_ERR_IO, "write_dot: write failed") : NB_OK;
}
