"""Cold start and memory: how long `llm generate -n 1 --raw Hi` takes from process start
to its first byte of output, and the peak RSS of a 128-token generation, next to
llama.cpp's (via llama-cpp-python: load the model, print the first generated token).

Each measurement is a fresh process, and the engines alternate, so a busy neighbour
hurts both alike. The model file is read once before timing, as it is after a first run.
Python's bytecode cache is on in the children, as it is by default (an installed package
has it from pip); a PYTHONDONTWRITEBYTECODE=1 environment would otherwise make every
llmcli start recompile its modules (~35 ms here).

The memory target of issue 6: peak RSS <= model file + KV cache + 100 MiB, where the KV
cache counts the rows of the tokens run (prompt + generated; llmcli's cache is allocated
for the whole context but only written rows take memory).

This script installs nothing; llama.cpp is measured with --llamacpp-python:
    python benchmarks/cold_start.py --models smollm2,gemma3 -r 10 \
        --llamacpp-python ~/venvs/lcpp/bin/python
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout: use this tree's llmcli (built in place)
    sys.path.insert(0, str(REPO))

PROMPT = "Once upon a time"
N_GEN = 128

# llama.cpp's side: load, then stream one token (the first byte out) or N_GEN tokens.
LLAMA_CPP_CODE = r"""
import sys
from llama_cpp import Llama
path, prompt, n_gen, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=path, n_ctx=4096, n_threads=threads, n_threads_batch=threads,
            verbose=False)
for chunk in llm.create_completion(prompt, max_tokens=n_gen, temperature=0, stream=True):
    sys.stdout.write(chunk["choices"][0]["text"] or ".")
    sys.stdout.flush()
"""


def child_env():
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def command(engine, python, model_path, prompt, n_gen, threads):
    if engine == "llmcli":
        return [python, "-m", "llmcli", "generate", "-m", str(model_path), "-n", str(n_gen),
                "-t", str(threads), "--raw", "--ignore-eos", prompt]
    return [python, "-c", LLAMA_CPP_CODE, str(model_path), prompt, str(n_gen), str(threads)]


def run(cmd):
    """(seconds to the first byte on stdout, peak RSS in MiB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(), cwd="/")
    first = proc.stdout.read(1)
    first_byte_s = time.perf_counter() - start
    proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not first:
        sys.exit(f"cold_start.py: {cmd[0]} failed ({proc.returncode}): "
                 f"{err.decode(errors='replace').strip()[-500:]}")
    return first_byte_s, usage.ru_maxrss / 1024


def kv_bytes_per_token(model_path):
    from llmcli.config import config_from_metadata
    from llmcli.gguf import open_gguf

    config = config_from_metadata(open_gguf(model_path).metadata)
    return 2 * config.n_layers * config.n_kv * 4  # K and V rows, float32


def measure(model, model_path, engines, rounds, threads):
    # read the file once, and write llmcli's bytecode cache, before timing
    for engine, python in engines.items():
        run(command(engine, python, model_path, "Hi", 1, threads))
    starts = {engine: [] for engine in engines}
    for _ in range(rounds):
        for engine, python in engines.items():
            starts[engine].append(run(command(engine, python, model_path, "Hi", 1, threads))[0])
    rss = {engine: run(command(engine, python, model_path, PROMPT, N_GEN, threads))[1]
           for engine, python in engines.items()}
    return starts, rss


def report(model, model_path, starts, rss, threads):
    file_mb = model_path.stat().st_size / 2**20
    # the prompt's tokens are few; count 16 of them, a generous bound
    kv_mb = kv_bytes_per_token(model_path) * (16 + N_GEN) / 2**20
    budget = file_mb + kv_mb + 100
    print(f"{model}: file {file_mb:.1f} MiB, {threads} threads")
    for engine, values in starts.items():
        print(f"  {engine:<10} first byte: median {statistics.median(values):.3f} s, "
              f"min {min(values):.3f}, max {max(values):.3f} ({len(values)} starts); "
              f"peak RSS over {N_GEN} tokens {rss[engine]:.1f} MiB")
    ours = statistics.median(starts["llmcli"])
    verdict = "met" if ours <= 0.5 else "missed"
    print(f"  cold start target <= 0.5 s: {verdict} ({ours:.3f} s)")
    verdict = "met" if rss["llmcli"] <= budget else "missed"
    print(f"  RSS target <= file + KV ({kv_mb:.1f} MiB) + 100 MiB = {budget:.1f} MiB: {verdict} "
          f"({rss['llmcli']:.1f} MiB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2,gemma3")
    parser.add_argument("-r", "--rounds", type=int, default=10)
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("--llamacpp-python", help="interpreter with llama-cpp-python")
    parser.add_argument("--model-dir", default=os.environ.get("LLMCLI_TEST_MODEL_DIR", ""),
                        help="a folder holding NAME.gguf (default: llmcli's models)")
    args = parser.parse_args()
    if args.rounds < 1 or args.threads < 1:
        sys.exit("cold_start.py: --rounds and --threads must be at least 1")

    from llmcli import models
    from llmcli.errors import LLMError

    engines = {"llmcli": sys.executable}
    if args.llamacpp_python:
        engines["llama.cpp"] = args.llamacpp_python
    for model in args.models.split(","):
        local = Path(args.model_dir, f"{model}.gguf") if args.model_dir else None
        try:
            model_path = local if local and local.exists() else \
                Path(models.ensure_local(model, quiet=True))
        except LLMError as exc:
            sys.exit(f"cold_start.py: {exc}")
        starts, rss = measure(model, model_path, engines, args.rounds, args.threads)
        report(model, model_path, starts, rss, args.threads)


if __name__ == "__main__":
    main()
