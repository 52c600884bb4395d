"""The runtime on one rv32imc core, the ESP32-C3's instruction set, counted in qemu.

`build_program` cross-compiles the benchmark program (firmware_esp32/riscv_virt) with Debian's
riscv64-unknown-elf-gcc for qemu's riscv32 `virt` machine, cached like the host runtime
(tinylm/runtime/build.py). `run` starts qemu with `-icount shift=0`, so that minstret counts exactly
the instructions retired, with a request block and the model loaded into RAM, and returns the
token ids and the minstret readings the program prints. `bench` turns them into the figures
of `tinylm bench --target esp32c3`; `profile` says in which functions the instructions of a
generated token are.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..export.binformat import read_bin
from ..runtime.build import NO_FPU, SOURCES, cache_dir, kernel
from ..runtime.c_engine import arena_bytes
from ..runtime.sampler import to_q16
from .emulation import matvec_macs, streamed_weight_bytes

PROGRAM = Path(__file__).resolve().parents[2] / "firmware_esp32" / "riscv_virt"
CC = "riscv64-unknown-elf-gcc"
QEMU = "qemu-system-riscv32"
FLAGS = ["-march=rv32imc", "-mabi=ilp32", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror",
         *NO_FPU, "-ffreestanding", "-nostdlib",
         # freestanding.c's memset and memcpy must not be compiled into calls to themselves
         "-fno-builtin", "-fno-tree-loop-distribute-patterns",
         "-Wl,--no-warn-rwx-segments",   # one RAM region holds code and data, as intended
         "-g"]                           # for profile(); the code is the same without it
QEMU_FLAGS = ["-M", "virt", "-bios", "none", "-m", "64M", "-nographic"]
# The request block main.c reads: "TLMR", the model's size, the token limit, temperature,
# top-k and top-p (Q16), the seed's low and high 32 bits, the prompt's size; then the prompt.
REQUEST = struct.Struct("<4s8I")
CPU_HZ = 160_000_000
# An ESP32-C3 reads a model in flash through its 16 KB cache in 32-byte blocks (datasheet);
# the weights of one token are far more than 16 KB, so each block is a flash read. Assumed:
# quad I/O reads at 80 MHz, 8 clocks of command, 8 of address and mode bits, 4 dummy clocks
# and 64 of data per block.
FLASH_BYTES_PER_SECOND = 80_000_000 * 32 / (8 + 8 + 4 + 64)


def missing_tools() -> str | None:
    """Why the program cannot be built and run here, or None when it can."""
    if not shutil.which(CC):
        return f"{CC} is not installed (apt-get install gcc-riscv64-unknown-elf)"
    if not shutil.which(QEMU):
        return f"{QEMU} is not installed (apt-get install qemu-system-misc)"
    return None


@dataclass(frozen=True)
class Program:
    elf: Path
    request_address: int   # where the request block goes
    model_address: int     # where the .bin goes (16-byte aligned) ...
    model_end: int         # ... ending below this, where qemu puts its device tree


def build_program() -> Program:
    """The benchmark program's ELF, built once per source and cached."""
    if not shutil.which(CC):
        raise OSError(f"{CC} is not installed (apt-get install gcc-riscv64-unknown-elf)")
    sources = [PROGRAM / "startup.c", PROGRAM / "main.c", SOURCES / "freestanding.c",
               SOURCES / "tinylm.c", kernel("rv32im")]
    digest = hashlib.sha256(" ".join(FLAGS).encode())
    for path in [*sources, *sorted(SOURCES.glob("*.h")), PROGRAM / "virt.ld"]:
        digest.update(path.read_bytes())
    cache = cache_dir()
    elf = cache / f"riscv-virt-{digest.hexdigest()[:16]}.elf"
    if not elf.exists():
        temporary = elf.with_name(f".{elf.name}.{os.getpid()}")
        result = subprocess.run([CC, *FLAGS, "-I", str(SOURCES), "-T", str(PROGRAM / "virt.ld"),
                                 *map(str, sources), "-lgcc", "-o", str(temporary)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"building the RISC-V benchmark program failed:\n{result.stderr}")
        os.replace(temporary, elf)   # atomic: a parallel build never sees half a file
    symbols = subprocess.run(["riscv64-unknown-elf-nm", str(elf)], capture_output=True,
                             text=True, check=True).stdout.split("\n")
    address = {parts[2]: int(parts[0], 16) for parts in map(str.split, symbols) if len(parts) == 3}
    return Program(elf, address["__request"], address["__model"], address["__model_end"])


@dataclass
class Run:
    prompt_ids: list[int]     # the prompt as the program encoded it, <bos> first
    token_ids: list[int]      # the tokens generated
    start: int                # minstret before the prompt was fed ...
    fed: int                  # ... after it ...
    after_token: list[int]    # ... and after each generated token
    stop: str                 # "length" (the token limit) or "end" (<eos>, <bos>, full context)


def run(program: Program, model_path: str | Path, prompt: bytes, max_tokens: int,
        seed: int = 0, temperature: float = 1.0, top_k: int = 0, top_p: float = 0.9,
        timeout: float = 600) -> Run:
    """Generate up to max_tokens after prompt (sampling as `tinylm run`, whose defaults
    these are) in qemu, and return what the program printed."""
    with tempfile.TemporaryDirectory(prefix="tinylm-riscv-") as directory:
        command = qemu_command(program, Path(directory), model_path, prompt, max_tokens, seed,
                               temperature, top_k, top_p)
        try:   # -icount shift=0: minstret counts instructions, not host time
            result = subprocess.run([*command, "-icount", "shift=0"], capture_output=True,
                                    text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise OSError(f"qemu did not finish within {timeout:g} s") from None
    return parse(result.stdout, result.returncode, model_path, result.stderr)


def qemu_command(program: Program, directory: Path, model_path: str | Path, prompt: bytes,
                 max_tokens: int, seed: int = 0, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 0.9) -> list[str]:
    """The qemu command line that runs the program on this request, written in directory."""
    reason = missing_tools()
    if reason:
        raise OSError(reason)
    model_size = Path(model_path).stat().st_size
    if model_size > program.model_end - program.model_address:
        raise ValueError(f"{model_path}: {model_size:,} bytes; the emulated RAM holds "
                         f"{program.model_end - program.model_address:,}")
    request = REQUEST.pack(b"TLMR", model_size, max_tokens, to_q16(temperature), top_k,
                           to_q16(top_p), seed & 0xFFFFFFFF, seed >> 32, len(prompt)) + prompt
    if len(request) > program.model_address - program.request_address:
        raise ValueError(f"the prompt is too long: {len(prompt):,} bytes")
    request_path = directory / "request.bin"
    request_path.write_bytes(request)
    command = [QEMU, *QEMU_FLAGS, "-kernel", str(program.elf)]
    for path, address in [(request_path, program.request_address),
                          (Path(model_path), program.model_address)]:
        command += ["-device", f"loader,file={path},addr={address:#x},force-raw=on"]
    return command


def parse(output: str, status: int, model_path, stderr: str = "") -> Run:
    """The program's lines (see firmware_esp32/riscv_virt/main.c) as a Run."""
    lines = {}
    tokens = []
    for line in output.splitlines():
        name, _, rest = line.partition(" ")
        if name == "error":
            raise ValueError(f"{model_path}: {rest}")
        if name == "token":
            token, retired = rest.split()
            tokens.append((int(token), int(retired, 16)))
        else:
            lines[name] = rest
    if status != 0 or "stop" not in lines:
        raise OSError(f"qemu ended (status {status}) before the program finished:\n"
                      f"{output[-500:]}{stderr[-500:]}")
    return Run([int(i) for i in lines["prompt"].split()], [t for t, _ in tokens],
               int(lines["start"], 16), int(lines["fed"], 16), [r for _, r in tokens],
               lines["stop"])


def bench(model_path: str | Path, prompt: bytes = b"Once upon a time", max_tokens: int = 64,
          seed: int = 0) -> dict:
    """Instructions for the prompt and per generated token, and what they mean on an
    ESP32-C3 at 160 MHz assuming one instruction per cycle."""
    result = run(build_program(), model_path, prompt, max_tokens, seed)
    made = len(result.token_ids)
    if made < 2:
        raise ValueError(f"the model stopped after {made} token(s); measuring a generated "
                         "token needs two: try another --seed or --prompt")
    # From one token to the next: the forward pass of the one before, and sampling
    generated = (result.after_token[-1] - result.after_token[0]) / (made - 1)
    model = read_bin(model_path)
    macs = matvec_macs(model.config)
    weight_bytes = streamed_weight_bytes(model)
    compute_tok_s = CPU_HZ / generated
    flash_tok_s = flash_bound(weight_bytes)
    return {
        "model": str(model_path),
        "assumption": "one instruction per cycle at 160 MHz",
        "prompt_tokens": len(result.prompt_ids),
        "generated_tokens": made,
        "instructions_per_prompt_token": round((result.fed - result.start)
                                               / len(result.prompt_ids)),
        "instructions_per_generated_token": round(generated),
        "tok_s_160mhz_1ipc": round(compute_tok_s, 2),
        "matvec_macs_per_token": macs,
        "instructions_per_mac": round(generated / macs, 2),
        "weight_bytes_per_token": weight_bytes,
        "tok_s_flash_bound": round(flash_tok_s, 2),
        "tok_s_headline": round(min(compute_tok_s, flash_tok_s), 2),
        "bound_by": "compute" if compute_tok_s <= flash_tok_s else "flash",
        "arena_bytes": arena_bytes(model.config),
        "context": model.config.max_seq_len,
    }


def flash_bound(weight_bytes: int) -> float:
    """The tok/s that flash reads through the cache allow (FLASH_BYTES_PER_SECOND)."""
    return FLASH_BYTES_PER_SECOND / weight_bytes


def profile(model_path: str | Path, prompt: bytes = b"Once upon a time", max_tokens: int = 64,
            seed: int = 0, timeout: float = 1800) -> dict[str, int]:
    """Instructions per generated token by function, most first, over tokens 2 to max_tokens
    (a run that makes one token taken from one that makes max_tokens). An inlined function
    is named inside its caller ("tlm_forward > attention"); a block of code counts wholly
    for the function of its first instruction. Printing the token lines is included."""
    if max_tokens < 2:
        raise ValueError("a profile needs at least 2 tokens")
    program = build_program()
    few, many = (executed_instructions(program, model_path, prompt, n, seed, timeout)
                 for n in (1, max_tokens))
    many.subtract(few)
    names = inline_chains(program.elf, list(many))
    by_function = Counter()
    for address, instructions in many.items():
        by_function[names[address]] += instructions
    return {name: round(n / (max_tokens - 1)) for name, n in by_function.most_common() if n > 0}


def executed_instructions(program: Program, model_path, prompt: bytes, max_tokens: int,
                          seed: int, timeout: float) -> Counter:
    """Instructions run from each block of code (by its address) in one whole run. qemu logs
    every block it translates, with its instructions (-d in_asm), and every time it runs one
    (-d exec; nochain: also when a block jumps straight into the next)."""
    with tempfile.TemporaryDirectory(prefix="tinylm-riscv-") as directory:
        command = qemu_command(program, Path(directory), model_path, prompt, max_tokens, seed)
        output = Path(directory) / "output.txt"
        with open(output, "w") as out:
            qemu = subprocess.Popen([*command, "-d", "in_asm,exec,nochain"], stdout=out,
                                    stderr=subprocess.PIPE, text=True)
            watchdog = threading.Timer(timeout, qemu.kill)
            watchdog.start()
            size, runs, block = {}, Counter(), None
            for line in qemu.stderr:    # the log: far too long to keep
                if line.startswith("Trace"):    # Trace 0: HOST [CS_BASE/PC/FLAGS/CFLAGS] NAME
                    runs[int(line.split("/", 2)[1], 16)] += 1
                elif line.startswith("IN:"):
                    block = None
                elif line.startswith("0x"):     # 0xADDRESS:  CODE  INSTRUCTION
                    if block is None:
                        block = int(line.split(":", 1)[0], 16)
                        size[block] = 0
                    size[block] += 1
            qemu.wait()
            watchdog.cancel()
        if qemu.returncode < 0:
            raise OSError(f"qemu did not finish within {timeout:g} s")
        result = parse(output.read_text(), qemu.returncode, model_path)
    if len(result.token_ids) != max_tokens:
        raise ValueError(f"the model stopped after {len(result.token_ids)} tokens, before "
                         f"{max_tokens}: try another --seed or --prompt")
    return Counter({address: n * size[address] for address, n in runs.items()})


def inline_chains(elf: Path, addresses: list[int]) -> dict[int, str]:
    """The function of each address, with the functions inlined there: "outer > inner"."""
    result = subprocess.run(["riscv64-unknown-elf-addr2line", "-a", "-f", "-i", "-e", str(elf)],
                            input="\n".join(f"{a:#x}" for a in addresses), capture_output=True,
                            text=True, check=True)
    chains, address, names = {}, None, []
    for line in [*result.stdout.splitlines(), "0x0"]:   # a last address closes the last chain
        if line.startswith("0x"):
            if address is not None:   # innermost first; a function can come twice in a row
                chain = []
                for name in reversed(names):
                    if not chain or chain[-1] != name:
                        chain.append(name)
                chains[address] = " > ".join(chain)
            address, names = int(line, 16), []
        elif not line.startswith(("/", "??:")):         # function names, not file:line
            names.append(line)
    return chains
