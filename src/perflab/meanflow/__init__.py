"""Study 5: the MeanFlow loss and the cost of its JVP, in PyTorch (`perflab.meanflow.torch`)
and JAX/equinox (`perflab.meanflow.jax`).

This package imports neither framework's half: `perflab.meanflow.torch` needs the ``torch``
extra.
"""

from ._config import DiTConfig as DiTConfig
from ._config import UNetConfig as UNetConfig
from ._config import model_config as model_config
from ._registry import LOSS as LOSS
from ._registry import MODELS as MODELS
from ._registry import SIZES as SIZES
from ._registry import TORCH_VARIANTS as TORCH_VARIANTS
