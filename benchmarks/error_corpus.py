"""The broken-file corpus of the tests through the real `llm inspect`, one run per case:
exit status, `Error:` lines, traceback or not, wall and CPU time (issue 2's closing note).

    python benchmarks/error_corpus.py [SMOLLM2_PATH]    (default: /work/models/smollm2.gguf)

The cases are the tests' own: tests/test_gguf.py's BROKEN (headers, metadata, tensor
infos), tests/test_inspect.py's error_cases (missing file, directory, unknown type,
unsupported architecture, registry names...) and tests/test_hostile_files.py's special
files (FIFO, /dev/zero, legacy formats). Every child runs offline with an empty cache.
"""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def corpus(folder, smollm2_path):
    """case name -> the MODEL argument given to `llm inspect`."""
    from test_gguf import BROKEN
    from test_hostile_files import SPECIAL_FILES
    from test_inspect import error_cases

    cases = {}
    for name, (data, _) in BROKEN.items():
        path = folder / f"reader-{len(cases)}.gguf"
        path.write_bytes(data)
        cases[f"reader: {name}"] = path
    for name, (model, _) in error_cases(folder, smollm2_path).items():
        cases[f"inspect: {name}"] = model
    for name, (make, _) in SPECIAL_FILES.items():
        special = folder / f"special-{len(cases)}"
        special.mkdir()
        cases[f"special: {name}"] = make(special)
    return cases


def run_inspect(model, home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCLI_")}
    env.update({"PYTHONPATH": str(ROOT), "LLMCLI_HOME": str(home), "LLMCLI_OFFLINE": "1"})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "llmcli", "inspect", str(model)], env=env,
                            capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, wall, cpu


def main(smollm2_path):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = []
        for name, model in corpus(folder, smollm2_path).items():
            result, wall, cpu = run_inspect(model, folder / "home")
            lines = result.stderr.splitlines()
            clean = (result.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: ")
                     and "Traceback" not in result.stderr and result.stdout == "")
            rows.append((name, result.returncode, clean, wall, cpu))
            print(f"{result.returncode:3d} {'clean' if clean else 'NOT CLEAN'} "
                  f"wall {wall:5.2f} s cpu {cpu:5.2f} s  {name}: {lines[:1]}")
    walls, cpus = [r[3] for r in rows], [r[4] for r in rows]
    print(f"\n{len(rows)} cases; exit 1 and one clean Error line: "
          f"{sum(r[2] for r in rows)}/{len(rows)}; exit statuses: "
          f"{sorted({r[1] for r in rows})}")
    print(f"wall per case: median {statistics.median(walls):.2f} s, max {max(walls):.2f} s; "
          f"CPU per case: median {statistics.median(cpus):.2f} s, max {max(cpus):.2f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/models/smollm2.gguf")
