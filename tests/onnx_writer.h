/* Writing small ONNX models in the protobuf wire format from a test, with no
 * onnx package: a growing byte buffer (pb) with the field encoders, the
 * NodeProto / AttributeProto / ValueInfoProto pieces, and loading the
 * resulting ModelProto from memory. Used by test_onnx_ops_extra.c. */
#ifndef NB_TESTS_ONNX_WRITER_H
#define NB_TESTS_ONNX_WRITER_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nabla.h"

/* ---- a protobuf writer ------------------------------------------------------ */

typedef struct pb {
    unsigned char *d;
    size_t n, cap;
} pb;

static inline void pb_raw(pb *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->d = realloc(b->d, b->cap);
        ck_assert_ptr_nonnull(b->d);
    }
    memcpy(b->d + b->n, p, n);
    b->n += n;
}

static inline void pb_varint(pb *b, uint64_t v)
{
    unsigned char c[10];
    int n = 0;
    do {
        c[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_raw(b, c, (size_t)n);
}

static inline void pb_int(pb *b, int field, int64_t v)
{
    pb_varint(b, (uint64_t)field << 3);
    pb_varint(b, (uint64_t)v);
}

static inline void pb_bytes(pb *b, int field, const void *p, size_t n)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    pb_raw(b, p, n);
}

static inline void pb_str(pb *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

static inline void pb_float(pb *b, int field, float f)
{
    pb_varint(b, (uint64_t)field << 3 | 5);
    pb_raw(b, &f, 4);
}

/* Append message m as field `field` of b, and free m. */
static inline void pb_msg(pb *b, int field, pb *m)
{
    pb_bytes(b, field, m->d, m->n);
    free(m->d);
    *m = (pb){0};
}

/* ---- ONNX messages ----------------------------------------------------------- */

enum { T_FLOAT = 1, T_INT32 = 6, T_INT64 = 7, T_DOUBLE = 11 };

/* A node being written (NodeProto). */
static inline pb node_new(const char *op, const char *domain, const char *ins, const char *outs)
{
    pb n = {0};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", ins); /* comma-separated; "" names an omitted input */
    for (char *s = buf, *e; s; s = e ? e + 1 : NULL) {
        e = strchr(s, ',');
        if (e)
            *e = 0;
        pb_str(&n, 1, s);
    }
    snprintf(buf, sizeof buf, "%s", outs);
    for (char *s = buf, *e; s; s = e ? e + 1 : NULL) {
        e = strchr(s, ',');
        if (e)
            *e = 0;
        pb_str(&n, 2, s);
    }
    pb_str(&n, 3, "n0");
    pb_str(&n, 4, op);
    if (domain)
        pb_str(&n, 7, domain);
    return n;
}

static inline void attr_int(pb *n, const char *name, int64_t v)
{
    pb a = {0};
    pb_str(&a, 1, name);
    pb_int(&a, 3, v);
    pb_int(&a, 20, 2);
    pb_msg(n, 5, &a);
}

static inline void attr_float(pb *n, const char *name, float v)
{
    pb a = {0};
    pb_str(&a, 1, name);
    pb_float(&a, 2, v);
    pb_int(&a, 20, 1);
    pb_msg(n, 5, &a);
}

static inline void attr_str(pb *n, const char *name, const char *v)
{
    pb a = {0};
    pb_str(&a, 1, name);
    pb_str(&a, 4, v);
    pb_int(&a, 20, 3);
    pb_msg(n, 5, &a);
}

static inline void attr_ints(pb *n, const char *name, const int64_t *v, int count)
{
    pb a = {0};
    pb_str(&a, 1, name);
    for (int i = 0; i < count; i++)
        pb_int(&a, 8, v[i]);
    pb_int(&a, 20, 7);
    pb_msg(n, 5, &a);
}

static inline void attr_floats(pb *n, const char *name, const float *v, int count)
{
    pb a = {0};
    pb_str(&a, 1, name);
    for (int i = 0; i < count; i++)
        pb_float(&a, 7, v[i]);
    pb_int(&a, 20, 6);
    pb_msg(n, 5, &a);
}

#define INTS(...) (const int64_t[]){__VA_ARGS__}, (int)(sizeof((int64_t[]){__VA_ARGS__}) / 8)

/* A graph input (field 11) or output (12): elem type and dims (ndim -1: no shape). */
static inline void value_info(pb *g, int field, const char *name, int elem, int ndim,
                       const int64_t *dims)
{
    pb shape = {0}, tensor = {0}, type = {0}, vi = {0};
    for (int i = 0; i < ndim; i++) {
        pb dim = {0};
        pb_int(&dim, 1, dims[i]);
        pb_msg(&shape, 1, &dim);
    }
    pb_int(&tensor, 1, elem);
    if (ndim >= 0)
        pb_msg(&tensor, 2, &shape);
    pb_msg(&type, 1, &tensor);
    pb_str(&vi, 1, name);
    pb_msg(&vi, 2, &type);
    pb_msg(g, field, &vi);
}

/* The model of graph g (its node, inputs and outputs written), default domain
 * at opset, plus ai.onnx.preview.training 1 when training; loaded. */
static inline nb_onnx_model *load(pb *g, int opset, bool training)
{
    pb m = {0}, os = {0};
    pb_int(&m, 1, 8);
    pb_str(&os, 1, "");
    pb_int(&os, 2, opset);
    pb_msg(&m, 8, &os);
    if (training) {
        pb_str(&os, 1, "ai.onnx.preview.training");
        pb_int(&os, 2, 1);
        pb_msg(&m, 8, &os);
    }
    pb_str(g, 2, "g");
    pb_msg(&m, 7, g);
    nb_onnx_model *model = NULL;
    nb_status s = nb_onnx_load_bytes(m.d, m.n, "test model", &model);
    free(m.d);
    ck_assert_msg(s == NB_OK, "load: %s", nb_last_error());
    return model;
}

/* A one-node graph: the node, then inputs (names, types, shapes) and outputs. */
typedef struct io {
    const char *name;
    int elem, ndim;
    int64_t dims[6];
} io;

static inline nb_onnx_model *one_node(pb *node, int opset, const io *in, int n_in, const io *out,
                               int n_out)
{
    pb g = {0};
    pb_msg(&g, 1, node);
    for (int i = 0; i < n_in; i++)
        value_info(&g, 11, in[i].name, in[i].elem, in[i].ndim, in[i].dims);
    for (int i = 0; i < n_out; i++)
        value_info(&g, 12, out[i].name, out[i].elem, out[i].ndim, out[i].dims);
    return load(&g, opset, false);
}

#endif
