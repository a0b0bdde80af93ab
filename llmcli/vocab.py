"""A model's vocabulary read from GGUF metadata (the `tokenizer.ggml.*` keys), checked, in
the shapes the tokenizer needs.

Two tokenizer models exist in the files we run:
  gpt2   byte-level BPE (SmolLM2): tokens are strings over a 256-char alphabet that
         stands for bytes (GPT-2's byte<->unicode map), merged by the rank order of
         `tokenizer.ggml.merges`; a pre-tokenizer named by `tokenizer.ggml.pre` first
         splits text into words.
  llama  SentencePiece-style BPE (Gemma 3): tokens are UTF-8 strings with U+2581 for a
         space, merged by `tokenizer.ggml.scores`; unknown chars fall back to `<0xXX>`.
Token types (`tokenizer.ggml.token_type`) follow llama.cpp's numbering (TokenType).
"""
import warnings
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from llmcli.errors import GGUFError, TokenizerError
from llmcli.table_cache import cached_arrays
from llmcli.token_text import PackedStrings, PackedText, pack_utf8


class TokenType(IntEnum):
    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


# `tokenizer.ggml.pre` names -> the split rule of csrc/pretok.c. Names sharing a rule use
# the very same regexes in llama.cpp (src/llama-vocab.cpp).
PRETOKENIZER_RULES = {
    "gpt2": "gpt2", "gpt-2": "gpt2", "mpt": "gpt2", "olmo": "gpt2", "jais": "gpt2",
    "smollm": "smollm", "starcoder": "smollm", "refact": "smollm", "command-r": "smollm",
    "codeshell": "smollm", "exaone": "smollm", "minerva": "smollm",
    "llama-bpe": "llama3", "llama3": "llama3", "llama-v3": "llama3", "dbrx": "llama3",
    "smaug-bpe": "llama3",
    "qwen2": "qwen2", "stablelm2": "qwen2",
}
# Llama 3's tokenizer.json sets ignore_merges (a word that is itself a token is not
# split) and its files want a BOS by default: llama.cpp applies both to these names.
LLAMA3_NAMES = {"llama3", "llama-v3", "llama-bpe"}

# Texts of control tokens that end a turn or a document, as llama.cpp recognises them.
END_MARKERS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
               "<|eom_id|>", "<|end_of_text|>", "<EOT>", "<end_of_utterance>")


@dataclass(frozen=True)
class Vocab:
    model: str                  # "gpt2" or "llama"
    pretokenizer: str | None    # split rule (gpt2 model only)
    ignore_merges: bool         # a word that is itself a token is not merged (Llama 3)
    pieces: list                # token strings, as stored
    packed_pieces: PackedStrings  # the same as UTF-8, back to back
    token_types: np.ndarray     # int32 [n_vocab]
    scores: np.ndarray | None   # float32 [n_vocab] (llama model)
    merges: tuple | None        # (left ids, right ids, merged ids), rank order (gpt2 model)
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    unk_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None

    @property
    def n_vocab(self):
        return len(self.pieces)


def vocab_from_metadata(metadata):
    """Read and check the tokenizer.ggml.* keys. Raises TokenizerError naming the key."""
    model = _get(metadata, "tokenizer.ggml.model", str, required=True)
    if model not in ("gpt2", "llama"):
        raise TokenizerError(f"tokenizer.ggml.model = {model!r} is not supported "
                             "(supported: 'gpt2' byte-level BPE, 'llama' SentencePiece BPE)")
    is_spm = model == "llama"
    pieces, packed_pieces = _pieces(_get(metadata, "tokenizer.ggml.tokens", object, required=True),
                                    "tokenizer.ggml.tokens", keep_packed=is_spm)
    n_vocab = len(pieces)
    if n_vocab == 0:
        raise TokenizerError("tokenizer.ggml.tokens is empty")
    token_types = _token_types(metadata, n_vocab)
    scores = _array(metadata, "tokenizer.ggml.scores", np.float32, n_vocab, default=0.0) if is_spm else None
    pre_name = _get(metadata, "tokenizer.ggml.pre", str, default="gpt2")
    pretokenizer = None if is_spm else _pretokenizer_rule(pre_name)
    llama3 = not is_spm and pre_name in LLAMA3_NAMES
    merges = None if is_spm else _merges(metadata, pieces)

    def token_id(key, default=None):
        value = _get(metadata, key, int, default=None)
        if value is None or value in (-1, 0xFFFFFFFF):  # absent, or "none" as some files write it
            # a default the vocabulary is too small to hold means "no such token"
            return default if default is not None and default < n_vocab else None
        if not 0 <= value < n_vocab:
            raise TokenizerError(f"{key} = {value} is outside the vocabulary (0..{n_vocab - 1})")
        return value

    # Defaults for files that omit the keys follow llama.cpp (SentencePiece: <s> </s> <unk>).
    bos_id = token_id("tokenizer.ggml.bos_token_id", 1 if is_spm else None)
    eos_id = token_id("tokenizer.ggml.eos_token_id", 2 if is_spm else None)
    add_bos = _get(metadata, "tokenizer.ggml.add_bos_token", bool,
                   default=is_spm or llama3)
    add_eos = _get(metadata, "tokenizer.ggml.add_eos_token", bool, default=False)
    if add_bos and bos_id is None:
        raise TokenizerError("tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing")
    if add_eos and eos_id is None:
        raise TokenizerError("tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing")
    return Vocab(
        model=model, pretokenizer=pretokenizer, ignore_merges=llama3,
        pieces=pieces, packed_pieces=packed_pieces,
        token_types=token_types,
        scores=scores, merges=merges, bos_id=bos_id, eos_id=eos_id,
        eot_id=token_id("tokenizer.ggml.eot_token_id"),
        unk_id=token_id("tokenizer.ggml.unknown_token_id", 0 if is_spm else None),
        pad_id=token_id("tokenizer.ggml.padding_token_id"),
        add_bos=add_bos, add_eos=add_eos,
        add_space_prefix=_get(metadata, "tokenizer.ggml.add_space_prefix", bool, default=is_spm),
        chat_template=_get(metadata, "tokenizer.chat_template", str, default=None),
    )


def _get(metadata, key, kind, required=False, default=None):
    if key not in metadata:
        if required:
            raise TokenizerError(f"GGUF metadata has no {key} (no tokenizer in this file?)")
        return default
    value = metadata[key]
    if kind is int and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if kind is bool and isinstance(value, (bool, np.bool_)):
        return bool(value)
    if kind is object and not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise TokenizerError(f"{key} has the wrong type ({type(value).__name__})")


def _array(metadata, key, dtype, n_vocab, default):
    if key not in metadata:
        return np.full(n_vocab, default, dtype=dtype)
    try:
        values = np.asarray(metadata[key])
    except ValueError:   # a ragged nested array
        raise TokenizerError(f"{key} is not a flat numeric array") from None
    if values.ndim != 1 or len(values) != n_vocab:
        raise TokenizerError(f"{key} has {values.size} entries, tokenizer.ggml.tokens has {n_vocab}")
    if not np.issubdtype(values.dtype, np.number):
        raise TokenizerError(f"{key} is not a numeric array")
    return values.astype(dtype, copy=False)


def _token_types(metadata, n_vocab):
    """Token types, checked: the tokenizer branches on them. 0 is llama.cpp's "undefined",
    read as normal text."""
    key = "tokenizer.ggml.token_type"
    types = _array(metadata, key, np.int32, n_vocab, default=TokenType.NORMAL)
    if key in metadata and not np.issubdtype(np.asarray(metadata[key]).dtype, np.integer):
        raise TokenizerError(f"{key} is not an integer array")
    bad = np.flatnonzero((types < 0) | (types > max(TokenType)))
    if bad.size:
        raise TokenizerError(f"{key}[{bad[0]}] = {types[bad[0]]} is not a token type "
                             f"(0..{int(max(TokenType))})")
    return np.where(types == 0, TokenType.NORMAL, types).astype(np.int32)


def _pretokenizer_rule(name):
    rule = PRETOKENIZER_RULES.get(name)
    if rule is None:
        warnings.warn(f"unknown pre-tokenizer tokenizer.ggml.pre = {name!r}; "
                      "splitting words by GPT-2's rules instead", stacklevel=4)
        rule = "gpt2"
    return rule


def _merges(metadata, pieces):
    """'left right' strings -> id arrays. Merges naming a missing token are dropped (they
    could never apply); a file with no usable merge at all is refused. Kept in the table
    cache: the lookups cost more than the rest of start-up."""
    strings = _get(metadata, "tokenizer.ggml.merges", object, required=True)
    return cached_arrays("merges", [metadata["tokenizer.ggml.tokens"], strings],
                         lambda: _merge_ids(string_list(strings, "tokenizer.ggml.merges"), pieces))


def _merge_ids(merges, pieces):
    index = {piece: i for i, piece in enumerate(pieces)}
    left, right, merged = [], [], []
    for rank, merge in enumerate(merges):
        # the separator is the first space after the first char (llama.cpp's rule)
        split = merge.find(" ", 1)
        if split < 0:
            raise TokenizerError(f"tokenizer.ggml.merges[{rank}] = {merge!r} is not 'left right'")
        a, b = merge[:split], merge[split + 1:]
        ids = index.get(a), index.get(b), index.get(a + b)
        if None not in ids:
            left.append(ids[0])
            right.append(ids[1])
            merged.append(ids[2])
    if not left and merges:
        raise TokenizerError("tokenizer.ggml.merges names no tokens of tokenizer.ggml.tokens")
    return tuple(np.array(ids, dtype=np.int32) for ids in (left, right, merged))


def _pieces(strings, key, keep_packed):
    """The token strings as (a sequence of str, the same packed as UTF-8). keep_packed:
    a GGUF string array is packed straight from the file's bytes and each string decoded
    only when read (SentencePiece: the encoder matches the pieces as stored; making
    Gemma 3's 262k Python strings cost ~0.2 s and ~20 MB at every start). Byte-level
    vocabularies are unmapped string by string anyway, so they are read as a list."""
    if keep_packed and hasattr(strings, "packed"):
        try:
            blob, offsets = strings.packed()
        except GGUFError:
            raise TokenizerError(f"{key}[{_first_bad_utf8(strings)}] is not valid UTF-8") from None
        packed = PackedStrings(blob, offsets)
        return PackedText(packed), packed
    values = string_list(strings, key)
    return values, pack_utf8(values)


def string_list(strings, key):
    """A metadata string array as a list of str. TokenizerError naming `key` (and the
    index) if it is not an array of strings or a string is not UTF-8."""
    if isinstance(strings, (np.ndarray, str, bytes)):
        raise TokenizerError(f"{key} is not an array of strings")
    if hasattr(strings, "tolist"):  # a GGUF StringArray: decodes it all in one pass
        try:
            return strings.tolist()
        except GGUFError:
            raise TokenizerError(f"{key}[{_first_bad_utf8(strings)}] is not valid UTF-8") from None
    values = list(strings)
    if not all(isinstance(value, str) for value in values):
        raise TokenizerError(f"{key} is not an array of strings")
    return values


def _first_bad_utf8(strings):
    for index in range(len(strings)):
        try:
            strings.bytes_at(index).decode("utf-8")
        except UnicodeDecodeError:
            return index
    return "?"
