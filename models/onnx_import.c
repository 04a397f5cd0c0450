/* Loading ONNX models (models/onnx.h; the model struct is in onnx_model.h).
 *
 * Load: the file is mapped; the initializers' large raw_data is left out of
 * the message before protobuf-c unpacks it (onnx_strip_raw), so weights are
 * never copied: they become tensors viewing the mapping. Then the checks:
 * ir_version and opsets, every node's op has a converter for its opset (else
 * an error naming op, opset and node), every value has one producer, every
 * input of a node is produced, the nodes sort topologically (a cycle is an
 * error), the graph inputs that are not initializers are the real inputs.
 * Every name becomes a value index, so building a graph needs no lookups.
 * Last, Conv + BatchNormalization pairs are folded (onnx_fuse.c). Building
 * and running graphs is onnx_run.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/onnx_model.h"
#include "tensor/fileio.h"

#define MAX_MODEL_BYTES ((size_t)1 << 31) /* protobuf's own limit */
#define RAW_IN_PLACE_MIN 64               /* raw_data this long stays in the mapped file */
#define IR_MIN 3
#define IR_MAX 10
#define OPSET_MIN 1 /* below 7 only where every node's converter declares that opset */
#define OPSET_MAX 21

/* ---- name -> value index (open addressing, during load only) ----------- */

typedef struct name_map {
    size_t cap;
    int *slot; /* value index + 1; 0 empty */
    const char **names;
} name_map;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int map_find(const name_map *nm, const char *name)
{
    size_t i = hash_str(name) & (nm->cap - 1);
    for (; nm->slot[i]; i = (i + 1) & (nm->cap - 1))
        if (strcmp(nm->names[nm->slot[i] - 1], name) == 0)
            return nm->slot[i] - 1;
    return -1;
}

static void map_put(name_map *nm, const char *name, int v)
{
    size_t i = hash_str(name) & (nm->cap - 1);
    while (nm->slot[i])
        i = (i + 1) & (nm->cap - 1);
    nm->slot[i] = v + 1;
}

/* ---- freeing ---------------------------------------------------------------- */

void nb_onnx_free(nb_onnx_model *m)
{
    if (!m)
        return;
    nb_onnx_session_free(m->own);
    onnx_plans_free(m);
    for (int k = 0; k < m->n_init; k++)
        nb_tensor_release(&m->init[k]);
    free(m->init);
    free(m->init_value);
    free(m->value_names);
    free(m->nodes);
    free(m->conv);
    free(m->node_opset);
    free(m->node_io);
    free(m->node_io_at);
    free(m->value_type);
    onnx_fuse_free(m);
    if (m->proto)
        onnx__model_proto__free_unpacked(m->proto, NULL);
    nb_buffer_release(m->file);
    pthread_mutex_destroy(&m->lock);
    free(m->dir);
    free(m->what);
    free(m);
}

/* ---- checks ------------------------------------------------------------------ */

/* A ValueInfoProto to io ("input"/"output" in messages). */
static nb_status read_io(const nb_onnx_model *m, const Onnx__ValueInfoProto *vi, const char *kind,
                         int idx, nb_onnx_io *io)
{
    memset(io, 0, sizeof(*io));
    if (!vi || !vi->name || !vi->name[0])
        return nb_error(NB_ERR_FORMAT, "onnx_load '%s': graph %s %d has no name", m->what, kind,
                        idx);
    io->name = vi->name;
    io->ndim = -1;
    const Onnx__TypeProto *tp = vi->type;
    if (!tp) {
        if (kind[0] == 'i')
            return nb_error(NB_ERR_FORMAT, "onnx_load '%s': %s '%s' has no type", m->what, kind,
                            io->name);
        return NB_OK; /* an output's type is optional: f32 of unknown rank */
    }
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return nb_error(NB_ERR_UNSUPPORTED,
                        "onnx_load '%s': %s '%s' is not a tensor (sequence, map, optional and "
                        "sparse types are not supported)",
                        m->what, kind, io->name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    int32_t et = tt->has_elem_type ? tt->elem_type : 0;
    if (!onnx_storage_dtype(et, &io->dtype))
        return nb_error(et == ONNX__TENSOR_PROTO__DATA_TYPE__UNDEFINED ? NB_ERR_FORMAT
                                                                       : NB_ERR_UNSUPPORTED,
                        "onnx_load '%s': %s '%s' has element type %s, which nabla does not support",
                        m->what, kind, io->name, onnx_dtype_name(et));
    if (!tt->shape)
        return NB_OK;
    if (tt->shape->n_dim > NB_MAX_DIMS)
        return nb_error(NB_ERR_UNSUPPORTED, "onnx_load '%s': %s '%s' has %zu dims, at most %d",
                        m->what, kind, io->name, tt->shape->n_dim, NB_MAX_DIMS);
    io->ndim = (int)tt->shape->n_dim;
    for (int i = 0; i < io->ndim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        io->dims[i] = -1;
        if (d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (d->dim_value < 0)
                return nb_error(NB_ERR_FORMAT, "onnx_load '%s': %s '%s' dim %d is negative (%lld)",
                                m->what, kind, io->name, i, (long long)d->dim_value);
            io->dims[i] = d->dim_value;
        } else if (d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                   d->dim_param && d->dim_param[0]) {
            io->dim_names[i] = d->dim_param;
        }
    }
    return NB_OK;
}

/* The opset of domain d in the model; -1 when not imported. */
static int64_t domain_opset(const Onnx__ModelProto *p, const char *d)
{
    for (size_t i = 0; i < p->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = p->opset_import[i];
        if (!o)
            continue;
        bool match = onnx_is_default_domain(d) ? onnx_is_default_domain(o->domain)
                                          : o->domain && strcmp(o->domain, d) == 0;
        if (match)
            return o->has_version ? o->version : 1;
    }
    return -1;
}

const char *onnx_node_label(const Onnx__NodeProto *n, int idx, char *buf, size_t size)
{
    if (n->name && n->name[0])
        snprintf(buf, size, "%s", n->name);
    else
        snprintf(buf, size, "#%d", idx);
    return buf;
}

/* Versions, then a converter for every node at its domain's opset. */
static nb_status check_ops(nb_onnx_model *m)
{
    const Onnx__ModelProto *p = m->proto;
    if (!p->has_ir_version)
        return nb_error(NB_ERR_FORMAT, "onnx_load '%s': no ir_version (not an ONNX model?)",
                        m->what);
    if (p->ir_version < IR_MIN || p->ir_version > IR_MAX)
        return nb_error(NB_ERR_UNSUPPORTED, "onnx_load '%s': ir_version %lld is outside %d to %d",
                        m->what, (long long)p->ir_version, IR_MIN, IR_MAX);
    m->opset = domain_opset(p, ""); /* -1: only other domains' ops (checked per node) */
    if (m->opset >= 0 && (m->opset < OPSET_MIN || m->opset > OPSET_MAX))
        return nb_error(NB_ERR_UNSUPPORTED,
                        "onnx_load '%s': opset %lld of the default domain is outside %d to %d",
                        m->what, (long long)m->opset, OPSET_MIN, OPSET_MAX);
    const Onnx__GraphProto *g = m->graph;
    for (size_t j = 0; j < g->n_node; j++) {
        const Onnx__NodeProto *n = g->node[j];
        char lb[128];
        if (!n || !n->op_type || !n->op_type[0])
            return nb_error(NB_ERR_FORMAT, "onnx_load '%s': node %zu has no op_type", m->what, j);
        onnx_node_label(n, (int)j, lb, sizeof lb);
        int64_t opset = domain_opset(p, n->domain);
        if (opset < 0)
            return nb_error(onnx_is_default_domain(n->domain) ? NB_ERR_FORMAT : NB_ERR_UNSUPPORTED,
                            "onnx_load '%s': node '%s' (%s) is in domain '%s', which the model "
                            "does not import",
                            m->what, lb, n->op_type, onnx_str_or_empty(n->domain));
        if (!nb_onnx_find_op(n->domain, n->op_type, opset)) {
            if (onnx_is_default_domain(n->domain))
                return nb_error(NB_ERR_UNSUPPORTED,
                                "onnx_load '%s': unsupported op '%s' (opset %lld) at node '%s'",
                                m->what, n->op_type, (long long)opset, lb);
            return nb_error(NB_ERR_UNSUPPORTED,
                            "onnx_load '%s': unsupported op '%s' (domain '%s', opset %lld) at "
                            "node '%s'",
                            m->what, n->op_type, n->domain, (long long)opset, lb);
        }
    }
    return NB_OK;
}

/* Every name a value index; real inputs; node inputs resolved; outputs. */
static nb_status index_values(nb_onnx_model *m, name_map *nm)
{
    const Onnx__GraphProto *g = m->graph;
    size_t n_node_io = 0, total = g->n_initializer + g->n_input;
    for (size_t j = 0; j < g->n_node; j++) {
        total += g->node[j]->n_output;
        n_node_io += g->node[j]->n_input + g->node[j]->n_output;
    }
    if (total > INT_MAX / 4 || n_node_io > INT_MAX / 4)
        return nb_error(NB_ERR_FORMAT, "onnx_load '%s': too many values", m->what);
    nm->cap = 16;
    while (nm->cap < 2 * total + 2)
        nm->cap *= 2;
    nm->slot = calloc(nm->cap, sizeof(int));
    m->value_names = calloc(total + 1, sizeof(char *));
    m->node_io = malloc((n_node_io + 1) * sizeof(int));
    m->node_io_at = malloc((g->n_node + 1) * sizeof(int));
    m->init_value = malloc((g->n_initializer + 1) * sizeof(int));
    if (!nm->slot || !m->value_names || !m->node_io || !m->node_io_at || !m->init_value)
        return nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", m->what);
    nm->names = m->value_names;
    int nv = 0;
#define NEW_VALUE(nm_, name_) (m->value_names[nv] = (name_), map_put((nm_), (name_), nv), nv++)
    for (size_t k = 0; k < g->n_initializer; k++) {
        const char *name = g->initializer[k] ? g->initializer[k]->name : NULL;
        if (!name || !name[0])
            return nb_error(NB_ERR_FORMAT, "onnx_load '%s': initializer %zu has no name", m->what,
                            k);
        if (map_find(nm, name) >= 0)
            return nb_error(NB_ERR_FORMAT, "onnx_load '%s': initializer '%s' appears twice",
                            m->what, name);
        m->init_value[k] = nv;
        NEW_VALUE(nm, name);
    }
    m->n_in = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *vi = g->input[i];
        if (vi && vi->name && map_find(nm, vi->name) >= 0) {
            if (map_find(nm, vi->name) >= (int)g->n_initializer)
                return nb_error(NB_ERR_FORMAT, "onnx_load '%s': graph input '%s' appears twice",
                                m->what, vi->name);
            continue; /* an initializer: not a real input */
        }
        if (m->n_in == NB_ONNX_MAX_IO)
            return nb_error(NB_ERR_UNSUPPORTED, "onnx_load '%s': more than %d inputs", m->what,
                            NB_ONNX_MAX_IO);
        nb_status s = read_io(m, vi, "input", (int)i, &m->in[m->n_in]);
        if (s != NB_OK)
            return s;
        m->in_value[m->n_in++] = nv;
        NEW_VALUE(nm, vi->name);
    }
    /* node outputs: one producer per name; omitted outputs get a value of their own */
    int at = 0;
    for (size_t j = 0; j < g->n_node; j++) {
        const Onnx__NodeProto *n = g->node[j];
        m->node_io_at[j] = at;
        at += (int)n->n_input;
        for (size_t o = 0; o < n->n_output; o++) {
            const char *name = onnx_str_or_empty(n->output[o]);
            if (name[0] && map_find(nm, name) >= 0) {
                char lb[128];
                return nb_error(NB_ERR_FORMAT,
                                "onnx_load '%s': value '%s' is produced twice (again by node '%s' "
                                "(%s))",
                                m->what, name, onnx_node_label(n, (int)j, lb, sizeof lb),
                                n->op_type);
            }
            m->node_io[at++] = nv;
            if (name[0])
                NEW_VALUE(nm, name);
            else
                m->value_names[nv++] = "";
        }
    }
    m->node_io_at[g->n_node] = at;
    m->n_values = nv;
#undef NEW_VALUE
    /* node inputs */
    for (size_t j = 0; j < g->n_node; j++) {
        const Onnx__NodeProto *n = g->node[j];
        for (size_t i = 0; i < n->n_input; i++) {
            const char *name = onnx_str_or_empty(n->input[i]);
            int v = name[0] ? map_find(nm, name) : -1;
            if (name[0] && v < 0) {
                char lb[128];
                return nb_error(NB_ERR_FORMAT,
                                "onnx_load '%s': input '%s' of node '%s' (%s) is not produced by "
                                "any node, initializer or graph input",
                                m->what, name, onnx_node_label(n, (int)j, lb, sizeof lb),
                                n->op_type);
            }
            m->node_io[m->node_io_at[j] + (int)i] = v;
        }
    }
    /* graph outputs */
    m->n_out = 0;
    for (size_t i = 0; i < g->n_output; i++) {
        if (m->n_out == NB_ONNX_MAX_IO)
            return nb_error(NB_ERR_UNSUPPORTED, "onnx_load '%s': more than %d outputs", m->what,
                            NB_ONNX_MAX_IO);
        nb_status s = read_io(m, g->output[i], "output", (int)i, &m->out[m->n_out]);
        if (s != NB_OK)
            return s;
        int v = map_find(nm, m->out[m->n_out].name);
        if (v < 0)
            return nb_error(NB_ERR_FORMAT,
                            "onnx_load '%s': graph output '%s' is not produced by any node, "
                            "initializer or input",
                            m->what, m->out[m->n_out].name);
        m->out_value[m->n_out++] = v;
    }
    if (m->n_out == 0)
        return nb_error(NB_ERR_FORMAT, "onnx_load '%s': the graph has no outputs", m->what);
    return NB_OK;
}

/* Kahn's algorithm over the nodes; m->nodes etc. in the sorted order. */
static nb_status sort_nodes(nb_onnx_model *m)
{
    const Onnx__GraphProto *g = m->graph;
    int nn = (int)g->n_node, nv = m->n_values;
    int *producer = malloc(((size_t)nv + 1) * sizeof(int));
    int *indeg = calloc((size_t)nn + 1, sizeof(int));
    int *n_cons = calloc((size_t)nv + 2, sizeof(int)); /* CSR of consumers per value */
    int *cons = malloc(((size_t)m->node_io_at[nn] + 1) * sizeof(int));
    int *queue = malloc(((size_t)nn + 1) * sizeof(int));
    int *io_sorted = malloc(((size_t)m->node_io_at[nn] + 1) * sizeof(int));
    int *at_sorted = malloc(((size_t)nn + 1) * sizeof(int));
    m->nodes = malloc(((size_t)nn + 1) * sizeof(*m->nodes));
    m->conv = malloc(((size_t)nn + 1) * sizeof(*m->conv));
    m->node_opset = malloc(((size_t)nn + 1) * sizeof(int64_t));
    nb_status st = NB_OK;
    if (!producer || !indeg || !n_cons || !cons || !queue || !io_sorted || !at_sorted ||
        !m->nodes || !m->conv || !m->node_opset) {
        st = nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", m->what);
        goto done;
    }
    for (int v = 0; v < nv; v++)
        producer[v] = -1;
    for (int j = 0; j < nn; j++)
        for (size_t o = 0; o < g->node[j]->n_output; o++)
            producer[m->node_io[m->node_io_at[j] + (int)g->node[j]->n_input + (int)o]] = j;
    for (int j = 0; j < nn; j++)
        for (size_t i = 0; i < g->node[j]->n_input; i++) {
            int v = m->node_io[m->node_io_at[j] + (int)i];
            if (v >= 0 && producer[v] >= 0) {
                indeg[j]++;
                n_cons[v + 2]++;
            }
        }
    for (int v = 0; v < nv; v++)
        n_cons[v + 2] += n_cons[v + 1];
    for (int j = 0; j < nn; j++)
        for (size_t i = 0; i < g->node[j]->n_input; i++) {
            int v = m->node_io[m->node_io_at[j] + (int)i];
            if (v >= 0 && producer[v] >= 0)
                cons[n_cons[v + 1]++] = j;
        }
    /* now consumers of v are cons[n_cons[v] .. n_cons[v + 1]) */
    int head = 0, tail = 0;
    for (int j = 0; j < nn; j++)
        if (indeg[j] == 0)
            queue[tail++] = j;
    int at = 0;
    while (head < tail) {
        int j = queue[head++];
        const Onnx__NodeProto *n = g->node[j];
        int k = head - 1;
        m->nodes[k] = n;
        m->node_opset[k] = domain_opset(m->proto, n->domain);
        m->conv[k] = nb_onnx_find_op(n->domain, n->op_type, m->node_opset[k]);
        at_sorted[k] = at;
        int cnt = (int)(n->n_input + n->n_output);
        memcpy(io_sorted + at, m->node_io + m->node_io_at[j], (size_t)cnt * sizeof(int));
        at += cnt;
        for (size_t o = 0; o < n->n_output; o++) {
            int v = m->node_io[m->node_io_at[j] + (int)n->n_input + (int)o];
            for (int c = n_cons[v]; c < n_cons[v + 1]; c++)
                if (--indeg[cons[c]] == 0)
                    queue[tail++] = cons[c];
        }
    }
    if (tail < nn) {
        for (int j = 0; j < nn; j++)
            if (indeg[j] > 0) {
                char lb[128];
                st = nb_error(NB_ERR_FORMAT,
                              "onnx_load '%s': the graph has a cycle (node '%s' (%s) is on it or "
                              "after it)",
                              m->what, onnx_node_label(g->node[j], j, lb, sizeof lb),
                              g->node[j]->op_type);
                break;
            }
        goto done;
    }
    at_sorted[nn] = at;
    memcpy(m->node_io, io_sorted, (size_t)at * sizeof(int));
    memcpy(m->node_io_at, at_sorted, ((size_t)nn + 1) * sizeof(int));
    m->n_nodes = nn;
done:
    free(producer);
    free(indeg);
    free(n_cons);
    free(cons);
    free(queue);
    free(io_sorted);
    free(at_sorted);
    return st;
}

/* The initializers as tensors (weights viewing the mapped file). */
static nb_status read_initializers(nb_onnx_model *m, const onnx_raw_ref *refs, size_t n_refs)
{
    const Onnx__GraphProto *g = m->graph;
    m->init = calloc(g->n_initializer + 1, sizeof(nb_tensor));
    if (!m->init)
        return nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", m->what);
    m->n_init = (int)g->n_initializer;
    for (size_t k = 0; k < g->n_initializer; k++) {
        onnx_tensor_src src = {.dir = m->dir, .file = m->file};
        if (refs && k < n_refs && refs[k].in_file) {
            src.raw_in_file = true;
            src.raw_off = refs[k].off;
            src.raw_len = refs[k].len;
        }
        char what[PATH_MAX + 300];
        snprintf(what, sizeof what, "onnx_load '%s': initializer '%s'", m->what,
                 g->initializer[k]->name);
        nb_status s = onnx_tensor_from_proto(g->initializer[k], &src, what, &m->init[k]);
        if (s != NB_OK)
            return s;
        m->params += nb_tensor_numel(&m->init[k]);
        m->param_bytes += (int64_t)nb_tensor_nbytes(&m->init[k]);
    }
    m->n_init_model = m->n_init;
    return NB_OK;
}

/* The declared element type of a ValueInfoProto, or -1. */
static int declared_type(const Onnx__ValueInfoProto *vi)
{
    nb_dtype dt;
    if (!vi || !vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
        !vi->type->tensor_type || !vi->type->tensor_type->has_elem_type ||
        !onnx_storage_dtype(vi->type->tensor_type->elem_type, &dt))
        return -1;
    return (int)dt;
}

/* m->value_type: what the model declares for each value (after fusion, so
 * that every value has an entry). The importer narrows a node's output to a
 * declared storage dtype (onnx_run.c). */
static nb_status declare_types(nb_onnx_model *m, const name_map *map)
{
    const Onnx__GraphProto *g = m->graph;
    name_map names = *map;
    names.names = m->value_names; /* the fusions may have moved the array */
    const name_map *nm = &names;
    m->value_type = malloc(((size_t)m->n_values + 1) * sizeof(int));
    if (!m->value_type)
        return nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", m->what);
    for (int v = 0; v < m->n_values; v++)
        m->value_type[v] = -1;
    for (size_t i = 0; i < g->n_value_info; i++) {
        const Onnx__ValueInfoProto *vi = g->value_info[i];
        int v = vi && vi->name ? map_find(nm, vi->name) : -1;
        if (v >= 0 && v < m->n_values)
            m->value_type[v] = declared_type(vi);
    }
    for (int i = 0; i < m->n_in; i++)
        m->value_type[m->in_value[i]] = (int)m->in[i].dtype;
    for (int i = 0; i < m->n_out; i++) {
        int t = declared_type(g->output[i]);
        if (t >= 0)
            m->value_type[m->out_value[i]] = t;
    }
    for (int k = 0; k < m->n_init; k++)
        if (m->init[k].buf && m->init_value[k] < m->n_values)
            m->value_type[m->init_value[k]] = (int)m->init[k].dtype;
    return NB_OK;
}

/* Parse file (a buffer the model keeps) and check everything. */
static nb_status load_common(nb_buffer *file, const char *dir, const char *what,
                             nb_onnx_model **out)
{
    *out = NULL;
    nb_onnx_model *m = calloc(1, sizeof(*m));
    if (!m) {
        nb_buffer_release(file);
        return nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", what);
    }
    pthread_mutex_init(&m->lock, NULL);
    m->file = file;
    m->what = strdup(what);
    m->dir = dir ? strdup(dir) : NULL;
    if (!m->what || (dir && !m->dir)) {
        nb_onnx_free(m);
        return nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", what);
    }
    uint8_t *stripped;
    size_t stripped_len, n_refs;
    onnx_raw_ref *refs;
    nb_status s = onnx_strip_raw(file->data, file->nbytes, RAW_IN_PLACE_MIN, &stripped,
                                 &stripped_len, &refs, &n_refs);
    if (s != NB_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", nb_last_error());
        nb_onnx_free(m);
        return nb_error(s, "onnx_load '%s': not a valid ONNX model: %s", what, msg);
    }
    if (stripped)
        m->proto = onnx__model_proto__unpack(NULL, stripped_len, stripped);
    else
        m->proto = onnx__model_proto__unpack(NULL, file->nbytes, file->data);
    free(stripped);
    if (!m->proto) {
        free(refs);
        nb_onnx_free(m);
        return nb_error(NB_ERR_FORMAT,
                        "onnx_load '%s': not a valid ONNX model (the protobuf does not parse)",
                        what);
    }
    m->graph = m->proto->graph;
    if (!m->graph) {
        free(refs);
        nb_onnx_free(m);
        return nb_error(NB_ERR_FORMAT, "onnx_load '%s': the model has no graph", what);
    }
    name_map nm = {0};
    s = check_ops(m);
    if (s == NB_OK)
        s = index_values(m, &nm);
    if (s == NB_OK)
        s = sort_nodes(m);
    if (s == NB_OK)
        s = read_initializers(m, refs, n_refs);
    if (s == NB_OK && !getenv("NABLA_ONNX_NO_FUSE"))
        s = onnx_fuse_conv_bn(m);
    if (s == NB_OK && !getenv("NABLA_ONNX_NO_FUSE"))
        s = onnx_fuse_conv_act(m);
    if (s == NB_OK)
        s = declare_types(m, &nm);
    free(nm.slot);
    free(refs);
    if (s != NB_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", nb_last_error());
        nb_onnx_free(m);
        return nb_error(s, "%s", msg);
    }
    *out = m;
    return NB_OK;
}

static void unmap_file(void *data, void *ctx) { munmap(data, (size_t)(uintptr_t)ctx); }
static void free_copy(void *data, void *ctx) { free(data); }

nb_status nb_onnx_load(const char *path, nb_onnx_model **out)
{
    if (!out)
        return nb_error(NB_ERR_ARG, "onnx_load: no output pointer");
    *out = NULL;
    if (!path)
        return nb_error(NB_ERR_ARG, "onnx_load: no path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nb_error(errno == ENOENT ? NB_ERR_NOT_FOUND : NB_ERR_IO, "onnx_load '%s': %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return nb_error(NB_ERR_IO, "onnx_load '%s': not a regular file", path);
    }
    if (st.st_size == 0 || (uint64_t)st.st_size > MAX_MODEL_BYTES) {
        close(fd);
        return nb_error(NB_ERR_FORMAT, "onnx_load '%s': %lld bytes (a model is 1 byte to 2 GiB)",
                        path, (long long)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return nb_error(NB_ERR_IO, "onnx_load '%s': cannot map: %s", path, strerror(errno));
    nb_buffer *file;
    nb_status s = nb_buffer_wrap(map, size, (nb_device){NB_DEVICE_CPU, 0}, unmap_file,
                                 (void *)(uintptr_t)size, &file);
    if (s != NB_OK) {
        munmap(map, size);
        return s;
    }
    file->file_pages = true;
    char dir[PATH_MAX];
    return load_common(file, nb_path_dir(path, dir, sizeof dir), path, out);
}

nb_status nb_onnx_load_bytes(const void *data, size_t size, const char *what, nb_onnx_model **out)
{
    if (!out)
        return nb_error(NB_ERR_ARG, "onnx_load: no output pointer");
    *out = NULL;
    if (!what)
        what = "(memory)";
    if (!data || size == 0 || size > MAX_MODEL_BYTES)
        return nb_error(NB_ERR_FORMAT, "onnx_load '%s': %zu bytes (a model is 1 byte to 2 GiB)",
                        what, data ? size : 0);
    void *copy = NULL;
    if (posix_memalign(&copy, 64, size) != 0)
        return nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory for %zu bytes", what, size);
    memcpy(copy, data, size);
    nb_buffer *file;
    nb_status s = nb_buffer_wrap(copy, size, (nb_device){NB_DEVICE_CPU, 0}, free_copy, NULL, &file);
    if (s != NB_OK) {
        free(copy);
        return s;
    }
    return load_common(file, NULL, what, out);
}

/* ---- queries ------------------------------------------------------------------ */

int nb_onnx_num_inputs(const nb_onnx_model *m) { return m ? m->n_in : 0; }
int nb_onnx_num_outputs(const nb_onnx_model *m) { return m ? m->n_out : 0; }

const nb_onnx_io *nb_onnx_input(const nb_onnx_model *m, int i)
{
    return m && i >= 0 && i < m->n_in ? &m->in[i] : NULL;
}

const nb_onnx_io *nb_onnx_output(const nb_onnx_model *m, int i)
{
    return m && i >= 0 && i < m->n_out ? &m->out[i] : NULL;
}

int nb_onnx_num_nodes(const nb_onnx_model *m) { return m ? (int)m->graph->n_node : 0; }

const char *nb_onnx_node_op_type(const nb_onnx_model *m, int i)
{
    return m && i >= 0 && i < (int)m->graph->n_node ? m->graph->node[i]->op_type : NULL;
}
