"""`llm score TEXT`: how surprised the model is by each token of a text (-log2 p), and the
text's perplexity. One teacher-forced forward (model.logits) over the tokens."""
import click

from llmcli.commands._common import model_option, read_stdin_text
from llmcli.commands._options import runtime_options
from llmcli.commands._views import (bar, fmt_bits, fmt_prob, format_option, label,
                                    load_model, print_json, stdout_console,
                                    surprisal_style, token_text)

HELP = """Colour each token of TEXT by its surprisal, -log2 p(token | the tokens before it),
and print the perplexity, exp(mean -ln p) over the scored tokens. TEXT "-" reads stdin.

The text is tokenized as is (no chat template), with the model's BOS when it adds one
(Gemma 3). The first token has nothing before it to be predicted from: when it is BOS it
is simply not part of the text; otherwise (SmolLM2 adds no BOS) the first text token is
shown unscored (surprisal null) and left out of the perplexity.

\b
--format json prints one object:
  {"model": str, "tokens": [{"index": int, "id": int, "text": str,
     "logprob": float|null (nats), "prob": float|null, "surprisal_bits": float|null}],
   "scored_tokens": int, "mean_surprisal_bits": float|null, "perplexity": float|null}
"""


@click.command("score", help=HELP)
@click.argument("text")
@model_option
@runtime_options
@format_option
def score(text, model, ctx_size, threads, output_format):
    if text == "-":
        text = read_stdin_text().rstrip("\n")
    if not text:
        raise click.UsageError("TEXT is empty")
    loaded = load_model(model, ctx_size, threads)
    ids = loaded.tokenizer.encode(text, add_special=True, parse_special=False)
    if len(ids) < 2:
        raise click.UsageError("TEXT needs at least two tokens: the first one is not scored")
    view = score_view(loaded, ids, loaded.logits(ids))
    if output_format == "json":
        print_json(view)
    else:
        render_score(stdout_console(), view, loaded.tokenizer)


def score_view(model, ids, logits_rows):
    """The JSON object of the help text, from teacher-forced logits of ids."""
    import math

    from llmcli import views

    logprobs = views.token_logprobs(logits_rows, ids)
    tokens = []
    for index, (token_id, lp) in enumerate(zip(ids, logprobs)):
        tokens.append({"index": index, "id": int(token_id),
                       "text": token_text(model.tokenizer, token_id), "logprob": lp,
                       "prob": None if lp is None else math.exp(lp),
                       "surprisal_bits": None if lp is None else -lp * views.LOG2E})
    scored = [t["surprisal_bits"] for t in tokens if t["surprisal_bits"] is not None]
    return {"model": model.name, "tokens": tokens, "scored_tokens": len(scored),
            "mean_surprisal_bits": sum(scored) / len(scored) if scored else None,
            "perplexity": views.perplexity(logprobs)}


def render_score(console, view, tokenizer):
    from rich.text import Text

    tokens = view["tokens"]
    coloured = Text()
    for token in tokens:
        coloured.append(label(tokenizer, token["id"]),
                        style=surprisal_style(token["surprisal_bits"]))
        coloured.append("│", style="dim")
    console.print(coloured, soft_wrap=True)
    console.print("colour: green ≤ 1 bit, yellow ≤ 3, orange ≤ 6, red ≤ 10, bold red "
                  "above; dim = not scored", style="dim")
    console.print()
    worst = max((t["surprisal_bits"] for t in tokens if t["surprisal_bits"] is not None),
                default=1.0)
    table = Text(f"{'#':>4}  {'id':>7}  {'token':<16} {'p':>8} {'bits':>6}\n", style="bold")
    for token in tokens:
        bits = token["surprisal_bits"]
        style = surprisal_style(bits)
        table.append(f"{token['index']:>4}  {token['id']:>7}  ")
        table.append(f"{label(tokenizer, token['id'])[:16]:<16}", style=style)
        if bits is None:
            table.append(f" {'—':>8} {'—':>6}  (not scored: nothing before it)\n", style="dim")
            continue
        table.append(f" {fmt_prob(token['prob']):>8} {fmt_bits(bits):>6}  ")
        table.append(bar(bits / worst if worst else 0.0, 24).rstrip() + "\n", style=style)
    console.print(table, end="")
    ppl = view["perplexity"]
    console.print(f"\nperplexity {ppl:.2f} over {view['scored_tokens']} scored tokens "
                  f"(mean surprisal {view['mean_surprisal_bits']:.2f} bits)")
