"""What a user gets from `pip install`: the wheel carries every file the package reads at run
time (the C sources it builds, the ESP32 partition table, the search's cost model), and a
firmware build's by-products stay out of git."""
import json
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
    needed |= {"tinylm/boards/esp32_partitions.csv", "tinylm/search/costmodel.json"}
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


def test_a_fresh_clone_installs_the_pinned_emulator_on_first_use(tmp_path, monkeypatch):
    """The README's test command runs the RP2040 emulator tests on a fresh clone: rp2040js is
    installed from package-lock.json when first needed (with npm), else the reason is given."""
    from tinylm.boards import emulate_rp2040
    if not (shutil.which("node") and shutil.which("npm") and shutil.which(emulate_rp2040.CC)):
        pytest.skip("node, npm or arm-none-eabi-gcc is not installed (.ci/run installs them)")
    fresh = tmp_path / "emulator"
    fresh.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(emulate_rp2040.EMULATOR / name, fresh / name)
    monkeypatch.setattr(emulate_rp2040, "EMULATOR", fresh)
    assert emulate_rp2040.missing_tools() is None
    installed = json.loads((fresh / "node_modules" / "rp2040js" / "package.json").read_text())
    pinned = json.loads((fresh / "package-lock.json").read_text())
    assert installed["version"] == pinned["packages"]["node_modules/rp2040js"]["version"]
    tools = tmp_path / "bin"                  # node and the compiler, but no npm
    tools.mkdir()
    for tool in ("node", emulate_rp2040.CC):
        (tools / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(tools))
    shutil.rmtree(fresh / "node_modules")
    assert "there is no npm to install it" in emulate_rp2040.missing_tools()
