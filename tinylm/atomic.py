"""Writing a file all or nothing: to a temporary name beside it, then renamed over it.

A rename within a directory is atomic, so a crash or a kill at any moment leaves either the
old file or the new one, never half of one. A kill (which no code can catch) may leave the
temporary file behind; the next write of the same file removes those of processes that are
gone.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def atomic_write(path: str | Path, write) -> None:
    """Call write(file) on a temporary file opened for binary writing, then rename it to
    `path`."""
    path = Path(path)
    remove_stale_temporaries(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())   # the data is on disk before the rename makes it the file
        os.replace(temporary, path)
    except BaseException:          # also Ctrl-C: never leave the temporary file behind
        temporary.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=1) + "\n").encode()))


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files of `path` left by processes that no longer run."""
    for temporary in path.parent.glob(f".{path.name}.*.tmp"):
        pid = temporary.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and not running(int(pid)):
            temporary.unlink(missing_ok=True)


def running(pid: int) -> bool:
    """Whether a process of this machine with this id runs."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process
        return True
    return True
