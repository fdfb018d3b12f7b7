# Before any bench module (and so numpy, BLAS, JAX or torch) is imported: see _env.py.
from . import _env  # noqa: F401
