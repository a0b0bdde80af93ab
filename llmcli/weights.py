"""The model's tensors, mapped once from the GGUF file and checked against its config.

The one table below says which GGUF tensor becomes which field, with the shape the config
demands. Every tensor is checked for type and shape before any forward runs, so kernels can
trust their inputs. Nothing is copied: matrices are uint8 views [rows, row_bytes] of the
memory-mapped file (still in their block format), norm vectors float32 views.

Shapes are in ggml order: (ne0, ne1) = (row length, number of rows), so a weight mapping
`k` inputs to `n` outputs has shape (k, n) and is stored as n rows of k values.
"""
from dataclasses import dataclass

import numpy as np

from llmcli.errors import ModelError
from llmcli.quants import GGMLType, row_nbytes

# Weight types our matmul/get_rows kernels read directly.
MATRIX_TYPES = frozenset({
    GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1,
    GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
})


def _always(config):
    return True


def _with_qk_norm(config):
    return config.qk_norm


def _with_post_norms(config):
    return config.post_norms


# our field          GGUF name (blk.N.*.weight) shape (ggml order)                   present when
LAYER_TABLE = (
    ("attn_norm",      "attn_norm",           lambda c: (c.n_embd,),               _always),
    ("wq",             "attn_q",              lambda c: (c.n_embd, c.n_q),         _always),
    ("wk",             "attn_k",              lambda c: (c.n_embd, c.n_kv),        _always),
    ("wv",             "attn_v",              lambda c: (c.n_embd, c.n_kv),        _always),
    ("q_norm",         "attn_q_norm",         lambda c: (c.head_dim,),             _with_qk_norm),
    ("k_norm",         "attn_k_norm",         lambda c: (c.head_dim,),             _with_qk_norm),
    ("wo",             "attn_output",         lambda c: (c.n_q, c.n_embd),         _always),
    ("post_attn_norm", "post_attention_norm", lambda c: (c.n_embd,),               _with_post_norms),
    ("ffn_norm",       "ffn_norm",            lambda c: (c.n_embd,),               _always),
    ("w_gate",         "ffn_gate",            lambda c: (c.n_embd, c.n_ff),        _always),
    ("w_up",           "ffn_up",              lambda c: (c.n_embd, c.n_ff),        _always),
    ("w_down",         "ffn_down",            lambda c: (c.n_ff, c.n_embd),        _always),
    ("post_ffn_norm",  "post_ffw_norm",       lambda c: (c.n_embd,),               _with_post_norms),
)
TOKEN_EMBD = ("token_embd.weight", lambda c: (c.n_embd, c.n_vocab))
OUTPUT_NORM = ("output_norm.weight", lambda c: (c.n_embd,))
# Absent in files whose output projection is tied to the token embedding.
OUTPUT = ("output.weight", lambda c: (c.n_embd, c.n_vocab))


@dataclass(frozen=True)
class Tensor:
    name: str          # GGUF tensor name
    type: GGMLType
    shape: tuple       # ggml order, see module docstring
    data: np.ndarray   # matrix: uint8 [rows, row_bytes] blocks; vector: float32 [n]

    @property
    def is_matrix(self):
        return len(self.shape) == 2


@dataclass(frozen=True)
class LayerWeights:
    attn_norm: Tensor
    wq: Tensor
    wk: Tensor
    wv: Tensor
    wo: Tensor
    ffn_norm: Tensor
    w_gate: Tensor
    w_up: Tensor
    w_down: Tensor
    q_norm: Tensor = None          # gemma3
    k_norm: Tensor = None          # gemma3
    post_attn_norm: Tensor = None  # gemma3
    post_ffn_norm: Tensor = None   # gemma3


@dataclass(frozen=True)
class Weights:
    token_embd: Tensor
    layers: tuple                  # LayerWeights per layer
    output_norm: Tensor
    output: Tensor                 # is token_embd when tied
    tied_output: bool
    file: object                   # the GGUFFile, kept open: every view points into its map


def load_weights(gguf_file, config):
    """Map and check every tensor of `gguf_file` for `config`; raises ModelError naming
    the first tensor that is missing, unexpected, or of the wrong type or shape."""
    tensors = gguf_file.tensors
    used = set()

    def take(name, shape_of):
        if name not in tensors:
            raise ModelError(f"missing tensor {name!r}")
        used.add(name)
        return _checked_tensor(gguf_file, tensors[name], shape_of(config))

    layers = []
    for i in range(config.n_layers):
        layer = {field: take(f"blk.{i}.{gguf_name}.weight", shape_of)
                 for field, gguf_name, shape_of, present in LAYER_TABLE if present(config)}
        layers.append(LayerWeights(**layer))
    token_embd = take(*TOKEN_EMBD)
    output_norm = take(*OUTPUT_NORM)
    tied = OUTPUT[0] not in tensors
    output = token_embd if tied else take(*OUTPUT)

    unexpected = [name for name in tensors if name not in used]
    if unexpected:
        raise ModelError(f"unexpected tensor {unexpected[0]!r} for architecture "
                         f"{config.arch} ({len(unexpected)} unused tensor(s))")
    return Weights(token_embd=token_embd, layers=tuple(layers), output_norm=output_norm,
                   output=output, tied_output=tied, file=gguf_file)


def _checked_tensor(gguf_file, info, expected_shape):
    shape = tuple(int(n) for n in info.shape)
    # ggml drops trailing dimensions of size 1 inconsistently; compare without them.
    while len(shape) > len(expected_shape) and shape[-1] == 1:
        shape = shape[:-1]
    if shape != expected_shape:
        raise ModelError(f"tensor {info.name!r} has shape {list(info.shape)}, "
                         f"expected {list(expected_shape)} for this config")
    raw = gguf_file.tensor_data(info.name)
    if len(expected_shape) == 1:
        if info.type != GGMLType.F32:
            raise ModelError(f"tensor {info.name!r} is {_type_name(info.type)}, expected F32")
        if raw.size != 4 * shape[0]:
            raise ModelError(f"tensor {info.name!r} holds {raw.size} bytes, "
                             f"expected {4 * shape[0]}")
        return Tensor(info.name, info.type, shape, raw.view(np.float32))
    if info.type not in MATRIX_TYPES:
        raise ModelError(f"tensor {info.name!r} has unsupported type {_type_name(info.type)}")
    # (the GGUF reader has checked that rows are whole blocks)
    row_length, n_rows = shape
    row_bytes = row_nbytes(info.type, row_length)
    if raw.size != n_rows * row_bytes:
        raise ModelError(f"tensor {info.name!r} holds {raw.size} bytes, "
                         f"expected {n_rows * row_bytes}")
    return Tensor(info.name, info.type, shape, raw.reshape(n_rows, row_bytes))


def _type_name(ggml_type):
    try:
        return GGMLType(ggml_type).name
    except ValueError:
        return f"type {int(ggml_type)}"

