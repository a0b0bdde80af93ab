"""Build the one C extension, llmcli._kernels: llmcli/_kernels.pyx (which includes the
*.pxi wrappers) compiled together with every csrc/*.c file.

The AVX2/FMA code paths are compiled with per-function target attributes and chosen at
run time, so the build is portable (no -march=native): one wheel runs on any x86-64 and
on aarch64. Environment switches:
  LLMCLI_SANITIZE=1   build with AddressSanitizer + UndefinedBehaviorSanitizer
  LLMCLI_NO_OPENMP=1  build without OpenMP (single-threaded kernels)
"""
import glob
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# -g0: Python's own CFLAGS carry -g, which made the installed .so 3.8 MB instead of 0.6
compile_args = ["-O3", "-g0", "-std=gnu11", "-fno-math-errno", "-Wno-unused-function",
                "-Wno-unreachable-code", "-Wno-unused-variable"]
link_args = []
if not os.environ.get("LLMCLI_NO_OPENMP"):
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
if os.environ.get("LLMCLI_SANITIZE"):
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    compile_args = [a for a in compile_args if a != "-O3"] + ["-O1"] + flags
    link_args += flags

sources = ["llmcli/_kernels.pyx"] + sorted(glob.glob("csrc/*.c"))
extension = Extension(
    "llmcli._kernels",
    sources=sources,
    include_dirs=["csrc", numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
    depends=sorted(glob.glob("csrc/*.h") + glob.glob("llmcli/*.pxi")),
)

setup(
    ext_modules=cythonize(
        [extension],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
