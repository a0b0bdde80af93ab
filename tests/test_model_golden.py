"""The kernel forward on the two real models against the float32 reference (transformers,
tests/golden/forward_<model>.json), held to llama.cpp's own distance from that reference
(tests/golden/llamacpp_vs_reference.json, measured with llama-cpp-python).

Like llama.cpp, our quantized matmuls quantize activations to 8 bits per block (except
the refined projections, about 16 bits: model.REFINED_INPUTS), so logits differ from float
math by a few tenths: a top-1/top-2 margin of 0.1-0.5 can flip (llama.cpp flips 1.4-1.9% of
them), and now and then one a little above 0.5 (llama.cpp: 2 on SmolLM2).
Measured (this forward / llama.cpp; benchmarks/forward_accuracy.py prints the table):
  SmolLM2  max|dlogit| over saved top-20: max 0.66 / 1.06, median 0.27 / 0.54;
           argmax agreement at margin > 0.1: 98.9% / 98.6%; flips above 0.5: 0 / 2;
           greedy OK 28 / 22 of 32
  Gemma 3  max 1.36 / 2.11, median 0.28 / 0.70;
           argmax agreement at margin > 0.1: 98.9% / 98.1%; flips above 0.5: 1 / 0;
           greedy OK 23 / 20 of 27
(greedy OK = equal to the reference up to its first margin < 0.1). Flips above 0.5 are
allowed one more than llama.cpp's count: equally valid roundings of the activations move
that count by 0-3 (measured for issue 4), so a single flip is noise.
"""
import json
import pathlib

import numpy as np
import pytest

from golden import metrics
from llmcli import _kernels as K
from llmcli.model import load, set_threads

GOLDEN_DIR = pathlib.Path(__file__).parent / "golden"
SAFE_MARGIN = 0.5          # above this reference margin a flip is rare (counted against llama.cpp's)
MIN_AGREEMENT_0_1 = 0.975  # argmax agreement floor where the reference margin exceeds 0.1


def read_json(name):
    return json.loads((GOLDEN_DIR / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def run(request):
    """Our logits and greedy continuation for every golden prompt of one model."""
    golden = read_json(f"forward_{request.param}.json")
    n_ctx = max(len(p["ids"]) for p in golden["prompts"]) + golden["n_greedy"]
    model_path = request.getfixturevalue(f"{request.param}_path")
    model = load(model_path, n_ctx=n_ctx)
    results = []
    for prompt in golden["prompts"]:
        logits = model.logits(prompt["ids"])
        greedy = [int(np.argmax(logits[-1]))]
        while len(greedy) < golden["n_greedy"]:
            greedy.append(int(np.argmax(model.eval([greedy[-1]]))))
        results.append((prompt, logits, greedy))
    llamacpp = read_json("llamacpp_vs_reference.json")["models"][request.param]["summary"]
    return request.param, results, llamacpp, model_path


def test_argmax_flips_above_margin_0_5_no_more_than_llamacpp(run):
    _, results, llamacpp, _ = run
    flips = []
    for prompt, logits, _ in results:
        agreement = metrics.argmax_agreement(logits.argmax(-1), prompt["argmax"],
                                             prompt["margin"], SAFE_MARGIN)
        flips += [(prompt["name"], position) for position in agreement.mismatches]
    llamacpp_flips = llamacpp["argmax_0.5"]["total"] - llamacpp["argmax_0.5"]["agree"]
    # within one position of llama.cpp's count, or better (as for margin 0.1 below)
    assert len(flips) <= llamacpp_flips + 1, flips


def test_argmax_agreement_at_margin_0_1(run):
    _, results, llamacpp, _ = run
    agree = total = 0
    for prompt, logits, _ in results:
        agreement = metrics.argmax_agreement(logits.argmax(-1), prompt["argmax"],
                                             prompt["margin"], 0.1)
        agree, total = agree + agreement.agree, total + agreement.total
    assert agree / total >= MIN_AGREEMENT_0_1
    assert agree >= llamacpp["argmax_0.1"]["agree"]


def test_top20_logits_closer_than_llamacpp(run):
    _, results, llamacpp, _ = run
    diffs = np.concatenate([
        metrics.top20_max_abs_diff(logits[prompt["top_positions"]], prompt["top_ids"],
                                   prompt["top_logits"])
        for prompt, logits, _ in results])
    assert diffs.max() <= llamacpp["max_abs_dlogit_selected"]["max"]
    assert np.median(diffs) <= llamacpp["max_abs_dlogit_selected"]["median"]


def test_greedy_equal_until_the_reference_is_unclear(run):
    _, results, llamacpp, _ = run
    ok = 0
    for prompt, _, greedy in results:
        check = metrics.greedy_check(greedy, prompt["greedy_ids"], prompt["greedy_margins"],
                                     near_tie=SAFE_MARGIN)
        assert check.ok, (prompt["name"], check)
        ok += metrics.greedy_check(greedy, prompt["greedy_ids"], prompt["greedy_margins"]).ok
    # with llama.cpp's near-tie of 0.1: at least as many prompts as llama.cpp
    assert ok >= llamacpp["greedy_ok"]


def test_chunked_prefill_and_decode_steps_equal_one_shot_prefill(run):
    # the longest golden prompt (over Gemma's 512-token sliding window), prefilled in
    # chunks of 100 tokens then decoded one token at a time, against the one-shot logits.
    # Every kernel does the same arithmetic per (row, token) whatever the batch, so they
    # agree to the bit. One thread: with more, a decode step over 512+ cache rows splits
    # its softmax across threads and merges the parts (equal to float rounding only, which
    # the 8-bit activations of later layers amplify; test_ops_kernels covers that merge).
    _, results, _, model_path = run
    prompt, one_shot, _ = max(results, key=lambda result: len(result[0]["ids"]))
    ids = prompt["ids"]
    threads_before = K.get_threads()
    model = load(model_path, n_ctx=len(ids), n_batch=100, threads=1)
    try:
        np.testing.assert_array_equal(model.eval(ids[:-8]), one_shot[-9])
        steps = np.stack([model.eval([token]) for token in ids[-8:]])
        np.testing.assert_array_equal(steps, one_shot[-8:])
    finally:
        set_threads(threads_before)
