/* The 16-bit float storage dtypes at the scalar level: the dtype table,
 * f16/bf16 conversions against known bit patterns, exhaustive round trips of
 * all 65536 patterns, and random f32/f64/i64/u64 values rounded against an
 * independent oracle (half_ref.c, long double arithmetic). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "half_ref.h"
#include "tensor/dtype.h"
#include "tensor/half.h"

/* ---- dtypes ------------------------------------------------------------------ */

START_TEST(test_dtype_table)
{
    static const struct {
        nb_dtype dt;
        const char *name;
        size_t size;
        nb_dtype compute;
    } rows[] = {
        {NB_I8, "i8", 1, NB_I64},   {NB_I16, "i16", 2, NB_I64}, {NB_U16, "u16", 2, NB_I64},
        {NB_U32, "u32", 4, NB_I64}, {NB_U64, "u64", 8, NB_I64}, {NB_F16, "f16", 2, NB_F32},
        {NB_BF16, "bf16", 2, NB_F32},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ck_assert(nb_dtype_valid((int)rows[i].dt));
        ck_assert_str_eq(nb_dtype_name(rows[i].dt), rows[i].name);
        ck_assert_uint_eq(nb_dtype_size(rows[i].dt), rows[i].size);
        ck_assert(nb_dtype_is_storage(rows[i].dt));
        ck_assert(!nb_dtype_is_float(rows[i].dt)); /* only the compute floats */
        ck_assert_int_eq(nb_dtype_compute(rows[i].dt), rows[i].compute);
    }
    ck_assert(nb_dtype_is_half(NB_F16) && nb_dtype_is_half(NB_BF16) && !nb_dtype_is_half(NB_U16));
    /* the compute types kept their numbers and are their own compute type */
    ck_assert_int_eq(NB_F32, 0);
    ck_assert_int_eq(NB_BOOL, 5);
    for (int t = 0; t <= NB_BOOL; t++) {
        ck_assert(!nb_dtype_is_storage((nb_dtype)t));
        ck_assert_int_eq(nb_dtype_compute((nb_dtype)t), t);
    }
    ck_assert(!nb_dtype_valid(NB_DTYPE_COUNT));
    ck_assert_uint_eq(nb_dtype_size(NB_DTYPE_COUNT), 0);
    ck_assert_str_eq(nb_dtype_name(NB_DTYPE_COUNT), "?");
}
END_TEST

/* ---- f16 / bf16 scalars ------------------------------------------------------- */

START_TEST(test_f16_known_bits)
{
    static const struct {
        double x;
        uint16_t h;
    } rows[] = {
        {1.0, 0x3C00},
        {-2.0, 0xC000},
        {0.0, 0x0000},
        {-0.0, 0x8000},
        {65504.0, 0x7BFF},           /* largest finite */
        {65519.99, 0x7BFF},          /* below the midpoint to 2^16 */
        {65520.0, 0x7C00},           /* the midpoint: ties to even = overflow to inf */
        {1e10, 0x7C00},
        {-1e10, 0xFC00},
        {0x1p-14, 0x0400},           /* smallest normal */
        {0x1p-24, 0x0001},           /* smallest subnormal */
        {0x1p-25, 0x0000},           /* half of it: tie, to even (0) */
        {0x1.8p-25, 0x0001},         /* above half */
        {0x1.8p-24, 0x0002},         /* 1.5 subnormal ulps: tie, to even (2) */
        {0x1.ff8p-15, 0x03FF},       /* largest subnormal */
        {0x1.ffcp-15, 0x0400},       /* and half an ulp more: tie, to even = the smallest normal */
        {1.0 + 0x1p-11, 0x3C00},     /* tie, to even (down) */
        {1.0 + 0x3p-11, 0x3C02},     /* tie, to even (up) */
        {1.0 + 0x1p-11 + 0x1p-40, 0x3C01}, /* just above a tie: an f32 step would lose it */
        {0.1, 0x2E66},
        {1.0 / 3.0, 0x3555},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint16_t got = nb_f64_to_f16(rows[i].x);
        ck_assert_msg(got == rows[i].h, "f64 %a -> f16 %#06x, want %#06x", rows[i].x, got,
                      rows[i].h);
        if ((double)(float)rows[i].x == rows[i].x)
            ck_assert_uint_eq(nb_f32_to_f16((float)rows[i].x), rows[i].h);
    }
    /* through f32 first, the case above rounds twice to the wrong side */
    ck_assert_uint_eq(nb_f32_to_f16((float)(1.0 + 0x1p-11 + 0x1p-40)), 0x3C00);
    /* NaN: a quiet NaN of the same sign */
    uint16_t n = nb_f32_to_f16(NAN), mn = nb_f64_to_f16(-NAN);
    ck_assert((n & 0x7C00) == 0x7C00 && (n & 0x0200) && !(n & 0x8000));
    ck_assert((mn & 0x7C00) == 0x7C00 && (mn & 0x0200) && (mn & 0x8000));
    ck_assert_uint_eq(nb_f32_to_f16(INFINITY), 0x7C00);
    /* widening */
    ck_assert(nb_f16_to_f32(0x3C00) == 1.0f);
    ck_assert(nb_f16_to_f32(0x0001) == 0x1p-24f);
    ck_assert(nb_f16_to_f32(0x03FF) == 0x1.ff8p-15f);
    ck_assert(nb_f16_to_f32(0x7BFF) == 65504.0f);
    ck_assert(nb_f16_to_f32(0xFC00) == -INFINITY);
    ck_assert(isnan(nb_f16_to_f32(0x7E00)) && isnan(nb_f16_to_f32(0xFC01)));
    ck_assert(signbit(nb_f16_to_f32(0x8000)) && nb_f16_to_f32(0x8000) == 0.0f);
    /* integers, rounded once */
    ck_assert_uint_eq(nb_i64_to_f16(-65519), 0xFBFF);
    ck_assert_uint_eq(nb_i64_to_f16(65520), 0x7C00);
    ck_assert_uint_eq(nb_u64_to_f16(UINT64_MAX), 0x7C00);
    ck_assert_uint_eq(nb_i64_to_f16(2049), 0x6800); /* 2048 + 1: tie to even (2048) */
    ck_assert_uint_eq(nb_i64_to_f16(2051), 0x6802); /* 2050 + 1: tie to even (2052) */
    ck_assert_uint_eq(nb_i64_to_f16(INT64_MIN), 0xFC00);
    ck_assert_uint_eq(nb_i64_to_f16(0), 0x0000);
}
END_TEST

START_TEST(test_bf16_known_bits)
{
    static const struct {
        uint32_t f;
        uint16_t h;
    } rows[] = {
        {0x3F800000, 0x3F80}, /* 1 */
        {0xC0000000, 0xC000}, /* -2 */
        {0x3F808000, 0x3F80}, /* tie, to even (down) */
        {0x3F818000, 0x3F82}, /* tie, to even (up) */
        {0x3F808001, 0x3F81}, /* above the tie */
        {0x3F807FFF, 0x3F80}, /* below the tie */
        {0x7F7F0000, 0x7F7F}, /* largest finite bf16 */
        {0x7F7F7FFF, 0x7F7F},
        {0x7F7F8000, 0x7F80}, /* tie at the top: to even = inf */
        {0x7F7FFFFF, 0x7F80}, /* f32 max overflows */
        {0xFF800000, 0xFF80}, /* -inf */
        {0x00010000, 0x0001}, /* smallest bf16 subnormal, 2^-133 */
        {0x00008000, 0x0000}, /* half of it: tie to even (0) */
        {0x00018000, 0x0002}, /* 1.5 ulps: tie to even (2) */
        {0x00000001, 0x0000}, /* the smallest f32 subnormal */
        {0x80000000, 0x8000}, /* -0 */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint16_t got = nb_f32_to_bf16(f32_of(rows[i].f));
        ck_assert_msg(got == rows[i].h, "f32 %#010x -> bf16 %#06x, want %#06x", rows[i].f, got,
                      rows[i].h);
        ck_assert_uint_eq(nb_f64_to_bf16((double)f32_of(rows[i].f)), rows[i].h);
    }
    uint16_t n = nb_f32_to_bf16(NAN);
    ck_assert((n & 0x7F80) == 0x7F80 && (n & 0x0040));
    ck_assert(nb_bf16_to_f32(0x3F80) == 1.0f && nb_bf16_to_f32(0xC120) == -10.0f);
    ck_assert(nb_bf16_to_f32(0x0001) == 0x1p-133f);
    ck_assert(isnan(nb_bf16_to_f32(0x7FC0)) && nb_bf16_to_f32(0x7F80) == INFINITY);
    /* 2^60 + 2^52 + 1: just above a tie; through f32 or f64 it would become the tie */
    int64_t big = ((int64_t)1 << 60) + ((int64_t)1 << 52) + 1;
    ck_assert(nb_bf16_to_f32(nb_i64_to_bf16(big)) == 0x1.02p60f);
    ck_assert(nb_bf16_to_f32(nb_i64_to_bf16(-big)) == -0x1.02p60f);
    ck_assert(nb_bf16_to_f32(nb_u64_to_bf16(UINT64_MAX)) == 0x1p64f);
    ck_assert(nb_bf16_to_f32(nb_f64_to_bf16(1.0 + 0x1p-8 + 0x1p-50)) == 1.0f + 0x1p-7f);
}
END_TEST

/* Every pattern: the value matches the oracle's decoding, and narrowing the
 * widened value gives the pattern back (NaNs come back quiet with their
 * payload). */
START_TEST(test_exhaustive_round_trip)
{
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        for (int k = 0; k < 2; k++) {
            fmt16 f = k ? BF16 : F16;
            float w = k ? nb_bf16_to_f32(h) : nb_f16_to_f32(h);
            long double want = ref_decode(h, f);
            ck_assert_msg(isnan(want) ? isnan(w) : (long double)w == want && !signbit(w) == !signbit(want),
                          "%s %#06x widened to %a", k ? "bf16" : "f16", h, (double)w);
            uint16_t back = k ? nb_f32_to_bf16(w) : nb_f32_to_f16(w);
            uint16_t back64 = k ? nb_f64_to_bf16((double)w) : nb_f64_to_f16((double)w);
            uint16_t quiet = (uint16_t)(1 << (f.mbits - 1));
            uint16_t expect = isnan(want) ? (uint16_t)(h | quiet) : h;
            ck_assert_msg(back == expect && back64 == expect, "%s %#06x came back as %#06x / %#06x",
                          k ? "bf16" : "f16", h, back, back64);
        }
    }
}
END_TEST

/* Random f32 and f64 bit patterns (all exponents, NaNs included), and
 * values near the f16 range, rounded by nabla and by the oracle. */
START_TEST(test_rounding_vs_oracle)
{
    uint64_t seed = 12345;
    for (int i = 0; i < 200000; i++) {
        uint64_t r = next_u64(&seed);
        float x = f32_of((uint32_t)r);
        double d = f64_of(r);
        /* also values in and around the f16 range, with random low bits */
        double near = ldexp(1.0 + (double)(r >> 12) * 0x1p-52, (int)(r % 50) - 30);
        ck_assert_msg(same16(nb_f32_to_f16(x), ref_round(x, F16), F16), "f32 %a -> f16", (double)x);
        ck_assert_msg(same16(nb_f32_to_bf16(x), ref_round(x, BF16), BF16), "f32 %a -> bf16",
                      (double)x);
        ck_assert_msg(same16(nb_f64_to_f16(d), ref_round(d, F16), F16), "f64 %a -> f16", d);
        ck_assert_msg(same16(nb_f64_to_bf16(d), ref_round(d, BF16), BF16), "f64 %a -> bf16", d);
        ck_assert_msg(same16(nb_f64_to_f16(near), ref_round(near, F16), F16), "f64 %a -> f16", near);
        ck_assert_msg(same16(nb_f64_to_bf16(-near), ref_round(-near, BF16), BF16), "f64 %a -> bf16",
                      -near);
        int64_t v = (int64_t)r >> (r % 63);
        ck_assert_msg(nb_i64_to_f16(v) == ref_round((long double)v, F16), "i64 %lld -> f16",
                      (long long)v);
        ck_assert_msg(nb_i64_to_bf16(v) == ref_round((long double)v, BF16), "i64 %lld -> bf16",
                      (long long)v);
        ck_assert_msg(nb_u64_to_bf16(r) == ref_round((long double)r, BF16), "u64 %llu -> bf16",
                      (unsigned long long)r);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("half");
    TCase *tc = tcase_create("half");
    tcase_add_test(tc, test_dtype_table);
    tcase_add_test(tc, test_f16_known_bits);
    tcase_add_test(tc, test_bf16_known_bits);
    tcase_add_test(tc, test_exhaustive_round_trip);
    tcase_add_test(tc, test_rounding_vs_oracle);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
