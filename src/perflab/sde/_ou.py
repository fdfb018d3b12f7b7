"""The Ornstein-Uhlenbeck process dx = theta (mu - x) dt + sigma dW: the study's workload."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def ou_drift(x: jax.Array, params) -> jax.Array:
    """theta (mu - x), with params ``{"theta", "mu", "sigma"}`` (scalars or x-shaped arrays).

    Arguments:
        x: the state.
        params: a dict with ``theta``, ``mu`` and ``sigma``.

    Returns:
        The drift, x's shape and dtype.
    """
    return (params["theta"] * (params["mu"] - x)).astype(x.dtype)


def ou_diffusion(x: jax.Array, params) -> jax.Array:
    """sigma, broadcast to x's shape (additive noise).

    Arguments:
        x: the state.
        params: a dict with ``sigma``.

    Returns:
        The diffusion, x's shape and dtype.
    """
    return jnp.broadcast_to(params["sigma"], jnp.shape(x)).astype(x.dtype)


def ou_params(theta: float = 1.0, mu: float = 0.5, sigma: float = 0.3, dtype=jnp.float32) -> dict:
    """OU parameters as 0-d arrays of `dtype`.

    Arguments:
        theta: mean-reversion rate.
        mu: long-run mean.
        sigma: noise amplitude.
        dtype: the arrays' dtype.

    Returns:
        ``{"theta", "mu", "sigma"}``.
    """
    return {name: jnp.asarray(v, dtype) for name, v in (("theta", theta), ("mu", mu), ("sigma", sigma))}


def ou_moments(x0, theta, mu, sigma, t, dt=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the OU state at time t from x0, in float64.

    Arguments:
        x0: initial state.
        theta: mean-reversion rate, nonzero (the closed forms divide by theta, or by
            1 - (1 - theta dt)^2 for the Euler chain).
        mu: long-run mean.
        sigma: noise amplitude.
        t: the time, >= 0 (a multiple of dt when dt is given).
        dt: None for the exact process; a positive step for the Euler-Maruyama chain (an AR(1)
            whose moments are known exactly: mean mu + (x0 - mu) a^n, variance sigma^2 dt
            (1 - a^2n) / (1 - a^2) with a = 1 - theta dt, n = t / dt), with theta dt != 2.

    Returns:
        ``(mean, variance)``.

    Raises:
        ValueError: theta = 0; theta dt = 2 (a = -1: the chain's variance formula is 0/0);
            t < 0; dt not positive and finite; t not a multiple of dt.
    """
    x0, theta, mu, sigma, t = (np.asarray(v, np.float64) for v in (x0, theta, mu, sigma, t))
    if np.any(theta == 0):
        raise ValueError(
            "theta must be nonzero: the closed form divides by theta (theta = 0 is Brownian motion, "
            "mean x0 and variance sigma^2 t)"
        )
    if np.any(t < 0):
        raise ValueError(f"t must be >= 0, got {t}")
    if dt is None:
        decay = np.exp(-theta * t)
        return mu + (x0 - mu) * decay, sigma**2 / (2 * theta) * (1 - decay**2)
    dt = np.asarray(dt, np.float64)
    if dt.shape != () or not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite scalar (or None for the exact process), got {dt}")
    n = np.rint(t / dt)
    if np.any(np.abs(t / dt - n) > 1e-6 * np.maximum(1.0, n)):
        raise ValueError(f"t must be a multiple of dt for the Euler chain, got t={t}, dt={float(dt)}")
    a = 1.0 - theta * dt
    if np.any(a * a == 1.0):
        raise ValueError(
            f"theta * dt must not be 2 (got theta={theta}, dt={float(dt)}): then a = 1 - theta dt = -1 "
            "and the Euler chain's variance formula is 0/0"
        )
    return mu + (x0 - mu) * a**n, sigma**2 * dt * (1 - a ** (2 * n)) / (1 - a**2)
