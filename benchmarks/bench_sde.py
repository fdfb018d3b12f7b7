"""Study 2: SDE ensembles (Euler-Maruyama, Ornstein-Uhlenbeck), noise pre-generated or drawn
inside the scan, against diffrax. Everything in float32, as the study's claim measured.

Every timed call starts from a key and returns the paths: the pregen variant's time includes
drawing its noise, since that is its cost of getting paths from a key, as the other variants'
times include theirs.

The in-scan chunked variants (chunked, time_major_chunked, time_major_rbg) are given an explicit
chunk, `sde.scan_chunk`'s, which keeps at least `sde.MIN_CHUNKS` outer iterations at every
benchmarked size: their noise is drawn inside the scan. The adaptive policy, which draws all the
noise up front for small problems, is its own variant (time_major_adaptive). Every class records
the chunk used (`track_chunk`, steps of noise per draw) next to its times. Every derived rate
uses the per-process medians the interleaved measurement keeps (one statistic everywhere).

The classes that compare variants (EnsembleSimulation, RNGBound, ParameterSweep) are
`InterleavedBenchmark`s: the variants of a cell are measured interleaved in several fresh
processes, one asv sample per process. Memory stays asv-native (`EnsembleSimulationMemory`,
`LongRun`): asv's peakmem needs a process per cell.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os

from ._companions import ErrorOf
from ._interleave import CONTROL, injected_variants
from .common import Benchmark, InterleavedBenchmark, jit_compile, require, skip

VARIANTS = [
    "pregen",
    "auto",
    "chunked",
    "time_major",
    "time_major_chunked",
    "time_major_adaptive",
    "time_major_rbg",
    "diffrax",
    "diffrax_vbt",
]
IN_SCAN_CHUNKED = ["chunked", "time_major_chunked", "time_major_rbg"]
# The VirtualBrownianTree descends a tree every step, so it runs at the small sizes only.
VBT_MAX_TRAJ_STEPS = 100 * 1000
DT = 1e-3
# The OU problem every class simulates (the sweep varies theta and sigma): x0, theta, mu, sigma.
X0, THETA, MU, SIGMA = 1.0, 1.0, 0.5, 0.3


def _study():
    return require("perflab.sde")


def _check_variant(variant, n_traj, n_steps):
    sde = _study()
    if variant not in sde.SIMULATE.names or not hasattr(sde, "noise_chunk"):
        skip(f"variant {variant!r} or noise_chunk is not in this commit's perflab.sde")
    if variant.startswith("diffrax") and importlib.util.find_spec("diffrax") is None:
        skip("diffrax is not installed")
    if variant == "diffrax_vbt" and n_traj * n_steps > VBT_MAX_TRAJ_STEPS:
        skip("diffrax_vbt is timed at 100 x 1000 only (about 2 s per call beyond)")


SIZE_ENV = "PERFLAB_SDE_SIZE"
GPU_SIZE = (1000, 10000)


def _check_size(n_traj, n_steps):
    # PERFLAB_SDE_SIZE=gpu (or NxM, one cell of the grid) measures one size and records the
    # others n/a: the grid stays the same on every machine, so reports still pair the cells.
    chosen = os.environ.get(SIZE_ENV, "")
    if not chosen:
        return
    if chosen == "gpu":
        wanted = GPU_SIZE
    else:
        try:
            wanted = tuple(int(v) for v in chosen.split("x"))
        except ValueError:
            wanted = ()
        if len(wanted) != 2:
            raise ValueError(f"{SIZE_ENV} must be 'gpu' or '<n_traj>x<n_steps>' (e.g. 100x1000), got {chosen!r}")
    if (n_traj, n_steps) != wanted:
        skip(f"{SIZE_ENV}={chosen}: only {wanted[0]} x {wanted[1]} is measured in this run")


def _problem():
    import jax
    import jax.numpy as jnp

    sde = _study()
    params = sde.ou_params(theta=THETA, mu=MU, sigma=SIGMA, dtype=jnp.float32)
    return sde, jnp.float32(X0), params, jax.random.key(0)


def bench_chunk(n_traj, n_steps, variant):
    """The `chunk` argument the benchmarks pass: explicit for the in-scan chunked variants.

    Arguments:
        n_traj: trajectories.
        n_steps: steps.
        variant: the `simulate` variant.

    Returns:
        `sde.scan_chunk` (at least `sde.MIN_CHUNKS` outer iterations) for the in-scan chunked
        variants; None for the others (time_major_adaptive applies its own rule).
    """
    return _study().scan_chunk(n_traj, n_steps) if variant in IN_SCAN_CHUNKED else None


def _chunk_used(n_traj, n_steps, variant):
    return _study().noise_chunk(variant, n_traj, n_steps, chunk=bench_chunk(n_traj, n_steps, variant))


def simulate_fn(n_traj, n_steps, variant, output):
    """The benchmarked function of a key (the tests trace the same function).

    Arguments:
        n_traj: trajectories.
        n_steps: steps.
        variant: the `simulate` variant.
        output: ``"path"`` or ``"final"``.

    Returns:
        ``run(key)`` -> the simulate output, with the benchmark's chunk (`bench_chunk`).
    """
    sde, x0, params, _ = _problem()
    chunk = bench_chunk(n_traj, n_steps, variant)

    def run(key):
        return sde.simulate(
            sde.ou_drift,
            sde.ou_diffusion,
            x0,
            params,
            key,
            dt=DT,
            n_traj=n_traj,
            n_steps=n_steps,
            variant=variant,
            output=output,
            chunk=chunk,
        )

    return run


@functools.lru_cache(maxsize=None)
def _simulate_call(n_traj, n_steps, variant, output="path"):
    _, _, _, key = _problem()
    return jit_compile(simulate_fn(n_traj, n_steps, variant, output), key)


@functools.lru_cache(maxsize=None)
def _bound_call(n_traj, n_steps, impl):
    """Drawing n_traj * n_steps float32 normals in one call: the PRNG bound of a variant."""
    import jax
    import jax.numpy as jnp

    _, _, _, key = _problem()

    def draw(key):
        if impl == "rbg":  # seeded as the time_major_rbg variant seeds its generator
            key = jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="rbg")
        return jax.random.normal(key, (n_steps, n_traj), jnp.float32)

    return jit_compile(draw, key)


# The variant parameter of the comparing classes: the study's variants, the benchmark's control
# twin of the baseline, and (calibration only) the injected-slowdown twins. The baseline is the
# registry's (`perflab.sde.SIMULATE.baseline`), written out so that importing the suite does not
# start JAX; tests/test_sde.py checks that the two agree.
BASELINE = "pregen"
BASELINE_RNG = "threefry"


def moments_error(finals, mean, var):
    """Relative error of an ensemble's final-time sample moments against the analytic ones:
    max(|mean_hat - mean| / |mean|, |var_hat - var| / var), the worst over parameter sets.

    A Monte Carlo statistic, not a rounding error: for n trajectories its noise floor is about
    sqrt(var / n) / |mean| for the mean and sqrt(2 / (n - 1)) for the variance (0.03 and 0.14 at
    100 trajectories, 0.01 and 0.045 at 1000). Variants that draw their noise differently from
    one key get different values below that floor (0.08-0.23 at 100 x 1000); a wrong drift,
    diffusion, step or noise scale moves it far beyond it.

    Arguments:
        finals: (..., n_traj) final states, one row per parameter set.
        mean, var: (...) analytic mean and variance (`sde.ou_moments` of the Euler chain).

    Returns:
        The error, a float.
    """
    import numpy as np

    finals = np.asarray(finals, dtype=np.float64)
    got_mean, got_var = finals.mean(axis=-1), finals.var(axis=-1, ddof=1)
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    return float(max(np.max(np.abs(got_mean - mean) / np.abs(mean)), np.max(np.abs(got_var - var) / var)))


def _ou_reference(n_steps, thetas=THETA, sigmas=SIGMA):
    """`ErrorOf` the paths ``(..., n_traj, n_steps)``: `moments_error` of their final states
    against the Euler-Maruyama chain's exact moments at t = n_steps * DT (`sde.ou_moments` with
    dt, so the step's own bias is not counted as error)."""
    sde = _study()
    if not hasattr(sde, "ou_moments"):
        skip("perflab.sde.ou_moments is not in this commit")
    mean, var = sde.ou_moments(X0, thetas, MU, sigmas, n_steps * DT, dt=DT)
    return ErrorOf(
        lambda paths: moments_error(_last_step(paths), mean, var),
        f"sample mean/variance at t={n_steps * DT:g} against the OU Euler chain's moments",
    )


def _last_step(paths):
    import numpy as np

    return np.asarray(paths)[..., -1]


def _generator(variant):
    return "rbg" if variant == "time_major_rbg" else "threefry"


def _per_process_rate(cache, operation, params, work):
    """Seconds per call / `work`, one value per process (the per-process medians the cache
    holds: one statistic everywhere, the one the `track_` times carry); NaN where not measured."""
    from ._interleave import key

    seconds = cache["values"].get(key(operation, params))
    if seconds is None:
        return math.nan
    return {"samples": [t / work for t in seconds], "number": 1}


class EnsembleSimulation(InterleavedBenchmark):
    """OU ensemble, paths (n_traj, n_steps) in float32 from one key, per variant.

    Two operations per cell, interleaved in each process: `simulate` (the variant from a key to
    its paths) and `bound` (drawing the same n_traj x n_steps normals alone with the variant's
    generator). `track_time_over_rng_bound` is their ratio process by process. diffrax_vbt is measured at
    100 x 1000 only (skipped with the reason elsewhere: ~2 s per call beyond). The error of
    `simulate` is `moments_error` (final-time sample moments against the OU Euler chain's);
    `bound` has none.
    """

    params = [[100, 1000], [1000, 10000], [*VARIANTS, CONTROL, *injected_variants()]]
    param_names = ["n_traj", "n_steps", "variant"]
    operations = ("simulate", "bound")
    baseline = BASELINE
    optimised = "time_major_chunked"
    # Sized by the calibration: measurements long enough for several calls of the mid-sized cells.
    processes = 5
    rounds_per_process = 5
    measurement_time = 0.06
    timeout = 900

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, n_traj, n_steps, variant):
        _check_size(n_traj, n_steps)
        _check_variant(variant, n_traj, n_steps)
        if operation == "bound":
            return _bound_call(n_traj, n_steps, _generator(variant))
        return _simulate_call(n_traj, n_steps, variant)

    def reference(self, operation, n_traj, n_steps):
        # The bound is a bare draw of normals: no study reference (n/a).
        return _ou_reference(n_steps) if operation == "simulate" else None

    def track_seconds_per_step(self, cache, n_traj, n_steps, variant):
        # Seconds per trajectory-step: a throughput written lower-is-better, as asv reads it.
        return _per_process_rate(cache, "simulate", (n_traj, n_steps, variant), n_traj * n_steps)

    track_seconds_per_step.unit = "s/traj-step"

    def track_time_over_rng_bound(self, cache, n_traj, n_steps, variant):
        # time(variant) / time(draw the same normals alone, same generator), both measured
        # interleaved in each process, so that machine load hits both alike.
        return self.ratio(cache, "simulate", "bound", (n_traj, n_steps, variant))

    track_time_over_rng_bound.unit = "x PRNG bound"

    def track_chunk(self, cache, n_traj, n_steps, variant):
        # Deterministic (the rule, not a measurement): the control and injected twins run the
        # baseline's code, so they report its chunk.
        return _chunk_used(n_traj, n_steps, variant if variant in VARIANTS else self.baseline)

    track_chunk.unit = "steps"


class RNGBound(InterleavedBenchmark):
    """The time to draw n_traj * n_steps float32 standard normals in one call, per generator
    (the `variant` parameter is the generator; the baseline is threefry, JAX's default).

    No reference (error n/a): a bare draw of random bits has no study result to compare with,
    and a test of the generator's distribution is JAX's, not this study's.
    """

    params = [[100, 1000], [1000, 10000], ["threefry", "rbg", CONTROL, *injected_variants()]]
    param_names = ["n_traj", "n_steps", "variant"]
    operations = ("normals",)
    baseline = BASELINE_RNG
    # Bare draws build quickly: short measurements, few processes.
    processes = 4
    rounds_per_process = 5
    measurement_time = 0.02

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, n_traj, n_steps, variant):
        _check_size(n_traj, n_steps)
        _study()
        return _bound_call(n_traj, n_steps, variant)


LONG_VARIANTS = ["pregen", "chunked", "time_major_chunked", "diffrax"]


class LongRun(Benchmark):
    """Memory of 1,000 trajectories x 50,000 steps (float32): the path is 200 MB; pre-generated
    noise adds as much again. With output="final" only the noise-in-scan variants stay small.

    The figure is XLA's memory analysis of the compiled program (arguments, outputs and
    temporaries): the program's own, deterministic, and nothing is run.
    """

    params = [LONG_VARIANTS, ["path", "final"]]
    param_names = ["variant", "output"]
    rounds = 1
    repeat = 1
    timeout = 600

    def setup(self, variant, output):
        _check_variant(variant, 1000, 50000)
        import jax

        _, _, _, key = _problem()
        self.compiled = jax.jit(simulate_fn(1000, 50000, variant, output)).lower(key).compile()

    def track_memory(self, variant, output):
        from ._companions import program_memory

        return program_memory(self.compiled)

    track_memory.unit = "bytes"

    def track_chunk(self, variant, output):
        return _chunk_used(1000, 50000, variant)

    track_chunk.unit = "steps"


SWEEP_VARIANTS = [
    "pregen",
    "auto",
    "chunked",
    "time_major",
    "time_major_chunked",
    "time_major_adaptive",
    "time_major_rbg",
    "diffrax",
]
N_SETS, SWEEP_TRAJ, SWEEP_STEPS = 32, 100, 1000


def _sweep_grid():
    """The sweep's 32 (theta, sigma) parameter sets, float32: one grid for the benchmark and its
    reference."""
    import numpy as np

    return np.linspace(0.5, 2.0, N_SETS, dtype=np.float32), np.linspace(0.1, 0.5, N_SETS, dtype=np.float32)


def sweep_fn(variant):
    """The parameter sweep's function and its arguments (the tests trace the same function).

    Arguments:
        variant: the `simulate` variant.

    Returns:
        ``(sweep, (key, thetas, sigmas))``.
    """
    import jax
    import jax.numpy as jnp

    sde, x0, _, key = _problem()
    thetas, sigmas = (jnp.asarray(a) for a in _sweep_grid())
    chunk = bench_chunk(SWEEP_TRAJ, SWEEP_STEPS, variant)

    def sweep(key, thetas, sigmas):
        # One key for every parameter set (common random numbers): the noise is shared.
        def one(theta, sigma):
            params = {"theta": theta, "mu": jnp.float32(MU), "sigma": sigma}
            return sde.simulate(
                sde.ou_drift,
                sde.ou_diffusion,
                x0,
                params,
                key,
                dt=DT,
                n_traj=SWEEP_TRAJ,
                n_steps=SWEEP_STEPS,
                variant=variant,
                chunk=chunk,
            )

        return jax.vmap(one)(thetas, sigmas)

    return sweep, (key, thetas, sigmas)


@functools.lru_cache(maxsize=None)
def _sweep_call(variant):
    sweep, args = sweep_fn(variant)
    return jit_compile(sweep, *args)


class ParameterSweep(InterleavedBenchmark):
    """32 OU parameter sets x 100 trajectories x 1,000 steps, vmapped over the parameters."""

    params = [[*SWEEP_VARIANTS, CONTROL, *injected_variants()]]
    param_names = ["variant"]
    operations = ("sweep",)
    baseline = BASELINE
    optimised = "time_major_chunked"
    # One cell only: more rounds and processes give it more samples at little cost.
    processes = 5
    rounds_per_process = 7
    measurement_time = 0.05

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, variant):
        _check_variant(variant, SWEEP_TRAJ, SWEEP_STEPS)
        return _sweep_call(variant)

    def reference(self, operation):
        """Each parameter set's final-time sample moments against its OU Euler chain's, the
        worst of the 32 (`moments_error`)."""
        return _ou_reference(SWEEP_STEPS, *_sweep_grid())

    def track_chunk(self, cache, variant):
        # Deterministic; the control and injected twins report the baseline's chunk.
        return _chunk_used(SWEEP_TRAJ, SWEEP_STEPS, variant if variant in SWEEP_VARIANTS else self.baseline)

    track_chunk.unit = "steps"
