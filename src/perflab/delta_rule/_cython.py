import numpy as np

from . import _delta_rule


def _contiguous(x, dtype, argument):
    # Anything that is not already a C-contiguous numpy array of the common dtype is copied once.
    if type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous:
        return x
    try:
        return np.ascontiguousarray(x, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{argument} cannot be read as a numpy {dtype} array for the cython variants: {err}") from None


def cython_delta_rule(q, k, v, beta, dims, *, chunk_size, num_threads, chunked):
    batch, heads, seq, dk, dv, dtype = dims
    q, k, v, beta = (_contiguous(x, dtype, name) for x, name in zip((q, k, v, beta), "q k v beta".split()))
    bh = batch * heads
    out = np.empty((batch, heads, seq, dv), dtype)
    state = np.zeros((batch, heads, dk, dv), dtype)
    threads = max(1, min(num_threads, bh))
    args = (
        q.reshape(bh, seq, dk),
        k.reshape(bh, seq, dk),
        v.reshape(bh, seq, dv),
        beta.reshape(bh, seq),
        out.reshape(bh, seq, dv),
        state.reshape(bh, dk, dv),
        dk**-0.5,
    )
    if chunked:
        _delta_rule.chunked(*args, chunk_size, threads)
    else:
        _delta_rule.recurrent(*args, threads)
    return out, state
