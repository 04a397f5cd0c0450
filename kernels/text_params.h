/* Parameters of the text ops (kernels/tfidf.c). */
#ifndef NB_TEXT_PARAMS_H
#define NB_TEXT_PARAMS_H

#include <stdint.h>

#define NB_TFIDF_MAX_N 32 /* longest n-gram */

/* TFIDF (tokens i32/i64 (C) or (B, C)) -> f32 (out_size) or (B, out_size):
 * ONNX TfIdfVectorizer over an integer pool. For each row, every n-gram
 * x[i], x[i+d], ..., x[i+(n-1)d] with min_n <= n <= max_n and skip distance
 * d in 1..max_skip+1 (unigrams once, at d = 1) that is in the pool adds 1 to
 * count[column of that n-gram]; the output is count (TF), weight * (count > 0)
 * (IDF) or weight * count (TFIDF), weight[column] being 1 without weights.
 *
 * The struct is followed by data[]: for n = 1..max_n, table n (at
 * data[offset[n]], count[n] rows of n tokens then the column, rows sorted by
 * their tokens, no two alike), then out_size weights (doubles, at
 * data[weights_off]) when has_weights. nb_tfidf_params_size gives the
 * total byte size. */
typedef struct nb_tfidf_params {
    int64_t min_n, max_n, max_skip, out_size;
    int mode; /* 0 TF, 1 IDF, 2 TFIDF */
    int has_weights;
    int64_t count[NB_TFIDF_MAX_N + 1];
    int64_t offset[NB_TFIDF_MAX_N + 1];
    int64_t weights_off;
    int64_t n_data; /* int64 slots in data[] */
    int64_t data[];
} nb_tfidf_params;

#endif
