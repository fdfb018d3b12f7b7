"""Study 2: every SDE ensemble variant integrates the same Euler-Maruyama chain, each with its own
noise stream; same noise gives the same path; the OU moments match the closed form."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perflab import sde, variants
from perflab.sde._diffrax import diffrax_simulate

NOISE = list(sde.NOISE_VARIANTS)
ALL = list(sde.SIMULATE.names)
IN_SCAN = list(sde.IN_SCAN_CHUNKED)


def _chunk_kw(variant, chunk):
    # time_major_adaptive picks its own chunk (an explicit one is an error); the rest take one.
    return {} if variant == "time_major_adaptive" else dict(chunk=chunk)


DT = 0.01
STATES = {"scalar": (), "vector": (3,)}
DTYPES = [jnp.float32, jnp.float64]


def _tol(dtype):
    return dict(rtol=2e-6, atol=2e-6) if dtype == jnp.float32 else dict(rtol=1e-13, atol=1e-13)


def _x0(shape, dtype):
    return jnp.asarray(np.linspace(1.0, 2.0, int(np.prod(shape))).reshape(shape), dtype)


def _sim(variant, key, x0, n_traj, n_steps, **kw):
    return _sim_fn(variant, n_traj, n_steps, tuple(sorted(kw.items())))(key, x0)


@functools.lru_cache(maxsize=None)
def _sim_fn(variant, n_traj, n_steps, kw):
    def run(key, x0):
        params = sde.ou_params(theta=1.5, mu=0.5, sigma=0.4, dtype=x0.dtype)
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
            **dict(kw),
        )

    return jax.jit(run)


def _numpy_em(x0, zs, theta=1.5, mu=0.5, sigma=0.4, dt=DT):
    """Naive float64 loop: the independent reference."""
    zs = np.asarray(zs, np.float64)
    x = np.broadcast_to(np.asarray(x0, np.float64), zs[:, 0].shape).copy()
    out = np.empty_like(zs)
    for t in range(zs.shape[1]):
        x = x + theta * (mu - x) * dt + sigma * np.sqrt(dt) * zs[:, t]
        out[:, t] = x
    return out


@pytest.mark.parametrize(
    "state,dtype", [("scalar", jnp.float32), ("vector", jnp.float64)], ids=["scalar-f32", "vector-f64"]
)
@pytest.mark.parametrize("variant", NOISE)
def test_same_noise_gives_the_pregen_path(variant, state, dtype, key):
    # 230 steps with chunk 100: two full chunks and a remainder chunk.
    x0 = _x0(STATES[state], dtype)
    n_traj, n_steps = 7, 230
    got = _sim(variant, key, x0, n_traj, n_steps, **_chunk_kw(variant, 100))
    zs = sde.ensemble_noise(
        key, n_traj=n_traj, n_steps=n_steps, shape=x0.shape, dtype=dtype, variant=variant, **_chunk_kw(variant, 100)
    )
    assert zs.shape == (n_traj, n_steps) + x0.shape and zs.dtype == dtype
    _, loop = sde.make_sde(DT, sde.ou_drift, sde.ou_diffusion)
    params = sde.ou_params(theta=1.5, mu=0.5, sigma=0.4, dtype=dtype)
    want = jax.vmap(lambda z: loop(x0, z, params))(zs)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, **_tol(dtype))
    np.testing.assert_allclose(got, _numpy_em(x0, zs), rtol=1e-5 if dtype == jnp.float32 else 1e-12, atol=1e-5)


def test_time_major_fed_pregen_noise_gives_the_pregen_path(key):
    # The time-major chunk loop itself, fed the pregen variant's noise through its draw hook,
    # must reproduce pregen's paths value for value (same noise, same update).
    from perflab.sde import _ensemble

    x0, n_traj, n_steps = jnp.float32(1.0), 5, 300
    params = sde.ou_params(theta=1.5, mu=0.5, sigma=0.4, dtype=jnp.float32)  # as _sim uses
    zs = sde.ensemble_noise(key, n_traj=n_traj, n_steps=n_steps, variant="pregen")
    advance = lambda x, z: sde._user.em_update(sde.ou_drift, sde.ou_diffusion, DT, x, z, params)
    time_major_zs = jnp.moveaxis(zs, 0, 1)
    draw = lambda c, size: jax.lax.dynamic_slice_in_dim(time_major_zs, c * 100, size)
    path = jnp.moveaxis(_ensemble._chunk_loop(jnp.full((n_traj,), x0), n_steps, 100, draw, advance, True, 1), 0, 1)
    pregen = _sim("pregen", key, x0, n_traj, n_steps)
    assert path.shape == pregen.shape == (n_traj, n_steps)
    np.testing.assert_allclose(path, pregen, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(path, _numpy_em(x0, zs), rtol=1e-5, atol=1e-5)
    # Fed other noise, the paths differ: the comparison above can fail.
    other = _ensemble._chunk_loop(
        jnp.full((n_traj,), x0), n_steps, 100, lambda c, size: -draw(c, size), advance, True, 1
    )
    assert not np.allclose(jnp.moveaxis(other, 0, 1), pregen, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "state,dtype", [("scalar", jnp.float64), ("vector", jnp.float32)], ids=["scalar-f64", "vector-f32"]
)
def test_diffrax_fed_the_same_noise_gives_the_pregen_path(state, dtype, key):
    x0 = _x0(STATES[state], dtype)
    zs = sde.ensemble_noise(key, n_traj=4, n_steps=120, shape=x0.shape, dtype=dtype, variant="pregen")
    params = sde.ou_params(theta=1.5, mu=0.5, sigma=0.4, dtype=dtype)
    got = diffrax_simulate(
        sde.ou_drift,
        sde.ou_diffusion,
        x0,
        params,
        key,
        dt=DT,
        n_traj=4,
        n_steps=120,
        brownian="diffrax",
        keep_path=True,
        noise=zs,
    )
    want = _sim("pregen", key, x0, 4, 120)
    assert got.dtype == dtype
    # diffrax forms the increment from its own time grid: equal up to a few roundings.
    np.testing.assert_allclose(
        got, want, rtol=1e-5 if dtype == jnp.float32 else 1e-12, atol=1e-5 if dtype == jnp.float32 else 1e-12
    )


@pytest.mark.parametrize("variant", ALL)
def test_same_key_same_paths_other_key_other_paths(variant, key):
    x0 = jnp.float32(1.0)
    a, b, c = (_sim(variant, k, x0, 6, 40) for k in (key, key, jax.random.key(99)))
    np.testing.assert_array_equal(a, b)
    assert np.all(np.abs(np.asarray(a) - np.asarray(c))[:, -1] > 0)
    assert len(np.unique(np.asarray(a)[:, -1])) == 6  # trajectories are independent


def test_variants_use_different_noise_streams(key):
    finals = {v: np.asarray(_sim(v, key, jnp.float32(1.0), 6, 40)[:, -1]) for v in ALL}
    for v, w in [(v, w) for v in ALL for w in ALL if v < w]:
        assert not np.allclose(finals[v], finals[w]), (v, w)


@pytest.mark.parametrize("variant", ALL[:-1])  # diffrax_vbt: saved the same way as diffrax
def test_final_output_is_the_last_state_of_the_path(variant, key):
    x0 = jnp.ones(2, jnp.float64)
    path = _sim(variant, key, x0, 5, 40, **_chunk_kw(variant, 15))
    final = _sim(variant, key, x0, 5, 40, output="final", **_chunk_kw(variant, 15))
    assert final.shape == (5, 2)
    np.testing.assert_allclose(final, path[:, -1], rtol=1e-13, atol=1e-13)


def _ou_check(final, x0, n_steps, dtype, theta=1.5, mu=0.5, sigma=0.4):
    final = np.asarray(final, np.float64).reshape(final.shape[0], -1)
    n = final.shape[0]
    mean, var = sde.ou_moments(x0, theta, mu, sigma, n_steps * DT, dt=DT)
    # Standard errors of the sample mean and variance of n normal draws; 5 of them allowed.
    se_mean, se_var = np.sqrt(var / n), var * np.sqrt(2.0 / (n - 1))
    for column, start in zip(final.T, np.ravel(x0)):
        m, v = sde.ou_moments(start, theta, mu, sigma, n_steps * DT, dt=DT)
        assert abs(column.mean() - m) < 5 * np.sqrt(v / n), (column.mean(), m)
        assert abs(column.var(ddof=1) - v) < 5 * v * np.sqrt(2.0 / (n - 1)), (column.var(ddof=1), v)
        # The exact OU law differs from the Euler chain's by the O(dt) discretisation bias only.
        m_exact, v_exact = sde.ou_moments(start, theta, mu, sigma, n_steps * DT)
        assert abs(column.mean() - m_exact) < 5 * np.sqrt(v / n) + abs(m - m_exact)
        assert abs(column.var(ddof=1) - v_exact) < 5 * v * np.sqrt(2.0 / (n - 1)) + abs(v - v_exact)
    return se_mean, se_var


@pytest.mark.parametrize(
    "variant,dtype",
    # float32 for every variant; float64 for the baseline, the default and the peer (compile time).
    [(v, jnp.float32) for v in ALL] + [(v, jnp.float64) for v in ("pregen", "time_major_chunked", "diffrax")],
    ids=lambda p: getattr(p, "__name__", p),
)
def test_ou_mean_and_variance_match_the_closed_form(variant, dtype, key):
    small = variant == "diffrax_vbt"
    n_traj, n_steps = (3000, 40) if small else (20000, 120)
    x0 = jnp.asarray([1.5, -0.5], dtype)
    final = _sim(variant, key, x0, n_traj, n_steps, output="final")
    assert final.dtype == dtype
    _ou_check(final, x0, n_steps, dtype)


def test_ou_moments_closed_form_limits():
    mean, var = sde.ou_moments(2.0, 1.0, 0.5, 0.3, 50.0)
    np.testing.assert_allclose([mean, var], [0.5, 0.3**2 / 2.0], rtol=1e-12)
    # One Euler step: x0 + theta (mu - x0) dt, variance sigma^2 dt.
    np.testing.assert_allclose(sde.ou_moments(2.0, 1.0, 0.5, 0.3, 0.1, dt=0.1), [2.0 - 0.15, 0.09 * 0.1], rtol=1e-12)
    # theta dt = 1 (a = 0) is not degenerate: every step forgets the state, variance sigma^2 dt.
    np.testing.assert_allclose(sde.ou_moments(2.0, 10.0, 0.5, 0.3, 0.5, dt=0.1), [0.5, 0.09 * 0.1], rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(theta=0.0), "theta must be nonzero"),
        (dict(theta=0.0, dt=0.1), "theta must be nonzero"),
        (dict(theta=[1.0, 0.0]), "theta must be nonzero"),
        (dict(theta=20.0, dt=0.1), r"theta \* dt must not be 2"),
        (dict(t=-1.0), "t must be >= 0"),
        (dict(dt=0.0), "dt must be a positive finite scalar"),
        (dict(dt=-0.1), "dt must be a positive finite scalar"),
        (dict(dt=float("inf")), "dt must be a positive finite scalar"),
        (dict(t=1.05, dt=0.1), "t must be a multiple of dt"),
    ],
)
def test_ou_moments_rejects_degenerate_input(kwargs, match):
    args = dict(x0=2.0, theta=1.0, mu=0.5, sigma=0.3, t=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sde.ou_moments(**args)


def _loop_summary(jaxpr):
    """(outermost loops, primitive counts outside any loop): each loop as (primitive, length,
    counts of the primitives in its body, nested jaxprs included); outside counts also
    ``random_bits_words``, the random words drawn outside every loop."""
    import collections

    loops, outside = [], collections.Counter()

    def body_counts(j, counts):
        for eqn in j.eqns:
            counts[eqn.primitive.name] += 1
            for sub in _subjaxprs(eqn):
                body_counts(sub, counts)
        return counts

    def walk(j):
        for eqn in j.eqns:
            if eqn.primitive.name in ("scan", "while"):
                counts = collections.Counter()
                for sub in _subjaxprs(eqn):
                    body_counts(sub, counts)
                loops.append((eqn.primitive.name, eqn.params.get("length"), counts))
                continue
            outside[eqn.primitive.name] += 1
            if eqn.primitive.name == "random_bits":  # how many random words are drawn outside
                outside["random_bits_words"] += sum(int(np.prod(v.aval.shape)) for v in eqn.outvars)
            for sub in _subjaxprs(eqn):
                walk(sub)

    walk(jaxpr)
    return loops, outside


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            sub = getattr(item, "jaxpr", item)
            if hasattr(sub, "eqns"):
                yield sub


def _benchmarked_settings():
    """Every (class, n_traj, n_steps, variant, output) the SDE benchmarks time."""
    from benchmarks import bench_sde as b

    grid = dict(zip(b.EnsembleSimulation.param_names, b.EnsembleSimulation.params))
    out = []
    for n_traj in grid["n_traj"]:
        for n_steps in grid["n_steps"]:
            for v in grid["variant"]:
                if v not in b.VARIANTS:
                    continue  # the control (and injected) twins run the baseline's code
                if v == "diffrax_vbt" and n_traj * n_steps > b.VBT_MAX_TRAJ_STEPS:
                    continue  # the benchmark skips it there
                out.append(("EnsembleSimulation", n_traj, n_steps, v, "path"))
    for v in b.LONG_VARIANTS:
        for output in ("path", "final"):
            out.append(("LongRun", 1000, 50000, v, output))
    for v in b.SWEEP_VARIANTS:
        out.append(("ParameterSweep", b.SWEEP_TRAJ, b.SWEEP_STEPS, v, "path"))
    return out


BENCHMARKED = _benchmarked_settings()


def _benchmarked_jaxpr(cls, n_traj, n_steps, variant, output):
    from benchmarks import bench_sde as b

    if cls == "ParameterSweep":
        fn, args = b.sweep_fn(variant)
        return jax.make_jaxpr(fn)(*args).jaxpr
    return jax.make_jaxpr(b.simulate_fn(n_traj, n_steps, variant, output))(jax.random.key(0)).jaxpr


def _track_chunk(cls, n_traj, n_steps, variant, output):
    from benchmarks import bench_sde as b

    obj = getattr(b, cls)()
    args = {
        "EnsembleSimulation": (n_traj, n_steps, variant),
        "LongRun": (variant, output),
        "ParameterSweep": (variant,),
    }[cls]
    # No setup: it reads the rule, not a timing; the interleaved classes take asv's cache first.
    cache = (None,) if cls in ("EnsembleSimulation", "ParameterSweep") else ()
    return obj.track_chunk(*cache, *args)


@pytest.mark.parametrize(
    "cls,n_traj,n_steps,variant,output", BENCHMARKED, ids=["-".join(map(str, s)) for s in BENCHMARKED]
)
def test_benchmarked_variants_draw_where_their_names_say(cls, n_traj, n_steps, variant, output):
    # Traced exactly as the benchmark calls it (same sizes, same chunk argument): would fail if
    # an in-scan variant drew its noise before a one-iteration outer scan.
    loops, outside = _loop_summary(_benchmarked_jaxpr(cls, n_traj, n_steps, variant, output))
    chunk = _track_chunk(cls, n_traj, n_steps, variant, output)
    ((kind, length, body),) = loops  # one outermost loop in every variant
    if variant in IN_SCAN:
        assert length == n_steps // chunk >= sde.MIN_CHUNKS and n_steps % chunk == 0
        assert body["random_bits"] == 1 and body["scan"] == 1  # a draw, then the step scan
        # Nothing drawn before or after the loop (time_major_rbg: its generator's 4-word seed).
        assert outside["random_bits_words"] == (4 if variant == "time_major_rbg" else 0)
        assert chunk == sde.scan_chunk(n_traj, n_steps)
    elif variant == "time_major_adaptive":
        assert chunk == sde.auto_chunk(n_traj, n_steps) and length == n_steps // chunk
        assert body["random_bits"] == 1 and outside["random_bits"] == 0
        # Below the threshold the adaptive policy is pre-generation: one outer iteration.
        whole = n_traj * n_steps <= sde.WHOLE_DRAW_NORMALS
        assert (length == 1) == whole
    elif variant == "pregen":
        assert chunk == n_steps and kind == "scan" and length == n_steps
        assert outside["random_bits"] == 1 and body["random_bits"] == 0
        assert outside["random_bits_words"] == n_traj * n_steps  # one float32 normal per word
    elif variant in ("auto", "time_major"):
        assert chunk == 1 and kind == "scan" and length == n_steps
        assert body["random_bits"] == 1 and outside["random_bits"] == 0
        assert body["random_split" if variant == "auto" else "random_fold_in"] == 1
    else:  # diffrax: a while loop drawing each step's increment inside
        assert chunk == 1 and kind == "while" and body["random_bits"] >= 1


def test_variants_take_different_code_paths(key):
    # The structural fingerprints of every variant at one benchmarked grid point.
    from benchmarks import bench_sde as b

    n_traj, n_steps = 100, 1000
    summary = {
        v: _loop_summary(_benchmarked_jaxpr("EnsembleSimulation", n_traj, n_steps, v, "path")) for v in b.VARIANTS
    }
    impls = {v: _wrap_impls(jax.make_jaxpr(b.simulate_fn(n_traj, n_steps, v, "path"))(key).jaxpr) for v in b.VARIANTS}
    fingerprint = {
        v: (
            loops[0][0],
            loops[0][1],
            loops[0][2]["scan"],
            loops[0][2]["random_bits"],
            loops[0][2]["random_split"],
            loops[0][2]["random_fold_in"],
            outside["random_bits"],
            outside["random_split"] > 0,
            any("rbg" in i for i in impls[v]),
        )
        for v, (loops, outside) in summary.items()
    }
    assert fingerprint["pregen"][:2] == ("scan", n_steps) and fingerprint["pregen"][6] == 1
    assert fingerprint["auto"][4] == 1 and fingerprint["time_major"][5] == 1
    # Trajectory-major variants split a key per trajectory; time-major ones never do.
    for v in ["pregen", "auto", "chunked", "diffrax", "diffrax_vbt"]:
        assert fingerprint[v][7], v
    for v in ["time_major", "time_major_chunked", "time_major_adaptive", "time_major_rbg"]:
        assert not fingerprint[v][7], v
    # Only time_major_rbg switches the generator.
    assert [v for v in fingerprint if fingerprint[v][8]] == ["time_major_rbg"]
    # No two variants share a fingerprint (chunked vs time_major_chunked differ in the per-
    # trajectory key split, time_major_chunked vs time_major_adaptive in the outer loop's length
    # at this grid point, time_major_rbg in its generator).
    distinct = {fingerprint[v] for v in b.VARIANTS}
    assert len(distinct) == len(b.VARIANTS), fingerprint


def _wrap_impls(jaxpr):
    impls = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "random_wrap":
            impls.append(str(eqn.params["impl"]))
        for sub in _subjaxprs(eqn):
            impls.extend(_wrap_impls(sub))
    return impls


def test_scan_chunk_keeps_the_draw_inside_the_scan():
    rng = np.random.default_rng(0)
    sizes = [(int(a), int(b)) for a, b in zip(rng.integers(1, 5000, 60), rng.integers(sde.MIN_CHUNKS, 60000, 60))]
    for n_traj, n_steps in sizes + [(100, 1000), (1, 4), (10**6, 10)]:
        chunk = sde.scan_chunk(n_traj, n_steps)
        assert 1 <= chunk and n_steps // chunk >= sde.MIN_CHUNKS, (n_traj, n_steps, chunk)
        assert chunk * n_traj <= sde.CHUNK_NORMALS or chunk == 1, (n_traj, n_steps, chunk)
    assert sde.scan_chunk(1000, 10000) == 125 and 10000 % 125 == 0  # a divisor near the target
    assert sde.scan_chunk(1000, 10007) == sde.CHUNK_NORMALS // 1000  # prime: no useful divisor
    assert sde.scan_chunk(1000, 50000) == sde.scan_chunk(1000, 20000)  # n_steps only caps it
    assert sde.scan_chunk(1, 3) == 1  # fewer steps than MIN_CHUNKS: one step per draw
    assert sde.scan_chunk(100, 1000, size=4) == sde.scan_chunk(400, 1000)


def test_auto_chunk_draws_whole_below_the_threshold_only(monkeypatch):
    from perflab.sde import _ensemble

    for limit in (sde.WHOLE_DRAW_NORMALS, 6000):
        monkeypatch.setattr(_ensemble, "WHOLE_DRAW_NORMALS", limit)
        for n_traj in (1, 10, 300):
            at = limit // n_traj  # n_traj * at <= limit: one draw of everything
            assert sde.auto_chunk(n_traj, at) == at
            above = at + 1  # n_traj * above > limit: the in-scan rule
            assert sde.auto_chunk(n_traj, above) == sde.scan_chunk(n_traj, above) < above
        assert sde.auto_chunk(10, limit // 20, size=2) == limit // 20  # size counts
        assert sde.auto_chunk(10, limit // 20 + 1, size=2) < limit // 20 + 1


@pytest.mark.parametrize("fn", [sde.auto_chunk, sde.scan_chunk])
@pytest.mark.parametrize(
    "args,error,match",
    [
        ((10, 0), ValueError, "n_steps must be positive, got 0"),
        ((0, 10), ValueError, "n_traj must be positive, got 0"),
        ((-5, 10), ValueError, "n_traj must be positive, got -5"),
        ((10, 10, 0), ValueError, "size must be positive, got 0"),
        ((10, 2.5), TypeError, "n_steps must be a positive Python int"),
    ],
)
def test_chunk_rules_reject_non_positive_sizes(fn, args, error, match):
    with pytest.raises(error, match=match):
        fn(*args)


def test_noise_chunk_is_what_simulate_uses(key):
    assert sde.noise_chunk("time_major_chunked", 50, 300) == sde.scan_chunk(50, 300)
    assert sde.noise_chunk("time_major_adaptive", 50, 300) == sde.auto_chunk(50, 300) == 300
    assert sde.noise_chunk("chunked", 50, 300, chunk=7) == 7
    assert sde.noise_chunk("pregen", 50, 300) == 300 and sde.noise_chunk("auto", 50, 300) == 1
    with pytest.raises(ValueError, match="chunk=10: time_major_adaptive picks its chunk"):
        sde.noise_chunk("time_major_adaptive", 50, 300, chunk=10)
    with pytest.raises(ValueError, match="chunk=10: time_major_adaptive picks its chunk"):
        _sim("time_major_adaptive", key, jnp.float32(0.0), 5, 20, chunk=10)
    with pytest.raises(ValueError, match="variant='fast' is not a variant"):
        sde.noise_chunk("fast", 5, 5)
    # The same key and chunk: chunk=None is scan_chunk; adaptive is time_major_chunked at auto_chunk.
    x0 = jnp.float32(0.0)
    a = _sim("time_major_chunked", key, x0, 50, 300)
    b = _sim("time_major_chunked", key, x0, 50, 300, chunk=sde.scan_chunk(50, 300))
    np.testing.assert_array_equal(a, b)
    c = _sim("time_major_adaptive", key, x0, 50, 300)
    d = _sim("time_major_chunked", key, x0, 50, 300, chunk=sde.auto_chunk(50, 300))
    np.testing.assert_array_equal(c, d)
    assert not np.allclose(a[:, -1], c[:, -1])  # different chunks, different draws


def test_user_pair_matches_the_study_usage(key):
    # The study's usage, verbatim in spirit: pregen noise per trajectory, and auto with split keys.
    n_traj, n_steps, x0 = 6, 100, jnp.float64(1.0)
    params = sde.ou_params(dtype=jnp.float64)
    step, loop = sde.make_sde(DT, sde.ou_drift, sde.ou_diffusion)
    all_noise = jax.vmap(lambda k: jax.random.normal(k, (n_steps,), jnp.float64))(jax.random.split(key, n_traj))
    trajectories = jax.vmap(lambda zs: loop(x0, zs, params))(all_noise)
    np.testing.assert_allclose(trajectories, _numpy_em(x0, all_noise, theta=1.0, mu=0.5, sigma=0.3), rtol=1e-12)
    assert float(step(x0, jnp.float64(0.0), params)) == pytest.approx(1.0 - 0.5 * DT)
    step_a, loop_a = sde.make_sde_auto(DT, sde.ou_drift, sde.ou_diffusion)
    paths = jax.vmap(lambda k: loop_a(x0, n_steps, params, k))(jax.random.split(key, n_traj))
    zs = sde.ensemble_noise(key, n_traj=n_traj, n_steps=n_steps, dtype=jnp.float64, variant="auto")
    np.testing.assert_allclose(paths, _numpy_em(x0, zs, theta=1.0, mu=0.5, sigma=0.3), rtol=1e-12)
    x1, k1 = step_a(x0, key, params)
    assert x1.dtype == jnp.float64 and jax.dtypes.issubdtype(k1.dtype, jax.dtypes.prng_key)


def test_parameter_sweep_under_vmap_equals_one_by_one(key):
    thetas = jnp.asarray([0.5, 1.0, 2.0], jnp.float32)

    def run(theta):
        params = {"theta": theta, "mu": jnp.float32(0.5), "sigma": jnp.float32(0.3)}
        return sde.simulate(
            sde.ou_drift,
            sde.ou_diffusion,
            jnp.float32(1.0),
            params,
            key,
            dt=DT,
            n_traj=4,
            n_steps=50,
            variant="time_major_chunked",
        )

    swept = jax.vmap(run)(thetas)
    for i, theta in enumerate(thetas):
        np.testing.assert_allclose(swept[i], run(theta), rtol=1e-6, atol=1e-6)


def test_legacy_uint32_keys_are_accepted():
    raw = jax.random.PRNGKey(3)
    a = _sim("time_major_chunked", raw, jnp.float32(0.0), 3, 10)
    b = _sim("time_major_chunked", jax.random.wrap_key_data(raw), jnp.float32(0.0), 3, 10)
    np.testing.assert_array_equal(a, b)


def test_registry_roles_and_benchmark_grid():
    # Registered = benchmarked is checked for every study in test_benchmarks.py; here, the
    # study's own facts: the reported AFTER draws inside the scan, and the grid the notes cite.
    op = variants.get("sde", "simulate")
    assert (op.baseline, op.optimised) == ("pregen", "time_major_chunked")
    assert op.optimised in sde.IN_SCAN_CHUNKED
    from benchmarks import bench_sde

    params = dict(zip(bench_sde.EnsembleSimulation.param_names, bench_sde.EnsembleSimulation.params))
    assert bench_sde.EnsembleSimulation.param_names == ["n_traj", "n_steps", "variant"]
    assert params["n_traj"] == [100, 1000] and params["n_steps"] == [1000, 10000]


# ---------------------------------------------------------------------------------------------
# Bad input: clear errors naming the argument, at trace time.


def _bad(**overrides):
    args = dict(
        drift=sde.ou_drift,
        diffusion=sde.ou_diffusion,
        x0=jnp.float32(1.0),
        params=sde.ou_params(),
        key=jax.random.key(0),
        dt=0.01,
        n_traj=3,
        n_steps=5,
    )
    args.update(overrides)
    drift, diffusion, x0, params, key = (args.pop(k) for k in ("drift", "diffusion", "x0", "params", "key"))
    return sde.simulate(drift, diffusion, x0, params, key, **args)


@pytest.mark.parametrize(
    "overrides,error,match",
    [
        (dict(dt=0.0), ValueError, "dt must be positive"),
        (dict(dt=-0.1), ValueError, "dt must be positive"),
        (dict(dt=float("nan")), ValueError, "dt must be positive and finite"),
        (dict(dt=jnp.ones(2)), TypeError, "dt must be a positive real scalar"),
        (dict(n_steps=0), ValueError, "n_steps must be positive"),
        (dict(n_steps=-3), ValueError, "n_steps must be positive"),
        (dict(n_steps=2.5), TypeError, "n_steps must be a positive Python int"),
        (dict(n_traj=0), ValueError, "n_traj must be positive"),
        (dict(chunk=0), ValueError, "chunk must be positive"),
        (dict(unroll=0), ValueError, "unroll must be positive"),
        (dict(variant="fast"), ValueError, "variant='fast' is not a variant of sde.simulate"),
        (dict(output="mean"), ValueError, "output='mean' is not supported"),
        (dict(key=3), TypeError, "key must be a PRNG key"),
        (dict(key=jnp.zeros(2, jnp.float32)), TypeError, "key must be a PRNG key"),
        (dict(key=jax.random.split(jax.random.key(0), 2)), ValueError, r"key must be a single PRNG key"),
        (dict(x0=jnp.int32(1)), TypeError, "x0 must be a floating"),
        (dict(x0=jnp.ones((2, 2), jnp.float32)), ValueError, "x0 must be a scalar or a vector"),
        (dict(x0=jnp.ones((0,), jnp.float32)), ValueError, "x0 must hold at least one element"),
        (dict(drift=lambda x, p: jnp.ones(3, x.dtype)), ValueError, r"drift\(x, params\) must return .*shape \(\)"),
        (dict(drift=lambda x, p: x.astype(jnp.float64)), ValueError, r"drift\(x, params\) must return .*dtype float32"),
        (dict(diffusion=lambda x, p: jnp.ones(2, x.dtype)), ValueError, r"diffusion\(x, params\) must return"),
        (dict(diffusion=None), TypeError, "diffusion must be a callable"),
    ],
)
def test_bad_input_is_rejected_with_the_argument_named(overrides, error, match):
    with pytest.raises(error, match=match):
        _bad(**overrides)


def test_bad_input_is_rejected_under_jit():
    with pytest.raises(ValueError, match=r"drift\(x, params\) must return"):
        jax.jit(lambda k: _bad(key=k, drift=lambda x, p: jnp.stack([x, x])))(jax.random.key(0))
    with pytest.raises(TypeError, match="key must be a PRNG key"):
        jax.jit(lambda k: _bad(key=k))(jnp.zeros(3, jnp.int32))


def test_user_pair_rejects_bad_input(key):
    with pytest.raises(ValueError, match="dt must be positive"):
        sde.make_sde(0.0, sde.ou_drift, sde.ou_diffusion)
    with pytest.raises(ValueError, match="dt must be positive"):
        sde.make_sde_auto(-1.0, sde.ou_drift, sde.ou_diffusion)
    _, loop = sde.make_sde(DT, sde.ou_drift, sde.ou_diffusion)
    params = sde.ou_params()
    with pytest.raises(ValueError, match="zs must have shape"):
        loop(jnp.float32(1.0), jnp.ones((4, 2), jnp.float32), params)
    with pytest.raises(TypeError, match="zs has dtype float64 but x0 has float32"):
        loop(jnp.float32(1.0), jnp.ones(4, jnp.float64), params)
    _, loop_a = sde.make_sde_auto(DT, sde.ou_drift, sde.ou_diffusion)
    with pytest.raises(ValueError, match="n_steps must be positive"):
        loop_a(jnp.float32(1.0), 0, params, key)
    with pytest.raises(TypeError, match="key must be a PRNG key"):
        loop_a(jnp.float32(1.0), 5, params, 7)
    with pytest.raises(ValueError, match=r"diffusion\(x, params\) must return"):
        _, loop_b = sde.make_sde_auto(DT, sde.ou_drift, lambda x, p: jnp.stack([x, x]))
        loop_b(jnp.float32(1.0), 5, params, key)


def test_ensemble_noise_rejects_diffrax_variants(key):
    with pytest.raises(ValueError, match="variant='diffrax' draws its noise inside diffrax"):
        sde.ensemble_noise(key, n_traj=2, n_steps=3, variant="diffrax")
