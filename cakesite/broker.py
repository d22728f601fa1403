"""kombu's filesystem transport, made to notice a worker's shutdown.

On a transport with no event loop, such as this one, Celery's worker runs its blocking loop
(celery.worker.loops.synloop): it sees Ctrl-C or SIGTERM only between calls of
drain_events(timeout=2.0), and calls it once more after (in a `finally`), while kombu polls the
folder for the whole timeout: a worker took 2 to 4 seconds to start stopping. Here the wait is cut
into short slices and ends once the worker is stopping (a message already here is still taken).
"""

from time import monotonic

from celery.worker import state
from kombu.transport import filesystem

SLICE_S = 0.2  # at most this late to see a shutdown


def stopping_worker() -> bool:
    """Whether this process is a worker that is shutting down: as celery.worker.state.maybe_shutdown
    reads the flags its signal handlers set (to the exit code, which may be 0)."""
    return any(flag is not None and flag is not False
               for flag in (state.should_stop, state.should_terminate))


class Transport(filesystem.Transport):
    def drain_events(self, connection, timeout=None):
        if timeout is None:
            return super().drain_events(connection, timeout)
        deadline = monotonic() + timeout
        while True:
            stopping = stopping_worker()
            wait = 0 if stopping else min(SLICE_S, max(deadline - monotonic(), 0))
            try:
                return super().drain_events(connection, timeout=wait)
            except TimeoutError:
                if stopping or monotonic() >= deadline:
                    raise
