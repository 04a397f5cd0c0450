/* Element types. f32 is the working type; f64 exists so that gradient checks are
 * exact; integer and bool types hold indices and masks. */
#ifndef NB_DTYPE_H
#define NB_DTYPE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum nb_dtype {
    NB_F32 = 0,
    NB_F64,
    NB_I32,
    NB_I64,
    NB_U8,
    NB_BOOL, /* one byte, 0 or 1 */
    NB_DTYPE_COUNT
} nb_dtype;

size_t nb_dtype_size(nb_dtype t);      /* bytes per element */
const char *nb_dtype_name(nb_dtype t); /* "f32", "f64", "i32", "i64", "u8", "bool" */
bool nb_dtype_is_float(nb_dtype t);
bool nb_dtype_valid(int t);

#endif
