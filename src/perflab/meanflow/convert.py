"""Copy a PyTorch denoiser's weights into its equinox twin (needs torch)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def _dotted(path) -> str:
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        else:
            raise TypeError(f"unexpected pytree key {k!r} in an equinox denoiser")
    return ".".join(parts)


def torch_to_equinox(torch_model, eqx_model: eqx.Module, *, dtype=jnp.float32) -> eqx.Module:
    """Return `eqx_model` with every parameter replaced by the same-named one of `torch_model`.

    Parameters match by dotted name (``down.0.conv1.weight``); shapes may differ only by
    singleton axes (an equinox conv bias is (out, 1, 1), PyTorch's (out,)).

    Arguments:
        torch_model: the `perflab.meanflow.torch` denoiser.
        eqx_model: an equinox twin of the same architecture.
        dtype: dtype of the copied arrays.

    Returns:
        The equinox model with the PyTorch weights.
    """
    source = {name: p.detach().cpu().numpy() for name, p in torch_model.named_parameters()}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(eqx_model)
    used, new = set(), []
    for path, leaf in leaves:
        if not eqx.is_inexact_array(leaf):
            new.append(leaf)
            continue
        name = _dotted(path)
        if name not in source:
            raise KeyError(f"the PyTorch model has no parameter {name!r} (shape {leaf.shape})")
        value = source[name]
        if value.size != leaf.size or [d for d in value.shape if d != 1] != [d for d in leaf.shape if d != 1]:
            raise ValueError(f"parameter {name!r}: PyTorch shape {value.shape}, equinox shape {leaf.shape}")
        new.append(jnp.asarray(np.reshape(value, leaf.shape), dtype=dtype))
        used.add(name)
    missing = sorted(set(source) - used)
    if missing:
        raise KeyError(f"PyTorch parameters without an equinox counterpart: {missing}")
    return jax.tree_util.tree_unflatten(treedef, new)
