/* Status codes and the thread-local error message.
 *
 * Every fallible function in nabla returns an nb_status. When it is not NB_OK,
 * nb_last_error() holds a message for the calling thread that names what was
 * wrong ("npy_load 'x.npy': header says 3 dims but shape has 2").
 */
#ifndef NB_STATUS_H
#define NB_STATUS_H

typedef enum nb_status {
    NB_OK = 0,
    NB_ERR_ARG,         /* a bad argument: out-of-range axis, NULL pointer */
    NB_ERR_SHAPE,       /* shapes that do not fit together */
    NB_ERR_DTYPE,       /* dtypes that do not fit together or are unsupported */
    NB_ERR_ALLOC,       /* an allocation failed */
    NB_ERR_IO,          /* a file could not be opened, read or written */
    NB_ERR_FORMAT,      /* a file's contents are malformed */
    NB_ERR_NOT_FOUND,   /* no node, input or file by that name */
    NB_ERR_NO_GRAD,     /* an op on the gradient path has no VJP rule */
    NB_ERR_UNSUPPORTED, /* an op or feature this backend does not have */
    NB_ERR_STATE,       /* the object is in a failed state (sticky error) */
} nb_status;

/* A short name for a status ("shape error"). */
const char *nb_status_str(nb_status s);

/* Set the calling thread's error message (printf-style) and return s. */
nb_status nb_error(nb_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The calling thread's last error message ("" if none). */
const char *nb_last_error(void);

/* Forget the calling thread's last error message. */
void nb_clear_error(void);

#endif
