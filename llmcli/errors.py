"""The errors llmcli raises on purpose. Each becomes one `Error: ...` line and exit 1 in
the CLI; anything else escaping is a bug (shown as a one-line internal error, with the
traceback only when LLMCLI_DEBUG=1)."""


class LLMError(Exception):
    """Base class: a problem the user can act on (bad file, bad input, missing model)."""


class GGUFError(LLMError):
    """A GGUF file is malformed or uses something we do not support."""


class ModelError(LLMError):
    """A model cannot be found, fetched, verified, or its tensors do not fit its config."""


class TokenizerError(LLMError):
    """Tokenizer metadata is unusable, or input cannot be tokenized/decoded."""


class TemplateError(LLMError):
    """A chat template failed to render, or exceeded the render caps."""


class ContextOverflowError(LLMError):
    """The tokens do not fit in the context window."""


class InputError(LLMError):
    """Text given by the user cannot be used (invalid UTF-8, empty, ...)."""


class ContextSizeError(InputError):
    """The context asked for is outside what the model supports (1..its trained context):
    a usage error of the command's context option."""
