"""The process environment every measurement and test runs in, set before numerical libraries load.

Imported first by `benchmarks/__init__.py` (asv imports the package before any bench module) and
by `tests/conftest.py`, so numpy, BLAS, torch and XLA all start with the same settings.
"""

import os
import sys

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Host CPU devices for the 2/4/8-way meshes of the sharding study. XLA reads the flag when JAX's
# backend starts (lazily, on first device use), so it must be set before any array exists.
HOST_DEVICES = 8
_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def apply() -> None:
    """Pin the OpenMP/OpenBLAS/MKL pools to one thread and ask XLA for `HOST_DEVICES` CPU devices.

    Variables the user already set are kept, so a run can try other settings with `--env`.
    """
    for var in THREAD_VARIABLES:
        os.environ.setdefault(var, "1")
    if "numpy" in sys.modules:
        # Something loaded BLAS before us (under pytest, a plugin imports numpy before
        # conftest.py): its pool has read the variables already, so pin the live pools too.
        try:
            import threadpoolctl
        except ImportError:  # not in asv's environments, where nothing loads numpy first
            threadpoolctl = None
        if threadpoolctl is not None:
            threadpoolctl.threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"]))
    if _DEVICES_FLAG not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_DEVICES_FLAG}={HOST_DEVICES}").strip()


apply()
