/* Element types.
 *
 * Compute types: f32 is the working type; f64 exists so that gradient checks
 * are exact; i32, i64, u8 and bool hold indices and masks. The kernels of
 * arithmetic, matmul, conv, reductions ... take these.
 *
 * Storage types (after NB_BOOL, so the compute types keep their numbers):
 * i8, i16, u16, u32, u64, f16 (IEEE binary16) and bf16 (bfloat16). Tensors of
 * them can be created, filled, copied and converted (nb_tensor_copy_into, the
 * CAST op), printed and saved as .npy (bf16 has no NumPy code), and moved by
 * the data-movement ops (reshape, permute, slice, concat, gather, expand...);
 * compute ops refuse them with an error naming the op and the dtype. To
 * compute, cast to nb_dtype_compute(t) (ints -> i64, f16/bf16 -> f32) and back.
 *
 * nb_dtype_is_float() is true for the float *compute* types only (f32, f64):
 * the builders that take floats check it, so f16/bf16 are refused there
 * rather than reaching a kernel that has no loop for them. nb_dtype_is_half()
 * names the two 16-bit float storage types.
 */
#ifndef NB_DTYPE_H
#define NB_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum nb_dtype {
    NB_F32 = 0,
    NB_F64,
    NB_I32,
    NB_I64,
    NB_U8,
    NB_BOOL, /* one byte, 0 or 1 */
    /* storage types */
    NB_I8,
    NB_I16,
    NB_U16,
    NB_U32,
    NB_U64,
    NB_F16,  /* IEEE 754 binary16: 1 sign, 5 exponent, 10 mantissa bits */
    NB_BF16, /* bfloat16: the top half of an f32 (1, 8, 7 bits) */
    NB_DTYPE_COUNT
} nb_dtype;

size_t nb_dtype_size(nb_dtype t);      /* bytes per element; 0 for an invalid dtype */
/* "f32", "f64", "i32", "i64", "u8", "bool", "i8", "i16", "u16", "u32", "u64",
 * "f16", "bf16"; "?" for an invalid dtype */
const char *nb_dtype_name(nb_dtype t);
bool nb_dtype_is_float(nb_dtype t);   /* f32, f64 (the float compute types) */
bool nb_dtype_is_half(nb_dtype t);    /* f16, bf16 */
bool nb_dtype_is_storage(nb_dtype t); /* i8, i16, u16, u32, u64, f16, bf16 */
/* The type a storage type computes in: i64 for the integers (u64 values of
 * 2^63 and above as their i64 bit pattern), f32 for f16 and bf16; a compute
 * type is its own. */
nb_dtype nb_dtype_compute(nb_dtype t);
bool nb_dtype_valid(int t);

/* One element of any dtype at p, read or written (CPU memory). As double: the
 * exact value (u64 and i64 above 2^53 rounded); stores truncate toward zero
 * and saturate at an integer type's range (NaN gives 0), bool is v != 0 (NaN
 * true), f16/bf16 round to nearest even. As int64: integer types exactly (u64
 * as its bit pattern), stores wrap like a C cast (bool: v != 0), float types
 * go through the double rules (an int64 to f16/bf16 is rounded once). */
double nb_dtype_load_f64(const void *p, nb_dtype t);
void nb_dtype_store_f64(void *p, nb_dtype t, double v);
int64_t nb_dtype_load_i64(const void *p, nb_dtype t);
void nb_dtype_store_i64(void *p, nb_dtype t, int64_t v);

#endif
