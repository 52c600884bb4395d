"""`tinylm quantize`, `run`, `info` and `import-llama2c`: model files and what is in them."""
from __future__ import annotations

import click

from ..boards import memplan
from ..boards.targets import flash_room
from ..export.binformat import Q8, read_bin, write_bin
from ..export.llama2c import import_llama2c
from ..export.quantize import DEFAULT_GROUP, calibration_sequences, error_table, quantize_model
from ..runtime.c_engine import CEngine, arena_bytes
from ..runtime.engine import Engine
from ..runtime.sampler import generate_ids
from ..text.data import SPLITS, read_documents
from ..training.checkpoint import checkpoint_path, load_checkpoint
from ..training.evaluate import evaluate
from .common import (
    SOME,
    ByteCount,
    check_model_path,
    is_bin,
    print_json,
    print_stream,
    prompt_to_run,
    sampling_options,
)


@click.command("info")
@click.argument("model_path", metavar="MODEL")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as one JSON object.")
@click.option("--context", type=SOME, default=0,
              help="For a .bin: the context to count RAM for. [default: the model's; with "
                   "--target, the longest that fits, as the firmware chooses]")
@click.option("--target", type=click.Choice(list(memplan.BOARDS)),
              help="For a .bin: plan its flash and SRAM on this board, and exit with status 1 "
                   "if it does not fit (tinylm/boards/memplan.py).")
@click.option("--flash-size", type=ByteCount(),
              help="With --target: the board's flash. [default: 2MB for rp2040, 4MB for the "
                   "ESP32s]")
@click.option("--psram", type=ByteCount(), default=0,
              help="With --target esp32 or esp32s3: the board's PSRAM, for the arena or a "
                   "model copy that SRAM cannot hold. [default: none]")
def info_command(model_path, as_json, context, target, flash_size, psram):
    """Show a model's shape, size and training steps.

    For a .bin: its quantization, sizes, and the RAM the C runtime needs. See
    tinylm/core/config.py for what each setting means."""
    if (flash_size or psram) and not target:
        raise click.UsageError("--flash-size and --psram go with --target")
    check_model_path(model_path, "info", "either")
    if is_bin(model_path):
        return bin_info(model_path, context, as_json, target, flash_size, psram)
    if target:
        raise click.UsageError("--target plans a .bin: quantize the model first")
    checkpoint = load_checkpoint(model_path)
    facts = {"checkpoint": str(checkpoint_path(model_path)),
             "n_params": checkpoint.config.n_params(),
             "tokenizer_size": len(checkpoint.tokenizer),
             "steps_trained": checkpoint.step,
             "chat": checkpoint.chat.to_dict() if checkpoint.chat else None,
             "config": checkpoint.config.to_dict()}
    if as_json:
        print_json(facts)
        return
    print_facts(facts)


def print_facts(facts: dict) -> None:
    """One line per fact, the config's included; a text model's chat turn is "no"."""
    config = facts.pop("config")
    for name, value in {**facts, **config}.items():
        click.echo(f"{name:16} {value:,}" if isinstance(value, int) and not isinstance(value, bool)
                   else f"{name:16} {'no' if value is None else value}")


@click.command("import-llama2c")
@click.argument("model_bin", metavar="MODEL.bin")
@click.argument("tokenizer_bin", metavar="TOKENIZER.bin")
@click.option("--out", required=True, metavar="DIR", help="Directory for the tinylm checkpoint.")
def import_llama2c_command(model_bin, tokenizer_bin, out):
    """Convert a llama2.c model into a checkpoint.

    MODEL.bin in llama2.c's legacy export format and its TOKENIZER.bin (e.g. stories260K.bin
    and tok512.bin) become a tinylm checkpoint in DIR. See tinylm/export/llama2c.py."""
    click.echo(f"wrote {import_llama2c(model_bin, tokenizer_bin, out)}")


@click.command("quantize")
@click.argument("model_path", metavar="MODEL")
@click.option("--bits", type=click.Choice(["8", "4", "32"]), required=True,
              help="int8, int4 (two per byte), or 32 for float32 weights.")
@click.option("--group-size", type=click.IntRange(1, 256), default=None,
              help="Inputs per scale. [default: 32 for int8, 16 for int4]")
@click.option("-o", "--out", required=True, metavar="FILE.bin", help="The .bin to write.")
@click.option("--calib", "calib_paths", multiple=True, metavar="FILE",
              help="Text to calibrate int4 error compensation on. [default: the model's own "
                   "samples]")
@click.option("--eval", "eval_paths", multiple=True, metavar="FILE",
              help="Also score the float model and the .bin on this text, side by side.")
@click.option("--split", type=click.Choice(SPLITS), default="auto", show_default=True,
              help="How --calib and --eval text is cut into documents.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
def quantize_command(model_path, bits, group_size, out, calib_paths, eval_paths, split, as_json):
    """Write a checkpoint as a quantized .bin for the C runtime.

    Prints each tensor's quantization error; with --eval, the loss and bits per byte of the
    float model and of the .bin (run by the NumPy reference engine, which computes exactly
    what the C runtime does). See tinylm/export/quantize.py and docs/format.md."""
    bits = int(bits)
    check_model_path(model_path, "quantize", "directory")
    checkpoint = load_checkpoint(model_path)
    model, tokenizer = checkpoint.model(), checkpoint.tokenizer
    group = 0 if bits == 32 else group_size or DEFAULT_GROUP[bits]
    calibration = None
    if bits == 4:
        documents = read_documents(calib_paths, split) if calib_paths else None
        calibration = calibration_sequences(model, tokenizer, documents)
    tensors = quantize_model(model, bits, group, calibration)
    size = write_bin(out, model.config, tokenizer, tensors, bits, group, checkpoint.chat)
    result = {"out": out, "bytes": size, "bits": bits, "group_size": group,
              "tensors": error_table(model, tensors)}
    if eval_paths:
        documents = read_documents(eval_paths, split)
        result["float"] = evaluate(model, tokenizer, documents)
        result["quantized"] = evaluate(Engine(read_bin(out)), tokenizer, documents)
    if as_json:
        print_json(result)
        return
    click.echo(f"{'tensor':22} {'shape':>10} {'rel rms err':>12} {'max err':>9} {'bits/w':>7}")
    for row in result["tensors"]:
        click.echo(f"{row['tensor']:22} {row['shape']:>10} {row['rel_rms']:12.5f} "
                   f"{row['max_abs']:9.5f} {row['bits_per_weight']:7.2f}")
    click.echo(f"wrote {out} ({size:,} bytes)")
    if eval_paths:
        f, q = result["float"], result["quantized"]
        click.echo(f"{'':10} {'loss':>8} {'bpb':>8}\n"
                   f"{'float':10} {f['loss']:8.4f} {f['bpb']:8.4f}\n"
                   f"{'.bin':10} {q['loss']:8.4f} {q['bpb']:8.4f}\n"
                   f"{'change':10} {100 * (q['loss'] / f['loss'] - 1):+7.2f}% "
                   f"{100 * (q['bpb'] / f['bpb'] - 1):+7.2f}%")


@click.command("run")
@click.argument("model_path", metavar="MODEL.bin")
@sampling_options
@click.option("--seed", type=click.IntRange(0, 2 ** 64 - 1), default=0, show_default=True,
              help="Seed of the sampler: the same seed gives the same text on both engines.")
@click.option("--engine", type=click.Choice(["c", "numpy"]), default="c", show_default=True,
              help="The C runtime (built on first use) or the NumPy reference.")
@click.option("--context", type=SOME, default=0,
              help="Tokens of context to reserve memory for. [default: the model's]")
def run_command(model_path, prompt, question, engine, context, **sampling):
    """Generate text from a .bin, or answer a chat model's question, printing it as it comes.

    --engine c builds the C runtime (tinylm/runtime/csrc) with the system C compiler on first use
    and caches it; --engine numpy runs the same arithmetic in NumPy (tinylm/runtime/engine.py)."""
    check_model_path(model_path, "run", "bin")
    model = read_bin(model_path)
    tokenizer = model.tokenizer
    shown, prompt_ids = prompt_to_run(tokenizer, model.chat, prompt, question, model_path)
    # Both engines check the prompt here, before anything is printed.
    runner = CEngine(model_path, context) if engine == "c" else Engine(model, context)
    new_ids = (runner.generate(prompt_ids, **sampling) if engine == "c" else
               generate_ids(runner, prompt_ids, **sampling))
    print_stream(tokenizer, shown, prompt_ids, new_ids, runner.context)


def bin_info(model_path, context, as_json, target=None, flash_size=None, psram=0):
    model = read_bin(model_path)
    c = model.config
    weights = sum(t.values.nbytes if t.scales is None else  # float32, or int8/int4 + scales
                  -(-t.values.size * (8 if t.dtype == Q8 else 4) // 8) + t.scales.nbytes
                  for t in model.tensors.values())
    plan = memplan.plan(model_path, target, flash_room(target, flash_size), context,
                        psram) if target else None   # context 0: the one the firmware picks
    asked, context = context > 0, plan.context if plan else context or c.max_seq_len
    facts = {"file": str(model_path), "bytes": model.file_size, "format_version": 1,
             "bits": model.bits, "group_size": model.group_size, "n_params": c.n_params(),
             "weight_bytes": weights, "tokenizer_size": len(model.tokenizer),
             "context": context, "arena_bytes": arena_bytes(c, context),
             "chat": model.chat.to_dict() if model.chat else None, "config": c.to_dict()}
    if as_json:
        print_json(dict(facts, plan=plan.to_dict()) if plan else facts)
    else:
        print_facts(facts)
        click.echo(f"The runtime needs the file ({model.file_size:,} bytes, in place, e.g. in "
                   f"flash) and {facts['arena_bytes']:,} bytes of RAM for {context} tokens of "
                   "context.")
        if plan:
            print_plan(plan, asked)
    if plan and not plan.fits:
        raise ValueError(plan.refusal())


def print_plan(plan, asked: bool) -> None:
    """The plan as text; asked: its context was --context's."""
    def share(used, room):
        return f"{used:>11,} of {room:,} ({100 * used / room:.0f}%)"

    click.echo(f"\nOn the {plan.board} ({plan.flash_size:,} bytes of flash, {plan.sram:,} of "
               f"SRAM{f', {plan.psram:,} of PSRAM' if plan.psram else ''}):")
    click.echo(f"  flash  firmware       {plan.firmware_flash:>11,} (before the model, at "
               f"{plan.firmware_flash:#x})")
    click.echo(f"         model          {share(plan.model_bytes, plan.model_room)}")
    click.echo(f"  SRAM   firmware       {plan.sram_reserve:>11,} (stacks, its state, the SDK's)")
    click.echo(f"         arena          {share(plan.arena_bytes, plan.arena_room)} for "
               f"{plan.context} tokens of context, in {plan.arena_in.upper()}")
    if plan.weights_copied:
        what = "weights copy" if plan.weights == "flash" else "model copy"
        click.echo(f"         {what:14} {plan.weights_copied:>11,} in "
                   f"{'SRAM' if plan.weights == 'flash' else plan.weights.upper()}, copied "
                   "from flash at boot (faster than flash)")
    if plan.context < plan.model_context:
        click.echo(f"  {plan.context} of the model's {plan.model_context} tokens of context: "
                   f"{'as asked' if asked else 'the longest that fits'}")
    if plan.weights == "flash":
        in_sram = f", {plan.sram_weights:,} from SRAM" if plan.sram_weights else ""
        click.echo(f"  a token reads {plan.flash_weight_bytes:,} bytes of weights in place from "
                   f"flash{in_sram}")
    click.echo("  fits" if plan.fits else "  does not fit")

