"""Reverse mode for fused JVP kernels: one primitive, two evaluations.

A fused JVP (primal and tangent in one computation, e.g. one FFI call that factorises once and
solves x and x') cannot be transposed: JAX splits a JVP into a known primal part and a part
linear in the tangents by data dependence, and a fused call's outputs all depend on the
tangents. `fused_jvp_p` carries three evaluations of one JVP:

- ``fused(*primals, *tangents)``: what forward mode lowers to (the existing single call);
- ``split(*primals) -> (primal_outs, residuals)``: the primal with what the tangent part needs
  (the factorisation);
- ``linear(residuals, *tangents) -> tangent_outs``: linear in the tangents, built from
  transposable operations (the ``*_tangent`` FFI primitives below, whose transposes are the
  transposed substitutions with the same factors, or plain JAX).

Partial evaluation (`jax.linearize`, `jax.grad`, `jax.vjp`, `jax.linear_transpose`) with known
primals and unknown tangents runs ``split`` now and stages ``linear``; every other use lowers
``fused``. So forward mode compiles exactly as before and reverse mode factorises once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax._src import core as _core
from jax._src.interpreters import ad, batching, mlir
from jax._src.interpreters import partial_eval as pe
from jax.extend.core import Primitive

_SECOND_ORDER = (
    "variant={name!r} differentiates once: its reverse-mode pass runs foreign-function calls that JAX "
    "cannot differentiate again (a JVP of a gradient, a gradient of a gradient); use variant='fused' "
    "or 'lineax' (the heat equation: 'factor_once') for higher derivatives"
)

fused_jvp_p = Primitive("perflab_fused_jvp")
fused_jvp_p.multiple_results = True


def _fused_impl(*args, fused, **_):
    return _core.jaxpr_as_fun(fused)(*args)


def _fused_abstract(*avals, fused, **_):
    return list(fused.out_avals)


def _closed(fn, args):
    # The fused evaluation as a jaxpr parameter: tests and jaxpr printers see inside it.
    return jax.make_jaxpr(lambda *a: list(fn(*a)))(
        *(jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)) for a in args)
    )


fused_jvp_p.def_impl(_fused_impl)
fused_jvp_p.def_abstract_eval(_fused_abstract)
mlir.register_lowering(fused_jvp_p, mlir.lower_fun(_fused_impl, multiple_results=True))


def _fused_jvp_rule(primals, tangents, *, name, **_):
    raise NotImplementedError(_SECOND_ORDER.format(name=name))


ad.primitive_jvps[fused_jvp_p] = _fused_jvp_rule


def _fused_batch(args, dims, *, fused, split, linear, n_known_in, n_known_out, name):
    dims = tuple(dims)
    known_dims, lin_dims = dims[:n_known_in], dims[n_known_in:]
    n_out = len(fused.out_avals)
    fused_fn = _core.jaxpr_as_fun(fused)
    known_batched = any(d is not None for d in known_dims)
    # Primal outputs of unbatched primals stay unbatched (jax.jacfwd requires it).
    out_axes = [0] * n_out if known_batched else [None] * n_known_out + [0] * (n_out - n_known_out)
    try:
        v_fused = _closed(jax.vmap(fused_fn, in_axes=dims, out_axes=out_axes), args)
    except ValueError:  # a fused evaluation that batches its primal outputs anyway
        out_axes = [0] * n_out
        v_fused = _closed(jax.vmap(fused_fn, in_axes=dims, out_axes=out_axes), args)
    if known_batched:
        v_split = jax.vmap(lambda *a: split(*a), in_axes=known_dims, out_axes=0)
        res_axis = 0
    else:
        v_split, res_axis = split, None

    def v_linear(res, *tangents):
        if res_axis is None and all(d is None for d in lin_dims):
            return linear(res, *tangents)
        res_axes = jax.tree_util.tree_map(lambda _: res_axis, res)
        return jax.vmap(lambda r, *t: list(linear(r, *t)), in_axes=(res_axes, *lin_dims), out_axes=0)(res, *tangents)

    def v_split_known(*a):
        outs, res = v_split(*a)
        if not known_batched:
            return outs, res
        return [o if ax == 0 else o[0] for o, ax in zip(outs, out_axes)], res

    outs = fused_jvp_p.bind(
        *args,
        fused=v_fused,
        split=v_split_known,
        linear=v_linear,
        n_known_in=n_known_in,
        n_known_out=n_known_out,
        name=name,
    )
    return outs, list(out_axes)


batching.primitive_batchers[fused_jvp_p] = _fused_batch


def _fused_partial_eval(trace, *tracers, fused, split, linear, n_known_in, n_known_out, name):
    known = [t.pval.get_known() for t in tracers[:n_known_in]]
    params = dict(fused=fused, split=split, linear=linear, n_known_in=n_known_in, n_known_out=n_known_out, name=name)
    if any(k is None for k in known):
        return trace.default_process_primitive(fused_jvp_p, tracers, params)
    if all(t.pval.is_known() for t in tracers):
        vals = known + [t.pval.get_known() for t in tracers[n_known_in:]]
        outs = fused_jvp_p.bind_with_trace(trace.parent_trace, vals, params)  # pyright: ignore[reportCallIssue]
        return [trace.new_const(o) for o in outs]
    try:
        outs, res = split(*known)  # the current trace is the parent's: evaluated now
    except (NotImplementedError, ValueError) as err:  # a foreign call under an outer JVP
        if isinstance(err, ValueError) and "cannot be differentiated" not in str(err):
            raise
        raise NotImplementedError(_SECOND_ORDER.format(name=name)) from err
    with _core.set_current_trace(trace):
        lin = linear(res, *tracers[n_known_in:])
    return [trace.new_const(o) for o in outs] + [trace.to_jaxpr_tracer(t) for t in lin]


pe.custom_partial_eval_rules[fused_jvp_p] = _fused_partial_eval


def fused_jvp(primals, tangents, *, fused, split, linear, n_known_out, name):
    """Bind `fused_jvp_p`: returns ``fused(*primals, *tangents)`` (known outputs first).

    Arguments:
        primals, tangents: sequences of arrays.
        fused, split, linear: the three evaluations (module docstring).
        n_known_out: how many leading outputs are primal outputs (``split``'s first result).
        name: the variant named in errors.

    Returns:
        the list of outputs.
    """
    return fused_jvp_p.bind(
        *primals,
        *tangents,
        fused=_closed(fused, (*primals, *tangents)),
        split=split,
        linear=linear,
        n_known_in=len(primals),
        n_known_out=n_known_out,
        name=name,
    )


# ------------------------------------------------------------------ linear FFI primitives


def _unbroadcast(ct, aval):
    # A linear input broadcast inside the kernel (a leading size-1 axis) gets its cotangent summed.
    axes = tuple(i for i, (a, c) in enumerate(zip(aval.shape, ct.shape)) if a == 1 and c != 1)
    return jnp.sum(ct, axis=axes, keepdims=True) if axes else ct


def _lead_shape(avals, cores):
    # The broadcast leading (batch) shape of inputs with `cores[i]` trailing core dimensions.
    leads = [a.shape[: a.ndim - c] for a, c in zip(avals, cores)]
    return np.broadcast_shapes(*leads) if leads else ()


def _make_linear_primitive(name):
    p = Primitive(name)
    p.multiple_results = True

    def abstract(*avals, target, cores, out_cores, **_):
        lead = _lead_shape(avals, cores)
        return [_core.ShapedArray((*lead, *oc), avals[0].dtype) for oc in out_cores]

    def impl(*args, target, cores, out_cores, **_):
        lead = _lead_shape([jax.typeof(a) for a in args], cores)
        outs = [jax.ShapeDtypeStruct((*lead, *oc), args[0].dtype) for oc in out_cores]
        return list(jax.ffi.ffi_call(target, outs)(*args))

    def batch(args, dims, **params):
        # Batch axes in front, size 1 where unbatched: the kernel broadcasts them.
        moved = [jnp.expand_dims(a, 0) if d is None else jnp.moveaxis(a, d, 0) for a, d in zip(args, dims)]
        return p.bind(*moved, **params), [0] * len(params["out_cores"])

    p.def_impl(impl)
    p.def_abstract_eval(abstract)
    mlir.register_lowering(p, mlir.lower_fun(impl, multiple_results=True))
    batching.primitive_batchers[p] = batch
    return p


# (F, [x], *t_op, t_b) -> x' = A^-1 (b' - A' x); linear in t_op and t_b.
tangent_p = _make_linear_primitive("perflab_ffi_tangent")
# (F, [x], g) -> (A^-T g, [-A^-T g x^T on A's pattern]); linear in g.
cotangent_p = _make_linear_primitive("perflab_ffi_cotangent")


def _raise_second_order(primals, tangents, *, name, **_):
    raise NotImplementedError(_SECOND_ORDER.format(name=name))


ad.primitive_jvps[tangent_p] = _raise_second_order
ad.primitive_jvps[cotangent_p] = _raise_second_order


def _tangent_transpose(ct, *args, target, cores, out_cores, solver, with_x, op_cores, name):
    (ct,) = ct
    n_res = 2 if with_x else 1
    res, lin = args[:n_res], args[n_res:]
    if any(ad.is_undefined_primal(r) for r in res):
        raise NotImplementedError(_SECOND_ORDER.format(name=name))
    nones = [None] * n_res
    if type(ct) is ad.Zero:  # pyright: ignore[reportPrivateImportUsage]  (JAX's own transpose rules use it)
        return [*nones, *(None for _ in lin)]
    n = ct.shape[-1]
    target = f"perflab_{solver}_cotangent" if with_x else f"perflab_{solver}_cotangent_vector"
    out_cores_t = ((n,), *op_cores) if with_x else ((n,),)
    outs = cotangent_p.bind(*res, ct, target=target, cores=(2, 1, 1)[:n_res] + (1,), out_cores=out_cores_t, name=name)
    lam, ct_ops = outs[0], outs[1:]
    cts = [*ct_ops, lam]
    return [*nones, *(_unbroadcast(c, a.aval) if ad.is_undefined_primal(a) else None for c, a in zip(cts, lin))]


ad.primitive_transposes[tangent_p] = _tangent_transpose


def ffi_tangent(solver, factors, x, t_operands, t_vector, *, op_cores, name="ffi"):
    """x' = A^-1 (b' - A' x) with stored factors (``x`` and ``t_operands`` None: x' = A^-1 b').

    Arguments:
        solver: ``"tridiagonal"``, ``"lu"`` or ``"cholesky"``.
        factors: the F buffer of the ``perflab_<solver>_factor_solve`` call.
        x: the primal solution, or None for a right-hand-side tangent only.
        t_operands: the operator tangent's buffers (tuple), or None.
        t_vector: b'.
        op_cores: each operator buffer's core shape.
        name: the variant named in errors.

    Returns:
        x'.
    """
    n = t_vector.shape[-1]
    if x is None:
        args, cores, target = (factors, t_vector), (2, 1), f"perflab_{solver}_tangent_vector"
    else:
        args = (factors, x, *t_operands, t_vector)
        cores = (2, 1, *(len(c) for c in op_cores), 1)
        target = f"perflab_{solver}_tangent"
    (out,) = tangent_p.bind(
        *args,
        target=target,
        cores=cores,
        out_cores=((n,),),
        solver=solver,
        with_x=x is not None,
        op_cores=tuple(op_cores),
        name=name,
    )
    return out


# ------------------------------------------------------------------ heat equation time loops


def heat_steps(factors, u0, steps, *, with_states):
    """`steps` substitutions u <- A^-1 u with the Thomas factors, one FFI call.

    Arguments:
        factors: ``(m, cp, inv)`` of `_heat._thomas_factor`.
        u0: shape (n,).
        steps: how many steps.
        with_states: also return u_1 .. u_steps, shape (steps, n).

    Returns:
        ``(u_steps,)`` or ``(u_steps, states)``.
    """
    n = u0.shape[-1]
    outs = [jax.ShapeDtypeStruct((n,), u0.dtype)]
    if with_states:
        outs.append(jax.ShapeDtypeStruct((steps, n), u0.dtype))
    call = jax.ffi.ffi_call("perflab_heat_steps", outs, vmap_method="sequential")
    return tuple(call(*factors, u0, steps=np.int64(steps)))


heat_tangent_p = Primitive("perflab_heat_tangent")


def _thomas(m, cp, inv, rhs):
    out = jax.ShapeDtypeStruct(rhs.shape, rhs.dtype)
    return jax.ffi.ffi_call("perflab_thomas_substitute", out, vmap_method="sequential")(m, cp, inv, rhs)


def _heat_tangent_impl(*args, steps, with_op):
    # u'_steps from u'_0 (and A' with the states): the loop as substitutions, in JAX.
    m, cp, inv = args[:3]
    if not with_op:
        (t_u0,) = args[3:]

        def free_step(t, _):
            return _thomas(m, cp, inv, t), None

        return jax.lax.scan(free_step, t_u0, None, length=steps)[0]
    states, t_lower, t_diag, t_upper, t_u0 = args[3:]

    def step(t, u):
        r = t - t_diag * u
        r = r.at[1:].add(-t_lower * u[:-1])
        r = r.at[:-1].add(-t_upper * u[1:])
        return _thomas(m, cp, inv, r), None

    return jax.lax.scan(step, t_u0, states)[0]


def _heat_tangent_batch(args, dims, **params):
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    moved = tuple(
        jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0) for a, d in zip(args, dims)
    )
    return jax.lax.map(lambda a: heat_tangent_p.bind(*a, **params), moved), 0


def _heat_tangent_transpose(ct, *args, steps, with_op):
    n_res = 4 if with_op else 3
    res, lin = args[:n_res], args[n_res:]
    if any(ad.is_undefined_primal(r) for r in res):
        raise NotImplementedError(_SECOND_ORDER.format(name="factor_once_ffi"))
    if type(ct) is ad.Zero:  # pyright: ignore[reportPrivateImportUsage]  (JAX's own transpose rules use it)
        return [None] * len(args)
    n = ct.shape[-1]
    outs = [jax.ShapeDtypeStruct((n,), ct.dtype)]
    if with_op:
        outs += [jax.ShapeDtypeStruct((n - 1,), ct.dtype), jax.ShapeDtypeStruct((n,), ct.dtype)]
        outs += [jax.ShapeDtypeStruct((n - 1,), ct.dtype)]
    call = jax.ffi.ffi_call("perflab_heat_adjoint", outs, vmap_method="sequential")
    ct_u0, *ct_op = call(*res, ct, steps=np.int64(steps))
    cts = [*ct_op, ct_u0]
    return [None] * n_res + [c if ad.is_undefined_primal(a) else None for c, a in zip(cts, lin)]


heat_tangent_p.def_impl(_heat_tangent_impl)
heat_tangent_p.def_abstract_eval(lambda *avals, **_: _core.ShapedArray(avals[-1].shape, avals[-1].dtype))
mlir.register_lowering(heat_tangent_p, mlir.lower_fun(_heat_tangent_impl, multiple_results=False))
batching.primitive_batchers[heat_tangent_p] = _heat_tangent_batch
ad.primitive_transposes[heat_tangent_p] = _heat_tangent_transpose
ad.primitive_jvps[heat_tangent_p] = functools.partial(_raise_second_order, name="factor_once_ffi")
