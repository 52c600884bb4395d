"""A tiny Gemma-3 teacher for tests: built here (a `tokenizers` BPE and a Gemma3TextConfig),
saved with save_pretrained, and loaded back from the folder with HF_HUB_OFFLINE=1, the way
any teacher is loaded. Tests that use it skip when PyTorch or transformers are missing."""
from pathlib import Path

import pytest

from tinylm.text.corpus import make_stories

SHARED = Path(__file__).resolve().parents[2] / "shared"
STORIES260K_HF = SHARED / "models" / "stories260K-hf"
needs_stories260k = pytest.mark.skipif(
    not STORIES260K_HF.exists(), reason=f"{STORIES260K_HF} not found (a real teacher, from "
                                        f"../shared)")


def make_tiny_gemma(folder: Path, steps: int = 3) -> Path:
    """A few training steps only: the tests need its files and code paths, not its wisdom."""
    pytest.importorskip("torch", reason="PyTorch not installed: teacher tests skipped")
    pytest.importorskip("transformers", reason="transformers not installed: teacher tests skipped")
    from teacher.tiny_gemma import train_tiny_gemma
    return train_tiny_gemma(make_stories(300, seed=5), folder, vocab_size=400, steps=steps,
                            batch_size=4, seq_len=64, dim=32, n_layers=2, n_heads=2,
                            head_dim=16, hidden_dim=64, log=lambda message: None)


# Fixtures for the test modules that use the teacher (they import them by name).

@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No hub access, as on the machines the tests run on: everything loads from folders."""
    import huggingface_hub.constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def gemma_folder(tmp_path_factory):
    return make_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma"))
