"""perflab: optimisation studies for numerical JAX and PyTorch code, timed across commits with asv.

Each study is a subpackage holding its baseline and its optimised variants side by side:

- `perflab.linear_solve`: batching the solves inside a linear solve's JVP.
- `perflab.sde`: SDE ensembles with the noise pre-generated or drawn inside the scan.
"""

from . import variants as variants

__version__ = "0.1.0"
