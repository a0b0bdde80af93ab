"""The on-disk cache of tables derived from model files (llmcli/table_cache.py)."""
import numpy as np
import pytest

from llmcli import table_cache, vocab
from llmcli.gguf import open_gguf


class Source:
    """Raw bytes standing for a GGUF string array."""

    def __init__(self, data):
        self.data = data

    def raw_bytes(self):
        return self.data


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCLI_HOME", str(tmp_path))
    return tmp_path


def counting_build(calls, value):
    def build():
        calls.append(1)
        return (np.arange(value, dtype=np.int32), np.full(3, value, np.int32))
    return build


def test_second_call_reads_the_stored_tables(home):
    calls = []
    first = table_cache.cached_arrays("t", [Source(b"abc")], counting_build(calls, 5))
    second = table_cache.cached_arrays("t", [Source(b"abc")], counting_build(calls, 99))
    assert len(calls) == 1
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert len(list((home / "derived").glob("t-*.npz"))) == 1


def test_other_bytes_get_their_own_entry(home):
    calls = []
    table_cache.cached_arrays("t", [Source(b"abc")], counting_build(calls, 5))
    other = table_cache.cached_arrays("t", [Source(b"abd")], counting_build(calls, 7))
    assert len(calls) == 2 and other[1][0] == 7
    # the boundary between sources is part of the key
    table_cache.cached_arrays("t", [Source(b"ab"), Source(b"c")], counting_build(calls, 8))
    assert len(calls) == 3


def test_corrupt_entry_is_rebuilt_and_replaced(home):
    calls = []
    table_cache.cached_arrays("t", [Source(b"x")], counting_build(calls, 4))
    (entry,) = (home / "derived").glob("t-*.npz")
    entry.write_bytes(b"not a zip file")
    again = table_cache.cached_arrays("t", [Source(b"x")], counting_build(calls, 4))
    assert len(calls) == 2 and list(again[0]) == [0, 1, 2, 3]
    assert table_cache._load(entry) is not None


def test_sources_without_raw_bytes_are_never_cached(home):
    calls = []
    for _ in range(2):
        table_cache.cached_arrays("t", [["a", "b"]], counting_build(calls, 2))
    assert len(calls) == 2 and not (home / "derived").exists()


def test_unwritable_cache_dir_still_works(home):
    # a file where the directory should be (root ignores read-only permissions)
    (home / "derived").write_bytes(b"")
    calls = []
    result = table_cache.cached_arrays("t", [Source(b"x")], counting_build(calls, 3))
    assert len(calls) == 1 and list(result[1]) == [3, 3, 3]


def test_real_merges_from_the_cache_equal_the_built_ones(home, smollm2_path):
    metadata = open_gguf(smollm2_path).metadata
    pieces = vocab.string_list(metadata["tokenizer.ggml.tokens"], "tokens")
    built = vocab._merge_ids(vocab.string_list(metadata["tokenizer.ggml.merges"], "merges"), pieces)
    first = vocab._merges(metadata, pieces)     # builds and stores
    second = vocab._merges(metadata, pieces)    # reads
    assert len(list((home / "derived").glob("merges-*.npz"))) == 1
    for b, f, s in zip(built, first, second):
        np.testing.assert_array_equal(b, f)
        np.testing.assert_array_equal(b, s)
