/* Builder of the text op TFIDF (kernels/tfidf.c): checks ONNX
 * TfIdfVectorizer's pool description and turns it into the kernel's sorted
 * n-gram tables (kernels/text_params.h). */
#include <stdlib.h>
#include <string.h>

#include "graph/graph_impl.h"
#include "kernels/text_params.h"

#define NAME(op) nb_graph_next_name(g, op)

/* Order of two n-grams (n = *ctx tokens each). */
static int cmp_row(const void *a, const void *b, void *ctx)
{
    const int64_t *x = a, *y = b, n = *(const int64_t *)ctx;
    for (int64_t k = 0; k < n; k++)
        if (x[k] != y[k])
            return x[k] < y[k] ? -1 : 1;
    return 0;
}

nb_node *nb_tfidf(nb_graph *g, nb_node *x, const nb_tfidf_args *a)
{
    nb_op op = NB_OP_TFIDF;
    if (nb_graph_check_inputs(g, op, 1, &x))
        return g->poison;
    const char *nm = NAME(op);
    if (!a)
        return nb_graph_fail(g, NB_ERR_ARG, "tfidf '%s': NULL arguments", nm);
    if (x->dtype != NB_I32 && x->dtype != NB_I64)
        return nb_graph_fail(g, NB_ERR_DTYPE, "tfidf '%s': tokens dtype %s (need i32 or i64)", nm,
                             nb_dtype_name(x->dtype));
    if (x->ndim < 1 || x->ndim > 2)
        return nb_graph_fail(g, NB_ERR_SHAPE, "tfidf '%s': tokens %s must be (C) or (B, C)", nm,
                             nb_node_shape_str(x));
    if (a->min_gram < 1 || a->max_gram < a->min_gram || a->max_gram > NB_TFIDF_MAX_N ||
        a->max_skip < 0)
        return nb_graph_fail(g, NB_ERR_ARG, "tfidf '%s': min_gram_length %lld, max_gram_length %lld, max_skip_count %lld: need 1 <= min <= max <= %d and skip >= 0",
                             nm, (long long)a->min_gram, (long long)a->max_gram,
                             (long long)a->max_skip, NB_TFIDF_MAX_N);
    if (a->mode < 0 || a->mode > 2)
        return nb_graph_fail(g, NB_ERR_ARG, "tfidf '%s': mode %d is not 0 (TF), 1 (IDF) or 2 (TFIDF)",
                             nm, a->mode);
    if (a->n_counts < 1 || !a->ngram_counts || a->n_indexes < 1 || !a->ngram_indexes ||
        a->pool_len < 0 || (a->pool_len > 0 && !a->pool))
        return nb_graph_fail(g, NB_ERR_ARG, "tfidf '%s': ngram_counts, ngram_indexes and the pool are required",
                             nm);
    int64_t out = 0;
    for (int64_t j = 0; j < a->n_indexes; j++) {
        if (a->ngram_indexes[j] < 0)
            return nb_graph_fail(g, NB_ERR_ARG, "tfidf '%s': ngram_indexes[%lld] = %lld is negative",
                                 nm, (long long)j, (long long)a->ngram_indexes[j]);
        out = a->ngram_indexes[j] + 1 > out ? a->ngram_indexes[j] + 1 : out;
    }
    /* weights are read by column, as ONNX Runtime and the ONNX reference do */
    if (a->weights && a->n_weights < out)
        return nb_graph_fail(g, NB_ERR_ARG, "tfidf '%s': %lld weights for %lld output columns",
                             nm, (long long)a->n_weights, (long long)out);
    /* sizes of the tables: n-grams of each length (all lengths number them) */
    int64_t cnt[NB_TFIDF_MAX_N + 1] = {0}, first_id[NB_TFIDF_MAX_N + 1] = {0}, id = 0, slots = 0;
    for (int i = 0; i < a->n_counts; i++) {
        int64_t n = i + 1, s = a->ngram_counts[i];
        int64_t e = i + 1 < a->n_counts ? a->ngram_counts[i + 1] : a->pool_len;
        if (s < 0 || e < s || e > a->pool_len)
            return nb_graph_fail(g, NB_ERR_ARG, "tfidf '%s': ngram_counts[%d] = %lld: the %lld-grams would span [%lld, %lld) of a pool of %lld",
                                 nm, i, (long long)s, (long long)n, (long long)s, (long long)e,
                                 (long long)a->pool_len);
        if ((e - s) % n)
            return nb_graph_fail(g, NB_ERR_ARG, "tfidf '%s': %lld pool items do not make whole %lld-grams",
                                 nm, (long long)(e - s), (long long)n);
        if (n <= NB_TFIDF_MAX_N) {
            first_id[n] = id;
            if (n >= a->min_gram && n <= a->max_gram) {
                cnt[n] = (e - s) / n;
                slots += cnt[n] * (n + 1);
            }
        }
        id += (e - s) / n;
    }
    if (id > a->n_indexes)
        return nb_graph_fail(g, NB_ERR_ARG, "tfidf '%s': %lld n-grams in the pool but %lld ngram_indexes",
                             nm, (long long)id, (long long)a->n_indexes);
    int64_t woff = slots;
    if (a->weights)
        slots += out; /* one double per column, 8 bytes like an int64 slot */
    size_t size = sizeof(nb_tfidf_params) + sizeof(int64_t) * (size_t)slots;
    nb_tfidf_params *p = calloc(1, size);
    if (!p)
        return nb_graph_fail(g, NB_ERR_ALLOC, "tfidf '%s': out of memory", nm);
    p->min_n = a->min_gram;
    p->max_n = a->max_gram;
    p->max_skip = a->max_skip;
    p->out_size = out;
    p->mode = a->mode;
    p->has_weights = a->weights != NULL;
    p->weights_off = woff;
    p->n_data = slots;
    int64_t at = 0;
    for (int64_t n = 1; n <= a->max_gram; n++) {
        p->offset[n] = at;
        p->count[n] = cnt[n];
        if (!cnt[n])
            continue;
        const int64_t *src = a->pool + a->ngram_counts[n - 1];
        int64_t *t = p->data + at;
        for (int64_t j = 0; j < cnt[n]; j++) {
            memcpy(t + j * (n + 1), src + j * n, sizeof(int64_t) * (size_t)n);
            t[j * (n + 1) + n] = a->ngram_indexes[first_id[n] + j];
        }
        qsort_r(t, (size_t)cnt[n], sizeof(int64_t) * (size_t)(n + 1), cmp_row, &n);
        for (int64_t j = 1; j < cnt[n]; j++)
            if (!cmp_row(t + (j - 1) * (n + 1), t + j * (n + 1), &n)) {
                free(p);
                return nb_graph_fail(g, NB_ERR_ARG, "tfidf '%s': the pool has a %lld-gram twice",
                                     nm, (long long)n);
            }
        at += cnt[n] * (n + 1);
    }
    if (a->weights)
        for (int64_t k = 0; k < out; k++) {
            double w = a->weights[k];
            memcpy(p->data + woff + k, &w, sizeof w);
        }
    int64_t shape[2] = {x->ndim == 2 ? x->shape[0] : out, out};
    nb_node *y = nb_graph_add_node(g, op, 1, &x, p, size, NB_F32, x->ndim,
                                   x->ndim == 2 ? shape : shape + 1);
    free(p);
    return y;
}
