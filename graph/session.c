/* Sessions: one arena per session, the tape replayed by nb_session_run.
 *
 * Every kernel call is prepared when the session is made (tensors pointing
 * into the arena, input pointer arrays, params), so a run is a loop of
 * indirect calls. Parameter and constant tensors are re-read at the start of
 * each run, so an optimizer that writes new values is seen at once.
 *
 * Each call points at its entry's cache in the plan (nb_kernel_cache), which
 * the kernel may fill and keep across runs, told which inputs are CONST
 * nodes: a constant's contents never change, so work on it (Winograd's
 * weight transform) is done at the first run of any of the plan's sessions
 * only, and shared by all of them. */
#include <stdlib.h>
#include <string.h>

#include "graph/plan.h"
#include "kernels/threadpool.h"

struct nb_session {
    const nb_plan *plan;
    nb_buffer *arena;
    nb_tensor *values;             /* one per plan value */
    nb_kernel_call *calls;         /* one per entry */
    const nb_tensor **in_ptrs;     /* all entries' input pointer arrays */
    bool *fed;                     /* per value; meaningful for inputs */
    void *workspace;
    uint64_t runs; /* completed runs: the next run's run_index */
    double *prof;  /* per entry: seconds summed while profiling, else NULL */
    uint64_t prof_runs;
};

static void free_aligned(void *data, void *ctx) { free(data); }

/* Arena values and views of them hold a reference on the arena; parameters,
 * constants and views of those borrow the graph's tensors. */
static bool holds_ref(const nb_plan *p, int v)
{
    const nb_plan_value *pv = &p->values[v];
    int root = pv->kind == NB_VALUE_ALIAS ? pv->root : v;
    return p->values[root].kind == NB_VALUE_ARENA;
}

void nb_session_free(nb_session *s)
{
    if (!s)
        return;
    if (s->values) {
        for (int v = 0; v < s->plan->n_values; v++)
            if (holds_ref(s->plan, v))
                nb_tensor_release(&s->values[v]);
    }
    nb_buffer_release(s->arena);
    free(s->values);
    free(s->calls);
    free(s->in_ptrs);
    free(s->fed);
    free(s->workspace);
    free(s->prof);
    free(s);
}

/* Point external values (and views of them) at the graph's current tensors. */
static void refresh_external(nb_session *s)
{
    const nb_plan *p = s->plan;
    for (int v = 0; v < p->n_values; v++) {
        const nb_plan_value *pv = &p->values[v];
        if (pv->kind == NB_VALUE_EXTERNAL) {
            s->values[v] = pv->node->value;
        } else if (pv->kind == NB_VALUE_ALIAS && p->values[pv->root].kind == NB_VALUE_EXTERNAL) {
            nb_tensor *t = &s->values[v];
            *t = p->values[pv->root].node->value; /* contiguous: the graph made it */
            t->ndim = pv->node->ndim;
            memcpy(t->shape, pv->node->shape, sizeof(t->shape));
            nb_shape_strides(t->ndim, t->shape, t->strides);
        }
    }
}

/* A contiguous tensor for node n at byte offset off of the arena. */
static nb_status arena_view(nb_session *s, const nb_node *n, size_t off, nb_tensor *out)
{
    int64_t strides[NB_MAX_DIMS];
    nb_shape_strides(n->ndim, n->shape, strides);
    size_t es = nb_dtype_size(n->dtype);
    return nb_tensor_view_of(out, s->arena, n->dtype, n->ndim, n->shape, strides,
                             (int64_t)(off / es));
}

nb_session *nb_session_new(const nb_plan *p)
{
    nb_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->plan = p;
    int n_in_total = 0;
    for (int t = 0; t < p->n_entries; t++)
        n_in_total += p->entries[t].n_in;
    s->values = calloc((size_t)p->n_values + 1, sizeof(nb_tensor));
    s->calls = calloc((size_t)p->n_entries + 1, sizeof(nb_kernel_call));
    s->in_ptrs = calloc((size_t)n_in_total + 1, sizeof(nb_tensor *));
    s->fed = calloc((size_t)p->n_values + 1, sizeof(bool));
    void *mem = NULL;
    size_t bytes = p->arena_bytes ? p->arena_bytes : 64;
    if (posix_memalign(&mem, 64, bytes) != 0)
        mem = NULL;
    if (mem && nb_buffer_wrap(mem, bytes, (nb_device){NB_DEVICE_CPU, 0}, free_aligned, NULL,
                              &s->arena) != NB_OK) {
        free(mem);
        mem = NULL;
    }
    if (p->workspace_bytes && posix_memalign(&s->workspace, 64, p->workspace_bytes) != 0)
        s->workspace = NULL;
    if (!s->values || !s->calls || !s->in_ptrs || !s->fed || !mem ||
        (p->workspace_bytes && !s->workspace)) {
        nb_error(NB_ERR_ALLOC, "session: out of memory for an arena of %zu bytes", bytes);
        nb_session_free(s);
        return NULL;
    }
    /* arena values first, then views of them */
    for (int v = 0; v < p->n_values; v++) {
        const nb_plan_value *pv = &p->values[v];
        if (pv->kind == NB_VALUE_ARENA && arena_view(s, pv->node, pv->offset, &s->values[v]) != NB_OK)
            goto fail;
    }
    for (int v = 0; v < p->n_values; v++) {
        const nb_plan_value *pv = &p->values[v];
        if (pv->kind == NB_VALUE_ALIAS && p->values[pv->root].kind == NB_VALUE_ARENA &&
            arena_view(s, pv->node, p->values[pv->root].offset, &s->values[v]) != NB_OK)
            goto fail;
    }
    refresh_external(s);
    const nb_tensor **ip = s->in_ptrs;
    for (int t = 0; t < p->n_entries; t++) {
        const nb_plan_entry *e = &p->entries[t];
        for (int k = 0; k < e->n_in; k++)
            ip[k] = &s->values[e->in[k]];
        s->calls[t] = (nb_kernel_call){e->op, e->n_in, ip, &s->values[e->value], e->params,
                                       s->workspace, p->workspace_bytes, 0, &p->caches[t]};
        ip += e->n_in;
    }
    return s;
fail:
    nb_session_free(s);
    return NULL;
}

/* The plan value of node n, or -1 with an error naming it. */
static int value_of(const nb_session *s, const nb_node *n, const char *what)
{
    const nb_plan *p = s->plan;
    if (!n || n->graph != p->g || n->id < 0 || n->id >= p->n_nodes) {
        nb_error(NB_ERR_NOT_FOUND, "%s: the node is not part of this plan's graph", what);
        return -1;
    }
    int v = p->value_of_node[n->id];
    if (v < 0)
        nb_error(NB_ERR_NOT_FOUND, "%s: node '%s' is not computed by this plan", what, n->name);
    return v;
}

static nb_status feed_check(nb_session *s, const nb_node *input, int *v)
{
    *v = -1;
    if (!input || input->op != NB_OP_INPUT)
        return nb_error(NB_ERR_ARG, "feed: node '%s' is not an input",
                        input ? input->name : "(null)");
    if (input->graph != s->plan->g || input->id >= s->plan->n_nodes)
        return nb_error(NB_ERR_NOT_FOUND, "feed: input '%s' is not part of this plan's graph",
                        input->name);
    *v = s->plan->value_of_node[input->id];
    return NB_OK; /* *v < 0: the plan does not read this input; the feed is ignored */
}

nb_status nb_session_feed(nb_session *s, const nb_node *input, const nb_tensor *value)
{
    int v;
    nb_status st = feed_check(s, input, &v);
    if (st != NB_OK)
        return st;
    if (!value || !value->buf)
        return nb_error(NB_ERR_ARG, "feed '%s': no tensor given", input->name);
    if (value->dtype != input->dtype ||
        !nb_shape_equal(value->ndim, value->shape, input->ndim, input->shape)) {
        char want[96], got[96];
        return nb_error(value->dtype != input->dtype ? NB_ERR_DTYPE : NB_ERR_SHAPE,
                        "feed '%s': expected %s %s, got %s %s", input->name,
                        nb_shape_str(input->ndim, input->shape, want, sizeof(want)),
                        nb_dtype_name(input->dtype),
                        nb_shape_str(value->ndim, value->shape, got, sizeof(got)),
                        nb_dtype_name(value->dtype));
    }
    if (v < 0)
        return NB_OK;
    st = nb_tensor_copy_into(&s->values[v], value);
    if (st == NB_OK)
        s->fed[v] = true;
    return st;
}

nb_status nb_session_feed_data(nb_session *s, const nb_node *input, const void *data, size_t nbytes)
{
    int v;
    nb_status st = feed_check(s, input, &v);
    if (st != NB_OK)
        return st;
    size_t want = (size_t)nb_node_numel(input) * nb_dtype_size(input->dtype);
    if (nbytes != want || (!data && nbytes))
        return nb_error(NB_ERR_SHAPE, "feed '%s': expected %zu bytes (%s %s), got %zu",
                        input->name, want, nb_node_shape_str(input), nb_dtype_name(input->dtype),
                        nbytes);
    if (v < 0)
        return NB_OK;
    if (nbytes)
        memcpy(nb_tensor_data(&s->values[v]), data, nbytes);
    s->fed[v] = true;
    return NB_OK;
}

nb_status nb_session_feed_name(nb_session *s, const char *name, const nb_tensor *value)
{
    nb_node *n = nb_graph_find(s->plan->g, name);
    if (!n)
        return nb_error(NB_ERR_NOT_FOUND, "feed: no node named '%s'", name ? name : "(null)");
    return nb_session_feed(s, n, value);
}

nb_status nb_session_run(nb_session *s)
{
    const nb_plan *p = s->plan;
    if (p->g->n_nodes < p->n_nodes)
        return nb_error(NB_ERR_STATE, "run: the graph changed under the plan");
    for (int v = 0; v < p->n_values; v++)
        if (p->values[v].node->op == NB_OP_INPUT && !s->fed[v])
            return nb_error(NB_ERR_ARG, "run: input '%s' %s %s was not fed",
                            p->values[v].node->name, nb_node_shape_str(p->values[v].node),
                            nb_dtype_name(p->values[v].node->dtype));
    refresh_external(s);
    uint64_t run = s->runs++;
    if (s->prof)
        s->prof_runs++;
    for (int t = 0; t < p->n_entries; t++) {
        s->calls[t].run_index = run;
        double t0 = s->prof ? nb_now_seconds() : 0.0;
        nb_status st = p->entries[t].fn(&s->calls[t]);
        if (s->prof)
            s->prof[t] += nb_now_seconds() - t0;
        if (st != NB_OK) {
            const nb_node *nd = p->values[p->entries[t].value].node;
            char msg[1024];
            snprintf(msg, sizeof(msg), "%s", nb_last_error());
            return nb_error(st, "run: %s '%s': %s", nb_op_name(p->entries[t].op), nd->name, msg);
        }
    }
    return NB_OK;
}

nb_status nb_session_fetch(nb_session *s, const nb_node *n, nb_tensor *out)
{
    int v = value_of(s, n, "fetch");
    if (v < 0)
        return NB_ERR_NOT_FOUND;
    const nb_plan *p = s->plan;
    int root = p->values[v].kind == NB_VALUE_ALIAS ? p->values[v].root : v;
    bool kept = p->values[root].kind == NB_VALUE_EXTERNAL || n->op == NB_OP_INPUT ||
                p->values[root].node->op == NB_OP_INPUT;
    for (int i = 0; i < p->n_outputs && !kept; i++)
        kept = p->outputs[i] == v;
    if (!kept)
        return nb_error(NB_ERR_ARG, "fetch: node '%s' is not an output of this plan (its memory is reused)",
                        n->name);
    nb_tensor_ref(out, &s->values[v]);
    return NB_OK;
}

nb_status nb_session_fetch_name(nb_session *s, const char *name, nb_tensor *out)
{
    nb_node *n = nb_graph_find(s->plan->g, name);
    if (!n)
        return nb_error(NB_ERR_NOT_FOUND, "fetch: no node named '%s'", name ? name : "(null)");
    return nb_session_fetch(s, n, out);
}

nb_status nb_session_set_profiling(nb_session *s, bool on)
{
    free(s->prof);
    s->prof = NULL;
    s->prof_runs = 0;
    if (on && !(s->prof = calloc((size_t)s->plan->n_entries + 1, sizeof(double))))
        return nb_error(NB_ERR_ALLOC, "session: out of memory for profiling");
    return NB_OK;
}

int nb_session_profile(const nb_session *s, nb_profile_entry *out, int max)
{
    if (!s->prof)
        return 0;
    const nb_plan *p = s->plan;
    for (int t = 0; t < p->n_entries && t < max; t++)
        out[t] = (nb_profile_entry){p->values[p->entries[t].value].node, p->entries[t].op,
                                    s->prof[t], s->prof_runs};
    return p->n_entries;
}

uint64_t nb_session_runs(const nb_session *s) { return s->runs; }
void nb_session_set_runs(nb_session *s, uint64_t runs) { s->runs = runs; }
