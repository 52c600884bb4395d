"""The model file as it goes into a board's flash.

The flashers write the .bin byte for byte; the firmware checks it when it starts (docs/format.md
specifies the file). What the host checks first is what decides whether writing can succeed at
all: that the file is there and not empty, and that it fits in the room the board has for it.
"""
from __future__ import annotations

from pathlib import Path


def read_model(path: str | Path) -> bytes:
    data = Path(path).read_bytes()
    if not data:
        raise ValueError(f"{path} is empty")
    return data


def check_fits(size: int, room: int, model: str, place: str) -> None:
    """Refuse a model of `size` bytes for a place with `room` bytes, saying by how much."""
    if size > room:
        raise ValueError(f"{model} does not fit: it is {size:,} bytes, {size - room:,} more "
                         f"than the {room:,} that {place} holds")
