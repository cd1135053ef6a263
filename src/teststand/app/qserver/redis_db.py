"""The queue server's Redis: its address, a PING, a saving SHUTDOWN (the `redis` client)."""

from __future__ import annotations

import contextlib
import urllib.parse
from dataclasses import dataclass

import redis

from teststand.app.qserver.errors import QserverConfigError, RedisUnreachable


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int = 6379
    db: int = 0

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """`redis://HOST[:PORT][/DB]`."""
        parts = urllib.parse.urlsplit(url)
        usage = f"--redis {url!r}: expected redis://HOST:PORT[/DB]"
        if parts.scheme != "redis" or not parts.hostname:
            raise QserverConfigError(usage)
        if parts.username or parts.password:
            raise QserverConfigError(
                f"{usage} without a password: the RE Manager would show it on its command line; "
                "use a Redis reachable only from trusted hosts, or the embedded one (no --redis)"
            )
        db = parts.path.strip("/") or "0"
        try:
            port = parts.port or 6379
        except ValueError:
            raise QserverConfigError(usage) from None
        if not db.isdigit():
            raise QserverConfigError(f"{usage}; the database {db!r} must be a number")
        return cls(parts.hostname, port, int(db))

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    @property
    def manager_form(self) -> str:
        """How `start-re-manager --redis-addr` wants it (it mishandles a scheme)."""
        return f"{self.host}:{self.port}/{self.db}"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            self.host, self.port, self.db, socket_timeout=timeout, socket_connect_timeout=timeout
        )


def ping_redis(address: RedisAddress, timeout: float = 2.0) -> None:
    """Raise `RedisUnreachable` unless a Redis answers PING at the address."""
    client = address.client(timeout)
    try:
        client.ping()
    except redis.AuthenticationError:
        raise RedisUnreachable(
            f"{address.url} refused PING without a password: it must be a Redis without one"
        ) from None
    except redis.ConnectionError as exc:
        raise RedisUnreachable(
            f"Redis at {address.url} is not reachable ({exc}): start it, correct "
            "--redis, or leave --redis out to run the embedded Redis"
        ) from None
    except redis.RedisError as exc:
        raise RedisUnreachable(
            f"{address.url} answered {exc} to PING: it must be a Redis without a password"
        ) from None
    finally:
        client.close()


def shutdown_redis(address: RedisAddress) -> None:
    """SHUTDOWN SAVE: Redis saves its data and exits at once (on SIGTERM it takes ~2 s)."""
    client = address.client()
    with contextlib.suppress(redis.RedisError):
        client.shutdown(save=True)
    client.close()
