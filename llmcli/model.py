"""The transformer forward on our kernels, with its KV cache.

Weights stay in their quantized block format (views of the mapped GGUF, see weights.py);
every step is a call into llmcli._kernels. One forward serves both architectures: the
config says whether there are q/k norms, post-norms, which gated activation, which RoPE
pairing and window per layer.

Activations live in buffers allocated once, sized for a batch of PREFILL_CHUNK tokens;
longer inputs run in chunks. The KV cache holds, per layer, float32 rows [n_ctx, n_kv]:
the projections write k and v straight into the rows of their positions.
"""
import os
from dataclasses import dataclass

import numpy as np

from llmcli import _kernels as K
from llmcli.config import config_from_metadata
from llmcli.errors import ContextOverflowError, ContextSizeError, InputError, ModelError
from llmcli.weights import load_weights

DEFAULT_MODEL = "smollm2"
DEFAULT_N_CTX = 4096       # context when none is asked for (capped by the trained one)
PREFILL_CHUNK = 512        # most tokens one forward pass handles; sizes the buffers

# Projections whose input is refined to about 16-bit precision (LayerStack's refine). The
# 8-bit activations cost most accuracy there, measured against the float reference by
# making one class of matrices exact at a time: the attention input on SmolLM2 (it drives
# the worst logit error), and Gemma 3's FFN down projection, whose input (gelu(gate) * up)
# is heavy-tailed, so 8-bit blocks of 256 resolve it badly. The cost is a second pass of
# those matrices over weights already in cache.
REFINED_INPUTS = {"llama": ("qkv",), "gemma3": ("down",)}


def load(name_or_path=None, n_ctx=None, threads=None, n_batch=PREFILL_CHUNK):
    """Load a model by registry name or .gguf path. n_ctx: context length (default
    min(trained, 4096)); threads: kernel threads (default: the OpenMP default);
    n_batch: most tokens per forward pass (longer inputs run in chunks)."""
    from llmcli.gguf import open_gguf
    from llmcli.models import ensure_local, looks_like_path
    from llmcli.tokenizer import Tokenizer

    name_or_path = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    path = ensure_local(name_or_path, quiet=True)
    gguf_file = open_gguf(path)
    config = config_from_metadata(gguf_file.metadata)
    weights = load_weights(gguf_file, config)
    tokenizer = Tokenizer.from_metadata(gguf_file.metadata)
    if tokenizer.n_vocab > config.n_vocab:
        raise ModelError(f"the tokenizer has {tokenizer.n_vocab} tokens but token_embd.weight "
                         f"only {config.n_vocab} rows")
    if threads is not None:
        set_threads(threads)
    name = os.path.splitext(os.path.basename(path))[0] if looks_like_path(name_or_path) \
        else name_or_path
    return Model(config, weights, tokenizer, n_ctx=n_ctx, name=name, path=path, n_batch=n_batch)


def set_threads(threads):
    """Threads of every kernel (process-wide)."""
    if threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    K.set_threads(int(threads))


@dataclass(frozen=True)
class _Buffers:
    """The activation buffers, for up to `capacity` tokens; the layers read and write them
    (llmcli/_forward.pxi), Python only x and normed."""
    x: np.ndarray          # [n, n_embd] residual stream
    normed: np.ndarray     # [n, n_embd] rmsnorm(x); after the last layer: final-normed
    q: np.ndarray          # [n, n_heads * head_dim] queries
    k: np.ndarray          # [n, n_kv_heads * head_dim] keys, then copied into the cache
    v: np.ndarray          # [n, n_kv_heads * head_dim] values, likewise
    attn: np.ndarray       # [n, n_heads * head_dim] attention output
    proj: np.ndarray       # [n, n_embd] output of wo, then of w_down
    gate: np.ndarray       # [n, n_ff] w_gate output, then the gated activation
    up: np.ndarray         # [n, n_ff] w_up output
    pos: np.ndarray        # int32 [n] positions


class _Activations:
    """Activation buffers allocated once for up to `capacity` tokens; batch(n) gives the
    views of the first n rows of x and normed (cached: decode steps reuse the same views)."""

    def __init__(self, config, capacity):
        c = config
        self.capacity = capacity
        self.buffers = _Buffers(
            x=np.zeros((capacity, c.n_embd), np.float32),
            normed=np.zeros((capacity, c.n_embd), np.float32),
            q=np.zeros((capacity, c.n_q), np.float32),
            k=np.zeros((capacity, c.n_kv), np.float32),
            v=np.zeros((capacity, c.n_kv), np.float32),
            attn=np.zeros((capacity, c.n_q), np.float32),
            proj=np.zeros((capacity, c.n_embd), np.float32),
            gate=np.zeros((capacity, c.n_ff), np.float32),
            up=np.zeros((capacity, c.n_ff), np.float32),
            pos=np.zeros(capacity, np.int32))
        self.last = None   # the views of the latest batch

    def batch(self, n):
        if self.last is None or len(self.last.x) != n:
            self.last = _Batch(x=self.buffers.x[:n], normed=self.buffers.normed[:n])
        return self.last


@dataclass(frozen=True)
class _Batch:
    x: np.ndarray
    normed: np.ndarray


class Model:
    """A loaded model: config, weights, tokenizer, KV cache, and the forward."""

    def __init__(self, config, weights, tokenizer=None, n_ctx=None, name=None, path=None,
                 n_batch=PREFILL_CHUNK):
        if n_ctx is None:
            n_ctx = min(config.n_ctx_train, DEFAULT_N_CTX)
        if not 1 <= n_ctx <= config.n_ctx_train:
            raise ContextSizeError(f"context length {n_ctx} is outside 1..{config.n_ctx_train} "
                             "(the model's trained context)")
        self.config = config
        self.weights = weights
        self.tokenizer = tokenizer
        self.name = name
        self.path = path
        self.n_ctx = n_ctx
        self.n_past = 0
        self.attention_probs = None   # after eval(capture_attention=True): per layer probs
        # np.zeros maps untouched pages lazily: a long context costs memory only when used.
        # Head-major [n_kv_heads, n_ctx, head_dim]: attention streams each head's rows.
        cache_shape = (config.n_kv_heads, n_ctx, config.head_dim)
        self.k_cache = [np.zeros(cache_shape, np.float32) for _ in range(config.n_layers)]
        self.v_cache = [np.zeros(cache_shape, np.float32) for _ in range(config.n_layers)]
        if n_batch < 1:
            raise InputError(f"batch size must be >= 1, got {n_batch}")
        self._act = _Activations(config, min(n_batch, n_ctx))
        self._layers = self._layer_stack(weights.layers)

    def _layer_stack(self, layer_weights):
        """The layers in one compiled call (llmcli/_forward.pxi) over these per-layer
        weights, bound to this model's caches and activation buffers."""
        c, buffers = self.config, self._act.buffers
        return K.LayerStack(
            c, layer_weights, self.k_cache, self.v_cache,
            [c.layer_rope_base(i) for i in range(c.n_layers)],
            [c.layer_window(i) for i in range(c.n_layers)],
            {name: getattr(buffers, name)
             for name in ("x", "normed", "q", "k", "v", "attn", "proj", "gate", "up", "pos")},
            refine=REFINED_INPUTS.get(c.arch, ()))

    # ---- the cache ----

    def reset(self):
        """Forget every cached position."""
        self.n_past = 0

    def truncate(self, n):
        """Keep the first n cached positions (later rows are overwritten by the next eval)."""
        if not 0 <= n <= self.n_past:
            raise InputError(f"cannot keep {n} of {self.n_past} cached positions")
        self.n_past = n

    # ---- evaluation ----

    def logits(self, ids):
        """Teacher-forced logits [len(ids), n_vocab] at every position, from an empty cache."""
        self.reset()
        return self.eval(ids, all_logits=True)

    def eval(self, ids, all_logits=False, capture_attention=False):
        """Append ids at positions n_past.. and return the logits of the last position
        (n_vocab,), or of every new position (len(ids), n_vocab) with all_logits.

        capture_attention: also store in self.attention_probs, per layer, the attention
        weights [n_heads, len(ids), n_past + len(ids)] of the new positions (slow path)."""
        ids = self._checked_ids(ids)
        n = len(ids)
        logits = np.empty((n if all_logits else 1, self.config.n_vocab), np.float32)
        probs = self._new_probs(n) if capture_attention else None
        self.attention_probs = None
        for start in range(0, n, self._act.capacity):
            chunk = ids[start:start + self._act.capacity]
            last_chunk = start + len(chunk) == n
            chunk_probs = self._new_probs(len(chunk)) if capture_attention else None
            self._forward(chunk, chunk_probs)
            if chunk_probs is not None:
                for layer_probs, got in zip(probs, chunk_probs):
                    layer_probs[:, start:start + len(chunk), :got.shape[2]] = got
            if all_logits:
                self._output(slice(0, len(chunk)), logits[start:start + len(chunk)])
            elif last_chunk:
                self._output(slice(len(chunk) - 1, len(chunk)), logits)
        self.attention_probs = probs
        return logits if all_logits else logits[0]

    def embedding(self, ids):
        """The vectors [len(ids), n_embd] the first layer receives for these ids: the
        embedding rows, scaled as the forward scales them (read-only look-up, for
        `llm explain`; the cache is untouched)."""
        ids = self._checked_ids_in_vocab(ids)
        out = np.empty((len(ids), self.config.n_embd), np.float32)
        self._embed(ids, out)
        return out

    def _checked_ids(self, ids):
        ids = self._checked_ids_in_vocab(ids)
        if self.n_past + ids.size > self.n_ctx:
            raise ContextOverflowError(f"{self.n_past} cached + {ids.size} new tokens exceed "
                                       f"the context of {self.n_ctx} tokens")
        return ids

    def _checked_ids_in_vocab(self, ids):
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            raise InputError("no tokens to evaluate")
        bad = (ids < 0) | (ids >= self.config.n_vocab)
        if bad.any():
            raise InputError(f"token id {ids[bad][0]} is outside the vocabulary "
                             f"(0..{self.config.n_vocab - 1})")
        return ids.astype(np.int32)

    def _new_probs(self, n):
        """Per layer, room for the attention weights of n new positions over all rows."""
        c = self.config
        return [np.zeros((c.n_heads, n, self.n_past + n), np.float32)
                for _ in range(c.n_layers)]

    # ---- the forward ----

    def _forward(self, ids, probs=None):
        """Run the layers over ids at positions n_past.., leaving the final-normed hidden
        states in the `normed` buffer, and advance n_past."""
        n = len(ids)
        act = self._act.batch(n)
        # token embeddings
        self._embed(ids, act.x)
        # every layer (llmcli/_forward.pxi): rmsnorm, q/k/v projections (+ per-head q/k
        # norms for gemma3), RoPE, attention over the cache, output projection (+ post-norm),
        # residual; rmsnorm, gate/up projections, gated activation, down projection
        # (+ post-norm), residual
        self._layers.run(n, self.n_past, probs)
        # final norm
        self._final_norm(act)
        self.n_past += n

    def _embed(self, ids, out):
        """The embedding rows of int32 ids into out [len(ids), n_embd], scaled as the
        model wants them (gemma3 multiplies by sqrt(n_embd))."""
        w, scale = self.weights.token_embd, self.config.embd_scale
        K.get_rows(w.data, w.type, ids, out)
        if scale != 1.0:
            out *= np.float32(scale)

    def _final_norm(self, act):
        """The last layer's output (act.x) normed into act.normed, ready for the logits."""
        c = self.config
        K.rmsnorm(act.x, self.weights.output_norm.data, c.rms_eps, act.normed)

    def _output(self, rows, logits):
        """Logits of the batch rows `rows` (final-normed hidden states) into logits."""
        out = self.weights.output
        K.matmul(out.data, out.type, self._act.last.normed[rows], logits)
        cap = self.config.final_logit_softcap
        if cap:
            np.multiply(np.tanh(logits / np.float32(cap), out=logits), np.float32(cap),
                        out=logits)

    def __repr__(self):
        return (f"Model({self.name!r}, arch={self.config.arch}, n_ctx={self.n_ctx}, "
                f"n_past={self.n_past})")
