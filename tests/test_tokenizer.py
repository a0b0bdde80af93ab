"""Tokenizer tests. The real-model tests compare with goldens made by
tests/golden/make_tokenizer_goldens.py from transformers and llama.cpp; the small
synthetic vocabularies below have expectations worked out by hand from the BPE rules."""
import json
import pathlib
import random
import time
import warnings

import numpy as np
import pytest

from llmcli.errors import TokenizerError
from llmcli.tokenizer import Tokenizer
from llmcli.token_text import BYTE_CHARS

GOLDEN = pathlib.Path(__file__).parent / "golden"
TEXTS = json.loads((GOLDEN / "tokenizer_corpus.json").read_text())["texts"]
GOLDENS = json.loads((GOLDEN / "tokenizer_goldens.json").read_text())
SPLITS = json.loads((GOLDEN / "pretokenizer_goldens.json").read_text())

# Text that cannot survive encode+decode, and why (the references lose it the same way):
# SmolLM2's vocab has no token for bytes 0x04 and 0x1D (both references drop them), and
# SentencePiece cannot tell a typed U+2581 from the U+2581 that stands for a space.
LOSSY = {"smollm2": lambda text: text.replace("\x04", "").replace("\x1d", ""),
         "gemma3": lambda text: text.replace("\u2581", " ")}


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    return Tokenizer.from_gguf(smollm2_path)


@pytest.fixture(scope="module")
def gemma3(gemma3_path):
    return Tokenizer.from_gguf(gemma3_path)


@pytest.fixture(params=["smollm2", "gemma3"])
def model(request):
    return request.param, request.getfixturevalue(request.param)


def test_corpus_is_large_and_diverse():
    assert len(TEXTS) >= 200
    assert GOLDENS["corpus_sha256"] == SPLITS["corpus_sha256"]
    for sample in ("", "a", "中", "\u200d", "👨\u200d👩\u200d👧\u200d👦", "<|im_end|>", " " * 33):
        assert sample in TEXTS


# ---- exactness against the references ----

def _mismatches(tokenizer, expected, **options):
    wrong = [(i, TEXTS[i][:40]) for i, ids in enumerate(expected)
             if tokenizer.encode(TEXTS[i], add_special=False, **options) != ids]
    return wrong


def test_ids_equal_goldens_plain(model):
    name, tokenizer = model
    assert _mismatches(tokenizer, GOLDENS["models"][name]["plain"]) == []


def test_ids_equal_goldens_parse_special(model):
    name, tokenizer = model
    golden = GOLDENS["models"][name]
    expected = [golden["special"].get(str(i), ids) for i, ids in enumerate(golden["plain"])]
    assert len(golden["special"]) >= 10  # the corpus does exercise special tokens
    assert _mismatches(tokenizer, expected, parse_special=True) == []


def test_add_special_follows_the_model(model):
    name, tokenizer = model
    for text, ids in zip(TEXTS, GOLDENS["models"][name]["add_special"]):
        assert tokenizer.encode(text) == ids


def test_disagreements_are_recorded_with_a_reason():
    for golden in GOLDENS["models"].values():
        for case in golden["disagreements"]:
            assert case["followed"] in ("hf", "llama_cpp") and case["why"]
            followed = golden["plain"][case["text"]] if case["mode"] == "plain" else None
            if followed is not None:
                assert followed == case[case["followed"]]


def test_decode_inverts_encode(model):
    name, tokenizer = model
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special=False)
        assert tokenizer.decode(ids) == LOSSY[name](text)
        special_ids = tokenizer.encode(text, add_special=False, parse_special=True)
        assert tokenizer.decode(special_ids) == LOSSY[name](text)


def test_bos_decodes_to_its_text(gemma3):
    assert gemma3.decode(gemma3.encode("Hi")) == "<bos>Hi"
    assert gemma3.decode(gemma3.encode("Hi"), skip_special=True) == "Hi"


# ---- special tokens ----

def test_user_text_does_not_become_control_tokens(smollm2, gemma3):
    assert 2 not in smollm2.encode("<|im_end|>", add_special=False)
    assert smollm2.encode("<|im_end|>", add_special=False, parse_special=True) == [2]
    assert 106 not in gemma3.encode("<end_of_turn>", add_special=False)
    assert gemma3.encode("<end_of_turn>", add_special=False, parse_special=True) == [106]
    # user-defined tokens are vocabulary proper: matched with parse_special off too
    assert gemma3.encode("<table>", add_special=False) == [168]


def test_end_of_generation_ids(smollm2, gemma3):
    assert smollm2.eog_ids == {0, 2} and smollm2.eos_id == 2
    assert gemma3.eog_ids == {1, 106} and gemma3.eot_id == 106
    assert smollm2.token_piece(4) == "<reponame>" and 4 not in smollm2.eog_ids


def test_metadata_fields(smollm2, gemma3):
    assert (smollm2.n_vocab, smollm2.bos_id, smollm2.add_bos) == (49152, 1, False)
    assert (gemma3.n_vocab, gemma3.bos_id, gemma3.add_bos) == (262144, 2, True)
    assert "<|im_start|>" in smollm2.chat_template and gemma3.chat_template is None


# tokenizer.ggml.* as gguf-py 0.19's GGUFReader reads the two files (None: key absent;
# an absent add_* flag is False for these files). Constants: GGUFReader takes ~20 s on
# Gemma 3's vocabulary.
SPECIAL_KEYS = {
    # bos, eos, eot, padding, unknown; add_bos_token, add_eos_token, add_space_prefix
    "smollm2": ((1, 2, None, 2, 0), (False, False, False)),
    "gemma3": ((2, 1, None, 0, 3), (True, False, False)),
}


def test_special_ids_and_flags_follow_the_metadata(model):
    name, tokenizer = model
    vocab = tokenizer.vocab
    ids, flags = SPECIAL_KEYS[name]
    assert (vocab.bos_id, vocab.eos_id, vocab.eot_id, vocab.pad_id, vocab.unk_id) == ids
    assert (vocab.add_bos, vocab.add_eos, vocab.add_space_prefix) == flags


def test_pieces_and_bytes(smollm2, gemma3):
    ids = smollm2.encode(" love", add_special=False)
    assert [smollm2.token_piece(i) for i in ids] == ["Ġlove"]
    assert smollm2.token_bytes(ids[0]) == b" love"
    assert gemma3.token_piece(gemma3.encode(" love", add_special=False)[0]) == "\u2581love"
    assert gemma3.token_bytes(248) == b"\n" and gemma3.token_piece(248) == "<0x0A>"


@pytest.mark.parametrize("odd_piece", [None, "Ġcafé✓"])
def test_encoder_texts_are_each_tokens_bytes(smollm2, odd_piece):
    """The bulk unmapping (all pieces at once) against piece_bytes token by token, on
    SmolLM2's vocabulary, and with one piece outside the byte alphabet (which then keeps
    its UTF-8), a control token moved to the end and a user-defined token whose plain
    text is longer than its unmapped bytes."""
    from llmcli.token_text import encoder_texts, piece_bytes

    vocab = smollm2.vocab
    pieces, types = list(vocab.pieces), vocab.token_types.copy()
    if odd_piece is not None:
        pieces += [odd_piece, pieces[2], "ĠĠ<x>"]
        types = np.append(types, [1, types[2], 4])
        types[2] = 1
    texts = encoder_texts("gpt2", pieces, None, types)
    assert len(texts) == len(pieces)
    expected = [piece_bytes("gpt2", piece, kind) for piece, kind in zip(pieces, types)]
    assert [texts[i] for i in range(len(pieces))] == expected
    if odd_piece is not None:
        assert texts[len(pieces) - 3] == odd_piece.encode("utf-8")
        assert texts[len(pieces) - 1] == "ĠĠ<x>".encode("utf-8")


# ---- streaming ----

def _stream(tokenizer, ids):
    decoder = tokenizer.stream_decoder()
    return [decoder.feed(i) for i in ids] + [decoder.flush()]


def test_stream_equals_decode_for_every_golden_text(model):
    _, tokenizer = model
    for text in TEXTS:
        for ids in (tokenizer.encode(text), tokenizer.encode(text, parse_special=True)):
            assert "".join(_stream(tokenizer, ids)) == tokenizer.decode(ids)


def test_stream_holds_back_partial_chars(gemma3):
    ids = gemma3.encode("𠀀!", add_special=False)  # a rare char: four byte tokens
    assert len(ids) == 5
    assert _stream(gemma3, ids) == ["", "", "", "𠀀", "!", ""]


def test_stream_replaces_dangling_bytes_only_on_flush(gemma3):
    first_byte_of_euro = 238 + 0xE2   # Gemma's byte tokens <0x00>.. start at id 238
    assert gemma3.token_piece(first_byte_of_euro) == "<0xE2>"
    decoder = gemma3.stream_decoder()
    assert decoder.feed(first_byte_of_euro) == ""
    assert decoder.flush() == "\ufffd"
    assert gemma3.decode([first_byte_of_euro]) == "\ufffd"


# ---- errors ----

def test_ids_outside_the_vocab_are_errors(smollm2):
    for bad in (-1, 49152, 10**9):
        with pytest.raises(TokenizerError, match=str(bad)):
            smollm2.decode([5, bad])
    with pytest.raises(TokenizerError):
        smollm2.stream_decoder().feed(49152)


def test_lone_surrogate_is_an_error(smollm2):
    with pytest.raises(TokenizerError, match="character 2"):
        smollm2.encode("ab\ud800")


# ---- small synthetic vocabularies (expectations from the algorithm, by hand) ----

def byte_level_metadata(**extra):
    tokens = [BYTE_CHARS[b] for b in range(256)] + ["Ġt", "he", "Ġthe", "<|end|>"]
    metadata = {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": np.array([1] * 259 + [3], dtype=np.int32),
        "tokenizer.ggml.merges": ["Ġ t", "h e", "Ġt he"],
        "tokenizer.ggml.eos_token_id": 259,
    }
    metadata.update(extra)
    return metadata


def test_byte_level_merges_by_rank():
    tokenizer = Tokenizer.from_metadata(byte_level_metadata())
    assert tokenizer.encode(" the") == [258]
    assert tokenizer.encode("the") == [ord("t"), 257]  # "Ġt" needs the space
    assert tokenizer.encode("<|end|>") != [259]
    assert tokenizer.encode("x<|end|>", parse_special=True) == [ord("x"), 259]
    assert tokenizer.eog_ids == {259}


def test_unknown_pretokenizer_warns_and_splits_like_gpt2():
    with pytest.warns(UserWarning, match="unknown pre-tokenizer.*'mystery'"):
        tokenizer = Tokenizer.from_metadata(byte_level_metadata(**{"tokenizer.ggml.pre": "mystery"}))
    assert tokenizer.vocab.pretokenizer == "gpt2"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Tokenizer.from_metadata(byte_level_metadata())


def spm_metadata(**extra):
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + \
        ["\u2581", "a", "b", "\u2581a", "ab", "\u2581ab", "ba"]
    scores = [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -4.0]
    types = [2, 3, 3] + [6] * 256 + [1] * 7
    metadata = {
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": pieces,
        "tokenizer.ggml.scores": np.array(scores, dtype=np.float32),
        "tokenizer.ggml.token_type": np.array(types, dtype=np.int32),
    }
    metadata.update(extra)
    return metadata


def test_sentencepiece_scores_space_prefix_and_byte_fallback():
    tokenizer = Tokenizer.from_metadata(spm_metadata())
    space, b, space_ab, ba = 259, 261, 264, 265
    assert tokenizer.add_bos and tokenizer.vocab.add_space_prefix  # llama.cpp's defaults
    # "▁ab": "▁a" (-4) beats "ab" (-5); then "▁a"+"b" makes "▁ab"
    assert tokenizer.encode("ab") == [1, space_ab]
    assert tokenizer.decode(tokenizer.encode("ab")) == "<s>ab"   # the added space is dropped
    assert tokenizer.decode(tokenizer.encode("ab"), skip_special=True) == "ab"
    # "▁bab": "▁b" is no token, "ba" (-4) beats "ab" (-5)
    assert tokenizer.encode("bab", add_special=False) == [space, ba, b]
    # "é" is no token: its two UTF-8 bytes fall back to <0xC3> <0xA9>
    assert tokenizer.encode("é", add_special=False) == [space, 3 + 0xC3, 3 + 0xA9]


def test_sentencepiece_ties_go_to_the_leftmost_pair():
    metadata = spm_metadata(**{"tokenizer.ggml.add_space_prefix": False})
    metadata["tokenizer.ggml.scores"][[263, 265]] = -4.5   # "ab" and "ba" tie
    tokenizer = Tokenizer.from_metadata(metadata)
    assert tokenizer.encode("aba", add_special=False) == [263, 260]   # "ab" first, not "ba"
    assert tokenizer.encode("bab", add_special=False) == [265, 261]


@pytest.mark.parametrize("key, value, message", [
    ("tokenizer.ggml.model", "bert", "tokenizer.ggml.model = 'bert'"),
    ("tokenizer.ggml.token_type", np.array([1, 1], dtype=np.int32), "tokenizer.ggml.token_type has 2"),
    ("tokenizer.ggml.eos_token_id", 999, "tokenizer.ggml.eos_token_id = 999"),
    ("tokenizer.ggml.merges", ["nospace"], "tokenizer.ggml.merges\\[0\\]"),
    ("tokenizer.ggml.add_bos_token", True, "bos_token_id is missing"),
])
def test_bad_metadata_names_the_key(key, value, message):
    with pytest.raises(TokenizerError, match=message):
        Tokenizer.from_metadata(byte_level_metadata(**{key: value}))


def test_missing_keys_are_named():
    metadata = byte_level_metadata()
    del metadata["tokenizer.ggml.merges"]
    with pytest.raises(TokenizerError, match="tokenizer.ggml.merges"):
        Tokenizer.from_metadata(metadata)
    with pytest.raises(TokenizerError, match="tokenizer.ggml.model"):
        Tokenizer.from_metadata({})


# ---- pre-tokenizers ----

def test_unicode_class_table_is_generated():
    """csrc/unicode_class.c must be exactly what csrc/gen_unicode_class.py writes."""
    import subprocess
    import sys
    import unicodedata

    root = pathlib.Path(__file__).parents[1]
    committed = (root / "csrc" / "unicode_class.c").read_text()
    if f"Unicode {unicodedata.unidata_version};" not in committed.splitlines()[0]:
        pytest.skip(f"table made from other Unicode data than this Python's {unicodedata.unidata_version}")
    generated = subprocess.run([sys.executable, str(root / "csrc" / "gen_unicode_class.py")],
                               capture_output=True, text=True, check=True).stdout
    assert generated == committed


@pytest.mark.parametrize("rule", ["gpt2", "smollm", "llama3", "qwen2"])
def test_pretokenizer_splits_equal_hf(rule):
    from llmcli._kernels import bpe_pretokenize

    wrong = [text[:40] for text, ends in zip(TEXTS, SPLITS["rules"][rule])
             if bpe_pretokenize(rule, text.encode()) != ends]
    assert wrong == []


@pytest.mark.parametrize("name", ["gpt-2", "llama-bpe", "qwen2"])
def test_other_byte_level_vocabs_equal_llama_cpp(name, llama_cpp_vocab_dir):
    """Full tokenization with llama.cpp's own test vocabularies (from its source tree,
    fetched by tests/vocab_files.py; not shipped with llmcli)."""
    golden = SPLITS["vocabs"][name]
    tokenizer = Tokenizer.from_gguf(llama_cpp_vocab_dir / golden["gguf"])
    assert _mismatches(tokenizer, golden["plain"]) == []


# ---- speed: no quadratic blow-up ----

def _prose(n_bytes, seed=0):
    """Varied pseudo-words (so the word cache does not make it trivial)."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ther", "an", "str", "ou", "ing", "pre", "ve", "ly", "qu"]
    words = []
    size = 0
    while size < n_bytes:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
        word += rng.choice(["", "", "", ",", "."])
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:n_bytes]


def _cpu_time(tokenizer, text, repeats):
    """Best CPU time of a few runs: the machine may be shared, CPU time is steadier."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        tokenizer.encode(text, add_special=False)
        best = min(best, time.process_time() - start)
    return best


def test_no_quadratic_blowup(model):
    _, tokenizer = model
    size = 1 << 20
    prose = _cpu_time(tokenizer, _prose(size), repeats=3)
    rng = random.Random(1)
    adversarial = {
        "one repeated char": "a" * size,
        "one long word": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(size)),
        "spaces": " " * size,
        "digits": "7" * size,
        "newlines": "\n" * size,
        "emoji": "😀" * (size // 4),
    }
    for what, text in adversarial.items():
        elapsed = _cpu_time(tokenizer, text, repeats=2)
        assert elapsed < 10 * prose + 0.02, f"{what}: {elapsed:.3f}s vs prose {prose:.3f}s"
