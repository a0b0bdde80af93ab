# GGUF string arrays (csrc/gguf_strings.h): where each of a vocabulary's strings lies in
# the mapped file, and its strings packed back to back. llmcli/gguf.py checks the rest.
from libc.stdint cimport int64_t, uint8_t

import numpy as _np

cdef extern from "gguf_strings.h" nogil:
    int64_t gguf_string_bounds(const uint8_t *buf, int64_t size, int64_t pos, int64_t n,
                               int64_t *bounds)
    int64_t gguf_pack_strings(const uint8_t *buf, const int64_t *bounds, int64_t n,
                              uint8_t *blob, int64_t *offsets)
    int64_t gguf_join_strings(const uint8_t *buf, const int64_t *bounds, int64_t n,
                              uint8_t separator, uint8_t *out)


cdef int64_t _checked_count(str name, const uint8_t[::1] view, const int64_t[::1] b) except -1:
    """The number of strings at bounds b, after checking every one lies in the buffer
    with room for its 8-byte length (so the C copies below stay in bounds whatever the
    caller passes)."""
    cdef int64_t n = b.shape[0] - 1, i
    if n < 0 or b[0] < 0 or b[n] > view.shape[0]:
        raise ValueError(f"{name}: bounds do not lie in the buffer")
    for i in range(n):
        if b[i + 1] - b[i] < 8:
            raise ValueError(f"{name}: string {i} has no room for its length")
    return n


def string_bounds(buf, int64_t pos, int64_t n):
    """(bounds, bad) for n length-prefixed strings from byte `pos` of buf: bounds is
    int64[n + 1] (string i's u64 length at bounds[i], its bytes up to bounds[i + 1]);
    bad is -1, or the index of the first string that runs past the end of buf (bounds
    is then None)."""
    cdef const uint8_t[::1] view = buf
    cdef int64_t size = view.shape[0]
    if n < 0 or not 0 <= pos <= size:
        raise ValueError(f"string_bounds: n = {n}, pos = {pos} outside 0..{size}")
    bounds = _np.empty(n + 1, dtype=_np.int64)
    cdef int64_t[::1] out = bounds
    cdef const uint8_t *base = &view[0] if size else NULL
    cdef int64_t bad
    if size == 0:
        bad = 0 if n else -1
        out[0] = pos
    else:
        with nogil:
            bad = gguf_string_bounds(base, size, pos, n, &out[0])
    return (bounds, -1) if bad < 0 else (None, bad)


def pack_strings(buf, bounds):
    """(blob, offsets, split): the strings at `bounds` (from string_bounds) back to back,
    string i being blob[offsets[i]:offsets[i + 1]]; split is -1, or the first non-empty
    string that starts inside a UTF-8 character (see gguf_strings.h)."""
    cdef const uint8_t[::1] view = buf
    cdef const int64_t[::1] b = bounds
    cdef int64_t n = _checked_count("pack_strings", view, b)
    blob = bytearray(b[n] - b[0] - 8 * n)
    offsets = _np.empty(n + 1, dtype=_np.int64)
    cdef uint8_t[::1] blob_view = blob
    cdef int64_t[::1] off = offsets
    cdef uint8_t dummy = 0
    cdef int64_t split
    with nogil:
        split = gguf_pack_strings(&view[0] if n else NULL, &b[0], n,
                                  &blob_view[0] if blob_view.shape[0] else &dummy, &off[0])
    return bytes(blob), offsets, split


def join_strings(buf, bounds, int separator):
    """(joined, holding): the strings at `bounds` (from string_bounds) with the byte
    `separator` between each two, and how many strings hold that byte themselves (the
    joined bytes split back into the strings exactly when none does)."""
    cdef const uint8_t[::1] view = buf
    cdef const int64_t[::1] b = bounds
    cdef int64_t n = _checked_count("join_strings", view, b)
    if not 0 <= separator <= 255:
        raise ValueError(f"join_strings: separator {separator} is not a byte")
    if n == 0:
        return b"", 0
    joined = bytearray(b[n] - b[0] - 7 * n - 1)
    cdef uint8_t[::1] out = joined
    cdef uint8_t dummy = 0
    cdef int64_t holding
    with nogil:
        holding = gguf_join_strings(&view[0], &b[0], n, <uint8_t>separator,
                                    &out[0] if out.shape[0] else &dummy)
    return bytes(joined), holding
