/* ONNX converters of the recurrent ops LSTM, GRU and RNN, unrolled over the
 * (static) sequence from graph builders.
 *
 * ONNX layouts: X (T, B, in) (layout 0) or (B, T, in) (layout 1); W
 * (D, G*H, in), R (D, G*H, H), B (D, 2*G*H) = [Wb | Rb], initial_h/c
 * (D, B, H) (layout 1: (B, D, H)), LSTM peepholes P (D, 3H); D is 2 for
 * direction "bidirectional", else 1. Gate order: LSTM i, o, f, c; GRU z, r,
 * h. Outputs Y (T, D, B, H) (layout 1: (B, T, D, H)), Y_h and Y_c (D, B, H).
 *
 * As in models/rnn.c, the input projection of every step is one matmul,
 * (T*B, in) x W^T, with the biases that sit outside every nonlinearity folded
 * in; each step then adds h R^T and applies the gates. The activations are
 * the ONNX defaults (or Sigmoid/Tanh/Relu named explicitly). Shorter
 * sequence_lens mask the steps past each sequence's end. */
#include <stdlib.h>
#include <string.h>

#include "models/onnx_convert.h"
#include "models/onnx_ops_util.h"

typedef enum { CELL_LSTM, CELL_GRU, CELL_RNN } cell_kind;
typedef enum { ACT_SIGMOID, ACT_TANH, ACT_RELU } act_kind;

#define MAX_ACTS 6

/* What every step of one direction shares. */
typedef struct cell {
    onnx_node_ctx *c;
    nb_graph *g;
    cell_kind kind;
    int gates;              /* 4, 3, 1 */
    int64_t T, B, H;
    act_kind act[3];        /* f, g, h of this direction */
    double clip;            /* <= 0: none */
    bool lbr;               /* GRU linear_before_reset */
    nb_node *R;             /* (G*H, H) */
    nb_node *rbh;           /* GRU with lbr: Rb of the h gate (H), else NULL */
    nb_node *Rzr, *Rh;      /* GRU: R's rows of z and r (2H, H), of h (H, H) */
    nb_node *p[3];          /* LSTM peepholes i, o, f (H) or NULL */
} cell;

static nb_node *act(cell *s, int which, nb_node *x)
{
    nb_graph *g = s->g;
    if (s->clip > 0)
        x = nb_clip(g, x, -s->clip, s->clip);
    switch (s->act[which]) {
    case ACT_SIGMOID: return nb_sigmoid(g, x);
    case ACT_TANH: return nb_tanh(g, x);
    default: return nb_relu(g, x);
    }
}

/* One LSTM step from the projected input xt (B, 4H): sets *c1, returns h'. */
static nb_node *lstm_step(cell *s, nb_node *xt, nb_node *h, nb_node *c, nb_node **c1)
{
    nb_graph *g = s->g;
    int64_t H = s->H;
    nb_node *gates = nb_add(g, xt, nb_matmul_t(g, h, s->R, false, true)), *gt[4];
    if (nb_split(g, gates, -1, 4, (int64_t[]){H, H, H, H}, gt))
        return NULL;
    nb_node *ip = gt[0], *op = gt[1], *fp = gt[2], *cp = gt[3];
    if (s->p[0])
        ip = nb_add(g, ip, nb_mul(g, s->p[0], c));
    if (s->p[2])
        fp = nb_add(g, fp, nb_mul(g, s->p[2], c));
    nb_node *i = act(s, 0, ip), *f = act(s, 0, fp), *cc = act(s, 1, cp);
    *c1 = nb_add(g, nb_mul(g, f, c), nb_mul(g, i, cc));
    if (s->p[1])
        op = nb_add(g, op, nb_mul(g, s->p[1], *c1));
    nb_node *o = act(s, 0, op);
    return nb_mul(g, o, act(s, 2, *c1));
}

/* One GRU step from xt (B, 3H) = x W^T + Wb (+ Rb of z, r and, without
 * linear_before_reset, of h). */
static nb_node *gru_step(cell *s, nb_node *xt, nb_node *h)
{
    nb_graph *g = s->g;
    int64_t H = s->H, sz[3] = {H, H, H};
    nb_node *xi[3], *hzr[2];
    if (nb_split(g, xt, -1, 3, sz, xi))
        return NULL;
    /* z and r together: h (R_z; R_r)^T */
    nb_node *zr = nb_matmul_t(g, h, s->Rzr, false, true);
    if (nb_split(g, zr, -1, 2, sz, hzr))
        return NULL;
    nb_node *z = act(s, 0, nb_add(g, xi[0], hzr[0]));
    nb_node *r = act(s, 0, nb_add(g, xi[1], hzr[1]));
    nb_node *hh;
    if (s->lbr) {
        nb_node *t = nb_matmul_t(g, h, s->Rh, false, true);
        if (s->rbh)
            t = nb_add(g, t, s->rbh);
        hh = nb_add(g, xi[2], nb_mul(g, r, t));
    } else {
        hh = nb_add(g, xi[2], nb_matmul_t(g, nb_mul(g, r, h), s->Rh, false, true));
    }
    nb_node *n = act(s, 1, hh);
    /* (1 - z) n + z h = n + z (h - n) */
    return nb_add(g, n, nb_mul(g, z, nb_sub(g, h, n)));
}

static nb_node *rnn_step(cell *s, nb_node *xt, nb_node *h)
{
    return act(s, 0, nb_add(s->g, xt, nb_matmul_t(s->g, h, s->R, false, true)));
}

/* Row d of a (D, ...) tensor as (...). */
static nb_node *dir_of(nb_graph *g, nb_node *t, int d)
{
    int nd = nb_node_ndim(t);
    int64_t shape[NB_MAX_DIMS];
    memcpy(shape, nb_node_shape(t) + 1, sizeof(int64_t) * (size_t)(nd - 1));
    return nb_reshape(g, nb_slice(g, t, 0, d, d + 1, 1), nd - 1, shape);
}

/* The activations attribute into acts (per direction, 3 slots for the LSTM,
 * 2 for the GRU, 1 for the RNN); false after onnx_fail. */
static bool read_acts(onnx_node_ctx *c, cell_kind kind, int D, act_kind acts[2][3])
{
    int per = kind == CELL_LSTM ? 3 : kind == CELL_GRU ? 2 : 1;
    static const act_kind defs[3][3] = {{ACT_SIGMOID, ACT_TANH, ACT_TANH},
                                        {ACT_SIGMOID, ACT_TANH, ACT_TANH},
                                        {ACT_TANH, ACT_TANH, ACT_TANH}};
    for (int d = 0; d < 2; d++)
        memcpy(acts[d], defs[kind], sizeof acts[d]);
    const Onnx__AttributeProto *a = onnx_attr(c, "activations");
    if (!a)
        return true;
    if ((int)a->n_strings != per * D) {
        onnx_fail(c, NB_ERR_ARG, "activations has %d names, expected %d", (int)a->n_strings,
                  per * D);
        return false;
    }
    if (onnx_attr(c, "activation_alpha") || onnx_attr(c, "activation_beta")) {
        onnx_fail(c, NB_ERR_UNSUPPORTED, "activation_alpha/activation_beta are not supported");
        return false;
    }
    for (int i = 0; i < per * D; i++) {
        ProtobufCBinaryData s = a->strings[i];
        char name[32];
        size_t n = s.len < sizeof name - 1 ? s.len : sizeof name - 1;
        memcpy(name, s.data, n);
        name[n] = '\0';
        act_kind k;
        if (!strcmp(name, "Sigmoid"))
            k = ACT_SIGMOID;
        else if (!strcmp(name, "Tanh"))
            k = ACT_TANH;
        else if (!strcmp(name, "Relu"))
            k = ACT_RELU;
        else {
            onnx_fail(c, NB_ERR_UNSUPPORTED, "activation '%s' is not supported (Sigmoid, Tanh, Relu)",
                      name);
            return false;
        }
        acts[i / per][i % per] = k;
    }
    return true;
}

/* The state input i (D, B, H) (layout 1: (B, D, H)) as (D, B, H), or zeros. */
static nb_node *state_in(cell *s, int i, int D, bool batch_first, nb_dtype dt)
{
    onnx_node_ctx *c = s->c;
    nb_graph *g = s->g;
    int64_t want[3] = {D, s->B, s->H};
    if (!onnx_has_in(c, i)) {
        nb_tensor z;
        if (nb_tensor_zeros(&z, dt, 3, want) != NB_OK)
            return nb_graph_fail(g, NB_ERR_ALLOC, "%s: out of memory", c->node->op_type);
        nb_node *n = nb_constant(g, &z);
        nb_tensor_release(&z);
        return n;
    }
    nb_node *h = onnx_in(c, i);
    if (h && batch_first)
        h = nb_permute(g, h, (int[]){1, 0, 2});
    if (h && !nb_shape_equal(nb_node_ndim(h), nb_node_shape(h), 3, want))
        return nb_graph_fail(g, NB_ERR_SHAPE, "%s: input %d has shape %s, expected (%lld,%lld,%lld)",
                             c->node->op_type, i, nb_node_shape_str(h), (long long)D,
                             (long long)s->B, (long long)s->H);
    return h;
}

static nb_status convert(onnx_node_ctx *c, cell_kind kind)
{
    nb_graph *g = c->g;
    int G = kind == CELL_LSTM ? 4 : kind == CELL_GRU ? 3 : 1;
    for (int i = 0; i < 3; i++)
        if (!onnx_has_in(c, i))
            return onnx_fail(c, NB_ERR_ARG, "input %d (X, W, R) is required", i);
    nb_node *X = onnx_in(c, 0), *W = onnx_in(c, 1), *R = onnx_in(c, 2);
    if (nb_graph_status(g) != NB_OK || !X || !W || !R)
        return onnx_fail(c, nb_graph_status(g) ? nb_graph_status(g) : NB_ERR_ARG, "%s",
                         nb_graph_error(g));
    nb_dtype dt = nb_node_dtype(X);
    if (!nb_dtype_is_float(dt))
        return onnx_fail(c, NB_ERR_DTYPE, "X dtype %s is not supported", nb_dtype_name(dt));
    char buf[32];
    const char *dir = onnx_attr_string(c, "direction", "forward", buf, sizeof buf);
    int D;
    bool rev0;
    if (!strcmp(dir, "forward"))
        D = 1, rev0 = false;
    else if (!strcmp(dir, "reverse"))
        D = 1, rev0 = true;
    else if (!strcmp(dir, "bidirectional"))
        D = 2, rev0 = false;
    else
        return onnx_fail(c, NB_ERR_UNSUPPORTED, "direction '%s' is not forward, reverse or bidirectional", dir);
    int64_t layout = c->opset >= 14 ? onnx_attr_int(c, "layout", 0) : 0;
    if (layout != 0 && layout != 1)
        return onnx_fail(c, NB_ERR_ARG, "layout %lld is not 0 or 1", (long long)layout);
    if (kind == CELL_LSTM && onnx_attr_int(c, "input_forget", 0) != 0)
        return onnx_fail(c, NB_ERR_UNSUPPORTED, "input_forget 1 is not supported");
    act_kind acts[2][3];
    if (!read_acts(c, kind, D, acts))
        return NB_ERR_UNSUPPORTED;
    if (nb_node_ndim(X) != 3 || nb_node_ndim(W) != 3 || nb_node_ndim(R) != 3)
        return onnx_fail(c, NB_ERR_SHAPE, "X %s, W %s and R %s must be 3-D", nb_node_shape_str(X),
                         nb_node_shape_str(W), nb_node_shape_str(R));
    if (layout == 1)
        X = nb_permute(g, X, (int[]){1, 0, 2});
    int64_t T = nb_node_shape(X)[0], B = nb_node_shape(X)[1], I = nb_node_shape(X)[2];
    int64_t H = nb_node_shape(R)[2], GH = G * H;
    if (onnx_attr(c, "hidden_size") && onnx_attr_int(c, "hidden_size", 0) != H)
        return onnx_fail(c, NB_ERR_SHAPE, "hidden_size %lld does not match R %s",
                         (long long)onnx_attr_int(c, "hidden_size", 0), nb_node_shape_str(R));
    int64_t ws[3] = {D, GH, I}, rs[3] = {D, GH, H};
    if (!nb_shape_equal(3, nb_node_shape(W), 3, ws) || !nb_shape_equal(3, nb_node_shape(R), 3, rs) ||
        nb_node_dtype(W) != dt || nb_node_dtype(R) != dt)
        return onnx_fail(c, NB_ERR_SHAPE, "W %s and R %s must be (%lld,%lld,%lld) and (%lld,%lld,%lld) %s for X %s",
                         nb_node_shape_str(W), nb_node_shape_str(R), (long long)D, (long long)GH,
                         (long long)I, (long long)D, (long long)GH, (long long)H,
                         nb_dtype_name(dt), nb_node_shape_str(X));
    if (T < 1)
        return onnx_fail(c, NB_ERR_SHAPE, "X %s has no steps", nb_node_shape_str(X));
    /* sequence_lens: all full needs nothing; otherwise mask (T, B, 1), 1
     * where t < len: steps past a sequence's end keep the state and output
     * zeros (a reverse pass then starts at the sequence's own end) */
    nb_node *mask = NULL;
    if (onnx_has_in(c, 4)) {
        const nb_tensor *sl = onnx_in_const(c, 4);
        bool full = sl != NULL;
        for (int64_t i = 0; sl && i < nb_tensor_numel(sl); i++)
            full = full && (int64_t)nb_tensor_get_flat(sl, i) == T;
        if (!full) {
            nb_node *len = onnx_in(c, 4);
            if (!len || nb_node_numel(len) != B)
                return onnx_fail(c, NB_ERR_SHAPE, "sequence_lens must have %lld values",
                                 (long long)B);
            len = nb_cast(g, nb_reshape(g, len, 3, (int64_t[]){1, B, 1}), dt);
            nb_tensor iota;
            if (nb_tensor_empty(&iota, dt, 3, (int64_t[]){T, 1, 1}) != NB_OK)
                return onnx_fail(c, NB_ERR_ALLOC, "out of memory");
            for (int64_t t = 0; t < T; t++)
                nb_tensor_set(&iota, (int64_t[]){t, 0, 0}, (double)t);
            mask = nb_cast(g, nb_lt(g, nb_constant(g, &iota), len), dt);
            nb_tensor_release(&iota);
        }
    }
    nb_node *Bias = onnx_has_in(c, 3) ? onnx_in(c, 3) : NULL;
    int64_t bs[2] = {D, 2 * GH};
    if (Bias && !nb_shape_equal(nb_node_ndim(Bias), nb_node_shape(Bias), 2, bs))
        return onnx_fail(c, NB_ERR_SHAPE, "B %s must be (%lld,%lld)", nb_node_shape_str(Bias),
                         (long long)D, (long long)(2 * GH));
    nb_node *P = kind == CELL_LSTM && onnx_has_in(c, 7) ? onnx_in(c, 7) : NULL;
    int64_t ps[2] = {D, 3 * H};
    if (P && !nb_shape_equal(nb_node_ndim(P), nb_node_shape(P), 2, ps))
        return onnx_fail(c, NB_ERR_SHAPE, "P %s must be (%lld,%lld)", nb_node_shape_str(P),
                         (long long)D, (long long)(3 * H));
    cell s = {.c = c, .g = g, .kind = kind, .gates = G, .T = T, .B = B, .H = H,
              .clip = onnx_attr(c, "clip") ? onnx_attr_float(c, "clip", 0) : 0,
              .lbr = kind == CELL_GRU && onnx_attr_int(c, "linear_before_reset", 0) != 0};
    nb_node *h0 = state_in(&s, 5, D, layout == 1, dt);
    nb_node *c0 = kind == CELL_LSTM ? state_in(&s, 6, D, layout == 1, dt) : NULL;
    nb_node **buf_ = malloc(sizeof(nb_node *) * 2 * (size_t)T);
    if (!buf_)
        return onnx_fail(c, NB_ERR_ALLOC, "out of memory for %lld steps", (long long)T);
    nb_node **steps = buf_, **outs = buf_ + T, *ys[2], *hl[2], *cl[2];
    nb_node *X2 = nb_reshape(g, X, 2, (int64_t[]){T * B, I});
    for (int d = 0; d < D && nb_graph_status(g) == NB_OK; d++) {
        bool rev = d == 1 || rev0;
        memcpy(s.act, acts[d], sizeof s.act);
        s.R = dir_of(g, R, d);
        if (kind == CELL_GRU) {
            s.Rzr = nb_slice(g, s.R, 0, 0, 2 * H, 1);
            s.Rh = nb_slice(g, s.R, 0, 2 * H, 3 * H, 1);
        }
        s.rbh = NULL;
        for (int k = 0; k < 3; k++)
            s.p[k] = P ? nb_slice(g, dir_of(g, P, d), 0, k * H, (k + 1) * H, 1) : NULL;
        nb_node *xp = nb_matmul_t(g, X2, dir_of(g, W, d), false, true); /* (T*B, GH) */
        if (Bias) {
            nb_node *b = dir_of(g, Bias, d);
            nb_node *wb = nb_slice(g, b, 0, 0, GH, 1), *rb = nb_slice(g, b, 0, GH, 2 * GH, 1);
            if (s.lbr) { /* Rb of h stays inside r * (.) */
                s.rbh = nb_slice(g, rb, 0, 2 * H, 3 * H, 1);
                rb = nb_pad(g, nb_slice(g, b, 0, GH, GH + 2 * H, 1), (int64_t[]){0, H}, 0.0);
            }
            xp = nb_add(g, xp, nb_add(g, wb, rb));
        }
        xp = nb_reshape(g, xp, 3, (int64_t[]){T, B, GH});
        if (T == 1)
            steps[0] = xp;
        else {
            int64_t *ones = malloc(sizeof(int64_t) * (size_t)T);
            if (!ones) {
                free(buf_);
                return onnx_fail(c, NB_ERR_ALLOC, "out of memory for %lld steps", (long long)T);
            }
            for (int64_t t = 0; t < T; t++)
                ones[t] = 1;
            nb_split(g, xp, 0, (int)T, ones, steps);
            free(ones);
        }
        nb_node *h = dir_of(g, h0, d), *cs = c0 ? dir_of(g, c0, d) : NULL;
        for (int64_t k = 0; k < T && nb_graph_status(g) == NB_OK; k++) {
            int64_t t = rev ? T - 1 - k : k;
            nb_node *xt = nb_reshape(g, steps[t], 2, (int64_t[]){B, GH}), *h1, *c1 = NULL;
            if (kind == CELL_LSTM)
                h1 = lstm_step(&s, xt, h, cs, &c1);
            else if (kind == CELL_GRU)
                h1 = gru_step(&s, xt, h);
            else
                h1 = rnn_step(&s, xt, h);
            if (!h1)
                break;
            if (mask) {
                nb_node *m = nb_reshape(g, nb_slice(g, mask, 0, t, t + 1, 1), 2, (int64_t[]){B, 1});
                h = nb_add(g, h, nb_mul(g, m, nb_sub(g, h1, h)));
                if (c1)
                    cs = nb_add(g, cs, nb_mul(g, m, nb_sub(g, c1, cs)));
                h1 = nb_mul(g, m, h1);
            } else {
                h = h1;
                cs = c1;
            }
            outs[t] = nb_reshape(g, h1, 3, (int64_t[]){1, B, H});
        }
        if (nb_graph_status(g) != NB_OK)
            break;
        ys[d] = nb_unsqueeze(g, nb_concat(g, (int)T, outs, 0), 1); /* (T, 1, B, H) */
        hl[d] = nb_unsqueeze(g, h, 0);
        cl[d] = cs ? nb_unsqueeze(g, cs, 0) : NULL;
    }
    free(buf_);
    if (nb_graph_status(g) != NB_OK)
        return onnx_fail(c, nb_graph_status(g), "%s", nb_graph_error(g));
    nb_node *Y = D == 1 ? ys[0] : nb_concat(g, 2, ys, 1);
    nb_node *Yh = D == 1 ? hl[0] : nb_concat(g, 2, hl, 0);
    nb_node *Yc = kind != CELL_LSTM ? NULL : D == 1 ? cl[0] : nb_concat(g, 2, cl, 0);
    if (layout == 1) {
        Y = nb_permute(g, Y, (int[]){2, 0, 1, 3});
        Yh = nb_permute(g, Yh, (int[]){1, 0, 2});
        if (Yc)
            Yc = nb_permute(g, Yc, (int[]){1, 0, 2});
    }
    nb_node *outs3[3] = {Y, Yh, Yc};
    if (nb_graph_status(g) != NB_OK)
        return onnx_fail(c, nb_graph_status(g), "%s", nb_graph_error(g));
    for (int i = 0; i < 3; i++) {
        if (!onnx_out_wanted(c, i))
            continue;
        if (!outs3[i])
            return onnx_fail(c, NB_ERR_ARG, "output %d does not exist for %s", i, c->node->op_type);
        nb_status st = onnx_set_out(c, i, outs3[i]);
        if (st != NB_OK)
            return st;
    }
    return NB_OK;
}

static nb_status lstm(onnx_node_ctx *c) { return convert(c, CELL_LSTM); }
static nb_status gru(onnx_node_ctx *c) { return convert(c, CELL_GRU); }
static nb_status rnn(onnx_node_ctx *c) { return convert(c, CELL_RNN); }

const onnx_op_entry nb_onnx_ops_rnn[] = {
    {NULL, "LSTM", 1, 0, lstm},
    {NULL, "GRU", 1, 0, gru},
    {NULL, "RNN", 1, 0, rnn},
    {NULL, NULL, 0, 0, NULL},
};
