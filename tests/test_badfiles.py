"""Damaged .bin files (tests/badfiles.py) are rejected with the same specific message by
Python and by the C loader, which runs under AddressSanitizer and UndefinedBehaviorSanitizer:
any memory error or undefined behaviour fails the test, and so does any output on stderr."""
import shutil
import subprocess
from pathlib import Path

import pytest
from badfiles import corpus, entries, with_crc
from binmodels import random_model, stories_tokenizer, tiny_config, trained_model, write_model_bin

from tinylm.export.binformat import BinFormatError, parse_bin
from tinylm.runtime.build import SOURCES, kernel

SANITIZER_CC = next((cc for cc in ("clang", "gcc") if shutil.which(cc)), None)


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("good")
    tokenizer = stories_tokenizer()
    return [write_model_bin(directory / f"{kind}-{bits}.bin", model, tokenizer, bits)
            for kind, model in [("tiny", random_model(tiny_config(len(tokenizer)))),
                                ("trained", trained_model())]
            for bits in (8, 4, 32)]


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    if SANITIZER_CC is None:
        pytest.skip("no clang or gcc for the sanitizer build")
    binary = tmp_path_factory.mktemp("asan") / "check_files"
    subprocess.run([SANITIZER_CC, "-std=c99", "-g", "-O1", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", "-I", str(SOURCES), str(SOURCES / "tinylm.c"),
                    str(kernel()), str(Path(__file__).resolve().parent / "fuzz" / "check_files.c"),
                    "-o", str(binary)], check=True)
    return binary


def python_message(data: bytes) -> str:
    try:
        parse_bin(data)
    except BinFormatError as e:
        return str(e)
    return "ok"


@pytest.mark.parametrize("index", [0, 2, 5])    # tiny-8, tiny-32 and trained-32 as the base
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
