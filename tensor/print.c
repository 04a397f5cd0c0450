/* PyTorch-like printing of a tensor:
 *
 *     tensor([[ 1.0000,  2.0000],
 *             [ 3.0000,  4.0000]], dtype=f32)
 *
 * Floats use 4 decimals and a sign column ("% .4f"), or "% .4e" when PyTorch
 * would switch to scientific notation (a nonzero finite |x| above 1e8 or below
 * 1e-4, or a max/min ratio above 1000). Integers print without decimals, bools
 * as True/False (u64 as unsigned); f16 and bf16 print as floats; every element of a tensor is right-aligned to one width. A dim
 * longer than 6 shows its first 3 and last 3 entries around "...". A 0-d tensor
 * prints its value unpadded: "tensor(1.5000, dtype=f32)". A newline ends it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tensor/iter.h"
#include "tensor/tensor.h"

#define EDGE 3 /* entries kept at each end of an elided dim */

/* Printed with decimals: f32, f64, f16, bf16. */
static bool is_fp(nb_dtype dt)
{
    return nb_dtype_is_float(dt) || nb_dtype_is_half(dt);
}

static double load(const void *p, nb_dtype dt)
{
    return nb_dtype_is_storage(dt) ? nb_dtype_load_f64(p, dt) : nb_load_f64(p, dt);
}

typedef struct fmt {
    const nb_tensor *t;
    const char *base;
    size_t elsize;
    bool sci;
    int width;
    /* statistics gathered over the shown elements */
    double nz_min, nz_max;
    bool any_nonzero;
} fmt;

static int64_t shown_count(int64_t n)
{
    return n > 2 * EDGE ? 2 * EDGE : n;
}

/* Position in the dim of the k-th shown entry. */
static int64_t shown_index(int64_t n, int64_t k)
{
    return (n > 2 * EDGE && k >= EDGE) ? n - 2 * EDGE + k : k;
}

/* Text of one element (with the sign column for floats). */
static int format_elem(const fmt *fm, int64_t off, char *buf, size_t size)
{
    const void *p = fm->base + off * (int64_t)fm->elsize;
    nb_dtype dt = fm->t->dtype;
    if (is_fp(dt)) {
        double v = load(p, dt);
        if (isnan(v)) /* no "-nan": the sign of a NaN means nothing */
            return snprintf(buf, size, " nan");
        return snprintf(buf, size, fm->sci ? "% .4e" : "% .4f", v);
    }
    if (dt == NB_BOOL)
        return snprintf(buf, size, "%s", *(const uint8_t *)p ? "True" : "False");
    if (dt == NB_U64)
        return snprintf(buf, size, "%llu", (unsigned long long)nb_dtype_load_i64(p, dt));
    if (nb_dtype_is_storage(dt))
        return snprintf(buf, size, "%lld", (long long)nb_dtype_load_i64(p, dt));
    return snprintf(buf, size, "%lld", (long long)nb_load_i64(p, dt));
}

typedef void (*visit_fn)(fmt *fm, int64_t off);

/* Call fn on the element offset of every shown element, in print order. */
static void walk(fmt *fm, int dim, int64_t off, visit_fn fn)
{
    const nb_tensor *t = fm->t;
    if (dim == t->ndim) {
        fn(fm, off);
        return;
    }
    int64_t n = t->shape[dim];
    for (int64_t k = 0; k < shown_count(n); k++)
        walk(fm, dim + 1, off + shown_index(n, k) * t->strides[dim], fn);
}

/* Gather the range of nonzero finite magnitudes for the notation choice. */
static void visit_stats(fmt *fm, int64_t off)
{
    double v = fabs(load(fm->base + off * (int64_t)fm->elsize, fm->t->dtype));
    if (!isfinite(v) || v == 0.0)
        return;
    if (!fm->any_nonzero || v < fm->nz_min)
        fm->nz_min = v;
    if (!fm->any_nonzero || v > fm->nz_max)
        fm->nz_max = v;
    fm->any_nonzero = true;
}

static void visit_width(fmt *fm, int64_t off)
{
    char buf[64];
    int n = format_elem(fm, off, buf, sizeof buf);
    if (n > fm->width)
        fm->width = n;
}

/* Choose notation and common width from the shown elements. */
static void choose_format(fmt *fm)
{
    if (is_fp(fm->t->dtype)) {
        walk(fm, 0, fm->t->offset, visit_stats);
        fm->sci = fm->any_nonzero && (fm->nz_max > 1e8 || fm->nz_min < 1e-4 ||
                                      fm->nz_max / fm->nz_min > 1000.0);
    }
    walk(fm, 0, fm->t->offset, visit_width);
}

/* Separator between entries of a dim with `rest` dims below it (rest 0 is the
 * last dim): ", " inside a row, else a comma, rest newlines and indentation. */
static void put_sep(FILE *f, int rest, int indent)
{
    if (rest == 0) {
        fputs(", ", f);
        return;
    }
    fputc(',', f);
    for (int i = 0; i < rest; i++)
        fputc('\n', f);
    fprintf(f, "%*s", indent, "");
}

/* Print the sub-tensor starting at dim as nested brackets; indent is the
 * column of its opening bracket. */
static void print_dim(FILE *f, const fmt *fm, int dim, int64_t off, int indent)
{
    const nb_tensor *t = fm->t;
    int64_t n = t->shape[dim];
    int rest = t->ndim - 1 - dim;
    fputc('[', f);
    for (int64_t k = 0; k < shown_count(n); k++) {
        if (k > 0)
            put_sep(f, rest, indent + 1);
        if (n > 2 * EDGE && k == EDGE) {
            fputs("...", f);
            put_sep(f, rest, indent + 1);
        }
        int64_t o = off + shown_index(n, k) * t->strides[dim];
        if (rest > 0) {
            print_dim(f, fm, dim + 1, o, indent + 1);
        } else {
            char buf[64];
            format_elem(fm, o, buf, sizeof buf);
            fprintf(f, "%*s", fm->width, buf);
        }
    }
    fputc(']', f);
}

/* A tensor without elements, or one whose memory is not on the CPU. */
static bool print_special(FILE *f, const nb_tensor *t)
{
    char sb[200];
    if (!t->buf) {
        fputs("tensor(<unset>)\n", f);
        return true;
    }
    const char *dn = nb_dtype_name(t->dtype);
    nb_shape_str(t->ndim, t->shape, sb, sizeof sb);
    if (t->buf->device.type != NB_DEVICE_CPU) {
        fprintf(f, "tensor(<cuda:%d>, dtype=%s, shape=%s)\n", t->buf->device.index, dn, sb);
        return true;
    }
    if (nb_tensor_numel(t) == 0) {
        if (t->ndim == 1)
            fprintf(f, "tensor([], dtype=%s)\n", dn);
        else
            fprintf(f, "tensor([], dtype=%s, shape=%s)\n", dn, sb);
        return true;
    }
    return false;
}

void nb_tensor_print(FILE *f, const nb_tensor *t)
{
    if (print_special(f, t))
        return;
    fmt fm = {.t = t, .base = t->buf->data, .elsize = nb_dtype_size(t->dtype)};
    choose_format(&fm);
    fputs("tensor(", f);
    if (t->ndim == 0) {
        char buf[64];
        format_elem(&fm, t->offset, buf, sizeof buf);
        fputs(buf[0] == ' ' ? buf + 1 : buf, f);
    } else {
        print_dim(f, &fm, 0, t->offset, (int)strlen("tensor("));
    }
    fprintf(f, ", dtype=%s)\n", nb_dtype_name(t->dtype));
}
