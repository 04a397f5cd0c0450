/* Running ONNX models: load a .onnx file, build a nabla graph for the input
 * shapes given at run time, and run it on the CPU.
 *
 *   nb_onnx_model *m;
 *   nb_onnx_load("resnet18.onnx", &m);              // parse + check every op is supported
 *   nb_tensor in[1] = {image}, out[1];
 *   int n_out = 1;
 *   nb_onnx_run(m, 1, in, &n_out, out);              // graph built and planned per input shape
 *   ...
 *   nb_tensor_release(&out[0]); nb_onnx_free(m);
 *
 * Loading parses the protobuf (generated at build time from onnx.proto by
 * protoc-c), checks the opset (1 to 21; below 7 only where each node's
 * converter declares that opset) and that every node's op has a converter
 * for its opset, reporting the first unsupported one by name and opset.
 * Initializers become constants; large raw data stays in the memory-mapped
 * file when aligned for its element type (else it is copied and the copied
 * pages of the mapping given back), external data files are mapped from
 * beside the model. Conv followed by an inference BatchNormalization is
 * folded into the Conv's weights at load (Relu/Clip stay separate nodes).
 * A run with input shapes not seen before builds the graph for them
 * (dynamic dimensions resolved, shape subgraphs folded to constants),
 * compiles a memory plan and caches it (16 per model, least recently used
 * dropped); later runs with those shapes reuse it with no allocation but
 * the outputs. When a converter needs the value of a graph input (the shape
 * of a Reshape given as an input), the plan is built for that value and
 * cached per value. A session per thread (nb_onnx_session) serves
 * concurrent requests.
 *
 * Element types: every ONNX tensor type but STRING, the complex, float8 and
 * 4-bit ones. FLOAT, DOUBLE, INT32, INT64, UINT8 and BOOL are nabla's compute
 * dtypes (f32 ... bool); INT8, INT16, UINT16, UINT32, UINT64, FLOAT16 and
 * BFLOAT16 are its storage dtypes (i8, i16, u16, u32, u64, f16, bf16;
 * tensor/dtype.h). Graph inputs, outputs, initializers and constants keep
 * their type: nb_onnx_run takes inputs of exactly the declared dtypes and
 * returns outputs in the model's declared dtypes. Nodes compute in a wider
 * type: an input of a storage dtype is cast to i64 (integers) or f32 (f16,
 * bf16) before the node is converted, and an output computed in that type is
 * cast back to the storage dtype (the output's declared type, else the type
 * of the input ONNX ties it to), so Max(int8, int8) is int8, Equal of them
 * bool, Pow(float, uint32) float. Cast and CastLike convert directly between
 * any two of these types (to f16/bf16 rounded to nearest even, once).
 * Limits of computing wider: uint64 values of 2^63 and above compute as the
 * i64 with the same bits (addition, subtraction, multiplication and moves
 * are right, wrapping as uint64 does; comparisons, Max/Min, division, Mod and
 * right shifts of such values are not); float16/bfloat16 math runs in f32
 * and is rounded at each cast back, i.e. once per node (a node made of
 * several nabla ops, such as an expanded function, rounds only its result);
 * int8/int16/uint16/uint32 results wrap to
 * the narrow type on the cast back (Mul of int8 100 and 100 is 16). Ops whose
 * converters take only certain dtypes (QuantizeLinear's uint8 zero point...)
 * see the wide type and say so.
 */
#ifndef NB_ONNX_H
#define NB_ONNX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph/session.h"
#include "tensor/tensor.h"

typedef struct nb_onnx_model nb_onnx_model;

#define NB_ONNX_MAX_IO 64 /* inputs or outputs of a graph */

/* An input or output of the graph: name, element type, and dims (-1 for a
 * dynamic dimension, whose name is in dim_names[i], else NULL). ndim is -1
 * when the model declares no shape (any rank; an output without a type is
 * f32 of any rank). */
typedef struct nb_onnx_io {
    const char *name;
    nb_dtype dtype;
    int ndim;
    int64_t dims[NB_MAX_DIMS];
    const char *dim_names[NB_MAX_DIMS];
} nb_onnx_io;

/* io's dims as "(N,3,224,224)" (dim names, "?" where unnamed) or "(any rank)",
 * into buf; returns buf. */
const char *nb_onnx_io_str(const nb_onnx_io *io, char *buf, size_t size);

nb_status nb_onnx_load(const char *path, nb_onnx_model **out);
/* The same from bytes in memory (copied; external data is not allowed). */
nb_status nb_onnx_load_bytes(const void *data, size_t size, const char *what, nb_onnx_model **out);
void nb_onnx_free(nb_onnx_model *m);

int nb_onnx_num_inputs(const nb_onnx_model *m);   /* graph inputs that are not initializers */
int nb_onnx_num_outputs(const nb_onnx_model *m);
const nb_onnx_io *nb_onnx_input(const nb_onnx_model *m, int i);
const nb_onnx_io *nb_onnx_output(const nb_onnx_model *m, int i);

/* The model's nodes as in the file: their count, and node i's op type. */
int nb_onnx_num_nodes(const nb_onnx_model *m);
const char *nb_onnx_node_op_type(const nb_onnx_model *m, int i);

/* What `nabla info` prints: producer, ir and opset versions, node counts per
 * op type, parameter count (initializer elements), and FLOPs for the given
 * input shapes (or the declared ones with dynamic dims taken as 1). */
typedef struct nb_onnx_op_count {
    const char *op_type;
    int count;
} nb_onnx_op_count;
typedef struct nb_onnx_summary {
    const char *producer, *producer_version, *graph_name;
    int64_t ir_version, opset;
    int n_nodes, n_op_types;
    nb_onnx_op_count ops[256];
    int64_t params, param_bytes;
    double flops;
    int fused_bn, fused_act; /* nodes folded at load: BatchNormalization, Relu/Clip into Convs */
} nb_onnx_summary;
/* Everything but flops is filled even when building the graph for the FLOPs
 * fails (the status says why; flops is then -1). inputs NULL or n_in 0: the
 * declared shapes. */
nb_status nb_onnx_summarize(nb_onnx_model *m, int n_in, const nb_tensor *inputs, nb_onnx_summary *s);

/* Run with inputs in graph order (their dtypes must match the declared ones
 * exactly, storage dtypes included; shapes must
 * fit the declared dims, dynamic ones free). *n_out: room in outputs, set to
 * the number of outputs. Outputs are new contiguous tensors the caller
 * releases. Thread-safe only through sessions; this uses the model's own. */
nb_status nb_onnx_run(nb_onnx_model *m, int n_in, const nb_tensor *inputs, int *n_out,
                      nb_tensor *outputs);

/* A per-thread runner over a shared model (plans are shared, arenas not).
 * Free every session before the model. */
typedef struct nb_onnx_session nb_onnx_session;
nb_onnx_session *nb_onnx_session_new(nb_onnx_model *m);
nb_status nb_onnx_session_run(nb_onnx_session *s, int n_in, const nb_tensor *inputs, int *n_out,
                              nb_tensor *outputs);
void nb_onnx_session_free(nb_onnx_session *s);
/* Per-op timing (graph/session.h): on or off for the plans the session has
 * and will make (turning it on clears the totals). */
nb_status nb_onnx_session_set_profiling(nb_onnx_session *s, bool on);
/* The tape entries of the plan the session's last run used, with their
 * time totals; returns the count (fills at most max; 0 if not profiling). */
int nb_onnx_session_profile(const nb_onnx_session *s, nb_profile_entry *out, int max);

/* A serialized TensorProto file (the .pb files of ONNX test data) to a tensor. */
nb_status nb_onnx_read_tensor_file(const char *path, nb_tensor *out);

#endif
