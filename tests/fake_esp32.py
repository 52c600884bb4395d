"""A stand-in for an ESP32 in its ROM serial loader, reached over loopback TCP.

esptool talks to it through `--port socket://127.0.0.1:PORT` exactly as it talks to a board:
SLIP frames carrying commands, answered as the ROM answers them (and, once esptool has
uploaded and started its flasher stub, as the stub answers them). Behind it is a 4 MiB flash
image that behaves like NOR flash: erasing sets whole 4 KiB sectors to 0xFF, and writing can
only clear bits. The image starts out as random bytes, so a test can tell exactly which bytes
a flashing run changed.

What it models, and why each part is needed:
- SYNC, and READ_REG of 0x40001000 (the chip-detect magic 0x00F01D83 that makes esptool
  say "ESP32"); GET_SECURITY_INFO is refused, as the ESP32 ROM refuses it, which is what sends
  esptool to the magic register. The UART clock divider reads as set for a 40 MHz crystal;
  other registers read as 0 (eFuses: an ESP32 revision 0).
- WRITE_REG/READ_REG of the SPI controller: esptool runs flash commands through it (JEDEC ID
  to learn the flash size, SFDP to check the flash answers).
- MEM_BEGIN/MEM_DATA/MEM_END: the upload of esptool's flasher stub; MEM_END with an entry
  point "starts" it, after which the loader greets with OHAI and answers in the stub's format
  (2 status bytes instead of 4, raw instead of hex MD5).
- SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUDRATE: acknowledged (a socket has no baud rate).
- FLASH_BEGIN/FLASH_DATA/FLASH_END and their deflate-compressed FLASH_DEFL_* forms, and
  SPI_FLASH_MD5, which esptool uses to verify what it wrote.
Anything else is refused with the ROM's "invalid command" status, as a real chip would.
"""
from __future__ import annotations

import hashlib
import random
import socket
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Callable

FLASH_SIZE = 4 << 20
SECTOR = 0x1000
FLASH_ID = 0x1640EF              # JEDEC: Winbond (0xEF), 0x4016: a 4 MiB part
CHIP_MAGIC_ADDR, ESP32_MAGIC = 0x40001000, 0x00F01D83
# The UART clock divider the ROM set for 115200 Bd from a 40 MHz crystal: esptool reads it to
# report the crystal frequency.
UART_CLKDIV_ADDR, UART_CLKDIV_40MHZ = 0x3FF40014, 347
SPI_BASE = 0x3FF42000            # the ESP32's SPI0 registers, as esptool addresses them
SPI_CMD, SPI_ADDR, SPI_USR2, SPI_W0 = SPI_BASE, SPI_BASE + 0x04, SPI_BASE + 0x24, SPI_BASE + 0x80
SPI_CMD_USR = 1 << 18
SFDP_SIGNATURE = 0x50444653      # "SFDP", what a flash chip returns at SFDP address 0
SPIFLASH_RDID, SPIFLASH_RDSFDP = 0x9F, 0x5A

SYNC, READ_REG, WRITE_REG = 0x08, 0x0A, 0x09
MEM_BEGIN, MEM_END, MEM_DATA = 0x05, 0x06, 0x07
FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x02, 0x03, 0x04
FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, FLASH_DEFL_END = 0x10, 0x11, 0x12
SPI_SET_PARAMS, SPI_ATTACH, CHANGE_BAUDRATE, SPI_FLASH_MD5 = 0x0B, 0x0D, 0x0F, 0x13
INVALID_MESSAGE, BAD_CHECKSUM = 0x05, 0x06     # ROM error codes


class Refused(Exception):
    """A command the loader answers with a failure status carrying this error code."""

    def __init__(self, code: int):
        self.code = code


def slip_frames(sock: socket.socket):
    """Yield each SLIP-framed packet from the connection until it closes."""
    packet, escaped, inside = bytearray(), False, False
    while chunk := sock.recv(65536):
        for byte in chunk:
            if byte == 0xC0:
                if inside and packet:
                    yield bytes(packet)
                packet, inside = bytearray(), True
            elif escaped:
                packet.append({0xDC: 0xC0, 0xDD: 0xDB}[byte])
                escaped = False
            elif byte == 0xDB:
                escaped = True
            elif inside:
                packet.append(byte)


def slip(packet: bytes) -> bytes:
    return b"\xc0" + packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


def checksum(data: bytes) -> int:
    state = 0xEF
    for byte in data:
        state ^= byte
    return state


@dataclass
class Write:
    """A flash write under way: where it goes, and how its data arrives."""
    offset: int
    block_size: int
    inflate: Callable[[bytes], bytes] | None = None   # a compressed write's decompressor
    written: int = 0                           # bytes written so far (compressed writes)
    next_seq: int = 0


@dataclass
class FakeESP32:
    """The loader's state: flash, registers, and a log of what esptool asked for."""
    flash: bytearray = field(
        default_factory=lambda: bytearray(random.Random(0).randbytes(FLASH_SIZE)))
    registers: dict[int, int] = field(default_factory=lambda: {
        CHIP_MAGIC_ADDR: ESP32_MAGIC, UART_CLKDIV_ADDR: UART_CLKDIV_40MHZ})
    stub_running: bool = False
    connections: int = 0
    commands: list[int] = field(default_factory=list)
    verified: list[tuple[int, int]] = field(default_factory=list)  # (offset, size) of each MD5
    write: Write | None = None

    # ---- the connection -----------------------------------------------------------------

    def serve(self, sock: socket.socket) -> None:
        self.connections += 1
        self.stub_running = False      # a new connection is a chip reset into the ROM loader
        for packet in slip_frames(sock):
            if len(packet) < 8 or packet[0] != 0:
                continue
            op, size, chk = struct.unpack_from("<xBHI", packet)
            data = packet[8:8 + size]
            self.commands.append(op)
            if op == SYNC:
                # The ROM answers a SYNC eight times, with a non-zero value; the stub with 0.
                for _ in range(8):
                    sock.sendall(self.response(op, b"", value=0 if self.stub_running else 0x1207))
                continue
            try:
                value, payload = self.execute(op, data, chk)
                sock.sendall(self.response(op, payload, value=value))
            except Refused as e:
                sock.sendall(self.response(op, b"", status=(1, e.code)))
            if op == MEM_END and not struct.unpack_from("<I", data)[0]:
                self.stub_running = True       # esptool's stub starts and says hello
                sock.sendall(slip(b"OHAI"))

    def response(self, op: int, payload: bytes, value: int = 0, status=(0, 0)) -> bytes:
        # Status bytes follow the payload: 4 from the ESP32 ROM (2 reserved), 2 from the stub.
        status_bytes = bytes(status) + (b"" if self.stub_running else b"\0\0")
        body = payload + status_bytes
        return slip(struct.pack("<BBHI", 1, op, len(body), value) + body)

    # ---- the commands -------------------------------------------------------------------

    def execute(self, op: int, data: bytes, chk: int) -> tuple[int, bytes]:
        """Carry out one command; return the response's value field and payload."""
        if op == READ_REG:
            return self.registers.get(struct.unpack("<I", data)[0], 0), b""
        if op == WRITE_REG:
            for offset in range(0, len(data), 16):
                self.write_register(*struct.unpack_from("<III", data, offset))
            return 0, b""
        if op in (MEM_BEGIN, MEM_END, SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUDRATE):
            return 0, b""
        if op in (MEM_DATA, FLASH_DATA, FLASH_DEFL_DATA):
            size, seq = struct.unpack_from("<II", data)
            block = data[16:16 + size]
            if len(block) != size or checksum(block) != chk:
                raise Refused(BAD_CHECKSUM)
            if op != MEM_DATA:
                self.write_block(seq, block)
            return 0, b""
        if op in (FLASH_BEGIN, FLASH_DEFL_BEGIN):
            size, _, block_size, offset = struct.unpack_from("<IIII", data)
            self.erase(offset, size)
            self.write = Write(offset, block_size,
                               zlib.decompressobj().decompress if op == FLASH_DEFL_BEGIN
                               else None)
            return 0, b""
        if op in (FLASH_END, FLASH_DEFL_END):
            self.write = None
            return 0, b""
        if op == SPI_FLASH_MD5:
            offset, size = struct.unpack_from("<II", data)
            self.verified.append((offset, size))
            digest = hashlib.md5(self.flash[offset:offset + size])
            return 0, digest.digest() if self.stub_running else digest.hexdigest().encode()
        raise Refused(INVALID_MESSAGE)

    def write_register(self, address: int, value: int, mask: int) -> None:
        old = self.registers.get(address, 0)
        self.registers[address] = (old & ~mask) | (value & mask)
        if address == SPI_CMD and value & SPI_CMD_USR:
            self.run_spi_flash_command()

    def run_spi_flash_command(self) -> None:
        """What the flash chip answers into W0 for a command esptool runs; then done."""
        command = self.registers.get(SPI_USR2, 0) & 0xFF
        address = self.registers.get(SPI_ADDR, 0) >> 8     # 24 address bits, sent MSB first
        answers = {SPIFLASH_RDID: FLASH_ID,
                   SPIFLASH_RDSFDP: SFDP_SIGNATURE if address == 0 else 0}
        self.registers[SPI_W0] = answers.get(command, 0)
        self.registers[SPI_CMD] &= ~SPI_CMD_USR

    def erase(self, offset: int, size: int) -> None:
        start = offset - offset % SECTOR
        end = min(-(-(offset + size) // SECTOR) * SECTOR, FLASH_SIZE)
        self.flash[start:end] = b"\xff" * max(0, end - start)

    def write_block(self, seq: int, block: bytes) -> None:
        write = self.write
        if write is None or seq != write.next_seq:
            raise Refused(INVALID_MESSAGE)
        write.next_seq += 1
        if write.inflate is None:
            address = write.offset + seq * write.block_size
        else:
            block = write.inflate(block)
            address = write.offset + write.written
            write.written += len(block)
        end = address + len(block)
        if end > FLASH_SIZE:
            raise Refused(INVALID_MESSAGE)
        # NOR flash: programming can only turn 1 bits into 0 bits.
        old = int.from_bytes(self.flash[address:end], "little")
        new = old & int.from_bytes(block, "little")
        self.flash[address:end] = new.to_bytes(len(block), "little")


class LoopbackLoader:
    """FakeESP32 served on 127.0.0.1 (one connection at a time) until closed."""

    def __init__(self, chip: FakeESP32 | None = None):
        self.chip = chip or FakeESP32()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)     # to notice close() between connections
        self.port = self.server.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self) -> None:
        while not self.closing.is_set():
            try:
                sock, _ = self.server.accept()
            except TimeoutError:
                continue
            sock.settimeout(None)
            with sock:
                self.chip.serve(sock)

    def close(self) -> None:
        self.closing.set()
        self.thread.join(timeout=5)
        self.server.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
