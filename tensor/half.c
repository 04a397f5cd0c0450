/* placeholder */
#include "tensor/half.h"
