"""The C runtime (tinylm/csrc) on this computer: built on first use, then called through ctypes.

The sources ship inside the package. `build()` compiles them with the system C compiler ($CC,
else cc, gcc or clang) into a cache directory ($TINYLM_CACHE, else ~/.cache/tinylm), under a
name that hashes the sources, the machine type, the compiler and the flags: a changed source
is rebuilt, an unchanged one never. `CEngine` runs a .bin there; its logits are Q16 integers,
as in the C API. `HostBoard` runs the firmware's device loop (serve.c) here, on a
pseudo-terminal that `tinylm chat` opens as it would a board's serial port.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np

from .sampler import to_q16

SOURCES = Path(__file__).parent / "csrc"
FLAGS = ["-std=c99", "-O3", "-ffp-contract=off"]   # no fused multiply-add: floats as NumPy
# The kernel file of each CPU (csrc/kernels.h): the one place that says which, for build()
# here, the emulators and the tests (the firmware's CMake files choose theirs as these do).
# CPUs as platform.machine() names them, and the microcontrollers' instruction sets.
KERNELS = {"x86_64": "kernels_simd.c", "AMD64": "kernels_simd.c", "aarch64": "kernels_simd.c",
           "arm64": "kernels_simd.c", "armv6m": "kernels_armv6m.c", "rv32im": "kernels_rv32im.c"}
PORTABLE = "kernels_portable.c"   # any other CPU; the specification the others are held to
NO_FPU = ["-DTLM_FLOAT_WEIGHTS=0"]   # builds for a CPU without an FPU: no float32 models


def compiler() -> str:
    cc = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if not cc or not shutil.which(cc.split()[0]):
        raise OSError("no C compiler found: install gcc or clang (or set CC), "
                      "or use --engine numpy")
    return cc


def kernel(cpu: str | None = None) -> Path:
    """The kernel file for this CPU (a KERNELS key), by default the one this computer has."""
    return SOURCES / KERNELS.get(platform.machine() if cpu is None else cpu, PORTABLE)


PROGRAMS = {   # what build() makes: file name, sources besides the runtime and host.c, flags
    "library": ("libtinylm-{}.so", [], ["-shared", "-fPIC"]),
    "program": ("tinylm-host-{}", [], ["-DTLM_HOST_MAIN"]),
    "server": ("tinylm-serve-{}", ["serve.c", "serve_host.c"], []),
}


def build(kind: str = "library", extra_flags: tuple[str, ...] = ()) -> Path:
    """Path of the cached shared library ("library"), command-line program ("program") or
    device loop on standard input and output ("server", see HostBoard)."""
    cc = compiler()
    name, more_sources, kind_flags = PROGRAMS[kind]
    flags = [*FLAGS, *extra_flags, *kind_flags]
    sources = [SOURCES / "tinylm.c", kernel(), SOURCES / "host.c",
               *(SOURCES / s for s in more_sources)]
    digest = hashlib.sha256(" ".join([platform.machine(), cc, kind, *flags]).encode())
    for path in [*sources, *sorted(SOURCES.glob("*.h"))]:
        digest.update(path.read_bytes())
    cache = Path(os.environ.get("TINYLM_CACHE") or Path.home() / ".cache" / "tinylm")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / name.format(digest.hexdigest()[:16])
    if not target.exists():
        temporary = target.with_name(f".{target.name}.{os.getpid()}")
        result = subprocess.run([*cc.split(), *flags, "-I", str(SOURCES), *map(str, sources),
                                 "-o", str(temporary)], capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"building the C runtime with {cc} failed:\n{result.stderr}")
        os.replace(temporary, target)   # atomic: a parallel build never sees half a file
    return target


_lib = None


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

    def encode(self, text: str | bytes, bos: bool = False) -> list[int]:
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        room = len(data) + 2
        ids = (ctypes.c_uint32 * room)()
        n = self.lib.tlm_encode(self.model, data, len(data), int(bos), ids, room)
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
        """New token ids, one per call into C (tlm_next), as sampler.generate_ids."""
        self.lib.tlm_sampler_init(self.sampler, to_q16(temperature), top_k, to_q16(top_p), seed)
        ids = (ctypes.c_uint32 * len(prompt_ids))(*prompt_ids)
        if self.lib.tlm_start(self.state, ids, len(prompt_ids)) != 0:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens; it needs 1 to "
                             f"{self.context - 1}")
        for _ in range(max_tokens):
            token = self.lib.tlm_next(self.state, self.sampler)
            if token < 0:
                return
            yield token


def arena_bytes(config, context: int = 0) -> int:
    """What tlm_arena_size returns: the bytes of RAM the runtime needs besides the model file
    (activations, the int8 key/value cache and its scales), as laid out in tinylm.c."""
    c = config
    context = context if 0 < context <= c.max_seq_len else c.max_seq_len
    q_dim, kv_dim = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    widest, hidden = max(c.dim, c.hidden_dim, q_dim), max(c.hidden_dim, kv_dim)
    scratch = max(4 * context, 2 * c.vocab_size) // 4 * 4
    cache = c.n_layers * context
    parts = [4 * c.dim, 4 * widest, 4 * q_dim, 4 * hidden, 4 * hidden, 4 * c.vocab_size,
             scratch,
             2 * widest, cache * kv_dim, cache * kv_dim, cache * c.n_kv_heads,
             cache * c.n_kv_heads]
    return sum(-(-p // 16) * 16 for p in parts)


class HostBoard:
    """A board on this computer: the device loop of the firmware (csrc/serve.c, built with
    csrc/serve_host.c) serving a .bin on the master side of a pseudo-terminal. `path` is the
    slave side (/dev/pts/N), a serial port for `tinylm chat --port`. Sampling as `tinylm run`."""

    def __init__(self, model_path: str | Path, seed: int = 0, max_tokens: int = 256,
                 context: int = 0):
        if not hasattr(os, "openpty"):
            raise OSError("serving a model on a pseudo-terminal needs a POSIX system")
        import tty          # POSIX only, like openpty
        program = build("server")
        master, self.slave = os.openpty()
        # Raw, as pyserial sets a port: no echo, no line editing, no LF to CR LF.
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        # This side keeps the slave open, so that the device loop's port stays up while no
        # client has it open (a master reads end of file once the last slave is closed).
        try:
            self.process = subprocess.Popen(
                [str(program), str(model_path), "-s", str(seed), "-n", str(max_tokens),
                 "-c", str(context)], stdin=master, stdout=master)
        except OSError:
            os.close(self.slave)
            raise
        finally:
            os.close(master)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait()
        os.close(self.slave)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
