"""Text <-> token ids, exactly as the model was trained: byte-level BPE (SmolLM2) and
SentencePiece-style BPE (Gemma 3), built from a GGUF file's tokenizer metadata.

    tok = Tokenizer.from_gguf("smollm2.gguf")
    ids = tok.encode("I love programming")     # [..] (+ BOS when the model wants one)
    tok.decode(ids)                              # "I love programming"

Special tokens: control tokens (<|im_end|>, <end_of_turn>, ...) are recognised in text
only with parse_special=True, which is for text we build ourselves (a chat template's
markers). Text from a user is encoded with it off, so typing "<|im_end|>" cannot end a
turn. User-defined tokens (Gemma's whitespace runs, <table>, ...) are part of the
vocabulary proper and always match, as in SentencePiece, llama.cpp and HF.

The work happens in C (llmcli._kernels.BPECore): matching special tokens, splitting
words, merging, with a cache of words already encoded.
"""
import codecs

import numpy as np

from llmcli.errors import TokenizerError
from llmcli.token_text import SPACE_MARK, encoder_texts, piece_bytes
from llmcli.vocab import END_MARKERS, TokenType, vocab_from_metadata

_SPECIAL_TYPES = (TokenType.CONTROL, TokenType.USER_DEFINED, TokenType.UNKNOWN)


class Tokenizer:
    """Encode and decode with one model's vocabulary. Build with from_metadata/from_gguf."""

    def __init__(self, vocab):
        from llmcli._kernels import BPECore

        self.vocab = vocab
        self.n_vocab = vocab.n_vocab
        self.bos_id, self.eos_id = vocab.bos_id, vocab.eos_id
        self.add_bos, self.add_eos = vocab.add_bos, vocab.add_eos
        self.chat_template = vocab.chat_template
        self._bytes = [None] * self.n_vocab  # token id -> decoded bytes, filled on demand
        types = vocab.token_types
        self._markers = np.isin(types, (TokenType.CONTROL, TokenType.UNKNOWN)).tolist()
        texts = encoder_texts(vocab.model, vocab.pieces, vocab.packed_pieces, types)
        # no token stands for more bytes of text than this (its text as the encoder
        # matches it is at least as long; 4 covers an unknown character)
        self.max_token_bytes = max(int(np.diff(texts.offsets).max()), 4)
        self._core = BPECore(
            1 if vocab.model == "llama" else 0, vocab.pretokenizer or "gpt2",
            texts.blob, texts.offsets,
            priorities=_score_order(vocab.scores), merges=vocab.merges,
            byte_ids=self._byte_ids(texts),
            always_ids=np.flatnonzero(types == TokenType.USER_DEFINED),
            special_ids=np.flatnonzero(np.isin(types, _SPECIAL_TYPES)),
            unk_id=-1 if vocab.unk_id is None else vocab.unk_id,
            add_space_prefix=vocab.model == "llama" and vocab.add_space_prefix,
            ignore_merges=vocab.ignore_merges,
            crossing_ids=_crossing_ids(texts) if vocab.model == "llama" else None)
        self.eot_id = vocab.eot_id if vocab.eot_id is not None else self._find_first(END_MARKERS)
        self.eog_ids = frozenset(self._end_of_generation_ids())

    @classmethod
    def from_metadata(cls, metadata):
        """Build from a GGUF metadata dict. Raises TokenizerError naming a bad key."""
        return cls(vocab_from_metadata(metadata))

    @classmethod
    def from_gguf(cls, path):
        """Build from a .gguf file's metadata; tensor data is not touched."""
        from llmcli.gguf import open_gguf

        return cls.from_metadata(open_gguf(path).metadata)

    # ---- building ----

    def _byte_ids(self, texts):
        """byte -> token: the single-byte token (byte-level BPE), or <0xXX> (SentencePiece
        byte fallback). -1 where the vocab has none: such a byte is dropped, as llama.cpp
        and HF do (SmolLM2 lacks 21 bytes that never occur in UTF-8 text, e.g. 0xC0)."""
        byte_ids = np.full(256, -1, dtype=np.int32)
        types = self.vocab.token_types
        if self.vocab.model == "llama":
            for i in np.flatnonzero(types == TokenType.BYTE):
                b = self.token_bytes(int(i))
                if len(b) == 1:
                    byte_ids[b[0]] = i
        else:
            for i in np.flatnonzero((texts.lengths() == 1) & (types != TokenType.CONTROL)):
                byte_ids[texts[i][0]] = i
        return byte_ids

    def _find_first(self, texts):
        for text in texts:
            token = self._core.find(text.encode())
            if token >= 0:
                return token
        return None

    def _end_of_generation_ids(self):
        """EOS, EOT, and every control token whose text marks an end (SmolLM2: both
        <|endoftext|> and <|im_end|>). Unlike llama.cpp we do not add FIM repo-name tokens
        (<reponame>, SmolLM2 id 4): they open a code file, they do not end a turn."""
        ids = {i for i in (self.eos_id, self.eot_id) if i is not None}
        for text in END_MARKERS:
            token = self._core.find(text.encode())
            if token >= 0 and self.vocab.token_types[token] == TokenType.CONTROL:
                ids.add(token)
        return ids

    # ---- encoding ----

    def encode(self, text, *, add_special=True, parse_special=False):
        """text -> ids. add_special adds BOS/EOS as the model's metadata asks;
        parse_special turns control-token texts into those tokens (off for user text)."""
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TokenizerError(f"text has a lone surrogate at character {exc.start}; "
                                 "it cannot be encoded as UTF-8") from None
        ids = self._core.encode(data, parse_special)
        if add_special and self.add_bos:
            ids.insert(0, self.bos_id)
        if add_special and self.add_eos:
            ids.append(self.eos_id)
        return ids

    # ---- decoding ----

    def token_piece(self, token_id):
        """The token's string as stored in the vocabulary ('Ġlove', '▁love', '<0x0A>')."""
        return self.vocab.pieces[self._check_id(token_id)]

    def token_type(self, token_id):
        return TokenType(int(self.vocab.token_types[self._check_id(token_id)]))

    def is_special(self, token_id):
        """Control and unknown tokens: markers, not text."""
        return self._markers[self._check_id(token_id)]

    def token_bytes(self, token_id):
        """The bytes the token stands for in text (control tokens: their own text)."""
        cached = self._bytes[self._check_id(token_id)]
        if cached is None:
            cached = self._bytes[token_id] = piece_bytes(
                self.vocab.model, self.vocab.pieces[token_id], self.vocab.token_types[token_id])
        return cached

    def decode(self, ids, *, skip_special=False):
        """ids -> text. Bytes that are not valid UTF-8 become U+FFFD."""
        data = b"".join(self._text_bytes(ids, skip_special))
        return data.decode("utf-8", errors="replace")

    def stream_decoder(self, *, skip_special=False):
        return StreamDecoder(self, skip_special=skip_special)

    def _text_bytes(self, ids, skip_special):
        first = True
        for token_id in ids:
            if skip_special and self.is_special(token_id):
                self._check_id(token_id)
                continue
            data = self.token_bytes(token_id)
            if first and not self.is_special(token_id):
                data = self._strip_space_prefix(data)
                first = False
            yield data

    def _strip_space_prefix(self, data):
        # encode() put this space there (add_space_prefix); the text never had it
        if self.vocab.model == "llama" and self.vocab.add_space_prefix and data[:1] == b" ":
            return data[1:]
        return data

    def _check_id(self, token_id):
        if not isinstance(token_id, (int, np.integer)) or isinstance(token_id, bool) \
                or not 0 <= token_id < self.n_vocab:
            raise TokenizerError(f"token id {token_id!r} is outside the vocabulary (0..{self.n_vocab - 1})")
        return int(token_id)

    def __repr__(self):
        return (f"Tokenizer({self.vocab.model}, pre={self.vocab.pretokenizer}, "
                f"n_vocab={self.n_vocab}, bos={self.bos_id}, eos={self.eos_id})")


class StreamDecoder:
    """Decode ids one at a time, emitting only complete UTF-8: a char split across tokens
    is held back until whole. Bytes that can never become valid UTF-8 are replaced by
    U+FFFD when that is certain; a dangling partial char at the end only on flush().
    Concatenating every feed() and the flush() equals Tokenizer.decode(all ids)."""

    def __init__(self, tokenizer, *, skip_special=False):
        self._tokenizer = tokenizer
        self._skip_special = skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._first = True

    def feed(self, token_id):
        tokenizer = self._tokenizer
        if self._skip_special and tokenizer.is_special(token_id):
            return ""
        data = tokenizer.token_bytes(token_id)
        if self._first and not tokenizer.is_special(token_id):
            data = tokenizer._strip_space_prefix(data)
            self._first = False
        return self._utf8.decode(data)

    def flush(self):
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text


def _crossing_ids(texts):
    """SentencePiece tokens holding U+2581 after their first char: they can span the start
    of a word, which the C encoder must know."""
    data = np.frombuffer(texts.blob, dtype=np.uint8)
    mark = SPACE_MARK.encode("utf-8")
    positions = np.flatnonzero((data[:-2] == mark[0]) & (data[1:-1] == mark[1]) & (data[2:] == mark[2]))
    owners = np.searchsorted(texts.offsets, positions, side="right") - 1
    owners = owners[positions != texts.offsets[owners]]
    # owners is sorted: keep each first of a run (np.unique would import numpy.ma, ~18 ms
    # of every start)
    first = np.ones(len(owners), dtype=bool)
    first[1:] = owners[1:] != owners[:-1]
    return owners[first].tolist()


def _score_order(scores):
    """SentencePiece merges the pair whose token scores highest first: rank the scores,
    0 = highest, equal scores sharing a rank (then the leftmost pair goes first)."""
    if scores is None:
        return None
    return np.unique(-scores, return_inverse=True)[1].astype(np.int32)
