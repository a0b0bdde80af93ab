"""The real `llm` entry point (llmcli.cli.main) with the model loader replaced by a fake
from tests/fakes.py, so subprocess tests of pipes, signals, stdin and exit codes run
without a real model. Test-only; configured by environment variables:

    FAKE_LLM_DELAY   seconds each model evaluation takes (default 0)
    FAKE_LLM_CTX     context size (default 4096)
    FAKE_LLM_CHAT    "1": the tokenizer has a ChatML template
    FAKE_LLM_CONTROL "1": the reply starts with a terminal escape sequence
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import llmcli.commands.generate as generate_command  # noqa: E402
from llmcli.cli import main  # noqa: E402

from fakes import FakeModel, FakeTokenizer, cycling_rule  # noqa: E402

REPLY = "The quick brown fox jumps over the lazy dog. "
CONTROL_REPLY = "..\x1b[2J cleared the screen. "   # its first 2 bytes are covered by "hi"


def load_fake(name_or_path, n_ctx, threads):
    template = FakeTokenizer().chat_template if os.environ.get("FAKE_LLM_CHAT") == "1" else None
    reply = CONTROL_REPLY if os.environ.get("FAKE_LLM_CONTROL") == "1" else REPLY
    return FakeModel(cycling_rule(reply), tokenizer=FakeTokenizer(chat_template=template),
                     n_ctx=n_ctx or int(os.environ.get("FAKE_LLM_CTX", "4096")),
                     delay=float(os.environ.get("FAKE_LLM_DELAY", "0")))


if __name__ == "__main__":
    generate_command._load_model = load_fake
    main()
