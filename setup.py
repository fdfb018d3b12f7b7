"""Build the extensions: one Extension per .pyx, against numpy's headers, and the C++ XLA FFI
kernels of linear_solve's ffi variant, against the FFI headers jaxlib ships."""

import importlib.util
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE = [] if os.environ.get("PERFLAB_PORTABLE") else ["-march=native"]


def _xla_ffi_include():
    # jaxlib ships xla/ffi/api/*.h in jaxlib/include (what jax.ffi.include_dir() returns); found
    # without importing jax, which would start its backend inside the build.
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("building perflab needs jaxlib installed: its XLA FFI headers compile the ffi kernels")
    include = os.path.join(list(spec.submodule_search_locations)[0], "include")
    if not os.path.exists(os.path.join(include, "xla", "ffi", "api", "ffi.h")):
        raise RuntimeError(f"jaxlib at {include} has no xla/ffi/api/ffi.h")
    return include


def _write_build_info():
    # The commit a wheel is built from, for perflab.provenance (an installed wheel has no git
    # checkout to ask). An editable install asks its checkout instead, so nothing stale is read.
    import subprocess

    def git(*args):
        out = subprocess.run(["git", *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    path = os.path.join("src", "perflab", "_build_info.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"# Written by setup.py when the package was built.\nCOMMIT = {commit!r}\nDIRTY = {dirty!r}\n")


_write_build_info()

FFI_LIBRARY = "perflab.linear_solve.libperflab_ffi"
FFI_SOURCES = "src/perflab/linear_solve/kernels"


class BuildExt(build_ext):
    # The FFI library is a plain shared library: named lib*.so without Python's extension
    # suffix (so no import machinery mistakes it for a module), and no PyInit_ symbol exported.
    def get_ext_filename(self, fullname):
        if fullname.split(".")[-1] == FFI_LIBRARY.split(".")[-1]:
            return os.path.join(*fullname.split(".")[:-1], "libperflab_ffi.so")
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext):
        return [] if ext.name == FFI_LIBRARY else super().get_export_symbols(ext)


extensions = [
    Extension(
        "perflab.linear_solve._thomas",
        ["src/perflab/linear_solve/_thomas.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
    # XLA FFI handlers (C++17) as a plain shared library (no Python C-API), loaded with ctypes by
    # perflab.linear_solve._kernels; LAPACK/BLAS reach it as scipy's cython_lapack pointers at
    # import, so nothing is linked here.
    Extension(
        FFI_LIBRARY,
        [f"{FFI_SOURCES}/{name}.cc" for name in ("lapack", "batching", "solve", "heat")],
        include_dirs=[_xla_ffi_include(), FFI_SOURCES],
        depends=[f"{FFI_SOURCES}/{name}.h" for name in ("lapack", "batching", "solvers")],
        language="c++",
        extra_compile_args=["-O3", "-std=c++17", "-fvisibility=hidden"],
    ),
    Extension(
        "perflab.delta_rule._delta_rule",
        ["src/perflab/delta_rule/_delta_rule.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # OpenMP for the prange over heads; the kernels are built for the CPU that builds them
        # (asv builds on the machine it times), so the inner loops get its vector width and FMA;
        # reassociation lets the compiler vectorise the kernels' dot products.
        extra_compile_args=[
            "-O3",
            "-fopenmp",
            "-fassociative-math",
            "-fno-signed-zeros",
            "-fno-trapping-math",
            "--param=vect-max-version-for-alias-checks=64",
            *NATIVE,
        ],
        extra_link_args=["-fopenmp"],
    ),
]

setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
