"""The instrument on a synthetic workload: a fixed program, its control twin, and (under
PERFLAB_INJECT=1) the injected +5% / +10% twins; `ITERATIONS` variants add real work instead.

`python -m perflab calibrate -b Calibration` judges it like the real classes; it is the quick
subject of the calibration's own test. Nothing here imports perflab, so it runs against any
commit.
"""

from __future__ import annotations

import functools

import numpy as np

from ._interleave import CONTROL, injected_variants
from .common import InterleavedBenchmark, jax_x64, jit_compile

# Extra iterations of the same loop body; per-call dispatch dilutes them, so `calibrate` reports the effect measured.
ITERATIONS = {"base": 100, "more5pct": 105, "more10pct": 110}


@functools.lru_cache(maxsize=None)
def _workload(variant):
    jax = jax_x64()
    jnp = jax.numpy
    iterations = ITERATIONS[variant]
    rng = np.random.default_rng(0)
    a = jax.device_put(rng.normal(size=(64, 64)) / 8)
    x = jax.device_put(np.ones((64, 64)))

    def loop(a, x):
        return jax.lax.fori_loop(0, iterations, lambda i, y: jnp.tanh(a @ y), x)

    return jit_compile(loop, a, x)


class Calibration(InterleavedBenchmark):
    """About 2 ms of jitted float64 64x64 matmul + tanh; variants add 0%, 5% or 10% of it."""

    params = [[*ITERATIONS, CONTROL, *injected_variants()]]
    param_names = ["variant"]
    operations = ("workload",)
    baseline = "base"
    processes = 4
    rounds_per_process = 5

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, variant):
        return _workload(variant)
