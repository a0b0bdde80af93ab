# Wrappers for csrc/ops.h: rmsnorm, rope, softmax, gated activations, attention.
# Included by _kernels.pyx. They follow set_threads and set_kernel_path (_quant_kernels.pxi). Buffers are NumPy arrays, float32 (positions int32), aligned
# and C-contiguous; each wrapper checks them and their shapes against each other, raising
# ValueError, before releasing the GIL. The checks read the array structs directly
# (not typed memoryviews): a decode step makes hundreds of these calls, and this keeps
# each one's overhead to a few hundred nanoseconds.
import threading

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t

cnp.import_array()

cdef extern from "ops.h" nogil:
    enum: OPS_MAX_HEAD_DIM
    enum: OPS_MAX_ROPE_PAIRS
    void ops_rmsnorm(const float *x, const float *w, float *out,
                     int64_t n_rows, int64_t dim, float eps)
    void ops_rope(float *q, int n_q_heads, float *k, int n_k_heads, const int32_t *pos,
                  int64_t n_tok, int head_dim, const double *inv_freq, int neox)
    void ops_rope_frequencies(double base, int head_dim, double *inv_freq)
    void ops_softmax(float *x, int64_t n_rows, int64_t dim)
    void ops_swiglu(const float *gate, const float *up, float *out, int64_t n)
    void ops_geglu_tanh(const float *gate, const float *up, float *out, int64_t n)
    void ops_add(const float *a, const float *b, float *out, int64_t n)
    void ops_attention(const float *q, const float *k_cache, const float *v_cache,
                       int64_t kv_row_stride, int64_t kv_head_stride, const int32_t *q_pos,
                       int64_t n_tok, int n_heads, int n_kv_heads, int head_dim, float scale,
                       int window, float *out,
                       float *probs, int64_t probs_len, float *scratch, int64_t scratch_len)
    void ops_store_heads(const float *rows, int64_t n_tok, int n_heads, int head_dim,
                         float *cache, int64_t n_ctx, int64_t first)
    int64_t ops_attention_scratch_len(const int32_t *q_pos, int64_t n_tok, int n_heads,
                                      int n_kv_heads, int head_dim, int window)

MAX_HEAD_DIM = OPS_MAX_HEAD_DIM


# ---- argument checks ------------------------------------------------------------

cdef cnp.ndarray _ops_array(str name, object a, int type_num, int ndim, bint writable):
    if not isinstance(a, cnp.ndarray):
        raise ValueError(f"{name} must be a NumPy array, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(arr) != type_num or cnp.PyArray_NDIM(arr) != ndim
            or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISALIGNED(arr)):
        want = np.dtype(np.float32 if type_num == cnp.NPY_FLOAT32 else np.int32)
        raise ValueError(f"{name} must be a C-contiguous {want} array with {ndim} dimension(s), "
                         f"got {a.dtype} with shape {a.shape}"
                         + ("" if a.flags.c_contiguous else ", not C-contiguous"))
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} is read-only")
    return arr


cdef float *_ops_floats(str name, object a, int ndim, bint writable=False) except NULL:
    """Data of a float32 array of ndim dimensions (ValueError if it is not one)."""
    return <float *>cnp.PyArray_DATA(_ops_array(name, a, cnp.NPY_FLOAT32, ndim, writable))


cdef int32_t *_ops_ints(str name, object a) except NULL:
    """Data of a 1-D int32 array (ValueError if it is not one)."""
    return <int32_t *>cnp.PyArray_DATA(_ops_array(name, a, cnp.NPY_INT32, 1, False))


cdef inline int64_t _ops_dim(object a, int axis):
    return cnp.PyArray_DIM(<cnp.ndarray>a, axis)


cdef _ops_check_shape(str name, object a, tuple want):
    if a.shape != want:
        raise ValueError(f"{name} has shape {a.shape}, expected {want}")


cdef _ops_check_heads(int n_heads, int head_dim):
    if n_heads < 1:
        raise ValueError(f"n_heads must be >= 1, got {n_heads}")
    if head_dim < 2 or head_dim > OPS_MAX_HEAD_DIM:
        raise ValueError(f"head_dim must be in [2, {OPS_MAX_HEAD_DIM}], got {head_dim}")


# ---- kernels --------------------------------------------------------------------

def rmsnorm(x, w, float eps, out):
    """out = x / sqrt(mean(x**2, axis=1) + eps) * w, row by row; out may be x.
    x, out: float32[n, d]; w: float32[d]. For per-head q/k norms pass x as
    [n_tok * n_heads, head_dim] (a reshaped view)."""
    cdef const float *xp = _ops_floats("rmsnorm: x", x, 2)
    cdef const float *wp = _ops_floats("rmsnorm: w", w, 1)
    cdef float *outp = _ops_floats("rmsnorm: out", out, 2, True)
    cdef int64_t n = _ops_dim(x, 0), d = _ops_dim(x, 1)
    if d < 1:
        raise ValueError("rmsnorm: rows of x are empty")
    _ops_check_shape("rmsnorm: w", w, (d,))
    _ops_check_shape("rmsnorm: out", out, (n, d))
    with nogil:
        ops_rmsnorm(xp, wp, outp, n, d, eps)


def rope(x, pos, int n_heads, int head_dim, double base, bint neox):
    """Rotary position embedding in place. x: float32[n_tok, n_heads * head_dim];
    pos: int32[n_tok]. neox=False rotates pairs (x[2i], x[2i+1]) (llama GGUFs);
    neox=True rotates (x[i], x[i + head_dim/2]) (gemma3). Pair i of each head turns by
    pos * base**(-2i/head_dim) radians."""
    cdef float *xp = _ops_floats("rope: x", x, 2, True)
    cdef const int32_t *posp = _ops_ints("rope: pos", pos)
    _ops_check_heads(n_heads, head_dim)
    if head_dim % 2:
        raise ValueError(f"rope: head_dim must be even, got {head_dim}")
    if not base > 0:
        raise ValueError(f"rope: base must be > 0, got {base}")
    cdef int64_t n_tok = _ops_dim(x, 0)
    _ops_check_shape("rope: x", x, (n_tok, <int64_t>n_heads * head_dim))
    _ops_check_shape("rope: pos", pos, (n_tok,))
    cdef double inv_freq[OPS_MAX_ROPE_PAIRS]
    with nogil:
        ops_rope_frequencies(base, head_dim, inv_freq)
        ops_rope(xp, n_heads, NULL, 0, posp, n_tok, head_dim, inv_freq, neox)


def softmax(x):
    """Row-wise softmax of x float32[n, d] in place (max-subtracted)."""
    cdef float *xp = _ops_floats("softmax: x", x, 2, True)
    cdef int64_t n = _ops_dim(x, 0), d = _ops_dim(x, 1)
    if d < 1:
        raise ValueError("softmax: rows of x are empty")
    with nogil:
        ops_softmax(xp, n, d)


cdef int64_t _ops_gated_size(str name, gate, up, out) except -1:
    """Checks of the gated activations; returns the element count."""
    _ops_floats(name + ": gate", gate, 2)
    _ops_floats(name + ": up", up, 2)
    _ops_floats(name + ": out", out, 2, True)
    _ops_check_shape(name + ": up", up, gate.shape)
    _ops_check_shape(name + ": out", out, gate.shape)
    return _ops_dim(gate, 0) * _ops_dim(gate, 1)


def swiglu(gate, up, out):
    """out = silu(gate) * up, all float32[n, f]; out may be gate or up."""
    cdef int64_t size = _ops_gated_size("swiglu", gate, up, out)
    cdef const float *g = <float *>cnp.PyArray_DATA(<cnp.ndarray>gate)
    cdef const float *u = <float *>cnp.PyArray_DATA(<cnp.ndarray>up)
    cdef float *o = <float *>cnp.PyArray_DATA(<cnp.ndarray>out)
    with nogil:
        ops_swiglu(g, u, o, size)


def geglu_tanh(gate, up, out):
    """out = gelu_tanh(gate) * up, all float32[n, f] (GELU, tanh approximation); out may
    be gate or up."""
    cdef int64_t size = _ops_gated_size("geglu_tanh", gate, up, out)
    cdef const float *g = <float *>cnp.PyArray_DATA(<cnp.ndarray>gate)
    cdef const float *u = <float *>cnp.PyArray_DATA(<cnp.ndarray>up)
    cdef float *o = <float *>cnp.PyArray_DATA(<cnp.ndarray>out)
    with nogil:
        ops_geglu_tanh(g, u, o, size)


cdef int32_t _ops_max_position(const int32_t *q_pos, int64_t n_tok, int64_t n_ctx) except -1:
    """Largest position in q_pos; ValueError if any lies outside the cache."""
    cdef int32_t highest = 0
    cdef int64_t t
    for t in range(n_tok):
        if q_pos[t] < 0 or q_pos[t] >= n_ctx:
            raise ValueError(f"attention: q_pos[{t}] = {q_pos[t]} is outside the cache of {n_ctx} rows")
        if q_pos[t] > highest:
            highest = q_pos[t]
    return highest


# Work space of the attention calls split over more threads than they have tiles (decode
# steps): grown on demand, so a steady decode loop allocates nothing.
_attention_scratch = np.empty(0, dtype=np.float32)
_attention_scratch_lock = threading.Lock()


def attention(q, k_cache, v_cache, q_pos, int n_heads, int n_kv_heads, int head_dim,
              float scale, int window, out, probs=None):
    """Causal grouped-query attention of the queries q over the KV cache.

    q, out: float32[n_tok, n_heads * head_dim];
    k_cache, v_cache: float32[n_ctx, n_kv_heads * head_dim] (token-major), or
    float32[n_kv_heads, n_ctx, head_dim] (head-major, as the forward keeps them);
    q_pos: int32[n_tok] absolute positions (the cache must hold rows 0..max(q_pos)).
    Query head h reads KV head h // (n_heads // n_kv_heads). The query at position p sees
    rows j <= p, and with window > 0 only those with p - j < window (window rows,
    itself included). probs, if given: float32[n_heads, n_tok, L] with L > max(q_pos),
    receives the attention weights (zero where masked). out must not overlap the caches."""
    global _attention_scratch
    cdef int kv_ndim = k_cache.ndim if isinstance(k_cache, np.ndarray) else 2
    cdef const float *qp = _ops_floats("attention: q", q, 2)
    cdef const float *kp = _ops_floats("attention: k_cache", k_cache, kv_ndim)
    cdef const float *vp = _ops_floats("attention: v_cache", v_cache, kv_ndim)
    cdef const int32_t *posp = _ops_ints("attention: q_pos", q_pos)
    cdef float *outp = _ops_floats("attention: out", out, 2, True)
    _ops_check_heads(n_heads, head_dim)
    if n_kv_heads < 1 or n_heads % n_kv_heads:
        raise ValueError(f"attention: n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
    if window < 0:
        raise ValueError(f"attention: window must be >= 0 (0 = none), got {window}")
    cdef int64_t n_tok = _ops_dim(q, 0), n_ctx, row_stride, head_stride
    if kv_ndim == 3:  # head-major
        n_ctx = _ops_dim(k_cache, 1)
        kv_shape = (n_kv_heads, n_ctx, head_dim)
        row_stride, head_stride = head_dim, n_ctx * head_dim
    else:
        n_ctx = _ops_dim(k_cache, 0)
        kv_shape = (n_ctx, <int64_t>n_kv_heads * head_dim)
        row_stride, head_stride = <int64_t>n_kv_heads * head_dim, head_dim
    _ops_check_shape("attention: q", q, (n_tok, <int64_t>n_heads * head_dim))
    _ops_check_shape("attention: k_cache", k_cache, kv_shape)
    _ops_check_shape("attention: v_cache", v_cache, kv_shape)
    _ops_check_shape("attention: q_pos", q_pos, (n_tok,))
    _ops_check_shape("attention: out", out, (n_tok, <int64_t>n_heads * head_dim))
    if n_tok == 0:
        return
    cdef int32_t highest = _ops_max_position(posp, n_tok, n_ctx)

    cdef float *probsp
    cdef int64_t probs_len
    if probs is not None:
        probsp = _ops_floats("attention: probs", probs, 3, True)
        probs_len = _ops_dim(probs, 2)
        if _ops_dim(probs, 0) != n_heads or _ops_dim(probs, 1) != n_tok or probs_len <= highest:
            raise ValueError(f"attention: probs has shape {probs.shape}, expected "
                             f"({n_heads}, {n_tok}, L) with L > {highest}")
        with nogil:
            ops_attention(qp, kp, vp, row_stride, head_stride, posp, n_tok, n_heads,
                          n_kv_heads, head_dim, scale, window, outp, probsp, probs_len, NULL, 0)
        return

    cdef int64_t need = ops_attention_scratch_len(posp, n_tok, n_heads, n_kv_heads,
                                                  head_dim, window)
    if need == 0:
        with nogil:
            ops_attention(qp, kp, vp, row_stride, head_stride, posp, n_tok, n_heads,
                          n_kv_heads, head_dim, scale, window, outp, NULL, 0, NULL, 0)
        return
    cdef float *scratch
    with _attention_scratch_lock:  # one shared scratch: Python threads take turns
        if _ops_dim(_attention_scratch, 0) < need:
            _attention_scratch = np.empty(need, dtype=np.float32)
        scratch = <float *>cnp.PyArray_DATA(<cnp.ndarray>_attention_scratch)
        with nogil:
            ops_attention(qp, kp, vp, row_stride, head_stride, posp, n_tok, n_heads,
                          n_kv_heads, head_dim, scale, window, outp, NULL, 0, scratch, need)
