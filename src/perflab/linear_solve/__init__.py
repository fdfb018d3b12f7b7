"""Study 1: batching the solves inside a linear solve's JVP (tridiagonal, LU, Cholesky)."""

from ._checks import SOLVERS as SOLVERS
from ._cython import cython_implicit_steps_jvp as cython_implicit_steps_jvp
from ._cython import cython_solve as cython_solve
from ._cython import cython_solve_jvp as cython_solve_jvp
from ._heat import HEAT_JVP as HEAT_JVP
from ._heat import heat_jvp as heat_jvp
from ._heat import heat_operator as heat_operator
from ._heat import heat_solve as heat_solve
from ._solve import JAX_VARIANTS as JAX_VARIANTS
from ._solve import SOLVE_JVP as SOLVE_JVP
from ._solve import linear_solve as linear_solve
from ._solve import linear_solve_jvp as linear_solve_jvp
