import os
import pathlib
import subprocess
import sys
import warnings

import equinox
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import perflab.tree_transforms as tt
from perflab import variants

ROOT = pathlib.Path(__file__).resolve().parents[1]
VARIANTS = ["loop", "batched", "path_map"]
LAYERS = 2
# Small but shaped like the benchmarked model: hidden and 4*hidden divide by 8.
SMALL = dict(hidden=64, heads=4, vocab_size=50, max_positions=16)

# The default rules, written out independently of the library: path -> expected spec.
COLUMN, ROW = P("tp", None), P(None, "tp")
EXPECTED = {
    f"layers.{i}.{name}.weight": spec
    for i in range(LAYERS)
    for name, spec in [
        ("attention.query", COLUMN),
        ("attention.key", COLUMN),
        ("attention.value", COLUMN),
        ("attention.output.dense", ROW),
        ("intermediate.dense", COLUMN),
        ("output.dense", ROW),
    ]
}


def _mesh(n):
    if len(jax.devices()) < n:
        pytest.skip(f"needs {n} devices, JAX has {len(jax.devices())} (XLA_FLAGS is set in conftest.py)")
    return tt.make_mesh(n)


@pytest.fixture(scope="module")
def model():
    return tt.make_bert(LAYERS, **SMALL)


def _by_path(tree):
    return {tt.path_string(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_host_devices_are_forced():
    if jax.default_backend() == "cpu":
        assert len(jax.devices()) >= 8


def test_model_paths_and_shapes(model):
    paths = _by_path(model)
    assert len(paths) == 5 + 16 * LAYERS  # 3 embeddings + norm (2), per layer 6 linears + 2 norms
    assert paths["layers.1.attention.query.weight"].shape == (64, 64)
    assert paths["layers.1.intermediate.dense.weight"].shape == (256, 64)
    assert paths["layers.1.output.dense.weight"].shape == (64, 256)
    assert paths["embeddings.word_embeddings.weight"].shape == (50, 64)
    assert all(v.dtype == jnp.float32 for v in paths.values())
    assert tt.leaf_paths(model) == list(paths)
    # seeded: same seed, same values; another seed, other values
    again, other = tt.make_bert(LAYERS, **SMALL), tt.make_bert(LAYERS, seed=1, **SMALL)
    w = model.layers[0].attention.query.weight
    assert np.array_equal(w, again.layers[0].attention.query.weight)
    assert not np.array_equal(w, other.layers[0].attention.query.weight)
    assert abs(float(jnp.std(w)) - 0.02) < 0.002
    assert abs(float(jnp.mean(model.layers[0].output.layer_norm.weight)) - 1.0) < 0.01


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_matches_are_the_expected_leaves_sharded_as_specified(model, n):
    mesh = _mesh(n)
    matches = tt.match_rules(model, mesh)
    assert [m.path for m in matches] == [p for p in tt.leaf_paths(model) if p in EXPECTED]
    assert sorted(m.path for m in matches) == sorted(EXPECTED)
    originals = _by_path(model)
    for m in matches:
        assert m.getter(model) is originals[m.path]
        assert m.replacement.sharding == NamedSharding(mesh, EXPECTED[m.path])
        assert np.array_equal(np.asarray(m.replacement), np.asarray(originals[m.path]))


@pytest.mark.parametrize("n", [1, 2, 4, 8])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_shards_matched_leaves_and_leaves_the_rest(model, variant, n):
    mesh = _mesh(n)
    out = tt.apply_matches(model, tt.match_rules(model, mesh), variant=variant)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(model)
    before, after = _by_path(model), _by_path(out)
    assert list(before) == list(after)
    for path, leaf in after.items():
        original = before[path]
        if path not in EXPECTED:
            assert leaf is original, path
            continue
        assert leaf is not original
        spec = EXPECTED[path]
        assert leaf.sharding == NamedSharding(mesh, spec), path
        assert np.array_equal(np.asarray(leaf), np.asarray(original)), path
        # every device holds exactly its block of the original
        split = next(d for d, e in enumerate(spec) if e is not None)
        assert len(leaf.addressable_shards) == n
        for shard in leaf.addressable_shards:
            assert shard.data.shape[split] == original.shape[split] // n
            assert np.array_equal(np.asarray(shard.data), np.asarray(original)[shard.index])


def test_variants_agree_with_each_other(model):
    mesh = _mesh(4)
    matches = tt.match_rules(model, mesh)
    outs = [_by_path(tt.apply_matches(model, matches, variant=v)) for v in VARIANTS]
    for other in outs[1:]:
        assert list(other) == list(outs[0])
        for path, leaf in outs[0].items():
            assert other[path] is leaf or (other[path].sharding == leaf.sharding and np.array_equal(other[path], leaf))


@pytest.fixture
def calls(monkeypatch):
    counts = {"tree_at": 0, "tree_map_with_path": 0}
    tree_at, tree_map_with_path = equinox.tree_at, jax.tree_util.tree_map_with_path

    def counting_tree_at(*args, **kwargs):
        counts["tree_at"] += 1
        return tree_at(*args, **kwargs)

    def counting_map(*args, **kwargs):
        counts["tree_map_with_path"] += 1
        return tree_map_with_path(*args, **kwargs)

    monkeypatch.setattr(equinox, "tree_at", counting_tree_at)
    monkeypatch.setattr(jax.tree_util, "tree_map_with_path", counting_map)
    return counts


@pytest.mark.parametrize(
    "variant,tree_at,tree_map",
    [("loop", 6 * LAYERS, 0), ("batched", 1, 0), ("path_map", 0, 1)],
)
def test_variants_take_different_code_paths(model, calls, variant, tree_at, tree_map):
    matches = tt.match_rules(model, _mesh(2))
    assert len(matches) == 6 * LAYERS
    tt.apply_matches(model, matches, variant=variant)
    assert calls == {"tree_at": tree_at, "tree_map_with_path": tree_map}


def test_loop_applies_shortest_path_first(model, calls, monkeypatch):
    seen = []
    counting = equinox.tree_at

    def recording(where, tree, replace):
        seen.append(where.keys)
        return counting(where, tree, replace)

    monkeypatch.setattr(equinox, "tree_at", recording)
    matches = tt.match_rules(model, _mesh(2))
    tt.apply_matches(model, matches, variant="loop")
    lengths = [len(tt.path_string(k)) for k in seen]
    assert lengths == sorted(lengths) and len(seen) == len(matches)


def test_sharded_model_computes_what_the_unsharded_one_does(model):
    tokens = jnp.arange(12) % SMALL["vocab_size"]
    expected = np.asarray(jax.jit(lambda m, t: m(t))(model, tokens))
    for variant in VARIANTS:
        sharded = tt.shard_model(model, _mesh(4), variant=variant)
        got = np.asarray(jax.jit(lambda m, t: m(t))(sharded, tokens))
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


def test_custom_rules_shard_biases_too(model):
    mesh = _mesh(2)
    rules = tt.BERT_RULES + ((r"layers\.\d+\.attention\.query\.bias", P("tp")),)
    out = tt.shard_model(model, mesh, rules, variant="batched")
    assert out.layers[1].attention.query.bias.sharding == NamedSharding(mesh, P("tp"))
    assert out.layers[1].attention.key.bias is model.layers[1].attention.key.bias


def test_overlapping_and_conflicting_rules_are_errors(model):
    mesh = _mesh(2)
    conflicting = tt.BERT_RULES + ((r"layers\.1\.attention\.query\.weight", P(None, "tp")),)
    with pytest.raises(ValueError, match=r"conflicting rules: leaf 'layers\.1\.attention\.query\.weight'"):
        tt.match_rules(model, mesh, conflicting)
    overlapping = tt.BERT_RULES + ((r"layers\.1\.attention\.(query|key)\.weight", P("tp", None)),)
    with pytest.raises(ValueError, match=r"overlapping rules: leaf 'layers\.1\.attention\.query\.weight'"):
        tt.match_rules(model, mesh, overlapping)


def test_a_rule_matching_nothing_warns_or_raises(model):
    mesh = _mesh(2)
    rules = tt.BERT_RULES + ((r"layers\.\d+\.attention\.self\.query\.weight", COLUMN),)
    with pytest.warns(UserWarning, match=r"attention.+self.+query.+matches no leaf"):
        matches = tt.match_rules(model, mesh, rules)
    assert len(matches) == 6 * LAYERS
    with pytest.raises(ValueError, match="matches no leaf"):
        tt.match_rules(model, mesh, rules, unmatched="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(tt.match_rules(model, mesh, rules, unmatched="ignore")) == 6 * LAYERS
        tt.match_rules(model, mesh)  # the default rules all match: no warning


def test_a_mesh_axis_not_dividing_a_dimension_names_the_leaf():
    odd = tt.make_bert(1, hidden=36, heads=3, intermediate=100, vocab_size=10, max_positions=8)
    with pytest.raises(ValueError, match=r"leaf 'layers\.0\.attention\.query\.weight' has shape \(36, 36\).*size 8"):
        tt.match_rules(odd, _mesh(8))
    # 36 divides by 4 but the feed-forward width 100 does not divide by 8
    wide = tt.make_bert(1, hidden=32, heads=2, intermediate=100, vocab_size=10, max_positions=8)
    with pytest.raises(ValueError, match=r"leaf 'layers\.0\.intermediate\.dense\.weight'.*dimension 0"):
        tt.match_rules(wide, _mesh(8))
    assert len(tt.match_rules(odd, _mesh(2))) == 6


def test_bad_rules_and_meshes_are_rejected(model):
    mesh = _mesh(2)
    with pytest.raises(ValueError, match=r"mesh axis 'dp' is not in the mesh .* leaf 'layers\.0"):
        tt.match_rules(model, mesh, [(r"layers\.\d+\.attention\.query\.weight", P("dp"))])
    with pytest.raises(ValueError, match=r"PartitionSpec .* 3 entries but leaf 'layers\.0\.attention\.key\.weight'"):
        tt.match_rules(model, mesh, [(r"layers\.\d+\.attention\.key\.weight", P("tp", None, None))])
    with pytest.raises(ValueError, match=r"rules\[0\].*expected a PartitionSpec"):
        tt.match_rules(model, mesh, [("x", ("tp",))])
    with pytest.raises(ValueError, match=r"rules\[0\].*not a valid regex"):
        tt.match_rules(model, mesh, [("(", P())])
    with pytest.raises(ValueError, match=r"rules\[0\] must be a \(regex, PartitionSpec\) pair"):
        tt.match_rules(model, mesh, ["layers"])
    with pytest.raises(ValueError, match="mesh must be a jax.sharding.Mesh"):
        tt.match_rules(model, "tp")
    with pytest.raises(ValueError, match="unmatched must be"):
        tt.match_rules(model, mesh, unmatched="skip")
    with pytest.raises(ValueError, match=r"devices=\d+ but only .*XLA_FLAGS"):
        tt.make_mesh(len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="devices must be a positive int"):
        tt.make_mesh(0)


def test_bad_variant_and_stale_matches_are_rejected(model):
    matches = tt.match_rules(model, _mesh(2))
    with pytest.raises(ValueError, match=r"variant='fast' is not a variant of tree_transforms\.apply"):
        tt.apply_matches(model, matches, variant="fast")
    with pytest.raises(ValueError, match="variant="):
        tt.shard_model(model, _mesh(2), variant="fast")
    shallow = tt.make_bert(1, **SMALL)
    with pytest.raises(ValueError, match=r"does not have: \['layers\.1\.attention\.key\.weight'"):
        tt.apply_matches(shallow, matches, variant="path_map")
    with pytest.raises(ValueError, match="two matches target the same leaf"):
        tt.apply_matches(model, matches + matches[:1], variant="path_map")
    assert tt.apply_matches(model, [], variant="loop") is model


@pytest.mark.parametrize("variant", VARIANTS)
def test_stale_matches_name_the_missing_leaf_paths(model, variant):
    # Matches computed from a 2-layer model applied to a 1-layer one: layer 1 no longer exists.
    matches = tt.match_rules(model, _mesh(2))
    shallow = tt.make_bert(1, **SMALL)
    missing = sorted(m.path for m in matches if m.path.startswith("layers.1."))
    assert len(missing) == 6
    with pytest.raises(ValueError, match="matches name leaves the model does not have") as info:
        tt.apply_matches(shallow, matches, variant=variant)
    assert str(missing) in str(info.value)
    assert "layers.0." not in str(info.value)  # the paths that still exist are not blamed


@pytest.mark.parametrize("variant", ["loop", "batched"])
def test_stale_match_through_a_missing_attribute_names_the_path(model, variant):
    # A getter whose attribute is gone (another model class): a ValueError, not AttributeError.
    from jax.tree_util import GetAttrKey

    good = tt.match_rules(model, _mesh(2))
    ghost = tt.Match(
        "layers.0.attention.rotary.weight",
        tt.PathGetter(
            (
                GetAttrKey("layers"),
                jax.tree_util.SequenceKey(0),
                GetAttrKey("attention"),
                GetAttrKey("rotary"),
                GetAttrKey("weight"),
            )
        ),
        good[0].replacement,
    )
    with pytest.raises(ValueError, match=r"does not have: \['layers\.0\.attention\.rotary\.weight'\]"):
        tt.apply_matches(model, good + [ghost], variant=variant)


def test_make_bert_rejects_bad_sizes():
    with pytest.raises(ValueError, match="layers must be a positive int"):
        tt.make_bert(0)
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        tt.make_bert(1, hidden=-4)
    with pytest.raises(ValueError, match="heads must be a positive int dividing hidden=64"):
        tt.make_bert(1, hidden=64, heads=5)
    with pytest.raises(ValueError, match="dtype must be a floating dtype"):
        tt.make_bert(1, hidden=8, dtype=np.int32)


def test_registry():
    op = variants.get("tree_transforms", "apply_sharding")
    assert op.names == tuple(VARIANTS)
    # BEFORE: the seed's per-match loop; AFTER: the fastest variant, which is also the default.
    assert (op.baseline, op.optimised, op.default) == ("loop", "path_map", "path_map")


def test_cpu_time_benchmark_counts_one_thread_only():
    import time

    from benchmarks import bench_tree_transforms as b

    # The thread-CPU figure is an operation of the interleaved class, timed by its own clock.
    assert b.ApplyShardingRules.operations == ("apply", "apply_thread_cpu")
    call = b._thread_cpu(lambda: 1)
    assert call.timer is time.thread_time and call() == 1
    # The judged figure is wall clock (perf_counter, the measurement's default clock).
    assert b.ApplyShardingRules.track_apply.unit == "seconds"
    assert not hasattr(b, "ApplyShardingRulesThreadCPU")


def test_benchmark_module_forces_host_devices_before_jax_starts():
    # The benchmark module must get its 8 host devices in a fresh process, as asv runs it.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = (
        "import benchmarks.bench_tree_transforms as b, jax; m = b._mesh(8); print(len(jax.devices()), m.devices.size)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["8", "8"]
