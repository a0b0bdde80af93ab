"""Perplexity the way llama.cpp's llama-perplexity computes it (its default mode).

Read from llama.cpp tools/perplexity/perplexity.cpp, function `perplexity()`:
- the whole text is tokenized once, with the model's add-BOS setting (Gemma 3: BOS 2
  first; SmolLM2: nothing added); at least 2 * n_ctx tokens are required;
- it is cut into n_chunk = len(tokens) // n_ctx consecutive windows of n_ctx tokens (the
  remainder is dropped); each window is evaluated from an empty KV cache at positions
  0..n_ctx-1;
- if the model adds BOS, the first token of every window is *replaced* (not shifted) by
  BOS;
- only the second half is scored: with first = n_ctx // 2, the logits at positions
  first .. n_ctx-2 predict the tokens at first+1 .. n_ctx-1 (n_ctx - first - 1 tokens
  per window, 255 for n_ctx = 512);
- nll = sum of -log_softmax(logits)[target] (max-subtracted, sum of exp in double);
  ppl = exp(total nll / total count) over all windows.
Pure NumPy so our tests and `llm perplexity` can be checked against the same steps.
"""
import math

import numpy as np


def perplexity_windows(tokens, n_ctx: int, bos_id=None) -> list[list[int]]:
    """The token windows llama-perplexity evaluates (BOS replacing each first token)."""
    tokens = list(tokens)
    if len(tokens) < 2 * n_ctx:
        raise ValueError(f"need at least {2 * n_ctx} tokens for n_ctx={n_ctx}, got {len(tokens)}")
    windows = []
    for start in range(0, (len(tokens) // n_ctx) * n_ctx, n_ctx):
        window = tokens[start:start + n_ctx]
        if bos_id is not None:
            window[0] = bos_id
        windows.append(window)
    return windows


def scored_range(n_ctx: int) -> range:
    """Positions whose logits are scored (each predicts the token after it)."""
    return range(n_ctx // 2, n_ctx - 1)


def window_nll(logits: np.ndarray, window) -> tuple[float, int]:
    """Summed negative log-likelihood of the scored half of one window, and its count.

    logits: [n_ctx, n_vocab] of the window evaluated from position 0 (only the rows of
    scored_range(n_ctx) are read).
    """
    rows = scored_range(len(window))
    scored = np.asarray(logits[rows.start:rows.stop], dtype=np.float64)
    targets = np.asarray(window[rows.start + 1:rows.stop + 1])
    shifted = scored - scored.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=-1))
    log_probs = shifted[np.arange(len(targets)), targets] - log_norm
    return float(-log_probs.sum()), len(targets)


def perplexity(nll_sum: float, count: int) -> float:
    return math.exp(nll_sum / count)
