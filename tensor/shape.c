/* Shape arithmetic: element counts, strides, broadcasting, formatting. */
#include "tensor/shape.h"

#include <stdio.h>

int64_t nb_shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

/* strides[i] = prod(shape[i+1:]), the row-major layout in elements. */
void nb_shape_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i];
    }
}

bool nb_shape_equal(int na, const int64_t *a, int nb, const int64_t *b)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* NumPy broadcasting: align the shapes on the right; each pair of dims must be
 * equal or contain a 1, and the result takes the other one (so 1 with 0 gives 0). */
bool nb_shape_broadcast(int na, const int64_t *a, int nb, const int64_t *b,
                        int *nout, int64_t *out)
{
    if (na < 0 || nb < 0 || na > NB_MAX_DIMS || nb > NB_MAX_DIMS)
        return false;
    int n = na > nb ? na : nb;
    int64_t tmp[NB_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        int ia = na - n + i, ib = nb - n + i;
        int64_t da = ia >= 0 ? a[ia] : 1;
        int64_t db = ib >= 0 ? b[ib] : 1;
        if (da == db || db == 1)
            tmp[i] = da;
        else if (da == 1)
            tmp[i] = db;
        else
            return false;
    }
    for (int i = 0; i < n; i++)
        out[i] = tmp[i];
    *nout = n;
    return true;
}

/* "(2,3,4)"; a 1-d shape is "(5)" and a 0-d shape "()". Truncated to fit size. */
char *nb_shape_str(int ndim, const int64_t *shape, char *buf, size_t size)
{
    if (size == 0)
        return buf;
    size_t pos = 0;
    buf[0] = '\0';
    int n = snprintf(buf, size, "(");
    pos = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < ndim && pos < size; i++) {
        n = snprintf(buf + pos, size - pos, "%s%lld", i ? "," : "", (long long)shape[i]);
        if (n < 0)
            break;
        pos += (size_t)n;
    }
    if (pos < size)
        snprintf(buf + pos, size - pos, ")");
    return buf;
}

int nb_axis_norm(int axis, int ndim)
{
    if (axis < -ndim || axis >= ndim)
        return -1;
    return axis < 0 ? axis + ndim : axis;
}
