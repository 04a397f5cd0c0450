/* PLACEHOLDER: being written. */
#include "autodiff/vjp.h"

void nb_vjp_register_conv(nb_vjp_fn *table) { (void)table; }
