"""A scripted OpenAI-compatible chat completions server on loopback, in a thread, for tests.

Each request to ``POST /v1/chat/completions`` takes the next step of the
script (the last one repeats): ``("answer", text)``, ``("logprobs", [(token,
logprob), ...])``, ``("status", code, headers)``, ``("stall", seconds)`` (then
the answer ``{"probability": 0.5}``), ``("raw", body)``.  It records every
request (headers and JSON body) and the most requests in flight at once; it
serves at most ``limit`` requests (then HTTP 503) and never stalls longer
than asked.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(text: str | None, logprobs=None) -> dict:
    lp = None
    if logprobs is not None:
        lp = {"content": [{"token": logprobs[0][0], "logprob": logprobs[0][1], "bytes": None,
                           "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in logprobs]}]}
    return {"id": "cmpl-test", "object": "chat.completion", "created": 0, "model": "toy",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                         "logprobs": lp}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class ScriptedServer:
    def __init__(self, script, limit: int = 200, delay: float = 0.0):
        self.script, self.limit, self.delay = list(script), limit, delay
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with server._lock:
                    n = len(server.requests)
                    server.requests.append({"path": self.path, "headers": dict(self.headers),
                                            "body": json.loads(body or b"{}")})
                    step = server.script[min(n, len(server.script) - 1)] if n < server.limit else ("status", 503, {})
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    self._respond(step)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a stall beyond its timeout)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _respond(self, step):
                kind = step[0]
                if kind == "stall":
                    time.sleep(min(float(step[1]), 5.0))
                    step = ("answer", json.dumps({"probability": 0.5}))
                    kind = "answer"
                if kind == "status":
                    payload = json.dumps({"error": {"message": f"scripted {step[1]}", "type": "test"}}).encode()
                    self.send_response(step[1])
                    for k, v in (step[2] if len(step) > 2 else {}).items():
                        self.send_header(k, v)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if kind == "raw":
                    payload = step[1].encode()
                elif kind == "logprobs":
                    payload = json.dumps(completion(step[1][0][0], step[1])).encode()
                else:
                    payload = json.dumps(completion(step[1])).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@contextmanager
def scripted_server(script, limit: int = 200, delay: float = 0.0):
    server = ScriptedServer(script, limit, delay)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)
