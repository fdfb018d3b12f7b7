"""Normalisation and attention layers whose implementation a loss variant can switch.

The models read `_IMPL` at call time, so one set of weights runs with the built-in GroupNorm,
a decomposed GroupNorm (plain mean/var ops, for tracers that reject the built-in) or a
hand-written GroupNorm whose JVP reuses the forward's statistics; attention runs as explicit
matmul + softmax or through `scaled_dot_product_attention`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

GROUP_NORMS = ("builtin", "decomposed", "fused")
ATTENTIONS = ("math", "sdpa")
CONVS = ("builtin", "fused")


class _Impl:
    group_norm = "builtin"
    attention = "math"
    conv = "builtin"


_IMPL = _Impl()


@contextlib.contextmanager
def implementation(
    *, group_norm: str | None = None, attention: str | None = None, conv: str | None = None
) -> Iterator[None]:
    """Within the block, run GroupNorm and attention layers with the named implementations.

    Arguments:
        group_norm: ``"builtin"`` (`F.group_norm`), ``"decomposed"`` (mean/var ops) or ``"fused"``
            (hand-written forward, backward and JVP); None keeps the current one.
        attention: ``"math"`` (matmul, softmax, matmul) or ``"sdpa"``
            (`F.scaled_dot_product_attention`); None keeps the current one.
        conv: ``"builtin"`` or ``"fused"`` (a JVP that skips the zero weight tangent); None
            keeps the current one.

    Returns:
        A context manager restoring the previous implementations on exit.
    """
    if group_norm is not None and group_norm not in GROUP_NORMS:
        raise ValueError(f"group_norm={group_norm!r}; expected one of {list(GROUP_NORMS)}")
    if attention is not None and attention not in ATTENTIONS:
        raise ValueError(f"attention={attention!r}; expected one of {list(ATTENTIONS)}")
    if conv is not None and conv not in CONVS:
        raise ValueError(f"conv={conv!r}; expected one of {list(CONVS)}")
    saved = (_IMPL.group_norm, _IMPL.attention, _IMPL.conv)
    if conv is not None:
        _IMPL.conv = conv
    if group_norm is not None:
        _IMPL.group_norm = group_norm
    if attention is not None:
        _IMPL.attention = attention
    try:
        yield
    finally:
        _IMPL.group_norm, _IMPL.attention, _IMPL.conv = saved


def _group_view(x, groups):
    return x.reshape(x.shape[0], groups, -1)


class _FusedGroupNorm(torch.autograd.Function):
    """GroupNorm through ATen's kernels, with a JVP written from the saved mean and rstd.

    The generic forward-AD rule of `native_group_norm` recomputes the statistics and
    differentiates them op by op; here the tangent costs two reductions and a few
    elementwise passes over the input.
    """

    @staticmethod
    def forward(x, weight, bias, groups, eps):
        n, c = x.shape[:2]
        y, mean, rstd = torch.ops.aten.native_group_norm(x, weight, bias, n, c, x[0, 0].numel(), groups, eps)
        return y, mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, _, groups, _ = inputs
        _, mean, rstd = output
        ctx.groups = groups
        # Parameters carry no tangent under jvp: materialised zeros would cost full passes.
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(mean, rstd)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.save_for_forward(x, weight, mean, rstd)

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_rstd):
        if grad_y is None:
            return None, None, None, None, None
        x, weight, mean, rstd = ctx.saved_tensors
        n, c = x.shape[:2]
        gx, gw, gb = torch.ops.aten.native_group_norm_backward(
            grad_y.contiguous(),
            x,
            mean,
            rstd,
            weight,
            n,
            c,
            x[0, 0].numel(),
            ctx.groups,
            list(ctx.needs_input_grad[:3]),
        )
        return gx, gw, gb, None, None

    @staticmethod
    def jvp(ctx, tx, tweight, tbias, _groups, _eps):
        x, weight, mean, rstd = ctx.saved_tensors
        xhat = (_group_view(x, ctx.groups) - mean.unsqueeze(-1)) * rstd.unsqueeze(-1)
        ty = None if tx is None else group_norm_tangent(x, tx, weight, mean, rstd, ctx.groups, xhat)
        if tweight is not None:
            extra = xhat.reshape(x.shape) * tweight.reshape((1, -1) + (1,) * (x.dim() - 2))
            ty = extra if ty is None else ty + extra
        if tbias is not None:
            extra = tbias.reshape((1, -1) + (1,) * (x.dim() - 2)).expand(x.shape)
            ty = extra if ty is None else ty + extra
        if ty is None:
            ty = torch.zeros_like(x)
        # The statistics are float32 even for a bfloat16 input (autocast); the tangent must
        # keep the output's dtype or the next layer meets mixed dtypes.
        return ty.to(x.dtype), None, None


def group_norm_tangent(x, tx, weight, mean, rstd, groups, xhat=None):
    """The tangent of GroupNorm's output for an input tangent, from the forward's mean and rstd.

    Arguments:
        x: (batch, channels, ...) input.
        tx: x-shaped input tangent.
        weight: (channels,) scale.
        mean: (batch, groups) statistics returned by ``native_group_norm``.
        rstd: (batch, groups) reciprocal standard deviations from the same call.
        groups: number of groups.
        xhat: the normalised input in the group view, if already computed.

    Returns:
        The x-shaped tangent ``rstd (tx - mean(tx) - xhat mean(xhat tx)) weight``.
    """
    s = rstd.unsqueeze(-1)
    if xhat is None:
        xhat = (_group_view(x, groups) - mean.unsqueeze(-1)) * s
    t_xhat = normalized_tangent(xhat, _group_view(tx, groups), s)
    return t_xhat.reshape(x.shape) * weight.reshape((1, -1) + (1,) * (x.dim() - 2))


def normalized_tangent(xhat, tx, rstd):
    """The tangent of ``(x - mean(x)) * rstd`` over the last axis, from the normalised x.

    Arguments:
        xhat: the normalised input, ``(x - mean) * rstd``.
        tx: the input tangent, xhat-shaped.
        rstd: the reciprocal standard deviation, broadcastable to xhat.

    Returns:
        ``rstd (tx - mean(tx) - xhat mean(xhat tx))``, xhat-shaped.
    """
    return (tx - tx.mean(-1, keepdim=True) - xhat * (xhat * tx).mean(-1, keepdim=True)) * rstd


def _decomposed_group_norm(x, groups, weight, bias, eps):
    g = _group_view(x, groups)
    mean = g.mean(-1, keepdim=True)
    var = (g - mean).square().mean(-1, keepdim=True)
    y = ((g - mean) * torch.rsqrt(var + eps)).reshape(x.shape)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return y * weight.reshape(shape) + bias.reshape(shape)


class GroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` whose implementation follows `implementation(group_norm=...)`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        impl = _IMPL.group_norm
        if impl == "fused":
            return _FusedGroupNorm.apply(x, self.weight, self.bias, self.num_groups, self.eps)[0]
        if impl == "decomposed":
            return _decomposed_group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention over (batch, heads, tokens, head_dim) tensors.

    Arguments:
        q, k, v: queries, keys and values, each (batch, heads, tokens, head_dim).

    Returns:
        The attended values, (batch, heads, tokens, head_dim).
    """
    if _IMPL.attention == "sdpa":
        return F.scaled_dot_product_attention(q, k, v)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    return scores.softmax(dim=-1) @ v


class _FusedConv2d(torch.autograd.Function):
    """conv2d whose JVP convolves only the defined tangents.

    ATen's forward-AD rule for `convolution` adds ``conv(x, w_t)`` with a materialised zero
    weight tangent when the weights carry none (they never do under `jvp` in the inputs), so
    every convolution costs three instead of two.
    """

    @staticmethod
    def forward(x, weight, bias, stride, padding):
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, stride, padding = inputs
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)

    @staticmethod
    def backward(ctx, grad):
        if grad is None:
            return None, None, None, None, None
        x, weight = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad,
            x,
            weight,
            [weight.shape[0]] if ctx.has_bias else None,
            ctx.stride,
            ctx.padding,
            [1, 1],
            False,
            [0, 0],
            1,
            mask,
        )
        return gx, gw, gb, None, None

    @staticmethod
    def jvp(ctx, tx, tweight, tbias, _stride, _padding):
        x, weight = ctx.saved_tensors
        out = None
        if tx is not None:
            out = F.conv2d(tx, weight, None, ctx.stride, ctx.padding)
        if tweight is not None:
            extra = F.conv2d(x, tweight, None, ctx.stride, ctx.padding)
            out = extra if out is None else out + extra
        if tbias is not None:
            extra = tbias[None, :, None, None]
            out = extra if out is None else out + extra
        if out is None:
            out = torch.zeros_like(F.conv2d(x, weight, None, ctx.stride, ctx.padding))
        return out


class Conv2d(nn.Conv2d):
    """`nn.Conv2d` whose implementation follows `implementation(conv=...)`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _IMPL.conv == "fused" and self.groups == 1 and self.dilation == (1, 1) and isinstance(self.padding, tuple):
            return _FusedConv2d.apply(x, self.weight, self.bias, self.stride, self.padding)
        return super().forward(x)
