"""ggml block formats: the type numbers, how many bytes a block of each type takes, and a
NumPy reference dequantization written from the block layouts in ggml-common.h.

A quantized row is a run of blocks. Each block holds `block_size` weights in `type_size`
bytes: one or two f16 scales followed by packed integers ("quants"). The K-quants
(Q4_K, Q5_K, Q6_K) group 256 weights into one super-block whose sub-block scales are
themselves quantized against f16 super-scales.

The reference is the slow, obviously-correct twin of the C kernels: it computes every
weight with the same float32 operations in the same order as ggml's scalar code, so it
is bit-exact with it (and with the `gguf` package, which the tests check).
"""
from enum import IntEnum

import numpy as np


class GGMLType(IntEnum):
    """ggml's tensor type numbers, as stored in GGUF tensor infos (ggml.h `ggml_type`).
    Numbers 4, 5 and 31-33, 36-38 belonged to formats ggml has removed."""
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41


QK_K = 256  # weights per K-quant super-block

# type -> (block_size: weights per block, type_size: bytes per block). Every known type
# has an entry, so the GGUF reader can lay out (and bounds-check) any file; only the
# types in _DEQUANTIZE below can be turned into numbers.
BLOCK_FORMATS = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.BF16: (1, 2),
    GGMLType.Q4_0: (32, 2 + 16),             # d, 32 x 4-bit
    GGMLType.Q4_1: (32, 2 + 2 + 16),         # d, m, 32 x 4-bit
    GGMLType.Q5_0: (32, 2 + 4 + 16),         # d, 32 high bits, 32 x 4-bit
    GGMLType.Q5_1: (32, 2 + 2 + 4 + 16),     # d, m, 32 high bits, 32 x 4-bit
    GGMLType.Q8_0: (32, 2 + 32),             # d, 32 x int8
    GGMLType.Q8_1: (32, 2 + 2 + 32),         # d, d*sum(q), 32 x int8
    GGMLType.Q2_K: (QK_K, 16 + 64 + 2 + 2),
    GGMLType.Q3_K: (QK_K, 32 + 64 + 12 + 2),
    GGMLType.Q4_K: (QK_K, 2 + 2 + 12 + 128),        # d, dmin, 8 x 6-bit (scale, min), 4-bit quants
    GGMLType.Q5_K: (QK_K, 2 + 2 + 12 + 32 + 128),   # ... plus 256 high bits
    GGMLType.Q6_K: (QK_K, 128 + 64 + 16 + 2),       # low 4 bits, high 2 bits, 16 x int8 scale, d
    GGMLType.Q8_K: (QK_K, 4 + 256 + 32),            # f32 d, 256 x int8, 16 x int16 sums
    GGMLType.IQ2_XXS: (QK_K, 2 + 64),
    GGMLType.IQ2_XS: (QK_K, 2 + 64 + 8),
    GGMLType.IQ3_XXS: (QK_K, 2 + 96),
    GGMLType.IQ1_S: (QK_K, 2 + 32 + 16),
    GGMLType.IQ4_NL: (32, 2 + 16),
    GGMLType.IQ3_S: (QK_K, 2 + 64 + 8 + 32 + 4),
    GGMLType.IQ2_S: (QK_K, 2 + 64 + 16),
    GGMLType.IQ4_XS: (QK_K, 2 + 2 + 4 + 128),
    GGMLType.I8: (1, 1),
    GGMLType.I16: (1, 2),
    GGMLType.I32: (1, 4),
    GGMLType.I64: (1, 8),
    GGMLType.F64: (1, 8),
    GGMLType.IQ1_M: (QK_K, 32 + 16 + 8),
    GGMLType.TQ1_0: (QK_K, 48 + 4 + 2),
    GGMLType.TQ2_0: (QK_K, 64 + 2),
    GGMLType.MXFP4: (32, 1 + 16),
    GGMLType.NVFP4: (64, 4 + 32),
    GGMLType.Q1_0: (128, 2 + 16),
}


def block_size(t):
    """Weights per block of type `t`."""
    return BLOCK_FORMATS[GGMLType(t)][0]


def type_size(t):
    """Bytes per block of type `t`."""
    return BLOCK_FORMATS[GGMLType(t)][1]


def row_nbytes(t, n):
    """Bytes taken by `n` weights of type `t`; `n` must be a whole number of blocks."""
    size, nbytes = BLOCK_FORMATS[GGMLType(t)]
    if n % size:
        raise ValueError(f"{n} weights is not a whole number of {GGMLType(t).name} "
                         f"blocks of {size}")
    return n // size * nbytes


def is_supported(t):
    """True if `t` can be dequantized (and so used for model weights)."""
    return t in _DEQUANTIZE


def dequantize(raw, t, n_elements):
    """The `n_elements` weights held in the bytes `raw` (uint8) of type `t`, as float32.

    Work goes in slices of blocks so temporaries stay small even for a 100M-weight
    embedding table."""
    t = GGMLType(t)
    if t not in _DEQUANTIZE:
        from llmcli.errors import GGUFError
        raise GGUFError(f"tensor type {t.name} is not supported (supported: "
                        f"{', '.join(x.name for x in _DEQUANTIZE)})")
    size, nbytes = BLOCK_FORMATS[t]
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size != row_nbytes(t, n_elements):
        raise ValueError(f"{n_elements} {t.name} weights take {row_nbytes(t, n_elements)} "
                         f"bytes, got {raw.size}")
    blocks = raw.reshape(-1, nbytes)
    out = np.empty((blocks.shape[0], size), dtype=np.float32)
    step = max(1, _SLICE_WEIGHTS // size)
    for start in range(0, blocks.shape[0], step):
        out[start:start + step] = _DEQUANTIZE[t](blocks[start:start + step])
    return out.reshape(-1)


_SLICE_WEIGHTS = 1 << 20


# --- field readers: `blocks` is uint8[n_blocks, type_size] ----------------------------

def _f16(blocks, at):
    """The f16 at byte `at` of every block, as float32[n_blocks, 1]."""
    return blocks[:, at:at + 2].copy().view("<f2").astype(np.float32)


def _nibbles(packed):
    """uint8[n, k] -> uint8[n, 2k]: all low nibbles first, then all high nibbles
    (byte j holds weight j in its low half and weight j + k in its high half)."""
    return np.concatenate([packed & 0x0F, packed >> 4], axis=1)


def _bits(packed_u32, n_bits):
    """uint32[n, 1] -> uint8[n, n_bits]: bit i of each word in column i."""
    shifts = np.arange(n_bits, dtype=np.uint32)
    return ((packed_u32 >> shifts) & 1).astype(np.uint8)


# --- one function per format: uint8[n_blocks, type_size] -> float32[n_blocks, block_size]

def _f32(blocks):
    return blocks.copy().view("<f4")


def _f16_weights(blocks):
    return blocks.copy().view("<f2").astype(np.float32)


def _bf16(blocks):
    # bf16 is the top half of an f32: widening is a 16-bit shift, exact.
    return (blocks.copy().view("<u2").astype(np.uint32) << 16).view(np.float32)


def _q8_0(blocks):
    d = _f16(blocks, 0)
    return blocks[:, 2:].view(np.int8).astype(np.float32) * d


def _q4_0(blocks):
    d = _f16(blocks, 0)
    q = _nibbles(blocks[:, 2:18]).astype(np.float32) - 8
    return d * q


def _q4_1(blocks):
    d, m = _f16(blocks, 0), _f16(blocks, 2)
    q = _nibbles(blocks[:, 4:20]).astype(np.float32)
    return d * q + m


def _q5_0(blocks):
    d = _f16(blocks, 0)
    high = _bits(blocks[:, 2:6].copy().view("<u4"), 32)
    q = (_nibbles(blocks[:, 6:22]) | (high << 4)).astype(np.float32) - 16
    return d * q


def _q5_1(blocks):
    d, m = _f16(blocks, 0), _f16(blocks, 2)
    high = _bits(blocks[:, 4:8].copy().view("<u4"), 32)
    q = (_nibbles(blocks[:, 8:24]) | (high << 4)).astype(np.float32)
    return d * q + m


def _k_scales_mins(packed):
    """The 12 scale bytes of Q4_K/Q5_K -> (scale, min), each uint8[n, 8] of 6-bit values.

    Sub-blocks 0-3 keep scale and min in the low 6 bits of bytes 0-3 and 4-7; sub-blocks
    4-7 keep their low 4 bits in the nibbles of bytes 8-11 and their top 2 bits in the
    spare top bits of bytes 0-3 (scales) and 4-7 (mins)."""
    lo_sc, lo_mn, packed_hi = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    hi_sc = (packed_hi & 0x0F) | ((lo_sc >> 6) << 4)
    hi_mn = (packed_hi >> 4) | ((lo_mn >> 6) << 4)
    scales = np.concatenate([lo_sc & 63, hi_sc], axis=1)
    mins = np.concatenate([lo_mn & 63, hi_mn], axis=1)
    return scales, mins


def _k_low_nibbles(packed):
    """128 bytes of 4-bit quants -> uint8[n, 8, 32]: each 32-byte run holds two
    sub-blocks, the first in the low nibbles and the next in the high nibbles."""
    runs = packed.reshape(-1, 4, 1, 32)
    return np.concatenate([runs & 0x0F, runs >> 4], axis=2).reshape(-1, 8, 32)


def _q4_k(blocks):
    d, dmin = _f16(blocks, 0), _f16(blocks, 2)
    scales, mins = _k_scales_mins(blocks[:, 4:16])
    q = _k_low_nibbles(blocks[:, 16:144]).astype(np.float32)
    sub_d = (d * scales.astype(np.float32))[:, :, None]
    sub_m = (dmin * mins.astype(np.float32))[:, :, None]
    return (sub_d * q - sub_m).reshape(-1, QK_K)


def _q5_k(blocks):
    d, dmin = _f16(blocks, 0), _f16(blocks, 2)
    scales, mins = _k_scales_mins(blocks[:, 4:16])
    # Weight l of sub-block s takes its 5th bit from bit s of high-bit byte l.
    shifts = np.arange(8, dtype=np.uint8)[None, :, None]
    high = (blocks[:, None, 16:48] >> shifts) & 1
    q = (_k_low_nibbles(blocks[:, 48:176]) | (high << 4)).astype(np.float32)
    sub_d = (d * scales.astype(np.float32))[:, :, None]
    sub_m = (dmin * mins.astype(np.float32))[:, :, None]
    return (sub_d * q - sub_m).reshape(-1, QK_K)


def _q6_k(blocks):
    # Two halves of 128 weights, each: 64 bytes of low nibbles, 32 bytes of 2-bit highs.
    # Quarter k of a half takes its low 4 bits from nibble (k // 2) of byte run (k % 2)
    # and its high 2 bits from bits 2k..2k+1 of the high bytes.
    low_runs = blocks[:, 0:128].reshape(-1, 2, 1, 2, 32)
    low = np.concatenate([low_runs & 0x0F, low_runs >> 4], axis=2).reshape(-1, 2, 4, 32)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)[None, None, :, None]
    high = (blocks[:, 128:192].reshape(-1, 2, 1, 32) >> shifts) & 3
    q = (low | (high << 4)).astype(np.float32).reshape(-1, 16, 16) - 32
    scales = blocks[:, 192:208].view(np.int8).astype(np.float32)
    d = _f16(blocks, 208)
    return ((d * scales)[:, :, None] * q).reshape(-1, QK_K)


_DEQUANTIZE = {
    GGMLType.F32: _f32,
    GGMLType.F16: _f16_weights,
    GGMLType.BF16: _bf16,
    GGMLType.Q8_0: _q8_0,
    GGMLType.Q4_0: _q4_0,
    GGMLType.Q4_1: _q4_1,
    GGMLType.Q5_0: _q5_0,
    GGMLType.Q5_1: _q5_1,
    GGMLType.Q4_K: _q4_k,
    GGMLType.Q5_K: _q5_k,
    GGMLType.Q6_K: _q6_k,
}

SUPPORTED_TYPES = tuple(_DEQUANTIZE)
