"""llmcli.views against plain NumPy formulas written from the definitions, and the
attention capture of the real models (rows sum to 1, causal)."""
import math

import numpy as np
import pytest

from llmcli import views
from llmcli.errors import InputError
from llmcli.sampling import make_sampler


def test_distribution_sums_to_one_and_matches_softmax():
    logits = np.random.default_rng(0).normal(size=1000).astype(np.float32) * 4
    for t in (0.2, 1.0, 2.0):
        probs = views.distribution(logits, t)
        expected = np.exp(logits / t - np.max(logits / t))
        expected /= expected.sum()
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-12)
    greedy = views.distribution(logits, 0)
    assert greedy.sum() == 1.0 and greedy[np.argmax(logits)] == 1.0


def test_entropy_of_uniform_and_one_hot():
    assert views.entropy_bits(np.full(8, 1 / 8)) == pytest.approx(3.0)
    assert views.entropy_bits(np.array([0.0, 1.0, 0.0])) == 0.0


def test_top_entries_sorted_with_ties_by_id():
    probs = np.array([0.1, 0.3, 0.1, 0.5])
    assert views.top_entries(probs, 3) == [(3, 0.5), (1, 0.3), (0, 0.1)]


def test_kept_counts_by_hand():
    # probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625
    probs = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    logits = np.log(probs)
    kept = views.kept_counts(logits, top_k_value=4, top_p_value=0.78, min_p_value=0.2)
    # alone: top-p 0.78: 0.5+0.25 = 0.75 < 0.78, +0.125 reaches it -> 3;
    # min-p 0.2*0.5 = 0.1 -> 3. Chained, top-p sees top-k's 4 renormalized
    # (8/15, 4/15, 2/15, 1/15): 12/15 = 0.8 >= 0.78 -> 2, and min-p keeps both.
    assert kept == {"vocabulary": 5, "top_k": 4, "top_p": 3, "min_p": 3, "chain": 2}


def chain_distribution(logits, temperature, k, p, min_p):
    """The sampler's distribution written from the definitions (no repetition penalty):
    top-k by logit, top-p over those renormalized at temperature 1 (the smallest head
    reaching p), min-p relative to the most likely, then softmax at the temperature.
    Returns [(id, prob)], most likely first."""
    exact = np.asarray(logits, dtype=np.float64)
    order = np.argsort(-exact, kind="stable")[:k]
    p1 = np.exp(exact[order] - exact[order].max())
    p1 /= p1.sum()
    kept = order[:int(np.searchsorted(np.cumsum(p1), p)) + 1]
    kept = kept[exact[kept] >= exact[kept].max() + math.log(min_p)]
    q = np.exp((exact[kept] - exact[kept].max()) / temperature)
    q /= q.sum()
    return sorted(zip(kept.tolist(), q.tolist()), key=lambda e: -e[1])


def test_shown_top_k_equal_the_sampler_distribution():
    """What --show-probs shows (the Draw the sampler made) is softmax over the filtered
    tokens at the temperature, recomputed here from the definitions."""
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=500) * 3).astype(np.float32)
    sampler = make_sampler(temperature=1.7, top_k=12, top_p=0.9, min_p=0.02, seed=5)
    sampler(logits, [])
    expected = chain_distribution(logits, 1.7, 12, 0.9, 0.02)
    shown = sampler.last.top(5)
    assert [i for i, _ in shown] == [i for i, _ in expected[:5]]
    np.testing.assert_allclose([p for _, p in shown], [p for _, p in expected[:5]], rtol=1e-9)
    assert sum(sampler.last.probs) == pytest.approx(1.0)


def test_token_logprobs_and_perplexity():
    logits = np.log(np.array([[0.5, 0.5, 0.0 + 1e-30], [0.1, 0.2, 0.7], [1 / 3] * 3]))
    ids = [0, 1, 2]
    lps = views.token_logprobs(logits, ids)
    assert lps[0] is None
    assert lps[1] == pytest.approx(math.log(0.5)) and lps[2] == pytest.approx(math.log(0.7))
    assert views.perplexity(lps) == pytest.approx(math.exp(-(math.log(0.5) + math.log(0.7)) / 2))


def test_find_token():
    texts = ["The", " trophy", " it", " It"]
    assert views.find_token(texts, "it") == 2
    assert views.find_token(texts, "trophy") == 1
    with pytest.raises(InputError, match="--token"):
        views.find_token(texts, "zebra")


def test_attention_row_means():
    rng = np.random.default_rng(1)
    layers = []
    for _ in range(3):
        p = rng.random((2, 4, 4)) * np.tril(np.ones((4, 4)))
        layers.append(p / p.sum(axis=2, keepdims=True))
    row = views.attention_row(layers, 2, 1, head=None)
    np.testing.assert_allclose(row, layers[1][:, 2, :3].mean(axis=0))
    np.testing.assert_allclose(views.attention_row(layers, 2, "all", head=0),
                               np.mean([l[0, 2, :3] for l in layers], axis=0))
    assert views.resolve_layer("-1", 3) == 2
    with pytest.raises(InputError, match="--layer"):
        views.resolve_layer("3", 3)


SENTENCE = "The trophy didn't fit in the suitcase because it was too big"


@pytest.mark.parametrize("which", ["smollm2_path", "gemma3_path"])
def test_real_attention_rows_sum_to_one_and_are_causal(which, request):
    from llmcli.model import load

    model = load(request.getfixturevalue(which), n_ctx=64)
    ids = model.tokenizer.encode(SENTENCE)
    logits = model.eval(ids, all_logits=True, capture_attention=True)
    probs = model.attention_probs
    assert len(probs) == model.config.n_layers
    n = len(ids)
    for layer in probs:
        assert layer.shape == (model.config.n_heads, n, n)
        np.testing.assert_allclose(layer.sum(axis=2), 1.0, atol=1e-4)
        assert np.all(layer[:, np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]] == 0)
    texts = [model.tokenizer.token_bytes(i).decode("utf-8", "replace") for i in ids]
    it = views.find_token(texts, "it")
    assert texts[it].strip() == "it"
    row = views.attention_row(probs, it, model.config.n_layers - 1)
    assert row.sum() == pytest.approx(1.0, abs=1e-4) and len(row) == it + 1
    assert np.all(probs[-1][:, it, it + 1:] == 0)      # nothing after "it"
    # probabilities of the next token sum to 1 over the whole vocabulary
    assert views.distribution(logits[-1]).sum() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("which", ["smollm2_path", "gemma3_path"])
def test_real_shown_top_k_equal_the_sampler_distribution(which, request):
    """At each step of a real generation with every filter on, the top-K that
    --show-probs prints (chunk.top_probs) is the filter chain recomputed with NumPy from
    the model's teacher-forced logits of the prefix."""
    from llmcli.generate import generate
    from llmcli.model import load

    model = load(request.getfixturevalue(which), n_ctx=64, threads=1)
    ids = model.tokenizer.encode("The capital of France is")
    settings = {"temperature": 1.3, "top_k": 20, "top_p": 0.9, "min_p": 0.02}
    sampler = make_sampler(**settings, seed=2)
    chunks = list(generate(model, ids, sampler, max_tokens=3, ignore_eos=True,
                           top_probs=5))
    checker = load(request.getfixturevalue(which), n_ctx=64, threads=1)
    for chunk in chunks:
        expected = chain_distribution(checker.logits(ids)[-1], *settings.values())
        assert [i for i, _ in chunk.top_probs] == [i for i, _ in expected[:5]]
        np.testing.assert_allclose([p for _, p in chunk.top_probs],
                                   [p for _, p in expected[:5]], rtol=1e-5)
        assert chunk.prob == pytest.approx(dict(expected).get(chunk.token, 0.0), rel=1e-5)
        ids.append(chunk.token)
