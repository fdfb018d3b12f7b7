"""A BERT-like encoder as an equinox Module: the tree the sharding rules are applied to."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int


class Embeddings(eqx.Module):
    """Word, position and token-type embeddings summed, then layer-normalised."""

    word_embeddings: eqx.nn.Embedding
    position_embeddings: eqx.nn.Embedding
    token_type_embeddings: eqx.nn.Embedding
    layer_norm: eqx.nn.LayerNorm

    def __init__(self, vocab_size, max_positions, type_vocab_size, hidden, *, key, dtype):
        kw, kp, kt = jax.random.split(key, 3)
        self.word_embeddings = eqx.nn.Embedding(vocab_size, hidden, key=kw, dtype=dtype)
        self.position_embeddings = eqx.nn.Embedding(max_positions, hidden, key=kp, dtype=dtype)
        self.token_type_embeddings = eqx.nn.Embedding(type_vocab_size, hidden, key=kt, dtype=dtype)
        self.layer_norm = eqx.nn.LayerNorm(hidden, dtype=dtype)

    def __call__(self, tokens, token_types):
        positions = jnp.arange(tokens.shape[0])
        x = (
            jax.vmap(self.word_embeddings)(tokens)
            + jax.vmap(self.position_embeddings)(positions)
            + jax.vmap(self.token_type_embeddings)(token_types)
        )
        return jax.vmap(self.layer_norm)(x)


class AttentionOutput(eqx.Module):
    """The attention's output projection (row-parallel under tensor parallelism) and norm."""

    dense: eqx.nn.Linear
    layer_norm: eqx.nn.LayerNorm


class Attention(eqx.Module):
    """Multi-head self-attention: query, key, value projections and the output block."""

    query: eqx.nn.Linear
    key: eqx.nn.Linear
    value: eqx.nn.Linear
    output: AttentionOutput
    heads: int = eqx.field(static=True)

    def __call__(self, x):
        seq, hidden = x.shape
        split = lambda y: y.reshape(seq, self.heads, hidden // self.heads)
        q = split(jax.vmap(self.query)(x))
        k = split(jax.vmap(self.key)(x))
        v = split(jax.vmap(self.value)(x))
        scores = jnp.einsum("qhd,khd->hqk", q, k) / math.sqrt(hidden // self.heads)
        context = jnp.einsum("hqk,khd->qhd", jax.nn.softmax(scores, axis=-1), v)
        out = jax.vmap(self.output.dense)(context.reshape(seq, hidden))
        return jax.vmap(self.output.layer_norm)(out + x)


class Intermediate(eqx.Module):
    """The feed-forward block's expansion (column-parallel under tensor parallelism)."""

    dense: eqx.nn.Linear


class Output(eqx.Module):
    """The feed-forward block's contraction (row-parallel under tensor parallelism) and norm."""

    dense: eqx.nn.Linear
    layer_norm: eqx.nn.LayerNorm


class Layer(eqx.Module):
    """One encoder layer: attention, then a GELU feed-forward block, each with a residual."""

    attention: Attention
    intermediate: Intermediate
    output: Output

    def __init__(self, hidden, intermediate, heads, *, key, dtype):
        kq, kk, kv, ko, ki, kf = jax.random.split(key, 6)
        linear = lambda a, b, k: eqx.nn.Linear(a, b, key=k, dtype=dtype)
        norm = lambda: eqx.nn.LayerNorm(hidden, dtype=dtype)
        self.attention = Attention(
            linear(hidden, hidden, kq),
            linear(hidden, hidden, kk),
            linear(hidden, hidden, kv),
            AttentionOutput(linear(hidden, hidden, ko), norm()),
            heads,
        )
        self.intermediate = Intermediate(linear(hidden, intermediate, ki))
        self.output = Output(linear(intermediate, hidden, kf), norm())

    def __call__(self, x):
        x = self.attention(x)
        h = jax.nn.gelu(jax.vmap(self.intermediate.dense)(x))
        return jax.vmap(self.output.layer_norm)(jax.vmap(self.output.dense)(h) + x)


class BertLike(eqx.Module):
    """A BERT-like encoder: embeddings and a tuple of identical layers.

    Leaf paths read like ``layers.3.attention.query.weight`` (see `leaf_paths`).
    """

    embeddings: Embeddings
    layers: tuple[Layer, ...]

    def __call__(
        self, tokens: Int[Array, " seq"], token_types: Int[Array, " seq"] | None = None
    ) -> Float[Array, "seq hidden"]:
        """Encode one sequence.

        Arguments:
            tokens: integer token ids, shape (seq,).
            token_types: integer segment ids, shape (seq,); zeros when omitted.

        Returns:
            The last layer's hidden states, shape (seq, hidden).
        """
        if token_types is None:
            token_types = jnp.zeros_like(tokens)
        x = self.embeddings(tokens, token_types)
        for layer in self.layers:
            x = layer(x)
        return x


def make_bert(
    layers: int,
    hidden: int = 768,
    *,
    heads: int | None = None,
    intermediate: int | None = None,
    vocab_size: int = 30522,
    max_positions: int = 512,
    type_vocab_size: int = 2,
    dtype=np.float32,
    seed: int = 0,
) -> BertLike:
    """Build a randomly initialised BERT-like encoder.

    The structure is traced with `eqx.filter_eval_shape` (no arrays) and every leaf is then
    filled from a seeded numpy generator: uniform with BERT's standard deviation 0.02 (layer
    norm scales around 1). A 24-layer, 768-wide model has ~195M parameters, which
    `jax.random` generates several times more slowly on CPU.

    Arguments:
        layers: number of encoder layers (>= 1).
        hidden: hidden size (>= 1).
        heads: attention heads; must divide `hidden`. Default: hidden // 64, at least 1.
        intermediate: feed-forward width. Default: 4 * hidden.
        vocab_size: word-embedding rows.
        max_positions: position-embedding rows (longest sequence).
        type_vocab_size: token-type embedding rows.
        dtype: floating dtype of every parameter.
        seed: seed of the numpy generator filling the parameters.

    Returns:
        The `BertLike` module, its arrays on JAX's default device.
    """
    for name, value in (("layers", layers), ("hidden", hidden)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    heads = max(1, hidden // 64) if heads is None else heads
    if not isinstance(heads, int) or heads < 1 or hidden % heads:
        raise ValueError(f"heads must be a positive int dividing hidden={hidden}, got {heads!r}")
    intermediate = 4 * hidden if intermediate is None else intermediate
    if not isinstance(intermediate, int) or intermediate < 1:
        raise ValueError(f"intermediate must be a positive int, got {intermediate!r}")
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")

    def build():
        k_emb, *k_layers = jax.random.split(jax.random.key(0), layers + 1)
        return BertLike(
            Embeddings(vocab_size, max_positions, type_vocab_size, hidden, key=k_emb, dtype=dtype),
            tuple(Layer(hidden, intermediate, heads, key=k, dtype=dtype) for k in k_layers),
        )

    abstract = eqx.filter_eval_shape(build)
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    rng = np.random.default_rng(seed)
    half_width = 0.02 * math.sqrt(3.0)
    leaves = []
    for keys, leaf in flat:
        values = rng.random(leaf.shape, dtype=np.float32)
        values *= np.float32(2 * half_width)
        # layer-norm scales centred on 1, every other parameter on 0
        values -= np.float32(half_width - path_string(keys).endswith("layer_norm.weight"))
        values = values.astype(dtype, copy=False)
        leaves.append(jnp.asarray(values))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def leaf_paths(tree) -> list[str]:
    """The dotted path of every array leaf, in flattening order.

    Arguments:
        tree: any PyTree (e.g. a `BertLike`).

    Returns:
        Paths such as ``"layers.0.attention.query.weight"``.
    """
    return [path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def path_string(keys) -> str:
    """A key path as a dotted string: ``layers.0.attention.query.weight``.

    Arguments:
        keys: a JAX key path (tuple of `GetAttrKey`, `SequenceKey`, `DictKey`, ...).

    Returns:
        The dotted path.
    """
    return jax.tree_util.keystr(tuple(keys), simple=True, separator=".")
