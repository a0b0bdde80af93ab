"""`llm chat` with the fake chat model (tests/chat_fakes.py): the session logic in
process with a scripted terminal, then the real entry point as a subprocess
(tests/fake_chat_llm.py) through a pipe and through a pseudo-terminal (stdlib `pty`):
replies equal `llm generate` with the same seed, Ctrl-C stops a reply or (twice) the
chat, Ctrl-D leaves, arrow-up recalls history."""
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import llmcli.commands.chat as chat_command
from llmcli.commands._chat_session import COMMAND_NAMES, ChatSession, Display
from llmcli.conversation import Conversation

from chat_fakes import echo_model

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_LLM = os.path.join(HERE, "fake_chat_llm.py")


# --- the session with a scripted terminal ------------------------------------------------

class ScriptedInput:
    """Stands in for the terminal: returns the given lines; KeyboardInterrupt in the
    list is raised like a Ctrl-C at the prompt; the end of the list is Ctrl-D."""
    interactive = True

    def __init__(self, lines):
        self.lines = list(lines)

    def read_line(self, prompt):
        if not self.lines:
            raise EOFError
        line = self.lines.pop(0)
        if line is KeyboardInterrupt:
            raise KeyboardInterrupt
        return line

    ask = read_line

    def remember(self, text):
        pass


def run_session(lines, model=None, system=None, overflow="ask", **settings):
    conversation = Conversation(model or echo_model(), system)
    settings = {"temperature": 0.0, **settings}
    session = ChatSession(conversation, ScriptedInput(lines), Display(), settings, overflow)
    return session.run(), session


def test_messages_and_replies(capsys):
    code, session = run_session(["hello", "", "//slash", '"""', "two", "lines", '"""'])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "You said: hello\nYou said: /slash\nYou said: two\nlines\n"
    assert session.conversation.n_turns() == 3
    assert "Chatting with fake" in err


def test_set_validates_like_the_generate_options(capsys):
    code, session = run_session(["/set temperature abc", "/set top_k -1", "/set top_k 5",
                                 "/set top-p 0.5", "/set seed random", "/set seed 2**3",
                                 "/set max_tokens 0", "/set colour red", "/set top_k",
                                 "/set temperature nan"])
    err = capsys.readouterr().err
    assert code == 0
    assert session.settings["top_k"] == 5 and session.settings["top_p"] == 0.5
    assert session.settings["seed"] is None
    expected = [
        "error: temperature: 'abc' is not a number >= 0",
        "error: top_k: '-1' is not an integer >= 0",
        "[top_k = 5]", "[top_p = 0.5]", "[seed = random]",
        "error: seed: '2**3' is not an integer in [0, 2**64) or 'random'",
        "error: max_tokens: '0' is not an integer >= 1",
        "error: unknown setting 'colour'; settings: temperature, top_k, top_p, min_p, "
        "repeat_penalty, repeat_last_n, seed, max_tokens",
        "error: usage: /set KEY VALUE",
        "error: temperature: 'nan' is not a number >= 0",
    ]
    lines = err.splitlines()[1:]
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected):
        assert line.startswith(start), line


def test_set_changes_the_next_reply(capsys):
    # At temperature 0 the echo is exact; max_tokens 4 cuts it, with a notice.
    code, _ = run_session(["hi", "/set max_tokens 4", "hi"])
    out, err = capsys.readouterr()
    assert out == "You said: hi\nYou \n"
    assert "[reply cut at max_tokens=4; /set max_tokens N for longer replies]" in err


def test_unknown_command_is_a_one_line_hint(capsys):
    code, session = run_session(["/frobnicate now", "hi"])
    out, err = capsys.readouterr()
    assert code == 0 and out == "You said: hi\n"
    assert "error: unknown command /frobnicate; /help lists the commands (start a message " \
           "with // to send a literal /)\n" in err


def test_help_lists_every_command(capsys):
    run_session(["/help"])
    err = capsys.readouterr().err
    for name in COMMAND_NAMES:
        assert name in err


def test_show_reports_settings_tokens_and_context(capsys):
    run_session(["/set top_k 7", "hello", "/show"], system="S")
    err = capsys.readouterr().err
    # One id per byte, one per <|im_start|> / <|im_end|> (written here as \x00).
    tokens = len("\x00system\nS\x00\n\x00user\nhello\x00\n"
                 "\x00assistant\nYou said: hello\x00\n")
    assert f"conversation: 1 turns, {tokens} tokens" in err
    cached = tokens - 2   # the reply's <|im_end|> and "\n" were never evaluated
    assert f"context:      {cached} of 4096 tokens in the KV cache (1% used)" in err
    assert "top_k 7" in err and "system:       'S'" in err
    assert re.search(r"last reply:   \[prompt \d+ tokens: \d+ prefilled", err)


def test_system_and_clear(capsys):
    code, session = run_session(["/system", "/system Be kind.", "/system", "hi", "/clear",
                                 "/show"])
    err = capsys.readouterr().err
    assert "(none: the model's template default applies)" in err
    assert "[system prompt set; it applies from the next message]" in err
    assert "\nBe kind.\n" in err
    assert "[new conversation (the system prompt stays)]" in err
    assert session.conversation.messages == [] and session.conversation.system == "Be kind."
    assert "conversation: 0 turns" in err


def test_ctrl_c_at_the_prompt_asks_before_leaving(capsys):
    code, _ = run_session([KeyboardInterrupt, "hi", KeyboardInterrupt, KeyboardInterrupt,
                           "never read"])
    out, err = capsys.readouterr()
    assert code == 130
    assert out == "You said: hi\n"
    assert err.count("(press Ctrl-C again or type /exit to leave)") == 2


def test_exit_command(capsys):
    code, _ = run_session(["/exit", "never read"])
    assert code == 0 and capsys.readouterr().out == ""


def test_overflow_asks_and_stop_keeps_the_conversation(capsys):
    # Prompts: 39 tokens for the first message, +49 for each further one; with 40
    # tokens kept for the reply, the third message does not fit in 160.
    model = echo_model(n_ctx=160)
    lines = ["message 0", "message 1", "message 2", "n", "message 2", "y"]
    code, session = run_session(lines, model=model, system="S", max_tokens=40)
    out, err = capsys.readouterr()
    assert code == 0
    assert "does not fit the context window (160 tokens)" in err
    assert "[message not sent:" in err
    assert out.splitlines() == ["You said: message 0", "You said: message 1",
                                "You said: message 2"]
    assert session.conversation.system == "S"
    assert [m["content"] for m in session.conversation.messages] == [
        "message 1", "You said: message 1", "message 2", "You said: message 2"]


def test_overflow_drop_and_stop_policies(capsys):
    lines = [f"message {k}" for k in range(5)]
    model = echo_model(n_ctx=160)
    _, session = run_session(lines, model=model, overflow="drop", max_tokens=40)
    assert "dropped the oldest turn" in capsys.readouterr().err
    assert session.conversation.messages[-1]["content"] == "You said: message 4"

    _, session = run_session(lines, model=echo_model(n_ctx=160), overflow="stop",
                             max_tokens=40)
    err = capsys.readouterr().err
    assert "[message not sent:" in err and "Drop" not in err


def test_reply_that_fills_the_context_is_cut_with_a_notice_and_kept(capsys):
    # The prompt is one id per byte plus <|im_start|>/<|im_end|> (\x00 here): 119 ids,
    # so of 160 positions 41 are left, fewer than the 80 wanted (half the context).
    message = "z" * 100
    prompt = len("\x00user\n" + message + "\x00\n\x00assistant\n")
    code, session = run_session([message], model=echo_model(n_ctx=160), max_tokens=100)
    out, err = capsys.readouterr()
    cut = ("You said: " + message)[:160 - prompt]
    assert code == 0 and out == cut + "\n"
    assert "[reply cut: the context window (160 tokens) is full]" in err
    assert session.conversation.messages[-1] == {"role": "assistant", "content": cut}


def test_ctrl_d_inside_a_block_at_the_terminal_discards_it(capsys):
    # The scripted input ends (Ctrl-D) inside the block, then again at the prompt.
    code, session = run_session(["hi", '"""', "never sent"])
    out, err = capsys.readouterr()
    assert code == 0 and out == "You said: hi\n"
    assert '(the """ block was not closed: discarded)' in err
    assert session.conversation.n_turns() == 1


def test_save_and_load_errors_are_notices_on_a_terminal(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": 1}')
    good = tmp_path / "good.json"
    code, session = run_session(["hi", f"/save {good}", "/clear", f"/load {bad}",
                                 f"/load {good}", "/save", f"/save {tmp_path}/no/such/x"])
    err = capsys.readouterr().err
    assert code == 0
    assert f"[saved 1 turns to {good}]" in err
    assert f"error: cannot load {bad}: \"messages\" must be a list" in err
    assert f"[loaded 1 turns from {good}]" in err
    assert "error: usage: /save FILE" in err
    assert "error: cannot save to" in err and "No such file or directory" in err
    assert session.conversation.n_turns() == 1


# --- the command in process --------------------------------------------------------------

@pytest.fixture
def fake_loader(monkeypatch):
    def use(factory):
        monkeypatch.setattr(chat_command, "_load_model", lambda name, n_ctx, threads:
                            factory(n_ctx))
    return use


def test_help_documents_the_pipe_and_overflow_defaults():
    out = " ".join(CliRunner().invoke(chat_command.chat, ["--help"]).output.split())
    for text in ["--overflow [ask|drop|stop]", "drops them from a pipe", "LLMCLI_TEMPERATURE",
                 "default: 0.8", "one newline", "with the same seed"]:
        assert text in out


def test_options_are_validated_like_generate(fake_loader):
    fake_loader(lambda n_ctx: echo_model())
    result = CliRunner().invoke(chat_command.chat, ["--top-p", "0"], input="hi\n")
    assert result.exit_code == 2
    assert "Invalid value for --top-p: 0.0 is not in (0, 1]" in result.output


def test_pipe_in_process(fake_loader):
    fake_loader(lambda n_ctx: echo_model(n_ctx=n_ctx or 4096))
    result = CliRunner().invoke(chat_command.chat, ["-t", "0", "--format", "jsonl"],
                                input="one\ntwo\n")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["content"] for r in records] == ["You said: one", "You said: two"]
    assert records[1]["prefill_tokens"] < records[1]["prompt_tokens"]


# --- as a subprocess through a pipe ----------------------------------------------------------

def fake_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCLI_", "FAKE_LLM"))}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def llm(*args, stdin="", env=None, timeout=60):
    return subprocess.run([sys.executable, FAKE_LLM, *args], input=stdin.encode(),
                          capture_output=True, env=env or fake_env(), timeout=timeout)


def generate_text(prompt, *args, env=None):
    result = llm("generate", prompt, "--format", "json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["text"]


@pytest.mark.parametrize("rule", ["echo", "hashed"])
def test_piped_replies_equal_generate_with_the_same_seed(rule):
    # /clear between messages: each is the first turn of a conversation that
    # `llm generate -s SYSTEM MESSAGE` can state too; the system prompt stays cached.
    env = fake_env(FAKE_LLM_RULE=rule)
    messages = ["hello", "what is up", "tell me a story"]
    stdin = "\n/clear\n".join(messages) + "\n"
    common = ["-t", "0.9", "--seed", "1234", "-n", "24", "-s", "Be brief."]
    result = llm("chat", *common, "--format", "jsonl", stdin=stdin, env=env)
    assert result.returncode == 0, result.stderr
    replies = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["content"] for r in replies] == [generate_text(m, *common, env=env)
                                               for m in messages]
    assert all(r["prefill_tokens"] < r["prompt_tokens"] for r in replies[1:])


def test_piped_text_output_is_only_the_replies():
    result = llm("chat", "-t", "0", stdin='hi\n/set top_k 3\n"""\na\nb\n"""\n/show\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"You said: hi\nYou said: a\nb\n"
    assert b">>>" not in result.stdout + result.stderr   # no prompt from a pipe
    assert b"[top_k = 3]" in result.stderr and b"conversation: 2 turns" in result.stderr


def test_multi_turn_replies_equal_fresh_generation(tmp_path):
    """Without /clear: the saved conversation, replayed turn by turn on fresh models,
    gives the same replies (the KV cache reuse changes nothing)."""
    from llmcli import chat
    from llmcli.generate import generate
    from llmcli.sampling import make_sampler
    from fakes import FakeModel, hashed_rule

    path = tmp_path / "chat.json"
    stdin = "first\nsecond one\nthird\nfourth\n/save " + str(path) + "\n"
    result = llm("chat", "-t", "0.8", "--seed", "5", "-n", "16", stdin=stdin,
                 env=fake_env(FAKE_LLM_RULE="hashed"))
    assert result.returncode == 0, result.stderr
    messages = json.loads(path.read_text())["messages"]
    for k in range(0, len(messages), 2):
        model = FakeModel(hashed_rule(7), n_ctx=4096)
        prompt = chat.chat_prompt(model.tokenizer, messages[:k + 1])
        chunks = generate(model, prompt.ids, make_sampler(0.8, seed=5), 16)
        assert "".join(c.text for c in chunks) == messages[k + 1]["content"]


def test_piped_errors_end_the_chat_with_one_line():
    cases = [("hi\n/nope\nnever\n", "Error: unknown command /nope"),
             ("/set top_k x\n", "Error: top_k: 'x' is not an integer >= 0"),
             ('"""\nopen block\n', 'Error: input ended inside a """ block'),
             ("/load /no/such/file.json\n", "Error: cannot load /no/such/file.json: No such")]
    for stdin, message in cases:
        result = llm("chat", "-t", "0", stdin=stdin)
        err = result.stderr.decode()
        assert result.returncode == 1, (stdin, err)
        assert err.startswith(message) and err.count("\n") == 1, err
        assert b"never" not in result.stdout


def test_piped_invalid_utf8_names_the_line():
    result = subprocess.run([sys.executable, FAKE_LLM, "chat", "-t", "0"],
                            input=b"ok\n\xff\xfe\n", capture_output=True, env=fake_env(),
                            timeout=60)
    assert result.returncode == 1
    assert result.stdout == b"You said: ok\n"
    assert result.stderr.startswith(b"Error: stdin line 2 is not valid UTF-8")


def test_model_without_a_chat_template_suggests_raw_generation():
    result = llm("chat", stdin="hi\n", env=fake_env(FAKE_LLM_CHAT="0"))
    assert result.returncode == 1 and result.stdout == b""
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "has no chat template" in err
    assert "llm generate --raw" in err


def test_piped_overflow_drops_by_default_and_stop_exits():
    stdin = "".join(f"message number {k}\n" for k in range(6))
    result = llm("chat", "-t", "0", "-n", "40", "--ctx-size", "200", stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [f"You said: message number {k}"
                                                   for k in range(6)]
    assert b"context window full (200 tokens): dropped the oldest" in result.stderr

    result = llm("chat", "-t", "0", "-n", "40", "--ctx-size", "200", "--overflow", "stop",
                 stdin=stdin)
    assert result.returncode == 1
    assert result.stderr.decode().startswith("Error: the conversation no longer fits the "
                                             "context window (200 tokens)")
    assert 0 < len(result.stdout.splitlines()) < 6


def test_piped_sigint_stops_the_reply_and_exits_130():
    proc = subprocess.Popen([sys.executable, FAKE_LLM, "chat", "-t", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=fake_env(FAKE_LLM_DELAY="0.05"))
    proc.stdin.write(b"x" * 100 + b"\n")
    proc.stdin.flush()
    first = proc.stdout.read(5)          # the reply has begun
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    reply = (first + out).decode()
    assert reply.endswith("\n") and 5 <= len(reply) - 1 < len("You said: " + "x" * 100)
    assert "You said: xxxx".startswith(reply[:-1][:14])
    assert b"[interrupted: the partial reply stays in the conversation]" in err


# --- as a subprocess on a pseudo-terminal ----------------------------------------------------

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


class PtyChat:
    """`llm chat` (fake model) with a pseudo-terminal as its controlling terminal, so
    typed \\x03 is a real Ctrl-C (SIGINT from the line discipline) and \\x04 a Ctrl-D."""

    def __init__(self, *args, executable=None, env=None, **fake_settings):
        argv = (executable or [sys.executable, FAKE_LLM, "chat"]) + list(args)
        env = env or fake_env(**fake_settings)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:   # the child: becomes the chat, or ends at once
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.output = b""

    def expect(self, text, timeout=60):
        """Wait until `text` (bytes, or a compiled regex) appears after what was matched
        before; returns everything up to and including it, without ANSI styling."""
        pattern = text if isinstance(text, re.Pattern) else re.compile(re.escape(text))
        deadline = time.monotonic() + timeout
        while True:
            clean = ANSI.sub(b"", self.output)
            match = pattern.search(clean)
            if match:
                self.output = clean[match.end():]
                return clean[:match.end()]
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen; output so far: {clean!r}")
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:   # the child is gone
                    pass

    def type(self, text):
        data = text.encode() if isinstance(text, str) else text
        if data == b"\x04":
            # Ctrl-D only means end-of-input to a reader: typed while the chat is still
            # busy (the terminal in canonical mode), the EOF is lost when readline
            # takes the terminal, so it waits for the chat to be reading.
            self.wait_until_waiting_for_input()
        os.write(self.fd, data)

    def wait_until_waiting_for_input(self, timeout=30):
        """Until the chat sleeps (blocked reading the terminal): on a loaded machine the
        prompt can show before the line editor is ready, and a key typed in between may
        be lost. Used where a test types at a prompt and timing matters (Ctrl-C)."""
        deadline, asleep = time.monotonic() + timeout, 0
        while asleep < 3 and time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.pid}/stat") as stat:
                    state = stat.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                return
            asleep = asleep + 1 if state == "S" else 0
            time.sleep(0.05)

    def exit_code(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            self.expect_nothing(0.1)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("the chat did not exit")

    def expect_nothing(self, seconds):
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if ready:
            try:
                self.output += os.read(self.fd, 65536)
            except OSError:
                pass


PROMPT = b">>> "


def test_terminal_reply_equals_generate_and_ctrl_d_leaves():
    options = ["-t", "0.9", "--seed", "77", "-n", "30"]
    expected = generate_text("good morning", *options)
    chat = PtyChat(*options)
    chat.expect(PROMPT)
    chat.type("good morning\r")
    chat.expect(b"good morning\r\n")                 # the terminal's echo
    reply = chat.expect(PROMPT)[:-len(PROMPT)]
    assert reply.decode().replace("\r\n", "\n") == expected + "\n"
    chat.type("\x04")
    assert chat.exit_code() == 0


def test_terminal_ctrl_c_stops_the_reply_and_keeps_it(tmp_path):
    chat = PtyChat("-t", "0", FAKE_LLM_DELAY="0.05")
    chat.expect(PROMPT)
    chat.type("y" * 80 + "\r")
    chat.expect(b"You said: yy")
    chat.type("\x03")
    chat.expect(b"[interrupted: the partial reply stays in the conversation]")
    chat.expect(PROMPT)
    path = tmp_path / "partial.json"
    chat.type(f"/save {path}\r")
    chat.expect(b"[saved 1 turns")
    chat.expect(PROMPT)
    chat.type("/exit\r")
    assert chat.exit_code() == 0
    kept = json.loads(path.read_text())["messages"][1]["content"]
    assert kept.startswith("You said: yy") and len(kept) < len("You said: " + "y" * 80)


def test_terminal_ctrl_c_twice_at_the_prompt_leaves_with_130():
    chat = PtyChat("-t", "0")
    chat.expect(PROMPT)
    chat.wait_until_waiting_for_input()
    chat.type("\x03")
    chat.expect(b"(press Ctrl-C again or type /exit to leave)")
    chat.expect(PROMPT)
    chat.type("still here\r")
    chat.expect(b"You said: still here")
    chat.expect(PROMPT)
    chat.wait_until_waiting_for_input()
    chat.type("\x03")
    chat.expect(PROMPT)
    chat.wait_until_waiting_for_input()
    chat.type("\x03")
    assert chat.exit_code() == 130


def test_terminal_history_and_blocks():
    chat = PtyChat("-t", "0")
    chat.expect(PROMPT)
    chat.type("first message\r")
    chat.expect(b"You said: first message\r\n")
    chat.expect(PROMPT)
    chat.type("\x1b[A\r")                            # arrow up: the same message again
    chat.expect(b"You said: first message\r\n")
    chat.expect(PROMPT)
    chat.type('"""\r')
    chat.expect(b"... ")
    chat.type("line one\r")
    chat.type('line two"""\r')
    chat.expect(b"You said: line one\r\nline two\r\n")
    chat.expect(PROMPT)
    chat.type("/sh\t\r")                              # tab completes /show
    chat.expect(b"conversation: 3 turns")
    chat.type("\x04")
    assert chat.exit_code() == 0


def test_terminal_overflow_question():
    chat = PtyChat("-t", "0", "-n", "40", "--ctx-size", "160", "-s", "S")
    for k in range(2):
        chat.expect(PROMPT)
        chat.type(f"message {k}\r")
        chat.expect(f"You said: message {k}".encode())
    chat.expect(PROMPT)
    chat.type("message 2\r")
    chat.expect(b"Drop the oldest turn (the system prompt stays)? [y = drop, n = stop] ")
    chat.type("y\r")
    chat.expect(b"You said: message 2")
    chat.expect(PROMPT)
    chat.type("/show\r")
    chat.expect(b"conversation: 2 turns")
    chat.type("/exit\r")
    assert chat.exit_code() == 0
