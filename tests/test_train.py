"""Training runs: exact resume after Ctrl-C or a crash, outputs, progress reporting."""
import io
import json
import os
import random
import signal
import sys

import numpy as np
import pytest

from tinylm.training.checkpoint import load_checkpoint, load_model
from tinylm.training.evaluate import evaluate
from tinylm.training.loop import TrainArgs, resume, train
from tinylm.training.progress import ProgressBar, plot_losses

WORDS = "the a cat dog ran sat on mat Lily Tom park happy sad big little girl boy said look".split()


def stories(seed, n):
    rng = random.Random(seed)
    return "\n<|endoftext|>\n".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) + "." for _ in range(n))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "stories.txt"
    path.write_text(stories(0, 150), encoding="utf-8")
    return path


def tiny_args(text_file, out, **changes):
    args = dict(data=[text_file], out=out, vocab_size=300, dim=16, n_layers=1, n_heads=2,
                seq_len=16, batch_size=4, steps=8, eval_every=4, checkpoint_every=100,
                log_every=2, threads=2)
    return TrainArgs(**{**args, **changes})


def assert_same_params(dir_a, dir_b):
    a, b = load_checkpoint(dir_a), load_checkpoint(dir_b)
    assert a.step == b.step
    for name in a.params:
        assert np.array_equal(a.params[name], b.params[name]), name
    for key in ("m", "v"):
        for name in a.params:
            assert np.array_equal(a.optimizer[key][name], b.optimizer[key][name])


@pytest.fixture(scope="module")
def straight_run(text_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    summary = train(tiny_args(text_file, out))
    return out, summary


def test_outputs_of_a_run(straight_run):
    out, summary = straight_run
    assert summary["step"] == 8 and not summary["interrupted"]
    assert np.isfinite(summary["loss"]) and summary["tokens_per_s"] > 0
    assert 0 < summary["val_bpb"] and 0 < summary["val_loss"]
    assert summary["checkpoint"] == str(out / "checkpoint.npz")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == [2, 4, 6, 8]
    assert set(records[0]) == {"step", "loss", "lr", "grad_norm", "tokens_per_s"}
    assert [r["step"] for r in records if "val_loss" in r] == [4, 8]
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "train.uint16").exists() and (out / "val.uint16").exists()
    model, tokenizer = load_model(out)
    assert model.config.max_seq_len == 16 and tokenizer.vocab_size == 300


def test_interrupt_then_resume_is_exact(straight_run, text_file, tmp_path):
    def ctrl_c_at_step_4(step, loss):
        if step == 4:
            raise KeyboardInterrupt

    summary = train(tiny_args(text_file, tmp_path), on_step=ctrl_c_at_step_4)
    assert summary["interrupted"] and summary["step"] == 4
    assert load_checkpoint(tmp_path).step == 4
    summary = resume(tmp_path)
    assert summary["step"] == 8 and not summary["interrupted"]
    assert_same_params(straight_run[0], tmp_path)


def test_ctrl_c_signal_stops_after_the_step(straight_run, text_file, tmp_path):
    def press_ctrl_c(step, loss):  # a real SIGINT, as from the keyboard
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    handler = signal.getsignal(signal.SIGINT)
    assert train(tiny_args(text_file, tmp_path), on_step=press_ctrl_c)["step"] == 3
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C behaves as usual again
    resume(tmp_path)
    assert_same_params(straight_run[0], tmp_path)


def test_resume_after_a_crash_from_the_periodic_checkpoint(straight_run, text_file, tmp_path):
    def crash_at_step_7(step, loss):
        if step == 7:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        train(tiny_args(text_file, tmp_path, checkpoint_every=5), on_step=crash_at_step_7)
    assert load_checkpoint(tmp_path).step == 5
    resume(tmp_path, checkpoint_every=5)
    assert_same_params(straight_run[0], tmp_path)


def test_resume_rules(straight_run, text_file, tmp_path):
    out = straight_run[0]
    with pytest.raises(FileExistsError, match="already holds a checkpoint"):
        train(tiny_args(text_file, out))
    with pytest.raises(ValueError, match="cannot change when resuming: dim"):
        resume(out, dim=32)
    with pytest.raises(FileNotFoundError):
        resume(tmp_path)
    with pytest.raises(ValueError, match="cannot shorten the context"):
        resume(out, seq_len=8, steps=10)


def test_resume_with_a_longer_context(straight_run, text_file, tmp_path):
    """The context may grow when resuming: the next steps train on longer windows, and the
    model then takes (and is scored on) that context; its weights carry over unchanged."""
    train(tiny_args(text_file, tmp_path, steps=4))
    before = load_checkpoint(tmp_path)
    summary = resume(tmp_path, seq_len=48, batch_size=2, steps=6)
    after = load_checkpoint(tmp_path)
    assert after.step == 6 and after.config.max_seq_len == 48
    assert after.train_args["seq_len"] == 48 and np.isfinite(summary["val_bpb"])
    assert not np.array_equal(after.params["tok_emb"], before.params["tok_emb"])
    model, _ = load_model(tmp_path)
    assert model.logits(np.zeros((1, 48), np.int64)).shape[1] == 48    # refused at 16 before


def test_separate_documents_changes_what_a_window_trains(straight_run, text_file, tmp_path):
    """Windows of 16 tokens hold pieces of several stories; attending within each story only
    changes the training from the straight run's (the same batches), and the summary still
    comes out."""
    summary = train(tiny_args(text_file, tmp_path, separate_documents=True))
    assert np.isfinite(summary["loss"]) and summary["step"] == 8
    assert load_checkpoint(tmp_path).train_args["separate_documents"] is True
    trained, straight = load_checkpoint(tmp_path).params, load_checkpoint(straight_run[0]).params
    assert not np.allclose(trained["layers.0.wq"], straight["layers.0.wq"])


def test_validation_numbers_match_evaluate(text_file, tmp_path):
    val_file = tmp_path / "val.txt"
    val_file.write_text(stories(1, 10), encoding="utf-8")
    summary = train(tiny_args(text_file, tmp_path / "run", val_data=[val_file], steps=2))
    model, tokenizer = load_model(tmp_path / "run")
    result = evaluate(model, tokenizer, val_file.read_text(encoding="utf-8"), batch_size=4)
    assert summary["val_loss"] == pytest.approx(result["loss"], rel=1e-6)
    assert summary["val_bpb"] == pytest.approx(result["bpb"], rel=1e-6)


@pytest.mark.parametrize("vocab_size", [16, 27])   # the stories have 22 characters
def test_small_vocabularies_are_of_characters(text_file, tmp_path, vocab_size):
    summary = train(tiny_args(text_file, tmp_path / "run", vocab_size=vocab_size, steps=4))
    model, tokenizer = load_model(tmp_path / "run")
    assert len(tokenizer) == model.config.vocab_size == vocab_size and not tokenizer.merges
    assert np.isfinite(summary["val_bpb"])
    with pytest.raises(ValueError, match="at least 260"):
        train(tiny_args(text_file, tmp_path / "bpe", vocab_size=vocab_size, tokenizer="bpe"))


def test_data_errors(tmp_path):
    (tmp_path / "short.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(ValueError, match="training window needs"):
        train(tiny_args(tmp_path / "short.txt", tmp_path / "out", vocab_size=260,
                        val_data=[tmp_path / "short.txt"]))
    (tmp_path / "blank.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no text"):
        train(tiny_args(tmp_path / "blank.txt", tmp_path / "out2"))


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_redraws_one_line():
    terminal = FakeTerminal()
    bar = ProgressBar(total_steps=10, tokens_per_step=100, stream=terminal, interval=0)
    bar.update(1, 2.5)
    bar.update(2, 2.25)
    bar.print("val loss 2.0")
    output = terminal.getvalue()
    assert output.startswith("\rstep 1/10 | loss 2.5000 | ")
    assert "\rstep 2/10 | loss 2.2500 | " in output and "tok/s | ETA " in output
    assert "\n" not in output.removesuffix("val loss 2.0\n")  # the bar never starts a new line


def test_progress_bar_into_a_file_prints_lines_now_and_then():
    log = io.StringIO()
    bar = ProgressBar(total_steps=1000, stream=log, interval=3600)
    for step in range(1, 1001):
        bar.update(step, 1.0, force=step == 1000)
    lines = log.getvalue().splitlines()
    assert [line.split(" |")[0] for line in lines] == ["step 1/1000", "step 1000/1000"]
    assert "\r" not in log.getvalue()


def test_plot_losses(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 2, "val_loss": 2.5}]))
    pytest.importorskip("matplotlib")
    assert plot_losses(metrics, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_plot_losses_without_matplotlib(tmp_path, monkeypatch):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 3.0}) + "\n")
    for name in [m for m in sys.modules if m.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert not plot_losses(tmp_path / "metrics.jsonl", tmp_path / "loss.png")
    assert not (tmp_path / "loss.png").exists()
