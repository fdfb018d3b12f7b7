"""What does not drift, recorded beside every timing: compiled cost, program fingerprint, compile
time and numerical error of each callable an interleaved class measures.

The deterministic ones are computed in the first measuring process of a setup cache (they are
properties of the program, not of the process), compile times in every process, all before the
timed rounds start. JAX callables made by `common.jit_compile` carry their
compiled executable: XLA's own cost analysis and the optimised HLO are read from it. Callables
that run torch ops are run once under `torch.utils.flop_counter.FlopCounterMode` and a dispatch
recorder whose op sequence is the fingerprint. Other callables (Cython, numpy) have no cost or
fingerprint: those cells read n/a.

Compile time: XLA's lower-and-compile time for `jit_compile` callables; for `torch.compile`
callables (marked ``torch_compiled``) and CUDA-graph captures, the time their first call took
beyond a steady call (`common.first_call_compile`), measured when the variant is built and
attached as ``compile_seconds``. Eager torch, Cython and numpy callables compile nothing: n/a.

Numerical error: a class's `reference(operation, *head)` gives, for a cell, either

- the expected output (arrays, tensors, or a tuple/list/dict of them), compared by
  `relative_error`, or
- an `ErrorOf`: a function of the callable's output that returns the error itself, for outputs
  that do not compare element by element (a Monte Carlo ensemble against analytic moments, a
  model pytree whose leaves are compared one by one) or a reference that applies to some of a
  cell's variants only (it returns ``None`` for the others: n/a), or
- ``None``: the class has no reference for that operation (n/a); so does a `reference` that
  skips (raises NotImplementedError: a commit whose study lacks what the reference needs).
"""

from __future__ import annotations

import hashlib
import math
import re
import sys

# metric -> asv unit of its track method
METRICS = {
    "flops": "flops",
    "bytes": "bytes accessed",
    "memory": "bytes",
    "fingerprint": "program hash",
    "compile": "seconds to compile",
    "error": "relative error",
}
# Figures measured again in every process (a sample per asv round); the others are properties
# of the program, the same in every process.
SAMPLED = {"compile"}


class ErrorOf:
    """A reference given as a function of the output: ``ErrorOf(fn)(result)`` is the error.

    Arguments:
        fn: ``result -> float | None``; None where the reference does not apply to this
            output (that cell's error reads n/a).
        description: what `fn` measures, for readers of the class that returns it.
    """

    def __init__(self, fn, description: str = ""):
        self.fn, self.description = fn, description

    def __call__(self, result):
        return self.fn(result)

    def __repr__(self):
        return f"ErrorOf({self.description or self.fn!r})"


def error_of(result, expected):
    """The recorded error of `result` against what a class's `reference` returned.

    Arguments:
        result: the callable's output.
        expected: an `ErrorOf`, the expected output, or None.

    Returns:
        The error (a float), or None where there is no reference.
    """
    if expected is None:
        return None
    if isinstance(expected, ErrorOf):
        return expected(result)
    return relative_error(result, expected)


_METADATA = re.compile(r",? ?metadata=\{[^}]*\}")


def fingerprint_value(digest: str) -> float:
    """A program's hash as a float that asv compares like any figure, without missing a change.

    asv judges a value by its ratio to the previous one, so a plain hash would pass as unchanged
    whenever two different programs' hashes happen to lie within the factor of each other (about
    5% of changes at 1.05). Here 8 bits of the hash choose a power of four (4**-128 to 4**127)
    and 40 more a mantissa in [1, 2): two programs whose powers differ are at least 2x apart,
    and only programs that share the power (1 in 256) can land within the factor. The value is
    exact in a float64, so equal values mean equal hashes.

    Arguments:
        digest: a hex digest of at least 12 digits.

    Returns:
        The fingerprint value.
    """
    bits = int(digest[:12], 16)
    power, fraction = (bits >> 40) - 128, bits & ((1 << 40) - 1)
    return 4.0**power * (1 + fraction / 2**40)


def hlo_fingerprint(text: str) -> float:
    """The fingerprint of optimised HLO text, blind to names of source files and functions.

    The module name and the debug sections (file names, stack frames, op metadata) carry where
    a program was written, not what it computes; two variants that XLA compiles to the same
    program get the same fingerprint (see `fingerprint_value`).

    Arguments:
        text: `Compiled.as_text()`.

    Returns:
        The fingerprint.
    """
    lines = [ln for ln in text.splitlines() if ln.startswith(("%", "ENTRY", " ", "}"))]
    body = _METADATA.sub("", "\n".join(lines))
    return fingerprint_value(hashlib.sha256(body.encode()).hexdigest())


def describe(call, reference) -> dict[str, float]:
    """The companions of one callable.

    Arguments:
        call: the warm, blocking callable (returns its output).
        reference: zero-argument callable giving the study's reference for this cell: the
            expected output, an `ErrorOf`, or ``None`` (see the module's doc).

    Returns:
        metric -> value, for the metrics this callable has.
    """
    out = {}

    def put(metric, value):
        if value is not None and math.isfinite(value):
            out[metric] = float(value)

    compiled = getattr(call, "compiled", None)
    if compiled is not None:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else (cost or {})
        put("flops", cost.get("flops"))
        put("bytes", cost.get("bytes accessed"))
        put("memory", program_memory(compiled))
        put("fingerprint", hlo_fingerprint(compiled.as_text()))
        result = call()
    elif getattr(call, "torch_compiled", False):
        # torch.compile'd code refuses to run under a dispatch mode (and is poisoned for later
        # calls by trying), so it has no op-level fingerprint or flop count.
        result = call()
    elif "torch" in sys.modules:
        result, flops, ops = _torch_trace(call)
        if ops:
            put("flops", flops)
            put("fingerprint", fingerprint_value(hashlib.sha256("\n".join(ops).encode()).hexdigest()))
    else:
        result = call()
    out.update(compile_time(call))
    try:
        expected = reference()
    except NotImplementedError:  # `skip`: no reference in this commit/environment (n/a)
        expected = None
    put("error", error_of(result, expected))
    return out


def compile_time(call) -> dict[str, float]:
    """``{"compile": seconds}`` where building `call` compiled something (see the module's doc).

    Arguments:
        call: a callable built by the suite.

    Returns:
        The compile time, or an empty dict (eager torch, Cython and numpy compile nothing).
    """
    seconds = getattr(call, "compile_seconds", None)
    return {"compile": float(seconds)} if seconds is not None and math.isfinite(seconds) else {}


def program_memory(compiled) -> float | None:
    """Bytes an XLA executable holds while it runs: its arguments, outputs and temporaries.

    XLA's `memory_analysis()` of the compiled program: deterministic for a program and a
    backend, unlike the process's peak resident memory, which holds the compiler too.

    Arguments:
        compiled: a `jax.stages.Compiled`.

    Returns:
        The bytes, or None where the backend gives no analysis.
    """
    try:
        stats = compiled.memory_analysis()
    except (AttributeError, NotImplementedError):
        return None
    if stats is None:
        return None
    parts = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    total = sum(getattr(stats, part, 0) for part in parts)
    return total - getattr(stats, "alias_size_in_bytes", 0)


def _torch_trace(call):
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    ops = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            ops.append(str(func))
            return func(*args, **(kwargs or {}))

    counter = FlopCounterMode(display=False)
    with counter, Recorder():
        result = call()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return result, counter.get_total_flops(), ops


def relative_error(result, expected) -> float:
    """max |result - expected| / max |expected| over every array of the two (same structure).

    Arguments:
        result: arrays, tensors or a tuple/list/dict of them.
        expected: the reference, same structure.

    Returns:
        The relative error (0 for an exact match).
    """
    import numpy as np

    got, want = _leaves(result), _leaves(expected)
    if len(got) != len(want):
        raise ValueError(f"result has {len(got)} arrays, the reference {len(want)}")
    num = max((float(np.max(np.abs(g - w))) for g, w in zip(got, want) if w.size), default=0.0)
    den = max((float(np.max(np.abs(w))) for w in want if w.size), default=0.0)
    return num / den if den else num


def _leaves(tree):
    import jax
    import numpy as np

    leaves = jax.tree_util.tree_leaves(tree)
    return [np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64) for x in leaves]
