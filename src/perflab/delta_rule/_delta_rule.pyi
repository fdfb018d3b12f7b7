# Type stub for the compiled extension built from _delta_rule.pyx (float32 or float64 arrays).
import numpy as np
import numpy.typing as npt

def recurrent(
    q: npt.NDArray[np.floating],
    k: npt.NDArray[np.floating],
    v: npt.NDArray[np.floating],
    beta: npt.NDArray[np.floating],
    o: npt.NDArray[np.floating],
    state: npt.NDArray[np.floating],
    scale: float,
    num_threads: int,
) -> None: ...
def chunked(
    q: npt.NDArray[np.floating],
    k: npt.NDArray[np.floating],
    v: npt.NDArray[np.floating],
    beta: npt.NDArray[np.floating],
    o: npt.NDArray[np.floating],
    state: npt.NDArray[np.floating],
    scale: float,
    chunk_size: int,
    num_threads: int,
) -> None: ...
