"""The denoisers in equinox, twins of `perflab.meanflow.torch`'s (same layers, same parameter names).

Each model maps one example ``(z, t, h)``, z of shape (channels, size, size) and scalars t, h,
to a velocity of z's shape; the loss vmaps it over the batch.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._config import DiTConfig, UNetConfig, model_config

TIME_SCALE = 100.0


def sinusoidal(t: jax.Array, dim: int) -> jax.Array:
    """Sinusoidal embedding of a scalar time into (dim,), as the PyTorch twin."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=t.dtype) / half)
    args = TIME_SCALE * t * freqs
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)])


def _silu(x):
    return x * jax.nn.sigmoid(x)


class TimeEmbedding(eqx.Module):
    """Embeds (t, h): sinusoids of each, concatenated, then Linear-SiLU-Linear."""

    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    dim: int = eqx.field(static=True)

    def __init__(self, dim, *, key):
        k1, k2 = jax.random.split(key)
        self.dim = dim
        self.fc1 = eqx.nn.Linear(dim, dim, key=k1)
        self.fc2 = eqx.nn.Linear(dim, dim, key=k2)

    def __call__(self, t, h):
        e = jnp.concatenate([sinusoidal(t, self.dim // 2), sinusoidal(h, self.dim // 2)])
        return self.fc2(_silu(self.fc1(e)))


class ResBlock(eqx.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added in between, residual connection."""

    norm1: eqx.nn.GroupNorm
    conv1: eqx.nn.Conv2d
    emb: eqx.nn.Linear
    norm2: eqx.nn.GroupNorm
    conv2: eqx.nn.Conv2d
    skip: eqx.nn.Conv2d | None

    def __init__(self, cin, cout, emb_dim, groups, *, key):
        k = jax.random.split(key, 4)
        self.norm1 = eqx.nn.GroupNorm(groups, cin)
        self.conv1 = eqx.nn.Conv2d(cin, cout, 3, padding=1, key=k[0])
        self.emb = eqx.nn.Linear(emb_dim, cout, key=k[1])
        self.norm2 = eqx.nn.GroupNorm(groups, cout)
        self.conv2 = eqx.nn.Conv2d(cout, cout, 3, padding=1, key=k[2])
        self.skip = eqx.nn.Conv2d(cin, cout, 1, key=k[3]) if cin != cout else None

    def __call__(self, x, emb):
        y = self.conv1(_silu(self.norm1(x)))
        y = y + self.emb(_silu(emb))[:, None, None]
        y = self.conv2(_silu(self.norm2(y)))
        return y + (x if self.skip is None else self.skip(x))


def attention(q, k, v):
    """Softmax attention over (heads, tokens, head_dim) arrays."""
    scores = (q @ jnp.swapaxes(k, -2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    return jax.nn.softmax(scores, axis=-1) @ v


class AttentionBlock(eqx.Module):
    """GroupNorm, 1x1-conv q/k/v, softmax attention over the pixels, 1x1-conv projection, residual."""

    norm: eqx.nn.GroupNorm
    qkv: eqx.nn.Conv2d
    proj: eqx.nn.Conv2d
    heads: int = eqx.field(static=True)

    def __init__(self, channels, heads, groups, *, key):
        k1, k2 = jax.random.split(key)
        self.heads = heads
        self.norm = eqx.nn.GroupNorm(groups, channels)
        self.qkv = eqx.nn.Conv2d(channels, 3 * channels, 1, key=k1)
        self.proj = eqx.nn.Conv2d(channels, channels, 1, key=k2)

    def __call__(self, x):
        c, hh, ww = x.shape
        qkv = self.qkv(self.norm(x)).reshape(3, self.heads, c // self.heads, hh * ww)
        q, k, v = (jnp.swapaxes(qkv[i], -2, -1) for i in range(3))
        out = jnp.swapaxes(attention(q, k, v), -2, -1).reshape(c, hh, ww)
        return x + self.proj(out)


class UNet(eqx.Module):
    """The equinox twin of `perflab.meanflow.torch.UNet`, on one example."""

    time: TimeEmbedding
    conv_in: eqx.nn.Conv2d
    down: list
    downsample: list
    mid1: ResBlock
    attn: AttentionBlock
    mid2: ResBlock
    up: list
    upconv: list
    norm_out: eqx.nn.GroupNorm
    conv_out: eqx.nn.Conv2d

    def __init__(self, config: UNetConfig, *, key):
        c = config
        keys = iter(jax.random.split(key, 64))
        chans = [c.base * m for m in c.mults]
        self.time = TimeEmbedding(c.emb_dim, key=next(keys))
        self.conv_in = eqx.nn.Conv2d(c.channels, c.base, 3, padding=1, key=next(keys))
        self.down, self.downsample, cur = [], [], c.base
        for i, ch in enumerate(chans):
            self.down.append(ResBlock(cur, ch, c.emb_dim, c.groups, key=next(keys)))
            if i < len(chans) - 1:
                self.downsample.append(eqx.nn.Conv2d(ch, ch, 3, stride=2, padding=1, key=next(keys)))
            cur = ch
        self.mid1 = ResBlock(cur, cur, c.emb_dim, c.groups, key=next(keys))
        self.attn = AttentionBlock(cur, c.heads, c.groups, key=next(keys))
        self.mid2 = ResBlock(cur, cur, c.emb_dim, c.groups, key=next(keys))
        self.up, self.upconv = [], []
        for i, ch in enumerate(reversed(chans)):
            if i > 0:
                self.upconv.append(eqx.nn.Conv2d(cur, cur, 3, padding=1, key=next(keys)))
            self.up.append(ResBlock(cur + ch, ch, c.emb_dim, c.groups, key=next(keys)))
            cur = ch
        self.norm_out = eqx.nn.GroupNorm(c.groups, cur)
        self.conv_out = eqx.nn.Conv2d(cur, c.channels, 3, padding=1, key=next(keys))

    def __call__(self, z: jax.Array, t: jax.Array, h: jax.Array) -> jax.Array:
        """The velocity at one image z (channels, size, size) for scalar t and h = t - r."""
        emb = self.time(t, h)
        x = self.conv_in(z)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x, emb)
            skips.append(x)
            if i < len(self.downsample):
                x = self.downsample[i](x)
        x = self.mid2(self.attn(self.mid1(x, emb)), emb)
        for i, block in enumerate(self.up):
            if i > 0:
                x = self.upconv[i - 1](jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))
            x = block(jnp.concatenate([x, skips.pop()], axis=0), emb)
        return self.conv_out(_silu(self.norm_out(x)))


def _layer_norm(x, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


class DiTBlock(eqx.Module):
    """adaLN-modulated block: LayerNorm, attention, LayerNorm, GELU MLP, each gated."""

    qkv: eqx.nn.Linear
    proj: eqx.nn.Linear
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    ada: eqx.nn.Linear
    heads: int = eqx.field(static=True)

    def __init__(self, c: DiTConfig, *, key):
        k = jax.random.split(key, 5)
        self.heads = c.heads
        self.qkv = eqx.nn.Linear(c.dim, 3 * c.dim, key=k[0])
        self.proj = eqx.nn.Linear(c.dim, c.dim, key=k[1])
        self.fc1 = eqx.nn.Linear(c.dim, c.mlp_ratio * c.dim, key=k[2])
        self.fc2 = eqx.nn.Linear(c.mlp_ratio * c.dim, c.dim, key=k[3])
        self.ada = eqx.nn.Linear(c.emb_dim, 6 * c.dim, key=k[4])

    def __call__(self, x, emb):
        n, d = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(self.ada(_silu(emb)), 6)
        y = _layer_norm(x) * (1 + scale1) + shift1
        qkv = jax.vmap(self.qkv)(y).reshape(n, 3, self.heads, d // self.heads).transpose(1, 2, 0, 3)
        y = attention(qkv[0], qkv[1], qkv[2]).transpose(1, 0, 2).reshape(n, d)
        x = x + gate1 * jax.vmap(self.proj)(y)
        y = _layer_norm(x) * (1 + scale2) + shift2
        return x + gate2 * jax.vmap(self.fc2)(jax.nn.gelu(jax.vmap(self.fc1)(y), approximate=False))


class DiT(eqx.Module):
    """The equinox twin of `perflab.meanflow.torch.DiT`, on one example."""

    time: TimeEmbedding
    patch_embed: eqx.nn.Conv2d
    pos_embed: jax.Array
    blocks: list
    ada_out: eqx.nn.Linear
    out: eqx.nn.Linear
    config: DiTConfig = eqx.field(static=True)

    def __init__(self, config: DiTConfig, *, key):
        c = self.config = config
        k = jax.random.split(key, 5)
        tokens = (c.image_size // c.patch) ** 2
        self.time = TimeEmbedding(c.emb_dim, key=k[0])
        self.patch_embed = eqx.nn.Conv2d(c.channels, c.dim, c.patch, stride=c.patch, key=k[1])
        self.pos_embed = 0.02 * jax.random.normal(k[2], (tokens, c.dim))
        self.blocks = [DiTBlock(c, key=kk) for kk in jax.random.split(k[3], c.depth)]
        k4, k5 = jax.random.split(k[4])
        self.ada_out = eqx.nn.Linear(c.emb_dim, 2 * c.dim, key=k4)
        self.out = eqx.nn.Linear(c.dim, c.patch * c.patch * c.channels, key=k5)

    def __call__(self, z: jax.Array, t: jax.Array, h: jax.Array) -> jax.Array:
        """The velocity at one image z (channels, size, size) for scalar t and h = t - r."""
        c = self.config
        g = c.image_size // c.patch
        emb = self.time(t, h)
        x = self.patch_embed(z).reshape(c.dim, g * g).T + self.pos_embed
        for block in self.blocks:
            x = block(x, emb)
        shift, scale = jnp.split(self.ada_out(_silu(emb)), 2)
        x = jax.vmap(self.out)(_layer_norm(x) * (1 + scale) + shift)
        x = x.reshape(g, g, c.patch, c.patch, c.channels)
        return x.transpose(4, 0, 2, 1, 3).reshape(c.channels, c.image_size, c.image_size)


def make_model(model: str, size: str = "cpu", *, key: jax.Array, dtype=jnp.float32) -> eqx.Module:
    """Build a denoiser with random weights.

    Arguments:
        model: ``"unet"`` or ``"dit"``.
        size: ``"cpu"`` or ``"gpu"`` (see `perflab.meanflow.model_config`).
        key: PRNG key of the initialisation.
        dtype: dtype every floating parameter is cast to (explicit: x64 may be on globally).

    Returns:
        The equinox module.
    """
    config, _ = model_config(model, size)
    net = UNet(config, key=key) if isinstance(config, UNetConfig) else DiT(config, key=key)
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, net)
