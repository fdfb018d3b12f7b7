"""numpy-facing wrappers of the Cython Thomas kernels: input checks and lineax's error convention."""

from __future__ import annotations

import os

import numpy as np

from . import _checks, _thomas


def _as_f64(x, argument):
    if type(x) is np.ndarray and x.dtype == np.float64 and x.flags.c_contiguous:
        return x  # the common case, kept cheap: this wrapper is inside the timed call
    dtype = _checks._dtype_of(x, argument)
    if dtype != np.float64:
        raise TypeError(f"{argument} must be float64 for variant='cython', got {dtype}")
    # The kernels take C-contiguous buffers; a strided view is copied, not rejected.
    return np.ascontiguousarray(np.asarray(x))


def _operator(operator, argument):
    n, _ = _checks.check_operator("tridiagonal", operator, argument=argument)
    lower, diag, upper = operator
    return n, tuple(_as_f64(b, f"{argument} {name}") for b, name in zip((lower, diag, upper), ("lower", "diag", "upper")))


def _finite_or_error(*arrays):
    if all(_thomas.all_finite(a) for a in arrays):
        return arrays
    if os.environ.get("EQX_ON_ERROR") == "nan":
        return tuple(np.full_like(a, np.nan) for a in arrays)
    raise np.linalg.LinAlgError(
        "tridiagonal solve produced a non-finite solution: the operator is singular or the "
        "Thomas algorithm (no pivoting) met a zero pivot (set EQX_ON_ERROR=nan to get NaN instead)"
    )


def cython_solve(operator, vector):
    """Solve a tridiagonal system with the Cython Thomas algorithm.

    Arguments:
        operator: ``(lower, diag, upper)`` float64 arrays of shapes (n-1,), (n,), (n-1,).
        vector: float64 right-hand side, shape (n,).

    Returns:
        x as a numpy float64 array of shape (n,).
    """
    n, bands = _operator(operator, "operator")
    _checks.check_vector(vector, n, np.dtype(np.float64))
    (x,) = _finite_or_error(_thomas.solve(*bands, _as_f64(vector, "vector")))
    return x


def _tangent_bands(t_operator, n):
    if t_operator is None:
        zero = np.zeros(max(n - 1, 0))
        return zero, np.zeros(n), zero
    tn, bands = _operator(t_operator, "t_operator")
    if tn != n:
        raise ValueError(f"t_operator must have size {n} like operator, got {tn}")
    return bands


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
    n, bands = _operator(operator, "operator")
    _checks.check_vector(vector, n, np.dtype(np.float64))
    t_bands = _tangent_bands(t_operator, n)
    if t_vector is None:
        t_vector = np.zeros(n)
    else:
        _checks.check_vector(t_vector, n, np.dtype(np.float64), argument="t_vector")
    return _finite_or_error(*_thomas.solve_jvp(*bands, _as_f64(vector, "vector"), *t_bands, _as_f64(t_vector, "t_vector")))


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
    n, bands = _operator(operator, "operator")
    _checks.check_vector(u0, n, np.dtype(np.float64), argument="u0")
    t_bands = _tangent_bands(t_operator, n)
    t_u0 = np.zeros(n) if t_u0 is None else _as_f64(t_u0, "t_u0")
    _checks.check_vector(t_u0, n, np.dtype(np.float64), argument="t_u0")
    return _finite_or_error(*_thomas.implicit_steps_jvp(*bands, _as_f64(u0, "u0"), *t_bands, t_u0, int(steps)))
