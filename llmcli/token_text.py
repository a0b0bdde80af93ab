"""What a token stands for: the bytes of decoded text, and the texts the C encoder matches.

Byte-level BPE vocabularies (GPT-2, SmolLM2) spell bytes with a 256-char alphabet: the
printable Latin-1 bytes stand for themselves, the 68 others (controls, space, DEL, NBSP,
soft hyphen) for U+0100 upwards, so "Ġlove" is b" love". SentencePiece vocabularies
(Gemma) are plain UTF-8 with U+2581 for a space and <0xXX> tokens for single bytes.
Control, user-defined and unknown tokens are stored as their plain text in both.

Vocabularies have up to ~262k tokens, so the bulk conversions here avoid per-token
Python work (one join, then NumPy over all the chars at once).
"""
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPACE_MARK = "\u2581"  # SentencePiece's visible space
BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")

# token types (llama.cpp's numbering; llmcli.vocab.TokenType) as plain ints for loops
_UNKNOWN, _CONTROL, _USER_DEFINED, _BYTE = 2, 3, 4, 6
_PLAIN_TEXT_TYPES = (_CONTROL, _USER_DEFINED, _UNKNOWN)


def gpt2_byte_chars():
    """GPT-2's map byte -> char (see the module docstring)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(0x100 + extra)
            extra += 1
    return chars


BYTE_CHARS = gpt2_byte_chars()
CHAR_BYTES = {char: b for b, char in BYTE_CHARS.items()}
# str.translate table turning mapped chars back into the Latin-1 char of their byte
UNMAP_TABLE = str.maketrans({char: chr(b) for char, b in CHAR_BYTES.items()})
_LAST_MAPPED_CHAR = max(BYTE_CHARS.values())  # U+0143


@dataclass(frozen=True)
class PackedStrings:
    """Byte strings back to back: string i is blob[offsets[i]:offsets[i + 1]]."""
    blob: bytes
    offsets: np.ndarray  # int64 [n + 1]

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, i):
        return self.blob[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self):
        return np.diff(self.offsets)


class PackedText(Sequence):
    """UTF-8 strings packed in a PackedStrings (known valid), read like a list of str:
    each is decoded when it is read."""

    def __init__(self, packed):
        self.packed = packed

    def __len__(self):
        return len(self.packed)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"token index {index} out of range")
        return self.packed[index].decode("utf-8")


def pack(byte_strings):
    """Pack a list of bytes."""
    offsets = np.zeros(len(byte_strings) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, byte_strings), np.int64, len(byte_strings)), out=offsets[1:])
    return PackedStrings(b"".join(byte_strings), offsets)


def pack_utf8(strings):
    """Pack a list of str as UTF-8: one join and one encode, offsets found with NumPy at
    the NUL separators (strings holding NUL themselves take the slow path)."""
    if not strings:
        return PackedStrings(b"", np.zeros(1, dtype=np.int64))
    joined = np.frombuffer("\x00".join(strings).encode("utf-8"), dtype=np.uint8)
    separators = np.flatnonzero(joined == 0)
    if len(separators) != len(strings) - 1:
        return pack([s.encode("utf-8") for s in strings])
    ends = np.append(separators, len(joined)) - np.arange(len(strings))  # minus NULs before
    return PackedStrings(joined[joined != 0].tobytes(), np.concatenate(([0], ends)))


def piece_bytes(model, piece, token_type):
    """The bytes a token stands for in decoded text ("gpt2" byte-level or "llama" model)."""
    token_type = int(token_type)
    if token_type == _BYTE:
        match = BYTE_TOKEN.fullmatch(piece)
        if match:
            return bytes([int(match.group(1), 16)])
    if token_type in _PLAIN_TEXT_TYPES:
        return piece.encode("utf-8")
    if model == "llama":
        return piece.replace(SPACE_MARK, " ").encode("utf-8")
    return unmap_byte_level(piece)


def unmap_byte_level(piece):
    """A byte-level piece -> its bytes; a piece using chars outside the alphabet (not a
    byte-level string after all) keeps its UTF-8."""
    if not all(char in CHAR_BYTES for char in piece):
        return piece.encode("utf-8")
    return piece.translate(UNMAP_TABLE).encode("latin-1")


def encoder_texts(model, pieces, packed_pieces, token_types):
    """Each token's text as the C encoder matches it, packed: the SentencePiece piece
    itself (U+2581 for spaces); for byte-level BPE the bytes a normal token stands for,
    and the plain text of the others."""
    if model == "llama":
        return packed_pieces
    others = np.flatnonzero(token_types != 1)
    return _replaced(_unmap_all(pieces), others.tolist(),
                     [piece_bytes(model, pieces[i], token_types[i]) for i in others])


def _unmap_all(pieces):
    """Every byte-level piece as its bytes, packed, with NumPy over all chars at once (a
    str.translate over SmolLM2's 49k pieces took ~45 ms of every start). If a piece has
    chars outside the alphabet, each piece is unmapped on its own (see unmap_byte_level)."""
    lengths = np.fromiter(map(len, pieces), np.int64, len(pieces))
    codes = np.frombuffer("".join(pieces).encode("utf-32-le"), dtype=np.uint32)
    values = _BYTE_OF_CHAR[np.minimum(codes, len(_BYTE_OF_CHAR) - 1)]
    if values.size and values.min() < 0:
        return pack([unmap_byte_level(piece) for piece in pieces])
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])  # one byte per char
    return PackedStrings(values.astype(np.uint8).tobytes(), offsets)


# char code -> its byte in the byte-level alphabet, -1 for any other char (the last
# entry stands for every code above the alphabet)
_BYTE_OF_CHAR = np.full(ord(_LAST_MAPPED_CHAR) + 2, -1, dtype=np.int16)
_BYTE_OF_CHAR[[ord(char) for char in CHAR_BYTES]] = list(CHAR_BYTES.values())


def _replaced(packed, indices, values):
    """packed with string indices[j] (ascending) replaced by values[j]."""
    if not indices:
        return packed
    lengths, chunks, at = np.diff(packed.offsets), [], 0
    for i, value in zip(indices, values):
        chunks += [packed.blob[at:packed.offsets[i]], value]
        at = packed.offsets[i + 1]
        lengths[i] = len(value)
    chunks.append(packed.blob[at:])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return PackedStrings(b"".join(chunks), offsets)
