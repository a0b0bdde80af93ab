"""llmcli: run small GGUF language models on the CPU, and see how they work.

    >>> import llmcli
    >>> model = llmcli.load("smollm2")           # a registry name or a path to a .gguf
    >>> ids = model.tokenizer.encode("Hello")
    >>> model.logits(ids).shape                  # (n_tokens, n_vocab), float32
"""

__version__ = "0.1.0"


def load(name_or_path=None, n_ctx=None, **kwargs):
    """Load a model by registry name or .gguf path (see llmcli.model.load)."""
    from llmcli.model import load as _load

    return _load(name_or_path, n_ctx=n_ctx, **kwargs)


__all__ = ["load", "__version__"]
