"""Watchdog run as a separate process: reaps harness children when their parent dies.

The harness starts brokers and Redis in their own sessions (so a Ctrl-C aimed at the
test runner does not kill them before the harness can stop them in order). That also
means nothing kills them when the Python parent is SIGKILLed or crashes without running
`atexit` hooks. This script closes that gap without `prctl` (Linux-only, and tied to the
forking *thread*): the parent holds the write end of our stdin; the kernel closes it when
the parent dies for any reason, we read EOF, and we kill every process group and remove
every directory still registered.

It is run as a plain script (`python -I _watchdog.py`), so it must import only the
standard library. Protocol, one command per line on stdin:
`+pgid N`, `-pgid N`, `+dir PATH`, `-dir PATH`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys


def main() -> int:
    # We must outlive whatever killed our parent long enough to clean up after it.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    process_groups: set[int] = set()
    directories: set[str] = set()
    for raw_line in sys.stdin:
        command, _, argument = raw_line.rstrip("\n").partition(" ")
        if command == "+pgid":
            process_groups.add(int(argument))
        elif command == "-pgid":
            process_groups.discard(int(argument))
        elif command == "+dir":
            directories.add(argument)
        elif command == "-dir":
            directories.discard(argument)
    # EOF: the parent is gone (or finished and closed the pipe with nothing registered).
    for pgid in process_groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
