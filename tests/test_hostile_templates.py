"""Hostile chat templates (issue 7, part 1): a GGUF's `tokenizer.chat_template` is code
from the file (CVE-2024-34359 was a template rendered outside the Jinja sandbox). Each
template tries to escape the sandbox to create a marker file, or to burn time or
memory, or is broken. Through `llm generate --chat` and `llm chat` (a pipe, and one
terminal session) on a model carrying it, and through llmcli.chat directly: a
TemplateError naming the template, and never the marker file.
"""
import sys
import time

import pytest

from hostile_models import tiny_llama
from hostile_run import assert_clean_error, llm_env, run_llm
from llmcli import chat
from llmcli.errors import TemplateError

MSGS = [{"role": "user", "content": "hi"}]
# {m} is replaced by the marker file's path
ESCAPES = {
    "__class__ and __mro__": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "__subclasses__ to Popen": (
        "{% for c in ''.__class__.__base__.__subclasses__() %}{% if c.__name__ == 'Popen' %}"
        "{{ c(['touch', '{m}']) }}{% endif %}{% endfor %}"),
    "__globals__ of raise_exception": "{{ raise_exception.__globals__['os'].system('touch {m}') }}",
    "__globals__ of strftime_now": "{{ strftime_now.__globals__.__builtins__.open('{m}', 'w') }}",
    "cycler to os": "{{ cycler.__init__.__globals__.os.system('touch {m}') }}",
    "joiner to os": "{{ joiner.__init__.__globals__.os.popen('touch {m}').read() }}",
    "namespace to builtins": "{{ namespace.__init__.__globals__['__builtins__']['open']('{m}', 'w') }}",
    "|attr filter": "{{ (cycler | attr('__init__') | attr('__globals__'))['os'].system('touch {m}') }}",
    "|attr with escaped underscores": "{{ ('' | attr('\\x5f\\x5fclass\\x5f\\x5f')).__mro__ }}",
    "item access to dunders": "{{ cycler['__init__']['__globals__']['os'].system('touch {m}') }}",
    "format_map": "{{ '{0.__init__.__globals__[os].system}'.format_map({0: cycler}) }}",
    "str.format field": "{{ '{0.__class__.__mro__}'.format(messages) }}",
    "self reference": "{{ self._TemplateReference__context.environment }}",
    "mutating messages": "{{ messages.append({'role': 'system', 'content': 'obey'}) }}",
}
RESOURCE_HOGS = {
    "range(10**12) loop": "{% for i in range(10**12) %}x{% endfor %}",
    "nested loops that print nothing": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"),
    "huge string repeat": "{{ 'x' * 10**9 }}",
    "repeat of a repeat": "{{ ('x' * 10**6) * 10**6 }}",
    "list repeat": "{{ (range(100000) | list) * 100000 }}",
    "tower of powers": "{{ ((10 ** 1000) ** 1000) ** 1000 }}",
    "product of big integers": "{% set x = 10 ** 1000 %}{{ x * x * x * x * x * x * x * x }}",
    "string doubling in a namespace": ("{% set ns = namespace(s='x') %}{% for i in range(64) %}"
                                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"),
    "growth by replace": ("{% set ns = namespace(s='xx') %}{% for i in range(12) %}"
                          "{% set ns.s = ns.s | replace('x', 'xxxxxxxxxx') %}{% endfor %}{{ ns.s }}"),
    "format width": "{{ '%0999999999d' % 1 }}",
    "center width": "{{ 'x' | center(999999999) }}",
    "one call building a gigabyte": "{{ ('x' * 1000000) | replace('x', 'x' * 1000) }}",
    "recursive macro": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "mutually recursive macros": ("{% macro a() %}{{ b() }}{% endmacro %}"
                                  "{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}"),
    "deeply nested expression": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
    "output too large": "{% for i in range(100000) %}{{ 'y' * 9999 }}{% endfor %}",
}
BROKEN = {
    "unclosed block": "{% for m in messages %}{{ m.content }}",
    "unknown tag": "{% frobnicate %}",
    "bad expression": "{{ messages[ }}",
    "undefined filter": "{{ messages | nosuchfilter }}",
    "raise_exception": "{{ raise_exception('this template refuses') }}",
    "empty output": "",
}


def with_marker(template, marker):
    return template.replace("{m}", str(marker))


@pytest.mark.parametrize("case", list(ESCAPES) + list(RESOURCE_HOGS) + list(BROKEN))
def test_hostile_template_through_llm_generate(tmp_path, case):
    marker = tmp_path / "PWNED"
    template = with_marker({**ESCAPES, **RESOURCE_HOGS, **BROKEN}[case], marker)
    path = tiny_llama(tmp_path / "m.gguf", template=template)
    outcome = run_llm("generate", "-m", path, "--chat", "-n", "1", "-t", "0", "hi", home=tmp_path)
    if case == "empty output":
        # an empty template is no template: --chat is a usage error
        assert_clean_error(outcome, "has no chat template", status=2)
    else:
        assert_clean_error(outcome, "chat template")
    assert not marker.exists(), f"{case}: the template ran code outside the sandbox"


@pytest.mark.parametrize("case", list(ESCAPES) + list(RESOURCE_HOGS) + list(BROKEN))
def test_hostile_template_through_llm_chat_from_a_pipe(tmp_path, case):
    """The template renders when the first message is sent: from a pipe the error ends
    the chat (exit 1) before any reply."""
    marker = tmp_path / "PWNED"
    template = with_marker({**ESCAPES, **RESOURCE_HOGS, **BROKEN}[case], marker)
    path = tiny_llama(tmp_path / "m.gguf", template=template)
    outcome = run_llm("chat", "-m", path, "-n", "1", "-t", "0", stdin=b"hi\n", home=tmp_path)
    # an empty template is no template: `llm chat` refuses the model
    assert_clean_error(outcome, "has no chat template" if case == "empty output" else "chat template")
    assert outcome.stdout == b""
    assert not marker.exists(), f"{case}: the template ran code outside the sandbox"


@pytest.mark.parametrize("case", ["__globals__ of raise_exception", "range(10**12) loop"])
def test_hostile_template_in_a_terminal_chat_is_a_notice_and_runs_nothing(tmp_path, case):
    """On a terminal an error does not end the chat: a one-line notice, the prompt
    again, and Ctrl-D leaves normally."""
    from test_chat_cli import PROMPT, PtyChat

    marker = tmp_path / "PWNED"
    template = with_marker({**ESCAPES, **RESOURCE_HOGS}[case], marker)
    path = tiny_llama(tmp_path / "m.gguf", template=template)
    session = PtyChat(executable=[sys.executable, "-m", "llmcli", "chat", "-m", str(path)],
                      env=llm_env(tmp_path))
    session.expect(PROMPT)
    session.type("hi\r")
    notice = session.expect(PROMPT)
    assert b"error: chat template failed" in notice and b"Traceback" not in notice, notice
    session.type("\x04")
    assert session.exit_code() == 0
    assert not marker.exists(), f"{case}: the template ran code outside the sandbox"


@pytest.mark.parametrize("case", list(ESCAPES))
def test_sandbox_escapes_through_the_library(tmp_path, case):
    marker = tmp_path / "PWNED"
    with pytest.raises(TemplateError, match="SecurityError|chat template"):
        chat.render(with_marker(ESCAPES[case], marker), MSGS)
    assert not marker.exists()


@pytest.mark.parametrize("case", list(RESOURCE_HOGS))
def test_resource_hogs_through_the_library_stop_fast(case):
    start = time.process_time()
    with pytest.raises(TemplateError):
        chat.render(RESOURCE_HOGS[case], MSGS)
    # the 2 s cap is checked between template steps; one step may run a little over
    assert time.process_time() - start < 5.0


def test_a_template_that_only_tests_unsafe_attributes_runs_nothing(tmp_path):
    """Unsafe attributes are undefined, not errors, until used: this template renders
    (and the prompt is made) but still executes nothing."""
    marker = tmp_path / "PWNED"
    template = ("{% if cycler.__init__ %}{{ cycler.__init__.__globals__.os.system('touch "
                + str(marker) + "') }}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}")
    assert chat.render(template, MSGS) == "hi"
    assert not marker.exists()


def test_memory_cap_names_itself_and_is_lifted_after_the_render():
    import resource

    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(TemplateError, match="needed more than 256 MiB of memory"):
        chat.render(RESOURCE_HOGS["one call building a gigabyte"], MSGS)
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert chat.render("{{ 'ok' }}", MSGS) == "ok"
