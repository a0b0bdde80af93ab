"""`llm chat` on the real models: replies equal `llm generate` with the same seed (the
same conversation stated through -s and the prompt), KV-cache reuse over several turns
gives the replies of full prefills and prefills exactly what the cache lacks, the REPL
on a pseudo-terminal (Ctrl-C during a reply, Ctrl-D), and a base model's clear error."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import llmcli
from llmcli.conversation import Conversation
from llmcli.generate import generate
from llmcli.sampling import make_sampler

from test_chat_cli import PROMPT, PtyChat

MESSAGES = ["What is the capital of France?", "Name three colours.",
            "Write one sentence about the sea."]


def llm_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCLI_")}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(llmcli.__file__))
    return env


def llm(*args, stdin=b"", timeout=600):
    return subprocess.run([sys.executable, "-m", "llmcli", *args], input=stdin,
                          capture_output=True, env=llm_env(), timeout=timeout)


@pytest.mark.parametrize("system", [None, "You are a pirate. Answer briefly."])
def test_piped_replies_equal_generate_with_the_same_seed(smollm2_path, system):
    # /clear between messages: each is the first turn of a conversation `llm generate`
    # can state; the chat still reuses the cached system prompt.
    options = ["-m", str(smollm2_path), "-t", "0.7", "--seed", "11", "-n", "24"]
    options += ["-s", system] if system else []
    stdin = "\n/clear\n".join(MESSAGES).encode() + b"\n"
    result = llm("chat", *options, "--format", "jsonl", stdin=stdin)
    assert result.returncode == 0, result.stderr
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(replies) == len(MESSAGES)
    for message, reply in zip(MESSAGES, replies):
        generated = llm("generate", *options, "--format", "json", message)
        assert generated.returncode == 0, generated.stderr
        assert reply["content"] == json.loads(generated.stdout)["text"]
    assert all(r["prefill_tokens"] < r["prompt_tokens"] for r in replies[1:])


# The reply tokens in the cache were evaluated one at a time; a fresh run evaluates them
# in one batch. Our kernels' logits for a single token and for a batch differ slightly
# (up to ~0.9 here: 8-bit activation quantization turns float-order differences into
# rounding steps), so a reused cache may pick the other token where the top two are
# within that: replies must agree up to the first step with a margin below NEAR_TIE.
NEAR_TIE = 0.5


def test_reused_cache_gives_the_replies_of_full_prefills(smollm2_path):
    from llmcli.model import load

    chat_model, fresh_model = load(str(smollm2_path)), load(str(smollm2_path))
    conversation = Conversation(chat_model)
    previous, exact = None, 0
    for text in MESSAGES + ["Thank you!"]:
        turn = conversation.start_turn(conversation.plan(text, 24),
                                       make_sampler(temperature=0), 24)
        for _ in turn:
            pass
        if previous is not None:
            # Exactly what the cache lacked was prefilled: the prompt after its common
            # prefix with the last prompt and reply (whose last token was never
            # evaluated).
            held = (previous.prompt.ids + previous.tokens)[:-1]
            shared = 0
            while shared < len(held) and held[shared] == turn.prompt.ids[shared]:
                shared += 1
            assert turn.stats.prefill_tokens == len(turn.prompt.ids) - shared
            assert turn.stats.prefill_tokens < len(turn.prompt.ids) // 3
        fresh = [c.token for c in generate(fresh_model, turn.prompt.ids,
                                           make_sampler(temperature=0), 24)
                 if c.token is not None]
        logits = fresh_model.logits(turn.prompt.ids + fresh)[len(turn.prompt.ids) - 1:]
        top_two = np.sort(logits, axis=1)[:, -2:]
        margins = top_two[:, 1] - top_two[:, 0]
        ties = [i for i, margin in enumerate(margins[:len(fresh)]) if margin < NEAR_TIE]
        required = ties[0] if ties else len(fresh)
        assert turn.tokens[:required] == fresh[:required], text
        exact += turn.tokens == fresh
        previous = turn
    assert exact >= 2     # most replies agree to the end


def test_terminal_chat_with_the_real_model(smollm2_path, tmp_path):
    options = ["-m", str(smollm2_path), "-t", "0.5", "--seed", "3", "-n", "300"]
    expected = json.loads(llm("generate", *options[:-2], "-n", "20", "--format", "json",
                              MESSAGES[0]).stdout)["text"]
    chat = PtyChat(*options, executable=[sys.executable, "-m", "llmcli", "chat"],
                   env=llm_env())
    chat.expect(PROMPT, timeout=120)
    chat.type("/set max_tokens 20\r")
    chat.expect(PROMPT)
    chat.type(MESSAGES[0] + "\r")
    chat.expect(MESSAGES[0].encode() + b"\r\n")
    shown = chat.expect(PROMPT, timeout=120)[:-len(PROMPT)].decode().replace("\r\n", "\n")
    reply, _, notice = shown.partition("\n[reply cut")   # the notice is on stderr, same tty
    assert reply.rstrip("\n") == expected.rstrip("\n")
    chat.type("/set max_tokens 300\r")
    chat.expect(PROMPT)
    chat.type("Tell me a long story about a dragon and a knight.\r")
    chat.expect(b"story about a dragon and a knight.\r\n")
    chat.expect(re.compile(rb"\w+ \w+ \w+"), timeout=120)   # the reply has begun
    chat.type("\x03")
    chat.expect(b"[interrupted: the partial reply stays in the conversation]", timeout=60)
    chat.expect(PROMPT)
    path = tmp_path / "chat.json"
    chat.type(f"/save {path}\r")
    chat.expect(b"[saved 2 turns")
    chat.expect(PROMPT)   # a Ctrl-D typed before the prompt reads can be lost
    chat.type("\x04")
    assert chat.exit_code(timeout=60) == 0
    saved = json.loads(path.read_text())
    assert saved["messages"][1]["content"] == expected
    assert saved["messages"][3]["content"]            # the partial story was kept


def test_base_model_without_template_suggests_generate_raw(gemma3_path):
    result = llm("chat", "-m", str(gemma3_path), stdin=b"hi\n")
    assert result.returncode == 1 and result.stdout == b""
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "has no chat template" in err
    assert "llm generate --raw" in err
