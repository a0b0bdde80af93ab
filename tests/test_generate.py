"""The generation loop on the fake model (tests/fakes.py): stop strings, finish reasons,
the streaming invariant, KV cache reuse, logprobs and interruption."""
import numpy as np
import pytest

from llmcli import sampling
from llmcli.errors import ContextOverflowError, InputError
from llmcli.generate import StopFilter, generate

from fakes import EOS, FakeModel, FakeTokenizer, hashed_rule, scripted_model

GREEDY = dict(temperature=0)


def run(model, prompt_ids, **kwargs):
    sampler = kwargs.pop("sampler", None) or sampling.make_sampler(**GREEDY)
    return list(generate(model, prompt_ids, sampler, **kwargs))


def text_of(chunks):
    return "".join(c.text for c in chunks)


def prompt_ids(model, text):
    return model.tokenizer.encode(text, add_special=False)


# --- finish reasons ---------------------------------------------------------------------

def test_plays_the_script_then_stops_at_eos():
    model = scripted_model("Q:", "Hello!")
    chunks = run(model, prompt_ids(model, "Q:"))
    assert text_of(chunks) == "Hello!"
    assert [c.token for c in chunks] == list(b"Hello!") + [EOS]
    assert chunks[-1].finish_reason == "eos"
    assert all(c.finish_reason is None for c in chunks[:-1])


def test_max_tokens_gives_length():
    model = scripted_model("Q:", "Hello world")
    chunks = run(model, prompt_ids(model, "Q:"), max_tokens=5)
    assert text_of(chunks) == "Hello" and chunks[-1].finish_reason == "length"
    assert len(chunks) == 5


def test_ignore_eos_keeps_going_until_length():
    model = scripted_model("Q:", "Hi", then=EOS)
    chunks = run(model, prompt_ids(model, "Q:"), max_tokens=6, ignore_eos=True)
    assert [c.token for c in chunks] == [ord("H"), ord("i")] + [EOS] * 4
    assert chunks[-1].finish_reason == "length"
    assert text_of(chunks) == "Hi"   # the EOS token renders as nothing


def test_context_limit_counts_prompt_and_generated_tokens():
    model = scripted_model("Q:", "abcdefghijklmnopqrstuvwxyz", n_ctx=10)
    chunks = run(model, prompt_ids(model, "Q:"), max_tokens=100)
    assert text_of(chunks) == "abcdefgh"          # 2 prompt + 8 generated = 10
    assert chunks[-1].finish_reason == "context"
    assert model.n_past == 9                       # the last token is never evaluated


def test_prompt_that_fills_the_context_is_an_error_naming_both_numbers():
    model = scripted_model("Q:", "x", n_ctx=8)
    with pytest.raises(ContextOverflowError, match=r"8 tokens .* holds 8"):
        run(model, list(b"12345678"))
    with pytest.raises(InputError, match="empty"):
        run(model, [])
    assert model.eval_calls == []


# --- stop strings -------------------------------------------------------------------------

def test_stop_string_is_never_printed():
    model = scripted_model("Q:", "one two END three")
    chunks = run(model, prompt_ids(model, "Q:"), stop=["END"])
    assert text_of(chunks) == "one two "
    assert chunks[-1].finish_reason == "stop"


def test_stop_string_split_across_tokens_is_held_back_then_released():
    model = scripted_model("Q:", "a<b<c<stop>")
    chunks = run(model, prompt_ids(model, "Q:"), stop=["<stop>"])
    assert text_of(chunks) == "a<b<c"
    # "<" is held until the next byte shows it is not the start of "<stop>"
    released = [c.text for c in chunks]
    assert released[:4] == ["a", "", "<b", ""]


def test_partial_stop_at_the_end_is_released():
    model = scripted_model("Q:", "abc<st")
    chunks = run(model, prompt_ids(model, "Q:"), stop=["<stop>"])
    assert text_of(chunks) == "abc<st" and chunks[-1].finish_reason == "eos"


def test_earliest_of_several_stop_strings_wins():
    model = scripted_model("Q:", "xx bb aa")
    chunks = run(model, prompt_ids(model, "Q:"), stop=["aa", "bb"])
    assert text_of(chunks) == "xx "


@pytest.mark.parametrize("pieces, stops, expected", [
    (["Hel", "lo", " wor", "ld"], ["lo w"], "Hel"),
    (["ab", "c"], ["bcd"], "abc"),
    (["x", "y", "z"], ["yz"], "x"),
    (["aaab"], ["aab"], "a"),
])
def test_stop_filter_on_pieces(pieces, stops, expected):
    f = StopFilter(stops)
    out, stopped = "", False
    for piece in pieces:
        text, stopped = f.push(piece)
        out += text
        if stopped:
            break
    if not stopped:
        out += f.flush()
    assert out == expected


# --- streaming ------------------------------------------------------------------------------

def test_streaming_holds_back_incomplete_utf8_and_equals_decode():
    reply = "naïve ☃ 😀 done"
    model = scripted_model("Q:", reply)
    chunks = run(model, prompt_ids(model, "Q:"))
    assert text_of(chunks) == reply
    assert "".join(c.text for c in chunks) == model.tokenizer.decode(
        [c.token for c in chunks if c.token != EOS])
    # the 4 bytes of 😀 release the character only with the last byte
    emoji = reply.encode().index("😀".encode())
    texts = [c.text for c in chunks[emoji:emoji + 4]]
    assert texts == ["", "", "", "😀"]


def test_streaming_invariant_on_random_text_with_sampling():
    model = FakeModel(hashed_rule(seed=9), n_ctx=200)
    sampler = sampling.make_sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=3)
    chunks = run(model, [65, 66], sampler=sampler, max_tokens=150)
    ids = [c.token for c in chunks if c.token not in model.tokenizer.eog_ids]
    assert text_of(chunks) == model.tokenizer.decode(ids)


def test_invalid_utf8_at_the_end_is_flushed_as_replacement():
    model = scripted_model("Q:", [ord("a"), 0xE2, 0x98])   # a truncated ☃
    chunks = run(model, prompt_ids(model, "Q:"))
    assert text_of(chunks) == "a\ufffd"


# --- the model calls and the KV cache --------------------------------------------------------

def test_one_prefill_call_then_one_token_per_step():
    model = scripted_model("Question:", "abc")
    run(model, prompt_ids(model, "Question:"))
    assert model.eval_calls == [9, 1, 1, 1]    # a, b, c evaluated; EOS is not


def test_reusing_the_cache_evaluates_only_the_new_suffix_and_changes_nothing():
    rule = hashed_rule(seed=4)
    first, second = [1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8]
    fresh = FakeModel(rule)
    expected = [c.token for c in run(fresh, second, max_tokens=5)]

    model = FakeModel(rule)
    out = run(model, first, max_tokens=3)
    cached = (first + [c.token for c in out])[:model.n_past]
    assert model.n_past == len(first) + 2
    model.eval_calls.clear()
    got = [c.token for c in run(model, second, max_tokens=5, cached_ids=cached)]
    assert got == expected
    assert model.eval_calls[0] == 3          # 6, 7, 8: the common prefix stayed cached
    assert out[-1].stats.prompt_tokens == 5


def test_fully_cached_prompt_still_evaluates_its_last_token():
    rule = hashed_rule(seed=4)
    model = FakeModel(rule)
    run(model, [1, 2, 3, 4], max_tokens=1)
    model.eval([9, 9])
    model.eval_calls.clear()
    run(model, [1, 2, 3], max_tokens=1, cached_ids=[1, 2, 3, 4, 9, 9])
    assert model.eval_calls == [1]


# --- probabilities ------------------------------------------------------------------------------

def test_logprobs_are_the_raw_log_softmax():
    model = FakeModel(hashed_rule(seed=2))
    chunks = run(model, [10, 11], max_tokens=3, logprobs=3)
    reference = FakeModel(hashed_rule(seed=2)).logits([10, 11] + [c.token for c in chunks])
    for i, chunk in enumerate(chunks):
        row = reference[1 + i].astype(np.float64)
        logp = row - np.log(np.exp(row - row.max()).sum()) - row.max()
        assert chunk.logprob == pytest.approx(logp[chunk.token])
        assert [t for t, _ in chunk.top_logprobs] == list(np.argsort(-logp)[:3])
        assert chunk.top_logprobs[0][1] == pytest.approx(logp.max())


def test_top_probs_are_the_samplers_distribution():
    model = scripted_model("Q:", "hi")
    sampler = sampling.make_sampler(temperature=0.5, top_k=5, top_p=1.0, min_p=0.0, seed=1)
    chunks = run(model, prompt_ids(model, "Q:"), sampler=sampler, top_probs=3, max_tokens=2)
    first = chunks[0]
    # logits: target 10, next 8, 258 others 0; top-5 keeps target, next and 3 zeros.
    weights = np.exp(np.array([10, 8, 0, 0, 0]) / 0.5)
    expected = weights / weights.sum()
    assert [p for _, p in first.top_probs] == pytest.approx(list(expected[:3]))
    assert first.top_probs[0][0] == ord("h")
    assert first.prob == pytest.approx(expected[0] if first.token == ord("h") else expected[1])


# --- determinism and interruption ----------------------------------------------------------------

def test_same_seed_same_output():
    def once(seed):
        model = FakeModel(hashed_rule(seed=1), n_ctx=100)
        sampler = sampling.make_sampler(temperature=1.2, seed=seed)
        return [c.token for c in run(model, [5, 6, 7], sampler=sampler, max_tokens=40)]
    assert once(7) == once(7)
    assert once(7) != once(8)


def test_interrupt_during_decode_ends_with_interrupted_and_a_consistent_cache():
    model = scripted_model("Q:", "abcdef<")
    model.interrupt_on_eval = 4           # prefill, a, b, then the eval of "c" is cut
    chunks = run(model, prompt_ids(model, "Q:"), stop=["<end>"])
    assert [c.token for c in chunks[:-1]] == list(b"abc")
    assert chunks[-1].finish_reason == "interrupted" and chunks[-1].token is None
    assert text_of(chunks) == "abc"
    assert model.cache == list(b"Q:ab")   # the half-written position was dropped


def test_interrupt_thrown_at_a_yield_releases_held_text():
    model = scripted_model("Q:", "ab<e")
    gen = generate(model, prompt_ids(model, "Q:"), sampling.make_sampler(**GREEDY),
                   stop=["<end>"])
    texts = [next(gen).text for _ in range(3)]       # "a", "b", "" ("<" held)
    final = gen.throw(KeyboardInterrupt)
    assert texts == ["a", "b", ""]
    assert final.finish_reason == "interrupted" and final.text == "<"
    with pytest.raises(StopIteration):
        next(gen)


def test_stats_count_tokens():
    model = scripted_model("Q:", "abc")
    final = run(model, prompt_ids(model, "Q:"))[-1]
    s = final.stats
    assert (s.prompt_tokens, s.prefill_tokens, s.generated_tokens, s.decode_tokens) == \
        (2, 2, 4, 3)
    assert s.first_token_seconds >= s.prefill_seconds > 0
    assert set(s.as_dict()) >= {"prefill_tokens_per_second", "decode_tokens_per_second",
                                "time_to_first_token"}


def test_fake_tokenizer_roundtrip_and_specials():
    tok = FakeTokenizer(add_bos=True)
    assert tok.encode("<|im_start|>hi", parse_special=True) == [256, 258, 104, 105]
    assert tok.encode("<|im_start|>", add_special=False)[:2] == [ord("<"), ord("|")]
    assert tok.decode(tok.encode("héllo", add_special=False)) == "héllo"
