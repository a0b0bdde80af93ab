"""Fuzz everything that reads an untrusted GGUF file (atheris / libFuzzer).

Each input is written to a file and taken through every loader a command runs on it:
the reader (llmcli.gguf), `llm inspect`'s describe() and its JSON and text output, the
config, the tokenizer (built, then encoding and decoding a sample), and the weight table;
and, when llmcli.model exists, a one-token forward. The property: each stage either
succeeds or raises an LLMError. Any other exception, a crash, a hang (-timeout) or a
runaway allocation (-rss_limit_mb) is a finding, saved by libFuzzer as crash-*/timeout-*.

    nice -n 19 python fuzz/fuzz_gguf.py -max_len=70000 -timeout=10 -rss_limit_mb=3000 \\
        fuzz/corpus/gguf fuzz/seeds/gguf
    python fuzz/fuzz_gguf.py crash-<hash>          # replay one input

The Python code is coverage-instrumented by atheris; the C extension is not (it has no
libFuzzer build), so C paths are reached, but not steered to, by coverage.
"""
import contextlib
import io
import json
import os
import sys
import tempfile
import warnings

import atheris

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

with atheris.instrument_imports(include=["llmcli"]):
    from llmcli.commands import inspect as inspect_command
    from llmcli.config import config_from_metadata
    from llmcli.errors import LLMError
    from llmcli.gguf import open_gguf
    from llmcli.tokenizer import Tokenizer
    from llmcli.weights import load_weights

try:
    with atheris.instrument_imports(include=["llmcli"]):
        from llmcli import model as model_module
except ImportError:   # the model module has not landed on this branch yet
    model_module = None

SAMPLE_TEXT = "Hello, world! <|im_start|>user 12345 héllo 日本 \U0001f600\n\t "
_WORK_DIR = tempfile.mkdtemp(prefix="fuzz_gguf_", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
_PATH = os.path.join(_WORK_DIR, "input.gguf")
warnings.simplefilter("ignore")   # unknown pre-tokenizer names warn, by design


def write_input(data):
    # A fresh inode per input: a map of the previous input may still be alive, and
    # truncating a mapped file would make its pages raise SIGBUS.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_PATH)
    with open(_PATH, "wb") as f:
        f.write(data)


def stage(func, *args):
    """Run one loader; an LLMError is an accepted outcome (None)."""
    try:
        return func(*args)
    except LLMError:
        return None


def inspect_outputs(gguf_file):
    info = inspect_command.describe(gguf_file, with_tensors=True)
    json.dumps(info)
    with contextlib.redirect_stdout(io.StringIO()):
        inspect_command._print_text(info)


def exercise_tokenizer(tokenizer):
    for parse_special in (False, True):
        ids = tokenizer.encode(SAMPLE_TEXT, parse_special=parse_special)
        assert all(0 <= i < tokenizer.n_vocab for i in ids), ids
        text = tokenizer.decode(ids)
        decoder = tokenizer.stream_decoder()
        streamed = "".join(decoder.feed(i) for i in ids) + decoder.flush()
        assert streamed == text, (streamed, text)
    for token in {0, tokenizer.n_vocab - 1, tokenizer.bos_id, tokenizer.eos_id} - {None}:
        tokenizer.token_piece(token)
        tokenizer.token_bytes(token)


def forward(path):
    model = model_module.load(path, n_ctx=8, threads=1)
    logits = model.eval([0, model.config.n_vocab - 1])
    assert logits.shape == (model.config.n_vocab,)


def test_one_input(data):
    write_input(data)
    gguf_file = stage(open_gguf, _PATH)
    if gguf_file is None:
        return
    stage(inspect_outputs, gguf_file)
    config = stage(config_from_metadata, gguf_file.metadata)
    tokenizer = stage(Tokenizer.from_metadata, gguf_file.metadata)
    if tokenizer is not None:
        stage(exercise_tokenizer, tokenizer)
    if config is not None and stage(load_weights, gguf_file, config) is not None \
            and model_module is not None:
        stage(forward, _PATH)


def main():
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
