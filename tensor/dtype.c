/* Element type sizes, names and classes. */
#include "tensor/dtype.h"

static const size_t dtype_sizes[NB_DTYPE_COUNT] = {
    [NB_F32] = 4, [NB_F64] = 8, [NB_I32] = 4, [NB_I64] = 8, [NB_U8] = 1, [NB_BOOL] = 1,
};

static const char *const dtype_names[NB_DTYPE_COUNT] = {
    [NB_F32] = "f32", [NB_F64] = "f64", [NB_I32] = "i32",
    [NB_I64] = "i64", [NB_U8] = "u8",   [NB_BOOL] = "bool",
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
