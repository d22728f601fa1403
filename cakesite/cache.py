"""Django's Redis cache backend, with two changes.

It fails open. The cache holds only counters and limits (the throttles, the long polls per user, the
e-mails per address, one export per user at a time), so when Redis is down, hangs or is out of
memory it counts nothing: a read finds nothing, a write keeps nothing (an `add` answers as if it
kept: the export lock then lets a second export through), and requests go through instead of every
page and API call failing with it (the broker is often the same Redis; an upload is then stored and
waits for it). After a failure the process leaves the cache alone for SKIP_AFTER_FAILURE_S, so a
hung server costs one request its socket timeout (CACHES OPTIONS), not every request. A wrong
password or ACL is no outage but a mistake: it is raised, not counted as nothing for good. Password
guessing is still locked out: django-axes counts in the database.

It is leaner: Django builds a new redis-py client for every cache operation, and redis-py's
constructor copies its table of ~170 response callbacks each time: 40% of the CPU of a cache read
or write (200 against 120 µs), and the API's throttles make two per throttle, one or two throttles
per request. Here each connection pool gets its client once; a client only borrows connections
from its pool, so sharing it is safe."""

from __future__ import annotations

import functools
import logging
import time

from django.core.cache.backends import redis
from redis import exceptions as redis_errors

log = logging.getLogger(__name__)

SKIP_AFTER_FAILURE_S = 10.0
OUTAGES = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.OutOfMemoryError)
MISTAKES = (redis_errors.AuthenticationError, redis_errors.AuthorizationError)  # ConnectionErrors too
# Until when this process leaves the cache alone (monotonic seconds). One for all threads: Django
# gives each thread its own cache object, and each would otherwise wait out the timeout once.
down_until = 0.0


def missing(*_args):
    raise ValueError("not in the cache (the cache is unreachable)")  # what incr says of a missing key


def when_down(fallback):
    """The operation, or `fallback(*args)` while Redis cannot be reached."""
    def wrap(operation):
        @functools.wraps(operation)
        def call(self, *args):
            global down_until
            if time.monotonic() < down_until:
                return fallback(*args)
            try:
                return operation(self, *args)
            except MISTAKES:
                raise
            except OUTAGES as exc:
                down_until = time.monotonic() + SKIP_AFTER_FAILURE_S
                log.warning("the cache is unreachable, counting nothing for %.0f s: %s",
                            SKIP_AFTER_FAILURE_S, exc)
                return fallback(*args)
        return call
    return wrap


class RedisCacheClient(redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        if pool not in self._clients:
            self._clients[pool] = self._client(connection_pool=pool)
        return self._clients[pool]

    add = when_down(lambda *_: True)(redis.RedisCacheClient.add)  # as if kept, then lost
    get = when_down(lambda key, default: default)(redis.RedisCacheClient.get)
    get_many = when_down(lambda *_: {})(redis.RedisCacheClient.get_many)
    has_key = when_down(lambda *_: False)(redis.RedisCacheClient.has_key)
    incr = when_down(missing)(redis.RedisCacheClient.incr)
    set = when_down(lambda *_: None)(redis.RedisCacheClient.set)
    set_many = when_down(lambda *_: None)(redis.RedisCacheClient.set_many)
    touch = when_down(lambda *_: False)(redis.RedisCacheClient.touch)
    delete = when_down(lambda *_: False)(redis.RedisCacheClient.delete)
    delete_many = when_down(lambda *_: None)(redis.RedisCacheClient.delete_many)
    clear = when_down(lambda *_: False)(redis.RedisCacheClient.clear)


class RedisCache(redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
