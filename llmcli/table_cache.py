"""Tables derived from a model file, kept on disk between runs.

Some tables cost more to build than the rest of start-up together: the byte-level BPE
merges are ~49k 'left right' strings, each looked up three times in the vocabulary
(0.1-0.3 s of Python). They depend only on bytes of the GGUF file, so they are stored in
<cache dir>/derived/<name>-<digest>.npz, the digest a hash of exactly those bytes: an
edited or different file gets a new entry, never a stale one. A cache that cannot be
read or written is passed over silently and the tables are built as if it were absent.
"""
import hashlib
import os
import tempfile

import numpy as np

from llmcli.models import cache_dir

FORMAT = b"llmcli-derived-1"   # part of every digest: bump it when a table's meaning changes


def cached_arrays(name, sources, build):
    """The arrays `build()` returns (a tuple), from the cache when every source can give
    its raw bytes (`raw_bytes()`, as GGUF string arrays do); built directly otherwise."""
    digest = _digest(name, sources)
    if digest is None:
        return build()
    path = cache_dir() / "derived" / f"{name}-{digest}.npz"
    arrays = _load(path)
    if arrays is None:
        arrays = build()
        _store(path, arrays)
    return arrays


def _digest(name, sources):
    hasher = hashlib.blake2b(FORMAT + name.encode(), digest_size=16)
    for source in sources:
        raw_bytes = getattr(source, "raw_bytes", None)
        if raw_bytes is None:
            return None
        data = raw_bytes()
        hasher.update(len(data).to_bytes(8, "little"))
        hasher.update(data)
    return hasher.hexdigest()


def _load(path):
    try:
        with np.load(path, allow_pickle=False) as stored:
            return tuple(stored[f"a{i}"] for i in range(len(stored.files)))
    except Exception:  # absent, unreadable or corrupt: any of these only means "rebuild"
        return None


def _store(path, arrays):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, **{f"a{i}": array for i, array in enumerate(arrays)})
            os.replace(tmp, path)   # readers see the whole file or none
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:  # read-only or full cache dir: keep working without it
        pass
