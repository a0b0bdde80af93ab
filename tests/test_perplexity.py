"""`llm perplexity`: its windowing and scoring against the gold helper's independent
transcription of llama-perplexity (tests/golden/ppl.py), and its figure on the real
models against llama.cpp's (tests/golden/ppl_<model>.json), through a real subprocess."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from golden import ppl as golden_ppl
from llmcli.commands.perplexity import PerplexityTally, perplexity_windows, token_nlls

GOLDEN_DIR = pathlib.Path(__file__).parent / "golden"
PPL_TEXT = GOLDEN_DIR / "ppl_text.txt"


def run_llm(*args, stdin=None):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, "-m", "llmcli", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.parametrize("n_tokens, n_ctx, bos", [(2048, 512, None), (1100, 512, 7),
                                                  (1023, 512, None), (40, 8, 2)])
def test_windows_match_llama_perplexity(n_tokens, n_ctx, bos):
    tokens = list(range(100, 100 + n_tokens))
    if n_tokens < 2 * n_ctx:  # llama-perplexity refuses; our command does too (see below)
        with pytest.raises(ValueError):
            golden_ppl.perplexity_windows(tokens, n_ctx, bos)
        return
    assert perplexity_windows(tokens, n_ctx, bos) == golden_ppl.perplexity_windows(
        tokens, n_ctx, bos)


def test_scored_half_and_tally_match_llama_perplexity():
    rng = np.random.default_rng(0)
    n_ctx, n_vocab = 16, 50
    windows = [rng.integers(0, n_vocab, n_ctx).tolist() for _ in range(3)]
    tally, nll_sum, count = PerplexityTally(), 0.0, 0
    for window in windows:
        logits = (rng.standard_normal((n_ctx, n_vocab)) * 3).astype(np.float32)
        first = n_ctx // 2
        # our command scores logits first..n_ctx-2 against the tokens after them
        tally.add(token_nlls(logits[first:n_ctx - 1], window[first + 1:]))
        window_nll, window_count = golden_ppl.window_nll(logits, window)
        nll_sum += window_nll
        count += window_count
    assert tally.count == count == 3 * 7
    assert tally.perplexity == pytest.approx(golden_ppl.perplexity(nll_sum, count), rel=1e-9)
    assert tally.uncertainty > 0


@pytest.mark.parametrize("model_name", ["smollm2", "gemma3"])
def test_perplexity_within_one_percent_of_llamacpp(model_name, request):
    model_path = request.getfixturevalue(f"{model_name}_path")
    golden = json.loads((GOLDEN_DIR / f"ppl_{model_name}.json").read_text(encoding="utf-8"))
    result = run_llm("perplexity", str(PPL_TEXT), "-m", str(model_path), "--ctx",
                     str(golden["n_ctx"]), "--format", "json")
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout)
    # same tokens, same windows as llama-perplexity
    assert ours["n_tokens"] == len(golden["tokens"])
    assert ours["n_windows"] == golden["n_windows"] and ours["n_scored"] == golden["n_scored"]
    assert ours["perplexity"] == pytest.approx(golden["llamacpp"]["ppl"], rel=0.01)
    assert ours["perplexity"] == pytest.approx(golden["reference"]["ppl"], rel=0.01)
    assert f"[{ours['n_windows']}/{ours['n_windows']}] PPL" in result.stderr  # progress


def test_perplexity_text_output_from_stdin(smollm2_path):
    text = PPL_TEXT.read_text(encoding="utf-8")[:2000]
    result = run_llm("perplexity", "-", "-m", str(smollm2_path), "--ctx", "64", "--chunks",
                     "2", "-q", stdin=text)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PPL = ")
    assert "(2 windows of 64 tokens, 62 tokens scored)" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("args, stdin, message", [
    (["-", "--ctx", "512"], "Too short.", "the text has 3 tokens; --ctx 512 needs at least 1024"),
    (["/nonexistent/file.txt"], None, "cannot read /nonexistent/file.txt"),
    (["-", "--ctx", "2"], "x", "Invalid value for '--ctx'"),
    (["-"], "   \n", "stdin holds no text"),
])
def test_perplexity_errors(smollm2_path, args, stdin, message):
    result = run_llm("perplexity", *args, "-m", str(smollm2_path), stdin=stdin)
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert result.stdout == ""


def test_perplexity_rejects_invalid_utf8(tmp_path, smollm2_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine text \xff\xfe more")
    result = run_llm("perplexity", str(path), "-m", str(smollm2_path))
    assert result.returncode == 1
    assert f"{path} is not valid UTF-8 (byte offset 10)" in result.stderr
