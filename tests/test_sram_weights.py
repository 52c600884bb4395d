"""What an RP2040 firmware keeps in SRAM besides the arena (tlm_server_place in serve.c): the
C planner chooses as memplan.sram_plan does, at every SRAM size where the choice changes, from
nothing to a run of sections to the whole model; and the runtime reads the copy, with the
logits of the model read in place, once the copied bytes are spoiled in the "flash"
(tests/c/sram_split.c, built with the system C compiler)."""
import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
from binmodels import random_model, stories_tokenizer, tiny_config, write_model_bin
from plan_models import model_bin

from tinylm.boards import memplan
from tinylm.export.binformat import align, read_bin
from tinylm.runtime.build import SOURCES, kernel
from tinylm.runtime.c_engine import arena_bytes

STEPS = 6


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    binary = tmp_path_factory.mktemp("sram_split") / "sram_split"
    sources = [SOURCES / name for name in ("tinylm.c", "host.c", "serve.c")] + [kernel()]
    subprocess.run(["gcc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-I", str(SOURCES),
                    *map(str, sources), str(Path(__file__).resolve().parent / "c" / "sram_split.c"),
                    "-o", str(binary)], check=True)
    return binary


def sizes_where_the_plan_changes(model, context: int) -> list[int]:
    """SRAM sizes for the arena of `context` tokens and each run of the sections every token
    reads (the planner takes the longest that fits, so each run that it can choose is among
    them), and for the whole model beside the arena."""
    arena = arena_bytes(model.config, context)
    sections = memplan.token_sections(model)
    runs = {align(end - start) for i, (start, _) in enumerate(sections)
            for _, end in sections[i:]}
    return sorted({arena, arena + align(model.file_size)} | {arena + run for run in runs})


@pytest.mark.parametrize("tied", [True, False])
def test_every_plan_reads_the_copy_with_the_same_logits(program, tmp_path, tied):
    tokenizer = stories_tokenizer()
    config = dataclasses.replace(tiny_config(len(tokenizer)), n_layers=2, tie_embeddings=tied)
    path = write_model_bin(tmp_path / "m.bin", random_model(config), tokenizer, 8)
    model = read_bin(path)
    sizes = sizes_where_the_plan_changes(model, config.max_seq_len)
    result = subprocess.run([str(program), str(path), str(STEPS), "0", *map(str, sizes)],
                            capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == len(sizes)
    plans = set()
    for size, line in zip(sizes, lines):
        plan = memplan.sram_plan(model, size)
        assert line == f"{plan.context} {plan.copy_start} {plan.copy_end} same", size
        plans.add((plan.copy_start, plan.copy_end))
    sections = memplan.token_sections(model)
    assert (0, 0) in plans and (0, model.file_size) in plans   # none, and all of it
    assert len(plans) > len(sections)                          # and runs between
    first_hot = model.spans["tok_emb" if tied else "layers.0.attn_norm"][0]
    assert sections[0][0] == first_hot


def test_a_context_asked_for_leaves_the_rest_to_weights(program):
    """The long model's 2048 tokens do not fit an RP2040; 64 do, and most of its weights with
    them. An arena that does not fit the context asked for gets the longest that does."""
    path = model_bin("long")
    model = read_bin(path)
    sizes = memplan.BOARDS["rp2040"].arena_room, arena_bytes(model.config, 64) - 16
    result = subprocess.run([str(program), str(path), str(STEPS), "64", *map(str, sizes)],
                            capture_output=True, text=True, check=True)
    asked, too_small = (memplan.sram_plan(model, size, 64) for size in sizes)
    assert result.stdout.splitlines() == [
        f"{p.context} {p.copy_start} {p.copy_end} same" for p in (asked, too_small)]
    assert asked.context == 64 and asked.copy_end - asked.copy_start > sizes[0] // 2
    assert too_small.context == memplan.longest_context(model.config, sizes[1]) < 64
