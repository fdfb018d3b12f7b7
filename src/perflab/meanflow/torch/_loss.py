"""The MeanFlow loss in PyTorch, one class with every optimisation of its JVP as a variant."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.autograd import forward_ad as fwAD

from .._registry import LOSS
from ._layers import implementation
from ._models import DiT, UNet
from ._stacked import stacked_jvp


def _check_floating(x):
    if not x.dtype.is_floating_point:
        raise TypeError(f"x must be a floating-point tensor (the loss differentiates through it); got {x.dtype}")


def _check_batch(x, t, r, e):
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a (batch, channels, height, width) tensor; got {getattr(x, 'shape', type(x))}")
    _check_floating(x)
    b = x.shape[0]
    for name, a in (("t", t), ("r", r)):
        if not isinstance(a, torch.Tensor) or a.shape != (b,):
            raise ValueError(f"{name} must have shape ({b},) to match x's batch; got {tuple(getattr(a, 'shape', ()))}")
    if not isinstance(e, torch.Tensor) or e.shape != x.shape:
        raise ValueError(f"e must have x's shape {tuple(x.shape)}; got {tuple(getattr(e, 'shape', ()))}")
    for name, a in (("t", t), ("r", r), ("e", e)):
        if a.dtype != x.dtype or a.device != x.device:
            raise ValueError(f"{name} must be {x.dtype} on {x.device} like x; got {a.dtype} on {a.device}")


def _check_times(t, r):
    # One fused reduction read back once (a host sync on CUDA); the per-argument diagnosis runs
    # only when something is wrong. Written as "not ok" so that NaN fails too.
    ok = (r >= 0) & (r <= t) & (t <= 1)
    if bool(ok.all()):
        return
    for name, a in (("t", t), ("r", r)):
        bad = ~((a >= 0) & (a <= 1))
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(f"{name} must lie in [0, 1]; {name}[{i}] = {float(a[i])}")
    i = int((~ok).nonzero()[0, 0])
    raise ValueError(
        f"r must be <= t (r is the earlier time: r = min, t = max of the two draws, h = t - r >= 0); "
        f"r[{i}] = {float(r[i])} > t[{i}] = {float(t[i])}"
    )


def _sdpa_forward_ad_works(device: torch.device) -> bool:
    return _probe_sdpa(device.type)


@functools.lru_cache(maxsize=None)
def _probe_sdpa(device_type: str) -> bool:
    q = torch.randn(1, 1, 4, 8, device=device_type)
    try:
        with fwAD.dual_level(), torch.autocast(device_type, dtype=torch.bfloat16):
            out = torch.nn.functional.scaled_dot_product_attention(fwAD.make_dual(q, q), q, q)
            tangent = fwAD.unpack_dual(out).tangent
            if tangent is None:
                return False
            tangent.sum().item()
        return True
    except (RuntimeError, NotImplementedError):
        return False


class MeanFlowLoss:
    """The MeanFlow objective of Geng et al. (2025) for a denoiser ``net(z, t, h)``.

    ``z = (1 - t) x + t e``, ``v = e - x``, ``(u, dudt) = jvp(net(z, t, t - r), (v, 1, 0))`` with
    tangents on (z, t, r) = (v, 1, 0), so h = t - r moves with t; the target
    ``u_tgt = v - (t - r) dudt`` is held constant; per-sample ``l = sum (u - u_tgt)^2`` and the
    loss is ``mean(l / stop_gradient((l + eps)^p))``.

    Arguments:
        model: the denoiser, called as ``model(z, t, h)``.
        variant: one of ``LOSS.names`` other than ``"jax"`` (see `perflab.meanflow.LOSS`).
        ratio: fraction of the batch sampled with r != t, in [0, 1].
        p: adaptive-weighting power.
        eps: adaptive-weighting offset.
        mu: mean of the logit-normal time distribution.
        sigma: scale of the logit-normal time distribution.
        compile_backend: the `torch.compile` backend of the ``compiled`` variant.
        check_times: check in `loss` that ``0 <= r <= t <= 1``. The check reads one boolean
            back from the device, a host sync on CUDA that the branchless variants otherwise
            avoid; pass False where times come from `sample` and the sync matters.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        variant: str = LOSS.default,
        ratio: float = 0.25,
        p: float = 1.0,
        eps: float = 1e-3,
        mu: float = -0.4,
        sigma: float = 1.0,
        compile_backend: str = "inductor",
        check_times: bool = True,
    ):
        variant = LOSS.check(variant)
        if variant == "jax":
            raise ValueError("variant='jax' is the JAX loss (perflab.meanflow.jax.meanflow_loss), not a PyTorch one")
        if not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be a number in [0, 1]; got {ratio!r}")
        if variant == "stacked" and not isinstance(model, (UNet, DiT)):
            raise TypeError(
                f"variant='stacked' runs a tangent pass written for perflab's UNet and DiT; got a "
                f"{type(model).__name__} (use 'custom_jvp' or 'full_batch' for other models)"
            )
        self.model, self.variant, self.ratio = model, variant, float(ratio)
        self.p, self.eps, self.mu, self.sigma = p, eps, mu, sigma
        self.compile_backend = compile_backend
        self.check_times = bool(check_times)
        self._graph = None
        self._compiled_jvp = None
        self._compiled_forward = None

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Draw (t, r, e) for a batch: logit-normal times, the first ``round(ratio * batch)`` with r < t.

        A fixed count of r != t samples (not a per-sample coin) keeps the cost of a step the
        same from step to step, as the reference implementation does.

        Arguments:
            x: (batch, channels, height, width) data.
            generator: optional generator for reproducible draws.

        Returns:
            ``(t, r, e)``: (batch,), (batch,) and x-shaped tensors of x's dtype and device.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"x must be a (batch, channels, height, width) tensor; got {getattr(x, 'shape', type(x))}")
        _check_floating(x)
        b = x.shape[0]
        n = torch.randn(2, b, generator=generator, dtype=x.dtype, device=x.device)
        s = torch.sigmoid(self.mu + self.sigma * n)
        t, r = s.max(dim=0).values, s.min(dim=0).values
        keep = torch.arange(b, device=x.device) < round(self.ratio * b)
        r = torch.where(keep, r, t)
        e = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return t, r, e

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample times and noise, then return `loss(x, t, r, e)`.

        Arguments:
            x: (batch, channels, height, width) floating-point data.
            generator: optional generator for reproducible draws.

        Returns:
            The scalar loss.
        """
        return self.loss(x, *self.sample(x, generator))

    # -- the loss -----------------------------------------------------------------------------
    def _u_fn(self, z, t, r):
        return self.model(z, t, t - r)

    def _reduce(self, u, u_tgt):
        u = u.to(u_tgt.dtype)
        err = (u - u_tgt).square().flatten(1).sum(dim=1)
        return (err / (err.detach() + self.eps).pow(self.p)).mean()

    def loss(self, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The loss for given data, times and noise; differentiable in the model's parameters.

        Arguments:
            x: (batch, channels, height, width) floating-point data.
            t: (batch,) times in [0, 1], x's dtype and device.
            r: (batch,) times in [0, 1] with r <= t (r = t: plain flow matching for that sample).
            e: x-shaped noise.

        Returns:
            The scalar loss, in x's dtype.

        Raises:
            ValueError: shapes, dtypes or devices that do not match x, or (with `check_times`)
                times outside [0, 1] or r > t.
            TypeError: x not floating-point.
        """
        _check_batch(x, t, r, e)
        if self.check_times:
            _check_times(t, r)
        if self.variant == "cuda_graph" and x.device.type != "cuda":
            raise ValueError(f"variant='cuda_graph' needs CUDA tensors; x is on {x.device}")
        z = (1 - t[:, None, None, None]) * x + t[:, None, None, None] * e
        v = e - x
        u, u_tgt = getattr(self, "_loss_" + self.variant)(z, t, r, v)
        return self._reduce(u, u_tgt)

    def _target(self, dudt, v, t, r):
        return (v - (t - r)[:, None, None, None] * dudt).detach()

    def _loss_naive(self, z, t, r, v):
        u = self.model(z, t, t - r)
        idx = torch.nonzero(r != t).squeeze(1)
        if idx.numel() == 0:
            return u, v
        with torch.no_grad():
            _, dudt = self._func_jvp(z[idx], t[idx], r[idx], v[idx])
        u_tgt = v.clone()
        u_tgt[idx] = self._target(dudt, v[idx], t[idx], r[idx])
        return u, u_tgt

    def _loss_primal_reuse(self, z, t, r, v):
        mask = r != t
        idx, rest = torch.nonzero(mask).squeeze(1), torch.nonzero(~mask).squeeze(1)
        us, targets = [], []
        if idx.numel():
            u_j, dudt = self._func_jvp(z[idx], t[idx], r[idx], v[idx])
            us.append(u_j)
            targets.append(self._target(dudt, v[idx], t[idx], r[idx]))
        if rest.numel():
            us.append(self.model(z[rest], t[rest], t[rest] - r[rest]))
            targets.append(v[rest])
        return torch.cat(us), torch.cat(targets)

    def _func_jvp(self, z, t, r, v) -> tuple[torch.Tensor, torch.Tensor]:
        # torch annotates jvp's result as a pair or, with has_aux, a triple; no has_aux here.
        return torch.func.jvp(self._u_fn, (z, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))  # pyright: ignore[reportReturnType]

    def _forward_ad(self, z, t, r, v) -> tuple[torch.Tensor, torch.Tensor]:
        with fwAD.dual_level():
            zd, td = fwAD.make_dual(z, v), fwAD.make_dual(t, torch.ones_like(t))
            out = fwAD.unpack_dual(self.model(zd, td, td - r))
        if out.tangent is None:
            raise RuntimeError("the model's output carries no tangent: an operation dropped forward-mode AD")
        return out.primal, out.tangent

    def _loss_full_batch(self, z, t, r, v):
        u, dudt = self._func_jvp(z, t, r, v)
        return u, self._target(dudt, v, t, r)

    def _loss_forward_ad(self, z, t, r, v):
        u, dudt = self._forward_ad(z, t, r, v)
        return u, self._target(dudt, v, t, r)

    def _loss_custom_jvp(self, z, t, r, v):
        with implementation(group_norm="fused", conv="fused"):
            return self._loss_forward_ad(z, t, r, v)

    def _loss_bf16(self, z, t, r, v):
        attn = "sdpa" if _sdpa_forward_ad_works(z.device) else "math"
        with torch.autocast(z.device.type, dtype=torch.bfloat16), implementation(group_norm="fused", attention=attn):
            u, dudt = self._func_jvp(z, t, r, v)
        return u, self._target(dudt.to(v.dtype), v, t, r)

    def _loss_hybrid(self, z, t, r, v):
        # A detached JVP (compiled, graphed or stacked) for the target, a plain forward for u.
        dudt = self.jvp(z, t, r, v)
        return self.model(z, t, t - r), self._target(dudt, v, t, r)

    _loss_compiled = _loss_cuda_graph = _loss_stacked = _loss_hybrid

    # -- the JVP and the forward alone, as each variant runs them (for benchmarks) ----------
    def jvp(self, z: torch.Tensor, t: torch.Tensor, r: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """du/dt along (v, 1, 0) for the whole batch, detached, the way this variant computes it.

        ``naive``, ``primal_reuse`` and ``full_batch`` share `torch.func.jvp`; the others use
        forward AD, the hand-written GroupNorm, the stacked explicit pass, autocast, `torch.compile`
        or a CUDA graph.

        Arguments:
            z: (batch, channels, height, width) noisy images.
            t: (batch,) times.
            r: (batch,) times.
            v: z-shaped tangent.

        Returns:
            dudt, z-shaped.
        """
        if self.variant == "cuda_graph":
            return self._graphed("_graph", self._raw_jvp, (z, t, r, v)).clone()
        if self.variant == "compiled":
            if self._compiled_jvp is None:
                self._compiled_jvp = torch.compile(self._raw_jvp, dynamic=False, backend=self.compile_backend)
            # Dynamo fails on the built-in group_norm under torch.func.jvp (fake-tensor
            # propagation hits an internal assert in _fw_primal); plain mean/var ops trace.
            with implementation(group_norm="decomposed"):
                return self._compiled_jvp(z, t, r, v)
        return self._raw_jvp(z, t, r, v)

    def _raw_jvp(self, z, t, r, v) -> torch.Tensor:
        with torch.no_grad():
            if self.variant in ("forward_ad", "custom_jvp"):
                fused = "fused" if self.variant == "custom_jvp" else None
                with implementation(group_norm=fused, conv=fused):
                    return self._forward_ad(z, t, r, v)[1]
            if self.variant == "stacked":
                return stacked_jvp(self.model, z, t, t - r, v)[1]
            if self.variant == "bf16":
                attn = "sdpa" if _sdpa_forward_ad_works(z.device) else "math"
                with (
                    torch.autocast(z.device.type, dtype=torch.bfloat16),
                    implementation(group_norm="fused", attention=attn),
                ):
                    return self._func_jvp(z, t, r, v)[1].to(z.dtype)
            return self._func_jvp(z, t, r, v)[1]

    def forward(self, z: torch.Tensor, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """The model's prediction without gradients, under this variant's precision/compilation.

        Arguments:
            z: (batch, channels, height, width) noisy images.
            t: (batch,) times.
            r: (batch,) times.

        Returns:
            u, z-shaped.
        """
        if self.variant == "cuda_graph":
            return self._graphed("_graph_forward", self._raw_forward, (z, t, r)).clone()
        if self.variant == "compiled":
            if self._compiled_forward is None:
                self._compiled_forward = torch.compile(self._raw_forward, dynamic=False, backend=self.compile_backend)
            with implementation(group_norm="decomposed"):
                return self._compiled_forward(z, t, r)
        return self._raw_forward(z, t, r)

    def _raw_forward(self, z, t, r):
        with torch.no_grad():
            if self.variant == "bf16":
                attn = "sdpa" if _sdpa_forward_ad_works(z.device) else "math"
                with (
                    torch.autocast(z.device.type, dtype=torch.bfloat16),
                    implementation(group_norm="fused", attention=attn),
                ):
                    return self.model(z, t, t - r).to(z.dtype)
            return self.model(z, t, t - r)

    def _graphed(self, slot, fn, args):
        if args[0].device.type != "cuda":
            raise ValueError(f"variant='cuda_graph' needs CUDA tensors; got a tensor on {args[0].device}")
        state = getattr(self, slot, None)
        if state is None:
            static = [a.clone() for a in args]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    fn(*static)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = fn(*static)
            state = (graph, static, out)
            setattr(self, slot, state)
        graph, static, out = state
        for s, a in zip(static, args):
            if s.shape != a.shape or s.dtype != a.dtype or s.device != a.device:
                raise ValueError(
                    f"variant='cuda_graph' captured its graph for inputs of shape {tuple(static[0].shape)} "
                    f"({static[0].dtype} on {static[0].device}); got {tuple(a.shape)} ({a.dtype} on {a.device}): "
                    "build a new MeanFlowLoss for a new batch size instead of recapturing"
                )
        for s, a in zip(static, args):
            s.copy_(a)
        graph.replay()
        return out


def fm_loss(model: nn.Module, x: torch.Tensor, t: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """The standard flow-matching loss ``mean |net(z, t, 0) - (e - x)|^2`` (h = 0), for comparison.

    Arguments:
        model: the denoiser.
        x: (batch, channels, height, width) floating-point data.
        t: (batch,) times in [0, 1].
        e: x-shaped noise.

    Returns:
        The scalar loss.
    """
    _check_batch(x, t, t, e)
    _check_times(t, t)
    z = (1 - t[:, None, None, None]) * x + t[:, None, None, None] * e
    u = model(z, t, torch.zeros_like(t))
    return (u.to(x.dtype) - (e - x)).square().flatten(1).sum(dim=1).mean()
