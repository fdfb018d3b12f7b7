"""An explicit JVP of the denoisers with primal and tangent stacked along the batch.

Every tensor of the pass is ``cat([primal, tangent])``, batch 2B. The layers that are linear in
their input (conv, Linear without its bias, interpolation, concatenation, residual adds) act on
the stack in one call, so a convolution runs once on 2B images instead of once per half; only
the non-linear layers (GroupNorm, LayerNorm, SiLU, GELU, attention, the time embedding and
the adaLN products) split the stack and write the tangent from the primal's values. No forward-AD
machinery is involved: one eager pass, no dual tensors, no zero tangents for the weights.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import group_norm_tangent, normalized_tangent
from ._models import TIME_SCALE, DiT, UNet, sinusoid_frequencies


def _half(s):
    return s.shape[0] // 2


def _bias_on_primal(out, bias, shape):
    # A constant (bias, positional embedding) shifts the primal only: its tangent is zero.
    if bias is not None:
        out[: _half(out)] += bias.reshape(shape)
    return out


def _conv(layer: nn.Conv2d, s):
    out = F.conv2d(s, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return _bias_on_primal(out, layer.bias, (-1, 1, 1))


def _linear(layer: nn.Linear, s):
    return _bias_on_primal(F.linear(s, layer.weight), layer.bias, (-1,))


def _pointwise(s, forward, derivative):
    b = _half(s)
    out = torch.empty_like(s)
    forward(s[:b], out=out[:b])
    derivative(s[b:], s[:b], grad_input=out[b:])
    return out


def _silu(s):
    return _pointwise(s, torch.ops.aten.silu.out, torch.ops.aten.silu_backward.grad_input)


def _gelu(s):
    return _pointwise(s, torch.ops.aten.gelu.out, torch.ops.aten.gelu_backward.grad_input)


def _group_norm(layer: nn.GroupNorm, s):
    b = _half(s)
    x, tx = s[:b], s[b:]
    n, c = x.shape[:2]
    y, mean, rstd = torch.ops.aten.native_group_norm(
        x, layer.weight, layer.bias, n, c, x[0, 0].numel(), layer.num_groups, layer.eps
    )
    return torch.cat([y, group_norm_tangent(x, tx, layer.weight, mean, rstd, layer.num_groups)])


def _layer_norm(layer: nn.LayerNorm, s):
    b = _half(s)
    x, tx = s[:b], s[b:]
    y, mean, rstd = torch.ops.aten.native_layer_norm(x, layer.normalized_shape, None, None, layer.eps)
    return torch.cat([y, normalized_tangent((x - mean) * rstd, tx, rstd)])


def _mul(a, c):
    # (a, a') * (c, c') = (a c, a' c + a c')
    b = _half(a)
    ap, at, cp, ct = a[:b], a[b:], c[:b], c[b:]
    return torch.cat([ap * cp, at * cp + ap * ct])


def _plus_one(s):
    out = s.clone()
    out[: _half(s)] += 1
    return out


def _modulate(x, shift, scale):
    return _mul(x, _plus_one(scale)) + shift


def _attention(q, k, v):
    b = _half(q)
    kp, kt, vp, vt = k[:b], k[b:], v[:b], v[b:]
    scale = 1.0 / math.sqrt(q.shape[-1])
    # [q; q'] @ kp^T in one batched matmul, then q @ k'^T for the other half of the product rule.
    scores = (q.unflatten(0, (2, b)) @ kp.transpose(-2, -1)) * scale
    scores[1] += (q[:b] @ kt.transpose(-2, -1)) * scale
    p = scores[0].softmax(dim=-1)
    # The softmax Jacobian is symmetric, so its backward applied to the score tangent is the JVP.
    tp = torch.ops.aten._softmax_backward_data(scores[1], p, -1, p.dtype)
    out = torch.stack([p, tp]) @ vp
    out[1] += p @ vt
    return out.flatten(0, 1)


def _sinusoid_pair(x, dim):
    # (sinusoidal(x), its derivative in x); x's tangent is 1 for both t and h = t - r.
    freqs = sinusoid_frequencies(x, dim)
    rate = TIME_SCALE * freqs[None, :]
    args = (TIME_SCALE * x)[:, None] * freqs[None, :]
    cos, sin = torch.cos(args), torch.sin(args)
    return torch.cat([cos, sin], dim=-1), torch.cat([-sin * rate, cos * rate], dim=-1)


def _time(layer, t, h):
    et, dt = _sinusoid_pair(t, layer.dim // 2)
    eh, dh = _sinusoid_pair(h, layer.dim // 2)
    e = torch.cat([torch.cat([et, eh], dim=-1), torch.cat([dt, dh], dim=-1)])
    return _linear(layer.fc2, _silu(_linear(layer.fc1, e)))


def _res_block(block, x, emb):
    y = _conv(block.conv1, _silu(_group_norm(block.norm1, x)))
    y = y + _linear(block.emb, _silu(emb))[:, :, None, None]
    y = _conv(block.conv2, _silu(_group_norm(block.norm2, y)))
    return y + (x if block.skip is None else _conv(block.skip, x))


def _attention_block(block, x):
    b2, c, hh, ww = x.shape
    qkv = _conv(block.qkv, _group_norm(block.norm, x)).reshape(b2, 3, block.heads, c // block.heads, hh * ww)
    q, k, v = (qkv[:, i].transpose(-2, -1) for i in range(3))
    out = _attention(q, k, v).transpose(-2, -1).reshape(b2, c, hh, ww)
    return x + _conv(block.proj, out)


def _unet(net: UNet, s, t, h):
    emb = _time(net.time, t, h)
    x = _conv(net.conv_in, s)
    skips = []
    for i, block in enumerate(net.down):
        x = _res_block(block, x, emb)
        skips.append(x)
        if i < len(net.downsample):
            x = _conv(cast(nn.Conv2d, net.downsample[i]), x)
    x = _res_block(net.mid2, _attention_block(net.attn, _res_block(net.mid1, x, emb)), emb)
    for i, block in enumerate(net.up):
        if i > 0:
            x = _conv(cast(nn.Conv2d, net.upconv[i - 1]), F.interpolate(x, scale_factor=2.0, mode="nearest"))
        x = _res_block(block, torch.cat([x, skips.pop()], dim=1), emb)
    return _conv(net.conv_out, _silu(_group_norm(net.norm_out, x)))


def _dit_block(block, x, emb):
    b2, n, d = x.shape
    shift1, scale1, gate1, shift2, scale2, gate2 = _linear(block.ada, _silu(emb))[:, None].chunk(6, dim=-1)
    y = _modulate(_layer_norm(block.norm1, x), shift1, scale1)
    q, k, v = _linear(block.qkv, y).reshape(b2, n, 3, block.heads, d // block.heads).permute(2, 0, 3, 1, 4)
    y = _attention(q, k, v).transpose(1, 2).reshape(b2, n, d)
    x = x + _mul(gate1, _linear(block.proj, y))
    y = _modulate(_layer_norm(block.norm2, x), shift2, scale2)
    return x + _mul(gate2, _linear(block.fc2, _gelu(_linear(block.fc1, y))))


def _dit(net: DiT, s, t, h):
    c = net.config
    b2 = s.shape[0]
    g = c.image_size // c.patch
    emb = _time(net.time, t, h)
    x = _bias_on_primal(
        _conv(net.patch_embed, s).flatten(2).transpose(1, 2).contiguous(), net.pos_embed, net.pos_embed.shape
    )
    for block in net.blocks:
        x = _dit_block(block, x, emb)
    shift, scale = _linear(net.ada_out, _silu(emb))[:, None].chunk(2, dim=-1)
    x = _linear(net.out, _modulate(_layer_norm(net.norm_out, x), shift, scale))
    x = x.reshape(b2, g, g, c.patch, c.patch, c.channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b2, c.channels, c.image_size, c.image_size)


def stacked_jvp(
    net: nn.Module, z: torch.Tensor, t: torch.Tensor, h: torch.Tensor, tz: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The denoiser's value and JVP along (tz, 1, 1) on (z, t, h), without autograd.

    The tangent of t and of h = t - r is 1 (r carries none), as in the MeanFlow target.

    Arguments:
        net: a `UNet` or `DiT` from `perflab.meanflow.torch.make_model`.
        z: (batch, channels, size, size) noisy images.
        t: (batch,) times.
        h: (batch,) interval lengths t - r.
        tz: z-shaped tangent of z.

    Returns:
        ``(u, dudt)``, both z-shaped.
    """
    if not isinstance(net, (UNet, DiT)):
        raise TypeError(f"net must be a perflab.meanflow.torch UNet or DiT; got {type(net).__name__}")
    if tz.shape != z.shape:
        raise ValueError(f"tz must have z's shape {tuple(z.shape)}; got {tuple(tz.shape)}")
    with torch.no_grad():
        s = torch.cat([z, tz])
        out = _unet(net, s, t, h) if isinstance(net, UNet) else _dit(net, s, t, h)
    b = z.shape[0]
    return out[:b], out[b:]
