"""Fuzz the tokenizer (atheris / libFuzzer): hostile text through the real vocabularies,
and hostile vocabularies built from the fuzz input.

The first input byte picks the mode (TEXT_MODES):
  0-2  text through SmolLM2's byte-level BPE (the real model, or the tiny test vocab when
       the model file is absent): parse_special off, on, and text with lone surrogates
  3-4  text through Gemma 3's SentencePiece BPE (same fallback rule)
  5+   a vocabulary made from the input (tokens, types, merges or scores, special ids),
       then text through it

Properties: ids lie in the vocabulary; streaming decode == decode; for the real
vocabularies, decode(encode(text)) == text whenever every byte of the text has a token;
a hostile vocabulary either builds or raises an LLMError. Anything else is a finding.

    nice -n 19 python fuzz/fuzz_tokenizer.py -max_len=4096 -timeout=10 \\
        fuzz/corpus/tokenizer fuzz/seeds/tokenizer
Real models are looked up in $LLMCLI_TEST_MODEL_DIR (default /work/models).
"""
import os
import sys
import warnings

import atheris
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "tests")]

with atheris.instrument_imports(include=["llmcli"]):
    from llmcli.errors import LLMError, TokenizerError
    from llmcli.tokenizer import Tokenizer

import hostile_models  # noqa: E402  (test helper: tiny vocabularies written from the specs)

warnings.simplefilter("ignore")
MODEL_DIR = os.environ.get("LLMCLI_TEST_MODEL_DIR", "/work/models")


def _real_or_tiny(name, tiny_metadata):
    path = os.path.join(MODEL_DIR, f"{name}.gguf")
    if os.path.exists(path):
        return Tokenizer.from_gguf(path)
    return Tokenizer.from_metadata(tiny_metadata())


def _tiny_llama_metadata():
    tokens, types, merges = hostile_models.llama_vocab()
    return _plain(hostile_models.llama_metadata(tokens, types, merges))


def _tiny_gemma_metadata():
    tokens, types, scores = hostile_models.gemma3_vocab()
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.bos_token_id": 2, "tokenizer.ggml.eos_token_id": 1,
            "tokenizer.ggml.unknown_token_id": 3, "tokenizer.ggml.add_bos_token": True,
            "tokenizer.ggml.add_space_prefix": False}


def _plain(metadata):
    """Typed writer values -> the plain values the GGUF reader returns."""
    return {key: value.value if isinstance(value, hostile_models.Typed) else value
            for key, value in metadata.items()}


SMOLLM2 = _real_or_tiny("smollm2", _tiny_llama_metadata)
GEMMA3 = _real_or_tiny("gemma3", _tiny_gemma_metadata)


def _bytes_without_token(tokenizer):
    """Bytes that the vocabulary cannot spell: text holding them cannot round-trip."""
    def token_text(b):
        # the C core matches byte-level tokens by the bytes they stand for, and
        # SentencePiece tokens by their piece (<0xXX> for byte fallback)
        return bytes([b]) if tokenizer.vocab.model == "gpt2" else f"<0x{b:02X}>".encode()

    return frozenset(b for b in range(256) if tokenizer._core.find(token_text(b)) < 0)


MISSING = {id(SMOLLM2): _bytes_without_token(SMOLLM2), id(GEMMA3): _bytes_without_token(GEMMA3)}


def check_text(tokenizer, text, parse_special):
    try:
        ids = tokenizer.encode(text, add_special=False, parse_special=parse_special)
    except TokenizerError:
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in text), "TokenizerError on valid text"
        return
    assert all(0 <= i < tokenizer.n_vocab for i in ids), "id outside the vocabulary"
    decoded = tokenizer.decode(ids)
    decoder = tokenizer.stream_decoder()
    streamed = "".join(decoder.feed(i) for i in ids) + decoder.flush()
    assert streamed == decoded, (streamed, decoded)
    if not MISSING[id(tokenizer)] & set(text.encode("utf-8")):
        assert decoded == text, (text, decoded, ids)


def hostile_vocab(fdp):
    """A tokenizer metadata dict drawn from the input: may be nonsense on purpose."""
    n_tokens = fdp.ConsumeIntInRange(1, 64)
    tokens = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 6)).decode("utf-8", "replace")
              for _ in range(n_tokens)]
    spm = fdp.ConsumeBool()
    metadata = {
        "tokenizer.ggml.model": "llama" if spm else "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": np.array(
            [fdp.ConsumeIntInRange(0, 7) for _ in range(n_tokens)], np.int32),
    }
    if spm:
        metadata["tokenizer.ggml.scores"] = np.array(
            [fdp.ConsumeRegularFloat() for _ in range(n_tokens)], np.float32)
    else:
        n_merges = fdp.ConsumeIntInRange(0, 32)
        metadata["tokenizer.ggml.merges"] = [
            fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 6)).decode("utf-8", "replace")
            for _ in range(n_merges)]
        metadata["tokenizer.ggml.pre"] = fdp.PickValueInList(
            ["gpt2", "smollm", "llama-bpe", "qwen2", "unknown"])
    for key in ("bos", "eos", "unknown", "eot", "padding"):
        if fdp.ConsumeBool():
            metadata[f"tokenizer.ggml.{key}_token_id"] = fdp.ConsumeIntInRange(-2, 70)
    for key in ("add_bos_token", "add_eos_token", "add_space_prefix"):
        if fdp.ConsumeBool():
            metadata[f"tokenizer.ggml.{key}"] = fdp.ConsumeBool()
    return metadata


# mode -> (tokenizer, parse_special, let lone surrogates through)
TEXT_MODES = [(SMOLLM2, False, False), (SMOLLM2, True, False), (SMOLLM2, False, True),
              (GEMMA3, False, False), (GEMMA3, True, True)]


def text_of(data, allow_surrogates):
    if allow_surrogates:
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            pass
    return data.decode("utf-8", "replace")


def test_one_input(data):
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode < len(TEXT_MODES):
        tokenizer, parse_special, surrogates = TEXT_MODES[mode]
        check_text(tokenizer, text_of(rest, surrogates), parse_special)
        return
    fdp = atheris.FuzzedDataProvider(rest)
    metadata = hostile_vocab(fdp)
    try:
        tokenizer = Tokenizer.from_metadata(metadata)
    except LLMError:
        return
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    for parse_special in (False, True):
        ids = tokenizer.encode(text, parse_special=parse_special)
        assert all(0 <= i < tokenizer.n_vocab for i in ids), ("id outside the vocabulary", ids)
        decoded = tokenizer.decode(ids)
        decoder = tokenizer.stream_decoder()
        assert "".join(decoder.feed(i) for i in ids) + decoder.flush() == decoded


def main():
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
