/* Run-time SIMD builds of the f32 elementwise, softmax and norm loops
 * (private to kernels/ and to the kernels_simd tests).
 *
 * nabla's default build targets baseline x86-64, so a loop the compiler
 * vectorises runs 4 floats at a time (SSE2). The hot f32 loops of
 * softmax.c and norm.c are therefore compiled three times from one C body:
 * baseline, AVX2 and AVX-512 (NB_SIMD_EACH below), those of elementwise.c and
 * elementwise_binary.c twice, baseline and AVX2 (NB_SIMD_EACH2: the AVX-512
 * level runs the AVX2 build), and a kernel picks the build for
 * nb_simd_level() when it is called. No target_clones / ifunc: their
 * resolvers run before ThreadSanitizer's runtime starts and crash TSan
 * builds.
 *
 * Same bits at every level: the project compiles as ISO C11, so
 * -ffp-contract=off (no FMA contraction; the targets leave out "fma", and
 * clang, which contracts by default, is told not to below), no
 * -ffast-math, so the vectoriser never reassociates a sum, and libm calls
 * (expf, tanhf, erff, ...) stay the same scalar calls. Sums keep their
 * existing accumulation order or lane scheme; a wider build only changes how
 * many independent lanes one instruction handles. One latitude remains, as
 * between any two compilations: where an operation meets two different NaNs
 * (NaN + -NaN), x86 returns its first operand's, and the compiler may order
 * the operands of a commutative operation differently in each build, so such
 * an output is NaN at every level but its sign or payload may differ.
 *
 * NABLA_SIMD (read once): "base" (or "0") forces the baseline builds, "avx2"
 * caps the level at AVX2, "avx512" or unset/anything else: the best the CPU
 * has. A level the CPU lacks is never used.
 */
#ifndef NB_ELEMENTWISE_SIMD_H
#define NB_ELEMENTWISE_SIMD_H

enum {
    NB_SIMD_BASE = 0,   /* baseline x86-64 (SSE2), or the only build off x86 */
    NB_SIMD_AVX2 = 1,   /* AVX2 (8 floats a vector), no FMA */
    NB_SIMD_AVX512 = 2, /* AVX-512 F/VL/BW/DQ (16 floats a vector) */
    NB_SIMD_LEVELS = 3
};

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NB_SIMD_X86 1
#define NB_SIMD_TGT_AVX2 __attribute__((target("avx2")))
#if defined(__clang__)
#define NB_SIMD_TGT_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq")))
#else
#define NB_SIMD_TGT_AVX512                                                       \
    __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,prefer-vector-width=512")))
#endif
#else
#define NB_SIMD_TGT_AVX2
#define NB_SIMD_TGT_AVX512
#endif

/* clang contracts a * b + c into an FMA by default (-ffp-contract=on), which
 * the AVX2/AVX-512 targets would allow and baseline would not; GCC in ISO C
 * mode does not contract (and does not know this pragma). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* DEF(name, SFX, TGT) once per level, for a body defined by a macro DEF:
 * SFX is empty for the baseline build, _avx2 and _avx512 for the others;
 * TGT is the target attribute to put before the function. */
#define NB_SIMD_EACH(DEF, name)                                                  \
    DEF(name, , )                                                                \
    DEF(name, _avx2, NB_SIMD_TGT_AVX2)                                           \
    DEF(name, _avx512, NB_SIMD_TGT_AVX512)

/* The three builds of fn, in level order, for a table row. */
#define NB_SIMD_ROW(fn) {fn, fn##_avx2, fn##_avx512}

/* The same with the baseline and AVX2 builds only, the AVX-512 level running
 * the AVX2 one: for loops that stream memory with little arithmetic (the
 * elementwise kernels), where 512-bit vectors gained nothing over 256-bit
 * from cache and lost 10-20% streaming from DRAM (AMD Zen 4). */
#define NB_SIMD_EACH2(DEF, name)                                                 \
    DEF(name, , )                                                                \
    DEF(name, _avx2, NB_SIMD_TGT_AVX2)
#define NB_SIMD_ROW2(fn) {fn, fn##_avx2, fn##_avx2}

/* The level the dispatched kernels use now: the forced one if any, else the
 * best this CPU supports, capped by NABLA_SIMD. Cheap (one atomic load after
 * the first call). */
int nb_simd_level(void);

/* The best level this CPU supports (NB_SIMD_BASE off x86-64). */
int nb_simd_max_level(void);

/* For tests and A/B runs: use `level` from now on (clamped to
 * [0, nb_simd_max_level()]), or return to the automatic choice when level < 0.
 * Returns the level now in use. Not meant to be called while kernels run. */
int nb_simd_force(int level);

/* "base", "avx2", "avx512" ("?" for anything else). */
const char *nb_simd_name(int level);

#endif
