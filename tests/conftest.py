"""Shared fixtures. Real-model tests use `smollm2_path` / `gemma3_path`: the model is
fetched into the cache if needed. If it cannot be had, the test is skipped — unless
LLMCLI_REQUIRE_MODELS=1 (set by .ci/run), in which case it fails."""
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
        if REQUIRE_MODELS:
            pytest.fail(f"model {name!r} unavailable and LLMCLI_REQUIRE_MODELS=1: {exc}")
        pytest.skip(f"model {name!r} unavailable: {exc}")


@pytest.fixture(scope="session")
def smollm2_path():
    return _real_model_path("smollm2")


@pytest.fixture(scope="session")
def gemma3_path():
    return _real_model_path("gemma3")
