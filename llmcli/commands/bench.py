"""`llm bench`: prefill (pp) and decode (tg) speed, measured like llama-bench.

pp N: one batched eval of N prompt tokens from an empty cache -> N / seconds.
tg N: from a cache holding one token, N single-token evals -> N / seconds.
Each figure is the mean ± sd over -r repetitions, after one untimed warm-up.
"""
import json

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
              help="Prompt lengths to prefill (comma-separated).")
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
    from llmcli.speed import tokens_per_second

    path = resolve_model(model)
    n_ctx = max(max(n_prompt), max(n_gen) + 1) + 1
    llm = load(str(path), n_ctx=n_ctx)
    results = []
    for n_threads in threads:
        _kernels.set_threads(n_threads)
        for test, sizes in (("pp", n_prompt), ("tg", n_gen)):
            for n in sizes:
                row = tokens_per_second(llm, test, n, llm.config.n_vocab, repetitions)
                results.append({**row, "threads": n_threads})
    info = {"model": llm.name, "path": str(path), "size_bytes": path.stat().st_size,
            "arch": llm.config.arch, "kernels": _kernels.kernel_path()}
    if fmt == "json":
        click.echo(json.dumps({**info, "results": results}, indent=2))
    else:
        _print_table(info, results)


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
