"""Plain NumPy references for the ops kernels (llmcli._kernels), written from the formulas.

Used by the kernel tests and by the NumPy reference forward. Each function returns a
new array and computes in the dtype of its input: pass float64 arrays for a reference
tighter than the float32 kernels.
"""
import numpy as np


def rmsnorm(x, w, eps):
    """x / sqrt(mean(x**2) + eps) * w over the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, n_heads, head_dim, base, neox):
    """Rotary embedding of x [n_tok, n_heads * head_dim] at positions pos [n_tok].

    Pair i of each head turns by pos * base**(-2i / head_dim); the pair is
    (x[i], x[i + head_dim/2]) when neox, else (x[2i], x[2i+1])."""
    half = head_dim // 2
    inv_freq = float(base) ** (-2.0 * np.arange(half) / head_dim)
    angles = np.asarray(pos, dtype=np.float64)[:, None] * inv_freq  # [n_tok, half]
    cos = np.cos(angles)[:, None, :].astype(x.dtype)
    sin = np.sin(angles)[:, None, :].astype(x.dtype)

    heads = x.reshape(len(x), n_heads, head_dim)
    first = heads[..., :half] if neox else heads[..., 0::2]
    second = heads[..., half:] if neox else heads[..., 1::2]
    rotated = np.empty_like(heads)
    if neox:
        rotated[..., :half] = first * cos - second * sin
        rotated[..., half:] = first * sin + second * cos
    else:
        rotated[..., 0::2] = first * cos - second * sin
        rotated[..., 1::2] = first * sin + second * cos
    return rotated.reshape(x.shape)


def softmax(x):
    """Softmax over the last axis, max-subtracted."""
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def silu(x):
    # x * sigmoid(x), with sigmoid written through tanh so no exp can overflow
    return x * 0.5 * (1.0 + np.tanh(0.5 * x))


def gelu_tanh(x):
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def swiglu(gate, up):
    return silu(gate) * up


def geglu_tanh(gate, up):
    return gelu_tanh(gate) * up


def attention_mask(q_pos, n_visible, window):
    """Boolean [n_tok, n_visible]: query at position p sees row j iff j <= p and, when
    window > 0, p - j < window."""
    p = np.asarray(q_pos)[:, None]
    j = np.arange(n_visible)[None, :]
    mask = j <= p
    if window > 0:
        mask &= p - j < window
    return mask


def attention(q, k_cache, v_cache, q_pos, n_heads, n_kv_heads, head_dim, scale, window):
    """Causal grouped-query attention over the cache.

    q [n_tok, n_heads * head_dim], caches [n_ctx, n_kv_heads * head_dim], q_pos [n_tok].
    Returns (out [n_tok, n_heads * head_dim], probs [n_heads, n_tok, max(q_pos) + 1])."""
    n_tok = len(q)
    n_visible = int(np.max(q_pos)) + 1
    group = n_heads // n_kv_heads
    queries = q.reshape(n_tok, n_heads, head_dim)
    keys = k_cache[:n_visible].reshape(n_visible, n_kv_heads, head_dim)
    values = v_cache[:n_visible].reshape(n_visible, n_kv_heads, head_dim)
    mask = attention_mask(q_pos, n_visible, window)

    out = np.empty_like(queries)
    probs = np.empty((n_heads, n_tok, n_visible), dtype=q.dtype)
    for h in range(n_heads):
        kv = h // group
        scores = queries[:, h, :] @ keys[:, kv, :].T * scale
        probs[h] = softmax(np.where(mask, scores, -np.inf))
        out[:, h, :] = probs[h] @ values[:, kv, :]
    return out.reshape(n_tok, n_heads * head_dim), probs
