"""The golden metrics and perplexity windowing (tests/golden) on hand-made arrays, and the
internal consistency of the committed golden files (no model needed)."""
import json
import math
import pathlib

import numpy as np
import pytest

from golden import metrics, ppl

GOLDEN_DIR = pathlib.Path(__file__).parent / "golden"


def test_top_margin_of_rows():
    logits = np.array([[0.0, 3.0, 1.0], [2.0, 2.0, -1.0]], dtype=np.float32)
    argmax, margin = metrics.top_margin(logits)
    assert argmax.tolist() == [1, 0]
    assert margin.tolist() == [2.0, 0.0]


def test_top20_max_abs_diff_reads_reference_ids_only():
    cand = np.zeros((2, 30))
    cand[0, 5] = 0.25    # inside the reference's top ids of row 0
    cand[1, 29] = 100.0  # outside: ignored
    top_ids = [list(range(20)), list(range(20))]
    top_logits = [[0.0] * 20, [0.0] * 19 + [-0.5]]
    assert metrics.top20_max_abs_diff(cand, top_ids, top_logits).tolist() == [0.25, 0.5]


def test_argmax_agreement_only_counts_clear_margins():
    result = metrics.argmax_agreement([1, 2, 3, 4], [1, 9, 3, 8], [0.5, 0.05, 0.2, 0.3], 0.1)
    assert (result.agree, result.total, result.mismatches) == (2, 3, [3])
    assert result.rate == pytest.approx(2 / 3)


def test_greedy_divergence_at_a_near_tie_is_accepted():
    ref = [5, 6, 7, 8]
    margins = [1.0, 0.8, 0.05, 2.0]
    assert metrics.greedy_check([5, 6, 9, 9], ref, margins) == (2, 2, True)
    assert metrics.greedy_check([5, 9, 7, 8], ref, margins) == (1, 2, False)
    assert metrics.greedy_check(ref, ref, [1.0] * 4) == (4, 4, True)


def test_compare_prompt_on_a_synthetic_golden():
    rng = np.random.default_rng(0)
    ref_logits = rng.normal(size=(6, 50)).astype(np.float32)
    argmax, margin = metrics.top_margin(ref_logits)
    positions = [2, 5]
    top_ids = [np.argsort(-ref_logits[p])[:20].tolist() for p in positions]
    golden = {"argmax": argmax.tolist(), "margin": margin.tolist(), "top_positions": positions,
              "top_ids": top_ids,
              "top_logits": [ref_logits[p][ids].tolist() for p, ids in zip(positions, top_ids)],
              "greedy_ids": [1, 2], "greedy_margins": [1.0, 1.0]}
    shifted = ref_logits.copy()
    shifted[5, top_ids[1][3]] += 0.125
    result = metrics.compare_prompt(golden, shifted, [1, 2])
    assert result["max_abs_dlogit"] == pytest.approx(0.125)
    assert result["max_abs_dlogit_last"] == pytest.approx(0.125)
    assert result["greedy"].ok


def test_perplexity_windows_replace_first_token_with_bos_and_drop_remainder():
    windows = ppl.perplexity_windows(range(10), 4, bos_id=99)
    assert windows == [[99, 1, 2, 3], [99, 5, 6, 7]]
    assert ppl.perplexity_windows(range(9), 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError):
        ppl.perplexity_windows(range(7), 4)


def test_window_nll_scores_second_half_only():
    n_ctx, n_vocab = 8, 5
    window = [0, 1, 2, 3, 4, 0, 1, 2]
    logits = np.zeros((n_ctx, n_vocab))
    logits[:4] = 50.0  # first half: never read
    logits[4, 0] = math.log(4.0)  # p(next = 0) = 4 / 8 at position 4
    nll, count = ppl.window_nll(logits, window)
    assert count == n_ctx - n_ctx // 2 - 1 == 3
    # position 4 predicts 0 with p = 1/2; positions 5, 6 are uniform over 5 tokens
    assert nll == pytest.approx(math.log(2.0) + 2 * math.log(5.0))
    assert ppl.perplexity(nll, count) == pytest.approx(math.exp(nll / 3))


def _forward_goldens():
    return sorted(GOLDEN_DIR.glob("forward_*.json"))


@pytest.mark.parametrize("path", _forward_goldens(), ids=lambda p: p.stem)
def test_forward_golden_is_consistent(path):
    golden = json.loads(path.read_text(encoding="utf-8"))
    assert golden["reference"]["dtype"] == "float32"
    assert len(golden["prompts"]) >= 24
    assert max(len(p["ids"]) for p in golden["prompts"]) >= 500
    for p in golden["prompts"]:
        n = len(p["ids"])
        assert len(p["argmax"]) == len(p["margin"]) == n, p["name"]
        if p["add_bos"] or p["kind"] == "raw":  # a chat template may start with BOS itself
            assert (p["ids"][0] == golden["bos_id"]) == p["add_bos"], p["name"]
        assert p["top_positions"][-1] == n - 1
        for pos, ids, logits in zip(p["top_positions"], p["top_ids"], p["top_logits"]):
            assert len(ids) == len(logits) == 20
            assert ids[0] == p["argmax"][pos]
            assert logits == sorted(logits, reverse=True)
            assert logits[0] - logits[1] == pytest.approx(p["margin"][pos], abs=2e-5)
        assert len(p["greedy_ids"]) == len(p["greedy_margins"]) == golden["n_greedy"]
        assert p["greedy_ids"][0] == p["argmax"][-1]
        assert p["greedy_margins"][0] == p["margin"][-1]


@pytest.mark.parametrize("path", sorted(GOLDEN_DIR.glob("ppl_*.json")), ids=lambda p: p.stem)
def test_perplexity_golden_is_consistent(path):
    golden = json.loads(path.read_text(encoding="utf-8"))
    windows = ppl.perplexity_windows(golden["tokens"], golden["n_ctx"])
    assert len(windows) == golden["n_windows"] >= 4
    for source in ("reference", "llamacpp"):
        entry = golden[source]
        nll = sum(w["nll"] for w in entry["windows"])
        count = sum(w["count"] for w in entry["windows"])
        assert count == golden["n_scored"] == golden["n_windows"] * (golden["n_ctx"] // 2 - 1)
        assert ppl.perplexity(nll, count) == pytest.approx(entry["ppl"], rel=1e-6)
