/* ONNX converters, misc family: Constant, ConstantOfShape, Cast, CastLike,
 * Range, NonZero (values known at import), OneHot, Trilu, IsNaN, IsInf,
 * TopK, EyeLike, Compress (condition known at import), GatherND,
 * NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss, NonMaxSuppression and
 * Unique of values known at import, and ReverseSequence (lengths known at
 * import). The signal, resampling, Einsum and quantization ops have files of
 * their own (onnx_ops_signal.c, onnx_ops_resample.c, onnx_ops_einsum.c,
 * onnx_ops_quant.c).
 *
 * Compositions:
 *   OneHot: where(unsqueeze(idx, axis) == iota(depth), on, off)
 *   Trilu: where(constant triangular mask, x, 0)
 *   TopK: k rounds of argmax along the axis, each masking the element found
 *     with -inf; ties give the lower index first, as ONNX asks
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/onnx_model.h"
#include "models/onnx_ops_util.h"

/* ---- constants and casts -------------------------------------------------------- */

static nb_status cv_constant(onnx_node_ctx *c)
{
    nb_tensor t = {0};
    nb_status s;
    if (onnx_attr(c, "value"))
        s = onnx_attr_tensor(c, "value", &t);
    else if (onnx_attr(c, "value_float")) {
        s = nb_tensor_scalar(&t, NB_F32, onnx_attr_float(c, "value_float", 0));
    } else if (onnx_attr(c, "value_int")) {
        int64_t v = onnx_attr_int(c, "value_int", 0);
        s = nb_tensor_from_data(&t, NB_I64, 0, NULL, &v);
    } else if (onnx_attr(c, "value_floats")) {
        const float *v;
        int64_t n = onnx_attr_floats(c, "value_floats", &v);
        s = nb_tensor_from_data(&t, NB_F32, 1, &n, n ? (const void *)v : (const void *)"");
    } else if (onnx_attr(c, "value_ints")) {
        const int64_t *v;
        int64_t n = onnx_attr_ints(c, "value_ints", &v);
        s = nb_tensor_from_data(&t, NB_I64, 1, &n, n ? (const void *)v : (const void *)"");
    } else {
        return onnx_fail(c, NB_ERR_UNSUPPORTED,
                         "only value, value_float(s) and value_int(s) are supported (sparse and "
                         "string constants are not)");
    }
    if (s != NB_OK)
        return onnx_fail(c, s, "%s", nb_last_error());
    return onnx_set_out_const(c, 0, &t);
}

static nb_status cv_constant_of_shape(onnx_node_ctx *c)
{
    int64_t shape[NB_MAX_DIMS];
    int n;
    nb_status s = onnx_in_ints(c, 0, shape, NB_MAX_DIMS, &n);
    if (s != NB_OK)
        return s;
    for (int i = 0; i < n; i++)
        if (shape[i] < 0)
            return onnx_fail(c, NB_ERR_SHAPE, "negative dim %lld", (long long)shape[i]);
    nb_dtype dt = NB_F32;
    double value = 0;
    if (onnx_attr(c, "value")) {
        nb_tensor v = {0};
        if ((s = onnx_attr_tensor(c, "value", &v)) != NB_OK)
            return onnx_fail(c, s, "%s", nb_last_error());
        dt = v.dtype;
        value = nb_tensor_numel(&v) > 0 ? nb_tensor_get_flat(&v, 0) : 0;
        nb_tensor_release(&v);
    }
    nb_tensor t = {0};
    if ((s = nb_tensor_empty(&t, dt, n, shape)) != NB_OK ||
        (nb_tensor_numel(&t) > 0 && (s = nb_tensor_fill(&t, value)) != NB_OK)) {
        nb_tensor_release(&t);
        return onnx_fail(c, s, "%s", nb_last_error());
    }
    return onnx_set_out_const(c, 0, &t);
}

/* Cast/CastLike: the importer hands these their inputs as they are (storage
 * dtypes included), so the conversion is direct, rounding once. */
static nb_status cv_cast(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_dtype dt;
    if (!strcmp(c->node->op_type, "CastLike")) {
        if (!onnx_has_in(c, 1))
            return onnx_fail(c, NB_ERR_ARG, "input 1 is missing");
        dt = onnx_in_dtype(c, 1);
    } else {
        int64_t to = onnx_attr_int(c, "to", -1);
        if (!onnx_storage_dtype((int32_t)to, &dt))
            return onnx_fail(c, NB_ERR_DTYPE, "cast to ONNX type %s (%lld) is not supported",
                             onnx_dtype_name((int32_t)to), (long long)to);
    }
    return onnx_finish(c, 0, nb_cast(c->g, x, dt));
}

/* Range(start, limit, delta), all known at import: a constant. */
static nb_status cv_range(onnx_node_ctx *c)
{
    double st = 0, li = 0, de = 0;
    nb_status s;
    if ((s = onnx_in_scalar(c, 0, &st)) != NB_OK || (s = onnx_in_scalar(c, 1, &li)) != NB_OK ||
        (s = onnx_in_scalar(c, 2, &de)) != NB_OK)
        return s;
    nb_dtype dt = onnx_in_dtype(c, 0);
    if (de == 0)
        return onnx_fail(c, NB_ERR_ARG, "delta is 0");
    double cnt = ceil((li - st) / de);
    int64_t n = cnt > 0 ? (int64_t)cnt : 0;
    if (n > ((int64_t)1 << 31))
        return onnx_fail(c, NB_ERR_ARG, "%lld elements is too many", (long long)n);
    nb_tensor t = {0};
    if ((s = nb_tensor_empty(&t, dt, 1, &n)) != NB_OK)
        return onnx_fail(c, s, "%s", nb_last_error());
    const nb_tensor *ts = onnx_in_const(c, 0), *td = onnx_in_const(c, 2);
    for (int64_t i = 0; i < n; i++) {
        if (dt == NB_I64) /* exact */
            ((int64_t *)nb_tensor_data(&t))[i] =
                *(const int64_t *)nb_tensor_data(ts) + i * *(const int64_t *)nb_tensor_data(td);
        else if (dt == NB_F32)
            ((float *)nb_tensor_data(&t))[i] = (float)st + (float)i * (float)de;
        else
            nb_tensor_set(&t, (int64_t[]){i}, st + (double)i * de);
    }
    return onnx_set_out_const(c, 0, &t);
}

/* NonZero of a value known at import: (rank, count) i64 indices. */
static nb_status cv_nonzero(onnx_node_ctx *c)
{
    const nb_tensor *x = onnx_in_const(c, 0);
    if (!x)
        return onnx_fail(c, NB_ERR_UNSUPPORTED,
                         "the input must be known at import time (its output shape depends on its values)");
    int r = x->ndim;
    int64_t n = nb_tensor_numel(x), cnt = 0;
    for (int64_t i = 0; i < n; i++)
        cnt += nb_tensor_get_flat(x, i) != 0;
    int64_t shape[2] = {r, cnt};
    nb_tensor t = {0};
    nb_status s = nb_tensor_empty(&t, NB_I64, 2, shape);
    if (s != NB_OK)
        return onnx_fail(c, s, "%s", nb_last_error());
    int64_t *o = nb_tensor_data(&t), pos[NB_MAX_DIMS] = {0}, k = 0;
    for (int64_t i = 0; i < n; i++) {
        if (nb_tensor_get_flat(x, i) != 0) {
            for (int d = 0; d < r; d++)
                o[d * cnt + k] = pos[d];
            k++;
        }
        for (int d = r - 1; d >= 0; d--) {
            if (++pos[d] < x->shape[d])
                break;
            pos[d] = 0;
        }
    }
    return onnx_set_out_const(c, 0, &t);
}

/* NonMaxSuppression of boxes and scores known at import: per batch and
 * class, the boxes above score_threshold in descending score order (ties:
 * lower index first), each kept unless its IoU with a kept box exceeds
 * iou_threshold, at most max_output_boxes_per_class; rows (batch, class,
 * box) of an i64 (count, 3) constant. */
static double nms_iou(const nb_tensor *b, int64_t batch, int64_t i, int64_t j, bool center)
{
    double p[2][4];
    int64_t idx[2] = {i, j};
    for (int k = 0; k < 2; k++) {
        double v[4];
        for (int q = 0; q < 4; q++)
            v[q] = nb_tensor_get(b, (int64_t[]){batch, idx[k], q});
        if (center) { /* x, y, w, h -> y1, x1, y2, x2 */
            p[k][0] = v[1] - v[3] / 2, p[k][1] = v[0] - v[2] / 2;
            p[k][2] = v[1] + v[3] / 2, p[k][3] = v[0] + v[2] / 2;
        } else {
            p[k][0] = fmin(v[0], v[2]), p[k][1] = fmin(v[1], v[3]);
            p[k][2] = fmax(v[0], v[2]), p[k][3] = fmax(v[1], v[3]);
        }
    }
    double ih = fmin(p[0][2], p[1][2]) - fmax(p[0][0], p[1][0]);
    double iw = fmin(p[0][3], p[1][3]) - fmax(p[0][1], p[1][1]);
    if (ih <= 0 || iw <= 0)
        return 0;
    double inter = ih * iw;
    double a0 = (p[0][2] - p[0][0]) * (p[0][3] - p[0][1]);
    double a1 = (p[1][2] - p[1][0]) * (p[1][3] - p[1][1]);
    double uni = a0 + a1 - inter;
    return uni > 0 ? inter / uni : 0;
}

/* for the comparator: scores of one (batch, class); per thread, as graphs
 * for different shapes may be built concurrently */
static _Thread_local const double *nms_scores;

static int nms_cmp(const void *a, const void *b)
{
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    if (nms_scores[i] != nms_scores[j])
        return nms_scores[i] > nms_scores[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

static nb_status cv_nms(onnx_node_ctx *c)
{
    const nb_tensor *boxes = onnx_in_const(c, 0), *scores = onnx_in_const(c, 1);
    if (!boxes || !scores)
        return onnx_fail(c, NB_ERR_UNSUPPORTED,
                         "boxes and scores must be known at import time (the output shape "
                         "depends on their values)");
    double maxo = 0, iou_t = 0, score_t = -INFINITY;
    nb_status s;
    if ((onnx_has_in(c, 2) && (s = onnx_in_scalar(c, 2, &maxo)) != NB_OK) ||
        (onnx_has_in(c, 3) && (s = onnx_in_scalar(c, 3, &iou_t)) != NB_OK) ||
        (onnx_has_in(c, 4) && (s = onnx_in_scalar(c, 4, &score_t)) != NB_OK))
        return s;
    if (boxes->ndim != 3 || boxes->shape[2] != 4 || scores->ndim != 3 ||
        scores->shape[0] != boxes->shape[0] || scores->shape[2] != boxes->shape[1])
        return onnx_fail(c, NB_ERR_SHAPE, "boxes and scores do not fit");
    bool center = onnx_attr_int(c, "center_point_box", 0) != 0;
    int64_t B = boxes->shape[0], C = scores->shape[1], S = boxes->shape[1];
    int64_t cap = B * C * (maxo < (double)S ? (int64_t)maxo : S) + 1, n = 0;
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)(3 * cap));
    int64_t *order = malloc(sizeof(int64_t) * (size_t)(S + 1));
    int64_t *kept = malloc(sizeof(int64_t) * (size_t)(S + 1));
    double *sc = malloc(sizeof(double) * (size_t)(S + 1));
    if (!rows || !order || !kept || !sc) {
        free(rows), free(order), free(kept), free(sc);
        return onnx_fail(c, NB_ERR_ALLOC, "out of memory");
    }
    for (int64_t b = 0; b < B; b++) {
        for (int64_t k = 0; k < C; k++) {
            int64_t m = 0, nk = 0;
            for (int64_t i = 0; i < S; i++) {
                sc[i] = nb_tensor_get(scores, (int64_t[]){b, k, i});
                if (sc[i] > score_t)
                    order[m++] = i;
            }
            nms_scores = sc;
            qsort(order, (size_t)m, sizeof(int64_t), nms_cmp);
            for (int64_t q = 0; q < m && nk < (int64_t)maxo; q++) {
                bool ok = true;
                for (int64_t p = 0; p < nk && ok; p++)
                    ok = nms_iou(boxes, b, kept[p], order[q], center) <= iou_t;
                if (ok) {
                    kept[nk++] = order[q];
                    rows[3 * n] = b, rows[3 * n + 1] = k, rows[3 * n + 2] = order[q];
                    n++;
                }
            }
        }
    }
    free(order), free(kept), free(sc);
    nb_tensor t = {0};
    s = nb_tensor_from_data(&t, NB_I64, 2, (int64_t[]){n, 3}, rows);
    free(rows);
    if (s != NB_OK)
        return onnx_fail(c, s, "%s", nb_last_error());
    return onnx_set_out_const(c, 0, &t);
}

/* Unique of a value known at import: slices along axis (elements when there
 * is no axis) compared lexicographically; outputs Y, indices (first
 * occurrences), inverse_indices and counts. */
static _Thread_local const nb_tensor *uq_x; /* for the comparator, per thread */
static _Thread_local int uq_axis;
static _Thread_local int64_t uq_len;

/* element e of slice k (the other dims in row-major order) */
static double uq_at(int64_t k, int64_t e)
{
    const nb_tensor *x = uq_x;
    if (uq_axis < 0)
        return nb_tensor_get_flat(x, k);
    int64_t at[NB_MAX_DIMS];
    for (int d = x->ndim - 1; d >= 0; d--) {
        if (d == uq_axis) {
            at[d] = k;
            continue;
        }
        at[d] = e % x->shape[d];
        e /= x->shape[d];
    }
    return nb_tensor_get(x, at);
}

static int uq_cmp_slices(int64_t i, int64_t j)
{
    for (int64_t e = 0; e < uq_len; e++) {
        double a = uq_at(i, e), b = uq_at(j, e);
        if (a != b)
            return a < b ? -1 : 1;
    }
    return 0;
}

static int uq_cmp(const void *a, const void *b)
{
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    int r = uq_cmp_slices(i, j);
    return r ? r : (i < j ? -1 : i > j);
}

static nb_status cv_unique(onnx_node_ctx *c)
{
    const nb_tensor *x = onnx_in_const(c, 0);
    if (!x)
        return onnx_fail(c, NB_ERR_UNSUPPORTED,
                         "the input must be known at import time (the output shape depends on its values)");
    const Onnx__AttributeProto *ax = onnx_attr(c, "axis");
    int axis = -1;
    if (ax && !onnx_axis(ax->i, x->ndim, &axis))
        return onnx_fail(c, NB_ERR_ARG, "axis %lld is out of range", (long long)ax->i);
    bool sorted = onnx_attr_int(c, "sorted", 1) != 0;
    int64_t n = axis < 0 ? nb_tensor_numel(x) : x->shape[axis];
    uq_x = x, uq_axis = axis, uq_len = axis < 0 ? 1 : (n ? nb_tensor_numel(x) / n : 0);
    int64_t *ord = malloc(sizeof(int64_t) * (size_t)(n + 1)), *first = malloc(sizeof(int64_t) * (size_t)(n + 1));
    int64_t *inv = malloc(sizeof(int64_t) * (size_t)(n + 1)), *cnt = malloc(sizeof(int64_t) * (size_t)(n + 1));
    int64_t *grp = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!ord || !first || !inv || !cnt || !grp) {
        free(ord), free(first), free(inv), free(cnt), free(grp);
        return onnx_fail(c, NB_ERR_ALLOC, "out of memory");
    }
    for (int64_t i = 0; i < n; i++)
        ord[i] = i;
    qsort(ord, (size_t)n, sizeof(int64_t), uq_cmp);
    int64_t u = 0; /* groups in sorted order: first occurrence = first of the run */
    for (int64_t q = 0; q < n; q++) {
        if (q == 0 || uq_cmp_slices(ord[q - 1], ord[q]) != 0)
            first[u] = ord[q], cnt[u] = 0, u++;
        cnt[u - 1]++;
        grp[ord[q]] = u - 1;
    }
    if (!sorted) { /* renumber the groups by first occurrence */
        int64_t *rank = malloc(sizeof(int64_t) * (size_t)(u + 1));
        int64_t *f2 = malloc(sizeof(int64_t) * (size_t)(u + 1)), *c2 = malloc(sizeof(int64_t) * (size_t)(u + 1));
        if (rank && f2 && c2) {
            int64_t r = 0;
            for (int64_t i = 0; i < n; i++)
                if (first[grp[i]] == i)
                    rank[grp[i]] = r++;
            for (int64_t k = 0; k < u; k++)
                f2[rank[k]] = first[k], c2[rank[k]] = cnt[k];
            for (int64_t i = 0; i < n; i++)
                grp[i] = rank[grp[i]];
            memcpy(first, f2, sizeof(int64_t) * (size_t)u);
            memcpy(cnt, c2, sizeof(int64_t) * (size_t)u);
        }
        free(rank), free(f2), free(c2);
    }
    for (int64_t i = 0; i < n; i++)
        inv[i] = grp[i];
    nb_graph *g = c->g;
    nb_node *src = nb_constant(g, x);
    if (axis < 0) {
        int64_t all = nb_tensor_numel(x);
        src = nb_reshape(g, src, 1, &all);
    }
    nb_node *y = nb_gather(g, src, axis < 0 ? 0 : axis, onnx_const_node(g, NB_I64, 1, &u, first));
    nb_status s = onnx_finish(c, 0, y);
    const int64_t *outs[3] = {first, inv, cnt};
    int64_t lens[3] = {u, n, u};
    for (int k = 0; k < 3 && s == NB_OK && k + 1 < c->n_out; k++) {
        nb_tensor t = {0};
        if ((s = nb_tensor_from_data(&t, NB_I64, 1, &lens[k], outs[k])) != NB_OK)
            s = onnx_fail(c, s, "%s", nb_last_error());
        else
            s = onnx_set_out_const(c, k + 1, &t);
    }
    free(ord), free(first), free(inv), free(cnt), free(grp);
    return s;
}

/* ReverseSequence with sequence_lens known at import: a gather from the
 * flattened input at each element's source position. */
static nb_status cv_reverse_sequence(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_graph *g = c->g;
    const nb_tensor *lens = onnx_in_const(c, 1);
    if (!lens)
        return onnx_fail(c, NB_ERR_UNSUPPORTED, "sequence_lens must be known at import time");
    int r = nb_node_ndim(x);
    int ba, ta;
    if (r < 2 || !onnx_axis(onnx_attr_int(c, "batch_axis", 1), r, &ba) ||
        !onnx_axis(onnx_attr_int(c, "time_axis", 0), r, &ta) || ba == ta || ba > 1 || ta > 1 ||
        nb_tensor_numel(lens) != nb_node_shape(x)[ba])
        return onnx_fail(c, NB_ERR_ARG, "axes or sequence_lens do not fit input %s",
                         nb_node_shape_str(x));
    const int64_t *xs = nb_node_shape(x);
    int64_t n = nb_node_numel(x), inner = n / (xs[0] * xs[1]);
    int64_t *src = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    if (!src)
        return onnx_fail(c, NB_ERR_ALLOC, "out of memory");
    for (int64_t i = 0; i < xs[0]; i++)
        for (int64_t j = 0; j < xs[1]; j++) {
            int64_t b = ba == 0 ? i : j, t = ba == 0 ? j : i;
            int64_t len = (int64_t)nb_tensor_get_flat(lens, b);
            int64_t st = t < len ? len - 1 - t : t;
            int64_t si = ba == 0 ? i : st, sj = ba == 0 ? st : j;
            for (int64_t e = 0; e < inner; e++)
                src[(i * xs[1] + j) * inner + e] = (si * xs[1] + sj) * inner + e;
        }
    nb_node *idx = onnx_const_node(g, NB_I64, r, xs, src);
    free(src);
    return onnx_finish(c, 0, nb_gather(g, nb_reshape(g, x, 1, &n), 0, idx));
}

/* ---- one-hot, masks, tests ----------------------------------------------------- */

static nb_status cv_onehot(onnx_node_ctx *c)
{
    IN(idx, 0);
    IN(values, 2);
    nb_graph *g = c->g;
    double dv = 0;
    nb_status s = onnx_in_scalar(c, 1, &dv);
    if (s != NB_OK)
        return s;
    int64_t depth = (int64_t)dv;
    int r = nb_node_ndim(idx), axis;
    int64_t a = onnx_attr_int(c, "axis", -1);
    if (depth < 1 || r + 1 > NB_MAX_DIMS || !onnx_axis(a, r + 1, &axis) ||
        nb_node_numel(values) != 2)
        return onnx_fail(c, NB_ERR_ARG, "depth %lld, axis %lld, values %s do not fit indices %s",
                         (long long)depth, (long long)a, nb_node_shape_str(values),
                         nb_node_shape_str(idx));
    nb_node *i64 = nb_cast(g, idx, NB_I64);
    i64 = nb_where(g, nb_lt(g, i64, nb_scalar(g, 0, NB_I64)), nb_add_scalar(g, i64, (double)depth),
                   i64);
    int64_t *iota = malloc(sizeof(int64_t) * (size_t)depth);
    if (!iota)
        return onnx_fail(c, NB_ERR_ALLOC, "out of memory");
    for (int64_t k = 0; k < depth; k++)
        iota[k] = k;
    int64_t shape[NB_MAX_DIMS];
    onnx_axis_shape(r + 1, axis, depth, shape);
    nb_node *io = onnx_const_node(g, NB_I64, r + 1, shape, iota);
    free(iota);
    nb_node *mask = nb_eq(g, nb_unsqueeze(g, i64, axis), io);
    nb_node *v = nb_reshape(g, values, 1, (int64_t[]){2});
    nb_node *off = nb_reshape(g, nb_slice(g, v, 0, 0, 1, 1), 0, NULL);
    nb_node *on = nb_reshape(g, nb_slice(g, v, 0, 1, 2, 1), 0, NULL);
    return onnx_finish(c, 0, nb_where(g, mask, on, off));
}

static nb_status cv_trilu(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_graph *g = c->g;
    int64_t k = 0;
    if (onnx_has_in(c, 1)) {
        int n;
        nb_status s = onnx_in_ints(c, 1, &k, 1, &n);
        if (s != NB_OK)
            return s;
    }
    bool upper = onnx_attr_int(c, "upper", 1) != 0;
    int r = nb_node_ndim(x);
    if (r < 2)
        return onnx_fail(c, NB_ERR_SHAPE, "input %s has fewer than 2 dims", nb_node_shape_str(x));
    int64_t shape[2] = {nb_node_shape(x)[r - 2], nb_node_shape(x)[r - 1]};
    int64_t n = shape[0] * shape[1];
    uint8_t *m = malloc((size_t)(n > 0 ? n : 1));
    if (!m)
        return onnx_fail(c, NB_ERR_ALLOC, "out of memory");
    for (int64_t i = 0; i < shape[0]; i++)
        for (int64_t j = 0; j < shape[1]; j++)
            m[i * shape[1] + j] = upper ? j - i >= k : j - i <= k;
    nb_node *mask = onnx_const_node(g, NB_BOOL, 2, shape, m);
    free(m);
    return onnx_finish(c, 0, nb_where(g, mask, x, nb_scalar(g, 0, nb_node_dtype(x))));
}

static nb_status cv_isnan_isinf(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_graph *g = c->g;
    nb_dtype dt = nb_node_dtype(x);
    if (!nb_dtype_is_float(dt))
        return onnx_fail(c, NB_ERR_DTYPE, "dtype %s is not supported", nb_dtype_name(dt));
    if (!strcmp(c->node->op_type, "IsNaN"))
        return onnx_finish(c, 0, nb_ne(g, x, x));
    bool pos = onnx_attr_int(c, "detect_positive", 1) != 0;
    bool neg = onnx_attr_int(c, "detect_negative", 1) != 0;
    nb_node *p = nb_eq(g, x, nb_scalar(g, pos ? INFINITY : NAN, dt));
    nb_node *q = nb_eq(g, x, nb_scalar(g, neg ? -INFINITY : NAN, dt));
    return onnx_finish(c, 0, nb_where(g, p, nb_scalar(g, 1, NB_BOOL), q));
}

/* EyeLike: ones on diagonal k of a 2-D shape; only the input's shape is read. */
static nb_status cv_eyelike(onnx_node_ctx *c)
{
    if (!onnx_has_in(c, 0) || onnx_in_ndim(c, 0) != 2)
        return onnx_fail(c, NB_ERR_SHAPE, "needs a 2-D input");
    nb_dtype dt = onnx_in_dtype(c, 0);
    int64_t ot = onnx_attr_int(c, "dtype", -1);
    if (ot >= 0 && !onnx_storage_dtype((int32_t)ot, &dt))
        return onnx_fail(c, NB_ERR_DTYPE, "dtype %lld is not supported", (long long)ot);
    int64_t k = onnx_attr_int(c, "k", 0);
    const int64_t *sh = onnx_in_shape(c, 0);
    nb_tensor t = {0};
    nb_status s = nb_tensor_zeros(&t, dt, 2, sh);
    if (s != NB_OK)
        return onnx_fail(c, s, "%s", nb_last_error());
    for (int64_t i = 0; i < sh[0]; i++)
        if (i + k >= 0 && i + k < sh[1])
            nb_tensor_set(&t, (int64_t[]){i, i + k}, 1.0);
    return onnx_set_out_const(c, 0, &t);
}

/* Compress with a condition known at import: a gather of the true positions
 * (of the flattened input when there is no axis). */
static nb_status cv_compress(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_graph *g = c->g;
    const nb_tensor *cond = onnx_in_const(c, 1);
    if (!cond)
        return onnx_fail(c, NB_ERR_UNSUPPORTED,
                         "the condition must be known at import time (it sets the output shape)");
    const Onnx__AttributeProto *ax = onnx_attr(c, "axis");
    int axis = 0;
    if (ax) {
        if (!onnx_axis(ax->i, nb_node_ndim(x), &axis))
            return onnx_fail(c, NB_ERR_ARG, "axis %lld is out of range for %s", (long long)ax->i,
                             nb_node_shape_str(x));
    } else {
        int64_t all = nb_node_numel(x);
        x = nb_reshape(g, x, 1, &all);
    }
    int64_t dim = nb_node_shape(x)[axis], nc = nb_tensor_numel(cond), k = 0;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(nc > 0 ? nc : 1));
    if (!idx)
        return onnx_fail(c, NB_ERR_ALLOC, "out of memory");
    for (int64_t i = 0; i < nc && i < dim; i++)
        if (nb_tensor_get_flat(cond, i) != 0)
            idx[k++] = i;
    nb_node *y = k ? nb_gather(g, x, axis, onnx_const_node(g, NB_I64, 1, &k, idx))
                   : nb_slice(g, x, axis, 0, 0, 1);
    free(idx);
    return onnx_finish(c, 0, y);
}

/* GatherND: data viewed as (B P, R), B the batch dims, P the dims the index
 * tuples address, R the rest; row = b P + sum_j idx_j stride_j. */
static nb_status cv_gathernd(onnx_node_ctx *c)
{
    IN(x, 0);
    IN(idx, 1);
    nb_graph *g = c->g;
    int r = nb_node_ndim(x), q = nb_node_ndim(idx);
    int64_t bd = onnx_attr_int(c, "batch_dims", 0);
    const int64_t *xs = nb_node_shape(x), *is = nb_node_shape(idx);
    int64_t m = q > 0 ? is[q - 1] : 0;
    if (q < 1 || bd < 0 || bd >= q || m < 1 || bd + m > r)
        return onnx_fail(c, NB_ERR_SHAPE, "indices %s, batch_dims %lld do not fit data %s",
                         nb_node_shape_str(idx), (long long)bd, nb_node_shape_str(x));
    int64_t B = 1, P = 1, R = 1;
    for (int d = 0; d < bd; d++) {
        if (is[d] != xs[d])
            return onnx_fail(c, NB_ERR_SHAPE, "batch dim %d differs: %s vs %s", d,
                             nb_node_shape_str(idx), nb_node_shape_str(x));
        B *= xs[d];
    }
    int64_t stride[NB_MAX_DIMS], dims[NB_MAX_DIMS];
    for (int64_t j = m - 1; j >= 0; j--) {
        stride[j] = P;
        dims[j] = xs[bd + j];
        P *= xs[bd + j];
    }
    for (int d = (int)(bd + m); d < r; d++)
        R *= xs[d];
    nb_node *i64 = nb_cast(g, idx, NB_I64);
    nb_node *dn = onnx_const_node(g, NB_I64, 1, &m, dims);
    i64 = nb_where(g, nb_lt(g, i64, nb_scalar(g, 0, NB_I64)), nb_add(g, i64, dn), i64);
    int last = q - 1;
    nb_node *row = nb_sum(g, nb_mul(g, i64, onnx_const_node(g, NB_I64, 1, &m, stride)), 1, &last, false);
    if (bd > 0) { /* + b P, b the flat batch position, shaped (batch dims, 1, ...) */
        int64_t *off = malloc(sizeof(int64_t) * (size_t)B);
        if (!off)
            return onnx_fail(c, NB_ERR_ALLOC, "out of memory");
        for (int64_t b = 0; b < B; b++)
            off[b] = b * P;
        int64_t oshape[NB_MAX_DIMS];
        for (int d = 0; d < q - 1; d++)
            oshape[d] = d < bd ? is[d] : 1;
        row = nb_add(g, row, onnx_const_node(g, NB_I64, q - 1, oshape, off));
        free(off);
    }
    nb_node *y = nb_gather(g, nb_reshape(g, x, 2, (int64_t[]){B * P, R}), 0, row);
    int64_t out[NB_MAX_DIMS];
    int no = 0;
    for (int d = 0; d < q - 1; d++)
        out[no++] = is[d];
    for (int d = (int)(bd + m); d < r && no < NB_MAX_DIMS; d++)
        out[no++] = xs[d];
    if (q - 1 + r - bd - m > NB_MAX_DIMS)
        return onnx_fail(c, NB_ERR_SHAPE, "the result would have more than %d dims", NB_MAX_DIMS);
    return onnx_finish(c, 0, nb_reshape(g, y, no, out));
}

/* ---- losses ---------------------------------------------------------------------
 *
 * NegativeLogLikelihoodLoss(x (N, C, d...), t (N, d...) [, weight (C)]):
 *   loss[n, d] = -x[n, t[n, d], d] w[t[n, d]], w = 0 where t == ignore_index;
 *   reduction none, sum, or mean = sum(loss) / sum(w) (the plain mean when
 *   there is neither weight nor ignore_index). x[n, t, d] is a gather from the
 *   flattened x at n C D + t D + d. SoftmaxCrossEntropyLoss is the same on
 *   log_softmax(scores, axis 1), which is its optional second output.
 */
static nb_status nll(onnx_node_ctx *c, nb_node *x, nb_node *t, nb_node *weight)
{
    nb_graph *g = c->g;
    int r = nb_node_ndim(x);
    const int64_t *xs = nb_node_shape(x), *ts = nb_node_shape(t);
    bool fits = r >= 2 && nb_node_ndim(t) == r - 1 && ts[0] == xs[0];
    for (int d = 2; fits && d < r; d++)
        fits = ts[d - 1] == xs[d];
    if (!fits || !nb_dtype_is_float(nb_node_dtype(x)))
        return onnx_fail(c, NB_ERR_SHAPE, "input %s %s and target %s do not fit",
                         nb_node_shape_str(x), nb_dtype_name(nb_node_dtype(x)),
                         nb_node_shape_str(t));
    nb_dtype dt = nb_node_dtype(x);
    int64_t N = xs[0], C = xs[1], D = nb_shape_numel(r - 2, xs + 2);
    int64_t *base = malloc(sizeof(int64_t) * (size_t)(N * D > 0 ? N * D : 1));
    if (!base)
        return onnx_fail(c, NB_ERR_ALLOC, "out of memory");
    for (int64_t n = 0; n < N; n++)
        for (int64_t d = 0; d < D; d++)
            base[n * D + d] = n * C * D + d;
    nb_node *bn = onnx_const_node(g, NB_I64, r - 1, ts, base);
    free(base);
    nb_node *ti = nb_cast(g, t, NB_I64);
    const Onnx__AttributeProto *ig = onnx_attr(c, "ignore_index");
    nb_node *keep = NULL;
    if (ig) {
        keep = nb_ne(g, ti, nb_scalar(g, (double)ig->i, NB_I64));
        ti = nb_where(g, keep, ti, nb_scalar(g, 0, NB_I64));
    }
    int64_t all = nb_node_numel(x);
    nb_node *picked = nb_gather(g, nb_reshape(g, x, 1, &all), 0,
                                nb_add(g, nb_mul_scalar(g, ti, (double)D), bn));
    nb_node *w = weight ? nb_gather(g, weight, 0, ti) : NULL;
    if (keep)
        w = nb_where(g, keep, w ? w : nb_scalar(g, 1, dt), nb_scalar(g, 0, dt));
    nb_node *loss = nb_neg(g, w ? nb_mul(g, picked, w) : picked);
    char buf[8];
    const char *red = onnx_attr_string(c, "reduction", "mean", buf, sizeof buf);
    nb_node *y;
    if (!strcmp(red, "none"))
        y = loss;
    else if (!strcmp(red, "sum"))
        y = nb_sum(g, loss, 0, NULL, false);
    else if (!strcmp(red, "mean"))
        y = w ? nb_div(g, nb_sum(g, loss, 0, NULL, false), nb_sum(g, w, 0, NULL, false))
              : nb_mean(g, loss, 0, NULL, false);
    else
        return onnx_fail(c, NB_ERR_UNSUPPORTED, "reduction '%s' is not supported", red);
    return onnx_finish(c, 0, y);
}

static nb_status cv_nll(onnx_node_ctx *c)
{
    IN(x, 0);
    IN(t, 1);
    nb_node *w = NULL;
    if (onnx_has_in(c, 2) && !(w = onnx_in(c, 2)))
        return NB_ERR_ARG;
    return nll(c, x, t, w);
}

static nb_status cv_sce(onnx_node_ctx *c)
{
    IN(x, 0);
    IN(t, 1);
    nb_node *w = NULL;
    if (onnx_has_in(c, 2) && !(w = onnx_in(c, 2)))
        return NB_ERR_ARG;
    if (nb_node_ndim(x) < 2)
        return onnx_fail(c, NB_ERR_SHAPE, "scores %s need at least 2 dims", nb_node_shape_str(x));
    nb_node *lp = nb_log_softmax(c->g, x, 1);
    nb_status s = nll(c, lp, t, w);
    if (s == NB_OK && c->n_out > 1 && c->out[1])
        s = onnx_finish(c, 1, lp);
    return s;
}

/* ---- TopK ------------------------------------------------------------------------ */

#define TOPK_MAX 256

static nb_status cv_topk(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_graph *g = c->g;
    int64_t k;
    if (c->opset < 10) {
        k = onnx_attr_int(c, "k", -1);
    } else {
        int n;
        nb_status s = onnx_in_ints(c, 1, &k, 1, &n);
        if (s != NB_OK)
            return s;
    }
    int r = nb_node_ndim(x), axis;
    int64_t a = onnx_attr_int(c, "axis", -1);
    if (!onnx_axis(a, r, &axis))
        return onnx_fail(c, NB_ERR_ARG, "axis %lld is out of range for rank %d", (long long)a, r);
    int64_t n = nb_node_shape(x)[axis];
    if (k < 0 || k > n)
        return onnx_fail(c, NB_ERR_ARG, "k = %lld for an axis of %lld", (long long)k, (long long)n);
    if (k > TOPK_MAX)
        return onnx_fail(c, NB_ERR_UNSUPPORTED, "k = %lld: at most %d is supported", (long long)k,
                         TOPK_MAX);
    bool largest = onnx_attr_int(c, "largest", 1) != 0;
    nb_dtype dt = nb_node_dtype(x);
    if (k == 0) {
        nb_node *v = nb_slice(g, x, axis, 0, 0, 1);
        nb_status s = onnx_finish(c, 0, v);
        return s != NB_OK ? s : onnx_finish(c, 1, nb_cast(g, v, NB_I64));
    }
    nb_dtype wt = nb_dtype_is_float(dt) ? dt : NB_F64;
    nb_node *w = nb_cast(g, x, wt);
    if (!largest)
        w = nb_neg(g, w);
    int64_t *iv = malloc(sizeof(int64_t) * (size_t)n);
    nb_node **vals = malloc(sizeof(nb_node *) * (size_t)k);
    nb_node **idxs = malloc(sizeof(nb_node *) * (size_t)k);
    if (!iv || !vals || !idxs) {
        free(iv);
        free(vals);
        free(idxs);
        return onnx_fail(c, NB_ERR_ALLOC, "out of memory");
    }
    for (int64_t i = 0; i < n; i++)
        iv[i] = i;
    int64_t shape[NB_MAX_DIMS];
    onnx_axis_shape(r, axis, n, shape);
    nb_node *iota = onnx_const_node(g, NB_I64, r, shape, iv);
    nb_node *ninf = nb_scalar(g, -INFINITY, wt);
    for (int64_t i = 0; i < k; i++) {
        vals[i] = nb_max(g, w, 1, &axis, true);
        idxs[i] = nb_argmax(g, w, axis, true);
        if (i + 1 < k)
            w = nb_where(g, nb_eq(g, iota, idxs[i]), ninf, w);
    }
    nb_node *v = nb_concat(g, (int)k, vals, axis);
    nb_node *ix = nb_concat(g, (int)k, idxs, axis);
    free(iv);
    free(vals);
    free(idxs);
    if (!largest)
        v = nb_neg(g, v);
    nb_status s = onnx_finish(c, 0, nb_cast(g, v, dt));
    return s != NB_OK ? s : onnx_finish(c, 1, ix);
}

/* ---- the table --------------------------------------------------------------------- */

const onnx_op_entry nb_onnx_ops_misc[] = {
    {NULL, "Constant", 1, 0, cv_constant},
    {NULL, "ConstantOfShape", 9, 0, cv_constant_of_shape},
    {NULL, "Cast", 6, 0, cv_cast},
    {NULL, "CastLike", 15, 0, cv_cast},
    {NULL, "Range", 11, 0, cv_range},
    {NULL, "NonZero", 9, 0, cv_nonzero},
    {NULL, "OneHot", 9, 0, cv_onehot},
    {NULL, "Trilu", 14, 0, cv_trilu},
    {NULL, "IsNaN", 9, 0, cv_isnan_isinf},
    {NULL, "IsInf", 10, 0, cv_isnan_isinf},
    {NULL, "TopK", 1, 0, cv_topk},
    {NULL, "EyeLike", 9, 0, cv_eyelike},
    {NULL, "Compress", 9, 0, cv_compress},
    {NULL, "GatherND", 11, 0, cv_gathernd},
    {NULL, "NonMaxSuppression", 10, 0, cv_nms},
    {NULL, "Unique", 11, 0, cv_unique},
    {NULL, "ReverseSequence", 10, 0, cv_reverse_sequence},
    {NULL, "NegativeLogLikelihoodLoss", 12, 0, cv_nll},
    {NULL, "SoftmaxCrossEntropyLoss", 12, 0, cv_sce},
    {NULL, NULL, 0, 0, NULL},
};
