/* The run-time choice between the baseline, AVX2 and AVX-512 builds of the
 * f32 elementwise, softmax and norm loops (see kernels/elementwise_simd.h):
 * what the CPU supports, capped by NABLA_SIMD (read once), or a level forced
 * by a test. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/elementwise_simd.h"

static atomic_int g_auto = -1;   /* the automatic level; -1: not worked out yet */
static atomic_int g_forced = -1; /* nb_simd_force's level; -1: none */

int nb_simd_max_level(void)
{
#ifdef NB_SIMD_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        return NB_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2"))
        return NB_SIMD_AVX2;
#endif
    return NB_SIMD_BASE;
}

/* NABLA_SIMD's cap: base/0 -> baseline, avx2 -> AVX2, otherwise none. */
static int env_cap(void)
{
    const char *e = getenv("NABLA_SIMD");
    if (!e)
        return NB_SIMD_AVX512;
    if (strcmp(e, "base") == 0 || strcmp(e, "0") == 0)
        return NB_SIMD_BASE;
    if (strcmp(e, "avx2") == 0)
        return NB_SIMD_AVX2;
    return NB_SIMD_AVX512;
}

int nb_simd_level(void)
{
    int f = atomic_load_explicit(&g_forced, memory_order_relaxed);
    if (f >= 0)
        return f;
    int a = atomic_load_explicit(&g_auto, memory_order_relaxed);
    if (a < 0) { /* racing first calls all store the same value */
        int max = nb_simd_max_level(), cap = env_cap();
        a = cap < max ? cap : max;
        atomic_store_explicit(&g_auto, a, memory_order_relaxed);
    }
    return a;
}

int nb_simd_force(int level)
{
    if (level < 0) {
        atomic_store_explicit(&g_forced, -1, memory_order_relaxed);
        return nb_simd_level();
    }
    int max = nb_simd_max_level();
    int l = level < max ? level : max;
    atomic_store_explicit(&g_forced, l, memory_order_relaxed);
    return l;
}

const char *nb_simd_name(int level)
{
    switch (level) {
    case NB_SIMD_BASE: return "base";
    case NB_SIMD_AVX2: return "avx2";
    case NB_SIMD_AVX512: return "avx512";
    default: return "?";
    }
}
