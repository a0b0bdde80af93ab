"""A chat conversation and the model's KV cache that holds it.

Each turn renders the whole conversation with the model's chat template (llmcli.chat),
then evaluates only what the model does not hold yet: `cached_ids` are the ids whose
keys/values are in the cache, and generation starts after their common prefix with the
new prompt (llmcli.generate truncates the cache there and prefills the rest). Usually
that rest is just the new user message, plus whatever the template wraps around the
previous reply; when a reply's text tokenizes differently from the ids the model
produced, the prefix ends earlier and the difference is prefilled again. Dropping old
turns or changing the system prompt shortens the prefix the same way.

The system message is kept apart from the turns (`system`), so that dropping the oldest
turns to fit the context never drops it. A turn is a user message and the assistant
reply that follows it.
"""
import json
import os
import tempfile
from dataclasses import dataclass

from llmcli import chat
from llmcli.errors import ContextOverflowError, InputError
from llmcli.generate import Chunk, generate

FORMAT, VERSION = "llmcli-chat", 1   # the "format" and "version" of saved conversations
MAX_FILE_BYTES = 64 << 20             # a saved chat is text; anything bigger is a mistake


@dataclass
class Plan:
    """How the user message `user_text` fits: drop the `n_drop` oldest turns, then send
    `prompt` (a chat.ChatPrompt of the remaining conversation plus the message)."""
    user_text: str
    n_drop: int
    prompt: chat.ChatPrompt
    reply_room: int          # tokens left for the reply after the prompt


def reply_room_wanted(max_tokens, n_ctx):
    """Tokens to keep free for a reply: max_tokens, but at most half the context, so a
    large max_tokens does not force every old turn out. A reply longer than the room
    left ends with finish reason "context" (reported, never silent)."""
    return min(max_tokens, n_ctx // 2)


class Conversation:
    """The messages of one chat, and what the model's KV cache holds of them."""

    def __init__(self, model, system=None):
        self.model = model
        self.system = system        # str or None
        self.messages = []          # {"role": "user"|"assistant", "content": str}, oldest 1st
        self.cached_ids = []        # ids whose keys/values the model holds, in order

    # --- editing -----------------------------------------------------------------------

    def clear(self):
        """A new conversation with the same system prompt. The cache is left as is:
        the next turn reuses whatever prefix still matches (the system prompt)."""
        self.messages = []

    def set_system(self, text):
        self.system = text

    def n_turns(self):
        return len(self._turn_starts())

    def drop_oldest_turns(self, n):
        """Remove the n oldest turns (user message + reply); the system prompt stays."""
        self.messages = self._without_oldest_turns(n)

    def replace(self, system, messages):
        """Adopt another conversation (e.g. one loaded from a file)."""
        self.system, self.messages = system, [dict(m) for m in messages]

    def _turn_starts(self):
        return [i for i, m in enumerate(self.messages) if m["role"] == "user"]

    def _without_oldest_turns(self, n):
        starts = self._turn_starts()
        return self.messages[starts[n]:] if n < len(starts) else []

    # --- prompts -----------------------------------------------------------------------

    def all_messages(self, messages=None):
        """The system message (if any) followed by `messages` (default: the turns)."""
        head = [{"role": "system", "content": self.system}] if self.system is not None else []
        return head + (self.messages if messages is None else messages)

    def token_count(self):
        """Tokens of the conversation as rendered so far (no generation prompt)."""
        if not self.messages and self.system is None:
            return 0
        return len(chat.chat_prompt(self.model.tokenizer, self.all_messages(),
                                    add_generation_prompt=False).ids)

    def plan(self, user_text, max_tokens):
        """How `user_text` can be sent: the fewest oldest turns to drop so that the
        prompt leaves reply_room_wanted() tokens free (all turns, if even that is not
        enough but a reply of at least one token fits). Raises ContextOverflowError when
        the system prompt and this message alone fill the context."""
        n_ctx = self.model.n_ctx
        wanted = reply_room_wanted(max_tokens, n_ctx)
        user = {"role": "user", "content": user_text}
        n_turns = self.n_turns()
        for n_drop in range(n_turns + 1):
            kept = self._without_oldest_turns(n_drop)
            prompt = chat.chat_prompt(self.model.tokenizer, self.all_messages(kept + [user]))
            if len(prompt.ids) + wanted <= n_ctx:
                return Plan(user_text, n_drop, prompt, n_ctx - len(prompt.ids))
        if len(prompt.ids) < n_ctx:
            return Plan(user_text, n_turns, prompt, n_ctx - len(prompt.ids))
        what = "the system prompt and this message take" if self.system is not None \
            else "this message takes"
        raise ContextOverflowError(
            f"{what} {len(prompt.ids)} tokens, but the context window holds "
            f"{n_ctx}; shorten the message or raise --ctx-size")

    # --- turns -------------------------------------------------------------------------

    def start_turn(self, plan, sampler, max_tokens):
        """Begin the reply to the message of `plan` (from plan(), made for the
        conversation as it is now): drop the turns it says, and return a Turn to
        iterate for the reply's chunks."""
        self.drop_oldest_turns(plan.n_drop)
        chunks = generate(self.model, plan.prompt.ids, sampler, max_tokens,
                          cached_ids=self.cached_ids)
        # The cache is about to change; until the turn records its outcome, trust none of it.
        self.cached_ids = []
        return Turn(self, plan.user_text, plan.prompt, chunks)

    def _record(self, turn):
        """The turn has ended: keep its messages and what the cache now holds."""
        self.cached_ids = (turn.prompt.ids + turn.tokens)[:self.model.n_past]
        if turn.cancelled:
            return
        self.messages += [{"role": "user", "content": turn.user_text},
                          {"role": "assistant", "content": turn.text}]

    # --- files -------------------------------------------------------------------------

    def to_dict(self):
        return {"format": FORMAT, "version": VERSION, "model": self.model.name,
                "system": self.system, "messages": [dict(m) for m in self.messages]}


class Turn:
    """One reply being generated. Iterate for its chunks (llmcli.generate.Chunk); when
    the last one has passed, the conversation holds the user message and the reply.

    Ctrl-C raised inside the model is caught by generate(), which ends with an
    `interrupted` chunk; Ctrl-C raised while the caller handles a chunk should be
    passed on with interrupt(). Either way the partial reply is kept; a reply
    interrupted before any text cancels the turn (the user message is not kept)."""

    def __init__(self, conversation, user_text, prompt, chunks):
        self.conversation, self.user_text, self.prompt = conversation, user_text, prompt
        self._chunks = chunks
        self.tokens, self._texts = [], []
        self.final = None            # the chunk with finish_reason, once there

    @property
    def text(self):
        return "".join(self._texts)

    @property
    def finish_reason(self):
        return self.final.finish_reason if self.final else None

    @property
    def cancelled(self):
        return self.finish_reason == "interrupted" and not self.text

    @property
    def stats(self):
        return self.final.stats if self.final else None

    def __iter__(self):
        for chunk in self._chunks:
            self._take(chunk)
            yield chunk

    def interrupt(self):
        """End the turn after a Ctrl-C that arrived outside the model; returns the
        final chunk (which may carry text that was held back)."""
        if self.final is not None:
            return self.final
        try:
            chunk = self._chunks.throw(KeyboardInterrupt)
        except (StopIteration, KeyboardInterrupt):
            # generate() had not started or had already ended: nothing more to release,
            # and what the cache holds is unknown, so it is forgotten.
            self.conversation.model.reset()
            self.tokens = []
            chunk = Chunk(token=None, text="", finish_reason="interrupted")
        self._take(chunk)
        return chunk

    def _take(self, chunk):
        if chunk.token is not None:
            self.tokens.append(chunk.token)
        self._texts.append(chunk.text)
        if chunk.finish_reason is not None and self.final is None:
            self.final = chunk
            self.conversation._record(self)




# --- conversation files ------------------------------------------------------------------

def save(conversation, path):
    """Write the conversation as JSON. Atomic: the text goes to a temporary file in the
    same folder, which then replaces `path`, so an interrupted or failed save never
    leaves a half-written file (nor destroys an older one)."""
    path = os.path.expanduser(path)
    text = json.dumps(conversation.to_dict(), ensure_ascii=False, indent=2) + "\n"
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".llmcli-chat-", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"cannot save to {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise InputError(f"cannot save to {path}: {exc.strerror}") from None
        raise


def load(path):
    """(system, messages) from a file written by save(). Raises InputError naming the
    file and what is wrong with it."""
    path = os.path.expanduser(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot load {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"cannot load {path}: larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot load {path}: not UTF-8 (byte offset {exc.start})") \
            from None
    except json.JSONDecodeError as exc:
        raise InputError(f"cannot load {path}: not JSON ({exc.msg} at line {exc.lineno} "
                         f"column {exc.colno})") from None
    except RecursionError:
        raise InputError(f"cannot load {path}: JSON nested too deeply") from None
    try:
        return parse(obj)
    except ValueError as exc:
        raise InputError(f"cannot load {path}: {exc}") from None


def parse(obj):
    """(system, messages) from the JSON object of a saved conversation; ValueError says
    what does not fit the format. The system prompt may also come as a first message
    with role "system" (the OpenAI style)."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object with \"messages\"")
    if obj.get("format", FORMAT) != FORMAT:
        raise ValueError(f"\"format\" is {obj['format']!r}, expected {FORMAT!r}")
    version = obj.get("version", VERSION)
    if type(version) is not int or version != VERSION:
        raise ValueError(f"\"version\" is {version!r}; this llmcli reads version {VERSION}")
    system = obj.get("system")
    if system is not None and not isinstance(system, str):
        raise ValueError("\"system\" must be a string or null")
    messages = obj.get("messages")
    if not isinstance(messages, list):
        raise ValueError("\"messages\" must be a list")
    messages = [_checked_message(m, i) for i, m in enumerate(messages)]
    if messages and messages[0]["role"] == "system" and system is None:
        system, messages = messages[0]["content"], messages[1:]
        first = 1
    else:
        first = 0
    _check_alternation(messages, first)
    return system, messages


def _checked_message(message, index):
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise ValueError(f"{where} must be an object with \"role\" and \"content\"")
    role, content = message.get("role"), message.get("content")
    if role not in ("system", "user", "assistant"):
        raise ValueError(f"{where}: \"role\" must be \"user\" or \"assistant\", "
                         f"not {role!r}")
    if not isinstance(content, str):
        raise ValueError(f"{where}: \"content\" must be a string")
    return {"role": role, "content": content}


def _check_alternation(messages, first):
    """Turns alternate user, assistant, ...; a saved chat ends with a reply."""
    for i, message in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            article = "a" if expected == "user" else "an"
            raise ValueError(f"messages[{i + first}]: expected {article} {expected} message, "
                             f"not {message['role']!r} (turns alternate user, assistant)")
    if len(messages) % 2:
        raise ValueError(f"messages[{len(messages) - 1 + first}]: the last user message "
                         "has no reply")
