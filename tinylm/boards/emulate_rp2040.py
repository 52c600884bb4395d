"""The bare-metal RP2040 firmware (firmware_rp2040/baremetal) in the rp2040js emulator.

`build_firmware` cross-compiles it with Debian's arm-none-eabi-gcc into a RAM image, cached
like the host runtime (tinylm/runtime/build.py). `run` loads that image and a model into an emulated
RP2040 with both of its cores (firmware_rp2040/baremetal/emulator/run.js and dual_core.js, under
node), types lines on UART0 and returns what came back with the cycle count at each byte.
`bench` turns that into the figures of `tinylm bench --target rp2040`.
"""
from __future__ import annotations

import base64
import bisect
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..export.binformat import read_bin
from ..runtime.build import NO_FPU, SOURCES, cache_dir, kernel
from . import memplan, protocol, uf2
from .emulation import matvec_macs, streamed_weight_bytes
from .rp2040_flash import FLASH_BASE, MODEL_OFFSET

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware_rp2040" / "baremetal"
EMULATOR = FIRMWARE / "emulator"
CC = "arm-none-eabi-gcc"
FLAGS = ["-mcpu=cortex-m0plus", "-mthumb", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror",
         *NO_FPU, "-ffreestanding", "-nostdlib",
         # freestanding.c's memset and memcpy must not be compiled into calls to themselves
         "-fno-builtin", "-fno-tree-loop-distribute-patterns"]
SRAM_BASE = 0x20000000
SRAM_SIZE = 264 * 1024
CPU_HZ = 133_000_000
# Weights streamed from XIP flash, where the 16 KB cache cannot hold them: each 8-byte cache
# line that misses is one quad-SPI read with the command left out (continuous read mode, as
# the Pico's second-stage boot loader sets up): 8 clocks of address and mode bits, 4 dummy
# clocks, 16 clocks of data, with the SPI clock at clk_sys / 2. The bound counts the weight
# bytes a token still reads from flash: none that the firmware copied to SRAM (@ready
# weights=sram, or its sram_weights), and no bound when those left all fit in the cache (the
# firmware runs from SRAM: nothing else competes for it), as they are read from flash once.
# The emulator itself has no cache model: this is arithmetic on the bytes, not a measurement.
XIP_BYTES_PER_SECOND = CPU_HZ / 2 * 8 / (8 + 4 + 16)
XIP_CACHE_BYTES = 16 * 1024
# The functions that do a matrix's rows: what the two cores share on hardware (run_both)
ROW_FUNCTIONS = {"tlm_pair_sums", "tlm_quads64", "tlm_rows_wide", "pair_rows", "nibble_rows",
                 "tlm_product_rows", "product_half"}


def missing_tools() -> str | None:
    """Why the emulator cannot run here, or None when it can. rp2040js, at the version its
    package-lock.json pins, is installed on first use when npm is there to do it."""
    if not shutil.which(CC):
        return f"{CC} is not installed (apt-get install gcc-arm-none-eabi)"
    if not shutil.which("node"):
        return "node is not installed"
    if not (EMULATOR / "node_modules" / "rp2040js").is_dir():
        return install_rp2040js()
    return None


def install_rp2040js() -> str | None:
    """`npm ci` in the emulator's folder, once, even with several processes asking; returns
    why it could not be done, or None."""
    if not shutil.which("npm"):
        return (f"rp2040js is not installed, and there is no npm to install it: run npm ci "
                f"in {EMULATOR}")
    import fcntl  # POSIX, as the emulator's tools are
    with open(EMULATOR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # another process may be installing it now
        if (EMULATOR / "node_modules" / "rp2040js").is_dir():
            return None
        print(f"installing rp2040js (npm ci in {EMULATOR}) ...", file=sys.stderr, flush=True)
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=EMULATOR,
                                capture_output=True, text=True)
    if result.returncode != 0:
        return f"rp2040js could not be installed (npm ci in {EMULATOR}):\n{result.stderr[-500:]}"
    return None


@dataclass(frozen=True)
class Firmware:
    image: Path         # the RAM image, loaded at 0x20000000
    stacks: tuple       # (lowest, top) address of core 0's stack, then core 1's
    arena_start: int    # the image, its zeroed data included, ends here
    context: int        # the context it gives a model (0: the model's, or the longest that fits)

    @property
    def model_sram(self) -> int:
        """The SRAM it has for a model (the arena, and weights: tlm_server_place)."""
        return self.stacks[1][0] - self.arena_start


def build_firmware(seed: int = 0, max_tokens: int = 128, cores: int = 2,
                   context: int = 0) -> Firmware:
    """The RAM image for this seed, token limit per answer, number of cores that share the
    work of a token (1: core 1 stays in the bootrom) and context (0: the model's, or the
    longest that fits), built once and cached."""
    if not shutil.which(CC):
        raise OSError(f"{CC} is not installed (apt-get install gcc-arm-none-eabi)")
    sources = [FIRMWARE / "startup.c", FIRMWARE / "main.c", FIRMWARE / "multicore.c",
               FIRMWARE / "divider.c", SOURCES / "freestanding.c", SOURCES / "serve.c",
               SOURCES / "tinylm.c", kernel("armv6m")]
    flags = [*FLAGS, f"-DTLM_SEED={seed}u", f"-DTLM_MAX_TOKENS={max_tokens}",
             f"-DTLM_CORES={cores}", f"-DTLM_CONTEXT={context}"]
    digest = hashlib.sha256(" ".join(flags).encode())
    for path in [*sources, *sorted(FIRMWARE.glob("*.h")), *sorted(SOURCES.glob("*.h")),
                 FIRMWARE / "ram.ld"]:
        digest.update(path.read_bytes())
    cache = cache_dir()
    directory = cache / f"rp2040-{digest.hexdigest()[:16]}"
    elf, image = directory / "firmware.elf", directory / "firmware.bin"
    if not image.exists():
        building = Path(tempfile.mkdtemp(prefix=".rp2040-", dir=cache))
        commands = [
            [CC, *flags, "-I", str(SOURCES), "-T", str(FIRMWARE / "ram.ld"), *map(str, sources),
             "-lgcc", "-o", str(building / elf.name)],
            ["arm-none-eabi-objcopy", "-O", "binary", str(building / elf.name),
             str(building / image.name)]]
        for command in commands:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                shutil.rmtree(building, ignore_errors=True)
                raise OSError(f"building the RP2040 firmware failed:\n{result.stderr}")
        try:
            os.replace(building, directory)   # atomic: a parallel build never sees half of it
        except OSError:                       # another process got there first
            shutil.rmtree(building, ignore_errors=True)
    symbols = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                             check=True).stdout.split("\n")
    address = {parts[2]: int(parts[0], 16) for parts in map(str.split, symbols) if len(parts) == 3}
    stacks = ((address["__core1_stack_top"], address["__stack_top"]),
              (address["__arena_end"], address["__core1_stack_top"]))
    return Firmware(image, stacks, address["__arena_start"], context)


def flash_from_uf2(data: bytes) -> list[tuple[int, bytes]]:
    """The (flash offset, bytes) pieces a UF2 file writes, as the bootloader would."""
    return [(block.address - FLASH_BASE, block.payload) for block in uf2.decode(data, "the UF2")]


@dataclass
class Run:
    output: bytes
    cycles: list[int]       # the time in cycles when each output byte was sent
    fed_at: list[int]       # ... when each input byte was put in the UART's FIFO
    stacks_used: list[int]  # the deepest use of core 0's stack, and of core 1's
    busy: list[int]         # the cycles each core ran instructions (not asleep in WFE)
    finished: bool          # every expected closing line came
    profile: dict[int, int] | None = None   # cycles spent at each instruction address


def run(firmware: Firmware, flash: list[tuple[int, bytes]], typed: bytes,
        max_cycles: int = 2_000_000_000, profile: bool = False) -> Run:
    """Boot the firmware with these flash contents, type `typed` on UART0, and return once it
    has answered every line (the boot line, then one closing line for each line typed).
    With profile, also the cycles spent at each instruction address, by both cores."""
    reason = missing_tools()
    if reason:
        raise OSError(reason)
    lines = typed.replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n")
    closings = 1 + lines + typed.count(protocol.HELLO)
    with tempfile.TemporaryDirectory(prefix="tinylm-rp2040-") as directory:
        command = ["node", str(EMULATOR / "run.js"), str(firmware.image)]
        typed_path = Path(directory) / "typed.bin"
        typed_path.write_bytes(typed)
        command += [str(typed_path), str(closings), "--max-cycles", str(max_cycles)]
        for low, top in firmware.stacks:
            command += ["--stack", f"{low}:{top}"]
        if profile:
            command.append("--profile")
        for i, (offset, data) in enumerate(flash):
            path = Path(directory) / f"flash{i}.bin"
            path.write_bytes(data)
            command += ["--flash", f"{path}@{offset}"]
        result = subprocess.run(command, capture_output=True, text=True, cwd=EMULATOR)
    if result.returncode != 0:
        raise OSError(f"the emulator failed:\n{result.stderr}")
    report = json.loads(result.stdout)
    return Run(base64.b64decode(report["output"]), report["cycles"], report["fed_at"],
               report["stacks_used"], report["busy"], report["finished"],
               {int(pc, 16): n for pc, n in report["profile"].items()} if profile else None)


def answers(output: bytes) -> list[protocol.Event]:
    """The protocol events in a run's output, each @text line's pieces joined."""
    events: list[protocol.Event] = []
    for event in protocol.Parser().feed(output):
        if isinstance(event, protocol.Text) and events and isinstance(events[-1], protocol.Text):
            events[-1] = protocol.Text(events[-1].data + event.data)
        else:
            events.append(event)
    return events


def model_flash(model_path: str | Path) -> list[tuple[int, bytes]]:
    return [(MODEL_OFFSET, Path(model_path).read_bytes())]


def bench(model_path: str | Path, prompt: bytes = b"Once upon a time", max_tokens: int = 64,
          seed: int = 0, cores: int = 2, context: int = 0) -> dict:
    """Cycles for the prompt and per generated token with `cores` cores and `context` tokens of
    context (0: the firmware's choice), and what they mean at 133 MHz; where the weights are
    read from and the XIP flash bound on those in flash; the share of the matrices' rows in
    the cycles the cores ran (from the emulated program counters, less a run that makes one
    token: boot, prompt and first token), hence cycles per MAC of the matrix kernels alone."""
    if max_tokens < 2:
        raise ValueError("a benchmark needs at least 2 tokens")
    firmware = build_firmware(seed, max_tokens, cores, context)
    result = run(firmware, model_flash(model_path), prompt + b"\n", profile=True)
    events = answers(result.output)
    closing = events[-1]
    if not isinstance(closing, protocol.Done):
        raise ValueError(f"the firmware did not answer: {result.output[-300:]!r}")
    ready = next(e for e in events if isinstance(e, protocol.Ready))
    model = read_bin(model_path)
    sram = placed_weights(ready, model, firmware)
    start = result.output.rindex(protocol.TEXT_START)
    end = result.output.index(b"\n", start)
    prompt_cycles = result.cycles[start] - result.fed_at[-1]   # from the line's end
    tokens = int(closing.fields["tokens"])
    if tokens < 2:
        raise ValueError(f"the model stopped after {tokens} token(s); measuring a generated "
                         "token needs two: try another --seed or --prompt")
    generation_cycles = (result.cycles[end] - result.cycles[start]) / tokens
    prompt_tokens = int(closing.fields["prompt"])
    macs = matvec_macs(model.config)
    flash_bytes = memplan.flash_weight_bytes(model, sram.copy_start, sram.copy_end)
    compute_tok_s = CPU_HZ / generation_cycles
    flash_tok_s = flash_bound(flash_bytes)
    headline = compute_tok_s if flash_tok_s is None else min(compute_tok_s, flash_tok_s)
    first = build_firmware(seed, 1, cores, context)
    one_token = run(first, model_flash(model_path), prompt + b"\n", profile=True)
    by_function = cycles_by_function(result.profile, firmware)
    by_function.subtract(cycles_by_function(one_token.profile, first))
    rows = sum(by_function[name] for name in ROW_FUNCTIONS)
    arena = int(ready.fields["arena"])
    return {
        "model": str(model_path),
        "cores": cores,
        "prompt_tokens": prompt_tokens,
        "generated_tokens": tokens,
        "cycles_per_prompt_token": round(prompt_cycles / prompt_tokens),
        "cycles_per_generated_token": round(generation_cycles),
        "tok_s_133mhz_emulated": round(compute_tok_s, 2),
        "matvec_macs_per_token": macs,
        "cycles_per_mac": round(generation_cycles / macs, 2),
        "matrix_rows_share": round(rows / sum(by_function.values()), 3),
        "matrix_cycles_per_mac": round(rows / (tokens - 1) / macs, 2),
        "core1_busy_share": round((result.busy[1] - one_token.busy[1]) /
                                  (result.cycles[-1] - one_token.cycles[-1]), 3),
        "weight_bytes_per_token": streamed_weight_bytes(model),
        "weights_in": ready.fields["weights"],
        "sram_weight_bytes": sram.copy_end - sram.copy_start,
        "flash_weight_bytes_per_token": flash_bytes,
        "tok_s_xip_flash_bound": None if flash_tok_s is None else round(flash_tok_s, 2),
        "tok_s_headline": round(headline, 2),
        "bound_by": "compute" if headline == compute_tok_s else "xip-flash",
        "peak_sram_bytes": firmware.arena_start - SRAM_BASE +
        memplan.align(sram.copy_end - sram.copy_start) + arena + sum(result.stacks_used),
        "arena_bytes": arena,
        "stack_bytes": result.stacks_used,
        "context": int(ready.fields["ctx"]),
    }


def flash_bound(flash_bytes: int) -> float | None:
    """The tok/s that XIP flash reads allow for the weight bytes a token still reads from flash
    (memplan.flash_weight_bytes), or None when they all fit in the cache (none: all in SRAM)."""
    if flash_bytes <= XIP_CACHE_BYTES:
        return None
    return XIP_BYTES_PER_SECOND / flash_bytes


def placed_weights(ready: protocol.Ready, model, firmware: Firmware) -> memplan.SramPlan:
    """What the firmware kept in SRAM, as memplan plans it for the firmware's SRAM; its @ready
    line must say the same (weights=, sram_weights=, ctx=)."""
    plan = memplan.sram_plan(model, firmware.model_sram, firmware.context)
    copied = plan.copy_end - plan.copy_start
    said = (ready.fields.get("weights"), int(ready.fields.get("sram_weights", 0)),
            int(ready.fields["ctx"]))
    planned = ("sram" if copied == model.file_size else "flash", copied, plan.context)
    if said != planned:
        raise ValueError(f"the firmware placed the model unlike memplan: weights, sram_weights "
                         f"and ctx {said} where the plan has {planned}")
    return plan


def cycles_by_function(profile: dict[int, int], firmware: Firmware) -> Counter:
    """A run's cycles by function (GCC's .isra/.part copies counted as the function)."""
    starts = function_starts(firmware)
    by_function = Counter()
    for address, cycles in profile.items():
        by_function[function_at(starts, address).split(".")[0]] += cycles
    return by_function


def profile(model_path: str | Path, prompt: bytes = b"Once upon a time", max_tokens: int = 64,
            seed: int = 0, cores: int = 2, context: int = 0) -> dict[str, int]:
    """Cycles per generated token by function (both cores' together), most first, over tokens 2
    to max_tokens (a run that makes one token taken from one that makes max_tokens; printing
    included). Functions that GCC inlined count for their caller."""
    if max_tokens < 2:
        raise ValueError("a profile needs at least 2 tokens")
    runs = []
    for n in (1, max_tokens):
        firmware = build_firmware(seed, n, cores, context)
        result = run(firmware, model_flash(model_path), prompt + b"\n", profile=True)
        done = answers(result.output)[-1]
        if not isinstance(done, protocol.Done) or int(done.fields["tokens"]) != n:
            raise ValueError(f"the firmware did not make {n} tokens: try another --seed or "
                             f"--prompt ({result.output[-200:]!r})")
        runs.append(cycles_by_function(result.profile, firmware))
    few, by_function = runs
    by_function.subtract(few)
    return {name: round(n / (max_tokens - 1)) for name, n in by_function.most_common() if n > 0}


def function_at(starts: list[tuple[int, str]], address: int) -> str:
    return starts[bisect.bisect_right(starts, (address, "~")) - 1][1]


def function_starts(firmware: Firmware) -> list[tuple[int, str]]:
    """(address, name) of every function of the firmware, in address order."""
    symbols = subprocess.run(["arm-none-eabi-nm", str(firmware.image.with_suffix(".elf"))],
                             capture_output=True, text=True, check=True).stdout.split("\n")
    return sorted((int(parts[0], 16) & ~1, parts[2]) for parts in map(str.split, symbols)
                  if len(parts) == 3 and parts[1] in "tT")
