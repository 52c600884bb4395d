"""The boards a model is planned for by name (memplan.BOARDS), with the flash room `tinylm flash`
gives a model there (docs/flashing.md): what `tinylm info --target` and `tinylm search` check a
model against."""
from __future__ import annotations

from . import esp32_flash, memplan, rp2040_flash


def flash_room(board: str, flash_size: int | None = None) -> memplan.FlashRoom:
    """Where `tinylm flash` puts a model on this board, with its default flash size (2 MB for
    the RP2040, 4 MB for the ESP32s) or `flash_size`."""
    if board == "rp2040":
        return rp2040_flash.flash_room(rp2040_flash.MODEL_OFFSET,
                                       flash_size or rp2040_flash.FLASH_SIZE)
    partition = esp32_flash.model_partition(None, None)
    return esp32_flash.flash_room(partition, flash_size or esp32_flash.FLASH_SIZE)
