"""The asv suite: every benchmark collects, runs one call, and the asv configuration builds."""

import importlib
import inspect
import itertools
import json
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
            if inspect.isclass(cls) and cls.__module__ == module.__name__ and any(
                m.startswith(PREFIXES) for m in dir(cls)
            ):
                yield f"{name}.{cls_name}", cls


CLASSES = dict(_classes())


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
    [(n, m) for n, cls in sorted(CLASSES.items()) for m in sorted(dir(cls)) if m.startswith(PREFIXES)],
)
def test_benchmark_runs_once(name, method):
    cls = CLASSES[name]
    obj, combo = _first_runnable(cls, method)
    result = getattr(obj, method)(*combo)
    if method.startswith("track_"):
        assert isinstance(result, (int, float)) and result == result, result
        assert getattr(cls, method).unit


# (study, operation) -> the benchmark class whose `variant` parameter must cover its variants.
BENCHED = {
    ("linear_solve", "solve_jvp"): "bench_linear_solve.LinearSolveJVP",
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


def test_linear_solve_param_names_fixed():
    cls = CLASSES["bench_linear_solve.LinearSolveJVP"]
    assert cls.param_names == ["solver", "size", "variant"]
    assert cls.params[:2] == [["tridiagonal", "lu", "cholesky"], [10, 50, 100, 200, 500]]
    assert {"separate_solves", "vmapped_solves", "lineax", "fused", "cython"} <= set(cls.params[2])
    assert CLASSES["bench_linear_solve.LinearSolveJVP"].track_jvp_over_primal.unit == "ratio"


def test_asv_config_is_valid():
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    assert conf["environment_type"] == "virtualenv" and conf["launch_method"] == "spawn"
    assert any("--no-deps" in c for c in conf["build_command"])
    from asv.config import Config

    Config.load(str(ROOT / "asv.conf.json"))


def test_asv_check_lists_no_errors():
    out = subprocess.run(
        [sys.executable, "-m", "asv", "check", "--python=same"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Traceback" not in text and "error" not in text.lower(), text


def test_asv_build_command_builds_a_wheel_with_the_extension(tmp_path):
    # The build command asv.conf.json uses, run on this tree: the wheel must carry the
    # compiled Cython extension, and the sdist route (MANIFEST.in) the .pyx.
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=900,
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
