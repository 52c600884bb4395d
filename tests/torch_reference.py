"""The same Llama-style model written with PyTorch modules, used as an independent reference:
parity tests compare its autograd gradients with tinylm's hand-written ones, and the training
benchmark times it side by side. It loads tinylm's parameter dict, so both start equal."""
import numpy as np
import torch
import torch.nn.functional as F


class TorchLlama(torch.nn.Module):
    def __init__(self, config, params: dict[str, np.ndarray]):
        super().__init__()
        self.config = config
        # ParameterDict keys may not contain dots; keep tinylm's names alongside
        self.names = {name.replace(".", "/"): name for name in params}
        self.weights = torch.nn.ParameterDict(
            {key: torch.nn.Parameter(torch.from_numpy(np.array(params[name])))
             for key, name in self.names.items()})
        inv_freq = config.rope_theta ** (-torch.arange(0, config.head_dim, 2, dtype=torch.float64)
                                         / config.head_dim)
        angles = torch.outer(torch.arange(config.max_seq_len, dtype=torch.float64), inv_freq)
        dtype = self.weights["tok_emb"].dtype
        self.register_buffer("cos", torch.cos(angles).to(dtype))
        self.register_buffer("sin", torch.sin(angles).to(dtype))

    def w(self, name):
        return self.weights[name.replace(".", "/")]

    def rope(self, x):                     # interleaved pairs, x: (B, T, heads, S)
        T = x.shape[1]
        pairs = x.unflatten(-1, (-1, 2))
        x0, x1 = pairs[..., 0], pairs[..., 1]
        cos, sin = self.cos[:T, None, :], self.sin[:T, None, :]
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)

    def forward(self, tokens, targets):
        c = self.config
        B, T = tokens.shape
        x = self.w("tok_emb")[tokens]
        for i in range(c.n_layers):
            p = f"layers.{i}."
            h = F.rms_norm(x, (c.dim,), self.w(p + "attn_norm"), c.norm_eps)
            q = self.rope((h @ self.w(p + "wq").T).view(B, T, c.n_heads, c.head_dim))
            k = self.rope((h @ self.w(p + "wk").T).view(B, T, c.n_kv_heads, c.head_dim))
            v = (h @ self.w(p + "wv").T).view(B, T, c.n_kv_heads, c.head_dim)
            att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                 v.transpose(1, 2), is_causal=True,
                                                 enable_gqa=True)
            x = x + att.transpose(1, 2).reshape(B, T, -1) @ self.w(p + "wo").T
            h = F.rms_norm(x, (c.dim,), self.w(p + "mlp_norm"), c.norm_eps)
            x = x + (F.silu(h @ self.w(p + "w1").T) * (h @ self.w(p + "w3").T)) @ self.w(p + "w2").T
        h = F.rms_norm(x, (c.dim,), self.w("final_norm"), c.norm_eps)
        head = self.w("tok_emb") if c.tie_embeddings else self.w("lm_head")
        logits = h @ head.T
        return F.cross_entropy(logits.view(-1, c.vocab_size), targets.reshape(-1))

    def grads(self) -> dict[str, np.ndarray]:
        return {self.names[key]: p.grad.numpy() for key, p in self.weights.items()}
