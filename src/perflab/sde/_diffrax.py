"""The peer: the same ensemble through `diffrax.diffeqsolve` with the `Euler` solver."""

from __future__ import annotations

import diffrax as dfx
import jax
import jax.numpy as jnp
import lineax as lx
from jax import random


class _NoisePath(dfx.AbstractPath):
    """Brownian increments sqrt(dt) * zs[i] over [i dt, (i + 1) dt]: feeds diffrax given noise."""

    zs: jax.Array
    dt: jax.Array
    t0: jax.Array
    t1: jax.Array

    def evaluate(self, t0, t1=None, left=True):
        index = jnp.round(t0 / self.dt).astype(jnp.int32)
        return jnp.sqrt(self.dt) * self.zs[index]


def _terms(drift, diffusion, path, ndim):
    def diffusion_op(t, y, args):
        g = diffusion(y, args)
        return g if ndim == 0 else lx.DiagonalLinearOperator(g)

    return dfx.MultiTerm(
        dfx.ODETerm(lambda t, y, args: drift(y, args)),
        dfx.ControlTerm(diffusion_op, path),
    )


def _solve_one(drift, diffusion, x0, params, path, ts, keep_path):
    saveat = dfx.SaveAt(steps=True) if keep_path else dfx.SaveAt(t1=True)
    sol = dfx.diffeqsolve(
        _terms(drift, diffusion, path, jnp.ndim(x0)),
        dfx.Euler(),
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=x0,
        args=params,
        saveat=saveat,
        stepsize_controller=dfx.StepTo(ts=ts),
        max_steps=ts.shape[0] - 1,
        # UnsafeBrownianPath supports no reverse-mode adjoint; nothing here is differentiated.
        adjoint=dfx.ForwardMode(),
        throw=False,
    )
    ys = sol.ys
    assert ys is not None  # both SaveAt choices save states
    return ys if keep_path else ys[0]


def diffrax_simulate(drift, diffusion, x0, params, key, *, dt, n_traj, n_steps, brownian, keep_path, noise=None):
    """vmap over trajectories of diffeqsolve(Euler); `noise` (n_traj, n_steps, ...) replaces the Brownian path."""
    dtype = jnp.result_type(x0)
    dt = jnp.asarray(dt, dtype)
    ts = jnp.arange(n_steps + 1, dtype=dtype) * dt
    shape = jax.ShapeDtypeStruct(jnp.shape(x0), dtype)

    def one(k, zs):
        if zs is not None:
            path = _NoisePath(zs, dt, ts[0], ts[-1])
        elif brownian == "diffrax":
            path = dfx.UnsafeBrownianPath(shape=shape, key=k)
        else:
            path = dfx.VirtualBrownianTree(ts[0], ts[-1], tol=dt / 2, shape=shape, key=k)
        return _solve_one(drift, diffusion, x0, params, path, ts, keep_path)

    keys = random.split(key, n_traj)
    if noise is None:
        return jax.vmap(lambda k: one(k, None))(keys)
    return jax.vmap(one)(keys, noise)
