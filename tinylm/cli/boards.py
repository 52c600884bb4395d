"""`tinylm flash`, `chat`, `serve` and `bench`: models on boards, real or emulated.

pyserial and esptool (the `flash` extra) are imported only when a command needs them."""
from __future__ import annotations

import click

from ..boards import emulate_riscv, emulate_rp2040
from ..boards.chat import chat, chat_here
from ..boards.esp32_flash import flash_esp32
from ..boards.host_board import HostBoard
from ..boards.rp2040_flash import FLASH_SIZE, MODEL_OFFSET, flash_rp2040
from ..export.binformat import read_bin
from .common import COUNT, POSITIVE, SOME, ByteCount, print_json


@click.command("chat")
@click.option("--port", help="The board's serial port: /dev/ttyUSB0, /dev/ttyACM0, COM3, or a "
                             "pyserial URL.")
@click.option("--model", "model_path", metavar="MODEL.bin",
              type=click.Path(dir_okay=False, exists=True),
              help="Instead of a board, this model, run here by the C runtime as a board runs "
                   "it (its sampling, the seed reset for every prompt).")
@click.option("--baud", type=COUNT, default=115200, show_default=True,
              help="Baud rate of a UART (a USB port ignores it).")
@click.option("--prompt", default=None,
              help="Send this one prompt, print the text, and exit (for scripts). "
                   "[default: read prompts, one a line, until the end of input]")
@click.option("--timeout", type=POSITIVE, default=10.0, show_default=True,
              help="Seconds of silence from the board before giving up.")
@click.option("--seed", type=click.IntRange(0, 2 ** 64 - 1), default=0, show_default=True,
              help="With --model: the seed of the sampler, reset for every prompt.")
@click.option("--max-tokens", type=SOME, default=256, show_default=True,
              help="With --model: most tokens per answer.")
@click.pass_context
def chat_command(ctx, port, model_path, baud, prompt, timeout, seed, max_tokens):
    """Talk to a model on a board over its serial port, or to a .bin here (--model).

    Each prompt goes to the board as one line; the prompt and the text the board makes are
    printed as it streams in, then (on stderr) the tokens made and their speed measured on
    the board. A chat model (the board's @ready says chat=1) takes each line as a question and
    only its reply is printed. Ctrl-C stops an answer; at the prompt, Ctrl-C or Ctrl-D quits.
    The protocol is docs/protocol.md; see tinylm/boards/chat.py. A board needs pyserial:
    pip install 'tinylm[flash]'; --model needs a C compiler."""
    if (port is None) == (model_path is None):
        raise click.UsageError("give a board's --port, or a --model to run here")
    try:
        ctx.exit(chat(port, baud, prompt, timeout) if port else
                 chat_here(model_path, prompt, seed, max_tokens))
    except KeyboardInterrupt:
        click.echo(err=True)
        ctx.exit(130)


def board_context_option(command):
    """--context of the flash commands: what the check before writing plans for."""
    return click.option(
        "--context", type=SOME, default=0,
        help="The context the board must have SRAM for; the check before writing refuses the "
             "model otherwise. [default: the longest that fits, as the firmware chooses]"
    )(command)


@click.group("flash")
def flash_group():
    """Write a model (.bin) into a board's flash.

    docs/flashing.md says where the model goes on each board."""


@flash_group.command("esp32")
@click.argument("model_path", metavar="MODEL.bin")
@click.option("--port", default="auto", show_default=True,
              help="Serial port, or auto: the one port whose USB ids are those of an ESP32 "
                   "board's USB-serial chip (CP210x, CH340, FTDI, Espressif USB).")
@click.option("--baud", type=COUNT, default=921600, show_default=True,
              help="Baud rate for writing (esptool connects at 115200, then switches).")
@click.option("--chip", default="auto", show_default=True,
              help="esp32, esp32s3, esp32c3, ...; auto: ask the chip (with --firmware: the "
                   "build's target).")
@click.option("--partitions", "partitions_csv", type=click.Path(dir_okay=False), metavar="CSV",
              help="The partition table the firmware was built with. [default: "
                   "the firmware's, tinylm/boards/esp32_partitions.csv; with --firmware, the "
                   "build's table]")
@click.option("--firmware", type=click.Path(file_okay=False), metavar="BUILD_DIR",
              help="Also write the bootloader, partition table and app of this `idf.py build` "
                   "folder.")
@board_context_option
@click.option("--psram", type=ByteCount(), default=0,
              help="The board's PSRAM, for the arena or a model copy that SRAM cannot hold. "
                   "[default: none]")
def flash_esp32_command(model_path, **options):
    """Write a model into the model partition of an ESP32, with esptool.

    The model must fit in the partition named "model", and its runtime in the chip's RAM
    (tinylm/boards/memplan.py); that is checked before anything is written. esptool then erases,
    writes and verifies (by MD5) each region. See tinylm/boards/esp32_flash.py. Needs esptool:
    pip install 'tinylm[flash]'."""
    flash_esp32(model_path, echo=click.echo, **options)


@flash_group.command("rp2040")
@click.argument("model_path", metavar="MODEL.bin")
@click.option("--drive", type=click.Path(file_okay=False, exists=True),
              help="The RPI-RP2 drive of a board in BOOTSEL mode. [default: looked for among "
                   "the mounted drives]")
@click.option("--firmware", type=click.Path(dir_okay=False, exists=True), metavar="APP.uf2",
              help="A firmware UF2 (from a pico-sdk build) to write in the same file.")
@click.option("--offset", type=ByteCount(), default=MODEL_OFFSET,
              help="Where the model goes, from the start of flash (the firmware must look "
                   f"there). [default: {MODEL_OFFSET:#x}, 1 MiB]")
@click.option("--flash-size", type=ByteCount(), default=FLASH_SIZE,
              help=f"The board's flash size. [default: {FLASH_SIZE >> 20}M, a Raspberry Pi Pico]")
@click.option("--out", type=click.Path(dir_okay=False), metavar="FILE.uf2",
              help="Where to write the UF2 file. [default: beside MODEL.bin, as MODEL.uf2]")
@board_context_option
def flash_rp2040_command(model_path, **options):
    """Write a model for an RP2040 as a UF2 file, and onto the board.

    First the model must fit in the flash and its runtime in the SRAM (tinylm/boards/memplan.py).
    The UF2 is copied onto the board's RPI-RP2 drive if one is mounted, else loaded with
    picotool if that is installed; otherwise the message says what to do with the file. See
    tinylm/boards/rp2040_flash.py and tinylm/boards/uf2.py."""
    flash_rp2040(model_path, echo=click.echo, **options)


BENCH_LABELS = {   # the figures of emulate_rp2040.bench, as `tinylm bench` prints them
    "cycles_per_prompt_token": "cycles per prompt token",
    "cycles_per_generated_token": "cycles per generated token",
    "cycles_per_mac": "cycles per weight MAC (a whole generated token)",
    "matrix_cycles_per_mac": "cycles per MAC, matrix kernels alone",
    "core1_busy_share": "share of the time core 1 runs",
    "tok_s_133mhz_emulated": "tok/s at 133 MHz, emulated (compute)",
    "sram_weight_bytes": "bytes of the model kept in SRAM",
    "flash_weight_bytes_per_token": "weight bytes a token reads from flash",
    "tok_s_xip_flash_bound": "tok/s bound by XIP flash reads",
    "tok_s_headline": "tok/s, the lower of the two",
    "peak_sram_bytes": "peak SRAM bytes (image, copy, arena, stacks)",
}
ESP32C3_BENCH_LABELS = {   # the figures of emulate_riscv.bench
    "instructions_per_prompt_token": "instructions per prompt token",
    "instructions_per_generated_token": "instructions per generated token",
    "instructions_per_mac": "instructions per weight MAC (whole token)",
    "tok_s_160mhz_1ipc": "tok/s at 160 MHz, 1 instruction per cycle",
    "tok_s_flash_bound": "tok/s bound by flash reads (cache misses)",
    "tok_s_headline": "tok/s, the lower of the two",
    "arena_bytes": "arena bytes (RAM besides the model)",
}
BENCH_TARGETS = {   # the emulator, the labels of its figures, what they assume
    "rp2040": (emulate_rp2040, BENCH_LABELS, "{cores} core(s), context {context}"),
    "esp32c3": (emulate_riscv, ESP32C3_BENCH_LABELS,
                "single core, assuming one instruction per cycle at 160 MHz"),
}


@click.command("bench")
@click.argument("model_path", metavar="MODEL.bin", type=click.Path(dir_okay=False, exists=True))
@click.option("--target", type=click.Choice(list(BENCH_TARGETS)), required=True,
              help="rp2040: the bare-metal firmware in the rp2040js emulator, both cores; "
                   "esp32c3: the runtime built for rv32imc, instructions counted in qemu.")
@click.option("--cores", type=click.IntRange(1, 2), default=None,
              help="rp2040: the cores that share the work of a token (1: core 1 stays asleep). "
                   "[default: 2, as the firmware for a board runs]")
@click.option("--context", type=SOME, default=0,
              help="rp2040: the context the firmware gives the model, built in (the SRAM its "
                   "arena leaves holds weights). [default: the model's, or the longest that "
                   "fits, as the firmware chooses]")
@click.option("--prompt", default="Once upon a time", show_default=True,
              help="The text the model continues; its tokens are the prompt's part of the "
                   "figures.")
@click.option("--max-tokens", type=SOME, default=64, show_default=True,
              help="Tokens to generate (the context the benchmark reaches: prompt + these).")
@click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=0, show_default=True,
              help="Seed of the sampler (the sampling of `tinylm run`), for repeatable runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--profile", is_flag=True,
              help="Instead, the instructions (esp32c3) or cycles (rp2040) of a generated "
                   "token by function (slower: every instruction is logged).")
def bench_command(model_path, target, cores, context, prompt, max_tokens, seed, as_json,
                  profile):
    """Measure a model on a microcontroller, emulated: cycles per token, tok/s, memory.

    rp2040 needs arm-none-eabi-gcc, node, and rp2040js (npm install in
    firmware_rp2040/baremetal/emulator): the bare-metal firmware runs on both cores, each
    counted cycle by cycle. The emulator counts cycles but not XIP-cache misses, so the
    flash-bandwidth bound on tok/s for the weight bytes a token still reads from flash (those
    the firmware did not keep in SRAM) is shown too, and the headline is the lower of the two.
    See tinylm/boards/emulate_rp2040.py.

    esp32c3 needs riscv64-unknown-elf-gcc and qemu-system-riscv32: qemu counts the
    instructions exactly (minstret), and tok/s assumes one instruction per cycle at 160 MHz;
    it has no cache model either, so the flash bound is shown the same way. See
    tinylm/boards/emulate_riscv.py."""
    emulator, labels, assumptions = BENCH_TARGETS[target]
    board = {}     # the rp2040's options
    if emulator is emulate_rp2040:
        board = dict(cores=cores or 2, context=context)
    elif cores not in (None, 1) or context:
        raise click.UsageError(f"--cores and --context go with --target rp2040 ({target} has "
                               "one core and gives the model its whole context)")
    reason = emulator.missing_tools()
    if reason:
        raise click.ClickException(reason)
    if profile:
        unit = ("instructions" if emulator is emulate_riscv else
                "cycles" if board["cores"] == 1 else "cycles of both cores together")
        print_profile(emulator.profile(model_path, prompt.encode(), max_tokens, seed, **board),
                      as_json, unit)
        return
    figures = emulator.bench(model_path, prompt.encode(), max_tokens, seed, **board)
    if as_json:
        print_json(figures)
        return
    click.echo(f"{model_path} on {target}: {figures['prompt_tokens']} prompt tokens, "
               f"{figures['generated_tokens']} generated, "
               f"{assumptions.format(cores=board.get('cores'), context=figures['context'])}")
    for key, label in labels.items():
        value = figures[key]
        click.echo(f"  {label:44} -" if value is None else
                   f"  {label:44} {value:,}" if isinstance(value, int) else
                   f"  {label:44} {value:,.2f}")


def print_profile(by_function: dict[str, int], as_json: bool, unit: str) -> None:
    if as_json:
        print_json(by_function)
        return
    total = sum(by_function.values())
    click.echo(f"{unit} per generated token: {total:,} (printing its line included)")
    for name, count in by_function.items():
        click.echo(f"  {count:12,} {100 * count / total:5.1f}%  {name}")


@click.command("serve")
@click.argument("model_path", metavar="MODEL.bin", type=click.Path(dir_okay=False, exists=True))
@click.option("--seed", type=click.IntRange(0, 2 ** 64 - 1), default=0, show_default=True,
              help="Seed of the sampler, reset for every prompt as on a board.")
@click.option("--max-tokens", type=SOME, default=256, show_default=True,
              help="Most tokens per answer.")
@click.option("--context", type=SOME, default=0,
              help="Tokens of context to reserve memory for. [default: the model's]")
@click.pass_context
def serve_command(ctx, model_path, seed, max_tokens, context):
    """Play a board on this computer: serve MODEL.bin on a pseudo-terminal for `tinylm chat`.

    Runs the firmware's device loop (tinylm/runtime/csrc/serve.c, built with the system C compiler)
    with the sampling of `tinylm run`, until Ctrl-C. See tinylm/boards/host_board.py."""
    read_bin(model_path)        # a file that is no usable model: one line of error, at once
    with HostBoard(model_path, seed, max_tokens, context) as board:
        click.echo(f"serving {model_path} on {board.path}; connect with: "
                   f"tinylm chat --port {board.path}   (Ctrl-C stops)")
        try:
            status = board.process.wait()
        except KeyboardInterrupt:
            return
    ctx.exit(1 if status else 0)    # the device loop ended by itself: it said why on stderr
