"""`tinylm flash rp2040`: the model as a UF2 file, placed at its offset in the RP2040's flash,
then handed to the board.

The firmware reads the model in place from flash at FLASH_BASE + MODEL_OFFSET (docs/flashing.md).
Nothing is written unless the model fits, in the flash and with its runtime in the SRAM (the
memory planner, memplan.py). The UF2 file is always written to disk first; then it goes to the
board the first way that works: copied onto the drive an RP2040 in BOOTSEL mode shows
(RPI-RP2), or loaded with picotool when that is installed; otherwise the message says where the
file is and what to do with it.
"""
from __future__ import annotations

import os
import re
import shutil
import string
import subprocess
from glob import glob
from pathlib import Path

from ..atomic import atomic_write
from . import memplan, uf2
from .model_image import check_fits, read_model

FLASH_BASE = 0x10000000     # where the RP2040 maps its external flash (execute-in-place)
MODEL_OFFSET = 0x100000     # 1 MiB into flash: the firmware below, the model above
FLASH_SIZE = 2 << 20        # the Raspberry Pi Pico's flash
SECTOR = 0x1000             # the bootloader erases a whole 4 KiB sector before writing into it
# The start of the flash is the firmware's: the second-stage boot loader, then the program.
# Without --firmware, whose blocks show where it ends, a model goes no lower than this.
FIRMWARE_FLASH = 0x40000
BOARD_ID = "Board-ID: RPI-RP2"    # a line of INFO_UF2.TXT on the RP2040's BOOTSEL drive


def flash_room(offset: int = MODEL_OFFSET, flash_size: int = FLASH_SIZE) -> memplan.FlashRoom:
    """Where the model goes in an RP2040's flash: from `offset` to the end."""
    if offset % SECTOR:
        # The bootloader would erase the whole sector, and with it whatever lies before the
        # model in that sector (the end of the firmware).
        raise ValueError(f"the offset {offset:#x} is not a multiple of the {SECTOR:#x}-byte "
                         "flash sector")
    if offset >= flash_size:
        raise ValueError(f"the offset {offset:#x} is past the end of the flash ({flash_size:#x} "
                         "bytes)")
    return memplan.FlashRoom(flash_size, offset, flash_size - offset,
                             f"the flash from offset {offset:#x} to its end at {flash_size:#x}",
                             "a board with more flash (--flash-size)")


def model_uf2(model: bytes, offset: int = MODEL_OFFSET, flash_size: int = FLASH_SIZE,
              firmware: bytes | None = None, model_name: str = "the model",
              firmware_name: str = "the firmware") -> bytes:
    """One UF2 file with the model at `offset` in flash, after the firmware's blocks if given."""
    room = flash_room(offset, flash_size)
    if firmware is None and offset < FIRMWARE_FLASH:
        raise ValueError(f"the offset {offset:#x} is inside the firmware's part of the flash "
                         f"(boot loader and program, below {FIRMWARE_FLASH:#x}): the firmware "
                         f"looks for the model at {MODEL_OFFSET:#x}")
    check_fits(len(model), room.model_room, model_name, room.place)
    start = FLASH_BASE + offset
    end = start + -(-len(model) // SECTOR) * SECTOR        # the sectors the model will erase
    pieces = []
    if firmware is not None:
        for block in uf2.decode(firmware, firmware_name):
            if block.family_id != uf2.RP2040_FAMILY:
                found = ("has no family id" if block.family_id is None
                         else f"is for family {block.family_id:#x}")
                raise ValueError(f"{firmware_name} is not an RP2040 firmware: its block "
                                 f"{block.block_no} {found} (the RP2040's is "
                                 f"{uf2.RP2040_FAMILY:#x})")
            if block.address < end and block.address + len(block.payload) > start:
                raise ValueError(f"{firmware_name} writes at {block.address:#x}, where the "
                                 f"model goes ({start:#x} to {end:#x}): pass a larger --offset")
            pieces.append((block.address, block.payload))
    return uf2.encode(pieces + uf2.split(start, model), uf2.RP2040_FAMILY)


def mount_points(mounts_file: Path = Path("/proc/self/mounts")) -> list[Path]:
    """Where the system mounts drives: every mount point Linux lists, the usual folders for
    removable drives on Linux and macOS, and drive letters on Windows."""
    points = []
    try:
        mounts = mounts_file.read_text()
    except OSError:
        mounts = ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) > 1:   # a space in a mount point is written \040, a tab \011, ...
            points.append(Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1])))
    for pattern in ("/media/*", "/media/*/*", "/run/media/*/*", "/Volumes/*"):
        points += map(Path, glob(pattern))
    if os.name == "nt":
        points += [Path(f"{letter}:\\") for letter in string.ascii_uppercase]
    return points


def is_bootsel_drive(path: Path) -> bool:
    try:
        return BOARD_ID in (path / "INFO_UF2.TXT").read_text(errors="replace")
    except OSError:
        return False


def find_drives(points: list[Path]) -> list[Path]:
    return list(dict.fromkeys(p for p in points if is_bootsel_drive(p)))


def copy_to_drive(uf2_path: Path, drive: Path) -> None:
    data = uf2_path.read_bytes()
    free = shutil.disk_usage(drive).free
    if free < len(data):
        raise OSError(f"{drive} has {free:,} bytes free, {len(data):,} are needed: it is not "
                      "an RP2040's drive, or the board is not in BOOTSEL mode")
    target = drive / uf2_path.name
    try:
        # fsync: the board takes the file as its blocks arrive, not when the system gets
        # round to writing its cache; it restarts by itself once it has them all.
        with open(target, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        target.unlink(missing_ok=True)    # no half a UF2 left behind
        raise


def deliver(uf2_path: Path, drive: Path | None, echo) -> None:
    if drive is not None and not is_bootsel_drive(drive):
        raise ValueError(f"{drive} is not the drive of an RP2040 in BOOTSEL mode "
                         f"(it has no INFO_UF2.TXT saying {BOARD_ID})")
    drives = [drive] if drive is not None else find_drives(mount_points())
    if len(drives) > 1:
        raise OSError(f"several RP2040 drives are mounted ({', '.join(map(str, drives))}): "
                      "pass --drive with the one to use")
    if drives:
        copy_to_drive(uf2_path, drives[0])
        echo(f"copied {uf2_path.name} onto {drives[0]}: the board restarts with it")
        return
    picotool = shutil.which("picotool")
    if picotool:
        # -f: a board running pico-sdk USB stdio is rebooted into BOOTSEL for the load;
        # -v: read back and compare; -x: start the firmware afterwards.
        result = subprocess.run([picotool, "load", "-v", "-x", str(uf2_path), "-f"])
        if result.returncode != 0:
            raise OSError(f"picotool load failed (exit status {result.returncode}); hold "
                          f"BOOTSEL while plugging the board in and copy {uf2_path} onto "
                          "its RPI-RP2 drive instead")
        echo(f"loaded {uf2_path.name} with picotool")
        return
    echo(f"No RP2040 drive is mounted and picotool is not installed. To flash {uf2_path}:\n"
         "hold the BOOTSEL button while plugging the board in; it shows up as a drive named "
         "RPI-RP2; copy the file onto it (or run this command again then). The board "
         "restarts by itself once the copy is done.\n"
         "The board also needs the tinylm firmware, unless it already runs it: build it "
         "(firmware_rp2040/README.md) and pass --firmware build/tinylm.uf2 to write both.")


def flash_rp2040(model_path: str | Path, drive: str | Path | None = None,
                 firmware: str | Path | None = None, offset: int = MODEL_OFFSET,
                 flash_size: int = FLASH_SIZE, out: str | Path | None = None, context: int = 0,
                 echo=print) -> Path:
    model_path = Path(model_path)
    plan = memplan.check(model_path, "rp2040", flash_room(offset, flash_size), context, echo=echo)
    image = model_uf2(read_model(model_path), offset, flash_size,
                      None if firmware is None else Path(firmware).read_bytes(),
                      str(model_path), str(firmware))
    uf2_path = Path(out) if out is not None else model_path.with_suffix(".uf2")
    atomic_write(uf2_path, lambda f: f.write(image))
    contents = f"{model_path.name} at {FLASH_BASE + offset:#x}"
    if firmware is not None:
        contents = f"{Path(firmware).name} and {contents}"
    echo(f"wrote {uf2_path} ({len(image) // uf2.BLOCK_SIZE} blocks): {contents}")
    if plan:
        built = f" (a firmware built with -DTLM_CONTEXT={context})" if context else ""
        echo(f"on the board{built}: {plan.context} tokens of context, {plan.sram_weights:,} "
             f"bytes of the model in SRAM, {plan.flash_weight_bytes:,} bytes of weights read "
             "from flash per token (@ready says the same)")
    deliver(uf2_path, Path(drive) if drive is not None else None, echo)
    return uf2_path
