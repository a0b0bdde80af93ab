"""A tiny deterministic stand-in for llmcli.model.Model and llmcli.tokenizer.Tokenizer,
following the interfaces of COMMON.md, so generation, sampling, stop strings, streaming
and the CLI logic can be tested without a real model.

Tokenizer: ids 0..255 are the bytes themselves; a few special tokens follow.
Model: the logits at each position are a function of every id in the cache (so a cache
truncated and re-extended must give the same logits as a fresh run), chosen by a rule.
"""
import codecs
import time
import zlib
from dataclasses import dataclass

import numpy as np

from llmcli.errors import ContextOverflowError

BOS, EOS, IM_START, IM_END = 256, 257, 258, 259
SPECIALS = {"<s>": BOS, "</s>": EOS, "<|im_start|>": IM_START, "<|im_end|>": IM_END}
N_VOCAB = 260

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class FakeStreamDecoder:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token):
        return self.utf8.decode(self.tokenizer.token_bytes(token))

    def flush(self):
        return self.utf8.decode(b"", final=True)


class FakeTokenizer:
    n_vocab = N_VOCAB
    bos_id, eos_id = BOS, EOS
    eog_ids = frozenset({EOS, IM_END})
    add_eos = False
    max_token_bytes = 4   # user text: one token per byte (the bound need only hold)

    def __init__(self, add_bos=False, chat_template=CHATML):
        self.add_bos = add_bos
        self.chat_template = chat_template

    def encode(self, text, *, add_special=True, parse_special=False):
        ids = [BOS] if add_special and self.add_bos else []
        pos = 0
        while pos < len(text):
            special = parse_special and next(
                (s for s in SPECIALS if text.startswith(s, pos)), None)
            if special:
                ids.append(SPECIALS[special])
                pos += len(special)
            else:
                ids.extend(text[pos].encode("utf-8"))
                pos += 1
        return ids

    def is_special(self, token):
        return token >= 256

    def token_bytes(self, token):
        # Control tokens render as nothing, as llama.cpp does when not asked for specials.
        return bytes([token]) if token < 256 else b""

    def token_piece(self, token):
        if token < 256:
            return bytes([token]).decode("latin-1")
        return next(s for s, i in SPECIALS.items() if i == token)

    def decode(self, ids):
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def stream_decoder(self):
        return FakeStreamDecoder(self)


@dataclass(frozen=True)
class FakeConfig:
    arch: str = "fake"
    n_vocab: int = N_VOCAB
    n_ctx_train: int = 512
    n_layers: int = 2
    n_embd: int = 8
    n_heads: int = 2
    n_kv_heads: int = 1
    head_dim: int = 8


class FakeModel:
    """Model interface over a rule: rule(cache_ids: tuple) -> float32[N_VOCAB] logits
    for the next token. Records each eval() call's length in `eval_calls`; raises
    KeyboardInterrupt on eval call number `interrupt_on_eval` (1-based) if set."""

    def __init__(self, rule, n_ctx=64, tokenizer=None, name="fake", delay=0.0):
        self.rule, self.delay = rule, delay
        self.n_ctx = n_ctx
        self.tokenizer = tokenizer or FakeTokenizer()
        self.config = FakeConfig()
        self.name, self.path = name, f"/nowhere/{name}.gguf"
        self.cache = []
        self.eval_calls = []
        self.interrupt_on_eval = None

    @property
    def n_past(self):
        return len(self.cache)

    def reset(self):
        self.cache = []

    def truncate(self, n):
        del self.cache[n:]

    def embedding(self, ids):
        """Deterministic stand-in vectors [len(ids), n_embd], one fixed row per id."""
        return np.stack([np.random.default_rng(int(i)).normal(size=self.config.n_embd)
                         .astype(np.float32) for i in ids])

    def eval(self, ids, all_logits=False, capture_attention=False):
        """capture_attention: fill attention_probs (per layer [n_heads, len(ids),
        n_past + len(ids)]) with causal rows, each a softmax of hashed scores."""
        if capture_attention:
            self.attention_probs = self._fake_attention(len(ids))
        ids = [int(i) for i in ids]
        if self.n_past + len(ids) > self.n_ctx:
            raise ContextOverflowError(
                f"{self.n_past} + {len(ids)} tokens exceed the context of {self.n_ctx}")
        self.eval_calls.append(len(ids))
        if self.delay:
            time.sleep(self.delay)   # a slow model, for signal and pipe tests
        if self.interrupt_on_eval == len(self.eval_calls):
            self.cache.extend(ids[: max(1, len(ids) // 2)])   # a half-written cache
            raise KeyboardInterrupt
        rows = []
        for token in ids:
            self.cache.append(token)
            rows.append(self.rule(tuple(self.cache)))
        return np.stack(rows) if all_logits else rows[-1]

    def _fake_attention(self, n):
        c, first = self.config, self.n_past
        rng = np.random.default_rng(first * 1000 + n)
        probs = []
        for _ in range(c.n_layers):
            scores = rng.normal(size=(c.n_heads, n, first + n)) * 2.0
            causal = np.arange(first + n)[None, :] > (first + np.arange(n))[:, None]
            scores[:, causal] = -np.inf
            weights = np.exp(scores - scores.max(axis=2, keepdims=True))
            probs.append((weights / weights.sum(axis=2, keepdims=True)).astype(np.float32))
        return probs

    def logits(self, ids):
        self.reset()
        return self.eval(ids, all_logits=True)


def hashed_rule(seed=0, scale=3.0):
    """Pseudo-random logits determined by the whole cache content."""
    def rule(cache):
        key = zlib.crc32(np.asarray(cache, dtype=np.int64).tobytes()) ^ seed
        return (np.random.default_rng(key).normal(size=N_VOCAB) * scale).astype(np.float32)
    return rule


def scripted_rule(reply, after, then=EOS):
    """Plays `reply` (text or ids) after the first occurrence of the id sequence `after`
    in the cache (e.g. the prompt), then `then` forever. The target gets logit 10, the
    next id 8, everything else 0, so sampling at temperature 1 still varies a little."""
    reply_ids = list(reply.encode("utf-8")) if isinstance(reply, str) else list(reply)
    after = list(after)

    def rule(cache):
        start = _find(cache, after)
        logits = np.zeros(N_VOCAB, dtype=np.float32)
        if start is None:
            target = ord(" ")
        else:
            j = len(cache) - (start + len(after))
            target = reply_ids[j] if j < len(reply_ids) else then
        logits[(target + 1) % N_VOCAB] = 8.0
        logits[target] = 10.0
        return logits
    return rule


def cycling_rule(text):
    """The next token is byte `len(cache) % len(text)` of text: endless, no EOS."""
    data = text.encode("utf-8")

    def rule(cache):
        logits = np.zeros(N_VOCAB, dtype=np.float32)
        logits[data[len(cache) % len(data)]] = 10.0
        return logits
    return rule


def _find(seq, sub):
    for i in range(len(seq) - len(sub) + 1):
        if list(seq[i:i + len(sub)]) == sub:
            return i
    return None


def scripted_model(prompt, reply, n_ctx=64, then=EOS, **kwargs):
    """A model that answers `prompt` (text, encoded by the fake tokenizer) with `reply`."""
    tokenizer = kwargs.pop("tokenizer", None) or FakeTokenizer()
    after = tokenizer.encode(prompt, add_special=False) if isinstance(prompt, str) else prompt
    return FakeModel(scripted_rule(reply, after, then), n_ctx=n_ctx, tokenizer=tokenizer,
                     **kwargs)
