"""The ops kernels (llmcli._kernels: rmsnorm, rope, softmax, swiglu, geglu_tanh,
attention) against plain NumPy formulas computed in float64 (llmcli.ops_ref), and rope
and attention also against independent formulations written here (complex rotation;
per-query loops over explicitly listed visible rows). Every kernel test runs on both
vector paths: AVX2 (when the CPU has it) and the portable scalar twin.

Tolerances: the kernels compute in float32 with double sums, so they sit within a few
float32 ulps of the float64 formula on O(1) data: rtol 1e-5 (elementwise ops, rope),
atol 2e-5 on attention outputs and probabilities.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from llmcli import _kernels as K
from llmcli import ops_ref

F32 = np.float32


@pytest.fixture(autouse=True, params=["avx2", "scalar"])
def simd_path(request):
    """Each test runs on both kernel paths (set_kernel_path switches every kernel)."""
    default = K.kernel_path()
    try:
        K.set_kernel_path(request.param)
    except ValueError:
        pytest.skip("this CPU has no AVX2+FMA+F16C")
    yield request.param
    K.set_kernel_path(default)


def rng(seed=0):
    return np.random.default_rng(seed)


def f64(a):
    return np.asarray(a, dtype=np.float64)


# ---- rmsnorm -----------------------------------------------------------------------

@pytest.mark.parametrize("n, d", [(1, 576), (7, 640), (3, 13), (512, 576), (36, 256)])
def test_rmsnorm_matches_formula(n, d):
    x = rng(1).normal(size=(n, d)).astype(F32) * 3
    w = rng(2).normal(size=d).astype(F32)
    out = np.empty_like(x)
    K.rmsnorm(x, w, 1e-6, out)
    np.testing.assert_allclose(out, ops_ref.rmsnorm(f64(x), f64(w), 1e-6), rtol=1e-5, atol=1e-6)


def test_rmsnorm_in_place_and_eps_dominates_tiny_rows():
    x = np.full((2, 64), 1e-4, dtype=F32)
    x[1] = rng(3).normal(size=64)
    w = np.ones(64, dtype=F32)
    expected = ops_ref.rmsnorm(f64(x), f64(w), 1e-5)
    K.rmsnorm(x, w, 1e-5, x)  # out is x
    # row 0: 1e-4 / sqrt(1e-8 + 1e-5) ~= 0.0316, eps matters
    np.testing.assert_allclose(x, expected, rtol=1e-5)
    assert abs(x[0, 0] - 1e-4 / np.sqrt(1e-8 + 1e-5)) < 1e-6


def test_rmsnorm_per_head_norm_via_reshape():
    n_tok, n_heads, hd = 5, 4, 256
    q = rng(4).normal(size=(n_tok, n_heads * hd)).astype(F32)
    w = rng(5).normal(size=hd).astype(F32)
    heads = f64(q).reshape(n_tok, n_heads, hd)
    expected = heads / np.sqrt((heads**2).mean(-1, keepdims=True) + 1e-6) * w
    flat = q.reshape(n_tok * n_heads, hd)  # a view of q: normalised in place
    K.rmsnorm(flat, w, 1e-6, flat)
    np.testing.assert_allclose(q, expected.reshape(n_tok, -1), rtol=1e-5, atol=1e-6)


# ---- rope --------------------------------------------------------------------------

def rope_by_complex_rotation(x, pos, n_heads, head_dim, base, neox):
    """Independent formulation: each pair is a complex number multiplied by e^(i angle)."""
    half = head_dim // 2
    heads = f64(x).reshape(len(x), n_heads, head_dim)
    if neox:
        z = heads[..., :half] + 1j * heads[..., half:]
    else:
        z = heads.view(np.complex128)  # adjacent (re, im) pairs
    freq = np.array([base ** (-(2 * i) / head_dim) for i in range(half)])
    z = z * np.exp(1j * np.outer(pos, freq))[:, None, :]
    if neox:
        out = np.concatenate([z.real, z.imag], axis=-1)
    else:
        out = z.view(np.float64).reshape(heads.shape)
    return out.reshape(x.shape)


@pytest.mark.parametrize("neox", [False, True])
@pytest.mark.parametrize("n_heads, head_dim, base", [(9, 64, 1e5), (4, 256, 1e6), (1, 256, 1e4), (3, 6, 1e4)])
def test_rope_matches_formula_and_complex_rotation(neox, n_heads, head_dim, base):
    pos = np.array([0, 1, 2, 17, 511, 4095, 8191], dtype=np.int32)
    x = rng(6).normal(size=(len(pos), n_heads * head_dim)).astype(F32)
    expected = rope_by_complex_rotation(x, pos, n_heads, head_dim, base, neox)
    np.testing.assert_allclose(ops_ref.rope(f64(x), pos, n_heads, head_dim, base, neox),
                               expected, rtol=0, atol=1e-12)
    K.rope(x, pos, n_heads, head_dim, base, neox)
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=2e-6)


def test_rope_position_zero_is_identity_and_pairing_differs():
    x = rng(7).normal(size=(2, 64)).astype(F32)
    original = x.copy()
    K.rope(x[:1], np.array([0], dtype=np.int32), 1, 64, 1e4, False)
    np.testing.assert_array_equal(x[0], original[0])
    normal, neox = original[1:].copy(), original[1:].copy()
    K.rope(normal, np.array([5], dtype=np.int32), 1, 64, 1e4, False)
    K.rope(neox, np.array([5], dtype=np.int32), 1, 64, 1e4, True)
    assert np.abs(normal - neox).max() > 0.1  # the two conventions are not interchangeable


@pytest.mark.parametrize("neox", [False, True])
def test_rope_long_positions_stay_accurate(neox):
    # At pos 30000 an angle computed in float32 is off by ~2e-3 rad, which would show
    # here as errors ~2e-3 * |x|; the kernel must stay at float32 rounding level.
    pos = np.array([30000, 32767], dtype=np.int32)
    x = rng(8).normal(size=(2, 4 * 256)).astype(F32)
    expected = rope_by_complex_rotation(x, pos, 4, 256, 1e6, neox)
    K.rope(x, pos, 4, 256, 1e6, neox)
    np.testing.assert_allclose(x, expected, rtol=0, atol=5e-6)


# ---- softmax -----------------------------------------------------------------------

@pytest.mark.parametrize("n, d", [(1, 49152), (3, 7), (16, 512), (2, 262144)])
def test_softmax_matches_formula(n, d):
    x = (rng(9).normal(size=(n, d)) * 8 + 1000).astype(F32)  # large offset: needs the max shift
    expected = ops_ref.softmax(f64(x))
    K.softmax(x)
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-5)


def test_softmax_with_masked_entries():
    x = np.array([[0.0, -np.inf, 2.0, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf, 1.0]], F32)
    expected = ops_ref.softmax(f64(x))
    K.softmax(x)
    assert np.all(x[0, [1, 3, 4, 5, 6, 7]] == 0)
    np.testing.assert_allclose(x, expected, rtol=1e-6)


# ---- gated activations -------------------------------------------------------------

def gate_inputs(n, f):
    gate = rng(10).normal(size=(n, f)).astype(F32) * 4
    gate[0, :9] = [0, -0.0, 1e-8, -100, 100, -87.5, 88.5, -1e4, 1e4]  # extremes of exp
    up = rng(11).normal(size=(n, f)).astype(F32)
    return gate, up


@pytest.mark.parametrize("kernel, reference", [(K.swiglu, ops_ref.swiglu),
                                               (K.geglu_tanh, ops_ref.geglu_tanh)])
@pytest.mark.parametrize("n, f", [(1, 1536), (1, 2048), (5, 13), (512, 2048)])
def test_gated_activations_match_formula(kernel, reference, n, f):
    gate, up = gate_inputs(n, f)
    out = np.empty_like(gate)
    kernel(gate, up, out)
    np.testing.assert_allclose(out, reference(f64(gate), f64(up)), rtol=1e-5, atol=1e-6)
    kernel(gate, up, gate)  # out may alias gate
    np.testing.assert_array_equal(gate, out)


def test_gelu_tanh_known_values():
    # GELU tanh approximation at 1 and -1: 0.8411920, -0.1588080 (0.5x(1+tanh(...)))
    gate = np.array([[1.0, -1.0, 0.0, 3.0]], F32)
    out = np.empty_like(gate)
    K.geglu_tanh(gate, np.ones_like(gate), out)
    np.testing.assert_allclose(out[0], [0.8411920, -0.1588080, 0.0, 2.9963627], atol=1e-6)


# ---- attention ---------------------------------------------------------------------

def attention_inputs(n_tok, n_ctx, n_heads, n_kv, hd, start, seed=12, spread=1.0):
    r = rng(seed)
    q = (r.normal(size=(n_tok, n_heads * hd)) * spread).astype(F32)
    k_cache = r.normal(size=(n_ctx, n_kv * hd)).astype(F32)
    v_cache = r.normal(size=(n_ctx, n_kv * hd)).astype(F32)
    q_pos = np.arange(start, start + n_tok, dtype=np.int32)
    return q, k_cache, v_cache, q_pos


def run_attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, scale, window, with_probs=False):
    out = np.full_like(q, np.nan)
    probs = None
    if with_probs:
        probs = np.full((n_heads, len(q), int(q_pos.max()) + 1), np.nan, dtype=F32)
    K.attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, scale, window, out, probs)
    return out, probs


def attention_by_explicit_rows(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, scale, window):
    """Independent formulation: KV heads repeated per query head (as transformers'
    repeat_kv), and for each query a Python list of the rows it may see."""
    group = n_heads // n_kv
    keys = np.repeat(f64(k_cache).reshape(len(k_cache), n_kv, hd), group, axis=1)
    values = np.repeat(f64(v_cache).reshape(len(v_cache), n_kv, hd), group, axis=1)
    out = np.zeros((len(q), n_heads, hd))
    for t, p in enumerate(q_pos):
        rows = [j for j in range(p + 1) if window == 0 or p - j < window]
        for h in range(n_heads):
            qh = f64(q[t]).reshape(n_heads, hd)[h]
            scores = np.array([qh @ keys[j, h] * scale for j in rows])
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            out[t, h] = sum(w * values[j, h] for w, j in zip(weights, rows))
    return out.reshape(len(q), n_heads * hd)


SHAPES = {  # n_heads, n_kv_heads, head_dim
    "smollm2": (9, 3, 64),
    "gemma3": (4, 1, 256),
    "mha-odd-dim": (2, 2, 20),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("window", [0, 5])
@pytest.mark.parametrize("with_probs", [False, True])
def test_attention_matches_reference_and_explicit_rows(shape, window, with_probs):
    n_heads, n_kv, hd = SHAPES[shape]
    args = attention_inputs(6, 24, n_heads, n_kv, hd, start=11)
    scale = 1 / np.sqrt(hd)
    explicit = attention_by_explicit_rows(*args, n_heads, n_kv, hd, scale, window)
    ref_out, ref_probs = ops_ref.attention(*map(f64, args[:3]), args[3], n_heads, n_kv, hd, scale, window)
    np.testing.assert_allclose(ref_out, explicit, rtol=0, atol=1e-12)

    out, probs = run_attention(*args, n_heads, n_kv, hd, scale, window, with_probs)
    np.testing.assert_allclose(out, explicit, rtol=0, atol=2e-5)
    if with_probs:
        np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=2e-6)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_attention_of_a_query_is_the_same_alone_or_in_a_batch(shape):
    """A prefill tile sums the V rows of several queries in one pass (queries that see the
    same rows); a decode step has one token. Each query's output must not depend on which
    others share its pass: bit-identical, so chunking a prompt never changes logits."""
    n_heads, n_kv, hd = SHAPES[shape]
    q, k_cache, v_cache, q_pos = attention_inputs(37, 200, n_heads, n_kv, hd, start=150, seed=21)
    scale = 1 / np.sqrt(hd)
    batched, _ = run_attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, scale, 0)
    for t in range(len(q)):
        alone, _ = run_attention(q[t:t + 1], k_cache, v_cache, q_pos[t:t + 1], n_heads, n_kv, hd,
                                 scale, 0)
        np.testing.assert_array_equal(alone[0], batched[t], err_msg=f"token {t}")


def head_major(cache, n_kv, hd):
    """A token-major cache [n_ctx, n_kv * hd] as the forward keeps it: [n_kv, n_ctx, hd]."""
    return np.ascontiguousarray(cache.reshape(len(cache), n_kv, hd).transpose(1, 0, 2))


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("n_tok, n_ctx, start, window",
                         [(1, 700, 650, 0), (6, 24, 11, 5), (1, 3000, 2999, 512), (37, 300, 200, 0)])
@pytest.mark.parametrize("with_probs", [False, True])
def test_attention_reads_head_major_caches_as_token_major(shape, n_tok, n_ctx, start, window,
                                                          with_probs):
    """The same arithmetic over either layout: bit-identical outputs and weights, for a
    decode step (split over the threads), a prefill batch and a sliding window."""
    n_heads, n_kv, hd = SHAPES[shape]
    q, k_cache, v_cache, q_pos = attention_inputs(n_tok, n_ctx, n_heads, n_kv, hd, start, seed=5)
    scale = 1 / np.sqrt(hd)
    want = run_attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, scale, window, with_probs)
    got = run_attention(q, head_major(k_cache, n_kv, hd), head_major(v_cache, n_kv, hd), q_pos,
                        n_heads, n_kv, hd, scale, window, with_probs)
    np.testing.assert_array_equal(got[0], want[0])
    if with_probs:
        np.testing.assert_array_equal(got[1], want[1])


def test_attention_checks_head_major_shapes():
    q, k_cache, v_cache, q_pos = attention_inputs(1, 8, 4, 2, 16, start=7)
    out = np.empty_like(q)
    k3, v3 = head_major(k_cache, 2, 16), head_major(v_cache, 2, 16)
    with pytest.raises(ValueError, match="k_cache has shape"):
        K.attention(q, k3, v3, q_pos, 4, 1, 16, 0.25, 0, out)
    with pytest.raises(ValueError, match="v_cache must be a C-contiguous float32 array with 3"):
        K.attention(q, k3, v_cache, q_pos, 4, 2, 16, 0.25, 0, out)


@pytest.mark.parametrize("n_ctx, window", [(700, 0), (5000, 0), (5000, 512)])
def test_attention_long_context_with_rising_scores(n_ctx, window):
    # Keys grow along the cache so each block raises the running max: the rescaling of
    # what was accumulated is exercised, with scores up to ~60 (max-subtraction needed).
    n_heads, n_kv, hd = 4, 1, 256
    q, k_cache, v_cache, _ = attention_inputs(2, n_ctx, n_heads, n_kv, hd, start=0, seed=13)
    k_cache *= np.linspace(0.2, 4.0, n_ctx, dtype=F32)[:, None]
    q_pos = np.array([n_ctx - 1, n_ctx // 2 + 3], dtype=np.int32)
    scale = 1 / 16
    ref_out, ref_probs = ops_ref.attention(f64(q), f64(k_cache), f64(v_cache), q_pos, n_heads, n_kv, hd, scale, window)
    out, _ = run_attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, scale, window)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=2e-5)
    out_p, probs = run_attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, scale, window, True)
    np.testing.assert_allclose(out_p, ref_out, rtol=0, atol=2e-5)
    np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=2e-6)


def test_attention_gqa_head_mapping():
    # V of KV head g is the constant g + 1: head h must output h // group + 1 everywhere.
    n_heads, n_kv, hd = 9, 3, 64
    q, k_cache, v_cache, q_pos = attention_inputs(4, 10, n_heads, n_kv, hd, start=3)
    v_cache[:] = np.repeat(np.arange(1, n_kv + 1, dtype=F32), hd)
    out, _ = run_attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, 0.125, 0)
    expected = np.repeat(np.arange(n_heads) // (n_heads // n_kv) + 1, hd).astype(F32)
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), rtol=1e-6)


def test_attention_window_one_sees_only_itself():
    n_heads, n_kv, hd = 4, 2, 16
    q, k_cache, v_cache, q_pos = attention_inputs(5, 12, n_heads, n_kv, hd, start=7)
    out, probs = run_attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, 0.25, 1, True)
    for t, p in enumerate(q_pos):
        for h in range(n_heads):
            kv = h // 2
            np.testing.assert_array_equal(out[t, h * hd:(h + 1) * hd], v_cache[p, kv * hd:(kv + 1) * hd])
            expected_row = np.zeros(probs.shape[2], F32)
            expected_row[p] = 1
            np.testing.assert_array_equal(probs[h, t], expected_row)


def test_attention_window_boundary():
    # p - j == window - 1 is visible, p - j == window is not; window >= p + 1 is no window.
    n_heads, n_kv, hd, window = 2, 1, 32, 8
    q, k_cache, v_cache, _ = attention_inputs(5, 40, n_heads, n_kv, hd, start=0)
    q_pos = np.array([window - 1, window, window + 1, 20, 39], np.int32)
    _, probs = run_attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, 0.2, window, True)
    for t, p in enumerate(q_pos):
        first_visible = max(p - window + 1, 0)
        assert np.all(probs[:, t, first_visible:p + 1] > 0)
        assert np.all(probs[:, t, :first_visible] == 0)
        assert np.all(probs[:, t, p + 1:] == 0)
    full, _ = run_attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, 0.2, 0)
    for wide in (int(q_pos.max()) + 1, 1000):
        windowed, _ = run_attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, 0.2, wide)
        np.testing.assert_array_equal(windowed, full)


def test_attention_probs_rows_sum_to_one_and_are_causal():
    n_heads, n_kv, hd = 9, 3, 64
    q, k_cache, v_cache, q_pos = attention_inputs(7, 64, n_heads, n_kv, hd, start=0)
    probs = np.full((n_heads, 7, 30), np.nan, F32)  # wider than needed: tail must be zero
    out = np.empty_like(q)
    K.attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, 0.125, 0, out, probs)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, atol=1e-5)
    later = np.arange(30)[None, :] > q_pos[:, None]
    assert np.all(probs[:, later] == 0)
    assert np.all(probs[:, ~later] > 0)


@pytest.mark.parametrize("shape", ["smollm2", "gemma3"])
def test_prefill_equals_token_by_token_decode(shape):
    n_heads, n_kv, hd = SHAPES[shape]
    n_tok, start, window = 70, 37, 64
    q, k_cache, v_cache, q_pos = attention_inputs(n_tok, 200, n_heads, n_kv, hd, start=start)
    for w in (0, window):
        prefill, _ = run_attention(q, k_cache, v_cache, q_pos, n_heads, n_kv, hd, 0.1, w)
        for t in range(n_tok):
            step, _ = run_attention(q[t:t + 1], k_cache, v_cache, q_pos[t:t + 1], n_heads, n_kv, hd, 0.1, w)
            # same math; only the grouping of rows into blocks (rounding) may differ
            np.testing.assert_allclose(step[0], prefill[t], rtol=0, atol=1e-6)


# ---- thread counts -------------------------------------------------------------
# How a call is shared out depends on the thread count (OpenMP reads it once per
# process), so these run the kernel in a child process with OMP_NUM_THREADS set.

CHILD_PRELUDE = """
import sys
import numpy as np
from llmcli import _kernels as K
K.set_kernel_path(sys.argv[1])
r = np.random.default_rng(14)
result = {}
"""


def run_in_child(tmp_path, threads, simd_path, body):
    """Run body (Python with K, np, r in scope, filling the dict `result`) in a child
    process with OMP_NUM_THREADS=threads; returns `result`."""
    code = CHILD_PRELUDE + textwrap.dedent(body) + "\nnp.savez(sys.argv[2], **result)\n"
    result_file = tmp_path / "result.npz"
    # the child imports the same llmcli as this process (installed or built in place)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(K.__file__)))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=package_parent)
    subprocess.run([sys.executable, "-c", code, simd_path, str(result_file)],
                   env=env, cwd=tmp_path, check=True)
    return dict(np.load(result_file))


@pytest.mark.parametrize("threads", [1, 3, 8])
@pytest.mark.parametrize("shape, n_ctx, window", [("smollm2", 4096, 0), ("gemma3", 3000, 0),
                                                  ("gemma3", 3000, 512)])
def test_decode_step_split_over_threads(simd_path, tmp_path, threads, shape, n_ctx, window):
    # A decode step has fewer tiles than threads, so its cache rows are split into
    # chunks whose partial softmaxes are merged; the result must not depend on that.
    n_heads, n_kv, hd = SHAPES[shape]
    data = run_in_child(tmp_path, threads, simd_path, f"""
        q = r.normal(size=(1, {n_heads * hd})).astype(np.float32)
        k_cache = r.normal(size=({n_ctx}, {n_kv * hd})).astype(np.float32)
        v_cache = r.normal(size=({n_ctx}, {n_kv * hd})).astype(np.float32)
        out = np.empty_like(q)
        K.attention(q, k_cache, v_cache, np.array([{n_ctx - 1}], np.int32), {n_heads}, {n_kv},
                    {hd}, {hd ** -0.5}, {window}, out)
        result.update(q=q, k_cache=k_cache, v_cache=v_cache, out=out)
    """)
    expected, _ = ops_ref.attention(f64(data["q"]), f64(data["k_cache"]), f64(data["v_cache"]),
                                    np.array([n_ctx - 1]), n_heads, n_kv, hd, hd ** -0.5, window)
    np.testing.assert_allclose(data["out"], expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("threads", [1, 3])
def test_softmax_of_wide_rows_split_over_threads(simd_path, tmp_path, threads):
    # with few rows, each row (a vocabulary of logits) is split over the threads
    data = run_in_child(tmp_path, threads, simd_path, """
        x = (r.normal(size=(2, 262144)) * 8).astype(np.float32)
        result["x"] = x.copy()
        K.softmax(x)
        result["out"] = x
    """)
    np.testing.assert_allclose(data["out"], ops_ref.softmax(f64(data["x"])), rtol=1e-5, atol=1e-9)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc (Linux)")
@pytest.mark.parametrize("threads", [1, 2])
def test_ops_use_the_thread_count_set_for_matmul(simd_path, tmp_path, threads):
    # set_threads (the --threads option) must bound the ops' OpenMP teams too: count the
    # OS threads of a child process (OpenMP default 4) before and after large calls
    data = run_in_child(tmp_path, 4, simd_path, f"""
        import os
        K.set_threads({threads})
        before = len(os.listdir("/proc/self/task"))
        q = r.normal(size=(1, 1024)).astype(np.float32)
        k_cache = r.normal(size=(4096, 256)).astype(np.float32)
        out = np.empty_like(q)
        K.attention(q, k_cache, k_cache, np.array([4095], np.int32), 4, 1, 256, 0.0625, 0, out)
        x = r.normal(size=(512, 2048)).astype(np.float32)
        K.swiglu(x, x, x)
        K.rmsnorm(x, x[0].copy(), 1e-6, x)
        K.softmax(x[:1].copy())
        result["new_threads"] = np.array(len(os.listdir("/proc/self/task")) - before)
    """)
    assert data["new_threads"] == threads - 1


# ---- argument checks ---------------------------------------------------------------

def _bad_calls():
    x = np.zeros((2, 8), F32)
    w = np.zeros(8, F32)
    pos = np.zeros(2, np.int32)
    q, k_cache, v_cache, q_pos = attention_inputs(2, 6, 4, 2, 8, start=2)
    out = np.empty_like(q)

    def attn(**change):
        a = dict(q=q, k_cache=k_cache, v_cache=v_cache, q_pos=q_pos, n_heads=4, n_kv_heads=2,
                 head_dim=8, scale=0.3, window=0, out=out, probs=None)
        a.update(change)
        return lambda: K.attention(**a)

    return {
        "rmsnorm w length": lambda: K.rmsnorm(x, np.zeros(7, F32), 1e-5, x),
        "rmsnorm out shape": lambda: K.rmsnorm(x, w, 1e-5, np.zeros((3, 8), F32)),
        "rmsnorm float64": lambda: K.rmsnorm(x.astype(np.float64), w, 1e-5, x),
        "rmsnorm non-contiguous": lambda: K.rmsnorm(np.zeros((2, 16), F32)[:, ::2], w, 1e-5, x),
        "rope width": lambda: K.rope(x, pos, 3, 2, 1e4, False),
        "rope odd head_dim": lambda: K.rope(np.zeros((2, 9), F32), pos, 3, 3, 1e4, False),
        "rope pos length": lambda: K.rope(x, np.zeros(3, np.int32), 1, 8, 1e4, False),
        "rope pos int64": lambda: K.rope(x, np.zeros(2, np.int64), 1, 8, 1e4, False),
        "rope base": lambda: K.rope(x, pos, 1, 8, 0.0, False),
        "rope head_dim too big": lambda: K.rope(np.zeros((1, 1024), F32), pos[:1], 1, 1024, 1e4, False),
        "softmax 1-D": lambda: K.softmax(w),
        "softmax empty rows": lambda: K.softmax(np.zeros((2, 0), F32)),
        "swiglu up shape": lambda: K.swiglu(x, np.zeros((2, 7), F32), x),
        "geglu out shape": lambda: K.geglu_tanh(x, x, np.zeros((1, 8), F32)),
        "attention heads not multiple": attn(n_kv_heads=3),
        "attention q width": attn(head_dim=4),
        "attention v shape": attn(v_cache=v_cache[:5]),
        "attention pos beyond cache": attn(q_pos=np.array([2, 6], np.int32)),
        "attention negative pos": attn(q_pos=np.array([-1, 2], np.int32)),
        "attention out shape": attn(out=out[:1]),
        "attention negative window": attn(window=-1),
        "attention probs too short": attn(probs=np.zeros((4, 2, 3), F32)),
        "attention probs heads": attn(probs=np.zeros((2, 2, 6), F32)),
    }


def test_read_only_inputs_are_accepted_read_only_outputs_are_not():
    # norm weights are read-only views of the memory-mapped GGUF file
    x = rng(15).normal(size=(2, 64)).astype(F32)
    w = np.ones(64, F32)
    w.setflags(write=False)
    out = np.empty_like(x)
    K.rmsnorm(x, w, 1e-6, out)
    np.testing.assert_allclose(out, ops_ref.rmsnorm(f64(x), 1.0, 1e-6), rtol=1e-5)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        K.rmsnorm(x, w, 1e-6, out)


@pytest.mark.parametrize("case", list(_bad_calls()))
def test_bad_arguments_raise_value_error(case):
    with pytest.raises(ValueError):
        _bad_calls()[case]()
