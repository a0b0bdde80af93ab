"""A fake chat model for `llm chat` tests: with the ChatML template of tests/fakes.py, it
answers the last user message with "You said: " and that message, then <|im_end|>.
Deterministic at temperature 0; at higher temperatures the next byte value competes
(logit 8 against 10), so seeds matter."""
import numpy as np

from fakes import IM_END, IM_START, N_VOCAB, FakeModel, FakeTokenizer

ASSISTANT = [IM_START] + list(b"assistant\n")
USER = [IM_START] + list(b"user\n")
ECHO_PREFIX = "You said: "


def echo_rule(prefix=ECHO_PREFIX):
    prefix_ids = list(prefix.encode("utf-8"))

    def rule(cache):
        cache = list(cache)
        start = _rfind(cache, ASSISTANT)
        logits = np.zeros(N_VOCAB, dtype=np.float32)
        if start is None:
            target = ord(" ")
        else:
            reply = prefix_ids + _last_user_content(cache[:start])
            j = len(cache) - (start + len(ASSISTANT))
            target = reply[j] if j < len(reply) else IM_END
        logits[(target + 1) % N_VOCAB] = 8.0
        logits[target] = 10.0
        return logits
    return rule


def echo_model(n_ctx=4096, **kwargs):
    return FakeModel(echo_rule(), n_ctx=n_ctx, tokenizer=FakeTokenizer(), **kwargs)


def _last_user_content(ids):
    start = _rfind(ids, USER)
    if start is None:
        return []
    content = ids[start + len(USER):]
    return content[:content.index(IM_END)] if IM_END in content else content


def _rfind(seq, sub):
    for i in range(len(seq) - len(sub), -1, -1):
        if seq[i:i + len(sub)] == sub:
            return i
    return None
