"""Time per call of the ops kernels at SmolLM2-135M and Gemma 3 270M shapes.

Cases: one decode step (n_tok = 1) with 512 and with 4096 cached positions, and a
512-token prefill from position 0. Each thread count runs in its own process
(OMP_NUM_THREADS), and the NumPy reference (llmcli.ops_ref, float32) is timed in the
same run as the peer. The machine is shared: each figure is the best of many short
batches.

    python benchmarks/bench_ops.py [--threads 1,2] [--seconds 0.1]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

MODELS = {
    "smollm2": dict(n_embd=576, n_heads=9, n_kv_heads=3, head_dim=64, n_ff=1536,
                    n_vocab=49152, rope_base=1e5, neox=False, gated="swiglu", window=0),
    "gemma3": dict(n_embd=640, n_heads=4, n_kv_heads=1, head_dim=256, n_ff=2048,
                   n_vocab=262144, rope_base=1e6, neox=True, gated="geglu_tanh", window=512),
}
CASES = {"decode@512": (1, 512), "decode@4096": (1, 4096), "prefill512": (512, 0)}


def best_time_per_call(fn, seconds, batch_seconds=0.002):
    """Best average over many short batches: on a shared machine a short batch has a
    fair chance to run without being preempted, a long one does not."""
    fn()
    calls = 1
    while True:  # calls per batch so that a batch lasts about batch_seconds
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= batch_seconds:
            break
        calls *= 2
    best = elapsed / calls
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def op_calls(m, n_tok, n_past):
    """(name, kernel call, NumPy reference call) for each op of one layer at this case."""
    from llmcli import _kernels as K
    from llmcli import ops_ref

    r = np.random.default_rng(0)
    f32 = np.float32
    q_width, kv_width = m["n_heads"] * m["head_dim"], m["n_kv_heads"] * m["head_dim"]
    n_ctx = n_past + n_tok
    x = r.normal(size=(n_tok, m["n_embd"])).astype(f32)
    w = r.normal(size=m["n_embd"]).astype(f32)
    q = r.normal(size=(n_tok, q_width)).astype(f32)
    k_cache = r.normal(size=(n_ctx, kv_width)).astype(f32)
    v_cache = r.normal(size=(n_ctx, kv_width)).astype(f32)
    pos = np.arange(n_past, n_ctx, dtype=np.int32)
    gate = r.normal(size=(n_tok, m["n_ff"])).astype(f32)
    up = r.normal(size=(n_tok, m["n_ff"])).astype(f32)
    logits = r.normal(size=(1, m["n_vocab"])).astype(f32)
    out_x, out_q, out_ff = np.empty_like(x), np.empty_like(q), np.empty_like(gate)
    hd, nh, nkv = m["head_dim"], m["n_heads"], m["n_kv_heads"]
    scale = hd ** -0.5
    gated_kernel, gated_ref = getattr(K, m["gated"]), getattr(ops_ref, m["gated"])

    calls = [
        ("rmsnorm", lambda: K.rmsnorm(x, w, 1e-6, out_x), lambda: ops_ref.rmsnorm(x, w, 1e-6)),
        ("rope q", lambda: K.rope(q, pos, nh, hd, m["rope_base"], m["neox"]),
         lambda: ops_ref.rope(q, pos, nh, hd, m["rope_base"], m["neox"])),
        (m["gated"], lambda: gated_kernel(gate, up, out_ff), lambda: gated_ref(gate, up)),
        ("attention", lambda: K.attention(q, k_cache, v_cache, pos, nh, nkv, hd, scale, 0, out_q),
         lambda: ops_ref.attention(q, k_cache, v_cache, pos, nh, nkv, hd, scale, 0)),
    ]
    if m["window"]:
        calls.append((f"attention w{m['window']}",
                      lambda: K.attention(q, k_cache, v_cache, pos, nh, nkv, hd, scale, m["window"], out_q),
                      lambda: ops_ref.attention(q, k_cache, v_cache, pos, nh, nkv, hd, scale, m["window"])))
    if n_tok == 1:
        calls.append(("softmax vocab", lambda: K.softmax(logits), lambda: ops_ref.softmax(logits)))
    return calls


def run_child(seconds):
    from llmcli import _kernels as K

    rows = []
    for model, m in MODELS.items():
        for case, (n_tok, n_past) in CASES.items():
            for name, kernel, reference in op_calls(m, n_tok, n_past):
                rows.append(dict(model=model, case=case, op=name,
                                 kernel=best_time_per_call(kernel, seconds),
                                 numpy=best_time_per_call(reference, seconds)))
    json.dump(dict(path=K.kernel_path(), rows=rows), sys.stdout)


def run_parent(threads, seconds):
    results = {}
    for n in threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(n), OPENBLAS_NUM_THREADS=str(n))
        done = subprocess.run([sys.executable, __file__, "--child", "--seconds", str(seconds)],
                              env=env, check=True, capture_output=True, text=True)
        results[n] = json.loads(done.stdout)
    print(f"ops kernels, kernel path {results[threads[0]]['path']}; microseconds per call")
    header = f"{'model':8} {'case':12} {'op':15}" + "".join(f" {f'{n}T':>9}" for n in threads)
    print(header + "".join(f" {f'numpy {n}T':>10}" for n in threads))
    for i, row in enumerate(results[threads[0]]["rows"]):
        line = f"{row['model']:8} {row['case']:12} {row['op']:15}"
        line += "".join(f" {results[n]['rows'][i]['kernel'] * 1e6:9.1f}" for n in threads)
        line += "".join(f" {results[n]['rows'][i]['numpy'] * 1e6:10.1f}" for n in threads)
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--seconds", type=float, default=0.1, help="timing budget per op")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.seconds)
    else:
        run_parent([int(n) for n in args.threads.split(",")], args.seconds)


if __name__ == "__main__":
    main()
