"""Timing of prefill and decode, shared by `llm bench` and benchmarks/vs_llamacpp.py.

Works on anything with `reset()` and `eval(ids)` (our Model, and thin adapters around
peers), so every engine is timed by the same code."""
import statistics
import time


def sample_ids(n_vocab, n):
    """Deterministic ordinary token ids (skipping the first 256: specials and bytes)."""
    span = max(1, n_vocab - 256)
    return [256 + (i * 7919) % span for i in range(n)]


def time_prefill(engine, ids):
    """Seconds for one batched eval of `ids` from an empty cache."""
    engine.reset()
    start = time.perf_counter()
    engine.eval(ids)
    return time.perf_counter() - start


def time_decode(engine, ids):
    """Seconds for len(ids)-1 single-token evals after a one-token cache."""
    engine.reset()
    engine.eval(ids[:1])
    start = time.perf_counter()
    for token in ids[1:]:
        engine.eval([token])
    return time.perf_counter() - start


def tokens_per_second(engine, test, n, n_vocab, repetitions):
    """Mean and sd of tokens/s for test 'pp' (prefill n) or 'tg' (decode n), after a
    short untimed warm-up (pages the weights in, starts the thread pool)."""
    if test == "pp":
        timer, ids = time_prefill, sample_ids(n_vocab, n)
    else:
        timer, ids = time_decode, sample_ids(n_vocab, n + 1)
    timer(engine, ids[:17])
    speeds = [n / timer(engine, ids) for _ in range(repetitions)]
    sd = statistics.stdev(speeds) if len(speeds) > 1 else 0.0
    return {"test": f"{test}{n}", "n_tokens": n, "tokens_per_s": statistics.fmean(speeds),
            "sd": sd, "samples": speeds}
