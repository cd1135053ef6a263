"""A Tiled server that accepts writes but loses rows: a real HTTP proxy process in front of one.

`python tests/lossy_proxy.py UPSTREAM_URL [--lose-every N] [--refuse-table-reads]` forwards every
request to the Tiled server at UPSTREAM_URL, except every N-th append of rows to a table (`PATCH
.../table/partition/`), which it answers `200 OK` without passing it on: the rows are lost while
the writer is told they are stored (N = 0: none is lost). With `--refuse-table-reads`, every read
of a table's rows (`GET .../table/...`) is answered `403`: a run is stored but cannot be checked.
It prints its own URL on the first line once it listens. `LossyProxy` runs it.
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

#: Headers of one hop that must not be passed on (RFC 9110 7.6.1), and the ones rewritten.
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}
REWRITTEN = {"content-length", "server", "date"}


class LossyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, lose_every: int, refuse_table_reads: bool) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.lose_every = lose_every
        self.refuse_table_reads = refuse_table_reads
        self.appends = 0
        self.lock = threading.Lock()

    def lose(self) -> bool:
        with self.lock:
            self.appends += 1
            return self.lose_every > 0 and self.appends % self.lose_every == 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LossyServer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.command == "PATCH" and "/table/partition/" in self.path and self.server.lose():
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "GET" and "/table/" in self.path and self.server.refuse_table_reads:
            self.send_response(403, "table reads refused by the test proxy")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=120)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
        finally:
            upstream.close()
        self.send_response(reply.status, reply.reason)
        for key, value in reply.getheaders():
            if key.lower() not in HOP | REWRITTEN:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = forward


class LossyProxy:
    """`with LossyProxy(tiled_url, lose_every=1) as url:` a URL whose Tiled loses rows (or,
    with `refuse_table_reads`, stores them but refuses to read them back)."""

    def __init__(
        self, upstream: str, lose_every: int = 1, refuse_table_reads: bool = False
    ) -> None:
        self._command = [sys.executable, str(Path(__file__))]
        self._command += [upstream, "--lose-every", str(lose_every)]
        self._command += ["--refuse-table-reads"] if refuse_table_reads else []
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        self._process = subprocess.Popen(self._command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        url = self._process.stdout.readline().strip()
        if not url.startswith("http"):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the lossy proxy did not start: {url!r}")
        return url

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            if self._process.stdout is not None:
                self._process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("upstream")
    parser.add_argument("--lose-every", type=int, default=1, help="0: lose no rows")
    parser.add_argument("--refuse-table-reads", action="store_true")
    args = parser.parse_args()
    server = LossyServer(args.upstream, max(0, args.lose_every), args.refuse_table_reads)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
