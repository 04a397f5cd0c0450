/* Tests of tensor/rng.c (Philox, distributions, initialisers) and tensor/npy.c. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "kernels/backend.h"
#include "kernels/cpu.h"
#include "kernels/gather_params.h"
#include "kernels/threadpool.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"

/* ---- helpers ------------------------------------------------------------- */

/* Mean and (population) standard deviation of a float tensor's elements. */
static void moments(const nb_tensor *t, double *mean, double *std)
{
    int64_t n = nb_tensor_numel(t);
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = nb_tensor_get_flat(t, i);
        s += v;
        ss += v * v;
    }
    *mean = s / (double)n;
    *std = sqrt(ss / (double)n - *mean * *mean);
}

static void make_tmpdir(char *dir)
{
    strcpy(dir, "/tmp/nabla_npy_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Remove every file in dir, then dir. */
static void remove_tmpdir(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    ck_assert_int_eq(rmdir(dir), 0);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A .npy file of the given version with a header dict padded to 64 bytes,
 * followed by ndata bytes of data. */
static void write_npy(const char *path, int major, const char *dict, const void *data,
                      size_t ndata)
{
    size_t lensize = major == 1 ? 2 : 4;
    size_t pre = 8 + lensize, dl = strlen(dict);
    size_t total = (pre + dl + 1 + 63) / 64 * 64;
    size_t hlen = total - pre;
    unsigned char *buf = calloc(1, total + ndata);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    for (size_t i = 0; i < lensize; i++)
        buf[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + pre, dict, dl);
    memset(buf + pre + dl, ' ', total - pre - dl - 1);
    buf[total - 1] = '\n';
    if (ndata)
        memcpy(buf + total, data, ndata);
    write_bytes(path, buf, total + ndata);
    free(buf);
}

/* ---- Philox known answers (Random123 kat_vectors) ------------------------ */

START_TEST(test_philox_kat)
{
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        nb_philox4x32_10(kat[i].ctr, kat[i].key, out);
        for (int w = 0; w < 4; w++)
            ck_assert_msg(out[w] == kat[i].out[w], "vector %zu word %d: %08x", i, w, out[w]);
    }
}
END_TEST

/* The stream is block b = Philox((b, 0, 0, 0), (seed lo, seed hi)), word by word. */
/* The lane-parallel blocks equal the one-block function, for counters that
 * carry into the high word and wrap around 2^64. */
START_TEST(test_philox_blocks)
{
    static const uint64_t starts[] = {0, 5, 0xFFFFFFFAull, 0xFFFFFFFFFFFFFFF9ull};
    uint32_t key[2] = {0x12345678u, 0x9abcdef0u};
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++)
        for (int n = 1; n <= NB_PHILOX_LANES; n += 5) {
            uint32_t many[4 * NB_PHILOX_LANES], one[4];
            uint64_t hi = 0x0102030405060708ull * (s + 1);
            nb_philox4x32_10_blocks(starts[s], hi, key, n, many);
            for (int i = 0; i < n; i++) {
                uint64_t c = starts[s] + (uint64_t)i;
                uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), (uint32_t)hi,
                                   (uint32_t)(hi >> 32)};
                nb_philox4x32_10(ctr, key, one);
                ck_assert_mem_eq(one, many + 4 * i, sizeof one);
            }
        }
}
END_TEST

/* The dropout kernel draws element j from word j % 4 of block (j / 4, run)
 * under the seed (kernels/gather.c), whatever the thread split: checked
 * element by element on a tensor large enough to be split. */
START_TEST(test_dropout_mask_formula)
{
    int64_t n = 70001;
    nb_tensor x, y;
    ck_assert_int_eq(nb_tensor_empty(&x, NB_F32, 1, &n), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&y, NB_F32, 1, &n), NB_OK);
    float *xv = nb_tensor_data(&x), *yv = nb_tensor_data(&y);
    for (int64_t j = 0; j < n; j++)
        xv[j] = 1.0f + (float)(j % 7);
    nb_dropout_params pr = {.p = 0.3, .seed = 0xC0FFEE1234ull};
    const nb_tensor *in[1] = {&x};
    for (int threads = 1; threads <= 2; threads++) {
        nb_set_num_threads(threads);
        nb_kernel_call c = {.op = NB_OP_DROPOUT, .n_in = 1, .in = in, .out = &y, .params = &pr,
                            .run_index = 9};
        ck_assert_int_eq(nb_cpu_dropout(&c), NB_OK);
        uint32_t key[2] = {(uint32_t)pr.seed, (uint32_t)(pr.seed >> 32)}, r[4];
        uint64_t threshold = (uint64_t)ldexp(pr.p, 32);
        for (int64_t j = 0; j < n; j++) {
            if (j % 4 == 0) {
                uint32_t ctr[4] = {(uint32_t)(j / 4), 0, 9, 0};
                nb_philox4x32_10(ctr, key, r);
            }
            float want = r[j % 4] < threshold ? 0.0f : xv[j] * (float)(1.0 / 0.7);
            ck_assert_msg(yv[j] == want, "%d threads, element %lld: %g, want %g", threads,
                          (long long)j, yv[j], want);
        }
    }
    nb_tensor_release(&x);
    nb_tensor_release(&y);
}
END_TEST

START_TEST(test_rng_stream_layout)
{
    uint64_t seed = 0x0123456789abcdefULL;
    nb_rng r;
    nb_rng_init(&r, seed);
    uint32_t key[2] = {0x89abcdef, 0x01234567};
    for (uint32_t b = 0; b < 3; b++) {
        uint32_t ctr[4] = {b, 0, 0, 0}, out[4];
        nb_philox4x32_10(ctr, key, out);
        for (int w = 0; w < 4; w++)
            ck_assert_uint_eq(nb_rng_u32(&r), out[w]);
    }
    ck_assert_uint_eq(r.counter, 3);
    /* u64: first word low; uniform: exact 53-bit formula */
    nb_rng a, b;
    nb_rng_init(&a, 7);
    nb_rng_init(&b, 7);
    uint64_t lo = nb_rng_u32(&b), hi = nb_rng_u32(&b);
    ck_assert_uint_eq(nb_rng_u64(&a), lo | hi << 32);
    uint32_t x = nb_rng_u32(&b), y = nb_rng_u32(&b);
    double want = ((double)(x >> 5) * 67108864.0 + (double)(y >> 6)) / 9007199254740992.0;
    ck_assert(nb_rng_uniform(&a) == want);
}
END_TEST

START_TEST(test_rng_reproducible)
{
    nb_rng a, b, c;
    nb_rng_init(&a, 42);
    nb_rng_init(&b, 42);
    nb_rng_init(&c, 43);
    int same_c = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t x = nb_rng_u32(&a);
        ck_assert_uint_eq(x, nb_rng_u32(&b));
        same_c += x == nb_rng_u32(&c);
    }
    ck_assert_int_lt(same_c, 3);
    nb_rng_init(&a, 42);
    nb_rng_init(&b, 42);
    for (int i = 0; i < 100; i++)
        ck_assert(nb_rng_normal(&a) == nb_rng_normal(&b));
}
END_TEST

START_TEST(test_uniform_stats)
{
    nb_rng r;
    nb_rng_init(&r, 1);
    const int n = 100000;
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) {
        double u = nb_rng_uniform(&r);
        ck_assert(u >= 0.0 && u < 1.0);
        s += u;
        ss += u * u;
    }
    double mean = s / n, var = ss / n - mean * mean;
    /* 5 sigma: sd(mean) = 0.00091, sd(var) = 0.00024 */
    ck_assert_msg(fabs(mean - 0.5) < 0.005, "mean %g", mean);
    ck_assert_msg(fabs(var - 1.0 / 12) < 0.0015, "var %g", var);
}
END_TEST

START_TEST(test_normal_stats)
{
    nb_rng r;
    nb_rng_init(&r, 2);
    const int n = 100000;
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) {
        double z = nb_rng_normal(&r);
        ck_assert(isfinite(z));
        s += z;
        ss += z * z;
    }
    double mean = s / n, sd = sqrt(ss / n - mean * mean);
    ck_assert_msg(fabs(mean) < 0.016, "mean %g", mean);
    ck_assert_msg(fabs(sd - 1.0) < 0.012, "std %g", sd);

    /* fill_normal into f64 with mean 3, std 2 */
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, NB_F64, 2, (int64_t[]){250, 400}), NB_OK);
    ck_assert_int_eq(nb_rng_fill_normal(&r, &t, 3.0, 2.0), NB_OK);
    moments(&t, &mean, &sd);
    ck_assert_msg(fabs(mean - 3.0) < 0.032, "mean %g", mean);
    ck_assert_msg(fabs(sd - 2.0) < 0.024, "std %g", sd);
    ck_assert_int_eq(nb_rng_fill_normal(&r, &t, 0.0, -1.0), NB_ERR_ARG);
    nb_tensor_release(&t);
}
END_TEST

START_TEST(test_below)
{
    nb_rng r;
    nb_rng_init(&r, 3);
    int counts[6] = {0};
    for (int i = 0; i < 60000; i++) {
        uint64_t v = nb_rng_below(&r, 6);
        ck_assert_uint_lt(v, 6);
        counts[v]++;
    }
    for (int k = 0; k < 6; k++) /* sd = 91 */
        ck_assert_msg(abs(counts[k] - 10000) < 460, "bucket %d: %d", k, counts[k]);
    ck_assert_uint_eq(nb_rng_below(&r, 1), 0);
    ck_assert_uint_eq(nb_rng_below(&r, 0), 0);
    uint64_t big = (1ULL << 40) + 3, huge = 3ULL << 62;
    bool high_half = false;
    for (int i = 0; i < 1000; i++) {
        ck_assert_uint_lt(nb_rng_below(&r, big), big);
        uint64_t h = nb_rng_below(&r, huge);
        ck_assert_uint_lt(h, huge);
        high_half |= h >= (1ULL << 63);
    }
    ck_assert(high_half);
}
END_TEST

/* A strided view is filled in its logical row-major order; nothing else changes. */
START_TEST(test_fill_strided)
{
    nb_rng r1, r2;
    nb_tensor base, view, ref;
    ck_assert_int_eq(nb_tensor_zeros(&base, NB_F32, 2, (int64_t[]){5, 8}), NB_OK);
    ck_assert_int_eq(nb_tensor_slice(&base, 1, 1, 8, 3, &view), NB_OK); /* cols 1,4,7 */
    nb_tensor tv;
    ck_assert_int_eq(nb_tensor_transpose(&view, 0, 1, &tv), NB_OK); /* (3,5) */
    ck_assert_int_eq(nb_tensor_empty(&ref, NB_F32, 2, (int64_t[]){3, 5}), NB_OK);
    nb_rng_init(&r1, 9);
    nb_rng_init(&r2, 9);
    ck_assert_int_eq(nb_rng_fill_uniform(&r1, &tv, -2.0, 3.0), NB_OK);
    ck_assert_int_eq(nb_rng_fill_uniform(&r2, &ref, -2.0, 3.0), NB_OK);
    ck_assert(nb_tensor_max_abs_diff(&tv, &ref) == 0.0);
    for (int64_t i = 0; i < 5; i++)
        for (int64_t j = 0; j < 8; j++) {
            double v = nb_tensor_get(&base, (int64_t[]){i, j});
            if (j % 3 == 1)
                ck_assert(v >= -2.0 && v < 3.0 && v != 0.0);
            else
                ck_assert(v == 0.0);
        }
    nb_tensor it;
    ck_assert_int_eq(nb_tensor_zeros(&it, NB_I32, 1, (int64_t[]){4}), NB_OK);
    ck_assert_int_eq(nb_rng_fill_uniform(&r1, &it, 0, 1), NB_ERR_DTYPE);
    ck_assert_int_eq(nb_rng_fill_normal(&r1, &it, 0, 1), NB_ERR_DTYPE);
    ck_assert_int_eq(nb_init_kaiming_uniform(&r1, &it, 0, NB_FAN_IN), NB_ERR_DTYPE);
    ck_assert_int_eq(nb_rng_fill_uniform(&r1, &ref, 1.0, 0.0), NB_ERR_ARG);
    nb_tensor_release(&it);
    nb_tensor_release(&ref);
    nb_tensor_release(&tv);
    nb_tensor_release(&view);
    nb_tensor_release(&base);
}
END_TEST

START_TEST(test_fans)
{
    nb_tensor w;
    int64_t fi, fo;
    ck_assert_int_eq(nb_tensor_empty(&w, NB_F32, 4, (int64_t[]){64, 32, 3, 3}), NB_OK);
    nb_fans(&w, &fi, &fo);
    ck_assert(fi == 288 && fo == 576);
    nb_tensor_release(&w);
    ck_assert_int_eq(nb_tensor_empty(&w, NB_F32, 2, (int64_t[]){10, 20}), NB_OK);
    nb_fans(&w, &fi, &fo);
    ck_assert(fi == 20 && fo == 10);
    nb_tensor_release(&w);
    ck_assert_int_eq(nb_tensor_empty(&w, NB_F32, 1, (int64_t[]){7}), NB_OK);
    nb_fans(&w, &fi, &fo);
    ck_assert(fi == 7 && fo == 7);
    nb_tensor_release(&w);
}
END_TEST

/* Uniform initialisers: all within the bound, the extremes near it, variance
 * bound^2 / 3; normal ones: std within 3% (sd of the estimate is 0.3%). */
START_TEST(test_initialisers)
{
    nb_rng r;
    nb_rng_init(&r, 11);
    nb_tensor w;
    double mean, sd;
    ck_assert_int_eq(nb_tensor_empty(&w, NB_F32, 2, (int64_t[]){200, 300}), NB_OK);

    double bound = 1.5 * sqrt(6.0 / 500.0);
    ck_assert_int_eq(nb_init_xavier_uniform(&r, &w, 1.5), NB_OK);
    ck_assert(nb_tensor_max_abs(&w) <= bound && nb_tensor_max_abs(&w) > 0.99 * bound);
    moments(&w, &mean, &sd);
    ck_assert(fabs(sd - bound / sqrt(3.0)) < 0.03 * bound / sqrt(3.0));

    ck_assert_int_eq(nb_init_xavier_normal(&r, &w, 2.0), NB_OK);
    moments(&w, &mean, &sd);
    ck_assert_msg(fabs(sd / (2.0 * sqrt(2.0 / 500.0)) - 1.0) < 0.03, "std %g", sd);
    ck_assert(fabs(mean) < 0.01 * sd * 5);

    bound = sqrt(2.0) * sqrt(3.0 / 300.0); /* relu, fan_in = 300 */
    ck_assert_int_eq(nb_init_kaiming_uniform(&r, &w, 0.0, NB_FAN_IN), NB_OK);
    ck_assert(nb_tensor_max_abs(&w) <= bound && nb_tensor_max_abs(&w) > 0.99 * bound);

    double a = sqrt(5.0); /* gain sqrt(1/3), fan_out = 200 */
    ck_assert_int_eq(nb_init_kaiming_normal(&r, &w, a, NB_FAN_OUT), NB_OK);
    moments(&w, &mean, &sd);
    double want = sqrt(2.0 / 6.0) / sqrt(200.0);
    ck_assert_msg(fabs(sd / want - 1.0) < 0.03, "std %g want %g", sd, want);
    ck_assert_int_eq(nb_init_kaiming_normal(&r, &w, 0.0, (nb_fan_mode)5), NB_ERR_ARG);
    nb_tensor_release(&w);

    /* a conv weight uses the receptive field: fan_in = 4 * 9 */
    ck_assert_int_eq(nb_tensor_empty(&w, NB_F64, 4, (int64_t[]){8, 4, 3, 3}), NB_OK);
    bound = sqrt(2.0) * sqrt(3.0 / 36.0);
    ck_assert_int_eq(nb_init_kaiming_uniform(&r, &w, 0.0, NB_FAN_IN), NB_OK);
    ck_assert(nb_tensor_max_abs(&w) <= bound && nb_tensor_max_abs(&w) > 0.9 * bound);
    nb_tensor_release(&w);
}
END_TEST

/* ---- npy ----------------------------------------------------------------- */

static void check_same(const nb_tensor *a, const nb_tensor *b)
{
    ck_assert_int_eq(a->dtype, b->dtype);
    ck_assert(nb_shape_equal(a->ndim, a->shape, b->ndim, b->shape));
    ck_assert(nb_tensor_is_contiguous(b));
    ck_assert(nb_tensor_max_abs_diff(a, b) == 0.0);
    if (nb_tensor_is_contiguous(a)) /* bit for bit (u64 above 2^53, -0.0) */
        ck_assert(memcmp(nb_tensor_data(a), nb_tensor_data(b), nb_tensor_nbytes(a)) == 0);
}

START_TEST(test_npy_roundtrip)
{
    char dir[64], path[128];
    make_tmpdir(dir);
    static const struct {
        int ndim;
        int64_t shape[8];
    } shapes[] = {
        {0, {0}}, {1, {5}}, {2, {3, 4}}, {8, {2, 1, 2, 1, 2, 1, 2, 3}}, {2, {0, 3}},
    };
    nb_rng r;
    nb_rng_init(&r, 5);
    int saved = 0;
    for (int dt = 0; dt < NB_DTYPE_COUNT; dt++) {
        if (dt == NB_BF16) /* NumPy has no bfloat16: refused, checked below */
            continue;
        bool is_unsigned = dt == NB_U8 || dt == NB_U16 || dt == NB_U32 || dt == NB_U64;
        bool is_fp = nb_dtype_is_float((nb_dtype)dt) || dt == NB_F16;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            nb_tensor t, back;
            ck_assert_int_eq(nb_tensor_empty(&t, (nb_dtype)dt, shapes[s].ndim, shapes[s].shape),
                             NB_OK);
            for (int64_t i = 0; i < nb_tensor_numel(&t); i++) {
                int64_t idx[8], rem = i;
                for (int d = t.ndim - 1; d >= 0; d--) {
                    idx[d] = rem % t.shape[d];
                    rem /= t.shape[d];
                }
                double v = dt == NB_BOOL ? (double)nb_rng_below(&r, 2)
                                         : (double)nb_rng_below(&r, 200) - (is_unsigned ? 0 : 100);
                if (is_fp)
                    v += nb_rng_uniform(&r);
                nb_tensor_set(&t, idx, v);
            }
            snprintf(path, sizeof path, "%s/t_%d_%zu.npy", dir, dt, s);
            ck_assert_int_eq(nb_npy_save(path, &t), NB_OK);
            ck_assert_int_eq(nb_npy_load(path, &back), NB_OK);
            check_same(&t, &back);
            nb_tensor_release(&back);
            nb_tensor_release(&t);
            saved++;
        }
    }
    nb_tensor bf;
    ck_assert_int_eq(nb_tensor_zeros(&bf, NB_BF16, 1, (int64_t[]){3}), NB_OK);
    snprintf(path, sizeof path, "%s/bf16.npy", dir);
    ck_assert_int_eq(nb_npy_save(path, &bf), NB_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "bf16 has no NumPy dtype"));
    nb_tensor_release(&bf);
    /* no temp files left behind */
    ck_assert_int_eq(count_files(dir), saved);
    ck_assert_int_eq(saved, (NB_DTYPE_COUNT - 1) * 5);
    remove_tmpdir(dir);
}
END_TEST

/* The header NumPy itself writes, and a transposed (non-contiguous) tensor. */
START_TEST(test_npy_save_format)
{
    char dir[64], path[128];
    make_tmpdir(dir);
    snprintf(path, sizeof path, "%s/m.npy", dir);
    nb_tensor m, mt, back;
    float v[6] = {0, 1, 2, 3, 4, 5};
    ck_assert_int_eq(nb_tensor_from_data(&m, NB_F32, 2, (int64_t[]){2, 3}, v), NB_OK);
    ck_assert_int_eq(nb_tensor_transpose(&m, 0, 1, &mt), NB_OK);
    ck_assert_int_eq(nb_npy_save(path, &mt), NB_OK);

    FILE *f = fopen(path, "rb");
    unsigned char buf[256];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }";
    ck_assert_uint_eq(n, 128 + 24);
    ck_assert_int_eq(memcmp(buf, "\x93NUMPY\x01\x00", 8), 0);
    ck_assert_int_eq(buf[8] | buf[9] << 8, 118);
    ck_assert_int_eq(memcmp(buf + 10, dict, strlen(dict)), 0);
    ck_assert_int_eq(buf[127], '\n');
    ck_assert_int_eq(buf[126], ' ');
    float first[2];
    memcpy(first, buf + 128, sizeof first);
    ck_assert(first[0] == 0.0f && first[1] == 3.0f); /* row 0 of the transpose */

    ck_assert_int_eq(nb_npy_load(path, &back), NB_OK);
    check_same(&mt, &back);
    nb_tensor_release(&back);
    /* saving over an existing file replaces it */
    ck_assert_int_eq(nb_npy_save(path, &m), NB_OK);
    ck_assert_int_eq(nb_npy_load(path, &back), NB_OK);
    check_same(&m, &back);
    nb_tensor_release(&back);
    ck_assert_int_eq(count_files(dir), 1);
    /* a directory that does not exist */
    snprintf(path, sizeof path, "%s/no/such/dir/x.npy", dir);
    ck_assert_int_eq(nb_npy_save(path, &m), NB_ERR_IO);
    ck_assert(strstr(nb_last_error(), path) != NULL);
    nb_tensor_release(&mt);
    nb_tensor_release(&m);
    remove_tmpdir(dir);
}
END_TEST

/* Fortran-order files come back as C-contiguous tensors with the same values;
 * also version 2.0/3.0 headers and a header in another key order. */
START_TEST(test_npy_fortran_and_versions)
{
    char dir[64], path[128];
    make_tmpdir(dir);
    nb_tensor t;

    /* a[i][j] = 10 i + j, shape (2,3), stored column by column */
    double colmajor[6] = {0, 10, 1, 11, 2, 12};
    snprintf(path, sizeof path, "%s/f2.npy", dir);
    write_npy(path, 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", colmajor,
              sizeof colmajor);
    ck_assert_int_eq(nb_npy_load(path, &t), NB_OK);
    ck_assert(t.dtype == NB_F64 && t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3);
    ck_assert(nb_tensor_is_contiguous(&t));
    for (int64_t i = 0; i < 6; i++)
        ck_assert(nb_tensor_get_flat(&t, i) == (double)(10 * (i / 3) + i % 3));
    nb_tensor_release(&t);

    /* a[i][j][k] = 100 i + 10 j + k, shape (2,3,4), i fastest; version 2.0 */
    int32_t f3[24];
    int n = 0;
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 2; i++)
                f3[n++] = 100 * i + 10 * j + k;
    snprintf(path, sizeof path, "%s/f3.npy", dir);
    write_npy(path, 2, "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3, 4), }", f3,
              sizeof f3);
    ck_assert_int_eq(nb_npy_load(path, &t), NB_OK);
    ck_assert(t.dtype == NB_I32 && t.ndim == 3);
    for (int64_t i = 0; i < 2; i++)
        for (int64_t j = 0; j < 3; j++)
            for (int64_t k = 0; k < 4; k++)
                ck_assert(nb_tensor_get(&t, (int64_t[]){i, j, k}) ==
                          (double)(100 * i + 10 * j + k));
    nb_tensor_release(&t);

    /* version 3.0, double quotes, other key order, no trailing comma, 'L' dims */
    int64_t v[3] = {-1, 0, 1LL << 62};
    snprintf(path, sizeof path, "%s/v3.npy", dir);
    write_npy(path, 3, "{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"<i8\"}", v,
              sizeof v);
    ck_assert_int_eq(nb_npy_load(path, &t), NB_OK);
    ck_assert(t.dtype == NB_I64 && t.ndim == 1 && t.shape[0] == 3);
    ck_assert_int_eq(memcmp(t.buf->data, v, sizeof v), 0);
    nb_tensor_release(&t);

    /* bool bytes other than 0/1 read as true */
    uint8_t bv[3] = {0, 1, 7};
    snprintf(path, sizeof path, "%s/b.npy", dir);
    write_npy(path, 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", bv, 3);
    ck_assert_int_eq(nb_npy_load(path, &t), NB_OK);
    ck_assert(nb_tensor_get_flat(&t, 2) == 1.0);
    ck_assert_int_eq(((uint8_t *)t.buf->data)[2], 1);
    nb_tensor_release(&t);
    remove_tmpdir(dir);
}
END_TEST

typedef struct bad_case {
    const char *name;
    const char *dict; /* NULL: raw bytes below */
    const char *raw;
    size_t rawlen;
    size_t ndata;
    nb_status want;
    const char *msg; /* expected in the message besides the path */
} bad_case;

START_TEST(test_npy_malformed)
{
    static const bad_case cases[] = {
        {"magic.npy", NULL, "GARBAGE-NOT-NPY-AT-ALL", 22, 0, NB_ERR_FORMAT, "magic"},
        {"empty.npy", NULL, "", 0, 0, NB_ERR_FORMAT, "magic"},
        {"short_pre.npy", NULL, "\x93NUMPY\x01", 7, 0, NB_ERR_FORMAT, "truncated"},
        {"trunc_header.npy", NULL, "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', ", 28, 0,
         NB_ERR_FORMAT, "truncated"},
        {"version.npy", NULL, "\x93NUMPY\x09\x00\x76\x00{}", 12, 0, NB_ERR_FORMAT, "version"},
        {"too_short.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (10,), }", NULL, 0,
         16, NB_ERR_FORMAT, "too short"},
        {"nine_dims.npy",
         "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }", NULL,
         0, 4, NB_ERR_FORMAT, "dims"},
        {"descr.npy", "{'descr': '<c16', 'fortran_order': False, 'shape': (2,), }", NULL, 0, 32,
         NB_ERR_DTYPE, "<c16"},
        {"bigendian.npy", "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", NULL, 0, 8,
         NB_ERR_DTYPE, ">f4"},
        {"structured.npy", "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
         NULL, 0, 8, NB_ERR_DTYPE, "descr"},
        {"overflow.npy",
         "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, "
         "4611686018427387904), }",
         NULL, 0, 16, NB_ERR_FORMAT, "overflow"},
        {"huge.npy", "{'descr': '|u1', 'fortran_order': False, 'shape': (1099511627776,), }", NULL,
         0, 16, NB_ERR_FORMAT, "too short"},
        {"dim64.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616,), }",
         NULL, 0, 0, NB_ERR_FORMAT, "large"},
        {"negative.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }", NULL, 0,
         0, NB_ERR_FORMAT, "negative"},
        {"badbool.npy", "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", NULL, 0, 8,
         NB_ERR_FORMAT, "True or False"},
        {"nokey.npy", "{'descr': '<f4', 'shape': (2,), }", NULL, 0, 8, NB_ERR_FORMAT,
         "fortran_order"},
        {"extrakey.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", NULL,
         0, 8, NB_ERR_FORMAT, "'x'"},
        {"notdict.npy", "['descr', '<f4']", NULL, 0, 8, NB_ERR_FORMAT, "'{'"},
        {"unterminated.npy", "{'descr': '<f4", NULL, 0, 0, NB_ERR_FORMAT, "unterminated"},
        {"shape_junk.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }", NULL, 0,
         0, NB_ERR_FORMAT, "shape"},
    };
    char dir[64], path[192];
    make_tmpdir(dir);
    unsigned char zeros[64] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        snprintf(path, sizeof path, "%s/%s", dir, c->name);
        if (c->dict)
            write_npy(path, 1, c->dict, zeros, c->ndata);
        else
            write_bytes(path, c->raw, c->rawlen);
        nb_tensor t;
        memset(&t, 0xab, sizeof t);
        nb_status s = nb_npy_load(path, &t);
        ck_assert_msg(s == c->want, "%s: status %s (%s)", c->name, nb_status_str(s),
                      nb_last_error());
        ck_assert_msg(strstr(nb_last_error(), path) != NULL, "%s: message '%s'", c->name,
                      nb_last_error());
        ck_assert_msg(strstr(nb_last_error(), c->msg) != NULL, "%s: message '%s' lacks '%s'",
                      c->name, nb_last_error(), c->msg);
        ck_assert_ptr_null(t.buf);
    }
    snprintf(path, sizeof path, "%s/missing.npy", dir);
    nb_tensor t;
    ck_assert_int_eq(nb_npy_load(path, &t), NB_ERR_NOT_FOUND);
    ck_assert(strstr(nb_last_error(), "missing.npy") != NULL);
    remove_tmpdir(dir);
}
END_TEST

static Suite *rng_npy_suite(void)
{
    Suite *s = suite_create("rng_npy");
    TCase *rng = tcase_create("rng");
    tcase_add_test(rng, test_philox_kat);
    tcase_add_test(rng, test_philox_blocks);
    tcase_add_test(rng, test_dropout_mask_formula);
    tcase_add_test(rng, test_rng_stream_layout);
    tcase_add_test(rng, test_rng_reproducible);
    tcase_add_test(rng, test_uniform_stats);
    tcase_add_test(rng, test_normal_stats);
    tcase_add_test(rng, test_below);
    tcase_add_test(rng, test_fill_strided);
    tcase_add_test(rng, test_fans);
    tcase_add_test(rng, test_initialisers);
    suite_add_tcase(s, rng);
    TCase *npy = tcase_create("npy");
    tcase_add_test(npy, test_npy_roundtrip);
    tcase_add_test(npy, test_npy_save_format);
    tcase_add_test(npy, test_npy_fortran_and_versions);
    tcase_add_test(npy, test_npy_malformed);
    suite_add_tcase(s, npy);
    return s;
}

int main(void)
{
    return nb_run_suite(rng_npy_suite());
}
