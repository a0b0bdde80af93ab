"""`llm chat`: a conversation with an instruct model that keeps its KV cache between
turns (llmcli.conversation), so each turn prefills only what is new.

stdout carries only the replies; the prompt, notices and the output of /commands go to
stderr. This module reads and prints; the conversation logic is in the library.
"""
import sys

import click

from llmcli.commands._common import model_option
from llmcli.commands._options import (max_tokens_option, runtime_options,
                                      sampler_options)

CHAT_HELP = """Chat with an instruct model; replies stream to stdout.

Type a message and press Enter. For several lines, start and end the message with a
line of three double quotes (\"\"\"). Commands start with "/" (see /help); start a
message with "//" to send one that begins with "/". Ctrl-C stops a reply (what was
said so far stays in the conversation); Ctrl-C twice at the prompt, /exit or Ctrl-D
leaves.

From a pipe, every line is a message (\"\"\" blocks work too) and each reply is printed
followed by one newline (with --format jsonl: one JSON object per reply).

Each turn prefills only the tokens the model has not seen: the rest of the
conversation stays in the KV cache. When a message would not leave room for a reply
(--max-tokens, at most half the context), the oldest turns must go (the system prompt
always stays): --overflow ask (the default) asks on a terminal and drops them from a
pipe; --overflow drop never asks; --overflow stop refuses the message (from a pipe:
exit 1).

Each reply samples with a fresh sampler seeded with --seed: the reply does not depend
on what was sampled before, only on the conversation. The first reply equals `llm
generate -s SYSTEM MESSAGE` with the same seed and options.
"""

COMMANDS_HELP = """\
/help                  this list
/exit, /quit, Ctrl-D   leave the chat
/clear                 start a new conversation (the system prompt stays)
/system [TEXT]         show or set the system prompt
/set KEY VALUE         change a setting: temperature, top_k, top_p, min_p,
                       repeat_penalty, repeat_last_n, seed (a number or random),
                       max_tokens
/show                  settings, conversation size and context used
/save FILE             write the conversation as JSON
/load FILE             replace the conversation with one saved by /save
\"\"\" ... \"\"\"            a message of several lines
//TEXT                 send a message that starts with "/\""""


@click.command("chat", help=CHAT_HELP)
@model_option
@click.option("-s", "--system", default=None, envvar="LLMCLI_SYSTEM", show_envvar=True,
              help="System message (the model's template may add a default one).")
@sampler_options
@max_tokens_option
@runtime_options
@click.option("--overflow", type=click.Choice(["ask", "drop", "stop"]), default="ask",
              show_default=True,
              help="When the conversation outgrows the context: ask (drop from a pipe), "
                   "drop the oldest turns, or refuse the message.")
@click.option("--format", "output_format", type=click.Choice(["text", "jsonl"]),
              default="text", show_default=True,
              help="text streams replies; jsonl prints one JSON object per reply.")
@click.option("--stats", "show_stats", is_flag=True, envvar="LLMCLI_STATS",
              show_envvar=True,
              help="After each reply, print tokens prefilled and reused, and speeds, to "
                   "stderr.")
def chat(model, system, ctx_size, threads, overflow, output_format, show_stats,
         **settings):
    from llmcli.commands._chat_session import ChatSession, Display
    from llmcli.conversation import Conversation
    from llmcli.errors import TemplateError

    loaded = _load_model(model, ctx_size, threads)
    if not loaded.tokenizer.chat_template:
        raise TemplateError(f"model {loaded.name} has no chat template (a base model?); "
                            "`llm chat` needs an instruct model, or use "
                            "`llm generate --raw` to continue text")
    conversation = Conversation(loaded, system)
    source = _input_source()
    display = Display(output_format, styled=_isatty(sys.stderr))
    session = ChatSession(conversation, source, display, settings, overflow, show_stats)
    exit_code = session.run()
    if exit_code:
        sys.exit(exit_code)


def _load_model(name_or_path, n_ctx, threads):
    """Load the model (tests replace this to use a fake)."""
    from llmcli.commands._common import load_model

    return load_model(name_or_path, n_ctx, threads)


def _input_source():
    from llmcli.commands._chat_input import PipeInput, TerminalInput
    from llmcli.commands._chat_session import COMMAND_NAMES

    if _isatty(sys.stdin):
        return TerminalInput(COMMAND_NAMES)
    return PipeInput()


def _isatty(stream):
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False
