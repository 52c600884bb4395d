"""Loading a teacher: any Hugging Face causal LM, by hub id or from a local folder.

Device: CUDA if there is a GPU, else Apple's MPS, else the CPU. Dtype: bfloat16 on a CUDA GPU
that supports it, float32 everywhere else. Never float16: Gemma-3's activations overflow it, and
its output then comes out empty.

Hub ids need the network the first time (then the local Hugging Face cache). The two errors a
user can do something about get a message that says what: a gated model (accept its licence on
the model's page, then log in), and no network or HF_HUB_OFFLINE=1 (pass a local folder).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .vocab import end_ids, special_ids

DEFAULT_TEACHER = "google/gemma-3-1b-it"
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class Teacher:
    name: str
    model: torch.nn.Module
    tokenizer: object               # a transformers tokenizer
    device: torch.device

    @property
    def max_len(self) -> int:
        """Positions the model can attend over (capped: longer texts are cut into pieces)."""
        return min(int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048), 2048)

    @torch.no_grad()
    def complete(self, prompt: str, max_new_tokens: int = 60, temperature: float = 0.7,
                 top_p: float = 0.9, seed: int = 0) -> str:
        """`prompt` and the teacher's continuation, as text."""
        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"].to(self.device)
        torch.manual_seed(seed)
        new = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                  temperature=temperature, top_p=top_p, top_k=0,
                                  max_new_tokens=max_new_tokens)[0, ids.shape[1]:]
        return prompt + self.tokenizer.decode(new, skip_special_tokens=True)

    def chat_context(self, prompt: str) -> list[int]:
        """The prompt through the chat template, ready for the reply (the template writes
        <bos>)."""
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                  tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def continue_ids(self, contexts: list[list[int]], max_new_tokens: int,
                     temperature: float = 1.0, top_p: float = 1.0,
                     batch_size: int = 8) -> list[list[int]]:
        """A continuation of each context (sampled, or greedy at temperature 0), in batches,
        cut before the first end or special token. Seed torch's generator for repeatable
        samples."""
        stops = end_ids(self.tokenizer, self.model.config)
        stop = special_ids(self.tokenizer) | set(stops)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else stops[0]
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) \
            if temperature > 0 else dict(do_sample=False)
        outputs = []
        for start in range(0, len(contexts), batch_size):
            batch = contexts[start:start + batch_size]
            width = max(map(len, batch))
            ids = torch.tensor([[pad] * (width - len(c)) + c for c in batch])   # pad on the left
            mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in batch])
            generated = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                max_new_tokens=min(max_new_tokens, self.max_len - width - 1),
                eos_token_id=stops, pad_token_id=pad, **sampling)
            for row in generated[:, width:].tolist():
                cut = next((i for i, t in enumerate(row) if t in stop), len(row))
                outputs.append(row[:cut])
        return outputs

    def answer(self, prompts: list[str], max_new_tokens: int = 64, temperature: float = 0.0,
               top_p: float = 1.0, batch_size: int = 16, seed: int = 0) -> list[str]:
        """The teacher's reply to each prompt, through its chat template: greedy, or sampled
        (seeded) at a temperature above 0."""
        torch.manual_seed(seed)
        replies = self.continue_ids([self.chat_context(p) for p in prompts], max_new_tokens,
                                    temperature, top_p, batch_size)
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in replies]

    @torch.no_grad()
    def bits_per_byte(self, documents: list[str], batch_size: int = 16,
                      context: int | None = None) -> float:
        """Scored as tinylm.training.evaluate scores a student: each document from <bos> (cut into
        windows of the teacher's context, or of `context` tokens to compare with a student of a
        shorter one), every token predicted, nats summed, divided by ln 2 and the documents'
        UTF-8 bytes."""
        step = min(context or self.max_len, self.max_len) - 1
        windows = []
        for document in documents:
            ids = self.tokenizer(document, add_special_tokens=False)["input_ids"]
            windows += [[self.tokenizer.bos_token_id, *ids[i:i + step]]
                        for i in range(0, len(ids), step)]
        windows.sort(key=len)
        nats = 0.0
        for first in range(0, len(windows), batch_size):
            batch = windows[first:first + batch_size]
            width = len(batch[-1])
            ids = torch.tensor([w + [0] * (width - len(w)) for w in batch], device=self.device)
            mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in batch],
                                device=self.device)
            logprobs = torch.log_softmax(
                self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), dim=-1)
            picked = logprobs.gather(2, ids[:, 1:, None])[..., 0]
            nats -= picked[mask[:, 1:] == 1].sum().item()
        return nats / math.log(2) / sum(len(d.encode()) for d in documents)


def pick_device(device: str = "auto") -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    if dtype == "float16":
        raise ValueError("float16 is not allowed for teachers: Gemma-3 overflows it and "
                         "produces empty output; use bfloat16 (GPU) or float32")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    if DTYPES[dtype] is not None:
        return DTYPES[dtype]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_teacher(name_or_path: str = DEFAULT_TEACHER, device: str = "auto",
                 dtype: str = "auto") -> Teacher:
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)
    local = Path(name_or_path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ValueError(f"{local} is not a Hugging Face model folder (no config.json)")
        source, options = str(local), {"local_files_only": True}
    elif name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise FileNotFoundError(f"no teacher folder {name_or_path}")
    else:
        source, options = name_or_path, {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **options)
    except OSError as e:
        raise OSError(_explain(e, name_or_path)) from e
    model.to(device).eval()
    return Teacher(name_or_path, model, tokenizer, device)


def _explain(error: BaseException, name: str) -> str:
    """The message for a model that would not load: what went wrong, and what to do."""
    causes, e = [], error
    while e is not None:
        causes.append(e)
        e = e.__cause__ or e.__context__
    names = {type(c).__name__ for c in causes}
    text = " ".join(str(c) for c in causes)
    if "GatedRepoError" in names or "gated" in text:
        return (f"{name} is a gated model: accept its licence at https://huggingface.co/{name} "
                f"while logged in there, then log in here with `hf auth login` (or set HF_TOKEN)")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline or "LocalEntryNotFoundError" in names or "connect" in text:
        return (f"cannot download {name}: "
                + ("HF_HUB_OFFLINE is set" if offline else "no connection to huggingface.co")
                + " and it is not in the local cache. Pass a local folder instead (--teacher "
                  "PATH, a folder written by save_pretrained), or run once with network access")
    return f"could not load teacher {name}: {error}"
