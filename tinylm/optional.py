"""Python packages that only some commands need, each in an extra of the package: pyserial and
esptool for flashing and chatting (`pip install 'tinylm[flash]'`), datasets and datasketch for
teacher-written data (`pip install 'tinylm[teacher]'`), Optuna and matplotlib for `tinylm
search` (`pip install 'tinylm[search]'`). They are imported when a command needs them, so the
rest of tinylm works without them, and their absence is one clear error instead of a
traceback."""
from __future__ import annotations

import importlib
from types import ModuleType

FLASH_EXTRA = "pip install 'tinylm[flash]'"
TEACHER_EXTRA = "pip install 'tinylm[teacher]'"
SEARCH_EXTRA = "pip install 'tinylm[search]'"


class MissingPackage(OSError):
    """A package this command needs is not installed."""


def require(module: str, package: str, purpose: str, install: str = FLASH_EXTRA) -> ModuleType:
    """Import `module` (from the PyPI package `package`), or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackage(f"{purpose} needs the Python package {package}, which is not "
                             f"installed: {install}") from None
