"""Reverse mode through the ffi variant (and the heat equation's factor_once variants)."""

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl

import perflab.linear_solve as ls

from .jaxpr_tools import primitive_eqns
from .test_linear_solve import _dense, _scipy_solve, _shift

RTOL = {np.float64: 1e-9, np.float32: 1e-4}


def _pivoting_problem(solver, n, rng):
    # LU and tridiagonal operators with a weak diagonal: partial pivoting interchanges rows.
    b = rng.normal(size=n)
    if solver == "tridiagonal":
        return (rng.normal(size=n - 1), 0.1 * rng.normal(size=n), rng.normal(size=n - 1)), b
    if solver == "lu":
        return rng.normal(size=(n, n)) + 0.05 * np.eye(n), b
    m = rng.normal(size=(n, n))
    return m @ m.T / n + np.eye(n), b


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a, dtype)), tree)


def _loss(solver, variant):
    return lambda a, b: jnp.sum(ls.linear_solve(solver, a, b, variant=variant) ** 2)


def _grad(solver, variant, op, b):
    return jax.jit(jax.grad(_loss(solver, variant), argnums=(0, 1)))(op, b)


def _rel(got, want):
    got, want = (
        np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree_util.tree_leaves(t)]) for t in (got, want)
    )
    return np.max(np.abs(got - want)) / np.max(np.abs(want))


def _custom_calls(fn, *args):
    text = jax.jit(fn).lower(*args).compile().as_text()
    return collections.Counter(re.findall(r'custom_call_target="([^"]+)"', text))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [3, 37])
@pytest.mark.parametrize("solver", ls.SOLVERS)
def test_gradient_matches_lineax_and_finite_differences(solver, n, dtype, rng):
    op, b = _pivoting_problem(solver, n, rng)
    if solver != "cholesky":  # the problem really pivots
        piv = sl.lu_factor(_dense(solver, op))[1]
        assert np.any(piv != np.arange(n))
    jop, jb = _cast(op, dtype), _cast(b, dtype)
    got = _grad(solver, "ffi", jop, jb)
    assert all(g.dtype == dtype for g in jax.tree_util.tree_leaves(got))
    assert _rel(got, _grad(solver, "lineax", jop, jb)) < RTOL[dtype]
    # Central differences of scipy's float64 solve along random directions, on the inputs as
    # rounded to dtype.
    op64, b64 = (jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), t) for t in (jop, jb))

    def loss(o, v):
        return np.sum(_scipy_solve(solver, o, v) ** 2)

    h = 1e-6
    for _ in range(3):
        d_op = jax.tree_util.tree_map(lambda a: rng.normal(size=a.shape), op64)
        if solver == "cholesky":  # scipy's Cholesky reads one triangle: symmetric directions
            d_op = d_op + d_op.T
        d_b = rng.normal(size=n)
        fd = (loss(_shift(op64, d_op, h), b64 + h * d_b) - loss(_shift(op64, d_op, -h), b64 - h * d_b)) / (2 * h)
        g_op, g_b = got
        directional = sum(
            np.vdot(np.asarray(g, np.float64), d)
            for g, d in zip(jax.tree_util.tree_leaves(g_op), jax.tree_util.tree_leaves(d_op))
        )
        directional += np.vdot(np.asarray(g_b, np.float64), d_b)
        np.testing.assert_allclose(directional, fd, rtol=max(RTOL[dtype], 1e-6) * 10)


@pytest.mark.parametrize("solver", ls.SOLVERS)
def test_operator_cotangent_convention(solver, rng):
    # -lambda x^T on the operator's pattern: the three bands (tridiagonal), the full unsymmetrised
    # matrix (LU and Cholesky, as lineax), with lambda = A^-T g.
    op, b = _pivoting_problem(solver, 5, rng)
    g = rng.normal(size=5)
    a = _dense(solver, op)
    x = np.linalg.solve(a, b)
    lam = np.linalg.solve(a.T, g)
    _, vjp = jax.vjp(lambda o, v: ls.linear_solve(solver, o, v, variant="ffi"), _cast(op, np.float64), jnp.asarray(b))
    ct_op, ct_b = vjp(jnp.asarray(g))
    full = -np.outer(lam, x)
    want = (np.diag(full, -1), np.diag(full), np.diag(full, 1)) if solver == "tridiagonal" else full
    for got_, want_ in zip(jax.tree_util.tree_leaves(ct_op), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(got_, want_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ct_b, lam, rtol=1e-10)


@pytest.mark.parametrize("solver", ls.SOLVERS)
def test_one_factorisation_per_gradient(solver, rng):
    op, b = _cast(_pivoting_problem(solver, 20, rng), np.float64)
    calls = _custom_calls(jax.grad(_loss(solver, "ffi"), argnums=(0, 1)), op, b)
    ours = {k: v for k, v in calls.items() if k.startswith("perflab_")}
    # One factorising call (the forward solve keeps its factors); the backward pass is one
    # transposed substitution with them. No LAPACK call of XLA's own.
    assert ours == {f"perflab_{solver}_factor_solve": 1, f"perflab_{solver}_cotangent": 1}, ours
    assert not any(k.startswith("lapack_") for k in calls), calls
    # Gradient with respect to b only: the transposed substitution without the operator's part.
    calls = _custom_calls(jax.grad(lambda v: _loss(solver, "ffi")(op, v)), b)
    ours = {k: v for k, v in calls.items() if k.startswith("perflab_")}
    assert ours == {f"perflab_{solver}_factor_solve": 1, f"perflab_{solver}_cotangent_vector": 1}, ours


@pytest.mark.parametrize("solver", ls.SOLVERS)
def test_forward_mode_still_one_fused_call(solver, rng):
    op, b = _cast(_pivoting_problem(solver, 20, rng), np.float64)
    top = jax.tree_util.tree_map(jnp.ones_like, op)
    calls = _custom_calls(lambda *a: ls.linear_solve_jvp(solver, *a, variant="ffi"), op, b, top, b)
    assert {k: v for k, v in calls.items() if k.startswith("perflab_")} == {f"perflab_{solver}_jvp": 1}


@pytest.mark.parametrize("solver", ls.SOLVERS)
def test_vjp_vmap_jit_and_linear_transpose(solver, rng):
    problems = [_pivoting_problem(solver, 8, rng) for _ in range(5)]
    ops = _cast(jax.tree_util.tree_map(lambda *xs: np.stack(xs), *[p[0] for p in problems]), np.float64)
    bs = jnp.asarray(np.stack([p[1] for p in problems]))
    got = jax.jit(jax.vmap(jax.grad(_loss(solver, "ffi"), argnums=(0, 1))))(ops, bs)
    want = jax.vmap(jax.grad(_loss(solver, "lineax"), argnums=(0, 1)))(ops, bs)
    assert _rel(got, want) < 1e-9

    # grad of a vmapped (batched) loss, outside jit and inside.
    def total(o, v):
        return jnp.sum(jax.vmap(lambda a, c: ls.linear_solve(solver, a, c, variant="ffi"))(o, v) ** 2)

    assert _rel(jax.grad(total, argnums=(0, 1))(ops, bs), want) < 1e-9
    assert _rel(jax.grad(jax.jit(total), argnums=(0, 1))(ops, bs), want) < 1e-9
    # linear_transpose in b: x -> A^-T x.
    op, b = _cast(problems[0], np.float64)
    (t,) = jax.linear_transpose(lambda v: ls.linear_solve(solver, op, v, variant="ffi"), b)(b)
    np.testing.assert_allclose(
        t, np.linalg.solve(_dense(solver, jax.tree_util.tree_map(np.asarray, op)).T, b), rtol=1e-10
    )
    (t,) = jax.jit(jax.linear_transpose(lambda v: ls.linear_solve(solver, op, v, variant="ffi"), b))(b)
    np.testing.assert_allclose(
        t, np.linalg.solve(_dense(solver, jax.tree_util.tree_map(np.asarray, op)).T, b), rtol=1e-10
    )


def test_gradient_inside_scan(rng):
    op, b = _cast(_pivoting_problem("lu", 6, rng), np.float64)

    def run(a, v, variant):
        def step(x, _):
            return ls.linear_solve("lu", a, x, variant=variant), None

        return jnp.sum(jax.lax.scan(step, v, None, length=3)[0] ** 2)

    got = jax.jit(jax.grad(run, argnums=(0, 1)), static_argnums=2)(op, b, "ffi")
    assert _rel(got, jax.grad(run, argnums=(0, 1))(op, b, "lineax")) < 1e-9


def test_second_order_names_the_variant(rng):
    op, b = _cast(_pivoting_problem("lu", 4, rng), np.float64)
    grad = jax.grad(_loss("lu", "ffi"), argnums=1)
    with pytest.raises(NotImplementedError, match="variant='ffi' differentiates once.*'fused'"):
        jax.jvp(lambda v: grad(op, v), (b,), (b,))
    with pytest.raises(NotImplementedError, match="variant='ffi' differentiates once"):
        jax.hessian(lambda v: _loss("lu", "ffi")(op, v))(b)


def test_bad_input_refused_in_the_backward_pass(rng):
    op, b = _cast(_pivoting_problem("lu", 4, rng), np.float64)
    with pytest.raises(TypeError, match="vector has dtype float32"):
        jax.grad(_loss("lu", "ffi"), argnums=(0, 1))(op, b.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"vector must have shape \(4,\)"):
        jax.grad(_loss("lu", "ffi"))(op, jnp.ones(5))
    _, vjp = jax.vjp(lambda a, v: ls.linear_solve("lu", a, v, variant="ffi"), op, b)
    with pytest.raises(ValueError, match="shape"):
        vjp(jnp.ones(5))
    with pytest.raises(ValueError, match="dtype"):
        vjp(jnp.ones(4, jnp.float32))


def test_singular_operator_in_reverse_mode():
    # The forward solve's check covers the gradient: the singular system is reported.
    with pytest.raises(Exception, match="non-finite solution"):
        jax.grad(_loss("lu", "ffi"))(jnp.zeros((3, 3)), jnp.ones(3))


# ------------------------------------------------------------------ heat equation


def _heat_problem(n):
    x = np.linspace(0.0, 1.0, n + 2)[1:-1]
    return jnp.asarray(np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x)), jnp.asarray(1.0)


def _heat_loss(variant, steps):
    return lambda u, k: jnp.sum(ls.heat_solve(u, k, steps=steps, variant=variant) ** 2)


@pytest.mark.parametrize("variant", ["factor_once", "factor_once_ffi"])
def test_heat_gradient_matches_lineax_and_finite_differences(variant):
    u0, k = _heat_problem(30)
    steps = 6
    got = jax.jit(jax.grad(_heat_loss(variant, steps), argnums=(0, 1)))(u0, k)
    want = jax.grad(_heat_loss("lineax", steps), argnums=(0, 1))(u0, k)
    assert _rel(got, want) < 1e-9
    h = 1e-6
    loss = _heat_loss("fused", steps)
    fd = (loss(u0, k + h) - loss(u0, k - h)) / (2 * h)
    np.testing.assert_allclose(got[1], fd, rtol=1e-6)
    # vmap of the gradient over initial states.
    us = jnp.stack([u0, 2 * u0, -u0])
    batched = jax.jit(jax.vmap(jax.grad(_heat_loss(variant, steps), argnums=(0, 1)), in_axes=(0, None)))(us, k)
    ref = jax.vmap(jax.grad(_heat_loss("lineax", steps), argnums=(0, 1)), in_axes=(0, None))(us, k)
    assert _rel(batched, ref) < 1e-9


@pytest.mark.parametrize("variant", ["factor_once", "factor_once_ffi"])
def test_heat_gradient_factorises_once(variant):
    u0, k = _heat_problem(16)
    jaxpr = jax.make_jaxpr(jax.grad(_heat_loss(variant, 5), argnums=(0, 1)))(u0, k).jaxpr
    named = [
        e for prim in ("jit", "pjit") for e in primitive_eqns(jaxpr, prim) if e.params.get("name") == "_thomas_factor"
    ]
    assert len(named) == 1
    if variant == "factor_once_ffi":
        # The primal loop is one call keeping its states, the adjoint loop one call of transposed
        # substitutions; no substitution call per step.
        for argnums in (0, (0, 1)):
            calls = _custom_calls(jax.grad(_heat_loss(variant, 5), argnums=argnums), u0, k)
            ours = {c: v for c, v in calls.items() if c.startswith("perflab_")}
            assert ours == {"perflab_heat_steps": 1, "perflab_heat_adjoint": 1}, ours


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [3, 4, 50])
def test_tridiagonal_batch_gradients_match_single_systems_bitwise(n, dtype, rng):
    # A batch of distinct tridiagonal systems is factorised and back-substituted four at a time
    # (the kernel's own gttrf-equivalent code): each gradient must be the one-system path's
    # (LAPACK gttrf) bit for bit, row interchanges forced by a weak diagonal.
    batch = 11
    bands = [rng.normal(size=(batch, n - 1)), 0.3 * rng.normal(size=(batch, n)), rng.normal(size=(batch, n - 1))]
    args = [jnp.asarray(a.astype(dtype)) for a in (*bands, rng.normal(size=(batch, n)))]

    def grad(lo, di, up, b):
        return jax.grad(_loss("tridiagonal", "ffi"), argnums=(0, 1))((lo, di, up), b)

    batched = jax.jit(jax.vmap(grad))(*args)
    single = jax.jit(grad)
    for i in range(batch):
        one = single(*[a[i] for a in args])
        for got, want in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(one)):
            np.testing.assert_array_equal(np.asarray(got[i]), np.asarray(want))
    want = jax.vmap(jax.grad(_loss("tridiagonal", "lineax"), argnums=(0, 1)))(tuple(args[:3]), args[3])
    assert _rel(batched, want) < RTOL[dtype]
