"""The numeric options that `llm generate` and `llm chat` share (sampling, context,
threads), declared once: each becomes a Click option with its LLMCLI_* variable, and
`llm chat`'s `/set KEY VALUE` validates through the same checks."""
import math
from dataclasses import dataclass
from typing import Callable

import click

from llmcli.errors import InputError


@dataclass(frozen=True)
class NumberSetting:
    name: str                      # the Python name, and the key of /set
    flags: tuple                   # Click flags, e.g. ("-n", "--max-tokens")
    kind: type                     # int or float
    default: object
    valid: Callable[[object], bool]
    what: str                      # what a valid value is, for the error message
    help: str
    show_default: object = True    # True, or the text Click shows instead

    @property
    def hint(self):
        """How errors name the option: '-t/--temperature'."""
        short = [f for f in self.flags if not f.startswith("--")]
        return "/".join(short + [next(f for f in self.flags if f.startswith("--"))])

    @property
    def envvar(self):
        return f"LLMCLI_{self.name.upper()}"

    def accepts(self, value):
        return value is None or self.valid(value)


def _finite(x):
    return math.isfinite(x)


# The sampler's settings, then max_tokens (kept last: sampler_options takes the rest).
SAMPLING = (
    NumberSetting("temperature", ("-t", "--temperature", "--temp"), float, 0.8,
                  lambda x: _finite(x) and x >= 0, "a number >= 0",
                  "Higher is more random; 0 picks the most likely token."),
    NumberSetting("top_k", ("--top-k",), int, 40, lambda x: x >= 0, "an integer >= 0",
                  "Keep the K most likely tokens (0 = off)."),
    NumberSetting("top_p", ("--top-p",), float, 0.95, lambda x: _finite(x) and 0 < x <= 1,
                  "in (0, 1]", "Keep the most likely tokens until their probabilities add "
                  "up to P (1 = off)."),
    NumberSetting("min_p", ("--min-p",), float, 0.05, lambda x: _finite(x) and 0 <= x <= 1,
                  "in [0, 1]", "Drop tokens less likely than P times the most likely one "
                  "(0 = off)."),
    NumberSetting("repeat_penalty", ("--repeat-penalty",), float, 1.0,
                  lambda x: _finite(x) and x > 0, "a number > 0",
                  "Penalize tokens seen in the last --repeat-last-n tokens (1 = off)."),
    NumberSetting("repeat_last_n", ("--repeat-last-n",), int, 64, lambda x: x >= -1,
                  "an integer >= -1",
                  "Window of the repeat penalty (0 = off, -1 = the whole context)."),
    NumberSetting("seed", ("--seed",), int, None, lambda x: 0 <= x < 2 ** 64,
                  "an integer in [0, 2**64)",
                  "Seed of the sampler: same seed, prompt and options, same output.",
                  show_default="random, reported by --verbose and in JSON"),
    NumberSetting("max_tokens", ("-n", "--max-tokens"), int, 256, lambda x: x >= 1,
                  "an integer >= 1", "Stop after this many generated tokens."),
)

RUNTIME = (
    NumberSetting("ctx_size", ("--ctx-size",), int, None, lambda x: x >= 1,
                  "an integer >= 1", "Context window in tokens (prompt + output).",
                  show_default="the model's context length, at most 4096"),
    NumberSetting("threads", ("--threads",), int, None, lambda x: x >= 1,
                  "an integer >= 1", "Threads for the kernels.", show_default="all cores"),
)

SAMPLING_BY_NAME = {s.name: s for s in SAMPLING}


def click_option(setting):
    """The Click option for `setting`; a bad value is a usage error naming the option."""
    def check(ctx, param, value):
        if not setting.accepts(value):
            raise click.BadParameter(f"{value!r} is not {setting.what}", ctx, param,
                                     param_hint=setting.hint)
        return value

    attrs = dict(type=setting.kind, default=setting.default, callback=check,
                 show_default=setting.show_default, help=setting.help,
                 envvar=setting.envvar, show_envvar=True)
    return click.option(*setting.flags, setting.name, **attrs)


def _apply_all(settings, func):
    # Click lists options in the order their decorators are written, i.e. the reverse
    # of the order they are applied.
    for setting in reversed(settings):
        func = click_option(setting)(func)
    return func


def sampler_options(func):
    """Decorator adding the sampler's settings, --temperature ... --seed (what
    make_sampler takes); commands that generate add max_tokens_option too."""
    return _apply_all(SAMPLING[:-1], func)


def max_tokens_option(func):
    """Decorator adding -n/--max-tokens."""
    return _apply_all(SAMPLING[-1:], func)


def runtime_options(func):
    """Decorator adding --ctx-size and --threads."""
    return _apply_all(RUNTIME, func)


def parse_setting(name, text):
    """The value of sampling setting `name` from user text (`/set top_k 20`); raises
    InputError with one line naming the key and what it accepts. seed also takes
    `random`."""
    setting = SAMPLING_BY_NAME.get(name.replace("-", "_"))
    if setting is None:
        raise InputError(f"unknown setting {name!r}; settings: "
                         + ", ".join(SAMPLING_BY_NAME))
    if setting.name == "seed" and text.lower() in ("random", "none"):
        return None
    try:
        value = setting.kind(text)
    except ValueError:
        value = None
    if value is None or not setting.valid(value):
        extra = " or 'random'" if setting.name == "seed" else ""
        raise InputError(f"{setting.name}: {text!r} is not {setting.what}{extra}")
    return value
