"""Shared fixtures. Real-model tests use `smollm2_path` / `gemma3_path`, tests on
llama.cpp's test vocabularies `llama_cpp_vocab_dir`: the files are fetched into the cache
if needed. If they cannot be had, the test is skipped — unless LLMCLI_REQUIRE_MODELS=1
(set by .ci/run), in which case it fails."""
import os

import pytest

REQUIRE_MODELS = os.environ.get("LLMCLI_REQUIRE_MODELS") == "1"


def _real_model_path(name):
    # Development shortcut: a folder holding <name>.gguf (never set in CI).
    dev_dir = os.environ.get("LLMCLI_TEST_MODEL_DIR")
    if dev_dir and os.path.exists(os.path.join(dev_dir, f"{name}.gguf")):
        return os.path.join(dev_dir, f"{name}.gguf")

    from llmcli import models

    try:
        return models.ensure_local(name, quiet=True)
    except Exception as exc:  # noqa: BLE001 - any failure to get the model
        _unavailable(f"model {name!r}", exc)


def _unavailable(what, exc):
    if REQUIRE_MODELS:
        pytest.fail(f"{what} unavailable and LLMCLI_REQUIRE_MODELS=1: {exc}")
    pytest.skip(f"{what} unavailable: {exc}")


@pytest.fixture(scope="session")
def smollm2_path():
    return _real_model_path("smollm2")


@pytest.fixture(scope="session")
def gemma3_path():
    return _real_model_path("gemma3")


@pytest.fixture(scope="session")
def llama_cpp_vocab_dir():
    """Folder holding llama.cpp's ggml-vocab-{gpt-2,llama-bpe,qwen2}.gguf (tests/vocab_files.py)."""
    import vocab_files

    try:
        return vocab_files.vocab_dir()
    except vocab_files.VocabUnavailable as exc:
        _unavailable("llama.cpp test vocabularies", exc)
