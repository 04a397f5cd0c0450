#include "kernels/ops.h"

static const char *const op_names[NB_OP_COUNT] = {
#define NB_X(e, name, kind) [NB_OP_##e] = name,
    NB_OP_LIST(NB_X)
#undef NB_X
};

const char *nb_op_name(nb_op op)
{
    if ((int)op < 0 || op >= NB_OP_COUNT)
        return "?";
    return op_names[op];
}
