import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl

import perflab.linear_solve as ls
from perflab import variants

from .jaxpr_tools import compiled_custom_calls, primitive_counts, primitive_eqns

JAX_VARIANTS = ["separate_solves", "vmapped_solves", "fused", "lineax", "ffi"]
ALL = JAX_VARIANTS + ["cython"]


def _problem(solver, n, rng):
    b, tb = rng.normal(size=n), rng.normal(size=n)
    if solver == "tridiagonal":
        op = (rng.normal(size=n - 1), 4.0 + rng.random(n), rng.normal(size=n - 1))
        top = (rng.normal(size=n - 1), rng.normal(size=n), rng.normal(size=n - 1))
    elif solver == "lu":
        op, top = rng.normal(size=(n, n)) / np.sqrt(n) + 2 * np.eye(n), rng.normal(size=(n, n))
    else:
        m, t = rng.normal(size=(n, n)), rng.normal(size=(n, n))
        op, top = m @ m.T / n + np.eye(n), t + t.T
    return op, b, top, tb


def _dense(solver, op):
    if solver != "tridiagonal":
        return op
    lower, diag, upper = op
    return np.diag(diag) + np.diag(lower, -1) + np.diag(upper, 1)


def _scipy_solve(solver, op, b):
    if solver == "tridiagonal":
        lower, diag, upper = op
        ab = np.zeros((3, len(diag)))
        ab[0, 1:], ab[1], ab[2, :-1] = upper, diag, lower
        return sl.solve_banded((1, 1), ab, b)
    if solver == "lu":
        return sl.lu_solve(sl.lu_factor(op), b)
    return sl.cho_solve(sl.cho_factor(op), b)


def _shift(op, top, h):
    if isinstance(op, tuple):
        return tuple(o + h * t for o, t in zip(op, top))
    return op + h * top


def _run(solver, variant, op, b, top, tb):
    if variant == "cython":
        return ls.linear_solve_jvp(solver, op, b, top, tb, variant="cython")
    to_jax = lambda t: None if t is None else jax.tree_util.tree_map(jnp.asarray, t)
    fn = jax.jit(lambda *a: ls.linear_solve_jvp(solver, *a, variant=variant))
    x, tx = fn(to_jax(op), jnp.asarray(b), to_jax(top), to_jax(tb))
    return np.asarray(x), np.asarray(tx)


def _cases():
    for solver in ls.SOLVERS:
        for variant in ALL:
            if variant == "cython" and solver != "tridiagonal":
                continue
            yield solver, variant


@pytest.mark.parametrize("n", [1, 2, 10, 50])
@pytest.mark.parametrize("solver,variant", list(_cases()))
def test_jvp_matches_scipy_and_finite_differences(solver, variant, n, rng):
    op, b, top, tb = _problem(solver, n, rng)
    x, tx = _run(solver, variant, op, b, top, tb)
    x_ref = _scipy_solve(solver, op, b)
    tx_ref = _scipy_solve(solver, op, tb - _dense(solver, top) @ x_ref)
    np.testing.assert_allclose(x, x_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(tx, tx_ref, rtol=1e-10, atol=1e-12)
    h = 1e-6
    fd = (
        _scipy_solve(solver, _shift(op, top, h), b + h * tb) - _scipy_solve(solver, _shift(op, top, -h), b - h * tb)
    ) / (2 * h)
    np.testing.assert_allclose(tx, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("solver,variant", list(_cases()))
@pytest.mark.parametrize("which", ["operator", "vector"])
def test_single_tangent(solver, variant, which, rng):
    op, b, top, tb = _problem(solver, 20, rng)
    top, tb = (top, None) if which == "operator" else (None, tb)
    x, tx = _run(solver, variant, op, b, top, tb)
    # The reference is scipy's alone: the variant's own x never enters it.
    x_ref = _scipy_solve(solver, op, b)
    rhs = np.zeros(20) if tb is None else tb
    if top is not None:
        rhs = rhs - _dense(solver, top) @ x_ref
    np.testing.assert_allclose(x, x_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tx, _scipy_solve(solver, op, rhs), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("solver", ls.SOLVERS)
@pytest.mark.parametrize("variant", JAX_VARIANTS)
def test_vmap_over_systems_and_tangents(solver, variant, rng):
    problems = [_problem(solver, 8, rng) for _ in range(3)]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs)), *problems)
    fn = jax.jit(jax.vmap(lambda *a: ls.linear_solve_jvp(solver, *a, variant=variant)))
    _, tx = fn(*stacked)
    for i, (op, b, top, tb) in enumerate(problems):
        x_ref = _scipy_solve(solver, op, b)
        tx_ref = _scipy_solve(solver, op, tb - _dense(solver, top) @ x_ref)
        np.testing.assert_allclose(tx[i], tx_ref, rtol=1e-10, atol=1e-12)
    # jacfwd: a vmap over tangent directions through the custom JVP rule.
    op, b, _, _ = problems[0]
    jac = jax.jacfwd(lambda v: ls.linear_solve(solver, jax.tree_util.tree_map(jnp.asarray, op), v, variant=variant))(
        jnp.asarray(b)
    )
    np.testing.assert_allclose(jac, np.linalg.inv(_dense(solver, op)), rtol=1e-10, atol=1e-12)


def _jvp_fn(solver, variant, with_operator_tangent=True):
    if with_operator_tangent:
        return lambda a, b, ta, tb: ls.linear_solve_jvp(solver, a, b, ta, tb, variant=variant)
    return lambda a, b, ta, tb: ls.linear_solve_jvp(solver, a, b, None, tb, variant=variant)


@pytest.mark.parametrize("solver,factor_prim", [("lu", "lu"), ("cholesky", "cholesky")])
def test_dense_variants_take_different_paths(solver, factor_prim, rng):
    args = jax.tree_util.tree_map(jnp.asarray, _problem(solver, 12, rng))
    counts = {v: primitive_counts(_jvp_fn(solver, v), *args) for v in ("separate_solves", "vmapped_solves", "fused")}
    # before: a factorisation and a solve per right-hand side (primal, b', -A'x).
    assert counts["separate_solves"][factor_prim] == 3 and counts["separate_solves"]["triangular_solve"] == 6
    # after: the two tangent solves become one vmapped solve (one extra factorisation).
    assert counts["vmapped_solves"][factor_prim] == 2 and counts["vmapped_solves"]["triangular_solve"] == 4
    # fused: one factorisation shared by the primal and the summed tangent.
    assert counts["fused"][factor_prim] == 1 and counts["fused"]["triangular_solve"] == 4
    jaxpr = jax.make_jaxpr(_jvp_fn(solver, "vmapped_solves"))(*args).jaxpr
    widths = sorted(
        e.invars[1].aval.shape[-1] if e.invars[1].aval.ndim == 2 else 1
        for e in primitive_eqns(jaxpr, "triangular_solve")
    )
    rhs_shapes = sorted(e.invars[1].aval.shape for e in primitive_eqns(jaxpr, "triangular_solve"))
    assert any(len(s) == 3 and s[0] == 2 for s in rhs_shapes) or 2 in widths, rhs_shapes


def _trsm_columns(fn, *args):
    """Sorted column counts of the triangular solves (LAPACK trsm custom calls) in the optimised HLO."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    shapes = re.findall(r"= f64\[(\d+),(\d+)\][^\n]*custom_call_target=\"lapack_dtrsm_ffi\"", text)
    return sorted(int(cols) for _, cols in shapes)


@pytest.mark.parametrize("n", [12, 100])
@pytest.mark.parametrize("solver,target", [("lu", "lapack_dgetrf_ffi"), ("cholesky", "lapack_dpotrf_ffi")])
def test_xla_merges_repeated_factorisations(solver, target, n, rng):
    # What the benchmarks really compare: XLA's CSE folds separate_solves' three identical
    # factorisations into one, so after compilation the variants differ only in their
    # triangular solves. The docs and registry descriptions say so; a JAX upgrade that changes
    # it must show here.
    args = jax.tree_util.tree_map(jnp.asarray, _problem(solver, n, rng))
    for variant in ("separate_solves", "vmapped_solves", "fused", "lineax"):
        calls = compiled_custom_calls(_jvp_fn(solver, variant), *args)
        assert calls[target] == 1, (variant, calls)
    # Two triangular solves per right-hand side: separate_solves solves three one-column ones,
    # vmapped_solves the primal and then the tangent pair as one two-column solve, fused the
    # primal and one summed tangent; with a b'-only tangent fused solves [b, b'] together.
    assert _trsm_columns(_jvp_fn(solver, "separate_solves"), *args) == [1] * 6
    assert _trsm_columns(_jvp_fn(solver, "vmapped_solves"), *args) == [1, 1, 2, 2]
    assert _trsm_columns(_jvp_fn(solver, "fused"), *args) == [1] * 4
    assert _trsm_columns(_jvp_fn(solver, "fused", False), *args) == [2, 2]


def test_tridiagonal_variants_take_different_paths(rng):
    args = jax.tree_util.tree_map(jnp.asarray, _problem("tridiagonal", 12, rng))
    count = lambda v, op_t=True: primitive_counts(_jvp_fn("tridiagonal", v, op_t), *args)["tridiagonal_solve"]
    assert count("separate_solves") == 3 and count("vmapped_solves") == 2 and count("fused") == 2
    # With no operator tangent, fused solves primal and tangent as one two-column gtsv.
    assert count("separate_solves", False) == 2 and count("fused", False) == 1
    jaxpr = jax.make_jaxpr(_jvp_fn("tridiagonal", "fused", False))(*args).jaxpr
    (eqn,) = primitive_eqns(jaxpr, "tridiagonal_solve")
    assert eqn.invars[3].aval.shape == (12, 2)
    compiled = {
        v: compiled_custom_calls(_jvp_fn("tridiagonal", v), *args)["lapack_dgtsv_ffi"]
        for v in ("separate_solves", "fused")
    }
    assert compiled == {"separate_solves": 3, "fused": 2}


def test_lineax_variant_calls_lineax(rng, monkeypatch):
    import lineax

    calls = []
    real = lineax.linear_solve
    monkeypatch.setattr(lineax, "linear_solve", lambda *a, **k: calls.append(1) or real(*a, **k))
    op, b, top, tb = _problem("lu", 5, rng)
    _run("lu", "lineax", op, b, top, tb)
    _run("lu", "fused", op, b, top, tb)
    assert len(calls) == 1


def test_cython_variant_uses_the_extension(rng, monkeypatch):
    from perflab.linear_solve import _thomas

    calls = []
    real = _thomas.solve_jvp
    monkeypatch.setattr(_thomas, "solve_jvp", lambda *a: calls.append(1) or real(*a))
    op, b, top, tb = _problem("tridiagonal", 6, rng)
    x, _ = ls.linear_solve_jvp("tridiagonal", op, b, top, tb, variant="cython")
    assert calls == [1] and isinstance(x, np.ndarray)


def _heat_reference(u0, kappa, steps, dt):
    n = len(u0)
    r = kappa * dt * (n + 1) ** 2
    ab = np.zeros((3, n))
    ab[0, 1:], ab[1], ab[2, :-1] = -r, 1 + 2 * r, -r
    u = np.array(u0)
    for _ in range(steps):
        u = sl.solve_banded((1, 1), ab, u)
    return u


@pytest.mark.parametrize("variant", ALL + ["factor_once", "factor_once_ffi"])
@pytest.mark.parametrize("wrt", ["initial", "diffusivity", "both"])
def test_heat_equation_jvp(variant, wrt, rng):
    n, steps, dt, kappa = 30, 7, 1e-3, 0.7
    u0, t_u0 = rng.normal(size=n), rng.normal(size=n)
    t_kappa = 0.3
    tu = None if wrt == "diffusivity" else t_u0
    tk = None if wrt == "initial" else t_kappa
    if variant == "cython":
        u, du = ls.heat_jvp(
            u0, np.float64(kappa), tu, None if tk is None else np.float64(tk), steps=steps, dt=dt, variant=variant
        )
    else:
        fn = jax.jit(lambda u0_, k, tu_, tk_: ls.heat_jvp(u0_, k, tu_, tk_, steps=steps, dt=dt, variant=variant))
        u, du = fn(
            jnp.asarray(u0),
            jnp.asarray(kappa),
            None if tu is None else jnp.asarray(tu),
            None if tk is None else jnp.asarray(tk),
        )
    np.testing.assert_allclose(u, _heat_reference(u0, kappa, steps, dt), rtol=1e-12, atol=1e-13)
    h = 1e-6
    eu = 0 if tu is None else tu
    ek = 0 if tk is None else tk
    fd = (
        _heat_reference(u0 + h * eu, kappa + h * ek, steps, dt)
        - _heat_reference(u0 - h * eu, kappa - h * ek, steps, dt)
    ) / (2 * h)
    np.testing.assert_allclose(du, fd, rtol=1e-6, atol=1e-8)


def heat_jvp_jaxpr(variant, wrt, n, steps):
    """The jaxpr of `heat_jvp` along u0 (``wrt="initial"``) or kappa (``"diffusivity"``)."""
    u0, k = jnp.ones(n), jnp.asarray(1.0)
    if wrt == "initial":
        fn = lambda u, t: ls.heat_jvp(u, k, t, steps=steps, variant=variant)
        args = (u0, u0)
    else:
        fn = lambda kk, t: ls.heat_jvp(u0, kk, None, t, steps=steps, variant=variant)
        args = (k, k)
    return jax.make_jaxpr(fn)(*args).jaxpr


@pytest.mark.parametrize("wrt", ["initial", "diffusivity"])
def test_heat_factor_once_factorises_outside_the_time_loop(wrt):
    n, steps = 16, 5
    jaxpr = heat_jvp_jaxpr("factor_once", wrt, n, steps)

    # The factorisation is a named call: exactly one in the whole program, none inside any scan.
    def factorisations(jx):
        return [
            e for prim in ("jit", "pjit") for e in primitive_eqns(jx, prim) if e.params.get("name") == "_thomas_factor"
        ]

    assert len(factorisations(jaxpr)) == 1

    # With an operator tangent the loop is pipelined: u_1 is substituted before it and u'_steps
    # after it, and each of its steps - 1 iterations solves u_{k+2} and u'_{k+1} together.
    length = steps if wrt == "initial" else steps - 1
    time_loops = [e for e in primitive_eqns(jaxpr, "scan") if e.params["length"] == length]
    assert len(time_loops) == 1 and factorisations(time_loops[0].params["jaxpr"].jaxpr) == []
    # Inside the time loop only substitution scans over the grid: forward + backward for two
    # columns at once (u and u', or u_{k+1} and u'_k - A' u_{k+1}).
    body_scans = [e for e in primitive_eqns(time_loops[0].params["jaxpr"].jaxpr, "scan")]
    assert all(e.params["length"] == n for e in body_scans)
    assert len(body_scans) == 2
    assert all(e.outvars[-1].aval.shape == (n, 2) for e in body_scans)


def test_heat_fused_solves_once_per_step_without_operator_tangent():
    u0, k = jnp.ones(10), jnp.asarray(1.0)
    counts = {
        v: primitive_counts(lambda u, t, v=v: ls.heat_jvp(u, k, t, steps=5, variant=v), u0, u0)["tridiagonal_solve"]
        for v in ("separate_solves", "vmapped_solves", "fused")
    }
    # One scan body per variant: its solves run once per step.
    assert counts == {"separate_solves": 2, "vmapped_solves": 2, "fused": 1}


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "solver,operator,vector,exc,match",
    [
        ("lu", np.ones((3, 4)), np.ones(3), ValueError, "operator .* square"),
        ("lu", np.ones((3,)), np.ones(3), ValueError, "operator .* square"),
        ("cholesky", np.eye(3), np.ones(4), ValueError, r"vector must have shape \(3,\)"),
        ("lu", np.eye(3), np.ones((3, 1)), ValueError, r"vector must have shape \(3,\)"),
        ("lu", np.eye(3, dtype=np.int32), np.ones(3, np.int32), TypeError, "operator must have a floating dtype"),
        ("lu", np.eye(3), np.ones(3, np.int64), TypeError, "vector must have a floating dtype"),
        ("lu", np.eye(3), np.ones(3, np.float32), TypeError, "vector has dtype float32"),
        (
            "tridiagonal",
            (np.ones(3), np.ones(3), np.ones(2)),
            np.ones(3),
            ValueError,
            r"operator lower must have shape \(2,\)",
        ),
        (
            "tridiagonal",
            (np.ones(2), np.ones(3), np.ones(3)),
            np.ones(3),
            ValueError,
            r"operator upper must have shape \(2,\)",
        ),
        ("tridiagonal", np.eye(3), np.ones(3), ValueError, r"tuple \(lower, diag, upper\)"),
        ("qr", np.eye(3), np.ones(3), ValueError, "solver='qr' is not supported"),
    ],
)
def test_bad_input(solver, operator, vector, exc, match):
    with pytest.raises(exc, match=match):
        ls.linear_solve_jvp(solver, operator, vector, None, vector, variant="fused")


def test_bad_variant_and_tangent():
    with pytest.raises(ValueError, match="variant='faster' is not a variant of linear_solve.solve_jvp"):
        ls.linear_solve("lu", jnp.eye(2), jnp.ones(2), variant="faster")
    with pytest.raises(ValueError, match="variant='cython' exists for solver='tridiagonal' only"):
        ls.linear_solve_jvp("lu", np.eye(2), np.ones(2), None, np.ones(2), variant="cython")
    with pytest.raises(ValueError, match=r"t_vector must have shape \(2,\)"):
        ls.linear_solve_jvp("lu", np.eye(2), np.ones(2), None, np.ones(3))
    with pytest.raises(TypeError, match="must be float64 for variant='cython'"):
        f32 = np.ones(3, np.float32)
        ls.linear_solve_jvp("tridiagonal", (f32[:2], f32, f32[:2]), f32, None, f32, variant="cython")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        ls.heat_jvp(jnp.ones(5), jnp.asarray(1.0), jnp.ones(5), steps=0)
    with pytest.raises(ValueError, match="at least one tangent"):
        ls.heat_jvp(jnp.ones(5), jnp.asarray(1.0), steps=2)


def test_cython_copies_strided_input(rng):
    op, b, top, tb = _problem("tridiagonal", 10, rng)
    strided = np.empty(20)
    strided[::2] = b
    x, _ = ls.linear_solve_jvp("tridiagonal", op, strided[::2], top, tb, variant="cython")
    np.testing.assert_allclose(x, _scipy_solve("tridiagonal", op, b), rtol=1e-12)


_SINGULAR_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
import lineax as lx
import perflab.linear_solve as ls
singular = {"lu": jnp.zeros((3, 3)), "cholesky": -jnp.eye(3),
            "tridiagonal": (jnp.zeros(2), jnp.zeros(3), jnp.zeros(2))}
lx_ops = {"lu": (lx.MatrixLinearOperator(jnp.zeros((3, 3))), lx.LU()),
          "cholesky": (lx.MatrixLinearOperator(-jnp.eye(3), lx.positive_semidefinite_tag), lx.Cholesky()),
          "tridiagonal": (lx.TridiagonalLinearOperator(jnp.zeros(3), jnp.zeros(2), jnp.zeros(2)), lx.Tridiagonal())}
def outcome(fn):
    try:
        out = np.asarray(fn())
        return "nan" if np.isnan(out).all() else "value"
    except Exception as err:
        return type(err).__name__
for solver in ("lu", "cholesky", "tridiagonal"):
    b = jnp.ones(3)
    ours = {v: outcome(lambda: ls.linear_solve_jvp(solver, singular[solver], b, None, b, variant=v)[0])
            for v in ("separate_solves", "vmapped_solves", "fused", "ffi")}
    ours["cython"] = None
    if solver == "tridiagonal":
        bands = tuple(np.asarray(a) for a in singular[solver])
        ours["cython"] = outcome(
            lambda: ls.linear_solve_jvp(solver, bands, np.ones(3), None, np.ones(3), variant="cython")[0]
        )
    peer = outcome(lambda: lx.linear_solve(*lx_ops[solver][:1], b, lx_ops[solver][1]).value)
    print(solver, peer, sorted(ours.items(), key=str))
"""


@pytest.mark.parametrize(
    "mode,expected_jax,expected_cython",
    [
        ("raise", "EquinoxRuntimeError", "LinAlgError"),
        ("nan", "nan", "nan"),
    ],
)
def test_singular_follows_lineax_convention(mode, expected_jax, expected_cython):
    # EQX_ON_ERROR is read when equinox is imported, so each mode needs its own process.
    env = dict(os.environ, EQX_ON_ERROR=mode)
    out = subprocess.run(
        [sys.executable, "-c", _SINGULAR_SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 3, out
    for line in lines:
        solver, peer, ours = line.split(" ", 2)
        assert peer == expected_jax, line
        for variant in ("separate_solves", "vmapped_solves", "fused", "ffi"):
            assert f"('{variant}', '{expected_jax}')" in ours, line
        if solver == "tridiagonal":
            assert f"('cython', '{expected_cython}')" in ours, line


def test_registry_lists_every_variant():
    op = variants.get("linear_solve", "solve_jvp")
    assert set(op.names) == {"separate_solves", "vmapped_solves", "lineax", "fused", "cython", "ffi"}
    # The report's BEFORE/AFTER roles: the seed's baseline and the optimised default, by name.
    assert (op.baseline, op.optimised, op.default) == ("separate_solves", "fused", "fused")
    heat = variants.get("linear_solve", "heat_jvp")
    assert set(heat.names) == set(op.names) | {"factor_once", "factor_once_ffi"}
    assert (heat.baseline, heat.optimised) == (op.baseline, op.optimised)
    assert "hoist" in heat.variants["cython"] and "once" in heat.variants["factor_once"]


@pytest.mark.parametrize("variant", ["separate_solves", "fused", "lineax", "ffi"])
def test_cholesky_refuses_a_non_symmetric_operator(variant):
    a = np.eye(4) + np.triu(np.ones((4, 4)), 1)  # one triangle: cholesky would read half of it
    with pytest.raises(ValueError, match="operator for solver='cholesky' must be symmetric"):
        ls.linear_solve("cholesky", jnp.asarray(a), jnp.ones(4), variant=variant)
    with pytest.raises(ValueError, match="t_operator for solver='cholesky' must be symmetric"):
        ls.linear_solve_jvp("cholesky", jnp.eye(4) * 2, jnp.ones(4), jnp.asarray(a), jnp.ones(4), variant=variant)


@pytest.mark.parametrize("solver", ["tridiagonal", "lu", "cholesky"])
def test_nan_in_the_vector_is_named_not_called_singular(solver):
    operator = (jnp.zeros(3), 2 * jnp.ones(4), jnp.zeros(3)) if solver == "tridiagonal" else 2 * jnp.eye(4)
    b = jnp.asarray([1.0, np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"vector holds NaN or inf \(first at index 1\)"):
        ls.linear_solve(solver, operator, b)
    with pytest.raises(ValueError, match=r"t_vector holds NaN or inf"):
        ls.linear_solve_jvp(solver, operator, jnp.ones(4), None, b)
