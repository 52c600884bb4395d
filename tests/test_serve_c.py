"""The device loop (tinylm/runtime/csrc/serve.c) builds warning-free as freestanding C99 for the
host and the microcontrollers, calls nothing but the runtime (and the compiler's own helpers), and
on the chips without an FPU uses no floating point; its host program (serve_host.c) builds
warning-free too."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from binmodels import tiny_model_bin

from tinylm.runtime.build import SOURCES, kernel

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


def test_the_rate_of_a_fast_answer_comes_from_microseconds(tmp_path):
    """5 tokens in 300 microseconds are 16,666.66 tok/s, though ms (at least 1) says 1."""
    require("gcc")
    sources = [SOURCES / name for name in ("tinylm.c", "host.c", "serve.c")] + [kernel()]
    program = tmp_path / "serve_clock"
    subprocess.run(["gcc", "-std=c99", "-O1", "-I", str(SOURCES), *map(str, sources),
                    str(Path(__file__).resolve().parent / "c" / "serve_clock.c"),
                    "-o", str(program)], check=True)
    model = tiny_model_bin(tmp_path / "tiny.bin")
    output = subprocess.run([str(program), str(model)], capture_output=True, check=True).stdout
    done = dict(field.split(b"=") for field in output.split(b"@done ")[1].split())
    tokens = int(done[b"tokens"])
    assert done[b"ms"] == b"1"
    rate = tokens * 10**8 // 300                     # tok/s * 100
    assert done[b"tok_s"].decode() == f"{rate // 100}.{rate % 100:02d}"
