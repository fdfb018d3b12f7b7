"""perflab: optimisation studies for numerical JAX and PyTorch code, timed across commits with asv.

Each study is a subpackage holding its baseline and its optimised variants side by side:

- `perflab.linear_solve`: batching the solves inside a linear solve's JVP.
- `perflab.sde`: SDE ensembles with the noise pre-generated or drawn inside the scan.
- `perflab.delta_rule`: the delta-rule recurrence in JAX, PyTorch and Cython.
- `perflab.tree_transforms`: batched `eqx.tree_at` for tensor-parallel sharding rules.
- `perflab.meanflow`: the MeanFlow loss and the cost of its JVP, in PyTorch and JAX.

`perflab.calibrate` measures the suite's noise; `perflab.report` renders the reports in
`docs/reports/` from recorded asv results.
"""

from . import variants as variants

__version__ = "0.1.0"
