"""Models for the .bin and C runtime tests: a ~1K-parameter one, a random GQA model with an
untied head, a briefly trained GQA + untied model, a chat model that ends its reply where a
test wants, and stories260K when ../shared has it."""
from __future__ import annotations

import functools
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tinylm.cli import main
from tinylm.core.config import ModelConfig
from tinylm.core.model import Transformer
from tinylm.core.optim import AdamW
from tinylm.export.binformat import write_bin
from tinylm.export.quantize import DEFAULT_GROUP, calibration_sequences, quantize_model
from tinylm.runtime.c_engine import CEngine
from tinylm.text.corpus import make_stories
from tinylm.text.tokenizer import Tokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
STORIES_BIN = SHARED / "models" / "stories260K.bin"
TOKENIZER_BIN = SHARED / "models" / "tok512.bin"
VALID_TEXT = SHARED / "data" / "tinystories_valid_head.txt"
TRAIN_TEXT = SHARED / "data" / "tinystories_train_head.txt"
STORIES_ABSENT = f"{STORIES_BIN.parent.parent} (stories260K) is absent"
needs_stories = pytest.mark.skipif(not STORIES_BIN.exists(), reason=STORIES_ABSENT)

EMPTY_PROGRAM = "int main(void) { return 0; }\n"
EMPTY_FUZZ_TARGET = ("#include <stddef.h>\n#include <stdint.h>\n"
                     "int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) "
                     "{ (void)data; (void)size; return 0; }\n")


@functools.cache
def no_32bit_build(cc: str, flags: tuple[str, ...], source: str = EMPTY_PROGRAM) -> str | None:
    """Why `cc -m32 flags` cannot build even an empty program here (None if it can). Only then
    is a 32-bit build of the runtime skipped: any other failure of it is the runtime's."""
    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty.c"
        empty.write_text(source)
        built = subprocess.run([cc, "-m32", *flags, str(empty), "-o", str(empty.with_suffix(""))],
                               capture_output=True, text=True)
    if built.returncode == 0:
        return None
    return ("no 32-bit build here (.ci/run installs libc6-dev-i386, gcc-multilib and "
            f"g++-multilib): {built.stderr[-300:]}")


@functools.lru_cache(maxsize=None)
def stories_tokenizer(vocab_size: int = 300) -> Tokenizer:
    return Tokenizer.train(make_stories(200), vocab_size)


def tiny_config(vocab_size: int) -> ModelConfig:
    """dim 4: the 260+ byte and special tokens' embeddings are most of its ~1.2K parameters."""
    return ModelConfig(vocab_size=vocab_size, dim=4, n_layers=1, n_heads=2, n_kv_heads=1,
                       head_dim=2, hidden_dim=8, max_seq_len=256)


def gqa_config(vocab_size: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
                       head_dim=8, hidden_dim=88, max_seq_len=256, tie_embeddings=False)


def random_model(config: ModelConfig, seed: int = 0, std: float = 0.5) -> Transformer:
    """Random weights large enough that the logits vary (init_params' are nearly uniform)."""
    rng = np.random.default_rng(seed)
    params = {name: (rng.standard_normal(shape) * std + (len(shape) == 1)).astype(np.float32)
              for name, shape in config.param_shapes().items()}
    return Transformer(config, params)


@functools.lru_cache(maxsize=None)
def trained_model(steps: int = 100, seed: int = 0) -> Transformer:
    """A GQA model with an untied head, trained briefly on the built-in stories (with
    stories_tokenizer()); cached, as several test modules use it."""
    tokenizer = stories_tokenizer()
    model = Transformer.initialize(gqa_config(len(tokenizer)), seed=seed)
    ids = np.concatenate([tokenizer.encode(s, bos=True) for s in make_stories(400, seed)])
    optimizer = AdamW(model.params)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        starts = rng.integers(0, len(ids) - 65, 12)
        batch = np.stack([ids[s:s + 65] for s in starts])
        _, grads = model.loss_and_grads(batch[:, :-1], batch[:, 1:], n_threads=1)
        optimizer.step(grads, lr=3e-3 * min(1.0, (step + 1) / 20))
    return model


def tiny_model_bin(path) -> Path:
    """A random ~1.2K-parameter int8 .bin (tiny_config) with a stories tokenizer: its token
    pieces are mostly lone bytes, often not UTF-8."""
    tokenizer = stories_tokenizer()
    return write_model_bin(path, random_model(tiny_config(len(tokenizer))), tokenizer, 8)


def write_model_bin(path, model: Transformer, tokenizer: Tokenizer, bits: int,
                    calibration=None, chat=None) -> Path:
    """The model quantized to `bits` (a chat model when `chat` is its ChatTurn)."""
    group = 0 if bits == 32 else DEFAULT_GROUP[bits]
    if bits == 4 and calibration is None:
        calibration = calibration_sequences(model, tokenizer, n_tokens=1024)
    write_bin(path, model.config, tokenizer, quantize_model(model, bits, group, calibration),
              bits, group, chat)
    return Path(path)


QUESTION = "Who found the ball?"


def chat_bin_ending_at(path, seed: int = 0, after: int = 3) -> tuple[Path, list[int]]:
    """A random int8 chat model (tiny_config) whose end of reply is a token it samples in its
    answer to QUESTION (with `tinylm run`'s sampling and `seed`): the first from position
    `after` on that it did not sample before. Returns the .bin and the reply's ids up to that
    token. Its header names the token (a crafted file: quantize writes special tokens there),
    so the reply ends after a few tokens, as a trained chat model's does."""
    tokenizer = stories_tokenizer()
    path = write_model_bin(path, random_model(tiny_config(len(tokenizer))), tokenizer, 8,
                           chat=tokenizer.chat_turn())
    prompt_ids = tokenizer.chat_turn().prompt_ids(tokenizer, QUESTION)
    reply = list(CEngine(path).generate(prompt_ids, 40, 1.0, 0, 0.9, seed))
    end = next(i for i in range(after, len(reply)) if reply[i] not in reply[:i])
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 92, reply[end])
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[16:])))
    path.write_bytes(bytes(data))
    return path, reply[:end]


_scratch = tempfile.TemporaryDirectory(prefix="tinylm-bins-")


@functools.lru_cache(maxsize=None)
def stories_bin(bits: int) -> Path:
    """stories260K imported with `tinylm import-llama2c` and quantized with `tinylm quantize`
    (cached for the test session); needs ../shared."""
    directory = Path(_scratch.name)
    checkpoint = directory / "stories260K"
    if not checkpoint.exists():
        run_cli("import-llama2c", STORIES_BIN, TOKENIZER_BIN, "--out", checkpoint)
    out = directory / f"stories260K-q{bits}.bin"
    run_cli("quantize", checkpoint, "--bits", bits, "-o", out)
    return out


def run_cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def run_text(model_path, prompt: str, context: int = 0, seed: int = 0) -> str:
    """What `tinylm run --engine c` prints after the prompt, with its sampling defaults, which
    are the firmwares' too."""
    output = run_cli("run", model_path, "--engine", "c", "--prompt", prompt,
                     "--context", context, "--seed", seed).stdout
    return output[len(prompt):-1]
