"""`tinylm flash esp32` end to end, without a board: esptool writes through loopback TCP to a
stand-in for the ESP32's ROM loader (tests/fake_esp32.py), whose flash is then compared, byte
for byte, with what should be there."""
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_esp32 import FLASH_BEGIN, FLASH_DEFL_BEGIN, SECTOR, LoopbackLoader
from test_partitions import table_binary

from tinylm.boards import esp32_flash
from tinylm.boards.partitions import parse_csv, read_csv
from tinylm.boards.serial_ports import Port, find_board_port
from tinylm.cli import main

ROOT = Path(__file__).resolve().parents[1]
TABLE = read_csv(ROOT / "tinylm" / "boards" / "esp32_partitions.csv")
MODEL = next(p for p in TABLE if p.name == "model")


@pytest.fixture
def loader():
    with LoopbackLoader() as server:
        yield server


def flash(*args):
    return subprocess.run([sys.executable, "-m", "tinylm", "flash", "esp32", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def changed_ranges(before: bytes, after: bytes, granularity: int = SECTOR):
    """The sectors whose bytes differ."""
    return [start for start in range(0, len(before), granularity)
            if before[start:start + granularity] != after[start:start + granularity]]


def assert_written(flash_image, original, writes):
    """`writes` ((offset, data), ...) are in flash byte for byte; the rest of each sector they
    touch is erased (0xFF); every other byte is as it was."""
    expected = bytearray(original)
    for offset, data in writes:
        start = offset - offset % SECTOR
        end = -(-(offset + len(data)) // SECTOR) * SECTOR
        expected[start:end] = b"\xff" * (end - start)
        expected[offset:offset + len(data)] = data
    assert changed_ranges(expected, flash_image) == []


def text_like(size, seed=0):
    """Bytes that compress, as model weights do somewhat: esptool then sends them deflated."""
    rng = random.Random(seed)
    return bytes(rng.choice(b"abcdefgh") for _ in range(size))


@pytest.mark.parametrize("model, command", [
    (text_like(100_003), FLASH_DEFL_BEGIN),
    (random.Random(1).randbytes(70_001), FLASH_BEGIN),     # does not compress: sent as it is
], ids=["compressed", "uncompressed"])
def test_the_model_lands_in_its_partition_and_nothing_else_changes(tmp_path, loader, model,
                                                                   command):
    path = tmp_path / "model.bin"
    path.write_bytes(model)
    original = bytes(loader.chip.flash)
    result = flash(path, "--port", loader.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Connected to ESP32" in result.stdout        # told apart by its magic register
    assert command in loader.chip.commands
    assert_written(loader.chip.flash, original, [(MODEL.offset, model)])
    # esptool checked the MD5 of the region it wrote (the model, padded to 4 bytes).
    assert loader.chip.verified == [(MODEL.offset, -(-len(model) // 4) * 4)]
    assert f"to the model partition at {MODEL.offset:#x}" in result.stdout


def test_a_model_that_does_not_fit_is_refused_before_anything_is_sent(tmp_path, loader):
    path = tmp_path / "big.bin"
    path.write_bytes(b"\x01" * (MODEL.size + 4096))
    original = bytes(loader.chip.flash)
    result = flash(path, "--port", loader.url)
    assert result.returncode == 1
    assert "4,096 more than the 3,080,192 that the model partition at 0x110000 holds" \
        in result.stderr
    assert loader.chip.connections == 0 and loader.chip.flash == original


def write_build(directory: Path, partitions, chip="esp32"):
    """A folder like `idf.py build` leaves: images and their flasher_args.json."""
    rng = random.Random(2)
    images = {"bootloader": (0x1000, "bootloader/bootloader.bin", rng.randbytes(20_001)),
              "partition-table": (0x8000, "partition_table/partition-table.bin",
                                  table_binary(partitions)),
              "app": (0x10000, "tinylm.bin", rng.randbytes(90_001))}
    args = {"flash_settings": {"flash_mode": "dio", "flash_size": "4MB", "flash_freq": "40m"},
            "extra_esptool_args": {"chip": chip, "stub": True}}
    for name, (offset, file, data) in images.items():
        (directory / file).parent.mkdir(parents=True, exist_ok=True)
        (directory / file).write_bytes(data)
        args[name] = {"offset": hex(offset), "file": file, "encrypted": "false"}
    (directory / "flasher_args.json").write_text(json.dumps(args))
    return [(offset, data) for offset, _, data in images.values()]


def test_firmware_from_a_build_folder_is_written_too(tmp_path, loader):
    # The build's table, not the default CSV, says where the model goes.
    partitions = parse_csv("nvs, data, nvs, , 0x6000\nfactory, app, factory, , 1M\n"
                           "model, data, undefined, 0x200000, 1M")
    firmware = write_build(tmp_path, partitions)
    model = text_like(50_000)
    (tmp_path / "model.bin").write_bytes(model)
    original = bytes(loader.chip.flash)
    result = flash(tmp_path / "model.bin", "--port", loader.url, "--firmware", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_written(loader.chip.flash, original, firmware + [(0x200000, model)])


@pytest.mark.parametrize("options, message", [
    (["--partitions", ROOT / "tinylm" / "boards" / "esp32_partitions.csv"],
     "puts the model partition at 0x110000 (0x2f0000 bytes) but the build's table"),
    (["--chip", "esp32s3"], "--chip esp32s3, but the firmware in"),
])
def test_a_build_that_disagrees_is_refused_before_anything_is_sent(tmp_path, loader, options,
                                                                   message):
    write_build(tmp_path, parse_csv("factory, app, factory, , 1M\nmodel, data, , , 1M"))
    (tmp_path / "model.bin").write_bytes(b"model")
    result = flash(tmp_path / "model.bin", "--port", loader.url, "--firmware", tmp_path, *options)
    assert result.returncode == 1
    assert message in result.stderr
    assert loader.chip.connections == 0


def test_a_folder_that_is_not_a_build_is_refused(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"model")
    result = CliRunner().invoke(main, ["flash", "esp32", str(tmp_path / "model.bin"),
                                       "--firmware", str(tmp_path)])
    assert result.exit_code == 1
    assert "has no flasher_args.json" in result.stderr


def test_the_port_is_found_by_usb_ids(tmp_path, loader, monkeypatch):
    # The one port that looks like a CP2102 is the stand-in's loopback address.
    ports = [Port("/dev/ttyS0", None, None), Port(loader.url, 0x10C4, 0xEA60)]
    monkeypatch.setattr(esp32_flash, "system_ports", lambda: ports)
    (tmp_path / "model.bin").write_bytes(b"tiny model")
    result = CliRunner().invoke(main, ["flash", "esp32", str(tmp_path / "model.bin")])
    assert result.exit_code == 0, result.output
    assert loader.chip.flash[MODEL.offset:MODEL.offset + 10] == b"tiny model"


@pytest.mark.parametrize("ports, found", [
    ([Port("/dev/ttyS0", None, None), Port("/dev/ttyUSB0", 0x1A86, 0x7523)], "/dev/ttyUSB0"),
    ([Port("/dev/ttyACM0", 0x303A, 0x1001), Port("/dev/ttyACM1", 0x2E8A, 0x000A)], "/dev/ttyACM0"),
    ([Port("COM4", 0x0403, 0x6001)], "COM4"),
])
def test_board_ports(ports, found):
    assert find_board_port(ports) == found


@pytest.mark.parametrize("ports, message", [
    ([], "no serial port looks like an ESP32 board .* serial ports here: none"),
    ([Port("/dev/ttyS0", None, None), Port("/dev/ttyACM0", 0x2E8A, 0x000A)],
     "no serial port .* here: /dev/ttyS0, /dev/ttyACM0"),
    ([Port("/dev/ttyUSB0", 0x10C4, 0xEA60), Port("/dev/ttyUSB1", 0x1A86, 0x55D4)],
     r"several serial ports look like a board: /dev/ttyUSB0 \(Silicon Labs CP210x\); "
     r"/dev/ttyUSB1 \(WCH CH9102\). Pass --port"),
])
def test_no_board_port_or_several(ports, message):
    with pytest.raises(OSError, match=message):
        find_board_port(ports)


def test_missing_esptool_is_one_clear_error(tmp_path, monkeypatch):
    def not_installed(name):
        raise esp32_flash.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(esp32_flash.importlib.metadata, "version", not_installed)
    (tmp_path / "model.bin").write_bytes(b"model")
    result = CliRunner().invoke(main, ["flash", "esp32", str(tmp_path / "model.bin"),
                                       "--port", "/dev/null"])
    assert result.exit_code == 1
    assert "needs esptool, which is not installed: pip install 'tinylm[flash]'" in result.stderr
