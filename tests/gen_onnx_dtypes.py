#!/usr/bin/python3
"""Writes tests/storage_dtypes/: small files for the 'storage_dtypes' suite
(tests/test_storage_dtypes.c), checking nabla's storage dtypes (int8, int16,
uint16, uint32, uint64, float16, bfloat16) against NumPy.

    /usr/bin/python3 tests/gen_onnx_dtypes.py

model.onnx      an ONNX model (opset 13) with INT8 and FLOAT16 inputs and
                INT8, UINT32, FLOAT16 and BFLOAT16 initializers in each of
                the encodings onnx.proto allows (int32_data packing, raw_data,
                uint64_data); its nodes:
                  wf  = Cast(w, to=FLOAT)         float32   (graph output; first, so
                                                  that w gets a graph node of its own)
                  m   = Max(x, w)                 int8      (graph output)
                  e   = Equal(x, w)               bool      (graph output)
                  k   = Mul(x, x)                 int8, wraps; no declared type
                  k32 = Cast(k, to=INT32)         int32     (graph output)
                  s   = Add(h, b)                 float16   (graph output)
                  c   = Cast(h, to=FLOAT)         float32   (graph output)
                  p   = Pow(c, u)                 float32, u uint32 (graph output)
                  bf  = Cast(bb, to=FLOAT)        float32, bb bfloat16 (graph output)
                  hb  = Cast(c, to=BFLOAT16)      bfloat16  (graph output)
                  ww  = Add(w, w)                 int8, wraps; constant; no declared type
                  w32 = Cast(ww, to=INT32)        int32     (graph output)
                  am  = ArgMax(big, axis=0)       int64 index 150 (not narrowed to int8)
                  amf = Cast(am, to=FLOAT)        float32   (graph output)
input_0.npy, input_1.npy      x (int8) and h (float16)
output_K.npy    NumPy's results in the declared dtypes (hb: its bits, uint16,
                rounded to nearest even in this script)
npy_<T>.npy     a few values of each NumPy-supported storage dtype, as NumPy
                writes them (the suite loads them and saves them back
                byte-identical)

The protobuf wire format is written by hand (as tests/gen_onnx_bad.py does)
so that no onnx package is needed. Everything is fixed: the files depend
only on this script and NumPy.
"""
import os
import struct

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "storage_dtypes")

FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64 = 1, 2, 3, 4, 5, 6, 7
BOOL, FLOAT16, DOUBLE, UINT32, UINT64, BFLOAT16 = 9, 10, 11, 12, 13, 16


# ---- wire format -----------------------------------------------------------
def varint(v):
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def f_varint(num, v):
    return varint(num << 3) + varint(v)


def f_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint((num << 3) | 2) + varint(len(b)) + b


def f_packed(num, values):
    return f_bytes(num, b"".join(varint(v) for v in values))


# ---- ONNX messages -------------------------------------------------------------
def tensor(name, dtype, dims, raw=None, int32s=None, uint64s=None):
    """TensorProto: dims 1, data_type 2, int32_data 5, name 8, raw_data 9,
    uint64_data 11."""
    b = b"".join(f_varint(1, d) for d in dims) + f_varint(2, dtype) + f_bytes(8, name)
    if int32s is not None:
        b += f_packed(5, int32s)
    if uint64s is not None:
        b += f_packed(11, uint64s)
    if raw is not None:
        b += f_bytes(9, raw)
    return b


def value_info(name, elem_type, dims):
    """ValueInfoProto{name 1, type 2: TypeProto{tensor_type 1: {elem_type 1,
    shape 2: {dim 1: {dim_value 1}}}}}."""
    shape = b"".join(f_bytes(1, f_varint(1, d)) for d in dims)
    tt = f_varint(1, elem_type) + f_bytes(2, shape)
    return f_bytes(1, name) + f_bytes(2, f_bytes(1, tt))


def attr_int(name, v):
    """AttributeProto{name 1, i 3, type 20 (INT = 2)}."""
    return f_bytes(1, name) + f_varint(3, v) + f_varint(20, 2)


def node(op, inputs, outputs, attrs=()):
    """NodeProto{input 1, output 2, name 3, op_type 4, attribute 5}."""
    b = b"".join(f_bytes(1, i) for i in inputs) + b"".join(f_bytes(2, o) for o in outputs)
    b += f_bytes(3, outputs[0]) + f_bytes(4, op)
    return b + b"".join(f_bytes(5, a) for a in attrs)


def model(nodes, inits, inputs, outputs):
    """GraphProto{node 1, name 2, initializer 5, input 11, output 12} in a
    ModelProto{ir_version 1, opset_import 8, graph 7}."""
    g = b"".join(f_bytes(1, n) for n in nodes) + f_bytes(2, "storage_dtypes")
    g += b"".join(f_bytes(5, t) for t in inits)
    g += b"".join(f_bytes(11, v) for v in inputs) + b"".join(f_bytes(12, v) for v in outputs)
    opset = f_bytes(1, "") + f_varint(2, 13)
    return f_varint(1, 8) + f_bytes(8, opset) + f_bytes(7, g)


def f16_bits(a):
    return [int(v) for v in np.asarray(a, np.float16).view(np.uint16).ravel()]


def bf16_bits_rne(a):
    """float32 -> bfloat16 bits, round to nearest even (finite values)."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def main():
    os.makedirs(OUT, exist_ok=True)
    x = np.array([[-128, -3, 0], [5, 100, 127]], np.int8)
    h = np.array([[0.5, -1.25, 65504], [3.140625, -0.0001, 2]], np.float16)
    w = np.array([7, -3, -100], np.int8)
    b = np.array([0.25, 1, -65504], np.float16)
    u = np.array([2, 0, 3], np.uint32)
    bb_bits = np.array([0x3FC0, 0xC120, 0x7F80], np.uint16)  # 1.5, -10, inf
    big = (np.arange(200) % 50).astype(np.int8)
    big[150] = 127

    inits = [
        tensor("w", INT8, [3], int32s=[int(v) for v in w]),          # int32_data packing
        tensor("b", FLOAT16, [3], int32s=f16_bits(b)),               # float16 bits in int32_data
        tensor("u", UINT32, [3], uint64s=[int(v) for v in u]),       # uint64_data
        tensor("bb", BFLOAT16, [3], raw=bb_bits.tobytes()),          # raw_data
        tensor("big", INT8, [200], raw=big.tobytes()),
    ]
    nodes = [
        node("Cast", ["w"], ["wf"], [attr_int("to", FLOAT)]),
        node("Max", ["x", "w"], ["m"]),
        node("Equal", ["x", "w"], ["e"]),
        node("Mul", ["x", "x"], ["k"]),
        node("Cast", ["k"], ["k32"], [attr_int("to", INT32)]),
        node("Add", ["h", "b"], ["s"]),
        node("Cast", ["h"], ["c"], [attr_int("to", FLOAT)]),
        node("Pow", ["c", "u"], ["p"]),
        node("Cast", ["bb"], ["bf"], [attr_int("to", FLOAT)]),
        node("Cast", ["c"], ["hb"], [attr_int("to", BFLOAT16)]),
        node("Add", ["w", "w"], ["ww"]),
        node("Cast", ["ww"], ["w32"], [attr_int("to", INT32)]),
        node("ArgMax", ["big"], ["am"], [attr_int("axis", 0), attr_int("keepdims", 0)]),
        node("Cast", ["am"], ["amf"], [attr_int("to", FLOAT)]),
    ]
    inputs = [value_info("x", INT8, [2, 3]), value_info("h", FLOAT16, [2, 3])]
    outputs = [
        value_info("m", INT8, [2, 3]),
        value_info("e", BOOL, [2, 3]),
        value_info("k32", INT32, [2, 3]),
        value_info("s", FLOAT16, [2, 3]),
        value_info("c", FLOAT, [2, 3]),
        value_info("p", FLOAT, [2, 3]),
        value_info("bf", FLOAT, [3]),
        value_info("hb", BFLOAT16, [2, 3]),
        value_info("w32", INT32, [3]),
        value_info("amf", FLOAT, []),
        value_info("wf", FLOAT, [3]),
    ]
    with open(os.path.join(OUT, "model.onnx"), "wb") as f:
        f.write(model(nodes, inits, inputs, outputs))

    c = h.astype(np.float32)
    with np.errstate(over="ignore"):
        expect = [
            np.maximum(x, w),
            x == w,
            (x * x).astype(np.int32),  # int8 products wrap
            h + b,                     # float16 arithmetic (inf where it overflows)
            c,
            np.power(c, u.astype(np.float32)),
            bb_bits.astype(np.uint32).__lshift__(16).view(np.float32),
            bf16_bits_rne(c),
            (w + w).astype(np.int32),  # int8 sums wrap
            np.array(np.argmax(big), np.float32),
            w.astype(np.float32),
        ]
    np.save(os.path.join(OUT, "input_0.npy"), x)
    np.save(os.path.join(OUT, "input_1.npy"), h)
    for k, e in enumerate(expect):
        np.save(os.path.join(OUT, "output_%d.npy" % k), e)

    samples = {
        "i8": np.array([-128, -1, 0, 127], np.int8),
        "i16": np.array([-32768, -300, 0, 32767], np.int16),
        "u16": np.array([0, 1, 40000, 65535], np.uint16),
        "u32": np.array([[0, 7], [3000000000, 4294967295]], np.uint32),
        "u64": np.array([0, 1 << 53 | 1, 1 << 63, (1 << 64) - 1], np.uint64),
        "f16": np.array([0.0, -0.0, 65504, 2.0 ** -24, -np.inf, np.nan], np.float16),
    }
    for name, a in samples.items():
        np.save(os.path.join(OUT, "npy_%s.npy" % name), a)


if __name__ == "__main__":
    main()
