"""Damaged .bin files (tests/badfiles.py) are rejected with the same specific message by
Python and by the C loader, which runs under AddressSanitizer and UndefinedBehaviorSanitizer,
as a 64-bit program and as a 32-bit one (a microcontroller's size_t): any memory error or
undefined behaviour fails the test, and so does any output on stderr."""
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from badfiles import corpus, entries, with_crc
from binmodels import (
    no_32bit_build,
    random_model,
    stories_tokenizer,
    tiny_config,
    trained_model,
    write_model_bin,
)

from tinylm.boards import memplan, rp2040_flash
from tinylm.core.config import ModelConfig
from tinylm.export.binformat import (
    ENTRY,
    ENTRY_SIZE,
    MAX_OPTIONAL_SECTIONS,
    BinFormatError,
    parse_bin,
    read_bin,
)
from tinylm.runtime.build import SOURCES, kernel
from tinylm.runtime.c_engine import CEngine, arena_bytes

SANITIZER_CC = next((cc for cc in ("clang", "gcc") if shutil.which(cc)), None)


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("good")
    tokenizer = stories_tokenizer()
    files = [write_model_bin(directory / f"{kind}-{bits}.bin", model, tokenizer, bits)
             for kind, model in [("tiny", random_model(tiny_config(len(tokenizer)))),
                                 ("trained", trained_model())]
             for bits in (8, 4, 32)]
    chat = write_model_bin(directory / "tiny-chat-8.bin", random_model(
        tiny_config(len(tokenizer))), tokenizer, 8, chat=tokenizer.chat_turn())
    return files + [chat]


@pytest.fixture(scope="module", params=[64, 32])
def checker(tmp_path_factory, request):
    if SANITIZER_CC is None:
        pytest.skip("no clang or gcc for the sanitizer build")
    sanitizers = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all")
    if request.param == 32 and (why := no_32bit_build(SANITIZER_CC, sanitizers)):
        pytest.skip(why)
    binary = tmp_path_factory.mktemp("asan") / "check_files"
    result = subprocess.run(
        [SANITIZER_CC, "-std=c99", "-g", "-O1", *sanitizers,
         *(["-m32"] if request.param == 32 else []),
         "-I", str(SOURCES), str(SOURCES / "tinylm.c"), str(kernel()),
         str(Path(__file__).resolve().parent / "fuzz" / "check_files.c"), "-o", str(binary)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return binary


def python_message(data: bytes) -> str:
    try:
        parse_bin(data)
    except BinFormatError as e:
        return str(e)
    return "ok"


@pytest.mark.parametrize("index", [0, 2, 5, 6])  # tiny-8, tiny-32, trained-32, tiny-chat-8
def test_corpus_rejected_alike_by_python_and_c(good_files, checker, tmp_path, index):
    cases = corpus(good_files[index].read_bytes(), seed=index)
    paths = []
    for name, data, want in cases:
        assert python_message(data) == want, name
        paths.append(tmp_path / f"{name}.bin")
        paths[-1].write_bytes(data)
    result = subprocess.run([str(checker), *map(str, good_files), *map(str, paths)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[:len(good_files)] == ["ok"] * len(good_files)
    for (name, _, want), got in zip(cases, lines[len(good_files):], strict=True):
        assert got == want, name


def test_int8_weight_of_minus_128_rejected_alike(good_files, checker, tmp_path):
    """-128 fits an int8 but not the format (-127..127): the C kernel would misread it."""
    good = good_files[0].read_bytes()    # tiny-8: the embedding (section 2) is int8
    embedding = entries(good)[2]
    assert embedding[2] == 1             # dtype int8
    data = bytearray(good)
    data[embedding[3] + 5] = 0x80
    path = tmp_path / "minus-128.bin"
    path.write_bytes(with_crc(data))
    want = "bad int8 weight: -128 (the values are -127..127)"
    assert python_message(path.read_bytes()) == want
    result = subprocess.run([str(checker), str(path)], capture_output=True, text=True)
    assert (result.returncode, result.stderr, result.stdout.splitlines()) == (0, "", [want])


def huge_arena_model(directory):
    """A valid file (CRC and all) whose whole context needs a 5.4 GB arena: more than a 32-bit
    size_t holds, so the sizes must be added up in 64 bits."""
    tokenizer = stories_tokenizer()
    config = ModelConfig(vocab_size=len(tokenizer), dim=1, n_layers=32, n_heads=256,
                         n_kv_heads=256, head_dim=4, hidden_dim=1, max_seq_len=65535)
    assert arena_bytes(config) > 5 << 30
    return write_model_bin(directory / "huge-arena.bin", random_model(config), tokenizer, 8)


def test_an_arena_larger_than_the_address_space_is_never_taken_for_a_small_one(checker,
                                                                              tmp_path):
    """The loader takes the file; the board-sized arena gets the longest context that truly
    fits, on 64-bit and 32-bit builds alike (a sum wrapped at 2**32 once looked small)."""
    path = huge_arena_model(tmp_path)
    result = subprocess.run([str(checker), str(path)], capture_output=True, text=True)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "ok\n")
    engine = CEngine(path, context=16)
    assert engine.arena_size(0) == arena_bytes(read_bin(path).config)
    plan = memplan.plan(path, "rp2040", rp2040_flash.flash_room())
    assert plan.fits and 1 < plan.context < 65535


def with_optional_sections(good: bytes, count: int) -> bytes:
    """The file with `count` empty optional sections (kind 99) after the required ones."""
    table = entries(good)
    n, table_offset = len(table), struct.unpack_from("<I", good, 76)[0]
    shift = ENTRY_SIZE * count           # a multiple of 16: the sections stay aligned
    end = len(good) + shift
    empty = (99, 0, 3, end, 0, 0, 0, 0, 0)
    rows = [(*e[:3], e[3] + shift, *e[4:]) for e in table] + [empty] * count
    body = bytearray(good[:table_offset])
    struct.pack_into("<II", body, 72, n + count, table_offset)
    struct.pack_into("<I", body, 8, end)
    body += b"".join(ENTRY.pack(*row) for row in rows)
    body += good[table_offset + ENTRY_SIZE * n:]
    return with_crc(body)


def test_the_number_of_sections_is_bounded_and_checked_in_one_pass(good_files, checker,
                                                                   tmp_path):
    good = good_files[0].read_bytes()
    most = tmp_path / "most.bin"
    most.write_bytes(with_optional_sections(good, MAX_OPTIONAL_SECTIONS))
    too_many = tmp_path / "too-many.bin"
    too_many.write_bytes(with_optional_sections(good, MAX_OPTIONAL_SECTIONS + 1))
    assert python_message(most.read_bytes()) == "ok"
    assert python_message(too_many.read_bytes()) == "too many sections"
    result = subprocess.run([str(checker), str(most), str(too_many)], capture_output=True,
                            text=True)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == ["ok", "too many sections"]
