"""The instrument measured: a fixed workload whose variants differ by a known amount of work.

`python -m perflab calibrate` runs this class many times and counts how often asv's own
significance rule flags `identical` (the same code as `base`: a false positive) and detects
`plus5pct` / `plus10pct` (5% / 10% more loop iterations of the same body). Nothing here imports
perflab, so the calibration runs against any commit.
"""

from __future__ import annotations

import functools

import numpy as np

from .common import Benchmark, jit_compile

# Extra iterations of the same loop body; the per-call dispatch (~1% of a call here) dilutes
# the effect slightly, so `calibrate` also reports the effect it measured.
ITERATIONS = {"base": 100, "identical": 100, "plus5pct": 105, "plus10pct": 110}


@functools.lru_cache(maxsize=None)
def _workload(variant):
    import jax
    import jax.numpy as jnp

    iterations = ITERATIONS[variant]
    rng = np.random.default_rng(0)
    a = jax.device_put(rng.normal(size=(64, 64)) / 8)
    x = jax.device_put(np.ones((64, 64)))

    # `identical` compiles its own executable from the same code, as a second variant would.
    def loop(a, x):
        return jax.lax.fori_loop(0, iterations, lambda i, y: jnp.tanh(a @ y), x)

    return jit_compile(loop, a, x)


class Calibration(Benchmark):
    """About 2 ms of jitted float64 64x64 matmul + tanh; variants add 0%, 5% or 10% of it."""

    params = [["base", "identical", "plus5pct", "plus10pct"]]
    param_names = ["variant"]

    def setup(self, variant):
        self.call = _workload(variant)

    def time_workload(self, variant):
        self.call()
