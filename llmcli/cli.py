"""The `llm` command: a Click group whose subcommands live in llmcli/commands/, one module
each, imported only when that subcommand runs (start-up stays fast: no Rich, Jinja or
NumPy import for `llm --help`).

Every error a user can cause ends here as one `Error: ...` line on stderr and exit 1
(usage errors: exit 2, Ctrl-C: 130). LLMCLI_DEBUG=1 re-enables tracebacks.
"""
import errno
import importlib
import importlib.util
import io
import os
import signal
import sys
import warnings

import click

# subcommand name -> (module under llmcli.commands, one-line help shown by `llm --help`)
COMMANDS = {
    "generate": ("generate", "Generate text from a prompt (streams to stdout)."),
    "chat": ("chat", "Interactive chat with an instruct model."),
    "tokenize": ("tokenize", "Show how text splits into tokens."),
    "detokenize": ("tokenize", "Turn token ids back into text."),
    "inspect": ("inspect", "Show a model's architecture, tokenizer and tensors."),
    "models": ("models", "List, pull, remove and locate models."),
    "perplexity": ("perplexity", "Perplexity of a text under a model."),
    "bench": ("bench", "Prefill and decode speed, like llama-bench."),
    "probs": ("probs", "The next-token distribution after a prompt."),
    "explain": ("explain", "Walk the whole pipeline for a prompt, with real numbers."),
    "attention": ("attention", "Which earlier tokens a token attends to."),
    "score": ("score", "How surprised the model is by each token of a text."),
}


def _command_available(name):
    module = COMMANDS[name][0]
    return importlib.util.find_spec(f"llmcli.commands.{module}") is not None


class StdoutClosed(Exception):
    """stdout's reader went away (BrokenPipeError in a subcommand)."""


class LazyGroup(click.Group):
    def invoke(self, ctx):
        # Click turns an EPIPE OSError into exit 1 before main() could see it; a closed
        # pipe (`llm generate ... | head -c 1`) should end the program quietly, with 0.
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise StdoutClosed() from None

    def list_commands(self, ctx):
        return [name for name in COMMANDS if _command_available(name)]

    def get_command(self, ctx, name):
        if name not in COMMANDS or not _command_available(name):
            return None
        module = importlib.import_module(f"llmcli.commands.{COMMANDS[name][0]}")
        return getattr(module, name.replace("-", "_"))

    def format_commands(self, ctx, formatter):
        # Use the static help lines so `llm --help` imports no subcommand module.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmcli", prog_name="llm")
def cli():
    """llm: run small language models on your CPU, and see how they work."""


def _one_line(message):
    """The message on one line, its control characters made visible: it may quote a
    file's strings or a path, and must not drive the terminal (ESC sequences)."""
    from llmcli.commands._common import escape_control

    return escape_control(" ".join(str(message).split())) or "unknown error"


_python_show_warning = warnings.showwarning
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Our own warnings (an unknown pre-tokenizer, ...) as one `Warning: ...` line on
    stderr, like errors; other packages' keep Python's format, which says where."""
    if os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep):
        click.echo(f"Warning: {_one_line(message)}", err=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


class _ClosedStdout(io.TextIOBase):
    """Stands in for a stdout closed before start (`llm ... >&-`, sys.stdout is None):
    writing to it fails like writing to a closed descriptor, reported as one error."""

    def write(self, text):
        raise OSError(errno.EBADF, "cannot write output: stdout is closed")

    def isatty(self):
        return False


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds like Ctrl-C (output so far
    kept, no traceback) and exits with 128 + 15."""


_terminated = False


def _on_sigterm(signum, frame):
    global _terminated
    _terminated = True
    raise Terminated()


def terminated():
    """Has SIGTERM arrived? (A program that goes on after Ctrl-C must stop after it.)"""
    return _terminated


def interrupted_status():
    """The exit status of an interrupted run, as a shell reports a signal: 130 for Ctrl-C
    (SIGINT), 143 for SIGTERM."""
    return 128 + (signal.SIGTERM if _terminated else signal.SIGINT)


def main(argv=None):
    """Console entry point: run the group, turning every failure into one line."""
    from llmcli.errors import LLMError

    debug = bool(os.environ.get("LLMCLI_DEBUG"))
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
    if sys.stdin is None:   # started with stdin closed (`<&-`): read it as empty
        sys.stdin = open(os.devnull, encoding="utf-8")
    signal.signal(signal.SIGTERM, _on_sigterm)
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name="llm", standalone_mode=False)
    except click.exceptions.Abort:
        # Click turns Ctrl-C / EOF at a prompt into Abort.
        _quiet_stdout()
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _quiet_stdout()
        sys.exit(interrupted_status())
    except (BrokenPipeError, StdoutClosed):
        # stdout closed early (`llm generate ... | head -c 1`): end quietly.
        _quiet_stdout()
        sys.exit(0)
    except LLMError as exc:
        if debug:
            raise
        click.echo(f"Error: {_one_line(exc)}", err=True)
        sys.exit(1)
    except OSError as exc:
        if debug:
            raise
        click.echo(f"Error: {_one_line(exc)}", err=True)
        sys.exit(1)
    except MemoryError:
        click.echo("Error: out of memory", err=True)
        sys.exit(1)
    except Exception as exc:  # a bug: still one line unless debugging
        if debug:
            raise
        click.echo(f"Error: internal error: {type(exc).__name__}: {_one_line(exc)} "
                   "(set LLMCLI_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)
    _flush_stdout()
    sys.exit(0)


def _flush_stdout():
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    except OSError as exc:  # e.g. stdout is /dev/full
        _quiet_stdout()
        click.echo(f"Error: cannot write output: {_one_line(exc)}", err=True)
        sys.exit(1)


def _quiet_stdout():
    """Point stdout at /dev/null so the interpreter's final flush cannot raise."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()
