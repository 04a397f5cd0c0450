/* Tests of tensor/: status, dtypes, shapes, buffers, views, copies, printing. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check_main.h"
#include "tensor/tensor.h"

/* A contiguous tensor holding 0, 1, 2, ... of dtype dt. */
static nb_tensor arange(nb_dtype dt, int ndim, const int64_t *shape)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, dt, ndim, shape), NB_OK);
    int64_t n = nb_tensor_numel(&t);
    for (int64_t i = 0; i < n; i++) {
        int64_t idx[NB_MAX_DIMS], r = i;
        for (int d = ndim - 1; d >= 0; d--) {
            idx[d] = r % shape[d];
            r /= shape[d];
        }
        nb_tensor_set(&t, idx, (double)i);
    }
    return t;
}

/* Printed form of t as a heap string (caller frees). */
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

static void check_print(const nb_tensor *t, const char *expect)
{
    char *s = print_to_string(t);
    ck_assert_str_eq(s, expect);
    free(s);
}

/* ---- status and dtype ---------------------------------------------------- */

static void *other_thread(void *arg)
{
    nb_error(NB_ERR_IO, "from the other thread");
    return (void *)(intptr_t)(strcmp(nb_last_error(), "from the other thread") == 0);
}

START_TEST(test_status)
{
    nb_clear_error();
    ck_assert_str_eq(nb_last_error(), "");
    ck_assert_int_eq(nb_error(NB_ERR_SHAPE, "bad %s %d", "dim", 3), NB_ERR_SHAPE);
    ck_assert_str_eq(nb_last_error(), "bad dim 3");
    ck_assert_str_eq(nb_status_str(NB_OK), "ok");
    ck_assert_str_eq(nb_status_str(NB_ERR_SHAPE), "shape error");
    for (int s = NB_OK; s <= NB_ERR_STATE; s++)
        ck_assert(strlen(nb_status_str((nb_status)s)) > 0);
    /* a long message is truncated, not overflowed */
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    nb_error(NB_ERR_ARG, "%s", big);
    ck_assert_uint_eq(strlen(nb_last_error()), 1023);
    /* the message is per thread */
    nb_error(NB_ERR_ARG, "main thread");
    pthread_t th;
    void *ok;
    ck_assert_int_eq(pthread_create(&th, NULL, other_thread, NULL), 0);
    pthread_join(th, &ok);
    ck_assert(ok != NULL);
    ck_assert_str_eq(nb_last_error(), "main thread");
    nb_clear_error();
    ck_assert_str_eq(nb_last_error(), "");
}
END_TEST

START_TEST(test_dtype)
{
    ck_assert_uint_eq(nb_dtype_size(NB_F32), 4);
    ck_assert_uint_eq(nb_dtype_size(NB_F64), 8);
    ck_assert_uint_eq(nb_dtype_size(NB_I32), 4);
    ck_assert_uint_eq(nb_dtype_size(NB_I64), 8);
    ck_assert_uint_eq(nb_dtype_size(NB_U8), 1);
    ck_assert_uint_eq(nb_dtype_size(NB_BOOL), 1);
    ck_assert_str_eq(nb_dtype_name(NB_F32), "f32");
    ck_assert_str_eq(nb_dtype_name(NB_BOOL), "bool");
    ck_assert_str_eq(nb_dtype_name(NB_I64), "i64");
    ck_assert(nb_dtype_is_float(NB_F64) && !nb_dtype_is_float(NB_I32));
    ck_assert(nb_dtype_valid(NB_U8) && !nb_dtype_valid(-1) && !nb_dtype_valid(NB_DTYPE_COUNT));
}
END_TEST

/* ---- shapes -------------------------------------------------------------- */

START_TEST(test_shape_basics)
{
    int64_t s[3] = {2, 3, 4}, st[3];
    ck_assert_int_eq(nb_shape_numel(3, s), 24);
    ck_assert_int_eq(nb_shape_numel(0, s), 1);
    nb_shape_strides(3, s, st);
    ck_assert(st[0] == 12 && st[1] == 4 && st[2] == 1);
    ck_assert(nb_shape_equal(3, s, 3, (int64_t[]){2, 3, 4}));
    ck_assert(!nb_shape_equal(3, s, 2, s));
    ck_assert(!nb_shape_equal(3, s, 3, (int64_t[]){2, 3, 5}));
    char buf[64];
    ck_assert_str_eq(nb_shape_str(2, (int64_t[]){2, 3}, buf, sizeof buf), "(2,3)");
    ck_assert_str_eq(nb_shape_str(0, NULL, buf, sizeof buf), "()");
    ck_assert_str_eq(nb_shape_str(1, (int64_t[]){5}, buf, sizeof buf), "(5)");
    ck_assert_str_eq(nb_shape_str(3, s, buf, 5), "(2,3");
    ck_assert_int_eq(nb_axis_norm(-1, 3), 2);
    ck_assert_int_eq(nb_axis_norm(2, 3), 2);
    ck_assert_int_eq(nb_axis_norm(3, 3), -1);
    ck_assert_int_eq(nb_axis_norm(-4, 3), -1);
}
END_TEST

typedef struct bcase {
    int na;
    int64_t a[4];
    int nb;
    int64_t b[4];
    int nout; /* -1: must fail */
    int64_t out[4];
} bcase;

START_TEST(test_broadcast_table)
{
    static const bcase cases[] = {
        {2, {3, 1}, 2, {1, 4}, 2, {3, 4}},
        {3, {2, 3, 4}, 1, {4}, 3, {2, 3, 4}},
        {0, {0}, 2, {5, 6}, 2, {5, 6}},
        {4, {8, 1, 6, 1}, 3, {7, 1, 5}, 4, {8, 7, 6, 5}},
        {1, {0}, 1, {1}, 1, {0}},
        {1, {1}, 1, {0}, 1, {0}},
        {2, {5, 4}, 1, {1}, 2, {5, 4}},
        {2, {15, 3}, 3, {15, 1, 1}, 3, {15, 15, 3}},
        {0, {0}, 0, {0}, 0, {0}},
        {1, {3}, 1, {4}, -1, {0}},
        {2, {2, 1}, 3, {8, 4, 3}, -1, {0}},
        {1, {0}, 1, {2}, -1, {0}},
        {3, {2, 3, 4}, 2, {3, 5}, -1, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bcase *c = &cases[i];
        int64_t out[NB_MAX_DIMS];
        int nout = -7;
        bool ok = nb_shape_broadcast(c->na, c->a, c->nb, c->b, &nout, out);
        ck_assert_msg(ok == (c->nout >= 0), "case %zu", i);
        if (!ok)
            continue;
        ck_assert_msg(nb_shape_equal(nout, out, c->nout, c->out), "case %zu", i);
        /* broadcasting is symmetric */
        ck_assert(nb_shape_broadcast(c->nb, c->b, c->na, c->a, &nout, out));
        ck_assert_msg(nb_shape_equal(nout, out, c->nout, c->out), "case %zu swapped", i);
    }
}
END_TEST

/* ---- creation and element access ----------------------------------------- */

START_TEST(test_create)
{
    nb_tensor t;
    int64_t sh[2] = {3, 5};
    ck_assert_int_eq(nb_tensor_zeros(&t, NB_F64, 2, sh), NB_OK);
    ck_assert_uint_eq((uintptr_t)t.buf->data % 64, 0);
    ck_assert(nb_tensor_is_contiguous(&t));
    ck_assert_int_eq(t.strides[0], 5);
    ck_assert_int_eq(nb_tensor_numel(&t), 15);
    ck_assert_uint_eq(nb_tensor_nbytes(&t), 120);
    ck_assert(nb_tensor_max_abs(&t) == 0.0);
    nb_tensor_release(&t);
    ck_assert_ptr_null(t.buf);
    nb_tensor_release(&t); /* safe twice */

    int32_t data[4] = {1, -2, 3, -4};
    ck_assert_int_eq(nb_tensor_from_data(&t, NB_I32, 2, (int64_t[]){2, 2}, data), NB_OK);
    ck_assert(nb_tensor_get(&t, (int64_t[]){1, 1}) == -4.0);
    ck_assert(nb_tensor_get_flat(&t, 1) == -2.0);
    nb_tensor_release(&t);

    ck_assert_int_eq(nb_tensor_scalar(&t, NB_F32, 1.5), NB_OK);
    ck_assert_int_eq(t.ndim, 0);
    ck_assert(nb_tensor_get(&t, NULL) == 1.5);
    ck_assert(nb_tensor_get_flat(&t, 0) == 1.5);
    nb_tensor_release(&t);

    /* bad requests give statuses, not crashes */
    ck_assert_int_eq(nb_tensor_empty(&t, NB_F32, 9, (int64_t[9]){1}), NB_ERR_SHAPE);
    ck_assert_int_eq(nb_tensor_empty(&t, NB_F32, 2, (int64_t[]){2, -1}), NB_ERR_SHAPE);
    ck_assert(strstr(nb_last_error(), "(2,-1)") != NULL);
    ck_assert_int_eq(nb_tensor_empty(&t, (nb_dtype)42, 1, (int64_t[]){2}), NB_ERR_DTYPE);
    ck_assert_int_eq(nb_tensor_empty(&t, NB_F64, 2, (int64_t[]){INT64_MAX, 4}), NB_ERR_ALLOC);
    ck_assert_ptr_null(t.buf);

    /* zero-element tensors are fine */
    ck_assert_int_eq(nb_tensor_zeros(&t, NB_F32, 2, (int64_t[]){0, 3}), NB_OK);
    ck_assert_int_eq(nb_tensor_numel(&t), 0);
    ck_assert(nb_tensor_is_contiguous(&t));
    nb_tensor_release(&t);
}
END_TEST

START_TEST(test_get_set_range)
{
    nb_tensor t = arange(NB_F32, 2, (int64_t[]){2, 3});
    nb_clear_error();
    ck_assert(isnan(nb_tensor_get(&t, (int64_t[]){2, 0})));
    ck_assert(strstr(nb_last_error(), "out of range") != NULL);
    ck_assert(isnan(nb_tensor_get(&t, (int64_t[]){0, -1})));
    nb_tensor_set(&t, (int64_t[]){0, 3}, 9.0); /* ignored */
    ck_assert(isnan(nb_tensor_get_flat(&t, 6)));
    for (int64_t i = 0; i < 6; i++)
        ck_assert(nb_tensor_get_flat(&t, i) == (double)i);
    nb_tensor_release(&t);
}
END_TEST

/* ---- views --------------------------------------------------------------- */

/* base (2,3,4) = arange; permute (2,0,1) gives p[k,i,j] = base[i,j,k]; then the
 * slice k in -3::2 of a dim of 4 takes k = 1, 3. */
START_TEST(test_permute_then_slice)
{
    int64_t sh[3] = {2, 3, 4};
    nb_tensor base = arange(NB_F32, 3, sh), p, s, c;
    ck_assert_int_eq(nb_tensor_permute(&base, (int[]){2, 0, 1}, &p), NB_OK);
    ck_assert(p.shape[0] == 4 && p.shape[1] == 2 && p.shape[2] == 3);
    ck_assert(p.strides[0] == 1 && p.strides[1] == 12 && p.strides[2] == 4);
    ck_assert(!nb_tensor_is_contiguous(&p));
    ck_assert_int_eq(nb_tensor_slice(&p, 0, -3, 100, 2, &s), NB_OK);
    ck_assert_int_eq(s.shape[0], 2);
    ck_assert_int_eq(s.strides[0], 2);
    for (int64_t a = 0; a < 2; a++)
        for (int64_t i = 0; i < 2; i++)
            for (int64_t j = 0; j < 3; j++) {
                double want = (double)(i * 12 + j * 4 + 1 + 2 * a);
                ck_assert(nb_tensor_get(&s, (int64_t[]){a, i, j}) == want);
            }
    /* a contiguous copy reads the same in row-major order */
    ck_assert_int_eq(nb_tensor_contiguous(&s, &c), NB_OK);
    ck_assert(nb_tensor_is_contiguous(&c));
    ck_assert(nb_tensor_get_flat(&c, 0) == 1.0);
    ck_assert(nb_tensor_get_flat(&c, 1) == 5.0);
    ck_assert(nb_tensor_get_flat(&c, 3) == 13.0);
    ck_assert(nb_tensor_get_flat(&c, 6) == 3.0);
    ck_assert(nb_tensor_max_abs_diff(&c, &s) == 0.0);
    nb_tensor_release(&c);
    nb_tensor_release(&s);
    nb_tensor_release(&p);
    nb_tensor_release(&base);
}
END_TEST

START_TEST(test_view_writes_reach_base)
{
    nb_tensor base = arange(NB_I64, 2, (int64_t[]){3, 4}), v, col;
    ck_assert_int_eq(nb_tensor_transpose(&base, 0, -1, &v), NB_OK);
    nb_tensor_set(&v, (int64_t[]){3, 1}, -7);
    ck_assert(nb_tensor_get(&base, (int64_t[]){1, 3}) == -7.0);
    /* fill a strided column view: only that column changes */
    ck_assert_int_eq(nb_tensor_slice(&base, 1, 2, 3, 1, &col), NB_OK);
    ck_assert_int_eq(nb_tensor_fill(&col, 100), NB_OK);
    for (int64_t i = 0; i < 3; i++)
        for (int64_t j = 0; j < 4; j++) {
            double want = j == 2 ? 100 : (i == 1 && j == 3) ? -7 : (double)(i * 4 + j);
            ck_assert(nb_tensor_get(&base, (int64_t[]){i, j}) == want);
        }
    nb_tensor_release(&col);
    nb_tensor_release(&v);
    nb_tensor_release(&base);
}
END_TEST

/* Slice of a dim of 10 and the first index and count it must give. */
START_TEST(test_slice_clamping)
{
    static const struct {
        int64_t start, stop, step, first, count;
    } cases[] = {
        {-100, 100, 1, 0, 10}, {5, 2, 1, 0, 0},  {-3, -1, 1, 7, 2}, {3, 10, 3, 3, 3},
        {3, 9, 3, 3, 2},       {12, 20, 1, 0, 0}, {0, 10, 4, 0, 3}, {-1, 10, 5, 9, 1},
        {9, -11, 1, 0, 0},     {2, 3, 100, 2, 1},
    };
    nb_tensor t = arange(NB_I32, 1, (int64_t[]){10}), s;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(nb_tensor_slice(&t, 0, cases[i].start, cases[i].stop, cases[i].step, &s),
                         NB_OK);
        ck_assert_msg(s.shape[0] == cases[i].count, "case %zu: count %lld", i,
                      (long long)s.shape[0]);
        for (int64_t k = 0; k < s.shape[0]; k++)
            ck_assert(nb_tensor_get_flat(&s, k) == (double)(cases[i].first + k * cases[i].step));
        nb_tensor_release(&s);
    }
    ck_assert_int_eq(nb_tensor_slice(&t, 0, 0, 5, 0, &s), NB_ERR_ARG);
    ck_assert_int_eq(nb_tensor_slice(&t, 1, 0, 5, 1, &s), NB_ERR_ARG);
    nb_tensor_release(&t);
}
END_TEST

START_TEST(test_reshape)
{
    nb_tensor base = arange(NB_F32, 3, (int64_t[]){2, 3, 4}), r, tr, r2;
    ck_assert_int_eq(nb_tensor_reshape(&base, 2, (int64_t[]){6, -1}, &r), NB_OK);
    ck_assert(r.shape[1] == 4 && r.strides[0] == 4 && r.strides[1] == 1);
    ck_assert(r.buf == base.buf);
    nb_tensor_release(&r);
    ck_assert_int_eq(nb_tensor_reshape(&base, 2, (int64_t[]){-1, -1}, &r), NB_ERR_SHAPE);
    ck_assert_int_eq(nb_tensor_reshape(&base, 2, (int64_t[]){5, -1}, &r), NB_ERR_SHAPE);
    ck_assert_int_eq(nb_tensor_reshape(&base, 2, (int64_t[]){5, 5}, &r), NB_ERR_SHAPE);
    ck_assert(strstr(nb_last_error(), "(2,3,4)") != NULL);
    ck_assert_int_eq(nb_tensor_reshape(&base, 2, (int64_t[]){0, -1}, &r), NB_ERR_SHAPE);
    ck_assert_int_eq(nb_tensor_reshape(&base, 2, (int64_t[]){-2, 12}, &r), NB_ERR_SHAPE);

    /* a transposed matrix cannot be flattened without a copy */
    nb_tensor m = arange(NB_F32, 2, (int64_t[]){3, 4});
    ck_assert_int_eq(nb_tensor_transpose(&m, 0, 1, &tr), NB_OK); /* (4,3) strides (1,4) */
    ck_assert_int_eq(nb_tensor_reshape(&tr, 1, (int64_t[]){12}, &r), NB_ERR_SHAPE);
    ck_assert(strstr(nb_last_error(), "copy") != NULL);
    /* ... but splitting its first dim is a view: (2,2,3) strides (2,1,4) */
    ck_assert_int_eq(nb_tensor_reshape(&tr, 3, (int64_t[]){2, 2, 3}, &r2), NB_OK);
    ck_assert(r2.strides[0] == 2 && r2.strides[1] == 1 && r2.strides[2] == 4);
    for (int64_t a = 0; a < 2; a++)
        for (int64_t b = 0; b < 2; b++)
            for (int64_t c = 0; c < 3; c++)
                ck_assert(nb_tensor_get(&r2, (int64_t[]){a, b, c}) ==
                          nb_tensor_get(&m, (int64_t[]){c, a * 2 + b}));
    nb_tensor_release(&r2);
    /* size-1 dims can go anywhere */
    ck_assert_int_eq(nb_tensor_reshape(&tr, 4, (int64_t[]){1, 4, 1, 3}, &r2), NB_OK);
    ck_assert(nb_tensor_get(&r2, (int64_t[]){0, 3, 0, 1}) == 7.0);
    nb_tensor_release(&r2);

    /* every other column of a 6-wide matrix: (4,3) strides (6,2) is one run of stride 2 */
    nb_tensor w = arange(NB_F64, 2, (int64_t[]){4, 6}), sl;
    ck_assert_int_eq(nb_tensor_slice(&w, 1, 0, 6, 2, &sl), NB_OK);
    ck_assert_int_eq(nb_tensor_reshape(&sl, 1, (int64_t[]){12}, &r2), NB_OK);
    ck_assert_int_eq(r2.strides[0], 2);
    ck_assert(nb_tensor_get(&r2, (int64_t[]){11}) == 22.0);
    nb_tensor_release(&r2);
    nb_tensor_release(&sl);
    /* the first 3 columns: (4,3) strides (6,1) splits but does not flatten */
    ck_assert_int_eq(nb_tensor_slice(&w, 1, 0, 3, 1, &sl), NB_OK);
    ck_assert_int_eq(nb_tensor_reshape(&sl, 3, (int64_t[]){2, 2, 3}, &r2), NB_OK);
    ck_assert(r2.strides[0] == 12 && r2.strides[1] == 6 && r2.strides[2] == 1);
    ck_assert(nb_tensor_get(&r2, (int64_t[]){1, 1, 2}) == 20.0);
    nb_tensor_release(&r2);
    ck_assert_int_eq(nb_tensor_reshape(&sl, 1, (int64_t[]){12}, &r2), NB_ERR_SHAPE);
    ck_assert_int_eq(nb_tensor_reshape(&sl, 2, (int64_t[]){3, 4}, &r2), NB_ERR_SHAPE);

    /* expanded rows: (3,4) strides (0,1) */
    nb_tensor row = arange(NB_F32, 2, (int64_t[]){1, 4}), e;
    ck_assert_int_eq(nb_tensor_expand(&row, 2, (int64_t[]){3, 4}, &e), NB_OK);
    ck_assert_int_eq(nb_tensor_reshape(&e, 1, (int64_t[]){12}, &r2), NB_ERR_SHAPE);
    ck_assert_int_eq(nb_tensor_reshape(&e, 3, (int64_t[]){3, 2, 2}, &r2), NB_OK);
    ck_assert(r2.strides[0] == 0 && r2.strides[1] == 2 && r2.strides[2] == 1);
    nb_tensor_release(&r2);

    /* 0-d <-> (1,1) */
    nb_tensor s0, s1, s2;
    ck_assert_int_eq(nb_tensor_scalar(&s0, NB_F64, 2.5), NB_OK);
    ck_assert_int_eq(nb_tensor_reshape(&s0, 2, (int64_t[]){1, -1}, &s1), NB_OK);
    ck_assert(s1.shape[0] == 1 && s1.shape[1] == 1);
    ck_assert_int_eq(nb_tensor_reshape(&s1, 0, NULL, &s2), NB_OK);
    ck_assert(s2.ndim == 0 && nb_tensor_get(&s2, NULL) == 2.5);
    nb_tensor_release(&s0);
    nb_tensor_release(&s1);
    nb_tensor_release(&s2);

    nb_tensor_release(&e);
    nb_tensor_release(&row);
    nb_tensor_release(&sl);
    nb_tensor_release(&w);
    nb_tensor_release(&tr);
    nb_tensor_release(&m);
    nb_tensor_release(&base);
}
END_TEST

START_TEST(test_expand)
{
    nb_tensor c = arange(NB_F32, 2, (int64_t[]){3, 1}), e, k;
    ck_assert_int_eq(nb_tensor_expand(&c, 3, (int64_t[]){2, 3, 4}, &e), NB_OK);
    ck_assert(e.strides[0] == 0 && e.strides[1] == 1 && e.strides[2] == 0);
    for (int64_t a = 0; a < 2; a++)
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 0; j < 4; j++)
                ck_assert(nb_tensor_get(&e, (int64_t[]){a, i, j}) == (double)i);
    nb_tensor_release(&e);
    ck_assert_int_eq(nb_tensor_expand(&c, 2, (int64_t[]){-1, 5}, &k), NB_OK);
    ck_assert(k.shape[0] == 3 && k.shape[1] == 5 && k.strides[1] == 0);
    nb_tensor_release(&k);
    ck_assert_int_eq(nb_tensor_expand(&c, 2, (int64_t[]){4, 4}, &e), NB_ERR_SHAPE);
    ck_assert(strstr(nb_last_error(), "(3,1)") != NULL);
    ck_assert_int_eq(nb_tensor_expand(&c, 1, (int64_t[]){3}, &e), NB_ERR_SHAPE);
    ck_assert_int_eq(nb_tensor_expand(&c, 3, (int64_t[]){-1, 3, 1}, &e), NB_ERR_SHAPE);
    ck_assert_int_eq(nb_tensor_expand(&c, 2, (int64_t[]){3, 0}, &e), NB_OK);
    ck_assert_int_eq(nb_tensor_numel(&e), 0);
    nb_tensor_release(&e);
    nb_tensor_release(&c);
}
END_TEST

START_TEST(test_squeeze_unsqueeze_permute)
{
    nb_tensor t = arange(NB_F32, 3, (int64_t[]){2, 1, 3}), s, u, p;
    ck_assert_int_eq(nb_tensor_squeeze(&t, 1, &s), NB_OK);
    ck_assert(s.ndim == 2 && s.shape[1] == 3 && s.strides[1] == 1);
    ck_assert_int_eq(nb_tensor_squeeze(&t, 0, &u), NB_ERR_SHAPE);
    ck_assert_int_eq(nb_tensor_squeeze(&t, 3, &u), NB_ERR_ARG);
    ck_assert_int_eq(nb_tensor_unsqueeze(&s, -1, &u), NB_OK);
    ck_assert(u.ndim == 3 && u.shape[2] == 1 && u.strides[2] == 1);
    nb_tensor_release(&u);
    ck_assert_int_eq(nb_tensor_unsqueeze(&s, 0, &u), NB_OK);
    ck_assert(u.shape[0] == 1 && u.strides[0] == 6 && u.shape[1] == 2);
    ck_assert(nb_tensor_get(&u, (int64_t[]){0, 1, 2}) == 5.0);
    nb_tensor_release(&u);
    ck_assert_int_eq(nb_tensor_unsqueeze(&s, 3, &u), NB_ERR_ARG);
    ck_assert_int_eq(nb_tensor_unsqueeze(&s, -4, &u), NB_ERR_ARG);

    ck_assert_int_eq(nb_tensor_permute(&t, (int[]){0, 0, 1}, &p), NB_ERR_ARG);
    ck_assert_int_eq(nb_tensor_permute(&t, (int[]){0, 1, 3}, &p), NB_ERR_ARG);
    ck_assert_int_eq(nb_tensor_permute(&t, (int[]){-1, 0, 1}, &p), NB_OK);
    ck_assert(p.shape[0] == 3 && p.shape[1] == 2 && p.shape[2] == 1);
    nb_tensor_release(&p);
    ck_assert_int_eq(nb_tensor_transpose(&t, 0, 5, &p), NB_ERR_ARG);
    nb_tensor_release(&s);
    nb_tensor_release(&t);
}
END_TEST

/* ---- copies and conversions ---------------------------------------------- */

START_TEST(test_copy_convert)
{
    double src_v[6] = {-1.7, 2.9, 300.0, -5.0, 0.0, 0.5};
    nb_tensor src, dst;
    ck_assert_int_eq(nb_tensor_from_data(&src, NB_F64, 1, (int64_t[]){6}, src_v), NB_OK);
    static const struct {
        nb_dtype dt;
        double want[6];
    } cases[] = {
        {NB_I32, {-1, 2, 300, -5, 0, 0}},
        {NB_U8, {0, 2, 255, 0, 0, 0}},
        {NB_BOOL, {1, 1, 1, 1, 0, 1}},
        {NB_F32, {(float)-1.7, (float)2.9, 300, -5, 0, 0.5}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ck_assert_int_eq(nb_tensor_empty(&dst, cases[c].dt, 1, (int64_t[]){6}), NB_OK);
        ck_assert_int_eq(nb_tensor_copy_into(&dst, &src), NB_OK);
        for (int64_t i = 0; i < 6; i++)
            ck_assert_msg(nb_tensor_get_flat(&dst, i) == cases[c].want[i], "dtype %s elem %lld",
                          nb_dtype_name(cases[c].dt), (long long)i);
        nb_tensor_release(&dst);
    }
    nb_tensor_release(&src);

    /* integer to integer stays exact beyond 2^53, through transposed strides */
    int64_t big[4] = {(1LL << 60) + 1, -3, 7, INT64_MIN};
    nb_tensor a, at, b, bt;
    ck_assert_int_eq(nb_tensor_from_data(&a, NB_I64, 2, (int64_t[]){2, 2}, big), NB_OK);
    ck_assert_int_eq(nb_tensor_transpose(&a, 0, 1, &at), NB_OK);
    ck_assert_int_eq(nb_tensor_zeros(&b, NB_I64, 2, (int64_t[]){2, 2}), NB_OK);
    ck_assert_int_eq(nb_tensor_transpose(&b, 0, 1, &bt), NB_OK);
    ck_assert_int_eq(nb_tensor_copy_into(&bt, &at), NB_OK); /* b = a */
    ck_assert_int_eq(memcmp(b.buf->data, big, sizeof big), 0);
    /* and i64 -> i32 wraps like a C cast */
    nb_tensor c32;
    ck_assert_int_eq(nb_tensor_empty(&c32, NB_I32, 2, (int64_t[]){2, 2}), NB_OK);
    ck_assert_int_eq(nb_tensor_copy_into(&c32, &a), NB_OK);
    ck_assert_int_eq(((int32_t *)c32.buf->data)[0], 1);
    ck_assert_int_eq(((int32_t *)c32.buf->data)[1], -3);
    /* shape mismatch */
    nb_tensor wrong;
    ck_assert_int_eq(nb_tensor_empty(&wrong, NB_I32, 1, (int64_t[]){4}), NB_OK);
    ck_assert_int_eq(nb_tensor_copy_into(&wrong, &a), NB_ERR_SHAPE);
    ck_assert(strstr(nb_last_error(), "(2,2)") && strstr(nb_last_error(), "(4)"));
    nb_tensor_release(&wrong);
    nb_tensor_release(&c32);
    nb_tensor_release(&bt);
    nb_tensor_release(&b);
    nb_tensor_release(&at);
    nb_tensor_release(&a);
}
END_TEST

/* copy_into from an expanded (stride-0) source and into a strided slice. */
START_TEST(test_copy_broadcast_and_strided)
{
    nb_tensor row = arange(NB_F32, 1, (int64_t[]){4}), e, dst, sl;
    ck_assert_int_eq(nb_tensor_expand(&row, 2, (int64_t[]){3, 4}, &e), NB_OK);
    ck_assert_int_eq(nb_tensor_zeros(&dst, NB_F64, 2, (int64_t[]){3, 8}), NB_OK);
    ck_assert_int_eq(nb_tensor_slice(&dst, 1, 1, 8, 2, &sl), NB_OK); /* columns 1,3,5,7 */
    ck_assert_int_eq(nb_tensor_copy_into(&sl, &e), NB_OK);
    for (int64_t i = 0; i < 3; i++)
        for (int64_t j = 0; j < 8; j++)
            ck_assert(nb_tensor_get(&dst, (int64_t[]){i, j}) == (j % 2 ? (double)(j / 2) : 0.0));
    nb_tensor_release(&sl);
    /* rows 1..2 of a matrix are contiguous at an offset: the memmove path */
    nb_tensor m = arange(NB_F64, 2, (int64_t[]){4, 3}), rows, out;
    ck_assert_int_eq(nb_tensor_slice(&m, 0, 1, 3, 1, &rows), NB_OK);
    ck_assert(nb_tensor_is_contiguous(&rows) && rows.offset == 3);
    ck_assert_int_eq(nb_tensor_empty(&out, NB_F64, 2, (int64_t[]){2, 3}), NB_OK);
    ck_assert_int_eq(nb_tensor_copy_into(&out, &rows), NB_OK);
    for (int64_t i = 0; i < 6; i++)
        ck_assert(((double *)out.buf->data)[i] == (double)(i + 3));
    nb_tensor_release(&out);
    nb_tensor_release(&rows);
    nb_tensor_release(&m);
    nb_tensor_release(&dst);
    nb_tensor_release(&e);
    nb_tensor_release(&row);
}
END_TEST

START_TEST(test_compare)
{
    float av[3] = {1, 2, 3};
    double bv[3] = {1, 2.5, 2};
    nb_tensor a, b, c;
    ck_assert_int_eq(nb_tensor_from_data(&a, NB_F32, 1, (int64_t[]){3}, av), NB_OK);
    ck_assert_int_eq(nb_tensor_from_data(&b, NB_F64, 1, (int64_t[]){3}, bv), NB_OK);
    ck_assert(nb_tensor_max_abs_diff(&a, &b) == 1.0);
    ck_assert(nb_tensor_max_abs(&b) == 2.5);
    nb_tensor_set(&b, (int64_t[]){0}, NAN);
    ck_assert(isnan(nb_tensor_max_abs_diff(&a, &b)));
    ck_assert(isnan(nb_tensor_max_abs(&b)));
    ck_assert_int_eq(nb_tensor_zeros(&c, NB_F32, 1, (int64_t[]){4}), NB_OK);
    ck_assert(isinf(nb_tensor_max_abs_diff(&a, &c)));
    nb_tensor_release(&a);
    nb_tensor_release(&b);
    nb_tensor_release(&c);
}
END_TEST

/* ---- buffers and reference counts ---------------------------------------- */

static int frees;
static void count_free(void *data, void *ctx)
{
    frees++;
    ck_assert_ptr_eq(ctx, &frees);
    free(data);
}

START_TEST(test_refcount)
{
    nb_tensor base = arange(NB_F32, 2, (int64_t[]){4, 4}), v, r;
    ck_assert_int_eq(base.buf->refcount, 1);
    ck_assert_int_eq(nb_tensor_slice(&base, 0, 1, 3, 1, &v), NB_OK);
    ck_assert_int_eq(base.buf->refcount, 2);
    nb_tensor_ref(&r, &v);
    ck_assert_int_eq(base.buf->refcount, 3);
    nb_tensor_release(&base);
    ck_assert_int_eq(v.buf->refcount, 2);
    /* the view still reads the data (ASan would flag a use after free) */
    ck_assert(nb_tensor_get(&v, (int64_t[]){1, 2}) == 10.0);
    nb_tensor_release(&v);
    ck_assert(nb_tensor_get(&r, (int64_t[]){0, 0}) == 4.0);
    nb_tensor_release(&r);

    /* wrapped memory: free_fn runs exactly once, at the last release */
    frees = 0;
    nb_buffer *b;
    void *mem = malloc(64);
    nb_device cpu = {NB_DEVICE_CPU, 0};
    ck_assert_int_eq(nb_buffer_wrap(mem, 64, cpu, count_free, &frees, &b), NB_OK);
    nb_tensor t1, t2;
    ck_assert_int_eq(nb_tensor_view_of(&t1, b, NB_F32, 2, (int64_t[]){4, 4}, NULL, 0), NB_OK);
    ck_assert_int_eq(nb_tensor_view_of(&t2, b, NB_F64, 1, (int64_t[]){3}, (int64_t[]){2}, 1),
                     NB_OK);
    nb_buffer_release(b);
    ck_assert_int_eq(frees, 0);
    nb_tensor_release(&t1);
    ck_assert_int_eq(frees, 0);
    nb_tensor_release(&t2);
    ck_assert_int_eq(frees, 1);

    /* a view reaching outside the buffer is refused; unowned memory is not freed */
    float stack_mem[8];
    ck_assert_int_eq(nb_buffer_wrap(stack_mem, sizeof stack_mem, cpu, NULL, NULL, &b), NB_OK);
    ck_assert_int_eq(nb_tensor_view_of(&t1, b, NB_F32, 1, (int64_t[]){9}, NULL, 0), NB_ERR_SHAPE);
    ck_assert_int_eq(nb_tensor_view_of(&t1, b, NB_F32, 1, (int64_t[]){4}, (int64_t[]){2}, 2),
                     NB_ERR_SHAPE);
    ck_assert_int_eq(nb_tensor_view_of(&t1, b, NB_F32, 1, (int64_t[]){4}, (int64_t[]){-2}, 6),
                     NB_OK);
    nb_tensor_release(&t1);
    nb_buffer_release(b);
}
END_TEST

/* ---- printing ------------------------------------------------------------ */

START_TEST(test_print_float_matrix)
{
    float v[4] = {1, 2, 3, 4};
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_from_data(&t, NB_F32, 2, (int64_t[]){2, 2}, v), NB_OK);
    check_print(&t, "tensor([[ 1.0000,  2.0000],\n"
                    "        [ 3.0000,  4.0000]], dtype=f32)\n");
    nb_tensor_release(&t);

    double w[2] = {-1.5, 2.25};
    ck_assert_int_eq(nb_tensor_from_data(&t, NB_F64, 1, (int64_t[]){2}, w), NB_OK);
    check_print(&t, "tensor([-1.5000,  2.2500], dtype=f64)\n");
    nb_tensor_release(&t);

    float s[2] = {1e-5f, 1.0f}; /* min below 1e-4: scientific */
    ck_assert_int_eq(nb_tensor_from_data(&t, NB_F32, 1, (int64_t[]){2}, s), NB_OK);
    check_print(&t, "tensor([ 1.0000e-05,  1.0000e+00], dtype=f32)\n");
    nb_tensor_release(&t);

    float special[3] = {-NAN, 1.5f, -INFINITY}; /* widths: " nan" 4, " 1.5000" 7, "-inf" 4 */
    ck_assert_int_eq(nb_tensor_from_data(&t, NB_F32, 1, (int64_t[]){3}, special), NB_OK);
    check_print(&t, "tensor([    nan,  1.5000,    -inf], dtype=f32)\n");
    nb_tensor_release(&t);

    ck_assert_int_eq(nb_tensor_scalar(&t, NB_F32, 1.5), NB_OK);
    check_print(&t, "tensor(1.5000, dtype=f32)\n");
    nb_tensor_release(&t);
}
END_TEST

START_TEST(test_print_ints_bools_elision)
{
    nb_tensor t = arange(NB_I64, 1, (int64_t[]){8});
    check_print(&t, "tensor([0, 1, 2, ..., 5, 6, 7], dtype=i64)\n");
    nb_tensor_release(&t);

    t = arange(NB_I32, 2, (int64_t[]){7, 2});
    check_print(&t, "tensor([[ 0,  1],\n"
                    "        [ 2,  3],\n"
                    "        [ 4,  5],\n"
                    "        ...,\n"
                    "        [ 8,  9],\n"
                    "        [10, 11],\n"
                    "        [12, 13]], dtype=i32)\n");
    nb_tensor_release(&t);

    t = arange(NB_I32, 3, (int64_t[]){2, 1, 2});
    check_print(&t, "tensor([[[0, 1]],\n"
                    "\n"
                    "        [[2, 3]]], dtype=i32)\n");
    nb_tensor_release(&t);

    uint8_t bv[2] = {1, 0};
    ck_assert_int_eq(nb_tensor_from_data(&t, NB_BOOL, 1, (int64_t[]){2}, bv), NB_OK);
    check_print(&t, "tensor([ True, False], dtype=bool)\n");
    nb_tensor_release(&t);

    /* a transposed view prints in its logical order */
    nb_tensor m = arange(NB_U8, 2, (int64_t[]){2, 3}), mt;
    ck_assert_int_eq(nb_tensor_transpose(&m, 0, 1, &mt), NB_OK);
    check_print(&mt, "tensor([[0, 3],\n"
                     "        [1, 4],\n"
                     "        [2, 5]], dtype=u8)\n");
    nb_tensor_release(&mt);
    nb_tensor_release(&m);

    ck_assert_int_eq(nb_tensor_zeros(&t, NB_F32, 2, (int64_t[]){0, 3}), NB_OK);
    check_print(&t, "tensor([], dtype=f32, shape=(0,3))\n");
    nb_tensor_release(&t);
}
END_TEST

/* The resident kB of the mapping that starts at addr (/proc/self/smaps), or
 * -1 when that cannot be read. */
static long mapping_rss_kb(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512], start[32];
    snprintf(start, sizeof start, "%lx-", (unsigned long)(uintptr_t)addr);
    long kb = -1;
    bool in = false;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, start, strlen(start)) == 0) /* the mapping's header line */
            in = true;
        else if (in && sscanf(line, "Rss: %ld kB", &kb) == 1)
            break;
    }
    fclose(f);
    return kb;
}

/* nb_buffer_drop_pages gives back the whole pages of a file mapping inside
 * the range (the mapping's resident size falls by them) and every byte
 * stays readable, read from the file again; on any other buffer it does
 * nothing: an allocated buffer keeps its bytes. */
START_TEST(test_drop_pages)
{
    long page = sysconf(_SC_PAGESIZE);
    ck_assert(page > 0);
    size_t n = 16 * (size_t)page;
    unsigned char *src = malloc(n);
    ck_assert_ptr_nonnull(src);
    for (size_t i = 0; i < n; i++)
        src[i] = (unsigned char)(i * 7 + 3);
    char path[] = "/tmp/nabla-drop-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert(write(fd, src, n) == (ssize_t)n);
    void *map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    unlink(path);
    ck_assert(map != MAP_FAILED);
    nb_buffer *fb;
    ck_assert_int_eq(nb_buffer_wrap(map, n, (nb_device){NB_DEVICE_CPU, 0}, NULL, NULL, &fb), NB_OK);
    ck_assert(!fb->file_pages); /* a wrapped buffer is not a file mapping unless told */
    fb->file_pages = true;
    ck_assert(memcmp(map, src, n) == 0); /* every page resident */
    long before = mapping_rss_kb(map);
    /* a range with part pages at both ends: its 14 whole pages go */
    nb_buffer_drop_pages(fb, (char *)map + 100, n - 200);
    long after = mapping_rss_kb(map);
    if (before < 0 || after < 0)
        printf("SKIP drop_pages: /proc/self/smaps unreadable, resident sizes not checked\n");
    else
        ck_assert_msg(before - after >= 14 * page / 1024,
                      "resident %ld kB before, %ld kB after dropping 14 pages", before, after);
    ck_assert(memcmp(map, src, n) == 0);
    /* not the buffer's bytes (past its end): left alone */
    nb_buffer_drop_pages(fb, (char *)map + page, n);
    ck_assert(mapping_rss_kb(map) == before || before < 0);
    nb_buffer_release(fb);
    munmap(map, n);
    nb_buffer *ab; /* anonymous memory would read back as zeros: untouched */
    ck_assert_int_eq(nb_buffer_alloc(n, &ab), NB_OK);
    memcpy(ab->data, src, n);
    nb_buffer_drop_pages(ab, ab->data, n);
    ck_assert(memcmp(ab->data, src, n) == 0);
    nb_buffer_release(ab);
    free(src);
}
END_TEST

static Suite *tensor_suite(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_status);
    tcase_add_test(tc, test_dtype);
    tcase_add_test(tc, test_shape_basics);
    tcase_add_test(tc, test_broadcast_table);
    tcase_add_test(tc, test_create);
    tcase_add_test(tc, test_get_set_range);
    tcase_add_test(tc, test_permute_then_slice);
    tcase_add_test(tc, test_view_writes_reach_base);
    tcase_add_test(tc, test_slice_clamping);
    tcase_add_test(tc, test_reshape);
    tcase_add_test(tc, test_expand);
    tcase_add_test(tc, test_squeeze_unsqueeze_permute);
    tcase_add_test(tc, test_copy_convert);
    tcase_add_test(tc, test_copy_broadcast_and_strided);
    tcase_add_test(tc, test_compare);
    tcase_add_test(tc, test_refcount);
    tcase_add_test(tc, test_drop_pages);
    tcase_add_test(tc, test_print_float_matrix);
    tcase_add_test(tc, test_print_ints_bools_elision);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return nb_run_suite(tensor_suite());
}
