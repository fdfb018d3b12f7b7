"""Study 2: SDE ensembles (Euler-Maruyama) with the noise pre-generated or drawn inside the scan."""

from ._ensemble import CHUNK_NORMALS as CHUNK_NORMALS
from ._ensemble import IN_SCAN_CHUNKED as IN_SCAN_CHUNKED
from ._ensemble import MIN_CHUNKS as MIN_CHUNKS
from ._ensemble import NOISE_VARIANTS as NOISE_VARIANTS
from ._ensemble import OUTPUTS as OUTPUTS
from ._ensemble import SIMULATE as SIMULATE
from ._ensemble import WHOLE_DRAW_NORMALS as WHOLE_DRAW_NORMALS
from ._ensemble import auto_chunk as auto_chunk
from ._ensemble import ensemble_noise as ensemble_noise
from ._ensemble import noise_chunk as noise_chunk
from ._ensemble import scan_chunk as scan_chunk
from ._ensemble import simulate as simulate
from ._ou import ou_diffusion as ou_diffusion
from ._ou import ou_drift as ou_drift
from ._ou import ou_moments as ou_moments
from ._ou import ou_params as ou_params
from ._user import make_sde as make_sde
from ._user import make_sde_auto as make_sde_auto
