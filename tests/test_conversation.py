"""llmcli.conversation with the fake model and byte tokenizer: KV-cache reuse across
turns (exactly the new tokens are prefilled; replies equal fresh, uncached runs),
interruptions, /clear, dropping the oldest turns to fit the context, and the
conversation file format. Prompts are checked against ChatML written out by hand here,
not against llmcli.chat."""
import json
import os

import pytest

from llmcli import conversation as conversation_file
from llmcli.conversation import Conversation
from llmcli.errors import ContextOverflowError, InputError
from llmcli.generate import generate
from llmcli.sampling import make_sampler

from chat_fakes import ASSISTANT, echo_model
from fakes import IM_END, IM_START, FakeModel, FakeTokenizer, hashed_rule


class RecordingModel(FakeModel):
    """A fake model that also records the ids of every eval() call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.evaluated = []

    def eval(self, ids, all_logits=False):
        self.evaluated.append([int(i) for i in ids])
        return super().eval(ids, all_logits)


def chatml_ids(messages, generation_prompt=True):
    """The fake ChatML template's tokens, written out by hand."""
    ids = []
    for m in messages:
        ids += [IM_START] + list(f"{m['role']}\n{m['content']}".encode()) + [IM_END]
        ids += list(b"\n")
    return ids + (ASSISTANT if generation_prompt else [])


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def reply(conv, text, max_tokens=64, temperature=0.0, seed=1):
    """Send `text`, drain the turn, return it."""
    turn = conv.start_turn(conv.plan(text, max_tokens), make_sampler(temperature, seed=seed),
                           max_tokens)
    for _ in turn:
        pass
    return turn


def fresh_reply_tokens(rule, prompt_ids, max_tokens, temperature, seed, n_ctx):
    """The reply of a model that has never seen anything: no cache to reuse."""
    model = FakeModel(rule, n_ctx=n_ctx)
    chunks = generate(model, prompt_ids, make_sampler(temperature, seed=seed), max_tokens)
    return [c.token for c in chunks if c.token is not None]


# --- KV-cache reuse --------------------------------------------------------------------

def test_second_turn_prefills_exactly_the_new_tokens():
    model = RecordingModel(echo_model().rule, n_ctx=4096)
    conv = Conversation(model)
    first = reply(conv, "hello")
    assert first.text == "You said: hello" and first.finish_reason == "eos"
    assert model.evaluated[0] == chatml_ids([user("hello")])

    model.evaluated.clear()
    second = reply(conv, "how are you")
    assert second.text == "You said: how are you"
    # The cache held the first prompt and the reply; the template closes the reply with
    # <|im_end|>\n, then the new user message and the generation prompt follow.
    new = [IM_END] + list(b"\n") + [IM_START] + list(b"user\nhow are you") + [IM_END] \
        + list(b"\n") + ASSISTANT
    assert model.evaluated[0] == new
    assert second.stats.prefill_tokens == len(new)
    assert second.stats.prompt_tokens == len(chatml_ids(
        [user("hello"), assistant("You said: hello"), user("how are you")]))


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_reused_cache_gives_the_replies_of_fresh_prefills(temperature):
    # hashed_rule's logits depend on every id in the cache, so a wrongly reused or
    # wrongly truncated cache changes the replies.
    rule = hashed_rule(5)
    model = RecordingModel(rule, n_ctx=2048)
    conv = Conversation(model, system="Be brief.")
    messages = [{"role": "system", "content": "Be brief."}]
    total_prefill = total_prompt = 0
    for k, text in enumerate(["hi", "tell me more", "why?", "ok", "and then", "bye"]):
        turn = reply(conv, text, max_tokens=12, temperature=temperature, seed=40 + k)
        messages.append(user(text))
        prompt_ids = chatml_ids(messages)
        assert turn.prompt.ids == prompt_ids
        assert turn.tokens == fresh_reply_tokens(rule, prompt_ids, 12, temperature, 40 + k,
                                                 2048)
        messages.append(assistant(turn.text))
        assert conv.cached_ids == model.cache   # the bookkeeping matches the model
        total_prefill += turn.stats.prefill_tokens
        total_prompt += turn.stats.prompt_tokens
    assert conv.messages == messages[1:]
    assert total_prefill < total_prompt / 2


def test_reply_interrupted_inside_the_model_is_kept():
    model = echo_model()
    conv = Conversation(model)
    reply(conv, "first")
    # Ctrl-C in the 6th evaluation: the prefill and 4 decodes gave 5 tokens.
    model.interrupt_on_eval = len(model.eval_calls) + 6
    turn = reply(conv, "second message")
    assert turn.finish_reason == "interrupted"
    assert turn.text == "You s"
    assert conv.messages[-1] == assistant("You s")
    assert conv.cached_ids == model.cache
    model.interrupt_on_eval = None
    third = reply(conv, "third")
    assert third.text == "You said: third"
    assert third.tokens == fresh_reply_tokens(
        model.rule, chatml_ids(conv.messages[:-1]), 64, 0.0, 1, 4096)


def test_interrupt_during_the_prefill_cancels_the_turn():
    model = echo_model()
    conv = Conversation(model)
    reply(conv, "first")
    before = list(conv.messages)
    model.interrupt_on_eval = len(model.eval_calls) + 1
    turn = reply(conv, "second")
    assert turn.finish_reason == "interrupted" and turn.cancelled
    assert conv.messages == before
    assert conv.cached_ids == model.cache
    model.interrupt_on_eval = None
    assert reply(conv, "again").text == "You said: again"


def test_interrupt_from_the_caller_keeps_the_text_so_far():
    model = echo_model()
    conv = Conversation(model)
    text = "tell me"
    turn = conv.start_turn(conv.plan(text, 64), make_sampler(0.0), 64)
    seen = []
    for chunk in turn:
        seen.append(chunk.text)
        if len(seen) == 4:
            break
    final = turn.interrupt()
    assert final.finish_reason == "interrupted"
    assert turn.text == "".join(seen) + final.text == "You "
    assert conv.messages == [user("tell me"), assistant("You ")]
    assert conv.cached_ids == model.cache


def test_a_turn_that_never_started_leaves_no_stale_cache():
    model = echo_model()
    conv = Conversation(model)
    reply(conv, "first")
    turn = conv.start_turn(conv.plan("x", 8), make_sampler(0.0), 8)
    assert turn.interrupt().finish_reason == "interrupted"
    assert conv.cached_ids == model.cache == []
    assert reply(conv, "next").text == "You said: next"


# --- /clear and the system prompt ------------------------------------------------------

def test_clear_starts_over_and_reuses_only_the_system_prompt():
    model = RecordingModel(hashed_rule(3), n_ctx=2048)
    conv = Conversation(model, system="You are terse.")
    for text in ["one", "two"]:
        reply(conv, text, max_tokens=8)
    conv.clear()
    assert conv.messages == [] and conv.system == "You are terse."
    turn = reply(conv, "three", max_tokens=8, temperature=0.7, seed=9)
    expected = chatml_ids([{"role": "system", "content": "You are terse."}, user("three")])
    assert turn.prompt.ids == expected
    assert turn.tokens == fresh_reply_tokens(model.rule, expected, 8, 0.7, 9, 2048)
    # Reused: the system message and "<|im_start|>user\n" (the first turn began "one").
    system_part = chatml_ids([{"role": "system", "content": "You are terse."}], False)
    assert turn.stats.prefill_tokens == len(expected) - len(system_part) - len(b"\x00user\n")


def test_changing_the_system_prompt_applies_to_the_next_turn():
    model = echo_model()
    conv = Conversation(model)
    reply(conv, "hi")
    conv.set_system("New rules.")
    turn = reply(conv, "again")
    assert turn.prompt.ids == chatml_ids([{"role": "system", "content": "New rules."},
                                          user("hi"), assistant("You said: hi"),
                                          user("again")])
    # Only the first token, <|im_start|>, is still in common.
    assert turn.stats.prefill_tokens == len(turn.prompt.ids) - 1


def test_token_count_is_the_rendered_conversation():
    conv = Conversation(echo_model(), system="S")
    assert conv.token_count() == len(chatml_ids([{"role": "system", "content": "S"}],
                                                False))
    reply(conv, "hey")
    assert conv.token_count() == len(chatml_ids(
        [{"role": "system", "content": "S"}, user("hey"), assistant("You said: hey")],
        False))
    assert Conversation(echo_model()).token_count() == 0


# --- fitting the context ---------------------------------------------------------------

SYSTEM = {"role": "system", "content": "Keep it short."}


def test_overflow_drops_the_fewest_oldest_turns_and_keeps_the_system_prompt():
    n_ctx, max_tokens = 300, 40
    conv = Conversation(echo_model(n_ctx=n_ctx), system=SYSTEM["content"])
    dropped = None
    for k in range(20):
        text = f"message number {k:02d}"
        plan = conv.plan(text, max_tokens)
        if plan.n_drop:
            before = list(conv.messages)
            dropped = plan.n_drop
            break
        reply(conv, text, max_tokens)
    assert dropped is not None, "the conversation never filled the context"
    kept = before[2 * dropped:]
    # Against the hand-written prompt: the fewest drops that leave max_tokens free.
    assert plan.prompt.ids == chatml_ids([SYSTEM] + kept + [user(text)])
    assert len(plan.prompt.ids) + max_tokens <= n_ctx
    one_fewer = chatml_ids([SYSTEM] + before[2 * (dropped - 1):] + [user(text)])
    assert len(one_fewer) + max_tokens > n_ctx

    turn = conv.start_turn(plan, make_sampler(0.0), max_tokens)
    for _ in turn:
        pass
    assert turn.text == f"You said: {text}"
    assert conv.system == SYSTEM["content"]
    assert conv.messages == kept + [user(text), assistant(turn.text)]
    assert turn.prompt.ids[:len(chatml_ids([SYSTEM], False))] == chatml_ids([SYSTEM], False)


def test_reply_room_is_at_most_half_the_context():
    conv = Conversation(echo_model(n_ctx=100))
    plan = conv.plan("hi", max_tokens=10_000)
    assert plan.n_drop == 0 and plan.reply_room == 100 - len(chatml_ids([user("hi")]))


def test_a_message_that_cannot_fit_is_refused_not_truncated():
    conv = Conversation(echo_model(n_ctx=64), system="S")
    with pytest.raises(ContextOverflowError, match=r"system prompt and this message take "
                                                   r"\d+ tokens.*holds 64"):
        conv.plan("x" * 80, max_tokens=8)
    assert conv.messages == []
    # Without a system prompt: 80 bytes + 19 template ids (one per byte, 2 specials).
    with pytest.raises(ContextOverflowError, match=r"^this message takes 99 tokens, but "
                                                   r"the context window holds 64;"):
        Conversation(echo_model(n_ctx=64)).plan("x" * 80, max_tokens=8)


def test_when_dropping_every_turn_is_not_enough_the_reply_gets_what_is_left():
    conv = Conversation(echo_model(n_ctx=120))
    reply(conv, "short", max_tokens=30)
    text = "y" * 60
    plan = conv.plan(text, max_tokens=50)
    assert plan.n_drop == 1
    assert plan.reply_room == 120 - len(chatml_ids([user(text)])) < 50


# --- conversation files ----------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path):
    conv = Conversation(echo_model(), system="Sé brève ✓")
    for text in ["héllo", 'quotes " and \\ and\nnewlines']:
        reply(conv, text)
    path = tmp_path / "chat.json"
    conversation_file.save(conv, str(path))
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved == {"format": "llmcli-chat", "version": 1, "model": "fake",
                     "system": "Sé brève ✓",
                     "messages": [user("héllo"), assistant("You said: héllo"),
                                  user('quotes " and \\ and\nnewlines'),
                                  assistant('You said: quotes " and \\ and\nnewlines')]}
    system, messages = conversation_file.load(str(path))
    assert (system, messages) == (saved["system"], saved["messages"])

    other = Conversation(echo_model())
    other.replace(system, messages)
    turn = reply(other, "more")
    assert turn.prompt.ids == chatml_ids([{"role": "system", "content": system}]
                                         + messages + [user("more")])


def test_save_replaces_the_file_atomically(tmp_path, monkeypatch):
    path = tmp_path / "chat.json"
    path.write_text("old contents")
    conv = Conversation(echo_model())
    reply(conv, "hi")

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(InputError, match="cannot save to .*chat.json: No space left"):
        conversation_file.save(conv, str(path))
    assert path.read_text() == "old contents"
    assert os.listdir(tmp_path) == ["chat.json"]   # no temporary file left behind


def test_load_accepts_a_leading_system_message(tmp_path):
    path = tmp_path / "openai.json"
    path.write_text(json.dumps({"messages": [{"role": "system", "content": "S"},
                                             user("a"), assistant("b")]}))
    assert conversation_file.load(str(path)) == ("S", [user("a"), assistant("b")])


BAD_FILES = [
    (b"{not json", "not JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[]", "expected a JSON object"),
    (b'{"format": "other", "messages": []}', "\"format\" is 'other'"),
    (b'{"version": 2, "messages": []}', "this llmcli reads version 1"),
    (b'{"version": true, "messages": []}', "\"version\" is True"),
    (b'{"system": "s"}', "\"messages\" must be a list"),
    (b'{"system": 3, "messages": []}', "\"system\" must be a string or null"),
    (b'{"messages": ["hi"]}', "messages[0] must be an object"),
    (b'{"messages": [{"role": "tool", "content": "x"}]}', "messages[0]: \"role\""),
    (b'{"messages": [{"role": "user", "content": 5}]}', "messages[0]: \"content\" must"),
    (b'{"messages": [{"role": "assistant", "content": "x"}]}',
     "messages[0]: expected a user message"),
    (b'{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}',
     "messages[1]: expected an assistant message"),
    (b'{"messages": [{"role": "user", "content": "a"}]}',
     "messages[0]: the last user message has no reply"),
    (b'{"system": "s", "messages": [{"role": "system", "content": "x"}]}',
     "messages[0]: expected a user message"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize("data, fragment", BAD_FILES, ids=[f[1][:30] for f in BAD_FILES])
def test_load_rejects_bad_files_with_one_line(tmp_path, data, fragment):
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    with pytest.raises(InputError) as info:
        conversation_file.load(str(path))
    message = str(info.value)
    assert message.startswith(f"cannot load {path}: ") and "\n" not in message
    assert fragment in message


def test_load_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(InputError, match="cannot load .*nope.json: No such file"):
        conversation_file.load(str(tmp_path / "nope.json"))


def test_no_template_is_a_template_error():
    conv = Conversation(FakeModel(hashed_rule(), tokenizer=FakeTokenizer(chat_template=None)))
    from llmcli.errors import TemplateError

    with pytest.raises(TemplateError, match="no chat template"):
        conv.plan("hi", 8)
