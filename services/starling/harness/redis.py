"""A real `redis-server` (Debian's Redis 7, protocol-compatible with the Valkey we deploy).

Usage::

    with RedisServer.start(appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        ...
        server.restart()  # same port and data directory; AOF keeps the data
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from starling.harness import _process

INSTALL_HINT = "install it with `apt-get update && apt-get install -y redis-server`"


class RedisHarnessError(RuntimeError):
    """redis-server is missing, or did not start or answer as expected."""


def redis_server_executable() -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        raise RedisHarnessError(f"`redis-server` is not on PATH; {INSTALL_HINT}")
    return executable


@dataclass(frozen=True)
class RedisTls:
    """Serve TLS only (no plain port) with this certificate; `ca_file` is what clients trust.

    `starling up` keeps plain TCP: its store listens on 127.0.0.1 only, where no other host
    can see the traffic, and the CA's files would have to live somewhere on the laptop. The
    TLS path is the one the cluster uses, exercised by tests/integration/test_store_tls.py."""

    cert_file: Path
    key_file: Path
    ca_file: Path


_live_servers: _process.StopAtExit[RedisServer] = _process.StopAtExit()


class RedisServer(_process.StopsOnExit):
    """One redis-server process bound to 127.0.0.1 with a private data directory."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        executable: str,
        port: int,
        directory: Path,
        appendonly: bool,
        extra_config: Mapping[str, str],
        tls: RedisTls | None = None,
    ) -> None:
        self.executable = executable
        self.tls = tls
        self.port = port
        self.directory = directory
        self.appendonly = appendonly
        self.extra_config = dict(extra_config)
        self._process: subprocess.Popen[bytes] | None = None
        self._stopped = False
        self._keep_directory = False

    @classmethod
    def start(
        cls,
        *,
        appendonly: bool = False,
        extra_config: Mapping[str, str] | None = None,
        ready_timeout: float = 15.0,
        directory: Path | None = None,
        tls: RedisTls | None = None,
    ) -> RedisServer:
        """Start on a free port. No persistence unless `appendonly`, in which case every
        write is fsynced to the AOF before it is acknowledged (so even `kill()` keeps it).

        With `directory` the data lives there and `stop()` keeps it, so a later server
        started on the same directory (with `appendonly`) loads it again; by default it
        is a private temporary directory, deleted by `stop()`."""
        executable = redis_server_executable()
        keep = directory is not None
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="starling-redis-"))
            _process.reaper.watch_directory(directory)
        else:
            directory.mkdir(parents=True, exist_ok=True)
        server = cls(
            executable=executable,
            port=_process.free_ports(1)[0],
            directory=directory,
            appendonly=appendonly,
            extra_config=extra_config or {},
            tls=tls,
        )
        server._keep_directory = keep
        _live_servers.add(server)
        try:
            server._launch(ready_timeout)
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_file(self) -> Path:
        return self.directory / "redis.log"

    def restart(self, ready_timeout: float = 15.0) -> None:
        """Stop gracefully (if running) and start again on the same port and directory."""
        if self._process is not None:
            _process.stop_process(self._process, timeout=10.0)
        self._launch(ready_timeout)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; `restart()` brings it back."""
        if self._process is not None:
            _process.kill_process(self._process)

    def stop(self) -> None:
        """Stop the server for good and delete its data directory (unless the caller
        gave it)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._process is not None:
                _process.stop_process(self._process, timeout=10.0)
        finally:
            if not self._keep_directory:
                shutil.rmtree(self.directory, ignore_errors=True)
                _process.reaper.forget_directory(self.directory)
            _live_servers.discard(self)

    def _command(self) -> list[str]:
        settings: dict[str, str] = {
            "port": str(self.port),
            "bind": self.host,
            "dir": str(self.directory),
            "daemonize": "no",
            "logfile": str(self.log_file),
            # No RDB snapshots: they would make "no persistence" untrue and cost time.
            "save": "",
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": "always",
        }
        if self.tls is not None:
            settings.update(
                {
                    "port": "0",
                    "tls-port": str(self.port),
                    "tls-cert-file": str(self.tls.cert_file),
                    "tls-key-file": str(self.tls.key_file),
                    "tls-ca-cert-file": str(self.tls.ca_file),
                    # Clients authenticate with the password, not a certificate.
                    "tls-auth-clients": "no",
                }
            )
        settings.update(self.extra_config)
        command = [self.executable]
        for key, value in settings.items():
            command += [f"--{key}", value]
        return command

    def _launch(self, ready_timeout: float) -> None:
        if self._stopped:
            raise RedisHarnessError("this RedisServer was stopped for good; start a new one")
        if self.is_running:
            raise RedisHarnessError(f"redis-server on port {self.port} is already running")
        self._process = _process.start_session_process(
            self._command(), cwd=self.directory, output=self.directory / "console.log"
        )
        deadline = time.monotonic() + ready_timeout
        while not self._answers_ping():
            code = self._process.poll()
            if code is not None or time.monotonic() >= deadline:
                reason = f"exited with code {code}" if code is not None else "did not answer"
                raise RedisHarnessError(
                    f"redis-server on port {self.port} {reason} within {ready_timeout:.0f} s\n"
                    f"--- {self.log_file} ---\n{_process.tail(self.log_file)}\n"
                    f"--- console ---\n{_process.tail(self.directory / 'console.log')}"
                )
            time.sleep(0.02)

    def _answers_ping(self) -> bool:
        # A raw inline PING keeps the harness independent of the client library; a
        # server still loading its AOF answers -LOADING, which is not ready yet.
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as raw:
                if self.tls is None:
                    return _ping(raw)
                context = ssl.create_default_context(cafile=str(self.tls.ca_file))
                with context.wrap_socket(raw, server_hostname=self.host) as connection:
                    return _ping(connection)
        except OSError:
            return False


def _ping(connection: socket.socket) -> bool:
    connection.sendall(b"PING\r\n")
    # With a password set, an unauthenticated PING answers -NOAUTH: up all the same.
    return connection.recv(64).startswith((b"+PONG", b"-NOAUTH"))
