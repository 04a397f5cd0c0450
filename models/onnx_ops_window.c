/* placeholder: the shared window/attribute helpers of the Conv and pool converters */
#include "models/onnx_ops_util.h"
