"""The numbers behind the "how it works" views (`llm probs`, `score`, `attention`,
`explain`, `generate --show-probs`): pure functions over what the model and the sampler
already produced (logits, attention probabilities, a sampler's Draw). Nothing here runs
a forward or prints; the commands render.

Conventions: probabilities are float64 over the whole vocabulary unless said otherwise;
entropy and surprisal are in bits (log base 2), log-probabilities in nats (natural log,
as in the JSON of `llm generate --top-logprobs`); perplexity = exp(mean NLL in nats).
"""
import math

import numpy as np

from llmcli.errors import InputError
from llmcli.sampling import Candidates, log_softmax, min_p, top_k, top_p

LOG2E = 1.0 / math.log(2.0)


# --- next-token distributions -------------------------------------------------------------

def distribution(logits, temperature=1.0):
    """softmax(logits / temperature) over the whole vocabulary (float64, sums to 1).
    Temperature 0 is the greedy limit: all the mass on the argmax."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        probs = np.zeros_like(logits)
        probs[np.argmax(logits)] = 1.0
        return probs
    return np.exp(log_softmax(logits / temperature))


def entropy_bits(probs):
    """Shannon entropy -sum p log2 p (0 log 0 = 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    nonzero = probs[probs > 0]
    return float(-(nonzero * np.log2(nonzero)).sum())


def top_entries(probs, k, ids=None):
    """The k largest (id, p) pairs, most likely first, ties broken by the lower id.
    ids: the token id of each entry of probs (default: its index)."""
    probs = np.asarray(probs, dtype=np.float64)
    ids = np.arange(len(probs)) if ids is None else np.asarray(ids)
    k = min(k, len(probs))
    head = np.argpartition(-probs, k - 1)[:k] if k < len(probs) else np.arange(len(probs))
    head = head[np.lexsort((ids[head], -probs[head]))]
    return [(int(ids[i]), float(probs[i])) for i in head]


def kept_counts(logits, top_k_value, top_p_value, min_p_value):
    """How many tokens each sampler filter keeps on its own over the whole vocabulary,
    and the whole chain top-k -> top-p -> min-p (the sampler's order; the filters judge
    probabilities at temperature 1, so the counts do not depend on the temperature)."""
    everything = Candidates(None, np.asarray(logits, dtype=np.float64))
    chain = min_p(top_p(top_k(everything, top_k_value), top_p_value), min_p_value)
    return {
        "vocabulary": len(everything.logits),
        "top_k": len(top_k(everything, top_k_value).logits),
        "top_p": len(top_p(everything, top_p_value).logits),
        "min_p": len(min_p(everything, min_p_value).logits),
        "chain": len(chain.logits),
    }


def prob_to_surprisal_bits(prob):
    return math.inf if prob <= 0 else -math.log2(prob)


# --- surprisal of a text --------------------------------------------------------------------

def token_logprobs(logits_rows, ids, first_scored=1):
    """log p(ids[i] | ids[:i]) in nats for i >= first_scored, from teacher-forced logits
    (row i-1 predicts token i). Tokens before first_scored get None."""
    ids = list(ids)
    out = [None] * len(ids)
    for i in range(max(first_scored, 1), len(ids)):
        out[i] = float(log_softmax(logits_rows[i - 1])[ids[i]])
    return out


def perplexity(logprobs):
    """exp(mean negative log-likelihood) of the scored tokens (None entries skipped);
    None when nothing was scored."""
    scored = [lp for lp in logprobs if lp is not None]
    if not scored:
        return None
    return math.exp(-sum(scored) / len(scored))


# --- attention ------------------------------------------------------------------------------

def resolve_layer(layer, n_layers):
    """A layer index from user input: an int (negative counts from the end) or "all"."""
    if layer == "all":
        return "all"
    index = int(layer)
    if not -n_layers <= index < n_layers:
        raise InputError(f"--layer {layer} is outside 0..{n_layers - 1} (or -{n_layers}..-1)")
    return index % n_layers


def attention_row(attention_probs, query, layer, head=None):
    """Attention weights of position `query` over positions 0..query.

    attention_probs: per layer, float32[n_heads, n_queries, n_keys] (Model.attention_probs
    after eval(capture_attention=True) from an empty cache); layer: index or "all" (mean
    over layers); head: index, or None for the mean over heads. Each head's row sums to
    1, so every mean does too."""
    layers = attention_probs if layer == "all" else [attention_probs[layer]]
    stacked = np.stack([probs[:, query, :query + 1] for probs in layers])  # [L, H, query+1]
    if head is not None:
        n_heads = stacked.shape[1]
        if not 0 <= head < n_heads:
            raise InputError(f"--head {head} is outside 0..{n_heads - 1}")
        stacked = stacked[:, head:head + 1]
    return stacked.astype(np.float64).mean(axis=(0, 1))


def attention_by_head(attention_probs, query, layer):
    """[n_heads, query+1]: each head's row (mean over layers when layer is "all")."""
    layers = attention_probs if layer == "all" else [attention_probs[layer]]
    return np.stack([p[:, query, :query + 1] for p in layers]).astype(np.float64).mean(axis=0)


def find_token(texts, word):
    """Index of the token for WORD among the prompt tokens' texts: the first token whose
    text, stripped of whitespace, equals WORD; else case-insensitively; else the first
    token that starts WORD (a word split in several tokens is located by its first)."""
    stripped = [t.strip() for t in texts]
    for matches in (lambda t: t == word, lambda t: t.lower() == word.lower(),
                    lambda t: bool(t) and word.lower().startswith(t.lower())):
        for index, text in enumerate(stripped):
            if matches(text):
                return index
    raise InputError(f"--token {word!r} is not one of the prompt's tokens: "
                     + " ".join(repr(t) for t in texts[:40]))
