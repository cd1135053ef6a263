"""Writes of line protocol batches to InfluxDB with httpx: the v1 API (`/write?db=…`) or the v2
API (`/api/v2/write?org=…&bucket=…`, `Authorization: Token …`).

A failure the database may get over (no connection, a timeout, a 5xx) is `DatabaseUnavailable`;
a refusal that needs the user (a wrong password or token, an unknown database or bucket) is
`DatabaseRefused` with what to change. Both leave the batch with the caller.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from teststand.errors import TeststandError
from teststand.storage.monitoring import DatabaseConfig


class DatabaseError(TeststandError, RuntimeError):
    """A batch the database did not take."""


class DatabaseUnavailable(DatabaseError):
    """No answer, too slow, or a server error: try again later."""


class DatabaseRefused(DatabaseError):
    """The database answered no: credentials, database or bucket are wrong."""


class Database:
    """One InfluxDB endpoint; `await write(lines)` returns the latency in s or raises."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        secret = config.secret()
        params: dict[str, str] = {"precision": "ns"}
        headers: dict[str, str] = {"Content-Type": "text/plain; charset=utf-8"}
        if config.api == "v1":
            self.endpoint = config.url.rstrip("/") + "/write"
            params["db"] = config.db or ""
            if config.user:
                params |= {"u": config.user, "p": secret or ""}
            self.target = f"database {config.db!r} at {config.url}"
        else:
            self.endpoint = config.url.rstrip("/") + "/api/v2/write"
            params |= {"org": config.org or "", "bucket": config.bucket or ""}
            if secret:
                headers["Authorization"] = f"Token {secret}"
            self.target = f"bucket {config.bucket!r} of org {config.org!r} at {config.url}"
        self._client = httpx.AsyncClient(params=params, headers=headers, timeout=config.timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def write(self, lines: list[str]) -> float:
        started = time.perf_counter()
        try:
            response = await self._client.post(self.endpoint, content="\n".join(lines).encode())
        except httpx.TimeoutException:
            raise DatabaseUnavailable(
                f"{self.target} did not answer within {self.config.timeout} s"
            ) from None
        except httpx.HTTPError as exc:
            raise DatabaseUnavailable(f"cannot reach {self.target}: {exc}") from None
        if response.status_code < 300:
            return time.perf_counter() - started
        raise self._refusal(response)

    def _refusal(self, response: httpx.Response) -> DatabaseError:
        detail = _detail(response)
        status = response.status_code
        if status in (401, 403):
            what = "user/password (password_env)" if self.config.api == "v1" else "token"
            return DatabaseRefused(
                f"{self.target} refused the write ({status}: {detail}): check the {what} in "
                "monitoring.database"
            )
        if status == 404:
            what = "database (monitoring.database.db)"
            if self.config.api == "v2":
                what = "org and bucket (monitoring.database.org/bucket)"
            return DatabaseRefused(
                f"{self.target} does not exist ({detail}): create it or fix the {what}"
            )
        if status >= 500 or status == 429:
            return DatabaseUnavailable(f"{self.target} failed the write ({status}: {detail})")
        return DatabaseRefused(f"{self.target} rejected the points ({status}: {detail})")


def _detail(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)[:200]
    return str(body)[:200]
