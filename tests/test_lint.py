"""The code's style holds: ruff's checks configured in pyproject.toml (unused and undefined
names, import order, lines of at most 100 characters) pass on the whole repository."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff() -> list[str]:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if not found:
        pytest.skip("ruff is not installed (pip install -e '.[dev]' has it)")
    return [found]


def test_ruff_finds_nothing():
    result = subprocess.run([*ruff(), "check", "--no-cache", "."], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_would_find_a_long_line(tmp_path):
    """The check is live: the same configuration refuses a line of 101 characters."""
    bad = tmp_path / "long.py"
    bad.write_text("x = '" + "a" * 95 + "'\n")   # 101 characters
    result = subprocess.run([*ruff(), "check", "--no-cache", "--config",
                             str(ROOT / "pyproject.toml"), str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "E501" in result.stdout
