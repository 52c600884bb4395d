"""`tinylm synthesize`: teacher-written prompts in rounds (new subjects, harder ones), near-
duplicates dropped, the teacher's replies, a `datasets` dataset that `tinylm distill --dataset`
reads; killed and resumed, shared by two processes. A tiny teacher cannot follow instructions,
so the rounds are tested with a fake one that does, predictably; the tiny Gemma-3 teacher
checks the real code path, through to a distilled chat student."""
import json
import multiprocessing
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from tinylm.cli import main
from tinylm.distillation import synthetic
from tinylm.distillation.synthetic import NearDuplicates, SynthesisArgs, clean_prompt
from tinylm.text.chat_data import read_chat_pairs

datasets = pytest.importorskip("datasets", reason="datasets not installed")
pytest.importorskip("datasketch", reason="datasketch not installed")

SUBJECTS = ["cup", "box", "gear", "vase", "ring", "hook", "lamp", "bowl", "desk", "drum"]
DEMANDS = ["Add holes.", "Round its edges.", "Make it hollow.", "Give it a lid.",
           "Make its size a parameter.", "Put text on it.", "Make it print without supports."]


class FakeTeacher:
    """Writes what a chat model asked these things would: a seed prompt about one of a few
    subjects (so that some come out twice), a new subject in place of a prompt's, a harder
    version with one more demand, the first with a lead-in line; and a reply to a prompt."""

    def __init__(self, fail_at_call=None):
        self.calls, self.fail_at_call = 0, fail_at_call

    def answer(self, prompts, max_new_tokens, temperature, top_p, batch_size, seed):
        self.calls += 1
        if self.calls == self.fail_at_call:
            raise KeyboardInterrupt       # a kill in the middle of a shard
        return [self.write(prompt, seed + i) for i, prompt in enumerate(prompts)]

    @staticmethod
    def write(prompt, seed):
        if prompt.startswith("Write one request"):
            return f"Here is one:\n**Model a {SUBJECTS[seed % 3]} in OpenSCAD.**"
        if "different subject" in prompt:
            before = prompt.split("\n")[1]
            subject = next(s for s in SUBJECTS if f" {s} " in before)
            return before.replace(f" {subject} ",
                                  f" {SUBJECTS[(SUBJECTS.index(subject) + 1 + seed % 4) % 10]} ")
        if "harder" in prompt:
            return "Request: " + prompt.split("\n")[1] + " " + DEMANDS[seed % len(DEMANDS)]
        return f"An answer to: {prompt}"


def quiet(message):
    pass


def settings(out, **changes):
    return SynthesisArgs(**{"out": out, "topic": "3D models in OpenSCAD", "count": 24,
                            "seed_count": 6, "shard_size": 4, **changes})


def rows(out):
    dataset = datasets.load_from_disk(str(out))
    return [tuple(row.values()) for row in dataset]


def test_rounds_write_new_subjects_and_harder_prompts_without_near_duplicates(tmp_path):
    summary = synthetic.run(settings(tmp_path), FakeTeacher(), log=quiet)
    dataset = datasets.load_from_disk(str(tmp_path))
    assert dataset.column_names == ["prompt", "reply", "how", "round"] and len(dataset) == 24
    assert summary["prompts"] == 24 and summary["rounds"] >= 3
    assert summary["dropped"] >= 3      # 6 seeds of 3 subjects: 3 were duplicates
    assert set(dataset["how"]) == {"topic", "new subject", "harder"}
    assert all(reply == f"An answer to: {prompt}"
               for prompt, reply in zip(dataset["prompt"], dataset["reply"]))
    assert len(set(dataset["prompt"])) == 24
    assert all(not p.startswith(("**", "Request:", "Here")) for p in dataset["prompt"])
    assert read_chat_pairs(str(tmp_path))[0] == (dataset["prompt"][0], dataset["reply"][0])


def test_a_killed_run_resumes_to_the_dataset_of_an_uninterrupted_one(tmp_path):
    clean = FakeTeacher()
    synthetic.run(settings(tmp_path / "clean"), clean, log=quiet)
    with pytest.raises(KeyboardInterrupt):
        synthetic.run(settings(tmp_path / "killed"), FakeTeacher(fail_at_call=5),
                      log=quiet)
    assert not (tmp_path / "killed" / "state.json").exists()
    assert not list((tmp_path / "killed").rglob("*.tmp"))     # no half-written shard
    resumed = FakeTeacher()
    synthetic.run(settings(tmp_path / "killed"), resumed, log=quiet)
    assert resumed.calls == clean.calls - 4                   # the 4 shards written stay
    assert rows(tmp_path / "killed") == rows(tmp_path / "clean")
    with pytest.raises(ValueError, match="other settings .*count: 24"):
        synthetic.run(settings(tmp_path / "killed", count=30), FakeTeacher())


def test_a_kill_9_of_the_command_resumes_to_the_dataset_of_an_uninterrupted_run(tmp_path):
    """A real SIGKILL of `tinylm synthesize` with the tiny teacher while it writes shards (one
    request each): the rerun keeps what was written and ends with the clean run's dataset."""
    pytest.importorskip("torch", reason="PyTorch not installed")
    from tiny_teacher import make_tiny_gemma
    teacher = make_tiny_gemma(tmp_path / "teacher")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Tom met a cat at the park. Who did Tom meet?\n")
    command = [sys.executable, "-m", "tinylm", "synthesize", "--teacher", str(teacher),
               "--seeds", str(seeds), "--count", "12", "--similarity", "0.95",
               "--prompt-tokens", "12", "--max-new-tokens", "12", "--shard-size", "1"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    process = subprocess.Popen([*command, "--out", str(killed)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(killed.glob("work/*/shard-*.jsonl"))) < 3 and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = {path: path.read_bytes() for path in killed.glob("work/*/shard-*.jsonl")}
    assert len(written) >= 3 and not (killed / "dataset_info.json").exists()
    for out in (killed, clean):
        subprocess.run([*command, "--out", str(out)], check=True, capture_output=True,
                       timeout=300)
    assert all(path.read_bytes() == data for path, data in written.items())
    assert rows(killed) == rows(clean)


def test_two_processes_share_every_round_and_keep_the_same_prompts(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "POLL_SECONDS", 0.01)      # (the forked processes too)
    synthetic.run(settings(tmp_path / "one"), FakeTeacher(), log=quiet)
    fork = multiprocessing.get_context("fork")
    processes = [fork.Process(target=synthetic.run, args=(
        settings(tmp_path / "two", shard=f"{k}/2"), FakeTeacher(), quiet)) for k in (1, 2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
    assert [process.exitcode for process in processes] == [0, 0]
    assert rows(tmp_path / "two") == rows(tmp_path / "one")


def test_cleaning_and_near_duplicates():
    assert clean_prompt("Sure! Here is a new request:\n\n**Design a cup.**") == "Design a cup."
    assert clean_prompt('New request: "Make a box with a lid."') == "Make a box with a lid."
    assert clean_prompt("  \n") == ""
    seen = NearDuplicates(0.8)
    assert seen.add("Model a cup with a handle in OpenSCAD.")
    assert not seen.add("model a CUP, with a handle, in OpenSCAD")    # the same words
    assert seen.add("Model a vase with a handle in OpenSCAD.")        # another subject
    assert not seen.add("") and not seen.add("?!")


def test_seeds_file_and_errors(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Model a cup in OpenSCAD.\n\nModel a cup in OpenSCAD.\n")
    summary = synthetic.run(settings(tmp_path / "out", topic=None, seeds=str(seeds), count=6),
                            FakeTeacher(), log=quiet)
    assert summary["prompts"] == 6 and summary["dropped"] >= 1
    assert datasets.load_from_disk(str(tmp_path / "out"))["how"][0] == "seed"
    with pytest.raises(ValueError, match="--topic .* or\n?.*--seeds"):
        SynthesisArgs(out=tmp_path)
    seeds.write_text("Model a cup in OpenSCAD.\n")

    class Repeating(FakeTeacher):     # writes only what was kept already
        @staticmethod
        def write(prompt, seed):
            return "Model a cup in OpenSCAD." if "\n" in prompt else "An answer."
    with pytest.raises(ValueError, match="round 1 kept no prompt"):
        synthetic.run(settings(tmp_path / "stuck", topic=None, seeds=str(seeds), count=6),
                      Repeating(), log=quiet)


def test_the_tiny_teacher_writes_a_dataset_that_distill_reads(tmp_path):
    """The real code path: the teacher's sampling in shards, the dataset, then a chat student
    distilled from its prompts and replies."""
    pytest.importorskip("torch", reason="PyTorch not installed")
    from tiny_teacher import make_tiny_gemma
    teacher = make_tiny_gemma(tmp_path / "teacher")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Tom met a cat at the park. Who did Tom meet?\n"
                     "Mia went to the lake with her friend Ben. Who went to the lake?\n")
    result = CliRunner().invoke(main, [
        "synthesize", "--teacher", str(teacher), "--seeds", str(seeds), "--count", 4,
        "--similarity", 0.95, "--prompt-tokens", 12, "--max-new-tokens", 12,
        "--shard-size", 2, "--out", str(tmp_path / "data"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["prompts"] == 4
    assert len(read_chat_pairs(str(tmp_path / "data"))) == 4
    result = CliRunner().invoke(main, [
        "distill", "--teacher", str(teacher), "--dataset", str(tmp_path / "data"),
        "--vocab-size", 270, "--dim", 16, "--n-layers", 1, "--n-heads", 2, "--seq-len", 32,
        "--batch-size", 2, "--steps", 2, "--top-k", 4, "--threads", 1,
        "--out", str(tmp_path / "student"), "--json"])
    assert result.exit_code == 0, result.output
    from tinylm.training.checkpoint import load_checkpoint
    checkpoint = load_checkpoint(tmp_path / "student")
    assert checkpoint.chat == checkpoint.tokenizer.chat_turn()
