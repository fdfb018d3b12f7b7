"""An ensemble of Euler-Maruyama trajectories, with the noise drawn in different places.

Every variant advances the state with the same `em_update`; they differ in where the standard
normals come from and in the layout of the loop:

- ``pregen``: the user's `make_sde`: all noise drawn first, ``(n_traj, n_steps)``, one key per
  trajectory, then ``vmap`` over per-trajectory scans.
- ``auto``: the user's `make_sde_auto`: per trajectory, each step splits the key and draws one
  normal inside the scan (``vmap`` over per-trajectory scans).
- ``chunked``: per trajectory, ``chunk`` steps of noise drawn at a time inside an outer scan.
- ``time_major``: the whole ensemble in one scan over steps, the trajectories as the vector axis;
  each step draws ``(n_traj,)`` normals.
- ``time_major_chunked``: time-major, ``(chunk, n_traj)`` normals drawn per outer iteration.
- ``time_major_adaptive``: ``time_major_chunked`` with the chunk picked by `auto_chunk`, which
  draws all the noise in one chunk for small problems: there it is pre-generation in the
  time-major layout, not noise drawn inside the scan.
- ``time_major_rbg``: ``time_major_chunked`` with the normals from XLA's RngBitGenerator
  (``impl="rbg"``) seeded from the caller's key, instead of threefry.
- ``diffrax`` / ``diffrax_vbt``: the peer, ``diffrax.diffeqsolve`` with ``Euler`` and an
  ``UnsafeBrownianPath`` / a ``VirtualBrownianTree``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random

from .. import variants as _variants
from . import _checks
from ._user import auto_noise, em_update, make_sde, make_sde_auto

SIMULATE = _variants.register(
    "sde",
    "simulate",
    {
        "pregen": "make_sde: all noise pre-generated (n_traj, n_steps), vmap over per-trajectory scans",
        "auto": "make_sde_auto: split + normal per step inside each trajectory's scan",
        "chunked": "per trajectory, a chunk of steps' noise drawn per outer scan iteration",
        "time_major": "one scan over steps for the whole ensemble, (n_traj,) normals drawn per step",
        "time_major_chunked": "one scan over chunks for the whole ensemble, (chunk, n_traj) normals per chunk",
        "time_major_adaptive": "time_major_chunked with auto_chunk: all noise in one draw below WHOLE_DRAW_NORMALS",
        "time_major_rbg": "time_major_chunked with RngBitGenerator (impl='rbg') normals seeded from the key",
        "diffrax": "diffrax.diffeqsolve, Euler, UnsafeBrownianPath (the peer)",
        "diffrax_vbt": "diffrax.diffeqsolve, Euler, VirtualBrownianTree (the peer, reproducible path)",
    },
    default="time_major_chunked",
    baseline="pregen",
    optimised="time_major_chunked",
)
NOISE_VARIANTS = (
    "pregen",
    "auto",
    "chunked",
    "time_major",
    "time_major_chunked",
    "time_major_adaptive",
    "time_major_rbg",
)
# The variants whose noise is drawn chunk by chunk inside an outer scan; with chunk=None they use
# `scan_chunk`, which keeps at least MIN_CHUNKS outer iterations.
IN_SCAN_CHUNKED = ("chunked", "time_major_chunked", "time_major_rbg")
OUTPUTS = ("path", "final")


# Normals per outer iteration when no chunk is named: enough to use XLA:CPU's threads, few enough for the cache.
CHUNK_NORMALS = 2**17

# At least this many outer iterations for the in-scan rule: with one, "noise drawn inside the
# scan" would be pre-generation in another layout (the draw would precede every step).
MIN_CHUNKS = 4

# The adaptive policy (`auto_chunk`, variant ``time_major_adaptive``) draws the whole noise in
# one chunk at or below this many normals (4 MiB in float32): a bound independent of n_steps. A
# hand measurement at 1,000 x 1,000 favoured one draw over eight chunked ones (docs/sde.md).
WHOLE_DRAW_NORMALS = 2**20


def _check_sizes(n_traj, n_steps, size):
    return (
        _checks.check_count(n_traj, "n_traj"),
        _checks.check_count(n_steps, "n_steps"),
        _checks.check_count(size, "size"),
    )


def scan_chunk(n_traj: int, n_steps: int, size: int = 1) -> int:
    """The in-scan chunk rule: steps per draw of about `CHUNK_NORMALS` normals, inside the scan.

    The chunk is at most ``n_steps // MIN_CHUNKS`` (when n_steps >= MIN_CHUNKS), so the outer
    scan has at least `MIN_CHUNKS` iterations and the noise really is drawn inside it. A divisor
    of n_steps is preferred (the path then needs no concatenation) unless the best one is under
    half the target. This is what the in-scan chunked variants use with ``chunk=None``.

    Arguments:
        n_traj: trajectories, a positive int.
        n_steps: steps, a positive int.
        size: state size (elements per trajectory and step), a positive int.

    Returns:
        The chunk length, between 1 and ``max(1, n_steps // MIN_CHUNKS)``.
    """
    n_traj, n_steps, size = _check_sizes(n_traj, n_steps, size)
    cap = max(1, n_steps // MIN_CHUNKS)
    target = max(1, min(cap, CHUNK_NORMALS // (n_traj * size)))
    divisor = max(d for d in range(1, target + 1) if n_steps % d == 0)
    return divisor if 2 * divisor >= target else target


def auto_chunk(n_traj: int, n_steps: int, size: int = 1) -> int:
    """The adaptive chunk policy of ``time_major_adaptive``: whole draw when small, else in-scan.

    When all the noise is at most `WHOLE_DRAW_NORMALS` normals it is drawn in one chunk of
    n_steps (one outer iteration: the noise is pre-generated, in the time-major layout);
    otherwise the chunk is `scan_chunk`'s.

    Arguments:
        n_traj: trajectories, a positive int.
        n_steps: steps, a positive int.
        size: state size (elements per trajectory and step), a positive int.

    Returns:
        The chunk length, between 1 and n_steps.
    """
    n_traj, n_steps, size = _check_sizes(n_traj, n_steps, size)
    if n_traj * n_steps * size <= WHOLE_DRAW_NORMALS:
        return n_steps
    return scan_chunk(n_traj, n_steps, size)


def noise_chunk(variant: str, n_traj: int, n_steps: int, size: int = 1, chunk: int | None = None) -> int:
    """Steps of noise per random draw that `simulate` uses for these arguments.

    The figure benchmarks record next to each result: n_steps for ``pregen`` (everything drawn
    before the loop), 1 for the variants that draw every step (``auto``, ``time_major``, the
    diffrax ones), the chunk length for the chunked variants (``chunk``, else `scan_chunk`, or
    `auto_chunk` for ``time_major_adaptive``).

    Arguments:
        variant: a variant of `simulate`.
        n_traj: trajectories, a positive int.
        n_steps: steps, a positive int.
        size: state size, a positive int.
        chunk: the ``chunk`` argument given to `simulate` (None: the variant's rule).

    Returns:
        The steps of noise drawn per call of the generator.
    """
    variant = SIMULATE.check(variant)
    n_traj, n_steps, size = _check_sizes(n_traj, n_steps, size)
    if variant == "time_major_adaptive":
        if chunk is not None:
            raise ValueError(
                f"chunk={chunk!r}: time_major_adaptive picks its chunk with auto_chunk; expected "
                "chunk=None (use time_major_chunked for an explicit chunk)"
            )
        return auto_chunk(n_traj, n_steps, size)
    if variant in IN_SCAN_CHUNKED:
        return scan_chunk(n_traj, n_steps, size) if chunk is None else _checks.check_count(chunk, "chunk")
    if chunk is not None:
        _checks.check_count(chunk, "chunk")
    return n_steps if variant == "pregen" else 1


def _chunks(n_steps, chunk):
    n_full, rem = divmod(n_steps, chunk)
    return n_full, rem


def _chunk_loop(x, n_steps, chunk, draw, advance, keep_path, unroll):
    """Advance `x` over n_steps, `chunk` steps per outer iteration with noise `draw(c, size)`."""
    n_full, rem = _chunks(n_steps, chunk)

    def inner(x, zs):
        def body(x, z):
            x = advance(x, z)
            return x, (x if keep_path else None)

        return lax.scan(body, x, zs, unroll=unroll)

    def outer(x, c):
        return inner(x, draw(c, chunk))

    pieces = []
    if n_full:
        x, ys = lax.scan(outer, x, jnp.arange(n_full, dtype=jnp.uint32))
        if ys is not None:
            pieces.append(ys.reshape((n_full * chunk,) + ys.shape[2:]))
    if rem:
        x, ys = inner(x, draw(jnp.uint32(n_full), rem))
        if ys is not None:
            pieces.append(ys)
    if not keep_path:
        return x
    return pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces)


def _rbg_key(key):
    # Seed a RngBitGenerator key from threefry bits of the caller's key: a fresh, reproducible
    # stream per key. Only fold_in (threefry on the key words) derives the per-chunk keys.
    return random.wrap_key_data(random.bits(key, (4,), jnp.uint32), impl="rbg")


def _noise_draw(variant, key, n_traj, shape, dtype):
    """draw(c, size) -> the normals of chunk c for the time-major chunked variants."""
    base = _rbg_key(key) if variant == "time_major_rbg" else key

    def draw(c, size):
        return random.normal(random.fold_in(base, c), (size, n_traj) + shape, dtype)

    return draw


def _time_major(advance, x0, key, n_traj, n_steps, shape, dtype, keep_path, unroll, variant, chunk):
    x = jnp.broadcast_to(x0, (n_traj,) + shape)
    # The path comes out (n_steps, n_traj, ...); the API returns trajectories first.
    if variant != "time_major":
        draw = _noise_draw(variant, key, n_traj, shape, dtype)
        out = _chunk_loop(x, n_steps, chunk, draw, advance, keep_path, unroll)
        return jnp.moveaxis(out, 0, 1) if keep_path else out

    def body(x, t):
        z = random.normal(random.fold_in(key, t), (n_traj,) + shape, dtype)
        x = advance(x, z)
        return x, (x if keep_path else None)

    x, ys = lax.scan(body, x, jnp.arange(n_steps, dtype=jnp.uint32), unroll=unroll)
    return x if ys is None else jnp.moveaxis(ys, 0, 1)


def _final_scan(advance, x0, zs, unroll):
    return lax.scan(lambda x, z: (advance(x, z), None), x0, zs, unroll=unroll)[0]


def simulate(
    drift: Callable,
    diffusion: Callable,
    x0: jax.Array,
    params,
    key: jax.Array,
    *,
    dt: float,
    n_traj: int,
    n_steps: int,
    variant: str = SIMULATE.default,
    chunk: int | None = None,
    unroll: int = 1,
    output: str = "path",
) -> jax.Array:
    """Simulate `n_traj` Euler-Maruyama trajectories of dx = drift dt + diffusion dW from x0.

    Arguments:
        drift: ``(x, params) -> array`` of x's shape and dtype.
        diffusion: ``(x, params) -> array`` of x's shape and dtype (diagonal noise).
        x0: the initial state, a floating scalar or vector shared by every trajectory; its dtype
            (float32 or float64) is the computation's.
        params: a pytree passed to drift and diffusion.
        key: a PRNG key (``jax.random.key``); the same key gives the same paths.
        dt: the time step, positive.
        n_traj: the number of trajectories, positive.
        n_steps: the number of steps, positive.
        variant: where the noise is drawn (see the module docstring and ``SIMULATE.variants``).
        chunk: steps of noise drawn at once by the in-scan chunked variants (``chunked``,
            ``time_major_chunked``, ``time_major_rbg``); None picks `scan_chunk`. Must be None
            for ``time_major_adaptive`` (it uses `auto_chunk`); ignored by the others.
            `noise_chunk` returns the chunk a call uses.
        unroll: ``lax.scan`` unroll of the per-step loop (not used by the diffrax variants).
        output: ``"path"`` for every state, ``"final"`` for the last state only.

    Returns:
        ``(n_traj, n_steps, *x0.shape)`` states after each step for ``output="path"``, else
        ``(n_traj, *x0.shape)``.
    """
    variant = SIMULATE.check(variant)
    _checks.check_dt(dt)
    n_traj = _checks.check_count(n_traj, "n_traj")
    n_steps = _checks.check_count(n_steps, "n_steps")
    shape, dtype = _checks.check_state(x0)
    size = int(np.prod(shape, dtype=int))
    chunk = noise_chunk(variant, n_traj, n_steps, size, chunk)
    unroll = _checks.check_count(unroll, "unroll")
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r} is not supported; expected one of {list(OUTPUTS)}")
    key = _checks.check_key(key)
    _checks.check_coefficients(drift, diffusion, x0, params)
    keep_path = output == "path"

    def advance(x, z):
        return em_update(drift, diffusion, dt, x, z, params)

    if variant in ("diffrax", "diffrax_vbt"):
        from ._diffrax import diffrax_simulate

        return diffrax_simulate(
            drift,
            diffusion,
            x0,
            params,
            key,
            dt=dt,
            n_traj=n_traj,
            n_steps=n_steps,
            brownian=variant,
            keep_path=keep_path,
        )
    if variant.startswith("time_major"):
        return _time_major(advance, x0, key, n_traj, n_steps, shape, dtype, keep_path, unroll, variant, chunk)

    keys = random.split(key, n_traj)
    if variant == "pregen":
        noise = jax.vmap(lambda k: random.normal(k, (n_steps,) + shape, dtype))(keys)
        if keep_path:
            _, loop = make_sde(dt, drift, diffusion)
            return jax.vmap(lambda zs: loop(x0, zs, params))(noise)
        return jax.vmap(lambda zs: _final_scan(advance, x0, zs, unroll))(noise)
    if variant == "auto":
        if keep_path:
            _, loop = make_sde_auto(dt, drift, diffusion)
            return jax.vmap(lambda k: loop(x0, n_steps, params, k))(keys)
        step, _ = make_sde_auto(dt, drift, diffusion)

        def final(k):
            body = lambda carry, _: (step(*carry, params), None)
            return lax.scan(body, (x0, k), None, length=n_steps, unroll=unroll)[0][0]

        return jax.vmap(final)(keys)

    # chunked: per trajectory, chunk c's noise from fold_in(trajectory key, c).
    def one(k):
        draw = lambda c, size: random.normal(random.fold_in(k, c), (size,) + shape, dtype)
        return _chunk_loop(x0, n_steps, chunk, draw, advance, keep_path, unroll)

    return jax.vmap(one)(keys)


def ensemble_noise(
    key: jax.Array,
    *,
    n_traj: int,
    n_steps: int,
    shape: tuple[int, ...] = (),
    dtype=jnp.float32,
    variant: str = SIMULATE.default,
    chunk: int | None = None,
) -> jax.Array:
    """The standard normals a noise-drawing variant of `simulate` uses for `key`, all at once.

    Feeding them to `make_sde`'s loop reproduces that variant's paths; tests use this to show
    every variant integrates the same equation with its own noise stream.

    Arguments:
        key: the PRNG key given to `simulate`.
        n_traj: the number of trajectories.
        n_steps: the number of steps.
        shape: the state's shape, ``()`` or ``(d,)``.
        dtype: the state's floating dtype.
        variant: one of the variants that draw their own noise (not the diffrax ones).
        chunk: as given to `simulate` (None: the variant's rule, see `noise_chunk`).

    Returns:
        ``(n_traj, n_steps, *shape)`` normals: trajectory i's step t uses ``[i, t]``.
    """
    variant = SIMULATE.check(variant)
    if variant not in NOISE_VARIANTS:
        raise ValueError(f"variant={variant!r} draws its noise inside diffrax; expected one of {list(NOISE_VARIANTS)}")
    n_traj = _checks.check_count(n_traj, "n_traj")
    n_steps = _checks.check_count(n_steps, "n_steps")
    shape = tuple(shape)
    size = int(np.prod(shape, dtype=int))
    chunk = noise_chunk(variant, n_traj, n_steps, size, chunk)
    key = _checks.check_key(key)
    return _noise(key, n_traj, n_steps, shape, np.dtype(dtype), variant, chunk)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _noise(key, n_traj, n_steps, shape, dtype, variant, chunk):
    if variant == "time_major":
        steps = jnp.arange(n_steps, dtype=jnp.uint32)
        zs = jax.vmap(lambda t: random.normal(random.fold_in(key, t), (n_traj,) + shape, dtype))(steps)
        return jnp.moveaxis(zs, 0, 1)
    if variant.startswith("time_major"):
        draw = _noise_draw(variant, key, n_traj, shape, dtype)
        n_full, rem = _chunks(n_steps, chunk)
        pieces = [draw(jnp.uint32(c), chunk) for c in range(n_full)]
        if rem:
            pieces.append(draw(jnp.uint32(n_full), rem))
        return jnp.moveaxis(jnp.concatenate(pieces), 0, 1)
    keys = random.split(key, n_traj)
    if variant == "pregen":
        return jax.vmap(lambda k: random.normal(k, (n_steps,) + shape, dtype))(keys)
    if variant == "auto":
        return jax.vmap(lambda k: auto_noise(k, n_steps, shape, dtype))(keys)

    def one(k):
        n_full, rem = _chunks(n_steps, chunk)
        sizes = [chunk] * n_full + ([rem] if rem else [])
        return jnp.concatenate(
            [random.normal(random.fold_in(k, jnp.uint32(c)), (s,) + shape, dtype) for c, s in enumerate(sizes)]
        )

    return jax.vmap(one)(keys)
