/* The storage dtypes (i8, i16, u16, u32, u64, f16, bf16) in tensors (their
 * scalar conversions are test_half.c's): the CAST kernel and nb_tensor_copy_into for every pair of dtypes, element
 * access, printing, .npy files (NumPy's own, from tests/gen_onnx_dtypes.py),
 * compute ops refusing storage dtypes with a clear message, a graph through
 * casts, and an ONNX model with int8/float16/uint32/bfloat16 values run end
 * to end against NumPy's results (tests/storage_dtypes/). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "graph/graph.h"
#include "graph/nn.h"
#include "graph/session.h"
#include "kernels/cpu.h"
#include "models/onnx.h"
#include "half_ref.h"
#include "onnx_test_util.h"
#include "tensor/half.h"
#include "tensor/tensor.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})

/* ---- CAST and copies for every pair of dtypes ------------------------------- */

enum { NV = 12 };

/* Values of each dtype (exactly representable), NaN and infinities for the
 * float types, rounding traps for the 16-bit floats. */
static int source_values(nb_dtype dt, long double *v)
{
    static const long double fl[NV] = {0.0L, -0.0L, 1.5L, -2.75L, 300.25L, 65504.0L,
                                       65520.0L, 1e10L, -3e9L, 0x1p-24L, INFINITY, NAN};
    static const long double f64x[NV] = {1.0L + 0x1p-11L + 0x1p-40L, -0.5L, 2.5L, 1e300L,
                                         -1e300L, 0x1p63L, 0x1p64L, -0x1p63L, 1e-300L,
                                         4294967295.75L, -INFINITY, NAN};
    static const long double i64[NV] = {0, 1, -2, 300, -128, 65519, 65520, 2049,
                                        0x1p60L + 0x1p52L + 1, -(0x1p40L + 0x1p32L + 1),
                                        -0x1p63L, 0x1p63L - 1};
    long double *dst = v;
    const long double *src = NULL;
    switch (dt) {
    case NB_F32: src = fl; break;
    case NB_F64: src = f64x; break;
    case NB_F16:
    case NB_BF16: src = fl; break; /* rounded into the type by the tensor fill below */
    case NB_I64: src = i64; break;
    case NB_U64:
        for (int i = 0; i < NV; i++)
            dst[i] = (long double)(UINT64_MAX - (uint64_t)i * 0x0123456789ABCDEFull);
        dst[0] = 0, dst[1] = 1, dst[2] = 0x1p63L, dst[3] = 65520;
        return NV;
    case NB_BOOL:
        for (int i = 0; i < NV; i++)
            dst[i] = i % 3 == 1;
        return NV;
    default: { /* the integers up to 32 bits: their extremes and some values */
        int bits = (int)nb_dtype_size(dt) * 8;
        bool is_signed = dt == NB_I8 || dt == NB_I16 || dt == NB_I32;
        long double lo = is_signed ? -ldexpl(1, bits - 1) : 0;
        long double hi = is_signed ? ldexpl(1, bits - 1) - 1 : ldexpl(1, bits) - 1;
        const long double mid[NV - 2] = {0, 1, -1, 5, -7, 100, -100, 127, 255, 3};
        dst[0] = lo, dst[1] = hi;
        for (int i = 0; i < NV - 2; i++)
            dst[i + 2] = mid[i] < lo ? -mid[i] : mid[i];
        return NV;
    }
    }
    for (int i = 0; i < NV; i++)
        dst[i] = src[i];
    return NV;
}

/* Raw bytes of an integer dtype for the (in-range, wrapped) value w. */
static void put_int(void *p, nb_dtype dt, uint64_t w)
{
    switch (nb_dtype_size(dt)) {
    case 1: { uint8_t b = (uint8_t)w; memcpy(p, &b, 1); break; }
    case 2: { uint16_t b = (uint16_t)w; memcpy(p, &b, 2); break; }
    case 4: { uint32_t b = (uint32_t)w; memcpy(p, &b, 4); break; }
    default: memcpy(p, &w, 8); break;
    }
}

/* The exact value stored at p (long double holds every dtype's values). */
static long double get_exact(const void *p, nb_dtype dt)
{
    switch (dt) {
    case NB_F32: { float f; memcpy(&f, p, 4); return f; }
    case NB_F64: { double f; memcpy(&f, p, 8); return f; }
    case NB_F16: { uint16_t h; memcpy(&h, p, 2); return ref_decode(h, F16); }
    case NB_BF16: { uint16_t h; memcpy(&h, p, 2); return ref_decode(h, BF16); }
    case NB_I8: { int8_t x; memcpy(&x, p, 1); return x; }
    case NB_I16: { int16_t x; memcpy(&x, p, 2); return x; }
    case NB_I32: { int32_t x; memcpy(&x, p, 4); return x; }
    case NB_I64: { int64_t x; memcpy(&x, p, 8); return (long double)x; }
    case NB_U8: case NB_BOOL: { uint8_t x; memcpy(&x, p, 1); return x; }
    case NB_U16: { uint16_t x; memcpy(&x, p, 2); return x; }
    case NB_U32: { uint32_t x; memcpy(&x, p, 4); return x; }
    default: { uint64_t x; memcpy(&x, p, 8); return (long double)x; }
    }
}

static bool is_fp(nb_dtype t) { return t == NB_F32 || t == NB_F64 || t == NB_F16 || t == NB_BF16; }

/* The bytes CAST must write for the exact value v of dtype `from`. */
static void expect_cast(long double v, nb_dtype from, nb_dtype to, void *out)
{
    switch (to) {
    case NB_F32: { float f = (float)v; memcpy(out, &f, 4); return; }
    case NB_F64: { double f = (double)v; memcpy(out, &f, 8); return; }
    case NB_F16: { uint16_t h = ref_round(v, F16); memcpy(out, &h, 2); return; }
    case NB_BF16: { uint16_t h = ref_round(v, BF16); memcpy(out, &h, 2); return; }
    case NB_BOOL: { uint8_t b = v != 0; memcpy(out, &b, 1); return; } /* NaN != 0 */
    default: break;
    }
    uint64_t w; /* the integer, two's complement mod 2^64, before narrowing */
    if (is_fp(from)) {
        long double t = truncl(v);
        if (isnan(v))
            w = 0;
        else if (to == NB_I32) /* i32 saturates at its own range */
            w = (uint64_t)(int64_t)(t >= 0x1p31L ? 0x1p31L - 1 : t < -0x1p31L ? -0x1p31L : t);
        else if (to == NB_U64 && t >= 0x1p63L)
            w = t >= 0x1p64L ? UINT64_MAX : (uint64_t)t;
        else /* through i64, saturating, then mod 2^bits */
            w = (uint64_t)(int64_t)(t >= 0x1p63L ? 0x1p63L - 1 : t < -0x1p63L ? -0x1p63L : t);
    } else if (from == NB_U64) {
        w = (uint64_t)v;
    } else {
        w = (uint64_t)(int64_t)v; /* wraps mod 2^bits below */
    }
    put_int(out, to, w);
}

/* Whether the bytes got and want (dtype dt) hold the same value; NaN
 * matches NaN, float zeros must have the same sign. */
static bool same_bytes(const void *got, const void *want, nb_dtype dt)
{
    if (is_fp(dt)) {
        long double a = get_exact(got, dt), b = get_exact(want, dt);
        if (isnan(a) || isnan(b))
            return isnan(a) && isnan(b);
        return a == b && !signbit(a) == !signbit(b);
    }
    return memcmp(got, want, nb_dtype_size(dt)) == 0;
}

/* x: the source values of dtype from, filled exactly (f16/bf16 rounded by
 * the oracle, the rounded values being the ones checked). */
static nb_tensor source_tensor(nb_dtype from, int *n)
{
    long double v[NV];
    *n = source_values(from, v);
    nb_tensor x;
    ck_assert_int_eq(nb_tensor_empty(&x, from, 1, S(*n)), NB_OK);
    char *d = nb_tensor_data(&x);
    size_t z = nb_dtype_size(from);
    for (int i = 0; i < *n; i++) {
        if (from == NB_F16 || from == NB_BF16 || from == NB_F32 || from == NB_F64)
            expect_cast(v[i], NB_F64, from, d + (size_t)i * z); /* f64 -> itself is exact */
        else if (from == NB_U64)
            put_int(d + (size_t)i * z, from, (uint64_t)v[i]);
        else
            put_int(d + (size_t)i * z, from, (uint64_t)(int64_t)v[i]);
    }
    return x;
}

START_TEST(test_cast_all_pairs)
{
    for (int f = 0; f < NB_DTYPE_COUNT; f++) {
        nb_dtype from = (nb_dtype)f;
        int n;
        nb_tensor x = source_tensor(from, &n);
        for (int t = 0; t < NB_DTYPE_COUNT; t++) {
            nb_dtype to = (nb_dtype)t;
            nb_tensor y;
            ck_assert_int_eq(nb_tensor_empty(&y, to, 1, S(n)), NB_OK);
            const nb_tensor *in[1] = {&x};
            nb_kernel_call c = {.op = NB_OP_CAST, .n_in = 1, .in = in, .out = &y};
            ck_assert_int_eq(nb_cpu_cast(&c), NB_OK);
            size_t fz = nb_dtype_size(from), tz = nb_dtype_size(to);
            for (int i = 0; i < n; i++) {
                const char *src = (const char *)nb_tensor_data(&x) + (size_t)i * fz;
                const char *got = (const char *)nb_tensor_data(&y) + (size_t)i * tz;
                unsigned char want[8];
                if (from == to)
                    memcpy(want, src, tz); /* a copy of the bits */
                else
                    expect_cast(get_exact(src, from), from, to, want);
                ck_assert_msg(same_bytes(got, want, to), "cast %s -> %s of element %d (%.21Lg) "
                              "gave %.21Lg", nb_dtype_name(from), nb_dtype_name(to), i,
                              get_exact(src, from), get_exact(got, to));
            }
            nb_tensor_release(&y);
        }
        nb_tensor_release(&x);
    }
}
END_TEST

/* nb_tensor_copy_into converts like CAST where their rules agree: into any
 * float type, and integer to integer. The source is a strided view. */
START_TEST(test_copy_into_all_pairs)
{
    for (int f = 0; f < NB_DTYPE_COUNT; f++) {
        nb_dtype from = (nb_dtype)f;
        int n;
        nb_tensor x = source_tensor(from, &n), xs;
        /* a reversed-stride view: x2[i] = x[n - 1 - i] */
        ck_assert_int_eq(nb_tensor_view_of(&xs, x.buf, from, 1, S(n), S(-1), n - 1), NB_OK);
        for (int t = 0; t < NB_DTYPE_COUNT; t++) {
            nb_dtype to = (nb_dtype)t;
            if (!is_fp(to) && is_fp(from))
                continue; /* copy_into saturates at each integer type's range */
            nb_tensor y;
            ck_assert_int_eq(nb_tensor_empty(&y, to, 1, S(n)), NB_OK);
            ck_assert_int_eq(nb_tensor_copy_into(&y, &xs), NB_OK);
            size_t fz = nb_dtype_size(from), tz = nb_dtype_size(to);
            for (int i = 0; i < n; i++) {
                const char *src = (const char *)nb_tensor_data(&x) + (size_t)(n - 1 - i) * fz;
                const char *got = (const char *)nb_tensor_data(&y) + (size_t)i * tz;
                unsigned char want[8];
                expect_cast(get_exact(src, from), from, to, want);
                if (from == to)
                    memcpy(want, src, tz);
                ck_assert_msg(same_bytes(got, want, to), "copy %s -> %s of %.21Lg gave %.21Lg",
                              nb_dtype_name(from), nb_dtype_name(to), get_exact(src, from),
                              get_exact(got, to));
            }
            nb_tensor_release(&y);
        }
        nb_tensor_release(&xs);
        nb_tensor_release(&x);
    }
    /* float to a narrow integer through copy_into saturates at the type's range */
    nb_tensor a, b;
    ck_assert_int_eq(nb_tensor_from_data(&a, NB_F64, 1, S(5), (double[]){300.7, -300, NAN, -1.9, 1e30}),
                     NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&b, NB_I8, 1, S(5)), NB_OK);
    ck_assert_int_eq(nb_tensor_copy_into(&b, &a), NB_OK);
    const int8_t *r = nb_tensor_data(&b);
    ck_assert(r[0] == 127 && r[1] == -128 && r[2] == 0 && r[3] == -1 && r[4] == 127);
    nb_tensor_release(&b);
    ck_assert_int_eq(nb_tensor_empty(&b, NB_U64, 1, S(5)), NB_OK);
    ck_assert_int_eq(nb_tensor_copy_into(&b, &a), NB_OK);
    const uint64_t *u = nb_tensor_data(&b);
    ck_assert(u[0] == 300 && u[1] == 0 && u[2] == 0 && u[3] == 0 && u[4] == UINT64_MAX);
    nb_tensor_release(&b), nb_tensor_release(&a);
}
END_TEST

/* ---- element access, fills, views, printing ------------------------------------ */

START_TEST(test_elements_and_fill)
{
    for (int t = NB_I8; t < NB_DTYPE_COUNT; t++) {
        nb_dtype dt = (nb_dtype)t;
        nb_tensor x, tr, c;
        ck_assert_int_eq(nb_tensor_zeros(&x, dt, 2, S(3, 4)), NB_OK);
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 0; j < 4; j++)
                nb_tensor_set(&x, (int64_t[]){i, j}, (double)(i * 4 + j));
        /* a transposed (strided) copy moves whole elements */
        ck_assert_int_eq(nb_tensor_transpose(&x, 0, 1, &tr), NB_OK);
        ck_assert_int_eq(nb_tensor_contiguous(&tr, &c), NB_OK);
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 0; j < 4; j++)
                ck_assert_msg(nb_tensor_get(&c, (int64_t[]){j, i}) == (double)(i * 4 + j),
                              "%s transposed copy", nb_dtype_name(dt));
        /* fill of a strided view: the column 1 only */
        nb_tensor col;
        ck_assert_int_eq(nb_tensor_slice(&x, 1, 1, 2, 1, &col), NB_OK);
        ck_assert_int_eq(nb_tensor_fill(&col, 42.0), NB_OK);
        for (int64_t i = 0; i < 3; i++) {
            ck_assert(nb_tensor_get(&x, (int64_t[]){i, 1}) == 42.0);
            ck_assert(nb_tensor_get(&x, (int64_t[]){i, 2}) == (double)(i * 4 + 2));
        }
        nb_tensor_release(&col), nb_tensor_release(&c), nb_tensor_release(&tr);
        nb_tensor_release(&x);
    }
    /* stores round (f16/bf16) or truncate and saturate (integers) */
    nb_tensor s;
    ck_assert_int_eq(nb_tensor_scalar(&s, NB_F16, 0.1), NB_OK);
    ck_assert_uint_eq(*(const uint16_t *)nb_tensor_data(&s), 0x2E66);
    nb_tensor_release(&s);
    ck_assert_int_eq(nb_tensor_scalar(&s, NB_BF16, -10.0), NB_OK);
    ck_assert_uint_eq(*(const uint16_t *)nb_tensor_data(&s), 0xC120);
    nb_tensor_release(&s);
    ck_assert_int_eq(nb_tensor_scalar(&s, NB_I16, -40000.9), NB_OK);
    ck_assert_int_eq(*(const int16_t *)nb_tensor_data(&s), -32768);
    nb_tensor_release(&s);
    ck_assert_int_eq(nb_tensor_scalar(&s, NB_U32, 7.9), NB_OK);
    ck_assert_uint_eq(*(const uint32_t *)nb_tensor_data(&s), 7);
    nb_tensor_release(&s);
    ck_assert_int_eq(nb_tensor_scalar(&s, NB_U64, 1e30), NB_OK);
    ck_assert(*(const uint64_t *)nb_tensor_data(&s) == UINT64_MAX);
    ck_assert(nb_tensor_get_flat(&s, 0) == 0x1p64);
    nb_tensor_release(&s);
}
END_TEST

static char *print_to_string(const nb_tensor *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    nb_tensor_print(f, t);
    fclose(f);
    return buf;
}

START_TEST(test_print)
{
    nb_tensor a;
    ck_assert_int_eq(nb_tensor_from_data(&a, NB_F16, 1, S(3), (uint16_t[]){0x3C00, 0xC100, 0x3800}),
                     NB_OK);
    char *s = print_to_string(&a);
    ck_assert_str_eq(s, "tensor([ 1.0000, -2.5000,  0.5000], dtype=f16)\n");
    free(s), nb_tensor_release(&a);
    ck_assert_int_eq(nb_tensor_from_data(&a, NB_U64, 1, S(2), (uint64_t[]){UINT64_MAX, 3}), NB_OK);
    s = print_to_string(&a);
    ck_assert_str_eq(s, "tensor([18446744073709551615,                    3], dtype=u64)\n");
    free(s), nb_tensor_release(&a);
    ck_assert_int_eq(nb_tensor_from_data(&a, NB_I8, 2, S(1, 2), (int8_t[]){-128, 7}), NB_OK);
    s = print_to_string(&a);
    ck_assert_str_eq(s, "tensor([[-128,    7]], dtype=i8)\n");
    free(s), nb_tensor_release(&a);
    ck_assert_int_eq(nb_tensor_from_data(&a, NB_BF16, 0, NULL, (uint16_t[]){0x3FC0}), NB_OK);
    s = print_to_string(&a);
    ck_assert_str_eq(s, "tensor(1.5000, dtype=bf16)\n");
    free(s), nb_tensor_release(&a);
}
END_TEST

/* ---- .npy ------------------------------------------------------------------------ */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

/* NumPy's files load with the right dtype and values, and save back byte for byte. */
START_TEST(test_npy_numpy_files)
{
    static const struct {
        const char *name;
        nb_dtype dt;
        int64_t n;
        long double first, last;
    } rows[] = {
        {"npy_i8.npy", NB_I8, 4, -128, 127},
        {"npy_i16.npy", NB_I16, 4, -32768, 32767},
        {"npy_u16.npy", NB_U16, 4, 0, 65535},
        {"npy_u32.npy", NB_U32, 4, 0, 4294967295.0L},
        {"npy_u64.npy", NB_U64, 4, 0, 18446744073709551615.0L},
        {"npy_f16.npy", NB_F16, 6, 0, NAN},
    };
    char dir[] = "/tmp/nb_storage_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char path[4096], out[4200];
        char rel[64];
        snprintf(rel, sizeof rel, "storage_dtypes/%s", rows[i].name);
        tests_path(rel, path, sizeof path);
        nb_tensor t;
        ck_assert_msg(nb_npy_load(path, &t) == NB_OK, "%s", nb_last_error());
        ck_assert_int_eq(t.dtype, rows[i].dt);
        ck_assert_int_eq(nb_tensor_numel(&t), rows[i].n);
        size_t z = nb_dtype_size(t.dtype);
        long double first = get_exact(nb_tensor_data(&t), t.dtype);
        long double last = get_exact((char *)nb_tensor_data(&t) + (size_t)(rows[i].n - 1) * z, t.dtype);
        ck_assert(first == rows[i].first);
        ck_assert(isnan(rows[i].last) ? isnan(last) : last == rows[i].last);
        snprintf(out, sizeof out, "%s/%s", dir, rows[i].name);
        ck_assert_int_eq(nb_npy_save(out, &t), NB_OK);
        size_t la, lb;
        char *a = read_file(path, &la), *b = read_file(out, &lb);
        ck_assert_msg(la == lb && memcmp(a, b, la) == 0, "%s: saved file differs from NumPy's",
                      rows[i].name);
        free(a), free(b);
        unlink(out);
        nb_tensor_release(&t);
    }
    /* bf16 has no NumPy code */
    nb_tensor bf;
    char out[4200];
    snprintf(out, sizeof out, "%s/bf16.npy", dir);
    ck_assert_int_eq(nb_tensor_zeros(&bf, NB_BF16, 1, S(2)), NB_OK);
    ck_assert_int_eq(nb_npy_save(out, &bf), NB_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "bf16"));
    ck_assert(access(out, F_OK) != 0);
    nb_tensor_release(&bf);
    rmdir(dir);
}
END_TEST

/* ---- compute ops refuse storage dtypes; casts carry them through a graph ---------- */

START_TEST(test_compute_ops_refuse)
{
    static const nb_dtype storage[] = {NB_I8, NB_I16, NB_U16, NB_U32, NB_U64, NB_F16, NB_BF16};
    for (size_t i = 0; i < sizeof storage / sizeof storage[0]; i++) {
        nb_dtype dt = storage[i];
        const char *dn = nb_dtype_name(dt);
        struct {
            const char *op;
            int which;
        } ops[] = {{"add", 0}, {"eq", 1}, {"exp", 2}, {"matmul", 3}, {"sum", 4}};
        for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
            nb_graph *g = nb_graph_new();
            nb_node *a = nb_input(g, "a", dt, 2, S(2, 2));
            nb_node *b = nb_input(g, "b", dt, 2, S(2, 2));
            switch (ops[k].which) {
            case 0: nb_add(g, a, b); break;
            case 1: nb_eq(g, a, b); break;
            case 2: nb_exp(g, a); break;
            case 3: nb_matmul(g, a, b); break;
            default: nb_sum(g, a, 0, NULL, false); break;
            }
            ck_assert_int_eq(nb_graph_status(g), NB_ERR_DTYPE);
            const char *msg = nb_graph_error(g);
            ck_assert_msg(strstr(msg, ops[k].op) && strstr(msg, dn), "%s on %s: '%s'", ops[k].op,
                          dn, msg);
            nb_graph_free(g);
        }
        /* the kernels refuse them too, naming op and dtype */
        nb_tensor x, y;
        ck_assert_int_eq(nb_tensor_zeros(&x, dt, 1, S(4)), NB_OK);
        ck_assert_int_eq(nb_tensor_zeros(&y, dt, 1, S(4)), NB_OK);
        const nb_tensor *in2[2] = {&x, &x};
        nb_kernel_call c = {.op = NB_OP_ADD, .n_in = 2, .in = in2, .out = &y};
        ck_assert_int_eq(nb_cpu_binary(&c), NB_ERR_DTYPE);
        ck_assert(strstr(nb_last_error(), "add") && strstr(nb_last_error(), dn));
        c = (nb_kernel_call){.op = NB_OP_EXP, .n_in = 1, .in = in2, .out = &y};
        ck_assert_int_eq(nb_cpu_unary(&c), NB_ERR_DTYPE);
        ck_assert(strstr(nb_last_error(), "exp") && strstr(nb_last_error(), dn));
        nb_tensor_release(&x), nb_tensor_release(&y);
    }
    /* the builder's hint names the compute type */
    nb_graph *g = nb_graph_new();
    nb_node *a = nb_input(g, "a", NB_F16, 1, S(3));
    nb_mul(g, a, a);
    ck_assert_ptr_nonnull(strstr(nb_graph_error(g), "cast it to f32"));
    nb_graph_free(g);
}
END_TEST

/* f16 input -> f32 -> exp -> f16 output through a compiled plan. */
START_TEST(test_graph_through_casts)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", NB_F16, 1, S(4));
    nb_node *y = nb_cast(g, nb_exp(g, nb_cast(g, x, NB_F32)), NB_F16);
    nb_node *k = nb_cast(g, nb_cast(g, x, NB_I8), NB_U64);
    ck_assert_int_eq(nb_graph_status(g), NB_OK);
    nb_node *outs[2] = {y, k};
    nb_plan *p = nb_compile(g, 2, outs, NULL);
    ck_assert_ptr_nonnull(p);
    nb_session *s = nb_session_new(p);
    nb_tensor in, oy, ok;
    const uint16_t xv[4] = {0x0000, 0x3C00, 0xC000, 0x4900}; /* 0, 1, -2, 10 */
    ck_assert_int_eq(nb_tensor_from_data(&in, NB_F16, 1, S(4), xv), NB_OK);
    ck_assert_int_eq(nb_session_feed(s, x, &in), NB_OK);
    ck_assert_int_eq(nb_session_run(s), NB_OK);
    ck_assert_int_eq(nb_session_fetch(s, y, &oy), NB_OK);
    ck_assert_int_eq(nb_session_fetch(s, k, &ok), NB_OK);
    ck_assert_int_eq(oy.dtype, NB_F16);
    ck_assert_int_eq(ok.dtype, NB_U64);
    const double xs[4] = {0, 1, -2, 10};
    for (int i = 0; i < 4; i++) {
        uint16_t got;
        memcpy(&got, (const char *)nb_tensor_data(&oy) + 2 * i, 2);
        long double want = expl(xs[i]); /* within one f16 step (2^-10 relative) */
        ck_assert(fabsl(ref_decode(got, F16) - want) <= 0x1p-10L * want);
        uint64_t kv;
        memcpy(&kv, (const char *)nb_tensor_data(&ok) + 8 * i, 8);
        ck_assert(kv == (uint64_t)(int64_t)xs[i]); /* -2 wraps to 2^64 - 2 */
    }
    nb_tensor_release(&in), nb_tensor_release(&oy), nb_tensor_release(&ok);
    nb_session_free(s);
    nb_plan_free(p);
    nb_graph_free(g);
}
END_TEST

/* The data-movement ops carry storage dtypes of every size: transpose,
 * concat, slice, reshape, expand and gather, checked element by element. */
START_TEST(test_movement_ops)
{
    static const nb_dtype dts[] = {NB_I8, NB_F16, NB_BF16, NB_U16, NB_U32, NB_U64};
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        nb_dtype dt = dts[d];
        nb_graph *g = nb_graph_new();
        nb_node *x = nb_input(g, "x", dt, 2, S(2, 3));
        nb_node *t = nb_transpose(g, x, 0, 1);                          /* (3,2) */
        nb_node *c = nb_concat(g, 2, (nb_node *[]){t, t}, 0);           /* (6,2) */
        nb_node *sl = nb_slice(g, c, 0, 1, 6, 2);                       /* rows 1, 3, 5 */
        nb_node *e = nb_expand(g, nb_reshape(g, sl, 3, S(1, 3, 2)), 3, S(2, 3, 2));
        nb_tensor idx;
        ck_assert_int_eq(nb_tensor_from_data(&idx, NB_I64, 1, S(2), (int64_t[]){2, 0}), NB_OK);
        nb_node *gi = nb_gather(g, x, 1, nb_constant(g, &idx));         /* (2,2) */
        nb_tensor_release(&idx);
        ck_assert_msg(nb_graph_status(g) == NB_OK, "%s: %s", nb_dtype_name(dt), nb_graph_error(g));
        nb_node *outs[2] = {e, gi};
        nb_plan *p = nb_compile(g, 2, outs, NULL);
        ck_assert_msg(p != NULL, "%s", nb_last_error());
        nb_session *s = nb_session_new(p);
        nb_tensor in, oe, og;
        ck_assert_int_eq(nb_tensor_empty(&in, dt, 2, S(2, 3)), NB_OK);
        for (int64_t i = 0; i < 6; i++)
            nb_tensor_set(&in, (int64_t[]){i / 3, i % 3}, (double)(i + 1));
        ck_assert_int_eq(nb_session_feed(s, x, &in), NB_OK);
        ck_assert_msg(nb_session_run(s) == NB_OK, "%s: %s", nb_dtype_name(dt), nb_last_error());
        ck_assert_int_eq(nb_session_fetch(s, e, &oe), NB_OK);
        ck_assert_int_eq(nb_session_fetch(s, gi, &og), NB_OK);
        ck_assert_int_eq(oe.dtype, dt);
        ck_assert_int_eq(og.dtype, dt);
        static const int trow[3] = {1, 0, 2}; /* slice row q is transpose row (1 + 2q) % 3 */
        for (int b = 0; b < 2; b++)
            for (int q = 0; q < 3; q++)
                for (int k = 0; k < 2; k++) /* t[j][k] = x[k][j] = 3k + j + 1 */
                    ck_assert_msg(nb_tensor_get(&oe, (int64_t[]){b, q, k}) == 3 * k + trow[q] + 1,
                                  "%s expand/slice/concat/transpose", nb_dtype_name(dt));
        for (int i = 0; i < 2; i++)
            for (int m = 0; m < 2; m++)
                ck_assert(nb_tensor_get(&og, (int64_t[]){i, m}) == 3 * i + (m ? 0 : 2) + 1);
        nb_tensor_release(&in), nb_tensor_release(&oe), nb_tensor_release(&og);
        nb_session_free(s);
        nb_plan_free(p);
        nb_graph_free(g);
    }
}
END_TEST

/* ---- ONNX, end to end -------------------------------------------------------------- */

static void load_fixture(const char *name, nb_tensor *t)
{
    char rel[128], path[4096];
    snprintf(rel, sizeof rel, "storage_dtypes/%s", name);
    ck_assert_msg(nb_npy_load(tests_path(rel, path, sizeof path), t) == NB_OK, "%s",
                  nb_last_error());
}

START_TEST(test_onnx_model)
{
    char path[4096];
    nb_onnx_model *m;
    ck_assert_msg(nb_onnx_load(tests_path("storage_dtypes/model.onnx", path, sizeof path), &m) ==
                      NB_OK, "%s", nb_last_error());
    ck_assert_int_eq(nb_onnx_input(m, 0)->dtype, NB_I8);
    ck_assert_int_eq(nb_onnx_input(m, 1)->dtype, NB_F16);
    enum { NOUT = 11 };
    static const nb_dtype want_dt[NOUT] = {NB_I8,  NB_BOOL, NB_I32,  NB_F16, NB_F32, NB_F32,
                                           NB_F32, NB_BF16, NB_I32,  NB_F32, NB_F32};
    nb_tensor in[2];
    load_fixture("input_0.npy", &in[0]);
    load_fixture("input_1.npy", &in[1]);
    nb_onnx_session *sess = nb_onnx_session_new(m);
    for (int run = 0; run < 3; run++) { /* a new plan, then the cached one; then a session */
        nb_tensor out[NOUT] = {{0}};
        int n_out = NOUT;
        nb_status st = run < 2 ? nb_onnx_run(m, 2, in, &n_out, out)
                               : nb_onnx_session_run(sess, 2, in, &n_out, out);
        ck_assert_msg(st == NB_OK, "%s", nb_last_error());
        ck_assert_int_eq(n_out, NOUT);
        for (int k = 0; k < NOUT; k++) {
            char name[32];
            nb_tensor e;
            snprintf(name, sizeof name, "output_%d.npy", k);
            load_fixture(name, &e);
            if (k == 7) /* NumPy has no bfloat16: the expected bits are u16 */
                e.dtype = NB_BF16;
            ck_assert_msg(out[k].dtype == want_dt[k], "output %d is %s", k,
                          nb_dtype_name(out[k].dtype));
            ck_assert_int_eq(out[k].dtype, e.dtype);
            ck_assert(nb_shape_equal(out[k].ndim, out[k].shape, e.ndim, e.shape));
            if (k == 5) { /* pow: libm's powf may differ from NumPy's in the last bit */
                for (int64_t i = 0; i < nb_tensor_numel(&e); i++) {
                    double a = nb_tensor_get_flat(&out[k], i), b = nb_tensor_get_flat(&e, i);
                    ck_assert_msg(a == b || fabs(a - b) <= 1e-6 * fabs(b), "pow %lld: %g vs %g",
                                  (long long)i, a, b);
                }
            } else {
                ck_assert_msg(memcmp(nb_tensor_data(&out[k]), nb_tensor_data(&e),
                                     nb_tensor_nbytes(&e)) == 0,
                              "output %d differs from NumPy's", k);
            }
            nb_tensor_release(&e);
            nb_tensor_release(&out[k]);
        }
    }
    /* the wrong input dtype is refused, naming both */
    nb_tensor wrong, out[NOUT] = {{0}};
    int n_out = NOUT;
    ck_assert_int_eq(nb_tensor_zeros(&wrong, NB_U8, 2, S(2, 3)), NB_OK);
    nb_tensor bad[2] = {wrong, in[1]};
    ck_assert_int_eq(nb_onnx_run(m, 2, bad, &n_out, out), NB_ERR_DTYPE);
    ck_assert(strstr(nb_last_error(), "i8") && strstr(nb_last_error(), "u8"));
    nb_tensor_release(&wrong);
    nb_onnx_session_free(sess);
    nb_tensor_release(&in[0]), nb_tensor_release(&in[1]);
    nb_onnx_free(m);
}
END_TEST

/* `nabla run` prints storage-typed outputs and writes them as .npy. */
START_TEST(test_cli_run)
{
    char model[4096], x[4096], h[4096];
    tests_path("storage_dtypes/model.onnx", model, sizeof model);
    tests_path("storage_dtypes/input_0.npy", x, sizeof x);
    tests_path("storage_dtypes/input_1.npy", h, sizeof h);
    int status;
    const char *args[] = {"run", model, "-i", x, "-i", h, NULL};
    char *out = run_nabla_output(args, &status);
    ck_assert_msg(status == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "output 0 'm' (2,3) i8"));
    ck_assert_ptr_nonnull(strstr(out, "[  7, 100, 127]], dtype=i8)"));
    ck_assert_ptr_nonnull(strstr(out, "output 7 'hb' (2,3) bf16"));
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("storage_dtypes");
    TCase *tc = tcase_create("tensors");
    tcase_add_test(tc, test_cast_all_pairs);
    tcase_add_test(tc, test_copy_into_all_pairs);
    tcase_add_test(tc, test_elements_and_fill);
    tcase_add_test(tc, test_print);
    tcase_add_test(tc, test_npy_numpy_files);
    suite_add_tcase(s, tc);
    tc = tcase_create("graph_onnx");
    tcase_add_test(tc, test_compute_ops_refuse);
    tcase_add_test(tc, test_graph_through_casts);
    tcase_add_test(tc, test_movement_ops);
    tcase_add_test(tc, test_onnx_model);
    tcase_add_test(tc, test_cli_run);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
