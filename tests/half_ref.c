/* The rounding oracle of half_ref.h. */
#include "half_ref.h"

#include <math.h>
#include <string.h>

const fmt16 F16 = {10, 15}, BF16 = {7, 127};

static uint16_t inf16(fmt16 f) { return (uint16_t)((2 * f.bias + 1) << f.mbits); }

/* The value of bits in format f (NaN for NaN patterns). */
long double ref_decode(uint16_t h, fmt16 f)
{
    int emax = 2 * f.bias + 1;
    int e = (h >> f.mbits) & emax;
    long double man = h & ((1 << f.mbits) - 1);
    long double v;
    if (e == emax)
        v = man != 0 ? NAN : INFINITY;
    else if (e == 0)
        v = ldexpl(man, 1 - f.bias - f.mbits);
    else
        v = ldexpl(man + ldexpl(1, f.mbits), e - f.bias - f.mbits);
    return (h & 0x8000) ? -v : v;
}

/* v (exact in long double) rounded to nearest even in format f: scale |v|
 * so that the kept bits are the integer part, round that, check overflow. */
uint16_t ref_round(long double v, fmt16 f)
{
    uint16_t sign = signbit(v) ? 0x8000 : 0;
    if (isnan(v))
        return inf16(f) | (uint16_t)(1 << (f.mbits - 1));
    long double a = fabsl(v);
    if (isinf(a))
        return sign | inf16(f);
    if (a == 0)
        return sign;
    int e;
    frexpl(a, &e); /* a = m 2^e, m in [0.5, 1): floor(log2 a) = e - 1 */
    int E = e - 1 < 1 - f.bias ? 1 - f.bias : e - 1;
    long double scale = ldexpl(1, E - f.mbits);
    long double q = a / scale, lo = floorl(q), rem = q - lo;
    if (rem > 0.5L || (rem == 0.5L && fmodl(lo, 2) == 1))
        lo += 1;
    long double r = lo * scale;
    if (r > ldexpl(2 - ldexpl(1, -f.mbits), f.bias))
        return sign | inf16(f);
    if (r < ldexpl(1, 1 - f.bias)) /* subnormal (or the smallest normal, if q rounded up) */
        return sign | (uint16_t)(r / ldexpl(1, 1 - f.bias - f.mbits));
    frexpl(r, &e);
    long double frac = r / ldexpl(1, e - 1 - f.mbits) - ldexpl(1, f.mbits);
    return sign | (uint16_t)((e - 1 + f.bias) << f.mbits) | (uint16_t)frac;
}

/* Whether two patterns stand for the same value (any NaN matches any NaN,
 * +0 and -0 differ). */
bool same16(uint16_t a, uint16_t b, fmt16 f)
{
    long double x = ref_decode(a, f), y = ref_decode(b, f);
    if (isnan(x) || isnan(y))
        return isnan(x) && isnan(y);
    return a == b;
}

/* A reproducible 64-bit generator (splitmix64). */
uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float f32_of(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

double f64_of(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

