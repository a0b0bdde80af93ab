"""Tiny random-weight GGUF models (llama and gemma3 layouts) for tests that need no real
model: written with gguf_writer (written from the spec), quantized with the `gguf`
package when a block type is asked for.

    path = write_tiny_model(tmp_path / "m.gguf", "gemma3", weight_type="Q8_0")
    path = write_tiny_model(..., drop={"blk.0.ffn_up.weight"}, replace={name: (array, type)})
"""
import numpy as np

from gguf_writer import GGUFWriter

# Small but with every structural feature: grouped-query heads, a head size independent
# of the width (gemma3), sliding and global layers (gemma3: layer 5 global).
TINY = {
    "llama": dict(n_layers=2, n_embd=64, n_ff=96, n_heads=4, n_kv_heads=2, head_dim=16,
                  n_vocab=96, n_ctx=64, rope_base=10000.0, eps=1e-5),
    "gemma3": dict(n_layers=6, n_embd=64, n_ff=96, n_heads=2, n_kv_heads=1, head_dim=32,
                   n_vocab=96, n_ctx=64, rope_base=1e6, eps=1e-6, window=5),
}


def tiny_metadata(arch, **overrides):
    h = {**TINY[arch], **overrides}
    meta = {
        "general.architecture": arch,
        f"{arch}.block_count": h["n_layers"],
        f"{arch}.context_length": h["n_ctx"],
        f"{arch}.embedding_length": h["n_embd"],
        f"{arch}.feed_forward_length": h["n_ff"],
        f"{arch}.attention.head_count": h["n_heads"],
        f"{arch}.attention.head_count_kv": h["n_kv_heads"],
        f"{arch}.rope.freq_base": h["rope_base"],
        f"{arch}.attention.layer_norm_rms_epsilon": h["eps"],
    }
    if arch == "llama":
        meta[f"{arch}.vocab_size"] = h["n_vocab"]
        meta[f"{arch}.rope.dimension_count"] = h["head_dim"]
    else:
        # like the real gemma3 file: no vocab_size key, the token list gives it
        meta["tokenizer.ggml.tokens"] = [f"t{i}" for i in range(h["n_vocab"])]
        meta[f"{arch}.attention.key_length"] = h["head_dim"]
        meta[f"{arch}.attention.value_length"] = h["head_dim"]
        meta[f"{arch}.attention.sliding_window"] = h["window"]
    return meta


def tiny_tensors(arch, seed=0, tied=True, **overrides):
    """name -> float32 array (NumPy shape = reversed ggml dims: [rows, row_length])."""
    h = {**TINY[arch], **overrides}
    rng = np.random.default_rng(seed)
    d, f, hd = h["n_embd"], h["n_ff"], h["head_dim"]
    nq, nkv = h["n_heads"] * hd, h["n_kv_heads"] * hd

    def matrix(n_out, n_in):
        return (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    tensors = {"token_embd.weight": rng.standard_normal((h["n_vocab"], d)).astype(np.float32),
               "output_norm.weight": norm(d)}
    if not tied:
        tensors["output.weight"] = matrix(h["n_vocab"], d)
    for i in range(h["n_layers"]):
        layer = {"attn_norm": norm(d), "attn_q": matrix(nq, d), "attn_k": matrix(nkv, d),
                 "attn_v": matrix(nkv, d), "attn_output": matrix(d, nq), "ffn_norm": norm(d),
                 "ffn_gate": matrix(f, d), "ffn_up": matrix(f, d), "ffn_down": matrix(d, f)}
        if arch == "gemma3":
            layer.update({"attn_q_norm": norm(hd), "attn_k_norm": norm(hd),
                          "post_attention_norm": norm(d), "post_ffw_norm": norm(d)})
        tensors.update({f"blk.{i}.{name}.weight": value for name, value in layer.items()})
    return tensors


def write_tiny_model(path, arch, weight_type="F32", seed=0, tied=True, drop=(), replace=None,
                     extra=None, metadata=None, **overrides):
    """Write a tiny model; matrices in weight_type (F32, F16 or a type gguf-py quantizes),
    norms F32. drop: tensor names to leave out; replace: name -> (array or raw bytes,
    ggml type number, ggml dims); extra: additional name -> float32 array; metadata:
    key -> value overriding (None deletes) the generated metadata."""
    meta = tiny_metadata(arch, **overrides)
    for key, value in (metadata or {}).items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    writer = GGUFWriter()
    for key, value in meta.items():
        writer.add(key, value)
    tensors = tiny_tensors(arch, seed=seed, tied=tied, **overrides)
    tensors.update(extra or {})
    for name, array in tensors.items():
        if name in drop:
            continue
        if replace and name in replace:
            data, ggml_type, dims = replace[name]
            writer.add_tensor(name, data, ggml_type=ggml_type, dims=dims)
        elif array.ndim == 2 and weight_type != "F32":
            _add_quantized(writer, name, array, weight_type)
        else:
            writer.add_tensor(name, array)
    writer.write(path)
    return path


def _add_quantized(writer, name, array, weight_type):
    from gguf import GGMLQuantizationType, quants

    qtype = GGMLQuantizationType[weight_type]
    if qtype == GGMLQuantizationType.F16:
        writer.add_tensor(name, array.astype(np.float16))
        return
    blocks = quants.quantize(array, qtype)
    writer.add_tensor(name, blocks.tobytes(), ggml_type=int(qtype),
                      dims=(array.shape[1], array.shape[0]))
