"""The generation loop: prefill the prompt in one batched pass, then decode one token at
a time with the KV cache, yielding a `Chunk` per token. Only the CLI prints.

    for chunk in generate(model, prompt_ids, make_sampler(temperature=0)):
        print(chunk.text, end="", flush=True)

Text is released as soon as it is certain: the stream decoder holds back incomplete
UTF-8, and a `StopFilter` holds back any tail that could still grow into a stop string
(a stop string is never released, even when it arrives split across tokens). The last
chunk has `finish_reason` set: stop, length, eos, context or interrupted.

KV cache contract (for callers that keep the model between calls, like `llm chat`):
pass `cached_ids` = the ids whose keys/values the model holds now, and only the part of
the prompt after their common prefix is evaluated. When the generator ends, the model
holds `(prompt_ids + generated ids)[:model.n_past]`: every token but the last one
(the last token is never evaluated: nothing follows it).
"""
import time
from dataclasses import dataclass, field

from llmcli.errors import ContextOverflowError, InputError
from llmcli.sampling import top_logprobs as model_top_logprobs

FINISH_REASONS = ("stop", "length", "eos", "context", "interrupted")


@dataclass
class Stats:
    """Counts and timings of one generation (seconds; consumer time is excluded)."""
    prompt_tokens: int = 0
    prefill_tokens: int = 0          # prompt tokens evaluated now (the rest were cached)
    prefill_seconds: float = 0.0
    generated_tokens: int = 0
    decode_tokens: int = 0           # single-token evaluations after the prefill
    decode_seconds: float = 0.0      # their time, plus sampling after the first token
    first_token_seconds: float = 0.0  # prefill + first sampling: time to first token

    @property
    def prefill_tokens_per_second(self):
        return self.prefill_tokens / self.prefill_seconds if self.prefill_seconds else 0.0

    @property
    def decode_tokens_per_second(self):
        return self.decode_tokens / self.decode_seconds if self.decode_seconds else 0.0

    def as_dict(self):
        return {
            "prompt_tokens": self.prompt_tokens,
            "prefill_tokens": self.prefill_tokens,
            "prefill_seconds": round(self.prefill_seconds, 6),
            "prefill_tokens_per_second": round(self.prefill_tokens_per_second, 3),
            "generated_tokens": self.generated_tokens,
            "decode_seconds": round(self.decode_seconds, 6),
            "decode_tokens_per_second": round(self.decode_tokens_per_second, 3),
            "time_to_first_token": round(self.first_token_seconds, 6),
        }


@dataclass
class Chunk:
    """One step of generation.

    token: the sampled id (None only on an `interrupted` chunk that carries no new token)
    text: the text to print now (may be empty while a stop string or UTF-8 is pending)
    piece: this token's own text from the stream decoder
    logprob, top_logprobs: log p(token) and the top (id, log p) under the model's raw
        distribution (before any sampler stage), when `logprobs` was asked
    prob, top_probs: p(token) and the top (id, p) in the distribution the sampler drew
        from, when `top_probs` > 0
    finish_reason: set on the last chunk only
    """
    token: int | None
    text: str
    piece: str = ""
    logprob: float | None = None
    top_logprobs: list = field(default_factory=list)
    prob: float | None = None
    top_probs: list = field(default_factory=list)
    finish_reason: str | None = None
    stats: Stats | None = None


class StopFilter:
    """Releases text except what is, or may still become, one of the stop strings."""

    def __init__(self, stops):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def push(self, text):
        """Add text; return (releasable text, whether a stop string was reached)."""
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            released, self.pending = self.pending[:min(hits)], ""
            return released, True
        n_hold = self._longest_partial_stop()
        cut = len(self.pending) - n_hold
        released, self.pending = self.pending[:cut], self.pending[cut:]
        return released, False

    def flush(self):
        """Everything still held (the stream ended before any stop string completed)."""
        released, self.pending = self.pending, ""
        return released

    def _longest_partial_stop(self):
        """Length of the longest tail of `pending` that begins some stop string."""
        longest = max((len(s) for s in self.stops), default=1) - 1
        for n in range(min(longest, len(self.pending)), 0, -1):
            tail = self.pending[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0


def check_prompt_fits(n_prompt, n_ctx):
    """A prompt must leave room for at least one generated token: no silent truncation."""
    if n_prompt == 0:
        raise InputError("the prompt is empty (0 tokens)")
    if n_prompt >= n_ctx:
        raise ContextOverflowError(
            f"the prompt has {n_prompt} tokens but the context window holds {n_ctx}, "
            "which leaves no room to generate; shorten the prompt or raise --ctx-size")


def check_text_could_fit(text, tokenizer, n_ctx):
    """Refuse, before tokenizing it, a text too long to fit whatever its split: it has at
    least len(text) / max_token_bytes tokens. (Tokenizing costs tens of bytes of memory per
    input byte: a 16 MiB prompt would peak near 1 GB only to be refused afterwards.)"""
    at_least = -(-len(text) // tokenizer.max_token_bytes)
    if at_least >= n_ctx:
        raise ContextOverflowError(
            f"the prompt has {len(text)} characters, so at least {at_least} tokens (no token "
            f"is longer than {tokenizer.max_token_bytes} bytes), but the context window holds "
            f"{n_ctx}; shorten the prompt or raise --ctx-size")


def common_prefix_length(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def generate(model, prompt_ids, sampler, max_tokens=256, stop=(), ignore_eos=False,
             logprobs=None, top_probs=0, cached_ids=None):
    """Yield a Chunk per generated token (see the module doc).

    sampler: callable (logits, history) -> id, with `.last` (see llmcli.sampling)
    logprobs: None, or K >= 0 to report log p(token) and the top K raw alternatives
    top_probs: K > 0 to report the top K of the sampler's own distribution
    cached_ids: ids already in the model's KV cache, to reuse their common prefix
    """
    prompt_ids = [int(i) for i in prompt_ids]
    check_prompt_fits(len(prompt_ids), model.n_ctx)
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    run = _Run(model, prompt_ids, sampler, stop, logprobs, top_probs)
    eog_ids = frozenset() if ignore_eos else model.tokenizer.eog_ids
    try:
        logits = run.prefill(cached_ids)
        for step in range(max_tokens):
            chunk = run.sample(logits)
            if chunk.token in eog_ids:
                run.finish(chunk, "eos")
            else:
                run.release(chunk)
                if chunk.finish_reason is None and step + 1 == max_tokens:
                    run.finish(chunk, "length")
                elif chunk.finish_reason is None and len(run.history) >= model.n_ctx:
                    run.finish(chunk, "context")
            yield chunk
            if chunk.finish_reason:
                return
            logits = run.decode(chunk.token)
    except KeyboardInterrupt:
        yield run.interrupted()


class _Run:
    """The state of one generate() call: history, decoders, timings."""

    def __init__(self, model, prompt_ids, sampler, stop, logprobs, top_probs):
        self.model, self.sampler = model, sampler
        self.prompt_ids, self.history = prompt_ids, list(prompt_ids)
        self.decoder = model.tokenizer.stream_decoder()
        self.stops = StopFilter(stop)
        self.logprobs, self.top_probs = logprobs, top_probs
        self.stats = Stats(prompt_tokens=len(prompt_ids))
        self.n_good = 0   # cache positions known to be fully written

    def prefill(self, cached_ids):
        model, start = self.model, time.perf_counter()
        keep = 0
        if cached_ids is not None:
            # Evaluate at least the last prompt token: its logits start the generation.
            keep = min(common_prefix_length(cached_ids, self.prompt_ids), model.n_past,
                       len(self.prompt_ids) - 1)
        if keep:
            model.truncate(keep)
        else:
            model.reset()
        self.n_good = keep
        logits = model.eval(self.prompt_ids[keep:])
        self.n_good = model.n_past
        self.stats.prefill_tokens = len(self.prompt_ids) - keep
        self.stats.prefill_seconds = time.perf_counter() - start
        return logits

    def sample(self, logits):
        start = time.perf_counter()
        token = self.sampler(logits, self.history)
        chunk = Chunk(token=token, text="", stats=self.stats)
        if self.logprobs is not None:
            chunk.logprob, chunk.top_logprobs = model_top_logprobs(logits, token, self.logprobs)
        if self.top_probs > 0:
            last = self.sampler.last
            chunk.prob, chunk.top_probs = last.prob_of(token), last.top(self.top_probs)
        self.history.append(token)
        self.stats.generated_tokens += 1
        elapsed = time.perf_counter() - start
        if self.stats.generated_tokens == 1:
            self.stats.first_token_seconds = self.stats.prefill_seconds + elapsed
        else:
            self.stats.decode_seconds += elapsed
        return chunk

    def decode(self, token):
        start = time.perf_counter()
        logits = self.model.eval([token])
        self.n_good = self.model.n_past
        self.stats.decode_tokens += 1
        self.stats.decode_seconds += time.perf_counter() - start
        return logits

    def release(self, chunk):
        """Feed the token's text through the decoder and the stop filter."""
        chunk.piece = self.decoder.feed(chunk.token)
        chunk.text, stopped = self.stops.push(chunk.piece)
        if stopped:
            chunk.finish_reason = "stop"

    def finish(self, chunk, reason):
        """End on this chunk: release everything still held back."""
        tail, _ = self.stops.push(self.decoder.flush())
        chunk.text += tail + self.stops.flush()
        chunk.finish_reason = reason

    def interrupted(self):
        """The final chunk after Ctrl-C: whatever text was held, and a cache trimmed to
        the positions whose evaluation completed."""
        if self.model.n_past > self.n_good:
            self.model.truncate(self.n_good)
        chunk = Chunk(token=None, text="", stats=self.stats)
        self.finish(chunk, "interrupted")
        return chunk
