"""The output-folder lock: refused while held, free after the holder dies (even by SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import lock

HOLDER = """
import sys, time
from pipeline import lock
with lock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _start_holder(folder) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(lock.__file__))),
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_with_the_holders_pid(tmp_path):
    proc = _start_holder(tmp_path)
    try:
        with pytest.raises(lock.OutputLocked, match=f'"pid": {proc.pid}'), lock.hold(str(tmp_path)):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_run_does_not_block(tmp_path):
    proc = _start_holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / lock.LOCK_FILE).exists()  # the stale file stays ...
    started = time.monotonic()
    with lock.hold(str(tmp_path)):  # ... and blocks nothing
        pass
    assert time.monotonic() - started < 5


def test_different_folders_do_not_interfere(tmp_path):
    with lock.hold(str(tmp_path / "a")), lock.hold(str(tmp_path / "b")):
        pass
