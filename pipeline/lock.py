"""One live run per output folder: an advisory lock that dies with its process.

``fcntl.flock`` is released by the kernel when the holder exits, killed by SIGKILL included, so a
stale lock from a killed run never blocks the next one; the file only records who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator

from modules.errors import RetailrecError

LOCK_FILE = ".retailrec.lock"


class OutputLocked(RetailrecError):
    """Another live run holds the output folder."""


@contextlib.contextmanager
def hold(output_dir: str) -> Iterator[None]:
    """Holds the lock of ``output_dir`` for the duration of the block.

    Raises:
      OutputLocked: a live process holds it (the message names the process).
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            raise OutputLocked(
                f"{output_dir}: another retailrec run holds this output folder ({holder}); "
                "wait for it to finish or use another --output"
            ) from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
