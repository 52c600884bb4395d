"""The runtime builds warning-free as C99 for the host and for microcontrollers (Debian's
cross compilers), freestanding, and on the chips without an FPU it uses no floating point
at all: no soft-float routine is referenced."""
import re
import shutil
import subprocess

import pytest

from tinylm.runtime.build import SOURCES

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-ffreestanding", "-c"]
TARGETS = {   # compiler and flags, the nm that lists its symbols, and whether it has an FPU
    "host gcc": (["gcc"], "nm", True),
    "host clang": (["clang"], "nm", True),
    "cortex-m0+": (["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb"],
                   "arm-none-eabi-nm", False),
    "rv32imc": (["riscv64-unknown-elf-gcc", "-march=rv32imc", "-mabi=ilp32"],
                "riscv64-unknown-elf-nm", False),
    "xtensa-lx106": (["xtensa-lx106-elf-gcc"], "xtensa-lx106-elf-nm", False),
}
# GCC's soft-float helpers: __aeabi_fadd, __aeabi_d2iz ... (ARM), __addsf3, __muldf3 ... (others)
SOFT_FLOAT = re.compile(r"__aeabi_[fd]|__(add|sub|mul|div|neg|cmp|eq|ne|lt|le|gt|ge|unord)[sd]f|"
                        r"__(fix|float)\w*[sd]f")


@pytest.mark.parametrize("target", TARGETS)
def test_compiles_warning_free(tmp_path, target):
    compiler, nm, has_fpu = TARGETS[target]
    if not shutil.which(compiler[0]):
        pytest.skip(f"{compiler[0]} is not installed (.ci/run installs it)")
    obj = tmp_path / "tinylm.o"
    result = subprocess.run([*compiler, *STRICT, str(SOURCES / "tinylm.c"), "-o", str(obj)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    undefined = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True,
                               check=True).stdout
    if not has_fpu:
        assert not SOFT_FLOAT.search(undefined), undefined
