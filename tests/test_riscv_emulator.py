"""The runtime built for rv32imc and run in qemu (firmware_esp32/riscv_virt): the same tokens
as the host C runtime for the same .bin, prompt, seed and sampling; instruction counts that
repeat exactly; `tinylm bench --target esp32c3` and its profile by function."""
import json

import pytest
from binmodels import gqa_config, random_model, stories_tokenizer, tiny_config, write_model_bin
from click.testing import CliRunner

from tinylm.boards import emulate_riscv as emulator
from tinylm.cli import main
from tinylm.export.binformat import write_bin
from tinylm.export.quantize import quantize_model
from tinylm.runtime.c_engine import CEngine

reason = emulator.missing_tools()
pytestmark = pytest.mark.skipif(reason is not None, reason=f"{reason} (.ci/run installs it)")

PROMPT = "Once upon a time"
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tokenizer = stories_tokenizer()
    directory = tmp_path_factory.mktemp("riscv")
    gqa = random_model(gqa_config(len(tokenizer)), std=0.2)
    paths = {
        "tiny int8": write_model_bin(directory / "tiny8.bin",
                                     random_model(tiny_config(len(tokenizer))), tokenizer, 8),
        "gqa untied int4": write_model_bin(directory / "gqa4.bin",
                                           random_model(gqa_config(len(tokenizer)), std=0.2),
                                           tokenizer, 4),
        # the rv32 pair kernel's paths: groups of 8 words and a shorter last one (w2: 88
        # columns at the default group of 32), and groups of an odd number of words (20)
        "gqa untied int8": write_model_bin(directory / "gqa8.bin", gqa, tokenizer, 8),
        "gqa int8, groups of 20": directory / "gqa8g20.bin",
    }
    write_bin(paths["gqa int8, groups of 20"], gqa.config, tokenizer, quantize_model(gqa, 8, 20),
              8, 20)
    return paths


@pytest.fixture(scope="module")
def program():
    return emulator.build_program()


@pytest.mark.parametrize("model", ["tiny int8", "gqa untied int4", "gqa untied int8",
                                   "gqa int8, groups of 20"])
@pytest.mark.parametrize("sampling", [dict(seed=7), dict(seed=3, temperature=0.0),
                                      dict(seed=2 ** 40 + 5, temperature=0.8, top_k=20)])
def test_tokens_equal_the_host_runtime(models, program, model, sampling):
    path = models[model]
    sampling = {"temperature": 1.0, "top_k": 0, "top_p": 0.9, **sampling}   # `tinylm run`'s
    run = emulator.run(program, path, PROMPT.encode(), MAX_TOKENS, **sampling)
    host = CEngine(path)
    prompt_ids = host.encode(PROMPT, bos=True)
    assert run.prompt_ids == prompt_ids
    assert run.token_ids == list(host.generate(prompt_ids, MAX_TOKENS, **sampling))
    assert run.stop == ("length" if len(run.token_ids) == MAX_TOKENS else "end")
    readings = [run.start, run.fed, *run.after_token]
    assert all(a < b for a, b in zip(readings, readings[1:]))


def test_instruction_counts_repeat_exactly(models, program):
    """qemu derives minstret from its virtual clock, whose value at the first instruction
    varies from run to run, so counts are compared from the first reading on."""
    runs = [emulator.run(program, models["tiny int8"], b"the cat", 4) for _ in range(2)]
    first, second = ([r - run.start for r in [run.fed, *run.after_token]] for run in runs)
    assert first == second


def test_bench_reports_instructions_and_tok_s_at_160_mhz(models):
    result = CliRunner().invoke(main, ["bench", "--target", "esp32c3", str(models["tiny int8"]),
                                       "--max-tokens", "4", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["assumption"] == "one instruction per cycle at 160 MHz"
    assert figures["prompt_tokens"] == len(CEngine(models["tiny int8"]).encode(PROMPT, bos=True))
    assert figures["instructions_per_prompt_token"] > 0
    per_token = figures["instructions_per_generated_token"]
    assert per_token > figures["matvec_macs_per_token"] > 0    # at least one per MAC
    assert figures["tok_s_160mhz_1ipc"] == pytest.approx(160e6 / per_token, rel=1e-3)
    assert figures["tok_s_headline"] == min(figures["tok_s_160mhz_1ipc"],
                                            figures["tok_s_flash_bound"])


def test_bench_text_says_what_it_assumes(models):
    result = CliRunner().invoke(main, ["bench", "--target", "esp32c3", str(models["tiny int8"]),
                                       "--max-tokens", "3"])
    assert result.exit_code == 0, result.output
    assert "assuming one instruction per cycle at 160 MHz" in result.output.splitlines()[0]


def test_the_profile_adds_up_to_the_counted_instructions(models):
    """The profile counts blocks of code qemu ran; minstret counts instructions retired: two
    ways to the same number, apart from printing a token's line (in the profile only)."""
    arguments = ["bench", "--target", "esp32c3", str(models["gqa untied int4"]),
                 "--max-tokens", "4", "--json"]
    counted = json.loads(CliRunner().invoke(main, arguments).output)
    result = CliRunner().invoke(main, [*arguments, "--profile"])
    assert result.exit_code == 0, result.output
    by_function = json.loads(result.output)
    per_token = counted["instructions_per_generated_token"]
    assert sum(by_function.values()) == pytest.approx(per_token, rel=0.01)
    assert any(name.split(" > ")[0] == "tlm_forward" for name in by_function)


def test_a_file_that_is_not_a_model_gets_one_error_line(tmp_path):
    path = tmp_path / "notes.bin"
    path.write_bytes(b"not a model " * 400)
    result = CliRunner().invoke(main, ["bench", "--target", "esp32c3", str(path)])
    assert result.exit_code == 1
    assert result.output == f"error: {path}: not a tinylm .bin (bad magic)\n"
