"""The user's pair: Euler-Maruyama with pre-generated noise (`make_sde`) or noise drawn per step
(`make_sde_auto`), as written in the study's claim, with input checks at the boundary."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax, random

from . import _checks


def em_update(drift, diffusion, dt, x, z, params):
    """One Euler-Maruyama update; every variant calls this, so equal noise gives equal paths."""
    dt = jnp.asarray(dt, x.dtype)
    return x + drift(x, params) * dt + diffusion(x, params) * (jnp.sqrt(dt) * z)


def make_sde(dt: float, drift: Callable, diffusion: Callable) -> tuple[Callable, Callable]:
    """Euler-Maruyama for dx = drift(x, p) dt + diffusion(x, p) dW, fed pre-generated noise.

    Arguments:
        dt: the time step, positive.
        drift: ``(x, params) -> array`` of x's shape and dtype.
        diffusion: ``(x, params) -> array`` of x's shape and dtype (diagonal noise).

    Returns:
        ``(step, loop)``: ``step(x, z, params)`` is one step with standard normal z of x's shape;
        ``loop(x0, zs, params)`` scans it over ``zs`` of shape ``(n_steps, *x0.shape)`` and
        returns the path, the states after each step, of the same shape.
    """
    _checks.check_dt(dt)

    def step(x, z, params):
        return em_update(drift, diffusion, dt, x, z, params)

    def loop(x0, zs, params):
        shape, dtype = _checks.check_state(x0)
        if jnp.shape(zs)[1:] != shape or jnp.ndim(zs) != len(shape) + 1 or jnp.shape(zs)[0] < 1:
            raise ValueError(f"zs must have shape (n_steps >= 1, *x0.shape) = (n, *{shape}), got {jnp.shape(zs)}")
        if jnp.result_type(zs) != dtype:
            raise TypeError(f"zs has dtype {jnp.result_type(zs)} but x0 has {dtype}; they must match")
        _checks.check_coefficients(drift, diffusion, x0, params)

        def body(x, z):
            x = step(x, z, params)
            return x, x

        _, xs = lax.scan(body, x0, zs)
        return xs

    return step, loop


def make_sde_auto(dt: float, drift: Callable, diffusion: Callable) -> tuple[Callable, Callable]:
    """Euler-Maruyama drawing each step's noise inside the scan: split the key, draw a normal.

    Arguments:
        dt: the time step, positive.
        drift: ``(x, params) -> array`` of x's shape and dtype.
        diffusion: ``(x, params) -> array`` of x's shape and dtype (diagonal noise).

    Returns:
        ``(step, loop)``: ``step(x, key, params) -> (x_next, key_next)``;
        ``loop(x0, n_steps, params, key)`` returns the path of shape ``(n_steps, *x0.shape)``.
        Step ``i`` uses ``random.split(key_i)``: the new key and the normal's key.
    """
    _checks.check_dt(dt)

    def step(x, key, params):
        key, sub = random.split(key)
        z = random.normal(sub, jnp.shape(x), jnp.result_type(x))
        return em_update(drift, diffusion, dt, x, z, params), key

    def loop(x0, n_steps, params, key):
        _checks.check_state(x0)
        n_steps = _checks.check_count(n_steps, "n_steps")
        key = _checks.check_key(key)
        _checks.check_coefficients(drift, diffusion, x0, params)

        def body(carry, _):
            x, k = carry
            x, k = step(x, k, params)
            return (x, k), x

        _, xs = lax.scan(body, (x0, key), None, length=n_steps)
        return xs

    return step, loop


def auto_noise(key, n_steps: int, shape, dtype) -> jax.Array:
    """The normals `make_sde_auto`'s loop draws from `key`, shape ``(n_steps, *shape)``."""

    def body(k, _):
        k, sub = random.split(k)
        return k, random.normal(sub, shape, dtype)

    _, zs = lax.scan(body, key, None, length=n_steps)
    return zs
