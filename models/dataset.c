/* Datasets held in memory, loading from IDX files, and the batch iterator. */
#include "models/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/idx.h"

/* Check the u8 image and label tensors fit together: labels (n,), images
 * (n, ...) with the same n, and at least one value per sample. */
static nb_status check_pair(const char *what, const nb_tensor *images, const nb_tensor *labels)
{
    char si[64], sl[64];
    nb_shape_str(images->ndim, images->shape, si, sizeof(si));
    nb_shape_str(labels->ndim, labels->shape, sl, sizeof(sl));
    if (images->dtype != NB_U8 || labels->dtype != NB_U8)
        return nb_error(NB_ERR_DTYPE, "dataset '%s': images and labels must be u8, got %s and %s",
                        what, nb_dtype_name(images->dtype), nb_dtype_name(labels->dtype));
    if (images->ndim < 2 || labels->ndim != 1)
        return nb_error(NB_ERR_SHAPE, "dataset '%s': images %s must be (n, ...) and labels %s (n,)",
                        what, si, sl);
    if (images->shape[0] != labels->shape[0])
        return nb_error(NB_ERR_SHAPE, "dataset '%s': %lld images %s but %lld labels %s", what,
                        (long long)images->shape[0], si, (long long)labels->shape[0], sl);
    if (nb_shape_numel(images->ndim - 1, images->shape + 1) < 1)
        return nb_error(NB_ERR_SHAPE, "dataset '%s': images %s have no values per sample", what,
                        si);
    return NB_OK;
}

/* x / 255 into a new (n, features) f32 tensor. */
static nb_status scale_images(const nb_tensor *images, int64_t n, int64_t features, nb_tensor *out)
{
    nb_status s = nb_tensor_empty(out, NB_F32, 2, (int64_t[]){n, features});
    if (s != NB_OK)
        return s;
    const uint8_t *src = nb_tensor_data(images);
    float *dst = nb_tensor_data(out);
    for (int64_t i = 0; i < n * features; i++)
        dst[i] = (float)src[i] / 255.0f;
    return NB_OK;
}

/* Widen the labels to i64, checking each is below classes. */
static nb_status widen_labels(const char *what, const nb_tensor *labels, int64_t n,
                              int64_t classes, nb_tensor *out)
{
    const uint8_t *src = nb_tensor_data(labels);
    for (int64_t i = 0; i < n; i++)
        if (src[i] >= classes)
            return nb_error(NB_ERR_FORMAT, "dataset '%s': label %d of sample %lld is not below %lld",
                            what, src[i], (long long)i, (long long)classes);
    nb_status s = nb_tensor_empty(out, NB_I64, 1, &n);
    if (s != NB_OK)
        return s;
    int64_t *dst = nb_tensor_data(out);
    for (int64_t i = 0; i < n; i++)
        dst[i] = src[i];
    return NB_OK;
}

nb_status nb_dataset_from_u8(const char *what, const nb_tensor *images, const nb_tensor *labels,
                             int64_t classes, nb_dataset *out)
{
    memset(out, 0, sizeof(*out));
    if (!images || !labels || !images->buf || !labels->buf || classes < 1)
        return nb_error(NB_ERR_ARG, "dataset '%s': needs images, labels and classes >= 1", what);
    if (!nb_tensor_is_contiguous(images) || !nb_tensor_is_contiguous(labels))
        return nb_error(NB_ERR_ARG, "dataset '%s': images and labels must be contiguous", what);
    nb_status s = check_pair(what, images, labels);
    if (s != NB_OK)
        return s;
    int64_t n = images->shape[0];
    int64_t features = nb_shape_numel(images->ndim - 1, images->shape + 1);
    if ((s = widen_labels(what, labels, n, classes, &out->labels)) != NB_OK)
        return s;
    if ((s = scale_images(images, n, features, &out->images)) != NB_OK) {
        nb_tensor_release(&out->labels);
        return s;
    }
    out->n = n;
    out->features = features;
    out->classes = classes;
    return NB_OK;
}

/* Load <dir>/<prefix>-<kind>-ubyte.gz, or the same name without .gz when
 * only that exists; a missing file is reported under the .gz name. */
static nb_status load_idx_file(const char *dir, const char *prefix, const char *kind,
                               nb_tensor *out)
{
    char plain[4096], gz[sizeof(plain) + 4];
    int w = snprintf(plain, sizeof(plain), "%s/%s-%s-ubyte", dir, prefix, kind);
    if (w < 0 || (size_t)w + 4 >= sizeof(plain))
        return nb_error(NB_ERR_ARG, "dataset: directory name '%s' is too long", dir);
    snprintf(gz, sizeof(gz), "%s.gz", plain);
    if (access(gz, F_OK) != 0 && access(plain, F_OK) == 0)
        return nb_idx_load(plain, out);
    return nb_idx_load(gz, out);
}

nb_status nb_dataset_load_idx(const char *dir, const char *prefix, int64_t classes,
                              nb_dataset *out)
{
    memset(out, 0, sizeof(*out));
    if (!dir || !prefix)
        return nb_error(NB_ERR_ARG, "dataset: directory and prefix must not be NULL");
    nb_tensor images = {0}, labels = {0};
    nb_status s = load_idx_file(dir, prefix, "images-idx3", &images);
    if (s == NB_OK)
        s = load_idx_file(dir, prefix, "labels-idx1", &labels);
    if (s == NB_OK) {
        char what[4200];
        snprintf(what, sizeof(what), "%s/%s", dir, prefix);
        s = nb_dataset_from_u8(what, &images, &labels, classes, out);
    }
    nb_tensor_release(&images);
    nb_tensor_release(&labels);
    return s;
}

nb_status nb_fashion_mnist_load(const char *dir, bool train, nb_dataset *out)
{
    return nb_dataset_load_idx(dir, train ? "train" : "t10k", 10, out);
}

void nb_dataset_free(nb_dataset *d)
{
    if (!d)
        return;
    nb_tensor_release(&d->images);
    nb_tensor_release(&d->labels);
    memset(d, 0, sizeof(*d));
}

nb_status nb_dataset_gather(const nb_dataset *d, const int64_t *idx, int64_t count, nb_dtype dt,
                            void *x, int64_t *y)
{
    if (dt != NB_F32 && dt != NB_F64)
        return nb_error(NB_ERR_DTYPE, "dataset_gather: dtype %s, needs f32 or f64",
                        nb_dtype_name(dt));
    const float *images = nb_tensor_data(&d->images);
    const int64_t *labels = nb_tensor_data(&d->labels);
    int64_t f = d->features;
    for (int64_t i = 0; i < count; i++) {
        int64_t k = idx[i];
        if (k < 0 || k >= d->n)
            return nb_error(NB_ERR_ARG, "dataset_gather: index %lld outside [0, %lld)",
                            (long long)k, (long long)d->n);
        const float *row = images + k * f;
        if (dt == NB_F32)
            memcpy((float *)x + i * f, row, sizeof(float) * (size_t)f);
        else
            for (int64_t j = 0; j < f; j++)
                ((double *)x)[i * f + j] = row[j];
        y[i] = labels[k];
    }
    return NB_OK;
}

/* ---- batches ---------------------------------------------------------- */

nb_status nb_batcher_init(nb_batcher *b, int64_t n, int64_t batch, bool shuffle, bool drop_last,
                          uint64_t seed)
{
    memset(b, 0, sizeof(*b));
    if (n < 0 || batch < 1)
        return nb_error(NB_ERR_ARG, "batcher: needs n >= 0 and batch >= 1, got n %lld, batch %lld",
                        (long long)n, (long long)batch);
    b->order = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!b->order)
        return nb_error(NB_ERR_ALLOC, "batcher: out of memory for %lld indices", (long long)n);
    b->n = n;
    b->batch = batch;
    b->shuffle = shuffle;
    b->drop_last = drop_last;
    nb_rng_init(&b->rng, seed);
    for (int64_t i = 0; i < n; i++)
        b->order[i] = i;
    b->pos = n; /* nothing to hand out before the first start_epoch */
    return NB_OK;
}

/* order = 0..n-1, then (shuffle) Fisher-Yates: for i = n-1 down to 1, swap
 * order[i] with order[j], j uniform in [0, i]. */
void nb_batcher_start_epoch(nb_batcher *b)
{
    for (int64_t i = 0; i < b->n; i++)
        b->order[i] = i;
    if (b->shuffle) {
        for (int64_t i = b->n - 1; i > 0; i--) {
            int64_t j = (int64_t)nb_rng_below(&b->rng, (uint64_t)i + 1);
            int64_t t = b->order[i];
            b->order[i] = b->order[j];
            b->order[j] = t;
        }
    }
    b->pos = 0;
}

int64_t nb_batcher_next(nb_batcher *b, const int64_t **idx)
{
    int64_t left = b->n - b->pos;
    int64_t count = left < b->batch ? left : b->batch;
    if (count <= 0 || (b->drop_last && count < b->batch)) {
        *idx = NULL;
        return 0;
    }
    *idx = b->order + b->pos;
    b->pos += count;
    return count;
}

int64_t nb_batcher_num_batches(const nb_batcher *b)
{
    return b->drop_last ? b->n / b->batch : (b->n + b->batch - 1) / b->batch;
}

void nb_batcher_free(nb_batcher *b)
{
    if (!b)
        return;
    free(b->order);
    memset(b, 0, sizeof(*b));
}
