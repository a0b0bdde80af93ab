"""The ops kernels inside a real model: the float NumPy reference forward
(llmcli.reference, dequantized weights, every op from llmcli.ops_ref) run twice, once
as is and once with its rmsnorm, rope, gated activation and attention replaced by the
kernels. Everything else being equal, the logits may differ only by float32 rounding
carried through the layers: measured <= 1.3e-4 over 700 tokens on both models; the
budget is 1e-3. Gemma 3's prompt is longer than its 512-token sliding window."""
import numpy as np
import pytest

from llmcli import _kernels as K
from llmcli import reference
from llmcli.gguf import open_gguf
from llmcli.reference import load_reference
from llmcli.tokenizer import Tokenizer

F32 = np.float32
LOGIT_BUDGET = 1e-3


def _f32(a):
    return np.ascontiguousarray(a, dtype=F32)


def kernel_rmsnorm(x, w, eps):
    x = _f32(x)
    out = np.empty_like(x)
    K.rmsnorm(x, _f32(w), eps, out)
    return out


def kernel_rope(x, pos, n_heads, head_dim, base, neox):
    x = _f32(x).copy()
    K.rope(x, np.asarray(pos, np.int32), n_heads, head_dim, base, neox)
    return x


def kernel_swiglu(gate, up):
    out = np.empty_like(_f32(gate))
    K.swiglu(_f32(gate), _f32(up), out)
    return out


def kernel_geglu_tanh(gate, up):
    out = np.empty_like(_f32(gate))
    K.geglu_tanh(_f32(gate), _f32(up), out)
    return out


def kernel_attention(q, k_cache, v_cache, pos, n_heads, n_kv_heads, head_dim, scale, window):
    q = _f32(q)
    out = np.empty_like(q)
    K.attention(q, _f32(k_cache), _f32(v_cache), np.asarray(pos, np.int32), n_heads,
                n_kv_heads, head_dim, scale, window, out)
    return out, None


def prompt_ids(path, n_tokens):
    tokenizer = Tokenizer.from_metadata(open_gguf(path).metadata)
    text = open(reference.__file__, encoding="utf-8").read() * 4  # prose and code
    ids = tokenizer.encode(text)[:n_tokens]
    assert len(ids) == n_tokens
    return ids


@pytest.mark.parametrize("model, n_tokens", [("smollm2", 160), ("gemma3", 530)])
def test_kernels_in_float_forward_match_numpy_ops(request, monkeypatch, model, n_tokens):
    path = request.getfixturevalue(f"{model}_path")
    ids = prompt_ids(path, n_tokens)
    model = load_reference(path, n_ctx=n_tokens)
    expected = model.logits(ids)

    # the forward looks these names up in its module at each call
    for name, kernel in [("rmsnorm", kernel_rmsnorm), ("rope", kernel_rope),
                         ("swiglu", kernel_swiglu), ("geglu_tanh", kernel_geglu_tanh),
                         ("attention", kernel_attention)]:
        monkeypatch.setattr(reference, name, kernel)
    got = model.logits(ids)
    assert np.abs(got - expected).max() <= LOGIT_BUDGET

    # the last positions again, one decode step at a time (n_tok = 1 attention calls)
    model.reset()
    model.eval(ids[:-3])
    steps = np.stack([model.eval([i]) for i in ids[-3:]])
    assert np.abs(steps - expected[-3:]).max() <= LOGIT_BUDGET
