"""ESP-IDF partition tables: the CSV a firmware project is built from, and the binary the build
writes to flash at 0x8000.

The CSV rules are ESP-IDF's (its partition table guide and gen_esp32part.py):

- One partition per line: `Name, Type, SubType, Offset, Size, Flags`. Whitespace around a field
  is ignored, a line starting with `#` is a comment, and trailing fields may be left out.
- Type is `app` (0x00), `data` (0x01) or a number; SubType is a name known for that type (see
  SUBTYPES) or a number. An empty SubType of a data partition means `undefined` (0x06).
- Offset and Size are decimal, or hex with 0x, either with an optional K (x1024) or M
  (x1024 x 1024) suffix.
- A blank Offset places the partition right after the one before it (the first one after the
  partition table, which takes the whole 4 KiB sector at 0x8000), rounded up to 0x10000 for an
  app partition (the cache maps code in 64 KiB pages) and to 0x1000 (a flash sector) for the
  others. A given offset must have that alignment too.
- Partitions may not overlap, nor start below the end of the partition table; names are unique.
- Flags: `encrypted`, `readonly`, separated by colons.

ESP-IDF 5.3's `bootloader` and `partition_table` partition types are not supported.
"""
from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from pathlib import Path

TABLE_OFFSET = 0x8000         # ESP-IDF's default CONFIG_PARTITION_TABLE_OFFSET
TABLE_SECTOR = 0x1000         # the table fills one flash sector
APP, DATA = 0x00, 0x01
TYPES = {"app": APP, "data": DATA}
SUBTYPES = {
    APP: {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}},
    DATA: {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
           "efuse": 0x05, "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82,
           "littlefs": 0x83},
}
APP_ALIGN, DATA_ALIGN = 0x10000, 0x1000
FLAG_BITS = {"encrypted": 0, "readonly": 1}

# The binary table: 32-byte entries, then an MD5 entry over them, then 0xFF padding.
ENTRY = struct.Struct("<2sBBII16sI")
ENTRY_MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14


class PartitionTableError(ValueError):
    """A partition table that ESP-IDF would reject; the message says where and why."""


@dataclass(frozen=True)
class Partition:
    name: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: frozenset[str] = frozenset()

    @property
    def end(self) -> int:
        return self.offset + self.size


def parse_number(text: str) -> int:
    """A size or offset as ESP-IDF writes them: '65536', '0x10000', '64K', '1M'."""
    match = re.fullmatch(r"\s*(0x[0-9a-f]+|[0-9]+)\s*([km]?)\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"{text.strip()!r} is not a number of bytes (e.g. 4096, 0x1000, 4K, 1M)")
    digits, suffix = match.groups()
    return int(digits, 0) * {"": 1, "k": 1 << 10, "m": 1 << 20}[suffix.lower()]


def alignment(type_: int) -> int:
    return APP_ALIGN if type_ == APP else DATA_ALIGN


def read_csv(path: str | Path, table_offset: int = TABLE_OFFSET) -> list[Partition]:
    return parse_csv(Path(path).read_text(encoding="utf-8"), str(path), table_offset)


def parse_csv(text: str, source: str = "partition table",
              table_offset: int = TABLE_OFFSET) -> list[Partition]:
    """The partitions of a CSV table, with blank offsets filled in, checked as ESP-IDF does."""
    partitions: list[Partition] = []
    next_free = table_offset + TABLE_SECTOR
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            partition = parse_line(line, next_free)
        except ValueError as e:
            raise PartitionTableError(f"{source}, line {line_no}: {e}") from None
        if partition.offset < next_free:
            raise PartitionTableError(
                f"{source}, line {line_no}: {partition.name} starts at {partition.offset:#x}, "
                f"inside {'the partition table' if not partitions else partitions[-1].name} "
                f"(free space starts at {next_free:#x})")
        if partition.name in (p.name for p in partitions):
            raise PartitionTableError(f"{source}, line {line_no}: a second partition "
                                      f"named {partition.name}")
        partitions.append(partition)
        next_free = partition.end
    if not partitions:
        raise PartitionTableError(f"{source} lists no partitions")
    return partitions


def parse_line(line: str, next_free: int) -> Partition:
    """One CSV line; a blank offset becomes `next_free` rounded up to the type's alignment."""
    fields = [f.strip() for f in line.split(",")]
    fields += [""] * (6 - len(fields))
    name, type_text, subtype_text, offset_text, size_text, flags_text = fields[:6]
    if not name:
        raise ValueError("the partition has no name")
    type_ = lookup(type_text, TYPES, "type")
    if not subtype_text:
        if type_ == APP:
            raise ValueError(f"app partition {name} needs a SubType (factory, ota_0, ...)")
        subtype_text = "undefined"
    subtype = lookup(subtype_text, SUBTYPES.get(type_, {}), "SubType")
    if not size_text:
        raise ValueError(f"partition {name} has no size")
    size = parse_number(size_text)
    align = alignment(type_)
    if offset_text:
        offset = parse_number(offset_text)
        if offset % align:
            raise ValueError(f"partition {name} at {offset:#x} is not aligned to {align:#x}")
    else:
        offset = -(-next_free // align) * align
    flags = frozenset(f for f in flags_text.split(":") if f)
    unknown = flags - FLAG_BITS.keys()
    if unknown:
        raise ValueError(f"unknown flag {', '.join(sorted(unknown))} (known: encrypted, readonly)")
    return Partition(name, type_, subtype, offset, size, flags)


def lookup(text: str, names: dict[str, int], what: str) -> int:
    """A field given by name or as a number 0-254."""
    if text.lower() in names:
        return names[text.lower()]
    try:
        value = int(text, 0)
    except ValueError:
        known = ", ".join(names) if names else "a number"
        raise ValueError(f"unknown {what} {text!r} (known: {known})") from None
    if not 0 <= value <= 0xFE:
        raise ValueError(f"{what} {text} is out of range 0-254")
    return value


def parse_binary(data: bytes, source: str = "partition table") -> list[Partition]:
    """The partitions of a binary table (partition-table.bin of an ESP-IDF build)."""
    partitions = []
    md5 = hashlib.md5()
    for start in range(0, len(data) - ENTRY.size + 1, ENTRY.size):
        entry = data[start:start + ENTRY.size]
        if entry == b"\xff" * ENTRY.size:
            break
        if entry.startswith(MD5_MAGIC):
            if entry[16:] != md5.digest():
                raise PartitionTableError(f"{source}: the MD5 checksum does not match (damaged)")
            continue
        magic, type_, subtype, offset, size, name, flag_bits = ENTRY.unpack(entry)
        if magic != ENTRY_MAGIC:
            raise PartitionTableError(f"{source}: entry {start // ENTRY.size} is not a "
                                      "partition (is this an ESP-IDF partition table?)")
        md5.update(entry)
        flags = frozenset(f for f, bit in FLAG_BITS.items() if flag_bits >> bit & 1)
        partitions.append(Partition(name.rstrip(b"\0").decode("utf-8", "replace"), type_,
                                    subtype, offset, size, flags))
    if not partitions:
        raise PartitionTableError(f"{source} lists no partitions")
    return partitions


def find(partitions: list[Partition], name: str, source: str) -> Partition:
    for partition in partitions:
        if partition.name == name:
            return partition
    raise PartitionTableError(f"{source} has no partition named {name!r} "
                              f"(it has {', '.join(p.name for p in partitions)})")
