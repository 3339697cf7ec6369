"""Build the optional C extension globalnet._gnetcrypto.

Metadata lives in pyproject.toml; this file only adds the extension. The
extension is optional: when it cannot be compiled or linked (no compiler,
no OpenSSL headers or libcrypto), the install still succeeds and
globalnet.crypto uses its pure-Python backend, which has the same API.
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

FALLBACK = "globalnet: C extension not built ({}); using the pure-Python crypto backend"

# Failures that mean "no usable toolchain", as opposed to a bug in setup.
BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError)


def _warn(reason: object) -> None:
    line = "*" * 72
    print(f"\n{line}\n{FALLBACK.format(reason)}\n{line}\n", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed compile or link into a warning.

    A failed extension is dropped from self.extensions, so that neither
    --inplace nor an editable install tries to copy a file that was never
    built.
    """

    def run(self) -> None:
        try:
            super().run()
        except BUILD_ERRORS as exc:  # e.g. no compiler found at all
            built: list[Extension] = []
            self.extensions = built
            _warn(exc)

    def build_extensions(self) -> None:
        self._failed: list[Extension] = []
        super().build_extensions()
        self.extensions = [ext for ext in self.extensions if ext not in self._failed]

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            self._failed.append(ext)
            _warn(exc)


gnetcrypto = Extension(
    "globalnet._gnetcrypto",
    sources=["cext/gnetcrypto.c"],
    libraries=["crypto"],
    extra_compile_args=["-O2"],
    # Limited API of Python 3.11 (Py_LIMITED_API is set in the source):
    # one abi3 build serves every CPython >= 3.11.
    py_limited_api=True,
)

setup(
    ext_modules=[gnetcrypto],
    cmdclass={"build_ext": OptionalBuildExt},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
