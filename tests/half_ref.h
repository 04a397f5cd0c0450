/* An independent oracle for the 16-bit float formats of tensor/half.c, in
 * long double arithmetic (shared by test_half.c and test_storage_dtypes.c),
 * and small bit-pattern helpers. */
#ifndef NB_TESTS_HALF_REF_H
#define NB_TESTS_HALF_REF_H

#include <stdbool.h>
#include <stdint.h>

/* A 16-bit binary float format: mantissa bits and exponent bias. */
typedef struct fmt16 {
    int mbits, bias;
} fmt16;

extern const fmt16 F16, BF16; /* IEEE half, bfloat16 */

/* The value of bits h in format f (NaN for NaN patterns). */
long double ref_decode(uint16_t h, fmt16 f);
/* v rounded to nearest even in format f. */
uint16_t ref_round(long double v, fmt16 f);
/* Same value (any NaN equals any NaN; +0 and -0 differ). */
bool same16(uint16_t a, uint16_t b, fmt16 f);
/* A reproducible 64-bit generator (splitmix64). */
uint64_t next_u64(uint64_t *s);
float f32_of(uint32_t bits);
double f64_of(uint64_t bits);

#endif
