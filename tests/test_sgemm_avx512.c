/* The conv's f32 GEMM with the fused bias + clamp (kernels/sgemm_avx512.c),
 * called directly: against f64 reference loops (to 1e-5 of the sum of the
 * terms' magnitudes) on every M x N x K of the grids below (row tails, the
 * wide, narrow and dot column paths, K below and above 16), with strides
 * larger than the sizes (the padding left untouched), bias or not, clamp or
 * not; a NaN in A, B or the bias comes out NaN through the clamp; which
 * columns take the dot path (nb_sgemm_avx512_dot_cols); and the invariant
 * the conv relies on: C computed in column blocks that start at multiples
 * of 16, or in row blocks, is bit-identical to one call, and so is C
 * computed by nb_sgemm_avx512_part in blocks split anywhere. On a CPU without
 * AVX-512 the suite says SKIP and exits 77 (meson's skip). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"
#include "kernels/sgemm_avx512.h"

static const int64_t Ms[] = {1, 7, 8, 9, 17, 33, 96};
static const int64_t Ns[] = {1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 48, 49, 50, 196};
static const int64_t Ks[] = {1, 3, 16, 160};
#define NM ((int)(sizeof Ms / sizeof Ms[0]))
#define NN ((int)(sizeof Ns / sizeof Ns[0]))
#define NK ((int)(sizeof Ks / sizeof Ks[0]))

#define SENTINEL -12345.0f /* in C's padding: must survive */

static uint64_t rng_state;
static float urand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) * (1.0 / (1 << 23)) - 1.0);
}

typedef struct prob {
    int64_t M, N, K, lda, ldb, ldc;
    float *A, *B, *bias;
} prob;

/* Random operands with strides larger than the sizes (padding garbage). */
static void make_prob(prob *p, int64_t M, int64_t N, int64_t K, bool bias)
{
    p->M = M, p->N = N, p->K = K;
    p->lda = K + 3, p->ldb = N + 5, p->ldc = N + 7;
    p->A = malloc(sizeof(float) * (size_t)(M * p->lda));
    p->B = malloc(sizeof(float) * (size_t)(K * p->ldb));
    p->bias = bias ? malloc(sizeof(float) * (size_t)M) : NULL;
    ck_assert(p->A && p->B && (!bias || p->bias));
    for (int64_t i = 0; i < M * p->lda; i++)
        p->A[i] = urand();
    for (int64_t i = 0; i < K * p->ldb; i++)
        p->B[i] = urand();
    for (int64_t i = 0; bias && i < M; i++)
        p->bias[i] = urand();
}

static void free_prob(prob *p) { free(p->A), free(p->B), free(p->bias); }

static float *new_c(const prob *p)
{
    float *C = malloc(sizeof(float) * (size_t)(p->M * p->ldc));
    ck_assert(C);
    for (int64_t i = 0; i < p->M * p->ldc; i++)
        C[i] = SENTINEL;
    return C;
}

static void run(const prob *p, float *C, bool clamp, float lo, float hi)
{
    nb_sgemm_avx512(p->M, p->N, p->K, p->A, p->lda, p->B, p->ldb, C, p->ldc, p->bias, clamp, lo,
                    hi);
}

/* C against the f64 loops; the padding columns of C still hold SENTINEL. */
static void check_ref(const prob *p, const float *C, bool clamp, float lo, float hi,
                      const char *what)
{
    for (int64_t i = 0; i < p->M; i++) {
        for (int64_t j = 0; j < p->N; j++) {
            double s = 0, mag = 0;
            for (int64_t k = 0; k < p->K; k++) {
                double t = (double)p->A[i * p->lda + k] * p->B[k * p->ldb + j];
                s += t, mag += fabs(t);
            }
            if (p->bias)
                s += p->bias[i], mag += fabs(p->bias[i]);
            if (clamp)
                s = s < lo ? lo : s > hi ? hi : s;
            double got = C[i * p->ldc + j];
            ck_assert_msg(fabs(got - s) <= 1e-5 * (1 + mag),
                          "%s M=%lld N=%lld K=%lld bias %d clamp %d: C[%lld, %lld] = %.9g, want "
                          "%.9g",
                          what, (long long)p->M, (long long)p->N, (long long)p->K, p->bias != NULL,
                          clamp, (long long)i, (long long)j, got, s);
        }
        for (int64_t j = p->N; j < p->ldc; j++)
            ck_assert_msg(C[i * p->ldc + j] == SENTINEL, "%s: padding C[%lld, %lld] written",
                          what, (long long)i, (long long)j);
    }
}

/* Every N x K for M = Ms[_i], bias or not, clamp off, ReLU6-like and a
 * band around zero. */
START_TEST(test_reference)
{
    rng_state = 1000 + (uint64_t)_i;
    for (int n = 0; n < NN; n++)
        for (int k = 0; k < NK; k++)
            for (int b = 0; b < 2; b++) {
                prob p;
                make_prob(&p, Ms[_i], Ns[n], Ks[k], b);
                static const float los[3] = {0, 0.0f, -0.25f}, his[3] = {0, 6.0f, 0.3f};
                for (int c = 0; c < 3; c++) {
                    float *C = new_c(&p);
                    run(&p, C, c > 0, los[c], his[c]);
                    check_ref(&p, C, c > 0, los[c], his[c], "reference");
                    free(C);
                }
                free_prob(&p);
            }
}
END_TEST

/* Long sums: K past the old 4096-float dot buffer (ResNet's 3x3 convs on a
 * 7x7 image: N = 49, K = 4608, one dot column) and beyond the buffer (the
 * column back in a tile), with bias and a clamp. */
START_TEST(test_long_k)
{
    static const int64_t shapes[][3] = {{13, 49, 4608}, {5, 18, 4100}, {9, 17, 9000}};
    rng_state = 2500 + (uint64_t)_i;
    prob p;
    make_prob(&p, shapes[_i][0], shapes[_i][1], shapes[_i][2], true);
    float *C = new_c(&p);
    run(&p, C, true, -3.0f, 3.0f);
    check_ref(&p, C, true, -3.0f, 3.0f, "long K");
    free(C);
    free_prob(&p);
}
END_TEST

/* A NaN in a row of A, in a column of B (a tile column and, where there
 * is one, a dot column) and in the bias comes out NaN through the clamp
 * (min(hi, max(lo, v)) keeps it); every other element is finite and right. */
START_TEST(test_nan_kept)
{
    static const int64_t shapes[][3] = {{17, 49, 160}, {33, 196, 96}, {9, 17, 16}, {96, 4, 160},
                                        {8, 33, 3},    {7, 50, 160},  {40, 1, 16}};
    const int64_t(*s)[3] = &shapes[_i];
    rng_state = 2000 + (uint64_t)_i;
    prob p;
    make_prob(&p, (*s)[0], (*s)[1], (*s)[2], true);
    int64_t M = p.M, N = p.N, K = p.K;
    int64_t ra = M / 2, rb = M - 1, cb0 = 0, cb1 = N - 1; /* NaN rows and columns */
    p.A[ra * p.lda + K / 2] = NAN;
    p.bias[rb] = NAN;
    p.B[(K - 1) * p.ldb + cb0] = NAN;
    p.B[0 * p.ldb + cb1] = NAN;
    float *C = new_c(&p);
    run(&p, C, true, 0.0f, 6.0f);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float v = C[i * p.ldc + j];
            bool want_nan = i == ra || i == rb || j == cb0 || j == cb1;
            ck_assert_msg(want_nan ? isnan(v) : (v >= 0.0f && v <= 6.0f),
                          "M=%lld N=%lld K=%lld: C[%lld, %lld] = %g, want %s", (long long)M,
                          (long long)N, (long long)K, (long long)i, (long long)j, v,
                          want_nan ? "NaN" : "in [0, 6]");
        }
    /* the finite elements against the reference (NaN rows and columns
     * skipped: fill them with finite values and compare the rest) */
    p.A[ra * p.lda + K / 2] = 0.5f, p.bias[rb] = 0.5f;
    p.B[(K - 1) * p.ldb + cb0] = 0.5f, p.B[cb1] = 0.5f;
    float *C2 = new_c(&p);
    run(&p, C2, true, 0.0f, 6.0f);
    check_ref(&p, C2, true, 0.0f, 6.0f, "after NaN");
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            if (!(i == ra || i == rb || j == cb0 || j == cb1))
                ck_assert(memcmp(&C[i * p.ldc + j], &C2[i * p.ldc + j], sizeof(float)) == 0);
    free(C), free(C2);
    free_prob(&p);
}
END_TEST

/* Which columns take the dot path: N mod 16 when small enough for K, the
 * MobileNetV2 shapes (N = 49 and 196 at their K) among them. */
START_TEST(test_dot_cols)
{
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(49, 320), 1);
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(49, 160), 1);
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(49, 960), 1);
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(196, 96), 4);
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(196, 576), 4);
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(17, 16), 1);
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(4, 160), 4);
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(1, 3), 0);   /* K too small: a tile */
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(20, 16), 0); /* 4 columns need K >= 27 */
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(15, 160), 0); /* too many columns */
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(48, 160), 0);
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(0, 160), 0);
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(49, 4608), 1); /* ResNet's 3x3 on 7x7, im2col */
    ck_assert_int_eq(nb_sgemm_avx512_dot_cols(1, 100000), 0); /* the buffer's bound */
    for (int n = 0; n < NN; n++)
        for (int k = 0; k < NK; k++) {
            int64_t r = nb_sgemm_avx512_dot_cols(Ns[n], Ks[k]);
            ck_assert(r == 0 || r == Ns[n] % 16);
        }
}
END_TEST

/* One call against column blocks that start at multiples of 16 (blocks of
 * 16, 32, 48, mixed), and against row blocks: bit-identical, for every N
 * of the grid (dot columns or not) at M = Ms[_i]. */
START_TEST(test_split_invariant)
{
    static const int64_t widths[][4] = {{16, 16, 16, 16}, {32, 32, 32, 32}, {48, 48, 48, 48},
                                        {16, 48, 32, 16}, {64, 16, 128, 16}};
    static const int64_t row_blocks[] = {1, 5, 16};
    rng_state = 3000 + (uint64_t)_i;
    int64_t M = Ms[_i];
    for (int n = 0; n < NN; n++)
        for (int k = 0; k < NK; k++) {
            prob p;
            make_prob(&p, M, Ns[n], Ks[k], (n + k) % 2 == 0);
            bool clamp = k % 2 == 1;
            float *whole = new_c(&p), *part = new_c(&p);
            run(&p, whole, clamp, -0.5f, 0.5f);
            size_t bytes = sizeof(float) * (size_t)(M * p.ldc);
            for (int s = 0; s < 5; s++) {
                for (int64_t i = 0; i < M * p.ldc; i++)
                    part[i] = SENTINEL;
                for (int64_t j0 = 0, b = 0; j0 < p.N; j0 += widths[s][b++ % 4]) {
                    int64_t w = widths[s][b % 4], nb = p.N - j0 < w ? p.N - j0 : w;
                    nb_sgemm_avx512(M, nb, p.K, p.A, p.lda, p.B + j0, p.ldb, part + j0, p.ldc,
                                    p.bias, clamp, -0.5f, 0.5f);
                }
                ck_assert_msg(memcmp(whole, part, bytes) == 0,
                              "M=%lld N=%lld K=%lld: column split %d differs", (long long)M,
                              (long long)p.N, (long long)p.K, s);
            }
            for (int s = 0; s < 3; s++) {
                for (int64_t i = 0; i < M * p.ldc; i++)
                    part[i] = SENTINEL;
                for (int64_t i0 = 0; i0 < M; i0 += row_blocks[s]) {
                    int64_t mb = M - i0 < row_blocks[s] ? M - i0 : row_blocks[s];
                    nb_sgemm_avx512(mb, p.N, p.K, p.A + i0 * p.lda, p.lda, p.B, p.ldb,
                                    part + i0 * p.ldc, p.ldc, p.bias ? p.bias + i0 : NULL, clamp,
                                    -0.5f, 0.5f);
                }
                ck_assert_msg(memcmp(whole, part, bytes) == 0,
                              "M=%lld N=%lld K=%lld: blocks of %lld rows differ", (long long)M,
                              (long long)p.N, (long long)p.K, (long long)row_blocks[s]);
            }
            check_ref(&p, whole, clamp, -0.5f, 0.5f, "split");
            free(whole), free(part);
            free_prob(&p);
        }
}
END_TEST

/* Streaming stores (stream = true) write the same bits as plain ones, on
 * rows that are 64-byte aligned (ldc a multiple of 16: the streamed full
 * tiles) and on unaligned ones (plain stores), and leave C's padding alone. */
START_TEST(test_stream_same_bits)
{
    static const int64_t shapes[][4] = {/* M, N, K, ldc */
                                        {24, 64, 16, 64},  {96, 196, 16, 208}, {13, 96, 40, 96},
                                        {17, 49, 160, 49}, {16, 33, 24, 48}};
    rng_state = 5500 + (uint64_t)_i;
    const int64_t *sh = shapes[_i];
    prob p;
    make_prob(&p, sh[0], sh[1], sh[2], true);
    p.ldc = sh[3];
    size_t n = (size_t)(p.M * p.ldc);
    float *plain = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    float *streamed = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    ck_assert(plain && streamed);
    for (size_t i = 0; i < n; i++)
        plain[i] = streamed[i] = SENTINEL;
    nb_sgemm_avx512_part(p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, plain, p.ldc, p.bias, true, -0.5f,
                         0.5f, 0, p.N, false);
    nb_sgemm_avx512_part(p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, streamed, p.ldc, p.bias, true,
                         -0.5f, 0.5f, 0, p.N, true);
    ck_assert(memcmp(plain, streamed, n * sizeof(float)) == 0);
    check_ref(&p, streamed, true, -0.5f, 0.5f, "streamed");
    free(plain), free(streamed);
    free_prob(&p);
}
END_TEST

/* nb_sgemm_avx512_part over blocks at any column boundaries (not only
 * multiples of 16: an im2col conv splits its columns by output rows) is
 * bit-identical to one nb_sgemm_avx512 call; bad parts write nothing. */
START_TEST(test_part_any_split)
{
    static const int64_t widths[][4] = {
        {1, 1, 1, 1}, {5, 7, 13, 3}, {17, 2, 31, 9}, {48, 1, 15, 33}};
    rng_state = 5000 + (uint64_t)_i;
    int64_t M = Ms[_i];
    for (int n = 0; n < NN; n++)
        for (int k = 0; k < NK; k++) {
            prob p;
            make_prob(&p, M, Ns[n], Ks[k], k % 2 == 0);
            float *whole = new_c(&p), *part = new_c(&p);
            run(&p, whole, true, -0.5f, 0.5f);
            size_t bytes = sizeof(float) * (size_t)(M * p.ldc);
            for (int s = 0; s < 4; s++) {
                for (int64_t i = 0; i < M * p.ldc; i++)
                    part[i] = SENTINEL;
                for (int64_t j0 = 0, b = 0; j0 < p.N; j0 += widths[s][b++ % 4]) {
                    int64_t w = widths[s][b % 4], nb = p.N - j0 < w ? p.N - j0 : w;
                    nb_sgemm_avx512_part(M, nb, p.K, p.A, p.lda, p.B + j0, p.ldb, part + j0,
                                         p.ldc, p.bias, true, -0.5f, 0.5f, j0, p.N, false);
                }
                ck_assert_msg(memcmp(whole, part, bytes) == 0,
                              "M=%lld N=%lld K=%lld: part split %d differs", (long long)M,
                              (long long)p.N, (long long)p.K, s);
            }
            /* j0 < 0 or past n_all: nothing written */
            for (int64_t i = 0; i < M * p.ldc; i++)
                part[i] = SENTINEL;
            nb_sgemm_avx512_part(M, p.N, p.K, p.A, p.lda, p.B, p.ldb, part, p.ldc, p.bias, true,
                                 -0.5f, 0.5f, -1, p.N, false);
            nb_sgemm_avx512_part(M, p.N, p.K, p.A, p.lda, p.B, p.ldb, part, p.ldc, p.bias, true,
                                 -0.5f, 0.5f, 1, p.N, false);
            for (int64_t i = 0; i < M * p.ldc; i++)
                ck_assert(part[i] == SENTINEL);
            free(whole), free(part);
            free_prob(&p);
        }
}
END_TEST

/* The tiled columns are bit for bit a k-ordered FMA chain: a column's
 * result does not change with N as long as it stays out of the dot
 * columns (N = 17 with K = 3 has none: all 17 columns equal N = 33's). */
START_TEST(test_tile_paths_agree)
{
    rng_state = 4000;
    static const int64_t Kt[] = {3, 16, 160};
    for (int k = 0; k < 3; k++) {
        prob p;
        make_prob(&p, 33, 64, Kt[k], true); /* B has 64 + 5 columns a row */
        float *C64 = new_c(&p);
        run(&p, C64, true, -0.5f, 0.5f);
        for (int64_t n = 1; n <= 64; n++) {
            int64_t nt = n - nb_sgemm_avx512_dot_cols(n, p.K);
            float *C = new_c(&p);
            nb_sgemm_avx512(p.M, n, p.K, p.A, p.lda, p.B, p.ldb, C, p.ldc, p.bias, true, -0.5f,
                            0.5f);
            for (int64_t i = 0; i < p.M; i++)
                ck_assert_msg(memcmp(&C[i * p.ldc], &C64[i * p.ldc], sizeof(float) * (size_t)nt) ==
                                  0,
                              "K=%lld: N=%lld row %lld: a tiled column differs from N=64's",
                              (long long)p.K, (long long)n, (long long)i);
            free(C);
        }
        free(C64);
        free_prob(&p);
    }
}
END_TEST

/* M or N of zero (or less) writes nothing. */
START_TEST(test_empty)
{
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 2, 3, 4}, C[4] = {SENTINEL, SENTINEL, SENTINEL, SENTINEL};
    nb_sgemm_avx512(0, 2, 2, A, 2, B, 2, C, 2, NULL, false, 0, 0);
    nb_sgemm_avx512(2, 0, 2, A, 2, B, 2, C, 2, NULL, false, 0, 0);
    nb_sgemm_avx512(-1, 2, 2, A, 2, B, 2, C, 2, NULL, false, 0, 0);
    for (int i = 0; i < 4; i++)
        ck_assert(C[i] == SENTINEL);
    /* K = 0: C = clamp(bias) */
    float bias[2] = {-3.0f, 0.25f};
    nb_sgemm_avx512(2, 2, 0, A, 2, B, 2, C, 2, bias, true, -1.0f, 1.0f);
    ck_assert(C[0] == -1.0f && C[1] == -1.0f && C[2] == 0.25f && C[3] == 0.25f);
}
END_TEST

int main(void)
{
    if (!nb_sgemm_avx512_enabled()) {
        printf("\n*** SKIP: no AVX-512 on this CPU (or NABLA_OWN_GEMM=0): kernels/sgemm_avx512.c "
               "has nothing to test here\n");
        return 77;
    }
    Suite *s = suite_create("sgemm_avx512");
    TCase *tc = tcase_create("sgemm_avx512");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_reference, 0, NM);
    tcase_add_loop_test(tc, test_nan_kept, 0, 7);
    tcase_add_test(tc, test_dot_cols);
    tcase_add_loop_test(tc, test_long_k, 0, 3);
    tcase_add_loop_test(tc, test_stream_same_bits, 0, 5);
    tcase_add_loop_test(tc, test_split_invariant, 0, NM);
    tcase_add_loop_test(tc, test_part_any_split, 0, NM);
    tcase_add_test(tc, test_tile_paths_agree);
    tcase_add_test(tc, test_empty);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
