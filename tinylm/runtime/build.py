"""Building the C runtime (csrc/) on this computer, with the system C compiler.

The sources ship inside the package. `build()` compiles them ($CC, else cc, gcc or clang)
into a cache directory ($TINYLM_CACHE, else ~/.cache/tinylm), under a name that hashes the
sources, the machine type, the compiler and the flags: a changed source is rebuilt, an
unchanged one never. c_engine.py calls the library it makes; boards/host_board.py runs the
device-loop program.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

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
    device loop on standard input and output ("server", see boards/host_board.py)."""
    cc = compiler()
    name, more_sources, kind_flags = PROGRAMS[kind]
    flags = [*FLAGS, *extra_flags, *kind_flags]
    sources = [SOURCES / "tinylm.c", kernel(), SOURCES / "host.c",
               *(SOURCES / s for s in more_sources)]
    digest = hashlib.sha256(" ".join([platform.machine(), cc, kind, *flags]).encode())
    for path in [*sources, *sorted(SOURCES.glob("*.h"))]:
        digest.update(path.read_bytes())
    target = cache_dir() / name.format(digest.hexdigest()[:16])
    if not target.exists():
        temporary = target.with_name(f".{target.name}.{os.getpid()}")
        result = subprocess.run([*cc.split(), *flags, "-I", str(SOURCES), *map(str, sources),
                                 "-o", str(temporary)], capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"building the C runtime with {cc} failed:\n{result.stderr}")
        os.replace(temporary, target)   # atomic: a parallel build never sees half a file
    return target




def cache_dir() -> Path:
    """Where built programs are kept: $TINYLM_CACHE, else ~/.cache/tinylm."""
    cache = Path(os.environ.get("TINYLM_CACHE") or Path.home() / ".cache" / "tinylm")
    cache.mkdir(parents=True, exist_ok=True)
    return cache
