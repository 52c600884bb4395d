"""`tinylm flash esp32`: write a model into the model partition of an ESP32 with esptool.

The model goes to the partition named "model" of the board's partition table (see
esp32_partitions.csv, the firmware's, and docs/flashing.md). With --firmware, the bootloader,
partition table and app of an `idf.py build` folder go in the same run, and the partition
table is then the one in that build, since that is the table the board will have.

Every check runs before esptool is started, so nothing reaches the board unless all pass: the
table has a model partition, the model fits in it and its runtime in the chip's RAM (the memory
planner, memplan.py), the build folder is complete. esptool then
erases and writes each region and verifies it by comparing the MD5 of what the flash holds
with the MD5 of the file (its write-flash does this for every file).
"""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..optional import FLASH_EXTRA, MissingPackage
from . import memplan
from . import partitions as pt
from .model_image import check_fits, read_model
from .serial_ports import find_board_port, system_ports

MODEL_PARTITION = "model"
DEFAULT_PARTITIONS = Path(__file__).resolve().parent / "esp32_partitions.csv"   # the firmware's
BUILD_IMAGES = ("bootloader", "partition-table", "app")   # the entries of flasher_args.json
FLASH_SIZE = 4 << 20       # the flash esp32_partitions.csv is laid out for
ESPTOOL_MAJOR = 5          # the version whose command line (write-flash, --flash-mode) we use


@dataclass
class FirmwareBuild:
    """What `idf.py build` left for flashing, read from its flasher_args.json."""
    images: list[tuple[int, Path]]       # (flash offset, file), bootloader first
    flash_settings: list[str]            # esptool options for the bootloader's header
    chip: str | None
    partition_table: list[pt.Partition]
    table_path: Path


def read_build(directory: str | Path) -> FirmwareBuild:
    directory = Path(directory)
    args_path = directory / "flasher_args.json"
    if not args_path.is_file():
        raise ValueError(f"{directory} has no flasher_args.json: --firmware takes the build "
                         "folder of `idf.py build` (e.g. firmware_esp32/build)")
    try:
        args = json.loads(args_path.read_text(encoding="utf-8"))
        entries = {name: (int(args[name]["offset"], 0), directory / args[name]["file"])
                   for name in BUILD_IMAGES}
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{args_path} is not the flasher_args.json of an ESP-IDF build "
                         f"({type(e).__name__}: {e})") from None
    for name, (_, path) in entries.items():
        if not path.is_file():
            raise FileNotFoundError(f"the {name} image {path} named by {args_path} is missing: "
                                    "run `idf.py build` again")
    table_path = entries["partition-table"][1]
    # Only the settings esptool writes into the bootloader's header; "keep" is its default.
    settings = args.get("flash_settings", {})
    options = [item for key in ("flash_mode", "flash_freq", "flash_size") if key in settings
               for item in ("--" + key.replace("_", "-"), settings[key])]
    return FirmwareBuild(images=list(entries.values()), flash_settings=options,
                         chip=args.get("extra_esptool_args", {}).get("chip"),
                         partition_table=pt.parse_binary(table_path.read_bytes(), str(table_path)),
                         table_path=table_path)


def model_partition(partitions_csv: str | Path | None,
                    build: FirmwareBuild | None) -> pt.Partition:
    """The model partition of the table the board will have after flashing."""
    if build is None:
        csv = Path(partitions_csv or DEFAULT_PARTITIONS)
        if not csv.is_file():
            raise FileNotFoundError(f"no partition table at {csv}: pass --partitions with the "
                                    "partitions.csv the firmware was built with")
        return pt.find(pt.read_csv(csv), MODEL_PARTITION, str(csv))
    partition = pt.find(build.partition_table, MODEL_PARTITION, str(build.table_path))
    if partitions_csv is not None:
        # Both given: they must agree, or the model would land where the firmware won't look.
        expected = pt.find(pt.read_csv(partitions_csv), MODEL_PARTITION, str(partitions_csv))
        if (expected.offset, expected.size) != (partition.offset, partition.size):
            raise ValueError(
                f"{partitions_csv} puts the model partition at {expected.offset:#x} "
                f"({expected.size:#x} bytes) but the build's table {build.table_path} at "
                f"{partition.offset:#x} ({partition.size:#x} bytes): rebuild the firmware "
                "with this table, or leave out --partitions")
    return partition


def flash_room(partition: pt.Partition, flash_size: int = FLASH_SIZE) -> memplan.FlashRoom:
    """Where the model goes in an ESP32's flash: its partition."""
    if partition.end > flash_size:
        raise ValueError(f"the {MODEL_PARTITION} partition ends at {partition.end:#x}, past the "
                         f"end of the flash ({flash_size:#x} bytes): shrink it in the table")
    return memplan.FlashRoom(flash_size, partition.offset, partition.size,
                             f"the {MODEL_PARTITION} partition at {partition.offset:#x}",
                             "a larger model partition (tinylm/boards/esp32_partitions.csv)")


def planned_board(chip: str, build: FirmwareBuild | None) -> str:
    """The chip whose memory the check uses: the one named, the build's, or else the plain
    ESP32, the one with the least internal RAM for the arena."""
    if chip == "auto":
        chip = build.chip if build is not None and build.chip else "esp32"
    if chip not in memplan.BOARDS:
        raise ValueError(f"no memory figures for {chip} (known: {', '.join(memplan.BOARDS)})")
    return chip


def check_esptool() -> None:
    try:
        version = importlib.metadata.version("esptool")
    except importlib.metadata.PackageNotFoundError:
        raise MissingPackage(f"flashing an ESP32 needs esptool, which is not installed: "
                             f"{FLASH_EXTRA}") from None
    if int(version.split(".")[0]) < ESPTOOL_MAJOR:
        raise MissingPackage(f"esptool {version} is too old (tinylm needs {ESPTOOL_MAJOR} or "
                             f"newer): pip install -U esptool")


def esptool_command(port: str, baud: int, chip: str, images: list[tuple[int, Path]],
                    flash_settings: list[str]) -> list[str]:
    addresses = [str(item) for offset, path in images for item in (hex(offset), path)]
    return [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud", str(baud),
            "write-flash", *flash_settings, *addresses]


def flash_esp32(model_path: str | Path, port: str = "auto", baud: int = 921600,
                chip: str = "auto", partitions_csv: str | Path | None = None,
                firmware: str | Path | None = None, context: int = 0, psram: int = 0,
                echo=print) -> None:
    model = read_model(model_path)
    build = read_build(firmware) if firmware is not None else None
    partition = model_partition(partitions_csv, build)
    # Only esptool learns the board's flash size; the table is trusted to fit in it.
    room = flash_room(partition, max(FLASH_SIZE, partition.end))
    memplan.check(model_path, planned_board(chip, build), room, context, psram, echo)
    check_fits(len(model), room.model_room, str(model_path), room.place)
    images = [(partition.offset, Path(model_path))]
    flash_settings = []
    if build is not None:
        if chip == "auto" and build.chip:
            chip = build.chip            # esptool then refuses a board of another kind
        elif build.chip and chip != build.chip:
            raise ValueError(f"--chip {chip}, but the firmware in {firmware} was built for "
                             f"{build.chip}")
        images = build.images + images
        flash_settings = build.flash_settings
    check_esptool()
    if port == "auto":
        port = find_board_port(system_ports())
    firmware_too = "" if build is None else f"the firmware of {firmware}, and "
    echo(f"writing {firmware_too}{model_path} ({len(model):,} bytes) to the {MODEL_PARTITION} "
         f"partition at {partition.offset:#x} ({partition.size:,} bytes) through {port}")
    result = subprocess.run(esptool_command(port, baud, chip, images, flash_settings))
    if result.returncode != 0:
        raise OSError(f"esptool failed (exit status {result.returncode}); its messages above "
                      "say why")
    echo(f"done: the board restarts with {Path(model_path).name}")
