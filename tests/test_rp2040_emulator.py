"""The bare-metal RP2040 firmware in the rp2040js emulator: the same tokens as the host C
runtime for the same .bin, seed and prompt, on one core and on both, with the model put in
flash directly or by a UF2 from `tinylm flash rp2040`; the protocol's error lines; the
benchmark's figures."""
import dataclasses
import json

import pytest
from binmodels import (
    QUESTION,
    chat_bin_ending_at,
    random_model,
    stories_tokenizer,
    tiny_config,
    tiny_model_bin,
    write_model_bin,
)
from click.testing import CliRunner

from tinylm.boards import emulate_rp2040 as emulator
from tinylm.boards import protocol, rp2040_flash
from tinylm.cli import main

reason = emulator.missing_tools()
pytestmark = pytest.mark.skipif(reason is not None, reason=f"{reason} (.ci/run installs it)")

MAX_TOKENS = 12
PROMPT = "Once upon"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_model_bin(tmp_path_factory.mktemp("rp2040") / "tiny.bin")


@pytest.fixture(scope="module")
def firmware():
    return emulator.build_firmware(seed=7, max_tokens=MAX_TOKENS)   # both cores


def host_text(model_path) -> str:
    """What `tinylm run --engine c` prints after the prompt, for the firmware's settings."""
    result = CliRunner().invoke(main, ["run", str(model_path), "--engine", "c", "--prompt", PROMPT,
                                       "--seed", "7", "--max-tokens", str(MAX_TOKENS)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(PROMPT)
    return result.output[len(PROMPT):-1]


def emulated_answer(firmware, flash) -> tuple[str, protocol.Done]:
    run = emulator.run(firmware, flash, PROMPT.encode() + b"\n")
    assert run.finished, run.output
    ready, text, end, done = emulator.answers(run.output)
    assert isinstance(ready, protocol.Ready) and ready.fields["board"] == "rp2040"
    assert isinstance(text, protocol.Text) and isinstance(end, protocol.TextEnd)
    return text.data.decode("utf-8", "replace"), done


@pytest.mark.parametrize("cores", [1, 2])
def test_tokens_equal_the_host_runtime_on_one_core_and_two(model_path, cores):
    """Core 1 is launched through the bootrom's handshake and shares the work (it runs), or
    stays asleep; each core's stack stays in its 4 KB, core 1's in pico-sdk's 2 KB."""
    firmware = emulator.build_firmware(seed=7, max_tokens=MAX_TOKENS, cores=cores)
    run = emulator.run(firmware, emulator.model_flash(model_path), PROMPT.encode() + b"\n")
    _, text, _, done = emulator.answers(run.output)
    assert text.data.decode("utf-8", "replace") == host_text(model_path)
    assert done.fields["tokens"] == str(MAX_TOKENS) and done.fields["stop"] == "length"
    assert (run.busy[1] > 0) == (cores == 2)
    core0_stack, core1_stack = run.stacks_used
    assert 0 < core0_stack < 4096 and core1_stack < 2048 and (core1_stack > 0) == (cores == 2)


def test_a_chat_model_answers_a_question_as_the_host_does(firmware, tmp_path):
    """The firmware's device loop wraps the line in the model's turn and stops at its end of
    reply: the bytes of the reply `tinylm run --chat` and `tinylm serve` give (seed 7)."""
    path, reply = chat_bin_ending_at(tmp_path / "chat.bin", seed=7)
    assert len(reply) < MAX_TOKENS
    run = emulator.run(firmware, emulator.model_flash(path), QUESTION.encode() + b"\n")
    assert run.finished, run.output
    ready, text, end, done = emulator.answers(run.output)
    assert ready.fields["chat"] == "1"
    assert text.data == stories_tokenizer().decode_bytes(reply)
    assert (done.fields["tokens"], done.fields["stop"]) == (str(len(reply)), "eos")


def test_a_uf2_from_tinylm_flash_gives_the_same_tokens(model_path, firmware, tmp_path,
                                                       monkeypatch):
    monkeypatch.setattr(rp2040_flash, "mount_points", lambda: [])   # never a real board
    uf2_path = tmp_path / "model.uf2"
    result = CliRunner().invoke(main, ["flash", "rp2040", str(model_path), "--out", str(uf2_path)])
    assert result.exit_code == 0, result.output
    flash = emulator.flash_from_uf2(uf2_path.read_bytes())
    text, _ = emulated_answer(firmware, flash)
    assert text == host_text(model_path)


def test_an_over_long_line_gets_the_error_line_then_the_next_line_works(model_path, firmware):
    longest = (b"the cat sat. " * 20)[:255]     # fewer tokens than the context holds
    typed = b"a" * 300 + b"\r\n" + longest + b"\n"
    run = emulator.run(firmware, emulator.model_flash(model_path), typed)
    events = emulator.answers(run.output)
    assert events[1] == protocol.Error("line-too-long", "the line had 300 bytes; at most 255 fit")
    assert isinstance(events[-1], protocol.Done)    # a line of exactly 255 bytes is a prompt


@pytest.mark.parametrize("flash, code", [
    ([], "no-model"),
    ([(rp2040_flash.MODEL_OFFSET, b"TLMB" + b"\0" * 200)], "bad-model"),
])
def test_without_a_usable_model_every_line_gets_the_error(firmware, flash, code):
    run = emulator.run(firmware, flash, b"hello\n\x05")
    events = emulator.answers(run.output)
    assert [type(e) for e in events] == [protocol.Error] * 3
    assert {e.code for e in events} == {code}


def test_bench_reports_prompt_and_generation_cycles(model_path):
    figures = {}
    for cores in (1, 2):
        result = CliRunner().invoke(main, ["bench", "--target", "rp2040", str(model_path),
                                           "--max-tokens", "4", "--cores", str(cores), "--json"])
        assert result.exit_code == 0, result.output
        figures[cores] = json.loads(result.output)
    one, two = figures[1], figures[2]
    assert two["cores"] == 2 and two["cycles_per_prompt_token"] > 0
    assert 0 < two["cycles_per_generated_token"] < one["cycles_per_generated_token"]
    assert one["core1_busy_share"] == 0 < two["core1_busy_share"] < 1
    # a model this small is copied to SRAM: no flash bound, compute is the headline
    assert two["weights_in"] == "sram" and two["tok_s_xip_flash_bound"] is None
    assert two["sram_weight_bytes"] == model_path.stat().st_size
    assert two["flash_weight_bytes_per_token"] == 0
    assert two["tok_s_headline"] == two["tok_s_133mhz_emulated"]
    assert 0 < two["matrix_rows_share"] < 1
    assert 0 < two["matrix_cycles_per_mac"] < two["cycles_per_mac"]
    assert 0 < two["peak_sram_bytes"] <= emulator.SRAM_SIZE


def test_the_flash_bound_applies_to_weights_in_flash_past_the_cache(tmp_path, monkeypatch):
    """A context too long for SRAM keeps the weights in flash; in the 16 KB XIP cache they
    have no bound, and with the cache taken as smaller than them, the flash bounds tok/s."""
    tokenizer = stories_tokenizer()
    config = dataclasses.replace(tiny_config(len(tokenizer)), max_seq_len=32768)
    path = write_model_bin(tmp_path / "long.bin", random_model(config), tokenizer, 8)
    figures = emulator.bench(path, max_tokens=2)
    assert figures["weights_in"] == "flash" and figures["tok_s_xip_flash_bound"] is None
    monkeypatch.setattr(emulator, "XIP_CACHE_BYTES", 64)
    figures = emulator.bench(path, max_tokens=2)
    flash = emulator.XIP_BYTES_PER_SECOND / figures["flash_weight_bytes_per_token"]
    assert figures["tok_s_xip_flash_bound"] == round(flash, 2)
    assert figures["tok_s_headline"] == round(min(flash, figures["tok_s_133mhz_emulated"]), 2)


def test_profile_names_the_matrix_kernel(model_path):
    by_function = emulator.profile(model_path, max_tokens=3)
    assert sum(by_function.values()) > 0
    assert "tlm_pair_sums" in by_function and "tlm_forward" in by_function
