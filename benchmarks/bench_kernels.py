"""Quantized matmul kernels at the real models' shapes, against the machine's read bandwidth
measured in the same run (this machine is shared and noisy: only ratios within one run are
meaningful).

Every figure is measured twice: by the wall clock, and by the process's CPU time divided by
the thread count. On an idle machine the two agree; when other processes compete for the
cores, the wall clock mostly measures the scheduler and the CPU-time figure still measures
the kernel (the fractions of bandwidth are computed from like with like).

    python benchmarks/bench_kernels.py [--models smollm2,gemma3] [--threads 1,2]
                                       [--tokens 64,512] [--reps 5] [--json]

Reports, per thread count:
  read bandwidth   STREAM-like: every byte of a 1 GiB buffer read once (best of reps)
  decode sweep     every matrix of the model once with one token, in file order, as a
                   decode step reads them (the working set is far larger than L3):
                   GB/s of weights and its fraction of the read bandwidth; per shape too
  prefill          one matmul per shape with n_tok tokens: ms per call and GMAC/s, and
                   the sum over the model's matrices for one n_tok-token prefill
Weights are the real tensors, read with the gguf package.
"""
import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import gguf
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing it
    sys.path.insert(0, str(REPO))

from llmcli import _kernels as K  # noqa: E402

GiB = 1 << 30


def model_path(name, model_dir):
    candidate = os.path.join(model_dir, f"{name}.gguf") if model_dir else None
    if candidate and os.path.exists(candidate):
        return candidate
    from llmcli import models

    return str(models.ensure_local(name, quiet=True))


def weight_matrices(path):
    """(name, type, k, n_out, rows as uint8 (n_out, row_bytes)) for every 2-D weight."""
    matrices = []
    for tensor in gguf.GGUFReader(path).tensors:
        if len(tensor.shape) != 2:
            continue
        k, n_out = int(tensor.shape[0]), int(tensor.shape[1])
        rows = np.asarray(tensor.data).reshape(n_out, -1)
        matrices.append((tensor.name, int(tensor.tensor_type), k, n_out, rows))
    return matrices


def shape_key(qtype, k, n_out):
    return f"{gguf.GGMLQuantizationType(qtype).name} {n_out}x{k}"


class Clock:
    """Best wall and CPU-per-thread seconds over several runs of one measurement."""

    def __init__(self, threads):
        self.threads, self.wall, self.cpu = threads, float("inf"), float("inf")

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = min(self.wall, time.perf_counter() - self._wall)
        self.cpu = min(self.cpu, (time.process_time() - self._cpu) / self.threads)


def read_bandwidth(buffer, threads, reps):
    """Best GB/s (wall, cpu) of reading every byte of `buffer` once."""
    K.read_probe(buffer, threads)
    clock = Clock(threads)
    for _ in range(reps):
        with clock:
            K.read_probe(buffer, threads)
    return buffer.nbytes / clock.wall / 1e9, buffer.nbytes / clock.cpu / 1e9


def decode_sweep(matrices, threads, reps):
    """Clocks of each matrix, and of the whole sweep, over `reps` sweeps through all of
    them with one token."""
    inputs = {k: np.random.default_rng(k).standard_normal((1, k)).astype(np.float32)
              for k in {m[2] for m in matrices}}
    outputs = {n: np.empty((1, n), np.float32) for n in {m[3] for m in matrices}}
    clocks = [Clock(threads) for _ in matrices]
    sweep = Clock(threads)
    for rep in range(reps + 1):  # the first sweep pages the file in
        with sweep:
            for clock, (_, qtype, k, n_out, rows) in zip(clocks, matrices):
                with clock:
                    K.matmul(rows, qtype, inputs[k], outputs[n_out])
        if rep == 0:
            clocks = [Clock(threads) for _ in matrices]
            sweep = Clock(threads)
    return clocks, sweep


def prefill_clock(rows, qtype, k, n_tok, threads, reps):
    x = np.random.default_rng(n_tok).standard_normal((n_tok, k)).astype(np.float32)
    out = np.empty((n_tok, rows.shape[0]), np.float32)
    K.matmul(rows, qtype, x, out)
    clock = Clock(threads)
    for _ in range(reps):
        with clock:
            K.matmul(rows, qtype, x, out)
    return clock


def bench_model(name, matrices, threads, tokens, reps):
    groups = defaultdict(list)
    for i, (_, qtype, k, n_out, _) in enumerate(matrices):
        groups[shape_key(qtype, k, n_out)].append(i)
    clocks, sweep = decode_sweep(matrices, threads, reps)
    total_bytes = sum(m[4].nbytes for m in matrices)
    result = {"model": name, "threads": threads, "path": K.kernel_path(),
              "weight_mb": total_bytes / 1e6,
              "decode_sweep_ms": {"wall": sweep.wall * 1e3, "cpu": sweep.cpu * 1e3},
              "decode_gb_s": {"wall": total_bytes / sweep.wall / 1e9,
                              "cpu": total_bytes / sweep.cpu / 1e9},
              "shapes": []}
    prefill_totals = defaultdict(float)
    for key, members in groups.items():
        _, qtype, k, n_out, rows = matrices[members[0]]
        wall = sum(clocks[i].wall for i in members)
        cpu = sum(clocks[i].cpu for i in members)
        entry = {"shape": key, "count": len(members),
                 "decode_us": {"wall": wall / len(members) * 1e6, "cpu": cpu / len(members) * 1e6},
                 "decode_gb_s": {"wall": rows.nbytes * len(members) / wall / 1e9,
                                 "cpu": rows.nbytes * len(members) / cpu / 1e9}}
        for n_tok in tokens:
            clock = prefill_clock(rows, qtype, k, n_tok, threads, max(2, reps // 2))
            macs = n_out * k * n_tok
            entry[f"pp{n_tok}_ms"] = {"wall": clock.wall * 1e3, "cpu": clock.cpu * 1e3}
            entry[f"pp{n_tok}_gmac_s"] = {"wall": macs / clock.wall / 1e9, "cpu": macs / clock.cpu / 1e9}
            prefill_totals[(n_tok, "wall")] += clock.wall * len(members)
            prefill_totals[(n_tok, "cpu")] += clock.cpu * len(members)
        result["shapes"].append(entry)
    for n_tok in tokens:
        result[f"pp{n_tok}_all_matrices_ms"] = {
            c: prefill_totals[(n_tok, c)] * 1e3 for c in ("wall", "cpu")}
    return result


def print_result(r, tokens):
    print(f"\n== {r['model']}  threads={r['threads']}  path={r['path']}  "
          f"{r['weight_mb']:.1f} MB of weight matrices   [wall clock | CPU time per thread]")
    for c in ("wall", "cpu"):
        print(f"{c:>4}: read bandwidth {r['read_gb_s'][c]:5.1f} GB/s; decode sweep "
              f"{r['decode_sweep_ms'][c]:7.2f} ms = {r['decode_gb_s'][c]:5.1f} GB/s = "
              f"{100 * r['decode_fraction_of_read'][c]:3.0f}% of read bandwidth")
    head = f"{'shape':<20}{'n':>3}{'decode us':>16}{'GB/s':>12}"
    for n_tok in tokens:
        head += f"{f'pp{n_tok} ms':>18}{'GMAC/s':>12}"
    print(head)
    pair = lambda d, fmt: f"{format(d['wall'], fmt)}|{format(d['cpu'], fmt)}"
    for s in r["shapes"]:
        line = (f"{s['shape']:<20}{s['count']:>3}{pair(s['decode_us'], '.1f'):>16}"
                f"{pair(s['decode_gb_s'], '.1f'):>12}")
        for n_tok in tokens:
            line += f"{pair(s[f'pp{n_tok}_ms'], '.2f'):>18}{pair(s[f'pp{n_tok}_gmac_s'], '.1f'):>12}"
        print(line)
    for n_tok in tokens:
        total = r[f"pp{n_tok}_all_matrices_ms"]
        print(f"all matrices for one {n_tok}-token prefill: {pair(total, '.1f')} ms "
              f"({n_tok / total['wall'] * 1e3:.0f}|{n_tok / total['cpu'] * 1e3:.0f} tokens/s)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2,gemma3")
    parser.add_argument("--model-dir", default=os.environ.get("LLMCLI_TEST_MODEL_DIR", "/work/models"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--tokens", default="64,512")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    tokens = [int(t) for t in args.tokens.split(",") if t]
    buffer = np.ones(GiB, np.uint8)  # touched, so the probe reads resident pages
    results = []
    for name in args.models.split(","):
        matrices = weight_matrices(model_path(name, args.model_dir))
        for threads in [int(t) for t in args.threads.split(",")]:
            K.set_threads(threads)
            before = read_bandwidth(buffer, threads, args.reps)
            result = bench_model(name, matrices, threads, tokens, args.reps)
            after = read_bandwidth(buffer, threads, args.reps)
            # the better of the probes around the model's run: the machine's capability
            result["read_gb_s"] = {c: max(before[i], after[i]) for i, c in enumerate(("wall", "cpu"))}
            result["decode_fraction_of_read"] = {
                c: result["decode_gb_s"][c] / result["read_gb_s"][c] for c in ("wall", "cpu")}
            results.append(result)
            if not args.json:
                print_result(result, tokens)
                sys.stdout.flush()
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    from llmcli.errors import LLMError

    try:
        main()
    except LLMError as exc:  # an unknown model, a bad file: one line, not a traceback
        sys.exit(f"{Path(__file__).name}: {exc}")
