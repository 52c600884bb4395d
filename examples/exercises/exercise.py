"""Running an exercise's check: `python examples/exercises/NN_name.py` checks your functions,
`... --solution` the ones in solutions/NN_name.py. Each exercise file defines check(...),
whose parameters are named after the functions it checks."""
from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path


def load(path: Path):
    """The module in a file whose name (NN_name.py) is not a valid module name."""
    spec = importlib.util.spec_from_file_location(f"exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_check(check) -> None:
    """Check the functions of the exercise file being run (or, with --solution, the shipped
    solution's) and say OK, not done yet, or what is wrong; exit 1 unless OK."""
    path = Path(sys.modules["__main__"].__file__)
    source = load(path.parent / "solutions" / path.name) if "--solution" in sys.argv \
        else sys.modules["__main__"]
    names = list(inspect.signature(check).parameters)
    try:
        check(*(getattr(source, name) for name in names))
    except NotImplementedError as e:
        sys.exit(f"not done yet: {e}")
    except AssertionError as e:
        sys.exit(f"not right yet: {e}")
    print(f"OK: {', '.join(names)} passed the check")
