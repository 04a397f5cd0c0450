/* ONNX converters of the text ops: TfIdfVectorizer (opset 9) over integer
 * tokens (int32 or int64 input, C or (B, C)), one nabla TFIDF node whose
 * n-gram tables are built from the attributes (graph/build_text.c); the
 * tokens may be runtime values. Every attribute of the spec is honoured:
 * mode TF / IDF / TFIDF, min/max_gram_length, max_skip_count, ngram_counts,
 * ngram_indexes, pool_int64s and weights; pool_strings is not (nabla has no
 * string tensors). */
#include "models/onnx_ops_util.h"

/* A required int attribute into *v, or false after failing. */
static bool need_int(onnx_node_ctx *c, const char *name, int64_t *v)
{
    if (!onnx_attr(c, name)) {
        onnx_fail(c, NB_ERR_ARG, "attribute %s is required", name);
        return false;
    }
    *v = onnx_attr_int(c, name, 0);
    return true;
}

static nb_status cv_tfidf(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_dtype dt = nb_node_dtype(x);
    if (dt != NB_I32 && dt != NB_I64)
        return onnx_fail(c, NB_ERR_DTYPE, "input dtype %s is not supported (int32 or int64; "
                         "string tokens are not)", nb_dtype_name(dt));
    if (nb_node_ndim(x) < 1 || nb_node_ndim(x) > 2)
        return onnx_fail(c, NB_ERR_SHAPE, "input %s must be (C) or (N, C)", nb_node_shape_str(x));
    nb_tfidf_args a = {0};
    char buf[16];
    const char *mode = onnx_attr_string(c, "mode", "", buf, sizeof buf);
    a.mode = !strcmp(mode, "TF") ? 0 : !strcmp(mode, "IDF") ? 1 : !strcmp(mode, "TFIDF") ? 2 : -1;
    if (a.mode < 0)
        return onnx_fail(c, NB_ERR_ARG, "mode '%s' is not TF, IDF or TFIDF", mode);
    if (!need_int(c, "min_gram_length", &a.min_gram) ||
        !need_int(c, "max_gram_length", &a.max_gram) ||
        !need_int(c, "max_skip_count", &a.max_skip))
        return NB_ERR_ARG;
    if (onnx_attr(c, "pool_strings"))
        return onnx_fail(c, NB_ERR_UNSUPPORTED, "pool_strings is not supported (no string tensors)");
    int n = onnx_attr_ints(c, "pool_int64s", &a.pool);
    if (n < 0)
        return onnx_fail(c, NB_ERR_ARG, "attribute pool_int64s is required");
    a.pool_len = n;
    a.n_counts = onnx_attr_ints(c, "ngram_counts", &a.ngram_counts);
    if (a.n_counts < 1)
        return onnx_fail(c, NB_ERR_ARG, "attribute ngram_counts is required");
    n = onnx_attr_ints(c, "ngram_indexes", &a.ngram_indexes);
    if (n < 1)
        return onnx_fail(c, NB_ERR_ARG, "attribute ngram_indexes is required");
    a.n_indexes = n;
    n = onnx_attr_floats(c, "weights", &a.weights);
    a.n_weights = n < 0 ? 0 : n;
    if (n < 0)
        a.weights = NULL;
    return onnx_finish(c, 0, nb_tfidf(c->g, x, &a));
}

const onnx_op_entry nb_onnx_ops_text[] = {
    {NULL, "TfIdfVectorizer", 9, 0, cv_tfidf},
    {NULL, NULL, 0, 0, NULL},
};
