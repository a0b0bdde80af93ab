"""`llm generate [PROMPT]`: stream a model's continuation of a prompt to stdout.

stdout carries only the generated text (or the JSON with --format); everything else
(notices, --show-prompt, --verbose, --stats) goes to stderr. Ctrl-C keeps the text so far
and exits 130; a closed pipe (`| head -c 1`) ends quietly.
"""
import sys

import click

from llmcli.commands._common import model_option, read_limited, read_stdin_text
from llmcli.commands._options import (max_tokens_option, runtime_options,
                                      sampler_options)


def _number_check(option_text, valid, what):
    """A Click callback: a usage error naming the option unless valid(value)."""
    def check(ctx, param, value):
        if value is not None and not valid(value):
            raise click.BadParameter(f"{value!r} is not {what}", ctx, param,
                                     param_hint=option_text)
        return value
    return check


def _stops_check(ctx, param, values):
    if any(v == "" for v in values):
        raise click.BadParameter("a stop string cannot be empty", ctx, param,
                                 param_hint="--stop")
    return values


def _env(name):
    return {"envvar": f"LLMCLI_{name}", "show_envvar": True}


class _StopString(click.ParamType):
    """A --stop value. $LLMCLI_STOP holds one stop string, taken whole: Click would split
    a repeatable option's variable at whitespace, and stop strings often hold spaces."""
    name = "string"

    def convert(self, value, param, ctx):
        return value

    def split_envvar_value(self, rv):
        return [rv]


# The sampler's options, for other commands that sample (declared in _options.py).
sampling_options = sampler_options


PROMPT_HELP = """Generate text from a prompt; the text streams to stdout.

The prompt comes from PROMPT, from -f FILE, and from stdin when it is piped (or when
PROMPT is "-"). Several sources are joined in the order stdin, file, PROMPT, with a
blank line between them: `cat notes.txt | llm generate "Summarize:"` puts the notes
first and the instruction last.

Models with a chat template (instruct models) are prompted through it; models without
one (base models) continue the text as is. --raw and --chat force either mode.

Sampling runs: repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw.
Temperature 0 is greedy. Every default can be set with the LLMCLI_* variable shown.
"""


@click.command("generate", help=PROMPT_HELP)
@click.argument("prompt", required=False)
@model_option
@click.option("-f", "--file", "prompt_file", type=click.Path(dir_okay=False),
              help="Read the prompt (or its first part) from this file.")
@sampler_options
@max_tokens_option
@click.option("--stop", "stops", multiple=True, metavar="STRING", type=_StopString(),
              callback=_stops_check,
              help="Stop when the output would contain STRING (not printed); repeatable.",
              **_env("STOP"))
@click.option("--ignore-eos", is_flag=True, help="Keep going past end-of-text tokens.",
              **_env("IGNORE_EOS"))
@runtime_options
@click.option("--raw/--chat", "raw_mode", default=None,
              show_default="chat if the model has a chat template, else raw",
              help="Raw completion, or the model's chat template (LLMCLI_RAW=1: raw, 0: chat).",
              **_env("RAW"))
@click.option("-s", "--system", default=None, help="System message (chat mode).",
              **_env("SYSTEM"))
@click.option("--show-prompt", is_flag=True,
              help="Print the prompt as the model sees it, and its token count, to stderr.",
              **_env("SHOW_PROMPT"))
@click.option("--stats", "show_stats", is_flag=True,
              help="Print load time, speeds and the finish reason to stderr.",
              **_env("STATS"))
@click.option("--format", "output_format", type=click.Choice(["text", "json", "jsonl"]),
              default="text", show_default=True,
              help="text streams the output; json prints one object at the end; jsonl one "
                   "line per token, then a summary line.", **_env("FORMAT"))
@click.option("--top-logprobs", type=int, default=0, show_default=True,
              callback=_number_check("--top-logprobs", lambda x: 0 <= x <= 100,
                                     "an integer in [0, 100]"),
              help="With --format json/jsonl: the K most likely tokens at each step.")
@click.option("--raw-output", is_flag=True,
              help="Write control characters of the output as they are, even to a terminal.")
@click.option("--errors", "decode_errors", type=click.Choice(["strict", "replace"]),
              default="strict", show_default=True,
              help="Invalid UTF-8 in stdin or --file: an error, or U+FFFD.")
@click.option("--show-probs", type=click.IntRange(0, 20), default=0, metavar="K",
              show_default=True,
              help="Show each token on its own line with its probability and the K most "
                   "likely alternatives in the distribution the sampler drew from (with "
                   "--verbose also the model's raw distribution); then the whole text.")
@click.option("--step", is_flag=True,
              help="On a terminal: after each draw show the top 10 alternatives; Enter "
                   "keeps the drawn token, a digit picks another, q stops.")
@click.option("-v", "--verbose", is_flag=True,
              help="Print the model, mode and sampler chain (with its seed) to stderr.",
              **_env("VERBOSE"))
@click.pass_context
def generate(ctx, prompt, model, prompt_file, **options):
    from llmcli.commands._generate_run import GenerateRequest, run

    if options["top_logprobs"] and options["output_format"] == "text":
        raise click.BadParameter("needs --format json or jsonl", ctx,
                                 param_hint="--top-logprobs")
    _check_view_options(options)
    text = _prompt_text(prompt, prompt_file, options["decode_errors"])
    request = GenerateRequest(model=model, prompt=text, **options)
    finish_reason = run(request, _load_model)
    if finish_reason == "interrupted":
        # Ctrl-C or SIGTERM: the partial output and stats are out; exit like a shell
        # would (128 + the signal).
        # (sys.exit, not ctx.exit: Click would turn the latter into a return value.)
        from llmcli.cli import interrupted_status

        sys.exit(interrupted_status())


def _check_view_options(options):
    """--show-probs and --step render their own text view; --step needs a terminal."""
    for flag, on in (("--show-probs", options["show_probs"]), ("--step", options["step"])):
        if on and options["output_format"] != "text":
            raise click.UsageError(f"{flag} works with --format text "
                                   "(JSON has --top-logprobs)")
    if options["step"] and not (_isatty(sys.stdin) and _isatty(sys.stdout)):
        raise click.UsageError("--step is interactive: it needs a terminal on stdin and "
                               "stdout (use --show-probs K to see the choices in a pipe)")


def _load_model(name_or_path, n_ctx, threads):
    """Load the model (tests replace this to use a fake)."""
    from llmcli.commands._common import load_model

    return load_model(name_or_path, n_ctx, threads)


def _prompt_text(prompt, prompt_file, decode_errors):
    """The prompt from its sources: stdin (piped, or PROMPT "-"), --file, PROMPT."""
    stdin_is_tty = _isatty(sys.stdin)
    if prompt is None and prompt_file is None and stdin_is_tty:
        raise click.UsageError("no prompt: give PROMPT, -f FILE, or pipe text on stdin")
    parts = []
    if prompt == "-" or not stdin_is_tty:
        parts.append(read_stdin_text(errors=decode_errors).rstrip("\n"))
    if prompt_file is not None:
        parts.append(_read_file(prompt_file, decode_errors).rstrip("\n"))
    if prompt is not None and prompt != "-":
        parts.append(prompt)
    text = "\n\n".join(p for p in parts if p)
    if not text:
        raise click.UsageError("the prompt is empty")
    return text


def _read_file(path, decode_errors):
    from llmcli.errors import InputError

    try:
        with open(path, "rb") as f:
            data = read_limited(f, f"--file {path}")
    except OSError as exc:
        raise InputError(f"cannot read --file {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8", errors=decode_errors)
    except UnicodeDecodeError as exc:
        raise InputError(f"--file {path} is not valid UTF-8 (byte offset {exc.start}); "
                         "use --errors replace to substitute U+FFFD") from None


def _isatty(stream):
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False

