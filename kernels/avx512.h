/* What nabla's AVX-512 kernels share (private to kernels/): the target
 * attribute their functions are compiled with (so the library builds for
 * any x86-64; each kernel checks __builtin_cpu_supports("avx512f") before
 * taking its path) and the mask of a vector's first n lanes. Include only
 * from x86-64 code compiled by GCC or clang. */
#ifndef NB_AVX512_H
#define NB_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#define NB_AVX512_TGT __attribute__((target("avx512f,fma")))

/* The first n of 16 lanes: all for n >= 16, none for n <= 0. */
static inline __mmask16 nb_lanes16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

#endif
