/* .npy files (NumPy format versions 1.0, 2.0 and 3.0).
 *
 * Layout: "\x93NUMPY", major, minor, the header length (u16 little-endian for
 * 1.0, u32 for 2.0/3.0), then the header: a Python dict literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
 * spaces and a final newline, then the raw little-endian data.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/fileio.h"
#include "tensor/tensor.h"

#define NPY_MAX_HEADER (1u << 20) /* refuse absurd header lengths before allocating */

static const struct {
    const char *descr;
    nb_dtype dtype;
} npy_types[] = {
    {"<f4", NB_F32}, {"<f8", NB_F64}, {"<i4", NB_I32},  {"<i8", NB_I64},  {"|u1", NB_U8},
    {"|b1", NB_BOOL}, {"|i1", NB_I8}, {"<i2", NB_I16}, {"<u2", NB_U16}, {"<u4", NB_U32},
    {"<u8", NB_U64},  {"<f2", NB_F16}, /* bf16: NumPy has no code for it */
};
#define NPY_DESCRS "<f4 <f8 <i4 <i8 |u1 |b1 |i1 <i2 <u2 <u4 <u8 <f2"

typedef struct npy_header {
    char descr[64];
    bool have_descr, have_fortran, have_shape;
    bool fortran;
    int ndim;
    int64_t shape[NB_MAX_DIMS];
} npy_header;

/* A cursor over the header text; path only for messages. */
typedef struct parser {
    const char *s;
    size_t n, pos;
    const char *path;
} parser;

static nb_status bad(const parser *p, const char *what)
{
    return nb_error(NB_ERR_FORMAT, "npy_load '%s': header %s at byte %zu", p->path, what, p->pos);
}

/* Prefix the calling thread's current message with "who 'path': ". */
static nb_status with_path(nb_status s, const char *who, const char *path)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", nb_last_error());
    return nb_error(s, "%s '%s': %s", who, path, msg);
}

static void skip_ws(parser *p)
{
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                             p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

/* Consume c (after whitespace) if it is next; returns whether it was. */
static bool accept(parser *p, char c)
{
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == c) {
        p->pos++;
        return true;
    }
    return false;
}

/* A quoted Python string ('...' or "..."), truncated into out (cap bytes). */
static nb_status parse_string(parser *p, char *out, size_t cap)
{
    skip_ws(p);
    if (p->pos >= p->n || (p->s[p->pos] != '\'' && p->s[p->pos] != '"'))
        return bad(p, "expects a quoted string");
    char q = p->s[p->pos++];
    size_t len = 0;
    while (p->pos < p->n && p->s[p->pos] != q) {
        if (p->s[p->pos] == '\\' && p->pos + 1 < p->n)
            p->pos++;
        if (len + 1 < cap)
            out[len++] = p->s[p->pos];
        p->pos++;
    }
    if (p->pos >= p->n)
        return bad(p, "has an unterminated string");
    p->pos++;
    out[len] = '\0';
    return NB_OK;
}

/* True or False. */
static nb_status parse_bool(parser *p, bool *out)
{
    skip_ws(p);
    const char *at = p->s + p->pos;
    size_t left = p->n - p->pos;
    if (left >= 4 && memcmp(at, "True", 4) == 0) {
        *out = true;
        p->pos += 4;
    } else if (left >= 5 && memcmp(at, "False", 5) == 0) {
        *out = false;
        p->pos += 5;
    } else {
        return bad(p, "expects True or False");
    }
    return NB_OK;
}

/* A decimal integer (optionally negative, optionally with Python 2's 'L'),
 * checked for overflow; *neg tells the sign apart from the magnitude. */
static nb_status parse_int(parser *p, uint64_t *mag, bool *neg)
{
    *mag = 0;
    skip_ws(p);
    *neg = p->pos < p->n && p->s[p->pos] == '-';
    if (*neg)
        p->pos++;
    if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9')
        return bad(p, "expects an integer");
    uint64_t v = 0;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        unsigned d = (unsigned)(p->s[p->pos++] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return bad(p, "has an integer too large for 64 bits");
        v = v * 10 + d;
    }
    if (p->pos < p->n && p->s[p->pos] == 'L')
        p->pos++;
    *mag = v;
    return NB_OK;
}

/* The shape tuple: "()", "(5,)", "(2, 3)"; each dim in [0, 2^63). */
static nb_status parse_shape(parser *p, npy_header *h)
{
    if (!accept(p, '('))
        return bad(p, "expects a shape tuple");
    h->ndim = 0;
    while (!accept(p, ')')) {
        uint64_t mag;
        bool neg;
        nb_status s = parse_int(p, &mag, &neg);
        if (s != NB_OK)
            return s;
        if (neg && mag != 0)
            return nb_error(NB_ERR_FORMAT, "npy_load '%s': negative dim -%llu in shape",
                            p->path, (unsigned long long)mag);
        if (mag > INT64_MAX)
            return nb_error(NB_ERR_FORMAT, "npy_load '%s': dim %llu in shape is too large",
                            p->path, (unsigned long long)mag);
        if (h->ndim == NB_MAX_DIMS)
            return nb_error(NB_ERR_FORMAT, "npy_load '%s': shape has more than %d dims",
                            p->path, NB_MAX_DIMS);
        h->shape[h->ndim++] = (int64_t)mag;
        if (!accept(p, ',')) {
            if (!accept(p, ')'))
                return bad(p, "expects ',' or ')' in the shape");
            break;
        }
    }
    return NB_OK;
}

/* The header dict: the keys descr, fortran_order and shape, in any order. */
static nb_status parse_header(parser *p, npy_header *h)
{
    memset(h, 0, sizeof *h);
    if (!accept(p, '{'))
        return bad(p, "does not start with '{'");
    while (!accept(p, '}')) {
        char key[32];
        nb_status s = parse_string(p, key, sizeof key);
        if (s != NB_OK)
            return s;
        if (!accept(p, ':'))
            return bad(p, "expects ':' after a key");
        if (strcmp(key, "descr") == 0) {
            skip_ws(p);
            if (p->pos < p->n && p->s[p->pos] != '\'' && p->s[p->pos] != '"')
                return nb_error(NB_ERR_DTYPE, "npy_load '%s': descr is not a simple type "
                                "string (structured dtypes are not supported)", p->path);
            s = parse_string(p, h->descr, sizeof h->descr);
            h->have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            s = parse_bool(p, &h->fortran);
            h->have_fortran = true;
        } else if (strcmp(key, "shape") == 0) {
            s = parse_shape(p, h);
            h->have_shape = true;
        } else {
            return nb_error(NB_ERR_FORMAT, "npy_load '%s': unknown header key '%s'", p->path, key);
        }
        if (s != NB_OK)
            return s;
        if (!accept(p, ',')) {
            if (!accept(p, '}'))
                return bad(p, "expects ',' or '}' after a value");
            break;
        }
    }
    if (!h->have_descr || !h->have_fortran || !h->have_shape)
        return nb_error(NB_ERR_FORMAT, "npy_load '%s': header lacks '%s'", p->path,
                        !h->have_descr ? "descr" : !h->have_fortran ? "fortran_order" : "shape");
    return NB_OK;
}

/* Magic, version and header length; reads the header text into *text. */
static nb_status read_preamble(FILE *f, const char *path, char **text, size_t *len,
                               size_t *data_start)
{
    unsigned char pre[12];
    size_t got = fread(pre, 1, 8, f);
    if (memcmp(pre, "\x93NUMPY", got < 6 ? got : 6) != 0 || got == 0)
        return nb_error(NB_ERR_FORMAT, "npy_load '%s': bad magic (not a .npy file)", path);
    if (got < 8)
        return nb_error(NB_ERR_FORMAT, "npy_load '%s': truncated before the header", path);
    int major = pre[6];
    if (major < 1 || major > 3)
        return nb_error(NB_ERR_FORMAT, "npy_load '%s': unsupported format version %d.%d", path,
                        major, pre[7]);
    size_t lensize = major == 1 ? 2 : 4;
    if (fread(pre + 8, 1, lensize, f) != lensize)
        return nb_error(NB_ERR_FORMAT, "npy_load '%s': truncated header length", path);
    size_t hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    if (lensize == 4)
        hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    if (hlen > NPY_MAX_HEADER)
        return nb_error(NB_ERR_FORMAT, "npy_load '%s': header length %zu is too large", path,
                        hlen);
    *text = malloc(hlen + 1);
    if (!*text)
        return nb_error(NB_ERR_ALLOC, "npy_load '%s': out of memory for the header", path);
    if (fread(*text, 1, hlen, f) != hlen)
        return nb_error(NB_ERR_FORMAT, "npy_load '%s': truncated header (%zu bytes expected)",
                        path, hlen);
    (*text)[hlen] = '\0';
    *len = hlen;
    *data_start = 8 + lensize + hlen;
    return NB_OK;
}

/* Map the descr to a dtype and compute the data size with overflow checks. */
static nb_status check_header(const npy_header *h, const char *path, nb_dtype *dt,
                              size_t *nbytes)
{
    size_t i, n = sizeof npy_types / sizeof npy_types[0];
    for (i = 0; i < n && strcmp(npy_types[i].descr, h->descr) != 0; i++)
        ;
    if (i == n)
        return nb_error(NB_ERR_DTYPE, "npy_load '%s': unsupported descr '%s' (supported: "
                        NPY_DESCRS ")", path, h->descr);
    *dt = npy_types[i].dtype;
    size_t total = nb_dtype_size(*dt);
    for (int d = 0; d < h->ndim; d++) {
        uint64_t dim = (uint64_t)h->shape[d];
        if (dim > 0 && (total > SIZE_MAX / dim || total * dim > (uint64_t)INT64_MAX)) {
            char sb[200];
            nb_shape_str(h->ndim, h->shape, sb, sizeof sb);
            return nb_error(NB_ERR_FORMAT, "npy_load '%s': shape %s is too large (its byte "
                            "count overflows)", path, sb);
        }
        total *= (size_t)dim;
    }
    *nbytes = total;
    return NB_OK;
}

/* Read nbytes of data into a new C-order tensor; a Fortran-order array is read
 * as its reversed shape and transposed back into a contiguous copy. */
static nb_status read_data(FILE *f, const char *path, const npy_header *h, nb_dtype dt,
                           size_t nbytes, size_t data_start, nb_tensor *out)
{
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size < (uint64_t)data_start + nbytes)
        return nb_error(NB_ERR_FORMAT, "npy_load '%s': file too short: shape needs %zu data "
                        "bytes, file has %lld", path, nbytes,
                        (long long)st.st_size - (long long)data_start);
    int64_t shape[NB_MAX_DIMS];
    for (int d = 0; d < h->ndim; d++)
        shape[d] = h->fortran ? h->shape[h->ndim - 1 - d] : h->shape[d];
    nb_tensor raw;
    nb_status s = nb_tensor_empty(&raw, dt, h->ndim, shape);
    if (s != NB_OK)
        return with_path(s, "npy_load", path);
    if (fread(raw.buf->data, 1, nbytes, f) != nbytes) {
        nb_tensor_release(&raw);
        return nb_error(NB_ERR_FORMAT, "npy_load '%s': file too short for %zu data bytes",
                        path, nbytes);
    }
    nb_le_swap(raw.buf->data, nbytes / nb_dtype_size(dt), nb_dtype_size(dt));
    if (dt == NB_BOOL)
        for (size_t i = 0; i < nbytes; i++)
            ((unsigned char *)raw.buf->data)[i] = ((unsigned char *)raw.buf->data)[i] != 0;
    if (!h->fortran || h->ndim < 2) {
        *out = raw;
        return NB_OK;
    }
    int perm[NB_MAX_DIMS];
    for (int d = 0; d < h->ndim; d++)
        perm[d] = h->ndim - 1 - d;
    nb_tensor tv;
    if ((s = nb_tensor_permute(&raw, perm, &tv)) == NB_OK) {
        s = nb_tensor_contiguous(&tv, out);
        nb_tensor_release(&tv);
    }
    nb_tensor_release(&raw);
    return s;
}

nb_status nb_npy_load(const char *path, nb_tensor *out)
{
    memset(out, 0, sizeof *out);
    if (!path)
        return nb_error(NB_ERR_ARG, "npy_load: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f)
        return nb_error(errno == ENOENT ? NB_ERR_NOT_FOUND : NB_ERR_IO,
                        "npy_load '%s': cannot open: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, data_start = 0, nbytes = 0;
    npy_header h;
    nb_dtype dt = NB_F32;
    nb_status s = read_preamble(f, path, &text, &len, &data_start);
    if (s == NB_OK) {
        parser p = {text, len, 0, path};
        s = parse_header(&p, &h);
    }
    if (s == NB_OK)
        s = check_header(&h, path, &dt, &nbytes);
    if (s == NB_OK)
        s = read_data(f, path, &h, dt, nbytes, data_start, out);
    free(text);
    fclose(f);
    return s;
}

/* ---- saving ------------------------------------------------------------- */

/* The padded header for t (version 1.0; total length a multiple of 64). */
static size_t build_header(const nb_tensor *t, char *buf, size_t cap)
{
    char shape[NB_MAX_DIMS * 24 + 4] = "";
    size_t sl = 0;
    for (int d = 0; d < t->ndim; d++)
        sl += (size_t)snprintf(shape + sl, sizeof shape - sl, "%s%lld", d ? ", " : "",
                               (long long)t->shape[d]);
    if (t->ndim == 1)
        snprintf(shape + sl, sizeof shape - sl, ",");
    const char *descr = "";
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].dtype == t->dtype)
            descr = npy_types[i].descr;
    int n = snprintf(buf + 10, cap - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                     descr, shape);
    size_t total = (10 + (size_t)n + 1 + 63) / 64 * 64;
    memset(buf + 10 + n, ' ', total - 10 - (size_t)n - 1);
    buf[total - 1] = '\n';
    size_t hlen = total - 10;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    return total;
}

/* Header then data into an open file; on a big-endian host the data is
 * written from a byte-swapped copy. */
static bool write_npy(int fd, void *ctx)
{
    const nb_tensor *c = ctx;
    char header[512];
    size_t hl = build_header(c, header, sizeof header);
    if (!nb_write_all(fd, header, hl))
        return false;
    size_t nbytes = nb_tensor_nbytes(c);
    const void *data = nb_tensor_data(c);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    void *copy = malloc(nbytes ? nbytes : 1);
    if (!copy) {
        errno = ENOMEM;
        return false;
    }
    memcpy(copy, data, nbytes);
    nb_le_swap(copy, nbytes / nb_dtype_size(c->dtype), nb_dtype_size(c->dtype));
    bool ok = nb_write_all(fd, copy, nbytes);
    free(copy);
    return ok;
#else
    return nb_write_all(fd, data, nbytes);
#endif
}

nb_status nb_npy_save(const char *path, const nb_tensor *t)
{
    if (!path)
        return nb_error(NB_ERR_ARG, "npy_save: path is NULL");
    if (!t->buf || t->buf->device.type != NB_DEVICE_CPU)
        return nb_error(NB_ERR_ARG, "npy_save '%s': tensor is unset or not on the CPU", path);
    if (!nb_dtype_valid((int)t->dtype))
        return nb_error(NB_ERR_DTYPE, "npy_save '%s': invalid dtype %d", path, (int)t->dtype);
    if (t->dtype == NB_BF16)
        return nb_error(NB_ERR_DTYPE, "npy_save '%s': bf16 has no NumPy dtype (cast to f32 first)",
                        path);
    nb_tensor c;
    nb_status s = nb_tensor_is_contiguous(t) ? (nb_tensor_ref(&c, t), NB_OK)
                                             : nb_tensor_contiguous(t, &c);
    if (s != NB_OK)
        return with_path(s, "npy_save", path);
    /* temp file beside path, fsync, rename, fsync of the directory: readers
     * never see a half-written file, and the file gets mode 0644 */
    s = nb_write_file_atomic("npy_save", path, write_npy, &c);
    nb_tensor_release(&c);
    return s;
}
