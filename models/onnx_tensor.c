/* ONNX TensorProto -> nb_tensor, for initializers, Constant values and the
 * .pb files of ONNX test data.
 *
 * Every size is checked before anything is allocated: at most NB_MAX_DIMS
 * dims, none negative, their product and byte count without overflow, and
 * the data present (raw_data, the typed repeated field, or an external file)
 * exactly as long as the dims say. raw_data is little-endian, as on every
 * machine nabla runs on. Large raw data that the importer left in the mapped
 * model file, and external data (a file beside the model, mapped), become
 * views without a copy when aligned for the element type. Every ONNX type
 * nabla has a dtype for is kept as it is: INT8, INT16, UINT16, UINT32,
 * UINT64, FLOAT16 and BFLOAT16 become the storage dtypes (the importer
 * computes with them in i64 / f32, onnx_run.c). In the typed fields, as
 * onnx.proto says, 8- and 16-bit types (float16 and bfloat16 as their bits)
 * are one int32_data value each, UINT32 and UINT64 are in uint64_data.
 * Strings and other dtypes nabla lacks are NB_ERR_UNSUPPORTED, naming the
 * tensor.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/onnx.h"
#include "models/onnx_model.h"
#include "tensor/fileio.h"

#define MAX_TENSOR_BYTES ((int64_t)1 << 40) /* refuse anything larger before allocating */
#define MAX_PB_FILE ((off_t)1 << 31)        /* a protobuf message is at most 2 GiB */

/* Bytes per element of an ONNX data type as stored in raw_data; 0 if unknown. */
static size_t onnx_elem_size(int32_t t)
{
    switch (t) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: return 4;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return 1;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: return 2;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__COMPLEX64: return 8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__COMPLEX128: return 16;
    default: return 0;
    }
}

bool onnx_storage_dtype(int32_t t, nb_dtype *out)
{
    switch (t) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: *out = NB_I8; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: *out = NB_I16; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: *out = NB_U16; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: *out = NB_U32; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: *out = NB_U64; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: *out = NB_F16; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: *out = NB_BF16; return true;
    default: return onnx_dtype(t, out);
    }
}

int32_t onnx_type_of_dtype(nb_dtype dt)
{
    switch (dt) {
    case NB_F32: return ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    case NB_F64: return ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    case NB_I32: return ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    case NB_I64: return ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    case NB_U8: return ONNX__TENSOR_PROTO__DATA_TYPE__UINT8;
    case NB_BOOL: return ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
    case NB_I8: return ONNX__TENSOR_PROTO__DATA_TYPE__INT8;
    case NB_I16: return ONNX__TENSOR_PROTO__DATA_TYPE__INT16;
    case NB_U16: return ONNX__TENSOR_PROTO__DATA_TYPE__UINT16;
    case NB_U32: return ONNX__TENSOR_PROTO__DATA_TYPE__UINT32;
    case NB_U64: return ONNX__TENSOR_PROTO__DATA_TYPE__UINT64;
    case NB_F16: return ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
    case NB_BF16: return ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16;
    default: return ONNX__TENSOR_PROTO__DATA_TYPE__UNDEFINED;
    }
}

static void unmap_fn(void *data, void *ctx) { munmap(data, (size_t)(uintptr_t)ctx); }

/* ---- external data -------------------------------------------------------- */

typedef struct ext_ref {
    char location[PATH_MAX];
    int64_t offset, length; /* length -1: not given */
} ext_ref;

static nb_status parse_external(const Onnx__TensorProto *t, const char *what, ext_ref *e)
{
    e->location[0] = '\0';
    e->offset = 0;
    e->length = -1;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const Onnx__StringStringEntryProto *kv = t->external_data[i];
        if (!kv || !kv->key)
            continue;
        const char *v = kv->value ? kv->value : "";
        if (strcmp(kv->key, "location") == 0) {
            if (strlen(v) >= sizeof(e->location))
                return nb_error(NB_ERR_FORMAT, "%s: external data location is too long", what);
            strcpy(e->location, v);
        } else if (strcmp(kv->key, "offset") == 0 || strcmp(kv->key, "length") == 0) {
            char *end;
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (!v[0] || *end || errno || x < 0)
                return nb_error(NB_ERR_FORMAT, "%s: external data %s '%s' is not a size", what,
                                kv->key, v);
            if (kv->key[0] == 'o')
                e->offset = x;
            else
                e->length = x;
        }
    }
    if (!e->location[0])
        return nb_error(NB_ERR_FORMAT, "%s: external data without a location", what);
    /* relative, inside the model's directory */
    if (e->location[0] == '/')
        return nb_error(NB_ERR_FORMAT, "%s: external data location '%s' is an absolute path",
                        what, e->location);
    for (const char *p = e->location; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return nb_error(NB_ERR_FORMAT,
                            "%s: external data location '%s' leaves the model's directory", what,
                            e->location);
        p += n + (slash ? 1 : 0);
    }
    return NB_OK;
}

/* Map `need` bytes of the external file at e->offset into *buf (a buffer that
 * unmaps itself), *base the page-aligned start, *skip the bytes before the
 * data within the mapping. */
static nb_status map_external(const char *dir, const ext_ref *e, int64_t need, const char *what,
                              nb_buffer **buf, size_t *skip)
{
    *buf = NULL;
    char path[PATH_MAX + 2];
    if (snprintf(path, sizeof path, "%s/%s", dir, e->location) >= (int)sizeof path)
        return nb_error(NB_ERR_FORMAT, "%s: external data path is too long", what);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nb_error(errno == ENOENT ? NB_ERR_NOT_FOUND : NB_ERR_IO,
                        "%s: cannot open external data '%s': %s", what, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return nb_error(NB_ERR_IO, "%s: external data '%s' is not a regular file", what, path);
    }
    if (e->length >= 0 && e->length != need) {
        close(fd);
        return nb_error(NB_ERR_FORMAT, "%s: external data length %lld, but the dims need %lld bytes",
                        what, (long long)e->length, (long long)need);
    }
    if (e->offset > (int64_t)st.st_size || need > (int64_t)st.st_size - e->offset) {
        close(fd);
        return nb_error(NB_ERR_FORMAT,
                        "%s: external data [%lld, %lld) lies outside '%s' (%lld bytes)", what,
                        (long long)e->offset, (long long)(e->offset + need), path,
                        (long long)st.st_size);
    }
    long page = sysconf(_SC_PAGESIZE);
    int64_t base = e->offset - e->offset % (page > 0 ? page : 4096);
    size_t len = (size_t)(e->offset - base + need);
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, (off_t)base);
    close(fd);
    if (map == MAP_FAILED)
        return nb_error(NB_ERR_IO, "%s: cannot map external data '%s': %s", what, path,
                        strerror(errno));
    nb_status s = nb_buffer_wrap(map, len, (nb_device){NB_DEVICE_CPU, 0}, unmap_fn,
                                 (void *)(uintptr_t)len, buf);
    if (s != NB_OK) {
        munmap(map, len);
        return s;
    }
    (*buf)->file_pages = true;
    *skip = (size_t)(e->offset - base);
    return NB_OK;
}

/* ---- TensorProto -> tensor -------------------------------------------------- */

/* out from `bytes` raw little-endian bytes of ONNX type ot; a view of `owner`
 * (which holds those bytes at byte offset `at`) when aligned, else a copy
 * made a chunk at a time, the copied pages of a file mapping given back as
 * it goes. */
static nb_status from_raw(const void *bytes, nb_buffer *owner, size_t at, int32_t ot,
                          nb_dtype dt, int ndim, const int64_t *shape, int64_t numel,
                          nb_tensor *out)
{
    (void)ot;
    size_t es = nb_dtype_size(dt);
    if (owner && dt != NB_BOOL && at % es == 0 && numel > 0) {
        int64_t strides[NB_MAX_DIMS];
        nb_shape_strides(ndim, shape, strides);
        return nb_tensor_view_of(out, owner, dt, ndim, shape, strides, (int64_t)(at / es));
    }
    nb_status s = nb_tensor_empty(out, dt, ndim, shape);
    if (s != NB_OK || numel == 0)
        return s;
    unsigned char *dst = nb_tensor_data(out);
    const unsigned char *src = bytes;
    size_t src_es = es;
    const int64_t chunk = (int64_t)(1 << 20) / (int64_t)src_es; /* elements */
    for (int64_t i0 = 0; i0 < numel; i0 += chunk) {
        int64_t n = numel - i0 < chunk ? numel - i0 : chunk;
        const unsigned char *s0 = src + (size_t)i0 * src_es;
        if (dt == NB_BOOL) {
            for (int64_t i = 0; i < n; i++)
                dst[i0 + i] = s0[i] != 0;
        } else {
            memcpy(dst + (size_t)i0 * es, s0, (size_t)n * es);
        }
        nb_buffer_drop_pages(owner, s0, (size_t)n * src_es);
    }
    return NB_OK;
}

/* out from the typed repeated field that holds type ot. */
static nb_status from_typed(const Onnx__TensorProto *t, int32_t ot, nb_dtype dt, int ndim,
                            const int64_t *shape, int64_t numel, const char *what, nb_tensor *out)
{
    size_t count;
    const char *field;
    switch (ot) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: count = t->n_float_data; field = "float_data"; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: count = t->n_double_data; field = "double_data"; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: count = t->n_int64_data; field = "int64_data"; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64:
        count = t->n_uint64_data;
        field = "uint64_data";
        break;
    default: count = t->n_int32_data; field = "int32_data"; break;
    }
    if ((int64_t)count != numel)
        return nb_error(NB_ERR_FORMAT, "%s: %s has %zu values, but dims %s need %lld", what, field,
                        count, nb_shape_str(ndim, shape, (char[96]){0}, 96), (long long)numel);
    nb_status s = nb_tensor_empty(out, dt, ndim, shape);
    if (s != NB_OK || numel == 0)
        return s;
    void *dst = nb_tensor_data(out);
    switch (ot) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: memcpy(dst, t->float_data, count * 4); break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: memcpy(dst, t->double_data, count * 8); break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: memcpy(dst, t->int64_data, count * 8); break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: memcpy(dst, t->int32_data, count * 4); break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: memcpy(dst, t->uint64_data, count * 8); break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32:
        for (int64_t i = 0; i < numel; i++)
            ((uint32_t *)dst)[i] = (uint32_t)t->uint64_data[i];
        break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: /* the low 16 bits of each value */
        for (int64_t i = 0; i < numel; i++)
            ((uint16_t *)dst)[i] = (uint16_t)(uint32_t)t->int32_data[i];
        break;
    default: { /* UINT8, INT8, BOOL: the low 8 bits */
        unsigned char *d = dst;
        for (int64_t i = 0; i < numel; i++)
            d[i] = dt == NB_BOOL ? t->int32_data[i] != 0 : (unsigned char)t->int32_data[i];
    }
    }
    return NB_OK;
}

nb_status onnx_tensor_from_proto(const Onnx__TensorProto *t, const onnx_tensor_src *src,
                                 const char *what, nb_tensor *out)
{
    *out = (nb_tensor){0};
    static const onnx_tensor_src none = {0};
    if (!src)
        src = &none;
    if (!t)
        return nb_error(NB_ERR_FORMAT, "%s: no tensor", what);
    int32_t ot = t->has_data_type ? t->data_type : 0;
    nb_dtype dt;
    if (ot == ONNX__TENSOR_PROTO__DATA_TYPE__STRING)
        return nb_error(NB_ERR_UNSUPPORTED, "%s: string tensors are not supported", what);
    if (!onnx_storage_dtype(ot, &dt))
        return nb_error(NB_ERR_UNSUPPORTED, "%s: data type %s (%d) is not supported by nabla",
                        what, onnx_dtype_name(ot), (int)ot);
    if (t->segment)
        return nb_error(NB_ERR_UNSUPPORTED, "%s: segmented tensors are not supported", what);
    if (t->n_dims > NB_MAX_DIMS)
        return nb_error(NB_ERR_UNSUPPORTED, "%s: %zu dims, nabla supports at most %d", what,
                        t->n_dims, NB_MAX_DIMS);
    int ndim = (int)t->n_dims;
    int64_t shape[NB_MAX_DIMS], numel = 1;
    bool overflow = false;
    for (int i = 0; i < ndim; i++) {
        shape[i] = t->dims[i];
        if (shape[i] < 0)
            return nb_error(NB_ERR_FORMAT, "%s: dim %d is negative (%lld)", what, i,
                            (long long)shape[i]);
        overflow |= __builtin_mul_overflow(numel, shape[i], &numel);
    }
    size_t es = onnx_elem_size(ot);
    int64_t need = 0;
    if (overflow || __builtin_mul_overflow(numel, (int64_t)es, &need) || need > MAX_TENSOR_BYTES)
        return nb_error(NB_ERR_FORMAT, "%s: dims %s are too large", what,
                        nb_shape_str(ndim, shape, (char[160]){0}, 160));

    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        if (!src->dir)
            return nb_error(NB_ERR_UNSUPPORTED,
                            "%s: external data is not allowed here (a model loaded from memory)",
                            what);
        ext_ref e;
        nb_status s = parse_external(t, what, &e);
        if (s != NB_OK)
            return s;
        if (need == 0)
            return nb_tensor_empty(out, dt, ndim, shape);
        nb_buffer *buf = NULL;
        size_t skip = 0;
        s = map_external(src->dir, &e, need, what, &buf, &skip);
        if (s != NB_OK)
            return s;
        s = from_raw((const char *)buf->data + skip, buf, skip, ot, dt, ndim, shape, numel,
                     out);
        nb_buffer_release(buf); /* the view, if any, holds its own reference */
        return s;
    }
    if (src->raw_in_file) {
        if ((int64_t)src->raw_len != need)
            return nb_error(NB_ERR_FORMAT, "%s: raw_data has %zu bytes, but dims %s of %s need %lld",
                            what, src->raw_len, nb_shape_str(ndim, shape, (char[96]){0}, 96),
                            onnx_dtype_name(ot), (long long)need);
        return from_raw((const char *)src->file->data + src->raw_off, src->file, src->raw_off, ot,
                        dt, ndim, shape, numel, out);
    }
    if (t->has_raw_data) {
        if ((int64_t)t->raw_data.len != need)
            return nb_error(NB_ERR_FORMAT, "%s: raw_data has %zu bytes, but dims %s of %s need %lld",
                            what, t->raw_data.len, nb_shape_str(ndim, shape, (char[96]){0}, 96),
                            onnx_dtype_name(ot), (long long)need);
        return from_raw(t->raw_data.data, NULL, 0, ot, dt, ndim, shape, numel, out);
    }
    return from_typed(t, ot, dt, ndim, shape, numel, what, out);
}

/* ---- .pb files ---------------------------------------------------------------- */

nb_status nb_onnx_read_tensor_file(const char *path, nb_tensor *out)
{
    *out = (nb_tensor){0};
    if (!path)
        return nb_error(NB_ERR_ARG, "onnx_read_tensor: no path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nb_error(errno == ENOENT ? NB_ERR_NOT_FOUND : NB_ERR_IO,
                        "onnx_read_tensor '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_PB_FILE) {
        close(fd);
        return nb_error(NB_ERR_IO, "onnx_read_tensor '%s': not a regular file of at most 2 GiB",
                        path);
    }
    size_t size = (size_t)st.st_size;
    unsigned char *data = malloc(size ? size : 1);
    if (!data) {
        close(fd);
        return nb_error(NB_ERR_ALLOC, "onnx_read_tensor '%s': out of memory for %zu bytes", path,
                        size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, data + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != size) {
        free(data);
        return nb_error(NB_ERR_IO, "onnx_read_tensor '%s': short read", path);
    }
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, size, data);
    free(data);
    if (!t)
        return nb_error(NB_ERR_FORMAT, "onnx_read_tensor '%s': not a valid TensorProto", path);
    char dir[PATH_MAX], what[PATH_MAX + 32];
    snprintf(what, sizeof what, "onnx_read_tensor '%s'", path);
    onnx_tensor_src src = {.dir = nb_path_dir(path, dir, sizeof dir)};
    nb_status s = onnx_tensor_from_proto(t, &src, what, out);
    onnx__tensor_proto__free_unpacked(t, NULL);
    return s;
}

/* ---- leaving large raw_data in the mapped file ------------------------------ */

/* A field of protobuf wire data: its number and wire type, where it starts
 * (the tag) and ends, and for length-delimited fields the payload. */
typedef struct wire_field {
    uint32_t num;
    int type;
    size_t start, end, data, len;
} wire_field;

static bool read_varint(const uint8_t *p, size_t end, size_t *pos, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= end)
            return false;
        uint8_t b = p[(*pos)++];
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* The field at *pos (absolute, before end); false when malformed. */
static bool next_field(const uint8_t *p, size_t end, size_t *pos, wire_field *f)
{
    uint64_t tag, v;
    f->start = *pos;
    if (!read_varint(p, end, pos, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
        return false;
    f->num = (uint32_t)(tag >> 3);
    f->type = (int)(tag & 7);
    f->data = f->len = 0;
    switch (f->type) {
    case 0:
        if (!read_varint(p, end, pos, &v))
            return false;
        break;
    case 1:
        if (end - *pos < 8)
            return false;
        *pos += 8;
        break;
    case 5:
        if (end - *pos < 4)
            return false;
        *pos += 4;
        break;
    case 2:
        if (!read_varint(p, end, pos, &v) || v > end - *pos)
            return false;
        f->data = *pos;
        f->len = (size_t)v;
        *pos += (size_t)v;
        break;
    default: /* groups (3, 4) are not used by onnx.proto */
        return false;
    }
    f->end = *pos;
    return true;
}

/* An output that only counts when p is NULL. */
typedef struct wbuf {
    uint8_t *p;
    size_t n;
} wbuf;

static void put(wbuf *w, const void *src, size_t len)
{
    if (w->p && len)
        memcpy(w->p + w->n, src, len);
    w->n += len;
}

static void put_varint(wbuf *w, uint64_t v)
{
    uint8_t b[10];
    int k = 0;
    do {
        b[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(w, b, (size_t)k);
}

typedef struct strip_state {
    const uint8_t *p;
    size_t min_len, bad_at;
    onnx_raw_ref *refs;
    size_t n_refs, cap_refs;
    bool stripped;
} strip_state;

/* The field at *pos of the message ending at end; false at a malformed one,
 * whose position is kept in st->bad_at. */
static bool strip_next(strip_state *st, size_t end, size_t *pos, wire_field *f)
{
    if (next_field(st->p, end, pos, f))
        return true;
    st->bad_at = *pos;
    return false;
}

/* TensorProto at [d, d + len): every field but a long raw_data (field 9). */
static bool strip_tensor(strip_state *st, size_t d, size_t len, wbuf *w, onnx_raw_ref *ref)
{
    size_t pos = d, end = d + len;
    wire_field f;
    *ref = (onnx_raw_ref){0};
    while (pos < end) {
        if (!strip_next(st, end, &pos, &f))
            return false;
        if (f.num == 9 && f.type == 2 && f.len >= st->min_len) {
            *ref = (onnx_raw_ref){f.data, f.len, true};
        } else {
            if (f.num == 9) /* a later raw_data replaces an earlier one */
                ref->in_file = false;
            put(w, st->p + f.start, f.end - f.start);
        }
    }
    return true;
}

/* Rewrites a length-delimited field's payload at [d, d + len) into w (or
 * only counts it, when w->p is NULL). */
typedef bool (*strip_fn)(strip_state *st, size_t d, size_t len, wbuf *w);

/* The message at [d, d + len): fields other than the length-delimited field
 * num copied as they are; each field num rewritten by fn, behind its tag and
 * its new length (measured by a first, counting pass of fn). */
static bool strip_fields(strip_state *st, size_t d, size_t len, uint32_t num, strip_fn fn,
                         wbuf *w)
{
    size_t pos = d, end = d + len;
    wire_field f;
    while (pos < end) {
        if (!strip_next(st, end, &pos, &f))
            return false;
        if (f.num != num || f.type != 2) {
            put(w, st->p + f.start, f.end - f.start);
            continue;
        }
        wbuf count = {0};
        if (!fn(st, f.data, f.len, &count))
            return false;
        put_varint(w, (num << 3) | 2);
        put_varint(w, count.n);
        if (!fn(st, f.data, f.len, w))
            return false;
    }
    return true;
}

/* An initializer (TensorProto) stripped; the writing pass records where its
 * raw_data is. */
static bool strip_initializer(strip_state *st, size_t d, size_t len, wbuf *w)
{
    onnx_raw_ref ref;
    if (!strip_tensor(st, d, len, w, &ref))
        return false;
    if (w->p) {
        if (st->n_refs == st->cap_refs) {
            size_t cap = st->cap_refs ? 2 * st->cap_refs : 64;
            onnx_raw_ref *r = realloc(st->refs, cap * sizeof(*r));
            if (!r)
                return false;
            st->refs = r;
            st->cap_refs = cap;
        }
        st->refs[st->n_refs++] = ref;
        st->stripped |= ref.in_file;
    }
    return true;
}

/* GraphProto at [d, d + len): initializers (field 5) stripped, the rest as is. */
static bool strip_graph(strip_state *st, size_t d, size_t len, wbuf *w)
{
    return strip_fields(st, d, len, 5, strip_initializer, w);
}

/* ModelProto [0, size): the graph (field 7) stripped, the rest as is. */
static bool strip_model(strip_state *st, size_t size, wbuf *w)
{
    return strip_fields(st, 0, size, 7, strip_graph, w);
}

nb_status onnx_strip_raw(const uint8_t *data, size_t size, size_t min_len, uint8_t **out,
                         size_t *out_len, onnx_raw_ref **refs, size_t *n_refs)
{
    *out = NULL;
    *out_len = 0;
    *refs = NULL;
    *n_refs = 0;
    /* a second graph field would be merged into the first by the parser,
     * which would break the initializer numbering: leave such files alone */
    size_t pos = 0;
    int graphs = 0;
    wire_field f;
    while (pos < size) {
        if (!next_field(data, size, &pos, &f))
            return nb_error(NB_ERR_FORMAT, "malformed protobuf at byte %zu", pos);
        graphs += f.num == 7;
    }
    if (graphs != 1)
        return NB_OK;
    strip_state st = {.p = data, .min_len = min_len ? min_len : 1};
    wbuf count = {0};
    if (!strip_model(&st, size, &count))
        return nb_error(NB_ERR_FORMAT, "malformed protobuf at byte %zu", st.bad_at);
    if (count.n == size) /* nothing left out */
        return NB_OK;
    wbuf w = {malloc(count.n ? count.n : 1), 0};
    if (!w.p)
        return nb_error(NB_ERR_ALLOC, "out of memory for %zu bytes", count.n);
    if (!strip_model(&st, size, &w)) {
        free(w.p);
        free(st.refs);
        return nb_error(st.refs ? NB_ERR_FORMAT : NB_ERR_ALLOC, "malformed protobuf at byte %zu",
                        st.bad_at);
    }
    *out = w.p;
    *out_len = w.n;
    *refs = st.refs;
    *n_refs = st.n_refs;
    return NB_OK;
}
