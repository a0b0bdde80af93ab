"""Pieces shared by the subcommands: the -m/--model option, reading user text, and
making untrusted strings (model metadata, model output) safe to show on a terminal."""
import os
import re
import sys

import click

DEFAULT_MODEL = "smollm2"


def model_option(func):
    """-m/--model NAME_OR_PATH: a registry name (see `llm models list`) or a .gguf path."""
    return click.option(
        "-m", "--model", "model", default=lambda: os.environ.get("LLMCLI_MODEL", DEFAULT_MODEL),
        show_default="smollm2, or $LLMCLI_MODEL",
        help="Registry name (see `llm models list`) or path to a .gguf file.",
    )(func)


def resolve_model(name_or_path):
    """Registry name or path -> local .gguf path, pulling a registry model if missing
    (with a one-line notice on stderr). Raises ModelError with what to do otherwise."""
    from llmcli import models

    return models.ensure_local(name_or_path, quiet=False)


# C0 controls except tab/newline, DEL, and C1 controls: ESC starts CSI/OSC sequences
# (screen clears, OSC 8 links, OSC 52 clipboard writes), so none may reach a terminal raw.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def load_model(name_or_path, n_ctx, threads, ctx_option="--ctx-size"):
    """Load a model (a missing registry model is pulled first, with its notice). A context
    the model cannot take is a usage error of the option that asked for it (exit 2)."""
    from llmcli.errors import ContextSizeError
    from llmcli.model import load

    resolve_model(name_or_path)
    try:
        return load(name_or_path, n_ctx=n_ctx, threads=threads)
    except ContextSizeError as exc:
        raise click.BadParameter(str(exc), ctx=click.get_current_context(silent=True),
                                 param_hint=f"'{ctx_option}'") from None


def escape_control(text, keep_newlines=True):
    """Replace control characters by visible escapes (\\x1b, \\u009b...)."""
    def visible(match):
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    text = _CONTROL.sub(visible, text)
    if not keep_newlines:
        text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text


def terminal_safe(text, stream=None, raw=False):
    """Text as it may be written to `stream`: escaped when it is a terminal, unless raw."""
    stream = stream or sys.stdout
    if raw or not _isatty(stream):
        return text
    return escape_control(text)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# Far more text than any context holds, yet a bounded read: stdin or a file may be
# /dev/zero or an endless pipe.
MAX_PROMPT_BYTES = 16 << 20


def read_limited(stream, what):
    """All the bytes of a binary stream, refusing more than MAX_PROMPT_BYTES."""
    from llmcli.errors import InputError

    data = stream.read(MAX_PROMPT_BYTES + 1)
    if len(data) > MAX_PROMPT_BYTES:
        raise InputError(f"{what} holds more than {MAX_PROMPT_BYTES >> 20} MiB of text, "
                         "far more than any context")
    return data


def read_stdin_text(errors="strict"):
    """All of stdin as text ("" when stdin is closed). Invalid UTF-8 is an InputError
    naming the byte offset, unless errors='replace'."""
    from llmcli.errors import InputError

    data = read_limited(sys.stdin.buffer, "stdin") if sys.stdin is not None else b""
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise InputError(f"stdin is not valid UTF-8 (byte offset {exc.start}); "
                         "use --errors replace to substitute U+FFFD") from None


_C1_AND_DEL = re.compile("[\x7f-\x9f]")


def json_text(obj):
    """JSON with non-ASCII kept readable; DEL and C1 controls escaped (json.dumps escapes
    only C0), so the line is safe on a terminal and still valid JSON."""
    import json

    text = json.dumps(obj, ensure_ascii=False)
    return _C1_AND_DEL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
