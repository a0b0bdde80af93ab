"""A strict GGUF reader: metadata, tensor infos, and tensor data as zero-copy views.

File layout (GGUF v2/v3, little-endian; v3 only added big-endian files, which we refuse):

    magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
    n_kv x       key: string | value type u32 | value
    n_tensors x  name: string | n_dims u32 | dims u64[n_dims] | ggml type u32 | offset u64
    padding to `general.alignment` (default 32), then the tensor data section;
    each tensor's offset is relative to the start of that section.

    string = length u64 | UTF-8 bytes;  array = element type u32 | count u64 | elements

Nothing in the file is trusted: every count, length, dimension and offset is checked
against the bytes actually left in the file *before* anything is sized from it, so a
64-byte file claiming a 2^60-byte string fails at once instead of allocating. Every
problem raises GGUFError naming the file, the key or tensor, and what is wrong.

The whole file is one read-only memory map. Tensor data and numeric metadata arrays are
views of it; string arrays (a vocabulary is ~50k-260k strings) decode on access.
"""
import contextlib
import mmap
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np

from llmcli.errors import GGUFError
from llmcli.quants import BLOCK_FORMATS, GGMLType

MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
MAX_ARRAY_NESTING = 8  # deep enough for any real file; bounds recursion on hostile ones
_INT64_MAX = (1 << 63) - 1

# Pre-GGUF llama.cpp formats, as their first four bytes appear on disk (the magic was
# written as a little-endian u32, so the letters come out reversed).
LEGACY_MAGICS = {b"lmgg": "ggml", b"fmgg": "ggmf", b"tjgg": "ggjt",
                 b"ggml": "ggml", b"ggmf": "ggmf", b"ggjt": "ggjt"}


class ValueType(IntEnum):
    """GGUF metadata value types (gguf.md `gguf_metadata_value_type`)."""
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


# Fixed-size value types -> (struct for one value, NumPy dtype for an array of them).
_FIXED = {
    ValueType.UINT8: ("<B", "<u1"), ValueType.INT8: ("<b", "<i1"),
    ValueType.UINT16: ("<H", "<u2"), ValueType.INT16: ("<h", "<i2"),
    ValueType.UINT32: ("<I", "<u4"), ValueType.INT32: ("<i", "<i4"),
    ValueType.UINT64: ("<Q", "<u8"), ValueType.INT64: ("<q", "<i8"),
    ValueType.FLOAT32: ("<f", "<f4"), ValueType.FLOAT64: ("<d", "<f8"),
    ValueType.BOOL: ("<B", "<u1"),
}
_FIXED = {t: (struct.Struct(fmt), np.dtype(dtype)) for t, (fmt, dtype) in _FIXED.items()}
# Fewest bytes one array element of each type can take (a string: its u64 length; an
# array: its type u32 + count u64), used to reject impossible counts up front.
_MIN_ELEMENT_SIZE = {**{t: d.itemsize for t, (_, d) in _FIXED.items()},
                     ValueType.STRING: 8, ValueType.ARRAY: 12}
# Smallest key/value: key length u64 + value type u32 + a 1-byte value.
_MIN_KV_SIZE = 8 + 4 + 1
# Smallest tensor info: name length u64 + n_dims u32 + one dim u64 + type u32 + offset u64.
_MIN_TENSOR_INFO_SIZE = 8 + 4 + 8 + 4 + 8

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor. `shape` is in ggml order: shape[0] (ne0) is the contiguous axis, so a
    weight matrix stored as rows of ne0 values has shape (n_in, n_out). `offset` is the
    absolute byte offset of its data in the file."""
    name: str
    type: GGMLType
    shape: tuple
    offset: int
    nbytes: int
    n_elements: int


class StringArray(Sequence):
    """A GGUF string array that decodes each string when it is read. Behaves like a
    read-only list of str (len, indexing, slicing, iteration, == with a list)."""

    def __init__(self, buf, bounds, key):
        # String i is its u64 length at bounds[i], then its bytes up to bounds[i + 1]
        # (an int64 array).
        self._buf, self._bounds, self._key = buf, bounds, key

    def __len__(self):
        return len(self._bounds) - 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} strings")
        raw = self.bytes_at(index)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFError(f"key {self._key!r}: string {index} is not valid UTF-8 "
                            f"(byte {exc.start})") from None

    def bytes_at(self, index):
        """The raw bytes of string `index`, undecoded."""
        return self._buf[int(self._bounds[index]) + 8:int(self._bounds[index + 1])]

    def raw_bytes(self):
        """The whole array as stored (each string's u64 length, then its bytes)."""
        return self._buf[int(self._bounds[0]):int(self._bounds[-1])]

    def packed(self):
        """(blob, offsets): the strings' bytes back to back, string i being
        blob[offsets[i]:offsets[i + 1]], without making 262k Python strings. GGUFError
        naming the first string that is not valid UTF-8."""
        from llmcli._kernels import pack_strings

        blob, offsets, split_char = pack_strings(self._buf, self._bounds)
        # Each string is valid UTF-8 iff the whole is and none starts inside a character.
        try:
            blob.decode("utf-8")
            whole = split_char < 0
        except UnicodeDecodeError:
            whole = False
        if not whole:
            self.tolist()  # raises, naming the bad string
        return blob, offsets

    def tolist(self):
        """Every string, decoded in one pass: joined with NUL in C, decoded once, split
        (SmolLM2's 49k tokens: ~3 ms, not the ~25 ms of one slice and decode each)."""
        from llmcli._kernels import join_strings

        joined, holding_nul = join_strings(self._buf, self._bounds, 0)
        if len(self) and not holding_nul:
            with contextlib.suppress(UnicodeDecodeError):  # then the loop below names it
                return joined.decode("utf-8").split("\x00")
        buf, bounds = self._buf, self._bounds.tolist()
        try:
            return [buf[start + 8:end].decode("utf-8") for start, end in zip(bounds, bounds[1:])]
        except UnicodeDecodeError:
            return [self[i] for i in range(len(self))]  # raises, naming the bad string

    def __iter__(self):
        return iter(self.tolist())

    def __eq__(self, other):
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and self.tolist() == list(other)

    def __repr__(self):
        return f"<StringArray {self._key!r}: {len(self)} strings>"


class GGUFFile:
    """An open GGUF file: `metadata`, `tensors` (name -> TensorInfo, file order),
    `tensor_data(name)`, and `version`, `alignment`, `data_offset`, `file_size`, `path`.
    The memory map stays open as long as this object or any view from it is alive."""

    def __init__(self, path, buf, version, metadata, tensors, alignment, data_offset):
        self.path = path
        self.version = version
        self.metadata = metadata
        self.tensors = tensors
        self.alignment = alignment
        self.data_offset = data_offset
        self.file_size = len(buf)
        self._bytes = np.frombuffer(buf, dtype=np.uint8)  # read-only: the map is read-only

    def tensor_data(self, name):
        """The raw bytes of tensor `name`: a read-only uint8 view of the mapped file."""
        info = self.tensors.get(name)
        if info is None:
            raise GGUFError(f"{self.path}: no tensor named {name!r}")
        return self._bytes[info.offset:info.offset + info.nbytes]

    def __repr__(self):
        return (f"GGUFFile({str(self.path)!r}, v{self.version}, {len(self.metadata)} keys, "
                f"{len(self.tensors)} tensors)")


def open_gguf(path):
    """Map and validate the GGUF file at `path`. Raises GGUFError on any problem."""
    path = Path(path)
    buf = _map_file(path)
    try:
        return _Parser(buf, path).parse()
    except GGUFError as exc:
        raise GGUFError(f"{path}: {exc}") from None


def _map_file(path):
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise GGUFError(f"{path}: no such file") from None
    except OSError as exc:
        raise GGUFError(f"{path}: cannot read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise GGUFError(f"{path}: is a directory, not a GGUF file")
    # Checked before open(): opening a FIFO would block, /dev/zero would never end.
    if not stat.S_ISREG(info.st_mode):
        raise GGUFError(f"{path}: not a regular file")
    if info.st_size < 4 + 4 + 8 + 8:
        what = "empty" if info.st_size == 0 else f"only {info.st_size} bytes"
        raise GGUFError(f"{path}: file is {what}, too short for a GGUF header")
    try:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise GGUFError(f"{path}: cannot map file: {exc}") from None
    _advise_huge_pages(buf)
    return buf


def _advise_huge_pages(buf):
    """Ask for 2 MiB pages. Decode streams every weight once per token, and with 4 KiB
    pages the TLB misses cost ~10% of its speed (measured on SmolLM2). Linux honours the
    advice when it reads the file into its page cache through this map (it then keeps
    the file in 2 MiB folios for every later map), not for pages already cached. A hint
    only: where it is unknown or refused nothing changes."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        with contextlib.suppress(OSError):
            buf.madvise(advice)


class _Parser:
    """Walks the header, metadata and tensor infos with a bounds-checked cursor."""

    def __init__(self, buf, path):
        self.buf, self.path, self.size, self.pos = buf, path, len(buf), 0

    # --- bounds-checked primitives -----------------------------------------------------

    def need(self, n, what):
        if n > self.size - self.pos:
            raise GGUFError(f"{what} at offset {self.pos} needs {n} bytes, but the file "
                            f"ends after {self.size - self.pos} more (truncated?)")

    def u32(self, what):
        self.need(4, what)
        (value,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return value

    def u64(self, what):
        self.need(8, what)
        (value,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return value

    def count(self, what, min_item_size):
        """A u64 count of items, each at least `min_item_size` bytes, that must fit."""
        n = self.u64(what)
        room = self.size - self.pos
        if n * min_item_size > room:
            raise GGUFError(f"{what} {n} is impossible: {n} items need at least "
                            f"{n * min_item_size} bytes, only {room} remain (truncated?)")
        return n

    def raw_string(self, what):
        length = self.u64(f"{what} length")
        if length > self.size - self.pos:
            raise GGUFError(f"{what} length {length} at offset {self.pos - 8} runs past "
                            f"the end of the file ({self.size - self.pos} bytes remain)")
        raw = self.buf[self.pos:self.pos + length]
        self.pos += length
        return raw

    def string(self, what):
        start = self.pos
        raw = self.raw_string(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFError(f"{what} at offset {start} is not valid UTF-8 "
                            f"(byte {exc.start})") from None

    # --- file structure ----------------------------------------------------------------

    def parse(self):
        version = self.header()
        n_tensors = self.count("tensor count", _MIN_TENSOR_INFO_SIZE)
        n_kv = self.count("metadata key/value count", _MIN_KV_SIZE)
        metadata = self.metadata(n_kv)
        alignment = _alignment(metadata)
        infos = [self.tensor_info(i) for i in range(n_tensors)]
        data_offset = -(-self.pos // alignment) * alignment
        if n_tensors and data_offset > self.size:
            raise GGUFError(f"tensor data section would start at offset {data_offset} "
                            f"(alignment {alignment}), past the end of the file ({self.size})")
        tensors = _place_tensors(infos, data_offset, alignment, self.size)
        return GGUFFile(self.path, self.buf, version, metadata, tensors, alignment, data_offset)

    def header(self):
        magic = bytes(self.buf[0:4])
        if magic != MAGIC:
            if magic in LEGACY_MAGICS:
                raise GGUFError(f"legacy {LEGACY_MAGICS[magic]!r} model file (pre-GGUF "
                                "llama.cpp format); convert it to GGUF")
            raise GGUFError(f"not a GGUF file (starts with {magic!r}, expected b'GGUF')")
        self.pos = 4
        version = self.u32("version")
        if version in VERSIONS:
            return version
        if version & 0xFFFF == 0 and (version >> 24) in VERSIONS:
            raise GGUFError(f"big-endian GGUF (version {version >> 24}) is not supported")
        if version == 1:
            raise GGUFError("GGUF version 1 is not supported (only versions 2 and 3); "
                            "re-convert the model with a current llama.cpp")
        raise GGUFError(f"unsupported GGUF version {version} (supported: 2, 3)")

    def metadata(self, n_kv):
        metadata = {}
        for index in range(n_kv):
            key = self.string(f"metadata key {index}")
            if key in metadata:
                raise GGUFError(f"duplicate metadata key {key!r}")
            value_type = self.value_type(self.u32(f"key {key!r} value type"), f"key {key!r}")
            metadata[key] = self.value(value_type, key, depth=0)
        return metadata

    def value_type(self, number, what):
        try:
            return ValueType(number)
        except ValueError:
            raise GGUFError(f"{what}: unknown value type {number}") from None

    def value(self, value_type, key, depth):
        if value_type == ValueType.STRING:
            return self.string(f"key {key!r} string")
        if value_type == ValueType.ARRAY:
            return self.array(key, depth)
        scalar, _ = _FIXED[value_type]
        self.need(scalar.size, f"key {key!r} value")
        (value,) = scalar.unpack_from(self.buf, self.pos)
        self.pos += scalar.size
        if value_type == ValueType.BOOL:
            return _bool(value, key)
        return value

    def array(self, key, depth):
        if depth >= MAX_ARRAY_NESTING:
            raise GGUFError(f"key {key!r}: arrays nested more than {MAX_ARRAY_NESTING} deep")
        what = f"key {key!r} array"
        element_type = self.value_type(self.u32(f"{what} element type"), what)
        n = self.count(f"{what} length", _MIN_ELEMENT_SIZE[element_type])
        if element_type == ValueType.STRING:
            return self.string_array(n, key)
        if element_type == ValueType.ARRAY:
            return [self.array(key, depth + 1) for _ in range(n)]
        _, dtype = _FIXED[element_type]
        values = np.frombuffer(self.buf, dtype=dtype, count=n, offset=self.pos)
        self.pos += n * dtype.itemsize
        if element_type == ValueType.BOOL:
            if n and values.max() > 1:
                raise GGUFError(f"{what}: bool value {values.max()} is not 0 or 1")
            values = values.view(np.bool_)
        return values

    def string_array(self, n, key):
        """Find where each of the n length-prefixed strings begins (in C: a vocabulary
        has up to 262k of them); nothing is decoded until read."""
        from llmcli._kernels import string_bounds

        bounds, bad = string_bounds(self.buf, self.pos, n)
        if bad >= 0:
            raise GGUFError(f"key {key!r}: string {bad} of {n} runs past the end of the file "
                            "(its length is wrong, or the file is truncated)")
        self.pos = int(bounds[-1])
        return StringArray(self.buf, bounds, key)

    def tensor_info(self, index):
        name = self.string(f"tensor {index} name")
        what = f"tensor {name!r}"
        n_dims = self.u32(f"{what} n_dims")
        if not 1 <= n_dims <= MAX_DIMS:
            raise GGUFError(f"{what}: n_dims {n_dims} is not between 1 and {MAX_DIMS}")
        shape = tuple(self.u64(f"{what} dimension {d}") for d in range(n_dims))
        type_number = self.u32(f"{what} type")
        offset = self.u64(f"{what} data offset")
        return _tensor_info(name, shape, type_number, offset)


def _bool(value, key):
    if value > 1:
        raise GGUFError(f"key {key!r}: bool value {value} is not 0 or 1")
    return bool(value)


def _alignment(metadata):
    if "general.alignment" not in metadata:
        return DEFAULT_ALIGNMENT
    value = metadata["general.alignment"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise GGUFError(f"key 'general.alignment' must be an integer, not {value!r}")
    if value <= 0 or value & (value - 1):
        raise GGUFError(f"key 'general.alignment' = {value} is not a power of two")
    return value


def _tensor_info(name, shape, type_number, relative_offset):
    """Check one tensor's own fields; `offset` is still relative to the data section."""
    what = f"tensor {name!r}"
    if 0 in shape:
        raise GGUFError(f"{what}: dimension {shape.index(0)} is zero (shape {list(shape)})")
    n_elements = 1
    for dim in shape:
        n_elements *= dim
    if n_elements > _INT64_MAX:
        raise GGUFError(f"{what}: shape {list(shape)} has more than 2^63 elements")
    try:
        ggml_type = GGMLType(type_number)
    except ValueError:
        raise GGUFError(f"{what}: unknown ggml tensor type {type_number}") from None
    block_size, type_size = BLOCK_FORMATS[ggml_type]
    if shape[0] % block_size:
        raise GGUFError(f"{what}: row length {shape[0]} is not a multiple of the "
                        f"{ggml_type.name} block size {block_size}")
    nbytes = n_elements // block_size * type_size
    if nbytes > _INT64_MAX:
        raise GGUFError(f"{what}: shape {list(shape)} of {ggml_type.name} needs "
                        f"{nbytes} bytes, which overflows 64 bits")
    return TensorInfo(name, ggml_type, shape, relative_offset, nbytes, n_elements)


def _place_tensors(infos, data_offset, alignment, file_size):
    """Make offsets absolute; check alignment, bounds, unique names and no overlap."""
    tensors = {}
    for info in infos:
        what = f"tensor {info.name!r}"
        if info.name in tensors:
            raise GGUFError(f"duplicate tensor name {info.name!r}")
        if info.offset % alignment:
            raise GGUFError(f"{what}: data offset {info.offset} is not a multiple of the "
                            f"alignment {alignment}")
        start = data_offset + info.offset
        if start + info.nbytes > file_size:
            raise GGUFError(f"{what}: data [{start}, {start + info.nbytes}) runs past the "
                            f"end of the file ({file_size} bytes; truncated?)")
        tensors[info.name] = TensorInfo(info.name, info.type, info.shape, start,
                                        info.nbytes, info.n_elements)
    by_offset = sorted(tensors.values(), key=lambda t: t.offset)
    for before, after in zip(by_offset, by_offset[1:]):
        if after.offset < before.offset + before.nbytes:
            raise GGUFError(f"tensors {before.name!r} and {after.name!r} overlap "
                            f"(data at {before.offset} and {after.offset})")
    return tensors
