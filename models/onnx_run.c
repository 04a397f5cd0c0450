/* Running ONNX models (models/onnx.h; the model struct is in onnx_model.h):
 * plans, sessions and the summary.
 *
 * A graph is built for each set of input shapes (a plan, cached in a small
 * LRU list shared by the sessions): graph inputs become nb_input nodes of
 * the given shapes, initializers constants (viewing their tensors, not
 * copying them), each node is converted in topological order, and a node
 * whose inputs are all constants is evaluated at once and becomes a constant
 * itself (constant folding: shape arithmetic never reaches the tape). The
 * graph outputs are compiled into one plan. A session (one per thread) keeps
 * an nb_session per plan it has used, so a run with known shapes feeds,
 * replays the tape and copies the outputs out, allocating nothing else.
 *
 * Storage dtypes (i8, i16, u16, u32, u64, f16, bf16): converters see only
 * compute dtypes. Before a node is converted, each input of a storage dtype
 * is cast to its compute dtype (nb_dtype_compute: integers to i64, f16/bf16
 * to f32; a constant is converted at once); after it, each output whose
 * dtype is that compute dtype is cast back to the storage dtype: the dtype
 * the model declares for the output (graph output, value_info) when it
 * declares one, else the dtype of the input ONNX ties the output's type to
 * (input 0; Where's input 1, OneHot's and QuantizeLinear's input 2), never
 * for outputs of a fixed type (the int64 indices of Shape, Size, ArgMax,
 * ArgMin, NonZero, NonMaxSuppression, and TopK's, Unique's and MaxPool's
 * outputs after the first; LayerNormalization's mean and deviation). So
 * Max(int8, int8) gives int8, Equal(int8, int8) bool, Pow(f32, u32) f32.
 * Cast and CastLike convert directly from and to every dtype.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/optable.h"
#include "graph/plan.h"
#include "models/onnx_model.h"

#define MAX_PLANS 16         /* input-shape signatures cached per model */
#define MAX_SESSION_PLANS 8  /* nb_sessions kept per onnx session */

/* The importer state a converter's ctx->importer points at. */
typedef struct onnx_build {
    nb_onnx_model *m;
    onnx_value *vals;
    bool *want;  /* per value: a converter asked for its value, which was not known */
    onnx_value *wide; /* the node's inputs widened from storage dtypes (max_io entries) */
    int *wide_of;     /* wide[i] stands for vals[wide_of[i]] */
    int n_wide;
} onnx_build;

/* onnx_convert.h: the model's directory, for external data. */
const char *onnx_import_dir(const void *importer)
{
    return importer ? ((const onnx_build *)importer)->m->dir : NULL;
}

/* ---- plans: a graph per set of input shapes --------------------------------- */

struct onnx_plan {
    onnx_plan *next;
    int refs;      /* the model's list and each session slot using it (under m->lock) */
    uint64_t used; /* m->tick at the last use, for LRU eviction */
    int n_in;
    nb_dtype dtype[NB_ONNX_MAX_IO];
    int ndim[NB_ONNX_MAX_IO];
    int64_t shape[NB_ONNX_MAX_IO][NB_MAX_DIMS];
    nb_graph *g;
    nb_plan *plan; /* NULL when every output is a constant */
    nb_node *in_node[NB_ONNX_MAX_IO];
    nb_node *out_node[NB_ONNX_MAX_IO];  /* NULL where out_const holds the output */
    nb_tensor out_const[NB_ONNX_MAX_IO];
    nb_tensor baked_val[NB_ONNX_MAX_IO]; /* inputs built in as constants: this plan is for these values */
    double flops;
};

static void plan_free(onnx_plan *p)
{
    if (!p)
        return;
    for (int i = 0; i < NB_ONNX_MAX_IO; i++) {
        nb_tensor_release(&p->out_const[i]);
        nb_tensor_release(&p->baked_val[i]);
    }
    nb_plan_free(p->plan);
    nb_graph_free(p->g);
    free(p);
}

void onnx_plans_free(nb_onnx_model *m)
{
    for (onnx_plan *p = m->plans, *next; p; p = next) {
        next = p->next;
        if (--p->refs == 0)
            plan_free(p);
    }
    m->plans = NULL;
    m->n_plans = 0;
}

const char *nb_onnx_io_str(const nb_onnx_io *io, char *buf, size_t size)
{
    if (io->ndim < 0)
        return snprintf(buf, size, "(any rank)"), buf;
    size_t k = 0;
    k += (size_t)snprintf(buf + k, size - k, "(");
    for (int d = 0; d < io->ndim && k < size; d++) {
        if (io->dims[d] >= 0)
            k += (size_t)snprintf(buf + k, size - k, "%s%lld", d ? "," : "", (long long)io->dims[d]);
        else
            k += (size_t)snprintf(buf + k, size - k, "%s%s", d ? "," : "",
                                  io->dim_names[d] ? io->dim_names[d] : "?");
    }
    if (k < size)
        snprintf(buf + k, size - k, ")");
    return buf;
}

static nb_status check_inputs(const nb_onnx_model *m, int n_in, const nb_tensor *x)
{
    if (n_in != m->n_in)
        return nb_error(NB_ERR_ARG, "onnx_run '%s': the model takes %d input%s, got %d", m->what,
                        m->n_in, m->n_in == 1 ? "" : "s", n_in);
    for (int i = 0; i < n_in; i++) {
        const nb_onnx_io *io = &m->in[i];
        const nb_tensor *t = &x[i];
        char want[256], got[96];
        if (!t->buf)
            return nb_error(NB_ERR_ARG, "onnx_run '%s': input %d '%s': no tensor given", m->what,
                            i, io->name);
        if (t->buf->device.type != NB_DEVICE_CPU)
            return nb_error(NB_ERR_ARG, "onnx_run '%s': input '%s' is not on the CPU", m->what,
                            io->name);
        if (t->dtype != io->dtype)
            return nb_error(NB_ERR_DTYPE, "onnx_run '%s': input '%s' must be %s %s, got %s %s",
                            m->what, io->name, nb_dtype_name(io->dtype),
                            nb_onnx_io_str(io, want, sizeof want), nb_dtype_name(t->dtype),
                            nb_shape_str(t->ndim, t->shape, got, sizeof got));
        bool ok = io->ndim < 0 || io->ndim == t->ndim;
        for (int d = 0; ok && d < t->ndim; d++)
            ok = io->ndim < 0 || io->dims[d] < 0 || io->dims[d] == t->shape[d];
        if (!ok)
            return nb_error(NB_ERR_SHAPE, "onnx_run '%s': input '%s' must have shape %s, got %s",
                            m->what, io->name, nb_onnx_io_str(io, want, sizeof want),
                            nb_shape_str(t->ndim, t->shape, got, sizeof got));
    }
    return NB_OK;
}

static bool same_values(const nb_tensor *a, const nb_tensor *b)
{
    int64_t n = nb_tensor_numel(a);
    if (nb_tensor_is_contiguous(b))
        return memcmp(nb_tensor_data(a), nb_tensor_data(b), (size_t)n * nb_dtype_size(a->dtype)) == 0;
    for (int64_t i = 0; i < n; i++)
        if (nb_tensor_get_flat(a, i) != nb_tensor_get_flat(b, i))
            return false;
    return true;
}

static bool same_signature(const onnx_plan *p, int n_in, const nb_tensor *x)
{
    if (p->n_in != n_in)
        return false;
    for (int i = 0; i < n_in; i++)
        if (p->dtype[i] != x[i].dtype || !nb_shape_equal(p->ndim[i], p->shape[i], x[i].ndim, x[i].shape))
            return false;
    for (int i = 0; i < n_in; i++)
        if (p->baked_val[i].buf && !same_values(&p->baked_val[i], &x[i]))
            return false;
    return true;
}

void onnx_import_want_value(void *importer, const onnx_value *v)
{
    onnx_build *b = importer;
    if (b && b->wide && v >= b->wide && v < b->wide + b->n_wide && b->wide_of[v - b->wide] >= 0)
        v = b->vals + b->wide_of[v - b->wide]; /* a widened input stands for its value */
    if (b && b->vals && b->want && v >= b->vals && v < b->vals + b->m->n_values)
        b->want[v - b->vals] = true;
}

/* ---- storage dtypes ---------------------------------------------------------- */

static nb_dtype value_dtype(const onnx_value *v)
{
    return v->konst.buf ? v->konst.dtype : nb_node_dtype(v->node);
}

/* Cast and CastLike see their inputs as they are. */
static bool converts_directly(const Onnx__NodeProto *n)
{
    return onnx_is_default_domain(n->domain) &&
           (strcmp(n->op_type, "Cast") == 0 || strcmp(n->op_type, "CastLike") == 0);
}

/* v (a constant or a node) converted to dt, in place (a constant stays one:
 * its CONST node, if it had one, is dropped and remade when read). */
static nb_status convert_value(nb_graph *g, onnx_value *v, nb_dtype dt)
{
    if (!v->konst.buf) {
        v->node = nb_cast(g, v->node, dt);
        return nb_graph_status(g) == NB_OK ? NB_OK : nb_error(nb_graph_status(g), "%s",
                                                                nb_graph_error(g));
    }
    nb_tensor t;
    nb_status st = nb_tensor_empty(&t, dt, v->konst.ndim, v->konst.shape);
    if (st == NB_OK && (st = nb_tensor_copy_into(&t, &v->konst)) != NB_OK)
        nb_tensor_release(&t);
    if (st == NB_OK) {
        nb_tensor_release(&v->konst);
        v->konst = t;
        v->node = NULL;
    }
    return st;
}

static bool op_in(const Onnx__NodeProto *n, const char *const *ops, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(n->op_type, ops[i]) == 0)
            return true;
    return false;
}

/* Outputs whose type does not follow an input: int64 indices (all outputs
 * of the first ops, those after the first of the others), and
 * LayerNormalization's mean and inverse deviation (its stash type). */
static bool fixed_type_output(const Onnx__NodeProto *n, int o)
{
    static const char *const all[] = {"Shape", "Size", "ArgMax", "ArgMin", "NonZero",
                                      "NonMaxSuppression"};
    static const char *const after_first[] = {"TopK", "Unique", "MaxPool", "LayerNormalization"};
    if (!onnx_is_default_domain(n->domain))
        return false;
    return op_in(n, all, sizeof all / sizeof all[0]) ||
           (o > 0 && op_in(n, after_first, sizeof after_first / sizeof after_first[0]));
}

/* The storage dtype output o of node k goes back to, or -1; in_storage[i]
 * is input i's storage dtype (-1: none). */
static int narrow_to(const nb_onnx_model *m, int k, int nin, int o, nb_dtype made,
                     const int *in_storage)
{
    const Onnx__NodeProto *n = m->nodes[k];
    int v = m->node_io[m->node_io_at[k] + nin + o];
    int decl = v >= 0 && m->value_type ? m->value_type[v] : -1;
    if (decl >= 0)
        return nb_dtype_is_storage((nb_dtype)decl) && nb_dtype_compute((nb_dtype)decl) == made
                   ? decl : -1;
    if (fixed_type_output(n, o))
        return -1;
    int src = 0; /* the input ONNX ties the output's type to */
    if (onnx_is_default_domain(n->domain) && strcmp(n->op_type, "Where") == 0)
        src = 1;
    else if (onnx_is_default_domain(n->domain) &&
             (strcmp(n->op_type, "OneHot") == 0 || strcmp(n->op_type, "QuantizeLinear") == 0))
        src = 2;
    if (src >= nin || in_storage[src] < 0 || nb_dtype_compute((nb_dtype)in_storage[src]) != made)
        return -1;
    return in_storage[src];
}

/* After a failed build: the graph inputs that the values converters asked
 * for are computed from (the values themselves, or their ancestors). */
static void wanted_inputs(const nb_onnx_model *m, const bool *want, bool *wanted)
{
    int nv = m->n_values;
    int *producer = malloc(((size_t)nv + 1) * sizeof(int));
    int *stack = malloc(((size_t)nv + 1) * sizeof(int));
    bool *seen = calloc((size_t)nv + 1, sizeof(bool));
    if (!producer || !stack || !seen)
        goto done;
    for (int i = 0; i < nv; i++)
        producer[i] = -1;
    for (int k = 0; k < m->n_nodes; k++) {
        int nout = (int)m->nodes[k]->n_output, end = m->node_io_at[k + 1];
        for (int o = end - nout; o < end; o++)
            producer[m->node_io[o]] = k;
    }
    int top = 0;
    for (int x = 0; x < nv; x++)
        if (want[x])
            stack[top++] = x, seen[x] = true;
    while (top > 0) {
        int x = stack[--top];
        for (int i = 0; i < m->n_in; i++)
            if (m->in_value[i] == x)
                wanted[i] = true;
        int k = producer[x];
        if (k < 0)
            continue;
        int nin = m->node_io_at[k + 1] - m->node_io_at[k] - (int)m->nodes[k]->n_output;
        for (int i = 0; i < nin; i++) {
            int u = m->node_io[m->node_io_at[k] + i];
            if (u >= 0 && !seen[u]) {
                seen[u] = true;
                stack[top++] = u;
            }
        }
    }
done:
    free(producer);
    free(stack);
    free(seen);
}

/* Evaluate the node just converted (all its inputs constant) and keep its
 * outputs as constants. */
static nb_status fold_node(onnx_node_ctx *c)
{
    nb_node **nodes = malloc(((size_t)c->n_out + 1) * sizeof(*nodes));
    int *which = malloc(((size_t)c->n_out + 1) * sizeof(int));
    nb_plan *p = NULL;
    nb_session *s = NULL;
    nb_status st = NB_OK;
    int k = 0;
    if (!nodes || !which) {
        st = onnx_fail(c, NB_ERR_ALLOC, "out of memory");
        goto done;
    }
    for (int o = 0; o < c->n_out; o++) {
        onnx_value *v = c->out[o];
        if (!v->node || v->konst.buf)
            continue;
        if (nb_node_op(v->node) == NB_OP_CONST) /* already a constant (Identity of one) */
            nb_tensor_ref(&v->konst, nb_node_value(v->node));
        else
            nodes[k] = v->node, which[k++] = o;
    }
    if (k == 0)
        goto done;
    p = nb_compile(c->g, k, nodes, NULL);
    s = p ? nb_session_new(p) : NULL;
    if (!p || !s) {
        st = onnx_fail(c, NB_ERR_STATE, "constant folding: %s", nb_last_error());
        goto done;
    }
    st = nb_session_run(s);
    for (int i = 0; i < k && st == NB_OK; i++) {
        nb_tensor view = {0};
        onnx_value *v = c->out[which[i]];
        st = nb_session_fetch(s, nodes[i], &view);
        if (st == NB_OK)
            st = nb_tensor_contiguous(&view, &v->konst);
        nb_tensor_release(&view);
        if (st == NB_OK)
            v->node = NULL; /* a CONST node is made when something reads it */
    }
    if (st != NB_OK)
        st = onnx_fail(c, st, "constant folding: %s", nb_last_error());
done:
    nb_session_free(s);
    nb_plan_free(p);
    free(nodes);
    free(which);
    return st;
}

/* Before node c is converted: each input of a storage dtype is replaced, in
 * c->in, by wide[i], that input cast to its compute dtype (wide_of[i] its
 * value index, in_storage[i] its dtype; -1 for the other inputs). Cast and
 * CastLike keep their inputs. */
static nb_status widen_inputs(onnx_node_ctx *c, const int *io, onnx_value *wide, int *wide_of,
                              int *in_storage)
{
    bool direct = converts_directly(c->node);
    for (int i = 0; i < c->n_in; i++) {
        wide_of[i] = in_storage[i] = -1;
        onnx_value *v = c->in[i];
        if (direct || io[i] < 0 || (!v->node && !v->konst.buf))
            continue;
        nb_dtype dt = value_dtype(v);
        if (!nb_dtype_is_storage(dt))
            continue;
        wide[i] = (onnx_value){v->node, {0}, v->present};
        if (v->konst.buf)
            nb_tensor_ref(&wide[i].konst, &v->konst);
        nb_status st = convert_value(c->g, &wide[i], nb_dtype_compute(dt));
        if (st != NB_OK)
            return onnx_fail(c, st, "input %d (%s): %s", i, nb_dtype_name(dt), nb_last_error());
        wide_of[i] = io[i];
        in_storage[i] = (int)dt;
        c->in[i] = &wide[i];
    }
    return NB_OK;
}

/* After node k (ctx c) is converted: its outputs cast back to the storage
 * dtypes narrow_to picks. */
static nb_status narrow_outputs(onnx_node_ctx *c, const nb_onnx_model *m, int k,
                                const int *in_storage)
{
    if (converts_directly(c->node))
        return NB_OK;
    for (int o = 0; o < c->n_out; o++) {
        onnx_value *v = c->out[o];
        if (!v->node && !v->konst.buf)
            continue;
        int to = narrow_to(m, k, c->n_in, o, value_dtype(v), in_storage);
        if (to < 0)
            continue;
        nb_status st = convert_value(c->g, v, (nb_dtype)to);
        if (st != NB_OK)
            return onnx_fail(c, st, "output %d to %s: %s", o, nb_dtype_name((nb_dtype)to),
                             nb_last_error());
    }
    return NB_OK;
}

/* Prefix the thread's message with the model and, unless the converter
 * already named it, the node. */
static nb_status node_error(const nb_onnx_model *m, int k, nb_status st)
{
    const Onnx__NodeProto *n = m->nodes[k];
    char msg[1024], lb[128], pre[200];
    snprintf(msg, sizeof msg, "%s", nb_last_error());
    onnx_node_label(n, k, lb, sizeof lb);
    snprintf(pre, sizeof pre, "%s '", n->op_type); /* the converter named the node already */
    if (strncmp(msg, pre, strlen(pre)) == 0)
        return nb_error(st, "onnx '%s': %s", m->what, msg);
    return nb_error(st, "onnx '%s': %s '%s' (opset %lld): %s", m->what, n->op_type, lb,
                    (long long)m->node_opset[k], msg);
}

/* The graph and plan for the input shapes of x (checked already), and for
 * the values of the baked inputs; wanted[i] set for the inputs whose values
 * a converter asked for. */
static nb_status build_plan(nb_onnx_model *m, int n_in, const nb_tensor *x, onnx_plan **out,
                            bool *wanted)
{
    *out = NULL;
    int max_io = 1;
    for (int k = 0; k < m->n_nodes; k++) {
        int c = m->node_io_at[k + 1] - m->node_io_at[k];
        max_io = c > max_io ? c : max_io;
    }
    onnx_plan *p = calloc(1, sizeof(*p));
    onnx_value *vals = calloc((size_t)m->n_values + 1, sizeof(*vals));
    onnx_value **ptrs = calloc((size_t)max_io + 1, sizeof(*ptrs));
    onnx_value *wide = calloc((size_t)max_io + 1, sizeof(*wide));
    int *wide_of = calloc((size_t)max_io + 1, sizeof(int));
    int *in_storage = calloc((size_t)max_io + 1, sizeof(int));
    nb_node **outs = calloc(NB_ONNX_MAX_IO, sizeof(*outs));
    bool *want_buf = NULL;
    if (p)
        p->g = nb_graph_new();
    nb_status st = NB_OK;
    if (!p || !vals || !ptrs || !wide || !wide_of || !in_storage || !outs || !p->g) {
        st = nb_error(NB_ERR_ALLOC, "onnx '%s': out of memory building the graph", m->what);
        goto fail;
    }
    p->n_in = n_in;
    for (int i = 0; i < n_in; i++) {
        p->dtype[i] = x[i].dtype;
        p->ndim[i] = x[i].ndim;
        memcpy(p->shape[i], x[i].shape, sizeof(p->shape[i]));
    }
    for (int k = 0; k < m->n_init; k++) {
        onnx_value *v = &vals[m->init_value[k]];
        if (m->init[k].buf)
            nb_tensor_ref(&v->konst, &m->init[k]);
        v->present = true;
    }
    for (int i = 0; i < n_in && st == NB_OK; i++) {
        onnx_value *v = &vals[m->in_value[i]];
        v->present = true;
        if (!m->baked[i]) {
            v->node = p->in_node[i] = nb_input(p->g, m->in[i].name, x[i].dtype, x[i].ndim, x[i].shape);
            continue;
        }
        st = nb_tensor_contiguous(&x[i], &p->baked_val[i]);
        if (st == NB_OK)
            nb_tensor_ref(&v->konst, &p->baked_val[i]);
    }
    if (st != NB_OK)
        goto fail;
    if (nb_graph_status(p->g) != NB_OK) {
        st = nb_error(nb_graph_status(p->g), "onnx '%s': %s", m->what, nb_graph_error(p->g));
        goto fail;
    }
    want_buf = calloc((size_t)m->n_values + 1, sizeof(bool));
    onnx_build b = {m, vals, want_buf, wide, wide_of, max_io};
    onnx_value absent = {0};
    for (int k = 0; k < m->n_nodes; k++) {
        const Onnx__NodeProto *n = m->nodes[k];
        const int *io = m->node_io + m->node_io_at[k];
        int nout = (int)n->n_output, nin = m->node_io_at[k + 1] - m->node_io_at[k] - nout;
        bool all_const = true;
        for (int i = 0; i < nin; i++) {
            onnx_value *v = io[i] < 0 ? &absent : &vals[io[i]];
            ptrs[i] = v;
            if (io[i] >= 0 && !v->node && !v->konst.buf) {
                st = nb_error(NB_ERR_STATE, "input '%s' was not produced by its node",
                              m->value_names[io[i]]);
                st = node_error(m, k, st);
                goto fail;
            }
            all_const &= io[i] < 0 || v->konst.buf != NULL;
        }
        for (int o = 0; o < nout; o++)
            ptrs[nin + o] = &vals[io[nin + o]];
        onnx_node_ctx c = {p->g, n, m->node_opset[k], nin, nout, ptrs, ptrs + nin, &b};
        char scope[96];
        if (n->name && n->name[0])
            snprintf(scope, sizeof scope, "%s", n->name);
        else
            snprintf(scope, sizeof scope, "%s_%d", n->op_type, k);
        nb_clear_error();
        nb_scope_push(p->g, scope);
        st = widen_inputs(&c, io, wide, wide_of, in_storage);
        if (st == NB_OK)
            st = m->conv[k]->fn(&c);
        if (st == NB_OK && nb_graph_status(p->g) == NB_OK)
            st = narrow_outputs(&c, m, k, in_storage);
        nb_scope_pop(p->g);
        for (int i = 0; i < nin; i++)
            nb_tensor_release(&wide[i].konst);
        if (st == NB_OK && nb_graph_status(p->g) != NB_OK)
            st = nb_error(nb_graph_status(p->g), "%s", nb_graph_error(p->g));
        if (st == NB_OK && all_const)
            st = fold_node(&c);
        if (st != NB_OK) {
            st = node_error(m, k, st);
            if (want_buf)
                wanted_inputs(m, want_buf, wanted);
            goto fail;
        }
        for (int o = 0; o < nout; o++)
            vals[io[nin + o]].present = true;
    }
    int n_nodes_out = 0;
    for (int i = 0; i < m->n_out; i++) {
        onnx_value *v = &vals[m->out_value[i]];
        if (v->konst.buf) {
            nb_tensor_ref(&p->out_const[i], &v->konst);
        } else if (v->node) {
            p->out_node[i] = outs[n_nodes_out++] = v->node;
        } else {
            st = nb_error(NB_ERR_STATE, "onnx '%s': graph output '%s' was not produced by its node",
                          m->what, m->out[i].name);
            goto fail;
        }
    }
    if (n_nodes_out) {
        p->plan = nb_compile(p->g, n_nodes_out, outs, NULL);
        if (!p->plan) {
            st = nb_error(NB_ERR_STATE, "onnx '%s': compile: %s", m->what, nb_last_error());
            goto fail;
        }
        for (int e = 0; e < p->plan->n_entries; e++) {
            const nb_node *nd = p->plan->values[p->plan->entries[e].value].node;
            p->flops += nb_op_row_get(nb_node_op(nd))->flops(nd);
        }
    }
    goto done;
fail:
    plan_free(p);
    p = NULL;
done:
    if (vals)
        for (int v = 0; v < m->n_values; v++)
            nb_tensor_release(&vals[v].konst);
    free(vals);
    free(ptrs);
    if (wide)
        for (int i = 0; i < max_io; i++)
            nb_tensor_release(&wide[i].konst);
    free(wide);
    free(wide_of);
    free(in_storage);
    free(outs);
    free(want_buf);
    *out = p;
    return st;
}

/* The cached plan for x's shapes, built when new; the caller holds a reference. */
static nb_status acquire_plan(nb_onnx_model *m, int n_in, const nb_tensor *x, onnx_plan **out)
{
    *out = NULL;
    pthread_mutex_lock(&m->lock);
    onnx_plan *p = m->plans;
    while (p && !same_signature(p, n_in, x))
        p = p->next;
    nb_status st = NB_OK;
    if (!p) {
        /* a build that fails where a converter needed an input's value is
         * retried with that input built in (the plan then holds for that
         * value only) */
        for (;;) {
            bool wanted[NB_ONNX_MAX_IO] = {0}, more = false;
            st = build_plan(m, n_in, x, &p, wanted);
            for (int i = 0; st != NB_OK && i < n_in; i++)
                if (wanted[i] && !m->baked[i])
                    m->baked[i] = more = true;
            if (!more)
                break;
        }
        if (st == NB_OK) {
            if (m->n_plans == MAX_PLANS) { /* drop the least recently used */
                onnx_plan **lru = &m->plans;
                for (onnx_plan **q = &m->plans; *q; q = &(*q)->next)
                    if ((*q)->used < (*lru)->used)
                        lru = q;
                onnx_plan *old = *lru;
                *lru = old->next;
                m->n_plans--;
                if (--old->refs == 0)
                    plan_free(old);
            }
            p->refs = 1;
            p->next = m->plans;
            m->plans = p;
            m->n_plans++;
        }
    }
    if (p) {
        p->refs++;
        p->used = ++m->tick;
    }
    pthread_mutex_unlock(&m->lock);
    *out = p;
    return st;
}

static void release_plan(nb_onnx_model *m, onnx_plan *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&m->lock);
    if (--p->refs == 0)
        plan_free(p);
    pthread_mutex_unlock(&m->lock);
}

/* ---- sessions ------------------------------------------------------------------ */

typedef struct sess_slot {
    onnx_plan *plan;
    nb_session *s; /* NULL when the plan has no tape */
    uint64_t used;
} sess_slot;

struct nb_onnx_session {
    nb_onnx_model *m;
    sess_slot slot[MAX_SESSION_PLANS];
    int n;
    uint64_t tick;
    bool profiling;
    int last; /* the slot of the last run, -1 before */
};

nb_onnx_session *nb_onnx_session_new(nb_onnx_model *m)
{
    if (!m) {
        nb_error(NB_ERR_ARG, "onnx_session_new: no model");
        return NULL;
    }
    nb_onnx_session *s = calloc(1, sizeof(*s));
    if (!s) {
        nb_error(NB_ERR_ALLOC, "onnx_session_new: out of memory");
        return NULL;
    }
    s->m = m;
    s->last = -1;
    return s;
}

nb_status nb_onnx_session_set_profiling(nb_onnx_session *s, bool on)
{
    s->profiling = on;
    for (int i = 0; i < s->n; i++)
        if (s->slot[i].s && nb_session_set_profiling(s->slot[i].s, on) != NB_OK)
            return NB_ERR_ALLOC;
    return NB_OK;
}

int nb_onnx_session_profile(const nb_onnx_session *s, nb_profile_entry *out, int max)
{
    if (s->last < 0 || !s->slot[s->last].s)
        return 0;
    return nb_session_profile(s->slot[s->last].s, out, max);
}

void nb_onnx_session_free(nb_onnx_session *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        nb_session_free(s->slot[i].s);
        release_plan(s->m, s->slot[i].plan);
    }
    free(s);
}

/* The slot for x's shapes: this session's, or a new one (evicting the least
 * recently used when full). */
static nb_status get_slot(nb_onnx_session *s, int n_in, const nb_tensor *x, sess_slot **out)
{
    for (int i = 0; i < s->n; i++)
        if (same_signature(s->slot[i].plan, n_in, x)) {
            s->slot[i].used = ++s->tick;
            *out = &s->slot[i];
            return NB_OK;
        }
    onnx_plan *p;
    nb_status st = acquire_plan(s->m, n_in, x, &p);
    if (st != NB_OK)
        return st;
    nb_session *ns = NULL;
    if (p->plan && (!(ns = nb_session_new(p->plan)) ||
                    (s->profiling && nb_session_set_profiling(ns, true) != NB_OK))) {
        nb_session_free(ns);
        release_plan(s->m, p);
        return nb_error(NB_ERR_ALLOC, "onnx_run '%s': %s", s->m->what, nb_last_error());
    }
    int k = s->n;
    if (k == MAX_SESSION_PLANS) {
        k = 0;
        for (int i = 1; i < s->n; i++)
            if (s->slot[i].used < s->slot[k].used)
                k = i;
        nb_session_free(s->slot[k].s);
        release_plan(s->m, s->slot[k].plan);
    } else {
        s->n++;
    }
    s->slot[k] = (sess_slot){p, ns, ++s->tick};
    *out = &s->slot[k];
    return NB_OK;
}

nb_status nb_onnx_session_run(nb_onnx_session *s, int n_in, const nb_tensor *inputs, int *n_out,
                              nb_tensor *outputs)
{
    if (!s || !n_out || (n_in > 0 && !inputs) || n_in < 0)
        return nb_error(NB_ERR_ARG, "onnx_run: NULL argument");
    nb_onnx_model *m = s->m;
    if (*n_out < m->n_out || (m->n_out && !outputs))
        return nb_error(NB_ERR_ARG, "onnx_run '%s': room for %d outputs, the model has %d", m->what,
                        *n_out, m->n_out);
    nb_status st = check_inputs(m, n_in, inputs);
    if (st != NB_OK)
        return st;
    sess_slot *sl = NULL;
    st = get_slot(s, n_in, inputs, &sl);
    if (st != NB_OK)
        return st;
    const onnx_plan *p = sl->plan;
    s->last = (int)(sl - s->slot);
    for (int i = 0; i < n_in && sl->s && st == NB_OK; i++)
        if (p->in_node[i])
            st = nb_session_feed(sl->s, p->in_node[i], &inputs[i]);
    if (st == NB_OK && sl->s)
        st = nb_session_run(sl->s);
    if (st != NB_OK)
        return nb_error(st, "onnx_run '%s': %s", m->what, nb_last_error());
    int made = 0;
    for (; made < m->n_out && st == NB_OK; made++) {
        outputs[made] = (nb_tensor){0};
        if (p->out_const[made].buf) {
            st = nb_tensor_contiguous(&p->out_const[made], &outputs[made]);
        } else {
            nb_tensor view = {0};
            st = nb_session_fetch(sl->s, p->out_node[made], &view);
            if (st == NB_OK)
                st = nb_tensor_contiguous(&view, &outputs[made]);
            nb_tensor_release(&view);
        }
    }
    if (st != NB_OK) {
        for (int i = 0; i < made; i++)
            nb_tensor_release(&outputs[i]);
        return nb_error(st, "onnx_run '%s': output: %s", m->what, nb_last_error());
    }
    *n_out = m->n_out;
    return NB_OK;
}

nb_status nb_onnx_run(nb_onnx_model *m, int n_in, const nb_tensor *inputs, int *n_out,
                      nb_tensor *outputs)
{
    if (!m)
        return nb_error(NB_ERR_ARG, "onnx_run: no model");
    if (!m->own && !(m->own = nb_onnx_session_new(m)))
        return NB_ERR_ALLOC;
    return nb_onnx_session_run(m->own, n_in, inputs, n_out, outputs);
}

/* ---- summary --------------------------------------------------------------------- */

nb_status nb_onnx_summarize(nb_onnx_model *m, int n_in, const nb_tensor *inputs, nb_onnx_summary *s)
{
    if (!m || !s)
        return nb_error(NB_ERR_ARG, "onnx_summarize: NULL argument");
    memset(s, 0, sizeof(*s));
    const Onnx__ModelProto *p = m->proto;
    s->producer = onnx_str_or_empty(p->producer_name);
    s->producer_version = onnx_str_or_empty(p->producer_version);
    s->graph_name = onnx_str_or_empty(m->graph->name);
    s->ir_version = p->ir_version;
    s->opset = m->opset;
    s->n_nodes = (int)m->graph->n_node; /* as in the file (before fusion) */
    for (int k = 0; k < s->n_nodes; k++) {
        const char *op = m->graph->node[k]->op_type;
        int j = 0;
        while (j < s->n_op_types && strcmp(s->ops[j].op_type, op) != 0)
            j++;
        if (j == s->n_op_types) {
            if (j == (int)(sizeof(s->ops) / sizeof(s->ops[0])))
                continue;
            s->ops[s->n_op_types++] = (nb_onnx_op_count){op, 0};
        }
        s->ops[j].count++;
    }
    s->params = m->params;
    s->fused_bn = m->n_fused;
    s->fused_act = m->n_fused_act;
    s->param_bytes = m->param_bytes;
    s->flops = -1;
    nb_tensor made[NB_ONNX_MAX_IO] = {{0}};
    nb_status st = NB_OK;
    if (!inputs || n_in == 0) { /* the declared shapes, dynamic dims taken as 1 */
        n_in = m->n_in;
        for (int i = 0; i < n_in && st == NB_OK; i++) {
            const nb_onnx_io *io = &m->in[i];
            int64_t shape[NB_MAX_DIMS];
            if (io->ndim < 0) {
                st = nb_error(NB_ERR_SHAPE,
                              "onnx_summarize '%s': input '%s' has no declared shape; give inputs",
                              m->what, io->name);
                break;
            }
            for (int d = 0; d < io->ndim; d++)
                shape[d] = io->dims[d] >= 0 ? io->dims[d] : 1;
            st = nb_tensor_zeros(&made[i], io->dtype, io->ndim, shape);
        }
        inputs = made;
    }
    if (st == NB_OK)
        st = check_inputs(m, n_in, inputs);
    onnx_plan *pl = NULL;
    if (st == NB_OK)
        st = acquire_plan(m, n_in, inputs, &pl);
    if (st == NB_OK)
        s->flops = pl->flops;
    release_plan(m, pl);
    for (int i = 0; i < NB_ONNX_MAX_IO; i++)
        nb_tensor_release(&made[i]);
    return st;
}
