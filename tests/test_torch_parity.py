"""tinylm's hand-written gradients against PyTorch autograd on identical weights (float64)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed: parity test skipped")

from torch_reference import TorchLlama  # noqa: E402

from tinylm.core.config import ModelConfig  # noqa: E402
from tinylm.core.model import Transformer  # noqa: E402


@pytest.mark.parametrize("config", [
    dict(vocab_size=50, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, hidden_dim=40),
    dict(vocab_size=30, dim=8, n_layers=2, n_heads=8, n_kv_heads=8, head_dim=6, hidden_dim=20,
         tie_embeddings=False),
], ids=["gqa-tied", "untied-wide-heads"])
def test_loss_and_gradients_match_torch(config):
    config = ModelConfig(max_seq_len=12, **config)
    model = Transformer.initialize(config, seed=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    for value in model.params.values():
        value += rng.standard_normal(value.shape) * 0.1
    tokens = rng.integers(0, config.vocab_size, (3, 12))
    targets = rng.integers(0, config.vocab_size, (3, 12))

    reference = TorchLlama(config, model.params)
    torch_loss = reference(torch.from_numpy(tokens), torch.from_numpy(targets))
    torch_loss.backward()
    torch_grads = reference.grads()

    loss, grads = model.loss_and_grads(tokens, targets)
    assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, torch_grads[name], rtol=1e-9, atol=1e-12, err_msg=name)
