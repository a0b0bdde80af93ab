"""Reading what the user types into `llm chat`: lines from a terminal (with readline's
editing and arrow-key history) or from a pipe, and `\"\"\"` blocks that span lines.

    >>> \"\"\"
    ... first line
    ... second line
    ... \"\"\"

A block may also start or end with text on the same line (`\"\"\"first line`,
`last line\"\"\"`) or fit on one line (`\"\"\"a /literal message\"\"\"`). Its text is always a
message, never a /command.
"""
import sys
from dataclasses import dataclass

from llmcli.commands._common import MAX_PROMPT_BYTES
from llmcli.errors import InputError

BLOCK = '"""'


@dataclass
class Entry:
    text: str
    block: bool   # came from a \"\"\" block: a message even if it starts with "/"


class UnterminatedBlock(Exception):
    """Input ended (Ctrl-D, end of the pipe) inside a \"\"\" block."""


class TerminalInput:
    """Lines typed at a terminal. input() gives readline editing and history only when
    stdout is a terminal too; otherwise the prompt goes to stderr so that redirected
    stdout holds nothing but replies."""

    interactive = True

    def __init__(self, commands=()):
        import readline   # noqa: F401 - importing it gives input() editing and history

        self.readline = readline
        self.use_input = _isatty(sys.stdout)
        self._install_completion(sorted(commands))

    def read_line(self, prompt):
        """One line without its newline; EOFError at Ctrl-D."""
        if self.use_input:
            return input(prompt)
        sys.stderr.write(prompt)
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def ask(self, question):
        """An answer to a question (kept out of the message history)."""
        answer = self.read_line(question)
        if self.use_input and answer and self.readline.get_current_history_length():
            self.readline.remove_history_item(self.readline.get_current_history_length() - 1)
        return answer

    def remember(self, text):
        """Put a whole message in the history (a block's lines went in one by one)."""
        if text:
            self.readline.add_history(text)

    def _install_completion(self, commands):
        def complete(text, state):
            matches = [c for c in commands if c.startswith(text)] if text.startswith("/") \
                else []
            return matches[state] if state < len(matches) else None

        self.readline.set_completer(complete)
        self.readline.set_completer_delims(" \t\n")
        self.readline.parse_and_bind("tab: complete")


class PipeInput:
    """Lines from a pipe or file: one message per line, strict UTF-8, no prompt."""

    interactive = False

    def __init__(self, stream=None):
        self.stream = stream or sys.stdin.buffer
        self.line_number = 0

    def read_line(self, prompt):
        # bounded: stdin may be /dev/zero, one endless line
        data = self.stream.readline(MAX_PROMPT_BYTES + 1)
        if not data:
            raise EOFError
        self.line_number += 1
        if len(data) > MAX_PROMPT_BYTES:
            raise InputError(f"stdin line {self.line_number} holds more than "
                             f"{MAX_PROMPT_BYTES >> 20} MiB of text, far more than any context")
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"stdin line {self.line_number} is not valid UTF-8 "
                             f"(byte offset {exc.start} in the line)") from None
        return line.rstrip("\n").removesuffix("\r")

    def ask(self, question):
        return self.read_line(question)

    def remember(self, text):
        pass


def read_entry(source, prompt=">>> ", more_prompt="... "):
    """The next thing the user entered: a line, or a whole \"\"\" block. EOFError at the
    end of input before anything; UnterminatedBlock if it ends inside a block."""
    line = source.read_line(prompt)
    opened = line.lstrip()
    if not opened.startswith(BLOCK):
        return Entry(line.strip(), block=False)
    first = opened[len(BLOCK):]
    if first.rstrip().endswith(BLOCK):
        return Entry(first.rstrip()[:-len(BLOCK)], block=True)
    lines = [first] if first.strip() else []
    while True:
        try:
            line = source.read_line(more_prompt)
        except EOFError:
            raise UnterminatedBlock from None
        if line.rstrip().endswith(BLOCK):
            last = line.rstrip()[:-len(BLOCK)]
            if last.strip():
                lines.append(last)
            text = "\n".join(lines)
            source.remember(f"{BLOCK}{text}{BLOCK}")
            return Entry(text, block=True)
        lines.append(line)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
