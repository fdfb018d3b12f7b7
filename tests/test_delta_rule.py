import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perflab.delta_rule as dr
from perflab import variants
from perflab.delta_rule import _delta_rule

from .jaxpr_tools import primitive_counts, primitive_eqns

EAGER = ["jax_scan", "jax_chunked", "torch_recurrent", "torch_chunked", "cython", "cython_chunked"]


def _inputs(rng, batch=2, heads=3, seq=37, dk=8, dv=None, dtype=np.float64):
    dv = dk if dv is None else dv
    q, k = (rng.normal(size=(batch, heads, seq, dk)) for _ in range(2))
    v = rng.normal(size=(batch, heads, seq, dv))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)  # the usual normalisation: keeps S bounded
    beta = rng.random((batch, heads, seq))
    return tuple(x.astype(dtype) for x in (q, k, v, beta))


def _run(variant, args, **kwargs):
    if variant.startswith("torch"):
        torch = pytest.importorskip("torch", reason="the torch variants need torch (the 'torch' extra)")
        args = [torch.from_numpy(x) for x in args]
    out = dr.delta_rule(*args, variant=variant, return_state=True, **kwargs)
    return tuple(np.asarray(x) for x in out)


def _check(out, ref, rtol):
    o, s = out
    o_ref, s_ref = ref
    assert o.shape == o_ref.shape and s.shape == s_ref.shape
    np.testing.assert_allclose(o, o_ref, rtol=rtol, atol=rtol * np.abs(o_ref).max())
    np.testing.assert_allclose(s, s_ref, rtol=rtol, atol=rtol * np.abs(s_ref).max())


def test_reference_matches_closed_form(rng):
    # Orthonormal keys and beta = 1: each token overwrites nothing, so S_t = sum_{s<=t} k_s v_s^T
    # and o_t = dk**-0.5 sum_{s<=t} (q_t . k_s) v_s.
    seq, dk, dv = 6, 8, 5
    k = np.linalg.qr(rng.normal(size=(dk, dk)))[0][:seq]
    q, v = rng.normal(size=(seq, dk)), rng.normal(size=(seq, dv))
    o, s = dr.reference_delta_rule(q[None, None], k[None, None], v[None, None], np.ones((1, 1, seq)))
    expected = dk**-0.5 * np.tril(q @ k.T) @ v
    np.testing.assert_allclose(o[0, 0], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s[0, 0], k.T @ v, rtol=1e-12, atol=1e-12)
    # Storing the same key twice with beta = 1 replaces its value: the delta rule's point.
    k2 = np.stack([k[0], k[0]])[None, None]
    v2 = rng.normal(size=(1, 1, 2, dv))
    _, s2 = dr.reference_delta_rule(np.zeros_like(k2), k2, v2, np.ones((1, 1, 2)))
    np.testing.assert_allclose(k[0] @ s2[0, 0], v2[0, 0, 1], rtol=1e-12)


@pytest.mark.parametrize("variant", EAGER)
@pytest.mark.parametrize("chunk_size", [8, 5, 64])
def test_float64_matches_reference(variant, chunk_size, rng):
    # 37 tokens: 8 and 5 do not divide the sequence, 64 exceeds it (clamped to 37).
    args = _inputs(rng)
    _check(_run(variant, args, chunk_size=chunk_size), dr.reference_delta_rule(*args), 1e-10)


@pytest.mark.parametrize("variant", EAGER)
def test_float32_matches_reference(variant, rng):
    args = _inputs(rng, batch=1, heads=2, seq=200, dk=64, dtype=np.float32)
    out = _run(variant, args, chunk_size=48)
    assert out[0].dtype == np.float32 and out[1].dtype == np.float32
    _check(out, dr.reference_delta_rule(*args), 1e-4)


def _cxx():
    import os

    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++")


# Skips only for what torch.compile's inductor backend needs and this package does not provide:
# torch itself and a C++ compiler. Any other failure of the variant is a failure of the test.
@pytest.mark.skipif(_cxx() is None, reason="torch.compile (inductor, CPU) needs a C++ compiler: none on PATH")
def test_torch_compiled_matches_reference(rng):
    torch = pytest.importorskip("torch", reason="torch_compiled needs torch (the 'torch' extra)")
    args = _inputs(rng, batch=1, heads=2, seq=21, dk=4, dv=3)
    out = _run("torch_compiled", args, chunk_size=8)
    _check(out, dr.reference_delta_rule(*args), 1e-10)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # both steps were compiled


@pytest.mark.parametrize("variant", ["jax_scan", "jax_chunked", "cython", "cython_chunked", "torch_chunked"])
def test_rectangular_heads_and_edge_lengths(variant, rng):
    for seq in (1, 3, 16):
        args = _inputs(rng, batch=1, heads=2, seq=seq, dk=5, dv=7)
        _check(_run(variant, args, chunk_size=4), dr.reference_delta_rule(*args), 1e-10)


def test_jax_variants_jit_and_differ(rng):
    args = tuple(jnp.asarray(x) for x in _inputs(rng, seq=20))
    fns = {v: (lambda *a, v=v: dr.delta_rule(*a, variant=v, chunk_size=8)) for v in ("jax_scan", "jax_chunked")}
    np.testing.assert_allclose(
        jax.jit(fns["jax_scan"])(*args), jax.jit(fns["jax_chunked"])(*args), rtol=1e-10, atol=1e-12
    )
    counts = {v: primitive_counts(f, *args) for v, f in fns.items()}
    assert counts["jax_scan"]["triangular_solve"] == 0 and counts["jax_chunked"]["triangular_solve"] == 1
    lengths = {
        v: [e.params["length"] for e in primitive_eqns(jax.make_jaxpr(f)(*args).jaxpr, "scan")] for v, f in fns.items()
    }
    # The per-token scan steps 20 times; the chunked one 3 times (20 tokens padded to 24).
    assert lengths == {"jax_scan": [20], "jax_chunked": [3]}


def test_torch_variants_take_different_paths(rng, monkeypatch):
    torch = pytest.importorskip("torch", reason="the torch variants need torch (the 'torch' extra)")
    calls = {"baddbmm": 0, "solve_triangular": 0}
    real_baddbmm, real_solve = torch.baddbmm, torch.linalg.solve_triangular

    def baddbmm(*a, **k):
        calls["baddbmm"] += 1
        return real_baddbmm(*a, **k)

    def solve_triangular(*a, **k):
        calls["solve_triangular"] += 1
        return real_solve(*a, **k)

    monkeypatch.setattr(torch, "baddbmm", baddbmm)
    monkeypatch.setattr(torch.linalg, "solve_triangular", solve_triangular)
    args = _inputs(rng, seq=12)
    _run("torch_recurrent", args)
    assert calls == {"baddbmm": 12, "solve_triangular": 0}
    _run("torch_chunked", args, chunk_size=4)
    assert calls == {"baddbmm": 12, "solve_triangular": 1}


def test_cython_variants_call_their_kernels(rng, monkeypatch):
    calls = []
    for name in ("recurrent", "chunked"):
        real = getattr(_delta_rule, name)
        monkeypatch.setattr(_delta_rule, name, lambda *a, _n=name, _r=real: calls.append((_n, a[-1])) or _r(*a))
    args = _inputs(rng, seq=10)
    _run("cython", args, num_threads=1)
    _run("cython_chunked", args, chunk_size=4, num_threads=2)
    assert calls == [("recurrent", 1), ("chunked", 2)]


@pytest.mark.parametrize("variant", ["cython", "cython_chunked"])
def test_cython_threads_give_identical_results(variant, rng):
    # Heads are independent and each runs wholly on one thread: results are bitwise equal.
    args = _inputs(rng, batch=3, heads=5, seq=30, dtype=np.float32)
    one = _run(variant, args, chunk_size=8, num_threads=1)
    two = _run(variant, args, chunk_size=8, num_threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_cython_copies_non_contiguous_input(rng):
    args = _inputs(rng, seq=12)
    q = np.asfortranarray(args[0])
    strided_v = np.repeat(args[2], 2, axis=-1)[..., ::2]
    assert not q.flags.c_contiguous and not strided_v.flags.c_contiguous
    ref = dr.reference_delta_rule(*args)
    for variant in ("cython", "cython_chunked"):
        _check(_run(variant, (q, args[1], strided_v, args[3]), chunk_size=5), ref, 1e-10)


def test_torch_variants_accept_numpy(rng):
    torch = pytest.importorskip("torch", reason="the torch variants need torch (the 'torch' extra)")
    args = _inputs(rng, seq=9)
    out = dr.delta_rule(*args, variant="torch_chunked", chunk_size=4)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), dr.reference_delta_rule(*args)[0], rtol=1e-10, atol=1e-12)


def test_recurrent_flops():
    assert dr.recurrent_flops(4, 12, 4096, 64) == 6 * 4 * 12 * 4096 * 64 * 64
    assert dr.recurrent_flops(1, 1, 1, 2, 3) == 36


# ---------------------------------------------------------------- bad input


def _ok(rng):
    return list(_inputs(rng, batch=1, heads=2, seq=6, dk=4))


@pytest.mark.parametrize("variant", ["jax_scan", "jax_chunked", "torch_chunked", "cython", "cython_chunked"])
@pytest.mark.parametrize(
    "index,bad,exc,match",
    [
        (1, np.ones((1, 2, 6, 5)), ValueError, r"k must have the shape of q \(1, 2, 6, 4\)"),
        (2, np.ones((1, 2, 5, 4)), ValueError, r"v must have shape \(1, 2, 6, 'dv'\)"),
        (3, np.ones((1, 2, 6, 1)), ValueError, r"beta must have shape \[batch, heads, seq\] = \(1, 2, 6\)"),
        (3, np.ones((1, 6)), ValueError, "beta must have shape"),
        (0, np.ones((2, 6, 4)), ValueError, r"q must have shape \[batch, heads, seq, dk\]"),
        (0, np.ones((1, 2, 6, 4), np.int64), TypeError, "q must be float32 or float64, got int64"),
        (3, np.ones((1, 2, 6), np.float16), TypeError, "beta must be float32 or float64, got float16"),
        (2, np.ones((1, 2, 6, 4), np.float32), TypeError, "v has dtype float32 but q has float64"),
        (0, [[1.0]], TypeError, "q must be an array or tensor, got list"),
    ],
)
def test_bad_input(variant, index, bad, exc, match, rng):
    args = _ok(rng)
    args[index] = bad
    with pytest.raises(exc, match=match):
        dr.delta_rule(*args, variant=variant)


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True, None])
def test_bad_chunk_size(chunk_size, rng):
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        dr.delta_rule(*_ok(rng), variant="jax_chunked", chunk_size=chunk_size)


@pytest.mark.parametrize("variant", EAGER + ["torch_compiled"])
def test_empty_sequence_is_rejected(variant, rng):
    args = list(_inputs(rng, batch=1, heads=2, seq=0, dk=4))
    if variant.startswith("torch"):
        torch = pytest.importorskip("torch", reason="the torch variants need torch (the 'torch' extra)")
        args = [torch.from_numpy(x) for x in args]
    with pytest.raises(
        ValueError, match=r"seq \(axis 2 of q, k, v and beta\) must be >= 1 token, got q \(1, 2, 0, 4\)"
    ):
        dr.delta_rule(*args, variant=variant)


@pytest.mark.parametrize("variant", ["jax_chunked", "torch_chunked", "cython_chunked"])
def test_huge_chunk_size_is_clamped_to_the_sequence(variant, rng, monkeypatch):
    # 2**40 tokens per chunk would be a 2**81-byte Cython workspace (and overflow its C int),
    # and JAX would pad every input to 2**40 tokens: the chunk is clamped to seq, exactly.
    args = _inputs(rng, seq=11)
    seen = []
    if variant == "cython_chunked":
        real = _delta_rule.chunked
        monkeypatch.setattr(_delta_rule, "chunked", lambda *a, _r=real: seen.append(a[-2]) or _r(*a))
    _check(_run(variant, args, chunk_size=2**40), dr.reference_delta_rule(*args), 1e-10)
    if variant == "cython_chunked":
        assert seen == [11]


def test_jax_chunked_clamped_chunk_scans_once(rng):
    args = tuple(jnp.asarray(x) for x in _inputs(rng, seq=11))
    jaxpr = jax.make_jaxpr(lambda *a: dr.delta_rule(*a, variant="jax_chunked", chunk_size=2**40))(*args).jaxpr
    assert [e.params["length"] for e in primitive_eqns(jaxpr, "scan")] == [1]


def test_bad_variant_and_threads(rng):
    with pytest.raises(ValueError, match="variant='numba' is not a variant of delta_rule.delta_rule"):
        dr.delta_rule(*_ok(rng), variant="numba")
    with pytest.raises(ValueError, match="num_threads must be a positive int or None"):
        dr.delta_rule(*_ok(rng), variant="cython", num_threads=0)


def test_torch_dtype_is_checked(rng):
    torch = pytest.importorskip("torch", reason="the torch variants need torch (the 'torch' extra)")
    args = [torch.from_numpy(x) for x in _ok(rng)]
    args[0] = args[0].to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"q must be float32 or float64, got (torch\.)?bfloat16"):
        dr.delta_rule(*args, variant="torch_recurrent")


def test_registry_lists_every_variant():
    op = variants.get("delta_rule", "delta_rule")
    assert set(op.names) == set(EAGER) | {"torch_compiled"}
    assert (op.baseline, op.optimised) == ("jax_scan", "cython")
