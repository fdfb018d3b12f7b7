"""A multi-step implicit heat equation: the linear solve's JVP inside a time loop.

u_t = kappa u_xx on (0, 1) with zero Dirichlet boundaries, n interior points, implicit Euler:
(I - kappa dt L) u_{k+1} = u_k, a tridiagonal solve per step. Differentiated forward-mode with
respect to the initial condition u0 (the operator has no tangent) and/or the diffusivity kappa
(the operator has one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import variants as _variants
from . import _checks
from ._solve import SOLVE_JVP, linear_solve

HEAT_JVP = _variants.register(
    "linear_solve",
    "heat_jvp",
    {k: v for k, v in SOLVE_JVP.variants.items()},
    default=SOLVE_JVP.default,
)


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
        raise TypeError(f"kappa must be a scalar of u0's dtype {dtype}, got shape {np.shape(kappa)}, dtype {getattr(kappa, 'dtype', None)}")
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
        variant: the linear solve's variant (a JAX one or ``"lineax"``); it decides the JVP rule.

    Returns:
        u after `steps` steps, shape (n,).
    """
    _check(u0, kappa, steps, dt)
    operator = heat_operator(u0.shape[0], kappa, dt)

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
        variant: any registered variant; ``"cython"`` takes and returns numpy float64 arrays
            and factorises the (constant) operator once for all steps.

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
