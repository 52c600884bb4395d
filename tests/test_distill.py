"""`tinylm distill` end to end with a tiny Gemma-3 teacher: every stage, resuming after a kill
at any stage, splitting the teacher's work, and the errors a user can run into."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_teacher import gemma_folder, offline  # noqa: F401  (fixtures)

from tinylm.cli import main
from tinylm.distillation.targets import done_shards, read_pieces
from tinylm.text.corpus import make_stories
from tinylm.training.checkpoint import load_checkpoint

pytest.importorskip("torch", reason="PyTorch not installed: distillation tests skipped")
pytest.importorskip("transformers", reason="transformers not installed: distillation tests skipped")

TINY = ["--shard-size", 4, "--max-new-tokens", 10, "--vocab-size", 300,
        "--dim", 16, "--n-layers", 1, "--n-heads", 2, "--seq-len", 32, "--batch-size", 4,
        "--eval-every", 2, "--threads", 1, "--kd-weight", 0.7, "--temperature", 2]


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "stories.txt"
    path.write_text("\n\n".join(make_stories(12, seed=2)) + "\n", encoding="utf-8")
    return path


def distill(*args):
    result = CliRunner().invoke(main, ["distill", *map(str, args)])
    return result


def summary_of(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_stage_then_resume_and_train_longer(gemma_folder, stories, tmp_path):
    command = ["--teacher", gemma_folder, "--data", stories, "--synthetic", 2, "--free", 1,
               *TINY, "--out", tmp_path, "--json"]
    first = summary_of(distill(*command, "--top-k", 4, "--steps", 4))
    assert first["step"] == 4 and first["teacher_tokens"] > 0 and first["val_bpb"] > 0
    for name in ("targets/manifest.json", "tokenizer.json", "prepared.json", "train.uint16",
                 "train.soft_ids.npy", "checkpoint.npz"):
        assert (tmp_path / name).exists(), name
    soft = np.load(tmp_path / "train.soft_logprobs.npy")
    assert len(soft) == len(np.fromfile(tmp_path / "train.uint16", np.uint16))
    checkpoint = load_checkpoint(tmp_path)       # the chat prompts make a chat student
    assert checkpoint.chat == checkpoint.tokenizer.chat_turn()

    again = distill(*command, "--top-k", 4, "--steps", 4)     # all done: nothing to redo
    assert "loading teacher" not in again.stderr and summary_of(again)["step"] == 4
    longer = summary_of(distill(*command, "--top-k", 4, "--steps", 6))
    assert longer["step"] == 6 and longer["teacher_tokens"] == first["teacher_tokens"]

    changed = distill(*command, "--top-k", 6, "--steps", 6)
    assert changed.exit_code == 1 and "other settings (k: 4)" in changed.stderr


def test_a_kill_in_any_later_stage_does_not_redo_the_teacher(gemma_folder, stories, tmp_path,
                                                             monkeypatch):
    command = ["--teacher", gemma_folder, "--data", stories, *TINY, "--steps", 3,
               "--out", tmp_path, "--json"]
    import tinylm.distillation.stages

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:                # killed while projecting
        patch.setattr(tinylm.distillation.stages.Projector, "project", killed)
        assert distill(*command).exit_code != 0
    assert (tmp_path / "tokenizer.json").exists() and not (tmp_path / "prepared.json").exists()
    import teacher.load
    monkeypatch.setattr(teacher.load, "load_teacher", killed)   # must not be needed again
    assert summary_of(distill(*command))["step"] == 3


def test_student_with_the_teachers_tokenizer(gemma_folder, stories, tmp_path):
    summary = summary_of(distill("--teacher", gemma_folder, "--data", stories, "--free", 1,
                                 "--student-tokenizer", "teacher", *TINY, "--vocab-size", 400,
                                 "--steps", 2, "--out", tmp_path, "--json"))
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.config.vocab_size == len(checkpoint.tokenizer) and summary["step"] == 2
    assert checkpoint.chat is None                  # texts alone: a text model
    ids = np.fromfile(tmp_path / "train.uint16", np.uint16)
    pieces = list(read_pieces(tmp_path / "targets"))
    assert ids[1:1 + len(pieces[0].tokens)].tolist() == pieces[0].tokens.tolist()


def test_a_student_with_a_character_vocabulary(gemma_folder, stories, tmp_path):
    """Below 260 tokens the student's vocabulary is one of characters; the teacher's
    predictions are projected onto it like onto BPE."""
    summary = summary_of(distill("--teacher", gemma_folder, "--data", stories, *TINY,
                                 "--vocab-size", 32, "--steps", 2, "--out", tmp_path, "--json"))
    checkpoint = load_checkpoint(tmp_path)
    assert len(checkpoint.tokenizer) == 32 and not checkpoint.tokenizer.merges
    assert summary["step"] == 2 and 0 < summary["projected_mass"] <= 1


def test_user_mistakes_are_one_line_errors(gemma_folder, stories, tmp_path, monkeypatch):
    result = distill("--teacher", gemma_folder, "--data", stories, "--synthetic", 1,
                     "--student-tokenizer", "teacher", "--out", tmp_path)
    assert result.exit_code == 1 and "not chat prompts" in result.stderr
    result = distill("--teacher", tmp_path / "no-such-teacher", "--data", stories,
                     "--out", tmp_path / "a")
    assert result.exit_code == 1 and "no teacher folder" in result.stderr
    monkeypatch.setitem(sys.modules, "teacher.load", None)    # as if torch were not installed
    result = distill("--data", stories, "--out", tmp_path / "b")
    assert result.exit_code == 1 and 'pip install -e ".[teacher]"' in result.stderr


def test_sigkill_during_teacher_targets_then_resume(gemma_folder, tmp_path):
    """A real kill -9 of the command while it writes shards; the rerun finishes the job, and
    the targets equal those of a run that was never killed."""
    data = tmp_path / "many.txt"
    data.write_text("\n\n".join(make_stories(60, seed=4)) + "\n", encoding="utf-8")
    command = ["--teacher", gemma_folder, "--data", data, *TINY, "--shard-size", 1, "--steps", 2,
               "--top-k", 4]
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    process = subprocess.Popen([sys.executable, "-m", "tinylm", "distill", *map(str, command),
                                "--out", str(killed_dir)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(done_shards(killed_dir / "targets")) < 3 and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 3 <= len(done_shards(killed_dir / "targets")) < 60
    for out in (killed_dir, clean_dir):
        summary_of(distill(*command, "--out", out, "--json"))

    def pieces(out):
        return [(p.record, p.text, p.tokens.tolist(), p.topk_ids.tolist(),
                 p.topk_logprobs.tolist()) for p in read_pieces(out / "targets")]
    resumed = pieces(killed_dir)
    assert [p[0] for p in resumed] == list(range(60))       # every record once, in order
    assert resumed == pieces(clean_dir)


def test_two_processes_split_the_teacher_work(gemma_folder, stories, tmp_path):
    command = ["--teacher", gemma_folder, "--data", stories, *TINY, "--top-k", 4,
               "--undecided", "rest", "--steps", 2, "--out", tmp_path, "--json"]
    first = summary_of(distill(*command, "--shard", "1/2"))
    assert first == {"waiting": 1}                  # 3 shards: this one did shards 0 and 2
    assert done_shards(tmp_path / "targets") == {0, 2}
    second = summary_of(distill(*command, "--shard", "2/2"))   # the last one goes on
    assert second["step"] == 2 and done_shards(tmp_path / "targets") == {0, 1, 2}


def test_a_stage_that_failed_on_a_setting_takes_a_new_one(gemma_folder, stories, tmp_path):
    """Too large a vocabulary for the text fails at the tokenizer stage; the fix is accepted,
    and the teacher's finished targets are not redone."""
    command = ["--teacher", gemma_folder, "--data", stories, *TINY, "--top-k", 4, "--steps", 2,
               "--out", tmp_path]
    failed = distill(*command, "--vocab-size", 60000)
    assert failed.exit_code == 1 and "too large" in failed.stderr
    fixed = distill(*command, "--vocab-size", 300, "--json")
    assert "loading teacher" not in fixed.stderr and summary_of(fixed)["step"] == 2
    changed = distill(*command, "--vocab-size", 320)        # the tokenizer exists now
    assert changed.exit_code == 1 and "other settings (vocab_size: 300)" in changed.stderr


def test_a_teacher_that_cannot_load_leaves_no_lock(gemma_folder, stories, tmp_path):
    result = distill("--teacher", "no-such-org/no-such-model", "--data", stories,
                     "--out", tmp_path)     # offline: the hub cannot be reached
    assert result.exit_code == 1
    result = distill("--teacher", gemma_folder, "--data", stories, *TINY, "--steps", 2,
                     "--out", tmp_path, "--json")
    assert summary_of(result)["step"] == 2


def test_damaged_shards_are_named_and_made_again(gemma_folder, tmp_path):
    data = tmp_path / "stories.txt"
    data.write_text("\n\n".join(make_stories(8, seed=3)) + "\n", encoding="utf-8")
    command = ["--teacher", gemma_folder, "--data", data, *TINY, "--shard-size", 1,
               "--top-k", 4, "--steps", 2, "--json"]
    out = tmp_path / "run"
    summary_of(distill(*command, "--out", out))
    targets = out / "targets"

    def pieces():
        return [(p.record, p.tokens.tolist(), p.topk_ids.tolist()) for p in read_pieces(targets)]
    clean = pieces()
    shard = [targets / f"shard-{i:05d}.npz" for i in range(5)]
    shard[4].write_bytes(shard[3].read_bytes())                         # copied over another
    with pytest.raises(ValueError, match="shard-00004.npz: it holds shard 3"):
        pieces()
    data0 = shard[0].read_bytes()
    shard[0].write_bytes(data0[:len(data0) // 2])                       # truncated
    flipped = bytearray(shard[1].read_bytes())
    flipped[len(flipped) // 2] ^= 0x10
    shard[1].write_bytes(bytes(flipped))                                # a flipped bit
    shard[2].write_bytes(b"")                                           # empty
    again = distill(*command, "--out", out)
    assert again.exit_code == 0, again.output
    for i, reason in [(0, "cannot be read"), (1, "cannot be read"), (2, "cannot be read"),
                      (4, "holds shard 3")]:
        assert f"shard-{i:05d}.npz: it {reason}" in again.stderr
    assert "shard-00003.npz" not in again.stderr and pieces() == clean

    manifest = targets / "manifest.json"                              # edited by hand
    plan = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(dict(plan, n_shards=plan["n_shards"] - 2)))
    again = distill(*command, "--out", out)
    assert again.exit_code == 0 and "made for another manifest.json" in again.stderr
    assert json.loads(manifest.read_text())["n_shards"] == plan["n_shards"]
    assert pieces() == clean


def test_a_copied_folder_resumes(gemma_folder, stories, tmp_path):
    import shutil
    command = ["--teacher", gemma_folder, "--data", stories, *TINY, "--top-k", 4, "--json"]
    summary_of(distill(*command, "--steps", 2, "--out", tmp_path / "first"))
    shutil.copytree(tmp_path / "first", tmp_path / "copy")
    resumed = distill(*command, "--steps", 4, "--out", tmp_path / "copy")
    assert "loading teacher" not in resumed.stderr and summary_of(resumed)["step"] == 4
