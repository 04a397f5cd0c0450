#!/usr/bin/python3
"""Writes tests/onnx_bad/: small ONNX files for the 'onnx' suite.

seed_*.onnx are valid models (the suite runs them, truncates them at many
lengths and flips their bytes); every other file is malformed or hostile in
one way, named for it, and must give a clear error when loaded (or, for
bad_run_*, when run). The protobuf wire format is written by hand
(tests/onnx_proto.py) so that no onnx package is needed and so that files
the onnx package would refuse to write can be made.

Run: /usr/bin/python3 tests/gen_onnx_bad.py
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in tests/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx_proto  # noqa: E402  (tests/onnx_proto.py: the protobuf writer)
from onnx_proto import (FLOAT, INT64, STRING, attr_float, attr_ints, f_bytes,  # noqa: E402
                        floats_raw, graph, node, tensor, value_info, varint)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx_bad")


def model(g, opset=13, ir=8, with_graph=True):
    return onnx_proto.model(g, opset, ir, ("gen_onnx_bad", "1"), with_graph)


# ---- the seed: z = Relu(x + b), c = w + w (folded to a constant) ---------------
B = [0.5, -1.0, 2.0, -3.0]
W = [float(i) - 31.5 for i in range(64)]  # 256 bytes: stays in the mapped file


def seed_graph(extra_nodes=(), extra_inits=(), w_tensor=None, x_type=FLOAT, outputs=None,
               nodes=None):
    w = w_tensor if w_tensor is not None else tensor("w", FLOAT, [16, 4], raw=floats_raw(W))
    n = nodes if nodes is not None else [
        node("Add", ["x", "b"], ["y"], "add_b"),
        node("Relu", ["y"], ["z"], "relu"),
        node("Add", ["w", "w"], ["c"], "add_w"),
    ]
    outs = outputs if outputs is not None else [value_info("z", FLOAT, ["N", 4]),
                                                value_info("c", FLOAT, [16, 4])]
    return graph(list(n) + list(extra_nodes), [value_info("x", x_type, ["N", 4])], outs,
                 [tensor("b", FLOAT, [4], floats=B), w] + list(extra_inits))


def conv_bn_arrays():
    import numpy as np
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, 3).astype(np.float32)
    beta = rng.standard_normal(3).astype(np.float32)
    mean = rng.standard_normal(3).astype(np.float32)
    var = rng.uniform(0.5, 2.0, 3).astype(np.float32)
    return x, w, gamma, beta, mean, var


def conv_bn_graph():
    x, w, gamma, beta, mean, var = conv_bn_arrays()
    nodes = [node("Conv", ["x", "w"], ["y"], "conv", [attr_ints("pads", [1, 1, 1, 1])]),
             node("BatchNormalization", ["y", "gamma", "beta", "mean", "var"], ["n"], "bn",
                  [attr_float("epsilon", 1e-3)]),
             node("Relu", ["n"], ["z"], "relu")]
    inits = [tensor("w", FLOAT, list(w.shape), raw=w.tobytes())] + [
        tensor(nm, FLOAT, [3], raw=a.tobytes())
        for nm, a in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var))]
    return graph(nodes, [value_info("x", FLOAT, ["N", 2, 5, 5])],
                 [value_info("z", FLOAT, ["N", 3, 5, 5])], inits)


def conv_bn_expected():
    import numpy as np
    x, w, gamma, beta, mean, var = conv_bn_arrays()
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((2, 3, 5, 5))
    for i in range(5):
        for j in range(5):
            y[:, :, i, j] = np.einsum("nchw,ochw->no", xp[:, :, i:i + 3, j:j + 3], w)
    s = gamma / np.sqrt(var.astype(np.float64) + 1e-3)
    n = (y - mean[None, :, None, None]) * s[None, :, None, None] + beta[None, :, None, None]
    return x, np.maximum(n, 0).astype(np.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {}
    files["seed_add_relu.onnx"] = model(seed_graph())
    # the same with w in an external file beside the model
    files["seed_ext.bin"] = b"\0" * 16 + floats_raw(W)
    files["seed_ext.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [16, 4], ext={"location": "seed_ext.bin", "offset": 16,
                                                  "length": 256})))

    # Conv (no bias) -> BatchNormalization -> Relu, folded into one Conv at load;
    # the expected output is computed here with numpy
    files["seed_conv_bn.onnx"] = model(conv_bn_graph())

    # y = Reshape(x, shape) with the shape a graph input: plans per shape value
    files["seed_reshape_input.onnx"] = model(graph(
        [node("Reshape", ["x", "shape"], ["y"], "reshape")],
        [value_info("x", FLOAT, [2, 6]), value_info("shape", INT64, [2])],
        [value_info("y", FLOAT, ["a", "b"])]))

    # hostile sizes
    files["huge_dims.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [1 << 40, 1 << 40], raw=floats_raw(W))))
    files["huge_dims_overflow.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [1 << 62, 1 << 62, 4], raw=floats_raw(W))))
    files["huge_dims_no_data.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [1 << 20, 1 << 20])))
    files["negative_dim.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [-4, 16], raw=floats_raw(W))))
    files["too_many_dims.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [1] * 9 + [64], raw=floats_raw(W))))
    files["raw_length_mismatch.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [16, 4], raw=floats_raw(W[:63]))))
    files["raw_length_mismatch_small.onnx"] = model(seed_graph(
        extra_inits=[tensor("s", FLOAT, [4], raw=floats_raw(B[:3]))]))
    files["typed_count_mismatch.onnx"] = model(seed_graph(
        extra_inits=[tensor("s", FLOAT, [4], floats=B[:3])]))
    files["ext_outside_file.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [16, 4], ext={"location": "seed_ext.bin", "offset": 100,
                                                  "length": 256})))
    files["ext_length_mismatch.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [16, 4], ext={"location": "seed_ext.bin", "offset": 0,
                                                  "length": 12})))
    files["ext_parent_dir.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [16, 4], ext={"location": "../onnx_bad/seed_ext.bin"})))
    files["ext_absolute.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [16, 4], ext={"location": "/etc/passwd"})))
    files["ext_missing_file.onnx"] = model(seed_graph(
        w_tensor=tensor("w", FLOAT, [16, 4], ext={"location": "no_such_file.bin"})))
    files["string_tensor.onnx"] = model(seed_graph(
        extra_inits=[tensor("s", STRING, [2], strings=[b"a", b"b"])]))
    files["complex_tensor.onnx"] = model(seed_graph(
        extra_inits=[tensor("s", 14, [4], raw=bytes(32))]))
    files["input_complex.onnx"] = model(seed_graph(x_type=14))

    # graph structure
    files["cycle.onnx"] = model(seed_graph(nodes=[
        node("Relu", ["q"], ["p"], "relu_p"),
        node("Add", ["x", "p"], ["q"], "add_q"),
        node("Relu", ["q"], ["z"], "relu_z"),
        node("Add", ["w", "w"], ["c"], "add_w"),
    ]))
    files["missing_input.onnx"] = model(seed_graph(nodes=[
        node("Add", ["x", "nowhere"], ["y"], "add_b"),
        node("Relu", ["y"], ["z"], "relu"),
        node("Add", ["w", "w"], ["c"], "add_w"),
    ]))
    files["unknown_op.onnx"] = model(seed_graph(extra_nodes=[
        node("NoSuchOp", ["z"], ["u"], "nms_3")]), opset=11)
    files["unknown_domain_op.onnx"] = model(seed_graph(extra_nodes=[
        node("FusedThing", ["z"], ["u"], "fused_1", domain="com.example")]))
    files["produced_twice.onnx"] = model(seed_graph(extra_nodes=[
        node("Relu", ["x"], ["z"], "relu_again")]))
    files["output_not_produced.onnx"] = model(seed_graph(
        outputs=[value_info("nothing", FLOAT, [1])]))
    files["no_graph.onnx"] = model(b"", with_graph=False)
    files["opset_too_new.onnx"] = model(seed_graph(), opset=99)
    files["ir_too_new.onnx"] = model(seed_graph(), ir=99)
    files["no_op_type.onnx"] = model(seed_graph(extra_nodes=[node("", ["z"], ["u"], "empty")]))

    # wire format
    good = files["seed_add_relu.onnx"]
    files["length_past_end.onnx"] = good[:2] + f_bytes(7, b"")[:1] + varint(1 << 30) + good[2:40]
    files["group_wire_type.onnx"] = varint((7 << 3) | 3) + good
    files["garbage.onnx"] = bytes((i * 197 + 13) & 0xFF for i in range(300))
    files["empty.onnx"] = b""

    for name in os.listdir(OUT):
        if name.endswith(".onnx") or name.endswith(".bin") or name.endswith(".npy"):
            os.remove(os.path.join(OUT, name))
    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    import numpy as np
    x, z = conv_bn_expected()
    np.save(os.path.join(OUT, "seed_conv_bn_x.npy"), x)
    np.save(os.path.join(OUT, "seed_conv_bn_z.npy"), z)
    print("wrote %d files to %s" % (len(files) + 2, OUT))


if __name__ == "__main__":
    main()
