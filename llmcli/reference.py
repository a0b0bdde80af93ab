"""A plain NumPy forward on dequantized float32 weights: the correctness oracle.

It shares nothing with the kernel forward in model.py except the config and the weight
table: every weight is dequantized to float32 once (llmcli.quants, the NumPy reference
dequantizer), and every step is a NumPy formula (llmcli.ops_ref, the kernels' references).
Tests compare the kernel forward with it; benchmarks use it as the "no C core" baseline.

Same surface as Model for what both can do: n_past, reset(), truncate(n),
eval(ids, all_logits=False), logits(ids).
"""
import numpy as np

from llmcli.config import config_from_metadata
from llmcli.errors import ContextOverflowError
from llmcli.quants import dequantize
from llmcli.weights import load_weights

from llmcli.ops_ref import attention_mask, geglu_tanh, rmsnorm, rope, softmax, swiglu


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
        empty = np.zeros((0, self.config.n_kv), np.float32)
        self.k_cache = [empty] * self.config.n_layers   # per layer [n_past, n_kv_heads * head_dim]
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
        q = h @ layer["wq"].T                                    # [n, n_heads * head_dim]
        k = h @ layer["wk"].T                                    # [n, n_kv_heads * head_dim]
        v = h @ layer["wv"].T
        if cfg.qk_norm:
            q = rmsnorm(q.reshape(-1, cfg.head_dim), layer["q_norm"], cfg.rms_eps).reshape(n, -1)
            k = rmsnorm(k.reshape(-1, cfg.head_dim), layer["k_norm"], cfg.rms_eps).reshape(n, -1)
        base = cfg.layer_rope_base(i)
        q = rope(q, positions, cfg.n_heads, cfg.head_dim, base, cfg.rope_neox)
        k = rope(k, positions, cfg.n_kv_heads, cfg.head_dim, base, cfg.rope_neox)
        self.k_cache[i] = np.concatenate([self.k_cache[i], k])
        self.v_cache[i] = np.concatenate([self.v_cache[i], v])
        out, probs = attention(q, self.k_cache[i], self.v_cache[i], positions, cfg.n_heads,
                               cfg.n_kv_heads, cfg.head_dim, cfg.attn_scale,
                               cfg.layer_window(i))
        if self.attention_probs is not None:
            self.attention_probs.append(probs)
        out = out @ layer["wo"].T
        if cfg.post_norms:
            out = rmsnorm(out, layer["post_attn_norm"], cfg.rms_eps)
        return out

    def _ffn_block(self, layer, x):
        cfg = self.config
        h = rmsnorm(x, layer["ffn_norm"], cfg.rms_eps)
        gate = h @ layer["w_gate"].T
        up = h @ layer["w_up"].T
        gated = swiglu(gate, up) if cfg.ffn_act == "silu" else geglu_tanh(gate, up)
        # stay in float32: ops_ref.gelu_tanh's np.sqrt constant promotes to float64, and a
        # float64 activation would make every later product convert its weights to float64
        gated = gated.astype(np.float32, copy=False)
        out = gated @ layer["w_down"].T
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


def attention(q, k_cache, v_cache, q_pos, n_heads, n_kv_heads, head_dim, scale, window):
    """Causal grouped-query attention, as llmcli.ops_ref.attention computes it (same
    arguments and results; a test checks they agree) but arranged head-major so each
    product is one BLAS call: the strided per-head slices of the plain version make NumPy
    fall back to loops ~10x slower, minutes per test run on a 600-token prompt.
    Returns (out [n_tok, n_heads * head_dim], probs [n_heads, n_tok, max(q_pos) + 1])."""
    n_tok, group = len(q), n_heads // n_kv_heads
    n_visible = int(np.max(q_pos)) + 1
    # query head h reads KV head h // group: gather each KV head's group of queries
    queries = np.ascontiguousarray(
        q.reshape(n_tok, n_kv_heads, group, head_dim).transpose(1, 2, 0, 3))
    keys = np.ascontiguousarray(
        k_cache[:n_visible].reshape(n_visible, n_kv_heads, head_dim).transpose(1, 0, 2))
    values = np.ascontiguousarray(
        v_cache[:n_visible].reshape(n_visible, n_kv_heads, head_dim).transpose(1, 0, 2))
    scores = np.matmul(queries.reshape(n_kv_heads, group * n_tok, head_dim),
                       keys.transpose(0, 2, 1)) * np.float32(scale)
    scores = scores.reshape(n_kv_heads, group, n_tok, n_visible)
    probs = softmax(np.where(attention_mask(q_pos, n_visible, window), scores, -np.inf))
    out = np.matmul(probs.reshape(n_kv_heads, group * n_tok, n_visible), values)
    out = out.reshape(n_kv_heads, group, n_tok, head_dim).transpose(2, 0, 1, 3)
    return (out.reshape(n_tok, n_heads * head_dim),
            probs.reshape(n_heads, n_tok, n_visible))
