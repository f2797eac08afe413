"""Process plumbing shared by the Kafka and Redis harnesses."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar

_log = logging.getLogger(__name__)

_WATCHDOG_SCRIPT = Path(__file__).with_name("_watchdog.py")


class _Reaper:
    """Parent side of the watchdog (see `_watchdog.py`): one watchdog per Python process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchdog: subprocess.Popen[str] | None = None

    def _send(self, line: str) -> None:
        with self._lock:
            for _attempt in range(2):
                watchdog = self._watchdog
                if watchdog is None or watchdog.poll() is not None:
                    watchdog = self._watchdog = self._spawn()
                stdin = watchdog.stdin
                assert stdin is not None
                try:
                    stdin.write(line + "\n")
                    stdin.flush()
                    return
                except (BrokenPipeError, ValueError):
                    # The watchdog died (someone killed it); start a fresh one. Anything
                    # registered with the old one is lost, which only matters if we crash.
                    self._watchdog = None
            _log.warning("harness watchdog unavailable; could not send %r", line)

    @staticmethod
    def _spawn() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-I", str(_WATCHDOG_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            # Own session: a terminal's Ctrl-C must not kill it before it cleans up.
            start_new_session=True,
        )

    def watch_process_group(self, pgid: int) -> None:
        self._send(f"+pgid {pgid}")

    def forget_process_group(self, pgid: int) -> None:
        self._send(f"-pgid {pgid}")

    def watch_directory(self, path: Path) -> None:
        self._send(f"+dir {path}")

    def forget_directory(self, path: Path) -> None:
        self._send(f"-dir {path}")


reaper = _Reaper()


def start_session_process(
    command: list[str], *, cwd: Path, output: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `command` in its own session with output appended to `output` (and `env` as
    its whole environment when given, else this process's).

    The process group is registered with the watchdog, so it dies with this process
    even on SIGKILL; call `stop_process` (or `kill_process`) to end it normally.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("ab") as sink:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    reaper.watch_process_group(process.pid)
    return process


def stop_process(
    process: subprocess.Popen[bytes], *, timeout: float, warn_on_kill: bool = True
) -> None:
    """SIGTERM the process group, escalate to SIGKILL after `timeout` seconds, reap it."""
    stop_processes([process], timeout=timeout, warn_on_kill=warn_on_kill)


def stop_processes(
    processes: Iterable[subprocess.Popen[bytes]], *, timeout: float, warn_on_kill: bool = True
) -> None:
    """`stop_process` for several processes at once: all get SIGTERM together and share
    the `timeout`, so a stop takes as long as the slowest of them, not the sum."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _log.log(
                logging.WARNING if warn_on_kill else logging.DEBUG,
                "pid %d still running %.0f s after SIGTERM; killing it",
                process.pid,
                timeout,
            )
        kill_process(process)


def kill_process(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole process group (the JVM may have spawned helpers) and reap it."""
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()
    reaper.forget_process_group(process.pid)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now.

    All sockets stay open until every port is chosen, so the kernel cannot hand out the
    same port twice; a small race with other programs remains until the servers bind.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_accepts_connections(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file, or a note that it does not exist."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip("\n")
    except FileNotFoundError:
        return f"({path} does not exist)"


class Stoppable(Protocol):
    def stop(self) -> None: ...


class StopsOnExit:
    """`with Server.start(...) as server:` stops the server when the block ends, however
    it ends. Subclasses define `stop()`."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


S = TypeVar("S", bound=Stoppable)


class StopAtExit(Generic[S]):
    """Servers not yet stopped, stopped at interpreter exit in case a caller forgot."""

    def __init__(self) -> None:
        self._running: set[S] = set()
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def add(self, server: S) -> None:
        with self._lock:
            self._running.add(server)

    def discard(self, server: S) -> None:
        with self._lock:
            self._running.discard(server)

    def stop_all(self) -> None:
        with self._lock:
            leftovers = list(self._running)
        for server in leftovers:
            server.stop()
