"""`tinylm search --teacher`: candidates distilled on a `tinylm distill` folder's targets, in
the vocabularies the search tries (a tiny Gemma-3 teacher; skipped without PyTorch)."""
import numpy as np
import pytest
from click.testing import CliRunner
from tiny_teacher import gemma_folder, offline  # noqa: F401  (fixtures)

from tinylm.cli import main
from tinylm.search import study
from tinylm.search.corpus import corpus
from tinylm.search.settings import Settings
from tinylm.text.corpus import make_stories

pytest.importorskip("optuna", reason="Optuna is not installed: search tests skipped")


def test_a_search_distills_each_vocabulary_from_the_teachers_targets(gemma_folder, tmp_path):
    stories = tmp_path / "stories.txt"
    stories.write_text("\n\n".join(make_stories(40, seed=3)) + "\n", encoding="utf-8")
    teacher = tmp_path / "teacher"
    result = CliRunner().invoke(main, [
        "distill", "--teacher", str(gemma_folder), "--data", str(stories), "--vocab-size", 300,
        "--dim", 8, "--n-layers", 1, "--n-heads", 2, "--seq-len", 32, "--batch-size", 2,
        "--steps", 1, "--out", str(teacher)])
    assert result.exit_code == 0, result.output
    settings = Settings(target="rp2040", data=[], teacher=str(teacher), out=tmp_path / "search",
                        steps=4, batch_size=2, seq_len=32, eval_every=2, val_bytes=1000,
                        max_params=20_000, trials=2, val_fraction=0.2)
    chars = corpus(settings, 32, "char")
    assert len(chars.tokenizer) == 32 and (chars.directory / "train.soft_ids.npy").exists()
    soft = np.load(chars.directory / "train.soft_ids.npy")
    assert soft.max() < 32 and len(soft) == len(np.fromfile(chars.directory / "train.uint16",
                                                            np.uint16))
    study.work(settings)
    trained = [t for t in study.load(settings).trials if t.state.name == "COMPLETE"]
    assert trained and all(t.values[0] > 0 for t in trained)
