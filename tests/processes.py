"""Real processes for the integration tests: a Celery worker, the web server, a private Redis and a
TCP proxy in front of PostgreSQL (to take the database away and give it back). Loopback only, and
every wait is bounded."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import PHOTOS, services_required

ROOT = Path(settings.BASE_DIR)


def require_services() -> None:
    broker = os.environ.get("CELERY_BROKER_URL", "")
    database = os.environ.get("DATABASE_URL", "")
    if broker.startswith("redis://") and database.startswith("postgres"):
        return
    reason = "needs CELERY_BROKER_URL=redis://... and DATABASE_URL=postgres://..."
    if services_required():
        pytest.fail(reason)
    pytest.skip(reason)


def wait_for(predicate, timeout: float = 90.0, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def lock_waited_for(timeout: float = 10.0, waiting: int = 1) -> bool:
    """Whether, within `timeout` seconds, `waiting` connections to this test's PostgreSQL database
    wait for a lock: how a race test holding a lock knows the other parties are blocked behind it
    (a sleep would pass without testing anything when one came late). Asked on a connection of its
    own, with the activity snapshot cleared each time (it is kept for a transaction otherwise)."""
    from django.db import connections

    probe = connections.create_connection("default")
    try:
        with probe.cursor() as cursor:
            def someone_waits() -> bool:
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                               "WHERE NOT l.granted AND a.datname = current_database()")
                return cursor.fetchone()[0] >= waiting

            return wait_for(someone_waits, timeout, step=0.02)
    finally:
        probe.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(host: str | None = None, port: int | None = None) -> str:
    """The URL of the test database (the one this test process uses), optionally via host:port."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    netloc = parts.netloc
    if port:
        netloc = f"{parts.username or 'postgres'}@{host or '127.0.0.1'}:{port}"
    return urlunsplit(parts._replace(netloc=netloc, path="/" + connection.settings_dict["NAME"]))


def app_env(settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment of a process that shares this test's database, media and a private models copy."""
    models = tmp_path / "models"
    if not models.exists():
        shutil.copytree(ROOT / "models", models)
    settings.MODELS_DIR = models
    settings.BENCHMARK_DIR = PHOTOS
    settings.TRAINING_DATA_DIR = tmp_path / "no-data-set"  # as conftest: the shipped photos only
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CAKESITE_MODELS_DIR": str(models),
        "CAKESITE_BENCHMARK_DIR": str(PHOTOS),
        "CAKESITE_TRAINING_DATA_DIR": str(settings.TRAINING_DATA_DIR),
        "CAKESITE_VAR_DIR": str(tmp_path / "var"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class Process:
    """A child process in its own session (so a SIGKILL reaches its children too), logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        self._file = open(log, "a+")  # noqa: SIM115
        self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._file, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the process and everything it started: no clean-up, no acknowledgements."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=20)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._file.close()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def start_worker(env: dict[str, str], log: Path, *extra: str) -> Process:
    return Process([sys.executable, "-m", "celery", "-A", "cakesite", "worker", "--loglevel=INFO",
                    "--without-gossip", "--without-mingle", "--without-heartbeat", *extra], env, log)


def start_web(env: dict[str, str], log: Path, port: int) -> Process:
    web = Process([sys.executable, "-m", "gunicorn", "cakesite.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1",
                   "-k", "gthread", "--threads", "4"], env, log)
    assert wait_for(lambda: answers(port), 60), web.tail()
    return web


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_redis(port: int, log: Path) -> Process:
    server = Process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no"], dict(os.environ), log)
    assert wait_for(lambda: answers(port), 20), server.tail()
    return server


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a server; `stop` cuts every connection and refuses new ones,
    `start` serves again on the same port."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._running = False

    def start(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(64)
        self._running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._running = False
        for s in [self._listener, *self._sockets]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._sockets.clear()

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while self._running:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()


class SilentServer:
    """Accepts connections on 127.0.0.1:<port> and never answers: a server that hangs (stopped, or
    cut off by a partition) instead of refusing."""

    def __init__(self):
        self.port = free_port()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(128)
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self._held.append(self._listener.accept()[0])
            except OSError:
                return

    def stop(self) -> None:
        for s in [self._listener, *self._held]:
            s.close()
