"""Linear solves whose JVP rule is chosen by a variant name.

Every JAX variant computes x = A^-1 b the same way; they differ only in how the JVP
x' = A^-1 (b' - A' x) is organised. What the jaxpr says and what XLA compiles differ: XLA's
common-subexpression elimination merges identical LAPACK factorisation calls (getrf, potrf), so
after compilation every dense variant factorises A once and they differ only in their triangular
solves (counted in the optimised HLO at n = 100, JAX 0.10.2 CPU, operator and vector tangents;
`tests/test_linear_solve.py::test_xla_merges_repeated_factorisations` pins it):

- ``separate_solves`` (the seed's baseline): one full solve per tangent term (b' and -A'x). The
  jaxpr factorises A three times; compiled: one factorisation, 6 one-column triangular solves
  (2 per right-hand side). Tridiagonal: 3 gtsv calls (gtsv factorises inside each call, so
  nothing is merged).
- ``vmapped_solves`` (the seed's change): the tangent terms stacked and solved by one
  ``jax.vmap``-ed solve. Compiled: one factorisation, 2 one-column triangular solves for the
  primal and 2 two-column ones for the tangent pair. Tridiagonal: 2 gtsv calls.
- ``fused`` (the default, the optimised one): A factorised once; the tangent terms summed into one
  right-hand side that reuses the factorisation (compiled: 4 one-column triangular solves); when
  A has no tangent the primal and tangent right-hand sides are solved together as one multi-RHS
  solve (2 two-column triangular solves; one gtsv call for the tridiagonal case).
- ``lineax``: ``lineax.linear_solve`` and its own JVP, the peer (compiled like ``fused`` with an
  operator tangent: one factorisation, 4 one-column triangular solves).
- ``cython``: tridiagonal only, the Thomas algorithm in Cython, called outside JAX; primal and
  tangent share one factorisation.
- ``ffi``: the same JVP as XLA FFI custom calls into C++ kernels over LAPACK (``_ffi.py``): one
  custom call per JVP, factorisation shared by primal and tangent, CPU only. Reverse mode
  factorises once too: the forward call keeps its factors, the backward pass substitutes with
  the transposed operator (``_reverse.py``).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import lineax as lx
from jax.custom_derivatives import SymbolicZero

from .. import variants as _variants
from . import _checks

SOLVE_JVP = _variants.register(
    "linear_solve",
    "solve_jvp",
    {
        "separate_solves": (
            "a separate full solve per tangent term; XLA's CSE merges the repeated dense "
            "factorisations, so compiled it costs 2 extra triangular solves over fused (tridiagonal: 3 gtsv calls)"
        ),
        "vmapped_solves": (
            "tangent terms stacked into one vmapped solve; compiled: one factorisation, the tangent pair "
            "as two-column triangular solves (tridiagonal: 2 gtsv calls)"
        ),
        "lineax": "lineax.linear_solve with its own JVP (the peer)",
        "fused": (
            "factorise once, tangent terms summed into one solve; b-only tangents solved with the "
            "primal as one multi-column solve"
        ),
        "cython": (
            "tridiagonal only: Thomas algorithm in Cython, outside JAX, factorisation shared by primal and tangent"
        ),
        "ffi": (
            "XLA FFI custom call into a C++ kernel over LAPACK: primal and JVP in one call, "
            "factorisation shared, batch looped inside the kernel; CPU only"
        ),
    },
    default="fused",
    baseline="separate_solves",
    optimised="fused",
)
JAX_VARIANTS = ("separate_solves", "vmapped_solves", "fused")
"""The variants implemented by `_solve_jvp` itself (lineax, cython and ffi have their own paths)."""


def _ffi_solve(solver, operator, vector):
    # Imported on first use: loading the kernels registers their FFI targets with XLA.
    from . import _ffi

    dtype = jax.tree_util.tree_leaves(operator)[0].dtype
    if dtype not in (jnp.float32, jnp.float64):
        raise TypeError(f"variant='ffi' supports float32 and float64 operators, got operator dtype {dtype}")
    _ffi.check_platform(operator, vector)
    # The kernel checks x itself (ok: one flag per system), so the check here is one comparison
    # per system, not a scan of x (which would make XLA:CPU run the program off-thread, _ffi.py).
    x, ok = _ffi.ffi_solve_flagged(solver, operator, vector)
    return eqx.error_if(x, ~jnp.all(ok != 0), _SINGULAR_MSG)


_SINGULAR_MSG = (
    "linear solve produced a non-finite solution: the operator is singular, or not positive "
    "definite for solver='cholesky', or an input holds NaN or inf (set EQX_ON_ERROR=nan to get "
    "NaN instead of this error)"
)


def _pad_bands(operator):
    # lax.linalg.tridiagonal_solve wants three length-n bands with dl[0] = du[-1] = 0.
    lower, diag, upper = operator
    zero = jnp.zeros((1,), diag.dtype)
    return jnp.concatenate([zero, lower]), diag, jnp.concatenate([upper, zero])


def _factor(solver, operator):
    if solver == "lu":
        return jsl.lu_factor(operator)
    if solver == "cholesky":
        return jax.lax.linalg.cholesky(operator)
    return _pad_bands(operator)  # gtsv factorises inside every call: nothing to keep


def _solve_factored(solver, factor, rhs):
    """Solve for rhs of shape (n,) or (n, k) with a factorisation from `_factor`."""
    if solver == "lu":
        return jsl.lu_solve(factor, rhs)
    if solver == "cholesky":
        return jsl.cho_solve((factor, True), rhs)
    matrix_rhs = rhs if rhs.ndim == 2 else rhs[:, None]
    out = jax.lax.linalg.tridiagonal_solve(*factor, matrix_rhs)  # pyright: ignore[reportCallIssue]
    return out if rhs.ndim == 2 else out[:, 0]


def _plain_solve(solver, operator, rhs):
    return _solve_factored(solver, _factor(solver, operator), rhs)


def _matvec(solver, operator, x):
    if solver != "tridiagonal":
        return operator @ x
    lower, diag, upper = operator
    y = diag * x
    y = y.at[1:].add(lower * x[:-1])
    return y.at[:-1].add(upper * x[1:])


def _is_zero(tangent):
    return all(
        isinstance(t, SymbolicZero)
        for t in jax.tree_util.tree_leaves(tangent, is_leaf=lambda t: isinstance(t, SymbolicZero))
    )


def _materialise(tangent):
    return jax.tree_util.tree_map(
        lambda t: jnp.zeros(t.shape, t.dtype) if isinstance(t, SymbolicZero) else t,  # pyright: ignore[reportArgumentType]
        tangent,
        is_leaf=lambda t: isinstance(t, SymbolicZero),
    )


def _joint_plain(solver, factor, vector, t_vector):
    both = _solve_factored(solver, factor, jnp.stack([vector, t_vector], axis=-1))
    return both[:, 0], both[:, 1]


@functools.cache
def _joint_solve(solver):
    """(factor, b, b') -> (A^-1 b, A^-1 b') as one multi-right-hand-side solve.

    Under `jax.vmap` over the tangent only (`jax.jacfwd`, several tangent directions), the
    columns [b, b'_1 .. b'_k] go to one solve and the primal stays unbatched; stacking
    naively would batch the primal output, which `jacfwd` rejects.
    """

    @jax.custom_batching.custom_vmap
    def joint(factor, vector, t_vector):
        return _joint_plain(solver, factor, vector, t_vector)

    @joint.def_vmap
    def _rule(axis_size, in_batched, factor, vector, t_vector):
        factor_batched, vector_batched, t_batched = in_batched
        if not any(jax.tree_util.tree_leaves(factor_batched)) and not vector_batched:
            rhs = jnp.concatenate([vector[:, None], t_vector.T], axis=1)
            sol = _solve_factored(solver, factor, rhs)
            return (sol[:, 0], sol[:, 1:].T), (False, True)

        def bcast(x, batched):
            return x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))

        factor = jax.tree_util.tree_map(bcast, factor, factor_batched)
        out = jax.vmap(functools.partial(_joint_plain, solver))(
            factor, bcast(vector, vector_batched), bcast(t_vector, t_batched)
        )
        return out, (True, True)

    return joint


def _check_finite(x):
    return eqx.error_if(x, ~jnp.all(jnp.isfinite(x)), _SINGULAR_MSG)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _solve(solver, variant, operator, vector):
    return _check_finite(_plain_solve(solver, operator, vector))


@functools.partial(_solve.defjvp, symbolic_zeros=True)
def _solve_jvp(solver, variant, primals, tangents):
    operator, vector = primals
    t_operator, t_vector = tangents
    has_t_op, has_t_vec = not _is_zero(t_operator), not _is_zero(t_vector)
    if variant == "fused":
        factor = _factor(solver, operator)
        if not has_t_op:
            x, t_x = _joint_solve(solver)(factor, vector, _materialise(t_vector))
            return _check_finite(x), t_x
        x = _check_finite(_solve_factored(solver, factor, vector))
        rhs = -_matvec(solver, _materialise(t_operator), x)
        if has_t_vec:
            rhs = rhs + t_vector
        return x, _solve_factored(solver, factor, rhs)

    x = _check_finite(_plain_solve(solver, operator, vector))
    terms = []
    if has_t_vec:
        terms.append(t_vector)
    if has_t_op:
        terms.append(-_matvec(solver, t_operator, x))
    if not terms:
        return x, jnp.zeros_like(x)
    if variant == "separate_solves":
        return x, sum(_plain_solve(solver, operator, t) for t in terms)
    # "vmapped_solves": one vmapped solve over the stacked tangent right-hand sides.
    solves = jax.vmap(lambda rhs: _plain_solve(solver, operator, rhs))(jnp.stack(terms))
    return x, jnp.sum(solves, axis=0)


def _lineax_solve(solver, operator, vector):
    if solver == "tridiagonal":
        lower, diag, upper = operator
        op = lx.TridiagonalLinearOperator(diag, lower, upper)
        lx_solver = lx.Tridiagonal()
    elif solver == "lu":
        op, lx_solver = lx.MatrixLinearOperator(operator), lx.LU()
    else:
        op = lx.MatrixLinearOperator(operator, lx.positive_semidefinite_tag)
        lx_solver = lx.Cholesky()
    return lx.linear_solve(op, vector, lx_solver).value


def linear_solve(solver: str, operator, vector, *, variant: str | None = None):
    """Solve A x = b, differentiable with the JVP rule of `variant` (and in reverse mode).

    Works under `jax.jit`, `jax.vmap` and `jax.jvp`. Singular (or, for Cholesky, non-SPD)
    operators follow lineax's convention: an error at run time, or NaN with `EQX_ON_ERROR=nan`.

    Arguments:
        solver: ``"tridiagonal"``, ``"lu"`` or ``"cholesky"`` (the operator must be SPD).
        operator: for ``"tridiagonal"`` a tuple ``(lower, diag, upper)`` of shapes (n-1,), (n,),
            (n-1,); otherwise an (n, n) matrix. Floating dtype.
        vector: the right-hand side b, shape (n,), same dtype as the operator.
        variant: a JAX variant (``"separate_solves"``, ``"vmapped_solves"``, ``"fused"``),
            ``"lineax"`` or ``"ffi"`` (CPU only; `jax.grad` factorises once, a second
            derivative raises an error naming the variant);
            `None` means the registry's default. ``"cython"`` is not a JAX function: use
            `linear_solve_jvp` or `perflab.linear_solve.cython_solve`.

    Returns:
        x, shape (n,).
    """
    variant = SOLVE_JVP.check(SOLVE_JVP.default if variant is None else variant)
    n, dtype = _checks.check_operator(solver, operator)
    _checks.check_vector(vector, n, dtype)
    _checks.check_values(solver, operator, vector)
    if variant == "lineax":
        return _lineax_solve(solver, tuple(operator) if solver == "tridiagonal" else operator, vector)
    if variant == "cython":
        raise ValueError(
            "variant='cython' runs outside JAX: call linear_solve_jvp(..., variant='cython') "
            "or perflab.linear_solve.cython_solve"
        )
    if solver == "tridiagonal":
        operator = tuple(operator)
    if variant == "ffi":
        return _ffi_solve(solver, operator, vector)
    return _solve(solver, variant, operator, vector)


def linear_solve_jvp(
    solver: str,
    operator,
    vector,
    t_operator=None,
    t_vector=None,
    *,
    variant: str | None = None,
):
    """The solution of A x = b and its forward-mode derivative along (A', b').

    Arguments:
        solver: ``"tridiagonal"``, ``"lu"`` or ``"cholesky"``.
        operator: A, as in `linear_solve`.
        vector: b, shape (n,).
        t_operator: A', the same structure as `operator`, or `None` for no operator tangent.
        t_vector: b', shape (n,), or `None` for no right-hand-side tangent.
        variant: any registered variant (see `SOLVE_JVP`); `None` means the default.
            ``"cython"`` (tridiagonal only) takes and returns numpy float64 arrays. ``"ffi"``
            computes x and x_dot in one XLA FFI custom call (CPU only).

    Returns:
        ``(x, x_dot)`` with x_dot = A^-1 (b' - A' x).
    """
    variant = SOLVE_JVP.check(SOLVE_JVP.default if variant is None else variant)
    if variant == "cython":
        from ._cython import cython_solve_jvp

        if _checks.check_solver(solver) != "tridiagonal":
            raise ValueError(f"variant='cython' exists for solver='tridiagonal' only, got solver={solver!r}")
        return cython_solve_jvp(operator, vector, t_operator, t_vector)  # validates its inputs
    n, dtype = _checks.check_operator(solver, operator)
    _checks.check_vector(vector, n, dtype)
    _checks.check_tangents(solver, operator, t_operator, t_vector, n, dtype)
    _checks.check_values(solver, operator, vector, t_operator, t_vector)

    if solver == "tridiagonal":
        operator = tuple(operator)
        t_operator = None if t_operator is None else tuple(t_operator)
    if t_operator is None and t_vector is None:
        x = linear_solve(solver, operator, vector, variant=variant)
        return x, jnp.zeros_like(x)
    if t_operator is None:
        return jax.jvp(lambda b: linear_solve(solver, operator, b, variant=variant), (vector,), (t_vector,))
    if t_vector is None:
        return jax.jvp(lambda a: linear_solve(solver, a, vector, variant=variant), (operator,), (t_operator,))
    return jax.jvp(
        lambda a, b: linear_solve(solver, a, b, variant=variant),
        (operator, vector),
        (t_operator, t_vector),
    )
