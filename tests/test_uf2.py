"""UF2 files, and `tinylm flash rp2040`: the model's UF2, and how it reaches the board."""
import os
import random
import shutil
import struct
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tinylm.boards import rp2040_flash, uf2
from tinylm.boards.rp2040_flash import (
    FLASH_BASE,
    MODEL_OFFSET,
    find_drives,
    model_uf2,
    mount_points,
)
from tinylm.cli import main

MODEL = random.Random(0).randbytes(1000)          # 3 full payloads and a partial one
MODEL_ADDRESS = FLASH_BASE + MODEL_OFFSET          # 0x10100000


def test_blocks_round_trip():
    data = uf2.encode(uf2.split(MODEL_ADDRESS, MODEL), uf2.RP2040_FAMILY)
    assert len(data) == 4 * 512
    blocks = uf2.decode(data)
    assert [b.address for b in blocks] == [0x10100000, 0x10100100, 0x10100200, 0x10100300]
    assert [(b.block_no, b.num_blocks) for b in blocks] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert all(b.family_id == 0xE48BFF56 and b.flags == 0x2000 for b in blocks)
    assert all(len(b.payload) == 256 for b in blocks)
    assert b"".join(b.payload for b in blocks) == MODEL + b"\xff" * 24


def test_the_block_layout():
    block = uf2.encode([(0x10000000, b"\xab" * 256)], uf2.RP2040_FAMILY)
    assert len(block) == 512
    assert struct.unpack_from("<8I", block) == (0x0A324655, 0x9E5D5157, 0x2000, 0x10000000,
                                                256, 0, 1, 0xE48BFF56)
    assert block[32:288] == b"\xab" * 256 and block[288:508] == bytes(220)
    assert struct.unpack_from("<I", block, 508) == (0x0AB16F30,)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:100], "not a whole number of 512-byte UF2 blocks"),
    (lambda b: b"\0" + b[1:], "wrong magic numbers"),
    (lambda b: b[:508] + b"\0\0\0\0", "wrong magic numbers"),
    (lambda b: b[:16] + struct.pack("<I", 477) + b[20:], "payload size 477 is over 476"),
    (lambda b: b[:20] + struct.pack("<I", 1) + b[24:], "block number 1 of 1"),
])
def test_damaged_files_are_refused(damage, message):
    block = uf2.encode([(0x10000000, b"x" * 256)], uf2.RP2040_FAMILY)
    with pytest.raises(uf2.UF2Error, match=message):
        uf2.decode(damage(block), "app.uf2")


def firmware_uf2(size, family=uf2.RP2040_FAMILY):
    return uf2.encode(uf2.split(FLASH_BASE, random.Random(1).randbytes(size)), family)


def test_firmware_and_model_become_one_file_numbered_together():
    blocks = uf2.decode(model_uf2(MODEL, firmware=firmware_uf2(3000)))
    assert len(blocks) == 12 + 4
    assert [b.block_no for b in blocks] == list(range(16))
    assert {b.num_blocks for b in blocks} == {16}
    assert blocks[0].address == FLASH_BASE and blocks[12].address == MODEL_ADDRESS


@pytest.mark.parametrize("options, message", [
    ({"offset": 0x100100}, "0x100100 is not a multiple of the 0x1000-byte flash sector"),
    ({"offset": 0x200000}, "past the end of the flash"),
    ({"offset": 0}, "0x0 is inside the firmware's part of the flash"),
    ({"offset": 0x3F000}, "0x3f000 is inside the firmware's part of the flash"),
    ({"flash_size": MODEL_OFFSET + 512}, "1,000 bytes, 488 more than the 512 that the flash"),
    ({"firmware": firmware_uf2(MODEL_OFFSET + 1)}, "writes at 0x10100000, where the model goes"),
    ({"firmware": firmware_uf2(256, family=0xE48BFF59)},
     "not an RP2040 firmware: its block 0 is for family 0xe48bff59"),
])
def test_what_cannot_be_flashed_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        model_uf2(MODEL, **options)


def fake_drive(path: Path, board_id="RPI-RP2") -> Path:
    path.mkdir(parents=True)
    (path / "INFO_UF2.TXT").write_text(f"UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\n"
                                       f"Board-ID: {board_id}\n")
    return path


def test_bootsel_drives_are_found_among_mount_points(tmp_path):
    pico = fake_drive(tmp_path / "RPI RP2")
    other = fake_drive(tmp_path / "FEATHERBOOT", board_id="SAMD21G18A-Feather-v0")
    empty = tmp_path / "usb-stick"
    empty.mkdir()
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 {tmp_path}/RPI\\040RP2 vfat rw 0 0\n"
                      f"/dev/sdb1 {other} vfat rw 0 0\n/dev/sdc1 {empty} vfat rw 0 0\n")
    points = mount_points(mounts)
    assert pico in points and other in points
    assert find_drives(points + [pico, tmp_path / "gone"]) == [pico]


def flash(tmp_path, *args):
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL)
    return CliRunner().invoke(main, ["flash", "rp2040", str(model), *map(str, args)])


@pytest.fixture
def no_drives(monkeypatch):
    monkeypatch.setattr(rp2040_flash, "mount_points", lambda: [])


def test_the_uf2_is_copied_onto_the_drive_given(tmp_path, no_drives):
    drive = fake_drive(tmp_path / "RPI-RP2")
    result = flash(tmp_path, "--drive", drive)
    assert result.exit_code == 0, result.output
    assert f"copied model.uf2 onto {drive}" in result.stdout
    assert (drive / "model.uf2").read_bytes() == (tmp_path / "model.uf2").read_bytes()
    assert uf2.decode((drive / "model.uf2").read_bytes())[0].address == MODEL_ADDRESS


def test_a_mounted_drive_is_found(tmp_path, monkeypatch):
    drive = fake_drive(tmp_path / "media" / "RPI-RP2")
    monkeypatch.setattr(rp2040_flash, "mount_points", lambda: [tmp_path, drive])
    (tmp_path / "app.uf2").write_bytes(firmware_uf2(5000))
    result = flash(tmp_path, "--firmware", tmp_path / "app.uf2", "--out", tmp_path / "both.uf2")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "app.uf2 and model.bin at 0x10100000" in result.stdout
    blocks = uf2.decode((drive / "both.uf2").read_bytes())
    assert len(blocks) == 20 + 4 and blocks[20].address == MODEL_ADDRESS


def test_a_drive_that_is_not_a_bootsel_drive_is_refused(tmp_path, no_drives):
    result = flash(tmp_path, "--drive", tmp_path)
    assert result.exit_code == 1
    assert "is not the drive of an RP2040 in BOOTSEL mode" in result.stderr


def test_several_drives_are_not_guessed_between(tmp_path, monkeypatch):
    drives = [fake_drive(tmp_path / "a"), fake_drive(tmp_path / "b")]
    monkeypatch.setattr(rp2040_flash, "mount_points", lambda: drives)
    result = flash(tmp_path)
    assert result.exit_code == 1 and "several RP2040 drives are mounted" in result.stderr


def test_picotool_loads_it_when_no_drive_is_mounted(tmp_path, no_drives, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    picotool = bin_dir / "picotool"
    picotool.write_text(f"#!{sys.executable}\nimport sys\n"
                        f"open({str(tmp_path / 'args')!r}, 'w').write(' '.join(sys.argv[1:]))\n")
    picotool.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    result = flash(tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "args").read_text() == f"load -v -x {tmp_path / 'model.uf2'} -f"
    assert "loaded model.uf2 with picotool" in result.stdout


def test_without_drive_or_picotool_it_says_what_to_do(tmp_path, no_drives, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    result = flash(tmp_path)
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'model.uf2'} (4 blocks): model.bin at 0x10100000" in result.stdout
    assert "hold the BOOTSEL button while plugging the board in" in result.stdout
    assert "also needs the tinylm firmware" in result.stdout and "--firmware" in result.stdout
    assert os.path.getsize(tmp_path / "model.uf2") == 4 * 512


def test_a_drive_without_room_gets_no_partial_file(tmp_path, no_drives, monkeypatch):
    drive = fake_drive(tmp_path / "RPI-RP2")
    real = shutil.disk_usage
    monkeypatch.setattr(rp2040_flash.shutil, "disk_usage",
                        lambda path: real(path)._replace(free=100))
    result = flash(tmp_path, "--drive", drive)
    assert result.exit_code == 1 and "100 bytes free, 2,048 are needed" in result.stderr
    assert not (drive / "model.uf2").exists()
    monkeypatch.undo()

    real_fsync = os.fsync

    def full(fd):                         # the drive fills up during the copy
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(drive)):
            raise OSError(28, "No space left on device")
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", full)
    result = flash(tmp_path, "--drive", drive)
    assert result.exit_code == 1 and "No space left" in result.stderr
    assert not (drive / "model.uf2").exists() and (tmp_path / "model.uf2").exists()
