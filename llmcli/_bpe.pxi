# The tokenizer's compiled core (csrc/tokenizer.h): special-token matching, pre-tokenizer
# scanners and BPE merge loops. llmcli/tokenizer.py builds a BPECore from GGUF metadata.
#
# encode() keeps the GIL: the word cache inside the model is shared mutable state, and
# the call is short (a megabyte of text takes tens of milliseconds).
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free

cdef extern from "tokenizer.h":
    ctypedef struct tok_ids:
        int32_t *data
        int64_t len
        int64_t cap
    ctypedef struct tok_offs:
        int64_t *data
        int64_t len
        int64_t cap
    ctypedef struct tok_vocab:
        pass
    ctypedef struct tok_merges:
        pass
    ctypedef struct tok_trie:
        pass
    ctypedef struct tok_model:
        int ignore_merges
        int add_space_prefix
        int spm_split_words
        const int32_t *crossing
        int32_t n_crossing
        int32_t unk_id
        int32_t byte_ids[256]
        const int32_t *priorities
        tok_vocab vocab
        tok_merges merges
        tok_trie always_trie
        tok_trie special_trie

    int tok_model_init(tok_model *m, int kind, int pretok, const uint8_t *blob,
                       const int64_t *offsets, int32_t n_tokens)
    void tok_model_free(tok_model *m)
    int tok_merges_init(tok_merges *m, int32_t n, const int32_t *left, const int32_t *right,
                        const int32_t *merged)
    int32_t tok_vocab_find(const tok_vocab *v, const uint8_t *p, int64_t n)
    int tok_trie_init(tok_trie *t, const tok_vocab *v, int32_t n, const int32_t *ids)
    int tok_encode(tok_model *m, const uint8_t *text, int64_t n, int parse_special,
                   tok_ids *out)
    int tok_pretokenize(int rule, const uint8_t *text, int64_t n, tok_offs *ends)

BPE_KIND_BYTE_LEVEL = 0
BPE_KIND_SPM = 1
# pre-tokenizer rules of byte-level BPE, by the name llmcli.tokenizer resolves them to
BPE_PRETOKENIZERS = {"gpt2": 0, "smollm": 1, "llama3": 2, "qwen2": 3}


cdef int32_t[::1] _int32_view(object values):
    import numpy
    return numpy.ascontiguousarray(values, dtype=numpy.int32).reshape(-1)


cdef _check_ids(str what, object values, int64_t n_tokens, int64_t lowest=0):
    """ValueError unless every id is in [lowest, n_tokens): the C tables index with them."""
    import numpy
    ids = numpy.asarray(values, dtype=numpy.int64).reshape(-1)
    if ids.size and (ids.min() < lowest or ids.max() >= n_tokens):
        raise ValueError(f"{what}: ids must lie in [{lowest}, {n_tokens}), got "
                         f"{ids.min()}..{ids.max()}")


cdef class BPECore:
    """A vocabulary ready to encode: token texts (raw bytes), merges (byte-level) or
    merge priorities (SentencePiece: 0 for the highest score, equal scores equal), and
    special tokens. Arrays are copied or kept referenced for the core's lifetime."""
    cdef tok_model model
    cdef bint ready
    cdef bytes blob
    cdef const int64_t[::1] offsets
    cdef int32_t[::1] priorities
    cdef int32_t[::1] crossing

    def __cinit__(self, int kind, str pretok, bytes blob, offsets, *, priorities=None,
                  merges=None, byte_ids, always_ids, special_ids, int unk_id=-1,
                  bint add_space_prefix=False, bint ignore_merges=False,
                  crossing_ids=None):
        import numpy
        self.ready = False
        self.blob = blob
        self.offsets = numpy.ascontiguousarray(offsets, dtype=numpy.int64)
        if not 2 <= self.offsets.shape[0] <= 2**31:
            raise ValueError("offsets must describe between 1 and 2**31 - 1 tokens")
        cdef int32_t n_tokens = self.offsets.shape[0] - 1
        offsets_array = numpy.asarray(self.offsets)
        if self.offsets[0] != 0 or self.offsets[n_tokens] != len(blob) \
                or (numpy.diff(offsets_array) < 0).any():
            raise ValueError("offsets do not describe the token blob")
        # the C side trusts every id and length it is given: check them all here
        _check_ids("byte_ids", byte_ids, n_tokens, lowest=-1)
        _check_ids("always_ids", always_ids, n_tokens)
        _check_ids("special_ids", special_ids, n_tokens)
        _check_ids("unk_id", [unk_id], n_tokens, lowest=-1)
        if crossing_ids is not None:
            _check_ids("crossing_ids", crossing_ids, n_tokens)
        if merges is not None:
            for part in merges:
                _check_ids("merges", part, n_tokens)
        if kind == BPE_KIND_SPM and priorities is None:
            raise ValueError(f"SentencePiece vocabularies need {n_tokens} priorities")
        if priorities is not None:  # they index one bucket per token in merge_queue.c
            _check_ids("priorities", priorities, n_tokens)
        if kind == BPE_KIND_BYTE_LEVEL and merges is None:
            merges = ([], [], [])   # the merge loop always consults the table
        if tok_model_init(&self.model, kind, BPE_PRETOKENIZERS[pretok],
                          <const uint8_t *>self.blob, &self.offsets[0], n_tokens):
            raise MemoryError()
        self.ready = True
        cdef int32_t[::1] bytes_view = _int32_view(byte_ids)
        if bytes_view.shape[0] != 256:
            raise ValueError("byte_ids must have 256 entries")
        for b in range(256):
            self.model.byte_ids[b] = bytes_view[b]
        self.model.unk_id = unk_id
        self.model.add_space_prefix = add_space_prefix
        self.model.ignore_merges = ignore_merges
        if crossing_ids is not None:
            # SentencePiece words are cut at U+2581 unless too many tokens span one
            self.crossing = _int32_view(list(crossing_ids) or [0])
            self.model.crossing = &self.crossing[0]
            self.model.n_crossing = len(crossing_ids)
            self.model.spm_split_words = len(crossing_ids) <= 64
        if priorities is not None:  # SentencePiece: merge order of each token
            self.priorities = _int32_view(priorities)
            if self.priorities.shape[0] != n_tokens:
                raise ValueError("one priority per token is needed")
            self.model.priorities = &self.priorities[0]
        if merges is not None:
            self._set_merges(merges)
        self._set_trie(&self.model.always_trie, always_ids)
        self._set_trie(&self.model.special_trie, special_ids)

    cdef _set_merges(self, merges):
        cdef int32_t[::1] left = _int32_view(merges[0])
        cdef int32_t[::1] right = _int32_view(merges[1])
        cdef int32_t[::1] merged = _int32_view(merges[2])
        cdef int32_t n = left.shape[0]
        if right.shape[0] != n or merged.shape[0] != n:
            raise ValueError("merge arrays differ in length")
        if n == 0:
            left = right = merged = _int32_view([0])  # a valid pointer for an empty table
        if tok_merges_init(&self.model.merges, n, &left[0], &right[0], &merged[0]):
            raise MemoryError()

    cdef _set_trie(self, tok_trie *trie, ids):
        cdef int32_t[::1] view = _int32_view(list(ids) or [0])
        cdef int32_t n = len(ids)
        if tok_trie_init(trie, &self.model.vocab, n, &view[0]):
            raise MemoryError()

    def __dealloc__(self):
        if self.ready:
            tok_model_free(&self.model)

    def find(self, bytes text):
        """The id of the token whose text (raw bytes; U+2581 for spaces in
        SentencePiece vocabularies) is exactly `text`, or -1."""
        return tok_vocab_find(&self.model.vocab, <const uint8_t *>text, len(text))

    def encode(self, bytes text, bint parse_special=False):
        """UTF-8 text -> token ids (no BOS/EOS: the caller adds those)."""
        cdef tok_ids out
        out.data = NULL
        out.len = out.cap = 0
        cdef const uint8_t *data = <const uint8_t *>text
        cdef int rc = tok_encode(&self.model, data, len(text), parse_special, &out)
        try:
            if rc:
                raise MemoryError()
            return [out.data[i] for i in range(out.len)]
        finally:
            free(out.data)


def bpe_pretokenize(str rule, bytes text):
    """Split UTF-8 text into words by a byte-level pre-tokenizer rule: the byte offset
    where each word ends."""
    cdef tok_offs ends
    ends.data = NULL
    ends.len = ends.cap = 0
    cdef int rc = tok_pretokenize(BPE_PRETOKENIZERS[rule], <const uint8_t *>text, len(text), &ends)
    try:
        if rc:
            raise MemoryError()
        return [ends.data[i] for i in range(ends.len)]
    finally:
        free(ends.data)
