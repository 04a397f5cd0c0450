/* ONNX converters of the region ops: RoiAlign (opsets 10 and 16), one nabla
 * ROI_ALIGN node (kernels/roi_align.c). Opset 10 has only the
 * output_half_pixel coordinates; 16 adds coordinate_transformation_mode,
 * half_pixel by default. mode is avg or max, sampling_ratio 0 adapts the
 * samples per bin to the region's size. */
#include "models/onnx_ops_util.h"

static nb_status cv_roi_align(onnx_node_ctx *c)
{
    IN(x, 0);
    IN(rois, 1);
    IN(batch, 2);
    nb_graph *g = c->g;
    nb_dtype dt = nb_node_dtype(x);
    if (dt != NB_F32 && dt != NB_F64)
        return onnx_fail(c, NB_ERR_DTYPE, "X dtype %s is not supported (f32 or f64)",
                         nb_dtype_name(dt));
    if (nb_node_ndim(x) != 4)
        return onnx_fail(c, NB_ERR_SHAPE, "X %s must be (N, C, H, W)", nb_node_shape_str(x));
    if (nb_node_ndim(rois) != 2 || nb_node_shape(rois)[1] != 4)
        return onnx_fail(c, NB_ERR_SHAPE, "rois %s must be (num_rois, 4)",
                         nb_node_shape_str(rois));
    if (nb_node_ndim(batch) != 1 || nb_node_shape(batch)[0] != nb_node_shape(rois)[0] ||
        nb_dtype_is_float(nb_node_dtype(batch)))
        return onnx_fail(c, NB_ERR_SHAPE, "batch_indices %s %s must be integers (%lld), one per roi",
                         nb_dtype_name(nb_node_dtype(batch)), nb_node_shape_str(batch),
                         (long long)nb_node_shape(rois)[0]);
    char mbuf[16], tbuf[32];
    const char *mode = onnx_attr_string(c, "mode", "avg", mbuf, sizeof mbuf);
    if (strcmp(mode, "avg") && strcmp(mode, "max"))
        return onnx_fail(c, NB_ERR_ARG, "mode '%s' is not avg or max", mode);
    const char *ct = c->opset >= 16 ? onnx_attr_string(c, "coordinate_transformation_mode",
                                                       "half_pixel", tbuf, sizeof tbuf)
                                    : "output_half_pixel";
    if (strcmp(ct, "half_pixel") && strcmp(ct, "output_half_pixel"))
        return onnx_fail(c, NB_ERR_ARG, "coordinate_transformation_mode '%s' is not half_pixel "
                         "or output_half_pixel", ct);
    nb_roi_align_args a = {
        .out_h = onnx_attr_int(c, "output_height", 1),
        .out_w = onnx_attr_int(c, "output_width", 1),
        .sampling_ratio = onnx_attr_int(c, "sampling_ratio", 0),
        .spatial_scale = onnx_attr_float(c, "spatial_scale", 1.0),
        .max_mode = !strcmp(mode, "max"),
        .half_pixel = !strcmp(ct, "half_pixel"),
    };
    if (a.out_h < 1 || a.out_w < 1)
        return onnx_fail(c, NB_ERR_ARG, "output_height %lld and output_width %lld must be >= 1",
                         (long long)a.out_h, (long long)a.out_w);
    if (a.sampling_ratio < 0)
        return onnx_fail(c, NB_ERR_ARG, "sampling_ratio %lld must be >= 0",
                         (long long)a.sampling_ratio);
    if (nb_node_dtype(rois) != dt)
        rois = nb_cast(g, rois, dt);
    if (nb_node_dtype(batch) != NB_I64)
        batch = nb_cast(g, batch, NB_I64);
    return onnx_finish(c, 0, nb_roi_align(g, x, rois, batch, &a));
}

const onnx_op_entry nb_onnx_ops_roi[] = {
    {NULL, "RoiAlign", 10, 0, cv_roi_align},
    {NULL, NULL, 0, 0, NULL},
};
