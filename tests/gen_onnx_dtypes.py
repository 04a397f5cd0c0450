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

The protobuf wire format is written by hand (tests/onnx_proto.py, shared
with tests/gen_onnx_bad.py) so that no onnx package is needed. Everything is
fixed: the files depend only on this script and NumPy.
"""
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in tests/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_proto import (BFLOAT16, BOOL, FLOAT, FLOAT16, INT8, INT32, UINT32,  # noqa: E402
                        attr_int, graph, model, node, tensor, value_info)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "storage_dtypes")


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
        node("Cast", ["w"], ["wf"], attrs=[attr_int("to", FLOAT)]),
        node("Max", ["x", "w"], ["m"]),
        node("Equal", ["x", "w"], ["e"]),
        node("Mul", ["x", "x"], ["k"]),
        node("Cast", ["k"], ["k32"], attrs=[attr_int("to", INT32)]),
        node("Add", ["h", "b"], ["s"]),
        node("Cast", ["h"], ["c"], attrs=[attr_int("to", FLOAT)]),
        node("Pow", ["c", "u"], ["p"]),
        node("Cast", ["bb"], ["bf"], attrs=[attr_int("to", FLOAT)]),
        node("Cast", ["c"], ["hb"], attrs=[attr_int("to", BFLOAT16)]),
        node("Add", ["w", "w"], ["ww"]),
        node("Cast", ["ww"], ["w32"], attrs=[attr_int("to", INT32)]),
        node("ArgMax", ["big"], ["am"], attrs=[attr_int("axis", 0), attr_int("keepdims", 0)]),
        node("Cast", ["am"], ["amf"], attrs=[attr_int("to", FLOAT)]),
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
        f.write(model(graph(nodes, inputs, outputs, inits, name="storage_dtypes"), opset=13))

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
