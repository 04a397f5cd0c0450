/* In-memory classification datasets and a shuffling batch iterator.
 *
 * A dataset holds every sample as one row of an f32 matrix (images scaled to
 * [0, 1], as torchvision's ToTensor does) and its class as an i64 label.
 * Batches are gathered by index into caller buffers, ready to feed a session.
 */
#ifndef NB_DATASET_H
#define NB_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/dtype.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"

typedef struct nb_dataset {
    nb_tensor images;  /* f32 (n, features), values in [0, 1] */
    nb_tensor labels;  /* i64 (n,), values in [0, classes) */
    int64_t n;         /* samples */
    int64_t features;  /* values per sample (784 for 28x28 images) */
    int64_t classes;   /* label values lie in [0, classes) */
} nb_dataset;

/* Make a dataset from u8 tensors: images (n, d1, ...) scaled by 1/255 and
 * flattened to (n, d1*...), labels (n,) each below `classes`. `what` names
 * the source in messages. Counts that differ give NB_ERR_SHAPE, a label out
 * of range NB_ERR_FORMAT. */
nb_status nb_dataset_from_u8(const char *what, const nb_tensor *images, const nb_tensor *labels,
                             int64_t classes, nb_dataset *out);

/* Load the IDX pair <prefix>-images-idx3-ubyte[.gz] and <prefix>-labels-idx1-ubyte[.gz]
 * from dir (the .gz name is tried first), e.g. prefix "train" or "t10k" for
 * (Fashion-)MNIST. */
nb_status nb_dataset_load_idx(const char *dir, const char *prefix, int64_t classes,
                              nb_dataset *out);

/* Fashion-MNIST's training (60000) or test (10000) split from dir. */
nb_status nb_fashion_mnist_load(const char *dir, bool train, nb_dataset *out);

void nb_dataset_free(nb_dataset *d);

/* Copy the samples idx[0..count) into x (count * features values of dtype
 * dt, f32 or f64, row-major) and their labels into y (count i64 values). */
nb_status nb_dataset_gather(const nb_dataset *d, const int64_t *idx, int64_t count, nb_dtype dt,
                            void *x, int64_t *y);

/* ---- batches ---------------------------------------------------------- */

/* Walks [0, n) in batches of `batch` indices; the last batch of an epoch
 * holds the n % batch left over (unless drop_last). With shuffle, each epoch
 * visits a fresh permutation (Fisher-Yates driven by an nb_rng seeded once,
 * so a seed fixes the order of every epoch); without, 0, 1, ..., n-1. */
typedef struct nb_batcher {
    int64_t n, batch;
    bool shuffle, drop_last;
    int64_t *order; /* this epoch's permutation */
    int64_t pos;    /* next position in order */
    nb_rng rng;
} nb_batcher;

nb_status nb_batcher_init(nb_batcher *b, int64_t n, int64_t batch, bool shuffle, bool drop_last,
                          uint64_t seed);
/* Start an epoch: draw a new permutation (shuffle) and rewind. */
void nb_batcher_start_epoch(nb_batcher *b);
/* The next batch: its size (0 when the epoch is done) and its indices in *idx
 * (valid until the next start_epoch). */
int64_t nb_batcher_next(nb_batcher *b, const int64_t **idx);
/* Batches per epoch. */
int64_t nb_batcher_num_batches(const nb_batcher *b);
void nb_batcher_free(nb_batcher *b);

#endif
