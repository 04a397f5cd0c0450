/* IDX files: the format of MNIST and Fashion-MNIST.
 *
 * An IDX file is a 4-byte magic (0x00 0x00 TYPE NDIM), NDIM big-endian u32
 * dims, then the elements in row-major order. Files may be gzip-compressed
 * (as they are distributed) or plain; both are read the same way.
 */
#ifndef NB_IDX_H
#define NB_IDX_H

#include "tensor/tensor.h"

#define NB_IDX_MAX_DIMS 4
#define NB_IDX_MAX_BYTES ((size_t)1 << 30) /* 1 GiB of elements at most */

/* Load an IDX file of unsigned bytes (type 0x08) into a new contiguous u8
 * tensor with the file's dims ((N,28,28) for images, (N,) for labels).
 * Errors name the file:
 *   NB_ERR_IO      the file cannot be opened or read ("idx 'x': No such file or directory");
 *   NB_ERR_FORMAT  bad magic, an unsupported element type, 0 or more than 4 dims,
 *                  a dim >= 2^31, more than NB_IDX_MAX_BYTES of data, or data
 *                  that is shorter or longer than the dims promise. */
nb_status nb_idx_load(const char *path, nb_tensor *out);

#endif
