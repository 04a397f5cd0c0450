/* The converter registry and the helpers converters use (onnx_convert.h):
 * finding the converter of (domain, op_type, opset) in the family tables
 * (onnx_ops_*.c), attributes, inputs and outputs of the node being
 * converted, and failing with a message that names the node.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "graph/graph_impl.h"
#include "models/onnx_convert.h"

/* ---- registry ------------------------------------------------------------ */

static bool is_default_domain(const char *d)
{
    return !d || !d[0] || strcmp(d, "ai.onnx") == 0;
}

static bool same_domain(const char *a, const char *b)
{
    if (is_default_domain(a) || is_default_domain(b))
        return is_default_domain(a) && is_default_domain(b);
    return strcmp(a, b) == 0;
}

static const onnx_op_entry *search(const onnx_op_entry *t, const char *domain, const char *op,
                                   int64_t opset)
{
    if (!t)
        return NULL;
    for (; t->op_type; t++)
        if (strcmp(t->op_type, op) == 0 && same_domain(t->domain, domain) && opset >= t->since &&
            (t->until == 0 || opset <= t->until) && t->fn)
            return t;
    return NULL;
}

const onnx_op_entry *nb_onnx_find_op(const char *domain, const char *op_type, int64_t opset)
{
    if (!op_type || !op_type[0])
        return NULL;
    const onnx_op_entry *tables[] = {nb_onnx_ops_nn,     nb_onnx_ops_math,     nb_onnx_ops_shape,
                                     nb_onnx_ops_rnn,    nb_onnx_ops_misc,     nb_onnx_ops_signal,
                                     nb_onnx_ops_einsum, nb_onnx_ops_resample, nb_onnx_ops_quant,
                                     nb_onnx_ops_pool,   nb_onnx_ops_linalg,   nb_onnx_ops_text,
                                     nb_onnx_ops_roi};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        const onnx_op_entry *e = search(tables[i], domain, op_type, opset);
        if (e)
            return e;
    }
    return NULL;
}

/* ---- failing ------------------------------------------------------------- */

static const char *node_name(const onnx_node_ctx *c)
{
    const char *n = c->node ? c->node->name : NULL;
    return n && n[0] ? n : "(unnamed)";
}

nb_status onnx_fail(onnx_node_ctx *c, nb_status s, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *op = c->node && c->node->op_type ? c->node->op_type : "?";
    return nb_error(s == NB_OK ? NB_ERR_ARG : s, "%s '%s' (opset %lld): %s", op, node_name(c),
                    (long long)c->opset, msg);
}

/* ---- attributes ------------------------------------------------------------ */

const Onnx__AttributeProto *onnx_attr(const onnx_node_ctx *c, const char *name)
{
    if (!c->node || !name)
        return NULL;
    for (size_t i = 0; i < c->node->n_attribute; i++) {
        const Onnx__AttributeProto *a = c->node->attribute[i];
        if (a && a->name && strcmp(a->name, name) == 0)
            return a;
    }
    return NULL;
}

int64_t onnx_attr_int(const onnx_node_ctx *c, const char *name, int64_t def)
{
    const Onnx__AttributeProto *a = onnx_attr(c, name);
    return a && a->has_i ? a->i : def;
}

double onnx_attr_float(const onnx_node_ctx *c, const char *name, double def)
{
    const Onnx__AttributeProto *a = onnx_attr(c, name);
    if (!a)
        return def;
    if (a->has_f)
        return a->f;
    if (a->has_i) /* some exporters write integral floats as ints */
        return (double)a->i;
    return def;
}

const char *onnx_attr_string(const onnx_node_ctx *c, const char *name, const char *def, char *buf,
                             size_t size)
{
    const Onnx__AttributeProto *a = onnx_attr(c, name);
    if (!a || !a->has_s || !buf || size == 0)
        return def;
    size_t n = a->s.len < size - 1 ? a->s.len : size - 1;
    if (n)
        memcpy(buf, a->s.data, n);
    buf[n] = '\0';
    return buf;
}

int onnx_attr_ints(const onnx_node_ctx *c, const char *name, const int64_t **v)
{
    const Onnx__AttributeProto *a = onnx_attr(c, name);
    if (!a)
        return -1;
    *v = a->ints;
    return a->n_ints > 1u << 30 ? -1 : (int)a->n_ints;
}

int onnx_attr_floats(const onnx_node_ctx *c, const char *name, const float **v)
{
    const Onnx__AttributeProto *a = onnx_attr(c, name);
    if (!a)
        return -1;
    *v = a->floats;
    return a->n_floats > 1u << 30 ? -1 : (int)a->n_floats;
}

nb_status onnx_attr_tensor(const onnx_node_ctx *c, const char *name, nb_tensor *out)
{
    const Onnx__AttributeProto *a = onnx_attr(c, name);
    if (!a || !a->t)
        return nb_error(NB_ERR_NOT_FOUND, "%s '%s': no tensor attribute '%s'",
                        c->node && c->node->op_type ? c->node->op_type : "?", node_name(c), name);
    char what[300];
    snprintf(what, sizeof what, "attribute '%s' of %s '%s'", name,
             c->node->op_type ? c->node->op_type : "?", node_name(c));
    onnx_tensor_src src = {.dir = onnx_import_dir(c->importer)};
    return onnx_tensor_from_proto(a->t, &src, what, out);
}

/* ---- inputs and outputs ------------------------------------------------------ */

bool onnx_has_in(const onnx_node_ctx *c, int i)
{
    return i >= 0 && i < c->n_in && c->in[i] && c->in[i]->present;
}

/* A CONST node over t without copying when t is a contiguous CPU tensor (it
 * may view the mapped model file); otherwise a contiguous copy. */
static nb_node *const_node(nb_graph *g, const nb_tensor *t)
{
    if (!nb_tensor_is_contiguous(t) || t->buf->device.type != NB_DEVICE_CPU)
        return nb_constant(g, t);
    nb_node *n = nb_graph_add_node(g, NB_OP_CONST, 0, NULL, NULL, 0, t->dtype, t->ndim, t->shape);
    if (!nb_node_is_poison(n))
        nb_tensor_ref(&n->value, t);
    return n;
}

nb_node *onnx_in(onnx_node_ctx *c, int i)
{
    if (!onnx_has_in(c, i)) {
        onnx_fail(c, NB_ERR_ARG, "input %d is required but %s", i,
                  i < c->n_in ? "omitted" : "not given");
        nb_graph_fail(c->g, NB_ERR_ARG, "%s", nb_last_error());
        return NULL;
    }
    onnx_value *v = c->in[i];
    if (!v->node && v->konst.buf)
        v->node = const_node(c->g, &v->konst);
    if (!v->node)
        return nb_graph_fail(c->g, NB_ERR_STATE, "%s '%s': input %d has no value",
                             c->node->op_type ? c->node->op_type : "?", node_name(c), i);
    return v->node;
}

const nb_tensor *onnx_in_const(const onnx_node_ctx *c, int i)
{
    if (!onnx_has_in(c, i))
        return NULL;
    if (!c->in[i]->konst.buf) {
        onnx_import_want_value(c->importer, c->in[i]);
        return NULL;
    }
    return &c->in[i]->konst;
}

nb_status onnx_in_ints(onnx_node_ctx *c, int i, int64_t *v, int max, int *n)
{
    *n = 0;
    if (!onnx_has_in(c, i))
        return onnx_fail(c, NB_ERR_ARG, "input %d is required but omitted", i);
    const nb_tensor *t = onnx_in_const(c, i);
    if (!t)
        return onnx_fail(c, NB_ERR_UNSUPPORTED,
                         "input %d must be known when the model is imported (a constant or "
                         "computed from constants)",
                         i);
    if (nb_dtype_is_float(t->dtype))
        return onnx_fail(c, NB_ERR_DTYPE, "input %d must be integers, got %s", i,
                         nb_dtype_name(t->dtype));
    int64_t numel = nb_tensor_numel(t);
    if (numel > max)
        return onnx_fail(c, NB_ERR_SHAPE, "input %d has %lld values, at most %d allowed", i,
                         (long long)numel, max);
    for (int64_t k = 0; k < numel; k++)
        v[k] = (int64_t)nb_tensor_get_flat(t, k);
    if (t->dtype == NB_I64 && nb_tensor_is_contiguous(t)) /* exact beyond 2^53 */
        memcpy(v, nb_tensor_data(t), (size_t)numel * sizeof(int64_t));
    *n = (int)numel;
    return NB_OK;
}

nb_dtype onnx_in_dtype(const onnx_node_ctx *c, int i)
{
    if (!onnx_has_in(c, i))
        return NB_F32;
    const onnx_value *v = c->in[i];
    return v->konst.buf ? v->konst.dtype : v->node ? nb_node_dtype(v->node) : NB_F32;
}

int onnx_in_ndim(const onnx_node_ctx *c, int i)
{
    if (!onnx_has_in(c, i))
        return 0;
    const onnx_value *v = c->in[i];
    return v->konst.buf ? v->konst.ndim : v->node ? nb_node_ndim(v->node) : 0;
}

const int64_t *onnx_in_shape(const onnx_node_ctx *c, int i)
{
    static const int64_t none[NB_MAX_DIMS] = {0};
    if (!onnx_has_in(c, i))
        return none;
    const onnx_value *v = c->in[i];
    return v->konst.buf ? v->konst.shape : v->node ? nb_node_shape(v->node) : none;
}

nb_status onnx_set_out(onnx_node_ctx *c, int i, nb_node *n)
{
    if (i < 0 || i >= c->n_out)
        return onnx_fail(c, NB_ERR_ARG, "output %d does not exist (the node has %d)", i, c->n_out);
    if (!n || nb_node_is_poison(n) || nb_graph_status(c->g) != NB_OK) {
        nb_status s = nb_graph_status(c->g);
        if (s == NB_OK) {
            nb_graph_fail(c->g, NB_ERR_STATE, "no node for output %d", i);
            s = NB_ERR_STATE;
        }
        return onnx_fail(c, s, "%s", nb_graph_error(c->g));
    }
    onnx_value *v = c->out[i];
    nb_tensor_release(&v->konst);
    v->node = n;
    return NB_OK;
}

nb_status onnx_set_out_const(onnx_node_ctx *c, int i, nb_tensor *t)
{
    if (i < 0 || i >= c->n_out) {
        nb_tensor_release(t);
        return onnx_fail(c, NB_ERR_ARG, "output %d does not exist (the node has %d)", i, c->n_out);
    }
    if (!t || !t->buf)
        return onnx_fail(c, NB_ERR_ARG, "output %d: empty tensor", i);
    onnx_value *v = c->out[i];
    nb_tensor_release(&v->konst);
    v->konst = *t;
    v->node = NULL;
    *t = (nb_tensor){0};
    return NB_OK;
}

/* ---- dtypes and axes ------------------------------------------------------- */

bool onnx_dtype(int32_t onnx_type, nb_dtype *out)
{
    switch (onnx_type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: *out = NB_F32; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: *out = NB_F64; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: *out = NB_I32; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: *out = NB_I64; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: *out = NB_U8; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: *out = NB_BOOL; return true;
    default: return false;
    }
}

const char *onnx_dtype_name(int32_t t)
{
    static const char *names[] = {"UNDEFINED", "FLOAT",  "UINT8",     "INT8",      "UINT16",
                                  "INT16",     "INT32",  "INT64",     "STRING",    "BOOL",
                                  "FLOAT16",   "DOUBLE", "UINT32",    "UINT64",    "COMPLEX64",
                                  "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ",
                                  "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4", "INT4"};
    if (t >= 0 && (size_t)t < sizeof(names) / sizeof(names[0]))
        return names[t];
    return "unknown type";
}

bool onnx_axis(int64_t axis, int r, int *out)
{
    if (axis < -(int64_t)r || axis >= (int64_t)r)
        return false;
    *out = (int)(axis < 0 ? axis + r : axis);
    return true;
}
