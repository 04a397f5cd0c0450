/* PLACEHOLDER: being written. */
#include "autodiff/vjp.h"

void nb_vjp_register_pool(nb_vjp_fn *table) { (void)table; }
