"""Will a model fit on a board? The flash and SRAM a .bin needs there, and what to shrink when
it does not fit: `tinylm info MODEL.bin --target rp2040`, and the check `tinylm flash` runs
before it writes anything.

Flash: the firmware keeps the start of the flash, the model takes the room after it (on the
RP2040 from 1 MiB to the end of the flash; on an ESP32 the partition named "model"). The flash
modules (rp2040_flash, esp32_flash) say where that room is, as a FlashRoom.

SRAM: the firmware keeps a reserve (stacks, its own state, the SDK's data); the rest holds the
runtime's arena, whose size is `tlm_arena_size` (runtime.arena_bytes: activations and the int8
key/value cache, growing with the context), and a copy of weights, so that they are not read
through the flash cache. The ESP32 firmware (firmware_esp32/main/main.c) places the arena for
the model's whole context first, then copies the model into the RAM left when it fits there;
each goes to SRAM if it fits, else PSRAM (an ESP32's, --psram). The RP2040 firmwares copy the
model when it fits beside the arena for its whole context, else keep the arena for the context
(the longest that fits, or the one they are built with) and copy the longest run of the
sections every token reads that fits in the rest (`sram_plan`, tlm_plan_sram in
tinylm/runtime/csrc/serve.c: the same choice, tested to agree); a token then reads only the
other weights from flash.

The RP2040's figures come from the bare-metal build (firmware_rp2040/baremetal, the same
runtime and device loop; `arm-none-eabi-size` on the ELF that tinylm/boards/emulate_rp2040.py
builds) plus a margin for what pico-sdk adds:

- SRAM 264 KiB. Reserve 26 KiB: both cores' stacks in the two 4 KiB scratch banks, where
  pico-sdk puts them (8 KiB; the deepest stack measured in the emulator is under 2 KiB), the
  device loop's and runtime's state (.data + .bss of the bare-metal ELF: 1,640 bytes), and
  16 KiB for pico-sdk's own data (TinyUSB, stdio, the RAM vector table, code it runs from RAM),
  rounded up. The other 238 KiB are the firmware's SRAM pool (SRAM_POOL_BYTES in main.c).
- Flash: the firmware's 1 MiB before the model. The bare-metal code is 27,096 bytes (.text);
  pico-sdk with USB stdio adds some tens of KiB, far below 1 MiB.

The ESP32 figures are estimates, not measurements (no ESP-IDF firmware is built here): internal
SRAM minus what ESP-IDF keeps (code in IRAM, caches, FreeRTOS, drivers, and DRAM split into
blocks that cannot hold one arena). On the ESP32 the arena is capped by ESP-IDF's 160 KB limit
on static DRAM. With PSRAM (--psram) the arena goes there instead.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..export.binformat import ALIGN, MAGIC, BinModel, align, read_bin
from ..runtime.c_engine import arena_bytes
from .emulation import streamed_weight_bytes

KIB, MIB = 1 << 10, 1 << 20


@dataclass(frozen=True)
class Board:
    name: str
    sram: int                # on-chip SRAM
    arena_room: int          # of it, what the firmware leaves for the runtime (and a model copy)
    float_weights: bool      # has an FPU, so runs --bits 32 models
    max_psram: int = 0       # external PSRAM it can map (0: none)
    part_copies: bool = False   # its firmware copies part of the weights (sram_plan)

    @property
    def sram_reserve(self) -> int:
        return self.sram - self.arena_room


BOARDS = {b.name: b for b in [
    Board("rp2040", 264 * KIB, 238 * KIB, float_weights=False, part_copies=True),
    Board("esp32", 520 * KIB, 160 * KIB, float_weights=True, max_psram=4 * MIB),
    Board("esp32s3", 512 * KIB, 320 * KIB, float_weights=True, max_psram=32 * MIB),
    Board("esp32c3", 400 * KIB, 280 * KIB, float_weights=False),
]}


@dataclass(frozen=True)
class FlashRoom:
    """Where a model goes in a board's flash, as a flash module lays it out."""
    flash_size: int
    model_offset: int        # the firmware (and on an ESP32 its tables) lie before it
    model_room: int
    place: str               # for messages: "the flash from 0x100000 to its end at 0x200000"
    to_grow: str             # how to get more room: "a board with more flash (--flash-size)"


@dataclass
class Plan:
    model: str
    board: str
    bits: int
    context: int
    model_context: int       # the model's own; the plan's context may be shorter
    flash_size: int
    firmware_flash: int      # flash before the model
    model_bytes: int
    model_room: int
    sram: int
    sram_reserve: int
    arena_room: int          # the most the arena can have where it goes (arena_in)
    arena_bytes: int         # for `context`
    psram: int
    arena_in: str            # sram or psram
    weights: str             # where they are read from, as @ready says: sram, psram, flash
    weights_copied: int      # bytes the copy made at boot takes (0: none)
    sram_weights: int        # of the file, the bytes in SRAM (@ready's sram_weights)
    flash_weight_bytes: int  # weight bytes a token reads from flash (the XIP flash bound's)
    problems: list[str] = field(default_factory=list)   # each says what to shrink

    @property
    def fits(self) -> bool:
        return not self.problems

    def refusal(self) -> str:
        return f"{self.model} does not fit on the {self.board}: " + "; ".join(self.problems)

    def to_dict(self) -> dict:
        return dict(asdict(self), fits=self.fits)


def is_model_file(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def plan(model_path: str | Path, board_name: str, flash: FlashRoom, context: int = 0,
         psram: int = 0) -> Plan:
    """The plan of a .bin on a board for `context` tokens; 0 plans what the firmwares do:
    the longest context, up to the model's, whose arena fits."""
    board = BOARDS[board_name]
    model = read_bin(model_path)
    config = model.config
    if context > config.max_seq_len:
        raise ValueError(f"--context {context} is longer than the model's context "
                         f"({config.max_seq_len} tokens)")
    if psram and not board.max_psram:
        raise ValueError(f"the {board.name} has no PSRAM (--psram)")
    free = {"sram": board.arena_room, "psram": min(psram, board.max_psram)}
    if board.part_copies:
        sram = sram_plan(model, board.arena_room, context)
        arena_in, copy = "sram", (sram.copy_start, sram.copy_end)
        weights = "sram" if sram.copy_end - sram.copy_start == model.file_size else "flash"
    else:
        arena_place, weights = placement(free, arena_bytes(config), align(model.file_size))
        arena_in = arena_place or "sram"     # a whole context that fits nowhere: a shorter one
        copy = (0, 0 if weights == "flash" else model.file_size)
    room = free[arena_in]
    context = context or longest_context(config, room) or config.max_seq_len
    copied = copy[1] - copy[0]
    result = Plan(model=str(model_path), board=board.name, bits=model.bits, context=context,
                  model_context=config.max_seq_len,
                  flash_size=flash.flash_size, firmware_flash=flash.model_offset,
                  model_bytes=model.file_size, model_room=flash.model_room, sram=board.sram,
                  sram_reserve=board.sram_reserve, arena_room=room,
                  arena_bytes=arena_bytes(config, context), psram=psram,
                  arena_in=arena_in, weights=weights, weights_copied=align(copied),
                  sram_weights=copied if weights != "psram" else 0,
                  flash_weight_bytes=flash_weight_bytes(model, *copy))
    if model.bits == 32 and not board.float_weights:
        result.problems.append(f"float32 weights need an FPU, which the {board.name} lacks: "
                               "quantize to --bits 8 or 4")
    if model.file_size > flash.model_room:
        result.problems.append(
            f"the model is {model.file_size:,} bytes, {model.file_size - flash.model_room:,} "
            f"more than the {flash.model_room:,} that {flash.place} holds: "
            f"{smaller_file(model.bits)}, or {flash.to_grow}")
    if result.arena_bytes > room:
        memory = "PSRAM" if arena_in == "psram" else "SRAM left by the firmware"
        result.problems.append(
            f"{context} tokens of context need {result.arena_bytes:,} bytes of RAM, "
            f"{result.arena_bytes - room:,} more than the {room:,} bytes of {memory}: "
            f"{shorter_context(config, room)}"
            f"{', or a board with PSRAM (--psram)' if board.max_psram and not psram else ''}")
    return result


def placement(free: dict[str, int], whole_arena: int, model_copy: int) -> tuple:
    """Where the firmwares put the arena for the model's whole context (None: nowhere), then a
    copy of the model: each in SRAM if it fits, else in PSRAM. Weights not copied are read in
    place from flash."""
    free = dict(free)
    arena = next((place for place in free if whole_arena <= free[place]), None)
    if arena is None:
        free["sram"] = 0            # a shorter context's arena then takes all the SRAM
    else:
        free[arena] -= whole_arena
    weights = next((place for place in free if model_copy <= free[place]), "flash")
    return arena, weights


@dataclass(frozen=True)
class SramPlan:
    """What an RP2040 firmware keeps in its SRAM (tlm_plan_sram in serve.c): the arena for
    `context` tokens, and a copy of bytes copy_start..copy_end-1 of the file."""
    context: int
    copy_start: int
    copy_end: int


def sram_plan(model: BinModel, memory: int, context: int = 0) -> SramPlan:
    """tlm_plan_sram: in `memory` bytes, the arena for `context` tokens (0, or a context whose
    arena does not fit: the model's, or else the longest that fits), and before it a copy of the
    whole file when it fits beside the arena, else of the longest run of token_sections (the
    first of equals) that fits in the rest, or of nothing."""
    config = model.config
    context = context if 0 < context <= config.max_seq_len else config.max_seq_len
    if align(model.file_size) + arena_bytes(config, context) <= memory:
        return SramPlan(context, 0, model.file_size)
    context = min(context, longest_context(config, memory)) or 1
    room = max(memory - arena_bytes(config, context), 0) // ALIGN * ALIGN   # copies take
    sections, first, best = token_sections(model), 0, (0, 0)   # their bytes rounded up to 16
    for j, (_, end) in enumerate(sections):
        while first <= j and end - sections[first][0] > room:
            first += 1
        if first <= j and end - sections[first][0] > best[1] - best[0]:
            best = (sections[first][0], end)
    return SramPlan(context, *best)


def token_sections(model: BinModel) -> list[tuple[int, int]]:
    """tlm_token_section: the bytes (start, end) in the file of each section that every token
    reads whole, in the file's order: all the tensors but an embedding table that is not also
    the output matrix (a token reads one row of it)."""
    return [span for name, span in model.spans.items()
            if name != "tok_emb" or model.config.tie_embeddings]


def flash_weight_bytes(model: BinModel, copy_start: int, copy_end: int) -> int:
    """The weight bytes a token reads from flash (emulation.streamed_weight_bytes) when bytes
    copy_start..copy_end-1 of the file are copied to RAM: none when all of it is."""
    if copy_end - copy_start == model.file_size:
        return 0
    copied = sum(end - start for start, end in token_sections(model)
                 if copy_start <= start and end <= copy_end)
    return streamed_weight_bytes(model) - copied


def smaller_file(bits: int) -> str:
    if bits == 32:
        return "quantize to --bits 8 (or 4)"
    if bits == 8:
        return "quantize to --bits 4"
    return "a smaller model (fewer layers, a narrower dim or a smaller vocabulary)"


def longest_context(config, room: int) -> int:
    """The longest context, up to the model's, whose arena fits in room bytes (0: none does),
    as the firmwares choose it; the arena grows with the context."""
    context = config.max_seq_len
    while context > 0 and arena_bytes(config, context) > room:
        context -= 1
    return context


def shorter_context(config, room: int) -> str:
    """What to shrink when the arena does not fit, as advice."""
    context = longest_context(config, room)
    if not context:
        return (f"a smaller model (even 1 token of context needs "
                f"{arena_bytes(config, 1):,} bytes for its vocabulary and width)")
    return f"--context {context} fits (quantizing does not shrink this memory)"


def check(model_path: str | Path, board_name: str, flash: FlashRoom, context: int = 0,
          psram: int = 0, echo=print) -> Plan | None:
    """Refuse (ValueError) a model that does not fit, before anything is written. A file that
    is not a tinylm .bin gets only the flash module's own size check."""
    if not is_model_file(model_path):
        echo(f"note: {model_path} is not a tinylm .bin (no {MAGIC.decode()} magic), so only "
             "its size is checked; the firmware will refuse it at boot")
        return None
    result = plan(model_path, board_name, flash, context, psram)
    if not result.fits:
        raise ValueError(result.refusal())
    return result
