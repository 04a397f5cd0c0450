/* PLACEHOLDER: being written. */
#include "kernels/cpu.h"

nb_status nb_cpu_gather(const nb_kernel_call *c) { return nb_error(NB_ERR_UNSUPPORTED, "%s: not implemented yet", nb_op_name(c->op)); }
nb_status nb_cpu_dropout(const nb_kernel_call *c) { return nb_error(NB_ERR_UNSUPPORTED, "%s: not implemented yet", nb_op_name(c->op)); }
