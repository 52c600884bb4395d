"""Where the bare-metal RP2040 firmware reads the weights: the whole model copied to SRAM at boot
when it and the arena for its whole context fit there, else in place in flash with the
longest run of the sections every token reads that fits beside the arena kept in SRAM (most
of them when the firmware is built with a short context); @ready says which and how many bytes
(weights=, sram_weights=), as memplan plans it for the firmware's SRAM, and the tokens are the
host runtime's either way."""
import dataclasses

import pytest
from binmodels import random_model, run_cli, stories_tokenizer, tiny_config, write_model_bin
from plan_models import model_bin

from tinylm.boards import emulate_rp2040 as emulator
from tinylm.boards import protocol
from tinylm.export.binformat import read_bin

reason = emulator.missing_tools()
pytestmark = pytest.mark.skipif(reason is not None, reason=f"{reason} (.ci/run installs it)")

MAX_TOKENS = 8
SEED = 3
PROMPT = "Once upon"


def model_with_context(tmp_path, context: int):
    tokenizer = stories_tokenizer()
    config = dataclasses.replace(tiny_config(len(tokenizer)), max_seq_len=context)
    return write_model_bin(tmp_path / f"ctx{context}.bin", random_model(config), tokenizer, 8)


@pytest.mark.parametrize("model, context, weights, copied", [
    ("ctx256", 0, "sram", "all"),       # a few KB of model and arena
    ("ctx32768", 0, "flash", "little"),  # its rope table and cache alone are more than the SRAM
    ("long", 0, "flash", "little"),     # 303 KB; its longest context leaves no room to speak of
    ("long", 64, "flash", "most"),      # 64 tokens of context leave room for most of its weights
])
def test_the_firmware_keeps_in_sram_what_the_planner_says(tmp_path, model, context, weights,
                                                          copied):
    path = model_bin(model) if model == "long" else model_with_context(tmp_path, int(model[3:]))
    firmware = emulator.build_firmware(seed=SEED, max_tokens=MAX_TOKENS, context=context)
    run = emulator.run(firmware, emulator.model_flash(path), PROMPT.encode() + b"\n")
    assert run.finished, run.output
    ready, text, _, done = emulator.answers(run.output)
    assert isinstance(ready, protocol.Ready) and ready.fields["weights"] == weights
    plan = emulator.placed_weights(ready, read_bin(path), firmware)   # raises unless @ready agrees
    share = (plan.copy_end - plan.copy_start) / path.stat().st_size
    # "little": the longest context that fits leaves at most one step of the arena (a few
    # hundred bytes), where a norm or two may still fit
    assert {"all": share == 1, "little": share < 0.01, "most": 0.5 < share < 1}[copied]
    assert isinstance(done, protocol.Done) and done.fields["tokens"] == str(MAX_TOKENS)
    host = run_cli("run", path, "--prompt", PROMPT, "--context", plan.context, "--seed", SEED,
                   "--max-tokens", MAX_TOKENS).stdout
    assert PROMPT + text.data.decode("utf-8", "replace") + "\n" == host
