/* Finite-difference gradient check: analytic gradients from nb_grad against
 * central differences (f(x + eps) - f(x - eps)) / (2 eps), element by element. */
#include <math.h>
#include <stdlib.h>

#include "autodiff/autodiff.h"
#include "graph/graph_impl.h"
#include "graph/session.h"

typedef struct {
    nb_plan *plan;
    nb_session *sess;
} runner;

static void runner_free(runner *r)
{
    nb_session_free(r->sess);
    nb_plan_free(r->plan);
}

static nb_status runner_make(runner *r, nb_graph *g, int n, nb_node *const *outs)
{
    r->plan = nb_compile(g, n, outs, NULL);
    r->sess = r->plan ? nb_session_new(r->plan) : NULL;
    return r->sess ? NB_OK : NB_ERR_STATE;
}

/* Feed the graph's INPUT nodes in creation order from feeds (may be NULL). */
static nb_status feed_all(nb_graph *g, nb_session *s, const nb_tensor *feeds)
{
    int k = 0;
    for (int id = 0; id < g->n_nodes; id++) {
        if (g->nodes[id]->op != NB_OP_INPUT)
            continue;
        if (!feeds)
            return nb_error(NB_ERR_ARG, "gradcheck: input '%s' needs a feed", g->nodes[id]->name);
        nb_status st = nb_session_feed(s, g->nodes[id], &feeds[k++]);
        if (st != NB_OK)
            return st;
    }
    return NB_OK;
}

/* The loss value of one forward run. */
static nb_status loss_at(runner *f, nb_graph *g, const nb_tensor *feeds, nb_node *loss, double *out)
{
    nb_status st = feed_all(g, f->sess, feeds);
    if (st == NB_OK)
        st = nb_session_run(f->sess);
    nb_tensor t = {0};
    if (st == NB_OK)
        st = nb_session_fetch(f->sess, loss, &t);
    if (st == NB_OK)
        *out = nb_tensor_get_flat(&t, 0);
    nb_tensor_release(&t);
    return st;
}

/* The element of wrt node w being perturbed: its stored value (PARAM) or its feed (INPUT). */
static nb_tensor *target_tensor(nb_graph *g, nb_node *w, nb_tensor *feeds)
{
    if (w->op == NB_OP_PARAM)
        return &w->value;
    int k = 0;
    for (int id = 0; id < w->id; id++)
        k += g->nodes[id]->op == NB_OP_INPUT;
    return feeds ? &feeds[k] : NULL;
}

nb_status nb_gradcheck(nb_graph *g, nb_node *loss, int n, nb_node *const *wrt,
                       const nb_tensor *feeds_in, double eps, double *max_rel_err)
{
    *max_rel_err = INFINITY;
    for (int i = 0; i < n; i++)
        if (!wrt[i] || (wrt[i]->op != NB_OP_PARAM && wrt[i]->op != NB_OP_INPUT) ||
            wrt[i]->dtype != NB_F64)
            return nb_error(NB_ERR_ARG, "gradcheck: wrt %d must be an f64 PARAM or INPUT node", i);
    nb_node **grads = calloc((size_t)n + 1, sizeof(nb_node *));
    nb_node **outs = calloc((size_t)n + 1, sizeof(nb_node *));
    int n_inputs = 0;
    for (int id = 0; id < g->n_nodes; id++)
        n_inputs += g->nodes[id]->op == NB_OP_INPUT;
    nb_tensor *feeds = calloc((size_t)n_inputs + 1, sizeof(nb_tensor));
    if (!grads || !outs || !feeds) {
        free(grads), free(outs), free(feeds);
        return nb_error(NB_ERR_ALLOC, "gradcheck: out of memory");
    }
    nb_status st = NB_OK;
    for (int k = 0; k < n_inputs && feeds_in && st == NB_OK; k++) /* private copies to perturb */
        st = nb_tensor_contiguous(&feeds_in[k], &feeds[k]);
    if (st == NB_OK)
        st = nb_grad(g, loss, n, wrt, grads);
    runner fwd = {0}, bwd = {0};
    if (st == NB_OK)
        st = runner_make(&fwd, g, 1, &loss);
    if (st == NB_OK)
        st = runner_make(&bwd, g, n, grads);
    nb_tensor *fd = n_inputs ? feeds : NULL;
    if (st == NB_OK)
        st = feed_all(g, bwd.sess, fd);
    if (st == NB_OK)
        st = nb_session_run(bwd.sess);
    double worst = 0;
    for (int i = 0; i < n && st == NB_OK; i++) {
        nb_tensor ga = {0};
        st = nb_session_fetch(bwd.sess, grads[i], &ga);
        nb_tensor *x = target_tensor(g, wrt[i], fd);
        int64_t numel = x ? nb_tensor_numel(x) : 0;
        double *data = x ? nb_tensor_data(x) : NULL; /* contiguous f64 */
        for (int64_t j = 0; j < numel && st == NB_OK; j++) {
            double x0 = data[j], fp = 0, fm = 0;
            data[j] = x0 + eps;
            st = loss_at(&fwd, g, fd, loss, &fp);
            data[j] = x0 - eps;
            if (st == NB_OK)
                st = loss_at(&fwd, g, fd, loss, &fm);
            data[j] = x0;
            double num = (fp - fm) / (2 * eps), ana = nb_tensor_get_flat(&ga, j);
            double den = fmax(1.0, fmax(fabs(num), fabs(ana)));
            double rel = fabs(num - ana) / den;
            if (!(rel <= worst))
                worst = rel; /* NaN propagates as the worst */
        }
        nb_tensor_release(&ga);
    }
    runner_free(&fwd);
    runner_free(&bwd);
    for (int k = 0; k < n_inputs; k++)
        nb_tensor_release(&feeds[k]);
    free(feeds), free(grads), free(outs);
    if (st == NB_OK)
        *max_rel_err = worst;
    return st;
}
