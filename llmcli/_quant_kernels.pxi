# Block formats, dequantization and quantized matmul over GGUF weights (csrc/quants.c,
# vec_dot*.c, matmul.c). Included by _kernels.pyx.
#
# Every wrapper checks types, shapes and byte sizes, raising ValueError, before it releases
# the GIL; the C side trusts what it is given. matmul and get_rows run for every layer of
# every token, so they check NumPy arrays through the C API (~0.05 us) rather than typed
# memoryviews (~0.2 us each); other buffers are converted with numpy.asarray first.

import os as _os

import numpy as _np

cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy, memset

cnp.import_array()


cdef extern from "quants.h" nogil:
    int llm_block_size(int type)
    int llm_type_size(int type)
    size_t llm_row_nbytes(int type, int64_t k)
    int llm_can_dequantize(int type)
    int llm_act_type(int weight_type)
    void llm_dequantize_row(int type, const void *x, float *y, int64_t k)
    void llm_quantize_row(int act_type, const float *x, void *y, int64_t k)
    void llm_quantization_residual(int act_type, const float *x, float *residual, int64_t k,
                                   int64_t n_rows)

cdef extern from "vec_dot.h" nogil:
    int llm_cpu_has_avx2()
    int llm_get_path()
    int llm_set_path(int path)

cdef extern from "matmul.h" nogil:
    void llm_set_threads(int n)
    int llm_get_threads()
    size_t llm_matmul_workspace_size(int weight_type, int64_t k, int64_t n_tok)
    void llm_matmul(int weight_type, const uint8_t *w, size_t w_stride, int64_t n_out,
                    int64_t k, const float *x, int64_t n_tok, float *out, void *workspace)
    int LLM_MAX_MATRICES
    ctypedef struct llm_matrix:
        int type
        const uint8_t *w
        size_t w_stride
        int64_t n_out
        float *out
    int llm_matmul_can_share(int type_a, int type_b, int64_t n_tok)
    void llm_matmul_many(const llm_matrix *mats, int n_mats, int64_t k, const float *x,
                         int64_t n_tok, void *workspace)
    enum: LLM_MAX_SPANS
    ctypedef struct llm_span:
        const void *p
        size_t bytes
    void llm_matmul_many_ahead(const llm_matrix *mats, int n_mats, int64_t k, const float *x,
                               int64_t n_tok, void *workspace, const llm_span *ahead,
                               int n_ahead)
    void llm_get_rows(int weight_type, const uint8_t *w, size_t w_stride, int64_t k,
                      const int32_t *ids, int64_t n_ids, float *out)
    uint64_t llm_read_probe(const uint8_t *buf, size_t n, int n_threads)


_PATH_NAMES = {0: "scalar", 1: "avx2"}
_ACT_TYPES = frozenset((8, 9, 15))  # Q8_0, Q8_1, Q8_K: the activation dot formats


def kernel_path():
    """The kernel path in use: "avx2" (AVX2+FMA+F16C, x86-64) or "scalar"."""
    return _PATH_NAMES[llm_get_path()]


def set_kernel_path(name):
    """Select "avx2" or "scalar" kernels (tests compare the two)."""
    codes = {v: k for k, v in _PATH_NAMES.items()}
    if name not in codes:
        raise ValueError(f"unknown kernel path {name!r} (expected 'avx2' or 'scalar')")
    if llm_set_path(codes[name]) != 0:
        raise ValueError(f"kernel path {name!r} is not supported by this CPU")


def set_threads(int n):
    """Threads used by matmul (OpenMP team size)."""
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    llm_set_threads(n)


def get_threads():
    return llm_get_threads()


def block_size(int t):
    """Values per block of GGML type t (ValueError for a type without kernels)."""
    _check_known_type(t)
    return llm_block_size(t)


def type_size(int t):
    """Bytes per block of GGML type t."""
    _check_known_type(t)
    return llm_type_size(t)


cdef _check_known_type(int t):
    if llm_block_size(t) == 0:
        raise ValueError(f"GGML type {t} has no kernels")


cdef _check_row_length(int t, Py_ssize_t k, str what):
    if k % llm_block_size(t) != 0:
        raise ValueError(f"{what}: row length {k} is not a multiple of the block size "
                         f"{llm_block_size(t)} of GGML type {t}")


def dequantize(const uint8_t[::1] raw, int t, float[::1] out):
    """out[:] = values of the blocks in raw (GGML type t); sizes must match exactly."""
    if not llm_can_dequantize(t):
        raise ValueError(f"cannot dequantize GGML type {t}")
    cdef int64_t k = out.shape[0]
    _check_row_length(t, k, "dequantize")
    if <size_t>raw.shape[0] != llm_row_nbytes(t, k):
        raise ValueError(f"dequantize: {raw.shape[0]} bytes of GGML type {t} do not hold "
                         f"{k} values ({llm_row_nbytes(t, k)} bytes expected)")
    if k == 0:
        return
    with nogil:
        llm_dequantize_row(t, &raw[0], &out[0], k)


cdef cnp.ndarray _checked_array(object a, str where, str what, int typenum, str dtype,
                               int ndim, bint writable):
    """a as a C-contiguous ndarray of the given dtype and rank, or a ValueError naming it
    ("{where}: {what} ..."; the message is only built on failure)."""
    if not cnp.PyArray_Check(a):
        a = _np.asarray(a)
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum:
        raise ValueError(f"{where}: {what} must be {dtype}, got {arr.dtype}")
    if cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError(f"{where}: {what} must have {ndim} dimensions, got shape {a.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{where}: {what} must be C-contiguous")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{where}: {what} is read-only")
    return arr


def get_rows(w, int t, ids, out):
    """out[i] = dequantized row ids[i] of w.

    w: uint8 (n_rows, row_bytes) rows of GGML type t; ids: int32 (n,); out: float32 (n, k).
    """
    if not llm_can_dequantize(t):
        raise ValueError(f"cannot dequantize GGML type {t}")
    cdef cnp.ndarray w_arr = _checked_array(w, "get_rows", "w", cnp.NPY_UINT8, "uint8", 2, False)
    cdef cnp.ndarray ids_arr = _checked_array(ids, "get_rows", "ids", cnp.NPY_INT32, "int32", 1, False)
    cdef cnp.ndarray out_arr = _checked_array(out, "get_rows", "out", cnp.NPY_FLOAT32, "float32", 2, True)
    cdef int64_t k = out_arr.shape[1], n = ids_arr.shape[0], n_rows = w_arr.shape[0], i
    cdef const int32_t *id_values = <const int32_t *>cnp.PyArray_DATA(ids_arr)
    _check_row_length(t, k, "get_rows")
    if out_arr.shape[0] != n:
        raise ValueError(f"get_rows: out has {out_arr.shape[0]} rows for {n} ids")
    if <size_t>w_arr.shape[1] != llm_row_nbytes(t, k):
        raise ValueError(f"get_rows: weight rows have {w_arr.shape[1]} bytes, "
                         f"{llm_row_nbytes(t, k)} expected for {k} values of GGML type {t}")
    for i in range(n):
        if id_values[i] < 0 or id_values[i] >= n_rows:
            raise ValueError(f"get_rows: id {id_values[i]} at position {i} is outside [0, {n_rows})")
    if n == 0 or k == 0:
        return
    cdef const uint8_t *w_ptr = <const uint8_t *>cnp.PyArray_DATA(w_arr)
    cdef float *out_ptr = <float *>cnp.PyArray_DATA(out_arr)
    cdef size_t row_bytes = w_arr.shape[1]
    with nogil:
        llm_get_rows(t, w_ptr, row_bytes, k, id_values, n, out_ptr)


# The quantized-activation workspace: grown on demand and reused, so repeated matmuls
# allocate nothing. A call from a second Python thread while one is running (the GIL is
# released inside) gets a private buffer instead of sharing it.
cdef object _workspace_owner = None   # the ndarray that owns the memory
cdef uint8_t *_workspace = NULL       # its first 64-byte aligned byte
cdef size_t _workspace_size = 0       # usable bytes from _workspace
cdef bint _workspace_busy = False


cdef uint8_t *_first_aligned_byte(cnp.ndarray array):
    cdef size_t address = <size_t>cnp.PyArray_DATA(array)
    return <uint8_t *>(address + (64 - address % 64) % 64)


cdef llm_matrix _checked_matrix(object w, int t, object out, int64_t k, int64_t n_tok,
                                str name) except *:
    """One weight matrix and its output, checked against x's (n_tok, k)."""
    if llm_act_type(t) < 0:
        raise ValueError(f"{name}: no kernel for GGML type {t}")
    cdef cnp.ndarray w_arr = _checked_array(w, name, "w", cnp.NPY_UINT8, "uint8", 2, False)
    cdef cnp.ndarray out_arr = _checked_array(out, name, "out", cnp.NPY_FLOAT32, "float32", 2, True)
    cdef int64_t n_out = w_arr.shape[0]
    _check_row_length(t, k, name)
    if <size_t>w_arr.shape[1] != llm_row_nbytes(t, k):
        raise ValueError(f"{name}: weight rows have {w_arr.shape[1]} bytes, "
                         f"{llm_row_nbytes(t, k)} expected for k={k} values of GGML type {t}")
    if out_arr.shape[0] != n_tok or out_arr.shape[1] != n_out:
        raise ValueError(f"{name}: out has shape {out.shape}, expected ({n_tok}, {n_out})")
    cdef llm_matrix mat
    mat.type = t
    mat.w = <const uint8_t *>cnp.PyArray_DATA(w_arr)
    mat.w_stride = w_arr.shape[1]
    mat.n_out = n_out
    mat.out = <float *>cnp.PyArray_DATA(out_arr)
    return mat


cdef object _run_matmuls(llm_matrix *mats, int n_mats, int64_t k, cnp.ndarray x_arr):
    """Run checked matrices against x with the shared (or, if it is in use by another
    Python thread, a private) workspace."""
    global _workspace_owner, _workspace, _workspace_size, _workspace_busy
    cdef int64_t n_tok = x_arr.shape[0]
    cdef int i
    if n_tok == 0:
        return
    if k == 0:  # empty dot products
        for i in range(n_mats):
            memset(mats[i].out, 0, n_tok * mats[i].n_out * sizeof(float))
        return
    cdef size_t need = llm_matmul_workspace_size(mats[0].type, k, n_tok)
    cdef object private_owner = None
    cdef uint8_t *workspace
    cdef bint private = _workspace_busy
    if private:
        private_owner = _np.empty(need + 64, dtype=_np.uint8)
        workspace = _first_aligned_byte(private_owner)
    else:
        if _workspace_size < need:
            _workspace_size = max(need, 2 * _workspace_size)
            _workspace_owner = _np.empty(_workspace_size + 64, dtype=_np.uint8)
            _workspace = _first_aligned_byte(_workspace_owner)
        workspace = _workspace
        _workspace_busy = True
    cdef const float *x_ptr = <const float *>cnp.PyArray_DATA(x_arr)
    try:
        with nogil:
            llm_matmul_many(mats, n_mats, k, x_ptr, n_tok, workspace)
    finally:
        if not private:
            _workspace_busy = False


def matmul(w, int t, x, out):
    """out[i, r] = dot(w row r, x[i]) for every token row i of x.

    w: uint8 (n_out, row_bytes) rows of GGML type t holding k = x.shape[1] values each;
    x: float32 (n_tok, k); out: float32 (n_tok, n_out). Activations are quantized to 8 bits
    per block (Q8_0 / Q8_1 / Q8_K) for quantized weights, as llama.cpp does.
    """
    cdef cnp.ndarray x_arr = _checked_array(x, "matmul", "x", cnp.NPY_FLOAT32, "float32", 2, False)
    cdef llm_matrix mat = _checked_matrix(w, t, out, x_arr.shape[1], x_arr.shape[0], "matmul")
    if mat.n_out:
        _run_matmuls(&mat, 1, x_arr.shape[1], x_arr)


def matmul_many(matrices, x):
    """matmul for several weight matrices against the same x: [(w, t, out), ...].

    The activations are quantized once and one thread team shares the rows of all the
    matrices (e.g. q/k/v, or gate/up, of a layer). The types must share an activation
    format (see matmul_can_share); at most 8 matrices.
    """
    cdef cnp.ndarray x_arr = _checked_array(x, "matmul_many", "x", cnp.NPY_FLOAT32, "float32", 2, False)
    cdef int64_t k = x_arr.shape[1], n_tok = x_arr.shape[0]
    cdef llm_matrix mats[8]
    matrices = list(matrices)
    if not 1 <= len(matrices) <= LLM_MAX_MATRICES:
        raise ValueError(f"matmul_many: 1 to {LLM_MAX_MATRICES} matrices, got {len(matrices)}")
    cdef int i
    for i, (w, t, out) in enumerate(matrices):
        mats[i] = _checked_matrix(w, t, out, k, n_tok, "matmul_many")
        if not llm_matmul_can_share(mats[0].type, t, n_tok):
            raise ValueError(f"matmul_many: GGML types {mats[0].type} and {t} do not share "
                             f"an activation format")
    _run_matmuls(mats, len(matrices), k, x_arr)


def matmul_can_share(int type_a, int type_b, int n_tok):
    """True if matrices of these two types can go in one matmul_many call for n_tok tokens."""
    return llm_act_type(type_a) >= 0 and bool(llm_matmul_can_share(type_a, type_b, n_tok))


def quantize_row(int t_act, const float[::1] x):
    """x quantized into activation format t_act (Q8_0=8, Q8_1=9, Q8_K=15), as uint8 bytes."""
    if t_act not in _ACT_TYPES:
        raise ValueError(f"quantize_row: {t_act} is not an activation format (8, 9 or 15)")
    cdef int64_t k = x.shape[0]
    _check_row_length(t_act, k, "quantize_row")
    result = _np.empty(llm_row_nbytes(t_act, k), dtype=_np.uint8)
    cdef uint8_t[::1] dst = result
    if k:
        with nogil:
            llm_quantize_row(t_act, &x[0], &dst[0], k)
    return result


def quantization_residual(int t_act, const float[::1] x):
    """x minus the values of its quantization into activation format t_act (as
    quantize_row makes it): what 8-bit activations lose."""
    if t_act not in _ACT_TYPES:
        raise ValueError(f"quantization_residual: {t_act} is not an activation format (8, 9 or 15)")
    cdef int64_t k = x.shape[0]
    _check_row_length(t_act, k, "quantization_residual")
    result = _np.empty(k, dtype=_np.float32)
    cdef float[::1] dst = result
    if k:
        with nogil:
            llm_quantization_residual(t_act, &x[0], &dst[0], k, 1)
    return result


def read_probe(const uint8_t[::1] buf, int threads):
    """Read every byte of buf (length a multiple of 64) with `threads` threads; returns a
    checksum. Benchmarks time it to measure memory read bandwidth."""
    if buf.shape[0] % 64:
        raise ValueError("read_probe: buffer length must be a multiple of 64")
    if threads < 1:
        raise ValueError(f"read_probe: thread count must be >= 1, got {threads}")
    cdef uint64_t checksum = 0
    if buf.shape[0]:
        with nogil:
            checksum = llm_read_probe(&buf[0], buf.shape[0], threads)
    return checksum


if _os.environ.get("LLMCLI_KERNELS", "").lower() == "scalar":
    llm_set_path(0)
