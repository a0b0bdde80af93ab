# The transformer layers in one call: model.py's forward hands the whole stack of layers
# to LayerStack.run, which walks them with the GIL released.
#
# Why: a layer is about 13 kernel calls. Made one by one from Python, with their argument
# checks, they cost ~0.7-1 ms per SmolLM2 decode step (30 layers), 10-20% of the step.
# Here every buffer and weight is checked once when the stack is built, and run() only
# says which kernel reads and writes which buffer, in order. No arithmetic happens here.

from cpython.mem cimport PyMem_Calloc, PyMem_Free


ctypedef struct layer_plan:
    llm_matrix qkv[3]                  # wq, wk, wv
    llm_matrix wo
    llm_matrix gate_up[2]              # w_gate, w_up
    llm_matrix w_down
    const float *attn_norm
    const float *ffn_norm
    const float *q_norm                # NULL without per-head q/k norms
    const float *k_norm
    const float *post_attn_norm        # NULL without post-norms
    const float *post_ffn_norm
    float *k_cache                     # [n_kv_heads, n_ctx, head_dim] (head-major)
    float *v_cache
    double inv_freq[OPS_MAX_ROPE_PAIRS]  # rope's per-pair rotation speeds
    int window                         # 0: full attention


# K and V bytes brought in ahead of a step's attention, each (an L2 holds the pair next to
# the q/k/v weights being streamed meanwhile)
cdef enum: AHEAD_BYTES = 128 * 1024


cdef float *_stack_floats(object owners, object a, tuple shape, str name) except NULL:
    """Data of a C-contiguous float32 array of exactly this shape, kept alive by owners."""
    if (not isinstance(a, cnp.ndarray) or a.dtype != _np.float32 or a.shape != shape
            or not a.flags.c_contiguous or not a.flags.aligned):
        got = f"{a.dtype} {a.shape}" if isinstance(a, cnp.ndarray) else type(a).__name__
        raise ValueError(f"LayerStack: {name} must be a C-contiguous float32 array of shape "
                         f"{shape}, got {got}")
    owners.append(a)
    return <float *>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef llm_matrix _stack_matrix(object owners, object tensor, int64_t k, int64_t n_out,
                              str name) except *:
    """A weight matrix of k inputs and n_out outputs (its output pointer is set later)."""
    cdef int t = int(tensor.type)
    if llm_act_type(t) < 0:
        raise ValueError(f"LayerStack: {name}: no kernel for GGML type {t}")
    _check_row_length(t, k, name)
    cdef cnp.ndarray w = _checked_array(tensor.data, "LayerStack", name, cnp.NPY_UINT8,
                                        "uint8", 2, False)
    if w.shape[0] != n_out or <size_t>w.shape[1] != llm_row_nbytes(t, k):
        raise ValueError(f"LayerStack: {name} has shape {tensor.data.shape}, expected "
                         f"({n_out}, {llm_row_nbytes(t, k)})")
    owners.append(w)
    cdef llm_matrix mat
    mat.type = t
    mat.w = <const uint8_t *>cnp.PyArray_DATA(w)
    mat.w_stride = w.shape[1]
    mat.n_out = n_out
    mat.out = NULL
    return mat


cdef class LayerStack:
    """The layers of one model bound to its KV caches and activation buffers.

    LayerStack(config, layer_weights, k_caches, v_caches, buffers) with the caches
    float32[n_kv_heads, n_ctx, head_dim] per layer (head-major: ops.h, ops_attention) and
    buffers a dict of float32 arrays of `capacity` rows: x, normed, q, attn, proj
    [capacity, width], k, v [capacity, n_kv] (a batch's keys and values before they go
    into the caches), gate, up [capacity, n_ff]; and pos, int32 [capacity]. run(n, first)
    takes rows 0..n-1 of x (the embeddings of tokens at positions first..first+n-1)
    through every layer, writing their keys and values into the caches; x then holds the
    last layer's output.

    refine names the projections whose input gets about 16-bit precision instead of 8:
    any of "qkv", "wo", "gate_up", "down" (see _multiply_refined).
    """
    cdef layer_plan *layers
    cdef int n_layers
    cdef int64_t n_embd, n_q, n_kv, n_ff, n_ctx, capacity, workspace_len, scratch_len
    cdef int n_heads, n_kv_heads, head_dim
    cdef float eps, attn_scale
    cdef bint gelu, neox
    cdef float *x
    cdef float *normed
    cdef float *q
    cdef float *k
    cdef float *v
    cdef float *attn
    cdef float *proj
    cdef float *gate
    cdef float *up
    cdef int32_t *pos
    cdef uint8_t *workspace
    cdef float *scratch
    cdef object owners                 # every array the pointers above point into
    cdef object workspace_owner
    cdef object scratch_owner
    cdef object windows                # the distinct attention windows of the layers
    cdef bint refine_qkv, refine_wo, refine_gate_up, refine_down
    cdef float *refine_in              # [2 * capacity, widest input]: x, then its residual
    cdef float *refine_out             # [2 * capacity, widest group of outputs]

    def __cinit__(self):
        self.layers = NULL

    def __dealloc__(self):
        PyMem_Free(self.layers)

    def __init__(self, config, layer_weights, k_caches, v_caches, rope_bases, windows,
                 dict buffers, refine=()):
        c = config
        unknown = set(refine) - {"qkv", "wo", "gate_up", "down"}
        if unknown:
            raise ValueError(f"LayerStack: unknown projections to refine: {sorted(unknown)}")
        self.refine_qkv, self.refine_wo = "qkv" in refine, "wo" in refine
        self.refine_gate_up, self.refine_down = "gate_up" in refine, "down" in refine
        self.owners = []
        self.n_layers = len(layer_weights)
        self.n_embd, self.n_q, self.n_kv, self.n_ff = c.n_embd, c.n_q, c.n_kv, c.n_ff
        self.n_heads, self.n_kv_heads, self.head_dim = c.n_heads, c.n_kv_heads, c.head_dim
        self.eps, self.attn_scale = c.rms_eps, c.attn_scale
        self.gelu, self.neox = c.ffn_act != "silu", c.rope_neox
        _ops_check_heads(self.n_heads, self.head_dim)
        if self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads:
            raise ValueError("LayerStack: n_heads is not a multiple of n_kv_heads")
        if not (len(k_caches) == len(v_caches) == len(rope_bases) == len(windows)
                == self.n_layers):
            raise ValueError("LayerStack: one cache pair, rope base and window per layer")
        self.capacity = _ops_dim(buffers["x"], 0)
        self.n_ctx = _ops_dim(k_caches[0], 1) if self.n_layers else 0
        if self.capacity < 1 or self.n_ctx < 1:
            raise ValueError("LayerStack: empty buffers or caches")
        cap, own = self.capacity, self.owners
        self.x = _stack_floats(own, buffers["x"], (cap, self.n_embd), "x")
        self.normed = _stack_floats(own, buffers["normed"], (cap, self.n_embd), "normed")
        self.q = _stack_floats(own, buffers["q"], (cap, self.n_q), "q")
        self.k = _stack_floats(own, buffers["k"], (cap, self.n_kv), "k")
        self.v = _stack_floats(own, buffers["v"], (cap, self.n_kv), "v")
        self.attn = _stack_floats(own, buffers["attn"], (cap, self.n_q), "attn")
        self.proj = _stack_floats(own, buffers["proj"], (cap, self.n_embd), "proj")
        self.gate = _stack_floats(own, buffers["gate"], (cap, self.n_ff), "gate")
        self.up = _stack_floats(own, buffers["up"], (cap, self.n_ff), "up")
        self.pos = <int32_t *>_ops_ints("LayerStack: pos", buffers["pos"])
        _ops_check_shape("LayerStack: pos", buffers["pos"], (cap,))
        own.append(buffers["pos"])

        self.layers = <layer_plan *>PyMem_Calloc(max(self.n_layers, 1), sizeof(layer_plan))
        if self.layers == NULL:
            raise MemoryError()
        self.workspace_len = 0
        cdef int i
        for i in range(self.n_layers):
            self._plan_layer(&self.layers[i], layer_weights[i], k_caches[i], v_caches[i],
                             rope_bases[i], windows[i], c.qk_norm, c.post_norms, i)
        self.windows = sorted(set(int(w) for w in windows))
        self._plan_refinement()
        self.workspace_owner = _np.empty(self.workspace_len + 64, dtype=_np.uint8)
        self.workspace = _first_aligned_byte(self.workspace_owner)
        self.scratch_len = 0
        self.scratch_owner = None
        self.scratch = NULL

    cdef _plan_layer(self, layer_plan *L, lw, k_cache, v_cache, double rope_base, int window,
                     bint qk_norm, bint post_norms, int i):
        own, e, name = self.owners, self.n_embd, f"layer {i}"
        L.qkv[0] = _stack_matrix(own, lw.wq, e, self.n_q, f"{name} wq")
        L.qkv[1] = _stack_matrix(own, lw.wk, e, self.n_kv, f"{name} wk")
        L.qkv[2] = _stack_matrix(own, lw.wv, e, self.n_kv, f"{name} wv")
        L.wo = _stack_matrix(own, lw.wo, self.n_q, e, f"{name} wo")
        L.gate_up[0] = _stack_matrix(own, lw.w_gate, e, self.n_ff, f"{name} w_gate")
        L.gate_up[1] = _stack_matrix(own, lw.w_up, e, self.n_ff, f"{name} w_up")
        L.w_down = _stack_matrix(own, lw.w_down, self.n_ff, e, f"{name} w_down")
        L.qkv[0].out, L.qkv[1].out, L.qkv[2].out, L.wo.out = self.q, self.k, self.v, self.proj
        L.gate_up[0].out, L.gate_up[1].out, L.w_down.out = self.gate, self.up, self.proj
        L.attn_norm = _stack_floats(own, lw.attn_norm.data, (e,), f"{name} attn_norm")
        L.ffn_norm = _stack_floats(own, lw.ffn_norm.data, (e,), f"{name} ffn_norm")
        L.q_norm = L.k_norm = L.post_attn_norm = L.post_ffn_norm = NULL
        if qk_norm:
            L.q_norm = _stack_floats(own, lw.q_norm.data, (self.head_dim,), f"{name} q_norm")
            L.k_norm = _stack_floats(own, lw.k_norm.data, (self.head_dim,), f"{name} k_norm")
        if post_norms:
            L.post_attn_norm = _stack_floats(own, lw.post_attn_norm.data, (e,),
                                             f"{name} post_attn_norm")
            L.post_ffn_norm = _stack_floats(own, lw.post_ffn_norm.data, (e,),
                                            f"{name} post_ffn_norm")
        cache_shape = (self.n_kv_heads, self.n_ctx, self.head_dim)
        L.k_cache = _stack_floats(own, k_cache, cache_shape, f"{name} k_cache")
        L.v_cache = _stack_floats(own, v_cache, cache_shape, f"{name} v_cache")
        if not rope_base > 0 or window < 0:
            raise ValueError(f"LayerStack: {name}: rope base must be > 0 and window >= 0")
        ops_rope_frequencies(rope_base, self.head_dim, L.inv_freq)
        L.window = window
        # the workspace holds the quantized input of any of them, for a full batch (twice
        # the rows when refined)
        for j in range(3):
            self._need_workspace(L.qkv[j].type, e, self.refine_qkv)
        for j in range(2):
            self._need_workspace(L.gate_up[j].type, e, self.refine_gate_up)
        self._need_workspace(L.wo.type, self.n_q, self.refine_wo)
        self._need_workspace(L.w_down.type, self.n_ff, self.refine_down)

    cdef _need_workspace(self, int weight_type, int64_t k, bint refined):
        cdef int64_t rows = self.capacity * (2 if refined else 1)
        self.workspace_len = max(self.workspace_len,
                                 llm_matmul_workspace_size(weight_type, k, rows))

    cdef _plan_refinement(self):
        """Buffers for the refined projections: their input rows and residual rows, and
        the outputs of both (for every matrix of the widest refined group)."""
        cdef int64_t widest_in = 0, widest_out = 0
        for refined, k, n_out in ((self.refine_qkv, self.n_embd, self.n_q + 2 * self.n_kv),
                                  (self.refine_wo, self.n_q, self.n_embd),
                                  (self.refine_gate_up, self.n_embd, 2 * self.n_ff),
                                  (self.refine_down, self.n_ff, self.n_embd)):
            if refined:
                widest_in, widest_out = max(widest_in, k), max(widest_out, n_out)
        self.refine_in = self.refine_out = NULL
        if widest_in:
            rows = 2 * self.capacity
            self.refine_in = _stack_floats(self.owners, _np.empty((rows, widest_in), _np.float32),
                                           (rows, widest_in), "refine_in")
            self.refine_out = _stack_floats(self.owners, _np.empty((rows, widest_out), _np.float32),
                                            (rows, widest_out), "refine_out")

    def run(self, int64_t n, int64_t first, probs=None):
        """Layers over rows 0..n-1 of x at positions first..first+n-1. probs: None, or per
        layer a float32 [n_heads, n, L] array (L > first + n - 1) for the attention weights."""
        if not 1 <= n <= self.capacity:
            raise ValueError(f"LayerStack.run: n = {n} is outside 1..{self.capacity}")
        if first < 0 or first + n > self.n_ctx:
            raise ValueError(f"LayerStack.run: positions {first}..{first + n - 1} are outside "
                             f"the cache of {self.n_ctx} rows")
        cdef int64_t t
        for t in range(n):
            self.pos[t] = <int32_t>(first + t)
        cdef float **probs_rows = NULL
        cdef int64_t probs_len = 0
        cdef int i
        if probs is not None:
            probs_len = self._check_probs(probs, n, first)
        else:
            self._ensure_scratch(n)
        try:
            if probs is not None:
                probs_rows = <float **>PyMem_Calloc(self.n_layers, sizeof(float *))
                if probs_rows == NULL:
                    raise MemoryError()
                for i in range(self.n_layers):
                    probs_rows[i] = <float *>cnp.PyArray_DATA(<cnp.ndarray>probs[i])
            with nogil:
                for i in range(self.n_layers):
                    self._attention_block(&self.layers[i], n, first,
                                          probs_rows[i] if probs_rows != NULL else NULL,
                                          probs_len)
                    self._ffn_block(&self.layers[i], n)
        finally:
            PyMem_Free(probs_rows)

    cdef int64_t _check_probs(self, probs, int64_t n, int64_t first) except -1:
        if len(probs) != self.n_layers:
            raise ValueError(f"LayerStack.run: probs needs one array per layer")
        cdef int64_t length = _ops_dim(probs[0], 2) if self.n_layers else 0
        for p in probs:
            _ops_floats("LayerStack.run: probs", p, 3, True)
            if p.shape != (self.n_heads, n, length) or length <= first + n - 1:
                raise ValueError(f"LayerStack.run: probs has shape {p.shape}, expected "
                                 f"({self.n_heads}, {n}, L) with L > {first + n - 1}")
        return length

    cdef _ensure_scratch(self, int64_t n):
        """Room for the attention's split softmax at these positions (depends on the
        thread count and the window, so it is checked on every run)."""
        cdef int64_t need = 0
        for window in self.windows:
            need = max(need, ops_attention_scratch_len(self.pos, n, self.n_heads,
                                                       self.n_kv_heads, self.head_dim, window))
        if need > self.scratch_len:
            self.scratch_owner = _np.empty(need, dtype=_np.float32)
            self.scratch = <float *>cnp.PyArray_DATA(<cnp.ndarray>self.scratch_owner)
            self.scratch_len = need

    cdef void _project(self, llm_matrix *mats, int n_mats, int64_t k, const float *x,
                       int64_t n, bint refined, const llm_span *ahead=NULL,
                       int n_ahead=0) noexcept nogil:
        """mats against x: in one call when their types share an activation format (x is
        then quantized once and one thread team shares their rows), else one each. ahead:
        memory the next kernel reads, brought into the cache meanwhile (see matmul.h)."""
        cdef int m
        cdef bint shared = True
        for m in range(1, n_mats):
            shared = shared and llm_matmul_can_share(mats[0].type, mats[m].type, n)
        if shared:
            self._multiply(mats, n_mats, k, x, n, refined, ahead, n_ahead)
        else:
            for m in range(n_mats):
                self._multiply(&mats[m], 1, k, x, n, refined, ahead if m == 0 else NULL,
                               n_ahead if m == 0 else 0)

    cdef void _multiply(self, llm_matrix *mats, int n_mats, int64_t k, const float *x,
                        int64_t n, bint refined, const llm_span *ahead,
                        int n_ahead) noexcept nogil:
        if refined and llm_act_type(mats[0].type) != 0:  # float activations are exact already
            self._multiply_refined(mats, n_mats, k, x, n, ahead, n_ahead)
        else:
            llm_matmul_many_ahead(mats, n_mats, k, x, n, self.workspace, ahead, n_ahead)

    cdef void _multiply_refined(self, llm_matrix *mats, int n_mats, int64_t k, const float *x,
                                int64_t n, const llm_span *ahead, int n_ahead) noexcept nogil:
        """mats against x with about 16-bit activations from the 8-bit kernels: the rows
        x and what their 8-bit quantization loses (the residual) go through the same
        kernels as 2n tokens, and each output is the sum of its two products. Where the
        8-bit error dominates (measured against the float reference), this halves it."""
        cdef int act = llm_act_type(mats[0].type)
        cdef int64_t offset = 0
        cdef float *final_out[3]           # the largest group: q, k, v
        cdef int m
        memcpy(self.refine_in, x, <size_t>(n * k) * sizeof(float))
        llm_quantization_residual(act, x, self.refine_in + n * k, k, n)
        for m in range(n_mats):  # outputs: [2n, n_out] each, side by side
            final_out[m] = mats[m].out
            mats[m].out = self.refine_out + offset
            offset += 2 * n * mats[m].n_out
        llm_matmul_many_ahead(mats, n_mats, k, self.refine_in, 2 * n, self.workspace, ahead,
                              n_ahead)
        for m in range(n_mats):
            ops_add(mats[m].out, mats[m].out + n * mats[m].n_out, final_out[m], n * mats[m].n_out)
            mats[m].out = final_out[m]

    cdef int _cached_rows(self, const layer_plan *L, int64_t first,
                          llm_span *spans) noexcept nogil:
        """The K and V cache rows already written that this step's attention reads first
        (rows before `first`, within the window), at most AHEAD_BYTES of K and of V, one
        span per head (as many heads as LLM_MAX_SPANS allows): in a decode step they have
        been pushed out of the caches by the weights since the last token."""
        cdef int64_t lo = 0 if L.window == 0 else max(0, first - L.window + 1)
        cdef size_t row_bytes = self.head_dim * sizeof(float)
        cdef size_t bytes = min(<size_t>(first - lo) * row_bytes,
                                <size_t>AHEAD_BYTES // <size_t>self.n_kv_heads)
        cdef int n = 0, h
        cdef int64_t at
        if bytes == 0:
            return 0
        for h in range(min(self.n_kv_heads, LLM_MAX_SPANS // 2)):
            at = (h * self.n_ctx + lo) * self.head_dim
            spans[n].p, spans[n].bytes = L.k_cache + at, bytes
            spans[n + 1].p, spans[n + 1].bytes = L.v_cache + at, bytes
            n += 2
        return n

    cdef void _attention_block(self, layer_plan *L, int64_t n, int64_t first,
                               float *probs, int64_t probs_len) noexcept nogil:
        cdef float *k = self.k
        cdef float *v = self.v
        # attention rmsnorm
        ops_rmsnorm(self.x, L.attn_norm, self.normed, n, self.n_embd, self.eps)
        # q, k, v projections, while the cache rows the attention will read come in
        cdef llm_span cached[LLM_MAX_SPANS]
        cdef int n_cached = self._cached_rows(L, first, cached)
        self._project(L.qkv, 3, self.n_embd, self.normed, n, self.refine_qkv, cached, n_cached)
        # per-head q/k norms (gemma3)
        if L.q_norm != NULL:
            ops_rmsnorm(self.q, L.q_norm, self.q, n * self.n_heads, self.head_dim, self.eps)
            ops_rmsnorm(k, L.k_norm, k, n * self.n_kv_heads, self.head_dim, self.eps)
        # RoPE
        ops_rope(self.q, self.n_heads, k, self.n_kv_heads, self.pos, n, self.head_dim,
                 L.inv_freq, self.neox)
        # this batch's keys and values into the caches
        ops_store_heads(k, n, self.n_kv_heads, self.head_dim, L.k_cache, self.n_ctx, first)
        ops_store_heads(v, n, self.n_kv_heads, self.head_dim, L.v_cache, self.n_ctx, first)
        # attention over the cache (rows 0..first+n-1, within the window if any)
        ops_attention(self.q, L.k_cache, L.v_cache, self.head_dim, self.n_ctx * self.head_dim,
                      self.pos, n, self.n_heads, self.n_kv_heads, self.head_dim,
                      self.attn_scale, L.window, self.attn,
                      probs, probs_len, NULL if probs != NULL else self.scratch,
                      0 if probs != NULL else self.scratch_len)
        # output projection
        self._project(&L.wo, 1, self.n_q, self.attn, n, self.refine_wo)
        if L.post_attn_norm != NULL:
            ops_rmsnorm(self.proj, L.post_attn_norm, self.proj, n, self.n_embd, self.eps)
        # residual
        ops_add(self.x, self.proj, self.x, n * self.n_embd)

    cdef void _ffn_block(self, layer_plan *L, int64_t n) noexcept nogil:
        # ffn rmsnorm
        ops_rmsnorm(self.x, L.ffn_norm, self.normed, n, self.n_embd, self.eps)
        # gate and up projections, gated activation
        self._project(L.gate_up, 2, self.n_embd, self.normed, n, self.refine_gate_up)
        if self.gelu:
            ops_geglu_tanh(self.gate, self.up, self.gate, n * self.n_ff)
        else:
            ops_swiglu(self.gate, self.up, self.gate, n * self.n_ff)
        # down projection
        self._project(&L.w_down, 1, self.n_ff, self.gate, n, self.refine_down)
        if L.post_ffn_norm != NULL:
            ops_rmsnorm(self.proj, L.post_ffn_norm, self.proj, n, self.n_embd, self.eps)
        # residual
        ops_add(self.x, self.proj, self.x, n * self.n_embd)
