"""The ESP32 firmware (firmware_esp32/main/main.c), checked without ESP-IDF, which is not
installed here. It compiles warning-free against declarations of the ESP-IDF calls it makes
(tests/esp_idf_stubs), for each chip and console. Run as a host program, with those calls done
on the host (esp_idf_stubs/host_idf.c), it answers as `tinylm run` does, puts the model in
internal RAM, PSRAM or flash as main.c says, and sends the protocol's error lines when the
model partition is erased, missing or too large to map. None of this builds it with ESP-IDF
or runs it on a board."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from binmodels import run_text, tiny_model_bin

from tinylm.boards import protocol
from tinylm.runtime.build import KERNELS, NO_FPU, PORTABLE
from tinylm.runtime.build import SOURCES as CSRC

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / "tests" / "esp_idf_stubs"
# The runtime with the portable kernels: the ESP32's and ESP32-S3's, and in C what the
# ESP32-C3's assembly is held to
SOURCES = [ROOT / "firmware_esp32" / "main" / "main.c", CSRC / "tinylm.c", CSRC / PORTABLE,
           CSRC / "serve.c"]
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{STUBS}", f"-I{CSRC}"]

UART0 = ["-DCONFIG_ESP_CONSOLE_UART=1", "-DCONFIG_ESP_CONSOLE_UART_NUM=0"]
USB_SERIAL_JTAG = ["-DCONFIG_ESP_CONSOLE_USB_SERIAL_JTAG=1"]
ONE_CORE = ["-DCONFIG_FREERTOS_UNICORE=1"]
CONFIGS = {   # what ESP-IDF's sdkconfig.h would say, per chip and console
    "esp32 UART0": ['-DCONFIG_IDF_TARGET="esp32"', *UART0],
    "esp32s3 UART0": ['-DCONFIG_IDF_TARGET="esp32s3"', *UART0],
    "esp32s3 USB-Serial/JTAG": ['-DCONFIG_IDF_TARGET="esp32s3"', *USB_SERIAL_JTAG],
    "esp32c3 UART0": ['-DCONFIG_IDF_TARGET="esp32c3"', *UART0, *ONE_CORE],
    "esp32c3 USB-Serial/JTAG": ['-DCONFIG_IDF_TARGET="esp32c3"', *USB_SERIAL_JTAG, *ONE_CORE],
}
COMPILERS = {   # arm-none-eabi: 32-bit with newlib, ESP-IDF's C library (int32_t is a long)
    "gcc": ["gcc"],
    "clang": ["clang"],
    "arm-none-eabi-gcc": ["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb"],
    "xtensa-lx106-elf-gcc": ["xtensa-lx106-elf-gcc"],
}
# The internal RAM main.c keeps besides the arena and the model: SYSTEM_RESERVE, the port's
# two 1 KiB buffers and the second core's 4 KiB stack.
RESERVED = 16384 + 2048 + 4096
PLENTY = 1 << 20
MODEL_OFFSET = 0x110000            # the model partition's offset in partitions.csv
PROMPT = "Once upon"

def has_c_library(compiler: list[str]) -> bool:
    probe = subprocess.run([*compiler, "-fsyntax-only", "-x", "c", "-"], text=True,
                           input="#include <stdio.h>\n#include <string.h>\n", capture_output=True)
    return probe.returncode == 0


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", COMPILERS)
def test_the_glue_compiles_warning_free(name, config):
    compiler = COMPILERS[name]
    if not shutil.which(compiler[0]):
        pytest.skip(f"{compiler[0]} is not installed (.ci/run installs it)")
    if not has_c_library(compiler):
        pytest.skip(f"{compiler[0]} has no C library headers (stdio.h, string.h) here")
    result = subprocess.run([*compiler, *STRICT, "-fsyntax-only", *CONFIGS[config], *SOURCES],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_component_builds_the_kernels_of_the_chip():
    """RISC-V (the ESP32-C3): its own, without float32 models; Xtensa: the portable ones."""
    text = (ROOT / "firmware_esp32" / "main" / "CMakeLists.txt").read_text()
    assert f"${{shared}}/{KERNELS['rv32im']}" in text and f"${{shared}}/{PORTABLE}" in text
    assert f"PRIVATE {NO_FPU[0].removeprefix('-D')}" in text


# The ESP-IDF component of each header main.c includes (v5.3 on; "driver" before).
COMPONENT_OF = {"esp_partition.h": "esp_partition", "esp_timer.h": "esp_timer",
                "driver/uart.h": "esp_driver_uart",
                "driver/usb_serial_jtag.h": "esp_driver_usb_serial_jtag"}
ALWAYS_THERE = {"esp_err.h", "esp_heap_caps.h", "freertos/FreeRTOS.h", "freertos/task.h",
                "sdkconfig.h", "serve.h", "stdint.h", "stdio.h", "string.h"}


def test_the_component_names_every_component_it_uses():
    """A build with only the components main needs (MINIMAL_BUILD, COMPONENTS) has each one
    main.c includes a header of, and esp_psram, without which PSRAM stays off."""
    main_c = (ROOT / "firmware_esp32" / "main" / "main.c").read_text()
    included = set(re.findall(r'#include [<"]([^>"]+)[>"]', main_c))
    assert included <= set(COMPONENT_OF) | ALWAYS_THERE, included - ALWAYS_THERE
    text = (ROOT / "firmware_esp32" / "main" / "CMakeLists.txt").read_text()
    uses = set(re.findall(r"\b(esp_\w+|driver)\b", " ".join(
        re.findall(r"(?:set\(uses|list\(APPEND uses)([^)]*)\)", text))))
    assert {COMPONENT_OF[h] for h in included & set(COMPONENT_OF)} | {"esp_psram"} <= uses
    assert "driver" in uses and "PRIV_REQUIRES ${uses}" in text


def test_a_console_that_is_neither_uart_nor_usb_serial_jtag_is_refused():
    result = subprocess.run(["gcc", *STRICT, "-fsyntax-only", '-DCONFIG_IDF_TARGET="esp32s3"',
                             SOURCES[0]], capture_output=True, text=True)
    assert result.returncode != 0
    assert "the protocol runs on the console" in result.stderr


# ---- main.c run on the host ----

@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """The firmware as a host program, for a two-core chip on UART0 and for the one-core
    ESP32-C3 on USB-Serial/JTAG."""
    directory = tmp_path_factory.mktemp("esp32")
    programs = {}
    for name in ("esp32s3 UART0", "esp32c3 USB-Serial/JTAG"):
        program = directory / name.replace(" ", "-").replace("/", "")
        subprocess.run(["gcc", *STRICT, "-D_DEFAULT_SOURCE", "-O1", *CONFIGS[name], *SOURCES,
                        STUBS / "host_idf.c", "-pthread", "-o", program], check=True)
        programs[name] = program
    return programs


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_model_bin(tmp_path_factory.mktemp("esp32-model") / "tiny.bin")


def partition(tmp_path, content: bytes, size: int = 0x40000) -> Path:
    """A model partition as the flash holds it: its bytes, then erased flash."""
    path = tmp_path / "partition.bin"
    path.write_bytes(content + b"\xff" * (size - len(content)))
    return path


def serve(program, partition_path, lines: bytes, internal=PLENTY, psram=0, window=0):
    """The protocol events the firmware sends while reading `lines`, each @text line's pieces
    joined."""
    env = dict(os.environ, IDF_INTERNAL_RAM=str(internal), IDF_PSRAM=str(psram),
               IDF_DATA_WINDOW=str(window))
    if partition_path is not None:
        env["IDF_MODEL_PARTITION"] = str(partition_path)
    result = subprocess.run([program], input=lines, env=env, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    events = []
    for event in protocol.Parser().feed(result.stdout):
        if isinstance(event, protocol.Text) and events and isinstance(events[-1], protocol.Text):
            events[-1] = protocol.Text(events[-1].data + event.data)
        else:
            events.append(event)
    return events


def answer_text(event: protocol.Text) -> str:
    return event.data.decode("utf-8", "replace")


@pytest.mark.parametrize("chip", ["esp32s3 UART0", "esp32c3 USB-Serial/JTAG"])
def test_answers_as_the_host_runtime_with_the_model_in_internal_ram(firmware, model_path,
                                                                      tmp_path, chip):
    events = serve(firmware[chip], partition(tmp_path, model_path.read_bytes()),
                   PROMPT.encode() + b"\n")
    ready, text, end, done = events
    assert isinstance(ready, protocol.Ready)
    assert ready.fields["board"] == chip.split()[0] and ready.fields["weights"] == "sram"
    assert ready.fields["ctx"] == "256"                 # the model's whole context
    assert isinstance(text, protocol.Text) and isinstance(end, protocol.TextEnd)
    assert answer_text(text) == run_text(model_path, PROMPT)
    assert isinstance(done, protocol.Done) and int(done.fields["tokens"]) > 0


@pytest.mark.parametrize("psram, weights", [(PLENTY, "psram"), (0, "flash")])
def test_a_model_too_large_for_internal_ram_goes_to_psram_else_stays_in_flash(
        firmware, model_path, tmp_path, psram, weights):
    room = partition(tmp_path, model_path.read_bytes())
    arena = int(serve(firmware["esp32s3 UART0"], room, b"\x05")[0].fields["arena"])
    # room for the arena, not for the model too
    events = serve(firmware["esp32s3 UART0"], room, PROMPT.encode() + b"\n",
                   internal=RESERVED + arena, psram=psram)
    assert events[0].fields["weights"] == weights and events[0].fields["ctx"] == "256"
    assert answer_text(events[1]) == run_text(model_path, PROMPT)


def test_too_little_ram_for_the_whole_context_gives_a_shorter_one(firmware, model_path,
                                                                  tmp_path):
    room = partition(tmp_path, model_path.read_bytes())
    arena = int(serve(firmware["esp32s3 UART0"], room, b"\x05")[0].fields["arena"])
    # one byte short: the arena gets the internal RAM there is, less 1 KiB for the heap itself
    ready, text, end, done = serve(firmware["esp32s3 UART0"], room, PROMPT.encode() + b"\n",
                                   internal=RESERVED + arena - 1)
    context = int(ready.fields["ctx"])
    assert 1 < context < 256 and ready.fields["weights"] == "flash"
    assert answer_text(text) == run_text(model_path, PROMPT, context)


def test_erased_flash_gets_the_no_model_line_for_every_request(firmware, tmp_path):
    events = serve(firmware["esp32s3 UART0"], partition(tmp_path, b""), b"\x05hello\n")
    expected = protocol.Error("no-model", f"no model at flash {MODEL_OFFSET:#x} (found "
                                          "0xffffffff): flash one with tinylm flash esp32")
    assert events == [expected] * 3


def test_a_damaged_model_gets_the_bad_model_line(firmware, model_path, tmp_path):
    damaged = bytearray(model_path.read_bytes())
    damaged[-1] ^= 1
    events = serve(firmware["esp32s3 UART0"], partition(tmp_path, bytes(damaged)), b"")
    assert events == [protocol.Error("bad-model", "CRC mismatch: the file is damaged")]


def test_a_table_without_a_model_partition_says_so(firmware):
    error, = serve(firmware["esp32s3 UART0"], None, b"")
    assert error.code == "no-model" and "has no model partition" in error.message


def test_a_model_larger_than_the_data_window_says_so(firmware, model_path, tmp_path):
    model = model_path.read_bytes()
    error, = serve(firmware["esp32s3 UART0"], partition(tmp_path, model), b"",
                   window=len(model) - 1)
    assert error.code == "bad-model" and "larger than the flash the chip can map" in error.message
