"""The runtime builds warning-free as C99 for the host and for microcontrollers (Debian's
cross compilers), freestanding, with the kernel file of each CPU and with the portable one;
on the chips without an FPU it uses no floating point at all: no soft-float routine is
referenced. tinylm.c itself is portable C: no assembly, no test of the CPU."""
import re
import shutil
import subprocess

import pytest

from tinylm.runtime.build import NO_FPU, PORTABLE, SOURCES, kernel

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-ffreestanding", "-c"]
TARGETS = {   # compiler and flags, the nm that lists its symbols, the CPU (runtime.KERNELS;
              # None: this computer's) and whether it has an FPU
    "host gcc": (["gcc"], "nm", None, True),
    "host clang": (["clang"], "nm", None, True),
    "cortex-m0+": (["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb"],
                   "arm-none-eabi-nm", "armv6m", False),
    "rv32imc": (["riscv64-unknown-elf-gcc", "-march=rv32imc", "-mabi=ilp32"],
                "riscv64-unknown-elf-nm", "rv32im", False),
    "xtensa-lx106": (["xtensa-lx106-elf-gcc"], "xtensa-lx106-elf-nm", "xtensa-lx106", False),
}
# GCC's soft-float helpers: __aeabi_fadd, __aeabi_d2iz ... (ARM), __addsf3, __muldf3 ... (others)
SOFT_FLOAT = re.compile(r"__aeabi_[fd]|__(add|sub|mul|div|neg|cmp|eq|ne|lt|le|gt|ge|unord)[sd]f|"
                        r"__(fix|float)\w*[sd]f")


@pytest.mark.parametrize("target", TARGETS)
def test_compiles_warning_free(tmp_path, target):
    compiler, nm, cpu, has_fpu = TARGETS[target]
    if not shutil.which(compiler[0]):
        pytest.skip(f"{compiler[0]} is not installed (.ci/run installs it)")
    flags = STRICT if has_fpu else [*STRICT, *NO_FPU]
    for source in dict.fromkeys([SOURCES / "tinylm.c", kernel(cpu), SOURCES / PORTABLE]):
        obj = tmp_path / f"{source.stem}.o"
        result = subprocess.run([*compiler, *flags, str(source), "-o", str(obj)],
                                capture_output=True, text=True)
        assert result.returncode == 0 and result.stderr == "", f"{source.name}: {result.stderr}"
        undefined = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True,
                                   check=True).stdout
        if not has_fpu:
            assert not SOFT_FLOAT.search(undefined), f"{source.name}: {undefined}"


def test_tinylm_c_is_portable():
    """The CPU-specific code is in the kernel files that the builds choose (csrc/kernels.h)."""
    text = (SOURCES / "tinylm.c").read_text()
    assert not re.search(r"\basm\b|__asm__|__(ARM|riscv|SSE|XTENSA|SOFTFP|x86|aarch64)\w*", text)
