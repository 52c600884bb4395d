"""Boards: planning memory, flashing, talking over a serial line, and emulated boards.

memplan.py (does a model fit a board's flash and SRAM), targets.py (the boards by name, with
their flash room), partitions.py and esp32_flash.py
(ESP32 partition tables, esptool), uf2.py and rp2040_flash.py (RP2040 UF2 files),
model_image.py (checks before writing), serial_ports.py, protocol.py (the line protocol,
docs/protocol.md), chat.py (`tinylm chat`), host_board.py (the device loop on a
pseudo-terminal), emulation.py, emulate_rp2040.py and emulate_riscv.py (cycles and
instructions per token in emulators). Imports every room above it but the command line.
"""
