"""A board on this computer: the firmware's device loop (runtime/csrc/serve.c) on a
pseudo-terminal, which `tinylm serve` offers to `tinylm chat` as a serial port."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..runtime.build import build


class HostBoard:
    """A board on this computer: the device loop of the firmware (csrc/serve.c, built with
    csrc/serve_host.c) serving a .bin on the master side of a pseudo-terminal. `path` is the
    slave side (/dev/pts/N), a serial port for `tinylm chat --port`. Sampling as `tinylm run`."""

    def __init__(self, model_path: str | Path, seed: int = 0, max_tokens: int = 256,
                 context: int = 0):
        if not hasattr(os, "openpty"):
            raise OSError("serving a model on a pseudo-terminal needs a POSIX system")
        import tty  # POSIX only, like openpty
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
