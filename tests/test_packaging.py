"""What a user gets from `pip install`: the wheel carries every file the package reads at run
time (the C sources it builds, the ESP32 partition table), and a firmware build's by-products
stay out of git."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_runtime_sources_and_the_partition_table(tmp_path):
    pytest.importorskip("setuptools")
    build = tmp_path / "source"
    shutil.copytree(ROOT, build, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "build", "runs", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(build)], check=True,
                   capture_output=True)
    wheel, = (tmp_path / "dist").glob("tinylm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = {str(p.relative_to(ROOT)) for p in (ROOT / "tinylm" / "runtime" / "csrc").iterdir()}
    needed.add("tinylm/boards/esp32_partitions.csv")
    assert needed <= names


@pytest.mark.parametrize("path", ["firmware_esp32/sdkconfig", "firmware_esp32/sdkconfig.old",
                                  "firmware_esp32/dependencies.lock",
                                  "firmware_esp32/managed_components/espressif__led/x.c",
                                  "firmware_esp32/build/tinylm.bin", "firmware_rp2040/build/x"])
def test_firmware_build_leftovers_are_ignored(path):
    if not (ROOT / ".git").exists() or not shutil.which("git"):
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    assert result.returncode == 0, f"{path} is not ignored"
