"""`llm attention PROMPT --token WORD`: which earlier tokens one token attends to, as a
heat strip over the prompt. The weights are the softmax rows of the real forward,
recorded by the model's opt-in capture path (model.eval(..., capture_attention=True))."""
import click

from llmcli.commands._common import model_option
from llmcli.commands._options import runtime_options
from llmcli.commands._views import (bar, format_option, label, load_model, print_json,
                                    quoted, stdout_console, token_text)

HELP = """Show how strongly the token WORD of PROMPT attends to each token up to it.

PROMPT is tokenized as is (no chat template; the model's BOS when it adds one). --token
picks the first token whose text is WORD (else the first that starts it); without it,
the last token. The default view is the last layer, averaged over its heads: the layer
whose output becomes the next-token prediction, and the mean is a fair summary when heads
disagree. --layer N (negative counts from the end, or "all" to average every layer) and
--head H narrow or widen it; without --head each head's strongest tokens are listed too.
Tokens after WORD get no weight at all (causal attention): they are shown dimmed.

\b
--format json prints one object:
  {"model": str, "n_layers": int, "n_heads": int, "layer": int|"all", "head": int|null,
   "tokens": [{"index": int, "id": int, "text": str}],
   "query": {"index": int, "id": int, "text": str},
   "weights": [float] (over tokens 0..query; sums to 1),
   "heads": [[float]] (per head, over tokens 0..query)}
"""


@click.command("attention", help=HELP)
@click.argument("prompt")
@model_option
@click.option("--token", "word", default=None, help="The token to look from (its text).")
@click.option("--layer", default="-1", show_default=True,
              help="Layer index (negative from the end) or 'all'.")
@click.option("--head", type=int, default=None, show_default="mean over heads",
              help="One head's weights.")
@runtime_options
@format_option
def attention(prompt, model, word, layer, head, ctx_size, threads, output_format):
    from llmcli import views

    if layer != "all":
        try:
            int(layer)
        except ValueError:
            raise click.BadParameter(f"{layer!r} is not an integer or 'all'",
                                     param_hint="--layer") from None
    loaded = load_model(model, ctx_size, threads)
    ids = loaded.tokenizer.encode(prompt, add_special=True, parse_special=False)
    loaded.reset()
    loaded.eval(ids, capture_attention=True)
    texts = [token_text(loaded.tokenizer, i) for i in ids]
    query = len(ids) - 1 if word is None else views.find_token(texts, word)
    layer_index = views.resolve_layer(layer, loaded.config.n_layers)
    view = attention_view(loaded, ids, loaded.attention_probs, query, layer_index, head)
    if output_format == "json":
        print_json(view)
    else:
        render_attention(stdout_console(), view, loaded.tokenizer)


def attention_view(model, ids, attention_probs, query, layer, head):
    """The JSON object of the help text."""
    from llmcli import views

    weights = views.attention_row(attention_probs, query, layer, head)
    heads = views.attention_by_head(attention_probs, query, layer)
    tokens = [{"index": i, "id": int(t), "text": token_text(model.tokenizer, t)}
              for i, t in enumerate(ids)]
    return {"model": model.name, "n_layers": model.config.n_layers,
            "n_heads": model.config.n_heads, "layer": layer, "head": head,
            "tokens": tokens, "query": tokens[query],
            "weights": [float(w) for w in weights],
            "heads": [[float(w) for w in row] for row in heads]}


def _heat(weight, peak):
    """Background style for a weight: darker = more attention (relative to the peak)."""
    level = int(round(232 + 23 * (1 - weight / peak))) if peak > 0 else 255
    return f"black on color({level})" if level > 243 else f"white on color({level})"


def render_attention(console, view, tokenizer):
    from rich.text import Text

    query, weights = view["query"], view["weights"]
    peak = max(weights)
    where = "every layer (mean)" if view["layer"] == "all" else \
        f"layer {view['layer']} (of 0..{view['n_layers'] - 1})"
    who = f"head {view['head']}" if view["head"] is not None else \
        f"mean of {view['n_heads']} heads"
    console.print(f"Attention from token {query['index']} "
                  f"{quoted(tokenizer, query['id'], markup=True)}: {where}, {who}")
    strip = Text()
    for token in view["tokens"]:
        piece = label(tokenizer, token["id"])
        if token["index"] > query["index"]:
            strip.append(piece, style="dim strike")
        else:
            strip.append(piece, style=_heat(weights[token["index"]], peak))
        strip.append(" ")
    console.print(strip, soft_wrap=True)
    console.print("(darker = more attention; struck through: after the token, never "
                  "attended)", style="dim")
    console.print()
    rows = Text()
    for token in view["tokens"][:query["index"] + 1]:
        w = weights[token["index"]]
        rows.append(f"{token['index']:>4}  {label(tokenizer, token['id'])[:16]:<16} "
                    f"{w:6.3f}  ")
        rows.append(bar(w / peak if peak else 0.0, 30).rstrip() + "\n",
                    style="bold" if w == peak else "")
    console.print(rows, end="")
    if view["head"] is None:
        _render_heads(console, view, tokenizer)


def _render_heads(console, view, tokenizer):
    from llmcli import views

    console.print("\nstrongest tokens per head:")
    for h, row in enumerate(view["heads"]):
        top = views.top_entries(row, 3)
        console.print(f"  head {h:>2}: " + "  ".join(
            f"{label(tokenizer, view['tokens'][i]['id'])} {w:.2f}" for i, w in top))
