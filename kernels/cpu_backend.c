/* The CPU backend table: every op with a kernel points at its family
 * function (cpu.h), chosen by the kind column of NB_OP_LIST. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/matmul_internal.h"

#define KERNEL_LEAF NULL
#define KERNEL_UNARY nb_cpu_unary
#define KERNEL_CAST nb_cpu_cast
#define KERNEL_BINARY nb_cpu_binary
#define KERNEL_WHERE nb_cpu_where
#define KERNEL_MATMUL nb_cpu_matmul
#define KERNEL_REDUCE nb_cpu_reduce
#define KERNEL_SOFTMAX nb_cpu_softmax
#define KERNEL_MOVE nb_cpu_move
#define KERNEL_CONV nb_cpu_conv
#define KERNEL_POOL nb_cpu_pool
#define KERNEL_NORM nb_cpu_norm
#define KERNEL_GATHER nb_cpu_gather
#define KERNEL_DROPOUT nb_cpu_dropout
#define KERNEL_LINALG nb_cpu_linalg
#define KERNEL_TEXT nb_cpu_tfidf
#define KERNEL_FUSED cpu_fused

/* The fused ops compile makes (graph/fuse.c). */
static nb_status cpu_fused(const nb_kernel_call *c)
{
    if (c && c->op == NB_OP_CONV_ADD)
        return nb_cpu_conv(c);
    return nb_cpu_conv_block(c);
}

/* NABLA_FUSE=0 in the environment turns the fusions off (read once). */
static bool cpu_fusable(const nb_kernel_call *c)
{
    static atomic_int env; /* 0: not read yet, 1: on, 2: off */
    if (atomic_load(&env) == 0) {
        const char *e = getenv("NABLA_FUSE");
        atomic_store(&env, e && strcmp(e, "0") == 0 ? 2 : 1);
    }
    if (!c || atomic_load(&env) == 2)
        return false;
    if (c->op == NB_OP_CONV_ADD)
        return nb_cpu_conv_add_fusable(c);
    return c->op == NB_OP_CONV_BLOCK && nb_cpu_conv_block_fusable(c);
}

/* MATMUL asks for scratch to copy inputs BLAS cannot read in place, the
 * convolutions for their im2col-style buffers, the norms' affine gradients
 * for per-thread partial sums. */
static size_t cpu_workspace_size(const nb_kernel_call *call)
{
    if (!call)
        return 0;
    if (call->op == NB_OP_MATMUL)
        return nb_cpu_matmul_workspace(call);
    if (call->op == NB_OP_CONV2D || call->op == NB_OP_CONV_TRANSPOSE2D ||
        call->op == NB_OP_CONV2D_GRAD_WEIGHT || call->op == NB_OP_CONV_ADD)
        return nb_cpu_conv_workspace(call);
    if (call->op == NB_OP_LAYER_NORM_GRAD_AFFINE || call->op == NB_OP_RMS_NORM_GRAD_AFFINE ||
        call->op == NB_OP_GROUP_NORM_GRAD_AFFINE)
        return nb_cpu_norm_workspace(call);
    if (call->op == NB_OP_CONV_BLOCK)
        return nb_cpu_conv_block_workspace(call);
    return 0;
}

static const nb_backend cpu_backend = {
    .name = "cpu",
    .device = NB_DEVICE_CPU,
    .kernels = {
#define NB_X(e, name, kind) [NB_OP_##e] = KERNEL_##kind,
        NB_OP_LIST(NB_X)
#undef NB_X
    },
    .workspace_size = cpu_workspace_size,
    .fusable = cpu_fusable,
};

const nb_backend *nb_cpu_backend(void)
{
    return &cpu_backend;
}
