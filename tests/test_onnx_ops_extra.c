/* The ONNX converters added for issue 5, on one-node models written here in
 * the protobuf wire format (onnx_writer.h; no onnx package), loaded from
 * memory and run:
 *  - MaxPool's Indices (storage_order 0 and 1, 1-D and 2-D, pads, strides,
 *    dilations) against a plain loop of ONNX's rule and a hand-worked tie;
 *  - MaxUnpool with and without output_shape, with pads, and MaxPool then
 *    MaxUnpool round trips, against hand values and a loop;
 *  - 3-D MaxPool / AveragePool (pads, strides, ceil mode, count_include_pad)
 *    against a direct 3-D loop; LpPool (1-D to 3-D, p = 1, 2, 3) and
 *    GlobalLpPool against the sum of |x|^p;
 *  - Det of 2-D and batched f32/f64 matrices against numpy.linalg.det;
 *  - TfIdfVectorizer (TF, IDF, TFIDF, gram lengths, skips, weights, int32 /
 *    int64, batches, column maps) against hand-counted n-grams;
 *  - RoiAlign (avg/max, half_pixel / output_half_pixel, opsets 10 and 16,
 *    adaptive and fixed sampling, spatial_scale, batch indices, regions
 *    outside the image) on a linear image, where bilinear sampling is exact;
 *  - Adam's default epsilon (1e-6) and an explicit one;
 *  - bad attributes and shapes, each with the message that names the problem.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"
#include "onnx_writer.h"

static void tensor_of(nb_tensor *t, nb_dtype dt, int ndim, const int64_t *shape, const void *data)
{
    ck_assert_int_eq(nb_tensor_from_data(t, dt, ndim, shape, data), NB_OK);
}

/* Run m on n_in inputs into n_out outputs; the status. */
static nb_status run(nb_onnx_model *m, int n_in, const nb_tensor *in, int n_out, nb_tensor *out)
{
    int n = n_out;
    return nb_onnx_run(m, n_in, in, &n, out);
}

static void expect_values(const nb_tensor *t, int ndim, const int64_t *shape, const double *want,
                          double tol)
{
    ck_assert_int_eq(t->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_int_eq(t->shape[i], shape[i]);
    for (int64_t i = 0; i < nb_tensor_numel(t); i++) {
        double v = nb_tensor_get_flat(t, i);
        ck_assert_msg(fabs(v - want[i]) <= tol * (1 + fabs(want[i])),
                      "element %lld is %.9g, expected %.9g", (long long)i, v, want[i]);
    }
}

static void expect_error(nb_status got, nb_status want, const char *msg)
{
    ck_assert_msg(got == want, "status %d, expected %d (%s)", (int)got, (int)want, nb_last_error());
    ck_assert_msg(strstr(nb_last_error(), msg), "message '%s' lacks '%s'", nb_last_error(), msg);
}

static void release(nb_tensor *t, int n)
{
    for (int i = 0; i < n; i++)
        nb_tensor_release(&t[i]);
}

/* Deterministic values in [-1, 1). */
static void fill(float *x, int64_t n, uint32_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) / 8388608.0 - 1.0);
    }
}

/* ---- MaxPool's Indices ------------------------------------------------------- */

/* A MaxPool node with outputs y and i on x of (ndim, dims). */
static nb_onnx_model *maxpool(int ndim, const int64_t *dims, const int64_t *k, const int64_t *s,
                              const int64_t *pads, const int64_t *dil, int order, int ceil)
{
    int nd = ndim - 2;
    pb n = node_new("MaxPool", NULL, "x", "y,i");
    attr_ints(&n, "kernel_shape", k, nd);
    attr_ints(&n, "strides", s, nd);
    attr_ints(&n, "pads", pads, 2 * nd);
    if (dil)
        attr_ints(&n, "dilations", dil, nd);
    attr_int(&n, "storage_order", order);
    attr_int(&n, "ceil_mode", ceil);
    io in = {"x", T_FLOAT, ndim, {0}};
    memcpy(in.dims, dims, sizeof(int64_t) * (size_t)ndim);
    io out[2] = {{"y", T_FLOAT, -1, {0}}, {"i", T_INT64, -1, {0}}};
    return one_node(&n, 12, &in, 1, out, 2);
}

START_TEST(maxpool_indices_hand)
{
    /* 2x3 image, 2x2 windows at columns 0 and 1: both maxima are the first
     * 5, at (0, 1): index 1 row-major, 1*H + 0 = 2 column-major */
    const float x[6] = {1, 5, 5, 2, 0, 5};
    for (int order = 0; order < 2; order++) {
        nb_onnx_model *m = maxpool(4, (int64_t[]){1, 1, 2, 3},
                                   (int64_t[]){2, 2}, (int64_t[]){1, 1}, (int64_t[]){0, 0, 0, 0},
                                   NULL, order, 0);
        nb_tensor in, out[2] = {{0}};
        tensor_of(&in, NB_F32, 4, (int64_t[]){1, 1, 2, 3}, x);
        ck_assert_int_eq(run(m, 1, &in, 2, out), NB_OK);
        expect_values(&out[0], 4, (int64_t[]){1, 1, 1, 2}, (double[]){5, 5}, 0);
        ck_assert_int_eq(out[1].dtype, NB_I64);
        expect_values(&out[1], 4, (int64_t[]){1, 1, 1, 2},
                      order ? (double[]){2, 2} : (double[]){1, 1}, 0);
        release(out, 2);
        nb_tensor_release(&in);
        nb_onnx_free(m);
    }
    /* 1-D, kernel 3, stride 2, pads 1: windows {-1,0,1}, {1,2,3}, {3,4,5} */
    const float x1[10] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
    nb_onnx_model *m = maxpool(3, (int64_t[]){1, 2, 5}, (int64_t[]){3}, (int64_t[]){2},
                               (int64_t[]){1, 1}, NULL, 1, 0);
    nb_tensor in, out[2] = {{0}};
    tensor_of(&in, NB_F32, 3, (int64_t[]){1, 2, 5}, x1);
    ck_assert_int_eq(run(m, 1, &in, 2, out), NB_OK);
    expect_values(&out[0], 3, (int64_t[]){1, 2, 3}, (double[]){3, 4, 5, 9, 6, 5}, 0);
    expect_values(&out[1], 3, (int64_t[]){1, 2, 3}, (double[]){0, 2, 4, 5, 7, 8}, 0);
    release(out, 2);
    nb_tensor_release(&in);
    nb_onnx_free(m);
}
END_TEST

START_TEST(maxpool_indices_loop)
{
    /* (2, 3, 7, 8), kernel (3, 2), strides (2, 3), pads (1, 0, 1, 0),
     * dilations (1, 2): output (4, 2), or (4, 3) in ceil mode, whose last
     * column of windows has one tap in the image */
    enum { N = 2, C = 3, H = 7, W = 8 };
    float x[N * C * H * W];
    fill(x, N * C * H * W, 7);
    x[5] = x[6]; /* a tie */
    const int64_t k[2] = {3, 2}, s[2] = {2, 3}, pads[4] = {1, 0, 1, 0}, d[2] = {1, 2};
    for (int variant = 0; variant < 4; variant++) {
        int order = variant & 1, ceil = variant >> 1;
        int64_t OH = 4, OW = ceil ? 3 : 2;
        nb_onnx_model *m = maxpool(4, (int64_t[]){N, C, H, W}, k, s, pads, d, order, ceil);
        nb_tensor in, out[2] = {{0}};
        tensor_of(&in, NB_F32, 4, (int64_t[]){N, C, H, W}, x);
        ck_assert_msg(run(m, 1, &in, 2, out) == NB_OK, "%s", nb_last_error());
        ck_assert_int_eq(out[1].shape[2], OH);
        ck_assert_int_eq(out[1].shape[3], OW);
        for (int64_t pl = 0; pl < N * C; pl++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    float best = -INFINITY;
                    int64_t bh = -1, bw = -1;
                    for (int64_t i = 0; i < k[0]; i++)
                        for (int64_t j = 0; j < k[1]; j++) {
                            int64_t h = oh * s[0] - pads[0] + i * d[0];
                            int64_t w = ow * s[1] - pads[1] + j * d[1];
                            if (h >= 0 && h < H && w >= 0 && w < W &&
                                x[(pl * H + h) * W + w] > best) {
                                best = x[(pl * H + h) * W + w];
                                bh = h, bw = w;
                            }
                        }
                    int64_t o = (pl * OH + oh) * OW + ow;
                    int64_t want = pl * H * W + (order ? bw * H + bh : bh * W + bw);
                    ck_assert_int_eq((int64_t)nb_tensor_get_flat(&out[1], o), want);
                    ck_assert_float_eq(nb_tensor_get_flat(&out[0], o), best);
                }
        release(out, 2);
        nb_tensor_release(&in);
        nb_onnx_free(m);
    }
}
END_TEST

START_TEST(maxpool_bad_attributes)
{
    nb_onnx_model *m = maxpool(4, (int64_t[]){1, 1, 4, 4}, (int64_t[]){2, 2}, (int64_t[]){1, 1},
                               (int64_t[]){0, 0, 0, 0}, NULL, 2, 0);
    nb_tensor in, out[2] = {{0}};
    float x[16] = {0};
    tensor_of(&in, NB_F32, 4, (int64_t[]){1, 1, 4, 4}, x);
    expect_error(run(m, 1, &in, 2, out), NB_ERR_ARG, "storage_order 2 must be 0 (row major) or 1");
    nb_tensor_release(&in);
    nb_onnx_free(m);
    /* 3-D pools have no Indices */
    m = maxpool(5, (int64_t[]){1, 1, 2, 2, 2}, (int64_t[]){2, 2, 2}, (int64_t[]){1, 1, 1},
                (int64_t[]){0, 0, 0, 0, 0, 0}, NULL, 0, 0);
    tensor_of(&in, NB_F32, 5, (int64_t[]){1, 1, 2, 2, 2}, x);
    expect_error(run(m, 1, &in, 2, out), NB_ERR_UNSUPPORTED,
                 "MaxPool 'n0' (opset 12): the Indices output of a 3-D MaxPool is not supported");
    nb_tensor_release(&in);
    nb_onnx_free(m);
}
END_TEST

/* ---- MaxUnpool --------------------------------------------------------------- */

static nb_onnx_model *maxunpool(const int64_t *xdims, bool with_shape, const int64_t *k,
                                const int64_t *s, const int64_t *pads)
{
    pb n = node_new("MaxUnpool", NULL, with_shape ? "x,i,shape" : "x,i", "y");
    attr_ints(&n, "kernel_shape", k, 2);
    attr_ints(&n, "strides", s, 2);
    if (pads)
        attr_ints(&n, "pads", pads, 4);
    io in[3] = {{"x", T_FLOAT, 4, {0}}, {"i", T_INT64, 4, {0}}, {"shape", T_INT64, 1, {4}}};
    memcpy(in[0].dims, xdims, sizeof(int64_t) * 4);
    memcpy(in[1].dims, xdims, sizeof(int64_t) * 4);
    io out = {"y", T_FLOAT, -1, {0}};
    return one_node(&n, 11, in, with_shape ? 3 : 2, &out, 1);
}

START_TEST(maxunpool_values)
{
    const float x[4] = {1, 2, 3, 4};
    const int64_t idx[4] = {5, 7, 13, 15};
    nb_tensor in[3], out = {0};
    tensor_of(&in[0], NB_F32, 4, (int64_t[]){1, 1, 2, 2}, x);
    tensor_of(&in[1], NB_I64, 4, (int64_t[]){1, 1, 2, 2}, idx);
    /* (2 - 1) * 2 + 2 = 4 per dim; the values land at flat 5, 7, 13, 15 */
    nb_onnx_model *m = maxunpool((int64_t[]){1, 1, 2, 2}, false, (int64_t[]){2, 2},
                                 (int64_t[]){2, 2}, NULL);
    ck_assert_int_eq(run(m, 2, in, 1, &out), NB_OK);
    double want[16] = {0};
    want[5] = 1, want[7] = 2, want[13] = 3, want[15] = 4;
    expect_values(&out, 4, (int64_t[]){1, 1, 4, 4}, want, 0);
    nb_tensor_release(&out);
    nb_onnx_free(m);
    /* output_shape (1, 1, 5, 5): the 4x4 result padded at the end */
    m = maxunpool((int64_t[]){1, 1, 2, 2}, true, (int64_t[]){2, 2}, (int64_t[]){2, 2}, NULL);
    tensor_of(&in[2], NB_I64, 1, (int64_t[]){4}, (int64_t[]){1, 1, 5, 5});
    ck_assert_int_eq(run(m, 3, in, 1, &out), NB_OK);
    double want5[25] = {0};
    want5[6] = 1, want5[8] = 2, want5[16] = 3, want5[18] = 4;
    expect_values(&out, 4, (int64_t[]){1, 1, 5, 5}, want5, 0);
    nb_tensor_release(&out);
    /* smaller than the unpooled 4x4 */
    nb_tensor_release(&in[2]);
    tensor_of(&in[2], NB_I64, 1, (int64_t[]){4}, (int64_t[]){1, 1, 3, 5});
    expect_error(run(m, 3, in, 1, &out), NB_ERR_SHAPE,
                 "MaxUnpool 'n0' (opset 11): output_shape (1,1,3,5) must have X's N and C and spatial sizes at least those of the unpooled (1,1,4,4)");
    nb_onnx_free(m);
    /* kernel 3, stride 2, pads 1: (2 - 1) * 2 + 3 - 2 = 3 per dim */
    m = maxunpool((int64_t[]){1, 1, 2, 2}, false, (int64_t[]){3, 3}, (int64_t[]){2, 2},
                  (int64_t[]){1, 1, 1, 1});
    nb_tensor_release(&in[1]);
    tensor_of(&in[1], NB_I64, 4, (int64_t[]){1, 1, 2, 2}, (int64_t[]){0, 2, 6, 8});
    ck_assert_int_eq(run(m, 2, in, 1, &out), NB_OK);
    expect_values(&out, 4, (int64_t[]){1, 1, 3, 3}, (double[]){1, 0, 2, 0, 0, 0, 3, 0, 4}, 0);
    nb_tensor_release(&out);
    /* an index past the output fails the run, naming it */
    nb_tensor_release(&in[1]);
    tensor_of(&in[1], NB_I64, 4, (int64_t[]){1, 1, 2, 2}, (int64_t[]){0, 2, 9, 8});
    expect_error(run(m, 2, in, 1, &out), NB_ERR_ARG,
                 "index 9 (element 2) is outside the output of 9 elements");
    nb_onnx_free(m);
    /* pads that leave nothing */
    m = maxunpool((int64_t[]){1, 1, 2, 2}, false, (int64_t[]){2, 2}, (int64_t[]){1, 1},
                  (int64_t[]){2, 0, 2, 0});
    expect_error(run(m, 2, in, 1, &out), NB_ERR_SHAPE,
                 "MaxUnpool 'n0' (opset 11): the unpooled size of spatial dim 0 is 0 (input 2, "
                 "kernel 2, stride 1, pads 2 + 2)");
    nb_onnx_free(m);
    release(in, 3);
}
END_TEST

START_TEST(maxpool_then_maxunpool)
{
    /* y, i = MaxPool(x) (2x2, stride 2); z = MaxUnpool(y, i): each window's
     * first maximum stays where it was, everything else is 0 */
    enum { N = 2, C = 2, H = 4, W = 6 };
    pb g = {0}, n1 = node_new("MaxPool", NULL, "x", "y,i");
    attr_ints(&n1, "kernel_shape", INTS(2, 2));
    attr_ints(&n1, "strides", INTS(2, 2));
    pb n2 = node_new("MaxUnpool", NULL, "y,i", "z");
    attr_ints(&n2, "kernel_shape", INTS(2, 2));
    attr_ints(&n2, "strides", INTS(2, 2));
    pb_msg(&g, 1, &n1);
    pb_msg(&g, 1, &n2);
    value_info(&g, 11, "x", T_FLOAT, 4, (int64_t[]){N, C, H, W});
    value_info(&g, 12, "z", T_FLOAT, -1, NULL);
    nb_onnx_model *m = load(&g, 12, false);
    float x[N * C * H * W];
    fill(x, N * C * H * W, 3);
    x[1] = x[0]; /* a tie: the first wins */
    double want[N * C * H * W] = {0};
    for (int pl = 0; pl < N * C; pl++)
        for (int oh = 0; oh < H / 2; oh++)
            for (int ow = 0; ow < W / 2; ow++) {
                int best = -1;
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++) {
                        int p = (pl * H + 2 * oh + i) * W + 2 * ow + j;
                        if (best < 0 || x[p] > x[best])
                            best = p;
                    }
                want[best] = x[best];
            }
    nb_tensor in, out = {0};
    tensor_of(&in, NB_F32, 4, (int64_t[]){N, C, H, W}, x);
    ck_assert_msg(run(m, 1, &in, 1, &out) == NB_OK, "%s", nb_last_error());
    expect_values(&out, 4, (int64_t[]){N, C, H, W}, want, 0);
    nb_tensor_release(&out);
    nb_tensor_release(&in);
    nb_onnx_free(m);
}
END_TEST

/* ---- 3-D MaxPool and AveragePool --------------------------------------------- */

START_TEST(pool3d_against_loop)
{
    enum { N = 2, C = 2, D = 5, H = 6, W = 7 };
    float x[N * C * D * H * W];
    fill(x, N * C * D * H * W, 11);
    const int64_t k[3] = {2, 3, 2}, s[3] = {2, 1, 2}, pads[6] = {1, 0, 1, 0, 1, 1};
    /* kind: 0 max, 1 avg, 2 avg counting pads; ceil mode on the odd ones */
    for (int variant = 0; variant < 6; variant++) {
        int kind = variant / 2, ceil = variant & 1;
        pb n = node_new(kind ? "AveragePool" : "MaxPool", NULL, "x", "y");
        attr_ints(&n, "kernel_shape", k, 3);
        attr_ints(&n, "strides", s, 3);
        attr_ints(&n, "pads", pads, 6);
        attr_int(&n, "ceil_mode", ceil);
        if (kind)
            attr_int(&n, "count_include_pad", kind == 2);
        io in = {"x", T_FLOAT, 5, {N, C, D, H, W}}, out = {"y", T_FLOAT, -1, {0}};
        nb_onnx_model *m = one_node(&n, 19, &in, 1, &out, 1);
        int64_t dims[3] = {D, H, W}, o[3];
        for (int i = 0; i < 3; i++) {
            int64_t num = dims[i] + pads[i] + pads[3 + i] - k[i];
            o[i] = (ceil ? (num + s[i] - 1) / s[i] : num / s[i]) + 1;
            if (ceil && (o[i] - 1) * s[i] >= dims[i] + pads[i])
                o[i]--;
        }
        int64_t total = N * C * o[0] * o[1] * o[2];
        double *want = malloc(sizeof(double) * (size_t)total);
        for (int64_t e = 0; e < total; e++) {
            int64_t ow = e % o[2], oh = e / o[2] % o[1], od = e / (o[1] * o[2]) % o[0];
            int64_t pl = e / (o[0] * o[1] * o[2]), oo[3] = {od, oh, ow};
            double acc = kind ? 0 : -INFINITY;
            int64_t in_img = 1, in_pad = 1;
            for (int i = 0; i < 3; i++) {
                int64_t a = 0, b = 0;
                for (int64_t t = 0; t < k[i]; t++) {
                    int64_t p = oo[i] * s[i] - pads[i] + t;
                    a += p >= 0 && p < dims[i];
                    b += p >= -pads[i] && p < dims[i] + pads[3 + i];
                }
                in_img *= a, in_pad *= b;
            }
            for (int64_t i = 0; i < k[0]; i++)
                for (int64_t j = 0; j < k[1]; j++)
                    for (int64_t l = 0; l < k[2]; l++) {
                        int64_t pd = od * s[0] - pads[0] + i, ph = oh * s[1] - pads[1] + j;
                        int64_t pw = ow * s[2] - pads[2] + l;
                        if (pd < 0 || pd >= D || ph < 0 || ph >= H || pw < 0 || pw >= W)
                            continue;
                        double v = x[((pl * D + pd) * H + ph) * W + pw];
                        acc = kind ? acc + v : fmax(acc, v);
                    }
            want[e] = kind == 0 ? acc : acc / (double)(kind == 2 ? in_pad : in_img);
        }
        nb_tensor t, y = {0};
        tensor_of(&t, NB_F32, 5, (int64_t[]){N, C, D, H, W}, x);
        ck_assert_msg(run(m, 1, &t, 1, &y) == NB_OK, "%s", nb_last_error());
        expect_values(&y, 5, (int64_t[]){N, C, o[0], o[1], o[2]}, want, 1e-6);
        free(want);
        nb_tensor_release(&y);
        nb_tensor_release(&t);
        nb_onnx_free(m);
    }
}
END_TEST

/* LpPool on nd = 1, 2, 3 spatial dims (dims padded with 1s to 3-D) against
 * (sum of |x|^p over the window's in-image taps)^(1/p); GlobalLpPool too. */
static void lp_case(int nd, const int64_t *dims, const int64_t *k, const int64_t *s,
                    const int64_t *pads, int ceil, int p)
{
    enum { NC = 4 }; /* N = 2, C = 2 */
    int64_t d3[3] = {1, 1, 1}, k3[3] = {1, 1, 1}, s3[3] = {1, 1, 1}, lead[3] = {0}, o[3] = {1, 1, 1};
    int off = 3 - nd;
    int64_t xdims[5] = {2, 2}, odims[5] = {2, 2}, plane = 1, oplane = 1;
    for (int i = 0; i < nd; i++) {
        d3[off + i] = dims[i], k3[off + i] = k[i], s3[off + i] = s[i], lead[off + i] = pads[i];
        int64_t num = dims[i] + pads[i] + pads[nd + i] - k[i];
        o[off + i] = (ceil ? (num + s[i] - 1) / s[i] : num / s[i]) + 1;
        if (ceil && (o[off + i] - 1) * s[i] >= dims[i] + pads[i])
            o[off + i]--;
        xdims[2 + i] = dims[i], odims[2 + i] = o[off + i];
        plane *= dims[i], oplane *= o[off + i];
    }
    float *x = malloc(sizeof(float) * (size_t)(NC * plane));
    double *want = malloc(sizeof(double) * (size_t)(NC * oplane));
    fill(x, NC * plane, (uint32_t)(nd * 100 + p));
    for (int64_t e = 0; e < NC * oplane; e++) {
        int64_t ow = e % o[2], oh = e / o[2] % o[1], od = e / (o[1] * o[2]) % o[0], pl = e / oplane;
        double acc = 0;
        for (int64_t i = 0; i < k3[0]; i++)
            for (int64_t j = 0; j < k3[1]; j++)
                for (int64_t l = 0; l < k3[2]; l++) {
                    int64_t a = od * s3[0] - lead[0] + i, b = oh * s3[1] - lead[1] + j;
                    int64_t cc = ow * s3[2] - lead[2] + l;
                    if (a >= 0 && a < d3[0] && b >= 0 && b < d3[1] && cc >= 0 && cc < d3[2])
                        acc += pow(fabs(x[pl * plane + (a * d3[1] + b) * d3[2] + cc]), p);
                }
        want[e] = pow(acc, 1.0 / p);
    }
    pb n = node_new("LpPool", NULL, "x", "y");
    attr_ints(&n, "kernel_shape", k, nd);
    attr_ints(&n, "strides", s, nd);
    attr_ints(&n, "pads", pads, 2 * nd);
    attr_int(&n, "ceil_mode", ceil);
    attr_int(&n, "p", p);
    io in = {"x", T_FLOAT, 2 + nd, {0}}, out = {"y", T_FLOAT, -1, {0}};
    memcpy(in.dims, xdims, sizeof xdims);
    nb_onnx_model *m = one_node(&n, 18, &in, 1, &out, 1);
    nb_tensor t, y = {0};
    tensor_of(&t, NB_F32, 2 + nd, xdims, x);
    ck_assert_msg(run(m, 1, &t, 1, &y) == NB_OK, "%s", nb_last_error());
    expect_values(&y, 2 + nd, odims, want, 2e-6);
    nb_tensor_release(&y);
    nb_onnx_free(m);
    /* GlobalLpPool: the whole image */
    n = node_new("GlobalLpPool", NULL, "x", "y");
    attr_int(&n, "p", p);
    m = one_node(&n, 18, &in, 1, &out, 1);
    for (int64_t pl = 0; pl < NC; pl++) {
        double acc = 0;
        for (int64_t i = 0; i < plane; i++)
            acc += pow(fabs(x[pl * plane + i]), p);
        want[pl] = pow(acc, 1.0 / p);
    }
    int64_t gdims[5] = {2, 2, 1, 1, 1};
    ck_assert_msg(run(m, 1, &t, 1, &y) == NB_OK, "%s", nb_last_error());
    expect_values(&y, 2 + nd, gdims, want, 2e-6);
    nb_tensor_release(&y);
    nb_onnx_free(m);
    nb_tensor_release(&t);
    free(x);
    free(want);
}

START_TEST(lp_pool_against_loop)
{
    for (int p = 1; p <= 3; p++) {
        lp_case(1, (int64_t[]){9}, (int64_t[]){3}, (int64_t[]){2}, (int64_t[]){1, 2}, 0, p);
        lp_case(2, (int64_t[]){5, 6}, (int64_t[]){2, 3}, (int64_t[]){2, 2},
                (int64_t[]){1, 0, 1, 1}, p == 2, p);
        lp_case(3, (int64_t[]){4, 5, 3}, (int64_t[]){2, 2, 3}, (int64_t[]){2, 1, 1},
                (int64_t[]){0, 1, 1, 1, 0, 1}, p == 3, p);
    }
}
END_TEST

/* ---- Det ------------------------------------------------------------------------ */

static nb_onnx_model *det_model(int elem, int ndim, const int64_t *dims)
{
    pb n = node_new("Det", NULL, "x", "y");
    io in = {"x", elem, ndim, {0}}, out = {"y", elem, -1, {0}};
    memcpy(in.dims, dims, sizeof(int64_t) * (size_t)ndim);
    return one_node(&n, 11, &in, 1, &out, 1);
}

START_TEST(det_values)
{
    /* 2-D: [[2, 1], [1, 3]] -> 5 (by hand) */
    nb_onnx_model *m = det_model(T_FLOAT, 2, (int64_t[]){2, 2});
    nb_tensor in, out = {0};
    tensor_of(&in, NB_F32, 2, (int64_t[]){2, 2}, (float[]){2, 1, 1, 3});
    ck_assert_int_eq(run(m, 1, &in, 1, &out), NB_OK);
    expect_values(&out, 0, NULL, (double[]){5}, 1e-7);
    nb_tensor_release(&out);
    nb_tensor_release(&in);
    nb_onnx_free(m);
    /* f64 (3, 4, 4): pivoting needed (zeros on the diagonal, a tiny first
     * pivot); numpy.linalg.det gives -0.5, -2 (a permutation times 2) and
     * 19.464006 */
    const double a[48] = {0.5, -1.25, 2.0, 0.75, 3.0, 0.0, -0.5, 1.5, -2.0, 4.0, 1.0, 0.25,
                          1.0, 2.5, -3.0, 0.0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2,
                          1e-3, 2, 3, 4, 2, 4.002, 6, 8.5, 1, 1, 1, 1, 0, 3, -1, 2};
    m = det_model(T_DOUBLE, 3, (int64_t[]){3, 4, 4});
    tensor_of(&in, NB_F64, 3, (int64_t[]){3, 4, 4}, a);
    ck_assert_int_eq(run(m, 1, &in, 1, &out), NB_OK);
    ck_assert_int_eq(out.dtype, NB_F64);
    expect_values(&out, 1, (int64_t[]){3}, (double[]){-0.5, -2.0, 19.464006000000012}, 1e-12);
    nb_tensor_release(&out);
    nb_tensor_release(&in);
    nb_onnx_free(m);
    /* f32 (2, 1, 3, 3): numpy's f64 det of the f32-rounded matrices; a singular one */
    const float b[27] = {0.0f, 0.142857f, 0.404061f, 0.742307f, 1.142857f, 1.597191f,
                         2.099563f, 2.645751f, 3.232488f, 3.857143f, 4.51754f, 5.211839f,
                         5.93846f, 6.696024f, 7.483315f, 8.29925f, 9.142857f, 10.013257f};
    float b2[36];
    memcpy(b2, b, sizeof(float) * 18);
    const float sing[9] = {1, 2, 3, 2, 4, 6, 0, 1, 5};
    m = det_model(T_FLOAT, 4, (int64_t[]){3, 1, 3, 3});
    memcpy(b2 + 18, sing, sizeof sing);
    tensor_of(&in, NB_F32, 4, (int64_t[]){3, 1, 3, 3}, b2);
    ck_assert_int_eq(run(m, 1, &in, 1, &out), NB_OK);
    expect_values(&out, 2, (int64_t[]){3, 1},
                  (double[]){-0.03971301136686891, -0.0038966167975064006, 0}, 1e-6);
    nb_tensor_release(&out);
    nb_tensor_release(&in);
    nb_onnx_free(m);
    /* 0 x 0 matrices: the empty product, 1 */
    m = det_model(T_DOUBLE, 3, (int64_t[]){2, 0, 0});
    ck_assert_int_eq(nb_tensor_zeros(&in, NB_F64, 3, (int64_t[]){2, 0, 0}), NB_OK);
    ck_assert_msg(run(m, 1, &in, 1, &out) == NB_OK, "%s", nb_last_error());
    expect_values(&out, 1, (int64_t[]){2}, (double[]){1, 1}, 0);
    nb_tensor_release(&out);
    nb_tensor_release(&in);
    nb_onnx_free(m);
}
END_TEST

START_TEST(det_bad_inputs)
{
    nb_onnx_model *m = det_model(T_FLOAT, 2, (int64_t[]){2, 3});
    nb_tensor in, out = {0};
    float z[6] = {0};
    tensor_of(&in, NB_F32, 2, (int64_t[]){2, 3}, z);
    expect_error(run(m, 1, &in, 1, &out), NB_ERR_SHAPE,
                 "Det 'n0' (opset 11): input (2,3) must be square matrices (..., n, n)");
    nb_tensor_release(&in);
    nb_onnx_free(m);
    m = det_model(T_INT32, 2, (int64_t[]){2, 2});
    tensor_of(&in, NB_I32, 2, (int64_t[]){2, 2}, (int32_t[]){1, 2, 3, 4});
    expect_error(run(m, 1, &in, 1, &out), NB_ERR_DTYPE, "input dtype i32 is not supported");
    nb_tensor_release(&in);
    nb_onnx_free(m);
}
END_TEST

/* ---- TfIdfVectorizer -------------------------------------------------------------- */

/* The pool: unigrams 1, 2 (columns 0, 1), bigrams (1,2), (2,1) (columns 2, 3). */
static nb_onnx_model *tfidf_model(const char *mode, int64_t min_n, int64_t max_n, int64_t skip,
                                  const float *weights, const int64_t *indexes, int elem,
                                  int ndim, const int64_t *dims)
{
    pb n = node_new("TfIdfVectorizer", NULL, "x", "y");
    attr_str(&n, "mode", mode);
    attr_int(&n, "min_gram_length", min_n);
    attr_int(&n, "max_gram_length", max_n);
    attr_int(&n, "max_skip_count", skip);
    attr_ints(&n, "ngram_counts", INTS(0, 2));
    attr_ints(&n, "ngram_indexes", indexes ? indexes : (const int64_t[]){0, 1, 2, 3}, 4);
    attr_ints(&n, "pool_int64s", INTS(1, 2, 1, 2, 2, 1));
    if (weights)
        attr_floats(&n, "weights", weights, 4);
    io in = {"x", elem, ndim, {0}}, out = {"y", T_FLOAT, -1, {0}};
    memcpy(in.dims, dims, sizeof(int64_t) * (size_t)ndim);
    return one_node(&n, 9, &in, 1, &out, 1);
}

/* Run a TfIdf model on tokens (int64) and compare with want. */
static void tfidf_check(nb_onnx_model *m, int ndim, const int64_t *dims, const int64_t *tok,
                        int out_ndim, const int64_t *out_dims, const double *want)
{
    nb_tensor in, out = {0};
    tensor_of(&in, NB_I64, ndim, dims, tok);
    ck_assert_msg(run(m, 1, &in, 1, &out) == NB_OK, "%s", nb_last_error());
    ck_assert_int_eq(out.dtype, NB_F32);
    expect_values(&out, out_ndim, out_dims, want, 1e-7);
    nb_tensor_release(&out);
    nb_tensor_release(&in);
    nb_onnx_free(m);
}

START_TEST(tfidf_counts)
{
    const int64_t tok[4] = {1, 2, 1, 2}, d4[1] = {4};
    /* unigrams 1: 2, 2: 2; bigrams (1,2) at 0 and 2, (2,1) at 1 */
    tfidf_check(tfidf_model("TF", 1, 2, 0, NULL, NULL, T_INT64, 1, d4), 1, d4, tok, 1, d4,
                (double[]){2, 2, 2, 1});
    /* bigrams only */
    tfidf_check(tfidf_model("TF", 2, 2, 0, NULL, NULL, T_INT64, 1, d4), 1, d4, tok, 1, d4,
                (double[]){0, 0, 2, 1});
    /* skips up to 2: distance 2 gives (1,1), (2,2), no hit; distance 3 gives
     * (1,2) once more; unigrams are counted once */
    tfidf_check(tfidf_model("TF", 1, 2, 2, NULL, NULL, T_INT64, 1, d4), 1, d4, tok, 1, d4,
                (double[]){2, 2, 3, 1});
    /* a huge skip count is the same as any beyond the row (and quick) */
    tfidf_check(tfidf_model("TF", 1, 2, 1000000000000LL, NULL, NULL, T_INT64, 1, d4), 1, d4, tok,
                1, d4, (double[]){2, 2, 3, 1});
    /* unigrams only, skips change nothing */
    tfidf_check(tfidf_model("TF", 1, 1, 3, NULL, NULL, T_INT64, 1, d4), 1, d4, tok, 1, d4,
                (double[]){2, 2, 0, 0});
    /* columns mapped in reverse, and with gaps (6 columns) */
    tfidf_check(tfidf_model("TF", 1, 2, 0, NULL, (const int64_t[]){3, 2, 1, 0}, T_INT64, 1, d4),
                1, d4, tok, 1, d4, (double[]){1, 2, 2, 2});
    tfidf_check(tfidf_model("TF", 1, 2, 0, NULL, (const int64_t[]){0, 1, 5, 3}, T_INT64, 1, d4),
                1, d4, tok, 1, (int64_t[]){6}, (double[]){2, 2, 0, 1, 0, 2});
}
END_TEST

START_TEST(tfidf_weights_and_batches)
{
    const float w[4] = {0.5f, 1.0f, 1.5f, 2.0f};
    const int64_t tok[4] = {1, 2, 1, 2}, d4[1] = {4};
    tfidf_check(tfidf_model("IDF", 1, 2, 0, w, NULL, T_INT64, 1, d4), 1, d4, tok, 1, d4,
                (double[]){0.5, 1, 1.5, 2});
    tfidf_check(tfidf_model("TFIDF", 1, 2, 0, w, NULL, T_INT64, 1, d4), 1, d4, tok, 1, d4,
                (double[]){1, 2, 3, 2});
    /* IDF without weights: 1 where the n-gram occurs */
    tfidf_check(tfidf_model("IDF", 1, 2, 0, NULL, NULL, T_INT64, 1, (int64_t[]){2}), 1,
                (int64_t[]){2}, (int64_t[]){1, 1}, 1, d4, (double[]){1, 0, 0, 0});
    /* int32 tokens in a batch of 2 rows */
    nb_onnx_model *m = tfidf_model("TF", 1, 2, 0, NULL, NULL, T_INT32, 2, (int64_t[]){2, 4});
    nb_tensor in, out = {0};
    tensor_of(&in, NB_I32, 2, (int64_t[]){2, 4}, (int32_t[]){1, 2, 1, 2, 2, 1, 0, 0});
    ck_assert_msg(run(m, 1, &in, 1, &out) == NB_OK, "%s", nb_last_error());
    expect_values(&out, 2, (int64_t[]){2, 4}, (double[]){2, 2, 2, 1, 1, 1, 0, 1}, 0);
    nb_tensor_release(&out);
    nb_tensor_release(&in);
    nb_onnx_free(m);
}
END_TEST

/* Load a TfIdf node with one attribute changed; run it on 4 tokens and
 * expect the message. */
static void tfidf_bad(void (*change)(pb *n), nb_status want, const char *msg)
{
    pb n = node_new("TfIdfVectorizer", NULL, "x", "y");
    change(&n);
    io in = {"x", T_INT64, 1, {4}}, out = {"y", T_FLOAT, -1, {0}};
    nb_onnx_model *m = one_node(&n, 9, &in, 1, &out, 1);
    nb_tensor t, y = {0};
    tensor_of(&t, NB_I64, 1, (int64_t[]){4}, (int64_t[]){1, 2, 3, 4});
    expect_error(run(m, 1, &t, 1, &y), want, msg);
    nb_tensor_release(&t);
    nb_onnx_free(m);
}

static void base_attrs(pb *n, const char *mode)
{
    attr_str(n, "mode", mode);
    attr_int(n, "min_gram_length", 1);
    attr_int(n, "max_gram_length", 2);
    attr_int(n, "max_skip_count", 0);
    attr_ints(n, "ngram_indexes", INTS(0, 1, 2));
}
static void bad_mode(pb *n)
{
    base_attrs(n, "BM25");
    attr_ints(n, "ngram_counts", INTS(0, 1));
    attr_ints(n, "pool_int64s", INTS(1, 2, 3));
}
static void dup_bigram(pb *n)
{
    base_attrs(n, "TF");
    attr_ints(n, "ngram_counts", INTS(0, 1));
    attr_ints(n, "pool_int64s", INTS(1, 2, 3, 2, 3));
}
static void half_bigram(pb *n)
{
    base_attrs(n, "TF");
    attr_ints(n, "ngram_counts", INTS(0, 2));
    attr_ints(n, "pool_int64s", INTS(1, 2, 3));
}
static void no_min(pb *n)
{
    attr_str(n, "mode", "TF");
    attr_int(n, "max_gram_length", 2);
}

START_TEST(tfidf_bad_attributes)
{
    tfidf_bad(bad_mode, NB_ERR_ARG, "TfIdfVectorizer 'n0' (opset 9): mode 'BM25' is not TF, IDF or TFIDF");
    tfidf_bad(dup_bigram, NB_ERR_ARG, "the pool has a 2-gram twice");
    tfidf_bad(half_bigram, NB_ERR_ARG, "1 pool items do not make whole 2-grams");
    tfidf_bad(no_min, NB_ERR_ARG, "attribute min_gram_length is required");
}
END_TEST

/* ---- RoiAlign ------------------------------------------------------------------- */

/* x (2, 1, 4, 4): image 0 holds 4h + w, image 1 100 + 4h + w. Bilinear
 * sampling of a linear image is exact, so an average bin is the image at
 * the bin's centre while every sample lies inside [0, 3]. */
static void roi_image(nb_tensor *x)
{
    float v[32];
    for (int i = 0; i < 32; i++)
        v[i] = (float)(i % 16 + (i >= 16 ? 100 : 0));
    tensor_of(x, NB_F32, 4, (int64_t[]){2, 1, 4, 4}, v);
}

typedef struct roi_case {
    int opset;
    const char *mode, *ctm; /* NULL: the default */
    int64_t oh, ow, sampling;
    float scale;
} roi_case;

static nb_onnx_model *roi_model(const roi_case *rc, int64_t R)
{
    pb n = node_new("RoiAlign", NULL, "x,rois,b", "y");
    if (rc->mode)
        attr_str(&n, "mode", rc->mode);
    if (rc->ctm)
        attr_str(&n, "coordinate_transformation_mode", rc->ctm);
    attr_int(&n, "output_height", rc->oh);
    attr_int(&n, "output_width", rc->ow);
    attr_int(&n, "sampling_ratio", rc->sampling);
    attr_float(&n, "spatial_scale", rc->scale);
    io in[3] = {{"x", T_FLOAT, 4, {2, 1, 4, 4}}, {"rois", T_FLOAT, 2, {R, 4}},
                {"b", T_INT64, 1, {R}}};
    io out = {"y", T_FLOAT, -1, {0}};
    return one_node(&n, rc->opset, in, 3, &out, 1);
}

static nb_status roi_run(const roi_case *rc, int64_t R, const float *rois, const int64_t *batch,
                         nb_tensor *y)
{
    nb_onnx_model *m = roi_model(rc, R);
    nb_tensor in[3];
    roi_image(&in[0]);
    tensor_of(&in[1], NB_F32, 2, (int64_t[]){R, 4}, rois);
    tensor_of(&in[2], NB_I64, 1, (int64_t[]){R}, batch);
    nb_status s = run(m, 3, in, 1, y);
    release(in, 3);
    nb_onnx_free(m);
    return s;
}

START_TEST(roi_align_values)
{
    const double centre[4] = {2.5, 3.5, 6.5, 7.5}; /* 4 y + x at (0.5|1.5, 0.5|1.5) */
    nb_tensor y = {0};
    /* half_pixel (16's default): (0.5, 0.5, 2.5, 2.5) - 0.5 covers [0, 2]^2;
     * 2 samples per bin, or 1 when adaptive (ceil(2 / 2)) */
    for (int64_t sr = 0; sr <= 2; sr += 2) {
        roi_case rc = {16, NULL, NULL, 2, 2, sr, 1.0f};
        ck_assert_int_eq(roi_run(&rc, 1, (float[]){0.5f, 0.5f, 2.5f, 2.5f}, (int64_t[]){0}, &y),
                         NB_OK);
        expect_values(&y, 4, (int64_t[]){1, 1, 2, 2}, centre, 1e-6);
        nb_tensor_release(&y);
    }
    /* output_half_pixel: opset 10 (its only mode) and 16 by attribute */
    for (int op = 10; op <= 16; op += 6) {
        roi_case rc = {op, "avg", op == 16 ? "output_half_pixel" : NULL, 2, 2, 2, 1.0f};
        ck_assert_int_eq(roi_run(&rc, 1, (float[]){0, 0, 2, 2}, (int64_t[]){0}, &y), NB_OK);
        expect_values(&y, 4, (int64_t[]){1, 1, 2, 2}, centre, 1e-6);
        nb_tensor_release(&y);
    }
    /* spatial_scale 0.5, half_pixel: (0, 0, 4, 4) -> [-0.5, 1.5]^2, one bin of 2x2
     * samples at 0 and 1: the mean of x at (0|1, 0|1) = (0 + 1 + 4 + 5) / 4 */
    roi_case rs = {16, NULL, NULL, 1, 1, 2, 0.5f};
    ck_assert_int_eq(roi_run(&rs, 1, (float[]){0, 0, 4, 4}, (int64_t[]){0}, &y), NB_OK);
    expect_values(&y, 4, (int64_t[]){1, 1, 1, 1}, (double[]){2.5}, 1e-6);
    nb_tensor_release(&y);
    /* two regions: image 1 at the same place, and one outside the image (0) */
    roi_case r2 = {16, NULL, NULL, 2, 2, 2, 1.0f};
    ck_assert_int_eq(roi_run(&r2, 2, (float[]){0.5f, 0.5f, 2.5f, 2.5f, 10, 10, 12, 12},
                             (int64_t[]){1, 0}, &y),
                     NB_OK);
    expect_values(&y, 4, (int64_t[]){2, 1, 2, 2}, (double[]){102.5, 103.5, 106.5, 107.5, 0, 0, 0, 0},
                  1e-6);
    nb_tensor_release(&y);
    /* one sample at (0.5, 0.5): avg sums the corner terms 0, 0.25, 1, 1.25;
     * max takes the largest, 1.25 (ONNX Runtime's max mode) */
    roi_case ra = {10, "avg", NULL, 1, 1, 1, 1.0f}, rm = {10, "max", NULL, 1, 1, 1, 1.0f};
    ck_assert_int_eq(roi_run(&ra, 1, (float[]){0, 0, 1, 1}, (int64_t[]){0}, &y), NB_OK);
    expect_values(&y, 4, (int64_t[]){1, 1, 1, 1}, (double[]){2.5}, 1e-6);
    nb_tensor_release(&y);
    ck_assert_int_eq(roi_run(&rm, 1, (float[]){0, 0, 1, 1}, (int64_t[]){0}, &y), NB_OK);
    expect_values(&y, 4, (int64_t[]){1, 1, 1, 1}, (double[]){1.25}, 1e-6);
    nb_tensor_release(&y);
    /* max over samples on the grid points (1|3, 1|3): the image there */
    ck_assert_int_eq(roi_run(&(roi_case){10, "max", NULL, 2, 2, 1, 1.0f}, 1,
                             (float[]){0, 0, 4, 4}, (int64_t[]){0}, &y),
                     NB_OK);
    expect_values(&y, 4, (int64_t[]){1, 1, 2, 2}, (double[]){5, 7, 13, 15}, 1e-6);
    nb_tensor_release(&y);
}
END_TEST

START_TEST(roi_align_bad_inputs)
{
    nb_tensor y = {0};
    roi_case bad_mode = {16, "median", NULL, 1, 1, 1, 1.0f};
    expect_error(roi_run(&bad_mode, 1, (float[]){0, 0, 1, 1}, (int64_t[]){0}, &y), NB_ERR_ARG,
                 "RoiAlign 'n0' (opset 16): mode 'median' is not avg or max");
    roi_case bad_ct = {16, NULL, "align_corners", 1, 1, 1, 1.0f};
    expect_error(roi_run(&bad_ct, 1, (float[]){0, 0, 1, 1}, (int64_t[]){0}, &y), NB_ERR_ARG,
                 "coordinate_transformation_mode 'align_corners' is not half_pixel");
    roi_case bad_h = {16, NULL, NULL, 0, 1, 1, 1.0f};
    expect_error(roi_run(&bad_h, 1, (float[]){0, 0, 1, 1}, (int64_t[]){0}, &y), NB_ERR_ARG,
                 "output_height 0 and output_width 1 must be >= 1");
    roi_case ok = {16, NULL, NULL, 1, 1, 1, 1.0f};
    expect_error(roi_run(&ok, 1, (float[]){0, 0, 1, 1}, (int64_t[]){5}, &y), NB_ERR_ARG,
                 "batch index 5 of region 0 is outside [0, 2)");
    expect_error(roi_run(&ok, 2, (float[]){0, 0, 1, 1, 0, NAN, 1, 1}, (int64_t[]){0, 0}, &y),
                 NB_ERR_ARG, "region 1 (0, nan, 1, 1 scaled) is not finite");
    /* adaptive sampling of a huge region would take forever: refused */
    roi_case adaptive = {16, NULL, NULL, 1, 1, 0, 1.0f};
    expect_error(roi_run(&adaptive, 1, (float[]){0, 0, 1e6f, 1e6f}, (int64_t[]){0}, &y),
                 NB_ERR_ARG, "needs 1e+12 samples per bin (at most 1048576)");
}
END_TEST

/* ---- Adam's default epsilon --------------------------------------------------------- */

START_TEST(adam_epsilon_default)
{
    /* X = 1, G = 1e-4, V = H = 0, T = 0, alpha 0.9, beta 0.999 (defaults):
     * V' = 1e-5, H' = 1e-11, X' = 1 - 0.1 V' / (sqrt(H') + eps), where eps
     * (1e-6 by default) changes X' by a quarter */
    for (int explicit_eps = 0; explicit_eps < 2; explicit_eps++) {
        pb n = node_new("Adam", "ai.onnx.preview.training", "r,t,x,g,v,h", "x2,v2,h2");
        if (explicit_eps)
            attr_float(&n, "epsilon", 0.5f);
        pb g = {0};
        pb_msg(&g, 1, &n);
        const char *names[6] = {"r", "t", "x", "g", "v", "h"};
        for (int i = 0; i < 6; i++)
            value_info(&g, 11, names[i], i == 1 ? T_INT64 : T_DOUBLE, i < 2 ? 0 : 1,
                       (int64_t[]){1});
        value_info(&g, 12, "x2", T_DOUBLE, -1, NULL);
        value_info(&g, 12, "v2", T_DOUBLE, -1, NULL);
        value_info(&g, 12, "h2", T_DOUBLE, -1, NULL);
        nb_onnx_model *m = load(&g, 17, true);
        nb_tensor in[6], out[3] = {{0}};
        tensor_of(&in[0], NB_F64, 0, NULL, (double[]){0.1});
        tensor_of(&in[1], NB_I64, 0, NULL, (int64_t[]){0});
        tensor_of(&in[2], NB_F64, 1, (int64_t[]){1}, (double[]){1});
        tensor_of(&in[3], NB_F64, 1, (int64_t[]){1}, (double[]){1e-4});
        tensor_of(&in[4], NB_F64, 1, (int64_t[]){1}, (double[]){0});
        tensor_of(&in[5], NB_F64, 1, (int64_t[]){1}, (double[]){0});
        ck_assert_msg(run(m, 6, in, 3, out) == NB_OK, "%s", nb_last_error());
        double eps = explicit_eps ? 0.5 : 1e-6;
        double want = 1.0 - 0.1 * 1e-5 / (sqrt(1e-11) + eps);
        expect_values(&out[0], 1, (int64_t[]){1}, &want, 1e-12);
        expect_values(&out[1], 1, (int64_t[]){1}, (double[]){1e-5}, 1e-12);
        expect_values(&out[2], 1, (int64_t[]){1}, (double[]){1e-11}, 1e-12);
        release(out, 3);
        release(in, 6);
        nb_onnx_free(m);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("onnx_ops_extra");
    TCase *tc = tcase_create("ops");
    tcase_add_test(tc, maxpool_indices_hand);
    tcase_add_test(tc, maxpool_indices_loop);
    tcase_add_test(tc, maxpool_bad_attributes);
    tcase_add_test(tc, maxunpool_values);
    tcase_add_test(tc, maxpool_then_maxunpool);
    tcase_add_test(tc, pool3d_against_loop);
    tcase_add_test(tc, lp_pool_against_loop);
    tcase_add_test(tc, det_values);
    tcase_add_test(tc, det_bad_inputs);
    tcase_add_test(tc, tfidf_counts);
    tcase_add_test(tc, tfidf_weights_and_batches);
    tcase_add_test(tc, tfidf_bad_attributes);
    tcase_add_test(tc, roi_align_values);
    tcase_add_test(tc, roi_align_bad_inputs);
    tcase_add_test(tc, adam_epsilon_default);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
