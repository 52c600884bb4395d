"""Damaged .bin files (tests/badfiles.py) are rejected with the same specific message by
Python and by the C loader, which runs under AddressSanitizer and UndefinedBehaviorSanitizer:
any memory error or undefined behaviour fails the test, and so does any output on stderr."""
import shutil
import subprocess

import pytest

from badfiles import corpus
from binmodels import random_model, stories_tokenizer, tiny_config, trained_model, write_model_bin
from tinylm.binformat import BinFormatError, parse_bin
from tinylm.runtime import SOURCES

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
                    str(SOURCES.parents[1] / "tests" / "fuzz" / "check_files.c"),
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
