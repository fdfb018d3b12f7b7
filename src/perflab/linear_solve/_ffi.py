"""The ``ffi`` variant: linear solve and JVP as XLA FFI custom calls into C++ kernels.

The kernels (``kernels/*.cc``, loaded by `_kernels`) call LAPACK through scipy's ``cython_lapack``/``cython_blas``
function pointers, which are handed over once here, at import, before the targets are
registered with `jax.ffi.register_ffi_target`. Per call:

- primal (``perflab_<solver>_solve``): factorise, solve;
- JVP with an operator tangent (``perflab_<solver>_jvp``): factorise once, solve x, form
  b' - A' x inside the kernel, solve it with the same factors: x and x' from one custom call;
- JVP with a right-hand-side tangent only (``perflab_<solver>_jvp_vector``): factorise once and
  solve [b, b'] as one two-column solve.

LU uses getrf/getrs, Cholesky potrf/potrs (trsv for one column), the tridiagonal solver gttrf
and gttrs' substitutions (LU with partial pivoting of the bands, gtsv's algorithm with the
factors kept for the tangent). Every call also returns an ok flag per system, which
`linear_solve` checks (see `_call`). Under
`jax.vmap` (``vmap_method="expand_dims"``) the whole batch goes to one call and the kernel loops
over it, factorising once per distinct operator (so `jax.jacfwd` over b factorises once). A
batch of distinct operators with enough work (about 2e5 estimated flops or more, e.g. 200 dense
systems of n = 50) is split into small chunks run on the calling thread and on XLA's intra-op
thread pool (the FFI's ``ThreadPool`` context), so it uses the machine's cores; a shared
operator stays on one thread, factorised once. Tridiagonal JVPs of distinct operators are
solved four at a time with their loops interleaved (the same arithmetic as gttrf and the
one-system substitutions, bit for bit): one system's factorisation and substitutions are chains
of dependent operations, and four independent chains keep the core busy.

Reverse mode (`jax.grad`, `jax.vjp`, `jax.linear_transpose`): the JVP is a `_reverse.fused_jvp`
whose forward-mode lowering is the single fused call above; linearised for reverse mode it runs
``perflab_<solver>_factor_solve`` (x and the factors F, one factorisation) and transposes
``perflab_<solver>_tangent`` into ``perflab_<solver>_cotangent``: lambda = A^-T g by the
transposed substitution with F (getrs 'N' on the factors of A^T, potrs' two triangular solves,
gttrs' transposed substitutions), the operator's cotangent -lambda x^T on its pattern. Once
differentiable: a JVP of a gradient raises an error naming the variant. CPU only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.core import Tracer
from jax.custom_derivatives import SymbolicZero

from . import _kernels, _reverse

_LAPACK = ("getrf", "getrs", "potrf", "potrs", "gttrf", "gttrs")


def _register():
    from scipy.linalg import cython_blas, cython_lapack  # pyright: ignore[reportAttributeAccessIssue]  (compiled, no stubs)

    capsules = {}
    for prefix in "ds":
        for name in _LAPACK:
            capsules[prefix + name] = cython_lapack.__pyx_capi__[prefix + name]
        for name in ("gemv", "trsv"):
            capsules[prefix + name] = cython_blas.__pyx_capi__[prefix + name]
    _kernels.set_lapack(capsules)
    targets = _kernels.targets()
    for name, capsule in targets.items():
        jax.ffi.register_ffi_target(name, capsule, platform="cpu")
    return tuple(targets)


TARGETS: tuple[str, ...] = _register()
"""The FFI target names registered (CPU) when this module is imported."""

_CPU_ONLY = (
    "variant={variant!r} runs on CPU only (its XLA FFI kernels are registered for the 'cpu' platform), "
    "but {what} is on platform {platform!r}: use variant='fused' or 'lineax' there (the heat "
    "equation: also 'factor_once')"
)


def check_platform(*arrays, variant="ffi"):
    """Raise a clear error unless the computation will run on CPU.

    Arguments:
        arrays: the inputs (leaves of pytrees); concrete arrays are checked by their devices,
            tracers by JAX's default backend.
        variant: the variant named in the error.

    Returns:
        None.
    """
    leaves = jax.tree_util.tree_leaves(arrays)
    platforms = {
        d.platform
        for leaf in leaves
        if isinstance(leaf, jax.Array) and not isinstance(leaf, Tracer)
        for d in leaf.devices()
    }
    what = "an input array"
    if not platforms:  # tracers or numpy: they run where JAX's default backend is
        platforms, what = {jax.default_backend()}, "JAX's default backend"
    if platforms != {"cpu"}:
        raise ValueError(_CPU_ONLY.format(variant=variant, what=what, platform=sorted(platforms - {"cpu"})[0]))


def _operands(solver, operator):
    return tuple(operator) if solver == "tridiagonal" else (operator,)


def _call(target, x_like, n_out, *operands):
    # The kernel loops over the batch itself: under jax.vmap, "expand_dims" passes every operand
    # with the batch axes in front (size 1 where unbatched) to one call. The last output is the
    # kernel's per-system ok flag (1 where factorised and x finite, else 0), so the check of the
    # solution costs XLA one comparison per system instead of a scan of x: the compiled program
    # then stays under XLA:CPU's "cheap computation" estimate (fewer than 1000 flops, the
    # custom call counting none), and PjRt runs it inline on the calling thread instead of
    # handing it to its thread pool.
    shape = jax.ShapeDtypeStruct(x_like.shape, x_like.dtype)
    ok = jax.ShapeDtypeStruct(x_like.shape[:-1], x_like.dtype)
    out = jax.ffi.ffi_call(target, (shape,) * n_out + (ok,), vmap_method="expand_dims")(*operands)
    return tuple(out)


@functools.cache
def _jvp_call(target, n_primal):
    """One FFI call returning (x, x', ok) from (operator buffers..., b, tangents...).

    Under `jax.vmap` over the tangents only (`jax.jacfwd`, several tangent directions) x must stay
    unbatched: `jacfwd` rejects a batched primal output. So the batching rule hands the whole
    batch to the kernel (which factorises the shared operator once and solves x once) and
    returns x unbatched when the primal inputs (the first `n_primal` operands) are.
    """

    @jax.custom_batching.custom_vmap
    def call(*operands):
        return _call(target, operands[n_primal - 1], 2, *operands)

    @call.def_vmap
    def _rule(axis_size, in_batched, *operands):
        # Unbatched operands get a leading axis of 1, which the kernel broadcasts ("expand_dims").
        operands = [o if batched else o[None] for o, batched in zip(operands, in_batched)]
        b = operands[n_primal - 1]
        like = jax.ShapeDtypeStruct((axis_size, *b.shape[1:]), b.dtype)
        x, t_x, ok = _call(target, like, 2, *operands)
        if not any(in_batched[:n_primal]):
            return (x[0], t_x, ok[0]), (False, True, False)
        return (x, t_x, ok), (True, True, True)

    return call


def ffi_solve(solver, operator, vector):
    """x = A^-1 b through the FFI kernel; differentiable once, in forward mode (one call per JVP)
    and in reverse mode (one factorisation per gradient).

    Inputs are assumed checked (`linear_solve` does it).

    Arguments:
        solver: ``"tridiagonal"``, ``"lu"`` or ``"cholesky"``.
        operator: an (n, n) matrix, or ``(lower, diag, upper)`` for ``"tridiagonal"``.
        vector: b, shape (n,).

    Returns:
        x, shape (n,); NaN where the operator is singular (or not SPD for Cholesky).
    """
    return ffi_solve_flagged(solver, operator, vector)[0]


def _op_cores(solver, n):
    return ((n - 1,), (n,), (n - 1,)) if solver == "tridiagonal" else ((n, n),)


def _factor_solve(solver, ops, vector):
    # (x, ok, F): the primal solve keeping its factorisation F for the tangent part.
    n = vector.shape[-1]
    rows = {"lu": n + 1, "cholesky": n, "tridiagonal": 6}[solver]
    lead = vector.shape[:-1]
    outs = (
        jax.ShapeDtypeStruct(vector.shape, vector.dtype),
        jax.ShapeDtypeStruct(lead, vector.dtype),
        jax.ShapeDtypeStruct((*lead, rows, n), vector.dtype),
    )
    return jax.ffi.ffi_call(f"perflab_{solver}_factor_solve", outs, vmap_method="expand_dims")(*ops, vector)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def ffi_solve_flagged(solver, operator, vector):
    """`ffi_solve` with the kernel's check: (x, ok), ok 1.0 where the system was factorised and x
    is finite, else 0.0 (shape: the batch shape; () for one system). Its tangent is zero.

    Linear in `vector` for `jax.linear_transpose`: partially evaluated with the operator known,
    it factorises once and stages the substitution (transposed: the transposed substitution).

    Arguments:
        solver, operator, vector: as for `ffi_solve`.

    Returns:
        (x, ok).
    """
    ops = _operands(solver, operator)
    n = vector.shape[-1]

    def fused(*args):
        x, ok = _call(f"perflab_{solver}_solve", args[-1], 1, *args)
        return ok, x

    def split(*ops):
        _, ok, factors = _factor_solve(solver, ops, jnp.zeros(ops[-1].shape[:-2] + (n,), ops[0].dtype))
        return (ok,), (factors,)

    def linear(res, b):
        return (_reverse.ffi_tangent(solver, res[0], None, None, b, op_cores=_op_cores(solver, n)),)

    ok, x = _reverse.fused_jvp(ops, (vector,), fused=fused, split=split, linear=linear, n_known_out=1, name="ffi")
    return x, ok


@functools.partial(ffi_solve_flagged.defjvp, symbolic_zeros=True)
def _ffi_solve_jvp(solver, primals, tangents):
    # Forward mode lowers `fused`, one FFI call (factorisation shared by x and x'); reverse mode
    # runs `split` (the factorisation kept) and transposes `linear` (substitutions reusing it).
    operator, vector = primals
    t_operator, t_vector = tangents
    op_zero = all(
        isinstance(t, SymbolicZero)
        for t in jax.tree_util.tree_leaves(t_operator, is_leaf=lambda t: isinstance(t, SymbolicZero))
    )
    vec_zero = isinstance(t_vector, SymbolicZero)
    if op_zero and vec_zero:
        x, ok = ffi_solve_flagged(solver, operator, vector)
        return (x, ok), (jnp.zeros_like(x), jnp.zeros_like(ok))
    if vec_zero:
        t_vector = jnp.zeros_like(vector)
    ops = _operands(solver, operator)
    n = vector.shape[-1]
    op_cores = _op_cores(solver, n)
    if op_zero:
        n_primal = len(ops) + 1

        def fused_vector(*args):
            x, t_x, ok = _jvp_call(f"perflab_{solver}_jvp_vector", n_primal)(*args)
            return x, ok, t_x

        def split_vector(*primal):
            x, ok, factors = _factor_solve(solver, primal[:-1], primal[-1])
            return (x, ok), (factors,)

        def linear_vector(res, t_b):
            return (_reverse.ffi_tangent(solver, res[0], None, None, t_b, op_cores=op_cores),)

        fused, split, linear, tangent_in = fused_vector, split_vector, linear_vector, (t_vector,)
    else:
        t_operator = jax.tree_util.tree_map(
            lambda o, t: jnp.zeros_like(o) if isinstance(t, SymbolicZero) else t,
            operator,
            t_operator,
            is_leaf=lambda t: isinstance(t, SymbolicZero),
        )
        n_primal = len(ops) + 1

        def fused_operator(*args):
            x, t_x, ok = _jvp_call(f"perflab_{solver}_jvp", n_primal)(*args)
            return x, ok, t_x

        def split_operator(*primal):
            x, ok, factors = _factor_solve(solver, primal[:-1], primal[-1])
            return (x, ok), (factors, x)

        def linear_operator(res, *tangent):
            factors, x = res
            return (_reverse.ffi_tangent(solver, factors, x, tangent[:-1], tangent[-1], op_cores=op_cores),)

        fused, split, linear = fused_operator, split_operator, linear_operator
        tangent_in = (*_operands(solver, t_operator), t_vector)
    x, ok, t_x = _reverse.fused_jvp(
        (*ops, vector), tangent_in, fused=fused, split=split, linear=linear, n_known_out=2, name="ffi"
    )
    return (x, ok), (t_x, jnp.zeros_like(ok))


def thomas_substitute(factors, rhs):
    """Solve with stored Thomas factors in one FFI call (the heat equation's ``factor_once_ffi``).

    Arguments:
        factors: ``(m, cp, inv_den)`` of `_heat._thomas_factor`, each of shape (n,).
        rhs: shape (n,) or (n, k), the factors' dtype (float32 or float64).

    Returns:
        x of rhs' shape. Linear in rhs, but JAX cannot differentiate or transpose a foreign call:
        it is used inside a custom JVP rule that supplies the derivative.
    """
    out = jax.ShapeDtypeStruct(rhs.shape, rhs.dtype)
    return jax.ffi.ffi_call("perflab_thomas_substitute", out, vmap_method="sequential")(*factors, rhs)
