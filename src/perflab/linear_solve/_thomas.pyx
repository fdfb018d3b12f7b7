"""Thomas-algorithm tridiagonal solves over float64 buffers, with the JVP reusing the factorisation.

Conventions (shared with `perflab.linear_solve`): an n x n tridiagonal matrix is given by
`lower` (n-1: A[i, i-1] = lower[i-1]), `diag` (n) and `upper` (n-1: A[i, i+1] = upper[i]).
No pivoting: the algorithm is stable for diagonally dominant or SPD matrices; a zero pivot gives
a non-finite result that the Python wrapper turns into an error.

These are the raw kernels: shapes, dtypes and contiguity are checked by the callers in
`_cython.py`, so every buffer here is C-contiguous float64 of the documented length.
"""

import numpy as np

cimport cython


cdef void _factor(
    const double[::1] lower,
    const double[::1] diag,
    const double[::1] upper,
    double[::1] cp,
    double[::1] inv_den,
) noexcept nogil:
    # cp[i] = upper[i] / den[i]; den[i] = diag[i] - lower[i-1] * cp[i-1].
    cdef Py_ssize_t n = diag.shape[0]
    cdef Py_ssize_t i
    inv_den[0] = 1.0 / diag[0]
    if n > 1:
        cp[0] = upper[0] * inv_den[0]
    for i in range(1, n):
        inv_den[i] = 1.0 / (diag[i] - lower[i - 1] * cp[i - 1])
        if i < n - 1:
            cp[i] = upper[i] * inv_den[i]


cdef void _substitute(
    const double[::1] lower,
    const double[::1] cp,
    const double[::1] inv_den,
    const double[::1] rhs,
    double[::1] x,
) noexcept nogil:
    cdef Py_ssize_t n = inv_den.shape[0]
    cdef Py_ssize_t i
    x[0] = rhs[0] * inv_den[0]
    for i in range(1, n):
        x[i] = (rhs[i] - lower[i - 1] * x[i - 1]) * inv_den[i]
    for i in range(n - 2, -1, -1):
        x[i] -= cp[i] * x[i + 1]


cdef void _tangent_rhs(
    const double[::1] t_lower,
    const double[::1] t_diag,
    const double[::1] t_upper,
    const double[::1] t_rhs,
    const double[::1] x,
    double[::1] out,
) noexcept nogil:
    # out = t_rhs - A' x, with A' the tridiagonal tangent of the operator.
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = t_rhs[i] - t_diag[i] * x[i]
    for i in range(1, n):
        out[i] -= t_lower[i - 1] * x[i - 1]
    for i in range(n - 1):
        out[i] -= t_upper[i] * x[i + 1]


def all_finite(const double[::1] x):
    """True when every entry of x is finite (the callers' singularity check, without temporaries)."""
    cdef Py_ssize_t i
    cdef double acc = 0.0
    with nogil:
        for i in range(x.shape[0]):
            acc += x[i] * 0.0  # inf * 0 and nan * 0 are nan: one pass, no branch
    return acc == 0.0


def solve(const double[::1] lower, const double[::1] diag, const double[::1] upper,
          const double[::1] rhs):
    """Solve A x = rhs; returns x as a new float64 array."""
    cdef Py_ssize_t n = diag.shape[0]
    cdef double[::1] cp = np.empty(max(n - 1, 1))
    cdef double[::1] inv_den = np.empty(n)
    x = np.empty(n)
    cdef double[::1] xv = x
    with nogil:
        _factor(lower, diag, upper, cp, inv_den)
        _substitute(lower, cp, inv_den, rhs, xv)
    return x


def solve_jvp(const double[::1] lower, const double[::1] diag, const double[::1] upper,
              const double[::1] rhs,
              const double[::1] t_lower, const double[::1] t_diag, const double[::1] t_upper,
              const double[::1] t_rhs):
    """Solve A x = rhs and its JVP x' = A^-1 (rhs' - A' x) with one factorisation."""
    cdef Py_ssize_t n = diag.shape[0]
    cdef double[::1] cp = np.empty(max(n - 1, 1))
    cdef double[::1] inv_den = np.empty(n)
    cdef double[::1] work = np.empty(n)
    x = np.empty(n)
    t_x = np.empty(n)
    cdef double[::1] xv = x
    cdef double[::1] txv = t_x
    with nogil:
        _factor(lower, diag, upper, cp, inv_den)
        _substitute(lower, cp, inv_den, rhs, xv)
        _tangent_rhs(t_lower, t_diag, t_upper, t_rhs, xv, work)
        _substitute(lower, cp, inv_den, work, txv)
    return x, t_x


def implicit_steps_jvp(const double[::1] lower, const double[::1] diag, const double[::1] upper,
                       const double[::1] u0,
                       const double[::1] t_lower, const double[::1] t_diag,
                       const double[::1] t_upper, const double[::1] t_u0,
                       Py_ssize_t steps):
    """Apply u <- A^-1 u `steps` times, with the JVP; A is factorised once for all steps."""
    cdef Py_ssize_t n = diag.shape[0]
    cdef Py_ssize_t k
    cdef double[::1] cp = np.empty(max(n - 1, 1))
    cdef double[::1] inv_den = np.empty(n)
    cdef double[::1] work = np.empty(n)
    u = np.array(u0, dtype=np.float64)
    t_u = np.array(t_u0, dtype=np.float64)
    cdef double[::1] uv = u
    cdef double[::1] tuv = t_u
    with nogil:
        _factor(lower, diag, upper, cp, inv_den)
        for k in range(steps):
            # u_{k+1} = A^-1 u_k ; t_u_{k+1} = A^-1 (t_u_k - A' u_{k+1}); substitution is in place-safe
            # because x[i] only reads rhs[i] before writing x[i].
            _substitute(lower, cp, inv_den, uv, uv)
            _tangent_rhs(t_lower, t_diag, t_upper, tuv, uv, work)
            _substitute(lower, cp, inv_den, work, tuv)
    return u, t_u
