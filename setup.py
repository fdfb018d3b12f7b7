"""Build the Cython extensions: one Extension per .pyx, against numpy's headers."""

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

NATIVE = [] if os.environ.get("PERFLAB_PORTABLE") else ["-march=native"]

extensions = [
    Extension(
        "perflab.linear_solve._thomas",
        ["src/perflab/linear_solve/_thomas.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
    Extension(
        "perflab.delta_rule._delta_rule",
        ["src/perflab/delta_rule/_delta_rule.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # OpenMP for the prange over heads; the kernels are built for the CPU that builds them
        # (asv builds on the machine it times), so the inner loops get its vector width and FMA;
        # reassociation lets the compiler vectorise the kernels' dot products.
        extra_compile_args=["-O3", "-fopenmp", "-fassociative-math", "-fno-signed-zeros",
                            "-fno-trapping-math", "--param=vect-max-version-for-alias-checks=64", *NATIVE],
        extra_link_args=["-fopenmp"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
)
