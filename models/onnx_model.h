/* The loaded ONNX model, shared by the files of the importer. Internal to
 * models/ (the public API is models/onnx.h):
 *
 *   onnx_import.c  loading: parse, check versions and ops, name every value,
 *                  sort the nodes, read the initializers; model queries
 *   onnx_fuse.c    Conv + BatchNormalization folded at load
 *   onnx_run.c     plans (a graph per set of input shapes, constant
 *                  folding), sessions, nb_onnx_run, nb_onnx_summarize
 *
 * After loading, the model is read-only but for its plan cache (guarded by
 * lock): values are indices, nodes[] is in topological order, and node k's
 * inputs then outputs are node_io[node_io_at[k], node_io_at[k + 1]).
 */
#ifndef NB_ONNX_MODEL_H
#define NB_ONNX_MODEL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "models/onnx.h"
#include "models/onnx_convert.h"

typedef struct onnx_plan onnx_plan; /* onnx_run.c */

struct nb_onnx_model {
    char *what, *dir;       /* path (for messages) and its directory (NULL: from memory) */
    nb_buffer *file;        /* the mapped file (or the copy of the bytes) */
    Onnx__ModelProto *proto;
    const Onnx__GraphProto *graph;
    int64_t opset;          /* of the default domain */
    int n_values;           /* every named value, and one per omitted node output */
    const char **value_names;
    int n_init;             /* the model's, then the fused Conv weights and biases */
    nb_tensor *init;
    int n_init_model;       /* the model's own initializers: init[0, n_init_model) */
    int64_t params, param_bytes; /* of those */
    int n_fused;            /* Conv+BatchNormalization pairs folded at load */
    int n_fused_act;        /* Relu/Clip nodes fused into the Conv before them */
    void **fused_nodes;     /* the Conv nodes rewritten for them (onnx_fuse.c) */
    int *init_value;
    int n_in, n_out;
    nb_onnx_io in[NB_ONNX_MAX_IO], out[NB_ONNX_MAX_IO];
    int in_value[NB_ONNX_MAX_IO], out_value[NB_ONNX_MAX_IO];
    int n_nodes;            /* in topological order: */
    const Onnx__NodeProto **nodes;
    const onnx_op_entry **conv;
    int64_t *node_opset;
    int *node_io;           /* node k's input values, then its output values (-1: omitted input) */
    int *node_io_at;        /* node k's start in node_io; n_nodes + 1 entries */
    int *value_type;        /* per value: the nb_dtype the model declares for it (graph input
                             * or output, value_info, initializer), -1 where unknown; set
                             * after fusion, n_values entries */
    pthread_mutex_t lock;   /* guards plans and baked */
    bool baked[NB_ONNX_MAX_IO]; /* inputs whose values converters need: plans are per value */
    onnx_plan *plans;
    int n_plans;
    uint64_t tick;
    nb_onnx_session *own;   /* nb_onnx_run's */
};

static inline const char *onnx_str_or_empty(const char *s) { return s ? s : ""; }

/* "", NULL and "ai.onnx" are the default domain. */
static inline bool onnx_is_default_domain(const char *d)
{
    return !d || !d[0] || strcmp(d, "ai.onnx") == 0;
}

/* ---- onnx_tensor.c ---- */

/* ONNX TensorProto data type -> nabla dtype, storage dtypes included (INT8,
 * INT16, UINT16, UINT32, UINT64, FLOAT16, BFLOAT16); false when nabla has
 * none. onnx_dtype (onnx_convert.h) maps only the compute dtypes that
 * converters see. */
bool onnx_storage_dtype(int32_t onnx_type, nb_dtype *out);
/* nabla dtype -> ONNX data type (UNDEFINED for an invalid dtype). */
int32_t onnx_type_of_dtype(nb_dtype dt);

/* ---- onnx_import.c ---- */

/* Node n's name for messages, or "#idx" when it has none; buf returned. */
const char *onnx_node_label(const Onnx__NodeProto *n, int idx, char *buf, size_t size);

/* ---- onnx_fuse.c ---- */

/* Fold every Conv -> inference BatchNormalization pair (the BN reading only
 * the Conv's output) into the Conv's weight and bias: new initializers, the
 * BN node gone, its readers reading the Conv. Sets m->n_fused. */
nb_status onnx_fuse_conv_bn(nb_onnx_model *m);
/* Fuse each Relu, or Clip with constant bounds, that is the only reader of
 * a Conv's output into that Conv (a clamp the conv kernels apply as they
 * write): the activation node goes, its readers read the Conv, and the Conv
 * node is replaced by a copy that onnx_fused_clamp recognises. Sets
 * m->n_fused_act. */
nb_status onnx_fuse_conv_act(nb_onnx_model *m);
/* Free what the fusions allocated. */
void onnx_fuse_free(nb_onnx_model *m);

/* ---- onnx_run.c ---- */

/* Drop the model's references to its cached plans (sessions keep theirs). */
void onnx_plans_free(nb_onnx_model *m);

#endif
