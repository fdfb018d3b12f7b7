"""Model configurations shared by the PyTorch and the equinox denoisers."""

from __future__ import annotations

import dataclasses

from ._registry import MODELS, SIZES


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """A small UNet: conv stem, residual blocks with GroupNorm and SiLU, one attention block.

    Attributes:
        channels: image channels in and out.
        image_size: height and width.
        base: channels of the first level.
        mults: channel multiplier per level; every level but the last halves the resolution.
        groups: GroupNorm groups.
        emb_dim: width of the (t, t - r) embedding.
        heads: attention heads in the bottleneck block.
    """

    channels: int = 3
    image_size: int = 16
    base: int = 32
    mults: tuple[int, ...] = (1, 2)
    groups: int = 8
    emb_dim: int = 64
    heads: int = 2


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """A small DiT: patchify, adaLN-modulated transformer blocks (LayerNorm, attention, MLP).

    Attributes:
        channels: image channels in and out.
        image_size: height and width.
        patch: patch size.
        dim: token width.
        depth: number of blocks.
        heads: attention heads.
        mlp_ratio: MLP hidden width over `dim`.
        emb_dim: width of the (t, t - r) embedding.
    """

    channels: int = 3
    image_size: int = 16
    patch: int = 4
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 4
    emb_dim: int = 64


_CONFIGS = {
    ("unet", "cpu"): (UNetConfig(), 8),
    ("unet", "gpu"): (UNetConfig(image_size=32, base=128, mults=(1, 2, 2), groups=32, emb_dim=256, heads=4), 64),
    ("dit", "cpu"): (DiTConfig(), 8),
    ("dit", "gpu"): (DiTConfig(image_size=32, patch=2, dim=256, depth=6, heads=4, emb_dim=256), 64),
}


def model_config(model: str, size: str = "cpu") -> tuple[UNetConfig | DiTConfig, int]:
    """The architecture and batch size of a named model.

    Arguments:
        model: ``"unet"`` or ``"dit"``.
        size: ``"cpu"`` (16x16 images, batch 8) or ``"gpu"`` (32x32, batch 64).

    Returns:
        ``(config, batch_size)``.
    """
    if model not in MODELS:
        raise ValueError(f"model={model!r} is not a denoiser; expected one of {list(MODELS)}")
    if size not in SIZES:
        raise ValueError(f"size={size!r} is not a model size; expected one of {list(SIZES)}")
    return _CONFIGS[(model, size)]
