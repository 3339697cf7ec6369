"""Pick the implementation of the per-chunk layer ciphers.

The C extension ``globalnet._gnetcrypto`` (built from ``cext/``) and the
pure-Python reference in ``layers.py`` expose the same names with the same
semantics and pass the same vectors, so the rest of the code imports them
from here (or from ``globalnet.crypto``) and never cares which one it got.

``GNET_CRYPTO`` in the environment decides, once, at import time:

* unset or empty: the C extension if it imports, else Python;
* ``python``: always the reference (for debugging and differential tests);
* ``cext``: the C extension, and an ImportError if it is not built, so a
  benchmark never silently measures the slow path.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

from globalnet.crypto import layers

__all__ = [
    "BACKEND_NAME",
    "AeadOpener",
    "AeadSealer",
    "DecryptError",
    "Keystream",
    "load",
    "xor_layers",
]

#: What every backend module must provide.
REQUIRED_NAMES = ("Keystream", "xor_layers", "AeadSealer", "AeadOpener")
ENV_VAR = "GNET_CRYPTO"
CEXT_MODULE = "globalnet._gnetcrypto"


def _import_cext() -> tuple[ModuleType | None, ImportError | None]:
    try:
        return importlib.import_module(CEXT_MODULE), None
    except ImportError as exc:
        return None, exc


def load(choice: str | None = None) -> tuple[str, ModuleType]:
    """Return ``(name, module)`` for ``choice`` (default: ``$GNET_CRYPTO``).

    A separate function, not just module-level code, so tests can check the
    selection rules without reloading the package.
    """
    if choice is None:
        choice = os.environ.get(ENV_VAR, "")
    choice = choice.strip().lower()
    if choice not in ("", "python", "cext"):
        raise ImportError(f"{ENV_VAR}={choice!r}: expected 'python', 'cext' or unset")
    if choice == "python":
        return "python", layers
    cext, error = _import_cext()
    if cext is None:
        if choice == "cext":
            raise ImportError(
                f"{ENV_VAR}=cext but the C extension {CEXT_MODULE} is not "
                f"importable ({error}); build cext/ or unset {ENV_VAR} for the "
                "Python backend"
            ) from error
        return "python", layers
    missing = [name for name in REQUIRED_NAMES if not hasattr(cext, name)]
    if missing:
        # A half-built extension is a build bug; do not paper over it.
        raise ImportError(f"{CEXT_MODULE} lacks {', '.join(missing)}")
    return "cext", cext


if TYPE_CHECKING:
    # Both backends have these signatures; type checkers see the reference.
    from globalnet.crypto.layers import (
        AeadOpener,
        AeadSealer,
        DecryptError,
        Keystream,
        xor_layers,
    )

    BACKEND_NAME: str
else:
    BACKEND_NAME, _module = load()
    Keystream = _module.Keystream
    xor_layers = _module.xor_layers
    AeadSealer = _module.AeadSealer
    AeadOpener = _module.AeadOpener
    # The extension should raise layers.DecryptError itself (or a subclass it
    # exports as DecryptError), so callers can catch one class either way.
    DecryptError = getattr(_module, "DecryptError", layers.DecryptError)
