"""Decode as a fraction of the machine's read bandwidth, measured in one process: the
read probe (every byte of a 1 GiB buffer read once, as in bench_kernels.py), then real
decoding (tg: single-token steps from a one-token cache, as `llm bench` times them),
then the probe again, round after round.

    python benchmarks/decode_bandwidth.py [--models smollm2,gemma3] [--threads 1,2]
                                          [-n 128] [--rounds 5]

Decode reads every weight matrix once per token (the tied output matrix included), so
its bandwidth is (bytes of weight matrices) x (tokens/s). Per round the fraction is that
over the better of the two probes around it (the machine's capability at that moment);
the report gives the median and the range over rounds. The KV cache and activations are
not counted: at tg128 they are small beside the weights.

Each round also measures the other bound on decode: how fast the same kernels multiply
the same matrices (one token, two for a model's refined inputs) when the weights are
already in the cache ("in cache", bytes / the sum of the matrices' times; a matrix too
large for the caches is timed on its first rows). A decode step can go no faster than
either the read bandwidth or that, and on a shared host the second moves: other tenants
on the same physical cores take execution units the kernels need and the probe does not.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench_kernels import read_bandwidth  # noqa: E402  (the same probe, this folder)
from llmcli import _kernels as K  # noqa: E402
from llmcli import gguf  # noqa: E402
from llmcli.model import load  # noqa: E402
from llmcli.speed import tokens_per_second  # noqa: E402

GiB = 1 << 30


def weight_bytes_per_token(path):
    """Bytes of the 2-D weights one decode step multiplies by: every matrix of the
    layers and the output matrix (token_embd when the output is tied to it; otherwise
    token_embd only gives one row per token and is not counted)."""
    tensors = gguf.open_gguf(path).tensors
    tied = "output.weight" not in tensors
    return sum(t.nbytes for name, t in tensors.items()
               if len(t.shape) == 2 and (name != "token_embd.weight" or tied))


# The projections each architecture's decode step feeds with refined (two-row) inputs,
# as llmcli.model.REFINED_INPUTS names them, by tensor name.
PROJECTION_TENSORS = {"qkv": ("attn_q", "attn_k", "attn_v"), "wo": ("attn_output",),
                      "gate_up": ("ffn_gate", "ffn_up"), "down": ("ffn_down",)}
IN_CACHE_BYTES_PER_THREAD = 256 * 1024  # half an L2 here: the rows timed hot at a time


def decode_matrices(path):
    """(rows as uint8 (n_out, row_bytes), type, k, tokens per step) of every matrix a
    decode step multiplies: tokens is 2 where the model refines that projection's input."""
    from llmcli.model import REFINED_INPUTS

    gguf_file = gguf.open_gguf(path)
    refined = {t for group in REFINED_INPUTS.get(gguf_file.metadata["general.architecture"], ())
               for t in PROJECTION_TENSORS[group]}
    tied = "output.weight" not in gguf_file.tensors
    matrices = []
    for name, info in gguf_file.tensors.items():
        if len(info.shape) != 2 or (name == "token_embd.weight" and not tied):
            continue
        k, n_out = info.shape
        rows = gguf_file.tensor_data(name).reshape(n_out, -1)
        tokens = 2 if name.split(".")[-2] in refined else 1
        matrices.append((rows, int(info.type), k, tokens))
    return matrices


def in_cache_rate(matrices, threads):
    """GB/s of weights multiplied by the decode kernels with the weights in cache: each
    matrix (or its first rows, scaled up) timed on repeated calls after two warm-ups."""
    K.set_threads(threads)
    total_bytes, total_seconds = 0, 0.0
    for rows, qtype, k, tokens in matrices:
        n_hot = max(8, min(len(rows), IN_CACHE_BYTES_PER_THREAD * threads // rows.shape[1]))
        hot = rows[:n_hot]
        x = np.ones((tokens, k), np.float32)
        out = np.empty((tokens, n_hot), np.float32)
        for _ in range(2):
            K.matmul(hot, qtype, x, out)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(4):
                K.matmul(hot, qtype, x, out)
            best = min(best, (time.perf_counter() - start) / 4)
        total_bytes += rows.nbytes
        total_seconds += best * len(rows) / n_hot
    return total_bytes / total_seconds / 1e9


def measure(path, threads, n_gen, rounds, buffer):
    model = load(path, n_ctx=n_gen + 32, threads=threads)
    per_token = weight_bytes_per_token(path)
    matrices = decode_matrices(path)
    fractions, speeds, probes, in_cache = [], [], [], []
    for _ in range(rounds):
        before, _ = read_bandwidth(buffer, threads, 5)  # wall-clock GB/s
        cached = in_cache_rate(matrices, threads)
        tg = tokens_per_second(model, "tg", n_gen, model.config.n_vocab, 1)["tokens_per_s"]
        after, _ = read_bandwidth(buffer, threads, 5)
        probe = max(before, after)
        speeds.append(tg)
        probes.append(probe)
        in_cache.append(cached)
        fractions.append(tg * per_token / 1e9 / probe)
    return per_token, speeds, probes, in_cache, fractions


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2,gemma3")
    parser.add_argument("--model-dir", default=os.environ.get("LLMCLI_TEST_MODEL_DIR", ""))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("-n", "--n-gen", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rounds-detail", action="store_true",
                        help="print every round's figures")
    args = parser.parse_args()
    from llmcli import models

    buffer = np.ones(GiB, np.uint8)  # touched, so the probe reads resident pages
    print(f"{'model':<9}{'threads':>8}{'MB/token':>10}{'tg tok/s':>10}{'decode GB/s':>13}"
          f"{'read GB/s':>11}{'in cache GB/s':>15}{'fraction (min-max)':>22}")
    for name in args.models.split(","):
        local = Path(args.model_dir, f"{name}.gguf") if args.model_dir else None
        path = str(local) if local and local.exists() else str(models.ensure_local(name, quiet=True))
        for threads in [int(t) for t in args.threads.split(",")]:
            per_token, speeds, probes, in_cache, fractions = measure(
                path, threads, args.n_gen, args.rounds, buffer)
            tg = statistics.median(speeds)
            print(f"{name:<9}{threads:>8}{per_token / 1e6:>10.1f}{tg:>10.1f}"
                  f"{tg * per_token / 1e9:>13.1f}{statistics.median(probes):>11.1f}"
                  f"{statistics.median(in_cache):>15.1f}"
                  f"{100 * statistics.median(fractions):>12.0f}% ({100 * min(fractions):.0f}-"
                  f"{100 * max(fractions):.0f}%)")
            if args.rounds_detail:
                for i, (s, p, c, f) in enumerate(zip(speeds, probes, in_cache, fractions)):
                    print(f"  round {i + 1}: tg {s:.1f} tok/s, decode {s * per_token / 1e9:.1f}"
                          f" GB/s, read {p:.1f}, in cache {c:.1f}, fraction {100 * f:.0f}%")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
