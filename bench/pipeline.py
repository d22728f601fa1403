"""End to end: K clients upload real photos through the API and poll until each is classified.

    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://... python -m bench.pipeline
        [--clients 8] [--seconds 60] [--photos DIR] [--web-workers 2] [--concurrency 2]

Everything is real and on loopback: gunicorn serving the site in production mode (DEBUG off), a
Celery worker started by the benchmark, Redis as the broker (and the throttle cache), PostgreSQL
(a private database created for the run and dropped after it). The worker's start is timed from
the moment its process is launched until the first uploaded photo has its prediction in the
database; its processes' resident memory is sampled throughout. Then, after a short warm-up,
K clients each upload a photo (multipart, token auth, the photo's original bytes), poll its
URL with the ETag until it is done, and start the next, for the given number of seconds. A photo
without a result 30 s after its upload started is `lost`; a refused upload, a failed
classification, a request that fails (connection, timeout, an answer that is not JSON) and a 5xx
answer to a browsing request are `errors`; the warm-up's count too. The worker is started with
the product's own command line (docker-compose.yml: INFO logging, to a file, and the embedded beat),
with its own queue and the given concurrency. The API's throttles are raised for the run: they
are a policy, not a cost. While the
clients run, the CPU time of each part (web, worker processes, PostgreSQL, Redis, the clients) is
read from /proc and printed per photo: where the machine's cores go.

Ends with `RESULT upload_to_result_p50_ms=.. upload_to_result_p99_ms=.. photos_per_s=.. lost=..
errors=.. worker_ready_s=.. worker_rss_mb=..`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = ROOT.parent / "shared" / "data" / "kue-indonesia" / "test"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}
RESULT_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_database(url: str, name: str, drop: bool = False) -> str:
    """Create (or drop) database `name` on the server of `url`; returns its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def servers_and_photos(bench: str, folder: str) -> tuple[str, str, list[Path]]:
    """PostgreSQL's and Redis's URLs from the environment, and the photos under `folder` (any
    depth); the reason, and an exit, when one is missing or a server is not on this machine (the
    benchmark creates and drops a database there, and its figures assume loopback)."""
    database, broker = os.environ.get("DATABASE_URL", ""), os.environ.get("CELERY_BROKER_URL", "")
    if not (database.startswith("postgres") and broker.startswith("redis://")):
        raise SystemExit(f"{bench} needs DATABASE_URL=postgres://... and CELERY_BROKER_URL=redis://...")
    for url in (database, broker):
        host = urlsplit(url).hostname
        if host is not None and host not in LOOPBACK:  # no host: a Unix socket, also this machine
            raise SystemExit(f"{bench} runs on loopback only: {host} is not this machine")
    photos = sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise SystemExit(f"no photos under {folder}")
    return database, broker, photos


def forget_queue(broker: str, queue: str) -> None:
    """Delete a run's traces from Redis: its private queue, kombu's two sets that bind it, and the
    throttle counters kept under the run's CACHE_KEY_PREFIX (the queue's name)."""
    import redis

    server = redis.Redis.from_url(broker)
    server.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}",
                  *server.keys(f"{queue}:*"))


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_mb(pid: int) -> dict[int, float]:
    """Resident memory of `pid` and its children, in MB, read from /proc."""
    found = {}
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                found[current] = int(line.split()[1]) / 1024
        pids.extend(children(current))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user plus system) of process `pid` so far, with that of its children that have
    ended (PostgreSQL's backends that closed, for instance); 0 once it has gone. From /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def named(name: str) -> list[int]:
    """Processes called `name` (PostgreSQL, Redis): shared servers, so on a machine that runs
    something else at the same time their figure includes that too."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == name:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def cpu_by_part(web: int, worker: int) -> dict[str, dict[int, float]]:
    """CPU seconds used so far by each part of the pipeline, per process."""
    parts = {
        "web (gunicorn)": [web, *children(web)],
        "worker pool processes": children(worker),
        "worker main process": [worker],
        "PostgreSQL": named("postgres"),
        "Redis": named("redis-server"),
    }
    cpu = {part: {pid: cpu_seconds(pid) for pid in pids} for part, pids in parts.items()}
    cpu["the benchmark's clients"] = {os.getpid(): time.process_time()}
    return cpu


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings of one part. A process that ended in between counts in
    its parent (a PostgreSQL backend in the postmaster's children time), all of its life."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


class Client:
    """One user's session against the API: upload a photo, wait for its result, and (browsing)
    read the photo list and the photo, as the website's pages would."""

    def __init__(self, base: str, token: str, poll_s: float, browse: bool = False):
        self.base, self.poll_s, self.browse = base, poll_s, browse
        self.ms: dict[str, list[float]] = {"upload": [], "browse list": [], "browse photo": []}
        self.requests = self.browse_errors = self.server_errors = 0
        self.last_url: str | None = None
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"

    def timed(self, kind: str | None, method: str, url: str, timeout: float = RESULT_TIMEOUT_S + 5,
              **options) -> requests.Response:
        started = time.perf_counter()
        response = self.http.request(method, url, timeout=timeout, **options)
        if kind:
            self.ms[kind].append((time.perf_counter() - started) * 1000)
        self.requests += 1
        self.server_errors += response.status_code >= 500
        return response

    def upload_and_wait(self, path: Path) -> tuple[str, float]:
        """('done' | 'failed' | 'refused' | 'broken' | 'lost', milliseconds from upload start to
        result). 'broken': a request of ours failed (connection, timeout, not JSON); 'lost': no
        result within RESULT_TIMEOUT_S of the upload's start."""
        started = time.perf_counter()
        try:
            outcome = self._upload_and_wait(path, started)
        except (requests.RequestException, ValueError, KeyError, IndexError):
            outcome = "broken", 0.0
        if self.browse and self.last_url:
            for kind, url in [("browse list", f"{self.base}/api/photos/?page_size=24"),
                              ("browse photo", self.last_url)]:
                try:
                    failed = self.timed(kind, "GET", url).status_code >= 500
                except requests.RequestException:
                    failed = True
                self.browse_errors += failed
        return outcome

    def _upload_and_wait(self, path: Path, started: float) -> tuple[str, float]:
        self.last_url = None
        with path.open("rb") as f:
            response = self.timed("upload", "POST", f"{self.base}/api/photos/",
                                  files={"files": (path.name, f)})
        if response.status_code != 201:
            return "refused", 0.0
        url = self.last_url = f"{self.base}/api/photos/{response.json()['results'][0]['photo']['id']}/"
        etag = ""
        while (left := RESULT_TIMEOUT_S - (time.perf_counter() - started)) > 0:
            # Ask the server to wait no longer than the photo has left: a result after the limit
            # is lost, however it arrives.
            response = self.timed(None, "GET", url, params={"wait": f"{left:.3f}"},
                                  headers={"If-None-Match": etag}, timeout=left + 5)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.status_code == 200:
                etag = response.headers.get("ETag", "")
                if response.json()["status"] in ("done", "failed"):
                    if elapsed_ms > RESULT_TIMEOUT_S * 1000:
                        return "lost", 0.0
                    return response.json()["status"], elapsed_ms
            elif response.status_code != 304:
                return "refused", 0.0
            time.sleep(self.poll_s)
        return "lost", 0.0


def worker_stages(database_url: str, since) -> dict[str, np.ndarray]:
    """Per photo, from the database: stored -> prediction written, and the model's own time."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT EXTRACT(EPOCH FROM pr.created - ph.created) * 1000, pr.inference_ms "
            "FROM classifier_prediction pr JOIN classifier_photo ph ON ph.id = pr.photo_id "
            "WHERE ph.created >= %s", [since]).fetchall()
    table = np.array(rows, dtype=float).reshape(-1, 2)
    return {"stored_to_prediction": table[:, 0], "model": table[:, 1]}


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not happen within {timeout:.0f} s")


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False


def run_clients(clients: list[Client], photos: list[Path], seconds: float) -> tuple[list, float]:
    """Each client uploads photos one after the other (round robin over `photos`) for `seconds`."""
    outcomes: list[tuple[str, float]] = []
    lock = threading.Lock()
    counter = iter(range(10**9))
    stop_at = time.perf_counter() + seconds

    def loop(client: Client) -> None:
        while time.perf_counter() < stop_at:
            with lock:
                path = photos[next(counter) % len(photos)]
            outcome = client.upload_and_wait(path)
            with lock:
                outcomes.append(outcome)

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="folder of photos (any depth)")
    p.add_argument("--web-workers", type=int, default=2, help="gunicorn processes (8 threads each)")
    p.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    p.add_argument("--poll-ms", type=float, default=20.0, help="pause between a client's polls")
    p.add_argument("--browse", action="store_true",
                   help="after each result, also read the photo list and the photo (a user browsing)")
    args = p.parse_args(argv)

    database, broker, photos = servers_and_photos("bench.pipeline", args.photos)

    tag = f"cakesite_bench_{os.getpid()}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen] = []
    with (tempfile.TemporaryDirectory(prefix="cakesite-pipeline-") as tmp,
          open(Path(tmp) / "worker.log", "w") as worker_log):
        env = {
            **os.environ,
            "DATABASE_URL": private_database(database, tag),
            "CELERY_QUEUE": tag,  # a private queue: no other worker on this Redis takes our photos
            "CACHE_URL": broker, "CACHE_KEY_PREFIX": tag,
            "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            "THROTTLE_UPLOADS": "1000000/minute", "THROTTLE_USER": "1000000/minute",
            # Thread pools sized to the machine: worker processes x inference threads = cores.
            "INFERENCE_THREADS": os.environ.get("INFERENCE_THREADS",
                                                str(max(1, (os.cpu_count() or 1) // args.concurrency))),
            "CAKESITE_VAR_DIR": tmp, "MEDIA_ROOT": f"{tmp}/media",
        }
        try:
            subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                           cwd=ROOT, env=env, check=True)
            # One user per client, as on a site: each has its own throttles and long-poll slots.
            tokens = subprocess.run(
                [sys.executable, "manage.py", "shell", "-c",
                 "from django.contrib.auth.models import User; "
                 "from classifier.services import api_token_new; "
                 f"[print(api_token_new(User.objects.create_user(f'bench{{i}}'))[1]) "
                 f"for i in range({args.clients})]"],
                cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout.split()[-args.clients:]
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "cakesite.wsgi", "-b", f"127.0.0.1:{port}",
                 "-w", str(args.web_workers), "-k", "gthread", "--threads", "8", "--log-level", "warning"],
                cwd=ROOT, env=env))
            wait_until(lambda: answers(f"{base}/api/model-versions/"), 60, "the web server answering")

            # The worker's start: from launching it to the first photo's prediction.
            first = Client(base, tokens[0], args.poll_ms / 1000)
            launched = time.perf_counter()
            # docker-compose.yml's worker command, with the run's own queue, name and concurrency.
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "cakesite", "worker", "-n", f"{tag}@%h",
                 "--loglevel=INFO", f"--concurrency={args.concurrency}",
                 "--beat", "--schedule", f"{tmp}/celerybeat-schedule", "-Q", tag],
                cwd=ROOT, env=env, stdout=worker_log, stderr=subprocess.STDOUT)
            processes.append(worker)
            state, _ = first.upload_and_wait(photos[0])
            worker_ready_s = time.perf_counter() - launched
            if state != "done":
                worker_log.flush()
                tail = (Path(tmp) / "worker.log").read_text()[-3000:]
                raise SystemExit(f"the first photo ended {state!r}; the worker's log ends:\n{tail}")

            memory: dict[int, float] = {}
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(0.5):
                    for pid, mb in rss_mb(worker.pid).items():
                        memory[pid] = max(memory.get(pid, 0.0), mb)

            sampler = threading.Thread(target=sample)
            sampler.start()
            clients = [Client(base, token, args.poll_ms / 1000, args.browse) for token in tokens]
            # Warm-up (connections, caches): not timed, but what goes wrong in it is counted.
            warmup, _ = run_clients(clients, photos, min(5.0, args.seconds))
            warmup_errors = sum(c.browse_errors for c in clients)
            for client in clients:
                client.ms = {kind: [] for kind in client.ms}
                client.requests = client.browse_errors = client.server_errors = 0
            since = datetime.now(UTC)
            cpu_before = cpu_by_part(processes[0].pid, worker.pid)
            outcomes, elapsed = run_clients(clients, photos, args.seconds)
            cpu_after = cpu_by_part(processes[0].pid, worker.pid)
            stages = worker_stages(env["DATABASE_URL"], since)
            sampling.set()
            sampler.join()
        finally:
            for proc in reversed(processes):
                proc.terminate()
            for proc in processes:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            private_database(database, tag, drop=True)
            forget_queue(broker, tag)

    done = np.array([ms for state, ms in outcomes if state == "done"])
    lost = sum(1 for state, _ in outcomes + warmup if state == "lost")
    errors = (sum(1 for state, _ in outcomes + warmup if state in ("refused", "failed", "broken"))
              + warmup_errors + sum(c.browse_errors for c in clients))
    p50, p99 = (np.percentile(done, [50, 99]) if len(done) else (float("nan"), float("nan")))
    per_process = sorted(memory.values())
    latency = {kind: np.array([ms for c in clients for ms in c.ms[kind]]) for kind in clients[0].ms}
    server_errors = sum(c.server_errors for c in clients)
    requests_per_s = sum(c.requests for c in clients) / elapsed
    print(f"{args.clients} clients, {elapsed:.1f} s, {len(outcomes)} uploads from {len(photos)} photos "
          f"(and {len(warmup)} in the warm-up); "
          f"gunicorn {args.web_workers}x8 threads, Celery {args.concurrency} processes")
    print(f"{'stage (ms)':<34} {'p50':>10} {'p99':>8}")
    rows = [(f"{kind} request", values) for kind, values in latency.items() if len(values)]
    rows += [("stored -> prediction written", stages["stored_to_prediction"]),
             ("  of which the model", stages["model"])]
    for name, values in rows:
        print(f"{name:<34} {np.percentile(values, 50):>10.1f} {np.percentile(values, 99):>8.1f}")
    print(f"\n{'measure':<34} {'value':>10}")
    for name, value in [
        ("upload to result p50 (ms)", f"{p50:.1f}"), ("upload to result p99 (ms)", f"{p99:.1f}"),
        ("photos classified per second", f"{len(done) / elapsed:.1f}"), ("lost", lost), ("errors", errors),
        ("requests per second (all kinds)", f"{requests_per_s:.1f}"), ("responses 5xx", server_errors),
        ("worker start to first result (s)", f"{worker_ready_s:.2f}"),
        ("worker RSS per process, max (MB)", f"{max(per_process, default=0):.0f}"),
        ("worker RSS, all processes (MB)", f"{sum(per_process):.0f}"),
    ]:
        print(f"{name:<34} {value:>10}")
    print(f"\n{'CPU while measuring':<34} {'cores':>10} {'ms/photo':>8}")
    total = 0.0
    for part, after in cpu_after.items():
        used = cpu_used(cpu_before[part], after)
        total += used
        print(f"{part:<34} {used / elapsed:>10.2f} {1000 * used / max(len(done), 1):>8.1f}")
    print(f"{'all':<34} {total / elapsed:>10.2f} {1000 * total / max(len(done), 1):>8.1f}")
    result = {
        "upload_to_result_p50_ms": f"{p50:.1f}", "upload_to_result_p99_ms": f"{p99:.1f}",
        "photos_per_s": f"{len(done) / elapsed:.1f}", "lost": lost, "errors": errors,
        "requests_per_s": f"{requests_per_s:.1f}",
        "worker_ready_s": f"{worker_ready_s:.2f}", "worker_rss_mb": f"{max(per_process, default=0):.0f}",
    }
    print("\nRESULT " + " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
