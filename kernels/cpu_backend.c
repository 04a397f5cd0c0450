/* The CPU backend table: every op with a kernel points at its family
 * function (cpu.h), chosen by the kind column of NB_OP_LIST. */
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
#define KERNEL_FUSED nb_cpu_conv_block

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
        call->op == NB_OP_CONV2D_GRAD_WEIGHT)
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
    .fusable = nb_cpu_conv_block_fusable,
};

const nb_backend *nb_cpu_backend(void)
{
    return &cpu_backend;
}
