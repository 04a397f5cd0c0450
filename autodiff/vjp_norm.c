/* VJP rules of the normalisation ops. Each rule builds the fused backward
 * ops of kernels/norm.c (inputs listed in kernels/norm_params.h):
 *
 *   dx             = *_GRAD (x, gy [, gamma])        (batch norm: see below)
 *   dgamma, dbeta  = rows 0 and 1 of *_GRAD_AFFINE (x, gy), sliced and
 *                    reshaped to gamma's shape (RMS norm: the op gives dgamma)
 *
 * Batch norm in training reads the per-channel sums and statistics dx needs
 * from the affine node: dx = BATCH_NORM_GRAD (x, gy, gaff [, gamma]), gaff
 * (5, C) = (dgamma, dbeta, shift, mean - shift, rstd); in eval it reads the
 * running statistics: BATCH_NORM_GRAD (x, gy, running_mean, running_var
 * [, gamma]). The backward ops never write the running statistics, so a
 * training run updates them exactly once (in the forward BATCH_NORM). The
 * running statistics get no gradient.
 *
 * The affine node is shared: the rule for gamma makes it, the rule for beta
 * (and batch norm's dx) finds it among the last nodes made and reuses it.
 *
 * The *_GRAD and *_GRAD_AFFINE ops have no rules of their own, so second
 * derivatives through a normalisation fail in nb_grad with "no gradient rule"
 * naming the op. */
#include <string.h>

#include "autodiff/vjp.h"

#define REUSE_WINDOW 24 /* how far back to look for an existing affine node */

static bool params_equal(const nb_norm_params *a, const nb_norm_params *b)
{
    return a->eps == b->eps && a->momentum == b->momentum && a->training == b->training &&
           a->naxes == b->naxes && a->groups == b->groups && a->has_gamma == b->has_gamma &&
           a->has_beta == b->has_beta && a->has_running == b->has_running;
}

/* The existing node of op with exactly these inputs and params, or NULL. */
static nb_node *find_recent(nb_graph *g, nb_op op, int n, nb_node *const *in,
                            const nb_norm_params *p)
{
    int stop = g->n_nodes > REUSE_WINDOW ? g->n_nodes - REUSE_WINDOW : 0;
    for (int id = g->n_nodes - 1; id >= stop; id--) {
        nb_node *nd = g->nodes[id];
        if (nd->op != op || nd->n_in != n || nd->params_size != sizeof(*p) ||
            !params_equal(nd->params, p))
            continue;
        bool same = true;
        for (int k = 0; k < n && same; k++)
            same = nd->in[k] == in[k];
        if (same)
            return nd;
    }
    return NULL;
}

/* A backward node of op with params p (a copy of the forward's, flags set). */
static nb_node *grad_node(nb_graph *g, nb_op op, int n, nb_node *const *in,
                          const nb_norm_params *p, int ndim, const int64_t *shape)
{
    nb_node *old = find_recent(g, op, n, in, p);
    if (old)
        return old;
    return nb_graph_add_node(g, op, n, in, p, sizeof(*p), in[0]->dtype, ndim, shape);
}

/* The (2, *ashape) stacked (dgamma, dbeta) of a forward node y; batch norm's
 * is (5, C), its rows 2-4 holding the statistics BATCH_NORM_GRAD reads. */
static nb_node *affine_grads(nb_graph *g, nb_node *y, nb_op op, nb_node *gy, int andim,
                             const int64_t *ashape)
{
    const nb_norm_params *fp = (const nb_norm_params *)y->params;
    nb_norm_params p = *fp;
    p.has_gamma = p.has_beta = 0;
    p.has_running = 0;
    nb_node *in[4] = {y->in[0], gy, NULL, NULL};
    int n = 2;
    if (op == NB_OP_BATCH_NORM_GRAD_AFFINE && !fp->training) {
        int k = 1 + !!fp->has_gamma + !!fp->has_beta;
        in[2] = y->in[k];
        in[3] = y->in[k + 1];
        n = 4;
        p.has_running = 1;
    }
    int64_t shape[NB_MAX_DIMS];
    int ndim = andim;
    memcpy(shape, ashape, sizeof(int64_t) * (size_t)andim);
    if (op != NB_OP_RMS_NORM_GRAD_AFFINE) {
        shape[0] = op == NB_OP_BATCH_NORM_GRAD_AFFINE ? 5 : 2; /* BN: + statistics */
        memcpy(shape + 1, ashape, sizeof(int64_t) * (size_t)andim);
        ndim = andim + 1;
    }
    return grad_node(g, op, n, in, &p, ndim, shape);
}

/* Row `row` of a stacked (2, ...) affine gradient, in the shape of t. */
static nb_node *affine_row(nb_graph *g, nb_node *gaff, int row, const nb_node *t)
{
    nb_node *r = nb_slice(g, gaff, 0, row, row + 1, 1);
    return nb_reshape(g, r, t->ndim, t->shape);
}

/* x [, gamma] [, beta] ...: which input i is. 0 x, 1 gamma, 2 beta, 3 other */
static int role(const nb_norm_params *p, int i)
{
    if (i == 0)
        return 0;
    if (p->has_gamma && i == 1)
        return 1;
    if (p->has_beta && i == 1 + !!p->has_gamma)
        return 2;
    return 3;
}

/* batch_norm: see the header comment */
static nb_node *vjp_batch_norm(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    const nb_norm_params *fp = (const nb_norm_params *)y->params;
    nb_node *x = y->in[0];
    int r = role(fp, i);
    if (r == 3)
        return NULL; /* running statistics */
    int64_t C = x->shape[1];
    if (r > 0)
        return affine_row(g, affine_grads(g, y, NB_OP_BATCH_NORM_GRAD_AFFINE, gy, 1, &C), r - 1,
                          y->in[i]);
    nb_norm_params p = *fp;
    p.has_beta = 0;
    nb_node *in[5];
    int n = 0;
    in[n++] = x;
    in[n++] = gy;
    if (fp->training) {
        in[n++] = affine_grads(g, y, NB_OP_BATCH_NORM_GRAD_AFFINE, gy, 1, &C);
        p.has_running = 0;
    } else {
        int k = 1 + !!fp->has_gamma + !!fp->has_beta;
        in[n++] = y->in[k];
        in[n++] = y->in[k + 1];
        p.has_running = 1;
    }
    if (fp->has_gamma)
        in[n++] = y->in[1];
    return grad_node(g, NB_OP_BATCH_NORM_GRAD, n, in, &p, x->ndim, x->shape);
}

/* dx of layer, group and RMS norm: op (x, gy [, gamma]) */
static nb_node *row_dx(nb_graph *g, nb_node *y, nb_op op, nb_node *gy)
{
    const nb_norm_params *fp = (const nb_norm_params *)y->params;
    nb_norm_params p = *fp;
    p.has_beta = 0;
    nb_node *x = y->in[0], *in[3] = {x, gy, fp->has_gamma ? y->in[1] : NULL};
    return grad_node(g, op, fp->has_gamma ? 3 : 2, in, &p, x->ndim, x->shape);
}

static nb_node *vjp_layer_norm(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    const nb_norm_params *fp = (const nb_norm_params *)y->params;
    int r = role(fp, i);
    if (r == 0)
        return row_dx(g, y, NB_OP_LAYER_NORM_GRAD, gy);
    nb_node *x = y->in[0];
    nb_node *gaff = affine_grads(g, y, NB_OP_LAYER_NORM_GRAD_AFFINE, gy, fp->naxes,
                                 x->shape + x->ndim - fp->naxes);
    return affine_row(g, gaff, r - 1, y->in[i]);
}

static nb_node *vjp_group_norm(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    const nb_norm_params *fp = (const nb_norm_params *)y->params;
    int r = role(fp, i);
    if (r == 0)
        return row_dx(g, y, NB_OP_GROUP_NORM_GRAD, gy);
    nb_node *x = y->in[0];
    nb_node *gaff = affine_grads(g, y, NB_OP_GROUP_NORM_GRAD_AFFINE, gy, 1, &x->shape[1]);
    return affine_row(g, gaff, r - 1, y->in[i]);
}

static nb_node *vjp_rms_norm(nb_graph *g, nb_node *y, int i, nb_node *gy)
{
    const nb_norm_params *fp = (const nb_norm_params *)y->params;
    if (i == 0)
        return row_dx(g, y, NB_OP_RMS_NORM_GRAD, gy);
    nb_node *x = y->in[0];
    return affine_grads(g, y, NB_OP_RMS_NORM_GRAD_AFFINE, gy, fp->naxes,
                        x->shape + x->ndim - fp->naxes);
}

void nb_vjp_register_norm(nb_vjp_fn *table)
{
    table[NB_OP_BATCH_NORM] = vjp_batch_norm;
    table[NB_OP_LAYER_NORM] = vjp_layer_norm;
    table[NB_OP_GROUP_NORM] = vjp_group_norm;
    table[NB_OP_RMS_NORM] = vjp_rms_norm;
}
