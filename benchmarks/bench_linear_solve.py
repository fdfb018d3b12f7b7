"""Study 1: a linear solve's JVP with the tangent solves separate, vmapped, fused, lineax's, Cython."""

from __future__ import annotations

import functools
import os

# The study's claim was measured with EQX_ON_ERROR=nan, and in the default "raise" mode the
# singularity check (an `eqx.error_if`, also inside lineax) costs ~60 us per call on this CPU,
# more than a whole tridiagonal solve. equinox reads the variable once, at import.
os.environ.setdefault("EQX_ON_ERROR", "nan")

import numpy as np

from ._interleave import CONTROL, injected_variants
from .common import InterleavedBenchmark, jit_compile, require, skip

SOLVERS = ["tridiagonal", "lu", "cholesky"]
SIZES = [10, 50, 100, 200, 500]
# The variants of one solve's JVP that run inside JAX (every solver); cython is tridiagonal only
# and factor_once(_ffi) exist for the heat equation only.
JAX_VARIANTS = ["separate_solves", "vmapped_solves", "lineax", "fused", "ffi"]
HEAT_VARIANTS = [*JAX_VARIANTS, "cython", "factor_once", "factor_once_ffi"]


def _study():
    return require("perflab.linear_solve")


@functools.lru_cache(maxsize=None)
def _numpy_problem(solver, size, seed=0):
    """Seeded (operator, vector, t_operator, t_vector) as float64 numpy arrays."""
    rng = np.random.default_rng(seed + size)
    n = size
    vector, t_vector = rng.normal(size=n), rng.normal(size=n)
    if solver == "tridiagonal":
        operator = (rng.normal(size=n - 1), 4.0 + rng.random(n), rng.normal(size=n - 1))
        t_operator = (rng.normal(size=n - 1), rng.normal(size=n), rng.normal(size=n - 1))
    elif solver == "lu":
        operator = rng.normal(size=(n, n)) / np.sqrt(n) + 2.0 * np.eye(n)
        t_operator = rng.normal(size=(n, n))
    else:
        m = rng.normal(size=(n, n))
        operator = m @ m.T / n + np.eye(n)
        t = rng.normal(size=(n, n))
        t_operator = t + t.T
    return operator, vector, t_operator, t_vector


def _dense(solver, operator):
    if solver != "tridiagonal":
        return operator
    lower, diag, upper = operator
    return np.diag(diag) + np.diag(lower, -1) + np.diag(upper, 1)


def _reference(solver, size, seed=0):
    """(x, x_dot) by numpy's dense LU in float64: independent of every variant."""
    operator, vector, t_operator, t_vector = _numpy_problem(solver, size, seed)
    a, ta = _dense(solver, operator), _dense(solver, t_operator)
    x = np.linalg.solve(a, vector)
    return x, np.linalg.solve(a, t_vector - ta @ x)


@functools.lru_cache(maxsize=None)
def _device_problem(solver, size):
    import jax

    return jax.device_put(_numpy_problem(solver, size))


def _check_variant(solver, variant):
    if variant in ("ffi", "factor_once_ffi", "cython"):
        import jax

        if jax.default_backend() != "cpu" and variant == "cython":
            # Beside device rows a host kernel's time would read as a device figure.
            skip(f"the cython variant runs on the host CPU; JAX's backend here is {jax.default_backend()}")
        if jax.default_backend() != "cpu":
            skip("the ffi variant's kernels are registered for CPU only")


@functools.lru_cache(maxsize=None)
def _jvp_call(solver, size, variant):
    ls = _study()
    if variant == "cython":
        args = _numpy_problem(solver, size)
        return lambda: ls.linear_solve_jvp(solver, *args, variant="cython")
    return jit_compile(
        lambda a, b, ta, tb: ls.linear_solve_jvp(solver, a, b, ta, tb, variant=variant),
        *_device_problem(solver, size),
    )


@functools.lru_cache(maxsize=None)
def _primal_call(solver, size, variant):
    ls = _study()
    if variant == "cython":
        operator, vector, _, _ = _numpy_problem(solver, size)
        return lambda: ls.cython_solve(operator, vector)
    operator, vector, _, _ = _device_problem(solver, size)
    return jit_compile(lambda a, b: ls.linear_solve(solver, a, b, variant=variant), operator, vector)


# Every comparing class holds only valid cells: the study's variants that exist for its solvers,
# the benchmark's control twin of the baseline, and (calibration only) the injected twins.
BASELINE = "separate_solves"
EXTRA = [CONTROL, *injected_variants()]


class _SolveJVP(InterleavedBenchmark):
    # The JVP and the primal of every variant of a cell are measured interleaved in each
    # process; jvp_over_primal is their ratio process by process.
    operations = ("jvp", "primal")
    ratios = {"jvp_over_primal": ("jvp", "primal", "ratio")}
    baseline = BASELINE
    optimised = "fused"

    def build(self, operation, *params):
        *solver, size, variant = params
        solver = solver[0] if solver else "tridiagonal"
        _check_variant(solver, variant)
        return (_jvp_call if operation == "jvp" else _primal_call)(solver, size, variant)

    def reference(self, operation, *head):
        *solver, size = head
        x, x_dot = _reference(solver[0] if solver else "tridiagonal", size)
        return (x, x_dot) if operation == "jvp" else x


class LinearSolveJVP(_SolveJVP):
    """x = A^-1 b and its JVP along (A', b') for one dense system, per solver, size and variant."""

    params = [["lu", "cholesky"], SIZES, [*JAX_VARIANTS, *EXTRA]]
    param_names = ["solver", "size", "variant"]

    def setup_cache(self):
        return self.measure_round()


class TridiagonalSolveJVP(_SolveJVP):
    """The same for a tridiagonal system, where the Cython Thomas kernel is a variant too."""

    params = [SIZES, [*JAX_VARIANTS, "cython", *EXTRA]]
    param_names = ["size", "variant"]

    def setup_cache(self):
        return self.measure_round()


class LinearSolveJVPDefault(InterleavedBenchmark):
    """The JVP through the default variant: `asv compare` shows a change of default here."""

    params = [SOLVERS, [100, 500], ["default", CONTROL]]
    param_names = ["solver", "size", "variant"]
    operations = ("jvp",)
    baseline = "default"

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, solver, size, variant):
        ls = _study()
        return jit_compile(
            lambda a, b, ta, tb: ls.linear_solve_jvp(solver, a, b, ta, tb),
            *_device_problem(solver, size),
        )

    def reference(self, operation, solver, size):
        return _reference(solver, size)


BATCH = 200


@functools.lru_cache(maxsize=None)
def _batched_call(solver, size, variant):
    import jax

    _check_variant(solver, variant)
    ls = _study()
    problems = [_numpy_problem(solver, size, seed=s) for s in range(BATCH)]
    stacked = jax.device_put(jax.tree_util.tree_map(lambda *xs: np.stack(xs), *problems))
    jvp = jax.vmap(lambda a, b, ta, tb: ls.linear_solve_jvp(solver, a, b, ta, tb, variant=variant))
    return jit_compile(jvp, *stacked)


class BatchedLinearSolveJVP(InterleavedBenchmark):
    """200 independent systems under `jax.vmap`: where stacking and fusing tangent solves shows."""

    params = [SOLVERS, [10, 50], [*JAX_VARIANTS, *EXTRA]]
    param_names = ["solver", "size", "variant"]
    operations = ("jvp",)
    baseline = BASELINE
    optimised = "fused"

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, solver, size, variant):
        return _batched_call(solver, size, variant)

    def reference(self, operation, solver, size):
        xs, x_dots = zip(*(_reference(solver, size, seed=s) for s in range(BATCH)))
        return np.stack(xs), np.stack(x_dots)


def _heat_problem(grid, wrt):
    x = np.linspace(0.0, 1.0, grid + 2)[1:-1]
    u0, kappa = np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x), np.float64(1.0)
    t_u0 = np.cos(np.pi * x) if wrt == "initial" else None
    t_kappa = np.float64(1.0) if wrt == "diffusivity" else None
    return u0, kappa, t_u0, t_kappa


HEAT_DT = 1e-4  # heat_jvp's default time step, which every variant is called with


def _heat_reference(steps, grid, wrt):
    """(u, u_dot) by scipy's banded solve step after step; u_dot exactly for u0 (the map is
    linear), by central differences in kappa for the diffusivity."""
    from scipy.linalg import solve_banded

    u0, kappa, t_u0, _ = _heat_problem(grid, wrt)

    def run(u, k):
        r = k * HEAT_DT * (grid + 1) ** 2
        ab = np.zeros((3, grid))
        ab[0, 1:], ab[1], ab[2, :-1] = -r, 1 + 2 * r, -r
        for _ in range(steps):
            u = solve_banded((1, 1), ab, u)
        return u

    if wrt == "initial":
        return run(u0, kappa), run(t_u0, kappa)
    h = 1e-6
    return run(u0, kappa), (run(u0, kappa + h) - run(u0, kappa - h)) / (2 * h)


@functools.lru_cache(maxsize=None)
def _heat_call(steps, grid, wrt, variant):
    _check_variant("tridiagonal", variant)
    ls = _study()
    u0, kappa, t_u0, t_kappa = _heat_problem(grid, wrt)
    if variant == "cython":
        return lambda: ls.heat_jvp(u0, kappa, t_u0, t_kappa, steps=steps, variant="cython")
    import jax

    if wrt == "initial":
        fn = lambda u, tu, k: ls.heat_jvp(u, k, t_u0=tu, steps=steps, variant=variant)
        args = (u0, t_u0, kappa)
    else:
        fn = lambda u, k, tk: ls.heat_jvp(u, k, t_kappa=tk, steps=steps, variant=variant)
        args = (u0, kappa, t_kappa)
    return jit_compile(fn, *jax.device_put(args))


class HeatEquation(InterleavedBenchmark):
    """Implicit-Euler heat equation, forward-mode derivative w.r.t. u0 or the diffusivity."""

    params = [[10, 100], [100, 500], ["initial", "diffusivity"], [*HEAT_VARIANTS, *EXTRA]]
    param_names = ["steps", "grid", "wrt", "variant"]
    operations = ("jvp",)
    baseline = BASELINE
    optimised = "fused"

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, steps, grid, wrt, variant):
        return _heat_call(steps, grid, wrt, variant)

    def reference(self, operation, steps, grid, wrt):
        return _heat_reference(steps, grid, wrt)


@functools.lru_cache(maxsize=None)
def _no_solve_call(solver, size, operation):
    # A jitted program with the ffi call's signature (the same input arrays; x, or x and x') and
    # no work: what calling a program of that signature costs, whatever it computes.
    problem = _device_problem(solver, size)
    if operation == "jvp":
        return jit_compile(lambda a, b, ta, tb: (b * 1.0, tb * 1.0), *problem)
    return jit_compile(lambda a, b: b * 1.0, *problem[:2])


class _DispatchFloor(InterleavedBenchmark):
    # The grid and roles both dispatch-floor classes share; no error companion (no_solve
    # solves nothing, and the ffi rows' error is recorded by the comparing classes).
    params = [SOLVERS, [10, 100, 500], ["no_solve", "ffi", *EXTRA]]
    param_names = ["solver", "size", "variant"]
    baseline = "no_solve"

    def reference(self, operation, solver, size):
        return None


class FFIDispatchFloor(_DispatchFloor):
    """The ffi JVP and primal beside programs of the same signature that solve nothing.

    ``no_solve`` takes the same arrays and returns arrays of the same shapes as the ffi call
    (x for the primal; x and x' for the JVP) and computes nothing: its time is the dispatch
    floor of a jitted call with that signature, and its jvp_over_primal the ratio that any JVP
    taking the tangents as extra inputs starts from. No error companion: ``no_solve`` solves
    nothing, and the ffi rows' error is recorded by LinearSolveJVP / TridiagonalSolveJVP.
    """

    operations = ("jvp", "primal")
    ratios = {"jvp_over_primal": ("jvp", "primal", "ratio")}

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, solver, size, variant):
        _check_variant(solver, variant)
        if variant == "no_solve":
            return _no_solve_call(solver, size, operation)
        return (_jvp_call if operation == "jvp" else _primal_call)(solver, size, variant)


# ------------------------------------------------------------------ reverse mode

# The variants with a reverse mode (lineax, the peer, is the baseline); "vjp" classes time the
# gradient of sum(x ** 2) with respect to the operator and b.
VJP_VARIANTS = ["lineax", "fused", "ffi"]
HEAT_VJP_VARIANTS = ["lineax", "factor_once", "factor_once_ffi"]


def _grad_loss(solver, variant):
    ls = _study()
    return lambda a, b: (ls.linear_solve(solver, a, b, variant=variant) ** 2).sum()


@functools.lru_cache(maxsize=None)
def _grad_call(solver, size, variant):
    import jax

    _check_variant(solver, variant)
    operator, vector, _, _ = _device_problem(solver, size)
    return jit_compile(jax.grad(_grad_loss(solver, variant), argnums=(0, 1)), operator, vector)


def _grad_reference(solver, size, seed=0):
    """The gradient of sum(x ** 2) in float64 numpy: lambda = A^-T 2x, then (-lambda x^T on the
    operator's pattern (its three bands; the full matrix for LU and Cholesky, lineax's
    convention), lambda)."""
    operator, vector, _, _ = _numpy_problem(solver, size, seed)
    a = _dense(solver, operator)
    x = np.linalg.solve(a, vector)
    lam = np.linalg.solve(a.T, 2 * x)
    full = -np.outer(lam, x)
    if solver == "tridiagonal":
        return (np.diag(full, -1), np.diag(full), np.diag(full, 1)), lam
    return full, lam


class LinearSolveVJP(InterleavedBenchmark):
    """The gradient of sum(x ** 2) w.r.t. (A, b) beside the primal solve, per solver and size."""

    params = [SOLVERS, SIZES, [*VJP_VARIANTS, *EXTRA]]
    param_names = ["solver", "size", "variant"]
    operations = ("grad", "primal")
    ratios = {"grad_over_primal": ("grad", "primal", "ratio")}
    baseline = "lineax"
    optimised = "ffi"

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, solver, size, variant):
        _check_variant(solver, variant)
        return (_grad_call if operation == "grad" else _primal_call)(solver, size, variant)

    def reference(self, operation, solver, size):
        if operation == "grad":
            return _grad_reference(solver, size)
        return _reference(solver, size)[0]


@functools.lru_cache(maxsize=None)
def _batched_grad_call(solver, size, variant):
    import jax

    _check_variant(solver, variant)
    problems = [_numpy_problem(solver, size, seed=s)[:2] for s in range(BATCH)]
    stacked = jax.device_put(jax.tree_util.tree_map(lambda *xs: np.stack(xs), *problems))
    return jit_compile(jax.vmap(jax.grad(_grad_loss(solver, variant), argnums=(0, 1))), *stacked)


class BatchedLinearSolveVJP(InterleavedBenchmark):
    """The gradient of 200 independent systems under `jax.vmap`."""

    params = [SOLVERS, [50], [*VJP_VARIANTS, *EXTRA]]
    param_names = ["solver", "size", "variant"]
    operations = ("grad",)
    baseline = "lineax"
    optimised = "ffi"

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, solver, size, variant):
        return _batched_grad_call(solver, size, variant)

    def reference(self, operation, solver, size):
        grads = [_grad_reference(solver, size, seed=s) for s in range(BATCH)]
        import jax

        return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *grads)


@functools.lru_cache(maxsize=None)
def _heat_grad_call(steps, grid, wrt, variant):
    import jax

    _check_variant("tridiagonal", variant)
    ls = _study()
    u0, kappa, _, _ = _heat_problem(grid, wrt)
    argnum = 0 if wrt == "initial" else 1
    loss = lambda u, k: (ls.heat_solve(u, k, steps=steps, variant=variant) ** 2).sum()
    return jit_compile(jax.grad(loss, argnums=argnum), *jax.device_put((u0, kappa)))


def _heat_grad_reference(steps, grid, wrt):
    """d sum(u ** 2) / d kappa = 2 u . u_dot, from the scipy reference (central differences in
    kappa)."""
    u, u_dot = _heat_reference(steps, grid, wrt)
    return np.float64(2 * np.dot(u, u_dot))


class HeatEquationVJP(InterleavedBenchmark):
    """The heat equation's gradient of sum(u ** 2) w.r.t. the diffusivity, beside its JVP.

    grad_over_jvp is reverse mode's cost over forward mode's for the same variant (one scalar
    parameter: one JVP gives the same derivative).
    """

    params = [[100], [500], ["diffusivity"], [*HEAT_VJP_VARIANTS, *EXTRA]]
    param_names = ["steps", "grid", "wrt", "variant"]
    operations = ("grad", "jvp")
    ratios = {"grad_over_jvp": ("grad", "jvp", "ratio")}
    baseline = "lineax"
    optimised = "factor_once_ffi"

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, steps, grid, wrt, variant):
        if operation == "grad":
            return _heat_grad_call(steps, grid, wrt, variant)
        return _heat_call(steps, grid, wrt, variant)

    def reference(self, operation, steps, grid, wrt):
        if operation == "grad":
            return _heat_grad_reference(steps, grid, wrt)
        return _heat_reference(steps, grid, wrt)


@functools.lru_cache(maxsize=None)
def _no_solve_grad_call(solver, size, operation):
    # A jitted program with the gradient's signature (A and b in, arrays of their shapes out).
    operator, vector, _, _ = _device_problem(solver, size)
    if operation == "grad":
        return jit_compile(lambda a, b: (_tree_scale(a), b * 1.0), operator, vector)
    return jit_compile(lambda a, b: b * 1.0, operator, vector)


def _tree_scale(tree):
    import jax

    return jax.tree_util.tree_map(lambda x: x * 1.0, tree)


class FFIDispatchFloorVJP(_DispatchFloor):
    """The ffi gradient and primal beside programs of the same signature that solve nothing
    (``no_solve``: A and b in, arrays of their shapes out). No error companion, as in
    FFIDispatchFloor."""

    operations = ("grad", "primal")
    ratios = {"grad_over_primal": ("grad", "primal", "ratio")}

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, solver, size, variant):
        _check_variant(solver, variant)
        if variant == "no_solve":
            return _no_solve_grad_call(solver, size, operation)
        return (_grad_call if operation == "grad" else _primal_call)(solver, size, variant)
