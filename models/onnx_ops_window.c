/* The window and attribute helpers shared by the Conv converters
 * (onnx_ops_nn.c) and the pool converters (onnx_ops_pool.c): wanted outputs,
 * required inputs, the spatial rank, and the geometry of a sliding window
 * (kernel_shape, strides, dilations, pads, auto_pad, ceil mode) read from a
 * node's attributes with ONNX's rules. Declared in onnx_ops_util.h. */
#include <string.h>

#include "models/onnx_ops_util.h"

bool onnx_out_wanted(const onnx_node_ctx *c, int i)
{
    return i < c->n_out && i < (int)c->node->n_output && c->node->output[i] &&
           c->node->output[i][0];
}

nb_node *onnx_need_in(onnx_node_ctx *c, int i)
{
    if (!onnx_has_in(c, i)) {
        onnx_fail(c, NB_ERR_ARG, "input %d is required", i);
        return NULL;
    }
    return onnx_in(c, i);
}

int onnx_auto_pad(onnx_node_ctx *c)
{
    char buf[32];
    const char *v = onnx_attr_string(c, "auto_pad", "NOTSET", buf, sizeof buf);
    static const char *names[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(v, names[i]))
            return i;
    onnx_fail(c, NB_ERR_UNSUPPORTED,
              "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", v);
    return -1;
}

bool onnx_dims_attr(onnx_node_ctx *c, const char *name, int nd, int64_t def, int64_t min,
                    int64_t *v)
{
    const int64_t *a;
    int n = onnx_attr_ints(c, name, &a);
    for (int i = 0; i < nd; i++)
        v[i] = def;
    if (n < 0)
        return true;
    if (n != nd) {
        onnx_fail(c, NB_ERR_ARG, "attribute %s has %d values, expected %d", name, n, nd);
        return false;
    }
    for (int i = 0; i < nd; i++) {
        if (a[i] < min) {
            onnx_fail(c, NB_ERR_ARG, "attribute %s[%d] = %lld must be >= %lld", name, i,
                      (long long)a[i], (long long)min);
            return false;
        }
        v[i] = a[i];
    }
    return true;
}

int onnx_spatial_rank(onnx_node_ctx *c, nb_node *x, int max_nd)
{
    static const char *const ranks[2] = {"1-D and 2-D", "1-D, 2-D and 3-D"};
    static const char *const shapes[2] = {"(N, C, L) or (N, C, H, W)",
                                          "(N, C, L), (N, C, H, W) or (N, C, D, H, W)"};
    int m = max_nd >= 3 ? 1 : 0; /* max_nd is 2 or 3 */
    int nd = nb_node_ndim(x) - 2;
    if (nd >= 1 && nd <= 2 + m)
        return nd;
    onnx_fail(c, NB_ERR_UNSUPPORTED, "input %s: only %s spatial inputs are supported %s, not %d-D",
              nb_node_shape_str(x), ranks[m], shapes[m], nd < 0 ? 0 : nd);
    return -1;
}

bool onnx_read_window(onnx_node_ctx *c, onnx_window *w, bool ceil_mode)
{
    int nd = w->nd;
    int ap = onnx_auto_pad(c);
    if (ap < 0)
        return false;
    if (!onnx_dims_attr(c, "strides", nd, 1, 1, w->s) ||
        !onnx_dims_attr(c, "dilations", nd, 1, 1, w->d))
        return false;
    const int64_t *p;
    int np = onnx_attr_ints(c, "pads", &p);
    for (int i = 0; i < nd; i++)
        w->pb[i] = w->pe[i] = 0;
    if (ap == 0 && np >= 0) {
        if (np != 2 * nd)
            return onnx_fail(c, NB_ERR_ARG, "attribute pads has %d values, expected %d", np,
                             2 * nd), false;
        for (int i = 0; i < nd; i++) {
            w->pb[i] = p[i];
            w->pe[i] = p[nd + i];
            if (w->pb[i] < 0 || w->pe[i] < 0)
                return onnx_fail(c, NB_ERR_ARG, "negative pads are not supported"), false;
        }
    }
    for (int i = 0; i < nd; i++) {
        int64_t span = (w->k[i] - 1) * w->d[i] + 1;
        if (ap == 1 || ap == 2) {
            int64_t out = (w->in[i] + w->s[i] - 1) / w->s[i];
            int64_t total = (out - 1) * w->s[i] + span - w->in[i];
            if (total < 0)
                total = 0;
            w->pb[i] = ap == 1 ? total / 2 : total - total / 2;
            w->pe[i] = total - w->pb[i];
        }
        int64_t num = w->in[i] + w->pb[i] + w->pe[i] - span;
        if (num < 0)
            return onnx_fail(c, NB_ERR_SHAPE, "kernel %lld (dilation %lld) is larger than the "
                             "padded input %lld", (long long)w->k[i], (long long)w->d[i],
                             (long long)(w->in[i] + w->pb[i] + w->pe[i])), false;
        w->out[i] = (ceil_mode ? (num + w->s[i] - 1) / w->s[i] : num / w->s[i]) + 1;
        /* the last window must start inside the input or the left padding */
        if (ceil_mode && (w->out[i] - 1) * w->s[i] >= w->in[i] + w->pb[i])
            w->out[i]--;
    }
    return true;
}
