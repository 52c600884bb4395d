"""evaluate(): nats per token, bits per byte, windows, padding, document rules."""
import math

import numpy as np
import pytest

from tinylm.core.config import ModelConfig
from tinylm.core.model import Transformer
from tinylm.text.tokenizer import Tokenizer
from tinylm.training.evaluate import evaluate

TEXT = ("Once upon a time there was a cat. The cat liked the sun.\n\n"
        "A dog ran in the park. It was a happy dog, and the dog ran fast.\n\n"
        "Lily saw the cat and the dog. “Hello!” she said. 日本.\n")


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train([TEXT], 300)


def make_model(tokenizer, seed=0, max_seq_len=16):
    config = ModelConfig(vocab_size=tokenizer.vocab_size, dim=16, n_layers=2, n_heads=2,
                         n_kv_heads=1, head_dim=8, hidden_dim=32, max_seq_len=max_seq_len)
    return Transformer.initialize(config, seed=seed)


def test_bits_per_byte_of_a_uniform_model(tokenizer):
    """All-zero weights give all-zero logits: every token costs exactly ln(vocab_size)."""
    model = make_model(tokenizer)
    for p in model.params.values():
        p[...] = 0
    docs = ["The cat.", "日本"]
    result = evaluate(model, tokenizer, docs)
    n_tokens = sum(len(tokenizer.encode(doc)) for doc in docs)  # every token after <bos>
    n_bytes = len("The cat.") + len("日本".encode())  # 8 + 6
    assert result["tokens"] == n_tokens and result["bytes"] == n_bytes == 14
    assert result["loss"] == pytest.approx(math.log(tokenizer.vocab_size))
    assert result["bpb"] == pytest.approx(n_tokens * math.log2(tokenizer.vocab_size) / 14)


def test_matches_the_training_loss(tokenizer):
    model = make_model(tokenizer, max_seq_len=64)
    ids = np.array([tokenizer.encode("A dog ran in the park.", bos=True)])
    loss, _ = model.forward(ids[:, :-1], ids[:, 1:])
    assert evaluate(model, tokenizer, ["A dog ran in the park."])["loss"] == pytest.approx(loss)


def test_long_documents_go_in_fresh_windows(tokenizer):
    model = make_model(tokenizer, max_seq_len=16)
    doc = TEXT.replace("\n\n", " ").strip()
    ids = tokenizer.encode(doc, bos=True)
    assert len(ids) > 3 * 16
    total = 0.0
    for start in range(0, len(ids) - 1, 16):  # windows of 16 predictions, each from scratch
        window = np.array([ids[start:start + 17]])
        loss, _ = model.forward(window[:, :-1], window[:, 1:])
        total += loss * (window.shape[1] - 1)
    result = evaluate(model, tokenizer, [doc])
    assert result["tokens"] == len(ids) - 1
    assert result["loss"] == pytest.approx(total / (len(ids) - 1), rel=1e-5)


def test_padding_does_not_change_the_result(tokenizer):
    model = make_model(tokenizer, seed=3)
    one_by_one = evaluate(model, tokenizer, TEXT, batch_size=1)  # no padding at all
    padded = evaluate(model, tokenizer, TEXT, batch_size=64)     # all windows in one batch
    assert one_by_one["tokens"] == padded["tokens"] and one_by_one["bytes"] == padded["bytes"]
    assert padded["loss"] == pytest.approx(one_by_one["loss"], rel=1e-5)


def test_split_rules(tokenizer):
    model = make_model(tokenizer, max_seq_len=128)
    text = "The cat sat.\n<|endoftext|>\nThe dog ran.\n\nThe end.\n"
    documents = {
        "endoftext": ["The cat sat.", "The dog ran.\n\nThe end."],
        "blank": ["The cat sat.\n<|endoftext|>\nThe dog ran.", "The end."],
        "none": [text.strip()],
        "auto": ["The cat sat.", "The dog ran.\n\nThe end."],  # the marker line is there
    }
    for split, docs in documents.items():
        assert evaluate(model, tokenizer, text, split=split) == evaluate(model, tokenizer, docs)
    assert evaluate(model, tokenizer, text, split="blank")["bytes"] == len(text) - len("\n\n\n")
    with pytest.raises(ValueError, match="unknown split"):
        evaluate(model, tokenizer, text, split="lines")
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(model, tokenizer, "\n\n")


def test_long_texts_are_scored_a_block_of_windows_at_a_time(tokenizer, monkeypatch):
    """Documents come one at a time and at most `windows_at_once` windows (plus one document's)
    are held, with the same total as all at once."""
    from tinylm.training import evaluate as module
    model = make_model(tokenizer, max_seq_len=8)
    documents = [np.array(tokenizer.encode(doc, bos=True)) for doc in TEXT.split("\n\n")] * 30
    whole = module.document_nats(model, documents, windows_at_once=10 ** 9)
    held = []
    real = module.total_nats

    def counting(model, windows, batch_size):
        held.append(len(windows))
        return real(model, windows, batch_size)
    monkeypatch.setattr(module, "total_nats", counting)
    longest = max(-(-(len(d) - 1) // 8) for d in documents)
    blocked = module.document_nats(model, iter(documents), windows_at_once=16)
    assert len(held) > 3 and max(held) < 16 + longest
    assert blocked[1] == whole[1] and blocked[0] == pytest.approx(whole[0], rel=1e-12)
