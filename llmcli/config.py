"""ModelConfig: the architecture of a model as one frozen dataclass, read from GGUF metadata.

Two architectures are supported, and everything the forward needs to tell them apart is a
field here, so model.py has one forward with switches instead of one forward per model:

  llama   pre-norm blocks, SwiGLU, RoPE on adjacent pairs (see `rope_neox`), tied or
          separate output projection. SmolLM2, TinyLlama, Llama 2 style files.
  gemma3  pre- and post-norms around attention and FFN, RMS-normed q and k, GELU(tanh)
          gating, embeddings scaled by sqrt(width), head_dim independent of the width,
          sliding-window attention on 5 of every 6 layers with their own RoPE base.
"""
import math
from dataclasses import dataclass

from llmcli.errors import ModelError

SUPPORTED_ARCHS = ("llama", "gemma3")

# Gemma 3 facts that are not in its GGUF metadata; llama.cpp and transformers hard-code them.
GEMMA3_SLIDING_PATTERN = 6       # layers 5, 11, 17, ... are global, the others sliding
GEMMA3_LOCAL_ROPE_BASE = 10000.0  # RoPE base of the sliding layers

# Upper bounds on sizes read from an untrusted file, checked before anything is sized
# from them (the tensors are checked against the config only later). Generous: the
# largest real models have ~130 layers; positions are int32 in the kernels; a head is
# at most OPS_MAX_HEAD_DIM (csrc/ops.h) wide.
MAX_LAYERS = 4096
MAX_CONTEXT = 2**31 - 1
MAX_HEAD_DIM = 512


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    n_vocab: int
    n_ctx_train: int
    n_layers: int
    n_embd: int                  # width of the residual stream
    n_ff: int                    # hidden width of the feed-forward network
    n_heads: int
    n_kv_heads: int              # fewer than n_heads: grouped-query attention
    head_dim: int
    rms_eps: float
    rope_base: float             # RoPE base of global (full-attention) layers
    rope_base_local: float       # RoPE base of sliding-window layers
    # RoPE pairing as stored in the GGUF: llama.cpp's converter permutes llama q/k rows so
    # that rotation pairs are adjacent (x[2i], x[2i+1]); gemma3 keeps the HF layout where
    # pairs are the two halves of the head (x[i], x[i + head_dim/2]), "NEOX" in llama.cpp.
    rope_neox: bool
    sliding_window: int          # keys a sliding layer sees, current one included; 0 = none
    sliding_layers: tuple        # per layer: True if it uses the sliding window
    attn_scale: float            # multiplies q.k before the softmax
    embd_scale: float            # multiplies the token embeddings
    ffn_act: str                 # "silu" (SwiGLU) or "gelu_tanh" (GeGLU)
    qk_norm: bool                # RMS norm of each q and k head before RoPE
    post_norms: bool             # RMS norm of the attention and FFN outputs before the residual add
    final_logit_softcap: float   # logits = cap * tanh(logits / cap); 0 = none

    @property
    def n_q(self):
        """Width of the concatenated query heads."""
        return self.n_heads * self.head_dim

    @property
    def n_kv(self):
        """Width of the concatenated key (or value) heads: one row of the KV cache."""
        return self.n_kv_heads * self.head_dim

    def layer_window(self, layer):
        """Sliding window of a layer, 0 for full attention."""
        return self.sliding_window if self.sliding_layers[layer] else 0

    def layer_rope_base(self, layer):
        """RoPE base of a layer."""
        return self.rope_base_local if self.sliding_layers[layer] else self.rope_base


def config_from_metadata(metadata):
    """Build the ModelConfig of a GGUF file's metadata; raises ModelError naming the key."""
    arch = _get(metadata, "general.architecture", str)
    if arch not in SUPPORTED_ARCHS:
        raise ModelError(f"unsupported architecture {arch!r} (general.architecture); "
                         f"supported: {', '.join(SUPPORTED_ARCHS)}")
    keys = _ArchKeys(metadata, arch)
    _check_rope_scaling(keys)
    if keys.get("expert_count", int, 0) > 0:
        raise ModelError(f"mixture-of-experts models are not supported ({arch}.expert_count)")

    n_embd = keys.positive("embedding_length")
    n_heads = keys.positive("attention.head_count")
    n_kv_heads = keys.positive("attention.head_count_kv", default=n_heads)
    if n_heads % n_kv_heads:
        raise ModelError(f"{arch}.attention.head_count ({n_heads}) is not a multiple of "
                         f"{arch}.attention.head_count_kv ({n_kv_heads})")
    head_dim = _head_dim(keys, n_embd, n_heads)
    n_layers = keys.positive("block_count", at_most=MAX_LAYERS)

    common = dict(
        arch=arch,
        n_vocab=_n_vocab(metadata, keys),
        n_ctx_train=keys.positive("context_length", at_most=MAX_CONTEXT),
        n_layers=n_layers,
        n_embd=n_embd,
        n_ff=keys.positive("feed_forward_length"),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        rms_eps=keys.positive("attention.layer_norm_rms_epsilon", float),
        rope_base=keys.positive("rope.freq_base", float, default=10000.0),
        final_logit_softcap=keys.get("final_logit_softcapping", float, 0.0),
    )
    if arch == "llama":
        return ModelConfig(
            **common, rope_base_local=common["rope_base"], rope_neox=False,
            sliding_window=0, sliding_layers=(False,) * n_layers,
            attn_scale=1.0 / math.sqrt(head_dim), embd_scale=1.0, ffn_act="silu",
            qk_norm=False, post_norms=False)
    window = keys.get("attention.sliding_window", int, 0)
    if window < 0:
        raise ModelError(f"{arch}.attention.sliding_window must be >= 0, got {window}")
    sliding = tuple(window > 0 and (i + 1) % GEMMA3_SLIDING_PATTERN != 0
                    for i in range(n_layers))
    return ModelConfig(
        **common, rope_base_local=GEMMA3_LOCAL_ROPE_BASE, rope_neox=True,
        sliding_window=window, sliding_layers=sliding,
        # query_pre_attn_scalar = head_dim for every Gemma 3 size except 27B
        attn_scale=1.0 / math.sqrt(head_dim), embd_scale=math.sqrt(n_embd),
        ffn_act="gelu_tanh", qk_norm=True, post_norms=True)


def _head_dim(keys, n_embd, n_heads):
    key_length = keys.get("attention.key_length", int, None)
    value_length = keys.get("attention.value_length", int, None)
    head_dim = key_length if key_length is not None else n_embd // n_heads
    if key_length is None and n_embd % n_heads:
        raise ModelError(f"{keys.arch}.embedding_length ({n_embd}) is not a multiple of "
                         f"{keys.arch}.attention.head_count ({n_heads})")
    if head_dim <= 0 or head_dim % 2 or head_dim > MAX_HEAD_DIM:
        source = ("attention.key_length" if key_length is not None
                  else "embedding_length / attention.head_count")
        raise ModelError(f"head size {head_dim} must be positive, even and at most "
                         f"{MAX_HEAD_DIM} ({keys.arch}.{source})")
    if value_length is not None and value_length != head_dim:
        raise ModelError(f"{keys.arch}.attention.value_length ({value_length}) differs from "
                         f"the key length ({head_dim}): not supported")
    rope_dim = keys.get("rope.dimension_count", int, head_dim)
    if rope_dim != head_dim:
        raise ModelError(f"{keys.arch}.rope.dimension_count ({rope_dim}) differs from the head "
                         f"size ({head_dim}): partial RoPE is not supported")
    return head_dim


def _n_vocab(metadata, keys):
    n_vocab = keys.get("vocab_size", int, None)
    tokens = metadata.get("tokenizer.ggml.tokens")
    n_tokens = len(tokens) if hasattr(tokens, "__len__") and not isinstance(tokens, str) else None
    if n_vocab is None:
        # gemma3 files have no vocab_size key: the vocabulary is the token list.
        if n_tokens is None:
            raise ModelError(f"missing metadata key {keys.arch}.vocab_size "
                             "(and no tokenizer.ggml.tokens to count)")
        n_vocab = n_tokens
    if n_vocab <= 0:
        raise ModelError(f"vocabulary size must be positive, got {n_vocab}")
    # Every id the model can produce must be a token the tokenizer can decode.
    if n_tokens is not None and n_tokens != n_vocab:
        raise ModelError(f"{keys.arch}.vocab_size is {n_vocab} but tokenizer.ggml.tokens "
                         f"holds {n_tokens} tokens")
    return n_vocab


def _check_rope_scaling(keys):
    kind = keys.get("rope.scaling.type", str, "none")
    factor = keys.get("rope.scaling.factor", float, 1.0)
    if kind != "none" and factor != 1.0:
        raise ModelError(f"RoPE scaling {kind!r} ({keys.arch}.rope.scaling.type) "
                         "is not supported")


class _ArchKeys:
    """Typed access to the `<arch>.` keys of the metadata."""

    def __init__(self, metadata, arch):
        self.metadata = metadata
        self.arch = arch

    def get(self, name, kind, default):
        key = f"{self.arch}.{name}"
        if key not in self.metadata:
            return default
        return _get(self.metadata, key, kind)

    def positive(self, name, kind=int, default=None, at_most=None):
        value = self.get(name, kind, default)
        if value is None:
            raise ModelError(f"missing metadata key {self.arch}.{name}")
        if not value > 0:
            raise ModelError(f"metadata key {self.arch}.{name} must be positive, got {value}")
        if at_most is not None and value > at_most:
            raise ModelError(f"metadata key {self.arch}.{name} = {value} is absurd "
                             f"(at most {at_most})")
        return value


def _get(metadata, key, kind):
    if key not in metadata:
        raise ModelError(f"missing metadata key {key}")
    value = metadata[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ModelError(f"metadata key {key} should be {kind.__name__}, "
                         f"got {type(value).__name__}")
    if kind is float and not math.isfinite(value):
        raise ModelError(f"metadata key {key} is not finite: {value}")
    return value
