/* Fusions done at load (part of the ONNX importer; the model struct is in
 * onnx_model.h): Conv + BatchNormalization, then Conv + Relu/Clip.
 *
 * Conv followed by an inference BatchNormalization:
 *
 * When a Conv's output is read only by a BatchNormalization whose scale,
 * bias, mean and variance are f32 initializers (and training_mode is off),
 * the pair becomes one Conv with W' = W s and B' = (B - mean) s + beta,
 * s = gamma / sqrt(var + eps), per output channel. The new weight and bias
 * are appended to the model's initializers (the originals stay: other nodes
 * may read them) and the BN node is dropped, its readers reading the Conv.
 *
 * Then a Relu, or a Clip with constant bounds, that alone reads a Conv's
 * output (after the folding above, the BN's) becomes the Conv's fused clamp
 * (nb_conv_args.clamp): the kernels clamp as they write the output, saving a
 * pass over it. NABLA_ONNX_NO_FUSE in the environment turns both off
 * (onnx_import.c checks it).
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/onnx_model.h"

/* Node k's input i as an initializer index, or -1. */
static int init_of(const nb_onnx_model *m, int k, int i)
{
    const Onnx__NodeProto *n = m->nodes[k];
    int nin = m->node_io_at[k + 1] - m->node_io_at[k] - (int)n->n_output;
    if (i >= nin)
        return -1;
    int v = m->node_io[m->node_io_at[k] + i];
    return v >= 0 && v < m->n_init_model && m->init[v].buf && m->init[v].dtype == NB_F32 ? v : -1;
}

static double attr_float(const Onnx__NodeProto *n, const char *name, double def)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i] && n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
            return n->attribute[i]->has_f ? n->attribute[i]->f : (double)n->attribute[i]->i;
    return def;
}

/* Whether Conv node c and BatchNormalization node b (reading only c's
 * output, which nothing else reads) can be folded: plain inference BN, f32
 * constants of matching sizes. */
static bool fusable(const nb_onnx_model *m, int c, int b, const int *readers)
{
    const Onnx__NodeProto *cn = m->nodes[c], *bn = m->nodes[b];
    if (!onnx_is_default_domain(cn->domain) || !onnx_is_default_domain(bn->domain) ||
        strcmp(cn->op_type, "Conv") != 0 || strcmp(bn->op_type, "BatchNormalization") != 0)
        return false;
    if (cn->n_output != 1 || bn->n_input != 5 || attr_float(bn, "training_mode", 0) != 0 ||
        attr_float(bn, "spatial", 1) != 1)
        return false;
    for (size_t o = 1; o < bn->n_output; o++)
        if (bn->output[o] && bn->output[o][0])
            return false;
    int y = m->node_io[m->node_io_at[c] + (int)cn->n_input];
    if (m->node_io[m->node_io_at[b]] != y || readers[y] != 1)
        return false;
    int w = init_of(m, c, 1);
    if (w < 0 || m->init[w].ndim < 3)
        return false;
    int64_t cout = m->init[w].shape[0];
    if (cn->n_input > 2 && cn->input[2] && cn->input[2][0] &&
        (init_of(m, c, 2) < 0 || nb_tensor_numel(&m->init[init_of(m, c, 2)]) != cout))
        return false;
    for (int i = 1; i < 5; i++)
        if (init_of(m, b, i) < 0 || nb_tensor_numel(&m->init[init_of(m, b, i)]) != cout)
            return false;
    return true;
}

/* W' = W s and B' = (B - mean) s + beta with s = gamma / sqrt(var + eps), per
 * output channel, as new initializers; *w2, *b2 their indices. */
static nb_status fold_bn(nb_onnx_model *m, int c, int b, int *w2, int *b2)
{
    const nb_tensor *w = &m->init[init_of(m, c, 1)];
    int bi = init_of(m, c, 2);
    const float *bias = bi >= 0 ? nb_tensor_data(&m->init[bi]) : NULL;
    const float *gamma = nb_tensor_data(&m->init[init_of(m, b, 1)]);
    const float *beta = nb_tensor_data(&m->init[init_of(m, b, 2)]);
    const float *mean = nb_tensor_data(&m->init[init_of(m, b, 3)]);
    const float *var = nb_tensor_data(&m->init[init_of(m, b, 4)]);
    double eps = attr_float(m->nodes[b], "epsilon", 1e-5);
    int64_t cout = w->shape[0], per = nb_tensor_numel(w) / (cout ? cout : 1);
    nb_tensor nw = {0}, nbias = {0};
    nb_status st = nb_tensor_empty(&nw, NB_F32, w->ndim, w->shape);
    if (st == NB_OK)
        st = nb_tensor_empty(&nbias, NB_F32, 1, &cout);
    if (st != NB_OK) {
        nb_tensor_release(&nw);
        return st;
    }
    const float *src = nb_tensor_data(w);
    float *dw = nb_tensor_data(&nw), *db = nb_tensor_data(&nbias);
    for (int64_t o = 0; o < cout; o++) {
        double sc = gamma[o] / sqrt((double)var[o] + eps);
        for (int64_t i = 0; i < per; i++)
            dw[o * per + i] = (float)(src[o * per + i] * sc);
        db[o] = (float)(((bias ? bias[o] : 0.0) - mean[o]) * sc + beta[o]);
    }
    *w2 = m->n_init;
    m->init[m->n_init++] = nw;
    *b2 = m->n_init;
    m->init[m->n_init++] = nbias;
    return NB_OK;
}

/* How many node inputs read each value (graph outputs count 2, so that they
 * are never fused away) and which node produces it (-1: none). */
static void readers_and_producers(const nb_onnx_model *m, int *readers, int *producer)
{
    for (int v = 0; v < m->n_values; v++)
        producer[v] = -1;
    for (int k = 0; k < m->n_nodes; k++) {
        const Onnx__NodeProto *n = m->nodes[k];
        int nin = m->node_io_at[k + 1] - m->node_io_at[k] - (int)n->n_output;
        for (int i = 0; i < nin; i++)
            if (m->node_io[m->node_io_at[k] + i] >= 0)
                readers[m->node_io[m->node_io_at[k] + i]]++;
        for (size_t o = 0; o < n->n_output; o++)
            producer[m->node_io[m->node_io_at[k] + nin + (int)o]] = k;
    }
    for (int i = 0; i < m->n_out; i++)
        readers[m->out_value[i]] += 2;
}

/* Fold every fusable Conv -> BatchNormalization pair: the Conv reads the new
 * weight and bias, the BN node goes, and its readers read the Conv instead.
 * Initializers nothing reads any more are released. */
nb_status onnx_fuse_conv_bn(nb_onnx_model *m)
{
    int nn = m->n_nodes, nv = m->n_values;
    int *readers = calloc((size_t)nv + 1, sizeof(int));
    int *producer = malloc(((size_t)nv + 1) * sizeof(int));
    int *bn_of = malloc(((size_t)nn + 1) * sizeof(int));
    nb_status st = NB_OK;
    if (!readers || !producer || !bn_of) {
        st = nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", m->what);
        goto done;
    }
    int pairs = 0;
    readers_and_producers(m, readers, producer);
    for (int k = 0; k < nn; k++)
        bn_of[k] = -1;
    for (int b = 0; b < nn; b++) {
        int x = m->nodes[b]->n_input ? m->node_io[m->node_io_at[b]] : -1;
        int c = x >= 0 ? producer[x] : -1;
        if (c >= 0 && bn_of[c] < 0 && fusable(m, c, b, readers))
            bn_of[c] = b, pairs++;
    }
    if (pairs == 0)
        goto done;
    /* room: two initializers and two values a pair; node_io with a bias slot */
    nb_tensor *init = realloc(m->init, ((size_t)m->n_init + 2 * (size_t)pairs + 1) * sizeof(nb_tensor));
    if (init)
        m->init = init;
    const char **names = realloc(m->value_names, ((size_t)nv + 2 * (size_t)pairs + 1) * sizeof(char *));
    if (names)
        m->value_names = names;
    int *iv = realloc(m->init_value, ((size_t)m->n_init + 2 * (size_t)pairs + 1) * sizeof(int));
    if (iv)
        m->init_value = iv;
    int *io = malloc(((size_t)m->node_io_at[nn] + (size_t)pairs + 1) * sizeof(int));
    int *at = malloc(((size_t)nn + 1) * sizeof(int));
    int *remap = malloc(((size_t)nv + 1) * sizeof(int));
    if (!init || !names || !iv || !io || !at || !remap) {
        free(io);
        free(at);
        free(remap);
        st = nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", m->what);
        goto done;
    }
    for (int v = 0; v < nv; v++)
        remap[v] = v;
    int kept = 0, pos = 0;
    bool *gone = calloc((size_t)nn + 1, sizeof(bool));
    for (int c = 0; c < nn && gone; c++)
        if (bn_of[c] >= 0) {
            const Onnx__NodeProto *bn = m->nodes[bn_of[c]];
            gone[bn_of[c]] = true;
            remap[m->node_io[m->node_io_at[bn_of[c]] + (int)bn->n_input]] =
                m->node_io[m->node_io_at[c] + (int)m->nodes[c]->n_input];
        }
    for (int k = 0; k < nn && gone && st == NB_OK; k++) {
        if (gone[k])
            continue;
        const Onnx__NodeProto *n = m->nodes[k];
        int nin = m->node_io_at[k + 1] - m->node_io_at[k] - (int)n->n_output;
        const int *src = m->node_io + m->node_io_at[k];
        at[kept] = pos;
        if (bn_of[k] >= 0) { /* the Conv: x, W', B', its output */
            int w2, b2;
            st = fold_bn(m, k, bn_of[k], &w2, &b2);
            if (st != NB_OK)
                break;
            m->value_names[nv] = "(Conv weight with BatchNormalization folded in)";
            m->value_names[nv + 1] = "(Conv bias with BatchNormalization folded in)";
            m->init_value[w2] = nv;
            m->init_value[b2] = nv + 1;
            io[pos++] = src[0] >= 0 ? remap[src[0]] : -1;
            io[pos++] = nv;
            io[pos++] = nv + 1;
            io[pos++] = src[nin];
            nv += 2;
        } else {
            for (int i = 0; i < nin; i++)
                io[pos++] = src[i] >= 0 ? remap[src[i]] : -1;
            for (size_t o = 0; o < n->n_output; o++)
                io[pos++] = src[nin + (int)o];
        }
        m->nodes[kept] = n;
        m->conv[kept] = m->conv[k];
        m->node_opset[kept] = m->node_opset[k];
        kept++;
    }
    if (!gone && st == NB_OK)
        st = nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", m->what);
    free(gone);
    if (st == NB_OK) {
        at[kept] = pos;
        for (int i = 0; i < m->n_out; i++)
            m->out_value[i] = remap[m->out_value[i]];
        free(m->node_io);
        free(m->node_io_at);
        m->node_io = io;
        m->node_io_at = at;
        m->n_nodes = kept;
        m->n_values = nv;
        m->n_fused = pairs;
    } else {
        free(io);
        free(at);
    }
    free(remap);
done:
    free(readers);
    free(producer);
    free(bn_of);
    return st;
}

/* ---- Conv + Relu / Clip ------------------------------------------------------ */

/* A Conv node with a fused clamp: a copy of the original NodeProto (its
 * fields still point into the model's protobuf) whose doc_string is the
 * marker below, which no parsed file can produce. */
typedef struct fused_conv {
    Onnx__NodeProto node; /* first: the node pointer is the struct's */
    float lo, hi;
} fused_conv;

static char fused_marker[] = "Conv with a fused Relu/Clip (nabla)";

bool onnx_fused_clamp(const Onnx__NodeProto *n, float *lo, float *hi)
{
    if (!n || n->doc_string != fused_marker)
        return false;
    const fused_conv *f = (const fused_conv *)n;
    *lo = f->lo;
    *hi = f->hi;
    return true;
}

void onnx_fuse_free(nb_onnx_model *m)
{
    for (int i = 0; i < m->n_fused_act && m->fused_nodes; i++)
        free(m->fused_nodes[i]);
    free(m->fused_nodes);
    m->fused_nodes = NULL;
}

/* A Constant node's value as one f32 (attribute value_float, or a float
 * tensor `value` of one element); false for anything else. */
static bool constant_scalar(const Onnx__NodeProto *n, float *v)
{
    if (!onnx_is_default_domain(n->domain) || strcmp(n->op_type, "Constant") != 0 ||
        n->n_attribute != 1 || !n->attribute[0] || !n->attribute[0]->name)
        return false;
    const Onnx__AttributeProto *a = n->attribute[0];
    if (strcmp(a->name, "value_float") == 0 && a->has_f) {
        *v = a->f;
        return true;
    }
    const Onnx__TensorProto *t = a->t;
    if (strcmp(a->name, "value") != 0 || !t || t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ||
        t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return false;
    for (size_t d = 0; d < t->n_dims; d++)
        if (t->dims[d] != 1)
            return false;
    if (t->has_raw_data && t->raw_data.len == 4) {
        uint32_t u = (uint32_t)t->raw_data.data[0] | (uint32_t)t->raw_data.data[1] << 8 |
                     (uint32_t)t->raw_data.data[2] << 16 | (uint32_t)t->raw_data.data[3] << 24;
        memcpy(v, &u, sizeof *v);
        return true;
    }
    if (!t->has_raw_data && t->n_float_data == 1) {
        *v = t->float_data[0];
        return true;
    }
    return false;
}

/* Node k's input i as an f32 scalar (an initializer, or a Constant node's
 * output): 1 (and *v), 0 when the input is omitted, -1 for anything else. */
static int scalar_input(const nb_onnx_model *m, const int *producer, int k, int i, float *v)
{
    const Onnx__NodeProto *n = m->nodes[k];
    if ((size_t)i >= n->n_input || !n->input[i] || !n->input[i][0])
        return 0;
    int t = init_of(m, k, i);
    if (t >= 0 && nb_tensor_numel(&m->init[t]) == 1) {
        *v = ((const float *)nb_tensor_data(&m->init[t]))[0];
        return 1;
    }
    int x = m->node_io[m->node_io_at[k] + i], p = x >= 0 ? producer[x] : -1;
    return p >= 0 && constant_scalar(m->nodes[p], v) ? 1 : -1;
}

/* Whether node a is a Relu, or a Clip with constant bounds lo <= hi, that can
 * be fused into the Conv c whose output only it reads; its bounds then. */
static bool act_fusable(const nb_onnx_model *m, int c, int a, const int *readers,
                        const int *producer, float *lo, float *hi)
{
    const Onnx__NodeProto *cn = m->nodes[c], *an = m->nodes[a];
    if (!onnx_is_default_domain(cn->domain) || !onnx_is_default_domain(an->domain) ||
        strcmp(cn->op_type, "Conv") != 0 || cn->n_output != 1 || an->n_output != 1 ||
        cn->doc_string == fused_marker)
        return false;
    int y = m->node_io[m->node_io_at[c] + (int)cn->n_input];
    if (an->n_input < 1 || m->node_io[m->node_io_at[a]] != y || readers[y] != 1)
        return false;
    if (strcmp(an->op_type, "Relu") == 0) {
        *lo = 0.0f;
        *hi = INFINITY;
        return an->n_input == 1;
    }
    if (strcmp(an->op_type, "Clip") != 0)
        return false;
    if (m->node_opset[a] < 11) {
        *lo = (float)attr_float(an, "min", -FLT_MAX);
        *hi = (float)attr_float(an, "max", FLT_MAX);
    } else {
        *lo = -INFINITY;
        *hi = INFINITY;
        if (an->n_input > 3 || scalar_input(m, producer, a, 1, lo) < 0 ||
            scalar_input(m, producer, a, 2, hi) < 0)
            return false;
    }
    return *lo <= *hi; /* an empty range (all max, in ONNX) or NaN stays a Clip */
}

nb_status onnx_fuse_conv_act(nb_onnx_model *m)
{
    int nn = m->n_nodes, nv = m->n_values, fused = 0;
    int *readers = calloc((size_t)nv + 1, sizeof(int));
    int *producer = malloc(((size_t)nv + 1) * sizeof(int));
    int *act_of = malloc(((size_t)nn + 1) * sizeof(int));
    bool *gone = calloc((size_t)nn + 1, sizeof(bool));
    float *bounds = malloc(((size_t)nn + 1) * 2 * sizeof(float));
    void **mine = calloc((size_t)nn + 1, sizeof(void *));
    nb_status st = NB_OK;
    if (!readers || !producer || !act_of || !gone || !bounds || !mine) {
        st = nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", m->what);
        goto done;
    }
    readers_and_producers(m, readers, producer);
    for (int k = 0; k < nn; k++)
        act_of[k] = -1;
    for (int a = 0; a < nn; a++) {
        int x = m->nodes[a]->n_input ? m->node_io[m->node_io_at[a]] : -1;
        int c = x >= 0 ? producer[x] : -1;
        float lo, hi;
        if (c >= 0 && act_of[c] < 0 && act_fusable(m, c, a, readers, producer, &lo, &hi)) {
            act_of[c] = a;
            gone[a] = true;
            bounds[2 * c] = lo;
            bounds[2 * c + 1] = hi;
            fused++;
        }
    }
    if (fused == 0)
        goto done;
    /* the activation's output is the Conv's from now on */
    int *remap = malloc(((size_t)nv + 1) * sizeof(int));
    if (!remap) {
        st = nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", m->what);
        goto done;
    }
    for (int v = 0; v < nv; v++)
        remap[v] = v;
    for (int c = 0; c < nn; c++)
        if (act_of[c] >= 0) {
            const Onnx__NodeProto *an = m->nodes[act_of[c]];
            int ain = m->node_io_at[act_of[c] + 1] - m->node_io_at[act_of[c]] - (int)an->n_output;
            remap[m->node_io[m->node_io_at[act_of[c]] + ain]] =
                m->node_io[m->node_io_at[c] + (int)m->nodes[c]->n_input];
        }
    /* make the rewritten Conv nodes first: nothing changes if one fails */
    int nf = 0;
    for (int c = 0; c < nn && st == NB_OK; c++) {
        if (act_of[c] < 0)
            continue;
        fused_conv *f = malloc(sizeof *f);
        if (!f) {
            st = nb_error(NB_ERR_ALLOC, "onnx_load '%s': out of memory", m->what);
            break;
        }
        f->node = *m->nodes[c];
        f->node.doc_string = fused_marker;
        f->lo = bounds[2 * c];
        f->hi = bounds[2 * c + 1];
        mine[nf++] = f;
    }
    if (st != NB_OK) {
        for (int i = 0; i < nf; i++)
            free(mine[i]);
        free(remap);
        goto done;
    }
    int kept = 0, pos = 0, f = 0;
    for (int k = 0; k < nn; k++) {
        if (gone[k])
            continue;
        const Onnx__NodeProto *n = m->nodes[k];
        int b = m->node_io_at[k], e = m->node_io_at[k + 1];
        int nin = e - b - (int)n->n_output;
        int start = pos;
        for (int i = b; i < e; i++) {
            int v = m->node_io[i];
            m->node_io[pos++] = i - b < nin && v >= 0 ? remap[v] : v;
        }
        m->node_io_at[kept] = start;
        m->nodes[kept] = act_of[k] >= 0 ? &((fused_conv *)mine[f++])->node : n;
        m->conv[kept] = m->conv[k];
        m->node_opset[kept] = m->node_opset[k];
        kept++;
    }
    m->node_io_at[kept] = pos;
    for (int i = 0; i < m->n_out; i++)
        m->out_value[i] = remap[m->out_value[i]];
    free(remap);
    m->n_nodes = kept;
    m->fused_nodes = mine;
    m->n_fused_act = fused;
    mine = NULL;
done:
    free(readers);
    free(producer);
    free(act_of);
    free(gone);
    free(bounds);
    free(mine);
    return st;
}
