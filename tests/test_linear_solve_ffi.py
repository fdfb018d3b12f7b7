"""The ffi variant: XLA FFI custom calls into C++ kernels over LAPACK (issue 16)."""

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perflab.linear_solve as ls

from .jaxpr_tools import primitive_eqns
from .test_linear_solve import _dense, _problem, _scipy_solve, _shift, heat_jvp_jaxpr

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-3, atol=2e-4)}


def _ffi_calls(fn, *args):
    """Counter of this package's FFI targets, and of every custom call, in the optimised HLO."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    targets = collections.Counter(re.findall(r'custom_call_target="([^"]+)"', text))
    return {k: v for k, v in targets.items() if k.startswith("perflab_")}, targets


def _cast(tree, dtype):
    return None if tree is None else jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a, dtype)), tree)


def _jvp(solver, op, b, top, tb, dtype):
    fn = jax.jit(lambda *a: ls.linear_solve_jvp(solver, *a, variant="ffi"))
    x, tx = fn(_cast(op, dtype), _cast(b, dtype), _cast(top, dtype), _cast(tb, dtype))
    assert x.dtype == dtype and tx.dtype == dtype
    return np.asarray(x, np.float64), np.asarray(tx, np.float64)


def _reference(solver, op, b, top, tb):
    # scipy in float64 on the problem as rounded to the tested dtype's inputs (done by the caller).
    x = _scipy_solve(solver, op, b)
    rhs = (np.zeros_like(b) if tb is None else tb) - (0 if top is None else _dense(solver, top) @ x)
    return x, _scipy_solve(solver, op, rhs)


def _rounded(tree, dtype):
    return (
        None if tree is None else jax.tree_util.tree_map(lambda a: np.asarray(np.asarray(a, dtype), np.float64), tree)
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 3, 20, 100])
@pytest.mark.parametrize("solver", ls.SOLVERS)
@pytest.mark.parametrize("tangents", ["both", "operator", "vector"])
def test_matches_scipy_and_finite_differences(solver, n, dtype, tangents, rng):
    op, b, top, tb = _problem(solver, n, rng)
    top = None if tangents == "vector" else top
    tb = None if tangents == "operator" else tb
    x, tx = _jvp(solver, op, b, top, tb, dtype)
    op, b, top, tb = (_rounded(t, dtype) for t in (op, b, top, tb))
    x_ref, tx_ref = _reference(solver, op, b, top, tb)
    np.testing.assert_allclose(x, x_ref, **TOL[dtype])
    np.testing.assert_allclose(tx, tx_ref, **TOL[dtype])
    # Central finite differences of scipy's solve, in float64.
    h = 1e-6
    top_, tb_ = (jax.tree_util.tree_map(np.zeros_like, op) if top is None else top), (np.zeros(n) if tb is None else tb)
    fd = (
        _scipy_solve(solver, _shift(op, top_, h), b + h * tb_) - _scipy_solve(solver, _shift(op, top_, -h), b - h * tb_)
    ) / (2 * h)
    np.testing.assert_allclose(tx, fd, rtol=max(TOL[dtype]["rtol"], 1e-6), atol=max(TOL[dtype]["atol"], 1e-8))


@pytest.mark.parametrize("solver", ls.SOLVERS)
def test_vmap_batches_inside_one_call(solver, rng):
    problems = [_problem(solver, 10, rng) for _ in range(4)]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs)), *problems)
    fn = jax.vmap(lambda *a: ls.linear_solve_jvp(solver, *a, variant="ffi"))
    x, tx = jax.jit(fn)(*stacked)
    for i, (op, b, top, tb) in enumerate(problems):
        x_ref, tx_ref = _reference(solver, op, b, top, tb)
        np.testing.assert_allclose(x[i], x_ref, **TOL[np.float64])
        np.testing.assert_allclose(tx[i], tx_ref, **TOL[np.float64])
    # The whole batch is one custom call (the kernel loops), not one per system.
    ours, _ = _ffi_calls(fn, *stacked)
    assert ours == {f"perflab_{solver}_jvp": 1}, ours
    # Shared operator, batched right-hand sides (and nested vmap): the kernel broadcasts.
    op, _, top, _ = problems[0]
    bs = jnp.asarray(np.stack([p[1] for p in problems]).reshape(2, 2, 10))
    nested = jax.vmap(
        jax.vmap(
            lambda b: ls.linear_solve_jvp(solver, _cast(op, np.float64), b, _cast(top, np.float64), b, variant="ffi")
        )
    )
    x, tx = jax.jit(nested)(bs)
    for i, j in np.ndindex(2, 2):
        b = np.asarray(bs[i, j])
        x_ref, tx_ref = _reference(solver, op, b, top, b)
        np.testing.assert_allclose(x[i, j], x_ref, **TOL[np.float64])
        np.testing.assert_allclose(tx[i, j], tx_ref, **TOL[np.float64])


@pytest.mark.parametrize("solver", ls.SOLVERS)
def test_jacfwd_over_vector_and_operator(solver, rng):
    op, b, top, _ = _problem(solver, 7, rng)
    jop, jb = _cast(op, np.float64), jnp.asarray(b)
    jac_b = jax.jacfwd(lambda v: ls.linear_solve(solver, jop, v, variant="ffi"))(jb)
    np.testing.assert_allclose(jac_b, np.linalg.inv(_dense(solver, op)), **TOL[np.float64])
    # Along one operator direction: jacfwd over a scalar t of A + t A'.
    d = jax.jacfwd(
        lambda t: ls.linear_solve(
            solver, jax.tree_util.tree_map(lambda a, ta: a + t * ta, jop, _cast(top, np.float64)), jb, variant="ffi"
        )
    )(0.0)
    _, tx_ref = _reference(solver, op, b, top, None)
    np.testing.assert_allclose(d, tx_ref, **TOL[np.float64])


def test_inside_scan_one_call_per_step(rng):
    # Several implicit steps x <- A^-1 x of an LU system inside lax.scan, differentiated along b.
    op, b, _, tb = _problem("lu", 12, rng)
    A = jnp.asarray(op)

    def run(b):
        return jax.lax.scan(lambda x, _: (ls.linear_solve("lu", A, x, variant="ffi"), None), b, None, length=4)[0]

    x, tx = jax.jit(lambda b, tb: jax.jvp(run, (b,), (tb,)))(jnp.asarray(b), jnp.asarray(tb))
    inv = np.linalg.matrix_power(np.linalg.inv(op), 4)
    np.testing.assert_allclose(x, inv @ b, rtol=1e-9)
    np.testing.assert_allclose(tx, inv @ tb, rtol=1e-9)
    ours, _ = _ffi_calls(lambda b, tb: jax.jvp(run, (b,), (tb,)), jnp.asarray(b), jnp.asarray(tb))
    assert ours == {"perflab_lu_jvp_vector": 1}, ours  # one call in the scan body


@pytest.mark.parametrize("solver", ls.SOLVERS)
@pytest.mark.parametrize("with_operator_tangent", [True, False])
def test_one_custom_call_per_jvp(solver, with_operator_tangent, rng):
    args = jax.tree_util.tree_map(jnp.asarray, _problem(solver, 30, rng))

    def jvp(a, b, ta, tb):
        return ls.linear_solve_jvp(solver, a, b, ta if with_operator_tangent else None, tb, variant="ffi")

    ours, every = _ffi_calls(jvp, *args)
    target = f"perflab_{solver}_jvp" if with_operator_tangent else f"perflab_{solver}_jvp_vector"
    assert ours == {target: 1}, ours
    # No LAPACK call of XLA's own: the factorisation and the solves are all in the kernel.
    assert not any(k.startswith("lapack_") for k in every), every
    primal, _ = _ffi_calls(lambda a, b: ls.linear_solve(solver, a, b, variant="ffi"), *args[:2])
    assert primal == {f"perflab_{solver}_solve": 1}, primal


def test_targets_registered_by_the_build():
    from perflab.linear_solve import _ffi, _kernels

    kinds = ("solve", "jvp", "jvp_vector", "factor_solve", "tangent", "tangent_vector", "cotangent", "cotangent_vector")
    expected = {f"perflab_{s}_{k}" for s in ls.SOLVERS for k in kinds}
    expected |= {"perflab_thomas_substitute", "perflab_heat_steps", "perflab_heat_adjoint"}
    assert set(_ffi.TARGETS) == expected and set(_kernels.targets()) == expected
    assert _kernels.lapack_ready()
    # Registered with XLA: a registered name compiles and runs, an unknown one does not.
    x = jnp.ones(3)
    run = jax.ffi.ffi_call("perflab_tridiagonal_solve", jax.ShapeDtypeStruct((3,), x.dtype), vmap_method="expand_dims")
    np.testing.assert_allclose(jax.jit(run)(jnp.zeros(2), 2 * x, jnp.zeros(2), x), 0.5 * x)
    unknown = jax.ffi.ffi_call("perflab_not_a_target", jax.ShapeDtypeStruct((3,), x.dtype))
    with pytest.raises(Exception, match="perflab_not_a_target"):
        jax.jit(unknown)(x)


def test_singular_systems_give_nan_per_system():
    from perflab.linear_solve import _ffi

    # The kernel marks a failed factorisation (LAPACK info > 0) with NaN for that system only;
    # linear_solve then applies the EQX_ON_ERROR convention (tests/test_linear_solve.py).
    good, sing = jnp.eye(3) * 2.0, jnp.zeros((3, 3))
    x = jax.vmap(lambda a: _ffi.ffi_solve("lu", a, jnp.ones(3)))(jnp.stack([good, sing]))
    assert np.all(np.asarray(x[0]) == 0.5) and np.isnan(np.asarray(x[1])).all()
    assert np.isnan(np.asarray(_ffi.ffi_solve("cholesky", -jnp.eye(3), jnp.ones(3)))).all()
    assert np.isnan(
        np.asarray(_ffi.ffi_solve("tridiagonal", (jnp.zeros(2), jnp.zeros(3), jnp.zeros(2)), jnp.ones(3)))
    ).all()


def test_bad_input():
    f16 = jnp.ones(3, jnp.float16)
    with pytest.raises(TypeError, match="variant='ffi' supports float32 and float64"):
        ls.linear_solve("lu", jnp.eye(3, dtype=jnp.float16), f16, variant="ffi")
    with pytest.raises(TypeError, match="vector has dtype float32"):
        ls.linear_solve("lu", jnp.eye(3), jnp.ones(3, jnp.float32), variant="ffi")
    with pytest.raises(ValueError, match=r"vector must have shape \(3,\)"):
        ls.linear_solve_jvp("cholesky", jnp.eye(3), jnp.ones(4), None, jnp.ones(4), variant="ffi")
    with pytest.raises(ValueError, match="operator .* square"):
        ls.linear_solve("lu", jnp.ones((2, 3)), jnp.ones(2), variant="ffi")


def test_other_platforms_raise(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with pytest.raises(ValueError, match="variant='ffi' runs on CPU only.*'gpu'"):
        jax.jit(lambda a, b: ls.linear_solve("lu", a, b, variant="ffi"))(jnp.eye(2), jnp.ones(2))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", ls.SOLVERS)
def test_large_batch_split_over_threads(solver, dtype, rng):
    # Enough distinct systems for the kernel to split the batch over XLA's thread pool (2-D
    # batch: nested vmap, so the chunks start at multi-indices); a singular system in the
    # middle gives NaN for itself only.
    from perflab.linear_solve import _ffi, _kernels

    n, shape = (100, (3, 100)) if solver == "tridiagonal" else (30, (3, 40))
    problems = [_problem(solver, n, rng) for _ in range(int(np.prod(shape)))]
    bad = len(problems) // 2 + 1
    op = problems[bad][0]
    problems[bad] = ((op[0], np.zeros(n), np.zeros(n - 1)) if solver == "tridiagonal" else np.zeros((n, n)),) + tuple(
        problems[bad][1:]
    )
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs).reshape(*shape, *xs[0].shape), *problems)

    # The kernel's own JVP (x, ok) with its per-system flag; linear_solve would raise here.
    def jvp(op, b, top, tb):
        (x, ok), (tx, _) = jax.jvp(lambda o, v: _ffi.ffi_solve_flagged(solver, o, v), (op, b), (top, tb))
        return x, tx, ok

    before = _kernels.chunked_calls()
    x, tx, ok = jax.jit(jax.vmap(jax.vmap(jvp)))(*_cast(stacked, dtype))
    assert _kernels.chunked_calls() == before + 1
    x, tx = np.asarray(x, np.float64).reshape(-1, n), np.asarray(tx, np.float64).reshape(-1, n)
    np.testing.assert_array_equal(np.asarray(ok).ravel(), [0 if i == bad else 1 for i in range(len(problems))])
    for i, (op, b, top, tb) in enumerate(problems):
        if i == bad:
            assert np.isnan(x[i]).all() and np.isnan(tx[i]).all()
            continue
        op, b, top, tb = (_rounded(t, dtype) for t in (op, b, top, tb))
        x_ref, tx_ref = _reference(solver, op, b, top, tb)
        np.testing.assert_allclose(x[i], x_ref, **TOL[dtype])
        np.testing.assert_allclose(tx[i], tx_ref, **TOL[dtype])


def test_small_batch_and_shared_operator_stay_on_one_thread(rng):
    from perflab.linear_solve import _kernels

    problems = [_problem("lu", 10, rng) for _ in range(4)]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs)), *problems)
    before = _kernels.chunked_calls()
    jax.jit(jax.vmap(lambda *a: ls.linear_solve_jvp("lu", *a, variant="ffi")))(*stacked)
    # 300 right-hand sides of one operator: plenty of work, but factorised once on one thread.
    op = jnp.asarray(_problem("lu", 60, rng)[0])
    bs = jnp.asarray(rng.normal(size=(300, 60)))
    x = jax.jit(jax.vmap(lambda b: ls.linear_solve("lu", op, b, variant="ffi")))(bs)
    np.testing.assert_allclose(x, np.linalg.solve(np.asarray(op), np.asarray(bs).T).T, **TOL[np.float64])
    assert _kernels.chunked_calls() == before


@pytest.mark.parametrize("wrt", ["initial", "diffusivity"])
def test_heat_factor_once_ffi_substitutes_in_one_call_per_step(wrt):
    # factor_once_ffi is factor_once with the substitution scans replaced by one custom call:
    # the factorisation once, outside the time loop; inside it exactly one perflab call per step
    # and no scan over the grid; u_1 before and u'_steps after the pipelined loop (diffusivity).
    n, steps = 16, 5
    jaxpr = heat_jvp_jaxpr("factor_once_ffi", wrt, n, steps)
    length = steps if wrt == "initial" else steps - 1
    loops = [e for e in primitive_eqns(jaxpr, "scan") if e.params["length"] == length]
    assert len(loops) == 1
    body = loops[0].params["jaxpr"].jaxpr
    calls = primitive_eqns(body, "ffi_call")
    assert [e.params["target_name"] for e in calls] == ["perflab_thomas_substitute"]
    assert calls[0].outvars[0].aval.shape == (n, 2)
    assert primitive_eqns(body, "scan") == []
    everywhere = [e.params["target_name"] for e in primitive_eqns(jaxpr, "ffi_call")]
    assert everywhere == ["perflab_thomas_substitute"] * (1 if wrt == "initial" else 3)


def test_heat_factor_once_ffi_is_cpu_only(monkeypatch):
    u0, k = jnp.ones(8), jnp.asarray(1.0)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with pytest.raises(ValueError, match="variant='factor_once_ffi' runs on CPU only"):
        jax.jit(lambda u, kk: ls.heat_solve(u, kk, steps=3, variant="factor_once_ffi"))(u0, k)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [3, 4, 50])
def test_tridiagonal_batch_groups_match_single_systems_bitwise(n, dtype, rng):
    # A batch of distinct tridiagonal operators is solved four systems at a time with their
    # loops interleaved (its own gttrf-equivalent code): the results must be the one-at-a-time
    # path's (LAPACK gttrf) bit for bit, pivoting included (a weak diagonal forces row
    # interchanges), and the grouped path must have been taken for all but the remainder.
    from perflab.linear_solve import _kernels

    batch = 11
    bands = [rng.normal(size=(batch, n - 1)), 0.5 * rng.normal(size=(batch, n)), rng.normal(size=(batch, n - 1))]
    tangents = [rng.normal(size=(batch, n - 1)), rng.normal(size=(batch, n)), rng.normal(size=(batch, n - 1))]
    b, tb = rng.normal(size=(batch, n)), rng.normal(size=(batch, n))
    args = [jnp.asarray(a.astype(dtype)) for a in (*bands, b, *tangents, tb)]

    def jvp(lo, di, up, b, tlo, tdi, tup, tb):
        return ls.linear_solve_jvp("tridiagonal", (lo, di, up), b, (tlo, tdi, tup), tb, variant="ffi")

    before = _kernels.grouped_systems()
    x, tx = jax.jit(jax.vmap(jvp))(*args)
    assert _kernels.grouped_systems() == before + 8  # two groups of four; three one at a time
    single = jax.jit(jvp)
    for i in range(batch):
        x1, tx1 = single(*[a[i] for a in args])
        np.testing.assert_array_equal(np.asarray(x[i]), np.asarray(x1))
        np.testing.assert_array_equal(np.asarray(tx[i]), np.asarray(tx1))
    first = [np.asarray(a[0], np.float64) for a in args]  # system 0 as rounded to dtype
    x_ref, tx_ref = _reference("tridiagonal", tuple(first[:3]), first[3], tuple(first[4:7]), first[7])
    np.testing.assert_allclose(np.asarray(x[0], np.float64), x_ref, **TOL[dtype])
    np.testing.assert_allclose(np.asarray(tx[0], np.float64), tx_ref, **TOL[dtype])
