"""The MeanFlow loss in JAX: `jax.jvp` of the vmapped denoiser, gradient through its primal."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp


def _check(x, t, r, e):
    if x.ndim != 4:
        raise ValueError(f"x must be (batch, channels, height, width); got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a floating-point array (the loss differentiates through it); got {x.dtype}")
    b = x.shape[0]
    for name, a in (("t", t), ("r", r)):
        if a.shape != (b,):
            raise ValueError(f"{name} must have shape ({b},) to match x's batch; got {a.shape}")
    if e.shape != x.shape:
        raise ValueError(f"e must have x's shape {x.shape}; got {e.shape}")
    for name, a in (("t", t), ("r", r), ("e", e)):
        if a.dtype != x.dtype:
            raise ValueError(f"{name} must be {x.dtype} like x; got {a.dtype}")


_ORDER = "r must be <= t (r is the earlier time: r = min, t = max of the two draws, h = t - r >= 0)"


def _check_times(t, r):
    """Check 0 <= r <= t <= 1; return (t, r) (under `jit`, carrying a runtime check)."""
    ok = (r >= 0) & (r <= t) & (t <= 1)
    if isinstance(ok, jax.core.Tracer):
        # Traced (under jit): values are unknown until run time, so the program itself checks
        # them: equinox raises with this message when it runs. Written as "not ok" so NaN fails.
        msg = f"t and r must lie in [0, 1] and {_ORDER}"
        return eqx.error_if(t, ~jnp.all(ok), msg), r
    if bool(jnp.all(ok)):
        return t, r
    for name, a in (("t", t), ("r", r)):
        bad = ~((a >= 0) & (a <= 1))
        if bool(jnp.any(bad)):
            i = int(jnp.argmax(bad))
            raise ValueError(f"{name} must lie in [0, 1]; {name}[{i}] = {float(a[i])}")
    i = int(jnp.argmax(~ok))
    raise ValueError(f"{_ORDER}; r[{i}] = {float(r[i])} > t[{i}] = {float(t[i])}")


def sample(key: jax.Array, x: jax.Array, ratio: float, *, mu: float = -0.4, sigma: float = 1.0):
    """Draw (t, r, e): logit-normal times, the first ``round(ratio * batch)`` samples with r < t.

    Arguments:
        key: PRNG key.
        x: (batch, channels, height, width) data (gives shape and dtype).
        ratio: fraction of samples with r != t, in [0, 1].
        mu: mean of the logit-normal.
        sigma: scale of the logit-normal.

    Returns:
        ``(t, r, e)``.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be a number in [0, 1]; got {ratio!r}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a floating-point array (it sets the dtype of t, r and e); got {x.dtype}")
    b = x.shape[0]
    k1, k2 = jax.random.split(key)
    s = jax.nn.sigmoid(mu + sigma * jax.random.normal(k1, (2, b), dtype=x.dtype))
    t, r = s.max(axis=0), s.min(axis=0)
    r = jnp.where(jnp.arange(b) < round(ratio * b), r, t)
    return t, r, jax.random.normal(k2, x.shape, dtype=x.dtype)


def _u_fn(model):
    return jax.vmap(lambda z, t, r: model(z, t, t - r))


def jvp(model: eqx.Module, z: jax.Array, t: jax.Array, r: jax.Array, v: jax.Array):
    """``(u, dudt)`` of ``u(z, t, r) = model(z, t, t - r)`` along (v, 1, 0), batched.

    Arguments:
        model: the equinox denoiser (one example per call).
        z: (batch, channels, height, width).
        t: (batch,) times.
        r: (batch,) times.
        v: z-shaped tangent.

    Returns:
        ``(u, dudt)``, both z-shaped.
    """
    return jax.jvp(_u_fn(model), (z, t, r), (v, jnp.ones_like(t), jnp.zeros_like(r)))


def target(model: eqx.Module, x: jax.Array, t: jax.Array, r: jax.Array, e: jax.Array):
    """The prediction u and the held target ``u_tgt = v - (t - r) dudt``.

    Arguments:
        model: the equinox denoiser.
        x: (batch, channels, height, width) floating-point data.
        t: (batch,) times in [0, 1], x's dtype.
        r: (batch,) times in [0, 1], r <= t.
        e: x-shaped noise.

    Returns:
        ``(u, u_tgt)``.

    Raises:
        ValueError: shapes or dtypes that do not match x; times outside [0, 1] or r > t (under
            `jit` the compiled program raises equinox's runtime error with the same message).
        TypeError: x not floating-point.
    """
    _check(x, t, r, e)
    t, r = _check_times(t, r)
    tb = t[:, None, None, None]
    z, v = (1 - tb) * x + tb * e, e - x
    u, dudt = jvp(model, z, t, r, v)
    return u, jax.lax.stop_gradient(v - (t - r)[:, None, None, None] * dudt)


def meanflow_loss(
    model: eqx.Module, x: jax.Array, t: jax.Array, r: jax.Array, e: jax.Array, *, p: float = 1.0, eps: float = 1e-3
) -> jax.Array:
    """The MeanFlow loss ``mean(l / stop_gradient((l + eps)^p))``, ``l = sum (u - u_tgt)^2``.

    Differentiate it in the model (``eqx.filter_grad``): the gradient flows through the JVP's
    primal output only, the target being held.

    Arguments:
        model: the equinox denoiser.
        x: (batch, channels, height, width) floating-point data.
        t: (batch,) times in [0, 1].
        r: (batch,) times in [0, 1], r <= t (checked as in `target`).
        e: x-shaped noise.
        p: adaptive-weighting power.
        eps: adaptive-weighting offset.

    Returns:
        The scalar loss.
    """
    u, u_tgt = target(model, x, t, r, e)
    err = jnp.square(u - u_tgt).reshape(u.shape[0], -1).sum(axis=1)
    return jnp.mean(err / jax.lax.stop_gradient(jnp.power(err + eps, p)))


def fm_loss(model: eqx.Module, x: jax.Array, t: jax.Array, e: jax.Array) -> jax.Array:
    """The standard flow-matching loss ``mean |net(z, t, 0) - (e - x)|^2`` (h = 0).

    Arguments:
        model: the equinox denoiser.
        x: (batch, channels, height, width) floating-point data.
        t: (batch,) times in [0, 1].
        e: x-shaped noise.

    Returns:
        The scalar loss.
    """
    _check(x, t, t, e)
    t, _ = _check_times(t, t)
    tb = t[:, None, None, None]
    u = _u_fn(model)((1 - tb) * x + tb * e, t, t)
    return jnp.square(u - (e - x)).reshape(u.shape[0], -1).sum(axis=1).mean()
