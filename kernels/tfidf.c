/* TFIDF (TEXT kind): ONNX TfIdfVectorizer over integer tokens, the n-gram
 * tables of kernels/text_params.h. Each row of tokens is scanned for every
 * skip distance d = 1..max_skip+1 and start i; the n-grams of lengths
 * min_n..max_n taken from there (unigrams only at d = 1) are looked up by
 * binary search in the sorted table of their length, and each hit adds 1 to
 * its column. The counts then become the output by the mode (TF, IDF, TFIDF).
 * Threaded over the rows.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/text_params.h"
#include "kernels/threadpool.h"

typedef struct tfidf_plan {
    const nb_tfidf_params *p;
    const void *x;
    int i64;
    int64_t C; /* tokens per row */
    float *y;
} tfidf_plan;

static inline int64_t token(const tfidf_plan *q, int64_t i)
{
    return q->i64 ? ((const int64_t *)q->x)[i] : (int64_t)((const int32_t *)q->x)[i];
}

/* The column of the n-gram g[0..n) in table n, or -1. */
static int64_t lookup(const nb_tfidf_params *p, int64_t n, const int64_t *g)
{
    const int64_t *t = p->data + p->offset[n];
    int64_t lo = 0, hi = p->count[n], w = n + 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const int64_t *row = t + mid * w;
        int cmp = 0;
        for (int64_t k = 0; k < n && !cmp; k++)
            cmp = g[k] < row[k] ? -1 : g[k] > row[k] ? 1 : 0;
        if (!cmp)
            return row[n];
        if (cmp < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

static void tfidf_rows(void *ctx, int64_t begin, int64_t end)
{
    const tfidf_plan *q = ctx;
    const nb_tfidf_params *p = q->p;
    int64_t C = q->C, g[NB_TFIDF_MAX_N];
    for (int64_t r = begin; r < end; r++) {
        float *y = q->y + r * p->out_size;
        memset(y, 0, sizeof(float) * (size_t)p->out_size);
        int64_t base = r * C;
        /* from distance C on, no n-gram of 2 or more tokens fits the row */
        int64_t dmax = p->max_skip + 1 < (C > 1 ? C : 1) ? p->max_skip + 1 : (C > 1 ? C : 1);
        for (int64_t d = 1; d <= dmax; d++) {
            int64_t n0 = p->min_n > 1 || d == 1 ? p->min_n : 2;
            if (n0 > p->max_n)
                break;
            for (int64_t i = 0; i + (n0 - 1) * d < C; i++) {
                for (int64_t n = 1; n <= p->max_n && i + (n - 1) * d < C; n++) {
                    g[n - 1] = token(q, base + i + (n - 1) * d);
                    if (n < n0 || !p->count[n])
                        continue;
                    int64_t col = lookup(p, n, g);
                    if (col >= 0)
                        y[col] += 1.0f;
                }
            }
        }
        if (p->mode == 0)
            continue;
        const double *w = p->has_weights ? (const double *)(p->data + p->weights_off) : NULL;
        for (int64_t k = 0; k < p->out_size; k++) {
            double wk = w ? w[k] : 1.0;
            y[k] = (float)(p->mode == 1 ? (y[k] > 0 ? wk : 0.0) : wk * y[k]);
        }
    }
}

/* TEXT kind: TFIDF. */
nb_status nb_cpu_tfidf(const nb_kernel_call *c)
{
    const char *name = c ? nb_op_name(c->op) : "tfidf";
    if (!c || c->op != NB_OP_TFIDF || c->n_in != 1 || !c->in || !c->in[0] || !c->out ||
        !c->params)
        return nb_error(NB_ERR_ARG, "%s: expects TFIDF with one input, an output and parameters",
                        name);
    const nb_tfidf_params *p = c->params;
    const nb_tensor *x = c->in[0];
    nb_tensor *out = c->out;
    if ((x->dtype != NB_I32 && x->dtype != NB_I64) || out->dtype != NB_F32)
        return nb_error(NB_ERR_DTYPE, "%s: tokens must be i32 or i64 and the output f32", name);
    if (p->min_n < 1 || p->max_n < p->min_n || p->max_n > NB_TFIDF_MAX_N || p->max_skip < 0 ||
        p->out_size < 1 || p->mode < 0 || p->mode > 2)
        return nb_error(NB_ERR_ARG, "%s: bad parameters (gram lengths %lld..%lld, skip %lld, %lld columns, mode %d)",
                        name, (long long)p->min_n, (long long)p->max_n, (long long)p->max_skip,
                        (long long)p->out_size, p->mode);
    for (int64_t n = 1; n <= p->max_n; n++)
        if (p->count[n] < 0 || p->offset[n] < 0 || p->offset[n] > p->n_data ||
            p->count[n] > (p->n_data - p->offset[n]) / (n + 1))
            return nb_error(NB_ERR_ARG, "%s: the table of %lld-grams lies outside the parameters",
                            name, (long long)n);
    if (p->has_weights && (p->weights_off < 0 || p->weights_off > p->n_data - p->out_size))
        return nb_error(NB_ERR_ARG, "%s: the weights lie outside the parameters", name);
    if (x->ndim < 1 || x->ndim > 2 || out->ndim != x->ndim ||
        out->shape[out->ndim - 1] != p->out_size || (x->ndim == 2 && out->shape[0] != x->shape[0]))
        return nb_error(NB_ERR_SHAPE, "%s: tokens must be (C) or (B, C) and the output (%lld) or (B, %lld)",
                        name, (long long)p->out_size, (long long)p->out_size);
    int64_t rows = x->ndim == 2 ? x->shape[0] : 1;
    if (rows == 0)
        return NB_OK;
    nb_tensor tmp = {0};
    const nb_tensor *use;
    nb_status st = nb_cpu_contiguous_input(x, &tmp, &use);
    if (st != NB_OK)
        return st;
    tfidf_plan q = {p, nb_tensor_data(use), x->dtype == NB_I64, x->shape[x->ndim - 1],
                    nb_tensor_data(out)};
    int64_t dmax = p->max_skip + 1 < q.C ? p->max_skip + 1 : q.C;
    int64_t work = q.C * dmax * p->max_n + p->out_size;
    int64_t grain = 32768 / (work > 0 ? work : 1);
    nb_parallel_for(rows, grain < 1 ? 1 : grain, tfidf_rows, &q);
    nb_tensor_release(&tmp);
    return NB_OK;
}
