/* A backend is a table of kernels, one per op, with the same signature on
 * every device. The executor (graph/) is the only caller. */
#ifndef NB_BACKEND_H
#define NB_BACKEND_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "tensor/tensor.h"

/* Memory a kernel keeps for one tape entry across runs, shared by every
 * session of the plan: e.g. weights it transformed once (Winograd) because
 * they never change. const_inputs has bit i set when input i is a CONST
 * node: the same tensor, same contents, in every run. A kernel reads and
 * fills it holding lock (sessions of one plan may run at once); once data is
 * set it stays until the plan is freed, which calls free_fn on it. */
typedef struct nb_kernel_cache {
    uint32_t const_inputs;
    pthread_mutex_t lock;
    void *data;
    const void *key; /* whatever the kernel checks data against (e.g. the weights' address) */
    void (*free_fn)(void *data);
} nb_kernel_cache;

typedef struct nb_kernel_call {
    nb_op op;
    int n_in;
    const nb_tensor *const *in; /* inputs, contiguous unless the op says otherwise */
    nb_tensor *out;             /* contiguous, already shaped and typed */
    const void *params;         /* the op's parameter struct (see ops.h), or NULL */
    void *workspace;            /* scratch of workspace_size() bytes, or NULL */
    size_t workspace_size;
    uint64_t run_index;         /* which run of the session this is (0, 1, ...):
                                   stochastic ops (DROPOUT) draw from it, so
                                   forward and backward of one run agree */
    nb_kernel_cache *cache;     /* the entry's, in a plan's sessions; NULL in direct calls */
} nb_kernel_call;

/* Run one op. On failure return a status and set nb_error() naming the op. */
typedef nb_status (*nb_kernel_fn)(const nb_kernel_call *call);

typedef struct nb_backend {
    const char *name; /* "cpu", "cuda" */
    nb_device_type device;
    nb_kernel_fn kernels[NB_OP_COUNT]; /* NULL: the backend lacks this op */
    /* Scratch bytes a call needs (NULL or 0: none). Asked once at compile time. */
    size_t (*workspace_size)(const nb_kernel_call *call);
    /* Whether the backend runs this call of a fused op (the FUSED kind of
     * NB_OP_LIST) well: compile fuses only what it accepts (NULL: nothing).
     * The call's tensors carry shapes and dtypes but no data. */
    bool (*fusable)(const nb_kernel_call *call);
} nb_backend;

/* The CPU backend (OpenBLAS + nabla's threaded loops). */
const nb_backend *nb_cpu_backend(void);

#endif
