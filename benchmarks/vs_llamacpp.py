"""llmcli side by side with its peers on the same model, prompt length, generation
length and thread count, in one run: prefill (pp) and decode (tg) tokens/s, each peer's
figure and the ratio ours/theirs.

Peers: llama.cpp (via llama-cpp-python), transformers (float32, torch CPU), and our own
NumPy reference forward (the baseline that shows what the C core buys). Each measurement
runs in a fresh worker process (so engines never share OpenMP pools or caches), and the
engines alternate round by round, so a noisy neighbour hurts all of them alike.

This script installs nothing. Peers live where you put them, e.g. separate venvs:
    python3 -m venv ~/venvs/lcpp && CMAKE_ARGS="-DGGML_NATIVE=ON" ~/venvs/lcpp/bin/pip install llama-cpp-python
    python3 -m venv ~/venvs/torch && ~/venvs/torch/bin/pip install torch==2.13.0 transformers gguf accelerate
Then:
    python benchmarks/vs_llamacpp.py -m smollm2 -p 512 -n 128 -t 2 -r 3 \
        --llamacpp-python ~/venvs/lcpp/bin/python --torch-python ~/venvs/torch/bin/python
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout: use this tree's llmcli (built in place)
    sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------- engines (worker side)

class LlamaCppEngine:
    def __init__(self, path, n_ctx, threads):
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_ubatch=512,
                         n_threads=threads, n_threads_batch=threads, verbose=False)
        self.n_vocab = self.llm.n_vocab()

    def reset(self):
        # Rewinds the token count; the next eval drops cache entries past it.
        self.llm.reset()

    def eval(self, ids):
        self.llm.eval(ids)


class TransformersEngine:
    def __init__(self, path, n_ctx, threads):
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32)
        self.model.eval()
        self.n_vocab = self.model.config.vocab_size
        self.cache = None

    def reset(self):
        self.cache = None

    def eval(self, ids):
        with self.torch.inference_mode():
            out = self.model(self.torch.tensor([ids]), past_key_values=self.cache, use_cache=True,
                             logits_to_keep=1)
        self.cache = out.past_key_values


class LlmcliEngine:
    def __init__(self, path, n_ctx, threads):
        import llmcli

        self.model = llmcli.load(str(path), n_ctx=n_ctx, threads=threads)
        self.n_vocab = self.model.config.n_vocab

    def reset(self):
        self.model.reset()

    def eval(self, ids):
        self.model.eval(ids)


class NumpyReferenceEngine:
    """Our own forward in plain NumPy on dequantized float32 weights: what the C core buys."""

    def __init__(self, path, n_ctx, threads):
        from llmcli.reference import load_reference

        self.model = load_reference(str(path), n_ctx=n_ctx)
        self.n_vocab = self.model.config.n_vocab

    def reset(self):
        self.model.reset()

    def eval(self, ids):
        self.model.eval(ids)


ENGINES = {"llmcli": LlmcliEngine, "llama.cpp": LlamaCppEngine,
           "transformers": TransformersEngine, "numpy-ref": NumpyReferenceEngine}


def run_worker(args):
    """Load one engine, time pp and tg once, print one JSON line."""
    from llmcli.speed import tokens_per_second

    start = time.perf_counter()
    engine = ENGINES[args.worker](Path(args.model_path), args.n_prompt + args.n_gen + 8,
                                  args.threads)
    load_s = time.perf_counter() - start
    result = {"engine": args.worker, "load_s": load_s}
    for test, n in (("pp", args.n_prompt), ("tg", args.n_gen)):
        if n > 0:
            result[test] = tokens_per_second(engine, test, n, engine.n_vocab, 1)["tokens_per_s"]
    print(json.dumps(result))


# ---------------------------------------------------------------- driver side

def measure_once(engine, python, args, model_path):
    # Each engine runs alone in its own process, with the environment as a user has it:
    # no forced OMP_WAIT_POLICY=PASSIVE (sleeping OpenMP workers cost llmcli and llama.cpp,
    # both OpenMP builds, a futex wake-up per parallel region: decode 2-4x slower).
    env = dict(os.environ)
    if engine in ("llama.cpp", "transformers"):
        # Peers import only llmcli.speed (pure Python) from this tree.
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if engine == "numpy-ref":  # BLAS threads, set before NumPy starts
        env.update(OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    n_gen = args.n_gen if engine in ("llmcli", "llama.cpp") else min(args.n_gen, args.slow_n_gen)
    cmd = [python, __file__, "--worker", engine, "--model-path", str(model_path),
           "-p", str(args.n_prompt), "-n", str(n_gen), "-t", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{engine} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(samples, key):
    values = [s[key] for s in samples if key in s]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="smollm2")
    parser.add_argument("-p", "--n-prompt", type=int, default=512)
    parser.add_argument("-n", "--n-gen", type=int, default=128)
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    parser.add_argument("--llamacpp-python", help="interpreter with llama-cpp-python")
    parser.add_argument("--torch-python", help="interpreter with torch + transformers + gguf")
    parser.add_argument("--slow-n-gen", type=int, default=32,
                        help="decode steps for the slow peers (transformers, numpy-ref)")
    parser.add_argument("--no-numpy-ref", action="store_true",
                        help="skip our NumPy reference forward")
    parser.add_argument("--worker", choices=sorted(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args)

    from llmcli import models

    model_path = models.ensure_local(args.model)
    engines = {"llmcli": sys.executable}
    if args.llamacpp_python:
        engines["llama.cpp"] = args.llamacpp_python
    if args.torch_python:
        engines["transformers"] = args.torch_python
    if not args.no_numpy_ref:
        engines["numpy-ref"] = sys.executable
    samples = {name: [] for name in engines}
    for round_no in range(args.rounds):
        for name, python in engines.items():
            samples[name].append(measure_once(name, python, args, model_path))
            print(f"round {round_no + 1}: {json.dumps(samples[name][-1])}", file=sys.stderr)
    report(args, samples)


def report(args, samples):
    ours = {key: summarize(samples["llmcli"], key) for key in ("pp", "tg", "load_s")}
    print(f"model {args.model}, pp{args.n_prompt}, tg{args.n_gen}, {args.threads} threads, "
          f"{args.rounds} rounds (mean ± sd)")
    print(f"{'engine':<14}{'pp t/s':>18}{'tg t/s':>18}{'load s':>10}{'pp ratio':>10}{'tg ratio':>10}")
    for name, runs in samples.items():
        row = {key: summarize(runs, key) for key in ("pp", "tg", "load_s")}
        cells = [f"{row[k][0]:.1f} ± {row[k][1]:.1f}" if row[k] else "-" for k in ("pp", "tg")]
        ratios = [f"{ours[k][0] / row[k][0]:.2f}" if row[k] else "-" for k in ("pp", "tg")]
        print(f"{name:<14}{cells[0]:>18}{cells[1]:>18}{row['load_s'][0]:>10.2f}"
              f"{ratios[0]:>10}{ratios[1]:>10}")
    print("ratio = llmcli / engine (above 1: llmcli faster)")


if __name__ == "__main__":
    from llmcli.errors import LLMError

    try:
        main()
    except LLMError as exc:  # an unknown model, a bad file: one line, not a traceback
        sys.exit(f"{Path(__file__).name}: {exc}")
