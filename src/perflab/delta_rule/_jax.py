import jax
import jax.numpy as jnp
from jax import lax


def _scan_head(q, k, v, beta):
    # One head: q, k [T, dk], v [T, dv], beta [T]; q already scaled.
    def step(state, x):
        qt, kt, vt, bt = x
        u = bt * (vt - kt @ state)
        state = state + jnp.outer(kt, u)
        return state, qt @ state

    init = jnp.zeros((q.shape[-1], v.shape[-1]), q.dtype)
    state, out = lax.scan(step, init, (q, k, v, beta))
    return out, state


_scan_all = jax.vmap(jax.vmap(_scan_head))


def jax_scan(q, k, v, beta):
    q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
    return _scan_all(q, k, v, beta)


def _pad_to_chunks(x, chunk, axis=2):
    seq = x.shape[axis]
    pad = -seq % chunk
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    # Zero k, v and beta leave the state unchanged (u = 0), so padded tokens are exact no-ops.
    return jnp.pad(x, widths)


def jax_chunked(q, k, v, beta, chunk_size):
    batch, heads, seq, dk = q.shape
    dv = v.shape[-1]
    q = q * jnp.asarray(dk**-0.5, q.dtype)
    q, k, v, beta = (_pad_to_chunks(x, chunk_size) for x in (q, k, v, beta))
    n = q.shape[2] // chunk_size
    q, k, v = (x.reshape(batch, heads, n, chunk_size, x.shape[-1]) for x in (q, k, v))
    beta = beta.reshape(batch, heads, n, chunk_size, 1)
    kb, vb = k * beta, v * beta
    # Intra-chunk work for every chunk at once: L = I + tril(kb k^T, -1), [W | U] = L^-1 [kb | vb].
    strict = jnp.tril(jnp.ones((chunk_size, chunk_size), bool), -1)
    lmat = jnp.where(strict, kb @ jnp.swapaxes(k, -1, -2), 0) + jnp.eye(chunk_size, dtype=q.dtype)
    wu = lax.linalg.triangular_solve(
        lmat, jnp.concatenate([kb, vb], -1), left_side=True, lower=True, unit_diagonal=True
    )
    w, u = wu[..., :dk], wu[..., dk:]
    causal = jnp.tril(jnp.ones((chunk_size, chunk_size), bool))
    p = jnp.where(causal, q @ jnp.swapaxes(k, -1, -2), 0)

    def step(state, x):
        # The only sequential part: one chunk of [batch, heads] at a time.
        qn, kn, wn, un, pn = x
        un = un - wn @ state
        out = qn @ state + pn @ un
        return state + jnp.swapaxes(kn, -1, -2) @ un, out

    init = jnp.zeros((batch, heads, dk, dv), q.dtype)
    xs = tuple(jnp.moveaxis(x, 2, 0) for x in (q, k, w, u, p))
    state, out = lax.scan(step, init, xs)
    out = jnp.moveaxis(out, 0, 2).reshape(batch, heads, n * chunk_size, dv)[:, :, :seq]
    return out, state
