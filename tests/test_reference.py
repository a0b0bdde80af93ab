"""The NumPy reference forward (llmcli.reference) against the goldens made by transformers
in float32 on the same GGUF files (tests/golden/forward_<model>.json).

Both dequantize the same blocks to float32 and compute in float32, so they differ only by
rounding: the budget is tight (measured: max |Δlogit| 6e-5 on SmolLM2, 3e-5 on Gemma 3).
That makes the reference a trustworthy oracle for the kernel forward, and checks its
architecture details (RoPE pairing, Gemma's norms, scales and sliding window) on real
weights — the 600+-token prompt crosses Gemma's 512-token window.
"""
import json
import pathlib

import numpy as np
import pytest

from golden import metrics
from llmcli import ops_ref, reference
from llmcli.reference import load_reference

GOLDEN_DIR = pathlib.Path(__file__).parent / "golden"
TOP20_BUDGET = 2e-3      # max |Δlogit| over the golden's top-20 ids
TIE = 1e-2               # margins below this may flip from float rounding alone


def golden(model_name):
    return json.loads((GOLDEN_DIR / f"forward_{model_name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def reference_and_golden(request):
    path = request.getfixturevalue(f"{request.param}_path")
    data = golden(request.param)
    n_ctx = max(len(p["ids"]) for p in data["prompts"]) + data["n_greedy"]
    return load_reference(path, n_ctx=n_ctx), data


def test_reference_matches_transformers_on_every_prompt(reference_and_golden):
    reference, data = reference_and_golden
    for prompt in data["prompts"]:
        logits = reference.logits(prompt["ids"])
        result = metrics.compare_prompt(prompt, logits)
        assert result["max_abs_dlogit"] < TOP20_BUDGET, prompt["name"]
        assert metrics.argmax_agreement(logits.argmax(-1), prompt["argmax"], prompt["margin"],
                                        TIE).mismatches == [], prompt["name"]
        # the log-normalizer too: probabilities, not just the ranking, are the reference's
        positions = prompt["top_positions"]
        ours = np.log(np.exp(logits[positions].astype(np.float64)
                             - logits[positions].max(-1, keepdims=True)).sum(-1)) \
            + logits[positions].max(-1)
        np.testing.assert_allclose(ours, prompt["logsumexp"], atol=TOP20_BUDGET)


def test_reference_greedy_continuations(reference_and_golden):
    reference, data = reference_and_golden
    for prompt in data["prompts"][::3]:
        reference.reset()
        greedy = [int(np.argmax(reference.eval(prompt["ids"])))]
        for _ in range(data["n_greedy"] - 1):
            greedy.append(int(np.argmax(reference.eval([greedy[-1]]))))
        check = metrics.greedy_check(greedy, prompt["greedy_ids"], prompt["greedy_margins"],
                                     near_tie=TIE)
        assert check.ok, (prompt["name"], check)


@pytest.mark.parametrize("n_heads, n_kv_heads, window", [(9, 3, 0), (4, 1, 5), (4, 4, 0)])
def test_head_major_attention_equals_ops_ref(n_heads, n_kv_heads, window):
    rng = np.random.default_rng(3)
    head_dim, n_ctx = 16, 12
    q = rng.standard_normal((5, n_heads * head_dim)).astype(np.float32)
    k_cache = rng.standard_normal((n_ctx, n_kv_heads * head_dim)).astype(np.float32)
    v_cache = rng.standard_normal((n_ctx, n_kv_heads * head_dim)).astype(np.float32)
    q_pos = np.array([3, 4, 7, 8, 9])
    args = (q, k_cache, v_cache, q_pos, n_heads, n_kv_heads, head_dim, 0.25, window)
    for ours, plain in zip(reference.attention(*args), ops_ref.attention(*args)):
        np.testing.assert_allclose(ours, plain, rtol=1e-5, atol=1e-6)
