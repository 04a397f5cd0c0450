/* The IDX reader: header checks, then one read of the promised bytes, through
 * zlib's gzread, which reads gzip and plain files alike. */
#include "models/idx.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#define IDX_TYPE_U8 0x08

/* The name the IDX spec gives an element type byte, for messages. */
static const char *idx_type_name(unsigned t)
{
    switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    default: return "unknown";
    }
}

/* Read up to n bytes into buf, stopping early only at the end of the file;
 * *got is the count read. A read error or corrupt gzip data is an error. */
static nb_status read_upto(gzFile f, const char *path, void *buf, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t chunk = n - *got;
        if (chunk > ((size_t)1 << 30))
            chunk = (size_t)1 << 30;
        int r = gzread(f, (char *)buf + *got, (unsigned)chunk);
        if (r < 0) {
            int err = Z_OK;
            const char *msg = gzerror(f, &err);
            if (err == Z_ERRNO)
                return nb_error(NB_ERR_IO, "idx '%s': %s", path, strerror(errno));
            return nb_error(NB_ERR_FORMAT, "idx '%s': corrupt gzip data: %s", path, msg);
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return NB_OK;
}

/* Check the 4-byte magic: two zero bytes, the element type, the dim count. */
static nb_status check_magic(const char *path, const unsigned char m[4])
{
    if (m[0] != 0 || m[1] != 0)
        return nb_error(NB_ERR_FORMAT,
                        "idx '%s': bad magic %02x %02x %02x %02x (expected 00 00 <type> <ndim>)",
                        path, m[0], m[1], m[2], m[3]);
    if (m[2] != IDX_TYPE_U8)
        return nb_error(NB_ERR_FORMAT,
                        "idx '%s': element type 0x%02x (%s) is not supported, only 0x08 (unsigned byte)",
                        path, m[2], idx_type_name(m[2]));
    if (m[3] < 1 || m[3] > NB_IDX_MAX_DIMS)
        return nb_error(NB_ERR_FORMAT, "idx '%s': %d dims, expected 1 to %d", path, m[3],
                        NB_IDX_MAX_DIMS);
    return NB_OK;
}

/* Decode the big-endian dims and check each (< 2^31) and their byte total
 * (<= NB_IDX_MAX_BYTES, checked as it grows so nothing overflows). */
static nb_status parse_dims(const char *path, int ndim, const unsigned char *raw, int64_t *shape,
                            size_t *nbytes)
{
    uint64_t total = 1;
    for (int i = 0; i < ndim; i++) {
        const unsigned char *p = raw + 4 * i;
        uint32_t d = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (d > INT32_MAX)
            return nb_error(NB_ERR_FORMAT, "idx '%s': dim %d is %lu, must be below 2^31", path, i,
                            (unsigned long)d);
        shape[i] = d;
        if (d != 0 && total > NB_IDX_MAX_BYTES / d)
            return nb_error(NB_ERR_FORMAT, "idx '%s': dims promise more than %zu bytes of data",
                            path, NB_IDX_MAX_BYTES);
        total *= d;
    }
    *nbytes = (size_t)total;
    return NB_OK;
}

/* Read the header: magic and dims, leaving f at the first element. */
static nb_status read_header(gzFile f, const char *path, int *ndim, int64_t *shape, size_t *nbytes)
{
    unsigned char magic[4], raw[4 * NB_IDX_MAX_DIMS];
    size_t got;
    nb_status s = read_upto(f, path, magic, 4, &got);
    if (s != NB_OK)
        return s;
    if (got < 4)
        return nb_error(NB_ERR_FORMAT, "idx '%s': %zu bytes, too short for the 4-byte magic", path,
                        got);
    if ((s = check_magic(path, magic)) != NB_OK)
        return s;
    *ndim = magic[3];
    size_t want = 4 * (size_t)*ndim;
    if ((s = read_upto(f, path, raw, want, &got)) != NB_OK)
        return s;
    if (got < want)
        return nb_error(NB_ERR_FORMAT, "idx '%s': truncated header: expected %zu bytes of dims, found %zu",
                        path, want, got);
    return parse_dims(path, *ndim, raw, shape, nbytes);
}

/* Read exactly nbytes of elements into t, then make sure nothing follows. */
static nb_status read_data(gzFile f, const char *path, nb_tensor *t, size_t nbytes)
{
    size_t got;
    nb_status s = read_upto(f, path, nb_tensor_data(t), nbytes, &got);
    if (s != NB_OK)
        return s;
    if (got < nbytes)
        return nb_error(NB_ERR_FORMAT, "idx '%s': truncated: dims promise %zu bytes of data, found %zu",
                        path, nbytes, got);
    unsigned char extra;
    if ((s = read_upto(f, path, &extra, 1, &got)) != NB_OK)
        return s;
    if (got != 0)
        return nb_error(NB_ERR_FORMAT, "idx '%s': data goes on past the %zu bytes the dims promise",
                        path, nbytes);
    return NB_OK;
}

nb_status nb_idx_load(const char *path, nb_tensor *out)
{
    if (!path || !out)
        return nb_error(NB_ERR_ARG, "idx_load: path and out must not be NULL");
    memset(out, 0, sizeof(*out));
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return nb_error(NB_ERR_IO, "idx '%s': %s", path, errno ? strerror(errno) : "cannot open");
    gzbuffer(f, 1 << 17);
    int ndim = 0;
    int64_t shape[NB_IDX_MAX_DIMS];
    size_t nbytes = 0;
    nb_tensor t = {0};
    nb_status s = read_header(f, path, &ndim, shape, &nbytes);
    if (s == NB_OK && (s = nb_tensor_empty(&t, NB_U8, ndim, shape)) != NB_OK)
        s = nb_error(s, "idx '%s': cannot allocate %zu bytes", path, nbytes);
    if (s == NB_OK)
        s = read_data(f, path, &t, nbytes);
    gzclose(f);
    if (s != NB_OK) {
        nb_tensor_release(&t);
        return s;
    }
    *out = t;
    return NB_OK;
}
