"""Tiny but complete GGUF models (a few hundred KB) that load and generate, and hostile
variants of them: any metadata key or tensor can be replaced or dropped.

    tiny_llama(path)                                   # valid llama: byte-level BPE, ChatML
    tiny_llama(path, metadata={"llama.block_count": 0})            # one key changed
    tiny_llama(path, metadata={"tokenizer.ggml.bos_token_id": DROP})
    tiny_llama(path, tensors={"blk.1.ffn_down.weight": DROP})
    tiny_llama(path, emit="\\x1b[2J")   # greedy decoding writes these bytes at every step
    tiny_gemma3(path)                                  # valid gemma3: SentencePiece BPE

Written from the GGUF and GPT-2 specs with tests/gguf_writer.py; nothing from llmcli.
Shapes are given as NumPy arrays (rows, row length); the writer stores them in ggml order.
"""
import numpy as np

from gguf_writer import GGUFWriter, Typed, VT

DROP = object()   # an override that removes the key or the tensor

CONTROL, NORMAL, BYTE = 3, 1, 6
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
MERGES = [("h", "e"), ("Ġ", "t"), ("t", "h")]

# (n_layers, n_embd, n_heads, n_kv_heads, n_ff, n_ctx)
LLAMA_DIMS = (2, 64, 4, 2, 128, 512)


def gpt2_byte_chars():
    """GPT-2's byte -> char map: printable Latin-1 bytes stand for themselves, the other
    68 bytes for U+0100 onwards, in byte order."""
    printable = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(0x100 + extra))
            extra += 1
    return chars


BYTE_CHARS = gpt2_byte_chars()


def byte_level(data):
    """Bytes as a byte-level BPE token string."""
    return "".join(BYTE_CHARS[b] for b in data)


def llama_vocab(extra=()):
    """(tokens, token types, merges): 3 control tokens, the 256 byte tokens, the merged
    tokens, then `extra` token strings (already in byte-level form)."""
    tokens = SPECIALS + BYTE_CHARS + [a + b for a, b in MERGES] + list(extra)
    types = [CONTROL] * len(SPECIALS) + [NORMAL] * (len(tokens) - len(SPECIALS))
    return tokens, np.array(types, np.int32), [f"{a} {b}" for a, b in MERGES]


def llama_metadata(tokens, types, merges, dims=LLAMA_DIMS, template=CHATML):
    n_layers, n_embd, n_heads, n_kv_heads, n_ff, n_ctx = dims
    metadata = {
        "general.architecture": "llama",
        "general.name": "tiny llama",
        "llama.block_count": Typed(VT.UINT32, n_layers),
        "llama.context_length": Typed(VT.UINT32, n_ctx),
        "llama.embedding_length": Typed(VT.UINT32, n_embd),
        "llama.feed_forward_length": Typed(VT.UINT32, n_ff),
        "llama.attention.head_count": Typed(VT.UINT32, n_heads),
        "llama.attention.head_count_kv": Typed(VT.UINT32, n_kv_heads),
        "llama.rope.freq_base": 10000.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.vocab_size": Typed(VT.UINT32, len(tokens)),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.tokens": list(tokens),
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": list(merges),
        "tokenizer.ggml.bos_token_id": Typed(VT.UINT32, 1),
        "tokenizer.ggml.eos_token_id": Typed(VT.UINT32, 2),
        "tokenizer.ggml.add_bos_token": False,
    }
    if template is not None:
        metadata["tokenizer.chat_template"] = template
    return metadata


def llama_tensors(n_vocab, dims=LLAMA_DIMS, emit_id=None, seed=0):
    """Random small weights; with emit_id, weights under which every position's logits
    peak at emit_id (attention and FFN outputs are zero, every embedding is all ones,
    and only output row emit_id is non-zero)."""
    n_layers, n_embd, n_heads, n_kv_heads, n_ff, _ = dims
    head_dim = n_embd // n_heads
    rng = np.random.default_rng(seed)

    def matrix(rows, cols, zero=False):
        if zero:
            return np.zeros((rows, cols), np.float32)
        return (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)

    ones = np.ones(n_embd, np.float32)
    forced = emit_id is not None
    tensors = {"token_embd.weight": np.ones((n_vocab, n_embd), np.float32) if forced
               else matrix(n_vocab, n_embd)}
    for i in range(n_layers):
        tensors.update({
            f"blk.{i}.attn_norm.weight": ones,
            f"blk.{i}.attn_q.weight": matrix(n_heads * head_dim, n_embd),
            f"blk.{i}.attn_k.weight": matrix(n_kv_heads * head_dim, n_embd),
            f"blk.{i}.attn_v.weight": matrix(n_kv_heads * head_dim, n_embd),
            f"blk.{i}.attn_output.weight": matrix(n_embd, n_heads * head_dim, zero=forced),
            f"blk.{i}.ffn_norm.weight": ones,
            f"blk.{i}.ffn_gate.weight": matrix(n_ff, n_embd),
            f"blk.{i}.ffn_up.weight": matrix(n_ff, n_embd),
            f"blk.{i}.ffn_down.weight": matrix(n_embd, n_ff, zero=forced),
        })
    tensors["output_norm.weight"] = ones
    if forced:
        output = np.zeros((n_vocab, n_embd), np.float32)
        output[emit_id] = 10.0 / n_embd   # logit 10 for emit_id, 0 for every other token
        tensors["output.weight"] = output
    return tensors


def tiny_llama(path=None, *, metadata=None, tensors=None, emit=None, dims=LLAMA_DIMS,
               template=CHATML, seed=0, alignment=None, reverse_tensor_infos=False):
    """A valid tiny llama model with overrides; `emit` (bytes or str) becomes one extra
    token that greedy decoding produces at every step. Returns the path, or the bytes
    when `path` is None. `reverse_tensor_infos` lists the tensors last-first (their
    offsets out of order; the data is where it always is)."""
    emit_bytes = emit.encode("utf-8") if isinstance(emit, str) else emit
    tokens, types, merges = llama_vocab([byte_level(emit_bytes)] if emit_bytes else ())
    emit_id = len(tokens) - 1 if emit_bytes else None
    return write_model(llama_metadata(tokens, types, merges, dims, template),
                       llama_tensors(len(tokens), dims, emit_id, seed),
                       metadata, tensors, path, alignment, reverse_tensor_infos)


# --- gemma3 with a SentencePiece-style vocabulary -----------------------------------------

GEMMA_DIMS = (2, 64, 2, 1, 128, 512)   # head_dim 64 from attention.key_length
GEMMA_PIECES = ["▁the", "▁a", "▁cat", "at", "▁", "th", "he", "ca"]


def gemma3_vocab():
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    types = [CONTROL, CONTROL, CONTROL, 2, CONTROL, CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    tokens += GEMMA_PIECES + list("abcdefghijklmnopqrstuvwxyz")
    types += [NORMAL] * (len(GEMMA_PIECES) + 26)
    scores = np.zeros(len(tokens), np.float32)
    scores[262:] = -np.arange(len(tokens) - 262, dtype=np.float32)
    return tokens, np.array(types, np.int32), scores


def tiny_gemma3(path=None, *, metadata=None, tensors=None, seed=0):
    n_layers, n_embd, n_heads, n_kv_heads, n_ff, n_ctx = GEMMA_DIMS
    head_dim = 64
    tokens, types, scores = gemma3_vocab()
    meta = {
        "general.architecture": "gemma3",
        "gemma3.block_count": Typed(VT.UINT32, n_layers),
        "gemma3.context_length": Typed(VT.UINT32, n_ctx),
        "gemma3.embedding_length": Typed(VT.UINT32, n_embd),
        "gemma3.feed_forward_length": Typed(VT.UINT32, n_ff),
        "gemma3.attention.head_count": Typed(VT.UINT32, n_heads),
        "gemma3.attention.head_count_kv": Typed(VT.UINT32, n_kv_heads),
        "gemma3.attention.key_length": Typed(VT.UINT32, head_dim),
        "gemma3.attention.value_length": Typed(VT.UINT32, head_dim),
        "gemma3.attention.layer_norm_rms_epsilon": 1e-6,
        "gemma3.attention.sliding_window": Typed(VT.UINT32, 16),
        "gemma3.rope.freq_base": 1e6,
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": Typed(VT.UINT32, 2),
        "tokenizer.ggml.eos_token_id": Typed(VT.UINT32, 1),
        "tokenizer.ggml.unknown_token_id": Typed(VT.UINT32, 3),
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_space_prefix": False,
    }
    rng = np.random.default_rng(seed)

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)

    ones = np.ones(n_embd, np.float32)
    weights = {"token_embd.weight": matrix(len(tokens), n_embd)}
    for i in range(n_layers):
        weights.update({
            f"blk.{i}.attn_norm.weight": ones,
            f"blk.{i}.attn_q.weight": matrix(n_heads * head_dim, n_embd),
            f"blk.{i}.attn_k.weight": matrix(n_kv_heads * head_dim, n_embd),
            f"blk.{i}.attn_v.weight": matrix(n_kv_heads * head_dim, n_embd),
            f"blk.{i}.attn_q_norm.weight": np.ones(head_dim, np.float32),
            f"blk.{i}.attn_k_norm.weight": np.ones(head_dim, np.float32),
            f"blk.{i}.attn_output.weight": matrix(n_embd, n_heads * head_dim),
            f"blk.{i}.post_attention_norm.weight": ones,
            f"blk.{i}.ffn_norm.weight": ones,
            f"blk.{i}.ffn_gate.weight": matrix(n_ff, n_embd),
            f"blk.{i}.ffn_up.weight": matrix(n_ff, n_embd),
            f"blk.{i}.ffn_down.weight": matrix(n_embd, n_ff),
            f"blk.{i}.post_ffw_norm.weight": ones,
        })
    weights["output_norm.weight"] = ones
    return write_model(meta, weights, metadata, tensors, path)


# --- writing --------------------------------------------------------------------------------

def write_model(metadata, tensors, metadata_overrides=None, tensor_overrides=None, path=None,
                alignment=None, reverse_tensor_infos=False):
    """Apply overrides (value, or DROP) and write. A tensor override is an array, or
    (raw bytes, ggml type, dims in ggml order)."""
    metadata = _overridden(metadata, metadata_overrides)
    tensors = _overridden(tensors, tensor_overrides)
    writer = GGUFWriter(alignment=alignment, reverse_tensor_infos=reverse_tensor_infos)
    for key, value in metadata.items():
        writer.add(key, value)
    for name, data in tensors.items():
        if isinstance(data, tuple):
            raw, ggml_type, dims = data
            writer.add_tensor(name, raw, ggml_type=ggml_type, dims=dims)
        else:
            writer.add_tensor(name, data)
    return writer.to_bytes() if path is None else writer.write(path)


def _overridden(items, overrides):
    items = dict(items)
    for key, value in (overrides or {}).items():
        if value is DROP:
            items.pop(key, None)
        else:
            items[key] = value
    return items
