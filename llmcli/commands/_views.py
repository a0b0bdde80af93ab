"""Rendering pieces shared by the views (`llm probs`, `score`, `attention`, `explain`,
`generate --show-probs/--step`): loading the model the way `llm generate` does, token
labels, colour scales, bars, JSON output. The numbers come from llmcli.views."""
import json
import math

import click

# Probability colour scale, most likely first: (lowest p, style).
_PROB_STYLES = ((0.5, "bold green"), (0.2, "green"), (0.05, "yellow"), (0.01, "dark_orange"),
                (0.0, "red"))
# Surprisal colour scale in bits: (highest surprisal, style); beyond the last: bold red.
_SURPRISAL_STYLES = ((1.0, "green"), (3.0, "yellow"), (6.0, "dark_orange"), (10.0, "red"))
_EIGHTHS = " ▏▎▍▌▋▊▉"


def load_model(name, ctx_size=None, threads=None):
    """The model, through `llm generate`'s loader (tests replace that one function)."""
    from llmcli.commands import generate as generate_command

    return generate_command._load_model(name, ctx_size, threads)


def prompt_for(model, prompt, raw_mode=None, system=None):
    """(chat mode?, prompt text, ids), built exactly as `llm generate` builds them."""
    from llmcli.commands._generate_run import GenerateRequest, prompt_for as build

    return build(GenerateRequest(model=model.name, prompt=prompt, raw_mode=raw_mode,
                                 system=system), model)


def raw_chat_option(func):
    return click.option("--raw/--chat", "raw_mode", default=None,
                        show_default="chat if the model has a chat template, else raw",
                        help="Raw completion, or the model's chat template (as generate).")(func)


def format_option(func):
    return click.option("--format", "output_format", type=click.Choice(["text", "json"]),
                        default="text", show_default=True,
                        help="text: a Rich view; json: one object (schema above).")(func)


def label(tokenizer, token_id):
    """A token as shown: whitespace and control characters made visible."""
    from llmcli.commands.tokenize import visible_piece

    return visible_piece(tokenizer, token_id)


def token_text(tokenizer, token_id):
    """A token's own text for JSON (U+FFFD for a partial UTF-8 byte sequence)."""
    return tokenizer.token_bytes(token_id).decode("utf-8", errors="replace")


def prob_style(prob):
    return next(style for floor, style in _PROB_STYLES if prob >= floor)


def surprisal_style(bits):
    if bits is None:
        return "dim"
    return next((style for ceiling, style in _SURPRISAL_STYLES if bits <= ceiling), "bold red")


def bar(fraction, width):
    """A horizontal bar of `width` cells filled to `fraction` (eighths of a cell)."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(width)


def fmt_prob(prob):
    """0.7213 -> '0.721', tiny values in scientific notation so they are not shown as 0."""
    if prob == 0:
        return "0"
    return f"{prob:.3f}" if prob >= 0.001 else f"{prob:.1e}"


def fmt_bits(bits):
    return "∞" if bits is not None and math.isinf(bits) else f"{bits:.2f}"


def stdout_console():
    from rich.console import Console

    return Console(highlight=False)


def print_json(obj):
    click.echo(json.dumps(obj, ensure_ascii=False))


def quoted(tokenizer, token_id, markup=False):
    """'label' in quotes; markup=True escapes it for console.print's Rich markup."""
    text = f"'{label(tokenizer, token_id)}'"
    if markup:
        from rich.markup import escape

        text = escape(text)
    return text
