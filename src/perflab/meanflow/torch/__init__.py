"""The MeanFlow loss and the denoisers in PyTorch (needs the ``torch`` extra)."""

from ._layers import GROUP_NORMS as GROUP_NORMS
from ._layers import GroupNorm as GroupNorm
from ._layers import attention as attention
from ._layers import implementation as implementation
from ._loss import MeanFlowLoss as MeanFlowLoss
from ._loss import fm_loss as fm_loss
from ._models import DiT as DiT
from ._models import UNet as UNet
from ._models import make_model as make_model
from ._stacked import stacked_jvp as stacked_jvp
