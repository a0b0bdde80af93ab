"""The kernel forward (llmcli.model) and its inputs (config.py, weights.py).

Tiny random-weight GGUF files (tests/tiny_models.py) check the plumbing of both
architectures against the NumPy reference forward (llmcli.reference, itself checked
against transformers in test_reference.py) and the KV cache against full recomputes;
malformed files check the errors. Real-model tests against the goldens made by
transformers are in test_model_golden.py.
"""
import math

import numpy as np
import pytest

from llmcli.config import config_from_metadata
from llmcli.errors import ContextOverflowError, InputError, ModelError
from llmcli.gguf import open_gguf
import llmcli.model as model_module
from llmcli.model import Model
from llmcli.reference import ReferenceModel
from llmcli.weights import load_weights
from tiny_models import TINY, tiny_metadata, tiny_tensors, write_tiny_model

ARCHS = ["llama", "gemma3"]


def tiny(tmp_path, arch, n_ctx=None, n_batch=512, **kwargs):
    """(Model, ReferenceModel) of a freshly written tiny model."""
    path = write_tiny_model(tmp_path / f"{arch}.gguf", arch, **kwargs)
    gguf_file = open_gguf(path)
    config = config_from_metadata(gguf_file.metadata)
    weights = load_weights(gguf_file, config)
    return (Model(config, weights, n_ctx=n_ctx, n_batch=n_batch),
            ReferenceModel(config, weights, n_ctx=n_ctx))


def token_ids(n, seed=1, n_vocab=96):
    return np.random.default_rng(seed).integers(0, n_vocab, n).tolist()


# ---- config ------------------------------------------------------------------------

def test_llama_config_from_metadata():
    config = config_from_metadata(tiny_metadata("llama"))
    h = TINY["llama"]
    assert (config.arch, config.n_layers, config.n_embd, config.n_ff) == \
        ("llama", h["n_layers"], h["n_embd"], h["n_ff"])
    assert (config.n_heads, config.n_kv_heads, config.head_dim) == (4, 2, 16)
    assert config.n_vocab == h["n_vocab"] and config.n_ctx_train == h["n_ctx"]
    assert config.rope_neox is False and config.rope_base == 10000.0
    assert config.attn_scale == pytest.approx(1 / 4)
    assert config.embd_scale == 1.0 and config.ffn_act == "silu"
    assert not config.qk_norm and not config.post_norms
    assert config.sliding_layers == (False, False) and config.layer_window(0) == 0


def test_gemma3_config_from_metadata():
    config = config_from_metadata(tiny_metadata("gemma3"))
    assert config.arch == "gemma3" and config.n_vocab == 96  # from the token list
    assert config.head_dim == 32 and config.n_q == 64 and config.n_kv == 32
    assert config.rope_neox is True and config.ffn_act == "gelu_tanh"
    assert config.qk_norm and config.post_norms
    assert config.embd_scale == pytest.approx(math.sqrt(64))
    assert config.attn_scale == pytest.approx(1 / math.sqrt(32))
    # every 6th layer is global, with the file's RoPE base; the others slide with base 1e4
    assert config.sliding_layers == (True, True, True, True, True, False)
    assert [config.layer_window(i) for i in (0, 5)] == [5, 0]
    assert [config.layer_rope_base(i) for i in (0, 5)] == [10000.0, 1e6]


def test_gemma3_without_sliding_window_is_all_global():
    meta = tiny_metadata("gemma3")
    del meta["gemma3.attention.sliding_window"]
    assert not any(config_from_metadata(meta).sliding_layers)


@pytest.mark.parametrize("change, message", [
    ({"general.architecture": "gpt2"}, "unsupported architecture 'gpt2'"),
    ({"llama.block_count": None}, "missing metadata key llama.block_count"),
    ({"llama.block_count": "2"}, "llama.block_count should be int"),
    ({"llama.embedding_length": 0}, "llama.embedding_length must be positive"),
    ({"llama.attention.head_count_kv": 3}, "not a multiple of llama.attention.head_count_kv"),
    ({"llama.attention.layer_norm_rms_epsilon": float("nan")}, "is not finite"),
    ({"llama.rope.dimension_count": 8}, "partial RoPE"),
    ({"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0}, "RoPE scaling"),
    ({"llama.expert_count": 8}, "mixture-of-experts"),
    ({"llama.attention.key_length": 15}, "head size 15"),
])
def test_config_errors_name_the_key(change, message):
    meta = tiny_metadata("llama")
    for key, value in change.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    with pytest.raises(ModelError, match=message):
        config_from_metadata(meta)


def test_real_model_configs(smollm2_path, gemma3_path):
    """The facts of REFERENCE_NOTES.md, read through our config."""
    smol = config_from_metadata(open_gguf(smollm2_path).metadata)
    assert (smol.arch, smol.n_layers, smol.n_embd, smol.n_heads, smol.n_kv_heads,
            smol.head_dim, smol.n_ff, smol.n_vocab) == ("llama", 30, 576, 9, 3, 64, 1536, 49152)
    assert smol.rope_base == 1e5 and not smol.rope_neox
    gemma = config_from_metadata(open_gguf(gemma3_path).metadata)
    assert (gemma.arch, gemma.n_layers, gemma.n_embd, gemma.n_heads, gemma.n_kv_heads,
            gemma.head_dim, gemma.n_ff, gemma.n_vocab) == ("gemma3", 18, 640, 4, 1, 256, 2048,
                                                           262144)
    assert [i for i in range(18) if not gemma.sliding_layers[i]] == [5, 11, 17]
    assert gemma.sliding_window == 512 and gemma.attn_scale == 1 / 16
    assert gemma.embd_scale == pytest.approx(math.sqrt(640))
    assert gemma.final_logit_softcap == 0.0


# ---- weights -----------------------------------------------------------------------

def load_tiny_weights(path):
    gguf_file = open_gguf(path)
    config = config_from_metadata(gguf_file.metadata)
    return gguf_file, load_weights(gguf_file, config)


@pytest.mark.parametrize("arch", ARCHS)
def test_weights_are_views_of_the_file(tmp_path, arch):
    gguf_file, weights = load_tiny_weights(
        write_tiny_model(tmp_path / "m.gguf", arch, weight_type="Q8_0"))
    wq = weights.layers[0].wq
    assert wq.data.dtype == np.uint8 and wq.data.shape == (wq.shape[1], wq.shape[0] // 32 * 34)
    assert np.shares_memory(wq.data, gguf_file.tensor_data("blk.0.attn_q.weight"))
    norm = weights.layers[0].attn_norm
    assert norm.data.dtype == np.float32
    assert np.shares_memory(norm.data, gguf_file.tensor_data("blk.0.attn_norm.weight"))
    assert (weights.layers[0].q_norm is None) == (arch == "llama")


def test_missing_output_means_tied_embeddings(tmp_path):
    _, tied = load_tiny_weights(write_tiny_model(tmp_path / "a.gguf", "llama", tied=True))
    assert tied.tied_output and tied.output is tied.token_embd
    _, separate = load_tiny_weights(write_tiny_model(tmp_path / "b.gguf", "llama", tied=False))
    assert not separate.tied_output and separate.output.name == "output.weight"


def _f32(shape):
    return np.zeros(shape, np.float32)


@pytest.mark.parametrize("arch, kwargs, message", [
    ("llama", {"drop": {"blk.1.ffn_up.weight"}}, "missing tensor 'blk.1.ffn_up.weight'"),
    ("gemma3", {"drop": {"blk.3.attn_k_norm.weight"}}, "missing tensor 'blk.3.attn_k_norm"),
    ("llama", {"replace": {"blk.1.attn_k.weight": (_f32((16, 64)), 0, (64, 16))}},
     r"tensor 'blk.1.attn_k.weight' has shape \[64, 16\], expected \[64, 32\]"),
    ("llama", {"replace": {"token_embd.weight": (_f32((95, 64)), 0, (64, 95))}},
     "tensor 'token_embd.weight' has shape"),
    ("gemma3", {"replace": {"blk.0.post_ffw_norm.weight": (np.zeros(64, np.float16), 1, (64,))}},
     "tensor 'blk.0.post_ffw_norm.weight' is F16, expected F32"),
    ("llama", {"replace": {"blk.0.ffn_down.weight": (bytes(64 * 3 * 18), 20, (96, 64))}},
     "tensor 'blk.0.ffn_down.weight' has unsupported type IQ4_NL"),
    ("llama", {"extra": {"rope_freqs.weight": _f32(8)}}, "unexpected tensor 'rope_freqs.weight'"),
])
def test_broken_tensors_raise_model_error_naming_the_tensor(tmp_path, arch, kwargs, message):
    path = write_tiny_model(tmp_path / "m.gguf", arch, **kwargs)
    with pytest.raises(ModelError, match=message):
        load_tiny_weights(path)


# ---- the forward against the NumPy reference -----------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_f32_forward_matches_reference(tmp_path, arch):
    # F32 weights: no quantization anywhere, so only float32 rounding separates the two
    model, reference = tiny(tmp_path, arch)
    ids = token_ids(40)
    ours, ref = model.logits(ids), reference.logits(ids)
    assert ours.shape == (40, 96) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("weight_type", ["F16", "Q8_0", "Q4_1", "Q5_0"])
def test_quantized_forward_close_to_reference(tmp_path, arch, weight_type):
    # the kernels quantize activations to 8 bits for quantized weights (as llama.cpp does):
    # under 1% of the logit range (measured: 0.3-0.8%); F16 weights use float activations
    model, reference = tiny(tmp_path, arch, weight_type=weight_type)
    ids = token_ids(30, seed=2)
    ours, ref = model.logits(ids), reference.logits(ids)
    tolerance = (1e-5 if weight_type == "F16" else 1.5e-2) * np.abs(ref).max()
    np.testing.assert_allclose(ours, ref, atol=tolerance)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("weight_type", ["Q8_0", "Q4_1"])
def test_refined_projections_bring_the_forward_closer(tmp_path, arch, weight_type, monkeypatch):
    # every projection of the layers refined (about 16-bit inputs) against none (8-bit),
    # with a float output matrix so that the layers' inputs are the only 8-bit ones: the
    # error left against the float reference shrinks (decode steps = one-shot prefill with
    # the default refinement is test_decode_steps_equal_full_recompute's job)
    output = tiny_tensors(arch, tied=False)["output.weight"]
    ids = token_ids(30, seed=9)
    errors = {}
    for refine in ((), ("qkv", "wo", "gate_up", "down")):
        monkeypatch.setitem(model_module.REFINED_INPUTS, arch, refine)
        model, reference = tiny(tmp_path, arch, weight_type=weight_type, tied=False,
                                replace={"output.weight": (output, 0, None)})
        errors[refine] = np.abs(model.logits(ids) - reference.logits(ids)).max()
    unrefined, refined = errors[()], errors[("qkv", "wo", "gate_up", "down")]
    assert refined < unrefined / 50, (refined, unrefined)  # measured: 160-280x smaller


def test_unknown_projection_to_refine_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(model_module.REFINED_INPUTS, "llama", ("qkv", "everything"))
    with pytest.raises(ValueError, match="unknown projections to refine: \\['everything'\\]"):
        tiny(tmp_path, "llama")


def test_untied_output_and_last_position_logits(tmp_path):
    model, reference = tiny(tmp_path, "llama", tied=False)
    ids = token_ids(12, seed=3)
    last = model.eval(ids)
    assert last.shape == (96,)
    np.testing.assert_allclose(last, reference.logits(ids)[-1], atol=1e-3)


# ---- the KV cache --------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_decode_steps_equal_full_recompute(tmp_path, arch):
    model, _ = tiny(tmp_path, arch, weight_type="Q8_0")
    ids = token_ids(24, seed=4)
    full = model.logits(ids)
    model.reset()
    model.eval(ids[:10])
    steps = [model.eval([token]) for token in ids[10:]]
    assert model.n_past == 24
    np.testing.assert_allclose(np.stack(steps), full[10:], atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_chunked_prefill_equals_one_shot(tmp_path, arch):
    one_shot, _ = tiny(tmp_path, arch, weight_type="Q5_0")
    chunked, _ = tiny(tmp_path, arch, weight_type="Q5_0", n_batch=7)
    ids = token_ids(33, seed=5)
    np.testing.assert_allclose(chunked.logits(ids), one_shot.logits(ids), atol=1e-4)
    np.testing.assert_allclose(chunked.eval(ids[:3]), one_shot.eval(ids[:3]), atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_truncate_then_eval_equals_fresh_eval(tmp_path, arch):
    model, _ = tiny(tmp_path, arch, weight_type="Q8_0")
    prefix, tail, other = token_ids(12, seed=6), token_ids(9, seed=7), token_ids(9, seed=8)
    fresh = model.logits(prefix + other)[-1]
    model.reset()
    model.eval(prefix + tail)
    model.truncate(len(prefix))
    assert model.n_past == len(prefix)
    np.testing.assert_allclose(model.eval(other), fresh, atol=1e-4)
    with pytest.raises(InputError):
        model.truncate(model.n_past + 1)


def test_context_overflow_and_bad_ids(tmp_path):
    model, _ = tiny(tmp_path, "llama", n_ctx=16)
    model.eval(token_ids(10))
    with pytest.raises(ContextOverflowError, match="10 cached \\+ 7 new tokens exceed"):
        model.eval(token_ids(7))
    assert model.n_past == 10  # nothing was evaluated
    with pytest.raises(InputError, match="token id 96 is outside"):
        model.eval([1, 96])
    with pytest.raises(InputError, match="no tokens"):
        model.eval([])
    with pytest.raises(InputError, match="context length 65"):
        tiny(tmp_path, "llama", n_ctx=65)


# ---- attention capture ---------------------------------------------------------------

def test_captured_attention_matches_reference(tmp_path):
    model, reference = tiny(tmp_path, "gemma3", n_batch=4)
    ids = token_ids(11, seed=9)
    model.eval(ids[:3])
    reference.eval(ids[:3])
    model.eval(ids[3:], capture_attention=True)
    reference.eval(ids[3:], capture_attention=True)
    assert len(model.attention_probs) == 6
    for layer, (ours, ref) in enumerate(zip(model.attention_probs, reference.attention_probs)):
        assert ours.shape == (2, 8, 11)
        np.testing.assert_allclose(ours.sum(axis=-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(ours, ref, atol=1e-4)
        # causal, and sliding layers (window 5) see only the last 5 positions
        for row, pos in enumerate(range(3, 11)):
            assert np.all(ours[:, row, pos + 1:] == 0)
            if layer != 5:
                assert np.all(ours[:, row, :max(0, pos - 4)] == 0)
    model.eval(ids[:1])
    assert model.attention_probs is None


def test_a_decode_step_allocates_only_the_logits_it_returns(smollm2_path):
    """Issue 6: the decode step allocates nothing. The forward runs in buffers made at
    load; what a step may allocate is the logits row it hands back (plus a few small
    Python objects), and nothing may pile up over steps."""
    import tracemalloc

    model = model_module.load(str(smollm2_path), n_ctx=128)
    model.eval(token_ids(8, n_vocab=model.config.n_vocab))
    for token in token_ids(4, seed=2, n_vocab=model.config.n_vocab):  # scratch sized
        model.eval([token])
    row_bytes = model.config.n_vocab * 4
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for token in token_ids(20, seed=3, n_vocab=model.config.n_vocab):
            logits = model.eval([token])
            del logits
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - start <= row_bytes + 2048, peak - start  # measured: row + 1252 bytes
    assert current - start <= 2048, current - start
