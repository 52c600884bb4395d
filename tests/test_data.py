"""Documents, token files and the batch sampler."""
import json

import numpy as np
import pytest

from tinylm.text.data import (
    BatchSampler,
    encode_documents,
    load_tokens,
    read_documents,
    save_tokens,
    split_documents,
    split_tail,
    token_dtype,
)
from tinylm.text.tokenizer import Tokenizer

STORIES = "One day a cat sat.\n<|endoftext|>\nThe dog ran.\n\nIt was fun.\n  <|endoftext|>  \n\n"


def test_split_endoftext_lines():
    assert split_documents(STORIES, "endoftext") == ["One day a cat sat.",
                                                      "The dog ran.\n\nIt was fun."]
    # only a line of its own separates; the marker inside text is just text
    assert split_documents("a <|endoftext|> b", "endoftext") == ["a <|endoftext|> b"]
    assert split_documents("a\r\n<|endoftext|>\r\nb", "endoftext") == ["a", "b"]


def test_split_blank_lines_and_none():
    text = "First para\nstill first.\n\n\nSecond.\n  \t\nThird.\n"
    assert split_documents(text, "blank") == ["First para\nstill first.", "Second.", "Third."]
    assert split_documents(text, "none") == [text.strip()]
    assert split_documents("  \n\n ", "none") == []


def test_split_auto_prefers_endoftext():
    assert split_documents(STORIES) == split_documents(STORIES, "endoftext")
    assert split_documents("a\n\nb") == ["a", "b"]
    with pytest.raises(ValueError, match="unknown split"):
        split_documents("a", "paragraph")


def test_read_documents(tmp_path):
    (tmp_path / "a.txt").write_text("x\n\ny", encoding="utf-8")
    (tmp_path / "b.txt").write_text("z", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    assert read_documents([tmp_path / "a.txt", tmp_path / "b.txt"]) == ["x", "y", "z"]
    with pytest.raises(ValueError, match="no text"):
        read_documents([tmp_path / "empty.txt"])


def test_encode_documents_puts_bos_before_each():
    tok = Tokenizer.train(["hello world"], 260)
    tokens = encode_documents(["hi", "yo"], tok)
    assert tokens.dtype == np.uint16
    assert tokens.tolist() == [tok.bos_id, *tok.encode("hi"), tok.bos_id, *tok.encode("yo")]
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


def test_token_file_round_trip(tmp_path):
    for dtype in (np.uint16, np.uint32):
        tokens = np.array([0, 1, 65535, 7], dtype=dtype)
        path = save_tokens(tokens, tmp_path / "train")
        assert path.name == f"train.{np.dtype(dtype).name}"
        loaded = load_tokens(path)
        assert loaded.dtype == dtype
        np.testing.assert_array_equal(loaded, tokens)
        np.testing.assert_array_equal(np.fromfile(path, dtype), tokens)  # no header


def test_token_file_errors(tmp_path):
    (tmp_path / "empty.uint16").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_tokens(tmp_path / "empty.uint16")
    with pytest.raises(ValueError, match="uint16 or .uint32"):
        load_tokens(tmp_path / "tokens.bin")
    with pytest.raises(FileNotFoundError):
        load_tokens(tmp_path / "missing.uint16")


def test_split_tail_cuts_at_a_document_start():
    bos = 9
    tokens = np.array([9, 1, 2, 3, 9, 4, 5, 9, 6, 7, 8, 1], dtype=np.uint16)
    train, val = split_tail(tokens, 0.5, bos)  # the cut point 6 moves on to the <bos> at 7
    assert train.tolist() == tokens[:7].tolist() and val.tolist() == tokens[7:].tolist()
    train, val = split_tail(tokens, 0.25, bos)  # no <bos> after the cut point: cut there
    assert len(train) == 9 and len(val) == 3
    with pytest.raises(ValueError):
        split_tail(tokens, 1.0, bos)


def test_sampler_windows_and_determinism():
    tokens = np.arange(100, dtype=np.uint16)  # each window is a run of consecutive numbers
    sampler = BatchSampler(tokens, batch_size=4, seq_len=8, seed=3)
    inputs, targets = sampler.next_batch()
    assert inputs.shape == targets.shape == (4, 8) and inputs.dtype == np.int64
    np.testing.assert_array_equal(targets, inputs + 1)
    np.testing.assert_array_equal(np.diff(inputs, axis=1), 1)
    assert targets.max() <= 99
    again = BatchSampler(tokens, batch_size=4, seq_len=8, seed=3).next_batch()
    np.testing.assert_array_equal(again[0], inputs)
    other = BatchSampler(tokens, batch_size=4, seq_len=8, seed=4).next_batch()
    assert not np.array_equal(other[0], inputs)


def test_sampler_state_resumes_the_sequence():
    tokens = np.arange(1000, dtype=np.uint16)
    a = BatchSampler(tokens, 2, 5, seed=0)
    expected = [a.next_batch()[0] for _ in range(6)]
    b = BatchSampler(tokens, 2, 5, seed=0)
    for _ in range(3):
        b.next_batch()
    state = json.loads(json.dumps(b.state()))  # it survives JSON, as in a checkpoint
    c = BatchSampler(tokens, 2, 5, seed=123)
    c.set_state(state)
    for want in expected[3:]:
        np.testing.assert_array_equal(c.next_batch()[0], want)


def test_sampler_can_reach_the_last_token():
    sampler = BatchSampler(np.arange(5, dtype=np.uint16), batch_size=64, seq_len=4, seed=0)
    inputs, targets = sampler.next_batch()  # only one window fits: all of it
    np.testing.assert_array_equal(inputs, np.tile([0, 1, 2, 3], (64, 1)))
    np.testing.assert_array_equal(targets, np.tile([1, 2, 3, 4], (64, 1)))


def test_sampler_rejects_too_little_data():
    with pytest.raises(ValueError, match="seq_len \\+ 1 = 9"):
        BatchSampler(np.arange(8, dtype=np.uint16), batch_size=1, seq_len=8, seed=0)
