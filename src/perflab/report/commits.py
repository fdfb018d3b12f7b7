"""Two commits: every cell recorded for commit B judged against the same cell of commit A.

The gate a CI job can use (``python -m perflab report --commits A B``). It reads the results
`asv run` / `asv continuous` wrote, so it judges the numbers `asv compare` reads, with the
report's cross-run rule: per cell, the ratio B/A of the per-sample values with a `CONFIDENCE`
interval, flagged beyond `comparisons.DEFAULT_FACTOR`. The samples are paired round by round
when the two runs were interleaved (see `interleaved`), the benchmark ran several rounds and
both cells hold as many samples; otherwise Welch's interval. Every figure is read as
lower-is-better. Figures with a single value (fingerprints, flops, bytes, errors) are "changed"
or "unchanged", never a regression. Beside each cell stands the drift of its identical-code
``control`` twin.

The relative rule judges each variant's change beyond the change its cell's variants share.
The variants of a cell are measured interleaved in the same processes, so round by round every
variant's log(B/A) carries the same two processes' speeds; the median of those over the cell's
variants (at least `MIN_COMMON`, the control twin aside) is the change they share, and what is
left of each variant's B/A is its own, judged by a t interval over the rounds at
`RELATIVE_CONFIDENCE`. It reads the harness's relative times (`RELATIVE_ROWS`) where both runs
recorded them, the own times otherwise: a relative time is a ratio taken inner round by inner
round inside its process, so it also drops the drift between a process's inner rounds that a
ratio of the process's medians keeps; each inner round's divisor is shared by the cell's variants, so
what is left beyond the median change is the variant's own as before (measured on the recorded
pairs of identical code and the kept calibration trials in docs/trust.md). This sees a change
confined to some variants with a fraction of the rounds a cell's own times need; a change that
moves every variant alike (shared code, a slower machine) is the common change and leaves it
unmoved: the cell's own rule is for that. The gate fails on a
regression by either rule of a gated cell (`CellChange.gated`) at `GATE_CONFIDENCE` (or the
listing's level, where stricter): every cell but the identical-code
``control`` twin (its code is the baseline's, whose own row is judged) and the companions
asv.conf.json keeps off asv's regressions page (`ungated_patterns`: compile times, fingerprints,
flops, bytes, errors). Those are listed, marked, and never fail it. Where a variant other than
the baseline regressed by its own times and its control's B/A lies beyond the factor too, it
fails the gate only if it also regressed beyond the control (`CellChange.beyond_control`, round
by round): the control is the baseline measured again in the same processes, so a change both
share, the baseline's code or the processes' speed, is the baseline's row to judge.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import statistics
from collections.abc import Sequence

from tabulate import tabulate

from .. import significance
from .._asv import RecordedRun, ReportError, human_value, load_config, short_name
from .._git import resolve
from .cells import VARIANT_PARAM, Cell, grid
from .comparisons import DEFAULT_FACTOR

CONFIDENCE = significance.UNPAIRED_CONFIDENCE
"""The level of the report's cross-run rule: cells of two runs share no process offsets."""
PAIRED_CONFIDENCE = 0.99
"""The level for two commits whose rounds asv interleaved, chosen on identical code: a
docs-only pair through `asv continuous` (whole suite, 5 rounds, 2013 sampled cells) flagged 1
cell at 99.9%, 6 at 99% and 46 at 95%, a second pair (2026 cells) 4, 15 and 79; 99% is the
loosest level under 1% on both (docs/trust.md)."""


RELATIVE_CONFIDENCE = 0.99
"""The level of the relative rule, chosen on identical code: on the two docs-only pairs (799
judged cells each) it flagged 0 and 0 at 99.9%, 4 and 4 at 99%, 26 and 12 at 95%, and on the
identical-code calibration trial (222 cells) 1, 2 and 6; 99% is the loosest level under 1% on all
three (docs/trust.md). Checked again when the rule moved to the relative times, on the three
docs-only pairs of 799 cells recorded with them (d844745 -> 2329e9b, ace86d6 -> a341ac8,
f9023c4 -> 98cd5c1; the trial has none, so it keeps the own times): 0, 0, 0 at 99.9%; 0, 1, 1 at
99%; 1, 2, 7 at 95% (on the own times, the rule otherwise the same: 0, 1, 2 and 3, 4, 7; `report
--commits A B --confidence LEVEL`)."""

GATE_CONFIDENCE = 0.999
"""The least level at which a regression fails the gate (the exit status), whatever level the
listing uses. The listing's levels hold each cell's false flags under 1%, but the gate exits 1
on any one of some two thousand cells: at 99% it exited 1 on three of the four recorded
docs-only pairs of the whole suite (2-3 cells each) and on a later one of `bench_linear_solve`,
at 99.9% on none of them (a `bench_sde` pair passes both; the identical-code calibration trial,
three classes, exits 1 at both, on one cell); every calibration trial slowed by 10% with 10
rounds or more still exits 1 at 99.9% (9 of 9), though fewer of its slowed cells fail it than
are listed (docs/trust.md, "The gate's level")."""


def confidence_for(paired: bool) -> float:
    """The two-commit rule's level: `PAIRED_CONFIDENCE` for samples paired round by round (the
    runs were interleaved), else `CONFIDENCE` (Welch's)."""
    return PAIRED_CONFIDENCE if paired else CONFIDENCE


CONTROL = "control"
REGRESSION, IMPROVEMENT, NOISE, CHANGED, UNCHANGED = ("regression", "improvement", "noise", "changed", "unchanged")


def pick_run(runs: list[RecordedRun], revision: str, root: str, env: str | None, option: str) -> RecordedRun:
    """The run of one commit, named by any git revision (or a recorded hash prefix).

    Arguments:
        runs: every run of the machine.
        revision: ``HEAD~1``, a tag, a hash or a prefix of a recorded hash.
        root: the repository that resolves `revision`.
        env: the environment, when the commit was recorded in several.
        option: the option to name in errors.

    Returns:
        The run.

    Raises:
        ReportError: when the commit was not recorded, or recorded in several environments.
    """
    full = resolve(root, revision)
    if full is not None:
        chosen = [r for r in runs if r.commit == full]
    else:
        chosen = [r for r in runs if r.commit.lower().startswith(revision.lower())]
    if env is not None:
        chosen = [r for r in chosen if r.env_name == env] or [r for r in chosen if env in r.env_name]
    recorded = ", ".join(dict.fromkeys(r.commit[:8] for r in runs))
    machine = runs[0].machine
    if not chosen:
        what = f"{revision!r} ({full[:8]})" if full else repr(revision)
        raise ReportError(option, f"no results for commit {what} on machine {machine!r} (recorded: {recorded})")
    if len({r.commit for r in chosen}) > 1:
        raise ReportError(option, f"{revision!r} matches several recorded commits: {recorded}")
    if len(chosen) > 1:
        envs = ", ".join(r.env_name for r in chosen)
        raise ReportError("--env", f"commit {chosen[0].commit[:8]} was recorded in several environments: {envs}")
    return chosen[0]


def interleaved(a: RecordedRun, b: RecordedRun) -> bool:
    """Whether the two runs were one asv run with interleaved rounds.

    asv's interleaved rounds (``asv continuous``, ``asv run A^! B^!`` in a virtualenv) alternate
    the commits round by round, A B then B A, and each results file keeps the start and
    duration of its final round (its setup_cache's duration too): the two files' windows
    overlap or lie back to back, closer than the shorter window's length. Separate runs, or
    all of A's rounds then all of B's, lie further apart.

    Arguments:
        a: commit A's run.
        b: commit B's run.

    Returns:
        True when the windows overlap or are closer than the shorter one's length.
    """
    wa, wb = a.window(), b.window()
    if wa is None or wb is None:
        return False
    gap = max(wa[0], wb[0]) - min(wa[1], wb[1])
    return gap < min(wa[1] - wa[0], wb[1] - wb[0])


def _paired(a, b, name, ca, cb, runs_interleaved):
    # Sample i of each side comes from round i only when the benchmark ran several rounds
    # (one round gives asv nothing to interleave) and both sides kept every round.
    rounds = int(a.info(name).get("rounds") or 1)
    return runs_interleaved and rounds >= 2 and len(ca.values) == len(cb.values)


@dataclasses.dataclass(frozen=True)
class CellChange:
    """One cell of both commits, judged.

    Attributes:
        benchmark: the full benchmark name.
        params: (parameter, value) pairs of the cell.
        a: commit A's cell.
        b: commit B's cell.
        unit: asv's unit.
        kind: `REGRESSION`, `IMPROVEMENT` or `NOISE` for sampled figures; `CHANGED` or
            `UNCHANGED` for single values.
        verdict: the significance verdict (ratio B/A), ``None`` for single values.
        control: the ``control`` twin's verdict at the same cell (B/A), or ``None``.
        relative: the relative rule's verdict (the cell's B/A beyond the change its cell's
            variants share, round by round, on the harness's relative times where both runs
            recorded them), or ``None``: figures other than timings of a class
            measured interleaved, cells of fewer than `MIN_COMMON` variants, or rounds missing.
        gated: whether a regression of this cell can fail the gate: not for the ``control`` twin
            nor for a benchmark that `ungated_patterns` names.
        beyond_control: for a variant other than the baseline and the control, sampled in every
            round with its control twin in the same processes: its B/A beyond the control's B/A,
            round by round, at `RELATIVE_CONFIDENCE`; else ``None``.
        at_gate: the same cell judged at the gate's level (`GATE_CONFIDENCE`), for a gated cell
            the listing's rules moved at a looser level; ``None`` otherwise (the listing's
            verdicts are the gate's).
    """

    benchmark: str
    params: tuple[tuple[str, str], ...]
    a: Cell
    b: Cell
    unit: str | None
    kind: str
    verdict: significance.Verdict | None = None
    control: significance.Verdict | None = None
    relative: significance.Verdict | None = None
    gated: bool = True
    beyond_control: significance.Verdict | None = None
    at_gate: "CellChange | None" = None

    @property
    def relative_kind(self) -> str | None:
        """`REGRESSION`, `IMPROVEMENT` or `NOISE` by the relative rule; ``None`` without one."""
        return None if self.relative is None else _direction(self.relative)

    @property
    def moved_with_control(self) -> bool:
        """A change by the cell's own times that its control made too (its ratio beyond the
        factor the same way), and that is not beyond the control's."""
        if self.kind not in (REGRESSION, IMPROVEMENT) or self.beyond_control is None or self.control is None:
            return False
        ratio, factor = self.control.ratio, self.control.factor
        shared = ratio > factor if self.kind == REGRESSION else ratio < 1 / factor
        return shared and _direction(self.beyond_control) != self.kind

    @property
    def listed_kind(self) -> str:
        """What the gate would read at the listing's level: `REGRESSION`, `IMPROVEMENT` or
        `NOISE`. ``NOISE`` for a cell that is not `gated`; else the relative rule's change, or
        the own times' change unless `moved_with_control`, a regression first."""
        if not self.gated:
            return NOISE
        own = NOISE if self.moved_with_control else self.kind
        seen = {own, self.relative_kind}
        return REGRESSION if REGRESSION in seen else IMPROVEMENT if IMPROVEMENT in seen else NOISE

    @property
    def gate_kind(self) -> str:
        """What the gate reads: `REGRESSION` (it exits 1), `IMPROVEMENT` or `NOISE`: the
        `listed_kind` of the cell judged at the gate's level (`at_gate`), else at the listing's."""
        return (self.at_gate or self).listed_kind

    @property
    def below_gate(self) -> bool:
        """A regression at the listing's level that the gate, judging it again at its stricter
        level (`at_gate`), does not fail on."""
        return self.at_gate is not None and self.listed_kind == REGRESSION and not self.fails_gate

    @property
    def fails_gate(self) -> bool:
        """Whether this cell makes the gate exit 1 (`gate_kind` is `REGRESSION`)."""
        return self.gate_kind == REGRESSION


def _direction(verdict):
    if not verdict.changed:
        return NOISE
    return REGRESSION if verdict.ratio > 1 else IMPROVEMENT


def _sampled(cell):
    return cell.ok and cell.samples is not None and len(cell.values) >= 2 and min(cell.values) > 0


def _same(x, y):
    # Exact equality; two NaNs (both skipped) or two Nones (both failed) are the same figure.
    if x is None or y is None:
        return x is y
    return x == y or (math.isnan(x) and math.isnan(y))


def _level_of(confidence, default, floor):
    return max(default if confidence is None else confidence, floor)


def _judge(a_cell, b_cell, paired, factor, confidence, floor=0.0):
    level = _level_of(confidence, confidence_for(paired), floor)
    return significance.compare(a_cell.values, b_cell.values, paired=paired, factor=factor, confidence=level)


MIN_COMMON = 3
"""Variants a cell needs (the control twin aside) for the relative rule: with three or more, the
median change round by round is one that most of them share, whatever one of them did."""


def _full(cell):
    # Sampled in every round: sample i is round i's process, for every variant of the class.
    return (
        cell is not None and cell.paired_group is not None and _sampled(cell) and len(cell.values) == len(cell.samples)
    )


RELATIVE_ROWS = "_relative"
"""The suffix of a timing benchmark's relative times as the harness records them
(``track_<operation>_relative``: each variant's time over its cell's geometric mean)."""


def _relative_basis(a, b, name, ga, gb):
    # What the relative rule reads: the harness's relative times where both runs recorded them,
    # else the own times (runs recorded before the harness kept them). A relative time is taken
    # inner round by inner round inside its process, so a process whose speed moves between its
    # inner rounds moves every variant alike there, which a ratio of its medians keeps: per
    # process 2.4% against 3.7% (docs/trust.md). Subtracting the cell's median change leaves each
    # variant's own change, as on the own times, since the divisor is common to the cell.
    if ga.unit != "seconds":
        return None
    rows = name + RELATIVE_ROWS
    if all(rows in run.names and rows in run.benchmarks for run in (a, b)):
        ga, gb = grid(a, rows), grid(b, rows)
    return ga, gb


def _common_changes(ga, gb, at):
    # Per cell (the parameters but the variant): the median over its variants of log(B/A),
    # round by round, and the variants it was taken over; cells with too few variants are left out.
    if at is None:
        return {}
    heads = {}
    for key in ga.cells:
        if _full(ga.cells[key]) and _full(gb.cells.get(key)):
            heads.setdefault(key[:at] + key[at + 1 :], []).append(key)
    common = {}
    for head, keys in heads.items():
        rounds = len(ga.cells[keys[0]].values)
        keys = [k for k in keys if len(ga.cells[k].values) == len(gb.cells[k].values) == rounds]
        center = [k for k in keys if k[at] != CONTROL]
        if len(center) < MIN_COMMON:
            continue
        logs = [[math.log(gb.cells[k].values[i] / ga.cells[k].values[i]) for k in center] for i in range(rounds)]
        common[head] = ([statistics.median(one) for one in logs], set(keys))
    return common


def _relative(ga, gb, common, key, at, factor, confidence, floor=0.0):
    found = common.get(key[:at] + key[at + 1 :]) if at is not None else None
    if found is None or key not in found[1]:
        return None
    shift, _ = found
    level = _level_of(confidence, RELATIVE_CONFIDENCE, floor)
    # A's samples moved by the common change of their round: what is left of B/A is this variant's own.
    moved = [x * math.exp(m) for x, m in zip(ga.cells[key].values, shift)]
    return significance.compare(moved, gb.cells[key].values, paired=True, factor=factor, confidence=level)


def ungated_patterns(config: str) -> list[str]:
    """The benchmarks asv's regressions page leaves out: the patterns of ``asv.conf.json``'s
    ``regressions_first_commits`` whose first commit is ``null``.

    Arguments:
        config: the asv.conf.json path; a missing file leaves nothing out.

    Returns:
        The regular expressions, matched as asv matches them (`re.match` on the benchmark name).
    """
    conf = load_config(config) if os.path.isfile(config) else {}
    first = conf.get("regressions_first_commits") or {}
    return [pattern for pattern, commit in first.items() if commit is None]


def _beyond_control(ca, cb, ta, tb, factor, confidence, floor=0.0):
    cells = (ca, cb, ta, tb)
    if not all(_full(c) for c in cells) or len({len(c.values) for c in cells}) != 1:
        return None
    level = _level_of(confidence, RELATIVE_CONFIDENCE, floor)
    # A's samples moved by the control's change in their round: what is left is the variant's own.
    moved = [x * (t1 / t0) for x, t0, t1 in zip(ca.values, ta.values, tb.values)]
    return significance.compare(moved, cb.values, paired=True, factor=factor, confidence=level)


def compare_commits(
    a: RecordedRun,
    b: RecordedRun,
    factor: float = DEFAULT_FACTOR,
    confidence: float | None = None,
    ungated: Sequence[str] = (),
    gate_confidence: float = GATE_CONFIDENCE,
) -> list[CellChange]:
    """Every cell recorded for both commits, judged B against A.

    Arguments:
        a: commit A's run.
        b: commit B's run (same machine).
        factor: the ratio a change must exceed.
        confidence: the intervals' level, both rules (default: `confidence_for` each cell, by
            whether its samples pair round by round; `RELATIVE_CONFIDENCE` for the relative rule).
        ungated: patterns of benchmarks whose regressions are listed but do not fail the gate
            (`ungated_patterns`).
        gate_confidence: the least level at which a regression fails the gate: a gated cell
            that either rule moves is judged again at this level where it is stricter than the
            listing's (`CellChange.at_gate`).

    Returns:
        One `CellChange` per cell of every benchmark both runs recorded, in name order.
    """
    paired = interleaved(a, b)
    changes = []
    for name in sorted(set(a.names) & set(b.names)):
        if name not in a.benchmarks:
            continue
        ga, gb = grid(a, name), grid(b, name)
        names = ga.param_names
        control_at = names.index(VARIANT_PARAM) if VARIANT_PARAM in names else None
        basis = _relative_basis(a, b, name, ga, gb)
        relative = (*basis, _common_changes(*basis, control_at)) if basis else None
        companion = any(re.match(pattern, name) for pattern in ungated)
        for key, ca in ga.cells.items():
            cb = gb.cells.get(key)
            if cb is None:
                continue
            params = tuple(zip(names, key))
            gated = not companion and (control_at is None or key[control_at] != CONTROL)
            if not (_sampled(ca) and _sampled(cb)):
                kind = UNCHANGED if _same(ca.value, cb.value) else CHANGED
                changes.append(CellChange(name, params, ca, cb, ga.unit, kind, gated=gated))
                continue

            judged = (a, b, name, ga, gb, key, params, gated, control_at, relative, paired, factor, confidence)
            change = _judge_cell(*judged, floor=0.0)
            # Only a cell the listing's rules moved can fail the gate, so only those are judged
            # again; the gate's level is never looser than the listing's.
            if gated and change.gate_kind != NOISE and _stricter(change, gate_confidence):
                change = dataclasses.replace(change, at_gate=_judge_cell(*judged, floor=gate_confidence))
            changes.append(change)
    return changes


def _stricter(change, level):
    verdicts = (change.verdict, change.control, change.relative, change.beyond_control)
    return any(v is not None and v.confidence < level for v in verdicts)


def _judge_cell(a, b, name, ga, gb, key, params, gated, control_at, basis, paired, factor, confidence, floor):
    ca, cb = ga.cells[key], gb.cells[key]
    verdict = _judge(ca, cb, _paired(a, b, name, ca, cb, paired), factor, confidence, floor)
    control = beyond = None
    if control_at is not None and key[control_at] != CONTROL:
        twin = key[:control_at] + (CONTROL,) + key[control_at + 1 :]
        ta, tb = ga.cells.get(twin), gb.cells.get(twin)
        if ta is not None and tb is not None and _sampled(ta) and _sampled(tb):
            control = _judge(ta, tb, _paired(a, b, name, ta, tb, paired), factor, confidence, floor)
        if key[control_at] != ga.info.get("baseline"):
            beyond = _beyond_control(ca, cb, ta, tb, factor, confidence, floor)
    relative = None
    if basis is not None:
        ra, rb, common = basis
        relative = _relative(ra, rb, common, key, control_at, factor, confidence, floor)
    return CellChange(name, params, ca, cb, ga.unit, _direction(verdict), verdict, control, relative, gated, beyond)


def failed(changes: list[CellChange]) -> bool:
    """Whether any gated cell (a sampled figure) regressed by either rule: the gate's exit
    status 1."""
    return any(c.fails_gate for c in changes)


def _gate(change, relative=False):
    if not change.gated:
        return "listed (control)" if dict(change.params).get(VARIANT_PARAM) == CONTROL else "listed (companion)"
    if not relative and change.moved_with_control:
        return f"listed (with its control: {_ratio(change.beyond_control)} beyond it)"
    if change.fails_gate:
        return "fails"
    if change.below_gate:
        return f"listed (not at the gate's {_level(None, change.at_gate.verdict.confidence)})"
    return "listed"


def _value(cell, unit):
    if not cell.ok:
        return cell.status
    if unit in ("seconds", "bytes", "program hash"):
        return human_value(cell.value, unit)
    # asv writes other units' values in full (0.9880024363855725 x ...); four digits say enough.
    return f"{cell.value:.4g} {unit or ''}".rstrip()


def _ratio(verdict):
    if verdict is None:
        return "-"
    if not verdict.tested:
        return f"{verdict.ratio:.3f}"
    return f"{verdict.ratio:.3f} ({verdict.low:.3f}-{verdict.high:.3f})"


def _row(change):
    params = ", ".join(f"{k}={v}" for k, v in change.params)
    test = "paired" if change.verdict.paired else "Welch"
    return [
        short_name(change.benchmark),
        params,
        _value(change.a, change.unit),
        _value(change.b, change.unit),
        _ratio(change.verdict),
        test,
        _ratio(change.control),
        _gate(change),
    ]


HEAD = ["benchmark", "cell", "A", "B", "B/A (interval)", "test", "control B/A", "gate"]


def _relative_row(change):
    params = ", ".join(f"{k}={v}" for k, v in change.params)
    return [
        short_name(change.benchmark),
        params,
        _ratio(change.verdict),
        _ratio(change.relative),
        _gate(change, relative=True),
    ]


RELATIVE_HEAD = ["benchmark", "cell", "B/A (interval)", "beyond the common change (interval)", "gate"]


def _level(given, default):
    level = default if given is None else given
    return f"{100 * level:.10g}%"


def render_commits(
    a: RecordedRun,
    b: RecordedRun,
    changes: list[CellChange],
    factor: float,
    fmt: str,
    confidence: float | None = None,
    gate_confidence: float = GATE_CONFIDENCE,
) -> str:
    """The listing: regressions first, then improvements, then what did not change.

    Arguments:
        a: commit A's run.
        b: commit B's run.
        changes: `compare_commits`'s result.
        factor: the factor used.
        fmt: ``"markdown"`` or ``"text"``.
        confidence: the level `compare_commits` was given, if any (the rule's own otherwise).
        gate_confidence: the gate's level `compare_commits` was given.

    Returns:
        The text, ending with a newline.
    """
    markdown = fmt == "markdown"
    gate_level = _level(None, gate_confidence)
    table_format = "github" if markdown else "simple"
    paired = interleaved(a, b)

    def heading(text):
        return ["", f"## {text}", ""] if markdown else ["", text, "=" * len(text)]

    lines = [
        f"# Commit {b.commit[:8]} against {a.commit[:8]} on machine {a.machine}"
        if markdown
        else f"Commit {b.commit[:8]} against {a.commit[:8]} on machine {a.machine}"
    ]
    lines += [
        "",
        f"A: {a.commit} ({a.relative_path})",
        f"B: {b.commit} ({b.relative_path})",
        "Rule: ratio B/A of the per-sample values with an interval, "
        + (
            f"paired round by round at {_level(confidence, PAIRED_CONFIDENCE)} for cells of several rounds (the "
            f"two runs were interleaved), else Welch's at {_level(confidence, CONFIDENCE)}"
            if paired
            else f"Welch's at {_level(confidence, CONFIDENCE)} (the two runs were not interleaved)"
        )
        + f"; flagged when the interval excludes 1 and the ratio lies beyond {factor:g}. "
        "Every figure is lower-is-better. Control: the identical-code twin of the same cell, B/A.",
        "Relative rule: each variant's B/A beyond the change its cell's variants share (their median, "
        "round by round; read from the harness's relative times, each variant's time over its cell's "
        "geometric mean in every inner round of its process, where both runs recorded them), at "
        f"{_level(confidence, RELATIVE_CONFIDENCE)}: it sees a change confined to some variants, not one "
        "that moves every variant alike. The gate (the exit status) fails on a regression "
        f"by either rule at {gate_level} or the listing's level where that is "
        "stricter (one of some two thousand cells flagged by chance must not fail it), "
        "except of the identical-code control (the baseline's code, judged in its own row) and of the companions "
        "asv.conf.json keeps off the regressions page (compile times, fingerprints, flops, bytes, errors): "
        "those are listed, not gated. A variant other than the baseline whose control's B/A lies beyond the "
        "factor the same way fails it by its own times only beyond its control's change, round by round "
        f"(at {_level(confidence, RELATIVE_CONFIDENCE)}).",
    ]
    if markdown:
        lines[2:] = [f"- {line}" for line in lines[2:]]

    def table(title, rows, headers):
        lines.extend(heading(f"{title} ({len(rows)})"))
        if not rows:
            lines.append("none")
            return
        lines.extend(tabulate(rows, headers=headers, tablefmt=table_format, disable_numparse=True).splitlines())

    for kind, title in ((REGRESSION, "Regressions"), (IMPROVEMENT, "Improvements")):
        table(title, [_row(c) for c in changes if c.kind == kind], HEAD)
    for kind, title in ((REGRESSION, "Slower"), (IMPROVEMENT, "Faster")):
        rows = [_relative_row(c) for c in changes if c.relative_kind == kind]
        table(f"{title} beyond the change their cell's variants share", rows, RELATIVE_HEAD)
    single = [c for c in changes if c.kind == CHANGED]
    rows = [
        [short_name(c.benchmark), ", ".join(f"{k}={v}" for k, v in c.params), _value(c.a, c.unit), _value(c.b, c.unit)]
        for c in single
    ]
    table("Single values that changed", rows, HEAD[:4])
    noise = sum(c.kind == NOISE for c in changes)
    same = sum(c.kind == UNCHANGED for c in changes)
    lines += heading("Unchanged")
    relative = sum(c.relative_kind == NOISE for c in changes)
    lines.append(
        f"{noise} timing cell(s) within noise; {same} single value(s) unchanged; "
        f"{relative} cell(s) within noise beyond their cell's common change."
    )
    lines += heading("Gate")
    failing = sum(c.fails_gate for c in changes)
    below = sum(c.below_gate for c in changes)
    verdict = (
        f"exit 1: {failing} cell(s) it judges regressed at {gate_level}"
        if failing
        else f"exit 0: no cell it judges regressed at {gate_level}"
    )
    if below:
        verdict += f"; {below} listed regression(s) do not hold at that level"
    lines.append(verdict + ".")
    return "\n".join(lines) + "\n"
