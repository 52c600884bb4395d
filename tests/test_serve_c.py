"""The device loop (tinylm/csrc/serve.c) builds warning-free as freestanding C99 for the host
and the microcontrollers, calls nothing but the runtime (and the compiler's own helpers), and
on the chips without an FPU uses no floating point; its host program (serve_host.c) builds
warning-free too."""
import re
import shutil
import subprocess

import pytest

from tinylm.runtime import SOURCES, kernel

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
TARGETS = {   # compiler and flags, the nm that lists its symbols
    "host gcc": (["gcc"], "nm"),
    "host clang": (["clang"], "nm"),
    "cortex-m0+": (["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb"], "arm-none-eabi-nm"),
    "rv32imc": (["riscv64-unknown-elf-gcc", "-march=rv32imc", "-mabi=ilp32"],
                "riscv64-unknown-elf-nm"),
    "xtensa-lx106": (["xtensa-lx106-elf-gcc"], "xtensa-lx106-elf-nm"),
}
# What serve.c may call: the runtime, memset/memcpy (struct and array initialisation), and
# GCC's integer helpers (__aeabi_uidiv, __udivdi3, ...): no C library, no float routines.
ALLOWED = re.compile(r"tlm_\w+|memset|memcpy|__aeabi_(u?idiv\w*|u?ldivmod|lmul|llsl|llsr)|"
                     r"__(u?div|u?mod|mul)[sd]i3")


def require(tool):
    if not shutil.which(tool):
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")


@pytest.mark.parametrize("target", TARGETS)
def test_the_device_loop_is_freestanding(tmp_path, target):
    compiler, nm = TARGETS[target]
    require(compiler[0])
    obj = tmp_path / "serve.o"
    result = subprocess.run([*compiler, *STRICT, "-ffreestanding", "-c", str(SOURCES / "serve.c"),
                             "-o", str(obj)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    undefined = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True,
                               check=True).stdout.split()
    assert [name for name in undefined if name != "U" and not ALLOWED.fullmatch(name)] == []


def test_the_host_program_builds_warning_free(tmp_path):
    require("gcc")
    sources = [SOURCES / name for name in ("tinylm.c", "host.c", "serve.c", "serve_host.c")]
    sources.append(kernel())
    result = subprocess.run(["gcc", *STRICT, *map(str, sources), "-o", str(tmp_path / "serve")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr
