"""The MeanFlow loss and the denoisers in JAX/equinox."""

from ._loss import fm_loss as fm_loss
from ._loss import jvp as jvp
from ._loss import meanflow_loss as meanflow_loss
from ._loss import sample as sample
from ._loss import target as target
from ._models import DiT as DiT
from ._models import UNet as UNet
from ._models import make_model as make_model
