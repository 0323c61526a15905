"""Client factories for the stores, built from the settings (the only place connections are made)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from flashsale.settings import Settings, get_settings

if TYPE_CHECKING:
    import pymongo


@contextmanager
def mongo_client(
    settings: Settings | None = None, timeout_ms: int = 5000, socket_timeout_ms: int | None = None
) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    import pymongo

    s = settings or get_settings()
    # tz_aware: timestamps come back as UTC-aware datetimes, which the contracts require.
    # socket_timeout_ms: long-running writers set it so a hung (not refusing) server cannot block forever.
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        s.mongo_url,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=socket_timeout_ms,
    )
    try:
        yield client
    finally:
        client.close()


def redis_client(settings: Settings | None = None, timeout: float = 2.0):
    import redis

    s = settings or get_settings()
    return redis.Redis.from_url(s.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)


def hdfs_client(settings: Settings | None = None):
    """An hdfs-native client (no JVM). Fails fast when the NameNode is down."""
    from hdfs_native import Client

    s = settings or get_settings()
    return Client(s.hdfs_url, config={"dfs.client.failover.max.attempts": "0"})


def hdfs_filesystem(settings: Settings | None = None):
    """An fsspec filesystem on HDFS (hdfs-native), for pyarrow.parquet and pyarrow.dataset."""
    from urllib.parse import urlparse

    from hdfs_native.fsspec import HdfsFileSystem

    url = urlparse((settings or get_settings()).hdfs_url)
    return HdfsFileSystem(host=url.hostname, port=url.port)
