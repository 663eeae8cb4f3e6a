"""A small OpenAI-compatible server on 127.0.0.1 that misbehaves on request, for the error
paths of the server backend: refusals, rate limits, streams cut half-way, no answer.

Each chat request takes the next entry of ``script`` (the last one repeats):
'ok' streams ``reply`` word by word; 'cut' streams half of it and drops the connection;
'hang' accepts the request and never answers (until the server stops); 401, 403, 404,
429, 503 answer with that status (429 and 503 with ``Retry-After: 0``). ``/v1/embeddings``
answers ``fake_vector`` of each text."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_LIMIT_S = 60.0
"""A hanging request gives up after this long at most, so no thread outlives a test run."""


class FakeOpenAI:
    def __init__(self, *, models: tuple[str, ...] = ("fake-model",), reply: str = "",
                 script: tuple[Any, ...] = ("ok",), api_key: str | None = None,
                 owned_by: str = "fake") -> None:
        self.models = models
        self.reply = reply or "one two three four five six seven eight"
        self.script = list(script)
        self.api_key = api_key
        self.owned_by = owned_by
        self.requests: list[dict[str, Any]] = []
        """Every chat request body received, in order."""
        self.embedded: list[str] = []
        """Every text sent to /v1/embeddings."""
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def next_action(self) -> Any:
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    @contextmanager
    def running(self) -> Iterator[FakeOpenAI]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if fake.api_key is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {fake.api_key}":
                    return True
                self._json(401, {"error": {"message": "Invalid API key"}})
                return False

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path == "/v1/models":
                    data = [{"id": m, "object": "model", "owned_by": fake.owned_by}
                            for m in fake.models]
                    self._json(200, {"object": "list", "data": data})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorised():
                    return
                if self.path == "/v1/embeddings":
                    self._embeddings(body)
                    return
                if self.path != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                fake.requests.append(body)
                action = fake.next_action()
                if body.get("model") not in fake.models:
                    self._json(404, {"error": {"message": f"model {body.get('model')!r} "
                                               "not found"}})
                elif isinstance(action, int):
                    retry = {"Retry-After": "0"} if action in (429, 503) else {}
                    self._json(action, {"error": {"message": f"scripted {action}"}}, retry)
                elif action == "hang":
                    fake.stopping.wait(HANG_LIMIT_S)
                    self.close_connection = True
                else:
                    self._stream(action)

            def _embeddings(self, body: dict[str, Any]) -> None:
                if body.get("model") not in fake.models:
                    self._json(404, {"error": {"message": "model not found"}})
                    return
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                fake.embedded.extend(texts)
                data = [{"object": "embedding", "index": i, "embedding": fake_vector(t)}
                        for i, t in enumerate(texts)]
                self._json(200, {"object": "list", "data": data, "model": body["model"],
                                 "usage": {"prompt_tokens": 0, "total_tokens": 0}})

            def _stream(self, action: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                words = [w + " " for w in fake.reply.split()]
                if action == "cut":
                    words = words[: max(1, len(words) // 2)]
                for word in words:
                    self._event({"choices": [{"index": 0, "delta": {"content": word},
                                              "finish_reason": None}]})
                if action == "cut":
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _event(self, chunk: dict[str, Any]) -> None:
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0,
                         "model": fake.models[0], **chunk}
                self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stopping.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


def fake_vector(text: str, dim: int = 8) -> list[float]:
    """A deterministic, unnormalised vector for ``text`` (what /v1/embeddings answers)."""
    import hashlib

    digest = hashlib.sha256(text.encode()).digest()
    return [float(b) - 127.5 for b in digest[:dim]]
