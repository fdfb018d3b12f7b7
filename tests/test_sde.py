"""Study 2: every SDE ensemble variant integrates the same Euler-Maruyama chain, each with its own
noise stream; same noise gives the same path; the OU moments match the closed form."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perflab import sde, variants
from perflab.sde._diffrax import diffrax_simulate

from .jaxpr_tools import primitive_counts

NOISE = list(sde.NOISE_VARIANTS)
ALL = list(sde.SIMULATE.names)
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
        return sde.simulate(sde.ou_drift, sde.ou_diffusion, x0, params, key, dt=DT, n_traj=n_traj,
                            n_steps=n_steps, variant=variant, **dict(kw))

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


@pytest.mark.parametrize("state,dtype", [("scalar", jnp.float32), ("vector", jnp.float64)], ids=["scalar-f32", "vector-f64"])
@pytest.mark.parametrize("variant", NOISE)
def test_same_noise_gives_the_pregen_path(variant, state, dtype, key):
    # 230 steps with chunk 100: two full chunks and a remainder chunk.
    x0 = _x0(STATES[state], dtype)
    n_traj, n_steps = 7, 230
    got = _sim(variant, key, x0, n_traj, n_steps, chunk=100)
    zs = sde.ensemble_noise(key, n_traj=n_traj, n_steps=n_steps, shape=x0.shape, dtype=dtype,
                            variant=variant, chunk=100)
    assert zs.shape == (n_traj, n_steps) + x0.shape and zs.dtype == dtype
    _, loop = sde.make_sde(DT, sde.ou_drift, sde.ou_diffusion)
    params = sde.ou_params(theta=1.5, mu=0.5, sigma=0.4, dtype=dtype)
    want = jax.vmap(lambda z: loop(x0, z, params))(zs)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, **_tol(dtype))
    np.testing.assert_allclose(got, _numpy_em(x0, zs), rtol=1e-5 if dtype == jnp.float32 else 1e-12, atol=1e-5)


def test_time_major_fed_pregen_noise_gives_the_pregen_path(key):
    # The time-major loop itself, fed the pregen variant's noise through its draw hook.
    from perflab.sde import _ensemble

    x0, n_traj, n_steps = jnp.float32(1.0), 5, 300
    zs = sde.ensemble_noise(key, n_traj=n_traj, n_steps=n_steps, variant="pregen")
    params = sde.ou_params(dtype=jnp.float32)
    advance = lambda x, z: sde._user.em_update(sde.ou_drift, sde.ou_diffusion, DT, x, z, params)  # noqa: E731
    time_major_zs = jnp.moveaxis(zs, 0, 1)
    draw = lambda c, size: jax.lax.dynamic_slice_in_dim(time_major_zs, c * 100, size)  # noqa: E731
    path = _ensemble._chunk_loop(jnp.full((n_traj,), x0), n_steps, 100, draw, advance, True, 1)
    pregen = _sim("pregen", key, x0, n_traj, n_steps)
    params = sde.ou_params(theta=1.5, mu=0.5, sigma=0.4, dtype=jnp.float32)
    np.testing.assert_array_equal(jnp.moveaxis(path, 0, 1).shape, pregen.shape)
    np.testing.assert_allclose(jnp.moveaxis(path, 0, 1), _numpy_em(x0, zs, theta=1.0, mu=0.5, sigma=0.3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("state,dtype", [("scalar", jnp.float64), ("vector", jnp.float32)], ids=["scalar-f64", "vector-f32"])
def test_diffrax_fed_the_same_noise_gives_the_pregen_path(state, dtype, key):
    x0 = _x0(STATES[state], dtype)
    zs = sde.ensemble_noise(key, n_traj=4, n_steps=120, shape=x0.shape, dtype=dtype, variant="pregen")
    params = sde.ou_params(theta=1.5, mu=0.5, sigma=0.4, dtype=dtype)
    got = diffrax_simulate(sde.ou_drift, sde.ou_diffusion, x0, params, key, dt=DT, n_traj=4, n_steps=120,
                           brownian="diffrax", keep_path=True, noise=zs)
    want = _sim("pregen", key, x0, 4, 120)
    assert got.dtype == dtype
    # diffrax forms the increment from its own time grid: equal up to a few roundings.
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == jnp.float32 else 1e-12, atol=1e-5 if dtype == jnp.float32 else 1e-12)


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
    path = _sim(variant, key, x0, 5, 40, chunk=15)
    final = _sim(variant, key, x0, 5, 40, chunk=15, output="final")
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


def _scan_bodies(fn, *args):
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    top = collections_counter(jaxpr, nested=False)
    return top, collections_counter(jaxpr, nested=True)


def collections_counter(jaxpr, nested):
    """Primitive counts at the top level (nested=False) or inside loop bodies only (nested=True)."""
    import collections

    counts = collections.Counter()

    def walk(j, inside):
        for eqn in j.eqns:
            if inside == nested:
                counts[eqn.primitive.name] += 1
            for value in eqn.params.values():
                for item in value if isinstance(value, (list, tuple)) else (value,):
                    sub = getattr(item, "jaxpr", item)
                    if hasattr(sub, "eqns"):
                        walk(sub, inside or eqn.primitive.name in ("scan", "while"))

    walk(jaxpr, False)
    return counts


def _loop_depths(jaxpr, depth=0):
    depths = []
    for eqn in jaxpr.eqns:
        d = depth + (eqn.primitive.name in ("scan", "while"))
        if d > depth:
            depths.append(d)
        for value in eqn.params.values():
            for item in value if isinstance(value, (list, tuple)) else (value,):
                sub = getattr(item, "jaxpr", item)
                if hasattr(sub, "eqns"):
                    depths.extend(_loop_depths(sub, d))
    return depths


def _wrap_impls(jaxpr):
    impls = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "random_wrap":
            impls.append(str(eqn.params["impl"]))
        for value in eqn.params.values():
            for item in value if isinstance(value, (list, tuple)) else (value,):
                sub = getattr(item, "jaxpr", item)
                if hasattr(sub, "eqns"):
                    impls.extend(_wrap_impls(sub))
    return impls


def test_variants_take_different_code_paths(key):
    x0 = jnp.float32(1.0)
    top, inner, depth, impls = {}, {}, {}, {}
    for v in ALL:
        fn = lambda k, v=v: _sim(v, k, x0, 8, 200, chunk=50)  # noqa: E731
        top[v], inner[v] = _scan_bodies(fn, key)
        jaxpr = jax.make_jaxpr(fn)(key).jaxpr
        depth[v], impls[v] = max(_loop_depths(jaxpr), default=0), _wrap_impls(jaxpr)
    # pregen draws everything before the loop; every other variant draws inside a loop.
    assert top["pregen"]["random_bits"] == 1 and inner["pregen"]["random_bits"] == 0
    for v in ALL[1:]:
        assert inner[v]["random_bits"] >= 1, v
    # auto splits a key every step; the time-major and chunked variants fold a counter in.
    assert inner["auto"]["random_split"] == 1 and inner["auto"]["random_fold_in"] == 0
    for v in ["chunked", "time_major", "time_major_chunked", "time_major_rbg"]:
        assert inner[v]["random_fold_in"] == 1 and inner[v]["random_split"] == 0, v
    # Chunked variants nest the step loop inside a chunk loop; the others loop once.
    assert {v: depth[v] for v in ALL} == {
        "pregen": 1, "auto": 1, "chunked": 2, "time_major": 1, "time_major_chunked": 2,
        "time_major_rbg": 2, "diffrax": 1, "diffrax_vbt": 2,  # the tree descends in a loop per step
    }
    # Trajectory-major variants split one key per trajectory; time-major ones never do.
    for v in ["pregen", "auto", "chunked", "diffrax", "diffrax_vbt"]:
        assert top[v]["random_split"] >= 1, v
    for v in ["time_major", "time_major_chunked", "time_major_rbg"]:
        assert top[v]["random_split"] == 0, v
    # Only time_major_rbg switches the generator; diffrax loops with while, not scan.
    assert any("rbg" in i for i in impls["time_major_rbg"])
    assert not any("rbg" in i for v in ALL if v != "time_major_rbg" for i in impls[v])
    for v in ["diffrax", "diffrax_vbt"]:
        assert top[v]["while"] == 1 and top[v]["scan"] == 0, v


def test_auto_chunk_prefers_divisors_and_bounds_the_noise():
    assert sde.auto_chunk(1000, 10000) == 125 and 10000 % 125 == 0
    assert sde.auto_chunk(100, 100000) == 1250
    assert sde.auto_chunk(1000, 50000) == sde.auto_chunk(1000, 10000)  # independent of n_steps
    assert sde.auto_chunk(10, 997) == 997  # fits in one chunk
    assert sde.auto_chunk(1, 10**7) * 1 <= sde.CHUNK_NORMALS
    assert sde.auto_chunk(1000, 10007) == sde.CHUNK_NORMALS // 1000  # prime: no useful divisor
    assert sde.auto_chunk(10**6, 10) == 1
    # Small problems draw all their noise at once: bounded by WHOLE_DRAW_NORMALS.
    assert sde.auto_chunk(1000, 1000) == 1000 and sde.auto_chunk(100, 10000) == 10000
    assert sde.auto_chunk(1000, 1000, size=2) < 1000
    assert 1000 * 1000 <= sde.WHOLE_DRAW_NORMALS < 1000 * 2000


def test_chunk_none_matches_explicit_auto_chunk(key):
    x0 = jnp.float32(0.0)
    a = _sim("time_major_chunked", key, x0, 50, 300)
    b = _sim("time_major_chunked", key, x0, 50, 300, chunk=sde.auto_chunk(50, 300))
    np.testing.assert_array_equal(a, b)


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
        return sde.simulate(sde.ou_drift, sde.ou_diffusion, jnp.float32(1.0), params, key, dt=DT,
                            n_traj=4, n_steps=50, variant="time_major_chunked")

    swept = jax.vmap(run)(thetas)
    for i, theta in enumerate(thetas):
        np.testing.assert_allclose(swept[i], run(theta), rtol=1e-6, atol=1e-6)


def test_legacy_uint32_keys_are_accepted():
    raw = jax.random.PRNGKey(3)
    a = _sim("time_major_chunked", raw, jnp.float32(0.0), 3, 10)
    b = _sim("time_major_chunked", jax.random.wrap_key_data(raw), jnp.float32(0.0), 3, 10)
    np.testing.assert_array_equal(a, b)


def test_registered_and_benchmarked():
    op = variants.get("sde", "simulate")
    assert op.baseline == "pregen" and op.optimised in sde.NOISE_VARIANTS and op.optimised != "pregen"
    from benchmarks import bench_sde

    params = dict(zip(bench_sde.EnsembleSimulation.param_names, bench_sde.EnsembleSimulation.params))
    assert bench_sde.EnsembleSimulation.param_names == ["n_traj", "n_steps", "variant"]
    assert params["n_traj"] == [100, 1000] and params["n_steps"] == [1000, 10000]
    assert set(op.names) == set(params["variant"])


# ---------------------------------------------------------------------------------------------
# Bad input: clear errors naming the argument, at trace time.

def _bad(**overrides):
    args = dict(drift=sde.ou_drift, diffusion=sde.ou_diffusion, x0=jnp.float32(1.0),
                params=sde.ou_params(), key=jax.random.key(0), dt=0.01, n_traj=3, n_steps=5)
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
