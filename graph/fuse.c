/* Fusions made at compile time: chains of nodes that one kernel call of the
 * backend runs better than their separate calls, found among a plan's values
 * before its tape is made. A fusion needs every intermediate result to be
 * read only inside the chain (not by another node, not a plan output), so a
 * graph that trains (whose backward pass reads the forward's results) keeps
 * its nodes; and the backend must accept the call (nb_backend.fusable).
 * NABLA_FUSE=0 in the environment turns the CPU's off.
 *
 * CONV_BLOCK (kernels/conv_params.h), the inverted-residual block of mobile
 * networks:
 *
 *     x -> CONV2D 1x1 (expand; optional) -> CONV2D depthwise 3x3
 *       -> CONV2D 1x1 (project) [-> ADD with x]
 *
 * where the expand may also be a conv of few input channels (the network's
 * first layer, before its first block, which has no expand of its own);
 * with each conv's fused clamp (ReLU6) kept.
 *
 * CONV_ADD: a residual connection, ADD(CONV2D, r) and RELU(ADD(CONV2D, r))
 * (ResNet's blocks end so), runs as the conv adding r (and clamping) as it
 * writes each block of its output, saving the two passes over it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/plan.h"
#include "kernels/conv_params.h"

/* How many entries would read each value (views count as readers of their
 * source; plan outputs count twice so that they are never fused away). */
static int *count_readers(const nb_plan *p)
{
    int *readers = calloc((size_t)p->n_values + 1, sizeof(int));
    if (!readers)
        return NULL;
    for (int v = 0; v < p->n_values; v++) {
        const nb_node *nd = p->values[v].node;
        if (p->values[v].kind == NB_VALUE_EXTERNAL || nd->op == NB_OP_INPUT)
            continue;
        for (int k = 0; k < nd->n_in; k++)
            readers[p->value_of_node[nd->in[k]->id]]++;
    }
    for (int i = 0; i < p->n_outputs; i++)
        readers[p->outputs[i]] += 2;
    return readers;
}

static bool same_shape(const nb_node *a, const nb_node *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

/* An f32 CONV2D computed by the plan whose result only `readers` == 1 entry
 * reads (when `inner`), with params. */
static const nb_conv_params *conv_of(const nb_plan *p, const int *readers, const nb_node *n,
                                     bool inner)
{
    if (!n || n->op != NB_OP_CONV2D || n->dtype != NB_F32 || n->ndim != 4 || !n->params)
        return NULL;
    int v = p->value_of_node[n->id];
    if (v < 0 || p->values[v].kind != NB_VALUE_ARENA || (inner && readers[v] != 1))
        return NULL;
    return n->params;
}

/* A 1x1 convolution: stride 1, no padding, one group. */
static bool pointwise(const nb_node *n, const nb_conv_params *q)
{
    const nb_node *w = n->in[1];
    return q->groups == 1 && w->ndim == 4 && w->shape[2] == 1 && w->shape[3] == 1 &&
           q->stride[0] == 1 && q->stride[1] == 1 && q->pad_begin[0] == 0 &&
           q->pad_begin[1] == 0 && q->pad_end[0] == 0 && q->pad_end[1] == 0 &&
           q->dilation[0] == 1 && q->dilation[1] == 1;
}

/* A convolution of few input channels that the backend may run row by row
 * (a network's first layer): one group, no dilation. */
static bool few_channels(const nb_node *n, const nb_conv_params *q)
{
    return q->groups == 1 && n->in[0]->shape[1] <= 4 && q->dilation[0] == 1 &&
           q->dilation[1] == 1 && n->in[1]->ndim == 4;
}

/* A 3x3 depthwise convolution with one stride, padding 0/1 before. */
static bool depthwise3x3(const nb_node *n, const nb_conv_params *q)
{
    const nb_node *w = n->in[1];
    int64_t c = n->in[0]->shape[1];
    return q->groups == c && n->shape[1] == c && w->ndim == 4 && w->shape[0] == c &&
           w->shape[1] == 1 && w->shape[2] == 3 && w->shape[3] == 3 && q->stride[0] == q->stride[1] &&
           q->dilation[0] == 1 && q->dilation[1] == 1 && q->pad_begin[0] >= 0 &&
           q->pad_begin[0] <= 1 && q->pad_begin[1] >= 0 && q->pad_begin[1] <= 1;
}

static void take_clamp(nb_conv_block_params *bp, int i, const nb_conv_params *q)
{
    bp->clamp[i] = q->clamp != 0;
    bp->lo[i] = q->clamp_min;
    bp->hi[i] = q->clamp_max;
}

/* The CONV_BLOCK ending at value v (an ADD or the projecting CONV2D), or
 * false; its inputs and params, and the values it swallows, in f. */
static bool match_block(const nb_plan *p, const int *readers, int v, bool direct,
                        nb_plan_fused *f, nb_conv_block_params *bp, int *gone, int *n_gone)
{
    const nb_node *top = p->values[v].node, *proj = top, *res = NULL;
    memset(bp, 0, sizeof *bp);
    *n_gone = 0;
    if (top->op == NB_OP_ADD) {
        if (top->n_in != 2 || top->dtype != NB_F32)
            return false;
        for (int side = 0; side < 2 && !res; side++)
            if (conv_of(p, readers, top->in[side], true) && same_shape(top->in[side], top) &&
                same_shape(top->in[1 - side], top)) {
                proj = top->in[side];
                res = top->in[1 - side];
            }
        if (!res)
            return false;
        gone[(*n_gone)++] = p->value_of_node[proj->id];
    }
    const nb_conv_params *q3 = conv_of(p, readers, proj, false);
    if (!q3 || !pointwise(proj, q3))
        return false;
    const nb_node *dw = proj->in[0];
    const nb_conv_params *q2 = conv_of(p, readers, dw, true);
    if (!q2 || !depthwise3x3(dw, q2))
        return false;
    gone[(*n_gone)++] = p->value_of_node[dw->id];
    const nb_node *ex = dw->in[0], *x = ex;
    const nb_conv_params *q1 = conv_of(p, readers, ex, true);
    if (q1 && (pointwise(ex, q1) || (direct && few_channels(ex, q1)))) {
        x = ex->in[0];
        gone[(*n_gone)++] = p->value_of_node[ex->id];
        bp->expand = pointwise(ex, q1) ? 1 : 2;
        for (int i = 0; i < 2; i++) {
            bp->ek[i] = ex->in[1]->shape[2 + i];
            bp->es[i] = q1->stride[i];
            bp->ep[i] = q1->pad_begin[i];
            bp->eout[i] = ex->shape[2 + i];
        }
    } else {
        q1 = NULL;
    }
    if (x->dtype != NB_F32 || x->ndim != 4 || (res && res != x))
        return false;
    bp->residual = res != NULL;
    bp->stride = q2->stride[0];
    bp->pad[0] = q2->pad_begin[0];
    bp->pad[1] = q2->pad_begin[1];
    int n = 0;
    f->in[n++] = p->value_of_node[x->id];
    if (q1) {
        take_clamp(bp, 0, q1);
        f->in[n++] = p->value_of_node[ex->in[1]->id];
        if ((bp->has_b1 = ex->n_in == 3))
            f->in[n++] = p->value_of_node[ex->in[2]->id];
    }
    take_clamp(bp, 1, q2);
    f->in[n++] = p->value_of_node[dw->in[1]->id];
    if ((bp->has_bd = dw->n_in == 3))
        f->in[n++] = p->value_of_node[dw->in[2]->id];
    take_clamp(bp, 2, q3);
    f->in[n++] = p->value_of_node[proj->in[1]->id];
    if ((bp->has_b3 = proj->n_in == 3))
        f->in[n++] = p->value_of_node[proj->in[2]->id];
    f->n_in = n;
    f->op = NB_OP_CONV_BLOCK;
    return true;
}

/* The CONV_ADD ending at value v: ADD(CONV2D, r) or RELU(ADD(CONV2D, r)),
 * the conv without a clamp of its own; relu says which. */
static bool match_conv_add(const nb_plan *p, const int *readers, int v, bool relu,
                           nb_plan_fused *f, nb_conv_params *q, int *gone, int *n_gone)
{
    const nb_node *top = p->values[v].node, *add = relu ? top->in[0] : top;
    *n_gone = 0;
    if (relu) {
        int a = p->value_of_node[add->id];
        if (top->n_in != 1 || top->dtype != NB_F32 || add->op != NB_OP_ADD ||
            p->values[a].kind != NB_VALUE_ARENA || readers[a] != 1)
            return false;
        gone[(*n_gone)++] = a;
    }
    if (add->op != NB_OP_ADD || add->n_in != 2 || add->dtype != NB_F32)
        return false;
    for (int side = 0; side < 2; side++) {
        const nb_node *conv = add->in[side], *r = add->in[1 - side];
        const nb_conv_params *cq = conv_of(p, readers, conv, true);
        if (!cq || cq->clamp || conv == r || !same_shape(conv, add) || !same_shape(r, add))
            continue;
        *q = *cq;
        q->clamp = relu;
        q->clamp_min = 0.0f;
        q->clamp_max = INFINITY;
        int n = 0;
        for (int k = 0; k < conv->n_in; k++)
            f->in[n++] = p->value_of_node[conv->in[k]->id];
        f->in[n++] = p->value_of_node[r->id];
        f->n_in = n;
        f->op = NB_OP_CONV_ADD;
        gone[(*n_gone)++] = p->value_of_node[conv->id];
        return true;
    }
    return false;
}

/* Whether the backend accepts the fused call (shapes and dtypes only). */
static bool backend_takes(const nb_plan *p, const nb_plan_fused *f, int v, const void *params)
{
    if (!p->backend->fusable || !p->backend->kernels[f->op])
        return false;
    nb_tensor ts[9];
    const nb_tensor *ins[8];
    nb_kernel_call c = nb_plan_shape_call(p, f->op, f->n_in, f->in, v, params, ts, ins);
    return p->backend->fusable(&c);
}

/* A CONV_BLOCK ending at value v that the backend takes; a first layer it
 * will not take as the expand stays a conv before the block. */
static bool find_block(const nb_plan *p, const int *readers, int v, nb_plan_fused *f,
                       nb_conv_block_params *bp, int *gone, int *n_gone)
{
    if (match_block(p, readers, v, true, f, bp, gone, n_gone) && backend_takes(p, f, v, bp))
        return true;
    return bp->expand == 2 && match_block(p, readers, v, false, f, bp, gone, n_gone) &&
           backend_takes(p, f, v, bp);
}

nb_status nb_plan_fuse(nb_plan *p)
{
    if (!p->backend->fusable)
        return NB_OK;
    int *readers = count_readers(p);
    p->fused = calloc((size_t)p->n_values + 1, sizeof(nb_plan_fused *));
    if (!readers || !p->fused) {
        free(readers);
        return nb_error(NB_ERR_ALLOC, "compile: out of memory");
    }
    /* from the last value back, so that a block takes its residual ADD
     * before its projection could be taken alone */
    for (int v = p->n_values - 1; v >= 0; v--) {
        const nb_node *nd = p->values[v].node;
        if (p->values[v].kind != NB_VALUE_ARENA ||
            (nd->op != NB_OP_ADD && nd->op != NB_OP_CONV2D && nd->op != NB_OP_RELU))
            continue;
        nb_plan_fused f = {0};
        nb_conv_block_params bp;
        nb_conv_params cp;
        int gone[3], n_gone;
        const void *params = NULL;
        size_t psize = 0;
        if (nd->op == NB_OP_RELU || nd->op == NB_OP_ADD) {
            bool relu = nd->op == NB_OP_RELU;
            if (!relu && find_block(p, readers, v, &f, &bp, gone, &n_gone))
                params = &bp, psize = sizeof bp;
            else if (match_conv_add(p, readers, v, relu, &f, &cp, gone, &n_gone) &&
                     backend_takes(p, &f, v, &cp))
                params = &cp, psize = sizeof cp;
        } else if (find_block(p, readers, v, &f, &bp, gone, &n_gone)) { /* a CONV2D */
            params = &bp, psize = sizeof bp;
        }
        if (!params)
            continue;
        nb_plan_fused *keep = malloc(sizeof *keep);
        void *mine = malloc(psize);
        if (!keep || !mine) {
            free(keep);
            free(mine);
            free(readers);
            return nb_error(NB_ERR_ALLOC, "compile: out of memory");
        }
        memcpy(mine, params, psize);
        *keep = f;
        keep->params = mine;
        p->fused[v] = keep;
        for (int i = 0; i < n_gone; i++)
            p->values[gone[i]].kind = NB_VALUE_FUSED;
    }
    free(readers);
    return NB_OK;
}
