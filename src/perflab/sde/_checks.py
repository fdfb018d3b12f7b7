import math
import operator

import jax
import jax.core
import jax.numpy as jnp
import numpy as np


def check_dt(dt):
    """Reject a non-positive or non-finite step when it is known at trace time; return dt."""
    if isinstance(dt, jax.core.Tracer):
        return dt
    try:
        value = np.asarray(dt)
    except Exception:
        raise TypeError(f"dt must be a positive real scalar, got {type(dt).__name__}") from None
    if value.shape != () or value.dtype.kind not in "fiu":
        raise TypeError(f"dt must be a positive real scalar, got shape {value.shape} dtype {value.dtype}")
    if not (math.isfinite(float(value)) and float(value) > 0.0):
        raise ValueError(f"dt must be positive and finite, got {float(value)}")
    return dt


def check_count(n, argument):
    """A positive Python int (it sets a static length); return it."""
    try:
        n_int = operator.index(n)
    except TypeError:
        raise TypeError(f"{argument} must be a positive Python int (static), got {type(n).__name__}") from None
    if n_int <= 0:
        raise ValueError(f"{argument} must be positive, got {n_int}")
    return n_int


def check_key(key, argument="key"):
    """Return `key` as a typed PRNG key array of shape (); legacy uint32 (2,) keys are wrapped."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{argument} must be a single PRNG key (shape ()), got shape {key.shape}")
        return key
    if dtype is not None and np.dtype(dtype) == np.uint32 and tuple(key.shape) == (2,):
        return jax.random.wrap_key_data(key)
    raise TypeError(
        f"{argument} must be a PRNG key from jax.random.key(seed) (or a legacy uint32 key of shape (2,)), "
        f"got {type(key).__name__}"
        + (f" with dtype {dtype} and shape {getattr(key, 'shape', None)}" if dtype is not None else "")
    )


def check_state(x0):
    """x0 must be a floating scalar or vector; return its (shape, dtype)."""
    dtype = getattr(x0, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"x0 must be a floating JAX/numpy array (float32 or float64), got "
            f"{type(x0).__name__}" + (f" of dtype {dtype}" if dtype is not None else "")
        )
    if jnp.ndim(x0) > 1:
        raise ValueError(f"x0 must be a scalar or a vector (ndim 0 or 1), got shape {jnp.shape(x0)}")
    if jnp.size(x0) == 0:
        raise ValueError(f"x0 must hold at least one element, got shape {jnp.shape(x0)}")
    return tuple(jnp.shape(x0)), np.dtype(dtype)


def check_coefficients(drift, diffusion, x, params):
    """Trace drift and diffusion once on x's shape and dtype: each must return x's shape and dtype."""
    spec = jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
    for name, fn in (("drift", drift), ("diffusion", diffusion)):
        if not callable(fn):
            raise TypeError(f"{name} must be a callable (x, params) -> array, got {type(fn).__name__}")
        out = jax.eval_shape(fn, spec, params)
        shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
        if shape != spec.shape or dtype != spec.dtype:
            raise ValueError(
                f"{name}(x, params) must return an array of x's shape {spec.shape} and dtype {spec.dtype}, "
                f"got shape {shape} and dtype {dtype}"
            )
