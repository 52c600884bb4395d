"""libFuzzer over "load a .bin and generate a few tokens" (tests/fuzz/fuzz_load.c), with
AddressSanitizer and UndefinedBehaviorSanitizer, from small valid files as seeds.

CI runs it for TINYLM_FUZZ_SECONDS (default 60), half as a 64-bit program and half as a 32-bit
one (a microcontroller's size_t); docs/benchmarks.md records a long run:
    TINYLM_FUZZ_SECONDS=1800 python -m pytest -q tests/test_fuzz.py"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from binmodels import (
    EMPTY_FUZZ_TARGET,
    no_32bit_build,
    random_model,
    stories_tokenizer,
    tiny_config,
    write_model_bin,
)

from tinylm.runtime.build import SOURCES, kernel

FUZZ_DIR = Path(__file__).resolve().parent / "fuzz"


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("clang"), reason="clang (with libFuzzer) is not installed")
@pytest.mark.parametrize("address_bits", [64, 32])
def test_fuzz_load_and_generate(tmp_path, address_bits):
    sanitizers = ("-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined")
    if address_bits == 32 and (why := no_32bit_build("clang", sanitizers, EMPTY_FUZZ_TARGET)):
        pytest.skip(why)
    binary = tmp_path / "fuzz_load"
    built = subprocess.run(["clang", "-std=c99", "-g", "-O1",
                            *(["-m32"] if address_bits == 32 else []), *sanitizers,
                            "-I", str(SOURCES), str(SOURCES / "tinylm.c"), str(kernel()),
                            str(FUZZ_DIR / "fuzz_load.c"), "-o", str(binary)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    seeds, work = tmp_path / "seeds", tmp_path / "corpus"
    seeds.mkdir()
    work.mkdir()
    tokenizer = stories_tokenizer()
    model = random_model(tiny_config(len(tokenizer)))
    for bits in (8, 4, 32):
        write_model_bin(seeds / f"tiny{bits}.bin", model, tokenizer, bits)
    write_model_bin(seeds / "tiny-chat.bin", model, tokenizer, 8, chat=tokenizer.chat_turn())
    seconds = max(int(os.environ.get("TINYLM_FUZZ_SECONDS", "60")) // 2, 1)
    result = subprocess.run([str(binary), f"-max_total_time={seconds}", "-max_len=12000",
                             "-print_final_stats=1", f"-artifact_prefix={tmp_path}/",
                             str(work), str(seeds)], capture_output=True, text=True)
    stats = [line for line in result.stderr.splitlines() if line.startswith("stat::")]
    print("\n".join(stats))      # executions, with -s
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("leak-*"))
