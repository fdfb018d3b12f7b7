"""A multi-step implicit heat equation: the linear solve's JVP inside a time loop.

u_t = kappa u_xx on (0, 1) with zero Dirichlet boundaries, n interior points, implicit Euler:
(I - kappa dt L) u_{k+1} = u_k, a tridiagonal solve per step. Differentiated forward-mode with
respect to the initial condition u0 (the operator has no tangent) and/or the diffusivity kappa
(the operator has one).

The operator is the same at every step, so the factorisation can leave the time loop. The
linear-solve variants (``separate_solves`` ... ``ffi``) call `linear_solve` inside the
`lax.scan` and therefore factorise at every step (gtsv factorises inside each call). Two
variants hoist it:

- ``cython``: the Thomas algorithm in Cython (`_thomas.implicit_steps_jvp`), outside JAX: one
  factorisation, then a forward/back substitution per step for u and one for its tangent.
- ``factor_once``: the same algorithm in plain JAX, so that the comparison with ``cython`` is of
  implementations, not algorithms. JAX exposes no tridiagonal factorisation
  (`lax.linalg.tridiagonal_solve` is LAPACK gtsv, which factorises inside every call), so the
  Thomas factorisation is written here as a `lax.scan` over the grid, run once before the time
  loop; each step is then two substitution scans (forward, backward) over the stored factors.
  The JVP reuses the factors and always substitutes two columns per pass: u and u' when the
  operator has no tangent; with one, the time loop is pipelined (u_{k+2} and
  u'_{k+1} = A^-1 (u'_k - A' u_{k+1}) both need only u_{k+1}), see `_factored_steps_jvp`.
  No pivoting, like ``cython``: fine for this operator (strictly diagonally dominant, SPD).
- ``factor_once_ffi``: ``factor_once`` with each substitution as one XLA FFI custom call
  (`_ffi.thomas_substitute`, C++ loops over the stored factors) instead of two `lax.scan`s over
  the grid: the same factorisation, time loop and pipelining, the grid loops compiled as plain
  loops. CPU only, like ``ffi``.

Reverse mode with respect to u0 and kappa (``factor_once``, ``factor_once_ffi``): the JVP is a
`_reverse.fused_jvp`, so forward mode compiles the loop above while reverse mode runs the primal
loop once (one factorisation, keeping the states u_k when the operator has a tangent) and
transposes the tangent loop u'_{k+1} = A^-1 (u'_k - A' u_{k+1}): the adjoint loop runs
backwards, a transposed substitution per step with the same factors (JAX transposes the
substitution scans of ``factor_once``; ``factor_once_ffi`` runs the primal loop as one FFI call,
``perflab_heat_steps``, and the adjoint loop as another, ``perflab_heat_adjoint``).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from .. import variants as _variants
from . import _checks, _reverse
from ._solve import SOLVE_JVP, _matvec, linear_solve

HEAT_JVP = _variants.register(
    "linear_solve",
    "heat_jvp",
    {
        **{
            k: v + " (called at every time step: factorises at every step)"
            for k, v in SOLVE_JVP.variants.items()
            if k != "cython"
        },
        "cython": (
            "Thomas algorithm in Cython outside JAX, the factorisation hoisted out of the time loop: "
            "factorised once, one substitution per step for u and one for u'"
        ),
        "factor_once": (
            "the cython variant's algorithm in plain JAX: Thomas factorisation (a lax.scan) once before "
            "the lax.scan time loop, substitution scans with the stored factors inside it"
        ),
        "factor_once_ffi": (
            "factor_once with each step's substitution (u and u' as two columns) as one XLA FFI custom "
            "call into a C++ loop over the stored factors (CPU only)"
        ),
    },
    default=SOLVE_JVP.default,
    baseline=SOLVE_JVP.baseline,
    optimised=SOLVE_JVP.optimised,
)

_ZERO_PIVOT_MSG = (
    "heat equation: the Thomas factorisation met a zero pivot (set EQX_ON_ERROR=nan to get NaN instead of this error)"
)


@jax.jit
def _thomas_factor(operator):
    """Thomas factorisation of (lower, diag, upper): returns (m, cp, 1 / pivots), m the lower band
    (padded to n) divided by the pivots.

    den[i] = diag[i] - lower[i-1] cp[i-1], cp[i] = upper[i] / den[i], as in `_thomas.pyx`.
    Jitted so that it shows as one named call in the jaxpr: tests check where it runs.
    """
    lower, diag, upper = operator
    zero = jnp.zeros((1,), diag.dtype)
    lower_p, upper_p = jnp.concatenate([zero, lower]), jnp.concatenate([upper, zero])

    def step(cp_prev, bands):
        low, d, up = bands
        inv_den = 1.0 / (d - low * cp_prev)
        return up * inv_den, (up * inv_den, inv_den)

    _, (cp, inv_den) = jax.lax.scan(step, jnp.zeros((), diag.dtype), (lower_p, diag, upper_p))
    # One check, outside the time loop: a zero pivot makes inv_den infinite.
    inv_den = eqx.error_if(inv_den, ~jnp.all(jnp.isfinite(inv_den)), _ZERO_PIVOT_MSG)
    # The forward substitution's multipliers m_i = lower_i / den_i, formed once here: the
    # substitution y_i = rhs_i / den_i - m_i y_{i-1} then has one multiply-subtract on its
    # loop-carried chain instead of (rhs_i - lower_i y_{i-1}) / den_i's multiply, subtract and
    # multiply (the chain is what bounds the loop).
    return lower_p * inv_den, cp, inv_den


def _thomas_substitute(factors, rhs):
    """Solve with the factors of `_thomas_factor`; rhs of shape (n,) or (n, k)."""
    lower_p, cp, inv_den = factors  # lower_p: the multipliers m

    def forward(y_prev, row):
        m, inv, r = row
        y = r * inv - m * y_prev
        return y, y

    def backward(x_next, row):
        c, y = row
        x = y - c * x_next
        return x, x

    carry = jnp.zeros(rhs.shape[1:], rhs.dtype)
    lower_p, inv_den = (a.reshape(a.shape + (1,) * (rhs.ndim - 1)) for a in (lower_p, inv_den))
    _, y = jax.lax.scan(forward, carry, (lower_p, inv_den, rhs))
    _, x = jax.lax.scan(backward, carry, (cp.reshape(cp.shape + (1,) * (rhs.ndim - 1)), y), reverse=True)
    return x


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _factored_steps(substitute, steps, operator, factors, u0):
    """`steps` substitutions u <- A^-1 u with the stored factors (the factor_once time loop);
    `substitute(factors, rhs)` is `_thomas_substitute` or the FFI one."""

    def step(u, _):
        return substitute(factors, u), None

    u, _ = jax.lax.scan(step, u0, None, length=steps)
    return u


@functools.partial(_factored_steps.defjvp, symbolic_zeros=True)
def _factored_steps_jvp(substitute, steps, primals, tangents):
    # Forward mode lowers `_fused_steps_jvp`; reverse mode runs the primal loop keeping its states
    # (`_primal_steps`) and transposes `_tangent_steps` (substitutions with the same factors).
    operator, factors, u0 = primals
    t_operator, _, t_u0 = tangents
    t_u0 = jnp.zeros_like(u0) if isinstance(t_u0, SymbolicZero) else t_u0
    has_t_op = not all(isinstance(t, SymbolicZero) for t in t_operator)
    name = "factor_once_ffi" if substitute is not _thomas_substitute else "factor_once"

    def fused(*args):
        return _fused_steps_jvp(substitute, steps, has_t_op, args[:3], args[3:6], args[6], args[7:])

    def split(*args):
        if name == "factor_once_ffi":  # the loop as one call, keeping the states it needs
            out = _reverse.heat_steps(args[3:6], args[6], steps, with_states=has_t_op)
            return out[:1], (args[3:6], out[1] if has_t_op else None)
        return _primal_steps(substitute, steps, has_t_op, args[3:6], args[6])

    def linear(res, *tangent):
        if name == "factor_once_ffi":  # transposed: the adjoint loop as one call
            factors, states = res
            extra = (states,) if has_t_op else ()
            return (_reverse.heat_tangent_p.bind(*factors, *extra, *tangent, steps=steps, with_op=has_t_op),)
        return _tangent_steps(substitute, steps, res, tangent)

    tangent_in = (t_u0,)
    if has_t_op:
        t_operator = tuple(
            jnp.zeros_like(o) if isinstance(t, SymbolicZero) else t for o, t in zip(operator, t_operator)
        )
        tangent_in = (*t_operator, t_u0)
    u, t_u = _reverse.fused_jvp(
        (*operator, *factors, u0), tangent_in, fused=fused, split=split, linear=linear, n_known_out=1, name=name
    )
    return u, t_u


def _primal_steps(substitute, steps, has_t_op, factors, u0):
    # (u_steps,), residuals: the factors and, with an operator tangent, every state u_1..u_steps.
    def step(u, _):
        u = substitute(factors, u)
        return u, (u if has_t_op else None)

    u, states = jax.lax.scan(step, u0, None, length=steps)
    return (u,), (factors, states)


def _tangent_steps(substitute, steps, res, tangent):
    # u'_{k+1} = A^-1 (u'_k - A' u_{k+1}): linear in (A', u'_0) given the states.
    factors, states = res
    *t_operator, t_u0 = tangent
    if not t_operator:

        def free_step(t, _):
            return substitute(factors, t), None

        t, _ = jax.lax.scan(free_step, t_u0, None, length=steps)
        return (t,)

    def step(t, u):
        return substitute(factors, t - _matvec("tridiagonal", tuple(t_operator), u)), None

    t, _ = jax.lax.scan(step, t_u0, states)
    return (t,)


def _fused_steps_jvp(substitute, steps, has_t_op, operator, factors, u0, tangent):
    # Per step u_{k+1} = A^-1 u_k and u'_{k+1} = A^-1 (u'_k - A' u_{k+1}), the factors shared
    # (computed with the operator's gradient stopped, so its derivative enters through A' only).
    *t_operator, t_u0 = tangent
    if not has_t_op:
        # u and u' as the two columns of one substitution per step.
        def step(both, _):
            return substitute(factors, both), None

        both, _ = jax.lax.scan(step, jnp.stack([u0, t_u0], axis=-1), None, length=steps)
        return both[:, 0], both[:, 1]
    t_operator = tuple(t_operator)

    # With an operator tangent u'_{k+1} needs u_{k+1}, but u_{k+2} needs only u_{k+1} too: so
    # the loop carries (u_{k+1}, u'_k) and solves u_{k+2} and u'_{k+1} as the two columns of
    # one substitution (the same operations per column as one at a time), after a first
    # substitution of u_1 and before a last one of u'_steps.
    def step(both, _):
        x, t = both[:, 0], both[:, 1]
        rhs = jnp.stack([x, t - _matvec("tridiagonal", t_operator, x)], axis=-1)
        return substitute(factors, rhs), None

    u1 = substitute(factors, u0)
    both, _ = jax.lax.scan(step, jnp.stack([u1, t_u0], axis=-1), None, length=steps - 1)
    x, t = both[:, 0], both[:, 1]
    return x, substitute(factors, t - _matvec("tridiagonal", t_operator, x))


def heat_operator(n: int, kappa, dt: float):
    """The implicit-Euler operator I - kappa dt L as tridiagonal bands.

    Arguments:
        n: number of interior grid points (grid spacing 1 / (n + 1)).
        kappa: diffusivity, a scalar (may be traced).
        dt: time step.

    Returns:
        ``(lower, diag, upper)`` with shapes (n-1,), (n,), (n-1,), in kappa's dtype.
    """
    r = kappa * dt * (n + 1) ** 2
    off = -r * jnp.ones((n - 1,), jnp.result_type(kappa))
    return off, (1 + 2 * r) * jnp.ones((n,), jnp.result_type(kappa)), off


def _check(u0, kappa, steps, dt):
    dtype = _checks._dtype_of(u0, "u0")
    if np.ndim(u0) != 1 or np.shape(u0)[0] < 2:
        raise ValueError(f"u0 must be 1-D with at least 2 grid points, got shape {np.shape(u0)}")
    if np.shape(kappa) != () or _checks._dtype_of(kappa, "kappa") != dtype:
        raise TypeError(
            f"kappa must be a scalar of u0's dtype {dtype}, got shape {np.shape(kappa)}, "
            f"dtype {getattr(kappa, 'dtype', None)}"
        )
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt!r}")


def heat_solve(u0, kappa, *, steps: int, dt: float = 1e-4, variant: str | None = None):
    """Run `steps` implicit-Euler steps of the heat equation.

    Arguments:
        u0: initial state, shape (n,), floating.
        kappa: diffusivity, a scalar array of u0's dtype.
        steps: number of time steps (static).
        dt: time step.
        variant: the linear solve's variant (a JAX one, ``"lineax"`` or ``"ffi"``), which decides
            the JVP rule, or ``"factor_once"`` (factorise before the time loop; ``"factor_once_ffi"``
            the same with FFI substitutions, CPU only; both differentiable in reverse mode too). `None` means the
            default.

    Returns:
        u after `steps` steps, shape (n,).
    """
    variant = HEAT_JVP.check(HEAT_JVP.default if variant is None else variant)
    if variant == "cython":
        raise ValueError("variant='cython' runs outside JAX: call heat_jvp(..., variant='cython')")
    _check(u0, kappa, steps, dt)
    operator = heat_operator(u0.shape[0], kappa, dt)

    if variant in ("factor_once", "factor_once_ffi"):
        substitute = _thomas_substitute
        if variant == "factor_once_ffi":
            from . import _ffi

            _ffi.check_platform(u0, kappa, variant=variant)
            substitute = _ffi.thomas_substitute
        factors = _thomas_factor(jax.lax.stop_gradient(operator))
        return _factored_steps(substitute, steps, operator, factors, u0)

    def step(u, _):
        return linear_solve("tridiagonal", operator, u, variant=variant), None

    u, _ = jax.lax.scan(step, u0, None, length=steps)
    return u


def heat_jvp(u0, kappa, t_u0=None, t_kappa=None, *, steps: int, dt: float = 1e-4, variant: str | None = None):
    """Forward-mode derivative of `heat_solve` along (u0', kappa').

    A tangent left as `None` is not differentiated, so the solve sees a symbolic zero (``fused``
    then solves primal and tangent together).

    Arguments:
        u0: initial state, shape (n,).
        kappa: diffusivity, scalar array.
        t_u0: tangent of u0, shape (n,), or `None`.
        t_kappa: tangent of kappa, scalar, or `None`.
        steps: number of time steps.
        dt: time step.
        variant: any variant of `HEAT_JVP`; ``"cython"`` takes and returns numpy float64 arrays
            and factorises the (constant) operator once for all steps; ``"factor_once"`` does the
            same in JAX.

    Returns:
        ``(u, u_dot)`` after `steps` steps.
    """
    variant = HEAT_JVP.check(HEAT_JVP.default if variant is None else variant)
    _check(u0, kappa, steps, dt)
    if t_u0 is None and t_kappa is None:
        raise ValueError("heat_jvp needs at least one tangent: t_u0 or t_kappa")
    if variant == "cython":
        from ._cython import cython_implicit_steps_jvp

        n = np.shape(u0)[0]
        r = float(kappa) * dt * (n + 1) ** 2
        off = np.full(n - 1, -r)
        operator = (off, np.full(n, 1 + 2 * r), off)
        t_operator = None
        if t_kappa is not None:
            t_r = float(t_kappa) * dt * (n + 1) ** 2
            t_off = np.full(n - 1, -t_r)
            t_operator = (t_off, np.full(n, 2 * t_r), t_off)
        return cython_implicit_steps_jvp(operator, u0, t_operator, t_u0, steps=steps)

    def run(*args):
        u, k = u0, kappa
        if t_u0 is not None:
            u, args = args[0], args[1:]
        if t_kappa is not None:
            k = args[0]
        return heat_solve(u, k, steps=steps, dt=dt, variant=variant)

    primals = tuple(p for p, t in ((u0, t_u0), (kappa, t_kappa)) if t is not None)
    tangents = tuple(t for t in (t_u0, t_kappa) if t is not None)
    return jax.jvp(run, primals, tangents)
