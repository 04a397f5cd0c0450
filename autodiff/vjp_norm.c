/* PLACEHOLDER: being written. */
#include "autodiff/vjp.h"

void nb_vjp_register_norm(nb_vjp_fn *table) { (void)table; }
