"""`llm tokenize` and `llm detokenize`: see how text splits into tokens, and turn ids back
into text. Only the tokenizer is built (from the GGUF metadata); no weights are read."""
import json
import os
import re
import sys
import warnings

import click

from llmcli.commands._common import (escape_control, model_option, read_stdin_text,
                                     resolve_model, terminal_safe)

# Backgrounds that alternate token by token in the split view, by the terminal's colour
# system (Rich's names). Rich rounds a colour to the nearest the terminal has: the dark
# hex shades would round to one grey in 256 colours (4 of 6) and to one colour in 16
# (all 6), and adjacent tokens would merge.
_COLOURS = {
    "truecolor": ["on #3b4261", "on #2d5a3d", "on #6b3b3b", "on #5b4b1b", "on #3b5b6b", "on #5b3b6b"],
    "256": [f"on color({n})" for n in (60, 29, 95, 58, 24, 96)],
    "standard": ["white on blue", "black on green", "white on red", "black on yellow",
                 "black on cyan", "white on magenta"],
}
_VISIBLE = {" ": "␣", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


@click.command()
@click.argument("text", required=False)
@model_option
@click.option("--ids", "output", flag_value="ids", help="Print only the ids, on one line.")
@click.option("--count", "output", flag_value="count", help="Print only the number of tokens.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: the tokens as a JSON object, for scripts.")
@click.option("--parse-special/--no-parse-special", default=False, show_default=True,
              help="Turn control-token texts such as <|im_end|> into those tokens.")
@click.option("--bos/--no-bos", default=None,
              help="Add the BOS token, or not. Default: the model's own rule.")
@click.option("--errors", type=click.Choice(["strict", "replace"]), default="strict",
              show_default=True, help="Invalid UTF-8 input: an error, or replaced by U+FFFD.")
def tokenize(text, model, output, output_format, parse_special, bos, errors):
    """Show how TEXT splits into tokens (TEXT '-' or piped stdin: read stdin)."""
    text = _input_text(text, errors)
    tokenizer = _load_tokenizer(model)
    ids = tokenizer.encode(text, add_special=False, parse_special=parse_special)
    if tokenizer.add_bos if bos is None else bos:
        if tokenizer.bos_id is None:
            raise click.UsageError("--bos: this model has no BOS token")
        ids.insert(0, tokenizer.bos_id)
    if tokenizer.add_eos:
        ids.append(tokenizer.eos_id)

    if output_format == "json":
        # ASCII-only JSON: no raw control char of a token can reach a terminal
        click.echo(json.dumps(_as_json(tokenizer, ids, model)))
    elif output == "ids":
        click.echo(" ".join(map(str, ids)))
    elif output == "count":
        click.echo(len(ids))
    else:
        _show_split(tokenizer, ids)


@click.command()
@click.argument("ids", nargs=-1)
@model_option
@click.option("--skip-special", is_flag=True, help="Leave out control tokens (BOS, <|im_end|>, ...).")
def detokenize(ids, model, skip_special):
    """Turn token IDs back into text (IDs as arguments, or on stdin when piped).

    IDs may be separated by spaces or commas: `llm tokenize --ids hi | llm detokenize`."""
    if not ids and not sys.stdin.isatty():
        ids = (read_stdin_text(),)
    token_ids = _parse_ids(ids)
    tokenizer = _load_tokenizer(model)
    text = tokenizer.decode(token_ids, skip_special=skip_special)
    if sys.stdout.isatty():
        click.echo(terminal_safe(text))
    else:
        click.echo(text, nl=False, color=True)   # exactly: Click would strip ANSI-like text


# ---- input ----

def _input_text(text, errors):
    if text is None and sys.stdin.isatty():
        raise click.UsageError("give TEXT, or '-' (or a pipe) to read stdin")
    if text is None or text == "-":
        return read_stdin_text(errors=errors)
    return _argument_text(text, errors)


def _argument_text(text, errors):
    """Click hands over argv decoded with surrogateescape: bytes that were not UTF-8 show
    up as lone surrogates. Treat them like invalid UTF-8 on stdin."""
    from llmcli.errors import InputError

    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = os.fsencode(text)
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise InputError(f"TEXT is not valid UTF-8 (byte offset {exc.start}); "
                         "use --errors replace to substitute U+FFFD") from None


def _parse_ids(values):
    ids = []
    for value in values:
        for item in re.split(r"[\s,]+", value.strip()):
            if not item:
                continue
            try:
                ids.append(int(item))
            except ValueError:
                raise click.BadParameter(f"{item!r} is not a token id (an integer)",
                                         param_hint="ID") from None
    if not ids:
        raise click.UsageError("give at least one token id")
    return ids


def _load_tokenizer(model):
    from llmcli.tokenizer import Tokenizer

    path = resolve_model(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tokenizer = Tokenizer.from_gguf(path)
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)
    return tokenizer


# ---- output ----

def visible_piece(tokenizer, token_id):
    """What a token stands for, with whitespace and stray bytes made visible: ' love' ->
    '␣love', '\\n' -> '\\\\n', ' ' + the first byte of 'À' -> '␣<0xC3>'."""
    # surrogateescape keeps each byte that is not part of a whole char as U+DC80..U+DCFF
    text = tokenizer.token_bytes(token_id).decode("utf-8", errors="surrogateescape")
    text = "".join(f"<0x{ord(char) - 0xDC00:02X}>" if "\udc80" <= char <= "\udcff" else char
                   for char in text)
    if not tokenizer.is_special(token_id):
        text = "".join(_VISIBLE.get(char, char) for char in text)
    return escape_control(text, keep_newlines=False)  # model text never reaches a terminal raw


def _as_json(tokenizer, ids, model):
    tokens = []
    for index, token_id in enumerate(ids):
        data = tokenizer.token_bytes(token_id)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None  # part of a multi-byte char: see "bytes"
        tokens.append({"index": index, "id": token_id, "piece": tokenizer.token_piece(token_id),
                       "text": text, "bytes": data.hex(), "special": tokenizer.is_special(token_id)})
    return {"model": model, "count": len(ids), "ids": ids, "tokens": tokens}


def _show_split(tokenizer, ids):
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    pieces = [visible_piece(tokenizer, token_id) for token_id in ids]
    colours = _COLOURS.get(console.color_system, _COLOURS["standard"])  # also "windows"
    styles = ["bold magenta" if tokenizer.is_special(token_id) else colours[i % len(colours)]
              for i, token_id in enumerate(ids)]
    # colours mark where tokens start and end; without colours a bar does
    separator = "" if console.color_system else "\u2502"
    split, line_start = Text(), True
    for piece, style in zip(pieces, styles):
        if not line_start:
            split.append(separator)
        split.append(piece, style=style)
        line_start = piece.endswith("\\n")
        if line_start:
            split.append("\n")
    console.print(split, soft_wrap=True)
    console.print()

    # the table as plain aligned lines: a Rich Table of 100k rows would take minutes
    index_width = max(len("index"), len(str(len(ids) - 1)))
    id_width = max([len("id")] + [len(str(i)) for i in ids])
    table = Text(f"{'index':>{index_width}}  {'id':>{id_width}}  piece\n", style="bold")
    for index, (token_id, piece) in enumerate(zip(ids, pieces)):
        table.append(f"{index:>{index_width}}  {token_id:>{id_width}}  ")
        table.append(piece, style="bold magenta" if tokenizer.is_special(token_id) else "")
        table.append("\n")
    console.print(table, soft_wrap=True, end="")
    console.print(f"\n{len(ids)} tokens")
