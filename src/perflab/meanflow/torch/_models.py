"""The denoisers in PyTorch: a small UNet (GroupNorm, conv, SiLU, one attention block) and a DiT.

Both map ``(z, t, h)`` with ``h = t - r`` to a velocity of z's shape. The equinox twins in
`perflab.meanflow.jax` use the same parameter names, so `perflab.meanflow.convert` copies
weights across by name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._config import DiTConfig, UNetConfig, model_config
from ._layers import Conv2d, GroupNorm, attention

TIME_SCALE = 100.0
"""t and h in [0, 1] are scaled by this before the sinusoidal embedding."""


def sinusoid_frequencies(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The ``dim // 2`` frequencies of `sinusoidal`, in t's dtype and on its device."""
    half = dim // 2
    return torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)


def sinusoidal(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of a (batch,) tensor of times into (batch, dim)."""
    freqs = sinusoid_frequencies(t, dim)
    args = (TIME_SCALE * t)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeEmbedding(nn.Module):
    """Embeds (t, h): sinusoids of each, concatenated, then Linear-SiLU-Linear."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        e = torch.cat([sinusoidal(t, self.dim // 2), sinusoidal(h, self.dim // 2)], dim=-1)
        return self.fc2(F.silu(self.fc1(e)))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added in between, residual connection."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = GroupNorm(groups, cin)
        self.conv1 = Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = GroupNorm(groups, cout)
        self.conv2 = Conv2d(cout, cout, 3, padding=1)
        self.skip = Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.silu(self.norm1(x)))
        y = y + self.emb(F.silu(emb))[:, :, None, None]
        y = self.conv2(F.silu(self.norm2(y)))
        return y + (x if self.skip is None else self.skip(x))


class AttentionBlock(nn.Module):
    """GroupNorm, 1x1-conv q/k/v, softmax attention over the pixels, 1x1-conv projection, residual."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = GroupNorm(groups, channels)
        self.qkv = Conv2d(channels, 3 * channels, 1)
        self.proj = Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, hh * ww)
        q, k, v = (qkv[:, i].transpose(-2, -1) for i in range(3))
        out = attention(q, k, v).transpose(-2, -1).reshape(b, c, hh, ww)
        return x + self.proj(out)


class UNet(nn.Module):
    """A small UNet denoiser: levels of residual blocks, attention at the bottleneck, skips.

    Arguments:
        config: the architecture.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c = config
        chans = [c.base * m for m in c.mults]
        self.time = TimeEmbedding(c.emb_dim)
        self.conv_in = Conv2d(c.channels, c.base, 3, padding=1)
        down, downsample, cur = [], [], c.base
        for i, ch in enumerate(chans):
            down.append(ResBlock(cur, ch, c.emb_dim, c.groups))
            if i < len(chans) - 1:
                downsample.append(Conv2d(ch, ch, 3, stride=2, padding=1))
            cur = ch
        self.down, self.downsample = nn.ModuleList(down), nn.ModuleList(downsample)
        self.mid1 = ResBlock(cur, cur, c.emb_dim, c.groups)
        self.attn = AttentionBlock(cur, c.heads, c.groups)
        self.mid2 = ResBlock(cur, cur, c.emb_dim, c.groups)
        up, upconv = [], []
        for i, ch in enumerate(reversed(chans)):
            if i > 0:
                upconv.append(Conv2d(cur, cur, 3, padding=1))
            up.append(ResBlock(cur + ch, ch, c.emb_dim, c.groups))
            cur = ch
        self.up, self.upconv = nn.ModuleList(up), nn.ModuleList(upconv)
        self.norm_out = GroupNorm(c.groups, cur)
        self.conv_out = Conv2d(cur, c.channels, 3, padding=1)

    def forward(self, z: torch.Tensor, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The velocity at z.

        Arguments:
            z: (batch, channels, size, size) noisy images.
            t: (batch,) times.
            h: (batch,) interval lengths t - r.

        Returns:
            (batch, channels, size, size).
        """
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
                x = self.upconv[i - 1](F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = block(torch.cat([x, skips.pop()], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(x)))


class DiTBlock(nn.Module):
    """adaLN-modulated block: LayerNorm, attention, LayerNorm, GELU MLP, each gated."""

    def __init__(self, c: DiTConfig):
        super().__init__()
        self.heads = c.heads
        self.norm1 = nn.LayerNorm(c.dim, elementwise_affine=False)
        self.qkv = nn.Linear(c.dim, 3 * c.dim)
        self.proj = nn.Linear(c.dim, c.dim)
        self.norm2 = nn.LayerNorm(c.dim, elementwise_affine=False)
        self.fc1 = nn.Linear(c.dim, c.mlp_ratio * c.dim)
        self.fc2 = nn.Linear(c.mlp_ratio * c.dim, c.dim)
        self.ada = nn.Linear(c.emb_dim, 6 * c.dim)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(emb))[:, None].chunk(6, dim=-1)
        y = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = self.qkv(y).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + gate1 * self.proj(y)
        y = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.fc2(F.gelu(self.fc1(y)))


class DiT(nn.Module):
    """A small diffusion transformer denoiser over patches.

    Arguments:
        config: the architecture.
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = c = config
        tokens = (c.image_size // c.patch) ** 2
        self.time = TimeEmbedding(c.emb_dim)
        self.patch_embed = Conv2d(c.channels, c.dim, c.patch, stride=c.patch)
        self.pos_embed = nn.Parameter(0.02 * torch.randn(tokens, c.dim))
        self.blocks = nn.ModuleList(DiTBlock(c) for _ in range(c.depth))
        self.norm_out = nn.LayerNorm(c.dim, elementwise_affine=False)
        self.ada_out = nn.Linear(c.emb_dim, 2 * c.dim)
        self.out = nn.Linear(c.dim, c.patch * c.patch * c.channels)

    def forward(self, z: torch.Tensor, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The velocity at z (arguments and result as `UNet.forward`)."""
        c = self.config
        b = z.shape[0]
        g = c.image_size // c.patch
        emb = self.time(t, h)
        x = self.patch_embed(z).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            x = block(x, emb)
        shift, scale = self.ada_out(F.silu(emb))[:, None].chunk(2, dim=-1)
        x = self.out(self.norm_out(x) * (1 + scale) + shift)
        x = x.reshape(b, g, g, c.patch, c.patch, c.channels)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c.channels, c.image_size, c.image_size)


def make_model(
    model: str,
    size: str = "cpu",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build a seeded denoiser.

    Arguments:
        model: ``"unet"`` or ``"dit"``.
        size: ``"cpu"`` or ``"gpu"`` (see `perflab.meanflow.model_config`).
        seed: seed of the parameter initialisation.
        dtype: parameter dtype.
        device: parameter device.

    Returns:
        The module, in training mode.
    """
    config, _ = model_config(model, size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet(config) if isinstance(config, UNetConfig) else DiT(config)
    return net.to(device=device, dtype=dtype)
