"""The asv suite: every benchmark collects, runs one call, and the asv configuration builds."""

import functools
import importlib
import inspect
import itertools
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
MODULES = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
PREFIXES = ("time_", "peakmem_", "track_", "mem_", "timeraw_")


def _classes():
    for name in MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        for cls_name, cls in vars(module).items():
            # asv, too, ignores private names (shared bases such as _SolveJVP).
            if (
                not cls_name.startswith("_")
                and inspect.isclass(cls)
                and cls.__module__ == module.__name__
                and any(m.startswith(PREFIXES) for m in dir(cls))
            ):
                yield f"{name}.{cls_name}", cls


CLASSES = dict(_classes())


def _interleaved(cls):
    from benchmarks.common import InterleavedBenchmark

    return issubclass(cls, InterleavedBenchmark)


def _first_runnable(cls, method):
    """Set up the first parameter combination that is not skipped; return (instance, params)."""
    params = getattr(cls, "params", [])
    combos = itertools.product(*params) if params else [()]
    for combo in combos:
        obj = cls()
        try:
            if hasattr(obj, "setup"):
                obj.setup(*combo)
        except NotImplementedError:
            continue
        return obj, combo
    pytest.fail(f"every parameter combination of {cls.__name__} skips")


def test_every_module_has_benchmarks():
    assert MODULES, "no benchmarks/bench_*.py found"
    for name in MODULES:
        assert any(key.startswith(name + ".") for key in CLASSES), f"{name} defines no benchmark class"


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_params_are_declared(name):
    cls = CLASSES[name]
    params = getattr(cls, "params", None)
    if params:
        assert isinstance(params[0], list), "params must be a list of lists"
        assert len(cls.param_names) == len(params)
        for values in params:
            assert all(isinstance(v, (str, int)) for v in values), values


@pytest.mark.parametrize(
    "name,method",
    [
        (n, m)
        for n, cls in sorted(CLASSES.items())
        if not _interleaved(cls)
        for m in sorted(dir(cls))
        if m.startswith(PREFIXES)
    ],
)
def test_benchmark_runs_once(name, method):
    cls = CLASSES[name]
    obj, combo = _first_runnable(cls, method)
    result = getattr(obj, method)(*combo)
    if method.startswith("track_"):
        fn = getattr(cls, method)
        if isinstance(result, dict):
            # One sample per process: asv appends a round's samples only when it runs rounds.
            assert result["number"] == 1 and len(result["samples"]) == 1, result
            assert getattr(fn, "rounds", 1) >= 2, f"{name}.{method} returns a sample but has one round"
            result = result["samples"][0]
        assert isinstance(result, (int, float)) and result == result, result
        assert fn.unit


@pytest.mark.parametrize("name", ["bench_delta_rule.DeltaRuleCores", "bench_delta_rule.MatmulCores"])
def test_cores_figures_are_sampled_once_per_round(name):
    # One process's figure moved by ~5% across a docs-only commit pair: asv compares it by its
    # spread over rounds, which it has only if every round hands it a sample.
    assert CLASSES[name].track_cores.rounds >= 5


# Variants whose cells skip on this machine for a reason that is the machine's, not the grid's.
MACHINE_SKIPS = {
    "cuda_graph": "needs CUDA",
    "compiled": "torch.compile on CPU runs only with PERFLAB_MEANFLOW_COMPILE=1",
}
INTERLEAVED = sorted(n for n, cls in CLASSES.items() if _interleaved(cls))
# The largest error each study's variants may show at the smallest cell against its reference:
# float32 against float64 loops (delta rule, matmul, linear solves in float64), a Monte Carlo
# statistic of 100 trajectories against the OU moments (sde: its noise floor is ~0.14), an exact
# tree surgery, and bfloat16 autocast against float64 (meanflow).
ERROR_TOLERANCE = {
    "bench_calibration": 0.0,
    "bench_linear_solve": 1e-6,
    "bench_delta_rule": 1e-4,
    "bench_sde": 0.5,
    "bench_tree_transforms": 0.0,
    "bench_meanflow": 0.1,
}
# (class, variant) whose error is n/a by design although the class has a reference.
NO_ERROR = set()


@pytest.mark.parametrize("name", INTERLEAVED)
def test_every_variant_builds_and_runs_at_the_smallest_cell(name):
    # Each variant of the class at its first (smallest) cell where it exists: built, compiled
    # and called once, the path `setup_cache`'s processes take; nothing may skip but for a
    # reason of this machine's.
    from benchmarks import _companions, _interleave

    cls = CLASSES[name]
    obj = cls()
    variants = [v for v in cls.params[-1] if v not in _interleave.INJECTED]
    assert _interleave.CONTROL in variants and cls.baseline in variants, (cls.baseline, variants)
    for variant in variants:
        built = cls.baseline if variant == _interleave.CONTROL else variant
        reasons = []
        for head in itertools.product(*cls.params[:-1]):
            try:
                calls = [obj.build(op, *head, built) for op in cls.operations]
            except NotImplementedError as err:
                reasons.append(str(err))
                continue
            for operation, call in zip(cls.operations, calls):
                call()
                # The companions run the callable under torch's dispatch modes too, and compare
                # its output with the class's reference, where it has one.
                params = (*head, variant)
                reference = functools.partial(obj.reference, operation, *head)
                got = _companions.describe(call, reference)
                error = got.get("error")
                if reference() is not None and (name, built) not in NO_ERROR:
                    tolerance = ERROR_TOLERANCE[name.split(".")[0]]
                    assert error is not None and 0 <= error <= tolerance, (name, operation, variant, error)
                    print(f"error {name} {operation} {params}: {error:.3g}")
                if getattr(call, "torch_compiled", False) or built == "cuda_graph":
                    # Compiled or captured on its first call: the compile time is recorded.
                    if operation != "fm_step":
                        assert got.get("compile", -1) >= 0, (name, variant)
                if operation == "fm_step":
                    # The FM step is eager (torch) or jitted (JAX) under every variant, the
                    # compiled one included: its program always has a fingerprint.
                    assert "fingerprint" in got, (name, variant)
            break
        else:
            # A variant this machine cannot run (MACHINE_SKIPS) is left out; the others go on.
            if built not in MACHINE_SKIPS:
                pytest.fail(f"{name}: variant {variant!r} builds in no cell: {reasons[:2]}")


@pytest.mark.parametrize("name", INTERLEAVED)
def test_interleaved_tracks_hand_asv_one_sample_per_process(name):
    from benchmarks import _interleave

    cls = CLASSES[name]
    head = next(itertools.product(*cls.params[:-1]))
    params = (*head, cls.baseline)
    cache = {
        "values": {_interleave.key(op, params): [1.0, 2.0, 4.0] for op in cls.operations},
        "skipped": {},
        "processes": 3,
    }
    obj = cls()
    obj.setup(cache, *params)
    tracks = [m for m in dir(cls) if m.startswith("track_")]
    assert {f"track_{op}" for op in cls.operations} <= set(tracks)
    for method in tracks:
        fn = getattr(cls, method)
        assert fn.baseline == cls.baseline and fn.paired_processes and fn.unit
        result = getattr(obj, method)(cache, *params)
        if method.removeprefix("track_") in cls.operations:
            assert result == {"samples": [1.0, 2.0, 4.0], "number": 1}
    with pytest.raises(NotImplementedError, match="not measured|skip"):
        obj.setup({"values": {}, "skipped": {}}, *params)


def test_measured_cell_interleaves_and_injects(monkeypatch):
    # On a fake clock (each read advances 1 ns; the callables advance it by their cost), so the
    # arithmetic of the measurement is checked without this machine's noise.
    from benchmarks import _interleave

    class Clock:
        t = 0.0

        def __call__(self):
            self.t += 1e-9
            return self.t

    clock, order = Clock(), []
    monkeypatch.setattr(_interleave.time, "perf_counter", clock)

    def fast():
        order.append("fast")
        clock.t += 1e-6

    def slow():
        order.append("slow")
        clock.t += 1e-5

    values = _interleave.measure(
        {"fast": fast, "slow": slow}, rounds=8, target=1e-3, twins={"slow10": ("slow", 0.10)}, seed=1
    )
    assert values["fast"] == pytest.approx(1e-6, rel=0.01)
    assert values["slow"] == pytest.approx(1e-5, rel=0.01)
    assert values["slow10"] / values["slow"] == pytest.approx(1.10, rel=0.005)
    # Interleaved: in the rounds, each callable's batches come in a new order, not always first.
    firsts = {order[i] for i in range(len(order)) if i == 0 or order[i] != order[i - 1]}
    assert firsts == {"fast", "slow"}


# (study, operation) -> the benchmark class whose `variant` parameter must cover its variants.
BENCHED = {
    ("linear_solve", "solve_jvp"): "bench_linear_solve.TridiagonalSolveJVP",
    ("linear_solve", "heat_jvp"): "bench_linear_solve.HeatEquation",
    ("sde", "simulate"): "bench_sde.EnsembleSimulation",
    ("tree_transforms", "apply_sharding"): "bench_tree_transforms.ApplyShardingRules",
    ("delta_rule", "delta_rule"): "bench_delta_rule.DeltaRule",
    ("meanflow", "meanflow_loss"): "bench_meanflow.MeanFlowStep",
}


def test_registered_variants_are_benchmarked():
    from perflab import variants

    for study in sorted({study for study, _ in BENCHED}):
        importlib.import_module(f"perflab.{study}")  # registers its operations
    for op in variants.operations():
        assert (op.study, op.name) in BENCHED, f"{op.study}.{op.name} has no benchmark listed"
        cls = CLASSES[BENCHED[(op.study, op.name)]]
        param_values = dict(zip(cls.param_names, cls.params))
        assert set(op.names) <= set(param_values["variant"]), (op.name, op.names)
        # Reports take BEFORE/AFTER from the registry: both must be benchmarked, and an
        # interleaved class's control must copy the registry's baseline.
        assert {op.baseline, op.optimised} <= set(param_values["variant"]), op
        if _interleaved(cls):
            assert cls.baseline == op.baseline, (cls.__name__, cls.baseline, op.baseline)


def test_linear_solve_grids_hold_only_valid_cells():
    dense, tri = CLASSES["bench_linear_solve.LinearSolveJVP"], CLASSES["bench_linear_solve.TridiagonalSolveJVP"]
    assert dense.param_names == ["solver", "size", "variant"] and tri.param_names == ["size", "variant"]
    assert dense.params[0] == ["lu", "cholesky"] and "cython" not in dense.params[2]
    assert {"separate_solves", "vmapped_solves", "lineax", "fused", "ffi", "cython"} <= set(tri.params[1])
    assert dense.track_jvp_over_primal.unit == "ratio"


def test_asv_config_is_valid():
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    assert conf["environment_type"] == "virtualenv" and conf["launch_method"] in ("spawn", "forkserver")
    assert any("--no-deps" in c for c in conf["build_command"])
    from asv.config import Config

    Config.load(str(ROOT / "asv.conf.json"))


def test_asv_check_lists_no_errors():
    out = subprocess.run(
        [sys.executable, "-m", "asv", "check", "--python=same"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Traceback" not in text and "error" not in text.lower(), text


def test_asv_build_command_builds_a_wheel_with_the_extension(tmp_path):
    # The build command asv.conf.json uses, run on this tree: the wheel must carry the
    # compiled Cython extension, and the sdist route (MANIFEST.in) the .pyx.
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = tmp_path.glob("perflab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("perflab/linear_solve/_thomas") and n.endswith(".so") for n in names), names
    assert any(n.startswith("perflab/delta_rule/_delta_rule") and n.endswith(".so") for n in names), names
    # The offline dashboard's JavaScript ships with the package.
    assert "perflab/_www/jquery-3.3.1.min.js" in names, names
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert "*.pyx" in manifest


def test_importing_the_suite_starts_no_numerical_runtime():
    # asv's forkserver imports the whole suite once and forks every benchmark process from it:
    # safe only while that import starts no XLA backend, torch thread pool or CUDA context, and
    # no thread at all (a fork keeps only the forking thread).
    code = (
        "import importlib, os, pkgutil, sys, threading\n"
        "import benchmarks\n"
        "for m in pkgutil.iter_modules(benchmarks.__path__):\n"
        "    importlib.import_module('benchmarks.' + m.name)\n"
        "print(sorted(k for k in ('jax', 'jaxlib', 'torch') if k in sys.modules),"
        " threading.active_count(), len(os.listdir('/proc/self/task')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "1", "1"], out.stdout


def test_thread_pools_in_effect_are_pinned():
    # The pools numpy's BLAS actually runs with, after the suite's import (threadpoolctl reads
    # them from the loaded libraries, not from the environment).
    code = (
        "import benchmarks, numpy, threadpoolctl\n"
        "print(sorted({p['num_threads'] for p in threadpoolctl.threadpool_info()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1]", out.stdout


def test_companions_of_a_compiled_cell():
    from benchmarks import _companions
    from benchmarks.bench_linear_solve import LinearSolveJVPDefault

    obj = LinearSolveJVPDefault()
    call = obj.build("jvp", "lu", 100, "default")
    got = _companions.describe(call, lambda: obj.reference("jvp", "lu", 100))
    # XLA counts its own ops only: the LAPACK factorisation is a custom call it does not cost.
    assert got["flops"] > 0 and got["fingerprint"] > 0 and got["error"] < 1e-12
    # The program's memory: at least its 100x100 float64 operator.
    assert got["memory"] >= 100 * 100 * 8
    # The same program compiled again has the same fingerprint and memory; another program another.
    again = _companions.describe(obj.build("jvp", "lu", 100, "default"), lambda: None)
    assert (again["fingerprint"], again["flops"], again["memory"]) == (got["fingerprint"], got["flops"], got["memory"])
    other = _companions.describe(obj.build("jvp", "cholesky", 100, "default"), lambda: None)
    assert other["fingerprint"] != got["fingerprint"]


def test_fingerprint_values_of_different_programs_are_far_apart():
    # asv marks a change by ratio: different programs must land beyond any usual factor.
    import hashlib
    import itertools

    from benchmarks import _companions

    values = [_companions.fingerprint_value(hashlib.sha256(str(i).encode()).hexdigest()) for i in range(400)]
    assert len(set(values)) == len(values)
    pairs = list(itertools.combinations(values, 2))
    close = sum(max(a, b) / min(a, b) < 1.1 for a, b in pairs)
    # About 1 pair in 256 shares the power of four and a quarter of those land within 10%
    # (raw 48-bit hashes: about 1 pair in 10).
    assert close < 0.003 * len(pairs), close
    assert all(1e-160 < v < 1e160 for v in values)
    digest = hashlib.sha256(b"x").hexdigest()
    assert _companions.fingerprint_value(digest) == _companions.fingerprint_value(digest)


def test_relative_error_sees_a_wrong_answer():
    import numpy as np

    from benchmarks._companions import relative_error

    assert relative_error((np.ones(3), np.zeros(2)), (np.ones(3), np.zeros(2))) == 0
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 2.2)
    with pytest.raises(ValueError, match="arrays"):
        relative_error((np.ones(1),), (np.ones(1), np.ones(1)))


def test_error_of_reads_a_function_of_the_output():
    import numpy as np

    from benchmarks import _companions

    assert _companions.error_of(np.ones(2), None) is None
    assert _companions.error_of(np.ones(2), _companions.ErrorOf(lambda out: float(out.sum()))) == 2.0
    assert _companions.error_of(np.ones(2), np.ones(2)) == 0
    # An ErrorOf that does not apply to an output gives n/a: no error key is recorded.
    got = _companions.describe(lambda: np.ones(2), lambda: _companions.ErrorOf(lambda out: None))
    assert "error" not in got

    def skipped():
        raise NotImplementedError("this commit has no reference")

    assert "error" not in _companions.describe(lambda: np.ones(2), skipped)


def test_first_call_compile_records_the_first_call_beyond_a_steady_one():
    import time

    from benchmarks import _companions
    from benchmarks.common import first_call_compile

    calls = []

    def call():
        time.sleep(0.05 if not calls else 0.0)
        calls.append(1)
        return 1.0

    call.torch_compiled = True
    assert first_call_compile(call) is call and len(calls) == 2
    assert 0.04 < call.compile_seconds < 1
    got = _companions.describe(call, lambda: None)
    assert got["compile"] == call.compile_seconds


def test_delta_rule_reference_sees_a_wrong_answer():
    import numpy as np

    from benchmarks import _companions
    from benchmarks.bench_delta_rule import DeltaRule, MatmulPeak, _inputs

    obj = DeltaRule()
    expected = obj.reference("forward", "small")
    assert expected.shape == _inputs("small")[2].shape and obj.reference("matmul", "small") is None
    out = obj.build("forward", "small", "cython")()
    assert _companions.error_of(out, expected) < 1e-4
    wrong = out.copy()
    wrong[0, 3, 100] += 0.1 * abs(expected).max()
    assert _companions.error_of(wrong, expected) > 0.05
    # Linear attention, the recurrence without the delta term (S <- S + beta k^T v): a plausible
    # wrong kernel.
    q, k, v, beta = (x.astype(np.float64) for x in _inputs("small"))
    scores = np.tril((q * 64**-0.5) @ (k * beta[..., None]).swapaxes(-1, -2))
    assert _companions.error_of(scores @ v, expected) > 0.1
    peak = MatmulPeak()
    product = peak.build("matmul", 1024, "numpy")()
    assert _companions.error_of(product, peak.reference("matmul", 1024)) < 1e-4
    assert _companions.error_of(product * 1.01, peak.reference("matmul", 1024)) > 5e-3


def test_sde_reference_sees_a_wrong_answer():
    import numpy as np

    from benchmarks import _companions
    from benchmarks.bench_sde import EnsembleSimulation, ParameterSweep, RNGBound

    obj = EnsembleSimulation()
    assert obj.reference("bound", 100, 1000) is None and RNGBound().reference("normals", 100, 1000) is None
    expected = obj.reference("simulate", 100, 1000)
    paths = np.asarray(obj.build("simulate", 100, 1000, "pregen")())
    right = _companions.error_of(paths, expected)
    assert right < 0.5
    # Twice the spread (a wrong diffusion, sigma * 2): the variance is 4x, error ~3.
    final = paths[:, -1:]
    wider = np.concatenate([paths[:, :-1], final.mean() + 2 * (final - final.mean())], axis=1)
    assert _companions.error_of(wider, expected) > 2
    # A mean shifted by half the long-run distance (a wrong drift).
    assert _companions.error_of(paths + 0.3, expected) > 0.3
    # The sweep: one of its 32 parameter sets wrong is enough.
    sweep = ParameterSweep()
    out = np.array(sweep.build("sweep", "pregen")())
    assert _companions.error_of(out, sweep.reference("sweep")) < 0.5
    out[0] = out[-1]  # set 0 (theta 0.5, sigma 0.1) carrying the last set's paths (2.0, 0.5)
    assert _companions.error_of(out, sweep.reference("sweep")) > 2


def test_tree_transforms_reference_sees_a_wrong_answer():
    import jax
    import numpy as np

    from benchmarks import _companions
    from benchmarks.bench_tree_transforms import ApplyShardingRules, ShardModel, _matches, _model

    obj = ApplyShardingRules()
    expected = obj.reference("apply", 4, 2)
    result = obj.build("apply", 4, 2, "path_map")()
    assert _companions.error_of(result, expected) == 0
    shard = ShardModel()
    assert _companions.error_of(shard.build("shard", 4, 2, "batched")(), shard.reference("shard", 4, 2)) == 0
    # The unsharded model: right values, every matched leaf on one device.
    assert _companions.error_of(_model(4), expected) == 1
    # One matched leaf with a wrong value, sharded as it should be.
    match = _matches(4, 2)[0]
    bad = jax.device_put(match.replacement * 1.5, match.replacement.sharding)
    wrong = jax.tree_util.tree_map(lambda leaf: bad if leaf is match.replacement else leaf, result)
    assert _companions.error_of(wrong, expected) == pytest.approx(0.5, rel=1e-6)
    assert np.isfinite(_companions.error_of(wrong, expected))
    with pytest.raises(ValueError, match="tree differs"):
        _companions.error_of([result], expected)


def test_meanflow_reference_sees_a_wrong_answer():
    pytest.importorskip("torch")
    from benchmarks import _companions
    from benchmarks.bench_meanflow import FMStep, JVPCost, MeanFlowStep

    # The MeanFlow step's weighted loss is ~1 whatever the answer: no reference (n/a), and a
    # step at another ratio would indeed read the same loss.
    step = MeanFlowStep()
    assert step.reference("step", "unet", "0.25") is None
    one, other = (float(step.build("step", "unet", ratio, "naive")().detach()) for ratio in ("0.25", "1.0"))
    assert abs(one - other) < 1e-4
    fm = FMStep()
    expected = fm.reference("fm_step", "unet")
    loss = fm.build("fm_step", "unet", "eager")()
    assert _companions.error_of(loss, expected) < 1e-4
    assert _companions.error_of(loss * 1.01, expected) > 5e-3
    jvp = JVPCost()
    expected = jvp.reference("jvp", "unet")
    dudt = jvp.build("jvp", "unet", "forward_ad")()
    assert _companions.error_of(dudt, expected) < 1e-4
    assert _companions.error_of(jvp.build("forward", "unet", "forward_ad")(), expected) > 0.1  # u is not du/dt
    # The JAX rows carry the torch rows' weights: the same float64 reference checks them.
    jax_dudt = jvp.build("jvp", "unet", "jax")()
    assert _companions.error_of(jax_dudt, expected) < 1e-4
    assert _companions.error_of(jax_dudt * 1.01, expected) > 5e-3
    jax_fm = fm.build("fm_step", "unet", "jax")()
    assert _companions.error_of(jax_fm, fm.reference("fm_step", "unet")) < 1e-4


def test_every_interleaved_class_has_its_own_setup_cache():
    # asv runs one setup_cache per key and shares its result among the classes with that key.
    from asv_runner.benchmarks._base import get_setup_cache_key

    keys = {name: get_setup_cache_key(CLASSES[name].setup_cache) for name in INTERLEAVED}
    assert len(set(keys.values())) == len(keys), keys


@pytest.mark.parametrize("name", INTERLEAVED)
def test_registered_variants_compile_to_different_programs(name):
    # At the smallest benchmarked cell, no two registered variants of the class's main
    # operation may compile to one program (then a variant switch benchmarks the same code
    # twice), unless the registry declares the pair, with its reason.
    from benchmarks import _companions, _interleave
    from perflab import variants

    cls = CLASSES[name]
    study = name.split(".")[0].removeprefix("bench_")
    ops = []
    if study != "calibration":
        ops = [op for op in variants.for_study(study) if set(op.names) & set(cls.params[-1])]
    head = next(itertools.product(*cls.params[:-1]))
    registered = {v for op in ops for v in op.names}
    programs = {}
    for variant in cls.params[-1]:
        twin = variant == _interleave.CONTROL or variant in _interleave.INJECTED
        if twin or (variant not in registered and study != "calibration"):
            continue  # the control and injected twins run the baseline's program on purpose
        try:
            call = cls().build(cls.operations[0], *head, variant)
        except NotImplementedError:
            continue
        if getattr(call, "compiled", None) is not None:
            programs[variant] = _companions.hlo_fingerprint(call.compiled.as_text())
    for a, b in itertools.combinations(sorted(programs), 2):
        if programs[a] == programs[b]:
            reasons = [op.expected_same_program(a, b) for op in ops]
            assert any(reasons), f"{name}: {a} and {b} compile to the same program at {head} and no registry says why"


def test_provenance_ignores_asv_results_but_not_code(tmp_path):
    # asv rewrites results/benchmarks.json as a run starts: that must not count as an edit.
    import subprocess

    from perflab import provenance

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "benchmarks.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    assert not provenance.dirty(str(tmp_path))
    (tmp_path / "results" / "benchmarks.json").write_text('{"version": 2}')
    assert not provenance.dirty(str(tmp_path))
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.dirty(str(tmp_path))


def test_provenance_refuses_a_run_labelled_with_another_commit(monkeypatch):
    from perflab import provenance

    code = provenance.installed()
    assert code.commit and code.source.startswith("git checkout")
    other = "0" * 40
    with pytest.raises(provenance.ProvenanceError, match="recorded as commit 00000000, but the installed perflab"):
        provenance.check(other)
    monkeypatch.setenv(provenance.ALLOW_ENV, "a deliberate test")
    assert provenance.check(other).commit == code.commit
    assert provenance.check(None) == code  # not an asv run: nothing to compare


def test_recording_a_run_under_another_commit_fails(tmp_path):
    # `asv run --python=same --set-commit-hash X` with X not the installed commit: the measuring
    # code refuses before it measures, and asv shows why.
    from perflab import calibrate

    head = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("a shallow clone has no HEAD~1")
    conf = tmp_path / "asv.json"
    conf.write_text(json.dumps(calibrate._asv_config(str(ROOT / "asv.conf.json"), str(tmp_path / "results"))))
    env = {k: v for k, v in os.environ.items() if k != "PERFLAB_PROVENANCE_REASON"}
    env["HOME"] = str(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "asv", "machine", "--yes", "--machine", "t"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "asv",
            "run",
            "--python=same",
            "--machine",
            "t",
            "--show-stderr",
            "--config",
            str(conf),
            "--set-commit-hash",
            head.stdout.strip(),
            "-b",
            "Calibration.track_workload",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    text = out.stdout + out.stderr
    assert "failed" in text and f"recorded as commit {head.stdout.strip()[:8]}, but the installed perflab" in text, text


def test_this_test_session_runs_with_pinned_pools():
    # conftest.py imports benchmarks._env before numpy: the session's own BLAS pools are pinned.
    import threadpoolctl

    pools = threadpoolctl.threadpool_info()
    seen = [(p["internal_api"], p["filepath"], p["num_threads"]) for p in pools]
    assert {p["num_threads"] for p in pools} == {1}, seen
