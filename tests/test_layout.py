"""The package's layout is part of what it teaches: rooms in pipeline order, imports pointing
one way, files short enough to read (see tinylm/__init__.py)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tinylm"
# Pipeline order: a room may import itself and the rooms before it, never one after it.
ROOMS = ["core", "text", "training", "distillation", "export", "runtime", "boards", "search",
         "cli"]
# Outside the rooms: atomic.py and optional.py (leaves any room may use), __init__ and __main__.
LEAVES = {"atomic", "optional"}
# The teacher package sits beside distillation: it may use what distillation may.
TEACHER_RANK = ROOMS.index("distillation")
HEAVY = {"torch", "transformers"}
LONGEST_PYTHON, LONGEST_C = 400, 1100


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a file, relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.append((node.lineno, module))
            # `from . import x` imports the module x
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "tinylm" and len(parts) > 1 else None


def python_files(folder: Path):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def package_of(path: Path, root: Path = ROOT) -> str:
    return ".".join(path.relative_to(root).parent.parts)


def layout_violations(package_root: Path = PACKAGE) -> list[str]:
    """Every import of a later room by an earlier one, and of the teacher or of PyTorch by
    the package, as 'file:line: message'."""
    problems = []
    for path in python_files(package_root):
        here = path.relative_to(package_root).parts
        room = here[0] if len(here) > 1 else None
        for line, module in imported_modules(path, package_of(path, package_root.parent)):
            where = f"{path.relative_to(package_root.parent)}:{line}"
            top = module.split(".")[0]
            if top in HEAVY:
                problems.append(f"{where}: imports {module}; only teacher/ may")
            if top == "teacher" and room != "distillation":
                problems.append(f"{where}: imports the teacher; only distillation may")
            target = room_of(module)
            if room is None or target is None or target not in ROOMS:
                if room is None and here[0][:-3] in LEAVES and target is not None:
                    problems.append(f"{where}: the leaf {here[0]} imports {module}")
                continue
            if ROOMS.index(target) > ROOMS.index(room):
                problems.append(f"{where}: {room} imports tinylm.{target}, a later room")
    return sorted(set(problems))


def test_every_room_is_a_package_in_pipeline_order():
    rooms = sorted(p.name for p in PACKAGE.iterdir()
                   if p.is_dir() and p.name != "__pycache__" and (p / "__init__.py").exists())
    assert rooms == sorted(ROOMS)
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert loose == LEAVES
    for room in ROOMS:
        doc = ast.get_docstring(ast.parse((PACKAGE / room / "__init__.py").read_text()))
        assert doc and "Imports" in doc or room == "cli", f"{room}/__init__.py says what it is"


def test_imports_point_one_way():
    assert layout_violations() == []


def test_a_later_import_is_caught(tmp_path):
    """The check above can fail: the core importing the command line is reported."""
    copy = tmp_path / "tinylm"
    for path in python_files(PACKAGE):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    model = copy / "core" / "model.py"
    model.write_text(model.read_text() + "\nfrom ..boards import memplan\n")
    problems = layout_violations(copy)
    line = len(model.read_text().splitlines())
    assert problems == [f"tinylm/core/model.py:{line}: core imports tinylm.boards, a later room"]


def test_the_teacher_uses_only_rooms_up_to_distillation():
    for path in python_files(ROOT / "teacher"):
        for line, module in imported_modules(path, package_of(path)):
            room = room_of(module)
            assert room is None or ROOMS.index(room) <= TEACHER_RANK, f"{path}:{line} {module}"


def test_importing_every_module_leaves_torch_and_transformers_out():
    code = ("import sys, pkgutil, importlib, tinylm\n"
            "for m in pkgutil.walk_packages(tinylm.__path__, 'tinylm.'):\n"
            "    importlib.import_module(m.name)\n"
            f"print(sorted({HEAVY!r} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("pattern, longest", [("*.py", LONGEST_PYTHON),
                                              ("*.c", LONGEST_C), ("*.h", LONGEST_C)])
def test_files_are_short_enough_to_read(pattern, longest):
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
               for p in PACKAGE.rglob(pattern)}
    assert {name: n for name, n in lengths.items() if n > longest} == {}
