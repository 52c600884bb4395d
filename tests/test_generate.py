"""Sampling rules, and generation with the key/value cache against recomputing from scratch."""
import numpy as np
import pytest

from tinylm.core.config import ModelConfig
from tinylm.core.model import Transformer
from tinylm.text.tokenizer import Tokenizer
from tinylm.training.generate import generate, sample, stream_text, token_probs

TEXT = "Once upon a time, a cat sat on a mat. The cat was happy. Café, naïve, 日本. " * 4


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(TEXT, 280)


@pytest.fixture(scope="module")
def model(tokenizer):
    config = ModelConfig(vocab_size=len(tokenizer), dim=16, n_layers=2, n_heads=2, n_kv_heads=1,
                         head_dim=8, hidden_dim=24, max_seq_len=24)
    params = Transformer.initialize(config, seed=3).params
    params["tok_emb"] *= 50  # spread the logits out, so that greedy and sampled runs differ
    return Transformer(config, params)


class NeverStops:
    """The model with <bos>/<eos> made impossible, to test the other stopping rules."""

    def __init__(self, model, tokenizer):
        self.config, self.dtype, self.model = model.config, model.dtype, model
        self.stop = [tokenizer.bos_id, tokenizer.eos_id]

    def forward_cached(self, tokens, cache):
        logits = self.model.forward_cached(tokens, cache)
        logits[:, self.stop] = -np.inf
        return logits


def random_logits(seed, n=50):
    return np.random.default_rng(seed).standard_normal(n) * 3


def test_greedy_is_argmax():
    rng = np.random.default_rng(0)
    for seed in range(20):
        logits = random_logits(seed)
        assert sample(logits, rng, temperature=0) == np.argmax(logits)


def test_temperature_scales_logits():
    logits = random_logits(1)
    for t in (0.5, 1.0, 2.0):
        expected = np.exp(logits / t) / np.exp(logits / t).sum()
        np.testing.assert_allclose(token_probs(logits, temperature=t), expected)


def test_top_k_keeps_the_k_most_likely():
    logits = random_logits(2)
    probs = token_probs(logits, top_k=5)
    assert set(np.flatnonzero(probs)) == set(np.argsort(logits)[-5:])
    assert probs.sum() == pytest.approx(1)
    rng = np.random.default_rng(0)
    drawn = {sample(logits, rng, top_k=5) for _ in range(300)}
    assert drawn == set(np.argsort(logits)[-5:])


@pytest.mark.parametrize("top_p, kept", [(0.4, {0}), (0.75, {0, 1}), (0.85, {0, 1, 2}),
                                         (1.0, {0, 1, 2, 3})])
def test_top_p_keeps_the_smallest_set_covering_p(top_p, kept):
    logits = np.log([0.5, 0.3, 0.15, 0.05])
    probs = token_probs(logits, top_p=top_p)
    assert set(np.flatnonzero(probs)) == kept
    assert probs.sum() == pytest.approx(1)


def test_seed_makes_sampling_repeatable(model, tokenizer):
    def run(seed):
        return list(generate(NeverStops(model, tokenizer), tokenizer, "The cat", max_tokens=12,
                             temperature=1.0, seed=seed))
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_cached_generation_equals_recomputing_from_scratch(model, tokenizer):
    prompt = tokenizer.encode("The cat", bos=True)
    kwargs = dict(temperature=0.9, top_k=40, top_p=0.95)
    cached = list(generate(NeverStops(model, tokenizer), tokenizer, prompt, max_tokens=10, seed=5,
                           **kwargs))
    # The same draws, with the whole sequence run through the model again for every token.
    rng, ids = np.random.default_rng(5), list(prompt)
    stop = [tokenizer.bos_id, tokenizer.eos_id]
    for _ in range(10):
        logits = model.logits(np.array([ids]))[0, -1]
        logits[stop] = -np.inf
        ids.append(sample(logits, rng, **kwargs))
    assert cached == ids[len(prompt):]


def test_stops_when_the_context_is_full(model, tokenizer):
    prompt = tokenizer.encode("The cat", bos=True)
    out = list(generate(NeverStops(model, tokenizer), tokenizer, prompt, max_tokens=1000,
                        temperature=0))
    assert len(prompt) + len(out) == model.config.max_seq_len


def test_stops_at_eos(model, tokenizer):
    class EosAfterThree(NeverStops):
        def forward_cached(self, tokens, cache):
            logits = super().forward_cached(tokens, cache)
            if cache.length >= n_prompt + 3:
                logits[:, tokenizer.eos_id] = 1e9
            return logits

    prompt = tokenizer.encode("The cat", bos=True)
    n_prompt = len(prompt)
    out = list(generate(EosAfterThree(model, tokenizer), tokenizer, prompt, max_tokens=20, seed=0))
    assert len(out) == 3 and tokenizer.eos_id not in out


def test_bad_arguments_are_refused(model, tokenizer):
    with pytest.raises(ValueError, match="top_p"):
        generate(model, tokenizer, "The cat", top_p=0)
    with pytest.raises(ValueError, match="context"):
        generate(model, tokenizer, "The cat " * 40)


def test_stream_text_waits_for_whole_characters(tokenizer):
    text = " 日本 café"
    ids = [tokenizer.byte_ids[b] for b in text.encode()]   # one token per byte
    pieces = list(stream_text(tokenizer, ids))
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert len(pieces) == len(text)                    # one piece per character, not per byte


def test_stream_text_replaces_a_character_cut_off_at_the_end(tokenizer):
    ids = [tokenizer.byte_ids[b] for b in "aé".encode()[:-1]]
    assert "".join(stream_text(tokenizer, ids)) == "a\ufffd"
