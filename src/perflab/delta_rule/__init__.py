"""Study 3: the delta-rule recurrence in JAX, PyTorch and Cython, checked against one reference."""

from ._api import DELTA_RULE as DELTA_RULE
from ._api import available_threads as available_threads
from ._api import delta_rule as delta_rule
from ._api import recurrent_flops as recurrent_flops
from ._reference import reference_delta_rule as reference_delta_rule
