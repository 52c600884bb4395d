"""Checkpoints: exact round trip, optional training state, atomic writes, clear errors."""
import numpy as np
import pytest

from tinylm.core.config import ModelConfig
from tinylm.core.model import Transformer
from tinylm.core.optim import AdamW
from tinylm.text.tokenizer import Tokenizer
from tinylm.training.checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint

CONFIG = ModelConfig(vocab_size=264, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8,
                     hidden_dim=32, max_seq_len=16)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(["the cat sat on the mat, the end"], CONFIG.vocab_size)


def make_checkpoint(tokenizer, step=7):
    model = Transformer.initialize(CONFIG, seed=step)
    optimizer = AdamW(model.params)
    grads = {name: np.ones_like(p) for name, p in model.params.items()}
    optimizer.step(grads, lr=1e-3)
    sampler = np.random.default_rng(5).bit_generator.state
    return Checkpoint(CONFIG, model.params, tokenizer, step=step,
                      optimizer=optimizer.state_dict(), sampler=sampler,
                      train_args={"lr": 1e-3, "data": ["a.txt"]})


def test_round_trip_is_exact(tmp_path, tokenizer):
    saved = make_checkpoint(tokenizer)
    path = save_checkpoint(saved, tmp_path)
    assert path == tmp_path / "checkpoint.npz"
    for where in (tmp_path, path):  # the directory or the file
        loaded = load_checkpoint(where)
        assert loaded.config == CONFIG and loaded.step == 7
        assert loaded.sampler == saved.sampler and loaded.train_args == saved.train_args
        assert loaded.params.keys() == saved.params.keys()
        for name, p in saved.params.items():
            assert loaded.params[name].dtype == p.dtype
            np.testing.assert_array_equal(loaded.params[name], p)
        assert loaded.optimizer["t"] == 1
        for key in ("m", "v"):
            for name, a in saved.optimizer[key].items():
                np.testing.assert_array_equal(loaded.optimizer[key][name], a)
        assert loaded.tokenizer.to_json() == tokenizer.to_json()


def test_model_only_checkpoint(tmp_path, tokenizer):
    model = Transformer.initialize(CONFIG, seed=1)
    save_checkpoint(Checkpoint(CONFIG, model.params, tokenizer), tmp_path / "imported.npz")
    loaded = load_checkpoint(tmp_path / "imported.npz")
    assert loaded.optimizer is None and loaded.sampler is None and loaded.train_args is None
    same_model, same_tokenizer = load_model(tmp_path / "imported.npz")
    tokens = np.array([same_tokenizer.encode("the cat", bos=True)])
    np.testing.assert_array_equal(same_model.logits(tokens), model.logits(tokens))


def test_failed_write_keeps_the_old_checkpoint(tmp_path, tokenizer, monkeypatch):
    save_checkpoint(make_checkpoint(tokenizer, step=1), tmp_path)
    written = []

    def write_some_then_fail(*args, **kwargs):  # the process dies half-way through the archive
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(args)
        return real_write_array(*args, **kwargs)

    real_write_array = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", write_some_then_fail)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(make_checkpoint(tokenizer, step=2), tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path).step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]  # no temporary file left


def test_missing_and_corrupt_files(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing.npz")
    path = save_checkpoint(make_checkpoint(tokenizer), tmp_path / "good.npz")
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    (tmp_path / "noise.npz").write_bytes(b"not a zip file at all")
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF  # damage inside an array: the zip checksum catches it
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    for name in ("cut.npz", "noise.npz", "flipped.npz"):
        with pytest.raises(ValueError, match="not a valid tinylm checkpoint"):
            load_checkpoint(tmp_path / name)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a valid tinylm checkpoint"):
        load_checkpoint(tmp_path / "other.npz")


def test_every_bit_flip_in_the_array_headers_is_a_clear_error(tmp_path, tokenizer):
    """A flipped bit in a .npy header (a Python literal inside the zip) is one ValueError,
    whatever the literal turns into; the zip's CRC is left right, as a bad disk might."""
    import zipfile
    path = save_checkpoint(make_checkpoint(tokenizer), tmp_path / "good.npz")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    name = "params/tok_emb.npy"
    header_end = members[name].index(b"\n") + 1
    for bit in range(10 * 8, header_end * 8):        # after the magic and the header length
        damaged = bytearray(members[name])
        damaged[bit // 8] ^= 1 << bit % 8
        target = tmp_path / "damaged.npz"
        with zipfile.ZipFile(target, "w") as archive:
            for member, data in members.items():
                archive.writestr(member, bytes(damaged) if member == name else data)
        try:
            load_checkpoint(target)
        except ValueError as e:
            assert "not a valid tinylm checkpoint" in str(e)


def test_a_killed_writers_temporary_file_is_removed_by_the_next_save(tmp_path, tokenizer):
    import subprocess
    import sys
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stray = tmp_path / f".checkpoint.npz.{gone}.tmp"      # left by a kill -9
    stray.write_bytes(b"half a checkpoint")
    save_checkpoint(make_checkpoint(tokenizer), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]
