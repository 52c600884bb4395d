"""The two-core hook of the C runtime (tlm_state.run_both): with a hook that runs the second
half of every task (a matrix's rows, a layer's attention heads, the sampler's weights) before
the first, the logits and sampled tokens are those of one core, exactly (tests/c/two_cores.c,
built with the system C compiler), for the int8 pair kernel, its fallback (int4, and int8 with
7 columns) and a last odd row (tests/odd_shapes.py); with this computer's kernel file and with
the portable one, which give the same logits."""
import subprocess
from pathlib import Path

import pytest
from binmodels import (
    STORIES_ABSENT,
    STORIES_BIN,
    random_model,
    stories_bin,
    stories_tokenizer,
    tiny_config,
    trained_model,
    write_model_bin,
)
from odd_shapes import odd_config

from tinylm.export.binformat import read_bin
from tinylm.runtime.build import PORTABLE, SOURCES, compiler, kernel

STEPS = 40


def build(directory, kernels):
    try:
        cc = compiler()
    except OSError as e:
        pytest.skip(str(e))
    binary = directory / "two_cores"
    subprocess.run([*cc.split(), "-std=c99", "-O2", "-I", str(SOURCES), str(SOURCES / "tinylm.c"),
                    str(kernels), str(Path(__file__).resolve().parent / "c" / "two_cores.c"), "-o",
                    str(binary)], check=True)
    return binary


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return build(tmp_path_factory.mktemp("two_cores"), kernel())


@pytest.fixture(scope="module")
def portable_program(tmp_path_factory):
    """The build with the portable kernels (the int8 pair kernel in C), which hosts with SIMD
    do not use."""
    return build(tmp_path_factory.mktemp("two_cores_portable"), SOURCES / PORTABLE)


def run(program, path):
    result = subprocess.run([str(program), str(path), str(STEPS)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


def model_path(name, directory):
    if name == "stories-8":
        if not STORIES_BIN.exists():
            pytest.skip(STORIES_ABSENT)
        return stories_bin(8)
    kind, bits = name.split("-")
    tokenizer = stories_tokenizer()
    model = trained_model() if kind == "trained" else \
        random_model((odd_config if kind == "odd" else tiny_config)(len(tokenizer)))
    return write_model_bin(directory / f"{name}.bin", model, tokenizer, int(bits))


@pytest.mark.parametrize("build_of", ["program", "portable_program"])
@pytest.mark.parametrize("name", ["tiny-8", "odd-8", "trained-8", "trained-4", "stories-8"])
def test_halves_in_reverse_order_give_the_same_logits(request, build_of, tmp_path, name):
    path = model_path(name, tmp_path)
    word, steps, calls, _, sampled = run(request.getfixturevalue(build_of), path)
    config = read_bin(path).config
    tasks_per_token = (7 + 1) * config.n_layers + 1   # the matrices, attention, the LM head
    assert (word, int(steps), int(calls)) == ("same", STEPS, STEPS * tasks_per_token)
    assert int(sampled) == STEPS



@pytest.mark.parametrize("name", ["tiny-8", "odd-8", "trained-8", "trained-4", "stories-8"])
def test_the_portable_kernels_give_the_same_logits(program, portable_program, tmp_path, name):
    path = model_path(name, tmp_path)
    assert run(portable_program, path) == run(program, path)
