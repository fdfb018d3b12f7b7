"""Verdicts: the original write-up's claims and the study's goals, judged from recorded cells.

A study spec (``docs/reports/<study>.toml``) lists ``[[claims]]`` (what the original write-up
claimed, quoted with its own numbers) and ``[[goals]]`` (what the study aims for). Each names
the cells it is judged on and a line::

    [[goals]]
    name = "The Cython recurrence within 2x of jax_scan or faster"
    text = "What is aimed for, in words."
    benchmark = "DeltaRule.track_forward"
    where = { config = ["small", "medium", "large"] }   # parameter -> value(s)
    before = "jax_scan"                                   # a pair: the Speedup of AFTER over
    after = "cython"                                      # BEFORE, as the tables compute it
    speedup = ">= 0.5"                                    # ">= x", "> x", "<= x", "< x",
                                                          # "between a and b"
    # or one figure per cell: where = { ..., variant = "ffi" } and value = "<= 1.10"
    best_of = "variant"      # optional: a group of cells differing only in this parameter is
                             # met when any of them is (the best variant counts)
    machine = "gpu-h200"     # optional: another machine's run (default: the spec's)
    commit = "abcd1234"      # optional (default: the spec's commit on its machine, else newest)
    section = "2. ..."       # optional: the section whose table to link (default: the first
                             # table showing the benchmark, the pair preferred)

A pair is judged with the tables' own comparison (`compare.compare`: paired per-process ratios
for variants of one class, Welch's otherwise) and its interval; a single figure by the geometric
mean of its per-process values with the paired rule's interval (a figure recorded once, such as
an error, is exact). *met* (a claim: *reproduced*) when the whole interval lies on the line's
side, *missed* (*refuted*) when it lies wholly on the other side, *undecided* when it straddles
the line or a cell holds no value. Over several cells: met when every cell (or best-of group)
is met, missed when any is missed, else undecided. No verdict is typed by hand: every word and
figure of the Verdicts section comes from `judge_all`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import NoReturn

from .. import significance
from .._asv import RecordedRun, ReportError
from . import cells as _cells
from . import comparisons

MET, MISSED, UNDECIDED = "met", "missed", "undecided"
WORDS = {
    "claim": {MET: "reproduced", MISSED: "refuted", UNDECIDED: "undecided"},
    "goal": {MET: "met", MISSED: "missed", UNDECIDED: "undecided"},
}
NOT_RECORDED_YET = "not recorded yet"
NOT_RECORDED = "not recorded"
VARIANT = "variant"
KINDS = ("claims", "goals")
_KEYS = {
    "name",
    "text",
    "benchmark",
    "where",
    "before",
    "after",
    "variant",
    "speedup",
    "value",
    "best_of",
    "machine",
    "commit",
    "env",
    "section",
}


@dataclasses.dataclass(frozen=True)
class Line:
    """The line a figure is judged against.

    Attributes:
        op: ``">="``, ``">"``, ``"<="``, ``"<"`` or ``"between"``.
        low: the bound for ``>=``/``>`` and the lower end of ``between``, else ``None``.
        high: the bound for ``<=``/``<`` and the upper end of ``between``, else ``None``.
    """

    op: str
    low: float | None = None
    high: float | None = None

    @classmethod
    def parse(cls, text: str) -> Line:
        """``">= 1.1"``, ``"< 4"``, ``"between 0.6 and 0.7"`` -> `Line`; ValueError otherwise."""
        words = str(text).split()
        try:
            if len(words) == 4 and words[0] == "between" and words[2] == "and":
                low, high = float(words[1]), float(words[3])
                if not low < high:
                    raise ValueError
                return cls("between", low, high)
            if len(words) == 2 and words[0] in (">=", ">"):
                return cls(words[0], low=float(words[1]))
            if len(words) == 2 and words[0] in ("<=", "<"):
                return cls(words[0], high=float(words[1]))
        except ValueError:
            pass
        raise ValueError(f"expected '>= x', '> x', '<= x', '< x' or 'between a and b', got {text!r}")

    def decide(self, low: float, high: float) -> str:
        """`MET` when the interval [low, high] lies on the line's side, `MISSED` when it lies on
        the other side, else `UNDECIDED`."""
        bottom, top = self.low, self.high
        if self.op == ">=" and bottom is not None:
            return MET if low >= bottom else MISSED if high < bottom else UNDECIDED
        if self.op == ">" and bottom is not None:
            return MET if low > bottom else MISSED if high <= bottom else UNDECIDED
        if self.op == "<=" and top is not None:
            return MET if high <= top else MISSED if low > top else UNDECIDED
        if self.op == "<" and top is not None:
            return MET if high < top else MISSED if low >= top else UNDECIDED
        if self.op != "between" or bottom is None or top is None:
            raise ValueError(f"line {self.op!r} lacks its bound (low={bottom!r}, high={top!r})")
        if bottom <= low and high <= top:
            return MET
        return MISSED if high < bottom or low > top else UNDECIDED

    def describe(self) -> str:
        """``"at least 1.1"``, ``"below 4"``, ``"between 0.6 and 0.7"``."""
        words = {">=": "at least", ">": "above", "<=": "at most", "<": "below"}
        if self.op == "between":
            return f"between {self.low:g} and {self.high:g}"
        return f"{words[self.op]} {self.low if self.high is None else self.high:g}"


@dataclasses.dataclass(frozen=True)
class Criterion:
    """One claim or goal of a spec (see the module docstring for the format).

    Attributes:
        kind: ``"claim"`` or ``"goal"``.
        name: a short label.
        text: the claim as the write-up made it, or the goal in words.
        benchmark: the benchmark (a name or dotted part of one, as in sections).
        where: (parameter, values) pairs; the variant among them for a single figure.
        before: the BEFORE variant of a pair, or ``None`` for a single figure.
        after: the AFTER variant(s) of a pair (several only with ``best_of``).
        line: the line.
        best_of: a parameter within whose values one met cell suffices, or ``None``.
        machine: the machine, or ``None`` for the spec's.
        commit: the commit, or ``None``.
        env: the environment, or ``None``.
        section: the heading of the section whose table to link, or ``None``.
    """

    kind: str
    name: str
    text: str
    benchmark: str
    where: tuple[tuple[str, tuple[str, ...]], ...]
    before: str | None
    after: tuple[str, ...]
    line: Line
    best_of: str | None = None
    machine: str | None = None
    commit: str | None = None
    env: str | None = None
    section: str | None = None

    @property
    def pair(self) -> bool:
        """Whether the criterion judges a Speedup (else a single figure per cell)."""
        return self.before is not None

    def describe(self) -> str:
        """What is compared with the line, in words."""
        if self.pair:
            after = " / ".join(f"`{a}`" for a in self.after)
            what = f"Speedup of {after} over `{self.before}` (`{self.benchmark}`)"
        else:
            what = f"`{self.benchmark}`"
        scope = "in every cell"
        if self.best_of:
            others = [len(v) for k, v in self.where if k != self.best_of]
            scope = f"the best {self.best_of}" + (" of every group" if math.prod(others) > 1 else "")
        return f"{what} {self.line.describe()}, {scope}"


def _fail(path, message) -> NoReturn:
    raise ReportError(path, message)


def _names(path, where, key, value):
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value)
    ):
        _fail(path, f"{where}{key} must be a value or a list of values, got {value!r}")
    return tuple(str(v) for v in value)


def parse_criteria(path: str, data: Mapping) -> tuple[Criterion, ...]:
    """The ``[[claims]]`` and ``[[goals]]`` of a spec's TOML data, claims first.

    Arguments:
        path: the spec file (named in errors).
        data: the parsed TOML.

    Returns:
        The criteria.

    Raises:
        ReportError: naming the claim or goal and the key at fault.
    """
    out = []
    for kind in KINDS:
        raw_list = data.get(kind, [])
        if not isinstance(raw_list, list):
            _fail(path, f"{kind} must be an array of tables ([[{kind}]])")
        for i, raw in enumerate(raw_list, 1):
            where = f"{kind[:-1]} {i}: "
            if not isinstance(raw, dict):
                _fail(path, f"{where}not a table")
            unknown = sorted(set(raw) - _KEYS)
            if unknown:
                _fail(path, f"{where}unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
            for key in ("name", "text", "benchmark"):
                if not isinstance(raw.get(key), str) or not raw[key].strip():
                    _fail(path, f"{where}needs {key} (a string)")
            for key in ("before", "machine", "commit", "env", "section", "best_of"):
                if key in raw and (not isinstance(raw[key], str) or not raw[key]):
                    _fail(path, f"{where}{key} must be a string, got {raw[key]!r}")
            params = raw.get("where", {})
            if not isinstance(params, dict):
                _fail(path, f"{where}where must be a table of parameter = value(s)")
            params = {k: _names(path, where, f"where.{k}", v) for k, v in params.items()}
            if "variant" in raw:
                if VARIANT in params:
                    _fail(path, f"{where}variant given twice (key and where.variant)")
                params[VARIANT] = _names(path, where, "variant", raw["variant"])
            if ("speedup" in raw) == ("value" in raw):
                _fail(path, f"{where}needs exactly one of speedup (a pair) or value (one figure)")
            measure = "speedup" if "speedup" in raw else "value"
            try:
                line = Line.parse(raw[measure])
            except ValueError as err:
                _fail(path, f"{where}{measure}: {err}")
            before = raw.get("before")
            after = ()
            if measure == "speedup":
                if before is None or "after" not in raw:
                    _fail(path, f"{where}a speedup needs before and after")
                if VARIANT in params:
                    _fail(path, f"{where}a speedup takes its variants from before/after, not where.variant")
                after = _names(path, where, "after", raw["after"])
            else:
                if before is not None or "after" in raw:
                    _fail(path, f"{where}a value names its variant(s) in where.variant, not before/after")
                if VARIANT not in params:
                    _fail(path, f"{where}a value needs its variant (variant = ... or where.variant)")
            best_of = raw.get("best_of")
            if best_of is not None and best_of not in params and not (best_of == VARIANT and len(after) > 1):
                _fail(path, f"{where}best_of {best_of!r} is not one of the parameters it names")
            if len(after) > 1 and best_of != VARIANT:
                _fail(path, f'{where}several after variants need best_of = "variant"')
            out.append(
                Criterion(
                    kind=kind[:-1],
                    name=raw["name"].strip(),
                    text=" ".join(raw["text"].split()),
                    benchmark=raw["benchmark"],
                    where=tuple(params.items()),
                    before=before,
                    after=after,
                    line=line,
                    best_of=best_of,
                    machine=raw.get("machine"),
                    commit=raw.get("commit"),
                    env=raw.get("env"),
                    section=raw.get("section"),
                )
            )
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class CellVerdict:
    """One cell's figure and its verdict.

    Attributes:
        params: (parameter, value) pairs of the cell, variant included.
        figure: the Speedup or the value, or ``None`` when there is none.
        low: the interval's lower end (``figure`` itself for an exact value).
        high: the interval's upper end.
        state: `MET`, `MISSED` or `UNDECIDED`.
        why: why there is no verdict (``"not recorded yet"``, ``"not recorded"``, ``"n/a"``,
            ``"failed"``, ``"n=1, not tested"``), or ``""``.
        table: (section index, table index) of the table it is read from, or ``None``.
    """

    params: tuple[tuple[str, str], ...]
    figure: float | None
    low: float | None
    high: float | None
    state: str
    why: str = ""
    table: tuple[int, int] | None = None


@dataclasses.dataclass(frozen=True)
class Judgement:
    """A criterion judged.

    Attributes:
        criterion: the claim or goal.
        state: `MET`, `MISSED` or `UNDECIDED`.
        cells: every cell's verdict.
        why: ``"not recorded yet"`` when its machine has no recorded run, ``"not recorded"``
            when its benchmark or a cell is missing from the run, else ``""``.
        where: the run it was judged on (``machine, commit``), or ``""``.
    """

    criterion: Criterion
    state: str
    cells: tuple[CellVerdict, ...]
    why: str = ""
    where: str = ""

    @property
    def word(self) -> str:
        """``reproduced``/``refuted``/``undecided`` for a claim, ``met``/``missed``/``undecided``
        for a goal, with the reason when nothing could be judged."""
        word = WORDS[self.criterion.kind][self.state]
        return f"{word} ({self.why})" if self.why and self.state == UNDECIDED else word

    def problems(self) -> list[str]:
        """What `report --check` lists: cells named but not recorded on a recorded machine."""
        c = self.criterion
        if self.why == NOT_RECORDED_YET:
            return []
        bad = [cv for cv in self.cells if cv.why in (NOT_RECORDED, "n/a", "failed")]
        if c.best_of:
            # A skipped candidate of a best-of group is one the machine cannot run; only a group
            # with no value at all is a problem.
            groups = _group(self.cells, c.best_of)
            bad = [cv for g in groups for cv in g if all(x.figure is None for x in g) and cv.why]
        if not bad:
            return []
        cells = "; ".join(_params_text(cv.params) + f" ({cv.why})" for cv in bad[:6])
        more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
        return [f"{c.kind} {c.name!r} names cells with no recorded value ({self.where}): {cells}{more}"]


def _params_text(params):
    return ", ".join(f"{k}={v}" for k, v in params) or "the cell"


def _group(cells, best_of):
    groups = {}
    for cv in cells:
        key = tuple(kv for kv in cv.params if kv[0] != best_of)
        groups.setdefault(key, []).append(cv)
    return list(groups.values())


def combine(cells: Sequence[CellVerdict], best_of: str | None) -> str:
    """All groups must meet: `MET` if every group is met, `MISSED` if any group is missed, else
    `UNDECIDED`; a group is one cell, or the cells differing only in `best_of`, and is met when
    any of them is met, missed when all are."""
    groups = _group(cells, best_of) if best_of else [[cv] for cv in cells]
    states = []
    for g in groups:
        if any(cv.state == MET for cv in g):
            states.append(MET)
        elif all(cv.state == MISSED for cv in g):
            states.append(MISSED)
        else:
            states.append(UNDECIDED)
    if not states:
        return UNDECIDED
    if MISSED in states:
        return MISSED
    return MET if all(s == MET for s in states) else UNDECIDED


def value_interval(cell, confidence: float = significance.DEFAULT_CONFIDENCE):
    """(figure, low, high, why) of one cell's value: the geometric mean of its per-process values
    with the paired rule's t interval; a value recorded once without samples is exact."""
    values = cell.values
    if not cell.samples:
        return cell.value, cell.value, cell.value, ""
    if len(values) < 2:
        return values[0] if values else None, None, None, "n=1, not tested"
    if min(values) <= 0:
        return cell.value, None, None, "n=1, not tested"
    verdict = significance.compare([1.0] * len(values), values, paired=True, confidence=confidence)
    return verdict.ratio, verdict.low, verdict.high, ""


def expand(criterion: Criterion, param_names: Sequence[str]) -> list[tuple[tuple[str, str], ...]]:
    """Every cell a criterion names, as (parameter, value) pairs in the benchmark's order; for a
    pair the variant is each AFTER variant."""
    given = dict(criterion.where)
    if criterion.pair:
        given[VARIANT] = criterion.after
    missing = [n for n in param_names if n not in given]
    extra = [n for n in given if n not in param_names]
    if missing or extra:
        raise ValueError(
            f"must give every parameter of {criterion.benchmark} but the variant of a pair "
            f"({', '.join(n for n in param_names if n != VARIANT or not criterion.pair)})"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(extra)}" if extra else "")
        )
    return [tuple(zip(param_names, combo)) for combo in itertools.product(*(given[n] for n in param_names))]


def _slug(text):
    # GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens.
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(headings: Sequence[str]) -> list[str]:
    """GitHub's anchors of a document's headings, in order (repeats get ``-1``, ``-2`` ...)."""
    seen, out = {}, []
    for heading in headings:
        base = _slug(heading)
        n = seen.get(base, 0)
        out.append(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


@dataclasses.dataclass(frozen=True)
class TableRef:
    """Where a table is rendered: its section and position, for links.

    Attributes:
        section: the section's index (1-based) in the spec.
        heading: the section's heading.
        machine: the machine of the section's run.
        index: the table's position within the section's tables.
        benchmark: the table's full benchmark name.
        fixed: the table's fixed (parameter, value) pairs.
        before: the table's BEFORE variant.
        after: the table's AFTER variant.
        title: the table's heading text.
    """

    section: int
    heading: str
    machine: str
    index: int
    benchmark: str
    fixed: tuple[tuple[str, str], ...]
    before: str
    after: str
    title: str


def find_table(criterion: Criterion, benchmark: str, machine: str, params, tables: Sequence[TableRef]):
    """The table a cell of `criterion` is read from: same benchmark, machine and fixed
    parameters; the named section first, then the table of the same pair, then the first."""
    cell = dict(params)
    fits = [
        t
        for t in tables
        if t.benchmark == benchmark and t.machine == machine and all(cell.get(k) == v for k, v in t.fixed)
    ]
    for test in (
        lambda t: criterion.section is not None and t.heading == criterion.section,
        lambda t: criterion.pair and t.before == criterion.before and t.after in criterion.after,
        lambda t: True,
    ):
        found = [t for t in fits if test(t)]
        if found:
            return found[0]
    return None


def judge(
    criterion: Criterion,
    run: RecordedRun | None,
    machine: str,
    factor: float = comparisons.DEFAULT_FACTOR,
    tables: Sequence[TableRef] = (),
) -> Judgement:
    """Judge one claim or goal on a recorded run.

    Arguments:
        criterion: the claim or goal.
        run: the recorded run of its machine and commit, or ``None`` when that machine has no
            recorded results (every cell then reads "not recorded yet").
        machine: the machine's name.
        factor: the report's factor (the pair's comparison is the tables' own).
        tables: the report's tables, for links.

    Returns:
        The `Judgement`.

    Raises:
        ReportError: when the criterion's parameters do not fit its benchmark.
    """
    c = criterion
    if run is None:
        return Judgement(c, UNDECIDED, _placeholder_cells(c), NOT_RECORDED_YET, f"machine {machine}")
    where = f"machine {machine}, commit {run.commit[:8]}"
    if _class_only(run, c.benchmark):
        return Judgement(c, UNDECIDED, _placeholder_cells(c, NOT_RECORDED), NOT_RECORDED, where)
    try:
        found = [name for name, _ in _cells.select(run, [c.benchmark])]
    except ReportError as err:
        raise ReportError(f"{c.kind} {c.name!r}", err.message) from None
    if len(found) != 1:
        raise ReportError(f"{c.kind} {c.name!r}", f"{c.benchmark!r} names {len(found)} benchmarks; name one")
    grid = _cells.grid(run, found[0])
    try:
        combos = expand(c, grid.param_names)
    except ValueError as err:
        raise ReportError(f"{c.kind} {c.name!r}", str(err)) from None
    rate = comparisons.higher_is_better(grid.unit)
    out = []
    for params in combos:
        cell = grid.cells.get(tuple(v for _, v in params))
        table = find_table(c, grid.benchmark, machine, params, tables)
        ref = (table.section, table.index) if table else None
        before = cell
        if c.before is not None:
            before = grid.cells.get(tuple(c.before if k == VARIANT else v for k, v in params))
        if before is None or cell is None:
            out.append(CellVerdict(params, None, None, None, UNDECIDED, NOT_RECORDED, ref))
            continue
        bad = [x for x in (before, cell) if not x.ok]
        if bad:
            out.append(CellVerdict(params, None, None, None, UNDECIDED, bad[0].status, ref))
            continue
        if c.pair:
            comp = comparisons.compare(before, cell, factor, rate)
            interval = comp.speedup_interval
            if interval is None:
                out.append(CellVerdict(params, comp.speedup, None, None, UNDECIDED, "n=1, not tested", ref))
                continue
            out.append(CellVerdict(params, comp.speedup, *interval, c.line.decide(*interval), "", ref))
        else:
            figure, low, high, why = value_interval(cell)
            state = c.line.decide(low, high) if not why and low is not None and high is not None else UNDECIDED
            out.append(CellVerdict(params, figure, low, high, state, why, ref))
    state = combine(out, c.best_of)
    why = NOT_RECORDED if state == UNDECIDED and any(cv.why == NOT_RECORDED for cv in out) else ""
    return Judgement(c, state, tuple(out), why, where)


def _placeholder_cells(c, why=NOT_RECORDED_YET):
    given = dict(c.where)
    if c.pair:
        given[VARIANT] = c.after
    names = list(given)
    return tuple(
        CellVerdict(tuple(zip(names, combo)), None, None, None, UNDECIDED, why)
        for combo in itertools.product(*(given[n] for n in names))
    )


def _figure(value, pair):
    if value is None:
        return "-"
    if pair and abs(value) >= 0.01:
        return f"{value:.2f}x"
    return _number(value) + ("x" if pair else "")


def _number(value):
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits = max(0, 3 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def _interval(cv, pair):
    if cv.low is None:
        return ""
    if cv.low == cv.high:
        return " (exact)"
    if pair and min(abs(cv.low), abs(cv.high)) >= 0.01:
        return f" ({cv.low:.2f}-{cv.high:.2f})"
    return f" ({_number(cv.low)}-{_number(cv.high)})"


def render(
    judgements: Sequence[Judgement], links: Mapping[tuple[int, int], tuple[str, str]], spec_path: str
) -> list[str]:
    """The Verdicts section as Markdown lines (``## Verdicts`` and its two lists).

    Arguments:
        judgements: every claim's and goal's judgement, claims first.
        links: (section, table) -> (link text, anchor) of the rendered tables.
        spec_path: the spec, named as the source of the claims and goals.
    """
    lines = ["## Verdicts", ""]
    lines += [
        f"Every claim and goal below is data in `{spec_path}` (its `[[claims]]` and `[[goals]]`), "
        "judged here from the recorded cells it names by the tables' own rule: a pair by its "
        "Speedup (as in the tables: the geometric mean of paired per-process ratios, or Welch's "
        "for cells that share no processes) with its interval, a single figure by the geometric "
        "mean of its per-process values with the paired rule's 95% interval (a figure recorded "
        "once, such as an error or a chunk length, is exact). *reproduced* / *met*: the whole "
        "interval on the line's side; *refuted* / *missed*: wholly on the other side; "
        "*undecided*: the interval straddles the line (a point estimate on the right side is not "
        "a verdict), or a cell holds no value. Over several cells every cell must meet the line: "
        'met if every cell is met, missed if any is missed, else undecided; "the best variant" '
        "counts a group of cells as met when any of its variants is, missed when all are.",
    ]
    for kind, title in (("claim", "Claims of the original write-up"), ("goal", "Goals")):
        chosen = [j for j in judgements if j.criterion.kind == kind]
        if not chosen:
            continue
        lines += ["", f"### {title}", ""]
        for i, j in enumerate(chosen, 1):
            lines += _render_one(i, j, links)
    return lines


def _render_one(i, j, links):
    c = j.criterion
    pad = " " * (len(str(i)) + 2)
    where = f" (machine {c.machine})" if c.machine else ""
    out = [f"{i}. **{j.word}**: {c.name}{where}"]
    out.append(("- The write-up: " if c.kind == "claim" else "- Aim: ") + c.text)
    out.append(f"- Judged: {c.describe()}.")
    varying = {k for k, v in c.where if len(v) > 1}
    if c.pair and len(c.after) > 1:
        varying.add(VARIANT)
    parts = []
    whys = {cv.why for cv in j.cells}
    if all(cv.figure is None for cv in j.cells) and len(whys) == 1:
        parts = [f"all {len(j.cells)} {whys.pop()}" if len(j.cells) > 1 else whys.pop()]
    for cv in j.cells if not parts else ():
        label = ", ".join(f"{k}={v}" for k, v in cv.params if k in varying)
        if cv.figure is None and cv.why:
            text = cv.why
        else:
            text = _figure(cv.figure, c.pair) + _interval(cv, c.pair)
            text += f" {cv.state}" if not cv.why else f" ({cv.why})"
        parts.append(f"{label}: {text}" if label else text)
    out.append("- Cells: " + "; ".join(parts) + ".")
    refs = list(dict.fromkeys(cv.table for cv in j.cells if cv.table is not None))
    shown = [f"[{links[r][0]}](#{links[r][1]})" for r in refs if r in links]
    if shown:
        out.append("- From: " + ", ".join(shown) + ".")
    elif j.why == NOT_RECORDED_YET:
        out.append(f"- From: no run of machine {c.machine} is recorded in the results yet.")
    return [out[0]] + [pad + line for line in out[1:]]


def recorded(results_dir: str, machine: str) -> bool:
    """Whether `machine` has a results folder in `results_dir`."""
    return os.path.isdir(os.path.join(results_dir, machine))


def unrecorded(run: RecordedRun | None, patterns: Sequence[str]) -> list[str]:
    """The benchmark patterns of recorded classes that name nothing recorded in `run` (a method
    added or renamed since the run; all of them without a run). A pattern whose class the run
    has not recorded either is left for `perflab.report.cells.select` to refuse (a typo)."""
    if run is None:
        return list(patterns)
    return [p for p in patterns if _class_only(run, p)]


def _class_only(run, pattern):
    # True when the pattern names nothing recorded but its class (all but the last dotted part)
    # is recorded.
    try:
        _cells.select(run, [pattern])
        return False
    except ReportError:
        pass
    owner = pattern.rsplit(".", 1)[0]
    if owner == pattern:
        return False
    try:
        _cells.select(run, [owner])
    except ReportError:
        return False
    return True


def table_refs(sections, runs, reports) -> list[TableRef]:
    """Every rendered table of a study, for links (sections, their runs and reports in order)."""
    refs = []
    for i, (section, run, report) in enumerate(zip(sections, runs, reports), 1):
        if report is None:
            continue
        for k, t in enumerate(report.tables):
            refs.append(TableRef(i, section.heading, run.machine, k, t.benchmark, t.fixed, t.before, t.after, t.title))
    return refs


def missing_lines(section, run: RecordedRun | None, patterns: Sequence[str]) -> list[str]:
    """The lines a section shows for what it cannot show: its machine's run not recorded yet,
    or benchmarks its run has not recorded."""
    if section.benchmarks and run is None:
        return [
            f"- **Not recorded yet:** no run of machine `{section.machine}` is in the results; "
            "this section's tables appear once one is recorded.",
            "",
        ]
    if patterns and run is not None:
        named = ", ".join(f"`{p}`" for p in patterns)
        return [
            f"- **Not recorded:** {named} (not in the recorded run: machine {run.machine}, commit {run.commit[:8]}).",
            "",
        ]
    return []


def check_lines(study) -> list[str]:
    """What `report --check` says of a study's claims, goals and sections beyond drift: cells or
    benchmarks they name that a recorded machine has not recorded. A machine with no results
    folder is not recorded yet: the report says so, and the check does not fail on it."""
    lines = []
    for section, run, missing in zip(study.spec.sections, study.runs[1:], study.missing):
        if missing and run is not None:
            lines.append(
                f"not recorded: section {section.heading!r} names {', '.join(missing)}, not in "
                f"the recorded run (machine {run.machine}, commit {run.commit[:8]})"
            )
    for j in study.judgements:
        lines += [f"not recorded: {p}" for p in j.problems()]
    return lines


def render_section(study, head: Sequence[str], body: Sequence[str]) -> list[str]:
    """The Verdicts section of a study report, with links to the tables rendered in `body`.

    Arguments:
        study: the `perflab.report.tables.StudyReport`, judged.
        head: the report's lines above the Verdicts section.
        body: its lines below (the sections), whose headings the links point at.
    """
    kinds = {j.criterion.kind for j in study.judgements}
    ours = ["Verdicts"] + [t for k, t in _TITLES if k in kinds]
    heads = [line for line in head if line.startswith("#")]
    below = [(n, line) for n, line in enumerate(body) if line.startswith("#")]
    names = [h.lstrip("#").strip() for h in heads] + ours + [line.lstrip("#").strip() for _, line in below]
    slugs = anchors(names)[len(heads) + len(ours) :]
    links = {}
    section = 0
    index = 0
    for (_, line), slug in zip(below, slugs):
        if line.startswith("## "):
            section += 1
            index = 0
        elif line.startswith("### ") and section:
            links[section, index] = (f"section {section}, {line[4:].strip()}", slug)
            index += 1
    return render(study.judgements, links, study.spec.path)


_TITLES = (("claim", "Claims of the original write-up"), ("goal", "Goals"))
