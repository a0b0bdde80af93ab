"""llmcli.gguf: round trips of every value type (our test writer and the `gguf` package's
writer), the two real models against the `gguf` package's reader and the reference
notes, and a corpus of broken files that must each fail fast with a GGUFError."""
import math
import os
import time
import tracemalloc
from collections import Counter

import numpy as np
import pytest

from gguf_writer import GGUFWriter, Typed, VT, i32, string, u32, u64
from page_cache import eight_mib_gguf, file_pmd_mapped_kib, huge_pages_possible
from llmcli.errors import GGUFError
from llmcli.gguf import StringArray, TensorInfo, open_gguf
from llmcli.quants import GGMLType

UNICODE = "héllo ✓ 日本 \U0001f600"

# key -> (value written, value expected back)
SCALARS = {
    "t.u8": (Typed(VT.UINT8, 255), 255),
    "t.i8": (Typed(VT.INT8, -128), -128),
    "t.u16": (Typed(VT.UINT16, 65535), 65535),
    "t.i16": (Typed(VT.INT16, -32768), -32768),
    "t.u32": (Typed(VT.UINT32, 2**32 - 1), 2**32 - 1),
    "t.i32": (Typed(VT.INT32, -2**31), -2**31),
    "t.u64": (Typed(VT.UINT64, 2**64 - 1), 2**64 - 1),
    "t.i64": (Typed(VT.INT64, -2**63), -2**63),
    "t.f32": (Typed(VT.FLOAT32, 0.1), float(np.float32(0.1))),
    "t.f64": (Typed(VT.FLOAT64, math.pi), math.pi),
    "t.true": (True, True),
    "t.false": (False, False),
    "t.str": (UNICODE, UNICODE),
    "t.empty_str": ("", ""),
}
NUMERIC_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32,
                  np.uint64, np.int64, np.float32, np.float64]


def numeric_arrays():
    rng = np.random.default_rng(0)
    arrays = {}
    for dtype in NUMERIC_DTYPES:
        info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
        if info:
            values = rng.integers(info.min, info.max, size=7, dtype=dtype, endpoint=True)
            values[:2] = [info.min, info.max]
        else:
            values = rng.standard_normal(7).astype(dtype)
        arrays[f"a.{np.dtype(dtype).name}"] = values
    arrays["a.bool"] = np.array([True, False, True])
    arrays["a.empty"] = np.zeros(0, np.int32)
    return arrays


STRING_ARRAYS = {"a.str": ["a", "", UNICODE, "x" * 300], "a.str_empty": Typed(VT.ARRAY, [], VT.STRING)}
NESTED = {
    "n.ints": (Typed(VT.ARRAY, [[1, 2], [], [3]], VT.ARRAY), [[1, 2], [], [3]]),
    "n.strs": (Typed(VT.ARRAY, [["a", "b"], [UNICODE]], VT.ARRAY), [["a", "b"], [UNICODE]]),
    "n.deep": (Typed(VT.ARRAY, [[[1.5], [2.5, 3.5]]], VT.ARRAY), [[[1.5], [2.5, 3.5]]]),
}


def write(tmp_path, writer, name="x.gguf"):
    return writer.write(tmp_path / name)


def every_type_writer(version):
    w = GGUFWriter(version=version)
    for key, (value, _) in SCALARS.items():
        w.add(key, value)
    for key, values in {**numeric_arrays(), **STRING_ARRAYS}.items():
        w.add(key, values)
    for key, (value, _) in NESTED.items():
        w.add(key, value)
    return w


def plain(value):
    """Nested lists of Python values, whatever the container."""
    if isinstance(value, (list, StringArray, np.ndarray)):
        return [plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


@pytest.mark.parametrize("version", [2, 3])
def test_every_value_type_round_trips(tmp_path, version):
    f = open_gguf(write(tmp_path, every_type_writer(version)))
    assert f.version == version and f.tensors == {}
    for key, (_, expected) in SCALARS.items():
        assert f.metadata[key] == expected and type(f.metadata[key]) is type(expected), key
    for key, values in numeric_arrays().items():
        got = f.metadata[key]
        assert isinstance(got, np.ndarray) and got.dtype == values.dtype, key
        assert np.array_equal(got, values), key
    assert isinstance(f.metadata["a.str"], StringArray)
    assert f.metadata["a.str"] == STRING_ARRAYS["a.str"]
    assert list(f.metadata["a.str_empty"]) == []
    for key, (_, expected) in NESTED.items():
        assert isinstance(f.metadata[key], list)
        assert plain(f.metadata[key]) == expected, key


def test_test_writer_agrees_with_gguf_package_reader(tmp_path):
    """The writer is itself checked against an independent reader."""
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(write(tmp_path, every_type_writer(3)))
    for key, (_, expected) in SCALARS.items():
        assert reader.fields[key].contents() == expected, key
    for key, values in numeric_arrays().items():
        assert reader.fields[key].contents() == values.tolist(), key
    assert reader.fields["a.str"].contents() == STRING_ARRAYS["a.str"]


def test_files_from_gguf_package_writer(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = str(tmp_path / "ref.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint8("r.u8", 7)
    w.add_int16("r.i16", -300)
    w.add_uint64("r.u64", 2**40)
    w.add_float64("r.f64", 2.5)
    w.add_bool("r.bool", True)
    w.add_string("r.str", UNICODE)
    w.add_array("r.strs", ["x", "yz"])
    w.add_array("r.floats", [1.0, 2.0])
    w.add_array("r.nested", [[1, 2], [3]])
    weights = np.arange(64 * 3, dtype=np.float32).reshape(3, 64)
    half = np.linspace(-1, 1, 32, dtype=np.float16)
    w.add_tensor("w", weights)
    w.add_tensor("h", half)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    f = open_gguf(path)
    m = f.metadata
    assert m["general.architecture"] == "llama"
    assert (m["r.u8"], m["r.i16"], m["r.u64"], m["r.f64"], m["r.bool"]) == (7, -300, 2**40, 2.5, True)
    assert m["r.str"] == UNICODE and m["r.strs"] == ["x", "yz"]
    assert m["r.floats"].tolist() == [1.0, 2.0]
    assert plain(m["r.nested"]) == [[1, 2], [3]]
    assert f.tensors["w"].shape == (64, 3) and f.tensors["w"].type == GGMLType.F32
    assert np.array_equal(f.tensor_data("w").view(np.float32).reshape(3, 64), weights)
    assert f.tensors["h"].type == GGMLType.F16
    assert np.array_equal(f.tensor_data("h").view(np.float16), half)


def test_tensor_data_is_a_read_only_view_of_one_map(tmp_path):
    w = GGUFWriter(alignment=64)
    a = np.arange(32, dtype=np.float32)
    b = np.arange(96, dtype=np.float32).reshape(3, 32)
    w.add_tensor("a", a)
    w.add_tensor("b", b)
    f = open_gguf(write(tmp_path, w))
    assert f.alignment == 64 and f.data_offset % 64 == 0
    assert list(f.tensors) == ["a", "b"]
    assert f.tensors["b"] == TensorInfo("b", GGMLType.F32, (32, 3), f.tensors["b"].offset, 384, 96)
    view_a, view_b = f.tensor_data("a"), f.tensor_data("b")
    assert view_a.dtype == np.uint8 and not view_a.flags.writeable
    assert np.array_equal(view_b.view(np.float32).reshape(3, 32), b)
    # Same mapping: the distance between the views is the distance between the offsets.
    assert view_b.ctypes.data - view_a.ctypes.data == f.tensors["b"].offset - f.tensors["a"].offset
    with open(tmp_path / "x.gguf", "rb") as raw:
        raw.seek(f.tensors["a"].offset)
        assert raw.read(128) == view_a.tobytes()
    with pytest.raises(GGUFError, match="no tensor named 'c'"):
        f.tensor_data("c")


def test_string_array_behaves_like_a_list(tmp_path):
    w = GGUFWriter()
    w.add("s", ["a", "bc", "", UNICODE])
    w.add("bad", [b"ok", b"\xff\xfe"])
    s = open_gguf(write(tmp_path, w)).metadata
    strings = s["s"]
    assert len(strings) == 4 and strings[1] == "bc" and strings[-1] == UNICODE
    assert strings[1:3] == ["bc", ""] and list(strings) == ["a", "bc", "", UNICODE]
    assert strings == ["a", "bc", "", UNICODE] and strings != ["a"]
    assert strings.bytes_at(3) == UNICODE.encode()
    assert strings.tolist() == ["a", "bc", "", UNICODE]
    with pytest.raises(IndexError):
        strings[4]
    assert s["bad"][0] == "ok"
    with pytest.raises(GGUFError, match="'bad': string 1 is not valid UTF-8"):
        s["bad"][1]
    with pytest.raises(GGUFError, match="'bad': string 1 is not valid UTF-8"):
        list(s["bad"])


def test_string_array_lists_strings_holding_nul_and_empty_arrays(tmp_path):
    w = GGUFWriter()
    w.add("nul", ["a\x00b", "", "c"])
    w.add("one", [""])
    w.add("none", Typed(VT.ARRAY, [], VT.STRING))
    m = open_gguf(write(tmp_path, w)).metadata
    assert m["nul"].tolist() == ["a\x00b", "", "c"] and m["one"].tolist() == [""]
    assert m["none"].tolist() == []


def test_string_array_packed_bytes_and_utf8_checks(tmp_path):
    w = GGUFWriter()
    w.add("s", ["a", "bc", "", UNICODE])
    w.add("split", [b"ok", b"\xc3", b"\xa9"])   # valid only once joined: still refused
    w.add("bad", [b"ok", b"\xff"])
    m = open_gguf(write(tmp_path, w)).metadata
    blob, offsets = m["s"].packed()
    assert blob == ("abc" + UNICODE).encode() and list(offsets) == [0, 1, 3, 3, len(blob)]
    for key in ("split", "bad"):
        with pytest.raises(GGUFError, match=f"'{key}': string 1 is not valid UTF-8"):
            m[key].packed()


def _walk_strings(buf, pos, n):
    """The plain walk the C one replaces: (bounds, -1), or (None, first string that runs
    past the end)."""
    bounds = []
    for i in range(n):
        if len(buf) - pos < 8:
            return None, i
        length = int.from_bytes(buf[pos:pos + 8], "little")
        if length > len(buf) - pos - 8:
            return None, i
        bounds.append(pos)
        pos += 8 + length
    return bounds + [pos], -1


def test_string_walk_and_packing_in_c_match_a_plain_walk():
    from llmcli._kernels import join_strings, pack_strings, string_bounds

    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(0, 12))
        pieces = [bytes(rng.integers(0, 256, int(rng.integers(0, 6)), dtype=np.uint8))
                  for _ in range(n)]
        lead = bytes(rng.integers(0, 256, int(rng.integers(0, 4)), dtype=np.uint8))
        buf = lead + b"".join(string(p) for p in pieces)
        if trial % 3 == 1 and buf:   # cut anywhere, even inside a length
            buf = buf[:int(rng.integers(0, len(buf)))]
        if trial % 3 == 2 and n:     # one length far too long, up to 2^64 - 1
            at = len(lead) + sum(8 + len(p) for p in pieces[:n // 2])
            huge = [len(buf), 2**63, 2**64 - 1][int(rng.integers(0, 3))]
            buf = buf[:at] + huge.to_bytes(8, "little") + buf[at + 8:]
        expected, bad = _walk_strings(buf, len(lead), n) if len(lead) <= len(buf) else (None, None)
        if bad is None:
            continue
        bounds, got_bad = string_bounds(buf, len(lead), n)
        assert got_bad == bad
        if bad >= 0:
            assert bounds is None
            continue
        assert bounds.tolist() == expected
        blob, offsets, split = pack_strings(buf, bounds)
        assert blob == b"".join(pieces)
        assert offsets.tolist() == np.cumsum([0] + [len(p) for p in pieces]).tolist()
        starts_inside = [i for i, p in enumerate(pieces) if p and p[0] & 0xC0 == 0x80]
        assert split == (starts_inside[0] if starts_inside else -1)
        separator = int(rng.integers(0, 256))
        joined, holding = join_strings(buf, bounds, separator)
        assert joined == bytes([separator]).join(pieces)
        assert holding == sum(separator in p for p in pieces)
    with pytest.raises(ValueError):
        string_bounds(b"abc", 4, 1)
    # bounds that would make the C copies leave the buffer are refused, not followed
    for bad in ([0, 4, 16], [0, 90, 16], [0, 200, 216], [8, 0], [-8, 0]):
        for join in (pack_strings, lambda buf, b: join_strings(buf, b, 0)):
            with pytest.raises(ValueError):
                join(bytes(100), np.array(bad, dtype=np.int64))


# --- the real models -------------------------------------------------------------------

def test_smollm2_matches_reference_notes(smollm2_path):
    f = open_gguf(smollm2_path)
    m, tensors = f.metadata, f.tensors
    assert f.version == 3 and len(tensors) == 272
    assert Counter(t.type for t in tensors.values()) == {
        GGMLType.Q4_1: 210, GGMLType.F32: 61, GGMLType.Q8_0: 1}
    assert tensors["token_embd.weight"].type == GGMLType.Q8_0
    assert tensors["token_embd.weight"].shape == (576, 49152)
    assert "output.weight" not in tensors
    assert tensors["blk.0.attn_k.weight"].shape == (576, 192)
    assert tensors["blk.29.ffn_down.weight"].shape == (1536, 576)
    assert m["general.architecture"] == "llama"
    assert (m["llama.block_count"], m["llama.embedding_length"], m["llama.attention.head_count"],
            m["llama.attention.head_count_kv"], m["llama.feed_forward_length"],
            m["llama.context_length"]) == (30, 576, 9, 3, 1536, 8192)
    assert m["llama.rope.freq_base"] == 1e5
    assert m["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5, rel=1e-6)
    assert (m["tokenizer.ggml.model"], m["tokenizer.ggml.pre"]) == ("gpt2", "smollm")
    assert len(m["tokenizer.ggml.tokens"]) == 49152 and len(m["tokenizer.ggml.merges"]) == 48900
    assert m["tokenizer.ggml.tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert (m["tokenizer.ggml.bos_token_id"], m["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert m["tokenizer.ggml.add_bos_token"] is False


def test_smollm2_matches_gguf_package_reader(smollm2_path):
    gguf = pytest.importorskip("gguf")
    ours, ref = open_gguf(smollm2_path), gguf.GGUFReader(smollm2_path)
    assert list(ours.metadata) == [k for k in ref.fields if not k.startswith("GGUF.")]
    for key, field in ref.fields.items():
        if key.startswith("GGUF."):
            continue
        value = ours.metadata[key]
        expected = field.contents()
        if isinstance(value, float):
            assert value == pytest.approx(expected, rel=0, abs=0), key
        else:
            assert plain(value) == expected, key
    assert len(ours.tensors) == len(ref.tensors)
    for tensor in ref.tensors:
        info = ours.tensors[tensor.name]
        assert info.type == int(tensor.tensor_type), tensor.name
        assert info.shape == tuple(int(d) for d in tensor.shape), tensor.name
        assert (info.offset, info.nbytes, info.n_elements) == (
            tensor.data_offset, tensor.n_bytes, tensor.n_elements), tensor.name
    # The views hold the same bytes as the reference's memmap.
    for tensor in ref.tensors[:20]:
        assert np.array_equal(ours.tensor_data(tensor.name),
                              np.asarray(tensor.data).reshape(-1).view(np.uint8))


def test_gemma3_matches_reference_notes(gemma3_path):
    f = open_gguf(gemma3_path)
    m, tensors = f.metadata, f.tensors
    assert len(tensors) == 236
    assert {t.type for t in tensors.values()} == {
        GGMLType.Q5_0, GGMLType.Q4_K, GGMLType.Q6_K, GGMLType.Q8_0, GGMLType.F32}
    assert tensors["token_embd.weight"].type == GGMLType.Q8_0
    assert tensors["token_embd.weight"].shape == (640, 262144)
    assert tensors["blk.0.attn_q.weight"].shape == (640, 1024)
    for name in ("attn_norm", "attn_q_norm", "attn_k_norm", "post_attention_norm",
                 "ffn_norm", "post_ffw_norm"):
        assert f"blk.17.{name}.weight" in tensors
    assert m["general.architecture"] == "gemma3"
    assert (m["gemma3.block_count"], m["gemma3.embedding_length"],
            m["gemma3.attention.head_count"], m["gemma3.attention.head_count_kv"],
            m["gemma3.attention.key_length"], m["gemma3.feed_forward_length"],
            m["gemma3.context_length"], m["gemma3.attention.sliding_window"]) == (
        18, 640, 4, 1, 256, 2048, 32768, 512)
    assert m["gemma3.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6, rel=1e-6)
    assert m["tokenizer.ggml.model"] == "llama" and len(m["tokenizer.ggml.tokens"]) == 262144
    assert m["tokenizer.ggml.scores"].dtype == np.float32
    assert (m["tokenizer.ggml.bos_token_id"], m["tokenizer.ggml.eos_token_id"]) == (2, 1)
    assert m["tokenizer.ggml.tokens"][106] == "<end_of_turn>"
    assert "tokenizer.chat_template" not in m


# --- broken files --------------------------------------------------------------------

def header(magic=b"GGUF", version=3, n_tensors=0, n_kv=0):
    return magic + u32(version) + u64(n_tensors) + u64(n_kv)


def one_kv(key, type_number, payload, **kw):
    w = GGUFWriter(**kw)
    w.add_raw(key, type_number, payload)
    return w.to_bytes()


def with_metadata(*pairs, **kw):
    w = GGUFWriter(**kw)
    for key, value in pairs:
        w.add(key, value)
    return w.to_bytes()


def one_tensor(dims=(32,), ggml_type=0, n_bytes=None, **kw):
    w = GGUFWriter()
    n_bytes = 4 * 32 if n_bytes is None else n_bytes
    w.add_tensor("t", b"\0" * n_bytes, ggml_type=ggml_type, dims=dims, **kw)
    return w.to_bytes()


def two_tensors(second_offset=None, second_name="b", layout_alignment=None):
    w = GGUFWriter(layout_alignment=layout_alignment)
    w.add_tensor("a", np.zeros(64, np.float32))
    w.add_tensor(second_name, np.zeros(32, np.float32), offset=second_offset)
    return w.to_bytes()


def truncated(cut):
    w = GGUFWriter()
    w.add("general.architecture", "llama")
    w.add("v", ["abc", "def"])
    w.add_tensor("t", np.zeros(64, np.float32))
    data = w.to_bytes()
    return data[:cut(data)]


def huge_alignment():
    w = GGUFWriter(layout_alignment=32)
    w.add("general.alignment", Typed(VT.UINT32, 2**31))
    w.add_tensor("t", np.zeros(8, np.float32))
    return w.to_bytes()


BIG = 2**60
BROKEN = {
    "empty": (b"", "empty"),
    "short": (b"GGUF\x03\0\0\0\0\0", "only 10 bytes"),
    "wrong magic": (header(magic=b"PK\x03\x04"), "not a GGUF file"),
    "legacy ggml": (header(magic=b"lmgg"), "legacy 'ggml'"),
    "legacy ggjt": (header(magic=b"tjgg"), "legacy 'ggjt'"),
    "version 0": (header(version=0), "unsupported GGUF version 0"),
    "version 1": (header(version=1), "version 1 is not supported"),
    "version 4": (header(version=4), "unsupported GGUF version 4"),
    "version 99": (header(version=99), "unsupported GGUF version 99"),
    "big-endian": (header(version=3 << 24), "big-endian"),
    "huge tensor count": (header(n_tensors=BIG), f"tensor count {BIG} is impossible"),
    "huge kv count": (header(n_kv=2**64 - 1), "key/value count .* is impossible"),
    "key length 2^60": (header(n_kv=1) + u64(BIG) + b"k" * 40, "key 0 length .* runs past"),
    "string length 2^60": (one_kv("k", VT.STRING, u64(BIG) + b"abc"),
                           "key 'k' string length 1152921504606846976 .* runs past"),
    "array length 2^60": (one_kv("k", VT.ARRAY, u32(VT.UINT8) + u64(BIG) + b"\0" * 8),
                          "key 'k' array length .* is impossible"),
    "string array length 2^60": (one_kv("k", VT.ARRAY, u32(VT.STRING) + u64(BIG) + string("a")),
                                 "key 'k' array length .* is impossible"),
    "string in array 2^60 long": (
        one_kv("k", VT.ARRAY, u32(VT.STRING) + u64(3) + string("a") + string("b", BIG) + string("c")),
        "key 'k': string 1 of 3 runs past the end"),
    "last string in array too long": (
        one_kv("k", VT.ARRAY, u32(VT.STRING) + u64(2) + string("a") + string("b", 99)),
        "key 'k': string 1 of 2 runs past the end"),
    "unknown value type": (one_kv("k", 13, b"\0" * 8), "key 'k': unknown value type 13"),
    "unknown array element type": (one_kv("k", VT.ARRAY, u32(99) + u64(1) + b"\0" * 8),
                                   "unknown value type 99"),
    "bad bool": (one_kv("flag", VT.BOOL, b"\x02"), "key 'flag': bool value 2"),
    "bad bool in array": (one_kv("flags", VT.ARRAY, u32(VT.BOOL) + u64(3) + b"\x01\x00\x07"),
                          "'flags' array: bool value 7"),
    "value truncated": (header(n_kv=1) + string("k") + u32(VT.UINT64) + b"\0\0", "key 'k' value"),
    "duplicate key": (with_metadata(("a.b", 1), ("a.b", 2)), "duplicate metadata key 'a.b'"),
    "key not UTF-8": (one_kv(b"k\xff", VT.UINT8, b"\0"), "metadata key 0 .* not valid UTF-8"),
    "value not UTF-8": (one_kv("k", VT.STRING, string(b"\xc3")), "key 'k' string .* not valid UTF-8"),
    "arrays nested too deep": (
        one_kv("k", VT.ARRAY, (u32(VT.ARRAY) + u64(1)) * 20 + u32(VT.UINT8) + u64(0)),
        "nested more than 8 deep"),
    "alignment 0": (with_metadata(("general.alignment", Typed(VT.UINT32, 0))), "not a power of two"),
    "alignment odd": (with_metadata(("general.alignment", Typed(VT.UINT32, 3))), "= 3 is not a power of two"),
    "alignment not an integer": (with_metadata(("general.alignment", "32")), "must be an integer"),
    "alignment huge": (huge_alignment(), "alignment 2147483648.* past the end of the file"),
    "n_dims 0": (one_tensor(dims=(), n_dims=0), "tensor 't': n_dims 0 is not between 1 and 4"),
    "n_dims 5": (one_tensor(dims=(32, 1, 1, 1, 1)), "n_dims 5 is not between 1 and 4"),
    "n_dims 2^31": (one_tensor(dims=(32,), n_dims=2**31), "n_dims 2147483648"),
    "n_dims 2^32 - 1": (one_tensor(dims=(32,), n_dims=2**32 - 1), "n_dims 4294967295 is not between 1 and 4"),
    "zero dim": (one_tensor(dims=(32, 0)), "dimension 1 is zero"),
    "element count over 2^63": (one_tensor(dims=(2**32, 2**32)), "more than 2\\^63 elements"),
    "byte size over 64 bits": (one_tensor(dims=(2**31, 2**31), ggml_type=GGMLType.F64),
                               "F64 needs .* overflows 64 bits"),
    "unknown tensor type": (one_tensor(ggml_type=99), "tensor 't': unknown ggml tensor type 99"),
    "removed tensor type Q4_2": (one_tensor(ggml_type=4), "unknown ggml tensor type 4"),
    "row not whole blocks": (one_tensor(dims=(33, 2), ggml_type=GGMLType.Q4_0, n_bytes=64),
                             "row length 33 is not a multiple of the Q4_0 block size 32"),
    "misaligned offset": (two_tensors(second_offset=8), "data offset 8 is not a multiple of the alignment 32"),
    "offset past end": (two_tensors(second_offset=2**40), "tensor 'b': data .* runs past the end"),
    "offset near 2^64": (two_tensors(second_offset=2**64 - 32), "tensor 'b': data .* runs past the end"),
    "overlapping tensors": (two_tensors(second_offset=128), "tensors 'a' and 'b' overlap"),
    "duplicate tensor": (two_tensors(second_name="a"), "duplicate tensor name 'a'"),
    "truncated in metadata": (truncated(lambda d: d.index(string("llama")) + 10),
                              "key 'general.architecture' string length 5 .* runs past"),
    "truncated in string array": (truncated(lambda d: d.index(string("def")) + 10),
                                  "key 'v': string 1 of 2 runs past the end"),
    "truncated in tensor infos": (truncated(lambda d: d.index(string("t")) + 16),
                                  "tensor 't' dimension 0 .*truncated"),
    "truncated in data": (truncated(lambda d: len(d) - 8), "tensor 't': data .* runs past the end"),
}


def test_corpus_is_large():
    assert len(BROKEN) >= 30


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_file_fails_fast_and_names_the_problem(tmp_path, case):
    data, message = BROKEN[case]
    path = tmp_path / "broken.gguf"
    path.write_bytes(data)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(GGUFError, match=message) as caught:
            open_gguf(path)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert elapsed < 1.0
    assert peak < 4 << 20, f"{peak} bytes allocated"


def test_missing_file_directory_and_special_files(tmp_path):
    with pytest.raises(GGUFError, match="no such file"):
        open_gguf(tmp_path / "nope.gguf")
    with pytest.raises(GGUFError, match="is a directory"):
        open_gguf(tmp_path)
    fifo = tmp_path / "fifo.gguf"
    os.mkfifo(fifo)
    with pytest.raises(GGUFError, match="not a regular file"):
        open_gguf(fifo)  # must not block waiting for a writer


def test_valid_edge_cases(tmp_path):
    """What the reader must still accept: no tensors and no padding, a 1-byte alignment,
    a tensor of a known-but-unsupported type, the last tensor ending exactly at EOF."""
    f = open_gguf(write(tmp_path, GGUFWriter(), "bare.gguf"))
    assert f.metadata == {} and f.tensors == {}
    w = GGUFWriter(alignment=1)
    w.add_tensor("q2k", b"\1" * 84, ggml_type=GGMLType.Q2_K, dims=(256,))
    w.add_tensor("f", np.ones(3, np.float32))
    f = open_gguf(write(tmp_path, w, "edge.gguf"))
    assert f.tensors["q2k"].type == GGMLType.Q2_K
    assert f.tensors["f"].offset + f.tensors["f"].nbytes == f.file_size



@pytest.mark.skipif(not huge_pages_possible(),
                    reason="transparent huge pages are off here, or no /proc/self/smaps")
def test_weights_are_read_into_huge_pages(tmp_path):
    """A model file read for the first time through the loader's map lands in the page
    cache in 2 MiB pages, so decode's weight stream takes few TLB misses. (Without the
    map's advice, an 8 MiB file read the same way gets none: measured 0 kB.)"""
    from llmcli.models import _drop_cached_pages

    path = tmp_path / "big.gguf"
    with open(path, "wb") as f:
        f.write(eight_mib_gguf())
        f.flush()
        os.fsync(f.fileno())
    _drop_cached_pages(path)  # as a pull leaves it: on disk only
    f = open_gguf(path)
    data = f.tensor_data("w")
    assert int(data[::4096].astype(np.int64).sum()) > 0  # touch every page
    assert file_pmd_mapped_kib(path) >= 4096  # at least 2 of the 4 whole 2 MiB pages
