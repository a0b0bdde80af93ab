"""The benchmarks' own accounting, on the real models: a figure is only as good as the
bytes it divides by."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import decode_bandwidth  # noqa: E402
from llmcli.gguf import open_gguf  # noqa: E402
from llmcli.model import REFINED_INPUTS  # noqa: E402


@pytest.mark.parametrize("model", ["smollm2_path", "gemma3_path"])
def test_in_cache_groups_are_the_matrices_a_decode_step_reads(model, request):
    """decode_bandwidth's in-cache figure covers the same weights as its decode figure:
    every layer's four projection groups and the output matrix, each byte once, with two
    input rows exactly where the model refines the input."""
    path = request.getfixturevalue(model)
    gguf_file = open_gguf(path)
    groups = decode_bandwidth.decode_groups(path)
    n_layers = gguf_file.metadata[f"{gguf_file.metadata['general.architecture']}.block_count"]
    assert len(groups) == 4 * n_layers + 1
    group_bytes = sum(w.nbytes for _, _, group in groups for w, _ in group)
    assert group_bytes == decode_bandwidth.weight_bytes_per_token(path)
    refined = REFINED_INPUTS[gguf_file.metadata["general.architecture"]]
    projections = list(decode_bandwidth.PROJECTIONS)
    for i, (k, tokens, group) in enumerate(groups[:-1]):
        projection = projections[i % 4]
        assert tokens == (2 if projection in refined else 1), projection
        names = [f"blk.{i // 4}.{name}.weight" for name in decode_bandwidth.PROJECTIONS[projection]]
        assert [gguf_file.tensors[n].shape[0] for n in names] == [k] * len(names)
        assert [w.shape[0] for w, _ in group] == [gguf_file.tensors[n].shape[1] for n in names]


@pytest.mark.parametrize("model", ["smollm2_path", "gemma3_path"])
def test_profiled_step_is_the_decode_step_of_eval(model, request):
    """decode_profile times, part by part, the computation Model.eval makes: the same
    token after the same prompt gives the same logits, bit for bit."""
    import numpy as np

    import decode_profile
    from llmcli.model import load

    loaded = load(request.getfixturevalue(model), n_ctx=8, threads=2)
    loaded.eval([1, 2])
    expected = loaded.eval([3])
    loaded.reset()
    loaded.eval([1, 2])
    logits = np.empty((1, loaded.config.n_vocab), np.float32)
    parts = decode_profile.profiled_step(loaded, 3, logits)
    assert np.array_equal(logits[0], expected)
    assert loaded.n_past == 3
    assert sorted(parts) == ["layers", "other", "output"]


def test_ceiling_takes_each_group_at_the_slower_of_its_two_bounds():
    """The roofline: a group held by its kernels counts its in-cache time, a group held by
    memory its bytes over the read bandwidth, and the step is their sum."""
    import numpy as np

    def group(n_bytes):
        return 64, 1, [(np.zeros((1, n_bytes), np.uint8), 8)]

    groups = [group(1_000_000), group(3_000_000)]
    in_cache = [100e-6, 50e-6]  # 10 GB/s (slower than the read) and 60 GB/s (faster)
    read_gbs = 20.0             # the second group then takes 3e6 / 20e9 = 150 us
    assert decode_bandwidth.ceiling_rate(groups, in_cache, read_gbs) == pytest.approx(
        4e6 / (100e-6 + 150e-6) / 1e9)
    assert decode_bandwidth.in_cache_rate(groups, in_cache) == pytest.approx(
        4e6 / 150e-6 / 1e9)


@pytest.mark.parametrize("model", ["smollm2_path", "gemma3_path"])
def test_cold_start_counts_the_kv_rows_the_model_writes(model, request):
    """cold_start's memory budget counts, per token, the bytes of the K and V rows the
    loaded model keeps in its caches."""
    import cold_start
    from llmcli.model import load

    path = request.getfixturevalue(model)
    loaded = load(path, n_ctx=8, threads=1)
    per_token = sum(c.nbytes // loaded.n_ctx for c in loaded.k_cache + loaded.v_cache)
    assert cold_start.kv_bytes_per_token(path) == per_token


def test_cold_start_fails_in_one_line_on_an_unknown_model():
    import subprocess

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "cold_start.py"
    done = subprocess.run([sys.executable, str(script), "--models", "nosuch", "-r", "1"],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "cold_start.py: unknown model 'nosuch'; known models: smollm2, gemma3 "
        "(or give a path to a .gguf file)"]
