"""A plain NumPy forward on dequantized float32 weights: the correctness oracle.

It shares nothing with the kernel forward in model.py except the config and the weight
table: every weight is dequantized to float32 once (llmcli.quants, the NumPy reference
dequantizer), and every step is a NumPy formula written from the papers/model cards.
Tests compare the kernel forward with it; benchmarks use it as the "no C core" baseline.

Same surface as Model for what both can do: n_past, reset(), truncate(n),
eval(ids, all_logits=False), logits(ids).
"""
import numpy as np

from llmcli.config import config_from_metadata
from llmcli.errors import ContextOverflowError
from llmcli.quants import dequantize
from llmcli.weights import load_weights

try:  # the shared NumPy references of the kernels, when they are available
    from llmcli import ops_ref
except ImportError:  # pragma: no cover - only before the ops module exists
    ops_ref = None


def load_reference(path, n_ctx=None):
    """ReferenceModel of a .gguf file (dequantizes every weight: ~4 bytes per parameter)."""
    from llmcli.gguf import open_gguf

    gguf_file = open_gguf(path)
    config = config_from_metadata(gguf_file.metadata)
    return ReferenceModel(config, load_weights(gguf_file, config), n_ctx=n_ctx)


def dense(tensor):
    """A weight as float32: vectors as they are, matrices as [rows, row_length]."""
    if not tensor.is_matrix:
        return np.asarray(tensor.data, dtype=np.float32)
    row_length, n_rows = tensor.shape
    values = dequantize(tensor.data.reshape(-1), tensor.type, row_length * n_rows)
    return values.reshape(n_rows, row_length)


class ReferenceModel:
    def __init__(self, config, weights, n_ctx=None):
        self.config = config
        self.n_ctx = n_ctx or config.n_ctx_train
        self.token_embd = dense(weights.token_embd)             # [n_vocab, n_embd]
        self.output = (self.token_embd if weights.tied_output
                       else dense(weights.output))              # [n_vocab, n_embd]
        self.output_norm = dense(weights.output_norm)           # [n_embd]
        self.layers = [{name: dense(getattr(layer, name)) for name in _present(layer)}
                       for layer in weights.layers]
        self.attention_probs = None   # per layer [n_heads, n_new, n_past] after capture
        self.reset()

    def reset(self):
        empty = np.zeros((0, self.config.n_kv_heads, self.config.head_dim), np.float32)
        self.k_cache = [empty] * self.config.n_layers   # per layer [n_past, n_kv_heads, head_dim]
        self.v_cache = [empty] * self.config.n_layers
        self.n_past = 0

    def truncate(self, n):
        """Keep the first n cached positions."""
        if not 0 <= n <= self.n_past:
            raise ValueError(f"cannot keep {n} of {self.n_past} cached positions")
        self.k_cache = [k[:n] for k in self.k_cache]
        self.v_cache = [v[:n] for v in self.v_cache]
        self.n_past = n

    def logits(self, ids):
        """Teacher-forced logits at every position of ids, from an empty cache."""
        self.reset()
        return self.eval(ids, all_logits=True)

    def eval(self, ids, all_logits=False, capture_attention=False):
        """Append ids at positions n_past.. and return the last (or every) position's logits."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.n_past + len(ids) > self.n_ctx:
            raise ContextOverflowError(f"{self.n_past} + {len(ids)} tokens exceed the "
                                       f"context of {self.n_ctx}")
        positions = np.arange(self.n_past, self.n_past + len(ids))
        hidden = self._forward(ids, positions, capture_attention)
        self.n_past += len(ids)
        if not all_logits:
            hidden = hidden[-1:]
        logits = self._output_logits(hidden)
        return logits if all_logits else logits[0]

    def _forward(self, ids, positions, capture_attention):
        cfg = self.config
        x = self.token_embd[ids] * np.float32(cfg.embd_scale)   # [n, n_embd]
        self.attention_probs = [] if capture_attention else None
        for i, layer in enumerate(self.layers):
            x = x + self._attention_block(i, layer, x, positions)
            x = x + self._ffn_block(layer, x)
        return x

    def _attention_block(self, i, layer, x, positions):
        cfg = self.config
        n = len(x)
        h = rmsnorm(x, layer["attn_norm"], cfg.rms_eps)
        q = (h @ layer["wq"].T).reshape(n, cfg.n_heads, cfg.head_dim)
        k = (h @ layer["wk"].T).reshape(n, cfg.n_kv_heads, cfg.head_dim)
        v = (h @ layer["wv"].T).reshape(n, cfg.n_kv_heads, cfg.head_dim)
        if cfg.qk_norm:
            q = rmsnorm(q, layer["q_norm"], cfg.rms_eps)
            k = rmsnorm(k, layer["k_norm"], cfg.rms_eps)
        base, freq_scale = cfg.layer_rope(i)
        q = rope(q, positions, base, freq_scale, cfg.rope_neox)
        k = rope(k, positions, base, freq_scale, cfg.rope_neox)
        self.k_cache[i] = np.concatenate([self.k_cache[i], k])
        self.v_cache[i] = np.concatenate([self.v_cache[i], v])
        out, probs = attention(q, self.k_cache[i], self.v_cache[i], positions,
                               cfg.attn_scale, cfg.layer_window(i))
        if self.attention_probs is not None:
            self.attention_probs.append(probs)
        out = out.reshape(n, cfg.n_q) @ layer["wo"].T
        if cfg.post_norms:
            out = rmsnorm(out, layer["post_attn_norm"], cfg.rms_eps)
        return out

    def _ffn_block(self, layer, x):
        cfg = self.config
        h = rmsnorm(x, layer["ffn_norm"], cfg.rms_eps)
        gate = h @ layer["w_gate"].T
        up = h @ layer["w_up"].T
        act = silu(gate) if cfg.ffn_act == "silu" else gelu_tanh(gate)
        out = (act * up) @ layer["w_down"].T
        if cfg.post_norms:
            out = rmsnorm(out, layer["post_ffn_norm"], cfg.rms_eps)
        return out

    def _output_logits(self, hidden):
        h = rmsnorm(hidden, self.output_norm, self.config.rms_eps)
        logits = h @ self.output.T
        cap = self.config.final_logit_softcap
        if cap:
            logits = np.float32(cap) * np.tanh(logits / np.float32(cap))
        return logits.astype(np.float32, copy=False)


def _present(layer):
    return [name for name, value in vars(layer).items() if value is not None]


# --- the operations, as formulas ---------------------------------------------------------

def rmsnorm(x, weight, eps):
    """x / sqrt(mean(x^2) + eps) * weight over the last axis."""
    mean_square = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(mean_square + np.float32(eps)) * weight


def rope(x, positions, base, freq_scale, neox):
    """Rotate x [n, heads, head_dim] by position: pair i turns by pos * base^(-2i/head_dim).

    Pairs are (x[2i], x[2i+1]) in llama.cpp's normal mode, (x[i], x[i + head_dim/2]) in
    NEOX mode."""
    head_dim = x.shape[-1]
    inv_freq = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.outer(positions * freq_scale, inv_freq)        # [n, head_dim/2]
    cos = np.cos(angles).astype(np.float32)[:, None, :]
    sin = np.sin(angles).astype(np.float32)[:, None, :]
    if neox:
        first, second = x[..., : head_dim // 2], x[..., head_dim // 2:]
    else:
        first, second = x[..., 0::2], x[..., 1::2]
    rotated_first = first * cos - second * sin
    rotated_second = first * sin + second * cos
    if neox:
        return np.concatenate([rotated_first, rotated_second], axis=-1)
    return np.stack([rotated_first, rotated_second], axis=-1).reshape(x.shape)


def attention(q, k, v, positions, scale, window):
    """Causal grouped-query attention of new queries q [n, heads, d] at `positions` over
    all cached keys/values [n_past, kv_heads, d]; a key at j is visible from i when
    j <= i and, with a window, i - j < window. Returns (out [n, heads, d], probs)."""
    n_heads, n_kv_heads = q.shape[1], k.shape[1]
    group = n_heads // n_kv_heads
    k = np.repeat(k, group, axis=1)                             # [n_past, heads, d]
    v = np.repeat(v, group, axis=1)
    scores = np.einsum("qhd,khd->hqk", q, k) * np.float32(scale)  # [heads, n, n_past]
    key_pos = np.arange(k.shape[0])
    visible = key_pos[None, :] <= positions[:, None]
    if window:
        visible &= positions[:, None] - key_pos[None, :] < window
    scores = np.where(visible[None], scores, -np.inf)
    probs = softmax(scores)
    out = np.einsum("hqk,khd->qhd", probs, v)
    return out, probs


def softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def silu(x):
    return x / (np.float32(1) + np.exp(-x))


def gelu_tanh(x):
    """GELU, tanh approximation (what Gemma calls gelu_pytorch_tanh)."""
    c = np.float32(np.sqrt(2.0 / np.pi))
    return np.float32(0.5) * x * (np.float32(1) + np.tanh(c * (x + np.float32(0.044715) * x ** 3)))
