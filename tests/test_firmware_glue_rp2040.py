"""The pico-sdk firmware (firmware_rp2040/main.c) without the pico-sdk, which is not installed
here. Its calls into the SDK are type-checked against the SDK's documented signatures
(tests/pico_sdk_stubs: declarations only), with host gcc and arm-none-eabi-gcc; its figures
agree with the host's; its CMake project configures against a stand-in for
pico_sdk_init.cmake. Run as a host program, with those calls done on the host
(pico_sdk_stubs/host_pico.c: the flash mapped at XIP_BASE, core 1 a thread), it answers as
`tinylm run` does with core 1 doing half of the work, puts the weights where the memory
planner says, and sends the protocol's error lines for erased or damaged flash. None of this
builds it with the SDK or runs it on a board (firmware_rp2040/README.md)."""
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from binmodels import run_text
from plan_models import model_bin

from tinylm.boards import memplan, protocol, rp2040_flash
from tinylm.boards.emulate_rp2040 import answers
from tinylm.boards.rp2040_flash import MODEL_OFFSET
from tinylm.runtime.build import KERNELS, NO_FPU, PORTABLE, SOURCES

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware_rp2040"
MAIN = FIRMWARE / "main.c"
STUBS = Path(__file__).parent / "pico_sdk_stubs"
COMPILERS = {
    "host gcc": ["gcc"],
    "cortex-m0+": ["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb"],
}


@pytest.mark.parametrize("target", COMPILERS)
def test_main_c_type_checks_against_the_sdk_declarations(target):
    compiler = COMPILERS[target]
    if not shutil.which(compiler[0]):
        pytest.skip(f"{compiler[0]} is not installed (.ci/run installs it)")
    result = subprocess.run([*compiler, "-std=c99", "-fsyntax-only", "-Wall", "-Wextra",
                             "-Werror", "-I", str(STUBS), "-I", str(SOURCES), str(MAIN)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_stubs_declare_only_what_main_c_uses():
    declared = set()
    for header in STUBS.rglob("*.h"):
        text = header.read_text()
        declared |= set(re.findall(r"^\w[\w\s*]*?\b(\w+)\(", text, re.MULTILINE))
        declared |= {name for name in re.findall(r"^#define (\w+)", text, re.MULTILINE)
                     if not name.endswith("_H")}                       # not include guards
    used = set(re.findall(r"\w+", MAIN.read_text()))
    assert declared and declared <= used, declared - used


def define(name: str) -> int:
    """A #define of main.c that is a number or a product of numbers, such as (238u * 1024u)."""
    value = re.search(rf"^#define {name} (.+?)\s*(/\*.*)?$", MAIN.read_text(), re.MULTILINE)[1]
    assert re.fullmatch(r"[\s()*0-9a-fxu]+", value), f"{name} is not a product: {value}"
    return math.prod(int(n, 0) for n in re.findall(r"0x[0-9a-f]+|[0-9]+", value))


def test_main_c_agrees_with_the_planner_and_the_flasher():
    assert define("SRAM_POOL_BYTES") == memplan.BOARDS["rp2040"].arena_room
    assert define("MODEL_FLASH_OFFSET") == MODEL_OFFSET


# pico_sdk_init.cmake's functions and libraries, recording what the project asks of them.
FAKE_SDK_INIT = """
macro(pico_sdk_init)
    file(APPEND ${CMAKE_BINARY_DIR}/calls.txt "pico_sdk_init\\n")
endmacro()
foreach(name pico_enable_stdio_usb pico_enable_stdio_uart pico_add_extra_outputs)
    function(${name} target)
        if(NOT TARGET ${target})
            message(FATAL_ERROR "${CMAKE_CURRENT_FUNCTION}: no target ${target}")
        endif()
        list(JOIN ARGV " " arguments)
        file(APPEND ${CMAKE_BINARY_DIR}/calls.txt "${CMAKE_CURRENT_FUNCTION} ${arguments}\\n")
    endfunction()
endforeach()
add_library(pico_stdlib INTERFACE)
add_library(pico_multicore INTERFACE)
"""


def test_the_cmake_project_configures(tmp_path):
    if not shutil.which("cmake"):
        pytest.skip("cmake is not installed")
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    (sdk / "pico_sdk_init.cmake").write_text(FAKE_SDK_INIT)
    build = tmp_path / "build"
    result = subprocess.run(["cmake", "-S", str(FIRMWARE), "-B", str(build)],
                            capture_output=True, text=True,
                            env=dict(os.environ, PICO_SDK_PATH=str(sdk)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (build / "calls.txt").read_text().splitlines() == [
        "pico_sdk_init", "pico_enable_stdio_usb tinylm 1", "pico_enable_stdio_uart tinylm 1",
        "pico_add_extra_outputs tinylm"]


def test_the_cmake_project_builds_the_cortex_m0_kernels_without_float32():
    text = (FIRMWARE / "CMakeLists.txt").read_text()
    assert f"${{RUNTIME}}/{KERNELS['armv6m']}" in text
    assert f"PRIVATE {NO_FPU[0].removeprefix('-D')}" in text


def test_without_pico_sdk_path_cmake_says_so(tmp_path):
    if not shutil.which("cmake"):
        pytest.skip("cmake is not installed")
    environment = {k: v for k, v in os.environ.items() if k != "PICO_SDK_PATH"}
    result = subprocess.run(["cmake", "-S", str(FIRMWARE), "-B", str(tmp_path)],
                            capture_output=True, text=True, env=environment)
    assert result.returncode != 0 and "PICO_SDK_PATH is not set" in result.stderr


# ---- main.c run on the host ----

PROMPT = "Once upon"


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    if not shutil.which("gcc") or sys.platform != "linux":
        pytest.skip("needs gcc on Linux (host_pico.c maps the flash with MAP_FIXED_NOREPLACE)")
    program = tmp_path_factory.mktemp("rp2040") / "firmware"
    # the portable kernels: those the board's assembly is held to, in C
    subprocess.run(["gcc", "-std=c99", "-D_DEFAULT_SOURCE", "-O1", "-Wall", "-Wextra", "-Werror",
                    "-I", str(STUBS), "-I", str(SOURCES), str(MAIN), str(SOURCES / "serve.c"),
                    str(SOURCES / "tinylm.c"), str(SOURCES / PORTABLE), str(STUBS / "host_pico.c"),
                    "-pthread", "-o", str(program)], check=True)
    return program


def serve(program, tmp_path, model: bytes, typed: bytes):
    """The protocol events the firmware sends while reading `typed`, with `model` in flash
    where `tinylm flash rp2040` puts it, and the count of tasks core 1 ran."""
    flash = tmp_path / "flash.bin"
    flash.write_bytes(b"\xff" * MODEL_OFFSET + model)
    result = subprocess.run([program], input=typed, capture_output=True, timeout=120,
                            env=dict(os.environ, PICO_FLASH=str(flash)))
    assert result.returncode == 0, result.stderr
    core1_tasks = int(re.fullmatch(rb"core 1 ran (\d+) tasks\n", result.stderr)[1])
    return answers(result.stdout), core1_tasks


def rp2040_plan(model_path):
    return memplan.plan(model_path, "rp2040", rp2040_flash.flash_room())


def test_a_small_model_is_copied_into_sram_and_both_cores_answer(firmware, tmp_path):
    path = model_bin("small")
    (ready, text, end, done), core1_tasks = serve(firmware, tmp_path, path.read_bytes(),
                                                  PROMPT.encode() + b"\n")
    assert ready.fields["board"] == "rp2040" and ready.fields["ctx"] == "256"
    assert ready.fields["weights"] == "sram" == rp2040_plan(path).weights
    assert text.data.decode("utf-8", "replace") == run_text(path, PROMPT)
    assert isinstance(end, protocol.TextEnd) and isinstance(done, protocol.Done)
    assert core1_tasks > 0


def test_a_model_too_large_for_sram_is_read_from_flash_with_the_context_that_fits(
        firmware, tmp_path):
    path = model_bin("long")
    (ready, text, _, _), _ = serve(firmware, tmp_path, path.read_bytes(),
                                   PROMPT.encode() + b"\n")
    plan = rp2040_plan(path)
    assert ready.fields["weights"] == "flash" == plan.weights
    # the planner's choice is the context the firmware takes
    context = int(ready.fields["ctx"])
    assert plan.fits and context == plan.context < plan.model_context
    assert text.data.decode("utf-8", "replace") == run_text(path, PROMPT, context)


def test_erased_flash_gets_the_no_model_line_for_every_request(firmware, tmp_path):
    events, _ = serve(firmware, tmp_path, b"", b"\x05hello\n")
    expected = protocol.Error("no-model", "no model at flash 0x10100000 (found 0xffffffff): "
                                          "flash one with tinylm flash rp2040")
    assert events == [expected] * 3


def test_a_damaged_model_gets_the_bad_model_line(firmware, tmp_path):
    damaged = bytearray(model_bin("small").read_bytes())
    damaged[-1] ^= 1
    events, _ = serve(firmware, tmp_path, bytes(damaged), b"")
    assert events == [protocol.Error("bad-model", "CRC mismatch: the file is damaged")]
