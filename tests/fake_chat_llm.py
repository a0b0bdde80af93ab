"""The real `llm` entry point with both `llm chat` and `llm generate` loading the same
fake model (tests/fakes.py), for subprocess tests of the chat REPL through pipes and a
pseudo-terminal. Test-only; configured by environment variables:

    FAKE_LLM_RULE    "echo" (default): replies "You said: <the last user message>";
                     "hashed": pseudo-random logits over the whole cache
    FAKE_LLM_DELAY   seconds each model evaluation takes (default 0)
    FAKE_LLM_CTX     context size (default 4096)
    FAKE_LLM_CHAT    "0": the tokenizer has no chat template
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import llmcli.commands.chat as chat_command  # noqa: E402
import llmcli.commands.generate as generate_command  # noqa: E402
from llmcli.cli import main  # noqa: E402

from chat_fakes import echo_rule  # noqa: E402
from fakes import FakeModel, FakeTokenizer, hashed_rule  # noqa: E402


def load_fake(name_or_path, n_ctx, threads):
    rule = hashed_rule(7) if os.environ.get("FAKE_LLM_RULE") == "hashed" else echo_rule()
    chat = os.environ.get("FAKE_LLM_CHAT") != "0"
    template = FakeTokenizer().chat_template if chat else None
    return FakeModel(rule, tokenizer=FakeTokenizer(chat_template=template),
                     n_ctx=n_ctx or int(os.environ.get("FAKE_LLM_CTX", "4096")),
                     delay=float(os.environ.get("FAKE_LLM_DELAY", "0")))


if __name__ == "__main__":
    chat_command._load_model = load_fake
    generate_command._load_model = load_fake
    main()
