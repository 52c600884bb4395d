"""Python packages that only some commands need, each in an extra of the package: pyserial and
esptool for flashing and chatting (`pip install 'tinylm[flash]'`), Optuna and matplotlib for
`tinylm search` (`pip install 'tinylm[search]'`). They are imported when a command needs them,
so the rest of tinylm works without them, and their absence is one clear error instead of a
traceback."""
from __future__ import annotations

import importlib
from types import ModuleType


def install(extra: str) -> str:
    """The command that installs an extra of tinylm."""
    return f"pip install 'tinylm[{extra}]'"


FLASH_EXTRA = install("flash")


class MissingPackage(OSError):
    """A package this command needs is not installed."""


def require(module: str, package: str, purpose: str, extra: str = "flash") -> ModuleType:
    """Import `module` (from the PyPI package `package`, in tinylm's `extra`), or say how to
    install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackage(f"{purpose} needs the Python package {package}, which is not "
                             f"installed: {install(extra)}") from None
