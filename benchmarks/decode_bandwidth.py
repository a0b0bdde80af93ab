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
the same matrices, grouped as a decode step groups them (one token, two for a model's
refined inputs), when the weights are already in the cache ("in cache": bytes over the
sum of the groups' times). Decode can go no faster than either bound. On a shared host
the second one moves: tenants on the same physical cores take the execution units the
kernels need, and the probe, which barely computes, does not notice. With --rounds 8 or
more the report gives the correlation of the rounds' fractions with each bound.

The two bounds combine, group by group, into a ceiling (a roofline): a group takes at
least the longer of its time in cache (its kernels' speed) and its bytes over the read
bandwidth, and a step's groups run one after the other (each needs the one before), so
decode can go no faster than the sum. The report gives the ceiling as a fraction of the
read bandwidth (what these kernels could reach on this machine at that moment) and
decode as a fraction of the ceiling (what the step loses beyond the two bounds: memory
and computation not overlapping, threads waiting for each other, the small kernels
between the matrices).
"""
import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench_kernels import model_path, read_bandwidth  # noqa: E402  (this folder)
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


# A decode step's projections, by the tensor names they multiply: each group shares one
# input (one parallel region when the types allow, as in llmcli/_forward.pxi).
PROJECTIONS = {"qkv": ("attn_q", "attn_k", "attn_v"), "wo": ("attn_output",),
               "gate_up": ("ffn_gate", "ffn_up"), "down": ("ffn_down",)}
IN_CACHE_BYTES_PER_THREAD = 256 * 1024  # half an L2 here: the rows timed hot at a time


def decode_groups(path):
    """The matrix groups of one decode step: (k, tokens, [(rows, type), ...]) with rows
    as uint8 (n_out, row_bytes) of k values each; tokens is 2 where the model refines
    that projection's input (llmcli.model.REFINED_INPUTS), else 1. The output matrix is
    a group of its own."""
    from llmcli.model import REFINED_INPUTS

    gguf_file = gguf.open_gguf(path)
    refined = REFINED_INPUTS.get(gguf_file.metadata["general.architecture"], ())
    tensors = gguf_file.tensors

    def group(names, tokens):
        k = tensors[names[0]].shape[0]
        return k, tokens, [(gguf_file.tensor_data(n).reshape(tensors[n].shape[1], -1),
                            int(tensors[n].type)) for n in names]

    groups = []
    layer = 0
    while f"blk.{layer}.attn_q.weight" in tensors:
        for projection, names in PROJECTIONS.items():
            groups.append(group([f"blk.{layer}.{name}.weight" for name in names],
                                2 if projection in refined else 1))
        layer += 1
    tied = "output.weight" not in tensors
    groups.append(group(["token_embd.weight" if tied else "output.weight"], 1))
    return groups


def in_cache_seconds(groups, threads):
    """Per group, the seconds the decode kernels take to multiply its weights held in
    cache, the group in one call where its types share an activation format, as a decode
    step makes them. A group that fits in the threads' L2 caches is timed whole (repeated
    calls after two warm-ups); a larger one on the first rows of each matrix, twice as
    many rows as a second timing, so the call's fixed cost (paid once per group) is not
    scaled up."""
    K.set_threads(threads)
    seconds = []
    for k, tokens, group in groups:
        size = sum(w.nbytes for w, _ in group)
        share = IN_CACHE_BYTES_PER_THREAD * threads / size
        if share >= 1:
            seconds.append(hot_call_seconds(group, 1.0, k, tokens))
        else:
            full, half = (hot_call_seconds(group, share, k, tokens),
                          hot_call_seconds(group, share / 2, k, tokens))
            per_byte = max(full - half, 0.0) / (share / 2 * size)
            seconds.append(full + (1 - share) * size * per_byte)
    return seconds


def group_bytes(groups):
    """Bytes of weights in each group."""
    return [sum(w.nbytes for w, _ in group) for _, _, group in groups]


def in_cache_rate(groups, seconds):
    """GB/s of all the groups' weights over their summed in-cache times."""
    return sum(group_bytes(groups)) / sum(seconds) / 1e9


def group_floors(groups, seconds, read_gbs):
    """Per group, the least time it can take: no less than its kernels' time in cache
    (`seconds`) nor than its bytes at the read bandwidth."""
    return [max(t, size / (read_gbs * 1e9)) for t, size in zip(seconds, group_bytes(groups))]


def ceiling_rate(groups, seconds, read_gbs):
    """GB/s decode could reach at most: every group at its floor, one after the other."""
    return sum(group_bytes(groups)) / sum(group_floors(groups, seconds, read_gbs)) / 1e9


def hot_call_seconds(group, share, k, tokens):
    """Best time of one call over the first `share` of each matrix's rows (whole tiles),
    the rows in cache from the calls before it."""
    calls = [(w[:max(8, int(len(w) * share) // 8 * 8)], t) for w, t in group]
    x = np.ones((tokens, k), np.float32)
    outs = [np.empty((tokens, len(w)), np.float32) for w, _ in calls]
    shared = all(K.matmul_can_share(calls[0][1], t, tokens) for _, t in calls)

    def run():
        if shared:
            K.matmul_many([(w, t, out) for (w, t), out in zip(calls, outs)], x)
        else:
            for (w, t), out in zip(calls, outs):
                K.matmul(w, t, x, out)

    for _ in range(2):
        run()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(4):
            run()
        best = min(best, (time.perf_counter() - start) / 4)
    return best * sum(w.nbytes for w, _ in group) * share / sum(w.nbytes for w, _ in calls)


@dataclass(frozen=True)
class Round:
    tg: float          # tokens/s
    decode: float      # GB/s of weights
    read: float        # GB/s, the probe
    in_cache: float    # GB/s, the kernels on weights in cache
    ceiling: float     # GB/s, the roofline of the two

    @property
    def fraction(self):
        return self.decode / self.read


def measure(path, threads, n_gen, rounds, buffer):
    model = load(path, n_ctx=n_gen + 32, threads=threads)
    per_token = weight_bytes_per_token(path)
    groups = decode_groups(path)
    rounds_seen = []
    for _ in range(rounds):
        before, _ = read_bandwidth(buffer, threads, 5)  # wall-clock GB/s
        seconds = in_cache_seconds(groups, threads)
        tg = tokens_per_second(model, "tg", n_gen, model.config.n_vocab, 1)["tokens_per_s"]
        after, _ = read_bandwidth(buffer, threads, 5)
        probe = max(before, after)
        rounds_seen.append(Round(tg, tg * per_token / 1e9, probe,
                                 in_cache_rate(groups, seconds),
                                 ceiling_rate(groups, seconds, probe)))
    return per_token, rounds_seen


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
    paths = {name: model_path(name, args.model_dir) for name in args.models.split(",")}
    buffer = np.ones(GiB, np.uint8)  # touched, so the probe reads resident pages
    print(f"{'model':<9}{'threads':>8}{'MB/token':>10}{'tg tok/s':>10}{'decode GB/s':>13}"
          f"{'read GB/s':>11}{'in cache GB/s':>15}{'fraction (min-max)':>22}"
          f"{'ceiling':>9}{'of ceiling':>12}")
    for name, path in paths.items():
        for threads in [int(t) for t in args.threads.split(",")]:
            per_token, rounds = measure(path, threads, args.n_gen, args.rounds, buffer)

            def median(field):
                return statistics.median(getattr(r, field) for r in rounds)

            fractions = [r.fraction for r in rounds]
            ceiling = statistics.median(r.ceiling / r.read for r in rounds)
            of_ceiling = statistics.median(r.decode / r.ceiling for r in rounds)
            print(f"{name:<9}{threads:>8}{per_token / 1e6:>10.1f}{median('tg'):>10.1f}"
                  f"{median('decode'):>13.1f}{median('read'):>11.1f}{median('in_cache'):>15.1f}"
                  f"{100 * statistics.median(fractions):>12.0f}% ({100 * min(fractions):.0f}-"
                  f"{100 * max(fractions):.0f}%){100 * ceiling:>8.0f}%{100 * of_ceiling:>11.0f}%")
            if args.rounds_detail:
                for i, r in enumerate(rounds):
                    print(f"  round {i + 1}: tg {r.tg:.1f} tok/s, decode {r.decode:.1f} GB/s, "
                          f"read {r.read:.1f}, in cache {r.in_cache:.1f}, ceiling {r.ceiling:.1f}"
                          f" ({100 * r.ceiling / r.read:.0f}% of read), fraction "
                          f"{100 * r.fraction:.0f}% ({100 * r.decode / r.ceiling:.0f}% of ceiling)")
            if args.rounds >= 8:  # which bound the fraction follows, round by round
                print(f"  correlation of the fraction with in cache "
                      f"{np.corrcoef(fractions, [r.in_cache for r in rounds])[0, 1]:+.2f}, with "
                      f"read {np.corrcoef(fractions, [r.read for r in rounds])[0, 1]:+.2f} "
                      f"({args.rounds} rounds)")
            sys.stdout.flush()


if __name__ == "__main__":
    from llmcli.errors import LLMError

    try:
        main()
    except LLMError as exc:  # an unknown model, a bad file: one line, not a traceback
        sys.exit(f"{Path(__file__).name}: {exc}")
