from __future__ import annotations

import os

import numpy as np

from ..variants import register
from ._checks import check_chunk_size, check_inputs

DELTA_RULE = register(
    "delta_rule",
    "delta_rule",
    {
        "jax_scan": "per-token recurrence in jax.lax.scan, vmapped over batch and heads",
        "jax_chunked": "UT/WY chunked form: intra-chunk triangular solve for all chunks, lax.scan over chunks",
        "torch_recurrent": "per-token recurrence in eager PyTorch (bmm over batch x heads)",
        "torch_chunked": "the chunked form in eager PyTorch, Python loop over chunks",
        "torch_compiled": "the chunked form with its intra-chunk and per-chunk steps torch.compile'd",
        "cython": "per-token recurrence, Cython nogil kernel, one fused pass over the state per token",
        "cython_chunked": "the chunked form in Cython over BLAS-3 (gemm, trsm), heads in parallel",
    },
    default="jax_chunked",
    baseline="jax_scan",
    optimised="cython",
)

JAX_VARIANTS = ("jax_scan", "jax_chunked")
TORCH_VARIANTS = ("torch_recurrent", "torch_chunked", "torch_compiled")
CYTHON_VARIANTS = ("cython", "cython_chunked")


def available_threads() -> int:
    """The CPU cores this process may run on: the thread count the Cython variants use by default.

    Returns:
        ``len(os.sched_getaffinity(0))`` where available, else ``os.cpu_count()``.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def recurrent_flops(batch: int, heads: int, seq: int, dk: int, dv: int | None = None) -> int:
    """Useful floating-point operations of the per-token recurrence: 6 dk dv per token and head.

    (k S, q S and the rank-1 update, 2 dk dv each.) Chunked forms do more arithmetic for the same
    result; throughput figures count this number for every variant so that they compare.

    Arguments:
        batch, heads, seq: the leading dimensions.
        dk, dv: the key and value head dimensions (dv defaults to dk).

    Returns:
        The FLOP count.
    """
    dv = dk if dv is None else dv
    return 6 * batch * heads * seq * dk * dv


def delta_rule(
    q,
    k,
    v,
    beta,
    *,
    variant: str = DELTA_RULE.default,
    chunk_size: int = 64,
    return_state: bool = False,
    num_threads: int | None = None,
):
    """The delta-rule linear-attention recurrence, by one of several implementations.

    With S (dk x dv) starting at zero per batch and head and q scaled by dk**-0.5::

        u_t = beta_t (v_t - k_t S);  S <- S + k_t^T u_t;  o_t = q_t S

    Arguments:
        q, k: [batch, heads, seq, dk]; v: [batch, heads, seq, dv]; beta: [batch, heads, seq].
            seq >= 1. All float32 or all float64. JAX variants take JAX (or numpy) arrays and can be
            traced under `jax.jit`; torch variants take tensors (numpy arrays are wrapped without
            a copy); Cython variants take numpy arrays and copy non-contiguous ones.
        variant: one of `DELTA_RULE.names` (see `DELTA_RULE.variants`).
        chunk_size: tokens per chunk for the chunked variants, a positive int. A sequence that
            it does not divide is padded with no-op tokens (JAX, torch) or ends with a short
            chunk (Cython). A chunk size above seq is clamped to seq: the result is the same
            (one chunk holds the whole sequence) and the workspace, which grows as chunk^2, stays
            bounded by the input. The recurrent variants ignore it.
        return_state: also return the final state.
        num_threads: threads over batch x heads for the Cython variants (default: every core
            this process may use). Torch uses `torch.set_num_threads`, XLA its own pool.

    Returns:
        o, shape [batch, heads, seq, dv], in the variant's array type; with `return_state`,
        ``(o, state)`` with state [batch, heads, dk, dv].

    Raises:
        ValueError: an unknown `variant`, mismatched shapes, seq = 0, a `chunk_size` that is not
            a positive int, or a bad `num_threads`.
        TypeError: inputs that are not float32/float64 arrays or tensors of one dtype.
    """
    DELTA_RULE.check(variant)
    dims = check_inputs(q, k, v, beta)
    chunk_size = check_chunk_size(chunk_size, dims[2])
    if variant in JAX_VARIANTS:
        import jax.numpy as jnp

        from . import _jax

        q, k, v, beta = (jnp.asarray(x) for x in (q, k, v, beta))
        if variant == "jax_scan":
            out, state = _jax.jax_scan(q, k, v, beta)
        else:
            out, state = _jax.jax_chunked(q, k, v, beta, chunk_size)
    elif variant in TORCH_VARIANTS:
        try:
            from . import _torch
        except ImportError as err:
            raise ImportError(f"variant={variant!r} needs torch (pip install 'perflab[torch]'): {err}") from None
        import torch

        q, k, v, beta = (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x)) for x in (q, k, v, beta))
        if variant == "torch_recurrent":
            out, state = _torch.torch_recurrent(q, k, v, beta)
        else:
            out, state = getattr(_torch, variant)(q, k, v, beta, chunk_size)
    else:
        from ._cython import cython_delta_rule

        if num_threads is None:
            num_threads = available_threads()
        elif isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
        out, state = cython_delta_rule(
            q,
            k,
            v,
            beta,
            dims,
            chunk_size=chunk_size,
            num_threads=int(num_threads),
            chunked=variant == "cython_chunked",
        )
    return (out, state) if return_state else out
