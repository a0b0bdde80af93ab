"""`llm tokenize` / `llm detokenize`, through Click's runner and through real processes.
Expected ids come from the goldens (transformers / llama.cpp), not from our tokenizer."""
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from gguf_writer import GGUFWriter
from llmcli.cli import cli
from llmcli.token_text import BYTE_CHARS

GOLDEN = pathlib.Path(__file__).parent / "golden"
TEXTS = json.loads((GOLDEN / "tokenizer_corpus.json").read_text())["texts"]
GOLDENS = json.loads((GOLDEN / "tokenizer_goldens.json").read_text())["models"]
LOVE = TEXTS.index("I love programming.")


def run(*args, input=None):
    result = CliRunner().invoke(cli, list(args), input=input)
    return result


def run_env(env, *args):
    return CliRunner().invoke(cli, list(args), env=env)


def llm(*args, input=None):
    """The real `llm` entry point in a child process: exit code, stdout, stderr."""
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-m", "llmcli", *args], input=input,
                          capture_output=True, env=env, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_ids_match_goldens_with_the_models_bos_rule(smollm2_path, gemma3_path):
    for path, name in ((smollm2_path, "smollm2"), (gemma3_path, "gemma3")):
        for index in (LOVE, TEXTS.index("3.14159")):
            result = run("tokenize", "-m", str(path), "--ids", TEXTS[index])
            assert result.exit_code == 0, result.output
            expected = GOLDENS[name]["add_special"][index] if index < 8 else \
                ([2] if name == "gemma3" else []) + GOLDENS[name]["plain"][index]
            assert result.output == " ".join(map(str, expected)) + "\n"


def test_count_and_bos_switches(smollm2_path, gemma3_path):
    plain = GOLDENS["smollm2"]["plain"][LOVE]
    assert run("tokenize", "-m", str(smollm2_path), "--count", TEXTS[LOVE]).output == f"{len(plain)}\n"
    with_bos = run("tokenize", "-m", str(smollm2_path), "--ids", "--bos", TEXTS[LOVE]).output
    assert with_bos.split() == [str(i) for i in [1] + plain]
    no_bos = run("tokenize", "-m", str(gemma3_path), "--ids", "--no-bos", TEXTS[LOVE]).output
    assert no_bos.split() == [str(i) for i in GOLDENS["gemma3"]["plain"][LOVE]]


def test_parse_special_is_off_by_default(smollm2_path):
    default = run("tokenize", "-m", str(smollm2_path), "--ids", "<|im_end|>").output.split()
    assert "2" not in default and len(default) > 1
    parsed = run("tokenize", "-m", str(smollm2_path), "--ids", "--parse-special", "<|im_end|>")
    assert parsed.output == "2\n"


def test_json_output(smollm2_path):
    text = "héllo 😀"
    result = run("tokenize", "-m", str(smollm2_path), "--format", "json", text)
    data = json.loads(result.output)
    assert data["count"] == len(data["ids"]) == len(data["tokens"])
    assert b"".join(bytes.fromhex(t["bytes"]) for t in data["tokens"]).decode() == text
    assert [t["id"] for t in data["tokens"]] == data["ids"]
    assert data["tokens"][0]["piece"] == "h" and data["tokens"][0]["special"] is False
    partial = [t for t in data["tokens"] if t["text"] is None]
    assert partial, "the emoji's bytes split across tokens show as text=null"
    assert result.output.isascii()


def test_default_view_shows_split_table_and_count(smollm2_path):
    text = "I love programming\n\tok"
    ids = run("tokenize", "-m", str(smollm2_path), "--ids", text).output.split()
    lines = run("tokenize", "-m", str(smollm2_path), text).output.splitlines()
    # without colours (not a terminal) a bar separates the tokens
    assert lines[:2] == ["I│␣love│␣programming│\\n", "\\t│ok"]
    rows = [line.split() for line in lines[lines.index("") + 2:-2]]
    assert [row[1] for row in rows] == ids and rows[1] == ["1", "2606", "␣love"]
    assert lines[-1] == f"{len(ids)} tokens"


@pytest.mark.parametrize("term, colorterm, background", [
    ("xterm", "", r"4[0-7]"), ("xterm-256color", "", r"48;5;\d+"),
    ("xterm-256color", "truecolor", r"48;2;\d+;\d+;\d+")])
def test_adjacent_tokens_differ_in_colour_at_every_colour_depth(smollm2_path, term, colorterm,
                                                                 background):
    """16, 256 or 24-bit colours (as Rich picks them from TERM/COLORTERM): each token of
    the split is one coloured run whose SGR codes differ from its neighbour's."""
    text = "The quick brown fox jumps over the lazy dog."
    n_tokens = len(GOLDENS["smollm2"]["plain"][TEXTS.index(text)])
    env = {"FORCE_COLOR": "1", "TERM": term, "COLORTERM": colorterm, "NO_COLOR": None}
    split_line = run_env(env, "tokenize", "-m", str(smollm2_path), text).output.splitlines()[0]
    runs = re.findall(r"\x1b\[([0-9;]+)m([^\x1b]+)\x1b\[0m", split_line)
    assert len(runs) == n_tokens == 10
    sgr_codes = [codes for codes, _ in runs]
    assert all(re.search(rf"(^|;){background}$", codes) for codes in sgr_codes), sgr_codes
    assert all(a != b for a, b in zip(sgr_codes, sgr_codes[1:])), sgr_codes


def test_table_pieces_spell_the_text_with_only_stray_bytes_in_hex(smollm2_path):
    """' À' is ' ' + 0xC3 in one SmolLM2 token and 0x80 in the next: the table shows
    '␣<0xC3>', '<0x80>' (whole chars stay text), and the pieces spell the text's bytes."""
    text = "Où est la bibliothèque ? À côté de l'église, près du café."
    lines = run("tokenize", "-m", str(smollm2_path), text).output.splitlines()
    rows = lines[lines.index("") + 2:-2]
    pieces = [row.split(None, 2)[2] for row in rows]
    assert len(pieces) == len(GOLDENS["smollm2"]["plain"][TEXTS.index(text)])
    assert "␣<0xC3>" in pieces and not any("<0x20>" in piece for piece in pieces)
    spelled = re.sub(rb"<0x([0-9A-F]{2})>", lambda m: bytes.fromhex(m.group(1).decode()),
                     "".join(pieces).replace("␣", " ").encode())
    assert spelled == text.encode()


def test_control_characters_never_reach_the_terminal_raw(smollm2_path):
    result = run("tokenize", "-m", str(smollm2_path), "\x1b[31mred\x1b[0m \x9b")
    assert "\x1b" not in result.output and "\x9b" not in result.output
    assert "\\x1b" in result.output


def test_stdin_and_dash(smollm2_path):
    expected = " ".join(map(str, GOLDENS["smollm2"]["plain"][LOVE])) + "\n"
    assert run("tokenize", "-m", str(smollm2_path), "--ids", "-", input=TEXTS[LOVE]).output == expected
    code, out, err = llm("tokenize", "-m", str(smollm2_path), "--ids", input=TEXTS[LOVE].encode())
    assert (code, out.decode(), err) == (0, expected, b"")


def test_invalid_utf8_on_stdin_names_the_offset(smollm2_path):
    code, out, err = llm("tokenize", "-m", str(smollm2_path), "--ids", input=b"ab\xffcd")
    assert code == 1 and out == b""
    assert err.decode().strip().splitlines() == [
        "Error: stdin is not valid UTF-8 (byte offset 2); use --errors replace to substitute U+FFFD"]
    code, out, _ = llm("tokenize", "-m", str(smollm2_path), "--ids", "--errors", "replace",
                       input=b"ab\xffcd")
    replaced = run("tokenize", "-m", str(smollm2_path), "--ids", "ab\ufffdcd").output
    assert code == 0 and out.decode() == replaced


def test_invalid_utf8_argument_names_the_offset(smollm2_path):
    code, _, err = llm("tokenize", "-m", str(smollm2_path), os.fsdecode(b"ok\xfe"))
    assert code == 1 and b"byte offset 2" in err and b"Traceback" not in err


def test_empty_stdin_is_zero_tokens(smollm2_path):
    result = run("tokenize", "-m", str(smollm2_path), "--count", input="")
    assert result.exit_code == 0 and result.output == "0\n"


def test_detokenize_round_trip_and_pipe(smollm2_path):
    ids = GOLDENS["smollm2"]["plain"][LOVE]
    result = run("detokenize", "-m", str(smollm2_path), *map(str, ids))
    assert result.output == TEXTS[LOVE]
    assert run("detokenize", "-m", str(smollm2_path), ",".join(map(str, ids))).output == TEXTS[LOVE]
    code, out, _ = llm("detokenize", "-m", str(smollm2_path), input=" ".join(map(str, ids)).encode())
    assert (code, out.decode()) == (0, TEXTS[LOVE])
    assert run("detokenize", "-m", str(smollm2_path), "--skip-special", "1", "57", "2").output == "I"


def test_detokenize_rejects_ids_outside_the_vocab(smollm2_path):
    code, out, err = llm("detokenize", "-m", str(smollm2_path), "57", "49152")
    assert code == 1 and out == b""
    assert err.decode().strip() == "Error: token id 49152 is outside the vocabulary (0..49151)"
    code, _, err = llm("detokenize", "-m", str(smollm2_path), "57", "x1")
    assert code == 2 and b"'x1' is not a token id" in err


def test_unknown_pretokenizer_warns_on_stderr(tmp_path):
    writer = GGUFWriter()
    writer.add("general.architecture", "llama")
    writer.add("tokenizer.ggml.model", "gpt2")
    writer.add("tokenizer.ggml.pre", "mystery")
    writer.add("tokenizer.ggml.tokens", [BYTE_CHARS[b] for b in range(256)] + ["Ġt"])
    writer.add("tokenizer.ggml.token_type", np.ones(257, dtype=np.int32))
    writer.add("tokenizer.ggml.merges", ["Ġ t"])
    path = writer.write(tmp_path / "tiny.gguf")
    code, out, err = llm("tokenize", "-m", str(path), "--ids", "a t")
    assert code == 0 and out.decode() == f"{ord('a')} 256\n"
    assert err.decode().strip() == ("Warning: unknown pre-tokenizer tokenizer.ggml.pre = 'mystery'; "
                                    "splitting words by GPT-2's rules instead")


def test_unknown_pretokenizer_warning_is_one_line_in_generate(tmp_path):
    """Commands that load a whole model print the warning the same way (not Python's
    two-line `file:line: UserWarning` form)."""
    from tiny_models import write_tiny_model

    metadata = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "mystery",
                "tokenizer.ggml.tokens": [BYTE_CHARS[b] for b in range(256)] + ["Ġt"],
                "tokenizer.ggml.token_type": np.ones(257, dtype=np.int32),
                "tokenizer.ggml.merges": ["Ġ t"]}
    path = write_tiny_model(tmp_path / "tiny.gguf", "llama", n_vocab=257, metadata=metadata)
    code, _, err = llm("generate", "-m", str(path), "-n", "2", "-t", "0", "a t")
    assert code == 0
    assert err.decode().splitlines() == [
        "Warning: unknown pre-tokenizer tokenizer.ggml.pre = 'mystery'; splitting words by "
        "GPT-2's rules instead"]
