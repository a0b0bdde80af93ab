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
"""
import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench_kernels import read_bandwidth  # noqa: E402  (the same probe, this folder)
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


def measure(path, threads, n_gen, rounds, buffer):
    model = load(path, n_ctx=n_gen + 32, threads=threads)
    per_token = weight_bytes_per_token(path)
    fractions, speeds, probes = [], [], []
    for _ in range(rounds):
        before, _ = read_bandwidth(buffer, threads, 5)  # wall-clock GB/s
        tg = tokens_per_second(model, "tg", n_gen, model.config.n_vocab, 1)["tokens_per_s"]
        after, _ = read_bandwidth(buffer, threads, 5)
        probe = max(before, after)
        speeds.append(tg)
        probes.append(probe)
        fractions.append(tg * per_token / 1e9 / probe)
    return per_token, speeds, probes, fractions


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2,gemma3")
    parser.add_argument("--model-dir", default=os.environ.get("LLMCLI_TEST_MODEL_DIR", ""))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("-n", "--n-gen", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from llmcli import models

    buffer = np.ones(GiB, np.uint8)  # touched, so the probe reads resident pages
    print(f"{'model':<9}{'threads':>8}{'MB/token':>10}{'tg tok/s':>10}{'decode GB/s':>13}"
          f"{'read GB/s':>11}{'fraction (min-max)':>22}")
    for name in args.models.split(","):
        local = Path(args.model_dir, f"{name}.gguf") if args.model_dir else None
        path = str(local) if local and local.exists() else str(models.ensure_local(name, quiet=True))
        for threads in [int(t) for t in args.threads.split(",")]:
            per_token, speeds, probes, fractions = measure(path, threads, args.n_gen,
                                                           args.rounds, buffer)
            tg = statistics.median(speeds)
            print(f"{name:<9}{threads:>8}{per_token / 1e6:>10.1f}{tg:>10.1f}"
                  f"{tg * per_token / 1e9:>13.1f}{statistics.median(probes):>11.1f}"
                  f"{100 * statistics.median(fractions):>12.0f}% ({100 * min(fractions):.0f}-"
                  f"{100 * max(fractions):.0f}%)")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
