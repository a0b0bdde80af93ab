"""llmcli.quants against the independent reference: the `gguf` package (gguf-py) from
llama.cpp. Equality is bit-for-bit (compared as uint32 patterns, so -0.0 != 0.0)."""
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import quants as gguf_quants  # noqa: E402

from llmcli import quants  # noqa: E402
from llmcli.errors import GGUFError  # noqa: E402
from llmcli.quants import GGMLType  # noqa: E402

# Byte offsets of the f16 scale fields in each block: random bytes there could be
# inf/NaN, which make no real model and compare unequal to themselves.
SCALE_OFFSETS = {
    GGMLType.Q8_0: (0,),
    GGMLType.Q4_0: (0,),
    GGMLType.Q4_1: (0, 2),
    GGMLType.Q5_0: (0,),
    GGMLType.Q5_1: (0, 2),
    GGMLType.Q4_K: (0, 2),
    GGMLType.Q5_K: (0, 2),
    GGMLType.Q6_K: (208,),
}

# ggml's static_assert gives block_q8_1 = 2 f16 + 32 int8 = 36 bytes; gguf-py still says
# 40 (two f32 scales, a layout ggml dropped). We follow ggml.
GGUF_PY_STALE_SIZES = {GGMLType.Q8_1}


def bits_equal(a, b):
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def random_f16(rng, n):
    """Sane scales: mostly normal magnitudes, some subnormal, some signed zeros."""
    values = rng.standard_normal(n).astype(np.float32) * np.float32(0.02)
    values[rng.random(n) < 0.05] = np.float32(3e-6)   # f16 subnormal range
    values[rng.random(n) < 0.02] = np.float32(-0.0)
    return values.astype(np.float16)


def random_blocks(rng, t, n_blocks):
    size, nbytes = quants.BLOCK_FORMATS[t]
    n = n_blocks * size
    if t == GGMLType.F32:
        return rng.standard_normal(n).astype(np.float32).view(np.uint8)
    if t == GGMLType.F16:
        return random_f16(rng, n).view(np.uint8)
    if t == GGMLType.BF16:
        top_halves = rng.standard_normal(n).astype(np.float32).view(np.uint32) >> 16
        return top_halves.astype(np.uint16).view(np.uint8)
    blocks = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
    for at in SCALE_OFFSETS[t]:
        blocks[:, at:at + 2] = random_f16(rng, n_blocks).view(np.uint8).reshape(-1, 2)
    return blocks.reshape(-1)


def test_type_numbers_match_gguf_py():
    for t in GGMLType:
        assert gguf.GGMLQuantizationType[t.name] == t.value
    for t in gguf.GGMLQuantizationType:
        assert GGMLType[t.name] == t.value


def test_block_formats_match_gguf_py():
    assert set(quants.BLOCK_FORMATS) == set(GGMLType)
    for t in GGMLType:
        if t in GGUF_PY_STALE_SIZES:
            continue
        expected = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t.value)]
        assert (quants.block_size(t), quants.type_size(t)) == expected, t.name
    assert (quants.block_size(GGMLType.Q8_1), quants.type_size(GGMLType.Q8_1)) == (32, 36)


def test_row_nbytes():
    assert quants.row_nbytes(GGMLType.Q4_K, 512) == 2 * 144
    assert quants.row_nbytes(GGMLType.F16, 7) == 14
    assert quants.row_nbytes(GGMLType.Q8_0, 0) == 0
    with pytest.raises(ValueError, match="Q4_0 blocks of 32"):
        quants.row_nbytes(GGMLType.Q4_0, 33)


@pytest.mark.parametrize("t", quants.SUPPORTED_TYPES, ids=lambda t: t.name)
def test_random_blocks_match_gguf_py(t):
    rng = np.random.default_rng(1234 + int(t))
    n_blocks = 3000
    raw = random_blocks(rng, t, n_blocks)
    n = n_blocks * quants.block_size(t)
    ours = quants.dequantize(raw, t, n)
    theirs = gguf_quants.dequantize(raw, gguf.GGMLQuantizationType(t.value)).reshape(-1)
    assert ours.dtype == np.float32 and ours.shape == (n,)
    assert bits_equal(ours, theirs)


def test_dequantize_spans_internal_slices():
    """A tensor bigger than one working slice is stitched back in order."""
    rng = np.random.default_rng(7)
    t = GGMLType.Q4_1
    n_blocks = quants._SLICE_WEIGHTS // 32 * 2 + 5
    raw = random_blocks(rng, t, n_blocks)
    ours = quants.dequantize(raw, t, n_blocks * 32)
    theirs = gguf_quants.dequantize(raw, gguf.GGMLQuantizationType.Q4_1).reshape(-1)
    assert bits_equal(ours, theirs)


def test_known_q4_0_block_by_hand():
    """One block worked out from the layout: d = 0.5; byte j holds weight j in its low
    nibble and weight j + 16 in its high nibble."""
    d = np.array([0.5], dtype=np.float16).view(np.uint8)
    qs = np.array([j | (((j + 3) % 16) << 4) for j in range(16)], dtype=np.uint8)
    got = quants.dequantize(np.concatenate([d, qs]), GGMLType.Q4_0, 32)
    want = [0.5 * (j - 8) for j in range(16)] + \
           [0.5 * (((j + 3) % 16) - 8) for j in range(16)]
    assert got.tolist() == want


def test_unsupported_type_is_a_gguf_error():
    with pytest.raises(GGUFError, match="Q2_K is not supported"):
        quants.dequantize(np.zeros(84, np.uint8), GGMLType.Q2_K, 256)
    assert not quants.is_supported(GGMLType.IQ2_XXS)
    assert quants.is_supported(GGMLType.Q6_K)


def test_wrong_byte_count_is_rejected():
    with pytest.raises(ValueError, match="take 36 bytes, got 35"):
        quants.dequantize(np.zeros(35, np.uint8), GGMLType.Q4_0, 64)


def _every_tensor_matches(path):
    """Both of our dequantizations, the NumPy reference and the C rows behind the
    embedding lookup (_kernels.dequantize), against gguf-py on every tensor."""
    from llmcli import _kernels

    reader = gguf.GGUFReader(path)
    seen_types = set()
    for tensor in reader.tensors:
        t = GGMLType(int(tensor.tensor_type))
        seen_types.add(t)
        raw = np.asarray(tensor.data).reshape(-1).view(np.uint8)
        size, nbytes = quants.BLOCK_FORMATS[t]
        assert raw.size == quants.row_nbytes(t, int(tensor.n_elements)), tensor.name
        # Compare in slices so two float32 copies of a 100M-weight table never coexist.
        blocks_per_slice = (1 << 22) // size
        for start in range(0, raw.size // nbytes, blocks_per_slice):
            chunk = raw[start * nbytes:(start + blocks_per_slice) * nbytes]
            ours = quants.dequantize(chunk, t, chunk.size // nbytes * size)
            theirs = gguf_quants.dequantize(chunk, tensor.tensor_type).reshape(-1)
            assert bits_equal(ours, theirs), f"{tensor.name} blocks from {start}"
            kernel = np.empty(ours.size, np.float32)
            _kernels.dequantize(chunk, int(t), kernel)
            assert bits_equal(kernel, theirs), f"{tensor.name} blocks from {start} (C)"
    return seen_types


def test_every_tensor_of_smollm2(smollm2_path):
    types = _every_tensor_matches(smollm2_path)
    assert types == {GGMLType.Q4_1, GGMLType.Q8_0, GGMLType.F32}


def test_every_tensor_of_gemma3(gemma3_path):
    types = _every_tensor_matches(gemma3_path)
    assert types == {GGMLType.Q5_0, GGMLType.Q4_K, GGMLType.Q6_K, GGMLType.Q8_0, GGMLType.F32}
