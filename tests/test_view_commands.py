"""The view commands: JSON schemas, fixed-width snapshots (fake model, fixed seed; set
LLMCLI_UPDATE_SNAPSHOTS=1 to rewrite tests/snapshots/), --show-probs against the
sampler's own distribution, --step through a pseudo-terminal, and runs of every view
on both real models checking structural facts."""
import contextlib
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

import llmcli.commands.generate as generate_command
from llmcli.cli import cli
from llmcli.generate import generate
from llmcli.sampling import make_sampler

from fakes import FakeModel, FakeTokenizer, hashed_rule

HERE = os.path.dirname(os.path.abspath(__file__))
SNAPSHOTS = os.path.join(HERE, "snapshots")
SENTENCE = "The trophy didn't fit in the suitcase because it was too big"


def fake_model(n_ctx=256):
    return FakeModel(hashed_rule(seed=11, scale=2.5), n_ctx=n_ctx,
                     tokenizer=FakeTokenizer(chat_template=None))


@pytest.fixture
def fake_loader(monkeypatch):
    monkeypatch.setattr(generate_command, "_load_model",
                        lambda name, n_ctx, threads: fake_model(n_ctx or 256))


def recording_console():
    from rich.console import Console

    return Console(width=100, record=True, color_system=None, file=io.StringIO())


def check_snapshot(name, text):
    path = os.path.join(SNAPSHOTS, name)
    if os.environ.get("LLMCLI_UPDATE_SNAPSHOTS") == "1" or not os.path.exists(path):
        os.makedirs(SNAPSHOTS, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    with open(path, encoding="utf-8") as f:
        assert text == f.read(), f"{name} changed (LLMCLI_UPDATE_SNAPSHOTS=1 to accept)"


def run_cli(args):
    result = CliRunner().invoke(cli, args, env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.stdout


# --- snapshots (fake model) -----------------------------------------------------------------

def test_probs_snapshot_and_json():
    from llmcli.commands.probs import probs_view, render_probs

    model = fake_model()
    ids = model.tokenizer.encode("hi")
    view = probs_view(model, False, ids, model.eval(ids), [0.5, 1.0, 2.0], 8, 40, 0.95, 0.05)
    console = recording_console()
    render_probs(console, view, model.tokenizer)
    check_snapshot("probs.txt", console.export_text())
    assert set(view) == {"model", "mode", "prompt_tokens", "filters", "kept", "temperatures"}
    for column in view["temperatures"]:
        assert set(column) == {"temperature", "entropy_bits", "top"}
        assert set(column["top"][0]) == {"id", "text", "prob", "kept"}
        probs = [t["prob"] for t in column["top"]]
        assert probs == sorted(probs, reverse=True)


def test_score_snapshot_and_json():
    from llmcli.commands.score import render_score, score_view

    model = fake_model()
    ids = model.tokenizer.encode("hello there")
    view = score_view(model, ids, model.logits(ids))
    console = recording_console()
    render_score(console, view, model.tokenizer)
    check_snapshot("score.txt", console.export_text())
    assert view["tokens"][0]["logprob"] is None and view["scored_tokens"] == len(ids) - 1
    nll = [-t["logprob"] for t in view["tokens"][1:]]
    assert view["perplexity"] == pytest.approx(np.exp(np.mean(nll)))


def test_attention_snapshot_and_json():
    from llmcli.commands.attention import attention_view, render_attention

    model = fake_model()
    ids = model.tokenizer.encode("the cat")
    model.eval(ids, capture_attention=True)
    view = attention_view(model, ids, model.attention_probs, 4, 1, None)
    console = recording_console()
    render_attention(console, view, model.tokenizer)
    check_snapshot("attention.txt", console.export_text())
    assert len(view["weights"]) == 5 and sum(view["weights"]) == pytest.approx(1.0)
    assert set(view) == {"model", "n_layers", "n_heads", "layer", "head", "tokens", "query",
                         "weights", "heads"}


def test_explain_snapshot_and_json():
    from llmcli.commands.explain import explain_view, render_explain

    model = fake_model()
    ids = model.tokenizer.encode("Hi")
    sampler = make_sampler(temperature=1.0, seed=7)
    chunks = list(generate(model, ids, sampler, max_tokens=4, logprobs=10, top_probs=3))
    view = explain_view(model, False, ids, None, sampler, chunks)
    console = recording_console()
    render_explain(console, view, model.tokenizer)
    check_snapshot("explain.txt", console.export_text())
    assert [s["id"] for s in view["steps"]] == [c.token for c in chunks]
    assert len(view["embedding"]["values"]) == 8 and view["embedding"]["size"] == 8


def test_show_probs_snapshot(fake_loader):
    out = run_cli(["generate", "hi", "--show-probs", "3", "-n", "5", "--seed", "7",
                   "--top-k", "6", "-t", "1.3", "-v"])
    check_snapshot("show_probs.txt", out)
    assert out.count("raw: p=") == 5


def test_show_probs_are_the_sampler_distribution(fake_loader):
    """The alternatives printed at each step are the top of the Draw the sampler made,
    with non-default settings (recomputed here by running the same seeded sampler)."""
    from llmcli.commands._show_probs import probs_line

    out = run_cli(["generate", "hi", "--show-probs", "4", "-n", "4", "--seed", "3",
                   "--top-k", "7", "--top-p", "0.9", "-t", "1.6"])
    model = fake_model()
    sampler = make_sampler(temperature=1.6, top_k=7, top_p=0.9, seed=3)
    lines = out.splitlines()
    for n, chunk in enumerate(generate(model, model.tokenizer.encode("hi"), sampler, 4,
                                       top_probs=5)):
        assert chunk.prob == sampler.last.prob_of(chunk.token)
        assert chunk.top_probs == sampler.last.top(5)
        assert lines[n] == probs_line(model.tokenizer, chunk, 4).plain.rstrip()


# The JSON objects as each command's --help documents them: a dict lists every key, a
# one-element list describes each item, a type (or tuple of types) a value.
NUMBER, MAYBE_NUMBER = (int, float), (int, float, type(None))
TOKEN = {"index": int, "id": int, "text": str}
TOP = [{"id": int, "text": str, "prob": float}]
SCHEMAS = {
    "probs": {"model": str, "mode": str, "prompt_tokens": [int],
              "filters": {"top_k": int, "top_p": NUMBER, "min_p": NUMBER},
              "kept": {"vocabulary": int, "top_k": int, "top_p": int, "min_p": int,
                       "chain": int},
              "temperatures": [{"temperature": NUMBER, "entropy_bits": NUMBER,
                                "top": [{"id": int, "text": str, "prob": float,
                                         "kept": bool}]}]},
    "score": {"model": str, "tokens": [{**TOKEN, "logprob": MAYBE_NUMBER,
                                        "prob": MAYBE_NUMBER,
                                        "surprisal_bits": MAYBE_NUMBER}],
              "scored_tokens": int, "mean_surprisal_bits": MAYBE_NUMBER,
              "perplexity": MAYBE_NUMBER},
    "attention": {"model": str, "n_layers": int, "n_heads": int, "layer": (int, str),
                  "head": (int, type(None)), "tokens": [TOKEN], "query": TOKEN,
                  "weights": [float], "heads": [[float]]},
    "explain": {"model": str, "arch": str, "mode": str, "tokens": [TOKEN],
                "embedding": {**TOKEN, "size": int, "values": [float], "norm": float},
                "architecture": {"n_layers": int, "n_heads": int, "n_kv_heads": int,
                                 "head_dim": int, "n_embd": int, "n_vocab": int},
                "sampler": str,
                "steps": [{"step": int, "id": int, "text": str, "logprob": float,
                           "prob": float, "finish_reason": (str, type(None)),
                           "top": TOP, "sampler_top": TOP}]},
}


def check_schema(value, schema, where="$"):
    if isinstance(schema, dict):
        assert isinstance(value, dict) and set(value) == set(schema), \
            f"{where}: keys {sorted(value)} != {sorted(schema)}"
        for key, sub in schema.items():
            check_schema(value[key], sub, f"{where}.{key}")
    elif isinstance(schema, list):
        assert isinstance(value, list) and value, f"{where}: not a non-empty list"
        for n, item in enumerate(value):
            check_schema(item, schema[0], f"{where}[{n}]")
    else:
        assert isinstance(value, schema) and not (
            isinstance(value, bool) and schema in (int, NUMBER)), \
            f"{where}: {value!r} is not {schema}"


@pytest.mark.parametrize("args", [
    ["probs", "hi", "-t", "0,0.2,1", "--format", "json"],
    ["score", "hello", "--format", "json"],
    ["attention", "the cat", "--token", "cat", "--format", "json"],
    ["attention", "the cat", "--token", "cat", "--layer", "all", "--head", "1",
     "--format", "json"],
    ["explain", "hi", "-n", "2", "--seed", "1", "--format", "json"],
], ids=lambda args: "-".join(args[:1] + args[4:6]))
def test_json_schemas(fake_loader, args):
    check_schema(json.loads(run_cli(args)), SCHEMAS[args[0]])


def test_usage_errors(fake_loader):
    runner = CliRunner()
    assert runner.invoke(cli, ["generate", "hi", "--step"]).exit_code == 2
    assert runner.invoke(cli, ["generate", "hi", "--show-probs", "2", "--format",
                               "json"]).exit_code == 2
    assert runner.invoke(cli, ["probs", "hi", "-t", "x"]).exit_code == 2
    assert runner.invoke(cli, ["attention", "hi", "--layer", "top"]).exit_code == 2


# --- --step through a pseudo-terminal -------------------------------------------------------

def _read_until(fd, marker, timeout=30):
    data, end = b"", time.time() + timeout
    while marker not in data and time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data


@contextlib.contextmanager
def _on_a_pty(argv, **env):
    """Run argv in a child whose terminal is a pty; yields (fd, outcome). On leaving, the
    child is reaped and outcome["status"] is its exit status; if the test fails first,
    the child is killed (it may be waiting for an answer that never comes)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(env)
        os.execv(argv[0], argv)
    outcome = {}
    try:
        yield fd, outcome
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        outcome["status"] = os.waitstatus_to_exitcode(status)


def test_step_on_a_terminal():
    """fake_llm runs the real CLI; a pty is its terminal. Step 1: pick choice 2;
    step 2: Enter keeps the drawn token. The output is the chosen tokens."""
    argv = [sys.executable, os.path.join(HERE, "fake_llm.py"), "generate", "ab", "--step",
            "-n", "2", "-t", "1", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", "1"]
    with _on_a_pty(argv, COLUMNS="100", PYTHONPATH=os.path.dirname(HERE)) as (fd, outcome):
        first = _read_until(fd, b"q = stop: ").decode("utf-8", "replace")
        assert "[2]" in first
        choice2 = first.split("[2] '", 1)[1].split("'", 1)[0]
        os.write(fd, b"2\n")
        second = _read_until(fd, b"q = stop: ").decode("utf-8", "replace")
        assert f"text so far: '{choice2}'" in second
        os.write(fd, b"\n")
        rest = _read_until(fd, b"\n\n__never__", timeout=10).decode("utf-8", "replace")
    assert outcome["status"] == 0
    drawn_line = next(line for line in second.splitlines() if "<- drawn" in line)
    drawn = drawn_line.split("'", 1)[1].rsplit("'", 1)[0].replace("␣", " ")
    assert drawn in rest     # Enter kept the drawn token: it is the text written last


def test_step_snapshot_and_the_picks_are_appended():
    """StepSampler on the fake model, answers scripted: Enter, 2, Enter, q. The screens
    are a snapshot; the generated ids are the drawn token, then choice 2 of the second
    screen (read from the wrapped sampler's Draw at that prompt), then the drawn one."""
    from llmcli.commands._show_probs import StepSampler

    model = fake_model()
    ids = model.tokenizer.encode("ab")
    inner = make_sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=4)
    answers, draws = iter(["\n", "2\n", "\n", "q\n"]), []
    console = recording_console()

    def read_line():
        draws.append((inner.last.token, inner.last.top(10)))
        return next(answers)
    step = StepSampler(inner, model.tokenizer, len(ids), console=console,
                       read_line=read_line)
    chunks = list(generate(model, ids, step, max_tokens=10, ignore_eos=True))
    check_snapshot("step.txt", console.export_text())
    assert step.quit and chunks[-1].finish_reason == "interrupted" and len(draws) == 4
    expected = [draws[0][0], draws[1][1][2][0], draws[2][0]]
    assert [c.token for c in chunks if c.token is not None] == expected


def test_step_q_stops_with_status_0_and_the_text_so_far():
    """q is the user's choice, not an interruption (Ctrl-C exits 130): status 0, and
    the text chosen before it is out."""
    argv = [sys.executable, os.path.join(HERE, "fake_llm.py"), "generate", "ab", "--step",
            "-n", "5", "--stats"]
    with _on_a_pty(argv, PYTHONPATH=os.path.dirname(HERE)) as (fd, outcome):
        first = _read_until(fd, b"q = stop: ", timeout=60)
        assert b"q = stop: " in first
        os.write(fd, b"\n")
        second = _read_until(fd, b"q = stop: ", timeout=60)
        os.write(fd, b"q\n")
        rest = _read_until(fd, b"__never__", timeout=10).decode("utf-8", "replace")
    assert outcome["status"] == 0
    assert "generated: 1 tokens" in rest and "finish:    quit" in rest
    assert b"text so far: '" in second and b"text so far: ''" not in second


def test_step_without_a_terminal_is_a_usage_error():
    proc = subprocess.run([sys.executable, os.path.join(HERE, "fake_llm.py"), "generate",
                           "hi", "--step"], capture_output=True, text=True, input="",
                          env={**os.environ, "PYTHONPATH": os.path.dirname(HERE)})
    assert proc.returncode == 2 and "--step" in proc.stderr


# --- real models -----------------------------------------------------------------------------

@pytest.fixture(params=["smollm2_path", "gemma3_path"])
def real_model(request, monkeypatch):
    path = request.getfixturevalue(request.param)
    monkeypatch.setattr(generate_command, "_load_model",
                        lambda name, n_ctx, threads: __import__("llmcli.model").model.load(
                            path, n_ctx=n_ctx or 512, threads=threads))
    return path


def test_real_probs(real_model):
    """Each column is softmax(logits / T) over the whole vocabulary, recomputed here with
    NumPy from the model's logits for the prompt the view reports."""
    from llmcli.model import load

    view = json.loads(run_cli(["probs", "The capital of France is", "-t", "0.5,1,2",
                               "--top", "5", "--format", "json"]))
    logits = load(real_model, n_ctx=512, threads=1).logits(view["prompt_tokens"])[-1]
    for column in view["temperatures"]:
        scaled = logits.astype(np.float64) / column["temperature"]
        probs = np.exp(scaled - scaled.max())
        assert len(probs) == view["kept"]["vocabulary"]
        probs /= probs.sum()
        top = np.argsort(-probs, kind="stable")[:5]
        assert [t["id"] for t in column["top"]] == top.tolist()
        np.testing.assert_allclose([t["prob"] for t in column["top"]], probs[top], rtol=1e-6)
    entropies = [c["entropy_bits"] for c in view["temperatures"]]
    assert entropies == sorted(entropies)                     # hotter = flatter
    assert view["kept"]["chain"] <= min(view["kept"]["top_k"], view["kept"]["top_p"])


def test_real_score(real_model):
    view = json.loads(run_cli(["score", "The cat sat on the mat.", "--format", "json"]))
    assert view["tokens"][0]["logprob"] is None
    assert all(t["logprob"] < 0 for t in view["tokens"][1:])
    assert 1 < view["perplexity"] < 1e6


def test_real_attention_at_it(real_model):
    view = json.loads(run_cli(["attention", SENTENCE, "--token", "it", "--format", "json"]))
    assert view["query"]["text"].strip() == "it"
    assert len(view["weights"]) == view["query"]["index"] + 1   # zero weight after "it"
    assert sum(view["weights"]) == pytest.approx(1.0, abs=1e-4)
    for row in view["heads"]:
        assert sum(row) == pytest.approx(1.0, abs=1e-4)


def test_real_explain(real_model):
    view = json.loads(run_cli(["explain", "The capital of France is", "-n", "3", "--raw",
                               "--seed", "2", "--format", "json"]))
    assert view["embedding"]["size"] == view["architecture"]["n_embd"]
    first = view["steps"][0]
    assert len(first["top"]) == 10 and first["prob"] > 0
    assert 1 <= len(view["steps"]) <= 4


# --- --step on a real model through a pseudo-terminal ----------------------------------------

_CHOICE_LINE = re.compile(r"^\s+\[(\d)\] '(.*)'\s+(\S+)(  <- drawn)?$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _step_screen(fd, timeout=60):
    """The text of one --step screen, up to its prompt: (text so far, [(label, p)])."""
    raw = _read_until(fd, b"q = stop: ", timeout).decode("utf-8", "replace")
    assert "q = stop: " in raw, f"no --step prompt within {timeout} s: {raw!r}"
    lines = _ANSI.sub("", raw).replace("\r", "").splitlines()
    so_far = next(line for line in lines if line.startswith("text so far: "))
    choices = [m.group(2, 3) for m in map(_CHOICE_LINE.match, lines) if m]
    return so_far[len("text so far: "):], [(text, float(p)) for text, p in choices]


def _expected_choices(model, ids):
    """The top 10 of softmax(logits) after `ids`, computed here with NumPy from the
    model's teacher-forced logits: the distribution a greedy sampler with every filter
    off offers."""
    from llmcli.commands.tokenize import visible_piece

    logits = model.logits(ids)[-1].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs, kind="stable")[:10]
    return [int(i) for i in top], [(visible_piece(model.tokenizer, int(i)), probs[i])
                                   for i in top]


def _assert_same_choices(shown, expected):
    assert [text for text, _ in shown] == [text for text, _ in expected]
    for (_, p_shown), (_, p_expected) in zip(shown, expected):
        assert p_shown == pytest.approx(p_expected, abs=1.5e-3)   # printed to 3 places


def test_step_on_a_real_model_appends_the_chosen_token(smollm2_path):
    """SmolLM2 through a pty, greedy with every filter off: step 1 Enter keeps the
    argmax; step 2 the digit 2 picks the third alternative shown; step 3 shows the text
    so far and the choices of the model fed that pick. Every screen is checked against
    softmax of the logits that llmcli.model gives for the prefix."""
    from llmcli.model import load

    prompt, pick = "The capital of France is", 2
    model = load(smollm2_path, n_ctx=512, threads=1)
    ids = model.tokenizer.encode(prompt)
    argv = [sys.executable, "-m", "llmcli", "generate", prompt, "-m", str(smollm2_path),
            "--raw", "--step", "-n", "3", "-t", "0", "--top-k", "0", "--top-p", "1",
            "--min-p", "0", "--threads", "1"]
    with _on_a_pty(argv, COLUMNS="100", PYTHONPATH=os.path.dirname(HERE)) as (fd, outcome):
        so_far, shown = _step_screen(fd)
        top, expected = _expected_choices(model, ids)
        assert so_far == "''"
        _assert_same_choices(shown, expected)
        os.write(fd, b"\n")                     # Enter: keep the drawn (argmax) token
        ids.append(top[0])

        so_far, shown = _step_screen(fd)
        top, expected = _expected_choices(model, ids)
        _assert_same_choices(shown, expected)
        os.write(fd, f"{pick}\n".encode())      # a digit: the third alternative
        ids.append(top[pick])

        so_far, shown = _step_screen(fd)
        top, expected = _expected_choices(model, ids)
        generated = model.tokenizer.decode(ids[-2:])
        assert so_far == repr(generated)      # the pick is what was appended...
        _assert_same_choices(shown, expected)   # ...and what the model was fed
        os.write(fd, b"\n")                     # Enter again: the argmax
        ids.append(top[0])
        rest = _ANSI.sub("", _read_until(fd, b"__never__", timeout=30).decode(
            "utf-8", "replace"))
    assert outcome["status"] == 0
    assert model.tokenizer.decode([ids[-1]]) in rest   # the kept token was written
