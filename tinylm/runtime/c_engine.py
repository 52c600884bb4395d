"""The C runtime called from Python through ctypes: a .bin run in tinylm.c, on this computer.

`CEngine` loads a .bin there; its logits are Q16 integers, as in the C API (csrc/tinylm.h).
`arena_bytes` is the C runtime's arena size, computed here so that planning needs no compiler.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from ..training.generate import check_prompt
from .build import build
from .sampler import to_q16

_lib = None
CHAT_TURN = 2   # tlm_encode's TLM_CHAT_TURN (csrc/tinylm.h)


def library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(str(build("library")))
        P, u32, i32 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int32
        signatures = {
            "tlm_host_open": (P, [ctypes.c_char_p, u32, ctypes.POINTER(ctypes.c_char_p)]),
            "tlm_host_close": (None, [P]),
            "tlm_host_model": (P, [P]), "tlm_host_state": (P, [P]), "tlm_host_sampler": (P, [P]),
            "tlm_host_vocab_size": (u32, [P]), "tlm_host_context": (u32, [P]),
            "tlm_reset": (None, [P]),
            "tlm_arena_size": (ctypes.c_size_t, [P, u32]),
            "tlm_forward": (ctypes.POINTER(i32), [P, u32]),
            "tlm_sampler_init": (None, [P, u32, u32, u32, ctypes.c_uint64]),
            "tlm_start": (ctypes.c_int, [P, ctypes.POINTER(u32), u32]),
            "tlm_next": (i32, [P, P]),
            "tlm_encode": (i32, [P, ctypes.c_char_p, u32, ctypes.c_int, ctypes.POINTER(u32), u32]),
            "tlm_piece": (ctypes.POINTER(ctypes.c_uint8), [P, i32, u32, ctypes.POINTER(u32)]),
        }
        for name, (restype, argtypes) in signatures.items():
            getattr(lib, name).restype = restype
            getattr(lib, name).argtypes = argtypes
        _lib = lib
    return _lib


class CEngine:
    """A .bin loaded into the C runtime, with an arena for `context` tokens."""

    def __init__(self, path: str | Path, context: int = 0):
        self.handle = None
        self.lib = lib = library()
        error = ctypes.c_char_p()
        self.handle = lib.tlm_host_open(str(path).encode(), context, ctypes.byref(error))
        if not self.handle:
            raise ValueError(f"{path}: {error.value.decode()}")
        self.model = lib.tlm_host_model(self.handle)
        self.state = lib.tlm_host_state(self.handle)
        self.sampler = lib.tlm_host_sampler(self.handle)
        self.vocab_size = lib.tlm_host_vocab_size(self.handle)
        self.context = lib.tlm_host_context(self.handle)

    def close(self):
        if self.handle:
            self.lib.tlm_host_close(self.handle)
            self.handle = None

    __del__ = close

    def arena_size(self, context: int = 0) -> int:
        return self.lib.tlm_arena_size(self.model, context)

    def encode(self, text: str | bytes, bos: bool = False, chat: bool = False) -> list[int]:
        """tlm_encode: with `chat`, a chat model's question wrapped in its turn."""
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        room = len(data) + 4
        ids = (ctypes.c_uint32 * room)()
        n = self.lib.tlm_encode(self.model, data, len(data), CHAT_TURN if chat else int(bos),
                                ids, room)
        return list(ids[:n])

    def piece(self, prev: int, token: int) -> bytes:
        length = ctypes.c_uint32()
        pointer = self.lib.tlm_piece(self.model, prev, token, ctypes.byref(length))
        return ctypes.string_at(pointer, length.value)

    def reset(self):
        self.lib.tlm_reset(self.state)

    def forward(self, token: int) -> np.ndarray:
        """Feed one token; its logits (Q16 int64, vocab_size)."""
        logits = self.lib.tlm_forward(self.state, token)
        if not logits:
            raise ValueError("context full or token out of range")
        return np.ctypeslib.as_array(logits, (self.vocab_size,)).astype(np.int64)

    def generate(self, prompt_ids, max_tokens: int, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0):
        """New token ids, one per call into C (tlm_next), as sampler.generate_ids. The prompt
        is checked now, at the call."""
        check_prompt(len(prompt_ids), self.context)

        def tokens():
            self.lib.tlm_sampler_init(self.sampler, to_q16(temperature), top_k, to_q16(top_p),
                                      seed)
            ids = (ctypes.c_uint32 * len(prompt_ids))(*prompt_ids)
            if self.lib.tlm_start(self.state, ids, len(prompt_ids)) != 0:
                raise ValueError("a prompt token is out of the vocabulary")
            for _ in range(max_tokens):
                token = self.lib.tlm_next(self.state, self.sampler)
                if token < 0:
                    return
                yield token

        return tokens()


def arena_bytes(config, context: int = 0) -> int:
    """What tlm_arena_size returns: the bytes of RAM the runtime needs besides the model file
    (activations, the int8 key/value cache and its scales), as laid out in tinylm.c."""
    c = config
    context = context if 0 < context <= c.max_seq_len else c.max_seq_len
    q_dim, kv_dim = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    widest, hidden = max(c.dim, c.hidden_dim, q_dim), max(c.hidden_dim, kv_dim)
    scratch = 4 * max(2 * context, c.vocab_size // 2)
    cache = c.n_layers * context
    parts = [4 * c.dim, 4 * widest, 4 * q_dim, 4 * hidden, 4 * hidden, 4 * c.vocab_size,
             scratch,
             2 * widest, cache * kv_dim, cache * kv_dim, cache * c.n_kv_heads,
             cache * c.n_kv_heads]
    return sum(-(-p // 16) * 16 for p in parts)
