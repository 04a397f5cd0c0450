/* The interface between the ONNX importer (models/onnx_import.c) and the
 * converters of each op (models/onnx_ops_*.c). Internal to models/.
 *
 * The importer builds one nabla graph per set of input shapes, so every
 * shape is static by the time a converter runs. It walks the nodes in
 * topological order and, for each, calls the converter registered for the
 * node's (domain, op_type) and the model's opset. A converter reads its
 * inputs and attributes through the helpers below and sets its outputs.
 *
 * A value is a graph node, or a tensor known at import time (initializers,
 * Constant, and everything computed only from those: shapes, the arguments
 * of Reshape/Slice/Expand...). Converters that need an input's value (a
 * shape, axes, pads) read it with onnx_in_const and fail clearly when it is
 * not known. A converter may produce a constant directly (Shape does); when
 * every input of a node is constant and the converter built graph nodes,
 * the importer evaluates them at once and stores the results as constants
 * (constant folding), so shape subgraphs never reach the tape.
 */
#ifndef NB_ONNX_CONVERT_H
#define NB_ONNX_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "graph/graph.h"
#include "graph/nn.h"
#include "onnx.pb-c.h" /* generated at build time from onnx.proto */
#include "tensor/tensor.h"

/* One value of the ONNX graph during import. */
typedef struct onnx_value {
    nb_node *node;   /* in the graph; NULL until needed for a constant */
    nb_tensor konst; /* konst.buf != NULL: known at import time */
    bool present;    /* false for an omitted optional input ("" name) */
} onnx_value;

/* The node being converted. */
typedef struct onnx_node_ctx {
    nb_graph *g;
    const Onnx__NodeProto *node;
    int64_t opset;          /* of the node's domain */
    int n_in, n_out;
    onnx_value **in;        /* n_in entries; in[i]->present false when omitted */
    onnx_value **out;       /* n_out entries to fill: .node or .konst */
    void *importer;         /* the importer's state (for the helpers) */
} onnx_node_ctx;

typedef nb_status (*onnx_convert_fn)(onnx_node_ctx *c);

/* A registry row: op_type (default domain "" / "ai.onnx" unless domain is
 * set) converted by fn for opsets [since, until] (until 0: no bound). */
typedef struct onnx_op_entry {
    const char *domain; /* NULL: the default domain */
    const char *op_type;
    int since, until;
    onnx_convert_fn fn;
} onnx_op_entry;

/* Each family file defines one table ending with a zeroed row; the importer
 * searches them all (models/onnx_ops.c lists them). */
extern const onnx_op_entry nb_onnx_ops_nn[];      /* Conv, pools, norms, activations, Gemm ... */
extern const onnx_op_entry nb_onnx_ops_math[];    /* elementwise arithmetic, reductions, MatMul ... */
extern const onnx_op_entry nb_onnx_ops_shape[];   /* Reshape, Transpose, Slice, Gather, Concat ... */
extern const onnx_op_entry nb_onnx_ops_rnn[];     /* LSTM, GRU, RNN */
extern const onnx_op_entry nb_onnx_ops_misc[];    /* Constant*, Cast, Range, TopK, OneHot, losses ... */
extern const onnx_op_entry nb_onnx_ops_signal[];  /* DFT, STFT, MelWeightMatrix, windows */
extern const onnx_op_entry nb_onnx_ops_resample[]; /* Resize, Upsample, GridSample */
extern const onnx_op_entry nb_onnx_ops_einsum[];  /* Einsum */
extern const onnx_op_entry nb_onnx_ops_quant[];   /* (De)QuantizeLinear, QLinear*, *Integer, training ops */
extern const onnx_op_entry nb_onnx_ops_pool[];    /* MaxPool, AveragePool, global and Lp pools, MaxUnpool */
extern const onnx_op_entry nb_onnx_ops_linalg[];  /* Det */
extern const onnx_op_entry nb_onnx_ops_text[];    /* TfIdfVectorizer */
extern const onnx_op_entry nb_onnx_ops_roi[];     /* RoiAlign */

/* Whether node n is a Conv into which the importer fused a Relu or Clip
 * (onnx_fuse.c), and then its bounds. */
bool onnx_fused_clamp(const Onnx__NodeProto *n, float *lo, float *hi);

/* The converter for (domain, op_type) at opset, or NULL. */
const onnx_op_entry *nb_onnx_find_op(const char *domain, const char *op_type, int64_t opset);

/* ---- failing ------------------------------------------------------------ */

/* Record an error naming the node ("Conv 'conv1' (opset 13): ...") and
 * return s. */
nb_status onnx_fail(onnx_node_ctx *c, nb_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- attributes ------------------------------------------------------- */

const Onnx__AttributeProto *onnx_attr(const onnx_node_ctx *c, const char *name); /* NULL if absent */
int64_t onnx_attr_int(const onnx_node_ctx *c, const char *name, int64_t def);
double onnx_attr_float(const onnx_node_ctx *c, const char *name, double def);
/* The string (not NUL-terminated in protobuf: copied into buf), or def. */
const char *onnx_attr_string(const onnx_node_ctx *c, const char *name, const char *def, char *buf,
                             size_t size);
/* The ints/floats list: its length, *v pointing at the values; -1 if absent. */
int onnx_attr_ints(const onnx_node_ctx *c, const char *name, const int64_t **v);
int onnx_attr_floats(const onnx_node_ctx *c, const char *name, const float **v);
/* A tensor attribute (Constant's value) as a new tensor; NB_ERR_NOT_FOUND if absent. */
nb_status onnx_attr_tensor(const onnx_node_ctx *c, const char *name, nb_tensor *out);

/* ---- inputs and outputs ---------------------------------------------------- */

bool onnx_has_in(const onnx_node_ctx *c, int i); /* present (i < n_in and not omitted) */
/* Input i as a graph node (a constant becomes an nb_constant node once);
 * NULL (after onnx_fail) when absent. */
nb_node *onnx_in(onnx_node_ctx *c, int i);
/* Input i's value when known at import time, else NULL. */
const nb_tensor *onnx_in_const(const onnx_node_ctx *c, int i);
/* Input i's value as int64s (any integer dtype, at most max values), for
 * shapes/axes/pads; fails (naming the input) when it is not a constant. */
nb_status onnx_in_ints(onnx_node_ctx *c, int i, int64_t *v, int max, int *n);
/* Input i's dtype, rank and shape (graph node or constant). */
nb_dtype onnx_in_dtype(const onnx_node_ctx *c, int i);
int onnx_in_ndim(const onnx_node_ctx *c, int i);
const int64_t *onnx_in_shape(const onnx_node_ctx *c, int i);

/* Set output i to a graph node, or to a constant (the tensor is taken over:
 * the reference moves into the value). */
nb_status onnx_set_out(onnx_node_ctx *c, int i, nb_node *n);
nb_status onnx_set_out_const(onnx_node_ctx *c, int i, nb_tensor *t);

/* ONNX TensorProto data type -> nabla dtype; false when nabla has none. */
bool onnx_dtype(int32_t onnx_type, nb_dtype *out);

/* Normalise an ONNX axis (negative counts from the end) for rank r; false
 * when out of range. */
bool onnx_axis(int64_t axis, int r, int *out);

/* ---- importer internals (onnx_import.c, onnx_tensor.c, onnx_ops.c, onnx_run.c) */

/* Where onnx_tensor_from_proto finds a TensorProto's bytes besides the
 * message itself. */
typedef struct onnx_tensor_src {
    const char *dir;          /* the model's directory, for external data; NULL: not allowed */
    nb_buffer *file;          /* the mapped model file, when raw_data was left in it */
    size_t raw_off, raw_len;  /* raw_data at file->data + raw_off (raw_in_file) */
    bool raw_in_file;
} onnx_tensor_src;

/* A TensorProto to a tensor, every size checked first (what names it in
 * messages: "initializer 'w'"). Large raw data in the mapped file or an
 * external file is viewed in place when aligned, else copied. Every numeric
 * ONNX type but the complex ones has a nabla dtype (the 8/16-bit integers,
 * uint32/64, float16 and bfloat16 as storage dtypes); strings and the rest
 * give NB_ERR_UNSUPPORTED. src may be NULL. */
nb_status onnx_tensor_from_proto(const Onnx__TensorProto *t, const onnx_tensor_src *src,
                                 const char *what, nb_tensor *out);
/* "FLOAT16", "STRING" ... for messages. */
const char *onnx_dtype_name(int32_t onnx_type);
/* The directory of the model being imported (for external data), or NULL. */
const char *onnx_import_dir(const void *importer);
/* A converter asked for v's value and v is not a constant: when v is a graph
 * input, the importer rebuilds with that input's value baked in (the plan
 * is then specialised on it), as shape inputs of Reshape, Expand ... need. */
void onnx_import_want_value(void *importer, const onnx_value *v);

/* Where initializer k's raw_data lies in the serialized model (in_file:
 * left out of the message by onnx_strip_raw). */
typedef struct onnx_raw_ref {
    size_t off, len;
    bool in_file;
} onnx_raw_ref;
/* A copy of the serialized ModelProto data[0, size) without the raw_data
 * (at least min_len bytes) of its graph's initializers, so that unpacking it
 * copies no weights: *out (malloc'ed, *out_len bytes; NULL when nothing was
 * left out) and (*refs)[k] (malloc'ed, *n_refs entries) for initializer k in
 * message order. NB_ERR_FORMAT names the byte where the wire data is
 * malformed. */
nb_status onnx_strip_raw(const uint8_t *data, size_t size, size_t min_len, uint8_t **out,
                         size_t *out_len, onnx_raw_ref **refs, size_t *n_refs);

#endif
