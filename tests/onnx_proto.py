"""Hand-written ONNX protobuf for the test-file generators (tests/gen_onnx_bad.py,
tests/gen_onnx_dtypes.py): the wire format and the few messages they write,
so that no onnx package is needed and files the onnx package would refuse to
write can be made. Field numbers are onnx.proto's; every function returns
the encoded bytes. The fields of a message are written in a fixed order, so
the generated files are byte-for-byte reproducible.

The generators import it from their own directory:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
"""
import struct

# TensorProto.DataType
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING = 1, 2, 3, 4, 5, 6, 7, 8
BOOL, FLOAT16, DOUBLE, UINT32, UINT64, COMPLEX64, BFLOAT16 = 9, 10, 11, 12, 13, 14, 16


# ---- wire format -----------------------------------------------------------
def varint(v):
    """A base-128 varint; negative values as their 64-bit two's complement."""
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
    """Field num, wire type 0 (varint)."""
    return varint(num << 3) + varint(v)


def f_bytes(num, b):
    """Field num, wire type 2 (length-delimited); a str is written as UTF-8."""
    if isinstance(b, str):
        b = b.encode()
    return varint((num << 3) | 2) + varint(len(b)) + b


def f_float(num, x):
    """Field num, wire type 5 (32-bit float)."""
    return varint((num << 3) | 5) + struct.pack("<f", x)


def f_packed(num, values):
    """Field num: packed varints."""
    return f_bytes(num, b"".join(varint(v) for v in values))


def floats_raw(xs):
    """float32 little-endian bytes (raw_data)."""
    return b"".join(struct.pack("<f", x) for x in xs)


# ---- ONNX messages -----------------------------------------------------------
def tensor(name, dtype, dims, raw=None, floats=None, int32s=None, int64s=None, uint64s=None,
           strings=None, ext=None):
    """TensorProto{dims 1, data_type 2, float_data 4, int32_data 5,
    string_data 6, int64_data 7, name 8, raw_data 9, uint64_data 11,
    external_data 13, data_location 14 (EXTERNAL = 1)}. ext is a dict of the
    external_data entries (location, offset, length)."""
    b = b"".join(f_varint(1, d) for d in dims) + f_varint(2, dtype) + f_bytes(8, name)
    if raw is not None:
        b += f_bytes(9, raw)
    if floats is not None:
        b += f_bytes(4, floats_raw(floats))
    if int32s is not None:
        b += f_packed(5, int32s)
    if int64s is not None:
        b += f_packed(7, int64s)
    if uint64s is not None:
        b += f_packed(11, uint64s)
    if strings is not None:
        b += b"".join(f_bytes(6, s) for s in strings)
    if ext is not None:
        for k, v in ext.items():
            b += f_bytes(13, f_bytes(1, k) + f_bytes(2, str(v)))
        b += f_varint(14, 1)
    return b


def dim(d):
    """TensorShapeProto.Dimension{dim_value 1 | dim_param 2 (a str)}."""
    return f_bytes(2, d) if isinstance(d, str) else f_varint(1, d)


def value_info(name, elem_type, dims):
    """ValueInfoProto{name 1, type 2: TypeProto{tensor_type 1: {elem_type 1,
    shape 2: {dim 1}}}}."""
    shape = b"".join(f_bytes(1, dim(d)) for d in dims)
    tt = f_varint(1, elem_type) + f_bytes(2, shape)
    return f_bytes(1, name) + f_bytes(2, f_bytes(1, tt))


def attr_int(name, v):
    """AttributeProto{name 1, i 3, type 20 (INT = 2)}."""
    return f_bytes(1, name) + f_varint(3, v) + f_varint(20, 2)


def attr_float(name, v):
    """AttributeProto{name 1, type 20 (FLOAT = 1), f 2}."""
    return f_bytes(1, name) + f_varint(20, 1) + f_float(2, v)


def attr_ints(name, values):
    """AttributeProto{name 1, type 20 (INTS = 7), ints 8 (packed)}."""
    return f_bytes(1, name) + f_varint(20, 7) + f_packed(8, values)


def node(op, inputs, outputs, name=None, attrs=(), domain=None):
    """NodeProto{input 1, output 2, name 3 (default: the first output),
    op_type 4, attribute 5 (AttributeProto messages), domain 7}."""
    b = b"".join(f_bytes(1, i) for i in inputs) + b"".join(f_bytes(2, o) for o in outputs)
    b += f_bytes(3, outputs[0] if name is None else name) + f_bytes(4, op)
    b += b"".join(f_bytes(5, a) for a in attrs)
    if domain is not None:
        b += f_bytes(7, domain)
    return b


def graph(nodes, inputs, outputs, inits=(), name="g"):
    """GraphProto{node 1, name 2, initializer 5, input 11, output 12}."""
    b = b"".join(f_bytes(1, n) for n in nodes) + f_bytes(2, name)
    b += b"".join(f_bytes(5, t) for t in inits)
    b += b"".join(f_bytes(11, v) for v in inputs)
    b += b"".join(f_bytes(12, v) for v in outputs)
    return b


def model(g, opset=13, ir=8, producer=None, with_graph=True):
    """ModelProto{ir_version 1, producer_name 2 and producer_version 3 (when
    producer = (name, version) is given), opset_import 8: {domain 1 (""),
    version 2}, graph 7 (unless with_graph is false)}."""
    b = f_varint(1, ir)
    if producer is not None:
        b += f_bytes(2, producer[0]) + f_bytes(3, producer[1])
    b += f_bytes(8, f_bytes(1, "") + f_varint(2, opset))
    if with_graph:
        b += f_bytes(7, g)
    return b
