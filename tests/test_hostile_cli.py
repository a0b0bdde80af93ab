"""Hostile command lines and text through the real `llm` command (issue 7, part 1):
missing and unreadable model paths, bad numbers, text that is not UTF-8 or holds NUL
bytes, 10 MB of one character, endless input, a prompt one token over the context, an
empty prompt, output to /dev/full or a closed stdout, SIGINT and SIGTERM mid-generation,
a read-only cache, and no model while offline.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostile_models import tiny_llama
from hostile_run import (assert_clean_error, assert_no_crash, child_limits, llm_env,
                         run_llm)
from llmcli import models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


def generate(model, *args, home, **kw):
    return run_llm("generate", "-m", model, "-n", "1", "-t", "0", *args, home=home, **kw)


# --- model paths ---------------------------------------------------------------------------

def test_missing_model_path(tmp_path):
    assert_clean_error(generate(tmp_path / "nope.gguf", "hi", home=tmp_path),
                       "model file not found: .*nope.gguf")


def test_unreadable_model_file(tiny, tmp_path):
    model = tmp_path / "secret.gguf"
    model.write_bytes(tiny.read_bytes())
    model.chmod(0)
    outcome = generate(model, "hi", home=tmp_path / "home", honour_permissions=True)
    assert_clean_error(outcome, "secret.gguf.*Permission denied")


def test_model_in_an_unreadable_directory(tiny, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(tiny.read_bytes())
    folder.chmod(0)
    try:
        outcome = generate(folder / "m.gguf", "hi", home=tmp_path / "home",
                           honour_permissions=True)
    finally:
        folder.chmod(0o700)
    assert_clean_error(outcome, "Permission denied.*locked/m.gguf")


def test_control_characters_in_a_path_are_shown_escaped(tmp_path):
    outcome = generate(tmp_path / "x\x1b]0;owned\x07\x1b[2J.gguf", "hi", home=tmp_path)
    assert_clean_error(outcome, r"model file not found: .*x\\x1b\]0;owned\\x07\\x1b\[2J.gguf")
    assert "\x1b" not in outcome.stderr


def test_unknown_model_name_and_empty_name(tmp_path):
    assert_clean_error(generate("llama99", "hi", home=tmp_path), "unknown model 'llama99'")
    assert_clean_error(generate("", "hi", home=tmp_path), "unknown model ''")


# --- numeric options -----------------------------------------------------------------------------

BAD_NUMBERS = [
    (["--temperature", "-1"], "temperature"), (["--temperature", "nan"], "temperature"),
    (["--top-p", "0"], "top-p"), (["--top-p", "inf"], "top-p"), (["--min-p", "2"], "min-p"),
    (["--top-k", "-5"], "top-k"), (["--repeat-penalty", "0"], "repeat-penalty"),
    (["-n", "0"], "max-tokens"), (["-n", "many"], "max-tokens"),
    (["--seed", "-1"], "seed"), (["--seed", str(2**64)], "seed"),
    (["--ctx-size", "0"], "ctx-size"), (["--threads", "0"], "threads"),
    (["--top-logprobs", "101", "--format", "json"], "top-logprobs"),
]


@pytest.mark.parametrize("args, option", BAD_NUMBERS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_numbers_are_usage_errors_naming_the_option(tiny, tmp_path, args, option):
    outcome = run_llm("generate", "-m", tiny, *args, "hi", home=tmp_path)
    assert_clean_error(outcome, option, status=2)


def test_bad_number_from_the_environment_names_the_option(tiny, tmp_path):
    outcome = run_llm("generate", "-m", tiny, "hi", home=tmp_path,
                      env={"LLMCLI_TEMPERATURE": "warm"})
    assert_clean_error(outcome, "temperature", status=2)


def test_context_beyond_the_trained_one(tiny, tmp_path):
    outcome = generate(tiny, "--ctx-size", str(10**9), "hi", home=tmp_path)
    assert_clean_error(outcome, "'--ctx-size': context length 1000000000 is outside 1..512",
                       status=2)


def test_absurd_thread_count_is_refused_or_harmless(tiny, tmp_path):
    outcome = generate(tiny, "--threads", "100000", "--raw", "hi", home=tmp_path)
    assert_no_crash(outcome)
    assert outcome.cpu < 20


# --- the prompt text ---------------------------------------------------------------------------

def test_invalid_utf8_on_stdin(tiny, tmp_path):
    outcome = generate(tiny, home=tmp_path, stdin=b"caf\xc3\xa9 \xff\xfe bad")
    assert_clean_error(outcome, r"stdin is not valid UTF-8 \(byte offset 6\)")
    replaced = generate(tiny, "--raw", "--errors", "replace", home=tmp_path,
                        stdin=b"caf\xc3\xa9 \xff\xfe bad")
    assert replaced.returncode == 0, replaced.stderr


def test_invalid_utf8_in_a_prompt_file(tiny, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_bytes(b"ok\n\xed\xa0\x80")   # an encoded surrogate
    assert_clean_error(generate(tiny, "-f", prompt, home=tmp_path),
                       r"--file .*prompt.txt is not valid UTF-8 \(byte offset 3\)")


def test_nul_bytes_are_text(tiny, tmp_path):
    prompt = tmp_path / "nul.txt"
    prompt.write_bytes(b"a\0b\0\0c")
    for outcome in (generate(tiny, "--raw", home=tmp_path, stdin=b"x\0y"),
                    generate(tiny, "--raw", "-f", prompt, home=tmp_path)):
        assert outcome.returncode == 0, outcome.stderr
        assert outcome.stderr == ""


@pytest.mark.parametrize("char", ["a", "é", " ", "\n", "7"])
def test_ten_megabytes_of_one_character(smollm2_path, tmp_path, char):
    """One 10 MB "word": refused as too long for the context, before tokenizing (the
    tokenizer's near-linear time on such words is tested in test_tokenizer.py)."""
    outcome = generate(smollm2_path, "--raw", home=tmp_path,
                       stdin=(char * (10_000_000 // len(char.encode()))).encode())
    if char == "\n":   # trailing newlines are stripped: nothing is left
        assert_clean_error(outcome, "the prompt is empty", status=2)
    else:
        assert_clean_error(outcome, "the prompt has .* characters, so at least .* tokens .* "
                                    "but the context window holds 4096")


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_text_at_the_input_cap_fails_cleanly_within_the_memory_limit(model, smollm2_path,
                                                                     gemma3_path, tmp_path):
    """16 MiB of one letter, the most text read: refused before it is tokenized (that
    would make millions of tokens and peak near 1 GB), naming the lower bound on tokens."""
    from llmcli.commands._common import MAX_PROMPT_BYTES

    path = {"smollm2": smollm2_path, "gemma3": gemma3_path}[model]
    outcome = generate(path, "--raw", home=tmp_path, stdin=b"a" * MAX_PROMPT_BYTES)
    assert_clean_error(outcome, "the prompt has 16777216 characters, so at least .* tokens "
                                ".* but the context window holds 4096")
    assert outcome.max_rss_mb < 400


def test_a_prompt_just_over_the_bound_is_still_tokenized_and_measured(smollm2_path, tmp_path):
    # below the byte bound the prompt is tokenized and the exact count reported
    outcome = generate(smollm2_path, "--raw", "--ctx-size", "64", home=tmp_path,
                       stdin=b"word " * 200)
    assert_clean_error(outcome, "the prompt has 201 tokens but the context window holds 64")


@pytest.mark.parametrize("source", ["stdin", "--file"])
def test_endless_input_is_refused_not_read_forever(tiny, tmp_path, source):
    if source == "stdin":
        with open("/dev/zero", "rb") as zeros:
            outcome = generate(tiny, home=tmp_path, stdin=zeros)
    else:
        outcome = generate(tiny, "-f", "/dev/zero", home=tmp_path)
    assert_clean_error(outcome, f"{source}.* holds more than 16 MiB of text")


def test_perplexity_of_an_endless_file(tiny, tmp_path):
    outcome = run_llm("perplexity", "-m", tiny, "/dev/zero", home=tmp_path)
    assert_clean_error(outcome, "/dev/zero holds more than 16 MiB of text")


@pytest.mark.parametrize("n_tokens", [16, 17])
def test_prompt_that_fills_or_overflows_the_context(tiny, tmp_path, n_tokens):
    """Each "x" is one token of the tiny vocabulary (no merge applies)."""
    outcome = generate(tiny, "--raw", "--ctx-size", "16", "x" * n_tokens, home=tmp_path)
    assert_clean_error(outcome, f"the prompt has {n_tokens} tokens but the context window "
                                "holds 16, which leaves no room to generate")
    fits = generate(tiny, "--raw", "--ctx-size", "16", "x" * 15, home=tmp_path)
    assert fits.returncode == 0, fits.stderr


@pytest.mark.parametrize("args, stdin", [([""], b""), (["-"], b"\n\n\n"), ([], b"")])
def test_empty_prompt(tiny, tmp_path, args, stdin):
    outcome = generate(tiny, *args, home=tmp_path, stdin=stdin)
    assert_clean_error(outcome, "the prompt is empty", status=2)


def test_closed_stdin_is_no_stdin(tiny, tmp_path):
    """`llm generate PROMPT <&-` works; without a prompt it is a usage error."""
    env = llm_env(tmp_path)
    command = [sys.executable, "-m", "llmcli", "generate", "-m", str(tiny), "-n", "1", "--raw"]
    for extra, status in (["hi"], 0), ([], 2):
        result = subprocess.run(command + extra, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=120,
                                preexec_fn=lambda: os.close(0))
        assert result.returncode == status, result.stderr
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr


# --- where the output goes ----------------------------------------------------------------------

def test_stdout_to_dev_full(tiny, tmp_path):
    with open("/dev/full", "wb") as full:
        for args in (["generate", "-m", tiny, "-n", "3", "--raw", "hi"],
                     ["generate", "-m", tiny, "-n", "3", "--raw", "--format", "json", "hi"],
                     ["inspect", tiny]):
            assert_clean_error(run_llm(*args, home=tmp_path, stdout=full),
                               "No space left on device")


def test_closed_stdout(tiny, tmp_path):
    result = subprocess.run([sys.executable, "-m", "llmcli", "inspect", str(tiny)],
                            env=llm_env(tmp_path), stderr=subprocess.PIPE, text=True,
                            timeout=120, preexec_fn=lambda: os.close(1))
    assert result.returncode == 1
    assert result.stderr == "Error: [Errno 9] cannot write output: stdout is closed\n"


# --- signals mid-generation ---------------------------------------------------------------------

@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_generation_keeps_the_output_and_exits_like_a_shell(smollm2_path, tmp_path,
                                                                      sig, status):
    def child_setup():
        child_limits()()
        # a shell running us in the background may have left SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        [sys.executable, "-m", "llmcli", "generate", "-m", str(smollm2_path), "-n", "5000",
         "--ignore-eos", "--seed", "1", "--stats", "Tell me a long story."],
        env=llm_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=child_setup)
    first = process.stdout.read(16)   # generation has started
    process.send_signal(sig)
    rest, err = process.communicate(timeout=120)
    err = err.decode()
    assert process.returncode == status, err
    assert len(first) == 16 and "Traceback" not in err and "Error" not in err
    assert "finish:    interrupted" in err     # --stats still reports, after the text
    assert (first + rest).decode("utf-8", "replace").strip()


# --- the model cache -------------------------------------------------------------------------------

def test_read_only_cache_without_the_model(tmp_path):
    home = tmp_path / "cache"
    home.mkdir()
    home.chmod(0o555)
    outcome = run_llm("generate", "-n", "1", "hi", home=home, honour_permissions=True,
                      env={"LLMCLI_OFFLINE": None})
    # the pull is announced first (issue 2: a missing default model is pulled with a notice)
    assert_clean_error(outcome, "cannot create the model cache .*Permission denied",
                       allowed=(r"^Pulling model 'smollm2' \(98 MB\) into ",))


def test_read_only_cache_with_the_model_still_works(tmp_path, smollm2_path):
    home = tmp_path / "cache"
    (home / "models").mkdir(parents=True)
    model = home / "models" / models.REGISTRY["smollm2"].filename
    model.symlink_to(Path(smollm2_path).resolve())
    for folder in (home / "models", home):
        folder.chmod(0o555)
    outcome = run_llm("generate", "-n", "1", "-t", "0", "hi", home=home,
                      honour_permissions=True, env={"LLMCLI_OFFLINE": None})
    assert outcome.returncode == 0, outcome.stderr


def test_offline_with_no_model(tmp_path):
    empty_home = tmp_path / "empty"
    empty_home.mkdir()
    for args in (["generate", "hi"], ["inspect"], ["generate", "-m", "gemma3", "hi"]):
        outcome = run_llm(*args, home=empty_home, env={"LLMCLI_OFFLINE": "1"})
        assert_clean_error(outcome, "is not downloaded and LLMCLI_OFFLINE=1 is set; run "
                                    "`llm models pull")
    assert list(empty_home.iterdir()) == []   # nothing was created


# --- llm chat ----------------------------------------------------------------------------------

def test_chat_refuses_an_endless_line(tiny, tmp_path):
    with open("/dev/zero", "rb") as zeros:
        outcome = run_llm("chat", "-m", tiny, "-n", "1", home=tmp_path, stdin=zeros)
    assert_clean_error(outcome, "stdin line 1 holds more than 16 MiB of text")


def chat_on_a_terminal(model, home):
    """`llm chat` with stdin/stdout/stderr on a pty; returns (process, master fd)."""
    import pty

    master, slave = pty.openpty()

    def child_setup():
        child_limits()()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        [sys.executable, "-m", "llmcli", "chat", "-m", str(model), "-n", "3000", "--seed", "1",
         "-t", "1.5"], stdin=slave, stdout=slave, stderr=slave, env=llm_env(home),
        preexec_fn=child_setup)
    os.close(slave)
    return process, master


def read_until(master, needle, timeout=120):
    import select

    seen, deadline = b"", time.monotonic() + timeout
    while needle not in seen:
        assert time.monotonic() < deadline, seen[-500:]
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            seen += os.read(master, 65536)
    return seen


@pytest.mark.parametrize("interactive", [False, True])
def test_sigterm_ends_a_chat_even_where_ctrl_c_only_stops_the_reply(smollm2_path, tmp_path,
                                                                    interactive):
    if interactive:
        process, master = chat_on_a_terminal(smollm2_path, tmp_path)
        read_until(master, b">>> ")
        os.write(master, b"Write a very long story about dragons.\n")
        read_until(master, b"Write a very long story about dragons.\r\n")
        read_until(master, b" ")   # the reply has started
    else:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmcli", "chat", "-m", str(smollm2_path), "-n", "3000",
             "--seed", "1", "-t", "1.5"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=llm_env(tmp_path), preexec_fn=child_limits())
        process.stdin.write(b"Write a very long story about dragons.\nAnd another one.\n")
        process.stdin.flush()
        process.stdout.read(8)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    if interactive:
        os.close(master)
    else:
        err = process.stderr.read().decode()
        assert "Traceback" not in err and "Error" not in err
