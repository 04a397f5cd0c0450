/* Data movement: strided copies and the MOVE family (reshape, permute, expand,
 * slice, slice_grad, concat, pad, one_hot).
 *
 * Every op here only moves bytes, so the kernels work on the element size and
 * serve all dtypes. Each op describes its source (or its destination) as a
 * strided view built with tensor/tensor.h and hands it to one copy engine:
 *
 *     dst[i0, ..., in] = src[i0, ..., in]   for every index of the shared shape
 *
 * The engine first merges dims that are contiguous in both tensors, then picks
 * one of three loops: whole rows with memcpy (unit inner stride on both sides),
 * a cache-blocked 2-D transpose (unit stride on the source's second-last dim),
 * or an element loop. Large copies run on the thread pool.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/threadpool.h"

#define TILE 16                        /* transpose block edge, elements */
#define PAR_MIN_BYTES (256 * 1024)     /* below this, copy on the caller */
#define GRAIN_ELEMS 16384              /* elements per thread-pool chunk, at least */

/* ---- the copy engine -------------------------------------------------- */

enum { COPY_ROWS, COPY_TRANSPOSE, COPY_ELEMS };

typedef struct copy_plan {
    int nd;
    int64_t shape[NB_MAX_DIMS];
    int64_t ss[NB_MAX_DIMS]; /* source strides, elements */
    int64_t ds[NB_MAX_DIMS]; /* destination strides, elements */
    size_t es;
    const char *src;
    char *dst;
    int mode;
    int nouter;      /* dims iterated by the unit index */
    int64_t ntiles;  /* COPY_TRANSPOSE: row tiles per outer index */
} copy_plan;

/* Copy one element of es bytes; the constant sizes compile to single moves. */
static inline void copy_elem(char *d, const char *s, size_t es)
{
    switch (es) {
    case 1: *d = *s; break;
    case 2: memcpy(d, s, 2); break;
    case 4: memcpy(d, s, 4); break;
    case 8: memcpy(d, s, 8); break;
    default: memcpy(d, s, es); break;
    }
}

/* n elements from s (stride ss) to d (stride ds), strides in elements. */
static void copy_run(char *d, int64_t ds, const char *s, int64_t ss, int64_t n, size_t es)
{
    if (ds == 1 && ss == 1) {
        memcpy(d, s, (size_t)n * es);
        return;
    }
#define RUN_CASE(SZ)                                                             \
    case SZ:                                                                     \
        for (int64_t i = 0; i < n; i++)                                          \
            memcpy(d + (size_t)(i * ds) * SZ, s + (size_t)(i * ss) * SZ, SZ);    \
        return;
    switch (es) {
        RUN_CASE(1)
        RUN_CASE(2)
        RUN_CASE(4)
        RUN_CASE(8)
    default:
        for (int64_t i = 0; i < n; i++)
            memcpy(d + (size_t)(i * ds) * es, s + (size_t)(i * ss) * es, es);
    }
#undef RUN_CASE
}

/* Offsets of the outer multi-index that flat position `u` names over dims
 * [0, nouter) of the plan. */
static void unravel(const copy_plan *p, int64_t u, int64_t *idx, int64_t *so, int64_t *dof)
{
    *so = 0;
    *dof = 0;
    for (int d = p->nouter - 1; d >= 0; d--) {
        idx[d] = u % p->shape[d];
        u /= p->shape[d];
        *so += idx[d] * p->ss[d];
        *dof += idx[d] * p->ds[d];
    }
}

/* Step the outer multi-index by one (row-major odometer). */
static void advance(const copy_plan *p, int64_t *idx, int64_t *so, int64_t *dof)
{
    for (int d = p->nouter - 1; d >= 0; d--) {
        idx[d]++;
        *so += p->ss[d];
        *dof += p->ds[d];
        if (idx[d] < p->shape[d])
            return;
        *so -= idx[d] * p->ss[d];
        *dof -= idx[d] * p->ds[d];
        idx[d] = 0;
    }
}

/* dst[r, c] = src[r, c] over rows [r0, r1) of an R x C block whose source is
 * column-major (unit stride along r) and whose destination is row-major (unit
 * stride along c); blocked in TILE x TILE squares so both sides stay in cache.
 * One loop per element size so the inner copy is a single move. */
#define DEFINE_TILE_COPY(SZ)                                                      \
    static void copy_tile_##SZ(char *d, const char *s, int64_t r0, int64_t r1,    \
                               int64_t C, int64_t sc, int64_t dr)                 \
    {                                                                             \
        for (int64_t c0 = 0; c0 < C; c0 += TILE) {                                \
            int64_t c1 = c0 + TILE < C ? c0 + TILE : C;                           \
            for (int64_t r = r0; r < r1; r++) {                                   \
                char *drow = d + (size_t)(r * dr) * SZ;                           \
                const char *scol = s + (size_t)r * SZ;                            \
                for (int64_t c = c0; c < c1; c++)                                 \
                    memcpy(drow + (size_t)c * SZ, scol + (size_t)(c * sc) * SZ, SZ); \
            }                                                                     \
        }                                                                         \
    }
DEFINE_TILE_COPY(1)
DEFINE_TILE_COPY(2)
DEFINE_TILE_COPY(4)
DEFINE_TILE_COPY(8)

static void copy_tile_rows(const copy_plan *p, char *d, const char *s, int64_t r0, int64_t r1)
{
    int n = p->nd;
    int64_t C = p->shape[n - 1], sc = p->ss[n - 1], dr = p->ds[n - 2];
    switch (p->es) {
    case 1: copy_tile_1(d, s, r0, r1, C, sc, dr); return;
    case 2: copy_tile_2(d, s, r0, r1, C, sc, dr); return;
    case 4: copy_tile_4(d, s, r0, r1, C, sc, dr); return;
    case 8: copy_tile_8(d, s, r0, r1, C, sc, dr); return;
    }
    for (int64_t r = r0; r < r1; r++)
        copy_run(d + (size_t)(r * dr) * p->es, 1, s + (size_t)r * p->es, sc, C, p->es);
}

/* Copy units [begin, end): a unit is one row (last dim) for COPY_ROWS and
 * COPY_ELEMS, and one TILE-row strip of the last two dims for COPY_TRANSPOSE. */
static void copy_units(void *ctx, int64_t begin, int64_t end)
{
    const copy_plan *p = ctx;
    int n = p->nd;
    size_t es = p->es;
    int64_t idx[NB_MAX_DIMS], so, dof;
    if (p->mode == COPY_TRANSPOSE) {
        int64_t R = p->shape[n - 2];
        int64_t outer = begin / p->ntiles, tile = begin % p->ntiles;
        unravel(p, outer, idx, &so, &dof);
        for (int64_t u = begin; u < end; u++) {
            int64_t r0 = tile * TILE, r1 = r0 + TILE < R ? r0 + TILE : R;
            copy_tile_rows(p, p->dst + (size_t)dof * es, p->src + (size_t)so * es, r0, r1);
            if (++tile == p->ntiles) {
                tile = 0;
                advance(p, idx, &so, &dof);
            }
        }
        return;
    }
    int64_t len = p->shape[n - 1];
    unravel(p, begin, idx, &so, &dof);
    for (int64_t u = begin; u < end; u++) {
        copy_run(p->dst + (size_t)dof * es, p->ds[n - 1], p->src + (size_t)so * es, p->ss[n - 1],
                 len, es);
        advance(p, idx, &so, &dof);
    }
}

/* Drop size-1 dims and merge neighbours that are contiguous in both tensors. */
static void coalesce(copy_plan *p, int ndim, const int64_t *shape, const int64_t *ss,
                     const int64_t *ds)
{
    int n = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 1)
            continue;
        if (n > 0 && p->ss[n - 1] == ss[i] * shape[i] && p->ds[n - 1] == ds[i] * shape[i]) {
            p->shape[n - 1] *= shape[i];
            p->ss[n - 1] = ss[i];
            p->ds[n - 1] = ds[i];
            continue;
        }
        p->shape[n] = shape[i];
        p->ss[n] = ss[i];
        p->ds[n] = ds[i];
        n++;
    }
    p->nd = n;
}

/* Copy the view src into the view dst (same shape and element size). */
static void copy_views(const nb_tensor *src, nb_tensor *dst)
{
    copy_plan p;
    size_t es = nb_dtype_size(src->dtype);
    int64_t numel = nb_tensor_numel(src);
    if (numel == 0)
        return;
    p.es = es;
    p.src = nb_tensor_data(src);
    p.dst = nb_tensor_data(dst);
    coalesce(&p, src->ndim, src->shape, src->strides, dst->strides);
    if (p.nd == 0) {
        copy_elem(p.dst, p.src, es);
        return;
    }
    int n = p.nd;
    if (n == 1 && p.ss[0] == 1 && p.ds[0] == 1) {
        memcpy(p.dst, p.src, (size_t)numel * es); /* contiguous: one memcpy */
        return;
    }
    int64_t units;
    int64_t unit_elems;
    if (n >= 2 && p.ds[n - 1] == 1 && p.ss[n - 1] != 1 && p.ss[n - 2] == 1) {
        p.mode = COPY_TRANSPOSE;
        p.nouter = n - 2;
        p.ntiles = (p.shape[n - 2] + TILE - 1) / TILE;
        units = nb_shape_numel(n - 2, p.shape) * p.ntiles;
        unit_elems = TILE * p.shape[n - 1];
    } else {
        p.mode = (p.ss[n - 1] == 1 && p.ds[n - 1] == 1) ? COPY_ROWS : COPY_ELEMS;
        p.nouter = n - 1;
        units = nb_shape_numel(n - 1, p.shape);
        unit_elems = p.shape[n - 1];
    }
    if ((size_t)numel * es < PAR_MIN_BYTES || units == 1) {
        copy_units(&p, 0, units);
        return;
    }
    int64_t grain = GRAIN_ELEMS / unit_elems;
    nb_parallel_for(units, grain > 1 ? grain : 1, copy_units, &p);
}

/* dst = src for any strided src and any strided dst of the same shape and
 * dtype (dst is usually contiguous). */
nb_status nb_cpu_copy_strided(const nb_tensor *src, nb_tensor *dst)
{
    char a[96], b[96];
    if (!src || !dst || (!src->buf && nb_tensor_numel(src) > 0) ||
        (!dst->buf && nb_tensor_numel(dst) > 0))
        return nb_error(NB_ERR_ARG, "copy: missing tensor");
    if (src->dtype != dst->dtype)
        return nb_error(NB_ERR_DTYPE, "copy: dtypes %s and %s differ", nb_dtype_name(src->dtype),
                        nb_dtype_name(dst->dtype));
    if (!nb_shape_equal(src->ndim, src->shape, dst->ndim, dst->shape))
        return nb_error(NB_ERR_SHAPE, "copy: shapes %s and %s differ",
                        nb_shape_str(src->ndim, src->shape, a, sizeof a),
                        nb_shape_str(dst->ndim, dst->shape, b, sizeof b));
    copy_views(src, dst);
    return NB_OK;
}

nb_status nb_cpu_check_float_same(const char *name, const nb_tensor *x, const nb_tensor *out)
{
    char a[96], b[96];
    if (x->dtype != NB_F32 && x->dtype != NB_F64)
        return nb_error(NB_ERR_DTYPE, "%s: input must be f32 or f64, got %s", name,
                        nb_dtype_name(x->dtype));
    if (out->dtype != x->dtype)
        return nb_error(NB_ERR_DTYPE, "%s: output dtype %s differs from input %s", name,
                        nb_dtype_name(out->dtype), nb_dtype_name(x->dtype));
    if (!nb_shape_equal(x->ndim, x->shape, out->ndim, out->shape))
        return nb_error(NB_ERR_SHAPE, "%s: output %s differs from input %s", name,
                        nb_shape_str(out->ndim, out->shape, a, sizeof a),
                        nb_shape_str(x->ndim, x->shape, b, sizeof b));
    return NB_OK;
}

nb_status nb_cpu_contiguous_input(const nb_tensor *x, nb_tensor *tmp, const nb_tensor **use)
{
    *use = x;
    if (nb_tensor_is_contiguous(x))
        return NB_OK;
    nb_status st = nb_tensor_empty(tmp, x->dtype, x->ndim, x->shape);
    if (st == NB_OK)
        st = nb_cpu_copy_strided(x, tmp);
    if (st != NB_OK) {
        nb_tensor_release(tmp);
        return st;
    }
    *use = tmp;
    return NB_OK;
}

/* ---- helpers for the MOVE ops ---------------------------------------- */

/* The bytes of `value` as one element of dt (integers saturate, NaN -> 0). */
static void encode_value(nb_dtype dt, double v, unsigned char *bytes)
{
    double lo, hi;
    switch (dt) {
    case NB_F32: { float f = (float)v; memcpy(bytes, &f, 4); return; }
    case NB_F64: memcpy(bytes, &v, 8); return;
    case NB_I32: lo = -2147483648.0; hi = 2147483647.0; break;
    case NB_I64: lo = -9223372036854775808.0; hi = 9223372036854774784.0; break;
    case NB_U8: lo = 0; hi = 255; break;
    case NB_BOOL: bytes[0] = v != 0; return;
    default: memset(bytes, 0, 8); nb_dtype_store_f64(bytes, dt, v); return; /* storage dtypes */
    }
    if (v != v)
        v = 0;
    v = v < lo ? lo : (v > hi ? hi : v);
    if (dt == NB_I32) { int32_t x = (int32_t)v; memcpy(bytes, &x, 4); }
    else if (dt == NB_I64) { int64_t x = (int64_t)v; memcpy(bytes, &x, 8); }
    else bytes[0] = (unsigned char)v;
}

/* Set every element of the contiguous tensor t to value. */
static void fill_value(nb_tensor *t, double value)
{
    unsigned char pat[8] = {0};
    size_t es = nb_dtype_size(t->dtype);
    int64_t n = nb_tensor_numel(t);
    char *d = nb_tensor_data(t);
    if (n == 0)
        return;
    encode_value(t->dtype, value, pat);
    bool zero = true;
    for (size_t i = 0; i < es; i++)
        zero = zero && pat[i] == 0;
    if (zero) {
        memset(d, 0, (size_t)n * es);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        memcpy(d + (size_t)i * es, pat, es);
}

/* The view t[start[d] :: step[d]] with count[d] items per dim, chained from
 * nb_tensor_slice. The caller releases *out. */
static nb_status slice_view(const nb_tensor *t, const int64_t *start, const int64_t *step,
                            const int64_t *count, nb_tensor *out)
{
    nb_tensor cur;
    nb_tensor_ref(&cur, t);
    for (int d = 0; d < t->ndim; d++) {
        nb_tensor next;
        int64_t stop = count[d] > 0 ? start[d] + (count[d] - 1) * step[d] + 1 : start[d];
        nb_status st = nb_tensor_slice(&cur, d, start[d], stop, step[d], &next);
        nb_tensor_release(&cur);
        if (st != NB_OK)
            return st;
        cur = next;
    }
    *out = cur;
    return NB_OK;
}

/* Check that start/step with count items fit in each dim of `full`. */
static nb_status check_slice(const char *op, const nb_tensor *full, const nb_slice_params *sp,
                             const int64_t *count)
{
    char a[96];
    for (int d = 0; d < full->ndim; d++) {
        int64_t last = sp->start[d] + (count[d] - 1) * sp->step[d];
        if (sp->step[d] < 1 || sp->start[d] < 0 || (count[d] > 0 && last >= full->shape[d]))
            return nb_error(NB_ERR_ARG,
                            "%s: start %lld step %lld count %lld along dim %d do not fit in %s",
                            op, (long long)sp->start[d], (long long)sp->step[d],
                            (long long)count[d], d,
                            nb_shape_str(full->ndim, full->shape, a, sizeof a));
    }
    return NB_OK;
}

/* A view of the contiguous tensor t reinterpreted with another shape of the
 * same numel (a struct copy: no reference is taken, do not release). */
static nb_tensor reshaped_alias(const nb_tensor *t, int ndim, const int64_t *shape)
{
    nb_tensor v = *t;
    v.ndim = ndim;
    for (int d = 0; d < ndim; d++)
        v.shape[d] = shape[d];
    nb_shape_strides(ndim, shape, v.strides);
    return v;
}

/* Copy view (which the caller owns) into dst, release it, and pass st on. */
static nb_status copy_and_release(nb_status st, nb_tensor *view, nb_tensor *dst, const char *op)
{
    char a[96], b[96];
    if (st == NB_OK && !nb_shape_equal(view->ndim, view->shape, dst->ndim, dst->shape))
        st = nb_error(NB_ERR_SHAPE, "%s: expected output shape %s, got %s", op,
                      nb_shape_str(view->ndim, view->shape, a, sizeof a),
                      nb_shape_str(dst->ndim, dst->shape, b, sizeof b));
    if (st == NB_OK)
        copy_views(view, dst);
    nb_tensor_release(view);
    return st;
}

/* ---- the ops ------------------------------------------------------------ */

/* out = in laid out in row-major order under out's shape (numel equal). */
static nb_status move_reshape(const nb_tensor *in, nb_tensor *out)
{
    char a[96], b[96];
    if (nb_tensor_numel(in) != nb_tensor_numel(out))
        return nb_error(NB_ERR_SHAPE, "reshape: cannot reshape %s into %s",
                        nb_shape_str(in->ndim, in->shape, a, sizeof a),
                        nb_shape_str(out->ndim, out->shape, b, sizeof b));
    nb_tensor dst = reshaped_alias(out, in->ndim, in->shape);
    copy_views(in, &dst);
    return NB_OK;
}

/* out = [in_0, in_1, ..., in_{n-1}] laid side by side along `axis`:
 * out[..., off_i + j, ...] = in_i[..., j, ...], off_i = sum of earlier sizes. */
static nb_status move_concat(const nb_kernel_call *c, int axis)
{
    char a[96], b[96];
    nb_tensor *out = c->out;
    if (axis < 0 || axis >= out->ndim)
        return nb_error(NB_ERR_ARG, "concat: axis %d out of range for %d dims", axis, out->ndim);
    int64_t off = 0;
    for (int i = 0; i < c->n_in; i++) {
        const nb_tensor *t = c->in[i];
        if (!t)
            return nb_error(NB_ERR_ARG, "concat: input %d is missing", i);
        bool ok = t->ndim == out->ndim && t->dtype == out->dtype;
        for (int d = 0; ok && d < t->ndim; d++)
            ok = d == axis || t->shape[d] == out->shape[d];
        if (!ok)
            return nb_error(NB_ERR_SHAPE, "concat: input %d %s %s does not fit output %s %s along axis %d",
                            i, nb_shape_str(t->ndim, t->shape, a, sizeof a), nb_dtype_name(t->dtype),
                            nb_shape_str(out->ndim, out->shape, b, sizeof b),
                            nb_dtype_name(out->dtype), axis);
        off += t->shape[axis];
    }
    if (off != out->shape[axis])
        return nb_error(NB_ERR_SHAPE, "concat: inputs total %lld along axis %d, output has %lld",
                        (long long)off, axis, (long long)out->shape[axis]);
    off = 0;
    for (int i = 0; i < c->n_in; i++) {
        nb_tensor dst;
        int64_t len = c->in[i]->shape[axis];
        nb_status st = nb_tensor_slice(out, axis, off, off + len, 1, &dst);
        if (st != NB_OK)
            return st;
        copy_views(c->in[i], &dst);
        nb_tensor_release(&dst);
        off += len;
    }
    return NB_OK;
}

/* out = value everywhere, then out[before[d] + i_d] = in[i] on the interior. */
static nb_status move_pad(const nb_tensor *in, nb_tensor *out, const nb_pad_params *pp)
{
    char a[96], b[96];
    int64_t start[NB_MAX_DIMS], step[NB_MAX_DIMS];
    bool ok = in->ndim == out->ndim;
    for (int d = 0; ok && d < in->ndim; d++) {
        ok = pp->before[d] >= 0 && pp->after[d] >= 0 &&
             pp->before[d] + in->shape[d] + pp->after[d] == out->shape[d];
        start[d] = pp->before[d];
        step[d] = 1;
    }
    if (!ok)
        return nb_error(NB_ERR_SHAPE, "pad: input %s with the given padding does not give output %s",
                        nb_shape_str(in->ndim, in->shape, a, sizeof a),
                        nb_shape_str(out->ndim, out->shape, b, sizeof b));
    fill_value(out, pp->value);
    if (nb_tensor_numel(in) == 0)
        return NB_OK;
    nb_tensor dst;
    nb_status st = slice_view(out, start, step, in->shape, &dst);
    if (st != NB_OK)
        return st;
    copy_views(in, &dst);
    nb_tensor_release(&dst);
    return NB_OK;
}

/* out[..., j] = (j == labels[...]) for j in [0, depth). */
static nb_status move_one_hot(const nb_tensor *lab, nb_tensor *out, const nb_one_hot_params *op)
{
    char a[96], b[96];
    int64_t depth = op->depth;
    if (lab->dtype != NB_I32 && lab->dtype != NB_I64)
        return nb_error(NB_ERR_DTYPE, "one_hot: labels must be i32 or i64, got %s",
                        nb_dtype_name(lab->dtype));
    bool ok = depth >= 0 && out->ndim == lab->ndim + 1 && out->shape[lab->ndim] == depth;
    for (int d = 0; ok && d < lab->ndim; d++)
        ok = out->shape[d] == lab->shape[d];
    if (!ok)
        return nb_error(NB_ERR_SHAPE, "one_hot: labels %s with depth %lld do not give output %s",
                        nb_shape_str(lab->ndim, lab->shape, a, sizeof a), (long long)depth,
                        nb_shape_str(out->ndim, out->shape, b, sizeof b));
    size_t es = nb_dtype_size(out->dtype);
    unsigned char one[8];
    encode_value(out->dtype, 1.0, one);
    fill_value(out, 0.0);
    int64_t n = nb_tensor_numel(lab);
    if (n == 0)
        return NB_OK;
    /* Walk the labels in row-major order whatever their strides. */
    copy_plan p;
    int64_t idx[NB_MAX_DIMS], so, unused;
    p.nd = p.nouter = lab->ndim;
    for (int d = 0; d < lab->ndim; d++) {
        p.shape[d] = lab->shape[d];
        p.ss[d] = lab->strides[d];
        p.ds[d] = 0;
    }
    unravel(&p, 0, idx, &so, &unused);
    const char *src = nb_tensor_data(lab);
    char *dst = nb_tensor_data(out);
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        if (lab->dtype == NB_I32) {
            int32_t x;
            memcpy(&x, src + (size_t)so * 4, 4);
            v = x;
        } else {
            memcpy(&v, src + (size_t)so * 8, 8);
        }
        if (v < 0 || v >= depth)
            return nb_error(NB_ERR_ARG, "one_hot: label %lld at position %lld is outside [0, %lld)",
                            (long long)v, (long long)i, (long long)depth);
        memcpy(dst + (size_t)(i * depth + v) * es, one, es);
        advance(&p, idx, &so, &unused);
    }
    return NB_OK;
}

/* RESHAPE, PERMUTE, EXPAND, SLICE, SLICE_GRAD, CONCAT, PAD, ONE_HOT. */
nb_status nb_cpu_move(const nb_kernel_call *c)
{
    const char *name = nb_op_name(c->op);
    if (!c->out || c->n_in < 1 || !c->in || !c->in[0])
        return nb_error(NB_ERR_ARG, "%s: missing input or output", name);
    const nb_tensor *in = c->in[0];
    nb_tensor *out = c->out;
    if (c->op != NB_OP_ONE_HOT && in->dtype != out->dtype)
        return nb_error(NB_ERR_DTYPE, "%s: input dtype %s but output dtype %s", name,
                        nb_dtype_name(in->dtype), nb_dtype_name(out->dtype));
    bool needs_params = c->op != NB_OP_RESHAPE && c->op != NB_OP_EXPAND;
    if (needs_params && !c->params)
        return nb_error(NB_ERR_ARG, "%s: missing parameters", name);
    nb_tensor view;
    nb_status st;
    switch (c->op) {
    case NB_OP_RESHAPE:
        return move_reshape(in, out);
    case NB_OP_PERMUTE:
        st = nb_tensor_permute(in, ((const nb_permute_params *)c->params)->perm, &view);
        if (st != NB_OK)
            return st;
        return copy_and_release(st, &view, out, name);
    case NB_OP_EXPAND:
        st = nb_tensor_expand(in, out->ndim, out->shape, &view);
        if (st != NB_OK)
            return st;
        return copy_and_release(st, &view, out, name);
    case NB_OP_SLICE: {
        const nb_slice_params *sp = c->params;
        if (in->ndim != out->ndim)
            return nb_error(NB_ERR_SHAPE, "slice: input has %d dims, output %d", in->ndim,
                            out->ndim);
        if ((st = check_slice(name, in, sp, out->shape)) != NB_OK)
            return st;
        if ((st = slice_view(in, sp->start, sp->step, out->shape, &view)) != NB_OK)
            return st;
        return copy_and_release(st, &view, out, name);
    }
    case NB_OP_SLICE_GRAD: {
        const nb_slice_params *sp = c->params;
        char a[96], b[96];
        if (in->ndim != out->ndim || !nb_shape_equal(out->ndim, out->shape, out->ndim, sp->in_shape))
            return nb_error(NB_ERR_SHAPE, "slice_grad: output %s does not match in_shape %s",
                            nb_shape_str(out->ndim, out->shape, a, sizeof a),
                            nb_shape_str(out->ndim, sp->in_shape, b, sizeof b));
        if ((st = check_slice(name, out, sp, in->shape)) != NB_OK)
            return st;
        fill_value(out, 0.0);
        if (nb_tensor_numel(in) == 0)
            return NB_OK;
        if ((st = slice_view(out, sp->start, sp->step, in->shape, &view)) != NB_OK)
            return st;
        copy_views(in, &view);
        nb_tensor_release(&view);
        return NB_OK;
    }
    case NB_OP_CONCAT:
        return move_concat(c, ((const nb_axis_params *)c->params)->axis);
    case NB_OP_PAD:
        return move_pad(in, out, c->params);
    case NB_OP_ONE_HOT:
        return move_one_hot(in, out, c->params);
    default:
        return nb_error(NB_ERR_UNSUPPORTED, "move: op %s is not a movement op", name);
    }
}
