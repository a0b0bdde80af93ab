"""Choosing the next token from the logits: a chain of small pure functions.

The chain runs in this fixed order (the same default order as llama.cpp):

    repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw

Each stage takes and returns a `Candidates` pair (token ids, logits) and only ever
shrinks it. The chain starts from a `shortlist` that already holds every token that can
survive top-k whatever the penalty does, so the vocabulary-sized work per step is one
argpartition over the model's float32 logits (the vocabulary is 262,144 for Gemma 3);
the rest touches a few dozen float64 numbers. top-p and min-p judge probabilities at
temperature 1; temperature only reshapes what is left before the draw. Temperature 0
means greedy: the argmax of the penalized logits (no filter can change it).

`make_sampler(...)` returns a `Sampler`: call it with the logits and the token history to
get a token id; afterwards `sampler.last` holds the distribution it drew from (for
`--show-probs`) and `sampler.describe()` the chain in words (for `--verbose`).
"""
import math
import secrets
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Candidates:
    """Tokens still in the running: ids (int64[n]) and their logits (float64[n]).
    `ids` is None while every token of the vocabulary is a candidate (saves an arange)."""
    ids: np.ndarray | None
    logits: np.ndarray

    def token_ids(self):
        return np.arange(len(self.logits)) if self.ids is None else self.ids

    def take(self, positions):
        """The candidates at these positions (indices into this set)."""
        ids = positions if self.ids is None else self.ids[positions]
        return Candidates(np.asarray(ids, dtype=np.int64), self.logits[positions])


def softmax(logits):
    """Probabilities from logits, in float64, stable against large logits."""
    shifted = np.exp(logits - np.max(logits))
    return shifted / shifted.sum()


def log_softmax(logits):
    """Log-probabilities from logits (float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    return logits - logsumexp(logits)


def logsumexp(logits):
    """log(sum(exp(logits))) without overflow. The exponentials stay in the logits' own
    precision (float32 from the model: 6x faster over 262,144 entries than converting
    to float64 first, whose fresh buffer costs page faults every step); the sum is
    accumulated in float64."""
    top = np.max(logits)
    return float(top) + math.log(np.exp(logits - top).sum(dtype=np.float64))


def top_logprobs(logits, token, k):
    """The model's own view of a step, before any sampler stage: log p(token) and the
    k most likely (id, log p) pairs, from the full log-softmax of `logits`."""
    norm = logsumexp(logits)
    head = _most_likely(logits, k) if k > 0 else np.zeros(0, dtype=np.int64)
    alternatives = [(int(i), float(logits[i]) - norm) for i in head]
    return float(logits[token]) - norm, alternatives


# --- the stages ------------------------------------------------------------------------

def shortlist(logits, k, seen_ids=()):
    """Candidates holding the k highest logits after *any* change to the logits of
    `seen_ids` (the repetition penalty): the raw top k+len(seen) plus the seen ids.
    Exact, and it keeps the vocabulary-sized work to one argpartition over float32.
    k <= 0 or k >= n: every token (as float64)."""
    n = len(logits)
    if k <= 0 or k + len(seen_ids) >= n:
        return Candidates(None, np.array(logits, dtype=np.float64))
    width = k + len(seen_ids)
    top = np.array([np.argmax(logits)]) if width == 1 else _largest(logits, width)
    ids = _sorted_distinct(np.concatenate((top, np.asarray(seen_ids, dtype=np.int64))))
    return Candidates(ids, np.asarray(logits[ids], dtype=np.float64))


def _sorted_distinct(ids):
    """ids sorted, each once, as int64. Not np.unique/np.union1d: those import numpy.ma
    (~18 ms, paid at a run's first token)."""
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    return ids[first]


def penalize_repeats(cands, seen_ids, penalty):
    """Repetition penalty (CTRL, Keskar et al. 2019, as llama.cpp applies it): each
    candidate in `seen_ids` has its logit divided by `penalty` when positive and
    multiplied when negative, so it becomes less likely for penalty > 1."""
    if penalty == 1.0 or len(seen_ids) == 0:
        return cands
    seen_ids = np.asarray(seen_ids, dtype=np.int64)
    if cands.ids is None:
        where = seen_ids[(seen_ids >= 0) & (seen_ids < len(cands.logits))]
    else:
        where = np.flatnonzero(np.isin(cands.ids, seen_ids))
    logits = cands.logits.copy()
    values = logits[where]
    logits[where] = np.where(values > 0, values / penalty, values * penalty)
    return Candidates(cands.ids, logits)


def top_k(cands, k):
    """Keep the k highest logits (k <= 0 or k >= n keeps all)."""
    n = len(cands.logits)
    if k <= 0 or k >= n:
        return cands
    return cands.take(np.argpartition(cands.logits, n - k)[n - k:])


def top_p(cands, p):
    """Nucleus: keep the smallest set of most likely tokens whose probabilities (at
    temperature 1, over the current candidates) sum to at least p. p >= 1 keeps all."""
    if p >= 1.0 or len(cands.logits) == 1:
        return cands
    probs = softmax(cands.logits)
    # Look at the most likely few first and widen only when they do not reach p:
    # a full sort of a 262,144-entry vocabulary is rarely needed.
    n = len(probs)
    width = min(n, 64)
    while True:
        head = _most_likely(probs, width)
        cumulative = np.cumsum(probs[head])
        if cumulative[-1] >= p or width == n:
            n_keep = min(int(np.searchsorted(cumulative, p)) + 1, len(head))
            return cands.take(head[:n_keep])
        width = n if width * 8 > n // 4 else width * 8


def min_p(cands, p):
    """Keep tokens whose probability is at least p times the most likely one's
    (compared in logit space: logit >= max_logit + log p)."""
    if p <= 0.0:
        return cands
    threshold = np.max(cands.logits) + math.log(p)
    keep = np.flatnonzero(cands.logits >= threshold)
    return cands if len(keep) == len(cands.logits) else cands.take(keep)


def apply_temperature(cands, temperature):
    """Probabilities over the candidates at this temperature (> 0)."""
    return softmax(cands.logits / temperature)


def draw(probs, rng):
    """Index of one outcome of `probs`, drawn with the numpy Generator `rng`."""
    cumulative = np.cumsum(probs)
    u = rng.random() * cumulative[-1]
    return min(int(np.searchsorted(cumulative, u, side="right")), len(probs) - 1)


def _most_likely(values, count):
    """Indices of the `count` largest values, largest first; ties by lower index so the
    order (and hence a seeded draw) never depends on how argpartition broke them."""
    if count >= len(values):
        return np.argsort(-values, kind="stable")
    head = _largest(values, count)
    return head[np.lexsort((head, -values[head]))]


SAMPLE_PER_KEPT = 64  # values sampled per value kept, when narrowing a large array


def _largest(values, count):
    """Indices of the `count` largest values, in no particular order. On a large array
    (a vocabulary of logits) a strided sample gives a threshold first: the count-th
    largest sampled value is at most the count-th largest of all, so every one of the
    count largest is at or above it, and only those (about SAMPLE_PER_KEPT x count) are
    partitioned. Same values as one partition of everything, 3-4x faster at 49,152 and
    262,144 values. (Partitioning from the top end: numpy's introselect is several times
    slower on negated values with a small kth.)"""
    n = len(values)
    stride = n // (SAMPLE_PER_KEPT * count)
    if stride >= 2:
        sample = values[::stride]
        threshold = sample[np.argpartition(sample, len(sample) - count)[len(sample) - count]]
        near = np.flatnonzero(~(values < threshold))  # NaN counts as largest, as in a partition
        if count <= len(near) < n // 2:  # else it did not narrow: partition everything
            kept = np.argpartition(values[near], len(near) - count)[len(near) - count:]
            return near[kept]
    return np.argpartition(values, n - count)[n - count:]


# --- the sampler -------------------------------------------------------------------------

@dataclass(frozen=True)
class SamplerSettings:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64   # 0 = no window (penalty off), -1 = the whole history
    seed: int | None = None   # None = draw a random seed (reported by Sampler.seed)


class Draw:
    """One step's outcome: the token and the distribution it was drawn from (ids and
    probabilities summing to 1). For greedy sampling the distribution is the filtered
    candidates at temperature 1, computed only if asked. Sorting, too, happens only when
    asked: `top(k)` selects, `ids`/`probs` sort everything, most likely first."""

    def __init__(self, token, ids=None, probs=None, make_candidates=None):
        self.token = token
        self._ids, self._probs = ids, probs
        self._make_candidates = make_candidates  # greedy: () -> Candidates, on demand

    @property
    def greedy(self):
        return self._make_candidates is not None

    def _unsorted(self):
        if self._ids is None:
            cands = self._make_candidates()
            self._ids, self._probs = cands.token_ids(), softmax(cands.logits)
        return self._ids, self._probs

    @cached_property
    def _sorted(self):
        ids, probs = self._unsorted()
        order = _most_likely(probs, len(probs))
        return ids[order], probs[order]

    @property
    def ids(self):
        return self._sorted[0]

    @property
    def probs(self):
        return self._sorted[1]

    def prob_of(self, token):
        """Probability of `token` in this distribution (0.0 when filtered out)."""
        ids, probs = self._unsorted()
        where = np.flatnonzero(ids == token)
        return float(probs[where[0]]) if len(where) else 0.0

    def top(self, k):
        """The k most likely (id, probability) pairs, most likely first."""
        ids, probs = self._unsorted()
        head = _most_likely(probs, min(k, len(probs)))
        return [(int(ids[i]), float(probs[i])) for i in head]


class Sampler:
    """Callable `(logits, history) -> token id` running the chain of this module."""

    def __init__(self, settings):
        self.settings = settings
        self.seed = settings.seed if settings.seed is not None else secrets.randbits(32)
        self.rng = np.random.default_rng(self.seed)
        self.last = None

    def __call__(self, logits, history=()):
        """Token id drawn from `logits` (float32[n_vocab]) given the ids so far. The
        greedy distribution in `self.last` is computed lazily from `logits`: read it
        before the model overwrites them."""
        s = self.settings
        seen = self._recently_seen(history)
        if s.temperature == 0:
            cands = penalize_repeats(shortlist(logits, 1, seen), seen, s.repeat_penalty)
            token = int(cands.token_ids()[np.argmax(cands.logits)])
            self.last = Draw(token, make_candidates=lambda: self._filter(logits, seen))
            return token
        cands = self._filter(logits, seen)
        if cands.ids is not None:
            # Draw over the candidates in id order: top-k leaves them in whatever order
            # argpartition chose, and the seeded outcome must not depend on that.
            cands = cands.take(np.argsort(cands.ids))
        probs = apply_temperature(cands, s.temperature)
        ids = cands.token_ids()
        token = int(ids[draw(probs, self.rng)])
        self.last = Draw(token, ids=ids, probs=probs)
        return token

    def _filter(self, logits, seen):
        """Every stage before temperature: the candidates left to draw from."""
        s = self.settings
        cands = shortlist(logits, s.top_k, seen)
        cands = top_k(penalize_repeats(cands, seen, s.repeat_penalty), s.top_k)
        return min_p(top_p(cands, s.top_p), s.min_p)

    def _recently_seen(self, history):
        """Distinct ids in the repetition window (empty when the penalty is off)."""
        n = self.settings.repeat_last_n
        if self.settings.repeat_penalty == 1.0 or n == 0 or len(history) == 0:
            return ()
        window = history if n < 0 else history[-n:]
        return _sorted_distinct(window)

    def describe(self):
        """The chain in words, e.g. 'top-k 40 -> top-p 0.95 -> ... -> draw (seed 7)'."""
        s = self.settings
        stages = []
        if s.repeat_penalty != 1.0 and s.repeat_last_n != 0:
            window = "all tokens" if s.repeat_last_n < 0 else f"last {s.repeat_last_n} tokens"
            stages.append(f"repeat-penalty {s.repeat_penalty:g} over {window}")
        if s.temperature == 0:
            return " -> ".join(stages + ["greedy argmax (temperature 0)"])
        if 0 < s.top_k:
            stages.append(f"top-k {s.top_k}")
        if s.top_p < 1.0:
            stages.append(f"top-p {s.top_p:g}")
        if s.min_p > 0.0:
            stages.append(f"min-p {s.min_p:g}")
        stages.append(f"temperature {s.temperature:g}")
        stages.append(f"draw (seed {self.seed})")
        return " -> ".join(stages)


def make_sampler(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0,
                 repeat_last_n=64, seed=None):
    """A Sampler for these settings (see SamplerSettings for the meaning of each)."""
    return Sampler(SamplerSettings(temperature, top_k, top_p, min_p, repeat_penalty,
                                   repeat_last_n, seed))
