"""A TLS proxy on 127.0.0.1 in front of an emulator's AMS endpoint that spoils chosen jobs.

Every request is passed on to the emulator as it came (so the emulator's request log stays the
record of what was asked); in the Jobs pages that come back, the jobs whose Id is in
:attr:`SpoilingProxy.spoiled` get a ``State`` no AMS version has, which makes them unreadable
entities. The emulator has no such fault: a real AMS that sends one is what this stands for.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import requests

from ams_emulator import Emulator
from tests.support.pki import Pki

JOBS_PATH = re.compile(r"/api/Jobs(\?|$)")
UNKNOWN_STATE = 99
# Headers that describe one hop, not the message.
HOP_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "accept-encoding"}
)


class SpoilingProxy:
    """``url`` is an AMS account endpoint (``https://127.0.0.1:port/api/``) for ``emu``'s
    account, trusted through :attr:`ca_file` (the emulator's CA and the proxy's)."""

    def __init__(self, emu: Emulator, pki: Pki) -> None:
        self.spoiled: set[str] = set()
        self._upstream = emu.authority_host
        self._session = requests.Session()
        self._verify = str(emu.ca_file)
        self.ca_file = pki.folder / "spoiler-ca-bundle.pem"
        self.ca_file.write_text(emu.ca_pem + pki.server_ca.read_text())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_port}/api/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SpoilingProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._session.close()

    def forward(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """The emulator's answer to a GET of ``path``, with the spoiled jobs spoiled."""
        sent = {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}
        answer = self._session.get(
            self._upstream + path,
            headers=sent,
            timeout=30,
            allow_redirects=False,
            verify=self._verify,  # per request: a session's verify yields to REQUESTS_CA_BUNDLE
        )
        body = answer.content
        if answer.status_code == 200 and JOBS_PATH.search(path) and self.spoiled:
            body = self._spoil(body)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
        kept.pop("Content-Encoding", None)
        return answer.status_code, kept, body

    def _spoil(self, body: bytes) -> bytes:
        payload = json.loads(body)
        entities: list[dict[str, Any]] = payload.get("value") or payload.get("d", {}).get(
            "results", []
        )
        for entity in entities:
            if entity.get("Id") in self.spoiled:
                entity["State"] = UNKNOWN_STATE
        return json.dumps(payload).encode()


def _handler(proxy: SpoilingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            status, headers, body = proxy.forward(self.path, dict(self.headers.items()))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # quiet: the emulator keeps the request log

    return Handler
