"""The XLA FFI kernels' shared library, loaded with ctypes.

``kernels/*.cc`` (LAPACK access, solvers, batching and thread scheduling, the heat equation) are
built by setup.py into one plain shared library, ``libperflab_ffi.so``, with no Python C-API:
its handlers are C symbols that `_ffi.py` wraps with `jax.ffi.pycapsule` and registers with
`jax.ffi.register_ffi_target`, as JAX's FFI guide does.
"""

from __future__ import annotations

import ctypes
import os

import jax

LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libperflab_ffi.so")

try:
    _lib = ctypes.CDLL(LIBRARY)
except OSError as err:
    raise ImportError(
        f"perflab's XLA FFI kernels are not built ({LIBRARY}: {err}); build them with "
        "`python setup.py build_ext --inplace` or `pip install -e .`"
    ) from err

_lib.perflab_set_lapack.argtypes = [ctypes.c_char, ctypes.POINTER(ctypes.c_void_p)]
_lib.perflab_set_lapack.restype = ctypes.c_int
_lib.perflab_lapack_ready.restype = ctypes.c_int
_lib.perflab_chunked_calls.restype = ctypes.c_int64
_lib.perflab_grouped_systems.restype = ctypes.c_int64

_SOLVERS = {"lu": "Lu", "cholesky": "Cholesky", "tridiagonal": "Tridiagonal"}
_KINDS = {
    "solve": "Solve",
    "jvp": "Jvp",
    "jvp_vector": "JvpVector",
    "factor_solve": "FactorSolve",
    "tangent": "Tangent",
    "tangent_vector": "TangentVector",
    "cotangent": "Cotangent",
    "cotangent_vector": "CotangentVector",
}
HANDLERS: dict[str, str] = {
    **{f"perflab_{s}_{k}": f"{sym}{ksym}" for s, sym in _SOLVERS.items() for k, ksym in _KINDS.items()},
    "perflab_thomas_substitute": "ThomasSubstitute",
    "perflab_heat_steps": "HeatSteps",
    "perflab_heat_adjoint": "HeatAdjoint",
}
"""FFI target name -> the library's handler symbol."""

# The order perflab_set_lapack takes the pointers in.
LAPACK = ("getrf", "getrs", "potrf", "potrs", "gttrf", "gttrs", "gemv", "trsv")


def targets():
    """FFI target name -> PyCapsule of its handler (`jax.ffi.pycapsule`).

    Returns:
        dict.
    """
    return {name: jax.ffi.pycapsule(getattr(_lib, symbol)) for name, symbol in HANDLERS.items()}


def _capsule_pointer(capsule):
    # A scipy cython_lapack/cython_blas capsule's pointer (the capsule's name is its C signature).
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.argtypes, get_name.restype = [ctypes.py_object], ctypes.c_char_p
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.argtypes, get_pointer.restype = [ctypes.py_object, ctypes.c_char_p], ctypes.c_void_p
    return get_pointer(capsule, get_name(capsule))


def set_lapack(capsules):
    """Hand the LAPACK/BLAS function pointers to the library.

    Arguments:
        capsules: ``"[ds]<name>"`` -> scipy cython_lapack/cython_blas PyCapsule, for every name
            of `LAPACK`.

    Returns:
        None.
    """
    for prefix in "ds":
        pointers = (ctypes.c_void_p * len(LAPACK))(*(_capsule_pointer(capsules[prefix + n]) for n in LAPACK))
        if _lib.perflab_set_lapack(prefix.encode(), pointers) != 0:
            raise RuntimeError(f"perflab ffi: LAPACK pointers for {prefix!r} refused (a null pointer)")


def lapack_ready():
    """True once `set_lapack` has been called."""
    return bool(_lib.perflab_lapack_ready())


def chunked_calls():
    """How many calls so far split their batch over the thread pool (for tests)."""
    return int(_lib.perflab_chunked_calls())


def grouped_systems():
    """How many tridiagonal JVPs so far were solved in interleaved groups (for tests)."""
    return int(_lib.perflab_grouped_systems())
