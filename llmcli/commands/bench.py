"""`llm bench`: prefill (pp) and decode (tg) speed, measured like llama-bench.

pp N: one batched eval of N prompt tokens from an empty cache -> N / seconds.
tg N: from a cache holding one token, N single-token evals -> N / seconds.
Each figure is the mean ± sd over -r repetitions, after one untimed warm-up.
"""
import json
import statistics
import time

import click

from llmcli.commands._common import model_option, resolve_model


def _int_list(ctx, param, value):
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}")
    if not numbers or any(n < 1 for n in numbers):
        raise click.BadParameter("every value must be a positive integer")
    return numbers


@click.command()
@model_option
@click.option("-p", "--n-prompt", default="512", show_default=True, callback=_int_list,
              help="Prompt lengths to prefill (comma-separated; 0 skips pp).")
@click.option("-n", "--n-gen", default="128", show_default=True, callback=_int_list,
              help="Numbers of tokens to decode (comma-separated).")
@click.option("-t", "--threads", default="2", show_default=True, callback=_int_list,
              help="Thread counts to try (comma-separated).")
@click.option("-r", "--repetitions", default=5, show_default=True,
              type=click.IntRange(1, 1000), help="Repetitions of each test.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
def bench(model, n_prompt, n_gen, threads, repetitions, fmt):
    """Measure prefill (pp) and decode (tg) tokens/s, like llama-bench."""
    from llmcli import _kernels
    from llmcli.model import load

    path = resolve_model(model)
    n_ctx = max(max(n_prompt), max(n_gen) + 1) + 1
    llm = load(str(path), n_ctx=n_ctx)
    results = []
    for n_threads in threads:
        _kernels.set_threads(n_threads)
        for n in n_prompt:
            results.append(_measure(llm, "pp", n, n_threads, repetitions, _time_prefill))
        for n in n_gen:
            results.append(_measure(llm, "tg", n, n_threads, repetitions, _time_decode))
    info = {"model": llm.name, "path": str(path), "size_bytes": path.stat().st_size,
            "arch": llm.config.arch, "kernels": _kernels.kernel_path()}
    if fmt == "json":
        click.echo(json.dumps({**info, "results": results}, indent=2))
    else:
        _print_table(info, results)


def _sample_ids(llm, n):
    """Deterministic ordinary token ids (skipping the first 256: specials and bytes)."""
    span = max(1, llm.config.n_vocab - 256)
    return [256 + (i * 7919) % span for i in range(n)]


def _time_prefill(llm, n):
    ids = _sample_ids(llm, n)
    llm.reset()
    start = time.perf_counter()
    llm.eval(ids)
    return time.perf_counter() - start


def _time_decode(llm, n):
    ids = _sample_ids(llm, n + 1)
    llm.reset()
    llm.eval(ids[:1])
    start = time.perf_counter()
    for token in ids[1:]:
        llm.eval([token])
    return time.perf_counter() - start


def _measure(llm, test, n, n_threads, repetitions, timer):
    timer(llm, min(n, 16))  # warm-up: page in weights, start the thread pool
    speeds = [n / timer(llm, n) for _ in range(repetitions)]
    return {"test": f"{test}{n}", "threads": n_threads, "n_tokens": n,
            "tokens_per_s": statistics.fmean(speeds),
            "sd": statistics.stdev(speeds) if len(speeds) > 1 else 0.0,
            "samples": speeds}


def _print_table(info, results):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{info['model']} ({info['arch']}, "
                        f"{info['size_bytes'] / 2**20:.1f} MiB, kernels: {info['kernels']})")
    for column in ("test", "threads", "t/s"):
        table.add_column(column, justify="right")
    for row in results:
        table.add_row(row["test"], str(row["threads"]),
                      f"{row['tokens_per_s']:.2f} ± {row['sd']:.2f}")
    Console().print(table)
