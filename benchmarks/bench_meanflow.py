"""Study 5: the MeanFlow loss and the cost of its JVP, PyTorch variants against JAX.

Sizes: the ``"cpu"`` models (16x16 images, batch 8) everywhere except where CUDA is present,
where the ``"gpu"`` models (CIFAR-size, batch 64) run; ``PERFLAB_MEANFLOW_SIZE=cpu|gpu``
overrides. Parameter values are the same on every machine.

Threads: ``benchmarks/common.py`` pins OMP/MKL to one thread and torch follows it; XLA's CPU
client keeps its own pool. On the shared 2-core machine a two-thread torch measured 1.7 s for a
56 ms UNet forward (OMP threads spinning against other processes), so torch stays at one.
Cross-framework absolute times are therefore not like for like; the goals are ratios within
each framework.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from .common import Benchmark, block, interleaved_ratio, jit_compile, require, skip

FRAMEWORKS = ["torch", "jax"]
MODELS = ["unet", "dit"]
RATIOS = ["0", "0.25", "1.0"]
VARIANTS = ["naive", "primal_reuse", "full_batch", "forward_ad", "custom_jvp", "stacked", "cuda_graph", "compiled", "bf16", "jax"]


def _torch():
    try:
        import torch
    except ImportError as err:
        skip(f"torch is not installed: {err}")
    return torch


def _size():
    size = os.environ.get("PERFLAB_MEANFLOW_SIZE")
    if size:
        return size
    torch = _torch_if_present()
    return "gpu" if torch is not None and torch.cuda.is_available() else "cpu"


def _torch_if_present():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _check(framework, variant):
    if (framework == "jax") != (variant == "jax"):
        skip(f"variant {variant!r} belongs to the other framework than {framework!r}")
    if framework == "torch":
        torch = _torch()
        require("perflab.meanflow.torch")
        if variant == "cuda_graph" and not torch.cuda.is_available():
            skip("cuda_graph needs a CUDA device")
        if variant == "compiled" and not torch.cuda.is_available() and not os.environ.get("PERFLAB_MEANFLOW_COMPILE"):
            skip("torch.compile of the JVP took 477 s (forward 167 s) per process on the 2-core CPU, "
                 "beyond asv's timeout; set PERFLAB_MEANFLOW_COMPILE=1 to run it")
    else:
        require("perflab.meanflow.jax")


@functools.lru_cache(maxsize=None)
def _data(model, size):
    mf = require("perflab.meanflow")
    config, batch = mf.model_config(model, size)
    rng = np.random.default_rng(0)
    shape = (batch, config.channels, config.image_size, config.image_size)
    x, e = rng.normal(size=shape), rng.normal(size=shape)
    s = 1.0 / (1.0 + np.exp(-(-0.4 + rng.normal(size=(2, batch)))))
    return x.astype(np.float32), e.astype(np.float32), s.max(axis=0).astype(np.float32), s.min(axis=0).astype(np.float32)


def _times(model, size, ratio):
    x, e, t, r = _data(model, size)
    r = np.where(np.arange(len(t)) < round(float(ratio) * len(t)), r, t)
    return x, e, t, r


# -- PyTorch ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _torch_model(model, size):
    torch = _torch()
    torch.set_num_threads(1)
    mt = require("perflab.meanflow.torch")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return mt.make_model(model, size, device=device)


@functools.lru_cache(maxsize=None)
def _torch_case(model, size, ratio, variant):
    torch = _torch()
    mt = require("perflab.meanflow.torch")
    net = _torch_model(model, size)
    dev = next(net.parameters()).device
    x, e, t, r = (torch.from_numpy(a).to(dev) for a in _times(model, size, ratio))
    loss = mt.MeanFlowLoss(net, variant=variant, ratio=float(ratio))
    tb = t[:, None, None, None]
    z, v = (1 - tb) * x + tb * e, e - x

    def step():
        out = loss.loss(x, t, r, e)
        out.backward()
        return block(out)

    def fm_step():
        if variant == "bf16":
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                out = mt.fm_loss(net, x, t, e)
        else:
            out = mt.fm_loss(net, x, t, e)
        out.backward()
        return block(out)

    calls = {
        "step": step,
        "fm_step": fm_step,
        "forward": lambda: block(loss.forward(z, t, r)),
        "jvp": lambda: block(loss.jvp(z, t, r, v)),
    }
    for fn in calls.values():
        fn()
    return calls


# -- JAX ----------------------------------------------------------------------------------
def _persistent_cache():
    # XLA takes minutes to compile these programs on the loaded 2-core CPU and asv runs every
    # benchmark in a fresh process: keep compiled executables on disk between processes.
    import jax

    jax.config.update("jax_compilation_cache_dir", os.environ.get(
        "PERFLAB_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "perflab-jax")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@functools.lru_cache(maxsize=None)
def _jax_inputs(model, size, ratio):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    mj = require("perflab.meanflow.jax")
    net = mj.make_model(model, size, key=jax.random.key(0), dtype=jnp.float32)
    params, static = eqx.partition(net, eqx.is_array)
    x, e, t, r = (jnp.asarray(a, dtype=jnp.float32) for a in _times(model, size, ratio))
    tb = t[:, None, None, None]
    return mj, params, static, x, e, t, r, (1 - tb) * x + tb * e, e - x


@functools.lru_cache(maxsize=None)
def _jax_call(model, size, ratio, kind):
    import equinox as eqx
    import jax

    _persistent_cache()
    mj, params, static, x, e, t, r, z, v = _jax_inputs(model, size, ratio)
    if kind == "step":
        def step(p, x, t, r, e):
            return eqx.filter_value_and_grad(mj.meanflow_loss)(eqx.combine(p, static), x, t, r, e)
        return jit_compile(step, params, x, t, r, e)
    if kind == "fm_step":
        def fm_step(p, x, t, e):
            return eqx.filter_value_and_grad(mj.fm_loss)(eqx.combine(p, static), x, t, e)
        return jit_compile(fm_step, params, x, t, e)
    if kind == "forward":
        def forward(p, z, t, r):
            return jax.vmap(eqx.combine(p, static))(z, t, t - r)
        return jit_compile(forward, params, z, t, r)

    def jvp(p, z, t, r, v):
        return mj.jvp(eqx.combine(p, static), z, t, r, v)[1]
    return jit_compile(jvp, params, z, t, r, v)


def _calls(framework, model, ratio, variant, kinds):
    size = _size()
    if framework == "jax":
        return {k: _jax_call(model, size, ratio, k) for k in kinds}
    calls = _torch_case(model, size, ratio, variant)
    return {k: calls[k] for k in kinds}


class MeanFlowStep(Benchmark):
    """One training step (loss + backward) of the MeanFlow loss, per variant and r != t ratio."""

    params = [FRAMEWORKS, MODELS, RATIOS, VARIANTS]
    param_names = ["framework", "model", "ratio", "variant"]
    rounds = 1
    repeat = (2, 5, 3.0)

    def setup(self, framework, model, ratio, variant):
        _check(framework, variant)
        self.step = _calls(framework, model, ratio, variant, ["step"])["step"]

    def time_step(self, framework, model, ratio, variant):
        self.step()


class JVPCost(Benchmark):
    """The JVP against a forward and a flow-matching step, at ratio 0.25."""

    params = [FRAMEWORKS, MODELS, VARIANTS]
    param_names = ["framework", "model", "variant"]
    rounds = 1
    repeat = (2, 5, 3.0)

    def setup(self, framework, model, variant):
        _check(framework, variant)
        self.calls = _calls(framework, model, "0.25", variant, ["step", "fm_step", "forward", "jvp"])

    def time_forward(self, framework, model, variant):
        self.calls["forward"]()

    def time_fm_step(self, framework, model, variant):
        self.calls["fm_step"]()

    def time_jvp(self, framework, model, variant):
        self.calls["jvp"]()

    def track_jvp_over_forward(self, framework, model, variant):
        return interleaved_ratio(self.calls["jvp"], self.calls["forward"], rounds=7, target=0.0)

    track_jvp_over_forward.unit = "ratio"

    def track_overhead_vs_fm(self, framework, model, variant):
        return interleaved_ratio(self.calls["step"], self.calls["fm_step"], rounds=7, target=0.0)

    track_overhead_vs_fm.unit = "ratio"
