/* nb_tensor: a strided view of a reference-counted, device-tagged buffer.
 *
 * An nb_tensor is a small value type: copying the struct does NOT take a
 * reference. Functions that fill an `nb_tensor *out` give the caller one
 * reference, which the caller drops with nb_tensor_release(). Views (reshape,
 * permute, slice, expand, ...) share the buffer and never copy elements.
 *
 * Strides and offset are in elements, not bytes. A stride may be 0 (expand).
 */
#ifndef NB_TENSOR_H
#define NB_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor/dtype.h"
#include "tensor/shape.h"
#include "tensor/status.h"

typedef enum nb_device_type { NB_DEVICE_CPU = 0, NB_DEVICE_CUDA = 1 } nb_device_type;

typedef struct nb_device {
    nb_device_type type;
    int index;
} nb_device;

typedef struct nb_buffer nb_buffer;

/* How a buffer gives its memory back; NULL for memory the buffer does not own. */
typedef void (*nb_buffer_free_fn)(void *data, void *ctx);

struct nb_buffer {
    void *data;
    size_t nbytes;
    nb_device device;
    int refcount;              /* atomic; the buffer is freed when it reaches 0 */
    nb_buffer_free_fn free_fn; /* NULL: memory not owned */
    void *free_ctx;
    /* a read-only private mapping of a file (a model's weights): its pages
     * may be given back (nb_buffer_drop_pages) and are read from the file
     * again when touched; false for every other buffer */
    bool file_pages;
};

typedef struct nb_tensor {
    nb_dtype dtype;
    int ndim;
    int64_t shape[NB_MAX_DIMS];
    int64_t strides[NB_MAX_DIMS]; /* in elements */
    int64_t offset;               /* in elements, from buf->data */
    nb_buffer *buf;               /* NULL for an empty (unset) tensor */
} nb_tensor;

/* ---- buffers ---------------------------------------------------------- */

/* A new CPU buffer of nbytes, 64-byte aligned, contents uninitialised. */
nb_status nb_buffer_alloc(size_t nbytes, nb_buffer **out);
/* A buffer over memory owned by someone else; free_fn(data, ctx) runs at the
 * last release when free_fn is not NULL. */
nb_status nb_buffer_wrap(void *data, size_t nbytes, nb_device dev,
                         nb_buffer_free_fn free_fn, void *ctx, nb_buffer **out);
void nb_buffer_retain(nb_buffer *b);
/* Give back the whole pages inside [p, p + n), bytes of b, when b is
 * file_pages (else nothing): they leave the resident set, the bytes stay
 * readable. For data used once (copied, or transformed into a cache). */
void nb_buffer_drop_pages(const nb_buffer *b, const void *p, size_t n);
void nb_buffer_release(nb_buffer *b);

/* ---- creation --------------------------------------------------------- */

/* Contiguous CPU tensor, contents uninitialised. */
nb_status nb_tensor_empty(nb_tensor *out, nb_dtype dt, int ndim, const int64_t *shape);
nb_status nb_tensor_zeros(nb_tensor *out, nb_dtype dt, int ndim, const int64_t *shape);
/* Contiguous CPU tensor holding a copy of `data` (numel elements of dt). */
nb_status nb_tensor_from_data(nb_tensor *out, nb_dtype dt, int ndim, const int64_t *shape,
                              const void *data);
/* 0-d tensor holding one value converted to dt. */
nb_status nb_tensor_scalar(nb_tensor *out, nb_dtype dt, double value);
/* A tensor over an existing buffer (takes a new reference on buf). */
nb_status nb_tensor_view_of(nb_tensor *out, nb_buffer *buf, nb_dtype dt, int ndim,
                            const int64_t *shape, const int64_t *strides, int64_t offset);

/* Drop the reference held by t and clear it. Safe on an empty tensor. */
void nb_tensor_release(nb_tensor *t);
/* A second reference to the same view (out = t, refcount + 1). */
void nb_tensor_ref(nb_tensor *out, const nb_tensor *t);

/* ---- queries ---------------------------------------------------------- */

int64_t nb_tensor_numel(const nb_tensor *t);
bool nb_tensor_is_contiguous(const nb_tensor *t);
/* Address of element 0 of the view (buf->data + offset * elsize). */
void *nb_tensor_data(const nb_tensor *t);
size_t nb_tensor_nbytes(const nb_tensor *t); /* numel * elsize */
/* Element at a multi-index, converted to double. */
double nb_tensor_get(const nb_tensor *t, const int64_t *index);
void nb_tensor_set(nb_tensor *t, const int64_t *index, double value);
/* Element at flat row-major position i of the logical view, as double. */
double nb_tensor_get_flat(const nb_tensor *t, int64_t i);

/* ---- views: share the buffer, copy no element ------------------------- */

/* New shape with the same numel; one dim may be -1. Fails with NB_ERR_SHAPE if
 * the strides of t do not allow a view (use nb_tensor_contiguous first). */
nb_status nb_tensor_reshape(const nb_tensor *t, int ndim, const int64_t *shape, nb_tensor *out);
/* out dim i = t dim perm[i]. */
nb_status nb_tensor_permute(const nb_tensor *t, const int *perm, nb_tensor *out);
nb_status nb_tensor_transpose(const nb_tensor *t, int d0, int d1, nb_tensor *out);
/* Python-style slice along one dim: start/stop may be negative and are
 * clamped like Python; step >= 1. */
nb_status nb_tensor_slice(const nb_tensor *t, int dim, int64_t start, int64_t stop, int64_t step,
                          nb_tensor *out);
/* Broadcast to shape (NumPy rules; new leading dims allowed); stride 0 where expanded. */
nb_status nb_tensor_expand(const nb_tensor *t, int ndim, const int64_t *shape, nb_tensor *out);
nb_status nb_tensor_squeeze(const nb_tensor *t, int dim, nb_tensor *out);   /* dim must be 1 */
nb_status nb_tensor_unsqueeze(const nb_tensor *t, int dim, nb_tensor *out); /* dim in [-ndim-1, ndim] */

/* ---- copies ----------------------------------------------------------- */

/* A contiguous copy (always copies). */
nb_status nb_tensor_contiguous(const nb_tensor *t, nb_tensor *out);
/* Copy src into dst elementwise; same shape; dtypes may differ (converted). */
nb_status nb_tensor_copy_into(nb_tensor *dst, const nb_tensor *src);
/* Set every element to value (converted to dtype). */
nb_status nb_tensor_fill(nb_tensor *t, double value);

/* ---- comparisons for tests ------------------------------------------- */

/* Largest |a - b| over all elements (shapes must match, any dtypes). */
double nb_tensor_max_abs_diff(const nb_tensor *a, const nb_tensor *b);
/* Largest |x| over all elements. */
double nb_tensor_max_abs(const nb_tensor *a);

/* ---- printing and files ----------------------------------------------- */

/* PyTorch-like printing, then a newline: "tensor([[ 1.0000,  2.0000],\n
 *         [ 3.0000,  4.0000]], dtype=f32)"; dims longer than 6 show their first
 * and last 3 entries around "...". */
void nb_tensor_print(FILE *f, const nb_tensor *t);

/* .npy format v1/v2/v3, little-endian, C order (Fortran order is read by
 * transposing); dtypes <f4 <f8 <i4 <i8 |u1 |b1 and the storage dtypes |i1 <i2
 * <u2 <u4 <u8 <f2 (bf16 has no NumPy dtype: saving one is refused).
 * Malformed files give NB_ERR_FORMAT
 * with a message naming the file and the problem; another descr gives NB_ERR_DTYPE,
 * a missing file NB_ERR_NOT_FOUND, other open/read/write failures NB_ERR_IO. */
nb_status nb_npy_load(const char *path, nb_tensor *out);
nb_status nb_npy_save(const char *path, const nb_tensor *t); /* writes via temp + rename */

#endif
