/* Shared by the convolution suites (test_conv.c, test_conv_winograd.c): the
 * case table type, naive f64 reference loops (a gather for conv2d and its
 * gradients, a scatter for the transpose), and graph helpers. */
#ifndef NB_TESTS_CONV_REF_H
#define NB_TESTS_CONV_REF_H

#include <stdbool.h>
#include <stdint.h>

#include "nabla.h"

extern nb_rng rng; /* each test seeds it */

typedef struct ccase {
    const char *name;
    int64_t N, C, H, W, CO, KH, KW;
    nb_conv_args a;
    bool bias;
} ccase;

/* {stride}, {top, bottom, left, right}, {dilation}, {output_padding}, groups */
#define ARGS(s0, s1, pt, pb, pl, pr, d0, d1, o0, o1, g) \
    {{s0, s1}, {pt, pb, pl, pr}, {d0, d1}, {o0, o1}, g}
#define PLAIN ARGS(1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1)
/* ARGS with a fused clamp to [lo, hi] */
#define ARGS_CLAMP(s0, s1, pt, pb, pl, pr, d0, d1, g, lo, hi) \
    {{s0, s1}, {pt, pb, pl, pr}, {d0, d1}, {0, 0}, g, true, lo, hi}

typedef struct geo {
    int64_t s[2], pb[2], pe[2], d[2], op[2], G;
} geo;

geo geo_of(const nb_conv_args *a);
int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe);
/* The conv2d output height and width of case c (geometry r). */
void conv_out_hw(const ccase *c, const geo *r, int64_t *OH, int64_t *OW);
/* y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] x[n, g*CG+c, i*s-pb+p*d, j*s-pl+q*d] */
void ref_conv2d(const ccase *c, const geo *r, const double *x, const double *w, const double *b,
                double *y, int64_t OH, int64_t OW);
/* The gradients of sum(conv2d(x, w, b) * cv), accumulated into dx, dw and db
 * (db may be NULL):
 *   dw[o,ci,p,q] += cv[n,o,i,j] x[n, g*CG+ci, ih, iw]
 *   dx[n, g*CG+ci, ih, iw] += cv[n,o,i,j] w[o,ci,p,q]
 *   db[o] += cv[n,o,i,j] */
void ref_conv2d_grad(const ccase *c, const geo *r, const double *x, const double *w,
                     const double *cv, double *dx, double *dw, double *db, int64_t OH,
                     int64_t OW);
/* the adjoint scatter of ref_conv2d, plus bias per output channel */
void ref_transpose(const ccase *c, const geo *r, const double *x, const double *w,
                   const double *b, double *y, int64_t OH, int64_t OW);
/* n uniform values in [-1, 1) from rng (caller frees) */
double *random_vals(int64_t n);
/* An f32 copy of v (n values, caller frees); v is rounded to the same
 * values in place, so that an f64 reference sees exactly the f32 inputs. */
float *f32_rounded_copy(double *v, int64_t n);
/* A parameter of dtype dt holding vals (converted). */
nb_node *param_vals(nb_graph *g, const char *name, nb_dtype dt, int ndim, const int64_t *shape,
                    const double *vals);
/* Run the graph for outs[0..n) and copy them as doubles into res[k] (caller frees). */
void eval(nb_graph *g, int n, nb_node *const *outs, double **res);
void assert_close(const char *what, const double *got, const double *want, int64_t n, double tol);
/* |got - want| <= tol * max(1, max |want|): the rule of the parity suites,
 * for f32 paths whose error follows the size of the sums, not of each
 * result (Winograd F(4x4, 3x3)) */
void assert_close_scaled(const char *what, const char *name, const double *got,
                         const double *want, int64_t n, double tol);
/* Compile and run the graph for outs[0..n) with profiling; return output 0
 * as doubles (*count of them, caller frees) and in *entries how many tape
 * entries run op (a fusion's op: conv_block, conv2d_add). */
double *run_counting(nb_graph *g, int n, nb_node *const *outs, nb_op op, int *entries,
                     int64_t *count);
/* a and b are the same value: both NaN, or equal with the same sign */
bool same_bits(double a, double b);
/* One forward case (kind 0 conv2d, 1 conv_transpose2d, 2 conv1d) in dtype dt
 * against the reference loops. */
void forward_case(const ccase *c, int kind, nb_dtype dt);
/* The same, f32 results held to 2e-5 by assert_close_scaled when scaled. */
void forward_case_tol(const ccase *c, int kind, nb_dtype dt, bool scaled);

#endif
