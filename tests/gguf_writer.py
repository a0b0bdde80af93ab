"""Write GGUF files for tests: valid ones, and deliberately broken ones.

Written from the GGUF spec alone (it imports nothing from llmcli), so reader and writer
cannot share a bug; test_gguf.py also checks its output against the `gguf` package.

Valid files:

    from gguf_writer import GGUFWriter, Typed, VT
    w = GGUFWriter()                           # version 3, default alignment (32)
    w.add("general.architecture", "llama")     # str -> STRING, bool -> BOOL,
    w.add("llama.block_count", 2)              # int -> INT32 (INT64 if it does not fit),
    w.add("x.eps", 1e-5)                       # float -> FLOAT32
    w.add("x.n", Typed(VT.UINT64, 5))          # any exact type
    w.add("x.ids", np.arange(3, dtype=np.int16))   # numeric array, element type from dtype
    w.add("x.words", ["a", "b"])               # list -> ARRAY; element type from the items
    w.add("x.nested", Typed(VT.ARRAY, [[1, 2], [3]], VT.ARRAY))
    w.add_tensor("w", np.zeros((4, 32), np.float32))         # F32/F16 from an array;
    w.add_tensor("q", raw_bytes, ggml_type=2, dims=(32, 4))  # or raw blocks + ggml dims
    w.write(path)  /  w.to_bytes()

Dims are ggml order (dims[0] is the contiguous axis): a NumPy array of shape (rows, cols)
becomes dims (cols, rows). Tensor data is laid out in the order added, each aligned.

Broken files: every field a reader checks can be forced.

    GGUFWriter(magic=b"tjgg", version=99, n_kv=2**60, n_tensors=..., layout_alignment=1)
    w.add_raw(key, type_number, payload)       # any value type number, raw value bytes
    w.add("k", Typed(VT.BOOL, 2))              # out-of-range values are written as given
    w.add("k", b"\\xff")                        # bytes -> STRING with those exact bytes
    w.add_tensor(name, data, ggml_type=99, dims=(0,), n_dims=5, offset=7)
    w.to_bytes()[:100]                         # truncation
    helpers u32(), u64(), i32(), string() pack raw fields for add_raw payloads.
"""
import struct
from enum import IntEnum

import numpy as np

DEFAULT_ALIGNMENT = 32


class VT(IntEnum):
    """GGUF metadata value types."""
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


_FORMATS = {VT.UINT8: "<B", VT.INT8: "<b", VT.UINT16: "<H", VT.INT16: "<h",
            VT.UINT32: "<I", VT.INT32: "<i", VT.FLOAT32: "<f", VT.BOOL: "<B",
            VT.UINT64: "<Q", VT.INT64: "<q", VT.FLOAT64: "<d"}
_DTYPE_TYPES = {np.dtype(np.uint8): VT.UINT8, np.dtype(np.int8): VT.INT8,
                np.dtype(np.uint16): VT.UINT16, np.dtype(np.int16): VT.INT16,
                np.dtype(np.uint32): VT.UINT32, np.dtype(np.int32): VT.INT32,
                np.dtype(np.float32): VT.FLOAT32, np.dtype(np.bool_): VT.BOOL,
                np.dtype(np.uint64): VT.UINT64, np.dtype(np.int64): VT.INT64,
                np.dtype(np.float64): VT.FLOAT64}
_TENSOR_TYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}


class Typed:
    """A value with an explicit GGUF type; `element` is the item type of an ARRAY."""

    def __init__(self, vtype, value, element=None):
        self.vtype, self.value, self.element = VT(vtype), value, element


def u32(n):
    return struct.pack("<I", n)


def u64(n):
    return struct.pack("<Q", n)


def i32(n):
    return struct.pack("<i", n)


def string(s, length=None):
    """A GGUF string; `length` overrides the stored length (the bytes stay as given)."""
    raw = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return u64(len(raw) if length is None else length) + raw


def _infer(value):
    if isinstance(value, Typed):
        return value
    if isinstance(value, np.generic):
        return Typed(_DTYPE_TYPES[value.dtype], value.item())
    if isinstance(value, bool):
        return Typed(VT.BOOL, int(value))
    if isinstance(value, int):
        return Typed(VT.INT32 if -2**31 <= value < 2**31 else VT.INT64, value)
    if isinstance(value, float):
        return Typed(VT.FLOAT32, value)
    if isinstance(value, (str, bytes)):
        return Typed(VT.STRING, value)
    if isinstance(value, np.ndarray):
        return Typed(VT.ARRAY, value, _DTYPE_TYPES[value.dtype])
    if isinstance(value, (list, tuple)):
        element = _infer(value[0]).vtype if value else VT.INT32
        return Typed(VT.ARRAY, list(value), element)
    raise TypeError(f"cannot infer a GGUF type for {value!r}")


def encode_value(value):
    """The bytes of a value (without its type tag)."""
    typed = _infer(value)
    if typed.vtype == VT.STRING:
        return string(typed.value)
    if typed.vtype != VT.ARRAY:
        return struct.pack(_FORMATS[typed.vtype], typed.value)
    element = VT(typed.element)
    items = list(typed.value)
    out = [u32(element), u64(len(items))]
    for item in items:
        if element == VT.ARRAY:
            out.append(encode_value(item if isinstance(item, Typed) else
                                    Typed(VT.ARRAY, item, _infer(item).element)))
        else:
            out.append(encode_value(Typed(element, item.item() if isinstance(item, np.generic)
                                          else item)))
    return b"".join(out)


class GGUFWriter:
    """Collects key/values and tensors, then lays out one GGUF file (see module doc)."""

    def __init__(self, *, version=3, alignment=None, magic=b"GGUF", n_kv=None,
                 n_tensors=None, layout_alignment=None, reverse_tensor_infos=False):
        self.version, self.magic = version, magic
        # list the tensor infos last-first while the data stays in the order added, so
        # the offsets in the info table decrease (the spec does not require an order)
        self.reverse_tensor_infos = reverse_tensor_infos
        self.n_kv, self.n_tensors = n_kv, n_tensors
        self.kvs = []      # (key bytes, type number, payload bytes)
        self.tensors = []  # dicts: name, n_dims, dims, ggml_type, offset, data
        if alignment is not None:
            self.add("general.alignment", Typed(VT.UINT32, alignment))
        self.layout_alignment = layout_alignment or alignment or DEFAULT_ALIGNMENT

    def add(self, key, value):
        typed = _infer(value)
        self.add_raw(key, typed.vtype, encode_value(typed))

    def add_raw(self, key, type_number, payload):
        """A key/value with any type number and raw value bytes; `key` may be bytes."""
        key = key.encode("utf-8") if isinstance(key, str) else key
        self.kvs.append((key, type_number, bytes(payload)))

    def add_tensor(self, name, data, *, ggml_type=None, dims=None, n_dims=None,
                   offset=None):
        """`data`: a float32/float16 array, or raw bytes with ggml_type and dims given.
        `offset` (relative to the data section) overrides the computed one; the data
        itself is still written at the computed place."""
        if isinstance(data, np.ndarray) and ggml_type is None:
            ggml_type = _TENSOR_TYPES[data.dtype]
        if dims is None:
            dims = tuple(reversed(data.shape))
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        self.tensors.append({"name": name, "n_dims": len(dims) if n_dims is None else n_dims,
                             "dims": tuple(dims), "ggml_type": ggml_type, "offset": offset,
                             "data": raw})

    def to_bytes(self):
        align = self.layout_alignment
        offsets, data_offset = [], 0
        for tensor in self.tensors:
            offsets.append(data_offset if tensor["offset"] is None else tensor["offset"])
            data_offset = _align(data_offset + len(tensor["data"]), align)
        out = [self.magic, u32(self.version),
               u64(len(self.tensors) if self.n_tensors is None else self.n_tensors),
               u64(len(self.kvs) if self.n_kv is None else self.n_kv)]
        for key, type_number, payload in self.kvs:
            out += [string(key), u32(type_number), payload]
        infos = list(zip(self.tensors, offsets))
        for tensor, offset in reversed(infos) if self.reverse_tensor_infos else infos:
            out += [string(tensor["name"]), u32(tensor["n_dims"])]
            out += [u64(d) for d in tensor["dims"]]
            out += [u32(tensor["ggml_type"]), u64(offset)]
        head = b"".join(out)
        if not self.tensors:
            return head
        data = bytearray()
        for tensor in self.tensors:
            data += tensor["data"]
            data += b"\0" * (_align(len(data), align) - len(data))
        return head + b"\0" * (_align(len(head), align) - len(head)) + bytes(data)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())
        return path


def _align(n, alignment):
    return -(-n // alignment) * alignment
