"""UF2, the file format of drag-and-drop flashing: what a board in its USB bootloader (the
RP2040's BOOTSEL mode) takes when a file is copied onto the drive it shows.

A UF2 file is a sequence of independent 512-byte blocks. Each says where its payload goes in
the board's memory, so the blocks need no order and a board can write each one as it arrives:

    offset  size  field
         0     4  magic 0x0A324655 ("UF2\\n")
         4     4  magic 0x9E5D5157
         8     4  flags (0x2000: the family id field is present)
        12     4  target address of the payload
        16     4  payload size (256 here: the RP2040 bootloader takes nothing else)
        20     4  block number, from 0
        24     4  number of blocks in the file
        28     4  family id (which chip the block is for; RP2040: 0xE48BFF56)
        32   476  payload, then zeros
       508     4  magic 0x0AB16F30

All fields are little-endian. The block numbers let the bootloader know when it has the whole
file, so all blocks of one file are numbered together, 0 to n - 1.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

BLOCK_SIZE = 512
PAYLOAD_SIZE = 256
DATA_SIZE = 476
MAGIC_START0, MAGIC_START1, MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
FLAG_FAMILY_ID = 0x00002000
RP2040_FAMILY = 0xE48BFF56
HEADER = struct.Struct("<8I")
FOOTER = struct.Struct("<I")


class UF2Error(ValueError):
    """Bytes that are not a well-formed UF2 file."""


@dataclass(frozen=True)
class Block:
    address: int
    payload: bytes
    block_no: int
    num_blocks: int
    family_id: int | None    # None when the block does not carry one
    flags: int


def split(address: int, data: bytes) -> list[tuple[int, bytes]]:
    """`data` placed at `address`, as (address, payload) pieces of PAYLOAD_SIZE bytes; the
    last piece is padded with 0xFF, the value of erased flash."""
    return [(address + start, data[start:start + PAYLOAD_SIZE].ljust(PAYLOAD_SIZE, b"\xff"))
            for start in range(0, len(data), PAYLOAD_SIZE)]


def encode(pieces: list[tuple[int, bytes]], family_id: int) -> bytes:
    """One UF2 file holding these (address, payload) pieces, numbered in this order."""
    blocks = []
    for block_no, (address, payload) in enumerate(pieces):
        if len(payload) > DATA_SIZE:
            raise ValueError(f"a UF2 payload holds at most {DATA_SIZE} bytes, not {len(payload)}")
        blocks.append(HEADER.pack(MAGIC_START0, MAGIC_START1, FLAG_FAMILY_ID, address,
                                  len(payload), block_no, len(pieces), family_id)
                      + payload.ljust(DATA_SIZE, b"\0") + FOOTER.pack(MAGIC_END))
    return b"".join(blocks)


def decode(data: bytes, source: str = "UF2 file") -> list[Block]:
    """The blocks of a UF2 file, each checked for its magic numbers and sizes."""
    if not data or len(data) % BLOCK_SIZE:
        raise UF2Error(f"{source} is {len(data)} bytes, not a whole number of "
                       f"{BLOCK_SIZE}-byte UF2 blocks")
    blocks = []
    for start in range(0, len(data), BLOCK_SIZE):
        raw = data[start:start + BLOCK_SIZE]
        magic0, magic1, flags, address, size, block_no, num_blocks, family = HEADER.unpack_from(raw)
        (magic_end,) = FOOTER.unpack_from(raw, BLOCK_SIZE - FOOTER.size)
        where = f"{source}, block {start // BLOCK_SIZE}"
        if (magic0, magic1, magic_end) != (MAGIC_START0, MAGIC_START1, MAGIC_END):
            raise UF2Error(f"{where}: wrong magic numbers (not a UF2 file?)")
        if size > DATA_SIZE:
            raise UF2Error(f"{where}: payload size {size} is over {DATA_SIZE}")
        if block_no >= num_blocks:
            raise UF2Error(f"{where}: block number {block_no} of {num_blocks}")
        blocks.append(Block(address, raw[HEADER.size:HEADER.size + size], block_no, num_blocks,
                            family if flags & FLAG_FAMILY_ID else None, flags))
    return blocks
