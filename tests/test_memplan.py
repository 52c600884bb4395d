"""The memory planner (tinylm/boards/memplan.py): a model fits on a board or is refused with what to
shrink, at the exact boundaries; `tinylm info --target` prints the plan; `tinylm flash` refuses
a model that does not fit before it writes anything."""
import json
import shutil

import pytest
from binmodels import tiny_config
from click.testing import CliRunner
from fake_esp32 import LoopbackLoader
from plan_models import model_bin

from tinylm.boards import memplan, rp2040_flash
from tinylm.boards.rp2040_flash import MODEL_OFFSET
from tinylm.cli import main
from tinylm.runtime.c_engine import CEngine

RP2040_ROOM = memplan.BOARDS["rp2040"].arena_room


def rp2040_plan(path, context=0, flash_size=rp2040_flash.FLASH_SIZE):
    return memplan.plan(path, "rp2040", rp2040_flash.flash_room(MODEL_OFFSET, flash_size),
                        context)


def test_flash_boundary_to_the_byte():
    path = model_bin("small")
    size = path.stat().st_size
    assert rp2040_plan(path, flash_size=MODEL_OFFSET + size).fits
    refused = rp2040_plan(path, flash_size=MODEL_OFFSET + size - 1)
    assert not refused.fits
    assert refused.problems == [
        f"the model is {size:,} bytes, 1 more than the {size - 1:,} that the flash from offset "
        f"0x100000 to its end at {MODEL_OFFSET + size - 1:#x} holds: quantize to --bits 4, or "
        "a board with more flash (--flash-size)"]


def test_sram_boundary_is_the_c_runtimes_arena():
    if not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        pytest.skip("no C compiler to build the runtime with")
    path = model_bin("long")
    c_arena_size = CEngine(path, 1).arena_size      # tlm_arena_size of the C runtime itself
    longest = max(k for k in range(1, 2049) if c_arena_size(k) <= RP2040_ROOM)
    fits = rp2040_plan(path, longest)
    assert fits.fits and fits.arena_bytes == c_arena_size(longest)
    refused = rp2040_plan(path, longest + 1)
    assert not refused.fits and len(refused.problems) == 1
    assert f"{longest + 1} tokens of context need {c_arena_size(longest + 1):,} bytes" \
        in refused.problems[0]
    assert refused.problems[0].endswith(f"--context {longest} fits (quantizing does not "
                                        "shrink this memory)")
    whole = rp2040_plan(path, 2048)   # the model's own context
    assert not whole.fits and f"--context {longest} fits" in whole.refusal()
    # Without --context, the plan is the firmware's: the longest context that fits.
    chosen = rp2040_plan(path)
    assert chosen.fits and (chosen.context, chosen.model_context) == (longest, 2048)


def test_what_the_refusal_says_to_shrink():
    assert "quantize to --bits 8 (or 4)" in rp2040_plan(
        model_bin("small", 32), flash_size=MODEL_OFFSET + 4096).refusal()
    assert "a smaller model" in rp2040_plan(
        model_bin("small", 4), flash_size=MODEL_OFFSET + 4096).refusal()
    # The arena for one token of context is most of what the vocabulary and width need:
    assert memplan.shorter_context(tiny_config(300), 100).startswith(
        "a smaller model (even 1 token of context needs")


def test_float_weights_need_an_fpu():
    path = model_bin("small", 32)
    refused = rp2040_plan(path)
    assert refused.problems == ["float32 weights need an FPU, which the rp2040 lacks: "
                                "quantize to --bits 8 or 4"]
    room = memplan.FlashRoom(4 << 20, 0x110000, 0x2F0000, "the model partition", "more")
    assert memplan.plan(path, "esp32s3", room).fits
    assert not memplan.plan(path, "esp32c3", room).fits


def test_small_models_are_copied_into_ram():
    assert rp2040_plan(model_bin("small")).weights == "sram"
    # Its whole context's arena leaves no room for a copy, even when a short one is planned:
    assert rp2040_plan(model_bin("long"), 64).weights == "flash"
    room = memplan.FlashRoom(4 << 20, 0x110000, 0x2F0000, "the model partition", "more")
    assert memplan.plan(model_bin("small"), "esp32", room).weights == "sram"
    # The ESP32's 160 KiB of SRAM: the arena of this model's 2048 tokens goes to PSRAM, and
    # its 303 KB copy too; on the ESP32-S3 (320 KiB) the copy stays in SRAM.
    on_esp32 = memplan.plan(model_bin("long"), "esp32", room, psram=2 << 20)
    assert (on_esp32.arena_in, on_esp32.weights) == ("psram", "psram")
    on_s3 = memplan.plan(model_bin("long"), "esp32s3", room, psram=2 << 20)
    assert (on_s3.arena_in, on_s3.weights) == ("psram", "sram")


def test_psram_holds_the_arena():
    path = model_bin("long")
    room = memplan.FlashRoom(4 << 20, 0x110000, 0x2F0000, "the model partition", "more")
    internal = memplan.plan(path, "esp32s3", room, context=2048)
    assert not internal.fits and internal.problems[0].endswith("or a board with PSRAM (--psram)")
    assert memplan.plan(path, "esp32s3", room, context=2048, psram=2 << 20).fits
    with pytest.raises(ValueError, match="the esp32c3 has no PSRAM"):
        memplan.plan(path, "esp32c3", room, psram=2 << 20)


def test_a_context_longer_than_the_models_is_refused():
    with pytest.raises(ValueError, match="--context 257 is longer than the model's context "
                                         r"\(256 tokens\)"):
        rp2040_plan(model_bin("small"), 257)


# ---- tinylm info --target ---------------------------------------------------------------------

def info(*args):
    return CliRunner().invoke(main, ["info", *map(str, args)])


def test_info_prints_the_plan_and_exits_0_when_it_fits():
    result = info(model_bin("small"), "--target", "rp2040", "--flash-size", "2MB")
    assert result.exit_code == 0, result.output
    assert "On the rp2040 (2,097,152 bytes of flash, 270,336 of SRAM):" in result.stdout
    copy = memplan.align(model_bin("small").stat().st_size)
    assert f"model copy     {copy:>11,} in SRAM, copied from flash at boot" in result.stdout
    assert result.stdout.rstrip().endswith("fits")


def test_info_and_flash_plan_a_long_context_alike(tmp_path):
    """Without --context both take the longest context that fits, as the firmware does."""
    result = info(model_bin("long"), "--target", "rp2040", "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    planned = rp2040_plan(model_bin("long"))
    assert facts["plan"]["context"] == facts["context"] == planned.context < 2048
    flashed = CliRunner().invoke(main, ["flash", "rp2040", str(model_bin("long")), "--out",
                                        str(tmp_path / "m.uf2")])
    assert flashed.exit_code == 0, flashed.output


def test_info_exits_1_with_one_line_saying_what_to_shrink():
    result = info(model_bin("long"), "--target", "rp2040", "--context", 2048)
    assert result.exit_code == 1
    assert "does not fit" in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {model_bin('long')} does not fit on the rp2040: 2048 tokens of context need")
    assert "--context" in lines[0] and "fits" in lines[0]


def test_info_json_has_the_plan():
    fits = info(model_bin("small"), "--target", "esp32", "--json")
    assert fits.exit_code == 0, fits.output
    plan = json.loads(fits.stdout)["plan"]
    assert plan["fits"] and plan["problems"] == [] and plan["board"] == "esp32"
    assert (plan["firmware_flash"], plan["model_room"]) == (0x110000, 0x2F0000)  # partitions.csv
    refused = info(model_bin("long"), "--target", "rp2040", "--context", 2000, "--json")
    assert refused.exit_code == 1
    plan = json.loads(refused.stdout)["plan"]
    assert not plan["fits"] and plan["context"] == 2000 and plan["arena_room"] == RP2040_ROOM
    assert refused.stderr.startswith("error: ")


def test_info_target_needs_a_bin(tmp_path):
    result = info(tmp_path, "--target", "rp2040")
    assert result.exit_code == 2 and "--target plans a .bin" in result.output


def test_bad_sizes_are_refused():
    result = info(model_bin("small"), "--target", "rp2040", "--flash-size", "2 GB")
    assert result.exit_code == 2 and "is not a number of bytes" in result.output
    result = info(model_bin("small"), "--flash-size", "2MB")
    assert result.exit_code == 2 and "--flash-size and --psram go with --target" in result.output


# ---- the same check before flashing -----------------------------------------------------------

def test_flash_rp2040_refuses_before_writing_anything(tmp_path):
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("Board-ID: RPI-RP2\n")
    model = tmp_path / "long.bin"
    model.write_bytes(model_bin("long").read_bytes())
    result = CliRunner().invoke(main, ["flash", "rp2040", str(model), "--drive", str(drive),
                                       "--context", "2048"])
    assert result.exit_code == 1
    assert "does not fit on the rp2040: 2048 tokens of context need" in result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["INFO_UF2.TXT", "RPI-RP2", "long.bin"]
    # Without --context the firmware's shorter context is planned, and the model goes through.
    result = CliRunner().invoke(main, ["flash", "rp2040", str(model), "--drive", str(drive)])
    assert result.exit_code == 0, result.output
    assert (drive / "long.uf2").exists()


def test_flash_rp2040_only_size_checks_a_file_that_is_not_a_model(tmp_path):
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("Board-ID: RPI-RP2\n")
    model = tmp_path / "raw.bin"
    model.write_bytes(b"\x01" * 1000)
    result = CliRunner().invoke(main, ["flash", "rp2040", str(model), "--drive", str(drive)])
    assert result.exit_code == 0, result.output
    assert "is not a tinylm .bin (no TLMB magic), so only its size is checked" in result.stdout


def test_flash_esp32_refuses_before_connecting():
    with LoopbackLoader() as loader:
        original = bytes(loader.chip.flash)
        result = CliRunner().invoke(main, ["flash", "esp32", str(model_bin("long")),
                                           "--port", loader.url, "--chip", "esp32c3",
                                           "--context", "2048"])
        assert result.exit_code == 1
        assert "does not fit on the esp32c3: 2048 tokens of context need" in result.stderr
        assert loader.chip.connections == 0 and loader.chip.flash == original
