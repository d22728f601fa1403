"""Django's Redis cache backend, minus one cost: Django builds a new redis-py client for every cache
operation, and redis-py's constructor copies its table of ~170 response callbacks each time. That
was half the CPU of a throttle check (two cache operations per throttle, one to three throttles per
API request). Here each connection pool gets its client once; a client only borrows connections
from its pool, so sharing it is safe."""

from __future__ import annotations

from django.core.cache.backends import redis


class RedisCacheClient(redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        if pool not in self._clients:
            self._clients[pool] = self._client(connection_pool=pool)
        return self._clients[pool]


class RedisCache(redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
