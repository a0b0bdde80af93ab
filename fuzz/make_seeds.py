"""Write the fuzz seed files into fuzz/seeds/ (small, committed; rerun to refresh).

    python fuzz/make_seeds.py [--real-model /work/models/smollm2.gguf]

gguf/       tiny complete llama and gemma3 models (F16 matrices, a few dozen tokens), a
            file holding every metadata value type, SmolLM2's real metadata shrunk to
            300 tokens, and the first 64 KiB of the real SmolLM2 file.
tokenizer/  texts: ASCII, accents, CJK, emoji, digits, whitespace runs, special-token
            texts, invalid UTF-8.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent)]

import hostile_models  # noqa: E402
from gguf_writer import GGUFWriter, Typed, VT  # noqa: E402

SEED_DIMS = (1, 32, 2, 1, 32, 64)   # layers, width, heads, kv heads, ffn, context


def small_llama():
    tokens = hostile_models.SPECIALS + [chr(c) for c in range(0x21, 0x7F)] + ["Ġ", "Ċ", "he", "Ġt", "th"]
    types = np.array([3] * 3 + [1] * (len(tokens) - 3), np.int32)
    merges = [f"{a} {b}" for a, b in hostile_models.MERGES]
    metadata = hostile_models.llama_metadata(tokens, types, merges, SEED_DIMS)
    tensors = _as_f16(hostile_models.llama_tensors(len(tokens), SEED_DIMS))
    return hostile_models.write_model(metadata, tensors)


def small_gemma3():
    tokens, types, scores = hostile_models.gemma3_vocab()
    # control tokens, printable ASCII byte tokens, the pieces and letters
    keep = list(range(6)) + list(range(6 + 0x20, 6 + 0x7F)) + list(range(262, len(tokens)))
    n_vocab, width, heads, head_dim, ffn = len(keep), 32, 2, 16, 32
    metadata = {
        "general.architecture": "gemma3",
        "gemma3.block_count": Typed(VT.UINT32, 1),
        "gemma3.context_length": Typed(VT.UINT32, 64),
        "gemma3.embedding_length": Typed(VT.UINT32, width),
        "gemma3.feed_forward_length": Typed(VT.UINT32, ffn),
        "gemma3.attention.head_count": Typed(VT.UINT32, heads),
        "gemma3.attention.head_count_kv": Typed(VT.UINT32, 1),
        "gemma3.attention.key_length": Typed(VT.UINT32, head_dim),
        "gemma3.attention.value_length": Typed(VT.UINT32, head_dim),
        "gemma3.attention.layer_norm_rms_epsilon": 1e-6,
        "gemma3.attention.sliding_window": Typed(VT.UINT32, 16),
        "gemma3.rope.freq_base": 1e6,
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [tokens[i] for i in keep],
        "tokenizer.ggml.scores": scores[keep],
        "tokenizer.ggml.token_type": types[keep],
        "tokenizer.ggml.bos_token_id": Typed(VT.UINT32, 2),
        "tokenizer.ggml.eos_token_id": Typed(VT.UINT32, 1),
        "tokenizer.ggml.unknown_token_id": Typed(VT.UINT32, 3),
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_space_prefix": False,
    }
    rng = np.random.default_rng(1)

    def m(rows, cols):
        return (rng.standard_normal((rows, cols)) * 0.05).astype(np.float16)

    ones, head_ones = np.ones(width, np.float32), np.ones(head_dim, np.float32)
    tensors = {
        "token_embd.weight": m(n_vocab, width), "blk.0.attn_norm.weight": ones,
        "blk.0.attn_q.weight": m(heads * head_dim, width),
        "blk.0.attn_k.weight": m(head_dim, width), "blk.0.attn_v.weight": m(head_dim, width),
        "blk.0.attn_q_norm.weight": head_ones, "blk.0.attn_k_norm.weight": head_ones,
        "blk.0.attn_output.weight": m(width, heads * head_dim),
        "blk.0.post_attention_norm.weight": ones, "blk.0.ffn_norm.weight": ones,
        "blk.0.ffn_gate.weight": m(ffn, width), "blk.0.ffn_up.weight": m(ffn, width),
        "blk.0.ffn_down.weight": m(width, ffn), "blk.0.post_ffw_norm.weight": ones,
        "output_norm.weight": ones,
    }
    return hostile_models.write_model(metadata, tensors)


def _as_f16(tensors):
    return {name: t.astype(np.float16) if t.ndim == 2 else t for name, t in tensors.items()}


def every_value_type():
    w = GGUFWriter(alignment=64)
    w.add("t.u8", Typed(VT.UINT8, 7))
    w.add("t.i64", Typed(VT.INT64, -5))
    w.add("t.f64", Typed(VT.FLOAT64, 2.5))
    w.add("t.bool", True)
    w.add("t.str", "héllo")
    w.add("a.f32", np.arange(4, dtype=np.float32))
    w.add("a.bool", np.array([True, False]))
    w.add("a.str", ["a", "bc", ""])
    w.add("n.nested", Typed(VT.ARRAY, [[1, 2], [3]], VT.ARRAY))
    w.add_tensor("w", np.zeros((2, 32), np.float32))
    return w.to_bytes()


def shrunk_real_metadata(path, n_tokens=300):
    """The real model's metadata with its vocabulary cut to n_tokens (merges filtered to
    those tokens), and no tensors."""
    from llmcli.gguf import StringArray, open_gguf

    source = open_gguf(path).metadata
    tokens = source["tokenizer.ggml.tokens"][:n_tokens]
    kept = set(tokens)
    w = GGUFWriter()
    for key, value in source.items():
        if key == "tokenizer.ggml.tokens":
            w.add(key, tokens)
        elif key == "tokenizer.ggml.token_type":
            w.add(key, np.asarray(value[:n_tokens]))
        elif key == "tokenizer.ggml.merges":
            merges = [m for m in value if all(p in kept for p in m.split(" ", 1))
                      and m.replace(" ", "", 1) in kept]
            w.add(key, merges or ["a b"])
        elif key.endswith("vocab_size"):
            w.add(key, Typed(VT.UINT32, n_tokens))
        elif isinstance(value, StringArray):
            w.add(key, list(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            w.add(key, Typed(VT.UINT32, value) if value >= 0 else value)
        else:
            w.add(key, value)
    return w.to_bytes()


TEXTS = {
    "ascii.txt": b"Hello, world! The quick brown fox jumps over the lazy dog 12345.",
    "accents.txt": "Ça été déjà vu — naïve façade, Größe, ñandú.".encode(),
    "cjk_emoji.txt": "日本語のテキスト 中文 한국어 🦊🚀👩‍👩‍👧 e\u0301".encode(),
    "digits.txt": b"3.14159 2024-11-28 1,000,000 0x1F 1e-5",
    "spaces.txt": b"  leading\t\ttabs\n\n\nnewlines   trailing   \r\n",
    "specials.txt": b"<|im_start|>user\nhi<|im_end|>\n<bos><start_of_turn>model<end_of_turn><eos>",
    "contractions.txt": b"I'm you're we've they'll she'd it's DON'T",
    "invalid_utf8.txt": b"ok \xff\xfe \xc3( \xed\xa0\x80 end",
    "code.txt": b"def f(x):\n    return x ** 2  # square\n\n{\"a\": [1, 2]}",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-model", default=os.environ.get("LLMCLI_TEST_MODEL_DIR", "/work/models")
                        + "/smollm2.gguf")
    args = parser.parse_args()
    gguf_dir, text_dir = HERE / "seeds" / "gguf", HERE / "seeds" / "tokenizer"
    gguf_dir.mkdir(parents=True, exist_ok=True)
    text_dir.mkdir(parents=True, exist_ok=True)
    seeds = {"llama_tiny.gguf": small_llama(), "gemma3_tiny.gguf": small_gemma3(),
             "every_value_type.gguf": every_value_type()}
    if os.path.exists(args.real_model):
        seeds["smollm2_metadata_300_tokens.gguf"] = shrunk_real_metadata(args.real_model)
        with open(args.real_model, "rb") as f:
            seeds["smollm2_first_64k.gguf"] = f.read(64 * 1024)
    for name, data in seeds.items():
        (gguf_dir / name).write_bytes(data)
        print(f"{gguf_dir / name}: {len(data)} bytes")
    for name, data in TEXTS.items():
        (text_dir / name).write_bytes(data)


if __name__ == "__main__":
    main()
