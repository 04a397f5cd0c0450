/* Private to the CPU backend: what cpu_backend.c needs from matmul.c. */
#ifndef NB_MATMUL_INTERNAL_H
#define NB_MATMUL_INTERNAL_H

#include <stddef.h>

#include "kernels/backend.h"

/* Scratch bytes a MATMUL call needs to copy inputs whose last two dims are
 * neither row- nor column-major (0 for other ops or viewable inputs). */
size_t nb_cpu_matmul_workspace(const nb_kernel_call *c);

#endif
