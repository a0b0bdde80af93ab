"""`llm generate` with the fake model (tests/fakes.py): in-process through Click for the
option logic, and as real subprocesses (tests/fake_llm.py runs llmcli.cli.main with the
fake loader) for pipes, signals, stdin and exit codes. The same behaviours on the real
models are in tests/test_generate_real.py."""
import json
import os
import signal
import subprocess
import sys
import time

import click
import pytest
from click.testing import CliRunner

import llmcli
import llmcli.commands.generate as generate_command
from llmcli.commands import _common

from fakes import FakeModel, FakeTokenizer, cycling_rule, scripted_model

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_LLM = os.path.join(HERE, "fake_llm.py")
REPLY = "The quick brown fox jumps over the lazy dog. "


@pytest.fixture
def loaded(monkeypatch):
    """Replace the model loader; returns a dict recording the load arguments."""
    record = {}

    def use(model_factory):
        def load(name, n_ctx, threads):
            record.update(name=name, n_ctx=n_ctx, threads=threads)
            record["model"] = model_factory(n_ctx)
            return record["model"]
        monkeypatch.setattr(generate_command, "_load_model", load)
        return record
    return use


def raw_scripted(reply):
    """A model answering "hi" with `reply`, without a chat template (raw prompts)."""
    return lambda n_ctx: scripted_model("hi", reply, tokenizer=FakeTokenizer(chat_template=None))


def cycling(chat=False):
    def factory(n_ctx):
        template = FakeTokenizer().chat_template if chat else None
        return FakeModel(cycling_rule(REPLY), n_ctx=n_ctx or 256,
                         tokenizer=FakeTokenizer(chat_template=template))
    return factory


def invoke(args, stdin=None, env=None):
    return CliRunner().invoke(generate_command.generate, args, input=stdin, env=env)


def as_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def prompt_text(result):
    return bytes(t for t in as_json(result)["prompt_tokens"] if t < 256).decode()


# --- options ------------------------------------------------------------------------------

def test_help_shows_every_default_and_env_var():
    out = " ".join(invoke(["--help"]).output.split())
    for text in ["default: 0.8", "default: 40", "default: 0.95", "default: 0.05",
                 "default: 1.0", "default: 64", "default: 256", "default: text",
                 "LLMCLI_TEMPERATURE", "LLMCLI_MAX_TOKENS", "--temp", "stdin, file, PROMPT",
                 "repetition penalty -> top-k -> top-p -> min-p -> temperature"]:
        assert text in out
    for param in generate_command.generate.params:
        has_default = param.default is not None and "UNSET" not in repr(param.default)
        if isinstance(param, click.Option) and not param.is_flag and has_default:
            assert param.show_default, param.name


@pytest.mark.parametrize("args, option", [
    (["-t", "nan"], "-t/--temperature"), (["-t", "-1"], "-t/--temperature"),
    (["--temp", "inf"], "-t/--temperature"), (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"), (["--top-k", "-1"], "--top-k"),
    (["--min-p", "2"], "--min-p"), (["-n", "0"], "-n/--max-tokens"),
    (["-n", "-5"], "-n/--max-tokens"), (["--threads", "0"], "--threads"),
    (["--ctx-size", "0"], "--ctx-size"), (["--repeat-penalty", "0"], "--repeat-penalty"),
    (["--repeat-last-n", "-2"], "--repeat-last-n"), (["--seed", "-1"], "--seed"),
    (["--stop", ""], "--stop"), (["--top-logprobs", "3"], "--top-logprobs"),
    (["--format", "xml"], "--format"), (["-t", "abc"], "-t"),
])
def test_invalid_values_are_usage_errors_naming_the_option(loaded, args, option):
    record = loaded(cycling())
    result = invoke(args + ["hello"])
    assert result.exit_code == 2
    assert option in result.stderr
    assert "model" not in record        # rejected before loading anything


def test_env_defaults_and_the_flag_wins(loaded):
    loaded(cycling())
    env = {"LLMCLI_TEMPERATURE": "0", "LLMCLI_MAX_TOKENS": "3", "LLMCLI_FORMAT": "json"}
    out = as_json(invoke(["hi"], env=env))
    assert out["options"]["temperature"] == 0 and len(out["tokens"]) == 3
    out = as_json(invoke(["hi", "-n", "5", "-t", "0.5"], env=env))
    assert out["options"]["temperature"] == 0.5 and len(out["tokens"]) == 5


ISSUE_OPTIONS = ["--temperature", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
                 "--repeat-last-n", "--seed", "--max-tokens", "--stop", "--ignore-eos",
                 "--ctx-size", "--threads", "--raw", "--system", "--show-prompt", "--stats",
                 "--format", "--verbose"]


def test_every_listed_option_takes_its_default_from_an_env_var():
    by_flag = {flag: p for p in generate_command.generate.params for flag in p.opts}
    for flag in ISSUE_OPTIONS:
        name = flag[2:].replace("-", "_").upper()
        assert by_flag[flag].envvar == f"LLMCLI_{name}", flag
    # -m/--model reads $LLMCLI_MODEL through its default
    assert "LLMCLI_MODEL" in by_flag["--model"].show_default


def test_stop_raw_and_show_prompt_from_the_environment(loaded):
    loaded(raw_scripted("one two three"))
    env = {"LLMCLI_STOP": " three", "LLMCLI_SHOW_PROMPT": "1"}
    result = invoke(["hi", "-t", "0"], env=env)
    assert result.stdout == "one two"            # the whole variable is one stop string
    assert "[prompt: 2 tokens]" in result.stderr
    assert invoke(["hi", "-t", "0", "--stop", "two"], env=env).stdout == "one "
    loaded(cycling(chat=True))
    assert as_json(invoke(["hi", "--format", "json", "-n", "1"],
                          env={"LLMCLI_RAW": "1"}))["options"]["mode"] == "raw"
    assert as_json(invoke(["hi", "--chat", "--format", "json", "-n", "1"],
                          env={"LLMCLI_RAW": "1"}))["options"]["mode"] == "chat"


def test_model_ctx_and_threads_reach_the_loader(loaded):
    record = loaded(cycling())
    invoke(["hi", "-m", "some.gguf", "--ctx-size", "100", "--threads", "3", "-n", "1"])
    assert (record["name"], record["n_ctx"], record["threads"]) == ("some.gguf", 100, 3)


# --- prompt sources -------------------------------------------------------------------------

def test_stdin_then_a_blank_line_then_the_argument(loaded):
    loaded(cycling())
    result = invoke(["Summarize:", "--format", "json", "-n", "1"], stdin="notes\n")
    assert prompt_text(result) == "notes\n\nSummarize:"


def test_dash_reads_stdin_and_file_comes_between(loaded, tmp_path):
    loaded(cycling())
    path = tmp_path / "p.txt"
    path.write_text("from file\n")
    assert prompt_text(invoke(["-", "--format", "json", "-n", "1"], stdin="only stdin")) == \
        "only stdin"
    result = invoke(["arg", "-f", str(path), "--format", "json", "-n", "1"], stdin="in")
    assert prompt_text(result) == "in\n\nfrom file\n\narg"


def test_no_prompt_on_a_terminal_is_an_immediate_usage_error(loaded, monkeypatch):
    record = loaded(cycling())
    monkeypatch.setattr(generate_command, "_isatty", lambda stream: True)
    result = invoke([])
    assert result.exit_code == 2 and "no prompt" in result.stderr
    assert "model" not in record


def test_empty_prompt_is_a_usage_error(loaded):
    loaded(cycling())
    result = invoke([], stdin="")
    assert result.exit_code == 2 and "empty" in result.stderr


def test_missing_file_and_bad_utf8(loaded, tmp_path):
    loaded(cycling())
    result = invoke(["-f", str(tmp_path / "nope.txt")])
    assert result.exit_code == 1 and "--file" in str(result.exception)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok \xff here")
    result = invoke(["-f", str(bad)])
    assert "byte offset 3" in str(result.exception)
    assert prompt_text(invoke(["-f", str(bad), "--errors", "replace", "--format", "json",
                               "-n", "1"])) == "ok \ufffd here"


# --- modes ----------------------------------------------------------------------------------

def test_chat_template_is_used_when_present_and_raw_forces_completion(loaded):
    loaded(cycling(chat=True))
    chat = as_json(invoke(["hi", "-s", "be nice", "--format", "json", "-n", "1"]))
    assert chat["options"]["mode"] == "chat"
    assert chat["prompt_tokens"][0] == 258         # <|im_start|> as a special token
    raw = as_json(invoke(["hi", "--raw", "--format", "json", "-n", "1"]))
    assert raw["options"]["mode"] == "raw" and raw["prompt_tokens"] == list(b"hi")


def test_chat_without_template_and_system_in_raw_mode_are_usage_errors(loaded):
    loaded(cycling(chat=False))
    assert invoke(["--chat", "hi"]).exit_code == 2
    result = invoke(["-s", "sys", "hi"])
    assert result.exit_code == 2 and "-s/--system" in result.stderr


def test_show_prompt_and_verbose_go_to_stderr(loaded):
    loaded(cycling(chat=True))
    result = invoke(["hi", "--show-prompt", "-v", "--seed", "7", "-n", "2"])
    assert result.exit_code == 0
    assert "<|im_start|>user\nhi<|im_end|>" in result.stderr
    assert "[prompt: 21 tokens]" in result.stderr
    assert "draw (seed 7)" in result.stderr and "mode chat" in result.stderr
    assert "seed" not in result.stdout and len(result.stdout) == 2


# --- output -----------------------------------------------------------------------------------

def test_stdout_is_only_the_text_and_stats_go_to_stderr(loaded):
    loaded(raw_scripted("Hello!"))
    result = invoke(["hi", "-t", "0", "--stats"])
    assert result.stdout == "Hello!"
    for line in ["load:", "prompt:    2 tokens", "generated: 7 tokens", "first token after",
                 "finish:    eos"]:
        assert line in result.stderr


def test_stop_string_via_the_cli(loaded):
    loaded(raw_scripted("one two three"))
    assert invoke(["hi", "-t", "0", "--stop", "two", "--stop", "xyz"]).stdout == "one "


def test_same_seed_same_bytes_and_a_drawn_seed_is_reported(loaded):
    loaded(lambda n_ctx: FakeModel(__import__("fakes").hashed_rule(3), n_ctx=128))
    a = invoke(["hi", "--seed", "11", "-n", "40", "-t", "1.3"]).stdout_bytes
    b = invoke(["hi", "--seed", "11", "-n", "40", "-t", "1.3"]).stdout_bytes
    assert a == b
    seeds = {as_json(invoke(["hi", "-n", "2", "--format", "json"]))["options"]["seed"]
             for _ in range(3)}
    assert len(seeds) == 3


def test_json_schema(loaded):
    loaded(raw_scripted("Hey"))
    out = as_json(invoke(["hi", "-t", "0", "--format", "json", "--top-logprobs", "2"]))
    assert set(out) == {"model", "options", "prompt_tokens", "tokens", "text",
                        "finish_reason", "stats", "logprobs"}
    assert set(out["options"]) == {"temperature", "top_k", "top_p", "min_p",
                                   "repeat_penalty", "repeat_last_n", "seed", "max_tokens",
                                   "stop", "ignore_eos", "ctx_size", "mode", "system"}
    assert out["text"] == "Hey" and out["tokens"] == [72, 101, 121, 257]
    assert out["finish_reason"] == "eos" and out["prompt_tokens"] == [104, 105]
    assert {"load_seconds", "prompt_tokens", "generated_tokens", "time_to_first_token",
            "prefill_tokens_per_second", "decode_tokens_per_second"} <= set(out["stats"])
    first = out["logprobs"][0]
    assert first["id"] == 72 and len(first["top_logprobs"]) == 2
    assert first["top_logprobs"][0] == {"id": 72, "text": "H", "logprob": first["logprob"]}


def test_jsonl_schema_lines_add_up_to_the_summary(loaded):
    loaded(raw_scripted("Hey <b>"))
    result = invoke(["hi", "-t", "0", "--format", "jsonl", "--stop", "<b>"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    tokens, summary = lines[:-1], lines[-1]
    assert all(t["type"] == "token" for t in tokens) and summary["type"] == "summary"
    assert all(set(t) == {"type", "id", "text", "piece", "logprob"} for t in tokens)
    assert all(t["logprob"] <= 0 for t in tokens)
    assert "".join(t["text"] for t in tokens) == summary["text"] == "Hey "
    assert summary["finish_reason"] == "stop"
    assert [t["id"] for t in tokens] == summary["tokens"]


def test_control_characters_are_escaped_on_a_terminal_only(loaded, monkeypatch):
    loaded(raw_scripted("a\x1b[2Jb"))
    assert invoke(["hi", "-t", "0"]).stdout == "a\x1b[2Jb"          # a pipe: as is
    monkeypatch.setattr(_common, "_isatty", lambda stream: True)
    assert invoke(["hi", "-t", "0"]).stdout.startswith("a\\x1b[2Jb")
    assert invoke(["hi", "-t", "0", "--raw-output"]).stdout.startswith("a\x1b[2Jb")


def test_prompt_too_long_is_an_error_with_both_numbers(loaded):
    loaded(cycling())
    result = invoke(["x" * 50, "--ctx-size", "20"])
    assert result.exit_code == 1
    assert "50 tokens" in str(result.exception) and "holds 20" in str(result.exception)


def test_interrupt_keeps_partial_output_and_stats(loaded):
    def factory(n_ctx):
        model = cycling()(256)
        model.interrupt_on_eval = 6
        return model
    loaded(factory)
    result = invoke(["hi", "-t", "0", "--stats"])
    assert result.exit_code == 130
    assert result.stdout == "e qui"
    assert "finish:    interrupted" in result.stderr


def test_interrupt_during_the_prefill_reports_no_cache_and_no_first_token(loaded):
    def factory(n_ctx):
        model = cycling()(256)
        model.interrupt_on_eval = 1           # the prefill itself is cut
        return model
    loaded(factory)
    result = invoke(["hello there", "-t", "0", "--stats"])
    assert result.exit_code == 130 and result.stdout == ""
    assert "prompt:    11 tokens, interrupted before the prefill finished" in result.stderr
    assert "from cache" not in result.stderr
    assert "first token: none" in result.stderr and "finish:    interrupted" in result.stderr


# --- real subprocesses (fake model) ---------------------------------------------------------------

def fake_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(llmcli.__file__))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def fake_llm(*args, stdin=subprocess.DEVNULL, **popen):
    return subprocess.Popen([sys.executable, FAKE_LLM, "generate", *args], stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def test_subprocess_pipe_into_head_ends_quietly(tmp_path):
    shell = f"'{sys.executable}' '{FAKE_LLM}' generate hi -n 100000 | head -c 1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True,
                          env=fake_env(), timeout=60, stdin=subprocess.DEVNULL)
    assert proc.stdout == b"e"
    assert proc.stderr == b""
    assert proc.returncode == 0


def sigint_as_in_a_terminal():
    """Child setup: SIGINT at its default, as for a program in a terminal's foreground.
    A shell running the tests as a background job leaves SIGINT ignored, and Python then
    keeps ignoring it (no KeyboardInterrupt), as every program should."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_subprocess_sigint_keeps_partial_output_and_exits_130():
    proc = fake_llm("hi", "-n", "100000", "--stats", "-t", "0",
                    env=fake_env(FAKE_LLM_DELAY=0.02), preexec_fn=sigint_as_in_a_terminal)
    first = proc.stdout.read(10)              # generation is under way
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    out = (first + rest).decode()
    assert proc.returncode == 130
    assert len(out) >= 10 and (REPLY * 50)[2:].startswith(out)
    assert "finish:    interrupted" in err.decode()
    assert "Traceback" not in err.decode()


def test_subprocess_stdin_combinations():
    def prompt_of(args, stdin_bytes):
        proc = subprocess.run([sys.executable, FAKE_LLM, "generate", *args, "--format",
                               "json", "-n", "1"], input=stdin_bytes, capture_output=True,
                              env=fake_env(), timeout=60)
        assert proc.returncode == 0, proc.stderr
        ids = json.loads(proc.stdout)["prompt_tokens"]
        return bytes(ids).decode()

    assert prompt_of(["Summarize:"], b"notes\n") == "notes\n\nSummarize:"
    assert prompt_of(["-"], b"piped") == "piped"
    assert prompt_of(["arg"], b"") == "arg"


def test_subprocess_exit_codes():
    def code(args, **extra):
        proc = subprocess.run([sys.executable, FAKE_LLM, "generate", *args],
                              capture_output=True, env=fake_env(**extra), timeout=60,
                              stdin=subprocess.DEVNULL)
        return proc.returncode, proc.stderr.decode()

    assert code(["hi", "-n", "2"])[0] == 0
    rc, err = code(["hi", "-t", "nan"])
    assert rc == 2 and "-t/--temperature" in err
    rc, err = code(["x" * 40], FAKE_LLM_CTX=16)
    assert rc == 1 and err.startswith("Error: the prompt has 40 tokens")
    assert "Traceback" not in err
    rc, err = code([])                       # stdin is /dev/null: empty prompt
    assert rc == 2


def test_subprocess_streams_before_the_end():
    proc = fake_llm("hi", "-n", "200", "-t", "0", env=fake_env(FAKE_LLM_DELAY=0.02))
    start = time.monotonic()
    first = proc.stdout.read(1)
    elapsed = time.monotonic() - start
    proc.communicate(timeout=60)
    assert first == b"e"
    assert elapsed < 200 * 0.02       # the first byte came long before the last token


def _read_all(fd):
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:       # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def test_subprocess_on_a_terminal_escapes_controls_and_ends_the_line():
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, FAKE_LLM, "generate", "hi", "-n", "3", "-t", "0"],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                            env=fake_env(FAKE_LLM_CONTROL="1"))
    os.close(slave)
    out = _read_all(master)
    os.close(master)
    proc.wait(timeout=60)
    assert proc.returncode == 0
    # the fake's reply starts with ESC after a 2-byte prompt; the terminal sees "\x1b"
    assert out.replace(b"\r\n", b"\n") == b"\\x1b[2\n"


def test_subprocess_no_prompt_with_a_terminal_stdin_fails_at_once():
    import pty

    master, slave = pty.openpty()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, FAKE_LLM, "generate"], stdin=slave,
                          capture_output=True, env=fake_env(), timeout=60)
    os.close(slave)
    os.close(master)
    assert proc.returncode == 2 and b"no prompt" in proc.stderr
    assert time.monotonic() - start < 30
