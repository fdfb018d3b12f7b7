import numpy as np

_NAMES = ("q", "k", "v", "beta")


def dtype_of(x, argument):
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        raise TypeError(f"{argument} must be an array or tensor, got {type(x).__name__}")
    if not isinstance(dtype, np.dtype):
        # torch dtypes: map through their name (torch.float32 -> "float32").
        name = str(dtype).removeprefix("torch.")
        try:
            dtype = np.dtype(name)
        except TypeError:
            raise TypeError(f"{argument} must be float32 or float64, got {dtype}") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{argument} must be float32 or float64, got {dtype}")
    return dtype


def check_chunk_size(chunk_size, seq):
    """A positive int chunk size, clamped to `seq`.

    A chunk longer than the sequence computes the same result as one chunk of exactly `seq`
    tokens (the JAX and torch forms would pad with no-op tokens, the Cython one ends its only
    chunk early), but would cost memory: the Cython workspace holds 2 chunk^2 + chunk (dk + dv)
    numbers per thread and the JAX form pads every input to the chunk, so
    ``chunk_size=2**40`` would ask for terabytes (and overflow the kernel's C int). Clamping is
    exact, so it is done silently.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return min(int(chunk_size), seq)


def check_inputs(q, k, v, beta):
    """Validate shapes and dtypes; return (batch, heads, seq, dk, dv, dtype)."""
    dtypes = [dtype_of(x, name) for x, name in zip((q, k, v, beta), _NAMES)]
    for name, dtype in zip(_NAMES[1:], dtypes[1:]):
        if dtype != dtypes[0]:
            raise TypeError(f"{name} has dtype {dtype} but q has {dtypes[0]}; all inputs must share one dtype")
    qs, ks, vs, bs = (tuple(x.shape) for x in (q, k, v, beta))
    if len(qs) != 4:
        raise ValueError(f"q must have shape [batch, heads, seq, dk], got {qs}")
    if ks != qs:
        raise ValueError(f"k must have the shape of q {qs}, got {ks}")
    if len(vs) != 4 or vs[:3] != qs[:3]:
        raise ValueError(f"v must have shape {qs[:3] + ('dv',)} ([batch, heads, seq] of q), got {vs}")
    if bs != qs[:3]:
        raise ValueError(f"beta must have shape [batch, heads, seq] = {qs[:3]}, got {bs}")
    if qs[2] < 1:
        raise ValueError(f"seq (axis 2 of q, k, v and beta) must be >= 1 token, got q {qs}")
    if qs[3] < 1 or vs[3] < 1:
        raise ValueError(f"dk and dv must be >= 1, got q {qs} and v {vs}")
    return (*qs, vs[3], dtypes[0])
