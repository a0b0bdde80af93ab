"""The `llm chat` loop: read an entry, run a /command or send a message, print the
reply. Replies go to stdout; everything else (prompt, notices, /show) to stderr.

On a terminal, errors (a bad /set value, an unreadable /load file) are one-line notices
and the chat goes on; from a pipe they end it with exit 1, so scripts notice.
"""
import os
import sys

from llmcli import conversation as conversation_file
from llmcli.cli import interrupted_status, terminated
from llmcli.commands._chat_input import UnterminatedBlock, read_entry
from llmcli.commands._common import json_text, terminal_safe
from llmcli.commands._options import SAMPLING, parse_setting
from llmcli.errors import ContextOverflowError, InputError, LLMError

COMMAND_NAMES = ("/help", "/exit", "/quit", "/clear", "/system", "/set", "/show",
                 "/save", "/load")


class Display:
    """Where and how things are written: replies to stdout (streamed text, or one JSON
    line per reply), chrome to stderr (dimmed on a terminal unless NO_COLOR is set)."""

    def __init__(self, output_format="text", styled=False):
        self.output_format = output_format
        self.styled = styled and not os.environ.get("NO_COLOR")

    def reply_text(self, text):
        if self.output_format == "text" and text:
            sys.stdout.write(terminal_safe(text, sys.stdout))
            sys.stdout.flush()

    def end_reply(self, turn, seed):
        if self.output_format == "jsonl":
            stats = turn.stats
            record = {"role": "assistant", "content": turn.text,
                      "finish_reason": turn.finish_reason, "seed": seed,
                      "prompt_tokens": stats.prompt_tokens if stats else 0,
                      "prefill_tokens": stats.prefill_tokens if stats else 0,
                      "generated_tokens": len(turn.tokens)}
            sys.stdout.write(json_text(record) + "\n")
        elif not (_isatty(sys.stdout) and turn.text.endswith("\n")):
            # From a pipe every reply ends with exactly one added newline; a terminal
            # only needs one to start the prompt on its own line.
            sys.stdout.write("\n")
        sys.stdout.flush()

    def notice(self, text):
        text = f"\x1b[2m{text}\x1b[0m" if self.styled else text
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def info(self, text):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


class ChatSession:
    def __init__(self, conversation, source, display, settings, overflow="ask",
                 show_stats=False):
        self.conversation, self.source, self.display = conversation, source, display
        self.settings = {s.name: settings.get(s.name, s.default) for s in SAMPLING}
        self.overflow, self.show_stats = overflow, show_stats
        self.last_seed = None
        self.last_turn = None
        self.interrupted_at_prompt = False
        self.commands = {
            "/help": self.cmd_help, "/exit": self.cmd_exit, "/quit": self.cmd_exit,
            "/clear": self.cmd_clear, "/system": self.cmd_system, "/set": self.cmd_set,
            "/show": self.cmd_show, "/save": self.cmd_save, "/load": self.cmd_load,
        }

    @property
    def interactive(self):
        return self.source.interactive

    def run(self):
        """Read and answer until the user leaves; returns the exit code."""
        if self.interactive:
            model = self.conversation.model
            self.display.notice(f"Chatting with {model.name} (context {model.n_ctx} "
                                "tokens). /help for commands; /exit or Ctrl-D to leave.")
        while True:
            try:
                entry = read_entry(self.source)
            except EOFError:
                return 0
            except KeyboardInterrupt:
                if not self.interactive or self.interrupted_at_prompt or terminated():
                    return interrupted_status()
                self.interrupted_at_prompt = True
                self.display.notice("\n(press Ctrl-C again or type /exit to leave)")
                continue
            except UnterminatedBlock:
                if not self.interactive:
                    raise InputError('input ended inside a """ block') from None
                self.display.notice('\n(the """ block was not closed: discarded)')
                continue
            self.interrupted_at_prompt = False
            exit_code = self._handle(entry)
            if exit_code is not None:
                return exit_code

    def _handle(self, entry):
        """Run one entry; an exit code ends the chat. Errors end it only from a pipe."""
        text = entry.text
        try:
            if not entry.block and text.startswith("/") and not text.startswith("//"):
                return self._command(text)
            if not entry.block and text.startswith("//"):
                text = text[1:]
            if text.strip():
                return self.send(text)
        except LLMError as exc:
            if not self.interactive:
                raise
            self.display.notice(f"error: {' '.join(str(exc).split())}")
        return None

    # --- messages ------------------------------------------------------------------------

    def send(self, text):
        from llmcli.sampling import make_sampler

        max_tokens = self.settings["max_tokens"]
        plan = self.conversation.plan(text, max_tokens)
        if plan.n_drop and not self._agree_to_drop(plan):
            return None
        sampler = make_sampler(**{k: v for k, v in self.settings.items()
                                  if k != "max_tokens"})
        self.last_seed = sampler.seed
        turn = self.conversation.start_turn(plan, sampler, max_tokens)
        self._stream(turn)
        self.last_turn = turn
        self._report(turn)
        if turn.finish_reason == "interrupted" and (not self.interactive or terminated()):
            return interrupted_status()
        return None

    def _stream(self, turn):
        try:
            for chunk in turn:
                self.display.reply_text(chunk.text)
        except KeyboardInterrupt:
            # Ctrl-C while printing: the generator still holds text back; let it go.
            self.display.reply_text(turn.interrupt().text)
        self.display.end_reply(turn, self.last_seed)

    def _report(self, turn):
        notice, n_ctx = self.display.notice, self.conversation.model.n_ctx
        reason = turn.finish_reason
        if reason == "interrupted":
            notice("[interrupted before the reply began: message not kept]" if turn.cancelled
                   else "[interrupted: the partial reply stays in the conversation]")
        elif reason == "length":
            notice(f"[reply cut at max_tokens={self.settings['max_tokens']}; "
                   "/set max_tokens N for longer replies]")
        elif reason == "context":
            notice(f"[reply cut: the context window ({n_ctx} tokens) is full]")
        if self.show_stats and turn.stats:
            notice(_stats_line(turn.stats))

    def _agree_to_drop(self, plan):
        """Whether the oldest plan.n_drop turns may go (per --overflow)."""
        n_ctx = self.conversation.model.n_ctx
        what = (f"the oldest {plan.n_drop} of {self.conversation.n_turns()} turns"
                if plan.n_drop > 1 else "the oldest turn")
        policy = self.overflow
        if policy == "ask" and not self.interactive:
            policy = "drop"
        if policy == "drop":
            self.display.notice(f"[context window full ({n_ctx} tokens): dropped {what}; "
                                "the system prompt stays]")
            return True
        if policy == "stop" and not self.interactive:
            raise ContextOverflowError(
                f"the conversation no longer fits the context window ({n_ctx} tokens) "
                "with room for a reply, and --overflow is stop")
        if policy == "ask":
            self.display.notice(f"This message does not fit the context window ({n_ctx} "
                                "tokens) with room for a reply.")
            if self._ask(f"Drop {what} (the system prompt stays)? [y = drop, n = stop] "):
                return True
        self.display.notice("[message not sent: /save then /clear to start afresh, "
                            "/set max_tokens for a smaller reply, or /exit]")
        return False

    def _ask(self, question):
        try:
            answer = self.source.ask(question)
        except (EOFError, KeyboardInterrupt):
            if terminated():
                raise
            self.display.notice("")
            return False
        return answer.strip().lower() in ("y", "yes", "d", "drop")

    # --- /commands ---------------------------------------------------------------------

    def _command(self, text):
        name, _, argument = text.partition(" ")
        handler = self.commands.get(name.lower())
        if handler is None:
            raise InputError(f"unknown command {name}; /help lists the commands "
                             "(start a message with // to send a literal /)")
        return handler(argument.strip())

    def cmd_help(self, argument):
        from llmcli.commands.chat import COMMANDS_HELP

        self.display.info(COMMANDS_HELP)

    def cmd_exit(self, argument):
        return 0

    def cmd_clear(self, argument):
        self.conversation.clear()
        kept = " (the system prompt stays)" if self.conversation.system is not None else ""
        self.display.notice(f"[new conversation{kept}]")

    def cmd_system(self, argument):
        if not argument:
            system = self.conversation.system
            self.display.info("(none: the model's template default applies)" if system is None
                              else terminal_safe(system, sys.stderr))
            return
        self.conversation.set_system(argument)
        self.display.notice("[system prompt set; it applies from the next message]")

    def cmd_set(self, argument):
        key, _, value = argument.partition(" ")
        if not key or not value.strip():
            raise InputError("usage: /set KEY VALUE (keys: "
                             + ", ".join(s.name for s in SAMPLING) + ")")
        key = key.replace("-", "_").lower()
        self.settings[key] = parse_setting(key, value.strip())
        shown = "random" if self.settings[key] is None else self.settings[key]
        self.display.notice(f"[{key} = {shown}]")

    def cmd_show(self, argument):
        for line in _show_lines(self):
            self.display.info(line)

    def cmd_save(self, argument):
        if not argument:
            raise InputError("usage: /save FILE")
        conversation_file.save(self.conversation, argument)
        self.display.notice(f"[saved {self.conversation.n_turns()} turns to {argument}]")

    def cmd_load(self, argument):
        if not argument:
            raise InputError("usage: /load FILE")
        system, messages = conversation_file.load(argument)
        self.conversation.replace(system, messages)
        self.display.notice(f"[loaded {self.conversation.n_turns()} turns from {argument}]")


def _show_lines(session):
    conv, model = session.conversation, session.conversation.model
    settings = dict(session.settings)
    seed = "random" if settings["seed"] is None else settings["seed"]
    if settings["seed"] is None and session.last_seed is not None:
        seed += f" (last reply: {session.last_seed})"
    settings["seed"] = seed
    n_tokens, n_past = conv.token_count(), model.n_past
    system = "none (the template's default)" if conv.system is None \
        else terminal_safe(repr(_shorten(conv.system)), sys.stderr)
    lines = [
        f"model:        {model.name} ({model.config.arch}) {model.path}",
        f"conversation: {conv.n_turns()} turns, {n_tokens} tokens",
        f"context:      {n_past} of {model.n_ctx} tokens in the KV cache "
        f"({100 * n_past / model.n_ctx:.0f}% used)",
        f"system:       {system}",
        "settings:     " + ", ".join(f"{k} {v}" for k, v in settings.items()),
    ]
    if session.last_turn is not None and session.last_turn.stats:
        lines.append(f"last reply:   {_stats_line(session.last_turn.stats)}")
    return lines


def _stats_line(stats):
    cached = stats.prompt_tokens - stats.prefill_tokens
    return (f"[prompt {stats.prompt_tokens} tokens: {stats.prefill_tokens} prefilled in "
            f"{stats.prefill_seconds:.3f} s, {cached} from the cache; "
            f"reply {stats.generated_tokens} tokens, "
            f"{stats.decode_tokens_per_second:.1f} tokens/s]")


def _shorten(text, limit=70):
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
