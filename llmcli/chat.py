"""Chat templates: render a model's `tokenizer.chat_template` (Jinja) in a sandbox, and
tokenize the result so that the template's own markers become special tokens while the
text of the messages never does (a user typing "<|im_end|>" gets the characters, not
the control token).

Tokenizing: when no message holds special-token text, the rendered text is tokenized
in one piece with special tokens parsed, exactly as transformers and llama.cpp do. When
one does, the template is rendered again with a placeholder for each content; the text
around the placeholders is the template's (special tokens parsed) and the contents are
tokenized as plain text, piece by piece.

The environment matches what Hugging Face transformers gives templates (trim_blocks,
lstrip_blocks, loop controls, `raise_exception`, `strftime_now`, a `tojson` that keeps
non-ASCII characters, `bos_token`/`eos_token`, `add_generation_prompt`), so prompts
render the same. Templates are untrusted code from the model file: jinja2's
ImmutableSandboxedEnvironment blocks attribute tricks, and we add caps on render time,
output size and a few operations that could allocate without bound.
"""
import json
import re
import secrets
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from jinja2 import TemplateError as JinjaError
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from llmcli.errors import TemplateError

RENDER_SECONDS = 2.0           # real templates render in milliseconds
BASE_OUTPUT_CHARS = 1_000_000  # plus 4 chars per char of message content
MAX_WIDTH = 10_000             # widths/repeats inside a template (padding, "=" * n)
MAX_INT_BITS = 1 << 16         # integers a template computes (a few thousand digits)
RENDER_MEMORY = 1 << 28        # address space a render may add to the process


@dataclass
class ChatPrompt:
    text: str    # the rendered template
    ids: list    # its tokens: markers parsed as special tokens, message text never


def build_messages(prompt, system=None):
    """The conversation for a one-shot prompt: an optional system message, then the user."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    return messages + [{"role": "user", "content": prompt}]


def chat_prompt(tokenizer, messages, template=None, add_generation_prompt=True):
    """Render `messages` with the model's template (or `template`) and tokenize it."""
    template = template if template is not None else tokenizer.chat_template
    if not template:
        raise TemplateError("the model has no chat template (tokenizer.chat_template); "
                            "use raw completion (--raw)")
    special = {"bos_token": _piece(tokenizer, tokenizer.bos_id),
               "eos_token": _piece(tokenizer, tokenizer.eos_id)}
    text = render(template, messages, add_generation_prompt=add_generation_prompt, **special)
    ids = _tokenize_rendered(tokenizer, template, messages, text, add_generation_prompt,
                             special)
    if tokenizer.add_bos and (not ids or ids[0] != tokenizer.bos_id):
        ids.insert(0, tokenizer.bos_id)
    return ChatPrompt(text, ids)


def render(template, messages, add_generation_prompt=True, bos_token="", eos_token="",
           seconds=RENDER_SECONDS, max_chars=None):
    """The template's output for these messages. Any failure, including exceeding the
    time or size caps, is a TemplateError."""
    if max_chars is None:
        content_chars = sum(len(str(m.get("content", ""))) for m in messages)
        max_chars = BASE_OUTPUT_CHARS + 4 * content_chars
    context = dict(messages=messages, add_generation_prompt=add_generation_prompt,
                   bos_token=bos_token, eos_token=eos_token)
    try:
        compiled = _environment().from_string(template)
        pieces, size = [], 0
        with _time_limit(seconds), _memory_limit(RENDER_MEMORY):
            for piece in compiled.generate(**context):
                size += len(piece)
                if size > max_chars:
                    raise TemplateError(
                        f"chat template output exceeds {max_chars} characters")
                pieces.append(piece)
        return "".join(pieces)
    except TemplateError:
        raise
    except _RenderTimeout:
        raise TemplateError(f"chat template took longer than {seconds:g} s to render") \
            from None
    except MemoryError:
        raise TemplateError(f"chat template needed more than {RENDER_MEMORY >> 20} MiB of "
                            "memory to render") from None
    except (JinjaError, SecurityError, RecursionError, MemoryError, OverflowError,
            ArithmeticError, TypeError, ValueError, KeyError, IndexError,
            AttributeError) as exc:
        raise TemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from None


# --- tokenizing the rendered text ---------------------------------------------------------

def _tokenize_rendered(tokenizer, template, messages, text, add_generation_prompt, special):
    if not any(_has_special_text(tokenizer, m.get("content", "")) for m in messages):
        return tokenizer.encode(text, add_special=False, parse_special=True)
    nonce = secrets.token_hex(8)
    marked = [dict(m, content=f"\ue000{nonce}#{i}\ue001") for i, m in enumerate(messages)]
    skeleton = render(template, marked, add_generation_prompt=add_generation_prompt,
                      **special)
    parts = re.split(f"\ue000{nonce}#(\\d+)\ue001", skeleton)
    template_texts, slots = parts[0::2], [int(i) for i in parts[1::2]]
    segments = _align(text, template_texts, [messages[i]["content"] for i in slots])
    if segments is None:
        raise TemplateError("cannot tokenize the chat prompt safely: a message contains "
                            "special-token text and the template rewrites message content")
    ids = []
    for segment, is_content in segments:
        ids += tokenizer.encode(segment, add_special=False, parse_special=not is_content)
    return ids


def _has_special_text(tokenizer, content):
    content = str(content)
    return (tokenizer.encode(content, add_special=False, parse_special=True)
            != tokenizer.encode(content, add_special=False, parse_special=False))


def _align(text, template_texts, contents):
    """Split `text` into [(segment, is_content)] such that it reads template_texts[0],
    contents[0] (as is, or stripped as templates often do), template_texts[1], ...
    None when the template changed the content some other way."""
    if not text.startswith(template_texts[0]):
        return None
    segments, pos = [(template_texts[0], False)], len(template_texts[0])
    for k, content in enumerate(contents):
        following, last = template_texts[k + 1], k + 1 == len(contents)
        for variant in _content_variants(content):
            expected = variant + following
            fits = (text[pos:] == expected) if last else text.startswith(expected, pos)
            if fits:
                segments += [(variant, True), (following, False)]
                pos += len(expected)
                break
        else:
            return None
    return segments if pos == len(text) else None


def _content_variants(content):
    content = str(content)
    return dict.fromkeys([content, content.strip(), content.lstrip(), content.rstrip()])


def _piece(tokenizer, token_id):
    return tokenizer.token_piece(token_id) if token_id is not None and token_id >= 0 else ""


# --- the sandbox ----------------------------------------------------------------------------

class _RenderTimeout(Exception):
    pass


@contextmanager
def _time_limit(seconds):
    """Abort the render after `seconds`: a trace hook sees every line the compiled
    template runs, so even a loop that calls nothing is stopped (a timer thread could
    not interrupt it, and signals only reach the main thread)."""
    deadline = time.monotonic() + seconds
    events = 0

    def check(frame, event, arg):
        nonlocal events
        events += 1
        if events % 64 == 0 and time.monotonic() > deadline:
            raise _RenderTimeout
        return check

    previous = sys.gettrace()
    sys.settrace(check)
    try:
        yield
    finally:
        sys.settrace(previous)


@contextmanager
def _memory_limit(extra_bytes):
    """Cap the address space at its current size + extra_bytes while rendering. A few
    C-level calls (`~`, replace, join in a loop over a namespace) can build gigabytes
    between two checks of the trace hook; past the cap they raise MemoryError instead.
    Linux only (reads /proc); elsewhere only the other caps apply."""
    try:
        import resource

        with open("/proc/self/statm") as statm:
            current = int(statm.read().split()[0]) * resource.getpagesize()
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        yield
        return
    cap = current + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:
        yield   # an outer limit is already tighter
        return
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class _GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}` (marks assistant text for training in
    some templates): rendered as its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
            _check_int_size(operator, left, right)
        elif operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 1000 \
                    and isinstance(left, (int, float)) and abs(left) > 1:
                raise SecurityError("exponent too large")
            _check_int_size(operator, left, right)
        elif operator == "%" and isinstance(left, str):
            _check_format_widths(left)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value):
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args, **kwargs):
            _check_format_widths(fmt)
            return wrapped(*args, **kwargs)
        return checked


def _check_repeat(sequence, count):
    # the product, not the count alone: ("x" * 1000) * 10000, then * 10000 again...
    if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
        if len(sequence) * count > BASE_OUTPUT_CHARS:
            raise SecurityError("repetition too large")


def _check_int_size(operator, left, right):
    """Big-integer products and powers run as one C call the time cap cannot stop
    (((10**1000)**1000)**1000 takes minutes): bound the size of the result first."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    if operator == "*":
        bits = left.bit_length() + right.bit_length()
    else:
        bits = left.bit_length() * right if right > 0 and abs(left) > 1 else 0
    if bits > MAX_INT_BITS:
        raise SecurityError(f"integer result of {operator} too large")


_WIDTH = re.compile(r"(?:%|:)[^\d%:}]{0,3}(\d+)")


def _check_format_widths(fmt):
    if any(int(w) > MAX_WIDTH for w in _WIDTH.findall(fmt)):
        raise SecurityError("format width too large")


def _bounded(filter_func, width_arg):
    """A filter whose `width_arg`-th positional argument (a width) is capped."""
    def bounded(value, *args, **kwargs):
        width = args[width_arg] if len(args) > width_arg else kwargs.get("width")
        if isinstance(width, int) and width > MAX_WIDTH:
            raise SecurityError("width too large")
        if isinstance(width, str) and len(width) > MAX_WIDTH:
            raise SecurityError("width too large")
        return filter_func(value, *args, **kwargs)
    return bounded


def _raise_exception(message):
    raise TemplateError(f"chat template error: {message}")


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson escapes <, >, & and ' for HTML; prompts want plain JSON.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def _format_filter(value, *args, **kwargs):
    _check_format_widths(str(value))
    return str(value) % (kwargs or args)


_ENVIRONMENT = None


def _environment():
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        env = _Sandbox(trim_blocks=True, lstrip_blocks=True,
                       extensions=["jinja2.ext.loopcontrols", _GenerationTag])
        env.globals.pop("lipsum", None)   # lipsum(n=10**9) would allocate without bound
        env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
        env.filters["tojson"] = _tojson
        env.filters["format"] = _format_filter
        env.filters["center"] = _bounded(env.filters["center"], 0)
        env.filters["indent"] = _bounded(env.filters["indent"], 0)
        _ENVIRONMENT = env
    return _ENVIRONMENT
