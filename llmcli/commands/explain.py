"""`llm explain PROMPT`: one screen walking the pipeline with the real model's numbers:
tokens, an embedding vector, the layer stack, the final distribution, the sampled token,
then a few turns of the generation loop. Everything comes from llmcli.generate (the
same loop as `llm generate`) and the model's embedding look-up."""
import math

import click

from llmcli.commands._common import model_option
from llmcli.commands._options import runtime_options, sampler_options
from llmcli.commands._views import (fmt_prob, format_option, label, load_model, print_json,
                                    prob_style, prompt_for, quoted, raw_chat_option,
                                    stdout_console, token_text)

N_VECTOR_VALUES = 8    # embedding values shown
N_FINAL_TOP = 10       # tokens of the final distribution shown

HELP = """Walk through what the model does with PROMPT, with real numbers: the token split
(ids), one token's embedding vector (its size and first values; --token picks the token,
default the last), the layers and heads it passes through, the final next-token
distribution (top 10, before any sampler stage), the token the sampler drew, then
-n/--steps more turns of the loop (append the token, run the model, draw), one line each.
Chat-templated for instruct models, as in `llm generate`; --raw uses the text as is.

\b
--format json prints one object:
  {"model": str, "arch": str, "mode": "chat"|"raw",
   "tokens": [{"index": int, "id": int, "text": str}],
   "embedding": {"index": int, "id": int, "text": str, "size": int,
                 "values": [float] (the first 8), "norm": float},
   "architecture": {"n_layers": int, "n_heads": int, "n_kv_heads": int,
                    "head_dim": int, "n_embd": int, "n_vocab": int},
   "sampler": str,
   "steps": [{"step": int, "id": int, "text": str, "logprob": float (raw model),
              "prob": float (in the sampler's distribution), "finish_reason": str|null,
              "top": [{"id": int, "text": str, "prob": float}] (raw model, top 10),
              "sampler_top": [{"id": int, "text": str, "prob": float}] (top 3)}]}
"""


@click.command("explain", help=HELP)
@click.argument("prompt")
@model_option
@click.option("-n", "--steps", type=click.IntRange(0, 100), default=5, show_default=True,
              help="Turns of the loop after the first sampled token.")
@click.option("--token", "word", default=None, help="Token whose embedding is shown.")
@sampler_options
@raw_chat_option
@runtime_options
@format_option
def explain(prompt, model, steps, word, raw_mode, ctx_size, threads, output_format,
            **sampling):
    from llmcli.generate import generate
    from llmcli.sampling import make_sampler

    loaded = load_model(model, ctx_size, threads)
    use_chat, _, prompt_ids = prompt_for(loaded, prompt, raw_mode)
    sampler = make_sampler(**sampling)
    chunks = list(generate(loaded, prompt_ids, sampler, max_tokens=1 + steps,
                           ignore_eos=False, logprobs=N_FINAL_TOP, top_probs=3))
    view = explain_view(loaded, use_chat, prompt_ids, word, sampler, chunks)
    if output_format == "json":
        print_json(view)
    else:
        render_explain(stdout_console(), view, loaded.tokenizer)


def explain_view(model, use_chat, prompt_ids, word, sampler, chunks):
    """The JSON object of the help text."""
    from llmcli import views

    tok, c = model.tokenizer, model.config
    tokens = [{"index": i, "id": int(t), "text": token_text(tok, t)}
              for i, t in enumerate(prompt_ids)]
    index = len(tokens) - 1 if word is None else \
        views.find_token([t["text"] for t in tokens], word)
    vector = model.embedding([prompt_ids[index]])[0]

    def entries(pairs, as_prob):
        return [{"id": i, "text": token_text(tok, i), "prob": as_prob(p)} for i, p in pairs]

    steps = [{"step": n, "id": ch.token, "text": token_text(tok, ch.token),
              "logprob": ch.logprob, "prob": ch.prob, "finish_reason": ch.finish_reason,
              "top": entries(ch.top_logprobs, math.exp),
              "sampler_top": entries(ch.top_probs, float)}
             for n, ch in enumerate(chunks) if ch.token is not None]
    return {"model": model.name, "arch": c.arch, "mode": "chat" if use_chat else "raw",
            "tokens": tokens,
            "embedding": {**tokens[index], "size": int(vector.shape[0]),
                          "values": [float(v) for v in vector[:N_VECTOR_VALUES]],
                          "norm": float((vector.astype("float64") ** 2).sum() ** 0.5)},
            "architecture": {"n_layers": c.n_layers, "n_heads": c.n_heads,
                             "n_kv_heads": c.n_kv_heads, "head_dim": c.head_dim,
                             "n_embd": c.n_embd, "n_vocab": c.n_vocab},
            "sampler": sampler.describe(), "steps": steps}


def render_explain(console, view, tokenizer):
    from rich.text import Text

    a, e = view["architecture"], view["embedding"]
    console.print(f"[bold]1. Text -> {len(view['tokens'])} tokens[/] "
                  f"({view['model']}, {view['arch']}, {view['mode']} mode)")
    split = Text("   ")
    for t in view["tokens"]:
        split.append(label(tokenizer, t["id"]), style="cyan")
        split.append(f"({t['id']}) ", style="dim")
    console.print(split, soft_wrap=True)
    values = ", ".join(f"{v:+.3f}" for v in e["values"])
    console.print(f"[bold]2. Token -> vector[/]: {quoted(tokenizer, e['id'], markup=True)} (id {e['id']}) "
                  f"becomes {e['size']} numbers: [{values}, ...]  (length {e['norm']:.2f})")
    console.print(f"[bold]3. {a['n_layers']} layers[/], each: attention with {a['n_heads']} "
                  f"heads ({a['n_kv_heads']} key/value heads, {a['head_dim']} wide) mixes "
                  f"the tokens, then a feed-forward network transforms each one")
    console.print(f"[bold]4. Last vector -> {a['n_vocab']} scores -> probabilities[/] "
                  "(softmax; top 10):")
    first = view["steps"][0]
    for entry in first["top"]:
        p = entry["prob"]
        console.print(Text(f"   {label(tokenizer, entry['id'])[:20]:<20} {fmt_prob(p):>8}  "
                           + "█" * round(p * 40), style=prob_style(p)))
    console.print(f"[bold]5. Sampler[/] ({view['sampler']}) drew "
                  f"{quoted(tokenizer, first['id'], markup=True)} (p={fmt_prob(first['prob'])} after its "
                  f"filters, {fmt_prob(math.exp(first['logprob']))} raw)")
    if len(view["steps"]) > 1:
        console.print("[bold]6. Loop[/]: append the token, run the model on it, draw again")
    for step in view["steps"][1:]:
        _render_step(console, step, tokenizer)


def _render_step(console, step, tokenizer):
    from rich.text import Text

    line = Text(f"   step {step['step']:>2}: ")
    line.append(f"{quoted(tokenizer, step['id']):<14}", style=prob_style(step["prob"]))
    line.append(f" p={fmt_prob(step['prob']):<7}  others: ")
    others = [s for s in step["sampler_top"] if s["id"] != step["id"]][:2]
    line.append("  ".join(f"{quoted(tokenizer, s['id'])} {fmt_prob(s['prob'])}"
                          for s in others) or "—")
    if step["finish_reason"] == "eos":
        line.append("  (end of text)", style="dim")
    console.print(line)
