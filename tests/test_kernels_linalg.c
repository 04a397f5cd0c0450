/* CPU kernels for matmul, reductions, softmax and data movement, each checked
 * against a naive double-precision loop over logical indices. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "kernels/cpu.h"
#include "kernels/ops.h"
#include "tensor/tensor.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* Uniform in [-1, 1) (xorshift64*). */
static double urand(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

/* A contiguous tensor of random values in [lo, hi) (integers rounded). */
static nb_tensor rand_tensor(nb_dtype dt, int ndim, const int64_t *shape, double lo, double hi)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, dt, ndim, shape), NB_OK);
    int64_t n = nb_tensor_numel(&t);
    void *d = nb_tensor_data(&t);
    for (int64_t i = 0; i < n; i++) {
        double v = lo + (urand() + 1.0) * 0.5 * (hi - lo);
        switch (dt) {
        case NB_F32: ((float *)d)[i] = (float)v; break;
        case NB_F64: ((double *)d)[i] = v; break;
        case NB_I32: ((int32_t *)d)[i] = (int32_t)floor(v); break;
        case NB_I64: ((int64_t *)d)[i] = (int64_t)floor(v); break;
        default: ((uint8_t *)d)[i] = (uint8_t)floor(v); break;
        }
    }
    return t;
}

static nb_tensor empty(nb_dtype dt, int ndim, const int64_t *shape)
{
    nb_tensor t;
    ck_assert_int_eq(nb_tensor_empty(&t, dt, ndim, shape), NB_OK);
    return t;
}

static nb_status call1(nb_op op, const nb_tensor *in, nb_tensor *out, const void *params)
{
    const nb_tensor *ins[1] = {in};
    nb_kernel_call c = {op, 1, ins, out, params, NULL, 0, 0};
    return nb_cpu_backend()->kernels[op](&c);
}

/* Row-major multi-index of flat position i. */
static void unflat(int ndim, const int64_t *shape, int64_t i, int64_t *idx)
{
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
}

/* Largest |got - want| / max(1, |want|) over a tensor and a double array. */
static double max_rel_err(const nb_tensor *got, const double *want)
{
    double worst = 0;
    int64_t n = nb_tensor_numel(got);
    for (int64_t i = 0; i < n; i++) {
        double g = nb_tensor_get_flat(got, i), w = want[i];
        double e = fabs(g - w) / (fabs(w) > 1 ? fabs(w) : 1);
        if (isnan(g) != isnan(w))
            e = INFINITY;
        else if (isnan(g))
            e = 0;
        worst = e > worst ? e : worst;
    }
    return worst;
}

/* ---- matmul ----------------------------------------------------------- */

/* out[b, m, n] = sum_k op(A)[bA, m, k] op(B)[bB, k, n] in double, where bA, bB
 * are the broadcast batch indices. */
static double *ref_matmul(const nb_tensor *A, const nb_tensor *B, bool ta, bool tb,
                          const nb_tensor *C)
{
    int nc = C->ndim, na = A->ndim, nbd = B->ndim;
    int64_t M = C->shape[nc - 2], N = C->shape[nc - 1];
    int64_t K = ta ? A->shape[na - 2] : A->shape[na - 1];
    int64_t total = nb_tensor_numel(C);
    double *r = malloc((size_t)(total > 0 ? total : 1) * sizeof *r);
    int64_t ci[NB_MAX_DIMS], ai[NB_MAX_DIMS], bi[NB_MAX_DIMS];
    for (int64_t p = 0; p < total; p++) {
        unflat(nc, C->shape, p, ci);
        for (int d = 0; d < na - 2; d++) {
            int cd = d + (nc - na);
            ai[d] = A->shape[d] == 1 ? 0 : ci[cd];
        }
        for (int d = 0; d < nbd - 2; d++) {
            int cd = d + (nc - nbd);
            bi[d] = B->shape[d] == 1 ? 0 : ci[cd];
        }
        int64_t m = ci[nc - 2], n = ci[nc - 1];
        double s = 0;
        for (int64_t k = 0; k < K; k++) {
            ai[na - 2] = ta ? k : m;
            ai[na - 1] = ta ? m : k;
            bi[nbd - 2] = tb ? n : k;
            bi[nbd - 1] = tb ? k : n;
            s += nb_tensor_get(A, ai) * nb_tensor_get(B, bi);
        }
        r[p] = s;
        (void)M;
        (void)N;
    }
    return r;
}

/* Run C = op(A) op(B) (C shaped by the caller) and compare with the reference. */
static void check_matmul(const nb_tensor *A, const nb_tensor *B, bool ta, bool tb, int nc,
                         const int64_t *cshape, void *ws, size_t ws_size)
{
    nb_tensor C = empty(A->dtype, nc, cshape);
    nb_matmul_params mp = {ta, tb};
    const nb_tensor *ins[2] = {A, B};
    nb_kernel_call c = {NB_OP_MATMUL, 2, ins, &C, &mp, ws, ws_size, 0};
    ck_assert_msg(nb_cpu_matmul(&c) == NB_OK, "matmul failed: %s", nb_last_error());
    double *want = ref_matmul(A, B, ta, tb, &C);
    double tol = A->dtype == NB_F32 ? 1e-5 : 1e-12;
    double err = max_rel_err(&C, want);
    ck_assert_msg(err < tol, "matmul error %g (ta=%d tb=%d)", err, ta, tb);
    free(want);
    nb_tensor_release(&C);
}

/* (M x K) @ (K x N) in f32 and f64 with every transpose combination. */
static void check_2d(int64_t M, int64_t K, int64_t N)
{
    nb_dtype dts[2] = {NB_F32, NB_F64};
    for (int di = 0; di < 2; di++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int64_t as[2] = {ta ? K : M, ta ? M : K}, bs[2] = {tb ? N : K, tb ? K : N};
                int64_t cs[2] = {M, N};
                nb_tensor A = rand_tensor(dts[di], 2, as, -1, 1);
                nb_tensor B = rand_tensor(dts[di], 2, bs, -1, 1);
                check_matmul(&A, &B, ta, tb, 2, cs, NULL, 0);
                nb_tensor_release(&A);
                nb_tensor_release(&B);
            }
}

START_TEST(test_matmul_2d_trans) { check_2d(7, 5, 9); }
END_TEST

START_TEST(test_matmul_batched)
{
    nb_dtype dts[2] = {NB_F32, NB_F64};
    for (int di = 0; di < 2; di++) {
        /* (2,3,4,5) x (5,6): folds into one GEMM */
        int64_t as[4] = {2, 3, 4, 5}, bs[2] = {5, 6}, cs[4] = {2, 3, 4, 6};
        nb_tensor A = rand_tensor(dts[di], 4, as, -1, 1);
        nb_tensor B = rand_tensor(dts[di], 2, bs, -1, 1);
        check_matmul(&A, &B, false, false, 4, cs, NULL, 0);
        /* same with B batch dims of size 1 */
        int64_t b1[4] = {1, 1, 5, 6};
        nb_tensor B1 = rand_tensor(dts[di], 4, b1, -1, 1);
        check_matmul(&A, &B1, false, false, 4, cs, NULL, 0);
        /* transposed A cannot fold: loop */
        int64_t at[4] = {2, 3, 5, 4};
        nb_tensor At = rand_tensor(dts[di], 4, at, -1, 1);
        check_matmul(&At, &B, true, false, 4, cs, NULL, 0);
        /* both batched, trans_b */
        int64_t bb[4] = {2, 3, 6, 5};
        nb_tensor Bb = rand_tensor(dts[di], 4, bb, -1, 1);
        check_matmul(&A, &Bb, false, true, 4, cs, NULL, 0);
        nb_tensor_release(&A);
        nb_tensor_release(&B);
        nb_tensor_release(&B1);
        nb_tensor_release(&At);
        nb_tensor_release(&Bb);
    }
}
END_TEST

START_TEST(test_matmul_broadcast)
{
    nb_dtype dts[2] = {NB_F32, NB_F64};
    for (int di = 0; di < 2; di++) {
        int64_t as[4] = {3, 1, 4, 5}, bs[3] = {2, 5, 6}, cs[4] = {3, 2, 4, 6};
        nb_tensor A = rand_tensor(dts[di], 4, as, -1, 1);
        nb_tensor B = rand_tensor(dts[di], 3, bs, -1, 1);
        check_matmul(&A, &B, false, false, 4, cs, NULL, 0);
        /* 2-D A against batched B */
        int64_t a2[2] = {4, 5}, c2[3] = {2, 4, 6};
        nb_tensor A2 = rand_tensor(dts[di], 2, a2, -1, 1);
        check_matmul(&A2, &B, false, false, 3, c2, NULL, 0);
        nb_tensor_release(&A);
        nb_tensor_release(&A2);
        nb_tensor_release(&B);
    }
}
END_TEST

START_TEST(test_matmul_views)
{
    nb_dtype dts[2] = {NB_F32, NB_F64};
    for (int di = 0; di < 2; di++) {
        /* A = transpose view of a (5,7) tensor: (7,5) column-major, no copy */
        int64_t s0[2] = {5, 7}, bs[2] = {5, 4}, cs[2] = {7, 4};
        nb_tensor base = rand_tensor(dts[di], 2, s0, -1, 1);
        nb_tensor At;
        ck_assert_int_eq(nb_tensor_transpose(&base, 0, 1, &At), NB_OK);
        nb_tensor B = rand_tensor(dts[di], 2, bs, -1, 1);
        nb_matmul_params mp = {0, 0};
        const nb_tensor *ins[2] = {&At, &B};
        nb_kernel_call call = {NB_OP_MATMUL, 2, ins, NULL, &mp, NULL, 0, 0};
        ck_assert_uint_eq(nb_cpu_backend()->workspace_size(&call), 0);
        check_matmul(&At, &B, false, false, 2, cs, NULL, 0);
        /* the same view with trans_a: op(At) = base, (5,7) x (7,?) */
        int64_t b2[2] = {7, 3}, c2[2] = {5, 3};
        nb_tensor B2 = rand_tensor(dts[di], 2, b2, -1, 1);
        check_matmul(&At, &B2, true, false, 2, c2, NULL, 0);
        /* batched transposed views: permute (2,5,7) -> (2,7,5) */
        int64_t s3[3] = {2, 5, 7}, c3[3] = {2, 7, 4};
        nb_tensor base3 = rand_tensor(dts[di], 3, s3, -1, 1);
        nb_tensor At3;
        ck_assert_int_eq(nb_tensor_transpose(&base3, 1, 2, &At3), NB_OK);
        check_matmul(&At3, &B, false, false, 3, c3, NULL, 0);
        /* B a slice with step 2 on the last dim: neither layout, copied */
        int64_t sb[2] = {5, 8}, c4[2] = {7, 4};
        nb_tensor wide = rand_tensor(dts[di], 2, sb, -1, 1);
        nb_tensor Bs;
        ck_assert_int_eq(nb_tensor_slice(&wide, 1, 0, 8, 2, &Bs), NB_OK);
        const nb_tensor *ins2[2] = {&At, &Bs};
        nb_kernel_call call2 = {NB_OP_MATMUL, 2, ins2, NULL, &mp, NULL, 0, 0};
        size_t need = nb_cpu_backend()->workspace_size(&call2);
        ck_assert_uint_ge(need, 5 * 4 * nb_dtype_size(dts[di]));
        check_matmul(&At, &Bs, false, false, 2, c4, NULL, 0); /* temporary */
        void *ws = malloc(need);
        check_matmul(&At, &Bs, false, false, 2, c4, ws, need); /* workspace */
        free(ws);
        /* an expanded (stride-0) matrix is copied too */
        int64_t one[2] = {1, 4}, e4[2] = {5, 4};
        nb_tensor row = rand_tensor(dts[di], 2, one, -1, 1), Be;
        ck_assert_int_eq(nb_tensor_expand(&row, 2, e4, &Be), NB_OK);
        check_matmul(&At, &Be, false, false, 2, c4, NULL, 0);
        nb_tensor_release(&row);
        nb_tensor_release(&Be);
        nb_tensor_release(&wide);
        nb_tensor_release(&Bs);
        nb_tensor_release(&base3);
        nb_tensor_release(&At3);
        nb_tensor_release(&B2);
        nb_tensor_release(&base);
        nb_tensor_release(&At);
        nb_tensor_release(&B);
    }
}
END_TEST

START_TEST(test_matmul_large)
{
    /* big enough for OpenBLAS to thread */
    int64_t as[3] = {3, 130, 70}, bs[2] = {70, 90}, cs[3] = {3, 130, 90};
    nb_tensor A = rand_tensor(NB_F32, 3, as, -1, 1);
    nb_tensor B = rand_tensor(NB_F32, 2, bs, -1, 1);
    check_matmul(&A, &B, false, false, 3, cs, NULL, 0);
    nb_tensor_release(&A);
    nb_tensor_release(&B);
}
END_TEST

/* Row and column vectors (matrix-vector products in kernels/gemm.c),
 * products big enough to be split over the threads by rows (M >= N) or by
 * columns, and f32 products with B transposed and at most 16 rows of A
 * (nb_sgemm_avx512_abt: ragged K and N), in every transpose combination. */
START_TEST(test_matmul_vectors_and_splits)
{
    static const int64_t shapes[][3] = {/* M, K, N */
                                        {1, 5, 9},     {7, 5, 1},    {1, 1280, 1000},
                                        {1000, 300, 1}, {1, 7, 1},   {300, 200, 37},
                                        {37, 200, 300}, {129, 64, 513},
                                        /* f32 x W^T with few rows: the dot-product path */
                                        {8, 300, 1000}, {3, 70, 29},  {16, 64, 17}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        check_2d(shapes[si][0], shapes[si][1], shapes[si][2]);
}
END_TEST

START_TEST(test_matmul_zero_size)
{
    /* K = 0 gives zeros; M = 0 or a zero batch gives an empty output */
    nb_tensor A = empty(NB_F64, 2, (int64_t[]){3, 0}), B = empty(NB_F64, 2, (int64_t[]){0, 4});
    nb_tensor C = rand_tensor(NB_F64, 2, (int64_t[]){3, 4}, 1, 2);
    nb_matmul_params mp = {0, 0};
    const nb_tensor *ins[2] = {&A, &B};
    nb_kernel_call c = {NB_OP_MATMUL, 2, ins, &C, &mp, NULL, 0, 0};
    ck_assert_int_eq(nb_cpu_matmul(&c), NB_OK);
    ck_assert(nb_tensor_max_abs(&C) == 0);
    nb_tensor A0 = empty(NB_F64, 3, (int64_t[]){0, 3, 2}), B0 = empty(NB_F64, 2, (int64_t[]){2, 4});
    nb_tensor C0 = empty(NB_F64, 3, (int64_t[]){0, 3, 4});
    const nb_tensor *ins0[2] = {&A0, &B0};
    nb_kernel_call c0 = {NB_OP_MATMUL, 2, ins0, &C0, &mp, NULL, 0, 0};
    ck_assert_int_eq(nb_cpu_matmul(&c0), NB_OK);
    nb_tensor_release(&A);
    nb_tensor_release(&B);
    nb_tensor_release(&C);
    nb_tensor_release(&A0);
    nb_tensor_release(&B0);
    nb_tensor_release(&C0);
}
END_TEST

START_TEST(test_matmul_errors)
{
    int64_t as[2] = {2, 3}, bs[2] = {4, 5}, cs[2] = {2, 5};
    nb_tensor A = rand_tensor(NB_F32, 2, as, -1, 1);
    nb_tensor B = rand_tensor(NB_F32, 2, bs, -1, 1);
    nb_tensor C = empty(NB_F32, 2, cs);
    nb_matmul_params mp = {0, 0};
    const nb_tensor *ins[2] = {&A, &B};
    nb_kernel_call c = {NB_OP_MATMUL, 2, ins, &C, &mp, NULL, 0, 0};
    ck_assert_int_eq(nb_cpu_matmul(&c), NB_ERR_SHAPE);
    ck_assert_str_eq(nb_last_error(), "matmul: (2,3) x (4,5): inner dimensions 3 and 4 differ");
    nb_tensor Bd = rand_tensor(NB_F64, 2, (int64_t[]){3, 5}, -1, 1);
    ins[1] = &Bd;
    ck_assert_int_eq(nb_cpu_matmul(&c), NB_ERR_DTYPE);
    /* batch dims that do not broadcast */
    nb_tensor A3 = rand_tensor(NB_F32, 3, (int64_t[]){2, 2, 3}, -1, 1);
    nb_tensor B3 = rand_tensor(NB_F32, 3, (int64_t[]){3, 3, 5}, -1, 1);
    nb_tensor C3 = empty(NB_F32, 3, (int64_t[]){3, 2, 5});
    const nb_tensor *ins3[2] = {&A3, &B3};
    nb_kernel_call c3 = {NB_OP_MATMUL, 2, ins3, &C3, &mp, NULL, 0, 0};
    ck_assert_int_eq(nb_cpu_matmul(&c3), NB_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "do not broadcast"));
    /* wrong output shape */
    nb_tensor B2 = rand_tensor(NB_F32, 2, (int64_t[]){3, 4}, -1, 1);
    ins[1] = &B2;
    ck_assert_int_eq(nb_cpu_matmul(&c), NB_ERR_SHAPE);
    nb_tensor_release(&A);
    nb_tensor_release(&B);
    nb_tensor_release(&B2);
    nb_tensor_release(&Bd);
    nb_tensor_release(&C);
    nb_tensor_release(&A3);
    nb_tensor_release(&B3);
    nb_tensor_release(&C3);
}
END_TEST

/* ---- reductions ------------------------------------------------------- */

/* Reference reduction in double; returns the array for the keepdims shape. */
static double *ref_reduce(const nb_tensor *x, uint32_t axes, nb_op op)
{
    int n = x->ndim;
    int64_t oshape[NB_MAX_DIMS], idx[NB_MAX_DIMS];
    for (int d = 0; d < n; d++)
        oshape[d] = (axes >> d) & 1 ? 1 : x->shape[d];
    int64_t no = nb_shape_numel(n, oshape), count = nb_tensor_numel(x) / (no ? no : 1);
    double *r = malloc((size_t)(no ? no : 1) * sizeof *r);
    bool *seen = calloc((size_t)(no ? no : 1), 1);
    for (int64_t i = 0; i < nb_tensor_numel(x); i++) {
        unflat(n, x->shape, i, idx);
        int64_t o = 0;
        for (int d = 0; d < n; d++)
            o = o * oshape[d] + ((axes >> d) & 1 ? 0 : idx[d]);
        double v = nb_tensor_get_flat(x, i);
        if (!seen[o]) {
            r[o] = v;
            seen[o] = true;
        } else if (op == NB_OP_SUM || op == NB_OP_MEAN) {
            r[o] += v;
        } else if (isnan(r[o])) {
            continue; /* max/min: NaN propagates */
        } else if (isnan(v) || (op == NB_OP_MAX ? v > r[o] : v < r[o])) {
            r[o] = v;
        }
    }
    if (op == NB_OP_MEAN)
        for (int64_t o = 0; o < no; o++)
            r[o] /= (double)count;
    free(seen);
    return r;
}

/* Reduce x over `axes` with keepdims on and off and compare both. */
static void check_reduce(const nb_tensor *x, uint32_t axes, nb_op op, double tol)
{
    double *want = ref_reduce(x, axes, op);
    for (int keep = 0; keep < 2; keep++) {
        int64_t os[NB_MAX_DIMS];
        int no = 0;
        for (int d = 0; d < x->ndim; d++) {
            if (!((axes >> d) & 1))
                os[no++] = x->shape[d];
            else if (keep)
                os[no++] = 1;
        }
        nb_tensor out = empty(x->dtype, no, os);
        nb_reduce_params rp = {axes, keep};
        ck_assert_msg(call1(op, x, &out, &rp) == NB_OK, "%s: %s", nb_op_name(op), nb_last_error());
        double err = max_rel_err(&out, want);
        ck_assert_msg(err <= tol, "%s mask 0x%x keep %d: error %g", nb_op_name(op), axes, keep, err);
        nb_tensor_release(&out);
    }
    free(want);
}

START_TEST(test_reduce_all_masks)
{
    nb_op ops[4] = {NB_OP_SUM, NB_OP_MEAN, NB_OP_MAX, NB_OP_MIN};
    nb_dtype dts[2] = {NB_F32, NB_F64};
    int64_t shape[4] = {3, 4, 5, 6};
    for (int di = 0; di < 2; di++) {
        nb_tensor x = rand_tensor(dts[di], 4, shape, -2, 2);
        for (int oi = 0; oi < 4; oi++)
            for (uint32_t m = 0; m < 16; m++)
                check_reduce(&x, m, ops[oi], dts[di] == NB_F32 ? 1e-6 : 1e-13);
        nb_tensor_release(&x);
    }
}
END_TEST

START_TEST(test_reduce_shapes)
{
    /* size-1 dims, rows, columns, middle blocks, and sizes that thread and chunk */
    struct { int nd; int64_t s[4]; uint32_t m; } cases[] = {
        {3, {4, 1, 7}, 0x2}, {3, {4, 1, 7}, 0x3}, {3, {1, 1, 1}, 0x7},
        {2, {300, 1000}, 0x2}, {2, {300, 1000}, 0x1}, {3, {20, 500, 40}, 0x2},
        {2, {2, 100000}, 0x2}, {2, {100000, 3}, 0x1}, {3, {7, 50000, 3}, 0x5},
        {4, {6, 70, 8, 90}, 0x5}, {4, {6, 70, 8, 90}, 0xa}, {1, {300001}, 0x1},
        {3, {3, 700, 301}, 0x1}, {2, {5, 5}, 0x0}, {3, {50000, 2, 3}, 0x5},
    };
    nb_op ops[4] = {NB_OP_SUM, NB_OP_MEAN, NB_OP_MAX, NB_OP_MIN};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nb_tensor x = rand_tensor(NB_F32, cases[i].nd, cases[i].s, -1, 1);
        for (int oi = 0; oi < 4; oi++)
            check_reduce(&x, cases[i].m, ops[oi], 1e-6);
        nb_tensor_release(&x);
        x = rand_tensor(NB_F64, cases[i].nd, cases[i].s, -1, 1);
        check_reduce(&x, cases[i].m, NB_OP_SUM, 1e-12);
        nb_tensor_release(&x);
    }
}
END_TEST

START_TEST(test_reduce_views_and_ints)
{
    int64_t s[3] = {5, 6, 7};
    nb_tensor base = rand_tensor(NB_F64, 3, s, -1, 1), v;
    int perm[3] = {2, 0, 1};
    ck_assert_int_eq(nb_tensor_permute(&base, perm, &v), NB_OK);
    for (uint32_t m = 0; m < 8; m++) {
        check_reduce(&v, m, NB_OP_SUM, 1e-13);
        check_reduce(&v, m, NB_OP_MAX, 0);
    }
    nb_dtype its[2] = {NB_I32, NB_I64};
    for (int k = 0; k < 2; k++) {
        nb_tensor xi = rand_tensor(its[k], 3, s, -100, 100);
        for (uint32_t m = 0; m < 8; m++) {
            check_reduce(&xi, m, NB_OP_SUM, 0);
            check_reduce(&xi, m, NB_OP_MAX, 0);
            check_reduce(&xi, m, NB_OP_MIN, 0);
        }
        nb_tensor out = empty(its[k], 0, NULL);
        nb_reduce_params rp = {0x7, 0};
        ck_assert_int_eq(call1(NB_OP_MEAN, &xi, &out, &rp), NB_ERR_DTYPE);
        nb_tensor_release(&out);
        nb_tensor_release(&xi);
    }
    nb_tensor_release(&base);
    nb_tensor_release(&v);
}
END_TEST

START_TEST(test_reduce_accuracy)
{
    /* 1e6 positive f32 values: the f32 sum must match a double sum to 1e-6 */
    int64_t n = 1000000;
    nb_tensor x = rand_tensor(NB_F32, 1, &n, 0, 1);
    double want = 0;
    const float *d = nb_tensor_data(&x);
    for (int64_t i = 0; i < n; i++)
        want += d[i];
    nb_tensor out = empty(NB_F32, 0, NULL);
    nb_reduce_params rp = {0x1, 0};
    ck_assert_int_eq(call1(NB_OP_SUM, &x, &out, &rp), NB_OK);
    double got = *(float *)nb_tensor_data(&out);
    ck_assert_msg(fabs(got - want) / want < 1e-6, "sum %.9g vs %.9g", got, want);
    ck_assert_int_eq(call1(NB_OP_MEAN, &x, &out, &rp), NB_OK);
    got = *(float *)nb_tensor_data(&out);
    ck_assert_msg(fabs(got - want / n) / (want / n) < 1e-6, "mean %.9g", got);
    /* rows of a (1000, 1000) matrix and columns likewise */
    int64_t s2[2] = {1000, 1000};
    nb_tensor y;
    ck_assert_int_eq(nb_tensor_reshape(&x, 2, s2, &y), NB_OK);
    check_reduce(&y, 0x1, NB_OP_SUM, 1e-6);
    check_reduce(&y, 0x2, NB_OP_SUM, 1e-6);
    check_reduce(&y, 0x3, NB_OP_SUM, 1e-6);
    nb_tensor_release(&y);
    nb_tensor_release(&x);
    nb_tensor_release(&out);
}
END_TEST

START_TEST(test_reduce_nan)
{
    double vals[6] = {1, NAN, 3, 4, 5, 6};
    int64_t s[2] = {2, 3};
    nb_tensor x, out = empty(NB_F64, 1, (int64_t[]){2});
    ck_assert_int_eq(nb_tensor_from_data(&x, NB_F64, 2, s, vals), NB_OK);
    nb_reduce_params rp = {0x2, 0};
    ck_assert_int_eq(call1(NB_OP_MAX, &x, &out, &rp), NB_OK);
    ck_assert(isnan(((double *)nb_tensor_data(&out))[0]));
    ck_assert(((double *)nb_tensor_data(&out))[1] == 6);
    ck_assert_int_eq(call1(NB_OP_MIN, &x, &out, &rp), NB_OK);
    ck_assert(isnan(((double *)nb_tensor_data(&out))[0]));
    ck_assert(((double *)nb_tensor_data(&out))[1] == 4);
    nb_tensor_release(&x);
    nb_tensor_release(&out);
}
END_TEST

START_TEST(test_argmax)
{
    /* ties: the first maximum wins; NaN is the maximum */
    float vals[12] = {1, 5, 5, 2, /**/ 7, 7, 7, 7, /**/ 0, NAN, 9, NAN};
    int64_t s[2] = {3, 4};
    nb_tensor x, out = empty(NB_I64, 1, (int64_t[]){3});
    ck_assert_int_eq(nb_tensor_from_data(&x, NB_F32, 2, s, vals), NB_OK);
    nb_reduce_params rp = {0x2, 0};
    ck_assert_int_eq(call1(NB_OP_ARGMAX, &x, &out, &rp), NB_OK);
    int64_t *o = nb_tensor_data(&out);
    ck_assert_int_eq(o[0], 1);
    ck_assert_int_eq(o[1], 0);
    ck_assert_int_eq(o[2], 1);
    /* along axis 0 with keepdims: columns (1,7,0) (5,7,nan) (5,7,9) (2,7,nan) */
    nb_tensor out0 = empty(NB_I64, 2, (int64_t[]){1, 4});
    nb_reduce_params r0 = {0x1, 1};
    ck_assert_int_eq(call1(NB_OP_ARGMAX, &x, &out0, &r0), NB_OK);
    o = nb_tensor_data(&out0);
    ck_assert_int_eq(o[0], 1);
    ck_assert_int_eq(o[1], 2);
    ck_assert_int_eq(o[2], 2);
    ck_assert_int_eq(o[3], 2);
    /* random middle axis against a reference, f64 */
    int64_t s3[3] = {4, 9, 300};
    nb_tensor y = rand_tensor(NB_F64, 3, s3, -1, 1), oy = empty(NB_I64, 2, (int64_t[]){4, 300});
    nb_reduce_params r1 = {0x2, 0};
    ck_assert_int_eq(call1(NB_OP_ARGMAX, &y, &oy, &r1), NB_OK);
    for (int64_t a = 0; a < 4; a++)
        for (int64_t c = 0; c < 300; c++) {
            int64_t best = 0;
            for (int64_t b = 1; b < 9; b++)
                if (nb_tensor_get(&y, (int64_t[]){a, b, c}) > nb_tensor_get(&y, (int64_t[]){a, best, c}))
                    best = b;
            ck_assert_int_eq(((int64_t *)nb_tensor_data(&oy))[a * 300 + c], best);
        }
    /* errors: two axes; wrong dtype */
    nb_reduce_params r2 = {0x3, 0};
    nb_tensor o0 = empty(NB_I64, 0, NULL);
    ck_assert_int_eq(call1(NB_OP_ARGMAX, &x, &o0, &r2), NB_ERR_ARG);
    nb_tensor of = empty(NB_F32, 1, (int64_t[]){3});
    ck_assert_int_eq(call1(NB_OP_ARGMAX, &x, &of, &rp), NB_ERR_DTYPE);
    nb_tensor_release(&of);
    nb_tensor_release(&o0);
    nb_tensor_release(&y);
    nb_tensor_release(&oy);
    nb_tensor_release(&x);
    nb_tensor_release(&out);
    nb_tensor_release(&out0);
}
END_TEST

START_TEST(test_reduce_zero_size)
{
    int64_t s[2] = {3, 0};
    nb_tensor x = empty(NB_F32, 2, s), out = empty(NB_F32, 1, (int64_t[]){3});
    nb_reduce_params rp = {0x2, 0};
    ck_assert_int_eq(call1(NB_OP_SUM, &x, &out, &rp), NB_OK);
    for (int i = 0; i < 3; i++)
        ck_assert(((float *)nb_tensor_data(&out))[i] == 0);
    ck_assert_int_eq(call1(NB_OP_MEAN, &x, &out, &rp), NB_OK);
    for (int i = 0; i < 3; i++)
        ck_assert(isnan(((float *)nb_tensor_data(&out))[i]));
    ck_assert_int_eq(call1(NB_OP_MAX, &x, &out, &rp), NB_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(nb_last_error(), "max"));
    ck_assert_int_eq(call1(NB_OP_MIN, &x, &out, &rp), NB_ERR_SHAPE);
    nb_tensor oi = empty(NB_I64, 1, (int64_t[]){3});
    ck_assert_int_eq(call1(NB_OP_ARGMAX, &x, &oi, &rp), NB_ERR_SHAPE);
    /* keeping the zero dim: empty output, nothing to do */
    nb_tensor oz = empty(NB_F32, 1, (int64_t[]){0});
    nb_reduce_params r0 = {0x1, 0};
    ck_assert_int_eq(call1(NB_OP_SUM, &x, &oz, &r0), NB_OK);
    /* wrong output shape */
    nb_tensor bad = empty(NB_F32, 1, (int64_t[]){4});
    ck_assert_int_eq(call1(NB_OP_SUM, &x, &bad, &rp), NB_ERR_SHAPE);
    nb_tensor_release(&bad);
    nb_tensor_release(&oz);
    nb_tensor_release(&oi);
    nb_tensor_release(&x);
    nb_tensor_release(&out);
}
END_TEST

/* ---- softmax ---------------------------------------------------------- */

/* Reference softmax / log_softmax in double along axis. */
static double *ref_softmax(const nb_tensor *x, int axis, bool lg)
{
    int64_t n = nb_tensor_numel(x), A = x->shape[axis];
    int64_t inner = nb_shape_numel(x->ndim - axis - 1, x->shape + axis + 1);
    double *r = malloc((size_t)n * sizeof *r);
    for (int64_t o = 0; o < n / (A * inner); o++)
        for (int64_t j = 0; j < inner; j++) {
            int64_t base = o * A * inner + j;
            double m = -INFINITY, s = 0;
            for (int64_t a = 0; a < A; a++)
                m = fmax(m, nb_tensor_get_flat(x, base + a * inner));
            for (int64_t a = 0; a < A; a++)
                s += exp(nb_tensor_get_flat(x, base + a * inner) - m);
            for (int64_t a = 0; a < A; a++) {
                double v = nb_tensor_get_flat(x, base + a * inner) - m;
                r[base + a * inner] = lg ? v - log(s) : exp(v) / s;
            }
        }
    return r;
}

static void check_softmax(const nb_tensor *x, int axis, double tol)
{
    for (int lg = 0; lg < 2; lg++) {
        nb_tensor y = empty(x->dtype, x->ndim, x->shape);
        nb_axis_params ap = {axis};
        ck_assert_msg(call1(lg ? NB_OP_LOG_SOFTMAX : NB_OP_SOFTMAX, x, &y, &ap) == NB_OK, "%s",
                      nb_last_error());
        double *want = ref_softmax(x, axis, lg);
        double err = max_rel_err(&y, want);
        ck_assert_msg(err < tol, "softmax axis %d log %d err %g", axis, lg, err);
        free(want);
        nb_tensor_release(&y);
    }
}

START_TEST(test_softmax)
{
    nb_dtype dts[2] = {NB_F32, NB_F64};
    for (int di = 0; di < 2; di++) {
        double tol = dts[di] == NB_F32 ? 1e-5 : 1e-12;
        int64_t s2[2] = {5, 7};
        nb_tensor x = rand_tensor(dts[di], 2, s2, -5, 5);
        check_softmax(&x, 1, tol);
        check_softmax(&x, 0, tol);
        /* rows sum to 1, log_softmax = log(softmax) */
        nb_tensor y = empty(dts[di], 2, s2), ly = empty(dts[di], 2, s2);
        nb_axis_params ap = {1};
        ck_assert_int_eq(call1(NB_OP_SOFTMAX, &x, &y, &ap), NB_OK);
        ck_assert_int_eq(call1(NB_OP_LOG_SOFTMAX, &x, &ly, &ap), NB_OK);
        for (int64_t r = 0; r < 5; r++) {
            double s = 0;
            for (int64_t c = 0; c < 7; c++) {
                double p = nb_tensor_get(&y, (int64_t[]){r, c});
                s += p;
                ck_assert(fabs(log(p) - nb_tensor_get(&ly, (int64_t[]){r, c})) < tol * 10);
            }
            ck_assert(fabs(s - 1) < tol);
        }
        nb_tensor_release(&y);
        nb_tensor_release(&ly);
        nb_tensor_release(&x);
        /* middle axis and axis 0 of a 3-d tensor, and one big enough to thread */
        int64_t s3[3] = {3, 4, 70};
        x = rand_tensor(dts[di], 3, s3, -3, 3);
        for (int ax = 0; ax < 3; ax++)
            check_softmax(&x, ax, tol);
        nb_tensor_release(&x);
        int64_t sb[2] = {256, 1000};
        x = rand_tensor(dts[di], 2, sb, -10, 10);
        check_softmax(&x, 1, tol);
        check_softmax(&x, 0, tol);
        nb_tensor_release(&x);
        /* a transposed view as input */
        int64_t sv[2] = {6, 9};
        nb_tensor base = rand_tensor(dts[di], 2, sv, -2, 2), v;
        ck_assert_int_eq(nb_tensor_transpose(&base, 0, 1, &v), NB_OK);
        check_softmax(&v, 1, tol);
        nb_tensor_release(&v);
        nb_tensor_release(&base);
    }
}
END_TEST

START_TEST(test_softmax_large_inputs)
{
    double vals[6] = {1000, -1000, 0, 1000, 1000, -1000};
    int64_t s[2] = {2, 3};
    nb_tensor x, y = empty(NB_F32, 2, s), ly = empty(NB_F32, 2, s);
    nb_tensor xd;
    ck_assert_int_eq(nb_tensor_from_data(&xd, NB_F64, 2, s, vals), NB_OK);
    ck_assert_int_eq(nb_tensor_empty(&x, NB_F32, 2, s), NB_OK);
    ck_assert_int_eq(nb_tensor_copy_into(&x, &xd), NB_OK);
    nb_axis_params ap = {1};
    ck_assert_int_eq(call1(NB_OP_SOFTMAX, &x, &y, &ap), NB_OK);
    ck_assert_int_eq(call1(NB_OP_LOG_SOFTMAX, &x, &ly, &ap), NB_OK);
    for (int64_t i = 0; i < 6; i++) {
        ck_assert(isfinite(nb_tensor_get_flat(&y, i)));
        ck_assert(isfinite(nb_tensor_get_flat(&ly, i)));
    }
    ck_assert(fabs(nb_tensor_get_flat(&y, 0) - 1) < 1e-6);
    ck_assert(fabs(nb_tensor_get_flat(&y, 3) - 0.5) < 1e-6);
    ck_assert(fabs(nb_tensor_get_flat(&ly, 1) + 2000) < 1e-3);
    ck_assert(fabs(nb_tensor_get_flat(&ly, 4) + log(2.0)) < 1e-6);
    ck_assert_int_eq(call1(NB_OP_SOFTMAX, &xd, &y, &ap), NB_ERR_DTYPE);
    nb_tensor_release(&x);
    nb_tensor_release(&xd);
    nb_tensor_release(&y);
    nb_tensor_release(&ly);
}
END_TEST

/* ---- movement ----------------------------------------------------------- */

/* out must equal the view v element for element (bit-exact). */
static void assert_same(const nb_tensor *out, const nb_tensor *v)
{
    ck_assert(nb_shape_equal(out->ndim, out->shape, v->ndim, v->shape));
    for (int64_t i = 0; i < nb_tensor_numel(v); i++)
        ck_assert_msg(nb_tensor_get_flat(out, i) == nb_tensor_get_flat(v, i), "at %lld",
                      (long long)i);
}

START_TEST(test_copy_strided)
{
    int64_t s[2] = {300, 500};
    nb_dtype dts[3] = {NB_F32, NB_F64, NB_U8};
    for (int di = 0; di < 3; di++) {
        nb_tensor x = rand_tensor(dts[di], 2, s, -100, 100), t, sl, out;
        ck_assert_int_eq(nb_tensor_transpose(&x, 0, 1, &t), NB_OK);
        out = empty(dts[di], 2, t.shape);
        ck_assert_int_eq(nb_cpu_copy_strided(&t, &out), NB_OK); /* blocked transpose */
        assert_same(&out, &t);
        nb_tensor_release(&out);
        ck_assert_int_eq(nb_tensor_slice(&x, 1, 3, 400, 1, &sl), NB_OK); /* row copies */
        out = empty(dts[di], 2, sl.shape);
        ck_assert_int_eq(nb_cpu_copy_strided(&sl, &out), NB_OK);
        assert_same(&out, &sl);
        nb_tensor_release(&out);
        nb_tensor_release(&sl);
        ck_assert_int_eq(nb_tensor_slice(&t, 1, 1, 300, 3, &sl), NB_OK); /* elements */
        out = empty(dts[di], 2, sl.shape);
        ck_assert_int_eq(nb_cpu_copy_strided(&sl, &out), NB_OK);
        assert_same(&out, &sl);
        nb_tensor_release(&out);
        nb_tensor_release(&sl);
        out = empty(dts[di], 2, s); /* contiguous */
        ck_assert_int_eq(nb_cpu_copy_strided(&x, &out), NB_OK);
        assert_same(&out, &x);
        nb_tensor_release(&out);
        nb_tensor_release(&t);
        nb_tensor_release(&x);
    }
    /* batched transpose of a 3-d tensor */
    int64_t s3[3] = {3, 40, 70};
    nb_tensor x = rand_tensor(NB_I64, 3, s3, -1000, 1000), t;
    int perm[3] = {0, 2, 1};
    ck_assert_int_eq(nb_tensor_permute(&x, perm, &t), NB_OK);
    nb_tensor out = empty(NB_I64, 3, t.shape);
    ck_assert_int_eq(nb_cpu_copy_strided(&t, &out), NB_OK);
    assert_same(&out, &t);
    nb_tensor bad = empty(NB_I32, 3, t.shape);
    ck_assert_int_eq(nb_cpu_copy_strided(&t, &bad), NB_ERR_DTYPE);
    nb_tensor_release(&bad);
    nb_tensor_release(&out);
    nb_tensor_release(&t);
    nb_tensor_release(&x);
}
END_TEST

START_TEST(test_move_permute_expand_reshape)
{
    int64_t s[3] = {2, 3, 4};
    nb_tensor x = rand_tensor(NB_F64, 3, s, -1, 1), v;
    nb_permute_params pp = {{2, 0, 1}};
    nb_tensor out = empty(NB_F64, 3, (int64_t[]){4, 2, 3});
    ck_assert_int_eq(call1(NB_OP_PERMUTE, &x, &out, &pp), NB_OK);
    ck_assert_int_eq(nb_tensor_permute(&x, pp.perm, &v), NB_OK);
    assert_same(&out, &v);
    /* reshape of the non-contiguous view: row-major order of the view */
    nb_tensor r = empty(NB_F64, 2, (int64_t[]){8, 3});
    ck_assert_int_eq(call1(NB_OP_RESHAPE, &v, &r, NULL), NB_OK);
    for (int64_t i = 0; i < 24; i++)
        ck_assert(nb_tensor_get_flat(&r, i) == nb_tensor_get_flat(&v, i));
    nb_tensor_release(&v);
    nb_tensor_release(&r);
    nb_tensor_release(&out);
    /* expand (3,1) -> (2,3,4) */
    nb_tensor c = rand_tensor(NB_I32, 2, (int64_t[]){3, 1}, -50, 50);
    nb_tensor e = empty(NB_I32, 3, s);
    ck_assert_int_eq(call1(NB_OP_EXPAND, &c, &e, NULL), NB_OK);
    for (int64_t i = 0; i < 24; i++) {
        int64_t idx[3];
        unflat(3, s, i, idx);
        ck_assert(nb_tensor_get_flat(&e, i) == nb_tensor_get(&c, (int64_t[]){idx[1], 0}));
    }
    nb_tensor bad = empty(NB_I32, 3, (int64_t[]){2, 2, 4});
    ck_assert_int_ne(call1(NB_OP_EXPAND, &c, &bad, NULL), NB_OK);
    nb_tensor_release(&bad);
    nb_tensor_release(&c);
    nb_tensor_release(&e);
    nb_tensor_release(&x);
}
END_TEST

START_TEST(test_move_slice)
{
    int64_t s[3] = {5, 9, 8};
    nb_tensor x = rand_tensor(NB_F32, 3, s, -1, 1);
    nb_slice_params sp = {{1, 2, 0}, {2, 3, 1}, {0}};
    int64_t os[3] = {2, 3, 8}; /* rows 1,3; cols 2,5,8; all of dim 2 */
    nb_tensor out = empty(NB_F32, 3, os);
    ck_assert_int_eq(call1(NB_OP_SLICE, &x, &out, &sp), NB_OK);
    for (int64_t i = 0; i < nb_tensor_numel(&out); i++) {
        int64_t idx[3];
        unflat(3, os, i, idx);
        int64_t src[3] = {1 + 2 * idx[0], 2 + 3 * idx[1], idx[2]};
        ck_assert(nb_tensor_get_flat(&out, i) == nb_tensor_get(&x, src));
    }
    /* out of range: 3 items at step 4 from 1 in a dim of 9 */
    nb_slice_params bad = {{0, 1, 0}, {1, 4, 1}, {0}};
    nb_tensor o2 = empty(NB_F32, 3, (int64_t[]){5, 3, 8});
    ck_assert_int_eq(call1(NB_OP_SLICE, &x, &o2, &bad), NB_ERR_ARG);
    nb_tensor_release(&o2);
    nb_tensor_release(&out);
    nb_tensor_release(&x);
}
END_TEST

START_TEST(test_move_slice_grad_adjoint)
{
    /* <slice(x), y> == <x, slice_grad(y)> */
    int64_t s[3] = {6, 7, 10}, os[3] = {3, 2, 4};
    nb_slice_params sp = {{0, 1, 2}, {2, 4, 2}, {6, 7, 10}};
    nb_tensor x = rand_tensor(NB_F64, 3, s, -1, 1), y = rand_tensor(NB_F64, 3, os, -1, 1);
    nb_tensor sx = empty(NB_F64, 3, os), gy = empty(NB_F64, 3, s);
    ck_assert_int_eq(call1(NB_OP_SLICE, &x, &sx, &sp), NB_OK);
    ck_assert_int_eq(call1(NB_OP_SLICE_GRAD, &y, &gy, &sp), NB_OK);
    double lhs = 0, rhs = 0;
    for (int64_t i = 0; i < nb_tensor_numel(&sx); i++)
        lhs += nb_tensor_get_flat(&sx, i) * nb_tensor_get_flat(&y, i);
    for (int64_t i = 0; i < nb_tensor_numel(&x); i++)
        rhs += nb_tensor_get_flat(&x, i) * nb_tensor_get_flat(&gy, i);
    ck_assert_msg(fabs(lhs - rhs) < 1e-12, "%g vs %g", lhs, rhs);
    /* zeros off the slice: count the nonzeros */
    int64_t nz = 0;
    for (int64_t i = 0; i < nb_tensor_numel(&gy); i++)
        nz += nb_tensor_get_flat(&gy, i) != 0;
    ck_assert_int_eq(nz, 3 * 2 * 4);
    nb_tensor_release(&x);
    nb_tensor_release(&y);
    nb_tensor_release(&sx);
    nb_tensor_release(&gy);
}
END_TEST

START_TEST(test_move_concat)
{
    int64_t s0[3] = {2, 1, 3}, s1[3] = {2, 4, 3}, s2[3] = {2, 2, 3}, so[3] = {2, 7, 3};
    nb_tensor a = rand_tensor(NB_F32, 3, s0, -1, 1), b = rand_tensor(NB_F32, 3, s1, -1, 1);
    nb_tensor c = rand_tensor(NB_F32, 3, s2, -1, 1), out = empty(NB_F32, 3, so);
    const nb_tensor *ins[3] = {&a, &b, &c};
    nb_axis_params ap = {1};
    nb_kernel_call call = {NB_OP_CONCAT, 3, ins, &out, &ap, NULL, 0, 0};
    ck_assert_int_eq(nb_cpu_move(&call), NB_OK);
    for (int64_t i = 0; i < 2; i++)
        for (int64_t j = 0; j < 7; j++)
            for (int64_t k = 0; k < 3; k++) {
                const nb_tensor *src = j < 1 ? &a : (j < 5 ? &b : &c);
                int64_t jj = j < 1 ? j : (j < 5 ? j - 1 : j - 5);
                ck_assert(nb_tensor_get(&out, (int64_t[]){i, j, k}) ==
                          nb_tensor_get(src, (int64_t[]){i, jj, k}));
            }
    /* mismatched other dim */
    nb_tensor d = rand_tensor(NB_F32, 3, (int64_t[]){3, 1, 3}, -1, 1);
    ins[0] = &d;
    ck_assert_int_eq(nb_cpu_move(&call), NB_ERR_SHAPE);
    nb_tensor_release(&d);
    nb_tensor_release(&a);
    nb_tensor_release(&b);
    nb_tensor_release(&c);
    nb_tensor_release(&out);
}
END_TEST

START_TEST(test_move_pad)
{
    int64_t s[2] = {2, 3}, so[2] = {5, 4};
    nb_tensor x = rand_tensor(NB_F64, 2, s, -1, 1), out = empty(NB_F64, 2, so);
    nb_pad_params pp = {{1, 0}, {2, 1}, -7.5};
    ck_assert_int_eq(call1(NB_OP_PAD, &x, &out, &pp), NB_OK);
    for (int64_t i = 0; i < 5; i++)
        for (int64_t j = 0; j < 4; j++) {
            double want = (i >= 1 && i < 3 && j < 3) ? nb_tensor_get(&x, (int64_t[]){i - 1, j}) : -7.5;
            ck_assert(nb_tensor_get(&out, (int64_t[]){i, j}) == want);
        }
    /* integer pad of a 3-d tensor */
    int64_t s3[3] = {2, 2, 2}, so3[3] = {3, 2, 5};
    nb_tensor xi = rand_tensor(NB_I32, 3, s3, 0, 10), oi = empty(NB_I32, 3, so3);
    nb_pad_params p3 = {{0, 0, 2}, {1, 0, 1}, 42};
    ck_assert_int_eq(call1(NB_OP_PAD, &xi, &oi, &p3), NB_OK);
    for (int64_t i = 0; i < 30; i++) {
        int64_t idx[3];
        unflat(3, so3, i, idx);
        bool in = idx[0] < 2 && idx[2] >= 2 && idx[2] < 4;
        double want = in ? nb_tensor_get(&xi, (int64_t[]){idx[0], idx[1], idx[2] - 2}) : 42;
        ck_assert(nb_tensor_get_flat(&oi, i) == want);
    }
    ck_assert_int_eq(call1(NB_OP_PAD, &xi, &out, &p3), NB_ERR_DTYPE);
    nb_tensor_release(&xi);
    nb_tensor_release(&oi);
    nb_tensor_release(&x);
    nb_tensor_release(&out);
}
END_TEST

START_TEST(test_move_one_hot)
{
    int64_t s[2] = {2, 3};
    int32_t l32[6] = {0, 9, 3, 3, 1, 5};
    int64_t l64[6] = {0, 9, 3, 3, 1, 5};
    nb_tensor a, b, out = empty(NB_F32, 3, (int64_t[]){2, 3, 10});
    nb_tensor outd = empty(NB_F64, 3, (int64_t[]){2, 3, 10});
    ck_assert_int_eq(nb_tensor_from_data(&a, NB_I32, 2, s, l32), NB_OK);
    ck_assert_int_eq(nb_tensor_from_data(&b, NB_I64, 2, s, l64), NB_OK);
    nb_one_hot_params op = {10};
    ck_assert_int_eq(call1(NB_OP_ONE_HOT, &a, &out, &op), NB_OK);
    ck_assert_int_eq(call1(NB_OP_ONE_HOT, &b, &outd, &op), NB_OK);
    for (int64_t p = 0; p < 6; p++)
        for (int64_t j = 0; j < 10; j++) {
            double want = j == l32[p] ? 1 : 0;
            ck_assert(nb_tensor_get_flat(&out, p * 10 + j) == want);
            ck_assert(nb_tensor_get_flat(&outd, p * 10 + j) == want);
        }
    l64[3] = 12;
    nb_tensor bad;
    ck_assert_int_eq(nb_tensor_from_data(&bad, NB_I64, 2, s, l64), NB_OK);
    ck_assert_int_eq(call1(NB_OP_ONE_HOT, &bad, &outd, &op), NB_ERR_ARG);
    ck_assert_str_eq(nb_last_error(), "one_hot: label 12 at position 3 is outside [0, 10)");
    l32[0] = -1;
    nb_tensor bad2;
    ck_assert_int_eq(nb_tensor_from_data(&bad2, NB_I32, 2, s, l32), NB_OK);
    ck_assert_int_eq(call1(NB_OP_ONE_HOT, &bad2, &out, &op), NB_ERR_ARG);
    ck_assert_int_eq(call1(NB_OP_ONE_HOT, &out, &outd, &op), NB_ERR_DTYPE);
    nb_tensor_release(&bad);
    nb_tensor_release(&bad2);
    nb_tensor_release(&a);
    nb_tensor_release(&b);
    nb_tensor_release(&out);
    nb_tensor_release(&outd);
}
END_TEST

/* ---- the backend table ------------------------------------------------ */

START_TEST(test_backend_table)
{
    const nb_backend *be = nb_cpu_backend();
    ck_assert_ptr_nonnull(be);
    ck_assert_str_eq(be->name, "cpu");
    ck_assert_ptr_nonnull(be->workspace_size);
    for (int op = 0; op < NB_OP_COUNT; op++) {
        bool leaf = op == NB_OP_INPUT || op == NB_OP_PARAM || op == NB_OP_STATE ||
                    op == NB_OP_CONST;
        if (leaf)
            ck_assert_ptr_null(be->kernels[op]);
        else
            ck_assert_msg(be->kernels[op] != NULL, "no kernel for %s", nb_op_name((nb_op)op));
    }
    ck_assert_ptr_eq(be->kernels[NB_OP_MATMUL], nb_cpu_matmul);
    ck_assert_ptr_eq(be->kernels[NB_OP_SUM], nb_cpu_reduce);
    ck_assert_ptr_eq(be->kernels[NB_OP_ONE_HOT], nb_cpu_move);
    ck_assert_ptr_eq(be->kernels[NB_OP_LOG_SOFTMAX], nb_cpu_softmax);
    nb_tensor x = rand_tensor(NB_F32, 2, (int64_t[]){3, 3}, -1, 1);
    const nb_tensor *ins[1] = {&x};
    nb_kernel_call c = {NB_OP_SUM, 1, ins, &x, NULL, NULL, 0, 0};
    ck_assert_uint_eq(be->workspace_size(&c), 0);
    nb_tensor_release(&x);
}
END_TEST

static Suite *linalg_suite(void)
{
    Suite *s = suite_create("kernels_linalg");
    TCase *mm = tcase_create("matmul");
    tcase_add_test(mm, test_matmul_2d_trans);
    tcase_add_test(mm, test_matmul_batched);
    tcase_add_test(mm, test_matmul_broadcast);
    tcase_add_test(mm, test_matmul_views);
    tcase_add_test(mm, test_matmul_large);
    tcase_add_test(mm, test_matmul_vectors_and_splits);
    tcase_add_test(mm, test_matmul_zero_size);
    tcase_add_test(mm, test_matmul_errors);
    suite_add_tcase(s, mm);
    TCase *rd = tcase_create("reduce");
    tcase_add_test(rd, test_reduce_all_masks);
    tcase_add_test(rd, test_reduce_shapes);
    tcase_add_test(rd, test_reduce_views_and_ints);
    tcase_add_test(rd, test_reduce_accuracy);
    tcase_add_test(rd, test_reduce_nan);
    tcase_add_test(rd, test_argmax);
    tcase_add_test(rd, test_reduce_zero_size);
    suite_add_tcase(s, rd);
    TCase *sm = tcase_create("softmax");
    tcase_add_test(sm, test_softmax);
    tcase_add_test(sm, test_softmax_large_inputs);
    suite_add_tcase(s, sm);
    TCase *mv = tcase_create("movement");
    tcase_add_test(mv, test_copy_strided);
    tcase_add_test(mv, test_move_permute_expand_reshape);
    tcase_add_test(mv, test_move_slice);
    tcase_add_test(mv, test_move_slice_grad_adjoint);
    tcase_add_test(mv, test_move_concat);
    tcase_add_test(mv, test_move_pad);
    tcase_add_test(mv, test_move_one_hot);
    tcase_add_test(mv, test_backend_table);
    suite_add_tcase(s, mv);
    return s;
}

int main(void)
{
    return nb_run_suite(linalg_suite());
}
