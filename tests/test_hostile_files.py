"""Hostile model files through the real `llm` command (issue 7, part 1): the reader's
corpus of broken headers, metadata and tensor infos (test_gguf.py) through `llm
generate` and `llm inspect`, special files and legacy formats, the config/tokenizer/
weights layers behind `llm generate`, and single-byte mutations of the real SmolLM2 file.

Every case: exit 1, one `Error:` line naming the problem, no traceback, no signal, a few
CPU-seconds, memory bounded by RLIMIT_AS in the child (tests/hostile_run.py).
"""
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gguf_writer import GGUFWriter, Typed, VT, u32, u64
from hostile_models import DROP, llama_vocab, tiny_llama
from hostile_run import (MEMORY_LIMIT, ROOT, assert_clean_error, assert_no_crash,
                         child_limits, run_llm)
from test_gguf import BROKEN as READER_CASES

TOKENS = llama_vocab()[0]
N_VOCAB = len(TOKENS)
Q2_K = 10


def generate(path, home, *extra):
    return run_llm("generate", "-m", path, "-n", "1", "-t", "0", "hi", *extra, home=home)


# --- special files and legacy formats -------------------------------------------------------

def fifo(tmp_path):
    path = tmp_path / "pipe.gguf"
    os.mkfifo(path)
    return path


def legacy(magic):
    def write(tmp_path):
        path = tmp_path / "old.bin"
        path.write_bytes(magic + u32(1) + u64(0) * 4)
        return path
    return write


SPECIAL_FILES = {
    "FIFO": (fifo, "is not a regular file"),
    "/dev/zero": (lambda tmp_path: "/dev/zero", "/dev/zero is not a regular file"),
    "directory": (lambda tmp_path: str(tmp_path) + os.sep, "is a directory"),
    "legacy ggjt": (legacy(b"tjgg"), "legacy 'ggjt' model file .*convert it to GGUF"),
    "legacy ggml": (legacy(b"lmgg"), "legacy 'ggml' model file"),
    "GGUF version 1": (legacy(b"GGUF"), "GGUF version 1 is not supported"),
}


@pytest.mark.parametrize("command", ["generate", "inspect"])
@pytest.mark.parametrize("case", list(SPECIAL_FILES))
def test_special_files_and_old_formats(tmp_path, case, command):
    make, message = SPECIAL_FILES[case]
    path = make(tmp_path)
    if command == "generate":
        outcome = generate(path, tmp_path)
    else:
        outcome = run_llm("inspect", path, home=tmp_path)
    assert_clean_error(outcome, message)


# --- the reader's corpus (tests/test_gguf.py) through the command -----------------------------

@pytest.mark.parametrize("command", ["generate", "inspect"])
@pytest.mark.parametrize("case", list(READER_CASES))
def test_reader_corpus_through_the_command(tmp_path, case, command):
    """Every broken header, metadata and tensor-info case of the reader's corpus, as a
    file given to the real command: the same one error line the reader raises."""
    data, message = READER_CASES[case]
    path = tmp_path / "broken.gguf"
    path.write_bytes(data)
    if command == "generate":
        outcome = generate(path, tmp_path)
    else:
        outcome = run_llm("inspect", path, home=tmp_path)
    assert_clean_error(outcome, message)


def test_tensor_offsets_out_of_order_are_read_where_they_point(tmp_path):
    """The spec does not order the tensor infos by offset: a file listing its tensors
    last-first (offsets decreasing) is the same model, and generates the same text."""
    in_order = generate(tiny_llama(tmp_path / "a.gguf"), tmp_path, "--raw", "-n", "8")
    reversed_infos = generate(tiny_llama(tmp_path / "b.gguf", reverse_tensor_infos=True),
                              tmp_path, "--raw", "-n", "8")
    assert in_order.returncode == 0 and in_order.stdout, in_order.stderr
    assert reversed_infos.returncode == 0, reversed_infos.stderr
    assert reversed_infos.stdout == in_order.stdout


# --- metadata that the config, tokenizer and weights layers must refuse -----------------------

def tokens_with(index, raw):
    return TOKENS[:index] + [raw] + TOKENS[index + 1:]


METADATA_CASES = {
    # values the reader refuses
    "bool that is 2": ({"tokenizer.ggml.add_bos_token": Typed(VT.BOOL, 2)},
                       "key 'tokenizer.ggml.add_bos_token': bool value 2 is not 0 or 1"),
    "bool array holding 7": ({"general.flags": Typed(VT.ARRAY, [1, 0, 7], VT.BOOL)},
                             "'general.flags' array: bool value 7"),
    "name not UTF-8": ({"general.name": b"tiny \xff model"},
                       "key 'general.name' string at offset .* is not valid UTF-8"),
    # wrong value type for a known key
    "block_count a string": ({"llama.block_count": "2"},
                             "llama.block_count should be int, got str"),
    "architecture a number": ({"general.architecture": 7},
                              "general.architecture should be str, got int"),
    "tokens a number array": ({"tokenizer.ggml.tokens": np.arange(N_VOCAB, dtype=np.int32)},
                              "tokenizer.ggml.tokens is not an array of strings"),
    "template a number": ({"tokenizer.chat_template": 3},
                          "tokenizer.chat_template has the wrong type"),
    "bos id a string": ({"tokenizer.ggml.bos_token_id": "1"},
                        "tokenizer.ggml.bos_token_id has the wrong type"),
    "eps a string": ({"llama.attention.layer_norm_rms_epsilon": "1e-5"},
                     "layer_norm_rms_epsilon should be float, got str"),
    # strings that are not UTF-8 inside the vocabulary
    "token not UTF-8": ({"tokenizer.ggml.tokens": tokens_with(100, b"\xff\xfe")},
                        r"tokenizer.ggml.tokens\[100\] is not valid UTF-8"),
    "special token not UTF-8": ({"tokenizer.ggml.tokens": tokens_with(1, b"<|im_start\xc3")},
                                r"tokenizer.ggml.tokens\[1\] is not valid UTF-8"),
    # vocabulary sizes and special ids
    "token array shorter than the vocab": (
        {"tokenizer.ggml.tokens": TOKENS[:200], "tokenizer.ggml.token_type": np.ones(200, np.int32)},
        f"llama.vocab_size is {N_VOCAB} but tokenizer.ggml.tokens holds 200 tokens"),
    "token types shorter than the tokens": (
        {"tokenizer.ggml.token_type": np.ones(100, np.int32)},
        f"tokenizer.ggml.token_type has 100 entries, tokenizer.ggml.tokens has {N_VOCAB}"),
    "bos id past the vocab": ({"tokenizer.ggml.bos_token_id": Typed(VT.UINT32, N_VOCAB)},
                              f"bos_token_id = {N_VOCAB} is outside the vocabulary"),
    "eos id negative": ({"tokenizer.ggml.eos_token_id": Typed(VT.INT32, -5)},
                        "eos_token_id = -5 is outside the vocabulary"),
    "token type 9": ({"tokenizer.ggml.token_type": np.full(N_VOCAB, 9, np.int32)},
                     r"tokenizer.ggml.token_type\[0\] = 9 is not a token type"),
    # absurd hyperparameters
    "0 layers": ({"llama.block_count": Typed(VT.UINT32, 0)},
                 "llama.block_count must be positive, got 0"),
    "2^31 - 1 layers": ({"llama.block_count": Typed(VT.UINT32, 2**31 - 1)},
                        "llama.block_count = 2147483647 is absurd"),
    "2^64 - 1 layers": ({"llama.block_count": Typed(VT.UINT64, 2**64 - 1)},
                        "llama.block_count = 18446744073709551615 is absurd"),
    "context 0": ({"llama.context_length": Typed(VT.UINT32, 0)},
                  "llama.context_length must be positive, got 0"),
    "context 2^62": ({"llama.context_length": Typed(VT.UINT64, 2**62)},
                     "llama.context_length = 4611686018427387904 is absurd"),
    "0 heads": ({"llama.attention.head_count": Typed(VT.UINT32, 0)},
                "llama.attention.head_count must be positive, got 0"),
    "heads not dividing the width": (
        {"llama.attention.head_count": Typed(VT.UINT32, 3),
         "llama.attention.head_count_kv": Typed(VT.UINT32, 1)},
        r"llama.embedding_length \(64\) is not a multiple of llama.attention.head_count \(3\)"),
    "KV heads not dividing the heads": (
        {"llama.attention.head_count_kv": Typed(VT.UINT32, 3)},
        r"head_count \(4\) is not a multiple of llama.attention.head_count_kv \(3\)"),
    "2^40 heads": ({"llama.attention.head_count": Typed(VT.UINT64, 2**40)},
                   r"embedding_length \(64\) is not a multiple of .*head_count"),
    "width 2^40": ({"llama.embedding_length": Typed(VT.UINT64, 2**40)},
                   r"head size 274877906944 must be .* at most 512 "
                   r"\(llama.embedding_length / attention.head_count\)"),
    "width 2^40 with its head size given": (
        {"llama.embedding_length": Typed(VT.UINT64, 2**40),
         "llama.attention.key_length": Typed(VT.UINT32, 16)},
        r"tensor 'blk.0.attn_norm.weight' has shape \[64\], expected \[1099511627776\]"),
    "eps NaN": ({"llama.attention.layer_norm_rms_epsilon": float("nan")},
                "layer_norm_rms_epsilon is not finite"),
}


@pytest.mark.parametrize("case", list(METADATA_CASES))
def test_hostile_metadata_is_refused_at_load(tmp_path, case):
    metadata, message = METADATA_CASES[case]
    path = tiny_llama(tmp_path / "m.gguf", metadata=metadata)
    assert_clean_error(generate(path, tmp_path), message)


# The cases the tokenizer alone must refuse: `llm tokenize` builds nothing else.
TOKENIZER_CASES = ["bool that is 2", "name not UTF-8", "tokens a number array",
                   "template a number", "bos id a string", "token not UTF-8",
                   "special token not UTF-8", "token types shorter than the tokens",
                   "bos id past the vocab", "eos id negative", "token type 9"]


@pytest.mark.parametrize("case", TOKENIZER_CASES)
def test_hostile_metadata_through_llm_tokenize(tmp_path, case):
    metadata, message = METADATA_CASES[case]
    path = tiny_llama(tmp_path / "m.gguf", metadata=metadata)
    assert_clean_error(run_llm("tokenize", "-m", path, "hi", home=tmp_path), message)


def test_the_unmodified_tiny_model_generates(tmp_path):
    """The base of every case above is a good model: each failure is the change's."""
    outcome = generate(tiny_llama(tmp_path / "m.gguf"), tmp_path, "--raw")
    assert outcome.returncode == 0 and outcome.stderr == "", outcome.stderr


# --- tensors ------------------------------------------------------------------------------------

def truncated_in_data(tmp_path):
    data = tiny_llama()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:len(data) - 100])
    return path


def with_tensors(tensors):
    return lambda tmp_path: tiny_llama(tmp_path / "m.gguf", tensors=tensors)


TENSOR_CASES = {
    "embedding narrower than the config": (
        with_tensors({"token_embd.weight": np.zeros((N_VOCAB, 32), np.float32)}),
        rf"tensor 'token_embd.weight' has shape \[32, {N_VOCAB}\], expected \[64, {N_VOCAB}\]"),
    "embedding with fewer rows than tokens": (
        with_tensors({"token_embd.weight": np.zeros((100, 64), np.float32)}),
        r"tensor 'token_embd.weight' has shape \[64, 100\]"),
    "FFN matrix transposed": (
        with_tensors({"blk.0.ffn_up.weight": np.zeros((64, 128), np.float32)}),
        r"tensor 'blk.0.ffn_up.weight' has shape \[128, 64\], expected \[64, 128\]"),
    "matrix with a third dimension": (
        with_tensors({"blk.1.attn_q.weight": np.zeros((2, 64, 64), np.float32)}),
        r"tensor 'blk.1.attn_q.weight' has shape \[64, 64, 2\]"),
    "missing tensor": (with_tensors({"blk.1.ffn_down.weight": DROP}),
                       "missing tensor 'blk.1.ffn_down.weight'"),
    "missing output norm": (with_tensors({"output_norm.weight": DROP}),
                            "missing tensor 'output_norm.weight'"),
    "tensor of a layer that does not exist": (
        with_tensors({"blk.7.attn_q.weight": np.zeros((64, 64), np.float32)}),
        "unexpected tensor 'blk.7.attn_q.weight' for architecture llama"),
    "norm in F16": (with_tensors({"blk.0.ffn_norm.weight": np.ones(64, np.float16)}),
                    "tensor 'blk.0.ffn_norm.weight' is F16, expected F32"),
    "file cut inside the tensor data": (truncated_in_data,
                                        "tensor 'output_norm.weight': data .* runs past the end"),
}


@pytest.mark.parametrize("case", list(TENSOR_CASES))
def test_hostile_tensors_are_refused_at_load(tmp_path, case):
    make, message = TENSOR_CASES[case]
    assert_clean_error(generate(make(tmp_path), tmp_path), message)


def test_matrix_type_without_kernels_is_named(tmp_path):
    """A Q2_K matrix of the right shape: known to the reader, refused by the weights."""
    path = tiny_llama(tmp_path / "m.gguf", dims=(1, 256, 4, 2, 256, 64),
                      tensors={"blk.0.attn_output.weight": (b"\0" * 84 * 256, Q2_K, (256, 256))})
    assert_clean_error(generate(path, tmp_path),
                       "tensor 'blk.0.attn_output.weight' has unsupported type Q2_K")


# --- single-byte mutations of the real SmolLM2 file ---------------------------------------------

N_MUTATIONS = 256
MUTATED_SPAN = 64 * 1024

MUTATION_LOOP = textwrap.dedent("""
    # Mutates the copy in place, one byte at a time (restored after each case), and runs
    # every loader `llm generate` and `llm inspect` run. Prints one line per mutation.
    import contextlib, io, json, os, random, sys, warnings
    from llmcli.commands import inspect as inspect_command
    from llmcli.config import config_from_metadata
    from llmcli.errors import LLMError
    from llmcli.gguf import open_gguf
    from llmcli.tokenizer import Tokenizer
    from llmcli.weights import load_weights

    warnings.simplefilter("ignore")
    path, n, span, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    fd = os.open(path, os.O_RDWR)

    def load_everything():
        gguf_file = open_gguf(path)
        info = inspect_command.describe(gguf_file)
        json.dumps(info)
        with contextlib.redirect_stdout(io.StringIO()):
            inspect_command._print_text(info)
        config = config_from_metadata(gguf_file.metadata)
        tokenizer = Tokenizer.from_metadata(gguf_file.metadata)
        ids = tokenizer.encode("Hello, world! 12345 héllo", parse_special=True)
        assert all(0 <= i < tokenizer.n_vocab for i in ids), ids
        tokenizer.decode(ids)
        load_weights(gguf_file, config)

    for _ in range(n):
        offset = rng.randrange(span)
        original = os.pread(fd, 1, offset)
        value = bytes([(original[0] + rng.randrange(1, 256)) % 256])
        os.pwrite(fd, value, offset)
        try:
            load_everything()
            print("loaded", offset, flush=True)
        except LLMError as exc:
            print("refused", offset, type(exc).__name__, flush=True)
        except Exception as exc:
            print("BUG", offset, value.hex(), type(exc).__name__, exc, flush=True)
        finally:
            os.pwrite(fd, original, offset)
""")


@pytest.fixture(scope="module")
def smollm2_copy(smollm2_path, tmp_path_factory):
    copy = tmp_path_factory.mktemp("mutations") / "smollm2.gguf"
    with open(smollm2_path, "rb") as src, open(copy, "wb") as dst:
        while chunk := src.read(1 << 24):
            dst.write(chunk)
    return copy


def test_mutations_of_the_real_model_load_or_fail_cleanly(smollm2_copy, tmp_path):
    """A few hundred seeded single-byte changes in the first 64 KiB (header, metadata,
    start of the vocabulary) through every loader, in a child process so that a crash
    is a failure of this test rather than of the test run."""
    script = tmp_path / "mutate.py"
    script.write_text(MUTATION_LOOP)
    result = subprocess.run(
        [sys.executable, str(script), str(smollm2_copy), str(N_MUTATIONS), str(MUTATED_SPAN), "7"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=1800, preexec_fn=child_limits())
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(lines) == N_MUTATIONS, result.stderr[-2000:]
    bugs = [line for line in lines if line.startswith("BUG")]
    assert bugs == []
    outcomes = {line.split()[0] for line in lines}
    assert outcomes == {"loaded", "refused"}   # both happen: the mutations reach real checks


def test_mutations_through_the_cli(smollm2_copy, tmp_path):
    """A sample of 20 mutated files through `llm generate` and `llm inspect`: each either
    works or fails with one clean error."""
    rng = random.Random(11)
    mutated = tmp_path / "mutated.gguf"
    original = smollm2_copy.read_bytes()
    for _ in range(20):
        data = bytearray(original)
        offset = rng.randrange(MUTATED_SPAN)
        data[offset] = (data[offset] + rng.randrange(1, 256)) % 256
        mutated.write_bytes(data)
        for args in (["generate", "-m", mutated, "-n", "1", "-t", "0", "--raw", "Hi"],
                     ["inspect", mutated, "--format", "json"]):
            outcome = run_llm(*args, home=tmp_path)
            assert_no_crash(outcome)
            assert outcome.cpu < 20, (offset, outcome.cpu)
