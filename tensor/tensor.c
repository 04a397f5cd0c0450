/* nb_tensor: reference-counted buffers, creation, element access, views and copies. */
#include "tensor/tensor.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tensor/half.h"
#include "tensor/iter.h"

#define NB_ALIGN 64

/* One element of any dtype: the inline loops of tensor/iter.h for the
 * compute types, tensor/dtype.c's for the storage types. */
static inline double load_f64(const void *p, nb_dtype t)
{
    return nb_dtype_is_storage(t) ? nb_dtype_load_f64(p, t) : nb_load_f64(p, t);
}

static inline void store_f64(void *p, nb_dtype t, double v)
{
    if (nb_dtype_is_storage(t))
        nb_dtype_store_f64(p, t, v);
    else
        nb_store_f64(p, t, v);
}

static inline int64_t load_i64(const void *p, nb_dtype t)
{
    return nb_dtype_is_storage(t) ? nb_dtype_load_i64(p, t) : nb_load_i64(p, t);
}

static inline void store_i64(void *p, nb_dtype t, int64_t v)
{
    if (nb_dtype_is_storage(t))
        nb_dtype_store_i64(p, t, v);
    else
        nb_store_i64(p, t, v);
}

/* ---- buffers ---------------------------------------------------------- */

static void free_aligned(void *data, void *ctx)
{
    (void)ctx;
    free(data);
}

/* A CPU buffer of nbytes from aligned_alloc, rounded up to a multiple of 64
 * (so that even 0 bytes gives a valid, unique pointer). */
nb_status nb_buffer_alloc(size_t nbytes, nb_buffer **out)
{
    *out = NULL;
    if (nbytes > SIZE_MAX - NB_ALIGN)
        return nb_error(NB_ERR_ALLOC, "buffer_alloc: %zu bytes is too large", nbytes);
    size_t rounded = (nbytes + NB_ALIGN - 1) / NB_ALIGN * NB_ALIGN;
    if (rounded == 0)
        rounded = NB_ALIGN;
    void *data = aligned_alloc(NB_ALIGN, rounded);
    if (!data)
        return nb_error(NB_ERR_ALLOC, "buffer_alloc: out of memory for %zu bytes", nbytes);
    nb_device cpu = {NB_DEVICE_CPU, 0};
    nb_status s = nb_buffer_wrap(data, nbytes, cpu, free_aligned, NULL, out);
    if (s != NB_OK)
        free(data);
    return s;
}

nb_status nb_buffer_wrap(void *data, size_t nbytes, nb_device dev,
                         nb_buffer_free_fn free_fn, void *ctx, nb_buffer **out)
{
    *out = NULL;
    nb_buffer *b = malloc(sizeof *b);
    if (!b)
        return nb_error(NB_ERR_ALLOC, "buffer_wrap: out of memory");
    b->data = data;
    b->nbytes = nbytes;
    b->device = dev;
    b->refcount = 1;
    b->free_fn = free_fn;
    b->free_ctx = ctx;
    b->file_pages = false;
    *out = b;
    return NB_OK;
}

void nb_buffer_drop_pages(const nb_buffer *b, const void *p, size_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    if (!b || !b->file_pages || page <= 0)
        return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t e = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
    uintptr_t lo = (uintptr_t)b->data, hi = lo + b->nbytes;
    if (a < lo || e > hi) /* not b's bytes: leave them */
        return;
    if (e > a)
        madvise((void *)a, e - a, MADV_DONTNEED);
}

void nb_buffer_retain(nb_buffer *b)
{
    if (b)
        __atomic_fetch_add(&b->refcount, 1, __ATOMIC_RELAXED);
}

/* Drop one reference; the last one gives the memory back and frees b. */
void nb_buffer_release(nb_buffer *b)
{
    if (!b)
        return;
    if (__atomic_sub_fetch(&b->refcount, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (b->free_fn)
        b->free_fn(b->data, b->free_ctx);
    free(b);
}

/* ---- creation --------------------------------------------------------- */

/* Check dtype, rank and dims of a new tensor; byte count into *nbytes. */
static nb_status check_new_shape(const char *who, nb_dtype dt, int ndim, const int64_t *shape,
                                 size_t *nbytes)
{
    if (!nb_dtype_valid((int)dt))
        return nb_error(NB_ERR_DTYPE, "%s: invalid dtype %d", who, (int)dt);
    if (ndim < 0 || ndim > NB_MAX_DIMS)
        return nb_error(NB_ERR_SHAPE, "%s: %d dims (at most %d)", who, ndim, NB_MAX_DIMS);
    if (ndim > 0 && !shape)
        return nb_error(NB_ERR_ARG, "%s: shape is NULL", who);
    size_t total = nb_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        char sb[200];
        if (shape[i] < 0)
            return nb_error(NB_ERR_SHAPE, "%s: negative dim in shape %s", who,
                            nb_shape_str(ndim, shape, sb, sizeof sb));
        if (shape[i] > 0 && total > SIZE_MAX / (uint64_t)shape[i])
            return nb_error(NB_ERR_ALLOC, "%s: shape %s is too large", who,
                            nb_shape_str(ndim, shape, sb, sizeof sb));
        total *= (size_t)shape[i];
    }
    *nbytes = total;
    return NB_OK;
}

nb_status nb_tensor_empty(nb_tensor *out, nb_dtype dt, int ndim, const int64_t *shape)
{
    memset(out, 0, sizeof *out);
    size_t nbytes;
    nb_status s = check_new_shape("tensor_empty", dt, ndim, shape, &nbytes);
    if (s != NB_OK)
        return s;
    nb_buffer *b;
    if ((s = nb_buffer_alloc(nbytes, &b)) != NB_OK)
        return s;
    out->dtype = dt;
    out->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        out->shape[i] = shape[i];
    nb_shape_strides(ndim, out->shape, out->strides);
    out->buf = b;
    return NB_OK;
}

nb_status nb_tensor_zeros(nb_tensor *out, nb_dtype dt, int ndim, const int64_t *shape)
{
    nb_status s = nb_tensor_empty(out, dt, ndim, shape);
    if (s == NB_OK)
        memset(out->buf->data, 0, out->buf->nbytes);
    return s;
}

nb_status nb_tensor_from_data(nb_tensor *out, nb_dtype dt, int ndim, const int64_t *shape,
                              const void *data)
{
    nb_status s = nb_tensor_empty(out, dt, ndim, shape);
    if (s != NB_OK)
        return s;
    if (out->buf->nbytes > 0) {
        if (!data) {
            nb_tensor_release(out);
            return nb_error(NB_ERR_ARG, "tensor_from_data: data is NULL");
        }
        memcpy(out->buf->data, data, out->buf->nbytes);
    }
    return NB_OK;
}

nb_status nb_tensor_scalar(nb_tensor *out, nb_dtype dt, double value)
{
    nb_status s = nb_tensor_empty(out, dt, 0, NULL);
    if (s == NB_OK)
        store_f64(out->buf->data, dt, value);
    return s;
}

/* A view over buf; checks that every element it can address lies inside it. */
nb_status nb_tensor_view_of(nb_tensor *out, nb_buffer *buf, nb_dtype dt, int ndim,
                            const int64_t *shape, const int64_t *strides, int64_t offset)
{
    memset(out, 0, sizeof *out);
    size_t nbytes;
    nb_status s = check_new_shape("tensor_view_of", dt, ndim, shape, &nbytes);
    if (s != NB_OK)
        return s;
    if (!buf)
        return nb_error(NB_ERR_ARG, "tensor_view_of: buffer is NULL");
    int64_t st[NB_MAX_DIMS];
    if (strides)
        memcpy(st, strides, sizeof(int64_t) * (size_t)ndim);
    else
        nb_shape_strides(ndim, shape, st);
    if (nbytes > 0) {
        /* lowest and highest reachable element offsets, in double so that
         * absurd strides cannot overflow */
        double lo = (double)offset, hi = (double)offset;
        for (int i = 0; i < ndim; i++) {
            double span = (double)st[i] * (double)(shape[i] - 1);
            if (span < 0)
                lo += span;
            else
                hi += span;
        }
        double cap = (double)(buf->nbytes / nb_dtype_size(dt));
        if (lo < 0 || hi + 1 > cap) {
            char sb[200];
            return nb_error(NB_ERR_SHAPE,
                            "tensor_view_of: view %s at offset %lld runs outside a buffer of "
                            "%zu bytes", nb_shape_str(ndim, shape, sb, sizeof sb),
                            (long long)offset, buf->nbytes);
        }
    }
    out->dtype = dt;
    out->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        out->shape[i] = shape[i];
        out->strides[i] = st[i];
    }
    out->offset = offset;
    out->buf = buf;
    nb_buffer_retain(buf);
    return NB_OK;
}

void nb_tensor_release(nb_tensor *t)
{
    if (!t)
        return;
    nb_buffer_release(t->buf);
    memset(t, 0, sizeof *t);
}

void nb_tensor_ref(nb_tensor *out, const nb_tensor *t)
{
    nb_tensor tmp = *t;
    nb_buffer_retain(tmp.buf);
    *out = tmp;
}

/* ---- queries ---------------------------------------------------------- */

int64_t nb_tensor_numel(const nb_tensor *t)
{
    return nb_shape_numel(t->ndim, t->shape);
}

/* Row-major contiguous, ignoring the strides of size-1 dims (as PyTorch does). */
bool nb_tensor_is_contiguous(const nb_tensor *t)
{
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 0)
            return true;
        if (t->shape[i] != 1 && t->strides[i] != expect)
            return false;
        expect *= t->shape[i];
    }
    return true;
}

void *nb_tensor_data(const nb_tensor *t)
{
    if (!t->buf)
        return NULL;
    return (char *)t->buf->data + t->offset * (int64_t)nb_dtype_size(t->dtype);
}

size_t nb_tensor_nbytes(const nb_tensor *t)
{
    return (size_t)nb_tensor_numel(t) * nb_dtype_size(t->dtype);
}

/* Address of the element at a multi-index, or NULL (with an error) if the
 * index is out of range or the tensor is not readable on the CPU. */
static void *element_ptr(const nb_tensor *t, const int64_t *index, const char *who)
{
    if (!t->buf || t->buf->device.type != NB_DEVICE_CPU) {
        nb_error(NB_ERR_ARG, "%s: tensor is empty or not on the CPU", who);
        return NULL;
    }
    int64_t off = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        if (index[i] < 0 || index[i] >= t->shape[i]) {
            char sb[200];
            nb_error(NB_ERR_ARG, "%s: index %lld out of range for dim %d of shape %s", who,
                     (long long)index[i], i, nb_shape_str(t->ndim, t->shape, sb, sizeof sb));
            return NULL;
        }
        off += index[i] * t->strides[i];
    }
    return (char *)t->buf->data + off * (int64_t)nb_dtype_size(t->dtype);
}

/* Element at index as a double; NaN (and an error message) if out of range. */
double nb_tensor_get(const nb_tensor *t, const int64_t *index)
{
    const void *p = element_ptr(t, index, "tensor_get");
    return p ? load_f64(p, t->dtype) : NAN;
}

/* Store value at index (converted); does nothing but set an error if out of range. */
void nb_tensor_set(nb_tensor *t, const int64_t *index, double value)
{
    void *p = element_ptr(t, index, "tensor_set");
    if (p)
        store_f64(p, t->dtype, value);
}

/* Element at row-major position i of the logical shape. */
double nb_tensor_get_flat(const nb_tensor *t, int64_t i)
{
    int64_t idx[NB_MAX_DIMS];
    int64_t n = nb_tensor_numel(t);
    if (i < 0 || i >= n) {
        nb_error(NB_ERR_ARG, "tensor_get_flat: position %lld out of range for %lld elements",
                 (long long)i, (long long)n);
        return NAN;
    }
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = i % t->shape[d];
        i /= t->shape[d];
    }
    return nb_tensor_get(t, idx);
}

/* ---- views ------------------------------------------------------------ */

/* out = t with a new shape and strides, sharing (and retaining) the buffer. */
static void make_view(const nb_tensor *t, int ndim, const int64_t *shape,
                      const int64_t *strides, int64_t offset, nb_tensor *out)
{
    nb_tensor v = *t;
    v.ndim = ndim;
    for (int i = 0; i < NB_MAX_DIMS; i++) {
        v.shape[i] = i < ndim ? shape[i] : 0;
        v.strides[i] = i < ndim ? strides[i] : 0;
    }
    v.offset = offset;
    nb_buffer_retain(v.buf);
    *out = v;
}

/* Resolve a -1 in a requested shape against numel; checks the counts match. */
static nb_status infer_shape(const nb_tensor *t, int ndim, const int64_t *shape, int64_t *res)
{
    char sa[200], sb[200];
    if (ndim < 0 || ndim > NB_MAX_DIMS)
        return nb_error(NB_ERR_SHAPE, "reshape: %d dims (at most %d)", ndim, NB_MAX_DIMS);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        res[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0)
                return nb_error(NB_ERR_SHAPE, "reshape %s -> %s: more than one -1",
                                nb_shape_str(t->ndim, t->shape, sa, sizeof sa),
                                nb_shape_str(ndim, shape, sb, sizeof sb));
            infer = i;
            continue;
        }
        if (shape[i] < 0)
            return nb_error(NB_ERR_SHAPE, "reshape %s -> %s: bad dim %lld",
                            nb_shape_str(t->ndim, t->shape, sa, sizeof sa),
                            nb_shape_str(ndim, shape, sb, sizeof sb), (long long)shape[i]);
        known *= shape[i];
    }
    int64_t n = nb_tensor_numel(t);
    if (infer >= 0) {
        if (known == 0 || n % known != 0)
            return nb_error(NB_ERR_SHAPE, "reshape %s -> %s: cannot infer the -1 dim",
                            nb_shape_str(t->ndim, t->shape, sa, sizeof sa),
                            nb_shape_str(ndim, shape, sb, sizeof sb));
        res[infer] = n / known;
        known = n;
    }
    if (known != n)
        return nb_error(NB_ERR_SHAPE, "reshape %s -> %s: %lld elements vs %lld",
                        nb_shape_str(t->ndim, t->shape, sa, sizeof sa),
                        nb_shape_str(ndim, shape, sb, sizeof sb), (long long)n,
                        (long long)known);
    return NB_OK;
}

/* Strides for viewing t as shape (same numel), or false if no view exists.
 * The old dims are cut into chunks that are each contiguous in memory (a dim
 * whose stride equals the extent of the dims after it joins their chunk).
 * The new dims must then fall into those chunks exactly, walking both shapes
 * from the right; size-1 dims fit anywhere. */
static bool view_strides(const nb_tensor *t, int ndim, const int64_t *shape, int64_t *st)
{
    if (nb_tensor_numel(t) == 0 || t->ndim == 0) {
        nb_shape_strides(ndim, shape, st);
        return true;
    }
    int nd = ndim - 1;
    int64_t base = t->strides[t->ndim - 1], old_n = 1, new_n = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        old_n *= t->shape[d];
        bool chunk_ends = d == 0 || (t->shape[d - 1] != 1 &&
                                     t->strides[d - 1] != old_n * base);
        if (!chunk_ends)
            continue;
        while (nd >= 0 && (new_n < old_n || shape[nd] == 1)) {
            st[nd] = new_n * base;
            new_n *= shape[nd];
            nd--;
        }
        if (new_n != old_n)
            return false;
        if (d > 0) {
            base = t->strides[d - 1];
            old_n = new_n = 1;
        }
    }
    return nd == -1;
}

nb_status nb_tensor_reshape(const nb_tensor *t, int ndim, const int64_t *shape, nb_tensor *out)
{
    int64_t res[NB_MAX_DIMS], st[NB_MAX_DIMS];
    nb_status s = infer_shape(t, ndim, shape, res);
    if (s != NB_OK)
        return s;
    if (!view_strides(t, ndim, res, st)) {
        char sa[200], sb[200], sc[200];
        return nb_error(NB_ERR_SHAPE,
                        "reshape %s -> %s: strides %s do not allow a view; a copy is needed "
                        "(nb_tensor_contiguous first)",
                        nb_shape_str(t->ndim, t->shape, sa, sizeof sa),
                        nb_shape_str(ndim, res, sb, sizeof sb),
                        nb_shape_str(t->ndim, t->strides, sc, sizeof sc));
    }
    make_view(t, ndim, res, st, t->offset, out);
    return NB_OK;
}

/* Accepts negative axes; each axis must appear exactly once. */
nb_status nb_tensor_permute(const nb_tensor *t, const int *perm, nb_tensor *out)
{
    int64_t sh[NB_MAX_DIMS], st[NB_MAX_DIMS];
    bool seen[NB_MAX_DIMS] = {false};
    for (int i = 0; i < t->ndim; i++) {
        int a = nb_axis_norm(perm[i], t->ndim);
        if (a < 0)
            return nb_error(NB_ERR_ARG, "permute: axis %d out of range for %d dims", perm[i],
                            t->ndim);
        if (seen[a])
            return nb_error(NB_ERR_ARG, "permute: axis %d appears twice", perm[i]);
        seen[a] = true;
        sh[i] = t->shape[a];
        st[i] = t->strides[a];
    }
    make_view(t, t->ndim, sh, st, t->offset, out);
    return NB_OK;
}

nb_status nb_tensor_transpose(const nb_tensor *t, int d0, int d1, nb_tensor *out)
{
    int a = nb_axis_norm(d0, t->ndim), b = nb_axis_norm(d1, t->ndim);
    if (a < 0 || b < 0)
        return nb_error(NB_ERR_ARG, "transpose: dims %d, %d out of range for %d dims", d0, d1,
                        t->ndim);
    int perm[NB_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++)
        perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return nb_tensor_permute(t, perm, out);
}

/* Python's rule for a slice bound with step >= 1: negative counts from the
 * end, then clamp into [0, len]. */
static int64_t clamp_bound(int64_t v, int64_t len)
{
    if (v < 0)
        v = v < -len ? 0 : v + len;
    return v > len ? len : v;
}

nb_status nb_tensor_slice(const nb_tensor *t, int dim, int64_t start, int64_t stop, int64_t step,
                          nb_tensor *out)
{
    int d = nb_axis_norm(dim, t->ndim);
    if (d < 0)
        return nb_error(NB_ERR_ARG, "slice: dim %d out of range for %d dims", dim, t->ndim);
    if (step < 1)
        return nb_error(NB_ERR_ARG, "slice: step %lld must be >= 1", (long long)step);
    int64_t len = t->shape[d];
    int64_t a = clamp_bound(start, len), b = clamp_bound(stop, len);
    int64_t count = b > a ? (b - a - 1) / step + 1 : 0;
    int64_t sh[NB_MAX_DIMS], st[NB_MAX_DIMS];
    memcpy(sh, t->shape, sizeof sh);
    memcpy(st, t->strides, sizeof st);
    sh[d] = count;
    st[d] = t->strides[d] * step;
    int64_t off = t->offset + (count > 0 ? a * t->strides[d] : 0);
    make_view(t, t->ndim, sh, st, off, out);
    return NB_OK;
}

/* NumPy broadcasting of t to shape: dims align on the right, a dim of 1 is
 * repeated with stride 0, new leading dims get stride 0. As in PyTorch, -1 in
 * the target keeps an existing dim. */
nb_status nb_tensor_expand(const nb_tensor *t, int ndim, const int64_t *shape, nb_tensor *out)
{
    char sa[200], sb[200];
    if (ndim < t->ndim || ndim > NB_MAX_DIMS)
        return nb_error(NB_ERR_SHAPE, "expand %s to %d dims: need between %d and %d dims",
                        nb_shape_str(t->ndim, t->shape, sa, sizeof sa), ndim, t->ndim,
                        NB_MAX_DIMS);
    int64_t sh[NB_MAX_DIMS], st[NB_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        int64_t want = shape[i];
        if (j >= 0 && (want == t->shape[j] || want == -1)) {
            sh[i] = t->shape[j];
            st[i] = t->strides[j];
        } else if (want >= 0 && (j < 0 || t->shape[j] == 1)) {
            sh[i] = want;
            st[i] = 0;
        } else {
            return nb_error(NB_ERR_SHAPE, "expand %s to %s: dim %d cannot broadcast",
                            nb_shape_str(t->ndim, t->shape, sa, sizeof sa),
                            nb_shape_str(ndim, shape, sb, sizeof sb), i);
        }
    }
    make_view(t, ndim, sh, st, t->offset, out);
    return NB_OK;
}

nb_status nb_tensor_squeeze(const nb_tensor *t, int dim, nb_tensor *out)
{
    int d = nb_axis_norm(dim, t->ndim);
    if (d < 0)
        return nb_error(NB_ERR_ARG, "squeeze: dim %d out of range for %d dims", dim, t->ndim);
    if (t->shape[d] != 1) {
        char sa[200];
        return nb_error(NB_ERR_SHAPE, "squeeze: dim %d of %s is not 1", dim,
                        nb_shape_str(t->ndim, t->shape, sa, sizeof sa));
    }
    int64_t sh[NB_MAX_DIMS], st[NB_MAX_DIMS];
    for (int i = 0, k = 0; i < t->ndim; i++) {
        if (i == d)
            continue;
        sh[k] = t->shape[i];
        st[k++] = t->strides[i];
    }
    make_view(t, t->ndim - 1, sh, st, t->offset, out);
    return NB_OK;
}

/* Insert a size-1 dim at position dim of the result; its stride is chosen as
 * PyTorch does (extent of the dim it precedes, 1 at the end). */
nb_status nb_tensor_unsqueeze(const nb_tensor *t, int dim, nb_tensor *out)
{
    if (t->ndim >= NB_MAX_DIMS)
        return nb_error(NB_ERR_SHAPE, "unsqueeze: tensor already has %d dims", NB_MAX_DIMS);
    int d = nb_axis_norm(dim, t->ndim + 1);
    if (d < 0)
        return nb_error(NB_ERR_ARG, "unsqueeze: dim %d out of range [%d, %d]", dim,
                        -t->ndim - 1, t->ndim);
    int64_t sh[NB_MAX_DIMS], st[NB_MAX_DIMS];
    for (int i = 0, k = 0; i <= t->ndim; i++) {
        if (i == d) {
            sh[i] = 1;
            st[i] = d < t->ndim ? t->shape[d] * t->strides[d] : 1;
            continue;
        }
        sh[i] = t->shape[k];
        st[i] = t->strides[k++];
    }
    make_view(t, t->ndim + 1, sh, st, t->offset, out);
    return NB_OK;
}

/* ---- copies ----------------------------------------------------------- */

static bool on_cpu(const nb_tensor *t)
{
    return t->buf && t->buf->device.type == NB_DEVICE_CPU;
}

/* Copy n elements of z bytes between byte-strided locations (constant-size
 * memcpy compiles to plain moves). */
static void move_row(char *d, int64_t ds, const char *s, int64_t ss, int64_t n, size_t z)
{
    switch (z) {
    case 8:
        for (int64_t k = 0; k < n; k++)
            memcpy(d + k * ds, s + k * ss, 8);
        break;
    case 4:
        for (int64_t k = 0; k < n; k++)
            memcpy(d + k * ds, s + k * ss, 4);
        break;
    case 2:
        for (int64_t k = 0; k < n; k++)
            memcpy(d + k * ds, s + k * ss, 2);
        break;
    default:
        for (int64_t k = 0; k < n; k++)
            d[k * ds] = s[k * ss];
        break;
    }
}

/* Float types: f32, f64, f16, bf16. */
static bool is_fp(nb_dtype t)
{
    return nb_dtype_is_float(t) || nb_dtype_is_half(t);
}

/* The integer v (u64's bit pattern when is_u64) to the float type dt at p,
 * rounded once from the integer (not through double, which could round
 * twice). */
static void int_to_fp(void *p, nb_dtype dt, int64_t v, bool is_u64)
{
    uint64_t u = (uint64_t)v;
    switch (dt) {
    case NB_F32: { float f = is_u64 ? (float)u : (float)v; memcpy(p, &f, 4); break; }
    case NB_F64: { double f = is_u64 ? (double)u : (double)v; memcpy(p, &f, 8); break; }
    case NB_F16: { uint16_t h = is_u64 ? nb_u64_to_f16(u) : nb_i64_to_f16(v); memcpy(p, &h, 2); break; }
    default: { uint16_t h = is_u64 ? nb_u64_to_bf16(u) : nb_i64_to_bf16(v); memcpy(p, &h, 2); break; }
    }
}

/* Copy one row of n elements between strided locations, converting dtypes.
 * From a float type (f16/bf16 included) through double (exact), rounded or
 * truncated once into the destination; from an integer to a float type
 * rounded once from the integer; integer to integer exact, wrapping like a
 * C cast. */
static void copy_row(char *d, nb_dtype dd, int64_t ds, const char *s, nb_dtype sd, int64_t ss,
                     int64_t n)
{
    size_t dz = nb_dtype_size(dd), sz = nb_dtype_size(sd);
    ds *= (int64_t)dz;
    ss *= (int64_t)sz;
    if (dd == sd && ds == (int64_t)dz && ss == (int64_t)sz) {
        memmove(d, s, (size_t)n * dz);
    } else if (dd == sd || (dz == 1 && sz == 1 && dd != NB_BOOL)) {
        move_row(d, ds, s, ss, n, dz);
    } else if (dd == NB_F32 && sd == NB_F64) {
        for (int64_t k = 0; k < n; k++)
            *(float *)(d + k * ds) = (float)*(const double *)(s + k * ss);
    } else if (dd == NB_F64 && sd == NB_F32) {
        for (int64_t k = 0; k < n; k++)
            *(double *)(d + k * ds) = *(const float *)(s + k * ss);
    } else if (is_fp(sd)) {
        for (int64_t k = 0; k < n; k++)
            store_f64(d + k * ds, dd, load_f64(s + k * ss, sd));
    } else if (is_fp(dd)) {
        for (int64_t k = 0; k < n; k++)
            int_to_fp(d + k * ds, dd, load_i64(s + k * ss, sd), sd == NB_U64);
    } else {
        for (int64_t k = 0; k < n; k++)
            store_i64(d + k * ds, dd, load_i64(s + k * ss, sd));
    }
}

/* dst[i] = convert(src[i]) for every index; a contiguous same-dtype pair is
 * one memmove. */
nb_status nb_tensor_copy_into(nb_tensor *dst, const nb_tensor *src)
{
    if (!on_cpu(dst) || !on_cpu(src))
        return nb_error(NB_ERR_UNSUPPORTED, "copy_into: both tensors must be set and on the CPU");
    if (!nb_shape_equal(dst->ndim, dst->shape, src->ndim, src->shape)) {
        char sa[200], sb[200];
        return nb_error(NB_ERR_SHAPE, "copy_into: destination %s, source %s",
                        nb_shape_str(dst->ndim, dst->shape, sa, sizeof sa),
                        nb_shape_str(src->ndim, src->shape, sb, sizeof sb));
    }
    char *d = dst->buf->data, *s = src->buf->data;
    size_t dz = nb_dtype_size(dst->dtype), sz = nb_dtype_size(src->dtype);
    if (dst->dtype == src->dtype && nb_tensor_is_contiguous(dst) && nb_tensor_is_contiguous(src)) {
        memmove(d + dst->offset * (int64_t)dz, s + src->offset * (int64_t)sz,
                nb_tensor_nbytes(dst));
        return NB_OK;
    }
    const int64_t *strides[2] = {dst->strides, src->strides};
    int64_t offs[2] = {dst->offset, src->offset};
    nb_iter it;
    for (nb_iter_init(&it, dst->ndim, dst->shape, 2, strides, offs); !it.done; nb_iter_next(&it))
        copy_row(d + it.off[0] * (int64_t)dz, dst->dtype, it.inner[0],
                 s + it.off[1] * (int64_t)sz, src->dtype, it.inner[1], it.n);
    return NB_OK;
}

nb_status nb_tensor_contiguous(const nb_tensor *t, nb_tensor *out)
{
    nb_tensor tmp;
    nb_status s = nb_tensor_empty(&tmp, t->dtype, t->ndim, t->shape);
    if (s != NB_OK) {
        memset(out, 0, sizeof *out);
        return s;
    }
    if ((s = nb_tensor_copy_into(&tmp, t)) != NB_OK) {
        nb_tensor_release(&tmp);
        memset(out, 0, sizeof *out);
        return s;
    }
    *out = tmp;
    return NB_OK;
}

/* Every element = value converted to the dtype (one conversion, then byte copies). */
nb_status nb_tensor_fill(nb_tensor *t, double value)
{
    if (!on_cpu(t))
        return nb_error(NB_ERR_UNSUPPORTED, "tensor_fill: tensor must be set and on the CPU");
    unsigned char v[8];
    size_t z = nb_dtype_size(t->dtype);
    store_f64(v, t->dtype, value);
    char *base = t->buf->data;
    const int64_t *strides[1] = {t->strides};
    int64_t offs[1] = {t->offset};
    nb_iter it;
    for (nb_iter_init(&it, t->ndim, t->shape, 1, strides, offs); !it.done; nb_iter_next(&it)) {
        char *p = base + it.off[0] * (int64_t)z;
        int64_t st = it.inner[0];
        if (z == 1 && st == 1) {
            memset(p, v[0], (size_t)it.n);
        } else if (z == 2) {
            uint16_t w;
            memcpy(&w, v, 2);
            for (int64_t k = 0; k < it.n; k++)
                ((uint16_t *)p)[k * st] = w;
        } else if (z == 4) {
            uint32_t w;
            memcpy(&w, v, 4);
            for (int64_t k = 0; k < it.n; k++)
                ((uint32_t *)p)[k * st] = w;
        } else if (z == 8) {
            uint64_t w;
            memcpy(&w, v, 8);
            for (int64_t k = 0; k < it.n; k++)
                ((uint64_t *)p)[k * st] = w;
        } else {
            for (int64_t k = 0; k < it.n; k++)
                p[k * st] = (char)v[0];
        }
    }
    return NB_OK;
}

/* ---- comparisons ------------------------------------------------------ */

/* max |a - b| over all elements, b NULL meaning zeros; NaN as soon as one
 * difference is NaN (equal infinities differ by 0). */
static double max_abs_impl(const nb_tensor *a, const nb_tensor *b)
{
    const nb_tensor *ops[2] = {a, b ? b : a};
    const int64_t *strides[2] = {a->strides, ops[1]->strides};
    int64_t offs[2] = {a->offset, ops[1]->offset};
    double m = 0.0;
    nb_iter it;
    for (nb_iter_init(&it, a->ndim, a->shape, 2, strides, offs); !it.done; nb_iter_next(&it)) {
        for (int64_t k = 0; k < it.n; k++) {
            double v[2];
            for (int o = 0; o < 2; o++) {
                const char *base = ops[o]->buf->data;
                int64_t z = (int64_t)nb_dtype_size(ops[o]->dtype);
                v[o] = load_f64(base + (it.off[o] + k * it.inner[o]) * z, ops[o]->dtype);
            }
            double d = b ? (v[0] == v[1] ? 0.0 : fabs(v[0] - v[1])) : fabs(v[0]);
            if (isnan(d))
                return NAN;
            m = d > m ? d : m;
        }
    }
    return m;
}

/* +inf (and an error) on a shape mismatch or an unreadable tensor. */
double nb_tensor_max_abs_diff(const nb_tensor *a, const nb_tensor *b)
{
    if (!on_cpu(a) || !on_cpu(b) || !nb_shape_equal(a->ndim, a->shape, b->ndim, b->shape)) {
        nb_error(NB_ERR_SHAPE, "max_abs_diff: tensors unset, not on the CPU or shapes differ");
        return INFINITY;
    }
    return max_abs_impl(a, b);
}

/* NaN (and an error) for an unreadable tensor; 0 for an empty one. */
double nb_tensor_max_abs(const nb_tensor *a)
{
    if (!on_cpu(a)) {
        nb_error(NB_ERR_ARG, "max_abs: tensor unset or not on the CPU");
        return NAN;
    }
    return max_abs_impl(a, NULL);
}
