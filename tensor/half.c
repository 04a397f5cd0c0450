/* IEEE binary16 and bfloat16 <-> f32/f64/integers (tensor/half.h).
 *
 * Narrowing has one core, pack(): a value sig * 2^(e - msb) (bit msb of sig
 * set) is rounded to a format with mbits stored mantissa bits and exponent
 * bias `bias` (f16: 10, 15; bf16: 7, 127). Normal results keep mbits + 1
 * significant bits; below the smallest normal exponent the kept bits shrink
 * (subnormals). The rounded significand q is added to the biased exponent
 * field, so a carry out of the mantissa bumps the exponent, and a carry out
 * of the largest exponent lands exactly on the bits of infinity.
 */
#include "tensor/half.h"

#include <string.h>

#define F16_MBITS 10
#define F16_BIAS 15
#define BF16_MBITS 7
#define BF16_BIAS 127

/* The +inf bits of a format: all exponent bits set, mantissa 0. */
static uint16_t inf_bits(int mbits, int bias)
{
    return (uint16_t)((2u * (unsigned)bias + 1u) << mbits);
}

/* sign | round(sig * 2^(e - msb)) in the format (mbits, bias), ties to even. */
static uint16_t pack(uint16_t sign, int e, uint64_t sig, int msb, int mbits, int bias)
{
    if (e > bias)
        return sign | inf_bits(mbits, bias);
    int emin = 1 - bias;
    int shift = msb - mbits + (e < emin ? emin - e : 0);
    uint64_t q;
    if (shift <= 0) {
        q = sig << -shift; /* exact (small integers) */
    } else if (shift > msb + 1) {
        q = 0; /* below half the smallest subnormal */
    } else {   /* 1 <= shift <= msb + 1 <= 53 for doubles, <= 56 for integers */
        q = sig >> shift;
        uint64_t rem = sig & ((UINT64_C(1) << shift) - 1), half = UINT64_C(1) << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
    }
    if (e < emin)
        return sign | (uint16_t)q; /* q == 2^mbits is the smallest normal, as it should be */
    return sign | (uint16_t)(((uint32_t)(e + bias - 1) << mbits) + q);
}

static uint16_t from_f64(double x, int mbits, int bias)
{
    uint64_t bits;
    memcpy(&bits, &x, 8);
    uint16_t sign = (uint16_t)((bits >> 48) & 0x8000);
    int exp = (int)((bits >> 52) & 0x7ff);
    uint64_t man = bits & ((UINT64_C(1) << 52) - 1);
    if (exp == 0x7ff) {
        if (man == 0)
            return sign | inf_bits(mbits, bias);
        /* quiet NaN keeping the top payload bits */
        uint16_t payload = (uint16_t)(man >> (52 - mbits));
        return sign | inf_bits(mbits, bias) | (uint16_t)(1u << (mbits - 1)) | payload;
    }
    if (exp == 0) {
        if (man == 0)
            return sign;
        int msb = 63 - __builtin_clzll(man);
        return pack(sign, msb - 1074, man, msb, mbits, bias);
    }
    return pack(sign, exp - 1023, man | (UINT64_C(1) << 52), 52, mbits, bias);
}

static uint16_t from_u64(uint16_t sign, uint64_t m, int mbits, int bias)
{
    if (m == 0)
        return sign;
    int msb = 63 - __builtin_clzll(m);
    return pack(sign, msb, m, msb, mbits, bias);
}

/* |x| as uint64 (INT64_MIN gives 2^63) with x's sign bit. */
static uint64_t magnitude(int64_t x, uint16_t *sign)
{
    *sign = x < 0 ? 0x8000 : 0;
    return x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
}

uint16_t nb_f64_to_f16(double x) { return from_f64(x, F16_MBITS, F16_BIAS); }
uint16_t nb_f32_to_f16(float x) { return from_f64((double)x, F16_MBITS, F16_BIAS); }
uint16_t nb_u64_to_f16(uint64_t x) { return from_u64(0, x, F16_MBITS, F16_BIAS); }

uint16_t nb_i64_to_f16(int64_t x)
{
    uint16_t s;
    uint64_t m = magnitude(x, &s);
    return from_u64(s, m, F16_MBITS, F16_BIAS);
}

uint16_t nb_f64_to_bf16(double x) { return from_f64(x, BF16_MBITS, BF16_BIAS); }
uint16_t nb_f32_to_bf16(float x) { return from_f64((double)x, BF16_MBITS, BF16_BIAS); }
uint16_t nb_u64_to_bf16(uint64_t x) { return from_u64(0, x, BF16_MBITS, BF16_BIAS); }

uint16_t nb_i64_to_bf16(int64_t x)
{
    uint16_t s;
    uint64_t m = magnitude(x, &s);
    return from_u64(s, m, BF16_MBITS, BF16_BIAS);
}

/* Exponent 31 is inf/NaN, 0 subnormal (man * 2^-24), else 1.man * 2^(exp - 15). */
float nb_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else {
        float f = (float)man * 0x1p-24f; /* exact: man < 2^10 */
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float nb_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
