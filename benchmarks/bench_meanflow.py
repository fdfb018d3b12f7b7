"""Study 5: the MeanFlow loss and the cost of its JVP, PyTorch variants against JAX.

Sizes: the ``"cpu"`` models (16x16 images, batch 8) everywhere except where CUDA is present,
where the ``"gpu"`` models (CIFAR-size, batch 64) run; ``PERFLAB_MEANFLOW_SIZE=cpu|gpu``
overrides. Parameter values are the same on every machine.

Threads: ``benchmarks/_env.py`` pins OMP/MKL to one thread and torch follows it; XLA's CPU
client keeps its own pool. A two-thread torch on the shared 2-core machine spins OMP threads
against other processes (docs/meanflow.md, "Threads and sizes"), so torch stays at one.
Cross-framework absolute times are therefore not like for like; the goals are ratios within
each framework.

Classes, each over only the combinations that can run (the framework follows from the variant
name: ``jax`` is the JAX/equinox loss, every other name a PyTorch one). All of them compare
variants, so all are `InterleavedBenchmark`s: the variants of a cell are measured interleaved in
each of a few fresh processes, one asv sample per process, and every ratio is taken process by
process between two operations measured in the same process. Each variant list ends with the
``control`` twin of the baseline (and, under PERFLAB_INJECT=1, the calibration twins).

- ``MeanFlowStep`` (model, ratio, variant): the training step of each loss variant.
- ``MeanFlowOverhead`` (model, variant): MeanFlow step over FM step, per process, ratio 0.25.
- ``JVPCost`` (model, variant = JVP code): du/dt alone, one row per distinct JVP code (``func_jvp`` is the
  ``torch.func.jvp`` that naive, primal_reuse and full_batch share), and JVP over forward.
- ``Forward`` and ``FMStep`` (model, variant = forward or FM-step code): the forward and the
  flow-matching step, one row per distinct code (eager float32, bfloat16, compiled, CUDA graph,
  JAX).

Every class names its row parameter ``variant``: ``python -m perflab report`` pairs the values
of a parameter of that name.

``cuda_graph`` skips without CUDA, ``compiled`` on a CPU unless ``PERFLAB_MEANFLOW_COMPILE=1``:
those n/a cells depend on the machine, not on the grid.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from ._companions import ErrorOf
from ._interleave import CONTROL, injected_variants
from .common import (
    InterleavedBenchmark,
    block,
    compile_cache_dir,
    first_call_compile,
    jax_x64,
    jit_compile,
    require,
    skip,
)

MODELS = ["unet", "dit"]
RATIOS = ["0", "0.25", "1.0"]
# Every parameter grid below holds only combinations that can run: the framework is implied by
# the variant ("jax" is the JAX/equinox loss, every other name a PyTorch one), so no cell is n/a
# by construction. cuda_graph skips without CUDA and compiled on a CPU without
# PERFLAB_MEANFLOW_COMPILE=1: that depends on the machine, not on the grid.
#
# The MeanFlow loss, per variant: the variants differ in their loss code (which samples go
# through the JVP, which AD machinery), so each is timed as a training step.
VARIANTS = [
    "naive",
    "primal_reuse",
    "full_batch",
    "forward_ad",
    "custom_jvp",
    "stacked",
    "cuda_graph",
    "compiled",
    "bf16",
    "jax",
]
# The JVP alone: one row per distinct JVP code. naive, primal_reuse and full_batch all compute
# du/dt with the same full-batch torch.func.jvp (MeanFlowLoss.jvp), so they share one row named
# after that code, timed through full_batch. Name -> the MeanFlowLoss variant that runs it.
JVPS = {
    "func_jvp": "full_batch",
    "forward_ad": "forward_ad",
    "custom_jvp": "custom_jvp",
    "stacked": "stacked",
    "cuda_graph": "cuda_graph",
    "compiled": "compiled",
    "bf16": "bf16",
    "jax": "jax",
}
# The forward alone: one row per distinct forward code (eager float32 is the same call for every
# eager variant). Name -> the MeanFlowLoss variant whose `forward` runs it.
FORWARDS = {"eager": "full_batch", "bf16": "bf16", "compiled": "compiled", "cuda_graph": "cuda_graph", "jax": "jax"}
# The flow-matching step (the comparison's denominator) exists in float32, under bfloat16
# autocast and in JAX; no variant changes it otherwise.
FM_STEPS = {"eager": "full_batch", "bf16": "bf16", "jax": "jax"}
# The registry's baseline is naive (the seed's loss); in the per-code classes its row is the code
# naive runs: the shared func_jvp JVP, the eager forward and the float32 FM step.
BASELINE = "naive"
TWINS = [CONTROL, *injected_variants()]


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


# Trims for a run that must fit a short window (tools/gpu/record.sh); unset, everything runs.
# Parameter values stay the same: what is left out is recorded n/a with the reason.
SKIP_ENV, RATIOS_ENV, PROCESSES_ENV = "PERFLAB_MEANFLOW_SKIP", "PERFLAB_MEANFLOW_RATIOS", "PERFLAB_MEANFLOW_PROCESSES"


def _listed(name):
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


def _processes(default):
    value = os.environ.get(PROCESSES_ENV)
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{PROCESSES_ENV} must be a positive integer, got {value!r}")
    return int(value)


def _check(variant):
    """Skip what this machine cannot run: torch missing, cuda_graph without CUDA, compiled on CPU."""
    if variant in _listed(SKIP_ENV):
        skip(f"{variant} is left out of this run by {SKIP_ENV}")
    if variant == "jax":
        require("perflab.meanflow.jax")
        return
    torch = _torch()
    require("perflab.meanflow.torch")
    if variant == "cuda_graph" and not torch.cuda.is_available():
        skip("cuda_graph needs a CUDA device")
    if variant == "compiled" and not torch.cuda.is_available() and not os.environ.get("PERFLAB_MEANFLOW_COMPILE"):
        # Why it is skipped: docs/meanflow.md, "Claims re-tested".
        skip(
            "torch.compile of the JVP takes minutes per process on a 2-core CPU (UNet and DiT), beyond "
            "asv's timeout; set PERFLAB_MEANFLOW_COMPILE=1 to run it"
        )
    if variant == "compiled":
        # Every measuring process compiles afresh: inductor's on-disk cache lets all but the first
        # one (on this machine and torch version) reuse the generated kernels. Inductor reads the
        # variable when it first needs its cache, after this.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", compile_cache_dir("torch"))


@functools.lru_cache(maxsize=None)
def _data(model, size):
    mf = require("perflab.meanflow")
    config, batch = mf.model_config(model, size)
    rng = np.random.default_rng(0)
    shape = (batch, config.channels, config.image_size, config.image_size)
    x, e = rng.normal(size=shape), rng.normal(size=shape)
    s = 1.0 / (1.0 + np.exp(-(-0.4 + rng.normal(size=(2, batch)))))
    return (
        x.astype(np.float32),
        e.astype(np.float32),
        s.max(axis=0).astype(np.float32),
        s.min(axis=0).astype(np.float32),
    )


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
    # The time check is the same for every variant and would add a host sync on CUDA.
    loss = mt.MeanFlowLoss(net, variant=variant, ratio=float(ratio), check_times=False)
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
        "jvp": lambda: block(loss.jvp(z, t, r, v)),
        "forward": lambda: block(loss.forward(z, t, r)),
        "step": step,
        "fm_step": fm_step,
    }
    for kind, fn in calls.items():
        # Read by the companions: what runs torch.compile'd code (the FM step is eager under every
        # variant, so it keeps its op fingerprint and flop count).
        fn.torch_compiled = variant == "compiled" and kind != "fm_step"
        if variant in ("compiled", "cuda_graph") and kind in ("jvp", "forward"):
            # The first call compiles (torch.compile) or captures (CUDA graph) the JVP's and
            # the forward's programs, in this order: that cost is their compile companion.
            first_call_compile(fn)
        else:
            fn()
    if variant in ("compiled", "cuda_graph"):
        # The step's only compiled program is the JVP (warm by now): its compile time is the
        # JVP's. The FM step is eager under every variant: no compile time.
        calls["step"].compile_seconds = calls["jvp"].compile_seconds
    return calls


@functools.lru_cache(maxsize=None)
def _torch_reference(model, size, ratio, kind):
    """The naive variant's eager computation of `kind` in float64 (the same seeded weights,
    cast; inputs the float32 ones, widened): `fm_loss` for the FM step, the model's forward,
    and naive's `torch.func.jvp` (`MeanFlowLoss(variant="naive").jvp`) for du/dt."""
    torch = _torch()
    mt = require("perflab.meanflow.torch")
    dev = next(_torch_model(model, size).parameters()).device
    net = mt.make_model(model, size, device=dev, dtype=torch.float64)
    x, e, t, r = (torch.from_numpy(a).to(dev, torch.float64) for a in _times(model, size, ratio))
    loss = mt.MeanFlowLoss(net, variant="naive", ratio=float(ratio), check_times=False)
    tb = t[:, None, None, None]
    z, v = (1 - tb) * x + tb * e, e - x
    with torch.no_grad():
        if kind == "fm_step":
            out = mt.fm_loss(net, x, t, e)
        elif kind == "forward":
            out = net(z, t, t - r)
        elif kind == "jvp":
            out = loss.jvp(z, t, r, v)
        else:
            raise ValueError(f"no float64 reference for {kind!r}")
    return out.detach().cpu().numpy()


def _reference(kind, model, ratio):
    """`ErrorOf` an output against `_torch_reference` (relative error): torch outputs, and JAX
    outputs too (the JAX rows carry the torch rows' weights, `_jax_inputs`; of the JAX FM step's
    (loss, grads) the loss is compared, as for torch).

    None for the MeanFlow step: its output is the adaptively weighted loss (p = 1), the mean of
    err / (err + 1e-3) over samples, which is 1 - O(1e-6) here whatever the prediction or the
    target (a step at ratio 1.0 reads 8e-8 from the reference at 0.25): a recorded error would
    certify wrong answers. The variants differ in du/dt, checked in `JVPCost`, and in the
    forward, checked in `Forward`; the FM step (a plain mean squared error) is compared.
    """
    from ._companions import relative_error

    if kind == "step":
        return None
    try:
        expected = _torch_reference(model, _size(), ratio, kind)
    except NotImplementedError:  # no torch here: the JAX rows have no reference either
        return None

    def error(result):
        if hasattr(result, "detach"):
            return relative_error(result, expected)
        if kind == "fm_step":
            result = result[0]
        return relative_error(np.asarray(result), expected)

    return ErrorOf(error, f"against the naive eager {kind} in float64")


# -- JAX ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _jax_inputs(model, size, ratio):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    mj = require("perflab.meanflow.jax")
    net = mj.make_model(model, size, key=jax.random.key(0), dtype=jnp.float32)
    if _torch_if_present() is not None:
        # The torch rows' seeded weights (same architecture, same names), so that the JAX rows
        # are checked against the same float64 torch reference; the programs are unchanged.
        from perflab.meanflow.convert import torch_to_equinox

        net = torch_to_equinox(_torch_model(model, size), net)
    params, static = eqx.partition(net, eqx.is_array)
    x, e, t, r = (jnp.asarray(a, dtype=jnp.float32) for a in _times(model, size, ratio))
    tb = t[:, None, None, None]
    return mj, params, static, x, e, t, r, (1 - tb) * x + tb * e, e - x


@functools.lru_cache(maxsize=None)
def _jax_call(model, size, ratio, kind):
    import equinox as eqx
    import jax

    # The suite's JAX settings (x64 on) before the model is made, so that the weights and the
    # traced programs do not depend on which cell of the process set them first.
    jax_x64()
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


def _calls(variant, model, ratio, kinds):
    """Warm calls of `kinds` ("step", "fm_step", "forward", "jvp") for one MeanFlowLoss variant."""
    _check(variant)
    size = _size()
    if variant == "jax":
        return {k: _jax_call(model, size, ratio, k) for k in kinds}
    calls = _torch_case(model, size, ratio, variant)
    return {k: calls[k] for k in kinds}


class _MeanFlowClass(InterleavedBenchmark):
    # Error: every output (FM loss, u or du/dt; PyTorch and JAX, which share the weights)
    # against the naive variant's eager PyTorch code in float64 (`_torch_reference`); the
    # MeanFlow step reads n/a (its weighted loss is ~1 whatever the answer: `_reference`).
    # Building (imports, XLA compiles) dominates a process: few processes, one call of the slow cells.
    processes = _processes(4)
    rounds_per_process = 5
    measurement_time = 0.05
    # One measuring process's build, with a cold XLA cache, must fit.
    timeout = 300


class MeanFlowStep(_MeanFlowClass):
    """One training step (loss + backward) of the MeanFlow loss, per variant and r != t ratio.

    Error n/a: the step returns the adaptively weighted loss, ~1 whatever the answer (see
    `_reference`); the variants' numerics are recorded in `JVPCost` and `Forward`.
    """

    params = [MODELS, RATIOS, [*VARIANTS, *TWINS]]
    param_names = ["model", "ratio", "variant"]
    operations = ("step",)
    baseline = BASELINE
    optimised = "stacked"
    # 54 step callables make a process last about a minute: one process fewer keeps the run short.
    processes = _processes(3)

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, model, ratio, variant):
        ratios = _listed(RATIOS_ENV)
        if ratios and ratio not in ratios:
            skip(f"ratio {ratio} is left out of this run by {RATIOS_ENV}")
        return _calls(variant, model, ratio, [operation])[operation]

    def reference(self, operation, model, ratio):
        return _reference(operation, model, ratio)


class MeanFlowOverhead(_MeanFlowClass):
    """MeanFlow step over flow-matching step, per process, at ratio 0.25.

    Per loss variant (the step differs with each); the denominator is the FM step in the same
    precision and framework (bfloat16 autocast for bf16, JAX for jax, float32 eager for the rest),
    measured interleaved with the step in the same process, so the process's offset cancels.
    The FM step's error is recorded; the MeanFlow step's is n/a (see `MeanFlowStep`).
    """

    params = [MODELS, [*VARIANTS, *TWINS]]
    param_names = ["model", "variant"]
    operations = ("step", "fm_step")
    baseline = BASELINE
    optimised = "stacked"

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, model, variant):
        return _calls(variant, model, "0.25", [operation])[operation]

    def reference(self, operation, model):
        return _reference(operation, model, "0.25")

    def track_overhead_vs_fm(self, cache, model, variant):
        return self.ratio(cache, "step", "fm_step", (model, variant))

    track_overhead_vs_fm.unit = "ratio"


class JVPCost(_MeanFlowClass):
    """du/dt alone (no grad, whole batch, ratio 0.25), one row per distinct JVP code.

    `track_jvp_over_forward` divides, process by process, by the forward of the same variant
    (same precision and compilation) measured interleaved in the same process.
    """

    params = [MODELS, [*JVPS, *TWINS]]
    # The JVP code is this class's "variant": reports pair the values of a parameter of that name.
    param_names = ["model", "variant"]
    operations = ("jvp", "forward")
    baseline = "func_jvp"  # naive's JVP code

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, model, variant):
        return _calls(JVPS[variant], model, "0.25", [operation])[operation]

    def reference(self, operation, model):
        return _reference(operation, model, "0.25")

    def track_jvp_over_forward(self, cache, model, variant):
        return self.ratio(cache, "jvp", "forward", (model, variant))

    track_jvp_over_forward.unit = "ratio"


class Forward(_MeanFlowClass):
    """The model's prediction alone (no grad), one row per distinct forward code."""

    params = [MODELS, [*FORWARDS, *TWINS]]
    param_names = ["model", "variant"]
    operations = ("forward",)
    baseline = "eager"  # naive's forward

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, model, variant):
        return _calls(FORWARDS[variant], model, "0.25", [operation])[operation]

    def reference(self, operation, model):
        return _reference(operation, model, "0.25")


class FMStep(_MeanFlowClass):
    """The standard flow-matching step (loss + backward, h = 0): the MeanFlow step's yardstick."""

    params = [MODELS, [*FM_STEPS, *TWINS]]
    param_names = ["model", "variant"]
    operations = ("fm_step",)
    baseline = "eager"  # naive's FM step

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, model, variant):
        return _calls(FM_STEPS[variant], model, "0.25", [operation])[operation]

    def reference(self, operation, model):
        return _reference(operation, model, "0.25")
