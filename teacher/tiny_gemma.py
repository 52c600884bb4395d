"""A tiny Gemma-3-architecture teacher, trained here, for running distillation without a hub.

With no network there is no real teacher to download, so the offline first run makes one:
a Gemma-3 model (transformers' Gemma3ForCausalLM, the architecture of google/gemma-3-1b-it,
at about 650K parameters: three times the demo's student) trained with PyTorch on the
built-in stories, saved with save_pretrained, and loaded back through the same code path as
any hub teacher.

Its tokenizer is built like Gemma's: BPE over text in which spaces are written "▁", byte
fallback tokens <0x00>..<0xFF> for characters it lacks, <bos>/<eos>/<pad>/<unk> and the turn
markers <start_of_turn>/<end_of_turn> of Gemma's chat template. The merges are learned with
words kept apart (each word with its leading "▁"), so no token spans two words.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

from tinylm.training.progress import plural

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]  # ids 0..5
# Gemma's chat template, without system prompts and images: "assistant" is written "model".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def build_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    n_fixed = len(SPECIALS) + 256
    learner = Tokenizer(models.BPE())
    learner.normalizer = normalizers.Replace(" ", "▁")
    learner.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never", split=True)
    learner.train_from_iterator(texts, BpeTrainer(vocab_size=vocab_size - n_fixed,
                                                  show_progress=False))
    learned = json.loads(learner.to_str())["model"]
    vocab = {name: i for i, name in enumerate(SPECIALS)}
    vocab.update({f"<0x{b:02X}>": len(SPECIALS) + b for b in range(256)})
    for piece, _ in sorted(learned["vocab"].items(), key=lambda item: item[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>",
                                     byte_fallback=True))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                           decoders.Fuse()])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)])
    tokenizer.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", extra_special_tokens=SPECIALS[4:], chat_template=CHAT_TEMPLATE)


def build_model(vocab_size: int, dim: int = 128, n_layers: int = 3, n_heads: int = 4,
                head_dim: int = 32, hidden_dim: int = 384, context: int = 256,
                seed: int = 0) -> Gemma3ForCausalLM:
    """Gemma-3 at toy size. query_pre_attn_scalar = head_dim (Gemma's 1/sqrt(head_dim)
    attention scale) and layer_types are set explicitly: the defaults are for the big models."""
    config = Gemma3TextConfig(
        vocab_size=vocab_size, hidden_size=dim, intermediate_size=hidden_dim,
        num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=1,
        head_dim=head_dim, query_pre_attn_scalar=head_dim, max_position_embeddings=context,
        sliding_window=context // 2,
        layer_types=["sliding_attention"] * (n_layers - 1) + ["full_attention"],
        pad_token_id=0, eos_token_id=[1, 5], bos_token_id=2)
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(config)


def train_tiny_gemma(texts: list[str], folder: str | Path, vocab_size: int = 1024,
                     steps: int = 300, seconds: float | None = None, batch_size: int = 16,
                     seq_len: int = 128, lr: float = 3e-3, seed: int = 0, log=print,
                     chats: list[tuple[str, str]] = (), **model_sizes) -> Path:
    """Build the tokenizer and model, train on `texts` (<bos> text <eos>) and `chats` (prompt
    and reply through the chat template), shuffled together and concatenated, for `steps`
    AdamW steps or `seconds`, whichever ends first, and save both to `folder`."""
    folder = Path(folder)
    tokenizer = build_tokenizer([*texts, *(part for chat in chats for part in chat)], vocab_size)
    model = build_model(len(tokenizer), context=max(256, seq_len), seed=seed, **model_sizes)
    documents = [tokenizer(text)["input_ids"] + [1] for text in texts]
    documents += [tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}],
        tokenize=True, return_dict=False) for prompt, reply in chats]
    order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(seed))
    stream = torch.tensor([t for i in order.tolist() for t in documents[i]])
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"training a tiny Gemma-3 teacher ({n_params:,} parameters, vocabulary "
        f"{len(tokenizer):,}) on {plural(len(texts), 'text')}"
        + (f" and {plural(len(chats), 'question')}" if chats else "")
        + f" ({len(stream):,} tokens)")
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        if seconds is not None and time.perf_counter() - started > seconds:
            break
        for group in optimizer.param_groups:  # linear warmup, then cosine decay to lr / 10
            warm = min(1.0, (step + 1) / max(1, steps // 20))
            group["lr"] = lr * warm * (0.1 + 0.45 * (1 + math.cos(math.pi * step / steps)))
        starts = torch.randint(0, len(stream) - seq_len - 1, (batch_size,), generator=generator)
        windows = torch.stack([stream[s:s + seq_len + 1] for s in starts])
        loss = model(input_ids=windows[:, :-1], labels=windows[:, :-1]).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % 50 == 0:
            log(f"  teacher step {step + 1}: loss {loss.item():.3f}")
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
