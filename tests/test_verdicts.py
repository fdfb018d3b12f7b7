"""Claims and goals: parsed from the specs, judged from recorded cells, never typed by hand."""

import itertools
import json
import os
import re
import shutil

import pytest

from perflab._asv import ReportError
from perflab.report import verdicts
from perflab.report.verdicts import MET, MISSED, UNDECIDED, CellVerdict, Line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "results")
MACHINE = "vm-2core-epyc"


@pytest.mark.parametrize(
    ("line", "interval", "state"),
    [
        (">= 1.1", (1.12, 1.3), MET),
        (">= 1.1", (0.9, 1.09), MISSED),
        (">= 1.1", (1.05, 1.2), UNDECIDED),
        ("<= 2.5", (2.0, 2.4), MET),
        ("<= 2.5", (2.6, 3.0), MISSED),
        ("<= 2.5", (2.4, 2.6), UNDECIDED),
        ("< 4", (3.0, 4.0), UNDECIDED),
        ("between 0.6 and 0.7", (0.61, 0.69), MET),
        ("between 0.6 and 0.7", (0.2, 0.3), MISSED),
        ("between 0.6 and 0.7", (0.55, 0.65), UNDECIDED),
    ],
)
def test_a_line_needs_the_whole_interval_on_one_side(line, interval, state):
    assert Line.parse(line).decide(*interval) == state


@pytest.mark.parametrize("text", ["1.1", ">= x", "between 2 and 1", "~ 7"])
def test_a_bad_line_is_refused(text):
    with pytest.raises(ValueError, match="expected"):
        Line.parse(text)


def _cell(state, **params):
    return CellVerdict(tuple(params.items()), 1.0, 1.0, 1.0, state)


def test_every_cell_must_meet_and_best_of_takes_any_variant_per_group():
    cells = [_cell(MET, size="1"), _cell(UNDECIDED, size="2")]
    assert verdicts.combine(cells, None) == UNDECIDED
    assert verdicts.combine(cells + [_cell(MISSED, size="3")], None) == MISSED
    assert verdicts.combine([_cell(MET, size="1")], None) == MET
    group = [
        _cell(MISSED, model="unet", variant="a"),
        _cell(MET, model="unet", variant="b"),
        _cell(MISSED, model="dit", variant="a"),
        _cell(UNDECIDED, model="dit", variant="b"),
    ]
    assert verdicts.combine(group, "variant") == UNDECIDED
    group[3] = _cell(MISSED, model="dit", variant="b")
    assert verdicts.combine(group, "variant") == MISSED


def test_a_spec_cannot_carry_a_verdict(tmp_path):
    data = {
        "goals": [
            {
                "name": "g",
                "text": "t",
                "benchmark": "B.track_x",
                "where": {"variant": "a"},
                "value": "<= 1",
                "verdict": "met",
            }
        ]
    }
    with pytest.raises(ReportError, match="unknown key"):
        verdicts.parse_criteria("spec.toml", data)


def test_no_verdict_is_typed_into_the_specs_or_the_study_notes():
    # Verdict words in bold (how the Verdicts section prints them) may only come from the
    # renderer; the specs hold claims and goals, the notes point at the report.
    marked = re.compile(r"\*\*(reproduced|refuted|met|missed|undecided)\b", re.IGNORECASE)
    docs = os.path.join(ROOT, "docs")
    sources = [
        os.path.join(docs, "reports", n) for n in os.listdir(os.path.join(docs, "reports")) if n.endswith(".toml")
    ]
    sources += [os.path.join(docs, n) for n in os.listdir(docs) if n.endswith(".md")]
    for path in sources:
        with open(path, encoding="utf-8") as f:
            assert not marked.search(f.read()), f"{path} types a verdict by hand"


def test_anchors_follow_github():
    found = verdicts.anchors(
        [
            "1. Dense systems (LU, Cholesky)",
            "LinearSolveJVP.track_jvp — solver=lu",
            "LinearSolveJVP.track_jvp — solver=lu",
        ]
    )
    assert found == [
        "1-dense-systems-lu-cholesky",
        "linearsolvejvptrack_jvp--solverlu",
        "linearsolvejvptrack_jvp--solverlu-1",
    ]


def _results_copy(tmp_path):
    target = tmp_path / "results"
    shutil.copytree(RESULTS, target)
    return str(target)


def _scale_cell(results_dir, commit, benchmark, params, factor):
    # Multiply one recorded cell (its value and every per-process sample) by `factor`.
    folder = os.path.join(results_dir, MACHINE)
    (name,) = [n for n in os.listdir(folder) if n.startswith(commit)]
    path = os.path.join(folder, name)
    with open(path) as f:
        data = json.load(f)
    columns = data["result_columns"]
    entry = data["results"][benchmark]
    grid = entry[columns.index("params")]
    index = list(itertools.product(*grid)).index(tuple(params))
    entry[columns.index("result")][index] *= factor
    samples = entry[columns.index("samples")][index]
    entry[columns.index("samples")][index] = [s * factor for s in samples]
    with open(path, "w") as f:
        json.dump(data, f)


def _judgement(results_dir, spec_path, name):
    from perflab.report import pipeline, spec

    study = pipeline.build_study(spec.load_spec(spec_path), results_dir)
    (found,) = [j for j in study.judgements if j.criterion.name == name]
    return found


TREE = os.path.join(ROOT, "docs", "reports", "tree_transforms.toml")


def _recorded(spec_path):
    # The commit the spec's figures come from: the one whose results a test may alter.
    from perflab.report import spec

    return spec.load_spec(spec_path).commit


GOAL_15X = "batched at least 15x faster than loop at 4 layers"
BATCHED_4 = ["4", "2", "'batched'"]


def test_changing_one_recorded_value_flips_the_verdict(tmp_path):
    results = _results_copy(tmp_path)
    before = _judgement(results, TREE, GOAL_15X)
    assert before.word == "met"
    # batched twice as slow in every process: the Speedup halves, well below the 15x line.
    _scale_cell(results, _recorded(TREE), "bench_tree_transforms.ApplyShardingRules.track_apply", BATCHED_4, 2.0)
    after = _judgement(results, TREE, GOAL_15X)
    assert after.word == "missed"
    assert after.cells[0].high < 15 < before.cells[0].low


def test_a_cell_whose_interval_straddles_the_line_is_undecided(tmp_path):
    results = _results_copy(tmp_path)
    speedup = _judgement(results, TREE, GOAL_15X).cells[0].figure
    # Move the cell so that its Speedup sits on the line: the point estimate decides nothing.
    apply = "bench_tree_transforms.ApplyShardingRules.track_apply"
    _scale_cell(results, _recorded(TREE), apply, BATCHED_4, speedup / 15)
    moved = _judgement(results, TREE, GOAL_15X)
    assert moved.state == UNDECIDED and moved.word == "undecided"
    assert moved.cells[0].low < 15 < moved.cells[0].high


def _spec_with(tmp_path, extra):
    with open(TREE, encoding="utf-8") as f:
        text = f.read()
    path = tmp_path / "tree_transforms.toml"
    path.write_text(text + extra, encoding="utf-8")
    return str(path)


def test_check_fails_on_a_goal_naming_an_unrecorded_cell(tmp_path):
    from perflab.report import pipeline, spec

    path = _spec_with(
        tmp_path,
        """
[[goals]]
name = "A depth nobody recorded"
text = "t"
benchmark = "ApplyShardingRules.track_apply"
where = { layers = ["5"], devices = ["2"] }
before = "loop"
after = "batched"
speedup = ">= 2"
""",
    )
    problems = pipeline.check_study(spec.load_spec(path), RESULTS, ROOT)
    named = [p for p in problems if p.startswith("not recorded:") and "layers=5" in p]
    assert named, problems


def test_a_machine_without_results_is_not_recorded_yet_and_does_not_fail_check(tmp_path):
    from perflab.report import pipeline, spec

    path = _spec_with(
        tmp_path,
        """
[[goals]]
name = "On a machine with no results folder"
machine = "no-such-gpu"
text = "t"
benchmark = "ApplyShardingRules.track_apply"
where = { layers = ["4"], devices = ["2"] }
before = "loop"
after = "batched"
speedup = ">= 2"
""",
    )
    one = spec.load_spec(path)
    (judged,) = [j for j in pipeline.build_study(one, RESULTS).judgements if j.criterion.machine]
    assert judged.word == "undecided (not recorded yet)"
    assert not any("no-such-gpu" in line for line in pipeline.check_study(one, RESULTS, ROOT))


def _process_cell(values, group="g"):
    from perflab.report.cells import Cell

    return Cell(sorted(values)[len(values) // 2], None, tuple(values), group)


def test_best_names_a_winner_only_when_the_rule_finds_it_better():
    from perflab.report import comparisons

    slow = _process_cell([2.0, 2.1, 1.9, 2.05, 1.95])
    fast = _process_cell([1.0, 1.02, 0.98, 1.01, 0.99])
    near = _process_cell([1.01, 1.03, 0.99, 1.0, 1.0])
    assert comparisons.best({"a": slow, "b": fast}, rate=False)[0] == "b"
    assert comparisons.best({"a": slow, "b": fast, "c": near}, rate=False)[0] == "tie: b, c"
    # Variants that compiled to one program are one candidate, never a winner over each other.
    assert comparisons.best({"a": slow, "b": fast, "c": near}, False, same_program=[("b", "c")])[0] == "b = c"


def test_best_is_left_out_of_tables_that_are_not_timings():
    from perflab.report import comparisons

    assert comparisons.timing("seconds") and comparisons.timing("ratio") and comparisons.timing("x PRNG bound")
    assert comparisons.timing("s/GFLOP") and comparisons.timing("ms/layer")
    assert not any(comparisons.timing(u) for u in ("steps", "bytes", "cores", "relative error", "flops", None))
    sde = open(os.path.join(ROOT, "docs", "reports", "sde.md"), encoding="utf-8").read()
    chunk_table = sde.split("### ParameterSweep.track_chunk", 1)[1].split("###", 1)[0]
    assert "Best" not in chunk_table
