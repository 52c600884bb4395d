"""The `tinylm` command line, run in-process with click's CliRunner, on a tiny model."""
import importlib.util
import json
import re
import shutil

import pytest
from click.testing import CliRunner
from test_llama2c_model import MODEL_BIN, TOKENIZER_BIN, needs_shared, write_tiny_llama2c

from tinylm.cli import main
from tinylm.distillation import stages as distilling
from tinylm.export.binformat import read_bin
from tinylm.text.corpus import make_stories
from tinylm.training.checkpoint import load_checkpoint

TINY = ["--vocab-size", "300", "--dim", "16", "--n-layers", "1", "--n-heads", "2",
        "--seq-len", "32", "--batch-size", "4", "--eval-every", "10", "--threads", "1"]
COMMANDS = ["demo", "train", "generate", "eval", "info", "import-llama2c"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *words):
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "stories.txt"
    path.write_text("\n\n".join(make_stories(60)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, stories):
    out = tmp_path_factory.mktemp("run")
    result = run("train", "--data", stories, "--out", out, "--steps", 3, *TINY, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and result.stdout.startswith("Usage: ")


def test_train_prints_one_json_object(trained):
    out, summary = trained
    assert summary["step"] == 3 and summary["val_loss"] > 0
    assert (out / "checkpoint.npz").is_file()


def test_train_resume_continues_and_keeps_the_shape(trained, tmp_path):
    out, _ = trained
    result = run("train", "--out", out, "--resume", "--steps", 5, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["step"] == 5
    assert_one_line_error(run("train", "--out", out, "--resume", "--dim", 32), "dim")
    copy = shutil.copytree(out, tmp_path / "copy", symlinks=True)   # the others keep `trained`
    widened = run("train", "--out", copy, "--resume", "--steps", 6, "--seq-len", 64,
                  "--separate-documents", "--json")
    assert widened.exit_code == 0, widened.output
    assert load_checkpoint(copy).config.max_seq_len == 64
    assert load_checkpoint(copy).train_args["separate_documents"] is True


def test_generate_streams_a_continuation(trained):
    out, _ = trained
    result = run("generate", out, "--prompt", "Once upon a time", "--max-tokens", 10, "--seed", 1)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Once upon a time")
    assert len(result.stdout) > len("Once upon a time\n")
    again = run("generate", out, "--prompt", "Once upon a time", "--max-tokens", 10, "--seed", 1)
    assert again.stdout == result.stdout


def test_eval(trained, stories):
    out, _ = trained
    result = run("eval", out, "--data", stories, "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["loss"] > 0 and scores["bpb"] > 0 and scores["tokens"] > 0
    assert scores["documents"] == 60
    text = run("eval", out, "--data", stories).stdout
    assert "nats/token" in text and "bits/byte" in text


def test_info(trained):
    out, summary = trained
    facts = json.loads(run("info", out, "--json").stdout)
    assert facts["n_params"] == summary["n_params"]
    assert facts["tokenizer_size"] == facts["config"]["vocab_size"] == 300
    assert facts["steps_trained"] >= 3
    assert "n_params" in run("info", out).stdout


def test_import_llama2c(tmp_path):
    model_bin, tokenizer_bin = write_tiny_llama2c(tmp_path)
    result = run("import-llama2c", model_bin, tokenizer_bin, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert json.loads(run("info", tmp_path / "out", "--json").stdout)["tokenizer_size"] == 264


@needs_shared
def test_import_stories260k_and_generate(tmp_path):
    assert run("import-llama2c", MODEL_BIN, TOKENIZER_BIN, "--out", tmp_path).exit_code == 0
    result = run("generate", tmp_path, "--temperature", 0, "--max-tokens", 20)
    assert result.stdout.startswith("Once upon a time, there was a little girl named Lily.")


DEMO = ["--steps", 2, "--teacher-steps", 2, "--stories", 60, "--questions", 40,
        "--held-out", 4]


@pytest.mark.skipif(not all(importlib.util.find_spec(name) for name in ("torch", "transformers")),
                    reason="the demo's teacher needs PyTorch and transformers: pip install -e "
                           "'.[teacher]' (the demo without them is tested below)")
def test_demo_runs_end_to_end(tmp_path):
    result = run("demo", "--out", tmp_path, *DEMO)
    assert result.exit_code == 0, result.output
    assert re.search(r"the teacher +\d+% answered right", result.stdout)
    for words in ("before training", "after training", "answered right", "The student in int8",
                  f"tinylm chat --model {tmp_path / 'model-int8.bin'}"):
        assert words in result.stdout
    assert read_bin(tmp_path / "model-int8.bin").chat is not None
    assert_one_line_error(run("demo", "--out", tmp_path), "already holds")


def test_demo_without_a_teacher_trains_on_the_true_answers(tmp_path, monkeypatch):
    def no_teacher():
        raise OSError("the teacher needs PyTorch and transformers")
    monkeypatch.setattr(distilling, "teacher_package", no_teacher)
    result = run("demo", "--out", tmp_path, *DEMO)
    assert result.exit_code == 0, result.output
    assert "No teacher" in result.stdout
    assert not re.search(r"the teacher +\d+% answered right", result.stdout)
    assert load_checkpoint(tmp_path).chat is not None


def test_errors_are_one_line(tmp_path, stories, trained):
    out, _ = trained
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    assert_one_line_error(run("train", "--data", tmp_path / "missing.txt", "--out", tmp_path / "a"),
                          "missing.txt")
    assert_one_line_error(run("train", "--data", empty, "--out", tmp_path / "b"), "no text")
    assert_one_line_error(run("train", "--data", stories, "--out", tmp_path / "c",
                              "--vocab-size", 5000), "vocab_size")
    assert_one_line_error(run("train", "--data", stories, "--out", tmp_path / "d", *TINY,
                              "--n-kv-heads", 3), "n_kv_heads")
    assert_one_line_error(run("train", "--data", stories, "--out", out, *TINY), "already holds")
    assert_one_line_error(run("eval", corrupt, "--data", stories), "not a valid tinylm checkpoint")
    assert_one_line_error(run("info", tmp_path / "nowhere"), "no checkpoint")
    assert_one_line_error(run("generate", out, "--prompt", "word " * 40), "context")
    assert_one_line_error(run("import-llama2c", corrupt, corrupt, "--out", tmp_path / "e"),
                          "too short")


def test_debug_shows_the_exception(tmp_path):
    result = run("--debug", "info", tmp_path / "nowhere")
    assert isinstance(result.exception, FileNotFoundError)


def test_usage_mistakes_exit_with_status_2(tmp_path):
    assert run("eval", tmp_path).exit_code == 2         # no --data
    assert run("train", "--out", tmp_path).exit_code == 2  # neither --data nor --resume


def test_a_path_of_the_wrong_kind_says_which_command_takes_it(trained, tmp_path, stories):
    out, _ = trained
    model_bin = tmp_path / "model.bin"
    assert run("quantize", out, "--bits", 8, "-o", model_bin).exit_code == 0
    for command in ("generate", "quantize"):
        extra = ["--bits", 8, "-o", tmp_path / "x.bin"] if command == "quantize" else []
        assert_one_line_error(run(command, model_bin, *extra), "is a .bin model file",
                              f"`tinylm {command}` takes a model directory", "`tinylm run`")
    for command in ("info", "generate", "eval"):
        extra = ["--data", stories] if command == "eval" else []
        assert_one_line_error(run(command, stories, *extra),
                              "neither a checkpoint nor a .bin", f"`tinylm {command}` takes")
    assert_one_line_error(run("run", out), "is a directory", "`tinylm run` takes a .bin",
                          "`tinylm generate`")


def test_generation_says_when_the_context_cut_it_short(trained):
    out, _ = trained
    result = run("generate", out, "--prompt", "word " * 6, "--max-tokens", 100,
                 "--temperature", 0)
    assert result.exit_code == 0, result.output
    assert result.stderr == "(stopped: the context of 32 tokens is full)\n"
    short = run("generate", out, "--prompt", "word", "--max-tokens", 2, "--temperature", 0)
    assert short.exit_code == 0 and short.stderr == ""


@pytest.mark.parametrize("engine", ["c", "numpy"])
def test_run_refuses_a_long_prompt_before_printing(trained, tmp_path, engine):
    out, _ = trained
    model_bin = tmp_path / "model.bin"
    run("quantize", out, "--bits", 8, "-o", model_bin)
    result = run("run", model_bin, "--engine", engine, "--prompt", "word " * 40)
    assert_one_line_error(result, "the prompt has", "it needs 1 to 31")


def test_an_interrupted_run_exits_130_and_labels_its_validation(stories, tmp_path,
                                                                monkeypatch):
    from tinylm.training import loop
    steps = []

    def ctrl_c_in_step_3(grads, limit):
        steps.append(1)
        if len(steps) == 3:
            raise KeyboardInterrupt
        return real(grads, limit)
    real = loop.clip_grad_norm
    monkeypatch.setattr(loop, "clip_grad_norm", ctrl_c_in_step_3)
    result = run("train", "--data", stories, "--out", tmp_path, *TINY, "--steps", 10,
                 "--eval-every", 1)
    assert result.exit_code == 130
    assert "step 2: val loss" in result.stdout and "(at step" not in result.stdout
    monkeypatch.setattr(loop, "clip_grad_norm", real)
    result = run("train", "--out", tmp_path, "--resume", "--steps", 5, "--eval-every", 4)
    assert result.exit_code == 0 and "step 5: val loss " in result.stdout
    assert "Ctrl-C saves a checkpoint and stops with exit status 130" in " ".join(
        run("train", "--help").stdout.split())


def test_text_that_is_not_utf8_is_named_with_its_offset(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait".encode("latin-1"))
    assert_one_line_error(run("train", "--data", latin1, "--out", tmp_path / "a"),
                          str(latin1), "not UTF-8", "byte 3 is 0xe9")


def test_one_document_is_not_plural(trained, tmp_path):
    out, _ = trained
    one = tmp_path / "one.txt"
    one.write_text("Tom had a red ball.")
    assert "(1 document," in run("eval", out, "--data", one).stdout
