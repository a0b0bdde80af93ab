"""`llm probs PROMPT`: the next-token distribution after a prompt, at one or several
temperatures side by side, with its entropy and how many tokens the sampler's filters
would keep. One forward of the prompt (model.eval); the rest is arithmetic on its logits."""
import click

from llmcli.commands._common import model_option
from llmcli.commands._options import SAMPLING_BY_NAME, click_option, runtime_options
from llmcli.commands._views import (bar, fmt_prob, format_option, label, load_model,
                                    print_json, prob_style, prompt_for, raw_chat_option,
                                    stdout_console, token_text)

HELP = """Show the most likely next tokens after PROMPT, as bars, at each temperature
given (--temperature 0.2,1.0,2.0 puts them side by side: low temperatures sharpen the
distribution, high ones flatten it), with the entropy in bits and how many tokens
top-k / top-p / min-p would keep (those filters judge probabilities at temperature 1,
before the temperature, as the sampler does). Chat-templated for instruct models, as in
`llm generate`; --raw uses the text as is.

\b
--format json prints one object:
  {"model": str, "mode": "chat"|"raw", "prompt_tokens": [int],
   "filters": {"top_k": int, "top_p": float, "min_p": float},
   "kept": {"vocabulary": int, "top_k": int, "top_p": int, "min_p": int, "chain": int},
   "temperatures": [{"temperature": float, "entropy_bits": float,
                     "top": [{"id": int, "text": str, "prob": float, "kept": bool}]}]}
"""


def _temperatures(ctx, param, value):
    try:
        temps = [float(t) for t in value.split(",") if t.strip()]
    except ValueError:
        temps = []
    if not temps or any(not (t >= 0 and t < float("inf")) for t in temps):
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers >= 0",
                                 ctx, param, param_hint="-t/--temperature")
    return temps


@click.command("probs", help=HELP)
@click.argument("prompt")
@model_option
@click.option("--top", "n_top", type=click.IntRange(1, 100), default=10, show_default=True,
              help="How many tokens to list.")
@click.option("-t", "--temperature", "temperatures", default="1.0", show_default=True,
              callback=_temperatures, help="One temperature or a comma-separated list.")
@click_option(SAMPLING_BY_NAME["top_k"])
@click_option(SAMPLING_BY_NAME["top_p"])
@click_option(SAMPLING_BY_NAME["min_p"])
@raw_chat_option
@runtime_options
@format_option
def probs(prompt, model, n_top, temperatures, top_k, top_p, min_p, raw_mode, ctx_size,
          threads, output_format):
    loaded = load_model(model, ctx_size, threads)
    use_chat, _, prompt_ids = prompt_for(loaded, prompt, raw_mode)
    loaded.reset()
    logits = loaded.eval(prompt_ids)
    view = probs_view(loaded, use_chat, prompt_ids, logits, temperatures, n_top,
                      top_k, top_p, min_p)
    if output_format == "json":
        print_json(view)
    else:
        render_probs(stdout_console(), view, loaded.tokenizer)


def probs_view(model, use_chat, prompt_ids, logits, temperatures, n_top, top_k, top_p,
               min_p):
    """The JSON object of the help text."""
    from llmcli import views

    tokenizer = model.tokenizer
    kept = views.kept_counts(logits, top_k, top_p, min_p)
    # the chain keeps the `chain` most likely tokens (each filter keeps a top slice)
    kept_ids = {i for i, _ in views.top_entries(views.distribution(logits), kept["chain"])}
    columns = []
    for temperature in temperatures:
        dist = views.distribution(logits, temperature)
        # temperature never reorders tokens (T > 0): every column lists the same ones
        order = views.top_entries(views.distribution(logits), n_top)
        columns.append({
            "temperature": temperature,
            "entropy_bits": views.entropy_bits(dist),
            "top": [{"id": i, "text": token_text(tokenizer, i), "prob": float(dist[i]),
                     "kept": i in kept_ids} for i, _ in order],
        })
    return {"model": model.name, "mode": "chat" if use_chat else "raw",
            "prompt_tokens": [int(i) for i in prompt_ids],
            "filters": {"top_k": top_k, "top_p": top_p, "min_p": min_p},
            "kept": kept, "temperatures": columns}


def render_probs(console, view, tokenizer):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    columns = view["temperatures"]
    bar_width = max(6, min(20, (console.width - 30) // len(columns) - 8))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_footer=True)
    table.add_column("#", justify="right", footer="")
    table.add_column("token", footer="entropy")
    table.add_column("kept", justify="center", footer="")
    for column in columns:
        table.add_column(f"T={column['temperature']:g}",
                         footer=f"{column['entropy_bits']:.2f} bits")
    for rank, first in enumerate(columns[0]["top"]):
        cells = [str(rank + 1), Text(label(tokenizer, first["id"])),
                 "✓" if first["kept"] else "·"]
        for column in columns:
            p = column["top"][rank]["prob"]
            cells.append(Text(f"{bar(p, bar_width)} {fmt_prob(p):>7}", style=prob_style(p)))
        table.add_row(*cells)
    console.print(f"Next token after {len(view['prompt_tokens'])} prompt tokens "
                  f"({view['model']}, {view['mode']} mode)")
    console.print(table)
    kept, f = view["kept"], view["filters"]
    console.print(f"Kept of {kept['vocabulary']} tokens: top-k {f['top_k']} keeps "
                  f"{kept['top_k']}, top-p {f['top_p']:g} keeps {kept['top_p']}, min-p "
                  f"{f['min_p']:g} keeps {kept['min_p']}; the chain keeps {kept['chain']} "
                  "(✓ in the table).")
