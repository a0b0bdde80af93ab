"""Quantized kernels (llmcli._kernels) against independent references.

References: gguf-py (`gguf.GGML_QUANT_SIZES`, `gguf.quants`, `gguf.GGUFReader`) for the
block formats, dequantization and Q8_0 quantization; NumPy formulas written from ggml's
definitions for Q8_1 / Q8_K; a float64 NumPy product of the gguf-dequantized weights for
matmul.

Matmul tolerance (derived, not tuned). Quantized weights are multiplied exactly, in integers,
against activations rounded to 8 bits per block: value x becomes q*d with d = amax/127 over
its block (32 values; 256 for Q8_K), so |x - q*d| <= d/2 = amax/254. Q8_0 also stores d as
an IEEE half (relative error <= 2^-11), which moves q*d by at most 127*d*2^-11 = amax/2048.
Summed over a row, |dot_ours - dot_exact| <= sum_blocks amax_b * c * sum_{j in b} |w_j|,
c = 1/254 (+1/2048 for Q8_0), plus float32 accumulation (< 1e-5 * sum |w x|).
"""
import os
import subprocess
import sys

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from llmcli import _kernels as K

WEIGHT_TYPES = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K]
FLOAT_TYPES = [Q.F32, Q.F16, Q.BF16]
ACT_FORMAT = {Q.Q4_0: Q.Q8_0, Q.Q5_0: Q.Q8_0, Q.Q8_0: Q.Q8_0, Q.Q4_1: Q.Q8_1,
              Q.Q5_1: Q.Q8_1, Q.Q4_K: Q.Q8_K, Q.Q5_K: Q.Q8_K, Q.Q6_K: Q.Q8_K}
HALF_FIELDS = {  # byte offsets of the fp16 scale fields in each block
    Q.Q4_0: [0], Q.Q5_0: [0], Q.Q8_0: [0], Q.Q4_1: [0, 2], Q.Q5_1: [0, 2],
    Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}
PATHS = ["avx2", "scalar"] if K.kernel_path() == "avx2" else ["scalar"]


@pytest.fixture(autouse=True)
def restore_kernel_state():
    path, threads = K.kernel_path(), K.get_threads()
    yield
    K.set_kernel_path(path)
    K.set_threads(threads)


def random_blocks(rng, qtype, n_blocks, scale=0.01):
    """Random bytes for every quant bit; the half-float scales made finite and varied
    (some zero, some subnormal, both signs)."""
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in HALF_FIELDS[qtype]:
        halves = (rng.standard_normal(n_blocks) * scale).astype(np.float16)
        halves[:: 17] = 0
        halves[5:: 23] = np.float16(3e-6)  # subnormal half
        raw[:, offset:offset + 2] = halves.view(np.uint8).reshape(n_blocks, 2)
    return raw


def activations(rng, n_tok, k):
    """Normal values with a few large outliers, like transformer activations."""
    x = rng.standard_normal((n_tok, k)).astype(np.float32)
    x[:, rng.integers(0, k, size=max(1, k // 64))] *= 20
    return x


def dequantized(raw, qtype):
    return gguf.quants.dequantize(np.ascontiguousarray(raw).reshape(-1), qtype)


def activation_error_bound(w_float, x, qtype):
    """The derived bound of the module docstring, per (token, row)."""
    block = 256 if ACT_FORMAT.get(qtype) == Q.Q8_K else 32
    c = 1 / 254 + (1 / 2048 if ACT_FORMAT.get(qtype) == Q.Q8_0 else 0)
    n_tok, k = x.shape
    amax = np.abs(x.astype(np.float64)).reshape(n_tok, k // block, block).max(axis=2)
    w_abs = np.abs(w_float.astype(np.float64)).reshape(len(w_float), k // block, block).sum(axis=2)
    quantization = c * amax @ w_abs.T
    rounding = 1e-5 * (np.abs(x.astype(np.float64)) @ np.abs(w_float.astype(np.float64)).T)
    return quantization + rounding


def run_matmul(w_rows, qtype, x):
    out = np.empty((x.shape[0], w_rows.shape[0]), np.float32)
    K.matmul(w_rows, int(qtype), x, out)
    return out


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("qtype", WEIGHT_TYPES + FLOAT_TYPES + [Q.Q8_1, Q.Q8_K])
def test_block_and_type_sizes_match_gguf(qtype):
    assert (K.block_size(int(qtype)), K.type_size(int(qtype))) == gguf.GGML_QUANT_SIZES[qtype]


@pytest.mark.parametrize("qtype", WEIGHT_TYPES + FLOAT_TYPES + [Q.Q8_K])
def test_block_and_type_sizes_match_llmcli_quants(qtype):
    from llmcli.quants import BLOCK_FORMATS, GGMLType

    fmt = GGMLType(int(qtype))
    assert (K.block_size(int(fmt)), K.type_size(int(fmt))) == BLOCK_FORMATS[fmt]


def test_q8_1_keeps_float_scale_and_sum():
    """Q8_1 is only an activation format and never reaches a file: we keep d and s as
    floats (40 bytes, gguf-py's size) where ggml uses halves (36, llmcli.quants' entry),
    so the min term m*s is not rounded to 11 bits."""
    from llmcli.quants import BLOCK_FORMATS, GGMLType

    assert K.type_size(int(Q.Q8_1)) == BLOCK_FORMATS[GGMLType.Q8_1][1] + 4


def test_unknown_type_is_rejected():
    with pytest.raises(ValueError, match="GGML type 10"):  # Q2_K: no kernels
        K.block_size(10)


# ---------------------------------------------------------------- dequantization


@pytest.mark.parametrize("qtype", WEIGHT_TYPES)
def test_dequantize_is_bit_exact_with_gguf(qtype):
    rng = np.random.default_rng(int(qtype))
    raw = random_blocks(rng, qtype, 300)
    expected = dequantized(raw, qtype)
    ours = np.empty(expected.size, np.float32)
    K.dequantize(raw.reshape(-1), int(qtype), ours)
    assert np.array_equal(ours.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("qtype", FLOAT_TYPES)
def test_dequantize_float_formats_bit_exact(qtype):
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 1 << 16, size=4096, dtype=np.uint16)
    if qtype == Q.F32:
        raw = rng.standard_normal(1024).astype(np.float32).view(np.uint8)
    else:
        exponent_all_ones = (bits & 0x7F80 if qtype == Q.BF16 else bits & 0x7C00)
        bits = bits[exponent_all_ones != (0x7F80 if qtype == Q.BF16 else 0x7C00)]  # no inf/nan
        raw = bits.view(np.uint8)
    expected = gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(-1)
    ours = np.empty(expected.size, np.float32)
    K.dequantize(raw, int(qtype), ours)
    assert np.array_equal(ours.view(np.uint32), expected.view(np.uint32))


def test_get_rows_returns_the_dequantized_rows():
    rng = np.random.default_rng(3)
    raw = random_blocks(rng, Q.Q8_0, 40 * 4)
    w = raw.reshape(40, -1)
    ids = np.array([3, 0, 39, 3], np.int32)
    out = np.empty((4, 128), np.float32)
    K.get_rows(w, int(Q.Q8_0), ids, out)
    expected = dequantized(raw, Q.Q8_0).reshape(40, 128)[ids]
    assert np.array_equal(out, expected)


def test_get_rows_rejects_out_of_range_ids():
    w = random_blocks(np.random.default_rng(0), Q.Q8_0, 8).reshape(4, -1)
    out = np.empty((1, 64), np.float32)
    with pytest.raises(ValueError, match="id 4 at position 0"):
        K.get_rows(w, int(Q.Q8_0), np.array([4], np.int32), out)
    with pytest.raises(ValueError, match="id -1"):
        K.get_rows(w, int(Q.Q8_0), np.array([-1], np.int32), out)


# ---------------------------------------------------------------- activation quantization


def reference_q8_1(x):
    """ggml's Q8_1 with float d and s: d = amax/127, q = round(x * (1/d)), s = d * sum(q)."""
    blocks = x.reshape(-1, 32)
    d = (np.abs(blocks).max(axis=1) / np.float32(127)).astype(np.float32)
    inv_d = np.where(d == 0, np.float32(0), np.float32(1) / np.where(d == 0, 1, d)).astype(np.float32)
    q = np.rint(blocks * inv_d[:, None]).astype(np.int8)
    s = (d * q.astype(np.int32).sum(axis=1).astype(np.float32)).astype(np.float32)
    head = np.stack([d, s], axis=1).view(np.uint8)
    return np.concatenate([head, q.view(np.uint8)], axis=1).reshape(-1)


def reference_q8_k(x):
    """ggml's Q8_K: iscale = -127/max (max: the first value of largest magnitude),
    q = min(127, round(iscale * x)), d = 1/iscale, bsums = sums of 16."""
    out = []
    for block in x.reshape(-1, 256):
        i = int(np.argmax(np.abs(block)))
        iscale = np.float32(-127) / block[i]
        q = np.minimum(127, np.rint(np.float32(iscale) * block)).astype(np.int8)
        bsums = q.reshape(16, 16).astype(np.int16).sum(axis=1).astype(np.int16)
        d = np.array([np.float32(1) / np.float32(iscale)], np.float32)
        out.append(np.concatenate([d.view(np.uint8), q.view(np.uint8), bsums.view(np.uint8)]))
    return np.concatenate(out)


@pytest.mark.parametrize("path", PATHS)
def test_quantize_q8_0_matches_gguf(path):
    K.set_kernel_path(path)
    x = activations(np.random.default_rng(11), 1, 4096)[0]
    assert np.array_equal(K.quantize_row(int(Q.Q8_0), x), gguf.quants.quantize(x, Q.Q8_0))


@pytest.mark.parametrize("path", PATHS)
def test_quantize_q8_1_matches_formula(path):
    K.set_kernel_path(path)
    x = activations(np.random.default_rng(12), 1, 4096)[0]
    x[:32] = 0  # an all-zero block
    assert np.array_equal(K.quantize_row(int(Q.Q8_1), x), reference_q8_1(x))


@pytest.mark.parametrize("path", PATHS)
def test_quantize_q8_k_matches_formula(path):
    K.set_kernel_path(path)
    x = activations(np.random.default_rng(13), 1, 4096)[0]
    x[256:512] = -x[256:512]  # largest magnitudes of both signs
    assert np.array_equal(K.quantize_row(int(Q.Q8_K), x), reference_q8_k(x))


def dequantized_activations(raw, act):
    """The values an activation row's bytes (from the formula references above) stand for."""
    if act == Q.Q8_0:
        return gguf.quants.dequantize(raw, Q.Q8_0)
    if act == Q.Q8_1:
        blocks = raw.reshape(-1, 40)
        d = blocks[:, :4].copy().view(np.float32)
        return (d * blocks[:, 8:].copy().view(np.int8)).reshape(-1)
    blocks = raw.reshape(-1, 292)
    d = blocks[:, :4].copy().view(np.float32)
    return (d * blocks[:, 4:260].copy().view(np.int8)).reshape(-1)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("act", [Q.Q8_0, Q.Q8_1, Q.Q8_K])
def test_quantization_residual_is_what_the_8_bits_lose(path, act):
    K.set_kernel_path(path)
    x = activations(np.random.default_rng(14), 1, 2048)[0]
    x[:256] *= 50  # an outlier block: large residual where 8 bits resolve it coarsely
    raw = {Q.Q8_0: lambda v: gguf.quants.quantize(v, Q.Q8_0), Q.Q8_1: reference_q8_1,
           Q.Q8_K: reference_q8_k}[act](x)
    expected = x - dequantized_activations(raw, act)
    residual = K.quantization_residual(int(act), x)
    np.testing.assert_allclose(residual, expected, rtol=0, atol=1e-6 * np.abs(x).max())
    # quantizing the residual again leaves far less: the refined product's error
    again = K.quantization_residual(int(act), residual)
    assert np.abs(again).max() < np.abs(residual).max() / 64


def test_quantize_row_rejects_non_activation_formats():
    with pytest.raises(ValueError, match="not an activation format"):
        K.quantize_row(int(Q.Q4_0), np.zeros(32, np.float32))


# ---------------------------------------------------------------- matmul


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("qtype", WEIGHT_TYPES)
@pytest.mark.parametrize("n_tok", [1, 2, 3, 8, 13])
def test_matmul_within_activation_quantization_bound(qtype, n_tok, path):
    K.set_kernel_path(path)
    rng = np.random.default_rng(100 * int(qtype) + n_tok)
    k = 512 if gguf.GGML_QUANT_SIZES[qtype][0] == 256 else 576
    n_out = 37  # not a multiple of any tile
    raw = random_blocks(rng, qtype, n_out * k // gguf.GGML_QUANT_SIZES[qtype][0])
    w_float = dequantized(raw, qtype).reshape(n_out, k)
    x = activations(rng, n_tok, k)
    ours = run_matmul(raw.reshape(n_out, -1), qtype, x)
    exact = x.astype(np.float64) @ w_float.astype(np.float64).T
    assert np.all(np.abs(ours - exact) <= activation_error_bound(w_float, x, qtype))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("qtype", WEIGHT_TYPES)
def test_a_token_gets_the_same_result_in_any_batch(qtype, path):
    # one token alone (decode), two or three (a refined decode step, short batches) and
    # nine (the batched prefill tile): bit-identical rows, so chunking never changes logits
    K.set_kernel_path(path)
    rng = np.random.default_rng(300 + int(qtype))
    k = 512 if gguf.GGML_QUANT_SIZES[qtype][0] == 256 else 576
    rows = random_blocks(rng, qtype, 37 * k // gguf.GGML_QUANT_SIZES[qtype][0]).reshape(37, -1)
    x = activations(rng, 9, k)
    alone = np.vstack([run_matmul(rows, qtype, x[t:t + 1]) for t in range(9)])
    for n_tok in (2, 3, 9):
        assert np.array_equal(run_matmul(rows, qtype, x[:n_tok]), alone[:n_tok]), n_tok


def quantized_activations(x, act_format):
    """x as the kernels see it after 8-bit quantization, from the reference quantizers."""
    rows = []
    for row in x:
        if act_format == Q.Q8_0:
            rows.append(dequantized(gguf.quants.quantize(row, Q.Q8_0), Q.Q8_0))
            continue
        if act_format == Q.Q8_1:
            blocks = reference_q8_1(row).reshape(-1, 40)
            d, q = blocks[:, :4].copy().view(np.float32), blocks[:, 8:].view(np.int8)
        else:
            blocks = reference_q8_k(row).reshape(-1, 292)
            d, q = blocks[:, :4].copy().view(np.float32), blocks[:, 4:260].view(np.int8)
        rows.append((d * q.astype(np.float32)).reshape(-1))
    return np.array(rows, np.float64)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("qtype", WEIGHT_TYPES)
def test_matmul_is_exact_on_the_quantized_activations(qtype, path):
    """The integer block products are exact: the only difference from the float64 product
    of the quantized activations with the weights is float32 rounding of the sums."""
    K.set_kernel_path(path)
    rng = np.random.default_rng(200 + int(qtype))
    k = 1024 if gguf.GGML_QUANT_SIZES[qtype][0] == 256 else 640
    raw = random_blocks(rng, qtype, 29 * k // gguf.GGML_QUANT_SIZES[qtype][0])
    w_float = dequantized(raw, qtype).reshape(29, k).astype(np.float64)
    x = activations(rng, 6, k)
    x_seen = quantized_activations(x, ACT_FORMAT[qtype])
    for n_tok in (1, 6):
        ours = run_matmul(raw.reshape(29, -1), qtype, x[:n_tok])
        exact = x_seen[:n_tok] @ w_float.T
        tolerance = 1e-6 * (np.abs(x_seen[:n_tok]) @ np.abs(w_float).T)
        assert np.all(np.abs(ours - exact) <= tolerance)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("qtype", WEIGHT_TYPES)
@pytest.mark.parametrize("fill", [0x00, 0x80, 0xFF])
def test_integer_sums_are_exact_at_their_extremes(fill, qtype, path):
    """Every quant bit set (0xFF: the largest 4-, 5- and 6-bit values), clear (0x00: the
    most negative offset values) or 0x80 (Q8_0's -128), against activations that all
    quantize to +127 or -127: the integer partial sums reach their largest magnitudes, so
    a kernel that keeps them in 16 bits too long (or saturates) is off by thousands."""
    K.set_kernel_path(path)
    block_values, type_size = gguf.GGML_QUANT_SIZES[qtype]
    k = 1024 if block_values == 256 else 640
    n_out, n_blocks = 19, 19 * k // block_values
    raw = np.full((n_blocks, type_size), fill, np.uint8)
    for offset in HALF_FIELDS[qtype]:
        raw[:, offset:offset + 2] = np.array([0.01], np.float16).view(np.uint8)
    w_float = dequantized(raw, qtype).reshape(n_out, k).astype(np.float64)
    x = np.ones((2, k), np.float32)
    x[1] = -1.0
    x_seen = quantized_activations(x, ACT_FORMAT[qtype])
    for n_tok in (1, 2):
        ours = run_matmul(raw.reshape(n_out, -1), qtype, x[:n_tok])
        exact = x_seen[:n_tok] @ w_float.T
        tolerance = 1e-6 * (np.abs(x_seen[:n_tok]) @ np.abs(w_float).T)
        assert np.all(np.abs(ours - exact) <= tolerance), (n_tok, ours[:, 0], exact[:, 0])


@pytest.mark.parametrize("qtype", FLOAT_TYPES)
@pytest.mark.parametrize("path", PATHS)
def test_matmul_float_weights(qtype, path):
    K.set_kernel_path(path)
    rng = np.random.default_rng(5)
    k, n_out = 100, 9  # k not a multiple of 8: the vector loop's tail runs
    w_float = rng.standard_normal((n_out, k)).astype(np.float32)
    stored = gguf.quants.quantize(w_float, qtype) if qtype != Q.F32 else w_float
    w_float = gguf.quants.dequantize(stored.view(np.uint8), qtype).reshape(n_out, k)
    for n_tok in (1, 7):
        x = rng.standard_normal((n_tok, k)).astype(np.float32)
        ours = run_matmul(np.ascontiguousarray(stored).view(np.uint8).reshape(n_out, -1), qtype, x)
        exact = x.astype(np.float64) @ w_float.astype(np.float64).T
        tolerance = 1e-5 * (np.abs(x) @ np.abs(w_float).T)
        assert np.all(np.abs(ours - exact) <= tolerance)


@pytest.mark.skipif(len(PATHS) < 2, reason="no AVX2 path to compare (a CPU without AVX2, or LLMCLI_KERNELS=scalar)")
@pytest.mark.parametrize("qtype", WEIGHT_TYPES)
def test_avx2_and_scalar_paths_agree(qtype):
    rng = np.random.default_rng(int(qtype))
    k = 1024 if gguf.GGML_QUANT_SIZES[qtype][0] == 256 else 640
    raw = random_blocks(rng, qtype, 50 * k // gguf.GGML_QUANT_SIZES[qtype][0])
    w = raw.reshape(50, -1)
    w_float = dequantized(raw, qtype).reshape(50, k)
    x = activations(rng, 9, k)
    results = {}
    for path in PATHS:
        K.set_kernel_path(path)
        results[path] = run_matmul(w, qtype, x)
    # same quantized activations and integer sums; only float summation order differs
    tolerance = 1e-5 * (np.abs(x) @ np.abs(w_float).T)
    assert np.all(np.abs(results["avx2"] - results["scalar"]) <= tolerance)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("qtype", WEIGHT_TYPES + FLOAT_TYPES)
def test_batched_tokens_equal_one_at_a_time_to_the_bit(qtype, path):
    """Decode (one token), short batches and full tiles do the same arithmetic per (row,
    token), so a prompt gives the same logits however it is chunked."""
    K.set_kernel_path(path)
    rng = np.random.default_rng(int(qtype) + 50)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    k = 512 if block == 256 else 576
    if qtype in FLOAT_TYPES:
        w = rng.standard_normal((21, k)).astype(np.float32)
        w = (w.astype(np.float16) if qtype == Q.F16 else w).view(np.uint8).reshape(21, -1)
        if qtype == Q.BF16:
            w = np.ascontiguousarray(w.reshape(21, k, 4)[:, :, 2:]).reshape(21, -1)
    else:
        w = random_blocks(rng, qtype, 21 * k // block).reshape(21, -1)
    x = activations(rng, 19, k)
    batched = run_matmul(w, qtype, x)
    for chunk in (1, 2, 3, 5, 8, 11, 16):  # 11: a two-group tile with a partial second group
        pieces = [run_matmul(w, qtype, x[t:t + chunk]) for t in range(0, len(x), chunk)]
        np.testing.assert_array_equal(np.concatenate(pieces), batched, err_msg=f"chunk {chunk}")


@pytest.mark.parametrize("n_tok", [1, 3, 9])
def test_matmul_many_equals_separate_matmuls(n_tok):
    """q/k/v-like matrices sharing one quantized input give exactly the separate results."""
    rng = np.random.default_rng(60 + n_tok)
    shapes = [(Q.Q5_0, 37), (Q.Q8_0, 8), (Q.Q5_0, 64)]  # Gemma's q, v, k mix
    raws = [random_blocks(rng, t, n * 640 // 32).reshape(n, -1) for t, n in shapes]
    x = activations(rng, n_tok, 640)
    outs = [np.empty((n_tok, n), np.float32) for _, n in shapes]
    K.set_threads(2)
    K.matmul_many([(raw, int(t), out) for raw, (t, _), out in zip(raws, shapes, outs)], x)
    for raw, (t, _), out in zip(raws, shapes, outs):
        assert np.array_equal(out, run_matmul(raw, t, x))


def test_matmul_many_rejects_types_without_a_shared_format():
    x = np.zeros((1, 256), np.float32)
    q4_k = (np.zeros((2, 144), np.uint8), int(Q.Q4_K), np.zeros((1, 2), np.float32))
    q8_0 = (np.zeros((2, 8 * 34), np.uint8), int(Q.Q8_0), np.zeros((1, 2), np.float32))
    assert not K.matmul_can_share(int(Q.Q4_K), int(Q.Q8_0), 1)
    assert K.matmul_can_share(int(Q.Q5_0), int(Q.Q8_0), 1)
    with pytest.raises(ValueError, match="do not share an activation format"):
        K.matmul_many([q4_k, q8_0], x)
    with pytest.raises(ValueError, match="1 to 8 matrices"):
        K.matmul_many([], x)


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(9)
    raw = random_blocks(rng, Q.Q4_1, 103 * 18)
    w = raw.reshape(103, -1)
    x = activations(rng, 10, 576)
    K.set_threads(1)
    one = run_matmul(w, Q.Q4_1, x)
    K.set_threads(2)
    two = run_matmul(w, Q.Q4_1, x)
    assert np.array_equal(one, two)


def test_repeated_calls_reuse_the_workspace():
    rng = np.random.default_rng(4)
    raw = random_blocks(rng, Q.Q8_0, 16 * 18)
    x = activations(rng, 4, 576)
    first = run_matmul(raw.reshape(16, -1), Q.Q8_0, x)
    for _ in range(3):
        assert np.array_equal(run_matmul(raw.reshape(16, -1), Q.Q8_0, x), first)


# ---------------------------------------------------------------- argument checks


def test_matmul_rejects_bad_shapes():
    w = np.zeros((8, 20 * 18), np.uint8)  # Q4_1 rows of 576 values
    x = np.zeros((2, 576), np.float32)
    out = np.zeros((2, 8), np.float32)
    K.matmul(w, int(Q.Q4_1), x, out)
    with pytest.raises(ValueError, match="weight rows have 360 bytes"):
        K.matmul(w, int(Q.Q4_1), np.zeros((2, 512), np.float32), out)
    with pytest.raises(ValueError, match="out has shape"):
        K.matmul(w, int(Q.Q4_1), x, np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError, match="not a multiple of the block size"):
        K.matmul(w, int(Q.Q4_1), np.zeros((2, 570), np.float32), out)
    with pytest.raises(ValueError, match="no kernel for GGML type 10"):
        K.matmul(w, 10, x, out)
    with pytest.raises(ValueError, match="x must be float32"):
        K.matmul(w, int(Q.Q4_1), x.astype(np.float64), out)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        K.matmul(w, int(Q.Q4_1), np.zeros((2, 1152), np.float32)[:, ::2], out)
    with pytest.raises(ValueError, match="w must have 2 dimensions"):
        K.matmul(w.reshape(-1), int(Q.Q4_1), x, out)
    read_only = out.copy()
    read_only.setflags(write=False)
    with pytest.raises(ValueError, match="out is read-only"):
        K.matmul(w, int(Q.Q4_1), x, read_only)


def test_matmul_accepts_read_only_weights_and_buffers():
    """Weights are read-only views of the mapped file; any buffer works."""
    rng = np.random.default_rng(8)
    raw = random_blocks(rng, Q.Q8_0, 6 * 4).reshape(6, -1)
    x = activations(rng, 2, 128)
    expected = run_matmul(raw, Q.Q8_0, x)
    raw.setflags(write=False)
    assert np.array_equal(run_matmul(raw, Q.Q8_0, x), expected)
    out = np.empty((2, 6), np.float32)
    K.matmul(memoryview(raw), int(Q.Q8_0), x, out)
    assert np.array_equal(out, expected)


def test_dequantize_rejects_wrong_sizes():
    with pytest.raises(ValueError, match="do not hold 64 values"):
        K.dequantize(np.zeros(33, np.uint8), int(Q.Q8_0), np.zeros(64, np.float32))
    with pytest.raises(ValueError, match="cannot dequantize GGML type 15"):
        K.dequantize(np.zeros(292, np.uint8), int(Q.Q8_K), np.zeros(256, np.float32))


def test_threads_and_paths_are_validated():
    with pytest.raises(ValueError, match="thread count"):
        K.set_threads(0)
    with pytest.raises(ValueError, match="unknown kernel path"):
        K.set_kernel_path("neon")


def test_environment_forces_scalar_path():
    code = "from llmcli import _kernels as K; print(K.kernel_path())"
    env = dict(os.environ, LLMCLI_KERNELS="scalar")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "scalar"


# ---------------------------------------------------------------- the GIL


def python_ran_mid_call(call):
    """Run `call` in a thread while this thread loops in Python: True if a loop step
    landed in the middle third of the call. A call that holds the GIL lets Python run
    only at its edges (before it takes the GIL back, at most a switch interval)."""
    import threading
    import time

    span, stamps = [], []

    def worker():
        span.append(time.perf_counter())
        call()
        span.append(time.perf_counter())

    thread = threading.Thread(target=worker)
    thread.start()
    while thread.is_alive():
        stamps.append(time.perf_counter())
    thread.join()
    start, end = span
    third = (end - start) / 3
    return any(start + third < t < end - third for t in stamps)


def test_kernels_release_the_gil():
    rng = np.random.default_rng(5)
    w = random_blocks(rng, Q.Q4_0, 2048 * 4096 // 32).reshape(2048, -1)
    x = rng.standard_normal((128, 4096)).astype(np.float32)
    out = np.empty((128, 2048), np.float32)
    threads = K.get_threads()
    K.set_threads(1)   # one core for the kernel, one for the Python loop
    try:
        assert python_ran_mid_call(lambda: K.matmul(w, int(Q.Q4_0), x, out))
    finally:
        K.set_threads(threads)
    # The check itself can see a held GIL: list.sort never lets go of it.
    values = rng.random(2_000_000).tolist()
    assert not python_ran_mid_call(lambda: sorted(values))


# ---------------------------------------------------------------- real model tensors


def real_tensors(path, wanted_types):
    """One 2-D tensor of each wanted type (the first in file order), via gguf-py."""
    reader = gguf.GGUFReader(str(path))
    found = {}
    for tensor in reader.tensors:
        qtype = Q(tensor.tensor_type)
        if qtype in wanted_types and qtype not in found and len(tensor.shape) == 2:
            found[qtype] = tensor
    assert set(found) == set(wanted_types), f"missing {set(wanted_types) - set(found)}"
    return found


def check_real_tensor(tensor, max_rows=2048):
    qtype = Q(tensor.tensor_type)
    k = int(tensor.shape[0])
    rows = np.asarray(tensor.data)[:max_rows]  # (n_rows, row_bytes) view of the file
    w_float = dequantized(rows, qtype).reshape(len(rows), k)
    ours = np.empty(w_float.size, np.float32)
    K.dequantize(np.ascontiguousarray(rows).reshape(-1), int(qtype), ours)
    assert np.array_equal(ours.view(np.uint32), w_float.reshape(-1).view(np.uint32)), tensor.name
    x = activations(np.random.default_rng(1), 5, k)
    for n_tok in (1, 5):
        got = run_matmul(rows, qtype, x[:n_tok])
        exact = x[:n_tok].astype(np.float64) @ w_float.astype(np.float64).T
        assert np.all(np.abs(got - exact) <= activation_error_bound(w_float, x[:n_tok], qtype)), tensor.name


def test_real_smollm2_tensors(smollm2_path):
    for tensor in real_tensors(smollm2_path, {Q.Q4_1, Q.Q8_0}).values():
        check_real_tensor(tensor)


def test_real_gemma3_tensors(gemma3_path):
    for tensor in real_tensors(gemma3_path, {Q.Q5_0, Q.Q4_K, Q.Q6_K, Q.Q8_0}).values():
        check_real_tensor(tensor)
