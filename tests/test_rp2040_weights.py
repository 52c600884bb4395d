"""Where the bare-metal RP2040 firmware reads the weights: copied to SRAM at boot when the model
and the arena for its whole context fit there, else in place in flash; @ready says which, and
the tokens are the host runtime's either way."""
import dataclasses

import pytest
from binmodels import random_model, stories_tokenizer, tiny_config, write_model_bin
from click.testing import CliRunner

from tinylm.boards import emulate_rp2040 as emulator
from tinylm.boards import protocol
from tinylm.cli import main

reason = emulator.missing_tools()
pytestmark = pytest.mark.skipif(reason is not None, reason=f"{reason} (.ci/run installs it)")

MAX_TOKENS = 8
SEED = 3
PROMPT = "Once upon"


def model_with_context(tmp_path, context: int):
    tokenizer = stories_tokenizer()
    config = dataclasses.replace(tiny_config(len(tokenizer)), max_seq_len=context)
    return write_model_bin(tmp_path / f"ctx{context}.bin", random_model(config), tokenizer, 8)


@pytest.mark.parametrize("context, weights", [
    (256, "sram"),      # a few KB of model and arena
    (32768, "flash"),   # its rope table and key/value cache alone are more than the SRAM
])
def test_weights_go_to_sram_when_they_fit(tmp_path, context, weights):
    path = model_with_context(tmp_path, context)
    firmware = emulator.build_firmware(seed=SEED, max_tokens=MAX_TOKENS)
    run = emulator.run(firmware, emulator.model_flash(path), PROMPT.encode() + b"\n")
    assert run.finished, run.output
    ready, text, _, done = emulator.answers(run.output)
    assert isinstance(ready, protocol.Ready) and ready.fields["weights"] == weights
    assert isinstance(done, protocol.Done) and done.fields["tokens"] == str(MAX_TOKENS)
    host = CliRunner().invoke(main, ["run", str(path), "--prompt", PROMPT, "--seed", str(SEED),
                                     "--max-tokens", str(MAX_TOKENS)])
    assert host.exit_code == 0, host.output
    assert PROMPT + text.data.decode("utf-8", "replace") + "\n" == host.stdout
