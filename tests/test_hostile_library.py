"""Hostile input straight into the library layers: vocabularies, configs and inspect's
describe() on metadata of the wrong shape, and the compiled wrappers given arguments
that would make the C code read or write out of bounds. Every case must end in an
LLMError (ValueError for the compiled wrappers), never another exception or a crash.

Regression tests of the fuzzing findings (fuzz/crashes/) are marked `fuzz finding`.
"""
import contextlib
import io
import json

import numpy as np
import pytest

import hostile_models
from gguf_writer import Typed, VT
from llmcli import _kernels
from llmcli.commands import inspect as inspect_command
from llmcli.config import config_from_metadata
from llmcli.errors import ModelError, TokenizerError
from llmcli.gguf import open_gguf
from llmcli.tokenizer import Tokenizer

N_VOCAB = len(hostile_models.llama_vocab()[0])


def tiny_metadata(tmp_path, **overrides):
    """Metadata of the tiny llama with `overrides` (keys with '.' given as '__')."""
    metadata = {key.replace("__", "."): value for key, value in overrides.items()}
    path = hostile_models.tiny_llama(tmp_path / "m.gguf", metadata=metadata)
    return open_gguf(path)


# --- the tokenizer's C core ------------------------------------------------------------------

def vocab_without(chars, n_pairs):
    """Byte-level vocab lacking the tokens of `chars`, with n_pairs merges of other chars."""
    alphabet = [c for c in hostile_models.BYTE_CHARS if c not in chars][:130]
    pairs = [(a, b) for a in alphabet for b in alphabet][:n_pairs]
    tokens = hostile_models.SPECIALS + [c for c in hostile_models.BYTE_CHARS if c not in chars]
    tokens += [a + b for a, b in pairs]
    types = np.array([3] * 3 + [1] * (len(tokens) - 3), np.int32)
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt2",
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.merges": [f"{a} {b}" for a, b in pairs]}


@pytest.mark.parametrize("n_pairs", [3, 20000])
def test_bytes_without_a_token_are_dropped_never_merged(n_pairs):
    """Two adjacent bytes without tokens (ids -1, -1) spelled the merge table's empty-slot
    key, so the lookup "found" an uninitialised rank and emitted a garbage id. With 20000
    merges the table is fresh (zeroed) memory, where the old code produced token 0."""
    tokenizer = Tokenizer.from_metadata(vocab_without({"a", "b"}, n_pairs))
    for text in ["aa", "abab" * 50, "a" * 300, "xaay", "ba" * 1000]:
        ids = tokenizer.encode(text)
        assert all(0 <= i < tokenizer.n_vocab for i in ids), text
        assert tokenizer.decode(ids) == text.replace("a", "").replace("b", ""), text


def bpe_core(**changes):
    """A byte-level core over the tokens "a", "b", "c", with `changes` to its arguments."""
    blob, offsets = b"abc", np.array([0, 1, 2, 3])
    byte_ids = np.full(256, -1, np.int32)
    byte_ids[list(b"abc")] = [0, 1, 2]
    args = dict(priorities=None, merges=None, byte_ids=byte_ids, always_ids=[], special_ids=[2],
                unk_id=-1)
    args.update(changes)
    return _kernels.BPECore(0, "gpt2", args.pop("blob", blob), args.pop("offsets", offsets),
                            **args)


@pytest.mark.parametrize("changes, message", [
    ({"offsets": np.array([0, 2, 1, 3])}, "offsets"),
    ({"offsets": np.array([1, 2, 3])}, "offsets"),
    ({"offsets": np.array([0])}, "offsets"),
    ({"special_ids": [3]}, "special_ids"),
    ({"always_ids": [-1]}, "always_ids"),
    ({"byte_ids": np.full(256, 7, np.int32)}, "byte_ids"),
    ({"unk_id": 99}, "unk_id"),
    ({"merges": (np.array([0]), np.array([1]), np.array([5]))}, "merges"),
])
def test_tokenizer_core_checks_every_id_it_is_given(changes, message):
    with pytest.raises(ValueError, match=message):
        bpe_core(**changes)
    assert bpe_core().encode(b"abc") == [0, 1, 2]   # the unchanged arguments are fine


@pytest.mark.parametrize("priorities, message", [(None, "need 3 priorities"),
                                                  (np.zeros(2, np.int32), "one priority per token")])
def test_sentencepiece_core_needs_a_priority_per_token(priorities, message):
    with pytest.raises(ValueError, match=message):
        _kernels.BPECore(1, "gpt2", b"abc", np.array([0, 1, 2, 3]), priorities=priorities,
                         byte_ids=np.full(256, -1, np.int32), always_ids=[], special_ids=[])


# --- the ops wrappers ------------------------------------------------------------------------

def test_head_widths_are_checked_in_64_bits():
    """n_heads * head_dim = 2**32 + 4 wraps to 4 in C int arithmetic: the shape checks
    passed and the kernels ran over 2**30 heads of a 4-float buffer."""
    n_heads, head_dim = 2**30 + 1, 4
    x = np.zeros((1, 4), np.float32)
    pos = np.zeros(1, np.int32)
    with pytest.raises(ValueError, match="rope: x has shape"):
        _kernels.rope(x, pos, n_heads, head_dim, 10000.0, False)
    cache = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match="attention: q has shape"):
        _kernels.attention(x, cache, cache, pos, n_heads, 1, head_dim, 1.0, 0, np.zeros_like(x))


# --- tokenizer metadata --------------------------------------------------------------------

def test_token_types_outside_llama_cpp_numbering_are_refused():
    """fuzz finding (fuzz/crashes/tokenizer/token_type_out_of_enum): type 7 reached
    TokenType(7) at decode time, a ValueError. Type 0 (llama.cpp's "undefined") is
    read as normal text."""
    metadata = vocab_without(set(), 3)
    types = metadata["tokenizer.ggml.token_type"].copy()
    types[10] = 7
    with pytest.raises(TokenizerError, match=r"tokenizer.ggml.token_type\[10\] = 7"):
        Tokenizer.from_metadata({**metadata, "tokenizer.ggml.token_type": types})
    types[10] = 0
    tokenizer = Tokenizer.from_metadata({**metadata, "tokenizer.ggml.token_type": types})
    assert tokenizer.decode(tokenizer.encode("hello")) == "hello"


def test_default_special_ids_a_tiny_vocab_cannot_hold():
    """fuzz finding (fuzz/crashes/tokenizer/default_bos_outside_tiny_vocab): a
    SentencePiece vocab of one token got llama.cpp's default BOS id 1 and emitted it."""
    metadata = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": [""],
                "tokenizer.ggml.scores": np.zeros(1, np.float32)}
    with pytest.raises(TokenizerError, match="add_bos_token is true but .*bos_token_id is missing"):
        Tokenizer.from_metadata(metadata)
    tokenizer = Tokenizer.from_metadata({**metadata, "tokenizer.ggml.add_bos_token": False})
    assert tokenizer.bos_id is None and all(0 <= i < 1 for i in tokenizer.encode("abc"))


TOKENS = hostile_models.llama_vocab()[0]
WRONG_TOKENIZER_METADATA = {
    "tokens as a number array": ({"tokenizer__ggml__tokens": np.arange(N_VOCAB, dtype=np.int32),
                                  "llama__vocab_size": hostile_models.DROP},
                                 "tokenizer.ggml.tokens is not an array of strings"),
    "tokens as nested arrays": ({"tokenizer__ggml__tokens": Typed(VT.ARRAY, [["a"], ["b"]], VT.ARRAY),
                                 "llama__vocab_size": hostile_models.DROP},
                                "tokenizer.ggml.tokens is not an array of strings"),
    "merges as a float array": ({"tokenizer__ggml__merges": np.zeros(3, np.float32)},
                                "tokenizer.ggml.merges is not an array of strings"),
    "ragged token types": ({"tokenizer__ggml__token_type": Typed(VT.ARRAY, [[1, 2], [3]], VT.ARRAY)},
                           "tokenizer.ggml.token_type is not a flat numeric array"),
    "float token types": ({"tokenizer__ggml__token_type": np.ones(N_VOCAB, np.float32)},
                          "tokenizer.ggml.token_type is not an integer array"),
    "token not UTF-8": ({"tokenizer__ggml__tokens": TOKENS[:100] + [b"\xff\xfe"] + TOKENS[101:]},
                        r"tokenizer.ggml.tokens\[100\] is not valid UTF-8"),
    "token ends inside a UTF-8 char": ({"tokenizer__ggml__tokens": TOKENS[:5] + [b"ok\xc3"] + TOKENS[6:]},
                                       r"tokenizer.ggml.tokens\[5\] is not valid UTF-8"),
    "merge not UTF-8": ({"tokenizer__ggml__merges": ["h e", b"\xed\xa0\x80 x"]},
                        r"tokenizer.ggml.merges\[1\] is not valid UTF-8"),
    "bos id as a string": ({"tokenizer__ggml__bos_token_id": "1"},
                           "bos_token_id has the wrong type"),
    "eos id negative": ({"tokenizer__ggml__eos_token_id": Typed(VT.INT32, -5)},
                        "eos_token_id = -5 is outside the vocabulary"),
    "bos id past the vocab": ({"tokenizer__ggml__bos_token_id": Typed(VT.UINT32, N_VOCAB)},
                              f"bos_token_id = {N_VOCAB} is outside the vocabulary"),
}


@pytest.mark.parametrize("case", list(WRONG_TOKENIZER_METADATA))
def test_wrong_tokenizer_metadata_is_a_tokenizer_error(tmp_path, case):
    overrides, message = WRONG_TOKENIZER_METADATA[case]
    with pytest.raises(TokenizerError, match=message):
        Tokenizer.from_metadata(tiny_metadata(tmp_path, **overrides).metadata)


# --- config --------------------------------------------------------------------------------

ABSURD_CONFIGS = {
    "2^31 - 1 layers": ({"llama__block_count": Typed(VT.UINT32, 2**31 - 1)},
                        "block_count = 2147483647 is absurd"),
    "2^63 layers": ({"llama__block_count": Typed(VT.UINT64, 2**63)}, "block_count = .* is absurd"),
    "context 2^62": ({"llama__context_length": Typed(VT.UINT64, 2**62)},
                     "context_length = 4611686018427387904 is absurd"),
    "head size 1024": ({"llama__attention__key_length": Typed(VT.UINT32, 1024)},
                       "head size 1024 must be positive, even and at most 512"),
    "vocab_size above the token count": ({"llama__vocab_size": Typed(VT.UINT32, N_VOCAB + 50)},
                                         f"vocab_size is {N_VOCAB + 50} but tokenizer.ggml.tokens "
                                         f"holds {N_VOCAB} tokens"),
    "token list shorter than vocab_size": (
        {"tokenizer__ggml__tokens": TOKENS[:200],
         "tokenizer__ggml__token_type": np.ones(200, np.int32)},
        f"vocab_size is {N_VOCAB} but tokenizer.ggml.tokens holds 200 tokens"),
}


@pytest.mark.parametrize("case", list(ABSURD_CONFIGS))
def test_absurd_or_inconsistent_sizes_are_model_errors(tmp_path, case):
    overrides, message = ABSURD_CONFIGS[case]
    with pytest.raises(ModelError, match=message):
        config_from_metadata(tiny_metadata(tmp_path, **overrides).metadata)


# --- llm inspect's describe() ------------------------------------------------------------------

WRONG_TYPES_FOR_INSPECT = {
    "tokens a number": {"tokenizer__ggml__tokens": 5},
    "tokens a number array": {"tokenizer__ggml__tokens": np.arange(20, dtype=np.int32)},
    "tokens nested": {"tokenizer__ggml__tokens": Typed(VT.ARRAY, [["a"], ["b"]], VT.ARRAY)},
    "merges a number": {"tokenizer__ggml__merges": 3},
    "template a number": {"tokenizer__chat_template": 3},
    "template an array": {"tokenizer__chat_template": ["a", "b"]},
    "name an array": {"general__name": np.arange(20, dtype=np.int32)},
    "heads per layer": {"llama__attention__head_count": np.array([4, 4], np.int32)},
    "add_bos an array": {"tokenizer__ggml__add_bos_token": np.array([True])},
    "tokenizer model a number": {"tokenizer__ggml__model": 3},
}


@pytest.mark.parametrize("case", list(WRONG_TYPES_FOR_INSPECT))
def test_inspect_shows_metadata_of_the_wrong_type(tmp_path, case):
    """`llm inspect` is how one looks at a broken file: it must describe it, not fail."""
    gguf_file = tiny_metadata(tmp_path, **WRONG_TYPES_FOR_INSPECT[case])
    info = inspect_command.describe(gguf_file, with_tensors=True)
    json.dumps(info)
    with contextlib.redirect_stdout(io.StringIO()) as shown:
        inspect_command._print_text(info)
    assert "Tokenizer" in shown.getvalue()
