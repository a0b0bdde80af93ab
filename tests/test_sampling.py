"""Each sampler stage on small hand-made distributions, checked against plain NumPy
formulas written from the definitions (full sorts, no shortcuts)."""
import math

import numpy as np
import pytest

from llmcli import sampling
from llmcli.sampling import Candidates


def cands_of(logits):
    return Candidates(None, np.asarray(logits, dtype=np.float64))


def kept(cands):
    return set(cands.token_ids().tolist())


def probs_of(logits):
    e = np.exp(np.asarray(logits, dtype=np.float64))
    return e / e.sum()


# --- stages ----------------------------------------------------------------------------

def test_top_k_keeps_the_k_largest():
    logits = [0.5, 3.0, -1.0, 2.0, 2.5, 0.0]
    assert kept(sampling.top_k(cands_of(logits), 3)) == {1, 3, 4}
    assert kept(sampling.top_k(cands_of(logits), 1)) == {1}
    assert kept(sampling.top_k(cands_of(logits), 0)) == set(range(6))   # off
    assert kept(sampling.top_k(cands_of(logits), 99)) == set(range(6))


def test_top_k_matches_a_full_sort_on_random_logits():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=1000)
    for k in (1, 5, 40, 999):
        expected = set(np.argsort(logits)[::-1][:k].tolist())
        assert kept(sampling.top_k(cands_of(logits), k)) == expected


def test_top_p_keeps_smallest_prefix_reaching_p():
    probs = np.array([0.05, 0.4, 0.3, 0.15, 0.1])
    logits = np.log(probs)
    # sorted: 0.4 (1), 0.3 (2), 0.15 (3), 0.1 (4), 0.05 (0)
    assert kept(sampling.top_p(cands_of(logits), 0.4)) == {1}
    assert kept(sampling.top_p(cands_of(logits), 0.41)) == {1, 2}
    assert kept(sampling.top_p(cands_of(logits), 0.7)) == {1, 2}
    assert kept(sampling.top_p(cands_of(logits), 0.71)) == {1, 2, 3}
    assert kept(sampling.top_p(cands_of(logits), 0.96)) == {0, 1, 2, 3, 4}
    assert kept(sampling.top_p(cands_of(logits), 1.0)) == {0, 1, 2, 3, 4}


def test_top_p_on_a_wide_vocabulary_widens_its_search():
    # A flat-ish distribution over 5000 tokens: the nucleus holds thousands of tokens,
    # more than the first look (64), so the search must widen and still be exact.
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=0.3, size=5000)
    p = 0.9
    order = np.argsort(-logits, kind="stable")
    cumulative = np.cumsum(probs_of(logits)[order])
    expected = set(order[: int(np.argmax(cumulative >= p)) + 1].tolist())
    assert len(expected) > 256
    assert kept(sampling.top_p(cands_of(logits), p)) == expected


def test_min_p_keeps_tokens_above_a_fraction_of_the_best():
    probs = np.array([0.5, 0.2, 0.05, 0.25])
    logits = np.log(probs)
    assert kept(sampling.min_p(cands_of(logits), 0.1)) == {0, 1, 2, 3}
    assert kept(sampling.min_p(cands_of(logits), 0.11)) == {0, 1, 3}
    assert kept(sampling.min_p(cands_of(logits), 0.45)) == {0, 3}
    assert kept(sampling.min_p(cands_of(logits), 1.0)) == {0}
    assert kept(sampling.min_p(cands_of(logits), 0.0)) == {0, 1, 2, 3}


def test_repetition_penalty_divides_positive_and_multiplies_negative():
    logits = np.array([2.0, -1.0, 0.5, 3.0])
    out = sampling.penalize_repeats(cands_of(logits), np.array([0, 1]), 2.0).logits
    np.testing.assert_allclose(out, [1.0, -2.0, 0.5, 3.0])
    assert logits[0] == 2.0  # pure: the input is untouched


def test_shortlist_holds_the_top_k_after_any_penalty():
    rng = np.random.default_rng(11)
    logits = rng.normal(size=500).astype(np.float32)
    seen = np.unique(np.argsort(-logits)[:30])  # penalize the 30 best tokens
    for penalty in (0.5, 1.3, 5.0):
        for k in (1, 10, 40):
            full = logits.astype(np.float64)
            full[seen] = np.where(full[seen] > 0, full[seen] / penalty, full[seen] * penalty)
            expected = set(np.argsort(-full)[:k].tolist())
            short = sampling.shortlist(logits, k, seen)
            got = sampling.top_k(sampling.penalize_repeats(short, seen, penalty), k)
            assert kept(got) == expected


@pytest.mark.parametrize("n", [49152, 262144])  # the two models' vocabularies
def test_largest_values_of_a_vocabulary_match_a_full_sort(n):
    """The narrowed top-k selection (a strided sample sets a threshold first) keeps the
    same values as a full sort: on spread, peaked, sorted and tied logits, and with NaN
    and infinities (which a sort puts last, as the largest)."""
    rng = np.random.default_rng(n)
    spread = rng.normal(scale=3.0, size=n).astype(np.float32)
    peaked = spread.copy()
    peaked[123] = 60.0
    increasing = np.sort(spread)
    tied = rng.integers(0, 12, size=n).astype(np.float32)  # thousands of equal values
    odd = spread.copy()
    odd[[5, n // 3, n - 1]] = np.nan
    odd[[7, n // 2]] = [np.inf, -np.inf]
    for logits in (spread, peaked, increasing, tied, odd):
        reference = np.argsort(logits, kind="stable")  # NaN sorts last
        for k in (1, 2, 40, 104, 1000):
            got = sampling._largest(logits, k)
            assert len(got) == len(set(got.tolist())) == k
            # the same values (with ties, which of the equal ones is free)
            np.testing.assert_array_equal(np.sort(logits[got]), np.sort(logits[reference[-k:]]))


def test_temperature_zero_is_argmax_even_with_low_top_p():
    logits = np.array([0.1, 2.0, 1.9, -3.0], dtype=np.float32)
    sampler = sampling.make_sampler(temperature=0, top_p=0.1, top_k=2)
    assert sampler(logits) == 1
    assert sampler.last.greedy


def test_high_temperature_flattens_and_low_sharpens():
    cands = cands_of([2.0, 1.0, 0.0])
    cold = sampling.apply_temperature(cands, 0.1)
    warm = sampling.apply_temperature(cands, 1.0)
    hot = sampling.apply_temperature(cands, 100.0)
    np.testing.assert_allclose(warm, probs_of([2.0, 1.0, 0.0]))
    assert cold[0] > 0.99
    assert np.ptp(hot) < 0.01
    entropies = [-(q * np.log(q)).sum() for q in (cold, warm, hot)]
    assert entropies[0] < entropies[1] < entropies[2] <= math.log(3) + 1e-12


def test_draw_frequencies_follow_the_probabilities():
    probs = np.array([0.6, 0.3, 0.1])
    rng = np.random.default_rng(0)
    counts = np.bincount([sampling.draw(probs, rng) for _ in range(20000)], minlength=3)
    np.testing.assert_allclose(counts / 20000, probs, atol=0.015)


def test_log_softmax_and_top_logprobs_match_the_formula():
    logits = np.array([1.0, 3.0, -2.0, 0.5], dtype=np.float32)
    expected = np.log(probs_of(logits))
    np.testing.assert_allclose(sampling.log_softmax(logits), expected, rtol=1e-12)
    lp, top = sampling.top_logprobs(logits, 2, 2)
    assert lp == pytest.approx(expected[2])
    assert [i for i, _ in top] == [1, 0]
    assert top[0][1] == pytest.approx(expected[1])


# --- the sampler -----------------------------------------------------------------------

def test_sampler_distribution_is_the_filtered_tempered_softmax():
    logits = np.log(np.array([0.02, 0.5, 0.2, 0.15, 0.1, 0.03])).astype(np.float32)
    sampler = sampling.make_sampler(temperature=0.5, top_k=4, top_p=0.8, min_p=0.0, seed=1)
    token = sampler(logits)
    last = sampler.last
    # top-k 4 keeps {1,2,3,4}; renormalized they are .5/.95, .2/.95, ...; top-p 0.8 keeps
    # {1,2,3} (0.526 + 0.211 = 0.737 < 0.8); temperature 0.5 squares the odds.
    raw = np.array([0.5, 0.2, 0.15])
    expected = raw ** 2 / (raw ** 2).sum()
    assert last.ids.tolist() == [1, 2, 3]
    np.testing.assert_allclose(last.probs, expected)
    assert token in (1, 2, 3)
    assert last.prob_of(token) > 0 and last.prob_of(0) == 0.0
    assert sum(p for _, p in last.top(10)) == pytest.approx(1.0)


def test_same_seed_same_tokens_other_seed_differs():
    rng = np.random.default_rng(2)
    steps = [rng.normal(size=300).astype(np.float32) for _ in range(50)]

    def run(seed):
        sampler = sampling.make_sampler(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0,
                                        seed=seed)
        return [sampler(logits) for logits in steps]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_no_seed_draws_one_and_reports_it():
    a, b = sampling.make_sampler(), sampling.make_sampler()
    assert isinstance(a.seed, int) and a.seed != b.seed   # 1 in 2**32 chance to collide
    assert f"seed {a.seed}" in a.describe()


def test_repetition_window_only_penalizes_recent_tokens():
    logits = np.array([5.0, 4.9, 0.0, 0.0], dtype=np.float32)
    sampler = sampling.make_sampler(temperature=0, repeat_penalty=2.0, repeat_last_n=2)
    assert sampler(logits, history=[0, 2, 3]) == 0   # 0 is outside the last 2
    assert sampler(logits, history=[2, 0, 3]) == 1   # 0 is inside: 5/2 < 4.9
    whole = sampling.make_sampler(temperature=0, repeat_penalty=2.0, repeat_last_n=-1)
    assert whole(logits, history=[0, 2, 3, 3, 3]) == 1


def test_describe_names_the_chain_in_order():
    s = sampling.make_sampler(temperature=0.7, top_k=20, top_p=0.9, min_p=0.1,
                              repeat_penalty=1.1, repeat_last_n=32, seed=5)
    assert s.describe() == ("repeat-penalty 1.1 over last 32 tokens -> top-k 20 -> "
                            "top-p 0.9 -> min-p 0.1 -> temperature 0.7 -> draw (seed 5)")
    assert sampling.make_sampler(temperature=0).describe() == "greedy argmax (temperature 0)"


def test_greedy_distribution_sums_to_one_over_the_vocabulary():
    logits = np.random.default_rng(1).normal(size=1000).astype(np.float32)
    sampler = sampling.make_sampler(temperature=0, top_k=0, top_p=1.0, min_p=0.0)
    token = sampler(logits)
    assert len(sampler.last.ids) == 1000
    assert sampler.last.probs.sum() == pytest.approx(1.0)
    assert sampler.last.ids[0] == token == int(np.argmax(logits))
    np.testing.assert_allclose(sampler.last.prob_of(token), probs_of(logits).max())
