"""`llm perplexity [FILE | -] [-m MODEL] [--ctx 512]`: how well a model predicts a text,
computed the way llama.cpp's llama-perplexity does, so the two figures can be compared.

The method (llama-perplexity's default): tokenize the whole text once (with the model's
BOS setting), cut it into consecutive windows of --ctx tokens (the remainder is dropped),
evaluate each window from an empty cache, with its first token replaced by BOS when the
model adds one, and score only the second half: the logits at positions ctx/2 .. ctx-2
predict the tokens after them. PPL = exp(mean negative log-likelihood) over all scored
tokens; the ± is llama.cpp's standard error of the mean, carried through exp.

Progress goes to stderr, the figure to stdout.
"""
import json
import math
import sys
from dataclasses import dataclass

import click
import numpy as np

from llmcli.commands._common import model_option, read_limited, read_stdin_text


@dataclass
class PerplexityTally:
    """Running sums over the scored tokens."""
    nll: float = 0.0       # sum of -log p
    nll_sq: float = 0.0    # sum of (-log p)^2
    count: int = 0

    def add(self, token_nlls):
        self.nll += float(token_nlls.sum())
        self.nll_sq += float((token_nlls ** 2).sum())
        self.count += len(token_nlls)

    @property
    def perplexity(self):
        return math.exp(self.nll / self.count)

    @property
    def uncertainty(self):
        """Standard error of the perplexity (llama.cpp's formula)."""
        mean = self.nll / self.count
        variance = self.nll_sq / self.count - mean * mean
        if self.count < 2 or variance <= 0:
            return 0.0
        return math.sqrt(variance / (self.count - 1)) * self.perplexity


def perplexity_windows(tokens, n_ctx, bos_id=None):
    """The consecutive windows of n_ctx tokens that are scored, BOS replacing each first
    token when bos_id is given (that is what llama-perplexity does)."""
    windows = [list(tokens[start:start + n_ctx])
               for start in range(0, len(tokens) - n_ctx + 1, n_ctx)]
    if bos_id is not None:
        for window in windows:
            window[0] = bos_id
    return windows


def window_token_nlls(model, window):
    """-log p of each token of the window's second half, given everything before it."""
    first = len(window) // 2
    model.reset()
    model.eval(window[:first])                               # context only
    logits = model.eval(window[first:-1], all_logits=True)   # predicts window[first+1:]
    return token_nlls(logits, window[first + 1:])


def token_nlls(logits, targets):
    """-log softmax(logits)[target] per row, in float64."""
    logits = logits.astype(np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(logits).sum(axis=-1))
    return log_norm - logits[np.arange(len(targets)), np.asarray(targets)]


@click.command()
@click.argument("file", metavar="[FILE | -]", required=False, default="-")
@model_option
@click.option("--ctx", "n_ctx", type=click.IntRange(min=4), default=512, show_default=True,
              help="Window length in tokens (llama-perplexity's -c).")
@click.option("--chunks", "max_windows", type=click.IntRange(min=1), default=None,
              help="Score at most this many windows.")
@click.option("-t", "--threads", type=click.IntRange(min=1), default=None,
              help="Kernel threads (default: all cores).")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def perplexity(file, model, n_ctx, max_windows, threads, output_format, quiet):
    """Perplexity of a text (FILE, or stdin with - or no FILE) under a model."""
    from llmcli.commands._common import load_model
    from llmcli.errors import InputError

    text = _read_text(file)
    loaded = load_model(model, n_ctx, threads, ctx_option="--ctx")
    tokenizer = loaded.tokenizer
    tokens = tokenizer.encode(text, add_special=True)
    if len(tokens) < 2 * n_ctx:
        raise InputError(f"the text has {len(tokens)} tokens; --ctx {n_ctx} needs at least "
                         f"{2 * n_ctx} (as llama-perplexity)")
    windows = perplexity_windows(tokens, n_ctx, tokenizer.bos_id if tokenizer.add_bos else None)
    windows = windows[:max_windows]

    tally = PerplexityTally()
    running = []
    with _Progress(len(windows), quiet) as progress:
        for window in windows:
            tally.add(window_token_nlls(loaded, window))
            running.append(tally.perplexity)
            progress.advance(tally.perplexity)

    result = {
        "model": model, "file": file, "ctx": n_ctx, "n_tokens": len(tokens),
        "n_windows": len(windows), "n_scored": tally.count,
        "perplexity": tally.perplexity, "uncertainty": tally.uncertainty,
        "mean_nll": tally.nll / tally.count, "running_perplexity": running,
    }
    if output_format == "json":
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"PPL = {result['perplexity']:.4f} +/- {result['uncertainty']:.4f} "
                   f"({len(windows)} windows of {n_ctx} tokens, {tally.count} tokens scored)")


def _read_text(file):
    from llmcli.errors import InputError

    if file == "-":
        text = read_stdin_text()
    else:
        try:
            with open(file, "rb") as handle:
                data = read_limited(handle, file)   # FILE may be /dev/zero
        except OSError as exc:
            raise InputError(f"cannot read {file}: {exc.strerror or exc}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{file} is not valid UTF-8 (byte offset {exc.start})") from None
    if not text.strip():
        raise InputError(f"{'stdin' if file == '-' else file} holds no text")
    return text


class _Progress:
    """A Rich progress bar on a terminal, one line per window otherwise, nothing if quiet."""

    def __init__(self, total, quiet):
        self.total, self.quiet, self.done = total, quiet, 0
        self.bar = None

    def __enter__(self):
        if not self.quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("windows"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("PPL {task.fields[ppl]}"),
                                console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total, ppl="-")
        return self

    def advance(self, running_ppl):
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, ppl=f"{running_ppl:.4f}")
        elif not self.quiet:
            click.echo(f"[{self.done}/{self.total}] PPL {running_ppl:.4f}", err=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
