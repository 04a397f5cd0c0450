/* IEEE binary16 (f16) and bfloat16 (bf16) scalar conversions.
 *
 * Both are carried as their raw 16 bits (uint16_t). Widening to f32 is exact
 * (subnormals, infinities, signed zeros; NaN payloads are kept). Narrowing
 * rounds to nearest, ties to even, once: from f64 and from 64-bit integers
 * the value is rounded directly (not through f32, which could round twice),
 * overflow gives +-inf (f16: |x| >= 65520), values below half the smallest
 * subnormal give +-0, and a NaN stays a quiet NaN of the same sign with the
 * top bits of its payload.
 */
#ifndef NB_HALF_H
#define NB_HALF_H

#include <stdint.h>

float nb_f16_to_f32(uint16_t h);
float nb_bf16_to_f32(uint16_t h);

uint16_t nb_f32_to_f16(float x);
uint16_t nb_f64_to_f16(double x);
uint16_t nb_i64_to_f16(int64_t x);
uint16_t nb_u64_to_f16(uint64_t x);

uint16_t nb_f32_to_bf16(float x);
uint16_t nb_f64_to_bf16(double x);
uint16_t nb_i64_to_bf16(int64_t x);
uint16_t nb_u64_to_bf16(uint64_t x);

#endif
