/* ONNX converters of the linear algebra ops beyond MatMul: Det (opset 11),
 * one nabla DET node (LU with partial pivoting, kernels/linalg.c) over the
 * last two dims, for f32 and f64 inputs of shape (..., n, n). */
#include "models/onnx_ops_util.h"

static nb_status cv_det(onnx_node_ctx *c)
{
    IN(x, 0);
    nb_dtype dt = nb_node_dtype(x);
    if (dt != NB_F32 && dt != NB_F64)
        return onnx_fail(c, NB_ERR_DTYPE, "input dtype %s is not supported (f32 or f64)",
                         nb_dtype_name(dt));
    int r = nb_node_ndim(x);
    if (r < 2 || nb_node_shape(x)[r - 1] != nb_node_shape(x)[r - 2])
        return onnx_fail(c, NB_ERR_SHAPE, "input %s must be square matrices (..., n, n)",
                         nb_node_shape_str(x));
    return onnx_finish(c, 0, nb_det(c->g, x));
}

const onnx_op_entry nb_onnx_ops_linalg[] = {
    {NULL, "Det", 11, 0, cv_det},
    {NULL, NULL, 0, 0, NULL},
};
