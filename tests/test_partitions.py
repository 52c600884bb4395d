"""ESP-IDF partition tables, CSV and binary, read the way ESP-IDF's gen_esp32part.py reads them."""
import hashlib
import struct
from pathlib import Path

import pytest

from tinylm.boards.partitions import (
    APP,
    DATA,
    Partition,
    PartitionTableError,
    find,
    parse_binary,
    parse_csv,
    parse_number,
    read_csv,
)

ROOT = Path(__file__).resolve().parents[1]
K, M = 1 << 10, 1 << 20


def table_binary(partitions) -> bytes:
    """The partition-table.bin an ESP-IDF build would make of these partitions."""
    entries = b"".join(struct.pack("<2sBBII16sI", b"\xaa\x50", p.type, p.subtype, p.offset,
                                   p.size, p.name.encode(), 0) for p in partitions)
    md5 = b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(entries).digest()
    return (entries + md5).ljust(0xC00, b"\xff")


@pytest.mark.parametrize("text, value", [
    ("4096", 4096), ("0x1000", 4096), ("4K", 4096), ("4k", 4096), ("1M", M), (" 0x10 M ", 16 * M),
])
def test_numbers(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", "1G", "0x", "-1", "1.5M", "ten"])
def test_not_numbers(text):
    with pytest.raises(ValueError, match="not a number of bytes"):
        parse_number(text)


def test_the_firmware_table_has_a_model_partition_after_the_app():
    table = read_csv(ROOT / "tinylm" / "boards" / "esp32_partitions.csv")
    assert [p.name for p in table] == ["nvs", "phy_init", "factory", "model"]
    model = find(table, "model", "table")
    assert (model.type, model.subtype) == (DATA, 0x06)          # data, undefined
    assert model.offset == 0x110000 and model.offset % 0x10000 == 0
    assert model.end == 4 * M                                   # fills a 4 MB flash


def test_blank_offsets_follow_the_previous_partition_aligned_by_type():
    table = parse_csv("""
        # Name, Type, SubType, Offset, Size, Flags
        nvs,      data, nvs,      ,  0x5000
        factory,  app,  factory,  ,  0x100800
        model,    data, ,         ,  64K,     readonly
        custom,   0x40, 0x01,     ,  4K,      encrypted:readonly
        ota_1,    app,  ota_1,    ,  1M
    """)
    assert [(p.name, p.offset, p.size) for p in table] == [
        ("nvs", 0x9000, 0x5000),             # the first free byte after the table at 0x8000
        ("factory", 0x10000, 0x100800),      # 0xe000 rounded up to 64 KiB for an app
        ("model", 0x111000, 0x10000),        # 0x110800 rounded up to a 4 KiB sector
        ("custom", 0x121000, 0x1000),
        ("ota_1", 0x130000, M),
    ]
    assert table[2].subtype == 0x06 and table[2].flags == {"readonly"}
    assert (table[3].type, table[3].subtype) == (0x40, 0x01)
    assert (table[4].type, table[4].subtype) == (APP, 0x11)


def test_the_table_offset_moves_blank_offsets():
    table = parse_csv("nvs, data, nvs, , 0x6000\nfactory, app, factory, , 1M", table_offset=0x10000)
    assert [p.offset for p in table] == [0x11000, 0x20000]


@pytest.mark.parametrize("csv, message", [
    ("factory, app, factory, 0x11000, 1M",
     "line 1: partition factory at 0x11000 is not aligned to 0x10000"),
    ("nvs, data, nvs, 0x9800, 0x1000", "not aligned to 0x1000"),
    ("nvs, data, nvs, 0x8000, 0x1000", "starts at 0x8000, inside the partition table"),
    ("nvs, data, nvs, 0x9000, 0x6000\nphy, data, phy, 0xe000, 0x1000",
     "line 2: phy starts at 0xe000, inside nvs (free space starts at 0xf000)"),
    ("a, data, nvs, , 4K\na, data, phy, , 4K", "line 2: a second partition named a"),
    ("x, code, factory, , 1M", "unknown type 'code' (known: app, data)"),
    ("x, app, nvs, , 1M", "unknown SubType 'nvs' (known: factory, test, ota_0"),
    ("x, app, , , 1M", "app partition x needs a SubType"),
    ("x, data, nvs", "partition x has no size"),
    ("x, data, nvs, , lots", "'lots' is not a number of bytes"),
    ("x, data, nvs, , 4K, secret", "unknown flag secret"),
    ("x, 0x1ff, 0, , 4K", "type 0x1ff is out of range"),
    ("# only a comment\n", "lists no partitions"),
])
def test_mistakes_are_reported_with_their_line(csv, message):
    with pytest.raises(PartitionTableError, match="t.csv") as e:
        parse_csv(csv, "t.csv")
    assert message in str(e.value)


def test_binary_table_round_trip():
    table = read_csv(ROOT / "tinylm" / "boards" / "esp32_partitions.csv")
    assert parse_binary(table_binary(table)) == table


def test_damaged_binary_tables_are_refused():
    data = bytearray(table_binary([Partition("model", DATA, 6, 0x110000, 0x2F0000)]))
    data[12] ^= 1                                   # a bit of the size flips
    with pytest.raises(PartitionTableError, match="MD5 checksum does not match"):
        parse_binary(bytes(data))
    with pytest.raises(PartitionTableError, match="not a partition"):
        parse_binary(b"\x00" * 64)


def test_find_names_the_partitions_there_are():
    with pytest.raises(PartitionTableError, match="no partition named 'model' .*nvs, factory"):
        find(parse_csv("nvs, data, nvs, , 4K\nfactory, app, factory, , 1M"), "model", "t.csv")
