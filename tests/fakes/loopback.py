"""The HTTP plumbing every fake shares: a threaded server on 127.0.0.1, started and stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handle = Callable[[BaseHTTPRequestHandler, str], None]


class LoopbackServer:
    """Serves every request to `handle(request, http_method)` on a free port of 127.0.0.1."""

    def __init__(self, handle: Handle) -> None:
        self.stopped = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                handle(self, "GET")

            def do_POST(self) -> None:
                handle(self, "POST")

            def do_PUT(self) -> None:
                handle(self, "PUT")

            def do_DELETE(self) -> None:
                handle(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving; anything waiting on `stopped` (an injected delay) is released."""
        self.stopped.set()
        self._server.shutdown()
        self._server.server_close()
