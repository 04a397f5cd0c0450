/* Compile: wanted outputs -> a tape of kernel calls and a memory plan.
 *
 * Nodes are made in a topological order (a node's inputs exist before it),
 * so the tape is the needed nodes in id order. Each computed value gets an
 * offset in one arena; a value's bytes are handed back once its last reader
 * has run, and reused best-fit by later values. Reshapes are views sharing
 * their source's bytes, which then stay alive until the view's last reader.
 * Inputs and outputs are never reused, so inputs keep their fed values across
 * runs and outputs survive until fetched. */
#include <stdlib.h>
#include <string.h>

#include "graph/optable.h"
#include "graph/plan.h"

#define NB_ALIGN 64

/* ---- a best-fit allocator of arena offsets ---------------------------- */

typedef struct {
    size_t offset, size;
} block;

typedef struct {
    block *free; /* sorted by offset, never adjacent */
    int n, cap;
    size_t end;  /* arena size so far */
} offset_alloc;

static bool free_insert(offset_alloc *a, int at, block b)
{
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 64;
        block *f = realloc(a->free, (size_t)cap * sizeof(block));
        if (!f)
            return false;
        a->free = f;
        a->cap = cap;
    }
    memmove(a->free + at + 1, a->free + at, (size_t)(a->n - at) * sizeof(block));
    a->free[at] = b;
    a->n++;
    return true;
}

static void free_remove(offset_alloc *a, int at)
{
    memmove(a->free + at, a->free + at + 1, (size_t)(a->n - at - 1) * sizeof(block));
    a->n--;
}

/* Best fit among free blocks; the block touching the end may grow the arena. */
static size_t alloc_take(offset_alloc *a, size_t size)
{
    int best = -1;
    for (int i = 0; i < a->n; i++)
        if (a->free[i].size >= size && (best < 0 || a->free[i].size < a->free[best].size))
            best = i;
    if (best >= 0) {
        size_t off = a->free[best].offset;
        a->free[best].offset += size;
        a->free[best].size -= size;
        if (a->free[best].size == 0)
            free_remove(a, best);
        return off;
    }
    if (a->n && a->free[a->n - 1].offset + a->free[a->n - 1].size == a->end) {
        size_t off = a->free[a->n - 1].offset;
        a->end = off + size;
        free_remove(a, a->n - 1);
        return off;
    }
    size_t off = a->end;
    a->end += size;
    return off;
}

/* Return a block, merging it with free neighbours. */
static bool alloc_give(offset_alloc *a, size_t off, size_t size)
{
    int i = 0;
    while (i < a->n && a->free[i].offset < off)
        i++;
    bool prev = i > 0 && a->free[i - 1].offset + a->free[i - 1].size == off;
    bool next = i < a->n && off + size == a->free[i].offset;
    if (prev && next) {
        a->free[i - 1].size += size + a->free[i].size;
        free_remove(a, i);
    } else if (prev) {
        a->free[i - 1].size += size;
    } else if (next) {
        a->free[i].offset = off;
        a->free[i].size += size;
    } else {
        return free_insert(a, i, (block){off, size});
    }
    return true;
}

/* ---- plan construction ------------------------------------------------- */

/* Whether value v is a CONST node's tensor (or a view of one). */
static bool is_const(const nb_plan *p, int v)
{
    const nb_plan_value *pv = &p->values[v];
    int root = pv->kind == NB_VALUE_ALIAS ? pv->root : v;
    return p->values[root].kind == NB_VALUE_EXTERNAL && p->values[root].node->op == NB_OP_CONST;
}

/* One kernel cache per entry (empty), told which inputs are constants. */
static nb_status plan_caches(nb_plan *p)
{
    p->caches = calloc((size_t)p->n_entries + 1, sizeof(nb_kernel_cache));
    if (!p->caches)
        return nb_error(NB_ERR_ALLOC, "compile: out of memory");
    for (int t = 0; t < p->n_entries; t++) {
        pthread_mutex_init(&p->caches[t].lock, NULL);
        for (int k = 0; k < p->entries[t].n_in && k < 32; k++)
            if (is_const(p, p->entries[t].in[k]))
                p->caches[t].const_inputs |= 1u << k;
    }
    return NB_OK;
}

void nb_plan_free(nb_plan *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_entries; i++)
        free(p->entries[i].in);
    for (int i = 0; p->caches && i < p->n_entries; i++) {
        if (p->caches[i].data && p->caches[i].free_fn)
            p->caches[i].free_fn(p->caches[i].data);
        pthread_mutex_destroy(&p->caches[i].lock);
    }
    free(p->caches);
    for (int v = 0; p->fused && v < p->n_values; v++)
        if (p->fused[v]) {
            free(p->fused[v]->params);
            free(p->fused[v]);
        }
    free(p->fused);
    free(p->entries);
    free(p->values);
    free(p->value_of_node);
    free(p->outputs);
    free(p);
}

static size_t value_bytes(const nb_node *n)
{
    size_t b = (size_t)nb_node_numel(n) * nb_dtype_size(n->dtype);
    return b ? (b + NB_ALIGN - 1) / NB_ALIGN * NB_ALIGN : NB_ALIGN;
}

/* Mark the needed nodes (ancestors of the outputs), make one value each. */
static nb_status plan_values(nb_plan *p, nb_graph *g, int n_out, nb_node *const *outs)
{
    int n = g->n_nodes;
    char *needed = calloc((size_t)n + 1, 1);
    p->value_of_node = malloc(sizeof(int) * (size_t)n + 1);
    p->values = calloc((size_t)n + 1, sizeof(nb_plan_value));
    if (!needed || !p->value_of_node || !p->values) {
        free(needed);
        return nb_error(NB_ERR_ALLOC, "compile: out of memory for %d nodes", n);
    }
    for (int i = 0; i < n_out; i++)
        needed[outs[i]->id] = 1;
    for (int id = n - 1; id >= 0; id--)
        if (needed[id])
            for (int k = 0; k < g->nodes[id]->n_in; k++)
                needed[g->nodes[id]->in[k]->id] = 1;
    for (int id = 0; id < n; id++) {
        p->value_of_node[id] = -1;
        if (!needed[id])
            continue;
        nb_node *nd = g->nodes[id];
        nb_plan_value *v = &p->values[p->n_values];
        v->node = nd;
        if (nb_op_is_stored(nd->op)) {
            v->kind = NB_VALUE_EXTERNAL;
        } else if (nb_op_row_get(nd->op)->alias) {
            int src = p->value_of_node[nd->in[0]->id];
            v->kind = NB_VALUE_ALIAS;
            v->root = p->values[src].kind == NB_VALUE_ALIAS ? p->values[src].root : src;
        } else {
            v->kind = NB_VALUE_ARENA;
            v->nbytes = value_bytes(nd);
        }
        p->value_of_node[id] = p->n_values++;
    }
    free(needed);
    return NB_OK;
}

/* One entry per computed (arena, non-input) value, in id order. */
static nb_status plan_entries(nb_plan *p)
{
    p->entries = calloc((size_t)p->n_values + 1, sizeof(nb_plan_entry));
    if (!p->entries)
        return nb_error(NB_ERR_ALLOC, "compile: out of memory");
    for (int v = 0; v < p->n_values; v++) {
        nb_node *nd = p->values[v].node;
        if (p->values[v].kind != NB_VALUE_ARENA || nd->op == NB_OP_INPUT)
            continue;
        const nb_plan_fused *f = p->fused ? p->fused[v] : NULL;
        nb_op op = f ? f->op : nd->op;
        nb_kernel_fn fn = p->backend->kernels[op];
        if (!fn)
            return nb_error(NB_ERR_UNSUPPORTED, "compile: backend '%s' has no kernel for %s (node '%s')",
                            p->backend->name, nb_op_name(op), nd->name);
        nb_plan_entry *e = &p->entries[p->n_entries++];
        e->fn = fn;
        e->op = op;
        e->params = f ? f->params : nd->params;
        e->value = v;
        e->n_in = f ? f->n_in : nd->n_in;
        e->in = malloc(sizeof(int) * (size_t)(e->n_in ? e->n_in : 1));
        if (!e->in)
            return nb_error(NB_ERR_ALLOC, "compile: out of memory");
        for (int k = 0; k < e->n_in; k++)
            e->in[k] = f ? f->in[k] : p->value_of_node[nd->in[k]->id];
    }
    return NB_OK;
}

/* Liveness: last[v] = the last entry reading arena value v (through views
 * too); INT32_MAX for inputs and outputs. Then assign offsets in tape order. */
static nb_status plan_memory(nb_plan *p)
{
    int *last = malloc(sizeof(int) * (size_t)(p->n_values + 1));
    if (!last)
        return nb_error(NB_ERR_ALLOC, "compile: out of memory");
    for (int v = 0; v < p->n_values; v++)
        last[v] = p->values[v].node->op == NB_OP_INPUT ? INT32_MAX : -1;
    for (int i = 0; i < p->n_outputs; i++) {
        const nb_plan_value *o = &p->values[p->outputs[i]];
        last[o->kind == NB_VALUE_ALIAS ? o->root : p->outputs[i]] = INT32_MAX;
    }
    for (int t = 0; t < p->n_entries; t++) {
        for (int k = 0; k < p->entries[t].n_in; k++) {
            int v = p->entries[t].in[k];
            if (p->values[v].kind == NB_VALUE_ALIAS)
                v = p->values[v].root;
            if (last[v] < t)
                last[v] = t;
        }
    }
    offset_alloc a = {0};
    nb_status st = NB_OK;
    for (int v = 0; v < p->n_values; v++) {
        nb_plan_value *pv = &p->values[v];
        if (pv->kind == NB_VALUE_ARENA) {
            p->unshared_bytes += pv->nbytes;
            if (pv->node->op == NB_OP_INPUT)
                pv->offset = alloc_take(&a, pv->nbytes);
        }
    }
    for (int t = 0; t < p->n_entries && st == NB_OK; t++) {
        nb_plan_value *out = &p->values[p->entries[t].value];
        out->offset = alloc_take(&a, out->nbytes);
        /* give back what this entry read last (the output is placed first, so
         * it never overlaps its own inputs), and an output nobody reads */
        for (int k = 0; k <= p->entries[t].n_in && st == NB_OK; k++) {
            int v = k < p->entries[t].n_in ? p->entries[t].in[k] : p->entries[t].value;
            if (p->values[v].kind == NB_VALUE_ALIAS)
                v = p->values[v].root;
            if (p->values[v].kind == NB_VALUE_ARENA && last[v] <= t) {
                last[v] = INT32_MAX; /* given back once */
                if (!alloc_give(&a, p->values[v].offset, p->values[v].nbytes))
                    st = nb_error(NB_ERR_ALLOC, "compile: out of memory");
            }
        }
    }
    p->arena_bytes = a.end;
    free(a.free);
    free(last);
    return st;
}

nb_kernel_call nb_plan_shape_call(const nb_plan *p, nb_op op, int n_in, const int *in, int out,
                                  const void *params, nb_tensor *ts, const nb_tensor **ins)
{
    for (int k = 0; k <= n_in; k++) {
        const nb_node *nd = p->values[k < n_in ? in[k] : out].node;
        nb_tensor *t = &ts[k];
        memset(t, 0, sizeof(*t));
        t->dtype = nd->dtype;
        t->ndim = nd->ndim;
        memcpy(t->shape, nd->shape, sizeof(t->shape));
        nb_shape_strides(nd->ndim, nd->shape, t->strides);
        if (k < n_in)
            ins[k] = t;
    }
    return (nb_kernel_call){op, n_in, ins, &ts[n_in], params, NULL, 0, 0, NULL};
}

/* The largest scratch any entry asks the backend for. */
static void plan_workspace(nb_plan *p)
{
    if (!p->backend->workspace_size)
        return;
    for (int t = 0; t < p->n_entries; t++) {
        const nb_plan_entry *e = &p->entries[t];
        nb_tensor ts[NB_MAX_DIMS * 4 + 1];
        const nb_tensor *ins[NB_MAX_DIMS * 4];
        if (e->n_in > NB_MAX_DIMS * 4)
            continue;
        nb_kernel_call c = nb_plan_shape_call(p, e->op, e->n_in, e->in, e->value, e->params, ts, ins);
        size_t w = p->backend->workspace_size(&c);
        if (w > p->workspace_bytes)
            p->workspace_bytes = w;
    }
}

nb_plan *nb_compile(nb_graph *g, int n_out, nb_node *const *outputs, const nb_backend *backend)
{
    if (!g) {
        nb_error(NB_ERR_ARG, "compile: no graph");
        return NULL;
    }
    if (g->status != NB_OK) {
        nb_error(NB_ERR_STATE, "compile: the graph has failed: %s", g->error);
        return NULL;
    }
    if (n_out < 1 || !outputs) {
        nb_error(NB_ERR_ARG, "compile: no outputs given");
        return NULL;
    }
    for (int i = 0; i < n_out; i++) {
        if (!outputs[i] || outputs[i]->graph != g || nb_node_is_poison(outputs[i])) {
            nb_error(NB_ERR_ARG, "compile: output %d is not a node of this graph", i);
            return NULL;
        }
    }
    nb_plan *p = calloc(1, sizeof(*p));
    if (!p) {
        nb_error(NB_ERR_ALLOC, "compile: out of memory");
        return NULL;
    }
    p->g = g;
    p->backend = backend ? backend : nb_cpu_backend();
    p->n_nodes = g->n_nodes;
    p->outputs = malloc(sizeof(int) * (size_t)n_out);
    nb_status st = p->outputs ? plan_values(p, g, n_out, outputs)
                              : nb_error(NB_ERR_ALLOC, "compile: out of memory");
    if (st == NB_OK) {
        p->n_outputs = n_out;
        for (int i = 0; i < n_out; i++)
            p->outputs[i] = p->value_of_node[outputs[i]->id];
        st = nb_plan_fuse(p);
    }
    if (st == NB_OK)
        st = plan_entries(p);
    if (st == NB_OK)
        st = plan_memory(p);
    if (st == NB_OK)
        st = plan_caches(p);
    if (st != NB_OK) {
        nb_plan_free(p);
        return NULL;
    }
    plan_workspace(p);
    return p;
}

int nb_plan_num_entries(const nb_plan *p) { return p->n_entries; }
size_t nb_plan_arena_bytes(const nb_plan *p) { return p->arena_bytes; }
size_t nb_plan_unshared_bytes(const nb_plan *p) { return p->unshared_bytes; }
