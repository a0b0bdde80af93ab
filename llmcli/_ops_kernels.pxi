# Wrappers for csrc/ops.h: rmsnorm, rope, softmax, gated activations, attention.
# Included by _kernels.pyx. Every buffer is float32 (positions int32) and C-contiguous;
# the typed memoryviews reject other dtypes, ranks and layouts with ValueError, and each
# wrapper checks the shapes against each other before releasing the GIL.
import threading

import numpy as np
from libc.stdint cimport int32_t, int64_t

cdef extern from "ops.h" nogil:
    int OPS_MAX_HEAD_DIM
    void ops_rmsnorm(const float *x, const float *w, float *out,
                     int64_t n_rows, int64_t dim, float eps)
    void ops_rope(float *x, const int32_t *pos, int64_t n_tok, int n_heads, int head_dim,
                  double base, int neox)
    void ops_softmax(float *x, int64_t n_rows, int64_t dim)
    void ops_swiglu(const float *gate, const float *up, float *out, int64_t n)
    void ops_geglu_tanh(const float *gate, const float *up, float *out, int64_t n)
    void ops_attention(const float *q, const float *k_cache, const float *v_cache,
                       const int32_t *q_pos, int64_t n_tok, int n_heads, int n_kv_heads,
                       int head_dim, float scale, int window, float *out,
                       float *probs, int64_t probs_len, float *scratch, int64_t scratch_len)
    int64_t ops_attention_scratch_len(const int32_t *q_pos, int64_t n_tok, int n_heads,
                                      int n_kv_heads, int head_dim, int window)
    const char *ops_simd_path()
    const char *ops_set_simd(int enabled)

MAX_HEAD_DIM = OPS_MAX_HEAD_DIM


def ops_path():
    """The vector path the ops kernels use: "avx2" or "scalar"."""
    return ops_simd_path().decode()


def set_ops_simd(bint enabled):
    """Force the portable scalar path (False) or use the best the CPU has (True).
    Returns the path now in use. For tests and benchmarks; not thread-safe."""
    return ops_set_simd(enabled).decode()


cdef _check_shape(str name, tuple got, tuple want):
    if got != want:
        raise ValueError(f"{name} has shape {got}, expected {want}")


cdef _check_head_layout(int n_heads, int head_dim):
    if n_heads < 1:
        raise ValueError(f"n_heads must be >= 1, got {n_heads}")
    if head_dim < 2 or head_dim > OPS_MAX_HEAD_DIM:
        raise ValueError(f"head_dim must be in [2, {OPS_MAX_HEAD_DIM}], got {head_dim}")


def rmsnorm(const float[:, ::1] x, const float[::1] w, float eps, float[:, ::1] out):
    """out = x / sqrt(mean(x**2, axis=1) + eps) * w, row by row; out may be x.
    x, out: [n, d]; w: [d]. For per-head q/k norms pass x as [n_tok * n_heads, head_dim]."""
    cdef int64_t n = x.shape[0], d = x.shape[1]
    if d < 1:
        raise ValueError("rmsnorm: rows of x are empty")
    _check_shape("rmsnorm: w", (w.shape[0],), (d,))
    _check_shape("rmsnorm: out", (out.shape[0], out.shape[1]), (n, d))
    if n == 0:
        return
    with nogil:
        ops_rmsnorm(&x[0, 0], &w[0], &out[0, 0], n, d, eps)


def rope(float[:, ::1] x, const int32_t[::1] pos, int n_heads, int head_dim, double base,
         bint neox):
    """Rotary position embedding in place. x: [n_tok, n_heads * head_dim]; pos: int32[n_tok].
    neox=False rotates pairs (x[2i], x[2i+1]) (llama GGUFs); neox=True rotates
    (x[i], x[i + head_dim/2]) (gemma3). Pair i turns by pos * base**(-2i/head_dim)."""
    _check_head_layout(n_heads, head_dim)
    if head_dim % 2:
        raise ValueError(f"rope: head_dim must be even, got {head_dim}")
    if not base > 0:
        raise ValueError(f"rope: base must be > 0, got {base}")
    cdef int64_t n_tok = x.shape[0]
    _check_shape("rope: x", (n_tok, x.shape[1]), (n_tok, <int64_t>n_heads * head_dim))
    _check_shape("rope: pos", (pos.shape[0],), (n_tok,))
    if n_tok == 0:
        return
    with nogil:
        ops_rope(&x[0, 0], &pos[0], n_tok, n_heads, head_dim, base, neox)


def softmax(float[:, ::1] x):
    """Row-wise softmax of x [n, d] in place (max-subtracted)."""
    cdef int64_t n = x.shape[0], d = x.shape[1]
    if d < 1:
        raise ValueError("softmax: rows of x are empty")
    if n == 0:
        return
    with nogil:
        ops_softmax(&x[0, 0], n, d)


cdef _check_gated(str name, const float[:, ::1] gate, const float[:, ::1] up, float[:, ::1] out):
    want = (gate.shape[0], gate.shape[1])
    _check_shape(name + ": up", (up.shape[0], up.shape[1]), want)
    _check_shape(name + ": out", (out.shape[0], out.shape[1]), want)


def swiglu(const float[:, ::1] gate, const float[:, ::1] up, float[:, ::1] out):
    """out = silu(gate) * up, all [n, f]; out may be gate or up."""
    _check_gated("swiglu", gate, up, out)
    cdef int64_t size = gate.shape[0] * gate.shape[1]
    if size == 0:
        return
    with nogil:
        ops_swiglu(&gate[0, 0], &up[0, 0], &out[0, 0], size)


def geglu_tanh(const float[:, ::1] gate, const float[:, ::1] up, float[:, ::1] out):
    """out = gelu_tanh(gate) * up, all [n, f] (GELU, tanh approximation); out may alias."""
    _check_gated("geglu_tanh", gate, up, out)
    cdef int64_t size = gate.shape[0] * gate.shape[1]
    if size == 0:
        return
    with nogil:
        ops_geglu_tanh(&gate[0, 0], &up[0, 0], &out[0, 0], size)


cdef int32_t _max_position(const int32_t[::1] q_pos, int64_t n_ctx) except -1:
    """Largest position in q_pos; ValueError if any lies outside the cache."""
    cdef int32_t p, highest = 0
    cdef Py_ssize_t t
    for t in range(q_pos.shape[0]):
        p = q_pos[t]
        if p < 0 or p >= n_ctx:
            raise ValueError(f"attention: q_pos[{t}] = {p} is outside the cache of {n_ctx} rows")
        if p > highest:
            highest = p
    return highest


def attention(const float[:, ::1] q, const float[:, ::1] k_cache, const float[:, ::1] v_cache,
              const int32_t[::1] q_pos, int n_heads, int n_kv_heads, int head_dim,
              float scale, int window, float[:, ::1] out, float[:, :, ::1] probs=None):
    """Causal grouped-query attention of the queries q over the KV cache.

    q, out: [n_tok, n_heads * head_dim]; k_cache, v_cache: [n_ctx, n_kv_heads * head_dim];
    q_pos: int32[n_tok] absolute positions (the cache must hold rows 0..max(q_pos)).
    Query head h reads KV head h // (n_heads // n_kv_heads). The query at position p sees
    rows j <= p, and with window > 0 only those with p - j < window (window rows,
    itself included). probs, if given: [n_heads, n_tok, L] with L > max(q_pos), receives
    the attention weights (zero where masked). out must not overlap the caches."""
    _check_head_layout(n_heads, head_dim)
    if n_kv_heads < 1 or n_heads % n_kv_heads:
        raise ValueError(f"attention: n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
    if window < 0:
        raise ValueError(f"attention: window must be >= 0 (0 = none), got {window}")
    # widths in 64 bits: n_heads * head_dim in C int could wrap and pass the check
    cdef int64_t n_tok = q.shape[0], n_ctx = k_cache.shape[0]
    cdef int64_t q_width = <int64_t>n_heads * head_dim, kv_width = <int64_t>n_kv_heads * head_dim
    _check_shape("attention: q", (n_tok, q.shape[1]), (n_tok, q_width))
    _check_shape("attention: k_cache", (n_ctx, k_cache.shape[1]), (n_ctx, kv_width))
    _check_shape("attention: v_cache", (v_cache.shape[0], v_cache.shape[1]), (n_ctx, kv_width))
    _check_shape("attention: q_pos", (q_pos.shape[0],), (n_tok,))
    _check_shape("attention: out", (out.shape[0], out.shape[1]), (n_tok, q_width))
    if n_tok == 0:
        return
    cdef int32_t highest = _max_position(q_pos, n_ctx)
    if probs is not None:
        if probs.shape[0] != n_heads or probs.shape[1] != n_tok or probs.shape[2] <= highest:
            raise ValueError(f"attention: probs has shape {tuple(probs.shape)[:3]}, expected "
                             f"({n_heads}, {n_tok}, L) with L > {highest}")
        with nogil:
            ops_attention(&q[0, 0], &k_cache[0, 0], &v_cache[0, 0], &q_pos[0], n_tok,
                          n_heads, n_kv_heads, head_dim, scale, window, &out[0, 0],
                          &probs[0, 0, 0], probs.shape[2], NULL, 0)
        return
    cdef int64_t need = ops_attention_scratch_len(&q_pos[0], n_tok, n_heads, n_kv_heads,
                                                  head_dim, window)
    if need == 0:
        with nogil:
            ops_attention(&q[0, 0], &k_cache[0, 0], &v_cache[0, 0], &q_pos[0], n_tok,
                          n_heads, n_kv_heads, head_dim, scale, window, &out[0, 0],
                          NULL, 0, NULL, 0)
        return
    cdef float[::1] scratch
    with _scratch_lock:  # one shared scratch: calls from several Python threads take turns
        scratch = _attention_scratch(need)
        with nogil:
            ops_attention(&q[0, 0], &k_cache[0, 0], &v_cache[0, 0], &q_pos[0], n_tok,
                          n_heads, n_kv_heads, head_dim, scale, window, &out[0, 0],
                          NULL, 0, &scratch[0], scratch.shape[0])


# Work space of the attention calls split over more threads than they have tiles (decode
# steps): grown on demand, so a steady decode loop allocates nothing.
_scratch = np.empty(0, dtype=np.float32)
_scratch_lock = threading.Lock()


cdef _attention_scratch(int64_t n):
    global _scratch
    if _scratch.shape[0] < n:
        _scratch = np.empty(n, dtype=np.float32)
    return _scratch
