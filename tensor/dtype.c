/* Element type sizes, names and classes, and one-element access for every
 * dtype (the kernels' inline versions in tensor/iter.h cover the compute
 * types; these are for tensor/ code that meets any dtype). */
#include "tensor/dtype.h"

#include <string.h>

#include "tensor/half.h"

static const size_t dtype_sizes[NB_DTYPE_COUNT] = {
    [NB_F32] = 4, [NB_F64] = 8, [NB_I32] = 4, [NB_I64] = 8, [NB_U8] = 1,  [NB_BOOL] = 1,
    [NB_I8] = 1,  [NB_I16] = 2, [NB_U16] = 2, [NB_U32] = 4, [NB_U64] = 8, [NB_F16] = 2,
    [NB_BF16] = 2,
};

static const char *const dtype_names[NB_DTYPE_COUNT] = {
    [NB_F32] = "f32", [NB_F64] = "f64", [NB_I32] = "i32", [NB_I64] = "i64", [NB_U8] = "u8",
    [NB_BOOL] = "bool", [NB_I8] = "i8", [NB_I16] = "i16", [NB_U16] = "u16", [NB_U32] = "u32",
    [NB_U64] = "u64", [NB_F16] = "f16", [NB_BF16] = "bf16",
};

bool nb_dtype_valid(int t)
{
    return t >= 0 && t < NB_DTYPE_COUNT;
}

/* Bytes per element; 0 for an invalid dtype. */
size_t nb_dtype_size(nb_dtype t)
{
    return nb_dtype_valid((int)t) ? dtype_sizes[t] : 0;
}

/* Short name; "?" for an invalid dtype. */
const char *nb_dtype_name(nb_dtype t)
{
    return nb_dtype_valid((int)t) ? dtype_names[t] : "?";
}

bool nb_dtype_is_float(nb_dtype t)
{
    return t == NB_F32 || t == NB_F64;
}

bool nb_dtype_is_half(nb_dtype t)
{
    return t == NB_F16 || t == NB_BF16;
}

bool nb_dtype_is_storage(nb_dtype t)
{
    return t >= NB_I8 && t <= NB_BF16;
}

nb_dtype nb_dtype_compute(nb_dtype t)
{
    if (nb_dtype_is_half(t))
        return NB_F32;
    return nb_dtype_is_storage(t) ? NB_I64 : t;
}

/* ---- one element ---------------------------------------------------------- */

/* Unaligned-safe typed reads: LOAD(int8_t, p) is ld_int8_t(p). */
#define DEF_LD(T) static inline T ld_##T(const void *p) { T v; memcpy(&v, p, sizeof v); return v; }
DEF_LD(float) DEF_LD(double) DEF_LD(int8_t) DEF_LD(int16_t) DEF_LD(int32_t) DEF_LD(int64_t)
DEF_LD(uint8_t) DEF_LD(uint16_t) DEF_LD(uint32_t) DEF_LD(uint64_t)
#define LOAD(T, p) ld_##T(p)
#define STORE(T, p, x) do { T v_ = (T)(x); memcpy((p), &v_, sizeof v_); } while (0)

/* NaN -> 0, truncate, clamp to [lo, hi] (exactly representable doubles). */
static int64_t trunc_clamp(double v, double lo, double hi)
{
    if (v != v)
        return 0;
    if (v <= lo)
        return (int64_t)lo;
    if (v >= hi)
        return (int64_t)hi;
    return (int64_t)v;
}

double nb_dtype_load_f64(const void *p, nb_dtype t)
{
    switch (t) {
    case NB_F32: return LOAD(float, p);
    case NB_F64: return LOAD(double, p);
    case NB_I32: return LOAD(int32_t, p);
    case NB_I64: return (double)LOAD(int64_t, p);
    case NB_U8: return LOAD(uint8_t, p);
    case NB_BOOL: return LOAD(uint8_t, p) != 0;
    case NB_I8: return LOAD(int8_t, p);
    case NB_I16: return LOAD(int16_t, p);
    case NB_U16: return LOAD(uint16_t, p);
    case NB_U32: return LOAD(uint32_t, p);
    case NB_U64: return (double)LOAD(uint64_t, p);
    case NB_F16: return nb_f16_to_f32(LOAD(uint16_t, p));
    case NB_BF16: return nb_bf16_to_f32(LOAD(uint16_t, p));
    default: return 0.0;
    }
}

void nb_dtype_store_f64(void *p, nb_dtype t, double v)
{
    switch (t) {
    case NB_F32: STORE(float, p, v); break;
    case NB_F64: STORE(double, p, v); break;
    case NB_I32: STORE(int32_t, p, trunc_clamp(v, -2147483648.0, 2147483647.0)); break;
    case NB_I64:
        /* 2^63 is not an int64: saturate above the largest double below it */
        if (v >= 9223372036854775808.0)
            STORE(int64_t, p, INT64_MAX);
        else
            STORE(int64_t, p, trunc_clamp(v, -9223372036854775808.0, 9223372036854774784.0));
        break;
    case NB_U8: STORE(uint8_t, p, trunc_clamp(v, 0, 255)); break;
    case NB_BOOL: STORE(uint8_t, p, v != 0.0); break;
    case NB_I8: STORE(int8_t, p, trunc_clamp(v, -128, 127)); break;
    case NB_I16: STORE(int16_t, p, trunc_clamp(v, -32768, 32767)); break;
    case NB_U16: STORE(uint16_t, p, trunc_clamp(v, 0, 65535)); break;
    case NB_U32: STORE(uint32_t, p, trunc_clamp(v, 0, 4294967295.0)); break;
    case NB_U64: {
        uint64_t u;
        if (v != v || v <= 0)
            u = 0;
        else if (v >= 18446744073709551616.0)
            u = UINT64_MAX;
        else
            u = (uint64_t)v;
        STORE(uint64_t, p, u);
        break;
    }
    case NB_F16: STORE(uint16_t, p, nb_f64_to_f16(v)); break;
    case NB_BF16: STORE(uint16_t, p, nb_f64_to_bf16(v)); break;
    default: break;
    }
}

int64_t nb_dtype_load_i64(const void *p, nb_dtype t)
{
    switch (t) {
    case NB_I32: return LOAD(int32_t, p);
    case NB_I64: return LOAD(int64_t, p);
    case NB_U8: return LOAD(uint8_t, p);
    case NB_BOOL: return LOAD(uint8_t, p) != 0;
    case NB_I8: return LOAD(int8_t, p);
    case NB_I16: return LOAD(int16_t, p);
    case NB_U16: return LOAD(uint16_t, p);
    case NB_U32: return LOAD(uint32_t, p);
    case NB_U64: return (int64_t)LOAD(uint64_t, p); /* the bit pattern */
    default: {
        double v = nb_dtype_load_f64(p, t);
        return trunc_clamp(v, -9223372036854775808.0, 9223372036854774784.0);
    }
    }
}

void nb_dtype_store_i64(void *p, nb_dtype t, int64_t v)
{
    uint64_t u = (uint64_t)v;
    switch (t) {
    case NB_I32: STORE(int32_t, p, (int32_t)(uint32_t)u); break;
    case NB_I64: STORE(int64_t, p, v); break;
    case NB_U8: STORE(uint8_t, p, (uint8_t)u); break;
    case NB_BOOL: STORE(uint8_t, p, v != 0); break;
    case NB_I8: STORE(int8_t, p, (int8_t)(uint8_t)u); break;
    case NB_I16: STORE(int16_t, p, (int16_t)(uint16_t)u); break;
    case NB_U16: STORE(uint16_t, p, (uint16_t)u); break;
    case NB_U32: STORE(uint32_t, p, (uint32_t)u); break;
    case NB_U64: STORE(uint64_t, p, u); break;
    case NB_F16: STORE(uint16_t, p, nb_i64_to_f16(v)); break;
    case NB_BF16: STORE(uint16_t, p, nb_i64_to_bf16(v)); break;
    default: nb_dtype_store_f64(p, t, (double)v); break;
    }
}
