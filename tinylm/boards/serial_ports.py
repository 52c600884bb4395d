"""Finding the serial port of an ESP32 board by the USB ids of its USB-serial chip.

Boards reach the computer through a USB-to-serial bridge chip, or through the chip's own USB
(Espressif's USB-Serial/JTAG on the ESP32-S3 and -C3). Each has its maker's USB vendor id and a
product id; a port whose ids are in this table is taken for a board.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..optional import require

ESPRESSIF_VID = 0x303A     # only Espressif's own USB (USB-Serial/JTAG, USB-OTG) uses it
BRIDGES = {
    (0x10C4, 0xEA60): "Silicon Labs CP210x",
    (0x10C4, 0xEA70): "Silicon Labs CP2105",
    (0x10C4, 0xEA71): "Silicon Labs CP2108",
    (0x1A86, 0x7523): "WCH CH340",
    (0x1A86, 0x5523): "WCH CH341",
    (0x1A86, 0x55D3): "WCH CH343",
    (0x1A86, 0x55D4): "WCH CH9102",
    (0x0403, 0x6001): "FTDI FT232R",
    (0x0403, 0x6010): "FTDI FT2232",
    (0x0403, 0x6011): "FTDI FT4232",
    (0x0403, 0x6014): "FTDI FT232H",
    (0x0403, 0x6015): "FTDI FT-X",
}


@dataclass(frozen=True)
class Port:
    device: str              # what to open: /dev/ttyUSB0, COM3, ...
    vid: int | None          # USB vendor and product id; None for a port that is not USB
    pid: int | None


def board_kind(port: Port) -> str | None:
    """What USB-serial chip the port belongs to, or None if it is not a known one."""
    if port.vid == ESPRESSIF_VID:
        return "Espressif USB"
    return BRIDGES.get((port.vid, port.pid))


def system_ports() -> list[Port]:
    list_ports = require("serial.tools.list_ports", "pyserial", "finding the board's port")
    return [Port(p.device, p.vid, p.pid) for p in list_ports.comports()]


def find_board_port(ports: list[Port]) -> str:
    """The one port that looks like a board; an error that says what to do otherwise."""
    boards = [(port, kind) for port in ports if (kind := board_kind(port))]
    if len(boards) == 1:
        return boards[0][0].device
    if boards:
        found = "; ".join(f"{port.device} ({kind})" for port, kind in boards)
        raise OSError(f"several serial ports look like a board: {found}. "
                      "Pass --port with the one to use")
    others = ", ".join(port.device for port in ports) or "none"
    raise OSError("no serial port looks like an ESP32 board (looked for the USB ids of "
                  "CP210x, CH340/CH9102, FTDI and Espressif USB chips; serial ports here: "
                  f"{others}). Plug the board in, or pass --port")
