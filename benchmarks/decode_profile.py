"""Where a decode step's time goes, each part next to the least it could take, measured
round after round in one process.

    python benchmarks/decode_profile.py [--models smollm2,gemma3] [--threads 2]
                                        [--rounds 6] [--steps 32]

A step is timed in its parts, as Model.eval makes them:
  layers    LayerStack.run: every layer's kernels, in one compiled call
  output    the output matrix times the final hidden state (the logits)
  other     the embedding row, the final norm, and the Python between them
Their floors come from decode_bandwidth.py's roofline: each projection group at the
slower of its kernels' speed with the weights in cache and its bytes over the read
bandwidth (the read probe of the same round). The layers' floor leaves out attention and
the small kernels between the matrices (norms, RoPE, activation, residual).

Then the layers run alone twice, back to back: as they are ("layers alone"), and with
every layer bound to the weights of layer 0 ("one layer's weights"): the same kernels on
the same shapes, with weights that stay in the L3 cache from one layer to the next. If
the layers waited on memory, the second would be much faster than the first; if their
kernels are what takes the time, it is not.
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

import decode_bandwidth as bandwidth  # noqa: E402  (this folder)
from bench_kernels import model_path, read_bandwidth  # noqa: E402
from llmcli import _kernels as K  # noqa: E402
from llmcli.model import load  # noqa: E402

GiB = 1 << 30


def one_weight_stack(model):
    """The model's layer stack with every layer bound to layer 0's weights (and to the
    model's own caches and buffers)."""
    return model._layer_stack([model.weights.layers[0]] * model.config.n_layers)


def profiled_step(model, token, logits):
    """One decode step of `token`, made of Model.eval's own parts, its logits into
    `logits` (1, n_vocab); returns the seconds of its parts."""
    start = time.perf_counter()
    batch = model._act.batch(1)
    model._embed(np.array([token], np.int32), batch.x)
    embedded = time.perf_counter()
    model._layers.run(1, model.n_past, None)
    layered = time.perf_counter()
    model._final_norm(batch)
    model.n_past += 1
    normed = time.perf_counter()
    model._output(slice(0, 1), logits)
    done = time.perf_counter()
    return {"layers": layered - embedded, "output": done - normed,
            "other": (embedded - start) + (normed - layered)}


def timed_steps(model, n_steps):
    """Median seconds of each part over n_steps decode steps (positions 1..n_steps)."""
    logits = np.empty((1, model.config.n_vocab), np.float32)
    model.reset()
    model.eval([1])
    steps = [profiled_step(model, 2 + i, logits) for i in range(n_steps)]
    return {part: statistics.median(step[part] for step in steps) for part in steps[0]}


def layer_seconds(model, stack, n_steps):
    """Median seconds of one run of the stack over one token (positions 1..n_steps),
    each from the same embedding."""
    x = model._act.buffers.x
    first = model.embedding([2])
    times = []
    for pos in range(1, n_steps + 1):
        x[:1] = first
        start = time.perf_counter()
        stack.run(1, pos)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile(name, path, threads, rounds, n_steps, buffer):
    model = load(path, n_ctx=n_steps + 8, threads=threads)
    print(f"{name}, {threads} threads (ms per decode step, median of {n_steps})")
    groups = bandwidth.decode_groups(path)
    output_bytes = bandwidth.group_bytes(groups)[-1]
    one_weight = one_weight_stack(model)
    for r in range(rounds):
        read = read_bandwidth(buffer, threads, 3)[0]
        hot = bandwidth.in_cache_seconds(groups, threads)
        floors = bandwidth.group_floors(groups, hot, read)
        parts = timed_steps(model, n_steps)
        real = layer_seconds(model, model._layers, n_steps)
        cached = layer_seconds(model, one_weight, n_steps)
        step = sum(parts.values())
        print(f"  round {r + 1}: read {read:.1f} GB/s | step {step * 1e3:.2f} ms "
              f"(floor {sum(floors) * 1e3:.2f}) | layers {parts['layers'] * 1e3:.2f} "
              f"(floor {sum(floors[:-1]) * 1e3:.2f}) | output {parts['output'] * 1e3:.2f} "
              f"(floor {floors[-1] * 1e3:.2f}, {output_bytes / parts['output'] / 1e9:.1f} GB/s) "
              f"| other {parts['other'] * 1e6:.0f} us | layers alone {real * 1e3:.2f}, one "
              f"layer's weights {cached * 1e3:.2f}")
        sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2,gemma3")
    parser.add_argument("--model-dir", default=os.environ.get("LLMCLI_TEST_MODEL_DIR", ""))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=32)
    args = parser.parse_args()
    paths = {name: model_path(name, args.model_dir) for name in args.models.split(",")}
    buffer = np.ones(GiB, np.uint8)  # touched, so the probe reads resident pages
    for name, path in paths.items():
        profile(name, path, args.threads, args.rounds, args.steps, buffer)


if __name__ == "__main__":
    from llmcli.errors import LLMError

    try:
        main()
    except LLMError as exc:  # an unknown model, a bad file: one line, not a traceback
        sys.exit(f"{Path(__file__).name}: {exc}")
