"""numpy-facing wrappers of the Cython Thomas kernels: input checks and lineax's error convention."""

from __future__ import annotations

import os

import numpy as np

from . import _checks, _thomas  # pyright: ignore[reportAttributeAccessIssue]  (a Cython extension)

_F64 = np.dtype(np.float64)


def _as_f64(x, argument, shape):
    # The common case (C-contiguous float64 of the right shape) is kept cheap: this wrapper is
    # inside the timed call. Anything else goes through the full checks; strided views are copied.
    if type(x) is np.ndarray and x.dtype == _F64 and x.shape == shape and x.flags.c_contiguous:
        return x
    dtype = _checks._dtype_of(x, argument)
    if dtype != _F64:
        raise TypeError(f"{argument} must be float64 for variant='cython', got {dtype}")
    if np.shape(x) != shape:
        raise ValueError(f"{argument} must have shape {shape}, got {np.shape(x)}")
    return np.ascontiguousarray(x)


def _bands(operator, argument, n=None):
    if not isinstance(operator, (tuple, list)) or len(operator) != 3:
        _checks.check_operator("tridiagonal", operator, argument=argument)  # raises the clear error
    lower, diag, upper = operator
    if n is None:
        n = np.shape(diag)[0] if np.ndim(diag) == 1 else -1
        if n < 1:
            raise ValueError(f"{argument} diag must be 1-D of length n >= 1, got shape {np.shape(diag)}")
    return (
        _as_f64(lower, f"{argument} lower", (n - 1,)),
        _as_f64(diag, f"{argument} diag", (n,)),
        _as_f64(upper, f"{argument} upper", (n - 1,)),
    )


def _finite_or_error(*arrays):
    if all(_thomas.all_finite(a) for a in arrays):
        return arrays
    if os.environ.get("EQX_ON_ERROR") == "nan":
        return tuple(np.full_like(a, np.nan) for a in arrays)
    raise np.linalg.LinAlgError(
        "tridiagonal solve produced a non-finite solution: the operator is singular or the "
        "Thomas algorithm (no pivoting) met a zero pivot (set EQX_ON_ERROR=nan to get NaN instead)"
    )


def _zero_bands(n):
    zero = np.zeros(n - 1)
    return zero, np.zeros(n), zero


def cython_solve(operator, vector):
    """Solve a tridiagonal system with the Cython Thomas algorithm.

    Arguments:
        operator: ``(lower, diag, upper)`` float64 arrays of shapes (n-1,), (n,), (n-1,).
        vector: float64 right-hand side, shape (n,).

    Returns:
        x as a numpy float64 array of shape (n,).
    """
    bands = _bands(operator, "operator")
    (x,) = _finite_or_error(_thomas.solve(*bands, _as_f64(vector, "vector", bands[1].shape)))
    return x


def cython_solve_jvp(operator, vector, t_operator=None, t_vector=None):
    """Tridiagonal solve and JVP with one Thomas factorisation (Cython, outside JAX).

    Arguments:
        operator: ``(lower, diag, upper)`` float64 arrays.
        vector: b, float64, shape (n,).
        t_operator: the operator's tangent with the same structure, or `None`.
        t_vector: b', shape (n,), or `None`.

    Returns:
        ``(x, x_dot)`` as numpy float64 arrays.
    """
    bands = _bands(operator, "operator")
    n = bands[1].shape[0]
    t_bands = _zero_bands(n) if t_operator is None else _bands(t_operator, "t_operator", n)
    vector = _as_f64(vector, "vector", (n,))
    t_vector = np.zeros(n) if t_vector is None else _as_f64(t_vector, "t_vector", (n,))
    return _finite_or_error(*_thomas.solve_jvp(*bands, vector, *t_bands, t_vector))


def cython_implicit_steps_jvp(operator, u0, t_operator=None, t_u0=None, *, steps: int):
    """Apply u <- A^-1 u `steps` times with its JVP, factorising A once (Cython).

    Arguments:
        operator: ``(lower, diag, upper)`` float64 arrays.
        u0: the initial state, float64, shape (n,).
        t_operator: the operator's tangent, or `None`.
        t_u0: the initial state's tangent, or `None`.
        steps: the number of steps, >= 1.

    Returns:
        ``(u, u_dot)`` after `steps` steps, numpy float64 arrays.
    """
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    bands = _bands(operator, "operator")
    n = bands[1].shape[0]
    t_bands = _zero_bands(n) if t_operator is None else _bands(t_operator, "t_operator", n)
    u0 = _as_f64(u0, "u0", (n,))
    t_u0 = np.zeros(n) if t_u0 is None else _as_f64(t_u0, "t_u0", (n,))
    return _finite_or_error(*_thomas.implicit_steps_jvp(*bands, u0, *t_bands, t_u0, int(steps)))
