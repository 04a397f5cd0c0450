/* PLACEHOLDER: being written. */
#include "graph/graph_impl.h"
