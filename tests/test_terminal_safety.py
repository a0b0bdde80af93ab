"""Terminal safety (issue 7, part 4): strings from a model file and text a model
generates can hold escape sequences (OSC 52 writes the clipboard, OSC 8 makes links,
CSI clears the screen; C1 CSI is U+009B). On a terminal they must arrive neutralised;
through a pipe, or with --raw-output, exactly as they are.

The terminal is a real pseudo-terminal: the child's stdout and stderr are its slave side.
"""
import json
import os
import pty
import re
import subprocess
import sys

import pytest

from gguf_writer import Typed, VT
from hostile_models import llama_vocab, tiny_llama
from hostile_run import child_limits, llm_env

OSC52 = "\x1b]52;c;cHduZWQ=\x07"                     # set the clipboard
OSC8 = "\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\"
CSI_CLEAR = "\x1b[2J\x1b[H"
C1_CSI = "\u009b2J"
EVIL = OSC52 + OSC8 + CSI_CLEAR + C1_CSI + "\x07\x08\x7f"
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u009b", "\x08", "\x7f")


def on_terminal(args, home):
    """Run `python -m llmcli ARGS` with stdout and stderr on a pty; all it printed."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "llmcli", *map(str, args)],
                               stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                               env=llm_env(home, {"TERM": "xterm"}), preexec_fn=child_limits())
    os.close(slave)
    output = bytearray()
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:   # EIO: the child closed its side
            break
        if not data:
            break
        output += data
    os.close(master)
    assert process.wait(timeout=120) == 0, output.decode("utf-8", "replace")
    return output.decode("utf-8", "replace")


def through_pipe(args, home):
    result = subprocess.run([sys.executable, "-m", "llmcli", *map(str, args)],
                            stdin=subprocess.DEVNULL, capture_output=True,
                            env=llm_env(home), preexec_fn=child_limits(), timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode("utf-8")


# Rich styles its own tables with SGR sequences (bold, colours): those are ours, and
# none of the hostile strings above is one.
OWN_STYLING = re.compile(r"\x1b\[[0-9;]*m")


def assert_neutralised(text):
    text = OWN_STYLING.sub("", text)
    for control in RAW_CONTROLS:
        assert control not in text, f"raw {control!r} reached the terminal"


@pytest.fixture(scope="module")
def evil_metadata_model(tmp_path_factory):
    """Escape sequences in the model name, an architecture key, a token and the chat
    template."""
    path = tmp_path_factory.mktemp("evil") / "evil.gguf"
    tokens = llama_vocab()[0]
    return tiny_llama(path, template="{{ messages[0].content }}" + EVIL, metadata={
        "general.name": EVIL, "llama.evil_key": EVIL,
        "tokenizer.ggml.tokens": [tokens[0], EVIL] + tokens[2:],
        "tokenizer.ggml.bos_token_id": Typed(VT.UINT32, 1)})


@pytest.fixture(scope="module")
def evil_output_model(tmp_path_factory):
    """Greedy decoding writes EVIL at every step."""
    return tiny_llama(tmp_path_factory.mktemp("emit") / "emit.gguf", emit=EVIL)


# --- llm inspect ---------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--tensors"], ["--template"], ["--format", "json"]])
def test_inspect_never_writes_raw_escapes_to_a_terminal(evil_metadata_model, tmp_path, extra):
    shown = on_terminal(["inspect", evil_metadata_model, *extra], tmp_path)
    assert_neutralised(shown)
    if extra != ["--format", "json"]:
        assert "\\x1b]52;c;cHduZWQ=\\x07" in shown   # visible, escaped


def test_inspect_json_through_a_pipe_keeps_the_exact_strings(evil_metadata_model, tmp_path):
    info = json.loads(through_pipe(["inspect", evil_metadata_model, "--format", "json"], tmp_path))
    assert info["name"] == EVIL and info["metadata"]["llama.evil_key"] == EVIL
    assert info["tokenizer"]["special_tokens"]["bos"]["text"] == EVIL


def test_inspect_template_through_a_pipe_is_raw(evil_metadata_model, tmp_path):
    assert through_pipe(["inspect", evil_metadata_model, "--template"], tmp_path) == \
        "{{ messages[0].content }}" + EVIL + "\n"


# --- llm generate --------------------------------------------------------------------------------

GENERATE = ["generate", "-n", "2", "-t", "0", "--raw"]


@pytest.mark.parametrize("extra", [[], ["--format", "json"], ["--format", "jsonl"],
                                   ["--show-prompt", "--stats"]])
def test_generated_escapes_are_neutralised_on_a_terminal(evil_output_model, tmp_path, extra):
    shown = on_terminal([*GENERATE, "-m", evil_output_model, *extra, "hi" + EVIL], tmp_path)
    assert_neutralised(shown)
    if not extra:
        assert shown.count("\\x1b]52;c;cHduZWQ=\\x07") == 2


def test_raw_output_flag_passes_escapes_to_a_terminal(evil_output_model, tmp_path):
    shown = on_terminal([*GENERATE, "-m", evil_output_model, "--raw-output", "hi"], tmp_path)
    assert OSC52 in shown and CSI_CLEAR in shown


def test_generated_escapes_pass_through_a_pipe(evil_output_model, tmp_path):
    assert through_pipe([*GENERATE, "-m", evil_output_model, "hi"], tmp_path) == EVIL * 2
    record = json.loads(through_pipe([*GENERATE, "-m", evil_output_model, "--format", "json",
                                      "hi"], tmp_path))
    assert record["text"] == EVIL * 2


def test_prompt_echo_on_a_terminal_is_escaped(evil_output_model, tmp_path):
    """--show-prompt prints the user's own prompt back on stderr: escaped on a terminal."""
    shown = on_terminal([*GENERATE, "-m", evil_output_model, "--show-prompt", "x" + OSC52],
                        tmp_path)
    assert "x\\x1b]52;c;cHduZWQ=\\x07" in shown


def test_detokenized_escapes(evil_output_model, tmp_path):
    """llm detokenize of the token spelling EVIL (the tiny vocab's last id)."""
    from hostile_models import llama_vocab

    token = str(len(llama_vocab()[0]))
    assert_neutralised(on_terminal(["detokenize", "-m", evil_output_model, token], tmp_path))
    assert through_pipe(["detokenize", "-m", evil_output_model, token], tmp_path) == EVIL
