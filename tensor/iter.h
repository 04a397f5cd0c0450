/* Internal to tensor/: strided iteration and per-dtype element access.
 * Not installed and not part of the public API. */
#ifndef NB_TENSOR_ITER_H
#define NB_TENSOR_ITER_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/dtype.h"
#include "tensor/shape.h"

#define NB_ITER_MAX_OPS 2

/* Walks up to two same-shaped strided views in row-major order, one row at a
 * time. Size-1 dims are dropped and dims that are contiguous with their inner
 * neighbour in every operand are merged, so a contiguous tensor is one row.
 *
 *     nb_iter it;
 *     for (nb_iter_init(&it, ndim, shape, 1, strides, offsets); !it.done; nb_iter_next(&it))
 *         for (int64_t k = 0; k < it.n; k++)
 *             use element it.off[0] + k * it.inner[0];
 */
typedef struct nb_iter {
    int nops;
    int ndim; /* outer dims left after merging (the row dim excluded) */
    int64_t shape[NB_MAX_DIMS];
    int64_t strides[NB_ITER_MAX_OPS][NB_MAX_DIMS];
    int64_t idx[NB_MAX_DIMS];
    int64_t off[NB_ITER_MAX_OPS];   /* element offset of the current row's start */
    int64_t n;                      /* row length */
    int64_t inner[NB_ITER_MAX_OPS]; /* element stride along the row */
    bool done;
} nb_iter;

/* Set up the walk; it.done is already true when the shape has no element. */
static inline void nb_iter_init(nb_iter *it, int ndim, const int64_t *shape, int nops,
                                const int64_t *const *strides, const int64_t *offsets)
{
    int64_t msh[NB_MAX_DIMS], mst[NB_ITER_MAX_OPS][NB_MAX_DIMS];
    int m = 0; /* merged dims, stored innermost first */
    it->nops = nops;
    it->done = false;
    for (int o = 0; o < nops; o++)
        it->off[o] = offsets[o];
    for (int d = ndim - 1; d >= 0; d--) {
        if (shape[d] == 0)
            it->done = true;
        if (shape[d] == 1)
            continue;
        bool merge = m > 0;
        for (int o = 0; o < nops && merge; o++)
            merge = strides[o][d] == mst[o][m - 1] * msh[m - 1];
        if (merge) {
            msh[m - 1] *= shape[d];
            continue;
        }
        msh[m] = shape[d];
        for (int o = 0; o < nops; o++)
            mst[o][m] = strides[o][d];
        m++;
    }
    it->n = m > 0 ? msh[0] : 1;
    for (int o = 0; o < nops; o++)
        it->inner[o] = m > 0 ? mst[o][0] : 0;
    it->ndim = m > 0 ? m - 1 : 0;
    for (int i = 0; i < it->ndim; i++) {
        int src = m - 1 - i; /* outermost first */
        it->shape[i] = msh[src];
        it->idx[i] = 0;
        for (int o = 0; o < nops; o++)
            it->strides[o][i] = mst[o][src];
    }
}

/* Move to the next row; sets it.done after the last one. */
static inline void nb_iter_next(nb_iter *it)
{
    for (int d = it->ndim - 1; d >= 0; d--) {
        for (int o = 0; o < it->nops; o++)
            it->off[o] += it->strides[o][d];
        if (++it->idx[d] < it->shape[d])
            return;
        for (int o = 0; o < it->nops; o++)
            it->off[o] -= it->strides[o][d] * it->shape[d];
        it->idx[d] = 0;
    }
    it->done = true;
}

/* Float to int64 without undefined behaviour: NaN -> 0, saturating. */
static inline int64_t nb_f64_to_i64(double v)
{
    if (v != v)
        return 0;
    if (v >= 9223372036854775807.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

/* Read one element of type dt as a double (bool reads as 0 or 1). */
static inline double nb_load_f64(const void *p, nb_dtype dt)
{
    switch (dt) {
    case NB_F32: return *(const float *)p;
    case NB_F64: return *(const double *)p;
    case NB_I32: return *(const int32_t *)p;
    case NB_I64: return (double)*(const int64_t *)p;
    case NB_U8: return *(const uint8_t *)p;
    case NB_BOOL: return *(const uint8_t *)p != 0;
    default: return 0.0;
    }
}

/* Write a double as type dt. Integers truncate toward zero and saturate at the
 * type's range (NaN gives 0); bool is v != 0 (NaN gives true, as in PyTorch). */
static inline void nb_store_f64(void *p, nb_dtype dt, double v)
{
    switch (dt) {
    case NB_F32: *(float *)p = (float)v; break;
    case NB_F64: *(double *)p = v; break;
    case NB_I32: {
        int64_t i = nb_f64_to_i64(v);
        *(int32_t *)p = (int32_t)(i > INT32_MAX ? INT32_MAX : i < INT32_MIN ? INT32_MIN : i);
        break;
    }
    case NB_I64: *(int64_t *)p = nb_f64_to_i64(v); break;
    case NB_U8: {
        int64_t i = nb_f64_to_i64(v);
        *(uint8_t *)p = (uint8_t)(i > 255 ? 255 : i < 0 ? 0 : i);
        break;
    }
    case NB_BOOL: *(uint8_t *)p = v != 0.0; break;
    default: break;
    }
}

/* Read an integer-typed element (i32, i64, u8, bool) exactly. */
static inline int64_t nb_load_i64(const void *p, nb_dtype dt)
{
    switch (dt) {
    case NB_I32: return *(const int32_t *)p;
    case NB_I64: return *(const int64_t *)p;
    case NB_U8: return *(const uint8_t *)p;
    case NB_BOOL: return *(const uint8_t *)p != 0;
    default: return nb_f64_to_i64(nb_load_f64(p, dt));
    }
}

/* Write an integer to an integer type, wrapping like a C cast (bool: v != 0). */
static inline void nb_store_i64(void *p, nb_dtype dt, int64_t v)
{
    switch (dt) {
    case NB_I32: *(int32_t *)p = (int32_t)(uint32_t)(uint64_t)v; break;
    case NB_I64: *(int64_t *)p = v; break;
    case NB_U8: *(uint8_t *)p = (uint8_t)(uint64_t)v; break;
    case NB_BOOL: *(uint8_t *)p = v != 0; break;
    default: nb_store_f64(p, dt, (double)v); break;
    }
}

#endif
