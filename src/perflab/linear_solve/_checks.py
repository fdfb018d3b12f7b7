import numpy as np

SOLVERS = ("tridiagonal", "lu", "cholesky")


def _dtype_of(x, argument):
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        raise TypeError(f"{argument} must be an array, got {type(x).__name__}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f" and not np.issubdtype(dtype, np.floating):
        raise TypeError(f"{argument} must have a floating dtype (float32 or float64), got {dtype}")
    return np.dtype(dtype)


def check_solver(solver):
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r} is not supported; expected one of {list(SOLVERS)}")
    return solver


def check_operator(solver, operator, argument="operator"):
    """Validate an operator for `solver`; return (n, dtype)."""
    check_solver(solver)
    if solver == "tridiagonal":
        if not isinstance(operator, (tuple, list)) or len(operator) != 3:
            raise ValueError(
                f"{argument} for solver='tridiagonal' must be a tuple (lower, diag, upper), "
                f"got {type(operator).__name__}"
                + (f" of length {len(operator)}" if isinstance(operator, (tuple, list)) else "")
            )
        lower, diag, upper = operator
        dtype = _dtype_of(diag, f"{argument} diag")
        if np.ndim(diag) != 1 or np.shape(diag)[0] < 1:
            raise ValueError(f"{argument} diag must be 1-D of length n >= 1, got shape {np.shape(diag)}")
        n = np.shape(diag)[0]
        for name, band in (("lower", lower), ("upper", upper)):
            if _dtype_of(band, f"{argument} {name}") != dtype:
                raise TypeError(f"{argument} {name} has dtype {band.dtype} but diag has {dtype}; they must match")
            if np.shape(band) != (n - 1,):
                raise ValueError(
                    f"{argument} {name} must have shape ({n - 1},) (n - 1 for diag of length {n}), got {np.shape(band)}"
                )
        return n, dtype
    dtype = _dtype_of(operator, argument)
    shape = np.shape(operator)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 1:
        raise ValueError(f"{argument} for solver={solver!r} must be a square (n, n) matrix, got shape {shape}")
    return shape[0], dtype


def check_vector(vector, n, dtype, argument="vector"):
    vdtype = _dtype_of(vector, argument)
    if np.shape(vector) != (n,):
        raise ValueError(f"{argument} must have shape ({n},) to match the operator, got {np.shape(vector)}")
    if vdtype != dtype:
        raise TypeError(f"{argument} has dtype {vdtype} but the operator has {dtype}; they must match")


def check_tangents(solver, operator, t_operator, t_vector, n, dtype):
    if t_operator is not None:
        tn, tdtype = check_operator(solver, t_operator, argument="t_operator")
        if tn != n or tdtype != dtype:
            raise ValueError(f"t_operator must match operator (size {n}, dtype {dtype}), got size {tn}, dtype {tdtype}")
    if t_vector is not None:
        check_vector(t_vector, n, dtype, argument="t_vector")


def _concrete(x):
    # Values can be checked only outside a trace; under jit the finite-solution check of the
    # solve (eqx.error_if) is what remains.
    import jax
    from jax.core import Tracer

    leaves = jax.tree_util.tree_leaves(x)
    return not any(isinstance(leaf, Tracer) for leaf in leaves)


def check_values(solver, operator, vector, t_operator=None, t_vector=None):
    """Reject non-finite inputs and, for cholesky, a non-symmetric operator (or tangent), when the
    values are known (outside a trace). A cholesky solve reads one triangle only, so a
    non-symmetric matrix would silently be solved as another (symmetrised) matrix."""
    for argument, x in (("vector", vector), ("t_vector", t_vector)):
        if x is not None and _concrete(x):
            bad = np.flatnonzero(~np.isfinite(np.asarray(x)))
            if bad.size:
                raise ValueError(f"{argument} holds NaN or inf (first at index {bad[0]}); expected finite values")
    for argument, a in (("operator", operator), ("t_operator", t_operator)):
        if a is None or not _concrete(a):
            continue
        bands = [np.asarray(b) for b in (a if solver == "tridiagonal" else (a,))]
        if any(not np.all(np.isfinite(b)) for b in bands):
            raise ValueError(f"{argument} holds NaN or inf; expected finite values")
        if solver == "cholesky":
            m = bands[0]
            asym = float(np.max(np.abs(m - m.T))) if m.size else 0.0
            scale = float(np.max(np.abs(m))) if m.size else 0.0
            if asym > 1e3 * np.finfo(m.dtype).eps * max(scale, 1.0):
                raise ValueError(
                    f"{argument} for solver='cholesky' must be symmetric: max |A - A^T| = {asym:.3g} "
                    f"(max |A| = {scale:.3g}); use solver='lu' for a general matrix"
                )
