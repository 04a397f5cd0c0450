/* The ONNX importer (models/onnx.h):
 *  - the real mnist-7 model of the ONNX Model Zoo (../shared/onnx-models, or
 *    NABLA_SHARED) against its three reference data sets (1e-4 relative);
 *    when the directory is missing the test says SKIP loudly and why;
 *  - a small model (tests/onnx_bad/seed_add_relu.onnx: z = relu(x + b),
 *    c = w + w folded to a constant) against values computed here: dynamic
 *    batch dims, plans per shape, external data, bytes in memory, sessions
 *    on two threads, the summary, and input checks with clear errors;
 *  - a shape given as a graph input (Reshape): plans specialised per value;
 *  - Conv -> BatchNormalization -> Relu folded into one Conv at load, against
 *    numpy (tests/onnx_bad/seed_conv_bn_*.npy) and against the unfolded run;
 *  - malformed and hostile files (the .onnx files of tests/onnx_bad, written by
 *    tests/gen_onnx_bad.py) each fail with a clear message naming the
 *    problem; the seed truncated at every length and with bytes flipped
 *    never crashes (ASan + UBSan run this suite too);
 *  - `nabla run` and `nabla info` on the seed.
 * The fixture directories are found from NABLA_FIXTURES (tests/fixtures).
 */
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check_main.h"
#include "nabla.h"
#include "onnx_test_util.h"

static const float B[4] = {0.5f, -1.0f, 2.0f, -3.0f};

static const char *bad_path(const char *file, char *buf, size_t size)
{
    char rel[256];
    snprintf(rel, sizeof rel, "onnx_bad/%s", file);
    return tests_path(rel, buf, size);
}

/* The mnist-7 directory: NABLA_SHARED/onnx-models/mnist-7, else ../shared
 * beside the source root. */
static const char *mnist_dir(char *buf, size_t size)
{
    const char *sh = getenv("NABLA_SHARED");
    if (sh && *sh)
        snprintf(buf, size, "%s/onnx-models/mnist-7", sh);
    else
        tests_path("../../shared/onnx-models/mnist-7", buf, size);
    return buf;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

/* ---- mnist-7 ------------------------------------------------------------------ */

START_TEST(mnist7_reference_sets)
{
    char dir[1024], path[1200];
    mnist_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr,
                "\n*** SKIP mnist7_reference_sets: %s not found (set NABLA_SHARED or clone "
                "the shared directory beside the source tree) ***\n\n",
                path);
        return;
    }
    nb_onnx_model *m;
    ck_assert_msg(nb_onnx_load(path, &m) == NB_OK, "%s", nb_last_error());
    ck_assert_int_eq(nb_onnx_num_inputs(m), 1);
    ck_assert_int_eq(nb_onnx_num_outputs(m), 1);
    ck_assert_str_eq(nb_onnx_input(m, 0)->name, "Input3");
    ck_assert_str_eq(nb_onnx_output(m, 0)->name, "Plus214_Output_0");
    const int want_argmax[3] = {2, 0, 9};
    for (int d = 0; d < 3; d++) {
        nb_tensor in = {0}, exp = {0}, out = {0};
        snprintf(path, sizeof path, "%s/test_data_set_%d/input_0.pb", dir, d);
        ck_assert_msg(nb_onnx_read_tensor_file(path, &in) == NB_OK, "%s", nb_last_error());
        snprintf(path, sizeof path, "%s/test_data_set_%d/output_0.pb", dir, d);
        ck_assert_msg(nb_onnx_read_tensor_file(path, &exp) == NB_OK, "%s", nb_last_error());
        ck_assert_int_eq(in.ndim, 4);
        ck_assert_int_eq(in.shape[2], 28);
        int n_out = 1;
        ck_assert_msg(nb_onnx_run(m, 1, &in, &n_out, &out) == NB_OK, "%s", nb_last_error());
        ck_assert_int_eq(n_out, 1);
        ck_assert_int_eq(out.dtype, NB_F32);
        ck_assert(nb_shape_equal(out.ndim, out.shape, exp.ndim, exp.shape));
        int arg = 0;
        for (int k = 0; k < 10; k++) {
            double a = nb_tensor_get_flat(&out, k), e = nb_tensor_get_flat(&exp, k);
            ck_assert_msg(fabs(a - e) <= 1e-4 * fabs(e) + 1e-4, "set %d score %d: %g vs %g", d, k,
                          a, e);
            if (a > nb_tensor_get_flat(&out, arg))
                arg = k;
        }
        ck_assert_int_eq(arg, want_argmax[d]);
        nb_tensor_release(&in);
        nb_tensor_release(&exp);
        nb_tensor_release(&out);
    }
    nb_onnx_free(m);
}
END_TEST

/* ---- the seed model -------------------------------------------------------------- */

/* x (n, 4) with x[i][j] = (i - 1.5) * (j + 1) */
static void make_x(nb_tensor *x, int64_t n)
{
    ck_assert_int_eq(nb_tensor_empty(x, NB_F32, 2, (int64_t[]){n, 4}), NB_OK);
    float *p = nb_tensor_data(x);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < 4; j++)
            p[i * 4 + j] = (float)((double)i - 1.5) * (float)(j + 1);
}

/* z = relu(x + b), c = 2 w with w[k] = k - 31.5 */
static void check_seed_outputs(const nb_tensor *x, int n_out, const nb_tensor *out)
{
    ck_assert_int_eq(n_out, 2);
    ck_assert(nb_shape_equal(out[0].ndim, out[0].shape, x->ndim, x->shape));
    for (int64_t i = 0; i < nb_tensor_numel(x); i++) {
        double v = nb_tensor_get_flat(x, i) + B[i % 4];
        ck_assert_double_eq_tol(nb_tensor_get_flat(&out[0], i), v > 0 ? v : 0, 1e-6);
    }
    ck_assert(nb_shape_equal(out[1].ndim, out[1].shape, 2, (int64_t[]){16, 4}));
    for (int k = 0; k < 64; k++)
        ck_assert_double_eq_tol(nb_tensor_get_flat(&out[1], k), 2.0 * (k - 31.5), 1e-6);
}

static void run_seed(nb_onnx_model *m, int64_t n)
{
    nb_tensor x = {0}, out[2] = {{0}};
    make_x(&x, n);
    int n_out = 2;
    ck_assert_msg(nb_onnx_run(m, 1, &x, &n_out, out) == NB_OK, "%s", nb_last_error());
    check_seed_outputs(&x, n_out, out);
    nb_tensor_release(&x);
    nb_tensor_release(&out[0]);
    nb_tensor_release(&out[1]);
}

START_TEST(seed_runs_with_dynamic_batch)
{
    char path[1024];
    nb_onnx_model *m;
    ck_assert_msg(nb_onnx_load(bad_path("seed_add_relu.onnx", path, sizeof path), &m) == NB_OK,
                  "%s", nb_last_error());
    const nb_onnx_io *io = nb_onnx_input(m, 0);
    ck_assert_str_eq(io->name, "x");
    ck_assert_int_eq(io->ndim, 2);
    ck_assert_int_eq(io->dims[0], -1);
    ck_assert_str_eq(io->dim_names[0], "N");
    ck_assert_int_eq(io->dims[1], 4);
    ck_assert_int_eq(nb_onnx_num_nodes(m), 3);
    for (int rep = 0; rep < 2; rep++) { /* the second round reuses the cached plans */
        run_seed(m, 2);
        run_seed(m, 5);
        run_seed(m, 1);
    }
    for (int n = 1; n <= 20; n++) /* more shapes than the cache holds */
        run_seed(m, n);
    nb_onnx_free(m);
}
END_TEST

START_TEST(seed_external_data_and_bytes)
{
    char path[1024];
    nb_onnx_model *m;
    ck_assert_msg(nb_onnx_load(bad_path("seed_ext.onnx", path, sizeof path), &m) == NB_OK, "%s",
                  nb_last_error());
    run_seed(m, 3);
    nb_onnx_free(m);

    size_t n;
    unsigned char *bytes = slurp(bad_path("seed_add_relu.onnx", path, sizeof path), &n);
    ck_assert_msg(nb_onnx_load_bytes(bytes, n, "seed", &m) == NB_OK, "%s", nb_last_error());
    free(bytes); /* copied */
    run_seed(m, 2);
    nb_onnx_free(m);

    bytes = slurp(bad_path("seed_ext.onnx", path, sizeof path), &n);
    ck_assert_int_eq(nb_onnx_load_bytes(bytes, n, "seed_ext", &m), NB_ERR_UNSUPPORTED);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "external data is not allowed"));
    free(bytes);
}
END_TEST

START_TEST(seed_input_checks)
{
    char path[1024];
    nb_onnx_model *m;
    ck_assert_int_eq(nb_onnx_load(bad_path("seed_add_relu.onnx", path, sizeof path), &m), NB_OK);
    nb_tensor x = {0}, out[2] = {{0}};
    int n_out = 2;
    /* wrong fixed dim */
    ck_assert_int_eq(nb_tensor_zeros(&x, NB_F32, 2, (int64_t[]){2, 5}), NB_OK);
    ck_assert_int_eq(nb_onnx_run(m, 1, &x, &n_out, out), NB_ERR_SHAPE);
    ck_assert_msg(strstr(nb_last_error(), "input 'x' must have shape (N,4), got (2,5)"), "%s",
                  nb_last_error());
    nb_tensor_release(&x);
    /* wrong rank */
    ck_assert_int_eq(nb_tensor_zeros(&x, NB_F32, 1, (int64_t[]){4}), NB_OK);
    ck_assert_int_eq(nb_onnx_run(m, 1, &x, &n_out, out), NB_ERR_SHAPE);
    nb_tensor_release(&x);
    /* wrong dtype */
    ck_assert_int_eq(nb_tensor_zeros(&x, NB_F64, 2, (int64_t[]){2, 4}), NB_OK);
    ck_assert_int_eq(nb_onnx_run(m, 1, &x, &n_out, out), NB_ERR_DTYPE);
    ck_assert_msg(strstr(nb_last_error(), "input 'x' must be f32"), "%s", nb_last_error());
    /* wrong count, too little room */
    ck_assert_int_eq(nb_onnx_run(m, 0, NULL, &n_out, out), NB_ERR_ARG);
    ck_assert_msg(strstr(nb_last_error(), "takes 1 input"), "%s", nb_last_error());
    nb_tensor_release(&x);
    make_x(&x, 2);
    n_out = 1;
    ck_assert_int_eq(nb_onnx_run(m, 1, &x, &n_out, out), NB_ERR_ARG);
    ck_assert_ptr_null(out[0].buf);
    nb_tensor_release(&x);
    nb_onnx_free(m);
}
END_TEST

START_TEST(seed_summary)
{
    char path[1024];
    nb_onnx_model *m;
    ck_assert_int_eq(nb_onnx_load(bad_path("seed_add_relu.onnx", path, sizeof path), &m), NB_OK);
    nb_onnx_summary s;
    ck_assert_msg(nb_onnx_summarize(m, 0, NULL, &s) == NB_OK, "%s", nb_last_error());
    ck_assert_str_eq(s.producer, "gen_onnx_bad");
    ck_assert_int_eq(s.ir_version, 8);
    ck_assert_int_eq(s.opset, 13);
    ck_assert_int_eq(s.n_nodes, 3);
    ck_assert_int_eq(s.n_op_types, 2);
    for (int i = 0; i < s.n_op_types; i++)
        ck_assert_int_eq(s.ops[i].count, strcmp(s.ops[i].op_type, "Add") == 0 ? 2 : 1);
    ck_assert_int_eq(s.params, 68);
    ck_assert_int_eq(s.param_bytes, 272);
    /* batch 1: an add and a relu of 4 elements (c = w + w is folded away) */
    ck_assert_double_eq(s.flops, 8);
    nb_tensor x = {0};
    make_x(&x, 10);
    ck_assert_int_eq(nb_onnx_summarize(m, 1, &x, &s), NB_OK);
    ck_assert_double_eq(s.flops, 80);
    nb_tensor_release(&x);
    nb_onnx_free(m);
}
END_TEST

/* Conv -> BatchNormalization -> Relu: folded into one Conv at load (fewer
 * FLOPs: no batch_norm node), and both ways match numpy's result. */
START_TEST(conv_bn_folded_at_load)
{
    char path[1024];
    nb_tensor x = {0}, want = {0};
    ck_assert_int_eq(nb_npy_load(bad_path("seed_conv_bn_x.npy", path, sizeof path), &x), NB_OK);
    ck_assert_int_eq(nb_npy_load(bad_path("seed_conv_bn_z.npy", path, sizeof path), &want), NB_OK);
    double flops[2];
    for (int fuse = 1; fuse >= 0; fuse--) {
        if (fuse)
            unsetenv("NABLA_ONNX_NO_FUSE");
        else
            setenv("NABLA_ONNX_NO_FUSE", "1", 1);
        nb_onnx_model *m;
        ck_assert_msg(nb_onnx_load(bad_path("seed_conv_bn.onnx", path, sizeof path), &m) == NB_OK,
                      "%s", nb_last_error());
        nb_tensor out = {0};
        int n_out = 1;
        ck_assert_msg(nb_onnx_run(m, 1, &x, &n_out, &out) == NB_OK, "%s", nb_last_error());
        ck_assert(nb_shape_equal(out.ndim, out.shape, want.ndim, want.shape));
        ck_assert_double_le(nb_tensor_max_abs_diff(&out, &want), 1e-5 * (1 + nb_tensor_max_abs(&want)));
        nb_onnx_summary s;
        ck_assert_int_eq(nb_onnx_summarize(m, 1, &x, &s), NB_OK);
        ck_assert_int_eq(s.n_nodes, 3); /* as in the file */
        ck_assert_int_eq(s.params, 18 * 3 + 4 * 3);
        flops[fuse] = s.flops;
        nb_tensor_release(&out);
        nb_onnx_free(m);
    }
    unsetenv("NABLA_ONNX_NO_FUSE");
    /* batch 2: conv 2 * 150 * 18, relu 150, and batch_norm's 5 * 150 only unfused */
    ck_assert_double_eq(flops[1], 2 * 150 * 18 + 150);
    ck_assert_double_eq(flops[0], flops[1] + 5 * 150);
    nb_tensor_release(&x);
    nb_tensor_release(&want);
}
END_TEST

/* Reshape's shape given as a graph input: the converter needs its value, so
 * the importer builds a plan per value of that input. */
START_TEST(shape_input_specialises_plans)
{
    char path[1024];
    nb_onnx_model *m;
    ck_assert_msg(nb_onnx_load(bad_path("seed_reshape_input.onnx", path, sizeof path), &m) == NB_OK,
                  "%s", nb_last_error());
    nb_tensor x = {0};
    ck_assert_int_eq(nb_tensor_empty(&x, NB_F32, 2, (int64_t[]){2, 6}), NB_OK);
    for (int i = 0; i < 12; i++)
        ((float *)nb_tensor_data(&x))[i] = (float)i;
    const int64_t shapes[4][2] = {{3, 4}, {4, 3}, {-1, 2}, {3, 4}};
    for (int r = 0; r < 4; r++) {
        nb_tensor in[2] = {x, {0}}, y = {0};
        ck_assert_int_eq(nb_tensor_from_data(&in[1], NB_I64, 1, (int64_t[]){2}, shapes[r]), NB_OK);
        int n_out = 1;
        ck_assert_msg(nb_onnx_run(m, 2, in, &n_out, &y) == NB_OK, "%s", nb_last_error());
        int64_t rows = shapes[r][0] < 0 ? 12 / shapes[r][1] : shapes[r][0];
        ck_assert(nb_shape_equal(y.ndim, y.shape, 2, (int64_t[]){rows, 12 / rows}));
        for (int i = 0; i < 12; i++)
            ck_assert_double_eq(nb_tensor_get_flat(&y, i), i);
        nb_tensor_release(&in[1]);
        nb_tensor_release(&y);
    }
    nb_tensor_release(&x);
    nb_onnx_free(m);
}
END_TEST

typedef struct worker {
    nb_onnx_model *m;
    int64_t n;
    int ok;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    nb_onnx_session *s = nb_onnx_session_new(w->m);
    if (!s)
        return NULL;
    nb_tensor x = {0};
    make_x(&x, w->n);
    w->ok = 1;
    for (int it = 0; it < 50 && w->ok; it++) {
        nb_tensor out[2] = {{0}};
        int n_out = 2;
        if (nb_onnx_session_run(s, 1, &x, &n_out, out) != NB_OK) {
            w->ok = 0;
            break;
        }
        for (int64_t i = 0; i < nb_tensor_numel(&x); i++) {
            double v = nb_tensor_get_flat(&x, i) + B[i % 4];
            if (fabs(nb_tensor_get_flat(&out[0], i) - (v > 0 ? v : 0)) > 1e-6)
                w->ok = 0;
        }
        nb_tensor_release(&out[0]);
        nb_tensor_release(&out[1]);
    }
    nb_tensor_release(&x);
    nb_onnx_session_free(s);
    return NULL;
}

START_TEST(sessions_on_two_threads)
{
    char path[1024];
    nb_onnx_model *m;
    ck_assert_int_eq(nb_onnx_load(bad_path("seed_add_relu.onnx", path, sizeof path), &m), NB_OK);
    worker w[4] = {{m, 3, 0}, {m, 7, 0}, {m, 3, 0}, {m, 1, 0}};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(w[i].ok, "worker %d failed: %s", i, nb_last_error());
    }
    nb_onnx_free(m);
}
END_TEST

/* ---- malformed files ---------------------------------------------------------------- */

static const struct {
    const char *file;
    nb_status status;
    const char *msg; /* a part of the message */
} bad_files[] = {
    {"empty.onnx", NB_ERR_FORMAT, "0 bytes"},
    {"garbage.onnx", NB_ERR_FORMAT, "not a valid ONNX model"},
    {"length_past_end.onnx", NB_ERR_FORMAT, "not a valid ONNX model"},
    {"group_wire_type.onnx", NB_ERR_FORMAT, "malformed protobuf at byte"},
    {"no_graph.onnx", NB_ERR_FORMAT, "the model has no graph"},
    {"ir_too_new.onnx", NB_ERR_UNSUPPORTED, "ir_version 99"},
    {"opset_too_new.onnx", NB_ERR_UNSUPPORTED, "opset 99 of the default domain"},
    {"huge_dims.onnx", NB_ERR_FORMAT, "initializer 'w': dims (1099511627776,1099511627776) are too large"},
    {"huge_dims_overflow.onnx", NB_ERR_FORMAT, "initializer 'w': dims"},
    {"huge_dims_no_data.onnx", NB_ERR_FORMAT, "initializer 'w': dims (1048576,1048576) are too large"},
    {"negative_dim.onnx", NB_ERR_FORMAT, "initializer 'w': dim 0 is negative"},
    {"too_many_dims.onnx", NB_ERR_UNSUPPORTED, "initializer 'w': 10 dims"},
    {"raw_length_mismatch.onnx", NB_ERR_FORMAT, "initializer 'w': raw_data has 252 bytes, but dims (16,4) of FLOAT need 256"},
    {"raw_length_mismatch_small.onnx", NB_ERR_FORMAT, "initializer 's': raw_data has 12 bytes"},
    {"typed_count_mismatch.onnx", NB_ERR_FORMAT, "initializer 's': float_data has 3 values"},
    {"ext_outside_file.onnx", NB_ERR_FORMAT, "external data [100, 356) lies outside"},
    {"ext_length_mismatch.onnx", NB_ERR_FORMAT, "external data length 12, but the dims need 256"},
    {"ext_parent_dir.onnx", NB_ERR_FORMAT, "leaves the model's directory"},
    {"ext_absolute.onnx", NB_ERR_FORMAT, "is an absolute path"},
    {"ext_missing_file.onnx", NB_ERR_NOT_FOUND, "cannot open external data"},
    {"string_tensor.onnx", NB_ERR_UNSUPPORTED, "initializer 's': string tensors are not supported"},
    {"complex_tensor.onnx", NB_ERR_UNSUPPORTED, "initializer 's': data type COMPLEX64"},
    {"input_complex.onnx", NB_ERR_UNSUPPORTED, "input 'x' has element type COMPLEX64"},
    {"cycle.onnx", NB_ERR_FORMAT, "the graph has a cycle"},
    {"missing_input.onnx", NB_ERR_FORMAT, "input 'nowhere' of node 'add_b' (Add) is not produced"},
    {"unknown_op.onnx", NB_ERR_UNSUPPORTED, "unsupported op 'NoSuchOp' (opset 11) at node 'nms_3'"},
    {"unknown_domain_op.onnx", NB_ERR_UNSUPPORTED, "domain 'com.example'"},
    {"produced_twice.onnx", NB_ERR_FORMAT, "value 'z' is produced twice"},
    {"output_not_produced.onnx", NB_ERR_FORMAT, "graph output 'nothing' is not produced"},
    {"no_op_type.onnx", NB_ERR_FORMAT, "has no op_type"},
};

START_TEST(bad_files_give_clear_errors)
{
    char path[1024];
    for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
        nb_onnx_model *m = (nb_onnx_model *)&m; /* must be reset to NULL */
        nb_status s = nb_onnx_load(bad_path(bad_files[i].file, path, sizeof path), &m);
        ck_assert_msg(s == bad_files[i].status, "%s: status %s, want %s (%s)", bad_files[i].file,
                      nb_status_str(s), nb_status_str(bad_files[i].status), nb_last_error());
        ck_assert_ptr_null(m);
        ck_assert_msg(strstr(nb_last_error(), bad_files[i].msg), "%s: message '%s' lacks '%s'",
                      bad_files[i].file, nb_last_error(), bad_files[i].msg);
        ck_assert_msg(strstr(nb_last_error(), bad_files[i].file), "%s: message '%s' lacks the file",
                      bad_files[i].file, nb_last_error());
    }
    nb_onnx_model *m;
    ck_assert_int_eq(nb_onnx_load(bad_path("no_such.onnx", path, sizeof path), &m), NB_ERR_NOT_FOUND);
    ck_assert_int_eq(nb_onnx_load(tests_path("onnx_bad", path, sizeof path), &m), NB_ERR_IO);
}
END_TEST

/* Load (and, when it loads, run) bytes that may be anything: only clean
 * errors are allowed. Returns whether it loaded. */
static bool try_bytes(const unsigned char *b, size_t n)
{
    nb_onnx_model *m;
    nb_status s = nb_onnx_load_bytes(b, n, "fuzz", &m);
    if (s != NB_OK) {
        ck_assert_ptr_null(m);
        ck_assert_msg(nb_last_error()[0], "status %s without a message", nb_status_str(s));
        return false;
    }
    if (nb_onnx_num_inputs(m) == 1 && nb_onnx_input(m, 0)->dtype == NB_F32) {
        nb_tensor x = {0}, out[NB_ONNX_MAX_IO] = {{0}};
        make_x(&x, 2);
        int n_out = NB_ONNX_MAX_IO;
        if (nb_onnx_run(m, 1, &x, &n_out, out) == NB_OK)
            for (int k = 0; k < n_out; k++)
                nb_tensor_release(&out[k]);
        nb_tensor_release(&x);
    }
    nb_onnx_free(m);
    return true;
}

START_TEST(truncated_at_every_length)
{
    char path[1024];
    size_t n;
    unsigned char *b = slurp(bad_path("seed_add_relu.onnx", path, sizeof path), &n);
    int loaded = 0;
    for (size_t len = 0; len < n; len++)
        loaded += try_bytes(b, len);
    ck_assert(try_bytes(b, n));
    /* a cut can fall between top-level fields; the graph comes last, so
     * every cut before its end loses part of it or all of it */
    ck_assert_int_lt(loaded, 5);
    free(b);
}
END_TEST

START_TEST(flipped_bytes)
{
    char path[1024];
    size_t n;
    unsigned char *b = slurp(bad_path("seed_add_relu.onnx", path, sizeof path), &n);
    unsigned char *c = malloc(n);
    uint32_t seed = 12345;
    int loaded = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(c, b, n);
        int flips = 1 + it % 3;
        for (int f = 0; f < flips; f++) {
            seed = seed * 1664525u + 1013904223u;
            size_t at = (seed >> 8) % n;
            seed = seed * 1664525u + 1013904223u;
            c[at] ^= (unsigned char)(1u << ((seed >> 16) % 8)) | (it % 7 == 0 ? 0x80 : 0);
        }
        loaded += try_bytes(c, n);
    }
    ck_assert_int_gt(loaded, 0); /* some flips only touch values */
    free(b);
    free(c);
}
END_TEST

/* ---- the commands ---------------------------------------------------------------- */

/* Run NABLA_EXE with args; its output into out (size bytes, cut to fit); the
 * exit status. */
static int run_nabla(const char *const *args, char *out, size_t size)
{
    int status;
    char *all = run_nabla_output(args, &status);
    snprintf(out, size, "%s", all);
    free(all);
    return status;
}

START_TEST(commands_run_and_info)
{
    char model[1024], out[16384];
    bad_path("seed_add_relu.onnx", model, sizeof model);
    char dir[] = "/tmp/nabla-onnx-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char xpath[300], opath[300];
    snprintf(xpath, sizeof xpath, "%s/x.npy", dir);
    nb_tensor x = {0};
    make_x(&x, 3);
    ck_assert_int_eq(nb_npy_save(xpath, &x), NB_OK);

    ck_assert_int_eq(run_nabla((const char *[]){"run", model, "-i", xpath, NULL}, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "output 0 'z' (3,4) f32") && strstr(out, "output 1 'c' (16,4) f32"),
                  "%s", out);
    ck_assert_int_eq(run_nabla((const char *[]){"run", model, "-i", xpath, "-o", dir, NULL}, out,
                               sizeof out),
                     0);
    nb_tensor z = {0}, c = {0};
    snprintf(opath, sizeof opath, "%s/output_0.npy", dir);
    ck_assert_int_eq(nb_npy_load(opath, &z), NB_OK);
    snprintf(opath, sizeof opath, "%s/output_1.npy", dir);
    ck_assert_int_eq(nb_npy_load(opath, &c), NB_OK);
    check_seed_outputs(&x, 2, (nb_tensor[]){z, c});
    nb_tensor_release(&z);
    nb_tensor_release(&c);

    /* --profile: the time per op type and the slowest nodes of 3 more runs */
    ck_assert_int_eq(run_nabla((const char *[]){"run", model, "-i", xpath, "--profile", "3", NULL},
                               out, sizeof out),
                     0);
    ck_assert_msg(strstr(out, "profile: 3 runs") && strstr(out, "op                    nodes") &&
                      strstr(out, "\nadd ") && strstr(out, "slowest nodes:"),
                  "%s", out);
    ck_assert_int_eq(run_nabla((const char *[]){"run", model, "-i", xpath, "--profile", "0", NULL},
                               out, sizeof out),
                     2);
    ck_assert_msg(strstr(out, "--profile needs a run count"), "%s", out);

    ck_assert_int_eq(run_nabla((const char *[]){"info", model, NULL}, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "x                        f32   (N,4)") && strstr(out, "Add                      2") &&
                      strstr(out, "params:    68") && strstr(out, "flops:     8 (8)") &&
                      strstr(out, "fused:     0 BatchNormalization and 0 Relu/Clip"),
                  "%s", out);
    /* usage errors exit with 2, load errors with 1 */
    ck_assert_int_eq(run_nabla((const char *[]){"run", model, NULL}, out, sizeof out), 2);
    ck_assert_int_eq(run_nabla((const char *[]){"run", NULL}, out, sizeof out), 2);
    char bad[1024];
    ck_assert_int_eq(run_nabla((const char *[]){"info", bad_path("cycle.onnx", bad, sizeof bad), NULL},
                               out, sizeof out),
                     1);
    ck_assert_msg(strstr(out, "cycle"), "%s", out);

    nb_tensor_release(&x);
    snprintf(opath, sizeof opath, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(opath), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("mnist7");
    tcase_add_test(tc, mnist7_reference_sets);
    suite_add_tcase(s, tc);
    tc = tcase_create("seed");
    tcase_add_test(tc, seed_runs_with_dynamic_batch);
    tcase_add_test(tc, seed_external_data_and_bytes);
    tcase_add_test(tc, seed_input_checks);
    tcase_add_test(tc, seed_summary);
    tcase_add_test(tc, sessions_on_two_threads);
    tcase_add_test(tc, conv_bn_folded_at_load);
    tcase_add_test(tc, shape_input_specialises_plans);
    suite_add_tcase(s, tc);
    tc = tcase_create("malformed");
    tcase_add_test(tc, bad_files_give_clear_errors);
    tcase_add_test(tc, truncated_at_every_length);
    tcase_add_test(tc, flipped_bytes);
    suite_add_tcase(s, tc);
    tc = tcase_create("commands");
    tcase_add_test(tc, commands_run_and_info);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
