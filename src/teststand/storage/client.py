"""Connecting to Tiled with typed errors: no answer, wrong API key."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from teststand.storage.errors import StorageError, TiledAuthError, TiledUnreachable


def split_uri(uri: str, api_key: str | None = None) -> tuple[str, str | None]:
    """(base URI without query, API key from the argument or from `?api_key=` in the URI)."""
    parts = urlsplit(uri)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise StorageError(
            f"Tiled URI {uri!r} is not an http(s)://host:port address; give e.g. "
            "http://tiled.example.org:8000 in storage.tiled"
        )
    keys = parse_qs(parts.query).get("api_key") or []
    key = api_key or (keys[0] if keys else None)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
    return base, key


def probe(uri: str, timeout: float = 3.0) -> None:
    """Raise `TiledUnreachable` unless a Tiled server answers at `uri` within `timeout`."""
    base, _ = split_uri(uri)
    root = base.split("/api/", 1)[0]
    try:
        response = httpx.get(f"{root}/healthz", timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise TiledUnreachable(
            f"no Tiled server answers at {root} ({exc}); check storage.tiled in the stand file "
            "and that the server runs (`teststand tiled serve`). Runs are kept in the local "
            "journal meanwhile and replayed when it answers"
        ) from None
    if response.status_code >= 500 or response.status_code == 404:
        raise TiledUnreachable(
            f"{root} answers HTTP {response.status_code}, not like a Tiled server; check the "
            "URI in storage.tiled"
        )


def connect(uri: str, api_key: str | None = None, *, timeout: float = 3.0) -> Any:
    """A `tiled.client` Container for `uri`, or a typed error saying what to fix."""
    from tiled.client import from_uri  # type: ignore[import-untyped]
    from tiled.client.utils import ClientError  # type: ignore[import-untyped]

    base, key = split_uri(uri, api_key)
    probe(base, timeout)
    try:
        return from_uri(base, api_key=key, remember_me=False)
    except ClientError as exc:
        if exc.response.status_code in {401, 403}:
            raise TiledAuthError(
                f"the Tiled server at {base} refused the API key: set the right key in "
                "storage.api_key (or the variable named by storage.api_key_env)"
            ) from None
        raise StorageError(f"the Tiled server at {base} answered {exc}") from None
    except RuntimeError as exc:
        if "API key" in str(exc):
            raise TiledAuthError(
                f"the Tiled server at {base} needs an API key: set storage.api_key (or "
                "storage.api_key_env) in the stand file"
            ) from None
        raise
    except httpx.HTTPError as exc:
        raise TiledUnreachable(f"the Tiled server at {base} stopped answering: {exc}") from None
