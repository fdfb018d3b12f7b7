import os
import pathlib
import sys

# The thread pools and host devices are set in one place, shared with the asv suite, before
# numpy, BLAS or JAX load (so the import order below is deliberate).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
# isort: off
import benchmarks._env  # noqa: F401
import jax
import numpy as np
import pytest

# isort: on

# The benchmark modules (imported while collecting test_benchmarks.py) default equinox's runtime
# checks to NaN-on-error, as their timings were specified; equinox reads the variable once, at
# import, so without this the whole session would run in that mode and the tests that expect
# an error would see NaN. The NaN mode is tested in subprocesses where it is the subject.
os.environ.setdefault("EQX_ON_ERROR", "raise")

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def key():
    return jax.random.key(1234)
